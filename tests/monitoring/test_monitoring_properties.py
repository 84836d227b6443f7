"""Property tests: no retroactive changes, order invariance, exact thresholds, unit round trips."""

from __future__ import annotations

import random
import warnings
from datetime import date, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from monitoring_helpers import build, marrow, mrd, record

from hemotwin.monitoring.response import assess
from hemotwin.monitoring.timeline import TimelineWarning, timeline_from_dict

START = date(2024, 1, 6)
pct = st.decimals(min_value=0, max_value=100, places=2).map(lambda d: str(d))


@st.composite
def timepoints(draw, n_max=8):
    n = draw(st.integers(1, n_max))
    offsets = sorted(draw(st.sets(st.integers(1, 400), min_size=n, max_size=n)))
    out = []
    for off in offsets:
        day = (START + timedelta(days=off)).isoformat()
        sample = draw(st.sampled_from(["marrow", "blood"]))
        tp = {"date": day, "sample": sample,
              "anc_per_ul": draw(st.one_of(st.none(), st.integers(0, 3000))),
              "platelets_1e9_per_l": draw(st.one_of(st.none(), st.integers(0, 300))),
              "blood_blasts_pct": draw(st.one_of(st.none(), st.sampled_from(["0", "0", "1", "5"]))),
              "extramedullary_disease": draw(st.one_of(st.none(), st.booleans())) if draw(st.booleans()) else False}
        if sample == "marrow":
            tp["marrow_blasts_pct"] = draw(st.one_of(st.none(), pct))
            tp["marrow_cells_counted"] = draw(st.one_of(st.none(), st.integers(0, 500)))
        if draw(st.booleans()):
            tp["mrd"] = [mrd("qpcr", "NPM1", draw(st.sampled_from(["not detected", 0.001, 0.01, 0.1, 1, 3])))]
        out.append({k: v for k, v in tp.items() if v is not None})
    return out


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(timepoints(), st.integers(1, 60))
def test_a_later_normal_timepoint_never_changes_earlier_calls(tps, gap):
    before = assess(build(*tps))
    last = date.fromisoformat(tps[-1]["date"])
    later = marrow((last + timedelta(days=gap)).isoformat(), mrd=[mrd("qpcr", "NPM1", "not detected")])
    after = assess(build(*tps, later))
    assert after.calls[: len(before.calls)] == before.calls
    # events up to the old last date are unchanged too (confirmations come as new, later events)
    assert [e for e in after.events if e.date <= last] == [e for e in before.events]


@SETTINGS
@given(timepoints(), st.randoms(use_true_random=False))
def test_input_order_does_not_matter_once_sorted(tps, rnd: random.Random):
    ref = assess(build(*tps))
    shuffled = list(tps)
    rnd.shuffle(shuffled)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tl = timeline_from_dict(record(*shuffled))
    unsorted = [t["date"] for t in shuffled] != sorted(t["date"] for t in shuffled)
    assert any(issubclass(w.category, TimelineWarning) for w in caught) is unsorted
    assert assess(tl).calls == ref.calls


@SETTINGS
@given(st.integers(0, 2000), st.integers(0, 300), st.decimals(min_value=0, max_value=30, places=2))
def test_cr_counts_and_blasts_are_exact(anc_per_ul, plt, blasts):
    c = assess(build(marrow("2024-02-01", anc_1e9_per_l=None, anc_per_ul=anc_per_ul, platelets_1e9_per_l=plt,
                            marrow_blasts_pct=str(blasts)))).calls[-1]
    assert (c.category == "CR") is (anc_per_ul >= 1000 and plt >= 100 and blasts < 5)
    if blasts < 5:
        assert c.category in ("CR", "CRh", "CRi", "MLFS")
