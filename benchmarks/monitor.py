"""Monitoring: how long the Monitor tab takes to read the run log, and what the new signals add to a click.

Run from the repository root::

    python benchmarks/monitor.py [--sizes 10000 100000] [--runs 3] [--clicks 300]

1. Dashboard load (targets: read 100k records < 1 s). A synthetic run log of N records (a day
   of vit_h-like traffic with a drift, ``sam_core.monitor.synthetic``) is written to a temporary
   folder (untimed), then, per size, the median of ``--runs`` cold runs (a new read each time) of:

   * ``read_ms``: ``load_frame`` -- SQLite -> one numpy array per monitored column;
   * ``dashboard_ms``: ``build_dashboard(dir, "all")`` -- the read plus the window, the alert
     rules (with "since"), every signal, the time series and the drift table: what the tab
     computes before it draws, on its first refresh;
   * ``refresh_ms``: the same on a later refresh: the tab's ``FrameCache`` reads only new rows;
   * ``plots_ms``: the six matplotlib figures drawn and PNG-encoded (the tab's ``gr.Plot``
     encodes them once more; its cost does not grow with N beyond the histograms).

2. Per-click overhead of the new signals (target <= 3 ms). A Studio with test-tiny, the
   5472x3648 rocket photo (a 1536x1024 preview and preview masks), 200 steps of undo history (the most
   ``SessionState`` keeps, so the object-id count is at its dearest). Timed per click, median of
   ``--clicks``:

   * ``new``: ``make_record`` (now with aspect, contrast, colour, mask flags, object id) +
     ``RunLog.append`` (the wider row) + the Prometheus ``MetricsExporter.observe``;
   * ``old``: the same record without the new fields (the v2 ``make_record``, reproduced
     here) + ``RunLog.append``;
   * ``overhead_ms`` = new - old. The colour/contrast statistics are computed once per image
     (``image_stats`` on the preview, when the image is opened), not per click: reported as
     ``image_stats_ms`` (new) against the old brightness/blur-only version.

Human-readable lines first; the LAST line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as demo.py does

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import emit_json, machine_info  # noqa: E402  (benchmarks/ is sys.path[0] when run as a script)

from sam_core.app.records import make_record  # noqa: E402
from sam_core.app.session import PromptMode  # noqa: E402
from sam_core.app.studio import Click, Studio  # noqa: E402
from sam_core.core.images import image_stats, preview  # noqa: E402
from sam_core.monitor.dashboard import build_dashboard  # noqa: E402
from sam_core.monitor.data import FrameCache, load_frame  # noqa: E402
from sam_core.monitor.metrics import MetricsExporter  # noqa: E402
from sam_core.monitor.plots import all_figures, figure_png  # noqa: E402
from sam_core.monitor.synthetic import synthetic_records, write_log  # noqa: E402
from sam_core.runlog import RunRecord  # noqa: E402

TARGETS = {"read_100k_ms": 1000.0, "overhead_ms": 3.0}
IMAGE = REPO / "examples" / "rocket_20mp.jpg"  # 5472x3648: its preview is 1536x1024


def log(msg: str) -> None:
    print(msg, flush=True)


def _median(xs: list[float]) -> float:
    return round(statistics.median(xs), 3)


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


def make_log(folder: Path, n: int) -> None:
    """A day of traffic ending now, N records, the inputs darker in the last 3 hours (30 % of them)."""
    now = time.time()
    n_old = int(n * 0.7)
    old = synthetic_records(n_old, start=now - 24 * 3600, step_s=21 * 3600 / max(n_old, 1), seed=1)[:n_old]
    n_new = n - len(old)
    new = synthetic_records(n_new, start=now - 3 * 3600, step_s=3 * 3600 / max(n_new, 1), seed=2, brightness=55.0)
    write_log(folder, old + new[:n_new])  # (each click may add an export record: cut to N)


def bench_dashboard(n: int, runs: int, tmp: Path) -> dict[str, Any]:
    folder = tmp / f"log-{n}"
    t0 = time.perf_counter()
    make_log(folder, n)
    log(f"  {n} records written in {_ms(t0) / 1000:.1f} s (untimed)")
    read, dash, plots, refresh = [], [], [], []
    cache = FrameCache(folder)
    cache.load()  # the tab's cache after its first read
    for _ in range(runs):
        t0 = time.perf_counter()
        frame = load_frame(folder)
        read.append(_ms(t0))
        t0 = time.perf_counter()
        db = build_dashboard(folder, "all")
        dash.append(_ms(t0))
        t0 = time.perf_counter()
        build_dashboard(cache.load(), "all")
        refresh.append(_ms(t0))
        t0 = time.perf_counter()
        for fig in all_figures(db).values():
            figure_png(fig)
        plots.append(_ms(t0))
    assert len(frame) == n
    out = {
        "records": n,
        "read_ms": _median(read),
        "dashboard_ms": _median(dash),
        "refresh_ms": _median(refresh),
        "plots_ms": _median(plots),
        "alerts_firing": [a.rule for a in db.firing],
    }
    log(
        f"  {n:>7} records: read {out['read_ms']:.0f} ms, dashboard (read + alerts + signals) "
        f"{out['dashboard_ms']:.0f} ms, a later refresh (cached rows) {out['refresh_ms']:.0f} ms, "
        f"6 plots {out['plots_ms']:.0f} ms; firing: {out['alerts_firing']}"
    )
    return out


def old_make_record(state, entry, seg, source: str, metrics: dict[str, Any]) -> RunRecord:
    """The v2 make_record: the same record without the new monitoring fields (the baseline)."""
    res = state.result
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
        decoder="torch",
    )


def old_image_stats(rgb: np.ndarray) -> dict[str, float]:
    """The v2 image_stats (brightness and blur only), the baseline of the per-image cost."""
    small, _ = preview(rgb, 1024)
    grey = cv2.cvtColor(np.ascontiguousarray(small), cv2.COLOR_RGB2GRAY)
    return {"brightness": float(grey.mean()), "blur": float(cv2.Laplacian(grey, cv2.CV_64F).var())}


def bench_click(clicks: int, tmp: Path) -> dict[str, Any]:
    from sam_core import Segmenter

    seg = Segmenter.from_pretrained("test-tiny", device="cpu", precision="fp32", progress=False)
    studio = Studio(seg, outputs_dir=tmp / "click-outputs")
    state = studio.open_image(None, str(IMAGE))
    w, h = state.size
    rng = np.random.default_rng(0)
    for _ in range(201):  # a full undo history (MAX_HISTORY = 200): objects of 10 clicks, then Clear
        if len(state.prompts.points) >= 10:
            state = state.clear()
        else:
            state = state.with_prompts(state.prompts.add_point(float(rng.uniform(0, w)), float(rng.uniform(0, h)), 1))
    state = studio.handle(state, Click(700, 500, PromptMode.FOREGROUND))
    assert len(state.history) == 200 and state.candidates is not None
    entry = studio.entry(state)
    metrics = state.candidates.metrics
    exporter = MetricsExporter(studio.runlog.path.parent)
    new, old = [], []
    for i in range(clicks + 10):
        t0 = time.perf_counter()
        rec = make_record(state, entry, seg, "ui", metrics)
        studio.runlog.append(rec)
        exporter.observe(rec)
        t_new = _ms(t0)
        t0 = time.perf_counter()
        studio.runlog.append(old_make_record(state, entry, seg, "ui", metrics))
        t_old = _ms(t0)
        if i >= 10:  # warm-up
            new.append(t_new)
            old.append(t_old)
    stats_new, stats_old = [], []
    small = entry.preview
    for _ in range(20):
        t0 = time.perf_counter()
        image_stats(small)
        stats_new.append(_ms(t0))
        t0 = time.perf_counter()
        old_image_stats(small)
        stats_old.append(_ms(t0))
    out = {
        "new_ms": _median(new),
        "old_ms": _median(old),
        "overhead_ms": round(_median(new) - _median(old), 3),
        "image_stats_ms": _median(stats_new),
        "image_stats_old_ms": _median(stats_old),
        "preview_size": list(entry.preview_size),
        "history": len(state.history),
    }
    log(
        f"  per click: new record + append + observe {out['new_ms']:.2f} ms, old record + append "
        f"{out['old_ms']:.2f} ms -> overhead {out['overhead_ms']:.2f} ms (target <= 3 ms)"
    )
    log(
        f"  per image: image_stats {out['image_stats_ms']:.1f} ms (old: {out['image_stats_old_ms']:.1f} ms) on the "
        f"{entry.preview_size} preview"
    )
    shutil.rmtree(studio.render_dir, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], help="log sizes (records)")
    ap.add_argument("--runs", type=int, default=3, help="cold dashboard loads per size (median)")
    ap.add_argument("--clicks", type=int, default=300, help="clicks timed for the per-click overhead (median)")
    ap.add_argument("--json-out", help="also write the JSON result here")
    args = ap.parse_args(argv)
    load_start = round(os.getloadavg()[0], 2)
    log(
        f"monitor benchmark: {platform.machine()} {os.cpu_count()} CPUs, 1-min load {load_start}, "
        f"torch {torch.__version__}"
    )
    tmp = Path(tempfile.mkdtemp(prefix="sam-monitor-bench-"))
    try:
        log("dashboard load:")
        loads = [bench_dashboard(n, args.runs, tmp) for n in args.sizes]
        log("per-click overhead of the new signals:")
        click = bench_click(args.clicks, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    big = next((x for x in loads if x["records"] == 100_000), None)
    result = {
        "benchmark": "monitor",
        "dashboard": loads,
        "click": click,
        "meets_targets": {
            "read_100k_ms": None if big is None else big["read_ms"] < TARGETS["read_100k_ms"],
            "dashboard_100k_ms": None if big is None else big["dashboard_ms"] < TARGETS["read_100k_ms"],
            "overhead_ms": click["overhead_ms"] <= TARGETS["overhead_ms"],
        },
        **machine_info(load_start),
    }
    emit_json(result, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
