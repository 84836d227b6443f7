"""Differential counts with exact intervals, threshold decisions and the cells still needed to decide.

A differential of ``n`` cells estimates proportions; every proportion here carries its exact
(Clopper–Pearson) 95 % interval (docs/clinical_rules.md §2). A threshold (blasts >= 20 %) is
*decided* only when the whole interval lies on one side of it; otherwise the result is
**indeterminate** and we say how many more cells would decide it if the observed proportion held.

Denominators. Percentages of white cells use the **leukocytes**: every class except nucleated red
cells (EBO) and smudge cells (KSC), which are not intact leukocytes and are reported per 100
leukocytes instead (ICSH convention for NRBC; the same for smudge cells so that a CLL smear's
ruptured lymphocytes do not dilute the blast percentage).

Import cost: numpy + scipy.stats only.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from scipy.stats import beta

from hemotwin.errors import InputError
from hemotwin.taxonomy import BLAST_CODES, CLASS_CODES, CLASS_NAMES

__all__ = [
    "LEUKOCYTE_CODES",
    "PER_100_CODES",
    "ClassCount",
    "Decision",
    "Differential",
    "Estimate",
    "additional_cells_needed",
    "clopper_pearson",
    "count_differential",
    "cp_count_estimate",
    "cp_estimate",
    "decide",
]

#: Codes reported per 100 leukocytes rather than as a share of them.
PER_100_CODES: tuple[str, ...] = ("EBO", "KSC")
#: Codes counted as leukocytes (the denominator of every percentage).
LEUKOCYTE_CODES: tuple[str, ...] = tuple(c for c in CLASS_CODES if c not in PER_100_CODES)
#: Largest total count :func:`additional_cells_needed` searches (a 100,000-cell count is not a smear).
MAX_CELLS = 100_000

State = Literal["positive", "negative", "indeterminate"]


def clopper_pearson(x: float, n: float, *, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper–Pearson) confidence interval of a binomial proportion.

    Parameters
    ----------
    x
        Successes (may be fractional when projecting a proportion to another ``n``).
    n
        Trials; ``n == 0`` gives the uninformative ``(0, 1)``.
    level
        Two-sided confidence level.

    Returns
    -------
    (lo, hi)
        Bounds as fractions in [0, 1].

    Examples
    --------
    >>> lo, hi = clopper_pearson(40, 200)
    >>> round(100 * lo, 1), round(100 * hi, 1)
    (14.7, 26.2)
    """
    if not (0 < level < 1):
        raise InputError("level", level, "a confidence level in (0, 1)")
    if n < 0 or x < 0 or x > n or not (math.isfinite(x) and math.isfinite(n)):
        raise InputError("x, n", (x, n), "0 <= x <= n, finite")
    if n == 0:
        return 0.0, 1.0
    a = (1 - level) / 2
    lo = 0.0 if x == 0 else float(beta.ppf(a, x, n - x + 1))
    hi = 1.0 if x == n else float(beta.ppf(1 - a, x + 1, n - x))
    return lo, hi


class Estimate(BaseModel):
    """A proportion with its 95 % interval, in percent.

    Attributes
    ----------
    name
        What is estimated (``"blasts"``, ``"NGS"``, ``"EBO per 100 leukocytes"``).
    numerator, denominator
        Class codes summed above and below the fraction bar.
    count, n
        Cells in the numerator and in the denominator (plain counts; for a misclassification-corrected
        estimate the counts of the *called* cells, for reference).
    percent, lo, hi
        Point estimate and 95 % interval, in percent (per 100 denominator cells for per-100 ratios).
    method
        ``"clopper-pearson"`` (exact binomial on the counted calls) or ``"misclassification-corrected"``.
    per_100
        True when the numerator is outside the denominator (NRBC per 100 leukocytes).
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    numerator: tuple[str, ...]
    denominator: tuple[str, ...]
    count: int = Field(ge=0)
    n: int = Field(ge=0)
    percent: float
    lo: float
    hi: float
    method: Literal["clopper-pearson", "misclassification-corrected"] = "clopper-pearson"
    per_100: bool = False


def _to_per_100(q: float) -> float:
    """A fraction ``num / (num + den)`` as ``100 * num / den`` (monotone, so intervals map exactly)."""
    return math.inf if q >= 1 else 100.0 * q / (1.0 - q)


def cp_estimate(counts: Mapping[str, int], numerator: Sequence[str], *, name: str | None = None,
                denominator: Sequence[str] = LEUKOCYTE_CODES, level: float = 0.95) -> Estimate:
    """Clopper–Pearson estimate of ``sum(numerator) / sum(denominator)`` from class counts.

    When the numerator codes lie outside the denominator (EBO per 100 leukocytes), the exact interval
    of ``num / (num + den)`` is mapped to ``100 * num / den``, which is monotone in it.
    """
    num = tuple(numerator)
    den = tuple(denominator)
    x = int(sum(counts.get(c, 0) for c in num))
    n_den = int(sum(counts.get(c, 0) for c in den))
    return cp_count_estimate(x, n_den, numerator=num, denominator=den, name=name, level=level)


def cp_count_estimate(x: int, n_den: int, *, numerator: Sequence[str], denominator: Sequence[str] = LEUKOCYTE_CODES,
                      name: str | None = None, level: float = 0.95) -> Estimate:
    """Clopper–Pearson estimate from the cell counts themselves (``x`` numerator cells, ``n_den`` denominator cells).

    The same estimate as :func:`cp_estimate`, for counts that are not one class mapping (the flags'
    evidence rule sets unsure cells aside or adds them, :mod:`hemotwin.diagnosis.flags`).

    Parameters
    ----------
    x
        Cells in the numerator.
    n_den
        Cells in the denominator (for a per-100 ratio, the denominator cells alone).
    numerator, denominator
        The class codes, as in :func:`cp_estimate` (they decide whether the ratio is per 100).
    name
        What is estimated.
    level
        Confidence level.

    Returns
    -------
    Estimate
        The estimate, in percent (per 100 denominator cells for a per-100 ratio).
    """
    num = tuple(numerator)
    den = tuple(denominator)
    x, n_den = int(x), int(n_den)
    per_100 = not set(num) <= set(den)
    if per_100 and set(num) & set(den):
        raise InputError("numerator", num, "codes all inside or all outside the denominator")
    if not per_100 and x > n_den:
        raise InputError("x, n_den", (x, n_den), "a numerator inside the denominator: x <= n_den")
    n = n_den + x if per_100 else n_den
    lo, hi = clopper_pearson(x, n, level=level)
    p = x / n if n else float("nan")
    if per_100:
        pct, lo_pct, hi_pct = _to_per_100(p) if n else float("nan"), _to_per_100(lo), _to_per_100(hi)
    else:
        pct, lo_pct, hi_pct = 100 * p, 100 * lo, 100 * hi
    return Estimate(name=name or "+".join(num), numerator=num, denominator=den, count=x, n=n_den,
                    percent=pct, lo=lo_pct, hi=hi_pct, per_100=per_100)


class ClassCount(BaseModel):
    """One row of the differential table.

    Attributes
    ----------
    code, name
        The class.
    count
        Counted calls of the class.
    unsure
        Of them, calls of a rare class below the confidence its flags need as evidence
        (:func:`hemotwin.diagnosis.flags.evidence_threshold`): counted, and on the review list.
    estimate
        The Clopper–Pearson estimate of the class.
    """

    model_config = ConfigDict(extra="forbid")

    code: str
    name: str
    count: int = Field(ge=0)
    unsure: int = Field(default=0, ge=0)
    estimate: Estimate


class Differential(BaseModel):
    """Counts per class with exact intervals and the blast percentage.

    Attributes
    ----------
    n_leukocytes
        Cells in the denominator (every counted class but EBO and KSC).
    n_counted
        Every counted cell, EBO and KSC included.
    n_referred
        Cells sent to the review list instead of being counted.
    n_unsure
        Counted cells called a rare class without the confidence a flag needs as evidence (on the
        review list too; docs/diagnosis.md, "The evidence rule").
    rows
        One row per class code in taxonomy order (zero rows included, so tables are stable).
    blasts
        MYO + MOB as a percentage of leukocytes.
    blasts_with_equivalents
        Blasts plus the blast-equivalent codes given (abnormal promyelocytes when the APL pattern
        applies: docs/clinical_rules.md §1, "Blast equivalents counted with blasts").
    blast_equivalent_codes
        The codes added to the blasts for ``blasts_with_equivalents`` (empty: same as ``blasts``).
    """

    model_config = ConfigDict(extra="forbid")

    n_leukocytes: int
    n_counted: int
    n_referred: int
    rows: list[ClassCount]
    n_unsure: int = 0
    blasts: Estimate
    blasts_with_equivalents: Estimate
    blast_equivalent_codes: tuple[str, ...] = ()

    def counts(self) -> dict[str, int]:
        """Code -> count."""
        return {r.code: r.count for r in self.rows}


def count_differential(labels: Iterable[str] | Mapping[str, int], *, n_referred: int = 0,
                       blast_equivalents: Sequence[str] = (), unsure: Mapping[str, int] | None = None,
                       level: float = 0.95) -> Differential:
    """Count a differential from per-cell class codes (or a code -> count mapping).

    Parameters
    ----------
    labels
        Class code of every counted cell, or counts per code. Codes must be canonical (``"NGS"``).
    n_referred
        Cells referred for review (recorded, not counted).
    blast_equivalents
        Codes counted with the blasts in ``blasts_with_equivalents`` (e.g. ``("PMO", "PMB")`` when the
        APL pattern is present).
    unsure
        Per class, the counted calls that lack the confidence a rare-class flag needs (at most the
        class's count); recorded per row and in ``n_unsure``.
    level
        Confidence level of the intervals.

    Examples
    --------
    >>> d = count_differential({"MYO": 40, "NGS": 160})
    >>> round(d.blasts.lo, 1), round(d.blasts.hi, 1)
    (14.7, 26.2)
    """
    counts: Counter[str] = Counter(labels) if not isinstance(labels, Mapping) else Counter(dict(labels))
    for code, k in counts.items():
        if code not in CLASS_NAMES:
            raise InputError("labels", code, f"class codes among {', '.join(CLASS_CODES)}")
        if int(k) != k or k < 0:
            raise InputError(f"labels[{code}]", k, "a non-negative integer count")
    if n_referred < 0:
        raise InputError("n_referred", n_referred, "a count >= 0")
    unsure = dict(unsure or {})
    for code, k in unsure.items():
        if code not in CLASS_NAMES or not 0 <= int(k) <= counts.get(code, 0):
            raise InputError(f"unsure[{code}]", k, "a class code and a count between 0 and the class's count")
    rows = []
    for code in CLASS_CODES:
        den = LEUKOCYTE_CODES
        est = cp_estimate(counts, (code,), name=code, denominator=den, level=level)
        rows.append(ClassCount(code=code, name=CLASS_NAMES[code], count=int(counts.get(code, 0)),
                               unsure=int(unsure.get(code, 0)), estimate=est))
    eq = tuple(c for c in blast_equivalents if c not in BLAST_CODES)
    blasts = cp_estimate(counts, BLAST_CODES, name="blasts", level=level)
    with_eq = cp_estimate(counts, (*BLAST_CODES, *eq), name="blasts + blast equivalents", level=level)
    n_leuk = int(sum(counts.get(c, 0) for c in LEUKOCYTE_CODES))
    return Differential(n_leukocytes=n_leuk, n_counted=int(sum(counts.values())), n_referred=int(n_referred),
                        n_unsure=int(sum(unsure.values())), rows=rows, blasts=blasts,
                        blasts_with_equivalents=with_eq, blast_equivalent_codes=eq)


class Decision(BaseModel):
    """Where an interval lies against a threshold.

    Attributes
    ----------
    state
        ``"positive"`` (the whole interval satisfies the rule), ``"negative"`` (none of it does) or
        ``"indeterminate"`` (the interval straddles the threshold).
    additional_cells
        For an indeterminate result: more cells that would decide it if the observed proportion held
        (None when it cannot be decided by counting, e.g. the estimate sits on the threshold, or when
        the interval's width is not set by the count).
    note
        Plain-language statement of the decision.
    """

    model_config = ConfigDict(extra="forbid")

    state: State
    additional_cells: int | None = None
    note: str = ""


def decide(estimate: Estimate, threshold: float, *, above: bool = True) -> State:
    """The state of a threshold rule given an interval estimate.

    ``"positive"`` when the interval is wholly ``>= threshold`` (``above``) or wholly ``< threshold``
    (``above=False``), ``"negative"`` when wholly on the other side, else ``"indeterminate"``.
    """
    lo, hi = estimate.lo, estimate.hi
    if lo >= threshold:
        return "positive" if above else "negative"
    if hi < threshold:
        return "negative" if above else "positive"
    return "indeterminate"


def additional_cells_needed(x: int, n: int, threshold_pct: float, *, level: float = 0.95,
                            per_100: bool = False, max_cells: int = MAX_CELLS) -> int | None:
    """Extra cells that would move the exact interval off ``threshold_pct`` if the proportion held.

    The observed proportion ``p = x / n`` is projected to a total of ``N`` cells as ``p * N``
    successes (a real number: the beta quantiles accept it, and the bound is then smooth and
    monotone in ``N``); the answer is the smallest ``N - n`` whose interval excludes the threshold.

    Parameters
    ----------
    x, n
        Observed count and total (the proportion's denominator; for per-100 ratios, ``num + den``).
    threshold_pct
        The threshold in percent (per 100 denominator cells when ``per_100``).
    per_100
        The threshold is a ratio per 100 denominator cells (converted to a proportion of ``num + den``).
    max_cells
        Give up (None) beyond this total.

    Returns
    -------
    int or None
        0 when already decided; None when no count up to ``max_cells`` decides it (the estimate sits
        on the threshold, or n == 0).

    Examples
    --------
    >>> additional_cells_needed(44, 200, 20.0)  # 22 % observed against the 20 % cut-off
    1414
    """
    if n <= 0:
        return None
    t = threshold_pct / 100.0
    if per_100:
        t = t / (1.0 + t)
    p = x / n

    def decided(total: float) -> bool:
        lo, hi = clopper_pearson(p * total, total, level=level)
        return lo >= t or hi < t

    if decided(n):
        return 0
    if p == t or not decided(max_cells):
        return None
    lo_n, hi_n = n, max_cells  # decided(hi_n) is True, decided(lo_n) is False
    while hi_n - lo_n > 1:
        mid = (lo_n + hi_n) // 2
        if decided(mid):
            hi_n = mid
        else:
            lo_n = mid
    return int(hi_n - n)
