"""Colour camera: pixel integration, Bayer + demosaicing, Poisson–Gaussian noise, ADC, JPEG."""

from __future__ import annotations

import numpy as np
import pytest

from hemotwin.errors import InputError
from hemotwin.twin import camera as cam

DEMOSAIC = {"bilinear": cam.demosaic_bilinear, "malvar": cam.demosaic_malvar}


def _constant(shape, rgb=(0.8, 0.45, 0.3)):
    return np.broadcast_to(np.asarray(rgb, np.float32)[:, None, None], (3, *shape)).copy()


def _smooth(shape):
    """A smooth colour field: slow, different gradients per channel (periods > 40 px)."""
    h, w = shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r = 0.5 + 0.3 * np.sin(2 * np.pi * x / 97.0) * np.cos(2 * np.pi * y / 131.0)
    g = 0.2 + 0.6 * (x + y) / (h + w)
    b = 0.6 - 0.2 * np.cos(2 * np.pi * (x - 2 * y) / 173.0)
    return np.stack([r, g, b]).astype(np.float32)


def test_bayer_mosaic_rggb_sites():
    img = np.stack([np.full((4, 6), v, np.float32) for v in (1.0, 2.0, 3.0)])
    m = cam.bayer_mosaic(img)
    np.testing.assert_array_equal(m[0::2, 0::2], 1.0)  # R
    np.testing.assert_array_equal(m[0::2, 1::2], 2.0)  # G in R rows
    np.testing.assert_array_equal(m[1::2, 0::2], 2.0)  # G in B rows
    np.testing.assert_array_equal(m[1::2, 1::2], 3.0)  # B
    np.testing.assert_array_equal(cam.channel_index((4, 6))[:2, :2], [[0, 1], [1, 2]])


@pytest.mark.parametrize("method", sorted(DEMOSAIC))
@pytest.mark.parametrize("shape", [(32, 48), (33, 47)])
def test_demosaic_constant_colour_exact(method, shape):
    img = _constant(shape)
    out = DEMOSAIC[method](cam.bayer_mosaic(img))
    assert out.shape == (3, *shape)
    # Kernels sum to 1 and mirror padding keeps the Bayer phase, so a flat colour is reproduced
    # everywhere, borders included; the only error is float32 summation of ≤ 13 taps (1e-6).
    np.testing.assert_allclose(out, img, atol=2e-6)
    assert (img == _constant(shape)).all()  # input not modified


@pytest.mark.parametrize("method", sorted(DEMOSAIC))
def test_demosaic_smooth_gradient(method):
    img = _smooth((96, 128))
    out = DEMOSAIC[method](cam.bayer_mosaic(img))
    inner = (slice(None), slice(4, -4), slice(4, -4))
    err = np.abs(out - img)[inner]
    # Interpolation error of a linear (bilinear) or gradient-corrected (Malvar) kernel on a
    # field whose second derivative is ≤ 0.3·(2π/97)² ≈ 1.3e-3 per px² over a ≤ 2 px stencil:
    # ≤ ~3e-3; tolerance 5e-3 max, and a mean error below 1e-3.
    assert err.max() < 5e-3
    assert err.mean() < 1e-3
    # Borders (mirror padding of a slope) are worse but still small.
    assert np.abs(out - img).max() < 0.05


def test_malvar_better_than_bilinear_on_edges():
    # Malvar's gradient correction is the reason it exists: on a sharp luminance edge it must
    # beat bilinear (Malvar et al. 2004 report ~5 dB better PSNR on natural images).
    img = _constant((64, 64), (0.2, 0.2, 0.2))
    img[:, :, 31:] = 0.8
    mos = cam.bayer_mosaic(img)
    e_bil = np.mean((cam.demosaic_bilinear(mos) - img) ** 2)
    e_mal = np.mean((cam.demosaic_malvar(mos) - img) ** 2)
    assert e_mal < e_bil


@pytest.mark.parametrize("factor", [1, 2, 3, 4])
def test_integrate_pixels_conserves_mean(factor):
    rng = np.random.default_rng(0)
    img = rng.random((3, 12 * factor, 8 * factor), dtype=np.float32)
    out = cam.integrate_pixels(img, factor)
    assert out.shape == (3, 12, 8)
    # box means of float32 data: mean preserved to float32 round-off (1e-6 relative).
    np.testing.assert_allclose(out.mean(axis=(1, 2)), img.mean(axis=(1, 2)), rtol=1e-5)
    # a block's value is the mean of exactly its factor x factor fine pixels
    assert out[1, 2, 3] == pytest.approx(
        img[1, 2 * factor : 3 * factor, 3 * factor : 4 * factor].mean(), rel=1e-5
    )
    with pytest.raises(InputError):
        cam.integrate_pixels(np.zeros((3, 7, 8), np.float32), 2)


@pytest.mark.parametrize(
    "full_well,bits,read",
    [(10000.0, 12, 5.0), (4000.0, 10, 12.0), (15000.0, 14, 3.0)],
)
def test_raw_noise_model_matches_simulation(full_well, bits, read):
    """var(DN) = a·E[DN] + b: fit it by least squares on simulated flat patches."""
    a_true, b_true = cam.raw_noise_model(full_well_e=full_well, adc_bits=bits, read_noise_e=read)
    rng = np.random.default_rng(1234)
    n = 200_000  # pixels per flat patch
    # Exposure levels (fraction of full well) from near the read-noise floor to 80 % of full well.
    # The lowest, 50 + 10·read electrons, is ≥ 5σ above the clip at 0 (σ = √(e + read²)), and
    # 80 % is ≥ 5σ below full well: neither clip biases the variances.
    e_min = 50.0 + 10.0 * read
    levels = np.geomspace(e_min / full_well, 0.8, 10)
    means, variances = [], []
    for lv in levels:
        e = np.full(n, lv * full_well, np.float32)
        dn = cam.quantize(cam.add_sensor_noise(e, rng, read_noise_e=read), full_well_e=full_well, adc_bits=bits)
        means.append(dn.mean(dtype=np.float64))
        variances.append(dn.var(ddof=1, dtype=np.float64))
    means, variances = np.array(means), np.array(variances)

    # Sampling error of each variance estimate (Gaussian data): var(s²) = 2σ⁴/(n−1), evaluated at
    # the model variance. Weighted least squares with those weights; its covariance (XᵀWX)⁻¹
    # gives the standard errors of the slope and intercept.
    model_var = a_true * means + b_true
    wts = (n - 1) / (2 * model_var**2)
    x = np.stack([means, np.ones_like(means)], axis=1)
    xtwx = x.T @ (wts[:, None] * x)
    a_fit, b_fit = np.linalg.solve(xtwx, x.T @ (wts * variances))
    sd_a, sd_b = np.sqrt(np.diag(np.linalg.inv(xtwx)))
    # 5 standard errors: a false alarm probability < 1e-6 per parameter; the 1/12 quantisation
    # term in b is exact only when σ_DN ≳ 1 (Sheppard), true here (σ_DN ≥ 2 at every level).
    assert abs(a_fit - a_true) < 5 * sd_a, (a_fit, a_true, sd_a)
    assert abs(b_fit - b_true) < 5 * sd_b, (b_fit, b_true, sd_b)
    # the fit is informative: b is resolved to better than 25 % of its value
    assert 5 * sd_b < 0.25 * b_true
    # and the means are unbiased: E[DN] = gain·electrons; rounding and σ/√n give < 2e-3 relative
    # at the lowest level (≥ 25 DN).
    np.testing.assert_allclose(means, a_true * levels * full_well, rtol=2e-3)


def test_add_sensor_noise_low_signal_is_poisson():
    rng = np.random.default_rng(5)
    e = np.full(400_000, 20.0, np.float32)  # below the Gaussian switch: exact Poisson + read
    out = cam.add_sensor_noise(e, rng, read_noise_e=0.0)
    assert np.allclose(out, np.round(out))  # integer photo-electrons without read noise
    # mean and variance 20 each; standard errors 0.007 and 0.045 -> 5σ tolerances.
    assert out.mean() == pytest.approx(20.0, abs=0.035)
    assert out.var() == pytest.approx(20.0, abs=0.25)
    assert (e == 20.0).all()  # input not modified


def test_full_well_clipping_and_adc_range():
    rng = np.random.default_rng(0)
    fw, bits = 5000.0, 10
    e = np.full((64, 64), 1.3 * fw, np.float32)  # 30 % over full well: 60σ above the clip
    dn = cam.quantize(cam.add_sensor_noise(e, rng, read_noise_e=5.0), full_well_e=fw, adc_bits=bits)
    assert (dn == 2**bits - 1).all()
    # negatives clip to 0, integers only, never above the top code
    q = cam.quantize(np.array([-50.0, 0.4, 1e9], np.float32), full_well_e=fw, adc_bits=bits)
    np.testing.assert_array_equal(q, [0.0, 0.0, 2**bits - 1])
    mid = cam.quantize(np.linspace(0, fw, 1001, dtype=np.float32), full_well_e=fw, adc_bits=bits)
    assert np.array_equal(mid, np.round(mid)) and np.all(np.diff(mid) >= 0)


def test_gamma_and_uint8():
    lin = np.array([0.0, 0.88, 1.0, 1.5, -0.1], np.float32)
    enc = cam.encode_gamma(lin, 2.2)
    np.testing.assert_allclose(enc, [0.0, 0.88 ** (1 / 2.2), 1.0, 1.0, 0.0], rtol=1e-6)
    np.testing.assert_array_equal(cam.to_uint8(enc), [0, round(255 * 0.88 ** (1 / 2.2)), 255, 255, 0])


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / mse)


def test_jpeg_roundtrip_smooth_image():
    img = cam.to_uint8(_smooth((96, 128)).transpose(1, 2, 0))
    out = cam.jpeg_roundtrip(img, 90)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert not np.array_equal(out, img)  # lossy: it does change the image
    # q=90 on a smooth image: typically > 40 dB; 30 dB is the brief's floor.
    assert _psnr(out, img) > 30.0
    # a lower quality loses more
    assert _psnr(cam.jpeg_roundtrip(img, 30), img) < _psnr(out, img)
    with pytest.raises(InputError):
        cam.jpeg_roundtrip(img, 0)
