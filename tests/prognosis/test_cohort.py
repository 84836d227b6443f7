"""The cohort workflows as library calls: errors name parameters, never command-line options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hemotwin.errors import InputError
from hemotwin.prognosis.cohort import (
    METHODS,
    CohortFiles,
    EvaluationPlan,
    ModelSettings,
    csv_output,
    evaluate_models,
    fit_model,
    provenance_path_of,
    read_panel,
    risk_group_of,
    score_cohort_files,
    simulate_cohort_files,
)
from hemotwin.prognosis.scoring import check_regimen, score_patient_file

CLINICAL = ("ID,CENTER,BM_BLAST,WBC,ANC,MONOCYTES,HB,PLT,CYTOGENETICS\n"
            "P1,A,3,3,2.1,0.3,9.4,310,\"46,XY,del(5)(q13q33)[20]\"\nP2,A,45,20,0.5,1,8.1,40,\"46,XX[20]\"\n")


def _where(exc: pytest.ExceptionInfo[InputError]) -> str:
    assert not exc.value.where.startswith("--")
    return exc.value.where


def test_read_panel(tmp_path: Path) -> None:
    (tmp_path / "all.txt").write_text(" ALL\n")
    (tmp_path / "genes.txt").write_text("TP53, SF3B1\nNPM1\n")
    (tmp_path / "empty.txt").write_text(" , \n")
    assert read_panel(tmp_path / "all.txt") == "all"
    assert read_panel(tmp_path / "genes.txt") == ["TP53", "SF3B1", "NPM1"]
    for name in ("empty.txt", "missing.txt"):
        with pytest.raises(InputError) as exc:
            read_panel(tmp_path / name)
        assert _where(exc) == "panel"


def test_regimen_is_checked_before_any_file_is_read(tmp_path: Path) -> None:
    assert check_regimen("ivosidenib") == "ivosidenib"
    with pytest.raises(InputError) as exc:
        score_patient_file(tmp_path / "absent.json", regimen="azacitidine")
    assert _where(exc) == "regimen"
    with pytest.raises(InputError) as exc:
        score_cohort_files(tmp_path / "absent.csv", tmp_path / "s.csv", regimen="x")
    assert _where(exc) == "regimen" and not (tmp_path / "s.csv").exists()


def test_score_cohort_files(tmp_path: Path) -> None:
    c = tmp_path / "clinical.csv"
    c.write_text(CLINICAL)
    run = score_cohort_files(c, tmp_path / "scores.csv")
    assert list(run.scores["ID"]) == ["P1", "P2"] and run.path.is_file()
    prov = json.loads(run.provenance_path.read_text())
    assert prov["command"] == "cohort score" and prov["config"]["panel"] == "genes seen in the molecular table"


def test_plan_and_settings() -> None:
    from hemotwin.prognosis.survival import MODEL_KINDS

    assert METHODS == MODEL_KINDS
    assert EvaluationPlan(methods=" COX, rsf ").method_names() == ["cox", "rsf"]
    assert EvaluationPlan(methods=["gbsa"]).method_names() == ["gbsa"]
    assert EvaluationPlan(baselines="none").baseline_columns() == []
    assert EvaluationPlan(baselines=["IPSSM_SCORE", " ELN2022"]).baseline_columns() == ["IPSSM_SCORE", "ELN2022"]
    for methods in ("", "cox,svm"):
        with pytest.raises(InputError) as exc:
            EvaluationPlan(methods=methods).method_names()
        assert _where(exc) == "methods"
    for plan, where in ((EvaluationPlan(cv="loo"), "cv"), (EvaluationPlan(cv="kfold", folds=1), "folds")):
        with pytest.raises(InputError) as exc:
            plan.check()
        assert _where(exc) == where
    for settings, where in ((ModelSettings(alpha=-1), "alpha"), (ModelSettings(n_estimators=0), "n_estimators"),
                            (ModelSettings(min_gene_count=0), "min_gene_count"), (ModelSettings(tau=0), "tau")):
        with pytest.raises(InputError) as exc:
            settings.check()
        assert _where(exc) == where
    s = ModelSettings(alpha=3.0, n_estimators=7)
    assert s.params_for("cox") == {"alpha": 3.0} and s.params_for("rsf") == {"n_estimators": 7}
    assert ModelSettings().params_for("gbsa") == {}
    assert list(risk_group_of([1.0, 2.0, 3.0], [0.5, 1.0, 2.5, 9.0])) == [1, 2, 3, 4]


def test_bad_requests_name_parameters(tmp_path: Path) -> None:
    c = tmp_path / "clinical.csv"
    c.write_text(CLINICAL)
    with pytest.raises(InputError) as exc:
        fit_model(CohortFiles(c), tmp_path / "fit")
    assert _where(exc) == "target"
    files = CohortFiles(str(c), None, str(c))
    assert isinstance(files.clinical, Path)
    with pytest.raises(InputError) as exc:
        evaluate_models(files, tmp_path / "e1", plan=EvaluationPlan(methods="cox", cv="loo"))
    assert _where(exc) == "cv"
    with pytest.raises(InputError) as exc:
        fit_model(files, tmp_path / "f2", method="svm")
    assert _where(exc) == "method"
    with pytest.raises(InputError) as exc:
        simulate_cohort_files(tmp_path / "sim", patients=1)
    assert _where(exc) == "patients"
    # none of the refused jobs created its output folder
    assert not any((tmp_path / name).exists() for name in ("fit", "e1", "f2", "sim"))


def test_failed_jobs_leave_no_new_folders(tmp_path: Path) -> None:
    bad = tmp_path / "clinical.csv"
    bad.write_text("ID,BM_BLAST,HB,PLT,ANC\nP1,3,9,100,1\n")  # no CYTOGENETICS column
    with pytest.raises(InputError):
        score_cohort_files(bad, tmp_path / "new" / "deeper" / "scores.csv")
    assert not (tmp_path / "new").exists()
    with pytest.raises(InputError):
        fit_model(CohortFiles(bad, None, bad), tmp_path / "fit")
    assert not (tmp_path / "fit").exists()
    (tmp_path / "kept").mkdir()  # a folder that was there before is kept, empty or not
    with pytest.raises(InputError):
        score_cohort_files(bad, tmp_path / "kept" / "scores.csv")
    assert (tmp_path / "kept").is_dir()


def test_csv_output_refuses_a_folder_and_an_existing_provenance(tmp_path: Path) -> None:
    from hemotwin.errors import OutputExistsError

    with pytest.raises(InputError) as exc, csv_output(tmp_path, overwrite=True):
        pass
    assert _where(exc) == "out"
    (tmp_path / "s.provenance.json").write_text("{}")
    assert provenance_path_of(tmp_path / "s.csv") == tmp_path / "s.provenance.json"
    with pytest.raises(OutputExistsError), csv_output(tmp_path / "s.csv", overwrite=False):
        pass
    with csv_output(tmp_path / "s.csv", overwrite=True) as (path, sidecar):
        assert (path, sidecar) == (tmp_path / "s.csv", tmp_path / "s.provenance.json")
