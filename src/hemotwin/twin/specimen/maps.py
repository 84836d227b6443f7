"""Absorber maps: the interface between the specimen and the imaging chain.

A specimen is rasterised to the areal amount of each stain absorber on a physical µm grid.
Amounts are in **peak optical-density units**: an amount of 1.0 of absorber ``j`` gives an
optical density (log10) of 1.0 at that absorber's peak wavelength at nominal stain strength.
The spectral shape lives in :mod:`hemotwin.twin.spectra`; the specimen only decides how much
of each absorber sits where.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

#: Order of the K axis of every absorber array.
ABSORBERS: tuple[str, ...] = ("purple", "azure_b", "eosin", "hemoglobin")


class Compartment(IntEnum):
    """Values of the compartment mask (topmost object wins)."""

    BACKGROUND = 0
    RED_CELL = 1
    PLATELET = 2
    CYTOPLASM = 3
    NUCLEUS = 4
    GRANULE = 5


@dataclass(frozen=True)
class AbsorberMaps:
    """Absorber amounts and ground-truth masks on one physical grid.

    Attributes
    ----------
    absorbers
        ``K x H x W`` float32, peak-OD units, in the order of :data:`ABSORBERS`.
    instances
        ``H x W`` int32 object id of the topmost object (0 = background); ids match
        ``ObjectRecord.id`` of the specimen.
    compartments
        ``H x W`` uint8 :class:`Compartment` values.
    um_per_px
        Grid spacing in µm.
    wbc_masks
        Full (not occluded) mask of each white cell, by object id; white cells lie on top in a
        monolayer so these usually equal the visible masks.
    """

    absorbers: np.ndarray
    instances: np.ndarray
    compartments: np.ndarray
    um_per_px: float
    wbc_masks: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` of the maps."""
        return (int(self.absorbers.shape[1]), int(self.absorbers.shape[2]))
