"""Morphometry: segmentation on unmixed amounts against twin ground truth, features, data file."""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from hemotwin.errors import InputError
from hemotwin.twin import morphometry as M
from hemotwin.twin.datasets import render_cell
from hemotwin.twin.profiles import load_profile
from hemotwin.twin.specimen.maps import Compartment
from hemotwin.twin.specimen.measured import SCHEMA, load_morphometry

UM = 0.1  # analyzer-100x pixel size, the PBC scale
SIZE_PX = 300  # 30 µm: room for the largest cells drawn here (≤ 20 µm) with neighbours around


@cache
def _case(code: str, seed: int):
    r = render_cell(code, load_profile("analyzer-100x"), size_px=SIZE_PX, seed=seed)
    wbc = next(o for o in r.objects if o.kind == "wbc")
    cell = r.wbc_masks[wbc.id]
    nucleus = (r.compartments == Compartment.NUCLEUS) & cell
    return r, wbc.morphology, cell, nucleus, M.segment_cell(r.image, um_per_px=r.um_per_px)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


# Basophils (granules drawn over the nucleus hide it in the ground truth) and erythroblasts (the
# twin's haemoglobin-rich cytoplasm has the red cells' colour and no granularity) are left out:
# see docs/morphometry.md, limitations.
@pytest.mark.parametrize("code", ["LYT", "MON", "NGS", "EOS", "MYB", "MYO"])
def test_segmentation_matches_twin_ground_truth(code):
    for seed in (11, 12):
        _, _, cell, nucleus, seg = _case(code, seed)
        assert seg.ok, seg.reason
        assert seg.amounts.shape == (3, SIZE_PX, SIZE_PX) and seg.amounts.dtype == np.float32
        assert not (seg.nucleus & ~seg.cell).any() and not (seg.granules & ~seg.cell).any()
        # Soft edges: the optics blur an edge over ~0.2 µm (2 px); at a 4-8 µm radius a 1-px
        # disagreement all round costs 3-5 % IoU, touching red cells and lobe gaps a few more.
        # Measured on 4 seeds of 12 classes: cell 0.87-0.99, nucleus 0.88-0.99. Eosinophil lobes
        # are 2-3 µm across and packed in dense granules, so one pixel of edge costs ~8 %.
        nucleus_min = 0.80 if code == "EOS" else 0.85
        assert _iou(seg.cell, cell) >= 0.85, (code, seed, _iou(seg.cell, cell))
        assert _iou(seg.nucleus, nucleus) >= nucleus_min, (code, seed, _iou(seg.nucleus, nucleus))


@pytest.mark.parametrize("code", ["LYT", "MON", "MYO", "NGS"])
def test_features_recover_the_drawn_cell(code):
    for seed in (11, 12):
        _, m, cell, nucleus, seg = _case(code, seed)
        f = M.features_of(seg)
        assert set(f) == set(M.FEATURES)
        # The record's diameter is area-equivalent; 10 % allows the ~1-px edge band and a little
        # of a touching red cell (measured: within 4 %).
        assert f["cell_diameter_um"] == pytest.approx(m.diameter_um, rel=0.10)
        # N:C against the drawn masks: both areas shift by an edge band, 0.06 covers it
        # (segmented nuclei are drawn smaller than the record's nominal nc_ratio, so the masks,
        # not the record, are the reference).
        assert f["nc_ratio"] == pytest.approx(nucleus.sum() / cell.sum(), abs=0.06)
        if m.nucleus.kind in ("round", "oval", "kidney"):
            assert f["nc_ratio"] == pytest.approx(m.nc_ratio, abs=0.08)
            assert f["lobe_count"] == 1 and math.isnan(f["filament_width_um"])


def test_lobes_of_segmented_neutrophils():
    right = 0
    for seed in range(20, 26):
        _, m, _, _, seg = _case("NGS", seed)
        right += int(M.features_of(seg)["lobe_count"]) == len(m.nucleus.lobes)
    # Measured 8 of 8 on other seeds; lobes overlapping in projection may occasionally merge.
    assert right >= 5


def test_lobes_and_filament_of_a_drawn_dumbbell():
    yy, xx = np.mgrid[:120, :200]
    lobe = lambda cx: (yy - 60) ** 2 + (xx - cx) ** 2 <= 30**2  # noqa: E731 - two 6-µm lobes
    bar = (np.abs(yy - 60) <= 2) & (xx > 60) & (xx < 140)  # a 5-px (0.5 µm) filament
    nucleus = lobe(50) | lobe(150) | bar
    lobes = M.nucleus_lobes(nucleus, um_per_px=UM)
    assert lobes.max() == 2
    widths = M.filament_widths(nucleus, lobes, um_per_px=UM)
    # The filament is 5 px wide: exactly 0.5 µm by the (2 d - 1) px rule.
    assert widths == [pytest.approx(0.5, abs=0.05)]
    # A waist of 80 % of the lobe width is one lobe (a band, not segments).
    waist = lobe(50) | lobe(100) | ((np.abs(yy - 60) <= 24) & (xx > 50) & (xx < 100))
    assert M.nucleus_lobes(waist, um_per_px=UM).max() == 1


def _power_law_field(beta: float, n: int = 256, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij"))
    f[0, 0] = 1.0
    spec = np.fft.fft2(rng.standard_normal((n, n))) * f ** (-beta / 2)
    return np.real(np.fft.ifft2(spec))


def test_spectral_slope_of_a_known_field():
    yy, xx = np.mgrid[:256, :256]
    disc = (yy - 128) ** 2 + (xx - 128) ** 2 <= 100**2  # 10 µm radius
    for beta in (2.0, 3.0):
        slopes = [M._spectral_slope_and_period(_power_law_field(beta, seed=s), disc, UM)[0] for s in range(3)]
        # P(f) ∝ f^-β; the window leaks a little power towards high f (flattening), and one field
        # has ~10 modes per ring at the low end: ±0.35 on the mean of three fields.
        assert np.mean(slopes) == pytest.approx(-beta, abs=0.35)


def test_dominant_period_of_a_texture():
    yy, xx = np.mgrid[:256, :256]
    disc = (yy - 128) ** 2 + (xx - 128) ** 2 <= 100**2
    tex = np.sin(2 * np.pi * xx * UM / 1.0) + np.sin(2 * np.pi * yy * UM / 1.0)  # 1 µm period
    _, period = M._spectral_slope_and_period(tex, disc, UM)
    # The spectrum is sampled at 10 log-spaced frequencies (steps of 23 %).
    assert period == pytest.approx(1.0, rel=0.15)


def test_granulometry_separates_fine_from_coarse_texture():
    yy, xx = np.mgrid[:200, :200]
    disc = (yy - 100) ** 2 + (xx - 100) ** 2 <= 80**2
    fine = np.sin(2 * np.pi * xx * UM / 0.5) * np.sin(2 * np.pi * yy * UM / 0.5)
    coarse = np.sin(2 * np.pi * xx * UM / 4.0) * np.sin(2 * np.pi * yy * UM / 4.0)
    g_fine = M._granulometry(fine, disc, UM, (0.3, 1.2))
    g_coarse = M._granulometry(coarse, disc, UM, (0.3, 1.2))
    # A 0.3 µm opening flattens 0.5 µm bumps but leaves 4 µm bumps nearly whole.
    assert g_fine[0] > 0.5 > g_coarse[0]
    assert g_coarse[1] > g_coarse[0]


def test_outline_harmonics_and_elliptic_fourier():
    yy, xx = np.mgrid[:140, :140]
    theta = np.arctan2(yy - 70, xx - 70)
    mask = np.hypot(yy - 70, xx - 70) <= 50 * (1 + 0.1 * np.cos(3 * theta))
    pts = M.outline(mask, um_per_px=UM)
    amps = M.harmonic_amplitudes(pts)
    # Arc-length sampling of a pixelated outline: amplitude 0.1 comes back within 0.02.
    assert amps[3] == pytest.approx(0.1, abs=0.02)
    assert amps[2] < 0.02 and amps[4] < 0.02
    circle = np.hypot(yy - 70, xx - 70) <= 50
    c = M.normalized_efd(M.elliptic_fourier(M.outline(circle, um_per_px=UM), order=6))
    # A circle is its first harmonic alone: a_1 = d_1 = 1 after normalisation; pixel steps leave < 1 %.
    assert c[0] == pytest.approx([1.0, 0.0, 0.0, 1.0], abs=0.01)
    assert np.abs(c[1:]).max() < 0.01

    # Normalised descriptors do not depend on size, rotation or start point (Kuhl & Giardina §4).
    def ellipse(a, b, angle_deg, shape=(240, 240)):
        y, x = np.mgrid[: shape[0], : shape[1]] - np.array(shape)[:, None, None] / 2
        t = np.radians(angle_deg)
        u, v = x * np.cos(t) + y * np.sin(t), -x * np.sin(t) + y * np.cos(t)
        return (u / a) ** 2 + (v / b) ** 2 <= 1

    e1 = M.normalized_efd(M.elliptic_fourier(M.outline(ellipse(60, 30, 0), um_per_px=UM), order=8))
    pts = M.outline(ellipse(90, 45, 35), um_per_px=UM)
    e2 = M.normalized_efd(M.elliptic_fourier(np.roll(pts, 17, axis=0), order=8))
    # Pixelation of two differently sized, rotated ellipses differs by ~1 px in 45: 0.02.
    np.testing.assert_allclose(np.abs(e1), np.abs(e2), atol=0.02)
    # The first harmonic's axis ratio (arc-length parameter: near, not at, b / a = 0.5).
    assert 0.45 < abs(e1[0, 3]) < 0.65


def test_bad_inputs_raise_input_errors():
    rgb = np.full((200, 200, 3), 255, np.uint8)
    with pytest.raises(InputError, match="rgb"):
        M.segment_cell(rgb[..., 0], um_per_px=UM)
    with pytest.raises(InputError, match="dtype"):
        M.segment_cell(rgb.astype(np.int32), um_per_px=UM)
    for bad in (0.0, -0.1, float("nan"), 5.0, "0.1", True):
        with pytest.raises(InputError, match="um_per_px"):
            M.segment_cell(rgb, um_per_px=bad)
    with pytest.raises(InputError, match="8 µm"):
        M.segment_cell(rgb[:50, :50], um_per_px=UM)
    with pytest.raises(InputError, match="basis"):
        M.segment_cell(rgb, um_per_px=UM, basis="analyzer-100x")


def test_no_cell_is_reported_not_raised():
    seg = M.segment_cell(np.full((200, 200, 3), 250, np.uint8), um_per_px=UM)
    assert not seg.ok and "chromatin" in seg.reason and not seg.cell.any()
    f = M.measure_cell(np.full((200, 200, 3), 250, np.uint8), um_per_px=UM)
    assert all(math.isnan(v) for v in f.values())


def test_segmentation_does_not_modify_its_input():
    r = _case("LYT", 11)[0]
    before = r.image.copy()
    M.measure_cell(r.image, um_per_px=UM)
    np.testing.assert_array_equal(r.image, before)


def test_holdout_rule_is_stable_and_a_fifth():
    names = [f"neutrophil/SNE_{i}.jpg" for i in range(5000)]
    share = np.mean([M.is_morphometry_holdout(n) for n in names])
    # Binomial sd at n = 5000, p = 0.2 is 0.006; 0.02 is > 3 sd.
    assert share == pytest.approx(0.2, abs=0.02)
    assert M.is_morphometry_holdout("pbc/x/a.jpg") == M.is_morphometry_holdout("./pbc\\x\\a.jpg")
    # Pinned values: the rule must never change, or the realism benchmark would test on fitted cells.
    pinned = {"pbc/basophil/BA_634115.jpg": False, "pbc/neutrophil/x_7.jpg": True}
    assert {name: M.is_morphometry_holdout(name) for name in pinned} == pinned
    with pytest.raises(InputError):
        M.is_morphometry_holdout("")


def test_loader_rejects_another_schema(tmp_path):
    p = tmp_path / "m.json"
    p.write_text(json.dumps({"schema": "hemotwin.morphometry/0", "classes": {}}), encoding="utf-8")
    with pytest.raises(InputError) as err:
        load_morphometry(p)
    msg = str(err.value)
    assert str(p) in msg and "hemotwin.morphometry/0" in msg and SCHEMA in msg
    with pytest.raises(InputError, match="existing file"):
        load_morphometry(tmp_path / "absent.json")


# Every label PBC's white cells are taught under (hemotwin.vision.pbc.PBC_FINE_LABELS; the twin's
# tests do not import vision): the 15-code classes it covers and the two set-valued groups.
PBC_KEYS = {"NGB", "NGS", "neutrophil", "PMO", "MYB", "MMZ", "ig", "EOS", "BAS", "LYT", "MON", "EBO"}


def test_packaged_morphometry_covers_pbc_classes_and_features():
    m = load_morphometry()
    assert set(m.classes) == PBC_KEYS
    assert set(m.features) == set(M.FEATURES)
    assert Path(m.path).stat().st_size < 1.5e6
    for key in PBC_KEYS:
        assert m.n(key) >= 5
        lo, med, hi = (m.quantile(key, "cell_diameter_um", q) for q in (0.05, 0.5, 0.95))
        assert 5.0 < lo <= med <= hi < 30.0, key
        shape = m.nucleus_shape(key)
        assert len(shape["mean"]) == 4 * shape["efd_order"] and len(shape["components"]) >= 1
    # Haematology: lymphocytes are smaller than monocytes; neutrophils carry more lobes.
    assert m.quantile("LYT", "cell_diameter_um", 0.5) < m.quantile("MON", "cell_diameter_um", 0.5)
    assert m.quantile("NGS", "lobe_count", 0.5) > m.quantile("LYT", "lobe_count", 0.5)
    draws = m.sample("LYT", "nc_ratio", np.random.default_rng(0), size=100)
    assert np.all((draws >= m.quantile("LYT", "nc_ratio", 0.05)) & (draws <= m.quantile("LYT", "nc_ratio", 0.95)))


def _pbc_root() -> Path:
    here = Path(__file__).resolve()
    for root in (here.parents[2] / "shared" / "data" / "pbc", here.parents[3] / "shared" / "data" / "pbc"):
        if root.is_dir():
            return root
    pytest.skip("../shared/data/pbc not present")


def test_real_pbc_cells_are_found():
    from skimage.io import imread

    root = _pbc_root()
    files = [sorted((root / c).glob("*.jpg"))[0] for c in ("lymphocyte", "neutrophil", "monocyte", "eosinophil")]
    for f in files:
        feats = M.measure_cell(imread(f)[..., :3], um_per_px=UM)
        # Normal blood white cells are 7-20 µm; CellaVision crops are ~0.1 µm/px.
        assert 6.0 < feats["cell_diameter_um"] < 22.0, f.name
        assert 0.1 < feats["nc_ratio"] < 0.95, f.name
