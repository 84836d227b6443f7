"""Two results of one MRD series on one date are refused at load (they would break the kinetics fit)."""

from __future__ import annotations

import pytest

from hemotwin.errors import InputError
from hemotwin.monitoring.timeline import timeline_from_dict


def _patient(markers: list[str]) -> dict:
    return {
        "patient": "P-DUP",
        "diagnosis": {"date": "2025-01-01", "disease": "AML", "baseline_marrow_blasts_pct": 40},
        "timepoints": [{"date": "2025-03-01", "sample": "blood",
                        "mrd": [{"method": "qpcr", "marker": m, "value_pct": 0.5} for m in markers]}],
    }


def test_same_series_twice_on_one_date_is_refused():
    with pytest.raises(InputError, match="RUNX1"):
        timeline_from_dict(_patient(["RUNX1-RUNX1T1", "RUNX1::RUNX1T1"]))


def test_two_markers_on_one_date_are_fine():
    tl = timeline_from_dict(_patient(["RUNX1::RUNX1T1", "NPM1"]))
    assert len(tl.timepoints[0].mrd) == 2
