"""The mask decoder alone: torch eager against onnxruntime (fp32 and quantized, 1 and 2 threads).

Run from the repository root::

    python benchmarks/decoder.py [--runs 30] [--image examples/rocket_20mp.jpg] [--json-out PATH]

Setup (untimed): test-tiny (its prompt encoder and mask decoder are vit_h's), the embedding of
``examples/rocket_20mp.jpg``, the ONNX files exported to a temporary folder, prompts = the
rocket preset of ``examples/presets.json`` (one foreground point + a box), multimask on.

* torch: ``Segmenter.decode(..., backend="torch")`` (prompt encoder + mask decoder, eager).
* onnxruntime: :class:`sam_core.model.onnx_decoder.OnnxDecoder` on the fp32 and the quantized
  file, each at 1 and 2 intra-op threads, running the graph pruned to the scores and low-res
  logits (what the server runs); ``fp32_full_graph`` runs the whole graph with the 1536-px
  preview size as ``orig_im_size`` (what the browser's file computes).

Median ms of ``--runs`` decodes after one warm-up; ``ratio`` = torch / that. Human-readable
lines first; the LAST line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as demo.py does

import numpy as np  # noqa: E402
import onnxruntime  # noqa: E402
import torch  # noqa: E402
from _common import emit_json, machine_info  # noqa: E402  (benchmarks/ is sys.path[0] when run as a script)

from sam_core import Segmenter  # noqa: E402
from sam_core.core.images import load_image  # noqa: E402
from sam_core.core.prompts import Prompts  # noqa: E402
from sam_core.core.sizes import ImageSize  # noqa: E402
from sam_core.model import onnx_decoder as od  # noqa: E402

DEFAULT_IMAGE = REPO / "examples" / "rocket_20mp.jpg"
PREVIEW_SIDE = 1536  # the browser's preview (sam_core.app.studio.PREVIEW_SIDE)


def median_ms(fn: Callable[[], Any], runs: int) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(ts), 2)


def preset(image: Path) -> Prompts:
    presets = json.loads((REPO / "examples" / "presets.json").read_text())
    p = next(p for p in presets if p["file"] == image.name)
    return Prompts.parse([tuple(x) for x in p["points"]], p["box"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=30, help="timed decodes per configuration (default 30)")
    ap.add_argument("--image", default=str(DEFAULT_IMAGE), help="image with a preset (default the 20 MP rocket)")
    ap.add_argument("--json-out", default=None, help="also write the JSON object to this file")
    args = ap.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, flush=True)

    load_start = round(os.getloadavg()[0], 2)
    image = Path(args.image)
    seg = Segmenter.from_pretrained("test-tiny", device="cpu", precision="fp32", progress=False)
    rgb = load_image(image).rgb
    emb, _ = seg.embed(rgb)
    prompts = preset(image)
    with tempfile.TemporaryDirectory(prefix="sam-bench-onnx-") as tmp:
        t0 = time.perf_counter()
        files = od.export_decoder(seg, tmp)
        export_s = time.perf_counter() - t0
        log(
            f"exported + verified the decoder in {export_s:.1f} s: fp32 {files.info['fp32']['bytes'] >> 10} KiB, "
            f"quantized {files.info['quantized']['bytes'] >> 10} KiB"
        )
        hw = emb.image_size.hw
        coords = seg.transform.apply_coords(np.array([p[:2] for p in prompts.points], float), hw)
        labels = np.array([p[2] for p in prompts.points])
        box = seg.transform.apply_boxes(np.array(prompts.box, float), hw)[0]
        feed = od.onnx_inputs(coords, labels, box, None, ImageSize(1, 1))
        scale = PREVIEW_SIDE / max(emb.image_size)
        preview = ImageSize(round(emb.image_size.width * scale), round(emb.image_size.height * scale))
        full_feed = od.onnx_inputs(coords, labels, box, None, preview)
        feats = emb.features.numpy()

        torch_ms = median_ms(lambda: seg.decode(emb, prompts, backend="torch"), args.runs)
        log(f"torch eager decode: {torch_ms} ms ({torch.__version__}, {torch.get_num_threads()} threads)")
        ort: dict[str, float] = {}
        for name, path in (("fp32", files.fp32), ("quantized", files.quantized)):
            for threads in (1, 2):
                dec = od.OnnxDecoder(path, threads=threads)
                ort[f"{name}_{threads}t"] = median_ms(lambda dec=dec: dec.run(feats, feed), args.runs)
        full = od.OnnxDecoder(files.fp32, threads=2, low_res_only=False)
        ort["fp32_full_graph_2t"] = median_ms(
            lambda: full.session.run(None, {"image_embeddings": feats, **full_feed}), args.runs
        )
        ratio = {k: round(torch_ms / v, 2) for k, v in ort.items()}
        for k, v in ort.items():
            log(f"onnxruntime {k:20s} {v:8.2f} ms   torch/onnx = {ratio[k]}")
        seg_onnx = Segmenter(
            seg.model, model_type=seg.model_type, placement=seg.placement, decoder="onnx", onnx_dir=tmp
        )
        seg_onnx.prepare_decoder()
        seg_onnx_ms = median_ms(lambda: seg_onnx.decode(emb, prompts), args.runs)
        log(
            f"Segmenter.decode with the onnx backend ({seg_onnx._onnx.threads if seg_onnx._onnx else '?'} "
            f"threads): {seg_onnx_ms} ms"
        )

    result = {
        "benchmark": "decoder",
        "torch_ms": torch_ms,
        "onnx_ms": ort,
        "ratio_vs_torch": ratio,
        "segmenter_onnx_ms": seg_onnx_ms,
        "runs": args.runs,
        "image_size": [int(emb.image_size.width), int(emb.image_size.height)],
        "preview_size": [preview.width, preview.height],
        "export_s": round(export_s, 2),
        "fp32_bytes": files.info["fp32"]["bytes"],
        "quantized_bytes": files.info["quantized"]["bytes"],
        "verification": files.info["verification"]["cases"],
        "torch_threads": torch.get_num_threads(),
        "onnxruntime": onnxruntime.__version__,
        **machine_info(load_start),
    }
    emit_json(result, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
