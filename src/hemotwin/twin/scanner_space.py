"""The scanner space: documented ranges of plausible microscopes, cameras, processing and stains.

A :class:`ScannerSpace` holds, for every part of a :class:`~hemotwin.twin.profiles.ScannerProfile`,
the range that real bright-field blood-smear imaging systems span, and :meth:`ScannerSpace.sample`
draws one profile from it. The classifier trained on real cells re-imaged through many such draws
(:class:`~hemotwin.twin.reimage.SpaceReImager`) should read real cells from any microscope, not
only from neighbours of the four presets.

Each range carries its justification in the field's ``description`` (shown by :meth:`ScannerSpace.describe`
and :func:`scanner_space_report`; docs/scanner_space.md explains them). The pixel size is drawn
first (log-uniform) and fixes the objective class the way real systems pair them (a 0.1 µm/px
image comes from a 100x or 60x oil objective, a 0.5 µm/px one from a 20x dry); the stain is one of
five named Romanowsky protocols with an independent log-normal spread of each stain field.

>>> from hemotwin.twin.scanner_space import DEFAULT_SCANNER_SPACE
>>> p = DEFAULT_SCANNER_SPACE.sample(np.random.default_rng(0))   # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hemotwin.errors import InputError
from hemotwin.twin.profiles.model import (
    Camera,
    Illuminant,
    Optics,
    Processing,
    ScannerProfile,
    Spectral,
    Stain,
)

__all__ = [
    "DEFAULT_SCANNER_SPACE",
    "STAIN_FIELDS",
    "ObjectiveClass",
    "ScannerSpace",
    "StainProtocol",
    "StainSpread",
    "depth_of_field_um",
    "scanner_space_report",
]

#: Stain model fields a protocol sets (:class:`~hemotwin.twin.profiles.Stain`).
STAIN_FIELDS: tuple[str, ...] = ("strength", "ph_balance", "purple", "azure_b", "eosin", "hemoglobin")
#: Wavelength (µm) at which the depth of field and the Nyquist pixel are reckoned (mid-band).
_DOF_WAVELENGTH_UM = 0.55

Interval = tuple[float, float]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="after")
    def _ordered_intervals(self):
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            if info.annotation in (Interval, tuple[int, int]) and value[0] > value[1]:
                raise ValueError(f"{name}={value}: the lower end must not exceed the upper end")
        return self


def depth_of_field_um(na: float, immersion_index: float) -> float:
    """Wave-optical depth of field ``λ·n/NA²`` at 550 nm (µm), as :func:`~hemotwin.twin.profiles.randomize` uses.

    Parameters
    ----------
    na
        Numerical aperture of the objective.
    immersion_index
        Refractive index of the immersion medium (1.0 dry).

    Returns
    -------
    float
        Depth of field in µm.
    """
    return _DOF_WAVELENGTH_UM * immersion_index / na**2


class ObjectiveClass(_Model):
    """A family of objectives and the pixel sizes (referred to the specimen) it is used at.

    ``um_per_px`` is where a camera behind this objective lands: sensor pitch (≈2–7 µm) times the
    relay (0.5–2x) divided by the magnification.
    """

    name: str
    magnifications: tuple[float, ...] = Field(min_length=1)
    na: Interval
    immersion_index: Interval
    um_per_px: Interval

    @model_validator(mode="after")
    def _physical(self) -> ObjectiveClass:
        if self.na[1] >= self.immersion_index[0]:
            raise ValueError(f"{self.name}: na up to {self.na[1]} must stay below the immersion index "
                             f"{self.immersion_index[0]}")
        if self.na[0] <= 0.0 or any(not (0.0 < m <= 200.0) for m in self.magnifications):
            raise ValueError(f"{self.name}: na and magnifications must be positive (magnification <= 200)")
        return self


class StainProtocol(_Model):
    """Centre of one named Romanowsky protocol in the twin's stain model (see :class:`Stain`)."""

    name: str
    note: str = ""
    strength: float = Field(1.0, gt=0.0, le=3.0)
    ph_balance: float = Field(0.0, ge=-1.0, le=1.0)
    purple: float = Field(1.0, gt=0.0, le=3.0)
    azure_b: float = Field(1.0, gt=0.0, le=3.0)
    eosin: float = Field(1.0, gt=0.0, le=3.0)
    hemoglobin: float = Field(1.0, gt=0.0, le=3.0)


class StainSpread(_Model):
    """Spread of each stain field around its protocol centre.

    Multiplicative fields: σ of the natural log (log-normal); ``ph_balance``: σ of a normal.
    Every draw is truncated at ``truncate_sigma`` σ (redrawn, not clipped) and then kept within
    the profile model's limits.
    """

    strength: float = Field(0.15, ge=0.0, le=1.0)
    ph_balance: float = Field(0.25, ge=0.0, le=1.0)
    purple: float = Field(0.15, ge=0.0, le=1.0)
    azure_b: float = Field(0.2, ge=0.0, le=1.0)
    eosin: float = Field(0.2, ge=0.0, le=1.0)
    hemoglobin: float = Field(0.15, ge=0.0, le=1.0)
    truncate_sigma: float = Field(2.5, gt=0.0, le=5.0)


def _default_objectives() -> tuple[ObjectiveClass, ...]:
    oil = (1.515, 1.518)  # type F / DF immersion oil, matched to cover glass (ISO 8036)
    return (
        # 100x oil: achromat 1.25, plan-apo 1.40, 1.45 high end; analyzers (CellaVision) ~0.1 µm/px.
        ObjectiveClass(name="100x oil", magnifications=(100.0,), na=(1.25, 1.45), immersion_index=oil,
                       um_per_px=(0.07, 0.125)),
        # 60x/63x oil plan-apo 1.35-1.42 (Nikon 60x/1.40, Zeiss 63x/1.40, Olympus 60x/1.42).
        ObjectiveClass(name="60x/63x oil", magnifications=(60.0, 63.0), na=(1.35, 1.42), immersion_index=oil,
                       um_per_px=(0.09, 0.2)),
        # 50x oil 0.9-1.0 (Olympus 50x/0.90 oil, Leica 50x/1.00 oil): smear screening.
        ObjectiveClass(name="50x oil", magnifications=(50.0,), na=(0.9, 1.0), immersion_index=oil,
                       um_per_px=(0.12, 0.22)),
        # 40x dry 0.65 (achromat, teaching) to 0.95 (plan-apo, slide scanners at ~0.25 µm/px).
        ObjectiveClass(name="40x dry", magnifications=(40.0,), na=(0.65, 0.95), immersion_index=(1.0, 1.0),
                       um_per_px=(0.15, 0.35)),
        # 20x dry 0.5 (plan-fluor) to 0.8 (plan-apo, slide scanners at ~0.5 µm/px).
        ObjectiveClass(name="20x dry", magnifications=(20.0,), na=(0.5, 0.8), immersion_index=(1.0, 1.0),
                       um_per_px=(0.25, 0.5)),
    )


def _default_protocols() -> tuple[StainProtocol, ...]:
    return (
        StainProtocol(
            name="May-Grunwald-Giemsa",
            note="reference: the twin's stain model and the PBC/CellaVision training images are MGG "
            "(buffer pH 6.8, Bain); two steps, long azure B-eosin contact: full purple",
        ),
        StainProtocol(
            name="Wright", strength=0.95, ph_balance=-0.1, purple=0.9, azure_b=0.95, eosin=1.1,
            note="one-step methanolic polychromed methylene blue + eosin, buffer pH 6.4-6.8 "
            "(Bain): slightly more acidic than MGG, granules and red cells pinker, nuclear purple "
            "a little weaker than with Giemsa's azure B",
        ),
        StainProtocol(
            name="Wright-Giemsa", strength=1.0, ph_balance=-0.05, purple=1.0, azure_b=1.0, eosin=1.05,
            note="Wright with added Giemsa (azure B): nuclear purple as MGG, palette between",
        ),
        StainProtocol(
            name="Leishman", strength=0.95, ph_balance=0.05, purple=0.95, azure_b=1.05, eosin=0.95,
            note="methanolic polychromed methylene blue + eosin, buffer pH 6.8 (Bain): cytoplasm "
            "a little bluer, purple a little weaker than MGG",
        ),
        StainProtocol(
            name="rapid Romanowsky", strength=0.85, ph_balance=-0.15, purple=0.75, azure_b=0.85, eosin=1.2,
            note="Diff-Quik-like: eosin bath then thiazine bath, seconds each; little time for the "
            "azure B-eosin (Romanowsky-Giemsa) purple to form (Horobin 2011): paler nuclei, less "
            "azure, pinker",
        ),
    )


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _uniform(rng: np.random.Generator, interval: Interval) -> float:
    return float(rng.uniform(interval[0], interval[1]))


def _truncated_normal(rng: np.random.Generator, sigma: float, limit: float) -> float:
    """A standard normal times ``sigma``, redrawn until within ±``limit`` σ (deterministic per rng)."""
    for _ in range(100):
        z = float(rng.normal())
        if abs(z) <= limit:
            return z * sigma
    return 0.0  # unreachable in practice (P(|z| > 0.01 σ) ** 100)


class ScannerSpace(_Model):
    """Ranges of physically plausible scanners; :meth:`sample` draws one :class:`ScannerProfile`.

    Every field is a documented range (its description says why); intervals are ``(low, high)``.
    Probabilities (``p_*``) choose between discrete alternatives.
    """

    name: str = "wide"
    description: str = "physically plausible bright-field blood-smear imaging systems"

    # -- sampling and optics -------------------------------------------------------------------
    um_per_px: Interval = Field(
        (0.07, 0.5),
        description="log-uniform; from oversampled 100x oil analyzers (~0.07-0.1, CellaVision ~0.1) to "
        "20x whole-slide scanners (0.46-0.5, undersampled: λ/(4NA) ≈ 0.17 µm)",
    )
    objectives: tuple[ObjectiveClass, ...] = Field(
        default_factory=_default_objectives,
        description="objective classes; one is drawn uniformly among those whose pixel range holds the "
        "drawn pixel size, then NA uniform in its range, immersion oil n 1.515-1.518 or air",
    )
    condenser_fill: Interval = Field(
        (0.45, 0.95),
        description="uniform; condenser NA / objective NA: set to 60-90 % in routine use (Köhler), "
        "stopped down further on teaching microscopes",
    )
    defocus_dof: float = Field(
        1.0, ge=0.0, le=5.0,
        description="defocus uniform in ± this many depths of field (λn/NA² at 550 nm): autofocus "
        "and manual focus error; a red cell (2 µm) is thicker than the 100x DOF",
    )
    spherical_waves: Interval = Field(
        (-0.2, 0.2),
        description="uniform, Zernike Z(4,0) RMS waves; 0.07 is the Maréchal (diffraction-limited) "
        "criterion, ±0.2 a cover-glass / immersion mismatch",
    )
    axial_chromatic_um: Interval = Field(
        (-0.8, 0.8),
        description="uniform, focus difference 700 vs 400 nm; plan-apochromats ~0.1-0.2 µm, "
        "achromats about one to two depths of field of a 40x",
    )
    lateral_chromatic_um: Interval = Field(
        (0.0, 0.3),
        description="uniform magnitude, direction uniform 0-360°; chromatic difference of "
        "magnification towards the field edge (≤ ~1 pixel)",
    )
    vignetting: Interval = Field(
        (0.0, 0.5),
        description="uniform corner fall-off; scanners ~0.05-0.1 after flat-field, phone on eyepiece ~0.45",
    )
    sensor_px: tuple[tuple[int, int], ...] = Field(
        ((1200, 1600), (1536, 2048), (2048, 2048), (2048, 2448), (3000, 4000)),
        description="sensor rows x columns (uniform choice): sets the vignetting scale of a crop",
    )

    # -- lamp -------------------------------------------------------------------------------------
    p_led: float = Field(
        0.35, ge=0.0, le=1.0,
        description="probability of a white LED lamp (modern microscopes and scanners); else halogen",
    )
    halogen_k: Interval = Field(
        (2800.0, 3600.0),
        description="uniform colour temperature; tungsten-halogen 3200 K at rated voltage, "
        "~2800 K dimmed, ~3400-3600 K overdriven",
    )
    p_blue_filter: float = Field(
        0.5, ge=0.0, le=1.0,
        description="probability that a halogen lamp has a daylight-conversion (blue) filter",
    )
    blue_filter: Interval = Field(
        (0.5, 1.0),
        description="uniform strength of that filter (1 = full conversion to ~5500 K, e.g. LBD / 80A)",
    )
    led_pump_nm: Interval = Field(
        (440.0, 460.0),
        description="uniform InGaN blue pump peak of a phosphor-converted white LED (typically 445-460 nm)",
    )
    led_phosphor_nm: Interval = Field(
        (545.0, 600.0),
        description="uniform peak of the broad YAG:Ce-type phosphor band (cool white ~550, warm white ~600)",
    )
    led_pump_ratio: Interval = Field(
        (0.6, 1.2),
        description="uniform pump/phosphor power ratio (warm white low, cool white high)",
    )

    # -- camera -----------------------------------------------------------------------------------
    full_well_e: Interval = Field(
        (3000.0, 30000.0),
        description="log-uniform; small phone / CMOS pixels ~3-6 ke-, machine-vision CMOS 10-20 ke-, CCD up to ~30 ke-",
    )
    exposure: Interval = Field(
        (0.5, 0.9),
        description="uniform clear-glass signal / full well: auto-exposure keeps the glass below clipping",
    )
    read_noise_e: Interval = Field(
        (1.5, 15.0),
        description="log-uniform; sCMOS ~1.5-2 e-, CMOS 2-6 e-, CCD and cheap sensors up to ~15 e- (EMVA 1288 sheets)",
    )
    adc_bits: tuple[int, ...] = Field(
        (8, 10, 12, 14), description="uniform choice of ADC depth",
    )
    qe_shift_nm: Interval = Field(
        (-10.0, 10.0),
        description="uniform, each channel independently: Bayer dye peaks vary between makers "
        "(B 450-470, G 520-540, R 590-620 nm)",
    )
    ir_cut_nm: Interval = Field(
        (630.0, 690.0), description="uniform IR-cut filter edge (around 650 nm)",
    )
    p_bayer: float = Field(
        0.9, ge=0.0, le=1.0,
        description="probability of a Bayer colour sensor (else three-chip / full-colour sampling)",
    )
    p_malvar: float = Field(
        0.5, ge=0.0, le=1.0, description="probability of Malvar (2004) demosaicing, else bilinear",
    )

    # -- processing -------------------------------------------------------------------------------
    p_reference_wb: float = Field(
        0.2, ge=0.0, le=1.0,
        description="probability of white balance fixed for a reference lamp (analyzers: a cream "
        "background); else auto white balance on clear glass",
    )
    wb_reference_k: Interval = Field(
        (3500.0, 5500.0), description="uniform reference colour temperature of that white balance",
    )
    wb_error: Interval = Field(
        (0.95, 1.05), description="uniform residual gain of each channel after white balance (±5 %)",
    )
    gamma: Interval = Field(
        (1.8, 2.4), description="uniform display gamma (Mac 1.8, sRGB ~2.2, phones up to 2.4)",
    )
    saturation: Interval = Field(
        (0.7, 1.3), description="uniform chroma gain (analyzers desaturate ~0.75, phones boost ~1.25)",
    )
    background_level: Interval = Field(
        (0.8, 1.0), description="uniform linear level of clear glass before gamma (exposure target)",
    )
    black_level: Interval = Field(
        (0.0, 0.08), description="uniform black-point stretch (analyzers ~0.08, most cameras 0)",
    )
    p_jpeg: float = Field(
        0.75, ge=0.0, le=1.0, description="probability that the image is JPEG-compressed (else lossless)",
    )
    jpeg_quality: tuple[int, int] = Field(
        (60, 95), description="uniform integer quality of that JPEG (phones ~60-85, scanners 80-95)",
    )

    # -- stain ------------------------------------------------------------------------------------
    protocols: tuple[StainProtocol, ...] = Field(
        default_factory=_default_protocols,
        description="Romanowsky protocols, one drawn uniformly per profile (centres of the stain fields)",
    )
    stain_spread: StainSpread = Field(
        default_factory=StainSpread,
        description="independent per-field spread about the protocol centre (laboratory, batch, "
        "timing, smear thickness): log-normal σ, pH normal σ, truncated",
    )

    # -- pixel-size error (applied by the caller) -----------------------------------------------------
    zoom: Interval = Field(
        (0.85, 1.15),
        description="uniform magnification error of the stated pixel size (metadata or red-cell ruler "
        "off by up to ~15 %); the caller applies it (sample_zoom), the twin does not",
    )

    @model_validator(mode="after")
    def _check(self) -> ScannerSpace:
        if not self.objectives:
            raise ValueError("objectives: at least one objective class is needed")
        if not self.protocols:
            raise ValueError("protocols: at least one stain protocol is needed")
        lo, hi = self.um_per_px
        if lo <= 0.01 or hi > 5.0:
            raise ValueError(f"um_per_px={self.um_per_px} must lie in (0.01, 5] µm")
        # Every pixel size of the range must be reachable by some objective class.
        edges = sorted({lo, hi, *(e for o in self.objectives for e in o.um_per_px if lo < e < hi)})
        for a, b in itertools.pairwise(edges):
            mid = 0.5 * (a + b)
            if not any(o.um_per_px[0] <= mid <= o.um_per_px[1] for o in self.objectives):
                raise ValueError(f"um_per_px: no objective class covers pixel sizes around {mid:.3g} µm")
        for end in (lo, hi):
            if not any(o.um_per_px[0] <= end <= o.um_per_px[1] for o in self.objectives):
                raise ValueError(f"um_per_px: no objective class covers the pixel size {end:g} µm")
        if self.jpeg_quality[0] < 5 or self.jpeg_quality[1] > 100:
            raise ValueError(f"jpeg_quality={self.jpeg_quality} must lie in [5, 100]")
        if not self.sensor_px or not self.adc_bits or any(not (6 <= b <= 16) for b in self.adc_bits):
            raise ValueError(f"adc_bits={self.adc_bits}: at least one choice, each in 6..16 (and one sensor_px)")
        if self.zoom[0] <= 0.1 or self.zoom[1] > 10.0:
            raise ValueError(f"zoom={self.zoom} must lie in (0.1, 10]")
        return self

    # -- sampling ---------------------------------------------------------------------------------
    def sample_hardware(self, rng: np.random.Generator) -> tuple[Illuminant, Optics, Camera, dict]:
        """Draw the scanner's hardware: lamp, optics, camera and its white-balance calibration.

        Parameters
        ----------
        rng
            Source of randomness (consumed in a fixed order).

        Returns
        -------
        tuple
            ``(illuminant, optics, camera, calibration)``; ``calibration`` holds the processing
            fields that belong to the instrument (``white_balance``, ``wb_reference_k``).
        """
        um = _loguniform(rng, *self.um_per_px)
        fits = [o for o in self.objectives if o.um_per_px[0] <= um <= o.um_per_px[1]]
        obj = fits[int(rng.integers(len(fits)))] if fits else min(
            self.objectives, key=lambda o: min(abs(math.log(um / e)) for e in o.um_per_px))
        mag = float(obj.magnifications[int(rng.integers(len(obj.magnifications)))])
        na = _uniform(rng, obj.na)
        n_imm = _uniform(rng, obj.immersion_index)
        dof = depth_of_field_um(na, n_imm)
        optics = Optics(
            magnification=mag,
            na=na,
            immersion_index=n_imm,
            condenser_fill=_uniform(rng, self.condenser_fill),
            defocus_um=float(np.clip(rng.uniform(-1.0, 1.0) * self.defocus_dof * dof, -20.0, 20.0)),
            spherical_waves=_uniform(rng, self.spherical_waves),
            axial_chromatic_um=_uniform(rng, self.axial_chromatic_um),
            lateral_chromatic_um=_uniform(rng, self.lateral_chromatic_um),
            lateral_chromatic_angle_deg=float(rng.uniform(0.0, 360.0)),
            vignetting=_uniform(rng, self.vignetting),
        )
        if rng.random() < self.p_led:
            illuminant = Illuminant(kind="led", led_pump_nm=_uniform(rng, self.led_pump_nm),
                                    led_phosphor_nm=_uniform(rng, self.led_phosphor_nm),
                                    led_pump_ratio=_uniform(rng, self.led_pump_ratio))
        else:
            temp = _uniform(rng, self.halogen_k)
            blue = _uniform(rng, self.blue_filter) if rng.random() < self.p_blue_filter else 0.0
            illuminant = Illuminant(kind="halogen", temperature_k=temp, blue_filter=blue)
        # The render grid reaches about the Nyquist pixel λ/(4NA) at 550 nm (undersampled
        # scanners then alias as real ones do); at most 4x to bound the cost.
        nyquist = _DOF_WAVELENGTH_UM / (4.0 * na)
        camera = Camera(
            um_per_px=um,
            oversample=int(min(4, max(1, round(um / nyquist)))),
            sensor_px=self.sensor_px[int(rng.integers(len(self.sensor_px)))],
            bayer=bool(rng.random() < self.p_bayer),
            demosaic="malvar" if rng.random() < self.p_malvar else "bilinear",
            full_well_e=_loguniform(rng, *self.full_well_e),
            exposure=_uniform(rng, self.exposure),
            read_noise_e=_loguniform(rng, *self.read_noise_e),
            adc_bits=int(self.adc_bits[int(rng.integers(len(self.adc_bits)))]),
            qe_shift_nm=tuple(float(v) for v in rng.uniform(*self.qe_shift_nm, 3)),
            ir_cut_nm=_uniform(rng, self.ir_cut_nm),
        )
        reference = rng.random() < self.p_reference_wb
        calibration = {"white_balance": "reference" if reference else "auto",
                       "wb_reference_k": _uniform(rng, self.wb_reference_k) if reference else 5000.0}
        return illuminant, optics, camera, calibration

    def sample_stain(self, rng: np.random.Generator) -> tuple[str, Stain]:
        """Draw a protocol and the stain fields about its centre.

        Parameters
        ----------
        rng
            Source of randomness.

        Returns
        -------
        tuple
            ``(protocol name, Stain)``.
        """
        proto = self.protocols[int(rng.integers(len(self.protocols)))]
        sp = self.stain_spread
        values = {}
        for key in STAIN_FIELDS:
            z = _truncated_normal(rng, getattr(sp, key), sp.truncate_sigma)
            centre = getattr(proto, key)
            if key == "ph_balance":
                values[key] = float(np.clip(centre + z, -1.0, 1.0))
            else:
                values[key] = float(np.clip(centre * math.exp(z), 1e-3, 3.0))
        return proto.name, Stain(**values)

    def sample_processing(self, rng: np.random.Generator, calibration: dict | None = None) -> Processing:
        """Draw the delivered-image processing (white-balance residual, gamma, saturation, JPEG).

        Parameters
        ----------
        rng
            Source of randomness.
        calibration
            The instrument's white-balance mode from :meth:`sample_hardware` (default: auto).

        Returns
        -------
        Processing
            The processing part of a profile.
        """
        cal = calibration or {"white_balance": "auto", "wb_reference_k": 5000.0}
        wb_error = tuple(float(v) for v in rng.uniform(*self.wb_error, 3))
        gamma = _uniform(rng, self.gamma)
        saturation = _uniform(rng, self.saturation)
        background = _uniform(rng, self.background_level)
        black = _uniform(rng, self.black_level)
        use_jpeg = rng.random() < self.p_jpeg
        quality = int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1))
        return Processing(white_balance=cal["white_balance"], wb_reference_k=cal["wb_reference_k"],
                          wb_error=wb_error, gamma=gamma, saturation=saturation, background_level=background,
                          black_level=black, jpeg_quality=quality if use_jpeg else None)

    def sample(self, rng: np.random.Generator) -> ScannerProfile:
        """Draw one scanner profile (deterministic for a given ``rng`` state).

        Parameters
        ----------
        rng
            Source of randomness; draws happen in a fixed order (hardware, stain, processing).

        Returns
        -------
        ScannerProfile
            A valid profile; its name records the objective class and stain protocol.
        """
        if not isinstance(rng, np.random.Generator):
            raise InputError("rng", type(rng).__name__, "a numpy.random.Generator")
        illuminant, optics, camera, calibration = self.sample_hardware(rng)
        protocol, stain = self.sample_stain(rng)
        processing = self.sample_processing(rng, calibration)
        lamp = "LED" if illuminant.kind == "led" else f"halogen {illuminant.temperature_k:.0f} K"
        return ScannerProfile(
            name=f"{self.name}:{optics.magnification:g}x/{optics.na:.2f}@{camera.um_per_px:.3f}",
            description=f"drawn from scanner space {self.name!r}: {lamp}, stain {protocol}",
            illuminant=illuminant, stain=stain, optics=optics, camera=camera,
            processing=processing, spectral=Spectral(),
        )

    def sample_zoom(self, rng: np.random.Generator) -> float:
        """Draw a pixel-size error (magnification) for the caller to apply.

        Parameters
        ----------
        rng
            Source of randomness.

        Returns
        -------
        float
            Zoom factor, uniform in :attr:`zoom`.
        """
        return _uniform(rng, self.zoom)

    def protocol_range(self, key: str) -> tuple[float, float]:
        """Documented range of stain field ``key`` over all protocols (centre ± truncation).

        Parameters
        ----------
        key
            One of :data:`STAIN_FIELDS`.

        Returns
        -------
        tuple of float
            ``(low, high)`` that every draw of the field lies in.
        """
        if key not in STAIN_FIELDS:
            raise InputError("key", key, f"one of {', '.join(STAIN_FIELDS)}")
        sp = self.stain_spread
        half = getattr(sp, key) * sp.truncate_sigma
        centres = [getattr(p, key) for p in self.protocols]
        if key == "ph_balance":
            return max(-1.0, min(centres) - half), min(1.0, max(centres) + half)
        return max(1e-3, min(centres) * math.exp(-half)), min(3.0, max(centres) * math.exp(half))

    # -- documentation ----------------------------------------------------------------------------
    def describe(self) -> list[dict[str, str]]:
        """Every parameter with its range, distribution and justification (for the model card).

        Returns
        -------
        list of dict
            Rows with keys ``parameter``, ``range`` and ``source``.
        """
        rows = []
        for name, info in type(self).model_fields.items():
            if name in ("name", "description", "objectives", "protocols", "stain_spread"):
                continue
            rows.append({"parameter": name, "range": _fmt(getattr(self, name)), "source": info.description or ""})
        for o in self.objectives:
            mags = "/".join(f"{m:g}x" for m in o.magnifications)
            rows.append({"parameter": f"objective {o.name}",
                         "range": f"{mags}, NA {_fmt(o.na)}, n {_fmt(o.immersion_index)}, {_fmt(o.um_per_px)} µm/px",
                         "source": "NA uniform; drawn when the pixel size falls in its range"})
        sp = self.stain_spread
        for key in STAIN_FIELDS:
            centres = ", ".join(f"{p.name} {getattr(p, key):g}" for p in self.protocols)
            kind = "normal σ" if key == "ph_balance" else "log-normal σ"
            rows.append({"parameter": f"stain.{key}", "range": _fmt(self.protocol_range(key)),
                         "source": f"centres {centres}; {kind} {getattr(sp, key):g}, truncated at "
                                   f"{sp.truncate_sigma:g} σ"})
        for p in self.protocols:
            rows.append({"parameter": f"protocol {p.name}", "range": "", "source": p.note})
        return rows

    # -- persistence ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The space as JSON-able data."""
        return self.model_dump(mode="json")

    def to_json(self) -> str:
        """The space as indented JSON text."""
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    def to_yaml(self) -> str:
        """The space as YAML text (fields in declaration order)."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def save(self, path: str | Path) -> Path:
        """Write as YAML (``.yaml``/``.yml``) or JSON (anything else)."""
        path = Path(path)
        text = self.to_yaml() if path.suffix.lower() in {".yaml", ".yml"} else self.to_json()
        path.write_text(text, encoding="utf-8")
        return path

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "scanner space") -> ScannerSpace:
        """A validated space from data; errors name ``source`` and the field (InputError)."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            msg = str(err.get("msg", "a valid value")).removeprefix("Value error, ")
            where = ".".join(str(p) for p in err.get("loc", ()))
            if not where:  # a whole-model check: its message starts with the field it concerns
                head = msg.split(":", 1)[0].split("=", 1)[0].strip()
                where = head if head in cls.model_fields else "(root)"
                if where != "(root)" and ": " in msg:
                    msg = msg.split(": ", 1)[1]
            value = data.get(where, err.get("input")) if isinstance(data, dict) else err.get("input")
            raise InputError(f"{source}: {where}", value, msg) from exc

    @classmethod
    def load(cls, path: str | Path) -> ScannerSpace:
        """Read a space from a JSON or YAML file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError("scanner space file", str(path), f"a readable JSON/YAML file ({exc.strerror})") from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InputError(str(path), "unparseable text", "valid JSON or YAML") from exc
        if not isinstance(data, dict):
            raise InputError(str(path), type(data).__name__, "a mapping of scanner-space fields")
        return cls.from_dict(data, source=str(path))


def _fmt(value) -> str:
    if isinstance(value, tuple) and value and isinstance(value[0], tuple):
        return ", ".join("x".join(str(v) for v in t) for t in value)
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int | float) for v in value):
        return f"{value[0]:.3g} – {value[1]:.3g}"
    if isinstance(value, tuple):
        return ", ".join(f"{v:g}" if isinstance(v, int | float) else str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


#: The space the shipped classifier's re-imaging draws from.
DEFAULT_SCANNER_SPACE = ScannerSpace()


def scanner_space_report(space: ScannerSpace | None = None) -> str:
    """A Markdown table of every parameter of ``space`` (default :data:`DEFAULT_SCANNER_SPACE`).

    Parameters
    ----------
    space
        The space to describe.

    Returns
    -------
    str
        ``| parameter | range | distribution and source |`` rows, one per parameter.
    """
    space = DEFAULT_SCANNER_SPACE if space is None else space
    lines = [f"Scanner space `{space.name}`: {space.description}", "",
             "| parameter | range | distribution and source |", "|---|---|---|"]
    lines += [f"| {r['parameter']} | {r['range']} | {r['source']} |" for r in space.describe()]
    return "\n".join(lines) + "\n"
