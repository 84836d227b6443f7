"""Fit the measured-style white-cell generator so that *rendered* twin cells measure like real ones.

The ``"measured"`` style of :func:`hemotwin.twin.specimen.morphology.sample_wbc` draws each
parameter from the morphometry of real cells (``data/morphometry.json``). What
:func:`hemotwin.twin.morphometry.measure_cell` reads back from a rendered crop is not the drawn
parameter: optics blur, soft edges, noise, JPEG-free processing, segmentation and the unmixing all
stand between them. This script closes the loop:

1. real cells (PBC, CellaVision, 0.1 µm/px) are measured with ``measure_cell`` (default basis, as
   ``benchmarks/bench_realism.py`` measures them): a *fit* set kept out of the realism bench's
   hold-out, and the bench's hold-out (``is_morphometry_holdout`` on ``<data set>/<folder>/<file>``) for the
   report only;
2. per round, ``--n`` cells per class are rendered with ``style="measured"`` through
   ``analyzer-100x`` (36 µm crops like a PBC crop) under the current corrections and measured;
3. per class and fitted feature, the correction of the drawing parameter is updated: a scale
   multiplied by real median / twin median (amounts, sizes, densities, contrasts), a spread by
   real IQR / twin IQR, an offset shifted by real median - twin median (spectral slopes, which may
   be negative); each factor is bounded to [1/1.5, 1.5] per round so a noisy round cannot run away;
4. after ``--rounds`` rounds the corrections, with the Kolmogorov–Smirnov distances per class and
   feature against the hold-out (drawn style, measured style uncorrected, measured style fitted;
   fresh seeds), are written to ``src/hemotwin/twin/specimen/data/specimen_fit.json``.

    .venv/bin/python scripts/fit_specimen_priors.py --n 40 --rounds 3 --workers 2
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import multiprocessing as mp
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

SCHEMA = "hemotwin.specimen_fit/1"
PROFILE = "analyzer-100x"
CROP_UM = 36.0  # a PBC crop: 360 px x ~0.1 µm
REAL_UM_PER_PX = 0.1  # PBC README (CellaVision DM96), as scripts/measure_morphometry.py
#: Features whose drawing parameter is multiplied by a fitted scale (and, where drawn directly
#: from the quantiles, whose spread about the median is fitted too).
SCALED = (
    "cell_diameter_um", "nc_ratio", "cell_elongation", "cell_roughness",
    "chromatin_purple", "chromatin_azure_b", "chromatin_eosin", "chromatin_period_um",
    "cytoplasm_purple", "cytoplasm_azure_b", "cytoplasm_eosin", "cytoplasm_cv",
    "granule_density_per_um2", "granule_diameter_um",
    "granule_purple", "granule_azure_b", "granule_eosin",
)
#: Granule amounts are fitted as scales only: their spread is the detector's, not a drawn one.
NO_SPREAD = ("granule_purple", "granule_azure_b", "granule_eosin")
#: Features whose target is shifted by a fitted offset (log-log slopes, negative).
OFFSET = ("chromatin_slope", "cytoplasm_slope")
STEP = 1.5  # largest change of a scale or spread in one round
#: Amounts (and the granule density, off by up to 10x before the fit) may move further per round:
#: their Newton steps follow a measured Jacobian instead of a one-feature ratio.
AMOUNT_STEP = 2.0
DAMPING = 0.7  # share of the Newton step taken (the measured response is not linear)
COMPARTMENTS = ("chromatin", "cytoplasm", "granule")
#: Measured features of each compartment's amounts, in the record's order (purple, azure B, eosin).
AMOUNT_FEATURES = {c: tuple(f"{c}_{a}" for a in ("purple", "azure_b", "eosin")) for c in COMPARTMENTS}
AMOUNTS = tuple(f for fs in AMOUNT_FEATURES.values() for f in fs)
#: A median this close to zero (peak OD, or per µm²) gives no usable ratio.
EPS = 0.03


def _log(msg: str) -> None:
    sys.stderr.write(f"[fit {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


def real_cells(classes: list[str], *, n_fit: int, n_eval: int, seed: int) -> dict[str, dict[str, list]]:
    """Per class: ``fit`` images (out of both hold-out rules) and ``eval`` images (the bench's hold-out)."""
    from measure_morphometry import default_data, list_images

    from hemotwin.twin.morphometry import is_morphometry_holdout

    items = list_images(default_data())
    out: dict[str, dict[str, list]] = {}
    for ci, code in enumerate(classes):
        mine = [(name, path) for name, path, key in items if key == code]
        # One hold-out rule, on "<data set>/<folder>/<file>", for the morphometry, this fit and the bench.
        ev = [p for n, p in mine if is_morphometry_holdout(n)]
        fit = [p for n, p in mine if not is_morphometry_holdout(n)]
        rng = np.random.default_rng([seed, 11, ci])
        out[code] = {"fit": [str(fit[i]) for i in sorted(rng.permutation(len(fit))[:n_fit])],
                     "eval": [str(ev[i]) for i in sorted(rng.permutation(len(ev))[:n_eval])]}
    return out


def _init() -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def _measure_real(path: str) -> dict | None:
    from skimage.io import imread

    from hemotwin.twin.morphometry import measure_cell

    try:
        return measure_cell(imread(path)[..., :3], um_per_px=REAL_UM_PER_PX)
    except Exception:  # an unreadable image is skipped; the counts report it
        return None


def _record_amounts(m) -> dict[str, list[float]]:
    """The drawn absorber amounts of a white-cell record, per compartment (purple, azure B, eosin)."""
    ch, cy = m.chromatin, m.cytoplasm
    g = m.granules[0] if m.granules else None
    return {"chromatin": [ch.density, ch.azure_b, ch.eosin], "cytoplasm": [cy.purple, cy.azure_b, cy.eosin],
            "granule": [g.purple, g.azure_b, g.eosin] if g is not None else [math.nan] * 3}


def _measure_twin(args: tuple) -> dict | None:
    code, seed, style, fit = args
    from hemotwin.twin.morphometry import measure_cell
    from hemotwin.twin.profiles import load_profile
    from hemotwin.twin.render import render
    from hemotwin.twin.specimen import make_cell_specimen
    from hemotwin.twin.specimen.morphology import use_specimen_fit

    prof = load_profile(PROFILE)
    um = prof.camera.um_per_px
    try:
        # As hemotwin.twin.datasets.render_cell, keeping the specimen to read the drawn amounts.
        with use_specimen_fit(fit):
            spec = make_cell_specimen(code, size_um=round(CROP_UM / um) * um, seed=seed, style=style)
        img = render(spec, prof, seed=seed).image
        out = measure_cell(img, um_per_px=um)
        out["_record"] = _record_amounts(spec.object(spec.focus_id).morphology)
        return out
    except Exception:  # a failed cell is skipped; the counts report it
        return None


def twin_features(pool, classes: list[str], *, n: int, seed: int, stream: int, style: str,
                  fit: dict) -> dict[str, list[dict]]:
    jobs = [(c, int(np.random.SeedSequence([seed, stream, ci, k]).generate_state(1)[0] % (2**31 - 1)), style, fit)
            for ci, c in enumerate(classes) for k in range(n)]
    res = pool.map(_measure_twin, jobs, chunksize=4)
    out: dict[str, list[dict]] = {c: [] for c in classes}
    for (c, *_), r in zip(jobs, res, strict=True):
        if r is not None:
            out[c].append(r)
    return out


def _values(rows: list[dict], feature: str) -> np.ndarray:
    v = np.asarray([r.get(feature, math.nan) for r in rows], float)
    return v[np.isfinite(v)]


def _jsonable(x):
    """``x`` with non-finite floats as None (JSON has no NaN)."""
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _median(rows: list[dict], feature: str) -> float | None:
    v = _values(rows, feature)
    return round(float(np.median(v)), 4) if v.size else None


def _iqr(v: np.ndarray) -> float:
    return float(np.subtract(*np.percentile(v, [75, 25]))) if v.size >= 4 else math.nan


_FIELDS = {"chromatin": ("density", "azure_b", "eosin"), "cytoplasm": ("purple", "azure_b", "eosin"),
           "granule": ("purple", "azure_b", "eosin")}


def _with_amount(m, comp: str, k: int, value: float):
    """A copy of record ``m`` with amount ``k`` of ``comp`` set to ``value``."""
    field = _FIELDS[comp][k]
    if comp == "chromatin":
        return m.model_copy(update={"chromatin": m.chromatin.model_copy(update={field: value})})
    if comp == "cytoplasm":
        return m.model_copy(update={"cytoplasm": m.cytoplasm.model_copy(update={field: value})})
    g = m.granules[0].model_copy(update={field: value})
    return m.model_copy(update={"granules": (g, *m.granules[1:])})


def _probe(args: tuple) -> dict | None:
    """Finite-difference Jacobians (measured on drawn amounts) of one cell, per compartment.

    The same seed renders the base cell and each perturbed copy (common random numbers: the
    texture, placement and camera noise are identical), so the differences isolate the response.
    """
    code, seed, fit = args
    from hemotwin.twin.morphometry import measure_cell
    from hemotwin.twin.profiles import load_profile
    from hemotwin.twin.render import render
    from hemotwin.twin.specimen import make_cell_specimen
    from hemotwin.twin.specimen.morphology import use_specimen_fit

    prof = load_profile(PROFILE)
    um = prof.camera.um_per_px
    try:
        with use_specimen_fit(fit):
            spec = make_cell_specimen(code, size_um=round(CROP_UM / um) * um, seed=seed, style="measured")
        fid = spec.focus_id
        m = spec.object(fid).morphology

        def measured(rec) -> dict:
            objs = [o if o.id != fid else o.model_copy(update={"morphology": rec}) for o in spec.objects]
            return measure_cell(render(spec.model_copy(update={"objects": objs}), prof, seed=seed).image, um_per_px=um)

        base = measured(m)
        rec = _record_amounts(m)
        out = {}
        for comp in COMPARTMENTS:
            if comp == "granule" and not m.granules:
                continue
            j = np.full((3, 3), np.nan)
            for k in range(3):
                b = rec[comp][k]
                if b <= 0:
                    continue  # a component the prior leaves at zero is not fitted
                delta = 0.2 * b
                pert = measured(_with_amount(m, comp, k, b + delta))
                j[:, k] = [(pert[f] - base[f]) / delta for f in AMOUNT_FEATURES[comp]]
            out[comp] = j.tolist()
        return {"code": code, "jacobians": out}
    except Exception:  # a failed probe is skipped; the class then uses the pooled Jacobian
        return None


def amount_jacobians(pool, classes: list[str], fit: dict, *, seed: int, stream: int,
                     probes: int) -> dict[str, dict[str, list[list[float]]]]:
    """Per class and compartment, the 3 x 3 slope of measured on drawn amounts (mean of ``probes`` cells).

    The unmixed amounts of a rendered cell are far from a diagonal function of the drawn ones (the
    twin's absorbers overlap the basis' components, dark nuclei clip, the segmentation moves with
    the stain); the drawn amounts of one class are coupled (one chromatin level), so a regression
    over cells cannot separate them: finite differences can. Classes whose probes failed get the
    mean over classes.
    """
    jobs = [(c, int(np.random.SeedSequence([seed, stream, ci, 77, k]).generate_state(1)[0] % (2**31 - 1)), fit)
            for ci, c in enumerate(classes) for k in range(probes)]
    res = [r for r in pool.map(_probe, jobs, chunksize=1) if r]
    out: dict[str, dict[str, list[list[float]]]] = {}
    pooled: dict[str, list[np.ndarray]] = {c: [] for c in COMPARTMENTS}
    for code in classes:
        out[code] = {}
        for comp in COMPARTMENTS:
            js = [np.asarray(r["jacobians"][comp]) for r in res if r["code"] == code and comp in r["jacobians"]]
            if js:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN column: unfitted component
                    j = np.nanmean(np.stack(js), axis=0)
                pooled[comp].append(j)
                out[code][comp] = np.round(j, 4).tolist()
    for code in classes:
        for comp in COMPARTMENTS:
            if comp not in out[code] and pooled[comp]:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    out[code][comp] = np.round(np.nanmean(np.stack(pooled[comp]), axis=0), 4).tolist()
    return out


def _newton_amounts(comp: str, jac: list[list[float]], real: list[dict], rows: list[dict],
                    scale: dict[str, float]) -> None:
    """Move the class's drawn amount levels by J^-1 (real - twin median), scales updated in place."""
    feats = AMOUNT_FEATURES[comp]
    r = np.asarray([_median(real, f) if _median(real, f) is not None else math.nan for f in feats], float)
    m = np.asarray([_median(rows, f) if _median(rows, f) is not None else math.nan for f in feats], float)
    rec = np.asarray([r_["_record"][comp] for r_ in rows], float)
    rec = rec[np.all(np.isfinite(rec), axis=1)]
    if rec.size == 0 or not (np.all(np.isfinite(r)) and np.all(np.isfinite(m))):
        return
    b = np.median(rec, axis=0)
    active = b > 1e-6  # a component the prior leaves at zero stays there
    if not active.any():
        return
    j = np.asarray(jac, float)
    active &= np.all(np.isfinite(j), axis=0)
    if not active.any():
        return
    j = j[:, active]
    step = np.linalg.lstsq(j, r - m, rcond=1e-2)[0] * DAMPING
    b_new = b.copy()
    b_new[active] = np.maximum(b[active] + step, 0.02)
    for k, f in enumerate(feats):
        if active[k]:
            factor = float(np.clip(b_new[k] / b[k], 1 / AMOUNT_STEP, AMOUNT_STEP))
            scale[f] = round(float(np.clip(scale.get(f, 1.0) * factor, 0.01, 50.0)), 4)


def update(fit: dict, real: dict[str, list[dict]], twin: dict[str, list[dict]],
           jac: dict[str, dict[str, list[list[float]]]] | None) -> dict:
    """One round of corrections (a new document; ``fit`` is not modified)."""
    out = {"schema": SCHEMA, "classes": {}}
    for code, rows in twin.items():
        old = fit["classes"].get(code, {})
        scale, spread, offset = dict(old.get("scale", {})), dict(old.get("spread", {})), dict(old.get("offset", {}))
        for comp, j in (jac or {}).get(code, {}).items():
            _newton_amounts(comp, j, real[code], rows, scale)
        for f in SCALED + OFFSET:
            r, t = _values(real[code], f), _values(rows, f)
            if min(r.size, t.size) < 8:
                continue
            mr, mt = float(np.median(r)), float(np.median(t))
            if f in AMOUNTS and jac:
                pass  # moved together with the other absorbers of the compartment above
            elif f in OFFSET:
                offset[f] = round(offset.get(f, 0.0) + float(np.clip(mr - mt, -0.5, 0.5)), 4)
            elif abs(mr) > EPS and abs(mt) > EPS and mr * mt > 0:
                step = AMOUNT_STEP if f == "granule_density_per_um2" else STEP
                s = scale.get(f, 1.0) * float(np.clip(mr / mt, 1 / step, step))
                scale[f] = round(float(np.clip(s, 0.05, 20.0)), 4)
            if f not in NO_SPREAD:
                ir, it = _iqr(r), _iqr(t)
                if ir > 0 and it > 0:
                    sp = spread.get(f, 1.0) * float(np.clip(ir / it, 1 / STEP, STEP))
                    # Bounded to [0.5, 2]: the measured IQR also holds segmentation noise, which
                    # wider drawn spreads would turn into implausible cells.
                    spread[f] = round(float(np.clip(sp, 0.5, 2.0)), 4)
        out["classes"][code] = {"scale": scale, "spread": spread, "offset": offset}
    return out


def ks_table(real: dict[str, list[dict]], twin: dict[str, list[dict]]) -> dict:
    """Per class: KS distance per feature (both sides >= 10 finite values), median and max."""
    from scipy.stats import ks_2samp

    from hemotwin.twin.morphometry import FEATURES

    out = {}
    for code in twin:
        per = {}
        for f in FEATURES:
            r, t = _values(real[code], f), _values(twin[code], f)
            if min(r.size, t.size) >= 10:
                per[f] = round(float(ks_2samp(r, t).statistic), 4)
        vals = np.asarray(list(per.values()))
        out[code] = {"ks_median": round(float(np.median(vals)), 4) if vals.size else None,
                     "ks_max": round(float(vals.max()), 4) if vals.size else None,
                     "n_over_0_35": int((vals > 0.35).sum()), "per_feature": per}
    return out


def _summary(table: dict) -> dict:
    allv = np.asarray([v for c in table.values() for v in c["per_feature"].values()])
    return {"ks_median": round(float(np.median(allv)), 4), "ks_max": round(float(allv.max()), 4),
            "n_distances": int(allv.size), "n_over_0_35": int((allv > 0.35).sum())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40, help="twin cells per class and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--real-fit-n", type=int, default=60, help="real cells per class for the fit targets")
    parser.add_argument("--eval-n", type=int, default=60, help="hold-out real (and twin) cells per class for the KS")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--amounts", choices=("ratio", "newton"), default="ratio",
                        help="amount updates: per-absorber median ratios, or Newton steps on finite-difference "
                             "Jacobians (docs/specimen_generator.md: the latter stalls where dark nuclei saturate)")
    parser.add_argument("--probes", type=int, default=2, help="cells per class for the finite-difference Jacobians")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--classes", default="", help="comma-separated codes (default: every measured class)")
    parser.add_argument("--cache", type=Path, default=None, help="JSON cache of the real measurements")
    parser.add_argument("--out", type=Path, default=REPO / "src/hemotwin/twin/specimen/data/specimen_fit.json")
    args = parser.parse_args(argv)

    import hemotwin
    from hemotwin.twin.specimen.morphology import measured_classes

    classes = [c for c in args.classes.split(",") if c] or list(measured_classes())
    t0 = time.perf_counter()
    cells = real_cells(classes, n_fit=args.real_fit_n, n_eval=args.eval_n, seed=args.seed)
    with mp.get_context("fork").Pool(args.workers, initializer=_init) as pool:
        cached = json.loads(args.cache.read_text()) if args.cache and args.cache.is_file() else None
        if cached and cached.get("cells") == cells:
            real_fit, real_eval = cached["fit"], cached["eval"]
        else:
            real_fit, real_eval = {}, {}
            for c in classes:
                real_fit[c] = [r for r in pool.map(_measure_real, cells[c]["fit"], chunksize=4) if r]
                real_eval[c] = [r for r in pool.map(_measure_real, cells[c]["eval"], chunksize=4) if r]
                _log(f"real {c}: {len(real_fit[c])} fit, {len(real_eval[c])} hold-out cells measured")
            if args.cache:
                args.cache.write_text(json.dumps({"cells": cells, "fit": real_fit, "eval": real_eval}))
        identity = {"schema": SCHEMA, "classes": {}}
        eval_n = args.eval_n
        before_drawn = ks_table(real_eval, twin_features(pool, classes, n=eval_n, seed=args.seed, stream=900,
                                                         style="drawn", fit=identity))
        _log(f"drawn style vs hold-out: {_summary(before_drawn)}")
        fit = identity
        history = []
        before_measured = None
        for rnd in range(args.rounds):
            twin = twin_features(pool, classes, n=args.n, seed=args.seed, stream=rnd, style="measured", fit=fit)
            fit_ks = _summary(ks_table(real_fit, twin))
            medians = {c: {f: [_median(real_fit[c], f), _median(twin[c], f)] for f in SCALED + OFFSET}
                       for c in classes}
            history.append({"round": rnd, "n_twin": {c: len(v) for c, v in twin.items()}, "ks_vs_fit_set": fit_ks,
                            "median_real_vs_twin": medians})
            _log(f"round {rnd}: KS vs fit set {fit_ks}")
            if rnd == 0:
                before_measured = ks_table(real_eval, twin_features(pool, classes, n=eval_n, seed=args.seed,
                                                                    stream=901, style="measured", fit=identity))
                _log(f"measured style, uncorrected, vs hold-out: {_summary(before_measured)}")
            jac = None
            if args.amounts == "newton":
                jac = amount_jacobians(pool, classes, fit, seed=args.seed, stream=rnd, probes=args.probes)
                history[-1]["jacobians"] = jac
            fit = update(fit, real_fit, twin, jac)
        after = ks_table(real_eval, twin_features(pool, classes, n=eval_n, seed=args.seed, stream=902,
                                                  style="measured", fit=fit))
        _log(f"measured style, fitted, vs hold-out: {_summary(after)}")
    doc = {
        "schema": SCHEMA,
        "version": hemotwin.__version__,
        "provenance": {
            "script": "scripts/fit_specimen_priors.py",
            "date": dt.date.today().isoformat(),
            "profile": PROFILE, "crop_um": CROP_UM, "real_um_per_px": REAL_UM_PER_PX,
            "rounds": args.rounds, "n_twin_per_class_and_round": args.n, "seed": args.seed,
            "real_fit_cells": {c: len(v) for c, v in real_fit.items()},
            "real_holdout_cells": {c: len(v) for c, v in real_eval.items()},
            "fit_set_rule": "not is_morphometry_holdout('<data set>/<folder>/<file>')",
            "holdout_rule": "is_morphometry_holdout('<data set>/<folder>/<file>'), as benchmarks/bench_realism.py",
            "update": f"scale *= clip(real/twin median, 1/{STEP}, {STEP}); spread *= clip(real/twin IQR, ...); "
                      "offset += clip(real - twin median, -0.5, 0.5)",
            "amounts": args.amounts,
            "history": history,
            "ks_holdout": {
                "drawn": {"summary": _summary(before_drawn), "per_class": before_drawn},
                "measured_uncorrected": {"summary": _summary(before_measured), "per_class": before_measured},
                "measured_fitted": {"summary": _summary(after), "per_class": after},
            },
            "seconds": round(time.perf_counter() - t0, 1),
        },
        "classes": fit["classes"],
    }
    doc = _jsonable(doc)
    args.out.write_text(json.dumps(doc, indent=1, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
    print(json.dumps({k: doc["provenance"]["ks_holdout"][k]["summary"] for k in doc["provenance"]["ks_holdout"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
