"""Tests for sam_core.core.images: loading/validation, hashing, preview scaling, stats.

Every input is made on the fly in tmp_path; all images are tiny except the PNG "bombs",
which are a few hundred kB on disk and must never be decoded.
"""

from __future__ import annotations

import struct
import threading
import time
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from sam_core.core.errors import ImageError, UserError
from sam_core.core.images import (
    DEFAULT_MAX_PIXELS,
    LoadedImage,
    image_hash,
    image_stats,
    load_image,
    preview,
    to_rgb_uint8,
)

# ---------------------------------------------------------------- helpers


def quadrants(w: int = 16, h: int = 12) -> np.ndarray:
    """(h, w, 3) uint8 with four flat colours: red TL, green TR, blue BL, white BR."""
    a = np.zeros((h, w, 3), np.uint8)
    a[: h // 2, : w // 2] = (255, 0, 0)
    a[: h // 2, w // 2 :] = (0, 255, 0)
    a[h // 2 :, : w // 2] = (0, 0, 255)
    a[h // 2 :, w // 2 :] = (255, 255, 255)
    return a


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes_1bit(w: int, h: int, *, with_pixels: bool = True) -> bytes:
    """A valid 1-bit greyscale PNG of w x h zeros, built by streaming (small on disk).

    With ``with_pixels=False`` the IDAT is omitted: only a header, no pixel data at all.
    """
    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)  # bit depth 1, greyscale
    out = [b"\x89PNG\r\n\x1a\n", _png_chunk(b"IHDR", ihdr)]
    if with_pixels:
        row = b"\0" * (1 + (w + 7) // 8)  # filter byte + packed bits
        comp = zlib.compressobj(1)  # fastest; still ~0.5 MB for 900 MP
        block, parts, left = row * 512, [], h
        while left > 0:
            k = min(512, left)
            parts.append(comp.compress(block if k == 512 else row * k))
            left -= k
        parts.append(comp.flush())
        out.append(_png_chunk(b"IDAT", b"".join(parts)))
    out.append(_png_chunk(b"IEND", b""))
    return b"".join(out)


def save(img: Image.Image, path: Path, **kw) -> Path:
    img.save(path, **kw)
    return path


@pytest.fixture(scope="module")
def bomb_png(tmp_path_factory) -> Path:
    """30000 x 30000 (900 MP) real PNG, ~0.5 MB on disk, 113 MB packed / 900 MB as L."""
    path = tmp_path_factory.mktemp("bomb") / "image.png"
    path.write_bytes(png_bytes_1bit(30000, 30000))
    return path


# ---------------------------------------------------------------- formats


@pytest.mark.parametrize(
    ("fmt", "suffix", "kw", "lossless"),
    [
        ("JPEG", ".jpg", {"quality": 95}, False),
        ("PNG", ".png", {}, True),
        ("WEBP", ".webp", {"lossless": True}, True),
        ("WEBP", ".webp", {"quality": 90}, False),
        ("TIFF", ".tif", {}, True),
        ("BMP", ".bmp", {}, True),
        ("GIF", ".gif", {}, True),  # 4 colours fit a palette exactly
    ],
)
def test_formats_open_as_rgb(tmp_path: Path, fmt: str, suffix: str, kw: dict, lossless: bool) -> None:
    src = quadrants(32, 24)
    path = save(Image.fromarray(src), tmp_path / f"pic{suffix}", format=fmt, **kw)
    img = load_image(path)
    assert isinstance(img, LoadedImage)
    assert img.format == fmt
    assert img.name == f"pic{suffix}"
    assert img.size == (32, 24)
    assert img.rgb.shape == (24, 32, 3) and img.rgb.dtype == np.uint8
    assert img.rgb.flags.c_contiguous
    assert img.exif_rotated is False
    if lossless:
        np.testing.assert_array_equal(img.rgb, src)
    else:  # compare the centre of each flat quadrant
        for y, x in [(5, 8), (5, 24), (18, 8), (18, 24)]:
            assert np.abs(img.rgb[y, x].astype(int) - src[y, x]).max() <= 12


def test_rgb_is_read_only(tmp_path: Path) -> None:
    img = load_image(save(Image.fromarray(quadrants()), tmp_path / "a.png"))
    assert not img.rgb.flags.writeable
    with pytest.raises(ValueError):
        img.rgb[0, 0] = 0


def test_bytes_source_and_default_names(tmp_path: Path) -> None:
    path = save(Image.fromarray(quadrants()), tmp_path / "photo.png")
    data = path.read_bytes()
    assert load_image(data).name == "upload"
    assert load_image(data, name="holiday.png").name == "holiday.png"
    assert load_image(path).name == "photo.png"
    # a temporary upload path with the user's original name
    assert load_image(str(path), name="IMG_0001.PNG").name == "IMG_0001.PNG"
    np.testing.assert_array_equal(load_image(data).rgb, load_image(path).rgb)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("/etc/secret/dir/cat.png", "cat.png"),
        ("C:\\Users\\me\\Pictures\\dog.jpg", "dog.jpg"),
        ("../../evil\x00na\x1bme\n.png", "evilname.png"),
        ("\u202egnp.exe", "gnp.exe"),  # bidi override removed
        ("   ", "upload"),
        ("..", "upload"),
        ("dir/", "dir"),
    ],
)
def test_name_is_sanitised(tmp_path: Path, given: str, expected: str) -> None:
    data = save(Image.fromarray(quadrants()), tmp_path / "x.png").read_bytes()
    assert load_image(data, name=given).name == expected


def test_long_name_is_capped_keeping_extension(tmp_path: Path) -> None:
    data = save(Image.fromarray(quadrants()), tmp_path / "x.png").read_bytes()
    name = load_image(data, name="a" * 300 + ".jpeg").name
    assert len(name) == 100 and name.endswith(".jpeg")
    assert len(load_image(data, name="b" * 300).name) == 100


# ---------------------------------------------------------------- modes


def test_greyscale_l(tmp_path: Path) -> None:
    grey = np.arange(12 * 16, dtype=np.uint8).reshape(12, 16)
    img = load_image(save(Image.fromarray(grey, "L"), tmp_path / "g.png"))
    assert img.mode == "L"
    np.testing.assert_array_equal(img.rgb, np.repeat(grey[:, :, None], 3, axis=2))


def test_la_drops_alpha(tmp_path: Path) -> None:
    la = Image.new("LA", (8, 8), (100, 0))  # fully transparent grey 100
    img = load_image(save(la, tmp_path / "la.png"))
    assert img.mode == "LA"
    assert (img.rgb == 100).all()


def test_rgba_drops_alpha(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (8, 8), (10, 200, 30, 0))
    img = load_image(save(rgba, tmp_path / "rgba.png"))
    assert img.mode == "RGBA"
    assert (img.rgb == (10, 200, 30)).all()


def test_palette_with_transparency_gif(tmp_path: Path) -> None:
    p = Image.new("P", (8, 8), 0)
    p.putpalette([10, 20, 30, 200, 100, 50] + [0, 0, 0] * 254)
    p.paste(1, (4, 0, 8, 8))
    path = save(p, tmp_path / "t.gif", transparency=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "convert to RGBA" warning from PIL
        img = load_image(path)
    assert img.mode == "P" and img.format == "GIF"
    assert tuple(img.rgb[0, 0]) == (10, 20, 30)  # colour under the transparent pixel kept
    assert tuple(img.rgb[0, 7]) == (200, 100, 50)


def test_palette_png_with_byte_transparency(tmp_path: Path) -> None:
    p = Image.new("P", (4, 4), 1)
    p.putpalette([255, 0, 0, 0, 0, 255] + [0, 0, 0] * 254)
    path = save(p, tmp_path / "t.png", transparency=b"\x00\x80")
    src = Image.open(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        img = load_image(path)
    assert (img.rgb == (0, 0, 255)).all()
    assert "transparency" in src.info  # to_rgb_uint8 does not mutate a caller's image
    to_rgb_uint8(src)
    assert "transparency" in src.info


def test_cmyk_jpeg(tmp_path: Path) -> None:
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red
    img = load_image(save(cmyk, tmp_path / "c.jpg", quality=95))
    assert img.mode == "CMYK"
    r, g, b = img.rgb[8, 8].astype(int)
    assert r > 230 and g < 25 and b < 25


def test_16bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    ramp = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    path = save(Image.fromarray(ramp), tmp_path / "ramp16.png")
    img = load_image(path)
    assert img.mode.startswith("I")  # "I;16" in Pillow >= 10
    grey = img.rgb[:, :, 0].astype(int)
    assert (img.rgb[:, :, 0] == img.rgb[:, :, 1]).all() and (img.rgb[:, :, 1] == img.rgb[:, :, 2]).all()
    assert grey.min() == 0 and grey.max() == 255
    assert (grey == 255).mean() < 0.01  # not clipped
    assert np.abs(grey.ravel() - np.arange(65536) / 257).max() <= 0.5 + 1e-9  # linear, rounded
    assert np.all(np.diff(grey.ravel()) >= 0)
    assert abs(grey.mean() - 127.5) < 0.5


def test_16bit_big_endian_tiff(tmp_path: Path) -> None:
    a = np.array([[0, 257 * 100], [65535, 257 * 200]], dtype=">u2")
    im = Image.fromarray(a)
    assert im.mode == "I;16B"
    img = load_image(save(im, tmp_path / "be.tif"))
    assert img.rgb[:, :, 0].tolist() == [[0, 100], [255, 200]]


def test_32bit_int_tiff(tmp_path: Path) -> None:
    small = np.array([[0, 65535], [257, 32896]], dtype=np.int32)  # assumed 16-bit data
    img = load_image(save(Image.fromarray(small), tmp_path / "i16.tif"))
    assert img.mode == "I"
    assert img.rgb[:, :, 0].tolist() == [[0, 255], [1, 128]]
    big = np.array([[-1000, 0], [1_000_000, 2_000_000]], dtype=np.int32)  # stretched
    img = load_image(save(Image.fromarray(big), tmp_path / "i32.tif"))
    out = img.rgb[:, :, 0].astype(int)
    assert out[0, 0] == 0 and out[1, 1] == 255 and 0 < out[1, 0] < out[1, 1]


def test_float_tiff(tmp_path: Path) -> None:
    f = np.array([[0.0, 0.5], [1.0, 0.25]], dtype=np.float32)
    img = load_image(save(Image.fromarray(f), tmp_path / "f.tif"))
    assert img.mode == "F"
    assert img.rgb[:, :, 0].tolist() == [[0, 128], [255, 64]]


def test_bilevel_mode_1(tmp_path: Path) -> None:
    bits = np.indices((8, 8)).sum(axis=0) % 2 == 0
    img = load_image(save(Image.fromarray(bits), tmp_path / "b.png"))
    assert img.mode == "1"
    np.testing.assert_array_equal(img.rgb[:, :, 0], np.where(bits, 255, 0))


def test_to_rgb_uint8_direct() -> None:
    for mode in ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "I", "F", "I;16"]:
        out = to_rgb_uint8(Image.new(mode, (5, 3)))
        assert out.shape == (3, 5, 3) and out.dtype == np.uint8 and out.flags.c_contiguous, mode


def test_animated_gif_uses_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (10, 10), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(path).n_frames == 3
    img = load_image(path)
    assert img.size == (10, 10)
    assert (img.rgb == (255, 0, 0)).all()


def test_exif_orientation_6_rotates(tmp_path: Path) -> None:
    a = np.zeros((20, 40, 3), np.uint8)  # 40 wide, 20 high, blue
    a[:] = (0, 0, 255)
    a[0:10, 0:10] = (255, 0, 0)  # red block at the top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = save(Image.fromarray(a), tmp_path / "rot.jpg", exif=exif, quality=95)
    img = load_image(path)
    assert img.exif_rotated is True
    assert img.size == (20, 40)
    assert img.rgb.shape == (40, 20, 3)
    # top-left (x, y) moves to (H - 1 - y, x): the red block is now at the top-right
    assert img.rgb[4, 15, 0] > 200 and img.rgb[4, 15, 2] < 60
    assert img.rgb[4, 4, 0] < 60 and img.rgb[4, 4, 2] > 200
    assert img.rgb[35, 15, 0] < 60


def test_exif_orientation_1_is_not_rotated(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 1
    img = load_image(save(Image.new("RGB", (40, 20)), tmp_path / "r1.jpg", exif=exif))
    assert img.exif_rotated is False and img.size == (40, 20)


def test_one_by_one(tmp_path: Path) -> None:
    img = load_image(save(Image.new("RGB", (1, 1), (1, 2, 3)), tmp_path / "one.png"))
    assert img.size == (1, 1) and img.rgb.tolist() == [[[1, 2, 3]]]


# ---------------------------------------------------------------- bad input


def test_image_error_is_a_user_error() -> None:
    assert issubclass(ImageError, UserError)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty\.jpg is empty \(0 bytes\)"):
        load_image(path)
    with pytest.raises(ImageError, match="upload is empty"):
        load_image(b"")


def test_text_file_named_png(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("hello, this is not an image\n")
    with pytest.raises(ImageError, match=r"notes\.png is not a supported image"):
        load_image(path)


def test_unsupported_format_is_refused(tmp_path: Path) -> None:
    path = save(Image.new("RGB", (8, 8)), tmp_path / "icon.ico")
    with pytest.raises(ImageError, match=r"icon\.ico is not a supported image"):
        load_image(path)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"nope\.png: file not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="is a folder"):
        load_image(tmp_path)


def test_truncated_jpeg(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = save(Image.fromarray(noise), tmp_path / "full.jpg", quality=90).read_bytes()
    path = tmp_path / "half.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"could not decode half\.jpg"):
        load_image(path)


def test_corrupt_png_data(tmp_path: Path) -> None:
    data = bytearray(save(Image.fromarray(quadrants(64, 64)), tmp_path / "ok.png").read_bytes())
    data[60:80] = b"\xff" * 20  # inside IDAT: breaks the zlib stream / CRC
    with pytest.raises(ImageError, match=r"could not decode broken\.png"):
        load_image(bytes(data), name="broken.png")


def test_zero_width_png(tmp_path: Path) -> None:
    path = tmp_path / "zero.png"
    path.write_bytes(png_bytes_1bit(0, 10, with_pixels=False))
    with pytest.raises(ImageError, match=r"zero\.png has zero width or height"):
        load_image(path)


def test_png_bomb_is_refused_from_the_header_fast(bomb_png: Path) -> None:
    assert bomb_png.stat().st_size < 1_000_000  # a real, valid, tiny 900 MP file
    limit_before = Image.MAX_IMAGE_PIXELS
    t0 = time.perf_counter()
    with pytest.raises(ImageError) as err:
        load_image(bomb_png)
    elapsed = time.perf_counter() - t0
    assert elapsed < 0.5, elapsed
    msg = str(err.value)
    assert "image.png is 30000×30000 = 900.0 MP" in msg
    assert "above the limit of 50.0 MP" in msg and "downscale" in msg
    assert limit_before == Image.MAX_IMAGE_PIXELS  # PIL's global is restored


def test_size_check_happens_before_any_decoding(tmp_path: Path) -> None:
    """A header with no pixel data at all gets the size message, not a decode error."""
    path = tmp_path / "header_only.png"
    path.write_bytes(png_bytes_1bit(30000, 30000, with_pixels=False))
    with pytest.raises(ImageError, match=r"900\.0 MP, above the limit"):
        load_image(path)


def test_no_pil_bomb_warning_below_pil_error_threshold(tmp_path: Path) -> None:
    # 100 MP is above PIL's warning threshold (~89 MP) but below its error threshold.
    path = tmp_path / "big.png"
    path.write_bytes(png_bytes_1bit(10000, 10000, with_pixels=False))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageError, match=r"10000×10000 = 100\.0 MP, above the limit of 50\.0 MP"):
            load_image(path)


def test_concurrent_loads_restore_pil_limit(tmp_path: Path, bomb_png: Path) -> None:
    good = save(Image.fromarray(quadrants()), tmp_path / "good.png")
    limit_before = Image.MAX_IMAGE_PIXELS
    results: list[str] = []

    def work(i: int) -> None:
        for _ in range(5):
            try:
                load_image(bomb_png if i % 2 else good)
                results.append("ok")
            except ImageError as exc:
                results.append("too large" if "above the limit" in str(exc) else str(exc))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(set(results)) == ["ok", "too large"] and len(results) == 40
    assert limit_before == Image.MAX_IMAGE_PIXELS


def test_max_pixels_is_configurable(tmp_path: Path) -> None:
    path = save(Image.new("RGB", (100, 100)), tmp_path / "hundred.png")
    with pytest.raises(ImageError, match=r"hundred\.png is 100×100 = 0\.0 MP, above the limit of 0\.0 MP"):
        load_image(path, max_pixels=5000)
    assert load_image(path, max_pixels=10_000).size == (100, 100)
    assert DEFAULT_MAX_PIXELS == 50_000_000


# ---------------------------------------------------------------- hash, preview, stats


def test_image_hash() -> None:
    a = quadrants(16, 12)
    b = a.copy()
    assert image_hash(a) == image_hash(b)
    assert len(image_hash(a)) == 40 and int(image_hash(a), 16) >= 0
    b[3, 4, 1] ^= 1
    assert image_hash(a) != image_hash(b)
    t = np.ascontiguousarray(a.transpose(1, 0, 2))  # transposed image
    assert image_hash(a) != image_hash(t)
    flat = np.zeros((4, 6, 3), np.uint8)
    assert image_hash(flat) != image_hash(flat.reshape(6, 4, 3))  # same bytes, other shape
    assert image_hash(a[:, ::-1]) == image_hash(np.ascontiguousarray(a[:, ::-1]))  # views ok


def test_preview_caps_long_side() -> None:
    big = np.zeros((3648, 5472, 3), np.uint8)
    big[:, 2736:] = 200
    small, scale = preview(big, 1536)
    assert small.shape == (1024, 1536, 3) and small.dtype == np.uint8
    assert scale == pytest.approx(1536 / 5472)
    assert small[:, :700].max() == 0 and small[:, 800:].min() == 200
    tall, s2 = preview(np.zeros((1000, 10, 3), np.uint8), 100)
    assert tall.shape == (100, 1, 3) and s2 == pytest.approx(0.1)


def test_preview_small_image_is_returned_as_is() -> None:
    a = quadrants(1536, 1000)
    out, scale = preview(a, 1536)
    assert out is a and scale == 1.0


def test_image_stats() -> None:
    black = image_stats(np.zeros((50, 60, 3), np.uint8))
    assert black["brightness"] == pytest.approx(0.0) and black["blur"] == pytest.approx(0.0)
    white = image_stats(np.full((50, 60, 3), 255, np.uint8))
    assert white["brightness"] == pytest.approx(255.0, abs=0.5)
    cells = (np.indices((256, 256)) // 8).sum(axis=0) % 2
    board = np.repeat((cells * 255).astype(np.uint8)[:, :, None], 3, axis=2)
    blurred = cv2.GaussianBlur(board, (0, 0), 3)
    sharp, soft = image_stats(board), image_stats(blurred)
    assert sharp["brightness"] == pytest.approx(127.5, abs=1)
    assert sharp["blur"] > 3 * soft["blur"] > 0


def test_image_stats_is_fast_on_20mp() -> None:
    big = np.random.default_rng(1).integers(0, 256, (3648, 5472, 3), dtype=np.uint8)
    t0 = time.perf_counter()
    stats = image_stats(big)
    assert time.perf_counter() - t0 < 1.0
    assert 120 < stats["brightness"] < 135 and stats["blur"] > 0
