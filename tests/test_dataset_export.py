"""Tests for sam_core.core.dataset_export on hand-made masks (pixel coords: x right, y down).

Known answers come from the shapes themselves (pixel counts, numpy bounding boxes, corner
coordinates) and from independent readers: pycocotools' COCO API, cv2.imdecode / PIL,
cv2.fillPoly and a winding-number computation written here.
"""

from __future__ import annotations

import io
import json
import re

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from sam_core.core.dataset_export import (
    ObjectMask,
    categories_of,
    coco_instances,
    cutouts,
    encode_label_map_png,
    keyhole_polygons,
    label_map,
    parse_yolo_line,
    yolo_classes_txt,
    yolo_lines,
)
from sam_core.core.errors import UserError
from sam_core.core.sizes import ImageSize

W, H = 240, 180  # not square, so a swapped width/height shows
SIZE = ImageSize(W, H)


# --------------------------------------------------------------------------- shapes


def blank() -> np.ndarray:
    return np.zeros((H, W), dtype=bool)


def rect(x: int, y: int, w: int, h: int) -> np.ndarray:
    """Filled w x h rectangle whose top-left pixel is (x, y)."""
    m = blank()
    m[y : y + h, x : x + w] = True
    return m


def disk(cx: int, cy: int, r: int, hole: int = 0) -> np.ndarray:
    """cv2.circle disc of radius r at (cx, cy), minus a concentric disc of radius `hole`."""
    m = np.zeros((H, W), dtype=np.uint8)
    cv2.circle(m, (cx, cy), r, 1, -1)
    if hole:
        cv2.circle(m, (cx, cy), hole, 0, -1)
    return m.astype(bool)


def ring() -> np.ndarray:
    return disk(120, 90, 40, hole=20)


def two_holes() -> np.ndarray:
    """60 x 60 square at (150, 20) with two 10 x 10 square holes."""
    m = rect(150, 20, 60, 60)
    m[30:40, 160:170] = False
    m[55:65, 185:195] = False
    return m


def two_parts() -> np.ndarray:
    return rect(10, 10, 30, 20) | disk(60, 140, 25)


def at_border() -> np.ndarray:
    """A disc cut by the top-left corner and a bar along the bottom-right edges."""
    return disk(0, 0, 30) | rect(W - 50, H - 8, 50, 8)


def hole_interior(mask: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """The hole pixels shrunk by one pixel (3x3 erosion)."""
    return cv2.erode(hole.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~mask


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def numpy_bbox_xywh(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


def shoelace(flat: list[float]) -> float:
    p = np.asarray(flat, dtype=float).reshape(-1, 2)
    x, y = p[:, 0], p[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def winding_number(vertices: np.ndarray, px: float, py: float) -> int:
    """Winding number of the closed polygon around the point (crossing-number form)."""
    a = vertices
    b = np.roll(vertices, -1, axis=0)
    cross = (b[:, 0] - a[:, 0]) * (py - a[:, 1]) - (px - a[:, 0]) * (b[:, 1] - a[:, 1])
    up = (a[:, 1] <= py) & (b[:, 1] > py) & (cross > 0)
    down = (a[:, 1] > py) & (b[:, 1] <= py) & (cross < 0)
    return int(up.sum() - down.sum())


def coco_polygons_to_mask(polygons: list[list[float]], h: int = H, w: int = W) -> np.ndarray:
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, h, w))).astype(bool)


SHAPES = {
    "rectangle": rect(10, 20, 40, 30),
    "disk": disk(80, 60, 30),
    "ring": ring(),
    "two_holes": two_holes(),
    "two_parts": two_parts(),
    "at_border": at_border(),
}


# --------------------------------------------------------------------------- categories


def test_categories_known_first_then_new_labels_in_first_seen_order() -> None:
    labels = ["dog", "cat", "", "dog", "  ", "bird", " cat "]
    assert categories_of(labels, known=["person", "cat", "person"]) == ["person", "cat", "dog", "object", "bird"]
    assert categories_of([]) == []
    assert categories_of(["", "\t"]) == ["object"]


def test_yolo_classes_txt_one_name_per_line() -> None:
    assert yolo_classes_txt(["person", "cat"]) == "person\ncat\n"
    assert yolo_classes_txt([]) == ""
    with pytest.raises(UserError, match="unique"):
        yolo_classes_txt(["cat", "cat "])


# --------------------------------------------------------------------------- label map


def test_label_map_values_and_later_object_wins() -> None:
    a = rect(10, 10, 60, 40)
    b = disk(60, 40, 20)  # overlaps a
    c = rect(150, 100, 30, 30)
    lm = label_map([ObjectMask(7, "a", a), ObjectMask(300, "b", b), ObjectMask(65535, "c", c)], SIZE)
    assert lm.dtype == np.uint16 and lm.shape == (H, W)
    expected = np.zeros((H, W), np.int64)
    expected[a] = 7
    expected[b] = 300  # later wins on the overlap
    expected[c] = 65535
    np.testing.assert_array_equal(lm, expected)
    assert (a & b).any() and (lm[a & b] == 300).all()
    # Reversed order: the rectangle now wins the overlap.
    lm2 = label_map([ObjectMask(300, "b", b), ObjectMask(7, "a", a)], SIZE)
    assert (lm2[a & b] == 7).all() and (lm2[b & ~a] == 300).all()


def test_label_map_empty_and_non_bool_masks() -> None:
    lm = label_map([ObjectMask(1, "a", blank()), ObjectMask(2, "b", rect(0, 0, 3, 2).astype(np.uint8) * 255)], SIZE)
    assert int((lm == 2).sum()) == 6 and not (lm == 1).any()
    assert not label_map([], SIZE).any()


def test_label_map_png_round_trip_is_exact_16_bit() -> None:
    lm = label_map(
        [ObjectMask(1, "a", rect(0, 0, 10, 10)), ObjectMask(300, "b", ring()), ObjectMask(65535, "c", two_holes())],
        SIZE,
    )
    data = encode_label_map_png(lm)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    back = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16 and back.shape == (H, W)
    np.testing.assert_array_equal(back, lm)
    assert set(np.unique(back).tolist()) == {0, 1, 300, 65535}
    pil = np.asarray(Image.open(io.BytesIO(data)))
    np.testing.assert_array_equal(pil.astype(np.int64), lm.astype(np.int64))


@pytest.mark.parametrize(
    ("objects", "message"),
    [
        ([ObjectMask(1, "a", np.zeros((W, H), bool))], r"mask is 180×240 but the image is 240×180"),
        ([ObjectMask(1, "a", np.zeros((H, W, 3), bool))], r"shape \(180, 240, 3\)"),
        ([ObjectMask(0, "a", blank())], r"from 1 to 65535.*got 0"),
        ([ObjectMask(65536, "a", blank())], r"from 1 to 65535.*got 65536"),
        ([ObjectMask(-3, "a", blank())], r"got -3"),
        ([ObjectMask(2.0, "a", blank())], r"integer"),  # type: ignore[arg-type]
        ([ObjectMask(True, "a", blank())], r"integer"),
        ([ObjectMask(5, "a", blank()), ObjectMask(5, "b", blank())], r"object id 5 is used by more than one"),
    ],
)
def test_invalid_objects_raise_user_error(objects: list[ObjectMask], message: str) -> None:
    for call in (
        lambda: label_map(objects, SIZE),
        lambda: coco_instances("a.jpg", SIZE, objects, ["a", "b"]),
        lambda: yolo_lines(objects, ["a", "b"], SIZE),
        lambda: cutouts(np.zeros((H, W, 3), np.uint8), objects),
    ):
        with pytest.raises(UserError, match=message):
            call()


def test_numpy_integer_ids_are_accepted() -> None:
    lm = label_map([ObjectMask(np.uint16(40000), "a", rect(0, 0, 2, 2))], SIZE)  # type: ignore[arg-type]
    assert int(lm[0, 0]) == 40000


# --------------------------------------------------------------------------- keyhole polygons


def test_rectangle_polygon_is_its_four_pixel_edge_corners() -> None:
    (poly,) = keyhole_polygons(rect(10, 20, 40, 30))
    corners = {tuple(p) for p in np.asarray(poly).reshape(-1, 2).tolist()}
    assert corners == {(10.0, 20.0), (50.0, 20.0), (50.0, 50.0), (10.0, 50.0)}
    assert len(poly) == 8
    assert shoelace(poly) == 40 * 30  # positive: outer rings run clockwise on screen


@pytest.mark.parametrize("name", list(SHAPES))
def test_keyhole_polygons_area_is_the_pixel_count(name: str) -> None:
    mask = SHAPES[name]
    polygons = keyhole_polygons(mask)
    # Pixel-edge outlines with zero-width bridges: outer area minus hole areas, exactly.
    assert sum(shoelace(p) for p in polygons) == mask.sum()
    assert all(len(p) >= 6 and len(p) % 2 == 0 for p in polygons)


def test_keyhole_keeps_holes_in_one_polygon_per_part() -> None:
    (poly,) = keyhole_polygons(two_holes())
    assert shoelace(poly) == 60 * 60 - 2 * 100
    v = np.asarray(poly).reshape(-1, 2)
    # Hole corners are vertices of the single polygon.
    for corner in [(160, 30), (170, 40), (185, 55), (195, 65)]:
        assert (v == corner).all(axis=1).any()
    # Non-zero winding rule: 0 in the holes, 1 in the body (holes run opposite to the outer).
    assert winding_number(v, 165, 35) == 0
    assert winding_number(v, 190, 60) == 0
    assert abs(winding_number(v, 152.5, 22.5)) == 1
    assert abs(winding_number(v, 200.5, 30.5)) == 1

    (ring_poly,) = keyhole_polygons(ring())
    rv = np.asarray(ring_poly).reshape(-1, 2)
    assert winding_number(rv, 120.5, 90.5) == 0  # the centre of the hole
    assert abs(winding_number(rv, 120.5, 60.5)) == 1  # in the band

    assert len(keyhole_polygons(two_parts())) == 2
    assert keyhole_polygons(blank()) == []


@pytest.mark.parametrize("name", list(SHAPES))
def test_pycocotools_rasterises_keyhole_polygons_exactly(name: str) -> None:
    mask = SHAPES[name]
    np.testing.assert_array_equal(coco_polygons_to_mask(keyhole_polygons(mask)), mask)


def test_pycocotools_round_trip_of_random_blobs_with_holes_and_pinches() -> None:
    rng = np.random.default_rng(7)
    for _ in range(40):
        h, w = (int(v) for v in rng.integers(8, 90, 2))
        noise = cv2.GaussianBlur(rng.random((h, w)), (0, 0), float(rng.uniform(0.5, 3)))
        mask = noise > np.quantile(noise, rng.uniform(0.3, 0.7))
        polygons = keyhole_polygons(mask)
        np.testing.assert_array_equal(coco_polygons_to_mask(polygons, h, w), mask)


def test_tolerance_simplifies_and_min_area_drops_specks() -> None:
    mask = disk(80, 60, 30)
    exact = keyhole_polygons(mask)
    simple = keyhole_polygons(mask, tolerance=1.0)
    assert len(simple[0]) < len(exact[0]) / 2
    assert iou(coco_polygons_to_mask(simple), mask) > 0.97
    specks = rect(0, 0, 1, 1) | rect(100, 100, 20, 20)
    assert len(keyhole_polygons(specks)) == 2  # a single pixel has area 1
    assert len(keyhole_polygons(specks, min_area=2)) == 1


def test_twenty_megapixel_mask() -> None:
    h, w = 3648, 5472
    m = np.zeros((h, w), np.uint8)
    cv2.circle(m, (2736, 1824), 1700, 1, -1)
    cv2.circle(m, (2736, 1824), 400, 0, -1)
    mask = m.astype(bool)
    polygons = keyhole_polygons(mask)
    assert len(polygons) == 1
    assert shoelace(polygons[0]) == mask.sum()


# --------------------------------------------------------------------------- COCO


def objects_all() -> list[ObjectMask]:
    return [
        ObjectMask(1, "box", SHAPES["rectangle"], score=0.91),
        ObjectMask(2, "ball", SHAPES["disk"]),
        ObjectMask(300, "ring", SHAPES["ring"], score=0.5),
        ObjectMask(4, "", SHAPES["two_holes"]),
        ObjectMask(65535, "box", SHAPES["two_parts"]),
        ObjectMask(6, "ball", SHAPES["at_border"]),
        ObjectMask(7, "ring", blank()),  # empty: no annotation
    ]


CATS = ["box", "ball", "ring", "object"]


def load_coco(tmp_path, data: dict) -> COCO:
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return COCO(str(path))


def test_coco_rle_reads_back_bit_for_bit(tmp_path) -> None:
    objects = objects_all()
    data = coco_instances("photo.jpg", SIZE, objects, CATS, image_id=12)
    assert json.loads(json.dumps(data)) == data
    assert data["images"] == [{"id": 12, "file_name": "photo.jpg", "width": W, "height": H}]
    assert data["categories"] == [
        {"id": 1, "name": "box", "supercategory": ""},
        {"id": 2, "name": "ball", "supercategory": ""},
        {"id": 3, "name": "ring", "supercategory": ""},
        {"id": 4, "name": "object", "supercategory": ""},
    ]
    coco = load_coco(tmp_path, data)
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[12]))
    assert [a["id"] for a in anns] == [1, 2, 300, 4, 65535, 6]  # the empty object is skipped
    by_id = {o.object_id: o for o in objects}
    expected_cat = {1: 1, 2: 2, 300: 3, 4: 4, 65535: 1, 6: 2}
    for ann in anns:
        mask = by_id[ann["id"]].mask
        np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), mask)
        assert ann["area"] == int(mask.sum()) and isinstance(ann["area"], int)
        assert ann["bbox"] == numpy_bbox_xywh(mask)
        assert ann["category_id"] == expected_cat[ann["id"]]
        assert ann["iscrowd"] == 0 and ann["image_id"] == 12
        assert set(ann["segmentation"]) == {"size", "counts"} and ann["segmentation"]["size"] == [H, W]
    assert {a["id"]: a.get("score") for a in anns} == {1: 0.91, 2: None, 300: 0.5, 4: None, 65535: None, 6: None}
    assert coco.getCatIds(catNms=["ring"]) == [3]


def test_coco_polygons_keep_holes_and_parts(tmp_path) -> None:
    objects = objects_all()
    data = coco_instances("photo.jpg", SIZE, objects, CATS, segmentation="polygons")
    coco = load_coco(tmp_path, data)
    anns = {a["id"]: a for a in coco.loadAnns(coco.getAnnIds())}
    assert set(anns) == {1, 2, 300, 4, 65535, 6}
    for obj in objects[:-1]:
        ann = anns[obj.object_id]
        back = coco.annToMask(ann).astype(bool)
        # Pixel-edge vertices: pycocotools rasterises them back exactly (IoU 1.0).
        assert iou(back, obj.mask) == 1.0
        assert ann["area"] == int(obj.mask.sum()) and ann["bbox"] == numpy_bbox_xywh(obj.mask)
        assert all(isinstance(p, list) and len(p) >= 6 for p in ann["segmentation"])
    assert len(anns[65535]["segmentation"]) == 2  # two parts
    assert len(anns[300]["segmentation"]) == 1  # the ring is one keyhole polygon
    ring_back = coco.annToMask(anns[300]).astype(bool)
    hole = disk(120, 90, 20)
    assert not ring_back[hole_interior(ring(), hole)].any()
    holes = ~two_holes() & rect(150, 20, 60, 60)
    assert not coco.annToMask(anns[4]).astype(bool)[hole_interior(two_holes(), holes)].any()


@pytest.mark.parametrize(("radius", "hole"), [(20, 0), (40, 0), (40, 20)])
def test_coco_polygon_iou_with_tolerance(tmp_path, radius: int, hole: int) -> None:
    mask = disk(120, 90, radius, hole=hole)
    data = coco_instances("a.png", SIZE, [ObjectMask(1, "a", mask)], ["a"], segmentation="polygons", tolerance=1.0)
    coco = load_coco(tmp_path, data)
    back = coco.annToMask(coco.loadAnns([1])[0]).astype(bool)
    # tolerance=1 px keeps ~1/8 of the vertices; IoU measured on the development VM:
    # 0.9645 (r=20), 0.9874 (r=40), 0.9713 (ring 40/20); 1.0 with tolerance 0 or 0.5.
    assert iou(back, mask) >= 0.95
    if hole:
        assert not back[hole_interior(mask, disk(120, 90, hole))].any()


def test_coco_errors() -> None:
    objects = [ObjectMask(1, "cat", rect(0, 0, 4, 4))]
    with pytest.raises(UserError, match=r"label 'cat' is not one of the categories \('dog'\)"):
        coco_instances("a.jpg", SIZE, objects, ["dog"])
    with pytest.raises(UserError, match="not one of the categories"):
        yolo_lines(objects, ["dog"], SIZE)
    with pytest.raises(UserError, match="'rle' or 'polygons'"):
        coco_instances("a.jpg", SIZE, objects, ["cat"], segmentation="mask")
    with pytest.raises(UserError, match="unique"):
        coco_instances("a.jpg", SIZE, objects, ["cat", "dog", "cat"])
    with pytest.raises(UserError, match="image_id"):
        coco_instances("a.jpg", SIZE, objects, ["cat"], image_id=0)
    # An empty label is the "object" category.
    data = coco_instances("a.jpg", SIZE, [ObjectMask(1, " ", rect(0, 0, 4, 4))], ["object"])
    assert data["annotations"][0]["category_id"] == 1


# --------------------------------------------------------------------------- YOLO


NUMBER = re.compile(r"^\d\.\d{6}$")


def test_yolo_rectangle_line_is_its_normalised_corners() -> None:
    (line,) = yolo_lines([ObjectMask(1, "b", rect(10, 20, 40, 30))], ["a", "b"], SIZE)
    fields = line.split()
    assert fields[0] == "1"
    assert all(NUMBER.match(f) for f in fields[1:])
    cls, vertices = parse_yolo_line(line, SIZE)
    assert cls == 1
    got = {(round(x, 3), round(y, 3)) for x, y in vertices}
    assert got == {(10.0, 20.0), (50.0, 20.0), (50.0, 50.0), (10.0, 50.0)}
    for x, y in vertices:  # 6-decimal rounding of x / W, y / H
        assert abs(x - round(x)) <= 0.5e-6 * W and abs(y - round(y)) <= 0.5e-6 * H


@pytest.mark.parametrize("name", list(SHAPES))
def test_yolo_lines_parse_back_to_the_mask(name: str) -> None:
    mask = SHAPES[name]
    (line,) = yolo_lines([ObjectMask(9, "x", mask)], ["w", "x"], SIZE)
    values = [float(v) for v in line.split()[1:]]
    assert all(0.0 <= v <= 1.0 for v in values)
    cls, vertices = parse_yolo_line(line, SIZE)
    assert cls == 1
    v = np.asarray(vertices)
    np.testing.assert_allclose(v[:, 0] / W, values[0::2], atol=1e-12)
    np.testing.assert_allclose(v[:, 1] / H, values[1::2], atol=1e-12)
    # ONE polygon (parts joined, holes spliced) that pycocotools still rasterises exactly.
    np.testing.assert_array_equal(coco_polygons_to_mask([v.reshape(-1).tolist()]), mask)
    # cv2.fillPoly (what ultralytics' polygon2mask uses) reads vertices as pixel centres:
    # the shape grows by up to a pixel right/down, and bridges between parts draw a thin line.
    filled = np.zeros((H, W), np.uint8)
    cv2.fillPoly(filled, [np.round(v).astype(np.int32)], 1)
    filled_b = filled.astype(bool)
    assert not (mask & ~filled_b).any()
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    if name not in ("two_parts", "at_border"):  # one part: no bridge across the background
        assert not (filled_b & ~grown).any()


def test_yolo_keyhole_leaves_the_hole_empty_under_fillpoly() -> None:
    for mask, hole in ((ring(), disk(120, 90, 20)), (two_holes(), ~two_holes() & rect(150, 20, 60, 60))):
        (line,) = yolo_lines([ObjectMask(1, "a", mask)], ["a"], SIZE)
        _, vertices = parse_yolo_line(line, SIZE)
        v = np.asarray(vertices)
        filled = np.zeros((H, W), np.uint8)
        cv2.fillPoly(filled, [np.round(v).astype(np.int32)], 1)
        assert not filled.astype(bool)[hole_interior(mask, hole)].any()
        assert iou(filled.astype(bool), mask) > 0.9  # measured 0.939 for the ring (1 px growth)
        # The non-zero winding rule agrees: holes run opposite to the outline.
        ys, xs = np.nonzero(hole_interior(mask, hole))
        assert all(winding_number(v, x + 0.5, y + 0.5) == 0 for x, y in zip(xs[::7], ys[::7], strict=True))


def test_cv2_fillpoly_fills_by_parity() -> None:
    # Why the keyhole works with fillPoly whatever the orientation: OpenCV fills a
    # self-overlapping polygon by the even-odd rule (two same-direction squares joined
    # by a bridge leave their overlap empty), not by non-zero winding.
    a = np.array([[10, 10], [50, 10], [50, 50], [10, 50]])
    b = a + 20
    img = np.zeros((80, 80), np.uint8)
    cv2.fillPoly(img, [np.concatenate([a, a[:1], b, b[:1]]).astype(np.int32)], 1)
    assert img[40, 40] == 0 and img[20, 20] == 1 and img[60, 60] == 1


def test_yolo_lines_classes_order_and_empty_masks() -> None:
    objects = [
        ObjectMask(1, "cat", rect(0, 0, 5, 5)),
        ObjectMask(2, "dog", blank()),
        ObjectMask(3, "", rect(20, 20, 5, 5)),
        ObjectMask(4, "dog", ring()),
    ]
    lines = yolo_lines(objects, ["dog", "cat", "object"], SIZE)
    assert [int(line.split()[0]) for line in lines] == [1, 2, 0]
    assert yolo_lines([], ["dog"], SIZE) == []


def test_yolo_object_touching_the_border_reaches_0_and_1() -> None:
    (line,) = yolo_lines([ObjectMask(1, "a", at_border())], ["a"], SIZE)
    values = [float(v) for v in line.split()[1:]]
    xs, ys = values[0::2], values[1::2]
    assert min(xs) == 0.0 and min(ys) == 0.0 and max(xs) == 1.0 and max(ys) == 1.0


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("", "empty"),
        ("cat 0.1 0.1 0.2 0.1 0.2 0.2", "integer"),
        ("-1 0.1 0.1 0.2 0.1 0.2 0.2", ">= 0"),
        ("0 0.1 0.1 0.2 0.1 0.2", "even number"),
        ("0 0.1 0.1 0.2 0.1", "at least 3"),
        ("0 0.1 0.1 0.2 0.1 0.2 x", "numbers"),
        ("0 0.1 0.1 1.2 0.1 0.2 0.2", r"\[0, 1\]"),
        ("0 0.1 nan 0.2 0.1 0.2 0.2", r"\[0, 1\]"),
    ],
)
def test_parse_yolo_line_rejects_malformed_lines(line: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        parse_yolo_line(line, SIZE)


def test_parse_yolo_line_scales_to_pixels() -> None:
    cls, vertices = parse_yolo_line("3 0.5 0.25 1 0 0 1\n", SIZE)
    assert cls == 3
    assert vertices == [(W / 2, H / 4), (float(W), 0.0), (0.0, float(H))]


# --------------------------------------------------------------------------- cut-outs


def test_cutouts_are_bbox_crops_with_mask_alpha() -> None:
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    objects = [ObjectMask(5, "a", ring()), ObjectMask(2, "b", blank()), ObjectMask(9, "c", at_border())]
    out = cutouts(rgb, objects)
    assert [oid for oid, _ in out] == [5, 9]
    for (oid, rgba), mask in zip(out, (ring(), at_border()), strict=True):
        x, y, w, h = numpy_bbox_xywh(mask)
        assert rgba.dtype == np.uint8 and rgba.shape == (h, w, 4), oid
        crop = mask[y : y + h, x : x + w]
        np.testing.assert_array_equal(rgba[..., 3], np.where(crop, 255, 0))
        np.testing.assert_array_equal(rgba[..., :3][crop], rgb[y : y + h, x : x + w][crop])


def test_cutouts_reject_a_wrong_image() -> None:
    with pytest.raises(UserError, match=r"\(H, W, 3\) uint8"):
        cutouts(np.zeros((H, W), np.uint8), [])
    with pytest.raises(UserError, match="mask is"):
        cutouts(np.zeros((H + 1, W, 3), np.uint8), [ObjectMask(1, "a", ring())])
