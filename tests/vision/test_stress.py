"""Stress test: sweeps, envelopes, and a real image-based classifier under degradation."""

from __future__ import annotations

import numpy as np
import pytest

from hemotwin.errors import InputError
from hemotwin.twin.profiles import load_profile
from hemotwin.vision.stress import DEFAULT_FLOOR, Sweep, default_sweeps, operating_envelope, stress_test, with_value


def test_envelope_is_the_contiguous_range_above_the_absolute_floor():
    values = [0, 1, 2, 3, 4, 5, 6]
    acc = [0.5, 0.88, 0.91, 0.95, 0.93, 0.7, 0.92]
    # Nominal 3 (0.95): 2..4 stay >= 0.90; 5 drops out, so 6 is not in the contiguous envelope.
    assert operating_envelope(values, acc, 3, floor=0.9) == (2.0, 4.0)
    assert operating_envelope(values, acc, 3, floor=0.85) == (1.0, 4.0)
    # The floor is absolute: a model at 8 % everywhere has no envelope at all (relative to its own
    # nominal accuracy the whole sweep would have been "within tolerance").
    assert operating_envelope(values, [0.08] * 7, 3) is None
    assert operating_envelope(values, acc, 3) == (1.0, 4.0)  # the default floor, 0.8
    with pytest.raises(InputError, match="floor"):
        operating_envelope(values, acc, 3, floor=1.5)


def test_default_sweeps_are_valid_profiles_and_respect_the_immersion_index():
    for name in ("analyzer-100x", "wsi-20x"):
        p = load_profile(name)
        for sw in default_sweeps(p):
            for v in sw.values:
                q = with_value(p, sw.path, v)
                assert q.optics.na < q.optics.immersion_index
    with pytest.raises(InputError):
        with_value(load_profile("wsi-40x"), "optics.nonexistent", 1.0)


def _redness_classifier(images, um_per_px):
    """EOS vs LYT from colour alone: eosinophil granules make the cell red-orange."""
    out = []
    for im in images:
        f = im.astype(float)
        h, w = f.shape[:2]
        c = f[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3]
        redness = float((c[..., 0] - c[..., 2]).mean())
        # Under wsi-40x the centre of an EOS crop has R - B ~ -75, of a LYT crop ~ -118.
        p_eos = 1.0 / (1.0 + np.exp(-(redness + 95.0) / 5.0))
        out.append([p_eos, 1 - p_eos])
    return np.array(out)


def test_stress_test_on_an_image_classifier():
    prof = load_profile("wsi-40x")
    sweeps = [Sweep("stain pH balance", "stain.ph_balance", (-1.0, 0.0, 1.0)),
              Sweep("JPEG quality", "processing.jpeg_quality", (50.0, 90.0))]
    res = stress_test(_redness_classifier, ["eosinophil", "lymphocyte"], profile=prof, codes=["EOS", "LYT"],
                      label_of={"EOS": "eosinophil", "LYT": "lymphocyte"}.get, per_class=3, size_um=20.0,
                      sweeps=sweeps, seed=1, floor=0.75)
    assert res["n_cells"] == 6 and res["nominal_accuracy"] >= 5 / 6
    ph = res["sweeps"][0]
    assert len(ph["accuracy"]) == 3 and ph["nominal"] == 0.0
    # The nominal point lies inside its envelope whenever the floor is reached there.
    assert res["no_envelope"] is None and ph["envelope"] is not None and ph["envelope"][0] <= 0.0 <= ph["envelope"][1]
    assert all(a >= 0.75 for v, a in zip(ph["values"], ph["accuracy"], strict=True)
               if ph["envelope"][0] <= v <= ph["envelope"][1])


def _always_eosinophil(images, um_per_px):
    """A useless classifier: every cell an eosinophil (right on half of an EOS/LYT set)."""
    return np.tile([1.0, 0.0], (len(images), 1))


def test_a_model_below_the_floor_has_no_envelope_but_its_accuracies_are_reported():
    prof = load_profile("wsi-40x")
    sweeps = [Sweep("JPEG quality", "processing.jpeg_quality", (50.0, 90.0))]
    res = stress_test(_always_eosinophil, ["eosinophil", "lymphocyte"], profile=prof, codes=["EOS", "LYT"],
                      label_of={"EOS": "eosinophil", "LYT": "lymphocyte"}.get, per_class=2, size_um=20.0,
                      sweeps=sweeps, seed=1)
    assert res["nominal_accuracy"] == 0.5 and res["floor"] == DEFAULT_FLOOR
    assert res["no_envelope"] == "no envelope: nominal accuracy 0.500 below the floor 0.8"
    sw = res["sweeps"][0]
    assert sw["envelope"] is None and sw["accuracy"] == [0.5, 0.5]  # absolute accuracy at each setting
    # At a floor it reaches, the same curve is an envelope over the whole sweep.
    low = stress_test(_always_eosinophil, ["eosinophil", "lymphocyte"], profile=prof, codes=["EOS", "LYT"],
                      label_of={"EOS": "eosinophil", "LYT": "lymphocyte"}.get, per_class=2, size_um=20.0,
                      sweeps=sweeps, seed=1, floor=0.5)
    assert low["no_envelope"] is None and low["sweeps"][0]["envelope"] == [50.0, 90.0]
