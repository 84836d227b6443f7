"""Commands of the prognosis layer: ``risk`` and ``cohort score|simulate|fit|evaluate|predict``.

Heavy imports live inside the command functions so that ``hemotwin risk`` answers fast
(no torch, no pandas, no scikit-survival on that path).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from hemotwin.cli._common import EXPECTED_ERRORS, Bar, console, err_console, fail

app = typer.Typer()

#: ``hemotwin cohort ...``: score, and fit, evaluate and predict survival models.
cohort = typer.Typer(help="Cohort tables: score, and fit, evaluate and predict survival models.",
                         no_args_is_help=True)


@app.command("risk")
def risk_cmd(
    patient: Annotated[Path, typer.Argument(help="Patient JSON file (see docs/prognosis.md).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the full report as JSON.")] = False,
    regimen: Annotated[str, typer.Option("--regimen", help="ELN 2024 context: venetoclax | ivosidenib")] = "venetoclax",
) -> None:
    """ELN 2022, ELN 2024, IPSS-R and IPSS-M of one patient, each with the rules that fired (research use)."""
    from hemotwin.errors import InputError
    from hemotwin.prognosis.patient import load_patient
    from hemotwin.prognosis.scoring import score_patient

    try:
        if regimen not in ("venetoclax", "ivosidenib"):
            raise InputError("--regimen", regimen, "venetoclax or ivosidenib")
        report = score_patient(load_patient(patient), regimen=regimen)  # type: ignore[arg-type]
    except EXPECTED_ERRORS as exc:
        raise fail(exc) from None
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        # markup=False: karyotype strings hold square brackets ("[20]") that rich would read as markup.
        console.print(report.summary, markup=False, highlight=False)


@cohort.command("score")
def cohort_score_cmd(
    clinical: Annotated[Path, typer.Option("--clinical", "-c", help="Clinical CSV (CLINICAL_RULES §9).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Scores CSV to write.")],
    molecular: Annotated[Path | None, typer.Option("--molecular", "-m", help="Molecular CSV (MAF-like).")] = None,
    panel: Annotated[Path | None, typer.Option(
        "--panel", help="Text file of sequenced genes (one per line or comma-separated); 'all' = every scored "
                        "gene. Default: every gene seen in the molecular table.")] = None,
    regimen: Annotated[str, typer.Option("--regimen", help="ELN 2024 context: venetoclax | ivosidenib")] = "venetoclax",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
) -> None:
    """Score every patient (ELN 2022/2024, IPSS-R, IPSS-M) -> scores CSV + scores.provenance.json."""
    import time

    from hemotwin.errors import InputError
    from hemotwin.io.outputs import prepare_output_file
    from hemotwin.io.provenance import file_sha256, provenance, write_json
    from hemotwin.prognosis.tables import read_cohort

    t0 = time.perf_counter()
    try:
        if regimen not in ("venetoclax", "ivosidenib"):
            raise InputError("--regimen", regimen, "venetoclax or ivosidenib")
        dest = prepare_output_file(out, overwrite=overwrite)
        prov_path = dest.with_name(dest.stem + ".provenance.json")
        if prov_path.exists() and not overwrite:
            prepare_output_file(prov_path, overwrite=False)
        genes = None
        if panel is not None:
            if not panel.is_file():
                raise InputError("--panel", str(panel), "an existing text file of gene symbols")
            text = panel.read_text(encoding="utf-8")
            genes = "all" if text.strip().lower() == "all" else [g for g in text.replace(",", " ").split() if g]
            if not genes:
                raise InputError("--panel", str(panel), "at least one gene symbol")
        tables = read_cohort(clinical, molecular)
        from hemotwin.prognosis.scoring import RESEARCH_USE, score_cohort

        scores = score_cohort(tables.clinical, tables.molecular, sequenced_genes=genes,  # type: ignore[arg-type]
                              regimen=regimen)  # type: ignore[arg-type]
        scores.to_csv(dest, index=False, float_format="%.4g")
        inputs = {"clinical": file_sha256(clinical)}
        if molecular is not None:
            inputs["molecular"] = file_sha256(molecular)
        if panel is not None:
            inputs["panel"] = file_sha256(panel)
        write_json(prov_path, provenance(
            command="cohort score",
            config={"clinical": str(clinical), "molecular": str(molecular) if molecular else None,
                    "panel": genes if genes is not None else "genes seen in the molecular table",
                    "regimen": regimen, "out": str(dest)},
            inputs=inputs, extra={"table_warnings": [str(w) for w in tables.warnings], "n_patients": len(scores)}))
    except EXPECTED_ERRORS as exc:
        raise fail(exc) from None
    n = len(scores)
    console.print(f"{n} patients scored in {time.perf_counter() - t0:.1f} s -> [bold]{dest}[/] (+ {prov_path.name})")
    for col in ("ELN2022", "ELN2024", "IPSSR", "IPSSM"):
        counts = scores[col].replace("", "not computable").value_counts()
        console.print(f"  {col}: " + ", ".join(f"{k} {v}" for k, v in counts.items()), markup=False)
    n_warn = int((scores["warnings"] != "").sum())
    for w in tables.warnings[:10]:
        err_console.print(f"warning: {w}", markup=False, highlight=False)
    console.print(f"{len(tables.warnings)} table warning(s); {n_warn} patient(s) with warnings (column 'warnings')")
    console.print(RESEARCH_USE)


_RUO = "For research use only. Not for diagnostic use."

ClinicalOpt = Annotated[Path, typer.Option("--clinical", "-c", help="Clinical table (CSV/TSV, §9 schema).")]
MolecularOpt = Annotated[Path | None, typer.Option("--molecular", "-m", help="Molecular table (one row per variant).")]
TargetOpt = Annotated[Path, typer.Option("--target", "-t", help="Target table: ID, OS_YEARS, OS_STATUS.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Allow writing into an existing output.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed (forests, boosting, k-fold).")]
MinGeneOpt = Annotated[int, typer.Option("--min-gene-count", help="Genes mutated in fewer training patients are "
                                                                  "not features.")]
NTreesOpt = Annotated[int | None, typer.Option("--n-estimators", help="Trees (rsf) or boosting stages (gbsa).")]
AlphaOpt = Annotated[float, typer.Option("--alpha", help="Ridge penalty of the Cox model.")]


def _read(clinical: Path, molecular: Path | None, target: Path | None):
    """Read the tables with the §9 validators and align them (errors name file, line, ID, column)."""
    from hemotwin.prognosis.design import align_cohort
    from hemotwin.prognosis.tables import read_clinical, read_molecular, read_target

    c = read_clinical(clinical)
    m = read_molecular(molecular) if molecular is not None else None
    t = read_target(target) if target is not None else None
    names = (clinical.name, molecular.name if molecular else "molecular", target.name if target else "target")
    return align_cohort(c, m, t, names=names)


def _checksums(**paths: Path | None) -> dict[str, str]:
    from hemotwin.io.provenance import file_sha256

    return {k: file_sha256(p) for k, p in paths.items() if p is not None}


def _model_params(kind: str, *, alpha: float, n_estimators: int | None) -> dict[str, Any]:
    if kind == "cox":
        return {"alpha": alpha}
    return {} if n_estimators is None else {"n_estimators": n_estimators}


def _try_scores(c, m, notes: list[str]):
    """Published scores, or None with a note when the scoring module cannot score this cohort."""
    try:
        from hemotwin.prognosis.design import published_scores

        return published_scores(c, m)
    except ImportError as exc:
        notes.append(f"published scores unavailable ({exc}); baselines left out")
    return None


@cohort.command("simulate")
def simulate_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for the three tables.")],
    n: Annotated[int, typer.Option("--n", "-n", help="Number of patients.")] = 3000,
    centers: Annotated[int, typer.Option("--centers", help="Number of centers.")] = 6,
    seed: SeedOpt = 0,
    overwrite: OverwriteOpt = False,
) -> None:
    """Synthetic MDS/AML-like cohort (clinical/molecular/target CSV) with a known survival model."""
    from hemotwin.io.provenance import provenance, write_json
    from hemotwin.prognosis.synthetic import simulate_cohort, write_cohort

    try:
        cohort = simulate_cohort(n, n_centers=centers, seed=seed)
        paths = write_cohort(cohort, out, overwrite=overwrite)
    except EXPECTED_ERRORS as exc:
        raise fail(exc) from None
    write_json(Path(out) / "provenance.json", provenance(
        command="cohort simulate", config=cohort.metadata["config"], seeds={"seed": seed},
        inputs={}, extra={"outputs": {k: str(p.name) for k, p in paths.items()}}))
    ev = int(cohort.target["OS_STATUS"].sum())
    console.print(f"{n} synthetic patients, {centers} centers, {ev} deaths -> [bold]{out}[/]")
    console.print(f"planted log-hazard ratios in {paths['metadata'].name}; {_RUO}")

@cohort.command("fit")
def fit_cmd(
    clinical: ClinicalOpt,
    target: TargetOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (model.joblib, provenance.json).")],
    molecular: MolecularOpt = None,
    model: Annotated[str, typer.Option("--model", help="cox | rsf | gbsa")] = "cox",
    alpha: AlphaOpt = 30.0,
    n_estimators: NTreesOpt = None,
    min_gene_count: MinGeneOpt = 5,
    with_scores: Annotated[bool, typer.Option("--with-scores", help="Use IPSS-M/IPSS-R scores as features.")]
    = False,
    tau: Annotated[float, typer.Option("--tau", help="Horizon of Uno's C (years).")] = 7.0,
    seed: SeedOpt = 0,
    overwrite: OverwriteOpt = False,
) -> None:
    """Fit a survival model on a cohort and save it with its design and training metrics."""
    import numpy as np

    from hemotwin.io.outputs import prepare_output_dir
    from hemotwin.io.provenance import provenance, write_json
    from hemotwin.prognosis import survival as sv
    from hemotwin.prognosis.design import build_design, fit_design

    try:
        outdir = prepare_output_dir(out, overwrite=overwrite)
        est = sv.make_model(model, seed=seed, **_model_params(model, alpha=alpha, n_estimators=n_estimators))
        c, m, t, notes = _read(clinical, molecular, target)
        y = sv.make_y(t, where=target.name)
        feats = ("IPSSM_SCORE", "IPSSR_SCORE") if with_scores else ()
        spec = fit_design(c, m, min_gene_count=min_gene_count, score_features=feats)
        X = build_design(spec, c, m)
        est.fit(X, y)
        risk = est.predict(X)
        train = sv.evaluate_risk(y, y, risk, tau=tau)
        cuts = np.quantile(risk, [0.25, 0.5, 0.75]).tolist()
        meta = {"model": model, "params": est.get_params(), "features": list(X.columns),
                "features_used": list(est.features_used_), "risk_group_cuts": cuts, "tau": tau,
                "n_patients": len(y), "n_events": int(y["event"].sum()), "training_metrics": train}
        sv.save_model(outdir / "model.joblib", est, design=spec.model_dump(mode="json"), metadata=meta)
        if model == "cox":
            est.coefficients(X).to_csv(outdir / "coefficients.csv")
    except EXPECTED_ERRORS as exc:
        raise fail(exc) from None
    prov = provenance(command=f"cohort fit --model {model}",
                      config={**meta, "design": spec.model_dump(mode="json")}, seeds={"seed": seed},
                      inputs=_checksums(clinical=clinical, molecular=molecular, target=target),
                      extra={"notes": notes, "apparent_metrics_warning": "training (apparent) metrics are "
                             "optimistic; use `hemotwin cohort evaluate` for validated ones"})
    write_json(outdir / "provenance.json", prov)
    for note in notes[:10]:
        err_console.print(f"[yellow]note[/] {note}")
    console.print(f"{model}: {len(y)} patients, {int(y['event'].sum())} deaths, {X.shape[1]} features; "
                  f"apparent Harrell C {train['harrell_c']:.3f}, Uno C {train['uno_c']:.3f} "
                  f"(tau {train['tau_used']:.1f} y) -> [bold]{outdir / 'model.joblib'}[/]")
    console.print(_RUO)

@cohort.command("evaluate")
def evaluate_cmd(
    clinical: ClinicalOpt,
    target: TargetOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (metrics.json, plots, summary.md).")],
    molecular: MolecularOpt = None,
    models: Annotated[str, typer.Option("--models", help="Comma list of cox, rsf, gbsa.")] = "cox,rsf,gbsa",
    cv: Annotated[str, typer.Option("--cv", help="centers (leave-one-center-out) | kfold")] = "centers",
    folds: Annotated[int, typer.Option("--folds", help="Number of folds for --cv kfold.")] = 5,
    baselines: Annotated[str, typer.Option("--baselines", help="Published scores to compare (score_cohort "
                                                               "columns), or 'none'.")]
    = "IPSSM_SCORE,IPSSR_SCORE,ELN2022",
    alpha: AlphaOpt = 30.0,
    n_estimators: NTreesOpt = None,
    min_gene_count: MinGeneOpt = 5,
    tau: Annotated[float, typer.Option("--tau", help="Horizon of Uno's C (years).")] = 7.0,
    seed: SeedOpt = 0,
    overwrite: OverwriteOpt = False,
) -> None:
    """Cross-validate models against the published scores on the same folds (leave-centers-out default)."""
    from hemotwin.errors import InputError
    from hemotwin.io.outputs import prepare_output_dir
    from hemotwin.io.provenance import provenance, write_json
    from hemotwin.prognosis import survival as sv
    from hemotwin.prognosis.design import build_design, fit_design

    try:
        outdir = prepare_output_dir(out, overwrite=overwrite)
        kinds = [k.strip().lower() for k in models.split(",") if k.strip()]
        bad = [k for k in kinds if k not in sv.MODEL_KINDS]
        if bad or not kinds:
            raise InputError("--models", models, f"a comma list of {', '.join(sv.MODEL_KINDS)}")
        if cv not in ("centers", "kfold"):
            raise InputError("--cv", cv, "'centers' or 'kfold'")
        ests = {k: sv.make_model(k, seed=seed, **_model_params(k, alpha=alpha, n_estimators=n_estimators))
                for k in kinds}
        c, m, t, notes = _read(clinical, molecular, target)
        if cv == "centers" and "CENTER" not in c.columns:
            raise InputError(f"{clinical.name}, column CENTER", "(absent)",
                             "a CENTER column for --cv centers (or use --cv kfold)")
        y = sv.make_y(t, where=target.name)
        # The design's gene list is chosen on the whole cohort (outcome-blind: mutation counts only),
        # so every fold sees the same columns; imputation and scaling are refitted inside each fold.
        spec = fit_design(c, m, min_gene_count=min_gene_count)
        X = build_design(spec, c, m)
        base_cols = [b.strip() for b in baselines.split(",") if b.strip() and b.strip().lower() != "none"]
        scores = _try_scores(c, m, notes) if base_cols else None
        if scores is None:
            base_cols = []
        else:
            missing = [b for b in base_cols if b not in scores.columns]
            if missing:
                raise InputError("--baselines", missing, f"columns of the score table: {list(scores.columns)}")
            scores = scores.reset_index(drop=True)
        groups = c["CENTER"].to_numpy() if "CENTER" in c.columns else None
        with Bar("cross-validating") as bar:
            res = sv.cross_validate(ests, X.reset_index(drop=True), y, groups=groups, cv=cv, n_splits=folds,
                                    seed=seed, baselines=scores, baseline_columns=base_cols, tau=tau,
                                    progress=bar)
        files = _write_evaluation(outdir, res, y, cv=cv, tau=tau)
    except EXPECTED_ERRORS as exc:
        raise fail(exc) from None
    prov = provenance(command="cohort evaluate", config={
        "models": {k: e.get_params() for k, e in ests.items()}, "cv": cv, "folds": folds, "tau": tau,
        "baselines": base_cols, "design": spec.model_dump(mode="json"), "features": list(X.columns)},
        seeds={"seed": seed}, inputs=_checksums(clinical=clinical, molecular=molecular, target=target),
        extra={"notes": notes, "outputs": files})
    write_json(outdir / "provenance.json", prov)
    for note in notes[:10]:
        err_console.print(f"[yellow]note[/] {note}")
    s = res.summary
    console.print(f"{len(res.fold_definition)} folds ({cv}); Uno C (tau {tau:g} y), median \\[min-max]:")
    for name, row in s.iterrows():
        console.print(f"  {name:<12} {row['uno_c_median']:.3f} [{row['uno_c_min']:.3f}-{row['uno_c_max']:.3f}]")
    console.print(f"-> [bold]{outdir}[/] ({_RUO})")

@cohort.command("predict")
def predict_cmd(
    model: Annotated[Path, typer.Option("--model", help="model.joblib written by `hemotwin cohort fit`.")],
    clinical: ClinicalOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="CSV file to write (ID, RISK, RISK_GROUP, S_1Y ...).")],
    molecular: MolecularOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Risk and predicted survival at 1/3/5 years of new patients with a fitted model."""
    import numpy as np

    from hemotwin.io.outputs import prepare_output_file
    from hemotwin.prognosis import survival as sv
    from hemotwin.prognosis.design import DesignSpec, build_design

    try:
        path = prepare_output_file(out, overwrite=overwrite)
        bundle = sv.load_model(model)
        spec = DesignSpec.model_validate(bundle["design"])
        c, m, _t, notes = _read(clinical, molecular, None)
        X = build_design(spec, c, m)
        est = bundle["model"]
        risk = est.predict(X)
        cuts = bundle["metadata"]["risk_group_cuts"]
        table = X[[]].copy()
        table["RISK"] = risk
        table["RISK_GROUP"] = np.searchsorted(cuts, risk, side="right") + 1
        surv = est.predict_survival(X, list(sv.CALIBRATION_HORIZONS))
        for j, h in enumerate(sv.CALIBRATION_HORIZONS):
            table[f"S_{h:g}Y"] = surv[:, j]
        with open(path, "w") as fh:
            fh.write(f"# {_RUO} Model {bundle['metadata']['model']} from {model.name}; RISK_GROUP 1-4 = "
                     "quartiles of the training risk (4 = highest)\n")
            table.reset_index().to_csv(fh, index=False, float_format="%.6g")
    except EXPECTED_ERRORS as exc:
        raise fail(exc) from None
    for note in notes[:10]:
        err_console.print(f"[yellow]note[/] {note}")
    console.print(f"{len(table)} patients scored with {bundle['metadata']['model']} -> [bold]{path}[/]")


def _write_evaluation(outdir: Path, res, y, *, cv: str, tau: float) -> dict[str, str]:
    """metrics.json, folds.csv, calibration.csv, KM and calibration PNGs and summary.md."""
    from hemotwin.io.provenance import write_json
    from hemotwin.prognosis.survival_plots import plot_calibration, plot_km_groups

    files = {}
    write_json(outdir / "metrics.json", {"research_use_only": _RUO, "cv": cv, "tau_years": tau, **res.to_dict()})
    files["metrics"] = "metrics.json"
    res.folds.to_csv(outdir / "folds.csv", index=False)
    files["folds"] = "folds.csv"
    if not res.calibration.empty:
        res.calibration.to_csv(outdir / "calibration.csv", index=False)
        plot_calibration(res.calibration, outdir / "calibration.png",
                         title=f"Calibration, out-of-fold ({cv}); quintiles of predicted survival")
        files["calibration"] = "calibration.png"
    labels = {1: "Q1 lowest risk", 2: "Q2", 3: "Q3", 4: "Q4 highest risk"}
    for name in res.oof_group.columns:
        fn = f"km_{name.lower()}.png"
        plot_km_groups(y, res.oof_group[name].to_numpy(), outdir / fn, labels=labels,
                       title=f"{name}: out-of-fold risk quartiles ({cv} CV; cut-points from training folds)")
        files[f"km_{name}"] = fn
    lines = ["# Survival model evaluation", "", f"*{_RUO}*", "",
             f"Cross-validation: **{cv}** ({len(res.fold_definition)} folds); Uno's C truncated at {tau:g} years "
             "(lowered per fold where the follow-up is shorter; see `tau_used` in folds.csv).", "",
             "| model | Uno C median | range | Harrell C median | IBS median | calibration MAE |",
             "|---|---|---|---|---|---|"]
    for name, r in res.summary.iterrows():
        cal = r.get("calibration_mae", float("nan"))
        lines.append(f"| {name} | {r['uno_c_median']:.3f} | {r['uno_c_min']:.3f}-{r['uno_c_max']:.3f} | "
                     f"{r['harrell_c_median']:.3f} | {r['ibs_median']:.3f} | "
                     f"{'' if cal != cal else f'{cal:.3f}'} |")
    lines += ["", "Folds:", ""] + [f"- fold {f['fold']}: test {', '.join(f['test_centers'])} (n={f['n_test']})"
                                   for f in res.fold_definition]
    lines += ["", "Plots: " + ", ".join(v for k, v in files.items() if v.endswith(".png")), ""]
    (outdir / "summary.md").write_text("\n".join(lines))
    files["summary"] = "summary.md"
    return files
