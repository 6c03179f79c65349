"""Tests for sam_core.core.mask_edits on hand-made masks (x right, y down, pixel centres at +0.5)."""

from __future__ import annotations

import itertools
import json
import math

import cv2
import numpy as np
import pytest

import sam_core.core.mask_edits as me
from sam_core.core.errors import UserError
from sam_core.core.mask_edits import (
    FillHoles,
    Grow,
    KeepLargest,
    RemoveIslands,
    Smooth,
    Stroke,
    apply_edit,
    apply_edits,
    describe,
    edit_from_json,
    edit_to_json,
)


def square(h: int, w: int, x: int, y: int, side: int) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[y : y + side, x : x + side] = True
    return m


def dist_to_rect(h: int, w: int, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    """Euclidean distance from each pixel centre to the nearest centre of rect pixels [x1, x2) x [y1, y2)."""
    rows, cols = np.mgrid[:h, :w]
    dx = np.maximum(np.maximum(x1 - cols, cols - (x2 - 1)), 0)
    dy = np.maximum(np.maximum(y1 - rows, rows - (y2 - 1)), 0)
    return np.hypot(dx, dy)


def seg_dist(px: np.ndarray, py: np.ndarray, a: tuple[float, float], b: tuple[float, float]) -> np.ndarray:
    """Distance of points (px, py) to the segment a-b."""
    (ax, ay), (bx, by) = a, b
    dx, dy = bx - ax, by - ay
    l2 = dx * dx + dy * dy
    t = np.zeros_like(px) if l2 == 0 else np.clip(((px - ax) * dx + (py - ay) * dy) / l2, 0.0, 1.0)
    return np.hypot(px - (ax + t * dx), py - (ay + t * dy))


def polyline_dist(h: int, w: int, pts: list[tuple[float, float]]) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w] + 0.5
    if len(pts) == 1:
        return np.hypot(xx - pts[0][0], yy - pts[0][1])
    d = np.full((h, w), np.inf)
    for a, b in itertools.pairwise(pts):
        d = np.minimum(d, seg_dist(xx, yy, a, b))
    return d


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return np.count_nonzero(a & b) / max(np.count_nonzero(a | b), 1)


def blobs(sizes: list[int], h: int = 120, w: int = 200) -> tuple[np.ndarray, list[np.ndarray]]:
    """Separate square blobs of side sqrt(size) (sizes are perfect squares), left to right."""
    m = np.zeros((h, w), dtype=bool)
    parts = []
    x = 5
    for size in sizes:
        side = math.isqrt(size)
        assert side * side == size
        part = square(h, w, x, 10, side)
        m |= part
        parts.append(part)
        x += side + 5
    return m, parts


# --------------------------------------------------------------------------------- grow


def test_grow_square_by_2_is_the_euclidean_disc_dilation() -> None:
    m = square(41, 41, 10, 10, 21)
    out = apply_edit(m, Grow(2))
    expected = dist_to_rect(41, 41, 10, 10, 31, 31) <= 2
    assert np.array_equal(out, expected)
    # Off the corner pixel (30, 30): (+1, +1) is at sqrt(2), added; (+2, +1) and (+1, +2) at sqrt(5), not.
    assert out[31, 31] and not out[31, 32] and not out[32, 31]
    assert out[20, 32] and not out[20, 33]  # 2 px out from the middle of the right side
    assert np.array_equal(out, out.T)


def test_cv2_ellipse_kernel_is_not_the_euclidean_disc() -> None:
    """Why Grow does not use MORPH_ELLIPSE: cv2's r=2 ellipse holds (dx, dy) = (2, 1) but not (1, 2)."""
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    assert k[2 + 1, 2 + 2] == 1 and k[2 + 2, 2 + 1] == 0  # [row=dy, col=dx]
    m = square(41, 41, 10, 10, 21)
    with_ellipse = cv2.dilate(m.astype(np.uint8), k).astype(bool)
    assert not np.array_equal(with_ellipse, with_ellipse.T)  # orientation-dependent
    # It is the Euclidean disc only along the rows: |dx| <= round(sqrt(r² - dy²)).
    dy, dx = np.mgrid[-2:3, -2:3]
    assert np.array_equal(k.astype(bool), np.abs(dx) <= np.round(np.sqrt(np.maximum(4 - dy**2, 0))))


def test_grow_large_radius_is_exact_too() -> None:
    # 30 px goes through the distance transform path.
    m = square(140, 150, 50, 40, 21)
    out = apply_edit(m, Grow(30))
    assert np.array_equal(out, dist_to_rect(140, 150, 50, 40, 71, 61) <= 30)
    # a fractional radius: exactly the pixels within 30.5 px
    out = apply_edit(m, Grow(30.5))
    assert np.array_equal(out, dist_to_rect(140, 150, 50, 40, 71, 61) <= 30.5)


def test_erode_square_by_3_shrinks_each_side_by_3() -> None:
    m = square(60, 60, 10, 12, 30)
    assert np.array_equal(apply_edit(m, Grow(-3)), square(60, 60, 13, 15, 24))
    # the distance-transform path
    big = square(200, 200, 20, 30, 120)
    assert np.array_equal(apply_edit(big, Grow(-40)), square(200, 200, 60, 70, 40))


def test_erode_does_not_eat_from_the_image_border() -> None:
    m = np.zeros((50, 60), dtype=bool)
    m[:20, :30] = True  # touches the top and left borders
    out = apply_edit(m, Grow(-4))
    expected = np.zeros_like(m)
    expected[:16, :26] = True
    assert np.array_equal(out, expected)


@pytest.mark.parametrize("erode", [False, True])
def test_kernel_and_distance_transform_paths_agree(monkeypatch: pytest.MonkeyPatch, erode: bool) -> None:
    rng = np.random.default_rng(3)
    m = cv2.GaussianBlur(rng.random((150, 170)).astype(np.float32), (0, 0), 4) > 0.5
    m[:, :3] = True
    for radius in (1.0, 2.5, 3.7, 6.0, 9.9, 13.2):
        px = -radius if erode else radius
        monkeypatch.setattr(me, "KERNEL_MAX_RADIUS", 1e9)
        by_kernel = apply_edit(m, Grow(px))
        monkeypatch.setattr(me, "KERNEL_MAX_RADIUS", -1.0)
        by_edt = apply_edit(m, Grow(px))
        assert np.array_equal(by_kernel, by_edt), radius


def test_small_scaled_radius_is_a_no_op_and_half_a_pixel_counts_as_one() -> None:
    m = square(40, 40, 10, 10, 10)
    assert np.array_equal(apply_edit(m, Grow(1), scale=0.28), m)  # 0.28 px
    assert np.array_equal(apply_edit(m, Smooth(1), scale=0.28), m)
    assert np.array_equal(apply_edit(m, Grow(2), scale=0.28), apply_edit(m, Grow(1)))  # 0.56 px -> 1 px
    assert np.array_equal(apply_edit(m, Grow(0)), m)


# ---------------------------------------------------------------------------- fill holes


def ring(h: int, w: int, x: int, y: int, outer: tuple[int, int], hole: tuple[int, int]) -> np.ndarray:
    """A filled outer (w, h) rectangle at (x, y) with a centred hole of (w, h)."""
    m = np.zeros((h, w), dtype=bool)
    m[y : y + outer[1], x : x + outer[0]] = True
    hx, hy = x + (outer[0] - hole[0]) // 2, y + (outer[1] - hole[1]) // 2
    m[hy : hy + hole[1], hx : hx + hole[0]] = False
    return m


def test_fill_holes_only_below_the_limit() -> None:
    small = ring(100, 120, 5, 5, (20, 20), (5, 10))  # hole area 50
    large = ring(100, 120, 40, 5, (40, 40), (20, 25))  # hole area 500
    assert np.count_nonzero(small[5:25, 5:25] == 0) == 50
    assert np.count_nonzero(large[5:45, 40:80] == 0) == 500
    out = apply_edit(small | large, FillHoles(100))
    filled_small = small.copy()
    filled_small[5:25, 5:25] = True
    assert np.array_equal(out, filled_small | large)
    everything = apply_edit(small | large, FillHoles(0))
    assert np.count_nonzero(everything) == 400 + 1600
    # scale: 200 full px² at scale 0.5 is a 50 mask-px limit: the 50 px hole stays, then fills at 201
    assert np.array_equal(apply_edit(small, FillHoles(200), scale=0.5), small)
    assert np.count_nonzero(apply_edit(small, FillHoles(201), scale=0.5)) == 400


def test_background_touching_the_border_is_not_a_hole() -> None:
    m = np.zeros((40, 50), dtype=bool)
    m[0:20, 10:30] = True
    m[0:8, 15:25] = False  # a pocket open to the top border
    assert np.array_equal(apply_edit(m, FillHoles(0)), m)


def test_hole_enclosed_by_a_diagonal_8_connected_wall_is_filled() -> None:
    m = np.zeros((30, 30), dtype=np.uint8)
    diamond = np.array([[15, 5], [25, 15], [15, 25], [5, 15]], dtype=np.int32)
    cv2.polylines(m, [diamond], True, 1, lineType=cv2.LINE_8)
    outline = m.astype(bool)
    filled = np.zeros_like(m)
    cv2.fillPoly(filled, [diamond], 1)
    out = apply_edit(outline, FillHoles(0))
    assert np.array_equal(out, filled.astype(bool))


# -------------------------------------------------------------------- islands / largest


def test_remove_islands_below_the_limit() -> None:
    m, (_, b, c) = blobs([9, 36, 225])
    out = apply_edit(m, RemoveIslands(50))
    assert np.array_equal(out, c)
    assert np.array_equal(apply_edit(m, RemoveIslands(36)), b | c)  # "below": 36 stays
    assert np.array_equal(apply_edit(m, RemoveIslands(0)), m)
    # all below the limit: the largest stays, the mask is never emptied
    assert np.array_equal(apply_edit(m, RemoveIslands(10_000)), c)
    # scale: 200 full px² at scale 0.5 is 50 mask px²
    assert np.array_equal(apply_edit(m, RemoveIslands(200), scale=0.5), c)


def test_keep_largest_two_of_four() -> None:
    m, (_, b, c, _) = blobs([100, 400, 225, 36])
    assert np.array_equal(apply_edit(m, KeepLargest(2)), b | c)
    assert np.array_equal(apply_edit(m, KeepLargest(1)), b)
    assert np.array_equal(apply_edit(m, KeepLargest(4)), m)
    assert np.array_equal(apply_edit(m, KeepLargest(1000)), m)


def test_components_are_8_connected() -> None:
    m = np.zeros((20, 20), dtype=bool)
    m[2:6, 2:6] = True
    m[6:10, 6:10] = True  # touches the first only at a corner
    m[15:17, 15:17] = True
    assert np.array_equal(apply_edit(m, KeepLargest(1)), m & ~square(20, 20, 15, 15, 2))


# -------------------------------------------------------------------------------- smooth


def test_smooth_removes_a_spike_fills_a_notch_keeps_area() -> None:
    sq = square(160, 160, 30, 30, 100)
    m = sq.copy()
    m[60, 130:137] = True  # a 1-px wide spike, 7 px long, out of the right side
    m[125:130, 70] = False  # a 1-px wide notch, 5 px deep, into the bottom side
    out = apply_edit(m, Smooth(2))
    assert not out[60, 131:137].any()  # spike gone (but for its root pixel at most)
    assert out[125:129, 70].all()  # notch filled (but for its mouth pixel at most)
    assert abs(np.count_nonzero(out) - np.count_nonzero(sq)) <= 0.02 * np.count_nonzero(sq)
    # what changes against the clean square lies on its outline (corners, spike root, notch mouth)
    changed = out != sq
    near_outline = (dist_to_rect(160, 160, 30, 30, 130, 130) <= 1) & ~square(160, 160, 32, 32, 96)
    assert not (changed & ~near_outline).any()


def test_smooth_large_sigma_downsampled_path_is_sane() -> None:
    disc = np.zeros((400, 400), dtype=np.uint8)
    cv2.circle(disc, (200, 200), 120, 1, -1)
    m = disc.astype(bool)
    m[195:205, 320:380] = True  # a 10-px wide spike
    out = apply_edit(m, Smooth(12))
    assert not out[195:205, 340:380].any()
    assert iou(out, disc.astype(bool)) > 0.98


def test_smooth_keeps_an_object_cut_by_the_frame() -> None:
    m = np.zeros((60, 80), dtype=bool)
    m[:, :40] = True  # the left half: the image edges top/bottom/left are not outline
    assert np.array_equal(apply_edit(m, Smooth(3)), m)


# -------------------------------------------------------------------------------- strokes


def test_stroke_paints_a_capsule_and_the_eraser_removes_it() -> None:
    h, w = 60, 90
    pts = [(12.3, 20.7), (70.2, 38.1)]
    expected = polyline_dist(h, w, pts) <= 7.3
    painted = apply_edit(np.zeros((h, w), dtype=bool), Stroke(tuple(pts), 7.3, erase=False))
    assert np.array_equal(painted, expected)
    full = np.ones((h, w), dtype=bool)
    assert np.array_equal(apply_edit(full, Stroke(tuple(pts), 7.3, erase=True)), ~expected)
    base = square(h, w, 5, 5, 30)
    both = apply_edits(base, [Stroke(tuple(pts), 7.3, erase=False), Stroke(tuple(pts), 7.3, erase=True)])
    assert np.array_equal(both, base & ~expected)


def test_stroke_polylines_discs_and_clipping_match_brute_force() -> None:
    rng = np.random.default_rng(7)
    h, w = 70, 100
    for _ in range(60):
        n = int(rng.integers(1, 7))
        pts = [(float(x), float(y)) for x, y in rng.uniform(-25, 125, size=(n, 2))]
        radius = float(rng.uniform(0.6, 30))
        out = apply_edit(np.zeros((h, w), dtype=bool), Stroke(tuple(pts), radius, erase=False))
        assert np.array_equal(out, polyline_dist(h, w, pts) <= radius), (pts, radius)


def test_stroke_at_scale_uses_scaled_coordinates() -> None:
    pts = ((40.0, 30.0), (150.0, 90.0))
    out = apply_edit(np.zeros((60, 100), dtype=bool), Stroke(pts, 10, erase=False), scale=0.5)
    assert np.array_equal(out, polyline_dist(60, 100, [(20.0, 15.0), (75.0, 45.0)]) <= 5.0)


def test_thin_stroke_at_small_scale_still_leaves_a_connected_line() -> None:
    out = apply_edit(np.zeros((40, 100), dtype=bool), Stroke(((10.0, 10.0), (300.0, 100.0)), 1, False), scale=0.3)
    n, _ = cv2.connectedComponents(out.astype(np.uint8), connectivity=8)
    assert n == 2 and np.count_nonzero(out) >= 80


# --------------------------------------------------------------------------------- scale


def downsample(m: np.ndarray) -> np.ndarray:
    """Half size: 2x2 block mean >= 0.5."""
    h, w = m.shape
    return m.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3)) >= 0.5


@pytest.mark.parametrize(
    "edit",
    [
        Grow(6),
        Grow(-6),
        Grow(40),
        Smooth(4),
        FillHoles(600),
        RemoveIslands(300),
        Stroke(((30.0, 300.0), (200.0, 250.0), (350.0, 40.0)), 9.0, erase=False),
        Stroke(((100.0, 100.0), (300.0, 300.0)), 12.0, erase=True),
    ],
    ids=describe,
)
def test_same_edit_at_half_scale_matches_downsampled_full_result(edit: me.MaskEdit) -> None:
    full = np.zeros((400, 400), dtype=np.uint8)
    cv2.circle(full, (200, 200), 120, 1, -1)
    cv2.circle(full, (200, 200), 12, 0, -1)  # a hole of ~450 px²
    cv2.rectangle(full, (40, 40), (70, 60), 1, -1)
    cv2.rectangle(full, (350, 350), (356, 356), 1, -1)  # a 49 px² island
    cv2.line(full, (300, 120), (370, 60), 1, 3)
    m = full.astype(bool)
    at_full = downsample(apply_edit(m, edit))
    half = downsample(m)
    at_half = apply_edit(half, edit, scale=0.5)
    assert iou(at_full, at_half) >= 0.95
    # and the pixels the edit changed agree too (measured 0.80 for smooth, >= 0.96 for the others)
    assert iou(at_full ^ half, at_half ^ half) >= 0.75


# ------------------------------------------------------------------------------- general


ALL_EDITS: list[me.MaskEdit] = [
    Grow(3),
    Grow(-2.5),
    FillHoles(100),
    FillHoles(0),
    RemoveIslands(50),
    KeepLargest(2),
    Smooth(1.5),
    Stroke(((1.0, 2.0), (30.5, 40.25)), 4.0, erase=False),
    Stroke(((5.0, 5.0),), 2.0, erase=True),
]


@pytest.mark.parametrize("edit", ALL_EDITS, ids=describe)
def test_input_untouched_and_output_is_a_new_bool_mask(edit: me.MaskEdit) -> None:
    m, _ = blobs([100, 400, 9])
    m[20:23, 30:33] = False
    before = m.copy()
    out = apply_edit(m, edit)
    assert np.array_equal(m, before)
    assert out.dtype == np.bool_ and out.shape == m.shape and out is not m
    empty = apply_edit(np.zeros((30, 40), dtype=bool), edit)
    assert empty.shape == (30, 40)
    as_u8 = apply_edit(m.astype(np.uint8) * 255, edit)
    assert np.array_equal(as_u8, out)


@pytest.mark.parametrize("edit", ALL_EDITS, ids=describe)
def test_json_round_trip(edit: me.MaskEdit) -> None:
    data = json.loads(json.dumps(edit_to_json(edit)))
    back = edit_from_json(data)
    assert back == edit and type(back) is type(edit)
    assert data["op"] in {"grow", "fill_holes", "remove_islands", "keep_largest", "smooth", "stroke"}


def test_json_shapes() -> None:
    assert edit_to_json(Grow(3)) == {"op": "grow", "px": 3.0}
    assert edit_to_json(Stroke(((1, 2),), 3, False)) == {
        "op": "stroke",
        "points": [[1.0, 2.0]],
        "radius": 3.0,
        "erase": False,
    }
    assert edit_from_json({"op": "keep_largest", "k": 3}) == KeepLargest(3)


INVALID = [
    None,
    [],
    "grow",
    {},
    {"op": "dilate", "px": 3},
    {"op": 3, "px": 3},
    {"op": "grow"},
    {"op": "grow", "px": 3, "extra": 1},
    {"op": "grow", "px": "3"},
    {"op": "grow", "px": True},
    {"op": "grow", "px": None},
    {"op": "grow", "px": float("nan")},
    {"op": "grow", "px": float("inf")},
    {"op": "grow", "px": 513},
    {"op": "grow", "px": -600},
    {"op": "fill_holes", "max_px": -1},
    {"op": "fill_holes", "max_px": float("inf")},
    {"op": "remove_islands", "max_px": "10"},
    {"op": "remove_islands", "max_px": -5},
    {"op": "keep_largest", "k": 0},
    {"op": "keep_largest", "k": 1001},
    {"op": "keep_largest", "k": 2.0},
    {"op": "keep_largest", "k": True},
    {"op": "smooth", "px": 0},
    {"op": "smooth", "px": -1},
    {"op": "smooth", "px": 513},
    {"op": "stroke", "points": [[1, 2]], "radius": 0, "erase": False},
    {"op": "stroke", "points": [[1, 2]], "radius": -3, "erase": False},
    {"op": "stroke", "points": [[1, 2]], "radius": 513, "erase": False},
    {"op": "stroke", "points": [[1, 2]], "radius": 3, "erase": "no"},
    {"op": "stroke", "points": [[1, 2]], "radius": 3, "erase": 0},
    {"op": "stroke", "points": [[1, 2]], "radius": 3},
    {"op": "stroke", "points": [], "radius": 3, "erase": False},
    {"op": "stroke", "points": "1,2", "radius": 3, "erase": False},
    {"op": "stroke", "points": {"x": 1}, "radius": 3, "erase": False},
    {"op": "stroke", "points": [[1, 2, 3]], "radius": 3, "erase": False},
    {"op": "stroke", "points": [[1]], "radius": 3, "erase": False},
    {"op": "stroke", "points": [["1", 2]], "radius": 3, "erase": False},
    {"op": "stroke", "points": [[1, float("nan")]], "radius": 3, "erase": False},
    {"op": "stroke", "points": [[1e9, 2]], "radius": 3, "erase": False},
    {"op": "stroke", "points": [[1, 2]] * 10_001, "radius": 3, "erase": False},
]


@pytest.mark.parametrize("data", INVALID, ids=lambda d: json.dumps(d)[:60] if d is not None else "None")
def test_invalid_json_rejected(data: object) -> None:
    with pytest.raises(UserError) as err:
        edit_from_json(data)
    assert len(str(err.value)) > 10


def test_constructors_validate_too() -> None:
    with pytest.raises(UserError, match="within"):
        Grow(1000)
    with pytest.raises(UserError, match="between 1 and 1000"):
        KeepLargest(0)
    with pytest.raises(UserError, match="10000 points"):
        Stroke(tuple((float(i), 0.0) for i in range(10_001)), 2, False)
    assert len(Stroke([(float(i), 0.0) for i in range(10_000)], 2, False).points) == 10_000
    assert Stroke([[1, 2]], 3, False).points == ((1.0, 2.0),)  # normalised to a hashable tuple


def test_describe() -> None:
    assert describe(Grow(3)) == "grow 3 px"
    assert describe(Grow(-3)) == "erode 3 px"
    assert describe(Grow(2.5)) == "grow 2.5 px"
    assert describe(FillHoles(100)) == "fill holes < 100 px²"
    assert describe(FillHoles(0)) == "fill all holes"
    assert describe(RemoveIslands(50)) == "remove islands < 50 px²"
    assert describe(KeepLargest(1)) == "keep largest part"
    assert describe(KeepLargest(3)) == "keep 3 largest parts"
    assert describe(Smooth(2)) == "smooth 2 px"
    assert describe(Stroke(((0, 0), (1, 1)), 5, False)) == "brush r 5 px, 2 points"
    assert describe(Stroke(((0, 0),), 5, True)) == "erase r 5 px, 1 point"


def test_apply_rejects_bad_scale_and_non_edits() -> None:
    m = np.zeros((5, 5), dtype=bool)
    for scale in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            apply_edit(m, Grow(1), scale=scale)
    with pytest.raises(TypeError):
        apply_edit(m, "grow")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        apply_edit(np.zeros((5, 5, 3), dtype=bool), Grow(1))
