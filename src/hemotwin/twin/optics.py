"""Bright-field optics: per-band pupil-function transfer functions, PSFs and vignetting.

Model
-----
The objective is a circular pupil of radius ``NA/λ`` (cycles/µm) with the exact high-NA
defocus phase ``dz·(k_z − 2πn/λ)``, a Zernike Z(4,0) spherical-aberration term, axial chromatic
focus shift and a lateral chromatic image shift, all per wavelength.

Bright field is partially coherent. We use the Hopkins **weak-object transfer function**
(WOTF) applied to the transmittance::

    H(f) = Σ_f' S(f') P*(f') P(f' + f) / Σ_f' S(f') |P(f')|²,

where ``S`` is the condenser disc of radius ``σ·NA/λ`` (``σ = condenser_fill``). With
``σ = 1`` this is exactly the autocorrelation of the pupil, i.e. the classical **incoherent OTF**
with cut-off ``2·NA/λ``; with ``σ < 1`` the cut-off is ``(1 + σ)·NA/λ`` and mid frequencies keep
more contrast, as in a real microscope with a stopped-down condenser. Because the specimen is
a pure absorber, only the even (real-PSF) part of ``H`` is kept. This linear model is exact for
weak absorbers; against a full Abbe computation, the incoherent limit errs by 0.01–0.03 RMS in
transmittance (docs/optics.md §1); it is the documented approximation of the twin.

All transfer functions are computed on the FFT grid of the image they filter and cached.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.fft as sfft

from hemotwin.errors import InputError
from hemotwin.twin.profiles.model import Optics

REFERENCE_NM = 550.0  # wavelength at which defocus_um and the chromatic terms are referenced


def band_defocus_um(optics: Optics, wavelength_nm: float) -> float:
    """Defocus at ``wavelength_nm``: nominal plus the linear axial chromatic term."""
    return optics.defocus_um + optics.axial_chromatic_um * (wavelength_nm - REFERENCE_NM) / 300.0


def band_shift_um(optics: Optics, wavelength_nm: float) -> tuple[float, float]:
    """(dy, dx) lateral chromatic image shift at ``wavelength_nm`` relative to 550 nm."""
    mag = optics.lateral_chromatic_um * (wavelength_nm - REFERENCE_NM) / 300.0
    ang = np.deg2rad(optics.lateral_chromatic_angle_deg)
    return (float(mag * np.sin(ang)), float(mag * np.cos(ang)))


def _freq_grid(shape: tuple[int, int], um_per_px: float) -> tuple[np.ndarray, np.ndarray]:
    fy = sfft.fftfreq(shape[0], d=um_per_px)[:, None]
    fx = sfft.fftfreq(shape[1], d=um_per_px)[None, :]
    return fy, fx


def pupil(
    shape: tuple[int, int],
    um_per_px: float,
    wavelength_nm: float,
    *,
    na: float,
    immersion_index: float,
    defocus_um: float = 0.0,
    spherical_waves: float = 0.0,
) -> np.ndarray:
    """Complex pupil function on the (unshifted) FFT grid of an image of ``shape``."""
    lam = wavelength_nm * 1e-3
    fy, fx = _freq_grid(shape, um_per_px)
    f2 = fy**2 + fx**2
    fc = na / lam
    inside = f2 <= fc**2
    rho2 = f2 / fc**2
    # Exact defocus phase: kz(f) - kz(0) with kz = 2π sqrt((n/λ)² - f²).
    kz = 2 * np.pi * np.sqrt(np.maximum((immersion_index / lam) ** 2 - f2, 0.0))
    phase = defocus_um * (kz - 2 * np.pi * immersion_index / lam)
    # Noll-normalised Z(4,0) = sqrt(5) (6ρ⁴ − 6ρ² + 1), coefficient in waves.
    phase = phase + 2 * np.pi * spherical_waves * np.sqrt(5.0) * (6 * rho2**2 - 6 * rho2 + 1)
    return np.where(inside, np.exp(1j * phase), 0.0)


#: Radial sampling of the transfer function: samples per pupil radius (NA/λ) and grid size.
_RADIAL_SAMPLES_PER_FC = 96
_RADIAL_GRID = 640


@lru_cache(maxsize=2048)
def _radial_transfer(wavelength_nm: float, optics: Optics) -> tuple[np.ndarray, np.ndarray]:
    """Transfer function against radial frequency (cycles/µm), ``(f, H(f))``.

    Defocus, spherical aberration and a centred condenser disc are rotationally symmetric, so
    ``H`` depends on ``|f|`` only: it is computed once per wavelength on a fixed grid fine
    enough to resolve the pupil (96 samples per radius) and wide enough that the pupil
    correlation never wraps, then interpolated onto any image's frequency grid. That makes the
    cost independent of the image size (a 1024² field needs no 2048² FFTs).
    """
    fc = optics.na / (wavelength_nm * 1e-3)
    n = _RADIAL_GRID
    df = fc / _RADIAL_SAMPLES_PER_FC
    um = 1.0 / (n * df)
    shape = (n, n)
    p = pupil(
        shape,
        um,
        wavelength_nm,
        na=optics.na,
        immersion_index=optics.immersion_index,
        defocus_um=band_defocus_um(optics, wavelength_nm),
        spherical_waves=optics.spherical_waves,
    )
    if optics.condenser_fill >= 1.0:
        source = np.ones(shape)
    else:
        fy, fx = _freq_grid(shape, um)
        source = ((fy**2 + fx**2) <= (optics.condenser_fill * fc) ** 2).astype(float)
    a = sfft.ifft2(p)
    b = sfft.ifft2(source * p)
    h = sfft.fft2(a * np.conj(b))
    h = (h / h[0, 0]).real  # even part: a pure absorber has no phase to turn into intensity
    # Symmetric profile along +x and −x (average, so grid asymmetry cancels) out to 2·fc.
    m = 2 * _RADIAL_SAMPLES_PER_FC + 2
    prof = 0.5 * (h[0, :m] + np.concatenate([[h[0, 0]], h[0, :-m:-1]]))
    f = np.arange(m) * df
    prof[f >= (1.0 + min(optics.condenser_fill, 1.0)) * fc] = 0.0
    return f, prof


# Each entry is an rfft-grid array (0.3 MB for a padded 256² crop, 4.7 MB for a 1024² field):
# 128 entries bound the memory while covering a training pool of randomised profiles.
@lru_cache(maxsize=128)
def _transfer_cached(
    shape: tuple[int, int],
    um_per_px: float,
    wavelength_nm: float,
    optics: Optics,
    pixel_aperture_px: float,
) -> np.ndarray:
    nx = shape[1]
    f_r, h_r = _radial_transfer(wavelength_nm, optics)
    fy, fx = _freq_grid(shape, um_per_px)
    h = np.interp(np.sqrt(fy**2 + fx**2), f_r, h_r, right=0.0)
    if pixel_aperture_px > 0:
        # Box integration over a camera pixel = sinc in frequency (fine grid == camera grid).
        w = pixel_aperture_px * um_per_px
        h = h * np.sinc(fy * w) * np.sinc(fx * w)
    dy, dx = band_shift_um(optics, wavelength_nm)
    out = h[:, : nx // 2 + 1].astype(np.complex64)
    if dy or dx:
        fyr, fxr = fy, fx[:, : nx // 2 + 1]
        out = out * np.exp(-2j * np.pi * (fyr * dy + fxr * dx)).astype(np.complex64)
    out.setflags(write=False)
    return out


def transfer_function(
    shape: tuple[int, int],
    um_per_px: float,
    wavelength_nm: float,
    optics: Optics,
    *,
    pixel_aperture_px: float = 0.0,
) -> np.ndarray:
    """Optical transfer function on the ``rfft2`` grid of an image of ``shape`` (read-only, cached).

    Parameters
    ----------
    shape
        Image shape ``(H, W)`` on the render grid.
    um_per_px
        Render-grid spacing in µm.
    wavelength_nm
        Band wavelength.
    optics
        Objective/condenser description.
    pixel_aperture_px
        Width of a square pixel aperture, in grid pixels, to fold into the transfer function
        (0 = none).
    """
    if um_per_px <= 0:
        raise InputError("um_per_px", um_per_px, "> 0")
    if not (200.0 <= wavelength_nm <= 1200.0):
        raise InputError("wavelength_nm", wavelength_nm, "200–1200 nm")
    return _transfer_cached(
        (int(shape[0]), int(shape[1])), float(um_per_px), float(wavelength_nm), optics, float(pixel_aperture_px)
    )


def psf(shape: tuple[int, int], um_per_px: float, wavelength_nm: float, optics: Optics) -> np.ndarray:
    """Point-spread function centred in an array of ``shape``; sums to 1 (DC of the OTF is 1)."""
    otf = transfer_function(shape, um_per_px, wavelength_nm, optics)
    k = sfft.irfft2(otf, s=shape)
    return sfft.fftshift(k).astype(np.float32)


def cutoff_frequency(optics: Optics, wavelength_nm: float) -> float:
    """Highest spatial frequency (cycles/µm) passed: (1 + σ)·NA/λ (2·NA/λ when incoherent)."""
    return (1.0 + min(optics.condenser_fill, 1.0)) * optics.na / (wavelength_nm * 1e-3)


def mtf_radial(otf: np.ndarray, shape: tuple[int, int], um_per_px: float, freqs: np.ndarray) -> np.ndarray:
    """Modulus of an rfft-grid transfer function sampled along +x at ``freqs`` (cycles/µm)."""
    fx = sfft.rfftfreq(shape[1], d=um_per_px)
    return np.interp(freqs, fx, np.abs(otf[0, :]))


@lru_cache(maxsize=256)
def _vignetting_cached(
    shape: tuple[int, int], strength: float, sensor: tuple[int, int], center: tuple[float, float]
) -> np.ndarray:
    ny, nx = shape
    half_diag2 = (sensor[0] / 2.0) ** 2 + (sensor[1] / 2.0) ** 2
    y = np.arange(ny) - (ny - 1) / 2.0 + center[0]
    x = np.arange(nx) - (nx - 1) / 2.0 + center[1]
    r2 = (y[:, None] ** 2 + x[None, :] ** 2) / half_diag2  # 1 at the sensor corners
    out = np.maximum(1.0 - strength * r2, 0.0).astype(np.float32)  # images larger than the sensor
    out.setflags(write=False)
    return out


def vignetting_map(
    shape: tuple[int, int],
    strength: float,
    *,
    sensor_shape: tuple[int, int] | None = None,
    center_px: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Relative illumination of an image region: quadratic fall-off from the optical axis.

    The fall-off is 1 at the sensor centre and ``1 - strength`` at the sensor corners.
    ``sensor_shape`` defaults to ``shape`` (the image is the whole sensor); ``center_px`` is the
    (y, x) offset of the region's centre from the sensor centre, in pixels, so that a small crop
    taken near the axis sees almost no vignetting and one near a corner sees the gradient.
    """
    if not (0.0 <= strength < 1.0):
        raise InputError("optics.vignetting", strength, "a value in [0, 1)")
    sensor = shape if sensor_shape is None else sensor_shape
    return _vignetting_cached(
        (int(shape[0]), int(shape[1])),
        float(strength),
        (int(sensor[0]), int(sensor[1])),
        (float(center_px[0]), float(center_px[1])),
    )
