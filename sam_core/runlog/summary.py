"""Monitoring summary over run records, and the ``python -m sam_core.runlog`` command line."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sam_core.core.errors import UserError
from sam_core.runlog.store import RunLog

__all__ = ["main", "summarize"]


def _percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (an observed value; defined for one sample)."""
    if not sorted_values:
        return None
    rank = math.ceil(p / 100.0 * len(sorted_values))
    return sorted_values[min(max(rank, 1), len(sorted_values)) - 1]


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _num(value: Any) -> float | None:
    """A finite float from a number or numeric text (CSV rows), else None."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _flag(value: Any) -> bool | None:
    """0/1, bool or their text ("0", "1", "true", "") -> bool, None when absent."""
    if isinstance(value, str):
        value = value.strip().lower()
        if value == "":
            return None
        return value not in ("0", "false", "no")
    return None if value is None else bool(value)


def summarize(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Monitoring signals over run records (as returned by ``RunLog.records()``).

    Returns ``count``; ``decode_ms_p50/p95/p99`` (all runs) and ``encode_ms_p50/p95/p99``
    (cache misses only: a hit costs no encode); ``mean_score``; ``mean_area_fraction``;
    ``cache_hit_rate`` (over runs that report it); ``mean_points`` (points per run, over
    runs with prompts); ``box_rate`` (fraction of those with a box). Percentiles are
    nearest-rank. Missing values are skipped; a statistic with no data is None. Rows
    read back from the CSV export (all text) work too.
    """
    count = 0
    decode: list[float] = []
    encode: list[float] = []
    scores: list[float] = []
    fractions: list[float] = []
    hits: list[int] = []
    points: list[int] = []
    boxes: list[int] = []
    for rec in records:
        count += 1
        if (v := _num(rec.get("decode_ms"))) is not None:
            decode.append(v)
        hit = _flag(rec.get("cache_hit"))
        if hit is not None:
            hits.append(1 if hit else 0)
        if not hit and (v := _num(rec.get("encode_ms"))) is not None:
            encode.append(v)
        if (v := _num(rec.get("score"))) is not None:
            scores.append(v)
        if (v := _num(rec.get("area_fraction"))) is not None:
            fractions.append(v)
        prompts = rec.get("prompts")
        if isinstance(prompts, str):  # e.g. rows read back from the CSV export
            try:
                prompts = json.loads(prompts)
            except ValueError:
                prompts = None
        if isinstance(prompts, Mapping):
            points.append(len(prompts.get("points") or ()))
            boxes.append(1 if prompts.get("box") else 0)
    decode.sort()
    encode.sort()
    out: dict[str, Any] = {"count": count}
    for name, values in (("decode_ms", decode), ("encode_ms", encode)):
        for p in (50, 95, 99):
            out[f"{name}_p{p}"] = _percentile(values, p)
    out["mean_score"] = _mean(scores)
    out["mean_area_fraction"] = _mean(fractions)
    out["cache_hit_rate"] = _mean(hits)
    out["mean_points"] = _mean(points)
    out["box_rate"] = _mean(boxes)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m sam_core.runlog [--dir outputs/logs] [--csv F] [--jsonl F]``: summary JSON."""
    import argparse

    ap = argparse.ArgumentParser(
        prog="python -m sam_core.runlog",
        description="Summarise the run log (latency percentiles, cache hit rate, "
        "scores, area fractions, clicks per run) and optionally export it.",
    )
    ap.add_argument("--dir", default="outputs/logs", help="the run-log folder (default outputs/logs)")
    ap.add_argument("--csv", help="also write all records to this CSV file")
    ap.add_argument("--jsonl", help="also write all records to this JSON-lines file")
    args = ap.parse_args(argv)
    if not (Path(args.dir) / "runs.sqlite").exists():
        print(f"error: no run log in {args.dir}", file=sys.stderr)
        return 2
    with RunLog(args.dir) as runlog:
        try:
            if args.csv:
                runlog.export_csv(args.csv)
            if args.jsonl:
                runlog.export_jsonl(args.jsonl)
        except UserError as err:  # e.g. a full disk: say so, without a traceback
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(json.dumps(summarize(runlog.records()), indent=1))
    return 0
