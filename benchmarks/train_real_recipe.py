"""The real-cell recipe for the next shipped classifier: one arm of ``bench_default_model.py``.

Trains one model of the recipe the shipped classifier is to move to (measured, not adopted yet:
docs/benchmarks.md, "Real-cell recipe"); ``scripts/train_default_model.py`` trains the shipped one.

Data (all offline, all recorded in the model's provenance):

1. **Real cells**: the PBC images (``../shared/data/pbc`` + ``../shared/data/pbc_more``, CellaVision
   DM96, May-Grünwald-Giemsa, CC BY 4.0), 7,000 white cells, with PBC's finer labels as the 15 codes
   (:mod:`hemotwin.vision.pbc`: NGB/NGS, PMO/MYB/MMZ, EOS, BAS, LYT, MON, EBO; set-valued where PBC says
   nothing finer). Platelets are left out.
2. **Twin cells only where no real cell exists**: MYO, MOB, PMB, LYA and KSC, rendered by our own
   renderer under randomised neighbours of the four scanner presets.

Every training cell is then augmented by ``--augment``: ``color`` (rotations, flips, colour jitter),
``twin`` (and re-imaged through neighbours of the four presets) or ``wide`` (and re-imaged through
the wide scanner space of :mod:`hemotwin.twin.scanner_space`), with a zoom of up to ``--scale-jitter``
for pixel-size error. The probabilities are calibrated by a temperature fitted on the validation
cells, as read and re-imaged. Labels: the 15 Matek codes.

Usage: ``.venv/bin/python benchmarks/train_real_recipe.py --augment wide --seed 0 --holdout 0.1
--holdout-csv h0.csv --out b0.hemo [--scanner lab.yaml] [--twin-per-class 300] [--epochs 20]``, then
``benchmarks/bench_default_model.py --model b:0:b0.hemo:h0.csv``.
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
from hemotwin.vision.pbc import write_fine_label_manifest  # noqa: E402
from hemotwin.vision.training import TrainRequest, train_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
#: Codes no real cell of PBC (normal blood) covers: learnt from the twin alone.
TWIN_ONLY = ("MYO", "MOB", "PMB", "LYA", "KSC")


def real_cells_manifest(out: Path, *, holdout: float = 0.0, holdout_csv: Path | None = None,
                        seed: int = 0) -> tuple[Path, dict[str, int]]:
    """The PBC images of both subsets with their fine labels, as one manifest.

    With ``holdout`` > 0, that fraction of the cells (drawn per label from ``seed``) is left out of
    training and written to ``holdout_csv``: a clean in-domain test set for the benchmark.
    """
    parts = [(SHARED / "pbc", SHARED / "pbc_more" / "fine_labels_pbc.csv"),
             (SHARED / "pbc_more", SHARED / "pbc_more" / "manifest.csv")]
    for root, table in parts:
        if not root.is_dir() or not table.is_file():
            raise SystemExit(f"{root} or {table}: the shared PBC images are needed to train the default model")
    path = out / "pbc_fine" / "manifest.csv"
    counts = write_fine_label_manifest(parts, path)
    if holdout > 0:
        import csv

        import numpy as np

        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        rng = np.random.default_rng([seed, 4242])
        test = set()
        for label in sorted({r["label"] for r in rows}):
            idx = [i for i, r in enumerate(rows) if r["label"] == label]
            test |= set(rng.choice(idx, size=round(holdout * len(idx)), replace=False).tolist())
        for dest, keep in ((path, False), (holdout_csv, True)):
            dest.parent.mkdir(parents=True, exist_ok=True)
            with open(dest, "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(r for i, r in enumerate(rows) if (i in test) == keep)
        counts["holdout"] = len(test)
    return path, counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--augment", default="wide", choices=["color", "twin", "wide"])
    ap.add_argument("--scale-jitter", type=float, default=1.15, help="zoom range for pixel-size error")
    ap.add_argument("--twin-per-class", type=int, default=300, help="twin cells per twin-only class")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--patience", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--workers", type=int, default=1, help="augmentation processes")
    ap.add_argument("--scanner", type=Path, default=None,
                    help="scanner file (hemotwin calibrate) to re-image part of the cells as (arm c of the benchmark)")
    ap.add_argument("--holdout", type=float, default=0.0,
                    help="fraction of the real cells kept out of training (benchmarks; the shipped model: 0)")
    ap.add_argument("--holdout-csv", type=Path, default=None, help="where to write the held-out cells' manifest")
    ap.add_argument("--out", required=True)
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hemotwin_default_"))
    try:
        if args.holdout > 0 and args.holdout_csv is None:
            raise SystemExit("--holdout needs --holdout-csv")
        manifest, counts = real_cells_manifest(work, holdout=args.holdout, holdout_csv=args.holdout_csv,
                                               seed=args.seed)
        print(f"real cells: {json.dumps(counts)}", flush=True)
        data = [str(manifest)]
        for s in simulate_cells_over_presets(work / "twin", per_class=args.twin_per_class, classes=TWIN_ONLY,
                                             randomize=0.6, field_um=28.0, seed=args.seed, workers=2):
            print(f"twin cells under {s['preset']}: {s['written']} written", flush=True)
            data.append(s["out"])
        from hemotwin.vision.scanner import training_target

        target, target_um = training_target(args.scanner)
        res = train_model(TrainRequest(data=data, out=args.out, labels="matek15", augment=args.augment,
                                       target=target, target_um_per_px=target_um, p_reimage=0.5,
                                       scale_jitter=args.scale_jitter, epochs=args.epochs, patience=args.patience,
                                       seed=args.seed, num_threads=args.threads, num_workers=args.workers,
                                       overwrite=args.overwrite), log=lambda m: print(m, flush=True))
        print(json.dumps({k: v for k, v in res.items() if k != "history"}, indent=2, default=str))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
