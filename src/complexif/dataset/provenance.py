"""Where a curated set's rows came from, as a card tells it: the FCS chain's counts (its stages
keep no funnel file, so the counts are read from the files they wrote), the roles that wrote
and judged, and the base model."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from complexif.config import LLMRoleConfig, Params
from complexif.curation.funnel import Funnel
from complexif.io import iter_jsonl
from complexif.llm.model_source import EMBEDDED_GGUF, EMBEDDED_PACKAGE
from complexif.orchestration.git import GitError, dirty_paths, head

# What defines the recipe: a change here uncommitted means the commit alone does not say how the
# data was made. (Stage outputs git tracks, such as gate reports, change during every run.)
RECIPE_PATHS = ("src", "stages", "prompts", "expectations", "params.yaml", "dvc.yaml")

FCS_STAGE = "fcs"


def _rows(path: str | Path) -> int:
    return sum(1 for _ in iter_jsonl(path))


def fcs_funnel(params: Params) -> Funnel:
    """The FCS chain, seeds to training rows, from its files.

    compose makes ``per_seed`` instructions per seed and respond ``n`` answers per instruction
    (more out than in, so those steps are shown with what they made); correct keeps a
    trajectory per answer, verified or unresolved; build_data turns trajectories into SFT rows
    (the verified ones under ``build_data.targets: verified``, at most
    ``max_targets_per_prompt`` per instruction) and their failing steps into DPO pairs.
    """
    p = params.paths
    seeds, instructions = _rows(p.seeds), _rows(p.instructions)
    responses = _rows(p.responses)
    status = Counter(str(rec.get("status")) for _, rec in iter_jsonl(p.corrections))
    verified = status.pop("verified", 0)
    sft = sum(1 for _, rec in iter_jsonl(p.sft) if rec.get("source") == "fcs")
    dpo = sum(1 for _, rec in iter_jsonl(p.dpo) if rec.get("source") == "fcs")
    funnel = Funnel(FCS_STAGE)
    funnel.add("seeds", seeds, seeds)
    funnel.add("compose (instructions made)", instructions, instructions)
    funnel.add("respond (answers made)", responses, responses)
    trajectories = sum(status.values()) + verified
    funnel.add("correct (verified)", trajectories, verified, dict(status))
    # Each SFT row is one trajectory's final answer: a verified one (targets: verified) or any
    # (targets: all), at most max_targets_per_prompt per instruction, fcs_ratio of them kept.
    funnel.add("build_data: SFT rows", trajectories, sft, {"not_a_target": trajectories - sft})
    # Each pair is one failing step of a trajectory: no in/out relation to count against.
    funnel.add("build_data: DPO pairs", dpo, dpo)
    return funnel


def role_rows(params: Params) -> list[tuple[str, str, str]]:
    """(role, backend, model) of every LLM that wrote or judged the data."""
    roles: list[tuple[str, LLMRoleConfig]] = [
        ("FCS student (answers)", params.respond.student),
        ("FCS teacher (fixes)", params.correct.teacher),
        ("Conifer teacher", params.conifer.teacher),
        ("Conifer weak model (external feedback)", params.conifer.weak),
        ("judge (complexity and quality scores)", params.evaluate.judge),
    ]
    return [(name, r.backend, r.model) for name, r in roles]


def base_model(params: Params) -> str:
    """The model ``base`` names: the source and, when one, the revision or GGUF file."""
    m = params.model
    if m.source == "embedded":
        return f"`embedded`: {m.gguf_file or EMBEDDED_GGUF} from the {EMBEDDED_PACKAGE} package"
    extra = [f"revision {m.revision}"] if m.revision else []
    extra += [f"file {m.gguf_file}"] if m.gguf_file else []
    return f"`{m.source}`" + (f" ({', '.join(extra)})" if extra else "")


def code_revision(root: str | Path) -> tuple[str | None, tuple[str, ...]]:
    """The git commit of ``root`` and the recipe files (:data:`RECIPE_PATHS`) that differ from
    it, untracked ones included; (None, ()) outside a git checkout."""
    try:
        return head(root), tuple(dirty_paths(root, *RECIPE_PATHS))
    except (GitError, OSError):
        return None, ()
