"""Prometheus metrics of one server: what ``GET /metrics`` answers.

A :class:`MetricsExporter` owns its own ``CollectorRegistry`` (two servers in one process never
share counters) and is fed every run record the Studio logs (``Studio.observers``). The alert
gauge is computed from the run log when scraped, at most every ``alert_interval_s`` seconds.

Labels stay bounded: ``source`` is one of :data:`SOURCES` (anything else counts as "other") and
``rule`` is one of the configured rules. No image names, hashes, sessions or models in labels.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sam_core.monitor.alerts import RuleSet, evaluate, load_rules
from sam_core.monitor.data import FrameCache, LogNotFoundError
from sam_core.monitor.signals import make_context
from sam_core.runlog import RunRecord

__all__ = ["SOURCES", "MetricsExporter"]

log = logging.getLogger(__name__)

#: The ``source`` label values; other sources are counted as "other".
SOURCES = ("ui", "ui-export", "api", "batch", "benchmark")

_DECODE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_ENCODE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_FRACTION_BUCKETS = (0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.99, 1.0)
_SCORE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0)


class _AlertCollector(Collector):
    """``sam_alerts_firing{rule}``: 1 while the rule fires on the run log's check window, else 0."""

    def __init__(self, exporter: MetricsExporter) -> None:
        self._exporter = exporter

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "sam_alerts_firing",
            "1 while the alert rule fires on the run log (window from the rules file), else 0",
            labels=["rule"],
        )
        for rule, firing in self._exporter.alert_states().items():
            gauge.add_metric([rule], 1.0 if firing else 0.0)
        yield gauge

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("sam_alerts_firing", "alert rules firing", labels=["rule"])


class MetricsExporter:
    """The metrics of one server. ``observe(record)`` after each logged run; ``exposition()`` to scrape.

    ``log_dir``: the run log the alert gauge is computed from (None: no alert gauge values).
    """

    def __init__(
        self,
        log_dir: str | os.PathLike[str] | None = None,
        rules: RuleSet | None = None,
        *,
        alert_interval_s: float = 30.0,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.log_dir = None if log_dir is None else Path(log_dir)
        self._cache = None if log_dir is None else FrameCache(log_dir)
        self.rules = rules or load_rules()
        self.alert_interval_s = alert_interval_s
        self._alert_lock = threading.Lock()
        self._alerts: dict[str, bool] = {}
        self._alerts_at = -float("inf")
        r = self.registry
        self.segmentations = Counter(
            "sam_segmentations", "Segmentations (decoder runs) logged, by where they came from", ["source"], registry=r
        )
        self.decode_seconds = Histogram(
            "sam_decode_seconds",
            "Prompt encoder + mask decoder time per segmentation",
            buckets=_DECODE_BUCKETS,
            registry=r,
        )
        self.encode_seconds = Histogram(
            "sam_encode_seconds",
            "Image encoder time per segmentation that had to encode (cache miss)",
            buckets=_ENCODE_BUCKETS,
            registry=r,
        )
        self.cache_hits = Counter(
            "sam_embedding_cache_hits", "Segmentations whose image embedding was already cached", registry=r
        )
        self.cache_misses = Counter(
            "sam_embedding_cache_misses", "Segmentations that ran the image encoder", registry=r
        )
        self.area_fraction = Histogram(
            "sam_mask_area_fraction",
            "Area of the chosen mask as a fraction of the image",
            buckets=_FRACTION_BUCKETS,
            registry=r,
        )
        self.score = Histogram(
            "sam_mask_score", "Predicted IoU (score) of the chosen mask", buckets=_SCORE_BUCKETS, registry=r
        )
        self.empty_masks = Counter("sam_masks_empty", "Chosen masks with no pixel", registry=r)
        self.full_masks = Counter("sam_masks_full", "Chosen masks touching all four image borders", registry=r)
        self.preprocessed = Counter(
            "sam_segmentations_preprocessed",
            "Segmentations by the image encoder's pre-processing (none, or clahe: contrast enhancement)",
            ["preprocess"],
            registry=r,
        )
        for source in (*SOURCES, "other"):  # every series exists from the start (rate() needs a 0)
            self.segmentations.labels(source)
        for kind in ("none", "clahe"):
            self.preprocessed.labels(kind)
        r.register(_AlertCollector(self))

    def observe(self, record: RunRecord) -> None:
        """Count one logged run (a ``Studio.observers`` callback)."""
        source = record.source if record.source in SOURCES else "other"
        self.segmentations.labels(source).inc()
        pre = str((record.extra or {}).get("preprocess") or "none")
        self.preprocessed.labels("clahe" if pre.startswith("clahe") else "none").inc()
        if record.decode_ms is not None:
            self.decode_seconds.observe(record.decode_ms / 1000.0)
        if record.cache_hit:
            self.cache_hits.inc()
        elif record.cache_hit is not None:
            self.cache_misses.inc()
            if record.encode_ms is not None:
                self.encode_seconds.observe(record.encode_ms / 1000.0)
        if record.area_fraction is not None:
            self.area_fraction.observe(record.area_fraction)
        if record.score is not None:
            self.score.observe(record.score)
        if record.mask_empty:
            self.empty_masks.inc()
        if record.mask_full:
            self.full_masks.inc()

    def alert_states(self) -> dict[str, bool]:
        """Rule name -> firing, from the run log (recomputed at most every ``alert_interval_s``)."""
        with self._alert_lock:
            now = time.monotonic()
            if now - self._alerts_at >= self.alert_interval_s:
                self._alerts = self._evaluate()
                self._alerts_at = now
            return dict(self._alerts)

    def _evaluate(self) -> dict[str, bool]:
        states = {rule.name: False for rule in self.rules.rules if rule.enabled}
        if self._cache is None:
            return states
        try:
            frame = self._cache.load()
        except LogNotFoundError:
            return states
        except Exception:  # a scrape must not fail because the log is unreadable
            log.exception("metrics: could not evaluate the alert rules")
            return states
        ctx = make_context(frame, frame.window(self.rules.window), self.rules.reference)
        states.update({alert.rule: alert.firing for alert in evaluate(ctx, self.rules)})
        return states

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition format and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
