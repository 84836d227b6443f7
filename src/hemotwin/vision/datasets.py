"""Cell-image data sets (ImageFolder trees and ``manifest.csv``), grouped splits, scale normalisation.

Loading resolves every folder/label name through :func:`hemotwin.taxonomy.resolve_label`, records
where each image's pixel size came from (the kinds of :mod:`hemotwin.io.pixel_size`: ``"manifest"``,
``"option"``, ``"red cells (<the estimate's quality>)"``; or ``"unknown"``) and reads pixels lazily.
Near-duplicate images (the same cell photographed twice) are joined into groups, from a
confirmed-pairs CSV and/or a cheap perceptual hash, so :func:`split` keeps them on one side.

Scale: :func:`to_canonical` resamples an image to one physical pixel size before the model;
:func:`estimate_um_per_px` measures the pixel size from red cells (the red-cell ruler) when no
metadata gives it, and refuses when its estimate is weak (:func:`red_cell_ruler`). No torch here.
"""

from __future__ import annotations

import csv
import math
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from hemotwin.errors import InputError
from hemotwin.io import pixel_size
from hemotwin.io.images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, read_image
from hemotwin.taxonomy import label_set as _label_set
from hemotwin.taxonomy import resolve_label

__all__ = [
    "RBC_DIAMETER_UM",
    "RULER_MAX_CV",
    "RULER_MIN_CELLS",
    "RULER_MIN_ROUND_FRACTION",
    "Dataset",
    "DatasetItem",
    "Split",
    "border_colour",
    "centre",
    "duplicate_groups",
    "estimate_dataset_um_per_px",
    "estimate_um_per_px",
    "image_hash",
    "load_dataset",
    "measure_red_cells",
    "read_pairs_csv",
    "red_cell_ruler",
    "split",
    "to_canonical",
]

#: Mean diameter of a normal red cell in a dried smear (docs/clinical_rules.md §11: 7-8 µm discs), the ruler's
#: reference.
RBC_DIAMETER_UM = 7.5


@dataclass(frozen=True)
class DatasetItem:
    """One image of a data set.

    Attributes
    ----------
    path
        Absolute image path.
    label
        Canonical label (see :mod:`hemotwin.taxonomy`).
    um_per_px
        Pixel size in µm, or None when unknown.
    um_per_px_source
        ``"manifest"``, ``"option"``, ``"red cells (N red cells in M images)"`` (labels of
        :mod:`hemotwin.io.pixel_size`, whose order ranks them against the file's metadata) or
        ``"unknown"``.
    source
        Free-text origin (manifest ``source`` column), or None.
    group
        Explicit group from the manifest ``group`` column (e.g. patient or slide), or None.
    raw_label
        The label as written in the folder name or manifest.
    """

    path: Path
    label: str
    um_per_px: float | None = None
    um_per_px_source: str = "unknown"
    source: str | None = None
    group: str | None = None
    raw_label: str = ""


@dataclass
class Dataset:
    """A labelled set of image files (pixels are read on demand with :meth:`read`).

    Attributes
    ----------
    root
        Folder the paths are relative to (the ImageFolder root or the manifest's folder).
    items
        The images.
    labels
        The label set: the ``label_set`` asked for, else the labels present in sorted order.
    skipped
        ``(path, reason)`` for files that were listed or found but not used (missing files, non-image
        files). Not fatal; report them.
    duplicate_pairs
        Index pairs of images known to show the same cell/field (from a pairs CSV or hashing).
    notes
        What the loader did that a user should know (e.g. which duplicates CSV it used).
    """

    root: Path
    items: list[DatasetItem]
    labels: tuple[str, ...]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    duplicate_pairs: list[tuple[int, int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[DatasetItem]:
        return iter(self.items)

    def __getitem__(self, i: int) -> DatasetItem:
        return self.items[i]

    def counts(self) -> dict[str, int]:
        """Images per label, in label-set order (zero counts included)."""
        c = Counter(it.label for it in self.items)
        return {lab: c.get(lab, 0) for lab in self.labels}

    def targets(self) -> np.ndarray:
        """Integer class index of each item in :attr:`labels`."""
        idx = {lab: i for i, lab in enumerate(self.labels)}
        return np.array([idx[it.label] for it in self.items], dtype=np.int64)

    def read(self, i: int, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
        """RGB uint8 pixels of item ``i`` (raises :class:`InputError` naming the file if unreadable)."""
        return read_image(self.items[i].path, max_pixels=max_pixels)[0]

    def groups(self) -> np.ndarray:
        """Group id per item: items joined by the manifest ``group`` column or a duplicate pair share one."""
        return _union_groups(self.items, self.duplicate_pairs)

    def subset(self, indices: Sequence[int]) -> Dataset:
        """A new data set of the given items (duplicate pairs re-indexed, kept only within it)."""
        indices = [int(i) for i in indices]
        where = {old: new for new, old in enumerate(indices)}
        pairs = [(where[a], where[b]) for a, b in self.duplicate_pairs if a in where and b in where]
        return Dataset(root=self.root, items=[self.items[i] for i in indices], labels=self.labels,
                       skipped=list(self.skipped), duplicate_pairs=pairs, notes=list(self.notes))

    def with_items(self, items: list[DatasetItem]) -> Dataset:
        """A copy with ``items`` replaced one for one (same order and length)."""
        if len(items) != len(self.items):
            raise InputError("items", len(items), f"{len(self.items)} items (one per existing item)")
        return replace(self, items=list(items))


# ----------------------------------------------------------------------------------------------------------
# loading


def load_dataset(root_or_manifest: str | Path, *, label_set: str | Sequence[str] | None = None,
                 um_per_px: float | None = None, layout: Literal["auto", "manifest", "folders"] = "auto",
                 near_duplicates: str | Path | Literal["auto"] | None = "auto") -> Dataset:
    """Load an ImageFolder tree or a ``manifest.csv``.

    Parameters
    ----------
    root_or_manifest
        A folder ``<root>/<label>/<file>`` (sub-folders below a label folder are included), a folder
        holding ``manifest.csv``, or a CSV file with columns ``path,label[,um_per_px][,source][,group]``
        (paths relative to the CSV's folder, or absolute).
    label_set
        Map labels into this set (``"pbc"``, ``"wbc5"``, ``"matek15"``, a list of labels ...): a finer
        label goes to its ancestor (``SNE`` -> ``neutrophil``). Labels that do not fit are an error.
        None: keep each name's own canonical label.
    um_per_px
        Pixel size for items whose manifest row gives none (source ``"option"``). Per-row manifest
        values win because they are specific to the image.
    layout
        ``"auto"`` uses ``manifest.csv`` when the folder has one, else the folder tree.
    near_duplicates
        A CSV of confirmed duplicate pairs (columns ``path_a,path_b``, relative to the CSV's folder),
        ``"auto"`` (use ``near_duplicates*.csv`` in the root if present) or None.

    Returns
    -------
    Dataset

    Raises
    ------
    InputError
        Missing root, unknown label (naming the folder or manifest row), empty class folder, empty
        manifest, missing columns, bad ``um_per_px``.
    """
    src = Path(root_or_manifest)
    if not src.exists():
        raise InputError(str(src), "no such file or folder", "an ImageFolder root or a manifest.csv")
    if um_per_px is not None and not (isinstance(um_per_px, int | float) and math.isfinite(um_per_px)
                                      and um_per_px > 0):
        raise InputError("um_per_px", um_per_px, "a positive pixel size in µm")
    if src.is_file():
        ds = _load_manifest(src, label_set=label_set, um_per_px=um_per_px)
    elif layout == "manifest" or (layout == "auto" and (src / "manifest.csv").is_file()):
        ds = _load_manifest(src / "manifest.csv", label_set=label_set, um_per_px=um_per_px)
    elif layout in ("folders", "auto"):
        ds = _load_folders(src, label_set=label_set, um_per_px=um_per_px)
    else:
        raise InputError("layout", layout, "'auto', 'manifest' or 'folders'")
    pairs_csv: Path | None = None
    if near_duplicates == "auto":
        found = sorted(ds.root.glob("near_duplicates*.csv"))
        pairs_csv = found[0] if found else None
    elif near_duplicates is not None:
        pairs_csv = Path(near_duplicates)
    if pairs_csv is not None:
        pairs, unmatched = read_pairs_csv(pairs_csv, ds)
        ds.duplicate_pairs.extend(pairs)
        ds.notes.append(f"{len(pairs)} duplicate pairs from {pairs_csv.name}"
                        + (f" ({unmatched} pairs name images not in this data set)" if unmatched else ""))
    return ds


def _item_scale(row_um: float | None, option_um: float | None) -> tuple[float | None, str]:
    if row_um is not None:
        return row_um, pixel_size.label(pixel_size.MANIFEST)
    if option_um is not None:
        return float(option_um), pixel_size.label(pixel_size.OPTION)
    return None, "unknown"


def _load_folders(root: Path, *, label_set: str | Sequence[str] | None, um_per_px: float | None) -> Dataset:
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise InputError(str(root), "no class folders", "an ImageFolder root <root>/<label>/<image files>")
    items: list[DatasetItem] = []
    skipped: list[tuple[str, str]] = []
    um, um_src = _item_scale(None, um_per_px)
    for folder in folders:
        label = resolve_label(folder.name, label_set=label_set, where=f"{folder} (class folder name)")
        files = sorted(f for f in folder.rglob("*") if f.is_file() and not f.name.startswith("."))
        images = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]
        skipped.extend((str(f), "not an image file (by suffix)")
                       for f in files if f.suffix.lower() not in IMAGE_SUFFIXES)
        if not images:
            raise InputError(str(folder), "empty class folder (no image files)",
                             f"at least one image ({', '.join(sorted(IMAGE_SUFFIXES))}) or remove the folder")
        items.extend(DatasetItem(path=f.resolve(), label=label, um_per_px=um, um_per_px_source=um_src,
                                 raw_label=folder.name) for f in images)
    labels = _label_set(label_set) if label_set is not None else tuple(sorted({it.label for it in items}))
    return Dataset(root=root.resolve(), items=items, labels=labels, skipped=skipped)


def _load_manifest(csv_path: Path, *, label_set: str | Sequence[str] | None, um_per_px: float | None) -> Dataset:
    base = csv_path.parent.resolve()
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            cols = [c.strip() for c in (reader.fieldnames or [])]
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(str(csv_path), f"unreadable CSV ({exc})", "a UTF-8 CSV manifest") from exc
    missing = [c for c in ("path", "label") if c not in cols]
    if missing:
        raise InputError(str(csv_path), f"columns {cols}", "columns path,label[,um_per_px][,source][,group]")
    if not rows:
        raise InputError(str(csv_path), "no rows", "at least one image row")
    items: list[DatasetItem] = []
    skipped: list[tuple[str, str]] = []
    for n, raw in enumerate(rows, start=2):  # row 1 is the header: numbers match a text editor
        row = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        where = f"{csv_path}:row {n}"
        if not row.get("path"):
            raise InputError(f"{where} (path)", row.get("path"), "an image path")
        label = resolve_label(row.get("label", ""), label_set=label_set, where=f"{where} (label)")
        row_um: float | None = None
        if row.get("um_per_px"):
            try:
                row_um = float(row["um_per_px"])
            except ValueError:
                row_um = float("nan")
            if not (math.isfinite(row_um) and row_um > 0):
                raise InputError(f"{where} (um_per_px)", row["um_per_px"], "a positive pixel size in µm or empty")
        p = Path(row["path"])
        p = p if p.is_absolute() else base / p
        if not p.is_file():
            skipped.append((str(p), f"listed in {csv_path.name} row {n} but missing"))
            continue
        um, um_src = _item_scale(row_um, um_per_px)
        items.append(DatasetItem(path=p.resolve(), label=label, um_per_px=um, um_per_px_source=um_src,
                                 source=row.get("source") or None, group=row.get("group") or None,
                                 raw_label=row.get("label", "")))
    if not items:
        raise InputError(str(csv_path), f"none of {len(rows)} listed files exist", "existing image files")
    labels = _label_set(label_set) if label_set is not None else tuple(sorted({it.label for it in items}))
    return Dataset(root=base, items=items, labels=labels, skipped=skipped)


# ----------------------------------------------------------------------------------------------------------
# duplicates and splitting


def read_pairs_csv(path: str | Path, dataset: Dataset) -> tuple[list[tuple[int, int]], int]:
    """Index pairs of ``dataset`` from a CSV of duplicate pairs (``path_a,path_b[,kind]``).

    Paths are relative to the CSV's folder. Returns the pairs and how many rows named images not in
    the data set (e.g. whole fields when only crops were loaded).
    """
    p = Path(path)
    try:
        with open(p, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            cols = reader.fieldnames or []
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(str(p), f"unreadable CSV ({exc})", "a CSV with columns path_a,path_b") from exc
    if not {"path_a", "path_b"} <= set(cols):
        raise InputError(str(p), f"columns {cols}", "columns path_a,path_b[,kind]")
    index = {it.path: i for i, it in enumerate(dataset.items)}
    base = p.parent.resolve()
    pairs: list[tuple[int, int]] = []
    unmatched = 0
    for row in rows:
        a = (base / row["path_a"].strip()).resolve()
        b = (base / row["path_b"].strip()).resolve()
        if a in index and b in index:
            pairs.append((index[a], index[b]))
        else:
            unmatched += 1
    return pairs, unmatched


def image_hash(rgb: np.ndarray, *, hash_size: int = 16) -> np.ndarray:
    """Difference hash: ``hash_size x hash_size`` booleans of horizontal gradient signs of a grey thumbnail.

    Insensitive to scale, JPEG and small colour shifts; two photographs of the same cell differ in
    few bits, two different cells in about half.
    """
    from PIL import Image

    g = np.asarray(rgb, dtype=np.float32)
    g = g.mean(axis=2) if g.ndim == 3 else g
    thumb = np.asarray(Image.fromarray(g.astype(np.float32), mode="F").resize(
        (hash_size + 1, hash_size), Image.Resampling.BOX), dtype=np.float32)
    return (thumb[:, 1:] > thumb[:, :-1]).ravel()


def duplicate_groups(dataset: Dataset, *, max_bits: int = 24, hash_size: int = 16) -> tuple[list[tuple[int, int]],
                                                                                           list[tuple[str, str]]]:
    """Find exact and near-duplicate images by perceptual hash.

    Parameters
    ----------
    dataset
        Images to compare (all are read once, as small thumbnails).
    max_bits
        Pairs whose ``hash_size**2``-bit difference hashes differ in at most this many bits are
        duplicates. Measured: distinct cells differ in >= 59 of 256 bits (BCCD crops) and >= 76 (PBC);
        re-encoded or slightly shifted copies in a few bits. The confirmed BCCD pairs (same cell in
        two frames) differ in 35-67 bits, so a hash alone cannot find re-photographed cells: keep
        using the curated pairs CSV for those.
    hash_size
        Side of the hash grid.

    Returns
    -------
    pairs
        Index pairs judged duplicates (add them to ``dataset.duplicate_pairs`` to keep them together).
    failures
        ``(path, reason)`` of unreadable images (skipped, not fatal).
    """
    hashes: list[np.ndarray] = []
    ok: list[int] = []
    failures: list[tuple[str, str]] = []
    for i, it in enumerate(dataset.items):
        try:
            hashes.append(image_hash(_read_thumb(it.path), hash_size=hash_size))
            ok.append(i)
        except InputError as exc:
            failures.append((str(it.path), str(exc)))
    pairs: list[tuple[int, int]] = []
    if hashes:
        h = np.packbits(np.array(hashes), axis=1)
        # Popcount of XOR over all pairs in blocks: 2,000 images -> 4 M pairs, well under a second.
        table = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(1).astype(np.uint16)
        for a in range(len(ok)):
            d = table[np.bitwise_xor(h[a + 1:], h[a])].sum(axis=1)
            for b in np.nonzero(d <= max_bits)[0]:
                pairs.append((ok[a], ok[a + 1 + int(b)]))
    return pairs, failures


def _read_thumb(path: Path) -> np.ndarray:
    """A small RGB version of an image, cheaply (JPEG draft mode decodes at 1/8 scale)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.format == "JPEG":
                im.draft("RGB", (64, 64))
            im.load()
            if im.mode == "RGB":
                return np.asarray(im)
    except Exception:  # anything odd: the robust reader decides and names the file
        pass
    return read_image(path)[0]


def _union_groups(items: Sequence[DatasetItem], pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    parent = list(range(len(items)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: int, b: int) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    first: dict[str, int] = {}
    for i, it in enumerate(items):
        if it.group is not None:
            union(i, first.setdefault(it.group, i))
    for a, b in pairs:
        union(a, b)
    return np.array([find(i) for i in range(len(items))], dtype=np.int64)


@dataclass
class Split:
    """Train / validation / test parts of a data set, with the item indices of each."""

    train: Dataset
    val: Dataset
    test: Dataset
    indices: dict[str, np.ndarray]


def split(dataset: Dataset, *, val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 0) -> Split:
    """Stratified, grouped split into train, validation and test parts.

    Every label is divided in the given fractions, and all images of a group (manifest ``group``,
    duplicate pairs) land in the same part.

    Groups are assigned whole, so a part's share of a label can differ from the target by up to the
    largest group size; a group with mixed labels is placed by its most common label. Same ``seed``,
    same split.
    """
    for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not (0.0 <= f < 1.0):
            raise InputError(name, f, "a fraction in [0, 1)")
    if val_fraction + test_fraction >= 1.0:
        raise InputError("val_fraction + test_fraction", val_fraction + test_fraction, "less than 1")
    rng = np.random.default_rng(seed)
    gid = dataset.groups()
    members: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(gid):
        members[int(g)].append(i)
    by_label: dict[str, list[int]] = defaultdict(list)
    for g, idx in members.items():
        lab = Counter(dataset.items[i].label for i in idx).most_common(1)[0][0]
        by_label[lab].append(g)
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for lab in sorted(by_label):
        groups = by_label[lab]
        order = rng.permutation(len(groups))
        n = sum(len(members[g]) for g in groups)
        want = {"test": round(n * test_fraction), "val": round(n * val_fraction)}
        have = {"test": 0, "val": 0}
        for k in order:
            g = groups[k]
            size = len(members[g])
            # Fill test, then val, while the group does not overshoot the target by more than half
            # its size; everything else trains.
            dest = next((d for d in ("test", "val") if have[d] + size / 2 <= want[d]), "train")
            if dest != "train":
                have[dest] += size
            parts[dest].extend(members[g])
    idx = {k: np.array(sorted(v), dtype=np.int64) for k, v in parts.items()}
    return Split(train=dataset.subset(idx["train"]), val=dataset.subset(idx["val"]),
                 test=dataset.subset(idx["test"]), indices=idx)


# ----------------------------------------------------------------------------------------------------------
# scale


def to_canonical(rgb: np.ndarray, *, um_per_px: float, canonical_um_per_px: float, size: int) -> np.ndarray:
    """Resample an image to a canonical pixel size and centre-crop/pad it to ``size x size``.

    Parameters
    ----------
    rgb
        ``H x W x 3`` uint8 or float image; not modified.
    um_per_px
        The image's pixel size.
    canonical_um_per_px
        The model's pixel size.
    size
        Output side in pixels.

    Returns
    -------
    ndarray
        ``size x size x 3``, same dtype as ``rgb`` (float input gives float32). Padding uses the median
        colour of the image border (the smear background), not black, so a model never sees a frame.

    Notes
    -----
    Downsampling averages over each output pixel's area (what a camera pixel does); upsampling is
    bilinear (:mod:`hemotwin.twin.resample`).
    The output grid is rounded to whole pixels, so the physical scale is kept to within half a pixel
    over the image.
    """
    from hemotwin.twin.resample import resize_hwc

    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3:
        raise InputError("rgb", f"shape {a.shape}", "an H x W x 3 image")
    for name, v in (("um_per_px", um_per_px), ("canonical_um_per_px", canonical_um_per_px)):
        if not (isinstance(v, int | float | np.floating) and math.isfinite(v) and v > 0):
            raise InputError(name, v, "a positive pixel size in µm")
    if not (isinstance(size, int | np.integer) and size > 0):
        raise InputError("size", size, "a positive integer")
    scale = float(um_per_px) / float(canonical_um_per_px)
    h, w = a.shape[:2]
    out_h, out_w = max(1, round(h * scale)), max(1, round(w * scale))
    is_uint8 = a.dtype == np.uint8
    f = a.astype(np.float32) / 255.0 if is_uint8 else a.astype(np.float32)
    if (out_h, out_w) != (h, w):
        f = resize_hwc(f, (out_h, out_w))
    bg = border_colour(f)
    out = np.empty((size, size, 3), dtype=np.float32)
    out[:] = bg
    # Centre crop or pad, each axis independently.
    sy, dy, ny = centre(out_h, size)
    sx, dx, nx = centre(out_w, size)
    out[dy:dy + ny, dx:dx + nx] = f[sy:sy + ny, sx:sx + nx]
    if is_uint8:
        return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)
    return out


def border_colour(img: np.ndarray) -> np.ndarray:
    """Median colour of an ``H x W x C`` image's outer pixels (the smear background around a cell).

    What crops are padded with, so a model never sees a frame.
    """
    return np.median(np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]]), axis=0)


def centre(n_in: int, n_out: int) -> tuple[int, int, int]:
    """The centred crop (or pad) of ``n_in`` pixels into ``n_out`` along one axis.

    Returns
    -------
    tuple of int
        ``(source start, destination start, length)``.
    """
    if n_in >= n_out:
        return (n_in - n_out) // 2, 0, n_out
    return 0, (n_out - n_in) // 2, n_in


#: The ruler's quality bars (:func:`red_cell_ruler`). Fewer measured red cells than this and the median
#: is a guess: single PBC crops (3-7 whole red cells) read 0.073-0.121 µm/px for ~0.10, and the few
#: measurable cells of a crowded BCCD field (at most 9) are the odd ones out.
RULER_MIN_CELLS = 10
#: Largest robust CV (1.4826 x MAD / median) of the measured diameters. Normal red cells in a smear
#: vary by 5-8 % in diameter (twin fields measure 5-7 %, 10 PBC crops pooled 6-10 %); more means the
#: "cells" are a mixture (fragments, merged pairs, spherocytes, macrocytes) and the median says little.
RULER_MAX_CV = 0.12
#: Smallest fraction of red-cell outlines that are measurable discs (isolated round cells, or touching
#: cells whose free outline is a circle). Twin fields give 34-69 % and 10 PBC crops pooled 27-43 %;
#: BCCD fields pooled 10 at a time (crowded, crenated, blurred cells) 1-21 %, median 8 %, and a packed
#: twin monolayer under 10 %: there the few "discs" are chance shapes or merged blobs, and their size
#: is not the red cells' size.
RULER_MIN_ROUND_FRACTION = 0.25


def _ruler_levels(g: np.ndarray) -> tuple[float, float | None]:
    """Grey levels of clear glass and of red-cell bodies in a smoothed green channel.

    Glass is the brightest population (median of the pixels within 3 % of the 99th percentile; a
    packed field still shows it in the gaps between cells); red-cell bodies are the most common level
    well below glass. Histogram modes, not class means: a three-class Otsu split assumes much glass,
    and in a packed field it falls between single cells and their overlaps instead (every cell then
    read as the lens where two overlap).
    """
    from scipy import ndimage as ndi

    q99 = float(np.quantile(g, 0.99))
    glass = float(np.median(g[g >= 0.97 * q99]))
    dark = g[g < 0.92 * glass]
    if dark.size < 0.02 * g.size:
        return glass, None
    hist, edges = np.histogram(dark, bins=64, range=(0.0, glass))
    k = int(np.argmax(ndi.gaussian_filter1d(hist.astype(float), 1.0)))
    return glass, float(0.5 * (edges[k] + edges[k + 1]))


def _fit_circle(pts: np.ndarray) -> tuple[float, float, float, float, float]:
    """Least-squares circle through outline points ``(row, col)``: ``(cy, cx, r, rms, coverage)``.

    Algebraic (Kasa) fit, refitted once without points farther than 2.5 sigma (the cusp where two
    cells meet); ``coverage`` is the fraction of 10-degree sectors around the centre holding a point.
    """
    y, x = pts[:, 0].astype(float), pts[:, 1].astype(float)
    cy = cx = r = 0.0
    for _ in range(2):
        sol, *_ = np.linalg.lstsq(np.c_[x, y, np.ones_like(x)], x * x + y * y, rcond=None)
        cx, cy = sol[0] / 2.0, sol[1] / 2.0
        r = math.sqrt(max(sol[2] + cx * cx + cy * cy, 0.0))
        res = np.hypot(x - cx, y - cy) - r
        keep = np.abs(res) <= max(2.5 * float(np.std(res)), 1.0)
        if keep.all() or keep.sum() < 10:
            break
        x, y = x[keep], y[keep]
    res = np.hypot(x - cx, y - cy) - r
    sectors = np.floor((np.arctan2(y - cy, x - cx) + np.pi) / (2 * np.pi) * 36).astype(int) % 36
    return cy, cx, r, float(np.sqrt(np.mean(res**2))), np.unique(sectors).size / 36.0


def measure_red_cells(rgb: np.ndarray) -> dict[str, Any]:
    """Diameters (px) of the red cells of one image that are measurable discs, and what was not.

    Parameters
    ----------
    rgb
        ``H x W x 3`` bright-field image of a stained smear (a field or a cell crop).

    Returns
    -------
    dict
        ``diameters_px`` (one per measured cell), ``n_isolated`` (lone round cells among them),
        ``n_touching`` (cells in a clump measured by their free outline), ``n_candidates`` (red-cell
        outlines seen, measured or not: the denominator of the round fraction), ``rejected``
        (``{"border", "misshapen", "nucleated", "small"}`` counts) and ``reason`` (why nothing could
        be measured, else None).

    Notes
    -----
    Green channel (eosin and haemoglobin absorb there), lightly smoothed. Cells are the pixels darker
    than half-way between glass and red-cell bodies (:func:`_ruler_levels`; the half-maximum contour of
    a blurred edge lies on the true outline). Holes that never get as bright as glass are central
    pallor and are filled; bright holes are the glass between touching cells and stay open.

    A connected piece that is a lone disc (solidity >= 0.95 with its pallor filled, axis ratio >= 0.8,
    at most one hole, clear of the image border) is measured by its area-equivalent diameter. Clumps
    are split by a watershed on the distance transform, and each part is measured by the circle
    through its *free* outline (the pixels that face glass): the cut between cells shortens a part's
    area but not the arc of its own outline. A part counts when the circle fits (RMS <= 5 % of the
    radius + 0.3 px of pixel quantisation), the arc covers at least half of the circle and the circle
    lies inside the image; a blob of merged cells fits no circle and is left out. Pieces holding
    nuclear stain (darker than a red cell by the glass-to-cell contrast) are white cells.
    """
    from scipy import ndimage as ndi
    from skimage.measure import regionprops
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] < 3:
        raise InputError("rgb", f"shape {a.shape}", "an H x W x 3 image")
    g = a[..., 1].astype(np.float32)
    if a.dtype != np.uint8 and g.max() <= 1.0:
        g = g * 255.0
    rejected = {"border": 0, "misshapen": 0, "nucleated": 0, "small": 0}
    out: dict[str, Any] = {"diameters_px": [], "n_isolated": 0, "n_touching": 0, "n_candidates": 0,
                           "rejected": rejected, "reason": None}
    if min(g.shape) < 16 or float(g.std()) < 1.0:
        out["reason"] = "image too small or featureless"
        return out
    g = ndi.gaussian_filter(g, 1.0)  # JPEG blocks and camera noise would fray the outlines
    glass, body = _ruler_levels(g)
    if body is None or glass - body < 10.0:
        out["reason"] = "no red cells stand out from the glass"
        return out
    raw = ndi.binary_opening(g < 0.5 * (glass + body), iterations=2)
    holes, n_holes = ndi.label(ndi.binary_fill_holes(raw) & ~raw)
    fg = raw
    if n_holes:
        brightest = np.asarray(ndi.maximum(g, holes, np.arange(1, n_holes + 1)))
        pallor = np.r_[False, brightest < glass - 0.15 * (glass - body)]
        fg = raw | pallor[holes]
    nuclear = g < body - (glass - body)
    h, w = g.shape
    min_area = math.pi * 6.0**2  # a disc under 12 px across cannot be measured to a few per cent
    comp, _ = ndi.label(fg)
    clumped = np.zeros(int(comp.max()) + 1, dtype=bool)
    diam: list[float] = []
    for p in regionprops(comp):
        if p.area_filled < min_area:
            rejected["small"] += 1
            continue
        y0, x0, y1, x1 = p.bbox
        ratio = p.axis_minor_length / max(p.axis_major_length, 1e-6)
        if not (p.area_filled / p.area_convex >= 0.95 and ratio >= 0.8 and p.euler_number >= 0):
            clumped[p.label] = True
        elif y0 == 0 or x0 == 0 or y1 == h or x1 == w:
            rejected["border"] += 1  # cut by the frame: its size is unknown
        elif nuclear[p.coords[:, 0], p.coords[:, 1]].mean() > 0.05:
            rejected["nucleated"] += 1
        else:
            diam.append(math.sqrt(4.0 * p.area_filled / math.pi))
            out["n_isolated"] += 1
    if clumped.any():
        inside = clumped[comp]
        dist = ndi.distance_transform_edt(fg)
        markers, _ = ndi.label(h_maxima(dist, 2.0) & inside)
        parts = watershed(-dist, markers, mask=inside)
        free = fg & ~ndi.binary_erosion(fg, border_value=1)  # outline facing glass, not the frame
        for q in regionprops(parts):
            pts = q.coords[free[q.coords[:, 0], q.coords[:, 1]]]
            if len(pts) < 20 or q.area < min_area / 2:
                rejected["small"] += 1
                continue
            cy, cx, r, rms, coverage = _fit_circle(pts)
            if not (r >= 6.0 and cy >= r and cx >= r and cy + r <= h and cx + r <= w):
                rejected["border"] += 1
            elif nuclear[q.coords[:, 0], q.coords[:, 1]].mean() > 0.05:
                rejected["nucleated"] += 1
            elif coverage >= 0.5 and rms <= 0.05 * r + 0.3:
                diam.append(2.0 * r)
                out["n_touching"] += 1
            else:
                rejected["misshapen"] += 1
    out["diameters_px"] = [round(float(d), 2) for d in diam]
    out["n_candidates"] = len(diam) + rejected["misshapen"]
    if not diam:
        out["reason"] = "no whole red cell could be measured"
    return out


def red_cell_ruler(measurements: Sequence[dict[str, Any]], *, rbc_diameter_um: float = RBC_DIAMETER_UM,
                   min_cells: int = RULER_MIN_CELLS, max_cv: float = RULER_MAX_CV,
                   min_round_fraction: float = RULER_MIN_ROUND_FRACTION) -> tuple[float | None, dict[str, Any]]:
    """Pixel size from the red cells of one or more images of one scanner, or a refusal saying why.

    Parameters
    ----------
    measurements
        :func:`measure_red_cells` of each image (pooled: one scanner, one pixel size).
    rbc_diameter_um
        Assumed mean red-cell diameter (7.5 µm for normal blood; adjust for micro-/macrocytosis).
    min_cells, max_cv, min_round_fraction
        The quality bars (:data:`RULER_MIN_CELLS`, :data:`RULER_MAX_CV`,
        :data:`RULER_MIN_ROUND_FRACTION`).

    Returns
    -------
    um_per_px : float or None
        ``rbc_diameter_um / median diameter``, or None when the estimate is weak.
    details : dict
        ``n_cells``, ``n_images``, ``diameters_px`` (those used), ``median_diameter_px``,
        ``robust_cv``, ``round_fraction``, ``n_isolated``, ``n_touching``, ``quality`` (one line
        for a pixel-size source label) and ``reason`` (why None, else None).

    Notes
    -----
    Diameters outside 0.8-1.25x of the first median are dropped (white cells without visible nucleus
    and platelet clumps); the robust CV and the round fraction are computed after that.
    """
    d = np.array([x for m in measurements for x in m["diameters_px"]], dtype=float)
    n_cand = sum(int(m["n_candidates"]) for m in measurements)
    n_img = len(measurements)
    if d.size:
        m0 = float(np.median(d))
        d = d[(d > 0.8 * m0) & (d < 1.25 * m0)]
    med = float(np.median(d)) if d.size else None
    cv = 1.4826 * float(np.median(np.abs(d - med))) / med if med else None
    frac = d.size / n_cand if n_cand else 0.0
    details: dict[str, Any] = {
        "n_cells": int(d.size), "n_images": n_img, "diameters_px": [round(float(x), 2) for x in d],
        "median_diameter_px": med, "robust_cv": cv, "round_fraction": frac,
        "n_isolated": sum(int(m["n_isolated"]) for m in measurements),
        "n_touching": sum(int(m["n_touching"]) for m in measurements), "quality": None, "reason": None}
    where = f"in {n_img} images" if n_img > 1 else "in the image"
    if d.size < min_cells:
        why = "; ".join(sorted({m["reason"] for m in measurements if m.get("reason")}))
        details["reason"] = (f"{d.size} measurable red cells {where} (need {min_cells})" + (f": {why}" if why else ""))
        return None, details
    shape = (f"{frac:.0%} of {n_cand} red-cell outlines are measurable discs, {details['n_isolated']} "
             f"isolated, {details['n_touching']} touching")
    details["quality"] = (f"{d.size} red cells {where}, robust CV {cv:.0%}; {shape}; assuming "
                          f"{rbc_diameter_um:g} µm red cells")
    if cv is not None and cv > max_cv:
        details["reason"] = (f"red-cell diameters too variable (robust CV {cv:.0%} over {d.size} cells, at most "
                             f"{max_cv:.0%}): a mixture of cells, fragments and merged pairs is no ruler")
        return None, details
    if frac < min_round_fraction:
        details["reason"] = (f"only {shape} (need {min_round_fraction:.0%}): crowded, overlapping or misshapen "
                             "red cells make no ruler")
        return None, details
    return rbc_diameter_um / float(med), details


def estimate_um_per_px(rgb: np.ndarray, *, rbc_diameter_um: float = RBC_DIAMETER_UM,
                       min_cells: int = RULER_MIN_CELLS) -> tuple[float | None, dict[str, Any]]:
    """The red-cell ruler on one image: pixel size from the median diameter of its red cells.

    Parameters
    ----------
    rgb
        ``H x W x 3`` bright-field image of a stained smear (a cell crop or a field).
    rbc_diameter_um
        Assumed mean red-cell diameter (7.5 µm for normal blood; adjust for micro-/macrocytosis).
    min_cells
        Fewer measurable red cells than this gives None.

    Returns
    -------
    um_per_px : float or None
        ``rbc_diameter_um / median diameter in px``, or None when the estimate is weak: too few
        measurable red cells, too variable diameters, or too few of the red cells are measurable discs
        (:func:`red_cell_ruler`).
    details : dict
        Those of :func:`red_cell_ruler` (``n_cells``, ``diameters_px``, ``median_diameter_px``,
        ``robust_cv``, ``round_fraction``, ``quality``, ``reason``) and ``rejected`` (what
        :func:`measure_red_cells` left out).

    Notes
    -----
    Method in :func:`measure_red_cells`. The answer is only as good as the 7.5 µm assumption: red
    cells in anaemias differ by 10-20 %. Several fields of one scanner pool into one, better
    estimate (:func:`red_cell_ruler` over their measurements).

    Measured (spot checks, one twin field of 60-200 µm per seed, 3 seeds): twin fields of
    normal density, error -0.1 % (analyzer-100x, 0.1 µm/px), +3.1 % (wsi-40x), +3.2 % (wsi-20x;
    the twin's red cells are 7.6 µm, its blur widens them at low resolution); packed twin monolayers
    (300 cells per 100 x 100 µm) refuse. PBC crops (CellaVision, ~0.1 µm/px): 10 crops pooled
    0.098-0.109 µm/px; single crops (3-7 whole red cells) refuse. All 364 BCCD fields refuse one by
    one (at most 9 measurable red cells each), and so do all 37 runs of 10 consecutive fields pooled
    (1-21 %, median 8 %, of their crowded, crenated red cells are measurable discs); the cells
    measured anyway give 0.074-0.088 µm/px against 0.072 from their loose VOC boxes. Tight white-cell
    crops refuse.
    """
    m = measure_red_cells(rgb)
    um, details = red_cell_ruler([m], rbc_diameter_um=rbc_diameter_um, min_cells=min_cells)
    details["rejected"] = m["rejected"]
    return um, details


def estimate_dataset_um_per_px(dataset: Dataset, *, sample: int = 50, seed: int = 0,
                               rbc_diameter_um: float = RBC_DIAMETER_UM, overwrite: bool = False,
                               min_images: int = 5) -> tuple[Dataset, dict[str, Any]]:
    """Fill unknown pixel sizes with one red-cell estimate for the whole data set.

    One scanner, one pixel size: the red cells of a random sample of images are pooled
    (:func:`red_cell_ruler`), far more precise than any single crop (which rarely holds enough whole
    red cells: single PBC crops are off by up to 20-30 %).

    Parameters
    ----------
    dataset
        Not modified.
    sample
        Images to measure (at most); those with known pixel size are not measured unless ``overwrite``.
    overwrite
        Replace known pixel sizes too.
    min_images
        Fewer images contributing red cells than this: no estimate (``details["reason"]`` says why),
        so that one odd image cannot set the pixel size of all. Tight white-cell crops (BCCD) hold
        almost no whole red cells and give none.

    Returns
    -------
    dataset : Dataset
        A copy whose items with unknown (or, with ``overwrite``, all) pixel size carry the estimate,
        source ``"red cells (<quality>)"`` (:func:`red_cell_ruler`'s one-line quality); unchanged when
        the estimate is weak.
    details : dict
        ``um_per_px``, ``n_images`` (contributing red cells), ``n_cells``, ``robust_cv``,
        ``round_fraction``, ``quality``, ``failures``, ``reason``.
    """
    todo = [i for i, it in enumerate(dataset.items) if overwrite or it.um_per_px is None]
    rng = np.random.default_rng(seed)
    pick = sorted(rng.choice(todo, size=min(sample, len(todo)), replace=False).tolist()) if todo else []
    measured: list[dict[str, Any]] = []
    failures: list[tuple[str, str]] = []
    for i in pick:
        try:
            measured.append(measure_red_cells(dataset.read(i)))
        except InputError as exc:
            failures.append((str(dataset.items[i].path), str(exc)))
    est, det = red_cell_ruler(measured, rbc_diameter_um=rbc_diameter_um)
    contributing = sum(bool(m["diameters_px"]) for m in measured)
    details: dict[str, Any] = {"um_per_px": None, "n_images": contributing, "n_cells": det["n_cells"],
                               "robust_cv": det["robust_cv"], "round_fraction": det["round_fraction"],
                               "quality": det["quality"], "failures": failures, "reason": det["reason"]}
    if est is not None and contributing < min_images:
        est = None
        details["reason"] = f"red cells in {contributing} of {len(pick)} images (need {min_images})"
    if est is None:
        return dataset, details
    details["um_per_px"] = est
    tag = pixel_size.label(pixel_size.RED_CELLS, det["quality"])
    items = [replace(it, um_per_px=est, um_per_px_source=tag) if i in set(todo) else it
             for i, it in enumerate(dataset.items)]
    return dataset.with_items(items), details
