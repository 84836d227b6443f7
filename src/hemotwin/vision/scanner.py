"""Scanner calibration: a laboratory's scanner measured from a folder of its unlabelled images.

:func:`calibrate_scanner` reads smear fields from one scanner and measures, with a confidence for
each number:

- **pixel size** (µm/px): the red-cell ruler (:func:`~hemotwin.vision.datasets.estimate_um_per_px`,
  7.5 µm red cells) on every image, the median over images; the files' own metadata or a pixel size
  the user gives outrank it by the package's rule (:mod:`hemotwin.io.pixel_size`), and the ruler's
  value is kept beside them as a check;
- **resolution**: the equivalent Gaussian blur σ (µm) of edges, from the edge-spread function of
  red-cell rims (the half-level outline of each isolated red cell found to sub-pixel precision;
  the green linear intensity of the pixels around it against their signed distance to that
  outline, pooled per image and fitted with a Gaussian-blurred step). Red cells are uniform discs
  with a sharp rim in every laboratory; a dried red cell's rounded rim is part of what is measured;
- **noise**: the standard deviation per channel (8-bit levels) of clear glass, the pixels far
  from any cell minus their smooth local level (a 6 px Gaussian of the glass alone, so the lamp's
  fall-off does not count as noise), clipped at 4 SD (dust, platelets);
- **stain and colour**: the scanner's stain vectors (a :class:`~hemotwin.twin.reimage.StainBasis`
  fitted on the images), the white point of its clear glass and the stain levels of its nuclei
  and red cells (medians over images with their spread).

It refuses (:class:`~hemotwin.errors.InputError`, nothing written) fewer than
:data:`MIN_IMAGES` readable images, fewer than :data:`MIN_IMAGES` images holding enough whole red
cells, and images that look like more than one scanner (:data:`MAX_PIXEL_SIZE_CV`,
:data:`MAX_WHITE_POINT_GAP`). Unreadable files are skipped and listed.

The result, a :class:`ScannerCalibration`, is saved as YAML and read back by
:meth:`ScannerCalibration.load`, which refuses a file of another schema version. Training uses it
to re-image its cells as this scanner (the folder and pixel size stored in it become the target
of :class:`~hemotwin.twin.target_style.TargetStyle`, which needs the images themselves: see
:meth:`ScannerCalibration.training_target`); analysis uses its pixel size for fields whose files
carry none.

>>> cal = calibrate_scanner("lab_fields/")                  # doctest: +SKIP
>>> cal.save("my_scanner.yaml")                             # doctest: +SKIP
>>> ScannerCalibration.load("my_scanner.yaml").pixel_size.um_per_px   # doctest: +SKIP
0.0721
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hemotwin.errors import HemotwinError, InputError
from hemotwin.io import pixel_size
from hemotwin.io.images import IMAGE_SUFFIXES, read_image
from hemotwin.vision.scanner_measures import (
    GAMMA,
    measure_edges,
    measure_glass_noise,
    nearest_preset,
    rel_se_median,
    stain_levels,
    stained_fraction,
    white_point_groups,
)

__all__ = [
    "MAX_PIXEL_SIZE_CV",
    "MAX_WHITE_POINT_GAP",
    "MIN_IMAGES",
    "SCHEMA",
    "Noise",
    "PixelSize",
    "Resolution",
    "ScannerCalibration",
    "StainColour",
    "calibrate_scanner",
    "confidence_word",
    "training_target",
]

#: Schema of a scanner file; a file with another one is refused.
SCHEMA = "hemotwin.scanner/1"
#: Fewest images a calibration rests on: five per-image values give a median that survives two bad
#: images and a spread (the mixed-scanner test) that means something; the stain fit wants several
#: fields of stained cells (:class:`~hemotwin.twin.target_style.TargetStyle` needs three).
MIN_IMAGES = 5
#: Measurable red cells an image needs to give its own scale (for the one-scanner test and the rim
#: blur); the pixel size comes from all images' red cells together (the ruler's own quality bars).
MIN_CELLS_PER_IMAGE = 3
#: One scanner's per-image red-cell rulers agree within a few per cent (twin fields: CV 1-3 %; the
#: cells of one smear vary by ~5 % between fields); a coefficient of variation above this means
#: images of different magnifications (or of very different red cells: then the ruler is unreliable).
MAX_PIXEL_SIZE_CV = 0.15
#: Gap (in log of the blue / red white-point ratio) that splits the images into two groups of
#: clear-glass colour: a lamp or white balance of another scanner (a 10 % colour cast is plainly
#: visible; one scanner's fields vary by 1-2 %). Each group must hold at least two images.
MAX_WHITE_POINT_GAP = 0.10
#: Fewest stained pixels (green OD > 0.1) an image needs for its red cells to be looked for.
MIN_STAINED = 0.01
#: Display gamma assumed to linearise 8-bit values (as :class:`~hemotwin.twin.reimage.StainBasis`).

Progress = Callable[[int, int], None]


# ------------------------------------------------------------------------------------------ model
class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def confidence_word(rel_error: float | None, n: int, *, min_n: int = MIN_IMAGES) -> str:
    """``"high"`` (relative error <= 5 %), ``"moderate"`` (<= 15 %) or ``"low"``; ``"low"`` below ``min_n`` items.

    Parameters
    ----------
    rel_error
        Relative standard error of the estimate (None or NaN: unknown, ``"low"``).
    n
        Items (images) it rests on.
    min_n
        Fewer items than this: ``"low"`` whatever the error.

    Returns
    -------
    str
    """
    if rel_error is None or not math.isfinite(rel_error) or n < min_n:
        return "low"
    return "high" if rel_error <= 0.05 else "moderate" if rel_error <= 0.15 else "low"


class PixelSize(_Model):
    """The scanner's pixel size.

    Attributes
    ----------
    um_per_px
        The pixel size (µm) by the package's rule: the files' metadata, else the user's value, else
        the red-cell ruler.
    source
        Its source label (:mod:`hemotwin.io.pixel_size`).
    red_cells_um_per_px
        The red-cell ruler's value (median of per-image estimates), always measured.
    rel_error
        Relative standard error of the ruler's value (between images; the 7.5 µm assumption itself
        can be 10-20 % off in anaemias and is not included).
    per_image_cv
        Coefficient of variation of the per-image estimates (the mixed-scanner test).
    n_cells, n_images
        Red cells and images the ruler rests on.
    metadata_um_per_px
        The files' own pixel size, when every file carries one (median).
    confidence
        :func:`confidence_word` of ``rel_error``.
    """

    um_per_px: float
    source: str
    red_cells_um_per_px: float
    rel_error: float
    per_image_cv: float
    n_cells: int
    n_images: int
    metadata_um_per_px: float | None = None
    confidence: str


class Resolution(_Model):
    """Equivalent Gaussian blur of edges.

    Attributes
    ----------
    blur_sigma_um, blur_sigma_px
        σ of the Gaussian whose blur of a step matches the red-cell rims (median over images), in µm
        (at ``PixelSize.um_per_px``) and pixels.
    rel_error
        Relative standard error of the median (between images).
    n_cells, n_images
        Red-cell rims and images measured.
    confidence
        :func:`confidence_word` of ``rel_error``.
    """

    blur_sigma_um: float
    blur_sigma_px: float
    rel_error: float
    n_cells: int
    n_images: int
    confidence: str


class Noise(_Model):
    """Noise of clear glass.

    Attributes
    ----------
    sd_8bit
        Standard deviation per channel (R, G, B) in 8-bit levels (median over images).
    rel_error
        Relative standard error of the green channel's median (between images).
    n_images
        Images with enough clear glass.
    confidence
        :func:`confidence_word` of ``rel_error``.
    """

    sd_8bit: tuple[float, float, float]
    rel_error: float
    n_images: int
    confidence: str


class StainColour(_Model):
    """Stain and colour of the scanner.

    Attributes
    ----------
    basis
        The fitted :class:`~hemotwin.twin.reimage.StainBasis` (its ``to_dict()``).
    white_point
        Linear RGB of clear glass (median over images).
    white_point_8bit
        The same as delivered 8-bit values.
    levels
        Medians over images of the nuclear purple and azure (over the nucleus), and of the eosin of
        red cells (stained pixels outside nuclei), in the twin's peak-OD units; absent when no image
        had a measurable nucleus / red cells.
    level_log_sd
        Spread between images of each level (robust SD of the log).
    """

    basis: dict[str, Any]
    white_point: tuple[float, float, float]
    white_point_8bit: tuple[int, int, int]
    levels: dict[str, float] = Field(default_factory=dict)
    level_log_sd: dict[str, float] = Field(default_factory=dict)


class ScannerCalibration(_Model):
    """A scanner profile fitted from a folder of its images (``hemotwin calibrate``).

    Attributes
    ----------
    schema_id
        :data:`SCHEMA` (``schema`` in the file).
    version
        The hemotwin version that wrote it.
    images_dir
        Absolute path of the image folder it was fitted on (training re-reads the images).
    n_files, n_images
        Image files found, and images used.
    skipped
        ``{"path", "reason"}`` of unreadable files.
    pixel_size, resolution, noise, stain
        The measurements.
    nearest_preset
        The shipped twin preset with the nearest pixel size (for the chain calibration).
    notes
        What a user should know (a disagreement between metadata and the ruler ...).
    """

    schema_id: str = Field(SCHEMA, alias="schema")
    version: str
    images_dir: str
    n_files: int
    n_images: int
    skipped: list[dict[str, str]] = Field(default_factory=list)
    pixel_size: PixelSize
    resolution: Resolution
    noise: Noise
    stain: StainColour
    nearest_preset: str | None = None
    notes: list[str] = Field(default_factory=list)

    # -- persistence ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-able data, as written to the file (``schema`` first)."""
        return self.model_dump(mode="json", by_alias=True)

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the calibration as YAML.

        Parameters
        ----------
        path
            File to write (``.yaml``).
        overwrite
            Replace an existing file.

        Returns
        -------
        Path

        Raises
        ------
        OutputExistsError
            The file exists and ``overwrite`` is False.
        """
        import yaml

        from hemotwin.io.outputs import prepare_output_file

        dest = prepare_output_file(path, overwrite=overwrite)
        dest.write_text("# hemotwin scanner profile (hemotwin calibrate); research use only\n"
                        + yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True))
        return dest

    @classmethod
    def load(cls, path: str | Path) -> ScannerCalibration:
        """Read a scanner file written by :meth:`save`.

        Parameters
        ----------
        path
            The YAML file.

        Returns
        -------
        ScannerCalibration

        Raises
        ------
        InputError
            Missing or unreadable file, not a scanner file, a file of another schema version (names
            the file, the version found and the one expected), or invalid content.
        """
        import yaml

        p = Path(path)
        if not p.is_file():
            raise InputError(str(p), "no such file", "a scanner file written by calibrate "
                             "(hemotwin calibrate IMAGES --out FILE on the command line)")
        try:
            data = yaml.safe_load(p.read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise InputError(str(p), type(exc).__name__, "a readable YAML scanner file") from None
        found = data.get("schema") if isinstance(data, dict) else None
        if not isinstance(found, str) or not found.startswith(SCHEMA.split("/")[0] + "/"):
            raise InputError(str(p), f"schema {found!r}", f"a scanner file (schema {SCHEMA!r}) written by calibrate")
        if found != SCHEMA:
            raise InputError(str(p), f"scanner file version {found!r} (written by hemotwin "
                             f"{data.get('version', 'unknown')})",
                             f"version {SCHEMA!r}; calibrate the scanner again with this version")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(x) for x in err.get("loc", ()))
            raise InputError(f"{p}: {where}", err.get("input"), err.get("msg", "a valid value")) from None

    def training_target(self, *, where: str = "scanner") -> tuple[Path, float]:
        """The image folder and pixel size that training re-images its cells towards.

        :class:`~hemotwin.twin.target_style.TargetStyle` compares the target's images with the
        training images themselves (their sharpness, texture and stain levels at one geometry), so
        the file records the folder, not a summary; the pixel size is for the files that carry none.

        Parameters
        ----------
        where
            Names the scanner file in errors.

        Returns
        -------
        folder : Path
        um_per_px : float

        Raises
        ------
        InputError
            The folder the calibration was made from is gone.
        """
        folder = Path(self.images_dir)
        if not folder.is_dir():
            raise InputError(where, str(folder), "the image folder this scanner file was calibrated on (training "
                             "re-reads its images); move it back or calibrate again")
        return folder, float(self.pixel_size.um_per_px)

    def summary_lines(self) -> list[str]:
        """What was found, with its confidence, one line per measurement (for printing)."""
        px, res, nz = self.pixel_size, self.resolution, self.noise
        ruler = (f"± {100 * px.rel_error:.1f} %, {px.n_cells} red cells in {px.n_images} images; "
                 f"{px.confidence} confidence")
        measured = pixel_size.kind_of(px.source) == pixel_size.RED_CELLS
        first = (f"pixel size {px.um_per_px:.4g} µm/px ({ruler})" if measured
                 else f"pixel size {px.um_per_px:.4g} µm/px from {px.source} (red cells: "
                      f"{px.red_cells_um_per_px:.4g} µm/px {ruler})")
        lines = [first,
                 f"resolution: edge blur σ {res.blur_sigma_um:.3f} µm ({res.blur_sigma_px:.2f} px) "
                 f"± {100 * res.rel_error:.1f} %, {res.n_cells} red-cell rims in {res.n_images} images "
                 f"({res.confidence} confidence)",
                 f"noise on clear glass: {', '.join(f'{v:.2f}' for v in nz.sd_8bit)} levels (R, G, B) "
                 f"± {100 * nz.rel_error:.1f} %, {nz.n_images} images ({nz.confidence} confidence)",
                 f"white point {', '.join(str(v) for v in self.stain.white_point_8bit)} (8-bit RGB); stain levels "
                 + (", ".join(f"{k} {v:.2f}" for k, v in self.stain.levels.items()) or "not measured")]
        if self.nearest_preset:
            lines.append(f"nearest twin preset by pixel size: {self.nearest_preset}")
        return lines + [f"note: {n}" for n in self.notes]


# ------------------------------------------------------------------------------------- workflow
def _list_images(images_dir: Path, max_images: int, seed: int) -> tuple[list[Path], int]:
    if not images_dir.is_dir():
        raise InputError("images", str(images_dir), "a folder of images from one scanner")
    paths = sorted(p for p in images_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    n_files = len(paths)
    if n_files < MIN_IMAGES:
        raise InputError("images", str(images_dir), f"at least {MIN_IMAGES} images of one scanner "
                         f"(found {n_files} image file{'s' if n_files != 1 else ''})")
    if len(paths) > max_images:
        pick = np.random.default_rng(seed).choice(len(paths), size=max_images, replace=False)
        paths = [paths[i] for i in sorted(pick)]
    return paths, n_files


def _check_one_scanner(folder: str, names: list[str], um: np.ndarray, bgs: np.ndarray, *,
                       ruler_decides: bool = True) -> str | None:
    """Refuse images of more than one scanner; returns a note when only the ruler disagrees.

    When the pixel size is given (an option or the files' metadata), a wide spread of the red-cell
    ruler says the ruler is unreliable on these fields (crowded or overlapping red cells), not that
    the scanners differ: it is noted, and the clear-glass colours still decide.
    """
    cv = float(np.std(um, ddof=1) / np.mean(um))
    note = None
    if cv > MAX_PIXEL_SIZE_CV and not ruler_decides:
        note = (f"the red-cell ruler varies between images (CV {100 * cv:.0f} %, {um.min():.3g}-{um.max():.3g} "
                "µm/px): the given pixel size is used and the ruler's blur scale is less certain")
    elif cv > MAX_PIXEL_SIZE_CV:
        lo, hi = int(np.argmin(um)), int(np.argmax(um))
        raise InputError("images", folder, f"images of one scanner: the red cells give pixel sizes from "
                         f"{um[lo]:.3g} µm/px ({names[lo]}) to {um[hi]:.3g} µm/px ({names[hi]}), a spread "
                         f"(CV {100 * cv:.0f} %) above the {100 * MAX_PIXEL_SIZE_CV:.0f} % one scanner shows; "
                         "calibrate each scanner's images separately, or, if they are one scanner whose red cells "
                         "make a poor ruler (few separate discs), give the pixel size (um_per_px)")
    split = white_point_groups(bgs)
    if split is not None:
        k, gap = split
        n_low, n_high = k + 1, len(bgs) - k - 1
        if gap > MAX_WHITE_POINT_GAP and min(n_low, n_high) >= 2:
            raise InputError("images", folder, f"images of one scanner: their clear glass falls into two colour "
                             f"groups ({n_low} and {n_high} images, blue/red differing by {100 * gap:.0f} %, more "
                             f"than the {100 * MAX_WHITE_POINT_GAP:.0f} % one lamp shows); calibrate each "
                             "scanner's images separately")
    return note


def calibrate_scanner(images_dir: str | Path, *, max_images: int = 64, seed: int = 0,
                      um_per_px: float | None = None, progress: Progress | None = None,
                      out: str | Path | None = None, overwrite: bool = False) -> ScannerCalibration:
    """Fit a scanner profile from a folder of unlabelled smear images of that scanner.

    Parameters
    ----------
    images_dir
        Folder of fields (every image file under it; at least :data:`MIN_IMAGES`, with red cells).
    max_images
        At most this many images are measured (drawn with ``seed``).
    seed
        Seed of that draw and of the stain fit's pixel sample.
    um_per_px
        The pixel size of images whose files carry none (outranks the red-cell ruler, which is
        still measured and reported).
    progress
        ``progress(done, total)`` after each image.
    out
        Scanner file to write (YAML), checked before any work and written only when the
        calibration succeeds; None: not saved (:meth:`ScannerCalibration.save`).
    overwrite
        Replace an existing ``out``.

    Returns
    -------
    ScannerCalibration

    Raises
    ------
    InputError
        Not a folder; fewer than :data:`MIN_IMAGES` image files or readable images; fewer than
        :data:`MIN_IMAGES` images with enough whole red cells (says how many had some); images of
        more than one scanner (pixel sizes or clear-glass colours); a bad ``um_per_px``.
    OutputExistsError
        ``out`` exists and ``overwrite`` is False (before any work).
    """
    import hemotwin
    from hemotwin.twin.reimage import StainBasis, estimate_background
    from hemotwin.vision.datasets import RBC_DIAMETER_UM, measure_red_cells, red_cell_ruler

    folder = Path(images_dir).resolve()
    um_option = pixel_size.check_um_per_px(um_per_px)
    if not (isinstance(max_images, int) and max_images >= MIN_IMAGES):
        raise InputError("max_images", max_images, f"an integer of at least {MIN_IMAGES}")
    if out is not None:
        from hemotwin.io.outputs import prepare_output_file

        prepare_output_file(out, overwrite=overwrite)
    paths, n_files = _list_images(folder, max_images, seed)
    per: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for k, p in enumerate(paths):
        try:
            rgb, info = read_image(p)
        except (HemotwinError, OSError, ValueError) as exc:
            skipped.append({"path": str(p), "reason": str(exc)})
        else:
            bg = estimate_background(rgb, gamma=GAMMA)
            # Blank glass has no stain to measure: its noise alone can pass for small round "cells".
            meas = measure_red_cells(rgb) if stained_fraction(rgb, bg) >= MIN_STAINED else None
            d = np.asarray(meas["diameters_px"] if meas else [], dtype=float)
            # Per image, a few measurable discs are enough for its own scale (the one-scanner check and
            # the rim measurement); the pixel size itself comes from the ruler over all images below.
            um = RBC_DIAMETER_UM / float(np.median(d)) if len(d) >= MIN_CELLS_PER_IMAGE else None
            row: dict[str, Any] = {"name": p.name, "um": um, "n_cells": len(d), "meta": info.um_per_px,
                                   "meta_source": info.um_per_px_source, "bg": bg, "meas": meas}
            if um is not None:
                row["sigma_px"], row["n_rims"] = measure_edges(rgb, diameter_px=float(np.median(d)))
                row["noise"] = measure_glass_noise(rgb)
                row["rgb"] = rgb
            per.append(row)
        if progress:
            progress(k + 1, len(paths))
    where = str(folder)
    if len(per) < MIN_IMAGES:
        raise InputError("images", where, f"at least {MIN_IMAGES} readable images ({len(per)} of {len(paths)} "
                         f"could be read; {len(skipped)} failed, e.g. {skipped[0]['reason'] if skipped else ''})")
    ruled = [r for r in per if r["um"] is not None]
    if len(ruled) < MIN_IMAGES:
        some = sum(r["n_cells"] > 0 for r in per)
        raise InputError("images", where, f"at least {MIN_IMAGES} images with {MIN_CELLS_PER_IMAGE} or more "
                         "measurable red cells (the ruler "
                         f"of pixel size and resolution): {len(ruled)} of {len(per)} images had enough, {some} had "
                         "any; give fields of a blood smear, not crops of single cells or blank glass")
    um_img = np.array([r["um"] for r in ruled])
    given = um_option is not None or all(r["meta"] is not None for r in per)
    ruler_note = _check_one_scanner(where, [r["name"] for r in ruled], um_img, np.array([r["bg"] for r in per]),
                                    ruler_decides=not given)

    notes: list[str] = [ruler_note] if ruler_note else []
    pooled_um, pooled = red_cell_ruler([r["meas"] for r in ruled])
    # The pooled ruler decides the pixel size; when it refuses, the per-image median still serves
    # the cross-check of a pixel size given by the user or the files.
    red_um = float(pooled_um) if pooled_um is not None else float(np.median(um_img))
    n_cells = int(sum(r["n_cells"] for r in ruled))
    meta = [r["meta"] for r in per if r["meta"] is not None]
    meta_um = float(np.median(meta)) if meta and len(meta) == len(per) else None
    tags = sorted({r["meta_source"] for r in per if r["meta_source"]})
    um, source = pixel_size.resolve(where=where, metadata=meta_um, metadata_source=", ".join(tags) or None,
                                    option=um_option,
                                    estimate=lambda: (pooled_um, pooled["quality"] if pooled_um is not None
                                                      else pooled["reason"]))
    if abs(um / red_um - 1.0) > 0.10:
        notes.append(f"the pixel size used ({um:.4g} µm/px, {source}) differs from the red cells' "
                     f"({red_um:.4g} µm/px) by {100 * (um / red_um - 1):+.0f} %: check it (or the red cells are "
                     "not 7.5 µm)")
    px_err = rel_se_median(um_img)
    px = PixelSize(um_per_px=um, source=source, red_cells_um_per_px=red_um, rel_error=px_err,
                   per_image_cv=float(np.std(um_img, ddof=1) / np.mean(um_img)), n_cells=n_cells,
                   n_images=len(ruled), metadata_um_per_px=meta_um, confidence=confidence_word(px_err, len(ruled)))

    # Blur per image in px; in µm at each image's own ruler, scaled to the pixel size used.
    sig = [(r["sigma_px"], r["n_rims"]) for r in ruled if r.get("sigma_px") is not None]
    if len(sig) < 3:
        raise InputError("images", where, f"red-cell rims measurable in at least 3 images (found {len(sig)}): "
                         "isolated round red cells on clear glass")
    s_px = np.array([s for s, _ in sig])
    s_err = rel_se_median(s_px)
    res = Resolution(blur_sigma_um=float(np.median(s_px)) * um, blur_sigma_px=float(np.median(s_px)),
                     rel_error=s_err, n_cells=int(sum(n for _, n in sig)), n_images=len(sig),
                     confidence=confidence_word(s_err, len(sig)))

    nz_rows = np.array([r["noise"] for r in ruled if r.get("noise") is not None])
    if len(nz_rows) == 0:
        raise InputError("images", where, "clear glass between the cells in some images (to measure the noise)")
    nz_err = rel_se_median(nz_rows[:, 1]) if len(nz_rows) > 1 else float("nan")
    noise = Noise(sd_8bit=tuple(float(v) for v in np.median(nz_rows, axis=0)), rel_error=nz_err,
                  n_images=len(nz_rows), confidence=confidence_word(nz_err, len(nz_rows)))

    # The stain fit pools a pixel sample: two dozen fields are plenty (and bound the memory held).
    images = [r["rgb"] for r in ruled][:: max(1, math.ceil(len(ruled) / 24))]
    bgs = np.array([r["bg"] for r in per])
    wp = np.median(bgs, axis=0)
    basis = StainBasis().set_background(wp).fit(images, seed=seed)
    lv_rows = [stain_levels(basis.transform(im, um_per_px=um).absorbers) for im in images]
    levels, spread = {}, {}
    for key in ("nuclear_purple", "nuclear_azure", "red_cell_eosin"):
        vals = np.array([r[key] for r in lv_rows if key in r and r[key] > 0])
        if vals.size:
            levels[key] = float(np.median(vals))
            spread[key] = float(np.subtract(*np.percentile(np.log(vals), [75, 25])) / 1.349)
    wp8 = tuple(round(255.0 * float(v) ** (1.0 / GAMMA)) for v in np.clip(wp, 0.0, 1.0))
    stain = StainColour(basis=basis.to_dict(), white_point=tuple(float(v) for v in wp), white_point_8bit=wp8,
                        levels=levels, level_log_sd=spread)
    if skipped:
        notes.append(f"{len(skipped)} unreadable file(s) skipped")
    cal = ScannerCalibration(version=hemotwin.__version__, images_dir=where, n_files=n_files, n_images=len(per),
                             skipped=skipped, pixel_size=px, resolution=res, noise=noise, stain=stain,
                             nearest_preset=nearest_preset(um), notes=notes)
    if out is not None:
        cal.save(out, overwrite=overwrite)
    return cal


def training_target(scanner: str | Path | None, *, target: str | Path | None = None,
                    target_um_per_px: float | None = None) -> tuple[Path | None, float | None]:
    """The target scanner of a training run: from a scanner file, or the target folder as given.

    Parameters
    ----------
    scanner
        Scanner file (:meth:`ScannerCalibration.save`), or None.
    target, target_um_per_px
        The target folder and its pixel size given directly (the older way); not with ``scanner``.

    Returns
    -------
    target : Path or None
        The folder to re-image training cells towards (``TrainRequest.target``).
    target_um_per_px : float or None
        Its pixel size for files that carry none (``TrainRequest.target_um_per_px``).

    Raises
    ------
    InputError
        ``scanner`` together with ``target`` or ``target_um_per_px``; an unreadable scanner file or
        one of another version; its image folder is gone.
    """
    if scanner is None:
        return (Path(target) if target is not None else None), target_um_per_px
    if target is not None or target_um_per_px is not None:
        given = "target" if target is not None else "target_um_per_px"
        raise InputError(given, str(target if target is not None else target_um_per_px),
                         f"no target folder or pixel size with a scanner file ({scanner}): the scanner file names "
                         "its images and their pixel size")
    cal = ScannerCalibration.load(scanner)
    return cal.training_target(where=str(scanner))
