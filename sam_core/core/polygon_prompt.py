"""A rough polygon around an object, turned into prompts SAM understands.

The user clicks the vertices of a rough polygon (continuous full-image coordinates, x
right, y down; pixel ``(col, row)`` covers ``[col, col+1) x [row, row+1)``). SAM takes a
box and points, so :func:`polygon_to_prompts` returns

* the polygon's bounding box clipped to the image: a half-open pixel-edge box
  ``(x1, y1, x2, y2)`` as in :mod:`sam_core.core.geometry` (here the vertex extremes,
  which are continuous, so it need not fall on pixel edges);
* foreground points spread over the polygon's interior, each as deep inside as possible
  (maxima of the distance transform, picked greedily with suppression, so an elongated,
  L- or U-shaped polygon gets points along its arms);
* optionally background points inside the box but outside the polygon (e.g. in the
  hollow of a U), picked the same way.

Points are at pixel centres (``col + 0.5``, ``row + 0.5``), as in
:mod:`sam_core.core.evaluation`.

Rasterisation: a cell is inside when its centre is, by the even-odd rule (the rule of
``cv2.fillPoly`` and ``cv2.pointPolygonTest``), so self-intersecting polygons are accepted
and a bow-tie counts as its two lobes, a pentagram as its five points (its centre is
outside). The scanline fill is done here rather than with ``cv2.fillPoly`` because
fillPoly marks every cell a span touches, with a bias towards the right/bottom at exact
cell edges: a square with edges on pixel edges comes out one pixel too wide and tall,
which moves its centre by half a pixel (half a cell, ~5 px, on a scaled grid).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from .errors import PromptError
from .prompts import MAX_POINTS, Box, Point, Prompts
from .sizes import ImageSize

__all__ = ["MAX_VERTICES", "PolygonPrompt", "polygon_to_prompts"]

MAX_VERTICES = 1000
"""Most vertices of one polygon."""

STOP_FRACTION = 0.25
"""Stop picking points when the deepest remaining cell is below this share of the first."""

SUPPRESS_FACTOR = 1.5
"""Around each chosen point, cells within this many times its depth are suppressed. With
1.0 (a disc just touching the boundary) the corners of a square keep 29 % of the centre's
depth (1 - 1/sqrt(2)), above :data:`STOP_FRACTION`, so every square would get three or
more points, one per corner; 1.5 covers a square's corners (at sqrt(2) x the depth) and
regular polygons, while elongated shapes still get a point every 1.5 depths at most."""

SPREAD_FRACTION = 0.9
"""After the first point, cells at least this share of the deepest remaining one are
candidates, and the one farthest from the points already chosen wins (spreads the points
along plateaus such as the middle line of a rectangle instead of bunching them at one end);
it then moves to the deepest cell within ``(1 - SPREAD_FRACTION) x depth + 1`` cells, back
onto the middle line."""

_MAX_COORD = 1e7


@dataclass(frozen=True)
class PolygonPrompt:
    """Prompts from a polygon: ``box`` ``(x1, y1, x2, y2)`` and ``points`` ``((x, y, label), ...)``.

    Full-image px; label 1 = inside (foreground), 0 = outside (background); inside points
    come first.
    """

    box: Box
    points: tuple[Point, ...]

    def prompts(self) -> Prompts:
        """As :class:`sam_core.core.prompts.Prompts` (box plus points)."""
        return Prompts(self.points, self.box)


def _check_count(value: Any, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or not lo <= value <= hi:
        raise PromptError(f"{what} must be an integer from {lo} to {hi}, got {value!r}.")
    return int(value)


def _vertices(vertices: Sequence[tuple[float, float]]) -> np.ndarray:
    """``(N, 2)`` float64 vertices, checked: 3..1000 finite ``(x, y)`` pairs."""
    if isinstance(vertices, str | bytes):
        raise PromptError("Polygon vertices must be a list of [x, y] pairs.")
    try:
        raw = np.asarray(vertices)
    except (TypeError, ValueError):
        raise PromptError("Polygon vertices must be a list of [x, y] pairs of numbers.") from None
    if raw.size == 0:
        raise PromptError("A polygon needs at least 3 vertices, got 0.")
    if raw.ndim != 2 or raw.shape[1] != 2 or raw.dtype.kind not in "iuf":
        raise PromptError("Polygon vertices must be a list of [x, y] pairs of numbers.")
    n = raw.shape[0]
    if n < 3:
        raise PromptError(f"A polygon needs at least 3 vertices, got {n}.")
    if n > MAX_VERTICES:
        raise PromptError(f"A polygon may have at most {MAX_VERTICES} vertices, got {n}.")
    v = raw.astype(np.float64)
    if not np.isfinite(v).all():
        raise PromptError("Polygon vertices must be finite numbers.")
    if np.abs(v).max() > _MAX_COORD:
        raise PromptError("A polygon vertex lies absurdly far outside the image.")
    return v


def _collinear(v: np.ndarray) -> bool:
    """All vertices on one line (or one point): the polygon encloses nothing."""
    centred = v - v.mean(axis=0)
    s = np.linalg.svd(centred, compute_uv=False)
    return bool(s[1] <= 1e-9 * max(s[0], 1e-300))


def _rasterise(
    v: np.ndarray, origin: tuple[float, float], f: tuple[float, float], shape: tuple[int, int]
) -> np.ndarray:
    """Even-odd scanline fill: cell ``(i, j)`` is inside when its centre is.

    The grid's cell ``(i, j)`` has its centre at full-image ``(ox + (j + .5) / fx,
    oy + (i + .5) / fy)``. Crossings of each cell-centre row with the edges use the
    half-open rule (``y0 <= yc < y1``), spans ``[xa, xb)`` are half-open too, so a
    zero-area polygon (collinear, or traced back and forth) covers no cell. Returns
    ``(gh, gw)`` bool.
    """
    gh, gw = shape
    ox, oy = origin
    fx, fy = f
    p, q = v, np.roll(v, -1, axis=0)
    yc = oy + (np.arange(gh) + 0.5)[:, None] / fy
    py, qy = p[None, :, 1], q[None, :, 1]
    crosses = ((py <= yc) & (yc < qy)) | ((qy <= yc) & (yc < py))
    with np.errstate(divide="ignore", invalid="ignore"):
        xs = p[None, :, 0] + (yc - py) * (q[None, :, 0] - p[None, :, 0]) / (qy - py)
    xs = np.where(crosses, xs, np.inf)
    if xs.shape[1] % 2:
        xs = np.concatenate([xs, np.full((gh, 1), np.inf)], axis=1)
    xs.sort(axis=1)
    xa, xb = xs[:, 0::2], xs[:, 1::2]
    rows, k = np.nonzero(np.isfinite(xa) & np.isfinite(xb))
    # cell centres ox + (j + .5) / fx in [xa, xb)  <=>  j in [ceil(ua - .5), ceil(ub - .5))
    ja = np.ceil((xa[rows, k] - ox) * fx - 0.5).astype(np.int64)
    jb = np.ceil((xb[rows, k] - ox) * fx - 0.5).astype(np.int64)
    ja, jb = np.clip(ja, 0, gw), np.clip(jb, 0, gw)
    keep = ja < jb
    diff = np.zeros((gh, gw + 1), dtype=np.int32)
    np.add.at(diff, (rows[keep], ja[keep]), 1)
    np.add.at(diff, (rows[keep], jb[keep]), -1)
    return np.cumsum(diff, axis=1)[:, :gw] > 0


def _pick(
    dist: np.ndarray,
    n: int,
    to_full: Callable[[float, float], tuple[float, float]],
    accept: Callable[[float, float], bool],
) -> list[tuple[float, float]]:
    """Greedy maxima of a distance transform (cells), returned as full-image points.

    First the maximum (among exact ties, the one nearest their centroid, refined to the
    centroid of the ties in its 3 x 3 neighbourhood: the exact centre of a square even on
    a coarse grid). Then, repeatedly, a disc of radius :data:`SUPPRESS_FACTOR` x the
    chosen cell's distance is suppressed and, among the cells at least
    :data:`SPREAD_FRACTION` of the remaining maximum, the one farthest from the chosen
    points is taken (then nudged to the deepest cell nearby). Stops after ``n`` points or
    when the remaining maximum falls below :data:`STOP_FRACTION` of the first. Points that
    ``accept`` rejects (a cell centre just outside the true polygon) are skipped.
    """
    out: list[tuple[float, float]] = []
    if n <= 0:
        return out
    remaining = dist.copy()
    first = float(remaining.max())
    if first <= 0:
        return out
    h, w = dist.shape
    grid_r = np.arange(h, dtype=np.float64)[:, None]
    grid_c = np.arange(w, dtype=np.float64)[None, :]
    nearest = np.full(dist.shape, np.inf)  # distance (cells) to the nearest chosen cell
    for _ in range(4 * n + 8):
        top = float(remaining.max())
        if len(out) >= n or top <= 0 or top < STOP_FRACTION * first:
            break
        if np.isinf(nearest).all():
            tr, tc = np.nonzero(remaining >= top - 1e-4)
            k = int(np.argmin((tr - tr.mean()) ** 2 + (tc - tc.mean()) ** 2))
            r, c = int(tr[k]), int(tc[k])
            near = (np.abs(tr - r) <= 1) & (np.abs(tc - c) <= 1)
            fr, fc = float(tr[near].mean()), float(tc[near].mean())
        else:
            cr, cc = np.nonzero(remaining >= SPREAD_FRACTION * top)
            k = int(np.argmax(nearest[cr, cc]))
            r, c = int(cr[k]), int(cc[k])
            reach = (1 - SPREAD_FRACTION) * top + 1
            lr = np.hypot(cr - r, cc - c) <= reach  # climb to the deepest cell close by
            k = int(np.argmax(remaining[cr[lr], cc[lr]]))
            r, c = int(cr[lr][k]), int(cc[lr][k])
            fr, fc = float(r), float(c)
        radius = SUPPRESS_FACTOR * float(dist[r, c])
        d2 = (grid_r - r) ** 2 + (grid_c - c) ** 2
        remaining[d2 <= radius * radius] = 0
        np.minimum(nearest, np.sqrt(d2), out=nearest)
        x, y = to_full(fr, fc)
        if accept(x, y):
            out.append((x, y))
    return out


def polygon_to_prompts(
    vertices: Sequence[tuple[float, float]],
    size: ImageSize,
    *,
    n_inside: int = 3,
    n_outside: int = 0,
    work_side: int = 512,
) -> PolygonPrompt:
    """Box and points for SAM from a polygon's ``vertices`` (full-image ``(x, y)``).

    The polygon is rasterised on a working grid covering its clipped box: the pixel grid
    when the box's long side is at most ``work_side`` px, else square cells, ``work_side``
    of them on the long side, the grid centred on the box (so a shape symmetric in its box
    rasterises symmetrically and a square's centre comes out within a pixel), padded by
    a ring of empty cells so the image and box edges count as boundary; the distance
    transform (``cv2.distanceTransform``, ``DIST_L2``, ``DIST_MASK_PRECISE``) gives each
    cell's depth. Up to ``n_inside`` foreground points are picked from it (see
    :func:`_pick`) and up to ``n_outside`` background points from the distance transform
    of (box minus polygon). Fewer come back when the shape has room for fewer (a round
    shape gets one inside point; a polygon filling its box gets no outside point). Points
    are snapped to the centre of the full-image pixel and checked with
    ``cv2.pointPolygonTest`` (inside: > 0, outside: < 0).

    A polygon thinner than a grid cell may cover no cell centre; the grid is then refined
    4x once before giving up. ``PromptError`` for fewer than 3 or more than 1000
    vertices, non-finite numbers, zero area (all vertices on one line, or an outline
    traced back and forth), a polygon outside the image, or bad counts (``n_inside`` and
    ``n_outside`` 0..64 with a sum <= 64; ``work_side`` 16..4096).
    """
    v = _vertices(vertices)
    width, height = int(size.width), int(size.height)
    if width < 1 or height < 1:
        raise PromptError(f"The image size {width}×{height} is empty.")
    n_in = _check_count(n_inside, "n_inside", 0, MAX_POINTS)
    n_out = _check_count(n_outside, "n_outside", 0, MAX_POINTS)
    if n_in + n_out > MAX_POINTS:
        raise PromptError(f"n_inside + n_outside must be at most {MAX_POINTS}, got {n_in + n_out}.")
    side = _check_count(work_side, "work_side", 16, 4096)
    if _collinear(v):
        raise PromptError("The polygon has zero area: all its vertices lie on one line.")

    x1 = min(max(float(v[:, 0].min()), 0.0), float(width))
    x2 = min(max(float(v[:, 0].max()), 0.0), float(width))
    y1 = min(max(float(v[:, 1].min()), 0.0), float(height))
    y2 = min(max(float(v[:, 1].max()), 0.0), float(height))
    if x2 <= x1 or y2 <= y1:
        raise PromptError(f"The polygon lies outside the {width}×{height} image.")

    inside = np.zeros((0, 0), dtype=bool)
    ox, oy, f = 0.0, 0.0, 1.0
    for ws in (side, 4 * side):
        pixel_grid = max(x2 - x1, y2 - y1) <= ws
        if pixel_grid:
            ox, oy, f = math.floor(x1), math.floor(y1), 1.0
            gw, gh = math.ceil(x2) - int(ox), math.ceil(y2) - int(oy)
        else:  # square cells, the grid centred on the box (a symmetric shape rasterises symmetrically)
            f = ws / max(x2 - x1, y2 - y1)
            gw, gh = max(1, math.ceil((x2 - x1) * f)), max(1, math.ceil((y2 - y1) * f))
            ox, oy = (x1 + x2 - gw / f) / 2, (y1 + y2 - gh / f) / 2
        centre_x = ox + (np.arange(gw) + 0.5) / f
        centre_y = oy + (np.arange(gh) + 0.5) / f
        in_box = ((centre_y >= y1) & (centre_y < y2))[:, None] & ((centre_x >= x1) & (centre_x < x2))[None, :]
        inside = _rasterise(v, (ox, oy), (f, f), (gh, gw)) & in_box
        if inside.any() or pixel_grid:
            break
    if not inside.any():
        raise PromptError(
            "The polygon covers no pixel centre: it has zero area (an outline traced back and forth), "
            "is too thin, or lies outside the image."
        )

    contour = v.astype(np.float32).reshape(-1, 1, 2)

    def to_full(fr: float, fc: float) -> tuple[float, float]:
        # canvas indices include the 1-cell padding ring
        x = ox + (fc - 1 + 0.5) / f
        y = oy + (fr - 1 + 0.5) / f
        x = min(max(math.floor(x) + 0.5, 0.5), width - 0.5)
        y = min(max(math.floor(y) + 0.5, 0.5), height - 0.5)
        return x, y

    def depth(region: np.ndarray) -> np.ndarray:
        canvas = np.zeros((region.shape[0] + 2, region.shape[1] + 2), dtype=np.uint8)
        canvas[1:-1, 1:-1] = region
        return cv2.distanceTransform(canvas, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)

    points: list[Point] = []
    if n_in:
        picked = _pick(depth(inside), n_in, to_full, lambda x, y: cv2.pointPolygonTest(contour, (x, y), False) > 0)
        points += [(x, y, 1) for x, y in picked]
    if n_out:
        picked = _pick(
            depth(in_box & ~inside), n_out, to_full, lambda x, y: cv2.pointPolygonTest(contour, (x, y), False) < 0
        )
        points += [(x, y, 0) for x, y in picked]
    return PolygonPrompt(box=(x1, y1, x2, y2), points=tuple(points))
