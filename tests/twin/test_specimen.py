"""Tests of the procedural specimen (records, composers, rasteriser)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage, stats

from hemotwin.errors import InputError
from hemotwin.twin.specimen import (
    LEUKOCYTE_CLASSES,
    RED_CELL_TYPES,
    Compartment,
    FieldSpec,
    ObjectRecord,
    Specimen,
    compose_field,
    make_cell_specimen,
    rasterize,
    sample_platelet,
    sample_rbc,
    sample_wbc,
)

PX = 0.1


def _single(obj: ObjectRecord, size: float = 25.6) -> Specimen:
    """A specimen with just ``obj`` (moved to the centre) and no plasma film."""
    moved = obj.model_copy(update={"center_um": (size / 2, size / 2), "id": 1})
    return Specimen(height_um=size, width_um=size, objects=[moved], seed=0, plasma_eosin=0.0)


# --- determinism ------------------------------------------------------------------------------


def test_same_seed_gives_byte_equal_maps_and_different_seed_differs():
    a = rasterize(make_cell_specimen("MON", size_um=25.6, seed=7), um_per_px=PX)
    b = rasterize(make_cell_specimen("MON", size_um=25.6, seed=7), um_per_px=PX)
    c = rasterize(make_cell_specimen("MON", size_um=25.6, seed=8), um_per_px=PX)
    assert a.absorbers.dtype == np.float32 and a.absorbers.shape == (4, 256, 256)
    assert a.absorbers.tobytes() == b.absorbers.tobytes()
    assert a.instances.tobytes() == b.instances.tobytes()
    assert a.compartments.tobytes() == b.compartments.tobytes()
    assert a.absorbers.tobytes() != c.absorbers.tobytes()


def test_field_is_deterministic():
    spec = FieldSpec(height_um=40, width_um=50, wbc_count=2)
    a, b = compose_field(spec, seed=3), compose_field(spec, seed=3)
    assert a == b
    assert compose_field(spec, seed=4) != a
    ma, mb = rasterize(a, um_per_px=0.2), rasterize(b, um_per_px=0.2)
    assert ma.absorbers.tobytes() == mb.absorbers.tobytes()
    assert ma.shape == (200, 250)


def test_json_round_trip_rerasterises_identically():
    sp = make_cell_specimen("EOS", size_um=20, seed=2)
    again = Specimen.model_validate_json(sp.model_dump_json())
    assert again == sp
    m1, m2 = rasterize(sp, um_per_px=PX), rasterize(again, um_per_px=PX)
    assert m1.absorbers.tobytes() == m2.absorbers.tobytes()


def test_inputs_are_not_mutated():
    sp = make_cell_specimen("NGS", size_um=20, seed=5)
    before = sp.model_dump_json()
    rasterize(sp, um_per_px=PX)
    assert sp.model_dump_json() == before
    mix = {"discocyte": 0.5, "target": 0.5}
    make_cell_specimen("LYT", size_um=20, seed=1, rbc_types=mix)
    assert mix == {"discocyte": 0.5, "target": 0.5}


# --- every class ------------------------------------------------------------------------------


@pytest.mark.parametrize("code", LEUKOCYTE_CLASSES)
def test_every_class_rasterises_with_consistent_masks(code):
    sp = make_cell_specimen(code, size_um=25.6, seed=11)
    maps = rasterize(sp, um_per_px=PX)
    wid = sp.focus_id
    assert sp.object(wid).label == code and sp.objects[-1].id == wid  # white cell drawn last
    mask = maps.wbc_masks[wid]
    assert mask.dtype == bool and mask.shape == maps.shape
    # The white cell is on top, so its full mask is exactly its visible instance region.
    assert np.array_equal(mask, maps.instances == wid)
    comp = maps.compartments[mask]
    nucleus = np.count_nonzero(comp == Compartment.NUCLEUS)
    cyto = np.count_nonzero(np.isin(comp, (Compartment.CYTOPLASM, Compartment.GRANULE)))
    assert nucleus > 0.05 * mask.sum() or code == "BAS"  # basophil nucleus may be hidden
    if code == "KSC":
        assert cyto == 0  # smudge cells are bare, smeared nuclei
    else:
        assert cyto > 0.05 * mask.sum()
    # Outside the white cell nothing is labelled as a white-cell compartment.
    outside = maps.compartments[~mask]
    assert not np.isin(outside, (Compartment.NUCLEUS, Compartment.CYTOPLASM,
                                 Compartment.GRANULE)).any()
    # White cells hold chromatin (purple) well above the red cells' purple (none).
    # Chromatin holds the Romanowsky complex: purple + azure B + eosin (CHROMATIN_MIX).
    assert maps.absorbers[:, mask].sum(axis=0).max() > 0.3
    assert np.all(np.isfinite(maps.absorbers)) and maps.absorbers.min() >= 0


@pytest.mark.parametrize("subtype", RED_CELL_TYPES)
def test_every_red_cell_type_draws(subtype):
    m = sample_rbc(subtype, np.random.default_rng(0))
    obj = ObjectRecord(id=1, kind="rbc", label=subtype, center_um=(0, 0), morphology=m, seed=0)
    maps = rasterize(_single(obj, 16), um_per_px=PX)
    mask = maps.instances == 1
    assert mask.any() and np.all(maps.compartments[mask] == Compartment.RED_CELL)
    assert maps.absorbers[2][mask].mean() > 0.2  # eosin dominates red cells
    assert maps.absorbers[0].max() == 0  # and they hold no purple


# --- physical units ---------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["NGS", "MON", "LYA", "KSC"])
def test_wbc_mask_area_is_pixel_size_invariant(code):
    sp = make_cell_specimen(code, size_um=25.6, seed=4, neighbours=False)
    fine = rasterize(sp, um_per_px=0.05)
    coarse = rasterize(sp, um_per_px=0.2)
    a_f = fine.wbc_masks[sp.focus_id].sum() * 0.05**2
    a_c = coarse.wbc_masks[sp.focus_id].sum() * 0.2**2
    # Masks threshold the analytic outline at pixel centres: the area error is a boundary
    # effect of order perimeter x px / sqrt(N boundary px) -> well below 3 % for >= 10 µm cells.
    assert a_c == pytest.approx(a_f, rel=0.03)


def test_total_stain_is_pixel_size_invariant():
    # Amounts are areal densities: the integral (sum x px^2) must not depend on the grid. The
    # residual comes from soft-edge ramps and texture pre-blur; 3 % allows for both.
    sp = make_cell_specimen("PMO", size_um=25.6, seed=9)
    fine = rasterize(sp, um_per_px=0.05).absorbers.sum(axis=(1, 2)) * 0.05**2
    coarse = rasterize(sp, um_per_px=0.2).absorbers.sum(axis=(1, 2)) * 0.2**2
    np.testing.assert_allclose(coarse, fine, rtol=0.03)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_red_cell_equivalent_diameter_matches_record(seed):
    m = sample_rbc("discocyte", np.random.default_rng(seed))
    obj = ObjectRecord(id=1, kind="rbc", label="discocyte", center_um=(0, 0), rotation_deg=33,
                       morphology=m, seed=seed)
    for px in (0.05, 0.25):
        maps = rasterize(_single(obj, 12.0), um_per_px=px)
        d_eq = 2 * math.sqrt((maps.instances == 1).sum() * px * px / math.pi)
        # 3 %: pixel-centre sampling of a ~7.5 µm disc at 0.25 µm/px (~700 px in the mask).
        assert d_eq == pytest.approx(m.diameter_um, rel=0.03)


def test_discocyte_has_central_pallor_and_spherocyte_does_not():
    profiles = {}
    for sub in ("discocyte", "spherocyte", "target"):
        m = sample_rbc(sub, np.random.default_rng(1))
        obj = ObjectRecord(id=1, kind="rbc", label=sub, center_um=(0, 0), morphology=m, seed=1)
        eos = rasterize(_single(obj, 12.0), um_per_px=0.05).absorbers[2]
        profiles[sub] = eos[120, 120:240]  # centre row, from the centre outwards
    disc = profiles["discocyte"]
    assert disc[0] < 0.55 * disc.max()  # centre ~40 % of the rim (pallor depth 0.55–0.65)
    sph = profiles["spherocyte"]
    assert sph[0] >= 0.95 * sph.max()  # no pallor: densest in the middle
    tgt = profiles["target"]
    ring = tgt[: int(0.6 * np.argmax(tgt < 0.01))]
    assert tgt[0] > ring.min() * 1.5  # dense central spot inside a paler ring


# --- class-specific morphology ----------------------------------------------------------------


def _nucleus_lobes(sp: Specimen, px: float = 0.1) -> int:
    maps = rasterize(sp, um_per_px=px)
    nuc = (maps.compartments == Compartment.NUCLEUS) & maps.wbc_masks[sp.focus_id]
    # Granules can hide nucleus pixels; close tiny holes, then open with a 0.4 µm disc to cut
    # the filaments (<= 0.38 µm wide) while keeping lobes (>= 2 µm across).
    nuc = ndimage.binary_closing(nuc, iterations=1)
    r = round(0.4 / px)
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    opened = ndimage.binary_opening(nuc, structure=(yy**2 + xx**2) <= r * r)
    labels, _n = ndimage.label(opened)
    sizes = np.bincount(labels.ravel())[1:]
    return int((sizes * px * px > 1.0).sum())  # lobes of > 1 µm²


@pytest.mark.parametrize("seed", range(4))
def test_segmented_neutrophil_has_separate_lobes_and_lymphocyte_one(seed):
    ngs = make_cell_specimen("NGS", size_um=20, seed=seed, neighbours=False)
    n_lobes = len(ngs.object(ngs.focus_id).morphology.nucleus.lobes)
    assert 2 <= n_lobes <= 5
    assert _nucleus_lobes(ngs) >= 2
    lyt = make_cell_specimen("LYT", size_um=20, seed=seed, neighbours=False)
    assert _nucleus_lobes(lyt) == 1


def test_eosinophil_granules_fill_the_cytoplasm():
    for seed in range(3):
        sp = make_cell_specimen("EOS", size_um=25.6, seed=seed, neighbours=False)
        maps = rasterize(sp, um_per_px=PX)
        comp = maps.compartments[maps.wbc_masks[sp.focus_id]]
        gran = np.count_nonzero(comp == Compartment.GRANULE)
        cyto = np.count_nonzero(comp == Compartment.CYTOPLASM)
        assert gran > 0.5 * (gran + cyto)  # packed: granules cover most of the cytoplasm
        # and they are eosin-rich: orange-red granules, not purple ones
        g = maps.compartments == Compartment.GRANULE
        assert maps.absorbers[2][g].mean() > 2 * maps.absorbers[0][g].mean()


def test_neutrophil_cytoplasm_is_pale_and_blast_cytoplasm_blue():
    def cyto_means(code):
        sp = make_cell_specimen(code, size_um=25.6, seed=1, neighbours=False)
        maps = rasterize(sp, um_per_px=PX)
        c = maps.compartments == Compartment.CYTOPLASM
        return maps.absorbers[1][c].mean(), maps.absorbers[2][c].mean()

    az_ngs, eo_ngs = cyto_means("NGS")
    az_myo, eo_myo = cyto_means("MYO")
    assert az_myo > 0.2 and az_myo > 2 * az_ngs  # basophilic (blue) blast cytoplasm
    assert az_myo > 1.2 * eo_myo  # blue dominates in the blast
    assert eo_ngs > 2 * az_ngs  # neutrophil: pinkish, acidophilic


def test_basophil_granules_lie_over_the_nucleus_too():
    sp = make_cell_specimen("BAS", size_um=20, seed=0, neighbours=False)
    m = sp.object(sp.focus_id).morphology
    assert m.granules[0].region == "cell" and m.granules[0].size_um >= 0.6
    maps = rasterize(sp, um_per_px=PX)
    g = maps.compartments == Compartment.GRANULE
    assert maps.absorbers[0][g].mean() > 0.5  # dark purple-black granules


# --- re-rasterising single records ------------------------------------------------------------


def test_rerasterising_one_record_gives_the_same_pixels():
    sp = make_cell_specimen("PMO", size_um=25.6, seed=3)
    full = rasterize(sp, um_per_px=PX)
    wbc = sp.object(sp.focus_id)
    alone = rasterize(sp.model_copy(update={"objects": [wbc], "plasma_eosin": 0.0}),
                      um_per_px=PX)
    rest = rasterize(sp.model_copy(update={"objects": sp.objects[:-1]}), um_per_px=PX)
    # Amounts add (Beer–Lambert), so the crop = the white cell alone + everything else; the
    # only difference is float32 summation order (~1e-7 relative).
    np.testing.assert_allclose(full.absorbers, alone.absorbers + rest.absorbers, atol=2e-6)
    assert np.array_equal(alone.wbc_masks[wbc.id], full.wbc_masks[wbc.id])
    # Moving the record by a whole number of pixels moves its pixels exactly.
    moved = wbc.model_copy(update={"center_um": (wbc.center_um[0] + 1.0,
                                                 wbc.center_um[1] - 2.0)})
    shifted = rasterize(sp.model_copy(update={"objects": [moved], "plasma_eosin": 0.0}),
                        um_per_px=PX)
    np.testing.assert_allclose(shifted.absorbers[:, 40:200, 20:180],
                               alone.absorbers[:, 30:190, 40:200], atol=1e-5)


def test_samplers_are_reproducible_records():
    a = sample_wbc("MYO", np.random.default_rng(5))
    assert a == sample_wbc("MYO", np.random.default_rng(5))
    assert a != sample_wbc("MYO", np.random.default_rng(6))
    p = sample_platelet(np.random.default_rng(1))
    assert 1.5 <= p.diameter_um <= 8.0


def test_sizes_follow_the_taxonomy_ranges():
    rng = np.random.default_rng(0)
    # docs/clinical_rules.md §11 ranges, except NGS: real CellaVision neutrophils measure 14.1 µm median (IQR
    # 12.8–14.8, benchmarks/bench_realism.py), so its prior is centred there and clipped at 16.
    ranges = {"MYO": (12, 20), "NGS": (10, 16), "LYT": (7, 15), "EBO": (8, 12), "MON": (12, 20)}
    for code, (lo, hi) in ranges.items():
        d = [sample_wbc(code, rng).diameter_um for _ in range(40)]
        assert lo <= min(d) and max(d) <= hi
    d = [sample_rbc("discocyte", rng).diameter_um for _ in range(200)]
    assert 7.3 < np.mean(d) < 7.7 and 0.25 < np.std(d) < 0.5


# --- fields -----------------------------------------------------------------------------------


@pytest.mark.parametrize("density", [150.0, 250.0])
def test_field_red_cell_count_matches_density(density):
    spec = FieldSpec(height_um=80, width_um=100, rbc_per_10k_um2=density, wbc_count=1)
    sp = compose_field(spec, seed=1)
    inside = [o for o in sp.objects if o.kind == "rbc"
              and 0 <= o.center_um[0] <= 80 and 0 <= o.center_um[1] <= 100]
    expected = density * 80 * 100 / 1e4
    # ±15 % (brief); relaxation near the edges moves a few centres across the border.
    assert abs(len(inside) - expected) <= 0.15 * expected


def test_field_draw_order_and_white_cells_do_not_overlap():
    spec = FieldSpec(height_um=80, width_um=80, wbc_count=6)
    sp = compose_field(spec, seed=2)
    kinds = [o.kind for o in sp.objects]
    assert kinds == sorted(kinds, key=["rbc", "platelet", "wbc"].index)
    assert [o.id for o in sp.objects] == list(range(1, len(sp.objects) + 1))
    maps = rasterize(sp, um_per_px=0.2)
    masks = list(maps.wbc_masks.values())
    assert len(masks) == 6
    total = np.sum(masks, axis=0)
    assert total.max() == 1  # no pixel belongs to two white cells
    n_plt = sum(k == "platelet" for k in kinds)
    assert n_plt > 0


def test_field_labels_follow_the_differential():
    diff = {"NGS": 0.5, "LYT": 0.3, "MON": 0.15, "EOS": 0.05}
    spec = FieldSpec(height_um=60, width_um=60, rbc_per_10k_um2=60, wbc_count=5,
                     differential=diff)
    labels = [o.label for s in range(60) for o in compose_field(spec, seed=s).objects
              if o.kind == "wbc"]
    counts = np.array([labels.count(k) for k in diff])
    assert counts.sum() == 300
    # Multinomial draw: chi-square goodness of fit; seeds are fixed, so this is deterministic,
    # and p > 0.001 would only fail for a wrong sampler (the statistic is ~3 for 3 dof).
    p = stats.chisquare(counts, np.array(list(diff.values())) * 300).pvalue
    assert p > 1e-3


def test_explicit_wbc_labels():
    sp = compose_field(FieldSpec(height_um=60, width_um=60, wbc_labels=("MYO", "KSC")), seed=0)
    assert [o.label for o in sp.objects if o.kind == "wbc"] == ["MYO", "KSC"]


# --- bad input --------------------------------------------------------------------------------


def test_unknown_class_code_lists_the_valid_ones():
    with pytest.raises(InputError) as e:
        make_cell_specimen("XYZ", size_um=20, seed=0)
    assert e.value.where == "code" and "NGS" in str(e.value) and "KSC" in str(e.value)
    with pytest.raises(InputError, match="code"):
        sample_wbc("ngs", np.random.default_rng(0))
    with pytest.raises(InputError, match="subtype"):
        sample_rbc("sickle", np.random.default_rng(0))


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: make_cell_specimen("NGS", size_um=0, seed=0), "size_um"),
        (lambda: make_cell_specimen("NGS", size_um=-5, seed=0), "size_um"),
        (lambda: make_cell_specimen("NGS", size_um=20, seed=-1), "seed"),
        (lambda: make_cell_specimen("NGS", size_um=20, seed=0, rbc_per_10k_um2=-1),
         "rbc_per_10k_um2"),
        (lambda: make_cell_specimen("NGS", size_um=20, seed=0, rbc_types={"discocyte": 0.5}),
         "rbc_types"),
        (lambda: make_cell_specimen("NGS", size_um=20, seed=0, rbc_types={"sickle": 1.0}),
         "rbc_types.sickle"),
        (lambda: rasterize(make_cell_specimen("NGS", size_um=20, seed=0), um_per_px=0),
         "um_per_px"),
        (lambda: rasterize(make_cell_specimen("NGS", size_um=20, seed=0), um_per_px=-0.1),
         "um_per_px"),
        (lambda: rasterize(make_cell_specimen("NGS", size_um=20, seed=0), um_per_px=0.1,
                           shape=(0, 5)), "shape"),
        (lambda: FieldSpec(height_um=-1), "FieldSpec.height_um"),
        (lambda: FieldSpec(max_overlap=1.5), "FieldSpec.max_overlap"),
        (lambda: FieldSpec(differential={"NGS": 0.5, "LYT": 0.3}), "differential"),
        (lambda: FieldSpec(differential={"NGS": 1.2, "LYT": -0.2}), "differential.NGS"),
        (lambda: FieldSpec(differential={"FOO": 1.0}), "differential.FOO"),
        (lambda: FieldSpec(wbc_count=-2), "FieldSpec.wbc_count"),
        (lambda: compose_field(FieldSpec(height_um=20, width_um=20, wbc_count=30), seed=0),
         "wbc_count"),
        (lambda: compose_field(FieldSpec(), seed=1.5), "seed"),
    ],
)
def test_bad_inputs_raise_input_error_naming_the_field(call, field):
    with pytest.raises(InputError) as e:
        call()
    assert field in e.value.where
