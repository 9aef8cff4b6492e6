"""The publish stage's work: every curated set of ``publish.datasets`` as a Hugging Face datasets
folder under ``paths.publish_dir`` (Parquet, card, figures, the numbers behind them), an index,
and each set's headline figures for DVC's metrics.

One set's folder::

    <publish_dir>/<name>/README.md                          the dataset card
    <publish_dir>/<name>/data/train-00000-of-00001.parquet  the rows, with the judge's scores
    <publish_dir>/<name>/figures/*.png                      lengths, turns, constraints, ...
    <publish_dir>/<name>/analysis.json                      every number the figures draw

A set with no rows in this run (Conifer's DPO pairs on the embedded default) has no folder: the
index says it is empty, and why is in the funnels.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from complexif.config import Params
from complexif.curation.funnel import Funnel, read_funnels
from complexif.dataset.analysis import DatasetAnalysis, analyse
from complexif.dataset.card import CardFacts, InputRevision, render_card
from complexif.dataset.diversity import Diversity, pairwise_similarity
from complexif.dataset.export import Exported, write_parquet
from complexif.dataset.figures import write_figures
from complexif.dataset.index import CARD, datasets_markdown, write_headlines
from complexif.dataset.provenance import base_model, code_revision, fcs_funnel, role_rows
from complexif.dataset.records import Sample, to_samples
from complexif.dataset.scoring import COMPLEXITY, QUALITY, QUALITY_REJECTED, Scores
from complexif.evaluation.headline import DIGITS
from complexif.io import read_jsonl, read_text, write_json, write_text
from complexif.tracking import flatten_metrics, numeric
from complexif.tracking.inputs import file_md5

log = logging.getLogger(__name__)

STAGE = "publish"
INDEX_HEAD = (
    "# Curated datasets\n\nEach folder is a Hugging Face datasets folder: "
    "`datasets.load_dataset(<folder>)` loads it, and its README.md is the dataset card.\n\n"
)
FIGURES_DIR = "figures"
ANALYSIS = "analysis.json"
# The Parquet columns the scores add, by score kind.
SCORE_COLUMNS = {
    COMPLEXITY: "judge_complexity",
    QUALITY: "judge_quality",
    QUALITY_REJECTED: "judge_quality_rejected",
}
# The params sections that made the data, shown in each card.
RECIPE_SECTIONS = (
    "model",
    "seeds",
    "compose",
    "respond",
    "correct",
    "conifer",
    "curation",
    "build_data",
    "publish",
)


@dataclass(frozen=True)
class Context:
    """What every set's card shares: revisions, funnels, the reference sets."""

    inputs: tuple[InputRevision, ...]
    git_commit: str | None
    git_changes: tuple[str, ...]
    funnels: tuple[Funnel, ...]
    seed_texts: tuple[str, ...]
    count_tokens: Callable[[str], int]


@dataclass(frozen=True)
class Published:
    """One set's export: its folder (None when it had no rows) and its headline figures."""

    name: str
    source_path: str
    rows: int
    folder: Path | None
    headline: dict[str, float | int]


def metrics_dir(params: Params) -> Path:
    """Where each set's headline figures go: one DVC metrics file per set."""
    return Path(params.paths.metrics_dir) / STAGE


def set_kind(records: Sequence[Mapping[str, Any]]) -> str:
    return "dpo" if records and "chosen" in records[0] else "sft"


def recipe_text(params: Params, name: str) -> str:
    """One paragraph on which method's rows the set holds."""
    cur = params.curation
    if name in ("conifer_sft", "conifer_dpo"):
        return (
            "Conifer (Sun et al. 2024): the teacher reframes seed queries, lists constraints, "
            "recombines them into difficulty levels 1-5 and filters what cannot be answered; "
            "its answers carry process feedback. Multi-turn rows go easy to hard."
        )
    method = cur.method if name == "sft" else cur.dpo_method
    return (
        "The rows training used (`curation."
        + ("method" if name == "sft" else "dpo_method")
        + f": {method}`; `source` names each row's method). FCS (He et al. 2024): 3-5 verifiable "
        "constraints composed onto a seed, a student answers, the checkers find the failed "
        "constraints and each fix is re-verified; the final verified answer is the target and "
        "earlier failing answers the rejected side. Conifer: see its own set."
    )


def headline(
    analysis: DatasetAnalysis, diversity: Diversity, scores: Scores | None
) -> dict[str, float | int]:
    """The few figures ``dvc metrics show`` gets per set, so its table stays readable
    (``analysis.json`` and MLflow have all of them): rows, mean pairwise similarity, mean judge
    scores. A figure without data (no judge, fewer than two rows) is left out, not null."""

    def mean(kind: str) -> float | None:
        return scores.mean(kind) if scores is not None and kind in scores.kinds else None

    values = {
        "rows": analysis.rows,
        "similarity": diversity.curated.mean,
        "complexity": mean(COMPLEXITY),
        "quality": mean(QUALITY),
    }
    return {
        k: round(v, DIGITS) if isinstance(v, float) else v
        for k, v in values.items()
        if v is not None
    }


def with_scores(records: list[dict[str, Any]], scores: Scores | None) -> list[dict[str, Any]]:
    """The rows with the judge's scores as columns (null where the judge gave none)."""
    if scores is None:
        return records
    return [
        {**rec, **{SCORE_COLUMNS[k]: scores.scores[k].get(rec["id"]) for k in scores.kinds}}
        for rec in records
    ]


def _score_cell(scores: Scores, kind: str, fmt: Callable[[Any], str]) -> str:
    """The mean, and how many of the asked rows the judge scored."""
    asked = len(scores.scores[kind])
    scored = sum(scores.counts(kind).values())
    return f"{fmt(scores.mean(kind))} ({scored} of {asked} scored)"


def analysis_markdown(
    analysis: DatasetAnalysis,
    diversity: Diversity,
    scores: Scores | None,
    reference: Scores | None,
    repaired: bool,
) -> str:
    """The card's numbers: one table, then how each figure was made."""

    def fmt(value: float | int | None) -> str:
        if value is None:
            return "-"
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    rows = [
        ("rows", analysis.rows),
        ("instruction tokens: median / p90", None),
        ("response tokens: median / p90", None),
        ("user turns per conversation: mean", analysis.turns.mean),
        ("constraints per instruction: mean", analysis.constraints.mean),
        ("instruction similarity, mean pairwise cosine (seed set)", None),
    ]
    cells = {
        rows[1][0]: f"{fmt(analysis.instruction_tokens.median)} / "
        f"{fmt(analysis.instruction_tokens.p90)}",
        rows[2][0]: f"{fmt(analysis.response_tokens.median)} / {fmt(analysis.response_tokens.p90)}",
        rows[5][0]: f"{fmt(diversity.curated.mean)} ({fmt(diversity.reference.mean)})",
    }
    lines = ["| figure | value |", "|---|---:|"]
    lines += [f"| {label} | {cells.get(label, fmt(value))} |" for label, value in rows]
    if scores is not None:
        for kind in scores.kinds:
            text = _score_cell(scores, kind, fmt)
            if reference is not None and kind in reference.kinds:
                text += f"; general chat: {_score_cell(reference, kind, fmt)}"
            lines.append(f"| judge {kind.replace('_', ' ')} score, mean of 1-6 | {text} |")
    types = ", ".join(f"`{t}` {n}" for t, n in list(analysis.constraint_types.items())[:10])
    notes = [
        "",
        "Lengths are in tokens of the base model's tokenizer. Diversity is the pairwise cosine "
        "similarity of instructions (each conversation's last user turn) as TF-IDF vectors "
        "fitted on this set and the seed set together: lower means more varied. The judge "
        "scores follow the rubrics in `prompts/publish/` (complexity of the instruction, "
        "quality of the answer, 1-6); a reply that is no score "
        + ("is re-asked once, then " if repaired else "is ")
        + "ledgered and left out, never guessed.",
    ]
    if types:
        notes += ["", f"Most frequent constraint types: {types}."]
    if analysis.levels_max:
        levels = ", ".join(f"level {k}: {n}" for k, n in analysis.levels_max.items())
        notes += ["", f"Rows by their hardest Conifer level: {levels}."]
    return "\n".join(lines + notes)


FIGURE_CAPTIONS = {
    "lengths": "instruction and response lengths (tokens)",
    "turns": "turns per conversation",
    "constraints": "constraints per instruction and their types",
    "levels": "Conifer difficulty levels",
    "diversity": "pairwise similarity of instructions against the seed set",
    "scores": "judge complexity and quality scores",
}


def write_set(
    params: Params,
    name: str,
    source_path: str,
    records: list[dict[str, Any]],
    samples: list[Sample],
    folder: Path,
    final_folder: str,
    ctx: Context,
    scores: Scores | None,
    reference: Scores | None,
) -> Published:
    """Export one non-empty set into ``folder`` (``final_folder`` is where it will lie, as the
    card tells users to load it)."""
    cfg = params.publish
    exported: Exported = write_parquet(
        with_scores(records, scores), folder, where=f"{source_path} ({name})"
    )
    analysis = analyse(samples, ctx.count_tokens)
    diversity = pairwise_similarity(
        [s.instruction for s in samples],
        list(ctx.seed_texts),
        max_items=cfg.diversity.max_items,
        seed=cfg.diversity.seed,
    )

    def counts(s: Scores | None) -> dict[str, dict[int, int]] | None:
        return None if s is None else {k: s.counts(k) for k in s.kinds}

    unparseable = (
        {k: sum(scores.dropped(k).values()) for k in scores.kinds} if scores is not None else None
    )
    figures = write_figures(
        folder / FIGURES_DIR, analysis, diversity, counts(scores), counts(reference), unparseable
    )
    head = headline(analysis, diversity, scores)
    write_json(
        folder / ANALYSIS,
        {
            "analysis": analysis.to_dict(),
            "diversity": diversity.to_dict(),
            "scores": scores.summary() if scores is not None else None,
            "reference_scores": reference.summary() if reference is not None else None,
            "headline": head,
        },
    )
    facts = CardFacts(
        name=name,
        kind=set_kind(records),
        folder=final_folder,
        source_path=source_path,
        source_md5=file_md5(Path(source_path)),
        exported=exported,
        rows_by_source=analysis.sources,
        recipe=recipe_text(params, name),
        roles=role_rows(params),
        base_model=base_model(params),
        git_commit=ctx.git_commit,
        git_changes=ctx.git_changes,
        inputs=ctx.inputs,
        funnels=ctx.funnels,
        params={s: params.model_dump(mode="json")[s] for s in RECIPE_SECTIONS},
        license=cfg.license,
        input_licenses=cfg.input_licenses,
        analysis=analysis_markdown(
            analysis, diversity, scores, reference, cfg.scores.repair_template is not None
        ),
        figures={FIGURE_CAPTIONS[k]: f"{FIGURES_DIR}/{p.name}" for k, p in figures.items()},
    )
    write_text(folder / CARD, render_card(facts))
    return Published(name, source_path, exported.rows, folder, head)


def load_context(params: Params, root: str | Path = ".") -> Context:
    """The shared facts, read once: git and DVC revisions, funnels, seeds, the tokenizer."""
    from transformers import AutoTokenizer

    from complexif.tracking.inputs import stage_inputs

    try:
        inputs = tuple(InputRevision(i.path, i.md5, i.producer) for i in stage_inputs(STAGE, root))
    except Exception as exc:  # outside a DVC project: the card says none were recorded
        log.info("no DVC inputs for the cards: %s", exc)
        inputs = ()
    commit, changes = code_revision(root)
    tok = AutoTokenizer.from_pretrained(str(params.paths.model_dir("base")))
    return Context(
        inputs=inputs,
        git_commit=commit,
        git_changes=changes,
        funnels=(fcs_funnel(params), *read_funnels(params.paths.reports_dir)),
        seed_texts=tuple(r["text"] for r in read_jsonl(params.paths.seeds)),
        count_tokens=lambda text: len(tok(text, add_special_tokens=False).input_ids),
    )


def score_all(
    params: Params, run: Any, sets: Mapping[str, list[Sample]], reference: list[Sample] | None
) -> tuple[dict[str, Scores], Scores | None]:
    """The judge's scores of every set (and of the reference set once), in one LLM session:
    its cache, its ledger (``<ledger_dir>/publish.jsonl``) and its failure limit. With
    ``publish.scores.enabled`` off nobody is asked ({} and None); the session still writes its
    ledger, empty, as DVC expects of the stage."""
    from complexif.dataset.scoring import score_samples
    from complexif.llm.factory import step_params
    from complexif.llm.prompts import load_template
    from complexif.llm.session import llm_session

    cfg = params.publish.scores
    judge = params.evaluate.judge
    limit = ("publish.scores.max_failure_fraction", cfg.max_failure_fraction)
    with llm_session(STAGE, params, run, failure_limit=limit) as session:
        if not cfg.enabled:
            return {}, None

        def template(name: str):
            return load_template(params.paths.prompts_dir, f"{cfg.prompts_dir}/{name}")

        kwargs = {
            "complexity": template(cfg.complexity.template),
            "quality": template(cfg.quality.template),
            "repair": template(cfg.repair_template) if cfg.repair_template else None,
            "complexity_params": step_params(judge, cfg.complexity),
            "quality_params": step_params(judge, cfg.quality),
        }
        llm = session.client("judge", judge)
        scores = {
            name: score_samples(
                llm,
                samples,
                score_rejected=cfg.score_rejected and any(s.rejected for s in samples),
                **kwargs,
            )
            for name, samples in sets.items()
            if samples
        }
        ref = score_samples(llm, reference, score_rejected=False, **kwargs) if reference else None
    return scores, ref


def publish_all(params: Params, run: Any) -> list[Published]:
    """Export every set of ``publish.datasets``; write the index and the metrics file; log the
    cards, figures and headline figures to ``run``."""
    from complexif.llm.model_source import atomic_dir

    cfg, paths = params.publish, params.paths
    sources = {name: str(getattr(paths, name)) for name in cfg.datasets}
    records = {name: read_jsonl(path) for name, path in sources.items()}
    samples = {name: to_samples(sources[name], recs) for name, recs in records.items()}
    reference = None
    if cfg.scores.enabled and cfg.scores.reference == "general_data":
        general = params.train.sft.general_data.path
        reference = to_samples(general, read_jsonl(general))
    scores, ref_scores = score_all(params, run, samples, reference)
    ctx = load_context(params)
    published: list[Published] = []
    with atomic_dir(paths.publish_dir) as tmp:
        for name in cfg.datasets:
            if not records[name]:
                published.append(Published(name, sources[name], 0, None, {"rows": 0}))
                continue
            done = write_set(
                params,
                name,
                sources[name],
                records[name],
                samples[name],
                tmp / name,
                f"{paths.publish_dir}/{name}",
                ctx,
                scores.get(name),
                ref_scores,
            )
            published.append(done)
        index = datasets_markdown(
            {p.name: p.headline for p in published}, paths.publish_dir, paths.publish_dir
        )
        write_text(tmp / CARD, INDEX_HEAD + index)
    final = Path(paths.publish_dir)
    write_headlines(metrics_dir(params), {p.name: p.headline for p in published})
    for p in published:
        if p.folder is not None:
            run.log_artifact(final / p.name / CARD, artifact_path=f"{STAGE}/{p.name}")
            run.log_artifact(
                final / p.name / FIGURES_DIR, artifact_path=f"{STAGE}/{p.name}/figures"
            )
            run.log_artifact(final / p.name / ANALYSIS, artifact_path=f"{STAGE}/{p.name}")
    # MLflow gets every number behind the figures, DVC the headline.
    analyses = {
        p.name: json.loads(read_text(final / p.name / ANALYSIS)) for p in published if p.folder
    }
    run.log_metrics(flatten_metrics(numeric(analyses)))
    return [
        Published(p.name, p.source_path, p.rows, final / p.name if p.folder else None, p.headline)
        for p in published
    ]
