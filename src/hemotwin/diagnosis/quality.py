"""Field quality notes: focus, stain strength, background and "is this a smear at all".

Each check returns a number, a verdict and one plain sentence, so a report can say *why* a field
was down-weighted or skipped. All measures are taken at physical scales (µm), so fields from an
analyzer at 0.1 µm/px and a slide scanner at 0.5 µm/px are judged alike.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from hemotwin.vision.detect import background_rgb, check_rgb, check_um, nuclear_stain, to_work

__all__ = ["FOCUS_BLURRED", "FOCUS_SOFT", "field_quality"]

#: Focus ratio below which a field is called soft / out of focus. The ratio compares band-pass
#: energy at the scale of a nucleus edge (0.3 µm, or 0.7 px when the pixels are coarser) with that
#: at three times the scale. Measured on twin fields (benchmarks/bench_detection.py --quality):
#: in focus 0.62-0.87 across the presets; 1 µm of defocus 0.40-0.59; 2 µm 0.22-0.48 (the phone
#: preset, JPEG 55 and noisy, does not follow: its noise fills the fine band).
FOCUS_SOFT = 0.5
FOCUS_BLURRED = 0.35


def _focus_ratio(od_g: np.ndarray, px: float, where: np.ndarray) -> float:
    """Fine/coarse band-pass energy ratio of the green optical density over ``where``."""
    s_fine = max(0.3 / px, 0.7)  # never finer than the pixel grid allows
    s_coarse = 3.0 * s_fine
    fine = ndi.gaussian_laplace(od_g, s_fine) * s_fine**2
    coarse = ndi.gaussian_laplace(od_g, s_coarse) * s_coarse**2
    e_f = float(np.sqrt(np.mean(fine[where] ** 2)))
    e_c = float(np.sqrt(np.mean(coarse[where] ** 2)))
    return e_f / e_c if e_c > 1e-6 else 0.0


def field_quality(rgb: np.ndarray, *, um_per_px: float) -> dict[str, Any]:
    """Quality notes for one field of a stained smear.

    Parameters
    ----------
    rgb
        ``H x W x 3`` bright-field image (uint8, or float in [0, 1]). Not modified.
    um_per_px
        Pixel size (µm).

    Returns
    -------
    dict
        ``focus``, ``stain``, ``background`` and ``content``, each a dict with ``value`` (a number
        or list), ``ok`` (bool) and ``message`` (one plain sentence); ``ok`` (all checks ok) and
        ``messages`` (the sentences of the failed checks, or one saying the field is fine).

    Notes
    -----
    - *focus*: ratio of Laplacian-of-Gaussian energy at sigma 0.3 µm to that at 0.9 µm of the
      green optical density, over stained pixels. Defocus removes the fine band first; the ratio is
      independent of stain strength and exposure (both scale the two bands alike).
    - *stain*: median nuclear contrast (OD red + OD green - 2 OD blue) of the nuclei; healthy
      Romanowsky stains give 0.4-1.0 in the twin, 0.3-0.55 on BCCD; below 0.25 is weak.
    - *background*: clear-glass RGB; too dark (mean < 150) or a strong colour cast (channel spread
      above 25 % of the mean) is noted.
    - *content*: the stained fraction and the red-cell-coloured fraction; almost nothing stained is
      "blank", mostly grey or mostly purple is "not a smear".

    Examples
    --------
    >>> q = field_quality(np.full((64, 64, 3), 235, np.uint8), um_per_px=0.25)
    >>> q["content"]["ok"], q["content"]["message"]
    (False, 'field looks blank: almost nothing absorbs light')
    """
    img = check_rgb(rgb)
    um = check_um(um_per_px)
    bg = background_rgb(img)
    work, px = to_work(img, um)
    od = np.maximum(-np.log10((work + 0.5) / bg), 0.0)
    odsum = od.sum(axis=-1)
    f = nuclear_stain(ndi.gaussian_filter(od, sigma=(1.0, 1.0, 0)))
    out: dict[str, Any] = {}

    # ---- content
    stained = odsum > 0.08
    frac_stained = float(stained.mean())
    # Red-cell colour: green and blue absorb more than red (eosin + haemoglobin), unlike grey
    # objects (equal) and nuclei (red >> blue).
    reddish = stained & (od[..., 1] > 1.25 * od[..., 0]) & (od[..., 2] > 0.25 * od[..., 0])
    frac_red = float(reddish.mean())
    purple = float((f > 0.25).mean())
    # Pixel-to-pixel noise in grey levels: a camera gives a few, random data tens.
    grain = float(np.std(img[..., 1] - ndi.uniform_filter(img[..., 1], 3)))
    if grain > 25.0:
        content = (False, f"not a smear: the image is mostly pixel noise (grain {grain:.0f} grey levels)")
    elif frac_stained < 0.02:
        content = (False, "field looks blank: almost nothing absorbs light")
    elif purple > 0.5:
        content = (False, f"not a smear: {purple:.0%} of the field stains like nuclei")
    elif frac_red < 0.1 * frac_stained:
        content = (False, "not a smear: the stained material is not red-cell coloured (grey or noise?)")
    elif frac_stained > 0.97:
        content = (False, "no clear glass between cells: too thick a part of the smear to count")
    else:
        content = (True, f"smear field: {frac_stained:.0%} stained, {frac_red:.0%} red-cell coloured")
    out["content"] = {"value": [round(frac_stained, 4), round(frac_red, 4)], "ok": content[0],
                      "message": content[1]}

    # ---- focus
    if stained.sum() >= 50:
        ratio = _focus_ratio(od[..., 1], px, ndi.binary_dilation(stained, iterations=2))
    else:
        ratio = float("nan")
    if math.isnan(ratio):
        focus = (False, "focus not measurable: nothing stained")
    elif ratio < FOCUS_BLURRED:
        focus = (False, f"out of focus (sharpness {ratio:.2f} < {FOCUS_BLURRED})")
    elif ratio < FOCUS_SOFT:
        focus = (False, f"slightly soft focus (sharpness {ratio:.2f} < {FOCUS_SOFT})")
    else:
        focus = (True, f"in focus (sharpness {ratio:.2f})")
    out["focus"] = {"value": None if math.isnan(ratio) else round(ratio, 4), "ok": focus[0], "message": focus[1]}

    # ---- stain
    nuc = f > 0.2
    nuc = ndi.binary_opening(nuc, iterations=1)
    if nuc.sum() * px * px >= 4.0:
        med = float(np.median(f[nuc]))
        stain = (True, f"stain strength normal (nuclear contrast {med:.2f})") if med >= 0.25 else \
            (False, f"weak nuclear stain (nuclear contrast {med:.2f} < 0.25)")
    else:
        med = float("nan")
        stain = (True, "no nucleus in the field to judge the stain")
    out["stain"] = {"value": None if math.isnan(med) else round(med, 4), "ok": stain[0], "message": stain[1]}

    # ---- background
    mean_bg = float(bg.mean())
    cast = float((bg.max() - bg.min()) / max(mean_bg, 1.0))
    if mean_bg < 150:
        background = (False, f"dark background (glass at {mean_bg:.0f} of 255): under-exposed")
    elif cast > 0.25:
        background = (False, f"strong colour cast of the glass (channel spread {cast:.0%}): check white balance")
    else:
        background = (True, f"background {mean_bg:.0f} of 255, colour cast {cast:.0%}")
    out["background"] = {"value": [round(float(v), 1) for v in bg], "ok": background[0], "message": background[1]}

    checks = ("content", "focus", "stain", "background")
    out["ok"] = all(out[k]["ok"] for k in checks)
    failed = [out[k]["message"] for k in checks if not out[k]["ok"]]
    out["messages"] = failed or ["field quality is fine"]
    return out
