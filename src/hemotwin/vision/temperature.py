"""Calibrated probabilities: one temperature fitted on held-out cells and folded into the network.

A network trained with cross-entropy and heavy augmentation is usually over- or under-confident on
held-out cells. Temperature scaling (Guo et al., "On calibration of modern neural networks",
ICML 2017) divides the logits by one scalar ``T`` fitted to minimise the negative log-likelihood on
held-out data; the ranking of classes, hence every call, is unchanged, and a review threshold on
the top probability then means what it says. Here the held-out cells are the validation split,
shown as they are and re-imaged through the training augmentation (other scanners), so that ``T``
is fitted to the conditions the model is meant for, not only to its training scanner.

Set-valued labels (PBC's "neutrophil": band or segmented) count as correct on any class of the set:
the likelihood of a cell is the probability the model gives to its set.

``T`` is folded into the last linear layer (weights and bias divided by ``T``), so the saved model,
its ONNX graph and every engine give the calibrated probabilities without knowing about it.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

from hemotwin.errors import InputError

__all__ = ["TEMPERATURE_RANGE", "fit_temperature", "fold_temperature", "logits_of", "set_nll"]

#: Temperatures considered: a calibrated network lies well inside (typical fitted values 0.7-3).
TEMPERATURE_RANGE: tuple[float, float] = (0.05, 20.0)


def set_nll(logits: np.ndarray, targets: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of set-valued ``targets`` under ``softmax(logits / temperature)``.

    Parameters
    ----------
    logits
        ``N x K`` network outputs before softmax.
    targets
        ``N x K`` bool: the classes each cell's label allows (one for a fine label).
    temperature
        Divides the logits.
    """
    z = np.asarray(logits, np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    masked = np.where(np.asarray(targets, bool), z, -np.inf)
    m = masked.max(axis=1)
    log_set = m + np.log(np.exp(masked - m[:, None]).sum(axis=1))
    return float(np.mean(log_norm - log_set))


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """The temperature minimising :func:`set_nll` on held-out cells, with the fit's numbers.

    Parameters
    ----------
    logits, targets
        As for :func:`set_nll`; every row of ``targets`` must allow at least one class.

    Returns
    -------
    dict
        ``temperature``, ``nll_before`` (at 1), ``nll_after``, ``n`` (cells).

    Raises
    ------
    InputError
        Shapes that do not match, no cells, or a row with no allowed class.
    """
    logits = np.asarray(logits, np.float64)
    targets = np.asarray(targets, bool)
    if logits.ndim != 2 or logits.shape != targets.shape:
        raise InputError("logits", f"shape {logits.shape} against targets {targets.shape}", "two N x K arrays")
    if len(logits) == 0:
        raise InputError("logits", "no cells", "held-out cells to fit the temperature on")
    if not targets.any(axis=1).all():
        raise InputError("targets", "a row with no allowed class", "every cell's label to allow a class")
    lo, hi = np.log(TEMPERATURE_RANGE)
    # The NLL is smooth and unimodal in log T on this bracket: a bounded scalar search suffices.
    res = minimize_scalar(lambda lt: set_nll(logits, targets, float(np.exp(lt))), bounds=(lo, hi),
                          method="bounded", options={"xatol": 1e-4})
    t = float(np.exp(res.x))
    return {"temperature": t, "nll_before": set_nll(logits, targets, 1.0), "nll_after": set_nll(logits, targets, t),
            "n": len(logits)}


def logits_of(model, images: np.ndarray, *, batch_size: int = 128) -> np.ndarray:
    """Logits ``N x K`` of uint8 NHWC ``images`` from a torch classifier, in eval mode (mode restored)."""
    import torch

    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.inference_mode():
            for i in range(0, len(images), batch_size):
                out.append(model(torch.from_numpy(np.ascontiguousarray(images[i:i + batch_size]))).numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, model.config.n_classes), np.float32)


def fold_temperature(model, temperature: float) -> None:
    """Divide the weights and bias of ``model.head`` (the last linear layer) by ``temperature``, in place.

    The network then outputs ``logits / temperature``: its softmax is the calibrated probability.
    """
    import torch

    if not (TEMPERATURE_RANGE[0] <= temperature <= TEMPERATURE_RANGE[1]):
        raise InputError("temperature", temperature, f"a temperature in {TEMPERATURE_RANGE}")
    with torch.no_grad():
        model.head.weight.div_(float(temperature))
        if model.head.bias is not None:
            model.head.bias.div_(float(temperature))

