"""The publish stage's headline figures (one DVC metrics file per set) and the table of published
sets with links to their cards, wherever it is shown (the publish folder's README, the report):
the report needs nothing but those metrics files."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from complexif.io import DataError, read_text, write_json

CARD = "README.md"


def write_headlines(folder: str | Path, headlines: Mapping[str, Mapping[str, Any]]) -> None:
    """One metrics file per set, ``<folder>/<set>.json``; files of sets no longer published go."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.json"):
        if stale.stem not in headlines:
            stale.unlink()
    for name, head in headlines.items():
        write_json(folder / f"{name}.json", dict(head))


def read_headlines(folder: str | Path) -> dict[str, dict[str, Any]]:
    """The publish stage's metrics: set name -> its headline figures (``rows`` among them)."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(Path(folder).glob("*.json")):
        try:
            head = json.loads(read_text(path))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: not JSON ({exc})") from exc
        if not isinstance(head, dict) or not isinstance(head.get("rows"), int):
            raise DataError(f"{path}: field 'rows' must be an int")
        out[path.stem] = head
    return out


def datasets_markdown(
    headlines: Mapping[str, Mapping[str, Any]], publish_dir: str | Path, from_dir: str | Path
) -> str:
    """One row per set: rows, and its card linked relative to ``from_dir`` (where the Markdown
    file lies); a set with no rows is marked empty."""
    lines = ["| set | rows | card |", "|---|---:|---|"]
    for name, head in headlines.items():
        card = Path(publish_dir) / name / CARD
        link = os.path.relpath(card, from_dir).replace(os.sep, "/")
        shown = f"[{name}/{CARD}]({link})" if head["rows"] else "empty in this run: not exported"
        lines.append(f"| {name} | {head['rows']} | {shown} |")
    return "\n".join(lines) + "\n"
