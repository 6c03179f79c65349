"""Tests for sam_core.core.render (images (H, W, 3) uint8 RGB; pixel coords x right, y down)."""

from __future__ import annotations

import io
import time

import cv2
import numpy as np
import pytest
from PIL import Image

from sam_core.core.geometry import mask_bbox, mask_metrics, rle_decode, rle_encode
from sam_core.core.render import (
    BG_COLOR,
    BOX_COLOR,
    FG_COLOR,
    PALETTE,
    candidate_thumbnail,
    cutout_rgba,
    draw_prompts,
    encode_jpeg,
    encode_png,
    overlay_mask,
)


def noise_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def rect_mask(h: int, w: int, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[y1:y2, x1:x2] = True
    return m


def decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


# --------------------------------------------------------------------------- palette


def test_palette_has_three_distinct_colours() -> None:
    assert len(PALETTE) >= 3 and len(set(PALETTE[:3])) == 3
    assert FG_COLOR != BG_COLOR
    for c in (*PALETTE, FG_COLOR, BG_COLOR, BOX_COLOR):
        assert len(c) == 3 and all(0 <= v <= 255 for v in c)


# --------------------------------------------------------------------------- overlay


def test_overlay_changes_only_mask_and_contour() -> None:
    img = noise_image(120, 160)
    before = img.copy()
    mask = rect_mask(120, 160, 40, 30, 110, 90)
    color = (30, 144, 255)
    out = overlay_mask(img, mask, color=color, alpha=0.5, contour_px=2)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(img, before)  # input untouched

    # Far outside (more than contour_px // 2 + 3 px away) nothing changes.
    near = cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    assert np.array_equal(out[~near], img[~near])

    # Deep inside (away from the outline) pixels are the blend and move toward the colour.
    inner = cv2.erode(mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    expected = img[inner].astype(float) * 0.5 + np.array(color) * 0.5
    assert np.abs(out[inner].astype(float) - expected).max() <= 1.0
    d_before = np.abs(img[inner].astype(int) - color).sum(axis=1)
    d_after = np.abs(out[inner].astype(int) - color).sum(axis=1)
    assert (d_after <= d_before).all() and (d_after < d_before).mean() > 0.95

    # The outline is drawn: boundary pixels differ from the plain blend.
    plain = overlay_mask(img, mask, color=color, alpha=0.5, contour=False)
    assert np.array_equal(plain[~mask], img[~mask])
    assert not np.array_equal(out[30, 40:110], plain[30, 40:110])


def test_overlay_empty_mask_and_full_mask() -> None:
    img = noise_image(40, 50)
    out = overlay_mask(img, np.zeros((40, 50), dtype=bool))
    assert np.array_equal(out, img) and out is not img
    full = overlay_mask(img, np.ones((40, 50), dtype=bool), contour=False, alpha=1.0, color=(1, 2, 3))
    assert (full == (1, 2, 3)).all()


def test_overlay_rejects_size_mismatch() -> None:
    with pytest.raises(ValueError):
        overlay_mask(noise_image(10, 10), np.zeros((10, 11), dtype=bool))


# --------------------------------------------------------------------------- prompts


def test_draw_prompts_colours_at_scaled_points() -> None:
    img = np.full((200, 300, 3), 128, dtype=np.uint8)
    before = img.copy()
    scale = 0.5  # this image is half the size of the full image the prompts refer to
    points = [(100.0, 80.0, 1), (400.0, 200.0, 0)]
    out = draw_prompts(img, points, scale=scale, radius=10)
    assert np.array_equal(img, before)  # input untouched
    fx, fy = 50, 40  # (100, 80) * 0.5
    bx, by = 200, 100  # (400, 200) * 0.5
    assert tuple(out[fy, fx]) == FG_COLOR
    assert tuple(out[by, bx + 6]) == BG_COLOR  # off the white 'x' at the centre
    assert tuple(out[by, bx]) == (255, 255, 255)  # the 'x'
    assert tuple(out[fy + 12, fx]) == (255, 255, 255)  # white ring just outside the disc
    # Nothing drawn far from the markers.
    assert tuple(out[190, 10]) == (128, 128, 128)
    # Unscaled: the same points land at their own coordinates.
    out1 = draw_prompts(np.full((400, 600, 3), 128, np.uint8), points, radius=10)
    assert tuple(out1[80, 100]) == FG_COLOR
    assert tuple(out1[200, 406]) == BG_COLOR


def test_draw_prompts_box_and_pending_corner() -> None:
    img = np.full((200, 300, 3), 255, dtype=np.uint8)  # white: the dark outline must show
    out = draw_prompts(img, [], box=(40, 40, 400, 300), scale=0.5, pending_corner=(500, 100))
    # Box edges at x 20..200, y 20..150 (scaled): yellow on the line, dark just outside.
    assert tuple(out[80, 20]) == BOX_COLOR
    assert tuple(out[20, 100]) == BOX_COLOR
    assert out[80, 19:22].tolist() == [list(BOX_COLOR)] * 3  # 3 px of yellow
    assert out[80, 18].max() < 100 and out[80, 22].max() < 100  # dark outline both sides
    assert tuple(out[80, 17]) == (255, 255, 255)
    assert tuple(out[80, 100]) == (255, 255, 255)  # inside untouched
    # Pending corner at (250, 50): crosshair centre is yellow.
    assert tuple(out[50, 250]) == BOX_COLOR
    # Default radius scales with the image; points off the image are clipped, not errors.
    big = draw_prompts(np.zeros((1500, 3000, 3), np.uint8), [(1500, 750, 1), (-50, 99999, 0)])
    assert tuple(big[750, 1500 + 15]) == FG_COLOR  # radius = 3000 / 150 = 20
    assert tuple(big[750, 1500 + 40]) == (0, 0, 0)


# --------------------------------------------------------------------------- cut-out


def test_cutout_rgba_cropped_alpha_and_rgb() -> None:
    img = noise_image(80, 100)
    mask = np.zeros((80, 100), dtype=np.uint8)
    cv2.circle(mask, (50, 40), 20, 1, -1)
    mask = mask.astype(bool)
    x1, y1, x2, y2 = mask_bbox(mask)
    out = cutout_rgba(img, mask)
    assert out.shape == (y2 - y1, x2 - x1, 4) and out.dtype == np.uint8
    assert np.array_equal(out[..., 3], mask[y1:y2, x1:x2].astype(np.uint8) * 255)
    assert np.array_equal(out[..., :3], img[y1:y2, x1:x2])
    full = cutout_rgba(img, mask, crop=False)
    assert full.shape == (80, 100, 4)
    assert np.array_equal(full[..., 3] == 255, mask) and set(np.unique(full[..., 3])) == {0, 255}
    empty = cutout_rgba(img, np.zeros((80, 100), dtype=bool))
    assert empty.shape == (80, 100, 4) and not empty[..., 3].any()


# --------------------------------------------------------------------------- thumbnail


def test_candidate_thumbnail_size_and_tint() -> None:
    img = np.full((600, 1000, 3), 100, dtype=np.uint8)
    mask = rect_mask(600, 1000, 200, 100, 800, 500)
    thumb = candidate_thumbnail(img, mask, color=PALETTE[1], max_side=384)
    assert thumb.dtype == np.uint8 and thumb.ndim == 3 and thumb.shape[2] == 3
    assert max(thumb.shape[:2]) <= 384
    assert thumb.shape[:2] == (230, 384)
    s = 384 / 1000
    cy, cx = int(300 * s), int(500 * s)
    assert thumb[cy, cx, 0] > thumb[cy, cx, 2]  # orange tint inside
    assert tuple(thumb[5, 5]) == (100, 100, 100)  # untouched outside
    small = candidate_thumbnail(img[:100, :80], mask[:100, :80], color=PALETTE[0])
    assert small.shape == (100, 80, 3)  # never enlarged


# --------------------------------------------------------------------------- encoding


def test_encode_png_rgb_channel_order() -> None:
    red = np.zeros((7, 9, 3), dtype=np.uint8)
    red[..., 0] = 255
    im = decode(encode_png(red))
    assert im.mode == "RGB" and im.size == (9, 7)
    assert im.getpixel((0, 0)) == (255, 0, 0)
    img = noise_image(31, 17)
    assert np.array_equal(np.asarray(decode(encode_png(img))), img)


def test_encode_png_rgba_round_trip() -> None:
    rgba = np.zeros((12, 10, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = np.arange(12, dtype=np.uint8)[:, None] * 20
    im = decode(encode_png(rgba, compression=6))
    assert im.mode == "RGBA"
    assert np.array_equal(np.asarray(im), rgba)
    assert im.getpixel((3, 5)) == (255, 0, 0, 100)


def test_encode_png_bool_and_grey() -> None:
    mask = np.random.default_rng(2).random((37, 53)) < 0.4
    im = decode(encode_png(mask))
    assert im.mode == "L"
    arr = np.asarray(im)
    assert set(np.unique(arr)) == {0, 255}
    assert np.array_equal(arr == 255, mask)
    grey = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert np.array_equal(np.asarray(decode(encode_png(grey))), grey)


def test_encode_jpeg() -> None:
    red = np.zeros((16, 16, 3), dtype=np.uint8)
    red[..., 0] = 255
    data = encode_jpeg(red, quality=95)
    assert data[:2] == b"\xff\xd8"
    im = decode(data)
    assert im.mode == "RGB" and im.size == (16, 16)
    r, g, b = im.getpixel((8, 8))
    assert r > 240 and g < 15 and b < 15
    with pytest.raises(ValueError):
        encode_jpeg(np.zeros((4, 4, 4), np.uint8))


# --------------------------------------------------------------------------- 20 MP


def test_full_resolution_export_speed_sanity() -> None:
    """5472 x 3648 (20 MP): the export path completes quickly. Prints timings, asserts none."""
    h, w = 3648, 5472
    rng = np.random.default_rng(0)
    # Smooth, photo-like content (random noise would be the PNG worst case).
    img = cv2.resize(rng.integers(0, 256, (72, 108, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    m8 = np.zeros((h, w), dtype=np.uint8)
    cv2.ellipse(m8, (w // 2, h // 2), (w // 3, h // 3), 20, 0, 360, 1, -1)
    cv2.circle(m8, (w // 2, h // 2), h // 10, 0, -1)
    mask = m8.astype(bool)

    timings: dict[str, float] = {}

    def timed(name, fn, *args, **kwargs):
        t0 = time.perf_counter()
        result = fn(*args, **kwargs)
        timings[name] = (time.perf_counter() - t0) * 1000
        return result

    metrics = timed("mask_metrics", mask_metrics, mask)
    rle = timed("rle_encode", rle_encode, mask)
    cut = timed("cutout_rgba", cutout_rgba, img, mask)
    png = timed("encode_png(mask)", encode_png, mask)
    total = sum(timings.values())
    timed("encode_png(cutout)", encode_png, cut)
    timed("overlay_mask", overlay_mask, img, mask)
    print(
        "\n20 MP timings (ms): "
        + ", ".join(f"{k} {v:.1f}" for k, v in timings.items())
        + f"; export total (metrics+rle+cutout+mask png) {total:.1f}"
    )
    assert metrics["area"] == int(mask.sum())
    assert np.array_equal(rle_decode(rle), mask)
    assert cut.shape[2] == 4 and png[:8] == b"\x89PNG\r\n\x1a\n"
