"""Render a virtual patient's smear: fields enriched in white cells, with the true differential.

A real blood smear holds one white cell per 500-1000 red cells, so a 200-cell count needs a
hundred or more 100x fields. The virtual sample keeps the red-cell monolayer but places about 15
white cells per 100 x 100 µm (``wbc_per_10k_um2``), so 200 cells take about a dozen fields; this
enrichment is recorded in ``truth.json`` and changes nothing a per-cell classifier sees.

Labels. The ``cells`` white-cell labels are drawn at once from the case's differential (a
multinomial draw: the realised counts differ from the population fractions as a real sample's
do), shuffled, and dealt to the fields. ``truth.json`` keeps both: the population differential
(what an interval should cover) and the realised labels per field.

Layout written by :func:`render_sample`::

    DIR/fields/field_0000.png    RGB field, µm/px in the PNG pHYs chunk
    DIR/masks/field_0000.png     uint16 instance ids (ground truth)
    DIR/truth.json               case, population and realised differential, cells per field
    DIR/provenance.json          configuration, seeds, version
"""

from __future__ import annotations

import math
import multiprocessing as mp
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from hemotwin.diagnosis.cases import Case, get_case
from hemotwin.errors import InputError
from hemotwin.taxonomy import BLAST_CODES, CLASS_CODES
from hemotwin.twin.datasets import item_seed

__all__ = ["FIELD_UM", "SampleConfig", "iter_fields", "pool_map", "render_field_task", "render_sample",
           "sample_plan"]

Progress = Callable[[int, int], None]

#: Side of a virtual field in µm (about one 100x camera field).
FIELD_UM = 110.0


class SampleConfig(BaseModel):
    """What ``simulate sample`` renders (stored in provenance.json).

    Attributes
    ----------
    case
        Virtual patient (a key of cases.yaml).
    cells
        White-cell objects in the sample (EBO and KSC included).
    profile
        Scanner preset name or profile file.
    seed
        Run seed; each field derives its own.
    wbc_per_10k_um2
        White-cell enrichment (per 100 x 100 µm of field).
    rbc_per_10k_um2
        Red-cell density of the monolayer.
    field_um
        Field side in µm (rounded to whole pixels of the profile, at most the sensor).
    specimens, library
        White cells drawn by the twin (``procedural``), taken from a cell library (``real``), or
        both (``mixed``: the library where it holds the class); docs/cell_library.md.
    """

    model_config = ConfigDict(extra="forbid")

    case: str
    cells: int = Field(200, ge=1, le=20_000)
    profile: str = "analyzer-100x"
    seed: int = Field(0, ge=0)
    wbc_per_10k_um2: float = Field(15.0, gt=0, le=30.0)
    rbc_per_10k_um2: float = Field(150.0, ge=0, le=400.0)
    field_um: float = Field(FIELD_UM, ge=30.0, le=400.0)
    specimens: Literal["procedural", "real", "mixed"] = "procedural"
    library: str | None = None


def sample_plan(config: SampleConfig) -> dict[str, Any]:
    """The fields of a sample: pixel size, field size and the labels of each field (no rendering).

    Returns
    -------
    dict
        ``case`` (:class:`Case`), ``profile`` (ScannerProfile), ``size_px``, ``um_per_px`` and
        ``fields``: a list of label tuples, one per field.
    """
    from hemotwin.twin.profiles import load_profile

    case = get_case(config.case)
    prof = load_profile(config.profile)
    um = prof.camera.um_per_px
    size_px = int(min(round(config.field_um / um), *prof.camera.sensor_px))
    side = size_px * um
    per_field = max(1, round(config.wbc_per_10k_um2 * side * side / 1e4))
    rng = np.random.default_rng([config.seed, 7])
    codes = list(case.differential)
    p = np.array([case.differential[c] for c in codes])
    labels = [codes[i] for i in rng.choice(len(codes), size=config.cells, p=p / p.sum())]
    n_fields = math.ceil(config.cells / per_field)
    fields = [tuple(labels[k * per_field:(k + 1) * per_field]) for k in range(n_fields)]
    return {"case": case, "profile": prof, "size_px": size_px, "um_per_px": um, "fields": fields,
            "per_field": per_field}


def render_field_task(args: tuple) -> dict[str, Any]:
    """Compose and render one twin field of white cells (a picklable task for :func:`pool_map`).

    Parameters
    ----------
    args
        ``(profile, size_px, labels, seed, rbc_per_10k_um2, specimens, library)``: the
        ScannerProfile, field side in pixels, the white-cell labels of the field, its seed, the
        red-cell density and the white cells' source (:class:`SampleConfig`).

    Returns
    -------
    dict
        ``{"ok": True, "renderings": [...], "seed"}``, one rendering per field actually drawn (a field
        whose white cells do not fit is split in two), or ``{"ok": False, "error", "seed"}``.
    """
    prof, size_px, labels, seed, rbc_density, specimens, library = args
    from hemotwin.twin.render import render
    from hemotwin.twin.specimen import FieldSpec, compose_field

    side = size_px * prof.camera.um_per_px
    renderings = []
    # A field whose white cells do not fit (large monoblasts, smudge cells) is dealt to two fields
    # instead: the labels, not the field count, are the sample.
    queue = [(tuple(labels), seed)]
    try:
        while queue:
            labs, sd = queue.pop(0)
            spec = FieldSpec(height_um=side, width_um=side, rbc_per_10k_um2=rbc_density, wbc_labels=labs)
            try:
                sp = compose_field(spec, seed=sd, specimens=specimens, library=library)
            except InputError:
                if len(labs) < 2:
                    raise
                half = len(labs) // 2
                queue += [(labs[:half], item_seed(sd, 1)), (labs[half:], item_seed(sd, 2))]
                continue
            renderings.append(render(sp, prof, seed=sd))
    except Exception as exc:  # a batch finishes the rest and reports failures
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "seed": seed}
    return {"ok": True, "renderings": renderings, "seed": seed}


def pool_map(fn: Callable[[Any], Any], tasks: list, workers: int, progress: Progress | None) -> Iterator[Any]:
    """``fn`` over ``tasks`` in order, in ``workers`` forked processes (inline for 1), one BLAS thread each.

    Parameters
    ----------
    fn
        A picklable function of one task.
    tasks
        The tasks, in order.
    workers
        Processes (1 or fewer: run inline).
    progress
        ``progress(done, total)`` after each result.

    Yields
    ------
    Any
        ``fn(task)`` for each task, in the order of ``tasks``.
    """
    from threadpoolctl import threadpool_limits

    total = len(tasks)
    if workers <= 1 or total <= 1:
        with threadpool_limits(1):
            for k, t in enumerate(tasks):
                yield fn(t)
                if progress:
                    progress(k + 1, total)
        return
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    # One BLAS thread per process: the renderer's small products otherwise oversubscribe the cores.
    with ctx.Pool(workers, initializer=threadpool_limits, initargs=(1,)) as pool:
        for k, res in enumerate(pool.imap(fn, tasks)):
            yield res
            if progress:
                progress(k + 1, total)


def iter_fields(config: SampleConfig, *, workers: int = 1, progress: Progress | None = None
                ) -> Iterator[tuple[int, dict[str, Any]]]:
    """Render a sample's fields in memory, in order.

    Yields ``(planned_field_index, {"ok", "renderings" | "error", "seed"})``; a planned field whose
    white cells did not fit is rendered as two or more fields (``renderings`` is a list).
    """
    plan = sample_plan(config)
    tasks = [(plan["profile"], plan["size_px"], labels, item_seed(config.seed, k), config.rbc_per_10k_um2,
              config.specimens, config.library)
             for k, labels in enumerate(plan["fields"])]
    yield from enumerate(pool_map(render_field_task, tasks, workers, progress))


def truth_record(case: Case, labels: list[str], *, config: SampleConfig, extra: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
    """The truth.json content for a sample with realised ``labels``."""
    from hemotwin.diagnosis.differential import LEUKOCYTE_CODES

    counts = Counter(labels)
    n_leuk = sum(counts[c] for c in LEUKOCYTE_CODES)
    return {
        "case": case.name,
        "title": case.title,
        "source": case.source,
        "population_differential": case.differential,
        "true_blast_percent": round(case.true_blast_percent, 4),
        "blast_codes": list(BLAST_CODES),
        "expected_flags": case.expected_flags,
        "realised_counts": {c: counts[c] for c in CLASS_CODES if counts[c]},
        "realised_blast_percent": round(100 * sum(counts[c] for c in BLAST_CODES) / n_leuk, 4) if n_leuk else None,
        "cells": len(labels),
        "wbc_per_10k_um2": config.wbc_per_10k_um2,
        "enrichment_note": "White cells are enriched about 15-30x over real blood so that a 200-cell count "
                           "needs a dozen fields; red-cell density and cell morphology are unchanged.",
        **(extra or {}),
    }


def _write_field(root: Path, name: str, r, seed: int, labels: list[str]) -> dict[str, Any]:
    from PIL import Image

    from hemotwin.io.images import write_png

    write_png(root / "fields" / f"{name}.png", r.image, um_per_px=r.um_per_px)
    Image.fromarray(r.instances.astype(np.uint16)).save(root / "masks" / f"{name}.png")
    cells = []
    for o in r.objects:
        if o.kind != "wbc":
            continue
        cy, cx = o.center_um
        cells.append({"id": o.id, "label": o.label,
                      "center_px": [round(cy / r.um_per_px, 1), round(cx / r.um_per_px, 1)]})
        labels.append(o.label)
    return {"file": f"fields/{name}.png", "mask": f"masks/{name}.png", "seed": seed, "cells": cells}


def render_sample(config: SampleConfig, out_dir: str | Path, *, overwrite: bool = False, workers: int = 1,
                  progress: Progress | None = None) -> dict[str, Any]:
    """Render a virtual patient's sample to a folder (layout in the module docstring).

    Returns
    -------
    dict
        ``out``, ``fields`` (written), ``failures``, ``truth`` (the truth record) and ``um_per_px``.
    """
    from hemotwin.io.outputs import output_dir
    from hemotwin.io.provenance import provenance, write_json
    from hemotwin.twin.specimen.compose import check_library_classes

    plan = sample_plan(config)  # validates case and profile before anything is written
    # A library lacking a class the sample asks real cells of fails before any work.
    library_id = check_library_classes(sorted({c for f in plan["fields"] for c in f}),
                                       specimens=config.specimens, library=config.library)
    # A run that renders no field fails before writing anything: the folders it made go again.
    with output_dir(out_dir, overwrite=overwrite) as root:
        (root / "fields").mkdir(exist_ok=True)
        (root / "masks").mkdir(exist_ok=True)
        per_field, labels, failures = [], [], []
        k = 0
        for planned, res in iter_fields(config, workers=workers, progress=progress):
            if not res["ok"]:
                failures.append({"path": f"planned field {planned}", "error": res["error"]})
                continue
            for r in res["renderings"]:
                per_field.append(_write_field(root, f"field_{k:04d}", r, res["seed"], labels))
                k += 1
        if not per_field:
            raise InputError(str(root), [f["error"] for f in failures][:3], "at least one field rendered")
        truth = truth_record(plan["case"], labels, config=config,
                             extra={"profile": plan["profile"].name, "um_per_px": plan["um_per_px"],
                                    "field_px": plan["size_px"], "fields": per_field})
        write_json(root / "truth.json", truth)
        write_json(root / "provenance.json",
                   provenance(command="simulate sample", config=config.model_dump(mode="json"),
                              seeds={"seed": config.seed, "field_seed": "SeedSequence([seed, field_index])",
                                     "labels": "default_rng([seed, 7])"},
                              extra={"written": len(per_field), "failures": failures, "library_id": library_id,
                                     "profile": plan["profile"].model_dump(mode="json")}))
    return {"out": str(root), "fields": len(per_field), "failures": failures, "truth": truth,
            "um_per_px": plan["um_per_px"]}


def true_blast_percent(case_name: str) -> float:
    """Population blast percentage of a case (convenience for benchmarks)."""
    return get_case(case_name).true_blast_percent
