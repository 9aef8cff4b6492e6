"""Format and numerical requirements: the shipped template lists and the seeded draw."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from pathlib import Path

import pytest

from complexif.config import FormatNumericalConfig
from complexif.conifer.format_numerical import (
    RequirementTemplate,
    draw_requirements,
    load_requirements,
)
from complexif.curation.decontaminate import BenchmarkIndex, load_ifeval_prompts
from complexif.curation.loaders import SeedRecord, normalize_text
from complexif.io import DataError, read_jsonl
from tests.conftest import REPO_ROOT, repo_params, updated

PARAMS = repo_params()
CFG: FormatNumericalConfig = PARAMS.conifer.format_numerical
SHIPPED = REPO_ROOT / PARAMS.paths.prompts_dir / PARAMS.conifer.prompts_dir / CFG.constraints_file
IFEVAL = REPO_ROOT / "data" / "benchmarks" / "ifeval" / "input_data.jsonl"
LISTS = load_requirements(SHIPPED)


def every_filling(t: RequirementTemplate) -> list[str]:
    names = sorted(t.choices)
    texts = []
    for values in itertools.product(*(t.choices[n] for n in names)):
        text = t.text
        for name, value in zip(names, values, strict=True):
            text = text.replace("{" + name + "}", str(value))
        texts.append(text)
    return texts


# ---------------------------------------------------------------------------------------------
# the shipped lists


def test_the_shipped_lists_have_the_papers_sizes_and_no_repeats() -> None:
    assert len(LISTS["format"]) == 21 and len(LISTS["numerical"]) == 12
    texts = [normalize_text(t.text) for ts in LISTS.values() for t in ts]
    assert len(set(texts)) == len(texts)
    # A numerical requirement carries a number to meet.
    assert all(t.choices for t in LISTS["numerical"])


def test_no_shipped_requirement_shares_an_8gram_with_ifeval() -> None:
    """The rule seeds and generated instructions pass (``seeds.decontam_ngram``), applied to
    every filling of every template; short ones must not sit inside an IFEval prompt either."""
    prompts = load_ifeval_prompts(IFEVAL)
    index = BenchmarkIndex(prompts, n=PARAMS.seeds.decontam_ngram, min_contain_words=4)
    filled = [text for ts in LISTS.values() for t in ts for text in every_filling(t)]
    hits = {text: index.match(SeedRecord("req", text, "conifer")) for text in filled}
    assert {t: h.matched_ngram for t, h in hits.items() if h is not None} == {}
    # IFEval's own sentences (5+ words) are not in ours either.
    sentences = {
        normalize_text(s)
        for p in read_jsonl(IFEVAL)
        for s in re.split(r"(?<=[.!?])\s+|\n+", p["prompt"])
        if len(s.split()) >= 5
    }
    assert [t for t in filled if any(s in normalize_text(t) for s in sentences)] == []
    # The check can fail: an IFEval prompt's own sentence is caught.
    first = read_jsonl(IFEVAL)[0]["prompt"]
    assert index.match(SeedRecord("req", first, "conifer")) is not None


def test_requirements_that_contradict_each_other_share_a_group() -> None:
    def group_of(start: str) -> str | None:
        (t,) = [t for ts in LISTS.values() for t in ts if t.text.startswith(start)]
        return t.group

    # A word limit and a word minimum; two ways to end the reply; two first lines.
    assert group_of("Keep the whole reply under") == group_of("Make the reply at least")
    enders = ["End the reply with", "Close with a line", "Finish with exactly", "End with a"]
    assert len({group_of(s) for s in enders}) == 1 and group_of(enders[0]) is not None
    assert group_of("Open the reply with") == group_of("Put a short title between") is not None


# ---------------------------------------------------------------------------------------------
# draw_requirements


def draws(cfg: FormatNumericalConfig, n: int = 1500) -> list[list[str]]:
    return [draw_requirements(LISTS, cfg, key=f"cin-{i}") for i in range(n)]


def kind_of(text: str) -> str:
    for kind, ts in LISTS.items():
        if any(text in every_filling(t) for t in ts):
            return kind
    raise AssertionError(f"not from the lists: {text!r}")


def test_a_draw_is_seeded_by_key_and_settings_only() -> None:
    cfg = updated(CFG, fraction=1.0)
    first = draws(cfg, 50)
    assert draws(cfg, 50) == first
    assert draw_requirements(LISTS, cfg, "cin-7") == first[7]
    assert draws(updated(cfg, seed=CFG.seed + 1), 50) != first
    assert len({tuple(d) for d in first}) > 25  # not one draw for every key


def test_the_sampled_fraction_gets_requirements_and_the_rest_none() -> None:
    assert all(d == [] for d in draws(updated(CFG, fraction=0.0), 300))
    assert all(d for d in draws(updated(CFG, fraction=1.0), 300))
    share = sum(bool(d) for d in draws(updated(CFG, fraction=0.3), 3000)) / 3000
    assert 0.25 < share < 0.35  # 3000 draws: the standard error is under 0.01


def test_counts_come_from_the_config() -> None:
    sizes = Counter(len(d) for d in draws(updated(CFG, fraction=1.0, counts=[1, 3])))
    assert set(sizes) == {1, 3} and min(sizes.values()) > 500
    sizes = Counter(len(d) for d in draws(updated(CFG, fraction=1.0, counts=[2]), 300))
    assert set(sizes) == {2}


def test_format_share_splits_format_from_numerical() -> None:
    only_format = draws(updated(CFG, fraction=1.0, counts=[3], format_share=1.0), 200)
    assert {kind_of(r) for d in only_format for r in d} == {"format"}
    only_numbers = draws(updated(CFG, fraction=1.0, counts=[3], format_share=0.0), 200)
    assert {kind_of(r) for d in only_numbers for r in d} == {"numerical"}
    mixed = [kind_of(r) for d in draws(updated(CFG, fraction=1.0, format_share=0.6)) for r in d]
    assert 0.55 < mixed.count("format") / len(mixed) < 0.65


def test_placeholders_are_filled_from_their_choices() -> None:
    drawn = [r for d in draws(updated(CFG, fraction=1.0, counts=[3], format_share=0.0)) for r in d]
    assert not any("{" in r for r in drawn)
    # Every value of every numerical template turns up.
    assert set(drawn) == {text for t in LISTS["numerical"] for text in every_filling(t)}


def test_no_draw_holds_two_requirements_of_one_group_or_one_twice() -> None:
    # Regression: a draw could ask for "under 80 words" and "at least 150 words" at once, or
    # end the reply two ways; about 4% of the variants were contradictions by construction.
    group = {text: t.group for ts in LISTS.values() for t in ts for text in every_filling(t)}
    for d in draws(updated(CFG, fraction=1.0, counts=[3], format_share=0.5), 3000):
        assert len(d) == 3 and len({normalize_text(r) for r in d}) == 3
        groups = [group[r] for r in d if group[r] is not None]
        assert len(groups) == len(set(groups)), d


def test_a_draw_runs_short_when_too_few_compatible_templates_exist() -> None:
    lists = {
        "format": [RequirementTemplate("format", f"Format rule {i}.", group="g") for i in range(3)],
        "numerical": [RequirementTemplate("numerical", "Use {n} words.", {"n": [5]})],
    }
    cfg = updated(CFG, fraction=1.0, counts=[3], format_share=1.0)
    for i in range(50):
        d = draw_requirements(lists, cfg, f"k{i}")
        # One format rule (the group allows one), then the numerical one makes up the count.
        assert len(d) == 2 and d[1] == "Use 5 words."


# ---------------------------------------------------------------------------------------------
# load_requirements errors: one line, naming the file, the line and the entry


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "reqs.yaml"
    path.write_text(text, encoding="utf-8")
    return path


GOOD_NUMERICAL = "numerical:\n  - text: Use {n} words.\n    choices: {n: [5, 6]}\n"


@pytest.mark.parametrize(
    ("text", "where", "why"),
    [
        ("format: [a\n", ":2", "not valid YAML"),
        ("- a\n- b\n", "", "expected a mapping with 'format' and 'numerical'"),
        (GOOD_NUMERICAL, "", "^[^:]*: format: expected a non-empty list"),
        ("format: []\n" + GOOD_NUMERICAL, ":1", "format: expected a non-empty list"),
        ("format:\n  - text: A.\n  - just a string\n" + GOOD_NUMERICAL, ":3", r"format\[1\]"),
        ("format:\n  - txt: A.\n" + GOOD_NUMERICAL, ":2", r"format\[0\]: expected \{text"),
        (
            "format:\n  - text: A.\n    choice: {n: [1]}\n" + GOOD_NUMERICAL,
            ":2",
            r"format\[0\]: unknown keys \['choice'\]",
        ),
        (
            "format:\n  - text: A.\nnumerical:\n  - text: Use {n} words.\n",
            ":4",
            r"numerical\[0\]: placeholders \['n'\] do not match choices \[\]",
        ),
        (
            "format:\n  - text: A.\nnumerical:\n  - text: Use {n} words.\n    choices: {n: []}\n",
            ":4",
            r"numerical\[0\]\.choices: expected a mapping of names to non-empty",
        ),
        (
            "format:\n  - text: A.\n    choices: {m: [1]}\n" + GOOD_NUMERICAL,
            ":2",
            r"format\[0\]: placeholders \[\] do not match choices \['m'\]",
        ),
        ("format:\n  - text: A.\n    group: [x]\n" + GOOD_NUMERICAL, ":2", r"format\[0\]\.group"),
    ],
)
def test_a_bad_file_is_a_one_line_error_naming_file_line_and_entry(
    tmp_path: Path, text: str, where: str, why: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(DataError) as info:
        load_requirements(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}{where}:"), message
    assert re.search(why, message), message


def test_a_missing_file_is_a_data_error(tmp_path: Path) -> None:
    # Regression: it was a FileNotFoundError traceback, not the stage's one-line message.
    with pytest.raises(DataError, match=f"{tmp_path / 'nope.yaml'}: file not found"):
        load_requirements(tmp_path / "nope.yaml")


def test_a_good_file_loads(tmp_path: Path) -> None:
    path = _write(tmp_path, "format:\n  - text: A.\n    group: ends\n" + GOOD_NUMERICAL)
    assert load_requirements(path) == {
        "format": [RequirementTemplate("format", "A.", {}, "ends")],
        "numerical": [RequirementTemplate("numerical", "Use {n} words.", {"n": [5, 6]})],
    }
