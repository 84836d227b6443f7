"""Cell detection against the twin's exact ground truth (and a few real BCCD fields when present)."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from hemotwin.errors import InputError
from hemotwin.twin.profiles import load_profile
from hemotwin.twin.render import render
from hemotwin.twin.specimen import FieldSpec, compose_field
from hemotwin.vision.detect import Detection, FieldDetections, crop_cell, detect_cells

# Classes that stress different parts of the detector: lobes to group (NGS), a thin rim (LYT),
# granules over the nucleus (BAS), a large pale cell (MON), a blast (MYO), a smudge (KSC).
LABELS = ("NGS", "LYT", "BAS", "MON", "MYO", "KSC")


def _shared_data() -> Path:
    env = os.environ.get("HEMOTWIN_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data"


def _render_field(profile: str, labels: tuple[str, ...], *, side_um: float, seed: int):
    spec = FieldSpec(height_um=side_um, width_um=side_um, wbc_labels=labels)
    sp = compose_field(spec, seed=seed)
    return sp, render(sp, load_profile(profile), seed=seed)


def _full(det: Detection, shape: tuple[int, int]) -> np.ndarray:
    m = np.zeros(shape, bool)
    r0, c0, r1, c1 = det.bbox
    m[r0:r1, c0:c1] = det.mask
    return m


def _best_ious(sp, r, det: FieldDetections) -> dict[str, float]:
    shape = r.image.shape[:2]
    dm = [_full(d, shape) for d in det.wbc]
    out = {}
    for o in sp.objects:
        if o.kind != "wbc":
            continue
        g = r.wbc_masks[o.id]
        out[o.label] = max(((g & m).sum() / (g | m).sum() for m in dm), default=0.0)
    return out


@pytest.fixture(scope="module")
def analyzer_field():
    return _render_field("analyzer-100x", LABELS, side_um=70.0, seed=11)


def test_rendered_field_white_cells_found_with_iou(analyzer_field):
    sp, r = analyzer_field
    det = detect_cells(r.image, um_per_px=r.um_per_px)
    assert isinstance(det, FieldDetections)
    assert len(det.wbc) == len(LABELS)
    ious = _best_ious(sp, r, det)
    # IoU >= 0.5 is the detection criterion of the contract; the benchmark measures a median of
    # ~0.9, so 0.5 leaves room for the outline while still failing on a cell that is not found.
    assert min(ious.values()) >= 0.5, ious
    for d in det.wbc:
        assert d.kind == "wbc"
        assert d.mask.dtype == bool and d.mask.shape == (d.bbox[2] - d.bbox[0], d.bbox[3] - d.bbox[1])
        assert d.nucleus_mask is not None and d.nucleus_mask.shape == d.mask.shape
        assert not (d.nucleus_mask & ~d.mask).any()  # the nucleus lies inside the cell
        assert 0.0 <= d.score <= 1.0
        assert d.bbox[0] <= d.centroid[0] < d.bbox[2] and d.bbox[1] <= d.centroid[1] < d.bbox[3]


def test_red_cell_count_and_platelets(analyzer_field):
    sp, r = analyzer_field
    det = detect_cells(r.image, um_per_px=r.um_per_px)
    side = 70.0
    n_gt = sum(1 for o in sp.objects if o.kind == "rbc" and 0 <= o.center_um[0] < side and 0 <= o.center_um[1] < side)
    # Benchmark: mean error +4 % over 24 fields per preset; 15 % allows the spread of one small field.
    assert abs(det.n_rbc - n_gt) <= 0.15 * n_gt, (det.n_rbc, n_gt)
    n_plt = sum(1 for o in sp.objects if o.kind == "platelet")
    # Platelets are counted conservatively (a top-hat spot detector; measured 1-35 % of the
    # twin's platelets found, most at 0.1 µm/px): some must be found, never more than twice the truth.
    assert 1 <= det.n_platelets <= 2 * n_plt + 2, (det.n_platelets, n_plt)


@pytest.mark.parametrize("profile", ["wsi-40x", "wsi-20x"])
def test_works_at_coarse_pixel_sizes(profile):
    sp, r = _render_field(profile, ("NGS", "LYT", "EOS", "MON"), side_um=70.0, seed=5)
    det = detect_cells(r.image, um_per_px=r.um_per_px)
    ious = _best_ious(sp, r, det)
    assert len(det.wbc) == 4
    assert min(ious.values()) >= 0.5, ious
    assert det.um_per_px == r.um_per_px


@pytest.mark.parametrize(("profile", "labels", "seed"), [
    # Analyzer: a smudge cell (weak purple smear, no intact nucleus) and two erythroblasts whose
    # haemoglobinised cytoplasm is red-cell coloured (before the uniform-cytoplasm outline: the
    # smudge cell not found, one erythroblast at IoU 0.40).
    ("analyzer-100x", ("EBO", "KSC", "EBO"), 1),
    # Slide scanner at 0.5 µm/px: a band neutrophil (thin nucleus a 2 x 2 opening erases), a
    # small erythroblast nucleus and a smudge cell (before: erythroblast at IoU 0.44).
    ("wsi-20x", ("NGB", "EBO", "KSC"), 3),
])
def test_erythroblasts_smudge_and_band_cells_found(profile, labels, seed):
    sp, r = _render_field(profile, labels, side_um=60.0, seed=seed)
    det = detect_cells(r.image, um_per_px=r.um_per_px)
    assert len(det.wbc) == len(labels)
    shape = r.image.shape[:2]
    dm = [_full(d, shape) for d in det.wbc]
    for o in sp.objects:
        if o.kind != "wbc":
            continue
        g = r.wbc_masks[o.id]
        best = max((g & m).sum() / (g | m).sum() for m in dm)
        # Measured 0.76-0.93 on these fields; 0.6 fails a cell traced as its nucleus alone
        # (erythroblast IoU 0.2-0.5) or not found.
        assert best >= 0.6, (o.label, best)


def _synthetic_field(blob_od: tuple[float, float, float]) -> np.ndarray:
    """60 µm field at 0.3 µm/px: a grid of red-cell discs, one lymphocyte-like cell (a dense
    nucleus sets the field's nuclear threshold) and one 9 µm blob of the given OD."""
    n = 200
    yy, xx = np.mgrid[0:n, 0:n] * 0.3
    od = np.zeros((n, n, 3))
    for cy in np.arange(5.0, 60.0, 9.0):
        for cx in np.arange(5.0, 60.0, 9.0):
            if np.hypot(cy - 32.0, cx - 32.0) > 10.0 and np.hypot(cy - 10.0, cx - 50.0) > 10.0:
                od[(yy - cy) ** 2 + (xx - cx) ** 2 < 3.75**2] = (0.07, 0.11, 0.05)
    od[(yy - 10.0) ** 2 + (xx - 50.0) ** 2 < 5.0**2] = (0.15, 0.10, 0.06)
    od[(yy - 10.0) ** 2 + (xx - 50.0) ** 2 < 3.5**2] = (0.35, 0.80, 0.05)
    od[(yy - 32.0) ** 2 + (xx - 32.0) ** 2 < 4.5**2] = blob_od
    return np.clip(np.rint(235.0 * 10.0 ** (-od)), 0, 255).astype(np.uint8)


def test_smudge_rule_takes_purple_smears_not_blue_discs():
    # A weak purple smear (nuclear contrast 0.30, green absorbed twice as much as red) is a smudge
    # cell; a blue-grey disc of similar contrast (red absorbed as much as green: a polychromatic
    # red cell under a blue-tinted stain) is not. The lymphocyte-like cell is found in both.
    smear = detect_cells(_synthetic_field((0.10, 0.24, 0.02)), um_per_px=0.3)
    assert len(smear.wbc) == 2
    assert any(d.bbox[0] <= 107 < d.bbox[2] and d.bbox[1] <= 107 < d.bbox[3] for d in smear.wbc)  # 32 µm
    blue = detect_cells(_synthetic_field((0.16, 0.14, 0.02)), um_per_px=0.3)
    assert len(blue.wbc) == 1
    assert not (blue.wbc[0].bbox[0] <= 107 < blue.wbc[0].bbox[2])


def test_blank_and_noise_give_no_white_cells():
    blank = detect_cells(np.full((300, 400, 3), 236, np.uint8), um_per_px=0.1)
    assert blank.wbc == [] and blank.n_rbc == 0
    assert "no white cell found" in blank.notes
    assert any("blank" in n for n in blank.notes)
    noise = np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)
    det = detect_cells(noise, um_per_px=0.1)
    assert det.wbc == []
    assert "no white cell found" in det.notes


def test_input_not_mutated_and_float_input(analyzer_field):
    _, r = analyzer_field
    img = r.image.copy()
    img.setflags(write=False)  # any in-place write would raise
    det = detect_cells(img, um_per_px=r.um_per_px)
    assert np.array_equal(img, r.image)
    # The same field as float in [0, 1] gives the same white cells.
    det_f = detect_cells(r.image.astype(np.float32) / 255.0, um_per_px=r.um_per_px)
    assert [d.bbox for d in det_f.wbc] == [d.bbox for d in det.wbc]


def test_bad_inputs_raise_input_error():
    img = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(InputError):
        detect_cells(img[..., 0], um_per_px=0.1)
    with pytest.raises(InputError):
        detect_cells(img, um_per_px=-1.0)
    with pytest.raises(InputError):
        detect_cells(img, um_per_px=0.1, min_wbc_diameter_um=0.0)


def _det_at(centroid: tuple[float, float]) -> Detection:
    return Detection("wbc", (0, 0, 1, 1), np.ones((1, 1), bool), None, 1.0, centroid, False)


def test_crop_cell_geometry():
    h, w = 120, 160
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[..., 0] = np.arange(h)[:, None]
    rgb[..., 1] = np.arange(w)[None, :]
    # 5 µm at 0.25 µm/px = 20 px, centred on the centroid: rows 50..69 around 60.
    c = crop_cell(rgb, _det_at((60.0, 80.0)), size_um=5.0, um_per_px=0.25)
    assert c.shape == (20, 20, 3) and c.dtype == np.uint8
    assert c[0, 0, 0] == 50 and c[-1, 0, 0] == 69 and c[0, 0, 1] == 70
    # At the corner: reflected, not zero-filled, and still square.
    c = crop_cell(rgb, _det_at((2.0, 3.0)), size_um=5.0, um_per_px=0.25)
    assert c.shape == (20, 20, 3)
    # Row -8 .. 11: the first 8 rows are the mirror of rows 0..7 (symmetric padding).
    assert list(c[:10, 0, 0]) == [7, 6, 5, 4, 3, 2, 1, 0, 0, 1]
    c.fill(0)
    assert rgb[0, 0, 0] == 0 and rgb[5, 5, 1] == 5  # the field was not touched by editing the crop
    with pytest.raises(InputError):
        crop_cell(rgb, _det_at((1.0, 1.0)), size_um=-1.0, um_per_px=0.25)


def test_crop_cell_of_a_detection(analyzer_field):
    _, r = analyzer_field
    det = detect_cells(r.image, um_per_px=r.um_per_px)
    c = crop_cell(r.image, det.wbc[0], um_per_px=r.um_per_px)
    assert c.shape == (250, 250, 3)  # 25 µm at 0.1 µm/px
    # The crop centre is the cell: darker (stained) than the crop's corners.
    assert c[115:135, 115:135].mean() < c[:20, :20].mean()


def _bccd_files() -> list[tuple[Path, Path]]:
    root = _shared_data() / "bccd" / "BCCD"
    if not root.exists():
        return []
    xs = sorted((root / "Annotations").glob("*.xml"))[:12]
    return [(root / "JPEGImages" / (x.stem + ".jpg"), x) for x in xs]


@pytest.mark.skipif(not _bccd_files(), reason="shared BCCD data not available")
def test_bccd_white_cells_recalled():
    from PIL import Image

    hits = total = 0
    for jpg, xml in _bccd_files():
        rgb = np.asarray(Image.open(jpg).convert("RGB"))
        det = detect_cells(rgb, um_per_px=0.0725)
        for o in ET.parse(xml).findall("object"):
            if o.findtext("name") != "WBC":
                continue
            b = o.find("bndbox")
            x0, y0, x1, y1 = (float(b.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
            total += 1
            for d in det.wbc:
                r0, c0, r1, c1 = d.bbox
                iy = max(0.0, min(r1, y1) - max(r0, y0))
                ix = max(0.0, min(c1, x1) - max(c0, x0))
                inter = iy * ix
                if inter / ((r1 - r0) * (c1 - c0) + (y1 - y0) * (x1 - x0) - inter) >= 0.5:
                    hits += 1
                    break
    # Benchmark: recall 0.97 over the data set; 10 of the first 12 images' boxes is a floor a
    # regression (e.g. a colour rule tuned to the twin only) would fall through.
    assert total >= 10 and hits >= total - 2, (hits, total)
