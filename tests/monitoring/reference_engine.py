"""The monitoring engine as first written (straightforward, slower): the oracle of test_monitoring_fast_path.

A verbatim copy of the ``hemotwin.monitoring`` engine before its speed-up (every criterion built
eagerly, walked with generic three-valued helpers, records built through their dataclass ``__init__``).
It shares the result classes, thresholds and MRD functions with the package, so that results compare
with ``==``. Do not optimise this file: its value is being obviously equal to the rules.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import date, timedelta
from decimal import Decimal

from hemotwin.monitoring import mrd as M
from hemotwin.monitoring.alerts import Event, open_alerts, order_events
from hemotwin.monitoring.config import MonitorConfig
from hemotwin.monitoring.criteria import Criterion
from hemotwin.monitoring.records import Call, MRDPoint, PatientResult
from hemotwin.monitoring.rules import (
    ANC_CR,
    ANC_CRH,
    BM_BLASTS_LT,
    MLFS_CELLS,
    MLFS_CELLULARITY,
    PD_LOW_BASELINE,
    PD_MIN_POINTS,
    PD_PB_ABS,
    PD_RISE,
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
    R_MREL,
    R_NR,
    R_PD,
    R_PR,
    R_REF,
    R_UNIT,
    REMISSION,
    REMISSION_RANK,
    RULE,
)
from hemotwin.monitoring.timeline import Timeline, Timepoint, TreatmentLine
from hemotwin.monitoring.units import mrd_unit_factor

# --------------------------------------------------------------------------------------------- helpers


def _ref_rising_kinetics(points: list[tuple[date, Decimal | None, bool]], *, method: str, marker: str, tissue: str,
                    threshold_pct: Decimal | None, level: float = 0.95) -> M.Kinetics | None:
    """``mrd.rising_kinetics`` as first written: kinetics of the current rising segment of one MRD series.

    Parameters
    ----------
    points
        ``(date, value %, censored)`` in date order; censored points end a segment (negative).
    threshold_pct
        The level whose crossing is projected (e.g. 2 % for qPCR, §5 low-level band).

    Returns
    -------
    Kinetics or None
        None when the series does not end in a rise (fewer than 2 quantified positive points after the
        last censored point, or the last value is not above the segment's lowest value).
    """
    seg: list[tuple[date, Decimal]] = []
    for d, v, cens in points:
        if cens or v is None or v <= 0:
            seg = []
        else:
            seg.append((d, v))
    if len(seg) < 2:
        return None
    # The rise starts at the lowest value of the trailing positive run (its nadir).
    i0 = min(range(len(seg)), key=lambda i: (seg[i][1], -i))
    seg = seg[i0:]
    if len(seg) < 2 or seg[-1][1] <= seg[0][1]:
        return None
    d0 = seg[0][0]
    xs = [float((d - d0).days) for d, _ in seg]
    ys = [math.log10(float(v)) for _, v in seg]
    fit = M.fit_rising(xs, ys, level=level)
    b, ci = float(fit["b"]), fit["ci"]
    flags: list[str] = []
    two_point = len(seg) == 2
    if two_point:
        flags.append("two-point estimate (needs >= 3 positive points for an interval)")
    if b <= 0:
        return None
    dbl = M._doubling(b)
    dbl_ci = None
    if ci is not None:
        lo_b, hi_b = ci  # type: ignore[misc]
        dbl_ci = (M._doubling(hi_b), M._doubling(lo_b))
        if lo_b <= 0:
            flags.append("slope interval includes 0: the rise is not established at this confidence")
    last_d, last_v = seg[-1]
    proj = proj_ci = None
    above = False
    thr = None
    if threshold_pct is not None:
        thr = float(threshold_pct)
        if last_v >= threshold_pct:
            above = True
        else:
            # From the last measured value (below the threshold) at the fitted rate: never before the last sample.
            gap = math.log10(thr) - ys[-1]
            proj = _ref_after(last_d, gap / b)
            if ci is not None:
                lo_b, hi_b = ci  # type: ignore[misc]
                early = _ref_after(last_d, gap / hi_b) if hi_b > 0 else None
                late = _ref_after(last_d, gap / lo_b) if lo_b > 0 else None
                proj_ci = (early, late)
    return M.Kinetics(method=method, marker=marker, tissue=tissue, as_of=last_d, n_points=len(seg), first_date=d0,
                    slope_log10_per_day=b, slope_ci=ci, doubling_days=dbl, doubling_days_ci=dbl_ci,  # type: ignore[arg-type]
                    two_point=two_point, threshold_pct=thr, projected_date=proj, projected_date_ci=proj_ci,
                    already_above=above, flags=tuple(flags))




def _ref_after(day: date, days: float) -> date | None:
    """``day`` + ``round(days)`` days; None (unbounded) beyond the calendar, or for an infinite or undefined number."""
    try:
        return day + timedelta(days=round(days))
    except (OverflowError, ValueError):
        return None


def _and3(vals: Iterable[bool | None]) -> bool | None:
    unknown = False
    for v in vals:
        if v is False:
            return False
        if v is None:
            unknown = True
    return None if unknown else True


def _or3(vals: Iterable[bool | None]) -> bool | None:
    unknown = False
    for v in vals:
        if v is True:
            return True
        if v is None:
            unknown = True
    return None if unknown else False


def _s(v: Decimal | None, unit: str) -> str | None:
    # Display only (decisions use the exact values): 1.000 -> "1", 4.99 -> "4.99".
    return None if v is None else f"{format(v.normalize(), 'f')} {unit}"


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


class _Crit:
    """The §5 criteria of one timepoint, built once and shared by every category test."""

    __slots__ = ("anc05", "anc1", "aplastic_ok", "bm", "emd", "fall50", "one_lineage", "pb", "plt50", "plt100",
                 "pr_band")

    def __init__(self, tp: Timepoint, baseline_bm: Decimal | None) -> None:
        mb = tp.marrow_blasts_pct if tp.sample == "marrow" else None
        bb, emd = tp.blood_blasts_pct, tp.extramedullary_disease
        anc, plt = tp.anc_1e9_per_l, tp.platelets_1e9_per_l
        # Each display string is formatted once and shared (this runs for every timepoint).
        s_mb, s_anc, s_plt = _s(mb, "%"), _s(anc, "x10^9/L"), _s(plt, "x10^9/L")
        self.bm = Criterion(R_CR, "BM blasts < 5 %", s_mb, None if mb is None else mb < BM_BLASTS_LT)
        self.pb = Criterion(R_CR, "no circulating blasts", _s(bb, "%"), None if bb is None else bb == 0)
        self.emd = Criterion(R_CR, "no extramedullary disease", None if emd is None else ("true" if emd else "false"),
                             None if emd is None else not emd)
        a1 = None if anc is None else anc >= ANC_CR
        p1 = None if plt is None else plt >= PLT_CR
        self.anc1 = Criterion(R_CR, "ANC >= 1.0 x10^9/L", s_anc, a1)
        self.plt100 = Criterion(R_CR, "platelets >= 100 x10^9/L", s_plt, p1)
        self.anc05 = Criterion(R_CRH, "ANC >= 0.5 x10^9/L", s_anc, None if anc is None else anc >= ANC_CRH)
        self.plt50 = Criterion(R_CRH, "platelets >= 50 x10^9/L", s_plt, None if plt is None else plt >= PLT_CRH)
        self.one_lineage = Criterion(R_CRI, "ANC >= 1.0 or platelets >= 100 x10^9/L (one lineage recovered)",
                                     f"ANC {s_anc}, platelets {s_plt}", _or3((a1, p1)))
        cells, cell_pct = tp.marrow_cells_counted, tp.marrow_cellularity_pct
        self.aplastic_ok = Criterion(
            R_MLFS, "marrow not aplastic (>= 200 cells counted or cellularity >= 10 %)",
            f"cells {cells}, cellularity {_s(cell_pct, '%')}",
            _or3((None if cells is None else cells >= MLFS_CELLS,
                  None if cell_pct is None else cell_pct >= MLFS_CELLULARITY)))
        lo, hi = PR_BLASTS
        self.pr_band = Criterion(R_PR, "BM blasts 5-25 %", s_mb, None if mb is None else lo <= mb <= hi)
        fall = None if mb is None or baseline_bm is None else mb <= baseline_bm * PR_FALL
        self.fall50 = Criterion(R_PR, "BM blasts fell >= 50 % from pretreatment",
                                f"{s_mb} vs pretreatment {_s(baseline_bm, '%')}", fall)

    def categories(self) -> list[tuple[str, tuple[Criterion, ...]]]:
        common = (self.bm, self.pb, self.emd)
        return [("CR", (*common, self.anc1, self.plt100)),
                ("CRh", (*common, self.anc05, self.plt50)),
                ("CRi", (*common, self.one_lineage))]

    def lesser(self) -> list[tuple[str, tuple[Criterion, ...]]]:
        return [("MLFS", (self.bm, self.pb, self.emd, self.aplastic_ok)),
                ("PR", (self.anc1, self.plt100, self.pr_band, self.fall50))]


def _walk(cats: list[tuple[str, tuple[Criterion, ...]]],
          seen: list[Criterion]) -> tuple[str | None, bool, tuple[Criterion, ...]]:
    """First category whose criteria all hold -> (name, True, its criteria); an undecidable one -> (name, False, ..).

    Every criterion looked at is appended to ``seen`` (the call lists them, met or not).
    """
    for name, crits in cats:
        for c in crits:
            # identity, not field equality: two tests may share a text and value
            if not any(c is x for x in seen):
                seen.append(c)
        v = _and3(c.met for c in crits)
        if v is True:
            return name, True, crits
        if v is None:
            return name, False, crits
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


# ---------------------------------------------------------------------------------------------- engine


class _Series:
    __slots__ = ("key", "log_ref", "nadir", "pending", "points", "prev_status", "projected", "quantified")

    def __init__(self, key: str) -> None:
        self.key = key
        self.points: list[tuple[date, Decimal | None, bool]] = []
        self.prev_status: tuple[str, date] | None = None  # last evaluable status in the current remission
        self.pending: tuple[str, date, Decimal | None] | None = None  # (kind, onset, reference) awaiting confirm
        self.nadir: Decimal | None = None  # lowest quantified positive value in the current remission
        self.log_ref: Decimal | None = None
        self.projected: str | None = None  # severity of the last projection alert in this rising segment
        # every quantified result: (value %, unit factor, date, unit, line index, suspected of a unit slip)
        self.quantified: list[tuple[Decimal, Decimal, date, str | None, int | None, bool]] = []


class _Engine:
    def __init__(self, tl: Timeline, cfg: MonitorConfig) -> None:
        self.tl, self.cfg = tl, cfg
        self.lines: list[TreatmentLine] = list(tl.treatment_lines)
        self.calls: list[Call] = []
        self.events: list[Event] = []
        self.mrd_points: list[MRDPoint] = []
        self.series: dict[str, _Series] = {}
        self.remission: tuple[date, str] | None = None
        self.rem_rank, self.rem_name = 0, ""
        self.mrd_negative_seen = False
        self.mrd_relapse: date | None = None
        self.mrd_relapse_marker: str | None = None
        self.relapse: date | None = None
        self.line_idx: int | None = None
        self.line_best = 0
        self.line_flag: set[str] = set()
        self.pb_run: list[date] = []  # consecutive blood-blast-positive sample dates in remission
        self.history: list[Timepoint] = []
        self.mrd_tp: Timepoint | None = None
        self.mrd_class: list[tuple[str, bool, str]] = []
        self._baselines: dict[date, tuple[Decimal | None, Decimal | None, bool | None]] = {}
        self.baseline_mrd: dict[tuple[str, str], Decimal] = {
            (m.method, M.canonical_marker(m.marker)): m.baseline_pct
            for m in tl.diagnosis.mrd_markers if m.baseline_pct is not None}

    # -- helpers ---------------------------------------------------------------------------------------
    def _event(self, day: date, kind: str, severity: str, message: str, rule: str, evidence: Iterable[str] = (),
               *, key: str = "", onset: date | None = None, closes: tuple[str, ...] = ()) -> None:
        self.events.append(Event(date=day, kind=kind, severity=severity, message=message, rule=rule,
                                 evidence=tuple(evidence), key=key, onset=onset, closes=closes))

    def _active_line(self, day: date) -> int | None:
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

    def _landmark(self, ln: TreatmentLine, day: date) -> Criterion:
        if ln.intensity == "intensive":
            n = self.cfg.intensive_courses_for_refractory
            courses = ln.courses or [ln.start]  # a line without course dates counts as one course
            due = courses[n - 1] + timedelta(days=self.cfg.intensive_eval_days) if len(courses) >= n else None
            return Criterion(R_REF, f"after {n} courses of intensive induction (+{self.cfg.intensive_eval_days} d)",
                             f"{len(courses)} course(s); landmark {due.isoformat() if due else 'not yet'}",
                             due is not None and day >= due)
        due = ln.start + timedelta(days=self.cfg.less_intensive_landmark_days)
        return Criterion(R_REF, f"{self.cfg.less_intensive_landmark_days} days of less-intensive therapy",
                         f"landmark {due.isoformat()}", day >= due)

    # -- one timepoint ---------------------------------------------------------------------------------
    def step(self, tp: Timepoint) -> None:
        day = tp.date
        li = self._active_line(day)
        if li != self.line_idx:
            self.line_idx = li
            if self.remission is None:
                self.line_best, self.line_flag = 0, set()
        mrd_status = self._mrd_status_here(tp)
        self.history.append(tp)
        if li is None:
            call = Call(day, tp.sample, "pre-treatment", "pre-treatment (no treatment line started before)",
                        mrd_status, True, (), (), RULE, "pre-treatment", None)
            self._process_mrd(tp, call)
            return
        ln = self.lines[li]
        bm0, pb0, emd0 = self._baseline(ln.start)
        cr = _Crit(tp, bm0)
        if self.remission is not None:
            call = self._in_remission(tp, cr, mrd_status, li)
            if self.mrd_relapse is not None and call.category in REMISSION:
                call = self._mrd_relapse_stands(tp, call, li)
        else:
            call = self._not_in_remission(tp, cr, mrd_status, li, ln, bm0, pb0, emd0)
        self._process_mrd(tp, call)

    def _mrd_status_here(self, tp: Timepoint) -> str | None:
        if not tp.mrd:
            self.mrd_class = []
            return None
        res = self.mrd_class = [M.classify(m.method, m.marker, m.value_pct, m.detected, m.lod_pct) for m in tp.mrd]
        self.mrd_tp = tp
        return _mrd_label([r[0] for r in res])

    @property
    def mrd_reasons(self) -> list[str]:
        """Evidence text of the current timepoint's MRD results (built only when an event needs it)."""
        return [f"{m.method} {m.marker} ({m.tissue}): {r[2]}"
                for m, r in zip(self.mrd_tp.mrd, self.mrd_class, strict=True)]

    def _label(self, cat: str, mrd_status: str | None) -> str:
        if cat in REMISSION and mrd_status is not None:
            return f"{cat} {_MRD_SUFFIX[mrd_status]}"
        return cat

    def _not_evaluable(self, tp: Timepoint, needs: list[str], crits: list[Criterion], mrd_status: str | None,
                       li: int | None, status: str, what: str = "") -> Call:
        text = f"not evaluable: needs {', '.join(needs)}" + (f" ({what})" if what else "")
        return Call(tp.date, tp.sample, "not evaluable", text, mrd_status, False, tuple(needs), tuple(crits), RULE,
                    status, li)

    def _status(self) -> str:
        if self.relapse is not None and self.remission is None:
            return f"hematologic relapse ({self.relapse.isoformat()})"
        if self.remission is not None:
            if self.rem_name == "MLFS":
                s = (f"MLFS, not a remission (no count recovery; {self.remission[1]} reached "
                     f"{self.remission[0].isoformat()})")
            else:
                s = f"{self.rem_name} (in remission since {self.remission[0].isoformat()})"
            if self.mrd_relapse is not None:
                s += f"; MRD relapse ({self.mrd_relapse.isoformat()})"
            return s
        if "refractory" in self.line_flag:
            return "refractory"
        if "progression" in self.line_flag:
            return "progressive disease"
        return "on treatment, no remission yet"

    def _in_remission(self, tp: Timepoint, cr: _Crit, mrd_status: str | None, li: int) -> Call:
        day = tp.date
        # §5 Hematologic relapse (after CR/CRh/CRi): BM blasts >= 5 %; blood blasts in >= 2 samples >= 1 week
        # apart (consecutive positive samples, no blast-free sample between); or new EMD.
        mb = tp.marrow_blasts_pct if tp.sample == "marrow" else None
        bb = tp.blood_blasts_pct
        r_bm = Criterion(R_HREL, "BM blasts >= 5 %", _s(mb, "%"), None if mb is None else mb >= BM_BLASTS_LT)
        r_emd = Criterion(R_HREL, "new extramedullary disease", None if tp.extramedullary_disease is None
                          else str(tp.extramedullary_disease).lower(), tp.extramedullary_disease)
        r_pb: Criterion | None = None
        if bb is not None:
            if bb > 0:
                gap = self.cfg.blood_blast_confirm_days
                first = self.pb_run[0] if self.pb_run else None
                ok = first is not None and (day - first).days >= gap
                r_pb = Criterion(R_HREL, f"blood blasts in >= 2 samples >= {gap} days apart",
                                 f"{_s(bb, '%')} on {day}; earlier positive sample "
                                 f"{first.isoformat() if first else 'none'}", ok)
                self.pb_run.append(day)
            else:
                self.pb_run = []
        crits = [c for c in (r_bm, r_pb, r_emd) if c is not None]
        if any(c.met is True for c in crits):
            onset = self.pb_run[0] if r_pb is not None and r_pb.met and self.pb_run else day
            self.relapse, self.remission, self.rem_rank = day, None, 0
            self.pb_run, self.mrd_relapse, self.mrd_relapse_marker = [], None, None
            for s in self.series.values():
                s.prev_status = s.pending = s.nadir = None
            met = [c for c in crits if c.met]
            self._event(day, "loss_of_response", "critical", "hematologic relapse", R_HREL,
                        [_ev(c) for c in met], key="hematologic",
                        onset=onset,
                        closes=("relapse_suspected:*", "loss_of_response:downgrade", "projected_relapse:*",
                                "molecular_progression:*", "mrd_conversion:*", "mrd_relapse:*"))
            return Call(day, tp.sample, "hematologic relapse", "hematologic relapse", mrd_status, True, (),
                        tuple(crits), RULE, self._status(), li)
        if r_pb is not None and r_pb.met is False:
            self._event(day, "relapse_suspected", "warning",
                        f"circulating blasts {_s(bb, '%')} in remission: relapse if a sample >= "
                        f"{self.cfg.blood_blast_confirm_days} days later shows blasts", R_HREL,
                        [f"{r_pb.test}: {r_pb.value}"], key="blood_blasts")
            return self._not_evaluable(tp, [f"a blood sample >= {self.cfg.blood_blast_confirm_days} days later"],
                                       crits, mrd_status, li, self._status(), "circulating blasts, unconfirmed")
        if tp.sample != "marrow":
            return self._not_evaluable(tp, ["marrow_blasts_pct (a marrow sample)"], crits, mrd_status, li,
                                       self._status(), "blood sample: no hematologic relapse criterion met")
        seen: list[Criterion] = list(crits)
        name, decided, used = _walk(cr.categories(), seen)
        if name is None or not decided:
            if name is None:
                # BM < 5 %, no circulating blasts, no EMD, yet no remission category: both lineages below CRh
                # counts -> MLFS when the marrow is not aplastic (§5 MLFS), still "in remission" per §5 relapse.
                name2, dec2, _ = _walk(cr.lesser()[:1], seen)
                if name2 == "MLFS" and dec2:
                    self._downgrade(day, "MLFS", seen)
                    self.rem_rank, self.rem_name = 0, "MLFS"
                    return Call(day, tp.sample, "MLFS", "MLFS", mrd_status, True, (), tuple(seen), RULE,
                                self._status(), li)
            return self._not_evaluable(tp, _needs(seen), seen, mrd_status, li, self._status())
        self._remission_call(day, name, mrd_status, seen, used)
        return Call(day, tp.sample, name, self._label(name, mrd_status), mrd_status, True, (), tuple(seen), RULE,
                    self._status(), li)

    def _downgrade(self, day: date, name: str, seen: list[Criterion]) -> None:
        self._event(day, "loss_of_response", "warning", f"loss of response: {self.rem_name} -> {name}", RULE,
                    [_ev(c) for c in seen if c.met is False and c.rule != R_HREL], key="downgrade")

    def _remission_call(self, day: date, name: str, mrd_status: str | None, seen: list[Criterion],
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

    def _not_in_remission(self, tp: Timepoint, cr: _Crit, mrd_status: str | None, li: int, ln: TreatmentLine,
                          bm0: Decimal | None, pb0: Decimal | None, emd0: bool | None) -> Call:
        day = tp.date
        relapsed_untreated = self.relapse is not None and ln.start < self.relapse
        seen: list[Criterion] = []
        if not relapsed_untreated:
            pd = self._progression(tp, bm0, pb0, emd0)
            if any(c.met for c in pd):
                if "progression" not in self.line_flag:
                    self.line_flag.add("progression")
                    self._event(day, "progression", "critical", "progressive disease", R_PD,
                                [_ev(c) for c in pd if c.met], key=str(li))
                return Call(day, tp.sample, "progression", "progressive disease", mrd_status, True, (), tuple(pd),
                            R_PD, self._status(), li)
        if tp.sample != "marrow":
            return self._not_evaluable(tp, ["marrow_blasts_pct (a marrow sample)"], [], mrd_status, li,
                                       self._status(), "blood sample")
        name, decided, used = _walk(cr.categories(), seen)
        if relapsed_untreated:
            stands = Criterion(R_HREL, "relapse stands: no treatment line started on or after the relapse",
                               f"relapse {self.relapse.isoformat()}; current line from {ln.start.isoformat()}", True)
            return Call(day, tp.sample, "relapsed disease", "relapsed disease (no treatment line since the relapse)",
                        mrd_status, True, (), (*seen, stands), R_HREL, self._status(), li)
        if name is not None and decided:
            self._remission_call(day, name, mrd_status, seen, used)
            return Call(day, tp.sample, name, self._label(name, mrd_status), mrd_status, True, (), tuple(seen),
                        RULE, self._status(), li)
        if name is not None:
            return self._not_evaluable(tp, _needs(seen), seen, mrd_status, li, self._status())
        land = self._landmark(ln, day)
        seen.append(land)
        if land.met:
            if "refractory" not in self.line_flag:
                self.line_flag.add("refractory")
                self._event(day, "refractory", "critical", f"refractory: no CR/CRh/CRi at the landmark ({ln.regimen})",
                            R_REF, [land.value or "", *(_ev(c) for c in seen if c.met is False)],
                            key=str(li))
            return Call(day, tp.sample, "refractory", "refractory", mrd_status, True, (), tuple(seen), R_REF,
                        self._status(), li)
        name, decided, used = _walk(cr.lesser(), seen)
        if name is not None and not decided:
            return self._not_evaluable(tp, _needs(seen), seen, mrd_status, li, self._status())
        if name is not None:
            rank = PRE_REMISSION_RANK[name]
            if rank > self.line_best:
                self.line_best = rank
                self._event(day, "new_response", "info", f"new response: {name}", f"§5 {name}",
                            [_ev(c) for c in used], key=name)
            return Call(day, tp.sample, name, name, mrd_status, True, (), tuple(seen), f"§5 {name}",
                        self._status(), li)
        if cr.bm.met and cr.pb.met and cr.emd.met and cr.aplastic_ok.met is False:
            return self._not_evaluable(tp, ["a marrow that is not aplastic (>= 200 cells or cellularity >= 10 %)"],
                                       seen, mrd_status, li, self._status())
        return Call(day, tp.sample, "no response", "no response (before the landmark)", mrd_status, True, (),
                    tuple(seen), R_NR, self._status(), li)

    def _progression(self, tp: Timepoint, bm0: Decimal | None, pb0: Decimal | None,
                     emd0: bool | None) -> list[Criterion]:
        out: list[Criterion] = []
        mb = tp.marrow_blasts_pct if tp.sample == "marrow" else None
        if mb is not None and bm0 is not None:
            rise = mb > bm0 * PD_RISE and (bm0 >= PD_LOW_BASELINE or mb - bm0 >= PD_MIN_POINTS)
            out.append(Criterion(R_PD, "BM blasts > 50 % above pretreatment (>= 15 points if it was < 30 %)",
                                 f"{_s(mb, '%')} vs pretreatment {_s(bm0, '%')}", rise))
        if tp.wbc_1e9_per_l is not None and tp.blood_blasts_pct is not None and pb0 is not None:
            pb = tp.wbc_1e9_per_l * tp.blood_blasts_pct / 100
            out.append(Criterion(R_PD, "peripheral blasts > 50 % above pretreatment and > 25 x10^9/L",
                                 f"{_s(pb, 'x10^9/L')} vs pretreatment {_s(pb0, 'x10^9/L')}",
                                 pb > pb0 * PD_RISE and pb > PD_PB_ABS))
        if tp.extramedullary_disease and emd0 is False:
            out.append(Criterion(R_PD, "new extramedullary disease", "true (absent before the line)", True))
        return out

    # -- MRD series --------------------------------------------------------------------------------------
    def _process_mrd(self, tp: Timepoint, call: Call) -> None:
        day = tp.date
        confirmed: list[str] = []
        for m, (status, censored, reason) in zip(tp.mrd, self.mrd_class, strict=True):
            cm = M.canonical_marker(m.marker)
            tissue = m.tissue or tp.sample
            key = f"{m.method}:{cm}:{tissue}"
            s = self.series.get(key)
            if s is None:
                s = self.series[key] = _Series(key)
            suspect = False
            if not censored and m.value_pct:
                suspect = self._unit_mix(s, day, m.entered_unit, m.value_pct, m.method, m.marker, tissue)
            base = self.baseline_mrd.get((m.method, cm))
            if base is None and self.line_idx is None and not censored and m.value_pct and not suspect:
                base = self.baseline_mrd[(m.method, cm)] = m.value_pct  # first pretreatment level
            red, lb = M.log10_reduction(base, m.value_pct, censored, m.lod_pct)
            self.mrd_points.append(MRDPoint(day, m.method, m.marker, tissue,
                                            None if m.value_pct is None else float(m.value_pct),
                                            None if m.lod_pct is None else float(m.lod_pct), censored, status,
                                            reason, red, lb, suspect))
            if suspect:
                continue
            s.points.append((day, m.value_pct, censored))
            if censored:
                s.projected = None
            if self.remission is not None and status != M.NOT_EVALUABLE:
                if self._mrd_relapse_step(s, day, m.method, m.marker, status, m.value_pct, censored, tissue):
                    confirmed.append(key)
            if not censored and len(s.points) >= 2 and s.points[-2][1] is not None and not s.points[-2][2] and (
                    m.value_pct > s.points[-2][1]):  # type: ignore[operator]
                # Only a sample higher than the previous quantified one can start or extend a rising segment.
                self._project(s, day, m.method, m.marker, tissue)
        if confirmed and call.category not in ("hematologic relapse",):
            ev = [e for e in self.events if e.kind == "mrd_relapse" and e.date == day]
            crit = tuple(Criterion(R_MREL, e.message, "; ".join(e.evidence), True) for e in ev)
            call = Call(call.date, call.sample, "MRD relapse", f"MRD relapse (confirmed; {call.label})",
                        call.mrd_status, True, (), (*call.criteria, *crit), R_MREL, self._status(), call.line)
        self.calls.append(call)

    def _unit_mix(self, s: _Series, day: date, unit: str | None, value: Decimal, method: str, marker: str,
                  tissue: str) -> bool:
        factor = mrd_unit_factor(unit)
        refs = [q for q in s.quantified if not q[5]]
        ref = refs[-1] if refs else None
        last = s.quantified[-1] if s.quantified else None
        jump = None
        if ref is not None and ref[4] == self.line_idx and not (last is not None and last[5] and last[1] == factor):
            jump = M.unit_mix_jump(ref[0], ref[1], value, factor)
        s.quantified.append((value, factor, day, unit, self.line_idx, jump is not None))
        if jump is None:
            return False
        u, pu = unit or "%", ref[3] or "%"  # type: ignore[index]
        self._event(day, "mrd_unit_suspect", "warning",
                    f"MRD value probably entered in the wrong unit ({method} {marker} {tissue}): "
                    f"{format(value / factor, 'f')} {u} = {format(value, 'f')} % is {float(jump):.0f}x the previous "
                    "result; left out of MRD-relapse calls and kinetics", R_UNIT,
                    [f"{day.isoformat()}: {format(value / factor, 'f')} {u} = {format(value, 'f')} %",
                     f"previous {ref[2].isoformat()}: {format(ref[0] / ref[1], 'f')} {pu} = "  # type: ignore[index]
                     f"{format(ref[0], 'f')} %",  # type: ignore[index]
                     f"read in {pu}: {format(value / factor, 'f')} {pu} = {format(value / factor * ref[1], 'f')} %"],  # type: ignore[index]
                    key=f"{s.key}:{day.isoformat()}")
        return True

    def _mrd_relapse_stands(self, tp: Timepoint, call: Call, li: int) -> Call:
        onset, day = self.mrd_relapse, tp.date
        ln = self.lines[li]
        new_line = ln.start >= onset
        marker_status = None
        for m, r in zip(tp.mrd, self.mrd_class, strict=True):
            if f"{m.method}:{M.canonical_marker(m.marker)}" == self.mrd_relapse_marker:
                marker_status = r[0]
                break
        ok = new_line and call.mrd_status == M.NEGATIVE and marker_status == M.NEGATIVE
        line_txt = (f"line {ln.regimen} from {ln.start.isoformat()}" if new_line
                    else f"no treatment line started since the onset {onset.isoformat()}")
        crit = Criterion(R_MREL, "MRD relapse resolved: CR/CRh/CRi MRD-negative, the relapsed marker tested, on a "
                         "treatment line started on or after the relapse onset",
                         f"{line_txt}; MRD {call.mrd_status or 'not tested'}; "
                         f"{self.mrd_relapse_marker.replace(':', ' ')} {marker_status or 'not tested'}", ok)
        if not ok:
            return Call(day, call.sample, "MRD relapse", f"MRD relapse (since {onset.isoformat()}; {call.label})",
                        call.mrd_status, True, (), (*call.criteria, crit), R_MREL, call.status, li)
        self.mrd_relapse = self.mrd_relapse_marker = None
        for s in self.series.values():
            s.prev_status = s.pending = s.nadir = None
            s.projected = None
        self._event(day, "new_response", "info", f"new response after MRD relapse: {call.label}", R_MREL,
                    [_ev(crit), *self.mrd_reasons], key="mrd-relapse-resolved",
                    closes=("mrd_relapse:*", "molecular_progression:*", "mrd_conversion:*", "projected_relapse:*"))
        return Call(day, call.sample, call.category, call.label, call.mrd_status, True, (), (*call.criteria, crit),
                    call.rule, self._status(), li)

    def _mrd_relapse_step(self, s: _Series, day: date, method: str, marker: str, status: str,
                          value: Decimal | None, censored: bool, tissue: str) -> bool:
        """§5 MRD relapse; returns True when a relapse is confirmed on this sample."""
        pos = M.is_positive(status)
        done = False
        if s.pending is not None:
            kind, onset, ref = s.pending
            ok = pos if kind == "conversion" else (pos and value is not None and ref is not None
                                                    and value >= ref * M.LOG_RISE_RATIO)
            what = "MRD-negative -> positive" if kind == "conversion" else ">= 1 log10 rise"
            if ok and self.mrd_relapse is None:
                self.mrd_relapse, self.mrd_relapse_marker = onset, s.key.rpartition(":")[0]
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

    def _project(self, s: _Series, day: date, method: str, marker: str, tissue: str) -> None:
        thr = self.cfg.projection_threshold_pct.get(method)
        kin = _ref_rising_kinetics(s.points, method=method, marker=marker, tissue=tissue, threshold_pct=thr,
                                level=self.cfg.ci_level)
        if kin is None or kin.already_above or kin.projected_date is None:
            return
        horizon = day + timedelta(days=self.cfg.projection_horizon_days)
        if kin.projected_date > horizon:
            return
        late = kin.projected_date_ci[1] if kin.projected_date_ci else None
        severity = "critical" if late is not None and late <= horizon else "warning"
        if s.projected == severity or s.projected == "critical":
            return
        s.projected = severity
        ci = kin.projected_date_ci
        ci_txt = [f"interval {ci[0].isoformat() if ci[0] else '?'} to {ci[1].isoformat() if ci[1] else 'unbounded'}"
                  ] if ci else []
        dbl = f"{kin.doubling_days:.0f} d" if kin.doubling_days else "?"
        self._event(day, "projected_relapse", severity,
                    f"rising MRD ({method} {marker} {tissue}) projected to reach {kin.threshold_pct:g} % on "
                    f"{kin.projected_date.isoformat()} (within {self.cfg.projection_horizon_days} d)",
                    "MRD kinetics: log-linear fit (monitoring.mrd)",
                    [f"{kin.n_points} positive points since {kin.first_date.isoformat()}", f"doubling time {dbl}",
                     *ci_txt, *kin.flags], key=s.key, closes=(f"projected_relapse:{s.key}",))

    def result(self) -> PatientResult:
        events = order_events(self.events)
        kin: list[M.Kinetics] = []
        for key, s in self.series.items():
            method, _, rest = key.partition(":")
            marker_c, _, tissue = rest.rpartition(":")
            marker = next((p.marker for p in self.mrd_points
                           if p.method == method and M.canonical_marker(p.marker) == marker_c), marker_c)
            k = _ref_rising_kinetics(s.points, method=method, marker=marker, tissue=tissue,
                                  threshold_pct=self.cfg.projection_threshold_pct.get(method), level=self.cfg.ci_level)
            if k is not None:
                kin.append(k)
        last = self.mrd_points[-1] if self.mrd_points else None
        last_mrd = None
        if last is not None:
            v = "not detected" if last.value_pct is None else f"{last.value_pct:g} %"
            last_mrd = f"{last.date.isoformat()} {last.method} {last.marker} ({last.tissue}): {v} [{last.status}]"
        current = self.calls[-1].status if self.calls else "no timepoints"
        return PatientResult(self.tl.patient, tuple(self.calls), tuple(events), tuple(open_alerts(events)),
                             tuple(self.mrd_points), tuple(kin), tuple(self.tl.warnings), current, last_mrd)


def reference_assess(timeline: Timeline, config: MonitorConfig | None = None) -> PatientResult:
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
