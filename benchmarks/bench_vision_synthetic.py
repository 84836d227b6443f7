"""Twin-only 15-class classifier: trained on rendered cells, scored on unseen scanner profiles and on real data.

Issue 3's synthetic measurement. Training cells: 15 classes x ``--per-class``, each rendered under
a ``randomize(strength 0.6)`` neighbour of one of the four presets (28 µm field, brought to the
model's working geometry); validation: 40 per class, other seeds, same strength; **test**: 40 per
class under ``randomize(strength 1.0)`` neighbours drawn from seeds never used in training (profiles
not seen in training). The same model is then scored on the real PBC hold-out and BCCD crops
through the label mappings (15 -> five WBC classes; probability on classes without a counterpart is
reported as unmapped). Prints JSON.

Usage: ``OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_vision_synthetic.py [--per-class 400]
[--epochs 15] [--out result.json]`` (about 45 min on 2 loaded cores; rendering ~40 % of it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import date
from multiprocessing import Pool
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np

from hemotwin.taxonomy import label_set
from hemotwin.twin.datasets import item_seed, render_cell
from hemotwin.twin.profiles import load_profile, randomize
from hemotwin.vision.datasets import to_canonical
from hemotwin.vision.geometry import Geometry

PRESETS = ("analyzer-100x", "wsi-40x", "wsi-20x", "phone-40x")
LABELS = label_set("matek15")
GEOM = Geometry()


def _render(args: tuple) -> np.ndarray:
    code, preset, seed, strength, working = args
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        base = load_profile(preset)
        prof = randomize(base, np.random.default_rng(seed), strength) if strength > 0 else base
        r = render_cell(code, prof, size_px=round(28.0 / prof.camera.um_per_px), seed=seed)
        um = GEOM.work_um_per_px if working else GEOM.um_per_px
        size = GEOM.work_size if working else GEOM.input_size
        return to_canonical(r.image, um_per_px=prof.camera.um_per_px, canonical_um_per_px=um, size=size)


def render_set(per_class: int, seed: int, strength: float, *, working: bool, workers: int):
    tasks, y = [], []
    for ci, code in enumerate(LABELS):
        for i in range(per_class):
            tasks.append((code, PRESETS[i % len(PRESETS)], item_seed(seed, ci, i), strength, working))
            y.append(code)
    with Pool(workers) as pool:
        return np.stack(pool.map(_render, tasks, chunksize=16)), y


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=400)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    from hemotwin.vision.augment import make_augment
    from hemotwin.vision.engines import InferenceEngine
    from hemotwin.vision.evaluate import evaluate_predictions
    from hemotwin.vision.fitting import CellArrayDataset, TrainConfig, fit, target_masks
    from hemotwin.vision.inference import collapse_to
    from hemotwin.vision.models import ModelConfig

    t0 = time.perf_counter()
    x_tr, y_tr = render_set(args.per_class, 1000 + args.seed, 0.6, working=True, workers=args.workers)
    x_va, y_va = render_set(40, 2000 + args.seed, 0.6, working=False, workers=args.workers)
    x_te, y_te = render_set(40, 3000 + args.seed, 1.0, working=False, workers=args.workers)
    render_s = time.perf_counter() - t0
    cfg = TrainConfig(epochs=args.epochs, seed=args.seed, num_threads=2, num_workers=1, patience=5)
    t = time.perf_counter()
    res = fit(ModelConfig(n_classes=len(LABELS), input_size=GEOM.input_size),
              CellArrayDataset(x_tr, target_masks(y_tr, LABELS), aug=make_augment("color", GEOM), seed=args.seed),
              CellArrayDataset(x_va, target_masks(y_va, LABELS)), config=cfg)
    train_s = time.perf_counter() - t
    eng = InferenceEngine(res.model, backend="torch", labels=list(LABELS))
    scores = {}
    for name, x, y in (("twin_val_strength_0.6", x_va, y_va), ("twin_test_unseen_strength_1.0", x_te, y_te)):
        m = evaluate_predictions(y, eng.run(x), LABELS)
        scores[name] = {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "n": m["n"],
                        "per_class_f1": {k: v["f1"] for k, v in m["per_class"].items()}}
    real = _real_sets()
    wbc5 = ("basophil", "eosinophil", "lymphocyte", "monocyte", "neutrophil")
    for name, (x, y) in real.items():
        p, target, dropped = collapse_to(eng.run(x), LABELS, wbc5)
        m = evaluate_predictions(y, np.nan_to_num(p), target, exclude=("basophil",) if "bccd" in name else ())
        scores[name] = {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "n": m["n"],
                        "unmapped_probability_mean": float(np.mean(dropped)),
                        "per_class_recall": {k: v["recall"] for k, v in m["per_class"].items()}}
    doc = {"benchmark": "vision_synthetic_15class", "date": date.today().isoformat(), "per_class": args.per_class,
           "epochs_max": args.epochs, "best_epoch": res.best_epoch, "seed": args.seed, "render_s": round(render_s, 1),
           "train_s": round(train_s, 1), "train_images_per_s": res.train_images_per_s, "scores": scores}
    text = json.dumps(doc, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return doc


def _real_sets() -> dict:
    """PBC hold-out (same split as bench_vision.py) and BCCD crops, at the model geometry; empty without data."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_vision as bv

    from hemotwin.vision.data import load_training_data, map_items_to
    from hemotwin.vision.datasets import load_dataset, split
    from hemotwin.vision.geometry import prepare

    if not (bv.SHARED / "pbc").is_dir():
        return {}
    (pbc_all,), _ = load_training_data([bv.SHARED / "pbc"])
    pbc, _ = map_items_to(pbc_all, bv.WBC5)
    test = split(pbc, val_fraction=0.15, test_fraction=0.15, seed=0).test
    um_b, _ = bv.bccd_um_per_px_from_boxes()
    bccd, _ = map_items_to(load_dataset(bv.SHARED / "bccd", um_per_px=um_b), bv.WBC5)
    out = {}
    for name, ds in (("pbc_test_wbc5", test), ("bccd_wbc5", bccd)):
        p = prepare(ds, GEOM, working=False)
        out[name] = (p.images, [ds.items[i].label for i in p.kept])
    return out


if __name__ == "__main__":
    main()
