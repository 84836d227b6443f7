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

import math
from typing import Any, Literal

import numpy as np
from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator

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
    """An elliptical nuclear lobe in the nucleus frame (µm)."""

    center_um: Pair
    radii_um: Pair
    angle_deg: float = 0.0


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
    - ``smudge``: an amorphous ellipse with strong harmonics and streaky chromatin (KSC).
    """

    kind: Literal[
        "round", "oval", "irregular", "kidney", "folded", "band", "segmented", "bilobed",
        "smudge",
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


def sample_wbc(code: str, rng: np.random.Generator) -> WBCMorphology:
    """Draw the morphology of one white cell of class ``code``.

    Parameters
    ----------
    code
        One of :data:`LEUKOCYTE_CLASSES`.
    rng
        Source of randomness; the record's ``texture_seed`` is drawn from it too, so the record
        alone re-creates the cell.

    Returns
    -------
    WBCMorphology
    """
    if code not in WBC_PRIORS:
        raise InputError("code", code, f"one of {', '.join(LEUKOCYTE_CLASSES)}")
    rng = _check_rng(rng)
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

    vacuoles: list[Spot] = []
    if "vac" in p and rng.random() < p["vac"][0]:
        _, n_hi, r_lo, r_hi = p["vac"]
        for _ in range(int(rng.integers(1, n_hi + 1))):
            rho, phi = R * math.sqrt(rng.uniform(0.1, 0.75)), rng.uniform(0, 2 * np.pi)
            vacuoles.append(Spot(center_um=(float(rho * np.sin(phi)), float(rho * np.cos(phi))),
                                 radius_um=float(rng.uniform(r_lo, r_hi))))

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

    hof, hof_depth = None, 0.0
    if "hof" in p:
        # The Golgi hof sits against the nucleus on the side facing the cell centre.
        cy, cx = nucleus.center_um
        n_r = max(nucleus.radii_um)
        norm = math.hypot(cy, cx) or 1.0
        dy, dx = (-cy / norm, -cx / norm) if math.hypot(cy, cx) > 0.1 else (1.0, 0.0)
        hr = n_r * float(rng.uniform(*p["hof"])) * 1.3
        hof = Spot(center_um=(cy + dy * (n_r + 0.3 * hr), cx + dx * (n_r + 0.3 * hr)),
                   radius_um=hr)
        hof_depth = float(rng.uniform(0.45, 0.7))

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
