"""A tiny hand-made study for tests/test_batch.py: images, prompts (JSON, CSV, list), PNG and COCO references.

Images are small (96x128 and 80x100 px): test-tiny always encodes at 1024 px, so the cost is
the same, and the decoder's upsampling stays cheap. Reference masks are drawn with OpenCV, so
each object's true mask is known exactly.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from synth import disc, photo_like, rect, uncompressed_rle

from sam_core.core.geometry import rle_encode

H, W = 96, 128  # a.png, b.png
HC, WC = 80, 100  # c.jpg


@dataclass
class StudyData:
    root: Path
    img: Path
    refs: Path
    coco: Path
    prompts_json: Path
    prompts_csv: Path
    list_file: Path
    masks: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # (image, object) -> reference


def make_study_data(root: Path) -> StudyData:
    img, refs = root / "img", root / "refs"
    img.mkdir(parents=True)
    refs.mkdir()
    Image.fromarray(photo_like(H, W, seed=1)).save(img / "a.png")
    Image.fromarray(photo_like(H, W, seed=2)).save(img / "b.png")
    Image.fromarray(photo_like(HC, WC, seed=3)).save(img / "c.jpg", quality=95)

    a1 = disc(H, W, (60, 45), 22)
    b1 = disc(H, W, (40, 50), 18)
    b2 = rect(H, W, 80, 20, 120, 70)
    c1 = rect(HC, WC, 20, 15, 70, 60)
    Image.fromarray(a1.astype(np.uint8) * 255).save(refs / "a.png")  # binary 0/255 -> object "1"
    Image.fromarray(b1.astype(np.uint8) * 1 + b2.astype(np.uint8) * 2).save(refs / "b.png")  # label map 1, 2
    Image.fromarray(np.repeat(c1[..., None], 3, axis=2).astype(np.uint8) * 200).save(refs / "c.png")  # RGB
    masks = {("a.png", "1"): a1, ("b.png", "1"): b1, ("b.png", "2"): b2, ("c.jpg", "1"): c1}

    # COCO: a polygon on a.png, compressed + uncompressed RLE on b.png, one crowd annotation (skipped).
    coco = {
        "images": [
            {"id": 1, "file_name": "subdir/a.png", "width": W, "height": H},
            {"id": 2, "file_name": "b.png", "width": W, "height": H},
        ],
        "categories": [{"id": 7, "name": "disc"}, {"id": 8, "name": "block"}],
        "annotations": [
            {"id": 11, "image_id": 1, "category_id": 8, "iscrowd": 0,
             "segmentation": [[30.0, 20.0, 90.0, 20.0, 90.0, 70.0, 30.0, 70.0]]},
            {"id": 21, "image_id": 2, "category_id": 7, "iscrowd": 0, "segmentation": rle_encode(b1)},
            {"id": 22, "image_id": 2, "category_id": 8, "iscrowd": 0,
             "segmentation": {"size": [H, W], "counts": uncompressed_rle(b2)}},
            {"id": 23, "image_id": 2, "category_id": 8, "iscrowd": 1, "segmentation": rle_encode(b2)},
        ],
    }
    coco_path = root / "instances.json"
    coco_path.write_text(json.dumps(coco))
    masks[("a.png", "11")] = rect(H, W, 30, 20, 91, 71)  # the polygon as pycocotools rasterises it (approx.)
    masks[("b.png", "21")] = b1
    masks[("b.png", "22")] = b2

    objects = {
        "a.png": [{"box": [36, 22, 84, 68]}],
        "b.png": [{"box": [20, 30, 60, 70], "points": [[40, 50, 1]]}, {"id": "2", "box": [78, 18, 122, 72]}],
        "c.jpg": [{"points": [[45, 37, 1], [90, 70, 0]], "box": [18, 12, 72, 62]}],
    }
    prompts_json = root / "prompts.json"
    prompts_json.write_text(json.dumps({k: v if len(v) > 1 else v[0] for k, v in objects.items()}))
    prompts_csv = root / "prompts.csv"
    with open(prompts_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "x1", "y1", "x2", "y2", "points"])
        for name, objs in objects.items():
            for o in objs:
                w.writerow([name, *o.get("box", ["", "", "", ""]), json.dumps(o["points"]) if "points" in o else ""])
    list_file = root / "images.txt"
    list_file.write_text("# the study's images\nimg/c.jpg\nimg/a.png\n\nimg/b.png\n")
    return StudyData(root, img, refs, coco_path, prompts_json, prompts_csv, list_file, masks)
