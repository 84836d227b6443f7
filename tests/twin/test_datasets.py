"""Rendered data sets: ImageFolder + manifest, COCO fields, determinism across workers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
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
