"""Classifier evaluation metrics, and the report that shows them.

Accuracy with exact intervals, macro-F1, per-class scores, confusion matrix, calibration (ECE,
reliability diagram) and accuracy against coverage when the least confident cells are referred
to a person. Writes ``report.json`` + a self-contained ``report.html`` (figures embedded).

Works on probabilities from any model: no torch here.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: reports are files
import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import binomtest
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

from hemotwin.errors import InputError
from hemotwin.io.report import RESEARCH_USE, esc, html_page, table


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, *, n_bins: int = 15) -> dict[str, Any]:
    """Top-label ECE with equal-width confidence bins, and the per-bin table behind it."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.digitize(confidence, edges[1:-1]), 0, n_bins - 1)
    rows, ece = [], 0.0
    for b in range(n_bins):
        m = idx == b
        if not m.any():
            continue
        conf, acc = float(confidence[m].mean()), float(correct[m].mean())
        ece += m.mean() * abs(acc - conf)
        rows.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": int(m.sum()), "confidence": conf,
                     "accuracy": acc})
    return {"ece": float(ece), "bins": rows}


def coverage_curve(confidence: np.ndarray, correct: np.ndarray) -> dict[str, Any]:
    """Accuracy of the cells kept when the least confident are referred, at each coverage."""
    order = np.argsort(-confidence, kind="stable")
    cum = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)
    cov = np.arange(1, len(order) + 1) / len(order)
    points = {}
    for target in (1.0, 0.95, 0.9, 0.8, 0.7, 0.5):
        k = max(1, int(np.floor(target * len(order))))
        points[f"{target:.2f}"] = {"accuracy": float(cum[k - 1]), "threshold": float(confidence[order][k - 1])}
    best = {}
    for acc_target in (0.95, 0.98, 0.99):
        ok = np.nonzero(cum >= acc_target)[0]
        best[f"{acc_target:.2f}"] = float(cov[ok.max()]) if ok.size else 0.0
    return {"coverage": cov.tolist(), "accuracy": cum.tolist(), "at_coverage": points,
            "max_coverage_at_accuracy": best}


def evaluate_predictions(y_true: Sequence[str], probs: np.ndarray, labels: Sequence[str], *,
                         exclude: Sequence[str] = (), rejected: Sequence[str] = ()) -> dict[str, Any]:
    """All metrics for predictions ``probs`` (N x C over ``labels``) against true labels.

    Parameters
    ----------
    y_true
        The true label of each classified cell.
    probs
        Their probabilities.
    labels
        The columns of ``probs``.
    exclude
        True labels not scored (e.g. basophils with n=2 in BCCD); their cells are counted in
        ``n_excluded``.
    rejected
        The true labels of the cells the input check rejected (:mod:`hemotwin.vision.input_check`):
        they have no probabilities, so they are **left out of every metric**, and counted:
        ``n_rejected`` (those not excluded), ``rejected`` per class, and
        ``accuracy_rejected_as_errors``, the accuracy had each of them been called wrong. A check
        that refused hard cells would flatter ``accuracy``; the second figure shows by how much.

    Returns
    -------
    dict
        ``n``, ``n_excluded``, ``n_rejected``, ``accuracy``, ``accuracy_ci95_exact``,
        ``accuracy_rejected_as_errors``, ``macro_f1``, ``per_class`` (precision, recall, F1,
        support, rejected), ``labels``, ``confusion_matrix``, ``calibration``, ``referral``.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = list(labels)
    if probs.ndim != 2 or probs.shape[1] != len(labels):
        raise InputError("probabilities", probs.shape, f"N x {len(labels)} (one column per label)")
    if len(y_true) != probs.shape[0]:
        raise InputError("labels", len(y_true), f"{probs.shape[0]} true labels, one per prediction")
    unknown = sorted({t for t in [*y_true, *rejected] if t not in labels})
    if unknown:
        raise InputError("true labels", unknown, f"labels of the model's set {labels}")
    keep = np.array([t not in set(exclude) for t in y_true], dtype=bool)
    y = np.array([labels.index(t) for t in y_true], dtype=int)[keep]
    p = probs[keep]
    refused = [t for t in rejected if t not in set(exclude)]
    if y.size == 0:
        raise InputError("evaluation set", 0, "at least one scorable cell"
                         + (f" ({len(refused)} rejected by the input check)" if refused else ""))
    pred = p.argmax(axis=1)
    conf = p.max(axis=1)
    correct = (pred == y).astype(float)
    n, k = y.size, int(correct.sum())
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    present = sorted(set(y.tolist()))
    prec, rec, f1, sup = precision_recall_fscore_support(y, pred, labels=list(range(len(labels))), zero_division=0)
    per_class = {labels[c]: {"precision": float(prec[c]), "recall": float(rec[c]), "f1": float(f1[c]),
                             "support": int(sup[c]), "rejected": refused.count(labels[c])}
                 for c in range(len(labels))}
    return {
        "n": int(n),
        "n_excluded": int((~keep).sum()) + len(rejected) - len(refused),
        "n_rejected": len(refused),
        "accuracy": k / n,
        "accuracy_ci95_exact": [float(ci.low), float(ci.high)],
        "accuracy_rejected_as_errors": k / (n + len(refused)),
        # Macro-F1 over the classes present in the truth: absent classes have no recall to score.
        "macro_f1": float(f1_score(y, pred, labels=present, average="macro", zero_division=0)),
        "per_class": per_class,
        "labels": labels,
        "confusion_matrix": confusion_matrix(y, pred, labels=list(range(len(labels)))).tolist(),
        "calibration": expected_calibration_error(conf, correct),
        "referral": coverage_curve(conf, correct),
    }


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figures(metrics: dict[str, Any]) -> dict[str, str]:
    labels = metrics["labels"]
    cm = np.asarray(metrics["confusion_matrix"], dtype=float)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * len(labels), 0.8 + 0.5 * len(labels)))
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(labels)):
        for j in range(len(labels)):
            if cm[i, j]:
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title("confusion matrix (counts; colour = row fraction)")
    figs = {"confusion": _png(fig)}

    bins = metrics["calibration"]["bins"]
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], "--", color="gray", lw=1)
    ax.bar([b["confidence"] for b in bins], [b["accuracy"] for b in bins], width=1 / 15, alpha=0.7,
           edgecolor="k")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability (ECE {metrics['calibration']['ece']:.3f})")
    figs["reliability"] = _png(fig)

    ref = metrics["referral"]
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    ax.plot(ref["coverage"], ref["accuracy"])
    ax.set_xlabel("coverage (fraction of cells not referred)")
    ax.set_ylabel("accuracy of the cells kept")
    ax.set_xlim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title("referring the least confident cells")
    figs["coverage"] = _png(fig)
    return figs


def write_report(metrics: dict[str, Any], out_dir: str | Path, *, title: str, provenance: dict[str, Any],
                 figures: bool = True) -> dict[str, Path]:
    """Write ``report.json``, ``report.html`` and the figures as PNG into ``out_dir``."""
    out = Path(out_dir)
    figs = _figures(metrics) if figures else {}
    for name, b64 in figs.items():
        (out / f"{name}.png").write_bytes(base64.b64decode(b64))
    doc = {"title": title, "research_use_only": RESEARCH_USE, "metrics": metrics, "provenance": provenance}
    (out / "report.json").write_text(json.dumps(doc, indent=2))
    rows = [f"<tr><td>{esc(c)}</td><td>{v['precision']:.3f}</td><td>{v['recall']:.3f}</td>"
            f"<td>{v['f1']:.3f}</td><td>{v['support']}</td><td>{v.get('rejected', 0)}</td></tr>"
            for c, v in metrics["per_class"].items()]
    lo, hi = metrics["accuracy_ci95_exact"]
    cov = metrics["referral"]["max_coverage_at_accuracy"]
    imgs = "".join(f'<figure><img src="data:image/png;base64,{b}"/></figure>' for b in figs.values())
    n_rej = metrics.get("n_rejected", 0)
    rejected = (f"""<p><b>Rejected by the input check: {n_rej}</b> (no white cell at the stated pixel size; not
classified and not in the metrics above). Counting each as an error, the accuracy would be
{metrics['accuracy_rejected_as_errors']:.3f}.</p>""" if n_rej else "<p>Rejected by the input check: 0.</p>")
    body = f"""<p><b>Accuracy</b> {metrics['accuracy']:.3f} (95 % exact CI {lo:.3f}–{hi:.3f}, n = {metrics['n']},
excluded {metrics['n_excluded']}, rejected {n_rej}) · <b>macro-F1</b> {metrics['macro_f1']:.3f} ·
<b>ECE</b> {metrics['calibration']['ece']:.3f} · coverage at 95 % / 98 % accuracy:
{cov['0.95']:.2f} / {cov['0.98']:.2f}</p>
{rejected}
{table(("class", "precision", "recall", "F1", "n", "rejected"), rows)}
{imgs}"""
    page = html_page(title, body, provenance=provenance, extra_css="td,th{text-align:right}")
    (out / "report.html").write_text(page)
    return {"json": out / "report.json", "html": out / "report.html"}
