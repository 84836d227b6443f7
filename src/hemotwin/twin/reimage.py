"""Twin re-imaging: a real RGB crop -> approximate absorber maps -> rendered through other scanners.

The training augmentation that re-images real cells as if seen through other optics, cameras and
stains, in three pieces:

:class:`StainBasis`
    Optical-density unmixing against **blood-stain absorbers** (not the H&E matrix), in the
    scikit-learn / TIAToolbox ``fit`` / ``transform`` style. The model per pixel is

    ``OD_k = -log10(I_k / I_bg,k) = Σ_j B_kj · a_j``,   ``I_k = (v_k / 255) ** gamma``

    with ``v`` the delivered 8-bit value, ``gamma`` the assumed display gamma (a pure power law,
    default 2.2: what PBC/CellaVision JPEGs and the twin's presets use; sRGB's linear toe is
    ignored — it only matters below v ≈ 10, i.e. OD > 2.5, where the data are noise anyway),
    ``I_bg`` the white point of clear glass, estimated per image from the brightest mode of its
    luminance histogram (clear glass fills much of a smear crop; :func:`estimate_background`,
    with the basis' scanner white point as fallback for crops without glass), and ``B`` a 3 x 3
    matrix of OD per unit amount of three components, in order :data:`UNMIXED` = ``("purple", "azure_b", "eosin")``.

    Haemoglobin is **folded into eosin** at a fixed ratio ``hb_per_eosin`` (default 0.55/0.45,
    the twin's red-cell prior): three channels cannot separate four absorbers, red cells are
    most of the eosin in a smear crop, and the ratio keeps the Soret band of red cells when the
    target profile's illuminant changes. The cost: eosinophil granules and acidophilic
    cytoplasm get haemoglobin they do not have (a little extra blue absorption after re-imaging).

    The columns start from the twin itself — the channel OD of uniform slabs of each component
    seen noise-free through a source profile (default ``analyzer-100x``; a uniform slab is not
    changed by the optics, OTF(0) = 1, so the band model gives it exactly) — so the unmixed
    amounts are the twin's **peak-OD units**. :meth:`StainBasis.fit` refines them on a training
    set (alternating non-negative least squares with a ridge prior towards the start, so the
    columns keep their identity and scale) to the real scanner the images came from.

:func:`reimage`
    transform -> :class:`~hemotwin.twin.specimen.maps.AbsorberMaps` -> :func:`render` through a
    target profile (its stain model, optics and camera act physically on the amounts) ->
    uint8 RGB at the profile's µm/px, optionally resampled to a canonical µm/px and size.

:class:`ReImager`
    The engine the trainer calls per sample: ``reimager(rgb, um_per_px, rng) -> rgb``, drawing a
    :func:`~hemotwin.twin.profiles.randomize` neighbour of a base profile per call.
:class:`SpaceReImager`
    The same call, drawing each target scanner from a whole
    :class:`~hemotwin.twin.scanner_space.ScannerSpace` (any pixel size, objective, lamp, camera,
    processing and Romanowsky protocol of its documented ranges; docs/scanner_space.md).

Limitations (by construction): the estimated maps are those of the *already blurred* source
image, so re-imaging applies optics twice (fine when the target resolves less than the source,
as a 20x scanner or phone does for a 100x analyzer; sharper targets cannot add detail); the
linear OD model ignores the within-channel spectral non-linearity (sharp purple peak) and the
colour-matrix mixing of the source camera, so dense nuclei are unmixed with a few per cent
error; masks of the returned maps are zeros (unknown).

>>> basis = StainBasis()                                 # analyzer-100x twin basis   # doctest: +SKIP
>>> basis.fit(train_images)                               # refine to the real scanner # doctest: +SKIP
>>> out = reimage(rgb, um_per_px=0.1, basis=basis, profile=load_profile("wsi-20x"), seed=1)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from hemotwin.errors import InputError
from hemotwin.twin import camera as cam
from hemotwin.twin.profiles import ScannerProfile, load_profile, randomize
from hemotwin.twin.render import PH_PURPLE_SHIFT_NM, processing_matrix, render, spectral_setup, stain_factors
from hemotwin.twin.resample import resize_hwc
from hemotwin.twin.scanner_space import DEFAULT_SCANNER_SPACE, ScannerSpace
from hemotwin.twin.specimen.maps import ABSORBERS, AbsorberMaps

__all__ = [
    "TONES",
    "UNMIXED",
    "ReImager",
    "SpaceReImager",
    "StainBasis",
    "estimate_background",
    "nnls3",
    "reimage",
    "resample_rgb",
    "twin_stain_vectors",
]

#: Colour models of :class:`StainBasis` (see its ``tone`` parameter).
TONES: tuple[str, ...] = ("display", "raw")
#: Components the basis unmixes (haemoglobin is folded into eosin).
UNMIXED: tuple[str, ...] = ("purple", "azure_b", "eosin")
#: Twin red-cell prior: haemoglobin 0.55 and eosin 0.45 peak-OD units.
DEFAULT_HB_PER_EOSIN = 0.55 / 0.45
#: Optical density cap (transmittance 1e-3): darker pixels carry no usable colour.
OD_MAX = 3.0
#: Amounts (peak-OD units) of the slabs the twin basis is fitted on: the range of a smear.
_SLAB_AMOUNTS = np.array([0.1, 0.2, 0.4, 0.8])
_SCHEMA = "hemotwin.stain_basis/1"


# ---------------------------------------------------------------------------------------------
# input checks and optical density
# ---------------------------------------------------------------------------------------------
def _check_rgb(rgb, where: str = "rgb") -> np.ndarray:
    """An ``H x W x 3`` uint8 array, or float in [0, 1] converted to uint8; clear errors otherwise."""
    if not isinstance(rgb, np.ndarray):
        raise InputError(where, type(rgb).__name__, "an H x W x 3 numpy array")
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise InputError(where, f"shape {rgb.shape}", "an H x W x 3 RGB image (convert grey/RGBA first)")
    if rgb.dtype == np.uint8:
        return rgb
    if rgb.dtype in (np.uint16, np.int32, np.int64, np.uint32):
        raise InputError(where, f"dtype {rgb.dtype}",
                         "8-bit RGB (uint8); convert 16-bit images first, e.g. (img >> 8).astype(np.uint8)")
    if np.issubdtype(rgb.dtype, np.floating):
        if not np.all(np.isfinite(rgb)) or rgb.min() < 0.0 or rgb.max() > 1.0:
            raise InputError(where, f"float range [{np.nanmin(rgb):g}, {np.nanmax(rgb):g}]", "floats in [0, 1]")
        return cam.to_uint8(rgb)
    raise InputError(where, f"dtype {rgb.dtype}", "uint8 (or float in [0, 1])")


def _od_lut(gamma: float) -> np.ndarray:
    """-log10 of the linearised value of each 8-bit level (capped at OD_MAX)."""
    lin = (np.arange(256) / 255.0) ** gamma
    return (-np.log10(np.maximum(lin, 10.0**-OD_MAX))).astype(np.float32)


def estimate_background(rgb: np.ndarray, *, gamma: float = 2.2, window: float = 0.08,
                        reference: np.ndarray | None = None, max_drop: float = 0.12) -> np.ndarray:
    """Linear white point (3,) of clear glass: the brightest mode of the luminance histogram.

    Clear glass is the brightest population of a smear crop: the pixels whose linear luminance
    lies within ``window`` (relative; ~3 noise sigmas of a scanner's glass) below the 99th
    percentile, and their per-channel median is the white point (unbiased by the noise while
    glass covers more than ~1 % of the crop). A crop filled by a cell has no glass and its
    brightest mode is pale cytoplasm: when the estimate is more than ``max_drop`` darker than
    ``reference`` (the scanner's white point, e.g. :attr:`StainBasis.background_`), the
    reference is returned instead.
    """
    rgb = _check_rgb(rgb)
    lut = ((np.arange(256) / 255.0) ** gamma).astype(np.float32)
    flat = rgb.reshape(-1, 3)
    step = max(1, flat.shape[0] // 20000)  # 20k samples are plenty for a median
    lin = lut[flat[::step]]
    lum = lin.sum(axis=1)
    top = np.quantile(lum, 0.99)
    bg = np.maximum(np.median(lin[lum >= top * (1.0 - window)], axis=0), 1e-4).astype(np.float64)
    if reference is not None:
        ref = np.asarray(reference, dtype=np.float64)
        if bg.sum() < (1.0 - max_drop) * ref.sum():
            return ref.copy()
    return bg


def nnls3(basis: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-column non-negative least squares ``min ||y - B x||, x >= 0`` for small ``B``.

    ``basis`` is ``C x K`` (K ≤ 3, full column rank), ``y`` is ``C x N``. Every one of the
    ``2^K`` supports is solved by its pseudo-inverse for all columns at once; the NNLS optimum is
    the feasible (all >= 0) support solution of least residual (it is the least-squares solution
    on its own support, and every feasible candidate is a feasible point). Returns ``x`` (K x N)
    and the squared residual (N,).
    """
    b = np.asarray(basis, dtype=np.float64)
    k = b.shape[1]
    y = np.asarray(y, dtype=np.float32)
    yy = np.einsum("cn,cn->n", y, y)
    full = np.linalg.pinv(b).astype(np.float32) @ y  # full support first: most stained pixels end there
    bad = np.flatnonzero(np.any(full < 0.0, axis=0))
    x = full
    best = np.zeros_like(yy) if k == b.shape[0] else np.maximum(
        yy - np.einsum("cn,cn->n", y, b.astype(np.float32) @ full), 0.0)
    if bad.size == 0:
        return x, best
    yb = y[:, bad]
    ybb = yy[bad]
    best_b = ybb.copy()  # empty support (x = 0) is always feasible
    xb = np.zeros((k, bad.size), dtype=np.float32)
    for mask in range(2**k - 2, 0, -1):
        cols = [j for j in range(k) if mask >> j & 1]
        bs = b[:, cols]
        xs = np.linalg.pinv(bs).astype(np.float32) @ yb
        res = ybb - np.einsum("cn,cn->n", yb, bs.astype(np.float32) @ xs)
        better = np.all(xs >= 0.0, axis=0) & (res < best_b - 1e-9)
        if better.any():
            best_b[better] = res[better]
            xb[:, better] = 0.0
            xb[np.ix_(cols, np.flatnonzero(better))] = xs[:, better]
    x[:, bad] = xb
    best[bad] = best_b
    return x, np.maximum(best, 0.0)


# ---------------------------------------------------------------------------------------------
# the twin's own basis
# ---------------------------------------------------------------------------------------------
def _slab_display_linear(profile: ScannerProfile, amounts: np.ndarray, gamma: float) -> np.ndarray:
    """Noise-free delivered colour (``M x 3``) of uniform slabs (``M x 4`` specimen amounts).

    Linearised with the *assumed* ``gamma`` exactly as :meth:`StainBasis.transform` would see it.
    """
    setup = spectral_setup(profile.illuminant, profile.camera, profile.spectral,
                           PH_PURPLE_SHIFT_NM * profile.stain.ph_balance)
    ab = amounts * stain_factors(profile.stain)[None, :]
    trans = 10.0 ** (-(ab @ setup.bands.extinction.T.astype(np.float64)))  # M x bands
    raw = trans @ setup.bands.channel_weights.T.astype(np.float64)  # uniform slab: OTF(0) = 1
    lin = raw @ processing_matrix(profile).T.astype(np.float64)
    bl = profile.processing.black_level
    disp = cam.encode_gamma(((lin - bl) / (1.0 - bl)).astype(np.float32), profile.processing.gamma)
    return np.maximum(disp.astype(np.float64), 10.0 ** (-OD_MAX / gamma)) ** gamma


def _component_amounts(a: np.ndarray, hb_per_eosin: float) -> np.ndarray:
    """``N x 3`` unmixed amounts -> ``N x 4`` :data:`ABSORBERS` amounts."""
    out = np.zeros((a.shape[0], len(ABSORBERS)))
    for j, name in enumerate(UNMIXED):
        out[:, ABSORBERS.index(name)] = a[:, j]
    out[:, ABSORBERS.index("hemoglobin")] = hb_per_eosin * a[:, UNMIXED.index("eosin")]
    return out


def twin_stain_vectors(profile: ScannerProfile | str = "analyzer-100x", *, gamma: float = 2.2,
                       hb_per_eosin: float = DEFAULT_HB_PER_EOSIN) -> tuple[np.ndarray, np.ndarray]:
    """The twin's stain vectors and white point for images delivered by ``profile``.

    Returns the 3 x 3 OD-per-unit-amount matrix (columns :data:`UNMIXED`) and the clear-glass white
    point (3,) of images linearised with ``gamma``.

    Each column is the least-squares slope through the origin of the channel OD of uniform slabs
    of 0.1–0.8 units of that component (a secant over the smear's range: the OD of a sharp band
    seen by a broad channel grows sub-linearly).
    """
    profile = load_profile(profile)
    white = _slab_display_linear(profile, np.zeros((1, len(ABSORBERS))), gamma)[0]
    cols = []
    for j in range(len(UNMIXED)):
        a = np.zeros((_SLAB_AMOUNTS.size, len(UNMIXED)))
        a[:, j] = _SLAB_AMOUNTS
        lin = _slab_display_linear(profile, _component_amounts(a, hb_per_eosin), gamma)
        od = -np.log10(lin / white[None, :])  # M x 3
        cols.append(_SLAB_AMOUNTS @ od / (_SLAB_AMOUNTS @ _SLAB_AMOUNTS))
    return np.stack(cols, axis=1), white


class _RawModel:
    """The source profile's slab model in *raw* channel OD, and its processing.

    ``od(a) = -log10(sum_b w_kb 10^(-a . E_b) / sum_b w_kb)`` for the three unmixed components
    (the band model of :func:`~hemotwin.twin.render.optical_image` for a uniform slab), and the
    affine processing ``display_linear = (P raw - black) / (1 - black)`` that turns raw channel
    signal into delivered colour. Inverting the processing exactly before unmixing keeps dark
    colours: the OD of the delivered colour bends where the black level and the colour matrix
    act (a real CellaVision nucleus at green 35 came back from the display-tone round trip at
    green 1). The band model itself is still linearised (secant over 0.1-0.8 units); an exact
    per-pixel inversion was tried (look-up table over raw OD) and interpolated badly at the edge
    of the reachable colour cone, where most real pixels lie.
    """

    def __init__(self, profile: ScannerProfile, hb_per_eosin: float) -> None:
        setup = spectral_setup(profile.illuminant, profile.camera, profile.spectral,
                               PH_PURPLE_SHIFT_NM * profile.stain.ph_balance)
        comp = _component_amounts(np.eye(3), hb_per_eosin) * stain_factors(profile.stain)[None, :]  # 3 x 4
        self.ext = comp @ setup.bands.extinction.T.astype(np.float64)  # 3 x bands, OD per unit amount
        self.weights = setup.bands.channel_weights.astype(np.float64)  # 3 x bands
        self.glass = self.weights.sum(axis=1)
        self.processing = processing_matrix(profile).astype(np.float64)
        self.black = float(profile.processing.black_level)

    def od(self, a: np.ndarray) -> np.ndarray:
        """Raw OD (N x 3) of amounts ``a`` (N x 3)."""
        raw = (10.0 ** (-(a @ self.ext))) @ self.weights.T  # N x 3
        return -np.log10(np.maximum(raw, 1e-30) / self.glass[None, :])

    def secant(self) -> np.ndarray:
        """3 x 3 raw OD per unit amount (rows channels, columns components).

        Least-squares slopes through the origin over slabs of 0.1-0.8 units, as
        :func:`twin_stain_vectors` does.
        """
        od = np.stack([self.od(np.outer(_SLAB_AMOUNTS, e)) for e in np.eye(3)])  # comp x M x chan
        return (np.einsum("m,jmc->cj", _SLAB_AMOUNTS, od) / (_SLAB_AMOUNTS @ _SLAB_AMOUNTS))

    def raw_od(self, display_linear: np.ndarray, white: np.ndarray) -> np.ndarray:
        """Raw channel OD (N x 3) of display-linear colours (N x 3) against the white point."""
        pinv = np.linalg.inv(self.processing).T
        raw = (display_linear * (1.0 - self.black) + self.black) @ pinv
        glass = (np.asarray(white, dtype=np.float64) * (1.0 - self.black) + self.black) @ pinv
        return -np.log10(np.clip(raw / glass[None, :], 10.0**-OD_MAX, None))

    def display_linear(self, od: np.ndarray, white: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`raw_od`: display-linear colours (N x 3) of raw OD (N x 3)."""
        glass = (np.asarray(white, dtype=np.float64) * (1.0 - self.black) + self.black) @ np.linalg.inv(
            self.processing).T
        raw = glass[None, :] * 10.0 ** (-od)
        return (raw @ self.processing.T - self.black) / (1.0 - self.black)


# ---------------------------------------------------------------------------------------------
# StainBasis
# ---------------------------------------------------------------------------------------------
class StainBasis:
    """Blood-stain optical-density basis: ``fit`` on a training set, ``transform`` RGB -> amounts.

    Parameters
    ----------
    source_profile
        Profile (or preset name) whose twin basis initialises the vectors.
    gamma
        Assumed display gamma of the images (pure power law).
    hb_per_eosin
        Haemoglobin amount per unit eosin (folded component; see the module docstring).
    tone
        ``"display"``: optical density of the delivered (display-linear) colour and a linear OD
        model, as first shipped. ``"raw"``: the source profile's processing (colour matrix, white
        balance, black level) is inverted first, so a crop re-imaged through its own source
        profile keeps its dark colours
        (docs/benchmarks.md: a PBC nucleus's median green 35 came back at 1 with ``"display"``, at
        32 with ``"raw"``); the unmixing stays linear, now in raw OD. Not the default: as the
        training augmentation it transferred worse to BCCD (55 % against 70 %, one seed).

    Attributes
    ----------
    vectors_
        ``3 x 3`` OD per unit amount; rows R, G, B; columns :data:`UNMIXED`.
    background_
        Default linear white point (3,), used by :meth:`inverse_transform` (twin value, then the
        median over the fitted images).
    """

    def __init__(self, source_profile: ScannerProfile | str = "analyzer-100x", *, gamma: float = 2.2,
                 hb_per_eosin: float = DEFAULT_HB_PER_EOSIN, tone: str = "display") -> None:
        if not (1.0 <= gamma <= 3.0):
            raise InputError("StainBasis.gamma", gamma, "a display gamma in [1, 3]")
        if not (0.0 <= hb_per_eosin <= 5.0):
            raise InputError("StainBasis.hb_per_eosin", hb_per_eosin, "a ratio in [0, 5]")
        if tone not in TONES:
            raise InputError("StainBasis.tone", tone, f"one of {', '.join(TONES)}")
        prof = load_profile(source_profile)
        self.source = prof.name
        self.gamma = float(gamma)
        self.hb_per_eosin = float(hb_per_eosin)
        self.tone = tone
        self.vectors_, self.background_ = twin_stain_vectors(prof, gamma=gamma, hb_per_eosin=hb_per_eosin)
        self._raw: _RawModel | None = None
        if tone == "raw":
            self._raw = _RawModel(prof, self.hb_per_eosin)
            self.vectors_ = self._raw.secant()
        self.n_fit_pixels_ = 0
        self._memo_budget = 0
        self._set_cache()

    def memoize(self, max_bytes: int) -> StainBasis:
        """Remember the unmixing of up to ``max_bytes`` of distinct images (0 turns it off).

        A training run re-images the same crops every epoch, and unmixing is a deterministic
        function of the pixels: remembering it (keyed by the image's content and pixel size)
        takes ~10 ms off each re-imaging of a 258² working crop. The first images seen are kept
        until the budget is spent; results are identical with or without it.
        """
        if not (isinstance(max_bytes, int | np.integer) and max_bytes >= 0):
            raise InputError("StainBasis.memoize(max_bytes)", max_bytes, "a non-negative integer")
        self._memo_budget = int(max_bytes)
        self._memo: dict[bytes, np.ndarray] = {}
        self._memo_used = 0
        return self

    def _unmixed(self, rgb: np.ndarray, um_per_px: float) -> np.ndarray:
        """``3 x N`` amounts of a checked uint8 image's pixels (from the memo when it holds them)."""
        if self._memo_budget <= 0:
            od, _ = self.optical_density(rgb)
            return nnls3(self.vectors_, od.reshape(3, -1))[0]
        import hashlib

        h = hashlib.blake2b(np.ascontiguousarray(rgb).data, digest_size=16)
        h.update(np.asarray([*rgb.shape, float(um_per_px)], dtype=np.float64).tobytes())
        key = h.digest()
        x = self._memo.get(key)
        if x is None:
            od, _ = self.optical_density(rgb)
            x = nnls3(self.vectors_, od.reshape(3, -1))[0]
            if self._memo_used + x.nbytes <= self._memo_budget:
                x.setflags(write=False)
                self._memo[key] = x
                self._memo_used += x.nbytes
        return x

    def set_background(self, background: np.ndarray) -> StainBasis:
        """Set the default linear white point (3,) used where an image's own cannot be estimated.

        Parameters
        ----------
        background
            Linear RGB of clear glass, three positive values (a scanner's lamp).

        Returns
        -------
        StainBasis
            ``self``, checked and with stale memoized unmixings forgotten.
        """
        self.background_ = np.asarray(background, dtype=np.float64)
        self._set_cache()
        return self

    def _set_cache(self) -> None:
        self.vectors_ = np.asarray(self.vectors_, dtype=np.float64)
        self.background_ = np.asarray(self.background_, dtype=np.float64)
        if self.vectors_.shape != (3, 3) or np.linalg.matrix_rank(self.vectors_) < 3:
            raise InputError("StainBasis.vectors", self.vectors_.tolist(), "a non-singular 3 x 3 matrix")
        self._lut = _od_lut(self.gamma)
        if getattr(self, "_memo_budget", 0) > 0:  # new vectors: remembered unmixings are stale
            self.memoize(self._memo_budget)

    # -- optical density ------------------------------------------------------------------------
    def optical_density(self, rgb: np.ndarray, *,
                        background: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``3 x H x W`` channel OD relative to the white point, and the white point used."""
        rgb = _check_rgb(rgb)
        bg = (estimate_background(rgb, gamma=self.gamma, reference=self.background_)
              if background is None else np.asarray(background, dtype=np.float64))
        if bg.shape != (3,) or np.any(bg <= 0):
            raise InputError("background", bg, "three positive linear values")
        if self._raw is not None:
            lin = ((np.arange(256) / 255.0) ** self.gamma)[rgb.reshape(-1, 3)]
            od = self._raw.raw_od(lin, bg).T.reshape(3, *rgb.shape[:2]).astype(np.float32)
            return od, bg
        od = self._lut[rgb.transpose(2, 0, 1)]  # 3 x H x W
        od += np.log10(bg).astype(np.float32)[:, None, None]
        return od, bg

    # -- estimator API ---------------------------------------------------------------------------
    def fit(self, images: Iterable[np.ndarray], *, max_pixels: int = 200_000, n_iter: int = 25,
            prior_weight: float = 0.05, min_od: float = 0.15, seed: int = 0) -> StainBasis:
        """Refine the vectors to the scanner that produced ``images`` (RGB crops of that scanner).

        Stained pixels (OD norm above ``min_od``, none saturated) are pooled and subsampled to
        ``max_pixels``; then alternating non-negative least squares: amounts by :func:`nnls3`,
        vectors by ridge least squares towards the starting vectors
        ``min ||Y - B X||² + λ ||B - B0||²`` with ``λ = prior_weight · trace(X Xᵀ) / 3``. With
        three components in three channels many bases fit equally well (any cone that holds the
        data), so the prior keeps the move minimal and the columns' identity and scale: the
        amounts stay in the twin's peak-OD units.
        """
        rng = np.random.default_rng(seed)
        chunks, bgs = [], []
        n_images = 0
        for i, img in enumerate(images):
            od, bg = self.optical_density(_check_rgb(img, f"images[{i}]"))
            y = od.reshape(3, -1)
            keep = (np.sqrt((y**2).sum(axis=0)) > min_od) & np.all(y < OD_MAX - 0.05, axis=0)
            chunks.append(y[:, keep])
            bgs.append(bg)
            n_images += 1
        if n_images == 0:
            raise InputError("StainBasis.fit(images)", "no images", "at least one RGB image")
        y = np.concatenate(chunks, axis=1).astype(np.float64)
        if y.shape[1] < 100:
            raise InputError("StainBasis.fit(images)", f"{y.shape[1]} stained pixels", "at least 100 stained pixels")
        if y.shape[1] > max_pixels:
            y = y[:, rng.choice(y.shape[1], max_pixels, replace=False)]
        b0 = self.vectors_.copy()
        b = b0.copy()
        for _ in range(n_iter):
            x, _ = nnls3(b, y)
            x = x.astype(np.float64)
            xx = x @ x.T
            lam = prior_weight * np.trace(xx) / 3.0 + 1e-9
            b_new = (y @ x.T + lam * b0) @ np.linalg.inv(xx + lam * np.eye(3))
            # Entries may be negative: a camera's colour matrix turns absorption in one channel
            # into a small gain in another (the twin's own vectors show it in blue).
            if np.linalg.matrix_rank(b_new) < 3:
                break
            delta = np.abs(b_new - b).max()
            b = b_new
            if delta < 1e-5:
                break
        self.vectors_ = b
        self.background_ = np.median(np.stack(bgs), axis=0)
        self.n_fit_pixels_ = int(y.shape[1])
        self._set_cache()
        return self

    def transform(self, rgb: np.ndarray, *, um_per_px: float, background: np.ndarray | None = None,
                  return_info: bool = False):
        """Absorber maps (peak-OD units, :data:`ABSORBERS` order) of an RGB crop.

        Masks are zeros (unknown). With ``return_info`` also returns a dict with ``background``
        (linear white point used), ``residual`` (``H x W`` OD-space residual norm) and
        ``residual_rms``.
        """
        if not (isinstance(um_per_px, (int, float, np.floating)) and 0.0 < float(um_per_px) <= 50.0):
            raise InputError("um_per_px", um_per_px, "a pixel size in µm, in (0, 50]")
        if background is None and not return_info:
            rgb = _check_rgb(rgb)
            h, w = rgb.shape[:2]
            x = self._unmixed(rgb, float(um_per_px))
        else:
            od, bg = self.optical_density(rgb, background=background)
            h, w = od.shape[1:]
            x, res2 = nnls3(self.vectors_, od.reshape(3, -1))
        ab = np.empty((len(ABSORBERS), h, w), dtype=np.float32)
        for j, name in enumerate(UNMIXED):
            ab[ABSORBERS.index(name)] = x[j].reshape(h, w)
        ab[ABSORBERS.index("hemoglobin")] = np.float32(self.hb_per_eosin) * ab[ABSORBERS.index("eosin")]
        maps = AbsorberMaps(ab, np.zeros((h, w), np.int32), np.zeros((h, w), np.uint8), float(um_per_px))
        if not return_info:
            return maps
        res = np.sqrt(res2).reshape(h, w).astype(np.float32)
        return maps, {"background": bg, "residual": res, "residual_rms": float(np.sqrt(res2.mean()))}

    def inverse_transform(self, maps: AbsorberMaps, *, background: np.ndarray | None = None) -> np.ndarray:
        """uint8 RGB of absorber maps through the same linear OD model (no optics, no noise).

        Haemoglobin is ignored (it is folded into the eosin column).
        """
        if not isinstance(maps, AbsorberMaps):
            raise InputError("maps", type(maps).__name__, "AbsorberMaps")
        bg = self.background_ if background is None else np.asarray(background, dtype=np.float64)
        a = np.stack([maps.absorbers[ABSORBERS.index(n)] for n in UNMIXED]).reshape(3, -1)
        h, w = maps.shape
        od = self.vectors_.astype(np.float32) @ a.astype(np.float32)
        if self._raw is not None:
            lin = self._raw.display_linear(od.T.astype(np.float64), bg).astype(np.float32)
            return cam.to_uint8(cam.encode_gamma(lin.reshape(h, w, 3), self.gamma))
        lin = bg.astype(np.float32)[:, None] * np.power(np.float32(10.0), -od)
        return cam.to_uint8(cam.encode_gamma(lin.T.reshape(h, w, 3), self.gamma))

    # -- persistence ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-able state (stored in model files)."""
        return {
            "schema": _SCHEMA,
            "components": list(UNMIXED),
            "vectors": self.vectors_.tolist(),
            "background": self.background_.tolist(),
            "gamma": self.gamma,
            "hb_per_eosin": self.hb_per_eosin,
            "source": self.source,
            "n_fit_pixels": self.n_fit_pixels_,
            "tone": self.tone,
        }

    @classmethod
    def from_dict(cls, data: dict) -> StainBasis:
        """A basis from :meth:`to_dict`'s output, restored as saved (the vectors are not re-derived)."""
        if not isinstance(data, dict) or data.get("schema") != _SCHEMA:
            raise InputError("stain basis", (data or {}).get("schema") if isinstance(data, dict) else data,
                             f"a dict with schema {_SCHEMA!r}")
        if list(data.get("components", [])) != list(UNMIXED):
            raise InputError("stain basis components", data.get("components"), f"{list(UNMIXED)}")
        obj: StainBasis = cls.__new__(cls)  # state restored as saved, without re-deriving the vectors
        obj._memo_budget = 0
        obj.source = str(data.get("source", ""))
        obj.gamma = float(data["gamma"])
        obj.hb_per_eosin = float(data["hb_per_eosin"])
        obj.vectors_ = np.asarray(data["vectors"], dtype=np.float64)
        obj.background_ = np.asarray(data["background"], dtype=np.float64)
        obj.n_fit_pixels_ = int(data.get("n_fit_pixels", 0))
        # Files written before the raw tone existed hold display-tone bases.
        obj.tone = str(data.get("tone", "display"))
        if obj.tone not in TONES:
            raise InputError("stain basis tone", obj.tone, f"one of {', '.join(TONES)}")
        obj._raw = _RawModel(load_profile(obj.source), obj.hb_per_eosin) if obj.tone == "raw" else None
        obj._set_cache()
        return obj

    def __repr__(self) -> str:
        return (f"StainBasis(source={self.source!r}, gamma={self.gamma}, tone={self.tone!r}, "
                f"fitted_pixels={self.n_fit_pixels_})")


# ---------------------------------------------------------------------------------------------
# re-imaging
# ---------------------------------------------------------------------------------------------
def resample_rgb(rgb: np.ndarray, *, um_per_px: float, out_um_per_px: float | None = None,
                 out_size: int | Sequence[int] | None = None) -> np.ndarray:
    """Resample a uint8 RGB image to ``out_um_per_px`` and bring it to ``out_size``.

    Area-averaging when shrinking, linear when enlarging; then centre-crop or reflect-pad to
    ``out_size`` (int or (H, W)).
    """
    img = rgb
    if out_um_per_px is not None and abs(out_um_per_px - um_per_px) > 1e-9 * um_per_px:
        f = um_per_px / out_um_per_px
        shape = (max(1, round(img.shape[0] * f)), max(1, round(img.shape[1] * f)))
        img = np.clip(np.rint(resize_hwc(img, shape)), 0, 255).astype(np.uint8)
    if out_size is not None:
        th, tw = (out_size, out_size) if np.isscalar(out_size) else tuple(out_size)
        for axis, t in ((0, int(th)), (1, int(tw))):
            n = img.shape[axis]
            if n > t:
                s = (n - t) // 2
                img = img[s : s + t] if axis == 0 else img[:, s : s + t]
            elif n < t:
                before = (t - n) // 2
                pad = [(0, 0)] * 3
                pad[axis] = (before, t - n - before)
                img = np.pad(img, pad, mode="symmetric" if n > 1 else "edge")
                while img.shape[axis] < t:  # symmetric padding cannot exceed the size: repeat
                    img = np.pad(img, pad, mode="edge")
    return np.ascontiguousarray(img)


def reimage(rgb: np.ndarray, *, um_per_px: float, basis: StainBasis, profile: ScannerProfile | str, seed: int,
            out_um_per_px: float | None = None, out_size: int | Sequence[int] | None = None,
            field_position: tuple[float, float] = (0.0, 0.0), background: np.ndarray | None = None) -> np.ndarray:
    """Re-image a real RGB crop through ``profile``: uint8 RGB.

    The output is at the profile's µm/px (so the pixel size changes too) unless
    ``out_um_per_px`` is given; ``out_size`` then centre-crops / reflect-pads to a fixed size.
    """
    profile = load_profile(profile)
    maps = basis.transform(rgb, um_per_px=um_per_px, background=background)
    img = render(maps, profile, seed=int(seed), field_position=field_position, ground_truth=False).image
    if out_um_per_px is None and out_size is None:
        return img
    return resample_rgb(img, um_per_px=profile.camera.um_per_px,
                        out_um_per_px=out_um_per_px, out_size=out_size)


class ReImager:
    """Augmentation engine: ``reimager(rgb, um_per_px, rng) -> uint8 RGB``.

    Each call draws a :func:`randomize` neighbour of ``profile`` (strength ``strength``) from
    ``rng``, an off-axis field position (vignetting) and a noise seed, and re-images the crop.

    Speed: the optical transfer function is cached per (wavelength, optics) and the colour
    matrix per (lamp, camera); a fully continuous neighbour misses both caches (~100 ms a call).
    With ``pool_size`` (default 32), the *scanner* part of the neighbour — illuminant, optics
    and camera (pixel size, noise, QE) — is one of ``pool_size`` neighbours drawn once from
    ``pool_seed``, while stain (strength, balance, pH), processing (white balance, gamma,
    saturation, colour gain, JPEG), noise realisation and field position are drawn fresh per
    call. After each pool member's first use (or :meth:`warmup`) a call costs a few ms.
    ``pool_size=None`` draws everything per call (exact, slow).

    ``out_um_per_px`` / ``out_size`` (default: the input's µm/px and size) bring the result
    back to the caller's canonical grid.
    """

    def __init__(self, basis: StainBasis, profile: ScannerProfile | str = "analyzer-100x", *, strength: float = 0.7,
                 pool_size: int | None = 32, pool_seed: int = 0, vary_field_position: bool = True,
                 out_um_per_px: float | None = None, out_size: int | Sequence[int] | None = None) -> None:
        if not isinstance(basis, StainBasis):
            raise InputError("ReImager.basis", type(basis).__name__, "a StainBasis")
        if pool_size is not None and not (1 <= int(pool_size) <= 60):
            raise InputError("ReImager.pool_size", pool_size, "None or 1..60 (the render caches hold 64)")
        self.basis = basis
        self.profile = load_profile(profile)
        self.strength = float(strength)
        randomize(self.profile, np.random.default_rng(0), self.strength)  # validates strength
        self.vary_field_position = bool(vary_field_position)
        self.out_um_per_px = out_um_per_px
        self.out_size = out_size
        self.pool: list[ScannerProfile] | None = None
        if pool_size is not None:
            prng = np.random.default_rng(pool_seed)
            self.pool = [randomize(self.profile, prng, self.strength) for _ in range(int(pool_size))]

    def draw_profile(self, rng: np.random.Generator) -> ScannerProfile:
        """The neighbour profile of one call."""
        q = randomize(self.profile, rng, self.strength)
        if self.pool is None:
            return q
        s = self.pool[int(rng.integers(len(self.pool)))]
        return q.model_copy(update={"illuminant": s.illuminant, "optics": s.optics, "camera": s.camera})

    def warmup(self, size_px: int = 128, um_per_px: float = 0.1) -> None:
        """Fill the render caches for every pool member (about 0.1 s each)."""
        img = np.full((size_px, size_px, 3), 230, np.uint8)
        for s in self.pool or []:
            reimage(img, um_per_px=um_per_px, basis=self.basis, profile=s, seed=0)

    def __call__(self, rgb: np.ndarray, um_per_px: float, rng: np.random.Generator, *,
                 zoom: float = 1.0) -> np.ndarray:
        """Re-image ``rgb`` under the target scanner.

        ``zoom`` magnifies the result (its pixels are read as ``zoom`` times smaller, as a wrong pixel
        size would), at no cost and without touching the optics' caches.
        """
        if not isinstance(rng, np.random.Generator):
            raise InputError("ReImager rng", type(rng).__name__, "a numpy.random.Generator")
        if not (isinstance(zoom, int | float) and 0.1 <= zoom <= 10.0):
            raise InputError("ReImager zoom", zoom, "a magnification in [0.1, 10]")
        rgb = _check_rgb(rgb)
        prof = self.draw_profile(rng)
        seed = int(rng.integers(2**32))
        pos = tuple(rng.uniform(-1.0, 1.0, 2)) if self.vary_field_position else (0.0, 0.0)
        out_um = (um_per_px if self.out_um_per_px is None else self.out_um_per_px) / zoom
        out_size = rgb.shape[:2] if self.out_size is None else self.out_size
        return reimage(rgb, um_per_px=um_per_px, basis=self.basis, profile=prof, seed=seed,
                       out_um_per_px=out_um, out_size=out_size, field_position=pos)

    run = __call__


class SpaceReImager(ReImager):
    """Augmentation engine over a whole :class:`~hemotwin.twin.scanner_space.ScannerSpace`.

    Same call as :class:`ReImager` — ``engine(rgb, um_per_px, rng, *, zoom=1.0) -> uint8 RGB`` —
    but each call's target scanner is a draw from ``space`` (any pixel size, objective, lamp,
    camera, processing and stain protocol of its documented ranges), not a neighbour of one preset.

    Speed: as in :class:`ReImager`, the *hardware* of a draw — illuminant, optics, camera and the
    white-balance calibration, which key the render caches — is one of ``pool_size`` draws made
    once from ``pool_seed`` (``pool_size=None``: every call draws all, exact but ~10x slower),
    while the stain (protocol and per-field spread), processing (white-balance residual, gamma,
    saturation, levels, JPEG), noise realisation and field position are drawn fresh per call.
    Each pool member costs ~0.1 s at its first use (or in :meth:`warmup`, per process).
    The engine pickles (DataLoader workers), caches are rebuilt per process.

    Parameters
    ----------
    basis
        The stain basis that unmixes the input crops.
    space
        The scanner space (default :data:`~hemotwin.twin.scanner_space.DEFAULT_SCANNER_SPACE`).
    pool_size
        Number of cached hardware draws (1..60; the render caches hold 64), or None.
    pool_seed
        Seed of the pool.
    vary_field_position
        Draw the crop's position on the sensor (vignetting) per call.
    out_um_per_px, out_size
        Output grid (default: the input's µm/px and size); the drawn pixel size then shows as
        lost (or aliased) detail, not as a different image size.
    """

    def __init__(self, basis: StainBasis, space: ScannerSpace | None = None, *, pool_size: int | None = 32,
                 pool_seed: int = 0, vary_field_position: bool = True, out_um_per_px: float | None = None,
                 out_size: int | Sequence[int] | None = None) -> None:
        if not isinstance(basis, StainBasis):
            raise InputError("SpaceReImager.basis", type(basis).__name__, "a StainBasis")
        space = DEFAULT_SCANNER_SPACE if space is None else space
        if not isinstance(space, ScannerSpace):
            raise InputError("SpaceReImager.space", type(space).__name__, "a ScannerSpace")
        if pool_size is not None and not (isinstance(pool_size, int | np.integer) and 1 <= int(pool_size) <= 60):
            raise InputError("SpaceReImager.pool_size", pool_size, "None or 1..60 (the render caches hold 64)")
        if out_um_per_px is not None and not (0.0 < float(out_um_per_px) <= 50.0):
            raise InputError("SpaceReImager.out_um_per_px", out_um_per_px, "None or a pixel size in (0, 50] µm")
        self.basis = basis
        self.space = space
        self.profile = None  # no base profile: every call draws from the space
        self.strength = None
        self.vary_field_position = bool(vary_field_position)
        self.out_um_per_px = out_um_per_px
        self.out_size = out_size
        self.pool: list[ScannerProfile] | None = None
        if pool_size is not None:
            prng = np.random.default_rng(pool_seed)
            self.pool = [space.sample(prng) for _ in range(int(pool_size))]

    def draw_profile(self, rng: np.random.Generator) -> ScannerProfile:
        """The target profile of one call: pooled hardware, fresh stain and processing."""
        if self.pool is None:
            return self.space.sample(rng)
        s = self.pool[int(rng.integers(len(self.pool)))]
        protocol, stain = self.space.sample_stain(rng)
        proc = self.space.sample_processing(
            rng, {"white_balance": s.processing.white_balance, "wb_reference_k": s.processing.wb_reference_k})
        hardware = s.description.split(", stain ")[0]
        return s.model_copy(update={"stain": stain, "processing": proc,
                                    "description": f"{hardware}, stain {protocol}"})

    def __repr__(self) -> str:
        n = "None" if self.pool is None else len(self.pool)
        return f"SpaceReImager(space={self.space.name!r}, pool_size={n}, basis={self.basis!r})"
