"""What every ``hemotwin`` command shares: consoles, progress bar, error translation, common options.

The library names its parameters (``um_per_px``, ``scale_tta`` ...); the command line names options
(``--um-per-px``, ``--scale-tta`` ...). :func:`fail` is the one place that translates a library error
into the option a user typed, so that no option string lives in the library.
"""

from __future__ import annotations

import functools
import inspect
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from hemotwin.errors import HemotwinError, InputError, expected_of

#: Exit codes, one convention for every command (README, "Exit codes"): 0 everything done; 2 nothing
#: done (bad input or options, explained on stderr; also typer's own usage errors); 3 finished, but
#: some items were skipped (each listed on stderr and in the job's outputs). 1 is left to crashes.
EXIT_OK, EXIT_NOTHING_DONE, EXIT_PARTIAL = 0, 2, 3


console = Console()
err_console = Console(stderr=True)

#: Library parameter or configuration field -> the option that sets it (for error messages). One option
#: name has one meaning everywhere: ``-m`` is only ``--model`` (a model file), ``--method(s)`` picks
#: survival methods, ``--workers`` counts processes and ``--threads`` threads inside one process.
OPTION_OF: dict[str, str] = {
    "size_px": "--size", "per_class": "--per-class", "n_fields": "--fields", "wbc_per_field": "--wbc",
    "rbc_per_10k_um2": "--rbc-density", "randomize": "--randomize", "seed": "--seed", "classes": "--classes",
    "differential": "--differential", "um_per_px": "--um-per-px", "model": "--model", "out": "--out",
    "scale_tta": "--scale-tta", "tta": "--tta", "harmonise": "--harmonise", "backend": "--backend",
    "labels": "--labels", "augment": "--augment", "norm": "--norm", "epochs": "--epochs", "data": "--data",
    "target": "--target", "target_um_per_px": "--target-um-per-px", "scale_jitter": "--scale-jitter",
    "ema_epochs": "--ema-epochs", "teachers": "--teacher", "distill_weight": "--distill-weight",
    "distill_temperature": "--distill-temperature", "unlabelled": "--unlabelled",
    "unlabelled_um_per_px": "--unlabelled-um-per-px", "pseudo_coverage": "--pseudo-coverage",
    "exclude": "--exclude", "min_confidence": "--min-confidence", "specimen": "--specimen",
    "calibration": "--calibration", "profile": "--profile", "profiles": "--profile", "wbc_1e9_per_l": "--wbc",
    "case": "--case", "cells": "--cells", "cells_per_class": "--per-class", "regimen": "--regimen",
    "panel": "--panel", "clinical": "--clinical", "molecular": "--molecular", "cv": "--cv", "folds": "--folds",
    "method": "--method", "methods": "--methods", "models": "--methods", "baselines": "--baselines",
    "cohort": "--cohort", "threshold": "--threshold", "horizon_days": "--horizon-days",
    "n_estimators": "--n-estimators", "alpha": "--alpha", "min_gene_count": "--min-gene-count", "tau": "--tau",
    "centers": "--centers", "n_centers": "--centers", "patients": "--patients",
    # ``cohort simulate`` keeps the library's ``n`` (patients) behind ``--patients``.
    "n": "--patients",
    "workers": "--workers", "threads": "--threads", "num_threads": "--threads",
    "patient / cohort": "PATIENT / --cohort", "images": "IMAGES", "scanner": "--scanner",
    "max_images": "--max-images", "specimens": "--specimens", "library": "--library",
    "max_per_class": "--per-class", "floor": "--floor", "pbc_dir": "--pbc", "real_cells": "--pbc", "out_dir": "--out",
}


def option_name(where: str) -> str:
    """The command-line option for a library parameter name (``where`` unchanged when it is not one)."""
    return OPTION_OF.get(where, where)


class _Nothing:
    """Stands for a value that was not given (printed as ``nothing`` in ``got nothing``)."""

    def __repr__(self) -> str:
        return "nothing"


def validation_error_in_our_words(exc: ValidationError, *, where: str | None = None) -> InputError:
    """The first error of a pydantic ``ValidationError`` as our :class:`InputError`, naming the option.

    ``--size: got 1; expected a number >= 16`` rather than pydantic's "Input should be greater than or
    equal to 16". A nested field is named by its path under the option (``--profile: optics.na``);
    ``where`` replaces the option part (a file name, say). A validator that raised our own
    :class:`InputError` is passed through with its option translated.
    """
    err = exc.errors()[0]
    loc = [str(p) for p in err.get("loc", ())]
    ctx = err.get("ctx") or {}
    inner = ctx.get("error")
    if isinstance(inner, InputError):
        return InputError(option_name(inner.where), inner.value, inner.expected)
    head = where if where is not None else (option_name(loc[0]) if loc else "(option)")
    rest = loc[1:] if where is None else loc
    name = f"{head}: {'.'.join(rest)}" if rest else head
    kind = err.get("type", "")
    expected = expected_of(err)
    value: Any = _Nothing() if kind == "missing" else err.get("input")
    return InputError(name, value, expected)


def in_option_words(text: str) -> str:
    """A message with the library parameters it names in parentheses, ``(um_per_px)``, as options."""
    return re.sub(r"\(([a-z]+(?:_[a-z0-9]+)+)\)",
                  lambda m: f"({OPTION_OF[m.group(1)]})" if m.group(1) in OPTION_OF else m.group(0), text)


def fail(exc: Exception) -> typer.Exit:
    """Print ``exc`` in our words, naming the option, and return the exit (code 2) to raise."""
    if isinstance(exc, ValidationError):
        exc = validation_error_in_our_words(exc)
    elif (isinstance(exc, InputError) and isinstance(exc.__cause__, ValidationError)
          and exc.expected == exc.__cause__.errors()[0].get("msg")):
        # A library that passed pydantic's message on (a profile file, say) named the place; reword the rest.
        exc = validation_error_in_our_words(exc.__cause__, where=option_name(exc.where.split(": ")[0]))
    elif isinstance(exc, InputError):
        exc = InputError(option_name(exc.where), exc.value, in_option_words(str(exc.expected)))
    err_console.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
    return typer.Exit(code=EXIT_NOTHING_DONE)


#: The errors a command turns into a clear message (anything else is a bug and keeps its traceback).
EXPECTED_ERRORS = (HemotwinError, ValueError, ValidationError)


class Bar:
    """Rich progress bar exposing the ``progress(done, total)`` callback the library takes.

    The display starts with the first report, so a command that fails before any work prints its
    error without an empty progress line.
    """

    def __init__(self, label: str) -> None:
        self.label = label
        self._p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                           TimeRemainingColumn(), console=err_console, transient=False)
        self._task: Any = None

    def __enter__(self) -> Callable[..., None]:
        def cb(done: int, total: int, *_info: Any) -> None:
            if self._task is None:
                self._p.start()
                self._task = self._p.add_task(self.label, total=total)
            self._p.update(self._task, completed=done)

        return cb

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._p.stop()


def n_workers(w: int) -> int:
    """Worker processes for ``--workers``: 0 means every core."""
    return max(1, os.cpu_count() or 1) if w <= 0 else w


def finish_partial(failures: list[dict], *, listed_in: str, nothing_done: bool = False, limit: int = 20) -> None:
    """End a batch job that skipped items: list them on stderr and exit with :data:`EXIT_PARTIAL`.

    ``failures`` are ``{"path": ..., "error": ...}`` records; ``listed_in`` names the output that
    lists them all. ``nothing_done`` (every item failed) exits with :data:`EXIT_NOTHING_DONE` instead.
    Returns (exit 0) when nothing was skipped.
    """
    if not failures:
        return
    for f in failures[:limit]:
        err_console.print(f"[yellow]skipped[/] {f.get('path', '?')}: {f.get('error', '')}", highlight=False)
    more = f" (first {limit} shown)" if len(failures) > limit else ""
    err_console.print(f"[yellow]{len(failures)} item(s) skipped[/]{more}; all are listed in {listed_in}",
                      highlight=False)
    raise typer.Exit(code=EXIT_NOTHING_DONE if nothing_done else EXIT_PARTIAL)


def report_written(summary: dict, what: str, t0: float) -> None:
    """Print what a batch job wrote; skipped items end it with :data:`EXIT_PARTIAL` (all skipped: 2)."""
    dt = time.perf_counter() - t0
    console.print(f"[green]{summary['written']}[/] {what} in {dt:.1f} s -> [bold]{summary['out']}[/]")
    finish_partial(summary["failures"], listed_in="provenance.json", nothing_done=summary["written"] == 0)


# ------------------------------------------------------------------------------ shared options
# One definition per option: a name means the same thing in every command that takes it.

OutDirOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder.")]
ProfileOpt = Annotated[str, typer.Option("--profile", "-p", help="Preset name or JSON/YAML profile file.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Run seed (items derive theirs from it).")]
WorkersOpt = Annotated[int, typer.Option("--workers", "-w", help="Worker processes; 0 = all cores (threads inside "
                                                                 "one process are --threads, where a command has "
                                                                 "it).")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", help="Threads inside one process (torch); default: all "
                                                "cores (processes are --workers).")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Allow replacing existing outputs.")]
RandomizeOpt = Annotated[float, typer.Option("--randomize", help="Strength of per-item profile randomisation "
                                                                 "(0 = off).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
ModelOpt = Annotated[Path | None, typer.Option("--model", "-m", help="Model file (default: shipped model).")]
ModelsOpt = Annotated[list[Path] | None, typer.Option("--model", "-m", help="Model file (default: shipped model); "
                                                      "repeat for a seed ensemble (mean probabilities).")]
SpecimensOpt = Annotated[str, typer.Option("--specimens", help="White cells: procedural (twin-drawn), real (all "
                                           "from --library) or mixed (library where it has the class).")]
LibraryOpt = Annotated[Path | None, typer.Option("--library", help="Cell library folder (hemotwin library build).")]
UmPerPxOpt = Annotated[float | None, typer.Option("--um-per-px", help="Pixel size (µm) of images whose files carry "
                                                  "none (else estimated from red cells).")]
BackendOpt = Annotated[str, typer.Option("--backend", help="onnxruntime | torch")]
HarmoniseOpt = Annotated[bool, typer.Option("--harmonise", help="Map the images into the model's training stain "
                                            "space first (twin harmonisation; one scanner per run).")]
TtaOpt = Annotated[bool, typer.Option("--tta", help="Average each cell over its 8 rotations and mirror images "
                                      "(8x slower).")]
ScaleTtaOpt = Annotated[str | None, typer.Option("--scale-tta", help="Also average each cell over zooms 1/F, 1 and "
                                                 "F: a factor F (1-2), or 'model' for the zoom the model was "
                                                 "trained with; for a scanner whose pixel size is an estimate "
                                                 "(3x slower).")]
RegimenOpt = Annotated[str, typer.Option("--regimen", help="ELN 2024 context: venetoclax | ivosidenib")]
ClinicalOpt = Annotated[Path, typer.Option("--clinical", "-c", help="Clinical table (CSV/TSV; docs/prognosis.md).")]
MolecularOpt = Annotated[Path | None, typer.Option("--molecular", help="Molecular table (one row per variant).")]


def with_inference_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give a command the classifier options, once for every command that reads cells with a model.

    The command declares a parameter ``options`` and receives ``--model`` (repeatable),
    ``--backend``, ``--harmonise``, ``--tta`` and ``--scale-tta`` packed as one
    :class:`hemotwin.vision.inference.InferenceOptions`; the options appear in its ``--help`` after
    its own. The vision layer is imported only when the command runs (``--help`` stays fast).
    """
    # The command's own annotations are strings (postponed evaluation): resolve them here, one by one,
    # so that ``options`` may stay a type-checking-only name (the vision layer is not imported yet).
    own = [p.replace(annotation=eval(p.annotation, command.__globals__) if isinstance(p.annotation, str)
                     else p.annotation)
           for p in inspect.signature(command).parameters.values() if p.name != "options"]
    added = {"model": (ModelsOpt, None), "backend": (BackendOpt, "onnxruntime"), "harmonise": (HarmoniseOpt, False),
             "tta": (TtaOpt, False), "scale_tta": (ScaleTtaOpt, None)}
    params = own + [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=ann)
                    for name, (ann, default) in added.items()]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> None:
        from hemotwin.vision.inference import InferenceOptions

        picked = {name: kwargs.pop(name) for name in added}
        picked["model"] = picked["model"] or None  # typer gives [] for a repeatable option not given
        return command(**kwargs, options=InferenceOptions(**picked))

    wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper
