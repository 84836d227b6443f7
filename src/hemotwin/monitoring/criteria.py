"""Criteria of the §5 rules: the three-valued record, its shared (memoised) construction and display texts.

Every criterion is three-valued (met / not met / unknown). Equal criteria and display texts are made once
and shared (bounded memo tables, :func:`clear_caches`): a cohort's calls repeat a few thousand distinct
criteria, and sharing keeps the retained results small (fewer objects for the cyclic garbage collector).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal


@dataclass(slots=True, frozen=True)
class Criterion:
    """One test of a rule with the value used: ``met`` True / False / None (value missing).

    Immutable: equal criteria are shared between calls (and patients) rather than copied.
    """

    rule: str
    test: str
    value: str | None
    met: bool | None


def value_text(v: Decimal | None, unit: str) -> str | None:
    """``v`` and its unit for display (decisions use the exact values): 1.000 -> "1", 4.99 -> "4.99"."""
    return None if v is None else f"{format(v.normalize(), 'f')} {unit}"


# Display texts memoised per exact value: equal Decimals (1.0, 1.00) share their normalised text, so the
# value is a safe key; zeros are kept out (-0 and 0 are equal but print differently). Bounded size.
MEMO_MAX = 1 << 16
_PCT_TXT: dict[Decimal, str] = {}
_COUNT_TXT: dict[Decimal, str] = {}


def pct_text(v: Decimal | None) -> str | None:
    """``value_text(v, "%")``, memoised."""
    if v is None:
        return None
    t = _PCT_TXT.get(v)
    if t is None:
        t = f"{format(v.normalize(), 'f')} %"
        if v and len(_PCT_TXT) < MEMO_MAX:
            _PCT_TXT[v] = t
    return t


def count_text(v: Decimal | None) -> str | None:
    """``value_text(v, "x10^9/L")``, memoised."""
    if v is None:
        return None
    t = _COUNT_TXT.get(v)
    if t is None:
        t = f"{format(v.normalize(), 'f')} x10^9/L"
        if v and len(_COUNT_TXT) < MEMO_MAX:
            _COUNT_TXT[v] = t
    return t


# Equal criteria are one shared (immutable) object: a cohort's calls repeat a few thousand distinct criteria,
# and sharing them keeps the retained results small (fewer objects for the cyclic garbage collector to scan).
_CRITS: dict[tuple[str, str, str | None, bool | None], Criterion] = {}


def criterion(rule: str, test: str, value: str | None, met: bool | None) -> Criterion:
    """``Criterion(rule, test, value, met)``, shared with every equal one made before (bounded table)."""
    key = (rule, test, value, met)
    c = _CRITS.get(key)
    if c is None:
        c = Criterion(rule, test, value, met)
        if len(_CRITS) < MEMO_MAX:
            _CRITS[key] = c
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


def evidence_text(c: Criterion) -> str:
    """A criterion as event evidence: ``test: value (met | not met | unknown)``."""
    state = "met" if c.met else "not met" if c.met is False else "unknown"
    return f"{c.test}: {c.value} ({state})"


def missing_inputs(crits: Iterable[Criterion]) -> list[str]:
    """The input fields whose absence leaves a criterion unknown (each once, in order): what a call needs."""
    out: list[str] = []
    for c in crits:
        if c.met is None:
            n = _NEEDS.get(c.test, c.test)
            if n not in out:
                out.append(n)
    return out


def and3(*vals: bool | None) -> bool | None:
    """Three-valued AND: False when one is False, else None when one is unknown, else True."""
    if False in vals:  # the values are exactly True / False / None
        return False
    return None if None in vals else True


def or3(a: bool | None, b: bool | None) -> bool | None:
    """Three-valued OR of two values."""
    if a is True or b is True:
        return True
    return None if a is None or b is None else False


#: What a call needs when only a marrow sample can decide it.
NEEDS_MARROW = ("marrow_blasts_pct (a marrow sample)",)


def clear_caches() -> None:
    """Empty the memo tables of texts and criteria; results do not depend on them."""
    _PCT_TXT.clear()
    _COUNT_TXT.clear()
    _CRITS.clear()
