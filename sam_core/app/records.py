"""The one place a :class:`~sam_core.runlog.RunRecord` is built from a session's run.

The UI, the exports and ``/segment`` log through :func:`make_record`; batch studies, which have
no session, through its sibling :func:`make_result_record` (the same fields, one mapping).

Object ids (for "clicks per object"): an interactive object is what one visitor segments on
one image between two fresh starts. Its id is ``<session id>-<image hash[:8]>-<object id>``
for the annotation's object (``SessionState.current_id``: 1, 2, ... per image), followed by
``.<n>`` when ``n`` > 1, where ``n`` counts the times that object's prompts were built up from
nothing in its undo history (the first click, the first click after *Clear*, an edited table
that starts from no prompts); undoing a *Clear* goes back to the previous one. A new image
starts at object 1 again, with a new hash. Runs without an undo history (``/segment``) have none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from sam_core.core.enhance import Clahe
from sam_core.runlog import RunRecord

if TYPE_CHECKING:
    from sam_core.app.session import SessionState
    from sam_core.app.studio import ImageEntry
    from sam_core.core.prompts import Prompts
    from sam_core.core.sizes import ImageSize
    from sam_core.model.segmenter import Segmenter, SegmentResult


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
    if res is None or state.candidates is None:
        raise ValueError("make_record needs a session with candidates")
    return make_result_record(
        res,
        state.chosen,
        seg,
        source,
        metrics,
        prompts=state.prompts,
        multimask=state.settings.multimask,
        image_hash=entry.key,
        image_name=entry.image.name,
        size=entry.image.size,
        stats=entry.stats,
        session=state.session_id,
        object_id=object_id(state, entry.key),
        mask=state.candidates.shown,  # preview size for clicks: the flags cost O(h + w)
        decoder=decoder,
        iou=iou,
        extra=preprocess_extra(state.settings.enhancement),
    )


def preprocess_extra(clahe: Clahe | None) -> dict[str, Any] | None:
    """The run record's ``extra`` for the encoder's pre-processing: ``{"preprocess": "clahe2.0x8"}``,
    or None for the plain image."""
    return None if clahe is None else {"preprocess": clahe.key()}


def make_result_record(
    res: SegmentResult,
    chosen: int,
    seg: Segmenter,
    source: str,
    metrics: dict[str, Any],
    *,
    prompts: Prompts,
    multimask: bool,
    image_hash: str,
    image_name: str,
    size: ImageSize,
    stats: Mapping[str, Any] | None = None,
    session: str | None = None,
    object_id: str | None = None,
    mask: np.ndarray | None = None,
    decoder: str = "torch",
    iou: float | None = None,
    extra: dict[str, Any] | None = None,
) -> RunRecord:
    """The run record of one decoder result without a session (batch studies; :func:`make_record` uses it).

    ``chosen``: the candidate the record describes; ``metrics`` as for :func:`make_record`;
    ``size``: the full image; ``stats``: the input signals from ``image_stats`` (brightness,
    contrast, blur, channel means, saturation, hue histogram); ``mask``: the chosen ``(h, w)``
    bool mask at any size, for ``mask_full`` (``mask_empty`` comes from ``metrics["area"]``).
    """
    stats = stats or {}
    return RunRecord(
        session=session,
        object_id=object_id,
        image_hash=image_hash,
        image_name=image_name,
        width=size.width,
        height=size.height,
        aspect=size.width / size.height if size.height else None,
        brightness=stats.get("brightness"),
        contrast=stats.get("contrast"),
        blur=stats.get("blur"),
        mean_r=stats.get("mean_r"),
        mean_g=stats.get("mean_g"),
        mean_b=stats.get("mean_b"),
        saturation=stats.get("saturation"),
        hue_hist=stats.get("hue_hist"),
        model=seg.model_type,
        device=str(seg.device),
        precision=seg.placement.precision,
        prompts=prompts.to_dict(),
        multimask=multimask,
        chosen_index=chosen,
        scores=[round(float(s), 6) for s in res.scores],
        score=float(res.scores[chosen]),
        area=int(metrics["area"]),
        area_fraction=float(metrics["area_fraction"]),
        perimeter=float(metrics["perimeter"]),
        mask_empty=int(metrics["area"]) == 0,
        mask_full=None if mask is None else touches_all_borders(mask),
        encode_ms=float(res.timings["encode_ms"]),
        decode_ms=float(res.timings["decode_ms"]),
        cache_hit=bool(res.timings["cache_hit"]),
        source=source,
        decoder=decoder,
        iou=iou,
        extra=extra,
    )


def object_id(state: SessionState, image_key: str) -> str | None:
    """The interactive object ``state``'s prompts belong to (see the module notes), or None.

    ``n`` is the number of empty prompt sets in the object's undo history (its last ``MAX_HISTORY`` steps).
    """
    if not state.history:
        return None
    n = max(1, sum(1 for step in state.history if step.prompts.empty))
    base = f"{state.session_id}-{image_key[:8]}-{state.current_id}"
    return base if n == 1 else f"{base}.{n}"


def touches_all_borders(mask: np.ndarray) -> bool:
    """True when the ``(H, W)`` mask has a pixel on each of the four image borders (O(H + W))."""
    if mask.ndim != 2 or 0 in mask.shape:
        return False
    return bool(mask[0].any() and mask[-1].any() and mask[:, 0].any() and mask[:, -1].any())
