"""Commands of the prognosis layer: ``risk`` and ``cohort score|simulate|fit|evaluate|predict``.

Each command calls one library function (:func:`hemotwin.prognosis.scoring.score_patient_file` or
one of :mod:`hemotwin.prognosis.cohort`) and prints its result. Library imports live inside the
command functions so that ``hemotwin risk`` answers fast (no torch, no pandas, no scikit-survival on
that path).

One meaning per option name: ``--method``/``--methods`` name survival-model algorithms (cox, rsf,
gbsa), ``--model`` is always a file (the ``model.joblib`` that ``cohort fit`` writes), ``--patients``
a number of patients. No job skips a patient and carries on: a table problem stops it before
anything is written (exit 2), so exit 3 does not occur here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hemotwin.cli._common import (
    EXPECTED_ERRORS,
    Bar,
    ClinicalOpt,
    JsonOpt,
    MolecularOpt,
    OverwriteOpt,
    RegimenOpt,
    SeedOpt,
    console,
    err_console,
    fail,
)
from hemotwin.io.report import RESEARCH_USE

app = typer.Typer()

#: ``hemotwin cohort ...``: score, and fit, evaluate and predict survival models.
cohort = typer.Typer(help="Cohort tables: score, and fit, evaluate and predict survival models.",
                     no_args_is_help=True)

TargetOpt = Annotated[Path, typer.Option("--target", "-t", help="Target table: ID, OS_YEARS, OS_STATUS.")]
MinGeneOpt = Annotated[int, typer.Option("--min-gene-count", help="Genes mutated in fewer training patients are "
                                                                  "not features.")]
NTreesOpt = Annotated[int | None, typer.Option("--n-estimators", help="Trees (rsf) or boosting stages (gbsa).")]
AlphaOpt = Annotated[float, typer.Option("--alpha", help="Ridge penalty of the Cox model.")]
TauOpt = Annotated[float, typer.Option("--tau", help="Horizon of Uno's C (years).")]


def _print_notes(notes: list[str]) -> None:
    for note in notes[:10]:
        err_console.print(f"[yellow]note[/] {note}")


@app.command("risk")
def risk_cmd(
    patient: Annotated[Path, typer.Argument(help="Patient JSON file (see docs/prognosis.md).")],
    as_json: JsonOpt = False,
    regimen: RegimenOpt = "venetoclax",
) -> None:
    """ELN 2022, ELN 2024, IPSS-R and IPSS-M of one patient, each with the rules that fired (research use).

    A category that missing or unreadable inputs could change is reported as undetermined, with the
    inputs that decide it; APL (t(15;17)) gets no ELN group.
    """
    from hemotwin.prognosis.scoring import score_patient_file

    try:
        report = score_patient_file(patient, regimen=regimen)
    except EXPECTED_ERRORS as exc:
        raise fail(exc) from None
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        # markup=False: karyotype strings hold square brackets ("[20]") that rich would read as markup.
        console.print(report.summary, markup=False, highlight=False)


@cohort.command("score")
def cohort_score_cmd(
    clinical: ClinicalOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Scores CSV to write.")],
    molecular: MolecularOpt = None,
    panel: Annotated[Path | None, typer.Option(
        "--panel", help="Text file of sequenced genes (one per line or comma-separated); 'all' = every scored "
                        "gene. Default: every gene seen in the molecular table.")] = None,
    regimen: RegimenOpt = "venetoclax",
    overwrite: OverwriteOpt = False,
) -> None:
    """Score every patient (ELN 2022/2024, IPSS-R, IPSS-M) -> scores CSV + scores.provenance.json."""
    import time

    from hemotwin.prognosis.cohort import score_cohort_files

    t0 = time.perf_counter()
    try:
        run = score_cohort_files(clinical, out, molecular=molecular, panel=panel, regimen=regimen,
                                 overwrite=overwrite)
    except EXPECTED_ERRORS as exc:
        raise fail(exc) from None
    scores = run.scores
    console.print(f"{len(scores)} patients scored in {time.perf_counter() - t0:.1f} s -> [bold]{run.path}[/] "
                  f"(+ {run.provenance_path.name})")
    for col in ("ELN2022", "ELN2024", "IPSSR", "IPSSM"):
        counts = scores[col].value_counts()
        console.print(f"  {col}: " + ", ".join(f"{k} {v}" for k, v in counts.items()), markup=False)
    if (scores[["ELN2022", "ELN2024", "IPSSR", "IPSSM"]] == "undetermined").any(axis=None):
        console.print("  undetermined: missing or unreadable inputs decide the category; the *_REASON columns "
                      "name them", markup=False)
    n_warn = int((scores["warnings"] != "").sum())
    for w in run.table_warnings[:10]:
        err_console.print(f"warning: {w}", markup=False, highlight=False)
    console.print(f"{len(run.table_warnings)} table warning(s); {n_warn} patient(s) with warnings (column 'warnings')")
    console.print(RESEARCH_USE)


@cohort.command("simulate")
def simulate_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for the three tables.")],
    patients: Annotated[int, typer.Option("--patients", help="Number of patients (at least 2).")] = 3000,
    centers: Annotated[int, typer.Option("--centers", help="Number of centers (1-99).")] = 6,
    seed: SeedOpt = 0,
    overwrite: OverwriteOpt = False,
) -> None:
    """Synthetic MDS/AML-like cohort (clinical/molecular/target CSV) with a known survival model."""
    from hemotwin.prognosis.cohort import simulate_cohort_files

    try:
        run = simulate_cohort_files(out, patients=patients, centers=centers, seed=seed, overwrite=overwrite)
    except EXPECTED_ERRORS as exc:
        raise fail(exc) from None
    console.print(f"{patients} synthetic patients, {centers} centers, {run.n_deaths} deaths -> [bold]{out}[/]")
    console.print(f"planted log-hazard ratios in {run.paths['metadata'].name}; {RESEARCH_USE}")


@cohort.command("fit")
def fit_cmd(
    clinical: ClinicalOpt,
    target: TargetOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (model.joblib, provenance.json).")],
    molecular: MolecularOpt = None,
    method: Annotated[str, typer.Option("--method", help="Survival-model algorithm: cox | rsf | gbsa.")] = "cox",
    alpha: AlphaOpt = 30.0,
    n_estimators: NTreesOpt = None,
    min_gene_count: MinGeneOpt = 5,
    with_scores: Annotated[bool, typer.Option("--with-scores", help="Use IPSS-M/IPSS-R scores as features.")]
    = False,
    tau: TauOpt = 7.0,
    seed: SeedOpt = 0,
    overwrite: OverwriteOpt = False,
) -> None:
    """Fit a survival model on a cohort and save it with its design and training metrics."""
    from hemotwin.prognosis.cohort import CohortFiles, ModelSettings, fit_model

    settings = ModelSettings(alpha=alpha, n_estimators=n_estimators, min_gene_count=min_gene_count, tau=tau,
                             seed=seed)
    try:
        run = fit_model(CohortFiles(clinical, molecular, target), out, method=method, settings=settings,
                        with_scores=with_scores, overwrite=overwrite, command=f"cohort fit --method {method}")
    except EXPECTED_ERRORS as exc:
        raise fail(exc) from None
    _print_notes(run.notes)
    meta, train = run.metadata, run.training_metrics
    console.print(f"{meta['model']}: {meta['n_patients']} patients, {meta['n_events']} deaths, {len(meta['features'])} "
                  f"features; apparent Harrell C {train['harrell_c']:.3f}, Uno C {train['uno_c']:.3f} "
                  f"(tau {train['tau_used']:.1f} y) -> [bold]{run.model_path}[/]")
    console.print(RESEARCH_USE)


@cohort.command("evaluate")
def evaluate_cmd(
    clinical: ClinicalOpt,
    target: TargetOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (metrics.json, plots, summary.md).")],
    molecular: MolecularOpt = None,
    methods: Annotated[str, typer.Option("--methods", help="Survival-model algorithms to compare: comma list of "
                                                           "cox, rsf, gbsa.")] = "cox,rsf,gbsa",
    cv: Annotated[str, typer.Option("--cv", help="centers (leave-one-center-out) | kfold")] = "centers",
    folds: Annotated[int, typer.Option("--folds", help="Number of folds for --cv kfold.")] = 5,
    baselines: Annotated[str, typer.Option("--baselines", help="Published scores to compare (score_cohort "
                                                               "columns), or 'none'.")]
    = "IPSSM_SCORE,IPSSR_SCORE,ELN2022",
    alpha: AlphaOpt = 30.0,
    n_estimators: NTreesOpt = None,
    min_gene_count: MinGeneOpt = 5,
    tau: TauOpt = 7.0,
    seed: SeedOpt = 0,
    overwrite: OverwriteOpt = False,
) -> None:
    """Cross-validate methods against the published scores on the same folds (leave-centers-out default)."""
    from hemotwin.prognosis.cohort import CohortFiles, EvaluationPlan, ModelSettings, evaluate_models

    plan = EvaluationPlan(methods=methods, cv=cv, folds=folds, baselines=baselines)
    settings = ModelSettings(alpha=alpha, n_estimators=n_estimators, min_gene_count=min_gene_count, tau=tau,
                             seed=seed)
    try:
        with Bar("cross-validating") as bar:
            run = evaluate_models(CohortFiles(clinical, molecular, target), out, plan=plan, settings=settings,
                                  overwrite=overwrite, progress=bar)
    except EXPECTED_ERRORS as exc:
        raise fail(exc) from None
    _print_notes(run.notes)
    res = run.result
    console.print(f"{len(res.fold_definition)} folds ({cv}); Uno C (tau {tau:g} y), median \\[min-max]:")
    for name, row in res.summary.iterrows():
        console.print(f"  {name:<12} {row['uno_c_median']:.3f} [{row['uno_c_min']:.3f}-{row['uno_c_max']:.3f}]")
    console.print(f"-> [bold]{run.outdir}[/] ({RESEARCH_USE})")


@cohort.command("predict")
def predict_cmd(
    model: Annotated[Path, typer.Option("--model", help="model.joblib written by `hemotwin cohort fit`.")],
    clinical: ClinicalOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="CSV file to write (ID, RISK, RISK_GROUP, S_1Y ...), "
                                                         "with <name>.provenance.json beside it.")],
    molecular: MolecularOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Risk and predicted survival at 1/3/5 years of new patients with a fitted model."""
    from hemotwin.prognosis.cohort import CohortFiles, predict_cohort

    try:
        run = predict_cohort(model, CohortFiles(clinical, molecular), out, overwrite=overwrite)
    except EXPECTED_ERRORS as exc:
        raise fail(exc) from None
    _print_notes(run.notes)
    console.print(f"{len(run.table)} patients scored with {run.model_kind} -> [bold]{run.path}[/] "
                  f"(+ {run.provenance_path.name}); {RESEARCH_USE}")
