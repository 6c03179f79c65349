"""The application logic behind the UI and the API, free of Gradio.

A :class:`Studio` is shared by every visitor of one server: it owns the models, the shared
image store (decoded pixels keyed by content hash), the run log and the output folders.
Everything that belongs to one visitor lives in a :class:`SessionState` value that the UI
keeps in ``gr.State`` and passes in and out of each call; the Studio never stores it.

Coordinate spaces: ``SessionState.prompts`` are full-image pixels; clicks arrive in preview
pixels (the image the browser shows) and are divided by ``SessionState.scale``.
"""

from __future__ import annotations

import atexit
import dataclasses
import errno
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from sam_core.core.cache import LRUCache
from sam_core.model.segmenter import Segmenter, SegmentResult
from sam_core.core.errors import ImageError, PromptError, ResourceError, UserError
from sam_core.core.geometry import mask_metrics, mask_polygons, postprocess_mask, rle_encode
from sam_core.core.images import DEFAULT_MAX_PIXELS, LoadedImage, image_hash, image_stats, load_image, preview
from sam_core.core.prompts import Prompts
from sam_core.core.render import (PALETTE, candidate_thumbnails, cutout_rgba, draw_prompts, encode_jpeg, encode_mask_png,
                     encode_png, overlay_mask)
from sam_core.runlog import RunLog

log = logging.getLogger(__name__)

MODE_FG = "Foreground point"
MODE_BG = "Background point"
MODE_BOX = "Box (2 clicks)"
MODES = (MODE_FG, MODE_BG, MODE_BOX)
PREVIEW_SIDE = 1536
THUMB_SIDE = 320
MAX_HISTORY = 200  # undo steps kept per session


def write_atomic(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temp file in the same folder and ``os.replace``.

    A failed write (disk full, permissions) leaves nothing under ``path`` or the temp name and
    raises :class:`ResourceError` naming only the file, not the server's folders.
    """
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as err:
        log.error("could not write %s: %s", path, err)
        raise ResourceError(
            f"Could not write {path.name}: {err.strerror or type(err).__name__}"
            + (" — the server's disk is full." if err.errno == errno.ENOSPC else ".")
        ) from None
    finally:
        if tmp is not None and Path(tmp).exists():
            Path(tmp).unlink(missing_ok=True)
    return path


def safe_stem(name: str, default: str = "image") -> str:
    """A file-system-safe stem derived from a display name (never a path)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem).strip("._-")[:60]
    return stem or default


def _prune_dir(folder: Path, older_than_s: float, keep: set[str] = frozenset()) -> None:
    """Delete entries of ``folder`` older than ``older_than_s`` seconds, except ``keep``.

    Rendered files only need to live until Gradio has copied them into its cache.
    """
    if not folder.is_dir():
        return
    cutoff = time.time() - older_than_s
    for p in folder.iterdir():
        try:
            if str(p) in keep or p.stat().st_mtime >= cutoff:
                continue
            if p.is_dir():  # an old export-* / api request folder
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        except FileNotFoundError:  # pruned meanwhile by another call
            pass


@dataclass(frozen=True)
class ImageEntry:
    """A decoded image shared by all sessions. ``preview``: (h, w, 3), ``scale`` = h / H."""

    key: str
    image: LoadedImage
    preview: np.ndarray
    scale: float
    stats: dict[str, float]

    @property
    def nbytes(self) -> int:
        return self.image.rgb.nbytes + (0 if self.preview is self.image.rgb else self.preview.nbytes)


def _own_name(entry: ImageEntry, name: str) -> ImageEntry:
    """The shared entry (keyed by pixels) as one caller sees it: with that caller's own file name,
    never the name under which another visitor first uploaded the same pixels."""
    if not name or entry.image.name == name:
        return entry
    return dataclasses.replace(entry, image=dataclasses.replace(entry.image, name=name))


@dataclass
class Settings:
    """Per-session options. Sizes are in full-image pixels."""

    multimask: bool = True
    threshold: float = 0.0
    alpha: float = 0.5
    min_island: int = 0
    min_hole: int = 0
    refine: bool = False


@dataclass
class SessionState:
    """Everything one visitor has: image reference, prompts, candidates, choices."""

    session_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    model_type: str | None = None
    image_key: str | None = None
    image_path: str | None = None  # where the upload lives, to reload if the store evicted it
    image_name: str = ""
    size: tuple[int, int] = (0, 0)  # (W, H) full image
    scale: float = 1.0  # preview px / full px
    prompts: Prompts = field(default_factory=Prompts)
    history: list[Prompts] = field(default_factory=list)
    pending_corner: tuple[float, float] | None = None
    result: SegmentResult | None = None
    chosen: int = 0
    settings: Settings = field(default_factory=Settings)
    encode_ms: float = 0.0  # time open_image took (decode + encode, or a cache hit)

    @property
    def has_image(self) -> bool:
        return self.image_key is not None


@dataclass
class View:
    """What the UI shows after a call. Image fields are file paths written for the browser."""

    input_image: str | None
    gallery: list[tuple[str, str]]
    selected: int | None
    annotated: tuple[str, list[tuple[str, str]]] | None
    metrics: dict[str, Any]
    rows: list[list[Any]]
    status: str


class Studio:
    """Shared application service: models, image store, run log, outputs."""

    def __init__(
        self,
        segmenter: Segmenter,
        *,
        outputs_dir: str | os.PathLike = "outputs",
        max_pixels: int = DEFAULT_MAX_PIXELS,
        image_cache_mb: int = 2048,
        model_loader: Callable[[str, Callable[[float, str], None] | None], Segmenter] | None = None,
    ) -> None:
        self.default_model = segmenter.model_type
        self._models: dict[str, Segmenter] = {segmenter.model_type: segmenter}
        self._models_lock = threading.Lock()
        self._model_loader = model_loader
        self.outputs_dir = Path(outputs_dir)
        self.max_pixels = max_pixels
        self.images: LRUCache[ImageEntry] = LRUCache(64, image_cache_mb << 20, lambda e: e.nbytes)
        self.runlog = RunLog(self.outputs_dir / "logs")
        self.render_dir = Path(tempfile.mkdtemp(prefix="sam-studio-"))
        atexit.register(shutil.rmtree, self.render_dir, ignore_errors=True)

    # ----------------------------------------------------------------- models
    def segmenter(self, model_type: str | None = None, progress: Callable[[float, str], None] | None = None) -> Segmenter:
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
    def _load_entry(self, path: str | os.PathLike, name: str | None) -> ImageEntry:
        loaded = load_image(path, name=name, max_pixels=self.max_pixels)
        key = image_hash(loaded.rgb)

        def make() -> ImageEntry:
            small, scale = preview(loaded.rgb, PREVIEW_SIDE)
            return ImageEntry(key, loaded, small, scale, image_stats(small))  # stats on the preview: cheap

        entry, _ = self.images.get_or_create(key, make)
        return _own_name(entry, loaded.name)

    def entry(self, state: SessionState) -> ImageEntry:
        """The session's decoded image, reloaded from its upload if the store evicted it."""
        if state.image_key is None:
            raise UserError("Upload an image first.")
        entry = self.images.get(state.image_key)
        if entry is None:
            if not state.image_path or not Path(state.image_path).exists():
                raise UserError("The image has expired from the server; please upload it again.")
            entry = self._load_entry(state.image_path, state.image_name)
        return _own_name(entry, state.image_name)

    def open_image(self, state: SessionState | None, path: str, name: str | None = None,
                   progress: Callable[[float, str], None] | None = None) -> SessionState:
        """Load an upload into a fresh session state (keeping the session id and settings)."""
        t0 = time.perf_counter()
        entry = self._load_entry(path, name)
        old = state or SessionState()
        new = SessionState(session_id=old.session_id, model_type=old.model_type or self.default_model,
                           settings=old.settings)
        new.image_key, new.image_path, new.image_name = entry.key, str(path), entry.image.name
        new.size, new.scale = entry.image.size, entry.scale
        hit = self.ensure_embedding(new, progress)
        new.encode_ms = (time.perf_counter() - t0) * 1000
        log.info("opened %s (%dx%d) cache_hit=%s in %.0f ms", entry.image.name, *entry.image.size, hit, new.encode_ms)
        return new

    def ensure_embedding(self, state: SessionState, progress: Callable[[float, str], None] | None = None) -> bool:
        """Run the image encoder for the session's image and model unless cached; returns cache_hit."""
        entry = self.entry(state)
        seg = self.segmenter(state.model_type, progress)
        if progress and not seg.is_cached(entry.key):
            progress(0.3, f"Encoding the image with {seg.model_type}…")
        _, hit = seg.embed(entry.image.rgb, image_key=entry.key)
        return hit

    # ----------------------------------------------------------------- prompts
    def click(self, state: SessionState, x: float, y: float, mode: str) -> tuple[SessionState, bool]:
        """Add a click at preview pixel (x, y). Returns (state, prompts_complete)."""
        if not state.has_image:
            raise UserError("Upload an image (or pick an example) before clicking.")
        w, h = state.size
        fx = min(max(x / state.scale, 0.0), float(w))
        fy = min(max(y / state.scale, 0.0), float(h))
        fx, fy = round(fx, 1), round(fy, 1)
        if mode == MODE_BOX:
            if state.pending_corner is None:
                return dataclasses.replace(state, pending_corner=(fx, fy)), False
            a = state.pending_corner
            if abs(a[0] - fx) < 1 or abs(a[1] - fy) < 1:
                raise PromptError("The box needs two different corners; click the opposite corner.")
            prompts = state.prompts.with_box_corners(a, (fx, fy))
            return self._push(dataclasses.replace(state, pending_corner=None), prompts), True
        label = 0 if mode == MODE_BG else 1
        return self._push(state, state.prompts.add_point(fx, fy, label)), True

    def _push(self, state: SessionState, prompts: Prompts) -> SessionState:
        prompts.validate(*state.size)
        history = [*state.history, state.prompts][-MAX_HISTORY:]
        return dataclasses.replace(state, history=history, prompts=prompts)

    def undo(self, state: SessionState) -> SessionState:
        """Undo the pending box corner, else the last prompt change."""
        if state.pending_corner is not None:
            return dataclasses.replace(state, pending_corner=None)
        if not state.history:
            return state
        return dataclasses.replace(state, prompts=state.history[-1], history=state.history[:-1])

    def clear(self, state: SessionState) -> SessionState:
        return dataclasses.replace(state, prompts=Prompts(), history=[*state.history, state.prompts],
                                   pending_corner=None, result=None, chosen=0)

    def set_prompts(self, state: SessionState, prompts: Prompts) -> SessionState:
        return self._push(state, prompts)

    # ----------------------------------------------------------------- running
    def run(self, state: SessionState, *, source: str = "ui") -> SessionState:
        """Decode the current prompts on the cached embedding; logs one run record."""
        if state.prompts.empty:
            return dataclasses.replace(state, result=None, chosen=0)
        entry = self.entry(state)
        seg = self.segmenter(state.model_type)
        mask_input = None
        if state.settings.refine and state.result is not None:
            mask_input = state.result.low_res_logits[state.chosen][None]
        t0 = time.perf_counter()
        emb, hit = seg.embed(entry.image.rgb, image_key=entry.key)
        encode_ms = (time.perf_counter() - t0) * 1000
        result = seg.decode(emb, state.prompts, multimask=state.settings.multimask, mask_input=mask_input,
                            encode_ms=encode_ms, cache_hit=hit)
        new = dataclasses.replace(state, result=result, chosen=result.best_index)
        self._log(new, entry, seg, source)
        return new

    def choose(self, state: SessionState, index: int) -> SessionState:
        if state.result is None or not 0 <= index < len(state.result.scores):
            return state
        return dataclasses.replace(state, chosen=int(index))

    def _log(self, state: SessionState, entry: ImageEntry, seg: Segmenter, source: str,
             metrics: dict[str, Any] | None = None) -> int | None:
        res = state.result
        if res is None:
            return None
        if metrics is None:
            metrics = self._chosen_metrics(state, entry)
        record = {
            "session": state.session_id, "image_hash": entry.key, "image_name": entry.image.name,
            "width": entry.image.size[0], "height": entry.image.size[1],
            "brightness": entry.stats.get("brightness"), "blur": entry.stats.get("blur"),
            "model": seg.model_type, "device": str(seg.device), "precision": seg.placement.precision,
            "prompts": state.prompts.to_dict(), "multimask": state.settings.multimask,
            "chosen_index": state.chosen, "scores": [round(float(s), 6) for s in res.scores],
            "score": float(res.scores[state.chosen]), "area": metrics["area"],
            "area_fraction": metrics["area_fraction"], "perimeter": metrics["perimeter"],
            "encode_ms": res.timings["encode_ms"], "decode_ms": res.timings["decode_ms"],
            "cache_hit": res.timings["cache_hit"], "source": source,
        }
        try:
            return self.runlog.append(record)
        except Exception:  # the log must never take a segmentation down with it
            log.exception("could not append to the run log")
            return None

    # ----------------------------------------------------------------- masks
    def _preview_masks(self, state: SessionState, entry: ImageEntry) -> np.ndarray:
        """(N, h, w) bool candidate masks at preview size, post-processed per settings."""
        return self._chosen_preview(state, entry)[0]

    def _chosen_metrics(self, state: SessionState, entry: ImageEntry) -> dict[str, Any]:
        """Metrics of the chosen preview mask, in full-image units."""
        return self._chosen_preview(state, entry)[1]

    def _chosen_preview(self, state: SessionState, entry: ImageEntry) -> tuple[np.ndarray, dict[str, Any]]:
        """Preview masks and the chosen mask's metrics, computed once per (result, settings, choice).

        A click both logs and renders these; the memo lives on the session's own result.
        """
        res = state.result
        assert res is not None
        s = state.settings
        h, w = entry.preview.shape[:2]
        key = ((h, w), s.threshold, s.min_island, s.min_hole, state.chosen)
        if res.memo.get("key") != key:
            masks = res.preview_masks((h, w), threshold=s.threshold)
            if s.min_island or s.min_hole:
                area = entry.scale ** 2
                masks = np.stack([
                    postprocess_mask(m, min_island=int(s.min_island * area), min_hole=int(s.min_hole * area))
                    for m in masks
                ])
            res.memo.update(key=key, masks=masks, metrics=mask_metrics(masks[state.chosen], scale=entry.scale))
        return res.memo["masks"], res.memo["metrics"]

    def full_mask(self, state: SessionState, index: int | None = None) -> np.ndarray:
        """(H, W) bool chosen mask at full resolution, post-processed per settings."""
        if state.result is None:
            raise UserError("Nothing to export yet: click on the image first.")
        i = state.chosen if index is None else index
        mask = state.result.full_mask(i, threshold=state.settings.threshold)
        s = state.settings
        if s.min_island or s.min_hole:
            mask = postprocess_mask(mask, min_island=s.min_island, min_hole=s.min_hole)
        return mask

    # ----------------------------------------------------------------- rendering
    def _write(self, state: SessionState, stem: str, data: bytes, ext: str) -> str:
        folder = self.render_dir / state.session_id
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{stem}-{uuid.uuid4().hex[:8]}.{ext}"
        path.write_bytes(data)
        return str(path)

    def _prune(self, state: SessionState, keep: set[str]) -> None:
        _prune_dir(self.render_dir / state.session_id, 120, keep)

    def view(self, state: SessionState, status: str = "") -> View:
        """Render everything the UI shows for ``state`` at preview resolution."""
        if not state.has_image:
            return View(None, [], None, None, {}, [], status or "Upload an image or pick an example.")
        entry = self.entry(state)
        scale = entry.scale
        s = state.settings
        seg = self.segmenter(state.model_type)
        base = entry.preview
        drawn = draw_prompts(base, state.prompts.points, state.prompts.box, scale=scale,
                             pending_corner=state.pending_corner)
        input_path = self._write(state, "input", encode_jpeg(drawn, quality=88), "jpg")
        gallery: list[tuple[str, str]] = []
        annotated = None
        metrics: dict[str, Any] = {}
        selected = None
        if state.result is not None:
            res = state.result
            masks = self._preview_masks(state, entry)
            colors = [PALETTE[i % len(PALETTE)] for i in range(len(masks))]
            thumbs = candidate_thumbnails(drawn, masks, colors=colors, max_side=THUMB_SIDE)
            for i, (m, thumb) in enumerate(zip(masks, thumbs)):
                caption = f"mask {i + 1} · score {res.scores[i]:.3f} · {100 * m.mean():.1f} %"
                gallery.append((self._write(state, f"cand{i}", encode_jpeg(thumb, quality=85), "jpg"), caption))
            selected = state.chosen
            chosen = masks[state.chosen]
            label = f"mask {state.chosen + 1} ({res.scores[state.chosen]:.3f})"
            png = encode_mask_png(chosen, colors[state.chosen], s.alpha)
            ann = [(self._write(state, "mask", png, "png"), label)]
            annotated = (input_path, ann)
            m = self._chosen_metrics(state, entry)
            metrics = {
                "index": state.chosen + 1,
                "score": round(float(res.scores[state.chosen]), 4),
                "area_px": m["area"],
                "area_pct": round(100 * m["area_fraction"], 2),
                "perimeter_px": round(m["perimeter"], 1),
                "bbox": m["bbox"],
                "encode_ms": res.timings["encode_ms"],
                "decode_ms": res.timings["decode_ms"],
                "cache_hit": res.timings["cache_hit"],
                "model": seg.model_type,
                "device": str(seg.device),
                "precision": seg.placement.precision,
                "image": f"{state.size[0]}×{state.size[1]}",
                "measured_on": "full image" if scale == 1.0 else f"{base.shape[1]}×{base.shape[0]} preview (export is exact)",
            }
        keep = {input_path, *(g[0] for g in gallery)} | ({annotated[1][0][0]} if annotated else set())
        self._prune(state, keep)
        return View(input_path, gallery, selected, annotated, metrics, prompt_rows(state), status)

    # ----------------------------------------------------------------- export
    def export(self, state: SessionState) -> list[Path]:
        """Full-resolution mask PNG (0/255), RGBA cut-out, overlay PNG and a JSON report."""
        entry = self.entry(state)
        res = state.result
        if res is None:
            raise UserError("Nothing to export yet: click on the image first.")
        mask = self.full_mask(state)
        rgb = entry.image.rgb
        folder = self.render_dir / state.session_id / f"export-{uuid.uuid4().hex[:6]}"
        stem = safe_stem(entry.image.name)
        i = state.chosen
        color = PALETTE[i % len(PALETTE)]
        overlay = draw_prompts(overlay_mask(rgb, mask, color=color, alpha=state.settings.alpha),
                               state.prompts.points, state.prompts.box)
        metrics = mask_metrics(mask)
        report = {
            "image": {"name": entry.image.name, "sha1": entry.key, "size": list(entry.image.size)},
            "model": self.segmenter(state.model_type).info(),
            "prompts": state.prompts.to_dict(),
            "settings": dataclasses.asdict(state.settings),
            "scores": [round(float(s), 6) for s in res.scores],
            "chosen_index": i,
            "metrics": metrics,
            "timings": res.timings,
            "rle": rle_encode(mask),
            "polygons": mask_polygons(mask),
        }
        paths = [
            write_atomic(folder / f"{stem}_mask{i + 1}.png", encode_png(mask)),
            write_atomic(folder / f"{stem}_cutout{i + 1}.png", encode_png(cutout_rgba(rgb, mask))),
            write_atomic(folder / f"{stem}_overlay{i + 1}.png", encode_png(overlay)),
            write_atomic(folder / f"{stem}_mask{i + 1}.json", json.dumps(report, indent=1).encode()),
        ]
        self._log(state, entry, self.segmenter(state.model_type), "ui-export", metrics)
        return paths

    def save_overlay(self, state: SessionState) -> Path:
        """Write the full-resolution overlay to ``outputs/overlays/`` (atomically)."""
        entry = self.entry(state)
        if state.result is None:
            raise UserError("Nothing to save yet: click on the image first.")
        mask = self.full_mask(state)
        color = PALETTE[state.chosen % len(PALETTE)]
        overlay = draw_prompts(overlay_mask(entry.image.rgb, mask, color=color, alpha=state.settings.alpha),
                               state.prompts.points, state.prompts.box)
        name = f"{time.strftime('%Y%m%d-%H%M%S')}_{safe_stem(entry.image.name)}_{entry.key[:8]}_mask{state.chosen + 1}.png"
        return write_atomic(self.outputs_dir / "overlays" / name, encode_png(overlay))

    # ----------------------------------------------------------------- API
    def segment_file(self, path: str, prompts_json: str | None, multimask: bool = True,
                     name: str | None = None) -> tuple[dict[str, Any], list[Path]]:
        """The ``/segment`` endpoint: summary JSON and full-resolution mask PNGs (0/255)."""
        if not path:
            raise ImageError("No image file was sent.")
        prompts = Prompts.from_json(prompts_json)
        entry = self._load_entry(path, name)
        prompts.validate(*entry.image.size)
        seg = self.segmenter()
        state = SessionState(session_id="api-" + uuid.uuid4().hex[:8], model_type=seg.model_type,
                             image_key=entry.key, image_name=entry.image.name, size=entry.image.size,
                             scale=entry.scale, prompts=prompts, settings=Settings(multimask=bool(multimask)))
        result = seg.segment(entry.image.rgb, prompts.points, prompts.box, multimask=bool(multimask),
                             image_key=entry.key)
        state = dataclasses.replace(state, result=result, chosen=result.best_index)
        _prune_dir(self.render_dir / "api", 600)  # the client fetched older masks long ago
        folder = self.render_dir / "api" / uuid.uuid4().hex[:12]
        candidates, paths = [], []
        stem = safe_stem(entry.image.name)
        for i in range(len(result.scores)):
            mask = result.full_mask(i)
            m = mask_metrics(mask)
            candidates.append({"index": i, "score": round(float(result.scores[i]), 6), "area": m["area"],
                               "perimeter": round(m["perimeter"], 2), "bbox": m["bbox"]})
            paths.append(write_atomic(folder / f"{stem}_mask{i + 1}.png", encode_png(mask)))
        best = result.best_index
        metrics = {"area": candidates[best]["area"], "perimeter": candidates[best]["perimeter"],
                   "area_fraction": candidates[best]["area"] / float(entry.image.size[0] * entry.image.size[1])}
        self._log(state, entry, seg, "api", metrics)
        summary = {
            "image_size": list(entry.image.size),
            "candidates": candidates,
            "best_index": best,
            "timings": result.timings,
            "model": seg.model_type,
            "prompts": prompts.to_dict(),
        }
        return summary, paths


ROW_HEADERS = ["label", "x", "y", "x2", "y2"]


def prompt_rows(state: SessionState) -> list[list[Any]]:
    """Prompt table rows: ("fg"|"bg", x, y, "", "") per point and ("box", x1, y1, x2, y2)."""
    rows: list[list[Any]] = [["fg" if lab else "bg", x, y, "", ""] for x, y, lab in state.prompts.points]
    if state.prompts.box is not None:
        x1, y1, x2, y2 = state.prompts.box
        rows.append(["box", x1, y1, f"{x2:g}", f"{y2:g}"])
    return rows


def prompts_from_rows(rows: Sequence[Sequence[Any]]) -> Prompts:
    """Parse an edited prompt table back into prompts (blank rows are skipped)."""
    points, box = [], None
    for n, row in enumerate(rows, start=1):
        cells = ["" if c is None else str(c).strip() for c in (list(row) + [""] * 5)[:5]]
        if not any(cells):
            continue
        kind = cells[0].lower()
        if kind in ("fg", "bg", "1", "0", "foreground", "background"):
            points.append((cells[1], cells[2], kind))
        elif kind == "box":
            if box is not None:
                raise PromptError("Only one box is allowed in the prompt table.")
            box = cells[1:5]
        else:
            raise PromptError(f"Row {n}: label must be fg, bg or box, got {cells[0]!r}.")
    return Prompts.parse(points, box)
