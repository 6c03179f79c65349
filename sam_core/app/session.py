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

from sam_core.core.bundle_io import MAX_OBJECTS  # objects per image (a bundle holds them all)
from sam_core.core.enhance import Clahe
from sam_core.core.errors import PromptError, UserError
from sam_core.core.prompts import Prompts
from sam_core.core.sizes import ImageSize
from sam_core.model.segmenter import SegmentResult

MAX_HISTORY = 200  # undo steps kept per session
MAX_LABEL = 100  # characters of a label name
DEFAULT_LABEL = "object"
DECODER_PATHS = ("auto", "browser", "server")
BROWSER_MODELS = ("quantized", "fp32")


class PromptMode(enum.Enum):
    """What a click on the image adds."""

    FOREGROUND = "fg"
    BACKGROUND = "bg"
    BOX = "box"  # two clicks: one corner, then the opposite one
    POLYGON = "polygon"  # click the vertices of a rough outline, then close it: a box + inside points
    REGION = "region"  # a click on a segment-everything region makes it an object
    BRUSH = "brush"  # paint the mask (a stroke of the brush radius)
    ERASER = "eraser"  # erase from the mask


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
    exclude: bool = False  # Exclude committed objects: a later object never covers an earlier one's pixels
    clahe: float = 0.0  # contrast enhancement before the encoder: CLAHE clip limit on the L channel (0 = off)
    brush_px: float = 12.0  # brush / eraser radius, full-image px
    polygon_outside: int = 0  # background points a polygon adds outside its outline

    @property
    def enhancement(self) -> Clahe | None:
        """The pre-processing the image encoder's input gets (None: the plain image)."""
        return Clahe(self.clahe) if self.clahe > 0 else None

    @property
    def mask_key(self) -> tuple[float, int, int]:
        """The settings that change the masks derived from the logits (not the decoder)."""
        return (self.threshold, self.min_island, self.min_hole)


@dataclass(frozen=True)
class Candidates:
    """SAM's candidates for the current prompts, as the session shows them.

    ``masks``: (N, h, w) bool at the preview size, thresholded and cleaned per ``mask_key``
    (read-only); ``final``: the chosen one after the object's edits and, with *Exclude committed
    objects*, without the pixels of earlier objects; ``metrics``: the final mask's area,
    perimeter, bbox in full-image units, measured on the preview. Computed once per decode or
    choice and shared by the run log and the presentation.
    """

    result: SegmentResult
    masks: np.ndarray
    mask_key: tuple[float, int, int]
    chosen: int
    metrics: dict[str, Any]
    mask_input: np.ndarray | None = None  # (1, 256, 256) logits the decoder was given (refinement), for exact replays
    final: np.ndarray | None = None  # (h, w) bool: the chosen mask after the edits and the exclusion rule

    @property
    def shown(self) -> np.ndarray:
        """(h, w) bool: the chosen mask as shown (after edits and exclusion) at the preview size."""
        return self.masks[self.chosen] if self.final is None else self.final


@dataclass(frozen=True)
class Step:
    """One undo step of the object being edited: its prompts and the edits made to its mask."""

    prompts: Prompts
    edits: tuple[Any, ...] = ()


@dataclass(frozen=True)
class AnnotObject:
    """A committed object of the annotation: everything needed to show, edit again and export it.

    ``mask``: (h, w) bool at the preview size, after the edits and before the exclusion rule
    (read-only); ``rle``: the exact full-resolution mask (COCO RLE, after the edits, before the
    exclusion rule); ``area``: its pixel count. ``settings``: the decoder and mask settings it
    was made with (multimask, threshold, clean-up), so that it replays exactly. ``rev`` changes
    whenever the object does (a cache key for renders).
    """

    object_id: int
    label: str
    prompts: Prompts
    history: tuple[Step, ...]
    candidates: Candidates
    edits: tuple[Any, ...]
    settings: Settings
    mask: np.ndarray
    rle: dict[str, Any]
    area: int
    scores: tuple[float, ...]  # the torch decoder's predicted IoUs of the candidates (exact, as the masks)
    rev: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def chosen(self) -> int:
        return self.candidates.chosen

    @property
    def score(self) -> float:
        """SAM's predicted IoU of the chosen candidate."""
        return self.scores[self.candidates.chosen]


def clean_label(label: Any) -> str:
    """A label name as stored: stripped, at most MAX_LABEL characters, ``object`` when empty."""
    text = " ".join(str(label or "").split())[:MAX_LABEL]
    return text or DEFAULT_LABEL


@dataclass(frozen=True)
class Regions:
    """A segment-everything result as the session keeps it (small: no full-resolution masks).

    ``labels``: (h, w) uint16 at the preview size, region ``i + 1`` where its mask is (smaller
    regions over larger ones); ``points``: each region's grid point in full-image px (the
    foreground prompt that gives it back); ``rles``: each region's preview mask (COCO RLE), to
    pick the candidate that matches it; ``timings``: the run's.
    """

    labels: np.ndarray
    points: tuple[tuple[float, float], ...]
    rles: tuple[dict[str, Any], ...]
    scores: tuple[float, ...]
    timings: dict[str, float]
    rev: str = field(default_factory=lambda: uuid.uuid4().hex[:8])


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
    prompts: Prompts = field(default_factory=Prompts)  # of the object being edited
    history: tuple[Step, ...] = ()  # its undo steps
    pending_corner: tuple[float, float] | None = None
    candidates: Candidates | None = None
    edits: tuple[Any, ...] = ()  # edits of its chosen mask (sam_core.core.mask_edits values)
    settings: Settings = field(default_factory=Settings)
    encode_ms: float = 0.0  # time opening the image took (decode + encode, or a cache hit)
    client: str = "server"  # who draws this visitor's clicks: "server" or "browser" (its decoder said ready)
    objects: tuple[AnnotObject, ...] = ()  # committed objects of this image, by id
    current_id: int = 1  # id of the object being edited (a committed one is taken out of ``objects``)
    label: str = DEFAULT_LABEL  # label of the object being edited
    categories: tuple[str, ...] = (DEFAULT_LABEL,)  # label names, kept across images
    polygon: tuple[tuple[float, float], ...] = ()  # vertices of a polygon being drawn, full-image px
    regions: Regions | None = None  # the last segment-everything result on this image

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
        if mode is PromptMode.POLYGON:
            return self.with_vertex(fx, fy), False
        if mode in (PromptMode.REGION, PromptMode.BRUSH, PromptMode.ERASER):
            raise TypeError(f"{mode} clicks are handled by the Studio")
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

    @property
    def step(self) -> Step:
        """The object being edited, as an undo step."""
        return Step(self.prompts, self.edits)

    def _pushed(self) -> tuple[Step, ...]:
        return (*self.history, self.step)[-MAX_HISTORY:]

    def with_vertex(self, x: float, y: float) -> SessionState:
        """Add a polygon vertex (full-image px); at most 1000."""
        if len(self.polygon) >= 1000:
            raise PromptError("A polygon has at most 1000 vertices: close it.")
        return dataclasses.replace(self, polygon=(*self.polygon, (x, y)), pending_corner=None)

    def with_prompts(self, prompts: Prompts) -> SessionState:
        """Replace the prompts (validated against the image), keeping the old step for undo.

        New prompts mean a new decode: the edits of the previous mask do not carry over."""
        prompts.validate(*self.size)
        return dataclasses.replace(self, history=self._pushed(), prompts=prompts, edits=())

    def with_edit(self, edit: Any) -> SessionState:
        """Add an edit of the chosen mask (undo removes it)."""
        if self.candidates is None:
            raise UserError("Nothing to edit yet: click on the object first.")
        return dataclasses.replace(self, history=self._pushed(), edits=(*self.edits, edit))

    def undo(self) -> SessionState:
        """Drop the pending box corner or the last polygon vertex, else go back to the previous step
        (prompts and edits)."""
        if self.pending_corner is not None:
            return dataclasses.replace(self, pending_corner=None)
        if self.polygon:
            return dataclasses.replace(self, polygon=self.polygon[:-1])
        if not self.history:
            return self
        last = self.history[-1]
        return dataclasses.replace(self, prompts=last.prompts, edits=last.edits, history=self.history[:-1])

    def clear(self) -> SessionState:
        """No prompts, edits or candidates for the object being edited (undo brings them back)."""
        return dataclasses.replace(
            self, prompts=Prompts(), edits=(), history=self._pushed(), pending_corner=None, candidates=None, polygon=()
        )

    def fresh(self) -> SessionState:
        """The same visitor (id, model, settings, label names) with no image."""
        return SessionState(
            session_id=self.session_id,
            model_type=self.model_type,
            settings=self.settings,
            client=self.client,
            label=self.label,
            categories=self.categories,
        )

    @property
    def untouched(self) -> bool:
        """An image is open and nothing was done to it yet (opening it again gives this state back)."""
        opened = dataclasses.replace(
            self.fresh(),
            model_type=self.model_type,
            image_key=self.image_key,
            image_path=self.image_path,
            image_name=self.image_name,
            size=self.size,
            scale=self.scale,
            encode_ms=self.encode_ms,
        )
        return self.has_image and self == opened

    # ------------------------------------------------------------------ objects
    @property
    def next_id(self) -> int:
        """The id a new object gets: one more than every id in use."""
        return max([self.current_id, *(o.object_id for o in self.objects)]) + 1

    def object(self, object_id: int) -> AnnotObject:
        for obj in self.objects:
            if obj.object_id == object_id:
                return obj
        raise UserError(f"There is no object {object_id} in this image.")

    def committed(self, obj: AnnotObject) -> SessionState:
        """``obj`` (the object being edited, made by the Studio) joins the objects; a new one starts
        with the same label."""
        if len(self.objects) >= MAX_OBJECTS:
            raise UserError(f"An image holds at most {MAX_OBJECTS} objects.")
        objects = tuple(sorted((*self.objects, obj), key=lambda o: o.object_id))
        categories = self.categories if obj.label in self.categories else (*self.categories, obj.label)
        new = dataclasses.replace(self, objects=objects, categories=categories)
        return new.blank(new.next_id)

    def blank(self, object_id: int) -> SessionState:
        """Start editing a new, empty object ``object_id``."""
        return dataclasses.replace(
            self,
            prompts=Prompts(),
            history=(),
            edits=(),
            pending_corner=None,
            polygon=(),
            candidates=None,
            current_id=object_id,
        )

    def editing(self, object_id: int) -> SessionState:
        """Take committed object ``object_id`` out of the list to edit it (its prompts, candidates,
        choice, edits and history come back). The caller commits the current object first."""
        obj = self.object(object_id)
        return dataclasses.replace(
            self,
            objects=tuple(o for o in self.objects if o.object_id != object_id),
            prompts=obj.prompts,
            history=obj.history,
            edits=obj.edits,
            candidates=obj.candidates,
            pending_corner=None,
            polygon=(),
            current_id=obj.object_id,
            label=obj.label,
        )

    def deleted(self, object_id: int | None = None) -> SessionState:
        """Delete committed object ``object_id``, or (None / the current id) the one being edited."""
        if object_id is None or object_id == self.current_id:
            return self.blank(self.next_id if self.objects else self.current_id)
        self.object(object_id)  # raises when unknown
        return dataclasses.replace(self, objects=tuple(o for o in self.objects if o.object_id != object_id))

    def labelled(self, label: Any, object_id: int | None = None) -> SessionState:
        """Set the label of the object being edited (``object_id`` None or current) or of a committed one."""
        name = clean_label(label)
        categories = self.categories if name in self.categories else (*self.categories, name)
        if object_id is None or object_id == self.current_id:
            return dataclasses.replace(self, label=name, categories=categories)
        obj = self.object(object_id)
        objects = tuple(
            dataclasses.replace(o, label=name, rev=uuid.uuid4().hex[:8]) if o is obj else o for o in self.objects
        )
        return dataclasses.replace(self, objects=objects, categories=categories)
