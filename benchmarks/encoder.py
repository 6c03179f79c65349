"""Image-encoder speed and accuracy: precision x SDPA x torch.compile, against fp32 eager.

Run from the repository root::

    python benchmarks/encoder.py --model vit_h --precision bf16 --sdpa on --compile on --device cuda
    python benchmarks/encoder.py --model test-tiny                      # quick CPU check

The model gets seeded RANDOM weights (no checkpoint is needed; for vit_* the zero-initialised
relative-position tables get random values too, so the SDPA bias path is exercised). The
input is a real example image (examples/coffee.png) resized and normalised through the
Segmenter's own path. The reference is the fp32 eager encoder (original attention) on the
same input; the configured encoder runs under ``torch.autocast(device, bfloat16)`` with
``--precision bf16``, with ``sam_core.model.build.enable_sdpa`` with ``--sdpa on`` and through
``torch.compile`` with ``--compile on`` (the first call's compile time is reported as
``compile_s`` and excluded from the timings, like the other warm-up runs).

Accuracy: ``max_abs_diff`` and ``rel_diff`` (= max|delta| / max|ref|) of the embedding, and
``mask_iou``: the same prompt sets decoded from both embeddings by the same fp32 mask
decoder, mean IoU of the best masks (random weights, so this measures agreement only).

The LAST line of stdout is one JSON object (also written to ``--json-out``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _common import emit_json  # noqa: E402  (benchmarks/ is sys.path[0] when run as a script)

from sam_core.core.sizes import ImageSize  # noqa: E402

DEFAULT_IMAGE = REPO / "examples" / "coffee.png"
# Prompt sets on coffee.png (600x400): points (x, y, label) and/or a box.
PROMPT_SETS: list[tuple[list[tuple[float, float, int]], tuple[float, float, float, float] | None]] = [
    ([(290, 230, 1)], None),
    ([(290, 230, 1), (290, 45, 1)], None),
    ([(420, 300, 1), (80, 80, 0)], None),
    ([], (150, 20, 470, 390)),
    ([(300, 200, 1)], (150, 20, 470, 390)),
]


def _log(msg: str) -> None:
    print(msg, flush=True)


def _on_off(v: str) -> bool:
    v = v.lower()
    if v in ("on", "1", "true", "yes"):
        return True
    if v in ("off", "0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected on|off, got {v!r}")


def build_random_model(model_type: str, seed: int):
    """SAM with seeded random weights; rel-pos tables randomised like build_test_tiny does."""
    from segment_anything import sam_model_registry
    from segment_anything.modeling.image_encoder import Attention

    from sam_core.model.build import build_test_tiny

    if model_type == "test-tiny":
        return build_test_tiny(seed=seed)
    if model_type not in sam_model_registry or model_type == "default":
        raise SystemExit(f"unknown model {model_type!r}: use vit_b, vit_l, vit_h or test-tiny")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sam = sam_model_registry[model_type](checkpoint=None)
        for m in sam.image_encoder.modules():
            if isinstance(m, Attention) and m.use_rel_pos:
                torch.nn.init.normal_(m.rel_pos_h, std=0.02)
                torch.nn.init.normal_(m.rel_pos_w, std=0.02)
    return sam.eval()


def set_image_size(sam: Any, size: int) -> None:
    """Run the encoder at ``size`` px: resize the absolute position embedding (bicubic)."""
    enc = sam.image_encoder
    if size == enc.img_size:
        return
    if size % 16:
        raise SystemExit("--image-size must be a multiple of 16")
    if enc.pos_embed is not None:
        g = size // 16
        pe = F.interpolate(enc.pos_embed.data.permute(0, 3, 1, 2), size=(g, g), mode="bicubic", align_corners=False)
        enc.pos_embed = torch.nn.Parameter(pe.permute(0, 2, 3, 1).contiguous())
    enc.img_size = size  # Sam.preprocess pads to this; global-attention rel-pos tables interpolate


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], torch.Tensor], device: torch.device) -> tuple[float, torch.Tensor]:
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return (time.perf_counter() - t0) * 1000.0, out


def mask_agreement(seg: Any, ref: torch.Tensor, fast: torch.Tensor, image_size: ImageSize,
                   input_size: ImageSize) -> dict[str, Any]:
    """Decode PROMPT_SETS from both embeddings with the same fp32 decoder; IoU of best masks."""
    from sam_core.core.prompts import Prompts
    from sam_core.model.segmenter import Embedding

    def emb(features: torch.Tensor, key: str) -> Embedding:
        return Embedding(key, features.float(), image_size, input_size, 0.0)

    e_ref, e_fast = emb(ref, "ref"), emb(fast, "fast")
    ious, ious_same, agree, fractions = [], [], 0, []
    for points, box in PROMPT_SETS:
        prompts = Prompts.parse(points or None, box)
        r = seg.decode(e_ref, prompts, multimask=True)
        f = seg.decode(e_fast, prompts, multimask=True)
        a, b = r.masks[r.best_index], f.masks[f.best_index]
        ious.append(_iou(a, b))
        fractions.append(round(float(a.mean()), 4))  # an empty or full mask would make IoU trivial
        ious_same.append(float(np.mean([_iou(r.masks[i], f.masks[i]) for i in range(len(r.scores))])))
        agree += int(r.best_index == f.best_index)
    return {
        "mask_iou": round(float(np.mean(ious)), 5),
        "mask_iou_min": round(float(np.min(ious)), 5),
        "mask_iou_per_prompt": [round(v, 5) for v in ious],
        "mask_iou_all_candidates": round(float(np.mean(ious_same)), 5),
        "best_index_agree": f"{agree}/{len(PROMPT_SETS)}",
        "ref_best_mask_fraction": fractions,
        "prompt_sets": len(PROMPT_SETS),
    }


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="test-tiny", help="vit_b | vit_l | vit_h | test-tiny (default)")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--sdpa", type=_on_off, default=False, help="on | off (default off)")
    ap.add_argument("--compile", type=_on_off, default=False, help="on | off (default off)")
    ap.add_argument("--compile-mode", default="default",
                    help="torch.compile mode: default | max-autotune-no-cudagraphs | max-autotune | reduce-overhead")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto (default cpu)")
    ap.add_argument("--runs", type=int, default=None, help="timed runs (default 3 on CPU, 20 on CUDA)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed warm-up runs (default 1 on CPU, 3 on CUDA)")
    ap.add_argument("--reference-runs", type=int, default=None,
                    help="timed fp32-eager reference runs (default 1 on CPU, 3 on CUDA; reused when the "
                         "configuration is fp32 eager itself)")
    ap.add_argument("--image-size", type=int, default=1024, help="encoder input side (default 1024; "
                    "other sizes resize the position embedding and skip mask_iou)")
    ap.add_argument("--image", default=str(DEFAULT_IMAGE), help="input image (default examples/coffee.png)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--json-out", default=None, help="also write the JSON object to this file")
    args = ap.parse_args(argv)

    from sam_core.core.images import load_image
    from sam_core.model.build import enable_sdpa, resolve_placement
    from sam_core.model.segmenter import Segmenter

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    load_start = round(os.getloadavg()[0], 2)  # other work on the machine skews the timings
    placement = resolve_placement(args.device, "fp32")
    device = placement.device
    cuda = device.type == "cuda"
    runs = args.runs if args.runs is not None else (20 if cuda else 3)
    warmup = args.warmup if args.warmup is not None else (3 if cuda else 1)
    ref_runs = args.reference_runs if args.reference_runs is not None else (3 if cuda else 1)
    gpu_name = torch.cuda.get_device_name(device) if cuda else None
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = False  # the reference is true fp32
        torch.backends.cudnn.allow_tf32 = False

    t0 = time.perf_counter()
    sam = build_random_model(args.model, args.seed)
    set_image_size(sam, args.image_size)
    build_s = time.perf_counter() - t0
    params_m = sum(p.numel() for p in sam.image_encoder.parameters()) / 1e6
    seg = Segmenter(sam, model_type=args.model, placement=placement, sdpa=False)  # moves to device, fp32
    if args.image_size != 1024:
        from segment_anything.utils.transforms import ResizeLongestSide

        seg.transform = ResizeLongestSide(args.image_size)
    image = load_image(args.image).rgb
    x = seg.prepare_input(image).to(device)
    input_size = ImageSize(int(x.shape[-1]), int(x.shape[-2]))
    with torch.inference_mode():
        xin = seg.model.preprocess(x.float())
    encoder = seg.model.image_encoder
    _log(f"{args.model} encoder ({params_m:.1f} M params, random weights) built in {build_s:.1f} s on {device}"
         f"{' (' + gpu_name + ')' if gpu_name else ''}; input {tuple(xin.shape)}; torch {torch.__version__}, "
         f"{torch.get_num_threads()} threads")

    plain = args.precision == "fp32" and not args.sdpa and not args.compile

    def eager_fp32() -> torch.Tensor:
        with torch.inference_mode():
            return encoder(xin).float()

    # ---- reference: fp32 eager, original attention
    ref_ms: list[float] = []
    ref = None
    if not plain:
        for _ in range(1 if cuda else 0):
            eager_fp32()
        for i in range(max(1, ref_runs)):
            ms, ref = timed(eager_fp32, device)
            ref_ms.append(ms)
            _log(f"reference fp32 eager run {i + 1}: {ms:.1f} ms")

    # ---- the configured encoder
    n_sdpa = enable_sdpa(seg.model) if args.sdpa else 0
    fn: Callable[[torch.Tensor], torch.Tensor] = encoder
    if args.compile:
        fn = torch.compile(encoder, mode=None if args.compile_mode == "default" else args.compile_mode)
    autocast = (torch.autocast(device_type=device.type, dtype=torch.bfloat16) if args.precision == "bf16"
                else contextlib.nullcontext())

    def configured() -> torch.Tensor:
        with torch.inference_mode(), autocast:
            return fn(xin)

    compile_s = None
    out = None
    if args.compile:
        ms, out = timed(configured, device)
        compile_s = round(ms / 1000.0, 2)
        _log(f"compile (first call, mode {args.compile_mode}): {compile_s} s")
    for i in range(warmup):
        ms, out = timed(configured, device)
        if plain and ref is None:
            ref = out.float()
        _log(f"warm-up {i + 1}: {ms:.1f} ms")
    times = []
    for i in range(runs):
        ms, out = timed(configured, device)
        times.append(ms)
        if plain and ref is None:
            ref = out.float()
    if plain:
        ref_ms = list(times)
    fast = out.float()
    ms_median = statistics.median(times)
    _log(f"{args.model} {args.precision} sdpa={'on' if args.sdpa else 'off'} compile={'on' if args.compile else 'off'}: "
         f"median {ms_median:.1f} ms, min {min(times):.1f} ms over {runs} runs")

    assert ref is not None
    diff = (fast - ref).abs()
    max_abs = float(diff.max())
    ref_max = float(ref.abs().max())
    result: dict[str, Any] = {
        "benchmark": "encoder",
        "model": args.model,
        "precision": args.precision,
        "sdpa": bool(args.sdpa),
        "compile": bool(args.compile),
        "compile_mode": args.compile_mode if args.compile else None,
        "device": str(device),
        "gpu_name": gpu_name,
        "ms_median": round(ms_median, 2),
        "ms_min": round(min(times), 2),
        "ms_mean": round(statistics.fmean(times), 2),
        "runs": runs,
        "warmup": warmup,
        "compile_s": compile_s,
        "reference_ms": round(statistics.median(ref_ms), 2) if ref_ms else None,
        "reference_runs": len(ref_ms),
        "speedup": round(statistics.median(ref_ms) / ms_median, 3) if ref_ms else None,
        "max_abs_diff": max_abs,
        "rel_diff": max_abs / ref_max if ref_max else None,
        "ref_max_abs": ref_max,
        "mean_abs_diff": float(diff.mean()),
        "sdpa_blocks": n_sdpa,
        "image_size": args.image_size,
        "input_size": list(input_size),
        "params_m": round(params_m, 2),
        "build_s": round(build_s, 2),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "loadavg_1m_start": load_start,
        "loadavg_1m_end": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "seed": args.seed,
    }
    if args.image_size == 1024:
        result.update(mask_agreement(seg, ref, fast, ImageSize.of(image), input_size))
        _log(f"agreement with fp32 eager: max|d| {max_abs:.3g}, rel {result['rel_diff']:.3g}, "
             f"mask IoU {result['mask_iou']} (min {result['mask_iou_min']}), best index {result['best_index_agree']}")
    else:
        result["mask_iou"] = None
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)
    if cuda:
        result["cuda_peak_mem_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    emit_json(result, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
