"""Output folders: refuse to overwrite without permission, fail clearly when not writable."""

from __future__ import annotations

import os
from pathlib import Path

from hemotwin.errors import InputError, OutputExistsError


def prepare_output_dir(path: str | Path, *, overwrite: bool, option: str = "out") -> Path:
    """Create ``path`` (and parents) or accept an existing folder.

    An existing non-empty folder is refused unless ``overwrite``; nothing is deleted here, the
    caller replaces only the files it writes.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(option, str(path), "a folder path (a file exists there)")
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise OutputExistsError(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(option, str(path), f"a folder that can be created ({exc.strerror})") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise InputError(option, str(path), "a writable folder")
    return path


def prepare_output_file(path: str | Path, *, overwrite: bool, option: str = "out") -> Path:
    """Check that a single output file may be written (parent writable, no clobbering)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(path)
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(option, str(path), f"a path whose folder can be created ({exc.strerror})") from exc
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(option, str(path), "a path in a writable folder")
    return path
