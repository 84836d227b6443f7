"""Data for the workflows: training folders, the model's label set, unlabelled scanner images.

Loading and splitting a single data set is :mod:`hemotwin.vision.datasets`; here several are
joined for training, mapped onto a model's labels and checksummed for its provenance, and the
unlabelled images of a target scanner are read at the working geometry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from hemotwin import taxonomy
from hemotwin.errors import HemotwinError, InputError
from hemotwin.io import pixel_size
from hemotwin.io.images import IMAGE_SUFFIXES, read_image
from hemotwin.vision.datasets import (
    Dataset,
    DatasetItem,
    estimate_dataset_um_per_px,
    load_dataset,
    measure_red_cells,
    red_cell_ruler,
    to_canonical,
)
from hemotwin.vision.geometry import Geometry

__all__ = ["coarsest_common", "concat", "data_checksum", "load_target_images", "load_training_data",
           "map_items_to", "model_labels_for", "parse_label_spec"]


def parse_label_spec(text: str | Sequence[str]) -> str | list[str]:
    """A label-set specification as written by a user: a name, ``auto``, or a comma list.

    Parameters
    ----------
    text
        ``"auto"``, a named set of :data:`hemotwin.taxonomy.LABEL_SETS` (``"wbc5"``, ``"pbc"``,
        ``"matek15"``), a comma-separated list of labels, or a list already.

    Returns
    -------
    str or list of str
        The name, or the list of labels (empty items dropped).

    Examples
    --------
    >>> parse_label_spec("NGS,EOS,")
    ['NGS', 'EOS']
    >>> parse_label_spec("wbc5")
    'wbc5'
    """
    if not isinstance(text, str):
        return list(text)
    if text == "auto" or text in taxonomy.LABEL_SETS:
        return text
    return [x for x in text.split(",") if x]


def model_labels_for(datasets: Sequence[Dataset], spec: str | Sequence[str] = "auto") -> tuple[str, ...]:
    """The model's label set.

    Parameters
    ----------
    datasets
        The training data sets.
    spec
        ``auto``: the labels present, in canonical order, where any coarse (group) label lifts the
        fine codes that have that group to it (so ``neutrophil`` and ``NGS`` do not coexist); a
        named set (``wbc5``, ``pbc``, ``matek15``) or an explicit list is used as given.

    Returns
    -------
    tuple of str
    """
    if spec != "auto":
        return tuple(taxonomy.label_set(spec))
    present = {it.label for ds in datasets for it in ds.items}
    groups = {lab for lab in present if lab not in taxonomy.CLASS_CODES}
    out = set()
    for lab in present:
        if lab in taxonomy.CLASS_CODES:
            parents = [a for a in taxonomy.ancestors(lab) if a in groups]
            out.add(parents[0] if parents else lab)
        else:
            out.add(lab)
    order = list(taxonomy.canonical_labels())
    return tuple(sorted(out, key=order.index))


def map_items_to(dataset: Dataset, labels: Sequence[str]) -> tuple[Dataset, list[str]]:
    """Keep the items whose label has a counterpart among the model's ``labels``.

    Kept: labels equal to a model label; fine codes under a coarse model label (relabelled to
    it); coarse labels whose descendants include model labels (kept as set-valued targets).
    Others are dropped and listed.

    Returns
    -------
    dataset : Dataset
        The items kept.
    notes : list of str
        One line per item dropped.
    """
    labels = list(labels)
    keep_idx, new_items, notes = [], [], []
    for i, it in enumerate(dataset.items):
        lab = it.label
        anc = [a for a in taxonomy.ancestors(lab) if a in labels]
        if anc:
            keep_idx.append(i)
            new_items.append(it if anc[0] == lab else replace(it, label=anc[0]))
        elif any(lab in taxonomy.ancestors(m) for m in labels):
            keep_idx.append(i)  # coarse label: a set of model classes
            new_items.append(it)
        else:
            notes.append(f"{it.path}: label {lab!r} has no counterpart in the model's labels; skipped")
    sub = dataset.subset(keep_idx).with_items(new_items)
    return replace(sub, labels=_labels_of(new_items)), notes


def coarsest_common(dataset: Dataset, model_labels: Sequence[str]) -> tuple[str, ...]:
    """Labels to score a data set in: each data label, lifted to a model label's level when it is finer."""
    out = []
    for lab in {it.label for it in dataset.items}:
        anc = [a for a in taxonomy.ancestors(lab) if a in model_labels]
        out.append(anc[0] if anc else lab)
    return tuple(sorted(set(out), key=list(taxonomy.canonical_labels()).index))


def _labels_of(items: Sequence[DatasetItem]) -> tuple[str, ...]:
    order = list(taxonomy.canonical_labels())
    return tuple(sorted({it.label for it in items}, key=order.index))


def data_checksum(dataset: Dataset) -> str:
    """SHA-256 over the (label, file digest) of every item, in path order."""
    h = hashlib.sha256()
    for it in sorted(dataset.items, key=lambda x: str(x.path)):
        h.update(str(it.label).encode())
        h.update(hashlib.sha256(Path(it.path).read_bytes()).digest())
    return h.hexdigest()


def load_training_data(dirs: Sequence[str | Path], *, um_per_px: float | None = None
                       ) -> tuple[list[Dataset], list[str]]:
    """Load each data folder/manifest; fill unknown pixel sizes with a red-cell estimate.

    The estimate ranks below each file's own metadata when the images are read
    (:func:`hemotwin.vision.geometry.item_pixel_size`).

    Returns
    -------
    datasets : list of Dataset
    notes : list of str
        What the red-cell estimate found, per folder that needed one.
    """
    out, notes = [], []
    for d in dirs:
        ds = load_dataset(d, um_per_px=um_per_px)
        if any(it.um_per_px is None for it in ds.items):
            ds, details = estimate_dataset_um_per_px(ds)
            notes.append(f"{d}: pixel size {details}")
        out.append(ds)
    return out, notes


def concat(datasets: Sequence[Dataset]) -> Dataset:
    """One data set holding the items of several (duplicate pairs re-indexed)."""
    items, pairs, skipped, notes, offset = [], [], [], [], 0
    for ds in datasets:
        items += ds.items
        pairs += [(a + offset, b + offset) for a, b in ds.duplicate_pairs]
        skipped += ds.skipped
        notes += ds.notes
        offset += len(ds.items)
    return Dataset(root=datasets[0].root, items=items, labels=_labels_of(items), skipped=skipped,
                   duplicate_pairs=pairs, notes=notes)


def load_target_images(folder: str | Path, geometry: Geometry, *, um_per_px: float | None = None,
                       max_images: int | None = 64, seed: int = 0, where: str = "target"
                       ) -> tuple[np.ndarray, dict[str, Any]]:
    """Unlabelled images of a target scanner (fields or crops), at the working geometry.

    Parameters
    ----------
    folder
        Every image file under it counts (no class folders needed).
    geometry
        The model geometry (images come back at its working geometry).
    um_per_px
        The pixel size the user gave for the folder. By the package's order
        (:mod:`hemotwin.io.pixel_size`) the files' metadata (the median, when every file has it)
        comes first, then this value, then the red-cell ruler's median over the images (fields
        hold plenty of red cells).
    max_images
        At most this many images (``None``: all), drawn with ``seed``.
    seed
        Seed of that draw.
    where
        The parameter that named ``folder``, for errors (``"target"``, ``"unlabelled"``).

    Returns
    -------
    images : ndarray
        ``N x S x S x 3`` uint8 at the working geometry.
    info : dict
        ``folder``, ``n_images``, ``um_per_px``, ``um_per_px_source``, ``failures`` (unreadable
        files, skipped).

    Raises
    ------
    InputError
        Not a folder, no image files, none readable, or no pixel size (names the folder).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(where, str(folder), "a folder of images from the target scanner")
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise InputError(where, str(folder), "a folder holding image files")
    if max_images is not None and len(paths) > max_images:
        pick = np.random.default_rng(seed).choice(len(paths), size=max_images, replace=False)
        paths = [paths[i] for i in sorted(pick)]
    read, failures = [], []
    for p in paths:
        try:
            rgb, info = read_image(p)
            read.append((p, rgb, info))
        except (HemotwinError, OSError, ValueError) as exc:
            failures.append({"path": str(p), "error": str(exc)})
    if not read:
        raise InputError(where, str(folder), f"readable images (all {len(failures)} failed)")
    meta = [info.um_per_px for _, _, info in read if info.um_per_px is not None]
    tags = sorted({info.um_per_px_source for _, _, info in read if info.um_per_px_source})

    def red_cells() -> tuple[float | None, str]:
        # One scanner: the red cells of all images are pooled into one ruler with its quality bars.
        um, det = red_cell_ruler([measure_red_cells(rgb) for _, rgb, _ in read])
        return um, det["quality"] if um is not None else det["reason"]

    um, source = pixel_size.resolve(where=str(folder),
                                    metadata=float(np.median(meta)) if len(meta) == len(read) else None,
                                    metadata_source=", ".join(tags) or None, option=um_per_px, estimate=red_cells)
    images = np.stack([to_canonical(rgb, um_per_px=um, canonical_um_per_px=geometry.work_um_per_px,
                                    size=geometry.work_size) for _, rgb, _ in read])
    return images, {"folder": str(folder), "n_images": len(read), "um_per_px": um, "um_per_px_source": source,
                    "failures": failures}
