"""Training engine: seeded, CPU-friendly, early-stopped fitting of a classifier on uint8 cell crops.

Inputs are plain: a sequence of ``(rgb_uint8 H x W x 3, label_index)`` pairs (already at the canonical
µm/px and input size) or a :class:`CellArrayDataset`; augmentation is any callable
``aug(rgb_uint8, rng) -> rgb_uint8``, run on the fly in the DataLoader workers. Training images may be
stored at a *working* size (e.g. finer and larger than the model input) when the augmentation returns
the model's ``input_size``; validation images are never augmented and must be at the input size.

Labels are class indices or, for data labelled more coarsely than the model (a PBC "neutrophil" for a
model that tells NGS from NGB), **set-valued**: an ``N x K`` boolean target mask whose row is the set of
model classes the true label allows (:func:`target_masks` builds it from label names). A row's loss is
``-log sum_{c in S} softmax(z)_c`` (:func:`~hemotwin.vision.losses.set_nll`), which is the
cross-entropy when ``|S| = 1``: the model is free to split a coarse row's probability among its
allowed classes, and the finely labelled rows teach it how.

Design choices (and why)
------------------------
- **AdamW** with decoupled weight decay (none on norms and biases), linear warm-up then **cosine**
  decay per step: robust defaults for short CPU runs, no tuning per data set.
- **Class imbalance by weighted loss**, not weighted sampling: weights ``w_c = (N / (K n_c))**power``
  (K = classes present in training). Every image is seen exactly once per epoch, which keeps epochs
  comparable, needs no replacement sampling (that repeats the few rare images many times per epoch and
  overfits them on small sets) and is exactly reproducible. With target masks a row of set ``S`` counts
  ``1/|S|`` towards each class in ``S`` and is weighted by the mean of its classes' weights; with
  ``power=1`` the mean row weight is then still exactly 1 and each class still gets equal total weight.
- **Early stopping** on a validation set: monitor ``"macro_f1"`` (default; ties broken by the lower
  validation loss), ``"accuracy"`` (set accuracy: the arg-max falls inside the allowed set; same tie
  rule) or ``"val_loss"``; the best epoch's weights are restored at the end. With set-valued validation
  labels macro-F1 is computed over the singleton rows only (a coarse row has no single true class), so
  a validation set made only of coarse rows needs ``monitor="accuracy"`` or ``"val_loss"``.
- **Repeatability**: initial weights come from ``torch.manual_seed(seed)``; batch order from a torch
  Generator seeded by ``(seed, epoch)``; each augmentation call gets
  ``numpy.random.default_rng([seed, epoch, index])``. So results do not depend on the number of workers
  or on which worker handled which sample. Deterministic algorithms are switched on during the fit.
- **Distillation** (optional): with ``teachers`` (trained models of the same label set, typically a
  seed ensemble) each batch also pulls the student towards the teachers' mean probabilities on the
  *same augmented images* (Hinton et al., 2015): ``(1 - a) CE + a T^2 KL(p_teachers^T || p_student^T)``,
  rows weighted like the cross-entropy. The teachers see every re-imaged training sample, so what an
  ensemble knows about the re-imaged scanners reaches one model, at one model's cost.
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
from hemotwin.vision.losses import distillation_loss, make_loss, row_weights, set_nll, teacher_probabilities
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
        Cross-entropy label smoothing (0 = off). Applied to rows with one allowed class only: smoothing a
        set-valued row would move probability onto classes its label excludes.
    class_balance
        ``"loss"``: inverse-frequency class weights in the loss; ``"none"``: plain loss.
    class_weight_power
        Exponent on the inverse-frequency weights (1 = full balancing, 0.5 = softened).
    monitor
        ``"macro_f1"`` (higher is better; over singleton-labelled validation rows), ``"accuracy"`` (set
        accuracy over all validation rows, higher is better) or ``"val_loss"`` for early stopping.
    patience
        Epochs without improvement before stopping; ``None`` never stops early.
    min_delta
        Smallest change that counts as improvement.
    ema_epochs
        Time constant, in epochs, of an exponential moving average of the weights (0 = off). With it,
        validation, early stopping and the returned model use the averaged weights: averaging along
        the trajectory finds flatter minima, which transfer better to unseen scanners (SWAD, Cha et
        al., 2021) and vary less with the seed than one epoch's snapshot.
    distill_weight
        Weight ``a`` of the distillation term when :func:`fit` is given ``teachers`` (0 = off; must be
        > 0 with teachers, and needs them).
    distill_temperature
        Temperature ``T`` of both distributions in the distillation term (higher: softer).
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
    monitor: Literal["macro_f1", "accuracy", "val_loss"] = "macro_f1"
    patience: int | None = Field(default=6, ge=1)
    min_delta: float = Field(default=0.0, ge=0)
    ema_epochs: float = Field(default=0.0, ge=0)
    distill_weight: float = Field(default=0.0, ge=0, le=1)
    distill_temperature: float = Field(default=2.0, gt=0, le=20)
    num_workers: int = Field(default=0, ge=0)
    num_threads: int | None = Field(default=None, ge=1)
    seed: int = 0
    eval_batch_size: int = Field(default=256, ge=1)


class CellArrayDataset(Dataset):
    """Cell crops held in memory as one uint8 array, with labels and an optional augmentation.

    Items are addressed by ``index`` or by ``(epoch, index)`` (what :func:`fit`'s sampler yields); the
    augmentation of item ``index`` in ``epoch`` always gets ``default_rng([seed, epoch, index])``.
    An item is ``(rgb_uint8, target)``: the class index (int) for index labels, the boolean mask row
    (``K`` bools) for target masks.

    Parameters
    ----------
    images
        ``N x H x W x 3`` uint8 array, or a sequence of ``H x W x 3`` uint8 arrays of equal shape. With an
        augmentation this may be a working size other than the model input (see ``output_size``).
    labels
        ``N`` class indices, or an ``N x K`` **boolean** target mask (row ``i`` = the model classes the
        true label of image ``i`` allows, at least one; a fine label has exactly one True). Build masks
        from label names with :func:`target_masks`.
    aug
        ``aug(rgb_uint8, rng) -> rgb_uint8`` returning a uint8 ``H' x W' x 3`` array (any size), or
        ``None``. A sequence of augmentations together with ``aug_index`` gives rows different ones
        (e.g. real cells of the target scanner must not be re-imaged *as* that scanner again).
    aug_index
        With a sequence ``aug``: ``N`` indices into it, the augmentation of each row.
    seed
        Base seed of the augmentation streams.
    output_size
        ``(H, W)`` (or one int for a square) every item must have after augmentation; ``None`` accepts
        any size. :func:`fit` sets it to the model's ``input_size`` on its own copy of the dataset.

    Attributes
    ----------
    labels
        ``N`` int64 class indices; with target masks, the class of each singleton row and ``-1`` for
        rows that allow several classes.
    masks
        The ``N x K`` boolean target mask, or ``None`` for index labels.
    """

    def __init__(self, images: np.ndarray | Sequence[np.ndarray], labels: Sequence[int] | np.ndarray, *,
                 aug: Augment | Sequence[Augment] | None = None, seed: int = 0,
                 output_size: int | tuple[int, int] | None = None,
                 aug_index: Sequence[int] | np.ndarray | None = None) -> None:
        self.images = _stack_images(images, "images")
        lab = np.asarray(labels)
        self.masks: np.ndarray | None = None
        if lab.ndim == 2 and lab.dtype == np.bool_:
            if len(lab) != len(self.images):
                raise InputError("labels", f"{len(lab)} mask rows",
                                 f"one target mask row per image ({len(self.images)})")
            if lab.shape[1] == 0 or (len(lab) and not lab.any(1).all()):
                bad = int(np.flatnonzero(~lab.any(1))[0]) if lab.shape[1] else 0
                raise InputError("labels", f"target mask row {bad} allows no class",
                                 "every row of the target mask allowing at least one class")
            self.masks = np.ascontiguousarray(lab)
            self.labels = np.where(lab.sum(1) == 1, lab.argmax(1), -1).astype(np.int64)
        else:
            self.labels = np.asarray(labels, dtype=np.int64).reshape(-1)
            if len(self.labels) != len(self.images):
                raise InputError("labels", len(self.labels), f"one label per image ({len(self.images)})")
            if len(self.labels) and self.labels.min() < 0:
                raise InputError("labels", int(self.labels.min()), "class indices >= 0")
        self.aug = aug
        self.aug_index: np.ndarray | None = None
        if isinstance(aug, list | tuple):
            if not aug or not all(callable(a) for a in aug):
                raise InputError("aug", f"a sequence of {len(aug)}", "one or more augmentations (callables)")
            idx = None if aug_index is None else np.asarray(aug_index).reshape(-1)
            if (idx is None or len(idx) != len(self.images) or not np.issubdtype(idx.dtype, np.integer)
                    or (len(idx) and (idx.min() < 0 or idx.max() >= len(aug)))):
                raise InputError("aug_index", "missing" if idx is None else f"{len(idx)} values",
                                 f"one index in 0..{len(aug) - 1} per image ({len(self.images)}) with a sequence "
                                 "of augmentations")
            self.aug_index = idx.astype(np.int64)
        elif aug_index is not None:
            raise InputError("aug_index", "given", "a sequence of augmentations (aug=[...]) to index into")
        self.seed = int(seed)
        self.output_size = _as_size(output_size)

    @classmethod
    def from_pairs(cls, pairs: Sequence[tuple[np.ndarray, int | np.ndarray]], *, aug: Augment | None = None,
                   seed: int = 0) -> CellArrayDataset:
        """Build from ``(rgb_uint8, label_index)`` or ``(rgb_uint8, bool_mask_row)`` pairs."""
        if len(pairs) == 0:
            return cls(np.zeros((0, 1, 1, 3), np.uint8), [], aug=aug, seed=seed)
        targets = [p[1] for p in pairs]
        if all(isinstance(t, np.ndarray) and t.ndim == 1 and t.dtype == np.bool_ for t in targets):
            return cls([p[0] for p in pairs], np.stack(targets), aug=aug, seed=seed)
        return cls([p[0] for p in pairs], [int(t) for t in targets], aug=aug, seed=seed)

    @property
    def set_valued(self) -> bool:
        """Whether the labels are target masks."""
        return self.masks is not None

    def target_mask(self, n_classes: int) -> np.ndarray:
        """The ``N x n_classes`` boolean target mask (one-hot rows for index labels)."""
        if self.masks is not None:
            if self.masks.shape[1] != n_classes:
                raise InputError("labels", f"target masks of {self.masks.shape[1]} classes",
                                 f"N x n_classes={n_classes} boolean masks")
            return self.masks
        if len(self.labels) and self.labels.max() >= n_classes:
            raise InputError("labels", int(self.labels.max()), f"class indices < n_classes={n_classes}")
        out = np.zeros((len(self.labels), n_classes), dtype=bool)
        out[np.arange(len(self.labels)), self.labels] = True
        return out

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[np.ndarray, int | np.ndarray]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        img = self.images[index]
        if self.aug is not None:
            rng = np.random.default_rng([self.seed, int(epoch), int(index)])
            aug = self.aug if self.aug_index is None else self.aug[self.aug_index[index]]
            out = aug(img.copy(), rng)  # a copy: an augmentation must never alter the stored data
            if (not isinstance(out, np.ndarray) or out.ndim != 3 or out.shape[-1] != 3
                    or out.dtype != np.uint8):
                raise InputError("augmentation output",
                                 f"{getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}".strip(),
                                 "a uint8 array H x W x 3 (RGB)")
            img = out
        if self.output_size is not None and img.shape[:2] != self.output_size:
            h, w = self.output_size
            what = "augmentation output" if self.aug is not None else "images"
            how = ("have the augmentation crop/resample to it" if self.aug is not None
                   else "store images at that size or give an augmentation that returns it")
            raise InputError(what, f"{img.shape[0]}x{img.shape[1]} image (item {int(index)})",
                             f"the model input size {h}x{w}; {how}")
        target = self.masks[index] if self.masks is not None else int(self.labels[index])
        return np.ascontiguousarray(img), target


def _as_size(size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int | np.integer):
        return (int(size), int(size))
    h, w = size
    return (int(h), int(w))


def target_masks(labels: Sequence[str], model_labels: Sequence[str]) -> np.ndarray:
    """Boolean target masks (``len(labels) x len(model_labels)``) from label names.

    Each data label (a class code such as ``"NGS"``, a group name such as ``"neutrophil"`` or ``"ig"``,
    or any synonym :func:`hemotwin.taxonomy.resolve_label` knows) allows the model classes that are the
    label itself or descend from it in :data:`hemotwin.taxonomy.PARENT` (``"ig"`` -> PMO, PMB, MYB, MMZ).
    A label finer than every matching model class (``"NGS"`` for a model with ``"neutrophil"``) allows
    its nearest ancestor among the model labels instead.

    Parameters
    ----------
    labels
        One label name per image.
    model_labels
        The model's classes, in output-column order.

    Returns
    -------
    ndarray
        ``N x K`` bool; pass it as ``labels`` to :class:`CellArrayDataset`.

    Raises
    ------
    InputError
        A label that is unknown or maps to no model class (e.g. ``"platelet"`` for the 15 Matek
        codes); the message names the label and the model labels.

    Examples
    --------
    >>> target_masks(["NGS", "neutrophil"], ["NGB", "NGS", "LYT"]).astype(int).tolist()
    [[0, 1, 0], [1, 1, 0]]
    """
    from hemotwin.taxonomy import ancestors, resolve_label

    model = [resolve_label(m, where="model_labels") for m in model_labels]
    col = {m: j for j, m in enumerate(model)}
    rows: dict[str, np.ndarray] = {}
    out = np.zeros((len(labels), len(model)), dtype=bool)
    for i, lab in enumerate(labels):
        row = rows.get(lab)
        if row is None:
            canon = resolve_label(lab, where="labels")
            hits = [j for j, m in enumerate(model) if canon in ancestors(m)]
            if not hits:  # finer than the model: its nearest ancestor the model has
                hits = [col[a] for a in ancestors(canon)[1:] if a in col][:1]
            if not hits:
                raise InputError("labels", lab, "a label that is, contains or belongs to one of the model "
                                 f"labels ({', '.join(model_labels)})")
            row = np.zeros(len(model), dtype=bool)
            row[hits] = True
            rows[lab] = row
        out[i] = row
    return out


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

    ``labels`` may also be an ``N x n_classes`` boolean target mask: a row allowing the set ``S`` then
    counts ``1/|S|`` towards each class of ``S`` (a "neutrophil" row is half an NGS, half an NGB), and
    :class:`~hemotwin.vision.losses.SetCrossEntropyLoss` weights the row by the mean of its classes'
    weights. With ``power=1`` the average row weight is still exactly 1 (``sum_i mean_{S_i} w = sum_c n_c w_c = N``).

    Examples
    --------
    >>> class_weights([0] * 90 + [1] * 10, 2)
    array([0.5555556, 5.       ], dtype=float32)
    """
    arr = np.asarray(labels)
    if arr.ndim == 2 and arr.dtype == np.bool_:
        if arr.shape[1] != n_classes:
            raise InputError("labels", f"target masks of {arr.shape[1]} classes", f"N x n_classes={n_classes} masks")
        sizes = np.maximum(arr.sum(1, keepdims=True), 1)
        counts = (arr / sizes).sum(0).astype(np.float64)
    else:
        arr = arr.astype(np.int64).reshape(-1)
        counts = np.bincount(arr, minlength=n_classes)[:n_classes].astype(np.float64)
    present = counts > 0
    w = np.ones(n_classes, dtype=np.float64)
    if present.any():
        w[present] = (len(arr) / (present.sum() * counts[present])) ** power
    return w.astype(np.float32)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Macro-averaged F1 over the classes present in ``y_true`` or ``y_pred`` (as scikit-learn)."""
    from sklearn.metrics import confusion_matrix

    if len(y_true) == 0:
        return 0.0  # no class is present (scikit-learn refuses an empty input)
    cm = confusion_matrix(np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64), labels=np.arange(n_classes))
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
    """Validation metrics (images are used as stored: no augmentation).

    Returns ``loss`` (unweighted mean cross-entropy; with target masks the mean of
    :func:`~hemotwin.vision.losses.set_nll`),
    ``accuracy`` (fraction of rows whose arg-max is an allowed class: the plain accuracy for index
    labels, the *set accuracy* for masks) and ``macro_f1`` (over the rows with one allowed class, i.e.
    all rows for index labels; NaN when there is none: a coarse row has no single true class to score).
    """
    logits = predict_logits(model, data, batch_size=batch_size)
    n_classes = logits.shape[1]
    pred = logits.argmax(1)
    if data.masks is None:
        y = data.labels
        loss = float(nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(y)).item())
        return {"loss": loss, "accuracy": float((pred == y).mean()), "macro_f1": macro_f1(y, pred, n_classes)}
    mask = data.target_mask(n_classes)
    loss = float(set_nll(torch.from_numpy(logits), torch.from_numpy(mask)).mean().item())
    single = data.labels >= 0
    f1 = macro_f1(data.labels[single], pred[single], n_classes) if single.any() else float("nan")
    return {"loss": loss, "accuracy": float(mask[np.arange(len(pred)), pred].mean()), "macro_f1": f1}


class _WeightAverage:
    """Exponential moving average of a model's weights (and buffers), ``tau`` steps time constant."""

    def __init__(self, model: nn.Module, tau_steps: float) -> None:
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.decay = math.exp(-1.0 / max(tau_steps, 1.0))
        self.n = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.n += 1
        # Until n reaches the time constant this is the plain mean of the steps so far, so the random
        # initial weights never linger in it; then it forgets exponentially.
        d = min(self.decay, (self.n - 1.0) / self.n)
        for avg, cur in zip(self.model.state_dict().values(), model.state_dict().values(), strict=True):
            if avg.dtype.is_floating_point:
                avg.lerp_(cur, 1.0 - d)
            else:
                avg.copy_(cur)


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes
    ----------
    model
        The trained model, holding the **best** epoch's weights, in eval mode.
    history
        One dict per epoch: ``epoch``, ``lr``, ``train_loss``, ``train_images_per_s`` and, with a
        validation set, ``val_loss``, ``val_accuracy``, ``val_macro_f1`` (see :func:`evaluate`: with
        target masks the accuracy is the set accuracy and macro-F1 covers singleton rows only).
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
    key = f"val_{monitor}"  # val_macro_f1 or val_accuracy: higher is better
    if m[key] > best[key] + min_delta:
        return True
    # An equal score (common once a small set is learned) is broken by the lower loss.
    return m[key] == best[key] and m["val_loss"] < best["val_loss"]


def available_cores() -> int:
    """Cores this process may run on (CPU affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def fit(model: HemoNet | ModelConfig, train: CellArrayDataset | Sequence[tuple[np.ndarray, int]],
        val: CellArrayDataset | Sequence[tuple[np.ndarray, int]] | None = None, *,
        config: TrainConfig | None = None, aug: Augment | None = None,
        progress: Progress | None = None, teachers: Sequence[nn.Module] | None = None) -> FitResult:
    """Train a classifier with AdamW + warm-up/cosine, class-weighted loss and early stopping.

    Parameters
    ----------
    model
        A :class:`HemoNet` to train in place, or a :class:`ModelConfig` to build one from after
        seeding (the repeatable way: same seed, same initial weights).
    train
        ``(rgb_uint8, label_index)`` pairs or a :class:`CellArrayDataset` (its own ``aug`` is used);
        labels may be boolean target masks (set-valued; see :func:`target_masks`). Images may be stored
        at any size when an augmentation returns the model's ``input_size`` (checked per item);
        without one they must be at the input size.
    val
        Validation pairs/dataset (never augmented, so at the model's input size; index labels or
        masks). Without it there is no early stopping and the last epoch is kept.
    config
        Hyper-parameters; defaults to ``TrainConfig()``.
    aug
        Augmentation for ``train`` when it is given as pairs.
    progress
        ``progress(done, total, info)`` after every batch (``info["phase"] == "train"``, running
        loss) and after every epoch (``info["phase"] == "epoch"``, the epoch's metrics). ``done`` and
        ``total`` count batches; on early stop a last call reports ``done == total``.
    teachers
        Trained models with the same outputs (classes, in order) and input, for distillation with
        ``config.distill_weight``; they are run in eval mode on each augmented batch and never changed.

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
    torch.set_num_threads(cfg.num_threads or available_cores())
    torch.use_deterministic_algorithms(True, warn_only=True)
    teachers = list(teachers or [])
    teacher_modes = [t.training for t in teachers]  # restored afterwards: the caller's models are not ours
    try:
        torch.manual_seed(cfg.seed)
        if isinstance(model, ModelConfig):
            model = build_model(model)
        n_classes = model.config.n_classes
        if teachers and cfg.distill_weight <= 0:
            raise InputError("distill_weight", cfg.distill_weight, "a weight in (0, 1] when teachers are given")
        if cfg.distill_weight > 0 and not teachers:
            raise InputError("teachers", "none", f"one or more teacher models for distill_weight={cfg.distill_weight}")
        for t in teachers:
            t.eval()
        size = (model.config.input_size, model.config.input_size)
        # A shallow copy: fit's output-size check must not change the caller's dataset.
        train_ds = copy.copy(as_dataset(train, aug=aug, seed=cfg.seed))
        train_ds.output_size = size
        val_ds = None if val is None else as_dataset(val)
        if len(train_ds) == 0:
            raise InputError("train", 0, "at least one training image")
        for name, ds in (("train", train_ds), ("val", val_ds)):
            if ds is None or not len(ds):
                continue
            if ds.masks is not None and ds.masks.shape[1] != n_classes:
                raise InputError(f"{name} labels", f"target masks of {ds.masks.shape[1]} classes",
                                 f"N x n_classes={n_classes} boolean masks")
            if ds.labels.max() >= n_classes:
                raise InputError(f"{name} labels", int(ds.labels.max()), f"class indices < n_classes={n_classes}")
            stored = tuple(ds.images.shape[1:3])
            if (name == "val" or ds.aug is None) and stored != size:
                how = ("validation images are not augmented" if name == "val"
                       else "without an augmentation the stored images are used as they are")
                raise InputError(f"{name} images", f"{stored[0]}x{stored[1]} images",
                                 f"the model input size {size[0]}x{size[1]} ({how})")
        if train_ds.aug is not None and cfg.num_workers > 0:
            # Probe one item here: an InputError raised in a DataLoader worker reaches the caller as a
            # RuntimeError, so a wrong output size or dtype is best reported before the workers start.
            # (One item per augmentation when rows have different ones.)
            firsts = [0] if train_ds.aug_index is None else np.unique(train_ds.aug_index, return_index=True)[1]
            for i in firsts:
                train_ds[(0, int(i))]
        if val_ds is not None and len(val_ds) == 0:
            val_ds = None
        if val_ds is not None and cfg.monitor == "macro_f1" and not (val_ds.labels >= 0).any():
            raise InputError("monitor", cfg.monitor, "'accuracy' or 'val_loss': every validation row is "
                             "set-valued, so there is no singleton row to compute macro-F1 on")

        labels_for_weights = train_ds.masks if train_ds.masks is not None else train_ds.labels
        weights = (class_weights(labels_for_weights, n_classes, power=cfg.class_weight_power)
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

        ema = _WeightAverage(model, cfg.ema_epochs * steps_per_epoch) if cfg.ema_epochs > 0 else None
        scored = model if ema is None else ema.model  # what validation sees and what is kept

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
                logits = model(x)
                loss = criterion(logits, y)
                if teachers:
                    tp = teacher_probabilities(teachers, x, temperature=cfg.distill_temperature)
                    kd = distillation_loss(logits, tp, temperature=cfg.distill_temperature,
                                           weights=row_weights(y, criterion.weight, n_classes))
                    loss = (1.0 - cfg.distill_weight) * loss + cfg.distill_weight * kd
                loss.backward()
                opt.step()
                sched.step()
                if ema is not None:
                    ema.update(model)
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
                v = evaluate(scored, val_ds, batch_size=cfg.eval_batch_size)
                m.update({"val_loss": v["loss"], "val_accuracy": v["accuracy"], "val_macro_f1": v["macro_f1"]})
            history.append(m)
            if val_ds is None or _is_better(m, best, cfg.monitor, cfg.min_delta):
                best, best_epoch, since_best = m, epoch, 0
                best_state = copy.deepcopy(scored.state_dict())
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
        for t, was_training in zip(teachers, teacher_modes, strict=True):
            t.train(was_training)
        torch.set_num_threads(prev_threads)
        torch.use_deterministic_algorithms(prev_det, warn_only=prev_det_warn)
