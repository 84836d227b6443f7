"""A relapse stands until a new response is documented after new treatment (ELN 2022; docs/monitoring.md).

"New response documented", in data: a timepoint on a treatment line started on or after the relapse (MRD relapse:
its onset; hematologic relapse: the day it was called; a sample on a line's start date is taken before the first
dose) whose call is CR, CRh or CRi, and for an MRD relapse with every MRD result negative, the relapsed marker
among them.
"""

from __future__ import annotations

import pytest
from monitoring_helpers import LINE, build, marrow, mrd

from hemotwin.monitoring.mrd_course import MRD_RELAPSE_RESOLVED
from hemotwin.monitoring.response import assess

ND = "not detected"
SALVAGE = {"start": "2024-07-01", "regimen": "salvage", "intensity": "intensive", "courses": []}


def _npm1(day, value, **kw):
    return marrow(day, mrd=[mrd("qpcr", "NPM1", value)], **kw)


# CR MRD-negative, conversion on 04-01, confirmed on 05-01 (MRD relapse, onset 04-01)
COURSE = [_npm1("2024-02-01", ND), _npm1("2024-03-01", ND), _npm1("2024-04-01", 0.01), _npm1("2024-05-01", 0.05)]


def test_the_timepoint_after_a_confirmed_mrd_relapse_is_still_mrd_relapse():
    # Before: "CR MRD-low-level" (green), as if the relapse had gone away.
    r = assess(build(*COURSE, _npm1("2024-06-01", 0.1)))
    assert [c.category for c in r.calls] == ["CR", "CR", "CR", "MRD relapse", "MRD relapse"]
    last = r.calls[-1]
    assert last.label == "MRD relapse (since 2024-04-01; CR MRD-low-level)"
    assert last.rule.startswith("§5 MRD relapse")
    stands = last.criteria[-1]
    assert stands.test == MRD_RELAPSE_RESOLVED and stands.met is False
    assert "no treatment line started since the onset 2024-04-01" in stands.value
    assert "MRD relapse (2024-04-01)" in r.current_status
    assert "mrd_relapse" in [e.kind for e in r.open_alerts]


def test_mrd_negativity_without_new_treatment_does_not_resolve_it():
    r = assess(build(*COURSE, _npm1("2024-06-01", ND), _npm1("2024-07-01", ND)))
    assert [c.category for c in r.calls][-2:] == ["MRD relapse", "MRD relapse"]
    assert r.calls[-1].label == "MRD relapse (since 2024-04-01; CR MRD-negative)"
    assert "mrd_relapse" in [e.kind for e in r.open_alerts]


def test_a_new_line_then_cr_mrd_negative_resolves_it():
    r = assess(build(*COURSE, _npm1("2024-06-01", 0.1), _npm1("2024-08-01", ND), _npm1("2024-09-01", ND),
                     lines=[LINE, SALVAGE]))
    assert [c.category for c in r.calls][-3:] == ["MRD relapse", "CR", "CR"]
    resolved = r.calls[-2]
    assert resolved.label == "CR MRD-negative" and resolved.criteria[-1].met is True
    assert "MRD relapse" not in resolved.status and "MRD relapse" not in r.current_status
    ev = [e for e in r.events if e.kind == "new_response" and "after MRD relapse" in e.message]
    assert len(ev) == 1 and ev[0].date.isoformat() == "2024-08-01"
    assert r.open_alerts == ()  # the relapse alert is closed by the new response


def test_a_new_mrd_relapse_can_follow_the_resolution():
    r = assess(build(*COURSE, _npm1("2024-08-01", ND), _npm1("2024-09-01", 0.02), _npm1("2024-10-01", 0.03),
                     lines=[LINE, SALVAGE]))
    assert [c.category for c in r.calls][-3:] == ["CR", "CR", "MRD relapse"]
    assert [e.kind for e in r.events].count("mrd_relapse") == 2
    assert "MRD relapse (2024-09-01)" in r.current_status


@pytest.mark.parametrize(("later", "why"), [
    (_npm1("2024-08-01", 0.5), "MRD still detected (low-level)"),
    (marrow("2024-08-01", mrd=[mrd("flow", "LAIP", ND)]), "the relapsed marker (qPCR NPM1) not tested"),
    (marrow("2024-08-01"), "no MRD tested"),
    (_npm1("2024-08-01", ND, anc_1e9_per_l=0.3, platelets_1e9_per_l=30), "no CR/CRh/CRi (MLFS)"),
])
def test_what_does_not_resolve_it_on_new_treatment(later, why):
    r = assess(build(*COURSE, later, lines=[LINE, SALVAGE]))
    assert "MRD relapse" in r.current_status, why
    assert "mrd_relapse" in [e.kind for e in r.open_alerts], why


def test_a_line_started_between_onset_and_confirmation_counts():
    # Pre-emptive therapy after the first positive sample (04-01), before the confirming one (05-01).
    pre = {"start": "2024-04-15", "regimen": "pre-emptive", "intensity": "less-intensive", "courses": []}
    r = assess(build(*COURSE, _npm1("2024-06-01", ND), lines=[LINE, pre]))
    assert r.calls[-1].category == "CR" and "MRD relapse" not in r.current_status


def test_a_hematologic_relapse_stands_without_new_treatment():
    # Before: a later marrow meeting CR criteria was a new CR "(after relapse)" without any new treatment.
    r = assess(build(marrow("2024-02-01"), marrow("2024-05-01", marrow_blasts_pct=30), marrow("2024-06-01")))
    assert [c.category for c in r.calls] == ["CR", "hematologic relapse", "relapsed disease"]
    assert r.calls[-1].criteria[-1].test.startswith("relapse stands") and r.calls[-1].criteria[-1].met
    assert r.current_status.startswith("hematologic relapse")
    assert not [e for e in r.events if "after relapse" in e.message]


def test_a_line_starting_on_the_relapse_date_is_new_treatment():
    # The relapse marrow of 05-01 is taken before the first dose of a line starting that day.
    same_day = {"start": "2024-05-01", "regimen": "salvage", "intensity": "intensive", "courses": []}
    r = assess(build(marrow("2024-02-01"), marrow("2024-05-01", marrow_blasts_pct=30), marrow("2024-06-01"),
                     lines=[LINE, same_day]))
    assert [c.category for c in r.calls] == ["CR", "hematologic relapse", "CR"]
    assert "after relapse" in r.events[-1].message
