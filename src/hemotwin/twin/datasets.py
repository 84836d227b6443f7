"""Rendered data sets: single-cell ImageFolder trees and annotated fields (COCO).

Each item's seed is derived from the run seed and the item's index with
:class:`numpy.random.SeedSequence`, so the files are identical whatever the number of workers.
"""

from __future__ import annotations

import csv
import json
import multiprocessing as mp
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, field_validator
from threadpoolctl import threadpool_limits

from hemotwin.errors import InputError
from hemotwin.io.images import write_png
from hemotwin.io.outputs import output_dir
from hemotwin.io.provenance import provenance, write_json
from hemotwin.twin.profiles import ScannerProfile, load_profile, randomize
from hemotwin.twin.render import Rendering, render
from hemotwin.twin.specimen import (
    CROP_RBC_DENSITY,
    LEUKOCYTE_CLASSES,
    NORMAL_DIFFERENTIAL,
    FieldSpec,
    compose_field,
    make_cell_specimen,
)
from hemotwin.twin.specimen.compose import check_library_classes
from hemotwin.twin.specimen.maps import Compartment

Progress = Callable[[int, int], None]


def item_seed(seed: int, *keys: int) -> int:
    """A 32-bit seed for one item, independent of processing order."""
    return int(np.random.SeedSequence([int(seed), *map(int, keys)]).generate_state(1)[0])


def check_classes(classes: Iterable[str] | None) -> list[str]:
    """Validate class codes (case-insensitive); ``None`` means all 15."""
    if classes is None:
        return list(LEUKOCYTE_CLASSES)
    out = []
    for c in classes:
        code = str(c).strip().upper()
        if code not in LEUKOCYTE_CLASSES:
            raise InputError("classes", c, f"one of {', '.join(LEUKOCYTE_CLASSES)}")
        out.append(code)
    if not out:
        raise InputError("classes", classes, "at least one class code")
    return out


class CellSetConfig(BaseModel):
    """Configuration of ``simulate cells`` (stored in provenance.json)."""

    model_config = ConfigDict(extra="forbid")

    profile: ScannerProfile
    per_class: int = Field(10, ge=1, le=1_000_000)
    size_px: int = Field(256, ge=16, le=4096)
    classes: list[str] = Field(default_factory=lambda: list(LEUKOCYTE_CLASSES))
    randomize: float = Field(0.0, ge=0.0, le=3.0)
    seed: int = Field(0, ge=0)
    rbc_per_10k_um2: float = Field(180.0, ge=0.0, le=600.0)

    @field_validator("classes")
    @classmethod
    def _classes(cls, v: list[str]) -> list[str]:
        return check_classes(v)

    @classmethod
    def from_options(cls, *, profile: str | ScannerProfile, classes: Iterable[str] | None = None,
                     **fields: Any) -> CellSetConfig:
        """The configuration from a profile name or file and class codes given as repeats or comma lists."""
        codes = [c for item in classes or () for c in str(item).split(",") if c]
        return cls(profile=load_profile(profile), classes=check_classes(codes) if codes else list(LEUKOCYTE_CLASSES),
                   **fields)


def _item_profile(base: ScannerProfile, strength: float, seed: int) -> ScannerProfile:
    if strength <= 0:
        return base
    return randomize(base, np.random.default_rng(seed), strength)


def _flat_morphology(record: Any) -> dict[str, Any]:
    """Scalar morphology parameters of a record, for the manifest."""
    dump = record.morphology.model_dump(mode="json")
    return {f"m_{k}": v for k, v in dump.items() if isinstance(v, (int, float, str, bool)) or v is None}


def render_cell(code: str, profile: ScannerProfile, *, size_px: int, seed: int,
                rbc_per_10k_um2: float = CROP_RBC_DENSITY, workers: int = 1,
                field_position: tuple[float, float] = (0.0, 0.0), specimens: str = "procedural",
                library: Any = None, style: str = "drawn") -> Rendering:
    """One crop of ``size_px`` square centred on a white cell of class ``code``.

    ``specimens`` and ``library`` choose where the white cell comes from
    (:func:`~hemotwin.twin.specimen.compose.wbc_sampler`); ``style`` how the twin draws it
    (``"drawn"`` or ``"measured"``, :func:`~hemotwin.twin.specimen.morphology.sample_wbc`).
    """
    spec = make_cell_specimen(code, size_um=size_px * profile.camera.um_per_px, seed=seed,
                              rbc_per_10k_um2=rbc_per_10k_um2, specimens=specimens, library=library,
                              style=style)
    return render(spec, profile, seed=seed, workers=workers, field_position=field_position)


def _cell_task(args: tuple) -> dict[str, Any]:
    cfg, code, class_idx, i, root = args
    seed = item_seed(cfg.seed, class_idx, i)
    rel = f"{code}/{code}_{i:06d}.png"
    try:
        prof = _item_profile(cfg.profile, cfg.randomize, item_seed(cfg.seed, class_idx, i, 1))
        # Randomised sets also take each crop from a random place on the sensor (vignetting).
        pos = (0.0, 0.0)
        if cfg.randomize > 0:
            pos = tuple(np.random.default_rng(item_seed(cfg.seed, class_idx, i, 2)).uniform(-0.8, 0.8, 2))
        r = render_cell(code, prof, size_px=cfg.size_px, seed=seed, rbc_per_10k_um2=cfg.rbc_per_10k_um2,
                        field_position=pos)
        # The pixel size travels with the file (PNG pHYs), so any reader gets the physical scale.
        write_png(Path(root) / rel, r.image, um_per_px=prof.camera.um_per_px)
        focus = next((o for o in r.objects if o.kind == "wbc"), None)
        row = {"path": rel, "label": code, "profile": prof.name, "seed": seed,
               "um_per_px": round(prof.camera.um_per_px, 6), "size_px": cfg.size_px,
               "field_y": round(pos[0], 4), "field_x": round(pos[1], 4)}
        if cfg.randomize > 0:
            row.update(profile_json=prof.model_dump_json())
        if focus is not None:
            row.update(_flat_morphology(focus))
        return {"ok": True, "row": row}
    except Exception as exc:  # a batch finishes the rest and reports failures
        return {"ok": False, "path": rel, "error": f"{type(exc).__name__}: {exc}"}


def _single_threaded_blas() -> None:
    threadpool_limits(1)


def run_tasks(fn: Callable[[Any], Any], tasks: list, workers: int, progress: Progress | None) -> list:
    """``fn`` over ``tasks``, results in task order, in ``workers`` forked processes (inline for 1).

    Each process runs one BLAS thread; ``progress(done, total)`` after each result.
    """
    results = []
    total = len(tasks)
    if workers <= 1:
        with threadpool_limits(1):
            for k, t in enumerate(tasks):
                results.append(fn(t))
                if progress:
                    progress(k + 1, total)
        return results
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    # One BLAS thread per process: the render's tiny matrix products otherwise oversubscribe
    # the cores (2 processes ran slower than 1 in benchmarks/bench_twin.py).
    with ctx.Pool(workers, initializer=_single_threaded_blas) as pool:
        for k, res in enumerate(pool.imap(fn, tasks, chunksize=max(1, min(16, total // (workers * 8) or 1)))):
            results.append(res)
            if progress:
                progress(k + 1, total)
    return results


def _files_listed_before(root: Path, command: str) -> set[str]:
    """The files an earlier run of ``command`` wrote into ``root``, by that run's own lists.

    Only a folder whose ``provenance.json`` says hemotwin's ``command`` wrote it counts: its
    ``manifest.csv`` (``simulate cells``) or ``annotations.json`` (``simulate fields``, with the two
    mask files of each image). Any other folder (someone else's manifest), or lists we cannot read,
    yield nothing, so nothing of it is ever deleted.
    """
    listed: set[str] = set()
    try:
        prov = json.loads((root / "provenance.json").read_text())
        if not isinstance(prov, dict) or prov.get("command") != command or "hemotwin_version" not in prov:
            return set()
        if command == "simulate cells":
            with open(root / "manifest.csv", newline="") as fh:
                listed.update(row["path"] for row in csv.DictReader(fh) if row.get("path"))
        else:
            for image in json.loads((root / "annotations.json").read_text()).get("images", []):
                name = Path(str(image["file_name"])).stem
                listed.update({str(image["file_name"]), f"masks/{name}_instances.png",
                               f"masks/{name}_compartments.png"})
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return set()  # not lists we wrote: touch nothing
    return listed


def _remove_stale(root: Path, listed_before: set[str], written: set[str]) -> list[str]:
    """Delete the files the earlier run listed that this run did not write (an ``overwrite`` that shrank).

    Only paths of the earlier run's own lists, inside ``root``, are candidates: a file the user put
    there is never touched. A class or mask folder left empty by the removal goes too.
    """
    removed = []
    base = root.resolve()
    for rel in sorted(listed_before - written):
        target = (root / rel).resolve()
        if base not in target.parents or not target.is_file():
            continue
        target.unlink()
        removed.append(rel)
        if target.parent != base and not any(target.parent.iterdir()):
            target.parent.rmdir()
    return removed


def simulate_cells(config: CellSetConfig, out_dir: str | Path, *, overwrite: bool = False, workers: int = 1,
                   progress: Progress | None = None) -> dict[str, Any]:
    """Render an ImageFolder of white-cell crops with ``manifest.csv`` and ``provenance.json``.

    With ``overwrite``, the crops an earlier run listed in its manifest and this run does not write
    are deleted, so the folder holds exactly what the new manifest lists (files we did not list stay).

    Returns
    -------
    dict
        ``out``, ``written`` (crops), ``failures`` (path, error), ``manifest`` (path) and ``removed``
        (crops of the earlier run deleted).
    """
    with output_dir(out_dir, overwrite=overwrite) as root:
        listed_before = _files_listed_before(root, "simulate cells")
        for code in config.classes:
            (root / code).mkdir(exist_ok=True)
        tasks = [(config, code, LEUKOCYTE_CLASSES.index(code), i, str(root))
                 for code in config.classes for i in range(config.per_class)]
        results = run_tasks(_cell_task, tasks, workers, progress)
        rows = [r["row"] for r in results if r["ok"]]
        failures = [{"path": r["path"], "error": r["error"]} for r in results if not r["ok"]]
        keys: list[str] = []
        for row in rows:
            keys.extend(k for k in row if k not in keys)
        with open(root / "manifest.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
        removed = _remove_stale(root, listed_before, {row["path"] for row in rows})
        prov = provenance(command="simulate cells", config=config.model_dump(mode="json"),
                          seeds={"seed": config.seed, "item_seed": "SeedSequence([seed, class_index, i])"},
                          extra={"written": len(rows), "failures": failures, "removed": removed})
        write_json(root / "provenance.json", prov)
    return {"out": str(root), "written": len(rows), "failures": failures,
            "manifest": str(root / "manifest.csv"), "removed": removed}


def simulate_cells_over_presets(out_dir: str | Path, *, per_class: int, classes: Iterable[str] | None = None,
                                randomize: float = 0.6, field_um: float = 28.0, seed: int = 0,
                                workers: int = 1) -> list[dict[str, Any]]:
    """Training cells spread over the four scanner presets: one ImageFolder per preset under ``out_dir``.

    Each preset gets ``per_class // 4`` cells per class (at least one), each under its own
    ``randomize`` neighbour of the preset, in crops of ``field_um`` at the preset's pixel size; the
    preset ``k`` (in :func:`~hemotwin.twin.profiles.list_presets` order) uses seed ``seed + 100 + k``.
    Returns :func:`simulate_cells`' summary per preset, with its ``preset`` name.
    """
    from hemotwin.twin.profiles import list_presets, load_profile

    presets = list_presets()
    per = max(1, per_class // len(presets))
    out = []
    for k, name in enumerate(presets):
        prof = load_profile(name)
        cfg = CellSetConfig(profile=prof, per_class=per, classes=check_classes(classes),
                            size_px=round(field_um / prof.camera.um_per_px), randomize=randomize, seed=seed + 100 + k)
        out.append({"preset": name, **simulate_cells(cfg, Path(out_dir) / name, workers=workers)})
    return out


# --------------------------------------------------------------------------------- fields

CATEGORY_NAMES: tuple[str, ...] = (*LEUKOCYTE_CLASSES, "red_cell", "platelet")


class FieldSetConfig(BaseModel):
    """Configuration of ``simulate fields``."""

    model_config = ConfigDict(extra="forbid")

    profile: ScannerProfile
    n_fields: int = Field(4, ge=1, le=100_000)
    size_px: int = Field(1024, ge=64, le=8192)
    wbc_per_field: int = Field(3, ge=0, le=200)
    differential: dict[str, float] | None = None
    rbc_per_10k_um2: float = Field(180.0, ge=0.0, le=600.0)
    randomize: float = Field(0.0, ge=0.0, le=3.0)
    seed: int = Field(0, ge=0)
    #: White cells drawn by the twin, from a cell library, or both (docs/cell_library.md).
    specimens: Literal["procedural", "real", "mixed"] = "procedural"
    library: str | None = None

    @classmethod
    def from_options(cls, *, profile: str | ScannerProfile, differential: str | dict[str, float] | None = None,
                     **fields: Any) -> FieldSetConfig:
        """The configuration from a profile name or file and a differential ``"NGS=0.6,LYT=0.3"``."""
        return cls(profile=load_profile(profile), differential=parse_differential(differential), **fields)


def parse_differential(text: str | dict[str, float] | None) -> dict[str, float] | None:
    """``"NGS=0.6,LYT=0.3,MON=0.1"`` as ``{code: fraction}`` (a dict or None passes through)."""
    if text is None or isinstance(text, dict):
        return text
    diff: dict[str, float] = {}
    for part in text.split(","):
        key, _, val = part.partition("=")
        try:
            diff[key.strip().upper()] = float(val)
        except ValueError:
            raise InputError("differential", part, "CODE=fraction pairs") from None
    return diff


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """Uncompressed COCO run-length encoding (column-major, starting with a run of zeros)."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    change = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`rle_encode`."""
    h, w = rle["size"]
    flat = np.zeros(h * w, dtype=bool)
    pos, val = 0, False
    for c in rle["counts"]:
        if val:
            flat[pos : pos + c] = True
        pos += c
        val = not val
    return flat.reshape((h, w), order="F")


def coco_annotations(r: Rendering, *, image_id: int, first_ann_id: int) -> list[dict[str, Any]]:
    """COCO annotations (visible instance masks) of one rendered field."""
    anns = []
    ann_id = first_ann_id
    labels = {o.id: o for o in r.objects}
    ids = np.unique(r.instances)
    for oid in ids[ids > 0]:
        rec = labels.get(int(oid))
        if rec is None:
            continue
        mask = r.wbc_masks.get(int(oid)) if rec.kind == "wbc" else None
        if mask is None or not mask.any():
            mask = r.instances == oid
        ys, xs = np.nonzero(mask)
        if ys.size == 0:
            continue
        name = rec.label if rec.kind == "wbc" else ("platelet" if rec.kind == "platelet" else "red_cell")
        x0, y0 = int(xs.min()), int(ys.min())
        anns.append({
            "id": ann_id, "image_id": image_id, "category_id": CATEGORY_NAMES.index(name) + 1,
            "bbox": [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1],
            "area": int(mask.sum()), "iscrowd": 0, "segmentation": rle_encode(mask),
            "object_id": int(oid), "attributes": {"kind": rec.kind, "label": rec.label},
        })
        ann_id += 1
    return anns


def _field_task(args: tuple) -> dict[str, Any]:
    cfg, i, root = args
    seed = item_seed(cfg.seed, i)
    name = f"field_{i:05d}"
    try:
        prof = _item_profile(cfg.profile, cfg.randomize, item_seed(cfg.seed, i, 1))
        side = cfg.size_px * prof.camera.um_per_px
        spec = FieldSpec(height_um=side, width_um=side, rbc_per_10k_um2=cfg.rbc_per_10k_um2,
                         wbc_count=cfg.wbc_per_field, differential=cfg.differential)
        r = render(compose_field(spec, seed=seed, specimens=cfg.specimens, library=cfg.library), prof, seed=seed)
        write_png(Path(root) / "images" / f"{name}.png", r.image, um_per_px=prof.camera.um_per_px)
        Image.fromarray(r.instances.astype(np.uint16)).save(Path(root) / "masks" / f"{name}_instances.png")
        Image.fromarray(r.compartments).save(Path(root) / "masks" / f"{name}_compartments.png")
        image = {"id": i + 1, "file_name": f"images/{name}.png", "height": r.image.shape[0],
                 "width": r.image.shape[1], "um_per_px": prof.camera.um_per_px, "profile": prof.name,
                 "seed": seed}
        return {"ok": True, "image": image, "anns": coco_annotations(r, image_id=i + 1, first_ann_id=1)}
    except Exception as exc:
        return {"ok": False, "path": f"images/{name}.png", "error": f"{type(exc).__name__}: {exc}"}


def simulate_fields(config: FieldSetConfig, out_dir: str | Path, *, overwrite: bool = False, workers: int = 1,
                    progress: Progress | None = None) -> dict[str, Any]:
    """Render monolayer fields with COCO ``annotations.json`` and instance/compartment mask PNGs.

    With ``overwrite``, the images and masks an earlier run listed in its ``annotations.json`` and this
    run does not write are deleted (files we did not list stay). Returns a summary like
    :func:`simulate_cells` (``annotations`` instead of ``manifest``).
    """
    if config.differential is not None:
        check_classes(config.differential)
    # Validate the field specification once, before any work: a bad differential or a field too
    # small for its white cells is a user error, not a per-item failure.
    side = config.size_px * config.profile.camera.um_per_px
    FieldSpec(height_um=side, width_um=side, rbc_per_10k_um2=config.rbc_per_10k_um2,
              wbc_count=config.wbc_per_field, differential=config.differential)
    # Likewise a library lacking a class that real cells are asked of.
    drawn = [c for c, f in (config.differential or NORMAL_DIFFERENTIAL).items()
             if f > 0 and config.wbc_per_field > 0]
    library_id = check_library_classes(drawn, specimens=config.specimens, library=config.library)
    with output_dir(out_dir, overwrite=overwrite) as root:
        listed_before = _files_listed_before(root, "simulate fields")
        (root / "images").mkdir(exist_ok=True)
        (root / "masks").mkdir(exist_ok=True)
        results = run_tasks(_field_task, [(config, i, str(root)) for i in range(config.n_fields)], workers,
                             progress)
        images, annotations, failures = [], [], []
        for res in results:
            if not res["ok"]:
                failures.append({"path": res["path"], "error": res["error"]})
                continue
            images.append(res["image"])
            for a in res["anns"]:
                a["id"] = len(annotations) + 1
                annotations.append(a)
        coco = {
            "info": {"description": "hemotwin rendered fields (research use only)", "version": "1.0"},
            "images": images,
            "annotations": annotations,
            "categories": [{"id": k + 1, "name": n, "supercategory": "wbc" if n in LEUKOCYTE_CLASSES else n}
                           for k, n in enumerate(CATEGORY_NAMES)],
            "compartments": {c.name.lower(): int(c) for c in Compartment},
        }
        (root / "annotations.json").write_text(json.dumps(coco))
        written = {f for im in images for f in (im["file_name"], f"masks/{Path(im['file_name']).stem}_instances.png",
                                                f"masks/{Path(im['file_name']).stem}_compartments.png")}
        removed = _remove_stale(root, listed_before, written)
        write_json(root / "provenance.json",
                   provenance(command="simulate fields", config=config.model_dump(mode="json"),
                              seeds={"seed": config.seed, "item_seed": "SeedSequence([seed, i])"},
                              extra={"written": len(images), "failures": failures, "removed": removed,
                                     **({"library_id": library_id} if library_id else {})}))
    return {"out": str(root), "written": len(images), "failures": failures,
            "annotations": str(root / "annotations.json"), "removed": removed}
