"""Conifer's seed filter: short, English, distinct first user turns, none from a benchmark;
every record read is either kept or counted in the funnel under a reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from complexif.config import ConiferSeedsConfig, Params
from complexif.conifer.seeds import filter_seeds, language_of, select_seeds
from complexif.curation.funnel import Funnel
from complexif.curation.loaders import SeedRecord
from complexif.io import DataError, read_jsonl, write_jsonl
from tests.conftest import REPO_ROOT, repo_params, updated

CFG: ConiferSeedsConfig = repo_params().conifer.seeds
IFEVAL = REPO_ROOT / "data" / "benchmarks" / "ifeval" / "input_data.jsonl"

ENGLISH = [
    "Help me plan a vegetable garden for a small backyard",
    "Explain how compound interest works for a savings account",
    "What should I pack for a week of hiking in the Alps",
    "Write a short poem about the first snow of winter",
    "Suggest a few ways to stay focused while working from home",
    "How do I make a sourdough starter from scratch at home",
]


def rec(i: int, text: str) -> SeedRecord:
    return SeedRecord(f"s{i:02d}", text, "test")


def test_the_shipped_settings_are_the_papers() -> None:
    assert (CFG.max_chars, CFG.min_words, CFG.language) == (200, 5, "en")


def test_each_rule_drops_with_its_reason_and_the_counts_add_up() -> None:
    cfg = updated(CFG, n=None)
    records = [
        rec(0, ENGLISH[0]),
        rec(1, ("Describe " + "a long and winding road " * 8).strip() + "!"),  # 201 characters
        rec(3, "Tell me a joke"),  # 4 words
        rec(4, "Pouvez-vous m'expliquer comment les abeilles fabriquent le miel"),
        rec(5, "Wie funktioniert eigentlich ein Kühlschrank im Detail"),
        rec(6, "  HELP me plan a vegetable garden, for a small backyard!  "),  # s00 again
        rec(7, ENGLISH[1]),
    ]
    assert len(records[1].text) == 201
    out = filter_seeds(records, cfg)
    assert [r.id for r in out.kept] == ["s00", "s07"]
    assert out.n_in == 7 == len(out.kept) + sum(out.dropped.values())
    assert out.dropped == {"too_long": 1, "too_few_words": 1, "not_en": 2, "duplicate": 1}


def test_the_limits_are_inclusive() -> None:
    cfg = updated(CFG, n=None, max_chars=50, min_words=5)
    five_words = "Explain gardens to busy parents"
    exactly_50 = "Explain how to plan a garden for a busy family now"
    assert len(exactly_50) == 50
    out = filter_seeds([rec(0, five_words), rec(1, exactly_50), rec(2, exactly_50 + "!")], cfg)
    assert [r.id for r in out.kept] == ["s00", "s01"]
    assert out.dropped == {"too_long": 1}


def test_another_language_setting_keeps_that_language() -> None:
    cfg = updated(CFG, n=None, language="fr")
    french = "Pouvez-vous m'expliquer comment les abeilles fabriquent le miel"
    out = filter_seeds([rec(0, french), rec(1, ENGLISH[0])], cfg)
    assert [r.id for r in out.kept] == ["s00"] and out.dropped == {"not_fr": 1}


def test_language_detection_is_deterministic() -> None:
    # langdetect samples unless seeded: a short, mixed text flips between runs without it.
    text = "ok merci bye thanks"
    first = language_of(text)
    for other in ENGLISH + ["Das ist gut", "C'est la vie"]:
        language_of(other)
        assert language_of(text) == first
    assert language_of("") == language_of("12345 !!!") == "unknown"
    assert all(language_of(t) == "en" for t in ENGLISH)


def test_a_seeded_sample_of_n_is_kept_and_the_rest_counted() -> None:
    records = [rec(i, t) for i, t in enumerate(ENGLISH)]
    out = filter_seeds(records, updated(CFG, n=4))
    ids = [r.id for r in out.kept]
    assert len(ids) == 4 and ids == sorted(ids)
    assert out.dropped == {"not_sampled": 2}
    # The same seed and records give the same sample; another seed, another sample.
    assert [r.id for r in filter_seeds(records, updated(CFG, n=4)).kept] == ids
    samples = {
        tuple(r.id for r in filter_seeds(records, updated(CFG, n=4, seed=s)).kept)
        for s in range(20)
    }
    assert len(samples) > 1
    # n larger than what passes keeps everything, without a not_sampled count.
    out = filter_seeds(records, updated(CFG, n=10))
    assert len(out.kept) == 6 and out.dropped == {}


def _params(tmp_path: Path, **seeds: object) -> Params:
    return updated(
        repo_params(),
        paths={
            "seeds": str(tmp_path / "seeds.jsonl"),
            "ifeval_input": str(IFEVAL),
            "followbench_dir": str(REPO_ROOT / "data" / "benchmarks" / "followbench"),
        },
        conifer={"seeds": {**CFG.model_dump(), "n": None, **seeds}},
    )


def test_without_sources_the_seed_set_is_read_and_filtered(tmp_path: Path) -> None:
    rows = [
        {"id": f"seed-{i}", "text": t, "source": "x", "category": None}
        for i, t in enumerate(ENGLISH[:3] + ["Too short here"])
    ]
    write_jsonl(tmp_path / "seeds.jsonl", rows)
    funnel = Funnel("conifer_instructions")
    kept = select_seeds(_params(tmp_path), funnel)
    assert [s.id for s in kept] == ["seed-0", "seed-1", "seed-2"]
    assert [s.text for s in kept] == ENGLISH[:3]
    ((step, n_in, n_out, dropped),) = [(s.step, s.n_in, s.n_out, s.dropped) for s in funnel.steps]
    assert (step, n_in, n_out, dropped) == ("seeds", 4, 3, {"too_few_words": 1})


def test_a_bad_seed_set_row_names_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "seeds.jsonl"
    path.write_text(json.dumps({"id": "a", "text": ENGLISH[0]}) + "\n" + json.dumps({"id": "b"}))
    with pytest.raises(DataError, match=rf"{path}:2: .*'text'"):
        select_seeds(_params(tmp_path), Funnel("conifer_instructions"))


def test_sources_are_first_user_turns_decontaminated_and_every_record_counted(
    tmp_path: Path,
) -> None:
    ifeval_prompt = next(
        r["prompt"]
        for r in read_jsonl(IFEVAL)
        if len(r["prompt"]) <= 200 and "\n" not in r["prompt"]
    )

    def convo(*turns: tuple[str, str]) -> dict:
        return {"conversations": [{"from": who, "value": text} for who, text in turns]}

    sharegpt = tmp_path / "chats.jsonl"
    write_jsonl(
        sharegpt,
        [
            convo(("human", ENGLISH[0]), ("gpt", "Sure."), ("human", ENGLISH[1])),
            convo(("system", "Be brief."), ("human", ENGLISH[2]), ("gpt", "Ok.")),
            convo(("human", ifeval_prompt), ("gpt", "...")),  # a benchmark prompt
            convo(("gpt", "Hello, how can I help?")),  # no human turn
            convo(("human", "   "), ("gpt", "?")),  # empty first human turn
            convo(("human", "Hi"), ("gpt", "Hello!")),  # too few words
        ],
    )
    params = _params(tmp_path, sources=[{"path": str(sharegpt), "format": "sharegpt"}])
    funnel = Funnel("conifer_instructions")
    kept = select_seeds(params, funnel)
    # The first human turn of each conversation, never a later one.
    assert [s.text for s in kept] == [ENGLISH[0], ENGLISH[2]]
    steps = {s.step: s for s in funnel.steps}
    assert list(steps) == ["seed_sources", "seeds"]
    src = steps["seed_sources"]
    # Regression: records the loader skipped were not counted, so 6 read showed as 4 in.
    assert (src.n_in, src.n_out) == (6, 3)
    assert src.dropped == {"contaminated": 1, "empty_first_human_turn": 1, "no_human_turn": 1}
    assert (steps["seeds"].n_in, steps["seeds"].n_out) == (3, 2)
    assert steps["seeds"].dropped == {"too_few_words": 1}
    # Funnel reasons become MLflow metric names, which allow no quotes or spaces.
    assert all(k.replace(".", "_").replace("_", "").isalnum() for k in funnel.metrics())
