"""Training throughput with each augmentation on real crops, side by side in one run (target: twin < 2x).

The real training set of the cross-microscope benchmark (PBC, five classes, seed 0 split: 870 crops)
is trained for a few epochs with ``color`` (the anchor), ``twin`` (randomised presets) and
``twin-target`` (BCCD's scanner fitted on its 23 unscored fields; as ``hemotwin train --target``
does, the other samples are not re-imaged through presets, and every cell is zoomed by up to
1.2x), and ``color+zoom`` (the anchor with the same zoom, to separate the zoom's cost from the
twin's). Arms alternate within each repeat
(A B C, A B C, ...), so a slow phase of a shared machine hits all of them; each arm's figure is the
median over repeats of its median images/s over epochs after the first (the first epoch fills the
re-imaging pools and caches). Same settings as ``bench_vision.py``: one torch thread and one
DataLoader worker for augmentation, which is how a 2-core machine trains fastest.

Usage: ``OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_vision_train_speed.py [--epochs 3]
[--repeats 2] [--out FILE.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import date
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from bench_vision import SHARED, WBC5, bccd_um_per_px_from_boxes, fit_target_style

import hemotwin
from hemotwin.twin.reimage import StainBasis
from hemotwin.vision.augment import TargetReimaging, make_augment
from hemotwin.vision.data import load_training_data, map_items_to
from hemotwin.vision.datasets import split
from hemotwin.vision.fitting import CellArrayDataset, TrainConfig, fit, target_masks
from hemotwin.vision.geometry import Geometry, prepare
from hemotwin.vision.models import ModelConfig


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if not (SHARED / "pbc").is_dir():
        raise SystemExit(f"{SHARED / 'pbc'}: shared PBC data not found")
    geom = Geometry()
    (pbc_all,), _ = load_training_data([SHARED / "pbc"])
    pbc, _ = map_items_to(pbc_all, WBC5)
    parts = split(pbc, val_fraction=0.15, test_fraction=0.15, seed=0)
    tr = prepare(parts.train, geom, working=True)
    va = prepare(parts.val, geom, working=False)
    y_tr = target_masks([parts.train.items[i].label for i in tr.kept], WBC5)
    y_va = target_masks([parts.val.items[i].label for i in va.kept], WBC5)
    basis = StainBasis().fit(list(tr.images[:: max(1, len(tr.images) // 64)]))
    um_b, _ = bccd_um_per_px_from_boxes()
    style, _ = fit_target_style(tr.images, um_b, geom, n_fields=0, seed=0)
    augs = {"color": make_augment("color", geom),
            "color+zoom": make_augment("color", geom, scale_jitter=1.2),
            "twin": make_augment("twin", geom, basis=basis, seed=0),
            "twin-target": make_augment("twin", geom, basis=basis, seed=0, target=TargetReimaging(style), p_reimage=0.0,
                                        scale_jitter=1.2)}
    per_run: dict[str, list[float]] = {k: [] for k in augs}
    for rep in range(args.repeats):
        for arm, aug in augs.items():
            cfg = TrainConfig(epochs=args.epochs, seed=rep, num_threads=1, num_workers=1, patience=args.epochs)
            t = time.perf_counter()
            res = fit(ModelConfig(n_classes=len(WBC5), input_size=geom.input_size),
                      CellArrayDataset(tr.images, y_tr, aug=aug, seed=rep), CellArrayDataset(va.images, y_va),
                      config=cfg)
            rates = [h["train_images_per_s"] for h in res.history[1:]] or [res.train_images_per_s]
            per_run[arm].append(float(statistics.median(rates)))
            print(f"repeat {rep} {arm}: {per_run[arm][-1]:.1f} images/s ({time.perf_counter() - t:.0f} s)",
                  file=sys.stderr, flush=True)
    med = {k: float(statistics.median(v)) for k, v in per_run.items()}
    out = {"benchmark": "vision_train_speed", "date": date.today().isoformat(), "version": hemotwin.__version__,
           "n_train": len(tr.images), "epochs": args.epochs, "repeats": args.repeats, "cpus": os.cpu_count(),
           "images_per_s": per_run, "median_images_per_s": med,
           "time_ratio_vs_color": {k: med["color"] / v for k, v in med.items()}}
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return out


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
