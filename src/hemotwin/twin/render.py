"""Render a specimen through a scanner profile: the whole physical chain in one call.

Order of operations (docs/optics.md §1), per wavelength band ``b``:

1. stain model -> absorber amounts ``c_j``;
2. Beer–Lambert transmittance ``T_b = 10^(-Σ_j ε_jb c_j)``;
3. optics: each camera channel ``k`` receives ``Σ_b w_kb (T_b ⊗ h_b)``; bands that share a PSF
   (``spectral.psf_groups``) are summed *before* the FFT, which is exact by linearity, so the
   FFT count is ``3 x groups`` forward + 3 inverse, independent of the band count;
4. illumination fall-off (vignetting), pixel-area integration to the camera grid;
5. camera: Bayer sampling, Poisson–Gaussian noise, full well, ADC, demosaicing, white balance,
   colour matrix, gamma, 8-bit, optional JPEG.

The transmittance, never the optical density, is convolved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from math import asin, ceil, tan

import numpy as np
import scipy.fft as sfft

from hemotwin.errors import InputError
from hemotwin.twin import camera as cam
from hemotwin.twin.optics import transfer_function, vignetting_map
from hemotwin.twin.profiles.model import Camera, Illuminant, ScannerProfile, Spectral, Stain
from hemotwin.twin.resample import resize_chw
from hemotwin.twin.specimen.maps import ABSORBERS, AbsorberMaps
from hemotwin.twin.spectra import (
    XYZ_TO_SRGB,
    BandModel,
    absorber_spectrum,
    band_model,
    camera_qe,
    cie_xyz_cmf,
    planck,
    wavelength_grid,
    white_led,
)

_LN10 = float(np.log(10.0))

#: pH balance -> relative uptake of azure (+) and eosin (−), and purple peak shift in nm.
PH_AZURE_GAIN = 0.3
PH_EOSIN_GAIN = 0.3
PH_PURPLE_SHIFT_NM = 6.0


@dataclass(frozen=True)
class Rendering:
    """An image with its exact ground truth on the same grid.

    Attributes
    ----------
    image
        ``H x W x 3`` uint8 delivered image.
    instances, compartments
        Ground-truth masks on the image grid (see :class:`~hemotwin.twin.specimen.maps.Compartment`).
    wbc_masks
        Full mask of every white cell by object id.
    um_per_px
        Pixel size of ``image`` referred to the specimen.
    profile, seed
        What produced it.
    objects
        Morphology records of the specimen (empty when rendering bare absorber maps).
    raw
        ``H x W`` raw digital numbers of the sensor (Bayer mosaic) when ``keep_raw``.
    linear
        ``3 x H x W`` noiseless camera-channel signal relative to clear glass, when ``keep_raw``.
    """

    image: np.ndarray
    instances: np.ndarray
    compartments: np.ndarray
    wbc_masks: dict[int, np.ndarray]
    um_per_px: float
    profile: ScannerProfile
    seed: int
    objects: list = field(default_factory=list)
    raw: np.ndarray | None = None
    linear: np.ndarray | None = None


def illuminant_spectrum(illuminant: Illuminant, wavelength_nm: np.ndarray) -> np.ndarray:
    """Relative spectral power of the light source on ``wavelength_nm``."""
    if illuminant.kind == "halogen":
        spec = planck(wavelength_nm, illuminant.temperature_k)
        if illuminant.blue_filter > 0:
            # A daylight-conversion filter multiplies by the ratio of a 5500 K to a 3200 K body.
            conv = planck(wavelength_nm, 5500.0) / planck(wavelength_nm, 3200.0)
            spec = spec * conv**illuminant.blue_filter
        return spec
    return white_led(
        wavelength_nm,
        pump_nm=illuminant.led_pump_nm,
        phosphor_nm=illuminant.led_phosphor_nm,
        pump_ratio=illuminant.led_pump_ratio,
    )


@dataclass(frozen=True)
class SpectralSetup:
    """The spectral bands of a light source, camera and stain pH, grouped by shared PSF.

    Attributes
    ----------
    bands
        Band centres, extinction of each absorber per band and the camera-channel weights.
    groups
        ``(band indices, PSF wavelength in nm)`` per group of bands that share one PSF.
    group_weights
        ``3 x |group|`` camera-channel weights of each group's bands.
    """

    bands: BandModel
    groups: tuple[tuple[np.ndarray, float], ...]  # (band indices, PSF wavelength) per group
    group_weights: tuple[np.ndarray, ...]  # 3 x |g| channel weights per group


@lru_cache(maxsize=256)
def spectral_setup(
    illuminant: Illuminant, camera: Camera, spectral: Spectral, purple_shift_nm: float
) -> SpectralSetup:
    """The band model of a scanner's light source and camera, with its PSF groups (cached).

    Parameters
    ----------
    illuminant, camera, spectral
        The profile's parts that fix the bands (hashable, so the result is cached).
    purple_shift_nm
        Shift of the purple absorption peak from the stain's pH balance
        (:data:`PH_PURPLE_SHIFT_NM` times ``stain.ph_balance``).

    Returns
    -------
    SpectralSetup
        Bands and the groups of bands that share one PSF (at their power-weighted mean wavelength).
    """
    lam = wavelength_grid(spectral.lo_nm, spectral.hi_nm)
    bands = band_model(
        n_bands=spectral.n_bands,
        lo_nm=spectral.lo_nm,
        hi_nm=spectral.hi_nm,
        illuminant=illuminant_spectrum(illuminant, lam),
        qe=camera_qe(lam, ir_cut_nm=camera.ir_cut_nm, peak_shift_nm=camera.qe_shift_nm),
        purple_shift_nm=purple_shift_nm,
    )
    groups = []
    gw = []
    power = bands.channel_weights.sum(axis=0)
    for idx in np.array_split(np.arange(spectral.n_bands), spectral.psf_groups):
        # One PSF per group, at the power-weighted mean wavelength of its bands.
        wl = float(np.average(bands.centers_nm[idx], weights=power[idx] + 1e-12))
        groups.append((idx, wl))
        gw.append(np.ascontiguousarray(bands.channel_weights[:, idx]))
    return SpectralSetup(bands, tuple(groups), tuple(gw))


def stain_factors(stain: Stain) -> np.ndarray:
    """Multiplier of each absorber amount (in :data:`ABSORBERS` order) for a stain setting."""
    f = {
        "purple": stain.strength * stain.purple,
        "azure_b": stain.strength * stain.azure_b * (1.0 + PH_AZURE_GAIN * stain.ph_balance),
        "eosin": stain.strength * stain.eosin * (1.0 - PH_EOSIN_GAIN * stain.ph_balance),
        "hemoglobin": stain.hemoglobin,
    }
    return np.array([f[name] for name in ABSORBERS], dtype=np.float32)


def psf_margin_px(profile: ScannerProfile, fine_um: float) -> int:
    """Padding that holds the PSF support, so FFT wrap-around stays outside the image.

    Parameters
    ----------
    profile
        The scanner profile (optics and spectral range).
    fine_um
        Pixel size of the render grid (µm).

    Returns
    -------
    int
        Margin in render-grid pixels on each side.
    """
    o = profile.optics
    # Two Airy radii at the longest wavelength hold >98 % of the in-focus PSF energy; defocus
    # adds the geometric blur-circle radius; reflect padding makes the rest continuous.
    airy = 0.61 * profile.spectral.hi_nm * 1e-3 / o.na
    blur = (abs(o.defocus_um) + abs(o.axial_chromatic_um)) * tan(asin(min(o.na / o.immersion_index, 0.99)))
    radius = 2.0 * airy + blur + abs(o.lateral_chromatic_um)
    return ceil(radius / fine_um) + 2


def _nearest_index(src_n: int, out_n: int) -> np.ndarray:
    """Source index whose pixel contains each output pixel centre (unbiased nearest resampling)."""
    # Nearest source centre; exact ties round half to even so they do not all lean one way.
    pos = (np.arange(out_n) + 0.5) * src_n / out_n - 0.5
    return np.clip(np.rint(pos), 0, src_n - 1).astype(np.intp)


def resample_labels(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resample a label/mask image without shifting it.

    Block majority for integer shrink factors (a nearest pick would sit on a tie between source
    pixels), else the source pixel containing each output pixel centre.
    """
    fy, fx = labels.shape[0] / shape[0], labels.shape[1] / shape[1]
    if fy == fx and fy == int(fy) and labels.shape[0] % shape[0] == 0 and labels.shape[1] % shape[1] == 0:
        return block_mode(labels, int(fy))
    iy = _nearest_index(labels.shape[0], shape[0])
    ix = _nearest_index(labels.shape[1], shape[1])
    return labels[np.ix_(iy, ix)]


def block_mode(labels: np.ndarray, factor: int) -> np.ndarray:
    """Most frequent label in each ``factor x factor`` block (ties -> smallest label)."""
    if factor == 1:
        return labels.copy()
    h, w = labels.shape[0] // factor, labels.shape[1] // factor
    blocks = labels[: h * factor, : w * factor].reshape(h, factor, w, factor).transpose(0, 2, 1, 3)
    blocks = np.sort(blocks.reshape(h, w, factor * factor), axis=-1)
    counts = (blocks[..., :, None] == blocks[..., None, :]).sum(axis=-1)
    best = np.argmax(counts, axis=-1)
    return np.take_along_axis(blocks, best[..., None], axis=-1)[..., 0]


def _resample_maps(maps: AbsorberMaps, fine_um: float, shape: tuple[int, int], *, labels: bool = True
                   ) -> AbsorberMaps:
    """Bring absorber maps from another grid onto the render grid.

    Area-averaging when shrinking (no aliasing of fine granules), linear when enlarging; labels by
    pixel centres.
    """
    if abs(maps.um_per_px - fine_um) < 1e-9 and maps.shape == shape:
        return maps
    ab = resize_chw(maps.absorbers, shape)
    if not labels:
        return AbsorberMaps(ab, np.zeros(shape, np.int32), np.zeros(shape, np.uint8), fine_um, {})
    return AbsorberMaps(
        ab,
        resample_labels(maps.instances, shape).astype(np.int32),
        resample_labels(maps.compartments, shape).astype(np.uint8),
        fine_um,
        {k: resample_labels(v, shape) for k, v in maps.wbc_masks.items()},
    )


def optical_image(
    absorbers: np.ndarray,
    profile: ScannerProfile,
    *,
    um_per_px: float,
    workers: int = 1,
) -> np.ndarray:
    """Noiseless camera-channel irradiance ``3 x H x W`` on the render grid.

    Clear glass = 1 in the brightest raw channel; before vignetting and pixel integration.

    ``absorbers`` is ``K x H x W`` in peak-OD units *after* the stain model.
    """
    setup = spectral_setup(
        profile.illuminant, profile.camera, profile.spectral, PH_PURPLE_SHIFT_NM * profile.stain.ph_balance
    )
    k, h, w = absorbers.shape
    margin = psf_margin_px(profile, um_per_px)
    ph, pw = sfft.next_fast_len(h + 2 * margin, real=True), sfft.next_fast_len(w + 2 * margin, real=True)
    top, left = (ph - h) // 2, (pw - w) // 2
    padded = np.pad(absorbers, ((0, 0), (top, ph - h - top), (left, pw - w - left)), mode="reflect")
    flat = padded.reshape(k, -1)
    acc = None
    for (idx, wl), weights in zip(setup.groups, setup.group_weights, strict=True):
        od = setup.bands.extinction[idx] @ flat  # |g| x HW optical density (log10)
        np.multiply(od, -_LN10, out=od)
        np.exp(od, out=od)  # transmittance, in place
        pix = float(profile.camera.oversample == 1)
        otf = transfer_function((ph, pw), um_per_px, wl, profile.optics, pixel_aperture_px=pix)
        if len(idx) >= 3:
            # Channel-weighted transmittance of the group: 3 FFTs whatever the band count.
            chan = (weights @ od).reshape(3, ph, pw)
            spec = sfft.rfft2(chan, axes=(1, 2), workers=workers)
        else:
            # Fewer bands than channels: transform each band, weight in Fourier space.
            bands = sfft.rfft2(od.reshape(len(idx), ph, pw), axes=(1, 2), workers=workers)
            spec = np.zeros((3, *bands.shape[1:]), dtype=np.complex64)
            for j in range(len(idx)):
                for c in range(3):
                    spec[c] += np.float32(weights[c, j]) * bands[j]
        spec *= otf
        acc = spec if acc is None else acc + spec
    img = sfft.irfft2(acc, s=(ph, pw), axes=(1, 2), workers=workers)
    return np.ascontiguousarray(img[:, top : top + h, left : left + w], dtype=np.float32)


#: Random stain mixtures the automatic colour matrix is fitted on (peak-OD ranges of a smear).
_CCM_TRAINING_MAX = np.array([3.0, 1.0, 2.0, 1.0])


@lru_cache(maxsize=256)
def _auto_color_matrix(calibration: Illuminant, camera: Camera, lo_nm: float, hi_nm: float) -> np.ndarray:
    """Least-squares 3x3 from white-balanced camera RGB to white-balanced linear sRGB.

    This is how a camera maker calibrates: transmittance spectra of smear-like stain mixtures
    are seen by the camera (QE x calibration light) and by the CIE 1931 observer (-> linear
    sRGB), both normalised to clear glass, and the matrix that maps one to the other is fitted
    with clear glass weighted heavily so white stays white.
    """
    lam = wavelength_grid(lo_nm, hi_nm)
    light = illuminant_spectrum(calibration, lam)
    qe = camera_qe(lam, ir_cut_nm=camera.ir_cut_nm, peak_shift_nm=camera.qe_shift_nm)
    ext = np.stack([absorber_spectrum(name, lam) for name in ABSORBERS])
    amounts = np.random.default_rng(0).uniform(0.0, 1.0, (600, len(ABSORBERS))) ** 2 * _CCM_TRAINING_MAX
    trans = np.vstack([np.ones(lam.size), 10.0 ** (-(amounts @ ext))]) * light[None, :]
    cam_rgb = trans @ qe.T
    srgb = trans @ cie_xyz_cmf(lam).T @ XYZ_TO_SRGB.T
    cam_rgb /= cam_rgb[0]
    srgb /= srgb[0]
    w = np.ones((cam_rgb.shape[0], 1))
    w[0] = 100.0
    m, *_ = np.linalg.lstsq(cam_rgb * w, srgb * w, rcond=None)
    return m.T


def color_matrix(profile: ScannerProfile) -> np.ndarray:
    """Effective 3x3 colour matrix of a profile (explicit or automatic, times saturation)."""
    proc = profile.processing
    if proc.color_matrix == "auto":
        calib = profile.illuminant
        if proc.white_balance == "reference":
            calib = Illuminant(kind="halogen", temperature_k=proc.wb_reference_k)
        m = _auto_color_matrix(calib, profile.camera, profile.spectral.lo_nm, profile.spectral.hi_nm)
    else:
        m = np.asarray(proc.color_matrix, dtype=np.float64)
    s = proc.saturation
    sat = (1.0 - s) / 3.0 * np.ones((3, 3)) + s * np.eye(3)  # rows sum to 1: grey stays grey
    return sat @ m


def processing_matrix(profile: ScannerProfile) -> np.ndarray:
    """3x3 matrix from raw channel signal to linear output RGB.

    Raw signal has clear glass of the brightest channel = 1; the matrix is colour matrix x
    white-balance gains x background level.
    """
    proc = profile.processing
    setup = spectral_setup(
        profile.illuminant, profile.camera, profile.spectral, PH_PURPLE_SHIFT_NM * profile.stain.ph_balance
    )
    gains = np.ones(3)
    if proc.white_balance == "auto":
        # Auto white balance on clear glass: the noiseless background of each channel -> 1.
        gains = 1.0 / setup.bands.channel_weights.sum(axis=1)
    elif proc.white_balance == "reference":
        # Gains calibrated under a black body at wb_reference_k, applied to the real lamp.
        ref = Illuminant(kind="halogen", temperature_k=proc.wb_reference_k)
        ref_setup = spectral_setup(ref, profile.camera, profile.spectral, 0.0)
        gains = 1.0 / ref_setup.bands.channel_weights.sum(axis=1)
        # Scale so the brightest channel of the real lamp's clear glass lands on 1.
        gains = gains / (gains * setup.bands.channel_weights.sum(axis=1)).max()
    gains = gains * np.asarray(proc.wb_error) * proc.background_level
    return (color_matrix(profile) * gains[None, :]).astype(np.float32)


def expected_background(profile: ScannerProfile) -> np.ndarray:
    """Noise-free uint8 RGB of clear glass at the image centre (before JPEG)."""
    setup = spectral_setup(
        profile.illuminant, profile.camera, profile.spectral, PH_PURPLE_SHIFT_NM * profile.stain.ph_balance
    )
    lin = processing_matrix(profile) @ setup.bands.channel_weights.sum(axis=1).astype(np.float32)
    bl = profile.processing.black_level
    lin = (lin - bl) / (1.0 - bl)
    return cam.to_uint8(cam.encode_gamma(lin, profile.processing.gamma))


def render(
    specimen,
    profile: ScannerProfile,
    *,
    seed: int,
    keep_raw: bool = False,
    workers: int = 1,
    field_position: tuple[float, float] = (0.0, 0.0),
    ground_truth: bool = True,
) -> Rendering:
    """Image ``specimen`` through ``profile``.

    Parameters
    ----------
    specimen
        A :class:`~hemotwin.twin.specimen.Specimen` (rasterised here on the profile's fine grid)
        or :class:`AbsorberMaps` (resampled to it; used to re-image real cells).
    profile
        The scanner profile.
    seed
        Seed of the camera noise; same inputs and seed give identical bytes.
    keep_raw
        Also return the raw mosaic and the noiseless linear signal.
    workers
        FFT threads (keep 1 when parallelising over images; there, also limit BLAS to one
        thread per process, e.g. ``threadpoolctl.threadpool_limits(1)`` as
        :mod:`hemotwin.twin.datasets` does, or its threads oversubscribe the cores).
    field_position
        (y, x) of the image centre on the sensor, in units of the sensor half-height and
        half-width (0, 0 = on the optical axis; ±1 = at an edge): where a crop was taken, which
        sets the vignetting it sees.
    ground_truth
        Resample the masks to the output grid (False skips it: re-imaging real cells has none).
    """
    if not isinstance(profile, ScannerProfile):
        raise InputError("profile", type(profile).__name__, "a ScannerProfile")
    camc = profile.camera
    s = camc.oversample
    fine_um = camc.um_per_px / s
    objects: list = []
    if isinstance(specimen, AbsorberMaps):
        out_h = max(1, round(specimen.shape[0] * specimen.um_per_px / camc.um_per_px))
        out_w = max(1, round(specimen.shape[1] * specimen.um_per_px / camc.um_per_px))
        maps = _resample_maps(specimen, fine_um, (out_h * s, out_w * s), labels=ground_truth)
    else:
        from hemotwin.twin.specimen import rasterize  # the specimen package depends on maps only

        out_h = max(1, round(specimen.height_um / camc.um_per_px))
        out_w = max(1, round(specimen.width_um / camc.um_per_px))
        maps = rasterize(specimen, um_per_px=fine_um, shape=(out_h * s, out_w * s))
        objects = list(specimen.objects)

    absorbers = maps.absorbers * stain_factors(profile.stain)[:, None, None]
    linear = optical_image(absorbers, profile, um_per_px=fine_um, workers=workers)
    sensor_fine = (camc.sensor_px[0] * s, camc.sensor_px[1] * s)
    offset = (field_position[0] * sensor_fine[0] / 2.0, field_position[1] * sensor_fine[1] / 2.0)
    linear *= vignetting_map(linear.shape[1:], profile.optics.vignetting, sensor_shape=sensor_fine, center_px=offset)
    linear = cam.integrate_pixels(linear, s)

    rng = np.random.default_rng(seed)
    electrons = linear * np.float32(camc.exposure * camc.full_well_e)
    if camc.bayer:
        raw = cam.quantize(
            cam.add_sensor_noise(cam.bayer_mosaic(electrons), rng, read_noise_e=camc.read_noise_e),
            full_well_e=camc.full_well_e,
            adc_bits=camc.adc_bits,
        )
        demosaic = cam.demosaic_malvar if camc.demosaic == "malvar" else cam.demosaic_bilinear
        dn = demosaic(raw)
    else:
        raw = cam.quantize(
            cam.add_sensor_noise(electrons, rng, read_noise_e=camc.read_noise_e),
            full_well_e=camc.full_well_e,
            adc_bits=camc.adc_bits,
        )
        dn = raw
    proc = profile.processing
    # DN -> relative signal -> colour matrix -> black level, folded into one affine map applied
    # in pixel-major layout so the result is already H x W x 3.
    bl = proc.black_level
    scale = 1.0 / ((2**camc.adc_bits - 1) * camc.exposure * (1.0 - bl))
    m = (processing_matrix(profile) * np.float32(scale)).T
    h, w = dn.shape[1:]
    out = dn.reshape(3, -1).T @ m
    if bl > 0:
        out -= np.float32(bl / (1.0 - bl))
    out = cam.gamma_to_uint8(out, proc.gamma).reshape(h, w, 3)
    if proc.jpeg_quality is not None:
        out = cam.jpeg_roundtrip(out, proc.jpeg_quality)

    # Ground truth on the camera grid: the majority label of each pixel's footprint.
    if ground_truth:
        wbc_masks = {i: block_mode(m, s)[:out_h, :out_w] for i, m in maps.wbc_masks.items()}
        instances = block_mode(maps.instances, s)[:out_h, :out_w]
        compartments = block_mode(maps.compartments, s)[:out_h, :out_w]
    else:
        wbc_masks, instances, compartments = {}, np.zeros((0, 0), np.int32), np.zeros((0, 0), np.uint8)
    return Rendering(
        image=out,
        instances=instances,
        compartments=compartments,
        wbc_masks=wbc_masks,
        um_per_px=camc.um_per_px,
        profile=profile,
        seed=int(seed),
        objects=objects,
        raw=raw if keep_raw else None,
        linear=linear if keep_raw else None,
    )
