"""Colour camera and processing, from irradiance to the delivered 8-bit image.

Pixel integration, Bayer sampling, noise, ADC, demosaicing, white balance, colour matrix, gamma and
JPEG.

All functions are plain functions on arrays that never modify their inputs. Channel-first
``3 x H x W`` float32 arrays are used inside the chain; the delivered image is ``H x W x 3`` uint8.
"""

from __future__ import annotations

import io
from functools import lru_cache

import numpy as np
from PIL import Image

from hemotwin.errors import InputError

#: Colour of each Bayer site for the RGGB pattern: index (row % 2, col % 2) -> channel.
RGGB = np.array([[0, 1], [1, 2]], dtype=np.int8)

#: Gaussian approximation of the Poisson shot noise is used above this many electrons (its
#: skewness 1/sqrt(λ) is then below 0.1, invisible after ADC quantisation).
GAUSSIAN_SHOT_ABOVE_E = 100.0


def integrate_pixels(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor x factor`` blocks of a ``C x H x W`` image (pixel area integration).

    ``H`` and ``W`` must be multiples of ``factor``.
    """
    if factor == 1:
        return image
    c, h, w = image.shape
    if h % factor or w % factor:
        raise InputError("image shape", (h, w), f"multiples of the oversampling factor {factor}")
    return image.reshape(c, h // factor, factor, w // factor, factor).mean(axis=(2, 4), dtype=np.float32)


def channel_index(shape: tuple[int, int]) -> np.ndarray:
    """``H x W`` channel index (0=R, 1=G, 2=B) of each photosite of an RGGB sensor."""
    h, w = shape
    return np.tile(RGGB, ((h + 1) // 2, (w + 1) // 2))[:h, :w]


def bayer_mosaic(image: np.ndarray) -> np.ndarray:
    """Sample a ``3 x H x W`` image through an RGGB colour-filter array -> ``H x W``."""
    out = np.empty(image.shape[1:], dtype=image.dtype)
    out[0::2, 0::2] = image[0, 0::2, 0::2]
    out[0::2, 1::2] = image[1, 0::2, 1::2]
    out[1::2, 0::2] = image[1, 1::2, 0::2]
    out[1::2, 1::2] = image[2, 1::2, 1::2]
    return out


_K_G = np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]], dtype=np.float32) / 4.0
_K_RB = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=np.float32) / 4.0


def _correlate_sparse(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Correlate with a small sparse kernel by summing shifted views (mirror boundary).

    Demosaicing kernels have at most 13 non-zero taps; shifted adds are several times faster
    than a dense ``ndimage.correlate`` for them.
    """
    r = kernel.shape[0] // 2
    padded = np.pad(image, r, mode="reflect")
    h, w = image.shape
    out = np.zeros((h, w), dtype=np.float32)
    for dy, dx in zip(*np.nonzero(kernel), strict=True):
        out += np.float32(kernel[dy, dx]) * padded[dy : dy + h, dx : dx + w]
    return out


def demosaic_bilinear(mosaic: np.ndarray) -> np.ndarray:
    """Bilinear demosaicing of an RGGB mosaic -> ``3 x H x W``."""
    idx = channel_index(mosaic.shape)
    out = np.empty((3, *mosaic.shape), dtype=np.float32)
    for ch, k in ((0, _K_RB), (1, _K_G), (2, _K_RB)):
        out[ch] = _correlate_sparse(np.where(idx == ch, mosaic, 0).astype(np.float32), k)
    return out


# Malvar, He & Cutler (ICASSP 2004) gradient-corrected linear interpolation, in 1/8 units.
_M_G_AT_RB = np.array(
    [[0, 0, -1, 0, 0], [0, 0, 2, 0, 0], [-1, 2, 4, 2, -1], [0, 0, 2, 0, 0], [0, 0, -1, 0, 0]], np.float32
) / 8
_M_RB_ROW = np.array(
    [[0, 0, 0.5, 0, 0], [0, -1, 0, -1, 0], [-1, 4, 5, 4, -1], [0, -1, 0, -1, 0], [0, 0, 0.5, 0, 0]], np.float32
) / 8
_M_RB_COL = _M_RB_ROW.T.copy()
_M_RB_DIAG = np.array(
    [[0, 0, -1.5, 0, 0], [0, 2, 0, 2, 0], [-1.5, 0, 6, 0, -1.5], [0, 2, 0, 2, 0], [0, 0, -1.5, 0, 0]], np.float32
) / 8


def _correlate_at(padded: np.ndarray, kernel: np.ndarray, r0: int, c0: int, shape: tuple[int, int]) -> np.ndarray:
    """Correlation with ``kernel`` evaluated only on the sub-lattice (r0::2, c0::2)."""
    h, w = shape
    out = np.zeros(((h - r0 + 1) // 2, (w - c0 + 1) // 2), dtype=np.float32)
    oh, ow = out.shape
    for dy, dx in zip(*np.nonzero(kernel), strict=True):
        out += np.float32(kernel[dy, dx]) * padded[r0 + dy : r0 + dy + 2 * oh : 2, c0 + dx : c0 + dx + 2 * ow : 2]
    return out


def demosaic_malvar(mosaic: np.ndarray) -> np.ndarray:
    """Malvar–He–Cutler (2004) demosaicing of an RGGB mosaic -> ``3 x H x W``.

    Each gradient-corrected filter is evaluated only on the Bayer sites where it is used
    (one quarter of the pixels), not on the whole image.
    """
    m = mosaic.astype(np.float32, copy=False)
    shape = m.shape
    pad = np.pad(m, 2, mode="reflect")
    out = np.empty((3, *shape), dtype=np.float32)
    # Known samples.
    out[0, 0::2, 0::2] = m[0::2, 0::2]
    out[1, 0::2, 1::2] = m[0::2, 1::2]
    out[1, 1::2, 0::2] = m[1::2, 0::2]
    out[2, 1::2, 1::2] = m[1::2, 1::2]
    # Green at red (0,0) and blue (1,1) sites.
    out[1, 0::2, 0::2] = _correlate_at(pad, _M_G_AT_RB, 0, 0, shape)
    out[1, 1::2, 1::2] = _correlate_at(pad, _M_G_AT_RB, 1, 1, shape)
    # Red: at green in a red row (0,1), green in a blue row (1,0), blue (1,1).
    out[0, 0::2, 1::2] = _correlate_at(pad, _M_RB_ROW, 0, 1, shape)
    out[0, 1::2, 0::2] = _correlate_at(pad, _M_RB_COL, 1, 0, shape)
    out[0, 1::2, 1::2] = _correlate_at(pad, _M_RB_DIAG, 1, 1, shape)
    # Blue: at green in a blue row (1,0), green in a red row (0,1), red (0,0).
    out[2, 1::2, 0::2] = _correlate_at(pad, _M_RB_ROW, 1, 0, shape)
    out[2, 0::2, 1::2] = _correlate_at(pad, _M_RB_COL, 0, 1, shape)
    out[2, 0::2, 0::2] = _correlate_at(pad, _M_RB_DIAG, 0, 0, shape)
    return out


def add_sensor_noise(
    electrons: np.ndarray, rng: np.random.Generator, *, read_noise_e: float
) -> np.ndarray:
    """Shot and read noise added to a signal in electrons.

    Poisson shot noise (Gaussian approximation above :data:`GAUSSIAN_SHOT_ABOVE_E`) plus Gaussian
    read noise.
    """
    mean = np.maximum(electrons, 0.0, dtype=np.float32)
    # Shot + read noise as one Gaussian of variance mean + read² (a sum of independent
    # Gaussians), one random draw per pixel; exact Poisson where the signal is low.
    z = rng.standard_normal(mean.shape, dtype=np.float32)
    out = mean + np.float32(read_noise_e**2)
    np.sqrt(out, out=out)
    out *= z
    out += mean
    low = mean < GAUSSIAN_SHOT_ABOVE_E
    if low.any():
        out[low] = rng.poisson(mean[low]).astype(np.float32) + np.float32(read_noise_e) * z[low]
    return out


def quantize(electrons: np.ndarray, *, full_well_e: float, adc_bits: int) -> np.ndarray:
    """Full-well clipping and ADC: electrons -> digital numbers (float32 holding integers)."""
    levels = float(2**adc_bits - 1)
    out = electrons * np.float32(levels / full_well_e)
    np.rint(out, out=out)
    return np.clip(out, 0.0, levels, out=out)


def raw_noise_model(*, full_well_e: float, adc_bits: int, read_noise_e: float) -> tuple[float, float]:
    """Poisson–Gaussian parameters ``(a, b)`` of ``var(DN) = a·E[DN] + b`` in raw space.

    ``a`` is the conversion gain (DN per electron); ``b`` holds read noise and the ADC's
    uniform quantisation variance 1/12 (Foi et al., IEEE TIP 2008).
    """
    gain = (2**adc_bits - 1) / full_well_e
    return gain, (gain * read_noise_e) ** 2 + 1.0 / 12.0


def encode_gamma(linear: np.ndarray, gamma: float) -> np.ndarray:
    """Display encoding ``linear ** (1/gamma)`` of values clipped to [0, 1]."""
    return np.power(np.clip(linear, 0.0, 1.0), 1.0 / gamma, dtype=np.float32)


@lru_cache(maxsize=16)
def _gamma_lut(gamma: float, size: int) -> np.ndarray:
    lut = to_uint8(encode_gamma(np.arange(size, dtype=np.float64) / (size - 1), gamma))
    lut.setflags(write=False)
    return lut


def gamma_to_uint8(linear: np.ndarray, gamma: float, *, lut_size: int = 65536) -> np.ndarray:
    """``to_uint8(encode_gamma(linear, gamma))`` through a 16-bit look-up table.

    A table of 65,536 linear steps differs from the direct power law by at most 1 DN above
    linear 1e-3 (2 DN below it, near black, where the curve is steepest) at a fraction of the
    cost of ``np.power`` on every pixel.
    """
    x = np.clip(linear, 0.0, 1.0)
    x *= np.float32(lut_size - 1)
    x += np.float32(0.5)  # round half up, then truncate
    return _gamma_lut(float(gamma), int(lut_size)).take(x.astype(np.int32))


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[0, 1] float -> uint8 with rounding."""
    return np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode an ``H x W x 3`` uint8 image as baseline JPEG (4:2:0) and decode it again."""
    if not (1 <= quality <= 100):
        raise InputError("processing.jpeg_quality", quality, "an integer in 1..100")
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=int(quality), subsampling=2, optimize=False)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"))
