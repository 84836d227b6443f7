"""``hemotwin cohort simulate|fit|evaluate|predict`` end to end on a tiny synthetic cohort."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from typer.testing import CliRunner

from hemotwin.cli import app

runner = CliRunner()


def _flat(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _run(*args: str):
    return runner.invoke(app, list(args))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    r = _run("cohort", "simulate", "--n", "240", "--centers", "3", "--seed", "4", "--out", str(root / "data"))
    assert r.exit_code == 0, r.output
    return root


def _tables(root):
    d = root / "data"
    return ["-c", str(d / "clinical.csv"), "-m", str(d / "molecular.csv"), "-t", str(d / "target.csv")]


def test_fit_evaluate_predict_round_trip(data):
    r = _run("cohort", "fit", *_tables(data), "--model", "cox", "--out", str(data / "fit"))
    assert r.exit_code == 0, r.output
    prov = json.loads((data / "fit" / "provenance.json").read_text())
    assert set(prov["inputs"]) == {"clinical", "molecular", "target"} and len(prov["inputs"]["clinical"]) == 64
    assert prov["config"]["features"] and prov["config"]["training_metrics"]["harrell_c"] > 0.6
    assert "research use" in prov["research_use_only"].lower()
    assert (data / "fit" / "coefficients.csv").is_file()

    r = _run("cohort", "evaluate", *_tables(data), "--models", "cox,gbsa", "--n-estimators", "15",
             "--out", str(data / "eval"))
    assert r.exit_code == 0, r.output
    m = json.loads((data / "eval" / "metrics.json").read_text())
    names = {row["model"] for row in m["summary"]}
    assert names == {"cox", "gbsa", "IPSSM_SCORE", "IPSSR_SCORE", "ELN2022"}
    assert len(m["fold_definition"]) == 3  # one fold per center
    folds = pd.DataFrame(m["folds"])
    assert (folds.groupby("fold")["n_test"].nunique() == 1).all()  # everyone on the same folds
    for f in ("summary.md", "calibration.png", "km_cox.png", "km_ipssm_score.png", "folds.csv"):
        assert (data / "eval" / f).is_file(), f
    assert "researchuseonly" in _flat((data / "eval" / "summary.md").read_text()).lower()

    r = _run("cohort", "predict", "--model", str(data / "fit" / "model.joblib"), "-c",
             str(data / "data" / "clinical.csv"), "-m", str(data / "data" / "molecular.csv"),
             "--out", str(data / "risk.csv"))
    assert r.exit_code == 0, r.output
    risk = pd.read_csv(data / "risk.csv", comment="#")
    clinical = pd.read_csv(data / "data" / "clinical.csv")
    assert list(risk["ID"]) == list(clinical["ID"])
    assert set(risk["RISK_GROUP"]) <= {1, 2, 3, 4} and (risk["S_1Y"] >= risk["S_5Y"]).all()
    # the saved model reproduces the training fit: apparent C recomputed from risk.csv
    from hemotwin.prognosis.survival import harrell_c, make_y

    y = make_y(pd.read_csv(data / "data" / "target.csv"))
    assert harrell_c(y, risk["RISK"].to_numpy()) == pytest.approx(prov["config"]["training_metrics"]["harrell_c"])

    # refuses to overwrite
    r = _run("cohort", "predict", "--model", str(data / "fit" / "model.joblib"), "-c",
             str(data / "data" / "clinical.csv"), "--out", str(data / "risk.csv"))
    assert r.exit_code == 2 and "--overwrite" in _flat(r.output)
    r = _run("cohort", "fit", *_tables(data), "--out", str(data / "fit"))
    assert r.exit_code == 2 and "--overwrite" in _flat(r.output)


def test_kfold_and_rsf(data):
    r = _run("cohort", "evaluate", *_tables(data), "--models", "rsf", "--n-estimators", "10", "--cv", "kfold",
             "--folds", "3", "--baselines", "none", "--out", str(data / "kf"))
    assert r.exit_code == 0, r.output
    m = json.loads((data / "kf" / "metrics.json").read_text())
    assert m["cv"] == "kfold" and [r["model"] for r in m["summary"]] == ["rsf"]


def _write(root, name, df):
    p = root / name
    df.to_csv(p, index=False)
    return str(p)


def test_bad_inputs_give_clear_errors(data, tmp_path):
    d = data / "data"
    clinical = pd.read_csv(d / "clinical.csv")
    target = pd.read_csv(d / "target.csv")
    out = str(tmp_path / "o")

    r = _run("cohort", "fit", "-c", _write(tmp_path, "c1.csv", clinical.drop(columns=["HB"])), "-t",
             str(d / "target.csv"), "--out", out)
    assert r.exit_code == 2 and "HB" in r.output and "required" in r.output

    dup = pd.concat([clinical, clinical.iloc[:1]])
    r = _run("cohort", "fit", "-c", _write(tmp_path, "c2.csv", dup), "-t", str(d / "target.csv"), "--out", out)
    assert r.exit_code == 2 and "eachpatientIDonce" in _flat(r.output)

    extra = pd.concat([target, pd.DataFrame({"ID": ["NOPE1"], "OS_YEARS": [1.0], "OS_STATUS": [1]})])
    r = _run("cohort", "fit", "-c", str(d / "clinical.csv"), "-t", _write(tmp_path, "t.csv", extra), "--out", out)
    assert r.exit_code == 2 and "NOPE1" in r.output and "clinicaltable" in _flat(r.output)

    r = _run("cohort", "fit", "-c", str(d / "clinical.csv"), "-t", str(d / "target.csv"), "--model", "svm",
             "--out", out)
    assert r.exit_code == 2 and "cox,rsf,gbsa" in _flat(r.output)

    r = _run("cohort", "evaluate", "-c", _write(tmp_path, "c3.csv", clinical.drop(columns=["CENTER"])), "-t",
             str(d / "target.csv"), "--models", "cox", "--out", out)
    assert r.exit_code == 2 and "CENTER" in r.output and "kfold" in r.output

    r = _run("cohort", "predict", "--model", str(d / "clinical.csv"), "-c", str(d / "clinical.csv"),
             "--out", str(tmp_path / "r.csv"))
    assert r.exit_code == 2 and "model" in r.output
