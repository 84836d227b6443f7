"""One patient for ``hemotwin risk``: the input record (:class:`Patient`) and the per-score result.

Units are in the field names (ARCHITECTURE conventions). Values in a common wrong unit are refused
with a message that names the unit expected: platelets above 2000 look like /µL, haemoglobin above
25 looks like g/L, white cells above 1000 and neutrophils above 200 look like /µL. VAFs may be given
as fractions (0-1) or, for every variant of the patient, as percent (see
:func:`hemotwin.prognosis.mutations.check_vafs`).

Example (``patient.json``)::

    {
      "id": "P-001",
      "disease": "MDS",
      "karyotype": "46,XY,del(5)(q13q33)[18]/46,XY[2]",
      "mutations": [
        {"gene": "SF3B1", "vaf": 0.38, "effect": "non_synonymous_codon", "protein_change": "p.K700E"},
        {"gene": "TET2", "vaf": 0.41, "effect": "frameshift_variant", "protein_change": "p.Q916fs"}
      ],
      "sequenced_genes": "all",
      "bm_blast_pct": 3, "hb_g_dl": 9.4, "plt_1e9_per_l": 310, "anc_1e9_per_l": 2.1, "age_years": 74
    }
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hemotwin.errors import InputError
from hemotwin.prognosis.cytogenetics import KaryotypeFeatures
from hemotwin.prognosis.mutations import Mutation, check_vafs, resolve_panel

#: field -> (name in messages, ceiling, the usual wrong unit, the unit expected, the fix).
_UNIT_GUARDS: dict[str, tuple[str, float, str, str, str]] = {
    "plt_1e9_per_l": ("platelets", 2000, "/µL", "x10^9/L", "divide by 1000"),
    "hb_g_dl": ("haemoglobin", 25, "g/L", "g/dL", "divide by 10"),
    "wbc_1e9_per_l": ("white cells", 1000, "/µL", "x10^9/L", "divide by 1000"),
    "anc_1e9_per_l": ("neutrophils", 200, "/µL", "x10^9/L", "divide by 1000"),
}


class Patient(BaseModel):
    """Everything the risk scores read for one patient; every field but ``id`` is optional (missing = unknown).

    ``karyotype`` (ISCN text) is parsed by :mod:`hemotwin.prognosis.karyotype`; ``cytogenetics``
    (explicit :class:`KaryotypeFeatures`, e.g. from FISH) takes precedence over it when both are
    given. ``sequenced_genes``: a list, ``"all"`` (every gene the scores use was sequenced), or
    absent (panel unknown: genes without a reported variant count as *not sequenced*).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    disease: Literal["AML", "MDS"] | None = Field(None, description="Disease context; scores are all computed.")
    karyotype: str | None = None
    cytogenetics: KaryotypeFeatures | None = None
    mutations: tuple[Mutation, ...] = ()
    sequenced_genes: tuple[str, ...] | Literal["all"] | None = None
    bm_blast_pct: float | None = Field(None, ge=0, le=100, description="Bone-marrow blasts, % of cells.")
    hb_g_dl: float | None = Field(None, ge=0, description="Haemoglobin, g/dL.")
    plt_1e9_per_l: float | None = Field(None, ge=0, description="Platelets, x10^9/L.")
    anc_1e9_per_l: float | None = Field(None, ge=0, description="Absolute neutrophil count, x10^9/L.")
    wbc_1e9_per_l: float | None = Field(None, ge=0, description="White cells, x10^9/L.")
    age_years: float | None = Field(None, ge=0, le=120)
    sex: Literal["F", "M"] | None = None

    @field_validator("disease", "sex", mode="before")
    @classmethod
    def _upper(cls, v):
        return v.strip().upper() if isinstance(v, str) else v

    @field_validator("sequenced_genes", mode="before")
    @classmethod
    def _panel(cls, v):
        if isinstance(v, str):
            return "all" if v.strip().lower() == "all" else tuple(sorted(resolve_panel(v) or ()))
        if v is not None:
            return tuple(sorted(resolve_panel(v) or ()))
        return v

    # The unit guards: each ceiling is far above any real value in the unit expected and far below
    # the same quantity in the usual wrong unit (docs/clinical_rules.md §9 units; /µL = x10^-3 x10^9/L).
    @field_validator("plt_1e9_per_l", "hb_g_dl", "wbc_1e9_per_l", "anc_1e9_per_l")
    @classmethod
    def _units(cls, v, info):
        what, ceiling, wrong, expected, fix = _UNIT_GUARDS[info.field_name]
        if v is not None and v > ceiling:
            raise ValueError(f"{what} {v:g} looks like {wrong}, expected {expected} ({fix})")
        return v

    @model_validator(mode="after")
    def _vafs(self) -> Patient:
        # Impossible VAFs (negative, > 100, mixed units) are refused here; the percent -> fraction
        # conversion (with its warning) happens when features are built, so the record stays as given.
        check_vafs([m.vaf for m in self.mutations], where=f"{self.id}: mutations.vaf")
        return self


def load_patient(path: str | Path) -> Patient:
    """Read a patient JSON file; any problem becomes an :class:`InputError` naming file, field and value."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(str(path), str(path), "an existing patient JSON file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(str(path), str(exc), "valid UTF-8 JSON") from None
    try:
        return Patient.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err.get("loc", ())) or "(record)"
        msg = err.get("msg", "a valid value").replace("Value error, ", "").replace("Input should be ", "")
        raise InputError(f"{path.name}: {loc}", err.get("input"), msg) from None
    except InputError as exc:
        raise InputError(f"{path.name}: {exc.where}", exc.value, exc.expected) from None


class ScoreResult(BaseModel):
    """One risk score of one patient: category, score where there is one, the rules that fired, what was missing.

    ``complete`` is False when an unknown input could have changed the category; the category is then
    the one obtained by taking unknown lesions as absent (ELN), or the mean-imputation score (IPSS-M).
    """

    model_config = ConfigDict(frozen=True)

    name: str
    category: str | None = None
    score: float | None = None
    score_best: float | None = None
    score_worst: float | None = None
    category_best: str | None = None
    category_worst: str | None = None
    rules: list[str] = []
    missing: list[str] = []
    complete: bool = True
    notes: list[str] = []
