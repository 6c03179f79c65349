"""The five signals of a SAM service, as named scalar values over a window of the run log.

Every alert rule names one of :data:`SIGNALS`; ``summary`` prints them all. A signal is a
function of a :class:`Context` (the window, the drift reference, the current images) and
returns a :class:`Value` with the number of samples it rests on.

1. quality: ``miou`` (mean IoU of evaluation rows: records with an ``iou``, i.e. batch
   studies against reference masks);
2. latency: ``decode_ms_p50/p95/p99`` (every run), ``encode_ms_p50/p95/p99`` (runs that had to
   encode: cache misses);
3. corrections: ``mean_clicks_per_object`` (clicks until export, or until the visitor
   stopped), ``mean_clicks_to_export``, ``export_rate``;
4. input drift: ``psi_<feature>`` for :data:`DRIFT_FEATURES`, one sample per distinct image;
5. output anomalies: ``mean_score``, ``empty_share``, ``full_share`` (mask touches all four
   borders), ``bad_mask_share`` (either), ``mean_area_fraction``.

Plus ``count`` and ``cache_hit_rate``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from sam_core.monitor.data import Frame
from sam_core.monitor.stats import ObjectClicks, PSIResult, clicks_per_object, mean, percentile, psi

__all__ = ["DRIFT_FEATURES", "SIGNALS", "Context", "Reference", "Value", "feature_values", "make_context"]

#: Input features compared with the reference: name -> (label, unit).
DRIFT_FEATURES: dict[str, tuple[str, str]] = {
    "brightness": ("brightness", "mean luma, 0–255"),
    "contrast": ("contrast", "RMS, std of luma / 255"),
    "blur": ("sharpness", "Laplacian variance / luma variance; low = blurry"),
    "resolution": ("resolution", "megapixels"),
    "aspect": ("aspect ratio", "width / height"),
    "saturation": ("saturation", "mean HSV saturation, 0–1"),
    "warmth": ("colour balance", "(mean R - mean B) / 255; > 0 warmer"),
}


def feature_values(frame: Frame, name: str) -> np.ndarray:
    """(n,) float64 values of drift feature ``name`` (NaN where unknown).

    ``blur`` is compared as the variance of the Laplacian divided by the variance of the luma
    (``(contrast * 255) ** 2``): the raw Laplacian variance falls with the exposure, so darker
    images would otherwise read as blurrier. Records without ``contrast`` (old logs) have none.
    """
    if name == "blur":
        luma_var = (frame.num["contrast"] * 255.0) ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(luma_var > 0, frame.num["blur"] / luma_var, np.nan)
    if name == "warmth":  # a colour cast / white-balance shift moves the red-blue balance
        return (frame.num["mean_r"] - frame.num["mean_b"]) / 255.0
    if name == "resolution":
        return frame.num["width"] * frame.num["height"] / 1e6
    if name == "aspect":
        aspect = frame.num["aspect"]
        derived = frame.num["width"] / np.where(frame.num["height"] > 0, frame.num["height"], np.nan)
        return np.where(np.isfinite(aspect), aspect, derived)  # old logs have no aspect column
    return frame.num[name]


def distinct_images(frame: Frame, limit: int | None = None) -> Frame:
    """The first row of each image (by ``image_hash``; rows without a hash count as images), in log order.

    ``limit``: stop after that many images (the reference needs only the first N).
    """
    if len(frame) == 0:
        return frame
    first: dict[object, int] = {}
    for i, h in enumerate(frame.text["image_hash"].tolist()):
        key = h if h is not None else ("row", i)
        if key not in first:
            first[key] = i
            if limit is not None and len(first) >= limit:
                break
    return frame.take(np.fromiter(first.values(), np.int64, count=len(first)))


@dataclass(frozen=True)
class Reference:
    """Which records are the drift reference: the first ``first_images`` distinct images, or a pinned range."""

    first_images: int = 50
    start: float | None = None  # seconds since the epoch; when set, the range [start, end) is used
    end: float | None = None

    def describe(self) -> str:
        import datetime as dt

        if self.start is None:
            return f"the first {self.first_images} distinct images of the log"

        def iso(x: float | None) -> str:
            return "…" if x is None else dt.datetime.fromtimestamp(x, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")

        return f"the images logged from {iso(self.start)} to {iso(self.end)}"

    def select(self, log: Frame) -> Frame:
        """The reference images (one row per distinct image) of the whole ``log``."""
        if self.start is not None:
            return distinct_images(log.since(self.start, self.end))
        return distinct_images(log, max(0, self.first_images)) if self.first_images > 0 else log.take(slice(0, 0))


@dataclass
class Context:
    """What the signals are computed from.

    ``window``: the records of the time window; ``reference``: the drift reference (one row
    per image); ``current``: the window's images that are not reference rows (one row per image).
    """

    window: Frame
    reference: Frame
    current: Frame
    _cache: dict[str, object] = field(default_factory=dict, repr=False)

    def drift(self, feature: str) -> PSIResult | None:
        key = "psi:" + feature
        if key not in self._cache:
            self._cache[key] = psi(feature_values(self.reference, feature), feature_values(self.current, feature))
        return self._cache[key]  # type: ignore[return-value]

    def objects(self) -> ObjectClicks:
        """Clicks per interactive object in the window (computed once)."""
        if "objects" not in self._cache:
            w = self.window
            self._cache["objects"] = clicks_per_object(w.text["object_id"], w.text["source"], w.t)
        return self._cache["objects"]  # type: ignore[return-value]

    def restrict(self, keep: np.ndarray) -> Context:
        """The same reference, with the window (and current images) restricted to ``keep`` rows of the window."""
        window = self.window.take(keep)
        return Context(window, self.reference, self.current.take(np.isin(self.current.id, window.id)))


def make_context(log: Frame, window: Frame, reference: Reference) -> Context:
    """The context of ``window`` (a part of ``log``) with ``reference`` chosen from the whole ``log``."""
    ref = reference.select(log)
    ref_ids = np.asarray(ref.id)
    current = distinct_images(window.take(~np.isin(window.id, ref_ids)))
    return Context(window, ref, current)


@dataclass(frozen=True)
class Value:
    """A signal's value (None when there is no data) and the number of samples behind it."""

    value: float | None
    samples: int
    detail: str = ""
    direction: str | None = None  # drift: "higher" / "lower" than the reference
    p_value: float | None = None  # drift: the chi-square test's p-value
    reference: int | None = None  # drift: the reference's images (``samples`` counts the window's)


def _latency(column: str, p: float, misses_only: bool) -> Callable[[Context], Value]:
    def signal(ctx: Context) -> Value:
        v = ctx.window.num[column]
        if misses_only:
            v = v[ctx.window.num["cache_hit"] != 1.0]
        v = v[np.isfinite(v)]
        return Value(percentile(v, p), int(v.size))

    return signal


def _mean_of(column: str) -> Callable[[Context], Value]:
    def signal(ctx: Context) -> Value:
        v = ctx.window.num[column]
        v = v[np.isfinite(v)]
        return Value(mean(v), int(v.size))

    return signal


def _share(*columns: str) -> Callable[[Context], Value]:
    def signal(ctx: Context) -> Value:
        cols = [ctx.window.num[c] for c in columns]
        known = np.logical_and.reduce([np.isfinite(c) for c in cols])
        hit = np.logical_or.reduce([c == 1.0 for c in cols]) & known
        n = int(known.sum())
        return Value(float(hit.sum()) / n if n else None, n)

    return signal


def _clicks(kind: str) -> Callable[[Context], Value]:
    def signal(ctx: Context) -> Value:
        objs = ctx.objects()
        if kind == "export_rate":
            return Value(float(objs.exported.mean()) if len(objs) else None, len(objs))
        clicks = objs.clicks[objs.exported] if kind == "to_export" else objs.clicks
        return Value(float(clicks.mean()) if clicks.size else None, int(clicks.size))

    return signal


def _drift(feature: str) -> Callable[[Context], Value]:
    def signal(ctx: Context) -> Value:
        res = ctx.drift(feature)
        if res is None:
            return Value(None, len(ctx.current), reference=len(ctx.reference))
        detail = (
            f"PSI {res.psi:.2f} over {res.bins} bins (p = {res.p_value:.2g}); median {res.cur_median:.3g} "
            f"vs {res.ref_median:.3g} in the reference ({res.n_cur} vs {res.n_ref} images)"
        )
        return Value(res.psi, res.n_cur, detail, res.direction, res.p_value, res.n_ref)

    return signal


def _count(ctx: Context) -> Value:
    return Value(float(len(ctx.window)), len(ctx.window))


def _miou(ctx: Context) -> Value:
    v = ctx.window.num["iou"]
    v = v[np.isfinite(v)]
    return Value(mean(v), int(v.size))


def _cache_hit_rate(ctx: Context) -> Value:
    v = ctx.window.num["cache_hit"]
    v = v[np.isfinite(v)]
    return Value(mean(v), int(v.size))


#: Every signal a rule may name: name -> function of the context.
SIGNALS: dict[str, Callable[[Context], Value]] = {
    "count": _count,
    **{f"decode_ms_p{p}": _latency("decode_ms", p, False) for p in (50, 95, 99)},
    **{f"encode_ms_p{p}": _latency("encode_ms", p, True) for p in (50, 95, 99)},
    "cache_hit_rate": _cache_hit_rate,
    "mean_score": _mean_of("score"),
    "mean_area_fraction": _mean_of("area_fraction"),
    "empty_share": _share("mask_empty"),
    "full_share": _share("mask_full"),
    "bad_mask_share": _share("mask_empty", "mask_full"),
    "mean_clicks_per_object": _clicks("all"),
    "mean_clicks_to_export": _clicks("to_export"),
    "export_rate": _clicks("export_rate"),
    "miou": _miou,
    **{f"psi_{f}": _drift(f) for f in DRIFT_FEATURES},
}
