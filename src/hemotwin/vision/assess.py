"""Assessing a model: scored on a labelled data set, or stressed along the twin's imaging parameters.

The workflows behind ``evaluate`` and ``stress``: the metrics and the report are
:mod:`hemotwin.vision.evaluate`, the sweeps :mod:`hemotwin.vision.stress`.

Reports show the data set's files by their path inside the data folder given, and model files as
the user named them (the shipped model by its name): never paths of the machine that made them.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hemotwin import taxonomy
from hemotwin.errors import HemotwinError, InputError
from hemotwin.io import pixel_size
from hemotwin.io.images import read_image
from hemotwin.io.outputs import check_output_folder
from hemotwin.vision.data import coarsest_common, load_training_data, map_items_to
from hemotwin.vision.datasets import Dataset, to_canonical
from hemotwin.vision.geometry import Geometry, Progress, item_pixel_size
from hemotwin.vision.inference import (
    BACKENDS,
    DEFAULT_MIN_CONFIDENCE,
    InferenceOptions,
    checked_cell,
    collapse_to,
    harmonise_arrays,
    model_names,
    ood_scores,
    open_engine,
    predict_arrays,
)
from hemotwin.vision.input_check import DEFAULT_LIMITS, CheckLimits
from hemotwin.vision.stress import DEFAULT_FLOOR, check_floor

__all__ = ["evaluate_model", "stress_model"]


@dataclass
class _Read:
    """A data set read for scoring: the images to classify and what happened to every other item.

    Attributes
    ----------
    images
        ``N x S x S x 3`` uint8 at the model's geometry, the items that passed the input check.
    kept
        Their indices into the data set.
    um_per_px, um_source
        Each kept item's pixel size and its source.
    rejected
        Per item refused by the input check: ``index``, ``um_per_px``, ``um_source``, ``reason``.
    failures
        Per item not read: ``index`` and ``error``.
    """

    images: np.ndarray
    kept: list[int] = field(default_factory=list)
    um_per_px: list[float] = field(default_factory=list)
    um_source: list[str] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)


def _read_checked(dataset: Dataset, geometry: Geometry, *, um_per_px: float | None, limits: CheckLimits | None,
                  progress: Progress | None) -> _Read:
    """Read every item at the model's geometry and check it (:func:`~hemotwin.vision.inference.checked_cell`)."""
    imgs: list[np.ndarray] = []
    out = _Read(images=np.zeros((0, geometry.input_size, geometry.input_size, 3), np.uint8))
    for i, item in enumerate(dataset.items):
        try:
            rgb, info = read_image(item.path)
            um, src = item_pixel_size(item, info, um_per_px)
            img, check = checked_cell(rgb, um_per_px=um, geometry=geometry, limits=limits)
        except (HemotwinError, OSError, ValueError) as exc:
            out.failures.append({"index": i, "error": str(exc)})
        else:
            if check is not None and not check.ok:
                out.rejected.append({"index": i, "um_per_px": um, "um_source": src, "reason": check.reason})
            else:
                imgs.append(img)
                out.kept.append(i)
                out.um_per_px.append(um)
                out.um_source.append(src)
        if progress:
            progress(i + 1, len(dataset.items))
    if imgs:
        out.images = np.stack(imgs)
    return out


def _data_folder(data: str | Path) -> Path:
    """The folder a data set lives in: ``data`` itself, or the folder of a manifest file."""
    data = Path(data)
    return data if data.is_dir() or not data.suffix else data.parent


def _inside(path: Path, folder: Path) -> bool:
    """``path`` is ``folder`` or lies under it (both resolved, so links and ``..`` do not hide it)."""
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def _shown(path: str | Path, folder: Path) -> str:
    """A data file as a report shows it: its path inside the data folder, else its name alone."""
    p = Path(path)
    if _inside(p, folder):
        return Path(os.path.relpath(p.resolve(), folder.resolve())).as_posix()
    return p.name


def _without_folder(text: str, folder: Path) -> str:
    """``text`` (a note naming files) with the data folder's absolute path taken out of the file names."""
    for prefix in {str(folder.resolve()), str(folder.absolute())}:
        text = text.replace(prefix + os.sep, "")
    return text


def _check_report_folder(out_dir: str | Path, data: str | Path) -> None:
    """Refuse a report folder inside the data folder: its files would be read as data next time."""
    folder = _data_folder(data)
    if folder.exists() and _inside(Path(out_dir), folder):
        raise InputError("out", str(out_dir), f"a folder outside the data folder {data} (a folder inside it is "
                         "read as one more class of cells by the next evaluation or training)")


def _model_summary(loaded: Any) -> dict[str, Any]:
    """What a report says of the model that was scored: its version, labels, training and metrics.

    The model file's own provenance names the training folders on the machine that trained it;
    a report shows only this summary (the file's SHA-256 identifies the full record).
    """
    prov = loaded.provenance or {}
    aug = prov.get("augmentation")
    return {"hemotwin_version": prov.get("hemotwin_version"), "created_utc": prov.get("created_utc"),
            "labels": list(loaded.labels), "seeds": prov.get("seeds"),
            "augmentation": aug.get("mode") if isinstance(aug, dict) else aug,
            "scale_jitter": aug.get("scale_jitter") if isinstance(aug, dict) else None,
            "validation_metrics": prov.get("metrics"), "best_epoch": prov.get("best_epoch"),
            "input": {"um_per_px": loaded.preprocessing.um_per_px, "size_px": loaded.preprocessing.input_size}}


def evaluate_model(data: str | Path, out_dir: str | Path, *, options: InferenceOptions = InferenceOptions(),
                   overwrite: bool = False, um_per_px: float | None = None, exclude: Sequence[str] = (),
                   min_confidence: float = DEFAULT_MIN_CONFIDENCE, input_check: CheckLimits | None = DEFAULT_LIMITS,
                   progress: Progress | None = None) -> dict[str, Any]:
    """Score a model on a labelled data set; writes report.json, report.html, figures and predictions.csv.

    The model's probabilities are collapsed to the data set's labels (e.g. 15 classes -> the five
    WBC classes of BCCD); probability on classes with no counterpart is dropped and reported.
    Every image is checked first (:mod:`hemotwin.vision.input_check`): a rejected one is not
    classified and **not scored**; the report counts them (``n_rejected``, per class) and gives the
    accuracy had each been an error (:func:`~hemotwin.vision.evaluate.evaluate_predictions`).
    The options, the report folder and its place are checked before any image is read.

    Parameters
    ----------
    data
        Labelled ImageFolder or manifest.csv.
    out_dir
        The report folder; a non-empty one is written into only with ``overwrite``. Not inside the
        data folder (it would be read as a class of cells).
    overwrite
        Allow replacing the report files in ``out_dir``.
    options
        The model(s) and how they read (:class:`~hemotwin.vision.inference.InferenceOptions`); several
        model files are scored as one seed ensemble (the mean of their probabilities).
    um_per_px
        Pixel size of images that carry none (:mod:`hemotwin.io.pixel_size`).
    exclude
        True labels not scored (their cells are still listed in predictions.csv).
    min_confidence
        A call below this top probability is listed as ``unsure`` in predictions.csv (still scored).
    input_check
        The limits of the input check; None classifies and scores every readable image.
    progress
        Called after each image read.

    Returns
    -------
    dict
        ``metrics`` (:func:`~hemotwin.vision.evaluate.evaluate_predictions`), ``report`` (the
        paths written), ``failures`` (images not read) and ``rejected`` (images the input check
        refused), each ``{"path", "error"}`` with the path inside the data folder.
    """
    from hemotwin.io.outputs import output_dir
    from hemotwin.io.provenance import file_sha256, provenance
    from hemotwin.vision.evaluate import evaluate_predictions, write_report

    pixel_size.check_um_per_px(um_per_px)
    options.check()
    if isinstance(min_confidence, bool) or not (isinstance(min_confidence, int | float) and 0 <= min_confidence <= 1):
        raise InputError("min_confidence", min_confidence, "a probability in [0, 1]")
    _check_report_folder(out_dir, data)
    check_output_folder(out_dir)
    folder = _data_folder(data)
    with output_dir(out_dir, overwrite=overwrite) as out:
        loaded, engine = options.open()
        geom = Geometry(loaded.preprocessing.um_per_px, loaded.preprocessing.input_size)
        (ds,), notes = load_training_data([data], um_per_px=um_per_px)
        ds, skipped = map_items_to(ds, coarsest_common(ds, loaded.labels))
        read = _read_checked(ds, geom, um_per_px=um_per_px, limits=input_check, progress=progress)
        truth = [ds.items[i].label for i in read.kept]
        refused = [ds.items[r["index"]].label for r in read.rejected]
        target = tuple(lab for lab in taxonomy.canonical_labels() if lab in {*truth, *refused})
        images, harmonisation = (harmonise_arrays(loaded, read.images) if options.harmonise
                                 else (read.images, {"harmonised": False}))
        model_probs = predict_arrays(engine, images)
        probs, target, dropped = collapse_to(model_probs, loaded.labels, target)
        probs = np.nan_to_num(probs, nan=0.0)  # classes with no counterpart in the data set's labels
        metrics = evaluate_predictions(truth, probs, target, exclude=exclude, rejected=refused)
        metrics["unmapped_probability_mean"] = float(np.mean(dropped)) if len(dropped) else 0.0
        metrics["read"] = {"read": len(read.kept) + len(read.rejected), "failed": len(read.failures),
                           "rejected": len(read.rejected), "um_per_px_sources": _counts(read.um_source),
                           "um_per_px_median": float(np.median(read.um_per_px)) if read.um_per_px else None}
        failures = [{"path": _shown(ds.items[f["index"]].path, folder), "error": _without_folder(f["error"], folder)}
                    for f in read.failures]
        rejected = [{"path": _shown(ds.items[r["index"]].path, folder), "error": f"rejected: {r['reason']}"}
                    for r in read.rejected]
        names = model_names(options.model)
        prov = provenance(command="evaluate", config={"data": str(data), "model": names[0], "models": names,
                                                      "exclude": list(exclude), "um_per_px": um_per_px,
                                                      "harmonise": options.harmonise, "tta": options.tta,
                                                      "scale_tta": options.scale_tta,
                                                      "scale_tta_zooms": list(engine.zooms),
                                                      "min_confidence": min_confidence,
                                                      "input_check": None if input_check is None
                                                      else dict(vars(input_check))},
                          inputs={"model_sha256": file_sha256(loaded.path),
                                  **({f"model_sha256[{i}]": file_sha256(m) for i, m in enumerate(options.model)}
                                     if len(names) > 1 else {})},
                          extra={"model_summary": _model_summary(loaded),
                                 "notes": [_without_folder(n, folder) for n in notes + skipped[:20]],
                                 "failures": failures, "rejected": rejected, "harmonisation": harmonisation})
        paths = write_report(metrics, out, title=f"hemotwin evaluation: {Path(data).name}", provenance=prov)
        paths["predictions"] = _write_cell_predictions(
            Path(out) / "predictions.csv", ds, read, (truth, probs, target, ood_scores(model_probs)),
            exclude=exclude, min_confidence=min_confidence, folder=folder)
    return {"metrics": metrics, "report": {k: str(v) for k, v in paths.items()}, "failures": failures,
            "rejected": rejected}


def _counts(values: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def _write_cell_predictions(path: Path, ds: Dataset, read: _Read,
                            scored: tuple[Sequence[str], np.ndarray, Sequence[str], np.ndarray], *,
                            exclude: Sequence[str], min_confidence: float, folder: Path) -> Path:
    """One row per item of the data set, in its order: file, truth, status, call, confidence, scores.

    What a reader needs to check the metrics cell by cell, or to pair two models (or two scorings)
    on the same cells (McNemar). ``status`` is ``ok`` or ``unsure`` (top probability below
    ``min_confidence``; scored all the same) for a classified cell, ``rejected`` by the input check
    or ``skipped`` (not read), with the ``reason``; those have no call and are not ``scored``, nor
    are the cells whose truth ``exclude`` lists. ``path`` is the file's path inside the data folder.
    """
    truth, probs, labels, ood = scored
    unscored = set(exclude)
    rows: dict[int, list[Any]] = {}
    blank = [""] * len(labels)
    for k, (i, t, p, o) in enumerate(zip(read.kept, truth, probs, ood, strict=True)):
        call, conf = labels[int(np.argmax(p))], float(p.max())
        unsure = conf < min_confidence
        rows[i] = [t, "unsure" if unsure else "ok", f"top probability {conf:.3f} below {min_confidence:g}"
                   if unsure else "", call, f"{conf:.5f}", f"{float(o):.5f}", call == t, t not in unscored,
                   f"{read.um_per_px[k]:.5f}", read.um_source[k], *(f"{float(v):.5f}" for v in p)]
    for r in read.rejected:
        rows[r["index"]] = [ds.items[r["index"]].label, "rejected", r["reason"], "", "", "", "", False,
                            f"{r['um_per_px']:.5f}", r["um_source"], *blank]
    for f in read.failures:
        rows[f["index"]] = [ds.items[f["index"]].label, "skipped", _without_folder(f["error"], folder), "", "", "", "",
                            False, "", "", *blank]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "truth", "status", "reason", "predicted", "confidence", "ood_score", "correct", "scored",
                    "um_per_px", "um_per_px_source", *(f"p_{lab}" for lab in labels)])
        for i in sorted(rows):
            w.writerow([_shown(ds.items[i].path, folder), *rows[i]])
    return path


def stress_model(out_dir: str | Path, *, overwrite: bool = False, model: str | Path | None = None,
                 profile: str = "analyzer-100x", per_class: int = 8, seed: int = 0, backend: str = "onnxruntime",
                 floor: float = DEFAULT_FLOOR, progress: Progress | None = None) -> dict[str, Any]:
    """Run the stress test (:mod:`hemotwin.vision.stress`) for a model; writes JSON and a plot.

    The options and the output folder are checked before the model is loaded.

    Parameters
    ----------
    out_dir
        The output folder; a non-empty one is written into only with ``overwrite``.
    overwrite
        Allow replacing the files in ``out_dir``.
    model
        Model file (None: the shipped model).
    profile
        The scanner preset or profile file the cells are imaged with.
    per_class, seed
        Cells per class in the fixed set, and the seed that draws them.
    backend
        ``onnxruntime`` or ``torch``.
    floor
        The absolute accuracy the operating envelope requires
        (:data:`~hemotwin.vision.stress.DEFAULT_FLOOR`); a model below it at the nominal setting has
        no envelope.
    progress
        Called as the sweeps advance.

    Returns
    -------
    dict
        ``result`` (:func:`~hemotwin.vision.stress.stress_test`: absolute accuracies, the floor, the
        envelopes or the reason there is none), ``plot`` and ``json`` (the paths written).
    """
    from hemotwin.io.outputs import output_dir
    from hemotwin.io.provenance import provenance
    from hemotwin.twin.profiles import load_profile
    from hemotwin.vision.stress import plot_stress, stress_test

    floor = check_floor(floor)
    if backend not in BACKENDS:
        raise InputError("backend", backend, f"one of {', '.join(BACKENDS)}")
    if isinstance(per_class, bool) or not (isinstance(per_class, int) and per_class >= 1):
        raise InputError("per_class", per_class, "a whole number >= 1")
    prof = load_profile(profile)
    check_output_folder(out_dir)
    with output_dir(out_dir, overwrite=overwrite) as out:
        loaded, engine = open_engine(model, backend=backend)
        geom = Geometry(loaded.preprocessing.um_per_px, loaded.preprocessing.input_size)

        def predict(images: list[np.ndarray], um: float) -> np.ndarray:
            batch = np.stack([to_canonical(im, um_per_px=um, canonical_um_per_px=geom.um_per_px,
                                           size=geom.input_size) for im in images])
            return predict_arrays(engine, batch)

        def label_of(code: str) -> str | None:
            anc = [a for a in taxonomy.ancestors(code) if a in loaded.labels]
            return anc[0] if anc else None

        res = stress_test(predict, loaded.labels, profile=prof, codes=taxonomy.CLASS_CODES, label_of=label_of,
                          per_class=per_class, size_um=geom.input_size * geom.um_per_px * 1.05, seed=seed,
                          floor=floor, progress=progress)
        plot = plot_stress(res, out / "stress.png")
        res["provenance"] = provenance(command="stress", config={"model": model_names(model)[0],
                                                                 "profile": prof.to_dict(), "per_class": per_class,
                                                                 "floor": floor},
                                       seeds={"seed": seed})
        (out / "stress.json").write_text(json.dumps(res, indent=2))
    return {"result": res, "plot": str(plot), "json": str(out / "stress.json")}
