"""A rough polygon prompt against the box alone: which gives SAM the better mask?

Run from the repository root::

    python benchmarks/polygon_prompt.py [--model test-tiny] [--device cpu] [--seed 0] [--json-out PATH]
    python benchmarks/polygon_prompt.py --model vit_h --device cuda   # the meaningful run (real weights)

Objects (each with a rough polygon, the way a user clicks one in the Polygon prompt mode):

* ``preset:*``: the examples of ``examples/presets.json`` that have a box. Their true mask is
  unknown, so the polygon's own raster is the reference. The polygon is SYNTHETIC: the box's
  inscribed ellipse with 12 vertices, each jittered by a seeded uniform +-5 % of the box's
  width / height (not drawn by a person around the object).
* ``synthetic:*``: scenes with a known true mask: an object painted in a distinct colour on a
  ``tests/synth.py::photo_like`` background (L shape, ring, diagonal bar, a disc next to a
  rectangle of another colour; the object's colour is the one of a small palette farthest
  from its surroundings). Rough polygon = ``cv2.approxPolyDP`` of the reference's outer
  contour (epsilon 3 % of its perimeter), each vertex jittered by a seeded uniform +-3 px.

Each object is decoded three ways (multimask, the best-scoring candidate kept), all with the
same box, the polygon's clipped bounding box from
:func:`sam_core.core.polygon_prompt.polygon_to_prompts`:

* ``box``: the box alone;
* ``polygon``: the polygon's prompts (box + up to 3 inside points, ``n_outside=0``);
* ``polygon_out``: box + inside points + 1 outside point (``n_outside=1``; none when the
  polygon leaves no room in its box).

IoU against the reference (synthetic scenes) and against the polygon's own raster (a pixel
is in when its centre is, even-odd, the rule of :mod:`sam_core.core.polygon_prompt`; not
``cv2.fillPoly``, which adds a ring of edge pixels, see :func:`raster`). ``polygon_iou_ref`` says how
rough the outline itself is; ``box_iou_ref`` is what the filled box alone scores.

With ``--model test-tiny`` the weights are RANDOM: the masks mean nothing and the IoU
differences say nothing about SAM; that run only checks the script. Human-readable lines
first; the LAST line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

def _load_test_module(name: str) -> Any:
    """A helper module of tests/ (synth.py: the tests' shapes and backgrounds), loaded by path."""
    spec = importlib.util.spec_from_file_location(f"_tests_{name}", REPO / "tests" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as demo.py does

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import emit_json, machine_info  # noqa: E402  (benchmarks/ is sys.path[0] when run as a script)
from matplotlib.path import Path as MplPath  # noqa: E402

from sam_core import Segmenter  # noqa: E402

_synth = _load_test_module("synth")  # the tests' shapes and photo-like backgrounds
photo_like, disc, rect = _synth.photo_like, _synth.disc, _synth.rect

from sam_core.core.evaluation import iou  # noqa: E402
from sam_core.core.images import load_image  # noqa: E402
from sam_core.core.polygon_prompt import polygon_to_prompts  # noqa: E402
from sam_core.core.prompts import Prompts  # noqa: E402
from sam_core.core.sizes import ImageSize  # noqa: E402

KINDS = ("box", "polygon", "polygon_out")
ELLIPSE_VERTICES = 12
PRESET_JITTER = 0.05  # share of the box's width / height
SYNTH_EPSILON = 0.03  # approxPolyDP epsilon, share of the contour's perimeter
SYNTH_JITTER_PX = 3.0
SYNTH_H, SYNTH_W = 240, 320

NOTE_TINY = (
    "test-tiny has RANDOM weights: its masks are meaningless and these IoU differences say nothing about SAM; "
    "this run only checks the script. Run with --model vit_b|vit_l|vit_h and real checkpoints for the comparison."
)
NOTE_REAL = (
    "Preset polygons are synthetic (jittered inscribed ellipse of the preset box), so their reference is the "
    "polygon's own raster, not the true object; only the synthetic scenes have a true reference."
)


@dataclass
class Target:
    """One object to prompt: an (H, W, 3) uint8 image, polygon vertices (full-image x, y), reference or None."""

    name: str
    source: str  # "preset" | "synthetic"
    rgb: np.ndarray
    vertices: np.ndarray  # (N, 2) float64
    reference: np.ndarray | None  # (H, W) bool, the true mask (synthetic scenes only)


def raster(vertices: np.ndarray, h: int, w: int) -> np.ndarray:
    """(H, W) bool: pixels whose centre ``(col + .5, row + .5)`` is inside the polygon (even-odd).

    ``matplotlib.path.Path.contains_points`` on the centres within the polygon's bounds, not
    ``cv2.fillPoly``: fillPoly also marks every pixel an edge touches (a 10 x 10 px square with
    edges on pixel edges comes out 11 x 11 = 121 px, even with the vertices shifted by -0.5 px),
    a one-pixel ring that would weigh on small objects' IoU.
    """
    x0, x1 = max(int(np.floor(vertices[:, 0].min())), 0), min(int(np.ceil(vertices[:, 0].max())), w)
    y0, y1 = max(int(np.floor(vertices[:, 1].min())), 0), min(int(np.ceil(vertices[:, 1].max())), h)
    out = np.zeros((h, w), bool)
    if x1 > x0 and y1 > y0:
        yy, xx = np.mgrid[y0:y1, x0:x1]
        centres = np.stack([xx.ravel() + 0.5, yy.ravel() + 0.5], axis=1)
        out[y0:y1, x0:x1] = MplPath(vertices).contains_points(centres).reshape(yy.shape)
    return out


def box_raster(box: tuple[float, float, float, float], h: int, w: int) -> np.ndarray:
    """(H, W) bool: pixels whose centre lies in the half-open box ``(x1, y1, x2, y2)``."""
    x1, y1, x2, y2 = box
    cx = np.arange(w) + 0.5
    cy = np.arange(h) + 0.5
    return ((cy >= y1) & (cy < y2))[:, None] & ((cx >= x1) & (cx < x2))[None, :]


def ellipse_polygon(box: list[float], rng: np.random.Generator) -> np.ndarray:
    """(12, 2) vertices on the box's inscribed ellipse, each jittered by +-5 % of the box's width / height."""
    x1, y1, x2, y2 = (float(v) for v in box)
    t = np.arange(ELLIPSE_VERTICES) * 2 * np.pi / ELLIPSE_VERTICES
    cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
    v = np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)
    return v + rng.uniform(-1, 1, v.shape) * PRESET_JITTER * np.array([x2 - x1, y2 - y1])


def rough_outline(reference: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, 2) vertices: approxPolyDP (3 % of the perimeter) of the largest outer contour, jittered +-3 px."""
    contours, _ = cv2.findContours(reference.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    c = max(contours, key=cv2.contourArea)
    approx = cv2.approxPolyDP(c, SYNTH_EPSILON * cv2.arcLength(c, True), True).reshape(-1, 2).astype(np.float64)
    v = approx + 0.5  # contour points are pixel indices; their centres in full-image coordinates
    return v + rng.uniform(-SYNTH_JITTER_PX, SYNTH_JITTER_PX, v.shape)


def paint(bg: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """``bg`` with ``mask`` filled in ``colour`` plus mild noise (a flat patch is unlike a photo)."""
    out = bg.copy()
    noise = rng.integers(-8, 9, (int(mask.sum()), 3))
    out[mask] = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
    return out


PALETTE = ((225, 30, 200), (250, 240, 20), (20, 20, 20), (245, 245, 245), (255, 120, 0), (0, 200, 90))


def distinct_colour(img: np.ndarray, mask: np.ndarray) -> tuple[int, int, int]:
    """The :data:`PALETTE` colour farthest (1st percentile of RGB distance) from the pixels
    within 15 px around ``mask``: the object stands out from whatever it touches."""
    ring = cv2.dilate(mask.astype(np.uint8), np.ones((31, 31), np.uint8)).astype(bool) & ~mask
    around = img[ring].astype(np.float64)
    gaps = [np.percentile(np.linalg.norm(around - np.array(c), axis=1), 1) for c in PALETTE]
    return PALETTE[int(np.argmax(gaps))]


def synthetic_targets(rng: np.random.Generator, seed: int) -> list[Target]:
    """Four scenes on ``photo_like`` backgrounds, each with a true (H, W) bool reference."""
    h, w = SYNTH_H, SYNTH_W
    cyan = (20, 210, 230)
    l_shape = rect(h, w, 80, 40, 130, 200) | rect(h, w, 80, 150, 240, 200)
    ring = disc(h, w, (160, 120), 80) & ~disc(h, w, (160, 120), 45)
    bar = np.zeros((h, w), np.uint8)
    corners = cv2.boxPoints(((160.0, 120.0), (260.0, 36.0), 35.0))
    cv2.fillPoly(bar, [np.round(corners).astype(np.int32)], 1)
    disc_obj = disc(h, w, (110, 120), 55)
    neighbour = rect(h, w, 150, 50, 260, 190) & ~disc_obj  # touches the disc, inside its box's right strip
    scenes = [
        ("L_shape", l_shape, None),
        ("ring", ring, None),
        ("diagonal_bar", bar.astype(bool), None),
        ("disc_next_to_rect", disc_obj, neighbour),
    ]
    out = []
    for i, (name, ref, other) in enumerate(scenes):
        img = photo_like(h, w, seed=seed * 100 + 10 + i)
        if other is not None:
            img = paint(img, other, cyan, rng)
        img = paint(img, ref, distinct_colour(img, ref), rng)
        out.append(Target(f"synthetic:{name}", "synthetic", img, rough_outline(ref, rng), ref))
    return out


def preset_targets(rng: np.random.Generator) -> list[Target]:
    """The examples with a box: their image and a synthetic polygon (jittered inscribed ellipse), no reference."""
    presets = json.loads((REPO / "examples" / "presets.json").read_text())
    out = []
    for p in presets:
        if not p.get("box"):
            continue
        rgb = load_image(REPO / "examples" / p["file"]).rgb
        out.append(Target(f"preset:{p['file']}", "preset", rgb, ellipse_polygon(p["box"], rng), None))
    return out


def r4(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def evaluate(seg: Segmenter, t: Target) -> dict[str, Any]:
    """Decode the three prompt kinds on ``t`` and measure the best candidate's IoUs."""
    h, w = t.rgb.shape[:2]
    size = ImageSize(w, h)
    own = raster(t.vertices, h, w)
    pp_in = polygon_to_prompts(t.vertices.tolist(), size, n_inside=3, n_outside=0)
    pp_out = polygon_to_prompts(t.vertices.tolist(), size, n_inside=3, n_outside=1)
    assert pp_in.box == pp_out.box
    box = pp_in.box
    prompts = {"box": Prompts((), box), "polygon": pp_in.prompts(), "polygon_out": pp_out.prompts()}
    t0 = time.perf_counter()
    emb, _ = seg.embed(t.rgb)
    encode_ms = (time.perf_counter() - t0) * 1000
    row: dict[str, Any] = {
        "object": t.name,
        "source": t.source,
        "image_size": [w, h],
        "synthetic_polygon": True,
        "vertices": len(t.vertices),
        "box": [round(float(b), 2) for b in box],
        "polygon_area_px": int(own.sum()),
        "reference_area_px": None if t.reference is None else int(t.reference.sum()),
        "polygon_iou_ref": None if t.reference is None else r4(iou(own, t.reference)),
        "box_iou_ref": None if t.reference is None else r4(iou(box_raster(box, h, w), t.reference)),
        "box_iou_polygon": r4(iou(box_raster(box, h, w), own)),
        "encode_ms": round(encode_ms, 1),
        "kinds": {},
    }
    for kind, pr in prompts.items():
        res = seg.decode(emb, pr, multimask=True)
        best = res.best_index
        mask = res.full_mask(best)
        row["kinds"][kind] = {
            "points": [[round(x, 1), round(y, 1), int(lab)] for x, y, lab in pr.points],
            "score": r4(res.scores[best]),
            "mask_area_px": int(mask.sum()),
            "iou_ref": None if t.reference is None else r4(iou(mask, t.reference)),
            "iou_polygon": r4(iou(mask, own)),
        }
    return row


def fmt(x: float | None) -> str:
    return "   -  " if x is None else f"{x:6.3f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="test-tiny", help="vit_b | vit_l | vit_h | test-tiny (default)")
    ap.add_argument("--checkpoint", default=None, help="weights file (default: the model's resolved checkpoint)")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto (default cpu)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the polygon jitter and the scenes (default 0)")
    ap.add_argument("--json-out", default=None, help="also write the JSON object to this file")
    args = ap.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, flush=True)

    load_start = round(os.getloadavg()[0], 2)
    t_start = time.perf_counter()
    seg = Segmenter.from_pretrained(args.model, args.checkpoint, device=args.device, progress=False)
    tiny = args.model == "test-tiny"
    note = (NOTE_TINY + " " if tiny else "") + NOTE_REAL
    rng = np.random.default_rng(args.seed)
    targets = preset_targets(rng) + synthetic_targets(rng, args.seed)
    log(f"model {args.model} on {args.device}, torch {torch.__version__}, seed {args.seed}")
    if tiny:
        log("WARNING: " + NOTE_TINY)
    log(
        "Preset polygons are SYNTHETIC (box's inscribed ellipse, 12 vertices jittered +-5 %): reference = the "
        "polygon's own raster. Synthetic scenes: true reference; polygon = approxPolyDP (3 %) jittered +-3 px."
    )
    rows = [evaluate(seg, t) for t in targets]

    log("")
    log(f"{'object':30s} {'poly/ref':>8s} {'box/ref':>8s}  kind         score  IoU ref  IoU poly  points")
    for r in rows:
        for i, kind in enumerate(KINDS):
            k = r["kinds"][kind]
            head = (
                f"{r['object']:30s} {fmt(r['polygon_iou_ref']):>8s} {fmt(r['box_iou_ref']):>8s}" if i == 0 else " " * 48
            )
            log(
                f"{head}  {kind:11s} {fmt(k['score'])}  {fmt(k['iou_ref'])}   {fmt(k['iou_polygon'])}  "
                f"{len(k['points'])}"
            )

    def mean(values: list[float | None]) -> float | None:
        vals = [v for v in values if v is not None]
        return r4(float(np.mean(vals))) if vals else None

    means: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        means[kind] = {
            "iou_ref_synthetic": mean([r["kinds"][kind]["iou_ref"] for r in rows]),
            "iou_polygon_all": mean([r["kinds"][kind]["iou_polygon"] for r in rows]),
            "iou_polygon_presets": mean([r["kinds"][kind]["iou_polygon"] for r in rows if r["source"] == "preset"]),
            "score": mean([r["kinds"][kind]["score"] for r in rows]),
        }
    polygon_iou_ref = mean([r["polygon_iou_ref"] for r in rows])
    box_iou_ref = mean([r["box_iou_ref"] for r in rows])
    log("")
    log(
        f"means ({len(rows)} objects; IoU ref over the {sum(r['reference_area_px'] is not None for r in rows)} "
        "synthetic scenes):"
    )
    log(f"  the polygon's raster vs reference: {fmt(polygon_iou_ref)}   filled box vs reference: {fmt(box_iou_ref)}")
    for kind in KINDS:
        m = means[kind]
        log(
            f"  {kind:11s} IoU ref {fmt(m['iou_ref_synthetic'])}  IoU poly (all) {fmt(m['iou_polygon_all'])}  "
            f"IoU poly (presets) {fmt(m['iou_polygon_presets'])}  score {fmt(m['score'])}"
        )
    log("NOTE: " + note)

    result = {
        "benchmark": "polygon_prompt",
        "model": args.model,
        "device": args.device,
        "seed": args.seed,
        "note": note,
        "random_weights": tiny,
        "kinds": {
            "box": "the polygon's bounding box alone",
            "polygon": "polygon_to_prompts(n_inside=3, n_outside=0): box + inside points",
            "polygon_out": "polygon_to_prompts(n_inside=3, n_outside=1): box + inside points + 1 outside point",
        },
        "polygons": {
            "preset": f"synthetic: inscribed ellipse of the preset box, {ELLIPSE_VERTICES} vertices, "
            f"uniform jitter +-{PRESET_JITTER:.0%} of box width/height; reference = the polygon's own raster",
            "synthetic": f"cv2.approxPolyDP of the reference contour, epsilon {SYNTH_EPSILON:.0%} of the perimeter, "
            f"uniform jitter +-{SYNTH_JITTER_PX:g} px; reference = the true mask",
        },
        "objects": rows,
        "means": means,
        "polygon_iou_ref_mean": polygon_iou_ref,
        "box_iou_ref_mean": box_iou_ref,
        "total_s": round(time.perf_counter() - t_start, 1),
        **machine_info(load_start),
    }
    emit_json(result, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
