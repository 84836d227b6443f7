"""Using a trained model: open it (or a seed ensemble), harmonise the stain, classify files.

:func:`open_engine` loads model files into an inference engine with the chosen test-time
augmentation; :func:`predict_files` classifies image files (folders expanded by
:func:`expand_image_paths`) and :func:`predict_to_csv` writes the result as the ``predict``
command's CSV.

Every image is first brought to the model's geometry and checked (:mod:`hemotwin.vision.input_check`):
one that cannot hold a white cell at its pixel size is *rejected* with the reason and never shown to
the network. Each classified image gets a status: ``ok``, or ``unsure`` when its top probability is
below ``min_confidence``; with it an out-of-distribution score from the model's output
(:func:`ood_scores`).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hemotwin import taxonomy
from hemotwin.errors import HemotwinError, InputError
from hemotwin.io import pixel_size
from hemotwin.io.images import IMAGE_SUFFIXES, read_image
from hemotwin.io.outputs import check_output_file
from hemotwin.vision.datasets import estimate_um_per_px, to_canonical
from hemotwin.vision.geometry import Geometry, Progress
from hemotwin.vision.input_check import DEFAULT_LIMITS, CheckLimits, InputCheck, check_cell_image

__all__ = ["BACKENDS", "DEFAULT_MIN_CONFIDENCE", "DEFAULT_MODEL_NAME", "DEFAULT_SCALE_TTA", "STATUSES",
           "InferenceOptions", "ModelSpec", "checked_cell", "collapse_to",
           "default_model_path", "ensemble_paths", "expand_image_paths", "harmonise_arrays", "harmoniser_of",
           "model_names", "model_training_zoom", "ood_scores", "open_engine", "predict_arrays", "predict_files",
           "predict_to_csv", "scale_tta_factor", "write_predictions"]

#: The model shipped with the package, beside this module.
DEFAULT_MODEL_NAME = "default_model.hemo"

#: The inference backends (:class:`~hemotwin.vision.engines.InferenceEngine`).
BACKENDS = ("onnxruntime", "torch")

#: The zoom factor of ``scale_tta="model"`` for a model file that records no training zoom (the
#: shipped model, and every model trained without one). 1.2 is the training zoom the scale average
#: was measured with; on BCCD it helped models trained without a zoom too, less than those trained
#: with one (+0.6 points on all crops, +1.4 on the audited ones; docs/benchmarks.md).
DEFAULT_SCALE_TTA = 1.2

#: Below this top probability a call is ``unsure``. The models' probabilities are calibrated on held-out
#: cells (temperature scaling), so such a call is more likely wrong than right; the same default
#: sends cells to review in ``analyze``.
DEFAULT_MIN_CONFIDENCE = 0.5

#: The status of each input: classified (``ok``; ``unsure`` below ``min_confidence``), ``rejected`` by
#: the input check (not classified), ``skipped`` (unreadable, or of unknown pixel size).
STATUSES = ("ok", "unsure", "rejected", "skipped")

#: One or several model files (a seed ensemble); None is the shipped model.
ModelSpec = str | Path | Sequence[str | Path] | None


@dataclass(frozen=True)
class InferenceOptions:
    """How cells are read by a model: which file(s), the backend, harmonisation and test-time averaging.

    One definition shared by :func:`predict_files`, :func:`predict_to_csv` and
    :func:`hemotwin.vision.assess.evaluate_model` (and the command line's options of the same names).

    Attributes
    ----------
    model
        A ``.hemo`` file, several (a seed ensemble: the mean of their probabilities), or None for the
        shipped model (:func:`open_engine`).
    backend
        ``onnxruntime`` or ``torch``.
    harmonise
        Map the images into the model's training stain space first (:func:`harmonise_arrays`; the
        images should come from one scanner).
    tta
        Average each cell over its eight rotations and mirror images.
    scale_tta
        Average each cell over zooms ``1/F``, 1 and ``F`` (:func:`scale_tta_factor`; None: off).
    """

    model: ModelSpec = None
    backend: str = "onnxruntime"
    harmonise: bool = False
    tta: bool = False
    scale_tta: float | str | None = None

    def check(self) -> None:
        """Refuse a backend or a test-time zoom no run could use, before any file is read.

        Raises
        ------
        InputError
            ``where`` names the field (``backend``, ``scale_tta``).
        """
        if self.backend not in BACKENDS:
            raise InputError("backend", self.backend, f"one of {', '.join(BACKENDS)}")
        if not (isinstance(self.scale_tta, str) and self.scale_tta.strip().lower() == "model"):
            scale_tta_factor(None, self.scale_tta)

    def open(self, *, num_threads: int | None = None) -> tuple[Any, Any]:
        """The loaded (first) model and its engine (:func:`open_engine`)."""
        return open_engine(self.model, backend=self.backend, num_threads=num_threads, tta=self.tta,
                           scale_tta=self.scale_tta)


def default_model_path() -> Path:
    """The model shipped with the package (trained by ``scripts/train_default_model.py``)."""
    from importlib import resources

    with resources.as_file(resources.files("hemotwin.vision") / DEFAULT_MODEL_NAME) as p:
        return Path(p)


def open_engine(model: ModelSpec = None, *, backend: str = "onnxruntime", num_threads: int | None = None,
                tta: bool = False, scale_tta: float | str | None = None) -> tuple[Any, Any]:
    """Load a model file (default: the shipped model) into an inference engine.

    Parameters
    ----------
    model
        A ``.hemo`` file, several (a seed ensemble: the mean of their probabilities; they must
        share labels' count and input geometry), or None for the shipped model.
    backend
        ``onnxruntime`` or ``torch``.
    num_threads
        Inference threads (None: the engine's default).
    tta, scale_tta
        See :class:`~hemotwin.vision.engines.InferenceEngine` and :func:`scale_tta_factor`
        (``"model"``: each member's own training zoom).

    Returns
    -------
    loaded : LoadedModel
        The first file's :class:`~hemotwin.vision.modelfile.LoadedModel`, whose geometry and labels
        the callers use.
    engine : InferenceEngine or EnsembleEngine

    Raises
    ------
    InputError
        ``model`` names no file, a missing file, or files of different input geometry.
    """
    from hemotwin.vision.engines import EnsembleEngine, InferenceEngine, scale_tta_zooms
    from hemotwin.vision.modelfile import load_model

    if model is None or isinstance(model, str | Path):
        paths = [Path(model) if model is not None else default_model_path()]
    else:
        paths = [Path(m) for m in model]
        if not paths:
            raise InputError("model", "[]", "one or more .hemo model files")
    loaded_all, engines = [], []
    for path in paths:
        if not path.exists():
            raise InputError("model", str(path), "an existing .hemo model file"
                             + ("" if model is not None else " (the default model is not installed)"))
        loaded = load_model(path, require_onnx=backend == "onnxruntime")
        if loaded_all and (loaded.preprocessing.um_per_px != loaded_all[0].preprocessing.um_per_px
                           or loaded.preprocessing.input_size != loaded_all[0].preprocessing.input_size):
            raise InputError("model", str(path), f"the input geometry of {paths[0]} "
                             f"({loaded_all[0].preprocessing.um_per_px} µm/px, "
                             f"{loaded_all[0].preprocessing.input_size} px) to join it in an ensemble")
        zooms = scale_tta_zooms(scale_tta_factor(loaded, scale_tta))
        loaded_all.append(loaded)
        engines.append(InferenceEngine(loaded, backend=backend, num_threads=num_threads, tta=tta, zooms=zooms))
    if len(engines) == 1:
        return loaded_all[0], engines[0]
    return loaded_all[0], EnsembleEngine(engines, names=[str(p) for p in paths])


def ensemble_paths(model: ModelSpec) -> list[str]:
    """The model file(s) of ``model`` as strings, for provenance (the default model's path when None)."""
    if model is None:
        return [str(default_model_path())]
    return [str(model)] if isinstance(model, str | Path) else [str(m) for m in model]


def scale_tta_factor(loaded: Any, scale_tta: float | str | None) -> float:
    """The test-time zoom factor of ``scale_tta`` for ``loaded`` (1 = no scale augmentation).

    ``None`` (off) gives 1; a number is used as given (1 to ``MAX_TTA_ZOOM``); ``"model"`` is the
    zoom the model was trained with (its training ``scale_jitter``, stored in its model file):
    averaging its answers at ``1/F``, 1 and ``F`` marginalises the pixel-size uncertainty the
    training taught it to tolerate, without choosing a direction from the test data. A model file
    that records no training zoom (the shipped model among them) gets :data:`DEFAULT_SCALE_TTA`.

    Raises
    ------
    InputError
        Not ``"model"`` nor a factor in range.
    """
    from hemotwin.vision.engines import MAX_TTA_ZOOM

    expected = f"'model' or a zoom factor between 1 (off) and {MAX_TTA_ZOOM}"
    if scale_tta is None:
        return 1.0
    if isinstance(scale_tta, str):
        text = scale_tta.strip().lower()
        if text == "model":
            return model_training_zoom(loaded) or DEFAULT_SCALE_TTA
        try:
            scale_tta = float(text)
        except ValueError:
            raise InputError("scale_tta", scale_tta, expected) from None
    if isinstance(scale_tta, bool) or not (isinstance(scale_tta, int | float) and np.isfinite(scale_tta)
                                           and 1.0 <= scale_tta <= MAX_TTA_ZOOM):
        raise InputError("scale_tta", scale_tta, expected)
    return float(scale_tta)


def model_training_zoom(loaded: Any) -> float | None:
    """The largest training zoom (``scale_jitter``) recorded in a loaded model file; None when it records none."""
    aug = (loaded.provenance or {}).get("augmentation")
    factor = aug.get("scale_jitter") if isinstance(aug, dict) else None
    return float(factor) if isinstance(factor, int | float) and not isinstance(factor, bool) and factor > 1.0 else None


def harmoniser_of(loaded: Any) -> Any:
    """The stain harmoniser stored in a loaded model file, or a clear error naming the file."""
    from hemotwin.twin.harmonise import StainHarmoniser

    ref = (loaded.provenance or {}).get("stain_reference")
    if not ref:
        raise InputError("harmonise", str(loaded.path), "a model file that stores a stain reference "
                         "(models trained by this version of `hemotwin train` do)")
    return StainHarmoniser.from_dict(ref)


def harmonise_arrays(loaded: Any, images: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Map model-geometry images of one scanner into the model's training stain space.

    The new scanner's stain basis is fitted on ``images`` themselves (colours only, no labels), so
    pass one scanner's images together.

    Returns
    -------
    images : ndarray
    note : dict
        JSON-ready, for provenance.
    """
    h = harmoniser_of(loaded)
    if len(images) == 0:
        return images, {"harmonised": False, "reason": "no images"}
    source = h.fit_source(list(images))
    return h.transform(list(images), source=source), {"harmonised": True, "source_basis": source.to_dict(),
                                                      "reference_level": h.level_}


def predict_arrays(engine: Any, images: np.ndarray) -> np.ndarray:
    """Probabilities (``N x K``) for images already in the model geometry."""
    if len(images) == 0:
        return np.zeros((0, len(engine.labels)), np.float32)
    return np.asarray(engine.run(images))


def collapse_to(probs: np.ndarray, model_labels: Sequence[str], target: str | Sequence[str]
                ) -> tuple[np.ndarray, tuple[str, ...], np.ndarray]:
    """Model probabilities in another (coarser) label set, with the mass that has no counterpart.

    Returns
    -------
    probs : ndarray
    labels : tuple of str
        The target labels, in column order.
    dropped : ndarray
        Per row, the probability on model classes with no counterpart.
    """
    target_labels = tuple(taxonomy.label_set(target))
    if tuple(model_labels) == target_labels:
        return probs, target_labels, np.zeros(len(probs))
    out, dropped = taxonomy.collapse(probs, list(model_labels), list(target_labels))
    return out, target_labels, dropped


def expand_image_paths(inputs: Sequence[str | Path]) -> list[Path]:
    """Image files of ``inputs``: files as given, folders replaced by every image file inside (sorted).

    Raises
    ------
    InputError
        No image file among them (``where``: ``"images"``).
    """
    paths: list[Path] = []
    for p in map(Path, inputs):
        if p.is_dir():
            paths += sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_SUFFIXES)
        else:
            paths.append(p)
    if not paths:
        raise InputError("images", [str(p) for p in inputs], "image files or folders holding images")
    return paths


def model_names(model: ModelSpec) -> list[str]:
    """The model file(s) of ``model`` as the user named them, for reports (the shipped one by its name only).

    Unlike :func:`ensemble_paths`, the shipped model is not shown by its installed path (a path on
    the machine that built the report, of no use to its reader).
    """
    if model is None:
        return [f"{DEFAULT_MODEL_NAME} (shipped with hemotwin)"]
    return [str(model)] if isinstance(model, str | Path) else [str(m) for m in model]


def ood_scores(probs: np.ndarray) -> np.ndarray:
    """An out-of-distribution score per row of probabilities: their entropy over that of a uniform answer.

    0 when all the probability is on one class, 1 when it is spread evenly over all of them. The top
    probability alone (Hendrycks & Gimpel 2017) says how much the winner got; the entropy also says
    how the rest is spread, so a cell torn between two classes scores lower than one the model cannot
    place at all. Like any score from the output it cannot catch an input the model answers
    confidently (hence :mod:`hemotwin.vision.input_check`).
    """
    p = np.clip(np.asarray(probs, dtype=np.float64), 0.0, 1.0)
    k = p.shape[1] if p.ndim == 2 else 0
    if k < 2:
        return np.zeros(len(p))
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
    return np.clip(h / np.log(k), 0.0, 1.0)


def checked_cell(rgb: np.ndarray, *, um_per_px: float, geometry: Geometry, limits: CheckLimits | None = DEFAULT_LIMITS
                 ) -> tuple[np.ndarray, InputCheck | None]:
    """An image as read brought to the model's ``geometry``, and its input check (None: not checked).

    The check needs the field of the image as read (its pixel count times ``um_per_px``), which the
    padded model crop no longer shows.
    """
    img = to_canonical(rgb, um_per_px=um_per_px, canonical_um_per_px=geometry.um_per_px, size=geometry.input_size)
    if limits is None:
        return img, None
    return img, check_cell_image(img, um_per_px=geometry.um_per_px, field_um=min(rgb.shape[:2]) * float(um_per_px),
                                 limits=limits)


def _check_confidence(min_confidence: float) -> None:
    if isinstance(min_confidence, bool) or not (isinstance(min_confidence, int | float)
                                                and 0.0 <= min_confidence <= 1.0):
        raise InputError("min_confidence", min_confidence, "a probability in [0, 1]")


def _file_pixel_size(path: str | Path, rgb: np.ndarray, info: Any, option: float | None) -> tuple[float, str]:
    """The pixel size of one file by the package's order (no manifest): metadata, option, red cells."""
    def red_cells() -> tuple[float | None, str]:
        um, details = estimate_um_per_px(rgb)
        return (um, str(details["quality"])) if um is not None else (None, str(details["reason"]))

    return pixel_size.resolve(where=str(path), metadata=info.um_per_px, metadata_source=info.um_per_px_source,
                              option=option, estimate=red_cells)


def predict_files(paths: Sequence[str | Path], *, options: InferenceOptions = InferenceOptions(),
                  um_per_px: float | None = None, labels: str | Sequence[str] | None = None,
                  min_confidence: float = DEFAULT_MIN_CONFIDENCE, input_check: CheckLimits | None = DEFAULT_LIMITS,
                  progress: Progress | None = None) -> dict[str, Any]:
    """Classify image files; each gets a row with its status (``ok``, ``unsure``, ``rejected``, ``skipped``).

    Parameters
    ----------
    paths
        Image files.
    options
        The model(s) and how they read (:class:`InferenceOptions`).
    um_per_px
        Pixel size of files whose metadata carry none (:mod:`hemotwin.io.pixel_size`; else the
        red-cell ruler on each image).
    labels
        Report in another (coarser) label set (:func:`collapse_to`).
    min_confidence
        A classified image whose top probability (in the reported labels) is below this is
        ``unsure`` (:data:`DEFAULT_MIN_CONFIDENCE`).
    input_check
        The limits of the input check (:mod:`hemotwin.vision.input_check`); an image that fails it is
        ``rejected``, with the reason, and not classified. None classifies every readable image.
    progress
        Called after each file.

    Returns
    -------
    dict
        ``rows``: one per file, in order: ``path``, ``um_per_px`` and its source, ``status``,
        ``reason`` (why rejected, skipped or unsure), ``label``, ``probability``, ``ood_score``
        (:func:`ood_scores`, on the model's own classes), ``unmapped_probability`` (with ``labels``)
        and a ``p_<label>`` column per label; a rejected or skipped file has no label and no
        probabilities. Also ``labels``, ``failures`` (unreadable files or files of unknown pixel
        size: ``path``, ``error``), ``rejected`` (the same for the input check), ``n_classified``,
        ``model``, ``models``, ``harmonisation``, ``tta``, ``scale_tta_zooms``, ``min_confidence``,
        ``input_check`` (the limits, or None).
    """
    pixel_size.check_um_per_px(um_per_px)
    _check_confidence(min_confidence)
    options.check()
    out_labels: tuple[str, ...] = tuple(taxonomy.label_set(labels, where="labels")) if labels is not None else ()
    loaded, engine = options.open()
    geom = Geometry(loaded.preprocessing.um_per_px, loaded.preprocessing.input_size)
    out_labels = out_labels or tuple(loaded.labels)
    rows: list[dict[str, Any]] = []
    imgs, classified, failures, rejected = [], [], [], []
    for k, p in enumerate(paths):
        row = {"path": str(p), "um_per_px": "", "um_per_px_source": "", "status": "", "reason": ""}
        rows.append(row)
        try:
            rgb, info = read_image(p)
            um, src = _file_pixel_size(p, rgb, info, um_per_px)
            img, check = checked_cell(rgb, um_per_px=um, geometry=geom, limits=input_check)
            row.update(um_per_px=round(float(um), 5), um_per_px_source=src)
        except (HemotwinError, OSError, ValueError) as exc:
            row.update(status="skipped", reason=str(exc))
            failures.append({"path": str(p), "error": str(exc)})
        else:
            if check is not None and not check.ok:
                row.update(status="rejected", reason=check.reason)
                rejected.append({"path": str(p), "error": f"rejected: {check.reason}"})
            else:
                imgs.append(img)
                classified.append(row)
        if progress:
            progress(k + 1, len(paths))
    batch = np.stack(imgs) if imgs else np.zeros((0, geom.input_size, geom.input_size, 3), np.uint8)
    harmonisation: dict[str, Any] = {"harmonised": False}
    if options.harmonise:
        batch, harmonisation = harmonise_arrays(loaded, batch)
    model_probs = predict_arrays(engine, batch)
    probs, dropped = model_probs, np.zeros(len(model_probs))
    if labels is not None:
        probs, out_labels, dropped = collapse_to(model_probs, loaded.labels, out_labels)
    _fill_rows(rows, classified, (probs, ood_scores(model_probs), dropped), out_labels,
               collapsed=labels is not None, min_confidence=min_confidence)
    return {"rows": rows, "labels": list(out_labels), "failures": failures, "rejected": rejected,
            "n_classified": len(classified), "model": str(loaded.path), "models": ensemble_paths(options.model),
            "harmonisation": harmonisation, "tta": options.tta, "scale_tta_zooms": list(engine.zooms),
            "min_confidence": min_confidence,
            "input_check": None if input_check is None else dict(vars(input_check))}


def _fill_rows(rows: list[dict[str, Any]], classified: list[dict[str, Any]],
               scored: tuple[np.ndarray, np.ndarray, np.ndarray], labels: Sequence[str], *, collapsed: bool,
               min_confidence: float) -> None:
    """Give every row the same columns: the call, its probability and scores for the classified ones, blanks else."""
    probs, ood, dropped = scored
    blank = {"label": "", "probability": "", "ood_score": "", **({"unmapped_probability": ""} if collapsed else {}),
             **{f"p_{lab}": "" for lab in labels}}
    for row in rows:
        row.update(blank)
    for row, p, o, d in zip(classified, probs, ood, dropped, strict=True):
        finite = np.isfinite(p).any()
        top = float(np.nanmax(p)) if finite else float("nan")
        row["label"] = labels[int(np.nanargmax(p))] if finite else ""
        row["probability"] = round(top, 5)
        row["ood_score"] = round(float(o), 5)
        unsure = not (top >= min_confidence)  # NaN (no class of the reported set) is unsure too
        row["status"] = "unsure" if unsure else "ok"
        row["reason"] = f"top probability {top:.3f} below {min_confidence:g}" if unsure else ""
        if collapsed:
            row["unmapped_probability"] = round(float(d), 5)
        for lab, v in zip(labels, p, strict=True):
            row[f"p_{lab}"] = round(float(v), 5)


def write_predictions(path: str | Path, result: dict[str, Any]) -> Path:
    """Write :func:`predict_files`' rows as a CSV (a header only when there are none)."""
    rows = result["rows"]
    with open(path, "w", newline="") as fh:
        keys = list(rows[0]) if rows else ["path", "um_per_px", "um_per_px_source", "status", "reason", "label",
                                           "probability", "ood_score"]
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    return Path(path)


def predict_to_csv(inputs: Sequence[str | Path], out: str | Path, *, options: InferenceOptions = InferenceOptions(),
                   overwrite: bool = False, um_per_px: float | None = None,
                   labels: str | Sequence[str] | None = None, min_confidence: float = DEFAULT_MIN_CONFIDENCE,
                   input_check: CheckLimits | None = DEFAULT_LIMITS, progress: Progress | None = None
                   ) -> dict[str, Any]:
    """Classify image files and folders and write the CSV ``out``: the ``predict`` workflow.

    Every option and the output path are checked before any image is read; the CSV lists every
    file, rejected and skipped ones with their reason.

    Parameters
    ----------
    inputs
        Image files or folders (every image file inside, :func:`expand_image_paths`).
    out
        The CSV to write; an existing file is replaced only with ``overwrite``.
    overwrite
        Allow replacing ``out``.
    options, um_per_px, labels, min_confidence, input_check, progress
        See :func:`predict_files`.

    Returns
    -------
    dict
        :func:`predict_files`' result with ``csv`` (the path written).
    """
    from hemotwin.io.outputs import prepare_output_file

    check_output_file(out, overwrite=overwrite)
    pixel_size.check_um_per_px(um_per_px)
    _check_confidence(min_confidence)
    options.check()
    if labels is not None:
        taxonomy.label_set(labels, where="labels")
    paths = expand_image_paths(inputs)
    dest = prepare_output_file(out, overwrite=overwrite)
    res = predict_files(paths, options=options, um_per_px=um_per_px, labels=labels, min_confidence=min_confidence,
                        input_check=input_check, progress=progress)
    res["csv"] = str(write_predictions(dest, res))
    return res
