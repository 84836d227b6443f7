"""Classifier two-sample test: how well a small network tells real cell crops from synthetic ones.

A small convolutional network is trained to tell two sets of crops apart (Lopez-Paz & Oquab, 2017,
"Revisiting classifier two-sample tests"). If the two sets come from the same distribution no
classifier can beat chance on crops it has not seen, and the held-out ROC AUC is 0.5; the further it
rises towards 1, the easier the synthetic crops are to spot. Used on the twin's crops against real
ones it is a realism measure that needs no hand-made feature: whatever the network finds (colour,
texture, shape, noise) counts.

Design choices (and why)
------------------------
- **Colour is kept**: pixels are scaled by fixed constants, never per image, and the network uses
  BatchNorm (statistics over the batch, not over each image), so a colour or brightness shift is
  visible to it. Colour is part of realism.
- **Augmentation is the 8 flips and quarter turns only**: orientation carries no information on a
  smear, and any other augmentation (colour jitter, blur, noise) would hide differences the test
  exists to find. Validation and test crops are scored as the mean logit over the same 8 views.
- **Balanced per class**: with class labels (``groups``) each class keeps the same number of crops on
  both sides (the larger side is subsampled), so the network cannot win by learning that a class is
  more often real; the splits are stratified by class and side.
- **Three splits**: the network is fitted on ``train``, its best epoch is chosen by the AUC on
  ``val``, and the AUC is reported on ``test``, which took no part in either. The 95 % interval is a
  percentile bootstrap over the test crops (resampled within each side): it covers the test set's
  sampling, not the spread between trainings with other seeds.
- **Deterministic**: one seed sets the subsampling, splits, initial weights, batch order and every
  augmentation draw; torch runs with deterministic algorithms on ``num_threads`` threads (1 by
  default), so the same seed on the same machine gives the same result.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from hemotwin.errors import InputError

__all__ = ["TwoSampleConfig", "TwoSampleResult", "auc_score", "two_sample_auc"]

#: ``progress(epoch, epochs, val_auc)`` after every epoch.
Progress = Callable[[int, int, float], None]

_MIN_PER_SIDE = 20  # a test split of 30 % then holds at least 6 crops per side


@dataclass(frozen=True)
class TwoSampleConfig:
    """Hyper-parameters of the two-sample network and its splits (stored in every result).

    Attributes
    ----------
    epochs
        Training epochs (the best by validation AUC is kept).
    batch_size
        Training batch size.
    lr
        Peak AdamW learning rate (linear warm-up over the first epoch, then cosine decay).
    weight_decay
        AdamW weight decay.
    widths
        Channels of the stride-2 convolution stages after a stride-1 stem of ``widths[0]``.
    val_fraction, test_fraction
        Shares of each (class, side) stratum held out for choosing the epoch and for the AUC.
    n_bootstrap
        Bootstrap resamples of the test set for the 95 % intervals.
    num_threads
        Torch threads during the run.
    """

    epochs: int = 12
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    widths: tuple[int, ...] = (16, 32, 64, 96)
    val_fraction: float = 0.15
    test_fraction: float = 0.3
    n_bootstrap: int = 1000
    num_threads: int = 1

    def check(self) -> None:
        """Refuse values no run could use.

        Raises
        ------
        InputError
            ``where`` names the field.
        """
        for name in ("epochs", "batch_size", "n_bootstrap", "num_threads"):
            v = getattr(self, name)
            if isinstance(v, bool) or not (isinstance(v, int) and v >= 1):
                raise InputError(name, v, "a whole number >= 1")
        for name in ("lr", "weight_decay"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= (0.0 if name == "weight_decay" else 1e-9)):
                raise InputError(name, v, "a positive finite number" if name == "lr" else "a number >= 0")
        if not self.widths or not all(isinstance(w, int) and w >= 1 for w in self.widths):
            raise InputError("widths", self.widths, "one or more positive channel counts")
        for name in ("val_fraction", "test_fraction"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and 0.05 <= v <= 0.5):
                raise InputError(name, v, "a share between 0.05 and 0.5")
        if self.val_fraction + self.test_fraction > 0.7:
            raise InputError("val_fraction + test_fraction", self.val_fraction + self.test_fraction,
                             "at most 0.7 (at least 30 % of the crops train the network)")


@dataclass
class TwoSampleResult:
    """The outcome of :func:`two_sample_auc`.

    Attributes
    ----------
    auc
        Held-out ROC AUC of telling synthetic (positive) from real crops; 0.5 = indistinguishable.
    auc_ci95
        Percentile-bootstrap 95 % interval of ``auc`` over the test crops.
    n_real, n_synthetic
        Crops used per side (after balancing).
    n_split
        Crops per split and side: ``{"train": {"real": .., "synthetic": ..}, "val": .., "test": ..}``.
    per_class
        With class labels: per class ``auc``, ``auc_ci95``, ``n_test_real``, ``n_test_synthetic``
        (``auc`` None for a class with too few test crops on a side).
    best_epoch
        The epoch (1-based) whose weights scored the test set.
    history
        Per epoch: ``epoch``, ``train_loss``, ``val_auc``.
    config
        The :class:`TwoSampleConfig` as a dict, with the crop size and the torch version.
    seed
        The seed of the run.
    seconds
        Wall time of the run.
    """

    auc: float
    auc_ci95: tuple[float, float]
    n_real: int
    n_synthetic: int
    n_split: dict[str, dict[str, int]]
    per_class: dict[str, dict[str, Any]] | None
    best_epoch: int
    history: list[dict[str, float]]
    config: dict[str, Any]
    seed: int
    seconds: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the result."""
        d = asdict(self)
        d["auc_ci95"] = list(self.auc_ci95)
        return d


class _Net(nn.Module):
    """Stride-1 stem, stride-2 stages (conv, BatchNorm, ReLU), global average pooling, one logit."""

    def __init__(self, widths: Sequence[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for k, w in enumerate([widths[0], *widths]):
            layers += [nn.Conv2d(c, w, 3, stride=1 if k == 0 else 2, padding=1, bias=False),
                       nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            c = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3))).squeeze(1)


def auc_score(negatives: np.ndarray, positives: np.ndarray) -> float:
    """ROC AUC of scores: the probability that a positive outranks a negative (ties count one half).

    Parameters
    ----------
    negatives, positives
        1-D scores of the two sides; each non-empty.

    Returns
    -------
    float
        The Mann-Whitney estimate, in [0, 1].
    """
    from scipy.stats import rankdata

    neg, pos = np.asarray(negatives, float).ravel(), np.asarray(positives, float).ravel()
    if neg.size == 0 or pos.size == 0:
        raise InputError("scores", (neg.size, pos.size), "at least one score on each side")
    ranks = rankdata(np.concatenate([neg, pos]))
    return float((ranks[neg.size:].sum() - pos.size * (pos.size + 1) / 2.0) / (pos.size * neg.size))


def _bootstrap_ci(neg: np.ndarray, pos: np.ndarray, n: int, rng: np.random.Generator) -> tuple[float, float]:
    """Percentile 95 % interval of the AUC, each side resampled with replacement on its own."""
    from scipy.stats import rankdata

    i = rng.integers(0, neg.size, size=(n, neg.size))
    j = rng.integers(0, pos.size, size=(n, pos.size))
    scores = np.concatenate([neg[i], pos[j]], axis=1)
    ranks = rankdata(scores, axis=1)
    aucs = (ranks[:, neg.size:].sum(axis=1) - pos.size * (pos.size + 1) / 2.0) / (pos.size * neg.size)
    lo, hi = np.percentile(aucs, [2.5, 97.5])
    return float(lo), float(hi)


def _stack(images: Any, where: str) -> np.ndarray:
    """``N x H x W x 3`` uint8 from a list or an array of crops (a copy; the input is never touched)."""
    if isinstance(images, np.ndarray):
        arr = images
    else:
        try:
            items = list(images)
        except TypeError:
            raise InputError(where, type(images).__name__, "a list or array of H x W x 3 uint8 crops") from None
        if not items:
            raise InputError(where, "no crops", f"at least {_MIN_PER_SIDE} crops")
        shapes = {np.shape(a) for a in items}
        if len(shapes) != 1:
            raise InputError(where, f"crops of shapes {sorted(shapes)[:4]}", "crops of one size (resample first)")
        dtypes = {np.asarray(a).dtype for a in items}
        if dtypes != {np.dtype(np.uint8)}:
            raise InputError(where, f"dtype {sorted(map(str, dtypes))}", "uint8 RGB crops")
        arr = np.stack([np.asarray(a) for a in items])
    if arr.dtype != np.uint8:
        raise InputError(where, f"dtype {arr.dtype}", "uint8 RGB crops")
    if arr.ndim != 4 or arr.shape[3] != 3 or min(arr.shape[1:3]) < 8:
        raise InputError(where, f"shape {arr.shape}", "N x H x W x 3 crops of at least 8 x 8 px")
    return np.array(arr, copy=True)


def _labels(groups: Any, n_real: int, n_syn: int) -> tuple[np.ndarray, np.ndarray] | None:
    if groups is None:
        return None
    try:
        g_real, g_syn = groups
    except (TypeError, ValueError):
        raise InputError("groups", type(groups).__name__,
                         "a pair (class of each real crop, class of each synthetic crop)") from None
    out = []
    for name, g, n in (("groups[0] (real)", g_real, n_real), ("groups[1] (synthetic)", g_syn, n_syn)):
        arr = np.asarray([str(x) for x in g], dtype=object)
        if arr.size != n:
            raise InputError(name, f"{arr.size} labels", f"one label per crop ({n})")
        out.append(arr)
    missing = sorted(set(out[0]) ^ set(out[1]))
    if missing:
        raise InputError("groups", f"classes on one side only: {missing}", "the same classes on both sides")
    return out[0], out[1]


def _balanced_splits(y_real: np.ndarray, y_syn: np.ndarray, cfg: TwoSampleConfig, rng: np.random.Generator
                     ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per class: the same number of crops per side, split into train / val / test alike on both sides."""
    parts: dict[str, tuple[list[int], list[int]]] = {"train": ([], []), "val": ([], []), "test": ([], [])}
    for c in sorted(set(y_real)):
        ir, is_ = np.flatnonzero(y_real == c), np.flatnonzero(y_syn == c)
        n = min(ir.size, is_.size)
        n_test = max(1, round(n * cfg.test_fraction))
        n_val = max(1, round(n * cfg.val_fraction))
        for side, idx in enumerate((ir, is_)):
            pick = rng.permutation(idx)[:n]
            parts["test"][side].extend(pick[:n_test])
            parts["val"][side].extend(pick[n_test:n_test + n_val])
            parts["train"][side].extend(pick[n_test + n_val:])
    return {k: (np.sort(np.asarray(a, int)), np.sort(np.asarray(b, int))) for k, (a, b) in parts.items()}


def _to_tensor(batch: np.ndarray) -> torch.Tensor:
    # Fixed scaling, never per image: a colour shift between the sides must stay visible.
    x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float()
    return (x / 255.0 - 0.5) / 0.25


def _augment(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = np.empty_like(batch)
    turns = rng.integers(0, 4, size=len(batch))
    flips = rng.random(len(batch)) < 0.5
    for k, img in enumerate(batch):
        v = np.rot90(img, turns[k])
        out[k] = v[:, ::-1] if flips[k] else v
    return out


def _scores(net: _Net, images: np.ndarray) -> np.ndarray:
    """Mean logit over the 8 flips and quarter turns of each crop."""
    net.eval()
    total = np.zeros(len(images))
    with torch.no_grad():
        for flip in (False, True):
            base = images[:, :, ::-1] if flip else images
            for turns in range(4):
                view = np.rot90(base, turns, axes=(1, 2))
                for s in range(0, len(view), 256):
                    total[s:s + 256] += net(_to_tensor(view[s:s + 256])).numpy()
    return total / 8.0


def two_sample_auc(real: Sequence[np.ndarray] | np.ndarray, synthetic: Sequence[np.ndarray] | np.ndarray, *,
                   seed: int, groups: tuple[Sequence[str], Sequence[str]] | None = None,
                   epochs: int | None = None, config: TwoSampleConfig | None = None,
                   progress: Progress | None = None) -> TwoSampleResult:
    """Held-out AUC of a small CNN trained to tell ``synthetic`` crops from ``real`` ones.

    Parameters
    ----------
    real, synthetic
        Lists or ``N x H x W x 3`` arrays of uint8 RGB crops, all of one size and already at the
        same pixel size and field of view (the test compares whatever differs); not modified.
    seed
        Seeds the balancing, the splits, the initial weights, the batch order and the augmentation.
    groups
        Optional class labels, a pair ``(labels of the real crops, labels of the synthetic crops)``:
        the sides are then balanced per class, the splits stratified by class, and a per-class AUC
        is reported. Both sides must hold the same classes.
    epochs
        Training epochs (default ``config.epochs``, 12).
    config
        The network and split settings (:class:`TwoSampleConfig`; default values when None).
    progress
        Called after every epoch with ``(epoch, epochs, val_auc)``.

    Returns
    -------
    TwoSampleResult
        AUC with its bootstrap interval, the sizes, per-class AUCs, the history, config and seed.

    Raises
    ------
    InputError
        Crops not uint8 ``H x W x 3`` of one size on both sides, fewer than 20 crops per side after
        balancing, labels that do not match the crops or classes present on one side only, a bad
        seed or setting.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> a = rng.integers(0, 256, (60, 16, 16, 3), dtype=np.uint8)
    >>> b = rng.integers(0, 256, (60, 16, 16, 3), dtype=np.uint8)
    >>> res = two_sample_auc(a, b, seed=0, epochs=1)
    >>> 0.0 <= res.auc <= 1.0
    True
    """
    t0 = time.perf_counter()
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InputError("seed", seed, "a whole number >= 0")
    if config is not None and not isinstance(config, TwoSampleConfig):
        raise InputError("config", type(config).__name__, "a TwoSampleConfig or None")
    cfg = config or TwoSampleConfig()
    if epochs is not None:
        cfg = TwoSampleConfig(**{**asdict(cfg), "epochs": epochs})
    cfg.check()
    xr, xs = _stack(real, "real"), _stack(synthetic, "synthetic")
    if xr.shape[1:] != xs.shape[1:]:
        raise InputError("synthetic", f"crops of {xs.shape[1:3]} px", f"the real crops' size {xr.shape[1:3]} px")
    labels = _labels(groups, len(xr), len(xs))
    y_real, y_syn = labels if labels is not None else (np.zeros(len(xr), object), np.zeros(len(xs), object))
    rng = np.random.default_rng(int(seed))
    parts = _balanced_splits(y_real, y_syn, cfg, rng)
    n_used = sum(len(parts[k][0]) for k in parts)
    if n_used < _MIN_PER_SIDE:
        raise InputError("real, synthetic", f"{n_used} crops per side after balancing",
                         f"at least {_MIN_PER_SIDE} per side")

    def take(split: str) -> tuple[np.ndarray, np.ndarray]:
        ir, is_ = parts[split]
        return np.concatenate([xr[ir], xs[is_]]), np.concatenate([np.zeros(len(ir)), np.ones(len(is_))])

    x_tr, y_tr = take("train")
    x_va, y_va = take("val")
    x_te, y_te = take("test")

    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(cfg.num_threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        torch.manual_seed(int(seed))
        net = _Net(cfg.widths)
        decay = [p for n, p in net.named_parameters() if p.ndim > 1]
        no_decay = [p for n, p in net.named_parameters() if p.ndim <= 1]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
        steps_per_epoch = max(1, math.ceil(len(x_tr) / cfg.batch_size))
        total_steps, warm = cfg.epochs * steps_per_epoch, steps_per_epoch

        def lr_at(step: int) -> float:
            if step < warm:
                return cfg.lr * (step + 1) / warm
            return 0.5 * cfg.lr * (1.0 + math.cos(math.pi * (step - warm) / max(1, total_steps - warm)))

        loss_fn = nn.BCEWithLogitsLoss()
        best_auc, best_epoch, best_state = -1.0, 0, None
        history: list[dict[str, float]] = []
        step = 0
        for epoch in range(1, cfg.epochs + 1):
            net.train()
            order = rng.permutation(len(x_tr))
            losses = []
            for s in range(0, len(order), cfg.batch_size):
                idx = order[s:s + cfg.batch_size]
                if len(idx) < 2:  # BatchNorm needs two samples
                    continue
                for g in opt.param_groups:
                    g["lr"] = lr_at(step)
                xb = _to_tensor(_augment(x_tr[idx], rng))
                loss = loss_fn(net(xb), torch.from_numpy(y_tr[idx]).float())
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
                step += 1
            sv = _scores(net, x_va)
            val_auc = auc_score(sv[y_va == 0], sv[y_va == 1])
            history.append({"epoch": epoch, "train_loss": round(float(np.mean(losses)), 5),
                            "val_auc": round(val_auc, 5)})
            if val_auc > best_auc:
                best_auc, best_epoch, best_state = val_auc, epoch, copy.deepcopy(net.state_dict())
            if progress:
                progress(epoch, cfg.epochs, val_auc)
        net.load_state_dict(best_state)
        st = _scores(net, x_te)
    finally:
        torch.set_num_threads(prev_threads)
        torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)

    neg, pos = st[y_te == 0], st[y_te == 1]
    auc = auc_score(neg, pos)
    boot = np.random.default_rng([int(seed), 1])
    ci = _bootstrap_ci(neg, pos, cfg.n_bootstrap, boot)
    per_class = None
    if labels is not None:
        per_class = {}
        cls_te = np.concatenate([y_real[parts["test"][0]], y_syn[parts["test"][1]]])
        for c in sorted(set(y_real)):
            n_c, p_c = st[(cls_te == c) & (y_te == 0)], st[(cls_te == c) & (y_te == 1)]
            ok = n_c.size >= 2 and p_c.size >= 2
            per_class[str(c)] = {
                "auc": round(auc_score(n_c, p_c), 4) if ok else None,
                "auc_ci95": [round(v, 4) for v in _bootstrap_ci(n_c, p_c, cfg.n_bootstrap, boot)] if ok else None,
                "n_test_real": int(n_c.size), "n_test_synthetic": int(p_c.size)}
    n_split = {k: {"real": len(a), "synthetic": len(b)} for k, (a, b) in parts.items()}
    notes = []
    if len(xr) != len(xs) or n_used < max(len(xr), len(xs)):
        notes.append(f"balanced to {n_used} crops per side (given {len(xr)} real, {len(xs)} synthetic)")
    return TwoSampleResult(
        auc=round(auc, 4), auc_ci95=(round(ci[0], 4), round(ci[1], 4)), n_real=n_used, n_synthetic=n_used,
        n_split=n_split, per_class=per_class, best_epoch=best_epoch, history=history,
        config={**asdict(cfg), "widths": list(cfg.widths), "crop_px": list(xr.shape[1:3]),
                "torch_version": torch.__version__},
        seed=int(seed), seconds=round(time.perf_counter() - t0, 2), notes=notes)
