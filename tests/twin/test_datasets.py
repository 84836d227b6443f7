"""Rendered data sets: ImageFolder + manifest, COCO fields, determinism across workers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hemotwin.twin.datasets import (
    CellSetConfig,
    FieldSetConfig,
    rle_decode,
    rle_encode,
    simulate_cells,
    simulate_cells_over_presets,
    simulate_fields,
)
from hemotwin.twin.profiles import load_profile


def test_rle_round_trip_including_masks_touching_the_origin():
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = rng.random((17, 23)) > 0.6
        assert np.array_equal(rle_decode(rle_encode(m)), m)
    m = np.zeros((5, 4), bool)
    m[0, 0] = True  # a run of ones first: COCO starts with a zero-length run of zeros
    enc = rle_encode(m)
    assert enc["counts"][0] == 0
    assert np.array_equal(rle_decode(enc), m)


def test_cells_manifest_and_workers_do_not_change_bytes(tmp_path):
    cfg = CellSetConfig(profile=load_profile("wsi-40x"), per_class=3, size_px=64, classes=["MYO", "EOS"], seed=5)
    a = simulate_cells(cfg, tmp_path / "a", workers=1)
    b = simulate_cells(cfg, tmp_path / "b", workers=2)
    assert a["written"] == b["written"] == 6 and not a["failures"]
    for f in sorted((tmp_path / "a").rglob("*.png")):
        assert f.read_bytes() == (tmp_path / "b" / f.relative_to(tmp_path / "a")).read_bytes()
    rows = list(csv.DictReader(open(tmp_path / "a" / "manifest.csv")))
    assert {r["label"] for r in rows} == {"MYO", "EOS"}
    assert all(float(r["um_per_px"]) == 0.25 for r in rows)
    assert any(k.startswith("m_") for k in rows[0])
    img = np.asarray(Image.open(tmp_path / "a" / rows[0]["path"]))
    assert img.shape == (64, 64, 3)
    prov = json.loads((tmp_path / "a" / "provenance.json").read_text())
    assert prov["config"]["seed"] == 5 and prov["hemotwin_version"]


def test_randomized_cells_record_their_profile(tmp_path):
    cfg = CellSetConfig(profile=load_profile("analyzer-100x"), per_class=2, size_px=64, classes=["LYT"],
                        randomize=1.0, seed=1)
    simulate_cells(cfg, tmp_path, workers=1)
    rows = list(csv.DictReader(open(tmp_path / "manifest.csv")))
    sizes = {float(r["um_per_px"]) for r in rows}
    # randomize perturbs the pixel size by ~8 %: two draws coincide with negligible probability.
    assert len(sizes) == 2
    assert all(json.loads(r["profile_json"])["name"].endswith("~r") for r in rows)


def test_fields_coco_is_consistent_with_masks(tmp_path):
    cfg = FieldSetConfig(profile=load_profile("wsi-40x"), n_fields=2, size_px=256, wbc_per_field=2, seed=3)
    s = simulate_fields(cfg, tmp_path, workers=1)
    assert s["written"] == 2 and not s["failures"]
    coco = json.loads((tmp_path / "annotations.json").read_text())
    assert len(coco["images"]) == 2
    cats = {c["id"]: c["name"] for c in coco["categories"]}
    assert "red_cell" in cats.values() and "NGS" in cats.values()
    wbc = [a for a in coco["annotations"] if a["attributes"]["kind"] == "wbc"]
    assert len(wbc) == 4
    for a in coco["annotations"][:40]:
        inst = np.asarray(Image.open(tmp_path / "masks" / f"field_{a['image_id'] - 1:05d}_instances.png"))
        m = rle_decode(a["segmentation"])
        assert m.sum() == a["area"]
        x, y, w, h = a["bbox"]
        ys, xs = np.nonzero(m)
        assert (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) == (x, y, w, h)
        if a["attributes"]["kind"] != "wbc":
            # Visible masks of red cells and platelets are exactly their pixels in the instance map.
            assert np.array_equal(m, inst == a["object_id"])


def test_cells_over_presets_spread_classes_and_keep_a_fixed_field_of_view(tmp_path):
    res = simulate_cells_over_presets(tmp_path, per_class=4, classes=["lyt", "EOS"], field_um=28.0, seed=3)
    assert [r["preset"] for r in res] == ["analyzer-100x", "phone-40x", "wsi-20x", "wsi-40x"]
    for r in res:
        preset_um = load_profile(r["preset"]).camera.um_per_px
        with open(Path(r["out"]) / "manifest.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert sorted(row["label"] for row in rows) == ["EOS", "LYT"]  # one per class per preset
        for row in rows:
            # The crop is 28 µm at the preset's pixel size; each cell's randomised neighbour moves its
            # own pixel size a little (randomize 0.6), never by a factor.
            with Image.open(Path(r["out"]) / row["path"]) as im:
                assert im.width == im.height == round(28.0 / preset_um)
            assert float(row["um_per_px"]) != preset_um and abs(float(row["um_per_px"]) / preset_um - 1) < 0.3


def _pngs(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.png"))


def test_overwrite_leaves_exactly_what_the_new_manifest_lists(tmp_path):
    prof = load_profile("wsi-20x")
    first = CellSetConfig(profile=prof, per_class=3, size_px=32, classes=["NGS", "LYT"], seed=1)
    simulate_cells(first, tmp_path, workers=1)
    assert len(_pngs(tmp_path)) == 6
    mine = tmp_path / "LYT" / "LYT_notes.png"  # a file no manifest of ours listed
    mine.write_bytes(b"not ours")
    second = CellSetConfig(profile=prof, per_class=1, size_px=32, classes=["NGS"], seed=1)
    s = simulate_cells(second, tmp_path, workers=1, overwrite=True)
    rows = list(csv.DictReader(open(tmp_path / "manifest.csv")))
    assert [r["path"] for r in rows] == ["NGS/NGS_000000.png"]
    assert _pngs(tmp_path) == ["LYT/LYT_notes.png", "NGS/NGS_000000.png"]
    assert sorted(s["removed"]) == ["LYT/LYT_000000.png", "LYT/LYT_000001.png", "LYT/LYT_000002.png",
                                    "NGS/NGS_000001.png", "NGS/NGS_000002.png"]
    assert json.loads((tmp_path / "provenance.json").read_text())["removed"] == s["removed"]


def test_a_manifest_we_did_not_write_deletes_nothing(tmp_path):
    # A folder of someone's images with a manifest of the same layout but no provenance of ours.
    (tmp_path / "NGS").mkdir()
    theirs = tmp_path / "NGS" / "NGS_000005.png"
    theirs.write_bytes(b"real cell")
    (tmp_path / "manifest.csv").write_text("path,label\nNGS/NGS_000005.png,NGS\n")
    cfg = CellSetConfig(profile=load_profile("wsi-20x"), per_class=1, size_px=32, classes=["NGS"], seed=1)
    s = simulate_cells(cfg, tmp_path, workers=1, overwrite=True)
    assert theirs.read_bytes() == b"real cell" and s["removed"] == []
    # Nor does one whose provenance names another command.
    (tmp_path / "provenance.json").write_text(json.dumps({"command": "analyze", "hemotwin_version": "0"}))
    (tmp_path / "manifest.csv").write_text("path,label\nNGS/NGS_000005.png,NGS\n")
    assert simulate_cells(cfg, tmp_path, workers=1, overwrite=True)["removed"] == []
    assert theirs.exists()


def test_fields_overwrite_removes_images_and_masks_of_the_earlier_run(tmp_path):
    prof = load_profile("wsi-40x")
    simulate_fields(FieldSetConfig(profile=prof, n_fields=2, size_px=64, wbc_per_field=0, seed=1), tmp_path)
    assert len(_pngs(tmp_path)) == 6  # image + two masks per field
    s = simulate_fields(FieldSetConfig(profile=prof, n_fields=1, size_px=64, wbc_per_field=0, seed=1), tmp_path,
                        overwrite=True)
    assert _pngs(tmp_path) == ["images/field_00000.png", "masks/field_00000_compartments.png",
                               "masks/field_00000_instances.png"]
    assert len(s["removed"]) == 3


def test_a_job_that_fails_before_writing_leaves_no_folder(tmp_path, monkeypatch):
    import hemotwin.twin.datasets as ds

    def crash(*_a, **_k):
        raise RuntimeError("renderer down")

    monkeypatch.setattr(ds, "run_tasks", crash)
    cfg = CellSetConfig(profile=load_profile("wsi-20x"), per_class=1, size_px=32, classes=["NGS"])
    out = tmp_path / "new" / "cells"
    with pytest.raises(RuntimeError):
        simulate_cells(cfg, out)
    # The class folders made for the crops and the missing parent go too; the tmp folder stays.
    assert not (tmp_path / "new").exists() and tmp_path.is_dir()
    kept = tmp_path / "kept"
    kept.mkdir()
    with pytest.raises(RuntimeError):
        simulate_cells(cfg, kept)
    assert kept.is_dir()  # a folder that existed before is never removed
