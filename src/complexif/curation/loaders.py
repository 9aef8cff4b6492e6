"""Load seed instructions from plain JSONL, Alpaca JSON and ShareGPT JSON/JSONL files.

Every loader validates every record and raises :class:`~complexif.io.DataError` naming the file, the
line and the field of the first bad one, because a silently mangled seed pool poisons every later
stage. Records that are well formed but unusable (an empty instruction, a conversation without a
human turn) are not errors: they are returned in ``LoadResult.skipped`` with a reason, so nothing is
ever dropped without a trace.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from complexif.ids import content_id
from complexif.io import DataError, iter_jsonl, parse_json_line, require_fields

if TYPE_CHECKING:
    from complexif.config import SeedSource

SeedFormat = Literal["auto", "jsonl", "alpaca", "sharegpt"]
FORMATS: tuple[str, ...] = ("auto", "jsonl", "alpaca", "sharegpt")

# Field names tried, in order, when a plain JSONL file does not say which field holds the prompt.
DEFAULT_TEXT_FIELDS: tuple[str, ...] = ("instruction", "prompt", "text")

# ShareGPT dumps use several speaker names for the same roles; anything outside these sets is
# rejected rather than guessed at, because mislabelling a model turn as the seed is worse than failing.
HUMAN_ROLES = frozenset({"human", "user"})
OTHER_ROLES = frozenset(
    {"gpt", "assistant", "system", "chatgpt", "bing", "bard", "model", "tool", "function",
     "function_call", "observation", "developer"}
)  # fmt: skip

_WS_RE = re.compile(r"\s+")


class _PunctTable(dict[int, int]):
    """``str.translate`` table mapping Unicode punctuation to a space, filled lazily.

    Precomputing all 1.1M code points costs more than it saves; caching per code point makes
    normalising megabytes of benchmark text several times faster than a per-character loop.
    """

    def __missing__(self, cp: int) -> int:
        value = 32 if unicodedata.category(chr(cp)).startswith("P") else cp
        self[cp] = value
        return value


_PUNCT_TO_SPACE = _PunctTable()


def normalize_text(text: str) -> str:
    """Lowercase, turn Unicode punctuation into spaces and collapse whitespace.

    This is the one normalisation used for seed ids, exact dedup, n-gram shingles and
    decontamination, so two texts that differ only in case, spacing or punctuation are treated as the
    same text everywhere. Punctuation becomes a space (not nothing) so ``end.Next`` still splits into
    two words.
    """
    text = unicodedata.normalize("NFKC", text).lower().translate(_PUNCT_TO_SPACE)
    return _WS_RE.sub(" ", text).strip()


def seed_id(text: str) -> str:
    """Stable id of a seed's content: the same normalised text always gets the same id."""
    return content_id(normalize_text(text), prefix="seed-")


@dataclass(frozen=True)
class SeedRecord:
    """One seed instruction.

    ``source`` is ``"<format>:<file name>"`` so a report can say where a seed came from without
    leaking absolute paths into artifacts.
    """

    id: str
    text: str
    source: str
    category: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        """The JSONL form of the seeds artifact (fields checked by expectations/seeds.json)."""
        return {"id": self.id, "text": self.text, "source": self.source, "category": self.category}


@dataclass(frozen=True)
class SkipReason:
    """A well-formed record that was not turned into a seed, and why."""

    file: str
    line: int
    reason: str


@dataclass
class LoadResult:
    records: list[SeedRecord] = field(default_factory=list)
    skipped: list[SkipReason] = field(default_factory=list)

    def skip_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for s in self.skipped:
            counts[s.reason] = counts.get(s.reason, 0) + 1
        return counts


# --------------------------------------------------------------------------------------------------
# helpers


def _read_text(path: Path) -> str:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def iter_json_array(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, element)`` for each element of a top-level JSON array.

    ``json.load`` forgets where each element started; decoding element by element keeps the line
    number so validation errors can point at the offending record in a multi-megabyte file.
    """
    decoder = json.JSONDecoder()
    i = _skip_ws(text, 1 if text.startswith("\ufeff") else 0)
    if i >= len(text) or text[i] != "[":
        raise DataError(f"{path}:1: expected a JSON array of records")
    line, line_pos = 1, 0

    def line_at(pos: int) -> int:
        # Count newlines incrementally; recounting from 0 each time would be quadratic.
        nonlocal line, line_pos
        line += text.count("\n", line_pos, pos)
        line_pos = pos
        return line

    i = _skip_ws(text, i + 1)
    if i < len(text) and text[i] == "]":
        end = i + 1
    else:
        while True:
            start_line = line_at(i)
            try:
                obj, i = decoder.raw_decode(text, i)
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"{path}:{exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno})"
                ) from exc
            yield start_line, obj
            i = _skip_ws(text, i)
            if i < len(text) and text[i] == ",":
                i = _skip_ws(text, i + 1)
                continue
            if i < len(text) and text[i] == "]":
                end = i + 1
                break
            raise DataError(f"{path}:{line_at(min(i, len(text)))}: expected ',' or ']' in array")
    if _skip_ws(text, end) != len(text):
        raise DataError(f"{path}:{line_at(_skip_ws(text, end))}: unexpected data after the array")


def _optional_id(path: Path, lineno: int, rec: dict[str, Any], text: str) -> str:
    raw = rec.get("id")
    if raw is None:
        return seed_id(text)
    # bool is an int subclass; an id of `true` is a bug in the producer, not an id.
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        raise DataError(f"{path}:{lineno}: field 'id' must be str or int, got {type(raw).__name__}")
    sid = str(raw).strip()
    if not sid:
        raise DataError(f"{path}:{lineno}: field 'id' is empty")
    return sid


def _optional_str(path: Path, lineno: int, rec: dict[str, Any], name: str) -> str | None:
    value = rec.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise DataError(f"{path}:{lineno}: field {name!r} must be str, got {type(value).__name__}")
    return value


def _join_input(instruction: str, extra: str | None) -> str:
    # Alpaca convention: the optional input is context appended after a blank line.
    instruction = instruction.strip()
    if extra and extra.strip():
        return f"{instruction}\n\n{extra.strip()}"
    return instruction


# --------------------------------------------------------------------------------------------------
# plain JSONL


def load_jsonl_seeds(path: str | Path, field_name: str | None = None) -> LoadResult:
    """Load one seed per JSON line.

    The prompt is read from ``field_name`` when given (then it is required), else from the first of
    ``instruction``, ``prompt``, ``text`` that is present. An optional ``input`` is appended as in
    Alpaca; optional ``id`` and ``category`` are kept.
    """
    path = Path(path)
    source = f"jsonl:{path.name}"
    result = LoadResult()
    for lineno, rec in iter_jsonl(path):
        if field_name is not None:
            key = field_name
        else:
            key = next((k for k in DEFAULT_TEXT_FIELDS if k in rec), DEFAULT_TEXT_FIELDS[0])
            if key not in rec:
                raise DataError(
                    f"{path}:{lineno}: missing field 'instruction' (also tried 'prompt', 'text')"
                )
        require_fields(path, lineno, rec, {key: str})
        extra = _optional_str(path, lineno, rec, "input")
        category = _optional_str(path, lineno, rec, "category")
        text = _join_input(rec[key], extra)
        if not text:
            result.skipped.append(SkipReason(str(path), lineno, f"empty field {key!r}"))
            continue
        sid = _optional_id(path, lineno, rec, text)
        result.records.append(SeedRecord(sid, text, source, category or None))
    return result


# --------------------------------------------------------------------------------------------------
# Alpaca


def _alpaca_from_text(path: Path, text: str) -> LoadResult:
    source = f"alpaca:{path.name}"
    result = LoadResult()
    for lineno, rec in iter_json_array(path, text):
        if not isinstance(rec, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}")
        require_fields(path, lineno, rec, {"instruction": str})
        extra = _optional_str(path, lineno, rec, "input")
        _optional_str(path, lineno, rec, "output")  # unused, but a non-string means a broken file
        category = _optional_str(path, lineno, rec, "category")
        seed = _join_input(rec["instruction"], extra)
        if not rec["instruction"].strip():
            result.skipped.append(SkipReason(str(path), lineno, "empty field 'instruction'"))
            continue
        sid = _optional_id(path, lineno, rec, seed)
        result.records.append(SeedRecord(sid, seed, source, category or None))
    return result


def load_alpaca_seeds(path: str | Path) -> LoadResult:
    """Load an Alpaca-style JSON array of ``{instruction, input, output}``.

    The seed is ``instruction`` followed by ``"\\n\\n" + input`` when ``input`` is non-empty; the
    output is ignored because the pipeline generates its own responses.
    """
    path = Path(path)
    return _alpaca_from_text(path, _read_text(path))


# --------------------------------------------------------------------------------------------------
# ShareGPT


def _turn_text(path: Path, lineno: int, where: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    # OpenAI-style content parts: keep the text parts, a prompt with only images has no text seed.
    if isinstance(value, list) and all(isinstance(p, dict) for p in value):
        return "\n".join(p["text"] for p in value if isinstance(p.get("text"), str))
    raise DataError(f"{path}:{lineno}: field {where!r} must be str, got {type(value).__name__}")


def _sharegpt_record(path: Path, lineno: int, rec: Any, source: str, result: LoadResult) -> None:
    if not isinstance(rec, dict):
        raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}")
    if "conversations" in rec:
        turns_key, role_key, text_key = "conversations", "from", "value"
    elif "messages" in rec:
        turns_key, role_key, text_key = "messages", "role", "content"
    else:
        raise DataError(f"{path}:{lineno}: missing field 'conversations' (or 'messages')")
    turns = rec[turns_key]
    if not isinstance(turns, list):
        raise DataError(
            f"{path}:{lineno}: field {turns_key!r} must be list, got {type(turns).__name__}"
        )
    first_human: str | None = None
    for k, turn in enumerate(turns):
        where = f"{turns_key}[{k}]"
        if not isinstance(turn, dict):
            raise DataError(
                f"{path}:{lineno}: field {where!r} must be object, got {type(turn).__name__}"
            )
        for key in (role_key, text_key):
            if key not in turn:
                raise DataError(f"{path}:{lineno}: missing field '{where}.{key}'")
        role = turn[role_key]
        if not isinstance(role, str) or role.lower() not in HUMAN_ROLES | OTHER_ROLES:
            raise DataError(
                f"{path}:{lineno}: field '{where}.{role_key}' has unknown role {role!r}"
            )
        # Validate every turn (not just up to the first human one) so a broken file fails loudly.
        text = _turn_text(path, lineno, f"{where}.{text_key}", turn[text_key])
        if first_human is None and role.lower() in HUMAN_ROLES:
            first_human = text
    if first_human is None:
        result.skipped.append(SkipReason(str(path), lineno, "no human turn"))
        return
    seed = first_human.strip()
    if not seed:
        result.skipped.append(SkipReason(str(path), lineno, "empty first human turn"))
        return
    category = _optional_str(path, lineno, rec, "category")
    sid = _optional_id(path, lineno, rec, seed)
    result.records.append(SeedRecord(sid, seed, source, category or None))


def _sharegpt_from_text(path: Path, text: str) -> LoadResult:
    source = f"sharegpt:{path.name}"
    result = LoadResult()
    if text.lstrip("\ufeff \t\r\n").startswith("["):
        for lineno, rec in iter_json_array(path, text):
            _sharegpt_record(path, lineno, rec, source, result)
    else:
        for lineno, rec in iter_jsonl(path):
            _sharegpt_record(path, lineno, rec, source, result)
    return result


def load_sharegpt_seeds(path: str | Path) -> LoadResult:
    """Load ShareGPT conversations (JSON array or JSONL); the first human/user turn is the seed.

    Both the ``conversations: [{from, value}]`` and the ``messages: [{role, content}]`` layouts are
    accepted. Conversations with no human turn are skipped with the reason ``"no human turn"``.
    """
    path = Path(path)
    return _sharegpt_from_text(path, _read_text(path))


# --------------------------------------------------------------------------------------------------
# dispatch


def _first_jsonl_record(path: Path, text: str) -> dict[str, Any] | None:
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        rec = parse_json_line(path, lineno, line)
        return rec if isinstance(rec, dict) else None
    return None


def sniff_format(path: str | Path, text: str | None = None) -> str:
    """Guess ``jsonl``, ``alpaca`` or ``sharegpt`` from the first record of a file."""
    path = Path(path)
    if text is None:
        text = _read_text(path)
    body = text.lstrip("\ufeff \t\r\n")
    if not body:
        # An empty file is a valid, empty JSONL file; loading it yields no records.
        return "jsonl"
    if body.startswith("["):
        first = next(iter(iter_json_array(path, text)), None)
        if first is None:
            return "alpaca"  # empty array: either loader returns nothing
        _, rec = first
        if isinstance(rec, dict) and ("conversations" in rec or "messages" in rec):
            return "sharegpt"
        if isinstance(rec, dict) and "instruction" in rec:
            return "alpaca"
        raise DataError(
            f"{path}:1: cannot detect seed format (array records need 'instruction', "
            "'conversations' or 'messages')"
        )
    rec = _first_jsonl_record(path, text)
    if isinstance(rec, dict) and ("conversations" in rec or "messages" in rec):
        return "sharegpt"
    return "jsonl"


def load_all_sources(sources: Sequence[SeedSource]) -> LoadResult:
    """Every source's records and skips, in order (``seeds.sources`` or ``conifer.seeds.sources``)."""
    loaded = LoadResult()
    for source in sources:
        part = load_seeds(source.path, source.format, source.field)
        loaded.records.extend(part.records)
        loaded.skipped.extend(part.skipped)
    return loaded


def load_seeds(
    path: str | Path, format: SeedFormat | str, field_name: str | None = None
) -> LoadResult:
    """Load seeds from ``path`` in ``format`` (``auto`` sniffs the first record)."""
    path = Path(path)
    if format not in FORMATS:
        raise ValueError(f"unknown seed format {format!r}; expected one of {', '.join(FORMATS)}")
    text = _read_text(path)
    fmt = sniff_format(path, text) if format == "auto" else format
    if fmt == "alpaca":
        return _alpaca_from_text(path, text)
    if fmt == "sharegpt":
        return _sharegpt_from_text(path, text)
    return load_jsonl_seeds(path, field_name=field_name)
