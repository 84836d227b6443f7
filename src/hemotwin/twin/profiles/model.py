"""The physical imaging setup as pydantic models (illuminant, stain, optics, camera, processing).

A :class:`ScannerProfile` describes one microscope + camera + laboratory stain. It round-trips
through JSON and YAML and is stored with every output for provenance.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hemotwin.errors import InputError


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Illuminant(_Model):
    """Light source.

    ``halogen`` follows Planck's law at ``temperature_k``; ``led`` is a phosphor-converted white LED
    (blue pump + broad phosphor band).
    """

    kind: Literal["halogen", "led"] = "halogen"
    temperature_k: float = Field(3200.0, ge=1500.0, le=12000.0)
    led_pump_nm: float = Field(450.0, ge=430.0, le=470.0)
    led_phosphor_nm: float = Field(565.0, ge=530.0, le=610.0)
    led_pump_ratio: float = Field(0.85, gt=0.0, le=3.0)
    blue_filter: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="strength of a daylight-conversion (blue) filter that flattens a halogen "
        "spectrum; 0 = none, 1 = full conversion towards ~5500 K",
    )


class Stain(_Model):
    """Laboratory staining: overall strength, pH balance and per-absorber uptake.

    ``ph_balance`` > 0 is a basic buffer (bluer palette: more azure uptake, less eosin, purple
    complex shifted to longer wavelength); < 0 is acidic (pinker).
    """

    strength: float = Field(1.0, gt=0.0, le=3.0)
    ph_balance: float = Field(0.0, ge=-1.0, le=1.0)
    purple: float = Field(1.0, gt=0.0, le=3.0)
    azure_b: float = Field(1.0, gt=0.0, le=3.0)
    eosin: float = Field(1.0, gt=0.0, le=3.0)
    hemoglobin: float = Field(1.0, gt=0.0, le=3.0, description="not a stain: haemoglobin content")


class Optics(_Model):
    """Objective and condenser. Defocus and aberrations are in µm of optical path / waves."""

    magnification: float = Field(100.0, gt=0.0, le=200.0)
    na: float = Field(1.4, gt=0.0, le=1.7)
    immersion_index: float = Field(1.515, ge=1.0, le=1.8)
    condenser_fill: float = Field(
        0.8,
        gt=0.0,
        le=1.0,
        description="condenser NA / objective NA (sigma); 1.0 = the incoherent limit",
    )
    defocus_um: float = Field(0.0, ge=-20.0, le=20.0)
    spherical_waves: float = Field(0.0, ge=-3.0, le=3.0, description="Zernike Z(4,0) coefficient, waves")
    axial_chromatic_um: float = Field(
        0.0, ge=-5.0, le=5.0, description="focus difference between 700 nm and 400 nm"
    )
    lateral_chromatic_um: float = Field(
        0.0, ge=-3.0, le=3.0, description="image shift difference between 700 nm and 400 nm"
    )
    lateral_chromatic_angle_deg: float = Field(0.0, ge=-360.0, le=360.0)
    vignetting: float = Field(0.0, ge=0.0, le=0.9, description="relative fall-off at the corners")

    @model_validator(mode="after")
    def _na_below_index(self) -> Optics:
        if self.na >= self.immersion_index:
            raise ValueError(
                f"na={self.na} must be below immersion_index={self.immersion_index} "
                "(a numerical aperture cannot exceed the immersion medium's index)"
            )
        return self


class Camera(_Model):
    """Colour camera: sampling, sensor, noise and read-out."""

    um_per_px: float = Field(0.1, gt=0.01, le=5.0, description="pixel size referred to the specimen")
    oversample: int = Field(
        1,
        ge=1,
        le=8,
        description="fine render grid = um_per_px / oversample; pixels integrate (box-sum) the fine "
        "grid; with 1 the pixel aperture is applied in the transfer function instead",
    )
    sensor_px: tuple[int, int] = Field(
        (1200, 1600), description="sensor rows, columns: sets the vignetting scale of a crop"
    )
    bayer: bool = True
    demosaic: Literal["bilinear", "malvar"] = "bilinear"
    full_well_e: float = Field(10000.0, gt=100.0, le=1e6)
    exposure: float = Field(0.7, gt=0.01, le=1.5, description="clear-glass signal / full well")
    read_noise_e: float = Field(5.0, ge=0.0, le=200.0)
    adc_bits: int = Field(12, ge=6, le=16)
    qe_shift_nm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    ir_cut_nm: float = Field(650.0, ge=600.0, le=750.0)


class Processing(_Model):
    """In-camera / scanner processing from raw to the delivered RGB file."""

    white_balance: Literal["auto", "none", "reference"] = Field(
        "auto",
        description="auto: clear glass made neutral; none: raw channel gains; reference: gains "
        "calibrated for a black body at wb_reference_k (a lamp at another temperature leaves a cast)",
    )
    wb_reference_k: float = Field(5000.0, ge=1500.0, le=12000.0)
    wb_error: tuple[float, float, float] = Field(
        (1.0, 1.0, 1.0), description="residual per-channel gain after white balance"
    )
    color_matrix: (
        Literal["auto"]
        | tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]]
    ) = Field(
        "auto",
        description="3x3 camera-RGB -> output-RGB matrix after white balance; 'auto' = the "
        "least-squares colorimetric matrix for this camera's QE (towards CIE 1931 / sRGB)",
    )
    saturation: float = Field(1.0, ge=0.0, le=3.0, description="chroma gain about the grey axis")
    black_level: float = Field(
        0.0, ge=0.0, le=0.5, description="linear level mapped to black (contrast stretch before gamma)"
    )
    background_level: float = Field(
        0.88, gt=0.1, le=1.0, description="linear value the clear glass maps to before gamma"
    )
    gamma: float = Field(2.2, ge=1.0, le=3.0, description="display gamma; output = linear**(1/gamma)")
    jpeg_quality: int | None = Field(None, ge=5, le=100)


class Spectral(_Model):
    """Spectral sampling of the render."""

    n_bands: int = Field(16, ge=1, le=300)
    lo_nm: float = Field(400.0, ge=300.0, le=650.0)
    hi_nm: float = Field(700.0, ge=450.0, le=1100.0)
    psf_groups: int = Field(
        2, ge=1, le=300, description="adjacent bands sharing one PSF (= n_bands for exact)"
    )

    @model_validator(mode="after")
    def _check(self) -> Spectral:
        if self.lo_nm >= self.hi_nm:
            raise ValueError(f"lo_nm={self.lo_nm} must be below hi_nm={self.hi_nm}")
        if self.psf_groups > self.n_bands:
            raise ValueError(f"psf_groups={self.psf_groups} cannot exceed n_bands={self.n_bands}")
        return self


class ScannerProfile(_Model):
    """One imaging setup: illuminant, stain, optics, camera, processing, spectral sampling."""

    name: str
    description: str = ""
    illuminant: Illuminant = Illuminant()
    stain: Stain = Stain()
    optics: Optics = Optics()
    camera: Camera = Camera()
    processing: Processing = Processing()
    spectral: Spectral = Spectral()

    # -- persistence --------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The profile as JSON-able data."""
        return self.model_dump(mode="json")

    def to_json(self) -> str:
        """The profile as indented JSON text."""
        return json.dumps(self.to_dict(), indent=2)

    def to_yaml(self) -> str:
        """The profile as YAML text (fields in declaration order)."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> Path:
        """Write as YAML (``.yaml``/``.yml``) or JSON (anything else)."""
        path = Path(path)
        text = self.to_yaml() if path.suffix.lower() in {".yaml", ".yml"} else self.to_json()
        path.write_text(text)
        return path

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "profile") -> ScannerProfile:
        """A validated profile from data; errors name ``source`` and the field (InputError)."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err.get("loc", ())) or "(root)"
            raise InputError(f"{source}: {where}", err.get("input"), err.get("msg", "a valid value")) from exc

    @classmethod
    def load(cls, path: str | Path) -> ScannerProfile:
        """Read a profile from a JSON or YAML file."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise InputError("profile file", str(path), f"a readable JSON/YAML file ({exc.strerror})") from exc
        try:
            data = yaml.safe_load(text)  # YAML is a superset of JSON
        except yaml.YAMLError as exc:
            raise InputError(str(path), "unparseable text", "valid JSON or YAML") from exc
        if not isinstance(data, dict):
            raise InputError(str(path), type(data).__name__, "a mapping of profile fields")
        return cls.from_dict(data, source=str(path))
