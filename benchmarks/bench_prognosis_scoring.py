"""Benchmark: score a synthetic 10,000-patient cohort (CLINICAL_RULES §9 schema) with every score.

Writes its own cohort with a fixed seed (no dependency on other generators), reads it through
:func:`hemotwin.prognosis.tables.read_cohort`, and times :func:`hemotwin.prognosis.scoring.score_cohort`
(median of 3). Anchor in the same run: the patient-by-patient path (:func:`score_patient`) on 200
patients, extrapolated to the cohort size. Also times ``hemotwin risk`` end to end (median of 3).
Prints JSON.

    .venv/bin/python benchmarks/bench_prognosis_scoring.py [--n 10000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

KARYOTYPES = ["46,XY[20]", "46,XX[20]", "46,XY,del(5)(q13q33)[20]", "45,XY,-7[15]/46,XY[5]", "47,XY,+8[12]/46,XY[8]",
              "45,X,-Y[20]", "46,XX,del(20)(q11q13)[20]", "44,XY,-5,-7,-17,+mar[20]", "46,XY,t(8;21)(q22;q22)[20]",
              "46,XX,inv(16)(p13q22)[20]", "46,XY,t(9;11)(p21;q23)[20]", "46,XY,inv(3)(q21q26)[20]",
              "46,XY,del(11)(q14q23)[20]", "47,XX,+21[10]/46,XX[10]", "", "failed", "normal",
              "46,xy,del(5)(q13q33),del(7)(q22)[20]", "46,XY,del(12)(p12)[20]", "45,XX,-7,t(3;3)(q21;q26)[20]"]
GENES = ["TET2", "ASXL1", "SF3B1", "DNMT3A", "SRSF2", "RUNX1", "TP53", "U2AF1", "EZH2", "ZRSR2", "STAG2", "BCOR",
         "IDH2", "IDH1", "NRAS", "KRAS", "CBL", "ETV6", "NPM1", "FLT3", "CEBPA", "WT1", "PHF6", "SETBP1", "DDX41",
         "KMT2A", "KIT", "PTPN11", "GATA2", "NF1"]


def make_cohort(n: int, seed: int, folder: Path) -> tuple[Path, Path]:
    """Synthetic clinical + molecular CSVs in the §9 schema (fixed seed: same seed, same bytes)."""
    rng = np.random.default_rng(seed)
    ids = [f"S{i:05d}" for i in range(n)]
    kar = rng.choice(len(KARYOTYPES), size=n, p=np.r_[[0.3, 0.2], np.full(len(KARYOTYPES) - 2, 0.5 /
                                                                            (len(KARYOTYPES) - 2))])
    clin = pd.DataFrame({
        "ID": ids, "CENTER": rng.choice(["A", "B", "C"], size=n),
        "BM_BLAST": np.round(rng.gamma(1.5, 4.0, size=n), 1), "WBC": np.round(rng.lognormal(1.3, 0.6, size=n), 2),
        "ANC": np.round(rng.lognormal(0.3, 0.8, size=n), 2), "MONOCYTES": np.round(rng.lognormal(-1, 0.7, size=n), 2),
        "HB": np.round(rng.normal(9.8, 1.8, size=n).clip(4, 17), 1),
        "PLT": np.round(rng.lognormal(4.8, 0.8, size=n).clip(3, 1500)),
        "CYTOGENETICS": [KARYOTYPES[k] for k in kar]})
    for col in ("HB", "ANC", "BM_BLAST"):  # ~3 % missing per variable, as in real cohorts
        clin.loc[rng.random(n) < 0.03, col] = np.nan
    n_mut = rng.poisson(2.0, size=n)
    rows = []
    for pid, k in zip(ids, n_mut, strict=True):
        for g in rng.choice(GENES, size=k):
            eff = "ITD" if g == "FLT3" and rng.random() < 0.6 else ("PTD" if g == "KMT2A" and rng.random() < 0.5
                                                                   else "non_synonymous_codon")
            rows.append({"ID": pid, "CHR": "1", "START": 1000, "END": 1001, "REF": "A", "ALT": "T", "GENE": g,
                         "PROTEIN_CHANGE": "p.D835Y" if g == "FLT3" and eff != "ITD" else "p.R100W",
                         "EFFECT": eff, "VAF": round(float(rng.uniform(0.02, 0.9)), 3), "DEPTH": 500})
    c, m = folder / "clinical.csv", folder / "molecular.csv"
    clin.to_csv(c, index=False)
    pd.DataFrame(rows).to_csv(m, index=False)
    return c, m


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from hemotwin.prognosis.patient import Patient
    from hemotwin.prognosis.scoring import score_cohort, score_patient
    from hemotwin.prognosis.tables import read_cohort

    with tempfile.TemporaryDirectory(prefix="scores_bench_") as tmp:
        c, m = make_cohort(args.n, args.seed, Path(tmp))
        t0 = time.perf_counter()
        tabs = read_cohort(c, m)
        t_read = time.perf_counter() - t0
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            scores = score_cohort(tabs.clinical, tabs.molecular)
            times.append(time.perf_counter() - t0)
        # Anchor: the patient-by-patient path on 200 patients.
        k = min(200, args.n)
        panel = sorted(set(tabs.molecular["GENE"]))
        mol = tabs.molecular.groupby("ID")
        pats = []
        for pid, row in tabs.clinical.iloc[:k].iterrows():
            muts = [] if pid not in mol.groups else [
                {"gene": r.GENE, "vaf": r.VAF, "effect": r.EFFECT, "protein_change": r.PROTEIN_CHANGE}
                for r in mol.get_group(pid).itertuples()]
            nan = lambda x: None if pd.isna(x) else float(x)  # noqa: E731
            pats.append(Patient(id=pid, karyotype=row.CYTOGENETICS, mutations=muts, sequenced_genes=panel,
                                bm_blast_pct=nan(row.BM_BLAST), hb_g_dl=nan(row.HB), plt_1e9_per_l=nan(row.PLT),
                                anc_1e9_per_l=nan(row.ANC)))
        t0 = time.perf_counter()
        reports = [score_patient(p) for p in pats]
        t_one = (time.perf_counter() - t0) / k
        agree = sum(r.ipssm.score == s and (r.eln2022.category or r.eln2022.status) == e for r, s, e in
                    zip(reports, scores["IPSSM_SCORE"][:k], scores["ELN2022"][:k], strict=True))
        pfile = Path(tmp) / "p.json"
        pfile.write_text(pats[0].model_dump_json())
        risk = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "hemotwin", "risk", str(pfile)], check=True,
                           capture_output=True)
            risk.append(time.perf_counter() - t0)
    print(json.dumps({
        "n_patients": args.n, "n_mutations": len(tabs.molecular), "seed": args.seed,
        "read_tables_s": round(t_read, 3),
        "score_cohort_s_median_of_3": round(statistics.median(times), 3), "score_cohort_s_all": [round(t, 3)
                                                                                                 for t in times],
        "target_s": 5.0,
        "anchor_score_patient_ms_each": round(1000 * t_one, 2),
        "anchor_extrapolated_s": round(t_one * args.n, 1),
        "patient_path_agrees_with_cohort_path": f"{agree}/{k}",
        "hemotwin_risk_wall_s_median_of_3": round(statistics.median(risk), 3),
        "categories_ELN2022": scores["ELN2022"].value_counts().to_dict(),
        "categories_IPSSM": scores["IPSSM"].value_counts().to_dict(),
        "machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(), "platform": platform.platform()},
    }, indent=2))


if __name__ == "__main__":
    main()
