"""IPSS-M (Bernard et al., NEJM Evidence 2022; docs/clinical_rules.md §7).

score = sum_j beta_j * (x_j - mean_j) / ln 2, rounded to 2 decimals (log2 hazard ratio against the
average patient of the development cohort). Coefficients, means, best and worst values are those of
docs/clinical_rules.md §7, identical to the reference implementation (R package ``ipssm``,
github.com/papaemmelab/ipssm, ``IPSSMmain``/``IPSSMprocess``/``calculateNres2``). Categories are
right-closed: Very Low <= -1.5 < Low <= -0.5 < Moderate Low <= 0 < Moderate High <= 0.5 < High <= 1.5
< Very High.

Derived variables (``IPSSMprocess``):

- ``SF3B1_5q`` = SF3B1 mutated with del(5q), no -7/del(7q), not complex;
- ``SF3B1_alpha`` = SF3B1 mutated, not SF3B1_5q, none of SRSF2, STAG2, BCOR, BCORL1, RUNX1, NRAS;
- ``TP53multi`` = see :func:`hemotwin.prognosis.mutations.tp53_multihit`;
- ``HB`` clamped to [4, 20]; ``PLT`` = min(PLT, 250) / 100; ``BLAST`` = min(blasts, 20) / 5;
- ``NRES2`` with S sequenced, M unsequenced residual genes and Ns mutated: best min(Ns, 2), worst
  min(Ns + M, 2), mean min(Ns, 2) + max(((2 - Ns) / 2) * (M / (S + M)) * 0.388, 0).

Missing values are imputed three times (best / mean / worst) as in ``IPSSMmain``. Derived variables
use three-valued logic, so that, e.g., an unsequenced SF3B1 in a patient without del(5q) still
gives ``SF3B1_5q = 0``; this agrees with the JavaScript calculator (papaemmelab/ipssm-api
``processInputs``) wherever that one decides, and with the R package whenever inputs are complete.
The reported score is the mean scenario, as in both reference implementations; its category is
reported as *the* category only when the best and worst scenarios agree on it (otherwise the
result is undetermined and names the missing inputs that decide it, largest effect first).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

from hemotwin.prognosis.mutations import IPSSM_RESIDUAL_GENES, k_and, k_not, k_or, tp53_multihit
from hemotwin.prognosis.patient import ScoreResult

IPSSM_CATEGORIES: tuple[str, ...] = ("Very Low", "Low", "Moderate Low", "Moderate High", "High", "Very High")
IPSSM_CUTS = np.array([-1.5, -0.5, 0.0, 0.5, 1.5])

#: variable -> (beta, mean, best, worst) (docs/clinical_rules.md §7; ``ipssm`` R package ``IPSSMmain`` defaults).
IPSSM_BETAS: dict[str, tuple[float, float, float, float]] = {
    "HB": (-0.171, 9.87, 20.0, 4.0),
    "PLT": (-0.222, 1.41, 2.5, 0.0),
    "BLAST": (0.352, 0.922, 0.0, 4.0),
    "CYTO": (0.287, 1.39, 0.0, 4.0),
    "TP53multi": (1.18, 0.071, 0.0, 1.0),
    "FLT3": (0.798, 0.0108, 0.0, 1.0),
    "MLL_PTD": (0.798, 0.0247, 0.0, 1.0),
    "SF3B1_5q": (0.504, 0.0166, 0.0, 1.0),
    "NPM1": (0.430, 0.0112, 0.0, 1.0),
    "RUNX1": (0.423, 0.126, 0.0, 1.0),
    "NRAS": (0.417, 0.0362, 0.0, 1.0),
    "ETV6": (0.391, 0.0216, 0.0, 1.0),
    "IDH2": (0.379, 0.0429, 0.0, 1.0),
    "CBL": (0.295, 0.0473, 0.0, 1.0),
    "EZH2": (0.270, 0.0588, 0.0, 1.0),
    "U2AF1": (0.247, 0.0866, 0.0, 1.0),
    "SRSF2": (0.239, 0.158, 0.0, 1.0),
    "DNMT3A": (0.221, 0.161, 0.0, 1.0),
    "ASXL1": (0.213, 0.252, 0.0, 1.0),
    "KRAS": (0.202, 0.0271, 0.0, 1.0),
    "SF3B1_alpha": (-0.0794, 0.186, 1.0, 0.0),
}
NRES2_BETA = 0.231
NRES2_MEAN = 0.388
_GENE_VARS = ("NPM1", "RUNX1", "NRAS", "ETV6", "IDH2", "CBL", "EZH2", "U2AF1", "SRSF2", "DNMT3A", "ASXL1", "KRAS")
_CITE = "IPSS-M, Bernard et al. 2022; docs/clinical_rules.md §7"
_LN2 = math.log(2.0)


def round2(x: np.ndarray) -> np.ndarray:
    """Round to 2 decimals element by element with Python's correctly rounded ``round`` (as R's ``round``)."""
    # + 0.0 turns a rounded -0.0 into 0.0, so that no score prints as "-0.00".
    return np.array([math.nan if math.isnan(v) else round(float(v), 2) + 0.0 for v in np.asarray(x, dtype=float)])


def ipssm_category_index(score: np.ndarray) -> np.ndarray:
    """Category index 0-5 (right-closed cuts); -1 where NaN."""
    s = np.asarray(score, dtype=float)
    idx = np.searchsorted(IPSSM_CUTS, np.where(np.isnan(s), 0.0, s), side="left")
    return np.where(np.isnan(s), -1, idx)


def ipssm_variables(F: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Model variables (1.0 / 0.0 / value, NaN = missing) from a feature dict.

    ``F`` keys read: ``HB``, ``PLT``, ``BM_BLAST``, ``CYTO_CODE``, ``K_DEL5Q``, ``K_MINUS7``,
    ``K_DEL7Q``, ``K_COMPLEX``, ``K_MINUS17_ABN17P``, ``MUT_<GENE>``, ``FLT3_ITD_TKD``, ``KMT2A_PTD``,
    ``TP53_N``, ``TP53_MAXVAF`` and, if present, ``TP53_LOH`` (copy-number LOH known from elsewhere).
    """
    hb = np.asarray(F["HB"], dtype=float)
    n = len(hb)
    nan = np.full(n, math.nan)
    g = lambda name: np.asarray(F.get(f"MUT_{name}", nan), dtype=float)  # noqa: E731
    del7 = k_or(F.get("K_MINUS7", nan), F.get("K_DEL7Q", nan))
    sf3b1 = g("SF3B1")
    sf3b1_5q = k_and(sf3b1, F.get("K_DEL5Q", nan), k_not(del7), k_not(F.get("K_COMPLEX", nan)))
    alpha = k_and(sf3b1, k_not(sf3b1_5q), *(k_not(g(x)) for x in ("SRSF2", "STAG2", "BCOR", "BCORL1", "RUNX1",
                                                                     "NRAS")))
    multi = tp53_multihit(F.get("TP53_N", nan), F.get("TP53_MAXVAF", nan), F.get("K_MINUS17_ABN17P", nan))
    if "TP53_LOH" in F:
        # Copy-neutral LOH from arrays/sequencing turns a single hit into multi-hit (IPSSMprocess TP53loh).
        loh = np.asarray(F["TP53_LOH"], dtype=float)
        multi = np.where((np.asarray(F.get("TP53_N", nan)) == 1) & (loh == 1), 1.0, multi)
    plt = np.asarray(F["PLT"], dtype=float)
    blast = np.asarray(F["BM_BLAST"], dtype=float)
    v = {
        "HB": np.clip(hb, 4.0, 20.0),
        "PLT": np.minimum(plt, 250.0) / 100.0,
        "BLAST": np.minimum(blast, 20.0) / 5.0,
        "CYTO": np.asarray(F["CYTO_CODE"], dtype=float),
        "TP53multi": multi,
        "FLT3": np.asarray(F.get("FLT3_ITD_TKD", nan), dtype=float),
        "MLL_PTD": np.asarray(F.get("KMT2A_PTD", nan), dtype=float),
        "SF3B1_5q": sf3b1_5q,
        **{x: g(x) for x in _GENE_VARS},
        "SF3B1_alpha": alpha,
    }
    # What makes a derived variable unknown: the gene itself, or (gene known) the karyotype.
    v["_SF3B1_UNKNOWN"] = np.isnan(sf3b1).astype(float)
    v["_SF3B1_5Q_UNKNOWN"] = np.isnan(sf3b1_5q).astype(float)
    v["_TP53_UNKNOWN"] = np.isnan(np.asarray(F.get("TP53_N", nan), dtype=float)).astype(float)
    res = np.vstack([g(x) for x in IPSSM_RESIDUAL_GENES])
    v["_NS"] = np.nansum(res == 1.0, axis=0).astype(float)
    v["_M"] = np.isnan(res).sum(axis=0).astype(float)
    v["_S"] = (~np.isnan(res)).sum(axis=0).astype(float)
    return v


def nres2(ns: np.ndarray, m: np.ndarray, s: np.ndarray) -> dict[str, np.ndarray]:
    """NRES2 under the three scenarios (docs/clinical_rules.md §7; ``ipssm`` ``calculateNres2``)."""
    ns, m, s = (np.asarray(a, dtype=float) for a in (ns, m, s))
    return {"best": np.minimum(ns, 2.0), "worst": np.minimum(ns + m, 2.0),
            "mean": np.minimum(ns, 2.0) + np.maximum(((2.0 - ns) / 2.0) * (m / (s + m)) * NRES2_MEAN, 0.0)}


def ipssm_arrays(F: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Vectorised IPSS-M: ``score``/``best``/``worst`` (rounded), their category indices, contributions.

    Returns
    -------
    dict
        ``score``, ``best``, ``worst`` (2 decimals), ``category``, ``category_best``,
        ``category_worst`` (indices into :data:`IPSSM_CATEGORIES`), ``contrib`` (variables x n, mean
        scenario, unrounded), ``missing`` (variables x n booleans, NRES2 last) and ``variables``.
    """
    v = ipssm_variables(F)
    names = list(IPSSM_BETAS)
    x = np.vstack([v[k] for k in names])
    beta = np.array([IPSSM_BETAS[k][0] for k in names])[:, None]
    mean = np.array([IPSSM_BETAS[k][1] for k in names])[:, None]
    best = np.array([IPSSM_BETAS[k][2] for k in names])[:, None]
    worst = np.array([IPSSM_BETAS[k][3] for k in names])[:, None]
    miss = np.isnan(x)
    nr = nres2(v["_NS"], v["_M"], v["_S"])
    out: dict[str, np.ndarray] = {}
    for scen, fill in (("best", best), ("mean", mean), ("worst", worst)):
        xs = np.where(miss, np.broadcast_to(fill, x.shape), x)
        contrib = (xs - mean) * beta / _LN2
        c_nres = (nr[scen] - NRES2_MEAN) * NRES2_BETA / _LN2
        raw = contrib.sum(axis=0) + c_nres
        key = "score" if scen == "mean" else scen
        out[key] = round2(raw)
        out["category" if scen == "mean" else f"category_{scen}"] = ipssm_category_index(out[key])
        if scen == "mean":
            out["contrib"] = np.vstack([contrib, c_nres[None, :]])
            out["nres2"] = nr["mean"]
    out["missing"] = np.vstack([miss, (v["_M"] > 0)[None, :]])
    out["variables"] = np.vstack([x, nr["mean"][None, :]])
    out["names"] = np.array([*names, "NRES2"], dtype=object)
    out["n_residual_unsequenced"] = v["_M"]
    out["n_residual_mutated"] = v["_NS"]
    for key in ("_SF3B1_UNKNOWN", "_SF3B1_5Q_UNKNOWN", "_TP53_UNKNOWN"):
        out[key.strip("_").lower()] = v[key] == 1.0
    return out


#: Variable -> the input a user supplies for it (the karyotype, and genes whose derived variables need it, apart).
_INPUT_OF = {"HB": "haemoglobin", "PLT": "platelets", "BLAST": "marrow blasts", "FLT3": "FLT3",
             "MLL_PTD": "KMT2A (PTD)", **{g: g for g in _GENE_VARS}}
#: Largest change of the score (log2 hazard ratio) each variable can bring, between its best and worst values.
_SWING = {k: abs(beta * (worst - best)) / _LN2 for k, (beta, _mean, best, worst) in IPSSM_BETAS.items()}


def _input_of(name: str, causes: tuple[bool, bool, bool], karyotype: str) -> str:
    """The input behind a missing variable; ``causes``: TP53, SF3B1 and SF3B1_5q unknown."""
    tp53_unknown, sf3b1_unknown, sf3b1_5q_unknown = causes
    if name == "CYTO":
        return karyotype
    if name == "TP53multi":
        return "TP53" if tp53_unknown else karyotype  # one TP53 hit: -17/17p decides multi-hit
    if name in ("SF3B1_5q", "SF3B1_alpha"):
        if sf3b1_unknown:
            return "SF3B1"
        if sf3b1_5q_unknown:
            return karyotype  # SF3B1 known: del(5q), -7/del(7q) and complexity decide
        return "SF3B1 co-mutations (SRSF2, STAG2, BCOR, BCORL1, RUNX1, NRAS)"
    return _INPUT_OF[name]


@functools.lru_cache(maxsize=4096)
def _deciding(missing: int, causes: tuple[bool, bool, bool], ns: float, m: float, karyotype: str) -> tuple[str, ...]:
    """Deciding inputs of one pattern of missing variables (bit k of ``missing`` = variable k; NRES2 last).

    Cached: a cohort repeats a few patterns, so each is worked out once.
    """
    names = [*IPSSM_BETAS, "NRES2"]
    swing: dict[str, float] = {}
    for k, name in enumerate(names):
        if not missing >> k & 1:
            continue
        if name == "NRES2":
            label = f"{int(m)} residual gene(s) of NRES2 not sequenced"
            change = (min(ns + m, 2.0) - min(ns, 2.0)) * NRES2_BETA / _LN2
        else:
            label, change = _input_of(name, causes, karyotype), _SWING[name]
        swing[label] = swing.get(label, 0.0) + change
    return tuple(label for label, c in sorted(swing.items(), key=lambda kv: -kv[1]) if c > 0)


def ipssm_statuses(arr: dict[str, np.ndarray], rows: Sequence[int] | np.ndarray,
                   karyotype: Sequence[str]) -> list[tuple[str, list[str]]]:
    """:func:`ipssm_status` of many rows at once (``karyotype``: one label per row)."""
    rows = np.asarray(rows, dtype=np.intp)
    bits = (arr["missing"][:, rows].T.astype(np.int64) << np.arange(arr["missing"].shape[0])).sum(axis=1)
    causes = np.vstack([arr[k][rows] for k in ("tp53_unknown", "sf3b1_unknown", "sf3b1_5q_unknown")]).T.tolist()
    cols = {k: arr[k][rows].tolist() for k in ("category_best", "category_worst", "best", "worst", "score",
                                               "n_residual_mutated", "n_residual_unsequenced")}
    out: list[tuple[str, list[str]]] = []
    for j, code in enumerate(bits.tolist()):
        cb, cw = int(cols["category_best"][j]), int(cols["category_worst"][j])
        if cb == cw:
            out.append(("", []))
            continue
        deciding = _deciding(code, tuple(causes[j]), cols["n_residual_mutated"][j], cols["n_residual_unsequenced"][j],
                             karyotype[j])
        reason = (f"{IPSSM_CATEGORIES[cb]} to {IPSSM_CATEGORIES[cw]} over the missing inputs (score "
                  f"{cols['best'][j]:.2f} to {cols['worst'][j]:.2f}; mean-imputed {cols['score'][j]:.2f})")
        out.append((reason, list(deciding)))
    return out


def ipssm_status(arr: dict[str, np.ndarray], i: int, *, karyotype: str = "karyotype") -> tuple[str, list[str]]:
    """``(reason, deciding inputs)`` of row ``i``; ``("", [])`` when best and worst share a category.

    The deciding inputs are the missing ones, largest possible change of the score first (each
    variable between its best and worst value, summed per input); ``karyotype`` names the karyotype
    among them (e.g. ``"karyotype (unreadable)"``).
    """
    return ipssm_statuses(arr, [i], [karyotype])[0]


def ipssm_result(arr: dict[str, np.ndarray], i: int, *, karyotype: str = "karyotype") -> ScoreResult:
    """The :class:`ScoreResult` of row ``i`` of :func:`ipssm_arrays`, contributions as the rules.

    The category is given when the best and worst scenarios share it; otherwise the result is
    undetermined (see :func:`ipssm_status`) and ``category_estimate`` keeps the mean-scenario category.
    """
    names = list(arr["names"])
    contrib = arr["contrib"][:, i]
    rules = []
    rest, n_rest = 0.0, 0
    for k in np.argsort(-np.abs(contrib), kind="stable"):
        c = float(contrib[k])
        name = names[k]
        if abs(c) < 0.05:  # small deviations from the average patient are summed, not listed one by one
            rest, n_rest = rest + c, n_rest + 1
            continue
        val = arr["variables"][k, i]
        shown = "missing, mean imputed" if arr["missing"][k, i] and name != "NRES2" else f"{val:.3g}"
        beta = NRES2_BETA if name == "NRES2" else IPSSM_BETAS[name][0]
        rules.append(f"{name} = {shown}: {c:+.2f} (beta {beta:g})")
    if n_rest:
        rules.append(f"{n_rest} other variable(s) near the average patient: {rest:+.2f} together")
    missing = []
    for k, name in enumerate(names):
        if arr["missing"][k, i]:
            if name == "NRES2":
                missing.append(f"NRES2: {int(arr['n_residual_unsequenced'][i])} residual gene(s) not sequenced")
            else:
                missing.append(name)
    s, b, w = (float(arr[k][i]) for k in ("score", "best", "worst"))
    cat, cb, cw = (int(arr[k][i]) for k in ("category", "category_best", "category_worst"))
    rules.append(f"score {s:.2f} -> {IPSSM_CATEGORIES[cat]} (cuts -1.5/-0.5/0/0.5/1.5, right-closed; {_CITE})")
    notes = [] if not missing else [f"best {b:.2f} ({IPSSM_CATEGORIES[cb]}) / worst {w:.2f} "
                                    f"({IPSSM_CATEGORIES[cw]}) over the missing inputs"]
    reason, deciding = ipssm_status(arr, i, karyotype=karyotype)
    return ScoreResult(name="IPSS-M", category=IPSSM_CATEGORIES[cat] if cb == cw else None,
                       category_estimate=IPSSM_CATEGORIES[cat], determined=cb == cw, reason=reason,
                       deciding_inputs=deciding, score=s, score_best=b, score_worst=w,
                       category_best=IPSSM_CATEGORIES[cb], category_worst=IPSSM_CATEGORIES[cw], rules=rules,
                       missing=missing, complete=b == w, notes=notes)
