"""Constraint phrasings: several per type, our own words, arguments as prose, keywords from the seed."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from complexif.constraints.composer import compose
from complexif.constraints.phrasing import MIN_PHRASINGS, Phrasebook, count_phrase, quoted_list
from complexif.constraints.registry import INSTRUCTION_IDS
from complexif.constraints.seed_words import seed_keywords
from complexif.constraints.verify import describe
from complexif.curation.compose import compose_instructions
from complexif.curation.decontaminate import BenchmarkIndex, load_ifeval_prompts
from complexif.curation.loaders import normalize_text
from complexif.io import DataError, read_jsonl

ROOT = Path(__file__).resolve().parents[2]
PHRASINGS = ROOT / "prompts" / "constraint_phrasings.yaml"
IFEVAL = ROOT / "data" / "benchmarks" / "ifeval" / "input_data.jsonl"
PB = Phrasebook.load(PHRASINGS)


def _training_prompts() -> list[dict]:
    """What the compose stage would write for every shipped seed: 3 variants, k from 1 to 5."""
    seeds = [
        {"id": s["id"], "text": s["instruction"]}
        for s in read_jsonl(ROOT / "data/seed_tasks.jsonl")
    ]
    return compose_instructions(
        seeds, PB, {1: 1, 2: 1, 3: 1, 4: 1, 5: 1}, per_seed=3, exclude_ids=(), seed=1
    )


@pytest.fixture(scope="module")
def training_prompts() -> list[dict]:
    return _training_prompts()


def test_every_type_has_several_distinct_phrasings() -> None:
    assert set(PB.phrasings) == set(INSTRUCTION_IDS)
    for iid, texts in PB.phrasings.items():
        assert len(set(texts)) == len(texts) >= MIN_PHRASINGS, iid


def test_every_phrasing_renders_and_is_chosen() -> None:
    for iid, texts in PB.phrasings.items():
        heads = {t.split("{")[0] for t in texts}
        seen = set()
        for s in range(200):
            rng = random.Random(s)
            c = compose("Describe the tides at Fundy Bay.", 1, rng, PB, allowed_ids=[iid])
            seen |= {h for h in heads if c.descriptions[0].startswith(h)}
        assert seen == heads, iid


def test_no_training_prompt_contains_an_ifeval_constraint_sentence(training_prompts) -> None:
    ifeval = [r["prompt"] for r in read_jsonl(IFEVAL)]
    # IFEval's own sentences (the official descriptions are in them, rendered), 5+ words each.
    sentences = {
        normalize_text(s)
        for p in ifeval
        for s in re.split(r"(?<=[.!?])\s+|\n+", p)
        if len(s.split()) >= 5
    }
    official = set()
    for r in training_prompts:
        for iid, kw in zip(r["instruction_id_list"], r["kwargs"], strict=True):
            official.add(normalize_text(describe(iid, kw, prompt=r["seed_text"])))
    for r in training_prompts:
        text = normalize_text("\n".join(r["descriptions"]))
        hits = [s for s in sentences | official if s and s in text]
        assert not hits, (r["id"], hits[:3])


def test_constraint_text_shares_no_8gram_with_ifeval(training_prompts) -> None:
    """The decontamination rule the seeds pass, applied to our constraint sentences. The
    fixed answers of ``constrained_response`` ("My answer is yes.") are checker arguments, not
    phrasing, and are left out."""
    index = BenchmarkIndex(load_ifeval_prompts(IFEVAL), n=8, min_contain_words=6)
    options = re.compile(r'"My answer is (?:yes|no|maybe)\."(?:,| or)?')

    class _Text:
        def __init__(self, text: str) -> None:
            self.id, self.text = "constraints", text

    for r in training_prompts:
        text = options.sub("", "\n".join(r["descriptions"]))
        assert index.match(_Text(text)) is None, r["descriptions"]


def test_arguments_read_as_prose() -> None:
    assert quoted_list(["tide", "harbour"]) == '"tide" and "harbour"'
    assert quoted_list(["a", "b", "c"], "or") == '"a", "b" or "c"'
    rng = random.Random(0)
    said = {count_phrase("less than", 12, "word", rng) for _ in range(40)}
    assert said == {"fewer than 12 words", "at most 11 words"}
    said = {count_phrase("at least", 2, None, rng) for _ in range(10)}
    assert said == {"at least twice"}
    with pytest.raises(ValueError):
        count_phrase("less than", 1, "word", rng)
    for _ in range(200):
        c = compose("Describe the tides at Fundy Bay.", 5, rng, PB)
        for d in c.descriptions:
            assert "[" not in d or "placeholder" in d or "bracket" in d, d  # no list reprs
            assert "'" not in d.replace("'s", ""), d
            assert d[-1] in '.!?"', d


def test_keywords_come_from_the_seed() -> None:
    seed = "Write a travel guide about the lighthouse museums of Brittany for families."
    words = set(seed_keywords(seed))
    assert {"lighthouse", "museums", "brittany", "families", "travel"} <= words
    assert not {"write", "about", "the", "for"} & words
    allowed = ["keywords:existence", "keywords:forbidden_words", "keywords:frequency"]
    for s in range(60):
        c = compose(seed, 1, random.Random(s), PB, allowed_ids=allowed)
        kw = c.kwargs[0]
        picked = kw.get("keywords") or kw.get("forbidden_words") or [kw["keyword"]]
        assert set(picked) <= words, kw


def test_our_argument_pools_replace_ifevals() -> None:
    for s in range(60):
        c = compose(
            "Explain how bread rises.",
            2,
            random.Random(s),
            PB,
            allowed_ids=["startend:end_checker", "detectable_format:multiple_sections"],
        )
        for iid, kw in zip(c.instruction_id_list, c.kwargs, strict=True):
            if iid == "startend:end_checker":
                assert kw["end_phrase"] in PB.end_phrases
            else:
                assert kw["section_spliter"] in PB.section_markers


def test_bad_phrasebook_names_file_and_field(tmp_path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("phrasings: {}\nend_phrases: []\nsection_markers: []\n")
    with pytest.raises(DataError, match=r"p\.yaml: phrasings: missing types"):
        Phrasebook.load(bad)
    text = PHRASINGS.read_text().replace(
        '"Do not use the words {words_or} anywhere."', '"Do not use {colour}."'
    )
    bad.write_text(text)
    with pytest.raises(DataError, match=r"keywords:forbidden_words\[0\]: unknown field"):
        Phrasebook.load(bad)
