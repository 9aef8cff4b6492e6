"""Decontamination against benchmark prompts: fixtures always, the real IFEval/FollowBench files too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from complexif.curation.decontaminate import (
    BENCHMARK_IN_SEED,
    NGRAM_OVERLAP,
    NGRAM_RATIO,
    SEED_IN_BENCHMARK,
    BenchmarkIndex,
    BenchmarkPrompt,
    contamination_to_dict,
    decontaminate,
    load_benchmark_prompts,
    load_followbench_prompts,
)
from complexif.curation.loaders import SeedRecord
from complexif.io import DataError

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures" / "seeds"
FOLLOWBENCH_DIR = ROOT / "data" / "benchmarks" / "followbench"
# Another stage copies IFEval into data/benchmarks/ifeval; the shared read-only copy is the fallback.
IFEVAL_CANDIDATES = [
    ROOT / "data" / "benchmarks" / "ifeval" / "input_data.jsonl",
    Path("/work/shared/benchmarks/ifeval/input_data.jsonl"),
]


def ifeval_path() -> Path:
    for p in IFEVAL_CANDIDATES:
        if p.exists():
            return p
    pytest.skip("IFEval input_data.jsonl not available")


def seed(i: str, text: str) -> SeedRecord:
    return SeedRecord(i, text, "test", None)


@pytest.fixture(scope="module")
def mini_prompts() -> list[BenchmarkPrompt]:
    return load_benchmark_prompts(FIX / "mini_ifeval.jsonl", FIX / "mini_followbench")


def test_fixture_benchmarks_load_with_ids_and_skip_empty(
    mini_prompts: list[BenchmarkPrompt],
) -> None:
    assert [(p.benchmark, p.id) for p in mini_prompts] == [
        ("ifeval", "9001"),
        ("ifeval", "9002"),
        ("ifeval", "9003"),
        ("followbench", "content:1:L0"),
        ("followbench", "content:1:L1"),
        # content:2:L0 has an empty instruction and cannot contaminate anything
    ]


def test_removes_embedded_benchmark_sentences_keeps_unrelated(
    mini_prompts: list[BenchmarkPrompt],
) -> None:
    seeds = [
        # an IFEval prompt sentence inside a longer seed, with different case and punctuation
        seed(
            "a",
            "For my class: WRITE a limerick about a forgetful astronomer, who keeps losing "
            "his telescope -- and make it rhyme.",
        ),
        # a FollowBench instruction embedded in a seed
        seed(
            "b",
            "Please tell me how to prepare a vegetable stir fry for a weeknight dinner "
            "for two people, thanks.",
        ),
        seed("c", "Write a limerick about a forgetful gardener who keeps losing her trowel."),
        seed("d", "Explain how a vegetable garden can be planned for a small balcony."),
    ]
    clean, removed = decontaminate(seeds, mini_prompts, n=8)
    assert [s.id for s in clean] == ["c", "d"]
    by_id = {c.seed.id: c for c in removed}
    assert (by_id["a"].benchmark, by_id["a"].benchmark_id) == ("ifeval", "9001")
    assert by_id["a"].reason == NGRAM_OVERLAP
    assert by_id["a"].matched_ngram == "write a limerick about a forgetful astronomer who"
    assert by_id["b"].benchmark == "followbench"
    assert by_id["b"].benchmark_id == "content:1:L0"  # the level-0 prompt it fully contains
    assert by_id["b"].reason == BENCHMARK_IN_SEED
    assert contamination_to_dict(by_id["a"])["benchmark_id"] == "9001"


def test_exact_containment_either_way_for_short_texts(mini_prompts: list[BenchmarkPrompt]) -> None:
    seeds = [
        seed("short-in", "Describe your ideal Sunday morning."),  # 5 words, inside prompt 9002
        seed("bench-in", "For a geography quiz, name seven rivers in South America please."),
        seed("too-short", "Describe your ideal"),  # 3 words: phrasing, not contamination
        seed("partial", "Name seven rivers in South Africa and their lengths."),
    ]
    clean, removed = decontaminate(seeds, mini_prompts, n=8)
    assert [s.id for s in clean] == ["too-short", "partial"]
    reasons = {c.seed.id: (c.reason, c.benchmark_id) for c in removed}
    assert reasons == {
        "short-in": (SEED_IN_BENCHMARK, "9002"),
        "bench-in": (BENCHMARK_IN_SEED, "9003"),
    }


def test_ratio_rule_catches_short_overlap_when_min_matches_is_raised(
    mini_prompts: list[BenchmarkPrompt],
) -> None:
    # 9 words -> two 8-grams, one shared with IFEval 9002.
    s = seed("r", "Do not use any commas in your response, friend.")
    assert decontaminate([s], mini_prompts, n=8).removed[0].reason == NGRAM_OVERLAP
    res = decontaminate([s], mini_prompts, n=8, min_matches=3)
    assert res.removed[0].reason == NGRAM_RATIO and res.removed[0].overlap == 0.5
    assert decontaminate([s], mini_prompts, n=8, min_matches=3, overlap_ratio=0.6).clean == [s]
    assert decontaminate([s], mini_prompts, n=8, min_matches=3, overlap_ratio=None).clean == [s]


def test_ngram_size_is_configurable_and_index_reusable(mini_prompts: list[BenchmarkPrompt]) -> None:
    s = seed("x", "Can you tell me how to prepare a vegetable curry instead?")
    assert decontaminate([s], mini_prompts, n=8).clean == [s]  # no shared 8-gram
    index = BenchmarkIndex(mini_prompts, n=5)
    removed = decontaminate([s], index, n=5).removed
    assert removed and removed[0].matched_ngram == "tell me how to prepare"
    with pytest.raises(ValueError):
        decontaminate([s], mini_prompts, n=8, min_matches=0)


def test_benchmark_loading_errors_name_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no FollowBench"):
        load_followbench_prompts(tmp_path)
    (tmp_path / "style_constraints.json").write_text(
        json.dumps([{"instruction": "ok"}, {"level": 1}], indent=1), encoding="utf-8"
    )
    with pytest.raises(DataError, match=r"style_constraints\.json:5: missing field 'instruction'"):
        load_followbench_prompts(tmp_path)
    bad = tmp_path / "ifeval.jsonl"
    bad.write_text('{"key": 1, "prompt": "ok"}\n{"key": 2}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"ifeval\.jsonl:2: missing field 'prompt'"):
        load_benchmark_prompts(bad, None)


def test_extra_benchmark_files(tmp_path: Path) -> None:
    extra = tmp_path / "infobench.jsonl"
    extra.write_text(
        json.dumps(
            {"id": "ib-1", "instruction": "Write a museum placard.", "input": "A Roman coin."}
        )
        + "\n",
        encoding="utf-8",
    )
    prompts = load_benchmark_prompts(None, None, extra_paths=[extra])
    assert prompts == [
        BenchmarkPrompt("infobench", "ib-1", "Write a museum placard.\n\nA Roman coin.")
    ]


# --------------------------------------------------------------------------------------------------
# the real benchmark files


@pytest.fixture(scope="module")
def real_index() -> BenchmarkIndex:
    prompts = load_benchmark_prompts(ifeval_path(), FOLLOWBENCH_DIR)
    return BenchmarkIndex(prompts, n=8)


def test_real_benchmarks_load(real_index: BenchmarkIndex) -> None:
    counts: dict[str, int] = {}
    for p in real_index.prompts:
        counts[p.benchmark] = counts.get(p.benchmark, 0) + 1
    assert counts["ifeval"] == 541
    # 944 FollowBench records minus the 17 level-0 records with an empty instruction
    assert counts["followbench"] == 944 - 17
    assert len({(p.benchmark, p.id) for p in real_index.prompts}) == len(real_index.prompts)


def test_real_prompts_embedded_in_seeds_are_removed(real_index: BenchmarkIndex) -> None:
    ifeval = {
        json.loads(line)["key"]: json.loads(line)["prompt"]
        for line in ifeval_path().read_text(encoding="utf-8").splitlines()
    }
    # "Write a 300+ word summary of the wikipedia page ..."
    first_sentence = ifeval[1000].split(". ")[0]
    fb = json.loads((FOLLOWBENCH_DIR / "style_constraints.json").read_text(encoding="utf-8"))
    fb_instruction = fb[0]["instruction"]
    seeds = [
        seed("ifeval", f"Quick task for you. {first_sentence}. Keep it friendly."),
        seed("followbench", f"Hello! {fb_instruction}"),
        seed("clean", "Describe how a beekeeper inspects a hive in early spring."),
    ]
    clean, removed = decontaminate(seeds, real_index, n=8)
    assert [s.id for s in clean] == ["clean"]
    hits = {c.seed.id: (c.benchmark, c.benchmark_id) for c in removed}
    assert hits["ifeval"] == ("ifeval", "1000")
    assert hits["followbench"][0] == "followbench"
    assert hits["followbench"][1].startswith(f"style:{fb[0]['example_id']}:")


def test_followbench_copy_is_unchanged() -> None:
    shared = Path("/work/shared/benchmarks/followbench")
    if not shared.exists():
        pytest.skip("shared FollowBench copy not available")
    for src in sorted(shared.iterdir()):
        assert (FOLLOWBENCH_DIR / src.name).read_bytes() == src.read_bytes(), src.name
