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
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, computed_field, field_validator, model_validator

from hemotwin.errors import InputError, expected_of
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
        if isinstance(v, list | tuple):
            return tuple(sorted(resolve_panel([str(g) for g in v]) or ()))
        if v is not None:
            raise ValueError('a list of gene symbols, or "all"')
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
    except IsADirectoryError:
        raise InputError(str(path), str(path), "a patient JSON file (this is a folder)") from None
    except UnicodeDecodeError as exc:
        raise InputError(path.name, f"byte 0x{exc.object[exc.start]:02x} at position {exc.start}",
                         "UTF-8 text") from None
    except json.JSONDecodeError as exc:
        line = exc.doc.splitlines()[exc.lineno - 1] if exc.doc.splitlines() else ""
        raise InputError(f"{path.name}, line {exc.lineno}, column {exc.colno}", line.strip()[:80],
                         f"valid JSON ({exc.msg[:1].lower() + exc.msg[1:]})") from None
    try:
        return Patient.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err.get("loc", ())) or "(record)"
        known = Patient.model_fields if len(err.get("loc", ())) == 1 else ()
        raise InputError(f"{path.name}: {loc}", err.get("input"), expected_of(err, known_fields=known)) from None
    except InputError as exc:
        raise InputError(f"{path.name}: {exc.where}", exc.value, exc.expected) from None


#: How many deciding inputs a headline names before "and N more" (the full list is in the result).
HEADLINE_INPUTS = 4


def decided_by(inputs: Sequence[str], *, limit: int | None = None) -> str:
    """``"karyotype (not given), TP53 and 3 more"``: the inputs that decide a category, largest effect first."""
    shown = list(inputs) if limit is None else list(inputs)[:limit]
    more = len(inputs) - len(shown)
    text = ", ".join(shown)
    return f"{text} and {more} more" if more else text


def status_text(reason: str, deciding: Sequence[str], *, limit: int | None = None) -> str:
    """Why a category is undetermined (or not applicable), with the inputs that decide it."""
    return f"{reason}; decided by {decided_by(deciding, limit=limit)}" if deciding else reason


class ScoreResult(BaseModel):
    """One risk score of one patient: category, score where there is one, the rules that fired, what was missing.

    ``category`` is given only when it is *determined*: the same whatever values the missing or
    unreadable inputs have, and the patient is within the classification. Otherwise ``category`` is
    None, ``determined`` is False, ``reason`` says why (the range of possible categories, or why the
    score does not apply) and ``deciding_inputs`` lists the missing or unreadable inputs that decide
    it, largest effect first. ``category_estimate`` keeps the point estimate (IPSS-M: the
    mean-imputation score, as the reference calculators report it; ELN: unknown lesions taken as
    absent), which is not a result while the category is undetermined. ``complete`` is False when
    an input is missing at all (the score itself may then change, even when the category cannot).
    """

    model_config = ConfigDict(frozen=True)

    name: str
    category: str | None = None
    category_estimate: str | None = None
    determined: bool = True
    applicable: bool = True
    reason: str = ""
    deciding_inputs: list[str] = []
    score: float | None = None
    score_best: float | None = None
    score_worst: float | None = None
    category_best: str | None = None
    category_worst: str | None = None
    rules: list[str] = []
    missing: list[str] = []
    complete: bool = True
    notes: list[str] = []

    @computed_field  # type: ignore[prop-decorator]
    @property
    def status(self) -> Literal["determined", "undetermined", "not applicable"]:
        """``determined``, ``undetermined`` (missing or unreadable inputs decide it) or ``not applicable``."""
        if not self.applicable:
            return "not applicable"
        return "determined" if self.determined else "undetermined"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def headline(self) -> str:
        """One line: the category (and score), or why there is none and which inputs decide it."""
        if self.status != "determined":
            why = status_text(self.reason, self.deciding_inputs, limit=HEADLINE_INPUTS)
            return f"{self.name}: {self.status} - {why}"
        text = f"{self.name}: " + (f"{self.score:g} " if self.score is not None else "") + str(self.category)
        if not self.complete:
            text += " (the missing inputs cannot change the category)"
        return text
