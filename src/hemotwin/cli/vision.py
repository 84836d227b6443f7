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
    finish_partial,
    with_inference_options,
)
from hemotwin.errors import InputError

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
    console.print(f"scanner file -> [bold]{out}[/]")
    finish_partial([{"path": s["path"], "error": s["reason"]} for s in cal.skipped], listed_in=f"{out} (skipped)")


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
    finish_partial(res["failures"], listed_in="this list (the model was trained without them)")


@app.command()
@with_inference_options
def predict(
    images: Annotated[list[Path], typer.Argument(help="Image files (or folders: every image inside).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="CSV to write.")],
    options: InferenceOptions,
    labels: Annotated[str | None, typer.Option("--labels", help="Report in another label set: pbc | wbc5")] = None,
    um_per_px: UmPerPxOpt = None,
    min_confidence: Annotated[float, typer.Option("--min-confidence", help="Calls below this top probability are "
                                                  "marked unsure.")] = 0.5,
    overwrite: OverwriteOpt = False,
) -> None:
    """Classify cell images: per file its status, label, probability, out-of-distribution score and every class's.

    Each image is checked first: one that holds no white cell at its pixel size (blank, uniform, too
    small, no nuclear stain) is rejected with the reason and gets no class. Status: ok, unsure
    (top probability below --min-confidence), rejected, skipped (unreadable).
    """
    from hemotwin.vision.inference import predict_to_csv

    try:
        with Bar("classifying") as bar:
            res = predict_to_csv(images, out, options=options, overwrite=overwrite, um_per_px=um_per_px,
                                 labels=labels, min_confidence=min_confidence, progress=bar)
    except EXPECTED_ERRORS as exc:
        raise fail(exc) from None
    skipped = res["failures"] + res["rejected"]
    if res["n_classified"] == 0:
        _list_items(skipped)
        raise fail(InputError("images", f"{len(res['rows'])} file(s)", "at least one image of a white cell; every "
                              f"one was rejected or skipped (each is listed with its reason in {res['csv']})"))
    unsure = sum(r["status"] == "unsure" for r in res["rows"])
    console.print(f"{res['n_classified']} cells classified ({unsure} unsure: top probability below "
                  f"{min_confidence:g}) -> [bold]{res['csv']}[/] (labels: {', '.join(res['labels'])})")
    if len(res["scale_tta_zooms"]) > 1:
        console.print(f"scale TTA zooms: {', '.join(f'{z:.3g}' for z in res['scale_tta_zooms'])}")
    finish_partial(skipped, listed_in=res["csv"])


def _list_items(items: list[dict], limit: int = 20) -> None:
    """Each skipped or rejected item on stderr (the first ``limit``)."""
    for f in items[:limit]:
        err_console.print(f"[yellow]skipped[/] {f['path']}: {f['error']}", highlight=False)


@app.command()
@with_inference_options
def evaluate(
    data: Annotated[Path, typer.Option("--data", "-d", help="Labelled ImageFolder or manifest.csv.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder (not inside --data).")],
    options: InferenceOptions,
    um_per_px: UmPerPxOpt = None,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", help="True labels not scored (repeat).")] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Accuracy, macro-F1, per-class scores, confusion matrix, calibration and referral curve.

    Images the input check rejects (no white cell at their pixel size) are not classified and not
    scored: the report counts them and gives the accuracy had each been an error.
    """
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
    if m["n_rejected"]:
        console.print(f"{m['n_rejected']} image(s) rejected by the input check, not scored; counting them as "
                      f"errors the accuracy is {m['accuracy_rejected_as_errors']:.3f}")
    finish_partial(res["failures"] + res["rejected"], listed_in=res["report"]["predictions"])


@app.command()
def stress(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    model: ModelOpt = None,
    profile: ProfileOpt = "analyzer-100x",
    per_class: Annotated[int, typer.Option("--per-class", help="Cells per class in the fixed set.")] = 8,
    floor: Annotated[float, typer.Option("--floor", help="Accuracy the operating envelope requires (absolute, "
                                         "0-1).")] = 0.8,
    seed: SeedOpt = 0,
    overwrite: OverwriteOpt = False,
) -> None:
    """Absolute accuracy under sweeps of one imaging parameter at a time, and the operating envelope.

    The envelope of a parameter is the range around its nominal value where accuracy stays at or
    above --floor; a model below the floor at the nominal setting has none.
    """
    from hemotwin.vision.assess import stress_model

    try:
        with Bar("stress test") as bar:
            res = stress_model(out, overwrite=overwrite, model=model, profile=profile, per_class=per_class,
                               seed=seed, floor=floor, progress=bar)
    except EXPECTED_ERRORS as exc:
        raise fail(exc) from None
    r = res["result"]
    console.print(f"nominal accuracy {r['nominal_accuracy']:.3f} on {r['n_cells']} cells ({r['profile']}); "
                  f"envelope: accuracy >= {r['floor']:g}")
    if r["no_envelope"]:
        console.print(f"[yellow]{r['no_envelope']}[/]")
    for sw in r["sweeps"]:
        env = sw["envelope"]
        rng = f"{env[0]:g} .. {env[1]:g} {sw['unit']}" if env else "none"
        accs = ", ".join(f"{v:g}: {a:.2f}" for v, a in zip(sw["values"], sw["accuracy"], strict=True))
        console.print(f"  {sw['name']:20s} envelope {rng}  (accuracy {accs})", highlight=False)
    console.print(f"plot -> [bold]{res['plot']}[/], data -> {res['json']}")
