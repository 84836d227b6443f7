"""Synthetic MDS/AML-like cohort with a known proportional-hazards survival model.

The generator writes the three tables of docs/clinical_rules.md §9 (clinical, molecular, target)
so that every piece of the prognosis layer (karyotype parser, ELN/IPSS scores, survival models,
``hemotwin cohort ...``) can be exercised end to end, and so that a fitted model can be checked
against the truth: survival is drawn from a Weibull proportional-hazards model whose log-hazard
ratios are stored in the returned metadata.

What is realistic and what is not
---------------------------------
Gene frequencies, co-occurrence (splicing factors mutually exclusive, SRSF2 with ASXL1/RUNX1/IDH2,
NPM1 with FLT3-ITD and DNMT3A, TP53 with complex karyotypes), VAF distributions and the karyotype
mix follow the published order of magnitude for MDS/secondary AML cohorts; they are *not* fitted to
any data set. Genomic coordinates are synthetic placeholders on the right chromosome. Centers differ
in case mix (blasts, TP53, age), follow-up length and censoring, which is what leave-centers-out
validation has to survive; by default centers do *not* change the hazard itself (no frailty), so the
planted model is exactly true in every center.

For research use only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hemotwin.errors import InputError, expected_of

__all__ = [
    "CLINICAL_COLUMNS",
    "DESIGN_COLUMN_OF",
    "MOLECULAR_COLUMNS",
    "TARGET_COLUMNS",
    "SurvivalEffects",
    "SyntheticCohort",
    "simulate_cohort",
    "write_cohort",
]

CLINICAL_COLUMNS = ["ID", "CENTER", "BM_BLAST", "WBC", "ANC", "MONOCYTES", "HB", "PLT", "CYTOGENETICS"]
MOLECULAR_COLUMNS = ["ID", "CHR", "START", "END", "REF", "ALT", "GENE", "PROTEIN_CHANGE", "EFFECT", "VAF", "DEPTH"]
TARGET_COLUMNS = ["ID", "OS_YEARS", "OS_STATUS"]


class SurvivalEffects(BaseModel):
    """Planted log-hazard ratios of the Weibull proportional-hazards model (natural log, per unit given).

    The covariates are the *true* patient state (before any karyotype string is garbled or a count
    goes missing), in the units a design matrix would use, so that a Cox model fitted on the tables
    should recover these numbers.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    TP53_MULTIHIT: float = Field(1.10, description="Multi-hit TP53 (IPSS-M definition), yes/no.")
    COMPLEX: float = Field(0.60, description="Complex karyotype (>= 3 abnormalities), yes/no.")
    BM_BLAST: float = Field(0.04, description="Per 1 % marrow blasts (0.20 per 5 %).")
    HB: float = Field(-0.12, description="Per g/dL haemoglobin.")
    PLT: float = Field(-0.0015, description="Per 1e9/L platelets (-0.15 per 100).")
    AGE: float = Field(0.03, description="Per year of age (0.30 per decade).")
    SF3B1: float = Field(-0.35, description="SF3B1 mutated (protective).")
    ASXL1: float = Field(0.30, description="ASXL1 mutated.")
    RUNX1: float = Field(0.35, description="RUNX1 mutated.")

    def as_dict(self) -> dict[str, float]:
        """Feature name -> planted log-hazard ratio."""
        return dict(self.model_dump())


class CohortConfig(BaseModel):
    """Everything that determines a synthetic cohort besides the seed (stored in its metadata)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n: int = Field(ge=2)
    n_centers: int = Field(ge=1, le=99)
    effects: SurvivalEffects = SurvivalEffects()
    weibull_shape: float = Field(1.1, gt=0, description="Weibull shape k of the baseline hazard.")
    median_os_years: float = Field(3.0, gt=0, description="Median OS of a patient with the cohort-mean risk.")
    garble_karyotype: float = Field(0.15, ge=0, le=1, description="Share of karyotypes written lower case.")
    free_text_karyotype: float = Field(0.04, ge=0, le=1, description="Share written as free text or blank.")
    missing_counts: float = Field(0.03, ge=0, le=1, description="Average share of missing blood counts.")
    age_column: bool = Field(True, description="Write AGE (years) to the clinical table.")


@dataclass(frozen=True)
class SyntheticCohort:
    """Tables in the §9 schema plus the hidden truth.

    Iterating yields ``(clinical, molecular, target)`` so that
    ``clinical, molecular, target = simulate_cohort(...)`` works.

    Attributes
    ----------
    clinical, molecular, target
        The three cohort tables (``ID`` is a column, not the index).
    truth
        Per-patient latent state: true covariates, linear predictor, event and censoring times.
    metadata
        Configuration, seed, planted effects, Weibull baseline and per-center parameters.
    """

    clinical: pd.DataFrame
    molecular: pd.DataFrame
    target: pd.DataFrame
    truth: pd.DataFrame
    metadata: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[pd.DataFrame]:
        return iter((self.clinical, self.molecular, self.target))


# --- genes ---------------------------------------------------------------------------------------
# gene -> (chromosome, synthetic start, base frequency among non-TP53 patients, share truncating,
#          hotspot protein changes). Frequencies are MDS/sAML orders of magnitude (IPSS-M cohort).
_GENES: dict[str, tuple[str, int, float, float, tuple[str, ...]]] = {
    "TET2": ("4", 106_100_000, 0.25, 0.75, ()),
    "ASXL1": ("20", 31_020_000, 0.20, 0.95, ("p.G646Wfs*12",)),
    "DNMT3A": ("2", 25_450_000, 0.15, 0.35, ("p.R882H", "p.R882C")),
    "RUNX1": ("21", 36_160_000, 0.08, 0.60, ("p.R201Q", "p.D198N")),
    "EZH2": ("7", 148_500_000, 0.05, 0.60, ()),
    "STAG2": ("X", 123_180_000, 0.06, 0.90, ()),
    "BCOR": ("X", 39_910_000, 0.04, 0.90, ()),
    "NRAS": ("1", 115_250_000, 0.04, 0.0, ("p.G12D", "p.G13D", "p.Q61K")),
    "KRAS": ("12", 25_380_000, 0.03, 0.0, ("p.G12D", "p.G12V")),
    "CBL": ("11", 119_150_000, 0.05, 0.10, ("p.C404Y", "p.Y371H")),
    "IDH2": ("15", 90_630_000, 0.04, 0.0, ("p.R140Q", "p.R172K")),
    "IDH1": ("2", 209_110_000, 0.03, 0.0, ("p.R132H", "p.R132C")),
    "ETV6": ("12", 11_800_000, 0.02, 0.50, ()),
    "WT1": ("11", 32_410_000, 0.02, 0.70, ()),
    "SETBP1": ("18", 42_530_000, 0.02, 0.0, ("p.D868N", "p.G870S")),
    "PHF6": ("X", 133_510_000, 0.02, 0.80, ()),
    "PPM1D": ("17", 58_740_000, 0.02, 0.95, ()),
    "GATA2": ("3", 128_200_000, 0.01, 0.30, ()),
    "CEBPA": ("19", 33_790_000, 0.01, 0.60, ()),
    "ZRSR2": ("X", 15_810_000, 0.0, 0.90, ()),  # drawn with the splicing factors below
    "SF3B1": ("2", 198_260_000, 0.0, 0.0, ("p.K700E", "p.K666N", "p.H662Q", "p.R625C")),
    "SRSF2": ("17", 74_730_000, 0.0, 0.0, ("p.P95H", "p.P95L", "p.P95R")),
    "U2AF1": ("21", 44_520_000, 0.0, 0.0, ("p.S34F", "p.Q157P")),
    "TP53": ("17", 7_570_000, 0.0, 0.20, ("p.R248Q", "p.R273H", "p.R175H", "p.Y220C", "p.G245S")),
    "NPM1": ("5", 170_830_000, 0.0, 1.0, ("p.W288Cfs*12",)),
    "FLT3": ("13", 28_600_000, 0.0, 0.0, ("p.D835Y",)),
    "KMT2A": ("11", 118_340_000, 0.0, 0.0, ()),
}
_AA = "ACDEFGHIKLMNPQRSTVWY"
_BASES = "ACGT"

# Abnormalities of complex karyotypes (TP53-type: 5q/7/17p losses dominate) with their flags.
_COMPLEX_POOL: list[tuple[str, dict[str, bool]]] = [
    ("del(5)(q13q33)", {"del5q": True}), ("-5", {"minus5": True}), ("-7", {"minus7": True}),
    ("del(7)(q22q36)", {"del7q": True}), ("-17", {"del17p": True}), ("del(17)(p11.2)", {"del17p": True}),
    ("+8", {"plus8": True}), ("-18", {}), ("del(12)(p12)", {}), ("-20", {}), ("add(3)(p21)", {}),
    ("+mar", {}), ("der(18)t(17;18)(q21;p11.2)", {}), ("-13", {}), ("+1", {}), ("del(20)(q11q13)", {}),
]
# Non-complex abnormal karyotypes: (abnormalities, relative weight within the abnormal non-complex ones).
_SIMPLE_KARYOTYPES: list[tuple[tuple[str, ...], float]] = [
    (("del(5)(q13q33)",), 0.060), (("-7",), 0.030), (("del(7)(q22q36)",), 0.015), (("+8",), 0.060),
    (("del(20)(q11.2q13.1)",), 0.040), (("-Y",), 0.030), (("del(11)(q14q23)",), 0.010),
    (("del(12)(p12p13)",), 0.010), (("i(17)(q10)",), 0.008), (("inv(3)(q21q26.2)",), 0.006),
    (("+19",), 0.005), (("del(5)(q13q33)", "+8"), 0.012), (("-7", "+8"), 0.008),
    (("del(20)(q11.2q13.1)", "+8"), 0.008), (("t(1;7)(p11;p11)",), 0.008), (("+21",), 0.010),
    (("del(9)(q13q22)",), 0.010), (("t(3;21)(q26.2;q22.1)",), 0.004), (("+mar",), 0.010),
    (("-7", "del(12)(p12p13)"), 0.006), (("t(11;16)(q23;p13.3)",), 0.003), (("-X",), 0.004),
    (("+14",), 0.004), (("del(13)(q12q14)",), 0.006), (("idic(X)(q13)",), 0.004),
]
_P_NORMAL_NON_COMPLEX = 0.62  # of non-complex patients; gives ~55 % normal overall
_FREE_TEXT = ["normal", "Normal karyotype", "complex", "failed", "no growth", "46,XX", "46,XY", "", " "]


def simulate_cohort(n: int, *, n_centers: int = 6, seed: int, effects: SurvivalEffects | dict | None = None,
                    weibull_shape: float = 1.1, median_os_years: float = 3.0, garble_karyotype: float = 0.15,
                    free_text_karyotype: float = 0.04, missing_counts: float = 0.03,
                    age_column: bool = True) -> SyntheticCohort:
    """Draw a synthetic multicenter MDS/AML-like cohort with known survival effects.

    Parameters
    ----------
    n
        Number of patients.
    n_centers
        Number of centers; each has its own case mix, follow-up length and censoring.
    seed
        Seed of the only random generator used; same seed, same tables.
    effects
        Planted log-hazard ratios (:class:`SurvivalEffects` or a dict of overrides).
    weibull_shape, median_os_years
        Weibull baseline: shape k, and the median OS of a patient whose linear predictor equals the
        cohort mean.
    garble_karyotype, free_text_karyotype
        Shares of karyotype strings written in lower case with stray spaces, and replaced by free
        text or blanks (the true cytogenetics stay in ``truth``).
    missing_counts
        Average share of missing values in each blood-count column (varies by center).
    age_column
        Write ``AGE`` (not part of the §9 schema) to the clinical table. Age carries a planted effect,
        so leaving it out makes the other fitted hazard ratios slightly attenuated (Cox models are not
        collapsible).

    Returns
    -------
    SyntheticCohort
        Unpacks as ``clinical, molecular, target``; ``.truth`` and ``.metadata`` hold the answer.

    Examples
    --------
    >>> clinical, molecular, target = simulate_cohort(200, n_centers=3, seed=0)
    >>> sorted(set(clinical.CENTER))
    ['C1', 'C2', 'C3']
    """
    if isinstance(effects, dict):
        effects = SurvivalEffects(**effects)
    try:
        cfg = CohortConfig(n=n, n_centers=n_centers, effects=effects or SurvivalEffects(),
                           weibull_shape=weibull_shape, median_os_years=median_os_years,
                           garble_karyotype=garble_karyotype, free_text_karyotype=free_text_karyotype,
                           missing_counts=missing_counts, age_column=age_column)
    except ValidationError as exc:  # -> project error naming the field
        err = exc.errors()[0]
        where = str(err["loc"][0]) if err.get("loc") else "simulate_cohort"
        raise InputError(where, err.get("input"), expected_of(err, known_fields=CohortConfig.model_fields)) from None
    rng = np.random.default_rng(seed)
    centers = _draw_centers(cfg, rng)
    center_idx = rng.choice(cfg.n_centers, size=n, p=centers["weight"].to_numpy())
    c = centers.iloc[center_idx].reset_index(drop=True)

    age = np.clip(rng.normal(c["age_mean"], 9.0), 18, 95).round(0)
    male = rng.random(n) < 0.6
    genes = _draw_genotype(n, rng, tp53_mult=c["tp53_mult"].to_numpy())
    kary = _draw_karyotypes(n, rng, genes=genes, male=male)
    counts = _draw_counts(n, rng, genes=genes, kary=kary, blast_shift=c["blast_shift"].to_numpy())
    molecular, tp53_multi = _draw_variants(rng, genes=genes, kary=kary)

    eff = cfg.effects
    x = pd.DataFrame({
        "TP53_MULTIHIT": tp53_multi.astype(float), "COMPLEX": kary["complex"].astype(float),
        "BM_BLAST": counts["BM_BLAST"], "HB": counts["HB"], "PLT": counts["PLT"], "AGE": age,
        "SF3B1": genes["SF3B1"].astype(float), "ASXL1": genes["ASXL1"].astype(float),
        "RUNX1": genes["RUNX1"].astype(float),
    })
    beta = pd.Series(eff.as_dict())
    lp = x[beta.index].to_numpy() @ beta.to_numpy()
    lp_center = float(lp.mean())
    k = cfg.weibull_shape
    # S(t | lp) = exp(-lam * exp(lp - lp_center) * t^k); lam puts the median at median_os_years.
    lam = np.log(2.0) / cfg.median_os_years ** k
    u = rng.random(n)
    t_event = (-np.log(u) / (lam * np.exp(lp - lp_center))) ** (1.0 / k)
    # Administrative censoring: uniform entry over the center's accrual window, closure after
    # accrual + minimum follow-up; plus independent exponential loss to follow-up.
    t_admin = c["min_followup"].to_numpy() + rng.random(n) * c["accrual"].to_numpy()
    t_loss = rng.exponential(1.0 / c["loss_rate"].to_numpy())
    t_obs = np.minimum.reduce([t_event, t_admin, t_loss])
    status = (t_event <= np.minimum(t_admin, t_loss)).astype(int)
    # Keep a strictly positive, day-resolution follow-up as registries record it.
    os_years = np.maximum(np.round(t_obs * 365.25) / 365.25, 1 / 365.25).round(4)

    ids = np.array([f"P{i + 1:05d}" for i in range(n)])
    clinical = pd.DataFrame({"ID": ids, "CENTER": c["name"].to_numpy()})
    blanks = _missing_masks(n, rng, c["missing"].to_numpy(), cols=["BM_BLAST", "WBC", "ANC", "MONOCYTES", "HB",
                                                                   "PLT"])
    for col in ["BM_BLAST", "WBC", "ANC", "MONOCYTES", "HB", "PLT"]:
        clinical[col] = np.where(blanks[col], np.nan, counts[col])
    clinical["CYTOGENETICS"] = _write_karyotypes(rng, kary, male, cfg)
    if cfg.age_column:
        clinical["AGE"] = age
    molecular = molecular.assign(ID=ids[molecular["row"].to_numpy()]).drop(columns="row")[MOLECULAR_COLUMNS]
    target = pd.DataFrame({"ID": ids, "OS_YEARS": os_years, "OS_STATUS": status})

    truth = pd.DataFrame({"ID": ids, "CENTER": clinical["CENTER"], **{col: x[col] for col in x.columns},
                          "MALE": male, "TP53_MUTATED": genes["TP53"], "KARYOTYPE_TRUE": kary["iscn"],
                          "LP": lp - lp_center, "T_EVENT": t_event, "T_ADMIN": t_admin, "T_LOSS": t_loss})
    metadata = {
        "generator": "hemotwin.prognosis.synthetic.simulate_cohort",
        "seed": seed,
        "config": cfg.model_dump(mode="json"),
        "planted_log_hr": eff.as_dict(),
        "baseline": {"model": "Weibull proportional hazards", "shape": k, "scale_lambda": lam,
                     "lp_center": lp_center,
                     "survival": "S(t|x) = exp(-lambda * exp(x.beta - lp_center) * t^shape), t in years"},
        "centers": centers.drop(columns="weight").assign(weight=centers["weight"]).to_dict(orient="records"),
        "research_use_only": "For research use only. Synthetic data; not patients.",
    }
    return SyntheticCohort(clinical, molecular.reset_index(drop=True), target, truth, metadata)


def write_cohort(cohort: SyntheticCohort, out: str | Path, *, overwrite: bool = False) -> dict[str, Path]:
    """Write ``clinical.csv``, ``molecular.csv``, ``target.csv``, ``truth.csv`` and ``metadata.json``.

    Returns the written paths by name. Refuses a non-empty folder unless ``overwrite``.
    """
    from hemotwin.io.outputs import prepare_output_dir
    from hemotwin.io.provenance import write_json

    out = prepare_output_dir(out, overwrite=overwrite)
    paths = {name: out / f"{name}.csv" for name in ("clinical", "molecular", "target", "truth")}
    cohort.clinical.to_csv(paths["clinical"], index=False)
    cohort.molecular.to_csv(paths["molecular"], index=False)
    cohort.target.to_csv(paths["target"], index=False)
    cohort.truth.to_csv(paths["truth"], index=False)
    paths["metadata"] = write_json(out / "metadata.json", cohort.metadata)
    return paths


# --- internals -----------------------------------------------------------------------------------

def _draw_centers(cfg: CohortConfig, rng: np.random.Generator) -> pd.DataFrame:
    """Per-center case mix and follow-up; the first center is the 'typical' one."""
    m = cfg.n_centers
    weight = rng.dirichlet(np.full(m, 4.0))
    return pd.DataFrame({
        "name": [f"C{i + 1}" for i in range(m)],
        "weight": weight,
        # referral centers see more blasts and TP53; community centers older patients
        "blast_shift": rng.normal(0.0, 0.35, m),
        "tp53_mult": np.exp(rng.normal(0.0, 0.4, m)),
        "age_mean": rng.normal(71.0, 4.0, m),
        "accrual": rng.uniform(3.0, 9.0, m),
        "min_followup": rng.uniform(0.5, 4.0, m),
        "loss_rate": rng.uniform(0.01, 0.10, m),
        "missing": np.clip(rng.gamma(2.0, cfg.missing_counts / 2.0, m), 0.0, 0.5),
    })


def _logit(p: float | np.ndarray) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    return np.log(p / (1 - p))


def _bern(rng: np.random.Generator, base: float, shift: np.ndarray) -> np.ndarray:
    """Bernoulli draws with log-odds ``logit(base) + shift`` (co-occurrence as odds ratios)."""
    p = 1.0 / (1.0 + np.exp(-(_logit(base) + shift)))
    return rng.random(shift.shape[0]) < p


def _draw_genotype(n: int, rng: np.random.Generator, *, tp53_mult: np.ndarray) -> dict[str, np.ndarray]:
    """Mutated yes/no per gene with the main known co-occurrence/exclusivity patterns."""
    z = np.zeros(n)
    g: dict[str, np.ndarray] = {}
    g["TP53"] = rng.random(n) < np.clip(0.09 * tp53_mult, 0.0, 0.6)
    # Splicing factors are mutually exclusive; TP53-mutated MDS rarely carries them.
    p_spl = np.array([0.22, 0.15, 0.07, 0.03])
    splice = np.full(n, -1)
    u = rng.random(n)
    scale = np.where(g["TP53"], 0.25, 1.0)
    cum = np.cumsum(p_spl)
    for j in range(len(p_spl) - 1, -1, -1):
        splice[u < cum[j] * scale] = j
    for j, name in enumerate(["SF3B1", "SRSF2", "U2AF1", "ZRSR2"]):
        g[name] = splice == j
    srsf2, sf3b1, tp53 = g["SRSF2"].astype(float), g["SF3B1"].astype(float), g["TP53"].astype(float)
    g["NPM1"] = _bern(rng, 0.02, -1.5 * tp53 - 1.0 * sf3b1)
    npm1 = g["NPM1"].astype(float)
    shifts = {
        "ASXL1": 1.2 * srsf2 - 1.0 * tp53, "TET2": 0.6 * srsf2 - 1.0 * tp53, "DNMT3A": 0.5 * sf3b1 + 1.2 * npm1,
        "RUNX1": 1.0 * srsf2 - 0.5 * tp53, "IDH2": 1.3 * srsf2 + 0.8 * npm1, "STAG2": 0.8 * srsf2,
        "EZH2": 0.5 * srsf2, "NRAS": 0.7 * npm1, "KRAS": 0.5 * npm1, "CBL": 0.4 * srsf2,
    }
    for name, (_chr, _pos, base, _tr, _hs) in _GENES.items():
        if base > 0:
            g[name] = _bern(rng, base, shifts.get(name, z))
    g["FLT3"] = _bern(rng, 0.012, 2.5 * npm1)
    g["KMT2A"] = _bern(rng, 0.025, 0.8 * g["RUNX1"].astype(float))  # KMT2A partial tandem duplication
    return g


def _draw_karyotypes(n: int, rng: np.random.Generator, *, genes: dict[str, np.ndarray],
                     male: np.ndarray) -> pd.DataFrame:
    """True karyotype per patient: the list of abnormalities and the flags the hazard uses."""
    tp53 = genes["TP53"]
    p_complex = np.where(tp53, 0.60, 0.045)
    complex_ = rng.random(n) < p_complex
    rows = []
    simple_w = np.array([w for _, w in _SIMPLE_KARYOTYPES])
    p_simple = simple_w / simple_w.sum()
    for i in range(n):
        flags: dict[str, bool] = {}
        if complex_[i]:
            k = int(rng.choice([3, 4, 5, 6, 7], p=[0.25, 0.25, 0.2, 0.15, 0.15]))
            pick = rng.choice(len(_COMPLEX_POOL), size=k, replace=False)
            abns = [_COMPLEX_POOL[j][0] for j in pick]
            for j in pick:
                flags.update(_COMPLEX_POOL[j][1])
        else:
            u = rng.random()
            if u < _P_NORMAL_NON_COMPLEX:
                abns = []
            else:
                j = int(rng.choice(len(p_simple), p=p_simple))
                abns = list(_SIMPLE_KARYOTYPES[j][0])
                if "-Y" in abns and not male[i]:
                    abns = ["del(20)(q11.2q13.1)"]  # -Y needs a Y
                elif "-X" in abns and male[i]:
                    abns = ["-Y"]  # a male's lost sex chromosome is almost always the Y
            flags["del5q"] = "del(5)(q13q33)" in abns
            flags["minus7"] = "-7" in abns
        rows.append({"abns": abns, "complex": bool(complex_[i]), "n_abn": len(abns),
                     "del17p": flags.get("del17p", False), "del5q": flags.get("del5q", False),
                     "minus7": flags.get("minus7", False)})
    kary = pd.DataFrame(rows)
    kary["iscn"] = [_iscn(a, m, rng) for a, m in zip(kary["abns"], male, strict=True)]
    return kary


def _iscn(abns: list[str], male: bool, rng: np.random.Generator) -> str:
    """An ISCN string: abnormal clone (mosaic with a normal clone most of the time) in sorted order."""
    sex = "XY" if male else "XX"
    n_cells = 20
    if not abns:
        return f"46,{sex}[{n_cells}]"
    modal = 46 + sum(a.startswith("+") for a in abns) - sum(a.startswith("-") for a in abns)
    # ISCN writes the loss of Y after the remaining sex chromosome: 45,X,-Y
    head = [str(modal), "X", "-Y"] if "-Y" in abns else [str(modal), sex]
    body = ",".join([*head, *(a for a in abns if a != "-Y")])
    abnormal = int(rng.integers(6, n_cells + 1))
    if abnormal == n_cells:
        return f"{body}[{n_cells}]"
    return f"{body}[{abnormal}]/46,{sex}[{n_cells - abnormal}]"


def _write_karyotypes(rng: np.random.Generator, kary: pd.DataFrame, male: np.ndarray, cfg: CohortConfig) -> list:
    """The recorded CYTOGENETICS strings: mostly clean ISCN, some lower case, some free text/blank."""
    out: list[str | float] = []
    for iscn, cplx, n_abn in zip(kary["iscn"], kary["complex"], kary["n_abn"], strict=True):
        u = rng.random()
        if u < cfg.free_text_karyotype:
            # Free text consistent with the truth where it says something, else uninformative.
            if n_abn == 0:
                out.append(str(rng.choice(["normal", "Normal karyotype", "46,XX" if rng.random() < 0.5 else "46,XY"])))
            elif cplx:
                out.append(str(rng.choice(["complex", "Complex karyotype", "failed"])))
            else:
                v = rng.choice(["failed", "no growth", "", "NA"])
                out.append(np.nan if v in ("", "NA") else str(v))
        elif u < cfg.free_text_karyotype + cfg.garble_karyotype:
            s = iscn.lower()
            if rng.random() < 0.5:
                s = s.replace(",", ", ", 1)
            out.append(s)
        else:
            out.append(iscn)
    return out


def _draw_counts(n: int, rng: np.random.Generator, *, genes: dict[str, np.ndarray], kary: pd.DataFrame,
                 blast_shift: np.ndarray) -> dict[str, np.ndarray]:
    """Blood counts correlated with genotype (SF3B1: low blasts, anaemia, preserved platelets, ...)."""
    f = {k: v.astype(float) for k, v in genes.items()}
    cplx = kary["complex"].to_numpy(float)
    del5q = kary["del5q"].to_numpy(float)
    minus7 = kary["minus7"].to_numpy(float)
    log_blast = (np.log(3.0) + 0.9 * rng.standard_normal(n) + blast_shift + 0.7 * f["TP53"] + 0.5 * f["RUNX1"]
                 + 1.8 * f["NPM1"] + 1.0 * f["FLT3"] + 0.3 * f["ASXL1"] + 0.4 * f["NRAS"] + 0.4 * f["STAG2"]
                 - 0.5 * f["SF3B1"] + 0.4 * cplx + 0.3 * minus7)
    blast = np.clip(np.exp(log_blast), 0.0, 90.0).round(0)
    hb = np.clip(rng.normal(9.8, 1.6, n) - 0.5 * f["SF3B1"] - 0.4 * del5q - 0.5 * f["TP53"] - 0.01 * blast,
                 4.0, 16.5).round(1)
    log_plt = (np.log(110.0) + 0.75 * rng.standard_normal(n) + 0.35 * f["SF3B1"] + 0.5 * del5q
               - 0.5 * f["TP53"] - 0.3 * cplx - 0.3 * minus7 - 0.3 * f["RUNX1"] - 0.01 * blast)
    plt = np.clip(np.exp(log_plt), 3.0, 1200.0).round(0)
    log_wbc = (np.log(3.6) + 0.6 * rng.standard_normal(n) + 1.2 * f["NPM1"] + 0.8 * f["FLT3"]
               + 0.3 * f["SRSF2"] + 0.3 * f["TET2"] * f["SRSF2"] + 0.015 * blast)
    wbc = np.clip(np.exp(log_wbc), 0.3, 150.0)
    anc_frac = rng.beta(5, 5, n) * np.where(blast > 20, 0.5, 1.0)
    mono_frac = rng.beta(2, 20, n) + 0.12 * f["SRSF2"] * f["TET2"]  # CMML-like monocytosis
    return {"BM_BLAST": blast, "HB": hb, "PLT": plt, "WBC": wbc.round(2), "ANC": (wbc * anc_frac).round(2),
            "MONOCYTES": (wbc * np.clip(mono_frac, 0, 0.6)).round(2)}


def _missing_masks(n: int, rng: np.random.Generator, rate: np.ndarray, *, cols: list[str]) -> dict[str, np.ndarray]:
    # Marrow blasts are missing half as often as peripheral counts (they define the diagnosis).
    return {c: rng.random(n) < rate * (0.5 if c == "BM_BLAST" else 1.0) for c in cols}


def _variant_row(rng: np.random.Generator, row: int, gene: str, vaf: float, *, protein: str | None = None,
                 effect: str | None = None) -> dict[str, Any]:
    chrom, start, _base, trunc, hotspots = _GENES[gene]
    if protein is None:
        if hotspots and rng.random() < (0.9 if trunc == 0 else 0.5):
            protein = str(rng.choice(hotspots))
        elif rng.random() < trunc:
            pos = int(rng.integers(20, 1200))
            protein = f"p.{rng.choice(list(_AA))}{pos}{'fs' if rng.random() < 0.6 else '*'}"
        else:
            pos = int(rng.integers(20, 1200))
            a, b = rng.choice(list(_AA), size=2, replace=False)
            protein = f"p.{a}{pos}{b}"
    if effect is None:
        effect = ("frameshift_variant" if "fs" in protein else "stop_gained" if protein.endswith("*")
                  else "non_synonymous_codon")
    s = start + int(rng.integers(0, 90_000))
    ref, alt = rng.choice(list(_BASES), size=2, replace=False)
    if effect == "frameshift_variant":
        alt = ref + "".join(rng.choice(list(_BASES), size=int(rng.integers(1, 5))))
    end = s + len(ref) - 1
    depth = int(rng.negative_binomial(8, 8 / (8 + 900)))
    return {"row": row, "CHR": chrom, "START": s, "END": end, "REF": str(ref), "ALT": str(alt), "GENE": gene,
            "PROTEIN_CHANGE": protein, "EFFECT": effect, "VAF": round(float(vaf), 3), "DEPTH": max(depth, 50)}


def _draw_variants(rng: np.random.Generator, *, genes: dict[str, np.ndarray],
                   kary: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Variant rows for the mutated genes; returns them with the true TP53 multi-hit flag (IPSS-M rule)."""
    n = kary.shape[0]
    rows: list[dict[str, Any]] = []
    multi = np.zeros(n, dtype=bool)
    del17p = kary["del17p"].to_numpy()
    for i in range(n):
        # founder clone size: most drivers are clonal (VAF ~0.3-0.45); RAS/FLT3 are often subclonal
        for gene in _GENES:
            if not genes[gene][i]:
                continue
            if gene == "TP53":
                u = rng.random()
                if u < 0.35:  # two hits by two mutations
                    for _ in range(2):
                        rows.append(_variant_row(rng, i, gene, rng.beta(6, 9)))
                    multi[i] = True
                elif u < 0.65:  # one mutation with copy-neutral LOH: VAF above 0.55
                    rows.append(_variant_row(rng, i, gene, rng.uniform(0.57, 0.95)))
                    multi[i] = True
                else:  # single hit, VAF well below the LOH cut-off
                    rows.append(_variant_row(rng, i, gene, min(rng.beta(3, 7), 0.5)))
                    multi[i] = bool(del17p[i])  # a 17p loss in the karyotype is the second hit
            elif gene == "FLT3":
                itd = rng.random() < 0.7
                rows.append(_variant_row(rng, i, gene, rng.beta(2, 8), protein=None if not itd else "ITD",
                                         effect="ITD" if itd else None))
            elif gene == "KMT2A":
                rows.append(_variant_row(rng, i, gene, rng.beta(4, 8), protein="PTD", effect="PTD"))
            elif gene == "NPM1":
                rows.append(_variant_row(rng, i, gene, rng.beta(8, 12), effect="frameshift_variant"))
            else:
                vaf = rng.beta(2, 9) if gene in ("NRAS", "KRAS", "CBL") else rng.beta(5, 9)
                rows.append(_variant_row(rng, i, gene, vaf))
                if gene in ("TET2", "ASXL1") and rng.random() < 0.25:  # second hit in the same gene
                    rows.append(_variant_row(rng, i, gene, rng.beta(4, 9)))
    mol = pd.DataFrame(rows, columns=["row", *MOLECULAR_COLUMNS[1:]])
    mol["VAF"] = mol["VAF"].clip(0.02, 0.98)
    return mol, multi


#: Planted effect -> the column of :func:`hemotwin.prognosis.design.build_design` that measures it.
DESIGN_COLUMN_OF: dict[str, str] = {
    "TP53_MULTIHIT": "TP53_MULTIHIT", "COMPLEX": "COMPLEX", "BM_BLAST": "BM_BLAST", "HB": "HB", "PLT": "PLT",
    "AGE": "AGE", "SF3B1": "MUT_SF3B1", "ASXL1": "MUT_ASXL1", "RUNX1": "MUT_RUNX1",
}
