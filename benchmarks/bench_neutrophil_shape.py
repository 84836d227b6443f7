"""Nuclear size of segmented neutrophils: twin ``NGS`` against real PBC neutrophils (prints JSON).

Why: models trained on twin cells call real neutrophils basophils (docs/benchmarks.md). This
measures one suspected cause on both sets with the same image measure: optical density of the crop,
Otsu threshold inside the central 8 µm, nuclear components whose centroid lies within 6 µm of the
centre; reported are the nuclear area and a lobe thickness (2 x the 90th percentile of the distance
to the nuclear edge). The same threshold rule on both sets; it is a comparison, not a segmentation
to trust in absolute terms.

Also the nucleus's colour (median RGB and CIELAB, and the 10th percentile of green) on PBC, BCCD
and twin neutrophils under every preset: the twin renders dense nuclei with green near 0 and much
more violet chroma than either real microscope.

Usage: ``python benchmarks/bench_neutrophil_shape.py [--n 40] [--pbc ../shared/data/pbc]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.ndimage import distance_transform_edt
from skimage.color import rgb2lab
from skimage.filters import threshold_otsu
from skimage.io import imread
from skimage.measure import label, regionprops

from hemotwin.twin.datasets import render_cell
from hemotwin.twin.profiles import load_profile
from hemotwin.vision.datasets import measure_red_cells, red_cell_ruler


def _od_and_radius(image: np.ndarray, um_per_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Summed optical density of the crop and each pixel's distance (µm) from its centre."""
    od = -np.log(np.clip(image[..., :3].astype(float) / 255.0, 1e-3, 1.0)).sum(-1)
    h, w = od.shape
    yy, xx = np.mgrid[:h, :w]
    return od, np.hypot(yy - h / 2, xx - w / 2) * um_per_px


def nucleus_measure(image: np.ndarray, *, um_per_px: float) -> tuple[float, float]:
    """(nuclear area µm², lobe thickness µm) of the cell centred in ``image``."""
    od, r = _od_and_radius(image, um_per_px)
    h, w = od.shape
    central = r < 8.0
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


def nucleus_colour(image: np.ndarray, *, um_per_px: float) -> np.ndarray:
    """Median RGB of the nucleus (same threshold rule, central 4.5 µm) and its 10th-percentile green."""
    rgb = image[..., :3].astype(float)
    od, r = _od_and_radius(image, um_per_px)
    nuc = (od > threshold_otsu(od[r < 6.0])) & (r < 4.5)
    return np.r_[np.median(rgb[nuc], axis=0), np.percentile(rgb[nuc][:, 1], 10)]


def _colour_summary(rows: list[np.ndarray]) -> dict:
    m = np.median(np.array(rows), axis=0)
    lab = rgb2lab(m[:3].reshape(1, 1, 3) / 255.0)[0, 0]
    return {"nucleus_rgb_median": [round(float(v), 1) for v in m[:3]], "nucleus_green_p10": round(float(m[3]), 1),
            "nucleus_lab": [round(float(v), 1) for v in lab]}


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
    ap.add_argument("--bccd", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/bccd")
    ap.add_argument("--colour-profiles", default="analyzer-100x,wsi-40x,wsi-20x,phone-40x",
                    help="presets whose twin NGS nucleus colour is also measured (20 cells each)")
    a = ap.parse_args(argv)
    out: dict = {"benchmark": "neutrophil_shape"}
    files = sorted((a.pbc / "neutrophil").glob("*.jpg"))[: a.n]
    if files:
        images = [imread(f) for f in files]
        # One pixel size for the set: the project's red-cell ruler over its crops pooled.
        um, det = red_cell_ruler([measure_red_cells(im) for im in images])
        if um is None:
            raise SystemExit(f"{a.pbc}: the red-cell ruler refused ({det['reason']})")
        out["pbc_neutrophil"] = {"um_per_px": round(um, 4),
                                 **_summary(np.array([nucleus_measure(im, um_per_px=um) for im in images])),
                                 **_colour_summary([nucleus_colour(im, um_per_px=um) for im in images])}
    bccd = sorted((a.bccd / "wbc_crops" / "neutrophil").glob("*.png"))[: a.n]
    if bccd:
        # BCCD's pixel size from its annotated red-cell boxes (docs/benchmarks.md).
        out["bccd_neutrophil"] = {"um_per_px": 0.0725, **_colour_summary(
            [nucleus_colour(imread(f)[..., :3], um_per_px=0.0725) for f in bccd])}
    for name in [a.profile, *(p for p in a.colour_profiles.split(",") if p and p != a.profile)]:
        prof = load_profile(name)
        size = round(36.0 / prof.camera.um_per_px)
        um = prof.camera.um_per_px
        cells = [render_cell("NGS", prof, size_px=size, seed=s).image for s in range(a.n if name == a.profile else 20)]
        out[f"twin_NGS_{name}"] = {
            **(_summary(np.array([nucleus_measure(c, um_per_px=um) for c in cells])) if name == a.profile else {}),
            **_colour_summary([nucleus_colour(c, um_per_px=um) for c in cells])}
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
