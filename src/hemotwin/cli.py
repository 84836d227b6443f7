"""The ``hemotwin`` command line: a thin face over the library (typer + rich)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

import hemotwin
from hemotwin.errors import HemotwinError, InputError

app = typer.Typer(
    name="hemotwin",
    help="Optical twin of the stained blood smear (research use only).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
simulate_app = typer.Typer(help="Render synthetic cells and fields with exact ground truth.", no_args_is_help=True)
profiles_app = typer.Typer(help="Scanner profiles: list and show presets.", no_args_is_help=True)
app.add_typer(simulate_app, name="simulate")
app.add_typer(profiles_app, name="profiles")

console = Console()
err_console = Console(stderr=True)


#: Configuration field -> the CLI option that sets it (for error messages).
_OPTION_OF = {"size_px": "--size", "per_class": "--per-class", "n_fields": "--n", "wbc_per_field": "--wbc",
              "rbc_per_10k_um2": "--rbc-density", "randomize": "--randomize", "seed": "--seed",
              "classes": "--classes", "differential": "--differential"}


def _fail(exc: Exception) -> typer.Exit:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err.get("loc") else "(option)"
        expected = err.get("msg", "a valid value").replace("Input should be ", "")
        exc = InputError(_OPTION_OF.get(field, field), err.get("input"), expected)
    err_console.print(f"[bold red]error:[/] {exc}")
    return typer.Exit(code=2)


class _Bar:
    """Rich progress bar exposing the ``progress(done, total)`` callback the library takes."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                           TimeRemainingColumn(), console=err_console, transient=False)
        self._task = None

    def __enter__(self) -> Callable[[int, int], None]:
        self._p.__enter__()

        def cb(done: int, total: int) -> None:
            if self._task is None:
                self._task = self._p.add_task(self.label, total=total)
            self._p.update(self._task, completed=done)

        return cb

    def __exit__(self, *exc) -> None:
        self._p.__exit__(*exc)


def _workers(w: int) -> int:
    import os

    return max(1, os.cpu_count() or 1) if w <= 0 else w


def _report(summary: dict, what: str, t0: float) -> None:
    dt = time.perf_counter() - t0
    console.print(f"[green]{summary['written']}[/] {what} in {dt:.1f} s -> [bold]{summary['out']}[/]")
    for f in summary["failures"][:20]:
        err_console.print(f"[yellow]failed[/] {f['path']}: {f['error']}")
    if summary["failures"]:
        err_console.print(f"[yellow]{len(summary['failures'])} item(s) failed[/] (listed in provenance.json)")
        raise typer.Exit(code=1)


ProfileOpt = Annotated[str, typer.Option("--profile", "-p", help="Preset name or JSON/YAML profile file.")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Run seed (items derive theirs from it).")]
WorkersOpt = Annotated[int, typer.Option("--workers", "-w", help="Processes; 0 = all cores.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Allow writing into an existing output.")]
RandOpt = Annotated[float, typer.Option("--randomize", help="Strength of per-item profile randomisation (0 = off).")]


@app.command()
def version() -> None:
    """Print the package version."""
    console.print(f"hemotwin {hemotwin.__version__}")


@simulate_app.command("cells")
def simulate_cells_cmd(
    out: OutOpt,
    profile: ProfileOpt = "analyzer-100x",
    per_class: Annotated[int, typer.Option("--per-class", "-n", help="Crops per class.")] = 10,
    size: Annotated[int, typer.Option("--size", help="Crop size in pixels.")] = 256,
    classes: Annotated[list[str] | None, typer.Option("--classes", help="Class codes (repeat or comma list).")] = None,
    randomize: RandOpt = 0.0,
    seed: SeedOpt = 0,
    workers: WorkersOpt = 0,
    overwrite: OverwriteOpt = False,
) -> None:
    """White-cell crops as an ImageFolder (DIR/<CODE>/<id>.png) + manifest.csv + provenance.json."""
    from hemotwin.twin.datasets import CellSetConfig, check_classes, simulate_cells
    from hemotwin.twin.profiles import load_profile

    try:
        codes = None if not classes else check_classes([c for item in classes for c in item.split(",") if c])
        cfg = CellSetConfig(profile=load_profile(profile), per_class=per_class, size_px=size,
                            classes=codes or CellSetConfig.model_fields["classes"].default_factory(),
                            randomize=randomize, seed=seed)
        t0 = time.perf_counter()
        with _Bar("rendering cells") as bar:
            summary = simulate_cells(cfg, out, overwrite=overwrite, workers=_workers(workers), progress=bar)
    except (HemotwinError, ValueError) as exc:
        raise _fail(exc) from None
    _report(summary, "cell crops", t0)
    console.print(f"manifest: {summary['manifest']}")


@simulate_app.command("fields")
def simulate_fields_cmd(
    out: OutOpt,
    profile: ProfileOpt = "analyzer-100x",
    n: Annotated[int, typer.Option("--n", "-n", help="Number of fields.")] = 4,
    size: Annotated[int, typer.Option("--size", help="Field size in pixels (square).")] = 1024,
    wbc: Annotated[int, typer.Option("--wbc", help="White cells per field.")] = 3,
    differential: Annotated[str | None, typer.Option(
        "--differential", help='Target differential, e.g. "NGS=0.6,LYT=0.3,MON=0.1".')] = None,
    rbc_density: Annotated[float, typer.Option("--rbc-density", help="Red cells per 100x100 µm.")] = 180.0,
    randomize: RandOpt = 0.0,
    seed: SeedOpt = 0,
    workers: WorkersOpt = 0,
    overwrite: OverwriteOpt = False,
) -> None:
    """Monolayer fields with COCO annotations.json and instance/compartment mask PNGs."""
    from hemotwin.twin.datasets import FieldSetConfig, simulate_fields
    from hemotwin.twin.profiles import load_profile

    try:
        diff = None
        if differential:
            diff = {}
            for part in differential.split(","):
                key, _, val = part.partition("=")
                try:
                    diff[key.strip().upper()] = float(val)
                except ValueError:
                    raise InputError("--differential", part, "CODE=fraction pairs") from None
        cfg = FieldSetConfig(profile=load_profile(profile), n_fields=n, size_px=size, wbc_per_field=wbc,
                             differential=diff, rbc_per_10k_um2=rbc_density, randomize=randomize, seed=seed)
        t0 = time.perf_counter()
        with _Bar("rendering fields") as bar:
            summary = simulate_fields(cfg, out, overwrite=overwrite, workers=_workers(workers), progress=bar)
    except (HemotwinError, ValueError) as exc:
        raise _fail(exc) from None
    _report(summary, "fields", t0)
    console.print(f"annotations: {summary['annotations']}")


@app.command()
def gallery(
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG file to write.")],
    profiles: Annotated[
        list[str] | None, typer.Option("--profile", "-p", help="Profiles (default: all presets).")
    ] = None,
    pbc: Annotated[Path | None, typer.Option("--pbc", help="Real PBC folder to show beside the twin.")] = None,
    seed: SeedOpt = 0,
    overwrite: OverwriteOpt = False,
) -> None:
    """Contact sheet of every class under every profile (and real PBC cells when available)."""
    from hemotwin.io.outputs import prepare_output_file
    from hemotwin.twin.gallery import make_gallery
    from hemotwin.twin.profiles import list_presets

    try:
        path = prepare_output_file(out, overwrite=overwrite)
        if pbc is None:
            default = Path(__file__).resolve().parents[3] / "shared" / "data" / "pbc"
            pbc = default if default.is_dir() else None
        with _Bar("rendering gallery") as bar:
            sheet = make_gallery(profiles=profiles or list_presets(), pbc_dir=pbc, seed=seed, progress=bar)
        sheet.save(path)
    except (HemotwinError, ValueError) as exc:
        raise _fail(exc) from None
    console.print(f"gallery -> [bold]{path}[/]")


@profiles_app.command("list")
def profiles_list() -> None:
    """List the preset scanner profiles."""
    from hemotwin.twin.profiles import list_presets, load_profile

    for name in list_presets():
        p = load_profile(name)
        console.print(f"[bold]{name}[/]  {p.camera.um_per_px:g} µm/px, {p.optics.magnification:g}x/{p.optics.na:g}"
                      f"  {p.description.strip()}")


@profiles_app.command("show")
def profiles_show(
    name: Annotated[str, typer.Argument(help="Preset name or profile file.")],
    fmt: Annotated[str, typer.Option("--format", help="yaml or json")] = "yaml",
) -> None:
    """Print a profile in full (save it, edit it, pass the file to --profile)."""
    from hemotwin.twin.profiles import load_profile

    try:
        p = load_profile(name)
    except HemotwinError as exc:
        raise _fail(exc) from None
    typer.echo(p.to_json() if fmt == "json" else p.to_yaml())


@app.command()
def train(
    data: Annotated[list[Path], typer.Option("--data", "-d", help="ImageFolder or manifest.csv (repeat).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model file to write (.hemo).")],
    augment: Annotated[str, typer.Option("--augment", help="none | color | twin")] = "twin",
    epochs: Annotated[int, typer.Option("--epochs", help="Maximum epochs (early stopping on validation).")] = 30,
    labels: Annotated[str, typer.Option("--labels", help="auto | wbc5 | pbc | matek15 | comma list")] = "auto",
    um_per_px: Annotated[float | None, typer.Option("--um-per-px", help="Pixel size when data lack one.")] = None,
    norm: Annotated[str, typer.Option("--norm", help="group | layer | batch")] = "group",
    seed: SeedOpt = 0,
    threads: Annotated[int | None, typer.Option("--threads", help="Torch threads (default: all cores).")] = None,
    target: Annotated[Path | None, typer.Option("--target", help="Folder of unlabelled images from the scanner the "
                                                "model will be used on: re-image training cells as that scanner "
                                                "(with --augment twin).")] = None,
    target_um_per_px: Annotated[float | None, typer.Option("--target-um-per-px", help="Pixel size of the --target "
                                                           "images (default: metadata, else red cells).")] = None,
    scale_jitter: Annotated[float | None, typer.Option("--scale-jitter", help="Zoom each training cell by up to this "
                                                       "factor (1 = off; default 1.2 with --target, else 1).")] = None,
    ema_epochs: Annotated[float, typer.Option("--ema-epochs", help="Validate and keep a moving average of the weights "
                                              "with this time constant in epochs (0 = off).")] = 0.0,
    teacher: Annotated[list[Path] | None, typer.Option("--teacher", help="Model file to distil from (repeat for a "
                                                       "seed ensemble; same labels and geometry): the model also "
                                                       "learns the teachers' mean answer on every augmented "
                                                       "cell.")] = None,
    distill_weight: Annotated[float | None, typer.Option("--distill-weight", help="Weight of the teachers' answer "
                                                         "against the labels (0-1; default 0.5 with "
                                                         "--teacher).")] = None,
    distill_temperature: Annotated[float, typer.Option("--distill-temperature", help="Softening temperature of the "
                                                       "distillation.")] = 2.0,
    unlabelled: Annotated[list[Path] | None, typer.Option("--unlabelled", help="Folder of unlabelled white-cell crops "
                                                          "from the scanner the model will be used on (repeat; "
                                                          "with --teacher): they join the training set labelled "
                                                          "by the teachers' prediction sets. Measured worse on "
                                                          "BCCD (teachers weaker there than the student).")] = None,
    unlabelled_um_per_px: Annotated[float | None, typer.Option("--unlabelled-um-per-px", help="Pixel size of the "
                                                               "--unlabelled cells (default: --target-um-per-px, "
                                                               "else metadata).")] = None,
    pseudo_coverage: Annotated[float, typer.Option("--pseudo-coverage", help="Probability the teachers' class set "
                                                   "for an unlabelled cell must hold (1 = distillation "
                                                   "only).")] = 0.9,
    overwrite: OverwriteOpt = False,
) -> None:
    """Train a white-cell classifier (CPU), with early stopping and a full provenance record."""
    from hemotwin.vision.pipeline import train_model

    label_spec = labels if labels in ("auto", "wbc5", "pbc", "matek15") else [x for x in labels.split(",") if x]
    try:
        with _Bar("training (batches)") as bar:
            res = train_model([str(d) for d in data], out, labels=label_spec, augment=augment, epochs=epochs,
                              seed=seed, um_per_px=um_per_px, norm=norm, num_threads=threads, overwrite=overwrite,
                              target=target, target_um_per_px=target_um_per_px, scale_jitter=scale_jitter,
                              ema_epochs=ema_epochs, teachers=teacher, distill_weight=distill_weight,
                              distill_temperature=distill_temperature, unlabelled=unlabelled,
                              unlabelled_um_per_px=unlabelled_um_per_px, pseudo_coverage=pseudo_coverage,
                              progress=lambda done, total, info=None: bar(done, total),
                              log=console.print)
    except (HemotwinError, ValueError) as exc:
        raise _fail(exc) from None
    m = res["best_metrics"]
    console.print(f"model -> [bold]{res['model']}[/] (best epoch {res['best_epoch']}, "
                  f"validation {', '.join(f'{k} {v:.3f}' for k, v in m.items() if isinstance(v, float))}; "
                  f"{res['train_images_per_s']:.0f} training images/s)")
    for f in res["failures"][:10]:
        err_console.print(f"[yellow]skipped[/] {f['path']}: {f['error']}")


@app.command()
def predict(
    images: Annotated[list[Path], typer.Argument(help="Image files (or folders: every image inside).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="CSV to write.")],
    model: Annotated[list[Path] | None, typer.Option("--model", "-m", help="Model file (default: shipped model); "
                                                     "repeat for a seed ensemble (mean probabilities).")] = None,
    labels: Annotated[str | None, typer.Option("--labels", help="Report in another label set: pbc | wbc5")] = None,
    um_per_px: Annotated[float | None, typer.Option("--um-per-px", help="Pixel size of the images.")] = None,
    backend: Annotated[str, typer.Option("--backend", help="onnxruntime | torch")] = "onnxruntime",
    harmonise: Annotated[bool, typer.Option("--harmonise", help="Map the images into the model's training stain "
                                            "space first (twin harmonisation; one scanner per run).")] = False,
    tta: Annotated[bool, typer.Option("--tta", help="Average each cell over its 8 rotations and mirror images "
                                      "(8x slower).")] = False,
    scale_tta: Annotated[str | None, typer.Option("--scale-tta", help="Also average each cell over zooms 1/F, 1 "
                                                  "and F: a factor F (1-2), or 'model' for the zoom the model was "
                                                  "trained with; for a scanner whose pixel size is an estimate "
                                                  "(3x slower).")] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Classify cell images: path, predicted label and the probability of every class."""
    import csv

    from hemotwin.io.images import IMAGE_SUFFIXES
    from hemotwin.io.outputs import prepare_output_file
    from hemotwin.vision.pipeline import predict_files

    paths: list[Path] = []
    for p in images:
        if p.is_dir():
            paths += sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_SUFFIXES)
        else:
            paths.append(p)
    try:
        if not paths:
            raise InputError("IMAGES", [str(p) for p in images], "image files or folders holding images")
        dest = prepare_output_file(out, overwrite=overwrite)
        with _Bar("classifying") as bar:
            res = predict_files(paths, model=model or None, um_per_px=um_per_px, labels=labels, backend=backend,
                                harmonise=harmonise, tta=tta, scale_tta=scale_tta, progress=bar)
    except (HemotwinError, ValueError) as exc:
        raise _fail(exc) from None
    rows = res["rows"]
    with open(dest, "w", newline="") as fh:
        keys = list(rows[0]) if rows else ["path", "label", "probability"]
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    console.print(f"{len(rows)} cells classified -> [bold]{dest}[/] (labels: {', '.join(res['labels'])})")
    for f in res["failures"][:20]:
        err_console.print(f"[yellow]skipped[/] {f['path']}: {f['error']}")
    if res["failures"]:
        raise typer.Exit(code=1)


@app.command()
def evaluate(
    data: Annotated[Path, typer.Option("--data", "-d", help="Labelled ImageFolder or manifest.csv.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder.")],
    model: Annotated[list[Path] | None, typer.Option("--model", "-m", help="Model file (default: shipped model); "
                                                     "repeat for a seed ensemble (mean probabilities).")] = None,
    um_per_px: Annotated[float | None, typer.Option("--um-per-px", help="Pixel size when data lack one.")] = None,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", help="True labels not scored (repeat).")] = None,
    backend: Annotated[str, typer.Option("--backend", help="onnxruntime | torch")] = "onnxruntime",
    harmonise: Annotated[bool, typer.Option("--harmonise", help="Map the images into the model's training stain "
                                            "space first (twin harmonisation; one scanner per run).")] = False,
    tta: Annotated[bool, typer.Option("--tta", help="Average each cell over its 8 rotations and mirror images "
                                      "(8x slower).")] = False,
    scale_tta: Annotated[str | None, typer.Option("--scale-tta", help="Also average each cell over zooms 1/F, 1 "
                                                  "and F: a factor F (1-2), or 'model' for the zoom the model was "
                                                  "trained with; for a scanner whose pixel size is an estimate "
                                                  "(3x slower).")] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Accuracy, macro-F1, per-class scores, confusion matrix, calibration and referral curve."""
    from hemotwin.io.outputs import prepare_output_dir
    from hemotwin.vision.pipeline import evaluate_model

    try:
        dest = prepare_output_dir(out, overwrite=overwrite)
        with _Bar("evaluating") as bar:
            res = evaluate_model(data, dest, model=model or None, um_per_px=um_per_px, exclude=exclude or (),
                                 backend=backend, harmonise=harmonise, tta=tta, scale_tta=scale_tta, progress=bar)
    except (HemotwinError, ValueError) as exc:
        raise _fail(exc) from None
    m = res["metrics"]
    lo, hi = m["accuracy_ci95_exact"]
    console.print(f"accuracy {m['accuracy']:.3f} (95 % CI {lo:.3f}-{hi:.3f}, n={m['n']}), macro-F1 "
                  f"{m['macro_f1']:.3f}, ECE {m['calibration']['ece']:.3f} -> [bold]{res['report']['html']}[/] "
                  f"(cell by cell: {res['report']['predictions']})")


@app.command()
def stress(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    model: Annotated[Path | None, typer.Option("--model", "-m", help="Model file (default: shipped model).")] = None,
    profile: ProfileOpt = "analyzer-100x",
    per_class: Annotated[int, typer.Option("--per-class", help="Cells per class in the fixed set.")] = 8,
    seed: SeedOpt = 0,
    overwrite: OverwriteOpt = False,
) -> None:
    """Accuracy under sweeps of one imaging parameter at a time: the model's operating envelope."""
    from hemotwin.io.outputs import prepare_output_dir
    from hemotwin.vision.pipeline import stress_model

    try:
        dest = prepare_output_dir(out, overwrite=overwrite)
        with _Bar("stress test") as bar:
            res = stress_model(dest, model=model, profile=profile, per_class=per_class, seed=seed, progress=bar)
    except (HemotwinError, ValueError) as exc:
        raise _fail(exc) from None
    r = res["result"]
    console.print(f"nominal accuracy {r['nominal_accuracy']:.3f} on {r['n_cells']} cells ({r['profile']})")
    for sw in r["sweeps"]:
        env = sw["envelope"]
        rng = f"{env[0]:g} .. {env[1]:g}" if env else "none (nominal below tolerance)"
        console.print(f"  {sw['name']:20s} envelope {rng} {sw['unit']}")
    console.print(f"plot -> [bold]{res['plot']}[/], data -> {res['json']}")


def _demo_clinical(root: Path, workers: int) -> dict[str, str]:
    """The clinical layers on embedded defaults: prognosis, monitoring, then a virtual leukemic smear."""
    from hemotwin.diagnosis.demo import run_demo as diagnosis_demo
    from hemotwin.monitoring.demo import run_demo as monitoring_demo
    from hemotwin.prognosis.scoring import score_cohort
    from hemotwin.prognosis.synthetic import simulate_cohort, write_cohort
    from hemotwin.prognosis.tables import read_clinical, read_molecular

    out: dict[str, str] = {}
    t1 = time.perf_counter()
    cohort = simulate_cohort(300, n_centers=3, seed=11)
    files = write_cohort(cohort, root / "prognosis" / "cohort", overwrite=True)
    # Scored from the written tables, as a user's cohort would be (read and validated).
    scores = score_cohort(read_clinical(files["clinical"]), read_molecular(files["molecular"]))
    scores.to_csv(root / "prognosis" / "scores.csv", index=False)
    out["prognosis_cohort"] = str(root / "prognosis" / "cohort")
    out["prognosis_scores"] = str(root / "prognosis" / "scores.csv")
    console.print(f"[green]300[/] synthetic patients scored (ELN 2022/2024, IPSS-R, IPSS-M) in "
                  f"{time.perf_counter() - t1:.1f} s -> [bold]{out['prognosis_scores']}[/]")
    t1 = time.perf_counter()
    mon = monitoring_demo(root / "monitoring")
    out.update({f"monitoring_{k}": v for k, v in mon.items() if k.startswith("cohort")})
    console.print(f"[green]example patients[/] monitored in {time.perf_counter() - t1:.1f} s -> "
                  f"[bold]{mon.get('cohort_html', root / 'monitoring')}[/]")
    t1 = time.perf_counter()
    dia = diagnosis_demo(root / "diagnosis", workers=workers)
    out.update({f"diagnosis_{k}": v for k, v in dia.items()})
    console.print(f"[green]virtual AML smear[/] rendered and analysed in {time.perf_counter() - t1:.1f} s")
    return out


@app.command()
def demo(
    out: OutOpt = Path("demo_out"),
    overwrite: OverwriteOpt = False,
    workers: WorkersOpt = 0,
) -> None:
    """Small end-to-end job on embedded defaults: cells and fields under two profiles + gallery."""
    from hemotwin.io.outputs import prepare_output_dir
    from hemotwin.twin.datasets import CellSetConfig, FieldSetConfig, simulate_cells, simulate_fields
    from hemotwin.twin.gallery import make_gallery
    from hemotwin.twin.profiles import list_presets, load_profile

    try:
        root = prepare_output_dir(out, overwrite=overwrite)
        t0 = time.perf_counter()
        w = _workers(workers)
        outputs = {}
        for name in ("analyzer-100x", "wsi-40x"):
            prof = load_profile(name)
            size = 256 if name == "analyzer-100x" else 112
            t1 = time.perf_counter()
            with _Bar(f"cells  {name}") as bar:
                s = simulate_cells(CellSetConfig(profile=prof, per_class=10, size_px=size, seed=1),
                                   root / f"cells_{name}", overwrite=True, workers=w, progress=bar)
            _report(s, f"cell crops ({name})", t1)
            outputs[f"cells_{name}"] = s["out"]
            t1 = time.perf_counter()
            with _Bar(f"fields {name}") as bar:
                s = simulate_fields(FieldSetConfig(profile=prof, n_fields=2, size_px=1024 if size == 256 else 512,
                                                   wbc_per_field=3, seed=2),
                                    root / f"fields_{name}", overwrite=True, workers=w, progress=bar)
            _report(s, f"fields ({name})", t1)
            outputs[f"fields_{name}"] = s["out"]
        default_pbc = Path(__file__).resolve().parents[3] / "shared" / "data" / "pbc"
        with _Bar("gallery") as bar:
            sheet = make_gallery(profiles=list_presets(), pbc_dir=default_pbc if default_pbc.is_dir() else None,
                                 progress=bar)
        sheet.save(root / "gallery.png")
        outputs["gallery"] = str(root / "gallery.png")
        outputs.update(_demo_clinical(root, w))
        (root / "outputs.json").write_text(json.dumps(outputs, indent=2))
    except (HemotwinError, ValueError) as exc:
        raise _fail(exc) from None
    console.print(f"\n[bold green]demo done[/] in {time.perf_counter() - t0:.0f} s. Outputs:")
    for k, v in outputs.items():
        console.print(f"  {k:24s} {Path(v).resolve()}")
    console.print("For research use only. Not for diagnostic use.")


# The clinical layers add their own commands (each module keeps its heavy imports inside the commands).
from hemotwin import cli_diagnosis, cli_monitoring, cli_prognosis  # noqa: E402

for _layer in (cli_diagnosis, cli_prognosis, cli_monitoring):
    _layer.register(app)


if __name__ == "__main__":  # pragma: no cover
    app()
