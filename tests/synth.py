"""Synthetic test images."""

from __future__ import annotations

import numpy as np


def photo_like(height: int, width: int, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8: smooth gradients plus a few filled shapes and mild noise."""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.empty((height, width, 3), np.float32)
    img[..., 0] = 60 + 120 * xx / max(width - 1, 1)
    img[..., 1] = 80 + 100 * yy / max(height - 1, 1)
    img[..., 2] = 140 - 60 * (xx + yy) / max(width + height - 2, 1)
    img = img.astype(np.uint8)
    for _ in range(6):
        c = tuple(int(v) for v in rng.integers(0, 255, 3))
        center = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        radius = int(rng.integers(max(2, min(height, width) // 12), max(3, min(height, width) // 4)))
        cv2.circle(img, center, radius, c, -1)
    noise = rng.integers(-6, 7, img.shape, dtype=np.int16)
    return np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def disc(h: int, w: int, center: tuple[int, int], radius: int) -> np.ndarray:
    """(h, w) bool: a filled disc (OpenCV's rasterisation)."""
    import cv2

    m = np.zeros((h, w), np.uint8)
    cv2.circle(m, center, radius, 1, -1)
    return m.astype(bool)


def rect(h: int, w: int, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    """(h, w) bool: pixels x1..x2-1, y1..y2-1 (a half-open box)."""
    m = np.zeros((h, w), bool)
    m[y1:y2, x1:x2] = True
    return m


def uncompressed_rle(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE of an (H, W) mask: column-major run lengths, starting with zeros."""
    counts, current, run = [], 0, 0
    for v in mask.flatten(order="F").astype(int).tolist():
        if v == current:
            run += 1
        else:
            counts.append(run)
            current, run = v, 1
    counts.append(run)
    return counts
