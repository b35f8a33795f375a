"""Photos in and out: decoding (8 and 16 bits), EXIF orientation, ICC profiles, bounded previews.

A :class:`Photo` is float32 sRGB-encoded pixels in [0, 1] plus what must survive the round trip:
the source bit depth and the embedded ICC profile (written back on output, so a Display P3 photo
stays Display P3). Pillow decodes everything it knows; 16-bit colour TIFFs, which Pillow would cut
to 8 bits, are read with tifffile and oriented the same way Pillow's ``exif_transpose`` orients
the 8-bit ones (16-bit colour PNGs are read at 8 bits, with a warning saying so). Large photos are previewed at a bounded size, downscaled in linear light.
Transparency is dropped (the tools edit colour). Anything that is not a readable image is one
:class:`~vedit.errors.RenderError` line.
"""

from __future__ import annotations

import io
import logging
import time
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from vedit.errors import RenderError
from vedit.render.light import to_encoded, to_linear

log = logging.getLogger(__name__)

#: Default longest side of a preview, in pixels.
PREVIEW_SIDE = 1024
#: Refuse images with more pixels than this (a decompression bomb, or not a photo).
MAX_PIXELS = 80_000_000
_ORIENTATION = 0x0112


@dataclass
class Photo:
    pixels: np.ndarray  # H x W x 3 float32, sRGB-encoded, [0, 1]
    bits: int = 8
    icc_profile: bytes | None = None
    source_size: tuple[int, int] | None = None  # (width, height) before the preview downscale
    name: str = "photo"
    seconds: float = 0.0  # time spent decoding and downscaling

    @property
    def size(self) -> tuple[int, int]:
        return self.pixels.shape[1], self.pixels.shape[0]


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """numpy twin of ``PIL.ImageOps.exif_transpose`` for arrays Pillow cannot hold (16-bit RGB)."""
    ops = {
        2: lambda m: m[:, ::-1],
        3: lambda m: m[::-1, ::-1],
        4: lambda m: m[::-1],
        5: lambda m: m.transpose(1, 0, 2),
        6: lambda m: np.rot90(m, -1),
        7: lambda m: m.transpose(1, 0, 2)[::-1, ::-1],
        8: lambda m: np.rot90(m, 1),
    }
    return np.ascontiguousarray(ops[orientation](a)) if orientation in ops else a


def _open(data: bytes, name: str, max_side: int | None = None):
    """Open and decode; returns the image and its oriented source size (width, height).

    A JPEG larger than twice ``max_side`` is decoded at a reduced scale (libjpeg's DCT scaling,
    ``Image.draft``): decoding 24 Mpixel to show 1 Mpixel is most of a preview's time otherwise.
    """
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            # Pillow orients TIFFs itself while loading and drops the tag: keep it for tifffile's pixels
            im.vedit_orientation = int(getattr(im, "tag_v2", {}).get(_ORIENTATION, 1))
            # Pillow decodes 16-bit colour PNGs to 8 bits: say so rather than pretend
            im.vedit_cut_16 = (im.format == "PNG" and im.mode in ("RGB", "RGBA") and bool(im.tile)
                               and ";16" in str(im.tile[0].args))
            w, h = im.size
            if im.format != "TIFF" and int(im.getexif().get(_ORIENTATION, 1)) in (5, 6, 7, 8):
                w, h = h, w
            if im.format == "JPEG" and max_side and max(im.size) > 2 * max_side:
                scale = 2 * max_side / max(im.size)
                im.draft("RGB", (int(im.size[0] * scale) + 1, int(im.size[1] * scale) + 1))
            im.load()
        return im, (w, h)
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        if isinstance(exc, UnidentifiedImageError):
            raise RenderError(f"{name}: not an image Pillow can read (use a JPEG, PNG, TIFF or WebP)") from None
        raise RenderError(f"{name}: over {MAX_PIXELS:,} pixels; downscale it first") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise RenderError(f"{name}: a broken or truncated image ({exc})") from None


def _pixels(im, data: bytes) -> tuple[np.ndarray, int]:
    """Pixels of an opened image, oriented: uint8 / uint16 arrays as decoded (floats for 32-bit
    integer images), and their source bit depth."""
    from PIL import ImageOps

    if im.format == "TIFF":
        import tifffile

        try:
            raw = tifffile.imread(io.BytesIO(data))
        except Exception:  # noqa: BLE001 - a TIFF tifffile cannot read: Pillow's 8-bit decode
            raw = None
        if raw is not None and raw.dtype == np.uint16 and raw.ndim == 3 and raw.shape[-1] in (3, 4):
            return _orient(raw[..., :3], im.vedit_orientation), 16
    im = ImageOps.exif_transpose(im)
    if im.mode.startswith("I;16"):
        return np.repeat(np.asarray(im, dtype=np.uint16)[..., None], 3, axis=-1), 16
    if im.mode == "I":
        grey = np.asarray(im, dtype=np.float32) / max(1.0, im.getextrema()[1])
        return np.repeat(grey[..., None], 3, axis=-1), 16
    return np.asarray(im.convert("RGB")), 8


@lru_cache(maxsize=2)
def _decode_table(levels: int) -> np.ndarray:
    """Linear light of every code value of an integer image (a lookup beats the power function)."""
    return to_linear(np.arange(levels, dtype=np.float64) / (levels - 1))


def _as_float(raw: np.ndarray, linear: bool) -> np.ndarray:
    """Integer or float pixels as float32 in [0, 1], encoded or (``linear``) linear light."""
    if raw.dtype in (np.uint8, np.uint16):
        if linear:
            return _decode_table(256 if raw.dtype == np.uint8 else 65536)[raw]
        return raw.astype(np.float32) / np.float32(255.0 if raw.dtype == np.uint8 else 65535.0)
    x = np.asarray(raw, dtype=np.float32)
    return to_linear(x) if linear else x


def bound(pixels: np.ndarray, max_side: int | None) -> np.ndarray:
    """Downscale so the longest side is at most ``max_side`` (Lanczos, in linear light).

    ``pixels``: float encoded values, or the uint8 / uint16 arrays a decoder gives; the result is
    float32 encoded values either way.
    """
    h, w = pixels.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return _as_float(pixels, linear=False)
    from PIL import Image

    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    lin = _as_float(pixels, linear=True)
    chans = [np.asarray(Image.fromarray(np.ascontiguousarray(lin[..., c]), mode="F")
                        .resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0))
             for c in range(3)]
    return to_encoded(np.stack(chans, axis=-1))


def load_photo(source: str | Path | bytes, *, max_side: int | None = PREVIEW_SIDE, name: str | None = None) -> Photo:
    """Read a photo from a path or bytes, oriented, bounded to ``max_side`` (None: full size)."""
    start = time.perf_counter()
    if isinstance(source, (bytes, bytearray)):
        data, label = bytes(source), name or "upload"
    else:
        path = Path(source)
        label = name or path.name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise RenderError(f"{path}: photo not found") from None
        except OSError as exc:
            raise RenderError(f"{path}: cannot read ({exc.strerror})") from None
    im, source_size = _open(data, label, max_side)
    if im.vedit_cut_16:
        log.warning("%s: a 16-bit colour PNG is read at 8 bits (Pillow keeps no more); "
                    "a 16-bit TIFF keeps all 16", label)
    icc = im.info.get("icc_profile")
    pixels, bits = _pixels(im, data)
    pixels = bound(pixels, max_side)
    return Photo(pixels.astype(np.float32), bits, icc, source_size, label, time.perf_counter() - start)


def from_array(rgb: np.ndarray, name: str = "photo", max_side: int | None = PREVIEW_SIDE) -> Photo:
    """A photo from a uint8 / uint16 / float array (e.g. scikit-image's sample images)."""
    a = np.asarray(rgb)
    bits = 16 if a.dtype == np.uint16 else 8
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)
    return Photo(bound(a[..., :3], max_side), bits, None, (a.shape[1], a.shape[0]), name)


def to_pil(pixels: np.ndarray, icc_profile: bytes | None = None):
    """An 8-bit Pillow image (rounded, not truncated), carrying the ICC profile for saving."""
    from PIL import Image

    im = Image.fromarray(np.round(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8), mode="RGB")
    if icc_profile:
        im.info["icc_profile"] = icc_profile
    return im


def encode_png(pixels: np.ndarray, icc_profile: bytes | None = None) -> bytes:
    buf = io.BytesIO()
    to_pil(pixels).save(buf, format="PNG", icc_profile=icc_profile)
    return buf.getvalue()


def save_photo(pixels: np.ndarray, path: str | Path, *, icc_profile: bytes | None = None, bits: int = 8) -> Path:
    """Write pixels atomically: ``.tif``/``.tiff`` at ``bits`` (8 or 16) with tifffile, anything
    else 8-bit with Pillow (format from the suffix); the ICC profile is embedded either way."""
    from vedit.atomicio import atomic_open

    path = Path(path)
    suffix = path.suffix.lower()
    buf = io.BytesIO()
    if suffix in (".tif", ".tiff"):
        import tifffile

        if bits == 16:
            data = np.round(np.clip(pixels, 0.0, 1.0) * 65535.0).astype(np.uint16)
        else:
            data = np.round(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8)
        extratags = [(34675, 7, len(icc_profile), icc_profile, True)] if icc_profile else []
        tifffile.imwrite(buf, data, photometric="rgb", extratags=extratags)
    else:
        from PIL import Image

        fmt = Image.registered_extensions().get(suffix)
        if fmt is None:
            raise RenderError(f"{path}: unknown image type {suffix or '(none)'}; use .png, .jpg, .webp or .tif")
        to_pil(pixels).save(buf, format=fmt, icc_profile=icc_profile)
    with atomic_open(path, "wb") as f:
        f.write(buf.getvalue())
    return path


__all__ = ["MAX_PIXELS", "PREVIEW_SIDE", "Photo", "bound", "encode_png", "from_array", "load_photo", "save_photo",
           "to_pil"]
