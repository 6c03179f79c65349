"""Make the approximate reference masks of docs/studies/refs/ from the boxes in boxes.csv.

    python docs/studies/make_references.py

The bundled examples have no hand-drawn ground truth, so these references are OpenCV GrabCut
segmentations initialised with each box (5 iterations), cleaned to their largest component with
holes filled. They are good enough to exercise evaluation, the points and clicks experiments and
to compare models; they are not ground truth. The coffee object is the cup's top (white rim and
coffee): the cup's red body has the saucer's colour, which GrabCut cannot separate.
Deterministic: GrabCut's GMM initialisation uses OpenCV's RNG, seeded here.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parents[1] / "examples"


def grabcut(rgb: np.ndarray, box: Sequence[int]) -> np.ndarray:
    """(H, W) bool: GrabCut in ``box`` (x1, y1, x2, y2), largest component, holes filled."""
    cv2.setRNGSeed(0)
    mask = np.zeros(rgb.shape[:2], np.uint8)
    x1, y1, x2, y2 = box
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(
        cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), mask, (x1, y1, x2 - x1, y2 - y1), bgd, fgd, 5, cv2.GC_INIT_WITH_RECT
    )
    fg = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if n > 1:
        fg = (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    contours, _ = cv2.findContours(fg, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    filled = np.zeros_like(fg)
    cv2.drawContours(filled, contours, -1, 1, cv2.FILLED)
    return filled.astype(bool)


def main() -> None:
    out = HERE / "refs"
    out.mkdir(exist_ok=True)
    with open(HERE / "boxes.csv", newline="") as f:
        for row in csv.DictReader(f):
            rgb = np.asarray(Image.open(EXAMPLES / row["image"]).convert("RGB"))
            box = [int(row[k]) for k in ("x1", "y1", "x2", "y2")]
            mask = grabcut(rgb, box)
            Image.fromarray(mask.astype(np.uint8) * 255).save(out / f"{Path(row['image']).stem}.png", optimize=True)
            print(f"{row['image']}: {int(mask.sum())} px")


if __name__ == "__main__":
    main()
