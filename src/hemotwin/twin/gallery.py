"""Contact sheet: every white-cell class under every scanner profile, beside real cells.

Tiles show the same physical field of view (``field_um``) under each profile, enlarged with
nearest-neighbour interpolation so a coarse scanner's pixels stay visible rather than smoothed.
With a cell library (docs/cell_library.md) each profile has two columns: the twin-drawn cell and a
real cell of the library re-imaged through that profile; a class the library lacks stays blank.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from hemotwin.errors import InputError
from hemotwin.taxonomy import CLASS_CODES, PARENT
from hemotwin.twin.profiles import ScannerProfile, load_profile
from hemotwin.twin.specimen import LEUKOCYTE_CLASSES, FieldSpec, compose_field

#: Real PBC (CellaVision DM96) folder for each class: its PBC group in the taxonomy; None where PBC
#: (normal blood) has none (blasts, smudge cells).
PBC_FOLDER: dict[str, str | None] = {code: PARENT.get(code) for code in CLASS_CODES}

#: µm/px assumed for PBC crops when drawing them at the same scale (measured from red cells
#: by benchmarks/bench_realism.py).
PBC_UM_PER_PX = 0.1


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # older Pillow
        return ImageFont.load_default()


def _tile(img: np.ndarray, tile_px: int) -> Image.Image:
    return Image.fromarray(img).resize((tile_px, tile_px), Image.Resampling.NEAREST)


def _pbc_tile(pbc_dir: Path, folder: str, index: int, field_um: float, tile_px: int) -> Image.Image | None:
    files = sorted((pbc_dir / folder).glob("*.jpg"))
    if not files:
        return None
    im = Image.open(files[index % len(files)]).convert("RGB")
    side = round(field_um / PBC_UM_PER_PX)
    w, h = im.size
    left, top = max(0, (w - side) // 2), max(0, (h - side) // 2)
    im = im.crop((left, top, left + min(side, w), top + min(side, h)))
    return im.resize((tile_px, tile_px), Image.Resampling.LANCZOS)


def make_gallery(
    *,
    profiles: Sequence[str | ScannerProfile] = ("analyzer-100x", "wsi-40x", "wsi-20x", "phone-40x"),
    classes: Sequence[str] = LEUKOCYTE_CLASSES,
    field_um: float = 25.6,
    tile_px: int = 150,
    seed: int = 0,
    pbc_dir: str | Path | None = None,
    with_fields: bool = True,
    library: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Image.Image:
    """Build the contact sheet; one row per class, one column per profile (+ real PBC cells).

    With ``library``, each profile has a second column: a real cell of the library re-imaged.
    """
    from hemotwin.twin.datasets import item_seed, render_cell
    from hemotwin.twin.render import render

    profs = [load_profile(p) for p in profiles]
    pbc = Path(pbc_dir) if pbc_dir is not None and Path(pbc_dir).is_dir() else None
    lib = None
    if library is not None:
        from hemotwin.twin.cell_library import open_library

        lib = open_library(library)
    # (profile, source) per column: the twin's own cell, then the library's where given.
    columns = [(p, src) for p in profs for src in (("twin", "library") if lib else ("twin",))]
    cols = len(columns) + (1 if pbc else 0)
    rows = len(classes) + (1 if with_fields else 0)
    label_w, head_h, pad = 70, 34, 4
    sheet = Image.new("RGB", (label_w + cols * (tile_px + pad), head_h + rows * (tile_px + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    font, small = _font(14), _font(11)
    for j, (p, src) in enumerate(columns):
        x = label_w + j * (tile_px + pad)
        draw.text((x + 2, 2), p.name if src == "twin" else "real cell, re-imaged", fill="black", font=font)
        sub = f"{p.camera.um_per_px:g} µm/px NA {p.optics.na:g}" if src == "twin" else "from the library"
        draw.text((x + 2, 18), sub, fill="gray", font=small)
    if pbc:
        x = label_w + len(columns) * (tile_px + pad)
        draw.text((x + 2, 2), "real PBC", fill="black", font=font)
        draw.text((x + 2, 18), "CellaVision DM96", fill="gray", font=small)
    total = len(classes) * len(columns) + (len(profs) if with_fields else 0)
    done = 0
    for i, code in enumerate(classes):
        y = head_h + i * (tile_px + pad)
        draw.text((4, y + tile_px // 2 - 8), code, fill="black", font=font)
        s = item_seed(seed, i)
        for j, (p, src) in enumerate(columns):
            x = label_w + j * (tile_px + pad)
            size_px = max(16, round(field_um / p.camera.um_per_px))
            if src == "twin":
                r = render_cell(code, p, size_px=size_px, seed=s)
                sheet.paste(_tile(r.image, tile_px), (x, y))
            elif lib is not None and lib.count(code):
                r = render_cell(code, p, size_px=size_px, seed=s, specimens="real", library=lib)
                sheet.paste(_tile(r.image, tile_px), (x, y))
            else:
                draw.text((x + 4, y + tile_px // 2 - 8), "not in library", fill="gray", font=small)
            done += 1
            if progress:
                progress(done, total)
        folder = PBC_FOLDER.get(code)
        if pbc and folder:
            t = _pbc_tile(pbc, folder, i, field_um, tile_px)
            if t is not None:
                sheet.paste(t, (label_w + len(columns) * (tile_px + pad), y))
    if with_fields:
        y = head_h + len(classes) * (tile_px + pad)
        draw.text((4, y + tile_px // 2 - 8), "field", fill="black", font=font)
        fu = 2.5 * field_um
        for j, (p, src) in enumerate(columns):
            if src != "twin":
                continue
            spec = FieldSpec(height_um=fu, width_um=fu, wbc_count=1)
            r = render(compose_field(spec, seed=seed + 1), p, seed=seed + 1)
            sheet.paste(_tile(r.image, tile_px), (label_w + j * (tile_px + pad), y))
            done += 1
            if progress:
                progress(done, total)
    return sheet


def write_gallery(out: str | Path, *, profiles: Sequence[str | ScannerProfile] | None = None,
                  pbc_dir: str | Path | None = None, library: str | Path | None = None, seed: int = 0,
                  overwrite: bool = False, progress: Callable[[int, int], None] | None = None) -> Path:
    """Render the contact sheet (all presets by default) and save it as a PNG at ``out``.

    The profiles and the real-cell folder are checked before anything is rendered or created, so a
    mistyped option fails at once and leaves nothing behind.

    Returns
    -------
    Path
        The file written (refused when it exists and ``overwrite`` is false).
    """
    from hemotwin.io.outputs import output_file
    from hemotwin.twin.profiles import list_presets

    profs = [load_profile(p) for p in (profiles or list_presets())]
    if pbc_dir is not None and not Path(pbc_dir).is_dir():
        raise InputError("pbc_dir", str(pbc_dir), "a folder of real cells (<class>/<image>)")
    if library is not None:
        from hemotwin.twin.cell_library import open_library

        open_library(library)  # a missing or stale library fails before anything is rendered
    with output_file(out, overwrite=overwrite, option="out") as path:
        sheet = make_gallery(profiles=profs, pbc_dir=pbc_dir, library=library, seed=seed, progress=progress)
        sheet.save(path)
    return path
