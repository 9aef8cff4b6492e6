"""Linear-time stand-ins for the official IFEval regexes that backtrack quadratically.

Four official checkers run a regex whose failed attempts rescan the rest of a line (or of the
text) from every possible start: ``\\[.*?\\]`` (placeholders), ``^\\s*\\*[^\\*].*$`` and
``^\\s*-.*$`` (bullets; ``\\s*`` crosses blank lines), ``<<[^\\n]+>>`` (title) and
``\\s*<marker>.*$`` (postscript). On degenerate input (a megabyte of ``[``, of newlines, of
``<`` or of spaces) each takes from minutes to hours, and ``ifeval score`` reads responses
from anyone. The functions here return exactly what the official expressions give (the same
match count, the same titles, the same yes/no; tests compare them on random text) while
visiting each character a bounded number of times: every ``find`` below starts where the
previous one of its kind stopped, or past it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

# ``\s`` exactly as the official patterns mean it (Unicode whitespace); a bare run never backtracks.
_WHITESPACE_RUN = re.compile(r"\s*")


def count_placeholders(text: str) -> int:
    """``len(re.findall(r"\\[.*?\\]", text))``.

    From a ``[`` the lazy ``.*?`` stops at the first ``]``; it fails when a newline (``.``
    excludes only ``\\n``) or the end comes first, and then every ``[`` before that newline
    fails the same way, so the scan resumes after it.
    """
    count, pos, n = 0, 0, len(text)
    close = newline = -1  # next "]" / "\n" at or after the current "[" (-1: not looked up yet)
    while pos < n:
        open_ = text.find("[", pos)
        if open_ < 0:
            break
        if close <= open_:
            close = text.find("]", open_ + 1)
            if close < 0:
                close = n  # none left: every later "[" fails
        if newline <= open_:
            newline = text.find("\n", open_ + 1)
            if newline < 0:
                newline = n
        if close < newline:
            count += 1
            pos = close + 1
        elif newline < n:
            pos = newline + 1
        else:
            break
    return count


def _line_start_matches(text: str, accept: str, reject_next: str | None) -> int:
    """Matches of ``^\\s*<accept><not reject_next>.*$`` (MULTILINE), counted as findall does.

    From a line start the whitespace run ends at ``w``; only ``text[w]`` can be the bullet
    character (backing off the run leaves a whitespace character there). A failed start fails
    for every line start inside the same run, so the scan moves past it; a match ends at the end
    of the line its ``.*`` is on.
    """
    count, pos, n = 0, 0, len(text)
    while pos <= n:
        run_end = _WHITESPACE_RUN.match(text, pos).end()
        body = run_end + 1  # after the bullet character
        if reject_next is not None:
            # ``[^\*]`` needs one more character, and it may be a newline.
            ok = run_end < n and text[run_end] == accept and body < n and text[body] != reject_next
            body += 1
        else:
            ok = run_end < n and text[run_end] == accept
        if ok:
            count += 1
            end = text.find("\n", min(body, n))
            end = n if end < 0 else end
            # findall resumes at the match end, which is a line start only after a newline.
            if end > 0 and text[end - 1] == "\n":
                pos = end
                continue
        else:
            end = run_end
        newline = text.find("\n", end)
        if newline < 0:
            break
        pos = newline + 1
    return count


def count_bullets(text: str) -> int:
    """``len(findall(r"^\\s*\\*[^\\*].*$")) + len(findall(r"^\\s*-.*$"))`` with ``re.MULTILINE``."""
    return _line_start_matches(text, "*", "*") + _line_start_matches(text, "-", None)


def titles(text: str) -> Iterator[str]:
    """``re.findall(r"<<[^\\n]+>>", text)``.

    Matches stay within a line. The greedy ``[^\\n]+`` runs from the line's first ``<<`` to its
    last ``>>`` (at least one character between); when that fails, every later ``<<`` on the
    line fails too. So a line holds one match or none.
    """
    for line in text.split("\n"):
        start = line.find("<<")
        if start < 0:
            continue
        end = line.rfind(">>")
        if end >= start + 3:
            yield line[start : end + 2]


def has_postscript(pattern: str, text: str) -> bool:
    """``bool(re.findall(r"\\s*" + pattern + r".*$", text, flags=re.MULTILINE))``.

    The leading ``\\s*`` may match nothing and ``.*$`` matches after any position, so the whole
    expression matches somewhere exactly when ``pattern`` does; searching ``pattern`` alone
    skips the rescans of every whitespace run from each of its positions.
    """
    return re.search(pattern, text, flags=re.MULTILINE) is not None
