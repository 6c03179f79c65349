"""Tests for sam_core.core.polygon_prompt on hand-made polygons (full-image px, x right, y down)."""

from __future__ import annotations

import itertools
import math

import cv2
import numpy as np
import pytest

from sam_core.core.errors import PromptError, UserError
from sam_core.core.polygon_prompt import PolygonPrompt, polygon_to_prompts
from sam_core.core.prompts import Prompts
from sam_core.core.sizes import ImageSize

SIZE = ImageSize(640, 480)

SQUARE = [(10, 10), (50, 10), (50, 50), (10, 50)]
RECT = [(100, 100), (300, 100), (300, 140), (100, 140)]  # 200 x 40
# vertical arm x 100..140 (y 100..300), horizontal arm y 260..300 (x 100..300)
L_SHAPE = [(100, 100), (140, 100), (140, 260), (300, 260), (300, 300), (100, 300)]
# arms x 100..140 and 260..300 (y 100..300), base y 260..300; hollow x 140..260, y 100..260
U_SHAPE = [(100, 100), (140, 100), (140, 260), (260, 260), (260, 100), (300, 100), (300, 300), (100, 300)]


def inside(poly: list[tuple[float, float]], x: float, y: float) -> float:
    return cv2.pointPolygonTest(np.asarray(poly, dtype=np.float32).reshape(-1, 1, 2), (x, y), False)


def check_sides(poly: list[tuple[float, float]], prompt: PolygonPrompt) -> None:
    """Every label-1 point strictly inside the polygon, every label-0 point strictly outside and in the box."""
    x1, y1, x2, y2 = prompt.box
    for x, y, label in prompt.points:
        assert (x - 0.5) % 1 == 0 and (y - 0.5) % 1 == 0  # pixel centres
        if label == 1:
            assert inside(poly, x, y) > 0, (x, y)
        else:
            assert label == 0 and inside(poly, x, y) < 0, (x, y)
            assert x1 <= x <= x2 and y1 <= y <= y2


def test_square_gives_its_box_and_one_point_at_its_centre() -> None:
    prompt = polygon_to_prompts(SQUARE, SIZE)
    assert prompt.box == (10.0, 10.0, 50.0, 50.0)
    assert len(prompt.points) == 1
    x, y, label = prompt.points[0]
    assert label == 1 and abs(x - 30) <= 1 and abs(y - 30) <= 1
    check_sides(SQUARE, prompt)


@pytest.mark.parametrize("offset", [(0, 0), (1, 3)])
def test_square_on_a_scaled_working_grid_still_centres_within_a_pixel(offset: tuple[int, int]) -> None:
    dx, dy = offset
    poly = [(500 + dx, 500 + dy), (4500 - dx, 500 + dy), (4500 - dx, 4500 - dy), (500 + dx, 4500 - dy)]
    prompt = polygon_to_prompts(poly, ImageSize(8000, 6000))  # 4000 px box on a 512-cell grid: ~7.8 px cells
    assert prompt.box == (500.0 + dx, 500.0 + dy, 4500.0 - dx, 4500.0 - dy)
    assert len(prompt.points) == 1
    x, y, _ = prompt.points[0]
    assert abs(x - 2500) <= 1 and abs(y - 2500) <= 1


def test_box_is_clipped_to_the_image() -> None:
    poly = [(-50, 100), (700, 100), (700, 600), (-50, 600)]
    prompt = polygon_to_prompts(poly, SIZE)
    assert prompt.box == (0.0, 100.0, 640.0, 480.0)
    check_sides(poly, prompt)
    for x, y, _ in prompt.points:
        assert 0 < x < 640 and 100 < y < 480


def test_rectangle_points_spread_along_the_long_axis() -> None:
    prompt = polygon_to_prompts(RECT, SIZE, n_inside=3)
    assert prompt.box == (100.0, 100.0, 300.0, 140.0)
    assert len(prompt.points) == 3
    check_sides(RECT, prompt)
    xs = sorted(x for x, _, _ in prompt.points)
    ys = [y for _, y, _ in prompt.points]
    assert xs[-1] - xs[0] >= 120  # along the 200 px axis, not bunched
    assert min(b - a for a, b in itertools.pairwise(xs)) >= 40
    assert all(abs(y - 120) <= 3 for y in ys)  # on the middle line


def test_l_shape_gets_points_in_both_arms() -> None:
    prompt = polygon_to_prompts(L_SHAPE, SIZE, n_inside=3)
    check_sides(L_SHAPE, prompt)
    in_vertical = [p for p in prompt.points if p[0] < 140 and p[1] < 250]
    in_horizontal = [p for p in prompt.points if p[1] > 260 and p[0] > 150]
    assert in_vertical and in_horizontal


def test_u_shape_outside_point_lies_in_the_hollow() -> None:
    prompt = polygon_to_prompts(U_SHAPE, SIZE, n_inside=3, n_outside=1)
    check_sides(U_SHAPE, prompt)
    outside = [p for p in prompt.points if p[2] == 0]
    assert len(outside) == 1
    x, y, _ = outside[0]
    assert 140 < x < 260 and 100 < y < 260
    # the deepest point of the 120 x 160 hollow (open at the box's top edge) is its centre
    assert abs(x - 200) <= 2 and abs(y - 180) <= 2
    assert [p[2] for p in prompt.points] == sorted((p[2] for p in prompt.points), reverse=True)  # inside first
    inside_pts = [p for p in prompt.points if p[2] == 1]
    assert any(p[0] < 140 for p in inside_pts) and any(p[0] > 260 for p in inside_pts)


def test_many_points_all_on_the_right_side() -> None:
    rng = np.random.default_rng(5)
    for _ in range(20):
        n = int(rng.integers(3, 12))
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = rng.uniform(40, 200, n)
        poly = [(float(320 + r * math.cos(a)), float(240 + r * math.sin(a))) for a, r in zip(ang, rad, strict=True)]
        if abs(cv2.contourArea(np.asarray(poly, dtype=np.float32))) < 100:
            continue
        prompt = polygon_to_prompts(poly, SIZE, n_inside=5, n_outside=3)
        assert any(p[2] == 1 for p in prompt.points)
        check_sides(poly, prompt)


def test_round_shape_gets_one_point_and_polygon_filling_its_box_no_outside_point() -> None:
    circle = [
        (320 + 100 * math.cos(t * 2 * math.pi / 60), 240 + 100 * math.sin(t * 2 * math.pi / 60)) for t in range(60)
    ]
    prompt = polygon_to_prompts(circle, SIZE, n_inside=5)
    assert len(prompt.points) == 1
    x, y, _ = prompt.points[0]
    assert math.hypot(x - 320, y - 240) <= 1.5
    prompt = polygon_to_prompts(SQUARE, SIZE, n_inside=1, n_outside=3)
    assert [p[2] for p in prompt.points] == [1]


def test_self_intersecting_polygons_are_accepted_even_odd() -> None:
    bowtie = [(0, 0), (100, 100), (100, 0), (0, 100)]  # signed area 0, two lobes
    prompt = polygon_to_prompts(bowtie, SIZE, n_inside=4)
    check_sides(bowtie, prompt)
    assert any(x < 50 for x, _, _ in prompt.points) and any(x > 50 for x, _, _ in prompt.points)
    star = [
        (
            320 + 200 * math.cos(math.pi / 2 + k * 4 * math.pi / 5),
            240 - 200 * math.sin(math.pi / 2 + k * 4 * math.pi / 5),
        )
        for k in range(5)
    ]
    prompt = polygon_to_prompts(star, SIZE, n_inside=5)
    check_sides(star, prompt)  # the pentagon in the middle is outside by the even-odd rule
    assert inside(star, 320, 240) < 0


def test_thin_polygon_on_a_big_image_still_gets_a_point() -> None:
    thin = [(10, 100), (5000, 100), (5000, 103), (10, 103)]  # 3 px tall, thinner than a 512-grid cell
    prompt = polygon_to_prompts(thin, ImageSize(5472, 3648))
    assert prompt.points
    check_sides(thin, prompt)


def test_accepts_numpy_vertices_and_converts_to_prompts() -> None:
    prompt = polygon_to_prompts(np.asarray(SQUARE, dtype=np.float32), SIZE)
    p = prompt.prompts()
    assert isinstance(p, Prompts) and p.box == prompt.box and p.points == prompt.points
    p.validate(SIZE.width, SIZE.height)


@pytest.mark.parametrize(
    ("vertices", "kwargs", "message"),
    [
        ([(0, 0), (10, 10)], {}, "at least 3"),
        ([], {}, "at least 3"),
        ([(0, 0)] * 1001, {}, "at most 1000"),
        ([(0, 0), (10, 0), (float("nan"), 10)], {}, "finite"),
        ([(0, 0), (10, 0), (float("inf"), 10)], {}, "finite"),
        ([(0, 0), (10, 0), ("a", 10)], {}, "pairs"),
        ([(0, 0), (10, 0), (5, 10, 3)], {}, "pairs"),
        ([(0, 0), (10, 0), (5,)], {}, "pairs"),
        ("0,0 10,0 5,10", {}, "pairs"),
        ([(True, False), (True, True), (False, True)], {}, "pairs"),
        ([(0, 0), (10, 10), (20, 20)], {}, "zero area"),
        ([(5, 5), (5, 5), (5, 5)], {}, "zero area"),
        ([(10, 10), (60, 10), (30, 50), (60, 10)], {}, "no pixel"),  # traced back and forth
        ([(700, 10), (800, 10), (800, 50)], {}, "outside"),
        ([(-100, -100), (-10, -100), (-10, -10)], {}, "outside"),
        ([(0, 0), (1e9, 0), (0, 10)], {}, "far outside"),
        (SQUARE, {"n_inside": -1}, "n_inside"),
        (SQUARE, {"n_inside": 65}, "n_inside"),
        (SQUARE, {"n_outside": 2.0}, "n_outside"),
        (SQUARE, {"n_inside": 40, "n_outside": 40}, "at most 64"),
        (SQUARE, {"work_side": 8}, "work_side"),
    ],
)
def test_invalid_input_rejected(vertices: object, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(PromptError, match=message) as err:
        polygon_to_prompts(vertices, SIZE, **kwargs)  # type: ignore[arg-type]
    assert isinstance(err.value, UserError)
