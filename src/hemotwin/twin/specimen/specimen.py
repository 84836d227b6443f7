"""Specimen records: objects placed on a physical slide area, in draw order."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from hemotwin.errors import InputError

from ._base import Record
from .morphology import PLASMA_EOSIN, PlateletMorphology, RBCMorphology, WBCMorphology

Morphology = Annotated[
    WBCMorphology | RBCMorphology | PlateletMorphology, Field(discriminator="kind")
]


class ObjectRecord(Record):
    """One object of a specimen.

    Attributes
    ----------
    id
        Instance id (>= 1) used in the ``instances`` map.
    kind
        ``"wbc"``, ``"rbc"`` or ``"platelet"``; equals ``morphology.kind``.
    label
        Class code (white cells), red-cell subtype, or ``"platelet"``.
    center_um
        ``(y, x)`` of the object's centre on the slide, µm.
    rotation_deg
        Rotation of the object's local frame (counter-clockwise from +x in (y, x) = row, col).
    morphology
        The complete geometry and stain record; enough to redraw the object exactly.
    seed
        The seed the morphology was sampled from (provenance).
    """

    id: int = Field(ge=1)
    kind: Literal["wbc", "rbc", "platelet"]
    label: str
    center_um: tuple[float, float]
    rotation_deg: float = 0.0
    morphology: Morphology
    seed: int = Field(ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> ObjectRecord:
        m = self.morphology
        if m.kind != self.kind:
            raise InputError("kind", self.kind, f"{m.kind!r} (the morphology's kind)")
        expected = (m.code if isinstance(m, WBCMorphology)
                    else m.subtype if isinstance(m, RBCMorphology) else "platelet")
        if self.label != expected:
            raise InputError("label", self.label, f"{expected!r} (from the morphology)")
        return self


class Specimen(Record):
    """A rectangular piece of smear: objects in draw order, bottom to top.

    ``kind="cell"`` is a crop centred on the white cell ``focus_id``; ``kind="field"`` a field of
    view. ``plasma_eosin`` is the faint eosin of the dried plasma film everywhere.
    """

    height_um: float = Field(gt=0.0)
    width_um: float = Field(gt=0.0)
    objects: list[ObjectRecord] = Field(default_factory=list)
    seed: int = Field(ge=0)
    plasma_eosin: float = Field(default=PLASMA_EOSIN, ge=0.0)
    kind: Literal["cell", "field"] = "field"
    focus_id: int | None = None

    @model_validator(mode="after")
    def _ids(self) -> Specimen:
        ids = [o.id for o in self.objects]
        if len(set(ids)) != len(ids):
            raise InputError("objects", "duplicate ids", "unique object ids")
        if self.focus_id is not None:
            wbc = {o.id for o in self.objects if o.kind == "wbc"}
            if self.focus_id not in wbc:
                raise InputError("focus_id", self.focus_id, "the id of a white cell of objects")
        return self

    def object(self, obj_id: int) -> ObjectRecord:
        """The object with id ``obj_id``."""
        for o in self.objects:
            if o.id == obj_id:
                return o
        raise InputError("obj_id", obj_id, "an id of this specimen's objects")
