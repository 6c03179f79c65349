"""Tests for sam_core.core.evaluation on hand-made masks (pixel coords: x right, y down)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from sam_core.core.errors import PromptError
from sam_core.core.evaluation import (
    BOUNDARY_TOLERANCE,
    ClickCurve,
    boundary_f,
    boundary_tolerance_px,
    dice,
    interior_point,
    iou,
    jitter_box,
    mask_box,
    next_click,
    noc,
    prompts_from_reference,
    scale_box,
    simulate_clicks,
)
from sam_core.core.geometry import mask_bbox
from sam_core.core.prompts import Prompts
from sam_core.core.sizes import ImageSize


def rect(h: int, w: int, x: int, y: int, rw: int, rh: int) -> np.ndarray:
    """(h, w) bool with a filled rw x rh rectangle whose top-left pixel is (x, y)."""
    m = np.zeros((h, w), dtype=bool)
    m[y : y + rh, x : x + rw] = True
    return m


def disk(h: int, w: int, cx: int, cy: int, r: int) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    cv2.circle(m, (cx, cy), r, 1, -1)
    return m.astype(bool)


def at(mask: np.ndarray, x: float, y: float) -> bool:
    """The mask value at the pixel containing the continuous point (x, y)."""
    return bool(mask[int(math.floor(y)), int(math.floor(x))])


# --------------------------------------------------------------------------- iou / dice
def test_iou_and_dice_of_overlapping_rectangles():
    a = rect(40, 60, 10, 10, 20, 10)  # 200 px
    b = rect(40, 60, 20, 10, 20, 10)  # 200 px, overlap 10 x 10 = 100
    assert iou(a, b) == pytest.approx(100 / 300)
    assert dice(a, b) == pytest.approx(2 * 100 / 400)
    assert iou(a, a) == dice(a, a) == 1.0
    assert iou(a.astype(np.uint8) * 255, b) == pytest.approx(1 / 3)  # any dtype, read as != 0


def test_iou_and_dice_empty_cases_and_shape_check():
    empty = np.zeros((8, 8), bool)
    full = np.ones((8, 8), bool)
    assert iou(empty, empty) == dice(empty, empty) == 1.0
    assert iou(empty, full) == dice(full, empty) == 0.0
    with pytest.raises(ValueError, match="same shape"):
        iou(empty, np.zeros((8, 9), bool))
    with pytest.raises(ValueError, match="2-D"):
        dice(np.zeros((2, 8, 8), bool), empty)


# --------------------------------------------------------------------------- boundary F
def brute_boundary_f(pred: np.ndarray, ref: np.ndarray, tol: float) -> float:
    """The definition, written out: inner 4-neighbour boundaries (frame not a boundary), all-pairs distances."""

    def boundary(m: np.ndarray) -> np.ndarray:
        p = np.pad(m, 1, mode="edge")
        nb_bg = ~p[:-2, 1:-1] | ~p[2:, 1:-1] | ~p[1:-1, :-2] | ~p[1:-1, 2:]
        return np.argwhere(m & nb_bg).astype(float)

    bp, br = boundary(pred), boundary(ref)
    if len(bp) == 0 and len(br) == 0:
        return 1.0
    if len(bp) == 0 or len(br) == 0:
        return 0.0
    d = np.sqrt(((bp[:, None, :] - br[None, :, :]) ** 2).sum(-1))
    precision = np.mean(d.min(1) <= tol)
    recall = np.mean(d.min(0) <= tol)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def test_boundary_tolerance_follows_davis():
    assert BOUNDARY_TOLERANCE == 0.008
    assert boundary_tolerance_px(ImageSize(640, 480)) == 7  # ceil(0.008 * 800 = 6.4)
    assert boundary_tolerance_px(ImageSize(100, 100)) == 2  # ceil(1.13)
    assert boundary_tolerance_px(ImageSize(3, 4)) == 1  # never 0


def test_boundary_f_equal_masks_and_empty_cases():
    sq = rect(100, 100, 30, 30, 20, 20)
    assert boundary_f(sq, sq) == 1.0
    empty = np.zeros_like(sq)
    assert boundary_f(empty, empty) == 1.0
    assert boundary_f(sq, empty) == boundary_f(empty, sq) == 0.0


def test_boundary_f_shift_within_tolerance_is_perfect_and_beyond_drops():
    ref = rect(100, 100, 30, 30, 20, 20)  # default tolerance 2 px for 100 x 100
    assert boundary_f(np.roll(ref, 2, axis=1), ref) == 1.0
    assert boundary_f(np.roll(ref, (1, -1), axis=(1, 0)), ref) == 1.0  # corners move sqrt(2) px
    shifted = np.roll(ref, 6, axis=1)
    f6 = boundary_f(shifted, ref)
    assert 0.0 < f6 < 0.8
    assert boundary_f(shifted, ref, tolerance_px=6) == 1.0
    assert boundary_f(np.roll(ref, 10, axis=1), ref) < f6  # more shift, lower F
    # a shift of 3 px is beyond the 2-px tolerance: the two vertical sides miss
    assert boundary_f(np.roll(ref, 3, axis=1), ref) < 1.0


@pytest.mark.parametrize("seed", range(4))
def test_boundary_f_matches_the_definition(seed):
    rng = np.random.default_rng(seed)
    h, w = 40, 50
    ref = disk(h, w, 20, 18, 11) | rect(h, w, 0, 30, 15, 10)  # touches the image frame
    pred = disk(h, w, 20 + int(rng.integers(-4, 5)), 18 + int(rng.integers(-4, 5)), int(rng.integers(6, 14)))
    pred[rng.random((h, w)) < 0.02] = True  # speckles: isolated boundary pixels
    for tol in (1.0, 1.5, 3.0):
        assert boundary_f(pred, ref, tol) == pytest.approx(brute_boundary_f(pred, ref, tol))
    assert boundary_f(pred, ref) == pytest.approx(brute_boundary_f(pred, ref, boundary_tolerance_px(ImageSize(w, h))))


def test_image_frame_is_not_a_boundary():
    left = rect(30, 40, 0, 0, 20, 30)  # the left half: its only boundary is the column x = 19
    assert boundary_f(left, left) == 1.0
    assert boundary_f(np.ones((30, 40), bool), np.ones((30, 40), bool)) == 1.0  # no boundary at all
    assert boundary_f(np.ones((30, 40), bool), left) == 0.0


# --------------------------------------------------------------------------- boxes and interior points
def test_mask_box_agrees_with_geometry():
    m = rect(50, 60, 7, 11, 13, 5)
    assert mask_box(m) == (7.0, 11.0, 20.0, 16.0) == tuple(float(v) for v in mask_bbox(m))
    assert mask_box(np.zeros((5, 5), bool)) is None


def test_interior_point_of_a_square_is_its_centre():
    m = rect(60, 80, 10, 20, 11, 11)  # spans x in [10, 21), y in [20, 31)
    assert interior_point(m) == (15.5, 25.5)
    assert interior_point(np.ones((11, 11), bool)) == (5.5, 5.5)  # the image border counts as boundary
    assert interior_point(rect(60, 80, 0, 0, 11, 11)) == (5.5, 5.5)  # not pushed into the corner
    assert interior_point(np.zeros((5, 5), bool)) is None


def test_interior_point_of_a_rectangle_is_on_its_middle_row_first_of_the_ties():
    # 21 x 11: every pixel of the middle row from x = 15 to 25 is 6 px from the boundary; the first wins
    m = rect(60, 80, 10, 20, 21, 11)
    assert interior_point(m) == (15.5, 25.5)
    # 10 x 4 (even) at x = 4..13, y = 6..9: distance 2 on rows 7 and 8, x = 5..12; row-major order picks (5, 7)
    assert interior_point(rect(30, 30, 4, 6, 10, 4)) == (5.5, 7.5)


def test_interior_point_of_an_l_shape_lies_in_the_thick_part():
    thick = rect(100, 120, 10, 10, 30, 30)
    arm = rect(100, 120, 40, 32, 70, 8)  # a long thin arm to the right
    x, y = interior_point(thick | arm)
    assert 10 <= x < 40 and 10 <= y < 40
    assert (x, y) == interior_point(thick)


# --------------------------------------------------------------------------- next_click
def test_next_click_on_a_missed_rectangle_clicks_its_centre_with_label_1():
    ref = rect(80, 100, 10, 10, 60, 50)
    missed = rect(80, 100, 30, 20, 9, 9)  # x in [30, 39), y in [20, 29)
    assert next_click(ref & ~missed, ref) == (34.5, 24.5, 1)


def test_next_click_on_a_false_blob_clicks_inside_it_with_label_0():
    ref = rect(80, 100, 10, 10, 30, 30)
    blob = disk(80, 100, 70, 55, 8)
    x, y, label = next_click(ref | blob, ref)
    assert label == 0 and at(blob, x, y)
    assert (x, y) == (70.5, 55.5)


def test_next_click_picks_the_bigger_error_and_ties_go_to_missed():
    ref = rect(80, 100, 5, 5, 40, 40)
    small_miss = rect(80, 100, 10, 10, 5, 5)
    big_false = rect(80, 100, 60, 40, 15, 15)
    small_false = rect(80, 100, 60, 40, 5, 5)
    big_miss = rect(80, 100, 15, 15, 15, 15)
    x, y, label = next_click((ref & ~small_miss) | big_false, ref)
    assert label == 0 and at(big_false, x, y)
    x, y, label = next_click((ref & ~big_miss) | small_false, ref)
    assert label == 1 and at(big_miss, x, y)
    x, y, label = next_click((ref & ~small_miss) | small_false, ref)  # equal 5 x 5 errors
    assert label == 1 and at(small_miss, x, y)


def test_next_click_none_when_equal_and_interior_point_when_pred_is_empty():
    ref = disk(50, 60, 30, 20, 9)
    assert next_click(ref, ref) is None
    x, y, label = next_click(np.zeros_like(ref), ref)
    assert (x, y) == interior_point(ref) and label == 1


def test_next_click_crop_agrees_with_full_image_distance_transform():
    rng = np.random.default_rng(1)
    ref = disk(60, 70, 35, 30, 20)
    pred = disk(60, 70, 30 + int(rng.integers(0, 10)), 28, 18) | (rng.random((60, 70)) < 0.05)
    fn, fp = ref & ~pred, pred & ~ref
    dts = [cv2.distanceTransform(np.pad(e, 1).astype(np.uint8), cv2.DIST_L2, 0)[1:-1, 1:-1] for e in (fn, fp)]
    label = 1 if dts[0].max() >= dts[1].max() else 0
    dt = dts[0] if label == 1 else dts[1]
    row, col = np.argwhere(dt == dt.max())[0]
    assert next_click(pred, ref) == (col + 0.5, row + 0.5, label)


# --------------------------------------------------------------------------- noc
def test_noc_convention():
    assert noc([0.5, 0.86, 0.95], 0.85) == 2
    assert noc([0.5, 0.86, 0.95], 0.90) == 3
    assert noc([0.1] * 5, 0.85, max_clicks=5) == 5
    assert noc([0.0, 0.0, 1.0], 0.85, max_clicks=2) == 2  # values past the budget do not count
    assert noc([0.9], 0.85) == 1


# --------------------------------------------------------------------------- simulate_clicks
def disk_predictor(shape: tuple[int, int], radius: int, calls: list, box_mask: np.ndarray | None = None):
    """A fake model: the box gives `box_mask`, each fg click adds a disk, each bg click removes one."""

    def predict(prompts: Prompts, logits):
        calls.append((prompts, logits))
        m = np.zeros(shape, np.uint8)
        if prompts.box is not None and box_mask is not None:
            m[box_mask] = 1
        for x, y, label in prompts.points:
            cv2.circle(m, (int(x), int(y)), radius, int(label), -1)
        return m.astype(bool), np.full((256, 256), float(len(calls)), np.float32)

    return predict


def test_simulate_clicks_one_disk_needs_one_click():
    ref = disk(61, 71, 35, 30, 9)
    calls: list = []
    curve = simulate_clicks(disk_predictor(ref.shape, 9, calls), ref)
    assert isinstance(curve, ClickCurve)
    assert curve.ious == (1.0,) * 20 and curve.noc85 == curve.noc90 == 1
    assert curve.clicks == ((35.5, 30.5, 1),)
    assert len(calls) == 1 and calls[0][1] is None  # stopped once pred == ref


def test_simulate_clicks_two_disks_need_two_clicks_and_pass_logits_back():
    ref = disk(80, 100, 25, 20, 8) | disk(80, 100, 70, 55, 8)
    calls: list = []
    curve = simulate_clicks(disk_predictor(ref.shape, 8, calls), ref, max_clicks=6)
    assert curve.ious == (0.5, 1.0, 1.0, 1.0, 1.0, 1.0)
    assert (curve.noc85, curve.noc90) == (2, 2)
    assert curve.clicks == ((25.5, 20.5, 1), (70.5, 55.5, 1))
    assert [len(p.points) for p, _ in calls] == [1, 2]
    assert calls[0][1] is None and np.all(calls[1][1] == 1.0)  # the logits of call 1 come back as mask_input


def test_simulate_clicks_from_a_box_removes_a_false_blob_with_a_background_click():
    ref = disk(80, 100, 25, 25, 10)
    blob = rect(80, 100, 66, 51, 9, 9)  # centre pixel (70, 55)
    calls: list = []
    box = Prompts.parse(box=mask_box(ref))
    curve = simulate_clicks(disk_predictor(ref.shape, 7, calls, box_mask=ref | blob), ref, max_clicks=4, start=box)
    assert calls[0][0] == box and calls[0][1] is None  # the start prediction is not a click
    assert curve.clicks == ((70.5, 55.5, 0),)
    assert curve.ious == (1.0,) * 4 and curve.noc90 == 1
    assert calls[1][0].box == box.box


def test_simulate_clicks_that_never_converge_use_the_whole_budget():
    ref = rect(30, 40, 5, 5, 10, 10)
    calls: list = []

    def stubborn(prompts, logits):
        calls.append(prompts)
        return np.zeros(ref.shape, bool), None

    curve = simulate_clicks(stubborn, ref, max_clicks=5)
    assert curve.ious == (0.0,) * 5 and curve.noc85 == curve.noc90 == 5
    assert len(curve.clicks) == 5 and len(calls[-1].points) == 5
    with pytest.raises(ValueError, match="max_clicks"):
        simulate_clicks(stubborn, ref, max_clicks=0)


def test_simulate_clicks_checks_the_predicted_shape():
    ref = rect(30, 40, 5, 5, 10, 10)
    with pytest.raises(ValueError, match="shape"):
        simulate_clicks(lambda p, lg: (np.zeros((10, 10), bool), None), ref, max_clicks=2)


# --------------------------------------------------------------------------- prompts from a reference
def test_prompts_from_reference_modes():
    ref = rect(60, 80, 10, 20, 11, 11)
    assert prompts_from_reference(ref, "box") == Prompts((), (10.0, 20.0, 21.0, 31.0))
    assert prompts_from_reference(ref, "center") == Prompts(((15.5, 25.5, 1),), None)
    both = prompts_from_reference(ref, "box+center")
    assert both.points == ((15.5, 25.5, 1),) and both.box == (10.0, 20.0, 21.0, 31.0)
    both.validate(80, 60)
    with pytest.raises(PromptError, match="empty"):
        prompts_from_reference(np.zeros((5, 5), bool), "box")
    with pytest.raises(PromptError, match="mode"):
        prompts_from_reference(ref, "points")


def test_prompts_from_reference_jitter_is_reproducible_and_clipped():
    ref = rect(60, 80, 0, 0, 30, 20)  # at the top-left corner: jitter must be clipped
    a = prompts_from_reference(ref, "box", box_noise=0.3, rng=np.random.default_rng(7))
    b = prompts_from_reference(ref, "box", box_noise=0.3, rng=np.random.default_rng(7))
    c = prompts_from_reference(ref, "box", box_noise=0.3, rng=np.random.default_rng(8))
    assert a == b and a.box != c.box and a.box != (0.0, 0.0, 30.0, 20.0)
    a.validate(80, 60)
    with pytest.raises(ValueError, match="rng"):
        prompts_from_reference(ref, "box", box_noise=0.1)


def test_jitter_box_stays_inside_and_non_degenerate():
    size = ImageSize(50, 40)
    assert jitter_box((5, 6, 25, 16), 0.0, np.random.default_rng(0), size) == (5.0, 6.0, 25.0, 16.0)
    rng = np.random.default_rng(0)
    boxes = np.array([jitter_box((5, 6, 25, 16), 3.0, rng, size) for _ in range(300)])
    assert (boxes[:, [0, 2]] >= 0).all() and (boxes[:, [0, 2]] <= 50).all()
    assert (boxes[:, [1, 3]] >= 0).all() and (boxes[:, [1, 3]] <= 40).all()
    assert (boxes[:, 2] - boxes[:, 0] >= 1).all() and (boxes[:, 3] - boxes[:, 1] >= 1).all()
    assert len({tuple(b) for b in boxes}) > 250  # really random
    # small noise: the spread of each edge follows noise * side length (20 px wide, 10 px tall)
    rng = np.random.default_rng(1)
    d = np.array([jitter_box((15, 15, 35, 25), 0.05, rng, size) for _ in range(2000)]) - (15, 15, 35, 25)
    assert d.std(axis=0) == pytest.approx([1.0, 0.5, 1.0, 0.5], rel=0.1)


def test_scale_box_about_its_centre_and_clipped():
    size = ImageSize(100, 80)
    assert scale_box((10, 10, 30, 20), 2.0, size) == (0.0, 5.0, 40.0, 25.0)
    assert scale_box((10, 10, 30, 20), 0.5, size) == (15.0, 12.5, 25.0, 17.5)
    assert scale_box((0, 0, 10, 10), 3.0, size) == (0.0, 0.0, 20.0, 20.0)
    assert scale_box((90, 70, 100, 80), 5.0, size) == (70.0, 50.0, 100.0, 80.0)
    with pytest.raises(ValueError, match="factor"):
        scale_box((0, 0, 10, 10), 0.0, size)


# --------------------------------------------------------------------------- with the real test-tiny model
@pytest.mark.slow  # 21 decoder runs (~0.3 s each on a busy 2-core CPU)
def test_simulate_clicks_with_test_tiny(tiny_segmenter):
    from synth import photo_like

    image = photo_like(48, 64)
    h, w = image.shape[:2]
    ref = disk(h, w, 30, 22, 12)
    emb, _ = tiny_segmenter.embed(image)
    masks: list[np.ndarray] = []

    def predict(prompts: Prompts, logits: np.ndarray | None):
        res = tiny_segmenter.decode(emb, prompts, multimask=logits is None, mask_input=logits)
        i = res.best_index
        masks.append(res.full_mask(i))
        return masks[-1], res.low_res_logits[i]

    start = prompts_from_reference(ref, "box")
    curve = simulate_clicks(predict, ref, max_clicks=20, start=start)
    assert len(curve.ious) == 20 and all(0.0 <= v <= 1.0 for v in curve.ious)
    assert curve.noc85 == noc(curve.ious, 0.85) and curve.noc90 == noc(curve.ious, 0.90)
    n = len(curve.clicks)
    assert 1 <= n <= 20 and len(masks) == n + 1
    assert list(curve.ious[:n]) == [iou(m, ref) for m in masks[1:]]
    for k, (x, y, label) in enumerate(curve.clicks):
        assert 0 <= x <= w and 0 <= y <= h
        assert at(ref, x, y) == (label == 1)  # fg clicks on missed pixels, bg clicks on false ones
        assert at(masks[k], x, y) != (label == 1)  # ... that the prediction before the click got wrong
