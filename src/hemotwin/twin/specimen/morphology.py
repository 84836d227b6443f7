"""Morphology records of blood-smear objects and their per-class samplers.

Every object of a specimen is a frozen pydantic record holding *all* the numbers needed to draw it
again: geometry in µm (never pixels), absorber amounts in peak-OD units and a ``texture_seed`` for
the procedural textures and granule positions. The samplers draw such records from per-class
priors that follow docs/clinical_rules.md §11.

All starting absorber amounts live in **one place**: :data:`WBC_PRIORS` (white cells, per class),
:data:`RBC_PRIORS` (red-cell subtypes) and :data:`PLATELET_PRIOR`. They are first guesses from the
literature to be tuned against real CellaVision images; tune them there, not in the drawing code.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator
from scipy import special

from hemotwin.errors import InputError
from hemotwin.taxonomy import CLASS_CODES

from ._base import Record

#: The white-cell classes the twin draws: the 15 codes of :mod:`hemotwin.taxonomy`, in its order.
LEUKOCYTE_CLASSES: tuple[str, ...] = CLASS_CODES
RED_CELL_TYPES: tuple[str, ...] = (
    "discocyte", "spherocyte", "target", "elliptocyte", "schistocyte", "dacrocyte",
    "polychromatic",
)

Pair = tuple[float, float]

# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


def _omit_unset(data: Any, fields: tuple[str, ...]) -> Any:
    """Drop ``fields`` that hold their "unset" default (None or empty) from a serialised record.

    Fields of the measured style are left out of the dumps of drawn records, so those stay byte
    for byte what they were (manifests, stored specimens); the defaults restore them on loading.
    """
    if isinstance(data, dict):
        for name in fields:
            if name in data and (data[name] is None or data[name] == () or data[name] == []):
                del data[name]
    return data


class Harmonic(Record):
    """One Fourier term of an outline: radius *= 1 + amp * cos(k * theta + phase)."""

    k: int = Field(ge=1, le=12)
    amp: float = Field(ge=0.0, le=0.5)
    phase_deg: float = 0.0


class Spot(Record):
    """A round feature (nucleolus, vacuole, hof) at ``center_um`` (y, x) of radius ``radius_um``."""

    center_um: Pair
    radius_um: float = Field(gt=0.0)


class Rod(Record):
    """An Auer rod: a thin capsule of ``length_um`` x ``width_um`` at ``center_um``."""

    center_um: Pair
    length_um: float = Field(gt=0.0)
    width_um: float = Field(gt=0.0)
    angle_deg: float = 0.0
    purple: float = Field(default=1.0, ge=0.0)


class Lobe(Record):
    """An elliptical nuclear lobe in the nucleus frame (µm); ``outline`` harmonics roughen it."""

    center_um: Pair
    radii_um: Pair
    angle_deg: float = 0.0
    outline: tuple[Harmonic, ...] = ()

    @model_serializer(mode="wrap")
    def _omit_empty(self, handler: SerializerFunctionWrapHandler) -> Any:
        return _omit_unset(handler(self), ("outline",))


class NucleusShape(Record):
    """Geometry of a nucleus in the cell's local frame (µm, before the cell rotation).

    ``kind`` selects the construction:

    - ``round``/``oval``/``irregular``: an ellipse of ``radii_um`` with ``outline`` harmonics;
    - ``kidney``/``folded``: the ellipse minus a notch circle on its +x side, of depth
      ``indentation`` x (ellipse width); ``folded`` adds stronger harmonics (lobulation);
    - ``band``: a horseshoe arc of radius ``radii_um[1]`` and half-width ``radii_um[0]``, opening
      on the -y side, with half aperture ``band_aperture_deg``;
    - ``segmented``/``bilobed``: union of ``lobes`` linked by filaments of ``filament_width_um``
      (``smooth_um`` > 0 blends neighbouring lobes into a waist instead);
    - ``smudge``: an amorphous ellipse with strong harmonics and streaky chromatin (KSC);
    - ``contour``: the closed polygon ``contour_um`` ((y, x) points in µm, in the nucleus frame
      about ``center_um``), e.g. an outline drawn from a measured shape model; ``radii_um``
      then holds the area-equivalent radius twice.
    """

    kind: Literal[
        "round", "oval", "irregular", "kidney", "folded", "band", "segmented", "bilobed",
        "smudge", "contour",
    ]
    center_um: Pair = (0.0, 0.0)
    angle_deg: float = 0.0
    radii_um: Pair
    indentation: float = Field(default=0.0, ge=0.0, lt=1.0)
    outline: tuple[Harmonic, ...] = ()
    lobes: tuple[Lobe, ...] = ()
    filament_width_um: float = Field(default=0.3, gt=0.0)
    smooth_um: float = Field(default=0.0, ge=0.0)
    band_aperture_deg: float = Field(default=120.0, gt=0.0, le=180.0)
    contour_um: tuple[Pair, ...] = ()

    @model_serializer(mode="wrap")
    def _omit_empty(self, handler: SerializerFunctionWrapHandler) -> Any:
        return _omit_unset(handler(self), ("contour_um",))

    @model_validator(mode="after")
    def _contour_points(self) -> NucleusShape:
        if self.kind == "contour" and len(self.contour_um) < 8:
            raise InputError("contour_um", len(self.contour_um), "at least 8 outline points for kind 'contour'")
        return self


class Chromatin(Record):
    """Chromatin texture: lognormal-modulated band-passed noise.

    ``density`` is the mean purple amount; ``contrast`` the log-amplitude of the modulation (open
    blast chromatin ~0.2, clumped mature chromatin ~0.5); ``scale_um`` the dominant clump period.
    """

    density: float = Field(ge=0.0)
    contrast: float = Field(ge=0.0, le=2.0)
    scale_um: float = Field(gt=0.0)
    azure_b: float = Field(default=0.0, ge=0.0)
    eosin: float = Field(default=0.0, ge=0.0)
    #: Power-law texture instead of the band-passed one: log-log slope of the power spectrum
    #: above the roll-off period ``scale_um`` (``_texture.power_kind``).
    spectral_slope: float | None = Field(default=None, ge=-6.0, le=0.0)

    @model_serializer(mode="wrap")
    def _omit_empty(self, handler: SerializerFunctionWrapHandler) -> Any:
        return _omit_unset(handler(self), ("spectral_slope",))


class CytoplasmStain(Record):
    """Absorber amounts of the cytoplasm (peak OD) and its texture.

    ``edge_gradient`` > 0 deepens the colour towards the cell edge (amount x (1 + g * r^2) / norm),
    as in reactive lymphocytes.
    """

    purple: float = Field(default=0.0, ge=0.0)
    azure_b: float = Field(default=0.0, ge=0.0)
    eosin: float = Field(default=0.0, ge=0.0)
    hemoglobin: float = Field(default=0.0, ge=0.0)
    edge_gradient: float = Field(default=0.0, ge=0.0)
    texture_contrast: float = Field(default=0.08, ge=0.0, le=1.0)
    texture_scale_um: float = Field(default=2.0, gt=0.0)
    #: Power-law texture (lognormal, mean 1) instead of the smooth blotches: log-log slope of the
    #: power spectrum above the roll-off period ``texture_scale_um``.
    texture_slope: float | None = Field(default=None, ge=-6.0, le=0.0)

    @model_serializer(mode="wrap")
    def _omit_empty(self, handler: SerializerFunctionWrapHandler) -> Any:
        return _omit_unset(handler(self), ("texture_slope",))


class GranulePopulation(Record):
    """A population of granules drawn as Gaussian blobs of FWHM ``size_um``.

    ``packing='random'`` scatters ``count`` granules; ``packing='packed'`` fills the region on a
    jittered hexagonal lattice of spacing ~``size_um`` keeping a fraction ``fill`` of the sites
    (eosinophils). ``region='cell'`` lets granules lie over the nucleus too (basophils).
    Amounts are the peak OD of one granule.
    """

    kind: Literal["azurophilic", "specific", "eosinophilic", "basophilic", "dust"]
    count: int = Field(default=0, ge=0)
    size_um: float = Field(gt=0.0)
    size_jitter: float = Field(default=0.15, ge=0.0, le=0.5)
    packing: Literal["random", "packed"] = "random"
    fill: float = Field(default=0.9, ge=0.0, le=1.0)
    region: Literal["cytoplasm", "cell", "nucleus_near"] = "cytoplasm"
    purple: float = Field(default=0.0, ge=0.0)
    azure_b: float = Field(default=0.0, ge=0.0)
    eosin: float = Field(default=0.0, ge=0.0)


class LibraryCellRef(Record):
    """A real white cell of a cell library (:mod:`hemotwin.twin.cell_library`), drawn as measured.

    The reference is enough to redraw the cell exactly given the library: the drawing reads the
    entry's absorber maps and masks and places them with the object's ``rotation_deg`` (after the
    mirror image when ``flip``).

    Attributes
    ----------
    library
        Folder of the library (as resolved when the cell was drawn).
    library_id
        Content id of the library (its ``library.json``); a different library at the same path is
        refused rather than drawn.
    entry
        Entry id within the library (``"<CODE>/<n>"``).
    sha256
        SHA-256 of the source image (provenance; also checked against the entry).
    flip
        Mirror the cell (its local x axis) before rotating it.
    radius_um
        Radius around the cell's centroid that holds its whole mask (placement without loading).
    """

    library: str
    library_id: str
    entry: str
    sha256: str
    flip: bool = False
    radius_um: float = Field(gt=0.0, le=60.0)


class WBCMorphology(Record):
    """Complete description of one white cell (or smudge cell), in µm and peak-OD units.

    With ``library_cell`` set the cell is a real one from a cell library: it is drawn from the
    library's absorber maps and masks, and the procedural fields summarise its measured masks
    (area-equivalent diameter, moment ellipse of cell and nucleus, N:C ratio, mean amounts) so
    that everything reading a record (manifests, placement) works unchanged.
    """

    kind: Literal["wbc"] = "wbc"
    code: str
    diameter_um: float = Field(gt=0.0, le=60.0)
    elongation: float = Field(default=1.0, ge=1.0, le=3.0)
    outline: tuple[Harmonic, ...] = ()
    nucleus: NucleusShape
    nc_ratio: float = Field(ge=0.0, le=1.0)
    chromatin: Chromatin
    nucleoli: tuple[Spot, ...] = ()
    nucleolus_contrast: float = Field(default=0.45, ge=0.0, le=1.0)
    cytoplasm: CytoplasmStain
    granules: tuple[GranulePopulation, ...] = ()
    vacuoles: tuple[Spot, ...] = ()
    auer_rods: tuple[Rod, ...] = ()
    hof: Spot | None = None
    hof_depth: float = Field(default=0.0, ge=0.0, le=1.0)
    texture_seed: int = Field(ge=0)
    library_cell: LibraryCellRef | None = None

    @model_serializer(mode="wrap")
    def _omit_absent_library_cell(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A procedural cell's dump stays what it was before real cells existed (manifests and
        # stored records byte for byte); the field's default restores it on loading.
        data = handler(self)
        if isinstance(data, dict) and data.get("library_cell", 0) is None:
            del data["library_cell"]
        return data

    @model_validator(mode="after")
    def _known_code(self) -> WBCMorphology:
        if self.code not in LEUKOCYTE_CLASSES:
            raise InputError("code", self.code, f"one of {', '.join(LEUKOCYTE_CLASSES)}")
        return self

    @property
    def auer_rod_count(self) -> int:
        """Number of Auer rods in the cell."""
        return len(self.auer_rods)


class RBCMorphology(Record):
    """A red cell: area-equivalent ``diameter_um``, biconcave profile and amounts at the rim.

    ``pallor_fraction`` is the pallor diameter / cell diameter and ``pallor_depth`` the fraction
    of the rim amount missing at the centre (0.6 -> the centre holds ~40 % of the rim).
    """

    kind: Literal["rbc"] = "rbc"
    subtype: Literal[
        "discocyte", "spherocyte", "target", "elliptocyte", "schistocyte", "dacrocyte",
        "polychromatic",
    ]
    diameter_um: float = Field(gt=0.0, le=30.0)
    thickness_um: float = Field(default=2.0, gt=0.0)
    elongation: float = Field(default=1.0, ge=1.0, le=4.0)
    pallor_fraction: float = Field(default=0.33, ge=0.0, le=0.9)
    pallor_depth: float = Field(default=0.6, ge=0.0, le=1.0)
    target_spot: float = Field(default=0.0, ge=0.0, le=1.5)
    rim_rolloff: float = Field(default=0.15, ge=0.0, le=1.0)
    cut_offset: float = Field(default=1.0, ge=-1.0, le=1.0)
    cut_angle_deg: float = 0.0
    bite: Spot | None = None
    tail_length_um: float = Field(default=0.0, ge=0.0)
    tail_width_um: float = Field(default=0.5, gt=0.0)
    eosin: float = Field(default=0.45, ge=0.0)
    hemoglobin: float = Field(default=0.55, ge=0.0)
    azure_b: float = Field(default=0.0, ge=0.0)
    texture_seed: int = Field(default=0, ge=0)


class PlateletMorphology(Record):
    """A platelet: irregular pale-azure hyalomere with a purple granular centre."""

    kind: Literal["platelet"] = "platelet"
    diameter_um: float = Field(gt=0.0, le=20.0)
    elongation: float = Field(default=1.0, ge=1.0, le=3.0)
    outline: tuple[Harmonic, ...] = ()
    granule_count: int = Field(default=10, ge=0)
    granule_size_um: float = Field(default=0.3, gt=0.0)
    granule_purple: float = Field(default=0.6, ge=0.0)
    hyalomere_purple: float = Field(default=0.10, ge=0.0)
    hyalomere_azure_b: float = Field(default=0.08, ge=0.0)
    texture_seed: int = Field(default=0, ge=0)


# --------------------------------------------------------------------------------------------
# Priors: every default amount lives here
# --------------------------------------------------------------------------------------------

#: Per-class priors of white cells. Keys: ``d`` diameter (lo, hi, mean, sd) µm, clipped;
#: ``nc`` nucleus/cell area ratio range; ``chrom`` (density purple, contrast, scale µm);
#: ``cyto`` cytoplasm amounts; ``gran`` granule populations (``dens`` = per µm² of cytoplasm
#: when ``count`` is not given); ``nucleoli`` (probability, n_lo, n_hi, r_lo, r_hi);
#: ``vac`` (probability, n_hi, r_lo, r_hi); ``auer`` probability; ``ecc`` eccentricity range
#: (nucleus-centre offset / free room).
WBC_PRIORS: dict[str, dict[str, Any]] = {
    "MYO": dict(d=(12, 20, 15.0, 1.8), nc=(0.72, 0.85), ecc=(0.0, 0.25),
                chrom=(0.80, 0.22, 0.55), nucleoli=(0.95, 2, 5, 0.40, 0.85),
                cyto=dict(azure_b=0.45, eosin=0.22, purple=0.02),
                gran=[dict(kind="azurophilic", p=0.4, count=(0, 10), size_um=0.38,
                           purple=0.75, eosin=0.08, azure_b=0.05)],
                auer=0.15),
    "MOB": dict(d=(15, 25, 18.0, 2.3), nc=(0.50, 0.68), ecc=(0.0, 0.35),
                shapes={"round": 0.6, "folded": 0.4},
                chrom=(0.75, 0.20, 0.55), nucleoli=(0.9, 1, 4, 0.45, 0.95),
                cyto=dict(azure_b=0.38, eosin=0.30, purple=0.03, texture_contrast=0.12),
                gran=[dict(kind="dust", p=0.5, count=(10, 40), size_um=0.25, purple=0.40,
                           eosin=0.05)],
                vac=(0.45, 6, 0.25, 0.6)),
    "PMO": dict(d=(15, 25, 17.5, 2.0), nc=(0.38, 0.52), ecc=(0.45, 0.8),
                chrom=(0.90, 0.32, 0.75), nucleoli=(0.5, 1, 2, 0.45, 0.7),
                cyto=dict(azure_b=0.40, eosin=0.40, purple=0.02),
                gran=[dict(kind="azurophilic", p=1.0, dens=(0.45, 0.8), size_um=0.42,
                           purple=0.85, eosin=0.12, azure_b=0.08)],
                hof=(0.35, 0.6), auer=0.05),
    "PMB": dict(d=(15, 25, 18.0, 2.0), nc=(0.42, 0.55), ecc=(0.0, 0.3),
                chrom=(0.85, 0.25, 0.65), nucleoli=(0.25, 1, 2, 0.4, 0.6),
                cyto=dict(azure_b=0.32, eosin=0.40, purple=0.03),
                gran=[dict(kind="azurophilic", p=0.55, dens=(0.25, 0.6), size_um=0.38,
                           purple=0.8, eosin=0.12, azure_b=0.05),
                      dict(kind="dust", p=1.0, dens=(0.4, 0.9), size_um=0.22, purple=0.35,
                           eosin=0.06)],
                auer=0.3),
    "MYB": dict(d=(12, 18, 14.2, 1.2), nc=(0.33, 0.48), ecc=(0.4, 0.8),
                shapes={"round": 0.5, "oval": 0.5},
                chrom=(1.00, 0.40, 0.85),
                cyto=dict(azure_b=0.30, eosin=0.50, purple=0.05),
                gran=[dict(kind="specific", p=1.0, dens=(3.0, 4.5), size_um=0.22, purple=0.24,
                           eosin=0.08),
                      dict(kind="azurophilic", p=0.8, count=(3, 15), size_um=0.36,
                           purple=0.70, eosin=0.10)]),
    "MMZ": dict(d=(10, 16, 13.6, 1.0), nc=(0.32, 0.45), ecc=(0.15, 0.5),
                chrom=(1.05, 0.48, 0.95),
                cyto=dict(azure_b=0.22, eosin=0.45, purple=0.04),
                gran=[dict(kind="specific", p=1.0, dens=(3.5, 5.0), size_um=0.2, purple=0.22,
                           eosin=0.08)]),
    "NGB": dict(d=(10, 16, 13.5, 1.0), nc=(0.25, 0.35), ecc=(0.0, 0.2),
                chrom=(1.25, 0.50, 1.0),
                cyto=dict(azure_b=0.12, eosin=0.45, purple=0.04),
                gran=[dict(kind="specific", p=1.0, dens=(3.5, 5.0), size_um=0.2, purple=0.2,
                           eosin=0.07)]),
    "NGS": dict(d=(10, 16, 13.8, 1.0), nc=(0.22, 0.32), ecc=(0.0, 0.15),
                lobes={2: 0.2, 3: 0.45, 4: 0.25, 5: 0.1},
                chrom=(1.32, 0.52, 1.0),
                cyto=dict(azure_b=0.12, eosin=0.45, purple=0.04),
                gran=[dict(kind="specific", p=1.0, dens=(3.5, 5.0), size_um=0.2, purple=0.2,
                           eosin=0.07)]),
    "EOS": dict(d=(12, 17, 14.0, 1.1), nc=(0.22, 0.32), ecc=(0.0, 0.2),
                lobes={2: 0.85, 3: 0.15},
                chrom=(1.40, 0.45, 1.0),
                cyto=dict(azure_b=0.15, eosin=0.40, purple=0.02),
                gran=[dict(kind="eosinophilic", p=1.0, packing="packed", fill=(0.85, 0.97),
                           size_um=0.70, size_jitter=0.08, eosin=2.2, purple=0.06, azure_b=0.3,
                           hemoglobin=0.0)]),
    "BAS": dict(d=(10, 15, 12.8, 1.0), nc=(0.28, 0.40), ecc=(0.0, 0.2),
                lobes={2: 0.6, 3: 0.4},
                chrom=(1.10, 0.30, 0.9),
                cyto=dict(azure_b=0.15, eosin=0.45, purple=0.05),
                gran=[dict(kind="basophilic", p=1.0, region="cell", dens=(0.35, 0.6),
                           size_um=0.80, size_jitter=0.25, purple=1.0, azure_b=0.6)]),
    "LYT": dict(d=(7, 15, 10.3, 0.9), nc=(0.62, 0.80), ecc=(0.05, 0.45),
                shapes={"round": 0.8, "kidney": 0.2},
                chrom=(1.22, 0.45, 1.1),
                cyto=dict(azure_b=0.36, eosin=0.22, purple=0.02),
                gran=[dict(kind="azurophilic", p=0.2, count=(2, 8), size_um=0.35, purple=0.8,
                           eosin=0.08)]),
    "LYA": dict(d=(12, 25, 16.0, 2.4), nc=(0.25, 0.42), ecc=(0.3, 0.8),
                chrom=(1.00, 0.35, 0.9), nucleoli=(0.3, 1, 1, 0.4, 0.6),
                cyto=dict(azure_b=0.30, eosin=0.18, purple=0.01, edge_gradient=1.6),
                scallop=True),
    "MON": dict(d=(12, 20, 16.0, 1.8), nc=(0.33, 0.48), ecc=(0.1, 0.5),
                shapes={"folded": 0.55, "kidney": 0.3, "irregular": 0.15},
                chrom=(0.85, 0.25, 0.7),
                cyto=dict(azure_b=0.30, eosin=0.42, purple=0.04, texture_contrast=0.15,
                          texture_scale_um=0.8),
                gran=[dict(kind="dust", p=0.9, dens=(0.3, 0.9), size_um=0.22, purple=0.35,
                           eosin=0.05)],
                vac=(0.55, 8, 0.2, 0.55)),
    "EBO": dict(d=(8, 12, 9.6, 0.9), nc=(0.12, 0.28), ecc=(0.3, 0.9),
                chrom=(1.30, 0.18, 1.0),
                cyto=dict(azure_b=0.32, eosin=0.48, purple=0.0, hemoglobin=0.30,
                          texture_contrast=0.04)),
    "KSC": dict(d=(10, 22, 15.0, 2.5), nc=(1.0, 1.0), ecc=(0.0, 0.0),
                chrom=(0.38, 0.45, 1.2),
                cyto=dict()),
}

#: Absorbers bound by chromatin per unit of a class's chromatin index (``chrom[0]`` above).
#: DNA binds azure B and eosin Y together as the Romanowsky–Giemsa complex: the sharp 552 nm
#: "purple" band plus the broad azure (600–660 nm) and eosin (500–540 nm) bands of its
#: constituents. Calibrated so real CellaVision nuclei (the public PBC data set) are matched
#: through the analyzer-100x profile (``scripts/calibrate_amounts.py``, docs/benchmarks.md).
CHROMATIN_MIX: dict[str, float] = {"purple": 0.3, "azure_b": 1.2, "eosin": 2.6}

#: Red-cell subtype priors: diameter (mean, sd, lo, hi) µm and record overrides.
RBC_PRIORS: dict[str, dict[str, Any]] = {
    "discocyte": dict(d=(7.6, 0.4, 6.5, 8.6), eosin=0.47, hemoglobin=0.55, azure_b=0.25,
                      pallor_fraction=(0.28, 0.40), pallor_depth=(0.55, 0.65),
                      elongation=(1.0, 1.06)),
    "spherocyte": dict(d=(6.5, 0.3, 5.6, 7.2), eosin=0.60, hemoglobin=0.70, azure_b=0.29,
                       pallor_fraction=(0.0, 0.0), pallor_depth=(0.0, 0.0),
                       elongation=(1.0, 1.03)),
    "target": dict(d=(7.8, 0.4, 6.8, 9.0), eosin=0.47, hemoglobin=0.55, azure_b=0.25,
                   pallor_fraction=(0.50, 0.60), pallor_depth=(0.6, 0.72),
                   target_spot=(0.8, 1.0), elongation=(1.0, 1.05)),
    "elliptocyte": dict(d=(7.2, 0.4, 6.2, 8.4), eosin=0.47, hemoglobin=0.55, azure_b=0.25,
                        pallor_fraction=(0.22, 0.32), pallor_depth=(0.35, 0.5),
                        elongation=(1.5, 2.5)),
    "schistocyte": dict(d=(4.2, 0.5, 3.0, 5.0), eosin=0.54, hemoglobin=0.62, azure_b=0.27,
                        pallor_fraction=(0.0, 0.0), pallor_depth=(0.0, 0.0),
                        elongation=(1.0, 1.3)),
    "dacrocyte": dict(d=(7.0, 0.4, 6.0, 8.0), eosin=0.48, hemoglobin=0.56, azure_b=0.25,
                      pallor_fraction=(0.22, 0.30), pallor_depth=(0.35, 0.5),
                      elongation=(1.0, 1.15)),
    "polychromatic": dict(d=(8.5, 0.4, 7.6, 9.6), eosin=0.34, hemoglobin=0.42, azure_b=0.47,
                          pallor_fraction=(0.18, 0.28), pallor_depth=(0.25, 0.4),
                          elongation=(1.0, 1.05)),
}

#: Platelet prior: size (lo, hi) µm, giant probability and size, amounts.
PLATELET_PRIOR: dict[str, Any] = dict(
    d=(1.5, 3.0), giant_p=0.02, giant_d=(5.0, 8.0), granule_purple=(0.45, 0.8),
    hyalomere_purple=0.10, hyalomere_azure_b=0.08, granule_size_um=0.28,
    granules_per_um2=2.2,
)

#: Default faint eosin of the dried plasma film between the cells.
PLASMA_EOSIN: float = 0.015

#: Normal adult differential used when a field is composed without one (docs/clinical_rules.md §11, approx.).
NORMAL_DIFFERENTIAL: dict[str, float] = {
    "NGS": 0.56, "NGB": 0.03, "LYT": 0.29, "LYA": 0.02, "MON": 0.06, "EOS": 0.03, "BAS": 0.01,
}


# --------------------------------------------------------------------------------------------
# Samplers
# --------------------------------------------------------------------------------------------


def _check_rng(rng: Any) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise InputError("rng", type(rng).__name__, "a numpy.random.Generator")
    return rng


def _clipped_normal(rng: np.random.Generator, mean: float, sd: float, lo: float,
                    hi: float) -> float:
    return float(np.clip(rng.normal(mean, sd), lo, hi))


def _harmonics(rng: np.random.Generator, ks: tuple[int, ...], amp: float) -> tuple[Harmonic, ...]:
    # Amplitudes fall with k so outlines stay smooth blobs rather than stars.
    return tuple(
        Harmonic(k=k, amp=float(rng.uniform(0.3, 1.0) * amp * (2.0 / k)),
                 phase_deg=float(rng.uniform(0, 360)))
        for k in ks
    )


def _choice(rng: np.random.Generator, probs: dict[Any, float]) -> Any:
    keys = list(probs)
    p = np.array([probs[k] for k in keys], dtype=float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _segmented_lobes(rng: np.random.Generator, n: int, r_lobe: float, gap: Pair,
                     room: float) -> tuple[Lobe, ...]:
    """Lay ``n`` lobes along a curling chain (C/S shapes), centred, within radius ``room``."""
    for _ in range(20):
        radii = r_lobe * rng.uniform(0.85, 1.15, size=n)
        pts = [np.zeros(2)]
        heading = rng.uniform(0, 2 * np.pi)
        turn_sign = rng.choice([-1.0, 1.0])
        for i in range(1, n):
            step = radii[i - 1] + radii[i] + rng.uniform(*gap)
            pts.append(pts[-1] + step * np.array([np.sin(heading), np.cos(heading)]))
            # Mostly turn the same way: the chain of a segmented neutrophil curls like a C.
            heading += turn_sign * rng.uniform(0.5, 1.1) + rng.normal(0, 0.25)
        p = np.array(pts)
        p -= (p.max(0) + p.min(0)) / 2
        extent = float(np.max(np.hypot(p[:, 0], p[:, 1]) + radii * 1.2))
        if extent <= room or _ == 19:
            if extent > room:  # squeeze the chain into the cell rather than fail
                p *= max(room - radii.max(), 0.1) / max(extent - radii.max(), 1e-6)
            return tuple(
                Lobe(center_um=(float(y), float(x)),
                     radii_um=(float(r * rng.uniform(0.8, 1.0)), float(r * rng.uniform(1.0, 1.25))),
                     angle_deg=float(rng.uniform(0, 180)))
                for (y, x), r in zip(p, radii, strict=True)
            )
    raise AssertionError("unreachable")


def _nucleus_for(code: str, prior: dict[str, Any], rng: np.random.Generator, R: float,
                 nc: float) -> NucleusShape:
    """Nucleus geometry for ``code`` in a cell of radius ``R`` with area ratio ``nc``."""
    rn = math.sqrt(nc) * R  # area-equivalent nucleus radius
    angle = float(rng.uniform(0, 360))
    kind = _choice(rng, prior["shapes"]) if "shapes" in prior else None

    def eccentric(r_extent: float) -> Pair:
        room = max(R - r_extent - 0.3, 0.0)
        off = room * float(rng.uniform(*prior["ecc"]))
        phi = rng.uniform(0, 2 * np.pi)
        return (float(off * np.sin(phi)), float(off * np.cos(phi)))

    if code in ("NGS", "EOS", "BAS"):
        n = int(_choice(rng, prior["lobes"]))
        r_l = {"NGS": 1.45, "EOS": 2.0, "BAS": 1.8}[code] * R / 6.0
        gap = {"NGS": (0.5, 1.1), "EOS": (0.6, 1.3), "BAS": (-0.4, 0.2)}[code]
        lobes = _segmented_lobes(rng, n, r_l, gap, room=R - 0.6)
        return NucleusShape(
            kind="segmented" if n > 2 else "bilobed", center_um=eccentric(0.0), angle_deg=angle,
            radii_um=(r_l, r_l), lobes=lobes,
            filament_width_um=float(rng.uniform(0.22, 0.38) if code != "BAS" else 0.8),
            smooth_um=0.6 if code == "BAS" else 0.0,
        )
    if code == "PMB":
        # Butterfly: two round lobes blended into a waist.
        r_l = rn / math.sqrt(2) * 1.05
        sep = r_l * float(rng.uniform(0.85, 1.05))
        lobes = tuple(
            Lobe(center_um=(0.0, s * sep), radii_um=(r_l * rng.uniform(0.95, 1.1), r_l),
                 angle_deg=float(rng.uniform(-15, 15)))
            for s in (-1.0, 1.0)
        )
        return NucleusShape(kind="bilobed", center_um=eccentric(sep + r_l), angle_deg=angle,
                            radii_um=(r_l, r_l), lobes=lobes, smooth_um=0.35 * r_l,
                            filament_width_um=1.0)
    if code == "NGB":
        half_w = float(rng.uniform(0.65, 0.9)) * R / 6.0
        arc_r = float(rng.uniform(0.42, 0.55)) * R
        return NucleusShape(kind="band", center_um=eccentric(arc_r + half_w), angle_deg=angle,
                            radii_um=(half_w, arc_r),
                            band_aperture_deg=float(rng.uniform(70, 115)),
                            outline=_harmonics(rng, (3,), 0.05))
    if code == "MMZ" or kind == "kidney":
        el = float(rng.uniform(1.1, 1.35))
        ry, rx = rn * 1.05 * math.sqrt(el), rn * 1.05 / math.sqrt(el)
        ind = float(rng.uniform(0.18, 0.42)) if code == "MMZ" else float(rng.uniform(0.08, 0.25))
        return NucleusShape(kind="kidney", center_um=eccentric(max(ry, rx)), angle_deg=angle,
                            radii_um=(ry, rx), indentation=ind,
                            outline=_harmonics(rng, (3, 4), 0.03))
    if code == "MON" and kind in ("folded", "irregular"):
        el = float(rng.uniform(1.1, 1.45))
        ry, rx = rn * 1.08 * math.sqrt(el), rn * 1.08 / math.sqrt(el)
        return NucleusShape(kind=kind, center_um=eccentric(max(ry, rx)), angle_deg=angle,
                            radii_um=(ry, rx),
                            indentation=float(rng.uniform(0.2, 0.45)) if kind == "folded" else 0.0,
                            outline=_harmonics(rng, (2, 3, 4), 0.12))
    if code == "MOB" and kind == "folded":
        return NucleusShape(kind="folded", center_um=eccentric(rn * 1.1), angle_deg=angle,
                            radii_um=(rn * 1.05, rn * 0.97),
                            indentation=float(rng.uniform(0.08, 0.2)),
                            outline=_harmonics(rng, (2, 3), 0.04))
    if code == "LYA":
        el = float(rng.uniform(1.0, 1.3))
        return NucleusShape(kind="irregular", center_um=eccentric(rn * math.sqrt(el)),
                            angle_deg=angle, radii_um=(rn * math.sqrt(el), rn / math.sqrt(el)),
                            outline=_harmonics(rng, (2, 3, 4), 0.08))
    if code == "KSC":
        el = float(rng.uniform(1.1, 1.8))
        return NucleusShape(kind="smudge", angle_deg=angle,
                            radii_um=(R * math.sqrt(el), R / math.sqrt(el)),
                            outline=_harmonics(rng, (2, 3, 5), 0.16))
    # round / oval nuclei: blasts, promyelocytes, myelocytes, lymphocytes, erythroblasts
    el = float(rng.uniform(1.0, 1.08)) if (kind or "round") == "round" else float(
        rng.uniform(1.15, 1.35))
    ry, rx = rn * math.sqrt(el), rn / math.sqrt(el)
    return NucleusShape(kind="oval" if el > 1.1 else "round", center_um=eccentric(ry),
                        angle_deg=angle, radii_um=(ry, rx),
                        outline=_harmonics(rng, (2, 3), 0.025))


def _vacuoles(prior: dict[str, Any], rng: np.random.Generator, R: float) -> list[Spot]:
    """Cytoplasmic vacuoles of a cell of radius ``R`` (µm) from the class prior's ``vac`` entry."""
    vacuoles: list[Spot] = []
    if "vac" in prior and rng.random() < prior["vac"][0]:
        _, n_hi, r_lo, r_hi = prior["vac"]
        for _ in range(int(rng.integers(1, n_hi + 1))):
            rho, phi = R * math.sqrt(rng.uniform(0.1, 0.75)), rng.uniform(0, 2 * np.pi)
            vacuoles.append(Spot(center_um=(float(rho * np.sin(phi)), float(rho * np.cos(phi))),
                                 radius_um=float(rng.uniform(r_lo, r_hi))))
    return vacuoles


def _hof(prior: dict[str, Any], rng: np.random.Generator, center_um: Pair, n_r: float) -> tuple[Spot | None, float]:
    """The Golgi hof and its depth: against a nucleus of radius ``n_r`` at ``center_um``, facing the cell centre."""
    if "hof" not in prior:
        return None, 0.0
    cy, cx = center_um
    norm = math.hypot(cy, cx)
    dy, dx = (-cy / norm, -cx / norm) if norm > 0.1 else (1.0, 0.0)
    hr = n_r * float(rng.uniform(*prior["hof"])) * 1.3
    hof = Spot(center_um=(cy + dy * (n_r + 0.3 * hr), cx + dx * (n_r + 0.3 * hr)), radius_um=hr)
    return hof, float(rng.uniform(0.45, 0.7))


def sample_wbc(code: str, rng: np.random.Generator, *, style: str = "drawn") -> WBCMorphology:
    """Draw the morphology of one white cell of class ``code``.

    Parameters
    ----------
    code
        One of :data:`LEUKOCYTE_CLASSES`.
    rng
        Source of randomness; the record's ``texture_seed`` is drawn from it too, so the record
        alone re-creates the cell.
    style
        ``"drawn"`` (default): the geometric priors of :data:`WBC_PRIORS` (the same records as
        ever for a seed). ``"measured"``: sizes, shapes, textures and amounts drawn from the
        measured morphometry of real cells (``data/morphometry.json``) with the fitted
        corrections of ``data/specimen_fit.json`` (docs/specimen_generator.md); classes without
        real measurements (:func:`measured_classes`) keep the drawn priors.

    Returns
    -------
    WBCMorphology
    """
    if code not in WBC_PRIORS:
        raise InputError("code", code, f"one of {', '.join(LEUKOCYTE_CLASSES)}")
    if style not in WBC_STYLES:
        raise InputError("style", style, f"one of {', '.join(WBC_STYLES)}")
    rng = _check_rng(rng)
    if style == "measured" and code in measured_classes():
        return _sample_measured_wbc(code, rng)
    p = WBC_PRIORS[code]
    lo, hi, mean, sd = p["d"]
    if code == "LYT" and rng.random() < 0.15:
        mean = 12.0  # large lymphocytes (docs/clinical_rules.md §11: 10–15 µm)
    d = _clipped_normal(rng, mean, sd, lo, hi)
    R = d / 2.0
    nc = float(rng.uniform(*p["nc"]))
    nucleus = _nucleus_for(code, p, rng, R, nc)

    dens, contrast, scale = p["chrom"]
    dens = float(dens * rng.uniform(0.9, 1.1))
    chrom = Chromatin(density=CHROMATIN_MIX["purple"] * dens,
                      contrast=float(contrast * rng.uniform(0.85, 1.15)),
                      scale_um=float(scale * rng.uniform(0.85, 1.15)),
                      azure_b=CHROMATIN_MIX["azure_b"] * dens + (0.05 if code in ("MYO", "MOB") else 0.0),
                      eosin=CHROMATIN_MIX["eosin"] * dens)

    nucleoli: list[Spot] = []
    if "nucleoli" in p and rng.random() < p["nucleoli"][0]:
        _, n_lo, n_hi, r_lo, r_hi = p["nucleoli"]
        rr = min(nucleus.radii_um) * 0.55
        for _ in range(int(rng.integers(n_lo, n_hi + 1))):
            rho, phi = rr * math.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
            nucleoli.append(Spot(center_um=(float(rho * np.sin(phi)), float(rho * np.cos(phi))),
                                 radius_um=float(rng.uniform(r_lo, r_hi))))

    cyto_kw = dict(p["cyto"])
    for key in ("azure_b", "eosin", "purple", "hemoglobin"):
        if key in cyto_kw:
            cyto_kw[key] = float(cyto_kw[key] * rng.uniform(0.85, 1.15))
    if code == "EBO":
        # Orthochromatic (pink, haemoglobinised) to polychromatic (grey-blue).
        poly = float(rng.uniform(0, 1))
        cyto_kw.update(eosin=0.50 * (1 - poly) + 0.35 * poly,
                       hemoglobin=0.45 * (1 - poly) + 0.15 * poly,
                       azure_b=0.18 * (1 - poly) + 0.45 * poly, purple=0.02 * poly)
    cyto = CytoplasmStain(**cyto_kw)

    cyto_area = math.pi * R * R * (1 - nc)
    granules: list[GranulePopulation] = []
    for g in p.get("gran", []):
        if rng.random() >= g["p"]:
            continue
        kw = {k: v for k, v in g.items() if k not in ("p", "count", "dens", "fill", "hemoglobin")}
        if "fill" in g:
            kw["fill"] = float(rng.uniform(*g["fill"]))
        if "count" in g:
            kw["count"] = int(rng.integers(g["count"][0], g["count"][1] + 1))
        elif "dens" in g:
            area = math.pi * R * R if g.get("region") == "cell" else cyto_area
            kw["count"] = round(area * rng.uniform(*g["dens"]))
        kw["size_um"] = float(g["size_um"] * rng.uniform(0.9, 1.1))
        granules.append(GranulePopulation(**kw))

    vacuoles = _vacuoles(p, rng, R)

    rods: list[Rod] = []
    if rng.random() < p.get("auer", 0.0):
        n_rods = 1 if code != "PMB" else int(rng.integers(1, 6))  # APL "faggot" bundles
        base_phi = rng.uniform(0, 180)
        for _ in range(n_rods):
            rho, phi = R * rng.uniform(0.55, 0.8), rng.uniform(0, 2 * np.pi)
            rods.append(Rod(center_um=(float(rho * np.sin(phi)), float(rho * np.cos(phi))),
                            length_um=float(rng.uniform(2.0, 5.0) * min(1.0, R / 8)),
                            width_um=float(rng.uniform(0.25, 0.35)),
                            angle_deg=float(base_phi + rng.normal(0, 12)),
                            purple=float(rng.uniform(0.8, 1.2))))

    hof, hof_depth = _hof(p, rng, nucleus.center_um, max(nucleus.radii_um))

    if p.get("scallop"):
        outline = _harmonics(rng, (3, 5, 6, 7), 0.07)
    elif code == "KSC":
        outline = ()
    else:
        outline = _harmonics(rng, (3, 4), 0.03)
    return WBCMorphology(
        code=code, diameter_um=d, elongation=float(rng.uniform(1.0, 1.12)), outline=outline,
        nucleus=nucleus, nc_ratio=nc, chromatin=chrom, nucleoli=tuple(nucleoli),
        cytoplasm=cyto, granules=tuple(granules), vacuoles=tuple(vacuoles),
        auer_rods=tuple(rods), hof=hof, hof_depth=hof_depth,
        texture_seed=int(rng.integers(0, 2**31 - 1)),
    )


def sample_rbc(subtype: str, rng: np.random.Generator) -> RBCMorphology:
    """Draw one red cell of ``subtype`` (one of :data:`RED_CELL_TYPES`)."""
    if subtype not in RBC_PRIORS:
        raise InputError("subtype", subtype, f"one of {', '.join(RED_CELL_TYPES)}")
    rng = _check_rng(rng)
    p = RBC_PRIORS[subtype]
    mean, sd, lo, hi = p["d"]
    d = _clipped_normal(rng, mean, sd, lo, hi)
    scale = float(rng.uniform(0.92, 1.08))  # cell-to-cell haemoglobin variation (MCH spread)
    kw: dict[str, Any] = dict(
        subtype=subtype, diameter_um=d,
        elongation=float(rng.uniform(*p["elongation"])),
        pallor_fraction=float(rng.uniform(*p["pallor_fraction"])),
        pallor_depth=float(rng.uniform(*p["pallor_depth"])),
        eosin=p["eosin"] * scale, hemoglobin=p["hemoglobin"] * scale,
        azure_b=p.get("azure_b", 0.0) * scale,
        texture_seed=int(rng.integers(0, 2**31 - 1)),
    )
    if "target_spot" in p:
        kw["target_spot"] = float(rng.uniform(*p["target_spot"]))
    if subtype == "spherocyte":
        kw["thickness_um"] = 2.6
        kw["rim_rolloff"] = 0.3  # domed, densest in the middle
    if subtype == "schistocyte":
        kw["cut_offset"] = float(rng.uniform(-0.15, 0.35))  # helmet: disc cut by a chord
        kw["cut_angle_deg"] = float(rng.uniform(0, 360))
        if rng.random() < 0.5:  # triangle/bite fragments: a second concave bite
            phi = rng.uniform(0, 2 * np.pi)
            r = d / 2
            kw["bite"] = Spot(center_um=(float(1.15 * r * np.sin(phi)),
                                         float(1.15 * r * np.cos(phi))),
                              radius_um=float(r * rng.uniform(0.5, 0.8)))
    if subtype == "dacrocyte":
        kw["tail_length_um"] = float(rng.uniform(0.4, 0.8) * d)
        kw["tail_width_um"] = float(rng.uniform(0.35, 0.7))
    return RBCMorphology(**kw)


def sample_platelet(rng: np.random.Generator) -> PlateletMorphology:
    """Draw one platelet (occasionally a giant platelet, docs/clinical_rules.md §11: > 7 µm)."""
    rng = _check_rng(rng)
    p = PLATELET_PRIOR
    giant = rng.random() < p["giant_p"]
    d = float(rng.uniform(*(p["giant_d"] if giant else p["d"])))
    area = math.pi * d * d / 4
    return PlateletMorphology(
        diameter_um=d, elongation=float(rng.uniform(1.0, 1.5)),
        outline=_harmonics(rng, (2, 3, 4), 0.16),
        granule_count=int(max(2, rng.poisson(area * p["granules_per_um2"]))),
        granule_size_um=float(p["granule_size_um"] * rng.uniform(0.85, 1.2)),
        granule_purple=float(rng.uniform(*p["granule_purple"])),
        hyalomere_purple=p["hyalomere_purple"], hyalomere_azure_b=p["hyalomere_azure_b"],
        texture_seed=int(rng.integers(0, 2**31 - 1)),
    )


# --------------------------------------------------------------------------------------------
# Measured style: white cells drawn from the morphometry of real cells
# --------------------------------------------------------------------------------------------

#: Sampling styles of :func:`sample_wbc`.
WBC_STYLES: tuple[str, ...] = ("drawn", "measured")
#: Classes whose nuclei the measured style draws as lobes joined by filaments (with the measured
#: lobe-count distribution; a one-lobe draw is a contour); the others get one contour nucleus.
LOBED_CLASSES: tuple[str, ...] = ("NGS", "NGB", "EOS", "BAS")
#: Schema of the fitted corrections (``data/specimen_fit.json``, ``scripts/fit_specimen_priors.py``).
SPECIMEN_FIT_SCHEMA = "hemotwin.specimen_fit/1"
SPECIMEN_FIT_PATH = Path(__file__).resolve().parent / "data" / "specimen_fit.json"
#: Band (cycles/µm, 10 log-spaced points) on which the morphometry fits spectral slopes and
#: periods; mirrors ``hemotwin.twin.morphometry.SLOPE_BAND_PER_UM`` (the specimen layer does not
#: import the measuring code; a test checks the two agree).
SLOPE_BAND_PER_UM: Pair = (0.3, 2.0)
#: Measured level range drawn: the stored 5–95 % quantiles, extended by linear extrapolation of
#: their end segments to 2–98 % so that the draws keep some tails (the file stores none).
_U_RANGE: Pair = (0.02, 0.98)
#: Roll-off period (µm) of the cytoplasm power-law texture (its period is not measured).
_CYTO_ROLLOFF_UM = 2.0
_EFD_POINTS = 72


@lru_cache(maxsize=1)
def _morphometry() -> Any:
    from .measured import load_morphometry

    return load_morphometry()


def measured_classes() -> tuple[str, ...]:
    """The classes the ``"measured"`` style draws from real measurements (codes in morphometry.json).

    The other classes (no real cells in the measured data) keep the drawn priors in either style.
    """
    m = _morphometry()
    return tuple(c for c in LEUKOCYTE_CLASSES if c in m.classes)


_FIT_OVERRIDE: list[dict[str, Any]] = []


def _read_fit(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"schema": SPECIMEN_FIT_SCHEMA, "classes": {}}
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError("specimen fit file", str(path), f"readable JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("schema") != SPECIMEN_FIT_SCHEMA:
        raise InputError(f"{path} (schema)", doc.get("schema") if isinstance(doc, dict) else doc,
                         f"{SPECIMEN_FIT_SCHEMA!r}; regenerate with scripts/fit_specimen_priors.py")
    if not isinstance(doc.get("classes"), dict):
        raise InputError(f"{path} (classes)", type(doc.get("classes")).__name__, "an object per class")
    return doc


@lru_cache(maxsize=1)
def _packaged_fit() -> dict[str, Any]:
    return _read_fit(SPECIMEN_FIT_PATH)


def specimen_fit() -> dict[str, Any]:
    """The corrections the measured style applies: the packaged fit, or the one set by :func:`use_specimen_fit`.

    Without a packaged ``specimen_fit.json`` every correction is the identity (the measured
    quantiles are drawn as they are).
    """
    return _FIT_OVERRIDE[-1] if _FIT_OVERRIDE else _packaged_fit()


@contextmanager
def use_specimen_fit(doc: dict[str, Any]) -> Iterator[None]:
    """Draw measured-style cells with the corrections ``doc`` (same layout as ``specimen_fit.json``).

    For fitting scripts, which render with trial corrections before writing the file.
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("classes"), dict):
        raise InputError("doc", type(doc).__name__, "a specimen-fit document with a 'classes' object")
    _FIT_OVERRIDE.append(doc)
    try:
        yield
    finally:
        _FIT_OVERRIDE.pop()


class _Draw:
    """Inverse-transform draws of one class's measured features, with the fitted corrections.

    A feature value at uniform level ``u`` is ``Q(u)`` (the stored quantile function), its
    deviation from the median multiplied by the fitted ``spread``, then multiplied by the fitted
    ``scale`` (or shifted by the fitted ``offset`` for slopes, which may be negative).
    """

    def __init__(self, code: str) -> None:
        self.m = _morphometry()
        self.code = code
        self.levels = np.asarray(self.m.levels)
        fit = specimen_fit()["classes"].get(code, {})
        self.scale: dict[str, float] = dict(fit.get("scale", {}))
        self.spread: dict[str, float] = dict(fit.get("spread", {}))
        self.offset: dict[str, float] = dict(fit.get("offset", {}))

    def q(self, feature: str, u: float) -> float:
        """Stored quantile function at ``u``, linear (and linearly extrapolated) between the levels."""
        vals = self.m.quantiles(self.code, feature)
        if not np.all(np.isfinite(vals)):
            return math.nan
        lv = self.levels
        if u < lv[0]:
            return float(vals[0] + (u - lv[0]) * (vals[1] - vals[0]) / (lv[1] - lv[0]))
        if u > lv[-1]:
            return float(vals[-1] + (u - lv[-1]) * (vals[-1] - vals[-2]) / (lv[-1] - lv[-2]))
        return float(np.interp(u, lv, vals))

    def value(self, feature: str, u: float) -> float:
        """The corrected measured value of ``feature`` at level ``u`` (NaN where never measured)."""
        med = self.q(feature, 0.5)
        x = med + self.spread.get(feature, 1.0) * (self.q(feature, u) - med)
        if feature in self.offset:
            return x + self.offset[feature]
        return x * self.scale.get(feature, 1.0)

    def ratio(self, feature: str, u: float) -> float:
        """Value at ``u`` relative to the measured median (for parameters measured only indirectly)."""
        med = self.q(feature, 0.5)
        if not math.isfinite(med) or med <= 0:
            return self.scale.get(feature, 1.0)
        rel = max(self.q(feature, u) / med, 0.05)
        return rel ** self.spread.get(feature, 1.0) * self.scale.get(feature, 1.0)

    def u(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(*_U_RANGE))


def _band() -> np.ndarray:
    return np.geomspace(*SLOPE_BAND_PER_UM, 10)


@lru_cache(maxsize=1)
def _power_table() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Measured slope and period of the power spectra ``(1 + (f L)^2)^(beta/2)`` on a (beta, L) grid.

    Slope and period are computed as the morphometry computes them (log-log fit on the band's
    10 points; ``1 / f`` at the maximum of ``f^2 P``), so a measured pair inverts to the texture
    parameters that reproduce it before imaging.
    """
    betas = np.round(np.arange(-6.0, -0.05, 0.1), 2)
    rolloffs = np.geomspace(0.3, 8.0, 48)
    f = _band()
    lf = np.log(f)
    logp = betas[:, None, None] / 2 * np.log1p((f[None, None, :] * rolloffs[None, :, None]) ** 2)
    lc = lf - lf.mean()
    slope = (logp * lc).sum(axis=-1) / (lc * lc).sum()
    period = 1.0 / f[np.argmax(logp + 2 * lf, axis=-1)]
    return betas, rolloffs, slope, period


def _power_params(slope: float, period: float | None) -> tuple[float, float]:
    """``(beta, roll-off µm)`` whose measured slope (and period, if given) are nearest the targets."""
    betas, rolloffs, s_tab, p_tab = _power_table()
    if period is None or not math.isfinite(period):
        j = int(np.argmin(np.abs(rolloffs - _CYTO_ROLLOFF_UM)))
        i = int(np.argmin(np.abs(s_tab[:, j] - slope)))
        return float(betas[i]), float(rolloffs[j])
    # Periods are quantised on the band's 10 points: a quarter of a log-octave of period error
    # weighs like 0.1 of slope error, so the slope decides among the pairs of equal period.
    cost = (s_tab - slope) ** 2 + (np.log(p_tab / period) / 0.25 * 0.1) ** 2
    i, j = np.unravel_index(int(np.argmin(cost)), cost.shape)
    return float(betas[i]), float(rolloffs[j])


@lru_cache(maxsize=32)
def _size_nc_correlation(code: str) -> float:
    """Gaussian-copula correlation of cell diameter and N:C for ``code``.

    The file stores marginals only, but three of them are tied: nucleus diameter = cell diameter x
    sqrt(N:C). The correlation whose implied nucleus-diameter quantiles best match the measured
    ones is the coupling the data support (negative: big cells carry more cytoplasm).
    """
    d = _Draw(code)
    qn = d.m.quantiles(code, "nucleus_diameter_um")
    z = np.random.default_rng(0).standard_normal((2, 4000))  # fixed: the result is a constant
    lv = d.levels
    qd, qc = d.m.quantiles(code, "cell_diameter_um"), d.m.quantiles(code, "nc_ratio")
    best, best_err = 0.0, math.inf
    for rho in np.linspace(-0.9, 0.9, 19):
        u1 = lv[0] + (lv[-1] - lv[0]) * special.ndtr(z[0])
        u2 = lv[0] + (lv[-1] - lv[0]) * special.ndtr(rho * z[0] + math.sqrt(1 - rho * rho) * z[1])
        dn = np.interp(u1, lv, qd) * np.sqrt(np.interp(u2, lv, qc))
        err = float(np.sum((np.quantile(dn, lv) - qn) ** 2))
        if err < best_err:
            best, best_err = float(rho), err
    return best


def _efd_points(coeffs: np.ndarray, n: int = _EFD_POINTS) -> np.ndarray:
    """``n x 2`` (y, x) points of the outline of elliptic Fourier coefficients ``order x 4``."""
    t = np.arange(n) / n
    k = np.arange(1, len(coeffs) + 1)[:, None]
    cos, sin = np.cos(2 * np.pi * k * t), np.sin(2 * np.pi * k * t)
    x = coeffs[:, 0] @ cos + coeffs[:, 1] @ sin
    y = coeffs[:, 2] @ cos + coeffs[:, 3] @ sin
    return np.stack([y, x], axis=1)


def _signed_area(pts: np.ndarray) -> float:
    y, x = pts[:, 0], pts[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def _self_intersects(pts: np.ndarray) -> bool:
    """Whether a closed polygon crosses itself (any two non-adjacent edges intersect)."""
    a, b = pts, np.roll(pts, -1, axis=0)
    n = len(pts)

    def orient(p, q, r):
        return np.sign((q[..., 1] - p[..., 1]) * (r[..., 0] - p[..., 0])
                       - (q[..., 0] - p[..., 0]) * (r[..., 1] - p[..., 1]))

    i, j = np.triu_indices(n, k=2)
    keep = ~((i == 0) & (j == n - 1))
    i, j = i[keep], j[keep]
    o1, o2 = orient(a[i], b[i], a[j]), orient(a[i], b[i], b[j])
    o3, o4 = orient(a[j], b[j], a[i]), orient(a[j], b[j], b[i])
    return bool(np.any((o1 * o2 < 0) & (o3 * o4 < 0)))


def _contour_from_model(code: str, rng: np.random.Generator, area_um2: float) -> np.ndarray:
    """A nucleus outline of ``code`` from its EFD shape model, scaled to ``area_um2``, centred.

    PCA coefficients are drawn with the stored variances (standard normal scores, clipped to
    +-2.5 so that rare extreme draws do not fold the outline); a self-crossing outline is drawn
    again, and after 8 tries the mean shape is used.
    """
    shape = _morphometry().nucleus_shape(code)
    order = int(shape["efd_order"])
    mean = np.asarray(shape["mean"], float)
    comps = np.asarray(shape["components"], float)
    sd = np.sqrt(np.asarray(shape["variances"], float))
    pts = None
    for _ in range(8):
        z = np.clip(rng.standard_normal(len(sd)), -2.5, 2.5)
        cand = _efd_points((mean + (z * sd) @ comps).reshape(order, 4))
        if abs(_signed_area(cand)) > 1e-6 and not _self_intersects(cand):
            pts = cand
            break
    if pts is None:
        pts = _efd_points(mean.reshape(order, 4))
    if _signed_area(pts) < 0:
        pts = pts[::-1]
    if rng.random() < 0.5:  # the normalised descriptors keep one handedness; mirror half the draws
        pts = pts[::-1] * np.array([1.0, -1.0])
    a = abs(_signed_area(pts))
    # Area centroid, so the nucleus centre is its centre of mass.
    y, x = pts[:, 0], pts[:, 1]
    cross = x * np.roll(y, -1) - np.roll(x, -1) * y
    cy = float(np.sum((y + np.roll(y, -1)) * cross) / (6 * _signed_area(pts)))
    cx = float(np.sum((x + np.roll(x, -1)) * cross) / (6 * _signed_area(pts)))
    return (pts - np.array([cy, cx])) * math.sqrt(area_um2 / a)


def _lobe_chain(rng: np.random.Generator, radii: list[Pair], gap: Pair, room: float,
                code: str) -> tuple[Lobe, ...]:
    """Irregular elliptical lobes of ``radii`` laid along a curling chain, centred, within ``room``."""
    n = len(radii)
    ext = [max(r) for r in radii]
    pts = [np.zeros(2)]
    heading = rng.uniform(0, 2 * np.pi)
    turn_sign = rng.choice([-1.0, 1.0])
    for i in range(1, n):
        step = 0.85 * (ext[i - 1] + ext[i]) + rng.uniform(*gap)
        pts.append(pts[-1] + step * np.array([np.sin(heading), np.cos(heading)]))
        # The chain of a segmented nucleus curls one way (C/S shapes), as in the drawn style.
        heading += turn_sign * rng.uniform(0.5, 1.1) + rng.normal(0, 0.25)
    p = np.array(pts)
    p -= (p.max(0) + p.min(0)) / 2
    r_ext = np.asarray(ext)
    extent = float(np.max(np.hypot(p[:, 0], p[:, 1]) + r_ext))
    if extent > room:  # squeeze the chain into the cell rather than let it stick out
        p *= max(room - r_ext.max(), 0.1) / max(extent - r_ext.max(), 1e-6)
    rough = 0.05 if code != "BAS" else 0.03
    return tuple(
        Lobe(center_um=(float(y), float(x)), radii_um=(float(ry), float(rx)),
             angle_deg=float(rng.uniform(0, 180)), outline=_harmonics(rng, (2, 3, 4), rough))
        for (y, x), (ry, rx) in zip(p, radii, strict=True)
    )


def _measured_nucleus(code: str, d: _Draw, rng: np.random.Generator, R: float, r_in: float,
                      area_um2: float) -> NucleusShape:
    """Nucleus of ``area_um2``: lobes joined by filaments, or one contour from the shape model."""
    prior = WBC_PRIORS[code]
    angle = float(rng.uniform(0, 360))
    shape = d.m.nucleus_shape(code)
    n_lobes = 1
    if code in LOBED_CLASSES:
        p = np.asarray(shape["lobe_count_p"], float)
        n_lobes = int(rng.choice(len(p), p=p / p.sum())) + 1
    fractions = shape["lobe_fractions_mean"].get(str(n_lobes)) if n_lobes > 1 else None
    if n_lobes > 1 and fractions:
        f = rng.permutation(np.asarray(fractions, float))
        radii: list[Pair] = []
        for fi in f:
            el = float(rng.uniform(1.0, 1.5))
            r = math.sqrt(fi * area_um2 / math.pi)
            radii.append((r * math.sqrt(el), r / math.sqrt(el)))
        gap = {"NGB": (-0.2, 0.3), "BAS": (-0.3, 0.3)}.get(code, (0.3, 1.0))
        lobes = _lobe_chain(rng, radii, gap, r_in - 0.4, code)
        widths = np.asarray(shape["filament_width_um"], float)
        fw = float(np.interp(rng.uniform(0.05, 0.95), d.levels, widths)) if np.all(np.isfinite(widths)) else 0.3
        extent = max(math.hypot(*lb.center_um) + max(lb.radii_um) for lb in lobes)
        return NucleusShape(kind="segmented" if n_lobes > 2 else "bilobed",
                            center_um=_eccentric(rng, prior, r_in, extent), angle_deg=angle,
                            radii_um=(max(radii[0]), min(radii[0])), lobes=lobes,
                            filament_width_um=float(np.clip(fw, 0.1, 1.5)))
    pts = _contour_from_model(code, rng, area_um2)
    rn = math.sqrt(area_um2 / math.pi)
    extent = float(np.max(np.hypot(pts[:, 0], pts[:, 1])))
    return NucleusShape(kind="contour", center_um=_eccentric(rng, prior, r_in, extent), angle_deg=angle,
                        radii_um=(rn, rn), contour_um=tuple((float(y), float(x)) for y, x in pts))


def _eccentric(rng: np.random.Generator, prior: dict[str, Any], r_in: float, extent: float) -> Pair:
    """Nucleus-centre offset: the drawn prior's eccentricity range times the room left in the cell."""
    room = max(r_in - extent - 0.3, 0.0)
    off = room * float(rng.uniform(*prior["ecc"]))
    phi = rng.uniform(0, 2 * np.pi)
    return (float(off * np.sin(phi)), float(off * np.cos(phi)))


def _measured_granules(code: str, d: _Draw, rng: np.random.Generator, R: float,
                       cyto_area: float) -> list[GranulePopulation]:
    """The class's granule populations (kinds from :data:`WBC_PRIORS`) at the measured size and density.

    The detector of the morphometry sees only granules that stand out, so the measured density
    and size set the *relative* cell-to-cell spread around the prior's levels, and the fitted
    scales move those levels until rendered twin cells measure like real ones.
    """
    out: list[GranulePopulation] = []
    u_dens, u_size = d.u(rng), d.u(rng)
    dens_r = d.ratio("granule_density_per_um2", u_dens)
    size_r = d.ratio("granule_diameter_um", u_size)
    amount = {k: d.scale.get(f"granule_{k}", 1.0) for k in ("purple", "azure_b", "eosin")}
    for i, g in enumerate(WBC_PRIORS[code].get("gran", [])):
        if rng.random() >= g["p"]:
            continue
        kw = {k: v for k, v in g.items() if k not in ("p", "count", "dens", "fill", "hemoglobin")}
        main = i == 0
        if "fill" in g:
            kw["fill"] = float(np.clip(rng.uniform(*g["fill"]) * (dens_r if main else 1.0), 0.2, 1.0))
        if "count" in g:
            kw["count"] = round(float(rng.integers(g["count"][0], g["count"][1] + 1)) * (dens_r if main else 1.0))
        elif "dens" in g:
            area = math.pi * R * R if g.get("region") == "cell" else cyto_area
            kw["count"] = round(float(area * rng.uniform(*g["dens"])) * (dens_r if main else 1.0))
        size = g["size_um"] * rng.uniform(0.9, 1.1) * (size_r if main else 1.0)
        kw["size_um"] = float(np.clip(size, 0.15, 1.2))
        jit = float(rng.uniform(0.8, 1.2))
        for k in ("purple", "azure_b", "eosin"):
            if k in kw:
                kw[k] = float(kw[k] * jit * amount[k])
        out.append(GranulePopulation(**kw))
    return out


def _sample_measured_wbc(code: str, rng: np.random.Generator) -> WBCMorphology:
    """One white cell of ``code`` drawn from the measured morphometry (see :func:`sample_wbc`)."""
    d = _Draw(code)
    p = WBC_PRIORS[code]
    # Size and N:C: a Gaussian copula with the correlation the measured marginals imply.
    rho = _size_nc_correlation(code)
    z1, z2 = rng.standard_normal(2)
    lo, hi = _U_RANGE
    u_d = lo + (hi - lo) * float(special.ndtr(z1))
    u_nc = lo + (hi - lo) * float(special.ndtr(rho * z1 + math.sqrt(1 - rho * rho) * z2))
    diam = float(np.clip(d.value("cell_diameter_um", u_d), 5.0, 40.0))
    nc = float(np.clip(d.value("nc_ratio", u_nc), 0.08, 0.95))
    R = diam / 2
    # Caps near the measured 95th percentiles of the most irregular class: beyond them the
    # fitted spreads would draw cigar-shaped or star-shaped cells that no class shows.
    a2 = float(np.clip(d.value("cell_elongation", d.u(rng)), 0.0, 0.3))
    elong = (1 + a2) / (1 - a2)  # an ellipse of axis ratio e has harmonic-2 amplitude (e-1)/(e+1)
    rough = float(np.clip(d.value("cell_roughness", d.u(rng)), 0.0, 0.08))
    outline = _harmonics(rng, (3, 4), 0.03) + tuple(
        Harmonic(k=k, amp=float(rough / 2 * rng.uniform(0.6, 1.4)), phase_deg=float(rng.uniform(0, 360)))
        for k in (9, 10, 11, 12))
    r_in = R / math.sqrt(elong) * (1 - sum(h.amp for h in outline))
    nucleus = _measured_nucleus(code, d, rng, R, r_in, nc * math.pi * R * R)

    # Amounts: the measured ones are unmixed amounts of the basis (Romanowsky purple, azure B,
    # eosin), not the twin's absorbers, and the map between them is far from diagonal and
    # saturates in dark nuclei; the drawn priors are calibrated to real cells through the
    # scanner (scripts/calibrate_amounts.py), so they set the level, the measured quantiles
    # the cell-to-cell spread, and the fitted scales the rest.
    # Chromatin: one staining level for the three absorbers of the Romanowsky complex.
    u_c = d.u(rng)
    beta, rolloff = _power_params(d.value("chromatin_slope", d.u(rng)),
                                  d.value("chromatin_period_um", d.u(rng)))
    index = p["chrom"][0]
    chrom = Chromatin(density=CHROMATIN_MIX["purple"] * index * d.ratio("chromatin_purple", u_c),
                      azure_b=CHROMATIN_MIX["azure_b"] * index * d.ratio("chromatin_azure_b", u_c),
                      eosin=CHROMATIN_MIX["eosin"] * index * d.ratio("chromatin_eosin", u_c),
                      contrast=float(np.clip(p["chrom"][1] * rng.uniform(0.85, 1.15)
                                             * d.scale.get("chromatin_contrast", 1.0), 0.0, 2.0)),
                      scale_um=rolloff, spectral_slope=beta)

    nucleoli: list[Spot] = []
    if "nucleoli" in p and rng.random() < p["nucleoli"][0]:
        _, n_lo, n_hi, r_lo, r_hi = p["nucleoli"]
        rr = math.sqrt(nc) * R * 0.55
        for _ in range(int(rng.integers(n_lo, n_hi + 1))):
            rho_n, phi = rr * math.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
            nucleoli.append(Spot(center_um=(float(rho_n * np.sin(phi)), float(rho_n * np.cos(phi))),
                                 radius_um=float(rng.uniform(r_lo, r_hi))))

    c_slope, _ = _power_params(d.value("cytoplasm_slope", d.u(rng)), None)
    prior_cyto = p["cyto"]
    u_eosin = d.u(rng)
    cyto = CytoplasmStain(
        purple=prior_cyto.get("purple", 0.0) * d.ratio("cytoplasm_purple", d.u(rng)),
        azure_b=prior_cyto.get("azure_b", 0.0) * d.ratio("cytoplasm_azure_b", d.u(rng)),
        eosin=prior_cyto.get("eosin", 0.0) * d.ratio("cytoplasm_eosin", u_eosin),
        # Haemoglobin (erythroblasts) unmixes with eosin: it follows the eosin draw.
        hemoglobin=prior_cyto.get("hemoglobin", 0.0) * d.ratio("cytoplasm_eosin", u_eosin),
        texture_contrast=float(np.clip(d.value("cytoplasm_cv", d.u(rng)), 0.0, 1.0)),
        texture_scale_um=_CYTO_ROLLOFF_UM, texture_slope=c_slope)
    granules = _measured_granules(code, d, rng, R, math.pi * R * R * (1 - nc))

    vacuoles = _vacuoles(p, rng, R)
    hof, hof_depth = _hof(p, rng, nucleus.center_um, math.sqrt(nc) * R)
    return WBCMorphology(
        code=code, diameter_um=diam, elongation=float(min(elong, 3.0)), outline=outline, nucleus=nucleus,
        nc_ratio=nc, chromatin=chrom, nucleoli=tuple(nucleoli), cytoplasm=cyto, granules=tuple(granules),
        vacuoles=tuple(vacuoles), hof=hof, hof_depth=hof_depth,
        texture_seed=int(rng.integers(0, 2**31 - 1)),
    )
