"""Cell detection in a bright-field field of a Romanowsky-stained smear.

White cells are found by their nuclei, the most strongly and most purple-stained objects of a
smear; lobes of one nucleus are grouped, and the cell outline is traced along rays from the
nucleus through pixels that a colour model fitted per cell calls cytoplasm (erythroblasts, whose
cytoplasm is red-cell coloured, by the uniformity of that colour instead). Smudge cells are weak
purple smears without an intact nucleus. Red cells are counted from their integrated optical
density, platelets as small purple spots.

Everything is measured in µm: the field is resampled to a fixed working pixel size
(:data:`WORK_UM_PER_PX`, area averaging) so the same physical parameters hold from 0.07 to
0.5 µm/px, and the masks are mapped back to the field's pixels at the end.

See ``docs/detection.md`` for the method and the measured accuracy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from hemotwin.errors import InputError
from hemotwin.io import pixel_size
from hemotwin.twin.resample import resize_hwc

__all__ = [
    "WORK_UM_PER_PX",
    "Detection",
    "FieldDetections",
    "background_rgb",
    "check_rgb",
    "check_um",
    "crop_cell",
    "detect_cells",
    "nuclear_stain",
    "optical_density",
    "to_work",
]

#: Working pixel size (µm). 0.3 µm keeps a 2 µm neutrophil lobe ~7 px wide and a 1024² analyzer
#: field at 341² px (the watershed and distance transforms then cost milliseconds).
WORK_UM_PER_PX = 0.3

#: Mean area of a normal red cell (µm², 7.5 µm disc), for area-based count estimates.
RBC_AREA_UM2 = math.pi * 3.75**2


@dataclass(frozen=True)
class Detection:
    """One detected cell.

    Attributes
    ----------
    kind
        ``"wbc"``, ``"rbc"`` or ``"platelet"``.
    bbox
        ``(row0, col0, row1, col1)``, half-open, in field pixels.
    mask
        Bool, shape ``(row1 - row0, col1 - col0)``: the whole cell.
    nucleus_mask
        Bool, same shape, for white cells (None when not found).
    score
        Detection confidence in [0, 1].
    centroid
        ``(row, col)`` of the cell mask in field pixels.
    touches_border
        The cell is cut by the field edge.
    """

    kind: str
    bbox: tuple[int, int, int, int]
    mask: np.ndarray
    nucleus_mask: np.ndarray | None
    score: float
    centroid: tuple[float, float]
    touches_border: bool


@dataclass(frozen=True)
class FieldDetections:
    """What :func:`detect_cells` found in one field.

    Attributes
    ----------
    wbc
        White cells, sorted by row then column of their centroid.
    n_rbc
        Estimated red cells (from the field's integrated red-cell optical density, so touching and
        overlapping cells count alike).
    n_platelets
        Platelets (a clump counts by its area).
    um_per_px
        Pixel size of the field the detections refer to.
    notes
        Plain-language remarks (e.g. ``"no white cell found"``).
    """

    wbc: list[Detection]
    n_rbc: int
    n_platelets: int
    um_per_px: float
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- helpers


def check_rgb(rgb: np.ndarray) -> np.ndarray:
    """A bright-field image checked and brought to float32 RGB on the uint8 scale.

    Parameters
    ----------
    rgb
        ``H x W x 3`` (or ``x 4``: alpha dropped) image, uint8 or float in [0, 1], at least 8 x 8.

    Returns
    -------
    ndarray
        ``H x W x 3`` float32 in [0, 255]; a new array.

    Raises
    ------
    InputError
        Wrong shape or dtype, or non-finite values (``where``: ``"rgb"``).
    """
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] not in (3, 4) or min(a.shape[:2]) < 8:
        raise InputError("rgb", f"array of shape {a.shape}", "an H x W x 3 image of at least 8 x 8 pixels")
    if a.dtype == np.uint8:
        return a[..., :3].astype(np.float32)
    if a.dtype.kind not in "fiu":
        raise InputError("rgb", f"dtype {a.dtype}", "uint8 or float RGB")
    f = a[..., :3].astype(np.float32)
    if not np.isfinite(f).all():
        raise InputError("rgb", "non-finite values", "finite RGB values")
    # Float images in [0, 1] (the project convention) are brought to the uint8 scale.
    return f * 255.0 if a.dtype.kind == "f" and f.max() <= 1.0 else f


def check_um(um_per_px: float, where: str = "um_per_px") -> float:
    """A field's pixel size (µm), required and checked by :func:`hemotwin.io.pixel_size.check_um_per_px`.

    Raises
    ------
    InputError
        Not a number (None and booleans included) or outside the plausible range; ``where`` names
        the parameter.
    """
    if isinstance(um_per_px, bool) or not isinstance(um_per_px, (int, float, np.floating)):
        raise InputError(where, um_per_px, "a pixel size in µm (float > 0)")
    return float(pixel_size.check_um_per_px(um_per_px, where=where))


def background_rgb(img: np.ndarray) -> np.ndarray:
    """Clear-glass colour of a bright-field image (uint8 scale, per channel).

    The median colour of the brightest 3 % of pixels: glass is the brightest thing in a bright-field
    smear and covers more than that in any monolayer, while the median ignores the few specular
    highlights (BCCD red cells show some) that are brighter still.
    """
    lum = img.sum(axis=-1)
    sel = img[lum >= np.percentile(lum, 97.0)]
    return np.maximum(np.median(sel, axis=0), 1.0).astype(np.float32)


def optical_density(rgb: np.ndarray, *, background: np.ndarray | None = None) -> np.ndarray:
    """Per-channel optical density ``-log10(I / I_glass)`` (H x W x 3 float32, >= 0).

    Parameters
    ----------
    rgb
        ``H x W x 3`` image (uint8, or float in [0, 1]). Not modified.
    background
        Clear-glass RGB on the uint8 scale; estimated with :func:`background_rgb` when None.
    """
    img = check_rgb(rgb)
    bg = background_rgb(img) if background is None else np.asarray(background, dtype=np.float32)
    # +0.5: a zero pixel would be infinite density; half a grey level is the quantisation floor.
    return np.maximum(-np.log10((img + 0.5) / bg), 0.0).astype(np.float32)


def nuclear_stain(od: np.ndarray) -> np.ndarray:
    """Purple-ness of each pixel: ``OD_red + OD_green - 2 OD_blue``.

    Chromatin (Romanowsky purple, azure B) absorbs green and red and passes blue; red cells
    (eosin, haemoglobin's Soret band) absorb green and blue, glass nothing, and a grey object
    (dust, a uniform-noise image) equally in all three. This contrast is 0.6-1.0 for twin nuclei,
    0.3-0.55 for BCCD nuclei and about 0 for red cells of both.
    """
    return od[..., 0] + od[..., 1] - 2.0 * od[..., 2]


def to_work(img: np.ndarray, um_per_px: float) -> tuple[np.ndarray, float]:
    """An image area-averaged to about :data:`WORK_UM_PER_PX` (coarser fields are kept as they are).

    Returns
    -------
    image : ndarray
    um_per_px : float
        Its pixel size (the mean of the two axes' after rounding to whole pixels).
    """
    if um_per_px >= WORK_UM_PER_PX * 0.95:
        return img, um_per_px
    h, w = img.shape[:2]
    oh = max(8, round(h * um_per_px / WORK_UM_PER_PX))
    ow = max(8, round(w * um_per_px / WORK_UM_PER_PX))
    return resize_hwc(img, (oh, ow)), (h * um_per_px / oh + w * um_per_px / ow) / 2.0


def _disk(radius_px: float) -> np.ndarray:
    r = max(0, round(radius_px))
    y, x = np.ogrid[-r : r + 1, -r : r + 1]
    return (y * y + x * x) <= radius_px * radius_px + 1e-9


def _otsu(values: np.ndarray) -> float:
    from skimage.filters import threshold_otsu

    return float(threshold_otsu(values)) if values.size > 1 and np.ptp(values) > 0 else float(values.max())


# ----------------------------------------------------------------------------- white cells


@dataclass
class _Cell:
    nucleus: np.ndarray  # bool, work grid, full frame
    mask: np.ndarray | None = None
    score: float = 0.0


def _nucleus_threshold(f: np.ndarray) -> float:
    # Otsu among the clearly stained pixels separates chromatin from cytoplasm/platelets; the
    # bounds keep it sane when a field holds no nucleus (Otsu then splits red-cell noise) or
    # is all nucleus. 0.2: twice the 99th percentile of red cells in the twin and BCCD.
    stained = f[f > 0.12]
    if stained.size < 50:
        return 0.25
    return float(np.clip(_otsu(stained), 0.2, 0.6))


def _find_nuclei(f: np.ndarray, px: float, *, min_nucleus_area_um2: float, t_nuc: float,
                 od: np.ndarray | None = None) -> tuple[list[np.ndarray], list[bool]]:
    """Groups of nucleus components (lobes of one cell), as bool masks on the work grid.

    Also, for each, whether it is a smudge cell (a weak purple smear without an intact nucleus).
    """
    raw = f > t_nuc
    # Half-a-pixel opening removes isolated noisy pixels without cutting 0.5 µm chromatin bridges.
    core = ndi.binary_opening(raw, structure=np.ones((2, 2), bool))
    if px >= 0.4:
        # At coarse pixels (0.5 µm) the same 2 x 2 opening is 1 µm and erases the thin nucleus of
        # a band neutrophil: thin pieces of at least 2 µm² (8 pixels, more than noise forms)
        # are put back.
        rlab, rn = ndi.label(raw)
        if rn:
            r_area = np.bincount(rlab.ravel(), minlength=rn + 1) * px * px
            big = r_area >= 2.0
            big[0] = False
            core |= big[rlab]
    lab, n = ndi.label(core)
    groups: list[np.ndarray] = []
    smudge: list[bool] = []
    grown = np.zeros_like(core)
    if n:
        areas = ndi.sum_labels(np.ones_like(f), lab, index=np.arange(1, n + 1)) * px * px
        keep = np.zeros(n + 1, bool)
        keep[1:] = areas >= 0.6  # below ~0.9 µm diameter: granules, noise
        core = keep[lab]
        # Lobes of a segmented nucleus lie within ~2.5 µm of each other (thin filaments may be
        # invisible): dilating each piece by 1.25 µm joins them; nuclei of two cells are further
        # apart (each has cytoplasm around it).
        grown = ndi.binary_dilation(core, structure=_disk(1.25 / px))
        # The size test uses the nucleus at half its threshold (close to its half-maximum
        # outline): the core above the threshold of a small pyknotic erythroblast nucleus is
        # shrunk by blur, most at 0.5 µm/px, while the half-threshold area is its true size.
        half = f > 0.5 * t_nuc
        glab, _gn = ndi.label(grown)
        for k, sl in enumerate(ndi.find_objects(glab), start=1):
            if sl is None:
                continue
            inside = glab[sl] == k
            g = np.zeros_like(core)
            g[sl] = core[sl] & inside
            # ... and the core itself must still hold 85 % of the minimum area (twin erythroblast
            # cores at 0.5 µm/px: >= 93 %): crescents where a polychromatic red cell overlaps its
            # neighbours, platelets and small purple debris (BCCD) have fewer core pixels.
            if (half[sl] & inside).sum() * px * px < min_nucleus_area_um2 or \
                    g.sum() * px * px < 0.85 * min_nucleus_area_um2:
                continue
            groups.append(g)
            smudge.append(False)
    # Smudge cells: a ruptured nucleus smeared thin stains weakly (a third to a half of an intact
    # nucleus) but over a large area; red-cell overlaps reach the same stain only in small
    # lenses. Weak purple regions of more than 30 µm² with no intact nucleus are kept as cells.
    t_weak = max(0.2, 0.4 * t_nuc)
    fs = ndi.gaussian_filter(f, 0.6 / px)
    weak = fs > t_weak
    weak = ndi.binary_opening(weak, structure=_disk(0.5 / px))
    wlab, wn = ndi.label(weak)
    if wn:
        has_core = np.zeros(wn + 1, bool)
        has_core[np.unique(wlab[grown])] = True
        # Area counted on the region opened by a 3 µm disc: the lenses where red cells overlap
        # reach the weak threshold under a strong stain, but as lines and Y-shaped junctions at
        # most ~2 µm wide; a smudge cell is a 10-22 µm blob.
        solid = ndi.binary_opening(weak, structure=_disk(1.5 / px))
        warea = np.bincount(wlab[solid], minlength=wn + 1) * px * px
        if od is not None:
            # Smeared chromatin is purple (absorbs green far more than red); polychromatic red
            # cells and a blue-tinted stain reach the same contrast as blue-grey discs whose
            # red absorption matches or exceeds the green one.
            og = ndi.sum_labels(od[..., 1], wlab, index=np.arange(wn + 1))
            orr = ndi.sum_labels(od[..., 0], wlab, index=np.arange(wn + 1))
            purple = og > 1.15 * orr
        else:
            purple = np.ones(wn + 1, bool)
        for k in np.flatnonzero((warea >= 30.0) & ~has_core & purple):
            if k == 0:
                continue
            # The low finding threshold includes the smear's blurred skirt: the cell is grown from
            # its denser part (above 0.55 x the nuclear threshold) when that is substantial, and
            # the skirt is then taken up by the cytoplasm colour model like any cell's rim.
            reg = wlab == k
            dense = reg & (fs > 0.55 * t_nuc)
            if dense.sum() * px * px >= 10.0:
                reg = dense
            groups.append(ndi.binary_fill_holes(reg))
            smudge.append(True)
    return groups, smudge


def _cell_outline(cell_px: np.ndarray, nuc: np.ndarray, cy: float, cx: float, r_max_px: float,
                  run_px: float, n_rays: int = 72, median_rays: int = 7) -> np.ndarray:
    """Star-convex cell mask traced along rays from the nucleus centre.

    Along each ray the cell ends where a run of ``run_px`` non-cell pixels begins after the last
    nucleus pixel; the radius profile is median-filtered over 35 degrees (a misread red cell or a
    gap in pale cytoplasm moves a few rays, not the outline).
    """
    from skimage.draw import polygon

    h, w = cell_px.shape
    step = 0.5
    rad = np.arange(0.0, r_max_px, step)
    th = np.linspace(0.0, 2 * np.pi, n_rays, endpoint=False)
    yy = cy + np.sin(th)[:, None] * rad[None, :]
    xx = cx + np.cos(th)[:, None] * rad[None, :]
    inside = (yy >= 0) & (yy <= h - 1) & (xx >= 0) & (xx <= w - 1)
    iy, ix = np.clip(np.rint(yy).astype(int), 0, h - 1), np.clip(np.rint(xx).astype(int), 0, w - 1)
    cellr = cell_px[iy, ix] & inside
    nucr = nuc[iy, ix] & inside
    run = max(1, math.ceil(run_px / step))
    radii = np.empty(n_rays)
    for k in range(n_rays):
        last_nuc = np.flatnonzero(nucr[k])
        j0 = int(last_nuc[-1]) if last_nuc.size else 0
        off = np.flatnonzero(~cellr[k, j0:])
        r_end = rad.size
        if off.size:
            # first index from which `run` consecutive samples are off (or the ray leaves the frame)
            for j in off:
                seg = cellr[k, j0 + j : j0 + j + run]
                if not seg.any():
                    r_end = j0 + j
                    break
        radii[k] = rad[min(r_end, rad.size - 1)] if r_end < rad.size else rad[-1]
    radii = ndi.median_filter(radii, size=median_rays, mode="wrap")
    radii = ndi.uniform_filter1d(radii, size=3, mode="wrap")
    py = cy + np.sin(th) * (radii + 0.5)
    px_ = cx + np.cos(th) * (radii + 0.5)
    rr, cc = polygon(py, px_, shape=(h, w))
    out = nuc.copy()
    out[rr, cc] = True
    return out


#: Largest nucleus (µm², at half the nuclear threshold) for which the erythroblast outline
#: (:func:`_uniform_cytoplasm` with red-cell-coloured cytoplasm) is tried, and the cell areas (µm²)
#: it may return: erythroblast nuclei are 3.3-5.1 µm across (at most 20 µm², ~24 µm² with the
#: blur rim at half threshold) and the cells 8-12 µm. Small lymphocytes (nucleus >= 5.5 µm, a
#: thin rim against red cells that would be grown into them) are left alone.
EBO_MAX_NUCLEUS_UM2 = 24.0
EBO_MIN_CELL_UM2 = math.pi * 3.5**2
EBO_MAX_CELL_UM2 = math.pi * 7.0**2


def _uniform_cytoplasm(fw: np.ndarray, f: np.ndarray, nwin: np.ndarray, n_half: np.ndarray, d_out: np.ndarray,
                       glass: np.ndarray, others: np.ndarray, px: float, t_nuc: float,
                       rays: tuple[float, float, float], *, rbc_model: tuple[np.ndarray, np.ndarray] | None,
                       erythroblast: bool) -> np.ndarray | None:
    """Second outline for a cell that came out as little more than its nucleus.

    ``rays`` is where the outline is traced from and how far: ``(centre row, centre column)`` in
    window pixels and the largest radius in µm.

    The per-cell colour model of :func:`_grow_cells` samples 0.25-1 µm outside the nucleus core,
    which around a small or lobed nucleus is mostly the nucleus's blurred edge. Here the cytoplasm
    colour is sampled 1-2.5 µm outside the core, from its flattest 40 % (lowest local spread of OD
    over ~1 µm: cytoplasm is even, red cells have a rim and a pallor, and where the nucleus is
    eccentric the ring also crosses red cells). Cell pixels are those within 20 % of that colour
    (OD summed over channels, averaged over 0.5 µm); the outline is traced along rays as for the
    other cells, with a wider angular median.

    Two cases use it. ``erythroblast``: a small nucleus whose haemoglobinised cytoplasm is
    red-cell coloured (the colour evidence gives nothing) but even, where the red cells are not.
    Otherwise the sampled colour must differ from the red cells' (hue, i.e. OD over its sum, by
    0.2 in L1, or more than 2 standard deviations in OD): a lymphocyte's thin rim leaves the ring
    on red cells and glass, which must not grow.

    Returns None when the sample is not uniform or not distinct, or the result is not a plausible
    cell (an erythroblast: at least 3 x its nucleus, :data:`EBO_MIN_CELL_UM2` to
    :data:`EBO_MAX_CELL_UM2`; another cell: at least 1.6 x its nucleus, and round).
    """
    cy, cx, r_max = rays
    ring = (d_out > 1.0) & (d_out < 2.5) & ~glass & ~others & (f < 0.5 * t_nuc)
    if ring.sum() < 8:
        return None
    osum = fw.sum(-1)
    sig = 0.5 / px
    spread = ndi.gaussian_filter(osum * osum, sig) - ndi.gaussian_filter(osum, sig) ** 2
    flat = ring & (spread <= np.percentile(spread[ring], 40.0))
    v = fw[flat]
    cm = np.median(v, axis=0)
    s_c = float(cm.sum())
    mad = float(np.median(np.abs(v.sum(-1) - s_c)))
    # Uniform: 8 % spread of the summed OD for an erythroblast (red cells nearby have 15-30 %);
    # a cell with distinct cytoplasm colour may be grainier (granules, a phone camera's noise).
    if s_c <= 0 or mad > (0.08 if erythroblast else 0.15) * s_c:
        return None
    if not erythroblast:
        if rbc_model is None:
            return None
        rm, rs = rbc_model
        # Distinct from red cells in colour (OD normalised by its sum: pallor and overlap change
        # a red cell's density, not its hue) or in density and colour together.
        hue = float(np.abs(cm / s_c - rm / max(float(rm.sum()), 1e-6)).sum())
        if hue < 0.2 and float((((cm - rm) / rs) ** 2).sum()) < 4.0:
            return None
    dist = ndi.gaussian_filter(np.abs(fw - cm).sum(-1), 0.5 / px)
    # The nucleus's blurred halo (neither nucleus nor cytoplasm colour) is bridged: 0.75 µm
    # beyond the half-threshold outline.
    halo = ndi.distance_transform_edt(~n_half) * px < 0.75
    cell = halo | ((dist < 0.2 * s_c) & ~glass)
    cell &= ~others
    # Red cells touching the cell can share its colour and leak into the mask as lobes of a few
    # tens of degrees; the radius of a round cell changes slowly with angle (even around an
    # eccentric nucleus), so a median over 75 degrees removes the lobes and keeps the cell.
    m = _cell_outline(cell, nwin, cy, cx, r_max / px, run_px=0.75 / px, median_rays=15)
    # Plausible: an erythroblast clearly larger than its nucleus (at most 28 % of the cell; 3 x
    # the half-threshold area leaves room for blur) and not too large. Another cell at least
    # 1.6 x its nucleus and round (area over the disc through its farthest pixel >= 0.7): a cell
    # is round, a leak into neighbours of a similar colour is a lobe (on real smears, BCCD).
    n_m = int(m.sum())
    if erythroblast:
        ok = 3.0 * n_half.sum() <= n_m and EBO_MIN_CELL_UM2 <= n_m * px * px <= EBO_MAX_CELL_UM2
        return m if ok else None
    if n_m < 1.6 * n_half.sum():
        return None
    ys, xs = np.nonzero(m)
    r2 = float(((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2).max())
    return m if n_m >= 0.7 * math.pi * r2 else None


def _grow_cells(od: np.ndarray, f: np.ndarray, nuclei: list[np.ndarray], px: float,
                t_fg: float, t_nuc: float, rbc_model: tuple[np.ndarray, np.ndarray] | None,
                max_radius_um: float) -> list[np.ndarray]:
    """Whole-cell masks grown from each nucleus group along rays (see :func:`_cell_outline`).

    A pixel belongs to the cell when its OD colour is nearer this cell's own cytoplasm (sampled in
    a ring just outside the nucleus) than red cells and glass, or when it stains purple (granules).
    """
    h, w = f.shape
    odsum = od.sum(axis=-1)
    all_nuc = np.zeros((h, w), bool)
    for g in nuclei:
        all_nuc |= g
    out = []
    for nuc in nuclei:
        ys, xs = np.nonzero(nuc)
        cy, cx = float(ys.mean()), float(xs.mean())
        extent = float(np.sqrt(((ys - cy) ** 2 + (xs - cx) ** 2).max())) * px
        r_max = min(max_radius_um, extent + 7.0)
        rr = math.ceil(r_max / px) + 2
        y0, y1 = max(0, int(cy) - rr), min(h, int(cy) + rr + 1)
        x0, x1 = max(0, int(cx) - rr), min(w, int(cx) + rr + 1)
        win = (slice(y0, y1), slice(x0, x1))
        nwin = nuc[win]
        fw = od[win]
        glass = odsum[win] < t_fg
        d_out = ndi.distance_transform_edt(~nwin) * px
        ring = (d_out > 0.25) & (d_out < 1.0) & ~glass & ~all_nuc[win]
        # The nucleus, its blurred rim (0.5 µm) and purple granules near it are cell whatever
        # their colour.
        cell = nwin | (d_out < 0.5) | ((f[win] > 0.6 * t_nuc) & (d_out < 2.0))
        if rbc_model is not None and ring.sum() >= 6:
            rm, rs = rbc_model
            ring_v = fw[ring]
            cm = np.median(ring_v, axis=0)
            cs = np.maximum(1.4826 * np.median(np.abs(ring_v - cm), axis=0), 0.012)
            d_c = (((fw - cm) / cs) ** 2).sum(-1)
            d_r = (((fw - rm) / rs) ** 2).sum(-1)
            # Evidence "this cell's cytoplasm rather than a red cell", averaged over 0.5 µm: single
            # pixels of pale cytoplasm and red cell differ by noise-level amounts (neutrophils under
            # a slide scanner), their neighbourhoods do not.
            ev = ndi.gaussian_filter(np.clip(d_r - d_c, -20.0, 20.0), 0.5 / px)
            cell = cell | ((ev > 0) & ~glass)
        elif rbc_model is None:
            cell = cell | ~glass
        # Other cells' nuclei never belong to this one.
        cell &= ~(all_nuc[win] & ~nwin)
        cy_w, cx_w = cy - y0, cx - x0
        m_win = _cell_outline(cell, nwin, cy_w, cx_w, r_max / px, run_px=0.75 / px)
        n_half = nwin | ((f[win] > 0.5 * t_nuc) & (d_out < 1.0))
        # A cell that came out as little more than its nucleus gets a second outline from the
        # cytoplasm further out: an erythroblast (a small nucleus, < 24 µm² at half threshold,
        # and less than 3.5 x that traced), or any cell traced at less than 3 x its nucleus.
        small = n_half.sum() * px * px < EBO_MAX_NUCLEUS_UM2
        if (small and m_win.sum() < 3.5 * n_half.sum()) or m_win.sum() < 3.0 * n_half.sum():
            alt = _uniform_cytoplasm(fw, f[win], nwin, n_half, d_out, glass, all_nuc[win] & ~nwin, px,
                                     t_nuc, (cy_w, cx_w, r_max), rbc_model=rbc_model, erythroblast=small)
            # The second outline only ever enlarges a cell (it exists for cytoplasm the colour
            # model missed); a smaller one means it found something else.
            if alt is not None and alt.sum() > 1.2 * m_win.sum():
                m_win = alt
        m = np.zeros((h, w), bool)
        m[win] = m_win
        out.append(m)
    return out


def _rbc_colour_model(od: np.ndarray, f: np.ndarray, t_fg: float, nuclei_any: np.ndarray, px: float
                      ) -> tuple[np.ndarray, np.ndarray] | None:
    """Mean and spread of red-cell OD from stained pixels far (> 15 µm) from every nucleus."""
    far = ndi.distance_transform_edt(~nuclei_any) * px > 15.0 if nuclei_any.any() else np.ones(f.shape, bool)
    sel = far & (od.sum(-1) >= t_fg)
    if sel.sum() < 50:
        sel = (od.sum(-1) >= t_fg) & ~ndi.binary_dilation(nuclei_any, iterations=3)
    if sel.sum() < 50:
        return None
    v = od[sel]
    return v.mean(axis=0), np.maximum(v.std(axis=0), 0.015)


# ----------------------------------------------------------------------------- red cells, platelets


def _count_rbc(odsum: np.ndarray, stained: np.ndarray, exclude: np.ndarray, px: float) -> int:
    """Red cells from their integrated optical density.

    Optical density adds where cells overlap (Beer-Lambert), so the field's total red-cell OD
    divided by one cell's integrated OD counts overlapping and touching cells alike, where a
    watershed on a dense monolayer's single connected mask cannot split them. One cell's OD is a
    nominal 7.5 µm disc at the field's mean single-layer OD density (a per-field calibration: stain
    and haemoglobin vary): the mean over red-cell pixels below 1.6 x the modal density, i.e.
    including the pale centres and excluding the double-layer lenses where two cells overlap.
    """
    from skimage.morphology import remove_small_holes

    # Fill the pale centres (central pallor, ~2.5 µm across) but not the glass gaps between cells
    # of a dense monolayer, nor the holes left where white cells were cut out.
    filled = remove_small_holes(stained, max_size=int(10.0 / (px * px))) & ~exclude
    vals = odsum[filled]
    if vals.size < 10:
        return 0
    hist, edges = np.histogram(vals, bins=64, range=(0.0, float(np.percentile(vals, 99.5)) + 1e-6))
    k = int(np.argmax(ndi.uniform_filter1d(hist.astype(float), 3)))
    mode = 0.5 * (edges[k] + edges[k + 1])
    single = vals[vals < 1.6 * mode]
    one = float(single.mean()) * RBC_AREA_UM2 / (px * px)
    return max(0, round(float(vals.sum()) / one))


# ----------------------------------------------------------------------------- mapping back


def _to_field(mask_work: np.ndarray, scale: float, shape: tuple[int, int]
              ) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """Bounding box and mask on the field grid of a work-grid mask (linear interpolation)."""
    ys, xs = np.nonzero(mask_work)
    h, w = shape
    r0 = max(0, math.floor((ys.min() - 1) * scale))
    r1 = min(h, math.ceil((ys.max() + 2) * scale))
    c0 = max(0, math.floor((xs.min() - 1) * scale))
    c1 = min(w, math.ceil((xs.max() + 2) * scale))
    if scale == 1.0:
        m = mask_work[r0:r1, c0:c1].copy()
    else:
        rr = (np.arange(r0, r1) + 0.5) / scale - 0.5
        cc = (np.arange(c0, c1) + 0.5) / scale - 0.5
        grid = np.meshgrid(rr, cc, indexing="ij")
        m = ndi.map_coordinates(mask_work.astype(np.float32), grid, order=1, mode="nearest") >= 0.5
    ys, xs = np.nonzero(m)
    if ys.size == 0:
        return (r0, c0, r0, c0), np.zeros((0, 0), bool)
    b = (r0 + int(ys.min()), c0 + int(xs.min()), r0 + int(ys.max()) + 1, c0 + int(xs.max()) + 1)
    return b, m[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def _crop_to(mask_work: np.ndarray, scale: float, shape: tuple[int, int],
             bbox: tuple[int, int, int, int]) -> np.ndarray:
    r0, c0, r1, c1 = bbox
    if scale == 1.0:
        return mask_work[r0:r1, c0:c1].copy()
    rr = (np.arange(r0, r1) + 0.5) / scale - 0.5
    cc = (np.arange(c0, c1) + 0.5) / scale - 0.5
    grid = np.meshgrid(rr, cc, indexing="ij")
    return ndi.map_coordinates(mask_work.astype(np.float32), grid, order=1, mode="nearest") >= 0.5


# ----------------------------------------------------------------------------- public API


def detect_cells(
    rgb: np.ndarray,
    *,
    um_per_px: float,
    min_wbc_diameter_um: float = 6.0,
    max_wbc_diameter_um: float = 30.0,
) -> FieldDetections:
    """Detect white cells (with nucleus and whole-cell masks), and count red cells and platelets.

    Parameters
    ----------
    rgb
        ``H x W x 3`` bright-field image of a Romanowsky-stained smear (uint8, or float in [0, 1]).
        Not modified.
    um_per_px
        Pixel size (µm). Known from metadata, or from the red-cell ruler
        (:func:`hemotwin.vision.datasets.estimate_um_per_px`).
    min_wbc_diameter_um
        Smallest white cell to report (whole-cell area at least 70 % of this disc); its nucleus must
        cover a disc of 0.4 times this diameter at half the nuclear threshold, and 85 % of that
        above it (an erythroblast's pyknotic nucleus is 3.3-5 µm).
    max_wbc_diameter_um
        Largest white cell: the cytoplasm is never grown further than half of this from the
        nucleus centre.

    Returns
    -------
    FieldDetections

    Examples
    --------
    >>> import numpy as np
    >>> det = detect_cells(np.full((64, 64, 3), 240, np.uint8), um_per_px=0.25)
    >>> det.wbc, "no white cell found" in det.notes
    ([], True)
    """
    img = check_rgb(rgb)
    um = check_um(um_per_px)
    if not (isinstance(min_wbc_diameter_um, (int, float)) and 1.0 <= min_wbc_diameter_um <= 50.0):
        raise InputError("min_wbc_diameter_um", min_wbc_diameter_um, "a diameter in µm between 1 and 50")
    if not (isinstance(max_wbc_diameter_um, (int, float)) and min_wbc_diameter_um < max_wbc_diameter_um <= 100.0):
        raise InputError("max_wbc_diameter_um", max_wbc_diameter_um, "a diameter in µm above the minimum, <= 100")
    notes: list[str] = []
    h, w = img.shape[:2]
    bg = background_rgb(img)
    work, px = to_work(img, um)
    scale = px / um  # field pixels per work pixel
    # A light blur at 0.3 µm: camera noise and JPEG blocks otherwise fray thresholds.
    work = ndi.gaussian_filter(work, sigma=(max(0.5, 0.3 / px), max(0.5, 0.3 / px), 0))
    od = np.maximum(-np.log10((work + 0.5) / bg), 0.0)
    f = nuclear_stain(od)
    odsum = od.sum(axis=-1)

    if float(np.percentile(odsum, 95)) < 0.06:
        notes.append("field looks blank / not a smear (almost nothing absorbs light)")
        notes.append("no white cell found")
        return FieldDetections([], 0, 0, um, notes)

    # Glass vs stained: halfway between the glass and the median stained level (the half-maximum
    # contour of a blurred edge lies on the true outline), never below 0.06 (noise).
    stained_vals = odsum[odsum > 0.06]
    t_fg = max(0.06, 0.45 * float(np.median(stained_vals))) if stained_vals.size else 0.06
    t_nuc = _nucleus_threshold(f)
    min_area = math.pi * (0.2 * min_wbc_diameter_um) ** 2
    nuclei, _smudge = _find_nuclei(f, px, min_nucleus_area_um2=min_area, t_nuc=t_nuc, od=od)

    # "Not a smear": a real field is mostly glass + red cells; if purple covers a large part of
    # it, or nothing is red-cell coloured, it is something else (a stain blot, a noise image).
    purple_frac = float((f > t_nuc).mean())
    if purple_frac > 0.5:
        notes.append(f"field looks blank / not a smear ({purple_frac:.0%} of it stains like nuclei)")
        nuclei, _smudge = [], []

    nuclei_any = np.zeros(f.shape, bool)
    for g in nuclei:
        nuclei_any |= g
    rbc_model = _rbc_colour_model(od, f, t_fg, nuclei_any, px)
    cells = _grow_cells(od, f, nuclei, px, t_fg, t_nuc, rbc_model, max_wbc_diameter_um / 2) if nuclei else []

    wbc: list[Detection] = []
    wbc_any = np.zeros(f.shape, bool)
    min_cell_area = math.pi * (min_wbc_diameter_um / 2) ** 2
    for nuc, cell in zip(nuclei, cells, strict=True):
        area = cell.sum() * px * px
        if area < 0.7 * min_cell_area:
            continue
        wbc_any |= cell
        bbox, mask = _to_field(cell, scale, (h, w))
        if mask.size == 0:
            continue
        nmask = _crop_to(nuc, scale, (h, w), bbox) & mask
        mean_f = float(f[nuc].mean())
        # Confidence: how far the chromatin stands above the threshold, times how clearly the
        # cell is larger than the smallest allowed one.
        s_stain = min(1.0, max(0.0, (mean_f / t_nuc - 1.0) / 0.8))
        s_size = min(1.0, area / min_cell_area)
        score = round(0.3 + 0.7 * s_stain * s_size, 4)
        ys, xs = np.nonzero(mask)
        centroid = (float(ys.mean() + bbox[0]), float(xs.mean() + bbox[1]))
        touches = bbox[0] == 0 or bbox[1] == 0 or bbox[2] == h or bbox[3] == w
        wbc.append(Detection("wbc", bbox, mask, nmask, score, centroid, bool(touches)))
    wbc.sort(key=lambda d: d.centroid)

    # Platelets: small purple objects that belong to no white cell (1.5 µm clear of them).
    near_wbc = ndi.binary_dilation(wbc_any, structure=_disk(1.5 / px)) if wbc_any.any() else wbc_any
    # A platelet stains about as strongly as a red-cell overlap, but is a 1.5-3 µm spot: a white
    # top-hat over 2.5 µm keeps spots and drops the smooth red cells and their overlap lenses.
    from skimage.morphology import white_tophat

    spot = white_tophat(f, footprint=_disk(1.25 / px))
    plt_mask = (spot > 0.12) & (f > 0.2) & ~near_wbc
    plab, pn = ndi.label(plt_mask)
    n_plt = 0
    if pn:
        parea = ndi.sum_labels(np.ones_like(f), plab, index=np.arange(1, pn + 1)) * px * px
        single = math.pi * 1.1**2  # a 2.2 µm platelet
        ok = (parea >= 1.0) & (parea <= 30.0)
        n_plt = int(np.maximum(1, np.round(parea[ok] / single)).sum())
    exclude = ndi.binary_dilation(wbc_any, iterations=1) | (f > 0.5 * t_nuc)
    n_rbc = _count_rbc(odsum, (odsum >= t_fg) & ~exclude, exclude, px) if purple_frac <= 0.5 else 0

    if not wbc:
        notes.append("no white cell found")
    return FieldDetections(wbc, n_rbc, n_plt, um, notes)


def crop_cell(rgb: np.ndarray, det: Detection, *, size_um: float = 25.0, um_per_px: float) -> np.ndarray:
    """A square crop centred on a detected cell, at the field's pixel size.

    Parameters
    ----------
    rgb
        The field the detection came from (``H x W x C``). Not modified.
    det
        A :class:`Detection` of that field.
    size_um
        Side of the crop (µm); the crop is ``round(size_um / um_per_px)`` pixels square.
    um_per_px
        Pixel size of ``rgb``.

    Returns
    -------
    ndarray
        ``n x n x C`` array of ``rgb``'s dtype; where the square leaves the field it is filled by
        edge reflection (``numpy.pad`` mode ``"symmetric"``).
    """
    a = np.asarray(rgb)
    if a.ndim != 3:
        raise InputError("rgb", f"array of shape {a.shape}", "an H x W x C image")
    um = check_um(um_per_px)
    if isinstance(size_um, bool) or not isinstance(size_um, (int, float)) or not 0 < size_um < 1e4:
        raise InputError("size_um", size_um, "a crop side in µm > 0")
    n = max(1, round(size_um / um))
    cy, cx = det.centroid
    r0 = math.floor(cy + 0.5 - n / 2)
    c0 = math.floor(cx + 0.5 - n / 2)
    h, w = a.shape[:2]
    pad = ((max(0, -r0), max(0, r0 + n - h)), (max(0, -c0), max(0, c0 + n - w)), (0, 0))
    sub = a[max(0, r0) : min(h, r0 + n), max(0, c0) : min(w, c0 + n)]
    if sub.size == 0:
        raise InputError("det.centroid", det.centroid, f"a position inside the {h} x {w} field")
    if any(p for pp in pad for p in pp):
        # Reflection can run out when the pad exceeds the field; numpy repeats it then.
        sub = np.pad(sub, pad, mode="symmetric")
    return np.array(sub, copy=True)
