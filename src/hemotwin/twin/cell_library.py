"""Cell library: real white cells unmixed into absorber maps, drawn wherever a procedural cell is.

A library is built once from a folder of labelled single-cell images (PBC-style crops): each image
is unmixed into absorber amounts with a :class:`~hemotwin.twin.reimage.StainBasis` fitted on the
folder, the white cell is segmented (:func:`hemotwin.twin.morphometry.segment_cell`), and its
amounts (zero outside the cell mask) and its cell / nucleus / granule masks are kept, cropped to
the cell's bounding box plus a margin, at the images' pixel size.

On disk (folder ``LIB/``):

``library.json``
    schema, version, content id, pixel size, the basis, entries (code, source path and SHA-256,
    crop box, measured morphology), cells per class, the images skipped and why, provenance.
``cells_<CODE>.npz``
    one compressed file per class: ``<n>_amounts`` (3 x h x w float16, the unmixed components
    purple, azure_b, eosin; haemoglobin is the basis' ``hb_per_eosin`` x eosin) and ``<n>_masks``
    (h x w uint8 bit flags: 1 cell, 2 nucleus, 4 granule).

A drawn library cell is an ordinary ``ObjectRecord`` (kind ``"wbc"``, label = code) whose
:class:`~hemotwin.twin.specimen.morphology.WBCMorphology` carries a
:class:`~hemotwin.twin.specimen.morphology.LibraryCellRef`; the rasteriser resolves the reference
through :func:`open_library` (one load per library and process) and draws the stored maps.

>>> summary = build_library("pbc/", "lib/", um_per_px=0.1)          # doctest: +SKIP
>>> lib = open_library("lib/")                                      # doctest: +SKIP
>>> lib.draw("EOS", np.random.default_rng(0)).library_cell.entry    # doctest: +SKIP
'EOS/17'
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hemotwin.errors import InputError
from hemotwin.taxonomy import CLASS_CODES, members, resolve_label
from hemotwin.twin.morphometry import bounding_box, segment_cell
from hemotwin.twin.reimage import UNMIXED, StainBasis
from hemotwin.twin.specimen.maps import ABSORBERS
from hemotwin.twin.specimen.morphology import (
    Chromatin,
    CytoplasmStain,
    LibraryCellRef,
    NucleusShape,
    WBCMorphology,
)

__all__ = [
    "LIBRARY_SCHEMA",
    "LIBRARY_VERSION",
    "NORMAL_BLOOD_GROUPS",
    "CellLibrary",
    "LibraryCellRef",
    "LibraryEntry",
    "build_library",
    "open_library",
    "resolve_library_cell",
]

LIBRARY_SCHEMA = "hemotwin.cell_library"
#: Version of the on-disk layout; a library of another version is refused (rebuild it).
LIBRARY_VERSION = 1
INDEX_FILE = "library.json"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
#: Group labels that name one code in normal blood (PBC): its lymphocytes are typical ones. Groups
#: with a single member (eosinophil, basophil ...) resolve without this table.
NORMAL_BLOOD_GROUPS: dict[str, str] = {"lymphocyte": "LYT"}
_CELL, _NUCLEUS, _GRANULE = 1, 2, 4

Progress = Callable[[int, int], None]


# ---------------------------------------------------------------------------------------------
# entries
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LibraryEntry:
    """One real white cell of a library.

    Attributes
    ----------
    id
        ``"<CODE>/<n>"``.
    code
        Class code.
    source, sha256
        Source image path (as listed at build time) and its SHA-256.
    um_per_px
        Pixel size of the maps.
    absorbers
        ``K x h x w`` float32 in :data:`~hemotwin.twin.specimen.maps.ABSORBERS` order, zero
        outside the cell mask.
    cell, nucleus, granules
        ``h x w`` bool masks (nucleus and granules lie inside the cell).
    center_px
        ``(y, x)`` centroid of the cell mask in array index units (pixel ``i``'s centre at ``i``).
    origin_px
        ``(row, col)`` of the maps' first pixel in the source image.
    """

    id: str
    code: str
    source: str
    sha256: str
    um_per_px: float
    absorbers: np.ndarray
    cell: np.ndarray
    nucleus: np.ndarray
    granules: np.ndarray
    center_px: tuple[float, float]
    origin_px: tuple[int, int]


def _moments(mask: np.ndarray, um: float) -> tuple[float, float, float, float, float]:
    """Centroid (y, x) in µm, and semi-axes (major, minor) and angle (deg) of the moment ellipse."""
    ys, xs = np.nonzero(mask)
    yc, xc = (ys.mean() + 0.5) * um, (xs.mean() + 0.5) * um
    cov = np.cov(np.stack([ys, xs]).astype(np.float64) * um) if ys.size > 2 else np.eye(2) * um * um
    cov = cov + np.eye(2) * (um * um / 12.0)  # a pixel's own extent
    evals, evecs = np.linalg.eigh(cov)
    minor, major = 2.0 * np.sqrt(np.maximum(evals, 1e-12))  # uniform ellipse: var = r^2 / 4
    vy, vx = evecs[:, 1]
    # Angle of the major axis in the drawing's convention: local x rotated by angle -> (sin, cos).
    angle = math.degrees(math.atan2(vy, vx))
    return float(yc), float(xc), float(major), float(minor), angle


def _measure(amounts: np.ndarray, cell: np.ndarray, nucleus: np.ndarray, um: float) -> dict[str, Any]:
    """The procedural summary of a real cell (what :class:`WBCMorphology` fields hold)."""
    yc, xc, major, minor, angle = _moments(cell, um)
    area = float(cell.sum()) * um * um
    ys, xs = np.nonzero(cell)
    radius = float(np.sqrt(((ys + 0.5) * um - yc) ** 2 + ((xs + 0.5) * um - xc) ** 2).max()) + um * 0.75
    out: dict[str, Any] = {
        "center_um": [yc, xc], "diameter_um": 2.0 * math.sqrt(area / math.pi),
        "elongation": float(np.clip(major / max(minor, 1e-6), 1.0, 3.0)), "angle_deg": angle,
        "radius_um": radius, "nc_ratio": float(nucleus.sum() / max(cell.sum(), 1)),
    }
    cyto = cell & ~nucleus
    out["cytoplasm"] = {n: float(amounts[j][cyto].mean()) if cyto.any() else 0.0 for j, n in enumerate(UNMIXED)}
    if nucleus.sum() >= 3:
        ny, nx, nmaj, nmin, nang = _moments(nucleus, um)
        p = amounts[UNMIXED.index("purple")][nucleus]
        out["nucleus"] = {
            "center_um": [ny - yc, nx - xc], "radii_um": [nmaj, nmin], "angle_deg": nang,
            "density": float(p.mean()), "contrast": float(np.clip(np.std(np.log(p + 0.05)), 0.0, 2.0)),
            "azure_b": float(amounts[UNMIXED.index("azure_b")][nucleus].mean()),
            "eosin": float(amounts[UNMIXED.index("eosin")][nucleus].mean()),
        }
    else:  # no nucleus found (smudge-like or pale): a token nucleus keeps the record valid
        out["nucleus"] = {"center_um": [0.0, 0.0], "radii_um": [um, um], "angle_deg": 0.0, "density": 0.0,
                          "contrast": 0.0, "azure_b": 0.0, "eosin": 0.0}
    return out


def _morphology(meta: dict[str, Any], ref: LibraryCellRef) -> WBCMorphology:
    """A :class:`WBCMorphology` of a library entry: measured summary + the reference that draws it."""
    m = meta["measured"]
    n = m["nucleus"]
    # The record's frame is centred on the cell centroid, as the procedural frame is.
    ny, nx = n["center_um"]
    if ref.flip:
        nx = -nx
    # Mirroring local x turns an axis at angle a (direction (sin a, cos a)) to 180 - a.
    ang = 180.0 - n["angle_deg"] if ref.flip else n["angle_deg"]
    nmaj, nmin = n["radii_um"]
    return WBCMorphology(
        code=meta["code"], diameter_um=float(np.clip(m["diameter_um"], 1e-3, 60.0)),
        elongation=m["elongation"],
        nucleus=NucleusShape(kind="oval" if nmaj > 1.1 * nmin else "round", center_um=(ny, nx), angle_deg=ang,
                             radii_um=(nmin, nmaj)),
        nc_ratio=float(np.clip(m["nc_ratio"], 0.0, 1.0)),
        chromatin=Chromatin(density=max(n["density"], 0.0), contrast=n["contrast"], scale_um=1.0,
                            azure_b=max(n["azure_b"], 0.0), eosin=max(n["eosin"], 0.0)),
        cytoplasm=CytoplasmStain(**{k: max(v, 0.0) for k, v in m["cytoplasm"].items()}, texture_contrast=0.0),
        texture_seed=0, library_cell=ref,
    )


# ---------------------------------------------------------------------------------------------
# the library object and its registry
# ---------------------------------------------------------------------------------------------
class CellLibrary:
    """A built library, opened from its folder (arrays are read per class on first use).

    Use :func:`open_library` (cached per process) rather than the constructor.

    Attributes
    ----------
    path
        The library folder (resolved).
    library_id
        Content id (entries' sources and the basis).
    um_per_px
        Pixel size of the stored maps.
    failures
        Images skipped at build time, ``{"path", "error"}``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).resolve()
        index_file = self.path / INDEX_FILE
        if not index_file.is_file():
            raise InputError("library", str(path), f"a cell library folder with {INDEX_FILE} "
                             "(built by hemotwin library build)")
        try:
            index = json.loads(index_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError("library", str(index_file), f"a readable {INDEX_FILE} ({exc})") from exc
        got = (index.get("schema"), index.get("version")) if isinstance(index, dict) else (None, None)
        if got != (LIBRARY_SCHEMA, LIBRARY_VERSION):
            raise InputError("library", f"{index_file}: schema {got[0]!r} version {got[1]!r}",
                             f"schema {LIBRARY_SCHEMA!r} version {LIBRARY_VERSION} (rebuild the library with this "
                             "hemotwin version)")
        self._index = index
        self.library_id: str = str(index["library_id"])
        self.um_per_px = float(index["um_per_px"])
        self.hb_per_eosin = float(index["basis"]["hb_per_eosin"])
        self.failures: list[dict[str, str]] = list(index.get("failures", []))
        self._meta = {e["id"]: e for e in index["entries"]}
        self._by_code: dict[str, list[str]] = {}
        for e in index["entries"]:
            self._by_code.setdefault(e["code"], []).append(e["id"])
        self._cache: dict[str, LibraryEntry] = {}
        self.stamp = _stamp(index_file)

    def __repr__(self) -> str:
        counts = ", ".join(f"{c}={self.count(c)}" for c in self.codes)
        return f"CellLibrary({str(self.path)!r}, {counts})"

    @property
    def codes(self) -> tuple[str, ...]:
        """Class codes with at least one cell, in the taxonomy's order."""
        return tuple(c for c in CLASS_CODES if self._by_code.get(c))

    @property
    def basis(self) -> StainBasis:
        """The stain basis the cells were unmixed with."""
        return StainBasis.from_dict(self._index["basis"])

    def count(self, code: str) -> int:
        """Number of cells of class ``code`` (0 for a class the library lacks)."""
        return len(self._by_code.get(code, ()))

    def entry_ids(self, code: str) -> tuple[str, ...]:
        """Entry ids of class ``code``."""
        return tuple(self._by_code.get(code, ()))

    def metadata(self, entry_id: str) -> dict[str, Any]:
        """The index record of an entry (source, SHA-256, crop box, measured morphology)."""
        if entry_id not in self._meta:
            raise InputError("entry", entry_id, f"an entry id of the library {self.path}")
        return self._meta[entry_id]

    def entry(self, entry_id: str) -> LibraryEntry:
        """The stored maps and masks of an entry (read once, then kept)."""
        meta = self.metadata(entry_id)
        if entry_id not in self._cache:
            self._load_class(meta["code"])
        return self._cache[entry_id]

    def _load_class(self, code: str) -> None:
        file = self.path / f"cells_{code}.npz"
        try:
            with np.load(file) as z:
                for eid in self._by_code[code]:
                    meta = self._meta[eid]
                    key = eid.split("/")[1]
                    comp = z[f"{key}_amounts"].astype(np.float32)
                    flags = z[f"{key}_masks"]
                    ab = np.zeros((len(ABSORBERS), *comp.shape[1:]), dtype=np.float32)
                    for j, name in enumerate(UNMIXED):
                        ab[ABSORBERS.index(name)] = comp[j]
                    ab[ABSORBERS.index("hemoglobin")] = np.float32(self.hb_per_eosin) * comp[UNMIXED.index("eosin")]
                    ab.setflags(write=False)
                    masks = [(flags & bit) > 0 for bit in (_CELL, _NUCLEUS, _GRANULE)]
                    for mk in masks:
                        mk.setflags(write=False)
                    self._cache[eid] = LibraryEntry(
                        id=eid, code=code, source=meta["source"], sha256=meta["sha256"], um_per_px=self.um_per_px,
                        absorbers=ab, cell=masks[0], nucleus=masks[1], granules=masks[2],
                        center_px=tuple(meta["center_px"]), origin_px=tuple(meta["origin_px"]))
        except (OSError, KeyError, ValueError) as exc:
            raise InputError("library", str(file), f"the readable class file of {code} ({exc})") from exc

    def morphology(self, entry_id: str, *, flip: bool = False) -> WBCMorphology:
        """The record of an entry (drawn exactly as stored, mirrored when ``flip``)."""
        meta = self.metadata(entry_id)
        ref = LibraryCellRef(library=str(self.path), library_id=self.library_id, entry=entry_id,
                             sha256=meta["sha256"], flip=bool(flip), radius_um=meta["measured"]["radius_um"])
        return _morphology(meta, ref)

    def draw(self, code: str, rng: np.random.Generator) -> WBCMorphology:
        """A random cell of class ``code`` (uniform over its entries, mirrored half the time).

        Raises
        ------
        InputError
            The library holds no cell of ``code``.
        """
        ids = self._by_code.get(code)
        if not ids:
            raise InputError("library", f"no {code} cells in {self.path}",
                             f"a library holding {code} (it holds {', '.join(self.codes) or 'no class'})")
        k = int(rng.integers(len(ids)))
        return self.morphology(ids[k], flip=bool(rng.random() < 0.5))


def _stamp(file: Path) -> tuple[int, int]:
    st = file.stat()
    return (st.st_mtime_ns, st.st_size)


_OPEN: dict[str, CellLibrary] = {}


def open_library(library: CellLibrary | str | Path) -> CellLibrary:
    """The library at a folder, loaded once per process (reloaded when its ``library.json`` changed).

    A :class:`CellLibrary` passes through (and is registered, so records that name it resolve).
    """
    if isinstance(library, CellLibrary):
        _OPEN.setdefault(str(library.path), library)
        return library
    if not isinstance(library, (str, Path)):
        raise InputError("library", type(library).__name__, "a cell library folder or CellLibrary")
    key = str(Path(library).resolve())
    lib = _OPEN.get(key)
    index_file = Path(key) / INDEX_FILE
    if lib is None or not index_file.is_file() or _stamp(index_file) != lib.stamp:
        lib = CellLibrary(key)
        _OPEN[key] = lib
    return lib


def resolve_library_cell(ref: LibraryCellRef) -> LibraryEntry:
    """The entry a record's reference names, checked against the library's id and the source checksum."""
    lib = open_library(ref.library)
    if lib.library_id != ref.library_id:
        raise InputError("library_cell.library_id", ref.library_id,
                         f"the id of the library at {ref.library} ({lib.library_id}); it was rebuilt or replaced")
    entry = lib.entry(ref.entry)
    if entry.sha256 != ref.sha256:
        raise InputError("library_cell.sha256", ref.sha256, f"the checksum of entry {ref.entry} ({entry.sha256})")
    return entry


# ---------------------------------------------------------------------------------------------
# building
# ---------------------------------------------------------------------------------------------
def _listing(images: Path) -> tuple[list[tuple[Path, str, str | None]], list[dict[str, str]]]:
    """``(path, label, fine_label)`` rows of a manifest or an ImageFolder, and problems found listing them."""
    manifest = images if images.is_file() else images / "manifest.csv"
    rows: list[tuple[Path, str, str | None]] = []
    problems: list[dict[str, str]] = []
    if manifest.is_file():
        root = manifest.parent
        try:
            with open(manifest, newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                records = list(reader)
                cols = reader.fieldnames or []
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise InputError("images", str(manifest), f"a readable manifest.csv ({exc})") from exc
        if "path" not in cols or "label" not in cols:
            raise InputError(str(manifest), cols, "columns path and label (and optionally fine_label)")
        for rec in records:
            p = Path(rec["path"] or "")
            rows.append((p if p.is_absolute() else root / p, (rec["label"] or "").strip(),
                         (rec.get("fine_label") or "").strip() or None))
        return rows, problems
    if not images.is_dir():
        raise InputError("images", str(images), "a folder of labelled images (<label>/<file>) or a manifest.csv")
    for sub in sorted(p for p in images.iterdir() if p.is_dir()):
        for f in sorted(sub.iterdir()):
            if f.is_file() and not f.name.startswith("."):
                rows.append((f, sub.name, None))
    for f in sorted(images.iterdir()):
        if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
            problems.append({"path": str(f), "error": "no label: images must sit in a <label>/ folder"})
    return rows, problems


def _code_of(path: Path, label: str, fine: str | None, groups: Mapping[str, str]) -> str:
    """The class code of an image: fine label, then the file-name prefix (PBC: SNE_, MY_ ...), then the label."""
    tried = []
    for name in (fine, path.stem.split("_")[0] if "_" in path.stem else None, label):
        if not name:
            continue
        try:
            canon = resolve_label(name, where=str(path))
        except InputError:
            tried.append(name)
            continue
        if canon in CLASS_CODES:
            return canon
        below = members(canon)
        if len(below) == 1:
            return below[0]
        if canon in groups:
            return groups[canon]
        tried.append(name)
        if not below:
            raise InputError(str(path), label, f"a white-cell label ({canon} is not a white cell)")
    raise InputError(str(path), fine or label,
                     "a label naming one white-cell code (a code, a synonym, or a group with one member); "
                     f"tried {', '.join(repr(t) for t in tried) or 'nothing'}")


def _quiet_profile(name: str) -> Any:
    """The basis' source profile without noise and JPEG: the twin's own view of a specimen."""
    from hemotwin.twin.profiles import ScannerProfile, load_profile

    d = load_profile(name).to_dict()
    d["processing"]["jpeg_quality"] = None
    d["camera"]["full_well_e"] = 1e6  # shot noise ~0.1 % of glass, below one 8-bit level
    d["camera"]["read_noise_e"] = 0.5
    return ScannerProfile.from_dict(d)


def _refined_amounts(rgb: np.ndarray, um: float, basis: StainBasis, loop: tuple[Any, int]) -> np.ndarray:
    """Amounts (3 x H x W) whose rendering through the source scanner gives back the image's OD.

    The basis unmixes with a linear (secant) OD model, while the renderer images amounts through the
    full band model, processing and optics, so a plain unmixing comes back a few ΔE off (dense
    nuclei bluish). Each step renders the current amounts through the noise-free source profile and
    unmixes the observed OD plus the OD still missing (a fixed-point iteration on the target OD):
    on 20 PBC crops the median ΔE2000 inside the cell fell from 5.2 to 4.1 (one step) and 3.7 (two).
    """
    from hemotwin.twin.reimage import nnls3
    from hemotwin.twin.render import render
    from hemotwin.twin.specimen.maps import AbsorberMaps

    profile, steps = loop
    h, w = rgb.shape[:2]
    od_obs = basis.optical_density(rgb)[0].reshape(3, -1)
    x = nnls3(basis.vectors_, od_obs)[0]
    target = od_obs
    empty_i, empty_c = np.zeros((h, w), np.int32), np.zeros((h, w), np.uint8)
    for _ in range(steps):
        ab = np.zeros((len(ABSORBERS), h, w), np.float32)
        for j, name in enumerate(UNMIXED):
            ab[ABSORBERS.index(name)] = x[j].reshape(h, w)
        ab[ABSORBERS.index("hemoglobin")] = np.float32(basis.hb_per_eosin) * ab[ABSORBERS.index("eosin")]
        again = render(AbsorberMaps(ab, empty_i, empty_c, um), profile, seed=0, ground_truth=False).image
        if again.shape[:2] != (h, w):  # another pixel size: no pixel-wise loop possible
            break
        target = target + (od_obs - basis.optical_density(again)[0].reshape(3, -1))
        x = nnls3(basis.vectors_, target)[0]
    return x.reshape(3, h, w).astype(np.float32)


def build_library(images: str | Path, out: str | Path, *, um_per_px: float, basis: StainBasis | None = None,
                  refine_steps: int = 2,
                  max_per_class: int | None = None, margin_um: float = 1.0,
                  groups: Mapping[str, str] | None = None, exclude: Sequence[str] = (),
                  overwrite: bool = False, workers: int = 1,
                  progress: Progress | None = None) -> dict[str, Any]:
    """Build a cell library from labelled single-cell images.

    Parameters
    ----------
    images
        An ImageFolder (``<root>/<label>/<file>``), a folder holding a ``manifest.csv``, or a
        ``manifest.csv`` (columns ``path``, ``label``, optional ``fine_label``; paths relative to
        it). Labels are codes, group names or synonyms (:func:`hemotwin.taxonomy.resolve_label`);
        a PBC file-name prefix (``SNE_``, ``MY_`` ...) refines a group label.
    out
        Library folder to write.
    um_per_px
        Pixel size of the images (µm).
    basis
        Stain basis of the unmixing; default: the twin basis of ``analyzer-100x`` in the ``raw``
        tone (keeps dense nuclei dark when a cell is re-imaged through its own scanner; see
        :class:`~hemotwin.twin.reimage.StainBasis`). A basis fitted on the images came back further
        from the original colours (median ΔE2000 inside 24 PBC cells 6.0 fitted against 5.3, before
        ``refine_steps``; docs/cell_library.md), so none is fitted by default.
    refine_steps
        Steps of render-in-the-loop refinement of the amounts through the basis' source profile
        (0: plain unmixing); see docs/cell_library.md.
    max_per_class
        Keep at most this many cells per class (the first ones in listing order).
    margin_um
        Margin around the cell's bounding box kept in the maps.
    groups
        Group label -> code for groups with several codes; default :data:`NORMAL_BLOOD_GROUPS`.
        Images whose label stays a group (``neutrophil``, ``ig`` without a finer label) are skipped.
    exclude
        Labels left out without being listed as failures (``platelet`` of a PBC folder: not a white
        cell, and not a problem of the data); names as in :func:`hemotwin.taxonomy.resolve_label`.
    overwrite
        Allow writing into a non-empty folder.
    workers
        Processes unmixing cells in parallel (the library is the same for any number).
    progress
        ``progress(done, total)`` after each image.

    Returns
    -------
    dict
        ``out``, ``written`` (cells), ``per_class``, ``failures`` (``{"path", "error"}``: unreadable
        images, labels naming no single code, cells not segmented) and ``library_id``.
    """
    from hemotwin.io.outputs import output_dir
    from hemotwin.io.provenance import provenance, write_json
    from hemotwin.twin.datasets import run_tasks  # here: datasets composes specimens that open libraries

    if not (isinstance(um_per_px, (int, float)) and math.isfinite(um_per_px) and 0.0 < float(um_per_px) <= 50.0):
        raise InputError("um_per_px", um_per_px, "a pixel size in µm, in (0, 50]")
    if max_per_class is not None and (isinstance(max_per_class, bool) or not isinstance(max_per_class, int)
                                      or max_per_class < 1):
        raise InputError("max_per_class", max_per_class, "None or an integer >= 1")
    if not (isinstance(margin_um, (int, float)) and 0.0 <= float(margin_um) <= 20.0):
        raise InputError("margin_um", margin_um, "a margin in µm, in [0, 20]")
    if basis is not None and not isinstance(basis, StainBasis):
        raise InputError("basis", type(basis).__name__, "a StainBasis or None")
    groups = dict(NORMAL_BLOOD_GROUPS if groups is None else groups)
    um = float(um_per_px)
    src = Path(images)
    rows, failures = _listing(src)
    left_out = {resolve_label(x, where="exclude") for x in exclude}
    labelled: list[tuple[Path, str]] = []
    taken: dict[str, int] = {}
    n_excluded = 0
    for path, label, fine in rows:
        try:
            if resolve_label(label, where=str(path)) in left_out:
                n_excluded += 1
                continue
        except InputError:
            pass  # an unknown label is reported below, with what was tried
        try:
            code = _code_of(path, label, fine, groups)
        except InputError as exc:
            failures.append({"path": str(path), "error": f"{exc.value!r}: expected {exc.expected}"})
            continue
        if max_per_class is not None and taken.get(code, 0) >= max_per_class:
            continue
        taken[code] = taken.get(code, 0) + 1
        labelled.append((path, code))
    if not labelled:
        raise InputError("images", str(src), "at least one image with a white-cell label "
                         f"({len(failures)} listed and skipped)")

    if isinstance(refine_steps, bool) or not isinstance(refine_steps, int) or not 0 <= refine_steps <= 5:
        raise InputError("refine_steps", refine_steps, "an integer in [0, 5]")
    if basis is None:
        basis = StainBasis("analyzer-100x", tone="raw")
    margin_px = math.ceil(float(margin_um) / um)
    loop = (_quiet_profile(basis.source), refine_steps) if refine_steps else None
    entries: list[dict[str, Any]] = []
    arrays: dict[str, dict[str, np.ndarray]] = {}
    tasks = [(path, code, um, basis, margin_px, loop) for path, code in labelled]
    with output_dir(out, overwrite=overwrite) as root:
        # In listing order whatever the number of workers: the same library, the same id.
        for (path, code), res in zip(labelled, run_tasks(_cell_task, tasks, workers, progress), strict=True):
            if not res["ok"]:
                failures.append({"path": str(path), "error": res["error"]})
                continue
            entry, amounts, flags = res["cell"]
            n = len(arrays.setdefault(code, {})) // 2
            entry.update(id=f"{code}/{n}", code=code, source=str(path), sha256=res["sha256"])
            arrays[code][f"{n}_amounts"] = amounts
            arrays[code][f"{n}_masks"] = flags
            entries.append(entry)
        if not entries:
            raise InputError("images", str(src), f"at least one cell that could be segmented ({len(failures)} "
                             f"skipped; first: {failures[0]['error'] if failures else '-'})")
        for old in root.glob("cells_*.npz"):  # an overwritten library keeps no class it no longer has
            if old.stem.removeprefix("cells_") not in arrays:
                old.unlink()
        for code, arrs in arrays.items():
            np.savez_compressed(root / f"cells_{code}.npz", **arrs)
        content = [basis.to_dict(), um, refine_steps, [(e["id"], e["sha256"]) for e in entries]]
        ident = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]
        per_class = {c: taken_n for c in CLASS_CODES if (taken_n := sum(e["code"] == c for e in entries))}
        config = {"images": str(src.resolve()), "um_per_px": um, "tone": basis.tone, "fitted": basis.n_fit_pixels_ > 0,
                  "exclude": sorted(left_out), "excluded": n_excluded,
                  "refine_steps": refine_steps,
                  "max_per_class": max_per_class, "margin_um": float(margin_um), "groups": groups}
        index = {
            "schema": LIBRARY_SCHEMA, "version": LIBRARY_VERSION, "library_id": ident, "um_per_px": um,
            "source": str(src.resolve()), "per_class": per_class, "basis": basis.to_dict(),
            "entries": entries, "failures": failures,
            "provenance": provenance(command="library build", config=config),
        }
        write_json(root / INDEX_FILE, index)
    _OPEN.pop(str(Path(root).resolve()), None)
    return {"out": str(root), "written": len(entries), "per_class": per_class, "failures": failures,
            "library_id": ident}


def _cell_task(args: tuple) -> dict[str, Any]:
    """Read and unmix one image (a picklable task): ``{"ok", "cell" | "error", "sha256"}``."""
    from hemotwin.io.images import read_image
    from hemotwin.io.provenance import file_sha256

    path, code, um, basis, margin_px, loop = args
    try:
        rgb = read_image(path)[0]
    except InputError as exc:
        return {"ok": False, "error": f"unreadable image: {exc.value}"}
    try:
        return {"ok": True, "cell": _one_cell(rgb, code, um, basis, margin_px, loop), "sha256": file_sha256(path)}
    except InputError as exc:
        return {"ok": False, "error": f"{exc.value}: expected {exc.expected}"}


def _one_cell(rgb: np.ndarray, code: str, um: float, basis: StainBasis, margin_px: int,
              loop: tuple[Any, int] | None) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Index record, stored amounts (3 x h x w float16) and mask flags of one image's white cell."""
    seg = segment_cell(rgb, um_per_px=um, basis=basis)
    if not seg.ok:
        raise InputError("segmentation", f"no white cell found ({seg.reason})", "a single white cell in the crop")
    cell = np.asarray(seg.cell, dtype=bool)
    nucleus = np.asarray(seg.nucleus, dtype=bool) & cell
    granules = np.asarray(seg.granules, dtype=bool) & cell
    if cell.sum() < 16:
        raise InputError("segmentation", f"a cell of {int(cell.sum())} pixels", "a white cell of at least 16 pixels")
    h, w = cell.shape
    ys, xs = np.nonzero(cell)
    if ys.min() == 0 or xs.min() == 0 or ys.max() == h - 1 or xs.max() == w - 1:
        raise InputError("segmentation", "the cell touches the image edge (cut off)", "a whole white cell")
    comp = _refined_amounts(rgb, um, basis, loop) if loop is not None else np.asarray(seg.amounts, np.float32)
    sy, sx = bounding_box(cell, margin_px)
    cell, nucleus, granules = cell[sy, sx], nucleus[sy, sx], granules[sy, sx]
    comp = np.where(cell[None], comp[:, sy, sx], 0.0).astype(np.float16)
    flags = (cell * _CELL | nucleus * _NUCLEUS | granules * _GRANULE).astype(np.uint8)
    measured = _measure(comp.astype(np.float32), cell, nucleus, um)
    yc, xc = measured["center_um"]
    entry = {"center_px": [yc / um - 0.5, xc / um - 0.5], "origin_px": [sy.start, sx.start],
             "shape": [int(cell.shape[0]), int(cell.shape[1])], "measured": measured}
    return entry, comp, flags

