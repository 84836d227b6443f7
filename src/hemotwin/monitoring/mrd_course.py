"""MRD along the course (§5 MRD relapse): series per method, marker and tissue, relapse and projections.

Each MRD result is classified (:func:`~hemotwin.monitoring.mrd.classify`), reduced against its pretreatment
level and added to its series. In remission, an MRD conversion (negative -> positive) or a >= 1 log10 rise
is an event confirmed (or not) by the next sample of the same tissue; a rising series whose fit crosses
the projection threshold within the horizon raises an alert. A confirmed MRD relapse stands until a treatment
line started since its onset is followed by a CR/CRh/CRi MRD-negative assessment that tests the relapsed marker
(:meth:`MRDSteps._mrd_relapse_stands`). A result that jumps from the previous one of its series about as much
as their different units differ is suspected to be entered in the wrong unit
(:func:`~hemotwin.monitoring.mrd.unit_mix_jump`): it raises a warning and is kept out of MRD-relapse calls and
kinetics. :class:`MRDSteps` is a mixin of the engine.
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from decimal import Decimal

from hemotwin.monitoring import mrd as M
from hemotwin.monitoring.criteria import MEMO_MAX, Criterion, evidence_text
from hemotwin.monitoring.records import Call, MRDPoint, new_call, slot_setters
from hemotwin.monitoring.rules import R_MREL, R_UNIT
from hemotwin.monitoring.timeline import Timepoint
from hemotwin.monitoring.units import mrd_unit_factor

#: The test of a standing MRD relapse (its criterion is met once the relapse is resolved).
MRD_RELAPSE_RESOLVED = ("MRD relapse resolved: CR/CRh/CRi MRD-negative, the relapsed marker tested, on a treatment "
                        "line started on or after the relapse onset")

# M.classify per (method, marker, value text, detected, LOD text): the texts, not the Decimals, are the key, since
# the reason quotes the value as written (0.10 and 0.1 are equal Decimals but read differently). The entry also
# carries the numbers the MRD step needs: float(value), float(LOD) and log10(float(value)) of a quantified value.
MRDClass = tuple[str, bool, str, float | None, float | None, float | None]
_CLASSES: dict[tuple[object, ...], MRDClass] = {}


def classify_cached(method: str, marker: str, value: Decimal | None, detected: bool, lod: Decimal | None) -> MRDClass:
    """:func:`~hemotwin.monitoring.mrd.classify` with the numbers the MRD step needs, memoised (bounded table).

    Returns
    -------
    MRDClass
        (status, censored, reason, float(value), float(LOD), log10(float(value))); the last is None unless the
        value is quantified (not censored, > 0).
    """
    key = (method, marker, None if value is None else str(value), detected, None if lod is None else str(lod))
    c = _CLASSES.get(key)
    if c is None:
        status, censored, reason = M.classify(method, marker, value, detected, lod)
        f_value = None if value is None else float(value)
        lv = None if censored or value is None or value <= 0 else math.log10(f_value)  # type: ignore[arg-type]
        c = (status, censored, reason, f_value, None if lod is None else float(lod), lv)
        if len(_CLASSES) < MEMO_MAX:
            _CLASSES[key] = c
    return c


def clear_caches() -> None:
    """Empty the table of MRD classes; results do not depend on it."""
    _CLASSES.clear()


def mrd_label(statuses: list[str]) -> str | None:
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


_DETECTED = (M.POSITIVE, M.LOW_LEVEL)
_ONE = Decimal(1)
_NO_REF = object()  # MRDSeries.ref_unit before the series has a quantified result
_new_obj = object.__new__
_MRDP_SET = slot_setters(MRDPoint)


class MRDSeries:
    """One MRD series (method, canonical marker, tissue) as the engine walks it: points, nadir, pending confirmation."""

    __slots__ = ("key", "kin", "last_slip", "log_ref", "logs", "nadir", "pending", "points", "prev_status",
                 "projected", "ref_line", "ref_unit")

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
        # The unit and treatment line of the last quantified result not suspected of a unit slip (the last quantified
        # point of ``points``; _NO_REF before the first), and the unit factor of the last quantified result when it
        # was suspected (else None).
        self.ref_unit: str | object | None = _NO_REF
        self.ref_line: int | None = None
        self.last_slip: Decimal | None = None


class MRDSteps:
    """The engine's MRD steps: status of a timepoint, series, MRD relapse, projected crossings (a mixin)."""

    def _mrd_status_here(self, tp: Timepoint) -> str | None:
        mrd = tp.mrd
        if not mrd:
            self.mrd_class = []
            return None
        res = self.mrd_class = [classify_cached(m.method, m.marker, m.value_pct, m.detected, m.lod_pct) for m in mrd]
        self.mrd_tp = tp
        if len(res) == 1:
            return res[0][0]  # mrd_label of one status is that status
        return mrd_label([r[0] for r in res])

    @property
    def mrd_reasons(self) -> list[str]:
        """Evidence text of the current timepoint's MRD results (built only when an event needs it)."""
        return [f"{m.method} {m.marker} ({m.tissue}): {r[2]}"
                for m, r in zip(self.mrd_tp.mrd, self.mrd_class, strict=True)]

    def _process_mrd(self, tp: Timepoint, call: Call) -> None:
        mrd = tp.mrd
        if not mrd:
            self.calls.append(call)
            return
        day = tp.date
        confirmed: list[str] = []
        in_remission = self.remission is not None  # (an MRD step never changes the remission)
        points_out = self.mrd_points
        s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11 = _MRDP_SET
        for m, (status, censored, reason, f_value, f_lod, lv) in zip(mrd, self.mrd_class, strict=True):
            method, marker, value, lod = m.method, m.marker, m.value_pct, m.lod_pct
            tissue = m.tissue or tp.sample
            hit = self.series_by.get((method, marker, tissue))
            if hit is None:
                cm = M.canonical_marker(marker)
                key = f"{method}:{cm}:{tissue}"
                s = self.series.get(key)
                if s is None:
                    s = self.series[key] = MRDSeries(key)
                hit = self.series_by[(method, marker, tissue)] = (s, (method, cm))
                self.first_marker.setdefault((method, cm), marker)
            s, base_key = hit
            suspect = False
            if not censored and value:
                if m.entered_unit == s.ref_unit:  # the usual case: the unit of the reference result, never a slip
                    s.ref_line, s.last_slip = self.line_idx, None
                else:
                    suspect = self._unit_mix(s, day, m.entered_unit, value, method, marker, tissue)
            base = self.baseline_mrd.get(base_key)
            if base is None and self.line_idx is None and not censored and value and not suspect:
                base = self.baseline_mrd[base_key] = value  # first pretreatment level
            # M.log10_reduction, with the float values of classify_cached and log10(baseline) once per baseline
            # (same floats).
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
            p = _new_obj(MRDPoint)  # MRDPoint(...) filled through its slots, as new_call does
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
            s11(p, suspect)
            points_out.append(p)
            if suspect:
                continue  # shown and flagged, but no MRD-relapse step or kinetics fit rests on it
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
            call = new_call(call.date, call.sample, "MRD relapse", f"MRD relapse (confirmed; {call.label})",
                            call.mrd_status, True, (), (*call.criteria, *crit), R_MREL, self._status(), call.line)
        self.calls.append(call)

    def _unit_mix(self, s: MRDSeries, day: date, unit: str | None, value: Decimal, method: str, marker: str,
                  tissue: str) -> bool:
        """Whether a quantified result looks entered in the wrong unit (raising the warning); updates the series.

        It is compared with the last quantified result of its series not itself suspected, unless a treatment
        line started between the two (a fall after treatment may span several log10, and diagnostic samples are
        often reported in another unit). A result in the unit of the immediately preceding, suspected one is not
        suspected: two consecutive results agree in the new unit (the laboratory changed its unit).
        """
        factor = mrd_unit_factor(unit)
        jump = ref = None
        if s.ref_unit is not _NO_REF and s.ref_line == self.line_idx and s.last_slip != factor:
            ref = next(p for p in reversed(s.points) if not p[2] and p[1])  # the reference: last quantified point
            jump = M.unit_mix_jump(ref[1], mrd_unit_factor(s.ref_unit), value, factor)  # type: ignore[arg-type]
        if jump is None:
            s.ref_unit, s.ref_line, s.last_slip = unit, self.line_idx, None
            return False
        s.last_slip = factor
        prev_day, prev, prev_unit = ref[0], ref[1], s.ref_unit  # type: ignore[index]
        prev_factor = mrd_unit_factor(prev_unit)  # type: ignore[arg-type]
        as_typed = f"{format(value / factor, 'f')} {unit or '%'}"
        self._event(day, "mrd_unit_suspect", "warning",
                    f"MRD value probably entered in the wrong unit ({method} {marker} {tissue}): {as_typed} "
                    f"= {format(value, 'f')} % is {float(jump):.0f}x the previous result; left out of MRD-relapse "
                    "calls and kinetics", R_UNIT,
                    [f"{day.isoformat()}: {as_typed} = {format(value, 'f')} %",
                     f"previous {prev_day.isoformat()}: {format(prev / prev_factor, 'f')} {prev_unit or '%'} = "
                     f"{format(prev, 'f')} %",
                     f"read in {prev_unit or '%'}: {format(value / factor, 'f')} {prev_unit or '%'} = "
                     f"{format(value / factor * prev_factor, 'f')} %"],
                    key=f"{s.key}:{day.isoformat()}")
        return True

    def _mrd_relapse_stands(self, tp: Timepoint, call: Call, li: int) -> Call:
        """A CR/CRh/CRi call while an MRD relapse stands: relabelled "MRD relapse", or the relapse resolved.

        A relapse stands until a new response is documented after new treatment: a timepoint on a treatment line
        started on or after the relapse onset (a sample on a line's start date is taken before the first dose)
        whose call is CR/CRh/CRi with every MRD result negative, the relapsed method and marker among them.
        """
        onset, day, relapsed = self.mrd_relapse, tp.date, self.mrd_relapse_marker
        ln = self.lines[li]
        new_line = ln.start >= onset  # type: ignore[operator]
        marker_status = next((r[0] for m, r in zip(tp.mrd, self.mrd_class, strict=True)
                              if f"{m.method}:{M.canonical_marker(m.marker)}" == relapsed), None) if tp.mrd else None
        ok = new_line and call.mrd_status == M.NEGATIVE and marker_status == M.NEGATIVE
        line_txt = (f"line {ln.regimen} from {ln.start.isoformat()}" if new_line
                    else f"no treatment line started since the onset {onset.isoformat()}")  # type: ignore[union-attr]
        crit = Criterion(R_MREL, MRD_RELAPSE_RESOLVED,
                         f"{line_txt}; MRD {call.mrd_status or 'not tested'}; {relapsed.replace(':', ' ')} "
                         f"{marker_status or 'not tested'}", ok)
        if not ok:
            return new_call(day, call.sample, "MRD relapse", f"MRD relapse (since {onset.isoformat()}; {call.label})",  # type: ignore[union-attr]
                            call.mrd_status, True, (), (*call.criteria, crit), R_MREL, call.status, li)
        self.mrd_relapse = self.mrd_relapse_marker = None
        for s in self.series.values():
            s.prev_status = s.pending = s.nadir = None
            s.projected = None
        self._event(day, "new_response", "info", f"new response after MRD relapse: {call.label}", R_MREL,
                    [evidence_text(crit), *self.mrd_reasons], key="mrd-relapse-resolved",
                    closes=("mrd_relapse:*", "molecular_progression:*", "mrd_conversion:*", "projected_relapse:*"))
        return new_call(day, call.sample, call.category, call.label, call.mrd_status, True, (),
                        (*call.criteria, crit), call.rule, self._status(), li)

    def _mrd_relapse_step(self, s: MRDSeries, day: date, method: str, marker: str, status: str,
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

    def _kinetics(self, s: MRDSeries, method: str) -> tuple | None:  # type: ignore[type-arg]
        """M.kinetics_values of the series as it stands (computed once per series length)."""
        n = len(s.points)
        if s.kin is not None and s.kin[0] == n:
            return s.kin[1]
        vals = M.kinetics_values(s.points, threshold_pct=self.cfg.projection_threshold_pct.get(method),
                                 level=self.cfg.ci_level, logs=s.logs)
        s.kin = (n, vals)
        return vals

    def _project(self, s: MRDSeries, day: date, method: str, marker: str, tissue: str) -> None:
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

