"""Training engine: seeded, CPU-friendly, early-stopped fitting of a classifier on uint8 cell crops.

Inputs are plain: a sequence of ``(rgb_uint8 H x W x 3, label_index)`` pairs (already at the canonical
µm/px and input size) or a :class:`CellArrayDataset`; augmentation is any callable
``aug(rgb_uint8, rng) -> rgb_uint8``, run on the fly in the DataLoader workers.

Design choices (and why)
------------------------
- **AdamW** with decoupled weight decay (none on norms and biases), linear warm-up then **cosine**
  decay per step: robust defaults for short CPU runs, no tuning per data set.
- **Class imbalance by weighted loss**, not weighted sampling: weights ``w_c = (N / (K n_c))**power``
  (K = classes present in training). Every image is seen exactly once per epoch, which keeps epochs
  comparable, needs no replacement sampling (that repeats the few rare images many times per epoch and
  overfits them on small sets) and is exactly reproducible.
- **Early stopping** on a validation set: monitor ``"macro_f1"`` (default; ties broken by the lower
  validation loss) or ``"val_loss"``; the best epoch's weights are restored at the end.
- **Repeatability**: initial weights come from ``torch.manual_seed(seed)``; batch order from a torch
  Generator seeded by ``(seed, epoch)``; each augmentation call gets
  ``numpy.random.default_rng([seed, epoch, index])``. So results do not depend on the number of workers
  or on which worker handled which sample. Deterministic algorithms are switched on during the fit.
- **Threads**: the main process uses ``num_threads`` intra-op threads (default: all cores this process
  may run on); each worker is limited to one torch/BLAS thread, so workers plus trainer do not
  oversubscribe a 2-core machine. Workers start with ``fork`` (the augmentation callable need not be
  picklable) and persist across epochs.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from hemotwin.errors import InputError
from hemotwin.vision.models import HemoNet, ModelConfig, build_model

Augment = Callable[[np.ndarray, np.random.Generator], np.ndarray]
Progress = Callable[[int, int, dict[str, Any]], None]


class TrainConfig(BaseModel):
    """Hyper-parameters of :func:`fit`; stored in the model file's provenance.

    Parameters
    ----------
    epochs
        Maximum number of epochs.
    batch_size
        Training batch size.
    lr
        Peak learning rate of AdamW.
    weight_decay
        Decoupled weight decay (not applied to norm weights and biases).
    warmup_epochs
        Linear warm-up length (fraction of epochs allowed), then cosine decay to ``min_lr_ratio * lr``.
    label_smoothing
        Cross-entropy label smoothing (0 = off).
    class_balance
        ``"loss"``: inverse-frequency class weights in the loss; ``"none"``: plain loss.
    class_weight_power
        Exponent on the inverse-frequency weights (1 = full balancing, 0.5 = softened).
    monitor
        ``"macro_f1"`` (higher is better) or ``"val_loss"`` for early stopping.
    patience
        Epochs without improvement before stopping; ``None`` never stops early.
    min_delta
        Smallest change that counts as improvement.
    num_workers
        DataLoader worker processes for augmentation (0 = in the main process).
    num_threads
        torch intra-op threads in the main process; ``None`` = all cores available to the process.
    seed
        Seed of initial weights, batch order, dropout and augmentation.
    eval_batch_size
        Batch size of validation passes.
    """

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(default=30, ge=1)
    batch_size: int = Field(default=64, ge=1)
    lr: float = Field(default=3e-3, gt=0)
    weight_decay: float = Field(default=0.05, ge=0)
    warmup_epochs: float = Field(default=1.0, ge=0)
    min_lr_ratio: float = Field(default=0.01, ge=0, le=1)
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)
    class_balance: Literal["loss", "none"] = "loss"
    class_weight_power: float = Field(default=1.0, ge=0)
    monitor: Literal["macro_f1", "val_loss"] = "macro_f1"
    patience: int | None = Field(default=6, ge=1)
    min_delta: float = Field(default=0.0, ge=0)
    num_workers: int = Field(default=0, ge=0)
    num_threads: int | None = Field(default=None, ge=1)
    seed: int = 0
    eval_batch_size: int = Field(default=256, ge=1)


class CellArrayDataset(Dataset):
    """Cell crops held in memory as one uint8 array, with labels and an optional augmentation.

    Items are addressed by ``index`` or by ``(epoch, index)`` (what :func:`fit`'s sampler yields); the
    augmentation of item ``index`` in ``epoch`` always gets ``default_rng([seed, epoch, index])``.

    Parameters
    ----------
    images
        ``N x H x W x 3`` uint8 array, or a sequence of ``H x W x 3`` uint8 arrays of equal shape.
    labels
        ``N`` class indices.
    aug
        ``aug(rgb_uint8, rng) -> rgb_uint8`` of the same shape, or ``None``.
    seed
        Base seed of the augmentation streams.
    """

    def __init__(self, images: np.ndarray | Sequence[np.ndarray], labels: Sequence[int] | np.ndarray, *,
                 aug: Augment | None = None, seed: int = 0) -> None:
        self.images = _stack_images(images, "images")
        self.labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if len(self.labels) != len(self.images):
            raise InputError("labels", len(self.labels), f"one label per image ({len(self.images)})")
        if len(self.labels) and self.labels.min() < 0:
            raise InputError("labels", int(self.labels.min()), "class indices >= 0")
        self.aug = aug
        self.seed = int(seed)

    @classmethod
    def from_pairs(cls, pairs: Sequence[tuple[np.ndarray, int]], *, aug: Augment | None = None,
                   seed: int = 0) -> CellArrayDataset:
        """Build from ``(rgb_uint8, label_index)`` pairs."""
        if len(pairs) == 0:
            return cls(np.zeros((0, 1, 1, 3), np.uint8), [], aug=aug, seed=seed)
        return cls([p[0] for p in pairs], [int(p[1]) for p in pairs], aug=aug, seed=seed)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[np.ndarray, int]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        img = self.images[index]
        if self.aug is not None:
            rng = np.random.default_rng([self.seed, int(epoch), int(index)])
            out = self.aug(img.copy(), rng)  # a copy: an augmentation must never alter the stored data
            if not isinstance(out, np.ndarray) or out.shape != img.shape or out.dtype != np.uint8:
                raise InputError("augmentation output", getattr(out, "shape", type(out)),
                                 f"uint8 array of shape {img.shape}")
            img = out
        return np.ascontiguousarray(img), int(self.labels[index])


def _stack_images(images: np.ndarray | Sequence[np.ndarray], where: str) -> np.ndarray:
    if isinstance(images, np.ndarray):
        arr = images
    else:
        shapes = {np.shape(im) for im in images}
        if len(shapes) > 1:
            raise InputError(where, sorted(shapes)[:3], "images of one shape (resample to the input size first)")
        arr = np.stack(images) if len(images) else np.zeros((0, 1, 1, 3), np.uint8)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise InputError(where, f"{arr.dtype} array of shape {arr.shape}", "uint8 array N x H x W x 3 (RGB)")
    return arr


def as_dataset(data: CellArrayDataset | Sequence[tuple[np.ndarray, int]], *, aug: Augment | None = None,
               seed: int = 0) -> CellArrayDataset:
    """Wrap ``(rgb, label)`` pairs as a :class:`CellArrayDataset`; a dataset passes through unchanged."""
    if isinstance(data, CellArrayDataset):
        return data
    return CellArrayDataset.from_pairs(data, aug=aug, seed=seed)


class _EpochSampler(Sampler):
    """Yields ``(epoch, index)`` in an order fixed by ``(seed, epoch)``."""

    def __init__(self, n: int, seed: int, shuffle: bool) -> None:
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = range(self.n)
        return iter([(self.epoch, i) for i in order])


def _worker_init(_worker_id: int) -> None:
    # One thread per worker: the trainer owns the cores' BLAS/intra-op threads.
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except Exception:  # threadpoolctl missing or no BLAS found: nothing to limit
        pass


def class_weights(labels: Sequence[int] | np.ndarray, n_classes: int, *, power: float = 1.0) -> np.ndarray:
    """Inverse-frequency class weights ``(N / (K n_c))**power``; 1.0 for classes absent from ``labels``.

    With ``power=1`` every present class contributes the same total weight to the loss, and the
    sample-average weight is 1, so the loss scale (and a good learning rate) stays unchanged.

    Examples
    --------
    >>> class_weights([0] * 90 + [1] * 10, 2)
    array([0.5555556, 5.       ], dtype=float32)
    """
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=n_classes)[:n_classes].astype(np.float64)
    present = counts > 0
    w = np.ones(n_classes, dtype=np.float64)
    if present.any():
        w[present] = (len(labels) / (present.sum() * counts[present])) ** power
    return w.astype(np.float32)


def make_loss(weights: np.ndarray | None = None, label_smoothing: float = 0.0) -> nn.CrossEntropyLoss:
    """Cross-entropy with optional class weights (weighted mean: ``sum w_i l_i / sum w_i``)."""
    w = None if weights is None else torch.as_tensor(weights, dtype=torch.float32)
    return nn.CrossEntropyLoss(weight=w, label_smoothing=label_smoothing)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """``n_classes x n_classes`` counts, rows = true class, columns = predicted class."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return cm


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Macro-averaged F1 over the classes present in ``y_true`` or ``y_pred`` (as scikit-learn)."""
    cm = confusion_matrix(y_true, y_pred, n_classes)
    tp = np.diag(cm).astype(np.float64)
    support, predicted = cm.sum(1), cm.sum(0)
    used = (support + predicted) > 0
    if not used.any():
        return 0.0
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(f1[used].mean())


@torch.no_grad()
def predict_logits(model: nn.Module, data: CellArrayDataset, *, batch_size: int = 256) -> np.ndarray:
    """Logits of every item of ``data`` (no augmentation, eval mode), ``N x n_classes`` float32."""
    was_training = model.training
    model.eval()
    out = []
    try:
        for i in range(0, len(data), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(data.images[i:i + batch_size]))
            out.append(model(x).float().numpy())
    finally:
        model.train(was_training)
    n_classes = model.config.n_classes if hasattr(model, "config") else 0
    return np.concatenate(out) if out else np.zeros((0, n_classes), np.float32)


def evaluate(model: nn.Module, data: CellArrayDataset, *, batch_size: int = 256) -> dict[str, float]:
    """Validation metrics: ``loss`` (unweighted mean cross-entropy), ``accuracy``, ``macro_f1``."""
    logits = predict_logits(model, data, batch_size=batch_size)
    y = data.labels
    n_classes = logits.shape[1]
    loss = float(nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(y)).item())
    pred = logits.argmax(1)
    return {"loss": loss, "accuracy": float((pred == y).mean()), "macro_f1": macro_f1(y, pred, n_classes)}


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes
    ----------
    model
        The trained model, holding the **best** epoch's weights, in eval mode.
    history
        One dict per epoch: ``epoch``, ``lr``, ``train_loss``, ``train_images_per_s`` and, with a
        validation set, ``val_loss``, ``val_accuracy``, ``val_macro_f1``.
    best_epoch
        Index (0-based) of the epoch whose weights were kept.
    best_metrics
        That epoch's history entry.
    stopped_early
        Whether patience ran out before ``epochs``.
    class_weights
        Loss weights used (all ones with ``class_balance="none"``).
    seconds
        Wall time of the whole fit.
    train_images_per_s
        Median training throughput over epochs (includes waiting for augmentation).
    """

    model: HemoNet
    history: list[dict[str, float]]
    best_epoch: int
    best_metrics: dict[str, float]
    stopped_early: bool
    class_weights: list[float]
    config: TrainConfig
    seconds: float
    train_images_per_s: float
    extra: dict[str, Any] = field(default_factory=dict)


def _is_better(m: dict[str, float], best: dict[str, float] | None, monitor: str, min_delta: float) -> bool:
    if best is None:
        return True
    if monitor == "val_loss":
        return m["val_loss"] < best["val_loss"] - min_delta
    if m["val_macro_f1"] > best["val_macro_f1"] + min_delta:
        return True
    # An equal macro-F1 (common once a small set is learned) is broken by the lower loss.
    return m["val_macro_f1"] == best["val_macro_f1"] and m["val_loss"] < best["val_loss"]


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def fit(model: HemoNet | ModelConfig, train: CellArrayDataset | Sequence[tuple[np.ndarray, int]],
        val: CellArrayDataset | Sequence[tuple[np.ndarray, int]] | None = None, *,
        config: TrainConfig | None = None, aug: Augment | None = None,
        progress: Progress | None = None) -> FitResult:
    """Train a classifier with AdamW + warm-up/cosine, class-weighted loss and early stopping.

    Parameters
    ----------
    model
        A :class:`HemoNet` to train in place, or a :class:`ModelConfig` to build one from after
        seeding (the repeatable way: same seed, same initial weights).
    train
        ``(rgb_uint8, label_index)`` pairs or a :class:`CellArrayDataset` (its own ``aug`` is used).
    val
        Validation pairs/dataset (never augmented). Without it there is no early stopping and the
        last epoch is kept.
    config
        Hyper-parameters; defaults to ``TrainConfig()``.
    aug
        Augmentation for ``train`` when it is given as pairs.
    progress
        ``progress(done, total, info)`` after every batch (``info["phase"] == "train"``, running
        loss) and after every epoch (``info["phase"] == "epoch"``, the epoch's metrics). ``done`` and
        ``total`` count batches; on early stop a last call reports ``done == total``.

    Returns
    -------
    FitResult
        Best model, history, best epoch and metrics.
    """
    cfg = config or TrainConfig()
    t_start = time.perf_counter()
    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_det_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(cfg.num_threads or _available_cores())
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        torch.manual_seed(cfg.seed)
        if isinstance(model, ModelConfig):
            model = build_model(model)
        n_classes = model.config.n_classes
        train_ds = as_dataset(train, aug=aug, seed=cfg.seed)
        val_ds = None if val is None else as_dataset(val)
        if len(train_ds) == 0:
            raise InputError("train", 0, "at least one training image")
        for name, ds in (("train", train_ds), ("val", val_ds)):
            if ds is not None and len(ds) and ds.labels.max() >= n_classes:
                raise InputError(f"{name} labels", int(ds.labels.max()), f"class indices < n_classes={n_classes}")
        if val_ds is not None and len(val_ds) == 0:
            val_ds = None

        weights = (class_weights(train_ds.labels, n_classes, power=cfg.class_weight_power)
                   if cfg.class_balance == "loss" else np.ones(n_classes, np.float32))
        criterion = make_loss(weights, cfg.label_smoothing)

        decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
        no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)

        sampler = _EpochSampler(len(train_ds), cfg.seed, shuffle=True)
        bs = min(cfg.batch_size, len(train_ds))
        # BatchNorm cannot train on a last batch of one image; other norms can.
        drop_last = model.config.norm == "batch" and len(train_ds) % bs == 1 and len(train_ds) > bs
        loader_kw: dict[str, Any] = {}
        if cfg.num_workers > 0:
            import multiprocessing as mp

            ctx = "fork" if "fork" in mp.get_all_start_methods() else None
            loader_kw = {"num_workers": cfg.num_workers, "worker_init_fn": _worker_init,
                         "persistent_workers": True, "multiprocessing_context": ctx, "prefetch_factor": 4}
        loader = DataLoader(train_ds, batch_size=bs, sampler=sampler, drop_last=drop_last,
                            generator=torch.Generator().manual_seed(cfg.seed), **loader_kw)
        steps_per_epoch = len(loader)
        total_steps = cfg.epochs * steps_per_epoch
        warmup = round(cfg.warmup_epochs * steps_per_epoch)

        def lr_factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            t = (step - warmup) / max(1, total_steps - warmup)
            return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)

        history: list[dict[str, float]] = []
        best: dict[str, float] | None = None
        best_state: dict[str, torch.Tensor] | None = None
        best_epoch, since_best, stopped_early = 0, 0, False
        step = 0
        for epoch in range(cfg.epochs):
            sampler.epoch = epoch
            model.train()
            t0 = time.perf_counter()
            loss_sum, n_seen = 0.0, 0
            for x, y in loader:
                opt.zero_grad(set_to_none=True)
                loss = criterion(model(x), y)
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                loss_sum += float(loss.item()) * len(y)
                n_seen += len(y)
                if progress is not None:
                    progress(step, total_steps, {"phase": "train", "epoch": epoch, "loss": loss_sum / n_seen})
            dt = time.perf_counter() - t0
            m: dict[str, float] = {"epoch": epoch, "lr": float(opt.param_groups[0]["lr"]),
                                   "train_loss": loss_sum / max(1, n_seen),
                                   "train_images_per_s": n_seen / dt if dt > 0 else float("inf")}
            if val_ds is not None:
                v = evaluate(model, val_ds, batch_size=cfg.eval_batch_size)
                m.update({"val_loss": v["loss"], "val_accuracy": v["accuracy"], "val_macro_f1": v["macro_f1"]})
            history.append(m)
            if val_ds is None or _is_better(m, best, cfg.monitor, cfg.min_delta):
                best, best_epoch, since_best = m, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                since_best += 1
            if progress is not None:
                progress(step, total_steps, {"phase": "epoch", **m, "best_epoch": best_epoch})
            if val_ds is not None and cfg.patience is not None and since_best >= cfg.patience:
                stopped_early = epoch < cfg.epochs - 1
                break
        if stopped_early and progress is not None:
            progress(total_steps, total_steps, {"phase": "stopped", "best_epoch": best_epoch})
        del loader  # shuts the persistent workers down now, not at garbage collection
        assert best_state is not None and best is not None
        model.load_state_dict(best_state)
        model.eval()
        rates = [h["train_images_per_s"] for h in history]
        return FitResult(model=model, history=history, best_epoch=best_epoch, best_metrics=dict(best),
                         stopped_early=stopped_early, class_weights=[float(w) for w in weights], config=cfg,
                         seconds=time.perf_counter() - t_start, train_images_per_s=float(np.median(rates)))
    finally:
        torch.set_num_threads(prev_threads)
        torch.use_deterministic_algorithms(prev_det, warn_only=prev_det_warn)
