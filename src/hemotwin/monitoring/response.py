"""ELN 2022 response, relapse and MRD-relapse calls along a patient timeline (docs/clinical_rules.md §5).

The engine walks the timepoints once, in date order, and decides each call from data up to that date
only: adding a later timepoint never changes an earlier call. A condition that needs a later sample to
be confirmed (blood blasts in two samples >= 7 days apart; an MRD conversion confirmed in the next
sample of the same tissue) is reported as a separate, later event, never by rewriting the earlier call.
A relapse (hematologic or MRD) stands until a new response is documented after new treatment: a CR/CRh/CRi
call on a treatment line started on or after the relapse (for an MRD relapse, MRD-negative with the relapsed
marker tested); docs/monitoring.md states the rule in full.

Every criterion is three-valued (met / not met / unknown): a category is called when all its criteria
are met, skipped when one is not met, and an unknown criterion that could decide the call makes the
timepoint "not evaluable: needs X". Comparisons are exact (:class:`~decimal.Decimal`): ANC 1.0 x10^9/L
is CR-eligible, 5.0 % marrow blasts is not < 5 %.

The rules live by concern: thresholds and citations in :mod:`~hemotwin.monitoring.rules`, criteria in
:mod:`~hemotwin.monitoring.criteria`, response categories in :mod:`~hemotwin.monitoring.categories`,
hematologic relapse and progression in :mod:`~hemotwin.monitoring.relapse`, MRD relapse and projections in
:mod:`~hemotwin.monitoring.mrd_course`; this module holds the engine's state and the walk over the
timepoints (:func:`assess`), and the settings are :class:`~hemotwin.monitoring.config.MonitorConfig`.

Performance: the timeline is validated once at load; the loop reads plain attributes and builds small
frozen dataclasses (no pydantic validation per timepoint). Criteria are built only when the call looks at
them (a category walk stops at the first category that holds), and everything that depends only on a few
values is made once and shared: the §5 remission walk per (marrow blasts, blood blasts, EMD, ANC, platelets)
(:class:`~hemotwin.monitoring.categories.RemissionWalk`), each distinct criterion (immutable), display
texts, MRD classes, landmarks, series keys and status texts. Frozen records are filled through their slot
descriptors (:func:`~hemotwin.monitoring.records.new_call`). The memo tables are bounded and never change a
result (:func:`clear_caches`); sharing also keeps the retained results small, which matters as much as the
CPU time (fewer objects for the cyclic garbage collector). ``tests/monitoring/reference_engine.py`` keeps the
straightforward engine as first written; the tests check that both give equal results (examples, seeded
random courses, hypothesis).
"""

from __future__ import annotations

import datetime as _dt
from bisect import bisect_left
from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from itertools import pairwise

from hemotwin.monitoring import categories, criteria, mrd_course
from hemotwin.monitoring import mrd as M
from hemotwin.monitoring.alerts import Event, open_alerts, order_events
from hemotwin.monitoring.categories import ResponseSteps
from hemotwin.monitoring.config import MonitorConfig
from hemotwin.monitoring.criteria import Criterion
from hemotwin.monitoring.mrd_course import MRDClass, MRDSeries, MRDSteps
from hemotwin.monitoring.records import Call, MRDPoint, PatientResult, new_call, slot_setters
from hemotwin.monitoring.relapse import RelapseSteps
from hemotwin.monitoring.rules import REMISSION, RULE
from hemotwin.monitoring.timeline import Timeline, Timepoint, TreatmentLine

_new_obj = object.__new__
_EVENT_SET = slot_setters(Event)
_NE_TEXT: dict[tuple[tuple[str, ...], str], str] = {}  # "not evaluable: needs ..." per (needs, reason): few


def clear_caches() -> None:
    """Empty every memo table of the engine (texts, criteria, walks, MRD classes); results do not depend on them."""
    criteria.clear_caches()
    categories.clear_caches()
    mrd_course.clear_caches()
    _NE_TEXT.clear()


class _Engine(ResponseSteps, RelapseSteps, MRDSteps):
    def __init__(self, tl: Timeline, cfg: MonitorConfig) -> None:
        self.tl, self.cfg = tl, cfg
        self.lines: list[TreatmentLine] = list(tl.treatment_lines)
        starts = [ln.start for ln in self.lines]
        # Sorted, distinct starts (the loader's guarantee): the active line is one bisection away.
        self.starts: list[date] | None = starts if all(a < b for a, b in pairwise(starts)) else None
        self.calls: list[Call] = []
        self.events: list[Event] = []
        self.mrd_points: list[MRDPoint] = []
        self.series: dict[str, MRDSeries] = {}
        self.series_by: dict[tuple[str, str, str], tuple[MRDSeries, str]] = {}  # (method, marker, tissue) as given
        self.first_marker: dict[tuple[str, str], str] = {}  # (method, canonical marker) -> first spelling seen
        self.landmarks: dict[int, tuple[str, str, date | None]] = {}  # line index -> (test, value, due date)
        self.status_memo: tuple[object, ...] | None = None
        self.line_span: tuple[date, date, int | None] | None = None  # see step()
        self.rel_pair: tuple[Criterion, Criterion] | None = None  # see _in_remission()
        self.log_bases: dict[Decimal, float] = {}  # log10(float(baseline)) per distinct MRD baseline
        self.remission: tuple[date, str] | None = None
        self.rem_rank, self.rem_name = 0, ""
        self.mrd_negative_seen = False
        self.mrd_relapse: date | None = None  # onset of the MRD relapse that stands (see _mrd_relapse_stands)
        self.mrd_relapse_marker: str | None = None  # its "method:canonical marker"
        self.relapse: date | None = None
        self.line_idx: int | None = None
        self.line_best = 0
        self.line_flag: set[str] = set()
        self.pb_run: list[date] = []  # consecutive blood-blast-positive sample dates in remission
        self.history: list[Timepoint] = []
        self.mrd_tp: Timepoint | None = None
        self.mrd_class: list[MRDClass] = []
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
            call = new_call(day, tp.sample, "pre-treatment", "pre-treatment (no treatment line started before)",
                            mrd_status, True, (), (), RULE, "pre-treatment", None)
            self._process_mrd(tp, call)
            return
        ln = self.lines[li]
        bm0, pb0, emd0 = self._baselines.get(ln.start) or self._baseline(ln.start)
        if self.remission is not None:
            call = self._in_remission(tp, mrd_status, li)
            if self.mrd_relapse is not None and call.category in REMISSION:
                call = self._mrd_relapse_stands(tp, call, li)  # a relapse stands until a new response
        else:
            call = self._not_in_remission(tp, mrd_status, li, ln, bm0, pb0, emd0)
        self._process_mrd(tp, call)

    def _not_evaluable(self, tp: Timepoint, needs: list[str] | tuple[str, ...], crits: tuple[Criterion, ...],
                       mrd_status: str | None, li: int | None, status: str, what: str = "") -> Call:
        need = tuple(needs)
        text = _NE_TEXT.get((need, what))
        if text is None:
            text = _NE_TEXT[(need, what)] = f"not evaluable: needs {', '.join(needs)}" + (f" ({what})" if what else "")
        return new_call(tp.date, tp.sample, "not evaluable", text, mrd_status, False, need, crits, RULE, status, li)

    def _status(self) -> str:
        rem = self.remission
        if rem is None and self.relapse is not None:
            return f"hematologic relapse ({self.relapse.isoformat()})"
        if rem is not None:
            # Formatted once per (remission, category, MRD relapse): most calls repeat the previous status.
            memo = self.status_memo
            if memo is not None and memo[0] is rem and memo[1] == self.rem_name and memo[2] == self.mrd_relapse:
                return memo[3]  # type: ignore[return-value]
            if self.rem_name == "MLFS":
                # MLFS after a remission: marrow clear but counts below CRh/CRi levels, which is not a remission
                # (§5 MLFS); the remission reached before is what a relapse would be measured against.
                s = f"MLFS, not a remission (no count recovery; {rem[1]} reached {rem[0].isoformat()})"
            else:
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
