"""Implausible dates: a date after today is an error; a date > 2 years after the previous one is a warning."""

from __future__ import annotations

import json
import warnings
from datetime import date

import pytest
from monitoring_helpers import blood, marrow, record
from typer.testing import CliRunner

from hemotwin.cli import app
from hemotwin.errors import InputError
from hemotwin.monitoring.response import assess
from hemotwin.monitoring.timeline import MAX_GAP_DAYS, TimelineWarning, timeline_from_dict, timeline_from_json

TODAY = date(2025, 1, 1)  # a fixed "today" for the loader (the default is the current date)


def _rec(*dates: str, **kw):
    return record(marrow("2024-02-01"), *(blood(d) for d in dates), patient="PD", **kw)


@pytest.mark.parametrize(("mutate", "field", "value"), [
    (lambda d: d["timepoints"].append(blood("2030-03-05")), "timepoints.date", "2030-03-05"),
    (lambda d: d["diagnosis"].update(date="2030-01-02"), "diagnosis.date", "2030-01-02"),
    (lambda d: d["treatment_lines"].append({"start": "2030-01-01", "regimen": "r", "intensity": "intensive"}),
     "treatment_lines.start", "2030-01-01"),
    (lambda d: d["treatment_lines"][0]["courses"].append("2030-02-05"), "treatment_lines.courses", "2030-02-05"),
])
def test_a_date_after_today_is_an_error_naming_patient_field_and_value(mutate, field, value):
    # Before: accepted silently (the calls then ran into the future).
    d = _rec("2024-03-01")
    mutate(d)
    with pytest.raises(InputError) as exc:
        timeline_from_dict(d, today=TODAY)
    assert exc.value.where == f"PD {field}" and exc.value.value == value
    assert "not after today (2025-01-01)" in exc.value.expected


def test_today_itself_is_accepted():
    assert timeline_from_dict(_rec("2025-01-01"), today=TODAY).timepoints[-1].date == TODAY


def test_a_two_year_jump_is_a_warning_naming_patient_field_and_value():
    # 2030 typed for 2024, read when 2030 is no longer in the future: before, accepted silently.
    with pytest.warns(TimelineWarning) as caught:
        tl = timeline_from_dict(_rec("2024-03-01", "2030-03-05"), today=date(2031, 1, 1))
    (msg,) = tl.warnings
    assert msg.startswith("PD timepoints.date: 2030-03-05 is 2195 days after the previous date of the timeline "
                          "(timepoints.date 2024-03-01)")
    assert str(caught[0].message) == msg
    r = assess(tl)
    assert r.warnings == (msg,)  # shown with the result (report "Data warnings", JSON "warnings", console)


def test_the_gap_boundary_is_two_years():
    assert MAX_GAP_DAYS == 731  # two years, a leap day included
    with warnings.catch_warnings():
        warnings.simplefilter("error", TimelineWarning)
        timeline_from_dict(_rec("2024-03-01", "2026-03-02"), today=TODAY.replace(year=2027))  # 731 days: quiet
    with pytest.warns(TimelineWarning, match="732 days"):
        timeline_from_dict(_rec("2024-03-01", "2026-03-03"), today=TODAY.replace(year=2027))


def test_line_starts_and_the_diagnosis_count_as_dates_of_the_timeline():
    far_line = {"start": "2027-01-10", "regimen": "late", "intensity": "less-intensive"}
    with pytest.warns(TimelineWarning, match=r"PD treatment_lines.start: 2027-01-10 is \d+ days"):
        timeline_from_dict(record(marrow("2024-02-01"), lines=[{"start": "2024-01-05", "regimen": "7+3",
                                                                 "intensity": "intensive"}, far_line], patient="PD"),
                           today=date(2028, 1, 1))
    # the first timepoint three years after the diagnosis (a mistyped diagnosis year?)
    d = record(marrow("2027-02-01"), patient="PD", lines=[{"start": "2027-01-05", "regimen": "r",
                                                           "intensity": "intensive"}])
    with pytest.warns(TimelineWarning, match=r"PD treatment_lines.start: 2027-01-05 .* \(diagnosis.date 2024-01-02\)"):
        timeline_from_dict(d, today=date(2028, 1, 1))


def test_the_warning_is_recorded_once_through_a_re_read():
    with pytest.warns(TimelineWarning):
        tl = timeline_from_dict(_rec("2024-03-01", "2030-03-05"), today=date(2031, 1, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error", TimelineWarning)
        back = timeline_from_json(tl.to_json(), today=date(2031, 1, 1))
    assert back == tl and len(back.warnings) == 1


def test_cli_names_the_future_date_and_shows_the_gap_warning(tmp_path):
    runner = CliRunner()
    future = tmp_path / "future.json"
    future.write_text(json.dumps(_rec("2024-03-01", "2999-03-05")))
    res = runner.invoke(app, ["monitor", str(future), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and not (tmp_path / "o").exists()
    flat = " ".join(res.stderr.split())
    assert "PD timepoints.date" in flat and "2999-03-05" in flat and "not after today" in flat
    gap = tmp_path / "gap.json"  # every date in the past, the last one 3 years after the one before
    gap.write_text(json.dumps({
        "patient": "PD", "diagnosis": {"date": "2020-01-02", "disease": "AML (test)"},
        "treatment_lines": [{"start": "2020-01-05", "regimen": "7+3", "intensity": "intensive"}],
        "timepoints": [marrow("2020-02-01"), blood("2020-03-01"), blood("2023-03-05")]}))
    res = runner.invoke(app, ["monitor", str(gap), "--out", str(tmp_path / "g")])
    assert res.exit_code == 0, res.output
    flat = " ".join(res.stderr.split())
    assert "warning PD timepoints.date: 2023-03-05 is 1099 days" in flat
    assert "TimelineWarning" not in flat  # said once, in our words
    doc = json.loads((tmp_path / "g" / "timeline.json").read_text())
    assert any("2023-03-05" in w for w in doc["result"]["warnings"])
