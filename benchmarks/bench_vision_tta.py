"""Test-time augmentation on saved cross-microscope models: orientation, scale, both, and seed ensembles.

Re-scores the models that ``bench_vision.py --save-models DIR`` wrote (one folder per seed), on the
same sets: the PBC hold-out of each model's seed (in-domain), the BCCD crops (all, and the audited
ones), and the BCCD cells cut from their fields. Every model is scored four ways in the same run,
so the plain pass is the anchor of each paired difference:

- ``plain``: one forward pass;
- ``dihedral``: the mean over the 8 rotations and mirror images (``--tta``);
- ``scale``: the mean over zooms ``1/F``, 1 and ``F`` (``--scale-tta F``; ``F`` = the training zoom);
- ``both``: the 24 views.

It also scores the mean of all models' probabilities (a seed ensemble) under each of the four,
and times each scoring (cells/s with one thread; a ratio to ``plain``).

Usage::

    python benchmarks/bench_vision_tta.py --models /tmp/m_s0 /tmp/m_s1 ... --factor 1.2 --out tta.json
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
from bench_vision import (
    SHARED,
    WBC5,
    audit_mask,
    bccd_context_cells,
    bccd_um_per_px_from_boxes,
)

from hemotwin.vision.data import load_training_data, map_items_to
from hemotwin.vision.datasets import load_dataset, split
from hemotwin.vision.engines import InferenceEngine, scale_tta_zooms
from hemotwin.vision.geometry import Geometry, prepare
from hemotwin.vision.modelfile import load_model

ARMS = ("plain", "dihedral", "scale", "both")


def _accuracy(probs: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    pred = np.asarray(WBC5)[probs.argmax(1)]
    return float((pred[mask] == truth[mask]).mean())


def _recall(probs: np.ndarray, truth: np.ndarray, mask: np.ndarray, label: str) -> float:
    m = mask & (truth == label)
    return float((np.asarray(WBC5)[probs.argmax(1)][m] == label).mean())


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", required=True, help="folders (or .hemo files) written by bench_vision")
    ap.add_argument("--mode", default="twin-target", help="which model of each folder (<mode>.hemo)")
    ap.add_argument("--factor", type=float, default=1.2, help="scale TTA zoom F (the models' --scale-jitter)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    paths = [Path(p) / f"{args.mode}.hemo" if Path(p).is_dir() else Path(p) for p in args.models]
    geom = Geometry()
    um_b, _ = bccd_um_per_px_from_boxes()
    bccd, _ = map_items_to(load_dataset(SHARED / "bccd", um_per_px=um_b), WBC5)
    bc = prepare(bccd, geom, working=False)
    y_bc = np.array([bccd.items[i].label for i in bc.kept])
    audited = audit_mask([bccd.items[i].path for i in bc.kept])
    bcx, y_bcx, _ = bccd_context_cells(um_b, geom)
    y_bcx = np.array(y_bcx)
    (pbc_all,), _ = load_training_data([SHARED / "pbc"])
    pbc, _ = map_items_to(pbc_all, WBC5)
    tests: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    keep, keep_x = y_bc != "basophil", y_bcx != "basophil"  # basophils are not scored (n = 2)

    zooms = {"plain": (1.0,), "dihedral": (1.0,), "scale": scale_tta_zooms(args.factor),
             "both": scale_tta_zooms(args.factor)}
    per_model, probs_bc, probs_bcx = [], {a: [] for a in ARMS}, {a: [] for a in ARMS}
    for path in paths:
        loaded = load_model(path, labels=list(WBC5))
        seed = int(loaded.provenance.get("seeds", {}).get("seed", 0))
        if seed not in tests:
            test = split(pbc, val_fraction=0.15, test_fraction=0.15, seed=seed).test  # bench_vision's split
            te = prepare(test, geom, working=False)
            tests[seed] = (te.images, np.array([test.items[i].label for i in te.kept]))
        x_te, y_te = tests[seed]
        row: dict = {"model": str(path), "seed": seed}
        for arm in ARMS:
            eng = InferenceEngine(loaded, backend="onnxruntime", num_threads=1, tta=arm in ("dihedral", "both"),
                                  zooms=zooms[arm])
            t = time.perf_counter()
            p_bc = eng.run(bc.images)
            cells_s = len(bc.images) / (time.perf_counter() - t)
            p_bcx, p_te = eng.run(bcx), eng.run(x_te)
            probs_bc[arm].append(p_bc)
            probs_bcx[arm].append(p_bcx)
            row[arm] = {"pbc_test": _accuracy(p_te, y_te, np.ones(len(y_te), bool)),
                        "bccd": _accuracy(p_bc, y_bc, keep), "bccd_audited": _accuracy(p_bc, y_bc, keep & audited),
                        "bccd_in_field_context": _accuracy(p_bcx, y_bcx, keep_x),
                        "bccd_audited_lymphocyte_recall": _recall(p_bc, y_bc, keep & audited, "lymphocyte"),
                        "cells_per_s": round(cells_s, 1)}
        per_model.append(row)
        print(f"{path}: " + "  ".join(f"{a} {row[a]['bccd']:.3f}/{row[a]['bccd_audited']:.3f}" for a in ARMS),
              file=sys.stderr, flush=True)

    keys = ("pbc_test", "bccd", "bccd_audited", "bccd_in_field_context", "bccd_audited_lymphocyte_recall")
    summary = {}
    for arm in ARMS:
        s = {}
        for k in keys:
            vals = np.array([r[arm][k] for r in per_model])
            diffs = vals - np.array([r["plain"][k] for r in per_model])
            s[k] = {"median": round(float(np.median(vals)), 4), "min": round(float(vals.min()), 4),
                    "max": round(float(vals.max()), 4),
                    "paired_vs_plain_median": round(float(np.median(diffs)), 4),
                    "paired_vs_plain": [round(float(d), 4) for d in diffs],
                    "better_worse_tied": [int((diffs > 0).sum()), int((diffs < 0).sum()), int((diffs == 0).sum())]}
        s["cost_vs_plain_median"] = round(float(np.median([r["plain"]["cells_per_s"] / r[arm]["cells_per_s"]
                                                           for r in per_model])), 2)
        summary[arm] = s
    ensemble = {arm: {"bccd": _accuracy(np.mean(probs_bc[arm], 0), y_bc, keep),
                      "bccd_audited": _accuracy(np.mean(probs_bc[arm], 0), y_bc, keep & audited),
                      "bccd_in_field_context": _accuracy(np.mean(probs_bcx[arm], 0), y_bcx, keep_x),
                      "bccd_audited_lymphocyte_recall": _recall(np.mean(probs_bc[arm], 0), y_bc, keep & audited,
                                                                "lymphocyte")}
                for arm in ARMS}
    doc = {"benchmark": "vision_test_time_augmentation", "date": date.today().isoformat(), "factor": args.factor,
           "zooms": {a: list(z) for a, z in zooms.items()}, "n_models": len(paths),
           "bccd": {"n": int(keep.sum()), "audited": int((audited & keep).sum()),
                    "um_per_px_estimate": um_b},
           "summary": summary, "seed_ensemble": ensemble, "models": per_model}
    text = json.dumps(doc, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return doc


if __name__ == "__main__":
    main()
