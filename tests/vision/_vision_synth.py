"""A tiny, separable synthetic problem for the vision tests: coloured shapes on a bright background."""

from __future__ import annotations

import numpy as np

COLOURS = np.array([[170, 40, 60], [50, 140, 60], [60, 60, 170]], dtype=np.float64)


def make_shapes(n: int, *, size: int = 32, seed: int = 0, n_classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images ``size x size x 3`` uint8 and labels: class 0 disc, 1 square, 2 ring, each its own colour.

    Position, radius, brightness and noise vary, so the net must learn something, yet the classes
    are cleanly separable (colour alone separates them).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    labels = np.arange(n) % n_classes
    rng.shuffle(labels)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    for i, c in enumerate(labels):
        cy, cx = rng.uniform(size * 0.35, size * 0.65, 2)
        r = rng.uniform(size * 0.18, size * 0.3)
        d = np.hypot(yy - cy, xx - cx)
        if c == 0:
            mask = d < r
        elif c == 1:
            mask = (np.abs(yy - cy) < r * 0.8) & (np.abs(xx - cx) < r * 0.8)
        else:
            mask = (d < r) & (d > r * 0.55)
        img = np.full((size, size, 3), 225.0) * rng.uniform(0.9, 1.05)
        img[mask] = COLOURS[c % len(COLOURS)] * rng.uniform(0.85, 1.15)
        img += rng.normal(0, 8, img.shape)
        images[i] = np.clip(img, 0, 255).astype(np.uint8)
    return images, labels.astype(np.int64)
