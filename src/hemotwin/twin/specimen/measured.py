"""Measured morphometry of real white cells, as data for the specimen generators.

The packaged ``data/morphometry.json`` holds, per class (the 15 codes PBC covers plus the
set-valued groups ``neutrophil`` and ``ig``), the 5 %-step quantiles of every feature of
:data:`hemotwin.twin.morphometry.FEATURES`, mean chromatin and cytoplasm spectra and a nucleus
shape model (PCA of normalised elliptic Fourier descriptors, lobe statistics). It is written by
``scripts/measure_morphometry.py`` (docs/morphometry.md); this module only reads it, so the
specimen layer stays free of the measuring code.

>>> m = load_morphometry()
>>> 9.0 < m.quantile("LYT", "cell_diameter_um", 0.5) < 14.0
True
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hemotwin.errors import InputError

__all__ = ["MORPHOMETRY_PATH", "SCHEMA", "Morphometry", "load_morphometry"]

#: The schema (and its version) this module reads.
SCHEMA = "hemotwin.morphometry/1"
#: The packaged measurements.
MORPHOMETRY_PATH = Path(__file__).resolve().parent / "data" / "morphometry.json"
_N_QUANTILES = 19


@dataclass(frozen=True)
class Morphometry:
    """Per-class feature quantiles, spectra and nucleus shape models of measured real cells.

    Attributes
    ----------
    path
        The file read.
    version
        Package version that wrote it.
    provenance
        How it was measured (script, data, images per class, pixel size, date, seed, failures).
    features
        Feature name -> one-line definition.
    levels
        The quantile levels of every ``quantiles`` list (0.05 ... 0.95).
    classes
        Class key -> ``{"n", "quantiles", "mean_spectra", "nucleus_shape"}`` as stored.
    """

    path: str
    version: str
    provenance: dict[str, Any]
    features: dict[str, str]
    levels: tuple[float, ...]
    classes: dict[str, dict[str, Any]] = field(repr=False)

    def _class(self, class_key: str) -> dict[str, Any]:
        if class_key not in self.classes:
            raise InputError(f"{self.path} (class)", class_key, f"one of {', '.join(sorted(self.classes))}")
        return self.classes[class_key]

    def quantiles(self, class_key: str, feature: str) -> np.ndarray:
        """The stored quantiles (at :attr:`levels`) of ``feature`` in ``class_key``; NaN where unmeasured."""
        if feature not in self.features:
            raise InputError(f"{self.path} (feature)", feature, f"one of {', '.join(self.features)}")
        vals = self._class(class_key)["quantiles"][feature]
        return np.asarray([math.nan if v is None else v for v in vals], dtype=float)

    def quantile(self, class_key: str, feature: str, q: float) -> float:
        """``feature``'s ``q`` quantile in ``class_key``, linear between the stored levels.

        Levels outside [0.05, 0.95] are clamped to the end quantiles: the file stores no tails.
        NaN when the feature was never defined in that class (e.g. filament width of lymphocytes).
        """
        if not (isinstance(q, (int, float, np.floating)) and 0.0 <= float(q) <= 1.0):
            raise InputError("q", q, "a quantile level in [0, 1]")
        vals = self.quantiles(class_key, feature)
        if not np.all(np.isfinite(vals)):
            return math.nan
        return float(np.interp(float(q), self.levels, vals))

    def sample(self, class_key: str, feature: str, rng: np.random.Generator, size: int | None = None):
        """Draw ``feature`` values of ``class_key`` by inverse transform of the stored quantiles.

        Uniform levels in [0.05, 0.95] mapped through the piecewise-linear quantile function: the
        central 90 % of the measured distribution, without its tails.
        """
        if not isinstance(rng, np.random.Generator):
            raise InputError("rng", type(rng).__name__, "a numpy.random.Generator")
        vals = self.quantiles(class_key, feature)
        u = rng.uniform(self.levels[0], self.levels[-1], size=size)
        if not np.all(np.isfinite(vals)):
            return np.full(np.shape(u), math.nan) if size is not None else math.nan
        out = np.interp(u, self.levels, vals)
        return out if size is not None else float(out)

    def nucleus_shape(self, class_key: str) -> dict[str, Any]:
        """The stored nucleus shape model of ``class_key`` (EFD PCA and lobe statistics)."""
        return self._class(class_key)["nucleus_shape"]

    def mean_spectra(self, class_key: str) -> dict[str, list[float]]:
        """Mean normalised chromatin and cytoplasm power spectra and their frequencies (cycles/µm)."""
        return self._class(class_key)["mean_spectra"]

    def n(self, class_key: str) -> int:
        """Number of cells measured in ``class_key``."""
        return int(self._class(class_key)["n"])


def _require(doc: dict, key: str, kind: type, where: str) -> Any:
    value = doc.get(key)
    if not isinstance(value, kind):
        raise InputError(f"{where} ({key})", type(value).__name__ if value is not None else None,
                         f"a {kind.__name__} field {key!r}")
    return value


def load_morphometry(path: str | Path | None = None) -> Morphometry:
    """Read a morphometry file (default: the packaged one).

    Parameters
    ----------
    path
        A JSON file written by ``scripts/measure_morphometry.py``.

    Returns
    -------
    Morphometry

    Raises
    ------
    InputError
        The file is missing or not JSON, has another schema than :data:`SCHEMA` (the message
        names the file, the schema found and the one expected), or lacks a required field.
    """
    p = Path(path) if path is not None else MORPHOMETRY_PATH
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError("morphometry file", str(p),
                         "an existing file (regenerate with scripts/measure_morphometry.py)") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError("morphometry file", str(p), f"readable JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise InputError(str(p), type(doc).__name__, "a JSON object")
    if doc.get("schema") != SCHEMA:
        raise InputError(f"{p} (schema)", doc.get("schema"),
                         f"{SCHEMA!r}; regenerate the file with scripts/measure_morphometry.py")
    provenance = _require(doc, "provenance", dict, str(p))
    features = _require(doc, "features", dict, str(p))
    classes = _require(doc, "classes", dict, str(p))
    levels = tuple(float(q) for q in provenance.get("quantiles", np.round(np.arange(0.05, 0.951, 0.05), 2)))
    if len(levels) != _N_QUANTILES:
        raise InputError(f"{p} (provenance.quantiles)", len(levels), f"{_N_QUANTILES} levels 0.05 ... 0.95")
    for key, block in classes.items():
        q = block.get("quantiles") if isinstance(block, dict) else None
        if not isinstance(q, dict) or set(q) != set(features):
            raise InputError(f"{p} (classes.{key}.quantiles)", sorted(q) if isinstance(q, dict) else q,
                             "one list per feature of 'features'")
        bad = [f for f, v in q.items() if not isinstance(v, list) or len(v) != len(levels)]
        if bad:
            raise InputError(f"{p} (classes.{key}.quantiles.{bad[0]})", q[bad[0]], f"{len(levels)} values")
    return Morphometry(path=str(p), version=str(doc.get("version", "")), provenance=provenance,
                       features=dict(features), levels=levels, classes=classes)
