"""The files of a survival-model evaluation: metrics, folds, calibration, Kaplan-Meier plots, summary.

:func:`write_evaluation` writes what ``hemotwin cohort evaluate``
(:func:`hemotwin.prognosis.cohort.evaluate_models`) leaves in its output folder; it can also write
the result of a :func:`hemotwin.prognosis.survival.cross_validate` run by a script.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hemotwin.io.provenance import write_json
from hemotwin.io.report import RESEARCH_USE

if TYPE_CHECKING:
    import numpy as np

    from hemotwin.prognosis.survival import CVResult

__all__ = ["write_evaluation"]


def write_evaluation(outdir: Path, res: CVResult, y: np.ndarray, *, cv: str, tau: float) -> dict[str, str]:
    """Write the evaluation of a cross-validation: metrics, folds, calibration, KM plots and a summary.

    Parameters
    ----------
    outdir
        Existing output folder.
    res
        The result of :func:`hemotwin.prognosis.survival.cross_validate`.
    y
        The outcomes it was computed on (for the Kaplan-Meier curves).
    cv, tau
        Fold scheme and horizon of Uno's C, as used (reported in the files).

    Returns
    -------
    dict
        Written file names by role: ``metrics`` (metrics.json), ``folds`` (folds.csv),
        ``calibration`` (calibration.png, with calibration.csv), ``km_<model>`` and ``summary``
        (summary.md).
    """
    from hemotwin.prognosis.survival_plots import plot_calibration, plot_km_groups

    files = {}
    write_json(outdir / "metrics.json", {"research_use_only": RESEARCH_USE, "cv": cv, "tau_years": tau,
                                         **res.to_dict()})
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
    (outdir / "summary.md").write_text(_summary_markdown(res, files, cv=cv, tau=tau))
    files["summary"] = "summary.md"
    return files


def _summary_markdown(res: CVResult, files: dict[str, str], *, cv: str, tau: float) -> str:
    """summary.md: the table of median metrics per model, the folds and the plots written."""
    lines = ["# Survival model evaluation", "", f"*{RESEARCH_USE}*", "",
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
    return "\n".join(lines)
