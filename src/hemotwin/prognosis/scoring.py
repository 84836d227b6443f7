"""All risk scores of one patient (:func:`score_patient`) or a cohort (:func:`score_cohort`).

Both paths build the same feature arrays (``HB``, ``PLT``, ``BM_BLAST``, ``ANC``, ``CYTO_CODE``,
``K_<karyotype flag>``, ``MUT_<GENE>`` and the flags of
:data:`hemotwin.prognosis.mutations.FLAG_COLUMNS`; 1.0 / 0.0 / NaN) and run the same vectorised
scores on them, so a patient scored alone and inside a cohort gets the same result.

This module imports numpy and pydantic only; pandas is imported inside :func:`score_cohort`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

import numpy as np
from pydantic import BaseModel, ConfigDict

from hemotwin.errors import InputError
from hemotwin.io.report import RESEARCH_USE
from hemotwin.prognosis.cytogenetics import IPSSR_CYTO_CODE, KaryotypeFeatures
from hemotwin.prognosis.eln import (
    ELN2022_LEVELS,
    ELN_CATEGORIES,
    eln2022_arrays,
    eln2022_result,
    eln2024_arrays,
    eln2024_levels,
    eln2024_result,
    eln_statuses,
)
from hemotwin.prognosis.ipssm import IPSSM_CATEGORIES, ipssm_arrays, ipssm_result, ipssm_statuses
from hemotwin.prognosis.ipssr import IPSSR_CATEGORIES, ipssr_arrays, ipssr_result, ipssr_status
from hemotwin.prognosis.mutations import MutationFeatures, check_vafs, mutation_arrays, mutation_features
from hemotwin.prognosis.mutations import mutation_matrix as mutation_matrix  # re-exported for the cohort API
from hemotwin.prognosis.patient import HEADLINE_INPUTS, Patient, ScoreResult, load_patient, status_text

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

#: KaryotypeFeatures flags turned into ``K_<NAME>`` feature arrays (1.0 / 0.0 / NaN).
KARYOTYPE_FLAGS: tuple[str, ...] = (
    "normal", "complex", "monosomal", "hyperdiploid_trisomies_only", "minus5", "del5q", "minus7", "del7q",
    "minus17_abn17p", "minus_y", "del11q", "del12p", "del20q", "plus8", "plus19", "i17q", "inv3_t3_3", "mecom_3q26",
    "abn3q", "t8_21", "inv16_t16_16", "t15_17", "t9_11", "kmt2a_other", "t6_9", "t9_22", "t8_16")

#: Columns of :func:`score_cohort`. A category column holds the category, ``undetermined`` (missing or
#: unreadable inputs decide it) or ``not applicable`` (APL for ELN); its ``*_REASON`` column says why and
#: names the deciding inputs, largest effect first (blank when the category is determined).
COHORT_COLUMNS: tuple[str, ...] = ("ID", "ELN2022", "ELN2022_REASON", "ELN2024", "ELN2024_REASON", "IPSSR",
                                   "IPSSR_SCORE", "IPSSR_REASON", "IPSSM", "IPSSM_SCORE", "IPSSM_BEST",
                                   "IPSSM_WORST", "IPSSM_REASON", "CYTO_IPSSR", "COMPLEX", "warnings")
#: Category-column values of a patient without a category (see :data:`COHORT_COLUMNS`).
UNDETERMINED, NOT_APPLICABLE = "undetermined", "not applicable"
Regimen = Literal["venetoclax", "ivosidenib"]
#: The ELN 2024 contexts (:data:`Regimen`), in the order errors list them.
REGIMENS: tuple[str, ...] = ("venetoclax", "ivosidenib")


def check_regimen(regimen: str) -> Regimen:
    """``regimen`` when it is an ELN 2024 context, else an :class:`InputError` naming ``regimen``."""
    if regimen not in REGIMENS:
        raise InputError("regimen", regimen, "venetoclax or ivosidenib")
    return cast("Regimen", regimen)


def karyotype_of(text: str | None) -> KaryotypeFeatures:
    """Karyotype features of an ISCN string (never raises; blank -> not evaluable)."""
    try:
        from hemotwin.prognosis.karyotype_features import karyotype_features
    except ImportError:  # pragma: no cover - the parser ships with the package
        return KaryotypeFeatures(text=text or "", evaluable=False, warnings=("karyotype parser not available",))
    return karyotype_features(text or "")


def karyotype_input(kf: KaryotypeFeatures) -> str:
    """The karyotype as a deciding input: ``(not given)``, ``(unreadable)`` or ``(partly known)``.

    A karyotype that was read names only some lesions (e.g. the phrase "complex"); it appears
    among the deciding inputs only when a lesion it leaves unknown matters.
    """
    if kf.evaluable:
        return "karyotype (partly known)"
    return "karyotype (unreadable)" if kf.text.strip() else "karyotype (not given)"


def sanz_note(wbc: float | None, plt: float | None) -> str:
    """The Sanz relapse-risk group of an APL (Sanz et al., Blood 2000;96:1247), as a note.

    High: WBC > 10 x10^9/L; low: WBC <= 10 and platelets > 40 x10^9/L; intermediate: WBC <= 10 and
    platelets <= 40.
    """
    cite = "Sanz et al., Blood 2000;96:1247"
    if wbc is None:
        return f"APL risk by the Sanz score needs the WBC (x10^9/L) and platelets ({cite})"
    if wbc > 10:
        return f"Sanz score: high risk (WBC {wbc:g} > 10 x10^9/L; {cite})"
    if plt is None:
        return f"Sanz score: low or intermediate risk (WBC {wbc:g} <= 10 x10^9/L; platelets needed; {cite})"
    group, op = ("low", ">") if plt > 40 else ("intermediate", "<=")
    return f"Sanz score: {group} risk (WBC {wbc:g} <= 10, platelets {plt:g} {op} 40 x10^9/L; {cite})"


def _tri(v: bool | None) -> float:
    return math.nan if v is None else float(v)


def cyto_arrays(feats: Sequence[KaryotypeFeatures]) -> dict[str, np.ndarray]:
    """``K_<FLAG>`` and ``CYTO_CODE`` arrays from karyotype features (NaN = unknown)."""
    out = {f"K_{name.upper()}": np.array([_tri(getattr(k, name)) for k in feats], dtype=float)
           for name in KARYOTYPE_FLAGS}
    out["CYTO_CODE"] = np.array([IPSSR_CYTO_CODE.get(k.ipssr_group, math.nan) if k.ipssr_group else math.nan
                                 for k in feats], dtype=float)
    return out


def score_arrays(F: dict[str, np.ndarray], *, regimen: Regimen = "venetoclax") -> dict[str, dict[str, np.ndarray]]:
    """Every score, vectorised, on a feature dict."""
    return {
        "eln2022": eln2022_arrays(F),
        "eln2024": eln2024_arrays(F, regimen=regimen),
        "ipssr": ipssr_arrays(F["CYTO_CODE"], F["BM_BLAST"], F["HB"], F["PLT"], F["ANC"]),
        "ipssm": ipssm_arrays(F),
    }


class RiskReport(BaseModel):
    """All scores of one patient with their reasons, the features they read, and a human summary."""

    model_config = ConfigDict(frozen=True)

    id: str
    disease: str | None = None
    eln2022: ScoreResult
    eln2024: ScoreResult
    ipssr: ScoreResult
    ipssm: ScoreResult
    karyotype: KaryotypeFeatures
    mutations: MutationFeatures
    warnings: list[str] = []
    summary: str = ""
    research_use: str = RESEARCH_USE


def patient_features(patient: Patient) -> tuple[dict[str, np.ndarray], KaryotypeFeatures, MutationFeatures]:
    """The one-row feature dict of a patient, with the karyotype and mutation features it came from."""
    kf = patient.cytogenetics if patient.cytogenetics is not None else karyotype_of(patient.karyotype)
    panel = patient.sequenced_genes
    mf = mutation_features(patient.mutations, sequenced_genes=panel, minus17=kf.minus17_abn17p,
                           where=f"{patient.id}: mutations")
    vafs, _ = check_vafs([m.vaf for m in patient.mutations], where=f"{patient.id}: mutations.vaf")
    F = mutation_arrays(np.zeros(len(patient.mutations), dtype=np.intp), 1, [m.gene for m in patient.mutations],
                        np.array([math.nan if v is None else v for v in vafs], dtype=float),
                        [m.effect for m in patient.mutations], [m.protein_change for m in patient.mutations],
                        panel=None if panel is None else frozenset(mf.panel or ()))
    F.update(cyto_arrays([kf]))
    for key, val in (("HB", patient.hb_g_dl), ("PLT", patient.plt_1e9_per_l), ("BM_BLAST", patient.bm_blast_pct),
                     ("ANC", patient.anc_1e9_per_l)):
        F[key] = np.array([math.nan if val is None else float(val)])
    return F, kf, mf


def _summary(r: RiskReport) -> str:
    head = f"{r.id}" + (f" ({r.disease})" if r.disease else "") + f" - {RESEARCH_USE}"
    lines = [head]
    context = {"ELN 2022": "AML", "ELN 2024": "AML", "IPSS-R": "MDS", "IPSS-M": "MDS"}
    for s in (r.eln2022, r.eln2024, r.ipssr, r.ipssm):
        # The headline says the category only when the missing inputs cannot change it (ScoreResult.headline).
        other = f" [{context[s.name]} score]" if r.disease and r.disease != context[s.name] else ""
        lines.append(f"{s.headline}{other}")
        if len(s.deciding_inputs) > HEADLINE_INPUTS:  # the headline named only the first ones
            lines.append(f"  decided by: {', '.join(s.deciding_inputs)}")
        for rule in s.rules:
            lines.append(f"  - {rule}")
        for note in s.notes:
            lines.append(f"  note: {note}")
        for m in s.missing:
            lines.append(f"  missing: {m}")
    for w in r.warnings:
        lines.append(f"warning: {w}")
    return "\n".join(lines)


def score_patient(patient: Patient, *, regimen: Regimen = "venetoclax") -> RiskReport:
    """ELN 2022, ELN 2024, IPSS-R and IPSS-M of one patient, each with the rules that fired.

    Parameters
    ----------
    patient
        The patient record (see :class:`~hemotwin.prognosis.patient.Patient`).
    regimen
        ELN 2024 context: ``"venetoclax"`` (venetoclax + HMA/LDAC) or ``"ivosidenib"``
        (azacitidine + ivosidenib, which adds the IDH1 rule).

    Returns
    -------
    RiskReport
        All results, the karyotype and mutation features read, warnings and a ``summary`` text.
    """
    F, kf, mf = patient_features(patient)
    arr = score_arrays(F, regimen=regimen)
    warnings = [*kf.warnings, *mf.warnings]
    if patient.cytogenetics is None and (patient.karyotype or "").strip() and not kf.evaluable:
        warnings.append(f"karyotype {patient.karyotype!r} could not be read: cytogenetic risk unknown")
    if patient.sequenced_genes is None:
        warnings.append("sequenced genes not given: genes without a reported mutation are treated as not "
                        "sequenced (unknown), not wild type; give \"sequenced_genes\": \"all\" or a list")
    kin = karyotype_input(kf)
    eln = [eln2022_result(F, arr["eln2022"], 0, karyotype=kin),
           eln2024_result(F, arr["eln2024"], 0, regimen=regimen, karyotype=kin)]
    sanz = sanz_note(patient.wbc_1e9_per_l, patient.plt_1e9_per_l)
    eln = [e if e.applicable else e.model_copy(update={"notes": [*e.notes, sanz]}) for e in eln]
    report = RiskReport(
        id=patient.id, disease=patient.disease, eln2022=eln[0], eln2024=eln[1],
        ipssr=ipssr_result(arr["ipssr"], 0, karyotype=kin), ipssm=ipssm_result(arr["ipssm"], 0, karyotype=kin),
        karyotype=kf, mutations=mf, warnings=warnings)
    return report.model_copy(update={"summary": _summary(report)})


def score_patient_file(path: str | Path, *, regimen: str = "venetoclax") -> RiskReport:
    """Read a patient JSON file and score it (:func:`score_patient`).

    Parameters
    ----------
    path
        Patient JSON file (see :class:`~hemotwin.prognosis.patient.Patient`).
    regimen
        ELN 2024 context: ``"venetoclax"`` or ``"ivosidenib"``; checked before the file is read.

    Returns
    -------
    RiskReport
    """
    checked = check_regimen(regimen)
    return score_patient(load_patient(path), regimen=checked)


def _category_columns(F: dict[str, np.ndarray], arr: dict[str, dict[str, np.ndarray]], karyotype: np.ndarray, *,
                      regimen: Regimen) -> dict[str, list[str]]:
    """Category and reason columns of :func:`score_cohort`, from the same status functions as one patient."""
    n = len(karyotype)
    eln = {"ELN2022": ("ELN 2022", ELN2022_LEVELS, arr["eln2022"]),
           "ELN2024": ("ELN 2024", eln2024_levels(regimen), arr["eln2024"])}
    out: dict[str, list[str]] = {}
    for col, (name, levels, ev) in eln.items():
        cats = [ELN_CATEGORIES[c] for c in ev["category"].tolist()]
        reasons = [""] * n
        rows = np.flatnonzero(~ev["determined"])
        applicable = ev["applicable"].tolist()
        for i, status in zip(rows.tolist(), eln_statuses(name, levels, F, ev, rows, karyotype[rows]), strict=True):
            cats[i] = UNDETERMINED if applicable[i] else NOT_APPLICABLE
            reasons[i] = status_text(*status)
        out[col], out[f"{col}_REASON"] = cats, reasons
    r = arr["ipssr"]
    cats = [IPSSR_CATEGORIES[c] if c >= 0 else UNDETERMINED for c in r["category"].tolist()]
    reasons = [""] * n
    for i in np.flatnonzero(r["category"] < 0).tolist():
        reasons[i] = status_text(*ipssr_status(r, i, karyotype=karyotype[i]))
    out["IPSSR"], out["IPSSR_REASON"] = cats, reasons
    m = arr["ipssm"]
    same = m["category_best"] == m["category_worst"]
    out["IPSSM"] = [IPSSM_CATEGORIES[c] if ok else UNDETERMINED
                    for c, ok in zip(m["category"].tolist(), same.tolist(), strict=True)]
    reasons = [""] * n
    rows = np.flatnonzero(~same)
    for i, status in zip(rows.tolist(), ipssm_statuses(m, rows, karyotype[rows]), strict=True):
        reasons[i] = status_text(*status)
    out["IPSSM_REASON"] = reasons
    return out


def score_cohort(clinical: pd.DataFrame, molecular: pd.DataFrame | None = None, *,
                 sequenced_genes: Iterable[str] | str | None = None,
                 regimen: Regimen = "venetoclax") -> pd.DataFrame:
    """Every score for every patient of a cohort (vectorised; 10,000 patients in about a second).

    Parameters
    ----------
    clinical
        Validated clinical table (:func:`hemotwin.prognosis.tables.read_clinical`): index ``ID``,
        columns ``BM_BLAST``, ``HB``, ``PLT``, ``ANC``, ``CYTOGENETICS``.
    molecular
        Validated molecular table (:func:`hemotwin.prognosis.tables.read_molecular`), or ``None``.
    sequenced_genes
        Panel for every patient; default: every gene seen anywhere in ``molecular`` (see
        :func:`hemotwin.prognosis.mutations.mutation_matrix`); ``"all"`` or a list override it.
    regimen
        ELN 2024 context (see :func:`score_patient`).

    Returns
    -------
    pandas.DataFrame
        One row per clinical row, columns :data:`COHORT_COLUMNS`: categories as text, or
        ``undetermined`` / ``not applicable`` with the reason and the deciding inputs in the
        ``*_REASON`` column (the same text :attr:`ScoreResult.reason` and ``deciding_inputs`` give
        for the patient alone); ``IPSSR_SCORE``/``IPSSM_*`` as floats (NaN when not computable),
        ``CYTO_IPSSR`` the IPSS-R cytogenetic group, ``COMPLEX`` 1/0/blank and ``warnings``
        (``"; "``-joined text).
    """
    import pandas as pd

    ids = [str(i) for i in clinical.index]
    n = len(ids)
    F = {k: v.to_numpy(dtype=float) for k, v in mutation_matrix(molecular, ids, sequenced_genes=sequenced_genes)
         .items()}
    texts = clinical["CYTOGENETICS"].fillna("").astype(str) if "CYTOGENETICS" in clinical.columns else \
        pd.Series([""] * n, index=clinical.index)
    codes, uniques = pd.factorize(texts.to_numpy(), use_na_sentinel=False)
    ufeats = [karyotype_of(t) for t in uniques]
    ucyto = cyto_arrays(ufeats)
    F.update({k: v[codes] for k, v in ucyto.items()})
    for key in ("HB", "PLT", "BM_BLAST", "ANC"):
        F[key] = clinical[key].to_numpy(dtype=float) if key in clinical.columns else np.full(n, math.nan)
    arr = score_arrays(F, regimen=regimen)

    # Per-patient warnings: karyotype problems and missing score inputs (kept short: one CSV cell).
    uwarn = []
    for t, k in zip(uniques, ufeats, strict=True):
        w = list(k.warnings)
        if not str(t).strip():
            w.append("no karyotype")
        elif not k.evaluable:
            w.append("karyotype not readable")
        uwarn.append("; ".join(w))
    kw = np.array(uwarn, dtype=object)[codes]
    kin = np.array([karyotype_input(k) for k in ufeats], dtype=object)[codes]
    ipm = arr["ipssm"]
    n_missing = ipm["missing"].sum(axis=0)
    warn = []
    for i in range(n):
        parts = [kw[i]] if kw[i] else []
        if n_missing[i]:
            parts.append(f"IPSS-M: {int(n_missing[i])} input(s) missing")
        warn.append("; ".join(parts))
    columns = _category_columns(F, arr, kin, regimen=regimen)
    group_names = {v: k for k, v in IPSSR_CYTO_CODE.items()}
    cplx = F["K_COMPLEX"]
    out = pd.DataFrame({
        "ID": ids,
        "ELN2022": columns["ELN2022"], "ELN2022_REASON": columns["ELN2022_REASON"],
        "ELN2024": columns["ELN2024"], "ELN2024_REASON": columns["ELN2024_REASON"],
        "IPSSR": columns["IPSSR"],
        "IPSSR_SCORE": arr["ipssr"]["score"],
        "IPSSR_REASON": columns["IPSSR_REASON"],
        "IPSSM": columns["IPSSM"],
        "IPSSM_SCORE": ipm["score"],
        "IPSSM_BEST": ipm["best"],
        "IPSSM_WORST": ipm["worst"],
        "IPSSM_REASON": columns["IPSSM_REASON"],
        "CYTO_IPSSR": ["" if math.isnan(c) else group_names[int(c)] for c in F["CYTO_CODE"]],
        "COMPLEX": pd.array([None if math.isnan(c) else int(c) for c in cplx], dtype="Int64"),
        "warnings": warn,
    })
    out.attrs["research_use"] = RESEARCH_USE
    return out


__all__ = [
    "COHORT_COLUMNS",
    "KARYOTYPE_FLAGS",
    "NOT_APPLICABLE",
    "REGIMENS",
    "UNDETERMINED",
    "RiskReport",
    "check_regimen",
    "cyto_arrays",
    "karyotype_input",
    "karyotype_of",
    "mutation_matrix",
    "patient_features",
    "sanz_note",
    "score_arrays",
    "score_cohort",
    "score_patient",
    "score_patient_file",
]


