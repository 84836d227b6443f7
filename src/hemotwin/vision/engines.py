"""Batched inference over canonical-size cell crops: one engine, one ``run()`` (TIAToolbox-style).

The engine expects images that already satisfy the model's preprocessing contract: RGB uint8,
``H x W x 3`` with ``H == W == input_size``, resampled to the model's canonical µm/px. Scale
normalisation and label collapse are the caller's job, around :meth:`InferenceEngine.run`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from hemotwin.errors import InputError
from hemotwin.vision.augment import ScaleJitter
from hemotwin.vision.export import INPUT_NAME, export_onnx
from hemotwin.vision.fitting import available_cores
from hemotwin.vision.modelfile import LoadedModel, load_model
from hemotwin.vision.models import HemoNet

Backend = Literal["onnxruntime", "torch"]


class InferenceEngine:
    """Class probabilities for batches of uint8 cell crops, through onnxruntime (default) or torch.

    Parameters
    ----------
    model
        A :class:`~hemotwin.vision.modelfile.LoadedModel`, a path to a ``.hemo`` file, or a bare
        :class:`~hemotwin.vision.models.HemoNet` (exported to ONNX on the fly for onnxruntime).
    backend
        ``"onnxruntime"`` (default: fastest on CPU) or ``"torch"``.
    batch_size
        Images per forward pass; 32-128 is the throughput sweet spot on CPU.
    num_threads
        Intra-op threads; ``None`` = all cores this process may use.
    labels
        Required label set when ``model`` is a path (see :func:`~hemotwin.vision.modelfile.load_model`).
    tta
        Test-time augmentation: average the probabilities over the eight rotations and mirror
        images of each crop (a cell on a slide has no preferred orientation, so the average is
        the model's orientation-free answer). Costs eight forward passes per cell.
    zooms
        Test-time scale augmentation: also average over each crop magnified by these factors
        about its centre (:func:`zoom_views`; 1 is the crop as given). A second scanner's pixel
        size is an estimate; a model trained with a zoom of up to ``F``
        (:class:`~hemotwin.vision.augment.ScaleJitter`) answers for the whole range when its
        answers at ``1/F``, 1 and ``F`` (:func:`scale_tta_zooms`) are averaged. Multiplies the cost
        by ``len(zooms)`` (and by eight more with ``tta``).

    Examples
    --------
    >>> engine = InferenceEngine("model.hemo")                      # doctest: +SKIP
    >>> probs = engine.run(crops)  # crops: N x 112 x 112 x 3 uint8  # doctest: +SKIP
    >>> engine.labels[probs.argmax(1)[0]]                            # doctest: +SKIP
    """

    def __init__(self, model: LoadedModel | HemoNet | str | Path, *, backend: Backend = "onnxruntime",
                 batch_size: int = 64, num_threads: int | None = None,
                 labels: Sequence[str] | None = None, tta: bool = False,
                 zooms: Sequence[float] = (1.0,)) -> None:
        if backend not in ("onnxruntime", "torch"):
            raise InputError("backend", backend, "'onnxruntime' or 'torch'")
        if batch_size < 1:
            raise InputError("batch_size", batch_size, "an integer >= 1")
        if isinstance(model, str | Path):
            model = load_model(model, labels=labels)
        if isinstance(model, LoadedModel):
            self.net: HemoNet = model.model
            self.labels: list[str] | None = list(model.labels)
            onnx_bytes = model.onnx
        elif isinstance(model, HemoNet):
            self.net, self.labels, onnx_bytes = model, None, None
        else:
            raise InputError("model", type(model).__name__, "a LoadedModel, a HemoNet or a .hemo path")
        self.net.eval()
        self.backend: Backend = backend
        self.batch_size = int(batch_size)
        self.tta = bool(tta)
        self.zooms = _checked_zooms(zooms)
        self.num_threads = int(num_threads or available_cores())
        self.input_size = self.net.config.input_size
        self._session: Any = None
        if backend == "onnxruntime":
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = self.num_threads
            opts.inter_op_num_threads = 1  # a sequential conv net gains nothing from inter-op parallelism
            opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            self._session = ort.InferenceSession(onnx_bytes or export_onnx(self.net), opts,
                                                 providers=["CPUExecutionProvider"])

    @property
    def n_classes(self) -> int:
        """Number of output classes."""
        return self.net.config.n_classes

    def as_batch(self, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """``images`` checked as one contiguous ``N x S x S x 3`` uint8 batch of the model's input size."""
        s = self.input_size
        expected = f"uint8 RGB images {s} x {s} x 3 (resampled to the model's µm/px and cropped)"
        if isinstance(images, np.ndarray):
            if images.ndim == 3:  # one image
                images = images[None]
            if images.ndim != 4 or images.shape[1:] != (s, s, 3) or images.dtype != np.uint8:
                raise InputError("images", f"{images.dtype} array of shape {images.shape}", f"N x {expected}")
            return np.ascontiguousarray(images)
        for i, im in enumerate(images):
            if not isinstance(im, np.ndarray) or im.shape != (s, s, 3) or im.dtype != np.uint8:
                raise InputError(f"images[{i}]", f"{getattr(im, 'dtype', type(im).__name__)} "
                                 f"{getattr(im, 'shape', '')}", expected)
        return np.stack(images) if len(images) else np.zeros((0, s, s, 3), np.uint8)

    def run(self, images: np.ndarray | Sequence[np.ndarray], *,
            progress: Callable[[int, int, dict[str, Any]], None] | None = None) -> np.ndarray:
        """Class probabilities of ``images``.

        Parameters
        ----------
        images
            ``N x S x S x 3`` uint8 array (or one ``S x S x 3`` image, or a sequence of them), RGB, at
            the model's canonical µm/px, ``S`` = the model's input size.
        progress
            ``progress(done, total, info)`` after each batch, counting images.

        Returns
        -------
        numpy.ndarray
            ``N x n_classes`` float32 probabilities (rows sum to 1), columns in ``self.labels`` order.
        """
        batch = self.as_batch(images)
        n = len(batch)
        out = np.empty((n, self.n_classes), dtype=np.float32)
        if self.backend == "torch":
            prev = torch.get_num_threads()
            torch.set_num_threads(self.num_threads)
        try:
            for i in range(0, n, self.batch_size):
                chunk = batch[i:i + self.batch_size]
                views = zoom_views(chunk, self.zooms)
                if self.tta:
                    views = [d for v in views for d in dihedral_views(v)]
                out[i:i + len(chunk)] = np.mean([self._forward(v) for v in views], axis=0)
                if progress is not None:
                    progress(min(i + self.batch_size, n), n, {"backend": self.backend})
        finally:
            if self.backend == "torch":
                torch.set_num_threads(prev)
        return out

    def _forward(self, chunk: np.ndarray) -> np.ndarray:
        if self.backend == "onnxruntime":
            return self._session.run(None, {INPUT_NAME: chunk})[0]
        with torch.inference_mode():
            return torch.softmax(self.net(torch.from_numpy(chunk)), dim=1).numpy()

    def predict(self, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Index of the most probable class of each image (``N`` int64)."""
        return self.run(images).argmax(1)


class EnsembleEngine:
    """The mean of several engines' probabilities: a seed ensemble behind one ``run()``.

    Models trained alike with different seeds disagree most on the cells of another scanner, and
    the mean of their probabilities is more accurate there than a typical member (on BCCD, six
    seeds: +3 points on all crops, docs/benchmarks.md). Members must share the label set (in the
    same order) and the input geometry; each keeps its own backend and test-time augmentation.

    Parameters
    ----------
    engines
        Two or more :class:`InferenceEngine` (one is allowed: the mean of one is itself).
    names
        What to call each member in errors (e.g. its file); defaults to ``member 0, 1, ...``.
    """

    def __init__(self, engines: Sequence[InferenceEngine], *, names: Sequence[str] | None = None) -> None:
        engines = list(engines)
        if not engines:
            raise InputError("engines", "[]", "one or more inference engines")
        names = list(names) if names is not None else [f"member {i}" for i in range(len(engines))]
        first = engines[0]
        for eng, name in zip(engines[1:], names[1:], strict=False):
            if eng.labels != first.labels:
                raise InputError(name, f"labels {eng.labels}", f"the labels of {names[0]}: {first.labels}")
            if eng.input_size != first.input_size:
                raise InputError(name, f"input size {eng.input_size}", f"{names[0]}'s {first.input_size}")
        self.engines = engines
        self.labels = first.labels
        self.input_size = first.input_size
        self.zooms = first.zooms
        self.tta = first.tta

    @property
    def n_classes(self) -> int:
        """Number of output classes."""
        return self.engines[0].n_classes

    def run(self, images: np.ndarray | Sequence[np.ndarray], *,
            progress: Callable[[int, int, dict[str, Any]], None] | None = None) -> np.ndarray:
        """Mean class probabilities of ``images`` over the members (see :meth:`InferenceEngine.run`)."""
        batch = self.engines[0].as_batch(images)
        k = len(self.engines)
        total = np.zeros((len(batch), self.n_classes), np.float64)
        for j, eng in enumerate(self.engines):
            step = None if progress is None else (
                lambda d, t, info, j=j: progress(j * t + d, k * t, {**info, "member": j}))
            total += eng.run(batch, progress=step)
        return (total / k).astype(np.float32)

    def predict(self, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Index of the most probable class of each image (``N`` int64)."""
        return self.run(images).argmax(1)


def dihedral_views(batch: np.ndarray) -> list[np.ndarray]:
    """The eight rotations and mirror images of an ``N x H x W x C`` batch of square crops."""
    views = []
    for flipped in (batch, batch[:, :, ::-1]):
        for k in range(4):
            views.append(np.ascontiguousarray(np.rot90(flipped, k, axes=(1, 2))))
    return views


def zoom_views(batch: np.ndarray, zooms: Sequence[float]) -> list[np.ndarray]:
    """``batch`` (``N x S x S x 3``) magnified about each crop's centre by each of ``zooms``.

    The same resampling as the training zoom (:meth:`~hemotwin.vision.augment.ScaleJitter.zoom`:
    area-averaging when shrinking, bilinear when enlarging, the border colour outside the crop),
    so a view at zoom ``z`` is what the model saw of a cell drawn at that zoom in training.
    """
    if not len(batch):
        return [batch for _ in zooms]
    return [batch if z == 1.0 else np.stack([ScaleJitter.zoom(im, z) for im in batch]) for z in zooms]


def scale_tta_zooms(factor: float) -> tuple[float, ...]:
    """The test-time zooms for a scale uncertainty of ``factor``: ``(1/factor, 1, factor)``.

    Three views span the log-uniform training zoom of :class:`~hemotwin.vision.augment.ScaleJitter`
    (its two ends and its centre); five views scored no better on BCCD (docs/benchmarks.md).
    ``factor`` 1 gives ``(1.0,)``: no scale augmentation.
    """
    if not (isinstance(factor, int | float) and np.isfinite(factor) and 1.0 <= factor <= MAX_TTA_ZOOM):
        raise InputError("scale TTA factor", factor, f"a zoom factor between 1 (off) and {MAX_TTA_ZOOM}")
    return (1.0,) if factor == 1.0 else (1.0 / float(factor), 1.0, float(factor))


#: Largest test-time magnification (and smallest, as its inverse) an engine accepts.
MAX_TTA_ZOOM = 2.0


def _checked_zooms(zooms: Sequence[float]) -> tuple[float, ...]:
    try:
        out = tuple(float(z) for z in zooms)
    except (TypeError, ValueError):
        raise InputError("zooms", zooms, "a sequence of zoom factors") from None
    if not out or not all(np.isfinite(z) and 1.0 / MAX_TTA_ZOOM <= z <= MAX_TTA_ZOOM for z in out):
        raise InputError("zooms", zooms, f"one or more zoom factors between {1 / MAX_TTA_ZOOM} and {MAX_TTA_ZOOM}")
    return out
