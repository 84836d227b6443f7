"""Derived cytogenetic features of a karyotype: the contract between the ISCN parser and the risk scores.

The parser (:mod:`hemotwin.prognosis.karyotype`) fills a :class:`KaryotypeFeatures`; ELN 2022/2024,
IPSS-R, IPSS-M and the survival models read only this record, so a karyotype known from another
source (FISH, a curated table) can be scored by building the record directly.

``None`` means *unknown* (karyotype missing, failed or unreadable for that feature), which is never
the same as ``False`` (looked for and absent).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

IpssrCytoGroup = Literal["very_good", "good", "intermediate", "poor", "very_poor"]

#: IPSS-R cytogenetic group -> the 0..4 code used by IPSS-M's CYTO variable (docs/clinical_rules.md §6-7).
IPSSR_CYTO_CODE: dict[str, int] = {"very_good": 0, "good": 1, "intermediate": 2, "poor": 3, "very_poor": 4}


class KaryotypeFeatures(BaseModel):
    """Cytogenetic facts the risk scores need (docs/clinical_rules.md §3, 6, 7, 10).

    Counts follow the complex-karyotype convention of docs/clinical_rules.md §10: each unrelated acquired
    abnormality once across clones; ``idem``/``sl``/``sdl`` repeats and constitutional (``c``)
    changes do not count.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str = Field("", description="The karyotype string as given.")
    evaluable: bool = Field(False, description="A karyotype was read (not blank, 'failed', or unreadable).")
    normal: bool | None = None
    n_abnormalities: int | None = Field(
        None, ge=0,
        description="Unrelated acquired abnormalities, the raw count IPSS-R uses (-Y, trisomies, each marker).",
    )
    n_autosomal_monosomies: int | None = Field(None, ge=0, description="Distinct autosomes lost whole (-X/-Y never).")
    n_structural: int | None = Field(None, ge=0, description="Structural abnormalities (not markers).")
    n_trisomies: int | None = Field(None, ge=0, description="Acquired trisomies/polysomies.")
    complex: bool | None = Field(None, description="ELN: >= 3 unrelated, excluding hyperdiploid trisomies only.")
    monosomal: bool | None = None
    hyperdiploid_trisomies_only: bool | None = None
    minus5: bool | None = None
    del5q: bool | None = Field(None, description="Any 5q loss: del(5q), or unbalanced via der/dic/add/i(5p).")
    minus7: bool | None = None
    del7q: bool | None = Field(None, description="Any 7q loss: del(7q), or unbalanced such as der(1;7)(q10;p10).")
    minus17_abn17p: bool | None = Field(
        None, description="-17, del(17p), i(17q), dic(5;17) or another 17p loss or break (not a gained der).")
    minus_y: bool | None = None
    del11q: bool | None = None
    del12p: bool | None = None
    del20q: bool | None = None
    plus8: bool | None = None
    plus19: bool | None = None
    i17q: bool | None = None
    inv3_t3_3: bool | None = Field(None, description="inv(3)(q21q26) or t(3;3)(q21;q26).")
    mecom_3q26: bool | None = Field(None, description="Any 3q26 (MECOM) rearrangement, t(3q26;v) included.")
    abn3q: bool | None = Field(None, description="IPSS-R: inv(3), t(3q) or del(3q).")
    t8_21: bool | None = None
    inv16_t16_16: bool | None = None
    t15_17: bool | None = None
    t9_11: bool | None = None
    kmt2a_other: bool | None = Field(None, description="11q23.3 (KMT2A) rearrangement other than t(9;11).")
    t6_9: bool | None = None
    t9_22: bool | None = None
    t8_16: bool | None = None
    ipssr_group: IpssrCytoGroup | None = None
    warnings: tuple[str, ...] = ()
