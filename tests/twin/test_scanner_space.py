"""The scanner space: documented ranges, coverage, persistence, and the re-imager over it."""

from __future__ import annotations

import math
import pickle
from functools import lru_cache

import numpy as np
import pytest

from hemotwin.errors import InputError
from hemotwin.twin.datasets import render_cell
from hemotwin.twin.profiles import ScannerProfile, load_profile
from hemotwin.twin.reimage import SpaceReImager, StainBasis
from hemotwin.twin.scanner_space import (
    DEFAULT_SCANNER_SPACE,
    STAIN_FIELDS,
    ScannerSpace,
    depth_of_field_um,
    scanner_space_report,
)

S = DEFAULT_SCANNER_SPACE
N_DRAWS = 500


@lru_cache(maxsize=1)
def _draws() -> tuple[ScannerProfile, ...]:
    rng = np.random.default_rng(2024)
    return tuple(S.sample(rng) for _ in range(N_DRAWS))


def _protocol_of(p: ScannerProfile) -> str:
    return p.description.rsplit(", stain ", 1)[1]


def _inside(value: float, interval, eps: float = 1e-9) -> bool:
    return interval[0] - eps <= value <= interval[1] + eps


def _assert_covers(values, interval, frac: float, what: str, *, log: bool = False) -> None:
    """Min and max of the draws lie within ``frac`` of the range's ends."""
    v = np.asarray(values, dtype=float)
    lo, hi = interval
    if log:
        v, lo, hi = np.log(v), math.log(lo), math.log(hi)
    span = hi - lo
    assert v.min() <= lo + frac * span, f"{what}: min {v.min():g} not near {lo:g}"
    assert v.max() >= hi - frac * span, f"{what}: max {v.max():g} not near {hi:g}"


# -- ranges ------------------------------------------------------------------------------------------
def test_every_sampled_parameter_lies_in_its_documented_range():
    for p in _draws():
        o, c, il, pr, st = p.optics, p.camera, p.illuminant, p.processing, p.stain
        assert _inside(c.um_per_px, S.um_per_px)
        # The objective is one of the classes, at a pixel size that class is used at.
        assert any(o.magnification in k.magnifications and _inside(o.na, k.na, 1e-4)
                   and _inside(o.immersion_index, k.immersion_index, 1e-4) and _inside(c.um_per_px, k.um_per_px)
                   for k in S.objectives), p.name
        assert o.na < o.immersion_index
        assert _inside(o.condenser_fill, S.condenser_fill)
        assert abs(o.defocus_um) <= S.defocus_dof * depth_of_field_um(o.na, o.immersion_index) + 1e-9
        assert _inside(o.spherical_waves, S.spherical_waves)
        assert _inside(o.axial_chromatic_um, S.axial_chromatic_um)
        assert _inside(o.lateral_chromatic_um, S.lateral_chromatic_um)
        assert 0.0 <= o.lateral_chromatic_angle_deg < 360.0
        assert _inside(o.vignetting, S.vignetting)
        if il.kind == "halogen":
            assert _inside(il.temperature_k, S.halogen_k)
            assert il.blue_filter == 0.0 or _inside(il.blue_filter, S.blue_filter)
        else:
            assert _inside(il.led_pump_nm, S.led_pump_nm)
            assert _inside(il.led_phosphor_nm, S.led_phosphor_nm)
            assert _inside(il.led_pump_ratio, S.led_pump_ratio)
        assert tuple(c.sensor_px) in S.sensor_px
        assert 1 <= c.oversample <= 4
        assert _inside(c.full_well_e, S.full_well_e) and _inside(c.exposure, S.exposure)
        assert _inside(c.read_noise_e, S.read_noise_e) and c.adc_bits in S.adc_bits
        assert all(_inside(q, S.qe_shift_nm) for q in c.qe_shift_nm) and _inside(c.ir_cut_nm, S.ir_cut_nm)
        assert pr.white_balance in ("auto", "reference")
        if pr.white_balance == "reference":
            assert _inside(pr.wb_reference_k, S.wb_reference_k)
        assert all(_inside(g, S.wb_error) for g in pr.wb_error)
        assert _inside(pr.gamma, S.gamma) and _inside(pr.saturation, S.saturation)
        assert _inside(pr.background_level, S.background_level) and _inside(pr.black_level, S.black_level)
        assert pr.jpeg_quality is None or _inside(pr.jpeg_quality, S.jpeg_quality)
        # Stain: within the documented overall range and within the truncation of its own protocol.
        proto = {q.name: q for q in S.protocols}[_protocol_of(p)]
        sp = S.stain_spread
        for key in STAIN_FIELDS:
            v, centre, half = getattr(st, key), getattr(proto, key), getattr(sp, key) * sp.truncate_sigma
            assert _inside(v, S.protocol_range(key)), (key, v)
            if key == "ph_balance":
                assert abs(v - centre) <= half + 1e-9
            else:
                assert abs(math.log(v / centre)) <= half + 1e-9


def test_draws_cover_each_range():
    """Min/max near the ends and every discrete choice drawn.

    Tolerances: a uniform field drawn n times misses the outer ``f`` of its range at one end with
    probability (1 - f)^n. Fields drawn on every profile (n = 500) use f = 5 % (1e-11); fields drawn
    only for a lamp, a filter or an objective class (n ≈ 60-300) use f = 10-15 % (< 1e-3 each). The
    seed is fixed, so the test is deterministic; the bounds say it is not a lucky seed.
    """
    d = _draws()
    o = [p.optics for p in d]
    c = [p.camera for p in d]
    pr = [p.processing for p in d]
    il = [p.illuminant for p in d]
    _assert_covers([x.um_per_px for x in c], S.um_per_px, 0.05, "um_per_px", log=True)
    _assert_covers([x.condenser_fill for x in o], S.condenser_fill, 0.05, "condenser_fill")
    _assert_covers([x.spherical_waves for x in o], S.spherical_waves, 0.05, "spherical_waves")
    _assert_covers([x.axial_chromatic_um for x in o], S.axial_chromatic_um, 0.05, "axial_chromatic_um")
    _assert_covers([x.lateral_chromatic_um for x in o], S.lateral_chromatic_um, 0.05, "lateral_chromatic_um")
    _assert_covers([x.vignetting for x in o], S.vignetting, 0.05, "vignetting")
    rel = [x.defocus_um / depth_of_field_um(x.na, x.immersion_index) for x in o]
    _assert_covers(rel, (-S.defocus_dof, S.defocus_dof), 0.05, "defocus / DOF")
    _assert_covers([x.full_well_e for x in c], S.full_well_e, 0.05, "full_well_e", log=True)
    _assert_covers([x.read_noise_e for x in c], S.read_noise_e, 0.05, "read_noise_e", log=True)
    _assert_covers([x.exposure for x in c], S.exposure, 0.05, "exposure")
    _assert_covers([q for x in c for q in x.qe_shift_nm], S.qe_shift_nm, 0.05, "qe_shift_nm")
    _assert_covers([x.ir_cut_nm for x in c], S.ir_cut_nm, 0.05, "ir_cut_nm")
    _assert_covers([x.gamma for x in pr], S.gamma, 0.05, "gamma")
    _assert_covers([x.saturation for x in pr], S.saturation, 0.05, "saturation")
    _assert_covers([x.background_level for x in pr], S.background_level, 0.05, "background_level")
    _assert_covers([x.black_level for x in pr], S.black_level, 0.05, "black_level")
    _assert_covers([g for x in pr for g in x.wb_error], S.wb_error, 0.05, "wb_error")
    jpeg = [x.jpeg_quality for x in pr if x.jpeg_quality is not None]
    assert set(jpeg) >= {S.jpeg_quality[0], S.jpeg_quality[1]}  # 36 integers, ~375 draws: each end hit
    assert 0 < len(jpeg) < N_DRAWS  # with and without JPEG
    _assert_covers([x.wb_reference_k for x in pr if x.white_balance == "reference"], S.wb_reference_k, 0.15,
                   "wb_reference_k")
    halogen = [x for x in il if x.kind == "halogen"]
    led = [x for x in il if x.kind == "led"]
    assert halogen and led
    _assert_covers([x.temperature_k for x in halogen], S.halogen_k, 0.1, "halogen_k")
    assert any(x.blue_filter == 0.0 for x in halogen) and any(x.blue_filter > 0.0 for x in halogen)
    _assert_covers([x.blue_filter for x in halogen if x.blue_filter > 0], S.blue_filter, 0.1, "blue_filter")
    _assert_covers([x.led_pump_nm for x in led], S.led_pump_nm, 0.1, "led_pump_nm")
    _assert_covers([x.led_phosphor_nm for x in led], S.led_phosphor_nm, 0.1, "led_phosphor_nm")
    _assert_covers([x.led_pump_ratio for x in led], S.led_pump_ratio, 0.1, "led_pump_ratio")
    assert {x.adc_bits for x in c} == set(S.adc_bits)
    assert {tuple(x.sensor_px) for x in c} == set(S.sensor_px)
    assert {x.bayer for x in c} == {True, False} and {x.demosaic for x in c} == {"bilinear", "malvar"}
    # Every objective class drawn, and its NA range covered.
    for k in S.objectives:
        na = [x.na for x, y in zip(o, c, strict=True) if x.magnification in k.magnifications
              and _inside(x.na, k.na, 1e-4) and _inside(y.um_per_px, k.um_per_px)]
        assert len(na) >= 20, k.name
        _assert_covers(na, k.na, 0.15, f"na of {k.name}")
    assert {x.magnification for x in o} == {m for k in S.objectives for m in k.magnifications}
    assert {x.immersion_index == 1.0 for x in o} == {True, False}  # dry and oil
    # Undersampled draws (pixel coarser than λ/(4NA)) are part of the space.
    assert any(y.um_per_px > 0.55 / (4 * x.na) * 1.5 for x, y in zip(o, c, strict=True))
    assert {_protocol_of(p) for p in d} == {q.name for q in S.protocols}


def test_stain_fields_spread_independently_about_the_protocol_centre():
    """Per field, the log deviation from the protocol centre has σ ≈ spread x 0.955 (a normal truncated at
    2.5 σ); with 500 draws the SD estimate has ~3 % relative error, so ±15 % is a 5-sigma bound.
    Fields are independent: |r| between deviations < 0.15 (SE of r with 500 draws ≈ 0.045)."""
    d = _draws()
    protos = {q.name: q for q in S.protocols}
    dev = {}
    for key in STAIN_FIELDS:
        vals = []
        for p in d:
            v, centre = getattr(p.stain, key), getattr(protos[_protocol_of(p)], key)
            vals.append(v - centre if key == "ph_balance" else math.log(v / centre))
        dev[key] = np.array(vals)
        expected = getattr(S.stain_spread, key) * 0.955
        assert abs(dev[key].std() / expected - 1.0) < 0.15, (key, dev[key].std(), expected)
        assert abs(dev[key].mean()) < 4 * expected / math.sqrt(N_DRAWS)  # centred on the protocol
    for a in STAIN_FIELDS:
        for b in STAIN_FIELDS:
            if a < b:
                assert abs(np.corrcoef(dev[a], dev[b])[0, 1]) < 0.15, (a, b)


def test_protocol_centres_are_qualitatively_right():
    """Rapid stains: paler nuclei, less azure, pinker; Wright: a slightly more acidic buffer than MGG."""
    p = {q.name: q for q in S.protocols}
    mgg, rapid, wright = p["May-Grunwald-Giemsa"], p["rapid Romanowsky"], p["Wright"]
    assert {"May-Grunwald-Giemsa", "Wright", "Wright-Giemsa", "Leishman", "rapid Romanowsky"} == set(p)
    assert rapid.purple < mgg.purple and rapid.azure_b < mgg.azure_b and rapid.eosin > mgg.eosin
    assert rapid.ph_balance < 0.0 and wright.ph_balance <= mgg.ph_balance
    # The spread (2.5 σ) is wider than the distance between centres: protocols overlap, as labs do.
    for key in ("purple", "azure_b", "eosin"):
        centres = [math.log(getattr(q, key)) for q in S.protocols]
        assert max(centres) - min(centres) < 2.5 * getattr(S.stain_spread, key)


def test_same_seed_same_profiles_and_zoom():
    a = [S.sample(np.random.default_rng(5)) for _ in range(3)]
    b = [S.sample(np.random.default_rng(5)) for _ in range(3)]
    assert a == b
    assert S.sample(np.random.default_rng(6)) != a[0]
    z = np.array([S.sample_zoom(np.random.default_rng(i)) for i in range(300)])
    assert np.all((z >= S.zoom[0]) & (z <= S.zoom[1]))
    _assert_covers(z, S.zoom, 0.05, "zoom")
    with pytest.raises(InputError):
        S.sample(np.random.default_rng(0).integers)  # not a Generator


# -- persistence and validation -------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_round_trip(tmp_path, suffix):
    narrow = ScannerSpace(name="narrow", um_per_px=(0.2, 0.3), gamma=(2.0, 2.2), p_jpeg=0.0)
    for space in (S, narrow):
        back = ScannerSpace.load(space.save(tmp_path / f"{space.name}{suffix}"))
        assert back == space
        assert back.sample(np.random.default_rng(3)) == space.sample(np.random.default_rng(3))
    assert ScannerSpace.from_dict(S.to_dict()) == S
    prof = S.sample(np.random.default_rng(1))
    assert ScannerProfile.load(prof.save(tmp_path / f"p{suffix}")) == prof


def test_invalid_spaces_are_refused_with_the_field_named():
    d = S.to_dict()
    with pytest.raises(InputError, match="gamma"):
        ScannerSpace.from_dict({**d, "gamma": [2.4, 1.8]})
    with pytest.raises(InputError, match="colour"):
        ScannerSpace.from_dict({**d, "colour": 1})  # extra="forbid"
    with pytest.raises(InputError, match="objectives"):
        bad = [dict(o) for o in d["objectives"]]
        bad[0]["na"] = [1.3, 1.6]  # NA above the oil's index
        ScannerSpace.from_dict({**d, "objectives": bad})
    with pytest.raises(InputError, match="um_per_px") as err:
        ScannerSpace.from_dict({**d, "um_per_px": [0.05, 0.5]})  # no objective class for 0.05 µm/px
    assert err.value.where.endswith("um_per_px")
    with pytest.raises(InputError, match="key"):
        S.protocol_range("hematoxylin")


def test_report_lists_every_parameter():
    text = scanner_space_report()
    for name in ScannerSpace.model_fields:
        if name not in ("name", "description", "objectives", "protocols", "stain_spread"):
            assert f"| {name} |" in text, name
    for q in S.protocols:
        assert q.name in text
    for k in S.objectives:
        assert k.name in text
    for key in STAIN_FIELDS:
        assert f"stain.{key}" in text
    assert all(row["source"] for row in S.describe())  # every range has its justification


# -- the re-imager over the space --------------------------------------------------------------------
@lru_cache(maxsize=1)
def _cell() -> np.ndarray:
    d = load_profile("analyzer-100x").to_dict()
    d["processing"]["jpeg_quality"] = None
    return render_cell("NGS", ScannerProfile.from_dict(d), size_px=96, seed=0).image


@lru_cache(maxsize=1)
def _basis() -> StainBasis:
    return StainBasis()


def _hf_fraction(img: np.ndarray) -> float:
    """Share of the grey image's (mean-removed) spectral power in 0.1-0.25 cycles/px (1-2.5 cycles/µm here)."""
    g = img.astype(float).mean(axis=2)
    f = np.abs(np.fft.fft2(g - g.mean())) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(g.shape[0]), np.fft.fftfreq(g.shape[1]), indexing="ij")
    r = np.hypot(fy, fx)
    return float(f[(r > 0.1) & (r <= 0.25)].sum() / f.sum())


def test_space_reimager_shape_determinism_and_pixel_size():
    img = _cell()
    eng = SpaceReImager(_basis(), pool_size=3, pool_seed=1)
    x1 = eng(img, 0.1, np.random.default_rng(7))
    x2 = eng(img, 0.1, np.random.default_rng(7))
    x3 = eng(img, 0.1, np.random.default_rng(8))
    assert x1.shape == img.shape and x1.dtype == np.uint8
    np.testing.assert_array_equal(x1, x2)
    assert np.abs(x1.astype(int) - x3.astype(int)).mean() > 1.0
    assert eng(img, 0.1, np.random.default_rng(7), zoom=1.1).shape == img.shape
    fixed = SpaceReImager(_basis(), pool_size=2, out_um_per_px=0.2, out_size=40)
    assert fixed(img, 0.1, np.random.default_rng(0)).shape == (40, 40, 3)
    exact = SpaceReImager(_basis(), pool_size=None)
    assert exact(img, 0.1, np.random.default_rng(1)).shape == img.shape

    # Output pixel size follows the draw: on the caller's 0.1 µm grid a 0.45-0.5 µm/px scanner
    # (Nyquist ~1 cycle/µm = 0.1 cycle/px here) leaves only interpolation leakage in 0.1-0.25
    # cycles/px, a 0.07-0.08 µm/px one keeps cell edges and granules there. Measured over three
    # pool seeds: fine 0.016-0.020, coarse 0.0027-0.0039 (source 0.060: optics act twice, and
    # defocus up to 1 DOF); a factor 2.5 leaves room.
    coarse = SpaceReImager(_basis(), ScannerSpace(um_per_px=(0.45, 0.5)), pool_size=2)
    fine = SpaceReImager(_basis(), ScannerSpace(um_per_px=(0.07, 0.08)), pool_size=2)
    rng = np.random.default_rng(3)
    hf_coarse = np.mean([_hf_fraction(coarse(img, 0.1, rng)) for _ in range(3)])
    hf_fine = np.mean([_hf_fraction(fine(img, 0.1, rng)) for _ in range(3)])
    assert hf_coarse * 2.5 < hf_fine, (hf_coarse, hf_fine)


def test_space_reimager_pools_hardware_and_draws_stain_per_call():
    eng = SpaceReImager(_basis(), pool_size=2, pool_seed=4)
    rng = np.random.default_rng(0)
    drawn = [eng.draw_profile(rng) for _ in range(12)]
    hardware = {(p.optics, p.camera, p.illuminant) for p in eng.pool}
    assert all((p.optics, p.camera, p.illuminant) in hardware for p in drawn)
    assert len({p.stain for p in drawn}) == len(drawn)  # fresh stain each call
    assert len({p.processing.gamma for p in drawn}) == len(drawn)


def test_space_reimager_pickles_and_refuses_bad_options():
    img = _cell()
    eng = SpaceReImager(_basis(), pool_size=2)
    back = pickle.loads(pickle.dumps(eng))
    assert back.pool == eng.pool and back.space == eng.space
    np.testing.assert_array_equal(back(img, 0.1, np.random.default_rng(2)), eng(img, 0.1, np.random.default_rng(2)))
    with pytest.raises(InputError, match="pool_size"):
        SpaceReImager(_basis(), pool_size=0)
    with pytest.raises(InputError, match="space"):
        SpaceReImager(_basis(), space="wide")
    with pytest.raises(InputError, match="basis"):
        SpaceReImager(None)
