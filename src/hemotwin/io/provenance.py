"""Provenance records written beside every output: version, configuration, seeds, inputs."""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import hemotwin
from hemotwin.io.report import RESEARCH_USE


def file_sha256(path: str | Path, *, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def provenance(*, command: str, config: dict[str, Any], seeds: dict[str, Any] | None = None,
               inputs: dict[str, str] | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A JSON-ready provenance record.

    Parameters
    ----------
    command
        What produced the output (e.g. ``"simulate cells"``).
    config
        The full configuration, JSON-serialisable (pydantic ``model_dump(mode="json")``).
    seeds
        Every seed used.
    inputs
        Input name -> SHA-256 checksum.
    """
    return {
        "hemotwin_version": hemotwin.__version__,
        "command": command,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "numpy": _numpy_version(),
        "platform": platform.platform(),
        "config": config,
        "seeds": seeds or {},
        "inputs": inputs or {},
        "research_use_only": RESEARCH_USE,
        **(extra or {}),
    }


def write_json(path: str | Path, data: Any) -> Path:
    """Write JSON with a stable layout (sorted keys would reorder configs, so insertion order)."""
    path = Path(path)
    path.write_text(json.dumps(data, indent=2, default=_default) + "\n")
    return path


def _numpy_version() -> str:
    # Imported here, not at module level: the clinical commands (risk, monitor) answer in < 1 s
    # and many never touch numpy.
    import numpy as np

    return np.__version__


def _default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")
