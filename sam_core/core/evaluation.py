"""Mask quality metrics, prompts derived from a reference mask, and the click simulator.

The evaluation core of batch studies; pure numpy + OpenCV (no torch).

Conventions:

* Masks are 2-D arrays of shape ``(H, W)``; any dtype is read as ``mask != 0``.
* Coordinates are full-image pixels: ``x`` is the column (to the right), ``y`` the row (down).
  Pixel ``(col, row)`` covers ``[col, col + 1) x [row, row + 1)``.
* Boxes are half-open pixel-edge boxes ``(x1, y1, x2, y2)`` (as :func:`geometry.mask_bbox`
  and SAM box prompts), so ``x2 - x1`` is the width in pixels.
* Points (clicks, interior points) are returned at the pixel *centre*:
  ``x = col + 0.5``, ``y = row + 0.5``. SAM takes continuous coordinates, and the centre is
  the point that stands for the pixel (the integer index would be its top-left corner).
* Distances are exact Euclidean distances between pixel centres
  (``cv2.distanceTransform`` with ``DIST_L2`` / ``DIST_MASK_PRECISE``).

Work is done on bounding-box crops wherever that gives the same answer, so the cost scales
with the objects, not with the image.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .errors import PromptError
from .geometry import bbox_tuple
from .prompts import MAX_POINTS, Box, Point, Prompts
from .sizes import ImageSize

__all__ = [
    "BOUNDARY_TOLERANCE",
    "PROMPT_MODES",
    "ClickCurve",
    "Predict",
    "boundary_f",
    "boundary_tolerance_px",
    "dice",
    "interior_point",
    "iou",
    "jitter_box",
    "mask_box",
    "next_click",
    "noc",
    "prompts_from_reference",
    "scale_box",
    "simulate_clicks",
]

BOUNDARY_TOLERANCE: float = 0.008
"""Boundary-F tolerance as a fraction of the image diagonal (the DAVIS protocol's 0.008)."""

PROMPT_MODES = ("box", "center", "box+center")
"""Modes of :func:`prompts_from_reference`."""

Predict = Callable[[Prompts, np.ndarray | None], tuple[np.ndarray, np.ndarray | None]]
"""``predict(prompts, prev_low_res_logits) -> (mask (H, W) bool, low_res_logits (256, 256) or None)``."""


# --------------------------------------------------------------------------- helpers
def _as_bool(mask: np.ndarray, what: str = "mask") -> np.ndarray:
    """``mask`` as a 2-D bool array (no copy when it already is one)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"{what} must be 2-D (H, W), got shape {mask.shape}")
    return mask if mask.dtype == np.bool_ else mask != 0


def _pair(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, r = _as_bool(pred, "pred"), _as_bool(ref, "ref")
    if p.shape != r.shape:
        raise ValueError(f"pred and ref must have the same shape, got {p.shape} and {r.shape}")
    return p, r


def _farthest_from_boundary(mask: np.ndarray) -> tuple[float, int, int] | None:
    """``(distance, row, col)`` of the pixel of a bool ``(H, W)`` mask farthest from its boundary.

    The distance (pixel centre to the nearest background pixel centre, Euclidean) is taken on
    the mask padded by 1 px of background, so the image border counts as boundary; a lone
    pixel has distance 1. Ties go to the first pixel in row-major order. ``None`` when empty.
    Computed on the bounding-box crop (padded by 1 px): every pixel outside it is background
    or border, and the nearest of those is always on the padding ring, so the result is exact.
    """
    box = bbox_tuple(mask)
    if box is None:
        return None
    x1, y1, x2, y2 = box
    crop = np.zeros((y2 - y1 + 2, x2 - x1 + 2), np.uint8)
    crop[1:-1, 1:-1] = mask[y1:y2, x1:x2]
    dist = cv2.distanceTransform(crop, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    flat = int(np.argmax(dist))  # first maximum in row-major order
    row, col = divmod(flat, dist.shape[1])
    return float(dist.flat[flat]), y1 + row - 1, x1 + col - 1


def _inner_boundary(mask: np.ndarray) -> np.ndarray:
    """1-px inner boundary of a ``uint8`` 0/1 mask: foreground pixels with a background 4-neighbour.

    Pixels beyond the image border count as foreground (OpenCV's default erosion border), so
    the image frame is not an object boundary, as in DAVIS ``seg2bmap``.
    """
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    eroded = cv2.erode(mask, cross)
    out: np.ndarray = (mask != 0) & (eroded == 0)
    return out


def _within(boundary: np.ndarray, other: np.ndarray, tol: float) -> int:
    """How many ``boundary`` pixels lie within ``tol`` px (Euclidean) of an ``other`` pixel."""
    if not other.any():
        return 0
    dist = cv2.distanceTransform((~other).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return int(np.count_nonzero(dist[boundary] <= tol))


# --------------------------------------------------------------------------- region metrics
def iou(pred: np.ndarray, ref: np.ndarray) -> float:
    """Intersection over union (Jaccard, DAVIS J) of two ``(H, W)`` masks; 1.0 when both are empty."""
    p, r = _pair(pred, ref)
    union = np.count_nonzero(p | r)
    if union == 0:
        return 1.0
    return np.count_nonzero(p & r) / union


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice coefficient ``2|P∩R| / (|P| + |R|)`` of two ``(H, W)`` masks; 1.0 when both are empty."""
    p, r = _pair(pred, ref)
    total = np.count_nonzero(p) + np.count_nonzero(r)
    if total == 0:
        return 1.0
    return 2 * np.count_nonzero(p & r) / total


# --------------------------------------------------------------------------- boundary F
def boundary_tolerance_px(size: ImageSize) -> int:
    """DAVIS boundary tolerance in px: ``ceil(BOUNDARY_TOLERANCE * diagonal)`` (0.008 of the diagonal), at least 1."""
    return max(1, math.ceil(BOUNDARY_TOLERANCE * math.hypot(size.width, size.height)))


def boundary_f(pred: np.ndarray, ref: np.ndarray, tolerance_px: float | None = None) -> float:
    """Boundary F-measure (DAVIS F) of two ``(H, W)`` masks.

    Boundaries are the 1-px inner contours (foreground pixels with a background 4-neighbour;
    the image frame is not a boundary, as in DAVIS). Precision is the fraction of ``pred``
    boundary pixels within ``tolerance_px`` (Euclidean, pixel centres) of a ``ref`` boundary
    pixel, recall the fraction of ``ref`` boundary pixels within it of a ``pred`` one, and
    ``F = 2PR / (P + R)``. Default tolerance: :func:`boundary_tolerance_px`, i.e.
    ``ceil(0.008 * image diagonal)`` (``BOUNDARY_TOLERANCE``). Both boundaries empty -> 1.0;
    one empty -> 0.0.
    """
    p, r = _pair(pred, ref)
    h, w = p.shape
    tol = float(boundary_tolerance_px(ImageSize(w, h)) if tolerance_px is None else tolerance_px)
    if not tol >= 0:
        raise ValueError(f"tolerance_px must be >= 0, got {tolerance_px!r}")
    box = bbox_tuple(p | r)
    if box is None:
        return 1.0
    # Crop to the union's bbox plus a margin: boundaries and distances within tol are unchanged.
    pad = int(math.ceil(tol)) + 1
    x1, y1 = max(box[0] - pad, 0), max(box[1] - pad, 0)
    x2, y2 = min(box[2] + pad, w), min(box[3] + pad, h)
    pb = _inner_boundary(np.ascontiguousarray(p[y1:y2, x1:x2]).view(np.uint8))
    rb = _inner_boundary(np.ascontiguousarray(r[y1:y2, x1:x2]).view(np.uint8))
    n_p, n_r = np.count_nonzero(pb), np.count_nonzero(rb)
    if n_p == 0 and n_r == 0:
        return 1.0
    if n_p == 0 or n_r == 0:
        return 0.0
    precision = _within(pb, rb, tol) / n_p
    recall = _within(rb, pb, tol) / n_r
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


# --------------------------------------------------------------------------- prompts from a reference
def mask_box(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """Half-open pixel-edge box ``(x1, y1, x2, y2)`` of an ``(H, W)`` mask (as ``geometry.mask_bbox``), or None."""
    box = bbox_tuple(_as_bool(mask))
    return None if box is None else (float(box[0]), float(box[1]), float(box[2]), float(box[3]))


def interior_point(mask: np.ndarray) -> tuple[float, float] | None:
    """``(x, y)`` of the pixel of an ``(H, W)`` mask farthest from its boundary; None if empty.

    Distance transform of the mask padded by 1 px of background (the image border counts as
    boundary). Returned at the pixel centre, ``x = col + 0.5``, ``y = row + 0.5``. Ties: the
    first pixel in row-major order (so an even-sized rectangle gives a point 0.5 px up/left
    of its exact centre).
    """
    found = _farthest_from_boundary(_as_bool(mask))
    if found is None:
        return None
    _, row, col = found
    return col + 0.5, row + 0.5


def _span(lo: float, hi: float, limit: int) -> tuple[float, float]:
    """Sorted ``lo, hi`` clipped to ``[0, limit]`` and widened to at least 1 px, kept inside."""
    lo, hi = min(lo, hi), max(lo, hi)
    lo, hi = min(max(lo, 0.0), float(limit)), min(max(hi, 0.0), float(limit))
    if hi - lo < 1.0:
        lo = min(max((lo + hi) / 2 - 0.5, 0.0), float(limit) - 1.0)
        hi = lo + 1.0
    return lo, hi


def _check_size(size: ImageSize) -> None:
    if size.width < 1 or size.height < 1:
        raise ValueError(f"image size must be at least 1x1, got {size}")


def scale_box(box: Sequence[float], factor: float, size: ImageSize) -> Box:
    """Scale a box ``(x1, y1, x2, y2)`` about its centre by ``factor`` (> 0), clipped to ``[0, W] x [0, H]``.

    The result keeps at least 1 px per side (a box of a zero-width strip at the border is widened inward).
    """
    _check_size(size)
    if not (math.isfinite(factor) and factor > 0):
        raise ValueError(f"factor must be a finite number > 0, got {factor!r}")
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2 * factor, (y2 - y1) / 2 * factor
    nx1, nx2 = _span(cx - hw, cx + hw, size.width)
    ny1, ny2 = _span(cy - hh, cy + hh, size.height)
    return nx1, ny1, nx2, ny2


def jitter_box(box: Sequence[float], noise: float, rng: np.random.Generator, size: ImageSize) -> Box:
    """Move each edge of ``(x1, y1, x2, y2)`` by ``N(0, noise * side length)``; clip to the image.

    x1 and x2 move with sigma ``noise * width``, y1 and y2 with ``noise * height`` (the draws come
    from ``rng`` in the order x1, y1, x2, y2, so a seeded generator reproduces the box). Edges that
    cross are swapped, and each side is kept at least 1 px long inside ``[0, W] x [0, H]``.
    """
    _check_size(size)
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    x1, y1, x2, y2 = (float(v) for v in box)
    sigma = np.array([x2 - x1, y2 - y1, x2 - x1, y2 - y1]) * noise
    d = rng.standard_normal(4) * sigma
    nx1, nx2 = _span(x1 + d[0], x2 + d[2], size.width)
    ny1, ny2 = _span(y1 + d[1], y2 + d[3], size.height)
    return float(nx1), float(ny1), float(nx2), float(ny2)


def prompts_from_reference(
    mask: np.ndarray, mode: str, *, box_noise: float = 0.0, rng: np.random.Generator | None = None
) -> Prompts:
    """Prompts derived from a reference ``(H, W)`` mask, as in SAM's single-prompt evaluations.

    ``mode``: ``"box"`` (the mask's tight box, :func:`mask_box`), ``"center"`` (one foreground
    click at :func:`interior_point`) or ``"box+center"`` (both). ``box_noise`` > 0 jitters the
    box with :func:`jitter_box` and then needs ``rng`` (pass a seeded generator for reproducible
    studies). Raises :class:`PromptError` for an empty mask or an unknown mode.
    """
    if mode not in PROMPT_MODES:
        raise PromptError(f"Unknown prompt mode {mode!r}: use one of {', '.join(PROMPT_MODES)}.")
    m = _as_bool(mask)
    h, w = m.shape
    box = mask_box(m)
    if box is None:
        raise PromptError("The reference mask is empty: there is no object to derive a prompt from.")
    points: list[Point] = []
    out_box: Box | None = None
    if "box" in mode:
        out_box = box
        if box_noise > 0:
            if rng is None:
                raise ValueError("box_noise > 0 needs an rng (np.random.default_rng(seed)).")
            out_box = jitter_box(box, box_noise, rng, ImageSize(w, h))
    if "center" in mode:
        point = interior_point(m)
        assert point is not None  # the mask is not empty
        points.append((point[0], point[1], 1))
    return Prompts.parse(points, out_box)


# --------------------------------------------------------------------------- click simulation
def next_click(pred: np.ndarray, ref: np.ndarray) -> tuple[float, float, int] | None:
    """The next simulated click ``(x, y, label)`` for ``pred`` against ``ref`` (RITM / SimpleClick protocol).

    ``fn = ref & ~pred`` (missed) and ``fp = pred & ~ref`` (false) are distance-transformed
    (padded by 1 px of background, so the image border counts as boundary); the error whose
    maximum distance is larger wins, ties going to ``fn`` (RITM's code sends ties to ``fp``).
    The click is at that maximum (first in row-major order), at the pixel centre
    ``(col + 0.5, row + 0.5)``: label 1 on a missed region, 0 on a false one. ``None`` when
    ``pred == ref``.
    """
    p, r = _pair(pred, ref)
    fn = _farthest_from_boundary(r & ~p)
    fp = _farthest_from_boundary(p & ~r)
    if fn is None and fp is None:
        return None
    if fp is None or (fn is not None and fn[0] >= fp[0]):
        assert fn is not None
        _, row, col = fn
        return col + 0.5, row + 0.5, 1
    _, row, col = fp
    return col + 0.5, row + 0.5, 0


def noc(ious: Sequence[float], threshold: float, max_clicks: int = 20) -> int:
    """Number of clicks to reach ``threshold``: the first ``k`` (1-based) with ``ious[k-1] >= threshold``.

    Only the first ``max_clicks`` values count; when none reaches the threshold the result is
    ``max_clicks`` (the standard NoC convention of RITM / SimpleClick: a failure costs the budget).
    """
    if max_clicks < 1:
        raise ValueError(f"max_clicks must be >= 1, got {max_clicks}")
    reached = np.asarray(ious, dtype=np.float64)[:max_clicks] >= threshold
    return int(np.argmax(reached)) + 1 if reached.any() else max_clicks


@dataclass(frozen=True)
class ClickCurve:
    """The result of :func:`simulate_clicks` for one object.

    ``ious``: IoU after click 1..max_clicks (always ``max_clicks`` long; padded with the last
    value after an exact match). ``clicks``: the clicks made ``(x, y, label)``, full-image px at
    pixel centres; shorter than ``ious`` when the simulation stopped early. ``noc85`` /
    ``noc90``: :func:`noc` at IoU 0.85 / 0.90.
    """

    ious: tuple[float, ...]
    clicks: tuple[Point, ...]
    noc85: int
    noc90: int

    @property
    def max_clicks(self) -> int:
        return len(self.ious)

    def iou_at(self, k: int) -> float:
        """IoU after ``k`` clicks (1-based)."""
        if not 1 <= k <= len(self.ious):
            raise ValueError(f"k must be in 1..{len(self.ious)}, got {k}")
        return self.ious[k - 1]


def simulate_clicks(
    predict: Predict,
    ref: np.ndarray,
    *,
    max_clicks: int = 20,
    start: Prompts | None = None,
) -> ClickCurve:
    """Simulate up to ``max_clicks`` corrective clicks on ``ref`` (``(H, W)`` mask) with :func:`next_click`.

    ``predict(prompts, prev_low_res_logits) -> (mask (H, W) bool, low_res_logits or None)``; the
    logits returned are passed back on the next call (SAM's ``mask_input``). Without ``start`` the
    first click is made on an empty prediction (so it lands at :func:`interior_point` of ``ref``);
    with ``start`` (e.g. a box) ``predict(start, None)`` gives the prediction the first click
    corrects (that call is not a click). Each step adds one click to the prompts and predicts again.
    The loop stops early only when the prediction equals ``ref``; the curve is then padded with
    the last IoU so every curve has ``max_clicks`` values.
    """
    r = _as_bool(ref, "ref")
    if start is None:
        start = Prompts()
    if not 1 <= max_clicks <= MAX_POINTS - len(start.points):
        raise ValueError(f"max_clicks must be in 1..{MAX_POINTS - len(start.points)}, got {max_clicks}")

    def run(prompts: Prompts, logits: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        mask, new_logits = predict(prompts, logits)
        m = _as_bool(mask, "predicted mask")
        if m.shape != r.shape:
            raise ValueError(f"predict returned a mask of shape {m.shape}, expected {r.shape}")
        return m, new_logits

    prompts = start
    logits: np.ndarray | None = None
    if start.empty:
        pred = np.zeros_like(r)
        current = iou(pred, r)
    else:
        pred, logits = run(start, None)
        current = iou(pred, r)
    ious: list[float] = []
    clicks: list[Point] = []
    while len(ious) < max_clicks:
        click = next_click(pred, r)
        if click is None:
            break
        clicks.append(click)
        prompts = Prompts((*prompts.points, click), prompts.box)
        pred, logits = run(prompts, logits)
        current = iou(pred, r)
        ious.append(current)
    ious += [current] * (max_clicks - len(ious))
    return ClickCurve(tuple(ious), tuple(clicks), noc(ious, 0.85, max_clicks), noc(ious, 0.90, max_clicks))
