"""Training a classifier from folders of cells into a ``.hemo`` model file: the ``train`` workflow.

:class:`TrainRequest` holds everything a training run needs, grouped by concern (data and
geometry, augmentation, target scanner, fitting, distillation, unlabelled cells, runtime);
:func:`train_model` checks it, reads the data, builds the augmentation and fits the network
(:mod:`hemotwin.vision.fitting`), then saves the model with its provenance. The helpers for
teachers (distillation and their labels for unlabelled cells) and the stain reference stored for
harmonisation are public for the benchmarks and scripts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hemotwin.errors import InputError
from hemotwin.io import pixel_size
from hemotwin.taxonomy import label_set
from hemotwin.vision.augment import TWIN_PROFILES, Augment, TargetReimaging, make_augment
from hemotwin.vision.data import (
    concat,
    data_checksum,
    load_target_images,
    load_training_data,
    map_items_to,
    model_labels_for,
    parse_label_spec,
)
from hemotwin.vision.geometry import Geometry, Prepared, prepare, summary_of, to_model_geometry

__all__ = ["AUGMENT_MODES", "TrainRequest", "check_label_sets", "fit_stain_reference", "load_teachers",
           "teacher_prediction_sets", "train_model", "with_unlabelled_cells"]

Log = Callable[[str], None]

#: The training augmentations (:func:`~hemotwin.vision.augment.make_augment`).
AUGMENT_MODES = ("none", "color", "twin", "wide")


@dataclass(frozen=True)
class TrainRequest:
    """What a training run is asked to do (the parameters of :func:`train_model`).

    Attributes
    ----------
    data
        ImageFolder roots or manifest.csv files; joined into one training set.
    out
        The model file to write (``.hemo``).
    labels
        ``"auto"``, a named set (``"wbc5"``, ``"pbc"``, ``"matek15"``), a comma list or a list
        (:func:`~hemotwin.vision.data.parse_label_spec`, :func:`~hemotwin.vision.data.model_labels_for`).
    um_per_px
        Pixel size of images that carry none (:mod:`hemotwin.io.pixel_size`).
    geometry
        The model's input geometry.
    val_fraction
        Share of the data held out for validation (near-duplicates kept together); it drives
        early stopping.
    augment
        ``none``, ``color`` or ``twin`` (:func:`~hemotwin.vision.augment.make_augment`).
    twin_strength
        How far the twin's randomised scanner neighbours stray from their presets.
    p_reimage
        The fraction of the samples (other than the target's) re-imaged through the randomised
        presets; by default 0.5 without a target and 0 with one (with a target the presets lowered
        both the target's and the training scanner's accuracy: docs/benchmarks.md).
    box_crop
        The fraction of samples cut to a box around the white cell first.
    scale_jitter
        The largest zoom of a training cell (:class:`~hemotwin.vision.augment.ScaleJitter`); by
        default 1.2 with a target (a second scanner's pixel size is an estimate; measured on BCCD)
        and 1 (off) without one.
    target
        With ``augment="twin"``: a folder of unlabelled images from the scanner the model will be
        used on; a fraction ``p_target`` of the training samples is then re-imaged as that scanner
        (:class:`~hemotwin.twin.target_style.TargetStyle`).
    target_um_per_px
        Pixel size of the ``target`` images that carry none.
    p_target
        See ``target``.
    epochs, batch_size, patience, norm, seed
        The fit (:class:`~hemotwin.vision.fitting.TrainConfig`) and the network's normalisation.
    ema_epochs
        Validate and keep a moving average of the weights with this time constant in epochs
        (0 = the best epoch's own weights).
    teachers
        Model files (a seed ensemble, same labels and input geometry as the model trained) whose
        mean probabilities on each augmented sample the model is also trained towards: one model
        that has learnt what the ensemble knows, at one model's cost.
    distill_weight
        Weight of the teachers' answer against the labels (default 0.5 with teachers).
    distill_temperature
        Softening temperature of the distillation.
    unlabelled
        With ``teachers``: folders of unlabelled cell crops from the scanner the model will be used
        on. They join the training set with the teachers' prediction sets at ``pseudo_coverage``
        as set-valued labels (:mod:`hemotwin.vision.pseudo`) and the colour jitter and zoom, never
        the re-imaging: they already are that scanner's images.
    unlabelled_um_per_px
        Pixel size of the ``unlabelled`` cells that carry none (default ``target_um_per_px``).
    pseudo_coverage
        Probability the teachers' class set for an unlabelled cell must hold.
    calibrate
        Fit a temperature on the validation cells (as read and re-imaged) and fold it into the network,
        so that its probabilities are calibrated (:mod:`hemotwin.vision.temperature`).
    num_threads, num_workers
        Torch threads (None: all cores) and augmentation worker processes.
    overwrite
        Allow replacing ``out``.
    """

    # data, labels and geometry
    data: Sequence[str | Path]
    out: str | Path
    labels: str | Sequence[str] = "auto"
    um_per_px: float | None = None
    geometry: Geometry = field(default_factory=Geometry)
    val_fraction: float = 0.15
    # augmentation
    augment: str = "twin"
    twin_strength: float = 0.3
    p_reimage: float | None = None
    box_crop: float = 0.0
    scale_jitter: float | None = None
    # target scanner
    target: str | Path | None = None
    target_um_per_px: float | None = None
    p_target: float = 0.3
    # fitting
    epochs: int = 30
    batch_size: int = 64
    patience: int = 6
    norm: str = "group"
    ema_epochs: float = 0.0
    seed: int = 0
    calibrate: bool = True
    # distillation
    teachers: Sequence[str | Path] | None = None
    distill_weight: float | None = None
    distill_temperature: float = 2.0
    # unlabelled cells
    unlabelled: Sequence[str | Path] | None = None
    unlabelled_um_per_px: float | None = None
    pseudo_coverage: float = 0.9
    # runtime
    num_threads: int | None = None
    num_workers: int = 0
    overwrite: bool = False

    def check(self) -> float:
        """Refuse values no run could use, before any data is read; returns the distillation weight.

        Raises
        ------
        OutputExistsError
            ``out`` exists and ``overwrite`` is not set.
        InputError
            ``out`` cannot be written (tried, not guessed from permissions); an unknown ``augment``,
            ``norm`` or label set; a value out of range, or one that needs another (``distill_weight`` or ``unlabelled``
            without ``teachers``, ``target`` without the twin augmentation); ``where`` names the
            parameter.
        """
        from typing import get_args

        from hemotwin.io.outputs import check_output_file
        from hemotwin.vision.models import NormKind

        check_output_file(self.out, overwrite=self.overwrite)
        if self.augment not in AUGMENT_MODES:
            raise InputError("augment", self.augment, f"one of {', '.join(AUGMENT_MODES)}")
        if self.norm not in get_args(NormKind):
            raise InputError("norm", self.norm, f"one of {', '.join(get_args(NormKind))}")
        if isinstance(self.epochs, bool) or not (isinstance(self.epochs, int) and self.epochs >= 1):
            raise InputError("epochs", self.epochs, "a whole number >= 1")
        if not self.data:
            raise InputError("data", [], "one or more data folders or manifest files")
        spec = parse_label_spec(self.labels)
        if spec != "auto":
            label_set(spec, where="labels")
        for name in ("um_per_px", "target_um_per_px", "unlabelled_um_per_px"):
            pixel_size.check_um_per_px(getattr(self, name), where=name)
        sj = self.scale_jitter
        if sj is not None and not (isinstance(sj, int | float) and 1.0 <= sj <= 2.0):
            raise InputError("scale_jitter", sj, "a zoom factor between 1 (off) and 2")
        if not (isinstance(self.ema_epochs, int | float) and 0.0 <= self.ema_epochs <= self.epochs):
            raise InputError("ema_epochs", self.ema_epochs,
                             f"a time constant in epochs, 0 (off) to the epochs ({self.epochs})")
        weight = self.distill_weight if self.distill_weight is not None else (0.5 if self.teachers else 0.0)
        if self.teachers and not (isinstance(weight, int | float) and 0.0 < weight <= 1.0):
            raise InputError("distill_weight", weight, "a weight in (0, 1] with teachers")
        if not self.teachers and weight:
            raise InputError("distill_weight", weight,
                             "teacher model files to distil from (teachers; --teacher on the command line)")
        if not (isinstance(self.distill_temperature, int | float) and 0.0 < self.distill_temperature <= 20.0):
            raise InputError("distill_temperature", self.distill_temperature, "a temperature in (0, 20]")
        if self.unlabelled and not self.teachers:
            raise InputError("unlabelled", [str(u) for u in self.unlabelled],
                             "teacher model files to label them, the teachers' prediction sets "
                             "(teachers; --teacher on the command line)")
        cov = self.pseudo_coverage
        if isinstance(cov, bool) or not (isinstance(cov, int | float) and 0.0 < cov <= 1.0):
            raise InputError("pseudo_coverage", cov, "a probability in (0, 1]")
        if self.target is not None and self.augment not in ("twin", "wide"):
            raise InputError("target", str(self.target), "the twin augmentation (the target scanner is a twin "
                             "re-imaging; --augment twin on the command line)")
        return float(weight)


def train_model(request: TrainRequest, *, progress: Callable | None = None,
                log: Log | None = None) -> dict[str, Any]:
    """Train a classifier on one or more data folders and save it as a ``.hemo`` model file.

    The validation split keeps near-duplicates together and drives early stopping; the file
    records labels, geometry, data checksums, seeds, augmentation (with the fitted stain basis),
    the teachers and unlabelled cells, and the validation metrics.

    Parameters
    ----------
    request
        What to train (:class:`TrainRequest`); checked before any data is read.
    progress
        ``progress(done, total, info)`` after every batch (:func:`~hemotwin.vision.fitting.fit`).
    log
        Called with a line for each step a user should know about.

    Returns
    -------
    dict
        ``model`` (the path), ``labels``, ``best_epoch``, ``best_metrics``, ``seconds``,
        ``train_images_per_s``, ``n_train``, ``n_val``, ``n_unlabelled``, ``failures``, ``notes``,
        ``history``.

    Raises
    ------
    InputError, OutputExistsError
        See :meth:`TrainRequest.check`; also no usable training images, unusable teachers or
        target and unlabelled folders (the error names the parameter or the file).
    """
    from hemotwin.vision.datasets import split
    from hemotwin.vision.fitting import CellArrayDataset, TrainConfig, fit, target_masks
    from hemotwin.vision.modelfile import save_model
    from hemotwin.vision.models import ModelConfig

    r = request
    log = log or (lambda _m: None)
    distill_weight = r.check()
    geometry = r.geometry
    check_label_sets(r.data, parse_label_spec(r.labels), um_per_px=r.um_per_px)
    datasets, notes = load_training_data(r.data, um_per_px=r.um_per_px)
    model_labels = model_labels_for(datasets, parse_label_spec(r.labels))
    teacher_models, teacher_info = load_teachers(r.teachers or [], model_labels, geometry)
    mapped = []
    for ds in datasets:
        m, dropped = map_items_to(ds, model_labels)
        notes += dropped[:20] + ([f"... {len(dropped) - 20} more skipped"] if len(dropped) > 20 else [])
        mapped.append(m)
    full = concat(mapped)
    if len(full.items) == 0:
        raise InputError("data", [str(d) for d in r.data],
                         f"images whose labels map to the model's labels {model_labels}")
    parts = split(full, val_fraction=r.val_fraction, test_fraction=0.0, seed=r.seed)
    log(f"{len(parts.train.items)} training and {len(parts.val.items)} validation images; labels {list(model_labels)}")
    tr = prepare(parts.train, geometry, working=True, um_per_px=r.um_per_px)
    va = prepare(parts.val, geometry, working=False, um_per_px=r.um_per_px)
    y_tr = target_masks([parts.train.items[i].label for i in tr.kept], model_labels)
    y_va = target_masks([parts.val.items[i].label for i in va.kept], model_labels)

    basis, style, target_info = _fit_twin(r, tr, log)
    p_reimage = r.p_reimage if r.p_reimage is not None else (0.0 if style is not None else 0.5)
    scale_jitter = r.scale_jitter if r.scale_jitter is not None else (1.2 if style is not None else 1.0)
    aug = make_augment(r.augment, geometry, basis=basis, strength=r.twin_strength, seed=r.seed,
                       target=TargetReimaging(style, r.p_target) if style is not None else None,
                       p_reimage=p_reimage, box_crop=r.box_crop, scale_jitter=scale_jitter)
    train_ds = CellArrayDataset(tr.images, y_tr, aug=aug, seed=r.seed)
    unlabelled_record: dict[str, Any] | None = None
    if r.unlabelled:
        train_ds, unlabelled_record = _with_unlabelled(r, tr, y_tr, aug, (teacher_models, teacher_info),
                                                       model_labels, scale_jitter, log)
    # Macro-F1 needs fine validation labels; with coarse ones (PBC "neutrophil" for a 15-class
    # model) early stopping watches the set accuracy instead.
    monitor = "macro_f1" if len(y_va) and bool((y_va.sum(axis=1) == 1).all()) else "accuracy"
    cfg = TrainConfig(epochs=r.epochs, batch_size=r.batch_size, seed=r.seed, patience=r.patience,
                      num_threads=r.num_threads, num_workers=r.num_workers, monitor=monitor, ema_epochs=r.ema_epochs,
                      distill_weight=distill_weight, distill_temperature=r.distill_temperature)
    mcfg = ModelConfig(n_classes=len(model_labels), input_size=geometry.input_size, norm=r.norm)
    res = fit(mcfg, train_ds, CellArrayDataset(va.images, y_va) if len(va.images) else None, config=cfg,
              progress=progress, teachers=teacher_models)
    calibration = _calibrate(res.model, r, parts.val, aug, model_labels, log) if r.calibrate and len(va.kept) else None
    checksums = {str(d): data_checksum(ds) for d, ds in zip(r.data, datasets, strict=True)}
    stain_reference = fit_stain_reference(tr.images, geometry, seed=r.seed, log=log)
    twin = r.augment in ("twin", "wide")
    augmentation = {"mode": r.augment, "box_crop": r.box_crop, "scale_jitter": scale_jitter,
                    "twin_strength": r.twin_strength if twin else None,
                    "p_reimage": p_reimage if twin else None,
                    "twin_profiles": list(TWIN_PROFILES) if r.augment == "twin" else None,
                    "scanner_space": _space_record() if r.augment == "wide" else None,
                    "stain_basis": basis.to_dict() if basis is not None else None,
                    "target": None if style is None else {**target_info, "p_target": r.p_target,
                                                          "style": style.to_dict()}}
    out = Path(r.out)
    save_model(out, res.model, labels=list(model_labels), um_per_px=geometry.um_per_px, data_checksums=checksums,
               seed=r.seed, augmentation=augmentation, metrics=res.best_metrics,
               training_config=res.config.model_dump(mode="json"), overwrite=r.overwrite,
               extra={"data": [str(d) for d in r.data], "notes": notes, "stain_reference": stain_reference,
                      "train_read": summary_of(tr), "teachers": teacher_info,
                      "unlabelled": unlabelled_record, "calibration": calibration,
                      "val_read": summary_of(va), "best_epoch": res.best_epoch,
                      "train_images_per_s": res.train_images_per_s})
    return {"model": str(out), "labels": list(model_labels), "best_epoch": res.best_epoch,
            "best_metrics": res.best_metrics, "seconds": res.seconds, "train_images_per_s": res.train_images_per_s,
            "n_train": len(tr.kept), "n_val": len(va.kept), "n_unlabelled": len(train_ds) - len(tr.kept),
            "failures": tr.failures + va.failures, "notes": notes,
            "history": res.history}


def check_label_sets(data: Sequence[str | Path], spec: str | Sequence[str], *, um_per_px: float | None = None) -> None:
    """Refuse to join data sets labelled at different levels into one model without a label set given.

    With ``spec`` ``"auto"`` the model's labels are those present, a fine code lifted to a coarse
    label present (:func:`~hemotwin.vision.data.model_labels_for`). Joining PBC's folders
    (``neutrophil``, ``lymphocyte`` ...) with twin cells (the Matek codes ``NGS``, ``LYT`` ...)
    would then lift some codes and keep others: a model of neither label set, mixed without a word.
    When the joined labels differ from the union of each set's own, the user must say which set to
    train (e.g. ``wbc5``: every cell mapped to its coarse class; ``matek15``: coarse labels become
    set-valued targets). Only the folder listings or manifests are read (no image), so this runs
    before the slow part of loading.

    Raises
    ------
    InputError
        ``where`` is ``labels``; the message names each data set's labels and the mixed result.
    """
    from hemotwin.vision.datasets import load_dataset

    if spec != "auto" or len(data) < 2:
        return
    datasets = [load_dataset(d, um_per_px=um_per_px) for d in data]
    names = [str(d) for d in data]
    own = [model_labels_for([ds]) for ds in datasets]
    joined = model_labels_for(datasets)
    if set(joined) == {lab for labels in own for lab in labels}:
        return
    each = "; ".join(f"{name}: {', '.join(labels)}" for name, labels in zip(names, own, strict=True))
    raise InputError("labels", "auto", "a label set named when the data sets are labelled at different levels "
                     f"({each}); joined as they are they would make a mixed model of {len(joined)} labels "
                     f"({', '.join(joined)}). Choose one, e.g. wbc5 (five white-cell classes) or matek15 (15 codes; "
                     "coarse labels become sets of codes)")


def _space_record() -> dict[str, Any]:
    """The scanner space the ``wide`` augmentation draws from, for the model's provenance."""
    from hemotwin.twin.scanner_space import DEFAULT_SCANNER_SPACE

    return DEFAULT_SCANNER_SPACE.to_dict()


def _calibrate(model: Any, r: TrainRequest, val: Any, aug: Augment, model_labels: Sequence[str],
               log: Log) -> dict[str, Any]:
    """Fit the temperature on the validation cells, as they are and re-imaged, and fold it into ``model``.

    Each validation cell is shown twice: at the model's geometry as read, and through the training
    augmentation (another scanner, zoom and stain) drawn from a fixed seed, so the probabilities are
    calibrated for the conditions the model is trained to meet (:mod:`hemotwin.vision.temperature`).
    """
    from hemotwin.vision.fitting import target_masks
    from hemotwin.vision.temperature import fit_temperature, fold_temperature, logits_of

    work = prepare(val, r.geometry, working=True, um_per_px=r.um_per_px)
    rng = np.random.default_rng([r.seed, 7919])
    plain = np.stack([to_model_geometry(w, r.geometry) for w in work.images])
    shown = np.stack([aug(w, rng) for w in work.images])
    masks = target_masks([val.items[i].label for i in work.kept], model_labels)
    fit_info = fit_temperature(logits_of(model, np.concatenate([plain, shown])), np.concatenate([masks, masks]))
    fold_temperature(model, fit_info["temperature"])
    log(f"temperature {fit_info['temperature']:.3f} on {len(work.kept)} validation cells, as read and re-imaged "
        f"(NLL {fit_info['nll_before']:.3f} -> {fit_info['nll_after']:.3f})")
    return {**fit_info, "views": ["as read", "training augmentation (seeded)"],
            "method": "temperature scaling (Guo et al. 2017) on the validation split"}


def _fit_twin(r: TrainRequest, tr: Prepared, log: Log) -> tuple[Any, Any, dict[str, Any] | None]:
    """The twin augmentation's stain basis and, with a target, its style: ``(basis, style, target_info)``."""
    if r.augment not in ("twin", "wide"):
        return None, None, None
    from hemotwin.twin.reimage import StainBasis

    rng = np.random.default_rng(r.seed)
    sample = tr.images[rng.choice(len(tr.images), size=min(64, len(tr.images)), replace=False)]
    basis = StainBasis().fit(list(sample))
    if r.target is None:
        return basis, None, None
    from hemotwin.twin.target_style import TargetStyle

    um = r.geometry.work_um_per_px
    tgt, target_info = load_target_images(r.target, r.geometry, um_per_px=r.target_um_per_px, seed=r.seed)
    style = TargetStyle().fit(list(sample), list(tgt), source_um_per_px=um, target_um_per_px=um, seed=r.seed)
    log(f"target scanner from {target_info['n_images']} images of {r.target}: {style!r}")
    for f in target_info["failures"]:
        log(f"skipped target image {f['path']}: {f['error']}")
    return basis, style, target_info


def _with_unlabelled(r: TrainRequest, tr: Prepared, y_tr: np.ndarray, aug: Augment,
                     teachers: tuple[list[Any], list[dict[str, Any]]], model_labels: Sequence[str],
                     scale_jitter: float, log: Log) -> tuple[Any, dict[str, Any]]:
    """The training set joined by the unlabelled cells the teachers label, and the record of them."""
    from hemotwin.vision.pseudo import set_summary

    cells, infos = [], []
    for folder in r.unlabelled or ():
        imgs, info = load_target_images(folder, r.geometry, um_per_px=r.unlabelled_um_per_px or r.target_um_per_px,
                                        max_images=None, seed=r.seed, where="unlabelled")
        for f in info["failures"]:
            log(f"skipped unlabelled image {f['path']}: {f['error']}")
        cells.append(imgs)
        infos.append(info)
    cells_w = np.concatenate(cells)
    _, masks = teacher_prediction_sets(*teachers, np.stack([to_model_geometry(c, r.geometry) for c in cells_w]),
                                       coverage=r.pseudo_coverage, num_threads=r.num_threads)
    summary = set_summary(masks, model_labels)
    log(f"{len(cells_w)} unlabelled cells labelled by the teachers: {summary['single_class']} with one class "
        f"({summary['single_class_by_label']}), mean set size {summary['mean_set_size']:.2f}")
    train_ds = with_unlabelled_cells(tr.images, y_tr, aug, cells_w, masks, augment=r.augment, geometry=r.geometry,
                                     box_crop=r.box_crop, scale_jitter=scale_jitter, seed=r.seed)
    record = {"folders": [{**{k: v for k, v in info.items() if k != "failures"},
                           "failures": len(info["failures"])} for info in infos],
              "coverage": r.pseudo_coverage, "prediction_sets": summary}
    return train_ds, record


def with_unlabelled_cells(images: np.ndarray, masks: np.ndarray, aug: Augment, cells: np.ndarray,
                          cell_masks: np.ndarray, *, augment: str, geometry: Geometry, box_crop: float = 0.0,
                          scale_jitter: float = 1.0, seed: int = 0) -> Any:
    """The training set plus a target scanner's unlabelled ``cells`` (working geometry) with set labels.

    The real cells get the colour jitter and zoom only (``augment`` other than ``twin``: the same
    augmentation as the rest): re-imaging them *as* their own scanner, or through presets, would move
    them away from the look they are there to teach.

    Returns
    -------
    CellArrayDataset
    """
    from hemotwin.vision.fitting import CellArrayDataset

    cell_aug = aug if augment not in ("twin", "wide") else make_augment("color", geometry, box_crop=box_crop,
                                                          scale_jitter=scale_jitter)
    return CellArrayDataset(np.concatenate([images, cells]), np.concatenate([masks, cell_masks]),
                            aug=[aug, cell_aug], seed=seed, aug_index=np.repeat([0, 1], [len(images), len(cells)]))


def load_teachers(paths: Sequence[str | Path], labels: Sequence[str], geometry: Geometry
                  ) -> tuple[list[Any], list[dict[str, Any]]]:
    """The torch networks of teacher model files, checked against the student's labels and geometry.

    Returns
    -------
    nets : list
    info : list of dict
        For provenance, each file's path, SHA-256, seed and training zoom.

    Raises
    ------
    InputError
        A missing file, or labels or geometry other than the student's (``where``: ``"teachers"``).
    """
    from hemotwin.io.provenance import file_sha256
    from hemotwin.vision.modelfile import load_model

    nets, info = [], []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise InputError("teachers", str(p), "an existing .hemo model file")
        loaded = load_model(p)
        if list(loaded.labels) != list(labels):
            raise InputError("teachers", str(p), f"a model of the labels being trained, in order: {list(labels)} "
                             f"(it has {list(loaded.labels)})")
        if (loaded.preprocessing.um_per_px != geometry.um_per_px
                or loaded.preprocessing.input_size != geometry.input_size):
            raise InputError("teachers", str(p), f"the input geometry being trained ({geometry.um_per_px} µm/px, "
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
    :func:`~hemotwin.vision.engines.scale_tta_zooms`), the scoring that measured best for such models.

    Returns
    -------
    probs, masks : ndarray
        See :func:`hemotwin.vision.pseudo.prediction_sets`.
    """
    from hemotwin.vision.engines import EnsembleEngine, InferenceEngine, scale_tta_zooms
    from hemotwin.vision.pseudo import prediction_sets

    engines = [InferenceEngine(net, backend="torch", num_threads=num_threads,
                               zooms=scale_tta_zooms(meta.get("scale_jitter", 1.0)))
               for net, meta in zip(nets, info, strict=True)]
    engine = EnsembleEngine(engines)
    probs = engine.run(images)
    return probs, prediction_sets(probs, coverage=coverage)


def fit_stain_reference(work_images: np.ndarray, geometry: Geometry, *, seed: int = 0, max_images: int = 64,
                        log: Log = lambda _m: None) -> dict[str, Any] | None:
    """The training scanner's stain reference (:class:`~hemotwin.twin.harmonise.StainHarmoniser`), JSON-ready.

    Fitted on training images brought to the model geometry, i.e. what the network sees, so that
    harmonisation at prediction time maps a new scanner's cells onto it. ``None`` (with a log
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
        log(f"no stain reference stored (harmonisation unavailable for this model): {exc}")
        return None
