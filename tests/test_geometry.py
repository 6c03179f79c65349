"""Tests for sam_core.core.geometry on hand-made shapes (pixel coords: x right, y down)."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from synth import uncompressed_rle

from sam_core.core.geometry import (
    area_fraction,
    mask_area,
    mask_bbox,
    mask_metrics,
    mask_perimeter,
    mask_polygons,
    postprocess_mask,
    rle_decode,
    rle_encode,
)


def rect_mask(h: int = 80, w: int = 100, x: int = 10, y: int = 20, rw: int = 40, rh: int = 30) -> np.ndarray:
    """(h, w) bool with a filled rw x rh rectangle whose top-left pixel is (x, y)."""
    m = np.zeros((h, w), dtype=bool)
    m[y : y + rh, x : x + rw] = True
    return m


def disk_mask(size: int, radius: int, hole: int = 0) -> np.ndarray:
    """(size, size) bool disc of `radius` centred at (size//2, size//2), minus a disc of `hole`."""
    m = np.zeros((size, size), dtype=np.uint8)
    c = (size // 2, size // 2)
    cv2.circle(m, c, radius, 1, -1)
    if hole:
        cv2.circle(m, c, hole, 0, -1)
    return m.astype(bool)


# --------------------------------------------------------------------------- rectangle


def test_rectangle_area_bbox_fraction() -> None:
    m = rect_mask()
    assert mask_area(m) == 1200
    # Half-open pixel-edge box: [x_min, y_min, x_max + 1, y_max + 1].
    assert mask_bbox(m) == [10, 20, 50, 50]
    assert area_fraction(m) == pytest.approx(1200 / 8000)


def test_rectangle_perimeter_through_pixel_centres() -> None:
    # OpenCV traces the centres of the boundary pixels: (10,20)-(49,20)-(49,49)-(10,49),
    # so the 40 x 30 rectangle measures 2 * (39 + 29) = 136 exactly.
    assert mask_perimeter(rect_mask()) == pytest.approx(136.0, abs=1e-6)


def test_rectangle_polygon_has_four_corners() -> None:
    polys = mask_polygons(rect_mask())
    assert len(polys) == 1
    pts = np.asarray(polys[0]).reshape(-1, 2)
    assert len(pts) == 4
    assert {tuple(p) for p in pts.tolist()} == {(10, 20), (49, 20), (49, 49), (10, 49)}
    assert all(isinstance(v, float) for v in polys[0])


def test_non_bool_masks_are_read_as_nonzero() -> None:
    m = rect_mask().astype(np.uint8) * 7
    assert mask_area(m) == 1200
    assert mask_bbox(m) == [10, 20, 50, 50]
    assert mask_perimeter(m) == pytest.approx(136.0)


def test_mask_touching_the_border_and_full_mask() -> None:
    full = np.ones((5, 7), dtype=bool)
    assert mask_bbox(full) == [0, 0, 7, 5]
    assert mask_perimeter(full) == pytest.approx(2 * (6 + 4))
    assert area_fraction(full) == 1.0
    assert len(mask_polygons(full)) == 1


def test_single_pixel() -> None:
    m = np.zeros((9, 9), dtype=bool)
    m[4, 6] = True
    assert mask_area(m) == 1
    assert mask_bbox(m) == [6, 4, 7, 5]
    assert mask_perimeter(m) == 0.0  # one contour point: no length
    assert mask_polygons(m) == []  # fewer than 3 vertices


# --------------------------------------------------------------------------- ring

R, r = 60, 30


def test_ring_area_and_perimeter_counts_the_hole() -> None:
    ring = disk_mask(200, R, hole=r)
    disk = disk_mask(200, R)
    assert mask_area(ring) == int(ring.sum())
    assert mask_area(ring) == pytest.approx(math.pi * (R**2 - r**2), rel=0.02)

    p_ring, p_disk = mask_perimeter(ring), mask_perimeter(disk)
    # Outer + inner boundary; 8-connected chain codes read curves a few % long.
    assert p_ring == pytest.approx(2 * math.pi * (R + r), rel=0.07)
    assert p_ring > p_disk
    # The outer contour of the ring is the disc's contour, so the difference is the hole's.
    assert p_ring - p_disk == pytest.approx(2 * math.pi * r, rel=0.10)
    assert p_disk == pytest.approx(2 * math.pi * R, rel=0.07)


def test_two_blobs_perimeters_add_up() -> None:
    a = rect_mask(100, 200, 10, 10, 20, 20)
    b = rect_mask(100, 200, 100, 50, 30, 10)
    assert mask_perimeter(a | b) == pytest.approx(mask_perimeter(a) + mask_perimeter(b))
    assert len(mask_polygons(a | b)) == 2


def test_ring_polygon_excludes_the_hole() -> None:
    ring = disk_mask(200, R, hole=r)
    polys = mask_polygons(ring)
    assert len(polys) == 1  # outer outline only: holes are not represented
    pts = np.asarray(polys[0]).reshape(-1, 2)
    dist = np.hypot(pts[:, 0] - 100, pts[:, 1] - 100)
    assert dist.min() > R - 2  # every vertex lies on the outer boundary
    # Filling the polygon gives the disc, i.e. the hole is lost.
    filled = np.zeros_like(ring, dtype=np.uint8)
    cv2.fillPoly(filled, [pts.astype(np.int32)], 1)
    assert filled[100, 100] == 1 and not ring[100, 100]


def test_polygon_tolerance_and_min_area() -> None:
    disk = disk_mask(200, R)
    exact = np.asarray(mask_polygons(disk)[0]).reshape(-1, 2)
    coarse = np.asarray(mask_polygons(disk, tolerance=2.0)[0]).reshape(-1, 2)
    assert 3 <= len(coarse) < len(exact)
    # A 1-px wide line has zero enclosed area: dropped by the default min_area=1.
    line = np.zeros((20, 20), dtype=bool)
    line[5, 2:15] = True
    assert mask_polygons(line) == []
    big_and_small = rect_mask(100, 100, 10, 10, 30, 30) | rect_mask(100, 100, 70, 70, 3, 3)
    assert len(mask_polygons(big_and_small)) == 2
    assert len(mask_polygons(big_and_small, min_area=10)) == 1  # the 3x3 encloses 2x2 = 4


# --------------------------------------------------------------------------- empty


def test_empty_mask() -> None:
    m = np.zeros((30, 40), dtype=bool)
    assert mask_area(m) == 0
    assert mask_bbox(m) is None
    assert mask_perimeter(m) == 0.0
    assert area_fraction(m) == 0.0
    assert mask_polygons(m) == []
    assert mask_metrics(m) == {"area": 0, "area_fraction": 0.0, "perimeter": 0.0, "bbox": None}
    assert mask_metrics(m, scale=0.5)["bbox"] is None


def test_rejects_non_2d() -> None:
    with pytest.raises(ValueError):
        mask_bbox(np.zeros((3, 4, 1), dtype=bool))


# --------------------------------------------------------------------------- RLE


def _rle_masks() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [
        rng.random((37, 53)) < 0.5,
        rng.random((53, 37)) < 0.1,
        np.ones((37, 53), dtype=bool),
        np.zeros((37, 53), dtype=bool),
        disk_mask(101, 40, hole=10),
        np.ones((1, 1), dtype=bool),
    ]


@pytest.mark.parametrize("index", range(6))
def test_rle_round_trip_through_json_and_pycocotools(index: int) -> None:
    m = _rle_masks()[index]
    rle = rle_encode(m)
    assert rle["size"] == [m.shape[0], m.shape[1]]
    assert isinstance(rle["counts"], str)
    back = json.loads(json.dumps(rle))
    decoded = mask_utils.decode({"size": back["size"], "counts": back["counts"].encode()})
    assert decoded.shape == m.shape
    assert np.array_equal(decoded.astype(bool), m)
    assert int(mask_utils.area({"size": back["size"], "counts": back["counts"].encode()})) == mask_area(m)
    # Our decoder takes str or bytes counts and returns bool.
    for counts in (back["counts"], back["counts"].encode()):
        out = rle_decode({"size": back["size"], "counts": counts})
        assert out.dtype == np.bool_ and np.array_equal(out, m)


def test_rle_matches_pycocotools_encoding_and_accepts_uncompressed() -> None:
    m = _rle_masks()[0]
    ref = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    assert rle_encode(m)["counts"] == ref["counts"].decode()
    # Uncompressed COCO RLE (counts as a list of run lengths, column-major).
    counts = uncompressed_rle(m)  # runs alternate 0s, 1s, ... starting with 0s
    assert sum(counts) == m.size
    assert np.array_equal(rle_decode({"size": list(m.shape), "counts": counts}), m)


def test_rle_of_non_contiguous_view() -> None:
    m = np.random.default_rng(1).random((60, 80)) < 0.3
    view = m[::2, 1::3]
    assert np.array_equal(rle_decode(rle_encode(view)), view)


# --------------------------------------------------------------------------- metrics


def test_mask_metrics_scale_1_matches_individual_functions() -> None:
    ring = disk_mask(200, R, hole=r)
    met = mask_metrics(ring)
    assert met == {
        "area": mask_area(ring),
        "area_fraction": pytest.approx(area_fraction(ring)),
        "perimeter": pytest.approx(mask_perimeter(ring)),
        "bbox": mask_bbox(ring),
    }
    assert isinstance(met["area"], int) and isinstance(met["perimeter"], float)


def test_mask_metrics_on_preview_approximates_full_resolution() -> None:
    # Full image 1000 x 800, rectangle x 101..496, y 203..510 (not aligned to the grid).
    full = rect_mask(800, 1000, 101, 203, 396, 308)
    scale = 0.25
    small = cv2.resize(full.astype(np.uint8) * 255, (250, 200), interpolation=cv2.INTER_AREA) > 127
    ref = mask_metrics(full)
    est = mask_metrics(small, scale=scale)
    assert ref["bbox"] == [101, 203, 497, 511]
    assert est["area"] == pytest.approx(ref["area"], rel=0.02)
    assert est["perimeter"] == pytest.approx(ref["perimeter"], rel=0.02)
    assert est["area_fraction"] == pytest.approx(ref["area_fraction"], rel=0.02)
    for a, b in zip(est["bbox"], ref["bbox"]):
        assert abs(a - b) <= 1 / scale
    assert all(isinstance(v, int) for v in est["bbox"])


def test_mask_metrics_rejects_bad_scale() -> None:
    with pytest.raises(ValueError):
        mask_metrics(rect_mask(), scale=0)


# --------------------------------------------------------------------------- postprocess


def test_postprocess_removes_small_island() -> None:
    m = rect_mask(100, 100, 10, 10, 40, 40)
    m[80, 80:83] = True  # 3-px speck
    out = postprocess_mask(m, min_island=10)
    assert not out[80, 80:83].any()
    assert np.array_equal(out, rect_mask(100, 100, 10, 10, 40, 40))
    assert m[80, 80:83].all()  # input untouched
    assert np.array_equal(postprocess_mask(m), m)  # 0 disables


def test_postprocess_fills_small_hole_keeps_big_hole() -> None:
    m = rect_mask(100, 100, 10, 10, 60, 60)
    m[20:22, 20:22] = False  # 2x2 = 4 px hole
    m[40:50, 40:50] = False  # 10x10 = 100 px hole
    out = postprocess_mask(m, min_hole=10)
    assert out[20:22, 20:22].all()
    assert not out[40:50, 40:50].any()
    assert mask_area(out) == 3600 - 100
    assert np.array_equal(postprocess_mask(m, min_island=10), m)


def test_postprocess_all_islands_small_keeps_largest_and_empty_stays_empty() -> None:
    m = np.zeros((50, 50), dtype=bool)
    m[5:7, 5:7] = True  # 4 px
    m[30, 30] = True  # 1 px
    out = postprocess_mask(m, min_island=100)
    assert mask_area(out) == 4 and out[5:7, 5:7].all()
    empty = np.zeros((20, 20), dtype=bool)
    assert not postprocess_mask(empty, min_island=10, min_hole=10).any()


def test_postprocess_small_background_pocket_outside_the_bbox_is_filled() -> None:
    # Everything but a 3-px corner: the pocket lies outside the bbox crop and is filled.
    m = np.ones((40, 40), dtype=bool)
    m[0, 0:3] = False
    assert postprocess_mask(m, min_hole=5).all()
    assert not postprocess_mask(m, min_hole=3)[0, 0:3].any()


def test_postprocess_matches_segment_anything_remove_small_regions() -> None:
    amg = pytest.importorskip("segment_anything.utils.amg")
    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(300):
        h, w = rng.integers(2, 40, 2)
        m = rng.random((h, w)) < rng.uniform(0.2, 0.9)
        m = cv2.dilate(m.astype(np.uint8), np.ones((2, 2), np.uint8)).astype(bool) if rng.random() < 0.5 else m
        if not m.any():
            continue
        min_island, min_hole = (int(v) for v in rng.integers(0, 15, 2))
        ref = m
        if min_hole:
            ref, _ = amg.remove_small_regions(ref, min_hole, "holes")
        if min_island:
            n, _, stats, _ = cv2.connectedComponentsWithStats(ref.astype(np.uint8), connectivity=8)
            if n > 1 and (stats[1:, cv2.CC_STAT_AREA] < min_island).all():
                continue  # "keep the largest": ties are broken by label order, which differs
            ref, _ = amg.remove_small_regions(ref, min_island, "islands")
        assert np.array_equal(postprocess_mask(m, min_island=min_island, min_hole=min_hole), ref)
        checked += 1
    assert checked > 150
