"""Commands of the twin layer: ``simulate cells|fields``, ``library build``, ``gallery``, ``profiles`` ...

Also ``demo`` and ``version``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from hemotwin.cli._common import (
    EXPECTED_ERRORS,
    Bar,
    LibraryOpt,
    OutDirOpt,
    OverwriteOpt,
    ProfileOpt,
    RandomizeOpt,
    SeedOpt,
    SpecimensOpt,
    WorkersOpt,
    console,
    fail,
    finish_partial,
    n_workers,
    report_written,
)

app = typer.Typer()
simulate = typer.Typer()
profiles = typer.Typer(help="Scanner profiles: list and show presets.", no_args_is_help=True)
app.add_typer(profiles, name="profiles")
library_app = typer.Typer(help="Cell libraries: real white cells as absorber maps for the twin.", no_args_is_help=True)
app.add_typer(library_app, name="library")

RealCellsOpt = Annotated[Path | None, typer.Option("--pbc", help="Folder of real PBC cells (<class>/<image>) to "
                                                   "show beside the twin.")]


def _render(what: str, simulate: Callable[..., dict], config: Callable[[], Any], *, out: Path, workers: int,
            overwrite: bool) -> dict:
    """Build the configuration, run one ``simulate_*`` job with a progress bar, print what it wrote."""
    try:
        cfg = config()
        t0 = time.perf_counter()
        with Bar(f"rendering {what}") as bar:
            summary = simulate(cfg, out, overwrite=overwrite, workers=n_workers(workers), progress=bar)
    except EXPECTED_ERRORS as exc:
        raise fail(exc) from None
    report_written(summary, what, t0)
    return summary


@app.command()
def version() -> None:
    """Print the package version."""
    import hemotwin

    console.print(f"hemotwin {hemotwin.__version__}")


@simulate.command("cells")
def simulate_cells_cmd(
    out: OutDirOpt,
    profile: ProfileOpt = "analyzer-100x",
    per_class: Annotated[int, typer.Option("--per-class", help="Crops per class.")] = 10,
    size: Annotated[int, typer.Option("--size", help="Crop size in pixels.")] = 256,
    classes: Annotated[list[str] | None, typer.Option("--classes", help="Class codes (repeat or comma list).")] = None,
    randomize: RandomizeOpt = 0.0,
    seed: SeedOpt = 0,
    workers: WorkersOpt = 0,
    overwrite: OverwriteOpt = False,
) -> None:
    """White-cell crops as an ImageFolder (DIR/<CODE>/<id>.png) + manifest.csv + provenance.json.

    With --overwrite, crops of an earlier run into the same folder that the new manifest does not list
    are deleted (only files that run's manifest listed).
    """
    from hemotwin.twin.datasets import CellSetConfig, simulate_cells

    summary = _render("cell crops", simulate_cells, lambda: CellSetConfig.from_options(
        profile=profile, per_class=per_class, size_px=size, classes=classes, randomize=randomize, seed=seed),
        out=out, workers=workers, overwrite=overwrite)
    console.print(f"manifest: {summary['manifest']}")


@simulate.command("fields")
def simulate_fields_cmd(
    out: OutDirOpt,
    profile: ProfileOpt = "analyzer-100x",
    fields: Annotated[int, typer.Option("--fields", help="Number of fields.")] = 4,
    size: Annotated[int, typer.Option("--size", help="Field size in pixels (square); the time grows with the "
                                      "field's area in µm (size x the profile's µm/px, squared).")] = 1024,
    wbc: Annotated[int, typer.Option("--wbc", help="White cells per field.")] = 3,
    differential: Annotated[str | None, typer.Option(
        "--differential", help='Target differential, e.g. "NGS=0.6,LYT=0.3,MON=0.1".')] = None,
    rbc_density: Annotated[float, typer.Option("--rbc-density", help="Red cells per 100x100 µm.")] = 180.0,
    specimens: SpecimensOpt = "procedural",
    library: LibraryOpt = None,
    randomize: RandomizeOpt = 0.0,
    seed: SeedOpt = 0,
    workers: WorkersOpt = 0,
    overwrite: OverwriteOpt = False,
) -> None:
    """Monolayer fields with COCO annotations.json and instance/compartment mask PNGs.

    With --overwrite, images and masks of an earlier run that the new annotations.json does not list
    are deleted.
    """
    from hemotwin.twin.datasets import FieldSetConfig, simulate_fields

    summary = _render("fields", simulate_fields, lambda: FieldSetConfig.from_options(
        profile=profile, n_fields=fields, size_px=size, wbc_per_field=wbc, differential=differential,
        rbc_per_10k_um2=rbc_density, specimens=specimens, library=None if library is None else str(library),
        randomize=randomize, seed=seed),
        out=out, workers=workers, overwrite=overwrite)
    console.print(f"annotations: {summary['annotations']}")


@library_app.command("build")
def library_build_cmd(
    images: Annotated[Path, typer.Argument(help="Labelled cell images: <label>/<file> folders or a manifest.csv "
                                           "(path,label[,fine_label]).")],
    out: OutDirOpt,
    um_per_px: Annotated[float, typer.Option("--um-per-px", help="Pixel size of the images (µm).")],
    per_class: Annotated[int | None, typer.Option("--per-class", help="At most this many cells per class.")] = None,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", help="Labels left out, not listed as skipped "
                                                      "(repeat; e.g. platelet).")] = None,
    workers: WorkersOpt = 0,
    overwrite: OverwriteOpt = False,
) -> None:
    """Unmix labelled single-cell images into a cell library (LIB/library.json + one file per class).

    Images without a white-cell label, unreadable, or whose cell is not found are listed and skipped.
    """
    from hemotwin.twin.cell_library import build_library

    t0 = time.perf_counter()
    try:
        with Bar("unmixing cells") as bar:
            s = build_library(images, out, um_per_px=um_per_px, max_per_class=per_class, exclude=exclude or (),
                              workers=n_workers(workers), overwrite=overwrite, progress=bar)
    except EXPECTED_ERRORS as exc:
        raise fail(exc) from None
    counts = ", ".join(f"{c} {n}" for c, n in s["per_class"].items())
    console.print(f"[green]{s['written']}[/] cells ({counts}) in {time.perf_counter() - t0:.1f} s -> "
                  f"[bold]{s['out']}[/] (library {s['library_id']})")
    finish_partial(s["failures"], listed_in=f"{s['out']}/library.json (failures)")


@app.command()
def gallery(
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG file to write.")],
    profile: Annotated[
        list[str] | None, typer.Option("--profile", "-p", help="Profiles (default: all presets).")
    ] = None,
    pbc: RealCellsOpt = None,
    library: LibraryOpt = None,
    seed: SeedOpt = 0,
    overwrite: OverwriteOpt = False,
) -> None:
    """Contact sheet of every class under every profile (real PBC cells and a cell library's when given)."""
    from hemotwin.twin.gallery import write_gallery

    try:
        with Bar("rendering gallery") as bar:
            path = write_gallery(out, profiles=profile, pbc_dir=pbc, library=library, seed=seed, overwrite=overwrite,
                                 progress=bar)
    except EXPECTED_ERRORS as exc:
        raise fail(exc) from None
    console.print(f"gallery -> [bold]{path}[/]")


@profiles.command("list")
def profiles_list() -> None:
    """List the preset scanner profiles."""
    from hemotwin.twin.profiles import list_presets, load_profile

    for name in list_presets():
        p = load_profile(name)
        console.print(f"[bold]{name}[/]  {p.camera.um_per_px:g} µm/px, {p.optics.magnification:g}x/{p.optics.na:g}"
                      f"  {p.description.strip()}")


@profiles.command("show")
def profiles_show(
    name: Annotated[str, typer.Argument(help="Preset name or profile file.")],
    fmt: Annotated[str, typer.Option("--format", help="yaml or json")] = "yaml",
) -> None:
    """Print a profile in full (save it, edit it, pass the file to --profile)."""
    from hemotwin.twin.profiles import load_profile

    try:
        p = load_profile(name)
    except EXPECTED_ERRORS as exc:
        raise fail(exc) from None
    typer.echo(p.to_json() if fmt == "json" else p.to_yaml())


@app.command()
def demo(
    out: OutDirOpt = Path("demo_out"),
    overwrite: OverwriteOpt = False,
    workers: WorkersOpt = 0,
    pbc: RealCellsOpt = None,
) -> None:
    """Small end-to-end job on embedded defaults: twin cells, fields and gallery, then every clinical layer."""
    from hemotwin.demo import run_demo
    from hemotwin.io.report import RESEARCH_USE

    t0 = time.perf_counter()
    try:
        outputs = run_demo(out, overwrite=overwrite, workers=n_workers(workers), real_cells=pbc, bar=Bar,
                           log=console.print)
    except EXPECTED_ERRORS as exc:
        raise fail(exc) from None
    console.print(f"\n[bold green]demo done[/] in {time.perf_counter() - t0:.0f} s. Outputs:")
    for k, v in outputs.items():
        console.print(f"  {k:24s} {Path(v).resolve()}")
    console.print(RESEARCH_USE)
