"""Accuracy and speed of :func:`hemotwin.vision.detect.detect_cells`.

Measured:

- **twin fields** under every preset (and ``--randomize`` neighbours of each): 102.4 µm square
  fields holding 5 white cells whose classes cycle through all 15 codes (so every class appears
  ~equally often), normal red-cell density; white-cell recall and precision at IoU >= 0.5 against
  the exact whole-cell ground-truth masks (greedy one-to-one matching by IoU), per-class recall,
  median IoU, and the red-cell count error (%) against the red cells whose centre lies in the field;
- **BCCD** real fields (``shared/data/bccd``, VOC boxes, 0.0725 µm/px from its annotated red-cell
  boxes): white-cell AP50 (VOC all-point interpolation, boxes) and recall at IoU 0.5; the same
  at the red-cell-ruler pixel size would differ by ~20 % in scale only;
- **speed** on one core (BLAS and FFT single-threaded): fields/s for a 1024² analyzer-100x field
  and a 640 x 480 BCCD field;
- with ``--quality``: the focus ratio of :func:`hemotwin.diagnosis.quality.field_quality` against
  defocus per preset.

Usage: ``.venv/bin/python benchmarks/bench_detection.py [--fields 24] [--quick] [--parts plain,random,bccd,speed]
[--out FILE.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from hemotwin.diagnosis.quality import field_quality  # noqa: E402
from hemotwin.twin.profiles import list_presets, load_profile, randomize  # noqa: E402
from hemotwin.twin.render import render  # noqa: E402
from hemotwin.twin.specimen import LEUKOCYTE_CLASSES, FieldSpec, compose_field  # noqa: E402
from hemotwin.vision.detect import detect_cells  # noqa: E402

FIELD_UM = 102.4
WBC_PER_FIELD = 5
BCCD_UM_PER_PX = 0.0725


def shared_data() -> Path:
    env = os.environ.get("HEMOTWIN_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    u = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / u) if u else 0.0


def _box_iou(a, b) -> float:
    iy = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ix = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iy * ix
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / ua if ua > 0 else 0.0


def _match(iou: np.ndarray, thr: float = 0.5) -> list[tuple[int, int]]:
    """Greedy one-to-one matching (gt, det) by descending IoU >= thr."""
    pairs = []
    used_g, used_d = set(), set()
    for flat in np.argsort(-iou, axis=None):
        g, d = np.unravel_index(flat, iou.shape)
        if iou[g, d] < thr:
            break
        if g in used_g or d in used_d:
            continue
        used_g.add(g)
        used_d.add(d)
        pairs.append((int(g), int(d)))
    return pairs


def twin_fields(profile_name: str, n_fields: int, *, randomize_strength: float = 0.0, seed: int = 0) -> dict:
    base = load_profile(profile_name)
    tp = fp = fn = 0
    per_class: dict[str, list[int]] = {c: [0, 0] for c in LEUKOCYTE_CLASSES}
    ious: list[float] = []
    rbc_err: list[float] = []
    misses: list[str] = []
    t_det = 0.0
    for i in range(n_fields):
        prof = randomize(base, np.random.default_rng([seed, i, 7]), randomize_strength) \
            if randomize_strength > 0 else base
        labels = tuple(LEUKOCYTE_CLASSES[(i * WBC_PER_FIELD + k) % len(LEUKOCYTE_CLASSES)]
                       for k in range(WBC_PER_FIELD))
        spec = FieldSpec(height_um=FIELD_UM, width_um=FIELD_UM, wbc_labels=labels)
        sp = compose_field(spec, seed=seed * 1000 + i)
        r = render(sp, prof, seed=seed * 1000 + i)
        t0 = time.perf_counter()
        det = detect_cells(r.image, um_per_px=r.um_per_px)
        t_det += time.perf_counter() - t0
        h, w = r.image.shape[:2]
        gts = [(o.label, r.wbc_masks[o.id]) for o in sp.objects if o.kind == "wbc" and o.id in r.wbc_masks]
        dmasks = []
        for d in det.wbc:
            m = np.zeros((h, w), bool)
            r0, c0, r1, c1 = d.bbox
            m[r0:r1, c0:c1] = d.mask
            dmasks.append(m)
        iou = np.array([[_iou(g, m) for m in dmasks] for _, g in gts]).reshape(len(gts), len(dmasks))
        pairs = _match(iou)
        matched_g = {g for g, _ in pairs}
        tp += len(pairs)
        fn += len(gts) - len(pairs)
        fp += len(dmasks) - len(pairs)
        for g, (lab, _) in enumerate(gts):
            per_class[lab][1] += 1
            if g in matched_g:
                per_class[lab][0] += 1
            else:
                best = float(iou[g].max()) if iou.shape[1] else 0.0
                misses.append(f"field {i} {lab} best IoU {best:.2f}")
        ious += [float(iou[g, d]) for g, d in pairs]
        n_gt = sum(1 for o in sp.objects if o.kind == "rbc"
                   and 0 <= o.center_um[0] < FIELD_UM and 0 <= o.center_um[1] < FIELD_UM)
        rbc_err.append(100.0 * (det.n_rbc - n_gt) / n_gt)
    return {
        "profile": profile_name + (f" (randomize {randomize_strength})" if randomize_strength else ""),
        "um_per_px": base.camera.um_per_px, "fields": n_fields, "wbc": tp + fn, "tp": tp, "fp": fp, "fn": fn,
        "recall": round(tp / max(1, tp + fn), 4), "precision": round(tp / max(1, tp + fp), 4),
        "median_iou": round(float(np.median(ious)), 3) if ious else None,
        "rbc_count_error_pct": {"mean": round(float(np.mean(rbc_err)), 2),
                                "mean_abs": round(float(np.mean(np.abs(rbc_err))), 2),
                                "min": round(float(np.min(rbc_err)), 2), "max": round(float(np.max(rbc_err)), 2)},
        "recall_per_class": {c: f"{a}/{b}" for c, (a, b) in per_class.items() if b},
        "misses": misses, "detect_s_per_field": round(t_det / n_fields, 4),
    }


def _voc_wbc(xml_path: Path) -> list[tuple[float, float, float, float]]:
    out = []
    for o in ET.parse(xml_path).findall("object"):
        if o.findtext("name", "").strip().upper() != "WBC":
            continue
        b = o.find("bndbox")
        x0, y0, x1, y1 = (float(b.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        out.append((y0, x0, y1 + 1, x1 + 1))  # VOC corners are inclusive pixels
    return out


def _ap_voc(scores: list[float], is_tp: list[bool], n_gt: int) -> float:
    if n_gt == 0:
        return float("nan")
    order = np.argsort(-np.asarray(scores), kind="stable")
    tp = np.asarray(is_tp, float)[order]
    ctp, cfp = np.cumsum(tp), np.cumsum(1 - tp)
    rec = ctp / n_gt
    prec = ctp / np.maximum(ctp + cfp, 1e-9)
    mrec = np.concatenate([[0], rec, [1]])
    mpre = np.concatenate([[0], prec, [0]])
    for k in range(len(mpre) - 2, -1, -1):
        mpre[k] = max(mpre[k], mpre[k + 1])
    idx = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]).sum())


def bccd(limit: int | None = None) -> dict | None:
    from PIL import Image

    root = shared_data() / "bccd" / "BCCD"
    if not root.exists():
        return None
    xmls = sorted((root / "Annotations").glob("*.xml"))[:limit]
    scores: list[float] = []
    is_tp: list[bool] = []
    n_gt = n_hit = 0
    t_det = 0.0
    n_img = 0
    fails: list[str] = []
    for xp in xmls:
        jp = root / "JPEGImages" / (xp.stem + ".jpg")
        if not jp.exists():
            continue
        rgb = np.asarray(Image.open(jp).convert("RGB"))
        gts = _voc_wbc(xp)
        t0 = time.perf_counter()
        det = detect_cells(rgb, um_per_px=BCCD_UM_PER_PX)
        t_det += time.perf_counter() - t0
        n_img += 1
        boxes = [d.bbox for d in det.wbc]
        iou = np.array([[_box_iou(g, b) for b in boxes] for g in gts]).reshape(len(gts), len(boxes))
        # AP: detections in score order claim the best still-free ground truth (VOC protocol).
        taken: set[int] = set()
        for d in np.argsort([-x.score for x in det.wbc], kind="stable"):
            best, gbest = 0.5, -1
            for g in range(len(gts)):
                if g not in taken and iou[g, d] >= best:
                    best, gbest = iou[g, d], g
            scores.append(det.wbc[d].score)
            is_tp.append(gbest >= 0)
            if gbest >= 0:
                taken.add(gbest)
        n_gt += len(gts)
        n_hit += len(taken)
        if len(taken) < len(gts) or len(boxes) > len(taken):
            fails.append(f"{xp.stem}: gt {len(gts)} det {len(boxes)} matched {len(taken)}")
    n_fp = int(len(is_tp) - sum(is_tp))
    return {"images": n_img, "wbc_boxes": n_gt, "ap50": round(_ap_voc(scores, is_tp, n_gt), 4),
            "recall_iou50": round(n_hit / max(1, n_gt), 4), "false_positives": n_fp,
            "precision_iou50": round(sum(is_tp) / max(1, len(is_tp)), 4),
            "um_per_px": BCCD_UM_PER_PX, "detect_s_per_field": round(t_det / max(1, n_img), 4),
            "failures": fails}


def speed(repeats: int = 5) -> dict:
    from threadpoolctl import threadpool_limits

    out = {}
    with threadpool_limits(1):
        prof = load_profile("analyzer-100x")
        sp = compose_field(FieldSpec(height_um=102.4, width_um=102.4, wbc_count=4), seed=1)
        img = render(sp, prof, seed=1).image
        detect_cells(img, um_per_px=0.1)
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            detect_cells(img, um_per_px=0.1)
            ts.append(time.perf_counter() - t0)
        out["analyzer_1024_fields_per_s"] = round(1.0 / float(np.median(ts)), 2)
        jp = shared_data() / "bccd" / "BCCD" / "JPEGImages" / "BloodImage_00000.jpg"
        if jp.exists():
            from PIL import Image

            rgb = np.asarray(Image.open(jp).convert("RGB"))
            detect_cells(rgb, um_per_px=BCCD_UM_PER_PX)
            ts = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                detect_cells(rgb, um_per_px=BCCD_UM_PER_PX)
                ts.append(time.perf_counter() - t0)
            out["bccd_640x480_fields_per_s"] = round(1.0 / float(np.median(ts)), 2)
    return out


def quality_vs_defocus() -> dict:
    out = {}
    sp = compose_field(FieldSpec(height_um=60.0, width_um=60.0, wbc_labels=("NGS", "LYT")), seed=3)
    for name in list_presets():
        p = load_profile(name)
        row = {}
        for dz in (0.0, 0.5, 1.0, 2.0):
            q = p.model_copy(update={"optics": p.optics.model_copy(update={"defocus_um": dz})})
            row[str(dz)] = field_quality(render(sp, q, seed=3).image, um_per_px=p.camera.um_per_px)["focus"]["value"]
        out[name] = row
    return out


def pooled(rows: list[dict]) -> dict:
    """White-cell recall and precision pooled over twin rows (summed counts)."""
    tp, fp, fn = (sum(r[k] for r in rows) for k in ("tp", "fp", "fn"))
    return {"fields": sum(r["fields"] for r in rows), "wbc": tp + fn, "recall": round(tp / max(1, tp + fn), 4),
            "precision": round(tp / max(1, tp + fp), 4)}


PARTS = ("plain", "random", "bccd", "speed")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fields", type=int, default=24, help="twin fields per preset")
    ap.add_argument("--randomize", type=float, default=0.5, help="strength of the randomised-profile variant")
    ap.add_argument("--bccd-limit", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="6 fields per preset, 40 BCCD images")
    ap.add_argument("--quality", action="store_true", help="also the focus ratio against defocus")
    ap.add_argument("--parts", default=",".join(PARTS),
                    help="comma-separated subset of plain,random,bccd,speed (split a long run into pieces)")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    parts = {p.strip() for p in a.parts.split(",") if p.strip()}
    if not parts <= set(PARTS):
        ap.error(f"--parts: unknown {sorted(parts - set(PARTS))}")
    n = 6 if a.quick else a.fields
    lim = 40 if a.quick else a.bccd_limit
    t0 = time.time()
    twin = [twin_fields(p, n) for p in list_presets()] if "plain" in parts else []
    if a.randomize > 0 and "random" in parts:
        twin += [twin_fields(p, n, randomize_strength=a.randomize, seed=1) for p in list_presets()]
    doc = {
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cores": os.cpu_count()},
        "twin": twin,
        "twin_pooled": pooled(twin) if twin else None,
        "bccd": bccd(lim) if "bccd" in parts else None,
        "speed_one_core": speed() if "speed" in parts else None,
    }
    if a.quality:
        doc["focus_vs_defocus"] = quality_vs_defocus()
    doc["wall_s"] = round(time.time() - t0, 1)
    text = json.dumps(doc, indent=2)
    if a.out:
        a.out.write_text(text)
    print(text)
    return doc


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
