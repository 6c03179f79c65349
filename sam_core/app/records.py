"""The one place a :class:`~sam_core.runlog.RunRecord` is built from a session's run.

The UI, the exports, ``/segment`` and the batch runs all log through :func:`make_record`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sam_core.runlog import RunRecord

if TYPE_CHECKING:
    from sam_core.app.session import SessionState
    from sam_core.app.studio import ImageEntry
    from sam_core.model.segmenter import Segmenter


def make_record(
    state: SessionState,
    entry: ImageEntry,
    seg: Segmenter,
    source: str,
    metrics: dict[str, Any],
    *,
    decoder: str = "torch",
    iou: float | None = None,
) -> RunRecord:
    """The run record of ``state``'s current candidates.

    ``metrics``: the chosen mask's ``area``, ``area_fraction`` and ``perimeter`` in full-image
    units (measured on the preview for clicks, exact for exports and the API).
    """
    res = state.result
    if res is None:
        raise ValueError("make_record needs a session with candidates")
    return RunRecord(
        session=state.session_id,
        image_hash=entry.key,
        image_name=entry.image.name,
        width=entry.image.size.width,
        height=entry.image.size.height,
        brightness=entry.stats.get("brightness"),
        blur=entry.stats.get("blur"),
        model=seg.model_type,
        device=str(seg.device),
        precision=seg.placement.precision,
        prompts=state.prompts.to_dict(),
        multimask=state.settings.multimask,
        chosen_index=state.chosen,
        scores=[round(float(s), 6) for s in res.scores],
        score=float(res.scores[state.chosen]),
        area=int(metrics["area"]),
        area_fraction=float(metrics["area_fraction"]),
        perimeter=float(metrics["perimeter"]),
        encode_ms=float(res.timings["encode_ms"]),
        decode_ms=float(res.timings["decode_ms"]),
        cache_hit=bool(res.timings["cache_hit"]),
        source=source,
        decoder=decoder,
        iou=iou,
    )
