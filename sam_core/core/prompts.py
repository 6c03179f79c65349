"""Point and box prompts in full-image pixel coordinates (x right, y down).

Labels: 1 = foreground, 0 = background. A box is ``(x1, y1, x2, y2)`` with x1 < x2 and
y1 < y2 (corners given in any order are normalised by :meth:`Prompts.with_box_corners`).
JSON form: ``{"points": [[x, y, label], ...], "box": [x1, y1, x2, y2] or null}``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import PromptError

MAX_POINTS = 64
Point = tuple[float, float, int]
Box = tuple[float, float, float, float]


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)  # numpy scalars, numeric strings from an edited table
        except (TypeError, ValueError):
            raise PromptError(f"{what} must be a number, got {value!r}.") from None
    value = float(value)
    if not math.isfinite(value):
        raise PromptError(f"{what} must be a finite number, got {value!r}.")
    return value


def _label(value: Any, what: str) -> int:
    if isinstance(value, str) and value.strip().lower() in ("fg", "foreground", "1", "+"):
        return 1
    if isinstance(value, str) and value.strip().lower() in ("bg", "background", "0", "-"):
        return 0
    number = _number(value, what)
    if number not in (0.0, 1.0):
        raise PromptError(f"{what} must be 1 (foreground) or 0 (background), got {value!r}.")
    return int(number)


@dataclass(frozen=True)
class Prompts:
    """An immutable set of prompts. ``points``: ((x, y, label), ...); ``box`` or None."""

    points: tuple[Point, ...] = field(default_factory=tuple)
    box: Box | None = None

    @classmethod
    def parse(cls, points: Iterable[Sequence[Any]] | None = None, box: Sequence[Any] | None = None) -> Prompts:
        """Build from loose Python values, checking types, finiteness, labels and box shape."""
        parsed: list[Point] = []
        if points is not None:
            if isinstance(points, (str, bytes)) or not isinstance(points, Iterable):
                raise PromptError(f"points must be a list of [x, y, label], got {points!r}.")
            for i, p in enumerate(points):
                if isinstance(p, (str, bytes)) or not isinstance(p, Sequence) or len(p) != 3:
                    raise PromptError(f"point {i + 1} must be [x, y, label], got {p!r}.")
                parsed.append(
                    (
                        _number(p[0], f"point {i + 1} x"),
                        _number(p[1], f"point {i + 1} y"),
                        _label(p[2], f"point {i + 1} label"),
                    )
                )
                if len(parsed) > MAX_POINTS:
                    raise PromptError(f"Too many points: at most {MAX_POINTS} are allowed.")
        parsed_box: Box | None = None
        if box is not None:
            if isinstance(box, (str, bytes)) or not isinstance(box, Sequence) or len(box) != 4:
                raise PromptError(f"box must be [x1, y1, x2, y2] (4 numbers), got {box!r}.")
            x1, y1, x2, y2 = (_number(v, f"box {n}") for v, n in zip(box, ("x1", "y1", "x2", "y2"), strict=True))
            if x2 <= x1 or y2 <= y1:
                raise PromptError(f"box [{x1:g}, {y1:g}, {x2:g}, {y2:g}] has no area: it needs x1 < x2 and y1 < y2.")
            parsed_box = (x1, y1, x2, y2)
        return cls(tuple(parsed), parsed_box)

    @classmethod
    def from_json(cls, text: str | bytes | None) -> Prompts:
        """Parse the JSON form; empty text means no prompts."""
        if text is None or (isinstance(text, (str, bytes)) and not text.strip()):
            return cls()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise PromptError(f"Prompts are not valid JSON ({err.msg} at position {err.pos}).") from None
        except UnicodeDecodeError as err:
            raise PromptError(f"Prompts are not valid JSON (not UTF-8 at byte {err.start}).") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Any) -> Prompts:
        if not isinstance(data, dict):
            raise PromptError('Prompts must be a JSON object like {"points": [[x, y, 1]], "box": null}.')
        unknown = set(data) - {"points", "box"}
        if unknown:
            raise PromptError(f"Unknown prompt keys: {', '.join(sorted(map(str, unknown)))} (use points and box).")
        return cls.parse(data.get("points") or [], data.get("box"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "points": [[_num_out(x), _num_out(y), int(lab)] for x, y, lab in self.points],
            "box": None if self.box is None else [_num_out(v) for v in self.box],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @property
    def empty(self) -> bool:
        return not self.points and self.box is None

    def validate(self, width: int, height: int) -> Prompts:
        """Check the prompts against an image of ``width`` x ``height`` px; returns self.

        Coordinates must lie in [0, width] x [0, height] (pixel edges, so a box may touch
        the border). At least one prompt is required.
        """
        if self.empty:
            raise PromptError("Add at least one point or a box before segmenting.")
        if len(self.points) > MAX_POINTS:
            raise PromptError(f"Too many points: at most {MAX_POINTS} are allowed.")
        for i, (x, y, _) in enumerate(self.points):
            if not (0 <= x <= width and 0 <= y <= height):
                raise PromptError(f"point {i + 1} ({x:g}, {y:g}) is outside the {width}×{height} image.")
        if self.box is not None:
            x1, y1, x2, y2 = self.box
            if not (0 <= x1 <= width and 0 <= x2 <= width and 0 <= y1 <= height and 0 <= y2 <= height):
                raise PromptError(f"box [{x1:g}, {y1:g}, {x2:g}, {y2:g}] is outside the {width}×{height} image.")
        return self

    def add_point(self, x: float, y: float, label: int) -> Prompts:
        return Prompts.parse([*self.points, (x, y, label)], self.box)

    def with_box_corners(self, a: tuple[float, float], b: tuple[float, float]) -> Prompts:
        """Replace the box by the one spanned by two opposite corners (any order)."""
        box = (min(a[0], b[0]), min(a[1], b[1]), max(a[0], b[0]), max(a[1], b[1]))
        return Prompts.parse(self.points, box)

    def without_last(self) -> Prompts:
        """Drop the last point, or the box when there are no points."""
        if self.points:
            return Prompts(self.points[:-1], self.box)
        return Prompts((), None)


def _num_out(v: float) -> float | int:
    return int(v) if float(v).is_integer() else round(float(v), 2)
