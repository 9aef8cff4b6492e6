"""The linear scans give the official regexes' answers, and stay linear on degenerate text.

Equivalence is checked against the official expressions themselves (and the program repairs'
line patterns against their former lazy versions), on hand-picked edge cases and on many random
strings over the characters the expressions care about. Boundedness is
checked on 2 MB of each expression's worst case in a subprocess under a 120 s limit: the scans
take well under a second there, the official regexes from minutes (titles) to hours
(placeholders), so the limit only tells "seconds" from "hours", whatever the machine's load.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from complexif.constraints import _scan
from complexif.constraints.verify import build, check
from tests.conftest import REPO_ROOT


def official_placeholders(text: str) -> int:
    return len(re.findall(r"\[.*?\]", text))


def official_bullets(text: str) -> int:
    stars = re.findall(r"^\s*\*[^\*].*$", text, flags=re.MULTILINE)
    dashes = re.findall(r"^\s*-.*$", text, flags=re.MULTILINE)
    return len(stars) + len(dashes)


def official_titles(text: str) -> list[str]:
    return re.findall(r"<<[^\n]+>>", text)


def official_postscript(pattern: str, text: str) -> bool:
    return bool(re.findall(r"\s*" + pattern + r".*$", text, flags=re.MULTILINE))


# Every character class the expressions distinguish, Unicode whitespace included ("\u2028" is
# whitespace that "." still matches; "\x1c" is whitespace to "\s").
ALPHABET = "[]*-<> \t\n\r\u2028\x1cap.sPS"
TEXTS = st.text(alphabet=ALPHABET, max_size=80)
EDGE_CASES = [
    "",
    "\n",
    "[",
    "]",
    "[]",
    "[[]]",
    "[a\n]",
    "[a\n[b]",
    "[[\n[]]",
    "*",
    "*\n",
    "*\n\n",
    "*\n*\n",
    "**",
    "* a\n** b\n- c\n  - d\n\n\n* e",
    "\n\n \n*x",
    " \t*\n-",
    "<<>>",
    "<<a>>",
    "<<a>>>",
    "<<<a>>",
    "<< >> <<b>>",
    "<<a\n>>",
    "x<<a>>y<<b>>z\n<<c>>",
    "p.s. hi",
    "  \n p.p.s",
    "P.S",
]


@pytest.mark.parametrize("text", EDGE_CASES)
def test_edge_cases_match_the_official_regexes(text: str) -> None:
    assert _scan.count_placeholders(text) == official_placeholders(text)
    assert _scan.count_bullets(text) == official_bullets(text)
    assert list(_scan.titles(text)) == official_titles(text)
    for pattern in (r"p\.\s?p\.\s?s", r"p\.\s?s\.", "p.s", "^p", "s$|x"):
        assert _scan.has_postscript(pattern, text.lower()) == official_postscript(
            pattern, text.lower()
        )


@settings(max_examples=1500, deadline=None)
@given(TEXTS)
def test_random_text_matches_the_official_regexes(text: str) -> None:
    assert _scan.count_placeholders(text) == official_placeholders(text)
    assert _scan.count_bullets(text) == official_bullets(text)
    assert list(_scan.titles(text)) == official_titles(text)


@settings(max_examples=500, deadline=None)
@given(TEXTS, st.sampled_from([r"p\.\s?p\.\s?s", r"p\.\s?s\.", "p.s", "^p", "s$|x", "(a)?"]))
def test_postscript_matches_the_official_regex(text: str, pattern: str) -> None:
    assert _scan.has_postscript(pattern, text) == official_postscript(pattern, text)


def _follows(iid: str, kwargs: dict, text: str) -> bool:
    return build(iid, kwargs).check_following(text)


@settings(max_examples=300, deadline=None)
@given(TEXTS)
def test_checker_verdicts_are_the_official_ones(text: str) -> None:
    n = official_placeholders(text)
    assert _follows("detectable_content:number_placeholders", {"num_placeholders": n}, text)
    assert not _follows("detectable_content:number_placeholders", {"num_placeholders": n + 1}, text)
    bullets = {"num_bullets": official_bullets(text)}
    assert _follows("detectable_format:number_bullet_lists", bullets, text)
    titled = any(t.lstrip("<").rstrip(">").strip() for t in official_titles(text))
    assert _follows("detectable_format:title", {}, text) == titled
    ps = official_postscript(r"p\.\s?s\.", text.lower())
    assert _follows("detectable_content:postscript", {"postscript_marker": "P.S."}, text) == ps


# The program repairs' line patterns as they were, with a lazy group before a trailing class.
OLD_TITLE_LINE = re.compile(
    r"^[ \t]*(?:#{1,6}[ \t]+(?P<h>.+?)[ \t#]*|\*\*(?P<b>[^*\n]+)\*\*[ \t]*|"
    r"[Tt]itle:[ \t]*(?P<t>.+?)[ \t]*)$"
)
OLD_LINE_PREFIX = re.compile(r"^(?P<prefix>\s*(?:#{1,6}\s+|\d+[.)]\s+|-\s+)?)(?P<body>.*?)\s*$")
LINES = st.text(alphabet=" \t\u00a0#*Ttile:ab1.)-\n", max_size=40)


def _groups(pattern: re.Pattern[str], line: str) -> tuple | None:
    m = pattern.match(line)
    return None if m is None else (m.span(), m.groupdict())


@settings(max_examples=2000, deadline=None)
@given(LINES)
def test_repair_line_patterns_capture_what_the_lazy_ones_did(line: str) -> None:
    from complexif.constraints import repair

    assert _groups(repair._TITLE_LINE, line) == _groups(OLD_TITLE_LINE, line)
    assert _groups(repair._LINE_PREFIX, line) == _groups(OLD_LINE_PREFIX, line)


@pytest.mark.parametrize(
    "line",
    [
        "#",
        "# ",
        "#  ",
        "#   #",
        "# x",
        "## x ##",
        "####### x",
        "# a # b #",
        "**b**",
        "** b **",
        "Title:",
        "Title: ",
        "Title:  ",
        "title: x  ",
        "  # x\t#",
        "1. x  ",
        "- ",
        "-  x ",
        " \u00a0",
    ],
)
def test_repair_line_pattern_edge_cases(line: str) -> None:
    from complexif.constraints import repair

    assert _groups(repair._TITLE_LINE, line) == _groups(OLD_TITLE_LINE, line)
    assert _groups(repair._LINE_PREFIX, line) == _groups(OLD_LINE_PREFIX, line)


def test_a_marker_the_official_pattern_cannot_compile_is_rejected() -> None:
    from complexif.constraints.errors import InstructionArgumentError

    # Valid alone, but an inline flag in the middle of the official "\s*<marker>.*$" is not.
    with pytest.raises(InstructionArgumentError, match="postscript_marker"):
        check("detectable_content:postscript", {"postscript_marker": "(?i)note"}, "note")


def test_degenerate_megabytes_are_checked_in_seconds_not_hours(tmp_path) -> None:
    script = textwrap.dedent(
        """
        from complexif.constraints.verify import check

        n = 2_000_000
        cases = [
            ("detectable_content:number_placeholders", {"num_placeholders": 1}, "[" * n),
            ("detectable_content:number_placeholders", {"num_placeholders": 1}, "[a" * (n // 2)),
            ("detectable_format:number_bullet_lists", {"num_bullets": 1}, "x" + "\\n" * n),
            ("detectable_format:number_bullet_lists", {"num_bullets": 1}, "x" + " \\n" * (n // 2)),
            ("detectable_format:title", {}, "<" * n),
            ("detectable_format:title", {}, "<<>" * (n // 3)),
            ("detectable_content:postscript", {"postscript_marker": "P.S."}, "x" + " " * n),
            ("detectable_content:postscript", {"postscript_marker": "note"}, "x" + " " * n),
        ]
        for iid, kwargs, text in cases:
            # Blank text never reaches a checker: each case has a word in it.
            print(iid, repr(text[:3]), check(iid, kwargs, text), flush=True)
        # The program repairs' line patterns, on one long line each.
        from complexif.constraints import repair

        print("title line", bool(repair._TITLE_LINE.match("# a" + " #" * (n // 2) + "x")))
        print("line prefix", bool(repair._LINE_PREFIX.match("a" + " " * n + "b")))
        """
    )
    progress = tmp_path / "progress.txt"
    with progress.open("w") as out:
        try:
            done = subprocess.run(
                [sys.executable, "-c", script],
                cwd=REPO_ROOT,
                env={**os.environ, "PYTHONPATH": f"{REPO_ROOT / 'src'}{os.pathsep}{REPO_ROOT}"},
                stdout=out,
                stderr=subprocess.PIPE,
                text=True,
                timeout=120,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"a check ran for minutes on 2 MB; done before it:\n{progress.read_text()}")
    assert done.returncode == 0, done.stderr
    assert progress.read_text().splitlines() == [
        "detectable_content:number_placeholders '[[[' False",
        "detectable_content:number_placeholders '[a[' False",
        "detectable_format:number_bullet_lists 'x\\n\\n' False",
        "detectable_format:number_bullet_lists 'x \\n' False",
        "detectable_format:title '<<<' False",
        "detectable_format:title '<<>' False",
        "detectable_content:postscript 'x  ' False",
        "detectable_content:postscript 'x  ' False",
        "title line True",
        "line prefix True",
    ]
