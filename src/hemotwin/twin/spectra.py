"""Spectra of the twin: stain absorbers, illuminants and colour-camera sensitivities.

Every curve is a documented parametric model (sums of Gaussians in wavelength, Planck's law),
sampled on a 1 nm grid and integrated into ``n_bands`` equal-width wavelength bands. Peak
positions follow ``docs/optics.md`` §2–3; widths and secondary peaks are literature-typical
*(approx.)* and are parameters, not buried constants.

Absorber spectra are normalised to a peak of 1, so an absorber amount of 1.0 gives an optical
density of 1.0 at its peak (the "peak-OD" unit of :mod:`hemotwin.twin.specimen.maps`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hemotwin.errors import InputError
from hemotwin.twin.specimen.maps import ABSORBERS

#: Gaussian components (centre nm, sigma nm, relative height) of each absorber's extinction.
#: purple: the DNA–azure B–eosin Y complex absorbs sharply at ~552 nm, with weaker azure and
#: eosin shoulders. azure_b: monomer ~641 nm, dimer shoulder ~595 nm. eosin: bound eosin Y
#: ~527 nm with its vibronic shoulder ~495 nm. hemoglobin: oxy-Hb Soret 414 nm and Q bands
#: 542/577 nm, with the Q/Soret ratio set so a normal dried red cell has OD 0.55 at 415 nm and
#: ~0.06 at 542 nm (docs/optics.md §2).
ABSORBER_PEAKS: dict[str, tuple[tuple[float, float, float], ...]] = {
    "purple": ((552.0, 21.0, 1.0), (596.0, 24.0, 0.38), (505.0, 22.0, 0.22)),
    "azure_b": ((645.5, 24.0, 1.0), (596.0, 22.0, 0.55)),
    "eosin": ((527.0, 15.0, 1.0), (496.0, 17.0, 0.34)),
    "hemoglobin": ((414.0, 11.0, 1.0), (542.0, 8.0, 0.11), (577.0, 7.0, 0.115)),
}

#: Colour-camera channel sensitivities (centre nm, sigma nm, height) before the IR-cut filter.
#: Bayer CMOS: B peaks 450–470 nm, G 520–540 nm, R 590–620 nm (docs/optics.md §3); the small
#: secondary lobes model the usual dye cross-talk.
CAMERA_QE: dict[str, tuple[tuple[float, float, float], ...]] = {
    "R": ((605.0, 32.0, 0.92), (460.0, 25.0, 0.04)),
    "G": ((532.0, 36.0, 1.0), (600.0, 30.0, 0.08)),
    "B": ((462.0, 30.0, 0.85), (540.0, 28.0, 0.06)),
}

#: Linear sRGB (D65) from CIE XYZ (IEC 61966-2-1).
XYZ_TO_SRGB = np.array(
    [[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]]
)

_H = 6.62607015e-34
_C = 2.99792458e8
_KB = 1.380649e-23


def wavelength_grid(lo_nm: float = 400.0, hi_nm: float = 700.0) -> np.ndarray:
    """1 nm sampling grid (inclusive of ``lo_nm``, exclusive of ``hi_nm``) at bin centres."""
    if not (300.0 <= lo_nm < hi_nm <= 1100.0):
        raise InputError("spectral.lo_nm/hi_nm", (lo_nm, hi_nm), "300 <= lo_nm < hi_nm <= 1100")
    return np.arange(lo_nm, hi_nm, 1.0) + 0.5


def gaussian_sum(wavelength_nm: np.ndarray, components) -> np.ndarray:
    """Sum of Gaussians ``h * exp(-(λ - c)² / 2σ²)`` over ``components``."""
    lam = np.asarray(wavelength_nm, dtype=np.float64)
    out = np.zeros_like(lam)
    for centre, sigma, height in components:
        out += height * np.exp(-0.5 * ((lam - centre) / sigma) ** 2)
    return out


def absorber_spectrum(name: str, wavelength_nm: np.ndarray, *, peak_shift_nm: float = 0.0) -> np.ndarray:
    """Extinction of absorber ``name`` normalised to a peak of 1.

    ``peak_shift_nm`` moves every component (used for the pH dependence of the purple
    complex: basic buffers shift it to longer wavelengths, bluer).
    """
    if name not in ABSORBER_PEAKS:
        raise InputError("absorber", name, f"one of {sorted(ABSORBER_PEAKS)}")
    comps = [(c + peak_shift_nm, s, h) for c, s, h in ABSORBER_PEAKS[name]]
    # Normalise on a dense grid so the peak is 1 whatever the caller's sampling.
    dense = np.arange(350.0, 800.0, 0.25)
    peak = gaussian_sum(dense, comps).max()
    return gaussian_sum(wavelength_nm, comps) / peak


def planck(wavelength_nm: np.ndarray, temperature_k: float) -> np.ndarray:
    """Black-body spectral radiance (Planck), normalised to 1 at 550 nm.

    A 3200 K halogen lamp gives 0.23 at 400 nm and 1.73 at 700 nm relative to 550 nm.
    """
    if not (1000.0 <= temperature_k <= 20000.0):
        raise InputError("illuminant.temperature_k", temperature_k, "1000–20000 K")

    def radiance(lam_nm):
        lam = np.asarray(lam_nm, dtype=np.float64) * 1e-9
        return 1.0 / (lam**5 * np.expm1(_H * _C / (lam * _KB * temperature_k)))

    return radiance(wavelength_nm) / radiance(550.0)


def white_led(
    wavelength_nm: np.ndarray,
    *,
    pump_nm: float = 450.0,
    pump_sigma_nm: float = 10.0,
    phosphor_nm: float = 565.0,
    phosphor_sigma_nm: float = 48.0,
    pump_ratio: float = 0.85,
) -> np.ndarray:
    """Phosphor-converted white LED: a blue pump plus a broad phosphor band.

    The two bands leave the characteristic dip near 480–500 nm. Normalised to 1 at 550 nm.
    """
    lam = np.asarray(wavelength_nm, dtype=np.float64)
    spec = gaussian_sum(lam, ((pump_nm, pump_sigma_nm, pump_ratio), (phosphor_nm, phosphor_sigma_nm, 1.0)))
    ref = gaussian_sum(np.array([550.0]), ((pump_nm, pump_sigma_nm, pump_ratio), (phosphor_nm, phosphor_sigma_nm, 1.0)))
    return spec / ref[0]


def _piecewise_gaussian(lam: np.ndarray, mu: float, s1: float, s2: float) -> np.ndarray:
    s = np.where(lam < mu, s1, s2)
    return np.exp(-0.5 * ((lam - mu) / s) ** 2)


def cie_xyz_cmf(wavelength_nm: np.ndarray) -> np.ndarray:
    """``3 x L`` CIE 1931 2° colour-matching functions.

    Multi-lobe analytic fit of Wyman, Sloan & Shirley (JCGT 2013), within ~1 % of the tabulated
    functions over 400–700 nm.
    """
    lam = np.asarray(wavelength_nm, dtype=np.float64)
    g = _piecewise_gaussian
    x = 1.056 * g(lam, 599.8, 37.9, 31.0) + 0.362 * g(lam, 442.0, 16.0, 26.7) - 0.065 * g(lam, 501.1, 20.4, 26.2)
    y = 0.821 * g(lam, 568.8, 46.9, 40.5) + 0.286 * g(lam, 530.9, 16.3, 31.1)
    z = 1.217 * g(lam, 437.0, 11.8, 36.0) + 0.681 * g(lam, 459.0, 26.0, 13.8)
    return np.stack([x, y, z])


def camera_qe(
    wavelength_nm: np.ndarray,
    *,
    ir_cut_nm: float = 650.0,
    ir_cut_width_nm: float = 8.0,
    peak_shift_nm: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> np.ndarray:
    """``3 x L`` R, G, B quantum efficiencies including a sigmoid IR-cut filter."""
    lam = np.asarray(wavelength_nm, dtype=np.float64)
    ir = 1.0 / (1.0 + np.exp((lam - ir_cut_nm) / ir_cut_width_nm))
    rows = []
    for shift, ch in zip(peak_shift_nm, ("R", "G", "B"), strict=True):
        comps = [(c + shift, s, h) for c, s, h in CAMERA_QE[ch]]
        rows.append(gaussian_sum(lam, comps) * ir)
    return np.stack(rows)


@dataclass(frozen=True)
class BandModel:
    """Spectral quantities integrated into bands, ready for rendering.

    Attributes
    ----------
    centers_nm
        Band centre wavelengths, shape ``(B,)``.
    edges_nm
        Band edges, shape ``(B + 1,)``.
    extinction
        ``B x K`` band-mean absorber extinction (peak-normalised), K in :data:`ABSORBERS` order.
    channel_weights
        ``3 x B`` weight of each band in each raw camera channel: the integral over the band of
        illuminant × QE, scaled so that the brightest channel's clear-glass signal is 1.
    """

    centers_nm: np.ndarray
    edges_nm: np.ndarray
    extinction: np.ndarray
    channel_weights: np.ndarray


def band_model(
    *,
    n_bands: int,
    lo_nm: float,
    hi_nm: float,
    illuminant: np.ndarray,
    qe: np.ndarray,
    purple_shift_nm: float = 0.0,
) -> BandModel:
    """Integrate absorbers, illuminant and QE (sampled on :func:`wavelength_grid`) into bands.

    Extinction is averaged within a band (the Beer–Lambert non-linearity inside a ~20 nm band
    is second order at the ODs of a smear); illuminant × QE is summed, so the channel weights
    carry the spectral power of the band.
    """
    if not (1 <= n_bands <= 300):
        raise InputError("spectral.n_bands", n_bands, "an integer in 1..300")
    lam = wavelength_grid(lo_nm, hi_nm)
    if illuminant.shape != lam.shape or qe.shape != (3, lam.size):
        raise InputError("illuminant/qe", (illuminant.shape, qe.shape), f"sampled on {lam.size} nm")
    edges = np.linspace(lo_nm, hi_nm, n_bands + 1)
    idx = np.clip(np.searchsorted(edges, lam, side="right") - 1, 0, n_bands - 1)
    counts = np.bincount(idx, minlength=n_bands).astype(np.float64)
    ext = np.empty((n_bands, len(ABSORBERS)))
    for j, name in enumerate(ABSORBERS):
        shift = purple_shift_nm if name == "purple" else 0.0
        spec = absorber_spectrum(name, lam, peak_shift_nm=shift)
        ext[:, j] = np.bincount(idx, weights=spec, minlength=n_bands) / counts
    power = illuminant[None, :] * qe
    weights = np.stack([np.bincount(idx, weights=p, minlength=n_bands) for p in power])
    weights /= weights.sum(axis=1).max()
    return BandModel(
        centers_nm=0.5 * (edges[:-1] + edges[1:]),
        edges_nm=edges,
        extinction=ext.astype(np.float32),
        channel_weights=weights.astype(np.float32),
    )
