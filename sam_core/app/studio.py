"""The shared application service behind the UI, the API and the batch runs. No Gradio.

A :class:`Studio` is shared by every visitor of one server: it owns the models, the image
store (decoded pixels keyed by content hash), the run log and a private scratch folder.
Everything that belongs to one visitor is a :class:`SessionState` value, passed in and
returned; the Studio never stores it.

:meth:`Studio.handle` is the one entry point for what a visitor does (an :data:`Event`): it
applies the session transition and decides whether SAM runs again (the run-again policy),
and returns the new session. When SAM runs, the candidates' preview masks and the chosen
mask's metrics are computed once and shared by the run log and the presentation.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sam_core.app.records import make_record
from sam_core.app.session import AnnotObject, Candidates, PromptMode, Regions, SessionState, Settings
from sam_core.core.cache import LRUCache
from sam_core.core.enhance import Clahe, apply_clahe, encoder_key
from sam_core.core.errors import PromptError, UserError
from sam_core.core.evaluation import iou
from sam_core.core.geometry import (
    exclusive_in_order,
    mask_area,
    mask_metrics,
    postprocess_mask,
    rle_decode,
    rle_encode,
)
from sam_core.core.images import DEFAULT_MAX_PIXELS, LoadedImage, image_hash, image_stats, load_image, preview
from sam_core.core.mask_edits import MaskEdit, Stroke, apply_edits
from sam_core.core.polygon_prompt import polygon_to_prompts
from sam_core.core.prompts import Prompts
from sam_core.core.sizes import ImageSize
from sam_core.model.everything import EverythingSettings, decode_ms_per_point, estimate_ms, segment_everything
from sam_core.model.results import SegmentResult
from sam_core.model.segmenter import Embedding, Segmenter, input_size
from sam_core.runlog import RunLog, RunRecord

log = logging.getLogger(__name__)

PREVIEW_SIDE = 1536  # long side of the image the browser shows (and of the masks drawn on it)

Progress = Callable[[float, str], None]  # (fraction 0..1, message)


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Click:
    """A click at preview pixel (x, y) in the given prompt mode."""

    x: float
    y: float
    mode: PromptMode


@dataclass(frozen=True)
class Undo:
    """Undo the pending box corner, else the last prompt change."""


@dataclass(frozen=True)
class Clear:
    """Remove every prompt and the candidates."""


@dataclass(frozen=True)
class SetPrompts:
    """Replace the prompts (full-image pixels), e.g. from the edited prompt table."""

    prompts: Prompts


@dataclass(frozen=True)
class Choose:
    """Choose candidate ``index``."""

    index: int


@dataclass(frozen=True)
class ChangeSettings:
    settings: Settings


@dataclass(frozen=True)
class SwitchModel:
    model_type: str


@dataclass(frozen=True)
class NewObject:
    """Commit the object being edited (its exact full-resolution mask is computed) and start the next."""


@dataclass(frozen=True)
class SelectObject:
    """Edit committed object ``object_id`` again (the object being edited is committed first)."""

    object_id: int


@dataclass(frozen=True)
class DeleteObject:
    """Delete committed object ``object_id``; None: discard the object being edited."""

    object_id: int | None = None


@dataclass(frozen=True)
class SetLabel:
    """Name the object being edited (``object_id`` None) or a committed one."""

    label: str
    object_id: int | None = None


@dataclass(frozen=True)
class ClosePolygon:
    """Turn the polygon being drawn into prompts (its box + points inside) and decode them."""


@dataclass(frozen=True)
class RunEverything:
    """Segment everything on the session's image (SAM's automatic mask generator)."""

    settings: EverythingSettings
    full_resolution: bool = False


@dataclass(frozen=True)
class HideRegions:
    """Forget the segment-everything result."""


@dataclass(frozen=True)
class EditMask:
    """Edit the chosen mask of the object being edited (a :mod:`sam_core.core.mask_edits` value)."""

    edit: MaskEdit


Event = (
    Click
    | Undo
    | Clear
    | SetPrompts
    | Choose
    | ChangeSettings
    | SwitchModel
    | NewObject
    | SelectObject
    | DeleteObject
    | SetLabel
    | EditMask
    | ClosePolygon
    | RunEverything
    | HideRegions
)

CLOSE_POLYGON_PX = 12.0  # a polygon click this close to the first vertex (preview px) closes it


# --------------------------------------------------------------------------- images


@dataclass(frozen=True)
class ImageEntry:
    """A decoded image shared by all sessions. ``preview``: (h, w, 3), ``scale`` = h / H."""

    key: str
    image: LoadedImage
    preview: np.ndarray
    scale: float
    stats: dict[str, Any]  # image_stats(preview): the run log's input signals

    @property
    def preview_size(self) -> ImageSize:
        return ImageSize.of(self.preview)

    @property
    def nbytes(self) -> int:
        return int(self.image.rgb.nbytes + (0 if self.preview is self.image.rgb else self.preview.nbytes))

    def shrunk(self, side: int) -> tuple[np.ndarray, float]:
        """The preview shrunk to a long side of ``side`` (made once per entry and side), and its
        scale (its px / full-image px). For candidate thumbnails on every click."""
        cache: dict[int, tuple[np.ndarray, float]] = self.__dict__.setdefault("_shrunk", {})
        if side not in cache:
            small, s = preview(self.preview, side)
            small.flags.writeable = False
            cache[side] = (small, self.scale * s)
        return cache[side]

    def encoder_input(self, clahe: Clahe | None) -> tuple[np.ndarray, str]:
        """(The (H, W, 3) image the encoder sees, its embedding key): the image itself and its
        key, or with ``clahe`` the enhanced image (made once per entry and setting) and
        ``<key>-<clahe key>``, so an enhanced embedding never mixes with the plain one."""
        if clahe is None:
            return self.image.rgb, self.key
        cache: dict[str, np.ndarray] = self.__dict__.setdefault("_enhanced", {})
        key = clahe.key()
        if key not in cache:
            enhanced = apply_clahe(self.image.rgb, clahe)
            enhanced.flags.writeable = False
            cache[key] = enhanced
        return cache[key], encoder_key(self.key, clahe)

    def named(self, name: str | None) -> ImageEntry:
        """The shared entry (keyed by pixels) as one caller sees it: with that caller's own file
        name, never the name under which another visitor first uploaded the same pixels."""
        if not name or self.image.name == name:
            return self
        return dataclasses.replace(self, image=dataclasses.replace(self.image, name=name))


def derive_candidates(
    result: SegmentResult,
    entry: ImageEntry,
    settings: Settings,
    chosen: int,
    mask_input: np.ndarray | None = None,
    *,
    edits: tuple[MaskEdit, ...] = (),
    taken: np.ndarray | None = None,
) -> Candidates:
    """Preview masks per ``settings`` (threshold, islands, holes) and the chosen mask's metrics.

    ``mask_input``: the (1, 256, 256) logits the decoder was given (refinement), kept so that an
    export can replay the decode exactly. ``edits``: applied to the chosen mask (sizes in
    full-image px); ``taken``: (h, w) bool preview pixels of earlier objects, removed from it
    afterwards (*Exclude committed objects*). The metrics are the final mask's.
    """
    masks = result.preview_masks(entry.preview_size, threshold=settings.threshold)
    if settings.min_island or settings.min_hole:
        area = entry.scale**2  # the settings are in full-image px
        masks = np.stack(
            [
                postprocess_mask(m, min_island=int(settings.min_island * area), min_hole=int(settings.min_hole * area))
                for m in masks
            ]
        )
    masks.flags.writeable = False
    final = masks[chosen]
    if edits:
        final = apply_edits(final, edits, scale=entry.scale)
    if taken is not None:
        final = final & ~taken
    final.flags.writeable = False
    metrics = mask_metrics(final, scale=entry.scale)
    return Candidates(result, masks, settings.mask_key, chosen, metrics, mask_input, final)


def _shrink(rgb: np.ndarray, size: ImageSize) -> np.ndarray:
    return cv2.resize(rgb, (size.width, size.height), interpolation=cv2.INTER_AREA)


def _shrink_mask(mask: np.ndarray, size: ImageSize) -> np.ndarray:
    """(H, W) bool -> ``size`` bool: pixels at least half covered (area resampling)."""
    small = cv2.resize(mask.view(np.uint8) * np.uint8(255), (size.width, size.height), interpolation=cv2.INTER_AREA)
    return small >= 128


def _nbytes(value: Any) -> int:
    """What a ``Studio.renders`` value holds in memory (arrays, or tuples of them), at least 1."""
    if isinstance(value, tuple):
        return max(1, sum(_nbytes(v) for v in value))
    return int(getattr(value, "nbytes", 0)) or 1


class Studio:
    """Shared application service: models, image store, run log, scratch folder."""

    def __init__(
        self,
        segmenter: Segmenter,
        *,
        outputs_dir: str | os.PathLike[str] = "outputs",
        max_pixels: int = DEFAULT_MAX_PIXELS,
        image_cache_mb: int = 2048,
        model_loader: Callable[[str, Progress | None], Segmenter] | None = None,
    ) -> None:
        self.default_model = segmenter.model_type
        self._models: dict[str, Segmenter] = {segmenter.model_type: segmenter}
        self._models_lock = threading.Lock()
        self._model_loader = model_loader
        self._decode_ms_per_point: dict[str, float] = {}  # model id -> the decoder's cost per point (estimates)
        self.outputs_dir = Path(outputs_dir)
        self.max_pixels = max_pixels
        self.images: LRUCache[ImageEntry] = LRUCache(64, image_cache_mb << 20, lambda e: e.nbytes)
        # Preview-size renders shared by every visitor, keyed by what they show (e.g. the
        # committed objects over an image): made once per change, not once per click.
        self.renders: LRUCache[Any] = LRUCache(64, 512 << 20, _nbytes)
        self.runlog = RunLog(self.outputs_dir / "logs")
        # Called with every record log_run appends (e.g. the Prometheus exporter); errors are logged.
        self.observers: list[Callable[[RunRecord], None]] = []
        # Private scratch folder for renders and exports, deleted at exit.
        self.render_dir = Path(tempfile.mkdtemp(prefix="sam-studio-"))
        atexit.register(shutil.rmtree, self.render_dir, ignore_errors=True)

    # ----------------------------------------------------------------- models
    def segmenter(self, model_type: str | None = None, progress: Progress | None = None) -> Segmenter:
        """The Segmenter for ``model_type`` (loaded on first use, downloads included)."""
        model_type = model_type or self.default_model
        seg = self._models.get(model_type)  # loaded models need no lock: clicks never wait on a download
        if seg is not None:
            return seg
        with self._models_lock:  # one load at a time
            seg = self._models.get(model_type)
            if seg is not None:
                return seg
            if self._model_loader is None:
                raise UserError(f"This server only serves {self.default_model}.")
            if progress:
                progress(0.0, f"Loading {model_type} (downloading the weights if needed)…")
            seg = self._model_loader(model_type, progress)
            self._models[model_type] = seg
            return seg

    # ----------------------------------------------------------------- images
    def load_entry(self, path: str | os.PathLike[str], name: str | None = None) -> ImageEntry:
        """Decode and validate an image file into the shared store (keyed by pixel hash)."""
        loaded = load_image(path, name=name, max_pixels=self.max_pixels)
        key = image_hash(loaded.rgb)

        def make() -> ImageEntry:
            small, scale = preview(loaded.rgb, PREVIEW_SIDE)
            return ImageEntry(key, loaded, small, scale, image_stats(small))  # stats on the preview: cheap

        entry, _ = self.images.get_or_create(key, make)
        return entry.named(loaded.name)

    def entry(self, state: SessionState) -> ImageEntry:
        """The session's decoded image, reloaded from its upload if the store evicted it."""
        if state.image_key is None:
            raise UserError("Upload an image first.")
        entry = self.images.get(state.image_key)
        if entry is None:
            if not state.image_path or not Path(state.image_path).exists():
                raise UserError("The image has expired from the server; please upload it again.")
            entry = self.load_entry(state.image_path, state.image_name)
        return entry.named(state.image_name)

    def open_image(
        self, state: SessionState | None, path: str, name: str | None = None, progress: Progress | None = None
    ) -> SessionState:
        """Load an upload into a fresh session state (keeping the session id and settings)."""
        t0 = time.perf_counter()
        entry = self.load_entry(path, name)
        old = state or SessionState()
        new = dataclasses.replace(
            old.fresh(),
            model_type=old.model_type or self.default_model,
            image_key=entry.key,
            image_path=str(path),
            image_name=entry.image.name,
            size=entry.image.size,
            scale=entry.scale,
        )
        hit = self.ensure_embedding(new, progress)
        new = dataclasses.replace(new, encode_ms=(time.perf_counter() - t0) * 1000)
        log.info("opened %s (%s) cache_hit=%s in %.0f ms", entry.image.name, entry.image.size, hit, new.encode_ms)
        return new

    def ensure_embedding(self, state: SessionState, progress: Progress | None = None) -> bool:
        """Run the image encoder for the session's image and model unless cached; returns cache_hit."""
        entry = self.entry(state)
        seg = self.segmenter(state.model_type, progress)
        clahe = state.settings.enhancement
        if progress and not seg.is_cached(entry.encoder_input(clahe)[1]):
            what = "" if clahe is None else f" (contrast-enhanced: CLAHE clip {clahe.clip_limit:g})"
            progress(0.3, f"Encoding the image{what} with {seg.model_type}…")
        _, hit = self.embed(state, entry, seg)
        return hit

    def embed(
        self, state: SessionState, entry: ImageEntry | None = None, seg: Segmenter | None = None
    ) -> tuple[Embedding, bool]:
        """The embedding of the session's image for its model and pre-processing (cached): (embedding, cache_hit)."""
        entry = entry or self.entry(state)
        seg = seg or self.segmenter(state.model_type)
        rgb, key = entry.encoder_input(state.settings.enhancement)
        return seg.embed(rgb, image_key=key)

    # ----------------------------------------------------------------- events
    def handle(
        self, state: SessionState, event: Event, *, progress: Progress | None = None, source: str = "ui"
    ) -> SessionState:
        """Apply ``event`` to ``state`` and run SAM again when the event calls for it.

        The policy: a completed click, new prompts, an undo or a multimask change decode again
        (on the cached embedding); a threshold or clean-up change re-derives the masks from the
        same logits; a choice re-measures the chosen mask; a model switch encodes the image
        for the new model and decodes the current prompts. Each decode logs one run record.
        """
        match event:
            case Click(x, y, PromptMode.REGION):
                return self.adopt_region(state, x, y, source=source)
            case Click(x, y, PromptMode.BRUSH | PromptMode.ERASER as mode):
                s = state.scale
                fx, fy = x / s, y / s
                stroke = Stroke(((fx, fy),), state.settings.brush_px, mode is PromptMode.ERASER)
                return self.rederive(state.with_edit(stroke))
            case Click(x, y, PromptMode.POLYGON):
                if len(state.polygon) >= 3:
                    x0, y0 = state.polygon[0]
                    if math.hypot(x0 * state.scale - x, y0 * state.scale - y) <= CLOSE_POLYGON_PX:
                        return self.handle(state, ClosePolygon(), source=source)
                return state.click(x, y, PromptMode.POLYGON)[0]
            case ClosePolygon():
                if len(state.polygon) < 3:
                    raise PromptError("A polygon needs at least 3 vertices: click around the object first.")
                derived = polygon_to_prompts(state.polygon, state.size, n_outside=state.settings.polygon_outside)
                state = dataclasses.replace(state, polygon=())
                return self.run(state.with_prompts(derived.prompts()), source=source)
            case RunEverything(settings, full_resolution):
                return self.segment_everything(state, settings, progress, full_resolution=full_resolution)
            case HideRegions():
                return dataclasses.replace(state, regions=None)
            case Click(x, y, mode):
                state, complete = state.click(x, y, mode)
                return self.run(state, source=source) if complete else state
            case SetPrompts(prompts):
                return self.run(state.with_prompts(prompts), source=source)
            case Undo():
                undone = state.undo()
                if not undone.has_image or undone.step == state.step:  # only a pending corner went
                    return undone
                if undone.prompts == state.prompts:  # an edit of the mask was undone
                    return self.rederive(undone)
                return self.run(undone, source=source)
            case Clear():
                return state.clear()
            case Choose(index):
                cands = state.candidates
                if cands is None or not 0 <= index < len(cands.result.scores) or index == cands.chosen:
                    return state
                return dataclasses.replace(state, candidates=self._derive(state, cands.result, int(index)))
            case ChangeSettings(settings):
                old = state.settings
                state = dataclasses.replace(state, settings=settings)
                if settings.clahe != old.clahe and state.has_image:
                    self.ensure_embedding(state, progress)  # the encoder sees another image
                    return self.run(state, source=source)
                if settings.multimask != old.multimask and state.has_image:
                    return self.run(state, source=source)
                if settings.mask_key != old.mask_key or settings.exclude != old.exclude:
                    return self.rederive(state)
                return state
            case NewObject():
                if state.candidates is None:
                    raise UserError("Nothing to commit yet: click on an object first, then New object (n).")
                return state.committed(self.make_object(state))
            case SelectObject(object_id):
                if object_id == state.current_id:
                    return state
                state.object(object_id)  # a clear message when it does not exist
                if state.candidates is not None:
                    state = state.committed(self.make_object(state))
                return self.rederive(state.editing(object_id))
            case DeleteObject(object_id):
                return state.deleted(object_id)
            case SetLabel(label, object_id):
                return state.labelled(label, object_id)
            case EditMask(edit):
                return self.rederive(state.with_edit(edit))
            case SwitchModel(model_type):
                seg = self.segmenter(model_type, progress)
                state = dataclasses.replace(state, model_type=seg.model_type, candidates=None)
                if not state.has_image:
                    return state
                self.ensure_embedding(state, progress)
                return self.run(state, source=source)
        raise TypeError(f"unknown event {event!r}")

    def run(
        self,
        state: SessionState,
        *,
        source: str = "ui",
        chosen: int | None = None,
        browser_decode_ms: float | None = None,
    ) -> SessionState:
        """Decode the current prompts on the cached embedding; logs one run record.

        ``chosen``: the candidate to choose (default: the best score). ``browser_decode_ms``: the
        visitor's browser already decoded these prompts and drew them (it reported this decoder
        time); the record is then marked ``decoder="browser"`` with the browser's time.
        """
        if state.prompts.empty:
            return dataclasses.replace(state, candidates=None)
        entry = self.entry(state)
        seg = self.segmenter(state.model_type)
        mask_input = None
        if state.settings.refine and state.candidates is not None:
            mask_input = state.candidates.result.low_res_logits[state.chosen][None]
        t0 = time.perf_counter()
        emb, hit = self.embed(state, entry, seg)
        encode_ms = (time.perf_counter() - t0) * 1000
        result = seg.decode(
            emb,
            state.prompts,
            multimask=state.settings.multimask,
            mask_input=mask_input,
            encode_ms=encode_ms,
            cache_hit=hit,
        )
        decoder = result.timings.get("decoder", "torch")
        if browser_decode_ms is not None:
            decoder = "browser"
            result = dataclasses.replace(
                result, timings={**result.timings, "decoder": decoder, "decode_ms": round(float(browser_decode_ms), 2)}
            )
        index = result.best_index if chosen is None or not 0 <= chosen < len(result.scores) else int(chosen)
        cands = derive_candidates(
            result, entry, state.settings, index, mask_input, edits=state.edits, taken=self.taken(state, entry)
        )
        new = dataclasses.replace(state, candidates=cands)
        self.log_run(new, entry, seg, source, cands.metrics, decoder=decoder)
        return new

    def exact_result(self, state: SessionState) -> SegmentResult:
        """The session's result as the torch decoder gives it (``SamPredictor``'s numbers).

        Clicks may have been decoded by onnxruntime or in the browser (equal within ~1e-4 on
        the logits); exports decode the same prompts (and the same refinement input) again with
        torch unless the session's result already came from it.
        """
        cands = state.candidates
        if cands is None:
            raise UserError("Nothing to export yet: click on the image first.")
        if cands.result.timings.get("decoder", "torch") == "torch":
            return cands.result
        entry = self.entry(state)
        seg = self.segmenter(state.model_type)
        emb, hit = self.embed(state, entry, seg)
        return seg.decode(
            emb,
            state.prompts,
            multimask=state.settings.multimask,
            mask_input=cands.mask_input,
            cache_hit=hit,
            backend="torch",
        )

    def _derive(
        self, state: SessionState, result: SegmentResult, chosen: int, entry: ImageEntry | None = None
    ) -> Candidates:
        old = state.candidates
        mask_input = old.mask_input if old is not None and old.result is result else None
        entry = entry or self.entry(state)
        return derive_candidates(
            result, entry, state.settings, chosen, mask_input, edits=state.edits, taken=self.taken(state, entry)
        )

    def rederive(self, state: SessionState) -> SessionState:
        """The same decode, its masks derived again (settings, edits or earlier objects changed)."""
        cands = state.candidates
        if cands is None:
            return state
        return dataclasses.replace(state, candidates=self._derive(state, cands.result, cands.chosen))

    # ----------------------------------------------------------------- segment everything
    def segment_everything(
        self,
        state: SessionState,
        settings: EverythingSettings,
        progress: Progress | None = None,
        *,
        full_resolution: bool = False,
    ) -> SessionState:
        """Run SAM's automatic mask generator on the session's image and keep its regions.

        The image's cached embedding is reused (no encoder run without crops). By default the
        generator's masks are made at the preview size (<= 1536 px: it upsamples three masks per
        grid point, which at 20 MP costs ~0.5 s per point on a CPU); ``full_resolution`` makes
        them at the image's size. Crops are encoded from the same image (each one an encoder run).
        """
        entry = self.entry(state)
        seg = self.segmenter(state.model_type)
        self.ensure_embedding(state, progress)
        emb, _ = self.embed(state, entry, seg)
        rgb, key = entry.encoder_input(state.settings.enhancement)
        small = entry.preview_size
        if not full_resolution and entry.scale < 1.0 and input_size(small) == emb.input_size:
            # The same 1024-px encoder input: the embedding serves the preview size as well.
            rgb = entry.preview if state.settings.enhancement is None else _shrink(rgb, small)
            emb = dataclasses.replace(emb, image_size=small)
            scale = entry.scale
        else:
            scale = 1.0

        def report(f: float, msg: str) -> None:
            if progress:
                progress(f, f"Segment everything: {msg}")

        result = segment_everything(seg, rgb, image_key=key, settings=settings, progress=report, embedding=emb)
        labels = np.zeros(small.hw, np.uint16)
        rles = []
        for i, region in enumerate(result.regions):
            mask = region.mask if region.mask.shape == small.hw else _shrink_mask(region.mask, small)
            labels[mask] = i + 1
            rles.append(rle_encode(mask))
        labels.flags.writeable = False
        regions = Regions(
            labels=labels,
            points=tuple((x / scale, y / scale) for x, y in (r.point for r in result.regions)),
            rles=tuple(rles),
            scores=tuple(r.predicted_iou for r in result.regions),
            timings={**result.timings, "mask_scale": scale},
        )
        log.info("segment everything: %d regions in %.0f ms", len(result.regions), result.timings["total_ms"])
        return dataclasses.replace(state, regions=regions)

    def everything_estimate(
        self, state: SessionState, settings: EverythingSettings, *, full_resolution: bool = False
    ) -> float:
        """An estimate (ms) of :meth:`segment_everything` for the session's image on this server,
        from the decoder's measured cost per point (measured once per model) and the last
        encoder time (for crops). Not a measurement: the tests and benchmarks/everything.py
        compare it with one."""
        seg = self.segmenter(state.model_type)
        with self._models_lock:
            per_point = self._decode_ms_per_point.get(seg.model_id)
        if per_point is None:
            per_point = decode_ms_per_point(seg, points=8, repeats=1)  # ~1-2 s once per model on a CPU
            with self._models_lock:
                self._decode_ms_per_point[seg.model_id] = per_point
        entry = self.entry(state)
        size = entry.image.size if full_resolution or entry.scale == 1.0 else entry.preview_size
        encode_ms = max(1.0, state.encode_ms)
        return estimate_ms(settings, size, decode_ms_per_point=per_point, encode_ms=encode_ms)

    def adopt_region(self, state: SessionState, x: float, y: float, *, source: str = "ui") -> SessionState:
        """The segment-everything region under preview pixel (x, y) becomes the object being edited:
        the object being edited is committed first, the region's grid point becomes its foreground
        prompt, and of the candidates that point decodes to, the one closest to the region (IoU)
        is chosen. It can then be refined like any other object."""
        regions = state.regions
        if regions is None:
            raise UserError("Run Segment everything first, then click a region to make it an object.")
        h, w = regions.labels.shape
        rid = int(regions.labels[min(max(int(y), 0), h - 1), min(max(int(x), 0), w - 1)])
        if rid == 0:
            raise UserError("No region here: click inside a coloured region.")
        if state.candidates is not None:
            state = state.committed(self.make_object(state))
        px, py = regions.points[rid - 1]
        state = self.run(state.with_prompts(Prompts.parse([(px, py, 1)])), source=source)
        cands = state.candidates
        if cands is None:
            return state
        region = rle_decode(regions.rles[rid - 1])
        best = int(np.argmax([iou(m, region) for m in cands.masks]))
        return state if best == cands.chosen else self.handle(state, Choose(best), source=source)

    # ----------------------------------------------------------------- objects
    def taken(self, state: SessionState, entry: ImageEntry) -> np.ndarray | None:
        """(h, w) bool preview pixels of the objects before the one being edited (ids below its
        id), when *Exclude committed objects* is on; None otherwise or when there are none."""
        key = self.taken_key(state, entry)
        if key is None:
            return None

        def union() -> np.ndarray:
            taken = np.zeros(entry.preview.shape[:2], bool)
            for o in state.objects:
                if o.object_id < state.current_id:
                    taken |= o.mask
            taken.flags.writeable = False
            return taken

        value, _ = self.renders.get_or_create(key, union)  # once per commit, not per click
        return value

    def taken_key(self, state: SessionState, entry: ImageEntry) -> tuple[Any, ...] | None:
        """What :meth:`taken` depends on (the image, the earlier objects and their revisions), a
        cache key; None when nothing is taken."""
        if not state.settings.exclude:
            return None
        earlier = tuple((o.object_id, o.rev) for o in state.objects if o.object_id < state.current_id)
        return ("taken", entry.key, earlier) if earlier else None

    def make_object(self, state: SessionState) -> AnnotObject:
        """The object being edited as a committed object: its exact full-resolution mask (the
        torch decoder, the mask settings, its edits; not the exclusion rule, which is applied
        by id order wherever objects are combined) as COCO RLE, and its preview mask."""
        cands = state.candidates
        if cands is None:
            raise UserError("Nothing to commit yet: click on an object first.")
        entry = self.entry(state)
        exact = self.exact_result(state)
        full = self.full_mask(state, result=exact, exclusive=False)
        preview_mask = cands.masks[cands.chosen]
        if state.edits:
            preview_mask = apply_edits(preview_mask, state.edits, scale=entry.scale)
        preview_mask = np.array(preview_mask, bool)
        preview_mask.flags.writeable = False
        return AnnotObject(
            object_id=state.current_id,
            label=state.label,
            prompts=state.prompts,
            history=state.history,
            candidates=cands,
            edits=state.edits,
            settings=state.settings,
            mask=preview_mask,
            rle=rle_encode(full),
            area=mask_area(full),
            scores=tuple(float(v) for v in exact.scores),
        )

    def object_masks(self, state: SessionState) -> list[tuple[AnnotObject, np.ndarray]]:
        """Every object of the image with its final full-resolution (H, W) bool mask, by id:
        the committed ones and the one being edited (when it has a mask). With *Exclude committed
        objects*, each mask loses the pixels of every object with a smaller id."""
        objects = self.all_objects(state)
        masks = [rle_decode(o.rle) for o in objects]
        if state.settings.exclude:
            masks = list(exclusive_in_order(masks))
        return list(zip(objects, masks, strict=True))

    def all_objects(self, state: SessionState) -> list[AnnotObject]:
        """The committed objects and the one being edited (when it has a mask), by id."""
        objects = list(state.objects)
        if state.candidates is not None:
            objects.append(self.make_object(state))
        return sorted(objects, key=lambda o: o.object_id)

    def log_run(
        self,
        state: SessionState,
        entry: ImageEntry,
        seg: Segmenter,
        source: str,
        metrics: dict[str, Any],
        *,
        decoder: str | None = None,
    ) -> int | None:
        """Append the session's current run to the run log; a failing log never fails the run.

        ``decoder``: where the logged masks were decoded (default: the result's own decoder).
        """
        if state.result is None:
            return None
        try:
            decoder = decoder or state.result.timings.get("decoder", "torch")
            record = make_record(state, entry, seg, source, metrics, decoder=decoder)
            row = self.runlog.append(record)
        except Exception:  # the log must never take a segmentation down with it
            log.exception("could not append to the run log")
            return None
        for observe in self.observers:
            try:
                observe(record)
            except Exception:
                log.exception("a run-log observer failed")
        return row

    # ----------------------------------------------------------------- masks
    def full_mask(
        self,
        state: SessionState,
        index: int | None = None,
        *,
        result: SegmentResult | None = None,
        exclusive: bool = True,
    ) -> np.ndarray:
        """(H, W) bool chosen (or ``index``) mask at full resolution, as shown: post-processed per
        settings, with the object's edits and (``exclusive`` and *Exclude committed objects* on)
        without the pixels of earlier objects.

        Computed from ``result`` when given, else from :meth:`exact_result` (torch's decode).
        """
        if state.result is None:
            raise UserError("Nothing to export yet: click on the image first.")
        i = state.chosen if index is None else index
        mask = (result or self.exact_result(state)).full_mask(i, threshold=state.settings.threshold)
        s = state.settings
        if s.min_island or s.min_hole:
            mask = postprocess_mask(mask, min_island=s.min_island, min_hole=s.min_hole)
        if state.edits:
            mask = apply_edits(mask, state.edits, scale=1.0)
        if exclusive and s.exclude:
            for obj in state.objects:
                if obj.object_id < state.current_id:
                    mask &= ~rle_decode(obj.rle)
        return mask
