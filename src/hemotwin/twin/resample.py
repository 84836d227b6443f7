"""Separable resampling with exact pixel-area weights (shrinking) or linear weights (enlarging).

A camera pixel integrates the light over its area, so shrinking an image is an area average,
not a point sample of a blurred image; as a pair of small matrix products it is also several
times faster than ``scipy.ndimage.zoom`` (the cost of re-imaging during training).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from hemotwin.errors import InputError


@lru_cache(maxsize=512)
def resample_weights(n_in: int, n_out: int) -> np.ndarray:
    """``n_out x n_in`` float32 matrix mapping a 1-D signal to ``n_out`` samples over the same extent.

    Shrinking (``n_out < n_in``): each output pixel averages the input pixels it covers, weighted by
    the overlap length (rows sum to 1). Enlarging: linear interpolation between pixel centres,
    clamped at the edges.
    """
    if n_in < 1 or n_out < 1:
        raise InputError("resample size", (n_in, n_out), "positive pixel counts")
    w = np.zeros((n_out, n_in), dtype=np.float64)
    scale = n_in / n_out
    if scale >= 1.0:
        for j in range(n_out):
            a, b = j * scale, (j + 1) * scale
            i0, i1 = int(np.floor(a)), min(int(np.ceil(b)), n_in)
            for i in range(i0, i1):
                w[j, i] = min(b, i + 1) - max(a, i)
        w /= w.sum(axis=1, keepdims=True)
    else:
        x = (np.arange(n_out) + 0.5) * scale - 0.5
        x = np.clip(x, 0.0, n_in - 1.0)
        i0 = np.floor(x).astype(int)
        i1 = np.minimum(i0 + 1, n_in - 1)
        f = x - i0
        w[np.arange(n_out), i0] += 1.0 - f
        w[np.arange(n_out), i1] += f
    out = w.astype(np.float32)
    out.setflags(write=False)
    return out


def resize_chw(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a ``C x H x W`` (or ``H x W``) float array to ``shape`` = (H', W'); float32 out."""
    wy = resample_weights(a.shape[-2], int(shape[0]))
    wx = resample_weights(a.shape[-1], int(shape[1]))
    return np.matmul(np.matmul(wy, a.astype(np.float32, copy=False)), wx.T)


def resize_hwc(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize an ``H x W x C`` image to ``shape`` = (H', W'); float32 out (uint8 in is not rescaled)."""
    chw = np.moveaxis(a.astype(np.float32, copy=False), -1, 0)
    return np.ascontiguousarray(np.moveaxis(resize_chw(chw, shape), 0, -1))
