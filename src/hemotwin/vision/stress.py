"""Stress test: one fixed set of twin cells imaged through sweeps of one parameter at a time.

For each parameter (defocus, NA, pixel size, lamp temperature, stain strength, pH balance,
noise, JPEG quality) the same specimens are rendered at every value with everything else at
the base profile, the model classifies them, and the absolute accuracy at each value gives the
**operating envelope**: the contiguous range around the nominal value where accuracy stays at or
above an absolute ``floor`` (:data:`DEFAULT_FLOOR`). A model whose accuracy at the nominal setting
is already below the floor has no envelope, whatever its curves do: an envelope relative to its
own accuracy would call a model that is wrong everywhere robust everywhere. This is the report a
lab runs before it adopts a model on its own scanner.

The model is any ``predict(images, um_per_px) -> probabilities`` callable (no torch here).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from hemotwin.errors import InputError
from hemotwin.twin.profiles import ScannerProfile
from hemotwin.twin.render import render
from hemotwin.twin.specimen import make_cell_specimen

Predict = Callable[[list[np.ndarray], float], np.ndarray]

#: The accuracy the envelope requires by default. Not a standard: the accuracy a use needs is the
#: user's to state (``floor``); 0.8 means at most one cell in five misread within the envelope.
DEFAULT_FLOOR = 0.8


@dataclass(frozen=True)
class Sweep:
    """One parameter swept over ``values`` (``path`` = "section.field" of the profile)."""

    name: str
    path: str
    values: tuple[float, ...]
    unit: str = ""


def default_sweeps(profile: ScannerProfile) -> list[Sweep]:
    """The standard sweeps around ``profile`` (NA values stay below the immersion index)."""
    o, c = profile.optics, profile.camera
    dof = 0.55 * o.immersion_index / o.na**2
    na_max = min(1.45, o.immersion_index - 0.02)
    nas = tuple(v for v in (0.4, 0.5, 0.65, 0.8, 0.95, 1.1, 1.25, 1.4) if v <= na_max)
    return [
        Sweep("defocus", "optics.defocus_um", tuple(round(k * dof, 3) for k in (-3, -2, -1, -0.5, 0, 0.5, 1, 2, 3)),
              "µm"),
        Sweep("numerical aperture", "optics.na", nas),
        Sweep("pixel size", "camera.um_per_px",
              tuple(sorted({round(c.um_per_px * f, 4) for f in (0.7, 0.85, 1.0, 1.25, 1.6, 2.0, 3.0)})), "µm/px"),
        Sweep("lamp temperature", "illuminant.temperature_k", (2600.0, 2900.0, 3200.0, 3600.0, 4200.0, 5000.0, 6500.0),
              "K"),
        Sweep("stain strength", "stain.strength", (0.5, 0.7, 0.85, 1.0, 1.2, 1.5, 1.8), "x"),
        Sweep("stain pH balance", "stain.ph_balance", (-1.0, -0.6, -0.3, 0.0, 0.3, 0.6, 1.0), "acid..basic"),
        Sweep("read noise", "camera.read_noise_e", (0.0, 5.0, 15.0, 30.0, 60.0, 100.0), "e-"),
        Sweep("JPEG quality", "processing.jpeg_quality", (20.0, 35.0, 50.0, 70.0, 85.0, 95.0, 100.0)),
    ]


def with_value(profile: ScannerProfile, path: str, value: float) -> ScannerProfile:
    """Copy of ``profile`` with one field changed (validated)."""
    section, field = path.split(".")
    d = profile.to_dict()
    if section not in d or field not in d[section]:
        raise InputError("sweep", path, "a 'section.field' of ScannerProfile")
    d[section][field] = int(value) if field == "jpeg_quality" else value
    if section == "illuminant" and field == "temperature_k":
        d["illuminant"]["kind"] = "halogen"  # a lamp temperature only means something for halogen
    return ScannerProfile.from_dict(d, source=f"sweep {path}={value}")


def nominal_value(profile: ScannerProfile, path: str) -> float:
    """The value of ``profile``'s field ``path`` (``"section.field"``); no JPEG counts as quality 100."""
    section, field = path.split(".")
    v = profile.to_dict()[section][field]
    return 100.0 if v is None else float(v)  # no JPEG = lossless


def operating_envelope(values: Sequence[float], accuracy: Sequence[float], nominal: float, *,
                       floor: float = DEFAULT_FLOOR) -> tuple[float, float] | None:
    """Contiguous range of ``values`` around ``nominal`` whose absolute accuracy is at least ``floor``.

    None when the accuracy at the value nearest ``nominal`` is already below the floor.
    """
    check_floor(floor)
    v = np.asarray(values, float)
    a = np.asarray(accuracy, float)
    order = np.argsort(v)
    v, a = v[order], a[order]
    i0 = int(np.argmin(np.abs(v - nominal)))
    if not a[i0] >= floor:
        return None
    lo = hi = i0
    while lo > 0 and a[lo - 1] >= floor:
        lo -= 1
    while hi < len(v) - 1 and a[hi + 1] >= floor:
        hi += 1
    return float(v[lo]), float(v[hi])


def check_floor(floor: float) -> float:
    """``floor`` as a float, or an error naming it: an accuracy in (0, 1]."""
    if isinstance(floor, bool) or not (isinstance(floor, int | float) and 0.0 < floor <= 1.0):
        raise InputError("floor", floor, "an accuracy in (0, 1]")
    return float(floor)


def no_envelope_reason(nominal_accuracy: float, floor: float) -> str | None:
    """Why a model has no envelope at all (its nominal accuracy is below the floor), or None."""
    if nominal_accuracy >= floor:
        return None
    return f"no envelope: nominal accuracy {nominal_accuracy:.3f} below the floor {floor:g}"


def stress_test(
    predict: Predict,
    labels: Sequence[str],
    *,
    profile: ScannerProfile,
    codes: Sequence[str],
    label_of: Callable[[str], str | None],
    per_class: int = 8,
    size_um: float = 25.6,
    seed: int = 0,
    sweeps: Sequence[Sweep] | None = None,
    floor: float = DEFAULT_FLOOR,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Run the sweeps; returns the absolute accuracy per value and the operating envelope per parameter.

    ``codes`` are the twin classes rendered; ``label_of(code)`` maps each to the model's label
    (classes without one are skipped). The envelope of a sweep is where the accuracy stays at or
    above ``floor`` around the nominal value (:func:`operating_envelope`); a model below the floor
    at the nominal setting gets none, and ``no_envelope`` says why (the sweeps still run: their
    accuracies show where, if anywhere, the model reads the cells).

    Returns
    -------
    dict
        ``profile``, ``nominal_accuracy``, ``floor``, ``no_envelope`` (None, or the reason),
        ``n_cells``, ``classes`` and ``sweeps``: per parameter ``name``, ``parameter``, ``unit``,
        ``values``, ``accuracy`` (absolute, per value), ``nominal`` and ``envelope`` (``[lo, hi]``
        or None).
    """
    floor = check_floor(floor)
    labels = list(labels)
    used = [(c, label_of(c)) for c in codes]
    used = [(c, lab) for c, lab in used if lab is not None and lab in labels]
    if not used:
        raise InputError("stress classes", list(codes), f"classes that map to the model's labels {labels}")
    specimens = [(make_cell_specimen(c, size_um=size_um, seed=seed + i), labels.index(lab))
                 for c, lab in used for i in range(per_class)]
    sweeps = list(sweeps or default_sweeps(profile))
    total = sum(len(s.values) for s in sweeps) + 1
    done = 0

    def accuracy(prof: ScannerProfile) -> float:
        imgs = [render(sp, prof, seed=seed + k).image for k, (sp, _) in enumerate(specimens)]
        probs = np.asarray(predict(imgs, prof.camera.um_per_px))
        truth = np.array([y for _, y in specimens])
        return float((probs.argmax(axis=1) == truth).mean())

    nominal_acc = accuracy(profile)
    done += 1
    if progress:
        progress(done, total)
    results = []
    for sw in sweeps:
        accs = []
        for v in sw.values:
            accs.append(accuracy(with_value(profile, sw.path, v)))
            done += 1
            if progress:
                progress(done, total)
        nom = nominal_value(profile, sw.path)
        env = operating_envelope(sw.values, accs, nom, floor=floor) if nominal_acc >= floor else None
        results.append({"name": sw.name, "parameter": sw.path, "unit": sw.unit, "values": list(sw.values),
                        "accuracy": accs, "nominal": nom, "envelope": list(env) if env else None})
    return {"profile": profile.name, "nominal_accuracy": nominal_acc, "floor": floor,
            "no_envelope": no_envelope_reason(nominal_acc, floor), "n_cells": len(specimens),
            "classes": [c for c, _ in used], "sweeps": results}


def plot_stress(result: dict[str, Any], path: str | Path) -> Path:
    """One panel per parameter: absolute accuracy against value, the floor, nominal and envelope marked."""
    sweeps = result["sweeps"]
    cols = 4
    rows = int(np.ceil(len(sweeps) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    nom_acc, floor = result["nominal_accuracy"], result["floor"]
    for ax, sw in zip(axes.ravel(), sweeps, strict=False):
        ax.plot(sw["values"], sw["accuracy"], "o-")
        ax.axhline(floor, color="red", ls="--", lw=1)
        ax.axvline(sw["nominal"], color="gray", ls=":", lw=1)
        if sw["envelope"]:
            ax.axvspan(*sw["envelope"], color="green", alpha=0.12)
        ax.set_ylim(0, 1.02)
        ax.set_title(sw["name"])
        ax.set_xlabel(sw["unit"] or sw["parameter"])
        ax.set_ylabel("accuracy")
    for ax in axes.ravel()[len(sweeps):]:
        ax.axis("off")
    envelope = result.get("no_envelope") or f"envelope = accuracy >= {floor:g} (green; floor dashed)"
    fig.suptitle(f"stress test on {result['profile']}: nominal accuracy {nom_acc:.3f}; {envelope}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
