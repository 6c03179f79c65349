"""Shared fixtures: a photo-like synthetic image and the test-tiny model."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from synth import photo_like  # noqa: E402


@pytest.fixture(scope="session")
def tiny_segmenter():
    from sam_core import Segmenter

    return Segmenter.from_pretrained("test-tiny", device="cpu", precision="fp32")


@pytest.fixture()
def photo() -> np.ndarray:
    return photo_like(300, 470)
