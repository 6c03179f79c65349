"""Segment everything (``sam_core.model.everything.segment_everything``) on the CPU.

Run from the repository root::

    python benchmarks/everything.py [--runs 3] [--runs-32 1] [--grids 16,32] [--masks preview,full]
                                    [--image PATH] [--json-out PATH]

Setup (untimed): test-tiny on the CPU in fp32 (its prompt encoder and mask decoder are vit_h's,
so the per-point decoder cost is vit_h's), ``examples/rocket_20mp.jpg`` (5472x3648, the click
benchmark's image) embedded once: every timed run uses the cached embedding (``encode_ms`` 0).

For each grid (16x16 and 32x32 points, SAM's default settings otherwise: IoU 0.88, stability
0.95, no crops): the median of ``--runs`` runs for 16x16 (default 3) and ``--runs-32`` for 32x32
(default 1: one run is 4-8 minutes on a 2-core VM), reporting total ms, ms per grid point, the
number of regions, the batch used (capped by ``MAX_BATCH_LOGIT_BYTES``: 1 point at 20 MP on a CPU)
and ``estimate_ms``'s prediction (``decode_ms_per_point`` measured at that batch, the encode time
of the setup for crops) next to the measurement.

``--masks``: ``full`` makes the masks at the image's size (SAM's generator as it is); ``preview``
makes them at the app's preview size (long side 1536, what the Segment tab does by default): the
same embedding (the 1024-px encoder input is the same), passed with the preview's size, so the
generator upsamples every candidate to 1.5 MP instead of 20 MP.

Also: ``decode_ms_per_point`` at batches of 1, 4, 16 and 64 points (the decoder alone).
test-tiny's random masks all fail the IoU filter, so ``regions`` is 0 and the per-region work
(stability score, boxes, RLE, binary masks) of a real model is not in these numbers; the
decoder and the upsampling of every candidate to full resolution (most of the time) are.

Human-readable lines first; the LAST line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as demo.py does

import torch  # noqa: E402
from _common import emit_json, machine_info  # noqa: E402  (benchmarks/ is sys.path[0] when run as a script)

from sam_core import Segmenter  # noqa: E402
from sam_core.core.images import load_image, preview  # noqa: E402
from sam_core.core.sizes import ImageSize  # noqa: E402
from sam_core.model.everything import (  # noqa: E402
    DEFAULT_UPSAMPLE_MS_PER_MPX,
    EverythingSettings,
    decode_ms_per_point,
    effective_points_per_batch,
    estimate_ms,
    segment_everything,
)

DEFAULT_IMAGE = REPO / "examples" / "rocket_20mp.jpg"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="timed runs of the grids other than 32x32 (default 3)")
    ap.add_argument("--runs-32", type=int, default=1, help="timed runs of the 32x32 grid (default 1)")
    ap.add_argument("--grids", default="16,32", help="points per side to run, comma-separated (default 16,32)")
    ap.add_argument("--image", default=str(DEFAULT_IMAGE), help="the image (default the 20 MP rocket)")
    ap.add_argument("--masks", default="preview,full", help="mask sizes to run: preview, full (default both)")
    ap.add_argument("--batches", default="1,4,16,64", help="decoder batch sizes to time alone (default 1,4,16,64)")
    ap.add_argument("--json-out", default=None, help="also write the JSON object to this file")
    args = ap.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, flush=True)

    load_start = round(os.getloadavg()[0], 2)
    seg = Segmenter.from_pretrained("test-tiny", device="cpu", precision="fp32", progress=False)
    rgb = load_image(Path(args.image)).rgb
    size = ImageSize.of(rgb)
    emb, _ = seg.embed(rgb)
    log(f"{Path(args.image).name} {size}: embedded in {emb.encode_ms:.0f} ms (untimed, cached for every run)")

    batch_ms = {b: round(decode_ms_per_point(seg, points=b), 2) for b in (int(v) for v in args.batches.split(","))}
    log("decoder alone, ms per point at a batch of " + ", ".join(f"{b}: {ms}" for b, ms in batch_ms.items()))

    small, _ = preview(rgb, 1536)
    small_emb = dataclasses.replace(emb, image_size=ImageSize.of(small))
    grids: list[dict[str, object]] = []
    for masks, n in ((m, int(g)) for m in args.masks.split(",") for g in args.grids.split(",")):
        image, embedding = (small, small_emb) if masks == "preview" else (rgb, emb)
        msize = ImageSize.of(image)
        settings = EverythingSettings(points_per_side=n)
        batch = effective_points_per_batch(settings, msize, seg.device)
        per_point = batch_ms.get(batch) or decode_ms_per_point(seg, points=batch)
        predicted = estimate_ms(settings, msize, decode_ms_per_point=per_point, encode_ms=emb.encode_ms)
        runs = args.runs_32 if n == 32 else args.runs
        totals, results = [], []
        for i in range(runs):
            t0 = time.perf_counter()
            res = segment_everything(seg, image, settings=settings, embedding=embedding)
            totals.append((time.perf_counter() - t0) * 1000)
            results.append(res)
            log(f"  {n}x{n} ({masks} masks) run {i + 1}/{runs}: {totals[-1]:.0f} ms, {len(res.regions)} regions")
        total = statistics.median(totals)
        points = n * n
        grid = {
            "masks": masks,
            "mask_size": [msize.width, msize.height],
            "points_per_side": n,
            "points": points,
            "runs": runs,
            "total_ms": round(total, 1),
            "total_ms_all": [round(t, 1) for t in totals],
            "ms_per_point": round(total / points, 2),
            "regions": len(results[-1].regions),
            "points_per_batch": batch,
            "encoder_runs": results[-1].timings["encoder_runs"],
            "encode_ms": results[-1].timings["encode_ms"],
            "estimate_ms": round(predicted, 1),
            "measured_over_estimate": round(total / predicted, 2),
        }
        grids.append(grid)
        log(
            f"{n}x{n} {masks} masks ({points} points, batch {batch}): median {total:.0f} ms of {runs} = "
            f"{total / points:.1f} ms/point, {grid['regions']} regions; estimate {predicted:.0f} ms "
            f"(measured/estimate {grid['measured_over_estimate']})"
        )

    result = {
        "benchmark": "everything",
        "model": "test-tiny",
        "device": "cpu",
        "image": Path(args.image).name,
        "image_size": [size.width, size.height],
        "embed_ms_untimed": round(emb.encode_ms, 1),
        "grids": grids,
        "decode_ms_per_point_by_batch": {str(b): ms for b, ms in batch_ms.items()},
        "upsample_ms_per_mpx_assumed": DEFAULT_UPSAMPLE_MS_PER_MPX,
        "torch_threads": torch.get_num_threads(),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        **machine_info(load_start),
    }
    emit_json(result, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
