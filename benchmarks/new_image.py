"""Time the load-to-embedding path of a new image, before the encoder, on a 20 MP photo.

    python benchmarks/new_image.py [--image examples/rocket_20mp.jpg] [--runs 5]

Steps (ours): decode (sam_core.core.images.load_image), content hash, 1536 px preview, image
stats (on the preview), resize to a long side of 1024 + tensor (Segmenter.prepare_input). Reference: what
SamPredictor.set_image does before the encoder (ResizeLongestSide.apply_image on the decoded
array, torch tensor, permute) after a plain PIL decode. Prints one JSON object last.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from segment_anything.utils.transforms import ResizeLongestSide  # noqa: E402

from sam_core.core.images import image_hash, image_stats, load_image, preview  # noqa: E402
from sam_core.model.build import build_test_tiny, resolve_placement  # noqa: E402
from sam_core.model.segmenter import Segmenter  # noqa: E402


def timed(fn, runs: int) -> tuple[float, object]:
    out, times = None, []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--image", default=str(ROOT / "examples" / "rocket_20mp.jpg"))
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    seg = Segmenter(build_test_tiny(), model_type="test-tiny", placement=resolve_placement("cpu", "fp32"))

    ours: dict[str, float] = {}
    ours["decode_ms"], loaded = timed(lambda: load_image(args.image), args.runs)
    rgb = loaded.rgb
    ours["hash_ms"], _ = timed(lambda: image_hash(rgb), args.runs)
    ours["preview_ms"], (small, _) = timed(lambda: preview(rgb, 1536), args.runs)
    ours["stats_ms"], _ = timed(lambda: image_stats(small), args.runs)  # the Studio measures the preview
    ours["resize_1024_ms"], x = timed(lambda: seg.prepare_input(rgb), args.runs)
    total = sum(ours.values())

    transform = ResizeLongestSide(1024)

    def reference() -> torch.Tensor:
        arr = np.array(Image.open(args.image).convert("RGB"))
        small = transform.apply_image(arr)
        return torch.as_tensor(small).permute(2, 0, 1).contiguous()[None]

    ref_ms, ref_x = timed(reference, args.runs)
    ref_decode_ms, _ = timed(lambda: np.array(Image.open(args.image).convert("RGB")), args.runs)
    same = bool(torch.equal(ref_x, x))
    print(f"image {loaded.size[0]}x{loaded.size[1]} {loaded.format}")
    for k, v in ours.items():
        print(f"  ours {k:>16}: {v:8.1f} ms")
    print(f"  reference decode+resize: {ref_ms:.1f} ms (decode alone {ref_decode_ms:.1f} ms); "
          f"identical 1024 input: {same}")
    print(json.dumps({
        "image_size": list(loaded.size), "runs": args.runs, "ours_ms": round(total, 1),
        "ours": {k: round(v, 1) for k, v in ours.items()},
        "reference_ms": round(ref_ms, 1), "reference_decode_ms": round(ref_decode_ms, 1),
        "same_encoder_input_as_sam_predictor": same,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }))


if __name__ == "__main__":
    main()
