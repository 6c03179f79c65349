"""Exports at full resolution: the session's chosen mask, saved overlays, and the ``/segment`` API.

Every file is written with :func:`sam_core.core.files.write_atomic`; file names are derived
from the image's display name with :func:`safe_stem` and never from a path.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from pathlib import Path
from typing import Any

from sam_core.app.session import Candidates, SessionState, Settings
from sam_core.app.studio import Studio
from sam_core.core.errors import ImageError, UserError
from sam_core.core.files import prune_dir, safe_stem, write_atomic
from sam_core.core.geometry import mask_metrics, mask_polygons, rle_encode
from sam_core.core.prompts import Prompts
from sam_core.core.render import PALETTE, cutout_rgba, draw_prompts, encode_png, overlay_mask


def export_files(studio: Studio, state: SessionState) -> list[Path]:
    """Full-resolution mask PNG (0/255), RGBA cut-out, overlay PNG and a JSON report.

    Written to a new folder in the studio's scratch space; logs a run with source ``ui-export``.
    """
    entry = studio.entry(state)
    if state.result is None:
        raise UserError("Nothing to export yet: click on the image first.")
    res = studio.exact_result(state)  # the torch decoder's numbers, whoever decoded the clicks
    mask = studio.full_mask(state, result=res)
    rgb = entry.image.rgb
    folder = studio.render_dir / state.session_id / f"export-{uuid.uuid4().hex[:6]}"
    stem = safe_stem(entry.image.name)
    i = state.chosen
    overlay = draw_prompts(
        overlay_mask(rgb, mask, color=PALETTE[i % len(PALETTE)], alpha=state.settings.alpha),
        state.prompts.points,
        state.prompts.box,
    )
    metrics = mask_metrics(mask)
    seg = studio.segmenter(state.model_type)
    report = {
        "image": {"name": entry.image.name, "sha1": entry.key, "size": entry.image.size._asdict()},
        "model": seg.info(),
        "prompts": state.prompts.to_dict(),
        "settings": dataclasses.asdict(state.settings),
        "scores": [round(float(s), 6) for s in res.scores],
        "chosen_index": i,
        "metrics": metrics,
        "timings": res.timings,
        "rle": rle_encode(mask),  # COCO RLE: its "size" is [height, width], as COCO defines it
        "polygons": mask_polygons(mask),
    }
    paths = [
        write_atomic(folder / f"{stem}_mask{i + 1}.png", encode_png(mask)),
        write_atomic(folder / f"{stem}_cutout{i + 1}.png", encode_png(cutout_rgba(rgb, mask))),
        write_atomic(folder / f"{stem}_overlay{i + 1}.png", encode_png(overlay)),
        write_atomic(folder / f"{stem}_mask{i + 1}.json", json.dumps(report, indent=1).encode()),
    ]
    studio.log_run(state, entry, seg, "ui-export", metrics)
    return paths


def save_overlay(studio: Studio, state: SessionState) -> Path:
    """Write the full-resolution overlay to ``<outputs>/overlays/`` (atomically)."""
    entry = studio.entry(state)
    if state.result is None:
        raise UserError("Nothing to save yet: click on the image first.")
    mask = studio.full_mask(state)
    color = PALETTE[state.chosen % len(PALETTE)]
    overlay = draw_prompts(
        overlay_mask(entry.image.rgb, mask, color=color, alpha=state.settings.alpha),
        state.prompts.points,
        state.prompts.box,
    )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"{stamp}_{safe_stem(entry.image.name)}_{entry.key[:8]}_mask{state.chosen + 1}.png"
    return write_atomic(studio.outputs_dir / "overlays" / name, encode_png(overlay))


def segment_file(
    studio: Studio, path: str, prompts_json: str | None, multimask: bool = True, name: str | None = None
) -> tuple[dict[str, Any], list[Path]]:
    """The ``/segment`` endpoint: a summary and the full-resolution mask PNGs (0/255).

    Summary: ``image_size`` ``[width, height]``, ``candidates`` (index, score, area, perimeter,
    bbox), ``best_index``, ``timings``, ``model``, ``prompts``. Logs a run with source ``api``.
    """
    if not path:
        raise ImageError("No image file was sent.")
    prompts = Prompts.from_json(prompts_json)
    entry = studio.load_entry(path, name)
    prompts.validate(*entry.image.size)
    seg = studio.segmenter()
    t0 = time.perf_counter()
    emb, hit = seg.embed(entry.image.rgb, image_key=entry.key)
    encode_ms = (time.perf_counter() - t0) * 1000
    # The torch decoder: the API's masks equal SamPredictor's whatever decodes the UI's clicks.
    result = seg.decode(emb, prompts, multimask=bool(multimask), encode_ms=encode_ms, cache_hit=hit, backend="torch")
    prune_dir(studio.render_dir / "api", 600)  # the client fetched older masks long ago
    folder = studio.render_dir / "api" / uuid.uuid4().hex[:12]
    stem = safe_stem(entry.image.name)
    masks = result.masks  # (N, H, W): the exact full-resolution candidates
    measured = [mask_metrics(m) for m in masks]
    candidates = [
        {
            "index": i,
            "score": round(float(result.scores[i]), 6),
            "area": m["area"],
            "perimeter": round(m["perimeter"], 2),
            "bbox": m["bbox"],
        }
        for i, m in enumerate(measured)
    ]
    paths = [write_atomic(folder / f"{stem}_mask{i + 1}.png", encode_png(m)) for i, m in enumerate(masks)]
    best = result.best_index
    settings = Settings(multimask=bool(multimask))
    state = SessionState(
        session_id="api-" + uuid.uuid4().hex[:8],
        model_type=seg.model_type,
        image_key=entry.key,
        image_name=entry.image.name,
        size=entry.image.size,
        scale=1.0,
        prompts=prompts,
        settings=settings,
        candidates=Candidates(result, masks, settings.mask_key, best, measured[best]),
    )
    metrics = measured[best]
    studio.log_run(state, entry, seg, "api", metrics)
    summary = {
        "image_size": list(entry.image.size),
        "candidates": candidates,
        "best_index": best,
        "timings": result.timings,
        "model": seg.model_type,
        "prompts": prompts.to_dict(),
    }
    return summary, paths
