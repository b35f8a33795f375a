"""The renderer against the registry (gaps named, never skipped in silence) and photo I/O."""

from __future__ import annotations

import copy
import io
import logging

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms, ImageOps

from vedit.errors import RenderError
from vedit.registry import ToolCall, call_from_value, default_registry, registry_from_dict
from vedit.render.engine import Renderer
from vedit.render.photo import load_photo, save_photo


def _registry_with_extras():
    tools = copy.deepcopy(default_registry().functions)
    adjust = next(f["function"] for f in tools if f["function"]["name"] == "adjust")
    adjust["parameters"]["properties"]["clarity"] = {"type": "integer", "minimum": -100, "maximum": 100}
    tools.append({"type": "function", "function": {
        "name": "crop", "description": "Crop.", "x-vedit-prompt": "crop {intent}",
        "parameters": {"type": "object", "properties": {"zoom": {"type": "integer", "minimum": 0, "maximum": 100}},
                       "required": ["zoom"], "additionalProperties": False}}})
    return registry_from_dict(tools)


def test_gaps_name_what_the_registry_has_and_the_renderer_cannot_draw():
    assert Renderer.default().gaps() == []
    gaps = Renderer(_registry_with_extras()).gaps()
    assert any("adjust.clarity" in g for g in gaps) and any("tool crop" in g for g in gaps)


def test_an_undrawable_call_is_a_warning_naming_it_or_an_error_when_strict(caplog):
    reg = _registry_with_extras()
    adjust = reg.tool("adjust")
    calls = {
        "adjust": call_from_value(adjust, {p.name: (30 if p.name in ("clarity", "contrast") else 0) for p in adjust.slot_params}),
        "crop": call_from_value(reg.tool("crop"), {"zoom": 50}),
    }
    img = np.full((4, 4, 3), 0.7, dtype=np.float32)
    with caplog.at_level(logging.WARNING, logger="vedit.render"):
        out, skipped = Renderer(reg).render(img, calls)
    assert skipped == ["adjust.clarity=30: no operation", "crop: no renderer for this tool"]
    assert "clarity" in caplog.text and "crop" in caplog.text
    assert out[0, 0, 0] == pytest.approx(0.5 + 0.2 * 2 ** 0.3, abs=1e-5)  # contrast +30 was drawn
    with pytest.raises(RenderError, match="clarity"):
        Renderer(reg, strict=True).render(img, calls)


def test_unused_calls_leave_the_photo_as_it_was():
    reg = default_registry()
    img = np.random.default_rng(1).random((8, 8, 3), dtype=np.float32)
    out, skipped = Renderer.default().render(img, {t.name: ToolCall.unused(t) for t in reg.tools})
    assert np.array_equal(out, img) and skipped == []


def _gradient(h=6, w=10):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x / (w - 1), y / (h - 1), np.full((h, w), 0.5)], axis=-1)


def _exif(orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_respected_in_8_and_16_bits(tmp_path, orientation):
    g = _gradient()
    png = tmp_path / "g.png"
    Image.fromarray(np.round(g * 255).astype(np.uint8)).save(png, exif=_exif(orientation))
    tif = tmp_path / "g.tif"
    tifffile.imwrite(tif, np.round(g * 65535).astype(np.uint16), photometric="rgb",
                     extratags=[(274, 3, 1, orientation, True)])
    eight, sixteen = load_photo(png, max_side=None), load_photo(tif, max_side=None)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(png)), dtype=np.float32) / 255
    assert eight.bits == 8 and sixteen.bits == 16
    assert eight.pixels.shape == expected.shape == sixteen.pixels.shape
    np.testing.assert_allclose(eight.pixels, expected, atol=1e-6)
    np.testing.assert_allclose(sixteen.pixels, expected, atol=1 / 255)
    if orientation in (6, 8):
        assert eight.pixels.shape[:2] == (10, 6)


def test_sixteen_bits_survive_the_round_trip_and_the_icc_profile_is_kept(tmp_path):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    a = np.full((4, 5, 3), 1000, dtype=np.uint16)  # 1000/65535: between two 8-bit steps
    src = tmp_path / "in.tif"
    tifffile.imwrite(src, a, photometric="rgb", extratags=[(34675, 7, len(icc), icc, True)])
    photo = load_photo(src)
    assert photo.bits == 16 and photo.icc_profile == icc
    out = save_photo(photo.pixels, tmp_path / "out.tif", icc_profile=photo.icc_profile, bits=16)
    assert np.array_equal(tifffile.imread(out), a)
    png = save_photo(photo.pixels, tmp_path / "out.png", icc_profile=photo.icc_profile)
    assert Image.open(png).info.get("icc_profile") == icc
    assert load_photo(tmp_path / "out.png").icc_profile == icc


def test_large_photos_are_previewed_at_a_bounded_size(tmp_path):
    big = tmp_path / "big.png"
    Image.new("RGB", (3000, 1000), (200, 120, 40)).save(big)
    photo = load_photo(big, max_side=1024)
    assert photo.size == (1024, 341) and photo.source_size == (3000, 1000)
    assert photo.seconds > 0
    np.testing.assert_allclose(photo.pixels[170, 500], np.array([200, 120, 40]) / 255, atol=1 / 255)


def test_a_non_image_is_one_line_error(tmp_path):
    with pytest.raises(RenderError, match="not an image") as err:
        load_photo(b"%PDF-1.4 definitely not a photo", name="notes.pdf")
    assert "\n" not in str(err.value)
    with pytest.raises(RenderError, match="not found"):
        load_photo(tmp_path / "missing.jpg")
    with pytest.raises(RenderError, match="unknown image type"):
        save_photo(np.zeros((2, 2, 3), np.float32), tmp_path / "out.xyz")
    buf = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buf, format="PNG")
    with pytest.raises(RenderError, match="broken or truncated"):
        load_photo(buf.getvalue()[: len(buf.getvalue()) // 2], name="cut.png")


def test_a_large_jpeg_is_decoded_at_a_reduced_scale_and_still_oriented(tmp_path):
    big = tmp_path / "big.jpg"
    Image.new("RGB", (3000, 2000), (40, 160, 90)).save(big, quality=95, exif=_exif(6))
    photo = load_photo(big, max_side=512)
    assert photo.source_size == (2000, 3000) and photo.size == (341, 512)  # rotated, then bounded
    np.testing.assert_allclose(photo.pixels[256, 170], np.array([40, 160, 90]) / 255, atol=3 / 255)


def test_a_16_bit_colour_png_is_read_at_8_bits_with_a_warning(tmp_path, caplog):
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"\0" + struct.pack(">6H", 1000, 2000, 3000, 65535, 0, 32768)  # 2x1, 16 bits per channel
    png = tmp_path / "rgb16.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 1, 16, 2, 0, 0, 0))
                    + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    with caplog.at_level(logging.WARNING, logger="vedit.render"):
        photo = load_photo(png)
    assert "16-bit colour PNG is read at 8 bits" in caplog.text and photo.bits == 8
    np.testing.assert_allclose(photo.pixels[0, 1], [1.0, 0.0, 32768 / 65535], atol=1 / 255)
