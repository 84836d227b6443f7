"""ELN 2022 response, relapse and MRD-relapse calls along a patient timeline (docs/CLINICAL_RULES.md §5).

The engine walks the timepoints once, in date order, and decides each call from data up to that date
only: adding a later timepoint never changes an earlier call. A condition that needs a later sample to
be confirmed (blood blasts in two samples >= 7 days apart; an MRD conversion confirmed in the next
sample of the same tissue) is reported as a separate, later event, never by rewriting the earlier call.

Every criterion is three-valued (met / not met / unknown): a category is called when all its criteria
are met, skipped when one is not met, and an unknown criterion that could decide the call makes the
timepoint "not evaluable: needs X". Comparisons are exact (:class:`~decimal.Decimal`): ANC 1.0 x10^9/L
is CR-eligible, 5.0 % marrow blasts is not < 5 %.

Performance: the timeline is validated once at load; the loop reads plain attributes and builds small
frozen dataclasses (no pydantic validation per timepoint). Criteria are built only when the call looks at
them (a category walk stops at the first category that holds), and everything that depends only on a few
values is made once and shared: the §5 remission walk per (marrow blasts, blood blasts, EMD, ANC, platelets)
(:class:`_Walk`), each distinct :class:`Criterion` (immutable), display texts, MRD classes, landmarks, series
keys and status texts. Frozen records are filled through their slot descriptors (:func:`_new_call`). The
memo tables are bounded and never change a result (:func:`clear_caches`); sharing also keeps the retained
results small, which matters as much as the CPU time (fewer objects for the cyclic garbage collector).
``tests/monitoring/reference_engine.py`` keeps the straightforward engine as first written; the tests check
that both give equal results (examples, seeded random courses, hypothesis).
"""

from __future__ import annotations

import datetime as _dt
import math
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import date, timedelta
from decimal import Decimal
from itertools import pairwise

from pydantic import BaseModel, ConfigDict, Field

from hemotwin.monitoring import mrd as M
from hemotwin.monitoring.alerts import Event, open_alerts, order_events
from hemotwin.monitoring.timeline import Timeline, Timepoint, TreatmentLine

# --- §5 thresholds (ELN 2022 Table 8), exact -------------------------------------------------------------
BM_BLASTS_LT = Decimal(5)  # CR/CRh/CRi/MLFS: BM blasts < 5 %; hematologic relapse: >= 5 %
ANC_CR = Decimal("1.0")  # CR: ANC >= 1.0 x10^9/L; CRi: residual neutropenia < 1.0
PLT_CR = Decimal(100)  # CR: platelets >= 100 x10^9/L; CRi: thrombocytopenia < 100
ANC_CRH = Decimal("0.5")  # CRh: ANC >= 0.5
PLT_CRH = Decimal(50)  # CRh: platelets >= 50
MLFS_CELLS = 200  # MLFS: >= 200 cells counted ...
MLFS_CELLULARITY = Decimal(10)  # ... or cellularity >= 10 %
PR_BLASTS = (Decimal(5), Decimal(25))  # PR: BM blasts 5-25 % ...
PR_FALL = Decimal("0.5")  # ... and a fall of >= 50 % from pretreatment
# --- progressive disease: ELN 2017 (Döhner et al., Blood 2017;129:424) Table 9 note, kept by ELN 2022;
# NOT a row of CLINICAL_RULES §5 yet (confirm). >50 % rise of BM blasts (>= 15 points when baseline < 30 %),
# or >50 % rise of peripheral blasts to > 25 x10^9/L, or new extramedullary disease.
PD_RISE = Decimal("1.5")
PD_MIN_POINTS, PD_LOW_BASELINE = Decimal(15), Decimal(30)
PD_PB_ABS = Decimal(25)

RULE = "ELN 2022 Table 8 (docs/CLINICAL_RULES.md §5)"
R_CR, R_CRH, R_CRI, R_MLFS, R_PR = "§5 CR", "§5 CRh", "§5 CRi", "§5 MLFS", "§5 PR"
R_NR, R_REF, R_HREL, R_MREL = "§5 No response", "§5 Refractory", "§5 Hematologic relapse", "§5 MRD relapse"
R_MRD = "§5 MRD thresholds (ELN MRD 2021)"
R_PD = "ELN 2017 Table 9 progressive disease (not in CLINICAL_RULES §5: confirm)"

REMISSION = ("CR", "CRh", "CRi")
_REM_RANK = {"CR": 3, "CRh": 2, "CRi": 1}
_PRE_RANK = {"PR": 1, "MLFS": 2}


class MonitorConfig(BaseModel):
    """Settings of the assessment (stored in every output's provenance)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    intensive_courses_for_refractory: int = Field(2, ge=1, description="§5 Refractory: courses of intensive induction")
    intensive_eval_days: int = Field(
        21, ge=0, description="days after the start of that course before its response marrow counts (project "
                              "convention: response marrows are taken at count recovery; 0 = literal reading)")
    less_intensive_landmark_days: int = Field(180, ge=1, description="§5 Refractory landmark, less-intensive (confirm)")
    blood_blast_confirm_days: int = Field(7, ge=1, description="§5 Hematologic relapse: samples >= 1 week apart")
    projection_horizon_days: int = Field(90, ge=1, description="alert when a crossing is projected within N days")
    projection_threshold_pct: dict[str, Decimal] = Field(
        default_factory=lambda: {"qpcr": Decimal(2), "flow": Decimal(5), "ngs": Decimal(5)},
        description="per method, the MRD level whose crossing is projected: qPCR 2 % (§5 low-level band); flow "
                    "and NGS 5 % as a proxy of the 5 % marrow-blast relapse level (project convention)")
    ci_level: float = Field(0.95, gt=0, lt=1)


@dataclass(slots=True, frozen=True)
class Criterion:
    """One test of a rule with the value used: ``met`` True / False / None (value missing).

    Immutable: equal criteria are shared between calls (and patients) rather than copied.
    """

    rule: str
    test: str
    value: str | None
    met: bool | None


@dataclass(slots=True, frozen=True)
class Call:
    """The assessment of one timepoint (data up to its date only)."""

    date: _dt.date
    sample: str
    category: str
    label: str
    mrd_status: str | None
    evaluable: bool
    needs: tuple[str, ...]
    criteria: tuple[Criterion, ...]
    rule: str
    status: str
    line: int | None


@dataclass(slots=True, frozen=True)
class MRDPoint:
    """One MRD result in canonical units with its §5 status and log10 reduction from baseline."""

    date: _dt.date
    method: str
    marker: str
    tissue: str
    value_pct: float | None
    lod_pct: float | None
    censored: bool
    status: str
    reason: str
    log10_reduction: float | None
    reduction_is_lower_bound: bool


@dataclass(slots=True, frozen=True)
class PatientResult:
    """Everything the monitoring layer says about one patient."""

    patient: str
    calls: tuple[Call, ...]
    events: tuple[Event, ...]
    open_alerts: tuple[Event, ...]
    mrd: tuple[MRDPoint, ...]
    kinetics: tuple[M.Kinetics, ...]
    warnings: tuple[str, ...]
    current_status: str
    last_mrd: str | None
    rules: str = RULE


# --------------------------------------------------------------------------------------------- helpers


def _s(v: Decimal | None, unit: str) -> str | None:
    # Display only (decisions use the exact values): 1.000 -> "1", 4.99 -> "4.99".
    return None if v is None else f"{format(v.normalize(), 'f')} {unit}"


# Display texts memoised per exact value: equal Decimals (1.0, 1.00) share their normalised text, so the
# value is a safe key; zeros are kept out (-0 and 0 are equal but print differently). Bounded size.
_TXT_MAX = 1 << 16
_PCT_TXT: dict[Decimal, str] = {}
_COUNT_TXT: dict[Decimal, str] = {}


def _s_pct(v: Decimal | None) -> str | None:
    """``_s(v, "%")``, memoised."""
    if v is None:
        return None
    t = _PCT_TXT.get(v)
    if t is None:
        t = f"{format(v.normalize(), 'f')} %"
        if v and len(_PCT_TXT) < _TXT_MAX:
            _PCT_TXT[v] = t
    return t


def _s_count(v: Decimal | None) -> str | None:
    """``_s(v, "x10^9/L")``, memoised."""
    if v is None:
        return None
    t = _COUNT_TXT.get(v)
    if t is None:
        t = f"{format(v.normalize(), 'f')} x10^9/L"
        if v and len(_COUNT_TXT) < _TXT_MAX:
            _COUNT_TXT[v] = t
    return t


def clear_caches() -> None:
    """Empty the module's memo tables (texts, criteria, walks, MRD classes); results do not depend on them."""
    _PCT_TXT.clear()
    _COUNT_TXT.clear()
    _CRITS.clear()
    _WALKS.clear()
    _CLASSES.clear()
    _NE_TEXT.clear()


# Equal criteria are one shared (immutable) object: a cohort's calls repeat a few thousand distinct criteria,
# and sharing them keeps the retained results small (fewer objects for the cyclic garbage collector to scan).
_CRITS: dict[tuple[str, str, str | None, bool | None], Criterion] = {}


def _crit(rule: str, test: str, value: str | None, met: bool | None) -> Criterion:
    """``Criterion(rule, test, value, met)``, shared with every equal one made before (bounded table)."""
    key = (rule, test, value, met)
    c = _CRITS.get(key)
    if c is None:
        c = Criterion(rule, test, value, met)
        if len(_CRITS) < _TXT_MAX:
            _CRITS[key] = c
    return c


# M.classify per (method, marker, value text, detected, LOD text): the texts, not the Decimals, are the key, since
# the reason quotes the value as written (0.10 and 0.1 are equal Decimals but read differently). The entry also
# carries the numbers the MRD step needs: float(value), float(LOD) and log10(float(value)) of a quantified value.
_MRDClass = tuple[str, bool, str, float | None, float | None, float | None]
_CLASSES: dict[tuple[object, ...], _MRDClass] = {}


def _classify(method: str, marker: str, value: Decimal | None, detected: bool, lod: Decimal | None) -> _MRDClass:
    """(status, censored, reason) of :func:`~hemotwin.monitoring.mrd.classify`, then float(value), float(LOD) and
    log10(float(value)) when the value is quantified (not censored, > 0), else None; memoised (bounded table)."""
    key = (method, marker, None if value is None else str(value), detected, None if lod is None else str(lod))
    c = _CLASSES.get(key)
    if c is None:
        status, censored, reason = M.classify(method, marker, value, detected, lod)
        f_value = None if value is None else float(value)
        lv = None if censored or value is None or value <= 0 else math.log10(f_value)  # type: ignore[arg-type]
        c = (status, censored, reason, f_value, None if lod is None else float(lod), lv)
        if len(_CLASSES) < _TXT_MAX:
            _CLASSES[key] = c
    return c


def _setters(cls: type) -> tuple:
    return tuple(getattr(cls, f.name).__set__ for f in fields(cls))


_new_obj = object.__new__
_CALL_SET = _setters(Call)
_MRDP_SET = _setters(MRDPoint)
_EVENT_SET = _setters(Event)


def _new_call(day: _dt.date, sample: str, category: str, label: str, mrd_status: str | None, evaluable: bool,
              needs: tuple[str, ...], criteria: tuple[Criterion, ...], rule: str, status: str,
              line: int | None) -> Call:
    """``Call(...)`` (equal object) without the frozen ``__init__``'s 11 ``object.__setattr__`` calls."""
    c = _new_obj(Call)
    s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10 = _CALL_SET
    s0(c, day)
    s1(c, sample)
    s2(c, category)
    s3(c, label)
    s4(c, mrd_status)
    s5(c, evaluable)
    s6(c, needs)
    s7(c, criteria)
    s8(c, rule)
    s9(c, status)
    s10(c, line)
    return c


_NEEDS = {
    "BM blasts < 5 %": "marrow_blasts_pct (a marrow sample)",
    "no circulating blasts": "blood_blasts_pct",
    "no extramedullary disease": "extramedullary_disease",
    "ANC >= 1.0 x10^9/L": "anc_1e9_per_l", "ANC >= 0.5 x10^9/L": "anc_1e9_per_l",
    "platelets >= 100 x10^9/L": "platelets_1e9_per_l", "platelets >= 50 x10^9/L": "platelets_1e9_per_l",
    "ANC >= 1.0 or platelets >= 100 x10^9/L (one lineage recovered)": "anc_1e9_per_l or platelets_1e9_per_l",
    "marrow not aplastic (>= 200 cells counted or cellularity >= 10 %)":
        "marrow_cells_counted or marrow_cellularity_pct",
    "BM blasts 5-25 %": "marrow_blasts_pct (a marrow sample)",
    "BM blasts fell >= 50 % from pretreatment": "pretreatment marrow blasts (diagnosis.baseline_marrow_blasts_pct)",
}


def _ev(c: Criterion) -> str:
    state = "met" if c.met else "not met" if c.met is False else "unknown"
    return f"{c.test}: {c.value} ({state})"


def _needs(crits: Iterable[Criterion]) -> list[str]:
    out: list[str] = []
    for c in crits:
        if c.met is None:
            n = _NEEDS.get(c.test, c.test)
            if n not in out:
                out.append(n)
    return out


def _and(*vals: bool | None) -> bool | None:
    """Three-valued AND: False when one is False, else None when one is unknown, else True."""
    if False in vals:  # the values are exactly True / False / None
        return False
    return None if None in vals else True


def _or2(a: bool | None, b: bool | None) -> bool | None:
    """Three-valued OR of two values."""
    if a is True or b is True:
        return True
    return None if a is None or b is None else False


_T_BM, _T_PB, _T_EMD = "BM blasts < 5 %", "no circulating blasts", "no extramedullary disease"
_T_ANC1, _T_PLT100 = "ANC >= 1.0 x10^9/L", "platelets >= 100 x10^9/L"
_T_ANC05, _T_PLT50 = "ANC >= 0.5 x10^9/L", "platelets >= 50 x10^9/L"
_T_LINEAGE = "ANC >= 1.0 or platelets >= 100 x10^9/L (one lineage recovered)"
_T_APLASTIC = "marrow not aplastic (>= 200 cells counted or cellularity >= 10 %)"
_T_PR_BAND, _T_FALL = "BM blasts 5-25 %", "BM blasts fell >= 50 % from pretreatment"


class _Walk:
    """The §5 remission walk (CR, then CRh, then CRi) for one combination of values.

    A walk appends every criterion it looks at to the call's ``seen`` list (the call lists them, met or not)
    and yields (first category whose criteria all hold, True, its criteria), or (an undecidable category,
    False, its criteria), or (None, True, ()). It depends only on the five values it reads, so one walk
    serves every timepoint that has them (:func:`_remission_walk`); ``added`` is what it appends to ``seen``.
    """

    __slots__ = ("a1", "added", "anc1", "bm", "common", "decided", "emd", "m_bm", "m_emd", "m_pb", "name", "p1",
                 "pb", "plt100", "rem", "s_mb", "used")

    def __init__(self, mb: Decimal | None, bb: Decimal | None, emd: bool | None, anc: Decimal | None,
                 plt: Decimal | None) -> None:
        s_mb, s_anc, s_plt = _s_pct(mb), _s_count(anc), _s_count(plt)
        self.s_mb, self.rem = s_mb, None
        m_bm = self.m_bm = None if mb is None else mb < BM_BLASTS_LT
        m_pb = self.m_pb = None if bb is None else bb == 0
        m_emd = self.m_emd = None if emd is None else not emd
        common = self.common = _and(m_bm, m_pb, m_emd)
        a1 = self.a1 = None if anc is None else anc >= ANC_CR
        p1 = self.p1 = None if plt is None else plt >= PLT_CR
        bm = self.bm = _crit(R_CR, _T_BM, s_mb, m_bm)
        pb = self.pb = _crit(R_CR, _T_PB, _s_pct(bb), m_pb)
        emd_c = self.emd = _crit(R_CR, _T_EMD, None if emd is None else ("true" if emd else "false"), m_emd)
        anc1 = self.anc1 = _crit(R_CR, _T_ANC1, s_anc, a1)
        plt100 = self.plt100 = _crit(R_CR, _T_PLT100, s_plt, p1)
        cr: tuple[Criterion, ...] = (bm, pb, emd_c, anc1, plt100)
        v = _and(common, a1, p1)
        if v is not False:
            self.name, self.decided, self.used, self.added = "CR", v is True, cr, cr
            return
        a05 = None if anc is None else anc >= ANC_CRH
        p50 = None if plt is None else plt >= PLT_CRH
        anc05 = _crit(R_CRH, _T_ANC05, s_anc, a05)
        plt50 = _crit(R_CRH, _T_PLT50, s_plt, p50)
        v = _and(common, a05, p50)
        if v is not False:
            self.name, self.decided, self.used = "CRh", v is True, (bm, pb, emd_c, anc05, plt50)
            self.added = (*cr, anc05, plt50)
            return
        one = _or2(a1, p1)
        lineage = _crit(R_CRI, _T_LINEAGE, f"ANC {s_anc}, platelets {s_plt}", one)
        self.added = (*cr, anc05, plt50, lineage)
        v = _and(common, one)
        if v is not False:
            self.name, self.decided, self.used = "CRi", v is True, (bm, pb, emd_c, lineage)
        else:
            self.name, self.decided, self.used = None, True, ()


    def in_remission(self, r_bm: Criterion, r_emd: Criterion) -> tuple[Criterion, ...]:
        """The criteria of an in-remission call: the two relapse tests, then the walk's (one shared tuple)."""
        t = self.rem
        if t is None or t[0] is not r_bm or t[1] is not r_emd:
            t = self.rem = (r_bm, r_emd, *self.added)
        return t


_WALKS: dict[tuple[object, ...], _Walk] = {}


def _remission_walk(tp: Timepoint) -> _Walk:
    """The :class:`_Walk` of a timepoint (marrow blasts only from a marrow sample), shared by equal values."""
    mb = tp.marrow_blasts_pct if tp.sample == "marrow" else None
    bb, emd, anc, plt = tp.blood_blasts_pct, tp.extramedullary_disease, tp.anc_1e9_per_l, tp.platelets_1e9_per_l
    # -0 and 0 are equal Decimals that print differently: a zero is keyed by a (non-numeric) text instead.
    key = (mb if mb or mb is None else ("-0" if mb.is_signed() else "+0"),
           bb if bb or bb is None else ("-0" if bb.is_signed() else "+0"), emd,
           anc if anc or anc is None else ("-0" if anc.is_signed() else "+0"),
           plt if plt or plt is None else ("-0" if plt.is_signed() else "+0"))
    w = _WALKS.get(key)
    if w is None:
        w = _Walk(mb, bb, emd, anc, plt)
        if len(_WALKS) < _TXT_MAX:
            _WALKS[key] = w
    return w


def _mlfs_walk(w: _Walk, tp: Timepoint, seen: list[Criterion]) -> tuple[str | None, bool, tuple[Criterion, ...],
                                                                      bool | None]:
    """§5 MLFS after a remission walk found no category: BM < 5 %, no blood blasts, no EMD, not aplastic.

    Returns the walk's (name, decided, criteria) and whether the marrow was not aplastic (three-valued).
    """
    cells, cell_pct = tp.marrow_cells_counted, tp.marrow_cellularity_pct
    ok = _or2(None if cells is None else cells >= MLFS_CELLS,
              None if cell_pct is None else cell_pct >= MLFS_CELLULARITY)
    aplastic = _crit(R_MLFS, _T_APLASTIC, f"cells {cells}, cellularity {_s_pct(cell_pct)}", ok)
    seen.append(aplastic)
    v = _and(w.common, ok)
    if v is not False:
        return "MLFS", v is True, (w.bm, w.pb, w.emd, aplastic), ok
    return None, True, (), ok


def _pr_walk(w: _Walk, tp: Timepoint, baseline_bm: Decimal | None,
             seen: list[Criterion]) -> tuple[str | None, bool, tuple[Criterion, ...]]:
    """§5 PR after MLFS: ANC >= 1.0, platelets >= 100, BM blasts 5-25 %, a fall of >= 50 % from pretreatment."""
    mb = tp.marrow_blasts_pct if tp.sample == "marrow" else None
    lo, hi = PR_BLASTS
    band = None if mb is None else lo <= mb <= hi
    fall = None if mb is None or baseline_bm is None else mb <= baseline_bm * PR_FALL
    pr_band = _crit(R_PR, _T_PR_BAND, w.s_mb, band)
    fall50 = _crit(R_PR, _T_FALL, f"{w.s_mb} vs pretreatment {_s_pct(baseline_bm)}", fall)
    seen += (pr_band, fall50)
    v = _and(w.a1, w.p1, band, fall)
    if v is not False:
        return "PR", v is True, (w.anc1, w.plt100, pr_band, fall50)
    return None, True, ()


def _mrd_label(statuses: list[str]) -> str | None:
    """Timepoint MRD status: any positive > low-level > all negative; otherwise not evaluable."""
    if not statuses:
        return None
    if M.POSITIVE in statuses:
        return M.POSITIVE
    if M.LOW_LEVEL in statuses:
        return M.LOW_LEVEL
    if all(s == M.NEGATIVE for s in statuses):
        return M.NEGATIVE
    return M.NOT_EVALUABLE


_MRD_SUFFIX = {M.NEGATIVE: "MRD-negative", M.LOW_LEVEL: "MRD-low-level", M.POSITIVE: "MRD-positive",
               M.NOT_EVALUABLE: "MRD not evaluable"}
_DETECTED = (M.POSITIVE, M.LOW_LEVEL)
_NEEDS_MARROW = ("marrow_blasts_pct (a marrow sample)",)
_NE_TEXT: dict[tuple[tuple[str, ...], str], str] = {}  # "not evaluable: needs ..." per (needs, reason): few
_LABELS = {(cat, st): f"{cat} {suffix}" for cat in REMISSION for st, suffix in _MRD_SUFFIX.items()}


# ---------------------------------------------------------------------------------------------- engine


class _Series:
    __slots__ = ("key", "kin", "log_ref", "logs", "nadir", "pending", "points", "prev_status", "projected")

    def __init__(self, key: str) -> None:
        self.key = key
        self.points: list[tuple[date, Decimal | None, bool]] = []
        self.logs: list[float | None] = []  # log10(float(value)) of each quantified positive point (M.kinetics_values)
        self.kin: tuple[int, tuple | None] | None = None  # type: ignore[type-arg]  # (len(points), kinetics values)
        self.prev_status: tuple[str, date] | None = None  # last evaluable status in the current remission
        self.pending: tuple[str, date, Decimal | None] | None = None  # (kind, onset, reference) awaiting confirm
        self.nadir: Decimal | None = None  # lowest quantified positive value in the current remission
        self.log_ref: Decimal | None = None
        self.projected: str | None = None  # severity of the last projection alert in this rising segment


class _Engine:
    def __init__(self, tl: Timeline, cfg: MonitorConfig) -> None:
        self.tl, self.cfg = tl, cfg
        self.lines: list[TreatmentLine] = list(tl.treatment_lines)
        starts = [ln.start for ln in self.lines]
        # Sorted, distinct starts (the loader's guarantee): the active line is one bisection away.
        self.starts: list[date] | None = starts if all(a < b for a, b in pairwise(starts)) else None
        self.calls: list[Call] = []
        self.events: list[Event] = []
        self.mrd_points: list[MRDPoint] = []
        self.series: dict[str, _Series] = {}
        self.series_by: dict[tuple[str, str, str], tuple[_Series, str]] = {}  # (method, marker, tissue) as given
        self.first_marker: dict[tuple[str, str], str] = {}  # (method, canonical marker) -> first spelling seen
        self.landmarks: dict[int, tuple[str, str, date | None]] = {}  # line index -> (test, value, due date)
        self.status_memo: tuple[object, ...] | None = None
        self.line_span: tuple[date, date, int | None] | None = None  # see step()
        self.rel_pair: tuple[Criterion, Criterion] | None = None  # see _in_remission()
        self.log_bases: dict[Decimal, float] = {}  # log10(float(baseline)) per distinct MRD baseline
        self.remission: tuple[date, str] | None = None
        self.rem_rank, self.rem_name = 0, ""
        self.mrd_negative_seen = False
        self.mrd_relapse: date | None = None
        self.relapse: date | None = None
        self.line_idx: int | None = None
        self.line_best = 0
        self.line_flag: set[str] = set()
        self.pb_run: list[date] = []  # consecutive blood-blast-positive sample dates in remission
        self.history: list[Timepoint] = []
        self.mrd_tp: Timepoint | None = None
        self.mrd_class: list[_MRDClass] = []
        self._baselines: dict[date, tuple[Decimal | None, Decimal | None, bool | None]] = {}
        self.baseline_mrd: dict[tuple[str, str], Decimal] = {
            (m.method, M.canonical_marker(m.marker)): m.baseline_pct
            for m in tl.diagnosis.mrd_markers if m.baseline_pct is not None}

    # -- helpers ---------------------------------------------------------------------------------------
    def _event(self, day: date, kind: str, severity: str, message: str, rule: str, evidence: Iterable[str] = (),
               *, key: str = "", onset: date | None = None, closes: tuple[str, ...] = ()) -> None:
        ev = _new_obj(Event)
        s0, s1, s2, s3, s4, s5, s6, s7, s8 = _EVENT_SET  # Event(...) without the frozen __init__
        s0(ev, day)
        s1(ev, kind)
        s2(ev, severity)
        s3(ev, message)
        s4(ev, rule)
        s5(ev, tuple(evidence))
        s6(ev, key)
        s7(ev, onset)
        s8(ev, closes)
        self.events.append(ev)

    def _active_line(self, day: date) -> int | None:
        starts = self.starts
        if starts is not None:
            i = bisect_left(starts, day) - 1  # the last line with start < day
            self.line_span = (starts[i] if i >= 0 else _dt.date.min, starts[i + 1] if i + 1 < len(starts)
                              else _dt.date.max, i if i >= 0 else None)
            return i if i >= 0 else None
        idx = None
        for i, ln in enumerate(self.lines):
            if ln.start < day:  # a sample on the start date is taken before the first dose
                idx = i
        return idx

    def _baseline(self, start: date) -> tuple[Decimal | None, Decimal | None, bool | None]:
        """Pretreatment marrow blasts, peripheral blast count and EMD for a line starting on ``start``."""
        # Only called once the line has started, so its pretreatment history is complete: cache it.
        hit = self._baselines.get(start)
        if hit is None:
            hit = self._baselines[start] = self._baseline_scan(start)
        return hit

    def _baseline_scan(self, start: date) -> tuple[Decimal | None, Decimal | None, bool | None]:
        bm = pb = emd = None
        for tp in self.history:
            if tp.date > start:
                break
            if tp.sample == "marrow" and tp.marrow_blasts_pct is not None:
                bm = tp.marrow_blasts_pct
            if tp.wbc_1e9_per_l is not None and tp.blood_blasts_pct is not None:
                pb = tp.wbc_1e9_per_l * tp.blood_blasts_pct / 100
            if tp.extramedullary_disease is not None:
                emd = tp.extramedullary_disease
        if bm is None and self.lines and start == self.lines[0].start:
            bm = self.tl.diagnosis.baseline_marrow_blasts_pct
        return bm, pb, emd

    def _landmark(self, li: int, ln: TreatmentLine, day: date) -> Criterion:
        lm = self.landmarks.get(li)
        if lm is None:
            lm = self.landmarks[li] = self._landmark_of(ln)
        test, value, due = lm
        return _crit(R_REF, test, value, due is not None and day >= due)

    def _landmark_of(self, ln: TreatmentLine) -> tuple[str, str, date | None]:
        """(test, value, due date) of a line's §5 refractory landmark (independent of the sample date)."""
        if ln.intensity == "intensive":
            n = self.cfg.intensive_courses_for_refractory
            courses = ln.courses or [ln.start]  # a line without course dates counts as one course
            due = courses[n - 1] + timedelta(days=self.cfg.intensive_eval_days) if len(courses) >= n else None
            return (f"after {n} courses of intensive induction (+{self.cfg.intensive_eval_days} d)",
                    f"{len(courses)} course(s); landmark {due.isoformat() if due else 'not yet'}", due)
        due = ln.start + timedelta(days=self.cfg.less_intensive_landmark_days)
        return (f"{self.cfg.less_intensive_landmark_days} days of less-intensive therapy",
                f"landmark {due.isoformat()}", due)

    # -- one timepoint ---------------------------------------------------------------------------------
    def step(self, tp: Timepoint) -> None:
        day = tp.date
        span = self.line_span  # (after, up to, index): the active line is the same for lo < day <= hi
        li = span[2] if span is not None and span[0] < day <= span[1] else self._active_line(day)
        if li != self.line_idx:
            self.line_idx = li
            if self.remission is None:
                self.line_best, self.line_flag = 0, set()
        mrd_status = self._mrd_status_here(tp)
        self.history.append(tp)
        if li is None:
            call = _new_call(day, tp.sample, "pre-treatment", "pre-treatment (no treatment line started before)",
                             mrd_status, True, (), (), RULE, "pre-treatment", None)
            self._process_mrd(tp, call)
            return
        ln = self.lines[li]
        bm0, pb0, emd0 = self._baselines.get(ln.start) or self._baseline(ln.start)
        if self.remission is not None:
            call = self._in_remission(tp, mrd_status, li)
        else:
            call = self._not_in_remission(tp, mrd_status, li, ln, bm0, pb0, emd0)
        self._process_mrd(tp, call)

    def _mrd_status_here(self, tp: Timepoint) -> str | None:
        mrd = tp.mrd
        if not mrd:
            self.mrd_class = []
            return None
        res = self.mrd_class = [_classify(m.method, m.marker, m.value_pct, m.detected, m.lod_pct) for m in mrd]
        self.mrd_tp = tp
        if len(res) == 1:
            return res[0][0]  # _mrd_label of one status is that status
        return _mrd_label([r[0] for r in res])

    @property
    def mrd_reasons(self) -> list[str]:
        """Evidence text of the current timepoint's MRD results (built only when an event needs it)."""
        return [f"{m.method} {m.marker} ({m.tissue}): {r[2]}"
                for m, r in zip(self.mrd_tp.mrd, self.mrd_class, strict=True)]

    def _label(self, cat: str, mrd_status: str | None) -> str:
        if cat in REMISSION and mrd_status is not None:
            return _LABELS[cat, mrd_status]
        return cat

    def _not_evaluable(self, tp: Timepoint, needs: list[str] | tuple[str, ...], crits: tuple[Criterion, ...],
                       mrd_status: str | None, li: int | None, status: str, what: str = "") -> Call:
        need = tuple(needs)
        text = _NE_TEXT.get((need, what))
        if text is None:
            text = _NE_TEXT[(need, what)] = f"not evaluable: needs {', '.join(needs)}" + (f" ({what})" if what else "")
        return _new_call(tp.date, tp.sample, "not evaluable", text, mrd_status, False, need, crits, RULE, status, li)

    def _status(self) -> str:
        rem = self.remission
        if rem is None and self.relapse is not None:
            return f"hematologic relapse ({self.relapse.isoformat()})"
        if rem is not None:
            # Formatted once per (remission, category, MRD relapse): most calls repeat the previous status.
            memo = self.status_memo
            if memo is not None and memo[0] is rem and memo[1] == self.rem_name and memo[2] == self.mrd_relapse:
                return memo[3]  # type: ignore[return-value]
            s = f"{self.rem_name} (in remission since {rem[0].isoformat()})"
            if self.mrd_relapse is not None:
                s += f"; MRD relapse ({self.mrd_relapse.isoformat()})"
            self.status_memo = (rem, self.rem_name, self.mrd_relapse, s)
            return s
        if "refractory" in self.line_flag:
            return "refractory"
        if "progression" in self.line_flag:
            return "progressive disease"
        return "on treatment, no remission yet"

    def _in_remission(self, tp: Timepoint, mrd_status: str | None, li: int) -> Call:
        day = tp.date
        # §5 Hematologic relapse (after CR/CRh/CRi): BM blasts >= 5 %; blood blasts in >= 2 samples >= 1 week
        # apart (consecutive positive samples, no blast-free sample between); or new EMD.
        mb = tp.marrow_blasts_pct if tp.sample == "marrow" else None
        bb, emd = tp.blood_blasts_pct, tp.extramedullary_disease
        m_bm = None if mb is None else mb >= BM_BLASTS_LT
        r_bm = _crit(R_HREL, "BM blasts >= 5 %", _s_pct(mb), m_bm)
        r_emd = _crit(R_HREL, "new extramedullary disease", None if emd is None else ("true" if emd else "false"),
                      emd)
        r_pb: Criterion | None = None
        if bb is not None:
            if bb > 0:
                gap = self.cfg.blood_blast_confirm_days
                first = self.pb_run[0] if self.pb_run else None
                ok = first is not None and (day - first).days >= gap
                r_pb = Criterion(R_HREL, f"blood blasts in >= 2 samples >= {gap} days apart",
                                 f"{_s_pct(bb)} on {day}; earlier positive sample "
                                 f"{first.isoformat() if first else 'none'}", ok)
                self.pb_run.append(day)
            elif self.pb_run:
                self.pb_run = []
        crits = [r_bm, r_emd] if r_pb is None else [r_bm, r_pb, r_emd]
        if m_bm is True or emd is True or (r_pb is not None and r_pb.met is True):
            onset = self.pb_run[0] if r_pb is not None and r_pb.met and self.pb_run else day
            self.relapse, self.remission, self.rem_rank = day, None, 0
            self.pb_run, self.mrd_relapse = [], None
            for s in self.series.values():
                s.prev_status = s.pending = s.nadir = None
            met = [c for c in crits if c.met]
            self._event(day, "loss_of_response", "critical", "hematologic relapse", R_HREL,
                        [_ev(c) for c in met], key="hematologic",
                        onset=onset,
                        closes=("relapse_suspected:*", "loss_of_response:downgrade", "projected_relapse:*",
                                "molecular_progression:*", "mrd_conversion:*", "mrd_relapse:*"))
            return _new_call(day, tp.sample, "hematologic relapse", "hematologic relapse", mrd_status, True, (),
                             tuple(crits), RULE, self._status(), li)
        if r_pb is not None and r_pb.met is False:
            self._event(day, "relapse_suspected", "warning",
                        f"circulating blasts {_s(bb, '%')} in remission: relapse if a sample >= "
                        f"{self.cfg.blood_blast_confirm_days} days later shows blasts", R_HREL,
                        [f"{r_pb.test}: {r_pb.value}"], key="blood_blasts")
            return self._not_evaluable(tp, [f"a blood sample >= {self.cfg.blood_blast_confirm_days} days later"],
                                       tuple(crits), mrd_status, li, self._status(), "circulating blasts, unconfirmed")
        if tp.sample != "marrow":
            pair = self.rel_pair  # the same two relapse tests, sample after sample: one tuple
            if pair is None or pair[0] is not r_bm or pair[1] is not r_emd:
                pair = self.rel_pair = (r_bm, r_emd)
            return self._not_evaluable(tp, _NEEDS_MARROW, pair, mrd_status, li, self._status(),
                                       "blood sample: no hematologic relapse criterion met")
        w = _remission_walk(tp)
        name, decided, used = w.name, w.decided, w.used
        if name is None:
            # BM < 5 %, no circulating blasts, no EMD, yet no remission category: both lineages below CRh
            # counts -> MLFS when the marrow is not aplastic (§5 MLFS), still "in remission" per §5 relapse.
            seen = [r_bm, r_emd, *w.added]
            name2, dec2, _, _ = _mlfs_walk(w, tp, seen)
            if name2 == "MLFS" and dec2:
                self._downgrade(day, "MLFS", seen)
                self.rem_rank, self.rem_name = 0, "MLFS"
                return _new_call(day, tp.sample, "MLFS", "MLFS", mrd_status, True, (), tuple(seen), RULE,
                                 self._status(), li)
            return self._not_evaluable(tp, _needs(seen), tuple(seen), mrd_status, li, self._status())
        crits_t = w.in_remission(r_bm, r_emd)  # the relapse criteria, then those the category walk looked at
        if not decided:
            return self._not_evaluable(tp, _needs(crits_t), crits_t, mrd_status, li, self._status())
        self._remission_call(day, name, mrd_status, crits_t, used)
        return _new_call(day, tp.sample, name, self._label(name, mrd_status), mrd_status, True, (), crits_t, RULE,
                         self._status(), li)

    def _downgrade(self, day: date, name: str, seen: Iterable[Criterion]) -> None:
        self._event(day, "loss_of_response", "warning", f"loss of response: {self.rem_name} -> {name}", RULE,
                    [_ev(c) for c in seen if c.met is False and c.rule != R_HREL], key="downgrade")

    def _remission_call(self, day: date, name: str, mrd_status: str | None, seen: Iterable[Criterion],
                        used: tuple[Criterion, ...]) -> None:
        rank = _REM_RANK[name]
        if self.remission is None:
            self.remission, self.rem_rank, self.rem_name = (day, name), rank, name
            self.mrd_negative_seen, self.pb_run = False, []
            for s in self.series.values():
                s.prev_status = s.pending = s.nadir = None
                s.projected = None
            again = " (after relapse)" if self.relapse is not None else ""
            self._event(day, "new_response", "info", f"new response: {name}{again}", f"§5 {name}",
                        [_ev(c) for c in used], key=name,
                        closes=("loss_of_response:*", "refractory:*", "progression:*", "relapse_suspected:*"))
        elif rank > self.rem_rank:
            self._event(day, "new_response", "info", f"improved response: {self.rem_name} -> {name}", f"§5 {name}",
                        [_ev(c) for c in used], key=name, closes=("loss_of_response:downgrade",))
        elif rank < self.rem_rank:
            self._downgrade(day, name, seen)
        self.rem_rank, self.rem_name = rank, name
        if mrd_status == M.NEGATIVE and not self.mrd_negative_seen:
            self.mrd_negative_seen = True
            self._event(day, "new_response", "info", f"{name} MRD-negative", R_MRD, self.mrd_reasons,
                        key="mrd-negative")

    def _not_in_remission(self, tp: Timepoint, mrd_status: str | None, li: int, ln: TreatmentLine,
                          bm0: Decimal | None, pb0: Decimal | None, emd0: bool | None) -> Call:
        day = tp.date
        relapsed_untreated = self.relapse is not None and ln.start <= self.relapse
        if not relapsed_untreated:
            pd = self._progression(tp, bm0, pb0, emd0)
            if pd:  # listed only when one of them is met
                if "progression" not in self.line_flag:
                    self.line_flag.add("progression")
                    self._event(day, "progression", "critical", "progressive disease", R_PD,
                                [_ev(c) for c in pd if c.met], key=str(li))
                return _new_call(day, tp.sample, "progression", "progressive disease", mrd_status, True, (),
                                 tuple(pd), R_PD, self._status(), li)
        if tp.sample != "marrow":
            return self._not_evaluable(tp, _NEEDS_MARROW, (), mrd_status, li, self._status(), "blood sample")
        w = _remission_walk(tp)
        added = w.added  # the call's criteria so far: those the walk looked at (one shared tuple)
        name, decided, used = w.name, w.decided, w.used
        if name is not None and decided:
            self._remission_call(day, name, mrd_status, added, used)
            return _new_call(day, tp.sample, name, self._label(name, mrd_status), mrd_status, True, (), added,
                             RULE, self._status(), li)
        if name is not None:
            return self._not_evaluable(tp, _needs(added), added, mrd_status, li, self._status())
        if relapsed_untreated:
            return _new_call(day, tp.sample, "relapsed disease",
                             "relapsed disease (no treatment line since the relapse)", mrd_status, True, (), added,
                             R_HREL, self._status(), li)
        land = self._landmark(li, ln, day)
        seen = [*added, land]
        if land.met:
            if "refractory" not in self.line_flag:
                self.line_flag.add("refractory")
                self._event(day, "refractory", "critical", f"refractory: no CR/CRh/CRi at the landmark ({ln.regimen})",
                            R_REF, [land.value or "", *(_ev(c) for c in seen if c.met is False)],
                            key=str(li))
            return _new_call(day, tp.sample, "refractory", "refractory", mrd_status, True, (), tuple(seen), R_REF,
                             self._status(), li)
        name, decided, used, not_aplastic = _mlfs_walk(w, tp, seen)
        if name is None:
            name, decided, used = _pr_walk(w, tp, bm0, seen)
        if name is not None and not decided:
            return self._not_evaluable(tp, _needs(seen), tuple(seen), mrd_status, li, self._status())
        if name is not None:
            rank = _PRE_RANK[name]
            if rank > self.line_best:
                self.line_best = rank
                self._event(day, "new_response", "info", f"new response: {name}", f"§5 {name}",
                            [_ev(c) for c in used], key=name)
            return _new_call(day, tp.sample, name, name, mrd_status, True, (), tuple(seen), f"§5 {name}",
                             self._status(), li)
        if w.m_bm and w.m_pb and w.m_emd and not_aplastic is False:
            return self._not_evaluable(tp, ["a marrow that is not aplastic (>= 200 cells or cellularity >= 10 %)"],
                                       tuple(seen), mrd_status, li, self._status())
        return _new_call(day, tp.sample, "no response", "no response (before the landmark)", mrd_status, True, (),
                         tuple(seen), R_NR, self._status(), li)

    def _progression(self, tp: Timepoint, bm0: Decimal | None, pb0: Decimal | None,
                     emd0: bool | None) -> list[Criterion]:
        """The progressive-disease criteria that apply, or [] when none of them is met (the usual case)."""
        mb = tp.marrow_blasts_pct if tp.sample == "marrow" else None
        rise = pb_rise = None
        if mb is not None and bm0 is not None:
            rise = mb > bm0 * PD_RISE and (bm0 >= PD_LOW_BASELINE or mb - bm0 >= PD_MIN_POINTS)
        wbc, bb = tp.wbc_1e9_per_l, tp.blood_blasts_pct
        pb = None
        if wbc is not None and bb is not None and pb0 is not None:
            pb = wbc * bb / 100
            pb_rise = pb > pb0 * PD_RISE and pb > PD_PB_ABS
        new_emd = tp.extramedullary_disease and emd0 is False
        if not (rise or pb_rise or new_emd):
            return []
        out: list[Criterion] = []
        if rise is not None:
            out.append(Criterion(R_PD, "BM blasts > 50 % above pretreatment (>= 15 points if it was < 30 %)",
                                 f"{_s(mb, '%')} vs pretreatment {_s(bm0, '%')}", rise))
        if pb_rise is not None:
            out.append(Criterion(R_PD, "peripheral blasts > 50 % above pretreatment and > 25 x10^9/L",
                                 f"{_s(pb, 'x10^9/L')} vs pretreatment {_s(pb0, 'x10^9/L')}", pb_rise))
        if new_emd:
            out.append(Criterion(R_PD, "new extramedullary disease", "true (absent before the line)", True))
        return out

    # -- MRD series --------------------------------------------------------------------------------------
    def _process_mrd(self, tp: Timepoint, call: Call) -> None:
        mrd = tp.mrd
        if not mrd:
            self.calls.append(call)
            return
        day = tp.date
        confirmed: list[str] = []
        in_remission = self.remission is not None  # (an MRD step never changes the remission)
        points_out = self.mrd_points
        s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10 = _MRDP_SET
        for m, (status, censored, reason, f_value, f_lod, lv) in zip(mrd, self.mrd_class, strict=True):
            method, marker, value, lod = m.method, m.marker, m.value_pct, m.lod_pct
            tissue = m.tissue or tp.sample
            hit = self.series_by.get((method, marker, tissue))
            if hit is None:
                cm = M.canonical_marker(marker)
                key = f"{method}:{cm}:{tissue}"
                s = self.series.get(key)
                if s is None:
                    s = self.series[key] = _Series(key)
                hit = self.series_by[(method, marker, tissue)] = (s, (method, cm))
                self.first_marker.setdefault((method, cm), marker)
            s, base_key = hit
            base = self.baseline_mrd.get(base_key)
            if base is None and self.line_idx is None and not censored and value:
                base = self.baseline_mrd[base_key] = value  # first pretreatment level
            # M.log10_reduction, with the float values of _classify and log10(baseline) once per baseline (same floats).
            if base is None or base <= 0:
                red, lb = None, False
            else:
                log_base = self.log_bases.get(base)
                if log_base is None:
                    log_base = self.log_bases[base] = math.log10(float(base))
                if lv is None:
                    red, lb = (None if lod is None or lod <= 0 else log_base - math.log10(f_lod)), True  # type: ignore[arg-type]
                else:
                    red, lb = log_base - lv, False
            p = _new_obj(MRDPoint)  # MRDPoint(...) filled through its slots, as _new_call does
            s0(p, day)
            s1(p, method)
            s2(p, marker)
            s3(p, tissue)
            s4(p, f_value)
            s5(p, f_lod)
            s6(p, censored)
            s7(p, status)
            s8(p, reason)
            s9(p, red)
            s10(p, lb)
            points_out.append(p)
            points = s.points
            points.append((day, value, censored))
            s.logs.append(lv)
            if censored:
                s.projected = None
            if in_remission and status != M.NOT_EVALUABLE:
                if self._mrd_relapse_step(s, day, method, marker, status, value, censored, tissue):
                    confirmed.append(s.key)
            if not censored and len(points) >= 2:
                prev = points[-2]
                if prev[1] is not None and not prev[2] and value > prev[1]:  # type: ignore[operator]
                    # Only a sample higher than the previous quantified one can start or extend a rising segment.
                    self._project(s, day, method, marker, tissue)
        if confirmed and call.category not in ("hematologic relapse",):
            ev = [e for e in self.events if e.kind == "mrd_relapse" and e.date == day]
            crit = tuple(Criterion(R_MREL, e.message, "; ".join(e.evidence), True) for e in ev)
            call = _new_call(call.date, call.sample, "MRD relapse", f"MRD relapse (confirmed; {call.label})",
                             call.mrd_status, True, (), (*call.criteria, *crit), R_MREL, self._status(), call.line)
        self.calls.append(call)

    def _mrd_relapse_step(self, s: _Series, day: date, method: str, marker: str, status: str,
                          value: Decimal | None, censored: bool, tissue: str) -> bool:
        """§5 MRD relapse; returns True when a relapse is confirmed on this sample."""
        pos = status in _DETECTED  # M.is_positive
        done = False
        if s.pending is not None:
            kind, onset, ref = s.pending
            ok = pos if kind == "conversion" else (pos and value is not None and ref is not None
                                                    and value >= ref * M.LOG_RISE_RATIO)
            what = "MRD-negative -> positive" if kind == "conversion" else ">= 1 log10 rise"
            if ok and self.mrd_relapse is None:
                self.mrd_relapse = onset
                self._event(day, "mrd_relapse", "critical",
                            f"MRD relapse confirmed ({what}; {method} {marker} {tissue})", R_MREL,
                            [f"onset {onset.isoformat()}", f"confirming sample {day.isoformat()}: "
                             f"{'not detected' if value is None else format(value, 'f') + ' %'} ({status})"],
                            key=s.key, onset=onset,
                            closes=(f"mrd_conversion:{s.key}", f"molecular_progression:{s.key}"))
                done = True
            elif not ok:
                self._event(day, "mrd_not_confirmed", "info",
                            f"not confirmed ({what} on {onset.isoformat()}; {method} {marker} {tissue})", R_MREL,
                            [f"{day.isoformat()}: {'not detected' if value is None else format(value, 'f') + ' %'}"
                             f" ({status})"], key=s.key, onset=onset,
                            closes=(f"mrd_conversion:{s.key}", f"molecular_progression:{s.key}"))
            s.pending = None
        elif self.mrd_relapse is None:
            prev = s.prev_status
            if pos and prev is not None and prev[0] == M.NEGATIVE:
                s.pending = ("conversion", day, None)
                self._event(day, "mrd_conversion", "warning",
                            f"MRD conversion negative -> positive ({method} {marker} {tissue}); confirm in the next "
                            f"{tissue} sample", R_MREL,
                            [f"negative on {prev[1].isoformat()}", f"{format(value, 'f') if value else '?'} % on "
                             f"{day.isoformat()} ({status})"], key=s.key, onset=day)
            elif (pos and not censored and value is not None and s.nadir is not None and M.has_low_level_band(
                    method, marker) and value >= s.nadir * M.LOG_RISE_RATIO):
                s.pending = ("rise", day, s.nadir)
                self._event(day, "molecular_progression", "warning",
                            f">= 1 log10 MRD rise ({method} {marker} {tissue}); confirm in the next {tissue} sample",
                            R_MREL, [f"lowest positive {format(s.nadir, 'f')} %", f"now {format(value, 'f')} % "
                                     f"(x{float(value / s.nadir):.1f})"], key=s.key, onset=day)
        if pos and not censored and value is not None and (s.nadir is None or value < s.nadir):
            s.nadir = value
        s.prev_status = (status, day)
        return done

    def _kinetics(self, s: _Series, method: str) -> tuple | None:  # type: ignore[type-arg]
        """M.kinetics_values of the series as it stands (computed once per series length)."""
        n = len(s.points)
        if s.kin is not None and s.kin[0] == n:
            return s.kin[1]
        vals = M.kinetics_values(s.points, threshold_pct=self.cfg.projection_threshold_pct.get(method),
                                 level=self.cfg.ci_level, logs=s.logs)
        s.kin = (n, vals)
        return vals

    def _project(self, s: _Series, day: date, method: str, marker: str, tissue: str) -> None:
        if s.projected == "critical":
            return  # nothing can be raised until the segment ends (the fit is made when needed)
        kin = self._kinetics(s, method)
        if kin is None:
            return
        _, n_points, first_date, _, _, doubling_days, _, _, threshold_pct, projected, ci, above, flags = kin
        if above or projected is None:
            return
        horizon = day + timedelta(days=self.cfg.projection_horizon_days)
        if projected > horizon:
            return
        late = ci[1] if ci else None
        severity = "critical" if late is not None and late <= horizon else "warning"
        if s.projected == severity or s.projected == "critical":
            return
        s.projected = severity
        ci_txt = [f"interval {ci[0].isoformat() if ci[0] else '?'} to {ci[1].isoformat() if ci[1] else 'unbounded'}"
                  ] if ci else []
        dbl = f"{doubling_days:.0f} d" if doubling_days else "?"
        self._event(day, "projected_relapse", severity,
                    f"rising MRD ({method} {marker} {tissue}) projected to reach {threshold_pct:g} % on "
                    f"{projected.isoformat()} (within {self.cfg.projection_horizon_days} d)",
                    "MRD kinetics: log-linear fit (monitoring.mrd)",
                    [f"{n_points} positive points since {first_date.isoformat()}", f"doubling time {dbl}",
                     *ci_txt, *flags], key=s.key, closes=(f"projected_relapse:{s.key}",))

    def result(self) -> PatientResult:
        events = order_events(self.events)
        kin: list[M.Kinetics] = []
        for key, s in self.series.items():
            method, _, rest = key.partition(":")
            marker_c, _, tissue = rest.rpartition(":")
            # the spelling of the first MRD point of this method and marker (any tissue)
            marker = self.first_marker.get((method, marker_c), marker_c)
            vals = self._kinetics(s, method)  # = M.rising_kinetics(s.points, ...) without a second fit
            if vals is not None:
                kin.append(M.Kinetics(method, marker, tissue, *vals))
        last = self.mrd_points[-1] if self.mrd_points else None
        last_mrd = None
        if last is not None:
            v = "not detected" if last.value_pct is None else f"{last.value_pct:g} %"
            last_mrd = f"{last.date.isoformat()} {last.method} {last.marker} ({last.tissue}): {v} [{last.status}]"
        current = self.calls[-1].status if self.calls else "no timepoints"
        return PatientResult(self.tl.patient, tuple(self.calls), tuple(events), tuple(open_alerts(events)),
                             tuple(self.mrd_points), tuple(kin), tuple(self.tl.warnings), current, last_mrd)


def assess(timeline: Timeline, config: MonitorConfig | None = None) -> PatientResult:
    """Assess every timepoint of a validated timeline by ELN 2022 (§5); see the module docstring.

    Parameters
    ----------
    timeline
        A :class:`~hemotwin.monitoring.timeline.Timeline` (sorted and validated at load).
    config
        Landmarks, confirmation interval, projection thresholds; defaults follow §5.

    Returns
    -------
    PatientResult
        Calls (one per timepoint), ordered events, open alerts, MRD points, kinetics, current status.
    """
    eng = _Engine(timeline, config or MonitorConfig())
    for tp in timeline.timepoints:
        eng.step(tp)
    return eng.result()


def assess_many(timelines: Iterable[Timeline], config: MonitorConfig | None = None) -> list[PatientResult]:
    """:func:`assess` for many patients (one shared configuration)."""
    cfg = config or MonitorConfig()
    return [assess(t, cfg) for t in timelines]
