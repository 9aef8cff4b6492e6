"""Hand-made samples with numbers worked out by hand, shared by the dataset analysis tests."""

from __future__ import annotations

from complexif.dataset.records import Sample


def words(text: str) -> int:
    """A whitespace token counter: the tests' stand-in for a tokenizer."""
    return len(text.split())


def hand_samples() -> list[Sample]:
    # instruction words 3,5,4,1,2; response words 2,4,6,3,1; turns 1,1,3,2,1;
    # constraints 2,3,9,None,5; levels -,-,[1,2,3],-,[2]; one rejected answer of 3 words.
    return [
        Sample(
            id="a",
            source="fcs",
            instruction="a b c",
            response="x y",
            turns=1,
            n_constraints=2,
            constraint_types=("keywords:existence", "detectable_format:title"),
        ),
        Sample(
            id="b",
            source="fcs",
            instruction="a b c d e",
            response="x y z w",
            turns=1,
            n_constraints=3,
            constraint_types=(
                "keywords:existence",
                "keywords:forbidden_words",
                "startend:quotation",
            ),
            rejected="r r r",
        ),
        Sample(
            id="c",
            source="conifer",
            instruction="one two three four",
            response="1 2 3 4 5 6",
            turns=3,
            n_constraints=9,
            levels=(1, 2, 3),
        ),
        Sample(id="d", source="", instruction="hi", response="hello there friend", turns=2),
        Sample(
            id="e",
            source="conifer",
            instruction="just two",
            response="ok",
            turns=1,
            n_constraints=5,
            levels=(2,),
        ),
    ]
