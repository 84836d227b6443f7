"""Threshold segmentation of a single-white-cell crop, applied identically to real and twin images.

Compartments: background / red cells / white-cell nucleus / white-cell cytoplasm. Deliberately simple
(Otsu thresholds, morphology, connected components) so that it has no opinion about which image is
real: every threshold is re-estimated per image. Validated on twin crops against the twin's exact
ground truth by ``bench_realism.py``.

Steps (``um_per_px`` only scales the morphology radii; both data sets are ~0.1 µm/px):

1. background colour = median RGB of the brightest fifth (by green); foreground = RGB distance to it
   above the lower of 3-class multi-Otsu thresholds (glass / red cells + cytoplasm / chromatin),
   holes filled (red-cell pallor), specks removed. Darkness ``d = 1 - G`` (lightly smoothed).
2. nucleus candidates = foreground pixels whose chromatin score ``d + (B - R)`` (dark and
   purple-blue) exceeds Otsu(score | foreground) *and* bluer than the typical foreground pixel
   (``B - R > median(B - R | foreground) + 0.04``, i.e. than red cells): excludes dark red-cell rims
   and eosin granules, without an absolute hue threshold.
3. the white cell = nucleus components within ``link_um`` of the component nearest the centre
   (multi-lobed neutrophils); nucleus components smaller than ``min_nucleus_um2`` are ignored.
4. cell region = convex hull of the nucleus dilated by ``hull_dilate_um``, intersected with the
   foreground; cytoplasm = cell region minus the nucleus dilated by ``nucleus_guard_um``.
5. white-cell diameter: 2 x median over 72 rays from the nucleus centroid of the distance to the
   first background pixel beyond the nucleus hull (robust to a few touching red cells).
6. red cells = foreground components away from the white cell (guard ``wbc_guard_um``), not touching
   the border, of plausible size (equivalent diameter 3-13 µm at the nominal scale) and solidity
   >= 0.9 (rejects clumps of touching cells).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi
from skimage import filters, measure, morphology

BACKGROUND, RED_CELL, CYTOPLASM, NUCLEUS = 0, 1, 3, 4  # same codes as twin Compartment


@dataclass
class Segmentation:
    """Label image (codes above, 255 = unassigned) and measurements of one crop."""

    labels: np.ndarray
    foreground: np.ndarray
    cell: np.ndarray
    nucleus: np.ndarray
    wbc_diameter_px: float
    rbc_diameters_px: list[float] = field(default_factory=list)
    ok: bool = True


def _disk(radius_px: float) -> np.ndarray:
    return morphology.disk(max(1, round(radius_px)))


def _remove_small(mask: np.ndarray, min_px: float) -> np.ndarray:
    lab, n = ndi.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel())
    keep = sizes >= max(4.0, min_px)
    keep[0] = False
    return keep[lab]


def _ray_diameter(fg: np.ndarray, hull: np.ndarray, center: tuple[float, float], n_rays: int = 72) -> float:
    h, w = fg.shape
    rmax = float(np.hypot(h, w))
    radii = []
    steps = np.arange(0.0, rmax, 0.5)
    for t in np.linspace(0.0, 2 * np.pi, n_rays, endpoint=False):
        ys = center[0] + steps * np.sin(t)
        xs = center[1] + steps * np.cos(t)
        inside = (ys >= 0) & (ys < h - 0.5) & (xs >= 0) & (xs < w - 0.5)
        yi, xi = np.rint(ys[inside]).astype(int), np.rint(xs[inside]).astype(int)
        in_hull = hull[yi, xi]
        out_of_hull = np.flatnonzero(~in_hull)
        if out_of_hull.size == 0:
            continue
        start = out_of_hull[0]
        bg = np.flatnonzero(~fg[yi[start:], xi[start:]])
        if bg.size == 0:
            continue  # ray leaves the image inside foreground
        radii.append(steps[start + bg[0]])
    return 2.0 * float(np.median(radii)) if radii else float("nan")


def segment(
    rgb: np.ndarray,
    *,
    um_per_px: float = 0.1,
    hull_dilate_um: float = 1.2,
    nucleus_guard_um: float = 0.3,
    link_um: float = 2.0,
    min_nucleus_um2: float = 3.0,
    wbc_guard_um: float = 1.0,
    purple_margin: float = 0.04,
) -> Segmentation:
    """Segment an ``H x W x 3`` uint8 crop centred on one white cell."""
    img = np.asarray(rgb, dtype=np.float32) / 255.0
    h, w = img.shape[:2]
    px = 1.0 / um_per_px
    smooth = ndi.gaussian_filter(img, (0.8, 0.8, 0))
    dark = 1.0 - smooth[..., 1]
    # Background colour: median of the brightest half (the crop is mostly glass and red cells).
    bg_rgb = np.median(smooth[dark <= np.median(dark)], axis=0)
    dist = np.linalg.norm(smooth - bg_rgb, axis=-1)
    t_fg, _ = filters.threshold_multiotsu(dist, classes=3)
    fg = ndi.binary_fill_holes(dist > t_fg)
    fg = _remove_small(fg, 0.5 * px * px)

    # Chromatin score: dark and purple-blue (B > R); Otsu within the foreground.
    purple = smooth[..., 2] - smooth[..., 0]
    score = dark + purple
    t_nuc = filters.threshold_otsu(score[fg]) if fg.sum() > 16 else np.inf
    p_ref = float(np.median(purple[fg])) if fg.any() else 0.0  # the typical foreground: red cells
    cand = fg & (score > t_nuc) & (purple > p_ref + purple_margin)
    cand = ndi.binary_opening(cand, _disk(0.15 * px))
    cand = _remove_small(cand, min_nucleus_um2 * px * px)
    empty = np.zeros((h, w), dtype=bool)
    if not cand.any():
        lab = np.where(fg, 255, BACKGROUND).astype(np.uint8)
        return Segmentation(lab, fg, empty, empty, float("nan"), [], ok=False)

    # Component nearest the centre, then everything linked to it within link_um.
    lab_c, _ = ndi.label(cand)
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    dist = ndi.distance_transform_edt(lab_c == 0, return_indices=True)[1]
    nearest = lab_c[dist[0][int(cy), int(cx)], dist[1][int(cy), int(cx)]]
    linked = ndi.binary_dilation(cand, _disk(0.5 * link_um * px))
    lab_l, _ = ndi.label(linked)
    seed_lab = lab_l[lab_c == nearest][0]
    nucleus = cand & (lab_l == seed_lab)

    hull = morphology.convex_hull_image(nucleus)
    cell = ndi.binary_dilation(hull, _disk(hull_dilate_um * px)) & fg
    nucleus = nucleus & cell
    cyto = cell & ~ndi.binary_dilation(nucleus, _disk(nucleus_guard_um * px))
    ny, nx = np.argwhere(nucleus).mean(axis=0)
    wbc_d = _ray_diameter(fg, hull, (float(ny), float(nx)))

    # Red cells: components of the foreground away from the white cell.
    guard = ndi.binary_dilation(cell, _disk(wbc_guard_um * px))
    fg_lab, _ = ndi.label(fg)
    touching = np.unique(fg_lab[guard])
    others = fg & ~np.isin(fg_lab, touching)
    rbc = np.zeros((h, w), dtype=bool)
    diam = []
    dmin, dmax = 3.0 * px, 13.0 * px
    for r in measure.regionprops(ndi.label(others)[0]):
        y0, x0, y1, x1 = r.bbox
        if y0 == 0 or x0 == 0 or y1 == h or x1 == w:
            continue
        d = r.equivalent_diameter_area
        if not (dmin <= d <= dmax) or r.solidity < 0.9:
            continue
        diam.append(float(d))
        rbc[r.slice] |= r.image

    lab = np.full((h, w), 255, dtype=np.uint8)
    lab[~ndi.binary_dilation(fg, _disk(0.3 * px))] = BACKGROUND
    lab[rbc] = RED_CELL
    lab[cyto] = CYTOPLASM
    lab[nucleus] = NUCLEUS
    return Segmentation(lab, fg, cell, nucleus, wbc_d, diam, ok=True)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (nan when both are empty)."""
    u = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / u) if u else float("nan")
