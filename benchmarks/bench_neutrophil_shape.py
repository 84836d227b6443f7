"""Nuclear size of segmented neutrophils: twin ``NGS`` against real PBC neutrophils (prints JSON).

Why: models trained on twin cells call real neutrophils basophils (docs/benchmarks.md). This
measures one suspected cause on both sets with the same image measure: optical density of the crop,
Otsu threshold inside the central 8 µm, nuclear components whose centroid lies within 6 µm of the
centre; reported are the nuclear area and a lobe thickness (2 x the 90th percentile of the distance
to the nuclear edge). The same threshold rule on both sets; it is a comparison, not a segmentation
to trust in absolute terms.

Usage: ``python benchmarks/bench_neutrophil_shape.py [--n 40] [--pbc ../shared/data/pbc]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.ndimage import distance_transform_edt
from skimage.filters import threshold_otsu
from skimage.io import imread
from skimage.measure import label, regionprops

from hemotwin.twin.datasets import render_cell
from hemotwin.twin.profiles import load_profile
from hemotwin.vision.datasets import estimate_um_per_px


def nucleus_measure(image: np.ndarray, *, um_per_px: float) -> tuple[float, float]:
    """(nuclear area µm², lobe thickness µm) of the cell centred in ``image``."""
    od = -np.log(np.clip(image[..., :3].astype(float) / 255.0, 1e-3, 1.0)).sum(-1)
    h, w = od.shape
    yy, xx = np.mgrid[:h, :w]
    central = np.hypot(yy - h / 2, xx - w / 2) * um_per_px < 8.0
    nuc = (od > threshold_otsu(od[central])) & central
    lab = label(nuc)
    keep = np.zeros_like(nuc)
    for reg in regionprops(lab):
        cy, cx = reg.centroid
        if np.hypot(cy - h / 2, cx - w / 2) * um_per_px < 6.0:
            keep |= lab == reg.label
    if not keep.any():
        return float("nan"), float("nan")
    thick = 2 * np.percentile(distance_transform_edt(keep)[keep], 90) * um_per_px
    return float(keep.sum() * um_per_px**2), float(thick)


def _summary(rows: np.ndarray) -> dict:
    return {"n": int(np.isfinite(rows[:, 0]).sum()),
            "area_um2_median": round(float(np.nanmedian(rows[:, 0])), 1),
            "area_um2_iqr": [round(float(v), 1) for v in np.nanpercentile(rows[:, 0], [25, 75])],
            "lobe_thickness_um_median": round(float(np.nanmedian(rows[:, 1])), 2)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--pbc", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/pbc")
    ap.add_argument("--profile", default="analyzer-100x")
    a = ap.parse_args(argv)
    out: dict = {"benchmark": "neutrophil_shape"}
    files = sorted((a.pbc / "neutrophil").glob("*.jpg"))[: a.n]
    if files:
        images = [imread(f) for f in files]
        # One pixel size for the set: the median of the project's red-cell ruler over its crops.
        um = float(np.median([u for u, _ in map(estimate_um_per_px, images) if u is not None]))
        out["pbc_neutrophil"] = {"um_per_px": round(um, 4),
                                 **_summary(np.array([nucleus_measure(im, um_per_px=um) for im in images]))}
    prof = load_profile(a.profile)
    size = round(36.0 / prof.camera.um_per_px)
    twin = [nucleus_measure(render_cell("NGS", prof, size_px=size, seed=s).image, um_per_px=prof.camera.um_per_px)
            for s in range(a.n)]
    out[f"twin_NGS_{a.profile}"] = _summary(np.array(twin))
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
