"""Run monitoring for one patient or a folder of patients and write the outputs (the CLI's library face).

:func:`run_monitor` takes a :class:`MonitorRequest` (what ``hemotwin monitor`` was asked) and returns a
:class:`PatientRun` or a :class:`CohortRun`, which the command prints; :func:`monitor_patient` and
:func:`run_cohort` are the two runs it chooses between.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hemotwin.errors import InputError
from hemotwin.io.outputs import output_dir
from hemotwin.io.provenance import file_sha256, provenance
from hemotwin.io.report import RESEARCH_USE, esc, html_page, table
from hemotwin.monitoring.config import MonitorConfig
from hemotwin.monitoring.records import PatientResult
from hemotwin.monitoring.report import patient_document, write_patient_outputs
from hemotwin.monitoring.response import assess
from hemotwin.monitoring.timeline import Timeline, load_timeline, read_timeline_records

#: Columns of ``cohort.csv``.
COHORT_COLUMNS = ("patient", "file", "timepoints", "last_date", "last_call", "current_status", "last_mrd",
                  "open_alerts", "max_open_severity", "warnings")
_SEV = {"info": 0, "warning": 1, "critical": 2}


def monitor_patient(path: str | Path, out_dir: str | Path | None, *, overwrite: bool = False,
                    config: MonitorConfig | None = None, figure: bool = True,
                    command: str = "hemotwin monitor") -> tuple[Timeline, PatientResult, dict[str, str],
                                                                dict[str, Any]]:
    """Load, assess and (when ``out_dir`` is given) write one patient's figure, JSON and HTML.

    The patient is read and assessed before the output folder is made, and a folder this run created is
    removed again when writing fails before anything is in it: a failed run leaves no empty folder.

    Returns
    -------
    (timeline, result, outputs, document)
        ``outputs`` maps ``figure``/``json``/``html`` to paths (empty without ``out_dir``); ``document`` is
        the content of ``timeline.json``.
    """
    path = Path(path)
    cfg = config or MonitorConfig()
    tl = load_timeline(path)
    res = assess(tl, cfg)
    prov = provenance(command=command, config=cfg.model_dump(mode="json"), inputs={path.name: file_sha256(path)})
    outputs: dict[str, str] = {}
    if out_dir is not None:
        with output_dir(out_dir, overwrite=overwrite) as dest:
            outputs = write_patient_outputs(tl, res, dest, prov, figure=figure)
    return tl, res, outputs, patient_document(tl, res, prov)


def _row(tl: Timeline, res: PatientResult, file: str) -> dict[str, Any]:
    last = res.calls[-1] if res.calls else None
    sev = max((_SEV[e.severity] for e in res.open_alerts), default=-1)
    return {"patient": tl.patient, "file": file, "timepoints": len(tl.timepoints),
            "last_date": last.date.isoformat() if last else "", "last_call": last.label if last else "",
            "current_status": res.current_status, "last_mrd": res.last_mrd or "",
            "open_alerts": "; ".join(f"{e.severity}: {e.message} ({e.date.isoformat()})" for e in res.open_alerts),
            "max_open_severity": {-1: "", 0: "info", 1: "warning", 2: "critical"}[sev],
            "warnings": "; ".join(res.warnings)}


def run_cohort(folder: str | Path, out_dir: str | Path, *, overwrite: bool = False,
               config: MonitorConfig | None = None, figures: bool = False,
               progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Assess every patient in ``folder`` (``*.json``; ``*.csv`` may hold several) into one summary table.

    A bad file or patient does not stop the run: it is listed in ``failures`` (and in ``cohort.json`` /
    ``cohort.html``) with its error; the caller decides how to end (the command exits 3 when any failed). Per
    patient, ``patients/<pseudonym>/`` receives ``timeline.json`` and ``report.html`` (and ``timeline.png``
    with ``figures``). A run that fails before writing anything leaves no empty output folder.

    Returns
    -------
    dict
        ``rows``, ``failures`` (``file``, ``patient``, ``error``), and the paths ``csv``, ``html``, ``json``,
        ``out``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("cohort", str(folder), "a folder of patient .json/.csv files")
    cfg = config or MonitorConfig()
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in (".json", ".csv"))
    if not files:
        raise InputError("cohort", str(folder), "a folder holding at least one .json or .csv patient file")
    with output_dir(out_dir, overwrite=overwrite) as dest:
        return _cohort_into(dest, files, cfg, figures, progress)


def _cohort_into(dest: Path, files: list[Path], cfg: MonitorConfig, figures: bool,
                 progress: Callable[[int, int], None] | None) -> dict[str, Any]:
    """:func:`run_cohort`'s work, writing into the (existing) folder ``dest``."""
    rows: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    inputs: dict[str, str] = {}
    seen: set[str] = set()
    for i, f in enumerate(files):
        try:
            inputs[f.name] = file_sha256(f)
        except OSError as exc:
            failures.append({"file": f.name, "patient": f.stem, "error": f"{type(exc).__name__}: {exc}"})
            continue
        prov = provenance(command="hemotwin monitor --cohort", config=cfg.model_dump(mode="json"),
                          inputs={f.name: inputs[f.name]})
        for pid, item in read_timeline_records(f):
            if isinstance(item, Exception):
                failures.append({"file": f.name, "patient": pid, "error": str(item)})
                continue
            try:
                if item.patient in seen:
                    raise InputError(f"{f.name} patient", item.patient, "a pseudonym not used by another file")
                seen.add(item.patient)
                res = assess(item, cfg)
                pdir = dest / "patients" / _safe(item.patient)
                pdir.mkdir(parents=True, exist_ok=True)  # made with the first patient's outputs, never empty
                try:
                    write_patient_outputs(item, res, pdir, prov, figure=figures)
                except BaseException:
                    _remove_if_empty(pdir)
                    raise
                rows.append(_row(item, res, f.name))
            except Exception as exc:  # a batch lists every failure and goes on
                failures.append({"file": f.name, "patient": pid, "error": f"{type(exc).__name__}: {exc}"})
        if progress is not None:
            progress(i + 1, len(files))
    prov = provenance(command="hemotwin monitor --cohort", config=cfg.model_dump(mode="json"), inputs=inputs,
                      extra={"failures": failures})
    with open(dest / "cohort.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(COHORT_COLUMNS))
        w.writeheader()
        w.writerows(rows)
    (dest / "cohort.json").write_text(json.dumps({"research_use_only": RESEARCH_USE, "provenance": prov, "rows": rows,
                                                  "failures": failures}, indent=2) + "\n", encoding="utf-8")
    (dest / "cohort.html").write_text(cohort_html(rows, failures, prov), encoding="utf-8")
    return {"rows": rows, "failures": failures, "out": str(dest), "csv": str(dest / "cohort.csv"),
            "html": str(dest / "cohort.html"), "json": str(dest / "cohort.json")}


def _remove_if_empty(pdir: Path) -> None:
    """Remove a patient folder left empty by a failed write, and ``patients/`` when that leaves it empty."""
    for d in (pdir, pdir.parent):
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "patient"


def cohort_html(rows: list[dict[str, Any]], failures: list[dict[str, str]], prov: dict[str, Any]) -> str:
    """Self-contained HTML summary table of a cohort run (failures listed below the table)."""
    colours = {"critical": "#f4c7c3", "warning": "#fde9c0", "info": "#dbe7f7", "": "#ffffff"}
    body = [f"<tr style='background:{colours[r['max_open_severity']]}'>"
            f"<td><a href='patients/{esc(_safe(r['patient']))}/report.html'>{esc(r['patient'])}</a></td>"
            + "".join(f"<td>{esc(r[c])}</td>" for c in COHORT_COLUMNS[2:]) + "</tr>" for r in rows]
    fail = [f"<tr><td>{esc(f['file'])}</td><td>{esc(f['patient'])}</td><td>{esc(f['error'])}</td></tr>"
            for f in failures]
    page = (f"{table(('patient', *COHORT_COLUMNS[2:]), body)}\n"
            f"<h2>Failed patients</h2>\n{table(('file', 'patient', 'error'), fail, empty='none')}")
    return html_page("hemotwin monitor: cohort", page,
                     heading=f"Cohort summary: {len(rows)} patient(s), {len(failures)} failed",
                     notice="ELN 2022 response monitoring (docs/clinical_rules.md §5).", provenance=prov,
                     extra_css="td,th{font-size:13px}")


@dataclass(frozen=True, slots=True)
class MonitorRequest:
    """What one monitoring run is asked: one patient file or a cohort folder, where to write, the settings.

    Attributes
    ----------
    patient
        A patient timeline (``.json``, or a single-patient ``.csv``); exactly one of ``patient`` and ``cohort``.
    cohort
        A folder of patient files, assessed into one summary table.
    out
        Output folder (required for a cohort; for one patient, unless ``show_json``).
    overwrite
        Allow writing into an existing output folder.
    show_json
        The caller shows the result document, so one patient may be assessed without ``out``.
    horizon_days, thresholds
        The projection horizon and ``METHOD=PERCENT`` thresholds (:meth:`MonitorConfig.from_options`).
    figures
        Timeline PNG per patient; None: on for one patient, off for a cohort.
    """

    patient: Path | None = None
    cohort: Path | None = None
    out: Path | None = None
    overwrite: bool = False
    show_json: bool = False
    horizon_days: int = 90
    thresholds: Sequence[str] = field(default_factory=tuple)
    figures: bool | None = None


@dataclass(frozen=True, slots=True)
class PatientRun:
    """One patient assessed: the timeline, its result, the files written and the ``timeline.json`` content."""

    timeline: Timeline
    result: PatientResult
    outputs: dict[str, str]
    document: dict[str, Any]

    def json_document(self) -> dict[str, Any]:
        """The result document with the paths written (``outputs``; empty when nothing was written)."""
        return {**self.document, "outputs": self.outputs}


@dataclass(frozen=True, slots=True)
class CohortRun:
    """A cohort assessed: the summary of :func:`run_cohort` (``rows``, ``failures`` and the output paths)."""

    summary: dict[str, Any]

    def json_document(self) -> dict[str, Any]:
        """Rows, failures and the paths of ``cohort.csv``, ``cohort.html`` and ``cohort.json``."""
        s = self.summary
        return {"rows": s["rows"], "failures": s["failures"], "outputs": {k: s[k] for k in ("csv", "html", "json")}}


def run_monitor(request: MonitorRequest) -> PatientRun | CohortRun:
    """Run what ``request`` asks: one patient (:func:`monitor_patient`) or a cohort (:func:`run_cohort`).

    Parameters
    ----------
    request
        The patient file or cohort folder, output folder and settings.

    Returns
    -------
    PatientRun or CohortRun
        What the run assessed and wrote.

    Raises
    ------
    InputError
        ``patient / cohort``: neither or both given; ``threshold``: a bad threshold text; ``out``: no output
        folder for a cohort, or for one patient whose result is not shown; ``cohort``: not a folder of patient
        files; or the error of a bad patient file.
    """
    if (request.patient is None) == (request.cohort is None):
        raise InputError("patient / cohort", str(request.patient or request.cohort),
                         "either a patient file or a cohort folder")
    cfg = MonitorConfig.from_options(horizon_days=request.horizon_days, thresholds=request.thresholds)
    if request.cohort is not None:
        if request.out is None:
            raise InputError("out", None, "an output folder for the cohort summary")
        return CohortRun(run_cohort(request.cohort, request.out, overwrite=request.overwrite, config=cfg,
                                    figures=bool(request.figures)))
    if request.out is None and not request.show_json:
        raise InputError("out", None, "an output folder (or the result shown as JSON)")
    tl, res, outputs, doc = monitor_patient(request.patient, request.out, overwrite=request.overwrite,  # type: ignore[arg-type]
                                            config=cfg, figure=request.figures is not False)
    return PatientRun(tl, res, outputs, doc)
