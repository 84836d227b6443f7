"""Realism of the twin against real CellaVision crops (PBC): colour, sizes and three realism measures.

**Colour and sizes** (the default run). For each white-cell class shared with PBC, ``--n`` real
images and ``--n`` twin crops (``--profile``, 360 x 360 px, seeds 0..n-1) are segmented by the *same*
threshold segmenter (``_segment.py``) into background / red cells / nucleus / cytoplasm. Reported per
class and compartment: the median CIE Lab (median over images of the per-image median) on both sides
and their CIEDE2000 difference (target <= 10); white-cell and red-cell diameters in µm (twin median vs
real median and IQR; pass = twin median inside the real IQR). PBC's pixel size is not in the files:
it is estimated with the red-cell ruler, 7.5 µm / median red-cell equivalent diameter in px
(docs/optics.md §1), so the real red-cell median is 7.5 µm by construction and the red-cell check
tests the twin against the real spread.

The segmenter is validated on the twin crops against the twin's exact ground truth (IoU per
compartment) — that is the anchor showing the thresholds are sane.

**Three realism measures** (options; each adds a section to the JSON). The real side is always the
PBC **morphometry hold-out** (``hemotwin.twin.morphometry.is_morphometry_holdout`` on each image's
path with its data set's folder, ``--pbc`` and ``--pbc-more``; the cells used to fit the twin's
morphometry never appear), platelets excluded, up to ``--holdout-n`` per class. Each real cell gets
the twin code of its finest known label (PBC's file-name prefixes: band/segmented neutrophil,
promyelocyte/myelocyte/metamyelocyte; else ``FOLDER_CODE``) and the twin side renders one cell of
that code per real cell, 36 µm wide like a PBC crop, through ``--profile`` (with each folder's
session white balance unless ``--no-session-wb``), so both sides hold the same classes in the same
numbers. ``--generator`` picks how twin cells are made (``procedural``, or ``module:function`` with
the signature of :func:`procedural`), so the same measures compare other generators.

- ``--two-sample``: a small CNN (``hemotwin.vision.two_sample``) is trained to tell real from twin
  crops, both brought to ``--ts-um-per-px`` (0.4) and ``--ts-size`` (64 px): a 25.6 µm field holds
  every class's cell (PBC monocytes 19 µm at the 75th percentile) with a margin, and 0.4 µm/px keeps
  what the morphology is (lobes, chromatin clumps, granule fields, 0.8 µm and up) while averaging
  away 4 x 4 pixels of what is not (JPEG 8 x 8 blocks, demosaicing and sensor noise). Held-out AUC
  with a bootstrap interval, per class (target <= 0.75). Anchor: the same test between two halves
  of the real hold-out (expected ~0.5).
- ``--morphometry``: ``hemotwin.twin.morphometry.measure_cell`` on both sides at their own pixel
  size; for every feature and class the two-sample Kolmogorov–Smirnov distance; median and maximum
  (targets <= 0.15 and none > 0.35). Anchor: the same distances between two halves of the real
  hold-out (the sampling floor).
- ``--twin-classifier``: train on twin cells only, test on real cells. Twin cells of the 10 codes
  PBC's folders map to (``--tc-classes all``: all 15, as the recipe), ``--tc-per-class`` (300) each,
  half under ``randomize(0.6)`` and half under ``randomize(1.0)`` neighbours of ``--profile``, 28 µm
  crops, train ``hemotwin.vision.training`` (``augment="color"``, ``--tc-epochs`` 12, one torch
  thread); ``hemotwin.vision.assess.evaluate_model`` scores it on the PBC hold-out (7 classes
  through the taxonomy mappings) and on the BCCD crops the label audit calls consistent
  (``benchmarks/data/bccd_label_audit.csv``, 0.0725 µm/px). A lighter version (about 20 min on 2
  cores) of ``bench_twin_only.sh`` (1.5 h: 1,200 cells per class of all 15 classes over four
  presets, 12 epochs). Anchor: the same model on unseen twin cells (analyzer-100x, seed 5001, 20 per
  class): a model that has not learnt the twin says nothing about the twin's realism.

Usage: ``.venv/bin/python benchmarks/bench_realism.py [--n 40] [--profile analyzer-100x]
[--pbc /work/shared/data/pbc] [--out realism.json]`` for colour and sizes;
``--skip-colour --two-sample --morphometry --twin-classifier [--seed 0] [--generator procedural]``
for the three measures. JSON on stdout, a table and progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.color import deltaE_ciede2000, rgb2lab

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _segment import BACKGROUND, CYTOPLASM, NUCLEUS, RED_CELL, iou, segment

from hemotwin.twin.profiles import load_profile

CLASS_MAP: dict[str, str] = {
    "NGS": "neutrophil", "LYT": "lymphocyte", "MON": "monocyte", "EOS": "eosinophil",
    "BAS": "basophil", "EBO": "erythroblast", "MYB": "ig", "MMZ": "ig", "PMO": "ig",
}
COMPARTMENTS = {"background": BACKGROUND, "red_cell": RED_CELL, "nucleus": NUCLEUS, "cytoplasm": CYTOPLASM}
RBC_UM = 7.5  # median normal red-cell diameter: the internal ruler
NOMINAL_PBC_UM_PER_PX = 0.1  # README: ~0.1 µm/px (CellaVision DM96)
DE_TARGET = 10.0
SIZE_PX = 360

# twin ground-truth compartment codes (hemotwin.twin.specimen.maps.Compartment)
GT_RED, GT_PLT, GT_CYTO, GT_NUC, GT_GRAN = 1, 2, 3, 4, 5


def _measure(rgb: np.ndarray) -> dict:
    seg = segment(rgb)
    lab = rgb2lab(rgb)
    out: dict = {"ok": seg.ok, "wbc_d_px": seg.wbc_diameter_px, "rbc_d_px": seg.rbc_diameters_px, "lab": {}}
    for name, code in COMPARTMENTS.items():
        m = seg.labels == code
        out["lab"][name] = np.median(lab[m], axis=0).tolist() if m.sum() >= 20 else None
    return out, seg


def _real_task(path: str) -> dict:
    rgb = np.asarray(Image.open(path).convert("RGB"))
    return _measure(rgb)[0]


def _safe(fn, arg) -> dict:
    """Run one item; a failure is returned as a record (project exceptions may not pickle)."""
    try:
        return fn(arg)
    except Exception as exc:  # a batch finishes the rest and reports failures
        return {"error": f"{type(exc).__name__}: {exc}", "item": str(arg)}


def _real_item(path: str) -> dict:
    return _safe(_real_task, path)


def _twin_item(args: tuple) -> dict:
    return _safe(_twin_task, args)


def _twin_task(args: tuple) -> dict:
    code, profile_json, seed = args
    from hemotwin.twin.datasets import render_cell
    from hemotwin.twin.profiles import ScannerProfile

    prof = ScannerProfile.model_validate_json(profile_json)
    r = render_cell(code, prof, size_px=SIZE_PX, seed=seed)
    res, seg = _measure(r.image)
    gt = r.compartments
    # central white cell = the wbc mask nearest the centre
    c = (gt.shape[0] // 2, gt.shape[1] // 2)
    wbc = None
    best = np.inf
    for m in r.wbc_masks.values():
        if not m.any():
            continue
        yx = np.argwhere(m).mean(axis=0)
        d = float(np.hypot(yx[0] - c[0], yx[1] - c[1]))
        if d < best:
            best, wbc = d, m
    if wbc is None:
        wbc = np.isin(gt, (GT_CYTO, GT_NUC, GT_GRAN))
    gt_nuc = wbc & (gt == GT_NUC)
    gt_cell = wbc
    # scoring only where the segmenter made a decision (255 = unassigned)
    res["iou"] = {
        "foreground": iou(seg.foreground, gt != 0),
        "background": iou(seg.labels == BACKGROUND, gt == 0),
        "nucleus": iou(seg.nucleus, gt_nuc),
        "white_cell": iou(seg.cell, gt_cell),
        "cytoplasm": iou(seg.labels == CYTOPLASM, gt_cell & ~gt_nuc),
        # precision: fraction of the pixels given a label that truly are that compartment (what the
        # colour medians see); the cytoplasm label is a ring sample, so its IoU is low by design
        "nucleus_precision": _prec(seg.nucleus, gt_nuc),
        "cytoplasm_precision": _prec(seg.labels == CYTOPLASM, gt_cell & ~gt_nuc),
        # precision of the red-cell pixels (only isolated, whole cells are kept)
        "red_cell_precision": float((gt[seg.labels == RED_CELL] == GT_RED).mean())
        if (seg.labels == RED_CELL).any() else float("nan"),
    }
    res["gt_wbc_d_px"] = float(2.0 * np.sqrt(wbc.sum() / np.pi))
    res["um_per_px"] = r.um_per_px
    return res


def _session_profile(base, target_lab: np.ndarray):
    """``base`` with ``processing.wb_error`` fitted so clear glass has ``target_lab``."""
    from scipy.optimize import minimize

    from hemotwin.twin.profiles import ScannerProfile
    from hemotwin.twin.render import optical_image, processing_matrix

    def with_gains(g):
        d = base.to_dict()
        d["processing"]["wb_error"] = [float(v) for v in np.clip(g, 0.5, 2.0)]
        return ScannerProfile.from_dict(d)

    glass = optical_image(np.zeros((4, 8, 8), np.float32), base, um_per_px=base.camera.um_per_px)[:, 4, 4]

    def loss(g):
        # Smooth (unquantised) clear-glass colour, so the optimiser sees a gradient.
        p = with_gains(g)
        lin = processing_matrix(p).astype(float) @ glass
        lin = (lin - p.processing.black_level) / (1.0 - p.processing.black_level)
        rgb = np.clip(lin, 0.0, 1.0) ** (1.0 / p.processing.gamma)
        return float(deltaE_ciede2000(rgb2lab(rgb[None, None])[0, 0], target_lab))

    x0 = np.asarray(base.processing.wb_error, dtype=float)
    best = minimize(loss, x0 * 0.9, method="Nelder-Mead", options={"xatol": 1e-4, "fatol": 0.01, "maxiter": 600})
    return with_gains(best.x)


def _prec(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(truth[pred].mean()) if pred.any() else float("nan")


def _q(values: list[float]) -> dict:
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if v.size == 0:
        return {"n": 0, "median": None, "q25": None, "q75": None}
    q25, med, q75 = np.percentile(v, [25, 50, 75])
    return {"n": int(v.size), "median": round(float(med), 3), "q25": round(float(q25), 3), "q75": round(float(q75), 3)}


def _nanmed(values: list[float]) -> float | None:
    v = np.asarray(values, dtype=float)
    return round(float(np.median(v[np.isfinite(v)])), 3) if np.isfinite(v).any() else None


def _lab_median(rows: list[dict], comp: str) -> list[float] | None:
    vals = [r["lab"][comp] for r in rows if r["lab"][comp] is not None]
    return np.median(np.asarray(vals), axis=0).round(2).tolist() if vals else None


def _colour(args: argparse.Namespace) -> dict:
    """Colour per compartment and sizes: the benchmark's default section."""
    t0 = time.perf_counter()
    pbc = Path(args.pbc)

    folders = sorted(set(CLASS_MAP.values()))
    real_paths = {f: sorted(p for p in (pbc / f).iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
                  [: args.n] for f in folders}
    real_jobs = [str(p) for f in folders for p in real_paths[f]]
    ctx = mp.get_context("fork")
    with ctx.Pool(args.workers) as pool:
        real_all = pool.map(_real_item, real_jobs, chunksize=4)
        # Session white balance: PBC folders were acquired in different sessions whose clear
        # glass differs (the "ig" folder is bluish-white, the others cream). The twin is imaged
        # with the profile's white-balance gains refitted to each folder's median background,
        # a processing parameter of the acquisition, never a change of the rendered colours.
        base = load_profile(args.profile)
        session = {}
        for f in folders:
            bgs = [r["lab"]["background"] for j, r in zip(real_jobs, real_all, strict=True)
                   if "error" not in r and Path(j).parent.name == f and r["lab"]["background"] is not None]
            session[f] = base if args.no_session_wb or not bgs else _session_profile(base, np.median(bgs, axis=0))
        twin_jobs = [(code, session[CLASS_MAP[code]].model_dump_json(), s) for code in CLASS_MAP for s in range(args.n)]
        twin_all = pool.map(_twin_item, twin_jobs, chunksize=2)
    failures = [r for r in real_all + twin_all if "error" in r]
    real_jobs = [j for j, r in zip(real_jobs, real_all, strict=True) if "error" not in r]
    real_res = [r for r in real_all if "error" not in r]
    twin_jobs = [j for j, r in zip(twin_jobs, twin_all, strict=True) if "error" not in r]
    twin_res = [r for r in twin_all if "error" not in r]
    real_by: dict[str, list] = {f: [] for f in folders}
    for path, res in zip(real_jobs, real_res, strict=True):
        real_by[Path(path).parent.name].append(res)
    twin_by: dict[str, list] = {c: [] for c in CLASS_MAP}
    for (code, _, _), res in zip(twin_jobs, twin_res, strict=True):
        twin_by[code].append(res)

    # PBC pixel size from the red-cell ruler (pooled over all real crops).
    real_rbc_px = [d for rows in real_by.values() for r in rows for d in r["rbc_d_px"]]
    pbc_um = RBC_UM / float(np.median(real_rbc_px))
    twin_um = twin_res[0]["um_per_px"]

    classes = {}
    all_de = []
    for code, folder in CLASS_MAP.items():
        real, twin = real_by[folder], twin_by[code]
        comps = {}
        for comp in COMPARTMENTS:
            lr, lt = _lab_median(real, comp), _lab_median(twin, comp)
            de = None
            if lr is not None and lt is not None:
                de = round(float(deltaE_ciede2000(np.asarray(lr), np.asarray(lt))), 2)
                all_de.append(de)
            comps[comp] = {"lab_real": lr, "lab_twin": lt, "delta_e2000": de,
                           "pass": de is not None and de <= DE_TARGET}
        wr = _q([r["wbc_d_px"] * pbc_um for r in real])
        wt = _q([r["wbc_d_px"] * twin_um for r in twin])
        rr = _q([d * pbc_um for r in real for d in r["rbc_d_px"]])
        rt = _q([d * twin_um for r in twin for d in r["rbc_d_px"]])

        def _in(t, r):
            return t["median"] is not None and r["q25"] is not None and r["q25"] <= t["median"] <= r["q75"]

        classes[code] = {
            "pbc_folder": folder, "n_real": len(real), "n_twin": len(twin),
            "segmented_ok": {"real": sum(r["ok"] for r in real), "twin": sum(r["ok"] for r in twin)},
            "compartments": comps,
            "wbc_diameter_um": {"real": wr, "twin": wt, "pass_twin_median_in_real_iqr": _in(wt, wr),
                                "twin_ground_truth": _q([r["gt_wbc_d_px"] * twin_um for r in twin])},
            "rbc_diameter_um": {"real": rr, "twin": rt, "pass_twin_median_in_real_iqr": _in(rt, rr)},
        }

    iou_keys = list(twin_res[0]["iou"])
    seg_val = {k: _q([r["iou"][k] for r in twin_res]) for k in iou_keys}
    seg_val_by_class = {c: {k: _nanmed([r["iou"][k] for r in twin_by[c]]) for k in iou_keys}
                        for c in CLASS_MAP}
    wbc_d_err = [(r["wbc_d_px"] - r["gt_wbc_d_px"]) / r["gt_wbc_d_px"] for r in twin_res if np.isfinite(r["wbc_d_px"])]

    doc = {
        "benchmark": "realism", "date": date.today().isoformat(), "profile": args.profile, "n_per_class": args.n,
        "pbc_dir": str(pbc), "twin_size_px": SIZE_PX, "twin_um_per_px": twin_um,
        "pbc_um_per_px": {
            "estimate": round(pbc_um, 4),
            "method": f"red-cell ruler: {RBC_UM} um / median red-cell equivalent diameter "
                      f"({np.median(real_rbc_px):.1f} px over {len(real_rbc_px)} isolated red cells)",
            "nominal_readme": NOMINAL_PBC_UM_PER_PX,
            "note": "real red-cell median is 7.5 um by construction of the ruler",
        },
        "target": {"delta_e2000_max": DE_TARGET, "diameters": "twin median within real IQR"},
        "session_white_balance": {f: list(session[f].processing.wb_error) for f in folders},
        "segmenter_validation_on_twin": {
            "iou_over_all_twin_crops": seg_val, "median_iou_by_class": seg_val_by_class,
            "wbc_diameter_rel_error_vs_ground_truth": _q(wbc_d_err),
        },
        "classes": classes,
        "summary": {
            "delta_e2000_median": round(float(np.median(all_de)), 2) if all_de else None,
            "delta_e2000_max": max(all_de) if all_de else None,
            "compartments_passing": int(sum(d <= DE_TARGET for d in all_de)), "compartments_total": len(all_de),
            "mean_delta_e_by_compartment": {
                comp: round(float(np.mean([classes[c]["compartments"][comp]["delta_e2000"] for c in classes
                                           if classes[c]["compartments"][comp]["delta_e2000"] is not None])), 2)
                for comp in COMPARTMENTS},
            "wbc_diameter_pass": sum(classes[c]["wbc_diameter_um"]["pass_twin_median_in_real_iqr"] for c in classes),
            "rbc_diameter_pass": sum(classes[c]["rbc_diameter_um"]["pass_twin_median_in_real_iqr"] for c in classes),
            "n_classes": len(classes),
        },
        "failures": failures,
        "elapsed_s": round(time.perf_counter() - t0, 1),
    }
    _table(doc)
    return doc


# ------------------------------------------------------------------------------------------------
# The three realism measures against the PBC morphometry hold-out

#: Twin code of each PBC folder's cells whose finer label is not known (the folder's usual cell).
FOLDER_CODE: dict[str, str] = {
    "neutrophil": "NGS", "lymphocyte": "LYT", "monocyte": "MON", "eosinophil": "EOS",
    "basophil": "BAS", "erythroblast": "EBO", "ig": "MYB",
}
#: Twin code of PBC's finer labels (its file-name prefixes, ``fine_label`` in the data's manifests).
FINE_CODE: dict[str, str] = {
    "band neutrophil": "NGB", "segmented neutrophil": "NGS",
    "promyelocyte": "PMO", "myelocyte": "MYB", "metamyelocyte": "MMZ",
}
TWIN_CROP_UM = 36.0  # a PBC crop: 360 px x 0.102 µm
TS_UM_PER_PX, TS_SIZE = 0.4, 64
TC_CROP_UM = 28.0  # the twin-only recipe's crop (bench_twin_only.sh)
BCCD_UM_PER_PX = 0.0725  # docs/benchmarks.md, cross-microscope classifier
AUDIT = Path(__file__).resolve().parent / "data" / "bccd_label_audit.csv"
TARGETS = {"two_sample_auc_max": 0.75, "ks_median_max": 0.15, "ks_any_max": 0.35}


def procedural(code: str, profile, *, size_px: int, seed: int) -> np.ndarray:
    """The procedural twin: one ``size_px`` crop (at the profile's µm/px) centred on a ``code`` cell."""
    from hemotwin.twin.datasets import render_cell

    return render_cell(code, profile, size_px=size_px, seed=seed).image


def measured(code: str, profile, *, size_px: int, seed: int) -> np.ndarray:
    """The twin's measurement-driven style (docs/specimen_generator.md), otherwise as :func:`procedural`."""
    from hemotwin.twin.datasets import render_cell

    return render_cell(code, profile, size_px=size_px, seed=seed, style="measured").image


GENERATORS = {"procedural": procedural, "measured": measured}


def _generator(spec: str):
    """A generator by name, or ``module:function`` with :func:`procedural`'s signature."""
    if spec in GENERATORS:
        return GENERATORS[spec]
    if ":" not in spec:
        raise SystemExit(f"--generator {spec!r}: expected one of {sorted(GENERATORS)} or module:function")
    import importlib

    module, name = spec.split(":", 1)
    return getattr(importlib.import_module(module), name)


def _log(msg: str) -> None:
    sys.stderr.write(f"[realism {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


def _fine_labels(dirs: list[Path]) -> dict[tuple[str, str], str]:
    """(data folder name, relative path) -> fine label, from every ``fine_label`` table found."""
    import csv

    out: dict[tuple[str, str], str] = {}
    for d in dirs:
        man = d / "manifest.csv"
        if man.is_file():
            with open(man, newline="") as fh:
                for row in csv.DictReader(fh):
                    if row.get("fine_label"):
                        out[(d.name, row["path"])] = row["fine_label"]
        # pbc_more ships the fine labels of the first subset (pbc) beside its own
        for other in d.glob("fine_labels_*.csv"):
            name = other.stem.removeprefix("fine_labels_")
            with open(other, newline="") as fh:
                for row in csv.DictReader(fh):
                    out.setdefault((name, row["path"]), row["fine_label"])
    return out


def holdout_cells(dirs: list[Path], *, n_per_class: int, seed: int) -> list[dict]:
    """The real cells of the morphometry hold-out: up to ``n_per_class`` per folder, with their twin code.

    The hold-out rule takes each image's path with its data set's folder (``"pbc/neutrophil/SNE_1.jpg"``);
    when a folder holds more hold-out cells than asked, a seeded draw picks them.
    """
    from hemotwin.twin.morphometry import is_morphometry_holdout

    fine = _fine_labels(dirs)
    cells = []
    for k, folder in enumerate(FOLDER_CODE):
        cand = []
        for d in dirs:
            for p in sorted((d / folder).glob("*")):
                rel = f"{folder}/{p.name}"
                # The rule's key names the data set too (scripts/measure_morphometry.py: "pbc/neutrophil/x.jpg").
                if p.suffix.lower() in {".jpg", ".jpeg", ".png"} and is_morphometry_holdout(f"{d.name}/{rel}"):
                    f = fine.get((d.name, rel), "")
                    cand.append({"path": str(p), "rel": rel, "data": d.name, "folder": folder, "fine": f,
                                 "code": FINE_CODE.get(f, FOLDER_CODE[folder])})
        pick = np.sort(np.random.default_rng([seed, k]).permutation(len(cand))[:n_per_class])
        cells.extend(cand[i] for i in pick)
    return cells


def _to_grid(rgb: np.ndarray, um_per_px: float) -> np.ndarray:
    """A crop at the two-sample grid (``TS_UM_PER_PX``, ``TS_SIZE``): area-averaged, centre-cropped."""
    from hemotwin.vision.datasets import to_canonical

    return to_canonical(rgb, um_per_px=um_per_px, canonical_um_per_px=TS_UM_PER_PX, size=TS_SIZE)


def _features(rgb: np.ndarray, um_per_px: float) -> dict[str, float]:
    from hemotwin.twin.morphometry import measure_cell

    return {k: float(v) for k, v in measure_cell(rgb, um_per_px=um_per_px).items()}


def _real_measures(args: tuple) -> dict:
    path, um, morph = args
    rgb = np.asarray(Image.open(path).convert("RGB"))
    return {"grid": _to_grid(rgb, um), "features": _features(rgb, um) if morph else None}


def _twin_measures(args: tuple) -> dict:
    code, profile_json, seed, generator, morph = args
    from hemotwin.twin.profiles import ScannerProfile

    prof = ScannerProfile.model_validate_json(profile_json)
    um = prof.camera.um_per_px
    rgb = _generator(generator)(code, prof, size_px=round(TWIN_CROP_UM / um), seed=seed)
    return {"grid": _to_grid(rgb, um), "features": _features(rgb, um) if morph else None}


def _real_measures_item(args: tuple) -> dict:
    return _safe(_real_measures, args)


def _twin_measures_item(args: tuple) -> dict:
    return _safe(_twin_measures, args)


def _imap(pool, fn, jobs: list, what: str) -> list:
    out = []
    step = max(1, len(jobs) // 10)
    for k, r in enumerate(pool.imap(fn, jobs, chunksize=4), start=1):
        out.append(r)
        if k % step == 0 or k == len(jobs):
            _log(f"{what}: {k}/{len(jobs)}")
    return out


def _ruler_and_sessions(pool, cells: list[dict], base, *, n_per_folder: int, session_wb: bool) -> tuple:
    """PBC pixel size by the red-cell ruler and each folder's session profile, from hold-out cells."""
    sample = [c for f in FOLDER_CODE for c in [c for c in cells if c["folder"] == f][:n_per_folder]]
    res = pool.map(_real_item, [c["path"] for c in sample], chunksize=4)
    rbc = [d for r in res if "error" not in r for d in r["rbc_d_px"]]
    um = RBC_UM / float(np.median(rbc))
    sessions = {}
    for f in FOLDER_CODE:
        bgs = [r["lab"]["background"] for c, r in zip(sample, res, strict=True)
               if "error" not in r and c["folder"] == f and r["lab"]["background"] is not None]
        sessions[f] = _session_profile(base, np.median(bgs, axis=0)) if session_wb and bgs else base
    return um, {"n_red_cells": len(rbc), "n_images": len(sample)}, sessions


def _ks_section(real_f: list[dict], twin_f: list[dict], real_cls: list[str], twin_cls: list[str],
                seed: int) -> dict:
    """Per feature and class: Kolmogorov–Smirnov distance real vs twin, and real half vs real half."""
    from scipy.stats import ks_2samp

    from hemotwin.twin.morphometry import FEATURES

    rng = np.random.default_rng([seed, 7])
    per: dict[str, dict] = {}
    dists, floor, skipped = [], [], []
    for c in FOLDER_CODE:
        ri = [i for i, k in enumerate(real_cls) if k == c]
        ti = [i for i, k in enumerate(twin_cls) if k == c]
        half = rng.permutation(ri)
        a_idx, b_idx = half[: len(half) // 2], half[len(half) // 2:]
        per[c] = {}
        for feat in FEATURES:
            r = np.asarray([real_f[i].get(feat, np.nan) for i in ri], float)
            t = np.asarray([twin_f[i].get(feat, np.nan) for i in ti], float)
            r, t = r[np.isfinite(r)], t[np.isfinite(t)]
            if min(r.size, t.size) < 10:
                skipped.append({"class": c, "feature": feat, "n_real": int(r.size), "n_twin": int(t.size)})
                continue
            ks = ks_2samp(r, t)
            ra = np.asarray([real_f[i].get(feat, np.nan) for i in a_idx], float)
            rb = np.asarray([real_f[i].get(feat, np.nan) for i in b_idx], float)
            ra, rb = ra[np.isfinite(ra)], rb[np.isfinite(rb)]
            fl = float(ks_2samp(ra, rb).statistic) if min(ra.size, rb.size) >= 5 else None
            per[c][feat] = {"ks": round(float(ks.statistic), 4), "p": float(f"{ks.pvalue:.3g}"),
                            "n_real": int(r.size), "n_twin": int(t.size),
                            "median_real": round(float(np.median(r)), 4), "median_twin": round(float(np.median(t)), 4),
                            "ks_real_halves": None if fl is None else round(fl, 4)}
            dists.append((float(ks.statistic), c, feat))
            if fl is not None:
                floor.append(fl)
    ks_all = np.asarray([d for d, _, _ in dists])
    worst = sorted(dists, reverse=True)[:15]
    by_feature = {f: round(float(np.median([per[c][f]["ks"] for c in per if f in per[c]])), 4)
                  for f in FEATURES if any(f in per[c] for c in per)}
    return {
        "features": list(FEATURES), "per_class": per, "median_ks_by_feature": by_feature,
        "summary": {
            "ks_median": round(float(np.median(ks_all)), 4) if ks_all.size else None,
            "ks_max": round(float(ks_all.max()), 4) if ks_all.size else None,
            "n_distances": int(ks_all.size), "n_over_0_35": int((ks_all > TARGETS["ks_any_max"]).sum()),
            "pass_median": bool(ks_all.size and np.median(ks_all) <= TARGETS["ks_median_max"]),
            "pass_max": bool(ks_all.size and ks_all.max() <= TARGETS["ks_any_max"]),
            "worst": [{"class": c, "feature": f, "ks": round(d, 4)} for d, c, f in worst],
        },
        "anchor_real_halves": {"ks_median": round(float(np.median(floor)), 4) if floor else None,
                               "ks_max": round(float(np.max(floor)), 4) if floor else None,
                               "note": "two halves of the real hold-out: the sampling floor at half the n"},
        "skipped": skipped,
        "segmentation_ok": {"real": _ok_share(real_f), "twin": _ok_share(twin_f)},
    }


def _ok_share(rows: list[dict]) -> float | None:
    vals = [r for r in rows if r]
    if not vals:
        return None
    return round(float(np.mean([any(np.isfinite(v) for v in r.values()) for r in vals])), 4)


def _grey(rgb: np.ndarray) -> np.ndarray:
    """Luma (ITU-R BT.601) in all three channels: the crop's shape and texture without its colour."""
    y = np.rint(rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))
    return np.repeat(np.clip(y, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)


def _two_sample_section(real_grid, twin_grid, real_cls, twin_cls, *, seed: int, epochs: int,
                        grey: bool = False) -> dict:
    import torch

    from hemotwin.vision.two_sample import two_sample_auc

    torch.set_num_threads(1)
    if grey:  # a diagnostic: what is left to tell apart once colour is gone
        real_grid, twin_grid = [_grey(g) for g in real_grid], [_grey(g) for g in twin_grid]

    def prog(e, n, auc):
        _log(f"two-sample epoch {e}/{n}: validation AUC {auc:.3f}")

    _log(f"two-sample: {len(real_grid)} real vs {len(twin_grid)} twin crops")
    res = two_sample_auc(np.stack(real_grid), np.stack(twin_grid), seed=seed, epochs=epochs,
                         groups=(real_cls, twin_cls), progress=prog).to_dict()
    # Anchor: the same test between two halves of the real hold-out (same classes): ~0.5 expected.
    rng = np.random.default_rng([seed, 11])
    idx = rng.permutation(len(real_grid))
    a, b = np.sort(idx[: len(idx) // 2]), np.sort(idx[len(idx) // 2:])
    _log(f"two-sample anchor: real half vs real half ({len(a)} / {len(b)})")
    anchor = two_sample_auc(np.stack([real_grid[i] for i in a]), np.stack([real_grid[i] for i in b]), seed=seed,
                            epochs=epochs, groups=([real_cls[i] for i in a], [real_cls[i] for i in b]),
                            progress=prog).to_dict()
    return {"grid": {"um_per_px": TS_UM_PER_PX, "size_px": TS_SIZE, "field_um": TS_UM_PER_PX * TS_SIZE,
                     "colour": "luma only (--ts-grey diagnostic)" if grey else "RGB"},
            "result": res, "anchor_real_halves": {k: anchor[k] for k in ("auc", "auc_ci95", "n_real", "per_class",
                                                                         "best_epoch", "seconds")},
            "pass": res["auc"] <= TARGETS["two_sample_auc_max"]}


def _real_side(args: argparse.Namespace, pool, base) -> tuple[list[dict], float, dict, dict]:
    dirs = [Path(d) for d in (args.pbc, args.pbc_more) if d and Path(d).is_dir()]
    cells = holdout_cells(dirs, n_per_class=args.holdout_n, seed=args.seed)
    _log(f"hold-out: {len(cells)} real cells from {[d.name for d in dirs]}")
    um, ruler, sessions = _ruler_and_sessions(pool, cells, base, n_per_folder=30,
                                              session_wb=not args.no_session_wb)
    _log(f"PBC pixel size (red-cell ruler on the hold-out): {um:.4f} um/px")
    return cells, um, ruler, sessions


def _measures(args: argparse.Namespace) -> dict:
    """The sections of the three measures asked for (two-sample, morphometry, twin classifier)."""
    from hemotwin.twin.datasets import item_seed

    out: dict = {}
    base = load_profile(args.profile)
    ctx = mp.get_context("fork")
    with ctx.Pool(args.workers, initializer=_one_thread) as pool:
        cells, um, ruler, sessions = _real_side(args, pool, base)
        classes = sorted({c["folder"] for c in cells})
        out["holdout"] = {
            "rule": "hemotwin.twin.morphometry.is_morphometry_holdout('<data set>/<folder>/<file>')",
            "dirs": [str(d) for d in (args.pbc, args.pbc_more) if d], "n_per_class_max": args.holdout_n,
            "n_by_class": {f: sum(c["folder"] == f for c in cells) for f in classes},
            "twin_codes_by_class": {f: _counts([c["code"] for c in cells if c["folder"] == f]) for f in classes},
            "pbc_um_per_px": round(um, 4), "ruler": ruler,
            "session_white_balance": {f: list(sessions[f].processing.wb_error) for f in FOLDER_CODE},
        }
        if args.two_sample or args.morphometry:
            morph = bool(args.morphometry)
            real = _imap(pool, _real_measures_item, [(c["path"], um, morph) for c in cells], "real cells")
            jobs = [(c["code"], sessions[c["folder"]].model_dump_json(),
                     item_seed(args.seed, 1, k), args.generator, morph) for k, c in enumerate(cells)]
            twin = _imap(pool, _twin_measures_item, jobs, f"twin cells ({args.generator})")
            failures = [r for r in real + twin if "error" in r]
            keep = [i for i in range(len(cells)) if "error" not in real[i] and "error" not in twin[i]]
            cls = [cells[i]["folder"] for i in keep]
            out["measured"] = {"n_pairs": len(keep), "failures": failures[:20], "n_failures": len(failures)}
    if args.morphometry:
        out["morphometry"] = _ks_section([real[i]["features"] for i in keep], [twin[i]["features"] for i in keep],
                                         cls, cls, args.seed)
        _log(f"morphometry KS: {json.dumps(out['morphometry']['summary'])}")
    if args.two_sample:
        out["two_sample"] = _two_sample_section([real[i]["grid"] for i in keep], [twin[i]["grid"] for i in keep],
                                                cls, cls, seed=args.seed, epochs=args.ts_epochs,
                                                grey=args.ts_grey)
        _log(f"two-sample AUC {out['two_sample']['result']['auc']} {out['two_sample']['result']['auc_ci95']}")
    if args.twin_classifier:
        out["twin_classifier"] = _twin_classifier(args, base, cells)
    return out


def _one_thread() -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def _counts(values: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return dict(sorted(out.items()))


# -- train on twin, test on real


def _render_set_item(args: tuple) -> dict:
    return _safe(_render_set_task, args)


def _render_set_task(args: tuple) -> dict:
    """One training cell: a randomised neighbour of the profile, written as PNG with its pixel size."""
    code, class_idx, i, strength, seed, profile_json, root, generator = args
    from hemotwin.io.images import write_png
    from hemotwin.twin.datasets import item_seed
    from hemotwin.twin.profiles import ScannerProfile, randomize

    base = ScannerProfile.model_validate_json(profile_json)
    prof = randomize(base, np.random.default_rng(item_seed(seed, class_idx, i, 1)), strength) if strength else base
    um = prof.camera.um_per_px
    rgb = _generator(generator)(code, prof, size_px=round(TC_CROP_UM / um), seed=item_seed(seed, class_idx, i))
    rel = f"{code}/{code}_{seed}_{i:05d}.png"
    write_png(Path(root) / rel, rgb, um_per_px=um)
    return {"path": rel, "label": code, "um_per_px": round(um, 6)}


def _write_set(pool, root: Path, jobs: list[tuple], what: str) -> dict:
    import csv

    for code in sorted({j[0] for j in jobs}):
        (root / code).mkdir(parents=True, exist_ok=True)
    rows = _imap(pool, _render_set_item, jobs, what)
    ok = [r for r in rows if "error" not in r]
    with open(root / "manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["path", "label", "um_per_px"])
        w.writeheader()
        w.writerows(ok)
    return {"written": len(ok), "failures": [r for r in rows if "error" in r][:20]}


def _real_manifests(work: Path, cells: list[dict], bccd_dir: str) -> tuple[Path, Path, int]:
    """Manifests of the PBC hold-out (pixel size left to the evaluator, as the recipe does) and audited BCCD."""
    import csv

    (work / "manifests").mkdir(exist_ok=True)
    pbc = work / "manifests" / "pbc_holdout.csv"
    with open(pbc, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        w.writerows([[c["path"], c["folder"]] for c in cells])
    bccd_root = Path(bccd_dir)
    bccd = work / "manifests" / "bccd_audited.csv"
    n = 0
    with open(AUDIT, newline="") as src, open(bccd, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "um_per_px"])
        for row in csv.DictReader(src):
            if row["audit"] == "consistent" and (bccd_root / row["path"]).is_file():
                w.writerow([str(bccd_root / row["path"]), row["label"], BCCD_UM_PER_PX])
                n += 1
    return pbc, bccd, n


def _scores(metrics: dict) -> dict:
    lo, hi = metrics["accuracy_ci95_exact"]
    return {"accuracy": round(metrics["accuracy"], 4), "accuracy_ci95": [round(lo, 4), round(hi, 4)],
            "macro_f1": round(metrics["macro_f1"], 4), "n": metrics["n"], "n_rejected": metrics.get("n_rejected"),
            "per_class_recall": {k: round(v["recall"], 3) for k, v in metrics["per_class"].items()},
            "per_class_f1": {k: round(v["f1"], 3) for k, v in metrics["per_class"].items()},
            "um_per_px_median": (metrics.get("read") or {}).get("um_per_px_median")}


def _tc_codes(which: str) -> list[str]:
    """The twin codes trained: ``pbc`` (the 10 that PBC's seven folders map to) or ``all`` 15."""
    from hemotwin.twin.specimen import LEUKOCYTE_CLASSES

    if which == "all":
        return list(LEUKOCYTE_CLASSES)
    wanted = {*FOLDER_CODE.values(), *FINE_CODE.values()}
    return [c for c in LEUKOCYTE_CLASSES if c in wanted]


def _twin_classifier(args: argparse.Namespace, base, cells: list[dict]) -> dict:
    import shutil

    import torch

    from hemotwin.twin.specimen import LEUKOCYTE_CLASSES
    from hemotwin.vision.assess import evaluate_model
    from hemotwin.vision.inference import InferenceOptions
    from hemotwin.vision.training import TrainRequest, train_model

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    work = Path(args.workdir)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    pj = base.model_dump_json()
    half = args.tc_per_class // 2
    codes = _tc_codes(args.tc_classes)
    # class index k of the 15-class list, so a code's cells are the same whichever classes are trained
    train_jobs = [(code, k, i, strength, args.seed + off, pj, str(work / "train"), args.generator)
                  for k, code in enumerate(LEUKOCYTE_CLASSES) if code in codes
                  for off, strength, n in ((100, 0.6, half), (200, 1.0, args.tc_per_class - half))
                  for i in range(n)]
    test_jobs = [(code, k, i, 0.0, 5001, pj, str(work / "test_twin"), args.generator)
                 for k, code in enumerate(LEUKOCYTE_CLASSES) if code in codes for i in range(20)]
    ctx = mp.get_context("fork")
    with ctx.Pool(args.workers, initializer=_one_thread) as pool:
        written = _write_set(pool, work / "train", train_jobs, "twin training cells")
        written_test = _write_set(pool, work / "test_twin", test_jobs, "twin test cells")
    t_render = time.perf_counter() - t0
    _log(f"rendered {written['written']} training cells in {t_render:.0f} s; training")

    def prog(done, total, info):
        if info.get("phase") != "train":  # one line per epoch
            _log(f"train step {done}/{total}: {json.dumps(info, default=str)[:200]}")

    t1 = time.perf_counter()
    model = work / "twin_light.hemo"
    tr = train_model(TrainRequest(data=[str(work / "train")], out=model, augment="color", epochs=args.tc_epochs,
                                  seed=args.seed, num_threads=args.tc_threads, num_workers=1, overwrite=True),
                     progress=prog, log=_log)
    t_train = time.perf_counter() - t1
    pbc_csv, bccd_csv, n_bccd = _real_manifests(work, cells, args.bccd)
    opts = InferenceOptions(model=str(model))
    evals = {}
    for name, data, kw in (("twin_analyzer_unseen", work / "test_twin" / "manifest.csv", {}),
                           ("pbc_holdout", pbc_csv, {}), ("bccd_audited", bccd_csv, {"exclude": ("basophil",)})):
        _log(f"evaluating on {name}")
        res = evaluate_model(data, work / "eval" / name, options=opts, overwrite=True, **kw)
        evals[name] = _scores(res["metrics"])
    return {
        "recipe": {"classes": codes, "per_class": args.tc_per_class,
                   "randomize": {"0.6": half, "1.0": args.tc_per_class - half}, "profile": base.name,
                   "crop_um": TC_CROP_UM, "augment": "color", "epochs": args.tc_epochs, "seed": args.seed,
                   "train_seeds": {"0.6": args.seed + 100, "1.0": args.seed + 200}, "test_twin_seed": 5001,
                   "generator": args.generator, "torch_threads": args.tc_threads,
                   "note": "lighter than bench_twin_only.sh (1,200 cells per class over four presets, 12 epochs, "
                           "about 1.5 h); one profile's neighbours"},
        "rendered": {"train": written, "test_twin": written_test, "seconds": round(t_render, 1)},
        "training": {"best_epoch": tr["best_epoch"], "n_train": tr["n_train"], "n_val": tr["n_val"],
                     "val": {k: round(v, 4) for k, v in (tr["best_metrics"] or {}).items()
                             if isinstance(v, int | float)},
                     "seconds": round(t_train, 1), "images_per_s": round(tr["train_images_per_s"], 1)},
        "scores": evals, "bccd_audited_listed": n_bccd,
        "elapsed_s": round(time.perf_counter() - t0, 1),
    }


def _versions() -> dict:
    import platform

    import hemotwin

    v = {"hemotwin": hemotwin.__version__, "numpy": np.__version__, "python": platform.python_version(),
         "machine": f"{platform.machine()}, {mp.cpu_count()} cores"}
    try:
        import torch

        v["torch"] = torch.__version__
    except ImportError:
        pass
    try:  # the measuring code is young: its exact text identifies the features measured
        import hashlib

        import hemotwin.twin.morphometry as morph

        v["morphometry_sha256"] = hashlib.sha256(Path(morph.__file__).read_bytes()).hexdigest()[:16]
    except ImportError:
        pass
    return v


def _parser() -> argparse.ArgumentParser:
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40, help="images per class, each side (colour and sizes)")
    ap.add_argument("--profile", default="analyzer-100x")
    ap.add_argument("--pbc", default=str(shared / "pbc"))
    ap.add_argument("--out", default=None, help="also write the JSON here")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-session-wb", action="store_true",
                    help="do not match each PBC folder's white balance (its clear-glass colour)")
    g = ap.add_argument_group("realism measures against the PBC morphometry hold-out")
    g.add_argument("--skip-colour", action="store_true", help="run only the measures asked for below")
    g.add_argument("--two-sample", action="store_true", help="classifier two-sample test (held-out AUC)")
    g.add_argument("--morphometry", action="store_true", help="Kolmogorov-Smirnov distances of the morphometry")
    g.add_argument("--twin-classifier", action="store_true", help="train on twin cells, test on real ones")
    g.add_argument("--pbc-more", default=str(shared / "pbc_more"), help="second PBC folder ('' for none)")
    g.add_argument("--bccd", default=str(shared / "bccd"), help="BCCD folder (its audited crops are scored)")
    g.add_argument("--holdout-n", type=int, default=250, help="at most this many hold-out cells per class")
    g.add_argument("--generator", default="procedural", help="procedural, or module:function")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--ts-epochs", type=int, default=12)
    g.add_argument("--ts-grey", action="store_true",
                   help="diagnostic: the two-sample test on luma only (the realism measure keeps colour)")
    g.add_argument("--tc-classes", choices=("pbc", "all"), default="pbc",
                   help="train the 10 twin codes PBC's folders map to, or all 15 (as bench_twin_only.sh)")
    g.add_argument("--tc-per-class", type=int, default=300, help="twin training cells per class")
    g.add_argument("--tc-epochs", type=int, default=12)
    g.add_argument("--tc-threads", type=int, default=1, help="torch threads of the training")
    g.add_argument("--workdir", default="/tmp/realism_twin_classifier", help="scratch folder (emptied)")
    return ap


def main(argv: list[str] | None = None) -> dict:
    args = _parser().parse_args(argv)
    t0 = time.perf_counter()
    doc = {} if args.skip_colour else _colour(args)
    if args.two_sample or args.morphometry or args.twin_classifier:
        if not doc:
            doc = {"benchmark": "realism", "date": date.today().isoformat(), "profile": args.profile}
        doc["measures"] = {"generator": args.generator, "seed": args.seed, "targets": TARGETS,
                           "versions": _versions(), **_measures(args)}
        doc["elapsed_s"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(doc, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return doc


def _fmt(lab):
    return "      n/a        " if lab is None else f"{lab[0]:5.1f} {lab[1]:5.1f} {lab[2]:5.1f}"


def _table(doc: dict) -> None:
    w = sys.stderr.write
    w(f"PBC um/px (red-cell ruler) = {doc['pbc_um_per_px']['estimate']}; twin um/px = {doc['twin_um_per_px']}\n")
    val = doc["segmenter_validation_on_twin"]["iou_over_all_twin_crops"]
    w("segmenter IoU on twin (median): " + ", ".join(f"{k} {v['median']}" for k, v in val.items()) + "\n")
    w(f"{'class':5} {'compartment':10} {'Lab real':>17} {'Lab twin':>17} {'dE00':>6}\n")
    for code, c in doc["classes"].items():
        for comp, v in c["compartments"].items():
            de = "  n/a" if v["delta_e2000"] is None else f"{v['delta_e2000']:6.1f}"
            w(f"{code:5} {comp:10} {_fmt(v['lab_real'])} {_fmt(v['lab_twin'])} {de}{'' if v['pass'] else ' *'}\n")
    w(f"{'class':5} {'WBC um real med [IQR]':>24} {'twin':>6} {'RBC um real med [IQR]':>24} {'twin':>6}\n")
    for code, c in doc["classes"].items():
        a, b = c["wbc_diameter_um"], c["rbc_diameter_um"]
        w(f"{code:5} {a['real']['median']:8.2f} [{a['real']['q25']:5.2f},{a['real']['q75']:5.2f}] "
          f"{a['twin']['median']:6.2f}{'' if a['pass_twin_median_in_real_iqr'] else '*'} "
          f"{b['real']['median']:8.2f} [{b['real']['q25']:5.2f},{b['real']['q75']:5.2f}] "
          f"{b['twin']['median'] if b['twin']['median'] is not None else float('nan'):6.2f}"
          f"{'' if b['pass_twin_median_in_real_iqr'] else '*'}\n")
    w(f"summary: {json.dumps(doc['summary'])}\n")


if __name__ == "__main__":
    main()
