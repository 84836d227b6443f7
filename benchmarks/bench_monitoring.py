"""Monitoring speed: ELN 2022 assessment of 10,000 patients x 20 timepoints, and the CLI wall time.

Prints one JSON document. Anchors measured in the same run: a bare loop that only reads every field
the engine reads (lower bound of any Python assessment), the engine as first written
(``tests/monitoring/reference_engine.py``, the oracle of the equality tests; ``--reference-runs``), and
``python -c "import hemotwin.cli"``. Wall and process CPU time are both recorded (CPU time is less
sensitive to other jobs on a shared machine), with the load average before and after.

Usage: .venv/bin/python benchmarks/bench_monitoring.py [--patients 10000] [--timepoints 20] [--runs 3]
       [--reference-runs 1]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from hemotwin.monitoring import response
from hemotwin.monitoring.config import MonitorConfig
from hemotwin.monitoring.demo import example_paths
from hemotwin.monitoring.response import assess
from hemotwin.monitoring.timeline import Timeline

TESTS = Path(__file__).resolve().parents[1] / "tests" / "monitoring"

FIELDS = ("anc_1e9_per_l", "platelets_1e9_per_l", "blood_blasts_pct", "marrow_blasts_pct", "marrow_cells_counted",
          "extramedullary_disease", "wbc_1e9_per_l", "marrow_cellularity_pct")


def synthetic(i: int, n_tp: int, rnd: random.Random) -> dict:
    """One plausible course: induction, response or not, MRD follow-up, sometimes relapse."""
    dx = date(2023, 1, 1) + timedelta(days=rnd.randrange(365))
    base = rnd.choice([25, 40, 60, 80])
    intensive = rnd.random() < 0.7
    line = {"start": (dx + timedelta(days=2)).isoformat(), "regimen": "7+3" if intensive else "ven-aza",
            "intensity": "intensive" if intensive else "less-intensive",
            "courses": [(dx + timedelta(days=2 + 35 * k)).isoformat() for k in range(3)]}
    responder = rnd.random() < 0.7
    relapse_at = rnd.randrange(8, n_tp + 6) if responder else n_tp + 1
    tps = []
    mrd = 40.0
    for k in range(n_tp):
        day = dx + timedelta(days=0 if k == 0 else 20 + 30 * k + rnd.randrange(5))
        marrow = k == 0 or k % 3 == 1 or rnd.random() < 0.2
        if k == 0:
            mb, bb, anc, plt = base, 20, 1.2, 50
        elif responder and k < relapse_at:
            mb, bb, anc, plt = rnd.choice([1, 2, 3, 4.5]), 0, rnd.choice([0.4, 0.8, 1.0, 1.6, 2.5]), rnd.choice(
                [40, 80, 100, 150])
            mrd = mrd / rnd.choice([3, 10, 30]) if k < relapse_at - 3 else min(mrd * rnd.choice([3, 10]), 50)
        else:
            mb, bb, anc, plt = rnd.choice([8, 20, 35]), rnd.choice([0, 2, 10]), 0.6, 40
            mrd = min(mrd * 5, 50)
        tp = {"date": day.isoformat(), "sample": "marrow" if marrow else "blood", "anc_1e9_per_l": anc,
              "wbc_1e9_per_l": anc + 2, "platelets_1e9_per_l": plt, "blood_blasts_pct": bb,
              "extramedullary_disease": False}
        if marrow:
            tp.update(marrow_blasts_pct=mb, marrow_cells_counted=rnd.choice([150, 300, 500]))
        m = round(mrd, 6)
        tp["mrd"] = [{"method": "qpcr", "marker": "NPM1", "value": m if m >= 0.001 else "not detected", "unit": "%",
                      "lod": 0.001}]
        tps.append(tp)
    return {"patient": f"S{i:05d}", "diagnosis": {"date": dx.isoformat(), "disease": "synthetic AML",
                                                   "baseline_marrow_blasts_pct": base},
            "treatment_lines": [line], "timepoints": tps}


def bare_loop(tls: list[Timeline]) -> int:
    n = 0
    for tl in tls:
        for tp in tl.timepoints:
            for f in FIELDS:
                if getattr(tp, f) is not None:
                    n += 1
            for m in tp.mrd:
                n += m.value_pct is not None
    return n


def cli_time(args: list[str], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True)
        out.append(time.perf_counter() - t)
    return out


def _timed(fn: object) -> tuple[float, float, object]:
    """(wall s, process CPU s, result) of ``fn()``."""
    w, c = time.perf_counter(), time.process_time()
    out = fn()  # type: ignore[operator]
    return time.perf_counter() - w, time.process_time() - c, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=10_000)
    ap.add_argument("--timepoints", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--reference-runs", type=int, default=1,
                    help="also time the engine as first written (tests/monitoring/reference_engine.py), interleaved")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    a = ap.parse_args()
    load_before = os.getloadavg()[0]
    rnd = random.Random(0)
    t0 = time.perf_counter()
    tls = [Timeline.model_validate(synthetic(i, a.timepoints, rnd)) for i in range(a.patients)]
    load_s = time.perf_counter() - t0
    cfg = MonitorConfig()
    reference_assess = None
    if a.reference_runs:
        sys.path.insert(0, str(TESTS))
        from reference_engine import reference_assess  # type: ignore[import-not-found,no-redef]
    runs, cpu, bare, ref, ref_cpu = [], [], [], [], []
    stride = max(1, a.patients // 500)
    cats: dict[str, int] = {}
    sample: list = []
    for k in range(max(a.runs, a.reference_runs)):
        if k < a.runs:
            bare.append(_timed(lambda: bare_loop(tls))[0])
            gc.collect()
            response.clear_caches()  # every run pays for filling the memo tables
            w, c, results = _timed(lambda: [assess(tl, cfg) for tl in tls])
            runs.append(w)
            cpu.append(c)
            cats = {}
            for r in results:  # type: ignore[attr-defined]
                for call in r.calls:
                    cats[call.category] = cats.get(call.category, 0) + 1
            sample = results[::stride]  # type: ignore[index]
            del results  # every timed run starts from the same heap (the timelines)
        if k < a.reference_runs and reference_assess is not None:
            gc.collect()
            w, c, ref_results = _timed(lambda: [reference_assess(tl, cfg) for tl in tls])  # type: ignore[misc]
            ref.append(w)
            ref_cpu.append(c)
            same = ref_results[::stride] == sample  # type: ignore[index]
            del ref_results
            if not same:
                raise SystemExit("results differ from the reference engine")
    exe = str(Path(sys.executable).with_name("hemotwin"))
    ex = next(p for p in example_paths() if p.stem.startswith("EX05"))
    with tempfile.TemporaryDirectory(prefix="monitor_bench_") as tmp:
        cli = cli_time([exe, "monitor", str(ex), "--out", str(Path(tmp) / "o"), "--overwrite"], a.runs + 2)
        cli_json = cli_time([exe, "monitor", str(ex), "--json"], a.runs + 2)
    anchor = cli_time([sys.executable, "-c", "import hemotwin.cli"], a.runs + 2)
    med = statistics.median(runs)
    reference = {}
    if ref:
        reference = {
            "reference_engine_s_runs": [round(x, 3) for x in ref],
            "reference_engine_s_median": round(statistics.median(ref), 3),
            "reference_engine_cpu_s_median": round(statistics.median(ref_cpu), 3),
            "speedup_vs_reference_wall": round(statistics.median(ref) / med, 2),
            "speedup_vs_reference_cpu": round(statistics.median(ref_cpu) / statistics.median(cpu), 2),
            "results_equal_reference": True,
        }
    doc = {
        "patients": a.patients, "timepoints_per_patient": a.timepoints,
        "load_and_validate_s": round(load_s, 3),
        "assess_s_runs": [round(x, 3) for x in runs], "assess_s_median": round(med, 3),
        "assess_cpu_s_runs": [round(x, 3) for x in cpu], "assess_cpu_s_median": round(statistics.median(cpu), 3),
        "assess_us_per_timepoint": round(1e6 * med / (a.patients * a.timepoints), 2),
        "target_assess_s": 10.0, "assess_target_met": med <= 10.0,
        "anchor_bare_field_loop_s_median": round(statistics.median(bare), 3),
        "assess_over_bare_loop": round(med / statistics.median(bare), 1),
        **reference,
        "calls_by_category": dict(sorted(cats.items())),
        "cli_monitor_patient_wall_s": [round(x, 3) for x in cli], "cli_wall_s_median": round(statistics.median(cli), 3),
        "cli_json_wall_s_median": round(statistics.median(cli_json), 3),
        "anchor_import_hemotwin_cli_wall_s_median": round(statistics.median(anchor), 3),
        "target_cli_s": 1.0, "cli_target_met": statistics.median(cli) < 1.0,
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpu_count": os.cpu_count(),
                    "load_avg_1min_before": round(load_before, 2),
                    "load_avg_1min": round(os.getloadavg()[0], 2)},
    }
    text = json.dumps(doc, indent=2)
    print(text)
    if a.out:
        a.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
