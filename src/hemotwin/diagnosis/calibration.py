"""Measure the detection + classification chain on twin fields with exact truth (a chain calibration).

The twin renders fields holding an equal number of white cells of each of the 15 classes through
one scanner profile; the same detector, crops and model as ``hemotwin analyze`` process them, and
every detection is matched to the ground-truth cell under it. The result is a
:class:`~hemotwin.diagnosis.correction.ChainCalibration`: the confusion counts (true class x call,
with false detections as the *artefact* row), and per class how many cells the detector found and
missed. ``analyze`` uses it to report a misclassification-corrected interval beside the plain
Clopper–Pearson one.

A calibration belongs to one model file (its SHA-256) and one profile; the package ships one per
preset for the shipped model (``diagnosis/data/calibration_<preset>.json``) and
:func:`find_calibration` picks the one matching a sample's model and pixel size.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from hemotwin.diagnosis.classify import DEFAULT_CONFIDENCE, CellClassifier
from hemotwin.diagnosis.correction import ARTEFACT, ChainCalibration
from hemotwin.errors import InputError
from hemotwin.taxonomy import CLASS_CODES

__all__ = ["calibrate_chain", "chain_cells", "field_cell_crops", "find_calibration", "match_detections",
           "shipped_calibrations", "write_chain_calibration"]

Progress = Callable[[int, int], None]

#: Pixel sizes within this relative distance count as "the same scanner" when picking a calibration.
UM_TOLERANCE = 0.15


def match_detections(detections, rendering) -> tuple[list[str | None], list[str]]:
    """Match a field's white-cell detections to the twin's ground truth.

    A detection belongs to the true cell under its centroid, else to the true cell covering more than
    half of its mask; a true cell matched twice keeps its first detection and the others are
    artefacts (a split cell counts twice). Returns the true label of each detection (None =
    artefact) and the labels of the true cells no detection found.
    """
    gt = {o.id: o.label for o in rendering.objects if o.kind == "wbc"}
    masks = rendering.wbc_masks
    used: set[int] = set()
    out: list[str | None] = []
    for d in detections:
        cy, cx = (round(v) for v in d.centroid)
        h, w = rendering.instances.shape
        cy, cx = min(max(cy, 0), h - 1), min(max(cx, 0), w - 1)
        hit = next((i for i, m in masks.items() if m[cy, cx]), None)
        if hit is None:
            r0, c0, r1, c1 = d.bbox
            area = max(1, int(d.mask.sum()))
            for i, m in masks.items():
                if (m[r0:r1, c0:c1] & d.mask).sum() > 0.5 * area:
                    hit = i
                    break
        if hit is None or hit in used or hit not in gt:
            out.append(None)
            continue
        used.add(hit)
        out.append(gt[hit])
    missed = [lab for i, lab in gt.items() if i not in used]
    return out, missed


def _detected_fields(profile: str, labels: list[str], *, seed: int, workers: int, summary: dict[str, Any],
                     randomize: float = 0.0, progress: Progress | None = None, specimens: str = "procedural",
                     library: str | None = None):
    """Render twin fields holding ``labels``, detect, and match.

    ``specimens`` and ``library`` choose where the white cells come from (docs/cell_library.md).

    Yields ``(rendering, detections not cut by the edge, their true labels)`` per field and fills
    ``summary`` with ``missed``, ``notes``, ``n_fields`` and ``profile`` as it goes.
    """
    from hemotwin.diagnosis.virtual import SampleConfig, pool_map, render_field_task, sample_plan
    from hemotwin.twin.datasets import item_seed
    from hemotwin.vision.detect import detect_cells

    base = sample_plan(SampleConfig(case="normal", cells=1, profile=profile, seed=seed))
    prof, size_px, per_field = base["profile"], base["size_px"], base["per_field"]
    fields = [labels[k:k + per_field] for k in range(0, len(labels), per_field)]
    if randomize > 0:
        from hemotwin.twin.profiles import randomize as randomize_profile

        profs = [randomize_profile(prof, np.random.default_rng(item_seed(seed, 5000 + k)), randomize)
                 for k in range(len(fields))]
    else:
        profs = [prof] * len(fields)
    tasks = [(profs[k], size_px, f, item_seed(seed, 1000 + k), 150.0, specimens, library)
             for k, f in enumerate(fields)]
    summary.update(missed=[], notes=[], n_fields=0, profile=prof)
    for res in pool_map(render_field_task, tasks, workers, progress):
        if not res["ok"]:
            summary["notes"].append(f"field seed {res['seed']}: {res['error']}")
            continue
        for r in res["renderings"]:
            summary["n_fields"] += 1
            fd = detect_cells(r.image, um_per_px=r.um_per_px)
            dets = [d for d in fd.wbc if not d.touches_border]
            truth, miss = match_detections(dets, r)
            summary["missed"] += miss
            yield r, dets, truth


def chain_cells(profile: str, labels: list[str], *, classifier: CellClassifier, seed: int, workers: int = 1,
                progress: Progress | None = None, specimens: str = "procedural",
                library: str | None = None) -> dict[str, Any]:
    """Render twin fields holding ``labels`` and run the analysis chain on them, cell by cell.

    ``specimens`` and ``library``: twin-drawn white cells, or real cells of a cell library
    (docs/cell_library.md), so the chain can be measured on fields of real cells.

    Returns
    -------
    dict
        ``cells``: one ``(true label or None for a false detection, call, confidence)`` per
        detection not cut by the field edge; ``missed``: labels of true cells no detection found;
        ``n_fields``, ``notes``, ``profile`` (the ScannerProfile).
    """
    cells: list[tuple[str | None, str, float]] = []
    summary: dict[str, Any] = {}
    for r, dets, truth in _detected_fields(profile, labels, seed=seed, workers=workers, summary=summary,
                                           progress=progress, specimens=specimens, library=library):
        if not dets:
            continue
        crops = np.stack([classifier.crop(r.image, d, um_per_px=r.um_per_px) for d in dets])
        calls, conf, _ = classifier.calls(classifier.probabilities(crops))
        cells += [(t, c, float(p)) for t, c, p in zip(truth, calls, conf, strict=True)]
    return {"cells": cells, **summary}


def field_cell_crops(profile: str, labels: list[str], *, seed: int, size_um: float = 28.0, randomize: float = 0.0,
                     workers: int = 1, progress: Progress | None = None) -> dict[str, Any]:
    """Cells cut from twin fields exactly where the analysis chain cuts them, with their true labels.

    Training material for a classifier that must work on detections in crowded fields (neighbouring
    white and red cells, detection-centred crops) rather than on isolated, perfectly centred cells.
    Use seeds no calibration or benchmark uses.

    Parameters
    ----------
    profile
        Scanner preset name or profile file.
    labels
        The white cells to render (dealt to fields in this order).
    seed
        Seed of the fields.
    size_um
        Side of each crop in µm (at the field's pixel size).
    randomize
        Strength of a per-field randomised neighbour of the profile (0 = the profile itself).
    workers
        Rendering processes.

    Returns
    -------
    dict
        ``crops`` (list of ``n x n x 3`` uint8 at the field's pixel size), ``labels`` (true class
        code of each; false detections are left out), ``um_per_px`` and ``field`` (index of the
        field it was cut from) per crop, ``missed``, ``n_fields``, ``notes``.
    """
    from hemotwin.vision.detect import crop_cell

    crops: list[np.ndarray] = []
    out_labels: list[str] = []
    ums: list[float] = []
    field: list[int] = []
    summary: dict[str, Any] = {}
    for k, (r, dets, truth) in enumerate(_detected_fields(profile, labels, seed=seed, workers=workers,
                                                          summary=summary, randomize=randomize, progress=progress)):
        for d, t in zip(dets, truth, strict=True):
            if t is None:
                continue
            crops.append(crop_cell(r.image, d, size_um=size_um, um_per_px=r.um_per_px))
            out_labels.append(t)
            ums.append(float(r.um_per_px))
            field.append(k)
    summary.pop("profile")
    return {"crops": crops, "labels": out_labels, "um_per_px": ums, "field": field, **summary}


def calibrate_chain(profile: str, *, model: str | Path | None = None, cells_per_class: int = 300, seed: int = 90210,
                    confidence: float = DEFAULT_CONFIDENCE, workers: int = 1,
                    progress: Progress | None = None) -> ChainCalibration:
    """Measure the chain's confusion matrix and detection rates under ``profile``.

    Parameters
    ----------
    profile
        Scanner preset name or profile file.
    model
        Model file (default: the shipped model).
    cells_per_class
        White cells rendered per class (15 classes). 300 (the shipped calibrations; 2.5-4.5 min per
        preset on 2 cores) bounds a confusion never observed in a row below ~1 % (Jeffreys 97.5 %
        quantile); 80 left ~3 %, enough for a few misreads to explain a rare class's calls away.
    seed
        Seed of the fields (use one the analysed samples do not use).
    confidence
        Review threshold recorded with the calibration (the counts include referred cells).
    workers
        Rendering processes.
    """
    from hemotwin.twin.profiles import load_profile

    if isinstance(cells_per_class, bool) or not isinstance(cells_per_class, int) or cells_per_class < 1:
        raise InputError("cells_per_class", cells_per_class, "an integer >= 1")
    load_profile(profile)  # a bad preset or profile file fails now, not after the model has loaded
    clf = CellClassifier.open(model, num_threads=1)
    rng = np.random.default_rng([seed, 11])
    labels = [c for c in CLASS_CODES for _ in range(cells_per_class)]
    labels = [labels[i] for i in rng.permutation(len(labels))]
    res = chain_cells(profile, labels, classifier=clf, seed=seed, workers=workers, progress=progress)
    kt, kc = len(CLASS_CODES) + 1, len(clf.labels)
    conf = np.zeros((kt, kc), dtype=np.int64)
    detected = np.zeros(len(CLASS_CODES), dtype=np.int64)
    missed = np.zeros(len(CLASS_CODES), dtype=np.int64)
    for lab in res["missed"]:
        missed[CLASS_CODES.index(lab)] += 1
    for t, c, _ in res["cells"]:
        row = len(CLASS_CODES) if t is None else CLASS_CODES.index(t)
        conf[row, clf.labels.index(c)] += 1
        if t is not None:
            detected[row] += 1
    prof = res["profile"]
    return ChainCalibration(model_sha256=clf.sha256, profile=prof.name, um_per_px=prof.camera.um_per_px,
                            call_labels=clf.labels, confusion=conf.tolist(), detected=detected.tolist(),
                            missed=missed.tolist(), cells_per_class=cells_per_class, n_fields=res["n_fields"],
                            seed=seed, confidence_threshold=confidence, notes=res["notes"])


def write_chain_calibration(out: str | Path, profile: str, *, model: str | Path | None = None,
                            cells_per_class: int = 300, seed: int = 90210, overwrite: bool = False, workers: int = 1,
                            progress: Progress | None = None) -> tuple[ChainCalibration, Path]:
    """Measure the chain under ``profile`` (:func:`calibrate_chain`) and save it as JSON at ``out``.

    Parameters
    ----------
    out
        Calibration file to write (refused when it exists and ``overwrite`` is false; checked before
        the minutes of rendering). A folder made for it goes again when the run fails.
    profile, model, cells_per_class, seed, workers, progress
        As for :func:`calibrate_chain`.
    overwrite
        Replace an existing file.

    Returns
    -------
    calibration : ChainCalibration
    path : Path
        The file written.
    """
    from hemotwin.io.outputs import output_file

    with output_file(out, overwrite=overwrite) as dest:
        cal = calibrate_chain(profile, model=model, cells_per_class=cells_per_class, seed=seed, workers=workers,
                              progress=progress)
        dest.write_text(cal.model_dump_json(indent=1) + "\n")
    return cal, dest


def shipped_calibrations() -> list[ChainCalibration]:
    """The calibrations shipped in ``diagnosis/data`` (for the shipped model)."""
    out = []
    for entry in resources.files("hemotwin.diagnosis").joinpath("data").iterdir():
        if entry.name.startswith("calibration_") and entry.name.endswith(".json"):
            out.append(ChainCalibration.model_validate_json(entry.read_text()))
    return out


def find_calibration(model_sha256: str, um_per_px: float, *, profile: str | None = None,
                     candidates: list[ChainCalibration] | None = None) -> tuple[ChainCalibration | None, str]:
    """The calibration for a model and pixel size, and a sentence saying which (or why none).

    Candidates must have the model's checksum; among them the named ``profile`` wins, else the one
    whose pixel size is nearest to ``um_per_px`` within ±15 %.
    """
    cands = shipped_calibrations() if candidates is None else candidates
    same_model = [c for c in cands if c.model_sha256 == model_sha256]
    if not same_model:
        return None, ("no chain calibration for this model (run `hemotwin calibrate-chain`); only the plain "
                      "Clopper–Pearson interval on the called cells is reported")
    if profile is not None:
        for c in same_model:
            if c.profile == profile:
                return c, f"chain calibration of profile {c.profile} ({c.um_per_px:g} µm/px)"
    best = min(same_model, key=lambda c: abs(np.log(c.um_per_px / um_per_px)))
    if abs(best.um_per_px / um_per_px - 1) > UM_TOLERANCE:
        return None, (f"no chain calibration within ±{UM_TOLERANCE:.0%} of {um_per_px:.3g} µm/px (nearest: "
                      f"{best.profile}, {best.um_per_px:g}); only the plain Clopper–Pearson interval is reported")
    return best, (f"chain calibration of profile {best.profile} ({best.um_per_px:g} µm/px, model accuracy on twin "
                  f"cells {best.accuracy():.0%}), chosen by pixel size")


def calibration_summary(cal: ChainCalibration) -> dict[str, Any]:
    """Short JSON-ready description of a calibration for reports."""
    m = np.asarray(cal.confusion)
    return {"profile": cal.profile, "um_per_px": cal.um_per_px, "model_sha256": cal.model_sha256,
            "accuracy": round(cal.accuracy(), 4), "cells": int(m[: len(CLASS_CODES)].sum()),
            "artefacts": int(m[len(CLASS_CODES)].sum()), "detected": int(sum(cal.detected)),
            "missed": int(sum(cal.missed)), "cells_per_class": cal.cells_per_class, "seed": cal.seed,
            "artefact_label": ARTEFACT}
