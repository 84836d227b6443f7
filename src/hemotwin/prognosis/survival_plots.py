"""Kaplan-Meier curves per risk group and calibration plots (matplotlib, Agg backend, no display needed).

For research use only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from hemotwin.io.report import RESEARCH_USE

__all__ = ["plot_calibration", "plot_km_groups"]



def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # file output only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def plot_km_groups(y: np.ndarray, groups: Sequence[int] | np.ndarray, path: str | Path, *, title: str,
                   labels: dict[int, str] | None = None, horizon: float | None = 10.0) -> Path:
    """Kaplan-Meier overall survival of each risk group, with 95 % pointwise bands and group sizes.

    Parameters
    ----------
    y
        Structured ``(event, time)`` outcome.
    groups
        Risk group of each patient (1 = lowest risk).
    path
        PNG file to write.
    title
        Plot title (model name and validation scheme).
    labels
        Optional group -> legend label.
    horizon
        Right end of the time axis in years (``None``: the longest follow-up).
    """
    from sksurv.nonparametric import kaplan_meier_estimator

    plt = _pyplot()
    ev = np.asarray(y[y.dtype.names[0]], bool)
    tm = np.asarray(y[y.dtype.names[1]], float)
    groups = np.asarray(groups)
    fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=110)
    cmap = plt.get_cmap("viridis_r")
    uniq = sorted(np.unique(groups))
    for k, g in enumerate(uniq):
        m = groups == g
        if m.sum() < 2:
            continue
        x, s, ci = kaplan_meier_estimator(ev[m], tm[m], conf_type="log-log")
        color = cmap(k / max(1, len(uniq) - 1))
        lab = (labels or {}).get(int(g), f"group {g}")
        ax.step(x, s, where="post", color=color, label=f"{lab} (n={int(m.sum())}, deaths={int(ev[m].sum())})")
        ax.fill_between(x, ci[0], ci[1], step="post", color=color, alpha=0.15, linewidth=0)
    ax.set_xlim(0, horizon if horizon is not None else float(tm.max()))
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("years")
    ax.set_ylabel("overall survival (Kaplan-Meier)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper right", frameon=False)
    fig.text(0.99, 0.01, RESEARCH_USE, ha="right", va="bottom", fontsize=6, color="0.4")
    fig.tight_layout(rect=(0, 0.03, 1, 1))  # leave room for the research-use footer
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_calibration(calibration: pd.DataFrame, path: str | Path, *, title: str = "Calibration") -> Path:
    """Predicted vs Kaplan-Meier observed survival per risk quintile, one panel per horizon.

    ``calibration`` has the columns of :func:`hemotwin.prognosis.survival.calibration_table` plus ``model``.
    """
    plt = _pyplot()
    horizons = sorted(calibration["horizon"].unique()) if len(calibration) else []
    fig, axes = plt.subplots(1, max(1, len(horizons)), figsize=(4.0 * max(1, len(horizons)), 4.0), dpi=110,
                             squeeze=False)
    markers = "osD^v<>"
    for ax, h in zip(axes[0], horizons, strict=False):
        d = calibration[calibration["horizon"] == h]
        for k, (name, dm) in enumerate(d.groupby("model", sort=False)):
            ax.plot(dm["predicted"], dm["observed"], marker=markers[k % len(markers)], linestyle="-", label=name)
        ax.plot([0, 1], [0, 1], color="0.6", linestyle=":", linewidth=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_xlabel(f"predicted survival at {h:g} y")
        ax.set_ylabel("observed (Kaplan-Meier)")
        ax.set_title(f"{h:g} year(s)", fontsize=10)
        ax.legend(fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.text(0.99, 0.01, RESEARCH_USE, ha="right", va="bottom", fontsize=6, color="0.4")
    fig.tight_layout(rect=(0, 0.03, 1, 1))  # leave room for the research-use footer
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
