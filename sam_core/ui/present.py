"""Presentation of a session: the files the browser gets, labels, table rows, metrics, status.

Renders are at preview resolution (<= 1536 px): the input with its prompts (JPEG), one
thumbnail per candidate (JPEG) and the chosen mask as a small palette PNG. They are written
to the studio's scratch folder, per session, and pruned after two minutes (Gradio has copied
them into its own cache by then).
"""

from __future__ import annotations

import html
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sam_core.app.session import SessionState
from sam_core.app.studio import ImageEntry, Studio
from sam_core.core.errors import PromptError
from sam_core.core.files import prune_dir, write_atomic
from sam_core.core.geometry import exclusive_in_order
from sam_core.core.prompts import Prompts
from sam_core.core.render import (
    PALETTE,
    candidate_thumbnails,
    cutout_rgba,
    draw_label_map,
    draw_objects,
    draw_polygon,
    draw_prompts,
    encode_jpeg,
    encode_mask_png,
    encode_png,
    object_color,
)
from sam_core.core.sizes import ImageSize

THUMB_SIDE = 320
RENDER_TTL_S = 120

ROW_HEADERS = ["label", "x", "y", "x2", "y2"]
OBJECT_HEADERS = ["id", "label", "colour", "area (px)", "score", "state"]

METRIC_LABELS = {
    "index": "candidate",
    "score": "score (pred. IoU)",
    "area_px": "area (px)",
    "area_pct": "area (%)",
    "perimeter_px": "perimeter (px)",
    "bbox": "bbox x1,y1,x2,y2",
    "encode_ms": "encode (ms)",
    "decode_ms": "decode (ms)",
    "decoder": "decoded by",
    "cache_hit": "cache hit",
    "model": "model",
    "device": "device",
    "precision": "precision",
    "image": "image (px)",
    "measured_on": "measured on",
    "preprocess": "pre-processing",
}


@dataclass(frozen=True)
class View:
    """What the Segment tab shows. Image fields are file paths written for the browser."""

    input_image: str | None
    gallery: list[tuple[str, str]]
    selected: int | None
    annotated: tuple[str, list[tuple[str, str]]] | None
    metrics: dict[str, Any]
    rows: list[list[Any]]
    status: str


def _write(studio: Studio, state: SessionState, stem: str, data: bytes, ext: str) -> str:
    folder = studio.render_dir / state.session_id
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}-{uuid.uuid4().hex[:8]}.{ext}"
    path.write_bytes(data)
    return str(path)


def is_own_render(studio: Studio, state: SessionState, path: str) -> bool:
    """Whether ``path`` is a view this session was shown (Gradio re-serves a render from its
    cache under the same file name, and reports it as a change of the image)."""
    return (studio.render_dir / state.session_id / Path(path).name).is_file()


def render_view(studio: Studio, state: SessionState, status: str = "", *, browser: bool = False) -> View:
    """Render everything the Segment tab shows for ``state`` at preview resolution.

    ``browser``: the page's browser decoder draws the prompts, the masks and the candidates
    itself, so the input is sent plain and no candidate images are made.
    """
    if not state.has_image:
        return View(None, [], None, None, {}, [], status or "Upload an image or pick an example.")
    entry = studio.entry(state)
    # The committed objects (and segment-everything regions): drawn into the input on the browser
    # path (whose input is sent only when they change), a cached layer of the result view on the
    # server path (so a click does not re-encode them).
    base = objects_layer(studio, state, entry)[0] if browser else entry.preview
    layer = None if browser else objects_layer_png(studio, state, entry)
    if state.polygon:
        base = draw_polygon(base, state.polygon, scale=entry.scale)
    if browser:
        drawn = base
    else:
        drawn = draw_prompts(
            base,
            state.prompts.points,
            state.prompts.box,
            scale=entry.scale,
            pending_corner=state.pending_corner,
        )
    input_path = _write(studio, state, "input", encode_jpeg(drawn, quality=88), "jpg")
    gallery: list[tuple[str, str]] = []
    annotated = None
    metrics: dict[str, Any] = {}
    selected = None
    cands = state.candidates
    if cands is not None and browser:
        selected = cands.chosen
        metrics = metrics_dict(studio, state)
    elif cands is not None:
        res = cands.result
        colors = [PALETTE[i % len(PALETTE)] for i in range(len(cands.masks))]
        if state.settings.min_island or state.settings.min_hole:  # cleaned preview masks: shrink them
            thumbs = candidate_thumbnails(drawn, cands.masks, colors=colors, max_side=THUMB_SIDE)
        else:  # the image shrunk once per image, the masks straight from the logits at that size
            small, tscale = entry.shrunk(THUMB_SIDE)
            base = draw_prompts(
                small, state.prompts.points, state.prompts.box, scale=tscale, pending_corner=state.pending_corner
            )
            tmasks = res.small_masks(ImageSize.of(small), threshold=state.settings.threshold)
            thumbs = candidate_thumbnails(base, tmasks, colors=colors, max_side=THUMB_SIDE)
        for i, (m, thumb) in enumerate(zip(cands.masks, thumbs, strict=True)):
            caption = f"mask {i + 1} · score {res.scores[i]:.3f} · {100 * m.mean():.1f} %"
            gallery.append((_write(studio, state, f"cand{i}", encode_jpeg(thumb, quality=85), "jpg"), caption))
        selected = cands.chosen
        label = f"mask {cands.chosen + 1} ({res.scores[cands.chosen]:.3f})"
        png = encode_mask_png(cands.shown, colors[cands.chosen], state.settings.alpha)
        annotated = (input_path, [*layer_list(layer), (_write(studio, state, "mask", png, "png"), label)])
        metrics = metrics_dict(studio, state)
    if annotated is None and layer is not None:
        annotated = (input_path, layer_list(layer))  # the committed objects / regions alone
    keep = {input_path, *(g[0] for g in gallery)} | ({a[0] for a in annotated[1]} if annotated else set())
    prune_dir(studio.render_dir / state.session_id, RENDER_TTL_S, keep)
    return View(input_path, gallery, selected, annotated, metrics, prompt_rows(state.prompts), status)


def objects_layer(studio: Studio, state: SessionState, entry: ImageEntry) -> tuple[np.ndarray, dict[int, float]]:
    """The preview (h, w, 3) with the committed objects drawn in their colours (with *Exclude
    committed objects*, each without the pixels of objects with smaller ids), and each object's
    area as drawn, in full-image px. Cached in ``studio.renders`` by what it shows, so a click
    with 10 objects in the image does not redraw them."""
    key = _objects_key("objects", state, entry)
    if key is None:
        return entry.preview, {}
    regions = state.regions

    def make() -> tuple[np.ndarray, dict[int, float]]:
        masks = [o.mask for o in state.objects]  # by id
        areas: dict[int, float] = {}
        if state.settings.exclude:
            masks = list(exclusive_in_order(masks))
            areas = {o.object_id: float(m.sum()) / entry.scale**2 for o, m in zip(state.objects, masks, strict=True)}
        drawn = [(o.object_id, o.label, m) for o, m in zip(state.objects, masks, strict=True)]
        under = entry.preview if regions is None else draw_label_map(entry.preview, regions.labels, alpha=0.45)
        image = draw_objects(under, drawn)
        image.flags.writeable = False
        return image, areas

    value, _ = studio.renders.get_or_create(key, make)
    return value


def _objects_key(kind: str, state: SessionState, entry: ImageEntry) -> tuple[Any, ...] | None:
    """A ``studio.renders`` key of what the committed objects (and regions) look like over the
    image; None when there is nothing to draw."""
    if not state.objects and state.regions is None:
        return None
    objects = tuple((o.object_id, o.rev) for o in state.objects)
    return (kind, entry.key, state.settings.exclude, objects, None if state.regions is None else state.regions.rev)


@dataclass(frozen=True)
class LayerFile:
    """A rendered layer PNG shared by the renders that show the same objects (cached by key)."""

    path: str
    nbytes: int


def layer_list(layer: LayerFile | None) -> list[tuple[str, str]]:
    return [] if layer is None else [(layer.path, "objects")]


def objects_layer_png(studio: Studio, state: SessionState, entry: ImageEntry) -> LayerFile | None:
    """The committed objects (and regions) as an RGBA PNG at the preview size, for the result view:
    exactly :func:`objects_layer`'s pixels where it differs from the preview, transparent elsewhere.
    Written once per set of objects into the studio's shared ``layers`` folder."""
    key = _objects_key("layer", state, entry)
    if key is None:
        return None

    def make() -> LayerFile:
        image, _ = objects_layer(studio, state, entry)
        rgba = cutout_rgba(image, np.any(image != entry.preview, axis=2), crop=False)
        folder = studio.render_dir / "layers"
        prune_dir(folder, 3600)
        data = encode_png(rgba)
        path = write_atomic(folder / f"layer-{uuid.uuid4().hex[:12]}.png", data)
        return LayerFile(str(path), len(data))

    value, _ = studio.renders.get_or_create(key, make)
    if not Path(value.path).exists():  # pruned (an hour unused): write it again
        value = make()
        studio.renders.put(key, value)
    return value


def object_rows(studio: Studio, state: SessionState) -> list[list[Any]]:
    """The objects table: id, label, colour swatch (HTML), area (full-image px; ``≈`` when measured
    on the preview after the exclusion rule), score, state (``editing`` for the object being edited)."""
    if not state.has_image:
        return []
    # with the exclusion rule, areas as drawn (the objects image is cached: made once per commit)
    areas = objects_layer(studio, state, studio.entry(state))[1] if state.settings.exclude else {}
    rows: list[tuple[int, list[Any]]] = []
    for o in state.objects:
        area = f"≈{areas[o.object_id]:,.0f}" if o.object_id in areas else f"{o.area:,}"
        rows.append((o.object_id, [o.object_id, o.label, _swatch(o.object_id), area, round(o.score, 3), ""]))
    cands = state.candidates
    if cands is not None:
        score = round(float(cands.result.scores[cands.chosen]), 3)
        area = f"≈{cands.metrics['area']:,.0f}" if state.scale != 1.0 else f"{cands.metrics['area']:,}"
        rows.append(
            (state.current_id, [state.current_id, state.label, _swatch(state.current_id), area, score, "editing"])
        )
    return [r for _, r in sorted(rows, key=lambda t: t[0])]


def _swatch(object_id: int) -> str:
    r, g, b = object_color(object_id)
    return f"<span class='swatch' style='background:rgb({r},{g},{b})'></span> rgb({r},{g},{b})"


def metrics_dict(studio: Studio, state: SessionState) -> dict[str, Any]:
    """The metrics table's values for the chosen candidate (full-image units)."""
    cands = state.candidates
    if cands is None:
        return {}
    res, m = cands.result, cands.metrics
    seg = studio.segmenter(state.model_type)
    preview = cands.masks.shape[1:]
    return {
        "index": cands.chosen + 1,
        "score": round(float(res.scores[cands.chosen]), 4),
        "area_px": m["area"],
        "area_pct": round(100 * m["area_fraction"], 2),
        "perimeter_px": round(m["perimeter"], 1),
        "bbox": m["bbox"],
        "encode_ms": res.timings["encode_ms"],
        "decode_ms": res.timings["decode_ms"],
        "decoder": res.timings.get("decoder", "torch"),
        "cache_hit": res.timings["cache_hit"],
        "model": seg.model_type,
        "device": str(seg.device),
        "precision": seg.placement.precision,
        "image": str(state.size),
        "measured_on": "full image" if state.scale == 1.0 else f"{preview[1]}×{preview[0]} preview (export is exact)",
        "preprocess": _preprocess_text(state),
    }


def _preprocess_text(state: SessionState) -> str:
    clahe = state.settings.enhancement
    return (
        "none"
        if clahe is None
        else f"CLAHE clip {clahe.clip_limit:g}, {clahe.tile_grid}×{clahe.tile_grid} tiles (L channel)"
    )


def metrics_html(metrics: dict[str, Any]) -> str:
    """A two-column-pair HTML table; each value cell carries ``data-metric=<key>``."""
    if not metrics:
        return "<div class='metrics-empty'>Metrics appear after the first click.</div>"
    cells = []
    for key, value in metrics.items():
        text = json.dumps(value) if isinstance(value, (list, bool)) or value is None else str(value)
        cells.append(
            f"<th>{html.escape(METRIC_LABELS.get(key, key))}</th>"
            f"<td data-metric='{html.escape(key)}'>{html.escape(text)}</td>"
        )
    rows = ["<tr>" + "".join(cells[i : i + 2]) + "</tr>" for i in range(0, len(cells), 2)]
    return "<table class='metrics'>" + "".join(rows) + "</table>"


def status_text(state: SessionState) -> str:
    """One line saying what to do next, or what the last decode cost."""
    if not state.has_image:
        return "Upload an image or pick an example."
    if state.pending_corner is not None:
        x, y = state.pending_corner
        return f"Box: first corner at ({x:g}, {y:g}) — now click the opposite corner."
    if state.result is None:
        if state.objects:
            return (
                f"{len(state.objects)} object{'s' if len(state.objects) > 1 else ''} · object {state.current_id} "
                f"({state.label}): click on it, or select an object in the list to edit it."
            )
        return "Click on the object (foreground), on what to exclude (background), or draw a box."
    t = state.result.timings
    hit = "cached embedding" if t["cache_hit"] else f"encoded in {t['encode_ms']:.0f} ms"
    return f"{len(state.result.scores)} candidates · decoder {t['decode_ms']:.0f} ms · {hit}"


def prompt_rows(prompts: Prompts) -> list[list[Any]]:
    """Prompt table rows: ("fg"|"bg", x, y, "", "") per point and ("box", x1, y1, x2, y2)."""
    rows: list[list[Any]] = [["fg" if lab else "bg", x, y, "", ""] for x, y, lab in prompts.points]
    if prompts.box is not None:
        x1, y1, x2, y2 = prompts.box
        rows.append(["box", x1, y1, f"{x2:g}", f"{y2:g}"])
    return rows


def prompts_from_rows(rows: list[list[Any]]) -> Prompts:
    """Parse an edited prompt table back into prompts (blank rows are skipped)."""
    points: list[tuple[Any, Any, Any]] = []
    box = None
    for n, row in enumerate(rows, start=1):
        cells = ["" if c is None else str(c).strip() for c in ([*list(row), "", "", "", "", ""])[:5]]
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
