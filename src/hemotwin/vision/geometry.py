"""The model's input geometry, and images brought to it.

The model sees ``input_size`` pixels at ``um_per_px`` (default 112 px at 0.225 µm/px, a 25 µm
field). Training images are held at a *working* resolution twice as fine and 15 % wider, so that
re-imaging through a coarser scanner has real detail to lose and rotations never expose an edge;
every augmentation ends by bringing the image to the model's geometry (:func:`to_model_geometry`,
or :func:`zoom_to_model` with a zoom folded in).

The pixel size of each input follows the package's one rule (:mod:`hemotwin.io.pixel_size`):
the data set's manifest, the file's own metadata, the user's ``um_per_px`` option, a red-cell
estimate. The source is recorded for every image and reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from hemotwin.errors import HemotwinError
from hemotwin.io import pixel_size
from hemotwin.io.images import ImageInfo, read_image
from hemotwin.vision.datasets import Dataset, DatasetItem, centre, to_canonical

__all__ = ["WORK_FACTOR", "WORK_MARGIN", "Geometry", "Prepared", "Progress", "item_pixel_size", "prepare",
           "summary_of", "to_model_geometry", "zoom_to_model"]

#: ``progress(done, total)`` after each item.
Progress = Callable[[int, int], None]

WORK_FACTOR = 2.0  #: working pixels are this much finer than the model's
WORK_MARGIN = 1.15  #: and the working field this much wider


@dataclass(frozen=True)
class Geometry:
    """The model's input geometry and the working geometry derived from it.

    Attributes
    ----------
    um_per_px
        The model's pixel size (µm).
    input_size
        The model's input side (px).
    """

    um_per_px: float = 0.225
    input_size: int = 112

    @property
    def work_um_per_px(self) -> float:
        """Pixel size of the working images (:data:`WORK_FACTOR` finer than the model's)."""
        return self.um_per_px / WORK_FACTOR

    @property
    def work_size(self) -> int:
        """Side of the working images (even, :data:`WORK_MARGIN` wider than the model's field)."""
        n = round(self.input_size * WORK_FACTOR * WORK_MARGIN)
        return n + (n % 2)


@dataclass
class Prepared:
    """Images brought to one geometry, with what happened to each input.

    Attributes
    ----------
    images
        ``N x S x S x 3`` uint8.
    kept
        Indices into the data set of the images that were read.
    um_per_px, um_source
        Each kept image's pixel size and its source label (:func:`hemotwin.io.pixel_size.label`).
    failures
        ``{"path", "error"}`` of every image that was not read.
    """

    images: np.ndarray
    kept: list[int]
    um_per_px: list[float]
    um_source: list[str]
    failures: list[dict[str, str]] = field(default_factory=list)


def item_pixel_size(item: DatasetItem, info: ImageInfo, option: float | None = None) -> tuple[float, str]:
    """The pixel size of one data-set item by the package's order, with its source label.

    Parameters
    ----------
    item
        The item; a pixel size stamped on it at loading keeps the kind of its source (manifest,
        option or red-cell estimate, read from ``item.um_per_px_source``).
    info
        What reading the file found (its metadata).
    option
        The pixel size the user gave for inputs that carry none.

    Returns
    -------
    um_per_px : float
    source : str

    Raises
    ------
    InputError
        No source knows the pixel size (names the file).
    """
    source = item.um_per_px_source
    kind = pixel_size.kind_of(source) if item.um_per_px is not None else None
    stamped = {kind: float(item.um_per_px)} if kind is not None else {}
    # A red-cell estimate made over the data set at loading is used only when nothing better is
    # known, and keeps its detail ("N red cells in M images").
    detail = source[len(pixel_size.RED_CELLS) + 2:-1] if source != pixel_size.RED_CELLS else ""
    estimate = (lambda: (stamped[pixel_size.RED_CELLS], detail)) if kind == pixel_size.RED_CELLS else None
    given = stamped.get(pixel_size.OPTION)
    return pixel_size.resolve(where=str(item.path), manifest=stamped.get(pixel_size.MANIFEST),
                              metadata=info.um_per_px, metadata_source=info.um_per_px_source,
                              option=given if given is not None else option, estimate=estimate)


def prepare(dataset: Dataset, geometry: Geometry, *, working: bool, um_per_px: float | None = None,
            progress: Progress | None = None) -> Prepared:
    """Read every item and bring it to the working (``working=True``) or model geometry.

    Parameters
    ----------
    dataset
        The items to read.
    geometry
        The model geometry.
    working
        Bring the images to the working geometry (training) rather than the model's.
    um_per_px
        The pixel size of items that carry none (:func:`item_pixel_size`).
    progress
        Called after each item.

    Returns
    -------
    Prepared
        Unreadable images and images of unknown pixel size are listed in ``failures``; the rest go on.
    """
    target_um = geometry.work_um_per_px if working else geometry.um_per_px
    size = geometry.work_size if working else geometry.input_size
    out, kept, ums, srcs, failures = [], [], [], [], []
    for i, item in enumerate(dataset.items):
        try:
            rgb, info = read_image(item.path)
            um, src = item_pixel_size(item, info, um_per_px)
            out.append(to_canonical(rgb, um_per_px=um, canonical_um_per_px=target_um, size=size))
            kept.append(i)
            ums.append(um)
            srcs.append(src)
        except (HemotwinError, OSError, ValueError) as exc:
            failures.append({"path": str(item.path), "error": str(exc)})
        if progress:
            progress(i + 1, len(dataset.items))
    images = np.stack(out) if out else np.zeros((0, size, size, 3), np.uint8)
    return Prepared(images, kept, ums, srcs, failures)


def summary_of(prepared: Prepared) -> dict[str, Any]:
    """What reading a data set did, for provenance: counts, pixel-size sources and their median."""
    srcs: dict[str, int] = {}
    for s in prepared.um_source:
        srcs[s] = srcs.get(s, 0) + 1
    return {"read": len(prepared.kept), "failed": len(prepared.failures), "um_per_px_sources": srcs,
            "um_per_px_median": float(np.median(prepared.um_per_px)) if prepared.um_per_px else None}


def to_model_geometry(work: np.ndarray, geometry: Geometry) -> np.ndarray:
    """A working-resolution image brought to the model's input geometry."""
    return to_canonical(work, um_per_px=geometry.work_um_per_px, canonical_um_per_px=geometry.um_per_px,
                        size=geometry.input_size)


@lru_cache(maxsize=256)
def _zoom_operator(n: int, zoomed: int, geometry: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """One axis of a zoom to the model grid as one matrix, and each output pixel's share of the crop.

    "Zoom a working crop of ``n`` px to ``zoomed`` px and centre it in ``n``, then bring it to the
    model grid" is one ``input_size x n`` matrix; the share (``input_size``) says how much of each
    output pixel comes from the crop rather than from the padding.
    """
    from hemotwin.twin.resample import resample_weights

    def placement(n_in: int, n_out: int) -> np.ndarray:  # centre crop or pad (padding rows stay zero)
        src, dst, length = centre(n_in, n_out)
        out = np.zeros((n_out, n_in), np.float32)
        out[np.arange(dst, dst + length), np.arange(src, src + length)] = 1.0
        return out

    zoom_place = placement(zoomed, n)
    m = max(1, round(n * geometry.work_um_per_px / geometry.um_per_px))
    b = placement(m, geometry.input_size) @ resample_weights(n, m)
    k, share = b @ zoom_place @ resample_weights(n, zoomed), b @ zoom_place.sum(axis=1)
    k.setflags(write=False)
    share.setflags(write=False)
    return k, share


def zoom_to_model(work: np.ndarray, geometry: Geometry, zoom: float) -> np.ndarray:
    """A zoom of a square working crop followed by :func:`to_model_geometry`, as one map per axis.

    The same image as :class:`~hemotwin.vision.augment.ScaleJitter`'s zoom then
    :func:`to_model_geometry` to within one grey level (the intermediate is not rounded to 8
    bits), at a fraction of the cost: the two resamplings are composed into one linear map.
    """
    from hemotwin.twin.resample import resample_weights

    n = work.shape[0]
    if work.shape[1] != n or geometry.input_size > round(n * geometry.work_um_per_px / geometry.um_per_px):
        # Not the training layout (square, and wide enough for the model field): do it in two steps.
        from hemotwin.vision.augment import ScaleJitter

        return to_model_geometry(ScaleJitter.zoom(work, zoom), geometry)
    zoomed = max(1, round(n * zoom))
    k, share = _zoom_operator(n, zoomed, geometry)
    f = work.astype(np.float32) / 255.0
    out = np.einsum("ij,jlc,kl->ikc", k, f, k, optimize=True)
    if zoomed < n:
        # Zoomed out: the padding is the zoomed crop's border colour, as to_canonical pads; only
        # the zoomed crop's outer rows and columns are needed for it.
        r = resample_weights(n, zoomed)
        rows = np.einsum("ij,jlc,kl->ikc", r[[0, -1]], f, r, optimize=True)  # 2 x zoomed x 3
        cols = np.einsum("ij,jlc,kl->ikc", r, f, r[[0, -1]], optimize=True)  # zoomed x 2 x 3
        bg = np.median(np.concatenate([rows[0], rows[1], cols[:, 0], cols[:, 1]]), axis=0)
        out += bg.astype(np.float32) * (1.0 - share[:, None] * share[None, :])[..., None]
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)
