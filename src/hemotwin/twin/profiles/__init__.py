"""Scanner profiles: the imaging setup as data, presets shipped with the package, and neighbours.

>>> from hemotwin.twin.profiles import load_profile, randomize
>>> p = load_profile("analyzer-100x")
>>> q = randomize(p, np.random.default_rng(0), strength=0.5)   # doctest: +SKIP
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from hemotwin.errors import InputError
from hemotwin.twin.profiles.model import (
    Camera,
    Illuminant,
    Optics,
    Processing,
    ScannerProfile,
    Spectral,
    Stain,
)

__all__ = [
    "Camera",
    "Illuminant",
    "Optics",
    "Processing",
    "ScannerProfile",
    "Spectral",
    "Stain",
    "list_presets",
    "load_profile",
    "randomize",
]

_PRESET_DIR = resources.files("hemotwin.twin.profiles") / "presets"


def list_presets() -> list[str]:
    """Names of the profiles shipped with the package."""
    return sorted(p.name[: -len(".yaml")] for p in _PRESET_DIR.iterdir() if p.name.endswith(".yaml"))


def load_profile(name_or_path: str | Path | ScannerProfile) -> ScannerProfile:
    """A preset by name, or a profile from a JSON/YAML file path."""
    if isinstance(name_or_path, ScannerProfile):
        return name_or_path
    text = str(name_or_path)
    if text in list_presets():
        with resources.as_file(_PRESET_DIR / f"{text}.yaml") as path:
            return ScannerProfile.load(path)
    path = Path(text)
    if path.suffix.lower() in {".yaml", ".yml", ".json"} or path.exists():
        if not path.exists():
            raise InputError("profile", text, "an existing profile file")
        return ScannerProfile.load(path)
    raise InputError("profile", text, f"a preset name ({', '.join(list_presets())}) or a JSON/YAML file")


def _lognormal(rng: np.random.Generator, value: float, sigma: float, lo: float, hi: float) -> float:
    return float(np.clip(value * np.exp(rng.normal(0.0, sigma)), lo, hi))


def _normal(rng: np.random.Generator, value: float, sigma: float, lo: float, hi: float) -> float:
    return float(np.clip(value + rng.normal(0.0, sigma), lo, hi))


def randomize(profile: ScannerProfile, rng: np.random.Generator, strength: float = 0.5) -> ScannerProfile:
    """Sample a plausible neighbour of ``profile``.

    ``strength`` scales every perturbation: 0 returns an identical profile (renamed), 1 spans
    roughly the variation between laboratories and scanners of the same class (stain strength
    ±20 %, pH balance ±0.35, lamp ±500 K, defocus ±0.6 depth of field, noise ×1.5, gamma ±0.15,
    JPEG 60–95, pixel size ±8 %). The random draws always happen in the same order so a seed
    gives the same neighbour whatever the strength.
    """
    if not (0.0 <= strength <= 3.0):
        raise InputError("randomize.strength", strength, "a value in [0, 3]")
    s = float(strength)
    d = profile.to_dict()
    st, il, op, ca, pr = d["stain"], d["illuminant"], d["optics"], d["camera"], d["processing"]

    st["strength"] = _lognormal(rng, st["strength"], 0.2 * s, 0.3, 3.0)
    st["ph_balance"] = _normal(rng, st["ph_balance"], 0.35 * s, -1.0, 1.0)
    for key in ("purple", "azure_b", "eosin"):
        st[key] = _lognormal(rng, st[key], 0.12 * s, 0.2, 3.0)

    il["temperature_k"] = _normal(rng, il["temperature_k"], 500.0 * s, 2400.0, 9000.0)
    il["led_phosphor_nm"] = _normal(rng, il["led_phosphor_nm"], 8.0 * s, 530.0, 610.0)
    il["blue_filter"] = _normal(rng, il["blue_filter"], 0.2 * s, 0.0, 1.0)

    dof_um = 0.55 * op["immersion_index"] / op["na"] ** 2  # depth of field at 550 nm
    op["defocus_um"] = _normal(rng, op["defocus_um"], 0.6 * dof_um * s, -20.0, 20.0)
    op["condenser_fill"] = _normal(rng, op["condenser_fill"], 0.12 * s, 0.3, 1.0)
    op["spherical_waves"] = _normal(rng, op["spherical_waves"], 0.15 * s, -3.0, 3.0)
    op["vignetting"] = _normal(rng, op["vignetting"], 0.08 * s, 0.0, 0.9)

    ca["um_per_px"] = _lognormal(rng, ca["um_per_px"], 0.08 * s, 0.02, 5.0)
    ca["exposure"] = _lognormal(rng, ca["exposure"], 0.2 * s, 0.05, 1.0)
    ca["read_noise_e"] = _lognormal(rng, ca["read_noise_e"], 0.4 * s, 0.0, 200.0)
    ca["full_well_e"] = _lognormal(rng, ca["full_well_e"], 0.3 * s, 500.0, 1e6)
    ca["qe_shift_nm"] = [_normal(rng, v, 5.0 * s, -40.0, 40.0) for v in ca["qe_shift_nm"]]

    pr["gamma"] = _normal(rng, pr["gamma"], 0.15 * s, 1.0, 3.0)
    pr["background_level"] = _normal(rng, pr["background_level"], 0.04 * s, 0.6, 1.0)
    pr["wb_error"] = [_lognormal(rng, v, 0.04 * s, 0.5, 2.0) for v in pr["wb_error"]]
    pr["saturation"] = _lognormal(rng, pr["saturation"], 0.12 * s, 0.3, 3.0)
    use_jpeg = rng.random() < 0.6 * min(s, 1.0)
    quality = int(rng.integers(60, 96))
    if pr["jpeg_quality"] is not None:
        pr["jpeg_quality"] = int(np.clip(round(pr["jpeg_quality"] + rng.normal(0, 10 * s)), 30, 98))
    elif use_jpeg:
        pr["jpeg_quality"] = quality

    d["name"] = f"{profile.name}~r"
    d["description"] = f"randomize(strength={s:g}) neighbour of {profile.name}"
    return ScannerProfile.from_dict(d, source="randomize")
