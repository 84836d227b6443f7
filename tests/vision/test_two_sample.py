"""Classifier two-sample test: chance on one distribution, near-perfect on clearly different ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hemotwin.errors import InputError
from hemotwin.vision.two_sample import TwoSampleConfig, auc_score, two_sample_auc

torch.set_num_threads(1)

SIZE = 24
# Small and fast: a 24 px crop, widths (8, 16, 32) and 6 epochs train in a few seconds on one core.
FAST = TwoSampleConfig(widths=(8, 16, 32), n_bootstrap=400)


def _cells(n: int, seed: int, *, red_shift: float = 0.0, stripes: float = 0.0) -> np.ndarray:
    """Toy "cells": a violet disc of random radius and place on a cream background, with sensor noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE].astype(float)
    out = np.empty((n, SIZE, SIZE, 3), np.uint8)
    for k in range(n):
        cy, cx = rng.uniform(9, 15, 2)
        r = rng.uniform(4, 8)
        disc = (np.hypot(yy - cy, xx - cx) < r)[..., None]
        img = np.where(disc, [120.0 + red_shift, 60.0, 160.0], [230.0, 215.0, 200.0])
        img = img + stripes * np.sin(xx * np.pi / 2)[..., None] * disc
        out[k] = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
    return out


def test_auc_score_matches_the_definition():
    # Mann-Whitney: 3 of 4 (positive, negative) pairs ordered correctly, one tie counts one half.
    assert auc_score(np.array([0.1, 0.5]), np.array([0.5, 0.9])) == pytest.approx(3.5 / 4)
    assert auc_score(np.array([0.0]), np.array([1.0])) == 1.0


def test_one_distribution_gives_chance():
    real, synthetic = _cells(240, 1), _cells(240, 2)
    res = two_sample_auc(real, synthetic, seed=0, epochs=6, config=FAST)
    # Two samples of one distribution: the true AUC is 0.5. With 72 test crops per side the bootstrap
    # standard error is ~0.05, so 0.5 must be inside the 95 % interval and the estimate within 0.15.
    assert res.auc_ci95[0] <= 0.5 <= res.auc_ci95[1]
    assert abs(res.auc - 0.5) < 0.15
    assert res.n_real == res.n_synthetic == 240
    assert res.n_split["test"] == {"real": 72, "synthetic": 72}


@pytest.mark.parametrize("change", [{"red_shift": 40.0}, {"stripes": 30.0}])
def test_clearly_different_sets_are_told_apart(change):
    # A 40-level red shift of the disc or a 4-px stripe pattern inside it is plain to see; noise has
    # sd 12, so a network that cannot exceed 0.9 on these would not detect much at all.
    real, synthetic = _cells(240, 1), _cells(240, 2, **change)
    res = two_sample_auc(real, synthetic, seed=0, epochs=6, config=FAST)
    assert res.auc > 0.9
    assert res.auc_ci95[0] > 0.8


def test_per_class_auc_finds_the_class_that_differs():
    # Class "a" identical on both sides, class "b" colour-shifted on the synthetic side only.
    real = np.concatenate([_cells(120, 1), _cells(120, 3)])
    synthetic = np.concatenate([_cells(150, 2), _cells(120, 4, red_shift=50.0)])
    labels_real = ["a"] * 120 + ["b"] * 120
    labels_syn = ["a"] * 150 + ["b"] * 120
    res = two_sample_auc(real, synthetic, seed=0, epochs=6, config=FAST, groups=(labels_real, labels_syn))
    assert res.n_real == res.n_synthetic == 240  # class "a" balanced down to 120 per side
    assert res.notes
    # 36 test crops per side and class: "b" separates (> 0.9 as above); "a" is chance, its interval
    # (standard error ~0.07) must reach 0.5 or its estimate lie well under "b"'s.
    assert res.per_class["b"]["auc"] > 0.9
    assert res.per_class["a"]["auc"] < res.per_class["b"]["auc"] - 0.2
    assert res.per_class["b"]["n_test_real"] == 36


def test_same_seed_same_result_and_inputs_untouched():
    real, synthetic = _cells(80, 1), _cells(80, 2, red_shift=10.0)
    before = real.copy()
    a = two_sample_auc(real, synthetic, seed=3, epochs=2, config=FAST)
    b = two_sample_auc(list(real), list(synthetic), seed=3, epochs=2, config=FAST)
    assert a.auc == b.auc and a.auc_ci95 == b.auc_ci95 and a.history == b.history
    assert np.array_equal(real, before)
    d = a.to_dict()
    assert d["seed"] == 3 and d["config"]["epochs"] == 2 and len(d["history"]) == 2


@pytest.mark.parametrize(("real", "synthetic", "kw", "where"), [
    (np.zeros((30, 16, 16, 3), np.float32), np.zeros((30, 16, 16, 3), np.uint8), {}, "real"),
    (np.zeros((30, 16, 16), np.uint8), np.zeros((30, 16, 16, 3), np.uint8), {}, "real"),
    (np.zeros((30, 16, 16, 3), np.uint8), np.zeros((30, 20, 20, 3), np.uint8), {}, "synthetic"),
    (np.zeros((10, 16, 16, 3), np.uint8), np.zeros((10, 16, 16, 3), np.uint8), {}, "real, synthetic"),
    ([], np.zeros((30, 16, 16, 3), np.uint8), {}, "real"),
    (np.zeros((30, 16, 16, 3), np.uint8), np.zeros((30, 16, 16, 3), np.uint8), {"seed": -1}, "seed"),
    (np.zeros((30, 16, 16, 3), np.uint8), np.zeros((30, 16, 16, 3), np.uint8), {"epochs": 0}, "epochs"),
    (np.zeros((30, 16, 16, 3), np.uint8), np.zeros((30, 16, 16, 3), np.uint8), {"config": {"epochs": 2}}, "config"),
    (np.zeros((30, 16, 16, 3), np.uint8), np.zeros((30, 16, 16, 3), np.uint8),
     {"config": TwoSampleConfig(test_fraction=0.9)}, "test_fraction"),
    (np.zeros((30, 16, 16, 3), np.uint8), np.zeros((30, 16, 16, 3), np.uint8),
     {"groups": (["a"] * 30, ["a"] * 29)}, "groups[1] (synthetic)"),
    (np.zeros((30, 16, 16, 3), np.uint8), np.zeros((30, 16, 16, 3), np.uint8),
     {"groups": (["a"] * 30, ["b"] * 30)}, "groups"),
])
def test_bad_input_is_refused(real, synthetic, kw, where):
    kw = {"seed": 0, **kw}
    with pytest.raises(InputError) as err:
        two_sample_auc(real, synthetic, **kw)
    assert err.value.where == where
