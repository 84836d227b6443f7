"""Is there a white cell the model can read? A cheap check of each image before it is classified.

A classifier answers for any array of the right shape: a blank white image, a 1 x 1 pixel stretched
to the crop or a uniform grey square each get a class, often with high confidence. The check here
runs on the image brought to the model's geometry (:func:`~hemotwin.vision.datasets.to_canonical`),
so that lengths and areas are in µm, and refuses what cannot be a white cell at the stated pixel
size, with the reason:

1. **Field**: the image's shorter side must be at least :attr:`CheckLimits.min_field_um`.
2. **Stain**: a white cell's nucleus, and the basophilic cytoplasm around it, take the violet
   Romanowsky dyes (azure B, methylene blue), which absorb red light more than blue. Pixels whose
   red optical density over the image's own background is at least :attr:`CheckLimits.stain_od`,
   and exceeds the blue one by :attr:`CheckLimits.violet_od`, are *violet stain* (:func:`stain_mask`).
   A blank, grey, black or uniform image of any colour has none: its optical density is zero, or
   the same in red and blue. Red cells and eosinophil granules (haemoglobin, eosin) absorb green
   and blue more than red, so they do not count either.
3. **Object**: the largest connected violet object must be the size of a white cell's nucleus at
   the stated pixel size: at least :attr:`CheckLimits.min_object_um2`, holding at least
   :attr:`CheckLimits.min_share` of all the stain (not specks of noise), and covering at most
   :attr:`CheckLimits.max_fill` of the field. Debris, a small platelet alone, or a pixel size stated
   far too small give smaller objects (large platelets and clumps do not: this is no platelet
   detector, and every PBC platelet crop passes); a pixel size stated far too large makes the stain
   fill the field. Cells differ in size by 2x and more, so only gross errors can be told from one
   cell: of 105 PBC white cells, 61 % were refused when their pixel size was stated 5x too small,
   3 % at 3.3x, none at 2x, and 2-7 % when it was stated 2-4x too large.

Every limit was set on real and twin cells, keeping a margin beyond the extremes measured (each
attribute of :class:`CheckLimits` gives its reason); ``tests/vision/test_input_check.py`` measures
the acceptance on PBC, BCCD and twin cells when the data are present.

The check works on a 2 x 2-pooled copy (56 x 56 pixels for the default model): two 3 x 3 means, two
partial sorts, comparisons and one connected-component labelling. Measured on 256 PBC cells on a busy
2-core machine: 0.54 ms per image, against 5.0 ms for the shipped model's forward pass (onnxruntime,
one thread) and 23 ms for reading and resampling the image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage as ndi

from hemotwin.errors import InputError

__all__ = ["DEFAULT_LIMITS", "CheckLimits", "InputCheck", "check_cell_image", "stain_mask"]

#: The background of a crop is the brightest colour in it: the glass between cells. The 95th
#: percentile of each channel ignores hot pixels and JPEG ringing yet stays on the glass as long as
#: at least 5 % of the crop is glass or pale cytoplasm (tight crops are padded with their border
#: colour when brought to the model's field, which supplies it).
BACKGROUND_PERCENTILE = 95.0


@dataclass(frozen=True)
class CheckLimits:
    """The limits of :func:`check_cell_image`, each with the reason it has that value.

    Attributes
    ----------
    min_field_um
        Shortest side of the image, µm. The smallest normal white cell, a small lymphocyte, is 6-7
        µm across; the tightest real crops measured were 5.8 µm (BCCD boxes drawn round the cell).
        5 µm keeps those and refuses anything smaller than a cell (a 1 x 1 image is 0.1-0.5 µm).
    stain_od
        Red optical density (log10 of background over pixel) that counts as stain. The faint nuclei
        of BCCD reach 0.2-0.3 on the model's grid, PBC and twin nuclei 0.4-0.8; camera noise of a few
        grey levels gives about 0.01, and the 2 x 2 pooling and 3 x 3 mean taken first divide it by
        six. 0.08 (17 % of the red light absorbed) sits well between.
    violet_od
        How much more the stain must absorb red than blue. Azure B and methylene blue absorb at
        600-660 nm, so nuclei and basophilic cytoplasm have red OD 0.1-0.3 above blue (BCCD 0.2); a
        neutral object (grey, black) has none, eosin and haemoglobin the opposite sign.
    min_object_um2
        Smallest area of the largest violet object, µm². The smallest white-cell nucleus, a
        lymphocyte's or an erythroblast's, is 4-7 µm across (12-40 µm²); the smallest measured were
        9.9 µm² (a BCCD eosinophil's lobe) and 15 µm² (a twin erythroblast). 6 µm² is a disc of
        2.8 µm, the size of a platelet (2-3 µm, 3-7 µm²): small single platelets fall below it, the
        large ones and clumps of PBC's platelet crops (15-110 µm²) do not.
    max_fill
        Largest share of the model's field the largest violet object may cover. A white cell sits in
        the middle of its crop with glass or pale cytoplasm around it; the largest measured covered
        75 % of the default model's 25 µm field (a PBC promyelocyte touching a neighbour; twin cells at
        most 57 %). Stain over more than 90 % of the field is a cell larger than the field: a pixel
        size stated too large, or not a cell image.
    min_share
        Smallest share of all the violet stain the largest object must hold. A white cell's nucleus
        is one object or a few lobes (the smallest share measured was 38 %, a two-lobed BCCD
        eosinophil; PBC 49 %); stain scattered in specks (colour noise, debris) leaves the largest
        speck under 10 % of it.
    no_stain_um2
        Below this much violet stain in all (µm²) an image is reported as holding no stain at all
        rather than objects too small: 1 µm² is a few pixels of the check's grid, less than a
        fifth of a platelet.
    """

    min_field_um: float = 5.0
    stain_od: float = 0.08
    violet_od: float = 0.05
    min_object_um2: float = 6.0
    max_fill: float = 0.9
    min_share: float = 0.2
    no_stain_um2: float = 1.0


DEFAULT_LIMITS = CheckLimits()


@dataclass(frozen=True)
class InputCheck:
    """What :func:`check_cell_image` found in one image.

    Attributes
    ----------
    ok
        The image may be classified.
    reason
        Why it may not ("" when ``ok``).
    field_um
        The image's shorter side, µm.
    stain_um2
        Area of violet stain, µm².
    largest_um2
        Area of the largest connected violet object, µm².
    """

    ok: bool
    reason: str
    field_um: float
    stain_um2: float
    largest_um2: float

    def as_dict(self) -> dict[str, object]:
        """JSON-ready fields (areas and lengths rounded to 0.01)."""
        d = asdict(self)
        for k in ("field_um", "stain_um2", "largest_um2"):
            d[k] = round(float(d[k]), 2)
        return d


def stain_mask(image: np.ndarray, *, limits: CheckLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Pixels of violet (nuclear) stain in an ``H x W x 3`` RGB image, on a grid 2x coarser (see the module notes).

    The image is averaged over 2 x 2 pixels (0.45 µm at the default model's 0.225 µm/px: nuclei stay
    many pixels wide) and then over 3 x 3 of those, so noise and JPEG blocks average out; the optical
    densities are taken over the image's own background (:data:`BACKGROUND_PERCENTILE`), so the
    result does not depend on the lamp colour or exposure, and a uniform image has none.

    Returns
    -------
    ndarray of bool
        ``H // 2 x W // 2``; each pixel covers 2 x 2 of ``image``.
    """
    a = np.asarray(image)
    h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
    if h == 0 or w == 0:
        return np.zeros((h // 2, w // 2), bool)
    # The sum of the four pixels (their mean times 4: the tests below are on ratios, which the factor
    # leaves alone); slices rather than a reshaped mean, which costs several times more.
    f = a[:h, :w, :].astype(np.float32)
    pooled = f[0::2, 0::2] + f[1::2, 0::2] + f[0::2, 1::2] + f[1::2, 1::2]
    red = np.maximum(ndi.uniform_filter(pooled[..., 0], 3), 1.0)
    blue = np.maximum(ndi.uniform_filter(pooled[..., 2], 3), 1.0)
    k = int(BACKGROUND_PERCENTILE / 100.0 * (red.size - 1))
    # The background from the same smoothed values the pixels are compared in: from the raw ones,
    # noise alone would put the background above every smoothed pixel.
    bg_red = float(np.partition(red.ravel(), k)[k])
    bg_blue = float(np.partition(blue.ravel(), k)[k])
    # In ratios rather than logarithms (the same test, cheaper): red OD >= stain_od, and red OD
    # exceeds blue OD by violet_od, i.e. (blue / bg_blue) / (red / bg_red) >= 10 ** violet_od.
    return (red <= bg_red * 10.0 ** -limits.stain_od) & (blue * bg_red >= 10.0 ** limits.violet_od * red * bg_blue)


def check_cell_image(image: np.ndarray, *, um_per_px: float, field_um: float,
                     limits: CheckLimits = DEFAULT_LIMITS) -> InputCheck:
    """Check that an image brought to the model's geometry can hold a white cell.

    Parameters
    ----------
    image
        ``S x S x 3`` uint8 RGB at the model's pixel size (not modified).
    um_per_px
        That pixel size (the model's).
    field_um
        The shorter side of the image as it was read, in µm (its pixel count times its own pixel
        size): the model's crop is padded, so the field cannot be read off ``image``.
    limits
        The limits (:class:`CheckLimits`).

    Returns
    -------
    InputCheck
        ``ok`` False with the first reason found: field, stain, size (in that order).

    Raises
    ------
    InputError
        ``image`` is not an ``H x W x 3`` array, or a pixel size or field that is not a positive number.
    """
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] != 3:
        raise InputError("image", f"shape {a.shape}", "an H x W x 3 RGB image")
    for name, v in (("um_per_px", um_per_px), ("field_um", field_um)):
        if not (isinstance(v, int | float | np.floating) and np.isfinite(v) and v > 0):
            raise InputError(name, v, "a positive length in µm")
    if field_um < limits.min_field_um:
        return InputCheck(False, f"image too small for a white cell: {field_um:.2g} µm across, expected at least "
                          f"{limits.min_field_um:g} µm (is the pixel size right?)", field_um, 0.0, 0.0)
    mask = stain_mask(a, limits=limits)
    px_um2 = (2.0 * float(um_per_px)) ** 2  # the mask's pixels are 2 x 2 of the image's
    stain = float(mask.sum()) * px_um2
    labels, n = ndi.label(mask)
    largest = float(np.bincount(labels.ravel())[1:].max()) * px_um2 if n else 0.0
    if stain < limits.no_stain_um2:
        return InputCheck(False, f"no stained cell: {stain:.1f} µm² of violet (nuclear) stain, expected at least "
                          f"{limits.min_object_um2:g} µm² (a blank, uniform or unstained image)", field_um, stain,
                          largest)
    if largest < limits.min_object_um2:
        return InputCheck(False, f"stained objects too small for a white cell: the largest is {largest:.1f} µm², "
                          f"expected at least {limits.min_object_um2:g} µm² (platelets or debris only, or a pixel "
                          "size stated too small)", field_um, stain, largest)
    if largest < limits.min_share * stain:
        return InputCheck(False, f"violet stain scattered in specks: the largest object holds {largest / stain:.0%} "
                          f"of it, expected at least {limits.min_share:.0%} (noise or debris, not a cell)", field_um,
                          stain, largest)
    field_area = mask.size * px_um2
    if largest > limits.max_fill * field_area:
        return InputCheck(False, f"a stained object covering {largest / field_area:.0%} of the {field_area:.0f} µm² "
                          f"field, larger than a white cell (at most {limits.max_fill:.0%}): a pixel size stated "
                          "too large, or not a cell image", field_um, stain, largest)
    return InputCheck(True, "", field_um, stain, largest)
