"""Training engine: it learns, repeats exactly, stops early onto the best epoch, weights classes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _vision_synth import make_shapes

from hemotwin.errors import InputError
from hemotwin.vision.models import ModelConfig
from hemotwin.vision.train import (
    CellArrayDataset,
    TrainConfig,
    class_weights,
    evaluate,
    fit,
    macro_f1,
    make_loss,
)

# One intra-op thread in tests: the suite runs under pytest-xdist (-n 2) on 2 cores, and OpenMP
# threads spin-waiting on contended cores made the same fit up to 100x slower.
T1 = {"num_threads": 1}

SMALL = ModelConfig(n_classes=3, input_size=32, widths=(8, 16, 32, 64), blocks=(1, 1, 1, 1))


def _flip(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.ascontiguousarray(img[:, ::-1]) if rng.random() < 0.5 else img


@pytest.fixture(scope="module")
def shapes():
    x, y = make_shapes(192, seed=0)
    xv, yv = make_shapes(60, seed=1)
    return x, y, xv, yv


def test_learns_separable_problem(shapes):
    x, y, xv, yv = shapes
    seen = []
    res = fit(SMALL, list(zip(x, y, strict=True)), list(zip(xv, yv, strict=True)),
              config=TrainConfig(epochs=6, batch_size=32, lr=1e-2, patience=None, **T1), aug=_flip,
              progress=lambda d, t, info: seen.append((d, t, info["phase"])))
    # Chance is 1/3; a net that learns anything gets these cleanly separable shapes nearly all right.
    assert res.best_metrics["val_accuracy"] >= 0.95
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    assert len(res.history) == 6 and not res.stopped_early
    assert seen[-1][0] == seen[-1][1] == 6 * 6  # 192 / 32 -> 6 batches per epoch
    assert sum(1 for s in seen if s[2] == "epoch") == 6
    assert res.train_images_per_s > 0
    assert not res.model.training


def _params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_same_seed_same_weights_and_metrics(shapes):
    x, y, xv, yv = shapes
    train, val = CellArrayDataset(x[:96], y[:96], aug=_flip, seed=5), CellArrayDataset(xv[:30], yv[:30])
    cfg = TrainConfig(epochs=2, batch_size=16, seed=5, **T1)
    a = fit(SMALL, train, val, config=cfg)
    b = fit(SMALL, train, val, config=cfg)
    # Workers (fork) must not change anything: augmentation rngs depend on (seed, epoch, index) only.
    c = fit(SMALL, train, val, config=cfg.model_copy(update={"num_workers": 2}))
    pa, pb, pc = _params(a.model), _params(b.model), _params(c.model)
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert all(torch.equal(pa[k], pc[k]) for k in pa)
    drop = ("train_images_per_s",)
    strip = lambda h: [{k: v for k, v in e.items() if k not in drop} for e in h]  # noqa: E731
    assert strip(a.history) == strip(b.history) == strip(c.history)
    d = fit(SMALL, train, val, config=cfg.model_copy(update={"seed": 6}))
    assert not all(torch.equal(pa[k], v) for k, v in _params(d.model).items())


def test_early_stopping_restores_best_epoch(shapes):
    x, y, xv, yv = shapes
    # Validation labels are the training rule shifted by one class: the better the net learns the
    # training task, the worse validation gets, so the best epoch is early and patience runs out.
    val = CellArrayDataset(xv, (yv + 1) % 3)
    res = fit(SMALL, CellArrayDataset(x[:128], y[:128]), val,
              config=TrainConfig(epochs=15, batch_size=32, monitor="val_loss", patience=2, **T1))
    losses = [h["val_loss"] for h in res.history]
    assert res.stopped_early and len(res.history) < 15
    assert res.best_epoch == int(np.argmin(losses)) and res.best_epoch < len(losses) - 1
    assert len(res.history) == res.best_epoch + 1 + 2  # stopped exactly `patience` epochs after the best
    restored = evaluate(res.model, val)
    # Same weights, same deterministic evaluation -> the best epoch's loss, not the last one's.
    assert restored["loss"] == pytest.approx(losses[res.best_epoch], rel=1e-6)
    assert restored["loss"] < losses[-1]


def test_class_weights_and_weighted_loss():
    w = class_weights([0] * 90 + [1] * 10, 3)
    np.testing.assert_allclose(w, [100 / (2 * 90), 100 / (2 * 10), 1.0], rtol=1e-6)  # class 2 absent -> 1
    np.testing.assert_allclose(class_weights([0] * 90 + [1] * 10, 2, power=0.0), [1.0, 1.0])
    logits = torch.tensor([[2.0, 0.0], [2.0, 0.0], [2.0, 0.0], [2.0, 0.0]])  # always predicts class 0
    target = torch.tensor([0, 0, 0, 1])  # the minority sample is the one misclassified
    plain = make_loss()(logits, target)
    weighted = make_loss(np.array([0.5, 2.0], np.float32))(logits, target)
    per = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    wi = torch.tensor([0.5, 0.5, 0.5, 2.0])
    assert weighted.item() == pytest.approx(float((wi * per).sum() / wi.sum()), rel=1e-6)
    assert weighted > plain  # up-weighting the missed rare class raises the loss


def test_class_balance_changes_training(shapes):
    x, y, _, _ = shapes
    keep = np.concatenate([np.flatnonzero(y == 0), np.flatnonzero(y == 1), np.flatnonzero(y == 2)[:8]])
    ds = CellArrayDataset(x[keep], y[keep])
    cfg = TrainConfig(epochs=1, batch_size=32, **T1)
    bal = fit(SMALL, ds, config=cfg)
    none = fit(SMALL, ds, config=cfg.model_copy(update={"class_balance": "none"}))
    assert bal.class_weights[2] > bal.class_weights[0] and none.class_weights == [1.0, 1.0, 1.0]
    assert bal.history[0]["train_loss"] != none.history[0]["train_loss"]


def test_tiny_dataset_and_batchnorm_edge():
    x, y = make_shapes(5, seed=3)
    res = fit(SMALL, list(zip(x, y, strict=True)), list(zip(x, y, strict=True)),
              config=TrainConfig(epochs=2, batch_size=64, **T1))
    assert len(res.history) == 2
    bn = SMALL.model_copy(update={"norm": "batch"})
    x, y = make_shapes(9, seed=3)  # 9 % 4 == 1: the last batch of one image is dropped for BatchNorm
    assert len(fit(bn, CellArrayDataset(x, y), config=TrainConfig(epochs=1, batch_size=4, **T1)).history) == 1


def test_fit_restores_global_torch_state(shapes):
    x, y, _, _ = shapes
    torch.set_num_threads(1)
    fit(SMALL, CellArrayDataset(x[:16], y[:16]), config=TrainConfig(epochs=1, num_threads=2))
    assert torch.get_num_threads() == 1
    assert not torch.are_deterministic_algorithms_enabled()


def test_bad_inputs_rejected(shapes):
    x, y, _, _ = shapes
    with pytest.raises(InputError, match="augmentation output"):
        fit(SMALL, CellArrayDataset(x[:8], y[:8], aug=lambda im, rng: im[:10]), config=TrainConfig(epochs=1, **T1))
    with pytest.raises(InputError, match="train labels"):
        fit(SMALL, CellArrayDataset(x[:8], np.full(8, 3)), config=TrainConfig(epochs=1, **T1))
    with pytest.raises(InputError, match="uint8"):
        CellArrayDataset(x[:4].astype(np.float32), y[:4])
    with pytest.raises(InputError, match="one shape"):
        CellArrayDataset([x[0], x[1][:10]], [0, 1])
    with pytest.raises(InputError, match="at least one"):
        fit(SMALL, [], config=TrainConfig(epochs=1, **T1))


def test_macro_f1_matches_hand_computation():
    y_true = np.array([0, 0, 1, 1, 2])
    y_pred = np.array([0, 1, 1, 1, 0])
    # class 0: P=1/2 R=1/2 F=1/2; class 1: P=2/3 R=1 F=0.8; class 2: F=0
    assert macro_f1(y_true, y_pred, 4) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
