"""The optimised engine gives exactly the results of the straightforward one (``reference_engine.py``).

Equality is checked with ``==`` and on ``repr`` (so ``True`` vs ``1`` or a differently printed Decimal would
show) for the example patients, seeded random courses (several lines, intensities, MRD methods, markers and
tissues, relapses, borderline values, -0) and hypothesis-generated timelines, under several configurations.
"""

from __future__ import annotations

import random
import warnings
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from monitoring_helpers import blood, marrow, mrd, record
from reference_engine import reference_assess

from hemotwin.errors import InputError
from hemotwin.monitoring import response
from hemotwin.monitoring.config import MonitorConfig
from hemotwin.monitoring.demo import example_paths
from hemotwin.monitoring.response import assess
from hemotwin.monitoring.timeline import TimelineWarning, load_timeline, timeline_from_dict

CONFIGS = [
    MonitorConfig(),
    MonitorConfig(intensive_eval_days=0, less_intensive_landmark_days=60, blood_blast_confirm_days=3),
    MonitorConfig(intensive_courses_for_refractory=1, projection_horizon_days=400, ci_level=0.8,
                  projection_threshold_pct={"qpcr": "0.5", "flow": "1", "ngs": "2"}),
]


def _same(tl: Any, cfg: MonitorConfig) -> None:
    fast, ref = assess(tl, cfg), reference_assess(tl, cfg)
    assert fast == ref
    assert repr(fast) == repr(ref)


@pytest.mark.parametrize("cfg", CONFIGS, ids=["default", "literal", "wide"])
@pytest.mark.parametrize("path", example_paths(), ids=lambda p: p.stem)
def test_examples_equal_reference(path, cfg):
    _same(load_timeline(path), cfg)


# --- seeded random courses -----------------------------------------------------------------------------
_MARKERS = [("qpcr", "NPM1"), ("qpcr", "RUNX1-RUNX1T1"), ("qpcr", "WT1"), ("flow", "LAIP"), ("ngs", "IDH2"),
            ("qpcr", "CBFB::MYH11")]
_SPELLINGS = {"RUNX1-RUNX1T1": ["RUNX1-RUNX1T1", "RUNX1::RUNX1T1", "runx1_runx1t1"]}  # one series, three spellings


def _course(rnd: random.Random, i: int) -> dict[str, Any]:
    dx = date(2023, 1, 1) + timedelta(days=rnd.randrange(200))
    lines, start = [], dx + timedelta(days=rnd.randrange(0, 5))
    for _ in range(rnd.choice([0, 1, 1, 1, 2, 3])):
        intensive = rnd.random() < 0.6
        courses = [start + timedelta(days=30 * k) for k in range(rnd.choice([0, 1, 2, 3]))]
        lines.append({"start": start.isoformat(), "regimen": "r", "intensity": "intensive" if intensive
                      else "less-intensive", "courses": [c.isoformat() for c in courses]})
        start += timedelta(days=rnd.randrange(60, 250))
    markers = rnd.sample(_MARKERS, rnd.choice([0, 1, 1, 2]))
    tps, day = [], dx
    level = rnd.choice([None, 50.0, 5.0])
    for _ in range(rnd.randrange(1, 16)):
        day += timedelta(days=rnd.choice([0, 1, 6, 7, 8, 14, 30, 45]) if tps else 0)
        if tps and day == date.fromisoformat(tps[-1]["date"]):
            day += timedelta(days=1)
        sample = "marrow" if rnd.random() < 0.5 else "blood"
        maybe = lambda v: None if rnd.random() < 0.08 else v  # noqa: E731 - a missing value now and then
        tp: dict[str, Any] = {
            "date": day.isoformat(), "sample": sample,
            "anc_1e9_per_l": maybe(rnd.choice([0, 0.2, 0.49, 0.5, 0.999, 1, 1.0, 1.5, 3])),
            "platelets_1e9_per_l": maybe(rnd.choice([10, 49, 49.9, 50, 99, 100, 100.0, 250])),
            "blood_blasts_pct": maybe(rnd.choice(["0", "0", "0", "-0", "0.0", 1, 3, 20, 60])),
            "extramedullary_disease": maybe(rnd.random() < 0.05),
        }
        if rnd.random() < 0.7 and tp["anc_1e9_per_l"] is not None:
            tp["wbc_1e9_per_l"] = rnd.choice([tp["anc_1e9_per_l"] + 1, tp["anc_1e9_per_l"] + 80])
        if sample == "marrow":
            tp["marrow_blasts_pct"] = maybe(rnd.choice(["0", "-0", 2, 4.99, 5, "5.0", 12, 25, 25.01, 40, 70, 95]))
            tp["marrow_cells_counted"] = maybe(rnd.choice([0, 150, 199, 200, 500]))
            if rnd.random() < 0.3:
                tp["marrow_cellularity_pct"] = rnd.choice([5, 9.9, 10, 40])
        if rnd.random() < 0.1:
            tp["transfusion_dependent"] = rnd.random() < 0.5
        results = []
        for method, marker in markers:
            if rnd.random() < 0.2:
                continue
            if level is not None:
                level = min(60.0, max(1e-4, level * rnd.choice([0.05, 0.3, 1, 3, 10])))
            v: Any = "not detected" if level is None or rnd.random() < 0.2 else round(level, 5)
            m = mrd(method, rnd.choice(_SPELLINGS.get(marker, [marker])), v, lod=rnd.choice([0.001, 0.01, 0.5, None]),
                    tissue=rnd.choice([None, None, "blood", "marrow"]))
            results.append(m)
        if results:
            tp["mrd"] = results
        tps.append({k: v for k, v in tp.items() if v is not None})
    mrd_markers = [{"method": m, "marker": k, **({"baseline": 40, "unit": "%"} if rnd.random() < 0.5 else {})}
                   for m, k in markers]
    return {"patient": f"R{i:04d}", "diagnosis": {"date": dx.isoformat(), "disease": "AML (random)",
                                                   "baseline_marrow_blasts_pct": rnd.choice([None, 12, 30, 60]),
                                                   "mrd_markers": mrd_markers},
            "treatment_lines": lines, "timepoints": tps}


def _timelines(n: int, seed: int) -> list[Any]:
    rnd, out = random.Random(seed), []
    while len(out) < n:
        try:
            out.append(timeline_from_dict(_course(rnd, len(out))))
        except InputError:  # an implausible random record (e.g. ANC > WBC): draw another
            continue
    return out


@pytest.mark.parametrize("cfg", CONFIGS, ids=["default", "literal", "wide"])
def test_random_courses_equal_reference(cfg):
    tls = _timelines(400, seed=7)
    for tl in tls:
        _same(tl, cfg)


def test_random_courses_cover_the_engine():
    cats, kinds = set(), set()
    for tl in _timelines(400, seed=7):
        r = assess(tl)
        cats.update(c.category for c in r.calls)
        kinds.update(e.kind for e in r.events)
    assert {"CR", "CRh", "CRi", "MLFS", "PR", "no response", "refractory", "progression", "hematologic relapse",
            "relapsed disease", "not evaluable", "pre-treatment", "MRD relapse"} <= cats
    assert {"new_response", "loss_of_response", "relapse_suspected", "mrd_conversion", "mrd_relapse",
            "refractory", "progression", "projected_relapse"} <= kinds


def test_memo_tables_do_not_change_results():
    tls = _timelines(60, seed=11)
    response.clear_caches()
    cold = [assess(tl) for tl in tls]
    warm = [assess(tl) for tl in tls]
    assert cold == warm and repr(cold) == repr(warm)
    # -0 and 0 are equal Decimals (one memo key) but print differently: zeros bypass the memo.
    for zero in ("-0", "0", "-0", "0.00"):
        call = assess(timeline_from_dict(record(marrow("2024-02-01", marrow_blasts_pct=zero,
                                                       blood_blasts_pct=zero)))).calls[-1]
        want = "-0 %" if zero.startswith("-") else "0 %"
        assert [c.value for c in call.criteria[:2]] == [want, want]


def test_unsorted_lines_fall_back_to_the_linear_scan():
    # A Timeline built without validation (model_construct) may hold lines out of order.
    tl = timeline_from_dict(record(marrow("2024-02-01"), marrow("2024-08-01", marrow_blasts_pct=30),
                                   lines=[{"start": "2024-01-05", "regimen": "a", "intensity": "intensive"},
                                          {"start": "2024-06-01", "regimen": "b", "intensity": "less-intensive"}]))
    swapped = tl.model_construct(**{**dict(tl), "treatment_lines": tl.treatment_lines[::-1]})
    _same(swapped, MonitorConfig())


# --- hypothesis ----------------------------------------------------------------------------------------
START = date(2024, 1, 6)


@st.composite
def courses(draw):
    n = draw(st.integers(1, 10))
    offsets = sorted(draw(st.sets(st.integers(1, 500), min_size=n, max_size=n)))
    tps = []
    for off in offsets:
        day = (START + timedelta(days=off)).isoformat()
        kw: dict[str, Any] = {
            "anc_1e9_per_l": draw(st.sampled_from([None, 0.2, 0.5, 0.999, 1, 2])),
            "platelets_1e9_per_l": draw(st.sampled_from([None, 30, 50, 99, 100, 200])),
            "blood_blasts_pct": draw(st.sampled_from([None, 0, 0, 1, 5, 40])),
            "extramedullary_disease": draw(st.sampled_from([None, False, False, True])),
        }
        if draw(st.booleans()):
            kw["wbc_1e9_per_l"] = 90
        if draw(st.booleans()):
            kw["mrd"] = [mrd(draw(st.sampled_from(["qpcr", "flow", "ngs"])), draw(st.sampled_from(["NPM1", "WT1"])),
                             draw(st.sampled_from(["not detected", 0.001, 0.01, 0.1, 0.5, 1, 3, 20])),
                             lod=draw(st.sampled_from([0.001, 0.2, None])),
                             tissue=draw(st.sampled_from([None, "blood"])))]
        if draw(st.booleans()):
            tps.append(marrow(day, marrow_blasts_pct=draw(st.sampled_from([None, 0, 2, 5, 10, 24, 30, 60, 90])),
                              marrow_cells_counted=draw(st.sampled_from([None, 100, 300])), **kw))
        else:
            tps.append(blood(day, **kw))
    lines = [{"start": "2024-01-05", "regimen": "a", "intensity": draw(st.sampled_from(["intensive",
                                                                                         "less-intensive"])),
              "courses": draw(st.sampled_from([[], ["2024-01-05"], ["2024-01-05", "2024-02-05"]]))}]
    if draw(st.booleans()):
        lines.append({"start": (START + timedelta(days=draw(st.integers(30, 400)))).isoformat(), "regimen": "b",
                      "intensity": "intensive", "courses": []})
    return record(*tps, lines=lines, baseline=draw(st.sampled_from([None, 20, 50, 80])))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(courses(), st.sampled_from(CONFIGS))
def test_hypothesis_courses_equal_reference(rec, cfg):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TimelineWarning)
        tl = timeline_from_dict(rec)
    _same(tl, cfg)
