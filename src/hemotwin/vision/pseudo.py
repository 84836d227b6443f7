"""Weak labels for a target scanner's unlabelled cells, from a teacher ensemble's prediction sets.

A laboratory that adopts a model has unlabelled cells of its own scanner. The twin already uses
its *fields* to re-image the training cells as that scanner (a training ``target``); its *cells* can
also enter the training set itself, labelled by the teachers of a distillation (self-training,
"noisy student": Xie et al., CVPR 2020). A teacher's top-1 answer on a cell it is unsure of is a
coin toss that the student would learn as fact, so each unlabelled cell gets a **set** of classes
instead: the smallest set, in decreasing teacher probability, whose total probability reaches a
coverage (``0.9``: a sure cell gets one class, an unsure one "neutrophil or eosinophil"). The
trainer's set-valued cross-entropy (:class:`~hemotwin.vision.losses.SetCrossEntropyLoss`) then
asks the student only for what the teachers are sure of, and the distillation term carries the
rest of their answer.

The teachers label each cell once, on the cell as it was imaged (with their test-time zoom
average), while the student sees it augmented: the teacher's answer is the cleaner one.

Measured on BCCD (docs/experiments.md) this **lowers** accuracy by 5–8 points: a
distilled student already reads BCCD better than its teachers, and labels from them on BCCD's own
cells pull it back towards their errors. It helps where the teachers know the target better than
the student would alone (tests/vision/test_pseudo.py), so it stays in the library for benchmarks
(``TrainRequest.unlabelled``), not on the command line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hemotwin.errors import InputError

__all__ = ["prediction_sets", "set_summary"]


def prediction_sets(probs: np.ndarray, *, coverage: float = 0.9) -> np.ndarray:
    """The smallest set of classes per row, in decreasing probability, whose total reaches ``coverage``.

    Parameters
    ----------
    probs
        ``N x K`` class probabilities (rows summing to 1).
    coverage
        Probability the set must hold, in ``(0, 1]``; 1 keeps every class with a non-zero probability
        (no label information beyond the distillation). Every row keeps at least its top class.

    Returns
    -------
    numpy.ndarray
        ``N x K`` boolean target masks (see :func:`hemotwin.vision.fitting.target_masks`).

    Examples
    --------
    >>> prediction_sets(np.array([[0.95, 0.03, 0.02], [0.5, 0.45, 0.05]]), coverage=0.9).astype(int)
    array([[1, 0, 0],
           [1, 1, 0]])
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] == 0:
        raise InputError("probabilities", f"array of shape {p.shape}", "N x K class probabilities")
    if not np.isfinite(p).all() or (p < 0).any():
        raise InputError("probabilities", "negative or non-finite values", "probabilities in [0, 1]")
    if isinstance(coverage, bool) or not (isinstance(coverage, int | float) and 0.0 < coverage <= 1.0):
        raise InputError("coverage", coverage, "a probability in (0, 1]")
    order = np.argsort(-p, axis=1, kind="stable")
    ranked = np.take_along_axis(p, order, axis=1)
    total = ranked.sum(1, keepdims=True)
    cum = np.cumsum(ranked, axis=1) / np.where(total > 0, total, 1.0)
    # Class r joins while the classes before it hold less than the coverage (the 1e-9 absorbs the
    # rounding of a cumulative sum that should be exactly 1).
    before = np.concatenate([np.zeros((len(p), 1)), cum[:, :-1]], axis=1)
    keep_ranked = (before < coverage - 1e-9) & ((ranked > 0) | (np.arange(p.shape[1]) == 0))
    keep_ranked[:, 0] = True
    out = np.zeros(p.shape, dtype=bool)
    np.put_along_axis(out, order, keep_ranked, axis=1)
    return out


def set_summary(masks: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """What prediction sets say, for a model file's provenance: sizes and the classes of sure cells."""
    m = np.asarray(masks, dtype=bool)
    sizes = m.sum(1)
    sure = sizes == 1
    return {"n": len(m), "mean_set_size": float(sizes.mean()) if len(m) else 0.0,
            "single_class": int(sure.sum()),
            "single_class_by_label": {lab: int((m[sure].argmax(1) == k).sum()) for k, lab in enumerate(labels)},
            "in_a_set_by_label": {lab: int(m[:, k].sum()) for k, lab in enumerate(labels)}}
