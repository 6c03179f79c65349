"""Throughput of a study (``sam_core.batch.run_study``) and the cost of resuming a finished one.

Run from the repository root::

    python benchmarks/batch.py                                   # test-tiny on the CPU, 16 images
    python benchmarks/batch.py --model vit_h --device cuda --batch-size 8 --images 64

Images: the bundled examples (``examples/*.png``, ``rocket.jpg``) cycled to ``--images`` copies,
each copy flipped / rolled by a few pixels so that every image has its own pixels (the
embedding cache is keyed by pixel hash: identical copies would not be encoded again). Each
image gets ``--objects`` prompts (a box around the centre, then boxes with a point). Timed:

* ``images_per_s``: the whole study (decode, one encoder pass per image, the decoder for every
  object, exact full-resolution metrics, part files, the run log, the outputs), wall clock.
* ``resume_ms``: ``run_study(..., resume=True)`` on the finished folder: nothing to encode,
  so this is the planning, the part scan and the re-assembly of the outputs.

test-tiny's image encoder is tiny (0.15-0.3 s per image on 2 CPU cores; vit_h's takes ~60 s),
so with test-tiny the rate is set by the mask decoder (the same for every SAM size) and the
per-row work: it is the rate of the batch path around the encoder, not vit_h's. With a real
model the encoder dominates: use ``--device cuda --batch-size N``.
The LAST line of stdout is one JSON object (also written to ``--json-out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
from _common import emit_json
from PIL import Image

from sam_core.batch.runner import StudyConfig, run_study
from sam_core.core.images import load_image
from sam_core.model.segmenter import Segmenter

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ["astronaut.png", "chelsea.png", "coffee.png", "coins.png", "rocket.jpg"]


def make_images(folder: Path, n: int, objects: int) -> Path:
    """``n`` distinct images in ``folder`` and a prompts JSON with ``objects`` objects each."""
    folder.mkdir(parents=True)
    sources = [load_image(ROOT / "examples" / name).rgb for name in EXAMPLES]
    prompts = {}
    for i in range(n):
        rgb = sources[i % len(sources)]
        k = i // len(sources)
        rgb = np.roll(rgb[:, ::-1] if k % 2 else rgb, shift=3 * k, axis=1)
        name = f"img{i:04d}.png"
        Image.fromarray(np.ascontiguousarray(rgb)).save(folder / name, compress_level=1)
        h, w = rgb.shape[:2]
        objs = []
        for j in range(objects):
            f = 0.2 + 0.5 * (j + 1) / (objects + 1)
            box = [
                round(w * (0.5 - f / 2)),
                round(h * (0.5 - f / 2)),
                round(w * (0.5 + f / 2)),
                round(h * (0.5 + f / 2)),
            ]
            objs.append({"box": box, **({"points": [[w // 2, h // 2, 1]]} if j else {})})
        prompts[name] = objs
    path = folder.parent / "prompts.json"
    path.write_text(json.dumps(prompts))
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="test-tiny")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--objects", type=int, default=2, help="objects (prompts) per image")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--resume-runs", type=int, default=3)
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args()

    seg = Segmenter.from_pretrained(args.model, args.checkpoint, args.device, args.precision, progress=False)
    tmp = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    load_start = round(os.getloadavg()[0], 2)
    try:
        prompts = make_images(tmp / "images", args.images, args.objects)
        config = StudyConfig(
            images=(str(tmp / "images"),), out=tmp / "study", prompts=prompts, batch_size=args.batch_size
        )
        # warm-up (kernels, allocator), on another folder and cache-cold images
        run_study(
            StudyConfig(images=(str(tmp / "images" / "img0000.png"),), out=tmp / "warm", prompts=prompts), segmenter=seg
        )
        seg.clear_cache()
        t0 = time.perf_counter()
        result = run_study(config, segmenter=seg)
        wall = time.perf_counter() - t0
        resumed = []
        for _ in range(args.resume_runs):
            t1 = time.perf_counter()
            again = run_study(StudyConfig(**{**vars(config), "resume": True}), segmenter=seg)
            resumed.append((time.perf_counter() - t1) * 1000)
        assert again.rows == result.rows  # the same parts, read back
        t = result.summary["timings_ms"]
        print(
            f"{args.images} images x {args.objects} objects on {seg.device}: {args.images / wall:.2f} images/s "
            f"(encode median {t['encode_per_image']['median']} ms, decode median {t['decode_per_row']['median']} ms); "
            f"resume with nothing to do: {statistics.median(resumed):.0f} ms"
        )
        gpu = torch.cuda.get_device_name() if seg.device.type == "cuda" else None
        emit_json(
            {
                "benchmark": "batch",
                "model": args.model,
                "test_model": seg.is_test_model,
                "note": "test-tiny: a tiny encoder, so this is the rate of the decoder (vit_h's) and the work around it"
                if seg.is_test_model
                else None,
                "device": str(seg.device),
                "gpu_name": gpu,
                "precision": seg.placement.precision,
                "batch_size": args.batch_size,
                "images": args.images,
                "objects_per_image": args.objects,
                "rows": len(result.rows),
                "seconds": round(wall, 3),
                "images_per_s": round(args.images / wall, 3),
                "rows_per_s": round(len(result.rows) / wall, 3),
                "encode_ms_median": t["encode_per_image"]["median"],
                "decode_ms_median": t["decode_per_row"]["median"],
                "resume_ms": round(statistics.median(resumed), 1),
                "errors": len(result.errors),
                "torch": torch.__version__,
                "torch_threads": torch.get_num_threads(),
                "cpu_count": os.cpu_count(),
                "machine": platform.machine(),
                "python": platform.python_version(),
                "loadavg_1m_start": load_start,
                "loadavg_1m_end": round(os.getloadavg()[0], 2),
            },
            args.json_out,
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
