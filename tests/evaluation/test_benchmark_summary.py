"""The side-by-side summary (with the papers' rows marked as quoted) and the FollowBench
report files."""

import csv

import pytest

from complexif.evaluation.report import write_report
from complexif.evaluation.summary import load_quoted, summary_markdown
from complexif.io import DataError


def _followbench(hsr: list[float | None], ssr: list[float], csl: float) -> dict:
    def table(values):
        levels = {f"level_{k}": v for k, v in enumerate(values, start=1)}
        known = [v for v in values if v is not None]
        return {**levels, "avg": sum(known) / len(known)}

    return {
        "hsr": table(hsr),
        "ssr": table(ssr),
        "csl": csl,
        "by_category": {"style": {"hsr": table(hsr), "ssr": table(ssr), "csl": csl}},
        "counts": {
            "items": 10,
            "rule_scored": 4,
            "judged": 5,
            "unparseable": 1,
            "groups": 2,
            "csl_groups": 2,
            "not_judged": 0,
        },
    }


IFEVAL = {
    "prompt_level_strict_acc": 0.2,
    "prompt_level_loose_acc": 0.25,
    "inst_level_strict_acc": 0.3,
    "inst_level_loose_acc": 0.35,
    "num_prompts": 10,
    "per_instruction": {"punctuation:no_comma": {"strict": 0.5, "loose": 0.5, "count": 2}},
}
RESULTS = {
    "ifeval": {"base": IFEVAL, "dpo": IFEVAL},
    "followbench": {
        "base": _followbench([0.8, 0.6, 0.4, 0.2, 0.0], [0.9, 0.8, 0.7, 0.6, 0.5], 1.5),
        "dpo": _followbench([1.0, 0.8, 0.6, 0.4, None], [1.0, 0.9, 0.8, 0.7, 0.6], 2.0),
    },
}


def test_summary_puts_benchmarks_side_by_side_and_marks_quoted_rows():
    quoted = [{"model": "Paper-7B", "source": "Someone 2024", "followbench_hsr_avg": 50.0}]
    text = summary_markdown(RESULTS, ["base", "dpo"], quoted)
    header = text.splitlines()[0]
    assert header.startswith("| model | IFEval prompt strict |")
    assert "FollowBench HSR | HSR L4-5 | SSR |" in header
    assert "InFoBench" not in header  # not evaluated: no column
    # base: HSR avg 40.0, levels 4-5 mean 10.0, SSR avg 70.0
    assert "| base | 20.0 | 25.0 | 30.0 | 35.0 | 40.0 | 10.0 | 70.0 |" in text
    # dpo's level 5 has no verdict: L4-5 is level 4 alone, never a fake 0
    assert "| dpo | 20.0 | 25.0 | 30.0 | 35.0 | 70.0 | 40.0 | 80.0 |" in text
    assert "| Paper-7B (quoted) | – | – | – | – | 50.0 | – | – |" in text
    assert "not measured here" in text and "Someone 2024" in text


def test_the_shipped_quoted_rows_load_and_bad_ones_are_named(tmp_path):
    rows = load_quoted()
    assert {r["model"] for r in rows} >= {"Conifer-7B-DPO", "ShareGPT-7B-DPO"}
    bad = tmp_path / "quoted.yaml"
    bad.write_text("- {model: X, source: Y, followbench_hsr: 1}\n")
    with pytest.raises(DataError, match="quoted.yaml: entry 0: unknown field.*followbench_hsr"):
        load_quoted(bad)
    bad.write_text("- {model: X}\n")
    with pytest.raises(DataError, match="entry 0: needs fields 'model' and 'source'"):
        load_quoted(bad)


def test_report_writes_followbench_tables_csv_and_figure(tmp_path):
    paths = write_report(RESULTS, ["base", "dpo"], tmp_path)
    table = paths["followbench_table"].read_text()
    assert "| base | HSR | 80.0 | 60.0 | 40.0 | 20.0 | 0.0 | 40.0 |" in table
    assert "| dpo | HSR | 100.0 | 80.0 | 60.0 | 40.0 | – | 70.0 |" in table
    assert "| base | 1.50 | 10 | 4 | 5 | 1 | 0 |" in table
    rows = list(csv.DictReader(paths["followbench_hsr_csv"].open()))
    assert rows[0] == {"level": "1", "base": "80.0", "dpo": "100.0"}
    assert rows[4] == {"level": "5", "base": "0.0", "dpo": ""}
    assert paths["followbench_plot"].read_bytes()[:4] == b"\x89PNG"
