"""The whole imaging chain on absorber maps built here: background, Beer–Lambert, order of
operations, pixel-size bookkeeping, determinism, ground truth, profile neighbours, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from hemotwin.errors import InputError
from hemotwin.twin import optics as opt
from hemotwin.twin.profiles import ScannerProfile, list_presets, load_profile, randomize
from hemotwin.twin.render import color_matrix, optical_image, render
from hemotwin.twin.specimen.maps import ABSORBERS, AbsorberMaps, Compartment

PRESETS = list_presets()


def _modified(profile: ScannerProfile, **sections) -> ScannerProfile:
    """A copy of ``profile`` with some fields of some sections replaced (validated)."""
    d = profile.to_dict()
    for section, fields in sections.items():
        d[section].update(fields)
    return ScannerProfile.from_dict(d)


def _empty_maps(shape: tuple[int, int], um_per_px: float) -> AbsorberMaps:
    return AbsorberMaps(
        np.zeros((len(ABSORBERS), *shape), np.float32),
        np.zeros(shape, np.int32),
        np.zeros(shape, np.uint8),
        um_per_px,
    )


def _disc_maps(diameter_um=7.5, field_um=20.0, um_per_px=0.05, absorber="purple", amount=1.0) -> AbsorberMaps:
    n = round(field_um / um_per_px)
    yy, xx = (np.mgrid[0:n, 0:n] + 0.5) * um_per_px
    c = field_um / 2
    disc = (yy - c) ** 2 + (xx - c) ** 2 <= (diameter_um / 2) ** 2
    ab = np.zeros((len(ABSORBERS), n, n), np.float32)
    ab[ABSORBERS.index(absorber)][disc] = amount
    comp = (disc * int(Compartment.NUCLEUS)).astype(np.uint8)
    return AbsorberMaps(ab, disc.astype(np.int32), comp, um_per_px, {1: disc})


# --- (1) clear glass renders to the white-balanced background --------------------------------


def _background_tolerance(profile: ScannerProfile, n_px: int, expected_lin: np.ndarray) -> np.ndarray:
    """5 standard errors of a centre-region mean of clear glass, per output channel, in uint8 DN.

    Raw channel k holds e = exposure·full_well·w_k electrons with σ = √(e + read²) (+ ADC 1/12
    DN², negligible); after demosaicing a channel's mean over n_px pixels rests on ≥ n_px/4
    independent photosites. The processing matrix mixes raw channels (|row| sums bound the
    noise), and gamma scales by (1/γ)·L^(1/γ−1). Add 0.5 for rounding the expected value, and
    the clipping bias where the glass sits at full scale.
    """
    from hemotwin.twin.render import processing_matrix  # present in the module under test

    cam_ = profile.camera
    signal = cam_.exposure * cam_.full_well_e
    m = processing_matrix(profile).astype(np.float64)
    # raw linear signal of clear glass per channel (= processing input), from the inverse map
    raw = np.linalg.solve(m, expected_lin)
    sigma_raw = np.sqrt(np.clip(raw, 0, None) * signal + cam_.read_noise_e**2) / signal
    sigma_px = np.abs(m) @ sigma_raw  # one photosite's noise in output linear units (upper bound)
    sigma_lin = sigma_px / np.sqrt(n_px / 4)
    g = profile.processing.gamma
    slope = (1 / g) * np.clip(expected_lin, 1e-3, 1.0) ** (1 / g - 1)
    tol = 0.5 + 5 * 255 * slope * sigma_lin
    # A channel at or above full scale is clipped: the mean of min(X, 1) sits below 1 by at most
    # σ/√(2π) (exactly that when E[X] = 1). Allow it where the glass is within 3σ of the clip.
    near_clip = expected_lin > 1.0 - 3 * sigma_px
    return tol + near_clip * 255 * slope * sigma_px / np.sqrt(2 * np.pi)


@pytest.mark.parametrize("preset", PRESETS)
def test_clear_glass_is_neutral_background(preset):
    base = load_profile(preset)
    p = _modified(
        base,
        optics={"vignetting": 0.0},
        processing={"jpeg_quality": None, "white_balance": "auto", "wb_error": [1.0, 1.0, 1.0]},
    )
    fine = p.camera.um_per_px / p.camera.oversample
    size = 96 * p.camera.oversample
    r = render(_empty_maps((size, size), fine), p, seed=3)
    centre = r.image[24:72, 24:72].reshape(-1, 3).astype(np.float64)
    mean = centre.mean(axis=0)
    bg = p.processing.background_level
    expected = round(255 * bg ** (1 / p.processing.gamma))
    # every preset's colour matrix maps grey to grey (rows sum to 1): the background is neutral.
    lin = color_matrix(p) @ np.full(3, bg)
    tol = _background_tolerance(p, centre.shape[0], lin)
    np.testing.assert_array_less(np.abs(mean - expected), tol)
    assert np.ptp(mean) < 2 * tol.max()  # channels neutral


@pytest.mark.parametrize("preset", PRESETS)
def test_clear_glass_as_shipped(preset):
    """As shipped (casts included: wb_error, reference white balance), minus vignetting/JPEG."""
    from hemotwin.twin.render import expected_background, processing_matrix

    p = _modified(load_profile(preset), optics={"vignetting": 0.0}, processing={"jpeg_quality": None})
    fine = p.camera.um_per_px / p.camera.oversample
    size = 96 * p.camera.oversample
    r = render(_empty_maps((size, size), fine), p, seed=4, keep_raw=True)
    centre = r.image[24:72, 24:72].reshape(-1, 3).astype(np.float64)
    exp_u8 = expected_background(p).astype(np.float64)
    lin = processing_matrix(p).astype(np.float64) @ r.linear[:, 48, 48].astype(np.float64)
    tol = _background_tolerance(p, centre.shape[0], np.clip(lin, 0, 1))
    np.testing.assert_array_less(np.abs(centre.mean(axis=0) - exp_u8), tol)
    if p.processing.white_balance == "auto":
        # independent check: auto WB maps clear glass to background_level·M·wb_error
        indep = color_matrix(p) @ (
            p.processing.background_level * np.asarray(p.processing.wb_error, float)
        )
        np.testing.assert_allclose(lin, indep, rtol=1e-5)  # float32 chain


# --- (2) optical density is linear in amount for one band --------------------------------------


def _single_band(profile: ScannerProfile, lo=400.0, hi=700.0) -> ScannerProfile:
    return _modified(profile, spectral={"n_bands": 1, "psf_groups": 1, "lo_nm": lo, "hi_nm": hi})


def _slab_od(profile: ScannerProfile, absorber: str, amounts, shape=(24, 24), um=0.05) -> np.ndarray:
    j = ABSORBERS.index(absorber)
    bg = optical_image(np.zeros((len(ABSORBERS), *shape), np.float32), profile, um_per_px=um)
    ods = []
    for a in amounts:
        ab = np.zeros((len(ABSORBERS), *shape), np.float32)
        ab[j] = a
        lin = optical_image(ab, profile, um_per_px=um)
        # −log10 of the channel-summed signal relative to clear glass, centre pixel region
        ods.append(-np.log10(lin[:, 8:16, 8:16].sum(axis=0).mean() / bg[:, 8:16, 8:16].sum(axis=0).mean()))
    return np.array(ods)


@pytest.mark.parametrize("absorber", ABSORBERS)
def test_single_band_od_linear_in_amount(absorber):
    from hemotwin.twin.spectra import absorber_spectrum, wavelength_grid

    p = _single_band(load_profile("wsi-40x"))
    amounts = np.array([0.3, 0.6, 0.9])
    od = _slab_od(p, absorber, amounts)
    slope = (od @ amounts) / (amounts @ amounts)  # fit through the origin: OD = ε·c
    resid = od - slope * amounts
    r2 = 1 - (resid @ resid) / ((od - od.mean()) @ (od - od.mean()))
    assert r2 > 0.999
    # the slope is the band-mean extinction of the absorber (float32 chain: 1e-4 relative)
    eps = absorber_spectrum(absorber, wavelength_grid(400.0, 700.0)).mean()
    assert slope == pytest.approx(eps, rel=1e-4)


@pytest.mark.parametrize("absorber", ABSORBERS)
def test_broadband_od_monotone_and_sublinear(absorber):
    # With 16 bands a channel sums 10^(−ε_b c) over bands; −log10 of a sum of exponentials is
    # concave in c (log-sum-exp), so broadband OD is monotone and sub-linear (a physical effect).
    p = load_profile("wsi-40x")
    amounts = np.array([0.3, 0.6, 0.9, 1.2])
    od = _slab_od(p, absorber, amounts)
    assert np.all(np.diff(od) > 0)
    ratio = od / amounts
    assert np.all(np.diff(ratio) < 1e-6)  # OD per unit amount never grows
    assert ratio[-1] < ratio[0]  # and strictly falls over a 4x range


# --- (3) the transmittance, not the optical density, is convolved ------------------------------


def test_edge_blurs_transmittance_not_od():
    # A narrow single band at 550 nm so one PSF applies; oversample 2 -> no pixel aperture in the
    # transfer function; no chromatic terms.
    base = load_profile("analyzer-100x")
    p = _modified(
        _single_band(base, 540.0, 560.0),
        camera={"oversample": 2},
        optics={"lateral_chromatic_um": 0.0, "axial_chromatic_um": 0.0},
    )
    from hemotwin.twin.spectra import absorber_spectrum, wavelength_grid

    um = 0.05
    eps = float(absorber_spectrum("purple", wavelength_grid(540.0, 560.0)).mean())
    h, w = 16, 256
    od = np.zeros((h, w))
    od[:, w // 2 :] = 2.0  # OD 0 | OD 2 at the band: a sharp edge between pixels 127 and 128
    ab = np.zeros((len(ABSORBERS), h, w), np.float32)
    ab[0] = od / eps
    lin = optical_image(ab, p, um_per_px=um)
    bg = optical_image(np.zeros_like(ab), p, um_per_px=um)
    prof = (lin.sum(axis=0) / bg.sum(axis=0)).mean(axis=0).astype(np.float64)

    # Independent reference: line-spread function of the same optics, mirror boundary (= the
    # reflect padding of the renderer), applied to T and to OD.
    k = opt.psf((255, 255), um, 550.0, p.optics).astype(np.float64)
    lsf = k.sum(axis=0)
    t = 10.0 ** (-od[0])
    ref_t = ndi.convolve1d(t, lsf, mode="mirror")
    ref_od = 10.0 ** (-ndi.convolve1d(od[0], lsf, mode="mirror"))
    core = slice(w // 2 - 60, w // 2 + 60)  # ±3 µm around the edge, away from the borders
    # float32 FFTs and the 6 µm truncation of the line-spread tail (< 1 % of its energy, spread
    # over the whole profile): 5e-3 in transmittance; blurring OD instead is off by ~0.1.
    assert np.abs(prof[core] - ref_t[core]).max() < 5e-3
    assert np.abs(ref_od[core] - ref_t[core]).max() > 0.05  # the test can tell them apart
    # The mean over a window symmetric about the edge is the mean of the two transmittances
    # (T − mean is odd about the edge and the PSF is even): exact up to float32 (1e-3).
    win = slice(w // 2 - 40, w // 2 + 40)
    assert prof[win].mean() == pytest.approx((1.0 + 10.0**-2) / 2, abs=1e-3)
    # OD blurring would lose light here (0.015 for this sharp 1.4 NA PSF: 15x the tolerance)
    assert ref_od[win].mean() < prof[win].mean() - 0.01


# --- (4) pixel-size bookkeeping -------------------------------------------------------------


@pytest.mark.parametrize("preset", PRESETS)
def test_disc_diameter_in_um(preset):
    diameter = 7.5
    p = _modified(load_profile(preset), optics={"vignetting": 0.0})
    r = render(_disc_maps(diameter), p, seed=11)
    assert r.um_per_px == p.camera.um_per_px
    n_out = round(20.0 / p.camera.um_per_px)
    assert r.image.shape == (n_out, n_out, 3)
    # Threshold in linear light (undo the display gamma) half-way between the glass and the disc
    # interior: for a blurred edge the 50 % linear level marks the geometric edge.
    g = (r.image[..., 1].astype(np.float64) / 255.0) ** p.processing.gamma
    border = np.concatenate([g[:2].ravel(), g[-2:].ravel(), g[:, :2].ravel(), g[:, -2:].ravel()])
    c = n_out // 2
    inside = np.median(g[c - 2 : c + 2, c - 2 : c + 2])
    mask = g < 0.5 * (np.median(border) + inside)
    lab, _ = ndi.label(mask)
    mask = lab == lab[c, c]
    d_meas = 2 * np.sqrt(mask.sum() / np.pi) * r.um_per_px
    # 5 %: the digitised disc at 0.5 µm/px (15 px across) has a ±1 px perimeter uncertainty,
    # ~3 % in diameter; blur shrinks a 50 %-contour by ~σ²/(2R) < 1 %.
    assert d_meas == pytest.approx(diameter, rel=0.05)


# --- (5) determinism -----------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["analyzer-100x", "phone-40x"])
def test_same_seed_same_bytes(preset):
    p = load_profile(preset)
    maps = _disc_maps(field_um=10.0)
    a = render(maps, p, seed=7)
    b = render(maps, p, seed=7)
    c = render(maps, p, seed=8)
    assert a.image.tobytes() == b.image.tobytes()
    assert a.image.tobytes() != c.image.tobytes()
    assert a.seed == 7


# --- (6) ground truth on the output grid ------------------------------------------------------


@pytest.mark.parametrize("preset", PRESETS)
def test_masks_on_output_grid(preset):
    p = load_profile(preset)
    maps = _disc_maps()
    r = render(maps, p, seed=0)
    assert r.instances.shape == r.image.shape[:2]
    assert r.compartments.shape == r.image.shape[:2]
    assert set(r.wbc_masks) == {1}
    assert r.wbc_masks[1].shape == r.image.shape[:2]
    assert r.instances.dtype == np.int32
    np.testing.assert_array_equal(r.instances > 0, r.wbc_masks[1])
    assert set(np.unique(r.compartments)) == {0, int(Compartment.NUCLEUS)}
    # the mask area in µm² is the disc's (±5 %: digitisation at ≤ 15 px diameter, as above)
    area = r.wbc_masks[1].sum() * r.um_per_px**2
    assert area == pytest.approx(np.pi * 7.5**2 / 4, rel=0.05)


@pytest.mark.parametrize("preset", PRESETS)
def test_masks_registered_with_image(preset):
    # A centred disc: its image (absorbance of the noiseless linear signal) and its mask must
    # share a centroid. Both are symmetric about the field centre when rendered correctly; the
    # digitised mask's centroid is exact by symmetry, so 0.05 camera px is ample.
    p = _modified(load_profile(preset), optics={"vignetting": 0.0, "lateral_chromatic_um": 0.0})
    r = render(_disc_maps(), p, seed=0, keep_raw=True)
    lin = r.linear[1].astype(np.float64)
    w = np.clip(1 - lin / np.median(lin[:3]), 0, None)
    yy, xx = np.mgrid[0 : lin.shape[0], 0 : lin.shape[1]]
    img_c = np.array([(w * yy).sum(), (w * xx).sum()]) / w.sum()
    m = r.instances > 0
    mask_c = np.array([yy[m].mean(), xx[m].mean()])
    # Integer ratios between the 0.05 µm input grid and the render grid are exact to 0.05 px.
    # wsi-20x renders at 0.5/3 µm, a ratio of 3.33: nearest-neighbour resampling then digitises
    # the two edges of the disc differently by up to half a source pixel (~0.09 camera px).
    ratio = p.camera.um_per_px / p.camera.oversample / 0.05
    atol = 0.05 if abs(ratio - round(ratio)) < 1e-9 else 0.1
    np.testing.assert_allclose(mask_c, img_c, atol=atol)


# --- (7) randomize ---------------------------------------------------------------------------


@pytest.mark.parametrize("preset", PRESETS)
def test_randomize_strength_zero_is_same_physics(preset):
    p = load_profile(preset)
    q = randomize(p, np.random.default_rng(0), strength=0.0)
    for section in ("illuminant", "stain", "optics", "camera", "processing", "spectral"):
        assert getattr(q, section) == getattr(p, section), section
    maps = _disc_maps(field_um=10.0)
    assert render(maps, q, seed=5).image.tobytes() == render(maps, p, seed=5).image.tobytes()


@pytest.mark.parametrize("preset", PRESETS)
def test_randomize_strength_one(preset):
    p = load_profile(preset)
    neighbours = [randomize(p, np.random.default_rng(s), strength=1.0) for s in range(6)]
    for q in neighbours:
        ScannerProfile.model_validate(q.to_dict())  # validates
        assert q.to_dict() != p.to_dict()
        assert q.optics.na == p.optics.na  # the objective itself is not randomised
    # different seeds -> different neighbours; same seed -> the same neighbour
    assert len({q.to_json() for q in neighbours}) == len(neighbours)
    again = randomize(p, np.random.default_rng(3), strength=1.0)
    assert again == neighbours[3]
    with pytest.raises(InputError):
        randomize(p, np.random.default_rng(0), strength=-1.0)


# --- (8) bad input and persistence -------------------------------------------------------------


def test_unknown_preset_message():
    with pytest.raises(InputError) as info:
        load_profile("no-such-scanner")
    msg = str(info.value)
    assert "no-such-scanner" in msg
    for name in PRESETS:
        assert name in msg


@pytest.mark.parametrize(
    "section,field,value,names",
    [
        ("optics", "na", 1.6, ["optics", "na"]),  # above the 1.515 immersion index
        ("camera", "um_per_px", -0.1, ["camera.um_per_px"]),
        ("camera", "full_well_e", -5.0, ["camera.full_well_e"]),
        ("optics", "vignetting", 1.5, ["optics.vignetting"]),
        ("camera", "adc_bits", 40, ["camera.adc_bits"]),
        ("processing", "gamma", 0.2, ["processing.gamma"]),
        ("stain", "ph_balance", 3.0, ["stain.ph_balance"]),
        ("spectral", "n_bands", 0, ["spectral.n_bands"]),
    ],
)
def test_bad_profile_fields(section, field, value, names):
    d = load_profile("analyzer-100x").to_dict()
    d[section][field] = value
    with pytest.raises(InputError) as info:
        ScannerProfile.from_dict(d)
    msg = str(info.value)
    for name in names:
        assert name in msg, msg


def test_unknown_field_rejected():
    d = load_profile("wsi-20x").to_dict()
    d["optics"]["focal_length_mm"] = 3.0
    with pytest.raises(InputError, match="focal_length_mm"):
        ScannerProfile.from_dict(d)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_profile_round_trip(preset, suffix, tmp_path):
    p = load_profile(preset)
    path = p.save(tmp_path / f"profile{suffix}")
    q = load_profile(path)
    assert q == p
    assert load_profile(str(path)) == p
    with pytest.raises(InputError):
        load_profile(tmp_path / f"missing{suffix}")
