"""Reading and writing single images robustly: any common kind in, ``H x W x 3`` uint8 RGB out.

:func:`read_image` never lets a decoder exception escape: a corrupt, truncated, oversized or
unsupported file becomes an :class:`~hemotwin.errors.InputError` that names the file. Everything it
had to change to reach 8-bit RGB (grayscale expanded, alpha composited on white, 16-bit scaled, CMYK
converted) is written in ``info.notes``, so a batch can report what it did. The pixel size is read
from metadata when the file carries a plausible one (TIFF resolution tags, OME-XML, ImageJ, PNG
pHYs/JPEG density) and is otherwise None: callers then take it from a manifest, an option or the
red-cell ruler (:func:`hemotwin.vision.datasets.estimate_um_per_px`).
"""

from __future__ import annotations

import re
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from hemotwin.errors import InputError
from hemotwin.io.pixel_size import PLAUSIBLE_UM_PER_PX

__all__ = ["DEFAULT_MAX_PIXELS", "IMAGE_SUFFIXES", "ImageInfo", "read_image", "tiff_pixel_size", "write_png"]

#: Decompression-bomb limit of :func:`read_image` (pixels). A 50 MP cap admits whole camera fields
#: but refuses tiny files that claim gigapixel sizes; whole-slide images need a tiled reader instead.
DEFAULT_MAX_PIXELS = 50_000_000

#: File suffixes treated as images by the data-set loaders.
IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".jp2", ".ppm", ".pgm"})



@dataclass
class ImageInfo:
    """What :func:`read_image` found and did.

    Attributes
    ----------
    path
        The file read.
    format
        Container format (``"PNG"``, ``"JPEG"``, ``"TIFF"`` ...).
    mode
        Original pixel mode (PIL mode, or ``"<dtype> <shape>"`` for tifffile reads).
    size
        ``(width, height)`` in pixels.
    um_per_px
        Pixel size from the file's metadata, or None.
    um_per_px_source
        Where ``um_per_px`` came from (``"TIFF resolution tags"``, ``"OME PhysicalSizeX"`` ...), or None.
    notes
        Every conversion applied, in order (empty for a plain 8-bit RGB file).
    """

    path: str
    format: str
    mode: str
    size: tuple[int, int]
    um_per_px: float | None = None
    um_per_px_source: str | None = None
    notes: list[str] = field(default_factory=list)


def read_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, ImageInfo]:
    """Read any common image file as ``H x W x 3`` uint8 RGB.

    Parameters
    ----------
    path
        Image file (PNG, JPEG, TIFF/OME-TIFF, BMP, GIF, WebP ...). TIFF kinds Pillow cannot decode
        (16-bit RGB, float, planar, multi-sample) are read with tifffile.
    max_pixels
        Refuse images with more pixels than this (decompression-bomb guard), checked from the header
        before decoding. Pillow's own hard limit (about 179 MP) still applies to files Pillow decodes.

    Returns
    -------
    rgb : ndarray
        ``H x W x 3`` uint8, a new array.
    info : ImageInfo
        Format, original mode, pixel size from metadata and notes on every conversion.

    Raises
    ------
    InputError
        Missing, empty, corrupt, truncated, unsupported or oversized file; the message names it.

    Notes
    -----
    Conversions: 1-bit and grayscale are replicated to three channels; palette images are expanded;
    alpha is composited on white (the colour of clear glass in a bright-field image); 16-bit data
    are scaled by 255/65535 (full range; a 12-bit camera stored in 16 bits therefore reads dark, which
    is noted, not guessed away); float data in [0, 1] are scaled by 255, other float/32-bit data are
    min-max scaled; CMYK and YCbCr are converted by Pillow (embedded ICC profiles are not applied).
    Multi-frame files give their first frame.
    """
    p = Path(path)
    where = str(p)
    if not p.is_file():
        raise InputError(where, "no such file" if not p.exists() else "not a file", "an image file")
    if p.stat().st_size == 0:
        raise InputError(where, "empty file (0 bytes)", "an image file")
    is_tiff = _looks_like_tiff(p)
    tiff_error: BaseException | None = None
    if is_tiff:
        # TIFF through tifffile first (exact 16-bit/float data, OME); Pillow covers what tifffile
        # cannot decode without optional codecs (e.g. old-style JPEG compression).
        try:
            rgb, info = _read_with_tifffile(p, max_pixels)
        except InputError as exc:
            if "pixels" in exc.expected:  # too large: do not retry with another decoder
                raise
            tiff_error = exc
        else:
            _tiff_pixel_size(p, info)
            return rgb, info
    try:
        rgb, info = _read_with_pil(p, max_pixels)
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, TypeError, KeyError, IndexError,
            NotImplementedError, EOFError, struct.error, Image.DecompressionBombError) as exc:
        if isinstance(exc, Image.DecompressionBombError):
            raise InputError(where, "image too large for Pillow's decompression-bomb guard",
                             f"at most {max_pixels} pixels (max_pixels)") from exc
        extra = f"; tifffile: {tiff_error.value}" if tiff_error is not None else ""
        raise InputError(where, f"unreadable image ({_reason(exc)}{extra})",
                         "a complete PNG, JPEG, TIFF, BMP, GIF or WebP file") from exc
    if is_tiff:
        _tiff_pixel_size(p, info)
    return rgb, info


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if "truncated" in text.lower() or isinstance(exc, EOFError):
        return f"truncated data: {text}"
    return text


def _looks_like_tiff(p: Path) -> bool:
    with open(p, "rb") as fh:
        head = fh.read(4)
    return head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def _png_bit_depth(p: Path) -> int | None:
    with open(p, "rb") as fh:
        head = fh.read(26)
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return head[24]
    return None


def _check_size(where: str, w: int, h: int, max_pixels: int) -> None:
    if w <= 0 or h <= 0:
        raise InputError(where, f"{w}x{h} px", "an image with at least one pixel")
    if w * h > max_pixels:
        raise InputError(where, f"{w}x{h} px ({w * h} pixels)",
                         f"at most {max_pixels} pixels (max_pixels; decompression-bomb guard)")


def _read_with_pil(p: Path, max_pixels: int) -> tuple[np.ndarray, ImageInfo]:
    where = str(p)
    with warnings.catch_warnings(record=True) as caught:
        # The size is checked against our own limit below, so Pillow's bomb warning is noise; other
        # warnings (corrupt EXIF ...) become notes instead of console output.
        warnings.simplefilter("always")
        with Image.open(p) as im:
            w, h = im.size
            _check_size(where, w, h, max_pixels)
            info = ImageInfo(path=where, format=im.format or "?", mode=im.mode, size=(w, h))
            if getattr(im, "n_frames", 1) > 1:
                info.notes.append(f"first of {im.n_frames} frames")
            im.load()  # decode now, inside the guard: truncated data raises OSError here
            if im.info.get("icc_profile"):
                info.notes.append("embedded ICC profile not applied")
            _dpi_pixel_size(im, info)
            rgb = _pil_to_rgb(im, info, p)
    info.notes.extend(f"warning: {w.message}" for w in caught
                      if not issubclass(w.category, Image.DecompressionBombWarning))
    return rgb, info


def _pil_to_rgb(im: Image.Image, info: ImageInfo, p: Path) -> np.ndarray:
    mode = im.mode
    if mode == "RGB":
        if info.format == "PNG" and _png_bit_depth(p) == 16:
            info.notes.append("16-bit RGB PNG reduced to 8-bit by Pillow (high byte)")
        return np.array(im, dtype=np.uint8)
    if mode == "P" or mode == "PA":
        has_alpha = mode == "PA" or "transparency" in im.info
        info.notes.append("palette expanded")
        im = im.convert("RGBA" if has_alpha else "RGB")
        mode = im.mode
        if mode == "RGB":
            return np.array(im, dtype=np.uint8)
    if mode in ("RGBA", "LA", "RGBa", "La"):
        a = np.asarray(im.getchannel("A"), dtype=np.float32) / 255.0
        rgb = np.asarray(im.convert("RGB"), dtype=np.float32)
        if np.any(a < 1.0):
            info.notes.append("alpha composited on white")
        else:
            info.notes.append("opaque alpha channel dropped")
        out = rgb * a[..., None] + 255.0 * (1.0 - a[..., None])
        if mode.startswith("L"):
            info.notes.insert(0, "grayscale replicated to RGB")
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if mode in ("1", "L"):
        info.notes.append("grayscale replicated to RGB" if mode == "L" else "1-bit image replicated to RGB")
        g = np.asarray(im.convert("L"), dtype=np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(im)
        if mode.startswith("I;16"):
            arr = arr.astype(np.uint16)
        g = _to_uint8(arr, info, "grayscale")
        info.notes.append("grayscale replicated to RGB")
        return np.repeat(g[..., None], 3, axis=2)
    # CMYK, YCbCr, LAB, HSV: Pillow knows the conversion.
    info.notes.append(f"{mode} converted to RGB")
    return np.array(im.convert("RGB"), dtype=np.uint8)


def _to_uint8(arr: np.ndarray, info: ImageInfo, what: str) -> np.ndarray:
    """Scale integer or float data to uint8 with a note saying how."""
    if arr.dtype == np.uint8:
        return arr.copy()
    if arr.dtype == np.uint16:
        info.notes.append(f"16-bit {what} scaled to 8-bit (x 255/65535)")
        return np.rint(arr.astype(np.float32) * (255.0 / 65535.0)).astype(np.uint8)
    a = arr.astype(np.float64)
    if not np.all(np.isfinite(a)):
        info.notes.append("non-finite values set to 0")
        a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    if arr.dtype.kind == "f" and a.min() >= 0.0 and a.max() <= 1.0:
        info.notes.append(f"float {what} in [0, 1] scaled to 8-bit")
        return np.rint(a * 255.0).astype(np.uint8)
    lo, hi = float(a.min()), float(a.max())
    info.notes.append(f"{arr.dtype} {what} min-max scaled to 8-bit (range {lo:g}..{hi:g})")
    if hi <= lo:
        return np.zeros(a.shape, dtype=np.uint8)
    return np.rint((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _read_with_tifffile(p: Path, max_pixels: int) -> tuple[np.ndarray, ImageInfo]:
    import tifffile  # only when needed: Pillow reads most files

    where = str(p)
    try:
        with tifffile.TiffFile(p) as tf:
            series = tf.series[0]
            shape, axes = tuple(series.shape), series.axes
            hw = _tiff_hw(shape, axes)
            if hw is not None:
                _check_size(where, hw[1], hw[0], max_pixels)
            arr = tf.pages[0].asarray() if len(tf.pages) > 1 else series.asarray()
            page_axes = tf.pages[0].axes if len(tf.pages) > 1 else axes
    except InputError:
        raise
    except Exception as exc:  # tifffile raises many types on damaged files
        raise InputError(where, f"unreadable TIFF ({_reason(exc)})", "a complete TIFF file") from exc
    info = ImageInfo(path=where, format="TIFF", mode=f"{arr.dtype} {'x'.join(map(str, arr.shape))}",
                     size=(0, 0), notes=["read with tifffile"])
    if len(shape) > 3 or (len(shape) == 3 and shape[0] not in (3, 4) and shape[-1] not in (3, 4)):
        info.notes.append(f"first plane of series with shape {shape} ({axes})")
    img = _tiff_to_hwc(arr, page_axes, info)
    _check_size(where, img.shape[1], img.shape[0], max_pixels)
    info.size = (img.shape[1], img.shape[0])
    if img.shape[2] == 4:
        a = img[..., 3].astype(np.float64)
        a = a / (65535.0 if img.dtype == np.uint16 else 255.0 if img.dtype == np.uint8 else max(a.max(), 1e-12))
        base = img[..., :3].astype(np.float64)
        white = 65535.0 if img.dtype == np.uint16 else 255.0 if img.dtype == np.uint8 else 1.0
        img = (base * a[..., None] + white * (1 - a[..., None])).astype(img.dtype)
        info.notes.append("alpha composited on white")
    elif img.shape[2] == 1:
        info.notes.append("grayscale replicated to RGB")
        img = np.repeat(img, 3, axis=2)
    rgb = _to_uint8(np.ascontiguousarray(img[..., :3]), info, "image")
    return rgb, info


def _tiff_hw(shape: tuple[int, ...], axes: str) -> tuple[int, int] | None:
    if "Y" in axes and "X" in axes:
        return shape[axes.index("Y")], shape[axes.index("X")]
    return None


def _tiff_to_hwc(arr: np.ndarray, axes: str, info: ImageInfo) -> np.ndarray:
    """Reduce a TIFF page/series to ``H x W x C`` (C in 1, 3, 4) by taking first planes."""
    a = np.asarray(arr)
    axes = axes if len(axes) == a.ndim else ""
    if axes:
        # Move the sample axis (S or C) last; take index 0 of any other non-spatial axis.
        for ax in list(axes):
            if ax not in "YXSC" and ax in axes:
                i = axes.index(ax)
                a = np.take(a, 0, axis=i)
                axes = axes[:i] + axes[i + 1:]
        chan = next((c for c in "SC" if c in axes), None)
        if chan and "C" in axes and "S" in axes:  # both: take the first C plane
            i = axes.index("C")
            a = np.take(a, 0, axis=i)
            axes = axes[:i] + axes[i + 1:]
            chan = "S"
        if chan:
            a = np.moveaxis(a, axes.index(chan), -1)
        else:
            a = a[..., None]
    else:
        a = np.squeeze(a)
        if a.ndim == 2:
            a = a[..., None]
        elif a.ndim == 3 and a.shape[0] in (3, 4) and a.shape[-1] not in (3, 4):
            a = np.moveaxis(a, 0, -1)
    if a.ndim != 3:
        raise InputError(info.path, f"array of shape {arr.shape}", "a 2-D grayscale or colour image")
    c = a.shape[2]
    if c == 2:  # gray + alpha
        a = np.concatenate([np.repeat(a[..., :1], 3, axis=2), a[..., 1:2]], axis=2)
    elif c > 4:
        info.notes.append(f"first 3 of {c} channels used")
        a = a[..., :3]
    return a


def _plausible(um: float) -> bool:
    # Metadata pixel sizes outside the plausible range are display defaults (72/96/300 dpi =
    # 353/265/85 µm/px), not microscope calibrations; they are ignored with a note rather than trusted.
    return PLAUSIBLE_UM_PER_PX[0] <= um <= PLAUSIBLE_UM_PER_PX[1]


def _set_pixel_size(info: ImageInfo, um: float | None, source: str) -> None:
    if um is None or not np.isfinite(um) or um <= 0:
        return
    if _plausible(um):
        info.um_per_px, info.um_per_px_source = float(um), source
    else:
        info.notes.append(f"{source} gives {um:.4g} µm/px, not a microscope pixel size: ignored")


def _dpi_pixel_size(im: Image.Image, info: ImageInfo) -> None:
    """PNG pHYs (metre unit) and JPEG/BMP density arrive from Pillow as ``info['dpi']``."""
    if info.format == "TIFF":
        return  # handled from the tags themselves, which carry the unit
    dpi = im.info.get("dpi")
    if not dpi:
        return
    try:
        x = float(dpi[0])
    except (TypeError, ValueError, IndexError):
        return
    if x > 0:
        src = "PNG pHYs" if info.format == "PNG" else f"{info.format} density"
        _set_pixel_size(info, 25400.0 / x, src)


def tiff_pixel_size(path: str | Path) -> tuple[float | None, str | None]:
    """The pixel size a TIFF's metadata states, without decoding its pixels (for a large scan).

    Same reader and order of trust as :func:`read_image`: OME-XML, ImageJ metadata, then the
    resolution tags; implausible values (display dpi) count as none.

    Parameters
    ----------
    path
        A TIFF or OME-TIFF file.

    Returns
    -------
    um_per_px : float or None
        µm per pixel, or None when the metadata states none (or is unreadable).
    source : str or None
        Which metadata gave it (``"OME PhysicalSizeX"``, ``"ImageJ resolution"``,
        ``"TIFF resolution tags"``), or None.
    """
    p = Path(path)
    info = ImageInfo(path=str(p), format="TIFF", mode="", size=(0, 0))
    _tiff_pixel_size(p, info)
    return info.um_per_px, info.um_per_px_source


def _tiff_pixel_size(p: Path, info: ImageInfo) -> None:
    """Pixel size from OME-XML, ImageJ metadata or the resolution tags (in that order of trust)."""
    import tifffile

    try:
        with tifffile.TiffFile(p) as tf:
            ome = tf.ome_metadata
            ij = tf.imagej_metadata
            tags = tf.pages[0].tags
            xres = tags.get("XResolution")
            unit = tags.get("ResolutionUnit")
            xres_v = _rational(xres.value) if xres is not None else None
            unit_v = int(unit.value) if unit is not None else 2  # TIFF default unit: inch
    except Exception as exc:  # metadata is optional: a damaged tag must not lose the pixels
        info.notes.append(f"TIFF metadata unreadable ({type(exc).__name__}); pixel size unknown")
        return
    if ome:
        um = _ome_physical_size(ome)
        if um is not None:
            _set_pixel_size(info, um, "OME PhysicalSizeX")
            return
    if ij and xres_v:
        unit_name = str(ij.get("unit", "")).strip().lower()
        per_um = {"micron": 1.0, "um": 1.0, "µm": 1.0, "\\u00b5m": 1.0, "nm": 1e-3, "mm": 1e3}.get(unit_name)
        if per_um is not None:
            _set_pixel_size(info, per_um / xres_v, "ImageJ resolution")
            return
    if xres_v:
        um_per_unit = {2: 25400.0, 3: 10000.0}.get(unit_v)
        if um_per_unit is not None:  # unit 1 ("none") carries only an aspect ratio
            _set_pixel_size(info, um_per_unit / xres_v, "TIFF resolution tags")


def _rational(v: Any) -> float | None:
    try:
        if isinstance(v, tuple) and len(v) == 2:
            return float(v[0]) / float(v[1]) if v[1] else None
        return float(v)
    except (TypeError, ValueError, ZeroDivisionError):
        return None


_OME_UNITS = {"µm": 1.0, "um": 1.0, "micron": 1.0, "nm": 1e-3, "mm": 1e3, "m": 1e6, "cm": 1e4, "pm": 1e-6,
              "\u03bcm": 1.0}


def _ome_physical_size(xml: str) -> float | None:
    m = re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', xml)
    if not m:
        return None
    u = re.search(r'PhysicalSizeXUnit="([^"]+)"', xml)
    factor = _OME_UNITS.get(u.group(1) if u else "µm")
    try:
        return float(m.group(1)) * factor if factor is not None else None
    except ValueError:
        return None


def write_png(path: str | Path, rgb: np.ndarray, *, um_per_px: float | None = None) -> Path:
    """Write an ``H x W x 3`` (or ``H x W``) image as a lossless PNG.

    Parameters
    ----------
    path
        Output file; its folder must exist.
    rgb
        uint8, or float in [0, 1] (scaled by 255 and rounded). Not modified.
    um_per_px
        When given, stored in the PNG pHYs chunk (pixels per metre), which :func:`read_image` reads
        back to about 1e-6 relative precision.

    Returns
    -------
    Path
        ``path``.
    """
    a = np.asarray(rgb)
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise InputError("rgb", f"shape {a.shape}", "H x W x 3 (or H x W) image")
    if a.dtype != np.uint8:
        if a.dtype.kind != "f":
            raise InputError("rgb", f"dtype {a.dtype}", "uint8, or float in [0, 1]")
        a = np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
    kw: dict[str, Any] = {}
    if um_per_px is not None:
        if not (um_per_px > 0 and np.isfinite(um_per_px)):
            raise InputError("um_per_px", um_per_px, "a positive pixel size in µm")
        dpi = 25400.0 / um_per_px
        kw["dpi"] = (dpi, dpi)
    p = Path(path)
    Image.fromarray(np.ascontiguousarray(a)).save(p, format="PNG", **kw)
    return p
