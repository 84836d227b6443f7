"""The shipped example patients: each one's expected calls, events and status."""

from __future__ import annotations

import pytest

from hemotwin.monitoring.demo import example_paths
from hemotwin.monitoring.response import assess
from hemotwin.monitoring.timeline import load_timeline

EXPECTED = {
    "EX01": (["pre-treatment", "not evaluable", "CR MRD-low-level", "not evaluable", "CR MRD-negative",
              "CR MRD-negative", "not evaluable"], ["new_response", "new_response"], "CR (in remission"),
    "EX02": (["pre-treatment", "CRi MRD-positive", "CRi MRD-negative"], ["new_response", "new_response"], "CRi"),
    "EX03": (["pre-treatment", "no response", "no response", "refractory"], ["refractory"], "refractory"),
    "EX04": (["pre-treatment", "CR MRD-negative", "not evaluable", "not evaluable", "hematologic relapse",
              "relapsed disease"], ["new_response", "new_response", "relapse_suspected", "loss_of_response"],
             "hematologic relapse (2024-04-22)"),
    # The sample after the confirmed MRD relapse is still "MRD relapse": no new treatment line documents a response.
    "EX05": (["pre-treatment", "CR MRD-low-level", "CR MRD-low-level", "CR MRD-low-level", "CR MRD-low-level",
              "MRD relapse", "MRD relapse"],
             ["new_response", "molecular_progression", "mrd_relapse", "projected_relapse", "projected_relapse"],
             "MRD relapse (2024-02-06)"),
    "EX06": (["pre-treatment", "PR", "CR MRD-positive", "CRh MRD-negative", "CRh", "MLFS"],
             ["new_response", "new_response", "loss_of_response", "new_response", "loss_of_response"],
             "MLFS, not a remission"),
    "EX07": (["pre-treatment", "CR MRD-positive", "CR MRD-low-level", "CR MRD-negative", "CR MRD-low-level",
              "MRD relapse", "not evaluable", "hematologic relapse"],
             ["new_response", "new_response", "mrd_conversion", "mrd_relapse", "projected_relapse",
              "relapse_suspected", "loss_of_response"], "hematologic relapse (2024-08-27)"),
}


@pytest.mark.parametrize("path", example_paths(), ids=lambda p: p.stem)
def test_example_calls(path):
    tl = load_timeline(path)
    labels, kinds, status = EXPECTED[tl.patient]
    r = assess(tl)
    got = [c.label if c.category in ("CR", "CRh", "CRi") else c.category for c in r.calls]
    assert got == labels
    assert [e.kind for e in r.events] == kinds
    assert status in r.current_status


def test_at_least_six_examples_cover_the_issue():
    assert len(example_paths()) >= 6
    assert {p.suffix for p in example_paths()} == {".json", ".csv"}


def test_example_kinetics_ex05():
    r = assess(load_timeline(next(p for p in example_paths() if p.stem.startswith("EX05"))))
    (k,) = r.kinetics
    assert k.n_points == 5 and not k.two_point
    lo, hi = k.doubling_days_ci
    assert lo < k.doubling_days < hi
    early, late = k.projected_date_ci
    assert early < k.projected_date < late
