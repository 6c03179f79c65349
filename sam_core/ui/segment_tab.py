"""The Segment tab: click points and boxes, get SAM's three scored candidates, export.

Handlers are thin: each turns a Gradio event into an application event for
:meth:`Studio.handle`, then presents the new session. Per-visitor state is the
:class:`SessionState` in ``gr.State``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import gradio as gr

from sam_core.app import annotation, export
from sam_core.app.session import BROWSER_MODELS, DECODER_PATHS, PromptMode, SessionState, Settings
from sam_core.app.studio import (
    ChangeSettings,
    Choose,
    Clear,
    Click,
    ClosePolygon,
    DeleteObject,
    EditMask,
    Event,
    HideRegions,
    NewObject,
    RunEverything,
    SelectObject,
    SetLabel,
    SetPrompts,
    Studio,
    SwitchModel,
    Undo,
)
from sam_core.core.errors import PromptError, UserError
from sam_core.core.mask_edits import FillHoles, Grow, KeepLargest, MaskEdit, RemoveIslands, Smooth, Stroke, describe
from sam_core.core.prompts import Prompts
from sam_core.model.everything import EverythingSettings
from sam_core.model.registry import MODEL_TYPES
from sam_core.ui.browser_decoder import JS_ON_LOAD, BrowserAssets, server_reason
from sam_core.ui.common import gpu_handlers, user_errors
from sam_core.ui.components import FastAnnotatedImage, RawImage
from sam_core.ui.present import (
    OBJECT_HEADERS,
    ROW_HEADERS,
    is_own_render,
    metrics_dict,
    metrics_html,
    object_rows,
    prompt_rows,
    prompts_from_rows,
    render_view,
    status_text,
)

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"

MODE_FG = "Foreground point"
MODE_BG = "Background point"
MODE_BOX = "Box (2 clicks)"
MODE_POLYGON = "Polygon"
MODE_REGION = "Pick a region"
MODE_BRUSH = "Brush"
MODE_ERASER = "Eraser"
MODES = {
    MODE_FG: PromptMode.FOREGROUND,
    MODE_BG: PromptMode.BACKGROUND,
    MODE_BOX: PromptMode.BOX,
    MODE_POLYGON: PromptMode.POLYGON,
    MODE_REGION: PromptMode.REGION,
    MODE_BRUSH: PromptMode.BRUSH,
    MODE_ERASER: PromptMode.ERASER,
}

# Settings → "Decode clicks": the labels of Settings.decoder_path's values, and of browser_model's.
PATH_LABELS = {
    "auto": "Auto: in the browser when WebAssembly works",
    "browser": "In the browser",
    "server": "On the server",
}
BROWSER_MODEL_LABELS = {"quantized": "quantized (4.7 MB)", "fp32": "fp32 (16.5 MB, exact to 1e-4)"}

# Keyboard shortcuts (static/sam_decoder.js binds them; never while typing in a field).
SHORTCUTS = (
    ("f", "foreground point"),
    ("b", "background point"),
    ("x", "box"),
    ("n", "new object"),
    ("z", "undo"),
    ("1 / 2 / 3", "choose candidate"),
)
SHORTCUTS_MD = "**Shortcuts** · " + " · ".join(f"<kbd>{k}</kbd> {what}" for k, what in SHORTCUTS)

# Handlers that run the model: wrapped with spaces.GPU on ZeroGPU Spaces.
GPU_HANDLERS = (
    "upload",
    "example",
    "select",
    "undo",
    "edit_prompts",
    "settings",
    "switch_model",
    "export",
    "save",
    "api_segment",
    "browser_event",
    "new_object",
    "select_object",
    "export_objects",
    "save_bundle",
    "open_bundle",
    "api_annotate",
    "edit_mask",
    "close_polygon",
    "run_everything",
    "everything_estimate",
)

EDITS: dict[str, Callable[[float], MaskEdit]] = {
    "grow": lambda v: Grow(float(v)),
    "fill_holes": lambda v: FillHoles(float(v)),
    "remove_islands": lambda v: RemoveIslands(float(v)),
    "keep_largest": lambda v: KeepLargest(int(v)),
    "smooth": lambda v: Smooth(float(v)),
}


class Outputs(NamedTuple):
    """What every Segment-tab event updates, in the order of the ``outputs`` list."""

    state: SessionState
    image: Any
    candidates: Any
    result: Any
    metrics: str
    prompts: list[list[Any]]
    status: str
    client: str  # the browser decoder's sync value (JSON)
    objects: list[list[Any]]  # the objects table
    label: Any  # the label of the object being edited (a Dropdown update with the label names)


class OpenOnce:
    """Single flight for opening an image: Gradio fires the image's upload and change events
    together and runs them at the same time, each with the session state from before the open.

    A (page session, path) pair is claimed while it opens and for ``grace_s`` seconds after
    (until the new state is stored). Shared by all visitors: keyed and locked.
    """

    def __init__(self, grace_s: float = 2.0) -> None:
        self.grace_s = grace_s
        self._lock = threading.Lock()
        self._busy: dict[tuple[str, str], float] = {}  # key -> finish time (inf while opening)

    @contextlib.contextmanager
    def claim(self, session: str, path: str) -> Iterator[bool]:
        """Yields True to the first caller (which opens), False to a duplicate."""
        key, now = (session, path), time.monotonic()
        with self._lock:
            for k in [k for k, t in self._busy.items() if now - t > self.grace_s]:
                del self._busy[k]
            first = key not in self._busy
            if first:
                self._busy[key] = math.inf
        try:
            yield first
        finally:
            if first:
                with self._lock:
                    self._busy[key] = time.monotonic()


class Handlers:
    """Event handlers of the Segment tab; tests call them with the values Gradio passes."""

    def __init__(self, studio: Studio, *, decode_clicks: str = "auto") -> None:
        """``decode_clicks``: the "Decode clicks" setting of new sessions (auto, browser or server)."""
        if decode_clicks not in DECODER_PATHS:
            raise ValueError(f"decode_clicks must be one of {DECODER_PATHS}, not {decode_clicks!r}")
        self.studio = studio
        self.assets = BrowserAssets(studio)
        self.defaults = Settings(decoder_path=decode_clicks)
        self.opening = OpenOnce()

    def _state(self, state: SessionState | None) -> SessionState:
        if isinstance(state, SessionState):
            return state
        return SessionState(model_type=self.studio.default_model, settings=self.defaults)

    def render(self, state: SessionState, status: str | None = None) -> Outputs:
        """Present ``state``; ``status`` defaults to what to do next."""
        view = render_view(
            self.studio,
            state,
            status_text(state) if status is None else status,
            browser=state.client == "browser" and server_reason(state) is None,
        )
        gallery = gr.update(value=view.gallery or None, selected_index=view.selected)
        return Outputs(
            state,
            view.input_image,
            gallery,
            view.annotated,
            metrics_html(view.metrics),
            view.rows,
            view.status,
            self.assets.sync(state, MODES),
            object_rows(self.studio, state),
            gr.update(value=state.label, choices=list(state.categories)),
        )

    def _apply(self, state: SessionState | None, event: Event, progress: Any = None) -> Outputs:
        report = None if progress is None else (lambda f, msg: progress(f, desc=msg))
        return self.render(self.studio.handle(self._state(state), event, progress=report))

    def _open(self, path: str, state: SessionState | None, progress: Any) -> SessionState:
        return self.studio.open_image(
            self._state(state), path, Path(path).name, progress=lambda f, msg: progress(f, desc=msg)
        )

    # -------------------------------------------------------------- events
    @user_errors
    def upload(self, path: str | None, state: SessionState | None, progress: Any = gr.Progress()) -> Outputs:
        state = self._state(state)
        if not path:  # cleared
            return self.render(state.fresh())
        state = self._open(path, state, progress)
        return self.render(
            state,
            f"Loaded {state.image_name} ({state.size}, ready in {state.encode_ms / 1000:.1f} s) · {status_text(state)}",
        )

    def open_image(
        self,
        path: str | None,
        state: SessionState | None,
        request: gr.Request | None = None,
        progress: Any = gr.Progress(),
    ) -> Any:
        """``upload`` and ``change`` of the image, one listener: one open per new image.

        Gradio fires both for an upload and for a webcam capture (older 6.x releases report a
        capture only as a change), at the same time, and a change for every render a handler
        shows in the image. So this session's renders are not opened, nor an image already open
        and untouched, nor the second event of a pair (which carries the state from before the
        open). Re-uploading the open image after working on it starts it afresh. A clear (no
        path) has its own listener.
        """
        if not path:
            return _skip_all()
        if state is not None and (
            is_own_render(self.studio, state, path) or (state.image_path == path and state.untouched)
        ):
            return _skip_all()
        page = getattr(request, "session_hash", None)
        if not page:  # called directly (tests, scripts): no pair
            return self.upload(path, state, progress)
        with self.opening.claim(page, path) as first:
            return self.upload(path, state, progress) if first else _skip_all()

    @user_errors
    def example(self, path: str, preset: str, state: SessionState | None, progress: Any = gr.Progress()) -> Outputs:
        state = self._open(path, state, progress)
        return self._apply(state, SetPrompts(Prompts.from_json(preset)))

    @user_errors
    def select(self, state: SessionState | None, mode: str, evt: gr.SelectData) -> Outputs:
        try:
            x, y = float(evt.index[0]), float(evt.index[1])
        except (TypeError, ValueError, IndexError, KeyError):  # only a hand-made request sends these
            raise PromptError(f"Invalid click position {repr(evt.index)[:60]}: expected [x, y] in pixels.") from None
        return self._apply(state, Click(x, y, MODES.get(mode, PromptMode.FOREGROUND)))

    @user_errors
    def undo(self, state: SessionState | None) -> Outputs:
        return self._apply(state, Undo())

    @user_errors
    def clear(self, state: SessionState | None) -> Outputs:
        return self._apply(state, Clear())

    @user_errors
    def edit_prompts(self, rows: Any, state: SessionState | None) -> Outputs:
        values = rows.values.tolist() if hasattr(rows, "values") else (rows or [])
        return self._apply(state, SetPrompts(prompts_from_rows(values)))

    @user_errors
    def choose(self, state: SessionState | None, evt: gr.SelectData) -> Outputs:
        return self._apply(state, Choose(int(evt.index)))

    @user_errors
    def settings(
        self,
        state: SessionState | None,
        multimask: bool,
        threshold: float,
        alpha: float,
        min_island: float,
        min_hole: float,
        refine: bool,
        decoder_path: str = PATH_LABELS["auto"],
        browser_model: str = BROWSER_MODEL_LABELS["quantized"],
        exclude: bool = False,
        clahe: float = 0.0,
        brush_px: float = 12.0,
        polygon_outside: float = 0,
        progress: Any = gr.Progress(),
    ) -> Outputs:
        paths = {label: value for value, label in PATH_LABELS.items()}
        models = {label: value for value, label in BROWSER_MODEL_LABELS.items()}
        new = Settings(
            bool(multimask),
            float(threshold),
            float(alpha),
            max(0, int(min_island or 0)),
            max(0, int(min_hole or 0)),
            bool(refine),
            paths.get(decoder_path, decoder_path if decoder_path in DECODER_PATHS else "auto"),
            models.get(browser_model, browser_model if browser_model in BROWSER_MODELS else "quantized"),
            bool(exclude),
            min(40.0, max(0.0, float(clahe or 0.0))),
            min(512.0, max(0.5, float(brush_px or 12.0))),
            min(8, max(0, int(polygon_outside or 0))),
        )
        state = self._state(state)
        if new.decoder_path == "server" and state.client == "browser":
            state = dataclasses.replace(state, client="server")  # the server draws from now on
        return self._apply(state, ChangeSettings(new), progress)

    @user_errors
    def browser_event(self, state: SessionState | None, evt: gr.EventData) -> Outputs:
        """What the page's browser decoder reports (``submit`` events of the hidden component).

        ``ready`` / ``failed``: the browser path works (the server stops drawing clicks) or not
        (the server draws them again); ``decoded``: prompts the browser decoded and drew, with
        the candidate it chose (the server updates the session, the table, the metrics and the
        run log, marked ``decoder="browser"``, and sends no images back); ``choose``: another
        candidate; ``corner``: a box's first corner.
        """
        state = self._state(state)
        data = evt._data if isinstance(getattr(evt, "_data", None), dict) else {}
        kind = data.get("kind")
        if kind in ("ready", "failed"):
            client = "browser" if kind == "ready" and state.settings.decoder_path != "server" else "server"
            reason = str(data.get("reason"))[:200]
            status = None if kind == "ready" else f"Browser decoder unavailable ({reason}): clicks go to the server."
            return self.render(dataclasses.replace(state, client=client), status)
        if kind == "stroke":  # a brush / eraser stroke (either path): the server applies and draws it
            if not state.has_image or data.get("image_key") != state.image_key:
                return _skip_all()
            points = data.get("points")
            if not isinstance(points, list) or not points:
                raise UserError("A brush stroke needs at least one point.")
            stroke = Stroke(
                tuple((float(p[0]), float(p[1])) for p in points[:10000]),
                state.settings.brush_px,
                bool(data.get("erase")),
            )
            return self._edited(state, stroke)
        if state.client != "browser" or not state.has_image or data.get("image_key") != state.image_key:
            return _skip_all()  # a report about an image or a path this session no longer shows
        if kind == "corner":
            x, y = (float(v) for v in data.get("corner") or ())
            Prompts.parse([(x, y, 1)]).validate(*state.size)  # the corner must lie on the image
            state = dataclasses.replace(state, pending_corner=(x, y))
        elif kind == "choose":
            state = self.studio.handle(state, Choose(int(data.get("chosen", 0))))
        elif kind == "decoded":
            seg = self.studio.segmenter(state.model_type)
            if data.get("model_id") != f"{seg.model_type}:{seg.weights_id}":
                raise UserError("The browser decoded with another model than this session's; the click was ignored.")
            raw = data.get("prompts") or {}
            prompts = Prompts.parse(raw.get("points") or [], raw.get("box"))
            state = dataclasses.replace(state, pending_corner=None)
            if prompts != state.prompts:
                state = state.with_prompts(prompts)
            ms = data.get("decode_ms")
            state = self.studio.run(
                state,
                chosen=int(data.get("chosen", 0)),
                browser_decode_ms=float(ms) if isinstance(ms, (int, float)) else 0.0,
            )
        else:
            return _skip_all()
        # The page drew everything already: only the session, the table, the metrics and the
        # status change (no render of the input, no sync value: this is the click's hot path).
        skip = gr.skip()
        metrics = metrics_html(metrics_dict(self.studio, state))
        rows = object_rows(self.studio, state)
        return Outputs(
            state, skip, skip, skip, metrics, prompt_rows(state.prompts), status_text(state), skip, rows, skip
        )

    # -------------------------------------------------------------- objects
    @user_errors
    def new_object(self, state: SessionState | None) -> Outputs:
        """Commit the object being edited and start the next one (key ``n``)."""
        before = self._state(state)
        out = self._apply(before, NewObject())
        n = len(out.state.objects)
        return out._replace(
            status=f"Object {before.current_id} ({before.label}) committed · {n} in the image. {out.status}"
        )

    @user_errors
    def select_object(self, state: SessionState | None, evt: gr.SelectData) -> Outputs:
        """A click on a row of the objects table: edit that object again."""
        row = evt.row_value if isinstance(getattr(evt, "row_value", None), list) else None
        try:
            object_id = int(row[0]) if row else int(object_rows(self.studio, self._state(state))[evt.index[0]][0])
        except (TypeError, ValueError, IndexError, KeyError):
            raise UserError("Select an object by clicking its row in the objects table.") from None
        return self._apply(state, SelectObject(object_id))

    @user_errors
    def delete_object(self, state: SessionState | None) -> Outputs:
        """Delete the object being edited (select one in the table first to delete it)."""
        before = self._state(state)
        out = self._apply(before, DeleteObject(None))
        return out._replace(status=f"Object {before.current_id} deleted. {out.status}")

    @user_errors
    def set_label(self, label: str | None, state: SessionState | None) -> Outputs:
        return self._apply(state, SetLabel(str(label or "")))

    @user_errors
    def edit_objects(self, rows: Any, state: SessionState | None) -> Outputs:
        """Labels edited in the objects table (the other columns are not editable)."""
        state = self._state(state)
        values = rows.values.tolist() if hasattr(rows, "values") else (rows or [])
        current = {r[0]: r[1] for r in object_rows(self.studio, state)}
        for row in values:
            try:
                object_id = int(row[0])
            except (TypeError, ValueError, IndexError):
                continue
            if object_id in current and len(row) > 1 and str(row[1]) != current[object_id]:
                state = self.studio.handle(state, SetLabel(str(row[1]), object_id))
        return self.render(state)

    @user_errors
    def export_objects(self, state: SessionState | None) -> Any:
        """Every object of the image: label map, COCO (RLE and polygons), YOLO, cut-outs."""
        return _downloads(annotation.export_objects(self.studio, self._state(state)))

    @user_errors
    def save_bundle(self, state: SessionState | None) -> Any:
        return _downloads([annotation.save_bundle(self.studio, self._state(state))])

    @user_errors
    def open_bundle(self, path: str | None, state: SessionState | None) -> Outputs:
        state = self._state(state)
        if not path:
            return _skip_all()
        new, report = annotation.open_bundle(self.studio, state, path)
        return self.render(new, report)

    @user_errors
    def api_annotate(
        self, image_file: str | None, objects: str, exclude_committed: bool, multimask: bool
    ) -> tuple[dict[str, Any], str]:
        """``/annotate``: (COCO instances JSON, label-map PNG path)."""
        coco, path = annotation.annotate_file(
            self.studio,
            image_file or "",
            objects,
            exclude_committed=bool(exclude_committed),
            multimask=bool(multimask),
            name=Path(image_file).name if image_file else None,
        )
        return coco, str(path)

    # -------------------------------------------------------------- mask edits, polygon, segment everything
    @user_errors
    def edit_mask(self, kind: str, value: float | None, state: SessionState | None) -> Outputs:
        """Edit the chosen mask of the object being edited (one undo step)."""
        if kind not in EDITS:
            raise UserError(f"Unknown edit {kind!r}.")
        if value is None:
            raise UserError("Enter a number for this edit first.")
        return self._edited(state, EDITS[kind](value))

    def _edited(self, state: SessionState | None, edit: MaskEdit) -> Outputs:
        out = self._apply(state, EditMask(edit))
        n = len(out.state.edits)
        return out._replace(
            status=f"Mask edited: {describe(edit)} ({n} edit{'s' if n > 1 else ''}; z undoes). {out.status}"
        )

    @user_errors
    def close_polygon(self, state: SessionState | None) -> Outputs:
        return self._apply(state, ClosePolygon())

    def _everything_settings(
        self, pps: float, iou: float, stability: float, min_area: float, crops: Any
    ) -> EverythingSettings:
        return EverythingSettings(
            points_per_side=int(pps),
            pred_iou_thresh=float(iou),
            stability_score_thresh=float(stability),
            min_mask_region_area=max(0, int(min_area or 0)),
            crop_n_layers=int(str(crops)[0]) if crops else 0,
        )

    @user_errors
    def everything_estimate(
        self,
        state: SessionState | None,
        pps: float,
        iou: float,
        stability: float,
        min_area: float,
        crops: Any,
        full_res: bool,
    ) -> str:
        """The estimate shown before a run."""
        state = self._state(state)
        if not state.has_image:
            return "Open an image to see how long segment everything takes on this server."
        settings = self._everything_settings(pps, iou, stability, min_area, crops)
        ms = self.studio.everything_estimate(state, settings, full_resolution=bool(full_res))
        n = settings.points_per_side**2
        crop_note = "" if not settings.crop_n_layers else " plus one encoder run per crop"
        return f"Estimate: about **{ms / 1000:.1f} s** for {n} grid points{crop_note} (measured cost per point here)."

    @user_errors
    def run_everything(
        self,
        state: SessionState | None,
        pps: float,
        iou: float,
        stability: float,
        min_area: float,
        crops: Any,
        full_res: bool,
        progress: Any = gr.Progress(),
    ) -> tuple[Any, ...]:
        """Segment everything; the prompt mode switches to *Pick a region*."""
        settings = self._everything_settings(pps, iou, stability, min_area, crops)
        out = self._apply(state, RunEverything(settings, bool(full_res)), progress)
        regions = out.state.regions
        n = 0 if regions is None else len(regions.points)
        t = {} if regions is None else regions.timings
        encoder = (
            "the cached embedding, no encoder run"
            if not t.get("encoder_runs")
            else f"{t['encoder_runs']:.0f} encoder runs"
        )
        status = (
            f"Segment everything: {n} region{'' if n == 1 else 's'} in {t.get('total_ms', 0) / 1000:.1f} s "
            f"({encoder}). "
            "Click a region to make it an object (mode: Pick a region)."
        )
        return (*out._replace(status=status), gr.update(value=MODE_REGION))

    @user_errors
    def hide_regions(self, state: SessionState | None) -> Outputs:
        return self._apply(state, HideRegions())

    @user_errors
    def switch_model(
        self, model_type: str, state: SessionState | None, progress: Any = gr.Progress(track_tqdm=True)
    ) -> Outputs:
        out = self._apply(state, SwitchModel(model_type), progress)
        return out._replace(status=f"Model: {model_type}. {out.status}")

    @user_errors
    def export(self, state: SessionState | None) -> Any:
        """Write the full-resolution files and show them in the Downloads list."""
        return _downloads(export.export_files(self.studio, self._state(state)))

    @user_errors
    def save(self, state: SessionState | None) -> str:
        path = export.save_overlay(self.studio, self._state(state))
        gr.Info(f"Saved {path.name} to {path.parent}")
        return f"Saved overlay: `{path}`"

    @user_errors
    def api_segment(self, image_file: str | None, prompts: str, multimask: bool) -> tuple[dict[str, Any], list[str]]:
        """``/segment``: (summary, full-resolution mask PNG paths)."""
        summary, paths = export.segment_file(
            self.studio, image_file or "", prompts, bool(multimask), name=Path(image_file).name if image_file else None
        )
        return summary, [str(p) for p in paths]


def _downloads(paths: Iterable[Path]) -> Any:
    """Show written files in the Downloads list."""
    return gr.update(value=[str(p) for p in paths], visible=True)


def _skip_all() -> Any:
    """Change nothing on the page."""
    return tuple(gr.skip() for _ in Outputs._fields)


def load_presets() -> list[list[str]]:
    """Example rows ``[image_path, prompts_json, title]`` from ``examples/presets.json``."""
    path = EXAMPLES_DIR / "presets.json"
    if not path.exists():
        return []
    rows = []
    for item in json.loads(path.read_text()):
        file = EXAMPLES_DIR / item["file"]
        if file.exists():
            rows.append(
                [
                    str(file),
                    json.dumps({"points": item.get("points") or [], "box": item.get("box")}),
                    item.get("title", item["file"]),
                ]
            )
    return rows


def build_segment_tab(studio: Studio, *, decode_clicks: str = "auto") -> Handlers:
    """Lay out the Segment tab inside the current Blocks context and wire its events.

    ``decode_clicks``: where new sessions decode clicks (auto: in the browser when it can).
    """
    h = Handlers(studio, decode_clicks=decode_clicks)
    gpu_handlers(h, GPU_HANDLERS)
    state = gr.State(None)
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            image = RawImage(
                label="Image — click to add prompts",
                type="filepath",
                format="png",
                sources=["upload", "clipboard", "webcam"],
                interactive=True,
                elem_id="input-image",
                height=560,
            )
            with gr.Row():
                mode = gr.Radio(list(MODES), value=MODE_FG, label="Prompt mode", elem_id="prompt-mode", scale=4)
                with gr.Column(scale=1, min_width=110):
                    undo = gr.Button("↶ Undo", elem_id="undo", size="sm")
                    clear = gr.Button("Clear", elem_id="clear", size="sm")
                    close_poly = gr.Button("Close polygon", elem_id="close-polygon", size="sm")
            status = gr.Markdown("Upload an image or pick an example.", elem_id="status")
            preset = gr.Textbox(visible=False)
            title = gr.Textbox(visible=False)
            examples = load_presets()
            example_table = None
            if examples:
                example_table = gr.Examples(
                    examples=examples,
                    inputs=[image, preset, title],
                    label="Examples (with preset prompts)",
                    run_on_click=False,
                    cache_examples=False,
                    example_labels=[e[2] for e in examples],
                    elem_id="examples",
                    api_visibility="private",
                )
            with gr.Group(elem_id="objects-panel"):
                with gr.Row(equal_height=True):
                    label = gr.Dropdown(
                        ["object"],
                        value="object",
                        allow_custom_value=True,
                        filterable=True,
                        label="Label of this object (type a new name or pick one)",
                        elem_id="object-label",
                        scale=3,
                    )
                    new_obj = gr.Button(
                        "New object (n)", elem_id="new-object", variant="primary", scale=1, min_width=110
                    )
                    delete_obj = gr.Button("Delete object", elem_id="delete-object", scale=1, min_width=100)
                exclude = gr.Checkbox(
                    False,
                    label="Exclude committed objects (a new object never covers pixels of earlier ones)",
                    elem_id="exclude-committed",
                )
                objects = gr.Dataframe(
                    headers=OBJECT_HEADERS,
                    datatype=["number", "str", "html", "str", "number", "str"],
                    column_count=(6, "fixed"),  # type: ignore[arg-type]
                    row_count=0,
                    interactive=True,
                    static_columns=[0, 2, 3, 4, 5],
                    label="Objects (click a row to edit that object; edit a label in place)",
                    elem_id="objects",
                )
            gr.Markdown(SHORTCUTS_MD, elem_id="shortcuts")
            with gr.Row():
                export_objs = gr.Button(
                    "Export objects (label map, COCO, YOLO, cut-outs)", elem_id="export-objects", size="sm"
                )
                save_bundle = gr.Button("Save bundle", elem_id="save-bundle", size="sm")
                open_bundle = gr.UploadButton(
                    "Open bundle…",
                    file_types=[".zip"],
                    file_count="single",
                    type="filepath",
                    elem_id="open-bundle",
                    size="sm",
                )
            prompts = gr.Dataframe(
                headers=ROW_HEADERS,
                datatype=["str", "number", "number", "str", "str"],
                column_count=(5, "fixed"),  # type: ignore[arg-type]  # the only way to fix the columns in Gradio 6.31
                row_count=0,
                interactive=True,
                label="Prompts (full-image pixels; edit for exact coordinates — label fg, bg or box)",
                elem_id="prompts",
            )
        with gr.Column(scale=3):
            candidates = gr.Gallery(
                label="Candidates (best preselected — click to choose)",
                columns=3,
                rows=1,
                height=230,
                allow_preview=False,
                object_fit="contain",
                elem_id="candidates",
                interactive=False,
            )
            result = FastAnnotatedImage(label="Chosen mask", elem_id="result", height=420)
            metrics = gr.HTML(metrics_html({}), elem_id="metrics", label="Metrics")
            with gr.Row():
                export_btn = gr.Button("Export mask, cut-out, overlay, JSON", elem_id="export", variant="primary")
                save = gr.Button("Save overlay to outputs/", elem_id="save")
            downloads = gr.File(
                label="Downloads", file_count="multiple", elem_id="downloads", interactive=False, visible=False
            )
            saved = gr.Markdown(elem_id="saved")
            with gr.Accordion("Edit the mask", open=False, elem_id="edit-mask"):
                gr.Markdown(
                    "Edits apply to the chosen mask of the object being edited, in full-image pixels; each one "
                    "is an undo step and is saved in bundles. **Brush / Eraser**: choose the mode above and drag "
                    "over the image.",
                    elem_id="edit-help",
                )
                edit_inputs = {}
                edit_buttons = {}
                for kind, text, value, button_text in (
                    ("grow", "Grow (+) or shrink (-) by px", 3, "Grow / shrink"),
                    ("fill_holes", "Fill holes smaller than (px²; 0 = all)", 500, "Fill holes"),
                    ("remove_islands", "Remove islands smaller than (px²)", 500, "Remove islands"),
                    ("keep_largest", "Keep the largest K parts", 1, "Keep largest"),
                    ("smooth", "Smooth the outline by (px)", 3, "Smooth"),
                ):
                    with gr.Row(equal_height=True):
                        edit_inputs[kind] = gr.Number(value, label=text, elem_id=f"edit-{kind}-value", scale=3)
                        edit_buttons[kind] = gr.Button(button_text, elem_id=f"edit-{kind}", size="sm", scale=1)
                with gr.Row():
                    brush_px = gr.Number(12, label="Brush / eraser radius (px)", minimum=0.5, elem_id="brush-px")
                    polygon_outside = gr.Number(
                        0, label="Polygon: background points outside it", precision=0, minimum=0, elem_id="polygon-bg"
                    )
            with gr.Accordion("Segment everything", open=False, elem_id="everything") as ev_panel:
                with gr.Row():
                    ev_pps = gr.Slider(4, 64, value=32, step=4, label="Points per side", elem_id="ev-pps")
                    ev_crops = gr.Radio(["0", "1", "2"], value="0", label="Crop layers", elem_id="ev-crops")
                with gr.Row():
                    ev_iou = gr.Slider(0, 1, value=0.88, step=0.01, label="IoU threshold", elem_id="ev-iou")
                    ev_stab = gr.Slider(0, 1, value=0.95, step=0.01, label="Stability threshold", elem_id="ev-stab")
                with gr.Row():
                    ev_min = gr.Number(0, label="Minimum region area (px)", precision=0, minimum=0, elem_id="ev-min")
                    ev_full = gr.Checkbox(
                        False, label="Masks at full resolution (slow on large images)", elem_id="ev-full"
                    )
                ev_estimate = gr.Markdown("", elem_id="ev-estimate")
                with gr.Row():
                    ev_run = gr.Button("Segment everything", variant="primary", elem_id="ev-run", size="sm")
                    ev_hide = gr.Button("Hide regions", elem_id="ev-hide", size="sm")
            with gr.Accordion("Settings", open=False, elem_id="settings"):
                model = gr.Dropdown(list(MODEL_TYPES), value=studio.default_model, label="Model", elem_id="model")
                multimask = gr.Checkbox(True, label="Three candidates (multimask)", elem_id="multimask")
                threshold = gr.Slider(
                    -4, 4, value=0.0, step=0.25, label="Mask threshold on the logits", elem_id="threshold"
                )
                alpha = gr.Slider(0.1, 1.0, value=0.5, step=0.05, label="Overlay opacity", elem_id="opacity")
                with gr.Row():
                    min_island = gr.Number(0, label="Remove islands below (px)", precision=0, minimum=0)
                    min_hole = gr.Number(0, label="Fill holes below (px)", precision=0, minimum=0)
                refine = gr.Checkbox(False, label="Refine with previous mask", elem_id="refine")
                clahe = gr.Slider(
                    0,
                    8,
                    value=0,
                    step=0.5,
                    label="Contrast enhancement before the encoder (CLAHE clip limit on the L channel; 0 = off)",
                    info="For low-contrast images: the encoder sees the enhanced image (its own cached embedding); "
                    "the view and the exports keep the original pixels.",
                    elem_id="clahe",
                )
                decoder_path = gr.Radio(
                    list(PATH_LABELS.values()),
                    value=PATH_LABELS[decode_clicks],
                    label="Decode clicks",
                    info="In the browser, clicks and hover never wait on the server (onnxruntime-web); "
                    "exports are always computed on the server.",
                    elem_id="decoder-path",
                )
                browser_model = gr.Radio(
                    list(BROWSER_MODEL_LABELS.values()),
                    value=BROWSER_MODEL_LABELS["quantized"],
                    label="Browser decoder file",
                    elem_id="browser-model",
                )
    # The browser decoder: a hidden component whose value (the sync JSON) every event updates.
    client = gr.HTML(
        h.assets.sync(h._state(None), MODES),
        html_template="",
        js_on_load=JS_ON_LOAD,
        elem_id="browser-decoder",
        container=False,
        padding=False,
        apply_default_css=False,
    )

    outputs = [state, image, candidates, result, metrics, prompts, status, client, objects, label]
    hidden: dict[str, Any] = {"api_visibility": "private"}
    gr.on([image.upload, image.change], h.open_image, [image, state], outputs, trigger_mode="always_last", **hidden)
    image.clear(h.upload, [image, state], outputs, **hidden)
    image.select(h.select, [state, mode], outputs, **hidden)
    undo.click(h.undo, [state], outputs, **hidden)
    clear.click(h.clear, [state], outputs, **hidden)
    prompts.input(h.edit_prompts, [prompts, state], outputs, **hidden)
    candidates.select(h.choose, [state], outputs, **hidden)
    settings = [
        state,
        multimask,
        threshold,
        alpha,
        min_island,
        min_hole,
        refine,
        decoder_path,
        browser_model,
        exclude,
        clahe,
    ]
    for box in (multimask, refine, decoder_path, browser_model, exclude):
        box.input(h.settings, settings, outputs, **hidden)
    for slider in (threshold, alpha, clahe):
        slider.release(h.settings, settings, outputs, **hidden)
    for num in (min_island, min_hole, brush_px, polygon_outside):
        num.submit(h.settings, settings, outputs, **hidden)
        num.blur(h.settings, settings, outputs, **hidden)
    for kind, button in edit_buttons.items():
        button.click(partial(h.edit_mask, kind), [edit_inputs[kind], state], outputs, **hidden)
    close_poly.click(h.close_polygon, [state], outputs, **hidden)
    ev_inputs = [state, ev_pps, ev_iou, ev_stab, ev_min, ev_crops, ev_full]
    ev_run.click(h.run_everything, ev_inputs, [*outputs, mode], **hidden)
    ev_hide.click(h.hide_regions, [state], outputs, **hidden)
    # One listener for every trigger, one run at a time, only the latest pending one kept: the
    # estimate shown is always that of the settings last seen.
    gr.on(
        [ev_panel.expand, ev_pps.change, ev_crops.change, ev_full.change],
        h.everything_estimate,
        ev_inputs,
        ev_estimate,
        trigger_mode="always_last",
        show_progress="hidden",
        **hidden,
    )
    model.input(h.switch_model, [model, state], outputs, **hidden)
    client.submit(h.browser_event, [state], outputs, trigger_mode="always_last", show_progress="hidden", **hidden)
    new_obj.click(h.new_object, [state], outputs, **hidden)
    delete_obj.click(h.delete_object, [state], outputs, **hidden)
    label.input(h.set_label, [label, state], outputs, **hidden)
    objects.select(h.select_object, [state], outputs, **hidden)
    objects.input(h.edit_objects, [objects, state], outputs, **hidden)
    export_objs.click(h.export_objects, [state], downloads, **hidden)
    save_bundle.click(h.save_bundle, [state], downloads, **hidden)
    open_bundle.upload(h.open_bundle, [open_bundle, state], outputs, **hidden)
    export_btn.click(h.export, [state], downloads, **hidden)
    save.click(h.save, [state], saved, **hidden)
    # Examples: the table loads the inputs, then we open the image and run its preset.
    if example_table is not None:
        example_table.load_input_event.then(h.example, [image, preset, state], outputs, **hidden)

    # Program API (gradio_client): /segment
    with gr.Row(visible=False):
        api_image = gr.File(type="filepath", label="image")
        api_prompts = gr.Textbox(label="prompts")
        api_multimask = gr.Checkbox(True, label="multimask")
        api_summary = gr.JSON(label="summary")
        api_masks = gr.File(file_count="multiple", label="masks")
    api_prompts.submit(
        h.api_segment,
        [api_image, api_prompts, api_multimask],
        [api_summary, api_masks],
        api_name="segment",
        api_visibility="public",
    )
    # Program API: /annotate (image, objects JSON, exclude_committed, multimask) -> (COCO JSON, label map PNG)
    with gr.Row(visible=False):
        ann_image = gr.File(type="filepath", label="image")
        ann_objects = gr.Textbox(label="objects")
        ann_exclude = gr.Checkbox(False, label="exclude_committed")
        ann_multimask = gr.Checkbox(True, label="multimask")
        ann_coco = gr.JSON(label="coco")
        ann_map = gr.File(label="label_map")
    ann_objects.submit(
        h.api_annotate,
        [ann_image, ann_objects, ann_exclude, ann_multimask],
        [ann_coco, ann_map],
        api_name="annotate",
        api_visibility="public",
    )
    return h
