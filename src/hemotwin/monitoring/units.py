"""Exact unit handling for monitoring values.

Every value is held as a :class:`decimal.Decimal` so that a threshold comparison is exact: a count
of ``1000 /µL`` becomes exactly ``1.0 x10^9/L`` (a float division would also give 1.0 here, but not
for every value, and ``0.1 + 0.2``-style drift must never decide a response call). Floats given by a
caller are converted through their shortest ``repr`` (``0.1`` -> ``Decimal('0.1')``), which is the
number the person typed.

Canonical units
---------------
- blood counts (WBC, ANC, platelets): x10^9/L (``*_1e9_per_l``)
- haemoglobin: g/dL
- percentages (blasts, cellularity): % in [0, 100]
- MRD values and limits of detection: % (of CD45+ cells for flow; marker/control x 100 for qPCR;
  variant allele fraction x 100 for NGS)
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation
from typing import Any

from hemotwin.errors import InputError

#: Count unit spelling -> factor to x10^9/L (µL is 1e-6 L, so 1 /µL = 1e6 /L = 1e-3 x10^9/L).
COUNT_UNITS: dict[str, Decimal] = {
    "x10^9/l": Decimal(1), "10^9/l": Decimal(1), "1e9/l": Decimal(1), "g/l": Decimal(1),
    "x10^3/ul": Decimal(1), "10^3/ul": Decimal(1), "k/ul": Decimal(1), "x10^3/mm3": Decimal(1),
    "/ul": Decimal("0.001"), "cells/ul": Decimal("0.001"), "/mm3": Decimal("0.001"),
}
#: Haemoglobin unit spelling -> factor to g/dL (mmol/L is refused: its factor is not a short decimal).
HB_UNITS: dict[str, Decimal] = {"g/dl": Decimal(1), "g/l": Decimal("0.1")}
#: MRD unit spelling -> factor to %. ``copies/1e4`` is copies of the marker per 10^4 copies of the
#: control gene (e.g. ABL1): 200 copies/1e4 = 2 %.
MRD_UNITS: dict[str, Decimal] = {"%": Decimal(1), "pct": Decimal(1), "percent": Decimal(1),
                                 "fraction": Decimal(100), "copies/1e4": Decimal("0.01"),
                                 "copies/1e5": Decimal("0.001"), "copies/1e6": Decimal("0.0001")}

#: Plausibility limits in canonical units (values above are physiologically impossible and almost
#: always a unit mix-up, e.g. a /µL number typed into a x10^9/L field).
COUNT_MAX = {"wbc": Decimal(1000), "anc": Decimal(1000), "platelets": Decimal(5000)}
#: Below these a /µL count is ambiguous (0 < x < 1 cell/µL is no measurement a counter reports; it
#: is a x10^9/L value typed with the wrong unit).
HB_RANGE = (Decimal(1), Decimal(25))


def norm_unit(unit: str) -> str:
    """Canonical spelling key of a unit string: lower case, no spaces, µ/μ/mc -> u, × -> x."""
    u = unit.strip().lower().replace(" ", "").replace("µ", "u").replace("μ", "u").replace("×", "x")
    return u.replace("mcl", "ul").replace("**", "^").replace("10e", "10^")


def to_decimal(value: Any, where: str) -> Decimal:
    """A finite Decimal from an int, float (via its shortest repr), Decimal or numeric string.

    Raises
    ------
    InputError
        ``value`` is not a finite number (booleans are refused too: ``True`` is not a count).
    """
    if isinstance(value, bool) or value is None:
        raise InputError(where, value, "a number")
    try:
        if isinstance(value, float):
            if not math.isfinite(value):
                raise InputError(where, value, "a finite number")
            d = Decimal(repr(value))
        elif isinstance(value, int | Decimal):
            d = Decimal(value)
        elif isinstance(value, str):
            d = Decimal(value.strip())
        else:
            raise InputError(where, value, "a number")
    except InvalidOperation:
        raise InputError(where, value, "a number") from None
    if not d.is_finite():
        raise InputError(where, value, "a finite number")
    return d


def count_to_1e9_per_l(value: Any, unit: str | None, where: str, *, field: str) -> Decimal:
    """Convert a blood count to x10^9/L exactly, refusing missing, ambiguous and impossible values.

    Parameters
    ----------
    value
        The count as given.
    unit
        Its unit (see :data:`COUNT_UNITS`); ``None`` is refused ("units are explicit").
    where
        Location for error messages (patient, date, field).
    field
        ``"wbc"``, ``"anc"`` or ``"platelets"`` (selects the plausibility limit).

    Examples
    --------
    >>> count_to_1e9_per_l(1000, "/µL", "x", field="anc")
    Decimal('1.000')
    >>> count_to_1e9_per_l(1000, "/µL", "x", field="anc") == Decimal("1.0")
    True
    """
    if unit is None or not str(unit).strip():
        raise InputError(where, value, f"a unit for {field} (x10^9/L or /µL)")
    factor = COUNT_UNITS.get(norm_unit(str(unit)))
    if factor is None:
        raise InputError(f"{where} unit", unit, "one of x10^9/L, x10^3/µL, /µL")
    d = to_decimal(value, where)
    if d < 0:
        raise InputError(where, value, "a count >= 0")
    if factor < 1 and 0 < d < 1:
        raise InputError(where, f"{value} {unit}", "a whole cell count per µL (this looks like x10^9/L)")
    out = d * factor
    limit = COUNT_MAX[field]
    if out > limit:
        hint = " (this looks like /µL)" if factor == 1 else ""
        raise InputError(where, f"{value} {unit}", f"at most {limit} x10^9/L{hint}")
    return out


def hb_to_g_per_dl(value: Any, unit: str | None, where: str) -> Decimal:
    """Convert haemoglobin to g/dL exactly; g/dL and g/L accepted, plausible range 1-25 g/dL."""
    if unit is None or not str(unit).strip():
        raise InputError(where, value, "a unit for hb (g/dL or g/L)")
    factor = HB_UNITS.get(norm_unit(str(unit)))
    if factor is None:
        raise InputError(f"{where} unit", unit, "g/dL or g/L")
    out = to_decimal(value, where) * factor
    lo, hi = HB_RANGE
    if not lo <= out <= hi:
        raise InputError(where, f"{value} {unit}", f"haemoglobin between {lo} and {hi} g/dL")
    return out


def percent(value: Any, where: str) -> Decimal:
    """A percentage in [0, 100] (exact)."""
    d = to_decimal(value, where)
    if not Decimal(0) <= d <= Decimal(100):
        raise InputError(where, value, "a percentage between 0 and 100")
    return d


def mrd_to_pct(value: Any, unit: str | None, where: str) -> Decimal:
    """Convert an MRD value or limit of detection to % exactly; a missing unit is refused."""
    if unit is None or not str(unit).strip():
        raise InputError(where, value, "an MRD unit (%, fraction, copies/1e4, copies/1e5)")
    factor = MRD_UNITS.get(norm_unit(str(unit)))
    if factor is None:
        raise InputError(f"{where} unit", unit, "one of %, fraction, copies/1e4, copies/1e5, copies/1e6")
    out = to_decimal(value, where) * factor
    if out < 0 or out > 100:
        raise InputError(where, f"{value} {unit}", "an MRD level between 0 and 100 %")
    return out


def mrd_unit_factor(unit: str | None) -> Decimal:
    """The factor to % of an MRD unit as stored in ``MRDResult.entered_unit`` (``None``: the value was given in %)."""
    if unit is None:
        return Decimal(1)
    f = MRD_UNITS.get(unit)  # stored units are already normalised
    return MRD_UNITS[norm_unit(unit)] if f is None else f


def fmt(d: Decimal | None) -> str | None:
    """Plain decimal text of an exact value (no exponent), ``None`` kept."""
    if d is None:
        return None
    return format(d, "f")
