"""Train the classifier shipped with hemotwin (``src/hemotwin/vision/default_model.hemo``).

Data (all offline, all recorded in the model's provenance):
1. twin cells of the 15 classes rendered by our own renderer under randomised neighbours of the
   four scanner presets (``hemotwin simulate cells --randomize``), fine labels;
2. the real PBC images (``../shared/data/pbc``, CellaVision DM96, CC BY 4.0), coarse labels
   ("neutrophil" = NGS or NGB, "ig" = PMO/PMB/MYB/MMZ, ...) used as set-valued targets; the
   platelet folder has no white-cell counterpart and is skipped.
3. twin cells cut from rendered twin *fields* exactly where ``hemotwin analyze`` cuts them
   (detector-centred crops with neighbouring white and red cells; ``--field-per-class``), under
   randomised neighbours of the four presets, so that the model sees what the smear analysis shows
   it. Field seeds differ from the chain calibrations' (90210) and the benchmark pools' (4242).
Labels: the 15 Matek codes. Augmentation: ``color`` by default — in the side-by-side benchmark
of 2026-11-28 (docs/benchmarks.md) the twin re-imaging augmentation did not yet beat the colour
baseline on real cross-microscope data, so the shipped model uses the better measured one;
``--augment twin`` trains the twin variant.

Usage: ``.venv/bin/python scripts/train_default_model.py [--per-class 600] [--field-per-class 600]
[--epochs 20] [--out src/hemotwin/vision/default_model.hemo] [--overwrite]`` (the shipped model:
the defaults; about 50 min on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from hemotwin.twin.datasets import simulate_cells_over_presets  # noqa: E402
from hemotwin.twin.profiles import list_presets  # noqa: E402
from hemotwin.vision.training import TrainRequest, train_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def write_field_crops(out: Path, profile: str, per_class: int, *, seed: int) -> int:
    """Cells of every class cut from twin fields of ``profile`` -> ImageFolder + manifest.csv."""
    import csv

    import numpy as np
    from PIL import Image

    from hemotwin.diagnosis.calibration import field_cell_crops
    from hemotwin.taxonomy import CLASS_CODES

    rng = np.random.default_rng(seed)
    labels = [c for c in CLASS_CODES for _ in range(per_class)]
    labels = [labels[i] for i in rng.permutation(len(labels))]  # mixed fields, as in a smear
    res = field_cell_crops(profile, labels, seed=seed, size_um=28.0, randomize=0.3, workers=2)
    out.mkdir(parents=True)
    with open(out / "manifest.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "um_per_px", "group"])
        for i, (crop, lab, um, f) in enumerate(zip(res["crops"], res["labels"], res["um_per_px"], res["field"],
                                                   strict=True)):
            rel = Path(lab) / f"{lab}_{i:06d}.png"
            (out / lab).mkdir(exist_ok=True)
            Image.fromarray(crop).save(out / rel)
            w.writerow([str(rel), lab, f"{um:.6f}", f"{profile}-field-{f}"])  # one field's cells share a side
    return len(res["labels"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=600, help="twin cells per class (split over the presets)")
    ap.add_argument("--field-per-class", type=int, default=600,
                    help="cells per class cut from twin fields (split over the presets)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--augment", default="color", choices=["none", "color", "twin"])
    ap.add_argument("--out", default=str(REPO / "src" / "hemotwin" / "vision" / "default_model.hemo"))
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args()
    pbc = SHARED / "pbc"
    if not pbc.is_dir():
        raise SystemExit(f"{pbc}: the shared PBC images are needed to train the default model")
    work = Path(tempfile.mkdtemp(prefix="hemotwin_default_"))
    try:
        data = []
        presets = list_presets()
        # A 28 µm field per crop, as the model's working field.
        for s in simulate_cells_over_presets(work / "twin", per_class=args.per_class, randomize=0.6, field_um=28.0,
                                             seed=args.seed, workers=2):
            print(f"twin cells under {s['preset']}: {s['written']} written", flush=True)
            data.append(s["out"])
        if args.field_per_class > 0:
            per_field = max(1, args.field_per_class // len(presets))
            for k, name in enumerate(presets):
                out = work / f"fields_{name}"
                n = write_field_crops(out, name, per_field, seed=args.seed + 7000 + k)
                print(f"field crops under {name}: {n} written", flush=True)
                data.append(str(out))
        data.append(str(pbc))
        res = train_model(TrainRequest(data=data, out=args.out, labels="matek15", augment=args.augment,
                                       epochs=args.epochs, seed=args.seed, num_threads=1, num_workers=args.workers,
                                       overwrite=args.overwrite), log=print)
        print(json.dumps({k: v for k, v in res.items() if k != "history"}, indent=2, default=str))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
