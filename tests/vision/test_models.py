"""HemoNet: shapes for each normalisation, the input convention, size budget and ONNX agreement."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from hemotwin.errors import InputError
from hemotwin.vision.engines import EnsembleEngine, InferenceEngine, dihedral_views, scale_tta_zooms, zoom_views
from hemotwin.vision.export import INPUT_NAME, export_onnx
from hemotwin.vision.models import (
    DEFAULT_INPUT_SIZE,
    ModelConfig,
    build_model,
    count_macs,
    count_parameters,
    make_norm,
)

SMALL = {"widths": (8, 16, 32, 64), "blocks": (1, 1, 1, 1)}


@pytest.mark.parametrize("norm", ["group", "layer", "batch"])
@pytest.mark.parametrize("size", [32, DEFAULT_INPUT_SIZE])
def test_forward_shapes_each_norm(norm, size):
    torch.manual_seed(0)
    net = build_model(ModelConfig(n_classes=7, norm=norm, input_size=size)).eval()
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, size, size, 3), dtype=np.uint8))
    before = x.clone()
    with torch.no_grad():
        y = net(x)
    assert y.shape == (3, 7) and y.dtype == torch.float32
    assert torch.isfinite(y).all()
    assert torch.equal(x, before)  # inputs are never modified
    assert net.features(x).shape == (3, 128)


def test_norm_choice_builds_the_right_layers():
    assert isinstance(make_norm("batch", 16), torch.nn.BatchNorm2d)
    assert make_norm("layer", 16).num_groups == 1
    assert make_norm("group", 16, 8).num_groups == 8
    assert make_norm("group", 12, 8).num_groups == 6  # largest divisor of 12 not above 8
    with pytest.raises(InputError, match="norm"):
        make_norm("instance", 16)  # type: ignore[arg-type]


def test_bad_config_rejected():
    with pytest.raises(InputError, match="model config"):
        build_model({"n_classes": 1})


def test_normalisation_inside_model_uses_stored_mean_std():
    net = build_model(ModelConfig(n_classes=3, mean=(0.5, 0.25, 0.75), std=(0.1, 0.2, 0.3)))
    img = torch.tensor([0.5, 0.25, 0.75]).mul(255).round().to(torch.uint8).view(1, 1, 1, 3).expand(1, 4, 4, 3)
    z = net.preprocess(img)
    assert z.shape == (1, 3, 4, 4)
    # Rounding to uint8 moves the value by at most 0.5/255; divided by std (>= 0.1) that is < 0.02.
    assert z.abs().max() < 0.02
    assert set(dict(net.named_buffers())) >= {"input_mean", "input_inv_std"}


def test_default_model_is_compact():
    net = build_model(ModelConfig(n_classes=15))
    params, macs = count_parameters(net), count_macs(net)
    assert params * 4 < 10 * 2**20  # float32 weights well under the 10 MB model-file budget
    assert 150_000 < params < 1_000_000
    assert macs < 100e6  # ~64 M MACs at 112 px: the budget behind >= 500 cells/s on 2 cores


@pytest.mark.parametrize("norm", ["group", "batch"])
def test_torch_and_onnx_agree(norm):
    torch.manual_seed(1)
    net = build_model(ModelConfig(n_classes=5, norm=norm, input_size=48, **SMALL))
    if norm == "batch":  # non-trivial running statistics, so the test sees them exported
        net.train()
        with torch.no_grad():
            for _ in range(3):
                net(torch.randint(0, 256, (8, 48, 48, 3), dtype=torch.uint8))
    net.eval()
    sess = ort.InferenceSession(export_onnx(net), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(2).integers(0, 256, (5, 48, 48, 3), dtype=np.uint8)  # batch 5: axis is dynamic
    p_onnx = sess.run(None, {INPUT_NAME: x})[0]
    with torch.no_grad():
        p_torch = torch.softmax(net(torch.from_numpy(x)), 1).numpy()
    assert p_onnx.shape == (5, 5)
    np.testing.assert_allclose(p_onnx.sum(1), 1.0, atol=1e-5)
    assert np.abs(p_onnx - p_torch).max() < 1e-4


def test_engine_backends_agree_and_batch():
    torch.manual_seed(3)
    net = build_model(ModelConfig(n_classes=4, input_size=40, **SMALL))
    x = np.random.default_rng(4).integers(0, 256, (11, 40, 40, 3), dtype=np.uint8)
    p_ort = InferenceEngine(net, batch_size=4, num_threads=1).run(x)
    seen = []
    eng = InferenceEngine(net, backend="torch", batch_size=4, num_threads=1)
    p_t = eng.run(list(x), progress=lambda d, t, i: seen.append(d))
    assert p_ort.shape == (11, 4)
    assert np.abs(p_ort - p_t).max() < 1e-4
    assert seen == [4, 8, 11]
    one = InferenceEngine(net, backend="torch", num_threads=1).run(x[0])
    np.testing.assert_allclose(one[0], p_t[0], atol=1e-6)


def test_tta_is_orientation_free_and_matches_the_mean_of_views():
    # The eight views of a rotated or mirrored crop are the eight views of the crop in another
    # order, so TTA probabilities must agree up to float32 summation order (1e-5 is ~100 ulp
    # for probabilities of order 0.1-1). A plain forward pass has no such invariance.
    torch.manual_seed(5)
    net = build_model(ModelConfig(n_classes=4, input_size=40, **SMALL))
    x = np.random.default_rng(6).integers(0, 256, (6, 40, 40, 3), dtype=np.uint8)
    for backend in ("torch", "onnxruntime"):
        tta = InferenceEngine(net, backend=backend, batch_size=4, num_threads=1, tta=True)
        p = tta.run(x)
        for moved in (np.rot90(x, 1, axes=(1, 2)), x[:, ::-1], np.rot90(x[:, :, ::-1], 3, axes=(1, 2))):
            np.testing.assert_allclose(tta.run(np.ascontiguousarray(moved)), p, atol=1e-5)
        np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    plain = InferenceEngine(net, backend="torch", num_threads=1)
    views = dihedral_views(x)
    assert len(views) == 8 and len({v.tobytes() for v in views}) == 8  # a random crop has no symmetry
    np.testing.assert_allclose(np.mean([plain.run(v) for v in views], axis=0), p, atol=1e-4)
    assert np.abs(plain.run(np.ascontiguousarray(np.rot90(x, 1, axes=(1, 2)))) - plain.run(x)).max() > 1e-4


def test_zoom_views_magnify_about_the_centre():
    # A dark disk on a flat background: the view at zoom z holds z^2 times the disk's absorbance
    # (area scales as z^2; area-averaging and bilinear interpolation both keep the integral, so 2 %
    # covers the rim's resampling) and its centroid stays at the crop centre: within 0.55 px, since
    # the resampling places an even-sized crop's centre on a whole pixel (half a pixel, 0.1 µm at
    # the model's grid, well under the zoom's own 2 px at the rim).
    yy, xx = np.mgrid[:64, :64] - 31.5
    img = np.full((64, 64, 3), 220, np.uint8)
    img[np.hypot(yy, xx) < 12] = (90, 60, 140)
    batch = np.stack([img, img[::-1]])
    views = zoom_views(batch, (1 / 1.25, 1.0, 1.25))
    assert views[1] is batch and all(v.shape == batch.shape and v.dtype == np.uint8 for v in views)

    def mass(v):
        return (1.0 - v[0, ..., 0] / 220.0).sum()

    for z, v in zip((1 / 1.25, 1.25), (views[0], views[2]), strict=True):
        assert mass(v) / mass(batch) == pytest.approx(z * z, rel=0.02)
        w = 1.0 - v[0, ..., 0] / 220.0
        assert abs((w * yy).sum() / w.sum()) < 0.55 and abs((w * xx).sum() / w.sum()) < 0.55
    assert batch[0, 0, 0, 0] == 220  # the input is not modified
    assert [len(v) for v in zoom_views(batch[:0], (1.2, 1.0))] == [0, 0]


def test_scale_tta_is_the_mean_over_zoomed_views():
    # The engine's answer with zooms must be the plain answer averaged over the zoomed views
    # (float32 sums in another order: 1e-5); with tta as well, over all 3 x 8 views (1e-4, as above).
    torch.manual_seed(7)
    net = build_model(ModelConfig(n_classes=3, input_size=40, **SMALL))
    x = np.random.default_rng(8).integers(0, 256, (5, 40, 40, 3), dtype=np.uint8)
    zooms = scale_tta_zooms(1.2)
    assert zooms == pytest.approx((1 / 1.2, 1.0, 1.2)) and scale_tta_zooms(1.0) == (1.0,)
    plain = InferenceEngine(net, backend="torch", num_threads=1)
    views = zoom_views(x, zooms)
    want = np.mean([plain.run(v) for v in views], axis=0)
    got = InferenceEngine(net, backend="torch", batch_size=2, num_threads=1, zooms=zooms).run(x)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.abs(got - plain.run(x)).max() > 1e-4  # the zoom changes the answer of a random net
    both = InferenceEngine(net, backend="onnxruntime", num_threads=1, zooms=zooms, tta=True).run(x)
    want_both = np.mean([plain.run(d) for v in views for d in dihedral_views(v)], axis=0)
    np.testing.assert_allclose(both, want_both, atol=1e-4)


@pytest.mark.parametrize("zooms", [(), (0.2,), (1.0, 3.0), ("big",), (float("nan"),)])
def test_bad_zooms_are_rejected(zooms):
    net = build_model(ModelConfig(n_classes=2, input_size=40, **SMALL))
    with pytest.raises(InputError, match="zooms"):
        InferenceEngine(net, backend="torch", zooms=zooms)


@pytest.mark.parametrize("factor", [0.9, 2.5, float("inf")])
def test_bad_scale_tta_factor_is_rejected(factor):
    with pytest.raises(InputError, match="scale TTA factor"):
        scale_tta_zooms(factor)


def test_engine_rejects_wrong_images():
    net = build_model(ModelConfig(n_classes=4, input_size=40, **SMALL))
    eng = InferenceEngine(net, backend="torch")
    with pytest.raises(InputError, match="40 x 40 x 3"):
        eng.run(np.zeros((2, 41, 40, 3), np.uint8))
    with pytest.raises(InputError, match="uint8"):
        eng.run(np.zeros((2, 40, 40, 3), np.float32))
    with pytest.raises(InputError, match=r"images\[1\]"):
        eng.run([np.zeros((40, 40, 3), np.uint8), np.zeros((40, 40, 4), np.uint8)])
    with pytest.raises(InputError, match="backend"):
        InferenceEngine(net, backend="tensorflow")  # type: ignore[arg-type]


def test_ensemble_is_the_mean_of_its_members():
    # Two differently initialised nets: the ensemble's probabilities are the mean of theirs
    # (float32 rounding: 1e-6), it differs from each member, and its progress counts both passes.
    x = np.random.default_rng(9).integers(0, 256, (7, 40, 40, 3), dtype=np.uint8)
    members = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        members.append(InferenceEngine(build_model(ModelConfig(n_classes=3, input_size=40, **SMALL)),
                                       backend="torch", batch_size=4, num_threads=1))
    ens = EnsembleEngine(members)
    seen = []
    p = ens.run(x, progress=lambda d, t, i: seen.append((d, t, i["member"])))
    a, b = members[0].run(x), members[1].run(x)
    np.testing.assert_allclose(p, (a + b) / 2, atol=1e-6)
    assert np.abs(a - b).max() > 1e-3 and ens.labels is None and ens.n_classes == 3
    assert seen[-1] == (14, 14, 1) and [d for d, _, _ in seen] == sorted(d for d, _, _ in seen)
    np.testing.assert_array_equal(ens.predict(x), p.argmax(1))
    other = InferenceEngine(build_model(ModelConfig(n_classes=3, input_size=48, **SMALL)), backend="torch")
    with pytest.raises(InputError, match="input size 48"):
        EnsembleEngine([members[0], other], names=["a.hemo", "b.hemo"])
    with pytest.raises(InputError, match="engines"):
        EnsembleEngine([])
