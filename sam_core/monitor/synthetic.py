"""Synthetic run logs for tests, benchmarks and the README screenshot (never mixed into a real log).

:func:`synthetic_records` makes records that look like a service in normal operation (a real
model's scores, masks and latencies, photos of a few resolutions, visitors clicking a few times
per object and exporting most of them), with knobs to break one signal at a time.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
from pathlib import Path

import numpy as np

from sam_core.runlog import RunLog, RunRecord
from sam_core.runlog.schema import COLUMNS

__all__ = ["synthetic_records", "write_log"]


def synthetic_records(
    n: int,
    *,
    start: float,
    step_s: float = 60.0,
    seed: int = 0,
    model: str = "vit_h",
    brightness: float = 120.0,
    blur: float = 400.0,
    decode_ms: float = 30.0,
    encode_ms: float = 450.0,
    score: float = 0.9,
    bad_mask_share: float = 0.02,
    clicks: float = 2.0,
    iou: float | None = None,
    resolution: tuple[int, int] | None = None,
    source: str = "ui",
    session: str = "s",
) -> list[RunRecord]:
    """``n`` records from ``start`` (epoch seconds) every ``step_s`` seconds.

    Each object gets about ``clicks`` clicks (geometric), then an export (80 %); every new object
    is a new image. ``iou`` set: evaluation rows (source "batch", IoU around that value). The
    other knobs set the centre of their signal; each value gets realistic noise.
    """
    rng = np.random.default_rng(seed)
    sizes = [(4032, 3024), (1920, 1080), (3000, 2000), (1024, 768)]
    out: list[RunRecord] = []
    obj = 0
    clicks_left = 0
    image = ""
    w = h = 0
    img_brightness = img_blur = img_contrast = 0.0
    for i in range(n):
        t = start + i * step_s
        if clicks_left <= 0:
            obj += 1
            clicks_left = int(rng.geometric(1.0 / max(clicks, 1.0)))
            image = f"{seed:04x}{obj:012x}"
            w, h = resolution or sizes[int(rng.integers(len(sizes)))]
            img_brightness = float(np.clip(rng.normal(brightness, 18), 0, 255))
            img_contrast = float(np.clip(rng.normal(0.22, 0.04) * brightness / 120.0, 0.01, 0.5))
            img_blur = float(max(1.0, rng.lognormal(np.log(blur), 0.35))) * (brightness / 120.0) ** 2
        clicks_left -= 1
        bad = rng.random() < bad_mask_share
        empty = bool(bad and rng.random() < 0.5)
        full = bool(bad and not empty)
        frac = 0.0 if empty else (float(rng.uniform(0.85, 1.0)) if full else float(rng.beta(2, 8)))
        hit = rng.random() < 0.85
        enc = 0.3 if hit else float(rng.lognormal(np.log(encode_ms), 0.15))
        src = "batch" if iou is not None else source
        common = dict(
            time=dt.datetime.fromtimestamp(t, dt.UTC),
            session=session,
            object_id=None if iou is not None else f"{session}-{image[:8]}-{obj}",
            image_hash=image,
            width=w,
            height=h,
            aspect=w / h,
            brightness=img_brightness,
            contrast=img_contrast,
            blur=img_blur,
            mean_r=img_brightness * 1.05,
            mean_g=img_brightness,
            mean_b=img_brightness * 0.9,
            saturation=0.35,
            hue_hist=[0.3, 0.2, 0.2, 0.1, 0.15, 0.05],
            model=model,
            device="cuda",
            precision="bf16",
            multimask=True,
            chosen_index=0,
            score=float(np.clip(rng.normal(score, 0.05), 0, 1.05)),
            iou=None if iou is None else float(np.clip(rng.normal(iou, 0.08), 0, 1)),
            area=int(frac * w * h),
            area_fraction=frac,
            mask_empty=empty,
            mask_full=full,
            decode_ms=float(rng.lognormal(np.log(decode_ms), 0.25)),
            encode_ms=enc,
            cache_hit=hit,
            decoder="torch",
        )
        out.append(RunRecord(source=src, **common))  # type: ignore[arg-type]
        if clicks_left <= 0 and iou is None and rng.random() < 0.8:
            out.append(RunRecord(source="ui-export", **common))  # type: ignore[arg-type]
    return out


def write_log(log_dir: str | os.PathLike[str], records: list[RunRecord]) -> Path:
    """Append ``records`` to the run log in ``log_dir`` in one transaction (fast); returns the file."""
    with RunLog(log_dir) as log:
        path = log.path
    conn = sqlite3.connect(path, timeout=30)
    try:
        names = ", ".join(c.name for c in COLUMNS)
        marks = ", ".join("?" * len(COLUMNS))
        with conn:
            conn.executemany(f"INSERT INTO runs ({names}) VALUES ({marks})", (r.to_row() for r in records))
    finally:
        conn.close()
    return path
