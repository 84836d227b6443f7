"""The library face of ``hemotwin monitor``: MonitorConfig.from_options and run_monitor name their parameters."""

from __future__ import annotations

from decimal import Decimal

import pytest

from hemotwin.errors import InputError
from hemotwin.monitoring.cohort import CohortRun, MonitorRequest, PatientRun, run_monitor
from hemotwin.monitoring.config import MonitorConfig
from hemotwin.monitoring.demo import example_paths, examples_dir


def test_from_options_defaults_and_overrides():
    assert MonitorConfig.from_options() == MonitorConfig()
    cfg = MonitorConfig.from_options(horizon_days=5, thresholds=["qpcr=0.5, FLOW=1", "ngs=2"])
    assert cfg.projection_horizon_days == 5
    assert cfg.projection_threshold_pct == {"qpcr": Decimal("0.5"), "flow": Decimal(1), "ngs": Decimal(2)}


@pytest.mark.parametrize("text", ["pcr=2", "qpcr=0", "qpcr=101", "qpcr=x", "qpcr"])
def test_from_options_rejects_bad_thresholds(text):
    with pytest.raises(InputError) as err:
        MonitorConfig.from_options(thresholds=[text])
    assert err.value.where == "threshold"


@pytest.mark.parametrize(("request_", "where"), [
    (MonitorRequest(), "patient / cohort"),
    (MonitorRequest(patient=example_paths()[0], cohort=examples_dir()), "patient / cohort"),
    (MonitorRequest(patient=example_paths()[0]), "out"),
    (MonitorRequest(cohort=examples_dir(), show_json=True), "out"),
    (MonitorRequest(patient=example_paths()[0], show_json=True, thresholds=("pcr=2",)), "threshold"),
])
def test_run_monitor_names_library_parameters(request_, where):
    with pytest.raises(InputError) as err:
        run_monitor(request_)
    assert err.value.where == where and not err.value.where.startswith("--")


def test_run_monitor_one_patient_and_cohort(tmp_path):
    one = run_monitor(MonitorRequest(patient=example_paths()[0], show_json=True))
    assert isinstance(one, PatientRun) and one.outputs == {}
    assert one.json_document()["outputs"] == {} and one.json_document()["result"] == one.document["result"]
    many = run_monitor(MonitorRequest(cohort=examples_dir(), out=tmp_path / "c"))
    assert isinstance(many, CohortRun) and len(many.summary["rows"]) == len(example_paths())
    assert set(many.json_document()["outputs"]) == {"csv", "html", "json"}
    with pytest.raises(InputError) as err:
        run_monitor(MonitorRequest(cohort=tmp_path / "nope", out=tmp_path / "d"))
    assert err.value.where == "cohort"
