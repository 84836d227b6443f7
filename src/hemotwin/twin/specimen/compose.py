"""Composition of specimens: single-cell crops and monolayer fields."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field, model_validator
from scipy.spatial import cKDTree

from hemotwin.errors import InputError

from ._base import Record
from .morphology import (
    LEUKOCYTE_CLASSES,
    NORMAL_DIFFERENTIAL,
    PLASMA_EOSIN,
    RED_CELL_TYPES,
    WBC_STYLES,
    WBCMorphology,
    sample_platelet,
    sample_rbc,
    sample_wbc,
)
from .specimen import ObjectRecord, Specimen

if TYPE_CHECKING:
    from hemotwin.twin.cell_library import CellLibrary

#: Red-cell mix of a normal smear (mostly discocytes, a few variants), used when none is given.
NORMAL_RBC_TYPES: dict[str, float] = {
    "discocyte": 0.975, "polychromatic": 0.01, "target": 0.005, "spherocyte": 0.005,
    "elliptocyte": 0.005,
}
_SUM_TOL = 1e-3  # fractions must sum to 1 within this (rounding of hand-typed mixes)
#: Where white cells come from: drawn by the twin, taken from a cell library, or the library where
#: it holds the class and the twin otherwise. Red cells and platelets are always drawn.
SPECIMEN_SOURCES: tuple[str, ...] = ("procedural", "real", "mixed")


def _check_mix(where: str, mix: dict[str, float], valid: tuple[str, ...]) -> dict[str, float]:
    if not isinstance(mix, dict) or not mix:
        raise InputError(where, mix, "a non-empty mapping of name -> fraction")
    for k, v in mix.items():
        if k not in valid:
            raise InputError(f"{where}.{k}", k, f"one of {', '.join(valid)}")
        if not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0 or math.isnan(v):
            raise InputError(f"{where}.{k}", v, "a fraction in [0, 1]")
    total = float(sum(mix.values()))
    if abs(total - 1.0) > _SUM_TOL:
        raise InputError(where, total, f"fractions summing to 1 (±{_SUM_TOL})")
    return {k: float(v) for k, v in mix.items()}


class FieldSpec(Record):
    """What a composed field of view contains.

    Attributes
    ----------
    height_um, width_um
        Field size (µm).
    rbc_per_10k_um2
        Red cells per 100 x 100 µm of monolayer (docs/clinical_rules.md §11: ~150–250).
    rbc_types
        Red-cell subtype mix (fractions summing to 1); default :data:`NORMAL_RBC_TYPES`.
    wbc_count
        Number of white cells.
    differential
        Fractions per class code; the labels of the ``wbc_count`` cells are drawn from it
        (multinomial). Default: a normal adult differential.
    wbc_labels
        Exact labels of the white cells (overrides ``wbc_count`` and ``differential``).
    platelets_per_100_rbc
        Platelets per 100 red cells (normal blood: ~5–8).
    max_overlap
        Largest overlap of two red cells, as a fraction of the smaller diameter (drying
        monolayers touch and overlap a little).
    plasma_eosin
        Faint eosin of the plasma film.
    """

    height_um: float = Field(default=102.4, gt=0.0, le=5000.0)
    width_um: float = Field(default=102.4, gt=0.0, le=5000.0)
    rbc_per_10k_um2: float = Field(default=180.0, ge=0.0, le=400.0)
    rbc_types: dict[str, float] | None = None
    wbc_count: int = Field(default=3, ge=0, le=1000)
    differential: dict[str, float] | None = None
    wbc_labels: tuple[str, ...] | None = None
    platelets_per_100_rbc: float = Field(default=6.0, ge=0.0, le=100.0)
    max_overlap: float = Field(default=0.12, ge=0.0, le=1.0)
    plasma_eosin: float = Field(default=PLASMA_EOSIN, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _mixes(self) -> FieldSpec:
        if self.rbc_types is not None:
            _check_mix("rbc_types", self.rbc_types, RED_CELL_TYPES)
        if self.differential is not None:
            _check_mix("differential", self.differential, LEUKOCYTE_CLASSES)
        for lab in self.wbc_labels or ():
            if lab not in LEUKOCYTE_CLASSES:
                raise InputError("wbc_labels", lab, f"codes among {', '.join(LEUKOCYTE_CLASSES)}")
        return self


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError("seed", seed, "an integer >= 0")
    return int(seed)


def _draw_labels(rng: np.random.Generator, mix: dict[str, float], n: int) -> list[str]:
    keys = list(mix)
    p = np.array([mix[k] for k in keys], dtype=float)
    idx = rng.choice(len(keys), size=n, p=p / p.sum())
    return [keys[i] for i in idx]


#: Default red-cell density around a single-cell crop (per 100x100 µm). Analyzers pick white
#: cells in the thin part of the smear where red cells just touch: ~90–110 per 10,000 µm² in the
#: real CellaVision crops of the public PBC data set (counted), fewer than a field's average.
CROP_RBC_DENSITY = 110.0


def _wbc_radius(m: WBCMorphology) -> float:
    """Radius of a disc that contains the white cell outline (µm)."""
    if m.library_cell is not None:
        return m.library_cell.radius_um
    r = m.diameter_um / 2 * math.sqrt(m.elongation) * (1 + sum(h.amp for h in m.outline))
    if m.nucleus.kind == "smudge":
        r = max(m.nucleus.radii_um) * (1 + sum(h.amp for h in m.nucleus.outline))
    return r


WBCSampler = Callable[[str, np.random.Generator], WBCMorphology]


def wbc_sampler(specimens: str = "procedural",
                library: CellLibrary | str | Path | None = None, *, style: str = "drawn") -> WBCSampler:
    """The white-cell source of a composition: ``sampler(code, rng) -> WBCMorphology``.

    Parameters
    ----------
    specimens
        ``"procedural"`` (:func:`sample_wbc`), ``"real"`` (every white cell from ``library``) or
        ``"mixed"`` (``library`` where it holds the class, :func:`sample_wbc` otherwise).
    library
        A :class:`~hemotwin.twin.cell_library.CellLibrary` or its folder; needed for ``real`` and
        ``mixed``, refused with ``procedural`` (it would be silently ignored).
    style
        How the twin draws its cells (:func:`sample_wbc`): ``"drawn"`` (default) or ``"measured"``.

    Raises
    ------
    InputError
        Unknown source, a missing or unexpected library; with ``real``, the sampler raises for a
        class the library lacks, naming the class.
    """
    if specimens not in SPECIMEN_SOURCES:
        raise InputError("specimens", specimens, f"one of {', '.join(SPECIMEN_SOURCES)}")
    if style not in WBC_STYLES:
        raise InputError("style", style, f"one of {', '.join(WBC_STYLES)}")
    procedural = sample_wbc if style == "drawn" else functools.partial(sample_wbc, style=style)
    if specimens == "procedural":
        if library is not None:
            raise InputError("specimens", specimens, 'real or mixed when a library is given')
        return procedural
    if library is None:
        raise InputError("library", None, f"a cell library folder for specimens={specimens!r}")
    # Imported here: the library module builds on this package.
    from hemotwin.twin.cell_library import open_library

    lib = open_library(library)

    def sample(code: str, rng: np.random.Generator) -> WBCMorphology:
        if lib.count(code):
            return lib.draw(code, rng)
        if specimens == "mixed":
            return procedural(code, rng)
        raise InputError("specimens", "real",
                         f"a library holding every class drawn; {lib.path} has no {code} cells (it holds "
                         f"{', '.join(lib.codes)}): specimens='mixed' draws the classes it lacks procedurally, "
                         "specimens='procedural' draws every cell")

    return sample


def check_library_classes(codes: list[str] | tuple[str, ...], *, specimens: str,
                          library: CellLibrary | str | Path | None) -> str | None:
    """Fail before any work when ``real`` cells of ``codes`` are asked of a library that lacks some.

    The message names the missing classes and says that ``mixed`` or ``procedural`` supplies them.

    Returns
    -------
    str or None
        The library's id (for the output's provenance), None without a library.
    """
    wbc_sampler(specimens, library)  # checks the source and opens the library
    if library is None:
        return None
    from hemotwin.twin.cell_library import open_library

    lib = open_library(library)
    missing = [c for c in dict.fromkeys(codes) if not lib.count(c)]
    if specimens == "real" and missing:
        raise InputError("specimens", "real",
                         f"a library holding every class drawn; {lib.path} has no {', '.join(missing)} cells (it "
                         f"holds {', '.join(lib.codes)}): specimens='mixed' draws the classes it lacks "
                         "procedurally, specimens='procedural' draws every cell")
    return lib.library_id


_RELAX_SLACK_UM = 0.05


def _relax(rng: np.random.Generator, pos: np.ndarray, radii: np.ndarray,
           bounds: tuple[float, float, float, float], obstacles: list[tuple[float, float, float]],
           max_overlap: float, iters: int = 60) -> np.ndarray:
    """Push red cells apart until pairs overlap at most ``max_overlap`` of the smaller diameter.

    Uniform random centres followed by pairwise repulsion gives the look of a dried monolayer
    (cells touching, a few overlapping) at densities where sequential rejection would jam.
    Obstacles (white cells) push red cells out of all but a thin rim.
    """
    pos = pos.copy()
    y0, y1, x0, x1 = bounds
    rmax = float(radii.max()) if radii.size else 0.0
    n = pos.shape[0]
    # A crop holds a dozen cells: all pairs are cheaper than building a k-d tree every pass.
    all_pairs = np.stack(np.triu_indices(n, k=1), axis=1) if 1 < n <= 96 else None
    for _ in range(iters):
        moved = False
        if n > 1:
            pairs = all_pairs if all_pairs is not None else cKDTree(pos).query_pairs(
                2 * rmax, output_type="ndarray")
            if pairs.size:
                i, j = pairs[:, 0], pairs[:, 1]
                d_vec = pos[j] - pos[i]
                d = np.hypot(d_vec[:, 0], d_vec[:, 1])
                allowed = radii[i] + radii[j] - 2 * max_overlap * np.minimum(radii[i], radii[j])
                # 0.05 µm of slack (a third of an edge width): chasing exact contact between a
                # dozen cells and the white cell otherwise runs every pass to the limit.
                bad = d < allowed - _RELAX_SLACK_UM
                if bad.any():
                    moved = True
                    i, j, d_vec, d, allowed = i[bad], j[bad], d_vec[bad], d[bad], allowed[bad]
                    tiny = d < 1e-6
                    if tiny.any():
                        ang = rng.uniform(0, 2 * np.pi, tiny.sum())
                        d_vec[tiny] = np.stack([np.sin(ang), np.cos(ang)], 1)
                        d[tiny] = 1.0
                    push = (0.5 * (allowed - d) / d)[:, None] * d_vec * 1.05
                    delta = np.zeros_like(pos)
                    np.add.at(delta, i, -push)
                    np.add.at(delta, j, push)
                    pos += delta
        for oy, ox, r_o in obstacles:
            v = pos - np.array([oy, ox])
            d = np.hypot(v[:, 0], v[:, 1])
            # A slight overlap with the white cell's edge is realistic (~0.6 µm).
            allowed = r_o + radii - 0.6
            bad = d < allowed - _RELAX_SLACK_UM
            if bad.any():
                moved = True
                d_safe = np.maximum(d[bad], 1e-6)
                pos[bad] += (v[bad] / d_safe[:, None]) * (allowed[bad] - d_safe)[:, None]
        np.clip(pos[:, 0], y0, y1, out=pos[:, 0])
        np.clip(pos[:, 1], x0, x1, out=pos[:, 1])
        if not moved:
            break
    return pos


def _stratified(rng: np.random.Generator, n: int,
                bounds: tuple[float, float, float, float]) -> np.ndarray:
    """``n`` points, one per randomly chosen cell of a near-square grid, uniform within it.

    A plain uniform draw has Poisson clumps and voids that local repulsion cannot even out at
    monolayer densities; stratifying first gives the even spread of a real monolayer.
    """
    y0, y1, x0, x1 = bounds
    h, w = y1 - y0, x1 - x0
    gx = max(1, math.ceil(math.sqrt(n * w / h)))
    gy = max(1, math.ceil(n / gx))
    cells = rng.choice(gy * gx, size=n, replace=False)
    cy, cx = np.divmod(cells, gx)
    return np.stack([y0 + (cy + rng.random(n)) * (h / gy), x0 + (cx + rng.random(n)) * (w / gx)],
                    1)


def _rbc_records(rng: np.random.Generator, n: int, types: dict[str, float],
                 bounds: tuple[float, float, float, float],
                 obstacles: list[tuple[float, float, float]], max_overlap: float,
                 first_id: int) -> list[ObjectRecord]:
    if n <= 0:
        return []
    labels = _draw_labels(rng, types, n)
    seeds = rng.integers(0, 2**31 - 1, size=n)
    morphs = [sample_rbc(lab, np.random.default_rng(int(sd)))
              for lab, sd in zip(labels, seeds, strict=True)]
    radii = np.array([m.diameter_um / 2 * math.sqrt(m.elongation) ** 0.5 for m in morphs])
    pos = _relax(rng, _stratified(rng, n, bounds), radii, bounds, obstacles, max_overlap)
    rot = rng.uniform(0, 360, n)
    return [
        ObjectRecord(id=first_id + k, kind="rbc", label=labels[k],
                     center_um=(float(pos[k, 0]), float(pos[k, 1])), rotation_deg=float(rot[k]),
                     morphology=morphs[k], seed=int(seeds[k]))
        for k in range(n)
    ]


def _platelet_records(rng: np.random.Generator, n: int, bounds: tuple[float, float, float, float],
                      rbc_pos: np.ndarray, avoid: list[tuple[float, float, float]],
                      first_id: int, clump_p: float = 0.05) -> list[ObjectRecord]:
    """Platelets, preferring gaps between red cells; some form small clumps."""
    y0, y1, x0, x1 = bounds
    tree = cKDTree(rbc_pos) if len(rbc_pos) else None
    out: list[ObjectRecord] = []
    centres: list[tuple[float, float]] = []
    for _ in range(20 * n):
        if len(centres) >= n:
            break
        cand = np.stack([rng.uniform(y0, y1, 8), rng.uniform(x0, x1, 8)], 1)
        score = tree.query(cand)[0] if tree is not None else np.zeros(8)
        for oy, ox, r in avoid:
            score = np.where(np.hypot(cand[:, 0] - oy, cand[:, 1] - ox) < r + 1.5, -1.0, score)
        best = int(np.argmax(score))
        if score[best] < 0:  # every candidate under a white cell: try again
            continue
        cy, cx = cand[best]
        if rng.random() < clump_p:  # platelet clump: a few platelets within ~3 µm
            for _ in range(int(rng.integers(3, 7))):
                if len(centres) >= n:
                    break
                centres.append((cy + rng.normal(0, 1.2), cx + rng.normal(0, 1.2)))
        else:
            centres.append((float(cy), float(cx)))
    for k, (cy, cx) in enumerate(centres):
        sd = int(rng.integers(0, 2**31 - 1))
        out.append(ObjectRecord(id=first_id + k, kind="platelet", label="platelet",
                                center_um=(float(cy), float(cx)),
                                rotation_deg=float(rng.uniform(0, 360)),
                                morphology=sample_platelet(np.random.default_rng(sd)), seed=sd))
    return out


def make_cell_specimen(code: str, *, size_um: float, seed: int, rbc_per_10k_um2: float = CROP_RBC_DENSITY,
                       rbc_types: dict[str, float] | None = None,
                       neighbours: bool = True, specimens: str = "procedural",
                       library: CellLibrary | str | Path | None = None, style: str = "drawn") -> Specimen:
    """A square crop centred on one white cell of class ``code``, with red cells around it.

    Parameters
    ----------
    code
        White-cell class (one of :data:`LEUKOCYTE_CLASSES`).
    size_um
        Side of the crop (µm).
    seed
        Seed of everything in the crop.
    rbc_per_10k_um2
        Red-cell density of the surrounding monolayer.
    rbc_types
        Red-cell subtype mix; default :data:`NORMAL_RBC_TYPES`.
    neighbours
        If False, the crop holds the white cell only.
    specimens, library
        Where the white cell comes from (:func:`wbc_sampler`): ``"procedural"`` (default; the
        same bytes as ever for a seed), ``"real"`` or ``"mixed"`` with a cell library.
    style
        How the twin draws the white cell (:func:`~.morphology.sample_wbc`): ``"drawn"``
        (default) or ``"measured"``.

    Returns
    -------
    Specimen
        ``kind="cell"``, ``focus_id`` = the white cell's id (drawn last, on top).

    Examples
    --------
    >>> sp = make_cell_specimen("EOS", size_um=25.6, seed=3)
    >>> sp.object(sp.focus_id).label
    'EOS'
    """
    if code not in LEUKOCYTE_CLASSES:
        raise InputError("code", code, f"one of {', '.join(LEUKOCYTE_CLASSES)}")
    if not isinstance(size_um, (int, float)) or not math.isfinite(size_um) or size_um <= 0:
        raise InputError("size_um", size_um, "a finite number > 0")
    if (not isinstance(rbc_per_10k_um2, (int, float)) or not math.isfinite(rbc_per_10k_um2)
            or not 0 <= rbc_per_10k_um2 <= 400):
        raise InputError("rbc_per_10k_um2", rbc_per_10k_um2, "a number in [0, 400]")
    seed = _check_seed(seed)
    sample = wbc_sampler(specimens, library, style=style)
    types = _check_mix("rbc_types", rbc_types, RED_CELL_TYPES) if rbc_types is not None \
        else NORMAL_RBC_TYPES
    # The class index is part of the stream so crops of different classes with the same seed do
    # not share their red-cell neighbourhoods.
    rng = np.random.default_rng([seed, 1, LEUKOCYTE_CLASSES.index(code)])
    half = size_um / 2
    wbc_seed = int(rng.integers(0, 2**31 - 1))
    wbc = sample(code, np.random.default_rng(wbc_seed))
    r_w = _wbc_radius(wbc)
    objects: list[ObjectRecord] = []
    if neighbours:
        margin = 3.0  # red cells whose centres lie just outside still show at the crop edge
        bounds = (-margin, size_um + margin, -margin, size_um + margin)
        area = (size_um + 2 * margin) ** 2 - math.pi * r_w**2
        n_rbc = int(rng.poisson(max(area, 0.0) * rbc_per_10k_um2 / 1e4))
        objects += _rbc_records(rng, n_rbc, types, bounds, [(half, half, r_w)], 0.12, 1)
        if rng.random() < 0.45:
            pos = np.array([o.center_um for o in objects]).reshape(-1, 2)
            objects += _platelet_records(rng, int(rng.integers(1, 3)),
                                         (0.0, size_um, 0.0, size_um), pos,
                                         [(half, half, r_w)], len(objects) + 1, clump_p=0.0)
    wid = len(objects) + 1
    objects.append(ObjectRecord(id=wid, kind="wbc", label=code, center_um=(half, half),
                                rotation_deg=float(rng.uniform(0, 360)), morphology=wbc,
                                seed=wbc_seed))
    return Specimen(height_um=size_um, width_um=size_um, objects=objects, seed=seed, kind="cell",
                    focus_id=wid)


def compose_field(spec: FieldSpec, *, seed: int, specimens: str = "procedural",
                  library: CellLibrary | str | Path | None = None, style: str = "drawn") -> Specimen:
    """Compose a monolayer field of view.

    Red cells at ``spec.rbc_per_10k_um2`` with limited overlaps, white cells that never overlap
    each other (labels drawn from ``spec.differential`` when given), platelets in the gaps.

    Parameters
    ----------
    spec
        What the field holds.
    seed
        Seed of everything in the field.
    specimens, library
        Where the white cells come from (:func:`wbc_sampler`): ``"procedural"`` (default; the
        same bytes as ever for a seed), ``"real"`` or ``"mixed"`` with a cell library. Red
        cells and platelets are always drawn by the twin.
    style
        How the twin draws white cells (:func:`~.morphology.sample_wbc`): ``"drawn"`` (default)
        or ``"measured"``.

    Returns
    -------
    Specimen
        ``kind="field"``; objects ordered red cells, platelets, white cells.
    """
    if not isinstance(spec, FieldSpec):
        raise InputError("spec", type(spec).__name__, "a FieldSpec")
    seed = _check_seed(seed)
    sample = wbc_sampler(specimens, library, style=style)
    rng = np.random.default_rng([seed, 2])
    H, W = spec.height_um, spec.width_um
    # White cells first: their positions are obstacles for the red cells.
    if spec.wbc_labels is not None:
        labels = list(spec.wbc_labels)
    else:
        labels = _draw_labels(rng, spec.differential or NORMAL_DIFFERENTIAL, spec.wbc_count)
    wbcs: list[tuple[str, int, WBCMorphology, float, float, float]] = []
    for lab in labels:
        sd = int(rng.integers(0, 2**31 - 1))
        m = sample(lab, np.random.default_rng(sd))
        r = _wbc_radius(m)
        for _ in range(500):
            # Whole white cells inside the field when it is big enough; never overlapping.
            y = rng.uniform(min(r, H / 2), max(H - r, H / 2))
            x = rng.uniform(min(r, W / 2), max(W - r, W / 2))
            if all(math.hypot(y - oy, x - ox) >= r + orr + 0.5 for _, _, _, oy, ox, orr in wbcs):
                break
        else:
            raise InputError("wbc_count", len(labels),
                             f"few enough white cells to fit in {H:g} x {W:g} µm without overlap")
        wbcs.append((lab, sd, m, y, x, r))
    obstacles = [(y, x, r) for _, _, _, y, x, r in wbcs]
    margin = 3.0
    bounds = (-margin, H + margin, -margin, W + margin)
    n_rbc = round((H + 2 * margin) * (W + 2 * margin) * spec.rbc_per_10k_um2 / 1e4)
    types = spec.rbc_types or NORMAL_RBC_TYPES
    objects = _rbc_records(rng, n_rbc, types, bounds, obstacles, spec.max_overlap, 1)
    n_plt = int(rng.poisson(n_rbc * spec.platelets_per_100_rbc / 100))
    pos = np.array([o.center_um for o in objects]).reshape(-1, 2)
    objects += _platelet_records(rng, n_plt, (0.0, H, 0.0, W), pos, obstacles, len(objects) + 1)
    for lab, sd, m, y, x, _ in wbcs:
        objects.append(ObjectRecord(id=len(objects) + 1, kind="wbc", label=lab, center_um=(y, x),
                                    rotation_deg=float(rng.uniform(0, 360)), morphology=m, seed=sd))
    return Specimen(height_um=H, width_um=W, objects=objects, seed=seed, kind="field",
                    plasma_eosin=spec.plasma_eosin, focus_id=None)
