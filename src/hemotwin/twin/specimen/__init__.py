"""Procedural specimen: blood-smear objects as morphology records and absorber maps.

Records (pydantic, µm and peak-OD units) -> :func:`rasterize` -> :class:`AbsorberMaps` on any
µm grid. Default absorber amounts live in :mod:`.morphology` (``WBC_PRIORS``, ``RBC_PRIORS``,
``PLATELET_PRIOR``, ``PLASMA_EOSIN``).
"""

from .compose import (
    CROP_RBC_DENSITY,
    NORMAL_RBC_TYPES,
    SPECIMEN_SOURCES,
    FieldSpec,
    compose_field,
    make_cell_specimen,
    wbc_sampler,
)
from .maps import ABSORBERS, AbsorberMaps, Compartment
from .morphology import (
    LEUKOCYTE_CLASSES,
    NORMAL_DIFFERENTIAL,
    PLATELET_PRIOR,
    RBC_PRIORS,
    RED_CELL_TYPES,
    WBC_PRIORS,
    WBC_STYLES,
    LibraryCellRef,
    PlateletMorphology,
    RBCMorphology,
    WBCMorphology,
    measured_classes,
    sample_platelet,
    sample_rbc,
    sample_wbc,
)
from .raster import rasterize
from .specimen import ObjectRecord, Specimen

__all__ = [
    "ABSORBERS",
    "CROP_RBC_DENSITY",
    "LEUKOCYTE_CLASSES",
    "NORMAL_DIFFERENTIAL",
    "NORMAL_RBC_TYPES",
    "PLATELET_PRIOR",
    "RBC_PRIORS",
    "RED_CELL_TYPES",
    "SPECIMEN_SOURCES",
    "WBC_PRIORS",
    "WBC_STYLES",
    "AbsorberMaps",
    "Compartment",
    "FieldSpec",
    "LibraryCellRef",
    "ObjectRecord",
    "PlateletMorphology",
    "RBCMorphology",
    "Specimen",
    "WBCMorphology",
    "compose_field",
    "make_cell_specimen",
    "measured_classes",
    "rasterize",
    "sample_platelet",
    "sample_rbc",
    "sample_wbc",
    "wbc_sampler",
]
