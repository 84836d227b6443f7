"""Fit stain-absorber amounts that reproduce measured colours through a scanner profile.

Used to calibrate the specimen's default amounts (``specimen/morphology.py``) against the real
CellaVision cells of ``../shared/data/pbc``: for each compartment, the amounts of a uniform slab
whose noise-free render through ``analyzer-100x`` has the real median CIE Lab (from
``benchmarks/bench_realism.py``), and the same for the twin's current medians. The ratio
real/twin per absorber is the correction applied to the priors. Physics parameters are fitted,
never output colours.

Usage: python scripts/calibrate_amounts.py REALISM.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from skimage.color import deltaE_ciede2000, rgb2lab

from hemotwin.twin import camera as cam
from hemotwin.twin.profiles import load_profile
from hemotwin.twin.render import optical_image, processing_matrix
from hemotwin.twin.specimen.maps import ABSORBERS

PROFILE = load_profile("analyzer-100x")


def slab_lab(amounts: dict[str, float]) -> np.ndarray:
    """Noise-free Lab of a uniform slab of the given absorber amounts (peak-OD units)."""
    a = np.zeros((len(ABSORBERS), 8, 8), np.float32)
    for k, v in amounts.items():
        a[ABSORBERS.index(k)] = v
    lin = optical_image(a, PROFILE, um_per_px=0.1)[:, 4, 4]
    rgb = processing_matrix(PROFILE) @ lin
    disp = cam.encode_gamma(rgb, PROFILE.processing.gamma)
    return rgb2lab(cam.to_uint8(disp)[None, None, :].astype(np.float64) / 255.0)[0, 0]


def fit(target_lab, free=("purple", "azure_b", "eosin"), fixed=None, x0=None) -> tuple[dict, float]:
    fixed = dict(fixed or {})
    target = np.asarray(target_lab, dtype=float)

    def loss(x):
        am = {**fixed, **{k: float(np.exp(v)) for k, v in zip(free, x, strict=True)}}
        return float(deltaE_ciede2000(slab_lab(am)[None], target[None])[0])

    best = None
    starts = [x0] if x0 is not None else [np.log([0.5, 0.3, 0.2][: len(free)]), np.log([2.0, 0.5, 0.1][: len(free)]),
                                          np.log([0.05, 0.05, 0.3][: len(free)])]
    for s in starts:
        r = minimize(loss, s, method="Nelder-Mead", options={"xatol": 1e-3, "fatol": 1e-3, "maxiter": 600})
        if best is None or r.fun < best.fun:
            best = r
    return {**fixed, **{k: round(float(np.exp(v)), 4) for k, v in zip(free, best.x, strict=True)}}, float(best.fun)


def main(path: str) -> None:
    data = json.load(open(path))
    rows = [{"class": c, "compartment": k, "real_lab": v["lab_real"], "twin_lab": v["lab_twin"]}
            for c, cd in data["classes"].items() for k, v in cd["compartments"].items()
            if v["lab_real"] is not None and v["lab_twin"] is not None]
    out = {}
    for row in rows:
        cls, comp = row["class"], row["compartment"]
        if comp == "background":
            continue
        fixed = {"hemoglobin": 0.55} if comp == "red_cell" else None
        real, e_real = fit(row["real_lab"], fixed=fixed)
        twin, e_twin = fit(row["twin_lab"], fixed=fixed)
        ratio = {k: round(real[k] / max(twin[k], 1e-4), 3) for k in ("purple", "azure_b", "eosin")}
        out[f"{cls}/{comp}"] = {"real_fit": real, "real_dE": round(e_real, 2), "twin_fit": twin,
                                "twin_dE": round(e_twin, 2), "ratio": ratio}
        print(f"{cls:4s} {comp:9s} real {real} (dE {e_real:.1f})  twin {twin} (dE {e_twin:.1f})  ratio {ratio}")
    dest = Path(path).with_name(Path(path).stem + ".calibration.json")
    dest.write_text(json.dumps(out, indent=1))
    print(f"fitted amounts -> {dest}")


if __name__ == "__main__":
    main(sys.argv[1])
