"""The measurements behind ``hemotwin calibrate``: red-cell rims, clear-glass noise, stain levels.

Plain functions on one image each (:mod:`hemotwin.vision.scanner` runs them over a folder and
decides what they mean for the scanner): the Gaussian-equivalent blur of red-cell rims
(:func:`measure_edges`, :func:`fit_edge_spread`), the noise of clear glass (:func:`measure_glass_noise`),
stain levels of unmixed absorbers, and the checks that tell blank glass or a second scanner apart.
"""

from __future__ import annotations

import math

import numpy as np

#: Display gamma assumed when linearising 8-bit values (PBC/CellaVision JPEGs and the twin's presets).
GAMMA = 2.2

__all__ = ["GAMMA", "fit_edge_spread", "measure_edges", "measure_glass_noise", "nearest_preset", "rel_se_median",
           "stain_levels", "stained_fraction", "white_point_groups"]


def _linear(rgb: np.ndarray) -> np.ndarray:
    lut = ((np.arange(256) / 255.0) ** GAMMA).astype(np.float32)
    return lut[rgb]


def _red_cells(rgb: np.ndarray, diameter_px: float) -> tuple[np.ndarray, list[tuple[int, float, float, float]]]:
    """Segments of the image's cells and the red cells among them: ``(label, cy, cx, radius_px)``.

    As the red-cell ruler: half-way threshold between glass and cells in the smoothed green channel,
    holes filled, touching cells split by a watershed on the distance transform. A segment counts
    when it is off the border, convex and its inscribed diameter (or, alone, its area-equivalent
    one) is within 0.8-1.25 of the ruler's median diameter.
    """
    from scipy import ndimage as ndi
    from skimage.filters import threshold_multiotsu
    from skimage.measure import regionprops
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    g = ndi.gaussian_filter(rgb[..., 1].astype(np.float32), 1.0)
    _, t_glass = threshold_multiotsu(g, classes=3)
    glass = float(np.median(g[g >= t_glass]))
    inside = g[g < t_glass]
    t_edge = 0.5 * (glass + float(np.median(inside))) if inside.size else t_glass
    fg = ndi.binary_fill_holes(ndi.binary_opening(g < t_edge, iterations=2))
    dist = ndi.distance_transform_edt(fg)
    markers, _ = ndi.label(h_maxima(dist, 2.0))
    seg = watershed(-dist, markers, mask=fg)
    comp, _ = ndi.label(fg)
    comp_area = np.bincount(comp.ravel())
    h, w = g.shape
    keep = []
    for p in regionprops(seg, intensity_image=dist):
        y0, x0, y1, x1 = p.bbox
        if y0 < 3 or x0 < 3 or y1 > h - 3 or x1 > w - 3 or p.solidity < 0.9:
            continue
        alone = comp_area[comp[p.coords[0][0], p.coords[0][1]]] == p.area
        d = float(p.equivalent_diameter_area) if alone else 2.0 * float(p.intensity_max)
        if not (0.8 * diameter_px < d < 1.25 * diameter_px) or (alone and p.eccentricity > 0.75):
            continue
        if alone:
            cy, cx = p.centroid
        else:  # the centre of the inscribed circle: a watershed cut moves the centroid
            k = int(np.argmax(p.image_intensity[p.image]))
            cy, cx = (float(v) for v in p.coords[k])
        keep.append((int(p.label), float(cy), float(cx), d / 2.0))
    return seg, keep


def _erf_step(d: np.ndarray, a: float, b: float, d0: float, sigma: float) -> np.ndarray:
    from scipy.special import erfc

    return b + a * 0.5 * erfc((d - d0) / (math.sqrt(2.0) * max(sigma, 1e-3)))


def measure_edges(rgb: np.ndarray, *, diameter_px: float, max_cells: int = 60) -> tuple[float | None, int]:
    """Equivalent Gaussian blur σ (px) of the red-cell rims of one image.

    Parameters
    ----------
    rgb
        ``H x W x 3`` uint8 smear field.
    diameter_px
        Median red-cell diameter (the ruler's), to pick single red cells.
    max_cells
        At most this many rims are measured (the first found).

    Returns
    -------
    sigma_px : float or None
        None with fewer than 3 measurable rims.
    n_cells : int
        Rims used.

    Notes
    -----
    Per isolated round red cell: the green channel is linearised (gamma 2.2) and normalised
    between the glass (0) and the cell's rim level (1, the median over 0.6-0.8 of its radius);
    the half-level outline is traced to sub-pixel precision on a lightly smoothed copy (σ = 1 px)
    and every pixel within reach gets its signed distance to it (pixels of other cells excluded).
    The samples of all rims go to :func:`fit_edge_spread`.
    """
    from scipy import ndimage as ndi
    from scipy.spatial import cKDTree
    from skimage.measure import find_contours

    from hemotwin.twin.reimage import estimate_background

    seg, cells = _red_cells(rgb, diameter_px)
    if len(cells) < 3:
        return None, len(cells)
    lin = _linear(rgb)[..., 1]
    g_bg = float(estimate_background(rgb, gamma=GAMMA)[1])
    ds, ys = [], []
    used = 0
    h, w = lin.shape
    for lab_id, cy, cx, r in cells[:max_cells]:
        half = math.ceil(r + max(10.0, 0.5 * r))
        y0, y1 = max(0, int(cy) - half), min(h, int(cy) + half + 1)
        x0, x1 = max(0, int(cx) - half), min(w, int(cx) + half + 1)
        crop = lin[y0:y1, x0:x1]
        yy, xx = np.mgrid[y0:y1, x0:x1]
        rr = np.hypot(yy - cy, xx - cx)
        ring = (rr > 0.6 * r) & (rr < 0.8 * r)
        level = float(np.median(crop[ring])) if ring.any() else float("nan")
        if not (np.isfinite(level) and g_bg - level > 0.05 * g_bg):
            continue
        y = (g_bg - crop) / (g_bg - level)
        s_crop = seg[y0:y1, x0:x1]
        others = ndi.binary_dilation((s_crop > 0) & (s_crop != lab_id), iterations=3)
        pts = [c for c in find_contours(ndi.gaussian_filter(y, 1.0), 0.5)]
        if not pts:
            continue
        pts = np.concatenate(pts)
        pr = np.hypot(pts[:, 0] + y0 - cy, pts[:, 1] + x0 - cx)
        iy = np.clip(np.rint(pts[:, 0]).astype(int), 0, crop.shape[0] - 1)
        ix = np.clip(np.rint(pts[:, 1]).astype(int), 0, crop.shape[1] - 1)
        own = (np.abs(pr - r) < 0.2 * r) & ~others[iy, ix]  # this cell's free outline
        if own.sum() < 2 * math.pi * r * 0.25:  # a quarter of its perimeter at least
            continue
        pts, pr = pts[own], pr[own]
        dist, nearest = cKDTree(pts).query(np.column_stack([(yy - y0).ravel(), (xx - x0).ravel()]))
        dist, nearest = dist.reshape(crop.shape), nearest.reshape(crop.shape)
        sign = np.where(rr < pr[nearest], -1.0, 1.0)  # inside the outline: negative
        ok = ~others & (dist < 12.0 + 0.2 * r) & (np.abs(rr - r) < 12.0 + 0.3 * r)
        ds.append((sign * dist)[ok])
        ys.append(y[ok])
        used += 1
    if used < 3:
        return None, used
    sigma = fit_edge_spread(np.concatenate(ds), np.concatenate(ys))
    return sigma, used


def fit_edge_spread(distance_px: np.ndarray, values: np.ndarray, *, sigma0: float = 1.5) -> float | None:
    """Equivalent Gaussian σ (px) of an edge-spread function sampled at signed distances from the edge.

    Parameters
    ----------
    distance_px
        Signed distance of each sample from the edge (px; negative on the dark side).
    values
        The samples (linear intensity drop, normalised: ~1 inside, ~0 outside; scale and offset free).
    sigma0
        Starting σ.

    Returns
    -------
    float or None
        None when the fit fails or the samples are too few.

    Notes
    -----
    The samples are binned (0.2 px) and a Gaussian-blurred step ``b + a/2 erfc((d - d0) / (√2 σ))``
    fitted to the bin medians over ``-max(1, σ) <= d <= max(4, 4σ)`` px, three times, the window
    following σ. The window is one-sided: inside a red cell its thickness rolls off towards the
    rim, which a wide inner window would read as blur. An optical edge-spread function is not
    exactly Gaussian (a partially coherent edge rings), so its "equivalent σ" depends on the window:
    compare σ's measured with this same function.
    """
    from scipy.optimize import curve_fit

    d = np.asarray(distance_px, dtype=float).ravel()
    v = np.asarray(values, dtype=float).ravel()
    sigma = float(sigma0)
    for _ in range(3):
        win = max(4.0, 4.0 * sigma)
        inner = max(1.0, sigma)
        sel = (d <= win) & (d >= -inner)
        edges = np.arange(-inner, win + 0.2, 0.2)
        idx = np.digitize(d[sel], edges)
        vs = v[sel]
        centres, meds = [], []
        for k in range(1, len(edges)):
            m = idx == k
            if m.sum() >= 5:
                centres.append(0.5 * (edges[k - 1] + edges[k]))
                meds.append(float(np.median(vs[m])))
        if len(centres) < 8:
            return None
        try:
            popt, _ = curve_fit(_erf_step, np.array(centres), np.array(meds), p0=(1.0, 0.0, 0.0, sigma),
                                bounds=([0.2, -0.5, -3.0, 0.05], [2.0, 0.5, 3.0, 20.0]), maxfev=2000)
        except (RuntimeError, ValueError):
            return None
        sigma = float(popt[3])
    return sigma


def measure_glass_noise(rgb: np.ndarray, *, margin_px: int = 4, smooth_px: float = 6.0) -> np.ndarray | None:
    """Noise of clear glass per channel (8-bit levels) of one image, or None without enough glass.

    Parameters
    ----------
    rgb
        ``H x W x 3`` uint8 smear field.
    margin_px
        Glass pixels nearer than this to anything darker are left out (cell edges, JPEG ringing).
    smooth_px
        σ (px) of the Gaussian that gives the glass's local level (computed from glass pixels only).

    Returns
    -------
    ndarray or None
        ``(3,)`` standard deviations of glass minus its local level (clipped at 4 SD).
    """
    from scipy import ndimage as ndi
    from skimage.filters import threshold_multiotsu

    g = ndi.gaussian_filter(rgb[..., 1].astype(np.float32), 1.5)
    try:
        _, t_glass = threshold_multiotsu(g, classes=3)
    except ValueError:
        return None
    glass_level = float(np.median(g[g >= t_glass]))
    # Glass: within a few levels of the glass's own level, away from everything else.
    dark = g < glass_level - max(4.0, 0.15 * (glass_level - float(t_glass)) + 3.0)
    mask = ~ndi.binary_dilation(dark, iterations=margin_px)
    if mask.sum() < 2000:
        return None
    m = mask.astype(np.float32)
    wsum = ndi.gaussian_filter(m, smooth_px)
    good = mask & (wsum > 0.6)
    if good.sum() < 1000:
        return None
    out = np.empty(3)
    for ch in range(3):
        x = rgb[..., ch].astype(np.float32)
        local = ndi.gaussian_filter(x * m, smooth_px) / np.maximum(wsum, 1e-6)
        r = (x - local)[good]
        # Standard deviation after clipping at 4 SD (from the MAD, then once more): the MAD alone is
        # biased on 8-bit data whose noise is about one level (green: +20 % on twin glass).
        sd = 1.4826 * float(np.median(np.abs(r - np.median(r)))) + 0.5
        for _ in range(2):
            r = r[np.abs(r - np.mean(r)) < 4.0 * sd]
            sd = float(np.std(r))
        out[ch] = sd
    return out


def stain_levels(absorbers: np.ndarray) -> dict[str, float]:
    """Median nuclear purple and azure, and red-cell eosin, of unmixed absorber maps (``K x H x W``).

    Nuclei are the pixels above half the 99th percentile of purple; red cells the eosin-stained pixels
    outside them. A level is left out when too few pixels (50) carry it.
    """
    from hemotwin.twin.specimen.maps import ABSORBERS

    p, az, e = (absorbers[ABSORBERS.index(k)] for k in ("purple", "azure_b", "eosin"))
    out: dict[str, float] = {}
    p99 = float(np.percentile(p, 99.0))
    nuc = p > 0.5 * p99 if p99 > 0.05 else np.zeros(p.shape, bool)
    if nuc.sum() >= 50:
        out["nuclear_purple"] = float(np.median(p[nuc]))
        out["nuclear_azure"] = float(np.median(az[nuc]))
    stained = e[(e > 0.05) & ~nuc]
    if stained.size > 50:
        out["red_cell_eosin"] = float(np.median(stained))
    return out


def stained_fraction(rgb: np.ndarray, background: np.ndarray) -> float:
    """Fraction of pixels whose green optical density exceeds 0.1 (a red cell's is 0.3-0.6; glass noise ~0.01)."""
    lin = _linear(rgb[::2, ::2, 1])
    return float(np.mean(lin < float(background[1]) * 10.0**-0.1))


def rel_se_median(values: np.ndarray) -> float:
    """Relative standard error of the median of ``values`` (1.2533 x SD / sqrt(n) / median)."""
    v = np.asarray(values, dtype=float)
    if v.size < 2 or not np.median(v) > 0:
        return float("nan")
    return float(1.2533 * np.std(v, ddof=1) / math.sqrt(v.size) / np.median(v))


def white_point_groups(bgs: np.ndarray) -> tuple[int, float] | None:
    """The split of images by clear-glass colour (log blue / red) with the widest gap: ``(index, gap)``."""
    x = np.log(bgs[:, 2] / bgs[:, 0])
    order = np.argsort(x)
    gaps = np.diff(x[order])
    if gaps.size == 0:
        return None
    k = int(np.argmax(gaps))
    return k, float(gaps[k])


def nearest_preset(um_per_px: float) -> str | None:
    """The twin preset whose pixel size is nearest ``um_per_px`` (on a log scale)."""
    from hemotwin.twin.profiles import list_presets, load_profile

    best, best_d = None, math.inf
    for name in list_presets():
        d = abs(math.log(load_profile(name).camera.um_per_px / um_per_px))
        if d < best_d:
            best, best_d = name, d
    return best


