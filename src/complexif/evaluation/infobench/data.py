"""InFoBench items: loaded from a local file, a saved ``datasets`` folder or the hub, validated.

The benchmark is not shipped with the repository (see :data:`HOW_TO_GET`). Every record must
have ``id``, ``input`` (may be empty), ``category``, ``instruction``, ``decomposed_questions``
(a non-empty list of questions) and ``subset`` (``Easy_set`` or ``Hard_set``); other fields
(``question_label``) are ignored. A bad record is a :class:`~complexif.io.DataError` naming the
file, the line (JSONL) or index (JSON array, dataset row) and the field.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from complexif.io import DataError, iter_jsonl, read_text

SUBSETS = ("Easy_set", "Hard_set")
HUB_ID = "kqsong/InFoBench"
HOW_TO_GET = (
    "InFoBench is not shipped with the repository; while online, save it with\n"
    "  python -c \"from datasets import load_dataset; load_dataset('kqsong/InFoBench', "
    "split='train').to_json('data/benchmarks/infobench/infobench.jsonl')\"\n"
    "and point evaluate.infobench.source at that file"
)
# Files a `datasets` save_to_disk folder holds (a Dataset, or a DatasetDict of splits).
_SAVED_DATASET = ("state.json", "dataset_dict.json")


@dataclass(frozen=True)
class Item:
    id: str
    instruction: str
    input: str
    category: str
    subset: str
    questions: tuple[str, ...]

    @property
    def prompt(self) -> str:
        """What the evaluated model is asked: the instruction, then the input when there is one
        (InFoBench's own layout)."""
        if not self.input:
            return self.instruction
        return f"{self.instruction}\n\n{self.input}\n"


def load_infobench(source: str | os.PathLike[str], split: str) -> list[Item]:
    """Items from ``source``: a ``.jsonl`` or ``.json`` (array) file, a folder holding one such
    file or a ``datasets`` save_to_disk folder, or else a hub dataset id (``split`` of it)."""
    path = Path(source)
    if path.is_file():
        return _validated(str(path), _file_records(path))
    if path.is_dir():
        return _validated(str(path), _dir_records(path, split))
    text = str(source)
    if text.endswith((".json", ".jsonl")) or text.startswith(("/", ".", "~")):
        # Clearly meant as a path: the hub would only add a confusing "not found" of its own.
        raise DataError(f"{source}: file not found. {HOW_TO_GET}")
    return _validated(text, _hub_records(text, split))


def _file_records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, record)`` pairs; ``where`` is ``file:line`` or ``file[index]``."""
    if path.suffix == ".jsonl":
        for lineno, rec in iter_jsonl(path):
            yield f"{path}:{lineno}", rec
    elif path.suffix == ".json":
        try:
            data = json.loads(read_text(path))
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{path}:{exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno})"
            ) from exc
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a JSON array of items, got {type(data).__name__}")
        for i, rec in enumerate(data):
            if not isinstance(rec, dict):
                raise DataError(f"{path}[{i}]: expected a JSON object, got {type(rec).__name__}")
            yield f"{path}[{i}]", rec
    else:
        raise DataError(f"{path}: expected a .jsonl or .json file")


def _dir_records(path: Path, split: str) -> Iterable[tuple[str, dict[str, Any]]]:
    if any((path / name).is_file() for name in _SAVED_DATASET):
        return _saved_dataset_records(path, split)
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in (".jsonl", ".json"))
    if len(files) != 1:
        found = ", ".join(p.name for p in files) or "none"
        raise DataError(
            f"{path}: expected one .jsonl or .json file or a saved dataset, found {found}"
        )
    return _file_records(files[0])


def _saved_dataset_records(path: Path, split: str) -> Iterator[tuple[str, dict[str, Any]]]:
    from datasets import DatasetDict, load_from_disk

    data = load_from_disk(str(path))
    where = str(path)
    if isinstance(data, DatasetDict):
        if split not in data:
            raise DataError(f"{path}: no split {split!r} (splits: {', '.join(sorted(data))})")
        data = data[split]
        where = f"{path}[{split}]"
    for i, rec in enumerate(data):
        yield f"{where}[{i}]", rec


def _hub_records(dataset_id: str, split: str) -> list[tuple[str, dict[str, Any]]]:
    try:
        from datasets import load_dataset

        data = load_dataset(dataset_id, split=split)
    except Exception as exc:  # offline, unknown id, no `datasets`: all say the same to a user
        raise DataError(
            f"{dataset_id}: not a local file or folder, and loading it as a hub dataset "
            f"(split {split!r}) failed: {type(exc).__name__}: {exc}\n{HOW_TO_GET}"
        ) from exc
    return [(f"{dataset_id}[{split}][{i}]", rec) for i, rec in enumerate(data)]


def _validated(source: str, records: Iterable[tuple[str, Mapping[str, Any]]]) -> list[Item]:
    items: list[Item] = []
    seen: dict[str, str] = {}
    for where, rec in records:
        item = _item(where, rec)
        if item.id in seen:
            raise DataError(f"{where}: field 'id' {item.id!r} repeats {seen[item.id]}")
        seen[item.id] = where
        items.append(item)
    if not items:
        raise DataError(f"{source}: no items")
    return items


def _text(where: str, rec: Mapping[str, Any], name: str, *, empty_ok: bool = False) -> str:
    if name not in rec:
        raise DataError(f"{where}: missing field {name!r}")
    value = rec[name]
    if value is None and empty_ok:
        return ""
    if not isinstance(value, str):
        raise DataError(f"{where}: field {name!r} must be str, got {type(value).__name__}")
    if not empty_ok and not value.strip():
        raise DataError(f"{where}: field {name!r} is empty")
    return value


def _item(where: str, rec: Mapping[str, Any]) -> Item:
    item_id = _text(where, rec, "id")
    instruction = _text(where, rec, "instruction")
    input_text = _text(where, rec, "input", empty_ok=True)
    category = _text(where, rec, "category", empty_ok=True)
    subset = _text(where, rec, "subset")
    if subset not in SUBSETS:
        raise DataError(f"{where}: field 'subset' must be one of {SUBSETS}, got {subset!r}")
    if "decomposed_questions" not in rec:
        raise DataError(f"{where}: missing field 'decomposed_questions'")
    questions = rec["decomposed_questions"]
    if not isinstance(questions, (list, tuple)):
        raise DataError(
            f"{where}: field 'decomposed_questions' must be list, got {type(questions).__name__}"
        )
    if not questions:
        raise DataError(f"{where}: field 'decomposed_questions' is empty")
    for i, q in enumerate(questions):
        if not isinstance(q, str) or not q.strip():
            raise DataError(
                f"{where}: field 'decomposed_questions' item {i} must be a non-empty string, "
                f"got {q!r}"
            )
    return Item(item_id, instruction, input_text, category, subset, tuple(questions))


def select_items(items: Sequence[Item], n: int | None, seed: int) -> list[Item]:
    """A seeded subset of ``n`` items (``None``: all) with the Easy/Hard mix of the full set,
    sorted by id. It depends only on the items (not their order) and ``seed``.

    The subset sizes are the largest-remainder apportionment of ``n``; each subset's items are
    shuffled by ``seed`` from id order and the first ones taken.
    """
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"n must be an integer >= 1 or None, got {n!r}")
    pool = sorted(items, key=lambda item: item.id)
    if n is None or n >= len(pool):
        return pool
    by_subset = {s: [item for item in pool if item.subset == s] for s in SUBSETS}
    shares = {s: n * len(members) / len(pool) for s, members in by_subset.items()}
    take = {s: int(share) for s, share in shares.items()}
    # Largest remainder first; ties go to the subset named first, so the split is fixed.
    for s in sorted(SUBSETS, key=lambda s: (-(shares[s] - take[s]), s))[: n - sum(take.values())]:
        take[s] += 1
    rng = random.Random(seed)
    chosen: list[Item] = []
    for s in SUBSETS:
        members = list(by_subset[s])
        rng.shuffle(members)
        chosen.extend(members[: take[s]])
    return sorted(chosen, key=lambda item: item.id)
