"""The records the monitoring engine returns: one call per timepoint, MRD points, the patient result.

Frozen slotted dataclasses, compared with ``==``. The engine fills them through their slot descriptors
(:func:`new_call`, :func:`slot_setters`) rather than the frozen ``__init__``, which costs one
``object.__setattr__`` per field; the objects are equal either way.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, fields

from hemotwin.monitoring import mrd as M
from hemotwin.monitoring.alerts import Event
from hemotwin.monitoring.criteria import Criterion
from hemotwin.monitoring.rules import RULE


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
    """One MRD result in canonical units with its §5 status and log10 reduction from baseline.

    ``unit_mix_suspected``: the value jumps from the previous result of its series about as much as their
    different units differ (:func:`~hemotwin.monitoring.mrd.unit_mix_jump`), so it was probably entered in the
    wrong unit; it is kept out of MRD-relapse calls and kinetics fits.
    """

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
    unit_mix_suspected: bool = False


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


def slot_setters(cls: type) -> tuple:
    """The ``__set__`` of each slot of a slotted dataclass, in field order (fills a frozen record directly)."""
    return tuple(getattr(cls, f.name).__set__ for f in fields(cls))


_new_obj = object.__new__
_CALL_SET = slot_setters(Call)


def new_call(day: _dt.date, sample: str, category: str, label: str, mrd_status: str | None, evaluable: bool,
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
