"""Pixel size of an input image: one rule, one order, one set of source labels, for every command.

An image's pixel size (µm per pixel) is taken from the first of these that knows it:

1. ``manifest``: the ``um_per_px`` column of a data set's manifest.csv (a statement about that file);
2. ``metadata``: the file's own metadata (TIFF resolution tags, OME PhysicalSizeX, ImageJ, PNG pHYs,
   plausible JPEG density; :func:`hemotwin.io.images.read_image`);
3. ``option``: the pixel size the user gave for inputs that carry none (the ``um_per_px`` parameter;
   the command line maps it to its option);
4. ``red cells``: the red-cell ruler, an estimate from the diameter of the red cells in the image(s),
   assuming 7.5 µm (:func:`hemotwin.vision.datasets.red_cell_ruler`). It refuses when the estimate is
   weak (too few measurable red cells, too variable diameters, too few of them round separate discs).

What the file says about itself outranks a value typed for a batch of files, and a measurement outranks
a guess. The source is recorded for every image as ``"<kind>"`` or ``"<kind> (<detail>)"`` with the
kinds above, and reported; a red-cell estimate's detail states its quality (how many cells, their
robust CV, the share of measurable discs). With none of them, :func:`resolve` refuses, names the file
and asks for its pixel size.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from hemotwin.errors import InputError

__all__ = ["MANIFEST", "METADATA", "OPTION", "ORDER", "PLAUSIBLE_UM_PER_PX", "RED_CELLS", "check_um_per_px",
           "kind_of", "label", "resolve"]

MANIFEST = "manifest"
METADATA = "metadata"
OPTION = "option"
RED_CELLS = "red cells"
#: The order of preference (first known wins).
ORDER: tuple[str, ...] = (MANIFEST, METADATA, OPTION, RED_CELLS)

#: Pixel sizes a bright-field microscope or slide scanner can have (µm): from oil-immersion cameras
#: (~0.05) to coarse phone and overview scans (~5).
PLAUSIBLE_UM_PER_PX: tuple[float, float] = (0.01, 5.0)

#: ``() -> (µm/px or None, detail)``: an estimate run only when nothing better is known.
Estimate = Callable[[], tuple[float | None, str]]


def label(kind: str, detail: str | None = None) -> str:
    """The recorded source: ``kind`` alone or ``"kind (detail)"``.

    Raises
    ------
    ValueError
        ``kind`` is not one of :data:`ORDER` (a programming error, not a user's).
    """
    if kind not in ORDER:
        raise ValueError(f"pixel-size source {kind!r} is not one of {ORDER}")
    return f"{kind} ({detail})" if detail else kind


def kind_of(source: str) -> str | None:
    """The kind of a recorded source label (``"red cells (12 cells)"`` -> ``"red cells"``), or None."""
    for kind in ORDER:
        if source == kind or source.startswith(kind + " ("):
            return kind
    return None


def check_um_per_px(value: float | None, *, where: str = "um_per_px") -> float | None:
    """A user-given pixel size checked against :data:`PLAUSIBLE_UM_PER_PX` (None passes through).

    Raises
    ------
    InputError
        Not a finite number within the plausible range; ``where`` names the parameter or field.
    """
    if value is None:
        return None
    lo, hi = PLAUSIBLE_UM_PER_PX
    try:
        um = float(value)
    except (TypeError, ValueError):
        um = math.nan
    if not (math.isfinite(um) and lo <= um <= hi):
        raise InputError(where, value, f"a pixel size between {lo:g} and {hi:g} µm")
    return um


def resolve(*, where: str, manifest: float | None = None, metadata: float | None = None,
            metadata_source: str | None = None, option: float | None = None,
            estimate: Estimate | None = None) -> tuple[float, str]:
    """The pixel size of one input by the documented order, with its source label.

    Parameters
    ----------
    where
        The file (or item) the pixel size is for; named in the error.
    manifest, metadata, option
        The values each source knows (None: unknown). ``metadata_source`` says which tag
        (``"TIFF resolution tags"`` ...) and becomes the label's detail.
    estimate
        Called only when the three above are unknown: ``(µm/px or None, detail)``; the detail is the
        label's (the estimate's quality: how many red cells in how many images, how consistent) or,
        with None, why the ruler refused.

    Returns
    -------
    um_per_px : float
    source : str
        :func:`label` of the source used.

    Raises
    ------
    InputError
        No source knows the pixel size: ``where`` (the file), and a message asking for its pixel size
        (``um_per_px``) with the ruler's reason.

    Examples
    --------
    >>> resolve(where="a.png", metadata=0.1, metadata_source="PNG pHYs", option=0.2)
    (0.1, 'metadata (PNG pHYs)')
    >>> resolve(where="a.png", option=0.2)
    (0.2, 'option')
    """
    if manifest is not None:
        return float(manifest), label(MANIFEST)
    if metadata is not None:
        return float(metadata), label(METADATA, metadata_source)
    if option is not None:
        return float(option), label(OPTION)
    reason = "no red-cell estimate was tried"
    if estimate is not None:
        um, detail = estimate()
        if um is not None:
            return float(um), label(RED_CELLS, detail)
        reason = f"the red-cell ruler refused: {detail}"
    raise InputError(where, "no pixel size",
                     "its pixel size in µm/px: give it (um_per_px), or in the file's metadata or a manifest's "
                     f"um_per_px column ({reason})")
