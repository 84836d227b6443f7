"""read_image on every odd kind of file a user may hand us; write_png round trip."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from hemotwin.errors import InputError
from hemotwin.io.images import read_image, write_png


def _rgb(h: int = 20, w: int = 30) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_plain_rgb_png_round_trip_with_pixel_size(tmp_path: Path) -> None:
    img = _rgb()
    before = img.copy()
    write_png(tmp_path / "a.png", img, um_per_px=0.25)
    out, info = read_image(tmp_path / "a.png")
    np.testing.assert_array_equal(out, img)
    np.testing.assert_array_equal(img, before)  # input not modified
    assert info.notes == []
    assert info.format == "PNG" and info.size == (30, 20)
    # pHYs stores integer pixels per metre: 4,000,000 px/m for 0.25 µm/px is exact.
    assert info.um_per_px == pytest.approx(0.25, rel=1e-6)
    assert info.um_per_px_source == "PNG pHYs"


def test_grayscale_is_replicated(tmp_path: Path) -> None:
    g = _rgb()[..., 0]
    Image.fromarray(g, mode="L").save(tmp_path / "g.png")
    out, info = read_image(tmp_path / "g.png")
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 1], g)
    assert any("grayscale" in n for n in info.notes)


def test_rgba_is_composited_on_white(tmp_path: Path) -> None:
    a = np.zeros((4, 4, 4), dtype=np.uint8)
    a[..., 0] = 200  # red where opaque
    a[:2, :, 3] = 255
    a[2:, :, 3] = 0  # fully transparent rows -> white
    Image.fromarray(a, mode="RGBA").save(tmp_path / "a.png")
    out, info = read_image(tmp_path / "a.png")
    np.testing.assert_array_equal(out[0, 0], [200, 0, 0])
    np.testing.assert_array_equal(out[3, 3], [255, 255, 255])
    assert any("alpha composited on white" in n for n in info.notes)


def test_palette_image(tmp_path: Path) -> None:
    Image.fromarray(_rgb()).convert("P", palette=Image.Palette.ADAPTIVE, colors=8).save(tmp_path / "p.png")
    out, info = read_image(tmp_path / "p.png")
    assert out.shape == (20, 30, 3)
    assert any("palette" in n for n in info.notes)


def test_16bit_grayscale_png_scaled(tmp_path: Path) -> None:
    g = np.array([[0, 65535], [257 * 100, 257 * 200]], dtype=np.uint16)
    Image.fromarray(g).save(tmp_path / "g16.png")
    out, info = read_image(tmp_path / "g16.png")
    np.testing.assert_array_equal(out[..., 0], [[0, 255], [100, 200]])
    assert any("16-bit" in n for n in info.notes)


def test_16bit_rgb_tiff_via_tifffile_with_resolution(tmp_path: Path) -> None:
    img = (_rgb().astype(np.uint16) * 257)
    # 40000 px/cm = 0.25 µm/px, written as TIFF resolution tags in centimetres.
    tifffile.imwrite(tmp_path / "c16.tif", img, photometric="rgb", resolution=(40000, 40000),
                     resolutionunit="CENTIMETER")
    out, info = read_image(tmp_path / "c16.tif")
    np.testing.assert_array_equal(out, _rgb())
    assert any("16-bit" in n for n in info.notes)
    assert info.um_per_px == pytest.approx(0.25)
    assert info.um_per_px_source == "TIFF resolution tags"


def test_ome_tiff_physical_size(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "o.ome.tif", _rgb(), photometric="rgb",
                     metadata={"axes": "YXS", "PhysicalSizeX": 0.121, "PhysicalSizeY": 0.121})
    out, info = read_image(tmp_path / "o.ome.tif")
    assert out.shape == (20, 30, 3)
    assert info.um_per_px == pytest.approx(0.121)
    assert info.um_per_px_source == "OME PhysicalSizeX"


def test_display_dpi_is_not_a_pixel_size(tmp_path: Path) -> None:
    Image.fromarray(_rgb()).save(tmp_path / "d.jpg", dpi=(72, 72))
    _, info = read_image(tmp_path / "d.jpg")
    assert info.um_per_px is None
    assert any("ignored" in n for n in info.notes)


def test_cmyk_jpeg_converted(tmp_path: Path) -> None:
    Image.fromarray(_rgb()).convert("CMYK").save(tmp_path / "c.jpg")
    out, info = read_image(tmp_path / "c.jpg")
    assert out.shape == (20, 30, 3)
    assert any("CMYK" in n for n in info.notes)


def test_truncated_jpeg_names_the_file(tmp_path: Path) -> None:
    Image.fromarray(_rgb(200, 200)).save(tmp_path / "full.jpg", quality=95)
    data = (tmp_path / "full.jpg").read_bytes()
    bad = tmp_path / "cut.jpg"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as e:
        read_image(bad)
    assert "cut.jpg" in str(e.value) and "truncated" in str(e.value)


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"II*\x00garbage"])
def test_garbage_and_empty_files(tmp_path: Path, content: bytes) -> None:
    f = tmp_path / "x.tif"
    f.write_bytes(content)
    with pytest.raises(InputError, match=r"x\.tif"):
        read_image(f)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_image(tmp_path / "nope.png")


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width x height`` (a decompression bomb's calling card)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    body = struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    return b"\x89PNG\r\n\x1a\n" + body


def test_bomb_limit(tmp_path: Path) -> None:
    f = tmp_path / "bomb.png"
    f.write_bytes(_png_header_only(20000, 20000))  # 400 MP claimed in 33 bytes
    with pytest.raises(InputError, match=r"bomb\.png"):
        read_image(f)
    write_png(tmp_path / "small.png", _rgb())
    with pytest.raises(InputError, match="at most 100 pixels"):
        read_image(tmp_path / "small.png", max_pixels=100)


def test_write_png_rejects_bad_shape(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        write_png(tmp_path / "z.png", np.zeros((4, 4, 2), dtype=np.uint8))
