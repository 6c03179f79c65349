"""The one size convention: :class:`ImageSize` is ``(width, height)`` in pixels.

SAM's own code takes ``(H, W)`` tuples; convert at that boundary only, with ``size.hw``.
"""

from __future__ import annotations

from typing import NamedTuple


class ImageSize(NamedTuple):
    """An image size in pixels: ``width`` (x, to the right) and ``height`` (y, down)."""

    width: int
    height: int

    @classmethod
    def of(cls, array: object) -> ImageSize:
        """The size of an ``(H, W, ...)`` array."""
        shape = getattr(array, "shape")  # noqa: B009 - any array-like with a shape
        return cls(int(shape[1]), int(shape[0]))

    @classmethod
    def from_hw(cls, hw: tuple[int, int]) -> ImageSize:
        """From SAM's ``(H, W)`` order."""
        return cls(int(hw[1]), int(hw[0]))

    @property
    def hw(self) -> tuple[int, int]:
        """``(height, width)``: the order SAM, numpy shapes and torch take."""
        return (self.height, self.width)

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def __str__(self) -> str:
        return f"{self.width}×{self.height}"
