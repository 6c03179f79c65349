"""The dashboard's plots, with matplotlib (Agg; no pyplot, so no global state is touched).

One function per plot, each returning a :class:`matplotlib.figure.Figure`; the Monitor tab shows
them in ``gr.Plot`` and the HTML report embeds them as PNG. Times on the x axes are UTC.
"""

from __future__ import annotations

import base64
import io
import math

import numpy as np
from matplotlib.axes import Axes
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from sam_core.monitor.dashboard import Dashboard

__all__ = ["PLOTS", "all_figures", "figure_png", "figure_png_b64"]

_P_COLORS = {50: "#2563eb", 95: "#f59e0b", 99: "#dc2626"}
_REF, _CUR = "#94a3b8", "#2563eb"


def _times(x: np.ndarray) -> np.ndarray:
    """Epoch seconds (finite) -> datetime64[ms] (UTC) for matplotlib's date axes."""
    return np.round(np.asarray(x, np.float64) * 1000).astype("datetime64[ms]")


def _time_axis(ax: Axes, label: bool = True) -> None:
    locator = AutoDateLocator(minticks=3, maxticks=7)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    if label:
        ax.set_xlabel("time (UTC)")
    ax.grid(alpha=0.3)


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#64748b", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])


def _threshold(ax: Axes, db: Dashboard, signal: str) -> None:
    for rule in db.rules.rules:
        if rule.signal == signal and rule.enabled:
            ax.axhline(rule.threshold, color="#dc2626", ls="--", lw=1, alpha=0.7, label=f"alert ({rule.name})")


def _figure(width: float = 7.0, height: float = 3.2) -> Figure:
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def latency(db: Dashboard) -> Figure:
    """Decode and encode latency p50 / p95 / p99 per time bucket (ms)."""
    fig = _figure(7.0, 4.6)
    axes = fig.subplots(2, 1, sharex=True)
    s = db.series
    x = _times(s.mid)
    for ax, name, data, signal in (
        (axes[0], "decode (every click)", s.decode, "decode_ms_p95"),
        (axes[1], "encode (new images: cache misses)", s.encode, "encode_ms_p95"),
    ):
        if not any(np.isfinite(v).any() for v in data.values()):
            _empty(ax, f"no {name.split()[0]} timings in this window")
            ax.set_title(f"{name} latency", fontsize=10, loc="left")
            continue
        for p, values in data.items():
            ok = np.isfinite(values)
            ax.plot(
                x[ok],
                values[ok],
                marker="o",
                ms=3,
                lw=1.5,
                color=_P_COLORS[p],
                label=f"p{p}",
            )
        _threshold(ax, db, signal)
        ax.set_ylabel("ms")
        ax.set_title(f"{name} latency", fontsize=10, loc="left")
        ax.legend(fontsize=8, loc="upper left", ncols=4)
        _time_axis(ax, label=ax is axes[1])
    fig.suptitle("Latency per time bucket: p50 / p95 / p99", fontsize=11)
    return fig


def outputs(db: Dashboard) -> Figure:
    """Mean predicted-IoU score and the share of empty / full-image masks per time bucket."""
    fig = _figure(7.0, 4.6)
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    s = db.series
    x = _times(s.mid)
    if not np.isfinite(s.mean_score).any():
        _empty(ax1, "no scores in this window")
    else:
        ok = np.isfinite(s.mean_score)
        ax1.plot(x[ok], s.mean_score[ok], marker="o", ms=3, color="#2563eb", label="mean score")
        _threshold(ax1, db, "mean_score")
        ax1.set_ylabel("predicted IoU")
        ax1.legend(fontsize=8, loc="lower left")
        _time_axis(ax1, label=False)
    ax1.set_title("mean score of the chosen mask", fontsize=10, loc="left")
    if not (np.isfinite(s.empty_share).any() or np.isfinite(s.full_share).any()):
        _empty(ax2, "no mask flags in this window (older log?)")
    else:
        for values, label, color in (
            (s.empty_share, "empty", "#64748b"),
            (s.full_share, "touches all 4 borders", "#dc2626"),
        ):
            ok = np.isfinite(values)
            ax2.plot(x[ok], 100 * values[ok], marker="o", ms=3, color=color, label=label)
        ax2.set_ylabel("% of masks")
        ax2.legend(fontsize=8, loc="upper left")
        _time_axis(ax2)
    ax2.set_title("empty and full-image masks", fontsize=10, loc="left")
    note = " (test-tiny: random weights, meaningless)" if db.only_test_models else ""
    fig.suptitle("Outputs" + note, fontsize=11)
    return fig


def area_fraction(db: Dashboard) -> Figure:
    """Histogram of the chosen masks' area fraction in the window."""
    fig = _figure()
    ax = fig.subplots()
    v = db.frame.num["area_fraction"]
    v = v[np.isfinite(v)]
    if v.size == 0:
        _empty(ax, "no masks in this window")
    else:
        ax.hist(100 * v, bins=np.linspace(0, 100, 41).tolist(), color="#2563eb", alpha=0.85)
        ax.set_xlabel("mask area (% of the image)")
        ax.set_ylabel("masks")
        ax.grid(alpha=0.3)
    ax.set_title(f"Area fraction of the chosen masks ({v.size} masks)", fontsize=11)
    return fig


def inputs(db: Dashboard) -> Figure:
    """Each input feature's distribution in the window against the reference (one value per image)."""
    cols = math.ceil(len(db.drift) / 2)
    fig = _figure(3.0 * cols, 5.0)
    axes = fig.subplots(2, cols).ravel()
    for ax in axes[len(db.drift) :]:
        ax.set_axis_off()
    for ax, row in zip(axes, db.drift, strict=False):
        ax.set_title(row.label, fontsize=10, loc="left")
        if row.reference.size == 0 and row.current.size == 0:
            _empty(ax, "no data")
            continue
        both = np.concatenate([row.reference, row.current])
        lo, hi = np.percentile(both, [0.5, 99.5])
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        bins = np.linspace(lo, hi, 25).tolist()
        if row.reference.size:
            ax.hist(
                np.clip(row.reference, lo, hi),
                bins=bins,
                density=True,
                color=_REF,
                alpha=0.6,
                label=f"reference ({row.reference.size})",
            )
        if row.current.size:
            ax.hist(
                np.clip(row.current, lo, hi),
                bins=bins,
                density=True,
                histtype="step",
                lw=2,
                color=_CUR,
                label=f"window ({row.current.size})",
            )
        if row.result is not None:
            color = "#dc2626" if row.result.psi > 0.2 and row.result.p_value < 0.01 else "#334155"
            ax.text(
                0.98,
                0.95,
                f"PSI {row.result.psi:.2f}",
                ha="right",
                va="top",
                transform=ax.transAxes,
                fontsize=9,
                color=color,
                fontweight="bold",
            )
        ax.set_xlabel(row.unit, fontsize=8)
        ax.tick_params(labelsize=8)
        ax.set_yticks([])
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"Inputs: window vs reference ({db.rules.reference.describe()})", fontsize=11)
    return fig


def clicks(db: Dashboard) -> Figure:
    """Clicks per interactive object: until export, or until the visitor stopped."""
    fig = _figure()
    ax = fig.subplots()
    objs = db.objects
    if len(objs) == 0:
        _empty(ax, "no interactive objects in this window")
    else:
        top = int(min(max(objs.clicks.max(), 1), 30))
        bins = np.arange(0.5, top + 1.5).tolist()
        ax.hist(
            [np.minimum(objs.clicks[objs.exported], top), np.minimum(objs.clicks[~objs.exported], top)],
            bins=bins,
            stacked=True,
            color=["#16a34a", "#f59e0b"],
            label=[f"until export ({int(objs.exported.sum())})", f"until stopped ({int((~objs.exported).sum())})"],
        )
        for rule in db.rules.rules:
            if rule.signal == "mean_clicks_per_object" and rule.enabled:
                ax.axvline(rule.threshold, color="#dc2626", ls="--", lw=1, label=f"alert: mean > {rule.threshold:g}")
        ax.axvline(float(objs.clicks.mean()), color="#0f172a", lw=1.5, label=f"mean {objs.clicks.mean():.1f}")
        ax.set_xlabel("clicks per object")
        ax.set_ylabel("objects")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    ax.set_title("Corrections: clicks per object", fontsize=11)
    return fig


def quality(db: Dashboard) -> Figure:
    """IoU of the evaluation rows (records with an IoU against a reference mask) over time."""
    fig = _figure()
    ax = fig.subplots()
    v = db.frame.num["iou"]
    ok = np.isfinite(v) & np.isfinite(db.frame.t)
    if not ok.any():
        _empty(ax, "no evaluation rows (records with an IoU) in this window")
    else:
        ax.scatter(_times(db.frame.t[ok]), v[ok], s=6, alpha=0.35, color=_REF, label="one evaluated mask")
        m = db.series.miou
        good = np.isfinite(m)
        ax.plot(
            _times(db.series.mid)[good],
            m[good],
            marker="o",
            ms=3,
            color="#2563eb",
            label="mIoU per bucket",
        )
        _threshold(ax, db, "miou")
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("IoU")
        ax.legend(fontsize=8, loc="lower left")
        _time_axis(ax)
    ax.set_title("Quality: IoU against reference masks (evaluation runs)", fontsize=11)
    return fig


#: The plots in display order: key -> (title, function).
PLOTS = {
    "latency": ("Latency", latency),
    "outputs": ("Outputs", outputs),
    "area": ("Area fraction", area_fraction),
    "inputs": ("Input drift", inputs),
    "clicks": ("Clicks per object", clicks),
    "quality": ("Quality (IoU)", quality),
}


def all_figures(db: Dashboard) -> dict[str, Figure]:
    """Every plot of :data:`PLOTS` for ``db``."""
    return {key: fn(db) for key, (_, fn) in PLOTS.items()}


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def figure_png_b64(fig: Figure, dpi: int = 100) -> str:
    """The figure as a ``data:image/png;base64,...`` URL."""
    return "data:image/png;base64," + base64.b64encode(figure_png(fig, dpi)).decode("ascii")
