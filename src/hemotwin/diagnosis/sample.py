"""Sample input: a folder of field images, one field image, or a large TIFF/OME-TIFF tiled on the fly.

What counts as the sample
    * a **folder**: its image files (PNG, JPEG, TIFF, ... at the top level), or, when the top level
      holds none, those of its ``fields/`` subfolder (the layout ``hemotwin simulate sample`` writes;
      its ``masks/`` are never read). Other files are ignored; unreadable images are skipped and
      listed.
    * a **single image**: one field, or, above :data:`LARGE_PIXELS` (or any tiled TIFF page larger
      than a field), a large scan cut into overlapping tiles on the fly. Tiles overlap by
      :data:`TILE_OVERLAP_UM` (more than the largest white cell), and a cell belongs to the tile whose
      *core* (the tile minus half the overlap on inner sides) holds its centroid, so no cell is counted
      twice and none is cut.

Pixel size, per field, by the one rule of :mod:`hemotwin.io.pixel_size`
(:func:`~hemotwin.io.pixel_size.resolve`; a sample has no manifest): the file's metadata
(:func:`hemotwin.io.images.read_image`), then the ``um_per_px`` given for files that carry none, then
the red-cell ruler (:func:`hemotwin.vision.datasets.red_cell_ruler`). For a folder the ruler pools the
red cells of up to :data:`ESTIMATE_FIELDS` fields into one estimate, applied to every field without
metadata (one scanner, one pixel size); for a large scan, the estimate of its central region. A weak
estimate (too few measurable red cells, too variable, too few round separate discs) is refused: the
fields are then skipped, each naming its file and asking for the pixel size. The source label (``"metadata (<tag>)"``,
``"option"``, ``"red cells (<detail>)"``) is recorded per field and reported. Fields of different
pixel sizes are allowed (each is processed at its own); the report lists them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hemotwin.errors import HemotwinError, InputError
from hemotwin.io.images import IMAGE_SUFFIXES, ImageInfo, read_image, tiff_pixel_size
from hemotwin.io.pixel_size import check_um_per_px, resolve

__all__ = ["ESTIMATE_FIELDS", "LARGE_PIXELS", "TILE_OVERLAP_UM", "Field", "FieldSource", "SampleSource",
           "open_sample"]

#: A single image with more pixels than this is tiled (a camera field is 1-5 MP; a scan is 100s).
LARGE_PIXELS = 16_000_000
#: Tile side (µm) and overlap (µm, more than the largest white cell: 30 µm) of a tiled scan.
TILE_UM = 160.0
TILE_OVERLAP_UM = 32.0
#: Fields measured with the red-cell ruler when no pixel size is known.
ESTIMATE_FIELDS = 10


@dataclass(frozen=True)
class FieldSource:
    """One field of the sample, not yet read.

    Attributes
    ----------
    name
        File name relative to the sample, with ``[r0:r1, c0:c1]`` for a tile of a large image.
    path
        The image file.
    region
        ``(row0, col0, row1, col1)`` of a tile in the large image, or None for a whole file.
    core
        Tile-relative ``(row0, col0, row1, col1)`` where a cell's centroid must lie to be counted in
        this tile (None: the whole field).
    """

    name: str
    path: Path
    region: tuple[int, int, int, int] | None = None
    core: tuple[int, int, int, int] | None = None


@dataclass
class Field:
    """A field read into memory."""

    source: FieldSource
    rgb: np.ndarray
    um_per_px: float
    um_source: str
    notes: list[str] = field(default_factory=list)


@dataclass
class SampleSource:
    """The fields of a sample and how to read them.

    Attributes
    ----------
    path
        What the user gave.
    fields
        The fields, in order.
    skipped
        ``{"field", "reason"}`` for inputs not used at all (e.g. unreadable before any processing).
    notes
        What the reader decided (tiling, subfolder, pixel-size estimate).
    um_per_px_option
        The pixel size given for fields whose files carry none (``um_per_px`` of :func:`open_sample`),
        or None.
    um_estimate
        Red-cell estimate applied to fields without metadata (None until needed/possible).
    """

    path: Path
    fields: list[FieldSource]
    skipped: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    um_per_px_option: float | None = None
    um_estimate: float | None = None
    um_estimate_details: str | None = None
    _large: Any = None  # memmapped large image, when tiled

    def read(self, src: FieldSource) -> Field:
        """Read one field as ``H x W x 3`` uint8 with its pixel size.

        Raises
        ------
        InputError
            Unreadable file, or no pixel size from metadata, ``um_per_px`` or the red-cell ruler.
        """
        if src.region is not None:
            r0, c0, r1, c1 = src.region
            rgb = _to_uint8_rgb(np.asarray(self._large["array"][r0:r1, c0:c1]))
            um, um_src = self._large["um_per_px"], self._large["um_source"]
            return Field(src, rgb, um, um_src)
        rgb, info = read_image(src.path)
        um, um_src = self._pixel_size(info)
        return Field(src, rgb, um, um_src, notes=list(info.notes))

    def _pixel_size(self, info: ImageInfo) -> tuple[float, str]:
        return resolve(where=str(info.path), metadata=info.um_per_px, metadata_source=info.um_per_px_source,
                       option=self.um_per_px_option, estimate=self._red_cells)

    def _red_cells(self) -> tuple[float | None, str]:
        """The sample's red-cell estimate, measured once (for :func:`~hemotwin.io.pixel_size.resolve`)."""
        if self.um_estimate_details is None:  # not tried yet (a refusal is not retried for every field)
            self._estimate()
        return self.um_estimate, str(self.um_estimate_details)

    def prime_pixel_size(self) -> None:
        """Run the red-cell estimate now if any field lacks metadata (before forking workers)."""
        if self.um_estimate_details is not None or self.um_per_px_option is not None or self._large is not None:
            return
        # The estimate is deterministic (same fields, same order), so workers that run it again get
        # the same value; priming only saves that work. Probe one file: a sample whose first field
        # carries its pixel size almost always has it on every field.
        try:
            _, info = read_image(self.fields[0].path)
        except HemotwinError:
            info = None
        if info is None or info.um_per_px is None:
            self._estimate()

    def _estimate(self) -> None:
        """Red-cell ruler over up to ESTIMATE_FIELDS fields lacking metadata, their red cells pooled.

        One scanner, one pixel size: the fields' measured red cells go into one estimate, whose quality
        (:func:`~hemotwin.vision.datasets.red_cell_ruler`) decides whether it is given at all.
        """
        from hemotwin.vision.datasets import measure_red_cells, red_cell_ruler

        measured: list[dict[str, Any]] = []
        for checked, src in enumerate(self.fields):
            if len(measured) >= ESTIMATE_FIELDS or checked >= 3 * ESTIMATE_FIELDS or src.region is not None:
                break
            try:
                rgb, info = read_image(src.path)
            except HemotwinError:
                continue
            if info.um_per_px is None:
                measured.append(measure_red_cells(rgb))
        um, det = red_cell_ruler(measured) if measured else (None, {"reason": "no field without metadata was read"})
        if um is not None:
            self.um_estimate = float(um)
            self.um_estimate_details = f"{um:.4g} µm/px from {det['quality']}"
            self.notes.append(f"pixel size estimated from red cells: {self.um_estimate_details}")
        else:
            self.um_estimate_details = str(det["reason"])
            self.notes.append(f"no pixel size from red cells: {det['reason']}")


def _to_uint8_rgb(a: np.ndarray) -> np.ndarray:
    """A tile of a large image as uint8 RGB (same conversions as read_image, simplified)."""
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.shape[-1] == 4:
        a = a[..., :3]
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=2)
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if a.dtype == np.uint16:
        return (a.astype(np.float32) * (255.0 / 65535.0) + 0.5).astype(np.uint8)
    f = a.astype(np.float32)
    if f.max() <= 1.0:
        f = f * 255.0
    return np.clip(f + 0.5, 0, 255).astype(np.uint8)


def _image_files(folder: Path) -> tuple[list[Path], list[str]]:
    notes = []
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files and (folder / "fields").is_dir():
        files = sorted(p for p in (folder / "fields").iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        notes.append("fields read from the fields/ subfolder")
    return files, notes


def _large_tiff_shape(path: Path, *, force: bool = False) -> tuple[int, int] | None:
    """(H, W) of a TIFF's first image when it should be tiled (or ``force``), else None."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            page = tf.pages[0]
            h, w = int(page.imagelength), int(page.imagewidth)
            tiled = bool(page.is_tiled)
    except Exception:  # not a TIFF tifffile can parse: read_image reports it later
        return None
    if force or h * w > LARGE_PIXELS or (tiled and h * w > 4_000_000):
        return h, w
    return None


def _open_large(path: Path, shape: tuple[int, int], um_option: float | None) -> dict[str, Any]:
    """Memory-map the first image of a large TIFF (decoded once to a temporary file if compressed)."""
    import tifffile

    meta_um, meta_source = tiff_pixel_size(path)
    try:
        with tifffile.TiffFile(path) as tf:
            series = tf.series[0]
            arr = series.levels[0].asarray(out="memmap") if series.levels else series.asarray(out="memmap")
            axes = series.levels[0].axes if series.levels else series.axes
    except Exception as exc:
        raise InputError(str(path), f"unreadable large TIFF ({type(exc).__name__}: {exc})",
                         "a complete TIFF/OME-TIFF (a corrupt tile makes tifffile refuse the image)") from exc
    # Bring to Y X [S]: drop leading singleton axes; move a leading channel axis last.
    while arr.ndim > 3 and arr.shape[0] == 1:
        arr, axes = arr[0], axes[1:]
    if arr.ndim == 3 and axes[0] in "CS" and arr.shape[0] in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)

    def central_red_cells() -> tuple[float | None, str]:
        """The red-cell ruler on the central region of the scan (at most 1500 px square)."""
        from hemotwin.vision.datasets import estimate_um_per_px

        h, w = arr.shape[:2]
        side = min(h, w, 1500)
        est, det = estimate_um_per_px(_to_uint8_rgb(np.asarray(arr[(h - side) // 2:(h + side) // 2,
                                                                 (w - side) // 2:(w + side) // 2])))
        if est is None:
            return None, f"central region: {det['reason']}"
        return est, f"central region: {det['quality']}"

    um, src = resolve(where=str(path), metadata=meta_um, metadata_source=meta_source, option=um_option,
                      estimate=central_red_cells)
    return {"array": arr, "um_per_px": um, "um_source": src}


def _tiles(h: int, w: int, um: float) -> Iterator[tuple[tuple[int, int, int, int], tuple[int, int, int, int]]]:
    """(region, core) pairs covering an ``h x w`` image with overlapping tiles.

    The cores partition the image: neighbouring cores meet in the middle of the two tiles' overlap
    (at least :data:`TILE_OVERLAP_UM` wide), so a cell whose centroid lies in a core is wholly inside
    that tile and no centroid belongs to two cores.
    """
    t = max(64, round(TILE_UM / um))
    o = max(8, math.ceil(TILE_OVERLAP_UM / um))
    step = max(1, t - o)

    def axis(n: int) -> list[tuple[int, int, int, int]]:
        """(start, end, core_start, core_end) along one axis, absolute pixels."""
        if n <= t:
            return [(0, n, 0, n)]
        starts = [*range(0, n - t, step), n - t]
        ends = [min(n, s + t) for s in starts]
        cuts = [0] + [(starts[k + 1] + ends[k]) // 2 for k in range(len(starts) - 1)] + [n]
        return [(starts[k], ends[k], cuts[k], cuts[k + 1]) for k in range(len(starts))]

    for r0, r1, cr0, cr1 in axis(h):
        for c0, c1, cc0, cc1 in axis(w):
            yield (r0, c0, r1, c1), (cr0 - r0, cc0 - c0, cr1 - r0, cc1 - c0)


def open_sample(path: str | Path, *, um_per_px: float | None = None, tile: bool | None = None) -> SampleSource:
    """Find the fields of a sample (nothing is decoded yet except a large TIFF's layout).

    Parameters
    ----------
    path
        Folder of field images, one field image, or a large TIFF/OME-TIFF.
    um_per_px
        Pixel size for fields whose files carry none (checked by
        :func:`~hemotwin.io.pixel_size.check_um_per_px`).
    tile
        For a single TIFF: None tiles it when large (> :data:`LARGE_PIXELS`, or a tiled TIFF page over
        4 MP), True always, False never.

    Raises
    ------
    InputError
        Missing path, a folder without image files, or a bad ``um_per_px``; for a large TIFF, no pixel
        size from any source.
    """
    p = Path(path)
    um_per_px = check_um_per_px(um_per_px)
    if not p.exists():
        raise InputError(str(p), "no such file or folder", "an existing folder of field images or an image file")
    notes: list[str] = []
    if p.is_dir():
        files, notes = _image_files(p)
        if not files:
            others = sorted(q.name for q in p.iterdir())[:5]
            holds = f"no image files (e.g. {', '.join(others)})" if others else "nothing: the folder is empty"
            raise InputError(str(p), "no image files",
                             f"a folder holding field images (PNG, JPEG, TIFF ...); it holds {holds}")
        srcs = [FieldSource(name=str(f.relative_to(p)), path=f) for f in files]
        return SampleSource(path=p, fields=srcs, notes=notes, um_per_px_option=um_per_px)
    shape = _large_tiff_shape(p, force=bool(tile)) if p.suffix.lower() in (".tif", ".tiff") and tile is not False \
        else None
    if shape is None:
        return SampleSource(path=p, fields=[FieldSource(name=p.name, path=p)], um_per_px_option=um_per_px)
    large = _open_large(p, shape, um_per_px)
    h, w = large["array"].shape[:2]
    srcs = [FieldSource(name=f"{p.name}[{r0}:{r1}, {c0}:{c1}]", path=p, region=(r0, c0, r1, c1), core=core)
            for (r0, c0, r1, c1), core in _tiles(h, w, large["um_per_px"])]
    notes.append(f"large image {w} x {h} px tiled on the fly into {len(srcs)} overlapping tiles of about "
                 f"{TILE_UM:g} µm (overlap {TILE_OVERLAP_UM:g} µm; each cell counted in one tile only); "
                 f"pixel size {large['um_per_px']:.4g} µm/px from {large['um_source']}")
    return SampleSource(path=p, fields=srcs, notes=notes, um_per_px_option=um_per_px, _large=large)
