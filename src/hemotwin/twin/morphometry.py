"""Morphometry of single white cells: segmentation on unmixed stain amounts, and physical features.

The same measurements run on real crops (PBC, CellaVision) and on twin renderings, so that the
twin's morphology priors can be fitted to, and checked against, real cells. Everything is in
physical units (µm, µm², peak-OD units of the twin's stain basis): crops at different pixel sizes
compare directly.

:func:`segment_cell`
    Unmixes an RGB crop with a :class:`~hemotwin.twin.reimage.StainBasis` and finds the central
    white cell on the amounts, not on RGB thresholds:

    1. *Stained* pixels: the summed amount of the three unmixed components above
       :data:`GLASS_OD` (clear glass unmixes to ~0; the palest cytoplasm to > 0.2).
    2. *Nucleus*: chromatin binds the purple Romanowsky complex, which red cells (eosin +
       haemoglobin) and most cytoplasm lack; the purple amount, smoothed at 0.25 µm to bridge the
       chromatin texture, is cut at half its plateau inside the nucleus (the half-maximum of a
       blurred edge lies on the true edge). The component nearest the crop centre is the core;
       the other purple components larger than :data:`MIN_LOBE_UM2` inside the cell are its
       lobes (segmented nuclei whose filaments fall below the resolution).
    3. *Cell*: red cells all share one colour *direction* in amount space (eosin + a little
       azure, no purple; only their pallor changes the length of the vector). The direction is
       estimated per crop from the stained pixels away from the nucleus. A pixel belongs to the
       white cell when its colour leaves that direction by more than an angle found per crop
       (Otsu, bounded to :data:`ANGLE_BOUNDS_DEG`: azure-rich cytoplasm) *or* when it is granular
       (top-hat energy above the red cells' noise: neutrophil and eosinophil cytoplasm, whose
       colour on real smears lies within a few degrees of red cells). The region connected to
       the nucleus, holes filled and bridges under 1.4 µm opened away, is cut at the
       half-maximum of its cytoplasm amount (the true edge of a blurred step), and round bodies
       joined to it by a neck but clear of the nucleus (a touching polychromatic red cell) are
       dropped.
    4. *Granules*: white top-hat (disk of :data:`GRANULE_RADIUS_UM`) of the purple and of the
       eosin amount in the cytoplasm; peaks above a robust noise level are granules.

:func:`measure_cell`
    The features of :data:`FEATURES` (one-line definitions in :data:`FEATURE_DEFINITIONS`) of a
    crop, NaN where a feature does not apply or the cell was not found.

:func:`is_morphometry_holdout`
    The one rule deciding which real images are kept out of the morphometry fit.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage import feature, filters, measure, morphology, segmentation

from hemotwin.errors import InputError
from hemotwin.twin.reimage import UNMIXED, StainBasis
from hemotwin.twin.specimen.maps import ABSORBERS

__all__ = [
    "ANGLE_BOUNDS_DEG",
    "FEATURES",
    "FEATURE_DEFINITIONS",
    "GLASS_OD",
    "GRANULE_RADIUS_UM",
    "HOLDOUT_FRACTION",
    "MIN_LOBE_UM2",
    "NECK_RATIO",
    "SPECTRUM_FREQUENCIES_PER_UM",
    "CellSegmentation",
    "default_basis",
    "elliptic_fourier",
    "features_of",
    "filament_widths",
    "harmonic_amplitudes",
    "inner_region",
    "is_morphometry_holdout",
    "measure_cell",
    "normalized_efd",
    "nucleus_lobes",
    "outline",
    "radial_power_spectrum",
    "segment_cell",
]

#: Summed unmixed amount (peak-OD units) above which a pixel is stained rather than clear glass.
GLASS_OD = 0.12
#: Smallest purple component (µm²) counted as a nuclear lobe; smaller ones are granules or debris.
MIN_LOBE_UM2 = 1.5
#: Bounds of the per-crop colour-angle threshold (degrees) between red cells and white-cell
#: cytoplasm. Red cells scatter ~1–3° about their direction (JPEG noise, pallor rims); twin and
#: PBC cytoplasm lies 9–35° away.
ANGLE_BOUNDS_DEG = (4.0, 10.0)
#: Radius of the top-hat disk that isolates granules (µm): granules are 0.2–0.8 µm across.
GRANULE_RADIUS_UM = 0.5
#: Share of real images held out of the morphometry fit.
HOLDOUT_FRACTION = 0.2
#: Red-cell colour direction of the twin basis (purple, azure_b, eosin), used when a crop holds too
#: few red-cell pixels to estimate its own.
_RBC_DIRECTION = np.array([0.0, 0.31, 0.95])


@dataclass(frozen=True)
class CellSegmentation:
    """The central white cell of a crop, on the crop's pixel grid.

    Attributes
    ----------
    cell
        ``H x W`` bool: nucleus and cytoplasm of the central white cell; red cells excluded.
    nucleus
        ``H x W`` bool, a subset of ``cell``.
    granules
        ``H x W`` bool: granule pixels in the cytoplasm (may be empty).
    amounts
        ``3 x H x W`` float32 unmixed amounts in the order of
        :data:`hemotwin.twin.reimage.UNMIXED` (purple, azure_b, eosin), peak-OD units.
    um_per_px
        Pixel size of the crop.
    ok
        False when no plausible central white cell was found.
    reason
        Why not ``ok`` (empty when ok).
    """

    cell: np.ndarray
    nucleus: np.ndarray
    granules: np.ndarray
    amounts: np.ndarray
    um_per_px: float
    ok: bool
    reason: str

    @property
    def cytoplasm(self) -> np.ndarray:
        """``H x W`` bool: the cell minus the nucleus."""
        return self.cell & ~self.nucleus


@functools.lru_cache(maxsize=1)
def default_basis() -> StainBasis:
    """The analyzer-100x twin basis (built once per process; do not ``fit`` the returned object)."""
    return StainBasis()


# ---------------------------------------------------------------------------------------------
# input checks
# ---------------------------------------------------------------------------------------------
def _check_um_per_px(um_per_px) -> float:
    if (isinstance(um_per_px, bool) or not isinstance(um_per_px, (int, float, np.floating, np.integer))
            or not math.isfinite(float(um_per_px)) or not 0.01 <= float(um_per_px) <= 2.0):
        raise InputError("um_per_px", um_per_px, "a pixel size in µm in [0.01, 2] (single-cell crops)")
    return float(um_per_px)


def _check_crop(rgb, um_per_px: float) -> None:
    if not isinstance(rgb, np.ndarray):
        raise InputError("rgb", type(rgb).__name__, "an H x W x 3 numpy array")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InputError("rgb", f"shape {rgb.shape}", "an H x W x 3 RGB crop")
    if rgb.dtype != np.uint8 and not np.issubdtype(rgb.dtype, np.floating):
        raise InputError("rgb", f"dtype {rgb.dtype}", "uint8, or float in [0, 1]")
    side_um = min(rgb.shape[:2]) * um_per_px
    if side_um < 8.0:
        raise InputError("rgb", f"{rgb.shape[0]} x {rgb.shape[1]} px at {um_per_px} µm/px",
                         "a crop at least 8 µm on its short side (a white cell is 7–25 µm)")


# ---------------------------------------------------------------------------------------------
# segmentation
# ---------------------------------------------------------------------------------------------
def _disk(radius_um: float, um_per_px: float) -> np.ndarray:
    return morphology.disk(max(1, round(radius_um / um_per_px)))


# Binary morphology with disks through Euclidean distance maps: exact disks, and far faster than
# iterated structuring elements at the radii used here (0.2–2.5 µm = 2–25 px).
def _dilate(mask: np.ndarray, r_px: float) -> np.ndarray:
    if not mask.any():
        return mask.copy()
    return ndi.distance_transform_edt(~mask) <= r_px


def inner_region(mask: np.ndarray, *, margin_um: float, um_per_px: float) -> np.ndarray:
    """Pixels of ``mask`` farther than ``margin_um`` from its edge (an erosion by a disk)."""
    return _erode(np.asarray(mask, bool), margin_um / _check_um_per_px(um_per_px)) & np.asarray(mask, bool)


def _erode(mask: np.ndarray, r_px: float) -> np.ndarray:
    # Pixels beyond the image count as inside, so objects cut by the border are not eaten from it.
    padded = np.pad(mask, 1, mode="edge")
    return (ndi.distance_transform_edt(padded) > r_px)[1:-1, 1:-1]


def _open(mask: np.ndarray, r_px: float) -> np.ndarray:
    return _dilate(_erode(mask, r_px), r_px) & mask


def _close(mask: np.ndarray, r_px: float) -> np.ndarray:
    return _erode(_dilate(mask, r_px), r_px) | mask


def _remove_small(mask: np.ndarray, min_px: float) -> np.ndarray:
    lab, n = ndi.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel())
    keep = sizes >= min_px
    keep[0] = False
    return keep[lab]


def _unmix(rgb: np.ndarray, um_per_px: float, basis: StainBasis) -> np.ndarray:
    maps = basis.transform(rgb, um_per_px=um_per_px)
    return np.stack([maps.absorbers[ABSORBERS.index(n)] for n in UNMIXED]).astype(np.float32)


def _components_near(mask: np.ndarray, centre: tuple[float, float], min_px: float
                     ) -> tuple[np.ndarray, int, float]:
    """Labels of ``mask``, the label of the large-enough component nearest ``centre`` and its distance."""
    lab, n = ndi.label(mask)
    if n == 0:
        return lab, 0, math.inf
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    ys, xs = np.nonzero(lab)
    d = np.hypot(ys - centre[0], xs - centre[1])
    best = np.full(n + 1, np.inf)
    np.minimum.at(best, lab[ys, xs], d)
    best[sizes < min_px] = np.inf
    best[0] = np.inf
    k = int(np.argmin(best))
    return lab, k, float(best[k])


def _nucleus_core(purple: np.ndarray, centre: tuple[float, float], um_per_px: float
                  ) -> tuple[np.ndarray, float]:
    """Purple mask cut at half its plateau, and the plateau; empty mask when no chromatin is near the centre."""
    min_px = MIN_LOBE_UM2 / um_per_px**2
    lab, k, dist = _components_near(purple > 0.25, centre, 4 * min_px)
    limit = 0.3 * min(purple.shape) * um_per_px
    if k == 0 or dist * um_per_px > limit:
        return np.zeros(purple.shape, bool), 0.0
    plateau = float(np.percentile(purple[lab == k], 75))
    level = float(np.clip(0.5 * plateau, 0.2, 1.0))
    return purple > level, plateau


def _rbc_direction(a: np.ndarray, stained: np.ndarray, away: np.ndarray) -> np.ndarray:
    """Median unit colour vector of stained pixels away from the nucleus (mostly red cells)."""
    sel = stained & away
    if sel.sum() < 200:
        return _RBC_DIRECTION / np.linalg.norm(_RBC_DIRECTION)
    v = a[:, sel]
    v = v / (np.linalg.norm(v, axis=0) + 1e-6)
    ref = np.median(v, axis=1)
    return ref / (np.linalg.norm(ref) + 1e-9)


def _colour_angle(a: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Angle (degrees) between each pixel's amount vector and ``ref``."""
    cos = np.tensordot(ref, a, axes=1) / (np.linalg.norm(a, axis=0) + 1e-6)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def _granularity(total: np.ndarray, um_per_px: float) -> np.ndarray:
    """Local mean of the white + black top-hats of the total amount at granule scale (peak-OD units).

    Granular cytoplasm (neutrophil, eosinophil) responds; red cells do not: their interiors are
    smooth and their rims are steps wider than the disk, which top-hats leave untouched.
    """
    t = ndi.gaussian_filter(total, 0.1 / um_per_px)
    fp = _disk(GRANULE_RADIUS_UM * 0.8, um_per_px)
    th = morphology.white_tophat(t, footprint=fp) + morphology.black_tophat(t, footprint=fp)
    return ndi.gaussian_filter(th, 0.5 / um_per_px)


def _robust_level(v: np.ndarray, k: float, floor: float) -> float:
    """``median + k`` robust sigmas of ``v`` (MAD), at least ``floor``."""
    if v.size < 50:
        return floor
    med = float(np.median(v))
    return max(floor, med + k * 1.4826 * float(np.median(np.abs(v - med))))


def _cell_mask(a_s: np.ndarray, a: np.ndarray, stained: np.ndarray, nucleus: np.ndarray,
               um_per_px: float) -> np.ndarray:
    """The stained region around ``nucleus`` whose colour or granularity is not that of red cells.

    Two cues, either suffices: the colour angle from the crop's red-cell direction (azure-rich
    cytoplasm: lymphocytes, monocytes, blasts) and granularity (neutrophil and eosinophil
    cytoplasm, whose colour lies within a few degrees of red cells on real smears).
    """
    um = um_per_px
    dist_nuc = ndi.distance_transform_edt(~nucleus) * um
    far = stained & (dist_nuc > 6.0)
    ref = _rbc_direction(a_s, stained, dist_nuc > 6.0)
    angle = _colour_angle(a_s, ref)
    vals = angle[stained & (dist_nuc > 0.0)]
    thr = ANGLE_BOUNDS_DEG[0]
    if vals.size > 100 and np.ptp(vals) > 0:
        thr = float(np.clip(filters.threshold_otsu(vals), *ANGLE_BOUNDS_DEG))
    gran = _granularity(a.sum(axis=0), um)
    # Red-cell interiors (far from the nucleus) set the granularity noise floor of this crop.
    g_thr = _robust_level(gran[far], 6.0, 0.08)
    white = (stained & ((angle > thr) | (gran > g_thr))) | nucleus
    white = _close(white, 0.3 / um)
    white = ndi.binary_fill_holes(white)
    # Cut bridges narrower than ~1.4 µm to touching red cells or platelets; the nucleus stays whole.
    white = _open(white, 0.7 / um) | nucleus
    cell = _touching(white, nucleus)
    # The cues are smoothed, so the region overshoots a blurred edge; its half-maximum against
    # glass (half the median cytoplasm amount) lies on the true edge.
    total = ndi.gaussian_filter(a.sum(axis=0), 0.1 / um)
    cyto = cell & (dist_nuc > 1.0)
    if cyto.sum() > 50:
        level = max(GLASS_OD, 0.5 * float(np.median(total[cyto])))
        cell = _touching(ndi.binary_fill_holes(cell & (total > level)) | nucleus, nucleus)
    return _drop_attached_bodies(ndi.binary_fill_holes(cell), nucleus, um)


def _drop_attached_bodies(cell: np.ndarray, nucleus: np.ndarray, um: float) -> np.ndarray:
    """Remove round bodies joined to the cell by a constriction and clear of the nucleus.

    A touching polychromatic red cell (azure-tinted) passes the colour cue; split at necks like
    nuclear lobes, it is a region with a red cell's inscribed radius that does not reach the
    nucleus, whereas the white cell's own cytoplasm always borders it.
    """
    # Contacts between round bodies are broader than nuclear filaments: a looser neck rule.
    parts = nucleus_lobes(cell, um_per_px=um, neck_ratio=0.65)
    if parts.max() < 2:
        return cell
    near = _dilate(nucleus, 0.5 / um)
    edt = ndi.distance_transform_edt(cell) * um
    keep = cell.copy()
    for k in range(1, int(parts.max()) + 1):
        region = parts == k
        if not (region & near).any() and edt[region].max() >= 2.0:
            keep &= ~region
    return _touching(keep, nucleus)


def _touching(mask: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """Components of ``mask`` that overlap ``seed``."""
    lab, _ = ndi.label(mask)
    keep = np.unique(lab[seed & mask])
    return np.isin(lab, keep[keep > 0])


def _granule_mask(a: np.ndarray, cyto: np.ndarray, um_per_px: float) -> np.ndarray:
    """Top-hat peaks of the purple or eosin amount in the cytoplasm."""
    if cyto.sum() < 20:
        return np.zeros(cyto.shape, bool)
    fp = _disk(GRANULE_RADIUS_UM, um_per_px)
    box = bounding_box(cyto, fp.shape[0])
    sub = cyto[box]
    out = np.zeros(cyto.shape, bool)
    for j in (UNMIXED.index("purple"), UNMIXED.index("eosin")):
        th = morphology.white_tophat(a[j][box], footprint=fp)
        # A granule stands out of its surroundings by > 4 noise sigmas and by a visible 0.08 OD.
        out[box] |= sub & (th > _robust_level(th[sub], 4.0, 0.08))
    return _remove_small(out, max(2.0, 0.02 / um_per_px**2))


def bounding_box(mask: np.ndarray, margin: int) -> tuple[slice, slice]:
    """Bounding box of ``mask`` grown by ``margin`` pixels, clipped to the image."""
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    return (slice(max(0, ys.min() - margin), min(h, ys.max() + margin + 1)),
            slice(max(0, xs.min() - margin), min(w, xs.max() + margin + 1)))


def segment_cell(rgb: np.ndarray, *, um_per_px: float, basis: StainBasis | None = None) -> CellSegmentation:
    """Find the central white cell of a single-cell crop on its unmixed stain amounts.

    Parameters
    ----------
    rgb
        ``H x W x 3`` uint8 (or float in [0, 1]) crop centred on a white cell.
    um_per_px
        Pixel size of the crop (µm).
    basis
        Stain basis that unmixes the crop; default the analyzer-100x twin basis
        (:func:`default_basis`). Fit one to a scanner's images for better amounts.

    Returns
    -------
    CellSegmentation
        Masks of the cell, nucleus and granules, the amounts, and ``ok`` / ``reason``.

    Raises
    ------
    InputError
        Not an ``H x W x 3`` uint8/float image, a pixel size outside [0.01, 2] µm, or a crop
        smaller than 8 µm.

    Examples
    --------
    >>> from hemotwin.twin.datasets import render_cell
    >>> from hemotwin.twin.profiles import load_profile
    >>> r = render_cell("LYT", load_profile("analyzer-100x"), size_px=200, seed=1)
    >>> seg = segment_cell(r.image, um_per_px=r.um_per_px)
    >>> seg.ok, bool(seg.nucleus.any())
    (True, True)
    """
    um = _check_um_per_px(um_per_px)
    _check_crop(rgb, um)
    if basis is not None and not isinstance(basis, StainBasis):
        raise InputError("basis", type(basis).__name__, "a hemotwin.twin.reimage.StainBasis or None")
    a = _unmix(rgb, um, basis or default_basis())
    h, w = a.shape[1:]
    empty = np.zeros((h, w), bool)

    def fail(reason: str) -> CellSegmentation:
        return CellSegmentation(empty, empty.copy(), empty.copy(), a, um, False, reason)

    a_s = np.stack([ndi.gaussian_filter(x, 0.25 / um) for x in a])
    stained = a_s.sum(axis=0) > GLASS_OD
    centre = ((h - 1) / 2.0, (w - 1) / 2.0)
    purple_mask, _ = _nucleus_core(a_s[0], centre, um)
    if not purple_mask.any():
        return fail("no chromatin (purple) component near the crop centre")
    lab, k, _ = _components_near(purple_mask, centre, MIN_LOBE_UM2 / um**2)
    if k == 0:
        return fail("no chromatin (purple) component near the crop centre")
    core = lab == k
    # Lobes within 2.5 µm of the core seed the cell too (segmented nuclei with unresolved filaments).
    sizes = np.bincount(lab.ravel())
    near = np.unique(lab[_dilate(core, 2.5 / um) & purple_mask])
    near = [i for i in near if i > 0 and sizes[i] * um**2 >= MIN_LOBE_UM2]
    cell = _cell_mask(a_s, a, stained, np.isin(lab, near), um)
    # Lobes: purple components of lobe size inside the cell (the core's filaments may be unresolved).
    inside = np.unique(lab[cell & purple_mask])
    lobes = [i for i in inside if i > 0 and sizes[i] * um**2 >= MIN_LOBE_UM2]
    nucleus = ndi.binary_fill_holes(np.isin(lab, lobes)) & cell
    granules = _granule_mask(a, cell & ~_dilate(nucleus, 0.2 / um), um)
    border = np.concatenate([cell[0], cell[-1], cell[:, 0], cell[:, -1]])
    perimeter = max(measure.perimeter(cell), 1.0)
    if border.sum() > 0.05 * perimeter:
        return CellSegmentation(cell, nucleus, granules, a, um, False, "cell cut by the crop border")
    d_cell = 2.0 * math.sqrt(cell.sum() / math.pi) * um
    if not 4.0 <= d_cell <= 40.0:
        return CellSegmentation(cell, nucleus, granules, a, um, False,
                                f"cell diameter {d_cell:.1f} µm outside 4-40 µm")
    return CellSegmentation(cell, nucleus, granules, a, um, True, "")


# ---------------------------------------------------------------------------------------------
# hold-out rule
# ---------------------------------------------------------------------------------------------
def is_morphometry_holdout(name: str) -> bool:
    """Whether a real image is held out of the morphometry fit (about :data:`HOLDOUT_FRACTION`).

    The rule depends only on the image's path below the folder holding the data sets, with forward
    slashes (e.g. ``"pbc/neutrophil/SNE_12345.jpg"``: data set, class folder, file; a leading
    ``./`` and backslashes are normalised); every user of the rule passes that key: the first 8
    bytes of its BLAKE2b digest, read as an unsigned integer, below 20 % of 2⁶⁴. Stable across
    machines, Python versions and runs.
    """
    if not isinstance(name, str) or not name.strip():
        raise InputError("name", name, "an image's relative path, e.g. 'pbc/neutrophil/SNE_1.jpg'")
    key = name.strip().replace("\\", "/")
    while key.startswith("./"):
        key = key[2:]
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") < int(HOLDOUT_FRACTION * 2**64)


# ---------------------------------------------------------------------------------------------
# outlines and Fourier descriptors
# ---------------------------------------------------------------------------------------------
def outline(mask: np.ndarray, *, um_per_px: float, n_points: int = 128) -> np.ndarray:
    """``n_points x 2`` (y, x) µm outline of the largest object of ``mask``, evenly spaced in arc length.

    Separate parts (lobes whose filaments were not resolved) are first bridged by closings of
    up to 1.5 µm so a segmented nucleus yields one outline; what stays apart is dropped.
    Counter-clockwise in (x, y), starting at an arbitrary point. Empty (0 x 2) for an empty mask.
    """
    um = _check_um_per_px(um_per_px)
    m = np.asarray(mask, bool)
    for r_um in (0.0, 0.5, 1.0, 1.5):
        if ndi.label(m)[1] <= 1:
            break
        m = _close(np.asarray(mask, bool), r_um / um)
    lab, n = ndi.label(m)
    if n == 0:
        return np.zeros((0, 2))
    big = lab == 1 + int(np.argmax(np.bincount(lab.ravel())[1:]))
    contours = measure.find_contours(np.pad(ndi.binary_fill_holes(big), 1).astype(float), 0.5)
    c = max(contours, key=len) - 1.0
    seg = np.hypot(*np.diff(c, axis=0).T)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    if s[-1] <= 0:
        return np.zeros((0, 2))
    t = np.linspace(0.0, s[-1], n_points, endpoint=False)
    pts = np.stack([np.interp(t, s, c[:, 0]), np.interp(t, s, c[:, 1])], axis=1) * um
    # Counter-clockwise in (x, y) (shoelace sign), so descriptors of mirror images differ in phase only.
    area2 = np.sum(pts[:, 1] * np.roll(pts[:, 0], -1) - np.roll(pts[:, 1], -1) * pts[:, 0])
    return pts if area2 > 0 else pts[::-1]


def harmonic_amplitudes(points: np.ndarray, *, max_k: int = 32) -> np.ndarray:
    """Radial-harmonic amplitudes ``a_k`` (k = 0..max_k) of a closed outline.

    From the complex Fourier series ``Z_k`` of ``x + i y`` (arc-length parameter, centroid
    removed): ``a_k = (|Z_{k+1}| + |Z_{1-k}|) / |Z_1|``. For a star-shaped outline
    ``r(θ) = R (1 + Σ A_k cos(kθ + φ_k))`` with small ``A_k`` this gives ``a_k ≈ A_k``, the
    amplitude the twin's :class:`~hemotwin.twin.specimen.morphology.Harmonic` records use
    (k = 2: elongation, k = 3: triangularity ...). ``a_0 = a_1 = 0`` by construction.
    """
    z = points[:, 1] + 1j * points[:, 0]
    n = len(z)
    zk = np.fft.fft(z - z.mean()) / n
    z1 = abs(zk[1])
    out = np.zeros(max_k + 1)
    if z1 <= 0:
        return out
    for k in range(2, max_k + 1):
        if k + 1 < n // 2:
            out[k] = (abs(zk[k + 1]) + abs(zk[(1 - k) % n])) / z1
    return out


def elliptic_fourier(points: np.ndarray, *, order: int = 12) -> np.ndarray:
    """Elliptic Fourier coefficients ``order x 4`` (a_n, b_n, c_n, d_n) of a closed outline.

    Kuhl F.P., Giardina C.R. (1982) Elliptic Fourier features of a closed contour. Computer
    Graphics and Image Processing 18:236–258, eqs. 6–7, with ``x`` the column and ``y`` the row
    coordinate of ``points`` (µm).
    """
    xy = np.stack([points[:, 1], points[:, 0]], axis=1)
    d = np.diff(np.vstack([xy, xy[:1]]), axis=0)
    dt = np.hypot(d[:, 0], d[:, 1])
    keep = dt > 0
    d, dt = d[keep], dt[keep]
    t = np.concatenate([[0.0], np.cumsum(dt)])
    period = t[-1]
    n = np.arange(1, order + 1)[:, None]
    phi = 2 * np.pi * t[None, :] / period
    dcos = np.cos(n * phi[:, 1:]) - np.cos(n * phi[:, :-1])
    dsin = np.sin(n * phi[:, 1:]) - np.sin(n * phi[:, :-1])
    const = period / (2 * n[:, 0] ** 2 * np.pi**2)
    rx, ry = d[:, 0] / dt, d[:, 1] / dt
    return np.stack([const * (dcos @ rx), const * (dsin @ rx), const * (dcos @ ry), const * (dsin @ ry)], axis=1)


def normalized_efd(coeffs: np.ndarray) -> np.ndarray:
    """Elliptic Fourier coefficients normalised for start point, rotation and size (Kuhl & Giardina §4).

    The first harmonic's ellipse becomes ``a_1 = 1, b_1 = c_1 = 0``; ``|d_1|`` is its axis ratio.
    """
    a1, b1, c1, d1 = coeffs[0]
    theta = 0.5 * np.arctan2(2 * (a1 * b1 + c1 * d1), a1**2 - b1**2 + c1**2 - d1**2)
    out = np.empty_like(coeffs)
    for i, (a, b, c, d) in enumerate(coeffs):
        n = i + 1
        ct, st = np.cos(n * theta), np.sin(n * theta)
        out[i] = [a * ct + b * st, -a * st + b * ct, c * ct + d * st, -c * st + d * ct]
    a1s, c1s = out[0, 0], out[0, 2]
    psi = np.arctan2(c1s, a1s)
    rot = np.array([[np.cos(psi), np.sin(psi)], [-np.sin(psi), np.cos(psi)]])
    for i in range(len(out)):
        m = rot @ np.array([[out[i, 0], out[i, 1]], [out[i, 2], out[i, 3]]])
        out[i] = m.ravel()
    size = abs(out[0, 0])
    return out / size if size > 0 else out


# ---------------------------------------------------------------------------------------------
# spectra and texture
# ---------------------------------------------------------------------------------------------
#: Frequencies (cycles/µm) of the stored mean spectra: periods 0.4–5 µm, between a nucleus' size
#: and the resolution of a 100x oil objective (cut-off 2 NA / λ ≈ 4.5 cycles/µm).
SPECTRUM_FREQUENCIES_PER_UM = tuple(float(f) for f in np.round(np.geomspace(0.2, 2.5, 12), 4))
#: Band over which spectral slopes are fitted (cycles/µm).
SLOPE_BAND_PER_UM = (0.3, 2.0)


def radial_power_spectrum(values: np.ndarray, mask: np.ndarray, *, um_per_px: float,
                          frequencies_per_um: tuple[float, ...] | np.ndarray = SPECTRUM_FREQUENCIES_PER_UM
                          ) -> np.ndarray:
    """Radially averaged power of ``values`` inside ``mask`` at ``frequencies_per_um`` (NaN if undefined).

    The region's mean is removed and the region apodised (mask blurred by 0.3 µm) to limit
    leakage from its outline; the power is averaged in log-spaced rings about each frequency.
    """
    um = _check_um_per_px(um_per_px)
    freqs = np.asarray(frequencies_per_um, dtype=float)
    m = np.asarray(mask, bool)
    if m.sum() < 16:
        return np.full(freqs.shape, np.nan)
    box = bounding_box(m, 2)
    v, mb = np.asarray(values, float)[box], m[box]
    w = ndi.gaussian_filter(mb.astype(float), 0.3 / um) * mb
    x = (v - v[mb].mean()) * w
    n = int(2 ** math.ceil(math.log2(max(64, *x.shape) * 2)))
    p = np.abs(np.fft.fft2(x, s=(n, n))) ** 2 / max(float((w**2).sum()), 1e-9)
    fy = np.fft.fftfreq(n, d=um)
    fr = np.hypot(fy[:, None], fy[None, :])
    edges = np.sqrt(freqs[:-1] * freqs[1:])
    lo = np.concatenate([[freqs[0] ** 2 / edges[0]], edges])
    hi = np.concatenate([edges, [freqs[-1] ** 2 / edges[-1]]])
    out = np.full(freqs.shape, np.nan)
    for i, (a, b) in enumerate(zip(lo, hi, strict=True)):
        ring = (fr >= a) & (fr < b)
        if ring.any():
            out[i] = float(p[ring].mean())
    return out


def _spectral_slope_and_period(values: np.ndarray, mask: np.ndarray, um: float) -> tuple[float, float]:
    """Log-log slope of the radial power in :data:`SLOPE_BAND_PER_UM`, and the dominant period (µm).

    The dominant period is ``1 / f`` at the maximum of ``f² P(f)``, the variance per octave.
    """
    freqs = np.geomspace(*SLOPE_BAND_PER_UM, 10)
    p = radial_power_spectrum(values, mask, um_per_px=um, frequencies_per_um=freqs)
    ok = np.isfinite(p) & (p > 0)
    if ok.sum() < 5:
        return math.nan, math.nan
    slope = float(np.polyfit(np.log(freqs[ok]), np.log(p[ok]), 1)[0])
    k = int(np.nanargmax(np.where(ok, freqs**2 * p, -np.inf)))
    return slope, float(1.0 / freqs[k])


def _granulometry(values: np.ndarray, mask: np.ndarray, um: float, radii_um: tuple[float, ...]) -> list[float]:
    """Share of the variance inside ``mask`` removed by grey openings of each radius (µm)."""
    inner = _erode(mask, 0.3 / um) & mask
    if inner.sum() < 30:
        return [math.nan] * len(radii_um)
    v = np.where(mask, values, np.median(values[mask]))
    box = bounding_box(mask, round(max(radii_um) / um) + 2)
    v, inner = v[box], inner[box]
    var = float(v[inner].var())
    if var <= 0:
        return [math.nan] * len(radii_um)
    out = []
    for r in radii_um:
        opened = morphology.opening(v, footprint=_disk(r, um))
        out.append(float(np.clip((v - opened)[inner].var() / var, 0.0, 1.0)))
    return out


# ---------------------------------------------------------------------------------------------
# lobes
# ---------------------------------------------------------------------------------------------
#: A constriction separates two lobes when its half-width is below this share of the smaller
#: lobe's inscribed radius (haematology's rule of thumb: a segment's filament is narrower than
#: a third of the lobe; a band's narrowest part is wider than that).
NECK_RATIO = 0.5
#: Smallest lobe (µm²); smaller watershed regions are merged into their neighbour.
MIN_LOBE_AREA_UM2 = 1.0


def _saddles(lab: np.ndarray, edt: np.ndarray) -> dict[tuple[int, int], float]:
    """Highest distance value on the border between each pair of adjacent regions (the passage's half-width)."""
    out: dict[tuple[int, int], float] = {}
    for a, b, da, db in ((lab[:, :-1], lab[:, 1:], edt[:, :-1], edt[:, 1:]),
                         (lab[:-1], lab[1:], edt[:-1], edt[1:])):
        sel = (a != b) & (a > 0) & (b > 0)
        for i, j, v in zip(a[sel], b[sel], np.minimum(da[sel], db[sel]), strict=True):
            key = (int(min(i, j)), int(max(i, j)))
            out[key] = max(out.get(key, 0.0), float(v))
    return out


def _merge_step(lab: np.ndarray, edt: np.ndarray, min_px: float, neck_ratio: float) -> bool:
    """Merge the most weakly separated pair of regions (or a too-small region); False when none is left."""
    saddles = _saddles(lab, edt)
    if not saddles:
        return False
    n = int(lab.max())
    peak = np.zeros(n + 1)
    np.maximum.at(peak, lab.ravel(), edt.ravel())
    size = np.bincount(lab.ravel(), minlength=n + 1)
    best, score = None, 0.0
    for (i, j), v in saddles.items():
        ratio = v / max(min(peak[i], peak[j]), 1e-9)
        if min(size[i], size[j]) < min_px:
            ratio += 10.0  # a fragment, not a lobe: merge first
        if ratio > score:
            best, score = (i, j), ratio
    if best is None or score < neck_ratio:
        return False
    lab[lab == best[1]] = best[0]
    return True


def nucleus_lobes(nucleus: np.ndarray, *, um_per_px: float, neck_ratio: float = NECK_RATIO) -> np.ndarray:
    """``H x W`` int labels 1..n of the lobes of a nucleus mask.

    Regions of a watershed of the distance map (one per distance maximum) are merged pairwise,
    weakest constriction first, while the constriction's half-width (the distance value at the
    saddle between them) is at least :data:`NECK_RATIO` times the smaller region's inscribed
    radius; regions under :data:`MIN_LOBE_AREA_UM2` are merged into a neighbour. Lobes that
    touch nothing (filaments below the resolution) stay separate.
    """
    um = _check_um_per_px(um_per_px)
    nuc = np.asarray(nucleus, bool)
    if not nuc.any():
        return np.zeros(nuc.shape, np.int32)
    edt = ndi.distance_transform_edt(np.pad(nuc, 1))[1:-1, 1:-1]
    comp, _ = ndi.label(nuc)
    peaks = feature.peak_local_max(edt, min_distance=max(1, round(0.8 / um)), labels=comp, exclude_border=False)
    markers = np.zeros(nuc.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    # Components without a peak (thin slivers) get one marker anywhere inside.
    for k in np.setdiff1d(np.unique(comp[nuc]), comp[tuple(peaks.T)] if len(peaks) else []):
        y, x = np.argwhere(comp == k)[0]
        markers[y, x] = markers.max() + 1
    lab = segmentation.watershed(-edt, markers, mask=nuc).astype(np.int32)
    min_px = MIN_LOBE_AREA_UM2 / um**2
    while _merge_step(lab, edt, min_px, neck_ratio):
        pass
    return segmentation.relabel_sequential(lab)[0].astype(np.int32)


def filament_widths(nucleus: np.ndarray, lobes: np.ndarray, *, um_per_px: float) -> list[float]:
    """Width (µm) of the narrowest passage between each pair of touching lobes.

    Twice the distance to the nucleus edge at the saddle of the border between the two lobes;
    a passage w pixels wide has a distance of (w + 1) / 2 at its middle (pixel centres), hence
    ``(2 d - 1)`` pixels. Lobes that do not touch (unresolved filaments) contribute nothing.
    """
    um = _check_um_per_px(um_per_px)
    nuc = np.asarray(nucleus, bool)
    edt = ndi.distance_transform_edt(np.pad(nuc, 1))[1:-1, 1:-1]
    return [max(2.0 * v - 1.0, 1.0) * um for v in _saddles(np.asarray(lobes), edt).values()]


# ---------------------------------------------------------------------------------------------
# features
# ---------------------------------------------------------------------------------------------
#: Harmonics of the outline reported one by one (see :func:`harmonic_amplitudes`).
HARMONICS = tuple(range(2, 9))
#: Opening radii (µm) of the chromatin granulometry.
GRANULOMETRY_UM = (0.3, 0.6, 1.2)

#: Feature name -> one-line definition (units in brackets).
FEATURE_DEFINITIONS: dict[str, str] = {
    "cell_diameter_um": "area-equivalent diameter of the white cell, 2·sqrt(area/π) [µm]",
    "nucleus_diameter_um": "area-equivalent diameter of the nucleus (all lobes) [µm]",
    "nc_ratio": "nucleus area / cell area",
    "lobe_count": f"nuclear lobes: distance-map watershed regions split by constrictions narrower than "
                  f"{NECK_RATIO} x the lobe's inscribed radius, or disconnected",
    "filament_width_um": "narrowest passage between touching lobes (smallest over pairs); NaN with < 2 "
                         "lobes or none touching [µm]",
    "nucleus_solidity": "nucleus area / area of its convex hull",
    **{f"nucleus_harmonic_{k}": f"amplitude of radial harmonic {k} of the nucleus outline "
                                "(complex Fourier series, relative to harmonic 1)" for k in HARMONICS},
    "nucleus_roughness": "root-sum-square of the nucleus outline's harmonic amplitudes 9-32 (fine irregularity)",
    "chromatin_slope": "log-log slope of the radial power spectrum of the purple amount inside the nucleus, "
                       f"{SLOPE_BAND_PER_UM[0]}-{SLOPE_BAND_PER_UM[1]} cycles/µm",
    "chromatin_period_um": "period of the maximum of f²·P(f) of the purple amount inside the nucleus [µm]",
    **{f"chromatin_open_{r:.1f}um".replace(".", "p"): f"share of the nuclear purple variance removed by a grey "
                                                       f"opening of radius {r} µm" for r in GRANULOMETRY_UM},
    "chromatin_purple": "median purple amount in the nucleus [peak OD]",
    "chromatin_azure_b": "median azure B amount in the nucleus [peak OD]",
    "chromatin_eosin": "median eosin amount in the nucleus [peak OD]",
    "cytoplasm_purple": "median purple amount in the cytoplasm, granules included [peak OD]",
    "cytoplasm_azure_b": "median azure B amount in the cytoplasm [peak OD]",
    "cytoplasm_eosin": "median eosin amount in the cytoplasm [peak OD]",
    "cytoplasm_cv": "coefficient of variation of the summed amount in the cytoplasm",
    "cytoplasm_slope": "log-log slope of the radial power spectrum of the summed amount in the cytoplasm",
    "granule_diameter_um": "median area-equivalent diameter of the granules in the cytoplasm [µm]",
    "granule_density_per_um2": "granules per µm² of cytoplasm",
    "granule_purple": "median purple of granule pixels minus that of the other cytoplasm [peak OD]",
    "granule_azure_b": "median azure B of granule pixels minus that of the other cytoplasm [peak OD]",
    "granule_eosin": "median eosin of granule pixels minus that of the other cytoplasm [peak OD]",
    "cell_solidity": "cell area / area of its convex hull",
    "cell_roughness": "root-sum-square of the cell outline's harmonic amplitudes 9-32",
    "cell_elongation": "amplitude of radial harmonic 2 of the cell outline (0 for a circle)",
}
#: Names of the features :func:`measure_cell` returns, in order.
FEATURES: tuple[str, ...] = tuple(FEATURE_DEFINITIONS)


def _area_diameter(mask: np.ndarray, um: float) -> float:
    return 2.0 * math.sqrt(float(mask.sum()) / math.pi) * um


def _solidity(mask: np.ndarray) -> float:
    if mask.sum() < 3:
        return math.nan
    hull = morphology.convex_hull_image(mask)
    return float(mask.sum() / max(hull.sum(), 1))


def _shape_features(mask: np.ndarray, um: float, prefix: str) -> dict[str, float]:
    pts = outline(mask, um_per_px=um)
    if len(pts) < 16:
        amps = np.full(33, np.nan)
    else:
        amps = harmonic_amplitudes(pts, max_k=32)
    out = {f"{prefix}_solidity": _solidity(mask), f"{prefix}_roughness": float(np.sqrt(np.sum(amps[9:] ** 2)))}
    if prefix == "nucleus":
        out.update({f"nucleus_harmonic_{k}": float(amps[k]) for k in HARMONICS})
    else:
        out["cell_elongation"] = float(amps[2])
    return out


def _lobe_features(nucleus: np.ndarray, um: float) -> dict[str, float]:
    lobes = nucleus_lobes(nucleus, um_per_px=um)
    n = int(lobes.max())
    widths = filament_widths(nucleus, lobes, um_per_px=um) if n >= 2 else []
    return {"lobe_count": float(n), "filament_width_um": float(min(widths)) if widths else math.nan}


def _chromatin_features(a: np.ndarray, nucleus: np.ndarray, um: float) -> dict[str, float]:
    purple = a[UNMIXED.index("purple")]
    inner = _erode(nucleus, 0.3 / um) & nucleus
    slope, period = _spectral_slope_and_period(purple, inner, um) if inner.sum() > 50 else (math.nan, math.nan)
    out = {"chromatin_slope": slope, "chromatin_period_um": period}
    for r, v in zip(GRANULOMETRY_UM, _granulometry(purple, nucleus, um, GRANULOMETRY_UM), strict=True):
        out[f"chromatin_open_{r:.1f}um".replace(".", "p")] = v
    for j, name in enumerate(UNMIXED):
        out[f"chromatin_{name}"] = float(np.median(a[j][nucleus]))
    return out


def _cytoplasm_features(a: np.ndarray, cyto: np.ndarray, um: float) -> dict[str, float]:
    out = {f"cytoplasm_{n}": math.nan for n in UNMIXED} | {"cytoplasm_cv": math.nan, "cytoplasm_slope": math.nan}
    if cyto.sum() < 30:
        return out
    for j, name in enumerate(UNMIXED):
        out[f"cytoplasm_{name}"] = float(np.median(a[j][cyto]))
    total = a.sum(axis=0)
    mean = float(total[cyto].mean())
    out["cytoplasm_cv"] = float(total[cyto].std() / mean) if mean > 0 else math.nan
    out["cytoplasm_slope"] = _spectral_slope_and_period(total, cyto, um)[0]
    return out


def _granule_features(a: np.ndarray, granules: np.ndarray, cyto: np.ndarray, um: float) -> dict[str, float]:
    out = {"granule_diameter_um": math.nan, "granule_density_per_um2": math.nan}
    out |= {f"granule_{n}": math.nan for n in UNMIXED}
    area = float(cyto.sum()) * um**2
    if area < 1.0:
        return out
    g = granules & cyto
    lab, n = ndi.label(g)
    out["granule_density_per_um2"] = n / area
    rest = cyto & ~g
    if n == 0 or rest.sum() < 10:
        return out
    sizes = np.bincount(lab.ravel())[1:]
    out["granule_diameter_um"] = float(np.median(2.0 * np.sqrt(sizes / math.pi) * um))
    for j, name in enumerate(UNMIXED):
        out[f"granule_{name}"] = float(np.median(a[j][g]) - np.median(a[j][rest]))
    return out


def features_of(seg: CellSegmentation) -> dict[str, float]:
    """The :data:`FEATURES` of a segmentation (all NaN when it is not ``ok``)."""
    if not isinstance(seg, CellSegmentation):
        raise InputError("seg", type(seg).__name__, "a CellSegmentation from segment_cell")
    out = dict.fromkeys(FEATURES, math.nan)
    if not seg.ok or not seg.nucleus.any():
        return out
    um, a = seg.um_per_px, seg.amounts
    cyto = seg.cell & ~seg.nucleus
    out["cell_diameter_um"] = _area_diameter(seg.cell, um)
    out["nucleus_diameter_um"] = _area_diameter(seg.nucleus, um)
    out["nc_ratio"] = float(seg.nucleus.sum() / seg.cell.sum())
    out.update(_lobe_features(seg.nucleus, um))
    out.update(_shape_features(seg.nucleus, um, "nucleus"))
    out.update(_shape_features(seg.cell, um, "cell"))
    out.update(_chromatin_features(a, seg.nucleus, um))
    out.update(_cytoplasm_features(a, cyto, um))
    out.update(_granule_features(a, seg.granules, cyto, um))
    return {k: float(out[k]) for k in FEATURES}


def measure_cell(rgb: np.ndarray, *, um_per_px: float, basis: StainBasis | None = None) -> dict[str, float]:
    """Segment the central white cell of a crop and measure the :data:`FEATURES`.

    Parameters
    ----------
    rgb
        ``H x W x 3`` uint8 (or float in [0, 1]) crop centred on a white cell.
    um_per_px
        Pixel size of the crop (µm).
    basis
        Stain basis for the unmixing (see :func:`segment_cell`).

    Returns
    -------
    dict
        Feature name -> value in physical units (:data:`FEATURE_DEFINITIONS`); NaN where a
        feature does not apply (filament width of a round nucleus, granule size of a cell
        without granules) and for every feature when no cell was found.

    Examples
    --------
    >>> from hemotwin.twin.datasets import render_cell
    >>> from hemotwin.twin.profiles import load_profile
    >>> r = render_cell("LYT", load_profile("analyzer-100x"), size_px=200, seed=1)
    >>> f = measure_cell(r.image, um_per_px=r.um_per_px)
    >>> 6.0 < f["cell_diameter_um"] < 16.0
    True
    """
    return features_of(segment_cell(rgb, um_per_px=um_per_px, basis=basis))
