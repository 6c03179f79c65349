"""What the decoder returns, and how its low-resolution logits become masks.

Frames: ``low_res_logits`` live in SAM's padded 1024-px input frame at 256x256; masks are
``(N, H, W)`` bool at full image resolution (or at a preview size of the same aspect).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from sam_core.core.sizes import ImageSize

LOW_RES = 256  # side of SAM's low-resolution mask logits


def upsample_logits(
    logits: np.ndarray,
    input_size: ImageSize,
    out_size: ImageSize,
    *,
    threshold: float = 0.0,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """(N, 256, 256) logits -> (N, out H, out W) bool, exactly like ``Sam.postprocess_masks``.

    Step 1: bilinear to 1024x1024 and crop the padding to ``input_size``; step 2: bilinear
    to ``out_size`` (the full image size gives SamPredictor's masks; a smaller size of the
    same aspect gives a preview without building the full-resolution mask).
    """
    with torch.inference_mode():
        t = torch.as_tensor(np.ascontiguousarray(logits, dtype=np.float32), device=device)[None]
        t = F.interpolate(t, (1024, 1024), mode="bilinear", align_corners=False)
        t = t[..., : input_size.height, : input_size.width]
        t = F.interpolate(t, out_size.hw, mode="bilinear", align_corners=False)
        out: np.ndarray = (t[0] > threshold).cpu().numpy()
        return out


@dataclass(frozen=True)
class SegmentResult:
    """Candidates for one prompt set; masks are computed on demand from the logits.

    ``scores``: (N,) predicted IoU; ``low_res_logits``: (N, 256, 256) float32. N = 3 with
    multimask, else 1. ``timings``: ``encode_ms``, ``decode_ms``, ``cache_hit``.
    """

    scores: np.ndarray
    low_res_logits: np.ndarray
    image_size: ImageSize
    input_size: ImageSize
    timings: dict[str, Any]
    mask_threshold: float = 0.0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def best_index(self) -> int:
        return int(np.argmax(self.scores))

    @functools.cached_property
    def masks(self) -> np.ndarray:
        """(N, H, W) bool at full image resolution (computed once, on first access)."""
        return self.preview_masks(self.image_size)

    def full_mask(self, index: int, threshold: float | None = None) -> np.ndarray:
        """(H, W) bool mask of one candidate at full resolution, without the other two."""
        thr = self.mask_threshold if threshold is None else threshold
        if "masks" in self.__dict__ and thr == self.mask_threshold:  # already computed
            return self.masks[index]
        return upsample_logits(
            self.low_res_logits[index : index + 1], self.input_size, self.image_size, threshold=thr, device=self.device
        )[0]

    def small_masks(self, size: ImageSize, threshold: float | None = None) -> np.ndarray:
        """(N, h, w) bool masks at a small ``size`` (thumbnails), in ONE bilinear step from the
        image's region of the 256x256 logits: no 1024x1024 intermediate, so about 0.1 ms instead
        of :meth:`preview_masks`' few ms; the outline may differ from it by about a pixel."""
        thr = self.mask_threshold if threshold is None else threshold
        cw = max(1, round(self.input_size.width * LOW_RES / 1024))  # the image's part of the padded frame
        ch = max(1, round(self.input_size.height * LOW_RES / 1024))
        region = np.ascontiguousarray(self.low_res_logits[:, :ch, :cw], dtype=np.float32)
        out = [cv2.resize(m, (size.width, size.height), interpolation=cv2.INTER_LINEAR) > thr for m in region]
        return np.stack(out)

    def preview_masks(self, size: ImageSize, threshold: float | None = None) -> np.ndarray:
        """(N, h, w) bool masks at ``size`` (same aspect ratio as the image)."""
        thr = self.mask_threshold if threshold is None else threshold
        return upsample_logits(self.low_res_logits, self.input_size, size, threshold=thr, device=self.device)
