"""MRD: classification by method (ELN MRD 2021 thresholds), log10 reduction, rising-MRD kinetics.

Sources (docs/clinical_rules.md §5, "MRD thresholds (ELN MRD 2021, Heuser et al., Blood 2021)"):

- flow cytometry: positive at >= 0.1 % of CD45+ cells;
- qPCR of NPM1 and the core-binding-factor fusions: any detection is MRD, below 2 % it is
  *low-level* MRD (the "CR with low-level MRD" of the MRD-relapse row); other qPCR markers have no
  low-level band (any detection is positive);
- NGS: positive at a variant allele fraction >= 0.1 %.

A value below its limit of detection (LOD), or reported "not detected", is **censored**: it counts as
negative and is never put on a log axis or into a fit as a number (its LOD is kept as the bound).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

#: §5 MRD thresholds (ELN MRD 2021) in %.
FLOW_POSITIVE_PCT = Decimal("0.1")
NGS_POSITIVE_PCT = Decimal("0.1")
QPCR_LOW_LEVEL_BELOW_PCT = Decimal("2")
#: §5 MRD-relapse row: a rise of >= 1 log10 between positive qPCR samples = a ratio >= 10 (exact).
LOG_RISE_RATIO = Decimal(10)
LOG10_2 = math.log10(2.0)

#: Unit-slip suspicion: a jump of at least this factor between consecutive quantified results of one series
#: reported in different units (project convention). % and copies/10^5 differ by 1000, so a result typed in the
#: wrong one of them shows as a ~1000x jump; 300 leaves room for a true change of up to ~3-fold either way.
UNIT_MIX_RATIO = Decimal(300)

NEGATIVE, LOW_LEVEL, POSITIVE, NOT_EVALUABLE = "negative", "low-level", "positive", "not evaluable"


@functools.lru_cache(maxsize=4096)
def canonical_marker(marker: str) -> str:
    """Upper-case marker with fusion separators unified (``RUNX1-RUNX1T1`` -> ``RUNX1::RUNX1T1``) (memoised)."""
    m = marker.strip().upper().replace(" ", "")
    for sep in ("::", "-", "/", "_"):
        if sep in m and sep != "::":
            m = m.replace(sep, "::")
    return m


@functools.lru_cache(maxsize=4096)
def has_low_level_band(method: str, marker: str) -> bool:
    """Whether §5's qPCR low-level MRD (< 2 %) applies: qPCR of NPM1 or a core-binding-factor fusion (memoised)."""
    if method != "qpcr":
        return False
    m = canonical_marker(marker)
    return m.startswith("NPM1") or m in ("RUNX1::RUNX1T1", "CBFB::MYH11")


def classify(method: str, marker: str, value_pct: Decimal | None, detected: bool,
             lod_pct: Decimal | None) -> tuple[str, bool, str]:
    """MRD status of one result.

    Returns
    -------
    (status, censored, reason)
        ``status`` is ``"negative"``, ``"low-level"``, ``"positive"`` or ``"not evaluable"``;
        ``censored`` is True for "not detected" and below-LOD values; ``reason`` names the rule.
    """
    threshold = FLOW_POSITIVE_PCT if method == "flow" else NGS_POSITIVE_PCT if method == "ngs" else None
    if not detected or value_pct is None or value_pct == 0 or (lod_pct is not None and value_pct < lod_pct):
        if threshold is not None and lod_pct is not None and lod_pct > threshold:
            # A negative from an assay that cannot see the positivity threshold proves nothing (§5 thresholds).
            return NOT_EVALUABLE, True, f"not detected, but LOD {lod_pct} % is above the {threshold} % threshold"
        lod = f" (LOD {lod_pct} %)" if lod_pct is not None else " (no LOD given)"
        return NEGATIVE, True, f"not detected / below LOD{lod}: negative (censored)"
    if threshold is not None:
        if value_pct >= threshold:
            return POSITIVE, False, f"{method} {value_pct} % >= {threshold} % (§5, ELN MRD 2021)"
        return NEGATIVE, False, f"{method} {value_pct} % < {threshold} % (§5, ELN MRD 2021)"
    if has_low_level_band(method, marker):
        if value_pct < QPCR_LOW_LEVEL_BELOW_PCT:
            return LOW_LEVEL, False, f"qPCR {marker} {value_pct} % < 2 %: low-level MRD (§5, ELN MRD 2021)"
        return POSITIVE, False, f"qPCR {marker} {value_pct} % >= 2 % (§5, ELN MRD 2021)"
    return POSITIVE, False, f"qPCR {marker} detected at {value_pct} % (no low-level band for this marker)"


def unit_mix_jump(prev_pct: Decimal, prev_factor: Decimal, value_pct: Decimal, factor: Decimal) -> Decimal | None:
    """The jump between two consecutive results of a series when the second looks entered in the wrong unit.

    Suspected when the two were reported in different units (``prev_factor`` and ``factor`` convert each to
    %), the values in % differ by at least :data:`UNIT_MIX_RATIO` either way, and the second number as
    typed, read in the first one's unit, would be closer to the first (the unit explains the jump).

    Parameters
    ----------
    prev_pct, value_pct
        The two quantified values in % (> 0), in date order.
    prev_factor, factor
        Their units' factors to % (:func:`~hemotwin.monitoring.units.mrd_unit_factor`).

    Returns
    -------
    Decimal or None
        The jump (the larger value over the smaller), or None when nothing is suspected.

    Examples
    --------
    >>> unit_mix_jump(Decimal("0.05"), Decimal(1), Decimal("0.00004"), Decimal("0.001")) == 1250  # 0.04 copies/1e5
    True
    >>> unit_mix_jump(Decimal("0.05"), Decimal(1), Decimal("0.04"), Decimal("0.001")) is None  # 40 copies/1e5
    True
    """
    if prev_factor == factor or prev_pct <= 0 or value_pct <= 0:
        return None
    jump = max(value_pct / prev_pct, prev_pct / value_pct)
    if jump < UNIT_MIX_RATIO:
        return None
    alt = value_pct * prev_factor / factor  # the second number read in the first result's unit
    return jump if max(alt / prev_pct, prev_pct / alt) < jump else None


def is_positive(status: str) -> bool:
    """Detected MRD for relapse purposes (qPCR low-level counts: §5 "conversion ... by any method")."""
    return status in (POSITIVE, LOW_LEVEL)


# ------------------------------------------------------------------------------------------- statistics


def t_cdf_abs(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with integer ``df`` (closed form; Abramowitz & Stegun 26.7.3-4)."""
    if t <= 0:
        return 0.0
    theta = math.atan(t / math.sqrt(df))
    s, c2 = math.sin(theta), math.cos(theta) ** 2
    if df % 2 == 1:
        if df == 1:
            return 2.0 * theta / math.pi
        term, acc = 1.0, 1.0
        for k in range(1, (df - 3) // 2 + 1):
            term *= c2 * (2 * k) / (2 * k + 1)
            acc += term
        return 2.0 / math.pi * (theta + s * math.cos(theta) * acc)
    term, acc = 1.0, 1.0
    for k in range(1, (df - 2) // 2 + 1):
        term *= c2 * (2 * k - 1) / (2 * k)
        acc += term
    return s * acc


@functools.lru_cache(maxsize=1024)
def t_quantile(p: float, df: int) -> float:
    """Two-sided critical value: the t with P(|T| <= t) = ``p`` (bisection on the exact CDF; ~1e-12)."""
    if not 0.0 < p < 1.0 or df < 1:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df >= 1, got p={p}, df={df}")
    lo, hi = 0.0, 1.0
    while t_cdf_abs(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf_abs(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


@dataclass(slots=True, frozen=True)
class Kinetics:
    """Log-linear fit of a rising MRD segment and the projected threshold crossing.

    ``slope_log10_per_day`` and ``doubling_days`` are point estimates; ``*_ci`` are t-based intervals on
    the slope (``None`` bound = unbounded: the slope interval reaches 0). ``two_point`` flags an
    estimate from only two positive samples (no interval). Dates are ISO strings in JSON.
    """

    method: str
    marker: str
    tissue: str
    as_of: date
    n_points: int
    first_date: date
    slope_log10_per_day: float
    slope_ci: tuple[float, float] | None
    doubling_days: float | None
    doubling_days_ci: tuple[float | None, float | None] | None
    two_point: bool
    threshold_pct: float | None
    projected_date: date | None
    projected_date_ci: tuple[date | None, date | None] | None
    already_above: bool
    flags: tuple[str, ...]


def fit_rising(days: list[float], log10v: list[float], *, level: float = 0.95) -> dict[str, object]:
    """Ordinary least squares of log10(MRD) on days; t-based interval of the slope (n >= 3)."""
    n = len(days)
    mx, my = sum(days) / n, sum(log10v) / n
    sxx = sum((x - mx) ** 2 for x in days)
    sxy = sum((x - mx) * (y - my) for x, y in zip(days, log10v, strict=True))
    b = sxy / sxx
    a = my - b * mx
    ci = None
    if n >= 3:
        ssr = sum((y - (a + b * x)) ** 2 for x, y in zip(days, log10v, strict=True))
        se = math.sqrt(ssr / (n - 2) / sxx)
        tq = t_quantile(level, n - 2)
        ci = (b - tq * se, b + tq * se)
    return {"a": a, "b": b, "ci": ci, "mx": mx}


def _doubling(b: float) -> float | None:
    return LOG10_2 / b if b > 0 else None


def rising_kinetics(points: list[tuple[date, Decimal | None, bool]], *, method: str, marker: str, tissue: str,
                    threshold_pct: Decimal | None, level: float = 0.95) -> Kinetics | None:
    """Kinetics of the current rising segment of one MRD series (data up to its last point only).

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
    vals = kinetics_values(points, threshold_pct=threshold_pct, level=level)
    return None if vals is None else Kinetics(method, marker, tissue, *vals)


def kinetics_values(points: list[tuple[date, Decimal | None, bool]], *, threshold_pct: Decimal | None,
                    level: float = 0.95, logs: list[float | None] | None = None) -> tuple | None:  # type: ignore[type-arg]
    """The fields of :func:`rising_kinetics`'s :class:`Kinetics` after ``(method, marker, tissue)``, or None.

    The monitoring engine calls this on every rising MRD sample and needs only a few fields, so no record is
    built here. ``logs`` (optional) holds ``math.log10(float(value))`` for each point of ``points`` whose value is
    quantified and > 0 (anything for the others): the same numbers, computed once per point.
    """
    # The trailing run of quantified positive points (a censored, missing or zero value ends a segment).
    end = len(points)
    start = end
    while start > 0:
        _, v, cens = points[start - 1]
        if cens or v is None or v <= 0:
            break
        start -= 1
    if end - start < 2:
        return None
    # The rise starts at the lowest value of the trailing positive run (its nadir; the last one on ties).
    i0, low = start, points[start][1]
    for i in range(start + 1, end):
        v = points[i][1]
        if v <= low:  # type: ignore[operator]
            i0, low = i, v
    if end - i0 < 2 or points[end - 1][1] <= low:  # type: ignore[operator]
        return None
    d0 = points[i0][0]
    xs = [float((points[i][0] - d0).days) for i in range(i0, end)]
    if logs is None:
        ys = [math.log10(float(points[i][1])) for i in range(i0, end)]  # type: ignore[arg-type]
    else:
        ys = logs[i0:end]
    fit = fit_rising(xs, ys, level=level)  # type: ignore[arg-type]
    b, ci = float(fit["b"]), fit["ci"]
    flags: list[str] = []
    n = end - i0
    two_point = n == 2
    if two_point:
        flags.append("two-point estimate (needs >= 3 positive points for an interval)")
    if b <= 0:
        return None
    dbl = _doubling(b)
    dbl_ci = None
    if ci is not None:
        lo_b, hi_b = ci  # type: ignore[misc]
        dbl_ci = (_doubling(hi_b), _doubling(lo_b))
        if lo_b <= 0:
            flags.append("slope interval includes 0: the rise is not established at this confidence")
    last_d, last_v = points[end - 1][0], points[end - 1][1]
    proj = proj_ci = None
    above = False
    thr = None
    if threshold_pct is not None:
        thr = float(threshold_pct)
        if last_v >= threshold_pct:  # type: ignore[operator]
            above = True
        else:
            # Projected from the last measured value (below the threshold, so gap > 0) at the fitted rate: the
            # date and both bounds are then on or after the last sample, and early <= projected <= late since
            # lo_b <= b <= hi_b. Anchored at the fitted line instead, a steep fit through a low first point can
            # run above the threshold before the last sample (gap < 0): a crossing dated before its alert, and
            # an interval whose lower bound is after its upper bound.
            y_last = math.log10(float(last_v)) if logs is None else logs[end - 1]  # type: ignore[arg-type]
            gap = math.log10(thr) - y_last  # type: ignore[operator]
            proj = days_after(last_d, gap / b)
            if ci is not None:
                lo_b, hi_b = ci  # type: ignore[misc]
                early = days_after(last_d, gap / hi_b) if hi_b > 0 else None
                late = days_after(last_d, gap / lo_b) if lo_b > 0 else None
                proj_ci = (early, late)
    return (last_d, n, d0, b, ci, dbl, dbl_ci, two_point, thr, proj, proj_ci, above, tuple(flags))


def days_after(day: date, days: float) -> date | None:
    """``day`` + ``round(days)`` days, or None when that lies beyond the calendar (a near-flat slope: unbounded)."""
    if not math.isfinite(days) or round(days) > (date.max - day).days:
        return None
    return day + timedelta(days=round(days))


def log10_reduction(baseline_pct: Decimal | None, value_pct: Decimal | None, censored: bool,
                    lod_pct: Decimal | None) -> tuple[float | None, bool]:
    """log10(baseline / value); for a censored value the bound log10(baseline / LOD) (``True`` = lower bound)."""
    if baseline_pct is None or baseline_pct <= 0:
        return None, False
    if censored or value_pct is None or value_pct <= 0:
        if lod_pct is None or lod_pct <= 0:
            return None, True
        return math.log10(float(baseline_pct)) - math.log10(float(lod_pct)), True
    return math.log10(float(baseline_pct)) - math.log10(float(value_pct)), False
