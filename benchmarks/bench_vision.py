"""Cross-microscope accuracy of the white-cell classifier: ``none`` vs ``color`` vs ``twin``.

Side by side in one run, same network, same seeds, same split: train on the real PBC images
(CellaVision DM96) restricted to the five white-cell classes shared with BCCD, then score on
the PBC hold-out (in-domain) and on the BCCD crops (another microscope and camera; basophils
excluded, n = 2). Published train-on-one-microscope results on BCCD are 17–53 % (Tsutsui et al.,
ICASSP 2023); the design target is >= 90 % with ``twin`` and >= 15 points above ``color``.

BCCD has no documented pixel size: it is estimated once with the red-cell ruler on its fields
(not on the tight crops) and applied to every crop — say so in the results.

BCCD's labels are image-level and of unverified origin. ``benchmarks/data/bccd_label_audit.csv``
records a visual audit of every scored crop, made before and independently of any model's
predictions (see benchmarks/data/README.md): each BCCD set is also scored on the crops whose label
the audit found consistent with the morphology (``*_audited``). The headline stays the full set.

A mode with a ``+synth`` suffix (``color+synth``, ``twin+synth``) adds purely synthetic twin cells
of the five classes to the PBC training set (``--synth-per-class`` per class code, rendered under
randomised neighbours of the four scanner presets, as for the shipped model): the
"mixtures" of real and synthetic training data. Validation and test sets stay real PBC.

Mode ``twin-target`` is the ``twin`` arm with a fraction ``--p-target`` of the samples re-imaged
as BCCD's scanner (:class:`hemotwin.twin.target_style.TargetStyle`, fitted on ``--target-fields``
unlabelled BCCD *fields*; by default the 23 fields none of whose cells is scored, so no BCCD label,
box or scored cell is used). It answers what a laboratory
gains by giving the twin a few dozen unlabelled images of its own microscope (``hemotwin train
--target DIR``); it is not a cross-microscope result in the strict, target-blind sense.

``--unlabelled-fold F`` (with ``--teachers``): what a laboratory gains from its own unlabelled
*cells* (``hemotwin train --unlabelled``). BCCD's scored crops are split in two folds by seed
(near-duplicates together, blind to the labels); the crops of fold F join the training set with
the teachers' prediction sets as labels (no BCCD label is used), and every BCCD score is on the
other fold only (cells in field context too). Fold 0 and fold 1 runs of a seed together score
every crop once, each by a model that never saw it: add their confusion matrices.

Usage: ``.venv/bin/python benchmarks/bench_vision.py [--epochs 30] [--modes none,color,twin]
[--out vision.json]``. Prints JSON; a table on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import date
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from hemotwin.io.images import read_image  # noqa: E402
from hemotwin.vision.augment import TargetReimaging, make_augment  # noqa: E402
from hemotwin.vision.data import load_training_data, map_items_to  # noqa: E402
from hemotwin.vision.datasets import load_dataset, measure_red_cells, red_cell_ruler, split  # noqa: E402
from hemotwin.vision.evaluate import evaluate_predictions  # noqa: E402
from hemotwin.vision.geometry import Geometry, prepare, to_model_geometry  # noqa: E402
from hemotwin.vision.training import with_unlabelled_cells  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
AUDIT = Path(__file__).resolve().parent / "data" / "bccd_label_audit.csv"
WBC5 = ("basophil", "eosinophil", "lymphocyte", "monocyte", "neutrophil")


def bccd_um_per_px_from_boxes() -> tuple[float, dict]:
    """BCCD pixel size from its annotated red-cell boxes: 7.5 µm / median side of the round boxes.

    The VOC boxes hug the cells; boxes with aspect ratio outside 0.85–1.18 (cut by the field edge
    or overlapping) are left out. With this ruler the annotated white-cell boxes measure 13.7 µm
    (median), as PBC's neutrophils do; the image-based ruler reads BCCD's pale fields ~20 % high.
    """
    import xml.etree.ElementTree as ET

    sides = []
    for f in sorted((SHARED / "bccd" / "BCCD" / "Annotations").glob("*.xml")):
        for o in ET.parse(f).getroot().iter("object"):
            if o.findtext("name") != "RBC":
                continue
            b = o.find("bndbox")
            w = float(b.findtext("xmax")) - float(b.findtext("xmin"))
            h = float(b.findtext("ymax")) - float(b.findtext("ymin"))
            if w > 0 and h > 0 and 0.85 < w / h < 1.18:
                sides.append((w + h) / 2)
    return 7.5 / float(np.median(sides)), {"red_cell_boxes": len(sides), "median_side_px": float(np.median(sides))}


def bccd_um_per_px(n: int = 80, seed: int = 0) -> tuple[float | None, dict]:
    fields = sorted((SHARED / "bccd" / "BCCD" / "JPEGImages").glob("*.jpg"))
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(fields), size=min(n, len(fields)), replace=False)
    # The red-cell ruler over the fields pooled; it may refuse (BCCD's red cells are crowded): None then.
    um, det = red_cell_ruler([measure_red_cells(read_image(fields[i])[0]) for i in pick])
    return um, {"fields_tried": len(pick), "quality": det["quality"] if um is not None else det["reason"]}


def _bccd_manifest_rows() -> list[list[str]]:
    """(path, label, source) of every scored BCCD crop, from its manifest."""
    return [ln.split(",") for ln in (SHARED / "bccd" / "manifest.csv").read_text().splitlines()[1:]]


def bccd_context_cells(um_per_px: float, geom: Geometry) -> tuple[np.ndarray, list[str], list[str]]:
    """The BCCD crops' cells cut again from their fields with the context a model is trained with.

    The distributed crops are tight VOC boxes: brought to the model's 25 µm field they sit in a
    padded frame no training image has. The same cells (same boxes, same labels: the crops'
    manifest) are cut from the field around the box centre instead; borders are padded with the
    field's median colour.
    """
    import xml.etree.ElementTree as ET

    from hemotwin.vision.datasets import to_canonical

    rows = _bccd_manifest_rows()
    side = round(geom.input_size * geom.um_per_px / um_per_px)
    images, labels, stems = [], [], []
    for path, label, *_ in rows:
        stem = Path(path).stem
        field, _ = read_image(SHARED / "bccd" / "BCCD" / "JPEGImages" / f"{stem}.jpg")
        root = ET.parse(SHARED / "bccd" / "BCCD" / "Annotations" / f"{stem}.xml").getroot()
        boxes = [o.find("bndbox") for o in root.iter("object") if o.findtext("name") == "WBC"]
        if len(boxes) != 1:
            continue
        b = {k: float(boxes[0].findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")}
        cy, cx = int((b["ymin"] + b["ymax"]) / 2), int((b["xmin"] + b["xmax"]) / 2)
        pad = side
        med = np.median(field.reshape(-1, 3), axis=0).astype(np.uint8)
        big = np.empty((field.shape[0] + 2 * pad, field.shape[1] + 2 * pad, 3), np.uint8)
        big[:] = med
        big[pad:pad + field.shape[0], pad:pad + field.shape[1]] = field
        crop = big[cy + pad - side // 2: cy + pad + side // 2, cx + pad - side // 2: cx + pad + side // 2]
        images.append(to_canonical(crop, um_per_px=um_per_px, canonical_um_per_px=geom.um_per_px,
                                   size=geom.input_size))
        labels.append(label)
        stems.append(stem)
    return np.stack(images), labels, stems


def bccd_folds(bccd, seed: int) -> np.ndarray:
    """Fold (0 / 1) of every BCCD item: half the groups each, near-duplicates together, label-blind."""
    from dataclasses import replace

    from hemotwin.vision.datasets import split

    blind = replace(bccd, items=[replace(it, label="cell") for it in bccd.items])
    parts = split(blind, val_fraction=0.5, test_fraction=0.0, seed=seed)
    fold = np.zeros(len(bccd.items), np.int64)
    fold[parts.indices["val"]] = 1
    return fold


def only(truth: list[str], keep: np.ndarray) -> list[str]:
    """The entries of ``truth`` where ``keep`` is True."""
    return [t for t, k in zip(truth, keep, strict=True) if k]


def synthetic_training_cells(per_class: int, geom: Geometry, *, seed: int) -> tuple[np.ndarray, list[str]]:
    """Twin cells of the codes under the five classes, at the working geometry, with five-class labels."""
    import tempfile

    from hemotwin import taxonomy
    from hemotwin.twin.datasets import simulate_cells_over_presets

    codes = [c for c in taxonomy.CLASS_CODES if any(a in WBC5 for a in taxonomy.ancestors(c))]
    images, labels = [], []
    with tempfile.TemporaryDirectory(prefix="bench_vision_synth_") as tmp:
        for s in simulate_cells_over_presets(tmp, per_class=per_class, classes=codes, randomize=0.6, field_um=28.0,
                                             seed=seed, workers=2):
            ds, _ = map_items_to(load_dataset(s["out"]), WBC5)
            prep = prepare(ds, geom, working=True)
            images.append(prep.images)
            labels += [ds.items[i].label for i in prep.kept]
    print(f"synthetic training cells: {len(labels)} ({', '.join(codes)})", file=sys.stderr, flush=True)
    return np.concatenate(images), labels


def fit_target_style(train_images: np.ndarray, um_b: float, geom: Geometry, *, n_fields: int, seed: int):
    """The twin re-imaging calibrated to BCCD's scanner from its unlabelled fields.

    By default (``n_fields`` 0) only the 23 fields none of whose cells is scored (no crop in the
    manifest): the fit sees that microscope's glass, red cells and stain, never a scored cell.
    ``n_fields`` > 0 draws that many of all 364 fields instead (still without labels or boxes).
    """
    from hemotwin.twin.target_style import TargetStyle
    from hemotwin.vision.datasets import to_canonical

    fields = sorted((SHARED / "bccd" / "BCCD" / "JPEGImages").glob("*.jpg"))
    if n_fields <= 0:
        scored = {Path(r[0]).stem for r in _bccd_manifest_rows()}
        use = [f for f in fields if f.stem not in scored]
    else:
        pick = np.random.default_rng(seed).choice(len(fields), size=min(n_fields, len(fields)), replace=False)
        use = [fields[i] for i in sorted(pick)]
    tiles = [to_canonical(read_image(f)[0], um_per_px=um_b, canonical_um_per_px=geom.work_um_per_px,
                          size=geom.work_size) for f in use]
    style = TargetStyle().fit(list(train_images), tiles, source_um_per_px=geom.work_um_per_px,
                              target_um_per_px=geom.work_um_per_px, seed=seed)
    return style, [f.name for f in use]


def audit_mask(paths: list[Path]) -> np.ndarray:
    """True for BCCD crops whose label the visual audit found consistent with the morphology."""
    import csv

    with open(AUDIT, newline="") as fh:
        calls = {row["path"]: row["audit"] for row in csv.DictReader(fh)}
    keys = ["/".join(Path(p).parts[-3:]) for p in paths]  # wbc_crops/<class>/<file>
    missing = [k for k in keys if k not in calls]
    if missing:
        raise SystemExit(f"{AUDIT}: no audit row for {missing[:3]}")
    return np.array([calls[k] == "consistent" for k in keys])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--modes", default="none,color,twin")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1, help="DataLoader workers for augmentation")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--twin-strength", type=float, default=0.3, help="randomize() strength of the re-imaging")
    ap.add_argument("--p-reimage", type=float, default=0.5, help="fraction of training samples re-imaged")
    ap.add_argument("--tone", default="display", choices=["display", "raw"],
                    help="colour model of the re-imaging's stain basis (StainBasis tone)")
    ap.add_argument("--synth-per-class", type=int, default=300,
                    help="twin cells per class code for the +synth modes (split over the four presets)")
    ap.add_argument("--target-fields", type=int, default=0,
                    help="BCCD fields the twin-target mode fits the target scanner on: 0 = the 23 fields with no "
                         "scored cell; N = N drawn from all fields")
    ap.add_argument("--p-target", type=float, default=0.3, help="fraction of samples re-imaged as the target")
    ap.add_argument("--target-val", action="store_true",
                    help="twin-target: validate (early stopping) on the PBC validation cells plus the same cells "
                         "re-imaged as the target")
    ap.add_argument("--no-target-jitter", action="store_true",
                    help="twin-target: no colour jitter on the samples re-imaged as the target")
    ap.add_argument("--box-crop", type=float, default=0.0,
                    help="fraction of samples cut to a box around the white cell (every arm)")
    ap.add_argument("--ema-epochs", type=float, default=0.0,
                    help="time constant (epochs) of the weight average validated and kept (0 = off)")
    ap.add_argument("--scale-jitter", type=float, default=1.0,
                    help="zoom every sample by up to this factor (1 = off; every arm)")
    ap.add_argument("--teachers", nargs="*", default=[],
                    help="model files to distil from (train --teacher): every arm is also trained towards their "
                         "mean probabilities. Teachers trained with other seeds saw other PBC splits, so the PBC "
                         "hold-out is then not clean; BCCD is (no BCCD label is used by any model)")
    ap.add_argument("--distill-weight", type=float, default=0.5)
    ap.add_argument("--distill-temperature", type=float, default=2.0)
    ap.add_argument("--unlabelled-fold", type=int, default=-1, choices=[-1, 0, 1],
                    help="with --teachers: train on BCCD fold F's crops without labels (the teachers' prediction "
                         "sets) and score BCCD on the other fold only (-1 = off)")
    ap.add_argument("--pseudo-coverage", type=float, default=0.9,
                    help="probability the teachers' class set for an unlabelled cell must hold")
    ap.add_argument("--save-models", default=None, help="folder to keep each arm's model file in (for rescoring)")
    ap.add_argument("--tta", action="store_true", help="also score with 8-view test-time augmentation")
    ap.add_argument("--scale-tta", type=float, default=1.0,
                    help="also score averaged over zooms 1/F, 1, F (and with --tta, over all 24 views)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    from hemotwin.twin.harmonise import StainHarmoniser
    from hemotwin.twin.reimage import StainBasis
    from hemotwin.vision.engines import InferenceEngine, scale_tta_zooms
    from hemotwin.vision.fitting import CellArrayDataset, TrainConfig, fit, target_masks
    from hemotwin.vision.models import ModelConfig

    t0 = time.perf_counter()
    geom = Geometry()
    # PBC's pixel size is not in its files either: the red-cell ruler over the data set.
    (pbc_all,), pbc_notes = load_training_data([SHARED / "pbc"])
    pbc, _ = map_items_to(pbc_all, WBC5)
    parts = split(pbc, val_fraction=0.15, test_fraction=0.15, seed=args.seed)
    um_img, um_img_details = bccd_um_per_px()
    um_b, um_b_details = bccd_um_per_px_from_boxes()
    um_b_details["image_red_cell_ruler"] = {"um_per_px": um_img, **um_img_details}
    bccd, _ = map_items_to(load_dataset(SHARED / "bccd", um_per_px=um_b), WBC5)
    tr = prepare(parts.train, geom, working=True)
    if not len(tr.images):
        raise SystemExit(f"no training image could be prepared: {tr.failures[:3]}")
    va = prepare(parts.val, geom, working=False)
    te = prepare(parts.test, geom, working=False)
    bc = prepare(bccd, geom, working=False)
    bcx_images, bcx_labels, bcx_stems = bccd_context_cells(um_b, geom)
    audited = audit_mask([bccd.items[i].path for i in bc.kept])
    if args.unlabelled_fold >= 0 and not args.teachers:
        raise SystemExit("--unlabelled-fold needs --teachers (they label the unlabelled cells)")
    # Which BCCD crops a run may score: all of them, or with --unlabelled-fold the other fold only.
    scored_bc = np.ones(len(bc.kept), bool)
    scored_bcx = np.ones(len(bcx_labels), bool)
    unl_work = None
    if args.unlabelled_fold >= 0:
        fold = bccd_folds(bccd, args.seed)
        scored_bc = fold[bc.kept] != args.unlabelled_fold
        fold_of_stem = {Path(bccd.items[i].path).stem: int(fold[i]) for i in range(len(bccd.items))}
        scored_bcx = np.array([fold_of_stem[st] != args.unlabelled_fold for st in bcx_stems])
        unl_items = np.flatnonzero(fold == args.unlabelled_fold)
        unl_work = prepare(bccd.subset(unl_items), geom, working=True).images
    y = {k: [d.items[i].label for i in p.kept] for k, d, p in
         (("train", parts.train, tr), ("val", parts.val, va), ("test", parts.test, te), ("bccd", bccd, bc))}
    basis = StainBasis(tone=args.tone).fit(list(tr.images[:: max(1, len(tr.images) // 64)]))
    # Twin harmonisation at test time: the training scanner's stain reference (what every model
    # file now stores), and BCCD re-expressed in it with a basis fitted on BCCD's own colours.
    harm = StainHarmoniser().fit([to_model_geometry(im, geom) for im in tr.images], seed=args.seed)
    harmonised = {"bccd": harm.transform(list(bc.images)), "bccd_in_field_context": harm.transform(list(bcx_images))}
    modes = args.modes.split(",")
    synth = None
    if any(m.endswith("+synth") for m in modes):
        synth = synthetic_training_cells(args.synth_per_class, geom, seed=args.seed)
    style, style_fields = None, []
    if any(m.startswith("twin-target") for m in modes):
        style, style_fields = fit_target_style(tr.images, um_b, geom, n_fields=args.target_fields, seed=args.seed)
        print(f"target style: {style!r}", file=sys.stderr, flush=True)
    # The PBC validation and test cells re-imaged as the target (one fixed draw each): a
    # label-free check of how well a model reads the target's look (no BCCD label is used).
    # The validation cells are drawn even without --target-val, so that the test cells' draw (and
    # pbc_test_as_target) is the same in every run of a seed.
    styled_val = styled_test = None
    if style is not None:
        rng_v = np.random.default_rng(args.seed + 7919)
        styled_val = np.stack([to_model_geometry(style(im, geom.work_um_per_px, rng_v), geom)
                               for im in prepare(parts.val, geom, working=True).images])
        styled_test = np.stack([to_model_geometry(style(im, geom.work_um_per_px, rng_v), geom)
                                for im in prepare(parts.test, geom, working=True).images])
    teacher_nets, teacher_info = [], []
    if args.teachers:
        from hemotwin.vision.training import load_teachers

        teacher_nets, teacher_info = load_teachers(args.teachers, WBC5, geom)
    unl_masks, unl_summary = None, None
    if unl_work is not None:
        from hemotwin.vision.pseudo import set_summary
        from hemotwin.vision.training import teacher_prediction_sets

        unl_probs, unl_masks = teacher_prediction_sets(
            teacher_nets, teacher_info, np.stack([to_model_geometry(c, geom) for c in unl_work]),
            coverage=args.pseudo_coverage, num_threads=args.threads)
        unl_summary = set_summary(unl_masks, WBC5)
        # Label-free to the model; here (after the fact) how often the set holds the BCCD label.
        unl_truth = [bccd.items[i].label for i in unl_items]
        unl_summary["set_holds_label"] = float(np.mean([unl_masks[k, WBC5.index(t)]
                                                        for k, t in enumerate(unl_truth)]))
        unl_summary["teacher_top1_accuracy"] = float(np.mean([WBC5[int(unl_probs[k].argmax())] == t
                                                              for k, t in enumerate(unl_truth)]))
        print(f"unlabelled fold {args.unlabelled_fold}: {unl_summary}", file=sys.stderr, flush=True)
    results = {}
    for mode in modes:
        base_mode = mode.removesuffix("+synth")
        x_tr, y_tr = tr.images, y["train"]
        if mode.endswith("+synth"):
            x_tr, y_tr = np.concatenate([tr.images, synth[0]]), y["train"] + synth[1]
        aug = make_augment(base_mode.removesuffix("-target"), geom, basis=basis, seed=args.seed,
                           strength=args.twin_strength, p_reimage=args.p_reimage,
                           target=TargetReimaging(style, args.p_target, jitter=not args.no_target_jitter)
                           if base_mode == "twin-target" else None,
                           box_crop=args.box_crop, scale_jitter=args.scale_jitter)
        cfg = TrainConfig(epochs=args.epochs, seed=args.seed, num_threads=args.threads, num_workers=args.workers,
                          ema_epochs=args.ema_epochs, distill_weight=args.distill_weight if teacher_nets else 0.0,
                          distill_temperature=args.distill_temperature)
        t = time.perf_counter()
        x_va, y_va = va.images, y["val"]
        if args.target_val and base_mode == "twin-target":
            x_va, y_va = np.concatenate([x_va, styled_val]), y_va + y["val"]
        train_ds = CellArrayDataset(x_tr, target_masks(y_tr, WBC5), aug=aug, seed=args.seed)
        if unl_work is not None:  # as train_model does
            train_ds = with_unlabelled_cells(x_tr, target_masks(y_tr, WBC5), aug, unl_work, unl_masks,
                                             augment=base_mode.removesuffix("-target"), geometry=geom,
                                             box_crop=args.box_crop, scale_jitter=args.scale_jitter, seed=args.seed)
        res = fit(ModelConfig(n_classes=len(WBC5), input_size=geom.input_size), train_ds,
                  CellArrayDataset(x_va, target_masks(y_va, WBC5)), config=cfg, teachers=teacher_nets)
        train_s = time.perf_counter() - t
        if args.save_models:
            from hemotwin.vision.modelfile import save_model

            Path(args.save_models).mkdir(parents=True, exist_ok=True)
            save_model(Path(args.save_models) / f"{mode}.hemo", res.model, labels=list(WBC5), um_per_px=geom.um_per_px,
                       seed=args.seed, augmentation=mode, metrics=res.best_metrics, overwrite=True)
        scores = {}
        sets = (("pbc_test", te.images, y["test"]),
                *((("pbc_test_as_target", styled_test, y["test"]),) if styled_test is not None else ()),
                ("bccd", bc.images[scored_bc], only(y["bccd"], scored_bc)),
                ("bccd_in_field_context", bcx_images[scored_bcx], only(bcx_labels, scored_bcx)),
                ("bccd_harmonised", np.asarray(harmonised["bccd"])[scored_bc], only(y["bccd"], scored_bc)),
                ("bccd_in_field_context_harmonised", np.asarray(harmonised["bccd_in_field_context"])[scored_bcx],
                 only(bcx_labels, scored_bcx)))
        audited_scored = audited[scored_bc]
        scorings = [("", False, (1.0,))]
        if args.tta:
            scorings.append(("_tta", True, (1.0,)))
        if args.scale_tta > 1.0:
            scorings.append(("_scale_tta", False, scale_tta_zooms(args.scale_tta)))
        if args.tta and args.scale_tta > 1.0:
            scorings.append(("_tta_scale_tta", True, scale_tta_zooms(args.scale_tta)))
        for suffix, tta, zooms in scorings:
            eng = InferenceEngine(res.model, backend="torch", labels=list(WBC5), tta=tta, zooms=zooms)
            for name, imgs, truth in sets:
                probs = eng.run(imgs)
                subsets = [(name, probs, truth)]
                if name in ("bccd", "bccd_harmonised"):  # the audit is per crop, in bc.kept order
                    kept = [t for t, a in zip(truth, audited_scored, strict=True) if a]
                    subsets.append((f"{name}_audited", probs[audited_scored], kept))
                for key, pr, tr_ in subsets:
                    m = evaluate_predictions(tr_, pr, WBC5, exclude=("basophil",) if "bccd" in key else ())
                    scores[key + suffix] = {
                        "accuracy": m["accuracy"], "ci95": m["accuracy_ci95_exact"], "macro_f1": m["macro_f1"],
                        "n": m["n"], "per_class_recall": {k: v["recall"] for k, v in m["per_class"].items()},
                        "ece": m["calibration"]["ece"],
                        # rows: true, columns: predicted, in WBC5 order (where the errors go)
                        "confusion_matrix": m["confusion_matrix"]}
        results[mode] = {"scores": scores, "best_epoch": res.best_epoch, "train_seconds": round(train_s, 1),
                         "n_train": len(y_tr),
                         "train_images_per_s": res.train_images_per_s, "val": res.best_metrics}
        print(f"{mode:6s} PBC {scores['pbc_test']['accuracy']:.3f}  BCCD {scores['bccd']['accuracy']:.3f} "
              f"BCCD-in-context {scores['bccd_in_field_context']['accuracy']:.3f} "
              f"harmonised {scores['bccd_harmonised']['accuracy']:.3f} / "
              f"{scores['bccd_in_field_context_harmonised']['accuracy']:.3f} "
              f"audited {scores['bccd_audited']['accuracy']:.3f} / {scores['bccd_harmonised_audited']['accuracy']:.3f} "
              f"(macro-F1 {scores['bccd']['macro_f1']:.3f})  epoch {res.best_epoch}  {train_s:.0f} s "
              f"{res.train_images_per_s:.0f} img/s", file=sys.stderr, flush=True)
    doc = {"benchmark": "vision_cross_microscope", "date": date.today().isoformat(),
           "geometry": {"um_per_px": geom.um_per_px, "input_size": geom.input_size},
           "pbc": {"n_train": len(tr.kept), "n_val": len(va.kept), "n_test": len(te.kept), "um_per_px": pbc_notes,
                   "failures": len(tr.failures) + len(va.failures) + len(te.failures)},
           "bccd": {"n": len(bc.kept), "um_per_px_estimate": um_b, "estimate": um_b_details,
                    "scored_without": "basophil (n=2)",
                   "audit": {"file": str(AUDIT.relative_to(AUDIT.parents[2])), "consistent": int(audited.sum()),
                             "of": len(audited)}},
           "epochs_max": args.epochs, "seed": args.seed, "results": results,
           "box_crop": args.box_crop, "scale_jitter": args.scale_jitter, "ema_epochs": args.ema_epochs,
           "target_val": args.target_val, "target_jitter": not args.no_target_jitter, "tta": args.tta,
           "scale_tta": args.scale_tta,
           "distillation": {"teachers": teacher_info, "weight": args.distill_weight,
                            "temperature": args.distill_temperature} if teacher_nets else None,
           "unlabelled": None if unl_work is None else {
               "fold": args.unlabelled_fold, "n": len(unl_work), "coverage": args.pseudo_coverage,
               "bccd_scored": int(scored_bc.sum()), "in_field_context_scored": int(scored_bcx.sum()),
               "prediction_sets": unl_summary},
           "twin": {"strength": args.twin_strength, "p_reimage": args.p_reimage, "tone": args.tone},
           "target_style": None if style is None else {"fields": style_fields, "p_target": args.p_target,
                                                       **style.to_dict()},
           "synthetic": None if synth is None else {"per_class_code": args.synth_per_class, "n": len(synth[1]),
                                                    "by_label": {k: synth[1].count(k) for k in WBC5}},
           "elapsed_s": round(time.perf_counter() - t0, 1)}
    text = json.dumps(doc, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return doc


if __name__ == "__main__":
    main()
