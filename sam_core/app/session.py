"""One visitor's session as a value, and the pure transitions between sessions.

A :class:`SessionState` holds everything that belongs to one visitor: which image, which
model, the prompts and their undo history, the candidates SAM returned and the chosen one,
and the settings. It is never mutated: every transition returns a new value (the UI keeps
the current one in ``gr.State``). What needs the model (decoding, encoding) lives in
:class:`sam_core.app.studio.Studio`, which decides when SAM runs again.

Coordinate frames: ``prompts`` are full-image pixels (x right, y down); clicks arrive in
preview pixels (the image the browser shows) and are divided by ``scale``.
"""

from __future__ import annotations

import dataclasses
import enum
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sam_core.core.errors import PromptError, UserError
from sam_core.core.prompts import Prompts
from sam_core.core.sizes import ImageSize
from sam_core.model.segmenter import SegmentResult

MAX_HISTORY = 200  # undo steps kept per session
DECODER_PATHS = ("auto", "browser", "server")
BROWSER_MODELS = ("quantized", "fp32")


class PromptMode(enum.Enum):
    """What a click on the image adds."""

    FOREGROUND = "fg"
    BACKGROUND = "bg"
    BOX = "box"  # two clicks: one corner, then the opposite one


@dataclass(frozen=True)
class Settings:
    """Per-session options. Sizes are in full-image pixels; ``threshold`` is on the logits."""

    multimask: bool = True
    threshold: float = 0.0
    alpha: float = 0.5
    min_island: int = 0
    min_hole: int = 0
    refine: bool = False
    decoder_path: str = "auto"  # where clicks are decoded: "auto" (browser when it can), "browser", "server"
    browser_model: str = "quantized"  # the browser's decoder file: "quantized" or "fp32"

    @property
    def mask_key(self) -> tuple[float, int, int]:
        """The settings that change the masks derived from the logits (not the decoder)."""
        return (self.threshold, self.min_island, self.min_hole)


@dataclass(frozen=True)
class Candidates:
    """SAM's candidates for the current prompts, as the session shows them.

    ``masks``: (N, h, w) bool at the preview size, thresholded and cleaned per ``mask_key``
    (read-only); ``metrics``: the chosen mask's area, perimeter, bbox in full-image units,
    measured on the preview. Computed once per decode or choice and shared by the run log
    and the presentation.
    """

    result: SegmentResult
    masks: np.ndarray
    mask_key: tuple[float, int, int]
    chosen: int
    metrics: dict[str, Any]
    mask_input: np.ndarray | None = None  # (1, 256, 256) logits the decoder was given (refinement), for exact replays


@dataclass(frozen=True)
class SessionState:
    """Everything one visitor has: image reference, prompts, candidates, choices, settings."""

    session_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    model_type: str | None = None
    image_key: str | None = None
    image_path: str | None = None  # where the upload lives, to reload if the store evicted it
    image_name: str = ""
    size: ImageSize = ImageSize(0, 0)  # full image
    scale: float = 1.0  # preview px / full px
    prompts: Prompts = field(default_factory=Prompts)
    history: tuple[Prompts, ...] = ()
    pending_corner: tuple[float, float] | None = None
    candidates: Candidates | None = None
    settings: Settings = field(default_factory=Settings)
    encode_ms: float = 0.0  # time opening the image took (decode + encode, or a cache hit)
    client: str = "server"  # who draws this visitor's clicks: "server" or "browser" (its decoder said ready)

    @property
    def has_image(self) -> bool:
        return self.image_key is not None

    @property
    def result(self) -> SegmentResult | None:
        """The decoder's output for the current prompts (None before the first decode)."""
        return None if self.candidates is None else self.candidates.result

    @property
    def chosen(self) -> int:
        """Index of the chosen candidate (0 when there are none)."""
        return 0 if self.candidates is None else self.candidates.chosen

    # ------------------------------------------------------------------ transitions
    def click(self, x: float, y: float, mode: PromptMode) -> tuple[SessionState, bool]:
        """Add a click at preview pixel (x, y). Returns (new state, prompts complete).

        A box needs two clicks: the first only records the pending corner (incomplete).
        """
        if not self.has_image:
            raise UserError("Upload an image (or pick an example) before clicking.")
        w, h = self.size
        fx = round(min(max(x / self.scale, 0.0), float(w)), 1)
        fy = round(min(max(y / self.scale, 0.0), float(h)), 1)
        if mode is PromptMode.BOX:
            if self.pending_corner is None:
                return dataclasses.replace(self, pending_corner=(fx, fy)), False
            a = self.pending_corner
            if abs(a[0] - fx) < 1 or abs(a[1] - fy) < 1:
                raise PromptError("The box needs two different corners; click the opposite corner.")
            prompts = self.prompts.with_box_corners(a, (fx, fy))
            return dataclasses.replace(self, pending_corner=None).with_prompts(prompts), True
        label = 0 if mode is PromptMode.BACKGROUND else 1
        return self.with_prompts(self.prompts.add_point(fx, fy, label)), True

    def with_prompts(self, prompts: Prompts) -> SessionState:
        """Replace the prompts (validated against the image), keeping the old ones for undo."""
        prompts.validate(*self.size)
        history = (*self.history, self.prompts)[-MAX_HISTORY:]
        return dataclasses.replace(self, history=history, prompts=prompts)

    def undo(self) -> SessionState:
        """Drop the pending box corner, else go back to the previous prompts."""
        if self.pending_corner is not None:
            return dataclasses.replace(self, pending_corner=None)
        if not self.history:
            return self
        return dataclasses.replace(self, prompts=self.history[-1], history=self.history[:-1])

    def clear(self) -> SessionState:
        """No prompts and no candidates (undo brings the prompts back)."""
        return dataclasses.replace(
            self,
            prompts=Prompts(),
            history=(*self.history, self.prompts)[-MAX_HISTORY:],
            pending_corner=None,
            candidates=None,
        )

    def fresh(self) -> SessionState:
        """The same visitor (id, model, settings) with no image."""
        return SessionState(
            session_id=self.session_id, model_type=self.model_type, settings=self.settings, client=self.client
        )
