"""The prompt variants each experiment decodes for one object, on one cached embedding.

Every function takes ``decode(prompts, multimask=..., mask_input=...) -> SegmentResult`` (the
mask decoder on the image's embedding: the encoder never runs here) and returns the
:class:`Outcome` of each variant, in the order they appear in ``results.csv``. The chosen
candidate is always the best-scored one (SAM's predicted IoU). Coordinates are full-image
pixels; masks ``(H, W)`` bool at full resolution.

Experiments (the lab report's, plus the standard click protocol):

* ``none``: the object's prompts, once (variant ``base``).
* ``box-scale``: the box scaled about its centre by each of :data:`BOX_SCALES`, clipped to the
  image, the points unchanged (variants ``scale_0.8`` ...). ``iou_vs_unscaled``: IoU with the
  mask of the 1.0 box.
* ``points``: the box alone (variant ``box``), then the box plus 1, 2, 3 simulated clicks
  (``box+1`` ...), each click from :func:`~sam_core.core.evaluation.next_click` on the previous
  chosen mask and the reference; every step decodes afresh (multimask, no mask input).
* ``clicks``: :func:`~sam_core.core.evaluation.simulate_clicks` up to :data:`MAX_CLICKS`: the
  first prediction is multimask (best score chosen); each later one is single-mask with the
  previous chosen low-res logits as ``mask_input`` (SAM's interactive protocol). It starts from
  nothing (first click at the reference's interior point) or, with ``start``, corrects the
  prediction of those prompts (variant ``start``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from sam_core.core.errors import UserError
from sam_core.core.evaluation import ClickCurve, iou, next_click, scale_box, simulate_clicks
from sam_core.core.prompts import Prompts
from sam_core.core.sizes import ImageSize
from sam_core.model.results import SegmentResult

__all__ = [
    "BOX_SCALES",
    "EXPERIMENTS",
    "EXPERIMENT_COLUMNS",
    "MAX_CLICKS",
    "NEEDS_REFERENCE",
    "POINT_CLICKS",
    "Decode",
    "ExperimentSkip",
    "Outcome",
    "primary_variant",
    "run_experiment",
]

EXPERIMENTS = ("none", "box-scale", "points", "clicks")
NEEDS_REFERENCE = ("points", "clicks")  # the clicks are simulated from the reference
BOX_SCALES = (0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0)
POINT_CLICKS = 3
MAX_CLICKS = 20

#: The columns each experiment adds to ``results.csv`` (after the reference metrics).
EXPERIMENT_COLUMNS: dict[str, tuple[str, ...]] = {
    "none": (),
    "box-scale": ("scale", "iou_vs_unscaled"),
    "points": ("clicks", "iou_before", "delta_iou"),
    "clicks": ("clicks",),
}


class Decode(Protocol):
    def __call__(
        self, prompts: Prompts, *, multimask: bool = True, mask_input: np.ndarray | None = None
    ) -> SegmentResult:
        """The prompt encoder and mask decoder on the image's cached embedding."""
        ...


class ExperimentSkip(UserError):
    """This object cannot take part in the experiment (the message is the errors.csv reason)."""


@dataclass(frozen=True)
class Outcome:
    """One decoded variant: its prompts, SAM's candidates, the chosen one and its full-res mask."""

    variant: str
    prompts: Prompts
    result: SegmentResult
    chosen: int
    mask: np.ndarray = field(repr=False)  # (H, W) bool, the chosen candidate at full resolution
    multimask: bool = True
    refined: bool = False  # decoded with the previous low-res logits as mask_input
    extra: dict[str, Any] = field(default_factory=dict)  # the experiment's columns


def _outcome(variant: str, prompts: Prompts, res: SegmentResult, **kw: Any) -> Outcome:
    chosen = res.best_index
    return Outcome(variant, prompts, res, chosen, res.full_mask(chosen), **kw)


def _scale_name(factor: float) -> str:
    return f"scale_{float(factor)!r}"  # scale_0.8, scale_1.0, scale_1.25


def primary_variant(experiment: str, outcomes: list[Outcome]) -> Outcome:
    """The variant drawn in ``overlays/``: the plain prompts, the 1.0 box, or the last click."""
    if experiment == "box-scale":
        return next(o for o in outcomes if o.extra.get("scale") == 1.0)
    return outcomes[0] if experiment == "none" else outcomes[-1]


def _box_scale(decode: Decode, prompts: Prompts, size: ImageSize) -> list[Outcome]:
    if prompts.box is None:
        raise ExperimentSkip("box-scale needs a box prompt; this object has points only")
    out = []
    for factor in BOX_SCALES:
        p = Prompts(prompts.points, scale_box(prompts.box, factor, size))
        out.append(_outcome(_scale_name(factor), p, decode(p), extra={"scale": factor}))
    base = next(o for o in out if o.extra["scale"] == 1.0).mask
    return [
        Outcome(
            o.variant, o.prompts, o.result, o.chosen, o.mask, extra={**o.extra, "iou_vs_unscaled": iou(o.mask, base)}
        )
        for o in out
    ]


def _points(decode: Decode, prompts: Prompts, ref: np.ndarray) -> list[Outcome]:
    if prompts.box is None:
        raise ExperimentSkip("the points experiment needs a box prompt; this object has points only")
    p = Prompts((), prompts.box)
    first = _outcome("box", p, decode(p), extra={"clicks": 0})
    before = iou(first.mask, ref)
    out = [first]
    for k in range(1, POINT_CLICKS + 1):
        click = next_click(out[-1].mask, ref)
        if click is None:  # the prediction equals the reference: nothing to correct
            break
        p = Prompts((*p.points, click), p.box)
        out.append(_outcome(f"box+{k}", p, decode(p), extra={"clicks": k}))
    return [
        Outcome(
            o.variant,
            o.prompts,
            o.result,
            o.chosen,
            o.mask,
            extra={**o.extra, "iou_before": before, "delta_iou": iou(o.mask, ref) - before},
        )
        for o in out
    ]


def _clicks(
    decode: Decode, ref: np.ndarray, start: Prompts | None, max_clicks: int
) -> tuple[list[Outcome], ClickCurve]:
    out: list[Outcome] = []

    def predict(prompts: Prompts, prev: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        first = prev is None
        res = decode(prompts, multimask=first, mask_input=prev)
        k = len(out) + (0 if start is not None and not start.empty else 1)
        name = "start" if k == 0 else f"click_{k:02d}"
        o = _outcome(name, prompts, res, multimask=first, refined=not first, extra={"clicks": k})
        out.append(o)
        return o.mask, res.low_res_logits[o.chosen]

    curve = simulate_clicks(predict, ref, max_clicks=max_clicks, start=start)
    return out, curve


def run_experiment(
    experiment: str,
    decode: Decode,
    prompts: Prompts | None,
    *,
    size: ImageSize,
    ref: np.ndarray | None = None,
    max_clicks: int = MAX_CLICKS,
) -> tuple[list[Outcome], ClickCurve | None]:
    """The outcomes of ``experiment`` for one object (and its click curve for ``clicks``).

    ``prompts``: the object's prompts (``None`` only for ``clicks`` without a start). ``ref``:
    the reference mask (H, W), required by ``points`` and ``clicks``; ``max_clicks``: the click
    budget of ``clicks`` (NoC counts a failure as this many). Raises
    :class:`ExperimentSkip` when the object cannot take part.
    """
    if experiment in NEEDS_REFERENCE and ref is None:
        raise ExperimentSkip(f"the {experiment} experiment needs a reference mask")
    if experiment == "clicks":
        assert ref is not None
        return _clicks(decode, ref, prompts, max_clicks)
    if prompts is None:
        raise ExperimentSkip("no prompt for this object")
    if experiment == "none":
        return [_outcome("base", prompts, decode(prompts))], None
    if experiment == "box-scale":
        return _box_scale(decode, prompts, size), None
    if experiment == "points":
        assert ref is not None
        return _points(decode, prompts, ref), None
    raise ValueError(f"unknown experiment {experiment!r}; use one of {', '.join(EXPERIMENTS)}")
