"""Commands of the diagnosis layer.

Heavy imports live inside the command functions so that ``hemotwin --help`` stays fast.

Exit codes (:mod:`hemotwin.cli._common`): 0 done; 2 nothing done (bad options or input, or no field
of the sample could be analysed); 3 finished with skipped items, each listed on stderr and in the
job's output (``report.json`` ``sample.skipped``, ``provenance.json`` ``failures``).

* ``hemotwin analyze SAMPLE --out DIR``: differential with exact intervals, flags, report.html/json;
* ``hemotwin simulate sample --case aml --out DIR``: a virtual patient's smear with its truth;
* ``hemotwin calibrate-chain --profile P --out FILE``: the detection + classification chain's
  confusion matrix on twin fields (used for the misclassification-corrected interval).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hemotwin.cli._common import (
    EXPECTED_ERRORS,
    BackendOpt,
    Bar,
    JsonOpt,
    LibraryOpt,
    ModelOpt,
    OverwriteOpt,
    ProfileOpt,
    SeedOpt,
    SpecimensOpt,
    UmPerPxOpt,
    WorkersOpt,
    console,
    err_console,
    fail,
    finish_partial,
    in_option_words,
    n_workers,
)

app = typer.Typer()
simulate = typer.Typer()


@app.command("analyze")
def analyze_cmd(
    sample: Annotated[Path, typer.Argument(help="Folder of field images, one image, or a large TIFF/OME-TIFF.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder (report.html, report.json).")],
    model: ModelOpt = None,
    um_per_px: UmPerPxOpt = None,
    scanner: Annotated[Path | None, typer.Option(
        "--scanner", help="Scanner file (hemotwin calibrate): its pixel size for fields whose files carry none "
                          "(not with --um-per-px).")] = None,
    min_confidence: Annotated[float, typer.Option(
        "--min-confidence", help="Cells below this top probability go to the review list.")] = 0.5,
    specimen: Annotated[str, typer.Option("--specimen", help="blood | marrow")] = "blood",
    calibration: Annotated[str, typer.Option(
        "--calibration", help="auto | none | chain calibration file (corrected interval).")] = "auto",
    profile: Annotated[str | None, typer.Option(
        "--profile", "-p", help="Use the calibration of this preset (default: matched by pixel size).")] = None,
    wbc: Annotated[float | None, typer.Option("--wbc", help="White count x10^9/L (absolute counts).")] = None,
    backend: BackendOpt = "onnxruntime",
    seed: SeedOpt = 0,
    workers: WorkersOpt = 0,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Analyse a smear: differential with exact 95 % intervals, flags, report.html + report.json.

    Detects and classifies the white cells of every field, refers low-confidence cells for review,
    applies the blast thresholds of docs/clinical_rules.md §1 and writes a self-contained report (research use only).
    """
    import json

    from rich.markup import escape
    from rich.padding import Padding
    from rich.text import Text

    from hemotwin.diagnosis.analyze import AnalysisConfig, analyze
    from hemotwin.io.pixel_size import check_um_per_px
    from hemotwin.io.report import RESEARCH_USE

    try:
        cfg = AnalysisConfig(model=str(model) if model else None, um_per_px=check_um_per_px(um_per_px),
                             scanner=str(scanner) if scanner else None, min_confidence=min_confidence,
                             specimen=specimen, calibration=calibration, profile=profile, wbc_1e9_per_l=wbc,
                             backend=backend, seed=seed)
        with Bar("analysing fields") as bar:
            res = analyze(sample, out, config=cfg, overwrite=overwrite, workers=n_workers(workers), progress=bar)
    except EXPECTED_ERRORS as exc:
        raise fail(exc) from None
    r = res["result"]
    if as_json:
        from hemotwin.diagnosis.report import json_ready

        keys = ("summary", "warnings", "counts", "blast_percent", "calibration_note", "flags_assessable")
        typer.echo(json.dumps(json_ready({k: r[k] for k in keys} | {
            "flags": {f["id"]: f["state"] for f in r["flags"]}, "html": res["html"], "json": res["json"]}), indent=2))
    else:
        console.print(escape(r["summary"]))
        for w in r["warnings"]:
            console.print(f"[yellow]warning:[/] {escape(w['message'])}")
        for f in r["flags"]:
            if f["state"] != "negative":
                colour = "red" if f["state"] == "positive" else "yellow"
                # The whole citation, on its own line: the console wraps it between words.
                console.print(f"  [{colour}]{f['state']:13s}[/] {escape(f['title'])}")
                console.print(Padding(Text(f"source: {f['source']}", style="dim"), (0, 0, 0, 6), expand=False))
        console.print(f"[dim]{escape(r['calibration_note'])}[/]")
        console.print(f"report -> [bold]{res['html']}[/] and {res['json']}")
        console.print(f"[dim]{RESEARCH_USE}[/]")
    skipped = [{"path": escape(s["field"]), "error": escape(in_option_words(s["reason"] or ""))}
               for s in r["sample"]["skipped"]]
    nothing = bool(skipped) and len(skipped) == r["sample"]["n_fields"]
    if nothing:
        err_console.print("[bold red]error:[/] no field of the sample could be analysed (the report says why)",
                          highlight=False)
    finish_partial(skipped, listed_in=f"{res['json']} (sample.skipped)", nothing_done=nothing)


@simulate.command("sample")
def simulate_sample_cmd(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder.")] = None,
    case: Annotated[str, typer.Option("--case", help="Virtual patient (see --list): normal, aml, apl ...")] = "normal",
    cells: Annotated[int, typer.Option("--cells", help="White cells in the sample.")] = 200,
    profile: ProfileOpt = "analyzer-100x",
    seed: SeedOpt = 0,
    workers: WorkersOpt = 0,
    overwrite: OverwriteOpt = False,
    list_cases: Annotated[bool, typer.Option("--list", help="List the virtual patients and exit.")] = False,
    specimens: SpecimensOpt = "procedural",
    library: LibraryOpt = None,
) -> None:
    """A virtual patient's smear with its true differential (truth.json).

    Fields are enriched in white cells so that a 200-cell count needs about a dozen fields.
    """
    import time

    from hemotwin.diagnosis.cases import load_cases
    from hemotwin.diagnosis.virtual import SampleConfig, render_sample
    from hemotwin.errors import InputError

    if list_cases:
        for c in load_cases().values():
            console.print(f"[bold]{c.name}[/]  {c.title} (blasts {c.true_blast_percent:.1f} %)")
        return
    try:
        if out is None:  # optional only so that --list needs none
            raise InputError("out", "missing", "the output folder of the sample")
        cfg = SampleConfig(case=case, cells=cells, profile=profile, seed=seed, specimens=specimens,
                           library=None if library is None else str(library))
        t0 = time.perf_counter()
        with Bar("rendering fields") as bar:
            s = render_sample(cfg, out, overwrite=overwrite, workers=n_workers(workers), progress=bar)
    except EXPECTED_ERRORS as exc:
        raise fail(exc) from None
    t = s["truth"]
    console.print(f"[green]{s['fields']}[/] fields, {t['cells']} white cells ({t['case']}: true blasts "
                  f"{t['true_blast_percent']:.1f} %, realised {t['realised_blast_percent']:.1f} %) in "
                  f"{time.perf_counter() - t0:.1f} s -> [bold]{s['out']}[/]")
    finish_partial(s["failures"], listed_in=f"{s['out']}/provenance.json (failures)")


@app.command("calibrate-chain")
def calibrate_chain_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Calibration JSON file to write.")],
    profile: ProfileOpt = "analyzer-100x",
    model: ModelOpt = None,
    per_class: Annotated[int, typer.Option("--per-class", help="Twin cells per class.")] = 300,
    seed: SeedOpt = 90210,
    workers: WorkersOpt = 0,
    overwrite: OverwriteOpt = False,
) -> None:
    """Measure detection + classification on twin fields (for the corrected interval of analyze).

    Writes the chain's confusion matrix and per-class detection rates under one scanner profile.
    """
    from hemotwin.diagnosis.calibration import write_chain_calibration

    try:
        with Bar("calibration fields") as bar:
            cal, dest = write_chain_calibration(out, profile, model=model, cells_per_class=per_class, seed=seed,
                                                overwrite=overwrite, workers=n_workers(workers), progress=bar)
    except EXPECTED_ERRORS as exc:
        raise fail(exc) from None
    console.print(f"chain accuracy {cal.accuracy():.1%} on {sum(cal.detected)} detected twin cells "
                  f"({sum(cal.missed)} missed) under {cal.profile} -> [bold]{dest}[/]")
