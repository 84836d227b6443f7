"""``hemotwin monitor``: one patient, --json, --cohort with a bad patient, overwrite refusal, bad options."""

from __future__ import annotations

import base64
import json
import shutil

from typer.testing import CliRunner

from hemotwin.cli import app
from hemotwin.monitoring.demo import BAD_PATIENT, example_paths, run_demo
from hemotwin.monitoring.report import result_from_json

runner = CliRunner()


def _flat(res) -> str:
    return "".join(res.output.split())


def _ex(prefix: str):
    return next(p for p in example_paths() if p.stem.startswith(prefix))


def test_help():
    res = runner.invoke(app, ["monitor", "--help"])
    assert res.exit_code == 0 and "--cohort" in _flat(res)


def test_monitor_one_patient(tmp_path):
    out = tmp_path / "o"
    res = runner.invoke(app, ["monitor", str(_ex("EX05")), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "MRDrelapse" in _flat(res) and "critical" in _flat(res)
    png = (out / "timeline.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "report.html").read_text()
    assert "For research use only" in page and base64.b64encode(png).decode()[:200] in page
    assert "src='http" not in page and 'src="http' not in page  # self-contained
    doc = json.loads((out / "timeline.json").read_text())
    assert doc["research_use_only"].startswith("For research use only")
    assert doc["provenance"]["inputs"] and doc["provenance"]["config"]["projection_horizon_days"] == 90
    back = result_from_json(json.dumps(doc["result"]))
    assert [c.category for c in back.calls][-2] == "MRD relapse"
    again = runner.invoke(app, ["monitor", str(_ex("EX05")), "--out", str(out)])
    assert again.exit_code == 2 and "--overwrite" in _flat(again)
    assert runner.invoke(app, ["monitor", str(_ex("EX05")), "--out", str(out), "--overwrite"]).exit_code == 0


def test_monitor_json_stdout_and_csv_input():
    res = runner.invoke(app, ["monitor", str(_ex("EX02")), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["result"]["calls"][-1]["label"] == "CRi MRD-negative"
    assert doc["outputs"] == {}


def test_threshold_and_horizon_options(tmp_path):
    res = runner.invoke(app, ["monitor", str(_ex("EX05")), "--json", "--threshold", "qpcr=0.5", "--horizon-days", "5"])
    doc = json.loads(res.stdout)
    assert doc["provenance"]["config"]["projection_threshold_pct"]["qpcr"] in ("0.5", 0.5)
    bad = runner.invoke(app, ["monitor", str(_ex("EX05")), "--json", "--threshold", "pcr=2"])
    assert bad.exit_code == 2 and "--threshold" in _flat(bad)


def test_bad_arguments(tmp_path):
    assert runner.invoke(app, ["monitor", str(_ex("EX05"))]).exit_code == 2  # needs --out or --json
    assert runner.invoke(app, ["monitor"]).exit_code == 2
    missing = runner.invoke(app, ["monitor", str(tmp_path / "nope.json"), "--json"])
    assert missing.exit_code == 2 and "nope.json" in _flat(missing)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(BAD_PATIENT))
    res = runner.invoke(app, ["monitor", str(bad), "--json"])
    assert res.exit_code == 2 and "EX99-bad2024-01-15" in _flat(res) and "MRDunit" in _flat(res)


def test_cohort_continues_past_a_bad_patient(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for p in example_paths()[:3]:
        shutil.copy(p, folder / p.name)
    (folder / "bad.json").write_text(json.dumps(BAD_PATIENT))
    (folder / "broken.json").write_text("{")
    out = tmp_path / "out"
    res = runner.invoke(app, ["monitor", "--cohort", str(folder), "--out", str(out)])
    assert res.exit_code == 3  # EXIT_PARTIAL: finished, some patients skipped (was 1, the code left to crashes)
    flat = "".join(res.stdout.split())
    assert "EX03" in flat and "refractory" in flat
    err = "".join(res.stderr.split())  # each skipped patient on stderr, with its error and where all are listed
    assert "skippedbad.json:" in err and "MRDunit" in err and "skippedbroken.json:" in err
    assert "2item(s)skipped" in err and "cohort.json" in err
    rows = (out / "cohort.csv").read_text().splitlines()
    assert len(rows) == 4 and rows[0].startswith("patient,file,timepoints")
    doc = json.loads((out / "cohort.json").read_text())
    assert {f["file"] for f in doc["failures"]} == {"bad.json", "broken.json"}
    page = (out / "cohort.html").read_text()
    assert "For research use only" in page and "2 failed" in page and "broken.json" in page
    assert (out / "patients" / "EX03" / "report.html").exists()
    as_json = runner.invoke(app, ["monitor", "--cohort", str(folder), "--out", str(tmp_path / "j"), "--json"])
    assert as_json.exit_code == 3 and len(json.loads(as_json.stdout)["failures"]) == 2


def test_cohort_of_only_good_patients_exits_0(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(_ex("EX01"), folder)
    res = runner.invoke(app, ["monitor", "--cohort", str(folder), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "skipped" not in res.stderr


def test_cohort_where_every_patient_fails_lists_them_all(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "bad.json").write_text(json.dumps(BAD_PATIENT))
    out = tmp_path / "out"
    res = runner.invoke(app, ["monitor", "--cohort", str(folder), "--out", str(out)])
    assert res.exit_code == 3 and "1 item(s) skipped" in res.stderr
    assert json.loads((out / "cohort.json").read_text())["failures"][0]["file"] == "bad.json"
    assert not (out / "patients").exists()  # no empty folder for patients that were never written


def test_failed_runs_leave_no_empty_output_folder(tmp_path, monkeypatch):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(BAD_PATIENT))
    out = tmp_path / "o"
    # Before: the folder was made before the patient was read, and stayed behind empty.
    assert runner.invoke(app, ["monitor", str(bad), "--out", str(out)]).exit_code == 2
    assert not out.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert runner.invoke(app, ["monitor", "--cohort", str(empty), "--out", str(out)]).exit_code == 2
    assert not out.exists()

    from hemotwin.monitoring import cohort

    def disk_full(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cohort, "write_patient_outputs", disk_full)
    res = runner.invoke(app, ["monitor", str(_ex("EX01")), "--out", str(out)])
    assert res.exit_code == 2 and "No space left" in res.stderr and not out.exists()
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(_ex("EX01"), folder)
    res = runner.invoke(app, ["monitor", "--cohort", str(folder), "--out", str(out)])
    assert res.exit_code == 3 and "No space left" in res.stderr
    assert not (out / "patients").exists()  # the patient's folder, made for the write that failed, is gone


def test_run_demo(tmp_path):
    outs = run_demo(tmp_path / "demo")
    assert {"cohort_csv", "cohort_html", "EX01_figure", "EX07_html"} <= set(outs)
    doc = json.loads(open(outs["cohort_json"]).read())
    assert len(doc["rows"]) == len(example_paths()) and doc["failures"][0]["patient"] == "EX99-bad"


def test_monitoring_imports_stay_light():
    # ARCHITECTURE: monitoring/ must not import torch, vision/ or twin/ (nor matplotlib/pandas on the CLI path).
    import subprocess
    import sys

    code = ("import sys, hemotwin.monitoring, hemotwin.monitoring.cohort, hemotwin.monitoring.report;"
            "print([m for m in sys.modules if m.split('.')[0] in ('torch', 'matplotlib', 'pandas')"
            " or m.startswith(('hemotwin.vision', 'hemotwin.twin'))])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
