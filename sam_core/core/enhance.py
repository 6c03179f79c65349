"""Contrast enhancement before the image encoder: CLAHE on the lightness channel.

Low-contrast photos (haze, underwater, microscopy, flat lighting) give SAM weak edges.
CLAHE (contrast-limited adaptive histogram equalisation, ``cv2.createCLAHE``) equalises
the histogram per tile with a clip limit that caps noise amplification. It is applied to
the L channel of OpenCV's 8-bit Lab conversion only, so lightness contrast rises while hue
and chroma (a, b) stay as they were, up to the rounding of the uint8 Lab round trip (the
a, b of the output, converted back to Lab, differ from the input's by at most 1 level,
measured on low-contrast and on blurred-noise colour images). Exception: a saturated
colour whose new lightness falls outside the sRGB gamut is clipped in RGB on the way back,
which shifts its a, b (up to 14 levels measured on a saturated red stretched with clip 4).

A constant image stays constant, but CLAHE shifts its level (the clipped histogram
excess is spread over all bins): RGB (120, 90, 60) comes out as (147, 116, 84) with the
default settings.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from numbers import Real

import cv2
import numpy as np

from .errors import UserError

__all__ = ["Clahe", "apply_clahe", "parse_clahe"]

MAX_CLIP_LIMIT = 40.0
MAX_TILE_GRID = 64


@dataclass(frozen=True)
class Clahe:
    """CLAHE settings: ``clip_limit`` (0 < c <= 40; OpenCV's default 40, 2 is mild) and a
    ``tile_grid`` x ``tile_grid`` grid of tiles (1..64). ``UserError`` otherwise."""

    clip_limit: float = 2.0
    tile_grid: int = 8

    def __post_init__(self) -> None:
        clip = self.clip_limit
        if isinstance(clip, bool) or not isinstance(clip, Real) or not math.isfinite(clip):
            raise UserError(f"CLAHE clip limit must be a finite number, got {clip!r}.")
        if not 0 < clip <= MAX_CLIP_LIMIT:
            raise UserError(f"CLAHE clip limit must be > 0 and <= {MAX_CLIP_LIMIT:g}, got {clip:g}.")
        grid = self.tile_grid
        if isinstance(grid, bool) or not isinstance(grid, int | np.integer):
            raise UserError(f"CLAHE tile grid must be an integer, got {grid!r}.")
        if not 1 <= grid <= MAX_TILE_GRID:
            raise UserError(f"CLAHE tile grid must be from 1 to {MAX_TILE_GRID}, got {grid}.")
        object.__setattr__(self, "clip_limit", float(clip))
        object.__setattr__(self, "tile_grid", int(grid))

    def key(self) -> str:
        """A short stable string for cache keys and logs: ``"clahe2.0x8"``, ``"clahe2.5x16"``.

        The clip limit is written with ``repr(float)`` (shortest round-trip form), so equal
        settings always give the same key and different ones different keys.
        """
        return f"clahe{self.clip_limit!r}x{self.tile_grid}"


def encoder_key(image_key: str, clahe: Clahe | None) -> str:
    """The embedding cache key of an image as the encoder sees it: ``image_key`` for the plain
    image, ``"<image_key>-<clahe key>"`` for its enhanced copy (never mixed with the plain one)."""
    return image_key if clahe is None else f"{image_key}-{clahe.key()}"


def apply_clahe(rgb: np.ndarray, clahe: Clahe) -> np.ndarray:
    """CLAHE on the lightness of an ``(H, W, 3)`` uint8 RGB image; returns a new one.

    RGB -> Lab (``cv2.COLOR_RGB2LAB``, 8-bit: L scaled to 0..255), CLAHE on L with
    ``clahe.clip_limit`` and a ``tile_grid`` x ``tile_grid`` grid, a and b untouched,
    Lab -> RGB. The input array is not modified. Deterministic.
    """
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got shape {arr.shape} dtype {arr.dtype}")
    lab = cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_RGB2LAB)
    op = cv2.createCLAHE(clipLimit=clahe.clip_limit, tileGridSize=(clahe.tile_grid, clahe.tile_grid))
    lab[:, :, 0] = op.apply(np.ascontiguousarray(lab[:, :, 0]))
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


_OFF = {"", "off", "none", "no", "false", "0"}
_FORM = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(?:[x×]\s*([0-9]+)\s*)?$")


def parse_clahe(value: str | float | None) -> Clahe | None:
    """CLAHE settings from a CLI flag or a settings value.

    ``None``, ``""``, ``"off"`` (also ``"none"``, ``"no"``, ``"false"``) and ``0`` mean no
    enhancement (``None``); a number or ``"2"`` / ``"2.5"`` is a clip limit with the
    default 8 x 8 tiles; ``"2.5x16"`` sets both. ``UserError`` for anything else or values
    out of range.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise UserError(f"CLAHE setting must be a number like 2.0 or a string like '2.5x16' or 'off', got {value!r}.")
    if isinstance(value, Real):
        number = float(value)
        if number == 0:
            return None
        return Clahe(number)
    if not isinstance(value, str):
        raise UserError(f"CLAHE setting must be a number or a string like '2.5x16', got {type(value).__name__}.")
    text = value.strip().lower()
    if text in _OFF:
        return None
    match = _FORM.match(text)
    if match is None:
        raise UserError(f"CLAHE setting {value!r} is not understood; use 'off', a clip limit like '2', or '2.5x16'.")
    clip = float(match.group(1))
    if match.group(2) is None:
        return None if clip == 0 else Clahe(clip)
    return Clahe(clip, int(match.group(2)))
