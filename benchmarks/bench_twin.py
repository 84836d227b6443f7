"""Throughput of the twin on this machine, against the bare FFT kernel bound measured in the same run.

Measured (median of repeated timings; the 2-core machine is noisy, so ratios matter more than
absolute numbers):

- single-cell crops/s at 256 px under ``--profile`` (default ``analyzer-100x``), end-to-end
  (``make_cell_specimen`` + ``rasterize`` + ``render``) with 1 process and with 2 processes
  (multiprocessing Pool, fork, FFT workers=1 in each); the split specimen / rasterize / render;
- 1024² fields/s (render only and end-to-end) and the peak memory of a field render;
- the same with ``psf_groups = n_bands`` (exact per-band PSF);
- the **kernel bound** (docs/optics.md §4) for the same grid, padding and band count: 4 absorbers,
  OD matmul + exp (float32, in place) + one rfft2 per band + OTF multiply-accumulate into 3
  channels + 3 irfft2; reported as ratios render/kernel and end-to-end/kernel;
- a cProfile of crop renders: the top functions by tottime.

Usage: ``.venv/bin/python benchmarks/bench_twin.py [--quick] [--out FILE.json]``.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import multiprocessing as mp
import os
import platform
import pstats
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from datetime import date
from pathlib import Path

# One BLAS thread per process (as FFT workers=1): set before numpy loads, so 2 processes do not
# oversubscribe the 2 cores. Override from the environment if wanted.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.fft as sfft  # noqa: E402

from hemotwin.twin.profiles import ScannerProfile, load_profile  # noqa: E402
from hemotwin.twin.render import psf_margin_px, render  # noqa: E402
from hemotwin.twin.specimen import FieldSpec, compose_field, make_cell_specimen, rasterize  # noqa: E402

CODES = ("NGS", "LYT", "MON", "EOS", "BAS", "MYB", "PMO", "EBO")
N_ABSORBERS = 4

_PROFILE: ScannerProfile | None = None
_SIZE = 256


def _machine() -> dict:
    model = ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "")
    except (OSError, subprocess.SubprocessError):
        pass
    return {"cpu": model or platform.processor(), "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "scipy": scipy.__version__, "platform": platform.platform(),
            "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS")}


def _timeit(fn, repeats: int) -> dict:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return {"median_s": statistics.median(times), "min_s": min(times), "repeats": repeats}


# ------------------------------------------------------------------------------ crops


def _crop(i: int) -> None:
    prof = _PROFILE
    spec = make_cell_specimen(CODES[i % len(CODES)], size_um=_SIZE * prof.camera.um_per_px, seed=i)
    render(spec, prof, seed=i, workers=1)


def _crops_serial(n: int, offset: int = 0) -> None:
    for i in range(n):
        _crop(offset + i)


def _crops_pool(pool, n: int, offset: int = 0) -> None:
    list(pool.imap_unordered(_crop, range(offset, offset + n), chunksize=max(1, n // 16)))


def _split(prof: ScannerProfile, n: int) -> dict:
    """Per-crop time of each stage (serial), median over ``n`` crops."""
    fine = prof.camera.um_per_px / prof.camera.oversample
    shape = (_SIZE * prof.camera.oversample,) * 2
    t_spec, t_rast, t_rend = [], [], []
    for i in range(n):
        t0 = time.perf_counter()
        spec = make_cell_specimen(CODES[i % len(CODES)], size_um=_SIZE * prof.camera.um_per_px, seed=1000 + i)
        t1 = time.perf_counter()
        maps = rasterize(spec, um_per_px=fine, shape=shape)
        t2 = time.perf_counter()
        render(maps, prof, seed=i)
        t3 = time.perf_counter()
        t_spec.append(t1 - t0)
        t_rast.append(t2 - t1)
        t_rend.append(t3 - t2)
    med = {k: statistics.median(v) * 1e3 for k, v in
           (("specimen_ms", t_spec), ("rasterize_ms", t_rast), ("render_ms", t_rend))}
    med["total_ms"] = sum(med.values())
    return {k: round(v, 2) for k, v in med.items()}


# ------------------------------------------------------------------------------ kernel bound


def _kernel(prof: ScannerProfile, size: int):
    """Closure running the bare per-band kernel once on a ``size``² grid padded like the render."""
    fine = prof.camera.um_per_px / prof.camera.oversample
    h = w = size * prof.camera.oversample
    margin = psf_margin_px(prof, fine)
    ph, pw = sfft.next_fast_len(h + 2 * margin, real=True), sfft.next_fast_len(w + 2 * margin, real=True)
    nb = prof.spectral.n_bands
    rng = np.random.default_rng(0)
    absorbers = rng.random((N_ABSORBERS, ph * pw), dtype=np.float32) * np.float32(0.5)
    ext = rng.random((nb, N_ABSORBERS), dtype=np.float32)
    weights = rng.random((3, nb), dtype=np.float32)
    fy = np.fft.fftfreq(ph)[:, None]
    fx = np.fft.rfftfreq(pw)[None, :]
    otfs = [np.exp(-(fy**2 + fx**2) * (50.0 + b)).astype(np.complex64) for b in range(nb)]  # cached OTFs
    ln10 = np.float32(-np.log(10.0))

    def run() -> np.ndarray:
        od = ext @ absorbers  # nb x HW
        np.multiply(od, ln10, out=od)
        np.exp(od, out=od)
        t = od.reshape(nb, ph, pw)
        acc = np.zeros((3, ph, pw // 2 + 1), dtype=np.complex64)
        for b in range(nb):
            spec = sfft.rfft2(t[b], workers=1)
            spec *= otfs[b]
            for k in range(3):
                acc[k] += weights[k, b] * spec
        return sfft.irfft2(acc, s=(ph, pw), axes=(1, 2), workers=1)

    return run, (ph, pw)


# ------------------------------------------------------------------------------ main


def _with_groups(prof: ScannerProfile, groups: int) -> ScannerProfile:
    d = prof.to_dict()
    d["spectral"]["psf_groups"] = groups
    d["name"] = f"{prof.name}-groups{groups}"
    return ScannerProfile.from_dict(d, source="bench_twin")


def main(argv: list[str] | None = None) -> dict:
    global _PROFILE
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="analyzer-100x")
    ap.add_argument("--quick", action="store_true", help="fewer crops and repeats (~1 min)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    prof = load_profile(args.profile)
    exact = _with_groups(prof, prof.spectral.n_bands)
    n_crops, repeats, n_fields = (16, 3, 2) if args.quick else (48, 5, 4)
    field_side = 1024 * prof.camera.um_per_px

    # --- crops, 1 and 2 processes
    _PROFILE = prof
    _crops_serial(4)  # warm caches (PSFs, spectral setup)
    serial = _timeit(lambda: _crops_serial(n_crops, 100), repeats)
    ctx = mp.get_context("fork")
    with ctx.Pool(2) as pool:
        _crops_pool(pool, 8)
        par = _timeit(lambda: _crops_pool(pool, n_crops, 200), repeats)
    split = _split(prof, n_crops)
    _PROFILE = exact
    _crops_serial(2)
    serial_exact = _timeit(lambda: _crops_serial(n_crops, 100), max(2, repeats - 2))
    split_exact = _split(exact, max(8, n_crops // 2))
    _PROFILE = prof

    # --- kernel bound, crop and field
    k_crop, crop_pad = _kernel(prof, 256)
    k_crop()
    kern_crop = _timeit(k_crop, repeats * 4)
    k_field, field_pad = _kernel(prof, 1024)
    k_field()
    kern_field = _timeit(k_field, repeats)
    del k_field

    # --- fields
    fspec = FieldSpec(height_um=field_side, width_um=field_side, wbc_count=3)
    fine = prof.camera.um_per_px / prof.camera.oversample
    specimens = [compose_field(fspec, seed=s) for s in range(n_fields)]
    maps = [rasterize(s, um_per_px=fine, shape=(1024 * prof.camera.oversample,) * 2) for s in specimens]
    render(maps[0], prof, seed=0)
    field_render = _timeit(lambda: [render(m, prof, seed=1) for m in maps], repeats)
    field_render_exact = _timeit(lambda: [render(m, exact, seed=1) for m in maps], max(2, repeats - 2))
    field_e2e = _timeit(lambda: [render(compose_field(fspec, seed=s), prof, seed=s) for s in range(n_fields)],
                        max(2, repeats - 2))
    tracemalloc.start()
    render(maps[0], prof, seed=2)
    _, peak_render = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    tracemalloc.start()
    render(compose_field(fspec, seed=7), prof, seed=2)
    _, peak_e2e = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    # --- profile of crop renders (render only, from absorber maps)
    cmaps = [rasterize(make_cell_specimen(CODES[i % len(CODES)], size_um=_SIZE * prof.camera.um_per_px, seed=i),
                       um_per_px=fine, shape=(_SIZE * prof.camera.oversample,) * 2) for i in range(16)]
    pr = cProfile.Profile()
    pr.enable()
    for i, m in enumerate(cmaps):
        render(m, prof, seed=i)
    pr.disable()
    st = pstats.Stats(pr)
    total = st.total_tt
    rows = sorted(st.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:5]
    top = [{"function": f"{Path(fn).name}:{line}({name})", "tottime_s": round(tt, 4),
            "share": round(tt / total, 3), "calls": nc} for (fn, line, name), (_, nc, tt, _, _) in rows]
    pr_e2e = cProfile.Profile()
    pr_e2e.enable()
    _crops_serial(16, 500)
    pr_e2e.disable()
    st2 = pstats.Stats(pr_e2e)
    rows2 = sorted(st2.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:5]
    top_e2e = [{"function": f"{Path(fn).name}:{line}({name})", "tottime_s": round(tt, 4),
                "share": round(tt / st2.total_tt, 3), "calls": nc} for (fn, line, name), (_, nc, tt, _, _) in rows2]

    crop_ms_1 = serial["median_s"] / n_crops * 1e3
    crop_ms_exact = serial_exact["median_s"] / n_crops * 1e3
    kc_ms = kern_crop["median_s"] * 1e3
    kf_ms = kern_field["median_s"] * 1e3
    fr_ms = field_render["median_s"] / n_fields * 1e3
    fre_ms = field_render_exact["median_s"] / n_fields * 1e3
    fe_ms = field_e2e["median_s"] / n_fields * 1e3
    cps2 = n_crops / par["median_s"]
    doc = {
        "benchmark": "twin_throughput", "date": date.today().isoformat(), "machine": _machine(),
        "profile": args.profile, "n_bands": prof.spectral.n_bands, "psf_groups": prof.spectral.psf_groups,
        "quick": args.quick, "crop_px": _SIZE, "crops_per_timing": n_crops, "fields_per_timing": n_fields,
        "crops": {
            "end_to_end_ms_per_crop_1proc": round(crop_ms_1, 2),
            "crops_per_s_1proc": round(1e3 / crop_ms_1, 1),
            "crops_per_s_2proc": round(cps2, 1),
            "parallel_speedup_2proc": round(cps2 * crop_ms_1 / 1e3, 2),
            "split_ms_per_crop_1proc": split,
            "exact_psf_groups_eq_n_bands": {"end_to_end_ms_per_crop_1proc": round(crop_ms_exact, 2),
                                             "split_ms_per_crop_1proc": split_exact},
        },
        "fields_1024": {
            "render_only_ms": round(fr_ms, 1), "render_only_fields_per_s": round(1e3 / fr_ms, 2),
            "end_to_end_ms": round(fe_ms, 1), "end_to_end_fields_per_s": round(1e3 / fe_ms, 2),
            "render_only_exact_psf_ms": round(fre_ms, 1),
            "peak_tracemalloc_mib_render": round(peak_render / 2**20, 1),
            "peak_tracemalloc_mib_end_to_end": round(peak_e2e / 2**20, 1),
            "ru_maxrss_mib_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        },
        "kernel_bound": {
            "definition": f"{N_ABSORBERS} absorbers, {prof.spectral.n_bands} bands: OD matmul + in-place exp "
                          "(float32) + rfft2 per band + OTF multiply-accumulate into 3 channels + 3 irfft2, "
                          "scipy.fft workers=1, padded like render (psf_margin_px + next_fast_len)",
            "crop_256_padded": list(crop_pad), "crop_ms": round(kc_ms, 2),
            "field_1024_padded": list(field_pad), "field_ms": round(kf_ms, 1),
        },
        "ratios": {
            "crop_render_over_kernel": round(split["render_ms"] / kc_ms, 2),
            "crop_end_to_end_over_kernel": round(crop_ms_1 / kc_ms, 2),
            "crop_exact_render_over_kernel": round(split_exact["render_ms"] / kc_ms, 2),
            "field_render_over_kernel": round(fr_ms / kf_ms, 2),
            "field_end_to_end_over_kernel": round(fe_ms / kf_ms, 2),
            "field_exact_render_over_kernel": round(fre_ms / kf_ms, 2),
        },
        "targets": {
            "crops_per_s_2proc_ge_150": cps2 >= 150,
            "crop_end_to_end_within_2x_kernel": crop_ms_1 / kc_ms <= 2.0,
            "crop_render_within_2x_kernel": split["render_ms"] / kc_ms <= 2.0,
        },
        "profile_top5_tottime": {"crop_render_only_16": top, "crop_end_to_end_16": top_e2e},
        "elapsed_s": round(time.perf_counter() - t_start, 1),
    }
    text = json.dumps(doc, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    sys.stderr.write(f"crops/s 1proc {doc['crops']['crops_per_s_1proc']}, 2proc {doc['crops']['crops_per_s_2proc']}; "
                     f"kernel {kc_ms:.2f} ms/crop; ratios {json.dumps(doc['ratios'])}\n")
    return doc


if __name__ == "__main__":
    main()
