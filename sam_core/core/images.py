"""Image loading, validation, hashing and preview scaling.

Everything here works on RGB ``uint8`` arrays of shape ``(H, W, 3)`` in full-image pixel
coordinates (x to the right, y down). :func:`load_image` is the single place where a user's
file is decoded; everything a user can get wrong raises :class:`~sam_core.errors.ImageError`
with a message that names the file.

Choices worth knowing:

* Alpha is **dropped**, not composited: an RGBA/LA/PA/transparent-palette image keeps the
  colour stored under each pixel. Predictable, and SAM never sees an alpha channel anyway.
* 16-bit data is **scaled** to 0..255 (``round(v / 257)``), never clipped. Mode ``I``
  (32-bit int) is taken as 16-bit data when all values lie in 0..65535, otherwise it is
  stretched min..max -> 0..255. Mode ``F`` (float) in 0..1 is multiplied by 255, in 0..255
  is rounded, otherwise stretched min..max.
* The pixel limit is checked from the header, before any pixel data is decoded. PIL's own
  decompression-bomb guard is lifted only around the header read (under a lock, restored
  afterwards) so that our clearer message is the one the user sees.
* Only the formats in :data:`SUPPORTED_FORMATS` are opened (PIL knows others, some of
  which, like EPS, run external programs).
* The returned ``rgb`` array is read-only: it is shared (cached by :func:`image_hash`) and
  must not be changed in place; copy it if you need to draw on it.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import threading
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from sam_core.core.errors import ImageError
from sam_core.core.sizes import ImageSize

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "SUPPORTED_FORMATS",
    "LoadedImage",
    "image_hash",
    "image_stats",
    "load_image",
    "preview",
    "to_rgb_uint8",
]

DEFAULT_MAX_PIXELS = 50_000_000
"""Largest accepted image, in pixels (W * H). A 20 MP camera photo is well below it."""

# PIL format names passed to Image.open. "JPEG" also opens multi-picture JPEGs from phones
# and cameras, which PIL then reports as format "MPO"; DIB is a BMP variant.
SUPPORTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "DIB", "GIF")
_FORMATS_TEXT = "JPEG, PNG, WebP, TIFF, BMP or GIF"

_MAX_NAME_CHARS = 100
_STATS_SIDE = 1024
_COLOUR_SIDE = 256  # the colour summary is taken on an even smaller copy

# Guards the temporary change of the process-wide Image.MAX_IMAGE_PIXELS (see _header_open).
_PIL_LIMIT_LOCK = threading.Lock()


@dataclass(frozen=True)
class LoadedImage:
    """A decoded, validated image.

    Attributes:
        rgb: ``(H, W, 3)`` uint8, C-contiguous, read-only; EXIF orientation already applied.
        name: display name (sanitised basename of the original file name); never a path.
        format: PIL format of the file, e.g. ``"JPEG"``, ``"PNG"`` (``"MPO"`` for
            multi-picture camera JPEGs).
        mode: the file's original PIL mode, e.g. ``"RGB"``, ``"L"``, ``"I;16"``, ``"P"``.
        exif_rotated: True when an EXIF orientation other than 1 was applied.
    """

    rgb: np.ndarray
    name: str
    format: str
    mode: str
    exif_rotated: bool

    @property
    def size(self) -> ImageSize:
        """``(width, height)`` in pixels, after EXIF rotation."""
        return ImageSize.of(self.rgb)


def check_image(image: np.ndarray, channels: tuple[int, ...] = (3,)) -> np.ndarray:
    """Return ``image`` as an array after checking it is ``(H, W, C)`` uint8, C in ``channels``, non-empty.

    Raises ValueError otherwise (a programming error, not a user's: uploads go through
    :func:`load_image`).
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in channels or 0 in image.shape[:2]:
        raise ValueError(
            f"image must be a non-empty (H, W, {'|'.join(map(str, channels))}) uint8 array, "
            f"got {image.shape} {image.dtype}"
        )
    return image


# --------------------------------------------------------------------------- names


def _sanitise_name(name: str | os.PathLike | None, default: str) -> str:
    """Basename of ``name`` without control characters, at most 100 characters.

    Both ``/`` and ``\\`` count as separators (browsers on Windows may send either).
    """
    if name is None:
        return default
    text = os.fspath(name)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    text = text.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    # Drop control and format characters (incl. bidi overrides such as U+202E).
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cc", "Cf"))
    text = text.strip()
    if text in ("", ".", ".."):
        return default
    if len(text) > _MAX_NAME_CHARS:
        stem, dot, ext = text.rpartition(".")
        if dot and stem and 0 < len(ext) <= 10:  # keep a short extension visible
            text = stem[: _MAX_NAME_CHARS - len(ext) - 1] + "." + ext
        else:
            text = text[:_MAX_NAME_CHARS]
    return text


# --------------------------------------------------------------------------- decoding


@contextmanager
def _pil_limit_lifted() -> Iterator[None]:
    """Disable PIL's decompression-bomb check for the duration (header reads only).

    ``Image.MAX_IMAGE_PIXELS`` is process-wide; the lock keeps concurrent callers of this
    module from restoring each other's temporary value.
    """
    with _PIL_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _too_large_message(name: str, w: int, h: int, max_pixels: int) -> str:
    return f"{name} is {w}×{h} = {w * h / 1e6:.1f} MP, above the limit of {max_pixels / 1e6:.1f} MP; downscale it first"


def _scale_to_uint8(arr: np.ndarray) -> np.ndarray:
    """Map a 2-D integer or float array to uint8 (see the module notes for the rules)."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * np.uint8(255)
    if arr.size == 0:
        return np.zeros(arr.shape, np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        arr = np.nan_to_num(arr.astype(np.float32, copy=False), nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = float(arr.min()), float(arr.max())
        if lo >= 0.0 and hi <= 1.0:
            return np.rint(arr * 255.0).astype(np.uint8)
        if lo >= 0.0 and hi <= 255.0:
            return np.rint(arr).astype(np.uint8)
    else:
        lo, hi = int(arr.min()), int(arr.max())
        if lo >= 0 and hi <= 65535:  # 16-bit data (also assumed for mode "I")
            return ((arr.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if hi <= lo:
        return np.zeros(arr.shape, np.uint8)
    stretched = (arr.astype(np.float64) - lo) * (255.0 / (hi - lo))
    return np.rint(stretched).astype(np.uint8)


def to_rgb_uint8(img: Image.Image) -> np.ndarray:
    """Convert a PIL image of any mode to an ``(H, W, 3)`` uint8 C-contiguous array.

    Alpha is dropped (not composited). 16-bit and 32-bit integer and float modes are
    scaled to 0..255 rather than clipped. RGB input is not copied beyond PIL's own export.

    Raises:
        ImageError: the mode cannot be converted to RGB.
    """
    mode = img.mode
    if mode == "RGB":
        rgb = np.asarray(img)
    elif mode.startswith("I") or mode == "F":
        grey = _scale_to_uint8(np.asarray(img))
        rgb = np.repeat(grey[:, :, None], 3, axis=2)
    else:
        if mode in ("P", "PA") and "transparency" in img.info:
            # Alpha is dropped anyway; removing the key avoids PIL's "convert to RGBA" warning.
            img = img.copy()  # P is 1 byte/pixel; never mutate the caller's image
            img.info.pop("transparency", None)
        try:
            converted = img.convert("RGB")
        except ValueError:
            try:
                converted = img.convert("RGBA").convert("RGB")
            except ValueError as exc:
                raise ImageError(f"images of PIL mode {mode!r} are not supported") from exc
        rgb = np.asarray(converted)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ImageError(f"could not convert an image of PIL mode {mode!r} to RGB")
    return np.ascontiguousarray(rgb)


def _exif_orientation(img: Image.Image) -> int:
    """EXIF orientation tag (1..8), or 1 when absent or unreadable."""
    try:
        value = img.getexif().get(ExifTags.Base.Orientation, 1)
        return int(value) if int(value) in range(1, 9) else 1
    except Exception:  # corrupt EXIF must not make a good image unreadable
        return 1


def _detail(exc: BaseException) -> str:
    """`` (PIL's reason)`` for a message, or "" when it could reveal a server-side path."""
    text = str(exc).strip()
    if not text or getattr(exc, "filename", None) or os.sep in text:
        return ""
    return f" ({text[:200]})"


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_header_size(fp: str | io.BytesIO) -> tuple[int, int] | None:
    """``(W, H)`` from a PNG's IHDR, or None when ``fp`` does not start like a PNG.

    Used only to explain why PIL refused a file (PIL does not identify 0-sized PNGs).
    """
    try:
        if isinstance(fp, io.BytesIO):
            head = fp.getvalue()[:24]
        else:
            with open(fp, "rb") as f:
                head = f.read(24)
    except OSError:
        return None
    if len(head) < 24 or not head.startswith(_PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def load_image(
    source: str | os.PathLike | bytes,
    *,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> LoadedImage:
    """Open, validate and decode an image file into RGB uint8.

    Args:
        source: a file path, or the file's bytes.
        name: the original file name for messages/display (e.g. of an upload saved under a
            temporary path). Defaults to the path's basename, or ``"upload"`` for bytes.
        max_pixels: refuse images with more than this many pixels (W * H); checked from the
            header before any pixel data is decoded.

    Returns:
        LoadedImage with ``rgb`` ``(H, W, 3)`` uint8 in the EXIF-corrected orientation.

    Raises:
        ImageError: missing/empty file, not a supported image, corrupt or truncated data,
            zero width or height, or more than ``max_pixels`` pixels.
    """
    if max_pixels <= 0:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")

    fp: str | io.BytesIO
    if isinstance(source, (bytes, bytearray, memoryview)):
        display = _sanitise_name(name, "upload")
        data = bytes(source) if not isinstance(source, bytes) else source
        if len(data) == 0:
            raise ImageError(f"{display} is empty (0 bytes); upload an image file")
        fp = io.BytesIO(data)
    else:
        path = os.fspath(source)
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        display = _sanitise_name(name if name is not None else path, "image")
        try:
            nbytes = os.path.getsize(path)
        except OSError as exc:
            raise ImageError(f"{display}: file not found or not readable") from exc
        if os.path.isdir(path):
            raise ImageError(f"{display} is a folder, not an image file")
        if nbytes == 0:
            raise ImageError(f"{display} is empty (0 bytes); upload an image file")
        fp = path

    try:
        with _pil_limit_lifted():
            img = Image.open(fp, formats=SUPPORTED_FORMATS)  # reads the header only
    except UnidentifiedImageError as exc:
        png_size = _png_header_size(fp)
        if png_size is not None and 0 in png_size:
            w, h = png_size
            raise ImageError(f"{display} has zero width or height ({w}×{h})") from exc
        raise ImageError(f"{display} is not a supported image ({_FORMATS_TEXT} expected)") from exc
    except FileNotFoundError as exc:
        raise ImageError(f"{display}: file not found") from exc
    except PermissionError as exc:
        raise ImageError(f"{display}: file is not readable (permission denied)") from exc
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
        raise ImageError(f"could not decode {display}: the file is damaged{_detail(exc)}") from exc

    with img:
        w, h = img.size
        if w <= 0 or h <= 0:
            raise ImageError(f"{display} has zero width or height ({w}×{h})")
        if w * h > max_pixels:
            raise ImageError(_too_large_message(display, w, h, max_pixels))
        fmt = img.format or "unknown"
        mode = img.mode
        try:
            img.load()  # force the full decode here, so damage surfaces as ImageError
            w, h = img.size  # a GIF's first frame may extend the logical screen
            if w * h > max_pixels:
                raise ImageError(_too_large_message(display, w, h, max_pixels))
            orientation = _exif_orientation(img)
            if orientation != 1:
                ImageOps.exif_transpose(img, in_place=True)
            rgb = to_rgb_uint8(img)
        except ImageError:
            raise
        except Image.DecompressionBombError as exc:
            raise ImageError(_too_large_message(display, w, h, max_pixels)) from exc
        except MemoryError:
            raise
        except Exception as exc:  # OSError, ValueError, SyntaxError, struct.error, ...
            raise ImageError(f"could not decode {display}: the file is damaged or truncated{_detail(exc)}") from exc

    rgb.flags.writeable = False
    return LoadedImage(rgb=rgb, name=display, format=fmt, mode=mode, exif_rotated=orientation != 1)


# --------------------------------------------------------------------------- helpers


def image_hash(rgb: np.ndarray) -> str:
    """Hex SHA-1 of the array's shape, dtype and raw pixel bytes (no copy when contiguous).

    Equal pixels give equal hashes; a transposed array of the same bytes hashes differently.
    About 0.07 s for a 20 MP image.
    """
    arr = np.ascontiguousarray(rgb)
    h = hashlib.sha1(usedforsecurity=False)
    h.update(f"{arr.shape}|{arr.dtype.str}|".encode())
    h.update(arr.data.cast("B"))
    return h.hexdigest()


def preview(rgb: np.ndarray, max_side: int = 1536) -> tuple[np.ndarray, float]:
    """Downscale so that the long side is at most ``max_side`` (cv2.INTER_AREA).

    Args:
        rgb: ``(H, W, 3)`` (or ``(H, W)``) image.
        max_side: the preview's longest side, in pixels.

    Returns:
        ``(small, scale)``: ``small`` is ``(h, w, 3)`` with ``max(h, w) <= max_side``;
        ``scale = preview_px / full_px`` (multiply full-image coordinates by it to get
        preview coordinates, divide to go back). When the image is already small enough
        the same array object and 1.0 are returned.
    """
    if max_side < 1:
        raise ValueError(f"max_side must be >= 1, got {max_side}")
    h, w = rgb.shape[:2]
    long_side = max(h, w)
    if long_side <= max_side:
        return rgb, 1.0
    scale = max_side / long_side
    new_w = max(1, min(max_side, round(w * scale)))
    new_h = max(1, min(max_side, round(h * scale)))
    small = cv2.resize(np.ascontiguousarray(rgb), (new_w, new_h), interpolation=cv2.INTER_AREA)
    return small, scale


def image_stats(rgb: np.ndarray) -> dict[str, Any]:
    """Cheap input-quality signals for monitoring (the run log's input-drift fields).

    Computed on a copy downscaled to <= 1024 px long side (the Studio passes the preview,
    once per image); the colour summary on a further <= 256 px copy.

    Returns:
        ``brightness``: mean luma (Rec. 601), 0..255; ``contrast``: RMS contrast, the std of
        the luma / 255 (0..0.5); ``blur``: variance of the Laplacian of the luma (low =
        blurry); ``mean_r``/``mean_g``/``mean_b``: channel means, 0..255; ``saturation``: mean
        HSV saturation, 0..1; ``hue_hist``: 6 floats, the share of the coloured pixels
        (saturation >= 0.15 and value >= 0.1) in the hue sectors red, yellow, green, cyan,
        blue, magenta (each 60° wide, centred on its colour); all 0 for a grey image.
    """
    small, _ = preview(rgb, _STATS_SIDE)
    small = np.ascontiguousarray(small)
    grey = small if small.ndim == 2 else cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    mean, std = cv2.meanStdDev(grey)
    _, lap_std = cv2.meanStdDev(cv2.Laplacian(grey, cv2.CV_64F))
    stats: dict[str, Any] = {
        "brightness": float(mean[0, 0]),
        "contrast": float(std[0, 0]) / 255.0,
        "blur": float(lap_std[0, 0]) ** 2,
    }
    tiny, _ = preview(small, _COLOUR_SIDE)
    colour = np.ascontiguousarray(tiny if tiny.ndim == 3 else np.repeat(tiny[:, :, None], 3, axis=2))
    means = colour.reshape(-1, 3).mean(axis=0)
    stats.update(mean_r=float(means[0]), mean_g=float(means[1]), mean_b=float(means[2]))
    hsv = cv2.cvtColor(colour, cv2.COLOR_RGB2HSV)  # H in 0..179 (2° steps), S and V in 0..255
    sat = hsv[..., 1]
    stats["saturation"] = float(sat.mean()) / 255.0
    chromatic = (sat >= 38) & (hsv[..., 2] >= 26)
    sectors = ((hsv[..., 0][chromatic].astype(np.int32) + 15) // 30) % 6
    counts = np.bincount(sectors, minlength=6)[:6]
    total = int(counts.sum())
    stats["hue_hist"] = [round(float(c) / total, 4) if total else 0.0 for c in counts]
    return stats
