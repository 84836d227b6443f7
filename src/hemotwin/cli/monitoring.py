"""Commands of the monitoring layer: ``monitor``.

Heavy imports live inside the command functions so that ``hemotwin --help`` stays fast; the monitoring
path itself never imports matplotlib, pandas, torch or the twin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hemotwin.cli._common import console, err_console, fail

app = typer.Typer()


def _config(horizon_days: int, thresholds: list[str] | None):
    from decimal import Decimal, InvalidOperation

    from hemotwin.errors import InputError
    from hemotwin.monitoring.response import MonitorConfig

    thr = dict(MonitorConfig().projection_threshold_pct)
    for item in thresholds or []:
        for part in item.split(","):
            key, _, val = part.partition("=")
            key = key.strip().lower()
            try:
                value = Decimal(val.strip())
            except InvalidOperation:
                raise InputError("--threshold", part, "METHOD=PERCENT, e.g. qpcr=2 or flow=1") from None
            if key not in thr or not Decimal(0) < value <= Decimal(100):
                raise InputError("--threshold", part,
                                 "METHOD=PERCENT with METHOD flow, qpcr or ngs and 0 < PERCENT <= 100")
            thr[key] = value
    return MonitorConfig(projection_horizon_days=horizon_days, projection_threshold_pct=thr)


@app.command("monitor")
def monitor(
    patient: Annotated[Path | None, typer.Argument(help="Patient timeline (.json, or single-patient .csv).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder.")] = None,
    cohort: Annotated[Path | None, typer.Option("--cohort", help="Folder of patient files: one summary table.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Allow writing into an existing output.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
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
    cohort.html and cohort.json (current status, last MRD, open alerts), continuing past bad patients.
    """
    import json

    from rich.markup import escape

    from hemotwin.errors import HemotwinError, InputError

    try:
        if (patient is None) == (cohort is None):
            raise InputError("PATIENT / --cohort", str(patient or cohort), "either a patient file or --cohort FOLDER")
        cfg = _config(horizon_days, threshold)
        if cohort is not None:
            from hemotwin.monitoring.cohort import run_cohort

            if out is None:
                raise InputError("--out", None, "an output folder for the cohort summary")
            summary = run_cohort(cohort, out, overwrite=overwrite, config=cfg, figures=bool(figures))
        else:
            from hemotwin.monitoring.cohort import monitor_patient

            if out is None and not as_json:
                raise InputError("--out", None, "an output folder (or --json to print the result)")
            tl, res, outputs, doc = monitor_patient(patient, out, overwrite=overwrite, config=cfg,  # type: ignore[arg-type]
                                                    figure=figures is not False)
    except (HemotwinError, ValueError, OSError) as exc:
        raise fail(exc) from None

    if cohort is not None:
        if as_json:
            typer.echo(json.dumps({"rows": summary["rows"], "failures": summary["failures"],
                                   "outputs": {k: summary[k] for k in ("csv", "html", "json")}}, indent=2))
        else:
            for r in summary["rows"]:
                sev = r["max_open_severity"]
                tag = f" [{'red' if sev == 'critical' else 'yellow'}]{sev}[/]" if sev in ("warning", "critical") else ""
                console.print(f"[bold]{escape(r['patient'])}[/]: {escape(r['current_status'])}{tag}")
            console.print(f"{len(summary['rows'])} patient(s) -> [bold]{escape(summary['html'])}[/]")
        for f in summary["failures"]:
            err_console.print(f"[yellow]failed[/] {escape(f['file'])} ({escape(f['patient'])}): {escape(f['error'])}")
        if summary["failures"]:
            err_console.print(f"[yellow]{len(summary['failures'])} patient(s) failed[/] (listed in cohort.json)")
            raise typer.Exit(code=1)
        return
    if as_json:
        doc["outputs"] = outputs
        typer.echo(json.dumps(doc, indent=2))
        return
    console.print(f"[bold]{escape(tl.patient)}[/]: {escape(res.current_status)}")
    console.print(f"last call: {escape(res.calls[-1].label if res.calls else 'none')}; "
                  f"last MRD: {escape(res.last_mrd or 'none')}")
    for e in res.open_alerts:
        colour = "red" if e.severity == "critical" else "yellow"
        console.print(f"[{colour}]{e.severity}[/] {e.date.isoformat()}: {escape(e.message)}")
    for w in res.warnings:
        err_console.print(f"[yellow]warning[/] {escape(w)}")
    console.print(f"report -> [bold]{escape(outputs['html'])}[/] (research use only)")
