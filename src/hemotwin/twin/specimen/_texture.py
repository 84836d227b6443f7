"""Cached periodic noise tiles and a cheap separable sampler in physical units.

Generating band-passed noise per object (an FFT per cell) would dominate the raster budget, so a
few periodic tiles are made once per process and sampled with bilinear interpolation at each
object's µm coordinates. A tile's dominant period is :data:`PERIOD_PX` tile pixels; a requested
texture scale (µm) sets how many tile pixels one µm spans, so the same record gives the same
texture, in µm, at any output pixel size. When output pixels are coarser than the tile detail,
a pre-blurred copy is used so the texture averages out instead of aliasing.
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
    white = rng.standard_normal((TILE, TILE))
    f = np.fft.fftfreq(TILE)
    fr = np.hypot(f[:, None], f[None, :])
    f0 = 1.0 / PERIOD_PX
    if kind == "band":
        # Broad log-Gaussian band (~2 octaves) around the clump frequency: a narrow ring gives
        # a labyrinth of equal worms, real chromatin has clumps of many sizes.
        with np.errstate(divide="ignore"):
            filt = np.exp(-0.5 * (np.log(np.where(fr > 0, fr, 1e-9) / f0) / 0.75) ** 2)
    elif kind == "low":
        filt = np.exp(-0.5 * (fr / (0.5 * f0)) ** 2)
    else:  # pragma: no cover - internal
        raise ValueError(kind)
    out = np.fft.ifft2(np.fft.fft2(white) * filt).real
    out -= out.mean()
    out /= out.std()
    return out.astype(np.float32)


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
    step = PERIOD_PX / scale_um * um_per_px
    if step <= 1.5:
        return 1.0
    return float(_blurred(kind, 0, round(4 * 0.5 * step)).var())


def sample(kind: str, seed: int, ys_um: np.ndarray, xs_um: np.ndarray, *, scale_um: float,
           um_per_px: float, stretch_x: float = 1.0) -> np.ndarray:
    """Sample a noise tile on the separable grid ``ys_um x xs_um`` (relative µm coordinates).

    Parameters
    ----------
    kind
        ``"band"`` (band-passed, clumps of period ``scale_um``) or ``"low"`` (smooth blotches).
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
    off_y = (seed // VARIANTS) % TILE
    off_x = (seed // (VARIANTS * TILE)) % TILE
    k = PERIOD_PX / scale_um  # tile pixels per µm
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
    iy = iy.astype(np.intp) % TILE
    ix = ix.astype(np.intp) % TILE
    rows = tile.take(np.concatenate([iy, (iy + 1) % TILE]), axis=0)
    sub = rows.take(np.concatenate([ix, (ix + 1) % TILE]), axis=1)
    ny, nx = len(iy), len(ix)
    a, b = sub[:ny, :nx], sub[:ny, nx:]
    c, d = sub[ny:, :nx], sub[ny:, nx:]
    top = a + fx * (b - a)
    bot = c + fx * (d - c)
    return top + fy * (bot - top)
