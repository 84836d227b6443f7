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
    r = _run("cohort", "simulate", "--patients", "240", "--centers", "3", "--seed", "4", "--out", str(root / "data"))
    assert r.exit_code == 0, r.output
    return root


def _tables(root):
    d = root / "data"
    return ["-c", str(d / "clinical.csv"), "--molecular", str(d / "molecular.csv"), "-t", str(d / "target.csv")]


def test_fit_evaluate_predict_round_trip(data):
    r = _run("cohort", "fit", *_tables(data), "--method", "cox", "--out", str(data / "fit"))
    assert r.exit_code == 0, r.output
    prov = json.loads((data / "fit" / "provenance.json").read_text())
    assert set(prov["inputs"]) == {"clinical", "molecular", "target"} and len(prov["inputs"]["clinical"]) == 64
    assert prov["config"]["features"] and prov["config"]["training_metrics"]["harrell_c"] > 0.6
    assert "research use" in prov["research_use_only"].lower()
    assert (data / "fit" / "coefficients.csv").is_file()

    r = _run("cohort", "evaluate", *_tables(data), "--methods", "cox,gbsa", "--n-estimators", "15",
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
             str(data / "data" / "clinical.csv"), "--molecular", str(data / "data" / "molecular.csv"),
             "--out", str(data / "risk.csv"))
    assert r.exit_code == 0, r.output
    # Plain CSV: the header is the first line and pandas reads it with its defaults.
    assert (data / "risk.csv").read_text().startswith("ID,RISK,RISK_GROUP,S_1Y,S_3Y,S_5Y\n")
    risk = pd.read_csv(data / "risk.csv")
    clinical = pd.read_csv(data / "data" / "clinical.csv")
    assert list(risk["ID"]) == list(clinical["ID"])
    side = json.loads((data / "risk.provenance.json").read_text())
    assert side["command"] == "cohort predict" and "research use" in side["research_use_only"].lower()
    assert side["model"]["method"] == "cox" and side["config"]["model"].endswith("model.joblib")
    assert set(side["inputs"]) == {"model", "clinical", "molecular"} and "quartiles" in side["columns"]["RISK_GROUP"]
    assert set(risk["RISK_GROUP"]) <= {1, 2, 3, 4} and (risk["S_1Y"] >= risk["S_5Y"]).all()
    # the saved model reproduces the training fit: apparent C recomputed from risk.csv
    from hemotwin.prognosis.survival import harrell_c, make_y

    y = make_y(pd.read_csv(data / "data" / "target.csv"))
    assert harrell_c(y, risk["RISK"].to_numpy()) == pytest.approx(prov["config"]["training_metrics"]["harrell_c"])

    # refuses to overwrite the CSV, and its provenance record alone too
    predict = ("cohort", "predict", "--model", str(data / "fit" / "model.joblib"), "-c",
               str(data / "data" / "clinical.csv"), "--out", str(data / "risk.csv"))
    r = _run(*predict)
    assert r.exit_code == 2 and "--overwrite" in _flat(r.output)
    (data / "risk.csv").unlink()
    r = _run(*predict)
    assert r.exit_code == 2 and "risk.provenance.json" in _flat(r.output) and not (data / "risk.csv").exists()
    assert _run(*predict, "--overwrite").exit_code == 0
    r = _run("cohort", "fit", *_tables(data), "--out", str(data / "fit"))
    assert r.exit_code == 2 and "--overwrite" in _flat(r.output)


def test_kfold_and_rsf(data):
    r = _run("cohort", "evaluate", *_tables(data), "--methods", "rsf", "--n-estimators", "10", "--cv", "kfold",
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

    r = _run("cohort", "fit", "-c", str(d / "clinical.csv"), "-t", str(d / "target.csv"), "--method", "svm",
             "--out", out)
    assert r.exit_code == 2 and "--method:got'svm'" in _flat(r.output) and "cox,rsf,gbsa" in _flat(r.output)

    r = _run("cohort", "evaluate", "-c", _write(tmp_path, "c3.csv", clinical.drop(columns=["CENTER"])), "-t",
             str(d / "target.csv"), "--methods", "cox", "--out", out)
    assert r.exit_code == 2 and "CENTER" in r.output and "kfold" in r.output

    r = _run("cohort", "evaluate", "-c", str(d / "clinical.csv"), "-t", str(d / "target.csv"), "--methods",
             "cox,svm", "--out", out)
    assert r.exit_code == 2 and "--methods:got'cox,svm'" in _flat(r.output)

    r = _run("cohort", "predict", "--model", str(d / "clinical.csv"), "-c", str(d / "clinical.csv"),
             "--out", str(tmp_path / "r.csv"))
    assert r.exit_code == 2 and "model" in r.output and "loadkey" not in _flat(r.output)
    # none of these failed jobs left an output folder or file behind
    assert not (tmp_path / "o").exists() and not (tmp_path / "r.csv").exists()


def test_one_meaning_per_option_name(data, tmp_path):
    # --model is a file; the algorithm is --method(s); the patient count is --patients; no -n, no -m.
    old = [("cohort", "fit", *_tables(data), "--model", "cox"), ("cohort", "evaluate", *_tables(data), "--models",
                                                                   "cox"),
           ("cohort", "simulate", "--n", "50"), ("cohort", "simulate", "-n", "50"),
           ("cohort", "score", "-c", str(data / "data" / "clinical.csv"), "-m", str(data / "data" / "molecular.csv"))]
    for args in old:
        r = _run(*args, "--out", str(tmp_path / "x"))
        assert r.exit_code == 2 and "Nosuchoption" in _flat(r.output), args
    assert not (tmp_path / "x").exists()


def test_simulate_options_in_our_words(tmp_path):
    r = _run("cohort", "simulate", "--patients", "1", "--out", str(tmp_path / "s"))
    assert r.exit_code == 2 and "--patients:got1;expectedatleast2patients" in _flat(r.output)
    assert "Inputshouldbe" not in _flat(r.output) and not (tmp_path / "s").exists()
    r = _run("cohort", "simulate", "--patients", "20", "--centers", "0", "--out", str(tmp_path / "s"))
    assert r.exit_code == 2 and "--centers:got0" in _flat(r.output) and not (tmp_path / "s").exists()


@pytest.mark.parametrize("command", ["score", "predict", "fit", "evaluate", "simulate"])
def test_unwritable_out_fails_before_any_work(data, tmp_path, command):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder\n")
    out = blocker / "sub" / ("o.csv" if command in ("score", "predict") else "o")
    d = data / "data"
    args = {"score": ("-c", str(d / "clinical.csv")),
            "predict": ("--model", str(data / "absent.joblib"), "-c", str(d / "clinical.csv")),
            "fit": _tables(data), "evaluate": _tables(data), "simulate": ()}[command]
    r = _run("cohort", command, *args, "--out", str(out))
    # The output path is the error (not the missing model file): it is checked first; no traceback.
    assert r.exit_code == 2, r.output
    assert "--out" in r.output and "a_file" in r.output and r.exception is not None
    assert isinstance(r.exception, SystemExit) and "Traceback" not in r.output
