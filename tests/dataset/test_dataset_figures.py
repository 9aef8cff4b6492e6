"""Every dataset figure is a PNG, with data or without (the stage promises each file)."""

from __future__ import annotations

import pytest

from complexif.dataset.analysis import analyse
from complexif.dataset.diversity import pairwise_similarity
from complexif.dataset.figures import (
    FIGURES,
    plot_diversity,
    plot_lengths,
    plot_scores,
    write_figures,
)
from tests.dataset.dataset_samples import hand_samples, words

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

SCORES = {
    "complexity": {1: 1, 3: 4, 4: 2, 6: 1},
    "quality": {2: 1, 5: 6},
}
REFERENCE_SCORES = {"complexity": {1: 5, 2: 3}, "quality": {4: 2, 5: 2}}


def _is_png(path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC


@pytest.fixture(scope="module")
def diversity():
    return pairwise_similarity(
        ["bake a lemon cake", "bake a lemon tart", "describe the ocean"],
        ["write a poem", "write a letter", "plan a trip"],
        max_items=10,
        seed=0,
    )


def test_write_figures_with_data(tmp_path, diversity):
    paths = write_figures(
        tmp_path / "figures",
        analyse(hand_samples(), words),
        diversity,
        SCORES,
        REFERENCE_SCORES,
        {"complexity": 2, "quality": 0},
    )
    assert set(paths) == set(FIGURES)
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == sorted(
        f"{name}.png" for name in FIGURES
    )
    assert all(_is_png(p) for p in paths.values())


def test_write_figures_without_data_still_writes_every_png(tmp_path):
    paths = write_figures(tmp_path, analyse([], words), None, None, None, None)
    assert {p.name for p in paths.values()} == {
        "lengths.png",
        "turns.png",
        "constraints.png",
        "levels.png",
        "diversity.png",
        "scores.png",
    }
    assert all(_is_png(p) for p in paths.values())


def test_a_figure_with_data_differs_from_its_no_data_figure(tmp_path, diversity):
    plot_lengths(analyse(hand_samples(), words), tmp_path / "full.png")
    plot_lengths(analyse([], words), tmp_path / "empty.png")
    assert (tmp_path / "full.png").read_bytes() != (tmp_path / "empty.png").read_bytes()
    plot_diversity(diversity, tmp_path / "div.png")
    plot_diversity(None, tmp_path / "div_empty.png")
    assert (tmp_path / "div.png").read_bytes() != (tmp_path / "div_empty.png").read_bytes()


def test_scores_without_reference_or_with_one_aspect(tmp_path):
    plot_scores(SCORES, None, {"complexity": 1}, tmp_path / "a.png")
    plot_scores({"complexity": {3: 2}}, {}, {}, tmp_path / "b.png")
    plot_scores({"complexity": {}, "quality": {}}, None, None, tmp_path / "c.png")
    assert all(_is_png(tmp_path / f"{n}.png") for n in "abc")
