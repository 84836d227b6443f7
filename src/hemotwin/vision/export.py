"""ONNX export of a classifier: uint8 NHWC RGB images in, class probabilities out.

The graph has one input ``images`` (uint8, ``[batch, H, W, 3]``, dynamic batch axis) and one output
``probabilities`` (float32, ``[batch, n_classes]``, softmax included). Normalisation lives inside the
graph (see :mod:`hemotwin.vision.models`), so a runtime only has to hand over the pixels.
"""

from __future__ import annotations

import copy
import io
import warnings
from pathlib import Path

import torch
from torch import nn

from hemotwin.vision.models import ProbabilityModel

DEFAULT_OPSET = 18
INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"


def export_onnx(model: nn.Module, path: str | Path | None = None, *, input_size: int | None = None,
                opset: int = DEFAULT_OPSET) -> bytes:
    """Export ``model`` (logits head) to ONNX with softmax appended; return the serialised graph.

    Parameters
    ----------
    model
        A classifier taking uint8 NHWC images (e.g. :class:`~hemotwin.vision.models.HemoNet`).
        It is not modified (a copy is put in eval mode and exported).
    path
        Where to write the ``.onnx`` file as well; ``None`` only returns the bytes.
    input_size
        Spatial size of the example input; defaults to ``model.config.input_size``. H and W are
        fixed in the graph at this size (the preprocessing contract); the batch axis is dynamic.
    opset
        ONNX opset (>= 17).

    Returns
    -------
    bytes
        The ONNX model, ready for ``onnxruntime.InferenceSession(bytes)``.
    """
    if opset < 17:
        raise ValueError(f"opset must be >= 17, got {opset}")
    size = input_size or model.config.input_size  # type: ignore[union-attr]
    net = ProbabilityModel(copy.deepcopy(model).cpu().eval()).eval()
    # Batch 2 in the example: a batch of 1 invites exporters to specialise the batch axis.
    example = torch.zeros((2, size, size, 3), dtype=torch.uint8)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated in favour of the dynamo one, but it is
        # ~20x faster to run, needs no tracing of Python, and produces a plain, well-optimised graph
        # for a static conv net like this one; the warning is noise for our users.
        warnings.simplefilter("ignore")
        with torch.no_grad():
            torch.onnx.export(
                net, (example,), buf, dynamo=False, opset_version=opset,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                do_constant_folding=True,
            )
    data = buf.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data
