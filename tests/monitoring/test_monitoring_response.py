"""ELN 2022 response calls (docs/clinical_rules.md §5): every criterion and boundary, table-driven."""

from __future__ import annotations

import pytest
from monitoring_helpers import LINE, blood, build, marrow

from hemotwin.monitoring.config import MonitorConfig
from hemotwin.monitoring.response import assess

TP = "2024-02-01"  # after the line start, before the intensive landmark (2024-02-05 + 21 d)


def call_of(tp, **kw):
    return assess(build(tp, **kw)).calls[-1]


# (overrides of a CR-meeting marrow, expected category, expected MRD-free label / needs fragment)
RESPONSE_TABLE = [
    ({}, "CR", "§5 CR: all criteria met"),
    ({"anc_1e9_per_l": 1.0, "platelets_1e9_per_l": 100}, "CR", "ANC 1.0 and platelets 100 are CR-eligible"),
    ({"anc_1e9_per_l": None, "anc_per_ul": 1000}, "CR", "1000/µL is exactly 1.0 x10^9/L"),
    ({"marrow_blasts_pct": 4.99}, "CR", "4.99 % < 5 %"),
    ({"marrow_blasts_pct": 0}, "CR", "0 % < 5 %"),
    ({"anc_1e9_per_l": 0.999, "platelets_1e9_per_l": 100}, "CRh", "ANC below 1.0 -> CRh"),
    ({"anc_1e9_per_l": None, "anc_per_ul": 999}, "CRh", "999/µL < 1.0"),
    ({"platelets_1e9_per_l": 99.9}, "CRh", "platelets below 100 -> CRh"),
    ({"anc_1e9_per_l": 0.5, "platelets_1e9_per_l": 50}, "CRh", "§5 CRh boundaries ANC 0.5, platelets 50"),
    ({"anc_1e9_per_l": 0.49, "platelets_1e9_per_l": 100}, "CRi", "neutropenia below CRh, platelets recovered"),
    ({"anc_1e9_per_l": 1.0, "platelets_1e9_per_l": 49}, "CRi", "thrombocytopenia below CRh, ANC recovered"),
    ({"anc_1e9_per_l": 0.49, "platelets_1e9_per_l": 49}, "MLFS", "no lineage recovered, 300 cells counted"),
    ({"anc_1e9_per_l": 0.49, "platelets_1e9_per_l": 49, "marrow_cells_counted": 200}, "MLFS", "200 cells"),
    ({"anc_1e9_per_l": 0.49, "platelets_1e9_per_l": 49, "marrow_cells_counted": None,
      "marrow_cellularity_pct": 10}, "MLFS", "cellularity 10 %"),
    ({"anc_1e9_per_l": 0.49, "platelets_1e9_per_l": 49, "marrow_cells_counted": 199,
      "marrow_cellularity_pct": 9.9}, "not evaluable", "aplastic"),
    ({"anc_1e9_per_l": 0.49, "platelets_1e9_per_l": 49, "marrow_cells_counted": None}, "not evaluable",
     "marrow_cells_counted or marrow_cellularity_pct"),
    ({"marrow_blasts_pct": 5.0}, "PR", "5.0 % is not < 5 %; within 5-25 % and <= 50 % of 50 %"),
    ({"marrow_blasts_pct": 25}, "PR", "25 % upper PR boundary, exactly half of 50 %"),
    ({"marrow_blasts_pct": 25.01}, "no response", "above 25 %"),
    ({"marrow_blasts_pct": 10, "anc_1e9_per_l": 0.9}, "no response", "PR needs CR counts"),
    ({"marrow_blasts_pct": 10, "platelets_1e9_per_l": 99}, "no response", "PR needs CR counts"),
    ({"marrow_blasts_pct": 40, "anc_1e9_per_l": None}, "no response", "decidable without ANC"),
    ({"blood_blasts_pct": 1}, "no response", "circulating blasts"),
    ({"blood_blasts_pct": None}, "not evaluable", "blood_blasts_pct"),
    ({"extramedullary_disease": None}, "not evaluable", "extramedullary_disease"),
    ({"anc_1e9_per_l": None}, "not evaluable", "anc_1e9_per_l"),
    ({"marrow_blasts_pct": None}, "not evaluable", "marrow_blasts_pct"),
    ({"marrow_blasts_pct": 10, "platelets_1e9_per_l": None}, "not evaluable", "platelets_1e9_per_l"),
]


@pytest.mark.parametrize(("over", "category", "why"), RESPONSE_TABLE, ids=[r[2] for r in RESPONSE_TABLE])
def test_response_table(over, category, why):
    c = call_of(marrow(TP, **over))
    assert c.category == category, (c.label, why)
    if category == "not evaluable":
        assert not c.evaluable and why in c.label
        assert c.needs
    else:
        assert c.evaluable
        assert all(k.met is True for k in c.criteria if k.rule == f"§5 {category}") or category == "no response"


@pytest.mark.parametrize(("baseline", "blasts", "category"), [
    (50, 25, "PR"), (40, 20, "PR"), ("39.99", 20, "no response"), (12, 6, "PR"), (12, "6.01", "no response"),
])
def test_pr_fall_of_half_is_exact(baseline, blasts, category):
    assert call_of(marrow(TP, marrow_blasts_pct=blasts), baseline=baseline).category == category


def test_pr_without_pretreatment_blasts_is_not_evaluable():
    c = call_of(marrow(TP, marrow_blasts_pct=10), baseline=None)
    assert c.category == "not evaluable" and "pretreatment" in c.label


def test_pretreatment_blasts_from_last_marrow_before_line():
    tl = build(marrow("2024-01-04", marrow_blasts_pct=30), marrow(TP, marrow_blasts_pct=15), baseline=None)
    assert [c.category for c in assess(tl).calls] == ["pre-treatment", "PR"]


def test_every_call_lists_criteria_with_values():
    c = call_of(marrow(TP, anc_1e9_per_l=0.7))
    tests = {k.test: (k.value, k.met) for k in c.criteria}
    assert tests["ANC >= 1.0 x10^9/L"] == ("0.7 x10^9/L", False)
    assert tests["ANC >= 0.5 x10^9/L"] == ("0.7 x10^9/L", True)
    assert c.category == "CRh" and c.rule.startswith("ELN 2022")


def test_sample_on_line_start_is_pretreatment_and_blood_needs_marrow():
    calls = assess(build(marrow("2024-01-05"), blood(TP))).calls
    assert calls[0].category == "pre-treatment"
    assert calls[1].category == "not evaluable" and "marrow" in calls[1].label


@pytest.mark.parametrize(("day", "category"), [("2024-02-25", "no response"), ("2024-02-26", "refractory")])
def test_intensive_landmark_boundary(day, category):
    # §5 Refractory: after 2 courses (2nd course 2024-02-05) + 21 days of the response marrow convention.
    assert call_of(marrow(day, marrow_blasts_pct=30)).category == category


def test_intensive_landmark_literal_reading():
    cfg = MonitorConfig(intensive_eval_days=0)
    assert assess(build(marrow("2024-02-05", marrow_blasts_pct=30)), cfg).calls[-1].category == "refractory"
    assert assess(build(marrow("2024-02-04", marrow_blasts_pct=30)), cfg).calls[-1].category == "no response"


def test_one_course_never_reaches_the_intensive_landmark():
    line = {**LINE, "courses": ["2024-01-05"]}
    assert call_of(marrow("2024-12-01", marrow_blasts_pct=30), line=line).category == "no response"


@pytest.mark.parametrize(("day", "category"), [("2024-07-02", "no response"), ("2024-07-03", "refractory")])
def test_less_intensive_landmark_180_days(day, category):
    line = {"start": "2024-01-05", "regimen": "ven-aza", "intensity": "less-intensive", "courses": []}
    assert call_of(marrow(day, marrow_blasts_pct=30), line=line).category == category


def test_refractory_even_with_pr_at_landmark_and_event_once():
    r = assess(build(marrow("2024-03-01", marrow_blasts_pct=10), marrow("2024-04-01", marrow_blasts_pct=10)))
    assert [c.category for c in r.calls] == ["refractory", "refractory"]
    assert [e.kind for e in r.events] == ["refractory"] and r.events[0].severity == "critical"


def test_cr_at_landmark_is_not_refractory():
    assert call_of(marrow("2024-03-01")).category == "CR"


# --- progressive disease (ELN 2017 Table 9 note; flagged "confirm" in the code) --------------------------
@pytest.mark.parametrize(("baseline", "now", "progression"), [
    (20, 35, True),  # +75 % and +15 points
    (20, "34.99", False),  # +14.99 points < 15
    (40, "60.01", True),  # >= 30 % baseline: > 50 % rise suffices
    (40, 60, False),  # exactly +50 % is not > 50 %
])
def test_progression_marrow(baseline, now, progression):
    c = call_of(marrow(TP, marrow_blasts_pct=now), baseline=baseline)
    assert (c.category == "progression") is progression


def test_progression_new_emd_and_peripheral_blasts():
    base = marrow("2024-01-04", wbc_1e9_per_l=20, blood_blasts_pct=50, marrow_blasts_pct=50)
    emd = assess(build(base, blood(TP, extramedullary_disease=True))).calls[-1]
    assert emd.category == "progression"
    pb = assess(build(base, blood(TP, wbc_1e9_per_l=60, anc_1e9_per_l=1, blood_blasts_pct=50))).calls[-1]
    assert pb.category == "progression"  # 30 x10^9/L > 1.5 x 10 and > 25
    pb2 = assess(build(base, blood(TP, wbc_1e9_per_l=50, anc_1e9_per_l=1, blood_blasts_pct=50))).calls[-1]
    assert pb2.category != "progression"  # 25 is not > 25


# --- hematologic relapse after CR (§5) -----------------------------------------------------------------
CR_DAY = "2024-02-01"


@pytest.mark.parametrize(("later", "category"), [
    ([marrow("2024-05-01", marrow_blasts_pct=5.0)], "hematologic relapse"),
    ([marrow("2024-05-01", marrow_blasts_pct=4.99)], "CR"),
    ([blood("2024-05-01", extramedullary_disease=True)], "hematologic relapse"),
    ([blood("2024-05-01", blood_blasts_pct=1), blood("2024-05-07", blood_blasts_pct=1)], "not evaluable"),
    ([blood("2024-05-01", blood_blasts_pct=1), blood("2024-05-08", blood_blasts_pct=1)], "hematologic relapse"),
    ([blood("2024-05-01", blood_blasts_pct=1), blood("2024-05-04", blood_blasts_pct=0),
      blood("2024-05-09", blood_blasts_pct=1)], "not evaluable"),
    ([blood("2024-05-01")], "not evaluable"),
])
def test_hematologic_relapse_table(later, category):
    r = assess(build(marrow(CR_DAY), *later))
    assert r.calls[0].category == "CR"
    assert r.calls[-1].category == category
    if category == "hematologic relapse":
        assert r.events[-1].kind == "loss_of_response" and r.events[-1].severity == "critical"
        assert r.current_status.startswith("hematologic relapse")


def test_relapse_confirmation_is_a_later_event_not_a_rewrite():
    r = assess(build(marrow(CR_DAY), blood("2024-05-01", blood_blasts_pct=2), blood("2024-05-10", blood_blasts_pct=3)))
    assert [c.category for c in r.calls] == ["CR", "not evaluable", "hematologic relapse"]
    rel = r.events[-1]
    assert rel.date.isoformat() == "2024-05-10" and rel.onset.isoformat() == "2024-05-01"
    assert [e.kind for e in r.open_alerts] == ["loss_of_response"]  # the suspicion was closed by the relapse


def test_loss_and_regain_of_response():
    r = assess(build(marrow(CR_DAY), marrow("2024-03-01", anc_1e9_per_l=0.7), marrow("2024-04-01")))
    assert [c.category for c in r.calls] == ["CR", "CRh", "CR"]
    kinds = [(e.kind, e.severity) for e in r.events]
    assert kinds == [("new_response", "info"), ("loss_of_response", "warning"), ("new_response", "info")]
    assert r.open_alerts == ()


def test_new_remission_after_relapse_needs_no_refractory():
    lines = [LINE, {"start": "2024-06-01", "regimen": "salvage", "intensity": "intensive", "courses": []}]
    r = assess(build(marrow(CR_DAY), marrow("2024-05-01", marrow_blasts_pct=30),
                     marrow("2024-05-20", marrow_blasts_pct=35), marrow("2024-07-01"), lines=lines))
    assert [c.category for c in r.calls] == ["CR", "hematologic relapse", "relapsed disease", "CR"]
    assert "after relapse" in r.events[-1].message
    assert r.open_alerts == ()
