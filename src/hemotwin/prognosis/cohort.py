"""Cohort workflows: score a cohort, simulate one, fit, evaluate and apply survival models.

Each function here is one whole job on files: it reads the tables with the §9 validators (or
simulates them), does the work, writes its outputs with a ``provenance.json`` (or
``<name>.provenance.json``) beside them and returns a small result record for the caller to report.
``hemotwin cohort score|simulate|fit|evaluate|predict`` are thin faces over
:func:`score_cohort_files`, :func:`simulate_cohort_files`, :func:`fit_model`, :func:`evaluate_models`
and :func:`predict_cohort`; a script can call them the same way.

Every option is checked, and every output path prepared, before any table is read or model fitted;
a job that fails leaves no folder it created behind (:func:`hemotwin.io.outputs.output_dir`). CSV
outputs are plain CSV (header first, no comment lines); what produced them goes to the
``<name>.provenance.json`` beside them.

Errors are :class:`~hemotwin.errors.InputError` naming the parameter (``regimen``, ``panel``,
``method``, ``methods``, ``patients``, ``cv`` ...) or the file and column at fault. Heavy libraries
(scikit-learn, scikit-survival, matplotlib) are imported inside the functions that need them;
pandas on import.

Examples
--------
>>> from hemotwin.prognosis.cohort import CohortFiles, ModelSettings, fit_model  # doctest: +SKIP
>>> run = fit_model(CohortFiles("clinical.csv", "molecular.csv", "target.csv"), "fit",
...                 settings=ModelSettings(alpha=10.0))  # doctest: +SKIP
>>> run.training_metrics["harrell_c"]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hemotwin.errors import InputError
from hemotwin.io.outputs import output_dir, prepare_output_file
from hemotwin.io.provenance import file_sha256, provenance, write_json
from hemotwin.prognosis.cohort_report import write_evaluation
from hemotwin.prognosis.scoring import check_regimen, score_cohort
from hemotwin.prognosis.tables import read_cohort

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from hemotwin.prognosis.survival import CVResult
    from hemotwin.prognosis.synthetic import SyntheticCohort

__all__ = [
    "METHODS",
    "CohortFiles",
    "EvaluationPlan",
    "EvaluationRun",
    "FitRun",
    "ModelSettings",
    "PredictionRun",
    "ScoreRun",
    "SimulationRun",
    "check_method",
    "csv_output",
    "evaluate_models",
    "fit_model",
    "predict_cohort",
    "provenance_path_of",
    "read_panel",
    "risk_group_of",
    "score_cohort_files",
    "simulate_cohort_files",
]

#: Quantiles of the training risk that cut the four risk groups stored with a fitted model.
RISK_GROUP_QUANTILES = (0.25, 0.5, 0.75)
#: Survival-model methods (algorithms): ridge Cox, random survival forest, gradient-boosted Cox. The
#: same names as :data:`hemotwin.prognosis.survival.MODEL_KINDS`, kept here so that options are checked
#: without importing scikit-learn (a test holds the two equal).
METHODS: tuple[str, ...] = ("cox", "rsf", "gbsa")
#: Limits of a synthetic cohort (:class:`hemotwin.prognosis.synthetic.CohortConfig`).
_MIN_PATIENTS, _MAX_CENTERS = 2, 99

_APPARENT_WARNING = ("training (apparent) metrics are optimistic; use `hemotwin cohort evaluate` for "
                     "validated ones")


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CohortFiles:
    """The tables of a cohort on disk (§9 schema): clinical, and optionally molecular and target.

    Attributes
    ----------
    clinical
        Clinical table (CSV/TSV), one row per patient.
    molecular
        Molecular table, one row per variant, or None.
    target
        Outcome table (``ID``, ``OS_YEARS``, ``OS_STATUS``), or None where no outcome is needed.
    """

    clinical: Path
    molecular: Path | None = None
    target: Path | None = None

    def __post_init__(self) -> None:
        # Accept str paths from scripts; the file names appear in error messages and provenance.
        for name in ("clinical", "molecular", "target"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))

    def read(self) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame | None, list[str]]:
        """Read the tables with the §9 validators and align them.

        Returns
        -------
        tuple
            ``(clinical, molecular, target, notes)`` as :func:`hemotwin.prognosis.design.align_cohort`
            returns them; errors name the file, line, ID and column.
        """
        from hemotwin.prognosis.design import align_cohort
        from hemotwin.prognosis.tables import read_clinical, read_molecular, read_target

        c = read_clinical(self.clinical)
        m = read_molecular(self.molecular) if self.molecular is not None else None
        t = read_target(self.target) if self.target is not None else None
        names = (self.clinical.name, self.molecular.name if self.molecular else "molecular",
                 self.target.name if self.target else "target")
        return align_cohort(c, m, t, names=names)

    def checksums(self) -> dict[str, str]:
        """SHA-256 of each table given, by role (``clinical``, ``molecular``, ``target``)."""
        paths = {"clinical": self.clinical, "molecular": self.molecular, "target": self.target}
        return {k: file_sha256(p) for k, p in paths.items() if p is not None}


@dataclass(frozen=True)
class ModelSettings:
    """Settings shared by fitting and evaluating survival models.

    Attributes
    ----------
    alpha
        Ridge penalty of the Cox model.
    n_estimators
        Trees (rsf) or boosting stages (gbsa); None keeps the model's default.
    min_gene_count
        Genes mutated in fewer training patients are not features.
    tau
        Horizon of Uno's C (years).
    seed
        Random seed (forests, boosting, k-fold).
    """

    alpha: float = 30.0
    n_estimators: int | None = None
    min_gene_count: int = 5
    tau: float = 7.0
    seed: int = 0

    def check(self) -> ModelSettings:
        """These settings, or an :class:`InputError` naming the first impossible one (before any work)."""
        if not self.alpha >= 0:
            raise InputError("alpha", self.alpha, "a penalty >= 0")
        if self.n_estimators is not None and self.n_estimators < 1:
            raise InputError("n_estimators", self.n_estimators, "at least 1 tree or boosting stage")
        if self.min_gene_count < 1:
            raise InputError("min_gene_count", self.min_gene_count, "an integer >= 1")
        if not self.tau > 0:
            raise InputError("tau", self.tau, "a horizon in years > 0")
        return self

    def params_for(self, kind: str) -> dict[str, Any]:
        """Constructor parameters of a model of ``kind`` (``cox``, ``rsf``, ``gbsa``)."""
        if kind == "cox":
            return {"alpha": self.alpha}
        return {} if self.n_estimators is None else {"n_estimators": self.n_estimators}

    def make_model(self, kind: str) -> Any:
        """An unfitted survival model of ``kind`` with these settings."""
        from hemotwin.prognosis.survival import make_model

        return make_model(kind, seed=self.seed, **self.params_for(kind))


@dataclass(frozen=True)
class EvaluationPlan:
    """What :func:`evaluate_models` compares, and on which folds.

    Attributes
    ----------
    methods
        Methods to cross-validate: a comma list (``"cox,rsf"``) or a sequence of names (:data:`METHODS`).
    cv
        ``"centers"`` (leave-one-center-out) or ``"kfold"``.
    folds
        Number of folds for ``cv="kfold"`` (at least 2).
    baselines
        Published scores to compare (columns of :func:`hemotwin.prognosis.scoring.score_cohort`):
        a comma list, a sequence, or ``"none"``.
    """

    methods: str | Sequence[str] = "cox,rsf,gbsa"
    cv: str = "centers"
    folds: int = 5
    baselines: str | Sequence[str] = "IPSSM_SCORE,IPSSR_SCORE,ELN2022"

    def method_names(self) -> list[str]:
        """The methods, lower case; an unknown or empty list is an error naming ``methods``."""
        names = [k.strip().lower() for k in _items(self.methods) if k.strip()]
        bad = [k for k in names if k not in METHODS]
        if bad or not names:
            raise InputError("methods", self.methods, f"a comma list of {', '.join(METHODS)}")
        return names

    def check(self) -> EvaluationPlan:
        """The plan itself, or an :class:`InputError` naming the first impossible option (before any work)."""
        self.method_names()
        if self.cv not in ("centers", "kfold"):
            raise InputError("cv", self.cv, "'centers' or 'kfold'")
        if self.cv == "kfold" and self.folds < 2:
            raise InputError("folds", self.folds, "at least 2 folds")
        return self

    def baseline_columns(self) -> list[str]:
        """The published-score columns to compare (empty for ``"none"``)."""
        return [b.strip() for b in _items(self.baselines) if b.strip() and b.strip().lower() != "none"]


def _items(value: str | Sequence[str]) -> list[str]:
    """A comma list or a sequence of names, as a list."""
    return value.split(",") if isinstance(value, str) else list(value)


def read_panel(path: Path) -> list[str] | str:
    """Genes sequenced for every patient, from a text file.

    Parameters
    ----------
    path
        One gene per line or comma-separated; ``all`` alone means every scored gene.

    Returns
    -------
    list of str or str
        The gene symbols, or ``"all"``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("panel", str(path), "an existing text file of gene symbols")
    text = path.read_text(encoding="utf-8")
    genes = "all" if text.strip().lower() == "all" else [g for g in text.replace(",", " ").split() if g]
    if not genes:
        raise InputError("panel", str(path), "at least one gene symbol")
    return genes


def check_method(method: str) -> str:
    """``method`` lower case when it is one of :data:`METHODS`, else an :class:`InputError` naming ``method``."""
    name = str(method).strip().lower()
    if name not in METHODS:
        raise InputError("method", method, f"one of {', '.join(METHODS)}")
    return name


def provenance_path_of(path: Path) -> Path:
    """The provenance record beside a CSV output: ``scores.csv`` -> ``scores.provenance.json``."""
    path = Path(path)
    return path.with_name(path.stem + ".provenance.json")


@contextmanager
def csv_output(path: Path, *, overwrite: bool) -> Iterator[tuple[Path, Path]]:
    """Check a CSV output and its provenance record before any work, for the span of a job.

    Yields ``(csv path, provenance path)``. Either existing is refused unless ``overwrite``; a path
    that names a folder, or whose folder cannot be created or written, is an :class:`InputError`
    naming ``out``. Folders created for the output are removed again when the job fails while they
    are still empty.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError("out", str(path), "a CSV file path (a folder exists there)")
    sidecar = provenance_path_of(path)
    created = []  # the folders this job creates, deepest first
    for folder in (path.parent, *path.parent.parents):
        if folder.exists():
            break
        created.append(folder)
    try:
        prepare_output_file(path, overwrite=overwrite)
        prepare_output_file(sidecar, overwrite=overwrite)
        yield path, sidecar
    except BaseException:
        for folder in created:
            if not folder.is_dir() or any(folder.iterdir()):
                break
            folder.rmdir()
        raise


def _need_target(files: CohortFiles) -> None:
    if files.target is None:
        raise InputError("target", None, "a target table (ID, OS_YEARS, OS_STATUS)")


def _published_scores_or_note(c: pd.DataFrame, m: pd.DataFrame | None, notes: list[str]) -> pd.DataFrame | None:
    """Published scores, or None with a note when the scoring module cannot score this cohort."""
    try:
        from hemotwin.prognosis.design import published_scores

        return published_scores(c, m)
    except ImportError as exc:
        notes.append(f"published scores unavailable ({exc}); baselines left out")
    return None


def risk_group_of(cuts: Sequence[float], risk: np.ndarray) -> np.ndarray:
    """Risk group 1-4 (4 = highest) of each risk, from the training cut-points stored with a model."""
    import numpy as np

    return np.searchsorted(cuts, risk, side="right") + 1


# --------------------------------------------------------------------------------------------------
# Score
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ScoreRun:
    """What :func:`score_cohort_files` wrote.

    Attributes
    ----------
    scores
        One row per patient (:data:`hemotwin.prognosis.scoring.COHORT_COLUMNS`).
    path, provenance_path
        The scores CSV and its provenance record.
    table_warnings
        Warnings of the table readers (unknown IDs, odd values), as text.
    """

    scores: pd.DataFrame
    path: Path
    provenance_path: Path
    table_warnings: list[str]


def score_cohort_files(clinical: Path, out: Path, *, molecular: Path | None = None, panel: Path | None = None,
                       regimen: str = "venetoclax", overwrite: bool = False) -> ScoreRun:
    """Score every patient (ELN 2022/2024, IPSS-R, IPSS-M) and write the scores CSV and its provenance.

    Parameters
    ----------
    clinical, molecular
        Cohort tables (§9 schema); ``molecular`` may be None.
    out
        Scores CSV to write; ``<stem>.provenance.json`` is written beside it.
    panel
        Text file of sequenced genes (see :func:`read_panel`); None = every gene seen in the
        molecular table.
    regimen
        ELN 2024 context: ``venetoclax`` or ``ivosidenib``.
    overwrite
        Replace existing outputs.

    Returns
    -------
    ScoreRun
    """
    clinical, out = Path(clinical), Path(out)
    regimen = check_regimen(regimen)
    with csv_output(out, overwrite=overwrite) as (dest, prov_path):
        genes = read_panel(panel) if panel is not None else None
        tables = read_cohort(clinical, molecular)
        scores = score_cohort(tables.clinical, tables.molecular, sequenced_genes=genes, regimen=regimen)
        scores.to_csv(dest, index=False, float_format="%.4g")
        inputs = {"clinical": file_sha256(clinical)}
        if molecular is not None:
            inputs["molecular"] = file_sha256(molecular)
        if panel is not None:
            inputs["panel"] = file_sha256(panel)
        warnings = [str(w) for w in tables.warnings]
        write_json(prov_path, provenance(
            command="cohort score",
            config={"clinical": str(clinical), "molecular": str(molecular) if molecular else None,
                    "panel": genes if genes is not None else "genes seen in the molecular table",
                    "regimen": regimen, "out": str(dest)},
            inputs=inputs, extra={"table_warnings": warnings, "n_patients": len(scores),
                                  "undetermined": {col: int((scores[col] == "undetermined").sum())
                                                   for col in ("ELN2022", "ELN2024", "IPSSR", "IPSSM")}}))
    return ScoreRun(scores, dest, prov_path, warnings)


# --------------------------------------------------------------------------------------------------
# Simulate
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SimulationRun:
    """What :func:`simulate_cohort_files` wrote: the cohort and the written paths by name."""

    cohort: SyntheticCohort
    paths: dict[str, Path]

    @property
    def n_deaths(self) -> int:
        """Deaths in the simulated target table."""
        return int(self.cohort.target["OS_STATUS"].sum())


def simulate_cohort_files(out: Path, *, patients: int = 3000, centers: int = 6, seed: int = 0,
                          overwrite: bool = False) -> SimulationRun:
    """Simulate a synthetic MDS/AML-like cohort with a known survival model and write it.

    Parameters
    ----------
    out
        Output folder: ``clinical.csv``, ``molecular.csv``, ``target.csv``, ``truth.csv``,
        ``metadata.json`` (planted effects) and ``provenance.json``.
    patients, centers, seed
        Number of patients (at least 2), centers (1-99) and random seed (see
        :func:`hemotwin.prognosis.synthetic.simulate_cohort`).
    overwrite
        Allow writing into a non-empty folder.

    Returns
    -------
    SimulationRun
    """
    from hemotwin.prognosis.synthetic import simulate_cohort, write_cohort

    if patients < _MIN_PATIENTS:
        raise InputError("patients", patients, f"at least {_MIN_PATIENTS} patients")
    if not 1 <= centers <= _MAX_CENTERS:
        raise InputError("centers", centers, f"between 1 and {_MAX_CENTERS} centers")
    with output_dir(out, overwrite=overwrite) as folder:
        cohort = simulate_cohort(patients, n_centers=centers, seed=seed)
        paths = write_cohort(cohort, folder, overwrite=overwrite)
        write_json(folder / "provenance.json", provenance(
            command="cohort simulate", config=cohort.metadata["config"], seeds={"seed": seed},
            inputs={}, extra={"outputs": {k: str(p.name) for k, p in paths.items()}}))
    return SimulationRun(cohort, paths)


# --------------------------------------------------------------------------------------------------
# Fit
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FitRun:
    """What :func:`fit_model` wrote.

    Attributes
    ----------
    model_path
        The saved bundle (``model.joblib``: estimator, design, metadata).
    metadata
        Model kind, parameters, features, risk-group cuts, counts and ``training_metrics``
        (apparent Harrell C, Uno C and the horizon used).
    notes
        What the table alignment left out or ignored.
    """

    model_path: Path
    metadata: dict[str, Any]
    notes: list[str]

    @property
    def training_metrics(self) -> dict[str, float]:
        """Apparent (training) metrics: optimistic, see :func:`evaluate_models` for validated ones."""
        return self.metadata["training_metrics"]


def fit_model(files: CohortFiles, out: Path, *, method: str = "cox", settings: ModelSettings | None = None,
              with_scores: bool = False, overwrite: bool = False, command: str = "cohort fit") -> FitRun:
    """Fit a survival model on a cohort and save it with its design, training metrics and provenance.

    Parameters
    ----------
    files
        Clinical, molecular (optional) and target tables.
    out
        Output folder: ``model.joblib``, ``provenance.json`` and, for Cox, ``coefficients.csv``.
    method
        The algorithm: ``cox``, ``rsf`` or ``gbsa`` (:data:`METHODS`).
    settings
        Penalty, trees, gene threshold, horizon and seed (defaults: :class:`ModelSettings`).
    with_scores
        Use the IPSS-M and IPSS-R scores as features.
    overwrite
        Allow writing into a non-empty folder.
    command
        The command recorded in the provenance.

    Returns
    -------
    FitRun
    """
    import numpy as np

    from hemotwin.prognosis import survival as sv
    from hemotwin.prognosis.design import build_design, fit_design

    s = (settings or ModelSettings()).check()
    method = check_method(method)
    _need_target(files)
    with output_dir(out, overwrite=overwrite) as outdir:
        est = s.make_model(method)
        c, m, t, notes = files.read()
        y = sv.make_y(t, where=files.target.name)
        feats = ("IPSSM_SCORE", "IPSSR_SCORE") if with_scores else ()
        spec = fit_design(c, m, min_gene_count=s.min_gene_count, score_features=feats)
        X = build_design(spec, c, m)
        est.fit(X, y)
        risk = est.predict(X)
        train = sv.evaluate_risk(y, y, risk, tau=s.tau)
        cuts = np.quantile(risk, list(RISK_GROUP_QUANTILES)).tolist()
        # "model" keeps its key in the saved metadata: model files written before the rename still load.
        meta = {"model": method, "params": est.get_params(), "features": list(X.columns),
                "features_used": list(est.features_used_), "risk_group_cuts": cuts, "tau": s.tau,
                "n_patients": len(y), "n_events": int(y["event"].sum()), "training_metrics": train}
        path = sv.save_model(outdir / "model.joblib", est, design=spec.model_dump(mode="json"), metadata=meta)
        if method == "cox":
            est.coefficients(X).to_csv(outdir / "coefficients.csv")
        write_json(outdir / "provenance.json", provenance(
            command=command, config={**meta, "design": spec.model_dump(mode="json")}, seeds={"seed": s.seed},
            inputs=files.checksums(), extra={"notes": notes, "apparent_metrics_warning": _APPARENT_WARNING}))
    return FitRun(path, meta, notes)


# --------------------------------------------------------------------------------------------------
# Evaluate
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EvaluationRun:
    """What :func:`evaluate_models` wrote.

    Attributes
    ----------
    outdir
        The output folder.
    result
        Per-fold metrics, their summary and the out-of-fold predictions.
    files
        Written file names by role (``metrics``, ``folds``, ``calibration``, ``km_<model>``, ``summary``).
    notes
        What the table alignment left out, and baselines that could not be scored.
    """

    outdir: Path
    result: CVResult
    files: dict[str, str]
    notes: list[str] = field(default_factory=list)


def evaluate_models(files: CohortFiles, out: Path, *, plan: EvaluationPlan | None = None,
                    settings: ModelSettings | None = None, overwrite: bool = False,
                    progress: Callable[[int, int], None] | None = None) -> EvaluationRun:
    """Cross-validate survival models against the published scores on the same folds.

    Parameters
    ----------
    files
        Clinical, molecular (optional) and target tables.
    out
        Output folder: ``metrics.json``, ``folds.csv``, ``calibration.csv``/``.png``,
        ``km_<model>.png``, ``summary.md`` and ``provenance.json``.
    plan
        Methods, folds and baselines (defaults: :class:`EvaluationPlan`, leave-centers-out).
    settings
        Penalty, trees, gene threshold, horizon and seed (defaults: :class:`ModelSettings`).
    overwrite
        Allow writing into a non-empty folder.
    progress
        ``progress(done, total)`` after each method and fold.

    Returns
    -------
    EvaluationRun
    """
    plan = (plan or EvaluationPlan()).check()
    s = (settings or ModelSettings()).check()
    _need_target(files)
    with output_dir(out, overwrite=overwrite) as outdir:
        return _evaluate(files, outdir, plan, s, progress)


def _evaluate(files: CohortFiles, outdir: Path, plan: EvaluationPlan, s: ModelSettings,
              progress: Callable[[int, int], None] | None) -> EvaluationRun:
    """The work of :func:`evaluate_models` once options and output folder are checked."""
    from hemotwin.prognosis import survival as sv
    from hemotwin.prognosis.design import build_design, fit_design

    ests = {k: s.make_model(k) for k in plan.method_names()}
    c, m, t, notes = files.read()
    if plan.cv == "centers" and "CENTER" not in c.columns:
        raise InputError("cv", plan.cv, f"a CENTER column in {files.clinical.name} for leave-centers-out "
                                        "validation, or 'kfold'")
    y = sv.make_y(t, where=files.target.name)
    # The design's gene list is chosen on the whole cohort (outcome-blind: mutation counts only),
    # so every fold sees the same columns; imputation and scaling are refitted inside each fold.
    spec = fit_design(c, m, min_gene_count=s.min_gene_count)
    X = build_design(spec, c, m)
    base_cols = plan.baseline_columns()
    scores = _published_scores_or_note(c, m, notes) if base_cols else None
    if scores is None:
        base_cols = []
    else:
        missing = [b for b in base_cols if b not in scores.columns]
        if missing:
            raise InputError("baselines", missing, f"columns of the score table: {list(scores.columns)}")
        scores = scores.reset_index(drop=True)
    groups = c["CENTER"].to_numpy() if "CENTER" in c.columns else None
    res = sv.cross_validate(ests, X.reset_index(drop=True), y, groups=groups, cv=plan.cv, n_splits=plan.folds,
                            seed=s.seed, baselines=scores, baseline_columns=base_cols, tau=s.tau, progress=progress)
    written = write_evaluation(outdir, res, y, cv=plan.cv, tau=s.tau)
    write_json(outdir / "provenance.json", provenance(
        command="cohort evaluate", config={
            "methods": {k: e.get_params() for k, e in ests.items()}, "cv": plan.cv, "folds": plan.folds,
            "tau": s.tau, "baselines": base_cols, "design": spec.model_dump(mode="json"),
            "features": list(X.columns)},
        seeds={"seed": s.seed}, inputs=files.checksums(), extra={"notes": notes, "outputs": written}))
    return EvaluationRun(outdir, res, written, notes)


# --------------------------------------------------------------------------------------------------
# Predict
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PredictionRun:
    """What :func:`predict_cohort` wrote.

    Attributes
    ----------
    table
        Index ``ID``; ``RISK``, ``RISK_GROUP`` (1-4, training quartiles) and ``S_<h>Y`` survival.
    path
        The CSV written.
    model_kind
        The model's method: ``cox``, ``rsf`` or ``gbsa``.
    notes
        What the table alignment left out or ignored.
    provenance_path
        The provenance record beside the CSV.
    """

    table: pd.DataFrame
    path: Path
    model_kind: str
    notes: list[str]
    provenance_path: Path


def predict_cohort(model: Path, files: CohortFiles, out: Path, *, overwrite: bool = False) -> PredictionRun:
    """Risk, risk group and predicted survival at 1/3/5 years of new patients with a fitted model.

    Parameters
    ----------
    model
        ``model.joblib`` written by :func:`fit_model` (trusted files only: joblib runs pickled code).
    files
        Clinical and (optional) molecular tables; a target table is not read.
    out
        CSV to write: ``ID, RISK, RISK_GROUP, S_1Y, S_3Y, S_5Y``, plain (the header is the first
        line). ``<stem>.provenance.json`` beside it records the research-use notice, the model (file,
        checksum, method, the hemotwin version that fitted it), what ``RISK_GROUP`` means and the
        input checksums.
    overwrite
        Replace existing outputs.

    Returns
    -------
    PredictionRun
    """
    from hemotwin.prognosis import survival as sv
    from hemotwin.prognosis.design import DesignSpec, build_design

    model = Path(model)
    with csv_output(out, overwrite=overwrite) as (path, prov_path):
        bundle = sv.load_model(model)
        spec = DesignSpec.model_validate(bundle["design"])
        c, m, _t, notes = CohortFiles(files.clinical, files.molecular).read()
        X = build_design(spec, c, m)
        est = bundle["model"]
        risk = est.predict(X)
        table = X[[]].copy()
        table["RISK"] = risk
        table["RISK_GROUP"] = risk_group_of(bundle["metadata"]["risk_group_cuts"], risk)
        surv = est.predict_survival(X, list(sv.CALIBRATION_HORIZONS))
        for j, h in enumerate(sv.CALIBRATION_HORIZONS):
            table[f"S_{h:g}Y"] = surv[:, j]
        kind = bundle["metadata"]["model"]
        table.reset_index().to_csv(path, index=False, float_format="%.6g")
        write_json(prov_path, provenance(
            command="cohort predict",
            config={"model": str(model), "clinical": str(files.clinical),
                    "molecular": str(files.molecular) if files.molecular else None, "out": str(path)},
            inputs={"model": file_sha256(model), **CohortFiles(files.clinical, files.molecular).checksums()},
            extra={"model": {"method": kind, "fitted_with_hemotwin": bundle.get("hemotwin_version"),
                             "n_training_patients": bundle["metadata"].get("n_patients")},
                   "columns": {"RISK": "the model's risk score (higher = worse)",
                               "RISK_GROUP": "1-4: quartiles of the training risk (4 = highest)",
                               **{f"S_{h:g}Y": f"predicted overall survival at {h:g} year(s)"
                                  for h in sv.CALIBRATION_HORIZONS}},
                   "notes": notes, "n_patients": len(table)}))
    return PredictionRun(table, path, kind, notes, prov_path)
