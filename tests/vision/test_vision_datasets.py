"""Data-set loading, grouped splits, scale normalisation and the red-cell ruler.

(Named test_vision_datasets.py, not test_datasets.py: tests/twin/test_datasets.py exists and the
test folders are not packages, so pytest needs unique basenames.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hemotwin.errors import InputError
from hemotwin.vision.datasets import (
    duplicate_groups,
    estimate_dataset_um_per_px,
    estimate_um_per_px,
    load_dataset,
    measure_red_cells,
    red_cell_ruler,
    split,
    to_canonical,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"  # /work/main/tests/vision -> /work/shared/data
if not SHARED.is_dir():  # the repository may also sit inside the workspace that holds shared/
    SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
needs_shared = pytest.mark.skipif(not (SHARED / "pbc").is_dir(), reason="../shared/data not present")


def _cell(seed: int, size: int = 40) -> np.ndarray:
    """Smooth random picture (like a photograph, unlike pixel noise, it survives JPEG)."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8))
    return np.asarray(small.resize((size, size), Image.Resampling.BICUBIC))


def _tree(root: Path, spec: dict[str, int]) -> None:
    seed = 0
    for folder, n in spec.items():
        (root / folder).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(_cell(seed)).save(root / folder / f"{i}.png")
            seed += 1


def test_image_folder_with_synonym_folders(tmp_path: Path) -> None:
    _tree(tmp_path, {"NEUTROPHIL": 3, "Lymphocytes": 2, "SNE": 1})
    (tmp_path / "NEUTROPHIL" / "notes.txt").write_text("not an image")
    ds = load_dataset(tmp_path, label_set="wbc5")
    assert ds.counts() == {"basophil": 0, "eosinophil": 0, "lymphocyte": 2, "monocyte": 0, "neutrophil": 4}
    assert [s[1] for s in ds.skipped] == ["not an image file (by suffix)"]
    assert all(it.um_per_px is None and it.um_per_px_source == "unknown" for it in ds)
    assert ds.read(0).shape == (40, 40, 3)
    raw = load_dataset(tmp_path)  # no label set: each folder's own canonical label
    assert sorted(set(raw.targets().tolist())) == [0, 1, 2] and raw.labels == ("NGS", "lymphocyte", "neutrophil")


def test_unknown_and_empty_folders_are_errors(tmp_path: Path) -> None:
    _tree(tmp_path / "a", {"neutrophil": 1, "bananas": 1})
    with pytest.raises(InputError, match="bananas"):
        load_dataset(tmp_path / "a")
    _tree(tmp_path / "b", {"neutrophil": 1})
    (tmp_path / "b" / "monocyte").mkdir()
    with pytest.raises(InputError, match="empty class folder"):
        load_dataset(tmp_path / "b")
    with pytest.raises(InputError, match="no such file"):
        load_dataset(tmp_path / "missing")


def test_manifest_scale_sources_groups_and_missing_files(tmp_path: Path) -> None:
    _tree(tmp_path, {"x": 3})
    (tmp_path / "manifest.csv").write_text(
        "path,label,um_per_px,source,group\n"
        "x/0.png,SNE,0.1,scanner A,p1\n"
        "x/1.png,band,,scanner A,p1\n"
        "x/2.png,MON,,,\n"
        "x/gone.png,MON,,,\n")
    ds = load_dataset(tmp_path, um_per_px=0.25)
    assert [it.label for it in ds] == ["NGS", "NGB", "MON"]
    assert [(it.um_per_px, it.um_per_px_source) for it in ds] == [(0.1, "manifest"), (0.25, "option"),
                                                                 (0.25, "option")]
    assert ds[0].source == "scanner A" and ds[2].source is None
    assert "gone.png" in ds.skipped[0][0]
    g = ds.groups()
    assert g[0] == g[1] != g[2]


def test_manifest_bad_label_names_the_row(tmp_path: Path) -> None:
    _tree(tmp_path, {"x": 2})
    (tmp_path / "m.csv").write_text("path,label\nx/0.png,NGS\nx/1.png,alien\n")
    with pytest.raises(InputError, match=r"m.csv:row 3 \(label\)"):
        load_dataset(tmp_path / "m.csv")
    (tmp_path / "n.csv").write_text("file,class\nx/0.png,NGS\n")
    with pytest.raises(InputError, match="path,label"):
        load_dataset(tmp_path / "n.csv")


def test_duplicates_stay_on_one_side_of_the_split(tmp_path: Path) -> None:
    _tree(tmp_path, {"neutrophil": 30, "lymphocyte": 30})
    # Exact and re-encoded copies (found by hash) and a declared pair (from the CSV).
    base = np.asarray(Image.open(tmp_path / "neutrophil" / "0.png"))
    Image.fromarray(base).save(tmp_path / "neutrophil" / "copy.png")
    Image.fromarray(base).save(tmp_path / "neutrophil" / "copy.jpg", quality=90)
    (tmp_path / "dups.csv").write_text("path_a,path_b,kind\nlymphocyte/0.png,lymphocyte/1.png,same cell\n")
    ds = load_dataset(tmp_path, near_duplicates=tmp_path / "dups.csv")
    found, failures = duplicate_groups(ds)
    assert not failures
    names = {frozenset((ds[a].path.name, ds[b].path.name)) for a, b in found}
    assert names == {frozenset(p) for p in (("0.png", "copy.png"), ("0.png", "copy.jpg"), ("copy.png", "copy.jpg"))}
    ds.duplicate_pairs.extend(found)
    g = ds.groups()
    for seed in range(8):
        sp = split(ds, val_fraction=0.2, test_fraction=0.2, seed=seed)
        side = {}
        for part, idx in sp.indices.items():
            for i in idx:
                side[int(i)] = part
        assert sorted(side) == list(range(len(ds)))  # every item exactly once
        for grp in set(g.tolist()):
            assert len({side[i] for i in np.nonzero(g == grp)[0]}) == 1
        assert 5 <= len(sp.test) <= 7 * 2 and sp.test.counts()["lymphocyte"] == 6  # stratified: 20 % of 30
    same = split(ds, val_fraction=0.2, test_fraction=0.2, seed=3)
    np.testing.assert_array_equal(same.indices["test"], split(ds, val_fraction=0.2, test_fraction=0.2,
                                                              seed=3).indices["test"])


def _disc_image(diameter_um: float, um_per_px: float, field_um: float) -> np.ndarray:
    n = round(field_um / um_per_px)
    yy, xx = np.mgrid[:n, :n]
    c = (n - 1) / 2
    r_px = diameter_um / 2 / um_per_px
    img = np.full((n, n, 3), 230, dtype=np.uint8)
    img[(yy - c) ** 2 + (xx - c) ** 2 <= r_px**2] = (150, 60, 120)
    return img


def test_to_canonical_keeps_physical_size() -> None:
    img = _disc_image(8.0, 0.1, 30.0)  # 80 px disc in a 300 px field
    before = img.copy()
    out = to_canonical(img, um_per_px=0.1, canonical_um_per_px=0.25, size=64)
    np.testing.assert_array_equal(img, before)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    dark = out[..., 1] < (60 + 230) / 2  # half-way threshold: the disc's edge
    d_px = 2 * np.sqrt(dark.sum() / np.pi)
    # 8 µm at 0.25 µm/px = 32 px; the rounding of the grid and the anti-alias blur stay under 1 px.
    assert abs(d_px - 32.0) < 1.0
    # Padding (12 µm field -> 48 px < 64) uses the background, not black.
    pad = to_canonical(_disc_image(8.0, 0.1, 12.0), um_per_px=0.1, canonical_um_per_px=0.25, size=64)
    np.testing.assert_array_equal(pad[0, 0], [230, 230, 230])


def test_to_canonical_rejects_bad_scale() -> None:
    with pytest.raises(InputError, match="um_per_px"):
        to_canonical(_cell(0), um_per_px=0.0, canonical_um_per_px=0.25, size=32)


def _discs(centres: list[tuple[float, float]], *, n: int, radius_px: float) -> np.ndarray:
    """Red-cell-coloured discs on glass (ideal images)."""
    img = np.full((n, n, 3), 235, dtype=np.uint8)
    yy, xx = np.mgrid[:n, :n]
    for cy, cx in centres:
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius_px**2] = (200, 120, 140)
    return img


def test_ruler_on_synthetic_discs_and_on_blank() -> None:
    # Sixteen isolated 7.5 µm discs at 0.2 µm/px: the ruler must return 0.2 closely (ideal images).
    grid = [(50.0 + 100 * i, 50.0 + 100 * j) for i in range(4) for j in range(4)]
    um, det = estimate_um_per_px(_discs(grid, n=400, radius_px=7.5 / 2 / 0.2))
    assert det["n_cells"] == 16 and det["n_isolated"] == 16 and det["round_fraction"] == 1.0
    assert um == pytest.approx(0.2, rel=0.03)  # 3 %: pixelated outline of a 37 px disc
    assert det["robust_cv"] < 0.02 and "16 red cells" in det["quality"] and det["reason"] is None
    um, det = estimate_um_per_px(np.full((64, 64, 3), 200, dtype=np.uint8))
    assert um is None and det["reason"]


def test_ruler_refuses_few_cells_and_measures_touching_ones_by_their_free_outline() -> None:
    # Four lone discs: a median of four is no ruler however round they are.
    um, det = estimate_um_per_px(_discs([(50, 50), (50, 150), (150, 50), (150, 150)], n=200, radius_px=18.75))
    assert um is None and det["n_cells"] == 4 and "need 10" in det["reason"]
    # Sixteen pairs of discs overlapping by half a diameter: each is measured by the circle through the
    # part of its outline that faces glass, not by the area left to it after the cut between the two.
    pairs = [(60.0 + 110 * i, 45.0 + 110 * j + dx) for i in range(4) for j in range(4) for dx in (0.0, 19.0)]
    um, det = estimate_um_per_px(_discs(pairs, n=460, radius_px=18.75))
    assert det["n_touching"] == 32 and det["n_isolated"] == 0
    assert um == pytest.approx(0.2, rel=0.04)  # measured +2.8 %: the cusp where two outlines meet


def test_red_cell_ruler_pools_images_and_states_its_quality() -> None:
    grid = [(50.0 + 100 * i, 50.0 + 100 * j) for i in range(2) for j in range(3)]
    one = measure_red_cells(_discs(grid, n=300, radius_px=18.75))
    assert len(one["diameters_px"]) == 6 and one["n_candidates"] == 6
    assert red_cell_ruler([one])[0] is None  # six cells: too few alone
    um, det = red_cell_ruler([one, one])  # two fields of one scanner: twelve cells
    assert um == pytest.approx(0.2, rel=0.03) and det["n_images"] == 2
    assert "12 red cells in 2 images" in det["quality"] and "robust CV" in det["quality"]
    # Half of the outlines misshapen (round fraction 12 of 48 = 25 % passes; 12 of 60 does not).
    many = {**one, "n_candidates": 30}
    um, det = red_cell_ruler([many, many])
    assert um is None and "20% of 60" in det["reason"] and "measurable discs" in det["reason"]
    spread = {**one, "diameters_px": [30.0, 33.0, 36.0, 40.0, 44.0, 46.0]}
    um, det = red_cell_ruler([spread, spread])
    assert um is None and "too variable" in det["reason"]


def _twin_field(preset: str, *, side_um: float, density: float, seed: int) -> np.ndarray:
    from hemotwin.twin.profiles import load_profile
    from hemotwin.twin.render import render
    from hemotwin.twin.specimen import FieldSpec, compose_field

    spec = FieldSpec(height_um=side_um, width_um=side_um, rbc_per_10k_um2=density, wbc_count=2)
    return render(compose_field(spec, seed=seed), load_profile(preset), seed=seed).image


@pytest.mark.parametrize(("preset", "side_um", "tol"), [("analyzer-100x", 60.0, 0.02), ("wsi-20x", 200.0, 0.06)])
def test_ruler_on_twin_fields(preset: str, side_um: float, tol: float) -> None:
    from hemotwin.twin.profiles import load_profile

    truth = load_profile(preset).camera.um_per_px
    um, det = estimate_um_per_px(_twin_field(preset, side_um=side_um, density=180.0, seed=0))
    # analyzer-100x (38 px cells): measured -0.1 %; wsi-20x (15 px cells): +3 %, because the twin's red
    # cells are 7.6 µm rather than 7.5 and blur widens small cells.
    assert um == pytest.approx(truth, rel=tol), det
    assert det["n_cells"] >= 20 and det["round_fraction"] >= 0.3


def test_ruler_refuses_a_packed_twin_monolayer() -> None:
    # 300 red cells per 100 x 100 µm overlap everywhere: the old ruler took the overlap lenses for cells
    # and read 0.52 µm/px for 0.1; the few "discs" left now are too few a share of the outlines.
    um, det = estimate_um_per_px(_twin_field("analyzer-100x", side_um=60.0, density=300.0, seed=0))
    assert um is None and det["reason"], det


@pytest.mark.parametrize(("preset", "size_px"), [("analyzer-100x", 320), ("wsi-40x", 160)])
def test_ruler_on_twin_crops(preset: str, size_px: int) -> None:
    from hemotwin.twin.datasets import render_cell
    from hemotwin.twin.profiles import load_profile

    prof = load_profile(preset)
    crops = [measure_red_cells(render_cell("NGS", prof, size_px=size_px, seed=seed).image) for seed in range(4)]
    um, det = red_cell_ruler(crops)  # one crop holds too few whole red cells; four of one scanner do
    # 7 %: the twin's red cells are 7.6 +- 0.4 µm (area-equivalent) against the ruler's 7.5 µm and blur
    # widens small cells (wsi-40x: +3 % measured).
    assert um == pytest.approx(prof.camera.um_per_px, rel=0.07), det


@needs_shared
def test_ruler_on_real_pbc_crops() -> None:
    ds = load_dataset(SHARED / "pbc")
    assert len(ds) == 2000 and all(it.source for it in ds)
    est, det = estimate_dataset_um_per_px(ds, sample=12, seed=0)
    # CellaVision DM96 images are about 0.1 µm/px; 10-12 crops pooled (25-45 red cells) measured 0.098-0.109.
    assert det["um_per_px"] == pytest.approx(0.1, rel=0.08), det
    assert est[0].um_per_px_source.startswith("red cells (") and "robust CV" in est[0].um_per_px_source
    crops = load_dataset(SHARED / "bccd")  # tight crops: too few whole red cells -> no estimate, not a wrong one
    same, det = estimate_dataset_um_per_px(crops, sample=40, seed=0)
    assert det["um_per_px"] is None and det["reason"] and same[0].um_per_px_source == "unknown"


@needs_shared
def test_ruler_refuses_bccd_fields_and_crops() -> None:
    from hemotwin.io.images import read_image

    fields = sorted((SHARED / "bccd" / "BCCD" / "JPEGImages").glob("*.jpg"))[:10]
    measured = [measure_red_cells(read_image(f)[0]) for f in fields]
    # Crowded, crenated, blurred red cells: the old ruler read 0.087-0.119 µm/px on these fields (their VOC
    # red-cell boxes give 0.072); one by one and pooled, the ruler must now refuse rather than guess.
    assert all(red_cell_ruler([m])[0] is None for m in measured)
    um, det = red_cell_ruler(measured)
    assert um is None and det["reason"], det
    for crop in sorted((SHARED / "bccd" / "wbc_crops").glob("*/*.png"))[:20]:  # one read 0.789 µm/px
        assert estimate_um_per_px(read_image(crop)[0])[0] is None, crop


@needs_shared
def test_bccd_manifest_and_confirmed_duplicates() -> None:
    ds = load_dataset(SHARED / "bccd", label_set="wbc5")
    assert len(ds) == 341 and ds.counts()["basophil"] == 2
    assert len(ds.duplicate_pairs) == 5  # the whole-field pair is not among the crops
    sp = split(ds, seed=1)
    side = {int(i): k for k, idx in sp.indices.items() for i in idx}
    assert all(side[a] == side[b] for a, b in ds.duplicate_pairs)
