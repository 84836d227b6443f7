"""The smear-analysis engine: sample in, differential with intervals, flags and a report out.

One engine, one :meth:`AnalysisEngine.run` (TIAToolbox style); :func:`analyze` adds the report
files. Per field: read (:mod:`~hemotwin.diagnosis.sample`), quality check
(:func:`~hemotwin.diagnosis.quality.field_quality`), white-cell detection
(:func:`~hemotwin.vision.detect.detect_cells`), crop and classify
(:class:`~hemotwin.diagnosis.classify.CellClassifier`). Then: the differential of the counted cells
with exact intervals, the misclassification-corrected interval when a chain calibration matches the
model and pixel size, the flags, and the review list.

Nothing stops midway: a field that cannot be read, has no known pixel size, is blank, or is not a
smear is skipped and listed with the reason; a sample where nothing could be counted still gets a
report that says so, with no flags (they are not assessable without counted cells). A count under
:data:`MIN_DIFFERENTIAL_CELLS` leukocytes is reported with a warning. The settings are checked (and a
scanner or calibration file read) before the first field is touched.

Which cells are counted
    * cells cut by the field edge are not counted (they would be counted twice across adjacent
      fields, and their crop is incomplete); tiles of a large scan use their core instead;
    * a cell whose top class probability is below ``min_confidence`` is **referred** (review list),
      not counted;
    * the misclassification-corrected estimate uses *every* classified cell, referred ones included,
      because the chain calibration's confusion matrix was measured on all of them.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from hemotwin.diagnosis.classify import CROP_MARGIN, DEFAULT_CONFIDENCE, CellClassifier, native_view, thumbnail
from hemotwin.diagnosis.differential import LEUKOCYTE_CODES, count_differential
from hemotwin.diagnosis.flags import RARE_CONFIDENCE
from hemotwin.errors import HemotwinError, InputError
from hemotwin.io import pixel_size
from hemotwin.io.report import RESEARCH_USE
from hemotwin.taxonomy import BLAST_CODES, CLASS_CODES

__all__ = ["MIN_DIFFERENTIAL_CELLS", "REPORT_SCHEMA_VERSION", "AnalysisConfig", "AnalysisEngine", "analyze"]

Progress = Callable[[int, int], None]

#: Version of report.json (docs/report_schema.md). Bump the major part on breaking changes.
REPORT_SCHEMA_VERSION = "1.3"
#: Fewest counted leukocytes for a differential the report does not warn about: 100 cells is the
#: smallest conventional manual count (docs/clinical_rules.md §2, counting statistics; 200 for a blood
#: blast percentage, 500 in marrow). Below it every interval is wide (0 of 100 still allows 3.6 %).
MIN_DIFFERENTIAL_CELLS = 100
#: A sample is outside what the classifier reads when more than this share of its classified cells
#: falls below the review threshold. Where the chain is validated (twin virtual patients under the
#: four scanner presets, docs/benchmarks.md) 0.1-1.2 % of cells are referred; on a microscope the
#: shipped model does not read (BCCD's 364 fields) 36.5 % are. A quarter lies between the two, far
#: above the validated range; then no flag is called positive and the headline says why.
MAX_REFERRED_SHARE = 0.25
#: Fewest classified cells the share above is judged on (fewer cells: the count warning speaks).
MIN_CELLS_FOR_SHARE = 20


class AnalysisConfig(BaseModel):
    """Settings of an analysis (stored in the report's provenance).

    Attributes
    ----------
    model
        Model file; None = the shipped model.
    backend
        Inference backend (``onnxruntime`` or ``torch``).
    um_per_px
        Pixel size for fields whose files carry none.
    scanner
        Scanner file (:class:`~hemotwin.vision.scanner.ScannerCalibration`, ``hemotwin calibrate``):
        its pixel size serves fields whose files carry none, as an option-level source recorded as
        ``"option (scanner file <name>)"``; the file goes into the provenance. Not with ``um_per_px``.
    min_confidence
        Review threshold on the top class probability.
    rare_confidence
        Top probability a rare-class call (blasts, NRBC, smudge cells ...) needs to count as evidence
        for a flag (the evidence rule, :mod:`hemotwin.diagnosis.flags`); below it the call is counted
        but unsure, and goes to the review list.
    specimen
        ``blood`` or ``marrow`` (which WHO blast criterion applies).
    calibration
        ``"auto"`` (shipped calibration matching model and pixel size), ``"none"``, or a calibration file.
    profile
        Scanner preset whose calibration to use (overrides the pixel-size match).
    wbc_1e9_per_l
        White count, when known (absolute counts in the flags).
    seed
        Seed of the corrected-interval sampler.
    thumbnails
        Embed a thumbnail of every cell in the report.
    tile
        Tile a single TIFF on the fly: None = when large, True = always, False = never.
    """

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    backend: Literal["onnxruntime", "torch"] = "onnxruntime"
    um_per_px: float | None = Field(default=None, gt=0)
    scanner: str | None = None
    min_confidence: float = Field(default=DEFAULT_CONFIDENCE, ge=0.0, le=1.0)
    rare_confidence: float = Field(default=RARE_CONFIDENCE, ge=0.0, le=1.0)
    specimen: Literal["blood", "marrow"] = "blood"
    calibration: str = "auto"
    profile: str | None = None
    wbc_1e9_per_l: float | None = Field(default=None, gt=0)
    seed: int = Field(default=0, ge=0)
    thumbnails: bool = True
    tile: bool | None = None


@dataclass
class CellResult:
    """One classified white cell."""

    id: int
    field: str
    bbox: tuple[int, int, int, int]
    centroid: tuple[float, float]
    call: str
    confidence: float
    referred: bool
    top: list[tuple[str, float]]
    detection_score: float
    thumb: bytes | None = None
    native: bytes | None = None
    native_px: int = 0
    um_per_px: float | None = None


@dataclass
class FieldResult:
    """What happened to one field."""

    name: str
    status: Literal["analysed", "no_wbc", "skipped"]
    um_per_px: float | None = None
    um_source: str | None = None
    n_detected: int = 0
    n_classified: int = 0
    n_border: int = 0
    n_other_tile: int = 0
    n_rbc: int = 0
    n_platelets: int = 0
    quality: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    reason: str | None = None
    seconds: float = 0.0


class AnalysisEngine:
    """Detection + classification + counting over a sample, with one :meth:`run`.

    Parameters
    ----------
    config
        Settings (model, thresholds, calibration ...).
    num_threads
        Inference threads (None: all cores).

    Examples
    --------
    >>> engine = AnalysisEngine(AnalysisConfig())              # doctest: +SKIP
    >>> result = engine.run("sample_folder")                    # doctest: +SKIP
    >>> result["blast_percent"]["primary"]["lo"]                # doctest: +SKIP
    """

    # Resolved from the config at construction (class defaults: an engine assembled without __init__,
    # e.g. to summarise given cells, has no option-level pixel size and no calibration file).
    _um_option: float | None = None
    _scanner_label: str | None = None
    _calibration_file: Any = None

    def __init__(self, config: AnalysisConfig | None = None, *, num_threads: int | None = None) -> None:
        self.config = config or AnalysisConfig()
        self.classifier = CellClassifier.open(self.config.model, backend=self.config.backend,
                                              num_threads=num_threads)
        # Every setting that names a file or a preset is checked now, before any field is read: a bad
        # calibration file found after an hour of fields would throw the hour away.
        self._um_option, self._scanner_label = _scanner_pixel_size(self.config)
        self._calibration_file = self._check_calibration()

    def _check_calibration(self):
        """The chain calibration file of ``config.calibration`` (None for auto/none); checks ``profile``."""
        from hemotwin.diagnosis.calibration import shipped_calibrations
        from hemotwin.diagnosis.correction import ChainCalibration

        cfg = self.config
        if cfg.profile is not None:
            known = sorted({c.profile for c in shipped_calibrations()})
            if cfg.profile not in known:
                raise InputError("profile", cfg.profile, f"a preset with a shipped calibration: {', '.join(known)}")
        if cfg.calibration in ("auto", "none"):
            return None
        path = Path(cfg.calibration)
        if not path.is_file():
            raise InputError("calibration", cfg.calibration, "auto, none, or an existing chain calibration file "
                             "(hemotwin calibrate-chain)")
        try:
            cal = ChainCalibration.from_file(path)
        except InputError as exc:
            raise InputError("calibration", cfg.calibration, exc.expected) from exc
        if cal.model_sha256 != self.classifier.sha256:
            raise InputError("calibration", cfg.calibration, "a calibration measured with the model in use "
                             f"(sha256 {self.classifier.sha256[:12]}..., the file has {cal.model_sha256[:12]}...)")
        return cal

    # ------------------------------------------------------------------------------- fields

    def _classify(self, fr: FieldResult, kept: list[dict[str, Any]], crops: np.ndarray | None,
                  next_id: int) -> list[CellResult]:
        if not kept or crops is None:
            return []
        clf = self.classifier
        probs = clf.probabilities(crops)
        calls, conf, referred = clf.calls(probs, threshold=self.config.min_confidence)
        cells = []
        for k, d in enumerate(kept):
            order = np.argsort(probs[k])[::-1][:3]
            cells.append(CellResult(
                id=next_id + k, field=fr.name, bbox=d["bbox"], centroid=d["centroid"], call=calls[k],
                confidence=round(float(conf[k]), 4), referred=bool(referred[k]),
                top=[(clf.labels[i], round(float(probs[k, i]), 4)) for i in order],
                detection_score=d["score"], thumb=thumbnail(crops[k]) if self.config.thumbnails else None,
                native=d.get("native"), native_px=int(d.get("native_px", 0)), um_per_px=fr.um_per_px))
        fr.n_classified = len(cells)
        return cells

    # ---------------------------------------------------------------------------------- run

    def run(self, sample: str | Path, *, workers: int = 1, progress: Progress | None = None) -> dict[str, Any]:
        """Analyse a sample (folder of fields, one image, or a large TIFF).

        Parameters
        ----------
        sample
            Folder of field images, one image, or a large TIFF/OME-TIFF.
        workers
            Processes that read, check and detect fields in parallel (classification stays in this
            process, batched per field).
        progress
            ``progress(done, total)`` after each field.

        Returns
        -------
        dict
            The report record (the content of report.json, see docs/report_schema.md) with an extra
            ``"_cells"`` list of :class:`CellResult` (thumbnails for the HTML report).

        Raises
        ------
        InputError
            The sample path does not exist or holds no images (nothing else stops the run).
        """
        from hemotwin.diagnosis.sample import open_sample

        t0 = time.perf_counter()
        scanner_label = self._scanner_label
        src = open_sample(sample, um_per_px=self._um_option, tile=self.config.tile)
        fields: list[FieldResult] = []
        cells: list[CellResult] = []
        geometry = (self.classifier.um_per_px, self.classifier.input_size, self.config.thumbnails)
        for k, (fr, kept, crops) in enumerate(_map_fields(src, geometry, workers)):
            if scanner_label and fr.um_source == pixel_size.OPTION:
                fr.um_source = scanner_label
            fields.append(fr)
            t1 = time.perf_counter()
            cells += self._classify(fr, kept, crops, len(cells) + 1)
            fr.seconds += time.perf_counter() - t1
            if progress:
                progress(k + 1, len(src.fields))
        t_fields = time.perf_counter() - t0
        result = self._summarise(src, fields, cells)
        dt = time.perf_counter() - t0
        n_ok = sum(f.status != "skipped" for f in fields)
        result["timing"] = {"seconds": round(dt, 3), "fields_seconds": round(t_fields, 3),
                            "fields_per_s": round(n_ok / dt, 3) if dt else None,
                            "cells_per_s": round(len(cells) / dt, 3) if dt else None}
        result["_cells"] = cells
        return result

    def _calibration(self, um_values: list[float]):
        from hemotwin.diagnosis.calibration import find_calibration

        cfg = self.config.calibration
        if cfg == "none":
            return None, 'chain calibration switched off (calibration "none"): plain Clopper–Pearson only'
        if self._calibration_file is not None:
            cal = self._calibration_file
            return cal, f"chain calibration from {cfg} (profile {cal.profile})"
        if not um_values:
            return None, "no field analysed: no calibration chosen"
        return find_calibration(self.classifier.sha256, float(np.median(um_values)), profile=self.config.profile)

    def _summarise(self, src, fields: list[FieldResult], cells: list[CellResult]) -> dict[str, Any]:
        from hemotwin.diagnosis.calibration import calibration_summary
        from hemotwin.diagnosis.correction import corrected_estimate, sample_posterior
        from hemotwin.diagnosis.flags import PROMYELOCYTES, Counting, CountingAdvice, counting_advice, evaluate_flags

        cfg = self.config
        counted = Counter(c.call for c in cells if not c.referred)
        calls_all = Counter(c.call for c in cells)
        unsure = {c.id for c in cells if not c.referred and not _confident(c, cfg)}
        confident = Counter(c.call for c in cells if not c.referred and c.id not in unsure)
        um_values = [f.um_per_px for f in fields if f.status != "skipped" and f.um_per_px]
        cal, cal_note = self._calibration(um_values)
        posterior = sample_posterior(calls_all, cal, seed=cfg.seed) if cal is not None and cells else None
        counting = Counting(counted, posterior=posterior, calls_all=calls_all, calibration=cal, confident=confident,
                            seed=cfg.seed)
        n_leukocytes = sum(counted.get(k, 0) for k in LEUKOCYTE_CODES)
        # Without a counted leukocyte every proportion is 0/0: no flag can be assessed, and none is given
        # (nine "indeterminate" flags would suggest a decision was attempted).
        flags = evaluate_flags(counting, specimen=cfg.specimen, wbc_1e9_per_l=cfg.wbc_1e9_per_l) \
            if n_leukocytes else []
        apl = any(f.id == "apl_pattern" and f.state == "positive" for f in flags)
        eq = PROMYELOCYTES if apl else ()
        diff = count_differential(counted, n_referred=sum(c.referred for c in cells), blast_equivalents=eq,
                                  unsure=Counter(c.call for c in cells if c.id in unsure))
        corrected = None
        if posterior is not None:
            rows = [corrected_estimate(posterior, (code,), name=code, count=counted.get(code, 0),
                                       n=diff.n_leukocytes, seed=cfg.seed) for code in CLASS_CODES]
            corrected = {
                "method": "misclassification-corrected",
                "note": ("Covers the true proportion given the chain's confusion matrix measured on twin fields "
                         "(every classified cell, referred ones included; the confusion matrix comes from the "
                         "calibration alone, a cut posterior); reduces to Clopper–Pearson for a perfect "
                         "classifier."),
                "calibration": calibration_summary(cal),
                "rows": [r.model_dump() for r in rows],
                "blasts": counting.estimate(BLAST_CODES, name="blasts").model_dump(),
                "blasts_with_equivalents": counting.estimate((*BLAST_CODES, *eq),
                                                             name="blasts + blast equivalents").model_dump(),
            }
        primary_blasts = counting.estimate((*BLAST_CODES, *eq),
                                           name="blasts + blast equivalents" if eq else "blasts")
        pixel_sizes = Counter(round(f.um_per_px, 4) for f in fields if f.um_per_px)
        notes = list(src.notes)
        if len(pixel_sizes) > 1:
            notes.append("fields at different pixel sizes: " + ", ".join(f"{k:g} µm/px x{v}" for k, v in
                                                                           sorted(pixel_sizes.items()))
                         + "; each field was processed at its own pixel size")
        if cal is not None and um_values:
            off = [u for u in um_values if abs(u / cal.um_per_px - 1) > 0.15]
            if off:
                notes.append(f"{len(off)} field(s) differ by more than 15 % from the calibration's pixel size "
                             f"({cal.um_per_px:g} µm/px): their error rates may differ from the calibration's")
        n_cells = len(cells)
        n_ref = sum(c.referred for c in cells)
        unsure_sample = n_cells >= MIN_CELLS_FOR_SHARE and n_ref / n_cells > MAX_REFERRED_SHARE
        if unsure_sample:
            flags = [_not_decided(f, n_ref, n_cells) for f in flags]
        review = _review_list(cells, unsure, flags, cfg)
        warnings = _count_warnings(diff.n_leukocytes, n_cells)
        if unsure_sample:
            warnings.insert(0, {"id": "classifier_unsure", "message": _unsure_message(n_ref, n_cells)})
        statement = _headline(diff, primary_blasts, flags, n_cells, cal is not None)
        if unsure_sample:
            statement = _unsure_message(n_ref, n_cells) + " " + statement
        if flags:
            advice = counting_advice(flags)
        else:
            advice = CountingAdvice(additional_cells=None, decides=[], left_open=[], policy="flags need counted cells",
                                    statement="No leukocyte was counted: the flags are not assessable.")
        return {
            "schema_version": REPORT_SCHEMA_VERSION,
            "generator": "hemotwin analyze",
            "research_use_only": RESEARCH_USE,
            "summary": statement,
            "warnings": warnings,
            "sample": {
                "path": str(src.path),
                "n_fields": len(fields),
                "n_fields_analysed": sum(f.status == "analysed" for f in fields),
                "n_fields_without_wbc": sum(f.status == "no_wbc" for f in fields),
                "n_fields_skipped": sum(f.status == "skipped" for f in fields),
                "pixel_sizes": {f"{k:g}": v for k, v in sorted(pixel_sizes.items())},
                "pixel_size_sources": dict(Counter(f.um_source for f in fields if f.um_source)),
                "notes": notes,
                "fields": [_field_json(f) for f in fields],
                "skipped": [{"field": f.name, "reason": f.reason} for f in fields if f.status == "skipped"],
            },
            "model": {"path": str(self.classifier.path), "sha256": self.classifier.sha256,
                      "labels": self.classifier.labels, "um_per_px": self.classifier.um_per_px,
                      "input_size": self.classifier.input_size},
            "settings": cfg.model_dump(mode="json"),
            "counts": {"n_detected": sum(f.n_detected for f in fields), "n_classified": n_cells,
                       "n_counted": n_cells - n_ref, "n_referred": n_ref, "n_unsure": len(unsure),
                       "n_review": len(review),
                       "n_border_excluded": sum(f.n_border for f in fields),
                       "n_leukocytes_counted": diff.n_leukocytes,
                       "n_rbc": sum(f.n_rbc for f in fields), "n_platelets": sum(f.n_platelets for f in fields)},
            "differential": {"method": "clopper-pearson",
                             "note": "Exact 95 % intervals on the counted calls (cells at or above the confidence "
                                     "threshold); they do not account for classifier error.",
                             "denominator": list(LEUKOCYTE_CODES),
                             "n_unsure": diff.n_unsure,
                             "rows": [r.model_dump() for r in diff.rows],
                             "blasts": diff.blasts.model_dump(),
                             "blasts_with_equivalents": diff.blasts_with_equivalents.model_dump(),
                             "blast_equivalent_codes": list(diff.blast_equivalent_codes)},
            "corrected": corrected,
            "calibration_note": cal_note,
            "blast_percent": {"primary": primary_blasts.model_dump(),
                              "plain": (diff.blasts_with_equivalents if eq else diff.blasts).model_dump(),
                              "primary_method": primary_blasts.method},
            "flags": [f.model_dump() for f in flags],
            "flags_assessable": bool(flags),
            "classifier_unsure": unsure_sample,
            "counting_advice": advice.model_dump(),
            "review": review,
            "cells": [{"id": c.id, "field": c.field, "bbox": list(c.bbox), "centroid": list(c.centroid),
                       "call": c.call, "confidence": c.confidence, "referred": c.referred,
                       "unsure": c.referred or c.id in unsure, "top": c.top,
                       "detection_score": round(c.detection_score, 4)} for c in cells],
        }


# Per-process state of the field workers (set before forking, so nothing large is pickled).
_WORKER: dict[str, Any] = {}


def _prepare_field(index: int) -> tuple[FieldResult, list[dict[str, Any]], np.ndarray | None]:
    """Read, check, detect and crop one field (runs in a worker process or inline)."""
    from hemotwin.diagnosis.quality import field_quality
    from hemotwin.vision.datasets import to_canonical
    from hemotwin.vision.detect import crop_cell, detect_cells

    sample, (model_um, model_size, views) = _WORKER["sample"], _WORKER["geometry"]
    src = sample.fields[index]
    t0 = time.perf_counter()
    fr = FieldResult(name=src.name, status="skipped")
    try:
        f = sample.read(src)
    except InputError as exc:
        # A refused pixel size is not an unreadable file: say which it was.
        fr.reason = str(exc) if exc.value == "no pixel size" else f"unreadable: {exc}"
        return fr, [], None
    except (HemotwinError, OSError, ValueError, MemoryError) as exc:
        fr.reason = f"unreadable: {exc}"
        return fr, [], None
    fr.um_per_px, fr.um_source, fr.notes = f.um_per_px, f.um_source, list(f.notes)
    try:
        q = field_quality(f.rgb, um_per_px=f.um_per_px)
        if not q["content"]["ok"]:
            fr.reason = q["content"]["message"]
            return fr, [], None
        fr.quality = [] if q["ok"] else list(q["messages"])
        det = detect_cells(f.rgb, um_per_px=f.um_per_px)
    except (HemotwinError, ValueError) as exc:
        fr.reason = f"could not be analysed: {exc}"
        return fr, [], None
    fr.n_rbc, fr.n_platelets = det.n_rbc, det.n_platelets
    fr.notes += [n for n in det.notes if n != "no white cell found"]
    bad = [n for n in det.notes if "not a smear" in n or "blank" in n]
    if bad:
        fr.reason = bad[0]
        return fr, [], None
    keep = []
    for d in det.wbc:
        if src.core is not None:
            r0, c0, r1, c1 = src.core
            cy, cx = d.centroid
            if not (r0 <= cy < r1 and c0 <= cx < c1):
                fr.n_other_tile += 1  # its centroid lies in a neighbouring tile's core: counted there
                continue
        if d.touches_border:
            fr.n_border += 1
        else:
            keep.append(d)
    fr.n_detected = len(det.wbc)
    fr.status = "analysed" if keep else "no_wbc"
    crops = None
    kept = [{"bbox": tuple(int(v) for v in d.bbox),
             "centroid": (round(float(d.centroid[0]), 1), round(float(d.centroid[1]), 1)),
             "score": float(d.score)} for d in keep]
    if keep:
        size_um = model_um * model_size * CROP_MARGIN
        native = [crop_cell(f.rgb, d, size_um=size_um, um_per_px=f.um_per_px) for d in keep]
        crops = np.stack([np.asarray(to_canonical(c, um_per_px=f.um_per_px, canonical_um_per_px=model_um,
                                                  size=model_size), dtype=np.uint8) for c in native])
        if views:  # the report's full view of each cell, at the field's own resolution
            for k, c in zip(kept, native, strict=True):
                k["native"], k["native_px"] = native_view(c), int(max(c.shape[:2]))
    fr.seconds = time.perf_counter() - t0
    return fr, kept, crops


def _map_fields(sample, geometry: tuple[float, int, bool], workers: int):
    """Prepared fields in order, from ``workers`` forked processes (or inline for 1)."""
    import multiprocessing as mp

    from threadpoolctl import threadpool_limits

    _WORKER.update(sample=sample, geometry=geometry)
    if len(sample.fields) > 1:
        # Estimate the pixel size once, here, so that every worker uses the same value (a no-op when
        # the pixel size is known, given, or that of a tiled scan).
        sample.prime_pixel_size()
    n = len(sample.fields)
    if workers <= 1 or n <= 1 or "fork" not in mp.get_all_start_methods():
        try:
            for i in range(n):
                yield _prepare_field(i)
        finally:
            _WORKER.clear()
        return
    ctx = mp.get_context("fork")
    try:
        with ctx.Pool(min(workers, n), initializer=threadpool_limits, initargs=(1,)) as pool:
            yield from pool.imap(_prepare_field, range(n))
    finally:
        _WORKER.clear()


def _field_json(f: FieldResult) -> dict[str, Any]:
    return {"name": f.name, "status": f.status, "um_per_px": f.um_per_px, "um_per_px_source": f.um_source,
            "n_detected": f.n_detected, "n_classified": f.n_classified, "n_border_excluded": f.n_border,
            "n_in_neighbouring_tile": f.n_other_tile, "n_rbc": f.n_rbc, "n_platelets": f.n_platelets,
            "quality": f.quality, "notes": f.notes, "reason": f.reason, "seconds": round(f.seconds, 3)}


def _scanner_pixel_size(cfg: AnalysisConfig) -> tuple[float | None, str | None]:
    """The option-level pixel size and its source label: ``um_per_px``, or the scanner file's (or none)."""
    if cfg.scanner is None:
        return cfg.um_per_px, None
    if cfg.um_per_px is not None:
        raise InputError("scanner", cfg.scanner, "either a scanner file or a pixel size (um_per_px), not both: the "
                         "scanner file holds the pixel size")
    from hemotwin.vision.scanner import ScannerCalibration

    cal = ScannerCalibration.load(cfg.scanner)
    return cal.pixel_size.um_per_px, pixel_size.label(pixel_size.OPTION, f"scanner file {Path(cfg.scanner).name}")


def _confident(cell: CellResult, cfg: AnalysisConfig) -> bool:
    """Whether a counted cell is a confident call under the evidence rule (flags.is_confident)."""
    from hemotwin.diagnosis.flags import is_confident

    return is_confident(cell.call, cell.confidence, cell.top, min_confidence=cfg.min_confidence,
                        rare_confidence=cfg.rare_confidence)


def _review_list(cells: list[CellResult], unsure: set[int], flags, cfg: AnalysisConfig) -> list[dict[str, Any]]:
    """The cells a morphologist must look at, each with its reason (docs/diagnosis.md, "The evidence rule").

    ``below_confidence``: under the review threshold, not counted. ``rare_unconfirmed``: a counted
    rare-class call below the evidence threshold. ``few_confident``: a confident call behind a flag
    left indeterminate because too few confident calls stand behind it.
    """
    from hemotwin.diagnosis.flags import EVIDENCE_GROUPS, evidence_probability
    from hemotwin.taxonomy import CLASS_NAMES

    few: dict[str, list[str]] = {}
    for f in flags:
        for ev in f.evidence:
            if f.state == "indeterminate" and ev.issue in ("too_few_confident", "confident_calls_insufficient"):
                for code in ev.codes:
                    few.setdefault(code, []).append(f.id)
    out = []
    for c in cells:
        name = CLASS_NAMES.get(c.call, c.call)
        if c.referred:
            kind = "below_confidence"
            reason = (f"top probability {c.confidence:.2f} below the review threshold {cfg.min_confidence:g}: the "
                      "model cannot place this cell; not counted")
        elif c.id in unsure:
            kind = "rare_unconfirmed"
            group = EVIDENCE_GROUPS.get(c.call, (c.call,))
            p = (f"{c.confidence:.2f}" if len(group) == 1 else
                 f"{c.confidence:.2f} ({'+'.join(group)} {evidence_probability(c.call, c.top):.2f})")
            reason = (f"called {c.call} ({name}), a rare class, at {p}: below the "
                      f"{max(cfg.rare_confidence, cfg.min_confidence):g} a rare-class call needs as evidence; counted, "
                      "but it cannot make a flag positive")
        elif c.call in few:
            kind = "few_confident"
            reason = (f"confident {c.call} ({name}) call behind {', '.join(few[c.call])}: too few confident calls "
                      "for a positive flag; confirm it")
        else:
            continue
        out.append({"cell_id": c.id, "field": c.field, "call": c.call, "confidence": c.confidence, "top": c.top,
                    "kind": kind, "reason": reason})
    return out


def _count_warnings(n_leukocytes: int, n_classified: int) -> list[dict[str, str]]:
    """The report's warnings about the size of the count (docs/clinical_rules.md §2)."""
    if n_leukocytes == 0:
        why = ("no white cell was classified" if n_classified == 0 else
               f"the {n_classified} classified cell(s) are below the confidence threshold or not leukocytes; see "
               "the review list")
        return [{"id": "no_cells_counted",
                 "message": f"No leukocyte was counted ({why}): no differential, and the flags are not assessable."}]
    if n_leukocytes < MIN_DIFFERENTIAL_CELLS:
        return [{"id": "few_cells_counted",
                 "message": f"Only {n_leukocytes} leukocyte(s) counted, fewer than the {MIN_DIFFERENTIAL_CELLS} of the "
                            "smallest conventional differential (docs/clinical_rules.md §2, counting statistics): "
                            "the intervals are wide and most flags cannot be decided; count more fields."}]
    return []


def _unsure_message(n_referred: int, n_cells: int) -> str:
    """What the report says first when the classifier cannot read a sample (:data:`MAX_REFERRED_SHARE`)."""
    return (f"The classifier is unsure on this sample: {n_referred} of {n_cells} cells "
            f"({100 * n_referred / n_cells:.0f} %) fall below the review threshold, against about 1 % on the "
            "scanners it is validated on. This microscope, stain or pixel size is probably outside what the model "
            "reads: the differential is not reliable and no flag is called positive. Review the cells, or "
            "calibrate this scanner and use a model trained for it (docs/scanner.md).")


def _not_decided(flag, n_referred: int, n_cells: int):
    """A positive flag of a sample the classifier cannot read, stated as not decided (indeterminate)."""
    if flag.state != "positive":
        return flag
    return flag.model_copy(update={
        "state": "indeterminate", "additional_cells": None, "additional_cells_method": None,
        "statement": (f"{flag.statement} Not called positive: the classifier is unsure on this sample "
                      f"({n_referred} of {n_cells} cells below the review threshold); review the cells.")})


def _headline(diff, blasts, flags, n_cells: int, corrected: bool) -> str:
    if n_cells == 0:
        return ("No white cell could be classified: no differential, no flags. See the skipped fields and quality "
                "notes.")
    if diff.n_leukocytes == 0:
        return (f"No leukocyte counted: {n_cells} classified cell(s), {diff.n_referred} referred for review; no "
                "differential, no flags.")
    pos = [f.title for f in flags if f.state == "positive"]
    ind = [f.title for f in flags if f.state == "indeterminate"]
    b = (f"{blasts.name} {blasts.percent:.1f} % (95 % {blasts.lo:.1f}-{blasts.hi:.1f}, "
         f"{'corrected for classifier error' if corrected else 'Clopper–Pearson on the calls'})")
    unsure = f" ({diff.n_unsure} of them rare-class calls without the evidence a flag needs)" if diff.n_unsure else ""
    s = f"{diff.n_counted} cells counted{unsure}, {diff.n_referred} referred for review; {b}."
    if pos:
        s += " Positive: " + "; ".join(pos) + "."
    if ind:
        s += " Indeterminate: " + "; ".join(ind) + "."
    if not pos and not ind:
        s += " No flag raised."
    return s


def analyze(sample: str | Path, out_dir: str | Path, *, config: AnalysisConfig | None = None, overwrite: bool = False,
            workers: int = 1, num_threads: int | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """Analyse a sample and write ``report.json`` and ``report.html`` to ``out_dir``.

    Returns
    -------
    dict
        ``result`` (the report record), ``json`` and ``html`` (paths).
    """
    from hemotwin.diagnosis.report import write_report
    from hemotwin.io.outputs import output_dir
    from hemotwin.io.provenance import provenance

    config = config or AnalysisConfig()
    # The output folder is checked first and goes again (if this call made it) when the analysis fails
    # before the report is written.
    with output_dir(out_dir, overwrite=overwrite) as out:
        engine = AnalysisEngine(config, num_threads=num_threads)
        result = engine.run(sample, workers=workers, progress=progress)
        inputs = {"model_sha256": engine.classifier.sha256, "sample": str(Path(sample).resolve())}
        if config.scanner is not None:
            from hemotwin.io.provenance import file_sha256

            inputs |= {"scanner": str(Path(config.scanner).resolve()), "scanner_sha256": file_sha256(config.scanner)}
        result["provenance"] = provenance(
            command="analyze", config=config.model_dump(mode="json"), seeds={"seed": config.seed},
            inputs=inputs, extra={"calibration": result["calibration_note"]})
        paths = write_report(result, out)
    return {"result": result, **{k: str(v) for k, v in paths.items()}}
