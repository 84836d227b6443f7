"""Realism of the twin against real CellaVision crops (PBC): colour per compartment and sizes.

For each white-cell class shared with PBC, ``--n`` real images and ``--n`` twin crops (``--profile``,
360 x 360 px, seeds 0..n-1) are segmented by the *same* threshold segmenter (``_segment.py``) into
background / red cells / nucleus / cytoplasm. Reported per class and compartment: the median CIE Lab
(median over images of the per-image median) on both sides and their CIEDE2000 difference (target
<= 10); white-cell and red-cell diameters in µm (twin median vs real median and IQR; pass = twin
median inside the real IQR). PBC's pixel size is not in the files: it is estimated with the red-cell
ruler, 7.5 µm / median red-cell equivalent diameter in px (docs/optics.md §1), so the real red-cell
median is 7.5 µm by construction and the red-cell check tests the twin against the real spread.

The segmenter is validated on the twin crops against the twin's exact ground truth (IoU per
compartment) — that is the anchor showing the thresholds are sane.

Usage: ``.venv/bin/python benchmarks/bench_realism.py [--n 40] [--profile analyzer-100x]
[--pbc /work/shared/data/pbc] [--out realism.json]``. JSON on stdout, a table on stderr.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.color import deltaE_ciede2000, rgb2lab

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _segment import BACKGROUND, CYTOPLASM, NUCLEUS, RED_CELL, iou, segment

from hemotwin.twin.profiles import load_profile

CLASS_MAP: dict[str, str] = {
    "NGS": "neutrophil", "LYT": "lymphocyte", "MON": "monocyte", "EOS": "eosinophil",
    "BAS": "basophil", "EBO": "erythroblast", "MYB": "ig", "MMZ": "ig", "PMO": "ig",
}
COMPARTMENTS = {"background": BACKGROUND, "red_cell": RED_CELL, "nucleus": NUCLEUS, "cytoplasm": CYTOPLASM}
RBC_UM = 7.5  # median normal red-cell diameter: the internal ruler
NOMINAL_PBC_UM_PER_PX = 0.1  # README: ~0.1 µm/px (CellaVision DM96)
DE_TARGET = 10.0
SIZE_PX = 360

# twin ground-truth compartment codes (hemotwin.twin.specimen.maps.Compartment)
GT_RED, GT_PLT, GT_CYTO, GT_NUC, GT_GRAN = 1, 2, 3, 4, 5


def _measure(rgb: np.ndarray) -> dict:
    seg = segment(rgb)
    lab = rgb2lab(rgb)
    out: dict = {"ok": seg.ok, "wbc_d_px": seg.wbc_diameter_px, "rbc_d_px": seg.rbc_diameters_px, "lab": {}}
    for name, code in COMPARTMENTS.items():
        m = seg.labels == code
        out["lab"][name] = np.median(lab[m], axis=0).tolist() if m.sum() >= 20 else None
    return out, seg


def _real_task(path: str) -> dict:
    rgb = np.asarray(Image.open(path).convert("RGB"))
    return _measure(rgb)[0]


def _safe(fn, arg) -> dict:
    """Run one item; a failure is returned as a record (project exceptions may not pickle)."""
    try:
        return fn(arg)
    except Exception as exc:  # a batch finishes the rest and reports failures
        return {"error": f"{type(exc).__name__}: {exc}", "item": str(arg)}


def _real_item(path: str) -> dict:
    return _safe(_real_task, path)


def _twin_item(args: tuple) -> dict:
    return _safe(_twin_task, args)


def _twin_task(args: tuple) -> dict:
    code, profile_json, seed = args
    from hemotwin.twin.datasets import render_cell
    from hemotwin.twin.profiles import ScannerProfile

    prof = ScannerProfile.model_validate_json(profile_json)
    r = render_cell(code, prof, size_px=SIZE_PX, seed=seed)
    res, seg = _measure(r.image)
    gt = r.compartments
    # central white cell = the wbc mask nearest the centre
    c = (gt.shape[0] // 2, gt.shape[1] // 2)
    wbc = None
    best = np.inf
    for m in r.wbc_masks.values():
        if not m.any():
            continue
        yx = np.argwhere(m).mean(axis=0)
        d = float(np.hypot(yx[0] - c[0], yx[1] - c[1]))
        if d < best:
            best, wbc = d, m
    if wbc is None:
        wbc = np.isin(gt, (GT_CYTO, GT_NUC, GT_GRAN))
    gt_nuc = wbc & (gt == GT_NUC)
    gt_cell = wbc
    # scoring only where the segmenter made a decision (255 = unassigned)
    res["iou"] = {
        "foreground": iou(seg.foreground, gt != 0),
        "background": iou(seg.labels == BACKGROUND, gt == 0),
        "nucleus": iou(seg.nucleus, gt_nuc),
        "white_cell": iou(seg.cell, gt_cell),
        "cytoplasm": iou(seg.labels == CYTOPLASM, gt_cell & ~gt_nuc),
        # precision: fraction of the pixels given a label that truly are that compartment (what the
        # colour medians see); the cytoplasm label is a ring sample, so its IoU is low by design
        "nucleus_precision": _prec(seg.nucleus, gt_nuc),
        "cytoplasm_precision": _prec(seg.labels == CYTOPLASM, gt_cell & ~gt_nuc),
        # precision of the red-cell pixels (only isolated, whole cells are kept)
        "red_cell_precision": float((gt[seg.labels == RED_CELL] == GT_RED).mean())
        if (seg.labels == RED_CELL).any() else float("nan"),
    }
    res["gt_wbc_d_px"] = float(2.0 * np.sqrt(wbc.sum() / np.pi))
    res["um_per_px"] = r.um_per_px
    return res


def _session_profile(base, target_lab: np.ndarray):
    """``base`` with ``processing.wb_error`` fitted so clear glass has ``target_lab``."""
    from scipy.optimize import minimize

    from hemotwin.twin.profiles import ScannerProfile
    from hemotwin.twin.render import optical_image, processing_matrix

    def with_gains(g):
        d = base.to_dict()
        d["processing"]["wb_error"] = [float(v) for v in np.clip(g, 0.5, 2.0)]
        return ScannerProfile.from_dict(d)

    glass = optical_image(np.zeros((4, 8, 8), np.float32), base, um_per_px=base.camera.um_per_px)[:, 4, 4]

    def loss(g):
        # Smooth (unquantised) clear-glass colour, so the optimiser sees a gradient.
        p = with_gains(g)
        lin = processing_matrix(p).astype(float) @ glass
        lin = (lin - p.processing.black_level) / (1.0 - p.processing.black_level)
        rgb = np.clip(lin, 0.0, 1.0) ** (1.0 / p.processing.gamma)
        return float(deltaE_ciede2000(rgb2lab(rgb[None, None])[0, 0], target_lab))

    x0 = np.asarray(base.processing.wb_error, dtype=float)
    best = minimize(loss, x0 * 0.9, method="Nelder-Mead", options={"xatol": 1e-4, "fatol": 0.01, "maxiter": 600})
    return with_gains(best.x)


def _prec(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(truth[pred].mean()) if pred.any() else float("nan")


def _q(values: list[float]) -> dict:
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if v.size == 0:
        return {"n": 0, "median": None, "q25": None, "q75": None}
    q25, med, q75 = np.percentile(v, [25, 50, 75])
    return {"n": int(v.size), "median": round(float(med), 3), "q25": round(float(q25), 3), "q75": round(float(q75), 3)}


def _nanmed(values: list[float]) -> float | None:
    v = np.asarray(values, dtype=float)
    return round(float(np.median(v[np.isfinite(v)])), 3) if np.isfinite(v).any() else None


def _lab_median(rows: list[dict], comp: str) -> list[float] | None:
    vals = [r["lab"][comp] for r in rows if r["lab"][comp] is not None]
    return np.median(np.asarray(vals), axis=0).round(2).tolist() if vals else None


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40, help="images per class, each side")
    ap.add_argument("--profile", default="analyzer-100x")
    ap.add_argument("--pbc", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "pbc"))
    ap.add_argument("--out", default=None, help="also write the JSON here")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-session-wb", action="store_true",
                    help="do not match each PBC folder's white balance (its clear-glass colour)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    pbc = Path(args.pbc)

    folders = sorted(set(CLASS_MAP.values()))
    real_paths = {f: sorted(p for p in (pbc / f).iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
                  [: args.n] for f in folders}
    real_jobs = [str(p) for f in folders for p in real_paths[f]]
    ctx = mp.get_context("fork")
    with ctx.Pool(args.workers) as pool:
        real_all = pool.map(_real_item, real_jobs, chunksize=4)
        # Session white balance: PBC folders were acquired in different sessions whose clear
        # glass differs (the "ig" folder is bluish-white, the others cream). The twin is imaged
        # with the profile's white-balance gains refitted to each folder's median background,
        # a processing parameter of the acquisition, never a change of the rendered colours.
        base = load_profile(args.profile)
        session = {}
        for f in folders:
            bgs = [r["lab"]["background"] for j, r in zip(real_jobs, real_all, strict=True)
                   if "error" not in r and Path(j).parent.name == f and r["lab"]["background"] is not None]
            session[f] = base if args.no_session_wb or not bgs else _session_profile(base, np.median(bgs, axis=0))
        twin_jobs = [(code, session[CLASS_MAP[code]].model_dump_json(), s) for code in CLASS_MAP for s in range(args.n)]
        twin_all = pool.map(_twin_item, twin_jobs, chunksize=2)
    failures = [r for r in real_all + twin_all if "error" in r]
    real_jobs = [j for j, r in zip(real_jobs, real_all, strict=True) if "error" not in r]
    real_res = [r for r in real_all if "error" not in r]
    twin_jobs = [j for j, r in zip(twin_jobs, twin_all, strict=True) if "error" not in r]
    twin_res = [r for r in twin_all if "error" not in r]
    real_by: dict[str, list] = {f: [] for f in folders}
    for path, res in zip(real_jobs, real_res, strict=True):
        real_by[Path(path).parent.name].append(res)
    twin_by: dict[str, list] = {c: [] for c in CLASS_MAP}
    for (code, _, _), res in zip(twin_jobs, twin_res, strict=True):
        twin_by[code].append(res)

    # PBC pixel size from the red-cell ruler (pooled over all real crops).
    real_rbc_px = [d for rows in real_by.values() for r in rows for d in r["rbc_d_px"]]
    pbc_um = RBC_UM / float(np.median(real_rbc_px))
    twin_um = twin_res[0]["um_per_px"]

    classes = {}
    all_de = []
    for code, folder in CLASS_MAP.items():
        real, twin = real_by[folder], twin_by[code]
        comps = {}
        for comp in COMPARTMENTS:
            lr, lt = _lab_median(real, comp), _lab_median(twin, comp)
            de = None
            if lr is not None and lt is not None:
                de = round(float(deltaE_ciede2000(np.asarray(lr), np.asarray(lt))), 2)
                all_de.append(de)
            comps[comp] = {"lab_real": lr, "lab_twin": lt, "delta_e2000": de,
                           "pass": de is not None and de <= DE_TARGET}
        wr = _q([r["wbc_d_px"] * pbc_um for r in real])
        wt = _q([r["wbc_d_px"] * twin_um for r in twin])
        rr = _q([d * pbc_um for r in real for d in r["rbc_d_px"]])
        rt = _q([d * twin_um for r in twin for d in r["rbc_d_px"]])

        def _in(t, r):
            return t["median"] is not None and r["q25"] is not None and r["q25"] <= t["median"] <= r["q75"]

        classes[code] = {
            "pbc_folder": folder, "n_real": len(real), "n_twin": len(twin),
            "segmented_ok": {"real": sum(r["ok"] for r in real), "twin": sum(r["ok"] for r in twin)},
            "compartments": comps,
            "wbc_diameter_um": {"real": wr, "twin": wt, "pass_twin_median_in_real_iqr": _in(wt, wr),
                                "twin_ground_truth": _q([r["gt_wbc_d_px"] * twin_um for r in twin])},
            "rbc_diameter_um": {"real": rr, "twin": rt, "pass_twin_median_in_real_iqr": _in(rt, rr)},
        }

    iou_keys = list(twin_res[0]["iou"])
    seg_val = {k: _q([r["iou"][k] for r in twin_res]) for k in iou_keys}
    seg_val_by_class = {c: {k: _nanmed([r["iou"][k] for r in twin_by[c]]) for k in iou_keys}
                        for c in CLASS_MAP}
    wbc_d_err = [(r["wbc_d_px"] - r["gt_wbc_d_px"]) / r["gt_wbc_d_px"] for r in twin_res if np.isfinite(r["wbc_d_px"])]

    doc = {
        "benchmark": "realism", "date": date.today().isoformat(), "profile": args.profile, "n_per_class": args.n,
        "pbc_dir": str(pbc), "twin_size_px": SIZE_PX, "twin_um_per_px": twin_um,
        "pbc_um_per_px": {
            "estimate": round(pbc_um, 4),
            "method": f"red-cell ruler: {RBC_UM} um / median red-cell equivalent diameter "
                      f"({np.median(real_rbc_px):.1f} px over {len(real_rbc_px)} isolated red cells)",
            "nominal_readme": NOMINAL_PBC_UM_PER_PX,
            "note": "real red-cell median is 7.5 um by construction of the ruler",
        },
        "target": {"delta_e2000_max": DE_TARGET, "diameters": "twin median within real IQR"},
        "session_white_balance": {f: list(session[f].processing.wb_error) for f in folders},
        "segmenter_validation_on_twin": {
            "iou_over_all_twin_crops": seg_val, "median_iou_by_class": seg_val_by_class,
            "wbc_diameter_rel_error_vs_ground_truth": _q(wbc_d_err),
        },
        "classes": classes,
        "summary": {
            "delta_e2000_median": round(float(np.median(all_de)), 2) if all_de else None,
            "delta_e2000_max": max(all_de) if all_de else None,
            "compartments_passing": int(sum(d <= DE_TARGET for d in all_de)), "compartments_total": len(all_de),
            "mean_delta_e_by_compartment": {
                comp: round(float(np.mean([classes[c]["compartments"][comp]["delta_e2000"] for c in classes
                                           if classes[c]["compartments"][comp]["delta_e2000"] is not None])), 2)
                for comp in COMPARTMENTS},
            "wbc_diameter_pass": sum(classes[c]["wbc_diameter_um"]["pass_twin_median_in_real_iqr"] for c in classes),
            "rbc_diameter_pass": sum(classes[c]["rbc_diameter_um"]["pass_twin_median_in_real_iqr"] for c in classes),
            "n_classes": len(classes),
        },
        "failures": failures,
        "elapsed_s": round(time.perf_counter() - t0, 1),
    }
    _table(doc)
    text = json.dumps(doc, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return doc


def _fmt(lab):
    return "      n/a        " if lab is None else f"{lab[0]:5.1f} {lab[1]:5.1f} {lab[2]:5.1f}"


def _table(doc: dict) -> None:
    w = sys.stderr.write
    w(f"PBC um/px (red-cell ruler) = {doc['pbc_um_per_px']['estimate']}; twin um/px = {doc['twin_um_per_px']}\n")
    val = doc["segmenter_validation_on_twin"]["iou_over_all_twin_crops"]
    w("segmenter IoU on twin (median): " + ", ".join(f"{k} {v['median']}" for k, v in val.items()) + "\n")
    w(f"{'class':5} {'compartment':10} {'Lab real':>17} {'Lab twin':>17} {'dE00':>6}\n")
    for code, c in doc["classes"].items():
        for comp, v in c["compartments"].items():
            de = "  n/a" if v["delta_e2000"] is None else f"{v['delta_e2000']:6.1f}"
            w(f"{code:5} {comp:10} {_fmt(v['lab_real'])} {_fmt(v['lab_twin'])} {de}{'' if v['pass'] else ' *'}\n")
    w(f"{'class':5} {'WBC um real med [IQR]':>24} {'twin':>6} {'RBC um real med [IQR]':>24} {'twin':>6}\n")
    for code, c in doc["classes"].items():
        a, b = c["wbc_diameter_um"], c["rbc_diameter_um"]
        w(f"{code:5} {a['real']['median']:8.2f} [{a['real']['q25']:5.2f},{a['real']['q75']:5.2f}] "
          f"{a['twin']['median']:6.2f}{'' if a['pass_twin_median_in_real_iqr'] else '*'} "
          f"{b['real']['median']:8.2f} [{b['real']['q25']:5.2f},{b['real']['q75']:5.2f}] "
          f"{b['twin']['median'] if b['twin']['median'] is not None else float('nan'):6.2f}"
          f"{'' if b['pass_twin_median_in_real_iqr'] else '*'}\n")
    w(f"summary: {json.dumps(doc['summary'])}\n")


if __name__ == "__main__":
    main()
