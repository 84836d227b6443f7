"""ELN 2022 response categories (§5): the CR / CRh / CRi walk, MLFS, PR, refractory and no response.

A walk looks at the criteria of each category in turn and stops at the first that holds; an unknown
criterion that could decide the call makes the timepoint "not evaluable: needs X". The walk depends only
on five values, so one :class:`RemissionWalk` serves every timepoint that has them. :class:`ResponseSteps`
holds the engine's steps for a patient not in remission (:mod:`hemotwin.monitoring.response`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from decimal import Decimal

from hemotwin.monitoring import mrd as M
from hemotwin.monitoring.criteria import (
    MEMO_MAX,
    NEEDS_MARROW,
    Criterion,
    and3,
    count_text,
    criterion,
    evidence_text,
    missing_inputs,
    or3,
    pct_text,
)
from hemotwin.monitoring.records import Call, new_call
from hemotwin.monitoring.rules import (
    ANC_CR,
    ANC_CRH,
    BM_BLASTS_LT,
    MLFS_CELLS,
    MLFS_CELLULARITY,
    PLT_CR,
    PLT_CRH,
    PR_BLASTS,
    PR_FALL,
    PRE_REMISSION_RANK,
    R_CR,
    R_CRH,
    R_CRI,
    R_HREL,
    R_MLFS,
    R_MRD,
    R_NR,
    R_PD,
    R_PR,
    R_REF,
    REMISSION,
    REMISSION_RANK,
    RULE,
)
from hemotwin.monitoring.timeline import Timepoint, TreatmentLine

_T_BM, _T_PB, _T_EMD = "BM blasts < 5 %", "no circulating blasts", "no extramedullary disease"
_T_ANC1, _T_PLT100 = "ANC >= 1.0 x10^9/L", "platelets >= 100 x10^9/L"
_T_ANC05, _T_PLT50 = "ANC >= 0.5 x10^9/L", "platelets >= 50 x10^9/L"
_T_LINEAGE = "ANC >= 1.0 or platelets >= 100 x10^9/L (one lineage recovered)"
_T_APLASTIC = "marrow not aplastic (>= 200 cells counted or cellularity >= 10 %)"
_T_PR_BAND, _T_FALL = "BM blasts 5-25 %", "BM blasts fell >= 50 % from pretreatment"
#: The test of a standing hematologic relapse (a call on a line started before the relapse).
RELAPSE_STANDS = "relapse stands: no treatment line started on or after the relapse"


class RemissionWalk:
    """The §5 remission walk (CR, then CRh, then CRi) for one combination of values.

    A walk appends every criterion it looks at to the call's ``seen`` list (the call lists them, met or not)
    and yields (first category whose criteria all hold, True, its criteria), or (an undecidable category,
    False, its criteria), or (None, True, ()). It depends only on the five values it reads, so one walk
    serves every timepoint that has them (:func:`remission_walk`); ``added`` is what it appends to ``seen``.
    """

    __slots__ = ("a1", "added", "anc1", "bm", "common", "decided", "emd", "m_bm", "m_emd", "m_pb", "name", "p1",
                 "pb", "plt100", "rem", "s_mb", "used")

    def __init__(self, mb: Decimal | None, bb: Decimal | None, emd: bool | None, anc: Decimal | None,
                 plt: Decimal | None) -> None:
        s_mb, s_anc, s_plt = pct_text(mb), count_text(anc), count_text(plt)
        self.s_mb, self.rem = s_mb, None
        m_bm = self.m_bm = None if mb is None else mb < BM_BLASTS_LT
        m_pb = self.m_pb = None if bb is None else bb == 0
        m_emd = self.m_emd = None if emd is None else not emd
        common = self.common = and3(m_bm, m_pb, m_emd)
        a1 = self.a1 = None if anc is None else anc >= ANC_CR
        p1 = self.p1 = None if plt is None else plt >= PLT_CR
        bm = self.bm = criterion(R_CR, _T_BM, s_mb, m_bm)
        pb = self.pb = criterion(R_CR, _T_PB, pct_text(bb), m_pb)
        emd_c = self.emd = criterion(R_CR, _T_EMD, None if emd is None else ("true" if emd else "false"), m_emd)
        anc1 = self.anc1 = criterion(R_CR, _T_ANC1, s_anc, a1)
        plt100 = self.plt100 = criterion(R_CR, _T_PLT100, s_plt, p1)
        cr: tuple[Criterion, ...] = (bm, pb, emd_c, anc1, plt100)
        v = and3(common, a1, p1)
        if v is not False:
            self.name, self.decided, self.used, self.added = "CR", v is True, cr, cr
            return
        a05 = None if anc is None else anc >= ANC_CRH
        p50 = None if plt is None else plt >= PLT_CRH
        anc05 = criterion(R_CRH, _T_ANC05, s_anc, a05)
        plt50 = criterion(R_CRH, _T_PLT50, s_plt, p50)
        v = and3(common, a05, p50)
        if v is not False:
            self.name, self.decided, self.used = "CRh", v is True, (bm, pb, emd_c, anc05, plt50)
            self.added = (*cr, anc05, plt50)
            return
        one = or3(a1, p1)
        lineage = criterion(R_CRI, _T_LINEAGE, f"ANC {s_anc}, platelets {s_plt}", one)
        self.added = (*cr, anc05, plt50, lineage)
        v = and3(common, one)
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


_WALKS: dict[tuple[object, ...], RemissionWalk] = {}


def remission_walk(tp: Timepoint) -> RemissionWalk:
    """The :class:`RemissionWalk` of a timepoint (marrow blasts only from a marrow sample), shared by equal values."""
    mb = tp.marrow_blasts_pct if tp.sample == "marrow" else None
    bb, emd, anc, plt = tp.blood_blasts_pct, tp.extramedullary_disease, tp.anc_1e9_per_l, tp.platelets_1e9_per_l
    # -0 and 0 are equal Decimals that print differently: a zero is keyed by a (non-numeric) text instead.
    key = (mb if mb or mb is None else ("-0" if mb.is_signed() else "+0"),
           bb if bb or bb is None else ("-0" if bb.is_signed() else "+0"), emd,
           anc if anc or anc is None else ("-0" if anc.is_signed() else "+0"),
           plt if plt or plt is None else ("-0" if plt.is_signed() else "+0"))
    w = _WALKS.get(key)
    if w is None:
        w = RemissionWalk(mb, bb, emd, anc, plt)
        if len(_WALKS) < MEMO_MAX:
            _WALKS[key] = w
    return w


def mlfs_walk(w: RemissionWalk, tp: Timepoint,
              seen: list[Criterion]) -> tuple[str | None, bool, tuple[Criterion, ...], bool | None]:
    """§5 MLFS after a remission walk found no category: BM < 5 %, no blood blasts, no EMD, not aplastic.

    Returns the walk's (name, decided, criteria) and whether the marrow was not aplastic (three-valued).
    """
    cells, cell_pct = tp.marrow_cells_counted, tp.marrow_cellularity_pct
    ok = or3(None if cells is None else cells >= MLFS_CELLS,
             None if cell_pct is None else cell_pct >= MLFS_CELLULARITY)
    aplastic = criterion(R_MLFS, _T_APLASTIC, f"cells {cells}, cellularity {pct_text(cell_pct)}", ok)
    seen.append(aplastic)
    v = and3(w.common, ok)
    if v is not False:
        return "MLFS", v is True, (w.bm, w.pb, w.emd, aplastic), ok
    return None, True, (), ok


def pr_walk(w: RemissionWalk, tp: Timepoint, baseline_bm: Decimal | None,
            seen: list[Criterion]) -> tuple[str | None, bool, tuple[Criterion, ...]]:
    """§5 PR after MLFS: ANC >= 1.0, platelets >= 100, BM blasts 5-25 %, a fall of >= 50 % from pretreatment."""
    mb = tp.marrow_blasts_pct if tp.sample == "marrow" else None
    lo, hi = PR_BLASTS
    band = None if mb is None else lo <= mb <= hi
    fall = None if mb is None or baseline_bm is None else mb <= baseline_bm * PR_FALL
    pr_band = criterion(R_PR, _T_PR_BAND, w.s_mb, band)
    fall50 = criterion(R_PR, _T_FALL, f"{w.s_mb} vs pretreatment {pct_text(baseline_bm)}", fall)
    seen += (pr_band, fall50)
    v = and3(w.a1, w.p1, band, fall)
    if v is not False:
        return "PR", v is True, (w.anc1, w.plt100, pr_band, fall50)
    return None, True, ()


def clear_caches() -> None:
    """Empty the table of shared walks; results do not depend on it."""
    _WALKS.clear()


_MRD_SUFFIX = {M.NEGATIVE: "MRD-negative", M.LOW_LEVEL: "MRD-low-level", M.POSITIVE: "MRD-positive",
               M.NOT_EVALUABLE: "MRD not evaluable"}
_LABELS = {(cat, st): f"{cat} {suffix}" for cat in REMISSION for st, suffix in _MRD_SUFFIX.items()}


class ResponseSteps:
    """The engine's steps outside remission: category calls, responses, landmarks (a mixin of the engine)."""

    def _landmark(self, li: int, ln: TreatmentLine, day: date) -> Criterion:
        lm = self.landmarks.get(li)
        if lm is None:
            lm = self.landmarks[li] = self._landmark_of(ln)
        test, value, due = lm
        return criterion(R_REF, test, value, due is not None and day >= due)

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

    def _label(self, cat: str, mrd_status: str | None) -> str:
        if cat in REMISSION and mrd_status is not None:
            return _LABELS[cat, mrd_status]
        return cat

    def _downgrade(self, day: date, name: str, seen: Iterable[Criterion]) -> None:
        self._event(day, "loss_of_response", "warning", f"loss of response: {self.rem_name} -> {name}", RULE,
                    [evidence_text(c) for c in seen if c.met is False and c.rule != R_HREL], key="downgrade")

    def _remission_call(self, day: date, name: str, mrd_status: str | None, seen: Iterable[Criterion],
                        used: tuple[Criterion, ...]) -> None:
        rank = REMISSION_RANK[name]
        if self.remission is None:
            self.remission, self.rem_rank, self.rem_name = (day, name), rank, name
            self.mrd_negative_seen, self.pb_run = False, []
            for s in self.series.values():
                s.prev_status = s.pending = s.nadir = None
                s.projected = None
            again = " (after relapse)" if self.relapse is not None else ""
            self._event(day, "new_response", "info", f"new response: {name}{again}", f"§5 {name}",
                        [evidence_text(c) for c in used], key=name,
                        closes=("loss_of_response:*", "refractory:*", "progression:*", "relapse_suspected:*"))
        elif rank > self.rem_rank:
            self._event(day, "new_response", "info", f"improved response: {self.rem_name} -> {name}", f"§5 {name}",
                        [evidence_text(c) for c in used], key=name, closes=("loss_of_response:downgrade",))
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
        # A relapse stands until a treatment line started since it documents a new response; a sample on a line's
        # start date is taken before the first dose, so a line starting on the relapse date is such a line.
        relapsed_untreated = self.relapse is not None and ln.start < self.relapse
        if not relapsed_untreated:
            pd = self._progression(tp, bm0, pb0, emd0)
            if pd:  # listed only when one of them is met
                if "progression" not in self.line_flag:
                    self.line_flag.add("progression")
                    self._event(day, "progression", "critical", "progressive disease", R_PD,
                                [evidence_text(c) for c in pd if c.met], key=str(li))
                return new_call(day, tp.sample, "progression", "progressive disease", mrd_status, True, (),
                                tuple(pd), R_PD, self._status(), li)
        if tp.sample != "marrow":
            return self._not_evaluable(tp, NEEDS_MARROW, (), mrd_status, li, self._status(), "blood sample")
        w = remission_walk(tp)
        added = w.added  # the call's criteria so far: those the walk looked at (one shared tuple)
        name, decided, used = w.name, w.decided, w.used
        if relapsed_untreated:
            # Even a marrow meeting CR criteria is no new response without new treatment: the relapse stands.
            stands = criterion(R_HREL, RELAPSE_STANDS, f"relapse {self.relapse.isoformat()}; current line from "  # type: ignore[union-attr]
                               f"{ln.start.isoformat()}", True)
            return new_call(day, tp.sample, "relapsed disease",
                            "relapsed disease (no treatment line since the relapse)", mrd_status, True, (),
                            (*added, stands), R_HREL, self._status(), li)
        if name is not None and decided:
            self._remission_call(day, name, mrd_status, added, used)
            return new_call(day, tp.sample, name, self._label(name, mrd_status), mrd_status, True, (), added,
                            RULE, self._status(), li)
        if name is not None:
            return self._not_evaluable(tp, missing_inputs(added), added, mrd_status, li, self._status())
        land = self._landmark(li, ln, day)
        seen = [*added, land]
        if land.met:
            if "refractory" not in self.line_flag:
                self.line_flag.add("refractory")
                self._event(day, "refractory", "critical", f"refractory: no CR/CRh/CRi at the landmark ({ln.regimen})",
                            R_REF, [land.value or "", *(evidence_text(c) for c in seen if c.met is False)],
                            key=str(li))
            return new_call(day, tp.sample, "refractory", "refractory", mrd_status, True, (), tuple(seen), R_REF,
                            self._status(), li)
        name, decided, used, not_aplastic = mlfs_walk(w, tp, seen)
        if name is None:
            name, decided, used = pr_walk(w, tp, bm0, seen)
        if name is not None and not decided:
            return self._not_evaluable(tp, missing_inputs(seen), tuple(seen), mrd_status, li, self._status())
        if name is not None:
            rank = PRE_REMISSION_RANK[name]
            if rank > self.line_best:
                self.line_best = rank
                self._event(day, "new_response", "info", f"new response: {name}", f"§5 {name}",
                            [evidence_text(c) for c in used], key=name)
            return new_call(day, tp.sample, name, name, mrd_status, True, (), tuple(seen), f"§5 {name}",
                            self._status(), li)
        if w.m_bm and w.m_pb and w.m_emd and not_aplastic is False:
            return self._not_evaluable(tp, ["a marrow that is not aplastic (>= 200 cells or cellularity >= 10 %)"],
                                       tuple(seen), mrd_status, li, self._status())
        return new_call(day, tp.sample, "no response", "no response (before the landmark)", mrd_status, True, (),
                        tuple(seen), R_NR, self._status(), li)

