"""The dataset analysis counts what the hand-made samples hold, worked out by hand."""

from __future__ import annotations

import json

import pytest

from complexif.dataset.analysis import Distribution, analyse, token_lengths
from complexif.dataset.records import to_samples
from complexif.io import DataError
from tests.dataset.dataset_samples import hand_samples, words


def test_distribution_of_known_values():
    d = Distribution.of([4, 1, 3, 2, 5, 3])
    assert (d.n, d.min, d.max) == (6, 1, 5)
    assert d.mean == pytest.approx(3.0)
    assert d.median == 3.0
    # Linear interpolation between order statistics: 1 + 0.5 * (2 - 1) and 4 + 0.5 * (5 - 4).
    assert d.p10 == pytest.approx(1.5)
    assert d.p90 == pytest.approx(4.5)
    assert d.counts == {1: 1, 2: 1, 3: 2, 4: 1, 5: 1}
    assert list(d.counts) == [1, 2, 3, 4, 5]


def test_empty_distribution_has_no_statistics_and_valid_json():
    d = Distribution.of([])
    assert d.n == 0
    assert (d.mean, d.median, d.p10, d.p90, d.min, d.max) == (None,) * 6
    assert json.loads(json.dumps(d.to_dict(), allow_nan=False))["mean"] is None


def test_token_lengths_use_the_given_counter():
    assert token_lengths(["a b", "", "one two three"], words) == [2, 0, 3]
    assert token_lengths(["ab", "abcd"], len) == [2, 4]


@pytest.mark.parametrize("bad", [lambda t: 2.0, lambda t: [1, 2], lambda t: -1, lambda t: True])
def test_token_lengths_reject_a_counter_that_returns_no_count(bad):
    with pytest.raises(DataError, match="text 1: count_tokens returned"):
        token_lengths(["", "x"], lambda t: 0 if not t else bad(t))


def test_token_lengths_with_the_real_tokenizer(embedded_tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(embedded_tokenizer_dir)

    def count(text: str) -> int:
        return len(tok(text, add_special_tokens=False).input_ids)

    texts = ["Hello world", "Write a haiku about rain.", "", "antidisestablishmentarianism"]
    # Sub-word tokens, not words: the long word is five pieces, the period its own token.
    assert token_lengths(texts, count) == [2, 7, 0, 5]


def test_analyse_hand_samples():
    a = analyse(hand_samples(), words)
    assert a.rows == 5
    assert a.sources == {"conifer": 2, "fcs": 2, "unknown": 1}
    assert a.instruction_tokens.counts == {1: 1, 2: 1, 3: 1, 4: 1, 5: 1}
    assert (a.instruction_tokens.median, a.instruction_tokens.mean) == (3.0, 3.0)
    assert (a.response_tokens.median, a.response_tokens.mean) == (3.0, pytest.approx(3.2))
    assert (a.response_tokens.min, a.response_tokens.max) == (1, 6)
    assert (a.rejected_tokens.n, a.rejected_tokens.median) == (1, 3.0)
    assert a.turns.counts == {1: 3, 2: 1, 3: 1}
    assert a.turns.mean == pytest.approx(1.6)
    assert a.constraints.counts == {2: 1, 3: 1, 5: 1, 9: 1}
    assert a.constraints.n == 4
    assert a.constraints.mean == pytest.approx(4.75)
    assert a.constraints.median == 4.0
    assert a.constraints_unstated == 1
    assert list(a.constraint_types.items()) == [
        ("keywords:existence", 2),
        ("detectable_format:title", 1),
        ("keywords:forbidden_words", 1),
        ("startend:quotation", 1),
    ]
    assert list(a.constraint_groups.items()) == [
        ("keywords", 3),
        ("detectable_format", 1),
        ("startend", 1),
    ]
    assert a.levels_max == {2: 1, 3: 1}
    assert a.levels_all == {1: 1, 2: 2, 3: 1}


def test_summary_figures_and_json():
    a = analyse(hand_samples(), words)
    assert (a.rows, a.instruction_tokens.median, a.response_tokens.median) == (5, 3.0, 3.0)
    assert a.turns.mean == pytest.approx(1.6)
    assert a.constraints.mean == pytest.approx(4.75)
    d = json.loads(json.dumps(a.to_dict(), allow_nan=False))
    assert d["levels_all"] == {"1": 1, "2": 2, "3": 1}
    assert d["turns"]["counts"] == {"1": 3, "2": 1, "3": 1}
    assert d["constraint_groups"]["keywords"] == 3


def test_empty_set():
    a = analyse([], words)
    assert a.rows == 0
    assert a.instruction_tokens.n == a.turns.n == a.constraints.n == 0
    assert a.constraint_types == {} and a.levels_max == {} and a.levels_all == {}
    assert a.instruction_tokens.median is None and a.turns.mean is None
    json.dumps(a.to_dict(), allow_nan=False)


def _msgs(*turns: str) -> list[dict]:
    roles = ("user", "assistant")
    return [{"role": roles[i % 2], "content": t} for i, t in enumerate(turns)]


REALISTIC_ROWS = [
    # FCS SFT row (as data/sft.jsonl): one exchange, verifiable constraints.
    {
        "id": "sft-1",
        "prompt": 'Plan a picnic.\n\nMention "basket".\nAdd a title.',
        "messages": _msgs(
            'Plan a picnic.\n\nMention "basket".\nAdd a title.',
            "<<Picnic>> Pack a basket with bread and fruit.",
        ),
        "instruction_id_list": ["keywords:existence", "detectable_format:title"],
        "kwargs": [{"keywords": ["basket"]}, {}],
        "n_constraints": 2,
        "source": "fcs",
    },
    # FCS DPO row (as data/dpo.jsonl): prompt, chosen and rejected message lists.
    {
        "id": "dpo-1",
        "prompt": _msgs('Describe tea. Avoid the word "leaf". Use 2 sections.'),
        "chosen": [{"role": "assistant", "content": "Part 1 Tea is warm. Part 2 It calms."}],
        "rejected": [{"role": "assistant", "content": "Tea is a leaf."}],
        "instruction_id_list": ["keywords:forbidden_words", "detectable_format:multiple_sections"],
        "n_constraints": 2,
        "source": "fcs",
    },
    # Conifer easy-to-hard row (as data/conifer/sft.jsonl): three levels as three turns.
    {
        "id": "csft-1",
        "messages": _msgs(
            "Name a fruit.",
            "Apple.",
            "Name a red fruit.",
            "Cherry.",
            "Name a red fruit in one word, lowercase.",
            "cherry",
        ),
        "source": "conifer",
        "kind": "easy_to_hard",
        "levels": [1, 2, 3],
        "n_constraints": 4,
    },
    # General chat row (as data/general_chat.jsonl): no source, no constraints.
    {"id": "general-1", "messages": _msgs("What is rain?", "Water falling from clouds.")},
]


def test_analyse_realistic_rows():
    a = analyse(to_samples("rows", REALISTIC_ROWS), words)
    assert a.rows == 4
    assert a.sources == {"fcs": 2, "conifer": 1, "unknown": 1}
    # Instructions: the last user turn. Words: 8, 9, 8 ("Name a red fruit in one word,
    # lowercase."), 3.
    assert a.instruction_tokens.counts == {3: 1, 8: 2, 9: 1}
    # Responses: chosen for DPO, last answer for Conifer: 8, 9, 1, 4 words.
    assert a.response_tokens.counts == {1: 1, 4: 1, 8: 1, 9: 1}
    assert a.rejected_tokens.counts == {4: 1}
    assert a.turns.counts == {1: 3, 3: 1}
    assert a.constraints.counts == {2: 2, 4: 1}
    assert a.constraints_unstated == 1
    assert a.constraint_groups == {"detectable_format": 2, "keywords": 2}
    assert a.levels_max == {3: 1}
    assert a.levels_all == {1: 1, 2: 1, 3: 1}
