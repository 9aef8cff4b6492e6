"""Docker's build-context rules, without a Docker engine: which files `docker build .` sends.

A transcription of what the Docker CLI and BuildKit do with `.dockerignore`:

* reading (moby/buildkit ``frontend/dockerfile/dockerignore.ReadAll``): ``#`` lines are
  comments; each line is trimmed; a leading ``!`` makes an exception (then trimmed again); the
  pattern is cleaned like Go's ``filepath.Clean`` (so a trailing ``/`` means nothing and
  ``a/../b`` is ``b``) and a leading ``/`` dropped: patterns are relative to the context root.
* matching (moby ``patternmatcher``): ``*`` is any run of characters but ``/``, ``?`` one such
  character, ``**`` any number of whole directories (``**/x`` matches ``x`` at any depth, a
  trailing ``**`` everything below), ``[...]`` a class, ``\\`` escapes; a pattern matches the
  whole path. A path is excluded when it, or one of its parent directories, matches; the last
  pattern that matches decides, so ``!`` re-includes what earlier lines excluded.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pattern:
    text: str
    exclusion: bool  # True for a `!` line: a match re-includes the path
    regex: re.Pattern[str]

    def matches(self, path: str) -> bool:
        return self.regex.match(path) is not None


def _clean(pattern: str) -> str:
    """Go's ``filepath.Clean`` on a slash path (what ReadAll applies to every pattern)."""
    rooted = pattern.startswith("/")
    parts: list[str] = []
    for part in pattern.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append(part)
            continue
        parts.append(part)
    cleaned = "/".join(parts)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


def _to_regex(pattern: str) -> re.Pattern[str]:
    """patternmatcher's ``compile``: the pattern as an anchored regular expression."""
    out = "^"
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            if pattern[i + 1 : i + 2] == "*":
                i += 1
                if pattern[i + 1 : i + 2] == "/":  # "**/" is treated as "**"
                    i += 1
                out += ".*" if i + 1 >= len(pattern) else "(.*/)?"
            else:
                out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch in ".+()|{}$":
            out += "\\" + ch
        elif ch == "\\":
            if i + 1 < len(pattern):
                i += 1
                out += "\\" + pattern[i]
            else:
                out += "\\\\"
        else:  # "[", "]", "^" and ordinary characters pass through, as in Go
            out += ch
        i += 1
    return re.compile(out + "$", re.DOTALL)


def read_patterns(dockerignore: Path) -> list[Pattern]:
    patterns = []
    for raw in dockerignore.read_text(encoding="utf-8").splitlines():
        if raw.startswith("#"):
            continue
        line = raw.strip()
        if not line:
            continue
        exclusion = line.startswith("!")
        if exclusion:
            line = line[1:].strip()
        line = _clean(line)
        if len(line) > 1 and line.startswith("/"):
            line = line[1:]
        patterns.append(Pattern(line, exclusion, _to_regex(line)))
    return patterns


def excluded(path: str, patterns: list[Pattern]) -> bool:
    """patternmatcher ``MatchesOrParentMatches``: ``path`` (slash-separated, relative to the
    context root) or one of its parent directories matches; the last matching pattern wins."""
    parent = posixpath.dirname(path)
    parents = parent.split("/") if parent else []
    matched = False
    for pattern in patterns:
        # An exception only matters once something is excluded, and vice versa.
        if pattern.exclusion != matched:
            continue
        hit = pattern.matches(path)
        if not hit:
            hit = any(pattern.matches("/".join(parents[: i + 1])) for i in range(len(parents)))
        if hit:
            matched = not pattern.exclusion
    return matched


def context_files(root: Path, dockerignore: Path | None = None) -> set[str]:
    """Every file under ``root`` that `docker build root` sends, as paths relative to ``root``
    (everything when there is no ignore file)."""
    ignore = dockerignore or root / ".dockerignore"
    patterns = read_patterns(ignore) if ignore.is_file() else []
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if (p.is_file() or p.is_symlink())
        and not excluded(p.relative_to(root).as_posix(), patterns)
    }


def copied_by(source: str, files: set[str]) -> set[str]:
    """The files of the context that ``COPY <source> <dest>`` takes (a file, or a directory's
    whole tree; ``.`` is the whole context)."""
    source = _clean(source)
    if source in (".", "/"):
        return set(files)
    prefix = source.rstrip("/") + "/"
    return {f for f in files if f == source or f.startswith(prefix)}


def dockerfile_instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs of a Dockerfile, continuation lines joined, comments
    dropped."""
    text = dockerfile.read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            op, _, args = line.strip().partition(" ")
            out.append((op.upper(), " ".join(args.split())))
    return out
