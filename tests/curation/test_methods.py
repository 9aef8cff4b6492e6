"""curation.method: which curated records train, at what shares, in what order."""

import pytest

from complexif.curation.methods import combine, interleave, keep_share
from tests.conftest import repo_params, updated

FCS = [{"id": f"f{i}"} for i in range(10)]
CONIFER = [{"id": f"c{i}", "source": "conifer"} for i in range(3)]


def _cfg(**changes):
    return updated(repo_params().curation, **changes)


def test_interleave_spreads_the_shorter_list_evenly_and_keeps_both_orders():
    out = [r["id"] for r in interleave(FCS, CONIFER)]
    assert [i for i in out if i.startswith("f")] == [r["id"] for r in FCS]
    assert [i for i in out if i.startswith("c")] == [r["id"] for r in CONIFER]
    positions = [out.index(c["id"]) for c in CONIFER]
    # Neither bunched at the start nor at the end: one in each third of the curriculum.
    assert [p * 3 // len(out) for p in positions] == [0, 1, 2]
    assert interleave(FCS, []) == FCS and interleave([], CONIFER) == CONIFER
    assert [r["id"] for r in interleave(CONIFER, FCS)] == out  # symmetric in which is longer


def test_keep_share_is_a_seeded_subset_in_order():
    half = keep_share(FCS, 0.5, seed=3)
    assert len(half) == 5 and half == [r for r in FCS if r in half]
    assert half == keep_share(FCS, 0.5, seed=3) and half != keep_share(FCS, 0.5, seed=4)
    assert keep_share(FCS, 1.0, seed=0) == FCS and keep_share(FCS, 0.0, seed=0) == []


@pytest.mark.parametrize(
    ("method", "n_fcs", "n_conifer"), [("fcs", 10, 0), ("conifer", 0, 3), ("both", 10, 3)]
)
def test_method_chooses_the_records_and_labels_their_source(method, n_fcs, n_conifer):
    records, counts = combine(FCS, CONIFER, _cfg(), method)
    assert counts == {"fcs": n_fcs, "conifer": n_conifer}
    assert len(records) == n_fcs + n_conifer
    assert {r["id"][0] for r in records if r["source"] == "fcs"} <= {"f"}
    assert {r["id"][0] for r in records if r["source"] == "conifer"} <= {"c"}
    assert FCS[0] == {"id": "f0"}  # inputs are not modified


def test_ratios_cut_each_method_to_its_share():
    records, counts = combine(FCS, CONIFER, _cfg(fcs_ratio=0.3, conifer_ratio=0.0), "both")
    assert counts == {"fcs": 3, "conifer": 0} and len(records) == 3
