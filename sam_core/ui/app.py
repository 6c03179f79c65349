"""The Gradio Blocks app: thin wiring from components to :class:`sam_core.studio.Studio`.

Per-visitor state lives in ``gr.State`` (a :class:`SessionState`); the Studio holds only
shared, keyed and locked caches. Handlers are methods of :class:`Handlers` so tests can
call them directly with the same values Gradio passes.
"""

from __future__ import annotations

import dataclasses
import html
import json
import logging
import re
from pathlib import Path
from typing import Any, Callable

import gradio as gr
from gradio.components.annotated_image import AnnotatedImageData, Annotation
from gradio.data_classes import FileData

from sam_core.core.errors import PromptError, UserError
from sam_core.core.prompts import Prompts
from sam_core.app.studio import MODE_FG, MODES, ROW_HEADERS, SessionState, Settings, Studio, View, prompts_from_rows

log = logging.getLogger(__name__)

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
MODEL_CHOICES = ["vit_h", "vit_l", "vit_b", "test-tiny"]
WEBCAM_NAME = re.compile(r"image\.(png|jpeg)")  # what Gradio's webcam names a capture

CSS = """
/* Gradio maps a click on the input image assuming object-fit: scale-down (never upscaled);
   contain would upscale small images and shift every click on them. */
#input-image img { object-fit: scale-down; }
#result img { object-fit: contain; }
#candidates .caption-label { white-space: normal; font-size: 0.8rem; }
#header .warning { color: #b45309; font-weight: 600; }
#status { min-height: 1.5em; }
#metrics table.metrics { width: 100%; border-collapse: collapse; font-size: 0.85rem; }
#metrics table.metrics th { text-align: left; font-weight: 500; opacity: 0.75; padding: 3px 8px; white-space: nowrap; }
#metrics table.metrics td { font-family: ui-monospace, monospace; padding: 3px 8px; }
#metrics table.metrics tr:nth-child(odd) { background: var(--table-odd-background-fill); }
"""


class RawImage(gr.Image):
    """``gr.Image`` that hands over the uploaded file path without opening it.

    Gradio's own preprocessing opens the file with PIL, so a corrupt upload would fail
    inside Gradio with a generic error; we validate it ourselves and explain the problem.
    """

    is_template = True  # render with the stock Image front end

    def preprocess(self, payload):  # type: ignore[override]
        if payload is None:
            return None
        if payload.path is not None:
            return str(payload.path)
        return super().preprocess(payload)  # data: URLs (webcam / paste)


class FastAnnotatedImage(gr.AnnotatedImage):
    """``gr.AnnotatedImage`` that takes pre-rendered RGBA annotation PNGs (paths).

    The stock postprocess builds float64 RGBA masks and PNG-encodes them with PIL on every
    update (~0.2 s at 1536 px); the Studio already renders a small RGBA PNG per mask.
    Value: ``(base_image_path, [(annotation_png_path, label), ...])``.
    """

    is_template = True

    def postprocess(self, value):  # type: ignore[override]
        if value is None:
            return None
        base, annotations = value
        return AnnotatedImageData(
            image=FileData(path=str(base)),
            annotations=[Annotation(image=FileData(path=str(p)), label=label) for p, label in annotations],
        )


METRIC_LABELS = {
    "index": "candidate", "score": "score (pred. IoU)", "area_px": "area (px)", "area_pct": "area (%)",
    "perimeter_px": "perimeter (px)", "bbox": "bbox x1,y1,x2,y2", "encode_ms": "encode (ms)",
    "decode_ms": "decode (ms)", "cache_hit": "cache hit", "model": "model", "device": "device",
    "precision": "precision", "image": "image (px)", "measured_on": "measured on",
}


def metrics_html(metrics: dict[str, Any]) -> str:
    """A two-column-pair HTML table; each value cell carries ``data-metric=<key>``."""
    if not metrics:
        return "<div class='metrics-empty'>Metrics appear after the first click.</div>"
    cells = []
    for key, value in metrics.items():
        text = json.dumps(value) if isinstance(value, (list, bool)) or value is None else str(value)
        cells.append(f"<th>{html.escape(METRIC_LABELS.get(key, key))}</th>"
                     f"<td data-metric='{html.escape(key)}'>{html.escape(text)}</td>")
    rows = ["<tr>" + "".join(cells[i:i + 2]) + "</tr>" for i in range(0, len(cells), 2)]
    return "<table class='metrics'>" + "".join(rows) + "</table>"


def _fail(err: Exception) -> None:
    """Turn a user-caused error into a visible UI message (state stays as it was)."""
    raise gr.Error(str(err), duration=8) from None


class Handlers:
    """Event handlers. Each returns the values of :attr:`outputs` (see ``build_app``)."""

    def __init__(self, studio: Studio) -> None:
        self.studio = studio

    # -------------------------------------------------------------- helpers
    def _state(self, state: SessionState | None) -> SessionState:
        return state if isinstance(state, SessionState) else SessionState(model_type=self.studio.default_model)

    def render(self, state: SessionState, status: str = "") -> tuple:
        """(state, input_image, gallery, result, metrics, prompts, status)."""
        view: View = self.studio.view(state, status)
        gallery = gr.update(value=view.gallery or None, selected_index=view.selected)
        return (
            state,
            view.input_image,
            gallery,
            view.annotated,
            metrics_html(view.metrics),
            view.rows,
            view.status,
        )

    def _status(self, state: SessionState) -> str:
        if not state.has_image:
            return "Upload an image or pick an example."
        if state.pending_corner is not None:
            x, y = state.pending_corner
            return f"Box: first corner at ({x:g}, {y:g}) — now click the opposite corner."
        if state.result is None:
            return "Click on the object (foreground), on what to exclude (background), or draw a box."
        t = state.result.timings
        hit = "cached embedding" if t["cache_hit"] else f"encoded in {t['encode_ms']:.0f} ms"
        return f"{len(state.result.scores)} candidates · decoder {t['decode_ms']:.0f} ms · {hit}"

    def _run_and_render(self, state: SessionState) -> tuple:
        try:
            state = self.studio.run(state)
        except UserError as err:
            _fail(err)
        return self.render(state, self._status(state))

    # -------------------------------------------------------------- events
    def upload(self, path: str | None, state: SessionState | None, progress=gr.Progress()) -> tuple:
        state = self._state(state)
        if not path:  # cleared
            fresh = SessionState(session_id=state.session_id, model_type=state.model_type, settings=state.settings)
            return self.render(fresh, "Upload an image or pick an example.")
        try:
            state = self.studio.open_image(state, path, Path(path).name,
                                           progress=lambda f, msg: progress(f, desc=msg))
        except UserError as err:
            _fail(err)
        return self.render(state, f"Loaded {state.image_name} ({state.size[0]}×{state.size[1]}, ready in "
                                  f"{state.encode_ms / 1000:.1f} s) · {self._status(state)}")

    def webcam(self, path: str | None, state: SessionState | None, progress=gr.Progress()) -> tuple:
        """``.change``: a webcam capture arrives only as a change (no upload event).

        The change event also fires when a handler shows a new render in the image, so only a
        capture (which the front end names ``image.png`` / ``image.jpeg``) is opened.
        """
        if not path or not WEBCAM_NAME.fullmatch(Path(path).name) or (state and state.image_path == path):
            return tuple(gr.skip() for _ in range(7))
        return self.upload(path, state, progress)

    def example(self, path: str, preset: str, state: SessionState | None, progress=gr.Progress()) -> tuple:
        state = self._state(state)
        try:
            state = self.studio.open_image(state, path, Path(path).name,
                                           progress=lambda f, msg: progress(f, desc=msg))
            state = self.studio.set_prompts(state, Prompts.from_json(preset))
        except UserError as err:
            _fail(err)
        return self._run_and_render(state)

    def select(self, state: SessionState | None, mode: str, evt: gr.SelectData) -> tuple:
        state = self._state(state)
        try:
            try:
                x, y = float(evt.index[0]), float(evt.index[1])
            except (TypeError, ValueError, IndexError, KeyError):  # only a hand-made request sends these
                raise PromptError(f"Invalid click position {repr(evt.index)[:60]}: expected [x, y] in pixels.") from None
            state, complete = self.studio.click(state, x, y, mode)
        except UserError as err:
            _fail(err)
        if not complete:
            return self.render(state, self._status(state))
        return self._run_and_render(state)

    def undo(self, state: SessionState | None) -> tuple:
        state = self.studio.undo(self._state(state))
        if state.pending_corner is None and state.has_image:
            return self._run_and_render(state)
        return self.render(state, self._status(state))

    def clear(self, state: SessionState | None) -> tuple:
        state = self.studio.clear(self._state(state))
        return self.render(state, self._status(state))

    def edit_prompts(self, rows: Any, state: SessionState | None) -> tuple:
        state = self._state(state)
        values = rows.values.tolist() if hasattr(rows, "values") else (rows or [])
        try:
            state = self.studio.set_prompts(state, prompts_from_rows(values))
        except UserError as err:
            _fail(err)
        return self._run_and_render(state)

    def choose(self, state: SessionState | None, evt: gr.SelectData) -> tuple:
        state = self.studio.choose(self._state(state), int(evt.index))
        return self.render(state, self._status(state))

    def settings(self, state: SessionState | None, multimask: bool, threshold: float, alpha: float,
                 min_island: float, min_hole: float, refine: bool) -> tuple:
        """Apply settings; only a multimask change needs the decoder again."""
        state = self._state(state)
        new = Settings(bool(multimask), float(threshold), float(alpha), max(0, int(min_island or 0)),
                       max(0, int(min_hole or 0)), bool(refine))
        rerun = new.multimask != state.settings.multimask
        state = dataclasses.replace(state, settings=new)
        if rerun and state.has_image:
            return self._run_and_render(state)
        return self.render(state, self._status(state))

    def switch_model(self, model_type: str, state: SessionState | None, progress=gr.Progress(track_tqdm=True)) -> tuple:
        state = self._state(state)
        try:
            report = lambda f, msg: progress(f, desc=msg)  # noqa: E731
            seg = self.studio.segmenter(model_type, progress=report)
            state = dataclasses.replace(state, model_type=seg.model_type, result=None)
            if state.has_image:
                self.studio.ensure_embedding(state, report)
        except UserError as err:
            _fail(err)
        if state.has_image and not state.prompts.empty:
            return self._run_and_render(state)
        return self.render(state, f"Model: {model_type}. {self._status(state)}")

    def export(self, state: SessionState | None):
        """Write the full-resolution files and show them in the Downloads list."""
        try:
            paths = [str(p) for p in self.studio.export(self._state(state))]
        except UserError as err:
            _fail(err)
        return gr.update(value=paths, visible=True)

    def save(self, state: SessionState | None) -> str:
        try:
            path = self.studio.save_overlay(self._state(state))
        except UserError as err:
            _fail(err)
        gr.Info(f"Saved {path.name} to {path.parent}")
        return f"Saved overlay: `{path}`"

    def api_segment(self, image_file: str | None, prompts: str, multimask: bool) -> tuple[dict, list[str]]:
        """``/segment``: (summary, full-resolution mask PNG paths)."""
        try:
            summary, paths = self.studio.segment_file(image_file or "", prompts, bool(multimask),
                                                      name=Path(image_file).name if image_file else None)
        except UserError as err:
            _fail(err)
        return summary, [str(p) for p in paths]


def header_markdown(studio: Studio) -> str:
    seg = studio.segmenter()
    info = seg.info()
    line = (f"## SAM Studio — Segment Anything\n"
            f"Model **{info['model']}** · device **{info['device']}** · precision **{info['precision']}**"
            + (" · SDPA" if info["sdpa"] else ""))
    if seg.is_test_model:
        line += ("\n\n<span class='warning'>⚠ test-tiny: random weights for tests and smoke runs. "
                 "Its masks are meaningless. Start with `--model vit_b` (or vit_h) for real segmentation.</span>")
    if seg.placement.warning:
        line += f"\n\n<span class='warning'>⚠ {seg.placement.warning}</span>"
    return line


def load_presets() -> list[list[str]]:
    """Example rows ``[image_path, prompts_json]`` from ``examples/presets.json``."""
    path = EXAMPLES_DIR / "presets.json"
    if not path.exists():
        return []
    rows = []
    for item in json.loads(path.read_text()):
        file = EXAMPLES_DIR / item["file"]
        if file.exists():
            rows.append([str(file), json.dumps({"points": item.get("points") or [], "box": item.get("box")}),
                         item.get("title", item["file"])])
    return rows


def build_app(studio: Studio, *, gpu: Callable[[Callable], Callable] | None = None) -> gr.Blocks:
    """Build the Blocks app around ``studio``.

    ``gpu``: a decorator for handlers that run the model (``spaces.GPU`` on ZeroGPU Spaces).
    """
    h = Handlers(studio)
    if gpu is not None:
        for name in ("upload", "webcam", "example", "select", "undo", "edit_prompts", "settings", "switch_model",
                     "export", "save", "api_segment"):
            setattr(h, name, gpu(getattr(h, name)))
    # delete_cache: every 30 min, drop cached files (renders, uploads) older than an hour
    with gr.Blocks(title="SAM Studio", delete_cache=(1800, 3600)) as app:
        state = gr.State(None)
        gr.Markdown(header_markdown(studio), elem_id="header")
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                image = RawImage(
                    label="Image — click to add prompts", type="filepath", format="png",
                    sources=["upload", "clipboard", "webcam"], interactive=True, elem_id="input-image",
                    height=560,
                )
                with gr.Row():
                    mode = gr.Radio(list(MODES), value=MODE_FG, label="Prompt mode", elem_id="prompt-mode", scale=4)
                    undo = gr.Button("↶ Undo", elem_id="undo", scale=1, min_width=80)
                    clear = gr.Button("Clear", elem_id="clear", scale=1, min_width=80)
                status = gr.Markdown("Upload an image or pick an example.", elem_id="status")
                prompts = gr.Dataframe(
                    headers=ROW_HEADERS, datatype=["str", "number", "number", "str", "str"],
                    column_count=(5, "fixed"), row_count=(0, "dynamic"), interactive=True,
                    label="Prompts (full-image pixels; edit for exact coordinates — label fg, bg or box)",
                    elem_id="prompts",
                )
                preset = gr.Textbox(visible=False)
                title = gr.Textbox(visible=False)
                examples = load_presets()
                example_table = None
                if examples:
                    example_table = gr.Examples(
                        examples=examples, inputs=[image, preset, title], label="Examples (with preset prompts)",
                        run_on_click=False, cache_examples=False, example_labels=[e[2] for e in examples],
                        elem_id="examples", api_visibility="private",
                    )
            with gr.Column(scale=3):
                candidates = gr.Gallery(
                    label="Candidates (best preselected — click to choose)", columns=3, rows=1, height=230,
                    allow_preview=False, object_fit="contain", elem_id="candidates", interactive=False,
                )
                result = FastAnnotatedImage(label="Chosen mask", elem_id="result", height=420)
                metrics = gr.HTML(metrics_html({}), elem_id="metrics", label="Metrics")
                with gr.Row():
                    export = gr.Button("Export mask, cut-out, overlay, JSON", elem_id="export", variant="primary")
                    save = gr.Button("Save overlay to outputs/", elem_id="save")
                downloads = gr.File(label="Downloads", file_count="multiple", elem_id="downloads", interactive=False,
                                    visible=False)
                saved = gr.Markdown(elem_id="saved")
                with gr.Accordion("Settings", open=False, elem_id="settings"):
                    model = gr.Dropdown(MODEL_CHOICES, value=studio.default_model, label="Model", elem_id="model")
                    multimask = gr.Checkbox(True, label="Three candidates (multimask)", elem_id="multimask")
                    threshold = gr.Slider(-4, 4, value=0.0, step=0.25, label="Mask threshold on the logits",
                                          elem_id="threshold")
                    alpha = gr.Slider(0.1, 1.0, value=0.5, step=0.05, label="Overlay opacity", elem_id="opacity")
                    with gr.Row():
                        min_island = gr.Number(0, label="Remove islands below (px)", precision=0, minimum=0)
                        min_hole = gr.Number(0, label="Fill holes below (px)", precision=0, minimum=0)
                    refine = gr.Checkbox(False, label="Refine with previous mask", elem_id="refine")

        outputs = [state, image, candidates, result, metrics, prompts, status]
        hidden = dict(api_visibility="private")
        image.upload(h.upload, [image, state], outputs, **hidden)
        image.clear(h.upload, [image, state], outputs, **hidden)
        image.change(h.webcam, [image, state], outputs, **hidden)
        image.select(h.select, [state, mode], outputs, **hidden)
        undo.click(h.undo, [state], outputs, **hidden)
        clear.click(h.clear, [state], outputs, **hidden)
        prompts.input(h.edit_prompts, [prompts, state], outputs, **hidden)
        candidates.select(h.choose, [state], outputs, **hidden)
        settings = [state, multimask, threshold, alpha, min_island, min_hole, refine]
        for comp in (multimask, refine):
            comp.input(h.settings, settings, outputs, **hidden)
        for comp in (threshold, alpha):
            comp.release(h.settings, settings, outputs, **hidden)
        for comp in (min_island, min_hole):
            comp.submit(h.settings, settings, outputs, **hidden)
            comp.blur(h.settings, settings, outputs, **hidden)
        model.input(h.switch_model, [model, state], outputs, **hidden)
        export.click(h.export, [state], downloads, **hidden)
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
        api_prompts.submit(h.api_segment, [api_image, api_prompts, api_multimask], [api_summary, api_masks],
                           api_name="segment", api_visibility="public")
    return app
