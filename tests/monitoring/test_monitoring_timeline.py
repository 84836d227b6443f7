"""Timeline records: aliases, JSON/CSV readers, round trips and bad input naming patient, date and field."""

from __future__ import annotations

import copy
import json
import warnings
from decimal import Decimal

import pytest
from monitoring_helpers import LINE, blood, build, marrow, mrd, record

from hemotwin.errors import InputError
from hemotwin.monitoring.demo import example_paths
from hemotwin.monitoring.timeline import (
    Timeline,
    TimelineWarning,
    load_timeline,
    read_timeline_records,
    read_timelines_csv,
    timeline_from_dict,
    timeline_from_json,
    write_timeline_csv,
)


def test_aliases_become_canonical_units():
    tl = build(marrow("2024-02-01", anc_1e9_per_l=None, platelets_1e9_per_l=None, anc_per_ul=1000,
                      platelets={"value": 100000, "unit": "/µL"}, hb={"value": 84, "unit": "g/L"},
                      marrow_blasts={"value": 4.99, "unit": "%"}))
    tp = tl.timepoints[0]
    assert tp.anc_1e9_per_l == Decimal("1.0") and tp.platelets_1e9_per_l == Decimal(100)
    assert tp.hb_g_per_dl == Decimal("8.4") and tp.marrow_blasts_pct == Decimal("4.99")


def test_mrd_not_detected_and_tissue_default():
    tl = build(blood("2024-02-01", mrd=[mrd("RT-qPCR", "NPM1", "not detected")]))
    m = tl.timepoints[0].mrd[0]
    assert (m.method, m.value_pct, m.detected, m.tissue, m.lod_pct) == ("qpcr", None, False, "blood", Decimal("0.001"))


@pytest.mark.parametrize("path", example_paths(), ids=lambda p: p.name)
def test_examples_round_trip_json_and_csv(path, tmp_path):
    tl = load_timeline(path)
    assert timeline_from_json(tl.to_json()) == tl
    out = write_timeline_csv([tl], tmp_path / "t.csv")
    (back,) = read_timelines_csv(out)
    assert back == tl


def _bad(mutate):
    d = record(marrow("2024-02-01"), blood("2024-03-01", mrd=[mrd("qpcr", "NPM1", 0.5)]), patient="PX")
    mutate(d)
    return d


# (mutation, fragments expected in the message: patient, date, field, expectation)
BAD = [
    (lambda d: d["timepoints"][0].update(anc_1e9_per_l=-1), ["PX", "2024-02-01", "anc_1e9_per_l", ">= 0"]),
    (lambda d: d["timepoints"][0].update(marrow_blasts_pct=100.5), ["PX", "2024-02-01", "marrow_blasts_pct", "100"]),
    (lambda d: d["timepoints"][0].update(blood_blasts_pct=-3), ["PX", "2024-02-01", "blood_blasts_pct"]),
    (lambda d: d["timepoints"][1]["mrd"][0].pop("unit"), ["PX", "2024-03-01", "mrd[0]", "MRD unit"]),
    (lambda d: d["timepoints"][1]["mrd"][0].update(method="ddPCR"), ["PX", "2024-03-01", "method", "ddPCR"]),
    (lambda d: d["timepoints"][1].update(date="2023-12-01"), ["PX", "2023-12-01", "diagnosis date"]),
    (lambda d: d["timepoints"][1].update(date="2024-02-01"), ["PX", "2024-02-01", "one timepoint per date"]),
    (lambda d: d["timepoints"][0].update(anc=1.5), ["PX", "2024-02-01", "anc", "unit"]),
    (lambda d: d["timepoints"][0].update(anc_per_ul=0.9), ["PX", "2024-02-01", "anc_per_ul", "looks like x10^9/L"]),
    (lambda d: d["timepoints"][1].update(marrow_blasts_pct=3), ["PX", "2024-03-01", "blood sample"]),
    (lambda d: d["timepoints"][0].update(wbc_1e9_per_l=1.0), ["PX", "2024-02-01", "ANC <= WBC"]),
    (lambda d: d["timepoints"][0].update(sample="csf"), ["PX", "2024-02-01", "sample"]),
    (lambda d: d["timepoints"][0].update(date="2024-02-30"), ["PX", "date"]),
    (lambda d: d["timepoints"][1]["mrd"][0].update(value=None), ["PX", "2024-03-01", "not detected"]),
    (lambda d: d["treatment_lines"][0].update(intensity="medium"), ["PX", "treatment_lines[0]", "intensity"]),
    (lambda d: d["treatment_lines"][0].update(courses=["2024-01-01"]), ["PX", "courses", "on or after"]),
    (lambda d: d["timepoints"][0].update(colour="red"), ["PX", "2024-02-01", "colour"]),
]


@pytest.mark.parametrize(("mutate", "fragments"), BAD)
def test_bad_input_names_patient_date_and_field(mutate, fragments):
    with pytest.raises(InputError) as err:
        timeline_from_dict(_bad(mutate))
    msg = str(err.value)
    for f in fragments:
        assert f in msg, msg


def test_unsorted_timepoints_warn_and_are_sorted():
    d = record(marrow("2024-03-01"), marrow("2024-02-01"))
    with pytest.warns(TimelineWarning, match="2024-02-01 follows 2024-03-01"):
        tl = timeline_from_dict(d)
    assert [t.date.isoformat() for t in tl.timepoints] == ["2024-02-01", "2024-03-01"]
    assert "sorted" in tl.warnings[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the sorted record re-reads without a new warning
        assert timeline_from_json(tl.to_json()) == tl


def test_input_not_mutated():
    d = record(marrow("2024-03-01", anc_per_ul=1500), marrow("2024-02-01"))
    before = copy.deepcopy(d)
    with pytest.warns(TimelineWarning):
        timeline_from_dict(d)
    assert d == before


def test_bad_json_text_and_csv_header(tmp_path):
    with pytest.raises(InputError, match="valid JSON"):
        timeline_from_json("{not json", source="x.json")
    p = tmp_path / "bad.csv"
    p.write_text("patient,record,date,colour\n")
    with pytest.raises(InputError, match="header"):
        read_timelines_csv(p)


def test_csv_reader_keeps_going_past_a_bad_patient(tmp_path):
    good = json.loads(build(marrow("2024-02-01"), patient="A").to_json())
    tl_a = Timeline.model_validate(good)
    out = write_timeline_csv([tl_a, build(marrow("2024-02-01"), patient="B")], tmp_path / "two.csv")
    text = out.read_text().replace("B,timepoint,2024-02-01,anc,2,x10^9/L", "B,timepoint,2024-02-01,anc,-2,x10^9/L")
    out.write_text(text)
    res = read_timeline_records(out)
    assert [pid for pid, _ in res] == ["A", "B"]
    assert isinstance(res[0][1], Timeline) and isinstance(res[1][1], InputError)
    assert "B 2024-02-01" in str(res[1][1])


def test_treatment_line_before_diagnosis_refused():
    with pytest.raises(InputError, match="diagnosis date"):
        build(marrow("2024-02-01"), line={**LINE, "start": "2023-12-01", "courses": []})
