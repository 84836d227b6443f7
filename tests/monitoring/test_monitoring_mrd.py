"""MRD: §5 thresholds per method, MRD relapse (conversion, >= 1 log10 rise, confirmation), kinetics."""

from __future__ import annotations

import math
from datetime import date, timedelta
from decimal import Decimal

import pytest
from monitoring_helpers import blood, build, marrow, mrd
from scipy import stats

from hemotwin.monitoring import mrd as M
from hemotwin.monitoring.response import assess

D = Decimal


@pytest.mark.parametrize(("method", "marker", "value", "detected", "lod", "status", "censored"), [
    ("flow", "LAIP", D("0.1"), True, D("0.01"), M.POSITIVE, False),  # §5 flow >= 0.1 %
    ("flow", "LAIP", D("0.0999"), True, D("0.01"), M.NEGATIVE, False),
    ("flow", "LAIP", None, False, D("0.01"), M.NEGATIVE, True),
    ("flow", "LAIP", None, False, D("0.2"), M.NOT_EVALUABLE, True),  # LOD above the threshold proves nothing
    ("flow", "LAIP", D("0.05"), True, D("0.06"), M.NEGATIVE, True),  # below LOD: censored
    ("ngs", "IDH2", D("0.1"), True, D("0.01"), M.POSITIVE, False),  # §5 NGS VAF >= 0.1 %
    ("ngs", "IDH2", D("0.09"), True, D("0.01"), M.NEGATIVE, False),
    ("qpcr", "NPM1", D(2), True, D("0.001"), M.POSITIVE, False),  # §5 low-level is < 2 %
    ("qpcr", "NPM1", D("1.99"), True, D("0.001"), M.LOW_LEVEL, False),
    ("qpcr", "NPM1", D("0.001"), True, D("0.001"), M.LOW_LEVEL, False),  # at the LOD is detected
    ("qpcr", "RUNX1-RUNX1T1", D(1), True, None, M.LOW_LEVEL, False),
    ("qpcr", "CBFB::MYH11", D("0.5"), True, None, M.LOW_LEVEL, False),
    ("qpcr", "WT1", D("0.5"), True, None, M.POSITIVE, False),  # no low-level band outside NPM1/CBF
    ("qpcr", "NPM1", None, False, None, M.NEGATIVE, True),
    ("qpcr", "NPM1", D(0), True, None, M.NEGATIVE, True),  # a zero is never put on a log axis
])
def test_classify_table(method, marker, value, detected, lod, status, censored):
    s, c, reason = M.classify(method, marker, value, detected, lod)
    assert (s, c) == (status, censored), reason


def test_timepoint_mrd_label_combines_markers():
    tp = marrow("2024-02-01", mrd=[mrd("flow", "LAIP", 0.02, lod=0.01), mrd("qpcr", "NPM1", 0.5)])
    assert assess(build(tp)).calls[-1].label == "CR MRD-low-level"
    tp = marrow("2024-02-01", mrd=[mrd("flow", "LAIP", 0.02, lod=0.01), mrd("qpcr", "NPM1", "not detected")])
    assert assess(build(tp)).calls[-1].label == "CR MRD-negative"
    tp = marrow("2024-02-01", mrd=[mrd("flow", "LAIP", "not detected", lod=0.5)])
    assert assess(build(tp)).calls[-1].label == "CR MRD not evaluable"


def _series(*values, method="qpcr", marker="NPM1", tissues=None, start=date(2024, 2, 1), step=28):
    tps = []
    for i, v in enumerate(values):
        day = (start + timedelta(days=step * i)).isoformat()
        tissue = tissues[i] if tissues else "marrow"
        m = mrd(method, marker, v, lod=0.001 if method == "qpcr" else 0.01, tissue=tissue)
        tps.append(marrow(day, mrd=[m]) if tissue == "marrow" else blood(day, mrd=[m]))
    return assess(build(*tps))


def test_conversion_confirmed_is_a_later_event():
    r = _series("not detected", 0.01, 0.02)
    assert [c.category for c in r.calls] == ["CR", "CR", "MRD relapse"]
    assert [e.kind for e in r.events if e.kind.startswith("mrd")] == ["mrd_conversion", "mrd_relapse"]
    rel = next(e for e in r.events if e.kind == "mrd_relapse")
    assert rel.severity == "critical" and rel.onset == r.calls[1].date and rel.date == r.calls[2].date


def test_conversion_not_confirmed_closes_the_alert():
    r = _series("not detected", 0.01, "not detected")
    assert [e.kind for e in r.events if e.kind.startswith("mrd")] == ["mrd_conversion", "mrd_not_confirmed"]
    assert not any(e.kind.startswith("mrd") for e in r.open_alerts)
    assert "MRD relapse" not in r.current_status


def test_confirmation_needs_the_same_tissue():
    r = _series("not detected", 0.01, 0.05, 0.02, tissues=["marrow", "marrow", "blood", "marrow"])
    cats = [c.category for c in r.calls]
    assert cats[2] != "MRD relapse" and cats[3] == "MRD relapse"


def test_flow_conversion_uses_the_flow_threshold():
    r = _series(0.05, 0.1, 0.2, method="flow", marker="LAIP")  # 0.05 % < 0.1 % is negative by flow
    assert [c.category for c in r.calls] == ["CR", "CR", "MRD relapse"]


@pytest.mark.parametrize(("values", "rise_event", "relapse"), [
    ((0.01, 0.1, 0.1), True, True),  # exactly x10 is >= 1 log10, confirmed
    ((0.01, "0.0999", "0.0999"), False, False),  # just under 1 log10
    ((0.01, 0.1, 0.05), True, False),  # next sample under x10 the reference: not confirmed
    ((0.01, 0.005, 0.05, 0.06), True, True),  # the reference is the lowest positive value
])
def test_log_rise_qpcr(values, rise_event, relapse):
    r = _series(*values)
    kinds = [e.kind for e in r.events]
    assert ("molecular_progression" in kinds) is rise_event
    assert ("mrd_relapse" in kinds) is relapse


def test_log_rise_rule_is_qpcr_low_level_only():
    r = _series(0.11, 1.2, 5, method="flow", marker="LAIP")
    assert "mrd_relapse" not in [e.kind for e in r.events]


def test_no_mrd_relapse_outside_remission():
    tps = [marrow("2024-02-01", marrow_blasts_pct=30, mrd=[mrd("qpcr", "NPM1", "not detected")]),
           marrow("2024-03-01", marrow_blasts_pct=30, mrd=[mrd("qpcr", "NPM1", 1)]),
           marrow("2024-04-01", marrow_blasts_pct=30, mrd=[mrd("qpcr", "NPM1", 1)])]
    assert not any(e.kind.startswith("mrd") for e in assess(build(*tps)).events)


# --- kinetics -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("df", [1, 2, 3, 4, 5, 7, 10, 29, 30, 60, 200])
@pytest.mark.parametrize("p", [0.9, 0.95, 0.99])
def test_t_quantile_matches_scipy(df, p):
    assert M.t_quantile(p, df) == pytest.approx(stats.t.ppf(0.5 + p / 2, df), rel=1e-9)


def test_fit_interval_matches_scipy_linregress():
    xs, ys = [0.0, 20.0, 45.0, 60.0, 90.0], [-2.0, -1.6, -0.9, -0.8, -0.1]
    fit = M.fit_rising(xs, ys)
    lr = stats.linregress(xs, ys)
    tq = stats.t.ppf(0.975, len(xs) - 2)
    assert fit["b"] == pytest.approx(lr.slope)
    assert fit["ci"] == pytest.approx((lr.slope - tq * lr.stderr, lr.slope + tq * lr.stderr))


def _pts(values, step=20, start=date(2024, 1, 1)):
    out = []
    for i, v in enumerate(values):
        censored = v is None
        out.append((start + timedelta(days=step * i), None if censored else D(str(v)), censored))
    return out


def test_exact_doubling_and_projection():
    # 0.01 % doubling every 20 days: 2 % is log2(200) = 7.64 doublings after the first point.
    pts = _pts([0.01, 0.02, 0.04, 0.08])
    k = M.rising_kinetics(pts, method="qpcr", marker="NPM1", tissue="marrow", threshold_pct=D(2))
    assert k.doubling_days == pytest.approx(20)
    assert k.n_points == 4 and not k.two_point
    assert k.doubling_days_ci[0] == pytest.approx(20) and k.doubling_days_ci[1] == pytest.approx(20)
    expect = date(2024, 1, 1) + timedelta(days=round(20 * math.log2(200)))
    assert k.projected_date == expect


def test_two_point_estimate_is_flagged_without_interval():
    k = M.rising_kinetics(_pts([0.01, 0.04]), method="qpcr", marker="NPM1", tissue="marrow", threshold_pct=D(2))
    assert k.two_point and k.slope_ci is None and k.projected_date_ci is None
    assert any("two-point" in f for f in k.flags)


@pytest.mark.parametrize("values", [[0.01], [0.04, 0.02], [0.01, None, 0.02], [0.02, 0.02], []])
def test_no_rise_no_kinetics(values):
    assert M.rising_kinetics(_pts(values), method="qpcr", marker="NPM1", tissue="marrow", threshold_pct=D(2)) is None


def test_censored_point_starts_a_new_segment_and_nadir_starts_the_rise():
    k = M.rising_kinetics(_pts([0.5, None, 0.3, 0.01, 0.02, 0.04]), method="qpcr", marker="NPM1", tissue="m",
                          threshold_pct=D(2))
    assert k.n_points == 3 and k.first_date == date(2024, 1, 1) + timedelta(days=60)


def test_noisy_rise_has_an_unbounded_interval_flag():
    k = M.rising_kinetics(_pts([0.01, 0.03, 0.012, 0.02]), method="qpcr", marker="NPM1", tissue="m",
                          threshold_pct=D(2))
    assert k.slope_ci[0] <= 0 and k.doubling_days_ci[1] is None
    assert any("includes 0" in f for f in k.flags)


def test_already_above_threshold():
    k = M.rising_kinetics(_pts([0.5, 3]), method="qpcr", marker="NPM1", tissue="m", threshold_pct=D(2))
    assert k.already_above and k.projected_date is None


def test_log10_reduction():
    assert M.log10_reduction(D(50), D("0.05"), False, None) == (pytest.approx(3.0), False)
    red, lower = M.log10_reduction(D(50), None, True, D("0.001"))
    assert red == pytest.approx(math.log10(50 / 0.001)) and lower
    assert M.log10_reduction(None, D(1), False, None) == (None, False)


def test_projected_relapse_alert_within_horizon():
    r = _series(0.01, 0.02, 0.04, 0.08, 0.16, step=20)  # 2 % is 3.6 doublings (73 d) after the last sample
    ev = [e for e in r.events if e.kind == "projected_relapse"]
    assert ev and ev[0].severity in ("warning", "critical")
    far = _series(0.01, 0.011, 0.0121, step=60)
    assert not [e for e in far.events if e.kind == "projected_relapse"]


def test_mrd_points_carry_reduction_and_never_zero():
    r = _series("not detected", 0.01)
    p0, p1 = r.mrd
    assert p0.censored and p0.value_pct is None and p0.lod_pct == pytest.approx(0.001)
    assert p1.value_pct == pytest.approx(0.01)
