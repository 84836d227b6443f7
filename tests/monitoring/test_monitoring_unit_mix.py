"""MRD values in mixed units: projections never precede their alert, and a likely unit slip is flagged.

A single result typed in copies/10^5 among % results (or the reverse) is a ~1000x jump: it used to become the
series' nadir, so the next ordinary result looked like a >= 1 log10 rise (an MRD relapse) and the fit through it
was so steep that it ran above the projection threshold before the last sample (a crossing dated before its
alert, and an interval with its lower bound after its upper bound).
"""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from monitoring_helpers import build, marrow, mrd, record
from reference_engine import reference_assess

from hemotwin.errors import InputError
from hemotwin.monitoring import mrd as M
from hemotwin.monitoring.config import MonitorConfig
from hemotwin.monitoring.report import patient_html, result_to_dict
from hemotwin.monitoring.response import assess
from hemotwin.monitoring.timeline import (
    read_timelines_csv,
    timeline_from_dict,
    timeline_from_json,
    write_timeline_csv,
)

D = Decimal
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check_projection(k: M.Kinetics) -> None:
    """The invariants of a projection: on or after its last sample, inside its interval, bounds in order."""
    if k.projected_date is not None:
        assert k.projected_date >= k.as_of
    if k.projected_date_ci is not None:
        early, late = k.projected_date_ci
        for bound in (early, late):
            assert bound is None or bound >= k.as_of
        if early is not None and late is not None:
            assert early <= late
        if k.projected_date is not None:
            assert early is None or early <= k.projected_date
            assert late is None or k.projected_date <= late


# --- (a) projections ---------------------------------------------------------------------------------------


def test_steep_fit_through_a_tiny_value_projects_after_the_last_sample():
    # 0.00004 % (0.04 copies/1e5 typed among % values), then 0.5 % and 1.2 %: the fitted line is above 2 % at the
    # last sample although 1.2 % is not. Before the fix: projected 2024-04-30 for a series ending 2024-05-05.
    pts = [(date(2024, 3, 5), D("0.00004"), False), (date(2024, 4, 5), D("0.5"), False),
           (date(2024, 5, 5), D("1.2"), False)]
    k = M.rising_kinetics(pts, method="qpcr", marker="NPM1", tissue="marrow", threshold_pct=D(2))
    assert k is not None and k.projected_date is not None
    _check_projection(k)
    # from 1.2 % at the fitted rate: log10(2 / 1.2) / slope days after the last sample (rounded to a day)
    days = (k.projected_date - k.as_of).days
    assert abs(days - (D(2) / D("1.2")).log10() / D(repr(k.slope_log10_per_day))) <= D("0.5")


def test_interval_bounds_are_in_order_for_a_well_fitted_steep_rise():
    # Four points rising ~100x a month, ending at 1.5 %: the fit is tight (both interval bounds finite) and runs
    # above 2 % at the last sample. Before the fix: interval (early after late), both before the last sample.
    pts = [(date(2024, 1, 1) + timedelta(days=30 * i), D(v), False) for i, v in
           enumerate(["0.00001", "0.0012", "0.1", "1.5"])]
    k = M.rising_kinetics(pts, method="qpcr", marker="NPM1", tissue="marrow", threshold_pct=D(2))
    assert k is not None and k.projected_date_ci is not None and None not in k.projected_date_ci
    _check_projection(k)


@st.composite
def rising_series(draw):
    n = draw(st.integers(2, 7))
    gaps = draw(st.lists(st.integers(1, 120), min_size=n - 1, max_size=n - 1))
    # values over 8 decades, as a unit slip makes them (1e-6 % .. 99 %)
    vals = draw(st.lists(st.decimals(min_value=D("0.000001"), max_value=D(99), places=6).filter(lambda v: v > 0),
                         min_size=n, max_size=n))
    day, pts = date(2024, 1, 1), []
    for i, v in enumerate(vals):
        pts.append((day, v, False))
        if i < n - 1:
            day += timedelta(days=gaps[i])
    return pts


@SETTINGS
@given(rising_series(), st.sampled_from([D("0.5"), D(2), D(5)]), st.sampled_from([0.8, 0.95, 0.99]))
def test_property_projection_never_before_last_sample_and_interval_ordered(pts, threshold, level):
    k = M.rising_kinetics(pts, method="qpcr", marker="NPM1", tissue="marrow", threshold_pct=threshold, level=level)
    if k is not None:
        _check_projection(k)


_UNITS = [("%", D(1)), ("copies/1e5", D("0.001")), ("copies/1e4", D("0.01"))]


@st.composite
def mixed_unit_courses(draw):
    n = draw(st.integers(2, 8))
    tps, day = [], date(2024, 2, 1)
    for _ in range(n):
        unit, factor = draw(st.sampled_from(_UNITS))
        level = draw(st.sampled_from([D("0.00004"), D("0.001"), D("0.01"), D("0.05"), D("0.3"), D("1.2"),
                                      D("1.9")]))
        # the level in % written in the drawn unit, unless this result slips (the % number typed with that unit)
        raw = level if draw(st.integers(0, 4)) == 0 else level / factor
        tps.append(marrow(day.isoformat(), mrd=[mrd("qpcr", "NPM1", str(raw), unit=unit)]))
        day += timedelta(days=draw(st.integers(7, 60)))
    return record(*tps)


@SETTINGS
@given(mixed_unit_courses(), st.sampled_from([MonitorConfig(), MonitorConfig(projection_horizon_days=400)]))
def test_property_engine_alerts_never_project_into_the_past(rec, cfg):
    r = assess(timeline_from_dict(rec), cfg)
    for k in r.kinetics:
        _check_projection(k)
    for e in r.events:
        if e.kind == "projected_relapse":
            (on,) = re.findall(r"on (\d{4}-\d{2}-\d{2})", e.message)
            assert date.fromisoformat(on) >= e.date
            for ev in e.evidence:
                if ev.startswith("interval "):
                    lo, hi = re.findall(r"(\d{4}-\d{2}-\d{2}|\?|unbounded)", ev)
                    if "-" in lo:
                        assert date.fromisoformat(lo) >= e.date
                        assert "-" not in hi or date.fromisoformat(lo) <= date.fromisoformat(hi)
    # the optimised engine and the straightforward one agree on mixed units too
    assert r == reference_assess(timeline_from_dict(rec), cfg)


# --- (b) a jump explained by the units is flagged and drives nothing on its own ------------------------------


def _npm1(*values: tuple[str, str], step: int = 30):
    """A CR course with one qPCR NPM1 result per marrow: (value, unit) pairs, ``step`` days apart."""
    tps = [marrow((date(2024, 2, 1) + timedelta(days=step * i)).isoformat(), mrd=[mrd("qpcr", "NPM1", v, unit=u)])
           for i, (v, u) in enumerate(values)]
    return build(*tps)


SLIP = (("0.05", "%"), ("0.04", "copies/1e5"), ("0.05", "%"), ("0.06", "%"))


def test_a_unit_slip_alone_makes_no_mrd_relapse_and_no_projection():
    # Before: 0.00004 % became the nadir, 0.05 % a ">= 1 log10 rise" confirmed by 0.06 % (MRD relapse), and the
    # steep fit through it a projected crossing of 2 %.
    r = assess(_npm1(*SLIP))
    kinds = [e.kind for e in r.events]
    assert "mrd_unit_suspect" in kinds
    assert not {"molecular_progression", "mrd_relapse", "projected_relapse"} & set(kinds)
    assert "MRD relapse" not in [c.category for c in r.calls]
    assert [p.unit_mix_suspected for p in r.mrd] == [False, True, False, False]
    (ev,) = [e for e in r.events if e.kind == "mrd_unit_suspect"]
    assert ev.severity == "warning" and ev in r.open_alerts and ev.date == date(2024, 3, 2)
    assert "0.04 copies/1e5" in ev.message and "1250x" in ev.message
    assert any("read in %: 0.04 %" in x for x in ev.evidence)  # what the number would be in the other unit
    assert all(k.first_date != date(2024, 3, 2) for k in r.kinetics)  # never part of a fit


def test_the_slip_is_shown_in_json_and_report():
    tl = _npm1(*SLIP)
    r = assess(tl)
    doc = json.loads(json.dumps(result_to_dict(r)))
    assert [p["unit_mix_suspected"] for p in doc["mrd"]] == [False, True, False, False]
    assert any(e["kind"] == "mrd_unit_suspect" for e in doc["open_alerts"])
    page = patient_html(tl, r, None, {})
    assert "probably entered in the wrong unit" in page


def test_a_real_rise_after_a_slip_is_still_called():
    # The slip is left out; the rise of the % results themselves (0.05 -> 0.5 -> 1.2) is a confirmed relapse.
    r = assess(_npm1(("0.05", "%"), ("0.04", "copies/1e5"), ("0.5", "%"), ("1.2", "%")))
    assert [c.category for c in r.calls][-1] == "MRD relapse"
    assert r.mrd[1].unit_mix_suspected and not r.mrd[2].unit_mix_suspected


def test_an_upward_slip_does_not_confirm_a_conversion():
    # negative, then 0.01 % (a conversion, awaiting confirmation), then "0.5 fraction" = 50 %: 5000x the 0.01 %,
    # but only 50x if the 0.5 was meant in %: suspected, so it does not confirm the conversion.
    r = assess(_npm1(("not detected", "%"), ("0.01", "%"), ("0.5", "fraction")))
    assert [p.unit_mix_suspected for p in r.mrd] == [False, False, True]
    assert "mrd_relapse" not in [e.kind for e in r.events]
    assert [e.kind for e in r.open_alerts] == ["mrd_conversion", "mrd_unit_suspect"]  # still awaiting confirmation


def test_units_that_agree_are_not_suspected():
    # 40 copies/1e5 is 0.04 %: a different unit, the same level (no jump).
    assert not any(p.unit_mix_suspected for p in assess(_npm1(("0.05", "%"), ("40", "copies/1e5"))).mrd)
    # the same 1250x fall in one unit is no unit slip (a real fall)
    assert not any(p.unit_mix_suspected for p in assess(_npm1(("0.05", "%"), ("0.00004", "%"))).mrd)
    # a jump of 299x is below the 300x suspicion threshold (exact decimals: 0.0299 / 0.0001 = 299)
    assert not any(p.unit_mix_suspected for p in assess(_npm1(("0.0299", "%"), ("0.1", "copies/1e5"))).mrd)
    assert assess(_npm1(("0.03", "%"), ("0.1", "copies/1e5"))).mrd[1].unit_mix_suspected  # 300x


def test_a_laboratory_change_of_unit_is_flagged_once():
    # % then copies/1e5 from the second result on: the first copies result looks like a slip, the next one in the
    # same unit agrees with it (the laboratory changed its unit) and is used again.
    r = assess(_npm1(("0.05", "%"), ("0.04", "copies/1e5"), ("0.05", "copies/1e5"), ("0.06", "copies/1e5")))
    assert [p.unit_mix_suspected for p in r.mrd] == [False, True, False, False]


def test_no_suspicion_across_a_new_treatment_line():
    # Diagnosis 50 % in %, then 0.005 % reported as 5 copies/1e5 after induction: a 4 log10 fall is expected.
    tl = build(marrow("2024-01-03", marrow_blasts_pct=60, mrd=[mrd("qpcr", "NPM1", 50)]),
               marrow("2024-02-20", mrd=[mrd("qpcr", "NPM1", "0.005", unit="copies/1e5")]))
    r = assess(tl)
    assert not any(p.unit_mix_suspected for p in r.mrd)
    assert "mrd_unit_suspect" not in [e.kind for e in r.events]


def test_entered_unit_survives_json_and_csv(tmp_path):
    tl = _npm1(*SLIP)
    assert [m.entered_unit for tp in tl.timepoints for m in tp.mrd] == ["%", "copies/1e5", "%", "%"]
    assert tl.timepoints[1].mrd[0].value_pct == D("0.00004")
    assert timeline_from_json(tl.to_json()) == tl
    (back,) = read_timelines_csv(write_timeline_csv([tl], tmp_path / "t.csv"))
    assert back == tl
    assert assess(back) == assess(tl)


def test_entered_unit_is_checked():
    rec = record(marrow("2024-02-01", mrd=[{"method": "qpcr", "marker": "NPM1", "value_pct": 0.1,
                                           "entered_unit": "copies/ul"}]))
    with pytest.raises(InputError, match=r"entered_unit.*copies/1e5"):
        timeline_from_dict(rec)
