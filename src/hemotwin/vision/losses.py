"""Losses of the training engine: cross-entropy that takes set-valued targets, and distillation.

Set-valued labels (a PBC "neutrophil" for a model that tells NGS from NGB) are ``N x K`` boolean
target masks; a row's loss is ``-log sum_{c in S} softmax(z)_c`` (:func:`set_nll`), the
cross-entropy when ``|S| = 1``. Distillation pulls a student towards its teachers' mean
probabilities on the same augmented images (Hinton et al., 2015).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from hemotwin.errors import InputError

__all__ = ["SetCrossEntropyLoss", "distillation_loss", "make_loss", "row_weights", "set_nll",
           "teacher_probabilities"]


def set_nll(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-row ``-log sum_{c in S} softmax(logits)_c`` for boolean target masks ``mask`` (``S`` = row).

    Computed stably as ``logsumexp(logits over all) - logsumexp(logits over S)``; equals the
    cross-entropy of the single class when ``|S| = 1``. Every row must allow at least one class.
    """
    # Shifting by the row maximum first keeps float32 exact where logits are large (both logsumexps
    # would otherwise be ~max and their difference would lose the small digits).
    z = logits - logits.detach().amax(dim=1, keepdim=True)
    neg_inf = torch.tensor(float("-inf"), dtype=z.dtype, device=z.device)
    inside = torch.logsumexp(torch.where(mask, z, neg_inf), dim=1)
    return torch.logsumexp(z, dim=1) - inside


def row_weights(target: torch.Tensor, weight: torch.Tensor | None, n_classes: int) -> torch.Tensor:
    """Per-row loss weights as :class:`SetCrossEntropyLoss` uses them (mean weight of a row's classes)."""
    w = torch.ones(n_classes) if weight is None else torch.as_tensor(weight, dtype=torch.float32)
    if target.dtype == torch.bool:
        m = target.to(torch.float32)
        return (m @ w) / m.sum(1)
    return w[target]


class SetCrossEntropyLoss(nn.Module):
    """Cross-entropy that also takes set-valued targets.

    Called with int64 class indices it is exactly ``nn.CrossEntropyLoss(weight, label_smoothing)``
    (weighted mean ``sum w_i l_i / sum w_i``). Called with an ``N x K`` boolean target mask, row ``i``
    has loss ``l_i = set_nll`` and weight ``w_i`` = mean weight of its allowed classes; the result is
    ``sum w_i l_i / sum w_i``. Label smoothing is applied to singleton rows only, with the same formula
    as torch's (so a mask of singletons gives torch's weighted, smoothed cross-entropy).
    """

    def __init__(self, weight: np.ndarray | torch.Tensor | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight, dtype=torch.float32))
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss of ``logits`` against class indices or an ``N x K`` boolean target mask."""
        if target.dtype != torch.bool:
            return nn.functional.cross_entropy(logits, target, weight=self.weight,
                                               label_smoothing=self.label_smoothing)
        k = logits.shape[1]
        if target.ndim != 2 or target.shape[1] != k:
            raise InputError("target mask", tuple(target.shape), f"N x {k} booleans")
        nll = set_nll(logits, target)
        sizes = target.sum(1).to(logits.dtype)
        w_cls = self.weight.to(logits.dtype) if self.weight is not None else torch.ones(k, dtype=logits.dtype)
        w_row = row_weights(target, self.weight, k).to(logits.dtype)
        num = w_row * nll
        if self.label_smoothing > 0:
            eps = self.label_smoothing * (sizes == 1).to(logits.dtype)
            smooth = -(torch.log_softmax(logits, 1) * w_cls).sum(1) / k
            num = (1 - eps) * num + eps * smooth
        return num.sum() / w_row.sum()


def make_loss(weights: np.ndarray | None = None, label_smoothing: float = 0.0) -> SetCrossEntropyLoss:
    """Cross-entropy with optional class weights that also accepts boolean target masks.

    The weighted mean is ``sum w_i l_i / sum w_i``; see :class:`SetCrossEntropyLoss`.
    """
    return SetCrossEntropyLoss(weights, label_smoothing)


@torch.no_grad()
def teacher_probabilities(teachers: Sequence[nn.Module], images: torch.Tensor, *,
                          temperature: float = 1.0) -> torch.Tensor:
    """Mean over ``teachers`` of ``softmax(logits / temperature)`` of ``images`` (``N x K``)."""
    out = None
    for t in teachers:
        p = torch.softmax(t(images) / temperature, dim=1)
        out = p if out is None else out + p
    return out / len(teachers)


def distillation_loss(logits: torch.Tensor, teacher_probs: torch.Tensor, *, temperature: float,
                      weights: torch.Tensor | None = None) -> torch.Tensor:
    """``T^2 KL(teacher || softmax(logits / T))``, the weighted mean over rows (Hinton et al., 2015).

    The ``T^2`` keeps the term's gradients on the scale of the cross-entropy's whatever ``T`` is.
    """
    if teacher_probs.shape != logits.shape:
        raise InputError("teacher probabilities", tuple(teacher_probs.shape), f"the student's {tuple(logits.shape)}")
    log_q = torch.log_softmax(logits / temperature, dim=1)
    p = teacher_probs.clamp_min(1e-12)
    kl = (teacher_probs * (p.log() - log_q)).sum(1) * temperature**2
    if weights is None:
        return kl.mean()
    return (weights * kl).sum() / weights.sum()
