"""Assessing a model: scored on a labelled data set, or stressed along the twin's imaging parameters.

The workflows behind ``evaluate`` and ``stress``: the metrics and the report are
:mod:`hemotwin.vision.evaluate`, the sweeps :mod:`hemotwin.vision.stress`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hemotwin import taxonomy
from hemotwin.io import pixel_size
from hemotwin.vision.data import coarsest_common, load_training_data, map_items_to
from hemotwin.vision.datasets import Dataset, to_canonical
from hemotwin.vision.geometry import Geometry, Prepared, Progress, prepare, summary_of
from hemotwin.vision.inference import (
    InferenceOptions,
    collapse_to,
    ensemble_paths,
    harmonise_arrays,
    open_engine,
    predict_arrays,
)

__all__ = ["evaluate_model", "stress_model"]


def evaluate_model(data: str | Path, out_dir: str | Path, *, options: InferenceOptions = InferenceOptions(),
                   overwrite: bool = False, um_per_px: float | None = None, exclude: Sequence[str] = (),
                   progress: Progress | None = None) -> dict[str, Any]:
    """Score a model on a labelled data set; writes report.json, report.html, figures and predictions.csv.

    The model's probabilities are collapsed to the data set's labels (e.g. 15 classes -> the five
    WBC classes of BCCD); probability on classes with no counterpart is dropped and reported.

    Parameters
    ----------
    data
        Labelled ImageFolder or manifest.csv.
    out_dir
        The report folder; a non-empty one is written into only with ``overwrite``.
    overwrite
        Allow replacing the report files in ``out_dir``.
    options
        The model(s) and how they read (:class:`~hemotwin.vision.inference.InferenceOptions`); several
        model files are scored as one seed ensemble (the mean of their probabilities).
    um_per_px
        Pixel size of images that carry none (:mod:`hemotwin.io.pixel_size`).
    exclude
        True labels not scored (their cells are still listed in predictions.csv).
    progress
        Called after each image read.

    Returns
    -------
    dict
        ``metrics`` (:func:`~hemotwin.vision.evaluate.evaluate_predictions`), ``report`` (the
        paths written) and ``failures`` (images not read).
    """
    from hemotwin.io.outputs import prepare_output_dir
    from hemotwin.io.provenance import file_sha256, provenance
    from hemotwin.vision.evaluate import evaluate_predictions, write_report

    pixel_size.check_um_per_px(um_per_px)
    out_dir = prepare_output_dir(out_dir, overwrite=overwrite)
    loaded, engine = options.open()
    geom = Geometry(loaded.preprocessing.um_per_px, loaded.preprocessing.input_size)
    (ds,), notes = load_training_data([data], um_per_px=um_per_px)
    ds, skipped = map_items_to(ds, coarsest_common(ds, loaded.labels))
    prep = prepare(ds, geom, working=False, um_per_px=um_per_px, progress=progress)
    truth = [ds.items[i].label for i in prep.kept]
    target = tuple(lab for lab in taxonomy.canonical_labels() if lab in set(truth))
    images, harmonisation = (harmonise_arrays(loaded, prep.images) if options.harmonise
                             else (prep.images, {"harmonised": False}))
    probs, target, dropped = collapse_to(predict_arrays(engine, images), loaded.labels, target)
    probs = np.nan_to_num(probs, nan=0.0)  # classes with no counterpart in the data set's labels
    metrics = evaluate_predictions(truth, probs, target, exclude=exclude)
    metrics["unmapped_probability_mean"] = float(np.mean(dropped)) if len(dropped) else 0.0
    metrics["read"] = summary_of(prep)
    models = ensemble_paths(options.model)
    prov = provenance(command="evaluate", config={"data": str(data), "model": str(loaded.path), "models": models,
                                                  "exclude": list(exclude), "um_per_px": um_per_px,
                                                  "harmonise": options.harmonise, "tta": options.tta,
                                                  "scale_tta": options.scale_tta,
                                                  "scale_tta_zooms": list(engine.zooms)},
                      inputs={"model_sha256": file_sha256(loaded.path),
                              **({f"model_sha256[{i}]": file_sha256(m) for i, m in enumerate(models)}
                                 if len(models) > 1 else {})},
                      extra={"model_provenance": loaded.provenance, "notes": notes + skipped[:20],
                             "failures": prep.failures, "harmonisation": harmonisation})
    paths = write_report(metrics, out_dir, title=f"hemotwin evaluation: {Path(data).name}", provenance=prov)
    paths["predictions"] = _write_cell_predictions(Path(out_dir) / "predictions.csv", ds, prep,
                                                   (truth, probs, target), exclude)
    return {"metrics": metrics, "report": {k: str(v) for k, v in paths.items()}, "failures": prep.failures}


def _write_cell_predictions(path: Path, ds: Dataset, prep: Prepared,
                            scored: tuple[Sequence[str], np.ndarray, Sequence[str]], exclude: Sequence[str]) -> Path:
    """One row per scored cell: file, truth, call, confidence, every class's probability.

    What a reader needs to check the metrics cell by cell, or to pair two models (or two scorings)
    on the same cells (McNemar); ``scored`` (the truth, probabilities and their labels) is False
    in a row for the cells ``exclude`` left out.
    """
    truth, probs, labels = scored
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


def stress_model(out_dir: str | Path, *, overwrite: bool = False, model: str | Path | None = None,
                 profile: str = "analyzer-100x", per_class: int = 8, seed: int = 0, backend: str = "onnxruntime",
                 progress: Progress | None = None) -> dict[str, Any]:
    """Run the stress test (:mod:`hemotwin.vision.stress`) for a model; writes JSON and a plot.

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
    progress
        Called as the sweeps advance.

    Returns
    -------
    dict
        ``result`` (:func:`~hemotwin.vision.stress.stress_test`), ``plot`` and ``json`` (the paths
        written).
    """
    from hemotwin.io.outputs import prepare_output_dir
    from hemotwin.io.provenance import provenance
    from hemotwin.twin.profiles import load_profile
    from hemotwin.vision.stress import plot_stress, stress_test

    out = prepare_output_dir(out_dir, overwrite=overwrite)
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
    plot = plot_stress(res, out / "stress.png")
    res["provenance"] = provenance(command="stress", config={"model": str(loaded.path), "profile": prof.to_dict(),
                                                             "per_class": per_class}, seeds={"seed": seed})
    (out / "stress.json").write_text(json.dumps(res, indent=2))
    return {"result": res, "plot": str(plot), "json": str(out / "stress.json")}
