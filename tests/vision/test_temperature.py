"""Temperature scaling: the fit recovers a known miscalibration; folding it changes probabilities, not calls."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hemotwin.errors import InputError
from hemotwin.vision.models import HemoNet, ModelConfig
from hemotwin.vision.temperature import fit_temperature, fold_temperature, logits_of, set_nll


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("factor", [0.5, 3.0])
def test_fit_recovers_a_known_temperature(factor):
    # Labels drawn from softmax(z); the fitter sees z * factor (over- or under-confident logits), so the
    # calibrating temperature is `factor`. With 20,000 cells the maximum-likelihood estimate of one
    # scalar has a relative standard error of about 1 %: 5 % is a safe tolerance.
    rng = np.random.default_rng(0)
    z = rng.normal(0.0, 1.5, size=(20_000, 5))
    p = _softmax(z)
    y = np.array([rng.choice(5, p=row) for row in p])
    targets = np.eye(5, dtype=bool)[y]
    fit = fit_temperature(z * factor, targets)
    assert fit["temperature"] == pytest.approx(factor, rel=0.05)
    assert fit["nll_after"] < fit["nll_before"]


def test_set_valued_labels_count_any_class_of_the_set():
    logits = np.log(np.array([[0.5, 0.3, 0.2]]))
    # The likelihood of the set {0, 1} is 0.8; of everything, 1.
    assert set_nll(logits, np.array([[True, True, False]])) == pytest.approx(-np.log(0.8))
    assert set_nll(logits, np.array([[True, True, True]])) == pytest.approx(0.0, abs=1e-12)


def test_bad_inputs_are_refused():
    with pytest.raises(InputError, match="no cells"):
        fit_temperature(np.zeros((0, 3)), np.zeros((0, 3), bool))
    with pytest.raises(InputError, match="no allowed class"):
        fit_temperature(np.zeros((2, 3)), np.array([[True, False, False], [False, False, False]]))
    with pytest.raises(InputError, match="two N x K"):
        fit_temperature(np.zeros((2, 3)), np.zeros((2, 4), bool))


def test_folding_divides_the_logits_and_keeps_the_calls():
    torch.manual_seed(0)
    net = HemoNet(ModelConfig(n_classes=4, input_size=32, widths=(8, 8, 16, 16), blocks=(1, 1, 1, 1))).eval()
    with torch.no_grad():
        net.head.bias.normal_()  # a non-zero bias, so folding must scale it too
    x = np.random.default_rng(1).integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)
    before = logits_of(net, x)
    fold_temperature(net, 2.5)
    after = logits_of(net, x)
    np.testing.assert_allclose(after, before / 2.5, rtol=1e-5, atol=1e-6)
    assert (after.argmax(1) == before.argmax(1)).all() and not net.training
    with pytest.raises(InputError, match="temperature"):
        fold_temperature(net, 0.0)
