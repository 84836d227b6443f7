"""The geometric training augmentations: box crops around the white cell, and scale jitter."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

from hemotwin.twin.datasets import render_cell
from hemotwin.twin.profiles import load_profile
from hemotwin.vision.augment import BoxCrop, ScaleJitter


@lru_cache(maxsize=1)
def _cell():
    """A twin lymphocyte in its smear (red cells around it), with its exact white-cell mask."""
    r = render_cell("LYT", load_profile("analyzer-100x"), size_px=224, seed=3)
    wbc = np.zeros(r.image.shape[:2], bool)
    for m in r.wbc_masks.values():
        wbc |= m
    return r.image, wbc, r.um_per_px


def test_box_crop_keeps_the_white_cell_and_flattens_its_surroundings():
    """Inside the box the pixels are the input's; outside one flat colour; the cell is whole.

    The box is the detector's box of the cell plus a margin of -0.3 to 2 µm per side: the
    detector's cell outline matches the twin's mask to about a pixel (tests/vision/test_detect.py),
    so at most 1 % of the true white cell may fall outside even with the negative margin.
    """
    img, wbc, um = _cell()
    keep = img.copy()
    aug = BoxCrop(um_per_px=um, p=1.0)
    for seed in range(4):
        out = aug(img, np.random.default_rng(seed))
        np.testing.assert_array_equal(img, keep)  # never mutates
        assert out.shape == img.shape and out.dtype == img.dtype
        same = (out == img).all(axis=2)
        rows, cols = np.nonzero(same)
        box = np.zeros_like(same)
        box[rows.min():rows.max() + 1, cols.min():cols.max() + 1] = True
        outside = out[~box]
        assert len(np.unique(outside, axis=0)) == 1  # a flat fill, like a padded annotation box
        assert (wbc & ~box).sum() <= 0.01 * wbc.sum()
        # Most of the red cells around the lymphocyte are gone.
        assert box.mean() < 0.6


def test_box_crop_probability_and_determinism():
    img, _, um = _cell()
    aug = BoxCrop(um_per_px=um, p=0.0)
    assert aug(img, np.random.default_rng(0)) is img
    a = BoxCrop(um_per_px=um, p=1.0)(img, np.random.default_rng(5))
    b = BoxCrop(um_per_px=um, p=1.0)(img, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    blank = np.full((64, 64, 3), 230, np.uint8)  # no cell: nothing to crop, the image passes
    np.testing.assert_array_equal(BoxCrop(um_per_px=um, p=1.0)(blank, np.random.default_rng(0)), blank)


def test_scale_jitter_zooms_within_its_range():
    """A disc's measured area changes by the squared zoom, which stays within 1/1.2 to 1.2.

    Area of a disc of radius 30 px after bilinear resampling is within 3 % of the ideal (edge
    pixels are partial); the bound on the factor is then 1.2 x 1.03 linear.
    """
    yy, xx = np.mgrid[:128, :128]
    disc = np.where(((yy - 63.5) ** 2 + (xx - 63.5) ** 2 < 30**2)[..., None], 40, 220).astype(np.uint8)
    disc = np.repeat(disc, 3, axis=2)
    aug = ScaleJitter(1.2)
    zooms = []
    for seed in range(20):
        out = aug(disc, np.random.default_rng(seed))
        assert out.shape == disc.shape and out.dtype == np.uint8
        zooms.append(np.sqrt((out[..., 0] < 130).sum() / (disc[..., 0] < 130).sum()))
    zooms = np.array(zooms)
    assert zooms.min() >= 1 / (1.2 * 1.03) and zooms.max() <= 1.2 * 1.03
    assert zooms.max() / zooms.min() > 1.15  # it does vary
    with pytest.raises(ValueError, match="square"):
        aug(disc[:100], np.random.default_rng(0))


@pytest.mark.parametrize("mode", ["none", "twin"])
def test_training_zoom_magnifies_on_every_path(mode):
    """With ``scale_jitter`` the training pipeline magnifies the cell by 1/1.2 to 1.2, on both paths.

    The pipeline zooms the working image before resampling it to the model grid, or, when it
    re-images through a preset, resamples the twin's output by the factor. A dark disc
    of 8 µm at the working grid is measured by its area below mid-grey: area-resampling to the
    coarser model grid and the twin's optics (a pupil-limited blur of ~0.3 µm, symmetric about the
    threshold) move the measured radius by well under a model pixel (~5 % of 18 px), so the
    measured zoom stays within 1.2 x 1.06.
    """
    from hemotwin.twin.reimage import StainBasis
    from hemotwin.vision.augment import make_augment
    from hemotwin.vision.geometry import Geometry

    geom = Geometry()
    n = geom.work_size
    yy, xx = np.mgrid[:n, :n]
    r_px = 4.0 / geom.work_um_per_px
    inside = (yy - (n - 1) / 2) ** 2 + (xx - (n - 1) / 2) ** 2 < r_px**2
    disc = np.where(inside[..., None], np.array([90, 60, 150]), np.array([225, 220, 228])).astype(np.uint8)
    # One preset at strength 0, so the threshold sees the same rendering at every zoom.
    kw = ({"basis": StainBasis(), "p_reimage": 1.0, "pool_size": 2, "strength": 0.0, "profiles": ("analyzer-100x",)}
          if mode == "twin" else {})
    plain = make_augment(mode, geom, **kw)(disc, np.random.default_rng(0))
    area0 = (plain.mean(axis=2) < 150).sum()
    aug = make_augment(mode, geom, scale_jitter=1.2, **kw)
    zooms = np.array([np.sqrt((aug(disc, np.random.default_rng(s)).mean(axis=2) < 150).sum() / area0)
                      for s in range(12)])
    assert zooms.min() >= 1 / (1.2 * 1.06) and zooms.max() <= 1.2 * 1.06
    assert zooms.max() / zooms.min() > 1.15  # it does vary


@pytest.mark.parametrize("zoom", [1 / 1.2, 0.93, 1.0, 1.07, 1.2])
def test_composed_zoom_equals_zooming_then_resampling(zoom):
    """The training zoom is applied as one composed resampling; it must give the image of the two
    steps it replaces (zoom the working crop, pad with its border colour; then the model grid).
    The two-step path rounds its intermediate to 8 bits, so pixels may differ by one grey level."""
    from hemotwin.vision.datasets import to_canonical
    from hemotwin.vision.geometry import Geometry, to_model_geometry, zoom_to_model

    geom = Geometry()
    work = render_cell("NGS", load_profile("analyzer-100x"), size_px=geom.work_size, seed=1).image
    keep = work.copy()
    two = to_model_geometry(to_canonical(work, um_per_px=zoom, canonical_um_per_px=1.0, size=geom.work_size), geom)
    one = zoom_to_model(work, geom, zoom)
    np.testing.assert_array_equal(work, keep)
    assert one.shape == two.shape == (geom.input_size, geom.input_size, 3) and one.dtype == np.uint8
    assert np.abs(one.astype(int) - two.astype(int)).max() <= 1


def test_wide_mode_reimages_through_the_scanner_space():
    """``wide`` re-images every sample through a scanner of the wide space: varied, seeded, model-sized."""
    from hemotwin.errors import InputError
    from hemotwin.twin.reimage import StainBasis
    from hemotwin.vision.augment import make_augment
    from hemotwin.vision.geometry import Geometry

    geom = Geometry()
    n = geom.work_size
    yy, xx = np.mgrid[:n, :n]
    inside = (yy - (n - 1) / 2) ** 2 + (xx - (n - 1) / 2) ** 2 < (4.0 / geom.work_um_per_px) ** 2
    disc = np.where(inside[..., None], np.array([90, 60, 150]), np.array([225, 220, 228])).astype(np.uint8)
    aug = make_augment("wide", geom, basis=StainBasis(), p_reimage=1.0, pool_size=1)
    outs = [aug(disc, np.random.default_rng(s)) for s in range(10)]
    assert all(o.shape == (geom.input_size, geom.input_size, 3) and o.dtype == np.uint8 for o in outs)
    assert np.array_equal(outs[0], aug(disc, np.random.default_rng(0)))  # same seed, same sample
    # Stain protocol, lamp and processing differ between draws: the centre of the disc changes colour by
    # far more than the colour jitter's few levels (measured spread ~15-30 levels; 5 is a safe floor).
    c = geom.input_size // 2
    centres = np.array([o[c - 4:c + 4, c - 4:c + 4].reshape(-1, 3).mean(axis=0) for o in outs])
    assert centres.std(axis=0).max() > 5.0
    with pytest.raises(InputError, match="wide"):
        make_augment("wide", geom)
