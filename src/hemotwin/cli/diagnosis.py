"""Commands of the diagnosis layer.

Heavy imports live inside the command functions so that ``hemotwin --help`` stays fast.

* ``hemotwin analyze SAMPLE --out DIR``: differential with exact intervals, flags, report.html/json;
* ``hemotwin simulate sample --case aml --out DIR``: a virtual patient's smear with its truth;
* ``hemotwin calibrate-chain --profile P --out FILE``: the detection + classification chain's
  confusion matrix on twin fields (used for the misclassification-corrected interval).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hemotwin.cli._common import EXPECTED_ERRORS, Bar, console, err_console, fail, n_workers

app = typer.Typer()
simulate = typer.Typer()


@app.command("analyze")
def analyze_cmd(
    sample: Annotated[Path, typer.Argument(help="Folder of field images, one image, or a large TIFF/OME-TIFF.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder (report.html, report.json).")],
    model: Annotated[Path | None, typer.Option("--model", "-m", help="Model file (default: shipped model).")] = None,
    um_per_px: Annotated[float | None, typer.Option(
        "--um-per-px", help="Pixel size for fields whose files carry none (else estimated from red cells).")] = None,
    min_confidence: Annotated[float, typer.Option(
        "--min-confidence", help="Cells below this top probability go to the review list.")] = 0.5,
    specimen: Annotated[str, typer.Option("--specimen", help="blood | marrow")] = "blood",
    calibration: Annotated[str, typer.Option(
        "--calibration", help="auto | none | chain calibration file (corrected interval).")] = "auto",
    profile: Annotated[str | None, typer.Option(
        "--profile", "-p", help="Use the calibration of this preset (default: matched by pixel size).")] = None,
    wbc: Annotated[float | None, typer.Option("--wbc", help="White count x10^9/L (absolute counts).")] = None,
    backend: Annotated[str, typer.Option("--backend", help="onnxruntime | torch")] = "onnxruntime",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the corrected-interval sampler.")] = 0,
    workers: Annotated[int, typer.Option("--workers", "-w", help="Processes for fields; 0 = all cores.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Allow writing into an existing folder.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Analyse a smear: differential with exact 95 % intervals, flags, report.html + report.json.

    Detects and classifies the white cells of every field, refers low-confidence cells for review,
    applies the blast thresholds of CLINICAL_RULES §1 and writes a self-contained report (research use only).
    """
    import json

    from pydantic import ValidationError

    from hemotwin.diagnosis.analyze import AnalysisConfig, analyze

    try:
        cfg = AnalysisConfig(model=str(model) if model else None, um_per_px=um_per_px, min_confidence=min_confidence,
                             specimen=specimen, calibration=calibration, profile=profile, wbc_1e9_per_l=wbc,
                             backend=backend, seed=seed)
    except ValidationError as exc:
        err = exc.errors()[0]
        opt = {"min_confidence": "--min-confidence", "um_per_px": "--um-per-px", "specimen": "--specimen",
               "wbc_1e9_per_l": "--wbc", "backend": "--backend"}.get(str(err["loc"][0]), str(err["loc"][0]))
        err_console.print(f"[bold red]error:[/] {opt}: got {err.get('input')!r}; expected "
                          f"{err.get('msg', 'a valid value').replace('Input should be ', '')}")
        raise typer.Exit(code=2) from None
    try:
        with Bar("analysing fields") as bar:
            res = analyze(sample, out, config=cfg, overwrite=overwrite, workers=n_workers(workers), progress=bar)
    except EXPECTED_ERRORS as exc:
        raise fail(exc) from None
    r = res["result"]
    if as_json:
        from hemotwin.diagnosis.report import json_ready

        keys = ("summary", "counts", "blast_percent", "calibration_note")
        typer.echo(json.dumps(json_ready({k: r[k] for k in keys} | {
            "flags": {f["id"]: f["state"] for f in r["flags"]}, "html": res["html"], "json": res["json"]}), indent=2))
    else:
        console.print(r["summary"])
        for f in r["flags"]:
            if f["state"] != "negative":
                colour = "red" if f["state"] == "positive" else "yellow"
                console.print(f"  [{colour}]{f['state']:13s}[/] {f['title']}  [dim]({f['source'][:70]})[/]")
        console.print(f"[dim]{r['calibration_note']}[/]")
        console.print(f"report -> [bold]{res['html']}[/] and {res['json']}")
        console.print("[dim]For research use only.[/]")
    for s in r["sample"]["skipped"][:20]:
        err_console.print(f"[yellow]skipped[/] {s['field']}: {s['reason']}")
    if r["sample"]["skipped"]:
        err_console.print(f"[yellow]{len(r['sample']['skipped'])} field(s) skipped[/] (listed in the report)")
    if r["counts"]["n_classified"] == 0:
        err_console.print("[bold red]no white cell could be classified[/]: the report explains why")
        raise typer.Exit(code=1)


@simulate.command("sample")
def simulate_sample_cmd(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder.")] = None,
    case: Annotated[str, typer.Option("--case", help="Virtual patient (see --list): normal, aml, apl ...")] = "normal",
    cells: Annotated[int, typer.Option("--cells", "-n", help="White cells in the sample.")] = 200,
    profile: Annotated[str, typer.Option("--profile", "-p", help="Preset name or profile file.")] = "analyzer-100x",
    seed: Annotated[int, typer.Option("--seed", help="Run seed.")] = 0,
    workers: Annotated[int, typer.Option("--workers", "-w", help="Processes; 0 = all cores.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Allow writing into an existing output.")] = False,
    list_cases: Annotated[bool, typer.Option("--list", help="List the virtual patients and exit.")] = False,
) -> None:
    """A virtual patient's smear with its true differential (truth.json).

    Fields are enriched in white cells so that a 200-cell count needs about a dozen fields.
    """
    import time

    from pydantic import ValidationError

    from hemotwin.diagnosis.cases import load_cases
    from hemotwin.diagnosis.virtual import SampleConfig, render_sample

    if list_cases:
        for c in load_cases().values():
            console.print(f"[bold]{c.name}[/]  {c.title} (blasts {c.true_blast_percent:.1f} %)")
        return
    if out is None:
        err_console.print("[bold red]error:[/] --out: missing; expected the output folder of the sample")
        raise typer.Exit(code=2)
    try:
        cfg = SampleConfig(case=case, cells=cells, profile=profile, seed=seed)
        t0 = time.perf_counter()
        with Bar("rendering fields") as bar:
            s = render_sample(cfg, out, overwrite=overwrite, workers=n_workers(workers), progress=bar)
    except ValidationError as exc:
        err = exc.errors()[0]
        err_console.print(f"[bold red]error:[/] --{err['loc'][0]!s}: got {err.get('input')!r}; expected "
                          f"{err.get('msg', 'a valid value').replace('Input should be ', '')}")
        raise typer.Exit(code=2) from None
    except EXPECTED_ERRORS as exc:
        raise fail(exc) from None
    t = s["truth"]
    console.print(f"[green]{s['fields']}[/] fields, {t['cells']} white cells ({t['case']}: true blasts "
                  f"{t['true_blast_percent']:.1f} %, realised {t['realised_blast_percent']:.1f} %) in "
                  f"{time.perf_counter() - t0:.1f} s -> [bold]{s['out']}[/]")
    for f in s["failures"][:10]:
        err_console.print(f"[yellow]failed[/] {f['path']}: {f['error']}")
    if s["failures"]:
        raise typer.Exit(code=1)


@app.command("calibrate-chain")
def calibrate_chain_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Calibration JSON file to write.")],
    profile: Annotated[str, typer.Option("--profile", "-p", help="Preset name or profile file.")] = "analyzer-100x",
    model: Annotated[Path | None, typer.Option("--model", "-m", help="Model file (default: shipped model).")] = None,
    per_class: Annotated[int, typer.Option("--per-class", "-n", help="Twin cells per class.")] = 300,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the calibration fields.")] = 90210,
    workers: Annotated[int, typer.Option("--workers", "-w", help="Rendering processes; 0 = all cores.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing file.")] = False,
) -> None:
    """Measure detection + classification on twin fields (for the corrected interval of analyze).

    Writes the chain's confusion matrix and per-class detection rates under one scanner profile.
    """
    from hemotwin.diagnosis.calibration import calibrate_chain
    from hemotwin.io.outputs import prepare_output_file

    try:
        dest = prepare_output_file(out, overwrite=overwrite)
        with Bar("calibration fields") as bar:
            cal = calibrate_chain(profile, model=model, cells_per_class=per_class, seed=seed,
                                  workers=n_workers(workers), progress=bar)
    except EXPECTED_ERRORS as exc:
        raise fail(exc) from None
    dest.write_text(cal.model_dump_json(indent=1) + "\n")
    console.print(f"chain accuracy {cal.accuracy():.1%} on {sum(cal.detected)} detected twin cells "
                  f"({sum(cal.missed)} missed) under {cal.profile} -> [bold]{dest}[/]")
