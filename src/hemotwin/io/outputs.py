"""Output folders: refuse to overwrite without permission, fail clearly when not writable."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hemotwin.errors import InputError, OutputExistsError

__all__ = ["output_dir", "output_file", "prepare_output_dir", "prepare_output_file"]


def _make_writable_dir(folder: Path, *, shown: Path, option: str, what: str) -> None:
    """Create ``folder`` (and parents) and check it is writable; errors show ``shown`` and name ``option``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(option, str(shown), f"{what} that can be created ({exc.strerror})") from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(option, str(shown), f"{what} that is writable")


def prepare_output_dir(path: str | Path, *, overwrite: bool, option: str = "out") -> Path:
    """Create ``path`` (and parents) or accept an existing folder.

    An existing non-empty folder is refused unless ``overwrite``; nothing is deleted here, the
    caller replaces only the files it writes. ``option`` is the parameter named in errors.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(option, str(path), "a folder path (a file exists there)")
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise OutputExistsError(path)
    _make_writable_dir(path, shown=path, option=option, what="a folder")
    return path


def prepare_output_file(path: str | Path, *, overwrite: bool, option: str = "out") -> Path:
    """Check that a single output file may be written (parent writable, no clobbering)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(option, str(path), "a file path (a folder exists there)")
    if path.exists() and not overwrite:
        raise OutputExistsError(path)
    _make_writable_dir(path.parent, shown=path, option=option, what="a path in a folder")
    return path


def _holds_no_file(folder: Path) -> bool:
    """True when ``folder`` contains no file at any depth (empty sub-folders only, or nothing)."""
    return not any(not p.is_dir() for p in folder.rglob("*"))


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of ``path`` (itself included) that does not exist yet; None if it exists."""
    missing = None
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing = folder
    return missing


@contextmanager
def output_dir(path: str | Path, *, overwrite: bool, option: str = "out") -> Iterator[Path]:
    """:func:`prepare_output_dir` for the span of a job; a failed job leaves no empty folder behind.

    The folders this job created (``path`` and any missing parents) are removed again when the job
    fails before writing any file into them; sub-folders it made for its outputs, still empty, go
    with them. A folder that existed before is never removed.

    >>> with output_dir("report", overwrite=False) as out:   # doctest: +SKIP
    ...     write_everything(out)
    """
    path = Path(path)
    created = _first_missing(path.absolute())
    try:
        yield prepare_output_dir(path, overwrite=overwrite, option=option)
    except BaseException:
        if created is not None and created.is_dir() and _holds_no_file(created):
            shutil.rmtree(created)
        raise


@contextmanager
def output_file(path: str | Path, *, overwrite: bool, option: str = "out") -> Iterator[Path]:
    """:func:`prepare_output_file` for the span of a job: folders it created go again if the job fails.

    The file itself is the caller's to write; a job that fails before writing any file leaves no
    empty folder behind (as :func:`output_dir`).
    """
    path = Path(path)
    created = _first_missing(path.parent.absolute())
    try:
        yield prepare_output_file(path, overwrite=overwrite, option=option)
    except BaseException:
        if created is not None and created.is_dir() and _holds_no_file(created):
            shutil.rmtree(created)
        raise
