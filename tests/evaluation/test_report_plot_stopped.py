"""The report's bar chart is written atomically: a stop mid-save leaves the old chart, no temp file."""

from __future__ import annotations

import pytest

from complexif.evaluation.report import plot_by_type


def _metrics(strict: float) -> dict:
    return {
        "per_instruction": {
            "punctuation:no_comma": {"strict": strict, "loose": strict, "count": 3},
            "detectable_format:title": {"strict": 1.0, "loose": 1.0, "count": 2},
        }
    }


def test_a_plot_stopped_mid_save_leaves_the_old_chart_and_no_temp_file(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    path = tmp_path / "ifeval_by_type.png"
    plot_by_type({"base": _metrics(0.2), "sft": _metrics(0.3)}, path)
    old = path.read_bytes()
    assert old[:4] == b"\x89PNG"

    real_savefig = Figure.savefig

    def stopped_mid_save(self, fname, *args, **kwargs):
        real_savefig(self, fname, *args, **kwargs)  # the bytes are out, the rename is not
        raise KeyboardInterrupt("stopped by SIGTERM")

    monkeypatch.setattr(Figure, "savefig", stopped_mid_save)
    with pytest.raises(KeyboardInterrupt):
        plot_by_type({"base": _metrics(0.5), "sft": _metrics(0.9)}, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ifeval_by_type.png"]
    assert path.read_bytes() == old
