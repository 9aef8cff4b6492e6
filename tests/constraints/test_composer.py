"""Composer: conflict-free, reproducible, k respected, and its constraints can all be satisfied."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
from ifeval_synth import synthesize

from complexif.constraints.composer import (
    ComposedInstruction,
    compose,
    composer_conflicts,
    sample_k,
)
from complexif.constraints.errors import UnknownInstructionError
from complexif.constraints.phrasing import Phrasebook
from complexif.constraints.registry import INSTRUCTION_IDS, conflicts
from complexif.constraints.verify import check, check_all, describe

SEED = "Write a short story about a lighthouse keeper, in plain English."
PB = Phrasebook.load(Path(__file__).resolve().parents[2] / "prompts" / "constraint_phrasings.yaml")
REPEAT = "combination:repeat_prompt"


def test_no_conflicting_pair_ever_and_k_respected() -> None:
    used: Counter[str] = Counter()
    for seed in range(400):
        rng = random.Random(seed)
        k = 1 + seed % 6
        c = compose(SEED, k, rng, PB)
        ids = c.instruction_id_list
        assert len(ids) == k == len(set(ids)) == len(c.kwargs) == len(c.descriptions)
        for i, a in enumerate(ids):
            for b in ids[i + 1 :]:
                assert not conflicts(a, b), (seed, a, b)
                assert not composer_conflicts(a, b), (seed, a, b)
        used.update(ids)
    assert set(used) == set(INSTRUCTION_IDS)  # every type gets composed at some point


def test_same_seed_same_instruction() -> None:
    first = compose(SEED, 3, random.Random(7), PB)
    assert compose(SEED, 3, random.Random(7), PB) == first
    others = {tuple(compose(SEED, 3, random.Random(s), PB).instruction_id_list) for s in range(20)}
    assert len(others) > 10


def test_prompt_is_seed_then_descriptions() -> None:
    c = compose(SEED, 4, random.Random(3), PB)
    assert isinstance(c, ComposedInstruction)
    head, body = c.prompt.split("\n\n", 1)
    assert head == SEED
    assert body.split("\n") == c.descriptions
    for iid, kw, desc in zip(c.instruction_id_list, c.kwargs, c.descriptions, strict=True):
        assert desc != describe(iid, kw)  # our own words, never IFEval's sentence
    assert c.to_dict()["prompt"] == c.prompt


@pytest.mark.parametrize("seed", range(5))
def test_repeat_prompt_is_consistent_with_its_checker(seed: int) -> None:
    allowed = [REPEAT, "detectable_format:title", "keywords:existence"]
    c = compose(SEED, 3, random.Random(seed), PB, allowed_ids=allowed)
    assert c.instruction_id_list[-1] == REPEAT  # the request to repeat is all that precedes it
    kw = c.kwargs[-1]
    assert kw == {"prompt_to_repeat": SEED}
    assert c.prompt.startswith(kw["prompt_to_repeat"])
    request = c.prompt.rsplit("\n", 1)[0]  # everything before the repeat sentence
    assert check(REPEAT, kw, request + "\n\nAnswer: the keeper waited.")
    assert check(REPEAT, kw, SEED + "\nAnswer.")
    assert not check(REPEAT, kw, "Sure! " + SEED)


def test_repeat_prompt_never_meets_no_comma() -> None:
    # Repeating a request that contains commas cannot satisfy "no commas".
    for seed in range(50):
        ids = compose(
            SEED,
            2,
            random.Random(seed),
            PB,
            allowed_ids=[REPEAT, "punctuation:no_comma", "detectable_format:title"],
        ).instruction_id_list
        assert set(ids) != {REPEAT, "punctuation:no_comma"}


def test_impossible_requests_raise() -> None:
    with pytest.raises(ValueError, match="pairwise non-conflicting"):
        compose(
            SEED,
            2,
            random.Random(0),
            PB,
            allowed_ids=["detectable_format:constrained_response", "punctuation:no_comma"],
        )
    with pytest.raises(ValueError, match="pairwise non-conflicting"):
        compose(SEED, 16, random.Random(0), PB)  # the largest conflict-free set has 15 types
    assert len(compose(SEED, 15, random.Random(0), PB).instruction_id_list) == 15
    with pytest.raises(ValueError, match="distinct"):
        compose(
            SEED,
            3,
            random.Random(0),
            PB,
            allowed_ids=["punctuation:no_comma", "startend:quotation"],
        )
    with pytest.raises(ValueError, match="k must be"):
        compose(SEED, 0, random.Random(0), PB)
    with pytest.raises(ValueError, match="seed_text"):
        compose("  ", 1, random.Random(0), PB)
    with pytest.raises(UnknownInstructionError, match="Did you mean"):
        compose(SEED, 1, random.Random(0), PB, allowed_ids=["keywords:existance"])


def test_composed_constraints_are_satisfiable() -> None:
    """A response that truly satisfies the composed constraints passes every verifier."""
    allowed = [i for i in INSTRUCTION_IDS if i != "language:response_language"]
    for seed in range(150):
        c = compose(SEED, 1 + seed % 5, random.Random(seed), PB, allowed_ids=allowed)
        response, ok = synthesize(c.instruction_id_list, c.kwargs, seed=seed)
        assert ok, (seed, c.instruction_id_list, c.kwargs)
        assert all(check_all(c.instruction_id_list, c.kwargs, response, prompt=c.prompt))


def test_sample_k() -> None:
    dist = {1: 0.2, 2: 0.5, 3: 0.3}
    draws = [sample_k(dist, random.Random(s)) for s in range(2000)]
    assert draws == [sample_k(dist, random.Random(s)) for s in range(2000)]
    counts = Counter(draws)
    assert set(counts) == {1, 2, 3}
    assert counts[2] > counts[3] > counts[1]
    assert {sample_k({1: 0, 4: 2}, random.Random(s)) for s in range(50)} == {4}
    for bad in ({}, {0: 1.0}, {1: -1.0}, {1: 0.0}, {1: float("nan")}):
        with pytest.raises(ValueError):
            sample_k(bad, random.Random(0))
