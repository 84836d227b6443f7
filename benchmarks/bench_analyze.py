"""Benchmark of smear analysis on virtual patients: interval coverage, flag accuracy, speed (prints JSON).

Three measurements (docs/diagnosis.md explains and tabulates them):

1. **Coverage of the whole chain** (detection + classification + counting) per scanner preset. A pool
   of twin cells (``--pool`` per class, fields rendered with a seed no calibration uses) goes through
   the real detector and model once; each repeated virtual sample of a case then draws ``--cells``
   white cells from the case's population differential and, for each, a random pool cell of that
   class (missed by the detector with the pool's miss rate; false detections added at the pool's
   rate). Reported: how often the case's true blast percentage lies inside (a) the plain
   Clopper–Pearson interval on the counted calls and (b) the misclassification-corrected interval
   (chain calibration of the same preset, measured on other fields), and how often each flag agrees
   with the case's expectation (positive when expected positive; not positive when expected negative).
   Resampling pool cells (with replacement) instead of rendering every sample keeps this to minutes;
   the anchor in the same run is the end-to-end stage below.
   ``--fresh case:preset`` repeats the measurement on freshly rendered samples (new cells every
   time, slower): the anchor for the pool design, whose reuse of cells makes it conservative.
   ``--follow-advice MAX`` also scores the flags after counting the additional cells of the report's
   counting advice (up to MAX cells in all), as a user following the report would.
2. **End to end**: ``simulate sample`` + ``analyze`` on a few rendered samples (true blast % inside the
   reported interval? flags as expected?).
3. **Speed**: seconds, fields/s and cells/s of ``analyze`` on a 200-cell sample (``--workers`` processes).

Usage::

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_analyze.py --out bench_analyze.json
    python benchmarks/bench_analyze.py --presets analyzer-100x --repeats 20 --pool 20   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from hemotwin.diagnosis.calibration import chain_cells, find_calibration
from hemotwin.diagnosis.cases import load_cases
from hemotwin.diagnosis.classify import DEFAULT_CONFIDENCE, CellClassifier
from hemotwin.diagnosis.correction import ChainCalibration, sample_posterior
from hemotwin.diagnosis.differential import LEUKOCYTE_CODES, cp_estimate
from hemotwin.diagnosis.flags import Counting, counting_advice, evaluate_flags
from hemotwin.taxonomy import BLAST_CODES, CLASS_CODES

PRESETS = ("analyzer-100x", "wsi-40x", "wsi-20x", "phone-40x")
POOL_SEED = 4242  # differs from the calibration seed (90210) and from the samples' seeds


def _calibration(preset: str, clf: CellClassifier, cal_dir: Path | None) -> ChainCalibration | None:
    cands = None
    if cal_dir is not None:
        cands = [ChainCalibration.model_validate_json(p.read_text()) for p in sorted(cal_dir.glob("*.json"))]
    from hemotwin.twin.profiles import load_profile

    cal, _ = find_calibration(clf.sha256, load_profile(preset).camera.um_per_px, profile=preset, candidates=cands)
    return cal


def _flag_ok(expected: str, state: str) -> bool:
    return state == "positive" if expected == "positive" else (state != "positive" if expected == "negative" else True)


def _flag_wrong(expected: str, state: str) -> bool:
    """A decided flag that contradicts the case (indeterminate is never wrong, only undecided)."""
    return (expected == "positive" and state == "negative") or (expected == "negative" and state == "positive")


class _VirtualSample:
    """Calls of one virtual sample, drawn cell by cell from a case's population and the pool."""

    def __init__(self, rng, codes, p, by_class, miss_rate, artefacts, art_rate) -> None:
        self.rng, self.codes, self.p = rng, codes, p
        self.by_class, self.miss_rate, self.artefacts, self.art_rate = by_class, miss_rate, artefacts, art_rate
        self.calls_all: Counter[str] = Counter()
        self.counted: Counter[str] = Counter()
        self.n_referred = 0

    def add(self, k: int) -> None:
        """k more white cells (each a random pool cell of its class, or missed) + false detections."""
        rr = self.rng
        for lab in (self.codes[i] for i in rr.choice(len(self.codes), size=k, p=self.p)):
            if rr.random() < self.miss_rate[lab] or not self.by_class[lab]:
                continue
            self._call(*self.by_class[lab][rr.integers(len(self.by_class[lab]))])
        for _ in range(rr.poisson(self.art_rate * k) if self.artefacts else 0):
            self._call(*self.artefacts[rr.integers(len(self.artefacts))])

    def _call(self, call: str, conf: float) -> None:
        self.calls_all[call] += 1
        if conf >= DEFAULT_CONFIDENCE:
            self.counted[call] += 1
        else:
            self.n_referred += 1


def _judge(vs: _VirtualSample, cal, prior: dict | None, r: int, *, tag: int = 0) -> tuple[Counting, list]:
    post = sample_posterior(vs.calls_all, cal, n_draws=1000, burn_in=300, seed=r + tag, **(prior or {})) \
        if cal is not None else None
    counting = Counting(vs.counted, posterior=post, calls_all=vs.calls_all, calibration=cal, seed=r, search=False)
    return counting, evaluate_flags(counting)


def coverage(preset: str, *, clf: CellClassifier, cal: ChainCalibration | None, pool_per_class: int, repeats: int,
             n_cells: int, seed: int, save_calls: bool = False, prior: dict | None = None,
             pool: dict | None = None, follow_advice: int = 0, specimens: str = "procedural",
             library: str | None = None) -> dict:
    """Stage 1 for one preset (``pool``: reuse saved pool cells instead of rendering them).

    ``follow_advice`` > 0 also scores the flags after counting the additional cells the flags ask
    for (at most that many cells in all), as a user following the report would.
    """
    t0 = time.perf_counter()
    if pool is None:
        rng = np.random.default_rng([seed, 1])
        labels = [c for c in CLASS_CODES for _ in range(pool_per_class)]
        labels = [labels[i] for i in rng.permutation(len(labels))]
        pool = chain_cells(preset, labels, classifier=clf, seed=POOL_SEED + seed, specimens=specimens, library=library)
        pool = {"cells": pool["cells"], "missed": pool["missed"]}
    t_pool = time.perf_counter() - t0
    by_class: dict[str, list[tuple[str, float]]] = {c: [] for c in CLASS_CODES}
    artefacts: list[tuple[str, float]] = []
    for t, call, conf in pool["cells"]:
        (artefacts if t is None else by_class[t]).append((call, conf))
    missed = Counter(pool["missed"])
    miss_rate = {c: missed[c] / max(1, missed[c] + len(by_class[c])) for c in CLASS_CODES}
    art_rate = len(artefacts) / max(1, sum(len(v) for v in by_class.values()))
    acc = np.mean([call == t for t, call, _ in pool["cells"] if t is not None])
    cases = load_cases()
    out_cases = {}
    for name, case in cases.items():
        codes = list(case.differential)
        p = np.array([case.differential[c] for c in codes])
        truth = case.true_blast_percent
        eq_truth = case.true_percent((*BLAST_CODES, "PMO", "PMB"))
        cov = {"corrected": 0, "plain": 0, "corrected_equivalents": 0}
        widths = {"corrected": [], "plain": []}
        flag_ok: Counter[str] = Counter()
        flag_ind: Counter[str] = Counter()
        flag_pos: Counter[str] = Counter()
        flag_wrong: Counter[str] = Counter()
        advice_ok: Counter[str] = Counter()
        advice_wrong: Counter[str] = Counter()
        advice_cells: list[int] = []
        referred = []
        for r in range(repeats):
            rr = np.random.default_rng([seed, 2, r, len(name)])
            vs = _VirtualSample(rr, codes, p, by_class, miss_rate, artefacts, art_rate)
            vs.add(n_cells)
            referred.append(vs.n_referred / max(1, sum(vs.calls_all.values())))
            counting, flags = _judge(vs, cal, prior, r)
            plain = cp_estimate(vs.counted, BLAST_CODES)
            cov["plain"] += plain.lo <= truth <= plain.hi
            widths["plain"].append(plain.hi - plain.lo)
            if counting.corrected:
                e = counting.estimate(BLAST_CODES, name="blasts")
                cov["corrected"] += e.lo <= truth <= e.hi
                widths["corrected"].append(e.hi - e.lo)
                e2 = counting.estimate((*BLAST_CODES, "PMO", "PMB"), name="blasts + blast equivalents")
                cov["corrected_equivalents"] += e2.lo <= eq_truth <= e2.hi
            for f in flags:
                exp = case.expected_flags.get(f.id, "negative")
                flag_ok[f.id] += _flag_ok(exp, f.state)
                flag_wrong[f.id] += _flag_wrong(exp, f.state)
                flag_ind[f.id] += f.state == "indeterminate"
                flag_pos[f.id] += f.state == "positive"
            if follow_advice:
                # Do what the report says: count the additional cells of its counting advice
                # (flags.counting_advice: urgent/major flags up to 1,000 more cells, minor ones up to 300),
                # at most follow_advice cells in all, then read the flags again; up to three rounds.
                total = n_cells
                for rnd in range(3):
                    ask = counting_advice(flags).additional_cells
                    if not ask or total >= follow_advice:
                        break
                    more = min(ask, follow_advice - total)
                    vs.add(more)
                    total += more
                    counting, flags = _judge(vs, cal, prior, r, tag=1000 * (rnd + 1))
                advice_cells.append(total)
                for f in flags:
                    exp = case.expected_flags.get(f.id, "negative")
                    advice_ok[f.id] += _flag_ok(exp, f.state)
                    advice_wrong[f.id] += _flag_wrong(exp, f.state)
        rows = {k: round(v / repeats, 3) for k, v in cov.items()}
        out_cases[name] = {
            "true_blast_percent": round(truth, 2),
            "coverage": rows if cal is not None else {"plain": rows["plain"]},
            "mean_width": {k: round(float(np.mean(v)), 2) for k, v in widths.items() if v},
            "referred_fraction": round(float(np.mean(referred)), 3),
            "flags_correct": {k: round(v / repeats, 3) for k, v in flag_ok.items()},
            "flags_indeterminate": {k: round(v / repeats, 3) for k, v in flag_ind.items() if v},
            "flags_positive": {k: round(v / repeats, 3) for k, v in flag_pos.items() if v},
            "all_flags_correct": round(float(min(flag_ok.values()) / repeats), 3),
            "flags_wrong": {k: round(v / repeats, 3) for k, v in flag_wrong.items() if v},
        }
        if follow_advice:
            out_cases[name]["after_advice"] = {
                "cells_median": int(np.median(advice_cells)), "cells_max": int(max(advice_cells)),
                "flags_correct": {k: round(v / repeats, 3) for k, v in advice_ok.items() if v < repeats},
                "all_flags_correct": round(float(min(advice_ok.values()) / repeats), 3),
                "flags_wrong": {k: round(v / repeats, 3) for k, v in advice_wrong.items() if v}}
    return {"preset": preset, "pool": pool if save_calls else None,
            "specimens": specimens, "pool_cells": len(pool["cells"]), "pool_accuracy": round(float(acc), 3),
            "pool_missed": len(pool["missed"]), "pool_artefacts": len(artefacts),
            "calibration_accuracy": round(cal.accuracy(), 3) if cal else None, "pool_seconds": round(t_pool, 1),
            "seconds": round(time.perf_counter() - t0, 1), "cases": out_cases}


def fresh(pairs: list[tuple[str, str]], *, clf: CellClassifier, repeats: int, n_cells: int, seed: int,
          cal_dir: Path | None, prior: dict | None = None, save_calls: bool = False,
          reuse: dict | None = None) -> list[dict]:
    """Coverage on freshly rendered samples (no pool reuse): every repeat renders new fields.

    ``save_calls`` keeps each sample's calls (all / counted) so a sampler variant can be scored
    on the same rendered samples without rendering them again (about 9 s per 200 cells); ``reuse``
    maps ``(case, preset)`` to such saved samples, which are then scored instead of rendered.
    """
    out = []
    cases = load_cases()
    for case_name, preset in pairs:
        t0 = time.perf_counter()
        cal = _calibration(preset, clf, cal_dir)
        case = cases[case_name]
        codes = list(case.differential)
        p = np.array([case.differential[c] for c in codes])
        truth = case.true_blast_percent
        cov = {"corrected": 0, "plain": 0}
        flag_ok: Counter[str] = Counter()
        samples, done = [], 0
        saved = (reuse or {}).get((case_name, preset))
        for r in range(repeats if saved is None else min(repeats, len(saved))):
            if saved is not None:
                calls_all, counted = Counter(saved[r]["calls_all"]), Counter(saved[r]["counted"])
            else:
                rr = np.random.default_rng([seed, 3, r, len(case_name)])
                labels = [codes[i] for i in rr.choice(len(codes), size=n_cells, p=p)]
                # Field seeds clear of the default model's training fields (7000-7003), calibration, pool.
                res = chain_cells(preset, labels, classifier=clf, seed=20000 + 97 * r + seed)
                calls_all = Counter(c for _, c, _ in res["cells"])
                counted = Counter(c for _, c, conf in res["cells"] if conf >= DEFAULT_CONFIDENCE)
            done += 1
            if save_calls:
                samples.append({"calls_all": dict(calls_all), "counted": dict(counted)})
            post = sample_posterior(calls_all, cal, n_draws=1000, burn_in=300, seed=r, **(prior or {})) \
                if cal is not None else None
            counting = Counting(counted, posterior=post, calls_all=calls_all, calibration=cal, seed=r, search=False)
            plain = cp_estimate(counted, BLAST_CODES)
            cov["plain"] += plain.lo <= truth <= plain.hi
            if post is not None:
                e = counting.estimate(BLAST_CODES, name="blasts")
                cov["corrected"] += e.lo <= truth <= e.hi
            for f in evaluate_flags(counting):
                flag_ok[f.id] += _flag_ok(case.expected_flags.get(f.id, "negative"), f.state)
        out.append({"case": case_name, "preset": preset, "repeats": done, "true_blast_percent": round(truth, 2),
                    "coverage": {k: round(v / max(done, 1), 3) for k, v in cov.items()},
                    "flags_correct": {k: round(v / max(done, 1), 3) for k, v in flag_ok.items()},
                    "seconds": round(time.perf_counter() - t0, 1),
                    **({"samples": samples} if save_calls else {})})
        print(json.dumps({"fresh done": f"{case_name}:{preset}", "seconds": out[-1]["seconds"]}), file=sys.stderr)
    return out


def end_to_end(pairs: list[tuple[str, str]], *, n_cells: int, workers: int, seed: int) -> list[dict]:
    """Stages 2 and 3: render, analyse, compare with truth.json; time the analysis."""
    from hemotwin.diagnosis.analyze import AnalysisConfig, AnalysisEngine
    from hemotwin.diagnosis.virtual import SampleConfig, render_sample

    out = []
    engine = AnalysisEngine(AnalysisConfig(thumbnails=True), num_threads=workers)
    for case, preset in pairs:
        with tempfile.TemporaryDirectory(prefix="report_bench_") as tmp:
            t0 = time.perf_counter()
            s = render_sample(SampleConfig(case=case, cells=n_cells, profile=preset, seed=seed + 17),
                              Path(tmp) / "s", workers=workers)
            t_render = time.perf_counter() - t0
            t1 = time.perf_counter()
            res = engine.run(Path(tmp) / "s", workers=workers)
            t_an = time.perf_counter() - t1
        truth = s["truth"]
        plain = res["differential"]["blasts"]
        cases = load_cases()
        flags = {f["id"]: f["state"] for f in res["flags"]}
        exp = cases[case].expected_flags
        wrong = {k: v for k, v in flags.items() if not _flag_ok(exp.get(k, "negative"), v)}
        t_blast = truth["true_blast_percent"]
        corrected = res["corrected"]
        cb = corrected["blasts"] if corrected else None
        out.append({"case": case, "preset": preset, "fields": s["fields"], "cells_classified":
                    res["counts"]["n_classified"], "referred": res["counts"]["n_referred"],
                    "true_blast_percent": t_blast,
                    "plain_blasts": [round(plain["percent"], 1), round(plain["lo"], 1), round(plain["hi"], 1)],
                    "corrected_blasts": [round(cb["percent"], 1), round(cb["lo"], 1), round(cb["hi"], 1)] if cb
                    else None,
                    "corrected_covers": (cb["lo"] <= t_blast <= cb["hi"]) if cb else None,
                    "plain_covers": plain["lo"] <= t_blast <= plain["hi"],
                    "flags": flags, "wrong_flags": wrong, "render_seconds": round(t_render, 2),
                    "analyze_seconds": round(t_an, 2), "fields_per_s": round(s["fields"] / t_an, 2),
                    "cells_per_s": round(res["counts"]["n_classified"] / t_an, 1)})
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--pool", type=int, default=30, help="pool cells per class per preset")
    ap.add_argument("--repeats", type=int, default=60, help="virtual samples per case per preset")
    ap.add_argument("--cells", type=int, default=200)
    ap.add_argument("--e2e", default="normal:analyzer-100x,aml:analyzer-100x,apl:analyzer-100x,cll:analyzer-100x",
                    help="case:preset pairs for the end-to-end stage ('' to skip)")
    ap.add_argument("--fresh", default="", help="case:preset pairs for coverage on freshly rendered samples")
    ap.add_argument("--fresh-repeats", type=int, default=15)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--calibration-dir", type=Path, default=None, help="calibration JSONs (default: shipped)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-coverage", action="store_true")
    ap.add_argument("--save-calls", action="store_true",
                    help="keep the pool cells (for --reuse-pool) and the fresh samples' calls in the JSON")
    ap.add_argument("--reuse-fresh", type=Path, help="JSON of a --save-calls --fresh run: rescore its samples")
    ap.add_argument("--reuse-pool", type=Path, default=None, help="JSON of a --save-calls run: reuse its pools")
    ap.add_argument("--alpha", type=float, default=None, help="override the sampler's alpha (sample prior)")
    ap.add_argument("--beta", type=float, default=None, help="override the sampler's beta (confusion-row prior)")
    ap.add_argument("--cut", choices=("default", "yes", "no"), default="default",
                    help="override the sampler's cut (confusion from the calibration only)")
    ap.add_argument("--cal-weight", type=float, default=None,
                    help="override the sampler's calibration_weight (power prior on the calibration)")
    ap.add_argument("--follow-advice", type=int, default=0, metavar="MAX_CELLS",
                    help="also score flags after counting the additional cells they ask for (up to MAX_CELLS)")
    ap.add_argument("--specimens", choices=("procedural", "real", "mixed"), default="procedural",
                    help="white cells of the coverage pools: twin-drawn, or real cells of --library (mixed: the "
                         "library's classes real, the others drawn)")
    ap.add_argument("--library", type=Path, default=None, help="cell library folder (hemotwin library build)")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    clf = CellClassifier.open(num_threads=1)
    result: dict = {"benchmark": "bench_analyze", "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                                                              "platform": platform.platform()},
                    "model_sha256": clf.sha256,
                    "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items()},
                    "leukocyte_denominator": list(LEUKOCYTE_CODES)}
    prior = {k: v for k, v in (("alpha", a.alpha), ("beta_prior", a.beta)) if v is not None}
    if a.cal_weight is not None:
        prior["calibration_weight"] = a.cal_weight
    if a.cut != "default":
        prior["cut"] = a.cut == "yes"
    if not a.skip_coverage:
        result["coverage"] = []
        pools = {}
        if a.reuse_pool is not None:
            pools = {c["preset"]: c["pool"] for c in json.loads(a.reuse_pool.read_text())["coverage"] if c.get("pool")}
        for preset in [p for p in a.presets.split(",") if p]:
            cal = _calibration(preset, clf, a.calibration_dir)
            result["coverage"].append(coverage(preset, clf=clf, cal=cal, pool_per_class=a.pool, repeats=a.repeats,
                                               n_cells=a.cells, seed=a.seed, save_calls=a.save_calls, prior=prior,
                                               pool=pools.get(preset), follow_advice=a.follow_advice,
                                               specimens=a.specimens,
                                               library=None if a.library is None else str(a.library)))
            print(json.dumps({"done": preset, "seconds": result["coverage"][-1]["seconds"]}), file=sys.stderr)
    fresh_pairs = [tuple(x.split(":")) for x in a.fresh.split(",") if x]
    if fresh_pairs:
        result["fresh"] = fresh(fresh_pairs, clf=clf, repeats=a.fresh_repeats, n_cells=a.cells, seed=a.seed,
                                cal_dir=a.calibration_dir, prior=prior, save_calls=a.save_calls,
                                reuse={(f["case"], f["preset"]): f["samples"]
                                       for f in json.loads(a.reuse_fresh.read_text())["fresh"] if "samples" in f}
                                if a.reuse_fresh else None)
    pairs = [tuple(x.split(":")) for x in a.e2e.split(",") if x]
    if pairs:
        result["end_to_end"] = end_to_end(pairs, n_cells=a.cells, workers=a.workers, seed=a.seed)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(result, indent=1)
    if a.out:
        a.out.write_text(text + "\n")
    print(text)
    return result


if __name__ == "__main__":
    main()
