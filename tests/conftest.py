"""Shared fixtures: a photo-like synthetic image and the test-tiny model."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


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


@pytest.fixture(scope="session")
def tiny_segmenter():
    from sam_core import Segmenter

    return Segmenter.from_pretrained("test-tiny", device="cpu", precision="fp32")


@pytest.fixture()
def photo() -> np.ndarray:
    return photo_like(300, 470)
