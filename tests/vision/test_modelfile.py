"""The .hemo model file: round trip, contents, size, and bad files rejected naming the file."""

from __future__ import annotations

import json
import os
import stat
import zipfile

import numpy as np
import pytest
import torch

from hemotwin.errors import InputError, OutputExistsError
from hemotwin.vision.engines import InferenceEngine
from hemotwin.vision.modelfile import FORMAT_VERSION, MANIFEST, ONNX, WEIGHTS, load_model, save_model
from hemotwin.vision.models import ModelConfig, build_model

LABELS = ["neutrophil", "lymphocyte", "monocyte", "eosinophil", "basophil"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    net = build_model(ModelConfig(n_classes=5, input_size=48, widths=(8, 16, 32, 64), blocks=(1, 1, 1, 1)))
    with torch.no_grad():  # non-zero residual branches and head, so predictions depend on every weight
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    path = tmp_path_factory.mktemp("m") / "model.hemo"
    save_model(path, net, labels=LABELS, um_per_px=0.225, data_checksums={"train/manifest.csv": "ab" * 32},
               seed=7, augmentation={"name": "color", "strength": 0.5}, metrics={"val_macro_f1": 0.9},
               training_config={"epochs": 3})
    return net.eval(), path


def _images(n=6, size=48, seed=1):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_round_trip_identical_predictions(saved):
    net, path = saved
    m = load_model(path, labels=LABELS, require_onnx=True)
    x = _images()
    with torch.no_grad():
        ref = torch.softmax(net(torch.from_numpy(x)), 1).numpy()
        again = torch.softmax(m.model(torch.from_numpy(x)), 1).numpy()
    np.testing.assert_array_equal(ref, again)  # same float32 weights -> bit-identical torch outputs
    p_ort = InferenceEngine(m, num_threads=1).run(x)
    p_pt = InferenceEngine(path, backend="torch", num_threads=1).run(x)
    np.testing.assert_array_equal(p_pt, ref)
    assert np.abs(p_ort - ref).max() < 1e-4


def test_contents(saved):
    net, path = saved
    m = load_model(path)
    assert m.labels == LABELS and m.format_version == FORMAT_VERSION
    assert m.config == net.config
    pre = m.preprocessing
    assert (pre.um_per_px, pre.input_size, pre.channel_order, pre.layout, pre.dtype) == (0.225, 48, "RGB", "NHWC",
                                                                                           "uint8")
    prov = m.provenance
    assert prov["hemotwin_version"] and prov["seeds"] == {"seed": 7}
    assert prov["inputs"] == {"train/manifest.csv": "ab" * 32}
    assert prov["augmentation"]["name"] == "color" and prov["metrics"]["val_macro_f1"] == 0.9
    assert prov["config"]["training"] == {"epochs": 3}
    with zipfile.ZipFile(path) as zf:
        assert set(zf.namelist()) == {MANIFEST, WEIGHTS, ONNX}


def test_default_model_file_is_small(tmp_path):
    net = build_model(ModelConfig(n_classes=15))
    path = save_model(tmp_path / "d.hemo", net, labels=[f"c{i}" for i in range(15)])
    assert path.stat().st_size <= 10 * 2**20


def test_save_refuses_overwrite_and_wrong_labels(saved, tmp_path):
    net, path = saved
    with pytest.raises(OutputExistsError):
        save_model(path, net, labels=LABELS)
    with pytest.raises(InputError, match="labels"):
        save_model(tmp_path / "x.hemo", net, labels=LABELS[:4])
    with pytest.raises(InputError, match="distinct"):
        save_model(tmp_path / "x.hemo", net, labels=["a", "a", "b", "c", "d"])
    assert not (tmp_path / "x.hemo").exists()


def _rewrite(src, dst, *, drop=(), manifest_update=None, replace=None):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            if name in drop:
                continue
            data = zin.read(name)
            if name == MANIFEST and manifest_update:
                man = json.loads(data)
                man.update(manifest_update)
                data = json.dumps(man).encode()
            if replace and name in replace:
                data = replace[name]
            zout.writestr(name, data)
    return dst


def _rejects(path, match, **kw):
    with pytest.raises(InputError, match=match) as err:
        load_model(path, **kw)
    assert err.value.where == str(path)  # the error names the file
    return err.value


def test_bad_files_rejected(saved, tmp_path):
    _, path = saved
    raw = path.read_bytes()
    truncated = tmp_path / "truncated.hemo"
    truncated.write_bytes(raw[: len(raw) // 2])
    _rejects(truncated, "complete .hemo model file")
    junk = tmp_path / "junk.hemo"
    junk.write_bytes(b"not a zip at all")
    _rejects(junk, "unreadable model file")
    half = tmp_path / "half.hemo"  # cut inside the manifest: zip directory lost
    half.write_bytes(raw[:200])
    _rejects(half, "complete .hemo model file")
    _rejects(tmp_path / "absent.hemo", "no such file")
    _rejects(_rewrite(path, tmp_path / "noweights.hemo", drop=(WEIGHTS,)), "weights.pt")
    _rejects(_rewrite(path, tmp_path / "nomanifest.hemo", drop=(MANIFEST,)), "manifest.json")
    _rejects(_rewrite(path, tmp_path / "noonnx.hemo", drop=(ONNX,)), "ONNX", require_onnx=True)
    assert load_model(tmp_path / "noonnx.hemo").onnx is None  # an ONNX-less file is fine for torch
    err = _rejects(_rewrite(path, tmp_path / "future.hemo", manifest_update={"format_version": FORMAT_VERSION + 1}),
                   "newer hemotwin")
    assert "format_version" in str(err.value)
    _rejects(_rewrite(path, tmp_path / "other.hemo", manifest_update={"format": "something-else"}), "format")
    _rejects(_rewrite(path, tmp_path / "corrupt.hemo", replace={WEIGHTS: b"\0" * 100}), "checksum")
    _rejects(path, "required label set", labels=["neutrophil", "lymphocyte", "monocyte", "eosinophil"])
    _rejects(path, "required label set", labels=list(reversed(LABELS)))  # order is the output order
    with pytest.raises(InputError, match=str(truncated)):
        InferenceEngine(truncated)


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_model_files_get_the_mode_of_any_new_file(tmp_path, umask, mode):
    """Not the private 0600 of a temporary file: the group (and others, by the umask) may read a model."""
    net = build_model(ModelConfig(n_classes=2, input_size=48, widths=(8, 16, 32, 64), blocks=(1, 1, 1, 1)))
    old = os.umask(umask)
    try:
        path = save_model(tmp_path / "m.hemo", net, labels=["a", "b"], onnx_opset=None)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode
