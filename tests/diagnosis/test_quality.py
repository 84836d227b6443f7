"""Field quality notes on twin renderings with known defects."""

from __future__ import annotations

import numpy as np
import pytest

from hemotwin.diagnosis.quality import FOCUS_SOFT, field_quality
from hemotwin.errors import InputError
from hemotwin.twin.profiles import load_profile
from hemotwin.twin.render import render
from hemotwin.twin.specimen import FieldSpec, compose_field


@pytest.fixture(scope="module")
def specimen():
    return compose_field(FieldSpec(height_um=50.0, width_um=50.0, wbc_labels=("NGS", "LYT")), seed=3)


def _with(profile_name: str, **optics):
    p = load_profile(profile_name)
    return p.model_copy(update={"optics": p.optics.model_copy(update=optics)})


@pytest.mark.parametrize("profile", ["analyzer-100x", "wsi-40x"])
def test_defocus_ranks_below_in_focus(specimen, profile):
    um = load_profile(profile).camera.um_per_px
    sharp = field_quality(render(specimen, _with(profile), seed=1).image, um_per_px=um)
    blurred = field_quality(render(specimen, _with(profile, defocus_um=2.0), seed=1).image, um_per_px=um)
    assert sharp["focus"]["value"] > blurred["focus"]["value"]
    # Measured: 0.70-0.87 in focus, 0.22-0.38 at 2 µm defocus for these presets.
    assert sharp["focus"]["ok"] and sharp["focus"]["value"] >= FOCUS_SOFT
    assert not blurred["focus"]["ok"]
    assert sharp["content"]["ok"] and sharp["background"]["ok"]


def test_weak_stain_is_noted(specimen):
    p = load_profile("analyzer-100x")
    weak = p.model_copy(update={"stain": p.stain.model_copy(update={"strength": 0.25})})
    q_ok = field_quality(render(specimen, p, seed=1).image, um_per_px=0.1)
    q_weak = field_quality(render(specimen, weak, seed=1).image, um_per_px=0.1)
    assert q_weak["stain"]["value"] < q_ok["stain"]["value"]
    assert q_ok["stain"]["ok"]


def test_blank_and_noise_are_not_smears():
    q = field_quality(np.full((200, 200, 3), 235, np.uint8), um_per_px=0.2)
    assert not q["ok"] and not q["content"]["ok"] and "blank" in q["content"]["message"]
    noise = np.random.default_rng(1).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    q = field_quality(noise, um_per_px=0.2)
    assert not q["content"]["ok"] and "not a smear" in q["content"]["message"]
    assert all(isinstance(m, str) and m for m in q["messages"])


def test_dark_background_noted(specimen):
    img = render(specimen, load_profile("wsi-20x"), seed=1).image
    dark = (img * 0.5).astype(np.uint8)
    q = field_quality(dark, um_per_px=0.5)
    assert not q["background"]["ok"] and "dark" in q["background"]["message"]
    with pytest.raises(InputError):
        field_quality(img, um_per_px=0.0)
