"""From folders of cells to a trained, evaluated model and back: the workflows behind the CLI.

Geometry. The model sees ``input_size`` pixels at ``um_per_px`` (default 112 px at 0.225 µm/px,
a 25 µm field). Training images are held at a *working* resolution twice as fine and 15 %
wider, so that re-imaging through a coarser scanner has real detail to lose and rotations never
expose an edge; every augmentation ends by bringing the image to the model's geometry.

Pixel size of the inputs, in order of preference: the data set's manifest, the image's own
metadata, the user's ``um_per_px`` option, an estimate from red cells over the data set
(:func:`~hemotwin.vision.datasets.estimate_dataset_um_per_px`). The source is recorded for every
image and reported.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from hemotwin import taxonomy
from hemotwin.errors import HemotwinError, InputError
from hemotwin.io.images import read_image
from hemotwin.vision.augment import Augment, BoxCrop, ColorJitter, Compose, Geometric, ScaleJitter
from hemotwin.vision.datasets import Dataset, _centre, estimate_dataset_um_per_px, load_dataset, to_canonical

Progress = Callable[[int, int], None]

WORK_FACTOR = 2.0  #: working pixels are this much finer than the model's
WORK_MARGIN = 1.15  #: and the working field this much wider

#: Memory each augmentation process may spend remembering the unmixing of training crops
#: (:meth:`~hemotwin.twin.reimage.StainBasis.memoize`): ~0.8 MB a working crop, so a 1,300-crop set.
UNMIX_CACHE_BYTES = 1 << 30

#: Scanner presets the twin augmentation re-images through (one drawn per sample).
TWIN_PROFILES: tuple[str, ...] = ("analyzer-100x", "wsi-40x", "wsi-20x", "phone-40x")


@dataclass(frozen=True)
class Geometry:
    """The model's input geometry and the working geometry derived from it."""

    um_per_px: float = 0.225
    input_size: int = 112

    @property
    def work_um_per_px(self) -> float:
        return self.um_per_px / WORK_FACTOR

    @property
    def work_size(self) -> int:
        n = round(self.input_size * WORK_FACTOR * WORK_MARGIN)
        return n + (n % 2)


# ------------------------------------------------------------------------------------ images


@dataclass
class Prepared:
    """Images brought to one geometry, with what happened to each input."""

    images: np.ndarray  #: N x S x S x 3 uint8
    kept: list[int]  #: indices into the data set of the images that were read
    um_per_px: list[float]
    um_source: list[str]
    failures: list[dict[str, str]] = field(default_factory=list)


def _item_um(item, info_um: float | None, fallback: float | None) -> tuple[float | None, str]:
    if item.um_per_px is not None:
        return float(item.um_per_px), item.um_per_px_source
    if info_um is not None:
        return float(info_um), "image metadata"
    if fallback is not None:
        return float(fallback), "option"
    return None, "unknown"


def prepare(dataset: Dataset, geometry: Geometry, *, working: bool, um_per_px: float | None = None,
            progress: Progress | None = None) -> Prepared:
    """Read every item and bring it to the working (``working=True``) or model geometry.

    Unreadable images and images of unknown pixel size are listed in ``failures``; the rest go on.
    """
    target_um = geometry.work_um_per_px if working else geometry.um_per_px
    size = geometry.work_size if working else geometry.input_size
    out, kept, ums, srcs, failures = [], [], [], [], []
    for i, item in enumerate(dataset.items):
        try:
            rgb, info = read_image(item.path)
            um, src = _item_um(item, info.um_per_px, um_per_px)
            if um is None:
                raise InputError(str(item.path), "no pixel size",
                                 "µm/px from a manifest, image metadata, --um-per-px, or enough red cells to estimate")
            out.append(to_canonical(rgb, um_per_px=um, canonical_um_per_px=target_um, size=size))
            kept.append(i)
            ums.append(um)
            srcs.append(src)
        except (HemotwinError, OSError, ValueError) as exc:
            failures.append({"path": str(item.path), "error": str(exc)})
        if progress:
            progress(i + 1, len(dataset.items))
    images = np.stack(out) if out else np.zeros((0, size, size, 3), np.uint8)
    return Prepared(images, kept, ums, srcs, failures)


def to_model_geometry(work: np.ndarray, geometry: Geometry) -> np.ndarray:
    """A working-resolution image brought to the model's input geometry."""
    return to_canonical(work, um_per_px=geometry.work_um_per_px, canonical_um_per_px=geometry.um_per_px,
                        size=geometry.input_size)


# ------------------------------------------------------------------------------ augmentation


@lru_cache(maxsize=256)
def _zoom_operator(n: int, zoomed: int, geometry: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """One axis of "zoom a working crop of ``n`` px to ``zoomed`` px and centre it in ``n``, then
    bring it to the model grid" as one ``input_size x n`` matrix, and the share (``input_size``)
    of each output pixel that comes from the crop rather than from the padding."""
    from hemotwin.twin.resample import resample_weights

    def placement(n_in: int, n_out: int) -> np.ndarray:  # centre crop or pad (padding rows stay zero)
        src, dst, length = _centre(n_in, n_out)
        out = np.zeros((n_out, n_in), np.float32)
        out[np.arange(dst, dst + length), np.arange(src, src + length)] = 1.0
        return out

    zoom_place = placement(zoomed, n)
    m = max(1, round(n * geometry.work_um_per_px / geometry.um_per_px))
    b = placement(m, geometry.input_size) @ resample_weights(n, m)
    k, share = b @ zoom_place @ resample_weights(n, zoomed), b @ zoom_place.sum(axis=1)
    k.setflags(write=False)
    share.setflags(write=False)
    return k, share


def zoom_to_model(work: np.ndarray, geometry: Geometry, zoom: float) -> np.ndarray:
    """:class:`ScaleJitter`'s zoom of a square working crop followed by :func:`to_model_geometry`,
    as one linear map per axis (the two resamplings composed): the same image to within one
    grey level (the intermediate is not rounded to 8 bits), at a fraction of the cost."""
    from hemotwin.twin.resample import resample_weights

    n = work.shape[0]
    if work.shape[1] != n or geometry.input_size > round(n * geometry.work_um_per_px / geometry.um_per_px):
        # Not the training layout (square, and wide enough for the model field): do it in two steps.
        return to_model_geometry(ScaleJitter.zoom(work, zoom), geometry)
    zoomed = max(1, round(n * zoom))
    k, share = _zoom_operator(n, zoomed, geometry)
    f = work.astype(np.float32) / 255.0
    out = np.einsum("ij,jlc,kl->ikc", k, f, k, optimize=True)
    if zoomed < n:
        # Zoomed out: the padding is the zoomed crop's border colour, as to_canonical pads; only
        # the zoomed crop's outer rows and columns are needed for it.
        r = resample_weights(n, zoomed)
        rows = np.einsum("ij,jlc,kl->ikc", r[[0, -1]], f, r, optimize=True)  # 2 x zoomed x 3
        cols = np.einsum("ij,jlc,kl->ikc", r, f, r[[0, -1]], optimize=True)  # zoomed x 2 x 3
        bg = np.median(np.concatenate([rows[0], rows[1], cols[:, 0], cols[:, 1]]), axis=0)
        out += bg.astype(np.float32) * (1.0 - share[:, None] * share[None, :])[..., None]
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


@dataclass
class _ToModel:
    geometry: Geometry
    zoom: ScaleJitter | None = None

    def __call__(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.zoom is None:
            return to_model_geometry(rgb, self.geometry)
        return zoom_to_model(rgb, self.geometry, self.zoom.draw(rng))


@dataclass
class _TwinReimage:
    """Re-image through a random scanner preset's neighbour; sometimes keep the original scanner."""

    reimagers: list
    geometry: Geometry
    p_reimage: float
    target_style: Any = None  #: a fitted TargetStyle, or None
    p_target: float = 0.0
    zoom: ScaleJitter | None = None
    jitter: Augment | None = None  #: the colour jitter that follows (the baseline's)
    jitter_target: bool = True  #: also jitter the samples re-imaged as the target

    def __post_init__(self) -> None:
        self._to_model = _ToModel(self.geometry, self.zoom)

    def __call__(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        u = rng.random()
        work_um = self.geometry.work_um_per_px
        to_model = self._to_model
        if self.target_style is not None and u < self.p_target:
            # The target style works on the stored crop (so its unmixing is remembered across
            # epochs) and the zoom follows: both act locally, so the order barely matters.
            out = to_model(self.target_style(rgb, work_um, rng), rng)
            return self.jitter(out, rng) if self.jitter is not None and self.jitter_target else out
        if u >= self.p_target + (1.0 - self.p_target) * self.p_reimage:
            out = to_model(rgb, rng)
        else:
            r = self.reimagers[int(rng.integers(len(self.reimagers)))]
            # The preset re-imaging resamples to the model grid itself: the zoom rides on that resampling.
            out = r(rgb, work_um, rng) if self.zoom is None else r(rgb, work_um, rng, zoom=self.zoom.draw(rng))
        return self.jitter(out, rng) if self.jitter is not None else out


def make_augment(mode: str, geometry: Geometry, *, basis=None, strength: float = 0.3, p_reimage: float = 0.5,
                 profiles: Sequence[str] = TWIN_PROFILES, pool_size: int = 12, seed: int = 0,
                 target_style=None, p_target: float = 0.3, box_crop: float = 0.0,
                 scale_jitter: float = 1.0, jitter_target: bool = True) -> Augment:
    """The training augmentation of ``mode`` (``none``, ``color``, ``twin``): working -> model geometry.

    ``twin`` needs a fitted :class:`~hemotwin.twin.reimage.StainBasis` (the training images'
    stain vectors); with probability ``p_reimage`` a call re-images the crop through a randomised
    neighbour (``strength``) of one of ``profiles``, then applies the ``color`` jitter. The
    defaults (0.3, half the samples) measured best on BCCD (docs/benchmarks.md); strength 0.8 on
    80 % of the samples lowered accuracy. With a fitted
    :class:`~hemotwin.twin.target_style.TargetStyle` (``target_style``), a fraction ``p_target``
    of the calls re-image the crop as that target scanner instead, and the rest follow the rule
    above (0.3 measured best of 0.3 / 0.5 / 0.7 on BCCD, one seed each). ``box_crop``: in every
    mode, the fraction of samples cut to a box around the white cell first (:class:`BoxCrop`);
    ``scale_jitter`` > 1: every sample is then zoomed by up to that factor (:class:`ScaleJitter`,
    after any re-imaging as the target). ``jitter_target`` False spares the samples re-imaged as
    the target the colour jitter. Together with early stopping on validation cells rendered as the
    target too, the model then read the twin's rendering of the target better (PBC test cells so
    rendered: 94 / 76 % against 84 / 74 %) but real BCCD cells worse (-4 and -8 points, seeds 0 /
    1; docs/benchmarks.md), so the default keeps the jitter. The twin's unmixing of
    each training crop is remembered across epochs (:data:`UNMIX_CACHE_BYTES` per process),
    which does not change any result.
    """
    first: tuple = (BoxCrop(um_per_px=geometry.work_um_per_px, p=box_crop),) if box_crop > 0 else ()
    zoom = ScaleJitter(scale_jitter) if scale_jitter > 1.0 else None
    to_model = _ToModel(geometry, zoom)
    # Flips and rotations act on the model-sized image, after any re-imaging: the twin's optics are
    # isotropic, so the order does not matter physically, and the re-imaging then always sees the
    # stored orientation of a training image (which its unmixing cache relies on).
    if mode == "none":
        return Compose((*first, to_model, Geometric()))
    if mode == "color":
        return Compose((*first, to_model, Geometric(), ColorJitter()))
    if mode == "twin":
        if basis is None:
            raise InputError("augment", "twin", "a fitted StainBasis (basis=...)")
        import copy

        from hemotwin.twin.reimage import ReImager

        # Copies that remember their unmixings; the caller's objects are left as they were.
        basis = copy.copy(basis).memoize(UNMIX_CACHE_BYTES)
        if target_style is not None:
            target_style = copy.copy(target_style)
            target_style.source_ = copy.copy(target_style.source_).memoize(UNMIX_CACHE_BYTES)
        reimagers = [ReImager(basis, profile=p, strength=strength, pool_size=pool_size, pool_seed=seed + k,
                              out_um_per_px=geometry.um_per_px, out_size=geometry.input_size)
                     for k, p in enumerate(profiles)]
        # The physical re-imaging is followed by the same colour jitter as the baseline, so the
        # comparison measures what the twin adds on top of it.
        # (The jitter is pixel-wise or isotropic, so it commutes with the flips that follow.)
        return Compose((*first, _TwinReimage(reimagers, geometry, p_reimage, target_style,
                                             p_target if target_style is not None else 0.0, zoom,
                                             jitter=ColorJitter(), jitter_target=jitter_target),
                        Geometric()))
    raise InputError("--augment", mode, "one of none, color, twin")


# ------------------------------------------------------------------------------------ labels


def model_labels_for(datasets: Sequence[Dataset], spec: str | Sequence[str] = "auto") -> tuple[str, ...]:
    """The model's label set.

    ``auto``: the labels present, in canonical order, where any coarse (group) label lifts the
    fine codes that have that group to it (so ``neutrophil`` and ``NGS`` do not coexist); a named
    set (``wbc5``, ``pbc``, ``matek15``) or an explicit list is used as given.
    """
    if spec != "auto":
        return tuple(taxonomy.label_set(spec))
    present = {it.label for ds in datasets for it in ds.items}
    groups = {lab for lab in present if lab not in taxonomy.CLASS_CODES}
    out = set()
    for lab in present:
        if lab in taxonomy.CLASS_CODES:
            parents = [a for a in taxonomy.ancestors(lab) if a in groups]
            out.add(parents[0] if parents else lab)
        else:
            out.add(lab)
    order = list(taxonomy.canonical_labels())
    return tuple(sorted(out, key=order.index))


def map_items_to(dataset: Dataset, labels: Sequence[str]) -> tuple[Dataset, list[str]]:
    """Keep the items whose label has a counterpart among the model's ``labels``.

    Kept: labels equal to a model label; fine codes under a coarse model label (relabelled to
    it); coarse labels whose descendants include model labels (kept as set-valued targets).
    Others are dropped and listed.
    """
    labels = list(labels)
    keep_idx, new_items, notes = [], [], []
    for i, it in enumerate(dataset.items):
        lab = it.label
        anc = [a for a in taxonomy.ancestors(lab) if a in labels]
        if anc:
            keep_idx.append(i)
            new_items.append(it if anc[0] == lab else _relabel(it, anc[0]))
        elif any(lab in taxonomy.ancestors(m) for m in labels):
            keep_idx.append(i)  # coarse label: a set of model classes
            new_items.append(it)
        else:
            notes.append(f"{it.path}: label {lab!r} has no counterpart in the model's labels; skipped")
    sub = dataset.subset(keep_idx).with_items(new_items)
    return replace(sub, labels=_labels_of(new_items)), notes


def _labels_of(items) -> tuple[str, ...]:
    order = list(taxonomy.canonical_labels())
    return tuple(sorted({it.label for it in items}, key=order.index))


def _relabel(item, label: str):
    return replace(item, label=label)


def data_checksum(dataset: Dataset) -> str:
    """SHA-256 over the (relative path, label, file digest) of every item."""
    h = hashlib.sha256()
    for it in sorted(dataset.items, key=lambda x: str(x.path)):
        h.update(str(it.label).encode())
        h.update(hashlib.sha256(Path(it.path).read_bytes()).digest())
    return h.hexdigest()


def load_training_data(dirs: Sequence[str | Path], *, um_per_px: float | None = None
                       ) -> tuple[list[Dataset], list[str]]:
    """Load each data folder/manifest; fill unknown pixel sizes with a red-cell estimate."""
    out, notes = [], []
    for d in dirs:
        ds = load_dataset(d, um_per_px=um_per_px)
        if any(it.um_per_px is None for it in ds.items):
            ds, details = estimate_dataset_um_per_px(ds)
            notes.append(f"{d}: pixel size {details}")
        out.append(ds)
    return out, notes


def concat(datasets: Sequence[Dataset]) -> Dataset:
    """One data set holding the items of several (duplicate pairs re-indexed)."""
    items, pairs, skipped, notes, offset = [], [], [], [], 0
    for ds in datasets:
        items += ds.items
        pairs += [(a + offset, b + offset) for a, b in ds.duplicate_pairs]
        skipped += ds.skipped
        notes += ds.notes
        offset += len(ds.items)
    return Dataset(root=datasets[0].root, items=items, labels=_labels_of(items), skipped=skipped,
                   duplicate_pairs=pairs, notes=notes)


def predict_arrays(engine, images: np.ndarray) -> np.ndarray:
    """Probabilities for images already in the model geometry."""
    if len(images) == 0:
        return np.zeros((0, len(engine.labels)), np.float32)
    return np.asarray(engine.run(images))


def collapse_to(probs: np.ndarray, model_labels: Sequence[str], target: str | Sequence[str]
                ) -> tuple[np.ndarray, tuple[str, ...], np.ndarray]:
    """Model probabilities in another (coarser) label set, with the mass that has no counterpart."""
    target_labels = tuple(taxonomy.label_set(target))
    if tuple(model_labels) == target_labels:
        return probs, target_labels, np.zeros(len(probs))
    out, dropped = taxonomy.collapse(probs, list(model_labels), list(target_labels))
    return out, target_labels, dropped


def summary_of(prepared: Prepared) -> dict[str, Any]:
    srcs: dict[str, int] = {}
    for s in prepared.um_source:
        srcs[s] = srcs.get(s, 0) + 1
    return {"read": len(prepared.kept), "failed": len(prepared.failures), "um_per_px_sources": srcs,
            "um_per_px_median": float(np.median(prepared.um_per_px)) if prepared.um_per_px else None}


# ---------------------------------------------------------------------------------- workflows


def train_model(data: Sequence[str | Path], out: str | Path, *, labels: str | Sequence[str] = "auto",
                augment: str = "twin", epochs: int = 30, seed: int = 0, val_fraction: float = 0.15,
                um_per_px: float | None = None, geometry: Geometry = Geometry(), norm: str = "group",
                batch_size: int = 64, patience: int = 6, num_threads: int | None = None, num_workers: int = 0,
                twin_strength: float = 0.3, target: str | Path | None = None, target_um_per_px: float | None = None,
                p_target: float = 0.3, p_reimage: float | None = None, box_crop: float = 0.0,
                scale_jitter: float | None = None, ema_epochs: float = 0.0,
                teachers: Sequence[str | Path] | None = None, distill_weight: float | None = None,
                distill_temperature: float = 2.0, unlabelled: Sequence[str | Path] | None = None,
                unlabelled_um_per_px: float | None = None, pseudo_coverage: float = 0.9,
                overwrite: bool = False, progress: Callable | None = None,
                log: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Train a classifier on one or more data folders and save it as a ``.hemo`` model file.

    The validation split keeps near-duplicates together and drives early stopping; the file
    records labels, geometry, data checksums, seeds, augmentation (with the fitted stain basis)
    and the validation metrics. ``target`` (with ``augment="twin"``): a folder of unlabelled
    images from the scanner the model will be used on; a fraction ``p_target`` of the training
    samples is then re-imaged as that scanner (:class:`~hemotwin.twin.target_style.TargetStyle`).
    ``p_reimage``: the fraction of the other samples re-imaged through the randomised presets;
    by default 0.5 without a target and 0 with one (with a target the presets lowered both the
    target's and the training scanner's accuracy: docs/benchmarks.md). ``scale_jitter``: the
    largest zoom of a training cell (:class:`~hemotwin.vision.augment.ScaleJitter`); by default
    1.2 with a target (a second scanner's pixel size is an estimate; measured on BCCD) and 1 (off)
    without one. ``ema_epochs``: validate and keep a moving average of the weights with this time
    constant (:class:`~hemotwin.vision.train.TrainConfig`; 0 = the best epoch's own weights).
    ``teachers``: model files (a seed ensemble, same labels and input geometry as the model trained)
    whose mean probabilities on each augmented sample the model is also trained towards, with weight
    ``distill_weight`` (default 0.5 with teachers) at ``distill_temperature``: one model that has
    learnt what the ensemble knows, at one model's cost. ``unlabelled`` (with ``teachers``):
    folders of unlabelled cell crops from the scanner the model will be used on (pixel size
    ``unlabelled_um_per_px``, else ``target_um_per_px``, else the files' metadata). They join the
    training set with the teachers' prediction sets at ``pseudo_coverage`` as set-valued labels
    (:mod:`hemotwin.vision.pseudo`) and the colour jitter and zoom, never the re-imaging: they
    already are that scanner's images.
    """
    from hemotwin.vision.datasets import split
    from hemotwin.vision.modelfile import save_model
    from hemotwin.vision.models import ModelConfig
    from hemotwin.vision.train import CellArrayDataset, TrainConfig, fit, target_masks

    out = Path(out)
    if out.exists() and not overwrite:
        from hemotwin.errors import OutputExistsError

        raise OutputExistsError(out)
    if scale_jitter is not None and not (isinstance(scale_jitter, int | float) and 1.0 <= scale_jitter <= 2.0):
        raise InputError("--scale-jitter", scale_jitter, "a zoom factor between 1 (off) and 2")
    if not (isinstance(ema_epochs, int | float) and 0.0 <= ema_epochs <= epochs):
        raise InputError("--ema-epochs", ema_epochs, f"a time constant in epochs, 0 (off) to --epochs ({epochs})")
    if distill_weight is None:
        distill_weight = 0.5 if teachers else 0.0
    if teachers and not (isinstance(distill_weight, int | float) and 0.0 < distill_weight <= 1.0):
        raise InputError("--distill-weight", distill_weight, "a weight in (0, 1] with --teacher")
    if not teachers and distill_weight:
        raise InputError("--distill-weight", distill_weight, "--teacher model files to distil from")
    if not (isinstance(distill_temperature, int | float) and 0.0 < distill_temperature <= 20.0):
        raise InputError("--distill-temperature", distill_temperature, "a temperature in (0, 20]")
    if unlabelled and not teachers:
        raise InputError("--unlabelled", [str(u) for u in unlabelled],
                         "--teacher model files to label them (the teachers' prediction sets)")
    if isinstance(pseudo_coverage, bool) or not (isinstance(pseudo_coverage, int | float)
                                                 and 0.0 < pseudo_coverage <= 1.0):
        raise InputError("--pseudo-coverage", pseudo_coverage, "a probability in (0, 1]")
    datasets, notes = load_training_data(data, um_per_px=um_per_px)
    model_labels = model_labels_for(datasets, labels)
    teacher_models, teacher_info = load_teachers(teachers or [], model_labels, geometry)
    mapped = []
    for ds in datasets:
        m, dropped = map_items_to(ds, model_labels)
        notes += dropped[:20] + ([f"... {len(dropped) - 20} more skipped"] if len(dropped) > 20 else [])
        mapped.append(m)
    full = concat(mapped)
    if len(full.items) == 0:
        raise InputError("--data", [str(d) for d in data],
                         f"images whose labels map to the model's labels {model_labels}")
    parts = split(full, val_fraction=val_fraction, test_fraction=0.0, seed=seed)
    log(f"{len(parts.train.items)} training and {len(parts.val.items)} validation images; labels {list(model_labels)}")
    tr = prepare(parts.train, geometry, working=True, um_per_px=um_per_px)
    va = prepare(parts.val, geometry, working=False, um_per_px=um_per_px)
    y_tr = target_masks([parts.train.items[i].label for i in tr.kept], model_labels)
    y_va = target_masks([parts.val.items[i].label for i in va.kept], model_labels)

    if target is not None and augment != "twin":
        raise InputError("--target", str(target), "--augment twin (the target scanner is a twin re-imaging)")
    basis = style = None
    target_info: dict[str, Any] | None = None
    if augment == "twin":
        from hemotwin.twin.reimage import StainBasis

        rng = np.random.default_rng(seed)
        sample = tr.images[rng.choice(len(tr.images), size=min(64, len(tr.images)), replace=False)]
        basis = StainBasis().fit(list(sample))
        if target is not None:
            from hemotwin.twin.target_style import TargetStyle

            tgt, target_info = load_target_images(target, geometry, um_per_px=target_um_per_px, seed=seed)
            style = TargetStyle().fit(list(sample), list(tgt), source_um_per_px=geometry.work_um_per_px,
                                      target_um_per_px=geometry.work_um_per_px, seed=seed)
            log(f"target scanner from {target_info['n_images']} images of {target}: {style!r}")
            for f in target_info["failures"]:
                log(f"skipped target image {f['path']}: {f['error']}")
    if p_reimage is None:
        p_reimage = 0.0 if style is not None else 0.5
    if scale_jitter is None:
        scale_jitter = 1.2 if style is not None else 1.0

    aug = make_augment(augment, geometry, basis=basis, strength=twin_strength, seed=seed, target_style=style,
                       p_target=p_target, p_reimage=p_reimage, box_crop=box_crop, scale_jitter=scale_jitter)
    train_ds = CellArrayDataset(tr.images, y_tr, aug=aug, seed=seed)
    unlabelled_record: dict[str, Any] | None = None
    if unlabelled:
        from hemotwin.vision.pseudo import set_summary

        cells, infos = [], []
        for folder in unlabelled:
            imgs, info = load_target_images(folder, geometry, um_per_px=unlabelled_um_per_px or target_um_per_px,
                                            max_images=None, seed=seed, option="--unlabelled",
                                            um_option="--unlabelled-um-per-px")
            for f in info["failures"]:
                log(f"skipped unlabelled image {f['path']}: {f['error']}")
            cells.append(imgs)
            infos.append(info)
        cells_w = np.concatenate(cells)
        _, masks = teacher_prediction_sets(teacher_models, teacher_info,
                                           np.stack([to_model_geometry(c, geometry) for c in cells_w]),
                                           coverage=pseudo_coverage, num_threads=num_threads)
        summary = set_summary(masks, model_labels)
        log(f"{len(cells_w)} unlabelled cells labelled by the teachers: {summary['single_class']} with one class "
            f"({summary['single_class_by_label']}), mean set size {summary['mean_set_size']:.2f}")
        train_ds = with_unlabelled_cells(tr.images, y_tr, aug, cells_w, masks, augment=augment, geometry=geometry,
                                         box_crop=box_crop, scale_jitter=scale_jitter, seed=seed)
        unlabelled_record = {"folders": [{**{k: v for k, v in info.items() if k != "failures"},
                                          "failures": len(info["failures"])} for info in infos],
                             "coverage": pseudo_coverage, "prediction_sets": summary}
    # Macro-F1 needs fine validation labels; with coarse ones (PBC "neutrophil" for a 15-class
    # model) early stopping watches the set accuracy instead.
    monitor = "macro_f1" if len(y_va) and bool((y_va.sum(axis=1) == 1).all()) else "accuracy"
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed, patience=patience, num_threads=num_threads,
                      num_workers=num_workers, monitor=monitor, ema_epochs=ema_epochs,
                      distill_weight=distill_weight, distill_temperature=distill_temperature)
    mcfg = ModelConfig(n_classes=len(model_labels), input_size=geometry.input_size, norm=norm)
    res = fit(mcfg, train_ds, CellArrayDataset(va.images, y_va) if len(va.images) else None, config=cfg,
              progress=progress, teachers=teacher_models)
    checksums = {str(d): data_checksum(ds) for d, ds in zip(data, datasets, strict=True)}
    stain_reference = fit_stain_reference(tr.images, geometry, seed=seed, log=log)
    augmentation = {"mode": augment, "box_crop": box_crop, "scale_jitter": scale_jitter,
                    "twin_strength": twin_strength if augment == "twin" else None,
                    "p_reimage": p_reimage if augment == "twin" else None,
                    "twin_profiles": list(TWIN_PROFILES) if augment == "twin" else None,
                    "stain_basis": basis.to_dict() if basis is not None else None,
                    "target": None if style is None else {**target_info, "p_target": p_target,
                                                          "style": style.to_dict()}}
    save_model(out, res.model, labels=list(model_labels), um_per_px=geometry.um_per_px, data_checksums=checksums,
               seed=seed, augmentation=augmentation, metrics=res.best_metrics,
               training_config=res.config.model_dump(mode="json"), overwrite=overwrite,
               extra={"data": [str(d) for d in data], "notes": notes, "stain_reference": stain_reference,
                      "train_read": summary_of(tr), "teachers": teacher_info,
                      "unlabelled": unlabelled_record,
                      "val_read": summary_of(va), "best_epoch": res.best_epoch,
                      "train_images_per_s": res.train_images_per_s})
    return {"model": str(out), "labels": list(model_labels), "best_epoch": res.best_epoch,
            "best_metrics": res.best_metrics, "seconds": res.seconds, "train_images_per_s": res.train_images_per_s,
            "n_train": len(tr.kept), "n_val": len(va.kept), "n_unlabelled": len(train_ds) - len(tr.kept),
            "failures": tr.failures + va.failures, "notes": notes,
            "history": res.history}


def with_unlabelled_cells(images: np.ndarray, masks: np.ndarray, aug: Augment, cells: np.ndarray,
                          cell_masks: np.ndarray, *, augment: str, geometry: Geometry, box_crop: float = 0.0,
                          scale_jitter: float = 1.0, seed: int = 0) -> Any:
    """The training set plus a target scanner's unlabelled ``cells`` (working geometry) with set labels.

    The real cells get the colour jitter and zoom only (``augment`` other than ``twin``: the same
    augmentation as the rest): re-imaging them *as* their own scanner, or through presets, would move
    them away from the look they are there to teach.
    """
    from hemotwin.vision.train import CellArrayDataset

    cell_aug = aug if augment != "twin" else make_augment("color", geometry, box_crop=box_crop,
                                                          scale_jitter=scale_jitter)
    return CellArrayDataset(np.concatenate([images, cells]), np.concatenate([masks, cell_masks]),
                            aug=[aug, cell_aug], seed=seed, aug_index=np.repeat([0, 1], [len(images), len(cells)]))


def load_teachers(paths: Sequence[str | Path], labels: Sequence[str], geometry: Geometry
                  ) -> tuple[list[Any], list[dict[str, Any]]]:
    """The torch networks of teacher model files, checked against the student's labels and geometry.

    Returns the networks and, for provenance, each file's path, SHA-256 and seed.
    """
    from hemotwin.io.provenance import file_sha256
    from hemotwin.vision.modelfile import load_model

    nets, info = [], []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise InputError("--teacher", str(p), "an existing .hemo model file")
        loaded = load_model(p)
        if list(loaded.labels) != list(labels):
            raise InputError("--teacher", str(p), f"a model of the labels being trained, in order: {list(labels)} "
                             f"(it has {list(loaded.labels)})")
        if (loaded.preprocessing.um_per_px != geometry.um_per_px
                or loaded.preprocessing.input_size != geometry.input_size):
            raise InputError("--teacher", str(p), f"the input geometry being trained ({geometry.um_per_px} µm/px, "
                             f"{geometry.input_size} px; it has {loaded.preprocessing.um_per_px} µm/px, "
                             f"{loaded.preprocessing.input_size} px)")
        nets.append(loaded.model)
        seed = (loaded.provenance.get("seeds") or {}).get("seed")
        aug = loaded.provenance.get("augmentation")
        zoom = aug.get("scale_jitter") if isinstance(aug, dict) else None
        info.append({"path": str(p), "sha256": file_sha256(p), "seed": seed,
                     "scale_jitter": float(zoom) if isinstance(zoom, int | float) and zoom > 1.0 else 1.0})
    return nets, info


def teacher_prediction_sets(nets: Sequence[Any], info: Sequence[dict[str, Any]], images: np.ndarray, *,
                            coverage: float, num_threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Teachers' mean probabilities on model-sized ``images`` and their prediction sets at ``coverage``.

    Each teacher answers averaged over its own training zoom (``1/F, 1, F``; see
    :func:`~hemotwin.vision.infer.scale_tta_zooms`), the scoring that measured best for such models.
    Returns ``(probs, masks)``; see :func:`hemotwin.vision.pseudo.prediction_sets`.
    """
    from hemotwin.vision.infer import EnsembleEngine, InferenceEngine, scale_tta_zooms
    from hemotwin.vision.pseudo import prediction_sets

    engines = [InferenceEngine(net, backend="torch", num_threads=num_threads,
                               zooms=scale_tta_zooms(meta.get("scale_jitter", 1.0)))
               for net, meta in zip(nets, info, strict=True)]
    engine = EnsembleEngine(engines)
    probs = engine.run(images)
    return probs, prediction_sets(probs, coverage=coverage)


def load_target_images(folder: str | Path, geometry: Geometry, *, um_per_px: float | None = None,
                       max_images: int | None = 64, seed: int = 0, option: str = "--target",
                       um_option: str = "--target-um-per-px") -> tuple[np.ndarray, dict[str, Any]]:
    """Unlabelled images of a target scanner (fields or crops), at the working geometry.

    Every image file under ``folder`` counts (no class folders needed); at most ``max_images``
    (``None``: all), drawn with ``seed``. Pixel size: ``um_per_px``, else each file's metadata,
    else the red-cell ruler's median over the images (fields hold plenty of red cells). Unreadable
    files are skipped and listed. ``option`` / ``um_option``: the options errors name.
    """
    from hemotwin.io.images import IMAGE_SUFFIXES
    from hemotwin.vision.datasets import estimate_um_per_px

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(option, str(folder), "a folder of images from the target scanner")
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise InputError(option, str(folder), "a folder holding image files")
    if max_images is not None and len(paths) > max_images:
        pick = np.random.default_rng(seed).choice(len(paths), size=max_images, replace=False)
        paths = [paths[i] for i in sorted(pick)]
    read, failures = [], []
    for p in paths:
        try:
            rgb, info = read_image(p)
            read.append((p, rgb, info.um_per_px))
        except (HemotwinError, OSError, ValueError) as exc:
            failures.append({"path": str(p), "error": str(exc)})
    if not read:
        raise InputError(option, str(folder), f"readable images (all {len(failures)} failed)")
    source = "option"
    um = um_per_px
    if um is None:
        meta = [m for _, _, m in read if m is not None]
        if len(meta) == len(read) and meta:
            um, source = float(np.median(meta)), "image metadata"
        else:
            est = [e for e in (estimate_um_per_px(rgb)[0] for _, rgb, _ in read) if e is not None]
            if len(est) < 3:
                raise InputError(option, str(folder), f"a pixel size ({um_option}), or at least 3 "
                                 f"images with enough red cells to measure one (found {len(est)})")
            um, source = float(np.median(est)), f"red-cell ruler ({len(est)} images)"
    images = np.stack([to_canonical(rgb, um_per_px=um, canonical_um_per_px=geometry.work_um_per_px,
                                    size=geometry.work_size) for _, rgb, _ in read])
    return images, {"folder": str(folder), "n_images": len(read), "um_per_px": um, "um_per_px_source": source,
                    "failures": failures}


def fit_stain_reference(work_images: np.ndarray, geometry: Geometry, *, seed: int = 0, max_images: int = 64,
                        log: Callable[[str], None] = lambda _m: None) -> dict[str, Any] | None:
    """The training scanner's stain reference (:class:`~hemotwin.twin.harmonise.StainHarmoniser`), JSON-ready.

    Fitted on training images brought to the model geometry, i.e. what the network sees, so that
    ``--harmonise`` at prediction time maps a new scanner's cells onto it. ``None`` (with a log
    line) when the images hold too little stain to fit, e.g. a tiny test set.
    """
    from hemotwin.twin.harmonise import StainHarmoniser

    if len(work_images) == 0:
        return None
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(work_images), size=min(max_images, len(work_images)), replace=False)
    try:
        sample = [to_model_geometry(work_images[i], geometry) for i in sorted(pick)]
        return StainHarmoniser().fit(sample, seed=seed).to_dict()
    except InputError as exc:
        log(f"no stain reference stored (--harmonise unavailable for this model): {exc}")
        return None


def harmoniser_of(loaded) -> Any:
    """The stain harmoniser stored in a loaded model file, or a clear error naming the file."""
    from hemotwin.twin.harmonise import StainHarmoniser

    ref = (loaded.provenance or {}).get("stain_reference")
    if not ref:
        raise InputError("--harmonise", str(loaded.path), "a model file that stores a stain reference "
                         "(models trained by this version of `hemotwin train` do)")
    return StainHarmoniser.from_dict(ref)


def harmonise_arrays(loaded, images: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Map model-geometry images of one scanner into the model's training stain space.

    The new scanner's stain basis is fitted on ``images`` themselves (colours only, no labels), so
    pass one scanner's images together. Returns the images and a JSON-ready note for provenance.
    """
    h = harmoniser_of(loaded)
    if len(images) == 0:
        return images, {"harmonised": False, "reason": "no images"}
    source = h.fit_source(list(images))
    return h.transform(list(images), source=source), {"harmonised": True, "source_basis": source.to_dict(),
                                                      "reference_level": h.level_}


DEFAULT_MODEL_NAME = "default_model.hemo"


def default_model_path() -> Path:
    """The model shipped with the package (trained by ``scripts/train_default_model.py``)."""
    from importlib import resources

    with resources.as_file(resources.files("hemotwin.vision") / DEFAULT_MODEL_NAME) as p:
        return Path(p)


def open_engine(model: str | Path | Sequence[str | Path] | None = None, *, backend: str = "onnxruntime",
                num_threads: int | None = None, tta: bool = False, scale_tta: float | str | None = None):
    """Load a model file (default: the shipped model) into an inference engine.

    Several files give an :class:`~hemotwin.vision.infer.EnsembleEngine` (the mean of their
    probabilities; they must share labels and input geometry), returned with the first file's
    :class:`~hemotwin.vision.modelfile.LoadedModel`, whose geometry and labels the callers use.
    ``tta`` and ``scale_tta``: see :class:`~hemotwin.vision.infer.InferenceEngine` and
    :func:`scale_tta_factor` (``"model"``: each member's own training zoom).
    """
    from hemotwin.vision.infer import EnsembleEngine, InferenceEngine, scale_tta_zooms
    from hemotwin.vision.modelfile import load_model

    if model is None or isinstance(model, str | Path):
        paths = [Path(model) if model is not None else default_model_path()]
    else:
        paths = [Path(m) for m in model]
        if not paths:
            raise InputError("--model", "[]", "one or more .hemo model files")
    loaded_all, engines = [], []
    for path in paths:
        if not path.exists():
            raise InputError("--model", str(path), "an existing .hemo model file"
                             + ("" if model is not None else " (the default model is not installed)"))
        loaded = load_model(path, require_onnx=backend == "onnxruntime")
        if loaded_all and (loaded.preprocessing.um_per_px != loaded_all[0].preprocessing.um_per_px
                           or loaded.preprocessing.input_size != loaded_all[0].preprocessing.input_size):
            raise InputError("--model", str(path), f"the input geometry of {paths[0]} "
                             f"({loaded_all[0].preprocessing.um_per_px} µm/px, "
                             f"{loaded_all[0].preprocessing.input_size} px) to join it in an ensemble")
        zooms = scale_tta_zooms(scale_tta_factor(loaded, scale_tta))
        loaded_all.append(loaded)
        engines.append(InferenceEngine(loaded, backend=backend, num_threads=num_threads, tta=tta, zooms=zooms))
    if len(engines) == 1:
        return loaded_all[0], engines[0]
    return loaded_all[0], EnsembleEngine(engines, names=[str(p) for p in paths])


def ensemble_paths(model: str | Path | Sequence[str | Path] | None) -> list[str]:
    """The model file(s) of ``model`` as strings, for provenance (the default model's path when None)."""
    if model is None:
        return [str(default_model_path())]
    return [str(model)] if isinstance(model, str | Path) else [str(m) for m in model]


def scale_tta_factor(loaded: Any, scale_tta: float | str | None) -> float:
    """The test-time zoom factor of ``scale_tta`` for ``loaded`` (1 = no scale augmentation).

    ``None`` (off) gives 1; a number is used as given (1 to ``MAX_TTA_ZOOM``); ``"model"`` is the
    zoom the model was trained with (``train --scale-jitter``, stored in its model file):
    averaging its answers at ``1/F``, 1 and ``F`` marginalises the pixel-size uncertainty the
    training taught it to tolerate, without choosing a direction from the test data.
    """
    from hemotwin.vision.infer import MAX_TTA_ZOOM

    expected = f"'model' or a zoom factor between 1 (off) and {MAX_TTA_ZOOM}"
    if scale_tta is None:
        return 1.0
    if isinstance(scale_tta, str):
        text = scale_tta.strip().lower()
        if text == "model":
            aug = loaded.provenance.get("augmentation")
            factor = aug.get("scale_jitter") if isinstance(aug, dict) else None
            if not isinstance(factor, int | float) or factor <= 1.0:
                raise InputError("--scale-tta", scale_tta,
                                 f"a zoom factor: {loaded.path} was not trained with a zoom (train --scale-jitter)")
            return float(factor)
        try:
            scale_tta = float(text)
        except ValueError:
            raise InputError("--scale-tta", scale_tta, expected) from None
    if isinstance(scale_tta, bool) or not (isinstance(scale_tta, int | float) and np.isfinite(scale_tta)
                                           and 1.0 <= scale_tta <= MAX_TTA_ZOOM):
        raise InputError("--scale-tta", scale_tta, expected)
    return float(scale_tta)


def predict_files(paths: Sequence[str | Path], *, model: str | Path | Sequence[str | Path] | None = None,
                  um_per_px: float | None = None,
                  labels: str | Sequence[str] | None = None, backend: str = "onnxruntime", harmonise: bool = False,
                  tta: bool = False, scale_tta: float | str | None = None,
                  progress: Progress | None = None) -> dict[str, Any]:
    """Classify image files; unreadable files and files of unknown pixel size are listed and skipped.

    ``harmonise`` maps the images into the model's training stain space first
    (:func:`harmonise_arrays`; the files should come from one scanner); ``tta`` averages each cell
    over its eight rotations and mirror images; ``scale_tta`` over zooms (:func:`scale_tta_factor`).
    Several ``model`` files: their mean (a seed ensemble, :func:`open_engine`).
    """
    from hemotwin.vision.datasets import estimate_um_per_px

    loaded, engine = open_engine(model, backend=backend, tta=tta, scale_tta=scale_tta)
    geom = Geometry(loaded.preprocessing.um_per_px, loaded.preprocessing.input_size)
    imgs, rows, failures = [], [], []
    for k, p in enumerate(paths):
        try:
            rgb, info = read_image(p)
            if info.um_per_px is not None:
                um, src = info.um_per_px, "image metadata"
            elif um_per_px is not None:
                um, src = um_per_px, "option"
            else:
                est, _details = estimate_um_per_px(rgb)
                if est is None:
                    raise InputError(str(p), "no pixel size", "--um-per-px, image metadata, or visible red cells")
                um, src = est, "estimated from red cells"
            imgs.append(to_canonical(rgb, um_per_px=um, canonical_um_per_px=geom.um_per_px, size=geom.input_size))
            rows.append({"path": str(p), "um_per_px": round(float(um), 5), "um_per_px_source": src})
        except (HemotwinError, OSError, ValueError) as exc:
            failures.append({"path": str(p), "error": str(exc)})
        if progress:
            progress(k + 1, len(paths))
    batch = np.stack(imgs) if imgs else np.zeros((0, geom.input_size, geom.input_size, 3), np.uint8)
    harmonisation = {"harmonised": False}
    if harmonise:
        batch, harmonisation = harmonise_arrays(loaded, batch)
    probs = predict_arrays(engine, batch)
    out_labels: tuple[str, ...] = tuple(loaded.labels)
    dropped = np.zeros(len(probs))
    if labels is not None:
        probs, out_labels, dropped = collapse_to(probs, loaded.labels, labels)
    for row, p, d in zip(rows, probs, dropped, strict=True):
        row["label"] = out_labels[int(np.nanargmax(p))] if np.isfinite(p).any() else ""
        row["probability"] = round(float(np.nanmax(p)), 5) if np.isfinite(p).any() else float("nan")
        if labels is not None:
            row["unmapped_probability"] = round(float(d), 5)
        for lab, v in zip(out_labels, p, strict=True):
            row[f"p_{lab}"] = round(float(v), 5)
    return {"rows": rows, "labels": list(out_labels), "failures": failures, "model": str(loaded.path),
            "models": ensemble_paths(model),
            "harmonisation": harmonisation, "tta": tta, "scale_tta_zooms": list(engine.zooms)}


def evaluate_model(data: str | Path, out_dir: str | Path, *, model: str | Path | Sequence[str | Path] | None = None,
                   um_per_px: float | None = None, exclude: Sequence[str] = (), backend: str = "onnxruntime",
                   harmonise: bool = False, tta: bool = False, scale_tta: float | str | None = None,
                   progress: Progress | None = None) -> dict[str, Any]:
    """Score a model on a labelled data set; writes report.json, report.html and figures.

    The model's probabilities are collapsed to the data set's labels (e.g. 15 classes -> the five
    WBC classes of BCCD); probability on classes with no counterpart is dropped and reported.
    Several ``model`` files are scored as one seed ensemble (the mean of their probabilities).
    """
    from hemotwin.io.provenance import file_sha256, provenance
    from hemotwin.vision.evaluate import evaluate_predictions, write_report

    loaded, engine = open_engine(model, backend=backend, tta=tta, scale_tta=scale_tta)
    geom = Geometry(loaded.preprocessing.um_per_px, loaded.preprocessing.input_size)
    (ds,), notes = load_training_data([data], um_per_px=um_per_px)
    ds, skipped = map_items_to(ds, _coarsest_common(ds, loaded.labels))
    prep = prepare(ds, geom, working=False, um_per_px=um_per_px, progress=progress)
    truth = [ds.items[i].label for i in prep.kept]
    target = tuple(lab for lab in taxonomy.canonical_labels() if lab in set(truth))
    images, harmonisation = harmonise_arrays(loaded, prep.images) if harmonise else (prep.images, {"harmonised": False})
    probs, target, dropped = collapse_to(predict_arrays(engine, images), loaded.labels, target)
    probs = np.nan_to_num(probs, nan=0.0)  # classes with no counterpart in the data set's labels
    metrics = evaluate_predictions(truth, probs, target, exclude=exclude)
    metrics["unmapped_probability_mean"] = float(np.mean(dropped)) if len(dropped) else 0.0
    metrics["read"] = summary_of(prep)
    models = ensemble_paths(model)
    prov = provenance(command="evaluate", config={"data": str(data), "model": str(loaded.path), "models": models,
                                                  "exclude": list(exclude), "um_per_px": um_per_px,
                                                  "harmonise": harmonise, "tta": tta,
                                                  "scale_tta": scale_tta, "scale_tta_zooms": list(engine.zooms)},
                      inputs={"model_sha256": file_sha256(loaded.path),
                              **({f"model_sha256[{i}]": file_sha256(m) for i, m in enumerate(models)}
                                 if len(models) > 1 else {})},
                      extra={"model_provenance": loaded.provenance, "notes": notes + skipped[:20],
                             "failures": prep.failures, "harmonisation": harmonisation})
    paths = write_report(metrics, out_dir, title=f"hemotwin evaluation: {Path(data).name}", provenance=prov)
    paths["predictions"] = _write_cell_predictions(Path(out_dir) / "predictions.csv", ds, prep, truth, probs,
                                                   target, exclude)
    return {"metrics": metrics, "report": {k: str(v) for k, v in paths.items()}, "failures": prep.failures}


def _write_cell_predictions(path: Path, ds: Dataset, prep: Prepared, truth: Sequence[str], probs: np.ndarray,
                            labels: Sequence[str], exclude: Sequence[str]) -> Path:
    """One row per scored cell: file, truth, call, confidence, every class's probability.

    What a reader needs to check the metrics cell by cell, or to pair two models (or two scorings)
    on the same cells (McNemar); ``scored`` is False for the cells ``--exclude`` left out.
    """
    import csv

    unscored = set(exclude)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "truth", "predicted", "confidence", "correct", "scored", "um_per_px", "um_per_px_source",
                    *(f"p_{lab}" for lab in labels)])
        for k, (i, t, p) in enumerate(zip(prep.kept, truth, probs, strict=True)):
            call = labels[int(np.argmax(p))]
            w.writerow([str(ds.items[i].path), t, call, f"{float(p.max()):.5f}", call == t, t not in unscored,
                        f"{prep.um_per_px[k]:.5f}", prep.um_source[k], *(f"{float(v):.5f}" for v in p)])
    return path


def _coarsest_common(ds: Dataset, model_labels: Sequence[str]) -> tuple[str, ...]:
    """Labels to score in: each data label, lifted to a model label's level when it is finer."""
    out = []
    for lab in {it.label for it in ds.items}:
        anc = [a for a in taxonomy.ancestors(lab) if a in model_labels]
        out.append(anc[0] if anc else lab)
    return tuple(sorted(set(out), key=list(taxonomy.canonical_labels()).index))


def stress_model(out_dir: str | Path, *, model: str | Path | None = None, profile: str = "analyzer-100x",
                 per_class: int = 8, seed: int = 0, backend: str = "onnxruntime",
                 progress: Progress | None = None) -> dict[str, Any]:
    """Run the stress test (:mod:`hemotwin.vision.stress`) for a model; writes JSON and a plot."""
    import json

    from hemotwin.io.provenance import provenance
    from hemotwin.twin.profiles import load_profile
    from hemotwin.vision.stress import plot_stress, stress_test

    loaded, engine = open_engine(model, backend=backend)
    geom = Geometry(loaded.preprocessing.um_per_px, loaded.preprocessing.input_size)
    prof = load_profile(profile)

    def predict(images: list[np.ndarray], um: float) -> np.ndarray:
        batch = np.stack([to_canonical(im, um_per_px=um, canonical_um_per_px=geom.um_per_px, size=geom.input_size)
                          for im in images])
        return predict_arrays(engine, batch)

    def label_of(code: str) -> str | None:
        anc = [a for a in taxonomy.ancestors(code) if a in loaded.labels]
        return anc[0] if anc else None

    res = stress_test(predict, loaded.labels, profile=prof, codes=taxonomy.CLASS_CODES, label_of=label_of,
                      per_class=per_class, size_um=geom.input_size * geom.um_per_px * 1.05, seed=seed,
                      progress=progress)
    out = Path(out_dir)
    plot = plot_stress(res, out / "stress.png")
    res["provenance"] = provenance(command="stress", config={"model": str(loaded.path), "profile": prof.to_dict(),
                                                             "per_class": per_class}, seeds={"seed": seed})
    (out / "stress.json").write_text(json.dumps(res, indent=2))
    return {"result": res, "plot": str(plot), "json": str(out / "stress.json")}
