"""Loss of response (§5): hematologic relapse in remission, and progressive disease on treatment.

§5 hematologic relapse after CR/CRh/CRi: marrow blasts >= 5 %, blood blasts in two samples at least a week
apart, or new extramedullary disease; a single positive blood sample is a suspicion, reported as an event
and confirmed (or not) by a later sample, never by rewriting the earlier call. Progressive disease follows
ELN 2017 (:data:`~hemotwin.monitoring.rules.R_PD`). :class:`RelapseSteps` is a mixin of the engine.
"""

from __future__ import annotations

from decimal import Decimal

from hemotwin.monitoring.categories import mlfs_walk, remission_walk
from hemotwin.monitoring.criteria import (
    NEEDS_MARROW,
    Criterion,
    criterion,
    evidence_text,
    missing_inputs,
    pct_text,
    value_text,
)
from hemotwin.monitoring.records import Call, new_call
from hemotwin.monitoring.rules import (
    BM_BLASTS_LT,
    PD_LOW_BASELINE,
    PD_MIN_POINTS,
    PD_PB_ABS,
    PD_RISE,
    R_HREL,
    R_PD,
    RULE,
)
from hemotwin.monitoring.timeline import Timepoint


class RelapseSteps:
    """The engine's steps for relapse and progression (a mixin of the engine)."""

    def _in_remission(self, tp: Timepoint, mrd_status: str | None, li: int) -> Call:
        day = tp.date
        # §5 Hematologic relapse (after CR/CRh/CRi): BM blasts >= 5 %; blood blasts in >= 2 samples >= 1 week
        # apart (consecutive positive samples, no blast-free sample between); or new EMD.
        mb = tp.marrow_blasts_pct if tp.sample == "marrow" else None
        bb, emd = tp.blood_blasts_pct, tp.extramedullary_disease
        m_bm = None if mb is None else mb >= BM_BLASTS_LT
        r_bm = criterion(R_HREL, "BM blasts >= 5 %", pct_text(mb), m_bm)
        r_emd = criterion(R_HREL, "new extramedullary disease", None if emd is None else ("true" if emd else "false"),
                          emd)
        r_pb: Criterion | None = None
        if bb is not None:
            if bb > 0:
                gap = self.cfg.blood_blast_confirm_days
                first = self.pb_run[0] if self.pb_run else None
                ok = first is not None and (day - first).days >= gap
                r_pb = Criterion(R_HREL, f"blood blasts in >= 2 samples >= {gap} days apart",
                                 f"{pct_text(bb)} on {day}; earlier positive sample "
                                 f"{first.isoformat() if first else 'none'}", ok)
                self.pb_run.append(day)
            elif self.pb_run:
                self.pb_run = []
        crits = [r_bm, r_emd] if r_pb is None else [r_bm, r_pb, r_emd]
        if m_bm is True or emd is True or (r_pb is not None and r_pb.met is True):
            onset = self.pb_run[0] if r_pb is not None and r_pb.met and self.pb_run else day
            self.relapse, self.remission, self.rem_rank = day, None, 0
            self.pb_run, self.mrd_relapse, self.mrd_relapse_marker = [], None, None
            for s in self.series.values():
                s.prev_status = s.pending = s.nadir = None
            met = [c for c in crits if c.met]
            self._event(day, "loss_of_response", "critical", "hematologic relapse", R_HREL,
                        [evidence_text(c) for c in met], key="hematologic",
                        onset=onset,
                        closes=("relapse_suspected:*", "loss_of_response:downgrade", "projected_relapse:*",
                                "molecular_progression:*", "mrd_conversion:*", "mrd_relapse:*"))
            return new_call(day, tp.sample, "hematologic relapse", "hematologic relapse", mrd_status, True, (),
                            tuple(crits), RULE, self._status(), li)
        if r_pb is not None and r_pb.met is False:
            self._event(day, "relapse_suspected", "warning",
                        f"circulating blasts {value_text(bb, '%')} in remission: relapse if a sample >= "
                        f"{self.cfg.blood_blast_confirm_days} days later shows blasts", R_HREL,
                        [f"{r_pb.test}: {r_pb.value}"], key="blood_blasts")
            return self._not_evaluable(tp, [f"a blood sample >= {self.cfg.blood_blast_confirm_days} days later"],
                                       tuple(crits), mrd_status, li, self._status(), "circulating blasts, unconfirmed")
        if tp.sample != "marrow":
            pair = self.rel_pair  # the same two relapse tests, sample after sample: one tuple
            if pair is None or pair[0] is not r_bm or pair[1] is not r_emd:
                pair = self.rel_pair = (r_bm, r_emd)
            return self._not_evaluable(tp, NEEDS_MARROW, pair, mrd_status, li, self._status(),
                                       "blood sample: no hematologic relapse criterion met")
        w = remission_walk(tp)
        name, decided, used = w.name, w.decided, w.used
        if name is None:
            # BM < 5 %, no circulating blasts, no EMD, yet no remission category: both lineages below CRh
            # counts -> MLFS when the marrow is not aplastic (§5 MLFS). MLFS is not a remission (no count
            # recovery): a loss of response, while the §5 relapse criteria keep measuring against the remission
            # reached before (BM >= 5 %, blood blasts, new EMD).
            seen = [r_bm, r_emd, *w.added]
            name2, dec2, _, _ = mlfs_walk(w, tp, seen)
            if name2 == "MLFS" and dec2:
                self._downgrade(day, "MLFS", seen)
                self.rem_rank, self.rem_name = 0, "MLFS"
                return new_call(day, tp.sample, "MLFS", "MLFS", mrd_status, True, (), tuple(seen), RULE,
                                self._status(), li)
            return self._not_evaluable(tp, missing_inputs(seen), tuple(seen), mrd_status, li, self._status())
        crits_t = w.in_remission(r_bm, r_emd)  # the relapse criteria, then those the category walk looked at
        if not decided:
            return self._not_evaluable(tp, missing_inputs(crits_t), crits_t, mrd_status, li, self._status())
        self._remission_call(day, name, mrd_status, crits_t, used)
        return new_call(day, tp.sample, name, self._label(name, mrd_status), mrd_status, True, (), crits_t, RULE,
                        self._status(), li)

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
                                 f"{value_text(mb, '%')} vs pretreatment {value_text(bm0, '%')}", rise))
        if pb_rise is not None:
            out.append(Criterion(R_PD, "peripheral blasts > 50 % above pretreatment and > 25 x10^9/L",
                                 f"{value_text(pb, 'x10^9/L')} vs pretreatment {value_text(pb0, 'x10^9/L')}", pb_rise))
        if new_emd:
            out.append(Criterion(R_PD, "new extramedullary disease", "true (absent before the line)", True))
        return out

