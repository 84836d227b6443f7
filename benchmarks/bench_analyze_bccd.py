"""Smear analysis on real fields: ``analyze`` on BCCD's 364 fields, scored against its labels and boxes.

The measure "smear analysis on real fields". The library's :func:`hemotwin.diagnosis.analyze.analyze`
runs once on the BCCD fields as **one sample** (``BCCD/JPEGImages``, 640 x 480 JPEGs from another
microscope) at ``--um-per-px`` (0.0725 µm/px, from BCCD's annotated red-cell boxes; the files carry no
pixel size), with ``--workers`` field processes. Measured:

1. **Pooled differential.** The report's differential (its counted cells: referred cells are not
   counted) collapsed to BCCD's five classes with ``taxonomy.resolve_label(code, label_set="wbc5")``
   (NGS/NGB -> neutrophil, LYT/LYA -> lymphocyte, MON, EOS, BAS); the codes outside those classes
   (blasts, promyelocytes, myelocytes, metamyelocytes, EBO, KSC) are reported as their own share
   ("outside"). Percent of the counted calls (all 15 codes, so the five classes and "outside" add to
   100), and, for reference, renormalised within the five classes. Against BCCD's labels pooled over
   the same fields: ``all`` (every label token of ``manifest_detection.csv``, one per labelled white
   cell; multi-label fields give one per token) and ``audited`` (the fields whose crop the visual audit
   ``benchmarks/data/bccd_label_audit.csv`` calls ``consistent``). Reported: the absolute difference
   in points for neutrophils, lymphocytes and eosinophils; target: within 5 points on the audited
   labels. Because the report's differential covers every field and the audited labels only 291 of
   them, ``matched`` repeats the comparison on the same cells: the counted calls of the cells matched
   to a labelled box, against those boxes' labels (all, and audited-consistent only).
2. **Flags.** Every flag's state; pass when none of ``nrbc``, ``cll_pattern`` (the smudge-cell flag),
   ``blasts_ge_20``, ``blasts_10_19``, ``blasts_5_19_blood``, ``apl_pattern`` (blast equivalents) is
   positive (BCCD holds no blast, NRBC or smudge-cell label).
3. **Review list against per-cell truth.** Each analysed cell (``cells[]`` of the report: centroid
   ``[row, col]`` in field pixels) is matched to the white-cell (``WBC``) boxes of its field (VOC XML
   named in ``manifest_detection.csv``): the box that contains the centroid (nearest box centre when
   several do), else the nearest box centre within a white cell's radius (7 µm, ~97 px at 0.0725).
   A box's truth is its field's label when the field names one type (``NEUTROPHIL, NEUTROPHIL``
   included); in a field labelled with two types the box-to-label pairing is unknown and a call counts
   as right when it is one of the field's types (``mixed`` cells, counted separately too). Calls are
   collapsed to wbc5 as above (a call outside the five classes is wrong). Counted: wrong / right calls
   on the review list and off it; pass when the review list holds more wrong than right calls. Also
   detection recall (boxes with a matched analysed cell; cells cut by the field edge are not
   analysed, so recall is also given for boxes clear of the edge) and the analysis's cells/s.
4. **Provenance**: model file and SHA-256, date, pixel size, fields, near-duplicate fields.

BCCD's white-cell types are image-level labels of unverified origin (``shared/data/bccd/README.md``);
the audit is an engineer's second opinion, not ground truth (``benchmarks/data/README.md``).

Usage::

    .venv/bin/python benchmarks/bench_analyze_bccd.py [--model FILE.hemo] [--um-per-px 0.0725]
        [--workers 2] [--threads 2] [--subset all|scored] [--fields N] [--report-dir DIR]
        [--out RESULT.json]

``--fields N`` analyses the first N fields (sorted by name) only, for a quick check. ``--subset scored``
keeps the 341 fields with one labelled box (a scored crop), the fields of docs/diagnosis.md's evidence-rule
table: ``--subset scored --fields 40`` is its "first 40 fields" row (32 matched cells, review list 21 wrong /
3 right, 1 / 7 off it), ``--subset scored`` its two rows together. Runs in well under a minute on 2 cores.
Prints JSON (with ``cells.per_cell``: every matched cell's call, review kind, truth and verdict); a short
table on stderr.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from hemotwin import taxonomy  # noqa: E402
from hemotwin.diagnosis.analyze import AnalysisConfig, analyze  # noqa: E402
from hemotwin.errors import InputError  # noqa: E402
from hemotwin.io.provenance import file_sha256  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
BCCD = SHARED / "bccd"
AUDIT = Path(__file__).resolve().parent / "data" / "bccd_label_audit.csv"
SHIPPED = Path(__file__).resolve().parents[1] / "src" / "hemotwin" / "vision" / "default_model.hemo"
WBC5 = ("basophil", "eosinophil", "lymphocyte", "monocyte", "neutrophil")
SCORED = ("neutrophil", "lymphocyte", "eosinophil")  # the classes with the 5-point target
SAFETY_FLAGS = ("nrbc", "cll_pattern", "blasts_ge_20", "blasts_10_19", "blasts_5_19_blood", "apl_pattern")
WBC_RADIUS_UM = 7.0  # half a 14 µm white cell: the farthest a centroid may lie from a box centre
TARGET_POINTS = 5.0


# ------------------------------------------------------------------------------------------ truth


def to_wbc5(code: str) -> str | None:
    """The BCCD class of a class code (``None`` for codes outside the five classes)."""
    try:
        return taxonomy.resolve_label(code, label_set="wbc5")
    except InputError:
        return None


def _labels(text: str) -> list[str]:
    return [t.strip().lower() for t in text.split(",") if t.strip()]


def _audit_by_stem() -> dict[str, str]:
    """Field stem -> the audit call of its crop (only fields with one unambiguous labelled box have one)."""
    with open(AUDIT, newline="") as fh:
        return {Path(row["path"]).stem: row["audit"] for row in csv.DictReader(fh)}


def bccd_fields() -> dict[str, dict]:
    """Every BCCD field by stem: its image, label tokens, white-cell boxes ``(r0, c0, r1, c1)``, audit call."""
    audit = _audit_by_stem()
    out = {}
    with open(BCCD / "manifest_detection.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            img = BCCD / row["path"]
            root = ET.parse(BCCD / row["annotation"]).getroot()
            size = root.find("size")
            h, w = (int(size.findtext(k)) for k in ("height", "width")) if size is not None else (480, 640)
            boxes = []
            for o in root.iter("object"):
                if o.findtext("name") != "WBC":
                    continue
                b = o.find("bndbox")
                x0, y0, x1, y1 = (float(b.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
                boxes.append((y0, x0, y1, x1))
            labels = _labels(row["label"])
            kinds = set(labels)
            out[img.stem] = {"image": img, "labels": labels, "boxes": boxes, "shape": (h, w),
                             "truth": next(iter(kinds)) if len(kinds) == 1 else None,
                             "mixed": len(kinds) > 1, "audit": audit.get(img.stem)}
    return out


def match_cells(cells: list[dict], fields: dict[str, dict], um_per_px: float) -> tuple[dict[int, tuple], dict]:
    """Cell id -> ``(stem, box index)`` for the analysed cells matched to a white-cell box; and stats."""
    radius = WBC_RADIUS_UM / um_per_px
    match: dict[int, tuple[str, int]] = {}
    how = Counter()
    for c in cells:
        stem = Path(c["field"]).stem
        boxes = fields[stem]["boxes"] if stem in fields else []
        if not boxes:
            how["no_box_in_field"] += 1
            continue
        cy, cx = c["centroid"]
        dist = [((cy - (b[0] + b[2]) / 2) ** 2 + (cx - (b[1] + b[3]) / 2) ** 2) ** 0.5 for b in boxes]
        inside = [i for i, b in enumerate(boxes) if b[0] <= cy <= b[2] and b[1] <= cx <= b[3]]
        if inside:
            match[c["id"]] = (stem, min(inside, key=dist.__getitem__))
            how["inside_box"] += 1
            continue
        k = min(range(len(boxes)), key=dist.__getitem__)
        if dist[k] <= radius:
            match[c["id"]] = (stem, k)
            how["near_centre"] += 1
        else:
            how["unmatched"] += 1
    per_box = Counter(match.values())
    stats = {**{k: how.get(k, 0) for k in ("inside_box", "near_centre", "unmatched", "no_box_in_field")},
             "radius_px": round(radius, 1), "boxes_with_several_cells": sum(v > 1 for v in per_box.values())}
    return match, stats


# ------------------------------------------------------------------------------------ measures


def _shares(counts: Counter, classes: tuple[str, ...]) -> dict[str, float | None]:
    n = sum(counts.values())
    return {k: round(100.0 * counts.get(k, 0) / n, 2) if n else None for k in classes}


def model_differential(report: dict) -> dict:
    """The report's counted differential collapsed to wbc5, with the share outside the five classes."""
    rows = {r["code"]: r["count"] for r in report["differential"]["rows"]}
    n = sum(rows.values())
    five, outside = Counter(), Counter()
    for code, k in rows.items():
        cls = to_wbc5(code)
        (five if cls else outside)[cls or code] += k
    pct = {k: round(100.0 * five.get(k, 0) / n, 2) if n else None for k in WBC5}
    pct["outside"] = round(100.0 * sum(outside.values()) / n, 2) if n else None
    # referred cells (below the review threshold) are not counted: their top calls, for reference
    referred = Counter(c["call"] for c in report["cells"] if c["referred"])
    return {"n_counted": n, "counts": {k: five.get(k, 0) for k in WBC5},
            "outside_counts": dict(sorted((k, v) for k, v in outside.items() if v)),
            "percent_of_counted": pct, "percent_within_five": _shares(five, WBC5),
            "n_referred": sum(referred.values()), "referred_top_calls": dict(sorted(referred.items()))}


def label_differential(fields: dict[str, dict], stems: list[str]) -> dict:
    """BCCD's labels pooled over ``stems``: every label token, and the audited-consistent fields' labels."""
    every = Counter(t for s in stems for t in fields[s]["labels"])
    audited = Counter(fields[s]["truth"] for s in stems if fields[s]["audit"] == "consistent")
    return {"all": {"n": sum(every.values()), "counts": {k: every.get(k, 0) for k in WBC5},
                    "percent": _shares(every, WBC5)},
            "audited": {"n": sum(audited.values()), "counts": {k: audited.get(k, 0) for k in WBC5},
                        "percent": _shares(audited, WBC5)}}


def _diff(model: dict, truth: dict) -> dict:
    out = {}
    for k in SCORED:
        m, t = model.get(k), truth.get(k)
        out[k] = round(abs(m - t), 2) if m is not None and t is not None else None
    return out


def _within(d: dict) -> bool:
    return all(v is not None and v <= TARGET_POINTS for v in d.values())


def score_cells(report: dict, fields: dict[str, dict], match: dict[int, tuple]) -> dict:
    """Wrong / right calls on and off the review list, the confusion, and the matched cells' differential."""
    on_review = {r["cell_id"]: r.get("kind") for r in report["review"]}
    table = {"review": Counter(), "not_review": Counter()}
    kinds: dict[str, Counter] = {}
    confusion: dict[str, Counter] = {}
    mixed = Counter()
    per_cell = []
    unlabelled = 0
    calls_all, truth_all, calls_aud, truth_aud = Counter(), Counter(), Counter(), Counter()
    for c in report["cells"]:
        if c["id"] not in match:
            continue
        stem, _ = match[c["id"]]
        f = fields[stem]
        if not f["labels"]:
            unlabelled += 1  # matched to a box of a field without a type label: no truth
            continue
        call = to_wbc5(c["call"])
        call_name = call or f"outside:{c['call']}"
        right = call in set(f["labels"]) if f["mixed"] else call == f["truth"]
        verdict = "right" if right else "wrong"
        where = "review" if c["id"] in on_review else "not_review"
        table[where][verdict] += 1
        if where == "review":
            kinds.setdefault(on_review[c["id"]], Counter())[verdict] += 1
        per_cell.append({"id": c["id"], "field": stem, "call": c["call"], "confidence": c["confidence"],
                         "review": on_review.get(c["id"]), "truth": "/".join(sorted(set(f["labels"]))),
                         "audit": f["audit"], "verdict": verdict})
        if f["mixed"]:
            mixed[verdict] += 1
        else:
            confusion.setdefault(f["truth"], Counter())[call_name] += 1
        if not c["referred"] and not f["mixed"] and f["truth"]:
            calls_all[call_name] += 1
            truth_all[f["truth"]] += 1
            if f["audit"] == "consistent":
                calls_aud[call_name] += 1
                truth_aud[f["truth"]] += 1

    def diff_block(calls: Counter, truth: Counter) -> dict:
        n = sum(calls.values())
        model = {k: round(100.0 * calls.get(k, 0) / n, 2) if n else None for k in WBC5}
        model["outside"] = (round(100.0 * sum(v for k, v in calls.items() if k not in WBC5) / n, 2)
                            if n else None)
        tr = _shares(truth, WBC5)
        d = _diff(model, tr)
        return {"n_cells": n, "model_percent": model, "label_percent": tr, "abs_diff_points": d,
                "within_5_points": _within(d)}

    rv, nr = table["review"], table["not_review"]
    return {
        "n_matched": sum(rv.values()) + sum(nr.values()),
        "review": {"wrong": rv["wrong"], "right": rv["right"]},
        "not_review": {"wrong": nr["wrong"], "right": nr["right"]},
        "review_by_kind": {k: {"wrong": v["wrong"], "right": v["right"]} for k, v in sorted(kinds.items())},
        "mixed_label_cells": {"wrong": mixed["wrong"], "right": mixed["right"]},
        "matched_in_unlabelled_field": unlabelled,
        "accuracy": (round((rv["right"] + nr["right"]) / (sum(rv.values()) + sum(nr.values())), 4)
                     if (rv or nr) else None),
        "pass_review_more_wrong_than_right": rv["wrong"] > rv["right"],
        "confusion_truth_to_call": {t: dict(sorted(v.items())) for t, v in sorted(confusion.items())},
        "matched_differential": {"all": diff_block(calls_all, truth_all), "audited": diff_block(calls_aud, truth_aud)},
        "per_cell": per_cell,
    }


def detection_recall(fields: dict[str, dict], stems: list[str], match: dict[int, tuple], um_per_px: float) -> dict:
    """BCCD white-cell boxes with a matched analysed cell (all; and those clear of the field edge)."""
    hit = set(match.values())
    margin = 2.0  # px: a box within this of the edge is cut by it (its cell is not analysed)
    n = n_clear = k = k_clear = 0
    for s in stems:
        h, w = fields[s]["shape"]
        for i, b in enumerate(fields[s]["boxes"]):
            clear = b[0] > margin and b[1] > margin and b[2] < h - 1 - margin and b[3] < w - 1 - margin
            n += 1
            n_clear += clear
            if (s, i) in hit:
                k += 1
                k_clear += clear
    return {"boxes": n, "matched": k, "recall": round(k / n, 4) if n else None,
            "boxes_clear_of_edge": n_clear, "matched_clear_of_edge": k_clear,
            "recall_clear_of_edge": round(k_clear / n_clear, 4) if n_clear else None}


# ---------------------------------------------------------------------------------------- run


def _sample_dir(stems: list[str], fields: dict[str, dict], n_all: int, tmp: str) -> Path:
    """The folder to analyse: JPEGImages itself for all fields, else a folder of links to the chosen ones."""
    jpeg = BCCD / "BCCD" / "JPEGImages"
    if len(stems) == n_all and sorted(p.stem for p in jpeg.iterdir() if p.is_file()) == stems:
        return jpeg
    d = Path(tmp) / "fields"
    d.mkdir()
    for s in stems:
        (d / fields[s]["image"].name).symlink_to(fields[s]["image"])
    return d


def _near_duplicate_fields(stems: list[str]) -> list[list[str]]:
    with open(BCCD / "near_duplicates_confirmed.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    keep = set(stems)
    return [[Path(r["path_a"]).stem, Path(r["path_b"]).stem] for r in rows
            if r["path_a"].startswith("BCCD/JPEGImages") and Path(r["path_a"]).stem in keep]


def _table(res: dict) -> str:
    d = res["differential"]
    lines = [f"BCCD smear analysis: {res['provenance']['n_fields']} fields, model "
             f"{Path(res['provenance']['model']).name} ({res['provenance']['model_sha256'][:12]}), "
             f"{res['provenance']['um_per_px']} µm/px",
             f"{'class':<12}{'model %':>9}{'labels %':>10}{'audited %':>11}{'|d| all':>9}{'|d| aud':>9}"]
    for k in (*WBC5, "outside"):
        m = d["model"]["percent_of_counted"].get(k)
        la = d["labels"]["all"]["percent"].get(k)
        lu = d["labels"]["audited"]["percent"].get(k)
        da = d["abs_diff_points_all"].get(k)
        du = d["abs_diff_points_audited"].get(k)
        lines.append(f"{k:<12}{_f(m):>9}{_f(la):>10}{_f(lu):>11}{_f(da):>9}{_f(du):>9}")
    c, det = res["cells"], res["detection"]
    lines += [f"within 5 points on audited labels (N, L, E): {d['within_5_points_audited']}",
              "flags: " + ", ".join(f"{k}={v}" for k, v in res["flags"]["states"].items()),
              f"no positive NRBC/smudge/blast flag: {res['flags']['pass_no_positive_safety_flag']}",
              f"matched cells {c['n_matched']}: review list wrong/right {c['review']['wrong']}/{c['review']['right']}, "
              f"off it {c['not_review']['wrong']}/{c['not_review']['right']} "
              f"(pass: {c['pass_review_more_wrong_than_right']})",
              f"detection recall {det['recall']} ({det['matched']}/{det['boxes']}), "
              f"cells/s {res['speed']['cells_per_s']}"]
    return "\n".join(lines)


def _f(v) -> str:
    return "-" if v is None else f"{v:.1f}"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model file (default: the shipped model)")
    ap.add_argument("--um-per-px", type=float, default=0.0725)
    ap.add_argument("--workers", type=int, default=2, help="field processes of analyze")
    ap.add_argument("--threads", type=int, default=2, help="inference threads")
    ap.add_argument("--calibration", default="auto", help='analyze\'s calibration ("auto", "none" or a file)')
    ap.add_argument("--subset", choices=("all", "scored"), default="all",
                    help="all 364 fields, or the 341 with a scored crop (one labelled box; docs/diagnosis.md's tables)")
    ap.add_argument("--fields", type=int, default=0, help="analyse the first N fields only (0: all of the subset)")
    ap.add_argument("--report-dir", default=None, help="keep report.json/report.html here (default: a temp dir)")
    ap.add_argument("--out", default=None, help="write the result JSON here too")
    args = ap.parse_args(argv)

    fields = bccd_fields()
    stems = sorted(fields)
    n_all = len(stems)
    if args.subset == "scored":
        stems = [s for s in stems if fields[s]["audit"] is not None]
    if args.fields:
        stems = stems[: args.fields]
    model = Path(args.model) if args.model else SHIPPED
    config = AnalysisConfig(model=str(model), um_per_px=args.um_per_px, calibration=args.calibration,
                            thumbnails=False)
    t0 = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if done % 25 == 0 or done == total:
            print(f"  {done}/{total} fields, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="bench_analyze_bccd_") as tmp:
        sample = _sample_dir(stems, fields, n_all, tmp)
        out_dir = Path(args.report_dir) if args.report_dir else Path(tmp) / "report"
        res = analyze(sample, out_dir, config=config, overwrite=True, workers=args.workers,
                      num_threads=args.threads, progress=progress)
    wall = time.perf_counter() - t0
    report = res["result"]

    analysed_stems = [Path(f["name"]).stem for f in report["sample"]["fields"]]
    missing = sorted(set(stems) - set(analysed_stems))
    model_diff = model_differential(report)
    labels = label_differential(fields, stems)
    d_all = _diff(model_diff["percent_of_counted"], labels["all"]["percent"])
    d_aud = _diff(model_diff["percent_of_counted"], labels["audited"]["percent"])
    d_aud5 = _diff(model_diff["percent_within_five"], labels["audited"]["percent"])
    match, match_stats = match_cells(report["cells"], fields, args.um_per_px)
    states = {f["id"]: f["state"] for f in report["flags"]}
    positive_safety = [k for k in SAFETY_FLAGS if states.get(k) == "positive"]
    timing = report["timing"]
    result = {
        "benchmark": "bench_analyze_bccd",
        "measure": "smear analysis on real fields (BCCD, one sample of all fields)",
        "differential": {
            "model": model_diff,
            "labels": labels,
            "abs_diff_points_all": d_all,
            "abs_diff_points_audited": d_aud,
            "abs_diff_points_audited_within_five": d_aud5,
            "within_5_points_all": _within(d_all),
            "within_5_points_audited": _within(d_aud),
            "target": f"|model - labels| <= {TARGET_POINTS:g} points for {', '.join(SCORED)} on the audited labels",
        },
        "flags": {"states": states, "positive": [k for k, v in states.items() if v == "positive"],
                  "indeterminate": [k for k, v in states.items() if v == "indeterminate"],
                  "safety_flags": list(SAFETY_FLAGS), "positive_safety_flags": positive_safety,
                  "pass_no_positive_safety_flag": not positive_safety,
                  "review_cells": {f["id"]: f["review_cells"] for f in report["flags"] if f.get("review_cells")},
                  "classifier_unsure": report.get("classifier_unsure"),
                  "referred_share": report["counts"]["n_referred"] / max(1, report["counts"]["n_classified"])},
        "cells": {**score_cells(report, fields, match), "matching": match_stats,
                  "n_classified": report["counts"]["n_classified"], "n_review": report["counts"]["n_review"],
                  "review_kinds": dict(Counter(r.get("kind") for r in report["review"]))},
        "detection": detection_recall(fields, stems, match, args.um_per_px),
        "counts": report["counts"],
        "speed": {"cells_per_s": timing["cells_per_s"], "fields_per_s": timing["fields_per_s"],
                  "analysis_seconds": timing["seconds"], "wall_seconds": round(wall, 1), "workers": args.workers,
                  "threads": args.threads, "cpu_count": os.cpu_count()},
        "summary": report["summary"],
        "provenance": {
            "model": str(report["model"]["path"]), "model_sha256": report["model"]["sha256"],
            "model_file_sha256": file_sha256(report["model"]["path"]),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "um_per_px": args.um_per_px, "pixel_size_sources": report["sample"]["pixel_size_sources"],
            "n_fields": len(stems), "n_fields_in_bccd": n_all, "subset": args.subset,
            "n_fields_analysed": report["sample"]["n_fields_analysed"],
            "n_fields_without_wbc": report["sample"]["n_fields_without_wbc"],
            "n_fields_skipped": report["sample"]["n_fields_skipped"], "fields_not_in_report": missing,
            "first_field": stems[0], "last_field": stems[-1],
            "near_duplicate_fields_kept": _near_duplicate_fields(stems),
            "calibration": args.calibration, "calibration_note": report["calibration_note"],
            "settings": report["settings"], "hemotwin_version": report["provenance"].get("hemotwin_version"),
            "python": platform.python_version(), "platform": platform.platform(),
        },
    }
    print(_table(result), file=sys.stderr, flush=True)
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    print(text)
    return result


if __name__ == "__main__":
    main()
