"""IFEval scoring (Zhou et al. 2023), reproducing the official ``evaluation_main`` numbers.

Per prompt we compute the official strict and loose verdict lists
(``complexif.constraints.verify``) and report the official accuracies -- prompt level (all
instructions followed) and instruction level -- plus accuracy per instruction type and per
top-level category (the official report's two tiers). Fractions are in 0..1.

Differences from the official script, all about failing loudly: input lines are validated (the
error names file, line and field), instruction arguments must be complete, and a prompt without
a response is an error unless ``missing="empty"`` (then it is scored as an empty response, which
follows nothing, as in the official code). Responses are matched to prompts by exact text; the
result says how many matched, how many prompts had none and how many responses matched no
prompt, and a file matching no prompt at all is an error whatever ``missing`` says (scoring it
would report 0.0 for what is really a mix-up of files).
"""

from __future__ import annotations

import os
import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from complexif.constraints.errors import ConstraintError, UnknownInstructionError
from complexif.constraints.verify import build, check_instruction
from complexif.io import DataError, iter_jsonl, require_fields, write_json, write_jsonl

# src/complexif/evaluation/ifeval.py -> repository root
DEFAULT_INPUT_DATA = Path(__file__).resolve().parents[3] / "data/benchmarks/ifeval/input_data.jsonl"

STRICT_FILE = "eval_results_strict.jsonl"
LOOSE_FILE = "eval_results_loose.jsonl"
METRICS_FILE = "metrics.json"

MissingPolicy = Literal["error", "empty"]


class MissingResponseError(KeyError):
    """A prompt has no response."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class NoResponseMatchedError(MissingResponseError):
    """Not one response belongs to a prompt of the input data: wrong file, or wrong benchmark."""


@dataclass(frozen=True)
class Coverage:
    """How the responses met the prompts."""

    matched: int  # prompts with a response
    missing: int  # prompts without one
    extra: int  # responses to no prompt of the input data (ignored)

    def to_dict(self) -> dict[str, int]:
        return {"matched": self.matched, "missing": self.missing, "extra": self.extra}

    def __str__(self) -> str:
        return f"{self.matched} matched, {self.missing} missing, {self.extra} extra"


def coverage(inputs: Sequence[InputExample], responses: Mapping[str, str]) -> Coverage:
    prompts = {example.prompt for example in inputs}
    matched = sum(prompt in responses for prompt in prompts)
    return Coverage(matched=matched, missing=len(prompts) - matched, extra=len(responses) - matched)


@dataclass(frozen=True)
class InputExample:
    key: int
    prompt: str
    instruction_id_list: list[str]
    kwargs: list[dict[str, Any]]


@dataclass(frozen=True)
class OutputExample:
    """One prompt's verdicts (the official output fields, plus key and kwargs)."""

    key: int
    prompt: str
    instruction_id_list: list[str]
    kwargs: list[dict[str, Any]]
    response: str
    follow_all_instructions: bool
    follow_instruction_list: list[bool]

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "prompt": self.prompt,
            "instruction_id_list": self.instruction_id_list,
            "kwargs": self.kwargs,
            "response": self.response,
            "follow_all_instructions": self.follow_all_instructions,
            "follow_instruction_list": self.follow_instruction_list,
        }


@dataclass(frozen=True)
class IFEvalResult:
    strict: list[OutputExample]
    loose: list[OutputExample]
    metrics: dict[str, Any]
    coverage: Coverage | None = None


# --------------------------------------------------------------------------------------------
# Loading


def _validate_record(path: Path, lineno: int, rec: dict[str, Any]) -> InputExample:
    require_fields(
        path, lineno, rec, {"key": int, "prompt": str, "instruction_id_list": list, "kwargs": list}
    )
    if isinstance(rec["key"], bool):
        raise DataError(f"{path}:{lineno}: field 'key' must be int, got bool")
    if not rec["prompt"].strip():
        raise DataError(f"{path}:{lineno}: field 'prompt' is empty")
    ids = rec["instruction_id_list"]
    kwargs = rec["kwargs"]
    if len(kwargs) != len(ids):
        raise DataError(
            f"{path}:{lineno}: field 'kwargs' has {len(kwargs)} entries but "
            f"'instruction_id_list' has {len(ids)}"
        )
    for i, (iid, kw) in enumerate(zip(ids, kwargs, strict=True)):
        if not isinstance(iid, str):
            raise DataError(f"{path}:{lineno}: field 'instruction_id_list[{i}]' must be str")
        if kw is not None and not isinstance(kw, dict):
            raise DataError(f"{path}:{lineno}: field 'kwargs[{i}]' must be an object")
        try:
            build(iid, kw)
        except ConstraintError as exc:
            field = "instruction_id_list" if isinstance(exc, UnknownInstructionError) else "kwargs"
            raise DataError(f"{path}:{lineno}: field '{field}[{i}]': {exc}") from exc
    return InputExample(
        key=rec["key"],
        prompt=rec["prompt"],
        instruction_id_list=list(ids),
        kwargs=[dict(kw or {}) for kw in kwargs],
    )


def load_input_data(path: str | os.PathLike[str] = DEFAULT_INPUT_DATA) -> list[InputExample]:
    """Read IFEval input data (JSONL: key, prompt, instruction_id_list, kwargs), validated."""
    path = Path(path)
    inputs: list[InputExample] = []
    seen_keys: dict[int, int] = {}
    seen_prompts: dict[str, int] = {}
    for lineno, rec in iter_jsonl(path):
        example = _validate_record(path, lineno, rec)
        if example.key in seen_keys:
            raise DataError(
                f"{path}:{lineno}: field 'key' {example.key} repeats line {seen_keys[example.key]}"
            )
        # Responses are matched to prompts by text, so two identical prompts would be ambiguous.
        if example.prompt in seen_prompts:
            raise DataError(
                f"{path}:{lineno}: field 'prompt' repeats line {seen_prompts[example.prompt]}"
            )
        seen_keys[example.key] = seen_prompts[example.prompt] = lineno
        inputs.append(example)
    if not inputs:
        raise DataError(f"{path}: no records")
    return inputs


# Short alias.
load_inputs = load_input_data


def load_responses(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read model responses (JSONL with ``prompt`` and ``response``) into prompt -> response."""
    path = Path(path)
    out: dict[str, str] = {}
    lines: dict[str, int] = {}
    for lineno, rec in iter_jsonl(path):
        require_fields(path, lineno, rec, {"prompt": str, "response": str})
        prompt = rec["prompt"]
        if prompt in out and out[prompt] != rec["response"]:
            raise DataError(
                f"{path}:{lineno}: field 'prompt' repeats line {lines[prompt]} "
                "with a different response"
            )
        out[prompt] = rec["response"]
        lines[prompt] = lineno
    return out


# --------------------------------------------------------------------------------------------
# Scoring


def _score_one(example: InputExample, response: str) -> tuple[OutputExample, OutputExample]:
    instructions = [
        build(iid, kw) for iid, kw in zip(example.instruction_id_list, example.kwargs, strict=True)
    ]
    outputs = []
    for loose in (False, True):
        verdicts = [check_instruction(inst, response, loose=loose) for inst in instructions]
        outputs.append(
            OutputExample(
                key=example.key,
                prompt=example.prompt,
                instruction_id_list=list(example.instruction_id_list),
                kwargs=[dict(kw) for kw in example.kwargs],
                response=response,
                follow_all_instructions=all(verdicts),
                follow_instruction_list=verdicts,
            )
        )
    return outputs[0], outputs[1]


def _accuracies(outputs: Sequence[OutputExample]) -> dict[str, Any]:
    prompt_correct = sum(o.follow_all_instructions for o in outputs)
    inst_total = sum(len(o.follow_instruction_list) for o in outputs)
    inst_correct = sum(sum(o.follow_instruction_list) for o in outputs)
    by_type: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_category: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for o in outputs:
        for iid, ok in zip(o.instruction_id_list, o.follow_instruction_list, strict=True):
            for table, name in ((by_type, iid), (by_category, iid.split(":")[0])):
                table[name][0] += int(ok)
                table[name][1] += 1
    return {
        "prompt": prompt_correct / len(outputs),
        "inst": inst_correct / inst_total if inst_total else 0.0,
        "by_type": {k: (c / n, n) for k, (c, n) in by_type.items()},
        "by_category": {k: (c / n, n) for k, (c, n) in by_category.items()},
        "inst_total": inst_total,
    }


def compute_metrics(
    strict: Sequence[OutputExample], loose: Sequence[OutputExample]
) -> dict[str, Any]:
    """The four headline accuracies plus per-type and per-category strict/loose accuracy."""
    if not strict or len(strict) != len(loose):
        raise ValueError("need the same, non-zero number of strict and loose outputs")
    s, lo = _accuracies(strict), _accuracies(loose)

    def table(key: str) -> dict[str, dict[str, Any]]:
        return {
            name: {"strict": s[key][name][0], "loose": lo[key][name][0], "count": s[key][name][1]}
            for name in sorted(s[key])
        }

    return {
        "prompt_level_strict_acc": s["prompt"],
        "inst_level_strict_acc": s["inst"],
        "prompt_level_loose_acc": lo["prompt"],
        "inst_level_loose_acc": lo["inst"],
        "num_prompts": len(strict),
        "num_instructions": s["inst_total"],
        "per_instruction": table("by_type"),
        "per_category": table("by_category"),
    }


def score(
    inputs: Iterable[InputExample],
    responses: Mapping[str, str],
    missing: MissingPolicy = "error",
) -> IFEvalResult:
    """Score ``responses`` (prompt text -> response) on ``inputs``.

    Raises :class:`NoResponseMatchedError` when no response belongs to any prompt, and
    :class:`MissingResponseError` for a prompt without a response unless ``missing="empty"``.
    """
    if missing not in ("error", "empty"):
        raise ValueError(f"missing must be 'error' or 'empty', got {missing!r}")
    inputs = list(inputs)
    counts = coverage(inputs, responses)
    if inputs and counts.matched == 0:
        raise NoResponseMatchedError(
            f"none of the {len(responses)} responses is for one of the {len(inputs)} prompts "
            f"({counts}); responses are matched to prompts by exact text: are these responses "
            "to this input data?"
        )
    strict, loose = [], []
    for example in inputs:
        response = responses.get(example.prompt)
        if response is None:
            if missing == "error":
                raise MissingResponseError(
                    f"no response for prompt key={example.key}: {example.prompt[:80]!r} "
                    f"(responses: {counts}; --missing empty scores a missing one as empty)"
                )
            response = ""
        if not isinstance(response, str):
            raise TypeError(
                f"response for prompt key={example.key} must be str, got {type(response).__name__}"
            )
        s, lo = _score_one(example, response)
        strict.append(s)
        loose.append(lo)
    if not strict:
        raise ValueError("no inputs to score")
    metrics = compute_metrics(strict, loose)
    return IFEvalResult(strict=strict, loose=loose, metrics=metrics, coverage=counts)


def write_results(result: IFEvalResult, output_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write the strict/loose JSONL outputs and ``metrics.json`` (each atomically).

    ``metrics.json`` also holds the response counts (``responses``: matched, missing, extra).
    """
    out = Path(output_dir)
    paths = {"strict": out / STRICT_FILE, "loose": out / LOOSE_FILE, "metrics": out / METRICS_FILE}
    write_jsonl(paths["strict"], (o.to_dict() for o in result.strict))
    write_jsonl(paths["loose"], (o.to_dict() for o in result.loose))
    metrics = dict(result.metrics)
    if result.coverage is not None:
        metrics["responses"] = result.coverage.to_dict()
    write_json(paths["metrics"], metrics)
    return paths


# --------------------------------------------------------------------------------------------
# Fast subset


def stratified_subset(inputs: Sequence[InputExample], n: int, seed: int) -> list[InputExample]:
    """A fixed subset of ``n`` prompts whose instruction-type mix follows the full set.

    Greedy multi-label stratification: each type should appear in about ``n * share`` prompts
    (at least one when ``n`` allows); we repeatedly serve the type furthest below its target
    with the next prompt containing it, in an order shuffled by ``seed``. The result depends
    only on the prompts (not their order) and ``seed``; it is returned sorted by key.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    pool = sorted(inputs, key=lambda e: e.key)
    if n >= len(pool):
        return pool
    random.Random(seed).shuffle(pool)

    containing: dict[str, list[int]] = defaultdict(list)
    for idx, example in enumerate(pool):
        for iid in dict.fromkeys(example.instruction_id_list):
            containing[iid].append(idx)
    target = {t: n * len(ix) / len(pool) for t, ix in containing.items()}
    if n >= len(target):
        target = {t: max(v, 1.0) for t, v in target.items()}
    have = dict.fromkeys(target, 0)
    chosen: set[int] = set()
    while len(chosen) < n:
        pick = None
        for t in sorted(target, key=lambda t: (have[t] - target[t], t)):
            if have[t] >= target[t]:
                break
            pick = next((i for i in containing[t] if i not in chosen), None)
            if pick is not None:
                break
        if pick is None:  # every type is at target: take the next prompt in seeded order
            pick = next(i for i in range(len(pool)) if i not in chosen)
        chosen.add(pick)
        for iid in dict.fromkeys(pool[pick].instruction_id_list):
            have[iid] += 1
    return sorted((pool[i] for i in chosen), key=lambda e: e.key)
