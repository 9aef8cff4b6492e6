"""Atomic file output and validated JSONL input.

Every artifact is written to a temp file in the target directory and renamed into place, so a crash
never leaves half a file behind, and a stop signal (see :func:`complexif.runtime.run_stage`) never
leaves the temp file behind either. JSONL readers name the file and line of any bad record.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO


class DataError(ValueError):
    """Bad input data; the message names the file, line and field."""


def _default_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


# Signals that arrived inside an ``uninterrupted()`` block of the main thread, re-raised at its end.
_held_signals: list[int] = []
_uninterrupted_depth = 0


@contextmanager
def uninterrupted() -> Iterator[None]:
    """Hold stop signals until the block ends (main thread; other threads never see them).

    For the few steps that must not be cut in two, like creating a temp file and registering it
    for removal. Only handlers that ask :func:`hold_signal` (``run_stage``'s) are held; a held
    signal is raised again when the outermost block exits.
    """
    global _uninterrupted_depth
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _uninterrupted_depth += 1
    try:
        yield
    finally:
        _uninterrupted_depth -= 1
        if _uninterrupted_depth == 0 and _held_signals:
            signum = _held_signals.pop(0)
            _held_signals.clear()
            signal.raise_signal(signum)


def hold_signal(signum: int) -> bool:
    """For a signal handler: True if ``signum`` is held for the end of an ``uninterrupted()``."""
    if _uninterrupted_depth == 0:
        return False
    _held_signals.append(signum)
    return True


@contextmanager
def atomic_open(
    path: str | os.PathLike[str], mode: str = "w", encoding: str | None = "utf-8"
) -> Iterator[TextIO]:
    """Open a temp file beside ``path``; rename it over ``path`` only if the block succeeds.

    Text is written with ``newline=""`` (no newline translation), so the bytes on disk are
    exactly what was written on every platform. Whatever ends the block early (an error,
    Ctrl-C, a stop signal) removes the temp file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {} if "b" in mode else {"encoding": encoding, "newline": ""}
    tmp: str | None = None
    try:
        # A signal between creating the file and knowing its name would leak it; one held to
        # the end of this block is raised inside the try, which removes the file.
        with uninterrupted():
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            fh = os.fdopen(fd, mode, **kwargs)
        with fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates owner-only files; an output should get the usual permissions.
        os.chmod(tmp, _default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        raise


def write_jsonl(path: str | os.PathLike[str], records: Iterable[dict[str, Any]]) -> int:
    """Write records atomically as JSON lines; return how many were written."""
    n = 0
    with atomic_open(path) as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    return n


def write_json(path: str | os.PathLike[str], obj: Any, indent: int = 2) -> None:
    with atomic_open(path) as fh:
        json.dump(obj, fh, ensure_ascii=False, indent=indent)
        fh.write("\n")


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_open(path) as fh:
        fh.write(text)


def parse_json_line(path: str | os.PathLike[str], lineno: int, line: str) -> Any:
    """``json.loads`` whose error names the file, line and column."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from exc


def _require_utf8(path: Path, lineno: int, line: str) -> None:
    try:
        line.encode("utf-8")
    except UnicodeEncodeError as exc:
        byte = ord(line[exc.start]) - 0xDC00  # surrogateescape's code for an undecodable byte
        raise DataError(
            f"{path}:{lineno}: not UTF-8 text (byte 0x{byte:02x} at column {exc.start + 1})"
        ) from None


def read_text(path: str | os.PathLike[str]) -> str:
    """A whole UTF-8 text file; other bytes are a DataError naming the file, line and column."""
    path = Path(path)
    text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    if not text.isascii():
        for lineno, line in enumerate(text.splitlines(keepends=True), start=1):
            _require_utf8(path, lineno, line)
    return text


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, record)``; blank lines are skipped, bad JSON or UTF-8 a DataError."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    # surrogateescape: a byte that is not UTF-8 becomes a lone surrogate we can point at, line
    # by line (strict decoding fails a whole buffered chunk, with no line number).
    with path.open(encoding="utf-8", errors="surrogateescape") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.isascii():
                _require_utf8(path, lineno, line)
            if not line.strip():
                continue
            rec = parse_json_line(path, lineno, line)
            if not isinstance(rec, dict):
                raise DataError(
                    f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}"
                )
            yield lineno, rec


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    return [rec for _, rec in iter_jsonl(path)]


def require_fields(
    path: str | os.PathLike[str],
    lineno: int,
    rec: dict[str, Any],
    fields: dict[str, type | tuple[type, ...]],
) -> None:
    """Raise a DataError naming file, line and field when a required field is missing or mistyped."""
    for name, typ in fields.items():
        if name not in rec:
            raise DataError(f"{path}:{lineno}: missing field {name!r}")
        if not isinstance(rec[name], typ):
            expected = (
                typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
            )
            raise DataError(
                f"{path}:{lineno}: field {name!r} must be {expected}, got {type(rec[name]).__name__}"
            )


def write_csv(path: str | os.PathLike[str], rows: list[dict[str, Any]]) -> None:
    """Write rows atomically as CSV; the header is the union of the rows' keys, in order."""
    with atomic_open(path) as fh:
        fields = list(dict.fromkeys(k for row in rows for k in row)) or ["model"]
        writer = csv.DictWriter(fh, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)
