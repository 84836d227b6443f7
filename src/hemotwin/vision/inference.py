"""Using a trained model: open it (or a seed ensemble), harmonise the stain, classify files.

:func:`open_engine` loads model files into an inference engine with the chosen test-time
augmentation; :func:`predict_files` classifies image files (folders expanded by
:func:`expand_image_paths`) and :func:`predict_to_csv` writes the result as the ``predict``
command's CSV.
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
from hemotwin.vision.datasets import estimate_um_per_px, to_canonical
from hemotwin.vision.geometry import Geometry, Progress

__all__ = ["DEFAULT_MODEL_NAME", "InferenceOptions", "ModelSpec", "collapse_to", "default_model_path", "ensemble_paths",
           "expand_image_paths", "harmonise_arrays", "harmoniser_of", "open_engine", "predict_arrays", "predict_files",
           "predict_to_csv", "scale_tta_factor", "write_predictions"]

#: The model shipped with the package, beside this module.
DEFAULT_MODEL_NAME = "default_model.hemo"

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
    training taught it to tolerate, without choosing a direction from the test data.

    Raises
    ------
    InputError
        Not a factor in range, or ``"model"`` for a model trained without a zoom.
    """
    from hemotwin.vision.engines import MAX_TTA_ZOOM

    expected = f"'model' or a zoom factor between 1 (off) and {MAX_TTA_ZOOM}"
    if scale_tta is None:
        return 1.0
    if isinstance(scale_tta, str):
        text = scale_tta.strip().lower()
        if text == "model":
            aug = loaded.provenance.get("augmentation")
            factor = aug.get("scale_jitter") if isinstance(aug, dict) else None
            if not isinstance(factor, int | float) or factor <= 1.0:
                raise InputError("scale_tta", scale_tta, f"a zoom factor: {loaded.path} was not trained with a "
                                 "zoom (scale_jitter; --scale-jitter of train on the command line)")
            return float(factor)
        try:
            scale_tta = float(text)
        except ValueError:
            raise InputError("scale_tta", scale_tta, expected) from None
    if isinstance(scale_tta, bool) or not (isinstance(scale_tta, int | float) and np.isfinite(scale_tta)
                                           and 1.0 <= scale_tta <= MAX_TTA_ZOOM):
        raise InputError("scale_tta", scale_tta, expected)
    return float(scale_tta)


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


def _file_pixel_size(path: str | Path, rgb: np.ndarray, info: Any, option: float | None) -> tuple[float, str]:
    """The pixel size of one file by the package's order (no manifest): metadata, option, red cells."""
    def red_cells() -> tuple[float | None, str]:
        um, details = estimate_um_per_px(rgb)
        return (um, f"{details['n_cells']} cells") if um is not None else (None, str(details["reason"]))

    return pixel_size.resolve(where=str(path), metadata=info.um_per_px, metadata_source=info.um_per_px_source,
                              option=option, estimate=red_cells)


def predict_files(paths: Sequence[str | Path], *, options: InferenceOptions = InferenceOptions(),
                  um_per_px: float | None = None, labels: str | Sequence[str] | None = None,
                  progress: Progress | None = None) -> dict[str, Any]:
    """Classify image files; unreadable files and files of unknown pixel size are listed and skipped.

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
    progress
        Called after each file.

    Returns
    -------
    dict
        ``rows`` (one per classified file: path, pixel size and its source, label, probability,
        ``p_<label>`` columns), ``labels``, ``failures``, ``model``, ``models``,
        ``harmonisation``, ``tta``, ``scale_tta_zooms``.
    """
    pixel_size.check_um_per_px(um_per_px)
    loaded, engine = options.open()
    geom = Geometry(loaded.preprocessing.um_per_px, loaded.preprocessing.input_size)
    imgs, rows, failures = [], [], []
    for k, p in enumerate(paths):
        try:
            rgb, info = read_image(p)
            um, src = _file_pixel_size(p, rgb, info, um_per_px)
            imgs.append(to_canonical(rgb, um_per_px=um, canonical_um_per_px=geom.um_per_px, size=geom.input_size))
            rows.append({"path": str(p), "um_per_px": round(float(um), 5), "um_per_px_source": src})
        except (HemotwinError, OSError, ValueError) as exc:
            failures.append({"path": str(p), "error": str(exc)})
        if progress:
            progress(k + 1, len(paths))
    batch = np.stack(imgs) if imgs else np.zeros((0, geom.input_size, geom.input_size, 3), np.uint8)
    harmonisation: dict[str, Any] = {"harmonised": False}
    if options.harmonise:
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
            "models": ensemble_paths(options.model),
            "harmonisation": harmonisation, "tta": options.tta, "scale_tta_zooms": list(engine.zooms)}


def write_predictions(path: str | Path, result: dict[str, Any]) -> Path:
    """Write :func:`predict_files`' rows as a CSV (a header only when there are none)."""
    rows = result["rows"]
    with open(path, "w", newline="") as fh:
        keys = list(rows[0]) if rows else ["path", "label", "probability"]
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    return Path(path)


def predict_to_csv(inputs: Sequence[str | Path], out: str | Path, *, options: InferenceOptions = InferenceOptions(),
                   overwrite: bool = False, um_per_px: float | None = None,
                   labels: str | Sequence[str] | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """Classify image files and folders and write the CSV ``out``: the ``predict`` workflow.

    Parameters
    ----------
    inputs
        Image files or folders (every image file inside, :func:`expand_image_paths`).
    out
        The CSV to write; an existing file is replaced only with ``overwrite``.
    overwrite
        Allow replacing ``out``.
    options, um_per_px, labels, progress
        See :func:`predict_files`.

    Returns
    -------
    dict
        :func:`predict_files`' result with ``csv`` (the path written).
    """
    from hemotwin.io.outputs import prepare_output_file

    pixel_size.check_um_per_px(um_per_px)
    paths = expand_image_paths(inputs)
    dest = prepare_output_file(out, overwrite=overwrite)
    res = predict_files(paths, options=options, um_per_px=um_per_px, labels=labels, progress=progress)
    res["csv"] = str(write_predictions(dest, res))
    return res
