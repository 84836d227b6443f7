"""Pupil-function optics against Fourier-optics theory (docs/optics.md §1)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft as sfft

from hemotwin.errors import InputError
from hemotwin.twin import optics
from hemotwin.twin.profiles.model import Optics

SHAPE = (256, 256)
DX = 0.05  # µm/px: Nyquist 10 cycles/µm > the highest cut-off used here (2·1.4/0.4 = 7)

# (na, immersion index, wavelength nm): oil and dry objectives across the visible.
CASES = [(1.4, 1.515, 550.0), (1.4, 1.515, 420.0), (0.8, 1.0, 450.0), (0.95, 1.0, 650.0), (0.5, 1.0, 650.0)]


def _radius_grid(shape=SHAPE, dx=DX):
    fy = sfft.fftfreq(shape[0], d=dx)[:, None]
    fx = sfft.rfftfreq(shape[1], d=dx)[None, :]
    return np.hypot(fy, fx)


def _row_real(otf, shape=SHAPE, dx=DX):
    """Frequencies (+x axis) and the real part of the transfer function along them."""
    return sfft.rfftfreq(shape[1], d=dx), otf[0, :].real


@pytest.mark.parametrize("na,n,lam", CASES)
@pytest.mark.parametrize("defocus", [0.0, 0.5, -1.5])
@pytest.mark.parametrize("sigma", [1.0, 0.6])
def test_psf_sums_to_one(na, n, lam, defocus, sigma):
    op = Optics(na=na, immersion_index=n, condenser_fill=sigma, defocus_um=defocus)
    k = optics.psf(SHAPE, DX, lam, op)
    assert k.shape == SHAPE
    # DC of the OTF is normalised to 1; float32 summation of 65k terms: 1e-5.
    assert float(k.sum(dtype=np.float64)) == pytest.approx(1.0, abs=1e-5)
    # a point image is centred: its maximum sits at the array centre (no chromatic shift here).
    if defocus == 0.0:
        assert np.unravel_index(np.argmax(k), k.shape) == (SHAPE[0] // 2, SHAPE[1] // 2)


@pytest.mark.parametrize("na,n,lam", CASES)
def test_incoherent_psf_is_nonnegative(na, n, lam):
    # σ = 1: the PSF is |amplitude PSF|², non-negative up to numerical error: the transfer
    # function is linearly interpolated from a radial profile (96 samples per pupil radius),
    # which leaves ringing below 1e-5 of the peak (measured ~5e-6).
    k = optics.psf(SHAPE, DX, lam, Optics(na=na, immersion_index=n, condenser_fill=1.0, defocus_um=0.3))
    assert k.min() >= -1e-5 * k.max()


@pytest.mark.parametrize("na,n,lam", CASES)
def test_incoherent_cutoff_is_2na_over_lambda(na, n, lam):
    op = Optics(na=na, immersion_index=n, condenser_fill=1.0)
    otf = optics.transfer_function(SHAPE, DX, lam, op)
    fc = 2.0 * na / (lam * 1e-3)
    assert optics.cutoff_frequency(op, lam) == pytest.approx(fc)
    r = _radius_grid()
    # Beyond 1.05 fc nothing passes at all (exactly zero up to FFT round-off).
    assert np.abs(otf[r > 1.05 * fc]).max() < 1e-6
    # Just below, at 0.9 fc, the analytic MTF is 0.037: clearly non-zero (> 0.01).
    assert optics.mtf_radial(otf, SHAPE, DX, np.array([0.9 * fc]))[0] > 0.01


@pytest.mark.parametrize("na,n,lam", CASES)
def test_incoherent_mtf_matches_analytic(na, n, lam):
    op = Optics(na=na, immersion_index=n, condenser_fill=1.0)
    otf = optics.transfer_function(SHAPE, DX, lam, op)
    fc = 2.0 * na / (lam * 1e-3)
    nu = np.array([0.1, 0.25, 0.5, 0.75, 0.9])
    analytic = (2 / np.pi) * (np.arccos(nu) - nu * np.sqrt(1 - nu**2))
    got = optics.mtf_radial(otf, SHAPE, DX, nu * fc)
    # The pupil is a digitised disc of radius NA/λ / Δf ≥ 10 samples here (0.5/0.65 µm⁻¹ over
    # 1/(256·0.05) µm⁻¹); its autocorrelation deviates from the continuous one by ~1/R² in area
    # terms, measured ≤ 0.012 for R = 10 and ≤ 0.002 for R ≥ 30: tolerance 0.02.
    np.testing.assert_allclose(got, analytic, atol=0.02)


@pytest.mark.parametrize("sigma", [0.3, 0.5, 0.8])
@pytest.mark.parametrize("na,n,lam", [(1.4, 1.515, 550.0), (0.8, 1.0, 450.0)])
def test_partially_coherent_cutoff(sigma, na, n, lam):
    op = Optics(na=na, immersion_index=n, condenser_fill=sigma)
    fc = (1.0 + sigma) * na / (lam * 1e-3)
    assert optics.cutoff_frequency(op, lam) == pytest.approx(fc)
    otf = optics.transfer_function(SHAPE, DX, lam, op)
    r = _radius_grid()
    assert np.abs(otf[r > 1.05 * fc]).max() < 1e-6
    assert optics.mtf_radial(otf, SHAPE, DX, np.array([0.9 * fc]))[0] > 1e-3
    # and it is not the incoherent cut-off: 2NA/λ is well beyond (1+σ)NA/λ for σ ≤ 0.8.
    assert fc < 0.95 * 2 * na / (lam * 1e-3)
    # A stopped-down condenser keeps more mid-frequency contrast than the incoherent limit.
    inc = optics.transfer_function(SHAPE, DX, lam, Optics(na=na, immersion_index=n, condenser_fill=1.0))
    f_mid = np.array([0.3 * na / (lam * 1e-3)])
    assert optics.mtf_radial(otf, SHAPE, DX, f_mid)[0] > optics.mtf_radial(inc, SHAPE, DX, f_mid)[0]


@pytest.mark.parametrize("na,n", [(1.4, 1.515), (0.8, 1.0), (0.95, 1.0)])
@pytest.mark.parametrize("sigma", [1.0, 0.7])
def test_defocus_lowers_midfrequency_mtf_monotonically(na, n, sigma):
    lam = 550.0
    means = []
    for dz in (0.0, 0.2, 0.4, 0.8):
        op = Optics(na=na, immersion_index=n, condenser_fill=sigma, defocus_um=dz)
        otf = optics.transfer_function(SHAPE, DX, lam, op)
        f, h = _row_real(otf)
        fc = optics.cutoff_frequency(op, lam)
        band = (f >= 0.25 * fc) & (f <= 0.5 * fc)
        means.append(h[band].mean())
    means = np.array(means)
    # strictly decreasing, by more than the 1e-3 FFT/discretisation noise of a band mean.
    assert np.all(np.diff(means) < -1e-3), means
    # and defocus is symmetric for an aberration-free pupil: ±dz give the same transfer function.
    plus, minus = (
        optics.transfer_function(SHAPE, DX, lam, Optics(na=na, immersion_index=n, condenser_fill=sigma, defocus_um=dz))
        for dz in (0.4, -0.4)
    )
    np.testing.assert_allclose(plus, minus, atol=1e-5)


def _centroid_um(k: np.ndarray, dx: float) -> tuple[float, float]:
    """Centroid of the PSF core (weights max(k − 0.2·peak, 0)) relative to the array centre.

    The Airy intensity tail falls as 1/r³, so ~1 % of the energy lies outside a 6 µm window and a
    plain centroid over a periodic window is biased by the wrapped tail; the core above 20 % of
    the peak is symmetric about the image point and its weights go continuously to zero.
    """
    yy, xx = np.mgrid[0 : k.shape[0], 0 : k.shape[1]]
    w = np.clip(k.astype(np.float64) - 0.2 * float(k.max()), 0.0, None)
    cy = (w * yy).sum() / w.sum() - k.shape[0] // 2
    cx = (w * xx).sum() / w.sum() - k.shape[1] // 2
    return cy * dx, cx * dx


@pytest.mark.parametrize("angle", [0.0, 30.0, 90.0])
def test_lateral_chromatic_shift_moves_point_image(angle):
    lat = 0.6  # µm between 400 and 700 nm
    op = Optics(na=0.8, immersion_index=1.0, condenser_fill=1.0, lateral_chromatic_um=lat,
                lateral_chromatic_angle_deg=angle)
    ang = np.deg2rad(angle)
    for lam in (400.0, 550.0, 700.0):
        k = optics.psf(SHAPE, DX, lam, op)
        cy, cx = _centroid_um(k, DX)
        mag = lat * (lam - 550.0) / 300.0  # ±0.3 µm at the ends, 0 at the 550 nm reference
        # The core centroid of a well-sampled (Airy radius ≥ 6 px) PSF follows a sub-pixel shift
        # to ~1/50 px; 0.005 µm (1/10 px) leaves margin.
        assert cy == pytest.approx(mag * np.sin(ang), abs=5e-3)
        assert cx == pytest.approx(mag * np.cos(ang), abs=5e-3)
    # the documented meaning: the image shift difference between 700 and 400 nm is lateral_chromatic_um
    d700 = np.hypot(*_centroid_um(optics.psf(SHAPE, DX, 700.0, op), DX))
    d400 = np.hypot(*_centroid_um(optics.psf(SHAPE, DX, 400.0, op), DX))
    assert d700 + d400 == pytest.approx(lat, abs=1e-2)  # two centroids at 5e-3 each


def test_axial_chromatic_changes_focus_per_wavelength():
    axial = 1.0  # µm focus difference 700 vs 400 nm
    na, n = 0.8, 1.0
    dzs = np.round(np.arange(-1.0, 1.0001, 0.05), 3)
    for lam in (400.0, 550.0, 700.0):
        scores = []
        for dz in dzs:
            op = Optics(na=na, immersion_index=n, condenser_fill=1.0, defocus_um=dz, axial_chromatic_um=axial)
            otf = optics.transfer_function(SHAPE, DX, lam, op)
            f, h = _row_real(otf)
            fc = optics.cutoff_frequency(op, lam)
            scores.append(h[(f >= 0.2 * fc) & (f <= 0.5 * fc)].mean())
        best = dzs[int(np.argmax(scores))]
        # Nominal defocus that brings this wavelength to focus cancels its chromatic focus
        # shift axial·(λ−550)/300; resolution: the 0.05 µm scan step.
        expected = -axial * (lam - 550.0) / 300.0
        assert best == pytest.approx(expected, abs=0.05 + 1e-9), (lam, best)
    # and the band defocus helper says the same.
    op = Optics(na=na, immersion_index=n, axial_chromatic_um=axial)
    assert optics.band_defocus_um(op, 700.0) - optics.band_defocus_um(op, 400.0) == pytest.approx(axial)


def test_axial_chromatic_equals_explicit_defocus_at_700nm():
    a = optics.transfer_function(SHAPE, DX, 700.0, Optics(na=0.95, immersion_index=1.0, axial_chromatic_um=0.8))
    b = optics.transfer_function(SHAPE, DX, 700.0, Optics(na=0.95, immersion_index=1.0, defocus_um=0.4))
    np.testing.assert_allclose(a, b, atol=1e-6)  # the same computation: float32 round-off only


@pytest.mark.parametrize("strength", [0.0, 0.1, 0.45])
@pytest.mark.parametrize("shape", [(255, 255), (200, 300)])
def test_vignetting_map(strength, shape):
    v = optics.vignetting_map(shape, strength)
    assert v.shape == shape
    h, w = shape
    centre = v[(h - 1) // 2 : h // 2 + 1, (w - 1) // 2 : w // 2 + 1]
    # Centre pixel(s) lie within one pixel of the optical axis: 1 − v·O(1/n²) ≈ 1 (1e-4 here).
    np.testing.assert_allclose(centre, 1.0, atol=1e-4)
    # Corner pixel centres are half a pixel inside the field corner, where the quadratic
    # fall-off reaches 1 − v: relative radius² (1 − 1/n)² -> error ≤ 2v/n.
    tol = 2 * strength / min(h, w) + 1e-6
    for corner in (v[0, 0], v[0, -1], v[-1, 0], v[-1, -1]):
        assert corner == pytest.approx(1.0 - strength, abs=tol)
    assert v.max() <= 1.0 + 1e-7 and v.min() >= 1.0 - strength - 1e-6
    # monotone fall-off along the diagonal from the centre.
    diag = np.array([v[i, round(i * (w - 1) / (h - 1))] for i in range(h // 2 + 1)])
    assert np.all(np.diff(diag) >= -1e-7)


def test_optics_bad_input():
    with pytest.raises(InputError):
        optics.vignetting_map((10, 10), 1.0)
    with pytest.raises(InputError):
        optics.transfer_function(SHAPE, -0.1, 550.0, Optics())
    with pytest.raises(InputError):
        optics.transfer_function(SHAPE, DX, 50.0, Optics())
