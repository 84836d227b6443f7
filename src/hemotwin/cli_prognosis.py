"""``hemotwin`` commands of the prognosis layer (registered by :mod:`hemotwin.cli`).

Heavy imports live inside the command functions so that ``hemotwin risk`` answers fast
(no torch, no pandas, no scikit-survival on that path).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

#: ``hemotwin cohort ...``: scoring here, survival fit/evaluate/predict in :mod:`hemotwin.cli_survival`.
cohort_app = typer.Typer(help="Cohort tables: score, and fit, evaluate and predict survival models.",
                         no_args_is_help=True)


def risk_cmd(
    patient: Annotated[Path, typer.Argument(help="Patient JSON file (see docs/prognosis.md).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the full report as JSON.")] = False,
    regimen: Annotated[str, typer.Option("--regimen", help="ELN 2024 context: venetoclax | ivosidenib")] = "venetoclax",
) -> None:
    """ELN 2022, ELN 2024, IPSS-R and IPSS-M of one patient, each with the rules that fired (research use)."""
    from hemotwin.cli import _fail, console
    from hemotwin.errors import HemotwinError, InputError
    from hemotwin.prognosis.patient import load_patient
    from hemotwin.prognosis.scoring import score_patient

    try:
        if regimen not in ("venetoclax", "ivosidenib"):
            raise InputError("--regimen", regimen, "venetoclax or ivosidenib")
        report = score_patient(load_patient(patient), regimen=regimen)  # type: ignore[arg-type]
    except (HemotwinError, ValueError) as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        # markup=False: karyotype strings hold square brackets ("[20]") that rich would read as markup.
        console.print(report.summary, markup=False, highlight=False)


@cohort_app.command("score")
def cohort_score_cmd(
    clinical: Annotated[Path, typer.Option("--clinical", "-c", help="Clinical CSV (CLINICAL_RULES §9).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Scores CSV to write.")],
    molecular: Annotated[Path | None, typer.Option("--molecular", "-m", help="Molecular CSV (MAF-like).")] = None,
    panel: Annotated[Path | None, typer.Option(
        "--panel", help="Text file of sequenced genes (one per line or comma-separated); 'all' = every scored "
                        "gene. Default: every gene seen in the molecular table.")] = None,
    regimen: Annotated[str, typer.Option("--regimen", help="ELN 2024 context: venetoclax | ivosidenib")] = "venetoclax",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
) -> None:
    """Score every patient (ELN 2022/2024, IPSS-R, IPSS-M) -> scores CSV + scores.provenance.json."""
    import time

    from hemotwin.cli import _fail, console, err_console
    from hemotwin.errors import HemotwinError, InputError
    from hemotwin.io.outputs import prepare_output_file
    from hemotwin.io.provenance import file_sha256, provenance, write_json
    from hemotwin.prognosis.tables import read_cohort

    t0 = time.perf_counter()
    try:
        if regimen not in ("venetoclax", "ivosidenib"):
            raise InputError("--regimen", regimen, "venetoclax or ivosidenib")
        dest = prepare_output_file(out, overwrite=overwrite)
        prov_path = dest.with_name(dest.stem + ".provenance.json")
        if prov_path.exists() and not overwrite:
            prepare_output_file(prov_path, overwrite=False)
        genes = None
        if panel is not None:
            if not panel.is_file():
                raise InputError("--panel", str(panel), "an existing text file of gene symbols")
            text = panel.read_text(encoding="utf-8")
            genes = "all" if text.strip().lower() == "all" else [g for g in text.replace(",", " ").split() if g]
            if not genes:
                raise InputError("--panel", str(panel), "at least one gene symbol")
        tables = read_cohort(clinical, molecular)
        from hemotwin.prognosis.scoring import RESEARCH_USE, score_cohort

        scores = score_cohort(tables.clinical, tables.molecular, sequenced_genes=genes,  # type: ignore[arg-type]
                              regimen=regimen)  # type: ignore[arg-type]
        scores.to_csv(dest, index=False, float_format="%.4g")
        inputs = {"clinical": file_sha256(clinical)}
        if molecular is not None:
            inputs["molecular"] = file_sha256(molecular)
        if panel is not None:
            inputs["panel"] = file_sha256(panel)
        write_json(prov_path, provenance(
            command="cohort score",
            config={"clinical": str(clinical), "molecular": str(molecular) if molecular else None,
                    "panel": genes if genes is not None else "genes seen in the molecular table",
                    "regimen": regimen, "out": str(dest)},
            inputs=inputs, extra={"table_warnings": [str(w) for w in tables.warnings], "n_patients": len(scores)}))
    except (HemotwinError, ValueError) as exc:
        raise _fail(exc) from None
    n = len(scores)
    console.print(f"{n} patients scored in {time.perf_counter() - t0:.1f} s -> [bold]{dest}[/] (+ {prov_path.name})")
    for col in ("ELN2022", "ELN2024", "IPSSR", "IPSSM"):
        counts = scores[col].replace("", "not computable").value_counts()
        console.print(f"  {col}: " + ", ".join(f"{k} {v}" for k, v in counts.items()), markup=False)
    n_warn = int((scores["warnings"] != "").sum())
    for w in tables.warnings[:10]:
        err_console.print(f"warning: {w}", markup=False, highlight=False)
    console.print(f"{len(tables.warnings)} table warning(s); {n_warn} patient(s) with warnings (column 'warnings')")
    console.print(RESEARCH_USE)


def register(app: typer.Typer) -> None:
    """Add this layer's commands to the top-level ``hemotwin`` app."""
    from hemotwin import cli_survival

    app.command("risk")(risk_cmd)
    cli_survival.register(cohort_app)
    app.add_typer(cohort_app, name="cohort")
