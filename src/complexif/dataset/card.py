"""A dataset card (the folder's README.md): the hub's YAML header, then what the set is, how to
load it, how it was made (recipe, roles, git and DVC revisions, rows in and out per step, the
params), the inputs' licenses and the analysis with its figures.

The wording lives in ``card_template.md`` beside this module; this module only fills it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

import yaml

from complexif.curation.funnel import Funnel, funnel_markdown
from complexif.dataset.export import DATA_DIR, SPLIT, Exported

TEMPLATE = Path(__file__).with_name("card_template.md")

KIND_TEXT = {
    "sft": "supervised fine-tuning rows (`messages`: a conversation ending in the target answer)",
    "dpo": "preference pairs (`prompt`, `chosen`, `rejected`: the verified answer and a failing one)",
}


@dataclass(frozen=True)
class InputRevision:
    """One input of the stage that exported the set, as DVC hashed it."""

    path: str
    md5: str | None
    producer: str | None


@dataclass(frozen=True)
class CardFacts:
    """Everything a card states. ``folder`` is the export's path as a user types it (relative to
    the project root); ``figures`` map a caption to a path relative to the folder; ``analysis``
    is the analysis section's Markdown."""

    name: str
    kind: str
    folder: str
    source_path: str
    source_md5: str
    exported: Exported
    rows_by_source: Mapping[str, int]
    recipe: str
    roles: Sequence[tuple[str, str, str]]
    base_model: str
    git_commit: str | None
    git_changes: Sequence[str]
    inputs: Sequence[InputRevision]
    funnels: Sequence[Funnel]
    params: Mapping[str, Any]
    license: str
    input_licenses: Mapping[str, str]
    analysis: str
    figures: Mapping[str, str] = field(default_factory=dict)


def size_category(rows: int) -> str:
    """The hub's size bucket for ``rows``."""
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")]
    bounds += [(1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")]
    for limit, label in bounds:
        if rows < limit:
            return label
    return "n>10M"


def front_matter(facts: CardFacts) -> str:
    header = {
        "pretty_name": f"ComplexIF {facts.name}",
        "license": facts.license,
        "language": ["en"],
        "task_categories": ["text-generation"],
        "tags": ["instruction-following", "complex-instructions", "complexif", facts.kind],
        "size_categories": [size_category(facts.exported.rows)],
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": SPLIT, "path": f"{DATA_DIR}/{SPLIT}-*.parquet"}],
            }
        ],
    }
    return yaml.safe_dump(header, sort_keys=False, allow_unicode=True).strip()


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(rows: Sequence[Sequence[Any]]) -> str:
    return "\n".join("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows)


def summary(facts: CardFacts) -> str:
    by_source = ", ".join(f"{n} from {s or 'unnamed'}" for s, n in facts.rows_by_source.items())
    return (
        f"**{facts.exported.rows}** {KIND_TEXT[facts.kind]}, curated by the ComplexIF pipeline "
        f"and exported from `{facts.source_path}` ({by_source})."
    )


# Changed files a card names before it says "and N more".
SHOWN_CHANGES = 10


def uncommitted(changes: Sequence[str]) -> str:
    """What the card adds after the commit when recipe files differ from it."""
    if not changes:
        return ""
    names = ", ".join(f"`{c}`" for c in changes[:SHOWN_CHANGES])
    extra = len(changes) - SHOWN_CHANGES
    more = f" and {extra} more" if extra > 0 else ""
    return f", with uncommitted changes to {names}{more}"


def render_card(facts: CardFacts) -> str:
    if facts.kind not in KIND_TEXT:
        raise ValueError(f"card for {facts.name}: kind must be one of {sorted(KIND_TEXT)}")
    json_note = (
        "Columns stored as JSON text (their objects' keys differ from row to row, which a "
        "Parquet column cannot hold): "
        + ", ".join(f"`{c}`" for c in facts.exported.json_columns)
        + "; read them with `json.loads`."
        if facts.exported.json_columns
        else ""
    )
    columns = "\n".join(
        f"- `{c}`" + (" (JSON text)" if c in facts.exported.json_columns else "")
        for c in facts.exported.columns
    )
    figures = "\n\n".join(f"![{caption}]({path})" for caption, path in facts.figures.items())
    # One level below the card's "Rows in and out" heading.
    funnel = "\n".join(
        "#" + line if line.startswith("### ") else line
        for line in funnel_markdown(list(facts.funnels)).splitlines()
    )
    values = {
        "front_matter": front_matter(facts),
        "title": f"ComplexIF {facts.name}",
        "summary": summary(facts),
        "folder": facts.folder,
        "json_note": json_note,
        "columns": columns,
        "recipe_text": facts.recipe,
        "roles": _table(facts.roles),
        "base_model": facts.base_model,
        "git_commit": facts.git_commit or "unknown (not a git checkout)",
        "git_dirty": uncommitted(facts.git_changes),
        "source_path": facts.source_path,
        "source_md5": facts.source_md5,
        "inputs": _table([(f"`{i.path}`", i.md5 or "-", i.producer or "-") for i in facts.inputs])
        or "| (none recorded) | | |",
        "funnel": funnel,
        "params_yaml": yaml.safe_dump(dict(facts.params), sort_keys=False).strip(),
        "license": facts.license,
        "input_licenses": _table(list(facts.input_licenses.items())),
        "analysis": facts.analysis,
        "figures": figures,
    }
    return Template(TEMPLATE.read_text(encoding="utf-8")).substitute(values)
