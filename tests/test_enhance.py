"""Tests for sam_core.core.enhance: CLAHE on the Lab lightness channel."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from sam_core.core.enhance import Clahe, apply_clahe, parse_clahe
from sam_core.core.errors import UserError


def low_contrast(h: int = 240, w: int = 320) -> np.ndarray:
    """A tinted image with structure (waves and a checkerboard), every value in 100..130."""
    yy, xx = np.mgrid[:h, :w]
    base = 100 + 7.5 * (np.sin(xx / 17) + np.cos(yy / 23)) + 7 * ((xx // 40 + yy // 40) % 2)
    img = np.stack([base, base * 1.05 + 3, base * 0.9 + 8], axis=-1)
    return np.clip(img, 100, 130).astype(np.uint8)


def lab(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.int32)


def test_low_contrast_image_gets_a_wider_lightness_range() -> None:
    img = low_contrast()
    assert img.min() >= 100 and img.max() <= 130
    out = apply_clahe(img, Clahe(2.0, 8))
    assert out.shape == img.shape and out.dtype == np.uint8
    before, after = lab(img)[..., 0], lab(out)[..., 0]
    # measured: std 7.4 -> 13.7, range 28 -> 65 levels of 8-bit L
    assert after.std() > 1.5 * before.std()
    assert np.ptp(after) > 1.8 * np.ptp(before)
    # a stronger clip limit stretches more
    assert lab(apply_clahe(img, Clahe(8.0, 8)))[..., 0].std() > after.std()


@pytest.mark.parametrize("clahe", [Clahe(), Clahe(4.0, 4)])
def test_only_lightness_changes(clahe: Clahe) -> None:
    rng = np.random.default_rng(0)
    colour = cv2.GaussianBlur(rng.integers(0, 256, (200, 220, 3)).astype(np.uint8), (0, 0), 5)
    for img in (low_contrast(), colour):
        out = apply_clahe(img, clahe)
        ab_in, ab_out = lab(img)[..., 1:], lab(out)[..., 1:]
        # the Lab -> RGB -> Lab round trip of uint8 values rounds by up to 1 level (measured: max 1)
        assert np.abs(ab_in - ab_out).max() <= 1
        assert np.abs(ab_in - ab_out).mean() < 0.1
        # ... and the round trip without CLAHE is the identity on these in-gamut colours' a, b
        trip = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_RGB2LAB), cv2.COLOR_LAB2RGB)
        assert np.abs(lab(trip)[..., 1:] - ab_in).max() <= 1


def test_strong_clahe_moves_a_few_colours_by_gamut_clipping() -> None:
    """Clip 10 on 16 x 16 tiles: lightness pushed out of gamut for a few pixels (measured:
    0.02 % of a, b values off by 2-3 levels on blurred colour noise, the rest by <= 1)."""
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 256, (200, 220, 3)).astype(np.uint8), (0, 0), 5)
    diff = np.abs(lab(img)[..., 1:] - lab(apply_clahe(img, Clahe(10.0, 16)))[..., 1:])
    assert diff.max() <= 4
    assert np.mean(diff > 1) < 0.001


def test_constant_image_stays_constant() -> None:
    img = np.full((100, 120, 3), (120, 90, 60), dtype=np.uint8)
    out = apply_clahe(img, Clahe())
    assert len(np.unique(out.reshape(-1, 3), axis=0)) == 1
    assert np.abs(lab(out)[..., 1:] - lab(img)[..., 1:]).max() <= 1  # same colour, lighter or darker


def test_deterministic_and_input_untouched() -> None:
    img = low_contrast()
    before = img.copy()
    a = apply_clahe(img, Clahe(3.0, 8))
    b = apply_clahe(img, Clahe(3.0, 8))
    assert np.array_equal(a, b)
    assert np.array_equal(img, before)
    assert a is not img


def test_rejects_non_rgb_uint8() -> None:
    for bad in (np.zeros((10, 10), np.uint8), np.zeros((10, 10, 4), np.uint8), np.zeros((10, 10, 3), np.float32)):
        with pytest.raises(ValueError):
            apply_clahe(bad, Clahe())


def test_keys_are_short_and_stable() -> None:
    assert Clahe().key() == "clahe2.0x8"
    assert Clahe(2.5, 16).key() == "clahe2.5x16"
    assert Clahe(2, 8).key() == Clahe(2.0, 8).key()
    assert Clahe(0.1, 1).key() == "clahe0.1x1"
    keys = {Clahe(c, g).key() for c in (0.5, 1.0, 2.0, 2.5, 40.0) for g in (1, 8, 64)}
    assert len(keys) == 15


@pytest.mark.parametrize(
    ("clip", "grid"),
    [
        (0, 8),
        (-1, 8),
        (40.5, 8),
        (float("nan"), 8),
        (float("inf"), 8),
        ("2", 8),
        (True, 8),
        (2, 0),
        (2, 65),
        (2, 8.0),
        (2, True),
    ],
)
def test_invalid_settings_rejected(clip: object, grid: object) -> None:
    with pytest.raises(UserError):
        Clahe(clip, grid)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("off", None),
        ("OFF", None),
        ("none", None),
        (0, None),
        (0.0, None),
        ("0", None),
        ("2", Clahe(2.0, 8)),
        ("2.5", Clahe(2.5, 8)),
        (" 2.5 ", Clahe(2.5, 8)),
        (2.5, Clahe(2.5, 8)),
        (3, Clahe(3.0, 8)),
        ("2.5x16", Clahe(2.5, 16)),
        ("2.5X16", Clahe(2.5, 16)),
        ("2 x 4", Clahe(2.0, 4)),
        ("40x64", Clahe(40.0, 64)),
        (".5", Clahe(0.5, 8)),
    ],
)
def test_parse_clahe(value: str | float | None, expected: Clahe | None) -> None:
    assert parse_clahe(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "on",
        "abc",
        "2.5x",
        "x16",
        "2.5x16x2",
        "-2",
        "2.5x0",
        "2.5x65",
        "41",
        "0x8",
        "2,5",
        "nan",
        "inf",
        -1.0,
        float("nan"),
        True,
        [2],
    ],
)
def test_parse_clahe_rejects(value: object) -> None:
    with pytest.raises(UserError):
        parse_clahe(value)  # type: ignore[arg-type]
