"""IPSS-R (Greenberg et al., Blood 2012;120:2454; docs/clinical_rules.md §6).

Points (docs/clinical_rules.md §6 table, boundaries exact):

- cytogenetics: very good 0, good 1, intermediate 2, poor 3, very poor 4;
- bone-marrow blasts: <= 2 % 0; > 2 to < 5 % 1; 5-10 % 2; > 10 % 3;
- haemoglobin: >= 10 g/dL 0; 8 to < 10 1; < 8 1.5;
- platelets: >= 100 x10^9/L 0; 50 to < 100 0.5; < 50 1;
- ANC: >= 0.8 x10^9/L 0; < 0.8 0.5.

Categories (right-closed): Very Low <= 1.5 < Low <= 3 < Intermediate <= 4.5 < High <= 6 < Very High.
The published calculator (papaemmelab/ipssm-api ``computeIpssr``) uses the same cut-points.

With an input missing the score is ``None`` and the result gives the lowest and highest scores the
missing inputs allow (``score_best`` / ``score_worst``), so a category that cannot change is still known;
one that can is *undetermined* (no category; the range and the missing inputs that decide it are given).
"""

from __future__ import annotations

import math

import numpy as np

from hemotwin.prognosis.cytogenetics import IPSSR_CYTO_CODE
from hemotwin.prognosis.patient import ScoreResult

IPSSR_CATEGORIES: tuple[str, ...] = ("Very Low", "Low", "Intermediate", "High", "Very High")
#: Right-closed upper bounds of the first four categories (docs/clinical_rules.md §6).
IPSSR_CUTS = np.array([1.5, 3.0, 4.5, 6.0])
_CITE = "IPSS-R, Greenberg et al. 2012; docs/clinical_rules.md §6"
_CYTO_NAMES = {v: k.replace("_", " ") for k, v in IPSSR_CYTO_CODE.items()}
#: (lowest, highest) points of each variable, for the range when it is missing.
_RANGE = {"cytogenetics": (0.0, 4.0), "bm_blast": (0.0, 3.0), "hb": (0.0, 1.5), "plt": (0.0, 1.0), "anc": (0.0, 0.5)}


def blast_points(b: np.ndarray) -> np.ndarray:
    """<= 2 % -> 0; > 2 to < 5 % -> 1; 5-10 % -> 2; > 10 % -> 3 (NaN stays NaN)."""
    b = np.asarray(b, dtype=float)
    p = np.select([b <= 2, b < 5, b <= 10, b > 10], [0.0, 1.0, 2.0, 3.0], default=math.nan)
    return np.where(np.isnan(b), math.nan, p)


def hb_points(h: np.ndarray) -> np.ndarray:
    """>= 10 g/dL -> 0; 8 to < 10 -> 1; < 8 -> 1.5."""
    h = np.asarray(h, dtype=float)
    return np.where(np.isnan(h), math.nan, np.select([h >= 10, h >= 8], [0.0, 1.0], default=1.5))


def plt_points(p: np.ndarray) -> np.ndarray:
    """>= 100 x10^9/L -> 0; 50 to < 100 -> 0.5; < 50 -> 1."""
    p = np.asarray(p, dtype=float)
    return np.where(np.isnan(p), math.nan, np.select([p >= 100, p >= 50], [0.0, 0.5], default=1.0))


def anc_points(a: np.ndarray) -> np.ndarray:
    """>= 0.8 x10^9/L -> 0; < 0.8 -> 0.5."""
    a = np.asarray(a, dtype=float)
    return np.where(np.isnan(a), math.nan, np.where(a >= 0.8, 0.0, 0.5))


def ipssr_category_index(score: np.ndarray) -> np.ndarray:
    """Category index 0-4 (right-closed cuts); -1 where the score is NaN."""
    s = np.asarray(score, dtype=float)
    idx = np.searchsorted(IPSSR_CUTS, np.where(np.isnan(s), 0.0, s), side="left")
    return np.where(np.isnan(s), -1, idx)


def ipssr_arrays(cyto_code: np.ndarray, bm_blast: np.ndarray, hb: np.ndarray, plt: np.ndarray,
                 anc: np.ndarray) -> dict[str, np.ndarray]:
    """Vectorised IPSS-R.

    Returns
    -------
    dict
        ``points`` (5 x n, NaN where missing), ``score`` (NaN if any input missing), ``low`` and
        ``high`` (score range over the missing inputs), ``category`` (index into
        :data:`IPSSR_CATEGORIES`, -1 where not known) and ``category_low`` / ``category_high``
        (the categories of ``low`` and ``high``).
    """
    pts = np.vstack([np.asarray(cyto_code, dtype=float), blast_points(bm_blast), hb_points(hb), plt_points(plt),
                     anc_points(anc)])
    lo = np.array([r[0] for r in _RANGE.values()])[:, None]
    hi = np.array([r[1] for r in _RANGE.values()])[:, None]
    low = np.where(np.isnan(pts), lo, pts).sum(axis=0)
    high = np.where(np.isnan(pts), hi, pts).sum(axis=0)
    score = np.where(np.isnan(pts).any(axis=0), math.nan, pts.sum(axis=0))
    cat = ipssr_category_index(score)
    same = ipssr_category_index(low) == ipssr_category_index(high)
    # A category that every value of the missing inputs leaves unchanged is still reported.
    cat = np.where((cat < 0) & same, ipssr_category_index(low), cat)
    return {"points": pts, "score": score, "low": low, "high": high, "category": cat,
            "category_low": ipssr_category_index(low), "category_high": ipssr_category_index(high)}


def ipssr(*, cyto_group: str | None, bm_blast: float | None, hb: float | None, plt: float | None,
          anc: float | None) -> ScoreResult:
    """IPSS-R of one patient, with the points of each variable as the rules that fired.

    Parameters
    ----------
    cyto_group
        IPSS-R cytogenetic group (``very_good`` ... ``very_poor``), or None if unknown.
    bm_blast, hb, plt, anc
        Bone-marrow blasts %, haemoglobin g/dL, platelets and ANC x10^9/L; None if unknown.

    Examples
    --------
    >>> r = ipssr(cyto_group="good", bm_blast=5.0, hb=9.9, plt=50.0, anc=0.8)
    >>> r.score, r.category
    (4.5, 'Intermediate')
    """
    nan = math.nan
    code = IPSSR_CYTO_CODE.get(cyto_group, nan) if cyto_group else nan
    arr = ipssr_arrays(np.array([code]), np.array([nan if bm_blast is None else bm_blast]),
                       np.array([nan if hb is None else hb]), np.array([nan if plt is None else plt]),
                       np.array([nan if anc is None else anc]))
    return ipssr_result(arr, 0)


#: Variable -> the input a user supplies for it (deciding inputs of an undetermined category).
_INPUTS = {"cytogenetics": "karyotype", "bm_blast": "marrow blasts", "hb": "haemoglobin", "plt": "platelets",
           "anc": "ANC"}
_NAMES = list(_RANGE)
_WIDEST_FIRST = sorted(_NAMES, key=lambda v: _RANGE[v][0] - _RANGE[v][1])


def ipssr_status(arr: dict[str, np.ndarray], i: int, *, karyotype: str = "karyotype") -> tuple[str, list[str]]:
    """``(reason, deciding inputs)`` of row ``i``; ``("", [])`` when its category is determined.

    The deciding inputs are the missing variables, widest point range first; ``karyotype`` names the
    karyotype among them (e.g. ``"karyotype (unreadable)"``).
    """
    if int(arr["category"][i]) >= 0:
        return "", []
    lo, hi = float(arr["low"][i]), float(arr["high"][i])
    c_lo, c_hi = (IPSSR_CATEGORIES[int(arr[k][i])] for k in ("category_low", "category_high"))
    missing = np.isnan(arr["points"][:, i]).tolist()
    deciding = [karyotype if v == "cytogenetics" else _INPUTS[v] for v in _WIDEST_FIRST if missing[_NAMES.index(v)]]
    return f"{c_lo} to {c_hi} over the missing inputs (score {lo:g}-{hi:g})", deciding


def ipssr_result(arr: dict[str, np.ndarray], i: int, *, karyotype: str = "karyotype") -> ScoreResult:
    """The :class:`ScoreResult` of row ``i`` of :func:`ipssr_arrays` (``karyotype``: see :func:`ipssr_status`)."""
    names = ("cytogenetics", "bm_blast", "hb", "plt", "anc")
    labels = {"cytogenetics": "cytogenetic group", "bm_blast": "BM blasts", "hb": "haemoglobin",
              "plt": "platelets", "anc": "ANC"}
    rules, missing = [], []
    for k, name in enumerate(names):
        p = arr["points"][k, i]
        if math.isnan(p):
            missing.append(f"{labels[name]} (IPSS-R; {_RANGE[name][0]:g}-{_RANGE[name][1]:g} points)")
        else:
            what = _CYTO_NAMES[int(p)] if name == "cytogenetics" else ""
            rules.append(f"{labels[name]}{' ' + what if what else ''}: {p:g} point(s) ({_CITE})")
    score = arr["score"][i]
    cat = int(arr["category"][i])
    lo, hi = float(arr["low"][i]), float(arr["high"][i])
    if not math.isnan(score):
        rules.append(f"total {score:g} -> {IPSSR_CATEGORIES[cat]} (cuts 1.5/3/4.5/6, right-closed; {_CITE})")
    reason, deciding = ipssr_status(arr, i, karyotype=karyotype)
    return ScoreResult(
        name="IPSS-R", category=IPSSR_CATEGORIES[cat] if cat >= 0 else None,
        category_estimate=IPSSR_CATEGORIES[cat] if cat >= 0 else None, determined=cat >= 0, reason=reason,
        deciding_inputs=deciding,
        score=None if math.isnan(score) else float(score),
        score_best=lo if missing else float(score), score_worst=hi if missing else float(score),
        category_best=IPSSR_CATEGORIES[int(arr["category_low"][i])],
        category_worst=IPSSR_CATEGORIES[int(arr["category_high"][i])],
        rules=rules, missing=missing, complete=not missing)
