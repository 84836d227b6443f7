"""Evaluation metrics against hand-computed values, and the written report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hemotwin.errors import InputError
from hemotwin.vision.augment import ColorJitter, Compose, Geometric, identity
from hemotwin.vision.evaluate import (
    coverage_curve,
    evaluate_predictions,
    expected_calibration_error,
    write_report,
)

LABELS = ["lymphocyte", "monocyte", "neutrophil"]


def _onehot(idx, n=3, p=0.9):
    out = np.full((len(idx), n), (1 - p) / (n - 1))
    out[np.arange(len(idx)), idx] = p
    return out


def test_metrics_match_hand_computation():
    y = ["neutrophil"] * 6 + ["lymphocyte"] * 3 + ["monocyte"]
    pred = [2, 2, 2, 2, 2, 0, 0, 0, 1, 1]  # 5/6 neutrophils right, 2/3 lymphocytes, 1/1 monocyte
    m = evaluate_predictions(y, _onehot(pred), LABELS)
    assert m["n"] == 10 and m["accuracy"] == pytest.approx(0.8)
    # Exact (Clopper–Pearson) interval for 8/10: 0.444–0.975 (standard tables).
    lo, hi = m["accuracy_ci95_exact"]
    assert lo == pytest.approx(0.4439, abs=1e-3) and hi == pytest.approx(0.9748, abs=1e-3)
    pc = m["per_class"]
    assert pc["neutrophil"]["recall"] == pytest.approx(5 / 6) and pc["neutrophil"]["precision"] == 1.0
    assert pc["monocyte"]["precision"] == pytest.approx(0.5)
    assert m["confusion_matrix"][0] == [2, 1, 0]  # lymphocytes: 2 right, 1 called monocyte


def test_excluded_classes_are_not_scored():
    y = ["neutrophil", "monocyte", "neutrophil"]
    m = evaluate_predictions(y, _onehot([2, 0, 2]), LABELS, exclude=["monocyte"])
    assert m["n"] == 2 and m["n_excluded"] == 1 and m["accuracy"] == 1.0


def test_rejected_cells_are_counted_not_scored():
    y = ["neutrophil", "lymphocyte", "neutrophil"]
    m = evaluate_predictions(y, _onehot([2, 0, 2]), LABELS, rejected=["monocyte", "neutrophil"])
    # Three right calls; the two rejected cells are neither right nor in the metrics, but counted.
    assert m["n"] == 3 and m["accuracy"] == 1.0 and m["n_rejected"] == 2
    assert m["accuracy_rejected_as_errors"] == pytest.approx(3 / 5)
    assert m["per_class"]["monocyte"]["rejected"] == 1 and m["per_class"]["monocyte"]["support"] == 0
    # A rejected cell of an excluded class is excluded, not rejected.
    x = evaluate_predictions(y, _onehot([2, 0, 2]), LABELS, rejected=["monocyte"], exclude=["monocyte"])
    assert x["n_rejected"] == 0 and x["n_excluded"] == 1 and x["accuracy_rejected_as_errors"] == 1.0
    with pytest.raises(InputError, match="rejected by the input check"):
        evaluate_predictions([], np.zeros((0, 3)), LABELS, rejected=["monocyte"])
    with pytest.raises(InputError, match="true labels"):
        evaluate_predictions(y, _onehot([2, 0, 2]), LABELS, rejected=["blast"])


def test_ece_is_zero_when_confidence_equals_accuracy_and_large_when_overconfident():
    rng = np.random.default_rng(0)
    conf = np.full(10000, 0.7)
    correct = rng.random(10000) < 0.7
    # Sampling error of a proportion with n = 10,000 is 0.005: 0.02 is four standard errors.
    assert expected_calibration_error(conf, correct)["ece"] < 0.02
    assert expected_calibration_error(np.full(1000, 0.99), np.zeros(1000))["ece"] > 0.95


def test_referring_the_least_confident_raises_accuracy():
    conf = np.array([0.99, 0.98, 0.97, 0.6, 0.55])
    correct = np.array([1, 1, 1, 0, 1], dtype=float)
    cur = coverage_curve(conf, correct)
    assert cur["accuracy"][2] == 1.0 and cur["accuracy"][-1] == pytest.approx(0.8)
    assert cur["max_coverage_at_accuracy"]["0.95"] == pytest.approx(0.6)


def test_bad_shapes_and_unknown_labels_are_named():
    with pytest.raises(InputError, match="probabilities"):
        evaluate_predictions(["neutrophil"], np.ones((1, 2)), LABELS)
    with pytest.raises(InputError, match="true labels"):
        evaluate_predictions(["blast"], _onehot([0]), LABELS)


def test_report_files(tmp_path):
    m = evaluate_predictions(["neutrophil", "lymphocyte"], _onehot([2, 0]), LABELS)
    paths = write_report(m, tmp_path, title="t", provenance={"seed": 1})
    doc = json.loads(paths["json"].read_text())
    assert doc["metrics"]["accuracy"] == 1.0 and "research use" in doc["research_use_only"].lower()
    page = paths["html"].read_text()
    assert "data:image/png;base64," in page and "Not for diagnostic use" in page
    assert "Rejected by the input check: 0" in page
    m = evaluate_predictions(["neutrophil", "lymphocyte"], _onehot([2, 0]), LABELS, rejected=["lymphocyte"])
    page = write_report(m, tmp_path, title="t", provenance={}, figures=False)["html"].read_text()
    assert "Rejected by the input check: 1" in page and "0.667" in page  # 2 right of 3
    assert (tmp_path / "confusion.png").stat().st_size > 1000


def test_augmentations_keep_shape_dtype_and_do_not_mutate():
    rng = np.random.default_rng(1)
    img = (rng.random((40, 40, 3)) * 255).astype(np.uint8)
    before = img.copy()
    aug = Compose((Geometric(), ColorJitter()))
    out = aug(img, np.random.default_rng(2))
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(img, before)
    assert not np.array_equal(out, img)
    # Same generator state -> same output (augmentation is reproducible).
    assert np.array_equal(aug(img, np.random.default_rng(2)), out)
    assert identity(img, rng) is img
