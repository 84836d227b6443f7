"""Survival benchmark on the synthetic cohort; prints JSON.

1. Hazard-ratio recovery: a nearly unpenalised Cox model on the design columns that measure the
   planted covariates (built from the *tables*: parsed karyotypes, called TP53 multi-hit), compared
   with the planted log-hazard ratios; tolerance |estimate - truth| < 3 Wald SE for each.
2. Leave-centers-out Uno C (tau 7 y) of cox / rsf / gbsa against IPSS-M, IPSS-R, ELN 2022 and the
   oracle (the true linear predictor) on the same folds: median and range over folds.
3. Time to fit the default Cox model on the full design.

Usage: ``OPENBLAS_NUM_THREADS=1 python benchmarks/bench_survival.py [--n 3000] [--seed 1] [--quick]``
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import pandas as pd

from hemotwin.prognosis.design import align_cohort, build_design, fit_design, published_scores
from hemotwin.prognosis.survival import PenalizedCox, SurvivalBoosting, SurvivalForest, cross_validate, make_y
from hemotwin.prognosis.synthetic import DESIGN_COLUMN_OF, simulate_cohort


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--centers", type=int, default=6)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="fewer trees (smoke run)")
    a = ap.parse_args()

    t0 = time.perf_counter()
    cohort = simulate_cohort(a.n, n_centers=a.centers, seed=a.seed)
    t_sim = time.perf_counter() - t0
    cl, mo, ta, _ = align_cohort(cohort.clinical, cohort.molecular, cohort.target)
    t0 = time.perf_counter()
    spec = fit_design(cl, mo)
    X = build_design(spec, cl, mo).reset_index(drop=True)
    t_design = time.perf_counter() - t0
    y = make_y(ta)
    scores = published_scores(cl, mo).reset_index(drop=True)

    # 1. hazard-ratio recovery
    cols = list(DESIGN_COLUMN_OF.values())
    cox = PenalizedCox(alpha=0.01).fit(X[cols], y)
    co = cox.coefficients(X[cols])
    truth = pd.Series(cohort.metadata["planted_log_hr"]).rename(DESIGN_COLUMN_OF)
    rec = pd.DataFrame({"planted": truth, "estimate": co["coef"], "se": co["se"]})
    rec["z"] = (rec["estimate"] - rec["planted"]) / rec["se"]
    recovery = {k: {kk: round(float(v), 5) for kk, v in r.items()} for k, r in rec.iterrows()}

    # 3. Cox fit time on the full design (default ridge)
    t0 = time.perf_counter()
    PenalizedCox().fit(X, y)
    t_cox = time.perf_counter() - t0

    # 2. leave-centers-out comparison on the same folds
    trees = 20 if a.quick else 100
    models = {"cox": PenalizedCox(), "rsf": SurvivalForest(n_estimators=trees, random_state=a.seed),
              "gbsa": SurvivalBoosting(n_estimators=2 * trees, random_state=a.seed)}
    base = scores.assign(TRUE_LP=cohort.truth["LP"].to_numpy())
    t0 = time.perf_counter()
    res = cross_validate(models, X, y, groups=cl["CENTER"].to_numpy(), cv="centers", baselines=base,
                         baseline_columns=["IPSSM_SCORE", "IPSSR_SCORE", "ELN2022", "TRUE_LP"], tau=7.0)
    t_cv = time.perf_counter() - t0
    s = res.summary
    lco = {name: {"uno_c_median": round(float(r["uno_c_median"]), 4), "uno_c_min": round(float(r["uno_c_min"]), 4),
                  "uno_c_max": round(float(r["uno_c_max"]), 4),
                  "harrell_c_median": round(float(r["harrell_c_median"]), 4),
                  "ibs_median": None if not np.isfinite(r["ibs_median"]) else round(float(r["ibs_median"]), 4),
                  "calibration_mae": None if not np.isfinite(r.get("calibration_mae", np.nan))
                  else round(float(r["calibration_mae"]), 4)} for name, r in s.iterrows()}
    out = {
        "benchmark": "survival", "n": a.n, "centers": a.centers, "seed": a.seed, "events": int(y["event"].sum()),
        "features": X.shape[1], "trees": trees,
        "hr_recovery": {"tolerance": "|estimate - planted| < 3 SE", "all_within": bool((rec["z"].abs() < 3).all()),
                        "coefficients": recovery},
        "leave_centers_out": lco,
        "folds": [{"test": f["test_centers"], "n_test": f["n_test"]} for f in res.fold_definition],
        "tau_used": res.folds.groupby("fold")["tau_used"].first().round(3).tolist(),
        "seconds": {"simulate": round(t_sim, 2), "design": round(t_design, 2), "cox_fit_full_design": round(t_cox, 3),
                    "cross_validation": round(t_cv, 1)},
        "machine": {"python": platform.python_version(), "processor": platform.processor() or platform.machine()},
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
