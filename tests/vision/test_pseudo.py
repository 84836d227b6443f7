"""Weak labels for a target scanner's unlabelled cells: prediction sets, and what training on them does."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
import torch
from _vision_synth import make_shapes

from hemotwin.errors import InputError
from hemotwin.vision.fitting import CellArrayDataset, TrainConfig, evaluate, fit, predict_logits
from hemotwin.vision.models import ModelConfig
from hemotwin.vision.pseudo import prediction_sets, set_summary

SMALL = ModelConfig(n_classes=3, input_size=32, widths=(8, 16, 32, 64), blocks=(1, 1, 1, 1))


def test_prediction_sets_are_the_smallest_sets_reaching_the_coverage():
    p = np.array([[0.95, 0.03, 0.02],   # sure: one class
                  [0.50, 0.45, 0.05],   # unsure between two
                  [0.05, 0.40, 0.55],   # the order is by probability, not by column
                  [0.30, 0.30, 0.40],   # needs all three
                  [0.10, 0.90, 0.00]])  # exactly the coverage with one class
    got = prediction_sets(p, coverage=0.9)
    assert got.tolist() == [[True, False, False], [True, True, False], [False, True, True],
                            [True, True, True], [False, True, False]]
    # Coverage 1: every class with any probability (a zero stays out); a low coverage: the top class.
    assert prediction_sets(p, coverage=1.0)[4].tolist() == [True, True, False]
    assert (prediction_sets(p, coverage=0.01).sum(1) == 1).all()
    assert (prediction_sets(p, coverage=0.01).argmax(1) == p.argmax(1)).all()
    # Larger coverage never gives a smaller set.
    rng = np.random.default_rng(0)
    q = rng.dirichlet(np.ones(5), size=200)
    sizes = [prediction_sets(q, coverage=c).sum(1) for c in (0.5, 0.8, 0.9, 0.99)]
    assert all((a <= b).all() for a, b in pairwise(sizes))
    # ... and a set's probability reaches the coverage, which the set without its last class does not.
    m = prediction_sets(q, coverage=0.8)
    held = (q * m).sum(1)
    assert (held >= 0.8 - 1e-9).all()
    smallest_in = np.where(m, q, np.inf).min(1)
    assert (held - smallest_in < 0.8).all()


def test_prediction_set_inputs_are_checked():
    with pytest.raises(InputError, match="coverage"):
        prediction_sets(np.array([[0.5, 0.5]]), coverage=0.0)
    with pytest.raises(InputError, match="coverage"):
        prediction_sets(np.array([[0.5, 0.5]]), coverage=1.5)
    with pytest.raises(InputError, match="probabilities"):
        prediction_sets(np.array([0.5, 0.5]))
    with pytest.raises(InputError, match="probabilities"):
        prediction_sets(np.array([[np.nan, 1.0]]))


def test_set_summary_counts_sure_cells_by_class():
    m = np.array([[1, 0, 0], [0, 0, 1], [1, 1, 0], [0, 0, 1]], dtype=bool)
    s = set_summary(m, ["a", "b", "c"])
    assert s["n"] == 4 and s["single_class"] == 3 and s["mean_set_size"] == pytest.approx(1.25)
    assert s["single_class_by_label"] == {"a": 1, "b": 0, "c": 2}
    assert s["in_a_set_by_label"] == {"a": 2, "b": 1, "c": 2}


def test_rows_can_have_their_own_augmentation():
    x, y = make_shapes(6, seed=0)
    plus = lambda im, rng: (im // 2).astype(np.uint8)  # noqa: E731
    zero = lambda im, rng: np.zeros_like(im)  # noqa: E731
    ds = CellArrayDataset(x, y, aug=[plus, zero], aug_index=[0, 0, 0, 1, 1, 1])
    assert np.array_equal(ds[0][0], x[0] // 2) and not ds[4][0].any()
    assert np.array_equal(ds.images, x)  # the stored images are never changed
    for bad in (None, [0, 1], [0, 0, 0, 1, 1, 2], [0, 0, 0, 1, 1, -1]):
        with pytest.raises(InputError, match="aug_index"):
            CellArrayDataset(x, y, aug=[plus, zero], aug_index=bad)
    with pytest.raises(InputError, match="aug_index"):
        CellArrayDataset(x, y, aug=plus, aug_index=[0] * 6)
    with pytest.raises(InputError, match="aug"):
        CellArrayDataset(x, y, aug=[], aug_index=[0] * 6)


def _to_target_scanner(images: np.ndarray) -> np.ndarray:
    """A 'second scanner' that rotates the colour channels: each class takes the colour of the next."""
    return np.ascontiguousarray(images[..., [2, 0, 1]])


def test_unlabelled_target_cells_teach_the_student_the_target():
    """Self-training on a target scanner's unlabelled cells transfers what the teacher knows there.

    The toy shapes are told apart by colour on the source scanner; the target scanner rotates the
    colours so that each class looks like the next one did. A teacher trained on both scanners
    answers the target well; a student given only source labels learns colour and fails on the
    target (chance is 1/3, and a colour reader scores near 0) even when distilled, since the
    teacher is only asked about source cells. Given the target's unlabelled cells with the
    teacher's prediction sets, the same student reads the target as the teacher does. The
    bounds (<= 0.3, >= 0.9, the teacher >= 0.9) separate the two outcomes with room for a few
    cells either way.
    """
    x, y = make_shapes(192, seed=0)
    xb, yb = make_shapes(192, seed=2)
    xb = _to_target_scanner(xb)
    xt, yt = make_shapes(60, seed=1)
    target_test = CellArrayDataset(_to_target_scanner(xt), yt)
    cfg = {"epochs": 10, "batch_size": 32, "lr": 1e-2, "patience": None, "monitor": "val_loss", "num_threads": 1}
    teacher = fit(SMALL, CellArrayDataset(np.concatenate([x, xb]), np.concatenate([y, yb])),
                  config=TrainConfig(**cfg)).model
    assert evaluate(teacher, target_test)["accuracy"] >= 0.9
    student_cfg = TrainConfig(**cfg, seed=1, distill_weight=0.5)
    alone = fit(SMALL, CellArrayDataset(x, y), config=student_cfg, teachers=[teacher]).model
    probs = torch.softmax(torch.as_tensor(predict_logits(teacher, CellArrayDataset(xb, yb))), 1).numpy()
    sets = prediction_sets(probs, coverage=0.9)
    with_cells = fit(SMALL, CellArrayDataset(np.concatenate([x, xb]), np.concatenate([np.eye(3, dtype=bool)[y], sets])),
                     config=student_cfg, teachers=[teacher]).model
    assert evaluate(alone, target_test)["accuracy"] <= 0.3
    assert evaluate(with_cells, target_test)["accuracy"] >= 0.9
