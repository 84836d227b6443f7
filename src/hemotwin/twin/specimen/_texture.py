"""Cached periodic noise tiles and a cheap separable sampler in physical units.

Generating band-passed noise per object (an FFT per cell) would dominate the raster budget, so a
few periodic tiles are made once per process and sampled with bilinear interpolation at each
object's µm coordinates. A tile's dominant period is :data:`PERIOD_PX` tile pixels; a requested
texture scale (µm) sets how many tile pixels one µm spans, so the same record gives the same
texture, in µm, at any output pixel size. When output pixels are coarser than the tile detail,
a pre-blurred copy is used so the texture averages out instead of aliasing.

Besides the band-passed ``"band"`` and smooth ``"low"`` kinds, :func:`power_kind` names tiles of a
*measured* spectrum shape: power ``P(f) = (1 + (f / f0)^2)^(beta / 2)``, flat below the roll-off
frequency ``f0`` (one per :data:`POWER_PERIOD_PX`, so ``scale_um`` is the roll-off period) and a power law
of log-log slope ``beta`` above it, the two numbers the morphometry measures on real chromatin and
cytoplasm (``chromatin_slope``, ``chromatin_period_um``).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import ndimage

TILE = 256  #: tile side in tile pixels (periodic)
PERIOD_PX = 10.0  #: dominant period of the band-passed tiles, in tile pixels
VARIANTS = 8  #: distinct tiles per kind; ``texture_seed`` picks one plus a random offset


@lru_cache(maxsize=64)
def _tile(kind: str, variant: int) -> np.ndarray:
    """A periodic, zero-mean, unit-variance float32 noise tile."""
    rng = np.random.default_rng(np.random.SeedSequence([0x5EED, hash_kind(kind), variant]))
    size = _tile_size(kind)
    white = rng.standard_normal((size, size))
    f = np.fft.fftfreq(size)
    fr = np.hypot(f[:, None], f[None, :])
    f0 = 1.0 / _period_px(kind)
    if kind == "band":
        # Broad log-Gaussian band (~2 octaves) around the clump frequency: a narrow ring gives
        # a labyrinth of equal worms, real chromatin has clumps of many sizes.
        with np.errstate(divide="ignore"):
            filt = np.exp(-0.5 * (np.log(np.where(fr > 0, fr, 1e-9) / f0) / 0.75) ** 2)
    elif kind == "low":
        filt = np.exp(-0.5 * (fr / (0.5 * f0)) ** 2)
    elif kind.startswith(_POWER):
        beta = float(kind[len(_POWER):])
        # Amplitude filter = sqrt of the power shape; the DC term is removed below anyway.
        filt = (1.0 + (fr / f0) ** 2) ** (beta / 4.0)
    else:  # pragma: no cover - internal
        raise ValueError(kind)
    out = np.fft.ifft2(np.fft.fft2(white) * filt).real
    out -= out.mean()
    out /= out.std()
    return out.astype(np.float32)


_POWER = "power"
#: Roll-off period (tile pixels) and side of the power-law tiles: a power law carries detail far
#: above its roll-off frequency (the morphometry fits slopes up to 2 cycles/µm, 3-6x the roll-off),
#: so its tiles sample the roll-off period 4x finer than the band tiles, on a bigger tile that still
#: holds 16 periods (a whole cell without a visible repeat).
POWER_PERIOD_PX = 32.0
POWER_TILE = 512
#: Step (log-log slope units) to which :func:`power_kind` rounds a slope: finer than the spread of
#: measured slopes within a class (~0.3) while bounding the number of cached tiles.
POWER_SLOPE_STEP = 0.1


def power_kind(slope: float) -> str:
    """Tile kind of power spectrum ``(1 + (f / f0)^2)^(slope / 2)`` (slope rounded to 0.1).

    Parameters
    ----------
    slope
        Log-log slope of the power spectrum above the roll-off, in [-6, 0] (real chromatin: about
        -2 to -4).

    Returns
    -------
    str
        A kind for :func:`sample` and :func:`variance`, e.g. ``"power-2.7"``.
    """
    from hemotwin.errors import InputError

    if not isinstance(slope, (int, float)) or not -6.0 <= float(slope) <= 0.0:
        raise InputError("slope", slope, "a power-spectrum slope in [-6, 0]")
    q = round(float(slope) / POWER_SLOPE_STEP) * POWER_SLOPE_STEP
    return f"{_POWER}{q:+.1f}".replace("+", "") if q < 0 else f"{_POWER}-0.0"


def _period_px(kind: str) -> float:
    return POWER_PERIOD_PX if kind.startswith(_POWER) else PERIOD_PX


def _tile_size(kind: str) -> int:
    return POWER_TILE if kind.startswith(_POWER) else TILE


def hash_kind(kind: str) -> int:
    """Stable small integer for a tile kind (``hash`` of a str is salted per process)."""
    return sum((i + 1) * ord(c) for i, c in enumerate(kind))


@lru_cache(maxsize=256)
def _blurred(kind: str, variant: int, sigma_q: int) -> np.ndarray:
    return ndimage.gaussian_filter(_tile(kind, variant), sigma_q / 4.0, mode="wrap")


def variance(kind: str, scale_um: float, um_per_px: float) -> float:
    """Variance of :func:`sample` values at this scale and pixel size (1 unless pre-blurred).

    Callers that exponentiate the noise use it to keep the mean modulation at exactly 1, so the
    total stain of an object does not change with the pixel size.
    """
    step = _period_px(kind) / scale_um * um_per_px
    if step <= 1.5:
        return 1.0
    return float(_blurred(kind, 0, round(4 * 0.5 * step)).var())


def sample(kind: str, seed: int, ys_um: np.ndarray, xs_um: np.ndarray, *, scale_um: float,
           um_per_px: float, stretch_x: float = 1.0) -> np.ndarray:
    """Sample a noise tile on the separable grid ``ys_um x xs_um`` (relative µm coordinates).

    Parameters
    ----------
    kind
        ``"band"`` (band-passed, clumps of period ``scale_um``), ``"low"`` (smooth blotches) or a
        :func:`power_kind` (power law above the roll-off period ``scale_um``).
    seed
        Texture seed; picks the tile and an offset in it.
    ys_um, xs_um
        1-D coordinates in µm, relative to the object's centre (so the texture moves with it).
    scale_um
        Dominant period of the texture in µm.
    um_per_px
        Output grid spacing, used only to choose an anti-aliasing pre-blur.
    stretch_x
        Anisotropy: the texture period along x is ``stretch_x * scale_um`` (streaks along x).

    Returns
    -------
    np.ndarray
        ``len(ys_um) x len(xs_um)`` float32, ~zero mean, ~unit variance.
    """
    variant = seed % VARIANTS
    size = _tile_size(kind)
    off_y = (seed // VARIANTS) % size
    off_x = (seed // (VARIANTS * size)) % size
    k = _period_px(kind) / scale_um  # tile pixels per µm
    step = k * um_per_px  # tile pixels per output pixel
    if step > 1.5:
        tile = _blurred(kind, variant, round(4 * 0.5 * step))
    else:
        tile = _tile(kind, variant)
    ty = ys_um * k + off_y
    tx = xs_um * (k / stretch_x) + off_x
    iy = np.floor(ty)
    ix = np.floor(tx)
    fy = (ty - iy).astype(np.float32)[:, None]
    fx = (tx - ix).astype(np.float32)[None, :]
    iy = iy.astype(np.intp) % size
    ix = ix.astype(np.intp) % size
    rows = tile.take(np.concatenate([iy, (iy + 1) % size]), axis=0)
    sub = rows.take(np.concatenate([ix, (ix + 1) % size]), axis=1)
    ny, nx = len(iy), len(ix)
    a, b = sub[:ny, :nx], sub[:ny, nx:]
    c, d = sub[ny:, :nx], sub[ny:, nx:]
    top = a + fx * (b - a)
    bot = c + fx * (d - c)
    return top + fy * (bot - top)
