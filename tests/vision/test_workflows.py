"""End to end: train on twin cells, predict, evaluate; label mapping; augmentation geometry."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from hemotwin import taxonomy
from hemotwin.errors import InputError
from hemotwin.io.images import read_image
from hemotwin.twin.datasets import CellSetConfig, simulate_cells
from hemotwin.twin.profiles import load_profile
from hemotwin.vision.assess import evaluate_model
from hemotwin.vision.augment import TargetReimaging, make_augment
from hemotwin.vision.data import map_items_to, model_labels_for, parse_label_spec
from hemotwin.vision.datasets import load_dataset
from hemotwin.vision.geometry import Geometry, prepare
from hemotwin.vision.inference import (
    DEFAULT_SCALE_TTA,
    InferenceOptions,
    expand_image_paths,
    predict_files,
    predict_to_csv,
)
from hemotwin.vision.models import build_model
from hemotwin.vision.training import TrainRequest
from hemotwin.vision.training import train_model as _train_model

GEOM = Geometry(um_per_px=0.45, input_size=48)  # small and coarse: fast on CPU
PNG_METADATA = "metadata (PNG pHYs)"  # the pixel-size source of the twin's PNG files


def train_model(data, out, **kw):
    """:func:`hemotwin.vision.training.train_model` with the request's fields as keywords."""
    return _train_model(TrainRequest(data=data, out=out, **kw))


@pytest.fixture(scope="module")
def twin_cells(tmp_path_factory):
    root = tmp_path_factory.mktemp("cells")
    cfg = CellSetConfig(profile=load_profile("wsi-40x"), per_class=10, size_px=96, classes=["EOS", "LYT", "NGS"],
                        seed=2)
    simulate_cells(cfg, root, workers=1)
    return root


def test_simulated_cells_carry_their_pixel_size(twin_cells):
    rgb, info = read_image(next((twin_cells / "EOS").glob("*.png")))
    assert info.um_per_px == pytest.approx(0.25, rel=1e-4) and rgb.shape == (96, 96, 3)


def test_train_predict_evaluate(twin_cells, tmp_path):
    out = tmp_path / "m.hemo"
    res = train_model([twin_cells], out, augment="color", epochs=3, seed=0, geometry=GEOM, num_threads=1,
                      batch_size=8, patience=3, scale_jitter=1.2)
    assert res["labels"] == ["NGS", "EOS", "LYT"] and out.exists()
    with zipfile.ZipFile(out) as z:
        manifest = json.loads(z.read("manifest.json"))
    prov = json.dumps(manifest)
    # The file records what it was trained on and how, and the temperature fitted on held-out cells
    # (inside the searched range; the fit can only lower the held-out NLL).
    assert str(twin_cells) in prov and '"color"' in prov
    cal = re.search(r'"calibration": (\{[^{}]*\})', prov)
    assert cal, "the model file records its calibration"
    cal = json.loads(cal.group(1))
    assert 0.05 < cal["temperature"] < 20 and cal["nll_after"] <= cal["nll_before"] + 1e-9 and cal["n"] > 0
    files = sorted(twin_cells.rglob("*.png"))[:6]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    pred = predict_files([*files, bad], options=InferenceOptions(model=out))
    # Every file has a row, the unreadable one too (skipped, with its reason and no call).
    assert len(pred["rows"]) == 7 and pred["n_classified"] == 6 and pred["rejected"] == []
    assert len(pred["failures"]) == 1 and "broken.png" in pred["failures"][0]["path"]
    assert pred["rows"][-1]["status"] == "skipped" and pred["rows"][-1]["label"] == "" and pred["rows"][-1]["reason"]
    row = pred["rows"][0]
    assert row["label"] in res["labels"] and row["um_per_px_source"] == PNG_METADATA
    assert row["status"] in ("ok", "unsure") and 0.0 <= row["ood_score"] <= 1.0
    assert sum(row[f"p_{lab}"] for lab in res["labels"]) == pytest.approx(1.0, abs=1e-3)
    coarse = predict_files(files[:2], labels="wbc5", options=InferenceOptions(model=out))
    assert set(coarse["labels"]) == {"basophil", "eosinophil", "lymphocyte", "monocyte", "neutrophil"}
    rep = tmp_path / "report"
    rep.mkdir()
    ev = evaluate_model(twin_cells, rep, options=InferenceOptions(model=out))
    assert (rep / "report.html").exists() and 0.0 <= ev["metrics"]["accuracy"] <= 1.0
    assert ev["metrics"]["n"] == 30
    # Cell by cell: one row per scored cell, whose calls give back the report's accuracy.
    import csv

    with open(ev["report"]["predictions"], newline="") as fh:
        cells = list(csv.DictReader(fh))
    assert len(cells) == 30 and {c["truth"] for c in cells} == {"NGS", "EOS", "LYT"}
    assert np.mean([c["predicted"] == c["truth"] for c in cells]) == pytest.approx(ev["metrics"]["accuracy"])
    assert all(c["correct"] == str(c["predicted"] == c["truth"]) for c in cells)
    assert sum(float(cells[0][f"p_{lab}"]) for lab in ("NGS", "EOS", "LYT")) == pytest.approx(1.0, abs=1e-3)
    rep_x = tmp_path / "report_x"
    rep_x.mkdir()
    ev_x = evaluate_model(twin_cells, rep_x, exclude=["EOS"], options=InferenceOptions(model=out))
    with open(ev_x["report"]["predictions"], newline="") as fh:
        cells_x = list(csv.DictReader(fh))
    assert ev_x["metrics"]["n"] == 20 and len(cells_x) == 30  # every cell listed, the excluded ones unscored
    assert {c["truth"] for c in cells_x if c["scored"] == "False"} == {"EOS"}
    # The training scanner's stain reference travels with the model, so --harmonise works on it.
    assert manifest["provenance"]["stain_reference"]["level"] > 0
    harm = predict_files(files[:4], options=InferenceOptions(model=out, harmonise=True))
    assert harm["harmonisation"]["harmonised"] and len(harm["rows"]) == 4
    ev_h = evaluate_model(twin_cells, rep, overwrite=True, options=InferenceOptions(model=out, harmonise=True))
    assert ev_h["metrics"]["n"] == 30
    # Test-time augmentation: same files, same label set, recorded in the output.
    t = predict_files(files[:4], options=InferenceOptions(model=out, tta=True))
    assert t["tta"] and [r["path"] for r in t["rows"]] == [r["path"] for r in pred["rows"][:4]]
    assert sum(t["rows"][0][f"p_{lab}"] for lab in res["labels"]) == pytest.approx(1.0, abs=1e-3)
    # Scale TTA at the model's own training zoom (1.2, read from the file) or a given factor.
    z = predict_files(files[:4], options=InferenceOptions(model=out, scale_tta="model"))
    assert z["scale_tta_zooms"] == pytest.approx([1 / 1.2, 1.0, 1.2]) and len(z["rows"]) == 4
    zooms = predict_files(files[:1], options=InferenceOptions(model=out, scale_tta=1.1))["scale_tta_zooms"]
    assert zooms == pytest.approx([1 / 1.1, 1.0, 1.1])
    assert pred["scale_tta_zooms"] == [1.0]
    ev_z = evaluate_model(twin_cells, rep, overwrite=True, options=InferenceOptions(model=out, scale_tta="1.2"))
    assert ev_z["metrics"]["n"] == 30
    rep_json = json.loads((rep / "report.json").read_text())
    assert rep_json["provenance"]["config"]["scale_tta_zooms"] == pytest.approx([1 / 1.2, 1.0, 1.2])
    for bad in ("3", "wide", 0.5, True):
        with pytest.raises(InputError, match="scale_tta"):
            predict_files(files[:1], options=InferenceOptions(model=out, scale_tta=bad))
    # A seed ensemble: another model file with the same labels and geometry (random weights
    # here); its probabilities are the mean of the two files' (CSV rounding: 1e-5).
    import torch

    from hemotwin.vision.modelfile import load_model, save_model

    torch.manual_seed(11)
    first = load_model(out)
    other = save_model(tmp_path / "other.hemo", build_model(first.model.config), labels=res["labels"],
                       um_per_px=GEOM.um_per_px)
    solo = predict_files(files[:3], options=InferenceOptions(model=other))
    ens = predict_files(files[:3], options=InferenceOptions(model=[out, other]))
    assert ens["models"] == [str(out), str(other)]
    for r_e, r_a, r_b in zip(ens["rows"], pred["rows"][:3], solo["rows"], strict=True):
        for lab in res["labels"]:
            assert r_e[f"p_{lab}"] == pytest.approx((r_a[f"p_{lab}"] + r_b[f"p_{lab}"]) / 2, abs=2e-5)
    ev_e = evaluate_model(twin_cells, rep, overwrite=True, options=InferenceOptions(model=[out, other]))
    assert ev_e["metrics"]["n"] == 30
    assert json.loads((rep / "report.json").read_text())["provenance"]["config"]["models"] == [str(out), str(other)]
    wrong = save_model(tmp_path / "wrong.hemo", build_model(first.model.config), labels=["LYT", "NGS", "EOS"],
                       um_per_px=GEOM.um_per_px)
    with pytest.raises(InputError, match=r"wrong\.hemo"):
        predict_files(files[:1], options=InferenceOptions(model=[out, wrong]))
    coarse = save_model(tmp_path / "coarse.hemo", build_model(first.model.config), labels=res["labels"],
                        um_per_px=0.3)
    with pytest.raises(InputError, match=r"coarse\.hemo.*geometry"):
        predict_files(files[:1], options=InferenceOptions(model=[out, coarse]))


def test_harmonise_needs_a_stain_reference(tmp_path):
    # A model saved without a stain reference (files written before it existed) gets a clear error.
    import torch

    from hemotwin.vision.modelfile import save_model
    from hemotwin.vision.models import ModelConfig, build_model

    torch.manual_seed(0)
    path = save_model(tmp_path / "old.hemo", build_model(ModelConfig(n_classes=2, input_size=GEOM.input_size)),
                      labels=["NGS", "LYT"], um_per_px=GEOM.um_per_px, onnx_opset=None)
    img = tmp_path / "c.png"
    from hemotwin.io.images import write_png

    write_png(img, np.full((40, 40, 3), 200, np.uint8), um_per_px=0.25)
    with pytest.raises(InputError, match=r"old\.hemo"):
        predict_files([img], options=InferenceOptions(model=path, harmonise=True, backend="torch"))
    # Nor does it record a training zoom: scale TTA "model" then averages over the documented default
    # zoom (as for the shipped model). The blank image itself is rejected, not classified.
    res = predict_files([img], options=InferenceOptions(model=path, scale_tta="model", backend="torch"))
    assert res["scale_tta_zooms"] == pytest.approx([1 / DEFAULT_SCALE_TTA, 1.0, DEFAULT_SCALE_TTA])
    assert res["n_classified"] == 0 and res["rows"][0]["status"] == "rejected"


def test_auto_labels_lift_fine_codes_to_coarse_groups_present(twin_cells):
    ds = load_dataset(twin_cells)
    assert model_labels_for([ds]) == ("NGS", "EOS", "LYT")
    coarse = ds.with_items([it if it.label != "NGS" else _relabel(it, "neutrophil") for it in ds.items])
    labels = model_labels_for([ds, coarse])
    assert "neutrophil" in labels and "NGS" not in labels


def _relabel(item, label):
    from dataclasses import replace

    return replace(item, label=label)


def test_map_items_drops_labels_without_counterpart(twin_cells):
    ds = load_dataset(twin_cells)
    kept, notes = map_items_to(ds, ("neutrophil", "lymphocyte"))
    assert {it.label for it in kept.items} == {"neutrophil", "lymphocyte"} and len(notes) == 10
    fine, _ = map_items_to(ds, taxonomy.label_set("matek15"))
    assert len(fine.items) == 30


def test_augmentations_end_in_the_model_geometry(twin_cells):
    from hemotwin.twin.reimage import StainBasis

    ds = load_dataset(twin_cells)
    work = prepare(ds.subset(range(4)), GEOM, working=True)
    assert work.images.shape[1] == GEOM.work_size
    basis = StainBasis().fit(list(work.images))
    rng = np.random.default_rng(0)
    outs = {m: make_augment(m, GEOM, basis=basis, pool_size=2)(work.images[0], rng) for m in ("none", "color", "twin")}
    for img in outs.values():
        assert img.shape == (GEOM.input_size, GEOM.input_size, 3) and img.dtype == np.uint8
    assert not np.array_equal(outs["twin"], outs["none"])
    assert basis._memo_budget == 0  # the augmentation memoizes on its own copy of the basis
    # The geometric options (a box crop around the cell, a zoom) keep the model geometry too.
    for m in ("none", "color", "twin"):
        img = make_augment(m, GEOM, basis=basis, pool_size=2, box_crop=1.0, scale_jitter=1.2)(work.images[0], rng)
        assert img.shape == (GEOM.input_size, GEOM.input_size, 3) and img.dtype == np.uint8


def test_target_samples_can_skip_the_colour_jitter(twin_cells):
    # jitter_target=False leaves the samples re-imaged as the target as the twin drew them: the
    # baseline's brightness jitter alone (x0.85-1.15) spreads the mean grey level of 16 draws by
    # ~8 %, the target style's own draws (texture smoothing, noise) by well under 2 %.
    from hemotwin.twin.reimage import StainBasis
    from hemotwin.twin.target_style import TargetStyle

    work = prepare(load_dataset(twin_cells).subset(range(6)), GEOM, working=True)
    basis = StainBasis().fit(list(work.images))
    um = GEOM.work_um_per_px
    style = TargetStyle().fit(list(work.images), list(work.images), source_um_per_px=um, target_um_per_px=um)
    spread = {}
    for jitter in (True, False):
        aug = make_augment("twin", GEOM, basis=basis, pool_size=2, target=TargetReimaging(style, 1.0, jitter),
                           p_reimage=0.0)
        rng = np.random.default_rng(3)
        means = [aug(work.images[0], rng).mean() for _ in range(16)]
        spread[jitter] = np.std(means) / np.mean(means)
    assert spread[False] < 0.02 < spread[True]


def test_train_with_a_target_scanner_records_it(twin_cells, tmp_path):
    """``--target``: unlabelled images of another scanner calibrate part of the twin re-imaging.

    The target is the twin's phone-40x preset; its images' pixel size comes from their metadata,
    and the fitted style (the stain-level ratios TargetStyle's own tests check) travels with the
    model so the training can be audited and repeated.
    """
    target = tmp_path / "phone"
    simulate_cells(CellSetConfig(profile=load_profile("phone-40x"), per_class=3, size_px=96,
                                 classes=["LYT", "NGS"], seed=9), target, workers=1)
    out = tmp_path / "t.hemo"
    res = train_model([twin_cells], out, augment="twin", epochs=1, seed=0, geometry=GEOM, num_threads=1,
                      batch_size=8, patience=1, target=target, ema_epochs=0.5)
    assert out.exists() and res["n_train"] > 0
    with zipfile.ZipFile(out) as z:
        prov = json.loads(z.read("manifest.json"))["provenance"]
    aug = prov["augmentation"]
    assert prov["config"]["training"]["ema_epochs"] == 0.5
    tgt = aug["target"]
    assert tgt["n_images"] == 6 and tgt["um_per_px_source"] == PNG_METADATA
    assert tgt["um_per_px"] == pytest.approx(load_profile("phone-40x").camera.um_per_px, rel=1e-3)
    assert 0.0 < tgt["style"]["purple_ratio"] and tgt["style"]["schema"] == "hemotwin.target_style/1"
    assert tgt["style"]["nuclear_smoothing_um"] >= 0.0
    # With a target, the other samples stay as they are (no preset re-imaging) unless asked.
    assert aug["p_reimage"] == 0.0 and aug["box_crop"] == 0.0 and aug["scale_jitter"] == 1.2
    with pytest.raises(InputError, match="scale_jitter"):
        train_model([twin_cells], tmp_path / "z.hemo", augment="twin", epochs=1, geometry=GEOM, scale_jitter=0.5)
    with pytest.raises(InputError, match="ema_epochs"):
        train_model([twin_cells], tmp_path / "z.hemo", augment="twin", epochs=1, geometry=GEOM, ema_epochs=-1.0)
    with pytest.raises(InputError, match=r"target.*twin augmentation"):
        train_model([twin_cells], tmp_path / "c.hemo", augment="color", epochs=1, geometry=GEOM, target=target)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="empty"):
        train_model([twin_cells], tmp_path / "e.hemo", augment="twin", epochs=1, geometry=GEOM, target=empty)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(InputError, match=r"readable images \(all 1 failed\)"):
        train_model([twin_cells], tmp_path / "b.hemo", augment="twin", epochs=1, geometry=GEOM, target=broken)


def test_train_with_teachers_records_them_and_checks_them(twin_cells, tmp_path):
    """``train --teacher``: the student's file names its teachers (path, SHA-256, seed) and the weight.

    A teacher must answer in the student's labels and read the student's geometry; anything else is
    an error that names the teacher's file, before any training.
    """
    from hemotwin.io.provenance import file_sha256

    kw = {"augment": "color", "epochs": 1, "geometry": GEOM, "num_threads": 1, "batch_size": 8, "patience": 1}
    teachers = [tmp_path / f"t{s}.hemo" for s in (0, 1)]
    for s, t in enumerate(teachers):
        train_model([twin_cells], t, seed=s, **kw)
    out = tmp_path / "student.hemo"
    train_model([twin_cells], out, seed=2, teachers=teachers, **kw)
    with zipfile.ZipFile(out) as z:
        prov = json.loads(z.read("manifest.json"))["provenance"]
    assert [t["sha256"] for t in prov["teachers"]] == [file_sha256(t) for t in teachers]
    assert [t["seed"] for t in prov["teachers"]] == [0, 1]
    assert prov["config"]["training"]["distill_weight"] == 0.5
    assert prov["config"]["training"]["distill_temperature"] == 2.0

    two = tmp_path / "two.hemo"
    train_model([twin_cells], two, labels=["NGS", "EOS"], **kw)
    with pytest.raises(InputError, match=r"two\.hemo.*labels being trained"):
        train_model([twin_cells], tmp_path / "x.hemo", teachers=[two], **kw)
    with pytest.raises(InputError, match=r"t0\.hemo.*input geometry"):
        train_model([twin_cells], tmp_path / "x.hemo", teachers=[teachers[0]],
                    **{**kw, "geometry": Geometry(um_per_px=0.45, input_size=40)})
    with pytest.raises(InputError, match="distill_weight"):
        train_model([twin_cells], tmp_path / "x.hemo", distill_weight=0.5, **kw)
    with pytest.raises(InputError, match="distill_weight"):
        train_model([twin_cells], tmp_path / "x.hemo", teachers=teachers, distill_weight=0.0, **kw)
    with pytest.raises(InputError, match="teachers"):
        train_model([twin_cells], tmp_path / "x.hemo", teachers=[tmp_path / "missing.hemo"], **kw)
    assert not (tmp_path / "x.hemo").exists()


def test_train_with_unlabelled_target_cells_records_them_and_checks_them(twin_cells, tmp_path):
    """``train --unlabelled``: a scanner's unlabelled cells join the training set, labelled by the teachers.

    The cells are twin cells of the phone-40x preset (their pixel size from their metadata); the
    file records how many, where from, the coverage and what the teachers' sets said. Without
    teachers, with a bad coverage or an unusable folder, the error names the option, and nothing
    is written.
    """
    kw = {"augment": "twin", "epochs": 1, "geometry": GEOM, "num_threads": 1, "batch_size": 8, "patience": 1}
    cells = tmp_path / "phone"
    simulate_cells(CellSetConfig(profile=load_profile("phone-40x"), per_class=3, size_px=96,
                                 classes=["EOS", "LYT", "NGS"], seed=9), cells, workers=1)
    teacher = tmp_path / "t0.hemo"
    train_model([twin_cells], teacher, seed=0, scale_jitter=1.2, **kw)
    out = tmp_path / "student.hemo"
    res = train_model([twin_cells], out, seed=1, teachers=[teacher], unlabelled=[cells], pseudo_coverage=0.8, **kw)
    assert res["n_unlabelled"] == 9
    with zipfile.ZipFile(out) as z:
        prov = json.loads(z.read("manifest.json"))["provenance"]
    unl = prov["unlabelled"]
    assert unl["coverage"] == 0.8 and unl["folders"][0]["n_images"] == 9
    assert unl["folders"][0]["um_per_px_source"] == PNG_METADATA
    assert unl["folders"][0]["um_per_px"] == pytest.approx(load_profile("phone-40x").camera.um_per_px, rel=1e-3)
    sets = unl["prediction_sets"]
    # Every cell gets a set of 1-3 classes, and the counts by class add up.
    assert sets["n"] == 9 and 1.0 <= sets["mean_set_size"] <= 3.0
    assert sum(sets["single_class_by_label"].values()) == sets["single_class"]
    assert sum(sets["in_a_set_by_label"].values()) == pytest.approx(sets["mean_set_size"] * 9)
    assert prov["teachers"][0]["scale_jitter"] == 1.2  # the teachers label with their own zoom average

    with pytest.raises(InputError, match=r"unlabelled.*teachers"):
        train_model([twin_cells], tmp_path / "x.hemo", unlabelled=[cells], **kw)
    with pytest.raises(InputError, match="pseudo_coverage"):
        train_model([twin_cells], tmp_path / "x.hemo", teachers=[teacher], unlabelled=[cells], pseudo_coverage=0, **kw)
    with pytest.raises(InputError, match=r"unlabelled.*missing"):
        train_model([twin_cells], tmp_path / "x.hemo", teachers=[teacher], unlabelled=[tmp_path / "missing"], **kw)
    assert not (tmp_path / "x.hemo").exists()


def test_predict_to_csv_expands_folders_and_writes_the_rows(twin_cells, tmp_path):
    """The ``predict`` workflow: folders become their image files, the rows become a CSV."""
    import csv

    import torch

    from hemotwin.vision.modelfile import save_model
    from hemotwin.vision.models import ModelConfig

    torch.manual_seed(0)
    model = save_model(tmp_path / "m.hemo", build_model(ModelConfig(n_classes=3, input_size=GEOM.input_size)),
                       labels=["NGS", "EOS", "LYT"], um_per_px=GEOM.um_per_px, onnx_opset=None)
    files = expand_image_paths([twin_cells / "EOS", twin_cells / "LYT" / "missing.png"])
    assert len(files) == 11 and files[-1].name == "missing.png" and all(f.suffix == ".png" for f in files)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="images"):
        expand_image_paths([empty])
    out = tmp_path / "p.csv"
    res = predict_to_csv([twin_cells / "EOS"], out, options=InferenceOptions(model=model, backend="torch"))
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert res["csv"] == str(out) and len(rows) == 10 and rows[0]["um_per_px_source"] == PNG_METADATA
    with pytest.raises(FileExistsError):
        predict_to_csv([twin_cells / "EOS"], out, options=InferenceOptions(model=model, backend="torch"))


def test_label_specs_as_users_write_them():
    assert parse_label_spec("auto") == "auto" and parse_label_spec("pbc") == "pbc"
    assert parse_label_spec("NGS,EOS,") == ["NGS", "EOS"] and parse_label_spec(("LYT",)) == ["LYT"]


# ------------------------------------------------------------------ input check, statuses, exit codes

def _nonsense(folder):
    """The images the shipped model used to call with confidence: white, grey, a single pixel (0.1 µm/px)."""
    from hemotwin.io.images import write_png

    folder.mkdir(parents=True, exist_ok=True)
    return [write_png(folder / "white.png", np.full((100, 100, 3), 255, np.uint8), um_per_px=0.1),
            write_png(folder / "grey.png", np.full((100, 100, 3), 128, np.uint8), um_per_px=0.1),
            write_png(folder / "one.png", np.full((1, 1, 3), 180, np.uint8), um_per_px=0.1)]


def test_predict_rejects_nonsense_and_gives_every_file_a_status(twin_cells, tmp_path):
    import csv

    cells = sorted((twin_cells / "LYT").glob("*.png"))[:2]
    files = [*_nonsense(tmp_path / "junk"), *cells]
    res = predict_to_csv(files, tmp_path / "p.csv")  # the shipped model
    with open(res["csv"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["status"] for r in rows[:3]] == ["rejected"] * 3 and res["n_classified"] == 2
    assert "no stained cell" in rows[0]["reason"] and "no stained cell" in rows[1]["reason"]
    assert "too small for a white cell" in rows[2]["reason"]
    for r in rows[:3]:  # no class, no probability for a rejected image
        assert r["label"] == "" and r["probability"] == "" and all(r[f"p_{lab}"] == "" for lab in res["labels"])
    for r in rows[3:]:
        assert r["status"] in ("ok", "unsure") and r["label"] in res["labels"] and r["reason"] in ("", r["reason"])
        assert 0.0 <= float(r["ood_score"]) <= 1.0
    assert [f["path"] for f in res["rejected"]] == [str(f) for f in files[:3]] and res["failures"] == []
    # Without the check the same images get a class: the check, not the model, refuses them.
    assert predict_files(files[:2], input_check=None)["n_classified"] == 2
    # unsure: a call below min_confidence (every call, at a threshold of 1).
    strict = predict_files(cells, min_confidence=1.0)
    assert {r["status"] for r in strict["rows"]} == {"unsure"} and "below 1" in strict["rows"][0]["reason"]


def test_ood_score_is_the_normalised_entropy():
    from hemotwin.vision.inference import ood_scores

    p = np.array([[1.0, 0.0, 0.0, 0.0], [0.25] * 4, [0.5, 0.5, 0.0, 0.0]])
    # One class: 0; uniform: 1; two classes of four: log 2 / log 4 = 0.5.
    assert ood_scores(p) == pytest.approx([0.0, 1.0, 0.5])


def test_predict_exit_codes_follow_the_convention(twin_cells, tmp_path):
    """0 all classified; 3 finished with rejected or skipped files (listed); 2 nothing classified."""
    from typer.testing import CliRunner

    from hemotwin.cli import app

    runner = CliRunner()
    junk = _nonsense(tmp_path / "junk")
    cell = str(sorted((twin_cells / "EOS").glob("*.png"))[0])
    ok = runner.invoke(app, ["predict", cell, "--out", str(tmp_path / "a.csv")])
    assert ok.exit_code == 0, ok.output
    part = runner.invoke(app, ["predict", cell, str(junk[0]), "--out", str(tmp_path / "b.csv")])
    flat = "".join(part.output.split())  # rich wraps long paths anywhere
    assert part.exit_code == 3 and "white.png" in flat and "rejected" in flat, part.output
    none = runner.invoke(app, ["predict", *map(str, junk), "--out", str(tmp_path / "c.csv")])
    assert none.exit_code == 2 and "one.png" in "".join(none.output.split()), none.output
    # The output is checked before any work: a path under a file, an unknown label set.
    blocker = tmp_path / "file"
    blocker.write_text("x")
    bad = runner.invoke(app, ["predict", cell, "--out", str(blocker / "p.csv")])
    assert bad.exit_code == 2 and "--out" in bad.output and "Traceback" not in bad.output
    bad = runner.invoke(app, ["predict", cell, "--labels", "nonsense", "--out", str(tmp_path / "d.csv")])
    assert bad.exit_code == 2 and "--labels" in bad.output and not (tmp_path / "d.csv").exists()


def _image_folder(src, dest):
    """``src``'s class folders alone (without its manifest, so every file in them is read)."""
    import shutil

    for cls in sorted(p for p in src.iterdir() if p.is_dir()):
        shutil.copytree(cls, dest / cls.name)
    return dest


def test_evaluate_reports_rejected_images_and_no_machine_paths(twin_cells, tmp_path):
    """A blank image filed as EOS is rejected, never scored as correct; the report names files inside the data."""
    import csv
    import html

    from typer.testing import CliRunner

    from hemotwin.cli import app
    from hemotwin.io.images import write_png
    from hemotwin.vision.inference import default_model_path

    data = _image_folder(twin_cells, tmp_path / "data")
    write_png(data / "EOS" / "white.png", np.full((120, 120, 3), 255, np.uint8), um_per_px=0.25)
    (data / "LYT" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    rep = tmp_path / "report"
    res = CliRunner().invoke(app, ["evaluate", "--data", str(data), "--out", str(rep)])
    assert res.exit_code == 3, res.output  # finished, two files not scored: listed
    assert "white.png" in res.output and "broken.png" in res.output
    doc = json.loads((rep / "report.json").read_text())
    m = doc["metrics"]
    assert m["n"] == 30 and m["n_rejected"] == 1 and m["per_class"]["EOS"]["rejected"] == 1
    assert m["accuracy_rejected_as_errors"] == pytest.approx(m["accuracy"] * 30 / 31)
    with open(rep / "predictions.csv", newline="") as fh:
        cells = {c["path"]: c for c in csv.DictReader(fh)}
    assert len(cells) == 32  # every file, in the data folder's terms
    white = cells["EOS/white.png"]
    assert white["status"] == "rejected" and white["predicted"] == "" and white["correct"] == ""
    assert white["scored"] == "False" and "no stained cell" in white["reason"]
    assert cells["LYT/broken.png"]["status"] == "skipped" and str(tmp_path) not in cells["LYT/broken.png"]["reason"]
    # No path of this machine in the report but the data folder as given (the input itself).
    for name in ("report.json", "report.html", "predictions.csv"):
        text = html.unescape((rep / name).read_text()).replace(str(data) + ":", "").replace(f'"{data}"', "")
        assert str(tmp_path) not in text and str(default_model_path()) not in text, name
    assert doc["provenance"]["config"]["data"] == str(data)


def test_evaluate_refuses_a_report_folder_inside_the_data(twin_cells, tmp_path):
    data = _image_folder(twin_cells, tmp_path / "data")
    with pytest.raises(InputError, match=r"out.*outside the data folder") as err:
        evaluate_model(data, data / "report")
    assert str(data) in str(err.value) and "report" in str(err.value)
    assert not (data / "report").exists()  # refused before anything was created


def test_options_and_outputs_are_checked_before_any_work(twin_cells, tmp_path):
    """Each error names its parameter, though the data named do not exist: nothing was read first."""
    from hemotwin.vision.assess import stress_model

    missing = tmp_path / "missing"
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for kw, where in (({"norm": "foo"}, "norm"), ({"augment": "foo"}, "augment"), ({"labels": "nonsense"}, "labels"),
                      ({"epochs": 0}, "epochs")):
        with pytest.raises(InputError) as err:
            train_model([missing], tmp_path / "m.hemo", **kw)
        assert err.value.where == where
    unwritable = [blocker / "m.hemo"] + ([Path("/proc/x.hemo")] if Path("/proc/self").is_dir() else [])
    for out in unwritable:
        with pytest.raises(InputError) as err:
            train_model([missing], out)
        assert err.value.where == "out" and str(out) in str(err.value)
    with pytest.raises(InputError) as err:
        predict_to_csv([missing], blocker / "p.csv")
    assert err.value.where == "out"
    with pytest.raises(InputError) as err:
        predict_to_csv([missing], tmp_path / "p.csv", labels="nonsense")
    assert err.value.where == "labels"
    for kw, where in (({"backend": "foo"}, "backend"), ({"scale_tta": "3"}, "scale_tta")):
        with pytest.raises(InputError) as err:
            evaluate_model(missing, tmp_path / "rep", options=InferenceOptions(**kw))
        assert err.value.where == where
    for kw, where in (({"floor": 1.5}, "floor"), ({"backend": "foo"}, "backend"), ({"per_class": 0}, "per_class")):
        with pytest.raises(InputError) as err:
            stress_model(tmp_path / "stress", **kw)
        assert err.value.where == where
    with pytest.raises(InputError) as err:
        evaluate_model(missing, blocker / "rep")
    assert err.value.where == "out"
    with pytest.raises(InputError) as err:
        stress_model(blocker / "stress")
    assert err.value.where == "out"
    assert not (tmp_path / "rep").exists() and not (tmp_path / "stress").exists() and not (tmp_path / "m.hemo").exists()


def test_train_refuses_data_sets_labelled_at_different_levels(twin_cells, tmp_path):
    """PBC-style folder names (``eosinophil``) joined with twin codes (``NGS``) need a label set named."""
    import shutil

    from hemotwin.vision.training import check_label_sets

    coarse = tmp_path / "coarse"
    for code, group in (("EOS", "eosinophil"), ("NGS", "neutrophil")):
        shutil.copytree(twin_cells / code, coarse / group)
    with pytest.raises(InputError) as err:
        train_model([twin_cells, coarse], tmp_path / "m.hemo", geometry=GEOM, epochs=1)
    msg = str(err.value)
    assert err.value.where == "labels" and "NGS" in msg and "neutrophil" in msg and "wbc5" in msg
    assert str(coarse) in msg and str(twin_cells) in msg and not (tmp_path / "m.hemo").exists()
    check_label_sets([twin_cells, coarse], "wbc5")  # a label set named: both map into it
    check_label_sets([twin_cells, twin_cells], "auto")  # the same level: nothing to choose


def test_scale_tta_model_works_with_the_shipped_model(twin_cells):
    # The shipped model records no training zoom: the documented default is used, not an error.
    res = predict_files(sorted((twin_cells / "NGS").glob("*.png"))[:2], options=InferenceOptions(scale_tta="model"))
    assert res["scale_tta_zooms"] == pytest.approx([1 / DEFAULT_SCALE_TTA, 1.0, DEFAULT_SCALE_TTA])
    assert res["n_classified"] == 2
