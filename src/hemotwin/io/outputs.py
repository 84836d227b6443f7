"""Output folders: refuse to overwrite without permission, fail clearly when not writable."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hemotwin.errors import InputError, OutputExistsError

__all__ = ["check_output_file", "check_output_folder", "output_dir", "output_file", "prepare_output_dir",
           "prepare_output_file"]


def _make_writable_dir(folder: Path, *, shown: Path, option: str, what: str) -> None:
    """Create ``folder`` (and parents) and check it is writable; errors show ``shown`` and name ``option``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(option, str(shown), f"{what} that can be created ({exc.strerror})") from exc
    _try_writing_in(folder, shown=shown, where=option)


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
    """Check that a single output file may be written (:func:`check_output_file`) and create its folder."""
    path = check_output_file(path, overwrite=overwrite, where=option)
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
def _removed_on_failure(created: Path | None) -> Iterator[None]:
    """Remove ``created`` (a folder this job made, or None) when the job fails before writing a file in it."""
    try:
        yield
    except BaseException:
        if created is not None and created.is_dir() and _holds_no_file(created):
            shutil.rmtree(created)
        raise


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
    with _removed_on_failure(_first_missing(path.absolute())):
        yield prepare_output_dir(path, overwrite=overwrite, option=option)


@contextmanager
def output_file(path: str | Path, *, overwrite: bool, option: str = "out") -> Iterator[Path]:
    """:func:`prepare_output_file` for the span of a job: folders it created go again if the job fails.

    The file itself is the caller's to write; a job that fails before writing any file leaves no
    empty folder behind (as :func:`output_dir`).
    """
    path = Path(path)
    with _removed_on_failure(_first_missing(path.parent.absolute())):
        yield prepare_output_file(path, overwrite=overwrite, option=option)


def check_output_file(path: str | Path, *, overwrite: bool, where: str = "out") -> Path:
    """Refuse an output file that could not be written, before any work: exists, or no writable folder.

    The folder is tried by creating (and removing) a temporary file in it, or in its nearest existing
    parent when it is still to be made: permission bits alone do not tell (a read-only mount,
    ``/proc``, running as root).

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``overwrite`` is not set.
    InputError
        ``path`` is a folder, or nothing can be written where it points (``where`` names the parameter).
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(where, str(path), "a file path (a folder exists there)")
    if path.exists() and not overwrite:
        raise OutputExistsError(path)
    _try_writing_in(path.absolute().parent, shown=path, where=where)
    return path


def check_output_folder(path: str | Path, *, where: str = "out") -> Path:
    """Refuse an output folder nothing can be written in, before any work (tried as in :func:`check_output_file`).

    Whether an existing folder may be written into (``overwrite``) is
    :func:`hemotwin.io.outputs.prepare_output_dir`'s to say; this checks that it could be.

    Raises
    ------
    InputError
        ``path`` is a file, or nothing can be written where it points (``where`` names the parameter).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(where, str(path), "a folder path (a file exists there)")
    _try_writing_in(path.absolute(), shown=path, where=where)
    return path


def _try_writing_in(folder: Path, *, shown: Path, where: str) -> None:
    """Create and remove a file in ``folder``, or in its nearest existing parent when it is still to be made."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(where, str(shown), f"a path in a folder ({folder} is a file)")
    try:
        fd, probe = tempfile.mkstemp(prefix=".hemotwin-write-test-", dir=folder)
    except OSError as exc:
        raise InputError(where, str(shown), f"a path in a folder that can be written (writing in {folder} "
                         f"failed: {exc.strerror})") from None
    os.close(fd)
    os.unlink(probe)
