"""Training engine: it learns, repeats exactly, stops early onto the best epoch, weights classes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _vision_synth import make_shapes

from hemotwin.errors import InputError
from hemotwin.taxonomy import CLASS_CODES
from hemotwin.vision.fitting import (
    CellArrayDataset,
    TrainConfig,
    class_weights,
    evaluate,
    fit,
    macro_f1,
    target_masks,
)
from hemotwin.vision.losses import distillation_loss, make_loss, set_nll, teacher_probabilities
from hemotwin.vision.models import ModelConfig

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


def test_weight_average_is_the_exponential_average_of_the_trajectory():
    """The average follows w_avg <- d w_avg + (1 - d) w: the plain mean until d reaches exp(-1/tau)."""
    from hemotwin.vision.fitting import _WeightAverage

    net = torch.nn.Linear(2, 1)
    avg = _WeightAverage(net, tau_steps=10.0)
    d_full = np.exp(-1 / 10)
    expect = net.weight.detach().clone()
    for n in range(1, 40):
        with torch.no_grad():
            net.weight.fill_(float(n))  # a trajectory 1, 2, 3, ...
        avg.update(net)
        d = min(d_full, (n - 1) / n)
        expect = d * expect + (1 - d) * net.weight.detach()
        torch.testing.assert_close(avg.model.weight, expect)
        if n == 5:
            assert float(avg.model.weight[0, 0]) == pytest.approx(3.0)  # mean of 1..5
    assert not avg.model.weight.requires_grad
    # An exponential average of a ramp lags it by d / (1 - d) = 9.5 steps once the mean phase
    # (first ~10 steps) has been forgotten: by step 39 it weighs e^-3 = 5 % (lag 5 then), so 9.5 ± 0.5.
    assert 39 - float(avg.model.weight[0, 0]) == pytest.approx(d_full / (1 - d_full), abs=0.5)


def test_fit_with_a_weight_average_validates_and_keeps_the_average(shapes):
    """With ``ema_epochs`` the kept model is the average: its validation loss is the history's."""
    x, y, xv, yv = shapes
    val = CellArrayDataset(xv, yv)
    cfg = TrainConfig(epochs=4, batch_size=32, lr=1e-2, patience=None, seed=1, **T1)
    plain = fit(SMALL, CellArrayDataset(x, y, aug=_flip), val, config=cfg)
    avg = fit(SMALL, CellArrayDataset(x, y, aug=_flip), val, config=cfg.model_copy(update={"ema_epochs": 1.0}))
    # Same seed, same trajectory: only what is validated and kept differs.
    assert [h["train_loss"] for h in avg.history] == [h["train_loss"] for h in plain.history]
    assert not all(torch.equal(a, b) for a, b in zip(_params(avg.model).values(), _params(plain.model).values(),
                                                      strict=True))
    kept = evaluate(avg.model, val)
    assert kept["loss"] == pytest.approx(avg.history[avg.best_epoch]["val_loss"], rel=1e-6)
    assert avg.best_metrics["val_accuracy"] >= 0.9  # the average of a learning net has learned too
    with pytest.raises(ValueError):
        TrainConfig(ema_epochs=-1)


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


# --- set-valued (coarse) labels ----------------------------------------------------------------------


def test_set_loss_matches_hand_computation():
    z = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0], [1000.0, 999.0, -1000.0]])
    e = np.exp(z[:2].double().numpy() - z[:2].double().numpy().max(1, keepdims=True))
    p = e / e.sum(1, keepdims=True)
    single = torch.tensor([[True, False, False], [False, False, True], [False, True, False]])
    np.testing.assert_allclose(set_nll(z, single).numpy(),
                               torch.nn.functional.cross_entropy(z, torch.tensor([0, 2, 1]), reduction="none"),
                               rtol=1e-6)
    pair = torch.tensor([[True, True, False], [True, False, True], [True, True, False]])
    got = set_nll(z, pair).double().numpy()
    np.testing.assert_allclose(got[:2], [-np.log(p[0, 0] + p[0, 1]), -np.log(p[1, 0] + p[1, 2])], rtol=1e-6)
    # Huge logits stay finite: -log(p0 + p1) with p2 ~ e^-2000 is ~0.
    assert np.isfinite(got[2]) and abs(got[2]) < 1e-6
    assert set_nll(z, torch.ones_like(single)).abs().max() < 1e-6  # the full set has probability 1

    # Weighted mean over rows, each weighted by the mean of its allowed classes' weights.
    w = np.array([0.5, 2.0, 1.0], np.float32)
    mask = torch.tensor([[True, False, False], [True, True, False], [False, True, True]])
    lw = make_loss(w)(z, mask).item()
    li = set_nll(z, mask).numpy()
    wi = np.array([0.5, 1.25, 1.5])
    assert lw == pytest.approx(float((wi * li).sum() / wi.sum()), rel=1e-6)
    # Singleton masks give exactly the index-label loss, weights and smoothing included.
    y = torch.tensor([0, 2, 1])
    for smooth in (0.0, 0.2):
        loss = make_loss(w, smooth)
        assert loss(z, single).item() == pytest.approx(loss(z, y).item(), rel=1e-6)
    # Smoothing leaves set-valued rows alone.
    assert make_loss(w, 0.3)(z, pair).item() == pytest.approx(make_loss(w)(z, pair).item(), rel=1e-6)


def test_learns_to_separate_classes_seen_mostly_as_a_set(shapes):
    x, y, xv, yv = shapes
    mask = np.eye(3, dtype=bool)[y]
    # Half of the class-0 and class-1 training rows only say "0 or 1" (like PBC "neutrophil" = NGS|NGB).
    coarse = np.flatnonzero(y < 2)[::2]
    mask[coarse, :2] = True
    ds = CellArrayDataset(x, mask, aug=_flip)
    assert ds.set_valued and (ds.labels[coarse] == -1).all() and (ds.labels[y == 2] == 2).all()
    res = fit(SMALL, ds, CellArrayDataset(xv, yv),
              config=TrainConfig(epochs=8, batch_size=32, lr=1e-2, patience=None, **T1))
    pred = res.model(torch.from_numpy(xv)).argmax(1).numpy()
    ab_val = yv < 2
    # Chance between 0 and 1 is 1/2: the singleton rows teach the split, the coarse rows cost nothing
    # whichever of 0 and 1 they put their mass on, so they teach "0 or 1 vs 2" without confusing the split.
    assert (pred[ab_val] == yv[ab_val]).mean() >= 0.9
    assert res.best_metrics["val_accuracy"] >= 0.9


def test_target_masks_from_label_names():
    k = {c: i for i, c in enumerate(CLASS_CODES)}
    m = target_masks(["NGS", "neutrophil", "ig", "lymphocyte", "Band_Neutrophil", "NGS"], CLASS_CODES)
    assert m.shape == (6, 15) and m.dtype == bool
    assert [sorted(CLASS_CODES[j] for j in np.flatnonzero(r)) for r in m] == [
        ["NGS"], ["NGB", "NGS"], ["MMZ", "MYB", "PMB", "PMO"], ["LYA", "LYT"], ["NGB"], ["NGS"]]
    # A model coarser than the label: the nearest ancestor it has.
    pbc = ["basophil", "eosinophil", "erythroblast", "ig", "lymphocyte", "monocyte", "neutrophil", "platelet"]
    assert target_masks(["NGS", "MYB", "ig"], pbc).argmax(1).tolist() == [6, 3, 3]
    with pytest.raises(InputError, match=r"platelet.*NGS"):
        target_masks(["NGS", "platelet"], CLASS_CODES)
    with pytest.raises(InputError, match=r"MYO.*neutrophil"):
        target_masks(["MYO"], pbc)  # a blast has no PBC class
    with pytest.raises(InputError, match="labels"):
        target_masks(["not a cell"], CLASS_CODES)

    # Mixing: finely labelled twin cells (indices) with coarse real cells (names) in one mask array.
    twin = CellArrayDataset(np.zeros((4, 32, 32, 3), np.uint8), [k["NGS"], k["NGB"], k["MYB"], k["NGS"]])
    real = target_masks(["neutrophil", "ig"], CLASS_CODES)
    both = CellArrayDataset(np.zeros((6, 32, 32, 3), np.uint8), np.concatenate([twin.target_mask(15), real]))
    assert both.labels.tolist() == [k["NGS"], k["NGB"], k["MYB"], k["NGS"], -1, -1]
    assert both[4][1].dtype == bool and both[4][1].sum() == 2 and both[0][1].sum() == 1
    # Fractional counts: NGS 2 + 1/2, NGB 1 + 1/2, MYB 1 + 1/4, PMO/PMB/MMZ 1/4 each; 6 classes present.
    w = class_weights(both.masks, 15)
    np.testing.assert_allclose(w[[k["NGS"], k["NGB"], k["MYB"], k["PMO"]]], 6 / (6 * np.array([2.5, 1.5, 1.25, 0.25])),
                               rtol=1e-6)
    assert w[k["EOS"]] == 1.0
    row_w = (both.masks * w).sum(1) / both.masks.sum(1)
    assert row_w.mean() == pytest.approx(1.0)  # power=1 keeps the mean row weight at 1
    with pytest.raises(InputError, match="allows no class"):
        CellArrayDataset(np.zeros((2, 32, 32, 3), np.uint8), np.zeros((2, 15), bool))


def test_singleton_masks_train_like_index_labels(shapes):
    x, y, xv, yv = shapes
    cfg = TrainConfig(epochs=1, batch_size=32, label_smoothing=0.1, **T1)
    a = fit(SMALL, CellArrayDataset(x[:64], y[:64]), CellArrayDataset(xv, yv), config=cfg)
    onehot = np.eye(3, dtype=bool)
    b = fit(SMALL, CellArrayDataset(x[:64], onehot[y[:64]]), CellArrayDataset(xv, onehot[yv]), config=cfg)
    assert a.class_weights == pytest.approx(b.class_weights)
    assert b.history[0]["train_loss"] == pytest.approx(a.history[0]["train_loss"], rel=1e-4)
    for key in ("val_loss", "val_accuracy", "val_macro_f1"):
        assert b.history[0][key] == pytest.approx(a.history[0][key], rel=1e-4, abs=1e-6)


class _FirstPixel(torch.nn.Module):
    """Logits = the first pixel's RGB: a stand-in model whose predictions a test can set."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0, 0, :].float()


def test_evaluate_and_monitor_with_masks(shapes):
    imgs = np.zeros((4, 32, 32, 3), np.uint8)
    imgs[:, 0, 0] = [[9, 0, 0], [0, 9, 0], [0, 0, 9], [0, 9, 0]]  # predicts 0, 1, 2, 1
    masks = np.array([[1, 0, 0], [1, 1, 0], [1, 1, 0], [0, 1, 0]], bool)
    m = evaluate(_FirstPixel(), CellArrayDataset(imgs, masks))
    assert m["accuracy"] == pytest.approx(3 / 4)  # row 2 predicts 2, outside {0, 1}
    assert m["macro_f1"] == pytest.approx(1.0)  # singleton rows 0 and 3 are both right
    z = torch.from_numpy(imgs[:, 0, 0].astype(np.float32))
    assert m["loss"] == pytest.approx(set_nll(z, torch.from_numpy(masks)).mean().item(), rel=1e-6)
    assert np.isnan(evaluate(_FirstPixel(), CellArrayDataset(imgs[1:3], masks[1:3]))["macro_f1"])

    x, y, xv, _ = shapes
    coarse_val = CellArrayDataset(xv[:12], np.ones((12, 3), bool))
    with pytest.raises(InputError, match="monitor"):
        fit(SMALL, CellArrayDataset(x[:16], y[:16]), coarse_val, config=TrainConfig(epochs=1, **T1))
    res = fit(SMALL, CellArrayDataset(x[:16], y[:16]), coarse_val,
              config=TrainConfig(epochs=1, monitor="accuracy", **T1))
    assert res.best_metrics["val_accuracy"] == 1.0  # every class is allowed everywhere
    with pytest.raises(InputError, match="n_classes=3"):
        fit(SMALL, CellArrayDataset(x[:8], np.ones((8, 4), bool)), config=TrainConfig(epochs=1, **T1))


# --- augmentation may change the image size ----------------------------------------------------------


def _half(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Working 64 px -> model 32 px (2x2 mean), with a random flip."""
    small = img.reshape(img.shape[0] // 2, 2, img.shape[1] // 2, 2, 3).mean((1, 3)).round().astype(np.uint8)
    return _flip(small, rng)


def test_augmentation_returns_model_input_size():
    x64, y = make_shapes(96, size=64, seed=0)
    xv, yv = make_shapes(30, size=32, seed=1)
    ds = CellArrayDataset(x64, y, aug=_half)
    assert ds[0][0].shape == (32, 32, 3)  # a dataset alone accepts any uint8 H x W x 3 output
    res = fit(SMALL, ds, CellArrayDataset(xv, yv),
              config=TrainConfig(epochs=3, batch_size=32, lr=1e-2, patience=None, **T1))
    assert len(res.history) == 3 and res.best_metrics["val_accuracy"] > 0.6
    assert ds.output_size is None  # fit checked sizes on its own copy

    crop48 = lambda im, rng: np.ascontiguousarray(im[:48, :48])  # noqa: E731
    with pytest.raises(InputError, match=r"augmentation output.*48x48.*32x32"):
        fit(SMALL, CellArrayDataset(x64[:8], y[:8], aug=crop48), config=TrainConfig(epochs=1, **T1))
    with pytest.raises(InputError, match=r"augmentation output.*48x48"):  # checked before workers start
        fit(SMALL, CellArrayDataset(x64[:8], y[:8], aug=crop48), config=TrainConfig(epochs=1, num_workers=1, **T1))
    with pytest.raises(InputError, match=r"augmentation output.*uint8"):
        CellArrayDataset(x64[:2], y[:2], aug=lambda im, rng: im.astype(np.float32))[0]
    with pytest.raises(InputError, match=r"train images.*64x64.*32x32"):
        fit(SMALL, CellArrayDataset(x64[:8], y[:8]), config=TrainConfig(epochs=1, **T1))
    with pytest.raises(InputError, match=r"val images.*64x64"):
        fit(SMALL, CellArrayDataset(x64[:8], y[:8], aug=_half), CellArrayDataset(x64[:4], y[:4], aug=_half),
            config=TrainConfig(epochs=1, **T1))
    with pytest.raises(InputError, match="32x32"):
        CellArrayDataset(x64[:2], y[:2], aug=_half, output_size=48)[0]


def test_distillation_loss_is_the_scaled_kl_divergence():
    """``T^2 KL(p || softmax(z / T))``, checked against torch's own KL and its two limits."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(6, 4, generator=g)
    p = torch.softmax(torch.randn(6, 4, generator=g), dim=1)
    for t in (1.0, 2.0, 4.0):
        ref = torch.nn.functional.kl_div(torch.log_softmax(z / t, 1), p, reduction="batchmean") * t**2
        assert float(distillation_loss(z, p, temperature=t)) == pytest.approx(float(ref), rel=1e-5)
    # A student that already answers as the teacher has nothing to learn (float32 rounding only).
    assert float(distillation_loss(torch.log(p) * 2.0, p, temperature=2.0)) == pytest.approx(0.0, abs=1e-5)
    # Row weights: a weighted mean, so weighting one row alone gives that row's term.
    w = torch.zeros(6)
    w[2] = 3.0
    one = distillation_loss(z[2:3], p[2:3], temperature=2.0)
    assert float(distillation_loss(z, p, temperature=2.0, weights=w)) == pytest.approx(float(one), rel=1e-5)
    with pytest.raises(InputError, match="teacher probabilities"):
        distillation_loss(z, p[:, :3], temperature=1.0)


def test_teacher_probabilities_are_the_mean_of_the_members():
    g = torch.Generator().manual_seed(1)
    nets = [torch.nn.Linear(5, 3) for _ in range(3)]
    x = torch.randn(4, 5, generator=g)
    want = sum(torch.softmax(n(x) / 2.0, 1) for n in nets) / 3
    got = teacher_probabilities(nets, x, temperature=2.0)
    assert torch.allclose(got, want, atol=1e-6) and torch.allclose(got.sum(1), torch.ones(4))


def test_a_student_learns_the_teachers_answer_not_the_labels(shapes):
    """Distillation transfers what the teacher knows: with weight 1 the labels do not count at all.

    The student is given every label wrong (each shape labelled as the next class). Alone it learns
    the wrong labels (near 0 % against the truth); distilled from a teacher that learnt the right
    ones it answers as the teacher does. Chance is 1/3, and the shapes separate cleanly, so the
    bounds (>= 0.9 and <= 0.1) leave room for a few misses without letting either outcome pass as the other.
    """
    x, y, xv, yv = shapes
    cfg = {"epochs": 6, "batch_size": 32, "lr": 1e-2, "patience": None, "monitor": "val_loss", **T1}
    teacher = fit(SMALL, CellArrayDataset(x, y), config=TrainConfig(**cfg)).model
    teacher.train()  # the caller's mode must come back as it was
    before = _params(teacher)
    wrong = (y + 1) % 3
    alone = fit(SMALL, CellArrayDataset(x, wrong), config=TrainConfig(**cfg, seed=1)).model
    student = fit(SMALL, CellArrayDataset(x, wrong), config=TrainConfig(**cfg, seed=1, distill_weight=1.0),
                  teachers=[teacher]).model
    truth = CellArrayDataset(xv, yv)
    assert evaluate(alone, truth)["accuracy"] <= 0.1
    assert evaluate(student, truth)["accuracy"] >= 0.9
    assert teacher.training
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())


def test_distillation_options_are_checked(shapes):
    x, y, _, _ = shapes
    data = CellArrayDataset(x[:16], y[:16])
    teacher = fit(SMALL, data, config=TrainConfig(epochs=1, **T1)).model
    with pytest.raises(InputError, match="teachers"):
        fit(SMALL, data, config=TrainConfig(epochs=1, distill_weight=0.5, **T1))
    with pytest.raises(InputError, match="distill_weight"):
        fit(SMALL, data, config=TrainConfig(epochs=1, **T1), teachers=[teacher])
    other = fit(SMALL.model_copy(update={"n_classes": 2}), CellArrayDataset(x[:16], y[:16] % 2),
                config=TrainConfig(epochs=1, **T1)).model
    with pytest.raises(InputError, match="teacher probabilities"):
        fit(SMALL, data, config=TrainConfig(epochs=1, distill_weight=0.5, **T1), teachers=[other])
    with pytest.raises(ValueError, match="distill_weight"):
        TrainConfig(distill_weight=1.5)
