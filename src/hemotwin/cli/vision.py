"""Commands of the vision layer: ``calibrate``, ``train``, ``predict``, ``evaluate``, ``stress``.

Each calls one library workflow (:func:`~hemotwin.vision.scanner.calibrate_scanner`,
:func:`~hemotwin.vision.training.train_model`, :func:`~hemotwin.vision.inference.predict_to_csv`,
:func:`~hemotwin.vision.assess.evaluate_model`, :func:`~hemotwin.vision.assess.stress_model`) and prints
its result.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hemotwin.cli._common import (
    EXPECTED_ERRORS,
    Bar,
    ModelOpt,
    OverwriteOpt,
    ProfileOpt,
    SeedOpt,
    UmPerPxOpt,
    console,
    err_console,
    fail,
    with_inference_options,
)

if TYPE_CHECKING:
    from hemotwin.vision.inference import InferenceOptions

app = typer.Typer()


@app.command()
def calibrate(
    images: Annotated[Path, typer.Argument(help="Folder of unlabelled smear fields from one scanner.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Scanner file to write (.yaml).")],
    um_per_px: UmPerPxOpt = None,
    max_images: Annotated[int, typer.Option("--max-images", help="Images measured at most (a random draw).")] = 64,
    seed: SeedOpt = 0,
    overwrite: OverwriteOpt = False,
) -> None:
    """Fit a scanner profile from its images: pixel size, resolution, noise, stain and colour.

    The file serves ``train --scanner`` and ``analyze --scanner`` (docs/scanner.md).
    """
    from hemotwin.vision.scanner import calibrate_scanner

    try:
        with Bar("measuring images") as bar:
            cal = calibrate_scanner(images, max_images=max_images, seed=seed, um_per_px=um_per_px, progress=bar,
                                    out=out, overwrite=overwrite)
    except EXPECTED_ERRORS as exc:
        raise fail(exc) from None
    for line in cal.summary_lines():
        console.print(line, highlight=False)
    for s in cal.skipped[:20]:
        err_console.print(f"[yellow]skipped[/] {s['path']}: {s['reason']}")
    console.print(f"scanner file -> [bold]{out}[/]")


@app.command()
def train(
    data: Annotated[list[Path], typer.Option("--data", "-d", help="ImageFolder or manifest.csv (repeat).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model file to write (.hemo).")],
    augment: Annotated[str, typer.Option(
        "--augment", help="none | color | twin | wide (re-imaged through the wide scanner space)")] = "twin",
    epochs: Annotated[int, typer.Option("--epochs", help="Maximum epochs (early stopping on validation).")] = 30,
    labels: Annotated[str, typer.Option("--labels", help="auto | wbc5 | pbc | matek15 | comma list")] = "auto",
    um_per_px: UmPerPxOpt = None,
    norm: Annotated[str, typer.Option("--norm", help="group | layer | batch")] = "group",
    seed: SeedOpt = 0,
    threads: Annotated[int | None, typer.Option("--threads", help="Torch threads (default: all cores).")] = None,
    scanner: Annotated[Path | None, typer.Option("--scanner", help="Scanner file of the scanner the model will be "
                                                 "used on (hemotwin calibrate): re-image training cells as that "
                                                 "scanner (with --augment twin or wide).")] = None,
    scale_jitter: Annotated[float | None, typer.Option("--scale-jitter", help="Zoom each training cell by up to this "
                                                       "factor (1 = off; default 1.2 with --scanner, else 1).")] = None,
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
    overwrite: OverwriteOpt = False,
) -> None:
    """Train a white-cell classifier (CPU), with early stopping and a full provenance record."""
    from hemotwin.vision.scanner import training_target
    from hemotwin.vision.training import TrainRequest, train_model

    try:
        target, target_um_per_px = training_target(scanner)
        request = TrainRequest(data=[str(d) for d in data], out=out, labels=labels, augment=augment, epochs=epochs,
                               seed=seed, um_per_px=um_per_px, norm=norm, num_threads=threads, overwrite=overwrite,
                               target=target, target_um_per_px=target_um_per_px, scale_jitter=scale_jitter,
                               ema_epochs=ema_epochs, teachers=teacher, distill_weight=distill_weight,
                               distill_temperature=distill_temperature)
        with Bar("training (batches)") as bar:
            res = train_model(request, progress=bar, log=console.print)
    except EXPECTED_ERRORS as exc:
        raise fail(exc) from None
    m = res["best_metrics"]
    console.print(f"model -> [bold]{res['model']}[/] (best epoch {res['best_epoch']}, "
                  f"validation {', '.join(f'{k} {v:.3f}' for k, v in m.items() if isinstance(v, float))}; "
                  f"{res['train_images_per_s']:.0f} training images/s)")
    for f in res["failures"][:10]:
        err_console.print(f"[yellow]skipped[/] {f['path']}: {f['error']}")


@app.command()
@with_inference_options
def predict(
    images: Annotated[list[Path], typer.Argument(help="Image files (or folders: every image inside).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="CSV to write.")],
    options: InferenceOptions,
    labels: Annotated[str | None, typer.Option("--labels", help="Report in another label set: pbc | wbc5")] = None,
    um_per_px: UmPerPxOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Classify cell images: path, predicted label and the probability of every class."""
    from hemotwin.vision.inference import predict_to_csv

    try:
        with Bar("classifying") as bar:
            res = predict_to_csv(images, out, options=options, overwrite=overwrite, um_per_px=um_per_px,
                                 labels=labels, progress=bar)
    except EXPECTED_ERRORS as exc:
        raise fail(exc) from None
    console.print(f"{len(res['rows'])} cells classified -> [bold]{res['csv']}[/] "
                  f"(labels: {', '.join(res['labels'])})")
    for f in res["failures"][:20]:
        err_console.print(f"[yellow]skipped[/] {f['path']}: {f['error']}")
    if res["failures"]:
        raise typer.Exit(code=1)


@app.command()
@with_inference_options
def evaluate(
    data: Annotated[Path, typer.Option("--data", "-d", help="Labelled ImageFolder or manifest.csv.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder.")],
    options: InferenceOptions,
    um_per_px: UmPerPxOpt = None,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", help="True labels not scored (repeat).")] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Accuracy, macro-F1, per-class scores, confusion matrix, calibration and referral curve."""
    from hemotwin.vision.assess import evaluate_model

    try:
        with Bar("evaluating") as bar:
            res = evaluate_model(data, out, options=options, overwrite=overwrite, um_per_px=um_per_px,
                                 exclude=exclude or (), progress=bar)
    except EXPECTED_ERRORS as exc:
        raise fail(exc) from None
    m = res["metrics"]
    lo, hi = m["accuracy_ci95_exact"]
    console.print(f"accuracy {m['accuracy']:.3f} (95 % CI {lo:.3f}-{hi:.3f}, n={m['n']}), macro-F1 "
                  f"{m['macro_f1']:.3f}, ECE {m['calibration']['ece']:.3f} -> [bold]{res['report']['html']}[/] "
                  f"(cell by cell: {res['report']['predictions']})")


@app.command()
def stress(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    model: ModelOpt = None,
    profile: ProfileOpt = "analyzer-100x",
    per_class: Annotated[int, typer.Option("--per-class", help="Cells per class in the fixed set.")] = 8,
    seed: SeedOpt = 0,
    overwrite: OverwriteOpt = False,
) -> None:
    """Accuracy under sweeps of one imaging parameter at a time: the model's operating envelope."""
    from hemotwin.vision.assess import stress_model

    try:
        with Bar("stress test") as bar:
            res = stress_model(out, overwrite=overwrite, model=model, profile=profile, per_class=per_class,
                               seed=seed, progress=bar)
    except EXPECTED_ERRORS as exc:
        raise fail(exc) from None
    r = res["result"]
    console.print(f"nominal accuracy {r['nominal_accuracy']:.3f} on {r['n_cells']} cells ({r['profile']})")
    for sw in r["sweeps"]:
        env = sw["envelope"]
        rng = f"{env[0]:g} .. {env[1]:g}" if env else "none (nominal below tolerance)"
        console.print(f"  {sw['name']:20s} envelope {rng} {sw['unit']}")
    console.print(f"plot -> [bold]{res['plot']}[/], data -> {res['json']}")
