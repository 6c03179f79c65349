"""Everything the Monitor tab and the HTML report show, computed once per window.

:func:`build_dashboard` reads the log (:func:`~sam_core.monitor.data.load_frame`), cuts the
window, evaluates the alert rules, and computes the time series (per time bucket), the
distributions and the input-drift table. No plotting here (see ``plots.py``).
"""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass

import numpy as np

from sam_core.monitor.alerts import Alert, RuleSet, evaluate, load_rules
from sam_core.monitor.data import Frame, load_frame
from sam_core.monitor.signals import (
    DRIFT_FEATURES,
    SIGNALS,
    Context,
    Value,
    feature_values,
    make_context,
)
from sam_core.monitor.stats import ObjectClicks, PSIResult, percentile

__all__ = ["BUCKETS", "Dashboard", "DriftRow", "Series", "build_dashboard"]

#: Time buckets of the plots over time.
BUCKETS = 30

#: Models whose masks and scores mean nothing (random weights).
TEST_MODELS = ("test-tiny",)


@dataclass(frozen=True)
class Series:
    """Per time bucket (``start`` (B,) epoch seconds, ``width`` s): counts and signals (NaN without data)."""

    start: np.ndarray
    width: float
    count: np.ndarray
    decode: dict[int, np.ndarray]  # percentile (50, 95, 99) -> (B,) ms
    encode: dict[int, np.ndarray]
    mean_score: np.ndarray
    empty_share: np.ndarray
    full_share: np.ndarray
    miou: np.ndarray
    clicks: np.ndarray  # mean clicks per object, objects by the bucket of their first click

    @property
    def mid(self) -> np.ndarray:
        return self.start + self.width / 2


@dataclass(frozen=True)
class DriftRow:
    """One input feature: reference and current values (one per image) and their PSI (None without data)."""

    feature: str
    label: str
    unit: str
    reference: np.ndarray
    current: np.ndarray
    result: PSIResult | None


@dataclass(frozen=True)
class Dashboard:
    """The Monitor tab's content for one window of the log."""

    window: str
    now: float
    total_records: int
    ctx: Context
    rules: RuleSet
    alerts: list[Alert]
    signals: dict[str, Value]
    series: Series
    drift: list[DriftRow]
    objects: ObjectClicks
    models: list[str]

    @property
    def frame(self) -> Frame:
        return self.ctx.window

    @property
    def firing(self) -> list[Alert]:
        return [a for a in self.alerts if a.firing]

    @property
    def only_test_models(self) -> bool:
        return bool(self.models) and all(m in TEST_MODELS for m in self.models)

    def span_text(self) -> str:
        """The window's first and last record times, e.g. "2025-06-01 10:00 – 12:30 UTC"."""
        tr = self.frame.time_range
        if tr is None:
            return "no records"

        def fmt(x: float, f: str) -> str:
            return dt.datetime.fromtimestamp(x, dt.UTC).strftime(f)

        same_day = fmt(tr[0], "%Y-%m-%d") == fmt(tr[1], "%Y-%m-%d")
        return f"{fmt(tr[0], '%Y-%m-%d %H:%M')} – {fmt(tr[1], '%H:%M' if same_day else '%Y-%m-%d %H:%M')} UTC"


def _series(frame: Frame, objects: ObjectClicks, buckets: int) -> Series:
    t = frame.t
    finite = np.isfinite(t)
    if finite.any():
        lo, hi = float(t[finite].min()), float(t[finite].max())
    else:
        lo = hi = 0.0
    hi = max(hi, lo + 1.0)
    width = (hi - lo) / buckets
    start = lo + width * np.arange(buckets)
    idx = np.where(finite, np.clip(((t - lo) / width).astype(np.int64, copy=False), 0, buckets - 1), -1)
    order = np.argsort(idx, kind="stable")
    bounds = np.searchsorted(idx[order], np.arange(buckets + 1))
    nan = np.full(buckets, np.nan)
    decode = {p: nan.copy() for p in (50, 95, 99)}
    encode = {p: nan.copy() for p in (50, 95, 99)}
    mean_score, empty, full, miou = nan.copy(), nan.copy(), nan.copy(), nan.copy()
    count = np.zeros(buckets, np.int64)
    num = frame.num
    for b in range(buckets):
        rows = order[bounds[b] : bounds[b + 1]]
        count[b] = rows.size
        if rows.size == 0:
            continue
        dec = num["decode_ms"][rows]
        enc = num["encode_ms"][rows][num["cache_hit"][rows] != 1.0]
        for p in (50, 95, 99):
            decode[p][b] = _or_nan(percentile(dec, p))
            encode[p][b] = _or_nan(percentile(enc, p))
        mean_score[b] = _nanmean(num["score"][rows])
        empty[b] = _nanmean(num["mask_empty"][rows])
        full[b] = _nanmean(num["mask_full"][rows])
        miou[b] = _nanmean(num["iou"][rows])
    clicks = nan.copy()
    if len(objects):
        ob = np.clip(((objects.first_t - lo) / width).astype(np.int64), 0, buckets - 1)
        for b in np.unique(ob):
            clicks[b] = float(objects.clicks[ob == b].mean())
    return Series(start, width, count, decode, encode, mean_score, empty, full, miou, clicks)


def _or_nan(x: float | None) -> float:
    return np.nan if x is None else x


def _nanmean(v: np.ndarray) -> float:
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else np.nan


def build_dashboard(
    source: str | os.PathLike[str] | Frame,
    window: str = "day",
    rules: RuleSet | None = None,
    *,
    now: float | None = None,
    buckets: int = BUCKETS,
) -> Dashboard:
    """The dashboard of ``window`` ("hour", "day", "week", "all") of the log in ``source``.

    ``source``: a run-log folder (``outputs/logs``), its ``runs.sqlite``, or a loaded Frame.
    ``rules``: default :func:`load_rules()`; ``now``: the window's end (default: the clock).
    """
    rules = rules or load_rules()
    now = time.time() if now is None else now
    log = source if isinstance(source, Frame) else load_frame(source)
    ctx = make_context(log, log.window(window, now), rules.reference)
    alerts = evaluate(ctx, rules)
    signals = {name: fn(ctx) for name, fn in SIGNALS.items()}
    w = ctx.window
    objects = ctx.objects()
    drift = [
        DriftRow(
            name,
            label,
            unit,
            _finite(feature_values(ctx.reference, name)),
            _finite(feature_values(ctx.current, name)),
            ctx.drift(name),
        )
        for name, (label, unit) in DRIFT_FEATURES.items()
    ]
    models = sorted({m for m in w.text["model"].tolist() if m})
    return Dashboard(
        window, now, len(log), ctx, rules, alerts, signals, _series(w, objects, buckets), drift, objects, models
    )


def _finite(v: np.ndarray) -> np.ndarray:
    return v[np.isfinite(v)]
