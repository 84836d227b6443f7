"""Rendering procedural specimens: pixel-size bookkeeping and image/mask consistency per class."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from hemotwin.twin.profiles import list_presets, load_profile
from hemotwin.twin.render import render
from hemotwin.twin.specimen import (
    LEUKOCYTE_CLASSES,
    ObjectRecord,
    Specimen,
    make_cell_specimen,
    sample_rbc,
)
from hemotwin.twin.specimen.maps import Compartment

PRESETS = list_presets()


def _single_rbc(seed: int, *, side_um: float = 16.0) -> tuple[Specimen, float]:
    m = sample_rbc("discocyte", np.random.default_rng(seed))
    rec = ObjectRecord(id=1, kind="rbc", label="discocyte", center_um=(side_um / 2, side_um / 2),
                       morphology=m, seed=seed)
    return Specimen(height_um=side_um, width_um=side_um, objects=[rec], seed=seed, kind="field"), m.diameter_um


@pytest.mark.parametrize("preset", PRESETS)
def test_red_cell_diameter_in_um_matches_specimen(preset):
    """Measure the red cell in the delivered 8-bit image, convert with the profile's µm/px."""
    prof = load_profile(preset)
    errs = []
    for seed in range(3):
        spec, d_true = _single_rbc(seed)
        r = render(spec, prof, seed=seed)
        g = r.image[..., 1].astype(float)
        # Absorbance relative to the clear-glass level (median of the border).
        bg = np.median(np.concatenate([g[0], g[-1], g[:, 0], g[:, -1]]))
        # Absorbance, smoothed over one pixel against camera noise.
        a = ndi.gaussian_filter(-np.log(np.clip(g, 1, None) / bg), 1.0)
        # Edge at 40 % of the rim absorbance: a red cell's thickness tapers to zero at its rim,
        # so the half-maximum contour of a blurred image falls ~2 % inside the true outline;
        # 40 % sits on it for every preset's blur. The central pallor is filled in.
        rim = np.percentile(a[r.instances == 1], 90)
        cell = ndi.binary_fill_holes(a > 0.4 * rim)
        lab, n = ndi.label(cell)
        sizes = ndi.sum(cell, lab, range(1, n + 1))
        area_px = sizes.max()
        d_meas = 2 * np.sqrt(area_px / np.pi) * r.um_per_px
        errs.append(abs(d_meas - d_true) / d_true)
    # Issue requirement: within 5 % on every preset (0.5 µm/px digitises a 7.5 µm cell to 15 px,
    # where one pixel of radius is 6.7 %; the area-equivalent diameter averages it down).
    assert max(errs) < 0.05, errs


@pytest.mark.parametrize("preset", ["analyzer-100x", "wsi-40x"])
@pytest.mark.parametrize("code", LEUKOCYTE_CLASSES)
def test_every_class_renders_with_consistent_masks(code, preset):
    prof = load_profile(preset)
    size_px = round(25.6 / prof.camera.um_per_px)
    spec = make_cell_specimen(code, size_um=size_px * prof.camera.um_per_px, seed=11)
    r = render(spec, prof, seed=11)
    assert r.image.shape == (size_px, size_px, 3) and r.image.dtype == np.uint8
    focus = spec.focus_id
    wbc = r.wbc_masks[focus]
    assert wbc.shape == r.image.shape[:2]
    # The white cell sits in the middle of the crop.
    cy, cx = ndi.center_of_mass(wbc)
    assert abs(cy - size_px / 2) < 0.25 * size_px and abs(cx - size_px / 2) < 0.25 * size_px
    g = r.image[..., 1].astype(float)
    nucleus = (r.compartments == Compartment.NUCLEUS) & wbc
    cyto = (r.compartments == Compartment.CYTOPLASM) & wbc
    background = r.instances == 0
    assert nucleus.sum() > 10, "every class has a visible nucleus"
    # Chromatin absorbs strongly in green (purple complex, 552 nm): nucleus darker than glass.
    assert np.median(g[nucleus]) < np.median(g[background]) - 40
    if code != "KSC" and cyto.sum() > 30:
        # Nucleus darker than cytoplasm in the green channel (smudge cells have no cytoplasm).
        # Basophil granules cover the nucleus and darken the cytoplasm too; 0 margin there.
        margin = 0 if code == "BAS" else 10
        assert np.median(g[nucleus]) < np.median(g[cyto]) - margin
    if code == "EOS":
        gran = (r.compartments == Compartment.GRANULE) & wbc
        # Eosinophil granules are orange-red: red clearly above green where they lie.
        rgb = r.image[gran].astype(float)
        assert np.median(rgb[:, 0] - rgb[:, 1]) > 25
