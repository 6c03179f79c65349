"""The study's plots, as PNG bytes: ``box_scale.png`` and ``iou_vs_clicks.png``.

matplotlib's object API with the Agg canvas (no pyplot, no global figure state), so plots can
be drawn from several threads (the app's Batch tab) at once.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["box_scale", "iou_vs_clicks"]

_MEAN = "#1f4e9c"
_ONE = "#9aa7bd"
_MAX_LINES = 60  # per-object lines drawn under the mean (beyond this, only the mean and its spread)


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def _subtitle(summary: Mapping[str, Any]) -> str:
    model = (summary.get("model") or {}).get("model", "?")
    return f"model {model}" + (" — random test weights: the masks are meaningless" if summary.get("test_model") else "")


def box_scale(rows: Sequence[Mapping[str, Any]], summary: Mapping[str, Any]) -> bytes:
    """Three panels against the box scale factor: IoU, SAM's score, and the area relative to the 1.0 box.

    IoU is against the reference when there is one, else against the 1.0 box's own mask. Thin
    lines are single objects, the thick line with markers is the mean.
    """
    reference = any(r.get("iou") is not None for r in rows)
    objects: dict[tuple[str, str], dict[float, Mapping[str, Any]]] = {}
    for r in rows:
        objects.setdefault((r["image"], r["object"]), {})[float(r["scale"])] = r
    factors = sorted({f for per in objects.values() for f in per})

    def series(key: str, relative: bool = False) -> np.ndarray:
        out = np.full((len(objects), len(factors)), np.nan)
        for i, per in enumerate(objects.values()):
            base = per.get(1.0, {}).get("area") if relative else None
            for j, f in enumerate(factors):
                if f in per and per[f].get(key) is not None:
                    v = float(per[f][key])
                    out[i, j] = (100.0 * v / base if base else np.nan) if relative else v
        return out

    panels = [
        (
            series("iou" if reference else "iou_vs_unscaled"),
            "IoU with the reference" if reference else "IoU with the 1.0 box's mask",
            (0, 1.02),
        ),
        (series("score"), "SAM's predicted IoU (score)", (0, 1.02)),
        (series("area", relative=True), "mask area (% of the 1.0 box's)", None),
    ]
    fig = Figure(figsize=(12, 4.2), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, (data, label, ylim) in zip(axes, panels, strict=True):
        if len(data) <= _MAX_LINES:
            for line in data:
                ax.plot(factors, line, color=_ONE, linewidth=0.8, alpha=0.7)
        with np.errstate(all="ignore"):
            mean = np.nanmean(data, axis=0) if len(data) else np.full(len(factors), np.nan)
        ax.plot(factors, mean, color=_MEAN, linewidth=2.4, marker="o", label=f"mean of {len(data)} objects")
        ax.axvline(1.0, color="#888888", linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlabel("box scale factor (×, log axis)")
        ax.set_ylabel(label)
        ax.set_xticks(factors, [f"{f:g}" for f in factors])
        ax.minorticks_off()
        if ylim:
            ax.set_ylim(*ylim)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    fig.suptitle(
        f"How the box size changes SAM's mask (box scaled about its centre, clipped to the image)\n{_subtitle(summary)}"
    )
    return _png(fig)


def iou_vs_clicks(curves: Sequence[Mapping[str, Any]], summary: Mapping[str, Any]) -> bytes:
    """IoU with the reference after k simulated clicks: each object thin, the mean (mIoU) thick,
    with the 0.85 and 0.90 thresholds of NoC@85 / NoC@90."""
    ious = np.array([c["ious"] for c in curves], dtype=np.float64)
    k = np.arange(1, ious.shape[1] + 1)
    clicks = summary.get("clicks", {})
    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.subplots()
    if len(ious) <= _MAX_LINES:
        for line in ious:
            ax.plot(k, line, color=_ONE, linewidth=0.8, alpha=0.7)
    ax.plot(
        k,
        ious.mean(axis=0),
        color=_MEAN,
        linewidth=2.4,
        marker="o",
        markersize=4,
        label=f"mIoU over {len(ious)} objects",
    )
    for thr, style in ((0.85, "--"), (0.90, ":")):
        ax.axhline(thr, color="#c0392b", linestyle=style, linewidth=1.2, label=f"IoU {thr:.2f}")
    ax.set_xlabel("number of simulated clicks")
    ax.set_ylabel("IoU with the reference mask")
    ax.set_xlim(0.5, ious.shape[1] + 0.5)
    ax.set_xticks(k[:: max(1, len(k) // 10)])
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    noc = ""
    if clicks:
        noc = f": NoC@85 {clicks['mean_noc85']:.1f}, NoC@90 {clicks['mean_noc90']:.1f} (mean clicks to reach the IoU)"
    ax.set_title(f"IoU vs simulated clicks{noc}\n{_subtitle(summary)}", fontsize=10)
    return _png(fig)
