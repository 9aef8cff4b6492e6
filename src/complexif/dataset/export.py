"""A curated JSONL file as a Hugging Face ``datasets`` folder: Parquet under ``data/``, in the
layout the hub and ``datasets.load_dataset(<folder>)`` read (the card's ``configs`` name the
files), so the same folder loads offline and uploads unchanged.

Arrow needs one type per column. Most columns have one (``messages`` is always a list of
``{role, content}``), but some hold objects whose keys vary by row: FCS ``kwargs`` are the
arguments of each constraint, different per type. Arrow would merge those into one struct with
every key, and a row's ``{}`` would come back as ``{"keywords": None, ...}``: not the row we
wrote. Such a column is stored as JSON text instead, and the card names it; every other column
keeps its type. Read back and decoded (:func:`decode_row`), a row equals the row written, but
for a field that was null, which reads as absent, as does a field the row never had.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from complexif.io import DataError, atomic_open

DATA_DIR = "data"
SPLIT = "train"
# One shard: the hub's naming, so `load_dataset` and the dataset viewer find the split by name.
SHARD = f"{SPLIT}-00000-of-00001.parquet"


class _Mixed(Exception):
    """Two rows give a column different shapes."""


def _shape(value: Any) -> Any:
    """The type of a JSON value, with dicts as their key sets (None: no information)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list):
        inner = None
        for item in value:
            inner = _merge(inner, _shape(item))
        return ("list", inner)
    if isinstance(value, Mapping):
        return ("struct", tuple(sorted((str(k), _shape(v)) for k, v in value.items())))
    raise _Mixed(type(value).__name__)


def _merge(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None or a == b:
        return a
    if {a, b} == {"int", "float"}:
        return "float"
    if isinstance(a, tuple) and isinstance(b, tuple) and a[0] == b[0] == "list":
        return ("list", _merge(a[1], b[1]))
    if isinstance(a, tuple) and isinstance(b, tuple) and a[0] == b[0] == "struct":
        keys_a, keys_b = [k for k, _ in a[1]], [k for k, _ in b[1]]
        if keys_a != keys_b:
            raise _Mixed("keys differ")
        return (
            "struct",
            tuple((k, _merge(x, y)) for (k, x), (_, y) in zip(a[1], b[1], strict=True)),
        )
    raise _Mixed(f"{a} and {b}")


def _empty_object(shape: Any) -> bool:
    """An object with no keys somewhere in ``shape``: Parquet has no struct without fields."""
    if not isinstance(shape, tuple):
        return False
    if shape[0] == "list":
        return _empty_object(shape[1])
    return not shape[1] or any(_empty_object(s) for _, s in shape[1])


def json_columns(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The columns whose values have no single Parquet type (stored as JSON text): objects
    whose keys change from row to row, or objects with no keys at all."""
    shapes: dict[str, Any] = {}
    mixed: set[str] = set()
    for rec in records:
        for key, value in rec.items():
            if key in mixed:
                continue
            try:
                shapes[key] = _merge(shapes.get(key), _shape(value))
            except _Mixed:
                mixed.add(key)
    columns = dict.fromkeys(k for rec in records for k in rec)
    return [k for k in columns if k in mixed or _empty_object(shapes.get(k))]


@dataclass(frozen=True)
class Exported:
    """What :func:`write_parquet` wrote: the file (relative to the folder), its rows, the columns
    and which of them hold JSON text."""

    data_file: str
    rows: int
    columns: tuple[str, ...]
    json_columns: tuple[str, ...]


def arrow_table(records: Sequence[Mapping[str, Any]], where: str) -> tuple[Any, list[str]]:
    """The rows as one Arrow table (columns in first-seen order, a missing field null), with
    the columns stored as JSON text. ``where`` names the source in errors."""
    import pyarrow as pa

    as_json = json_columns(records)
    columns = list(dict.fromkeys(k for rec in records for k in rec))
    rows = [
        {
            k: (json.dumps(rec[k], ensure_ascii=False) if k in as_json and k in rec else rec.get(k))
            for k in columns
        }
        for rec in records
    ]
    try:
        return pa.Table.from_pylist(rows), as_json
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
        raise DataError(f"{where}: rows cannot be stored as Parquet: {exc}") from exc


def write_parquet(records: Sequence[Mapping[str, Any]], folder: str | Path, where: str) -> Exported:
    """Write ``records`` as ``<folder>/data/train-00000-of-00001.parquet``, atomically."""
    import pyarrow.parquet as pq

    if not records:
        raise DataError(f"{where}: no rows to export")
    table, as_json = arrow_table(records, where)
    path = Path(folder) / DATA_DIR / SHARD
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as fh:
        pq.write_table(table, fh)
    return Exported(
        f"{DATA_DIR}/{SHARD}", table.num_rows, tuple(table.column_names), tuple(as_json)
    )


def decode_row(row: Mapping[str, Any], as_json: Sequence[str]) -> dict[str, Any]:
    """A row read back from the export, as it was in the JSONL (JSON columns decoded, the nulls
    Arrow gave the fields a row did not have dropped)."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if value is None:
            continue
        out[key] = json.loads(value) if key in as_json else value
    return out
