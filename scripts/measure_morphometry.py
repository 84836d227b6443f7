"""Measure real white cells (PBC) and write the twin's morphometry reference, ``morphometry.json``.

Every white-cell image of the PBC folders (platelets skipped) that is *not* held out by
:func:`hemotwin.twin.morphometry.is_morphometry_holdout` is segmented and measured at the given
pixel size; per class (the 15 codes through :data:`hemotwin.vision.pbc.PBC_FINE_LABELS`; cells
whose file name gives only the group stay under ``neutrophil`` / ``ig``) the script stores the
5 %-step quantiles of each feature, mean chromatin and cytoplasm spectra, and a nucleus shape
model (PCA of normalised elliptic Fourier descriptors, lobe statistics). Images that cannot be
read or hold no cell are listed in the provenance; they never stop the run.

    .venv/bin/python scripts/measure_morphometry.py --workers 8
    .venv/bin/python scripts/measure_morphometry.py --limit 20 --out /tmp/m.json   # quick look
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import math
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SCHEMA = "hemotwin.morphometry/1"
QUANTILES = tuple(round(q, 2) for q in np.arange(0.05, 0.951, 0.05))
EFD_ORDER = 12
N_COMPONENTS = 6
MAX_LOBES = 6


def default_data() -> list[Path]:
    """The PBC folders next to the repository (``../shared/data``), those that exist."""
    for base in (REPO / "shared" / "data", REPO.parent / "shared" / "data"):
        found = [base / n for n in ("pbc", "pbc_more") if (base / n).is_dir()]
        if found:
            return found
    return []


def list_images(roots: list[Path]) -> list[tuple[str, Path, str]]:
    """``(name, path, class key)`` of every white-cell image with a fine label, sorted by name.

    ``name`` is ``<folder>/<class folder>/<file>``, the key of the hold-out rule.
    """
    from hemotwin.vision.pbc import PBC_FINE_LABELS

    out = []
    for root in roots:
        table = fine_label_table(root)
        with open(table, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                fine = (row.get("fine_label") or "").strip().lower()
                key = PBC_FINE_LABELS.get(fine)
                if key is None:
                    continue
                out.append((f"{root.name}/{row['path']}", root / row["path"], key))
    return sorted(out)


def fine_label_table(root: Path) -> Path:
    """The table of fine labels of ``root``: its manifest when it has the column, else a sibling's
    ``fine_labels_<root name>.csv`` (``pbc_more/fine_labels_pbc.csv`` labels ``pbc``)."""
    manifest = root / "manifest.csv"
    if manifest.is_file():
        with open(manifest, newline="", encoding="utf-8") as fh:
            if "fine_label" in (csv.DictReader(fh).fieldnames or []):
                return manifest
    for table in sorted(root.parent.glob(f"*/fine_labels_{root.name}.csv")):
        return table
    raise SystemExit(f"{root}: no fine labels (manifest.csv without fine_label, no ../*/fine_labels_{root.name}.csv)")


def fit_basis(items: list[tuple[str, Path, str]], *, n: int, seed: int):
    """A stain basis fitted to ``n`` training images drawn with ``seed``."""
    from skimage.io import imread

    from hemotwin.twin.reimage import StainBasis

    rng = np.random.default_rng(seed)
    pick = rng.choice(len(items), size=min(n, len(items)), replace=False)
    imgs = []
    for i in sorted(pick):
        try:
            imgs.append(imread(items[i][1])[..., :3])
        except Exception:  # an unreadable image is reported by the measuring pass
            continue
    return StainBasis().fit(imgs, seed=seed)


_BASIS = None
_UM = 0.1


def _init(basis_dict: dict, um_per_px: float) -> None:
    global _BASIS, _UM
    from threadpoolctl import threadpool_limits

    from hemotwin.twin.reimage import StainBasis

    threadpool_limits(1)
    _BASIS = StainBasis.from_dict(basis_dict)
    _UM = um_per_px


def measure_one(item: tuple[str, str, str]) -> dict:
    """Features, spectra and nucleus shape of one image, or the reason it failed."""
    from skimage.io import imread

    from hemotwin.twin import morphometry as M

    name, path, key = item
    try:
        rgb = imread(path)[..., :3]
        seg = M.segment_cell(rgb, um_per_px=_UM, basis=_BASIS)
        if not seg.ok:
            return {"name": name, "key": key, "error": seg.reason}
        feats = M.features_of(seg)
        a = seg.amounts
        nuc_inner = M.inner_region(seg.nucleus, margin_um=0.3, um_per_px=_UM)
        spectra = {
            "chromatin": M.radial_power_spectrum(a[0], nuc_inner, um_per_px=_UM).tolist(),
            "cytoplasm": M.radial_power_spectrum(a.sum(axis=0), seg.cell & ~seg.nucleus, um_per_px=_UM).tolist(),
        }
        pts = M.outline(seg.nucleus, um_per_px=_UM)
        efd = M.normalized_efd(M.elliptic_fourier(pts, order=EFD_ORDER)).ravel().tolist() if len(pts) >= 32 else None
        lobes = M.nucleus_lobes(seg.nucleus, um_per_px=_UM)
        areas = np.sort(np.bincount(lobes.ravel())[1:])[::-1]
        fractions = (areas / areas.sum()).tolist() if areas.sum() > 0 else []
        widths = M.filament_widths(seg.nucleus, lobes, um_per_px=_UM) if len(areas) >= 2 else []
        return {"name": name, "key": key, "features": feats, "spectra": spectra, "efd": efd,
                "lobe_fractions": fractions, "filament_widths": widths}
    except Exception as exc:  # a batch finishes the rest and reports failures
        return {"name": name, "key": key, "error": f"{type(exc).__name__}: {exc}"}


def _quantiles(values: list[float]) -> list[float | None]:
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if v.size == 0:
        return [None] * len(QUANTILES)
    return [round(float(x), 5) for x in np.quantile(v, QUANTILES)]


def _mean_log_spectrum(rows: list[list[float]]) -> list[float | None]:
    """Geometric mean over cells of each cell's spectrum normalised to unit mean power (shape only)."""
    s = np.asarray(rows, dtype=float)
    s = s / np.nanmean(s, axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        m = np.exp(np.nanmean(np.log(s), axis=0))
    return [round(float(x), 5) if math.isfinite(x) else None for x in m]


def shape_model(results: list[dict]) -> dict:
    """PCA of normalised EFDs and lobe statistics of one class."""
    efds = np.asarray([r["efd"] for r in results if r.get("efd") is not None], dtype=float)
    out: dict = {"efd_order": EFD_ORDER, "n": len(efds)}
    if len(efds) >= 3:
        mean = efds.mean(axis=0)
        _, s, vt = np.linalg.svd(efds - mean, full_matrices=False)
        var = s**2 / max(len(efds) - 1, 1)
        k = min(N_COMPONENTS, len(var))
        out |= {"mean": np.round(mean, 5).tolist(), "components": np.round(vt[:k], 5).tolist(),
                "variances": np.round(var[:k], 6).tolist(),
                "explained": round(float(var[:k].sum() / max(var.sum(), 1e-12)), 4)}
    counts = [len(r["lobe_fractions"]) for r in results]
    hist = np.bincount(np.clip(counts, 0, MAX_LOBES), minlength=MAX_LOBES + 1)[1:]
    out["lobe_count_p"] = np.round(hist / max(hist.sum(), 1), 4).tolist()
    by_n: dict[str, list[float]] = {}
    for n in range(2, MAX_LOBES + 1):
        fr = np.asarray([r["lobe_fractions"] for r in results if len(r["lobe_fractions"]) == n], dtype=float)
        if len(fr):
            by_n[str(n)] = np.round(fr.mean(axis=0), 4).tolist()
    out["lobe_fractions_mean"] = by_n
    widths = [w for r in results for w in r["filament_widths"]]
    out["filament_width_um"] = _quantiles(widths)
    return out


def summarise(results: list[dict], feature_names: tuple[str, ...]) -> dict:
    """The per-class block of the JSON."""
    from hemotwin.twin.morphometry import SPECTRUM_FREQUENCIES_PER_UM

    classes = {}
    for key in sorted({r["key"] for r in results if "features" in r}):
        rs = [r for r in results if r["key"] == key and "features" in r]
        classes[key] = {
            "n": len(rs),
            "quantiles": {f: _quantiles([r["features"][f] for r in rs]) for f in feature_names},
            "mean_spectra": {
                "chromatin": _mean_log_spectrum([r["spectra"]["chromatin"] for r in rs]),
                "cytoplasm": _mean_log_spectrum([r["spectra"]["cytoplasm"] for r in rs]),
                "frequencies_per_um": list(SPECTRUM_FREQUENCIES_PER_UM),
            },
            "nucleus_shape": shape_model(rs),
        }
    return classes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, action="append", help="PBC folder (repeatable); default ../shared/data")
    parser.add_argument("--out", type=Path, default=REPO / "src/hemotwin/twin/specimen/data/morphometry.json")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--um-per-px", type=float, default=0.1, help="pixel size of the crops (PBC: ~0.1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the stain-basis fit")
    parser.add_argument("--basis-images", type=int, default=60, help="training images the stain basis is fitted on")
    parser.add_argument("--limit", type=int, default=0, help="at most this many images per class (0: all)")
    args = parser.parse_args(argv)

    from rich.progress import Progress

    import hemotwin
    from hemotwin.twin.morphometry import FEATURE_DEFINITIONS, FEATURES, HOLDOUT_FRACTION, is_morphometry_holdout

    roots = args.data or default_data()
    if not roots:
        print("no PBC data found; pass --data", file=sys.stderr)
        return 2
    items = list_images(roots)
    held = [it for it in items if is_morphometry_holdout(it[0])]
    train = [it for it in items if not is_morphometry_holdout(it[0])]
    if args.limit:
        per: dict[str, int] = {}
        kept = []
        for it in train:
            if per.get(it[2], 0) < args.limit:
                kept.append(it)
                per[it[2]] = per.get(it[2], 0) + 1
        train = kept
    t0 = time.perf_counter()
    basis = fit_basis(train, n=args.basis_images, seed=args.seed)
    tasks = [(n, str(p), k) for n, p, k in train]
    results = []
    with Progress() as progress, mp.get_context("spawn").Pool(
            max(1, args.workers), initializer=_init, initargs=(basis.to_dict(), args.um_per_px)) as pool:
        bar = progress.add_task("measuring cells", total=len(tasks))
        for r in pool.imap_unordered(measure_one, tasks, chunksize=4):
            results.append(r)
            progress.advance(bar)
    results.sort(key=lambda r: r["name"])
    failures = [{"image": r["name"], "reason": r["error"]} for r in results if "error" in r]
    elapsed = time.perf_counter() - t0
    n_per_class: dict[str, int] = {}
    for r in results:
        if "features" in r:
            n_per_class[r["key"]] = n_per_class.get(r["key"], 0) + 1
    doc = {
        "schema": SCHEMA,
        "version": hemotwin.__version__,
        "provenance": {
            "script": "scripts/measure_morphometry.py",
            "data": [str(Path(r).name) for r in roots],
            "source": "PBC (Acevedo et al., Data in Brief 2020;30:105474), CellaVision DM96, May-Grünwald-Giemsa",
            "n_images_listed": len(items),
            "n_held_out": len(held),
            "holdout_fraction": HOLDOUT_FRACTION,
            "n_measured": len(results),
            "n_per_class": dict(sorted(n_per_class.items())),
            "um_per_px": args.um_per_px,
            "limit_per_class": args.limit,
            "date": dt.date.today().isoformat(),
            "seed": args.seed,
            "stain_basis": basis.to_dict(),
            "seconds": round(elapsed, 1),
            "workers": args.workers,
            "quantiles": list(QUANTILES),
            "failures": failures,
        },
        "features": dict(FEATURE_DEFINITIONS),
        "classes": summarise(results, FEATURES),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(doc, indent=1, ensure_ascii=False, allow_nan=False)
    args.out.write_text(text + "\n", encoding="utf-8")
    print(f"{len(results) - len(failures)} cells measured, {len(failures)} failures, {elapsed:.0f} s "
          f"({args.workers} workers); wrote {args.out} ({len(text) / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
