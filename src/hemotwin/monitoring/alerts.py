"""Alerts: dated, ordered events with severity and evidence, and which of them are still open."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

SEVERITIES = ("info", "warning", "critical")
_RANK = {s: i for i, s in enumerate(SEVERITIES)}

#: Event kinds (the ``kind`` field) and what they mean.
KINDS = {
    "new_response": "a better response than before in this line or remission (incl. MRD negativity, and a "
                    "CR/CRh/CRi MRD-negative on new treatment that resolves an MRD relapse)",
    "loss_of_response": "a worse response after remission (CR -> CRh -> CRi; MLFS, which is not a remission), or a "
                        "hematologic relapse",
    "relapse_suspected": "circulating blasts in remission, awaiting a second sample >= 7 days later",
    "refractory": "no CR/CRh/CRi at the response landmark",
    "progression": "progressive disease before any remission",
    "mrd_conversion": "MRD-negative -> positive, awaiting confirmation in the next sample of the same tissue",
    "mrd_not_confirmed": "the next sample did not confirm an MRD conversion or rise",
    "molecular_progression": ">= 1 log10 MRD rise between positive samples (unconfirmed), or rising MRD",
    "mrd_relapse": "MRD relapse, confirmed in a consecutive sample of the same tissue",
    "projected_relapse": "rising MRD projected to cross the chosen threshold within the horizon",
    "mrd_unit_suspect": "an MRD value probably entered in the wrong unit (a jump between consecutive results in "
                        "different units about as large as the units differ); left out of MRD calls and kinetics",
}


@dataclass(slots=True, frozen=True)
class Event:
    """One alert. ``onset`` is the date the condition began (a confirmation is dated when confirmed)."""

    date: _dt.date
    kind: str
    severity: str
    message: str
    rule: str
    evidence: tuple[str, ...] = ()
    key: str = ""
    onset: _dt.date | None = None
    closes: tuple[str, ...] = field(default=())


def order_events(events: list[Event]) -> list[Event]:
    """Date order; on one date the more severe first, then the order they were raised (stable)."""
    return sorted(events, key=lambda e: (e.date, -_RANK[e.severity]))


def open_alerts(events: list[Event]) -> list[Event]:
    """Warning and critical events not closed by a later event.

    An event closes earlier ones whose ``kind:key`` (or ``kind:*``) is in its ``closes``: a new remission
    closes relapse/refractory/progression alerts; an unconfirmed MRD conversion is closed by its
    confirmation or by "not confirmed"; a newer projection of the same series replaces the older one.
    """
    live: list[tuple[Event, str, str]] = []  # (event, "kind:key", "kind:*"), the texts made once per event
    for e in events:
        closes = e.closes
        if closes and live:
            live = [o for o in live if o[1] not in closes and o[2] not in closes]
        if e.severity != "info":
            live.append((e, f"{e.kind}:{e.key}", f"{e.kind}:*"))
    return [o[0] for o in live]
