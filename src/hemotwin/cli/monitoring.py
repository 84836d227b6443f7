"""Commands of the monitoring layer: ``monitor``.

Heavy imports live inside the command functions so that ``hemotwin --help`` stays fast; the monitoring
path itself never imports matplotlib, pandas, torch or the twin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hemotwin.cli._common import EXPECTED_ERRORS, JsonOpt, OverwriteOpt, console, err_console, fail, finish_partial

app = typer.Typer()


@app.command("monitor")
def monitor(
    patient: Annotated[Path | None, typer.Argument(help="Patient timeline (.json, or single-patient .csv).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder.")] = None,
    cohort: Annotated[Path | None, typer.Option("--cohort", help="Folder of patient files: one summary table.")] = None,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
    horizon_days: Annotated[int, typer.Option("--horizon-days", min=1,
                                              help="Alert when rising MRD is projected to cross within N days.")] = 90,
    threshold: Annotated[list[str] | None, typer.Option(
        "--threshold", help="MRD level whose crossing is projected, METHOD=PERCENT (default qpcr=2, flow=5, ngs=5).")
    ] = None,
    figures: Annotated[bool | None, typer.Option("--figures/--no-figures",
                                          help="Timeline PNG per patient (default: on for one patient, off for "
                                               "--cohort).")] = None,
) -> None:
    """ELN 2022 response, relapse and MRD monitoring of a patient timeline (research use only).

    One patient: timeline.png, timeline.json and report.html in --out. --cohort FOLDER: cohort.csv,
    cohort.html and cohort.json (current status, last MRD, open alerts), continuing past bad patients: they
    are listed on stderr and in cohort.json / cohort.html, and the exit code is 3.
    """
    import json
    import warnings

    from rich.markup import escape

    from hemotwin.monitoring.cohort import CohortRun, MonitorRequest, run_monitor
    from hemotwin.monitoring.timeline import TimelineWarning

    request = MonitorRequest(patient=patient, cohort=cohort, out=out, overwrite=overwrite, show_json=as_json,
                             horizon_days=horizon_days, thresholds=tuple(threshold or ()), figures=figures)
    try:
        with warnings.catch_warnings():
            # Data warnings are recorded in the result and printed below in our words (not as Python warnings).
            warnings.simplefilter("ignore", TimelineWarning)
            run = run_monitor(request)
    except (*EXPECTED_ERRORS, OSError) as exc:
        raise fail(exc) from None

    if as_json:
        typer.echo(json.dumps(run.json_document(), indent=2))
    if isinstance(run, CohortRun):
        summary = run.summary
        if not as_json:
            for r in summary["rows"]:
                sev = r["max_open_severity"]
                tag = f" [{'red' if sev == 'critical' else 'yellow'}]{sev}[/]" if sev in ("warning", "critical") else ""
                console.print(f"[bold]{escape(r['patient'])}[/]: {escape(r['current_status'])}{tag}")
            console.print(f"{len(summary['rows'])} patient(s) -> [bold]{escape(summary['html'])}[/]")
        # A file of several patients (CSV) names the patient too; a one-patient file is named by itself.
        failed = [{"path": escape(f["file"] if Path(f["file"]).stem == f["patient"]
                                  else f"{f['file']} ({f['patient']})"), "error": escape(f["error"])}
                  for f in summary["failures"]]
        finish_partial(failed, listed_in=escape(f"{summary['json']} and cohort.html"))
        return
    if as_json:
        return
    res = run.result
    console.print(f"[bold]{escape(run.timeline.patient)}[/]: {escape(res.current_status)}")
    console.print(f"last call: {escape(res.calls[-1].label if res.calls else 'none')}; "
                  f"last MRD: {escape(res.last_mrd or 'none')}")
    for e in res.open_alerts:
        colour = "red" if e.severity == "critical" else "yellow"
        console.print(f"[{colour}]{e.severity}[/] {e.date.isoformat()}: {escape(e.message)}")
    for w in res.warnings:
        err_console.print(f"[yellow]warning[/] {escape(w)}")
    console.print(f"report -> [bold]{escape(run.outputs['html'])}[/] (research use only)")
