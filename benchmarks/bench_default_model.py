"""The shipped classifier's recipe on real data: (a) colour jitter, (b) the wide twin, (c) (b) + a calibrated scanner.

Scores model files written by ``benchmarks/train_real_recipe.py --holdout 0.1 --holdout-csv H`` (one per
arm and seed) on the same sets, in one run, so each arm is compared with the others on the same cells:

- ``pbc_holdout``: the real PBC cells its seed kept out of training (in-domain), in PBC's own
  classes (the 15 codes collapsed; platelets are not trained), and ``pbc_holdout_fine`` on the cells
  whose label is a code (band/segmented neutrophils, promyelocyte/myelocyte/metamyelocyte ...);
- ``bccd`` / ``bccd_audited``: the BCCD crops (another microscope and camera, five classes, basophils
  excluded), all and those whose label the visual audit found consistent with the morphology
  (``benchmarks/data/bccd_label_audit.csv``), at BCCD's pixel size from its red-cell boxes;
- ``bccd_um_x0.85`` / ``bccd_um_x1.15``: the same with the pixel size given 15 % off each way (a user
  whose pixel size is wrong), on the audited crops;
- ``bccd_in_field_context``: BCCD's white cells cut from their fields with their neighbours, as
  ``analyze`` sees them;
- ``pbc_holdout_presets`` / ``pbc_holdout_wide``: the same hold-out cells re-imaged through the twin,
  the validation the recipe is chosen on (no BCCD): through each of the four scanner presets as
  shipped (mean and worst preset), and through draws of the wide scanner space from a pool seed no
  training run uses (:data:`EVAL_POOL_SEED`);
- ``ece_*``: the expected calibration error (15 bins) on the PBC hold-out and the BCCD crops;
- ``cells_per_s``: one-thread ONNX throughput of the model on the BCCD crops.

Usage::

    python benchmarks/bench_default_model.py --model a:0:/tmp/a0.hemo:/tmp/h0.csv \\
        --model b:0:/tmp/b0.hemo:/tmp/h0.csv [--out default_model.json]

``ARM:SEED:MODEL:HOLDOUT`` per model. Prints JSON; a table and the paired differences on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from bench_vision import SHARED, WBC5, audit_mask, bccd_context_cells, bccd_um_per_px_from_boxes

from hemotwin import taxonomy
from hemotwin.vision.data import load_training_data, map_items_to
from hemotwin.vision.datasets import load_dataset
from hemotwin.vision.engines import InferenceEngine
from hemotwin.vision.evaluate import evaluate_predictions
from hemotwin.vision.geometry import Geometry, prepare
from hemotwin.vision.modelfile import load_model

#: Pool and draw seed of the wide-space validation scanners; training pools use the run seed (0-99).
EVAL_POOL_SEED = 90_210
PRESETS = ("analyzer-100x", "wsi-40x", "wsi-20x", "phone-40x")

PBC7 = ("basophil", "eosinophil", "erythroblast", "ig", "lymphocyte", "monocyte", "neutrophil")


def _collapse(probs: np.ndarray, labels, target) -> np.ndarray:
    out, _dropped = taxonomy.collapse(probs, list(labels), list(target))
    return np.nan_to_num(out, nan=0.0)


def _accuracy(probs: np.ndarray, truth, target) -> float:
    return float((np.asarray(target)[probs.argmax(1)] == np.asarray(truth)).mean()) if len(truth) else float("nan")


def _ece(probs: np.ndarray, truth, target) -> float:
    return float(evaluate_predictions(list(truth), probs, tuple(target))["calibration"]["ece"])


def _bccd(um: float, geom: Geometry):
    ds, _ = map_items_to(load_dataset(SHARED / "bccd", um_per_px=um), WBC5)
    prep = prepare(ds, geom, working=False)
    truth = np.array([ds.items[i].label for i in prep.kept])
    return prep.images, truth, audit_mask([ds.items[i].path for i in prep.kept])


def twin_views(hold, geom: Geometry) -> dict[str, np.ndarray]:
    """The hold-out cells re-imaged through the twin: one set per preset and one over the wide space.

    The stain basis that unmixes them is fitted on the hold-out images themselves (labels unused):
    it describes PBC's scanner, the source of every view.
    """
    from hemotwin.twin.profiles import load_profile
    from hemotwin.twin.reimage import ReImager, SpaceReImager, StainBasis

    work = prepare(hold, geom, working=True)
    basis = StainBasis().fit(list(work.images[::4]))
    views = {}
    engines = {name: ReImager(basis, profile=load_profile(name), strength=0.0, pool_size=1, pool_seed=EVAL_POOL_SEED,
                              out_um_per_px=geom.um_per_px, out_size=geom.input_size) for name in PRESETS}
    engines["wide"] = SpaceReImager(basis, pool_size=48, pool_seed=EVAL_POOL_SEED, out_um_per_px=geom.um_per_px,
                                    out_size=geom.input_size)
    for name, engine in engines.items():
        rng = np.random.default_rng([EVAL_POOL_SEED, len(name)])
        views[name] = np.stack([engine(im, geom.work_um_per_px, rng) for im in work.images])
        print(f"  hold-out re-imaged as {name}", file=sys.stderr, flush=True)
    return views


def score(model: Path, holdout: Path, sets: dict, twin_cache: dict) -> dict:
    """Every measure of one model file."""
    loaded = load_model(model, require_onnx=True)
    engine = InferenceEngine(loaded, backend="onnxruntime", num_threads=1)
    geom = Geometry(loaded.preprocessing.um_per_px, loaded.preprocessing.input_size)
    (hold,), _notes = load_training_data([holdout])  # PBC's pixel size: the red-cell ruler, as in training
    hp = prepare(hold, geom, working=False)
    h_labels = [hold.items[i].label for i in hp.kept]
    p_h = engine.run(hp.images)
    coarse = [taxonomy.resolve_label(lab, label_set="pbc") for lab in h_labels]
    p_h7 = _collapse(p_h, loaded.labels, PBC7)
    fine = np.array([lab in loaded.labels for lab in h_labels], dtype=bool)
    row = {"pbc_holdout": _accuracy(p_h7, coarse, PBC7), "pbc_holdout_n": len(coarse),
           "pbc_holdout_fine": _accuracy(p_h[fine], np.array(h_labels)[fine], loaded.labels),
           "pbc_holdout_fine_n": int(fine.sum()), "ece_pbc_holdout": _ece(p_h7, coarse, PBC7)}
    if str(holdout) not in twin_cache:  # arms of one seed share the hold-out: render it once
        twin_cache[str(holdout)] = twin_views(hold, geom)
    per_preset = {}
    for name, images in twin_cache[str(holdout)].items():
        p = _collapse(engine.run(images), loaded.labels, PBC7)
        acc = _accuracy(p, coarse, PBC7)
        if name == "wide":
            row["pbc_holdout_wide"] = acc
        else:
            per_preset[name] = acc
    row["pbc_holdout_presets"] = float(np.mean(list(per_preset.values())))
    row["pbc_holdout_worst_preset"] = float(min(per_preset.values()))
    row["pbc_holdout_per_preset"] = per_preset
    for name, (images, truth, audited) in sets.items():
        keep = truth != "basophil"
        t0 = time.perf_counter()
        p = _collapse(engine.run(images), loaded.labels, WBC5)
        dt = time.perf_counter() - t0
        if name == "bccd":
            row["bccd"] = _accuracy(p[keep], truth[keep], WBC5)
            row["bccd_audited"] = _accuracy(p[keep & audited], truth[keep & audited], WBC5)
            row["ece_bccd"] = _ece(p[keep], truth[keep], WBC5)
            row["bccd_n"], row["bccd_audited_n"] = int(keep.sum()), int((keep & audited).sum())
            row["cells_per_s"] = len(images) / dt
            pred = np.asarray(WBC5)[p.argmax(1)]
            row["bccd_audited_recall"] = {c: float((pred[keep & audited & (truth == c)] == c).mean())
                                          for c in WBC5 if c != "basophil"}
        elif name == "bccd_in_field_context":
            row[name] = _accuracy(p[keep], truth[keep], WBC5)
        else:
            row[name] = _accuracy(p[keep & audited], truth[keep & audited], WBC5)
    return row


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, help="ARM:SEED:MODEL.hemo:HOLDOUT.csv")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    geom = Geometry()
    um_b, _ = bccd_um_per_px_from_boxes()
    sets = {"bccd": _bccd(um_b, geom), "bccd_um_x0.85": _bccd(um_b * 0.85, geom),
            "bccd_um_x1.15": _bccd(um_b * 1.15, geom)}
    bcx, y_bcx, _ = bccd_context_cells(um_b, geom)
    sets["bccd_in_field_context"] = (bcx, np.array(y_bcx), np.ones(len(y_bcx), bool))
    rows, twin_cache = [], {}
    for spec in args.model:
        arm, seed, model, holdout = spec.split(":", 3)
        row = {"arm": arm, "seed": int(seed), "model": model, **score(Path(model), Path(holdout), sets, twin_cache)}
        rows.append(row)
        print(f"{arm} s{seed}: PBC {row['pbc_holdout']:.3f}  twin presets {row['pbc_holdout_presets']:.3f} "
              f"(worst {row['pbc_holdout_worst_preset']:.3f})  wide {row['pbc_holdout_wide']:.3f}  "
              f"BCCD {row['bccd']:.3f} / audited {row['bccd_audited']:.3f}  "
              f"x0.85 {row['bccd_um_x0.85']:.3f}  x1.15 {row['bccd_um_x1.15']:.3f}  "
              f"context {row['bccd_in_field_context']:.3f}  ECE {row['ece_bccd']:.3f}", file=sys.stderr)
    paired = {}
    arms = sorted({r["arm"] for r in rows})
    for a in arms:
        for b in arms:
            if a < b:
                pairs = [(ra, rb) for ra in rows if ra["arm"] == a
                         for rb in rows if rb["arm"] == b and rb["seed"] == ra["seed"]]
                if pairs:
                    paired[f"{b}-{a}"] = {
                        key: {"median": float(np.median([rb[key] - ra[key] for ra, rb in pairs])),
                              "per_seed": [rb[key] - ra[key] for ra, rb in pairs]}
                        for key in ("pbc_holdout", "pbc_holdout_presets", "pbc_holdout_wide", "bccd",
                                    "bccd_audited", "bccd_in_field_context")}
    doc = {"benchmark": "bench_default_model", "date": date.today().isoformat(), "bccd_um_per_px": um_b,
           "rows": rows, "paired": paired}
    text = json.dumps(doc, indent=2, default=float)
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return doc


if __name__ == "__main__":
    main()
