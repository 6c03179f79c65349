"""Segment everything: SAM's automatic mask generator on the Segmenter's cached embedding.

:func:`segment_everything` runs ``segment_anything.SamAutomaticMaskGenerator`` itself (its grid,
filters, NMS, crops and small-region postprocessing) with two changes in *where the image
embeddings come from*, none in the maths:

* the full image's embedding is the Segmenter's cached one (``Segmenter.embed``): with
  ``crop_n_layers == 0`` and a cached image the image encoder does not run at all;
* every sub-crop (``crop_n_layers > 0``) is encoded with ``Segmenter.encode`` (under the
  encoder lock, counted in ``Segmenter.encoder_runs``, never put in the cache).

The prompt encoder + mask decoder run under ``Segmenter._decoder_lock`` (one point batch at a
time, so a click in between waits for at most one batch). For the same weights in fp32 the
masks equal ``SamAutomaticMaskGenerator(sam, same settings).generate(rgb)`` (output mode
``binary_mask``); the tests check it mask by mask.

Coordinates: full-image pixels, x right, y down; masks are (H, W) bool; boxes half-open
``(x1, y1, x2, y2)``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from segment_anything import SamAutomaticMaskGenerator, SamPredictor
from segment_anything.utils.amg import MaskData, generate_crop_boxes

from sam_core.core.errors import UserError
from sam_core.core.geometry import bbox_tuple
from sam_core.core.images import check_image
from sam_core.core.sizes import ImageSize
from sam_core.model.segmenter import Embedding, Segmenter

__all__ = [
    "DEFAULT_UPSAMPLE_MS_PER_MPX",
    "MAX_BATCH_LOGIT_BYTES",
    "SAM_FRAME_MPX",
    "EverythingResult",
    "EverythingSettings",
    "Region",
    "decode_ms_per_point",
    "effective_points_per_batch",
    "estimate_ms",
    "segment_everything",
]

Progress = Callable[[float, str], None]

# SAM's generator upsamples 3 float32 logit masks per point to the crop's full resolution at
# once: points_per_batch x 3 x H x W x 4 bytes (64 points on a 20 MP image = 15 GB). The batch
# is made smaller so that this stays under the device's budget (peak memory is ~2-3x it). On a
# CPU small batches are also faster per point (2-core VM, 20 MP, SAM's upsampling + filters with
# every mask kept: ~0.57 s a point in batches of 1, ~0.75 s in batches of 4), so its budget is small.
MAX_BATCH_LOGIT_BYTES = {"cuda": 2 << 30, "cpu": 256 << 20}
# SAM's work after the decoder for one point, per megapixel: its 3 masks are upsampled to the
# 1024x1024 padded frame (SAM_FRAME_MPX), then to the crop's size, then filtered. ~8 ms per MP on
# a 2-core CPU VM (torch 2.14 CPU, one point per batch, 20 MP: ~230 ms a point in all with the
# decoder's ~55 ms; benchmarks/everything.py), measured with test-tiny, whose masks all fail the
# IoU filter; masks that pass it add the stability score, boxes and RLE. Used by estimate_ms.
DEFAULT_UPSAMPLE_MS_PER_MPX = 8.0
SAM_FRAME_MPX = 1024 * 1024 / 1e6
CROP_OVERLAP_RATIO = 512 / 1500  # SamAutomaticMaskGenerator's default


@dataclass(frozen=True)
class EverythingSettings:
    """The generator's settings (names and defaults of ``SamAutomaticMaskGenerator``).

    ``min_mask_region_area`` is in full-image pixels (> 0 runs the generator's own hole/island
    removal); ``crop_n_layers`` > 0 also runs the grid on 4, (4 + 16) crops, each encoded.
    Raises :class:`UserError` for values out of range.
    """

    points_per_side: int = 32  # 4..64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    min_mask_region_area: int = 0
    crop_n_layers: int = 0  # 0..2
    points_per_batch: int = 64
    box_nms_thresh: float = 0.7

    def __post_init__(self) -> None:
        checks = [
            (4 <= self.points_per_side <= 64, f"points per side must be 4 to 64, not {self.points_per_side}"),
            (0.0 <= self.pred_iou_thresh <= 1.0, f"the IoU threshold must be 0 to 1, not {self.pred_iou_thresh}"),
            (
                0.0 <= self.stability_score_thresh <= 1.0,
                f"the stability threshold must be 0 to 1, not {self.stability_score_thresh}",
            ),
            (self.min_mask_region_area >= 0, f"the minimum region area must be >= 0, not {self.min_mask_region_area}"),
            (0 <= self.crop_n_layers <= 2, f"crop layers must be 0, 1 or 2, not {self.crop_n_layers}"),
            (self.points_per_batch >= 1, f"points per batch must be >= 1, not {self.points_per_batch}"),
            (0.0 <= self.box_nms_thresh <= 1.0, f"the NMS threshold must be 0 to 1, not {self.box_nms_thresh}"),
        ]
        bad = [msg for ok, msg in checks if not ok]
        if bad:
            raise UserError("Segment everything: " + "; ".join(bad) + ".")

    def generator_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``SamAutomaticMaskGenerator`` for these settings."""
        return {
            "points_per_side": self.points_per_side,
            "points_per_batch": self.points_per_batch,
            "pred_iou_thresh": self.pred_iou_thresh,
            "stability_score_thresh": self.stability_score_thresh,
            "box_nms_thresh": self.box_nms_thresh,
            "crop_n_layers": self.crop_n_layers,
            "min_mask_region_area": self.min_mask_region_area,
            "output_mode": "binary_mask",
        }


@dataclass(frozen=True)
class Region:
    """One mask of the result, in full-image pixels.

    ``mask`` (H, W) bool; ``bbox`` half-open (x1, y1, x2, y2), (0, 0, 0, 0) for an empty mask;
    ``point`` (x, y): the grid point that produced it (a foreground prompt that gives it back);
    ``crop_box`` half-open (x1, y1, x2, y2): the crop it was predicted in.
    """

    mask: np.ndarray
    area: int
    bbox: tuple[int, int, int, int]
    predicted_iou: float
    stability_score: float
    point: tuple[float, float]
    crop_box: tuple[int, int, int, int]


@dataclass(frozen=True)
class EverythingResult:
    """All regions of one run, largest first.

    ``timings``: ``total_ms``, ``encode_ms`` (0 when the cached embedding was used and there
    are no crops), ``decode_ms`` (the rest), ``crops`` (crop boxes, full image included),
    ``encoder_runs`` (image-encoder runs of this call), ``points`` (grid points decoded),
    ``points_per_batch`` (the batch used, see :data:`MAX_BATCH_LOGIT_BYTES`).
    """

    regions: tuple[Region, ...]
    size: ImageSize
    timings: dict[str, float]
    settings: EverythingSettings

    def label_map(self) -> np.ndarray:
        """(H, W) uint16: ``i + 1`` where region ``i``'s mask is, 0 elsewhere. Regions are painted
        in order (largest first), so a smaller region is drawn over the larger ones it overlaps."""
        if len(self.regions) > np.iinfo(np.uint16).max:
            raise ValueError(f"{len(self.regions)} regions do not fit a uint16 label map")
        labels = np.zeros(self.size.hw, np.uint16)
        for i, region in enumerate(self.regions):
            labels[region.mask] = i + 1
        return labels


class _EmbeddingPredictor(SamPredictor):
    """A SamPredictor whose image state is set from an :class:`Embedding` instead of by
    running the encoder, and whose prompt encoder + mask decoder run under the decoder lock."""

    def __init__(self, seg: Segmenter) -> None:
        super().__init__(seg.model)
        self._lock = seg._decoder_lock
        self._preset_hw: tuple[int, int] | None = None

    def use_embedding(self, emb: Embedding) -> None:
        """Exactly the state ``set_torch_image`` leaves, with ``emb``'s features (not copied,
        never written to)."""
        self.reset_image()
        self.original_size = emb.image_size.hw  # (H, W) of the image (or crop)
        self.input_size = emb.input_size.hw  # (h, w) after the resize to a long side of 1024
        self.features = emb.features
        self.is_image_set = True
        self._preset_hw = emb.image_size.hw

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Called by the generator's ``_process_crop``: the features are already set."""
        if self._preset_hw != tuple(image.shape[:2]) or not self.is_image_set:
            raise RuntimeError("segment_everything: no embedding was set for this crop")  # a bug, not a user error
        self._preset_hw = None

    def predict_torch(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``SamPredictor.predict_torch``, op for op, with the shared prompt encoder + mask decoder
        under the Segmenter's decoder lock and the (large) upsampling to the crop's size outside it."""
        if not self.is_image_set:
            raise RuntimeError("An image must be set with .set_image(...) before mask prediction.")
        points = (point_coords, point_labels) if point_coords is not None else None
        with self._lock:
            sparse, dense = self.model.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
            low_res_masks, iou_predictions = self.model.mask_decoder(
                image_embeddings=self.features,
                image_pe=self.model.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask_output,
            )
        masks = self.model.postprocess_masks(low_res_masks, self.input_size, self.original_size)
        if not return_logits:
            masks = masks > self.model.mask_threshold
        return masks, iou_predictions, low_res_masks


class _Run(SamAutomaticMaskGenerator):
    """SamAutomaticMaskGenerator with the embeddings of :mod:`sam_core.model.everything`:
    ``_process_crop`` sets the predictor from the cached full-image embedding or a fresh crop
    encode, then runs the generator's own ``_process_crop``; progress is reported per crop
    and per point batch."""

    def __init__(
        self,
        seg: Segmenter,
        settings: EverythingSettings,
        full: Embedding,
        image_key: str,
        points_per_batch: int,
        report: Progress,
    ) -> None:
        super().__init__(seg.model, **{**settings.generator_kwargs(), "points_per_batch": points_per_batch})
        self.predictor: _EmbeddingPredictor = _EmbeddingPredictor(seg)
        self.seg = seg
        self.full = full
        self.image_key = image_key
        self.report = report
        w, h = full.image_size
        self.crop_boxes, self.layer_idxs = generate_crop_boxes((h, w), self.crop_n_layers, self.crop_overlap_ratio)
        self.batches = [math.ceil(len(self.point_grids[i]) / points_per_batch) for i in self.layer_idxs]
        # Progress fraction = work units done / all: 1 per point batch, about half a crop's batches per crop
        # encode, 1 for the end (small-region removal, the binary masks).
        encode_units = max(1, round(sum(self.batches) / max(1, len(self.crop_boxes)) / 2))
        self.encode_units = encode_units
        self.total_units = sum(self.batches) + encode_units * (len(self.crop_boxes) - 1) + 1  # +1: finishing
        self.done_units = 0
        self.crop_index = 0
        self.batch_index = 0
        self.encode_ms = 0.0
        self.encoder_runs = 0

    def _fraction(self) -> float:
        return min(1.0, self.done_units / self.total_units)

    def _process_crop(
        self, image: np.ndarray, crop_box: list[int], crop_layer_idx: int, orig_size: tuple[int, ...]
    ) -> MaskData:
        n = len(self.crop_boxes)
        self.crop_index += 1
        self.batch_index = 0
        h, w = orig_size[:2]
        if list(crop_box) == [0, 0, w, h]:
            emb = self.full
        else:
            x0, y0, x1, y1 = crop_box
            self.report(self._fraction(), f"encoding crop {self.crop_index}/{n}…")
            t0 = time.perf_counter()
            crop = np.ascontiguousarray(image[y0:y1, x0:x1])
            emb = self.seg.encode(crop, image_key=f"{self.image_key}:crop:{x0},{y0},{x1},{y1}")
            self.encode_ms += (time.perf_counter() - t0) * 1000
            self.encoder_runs += 1
            self.done_units += self.encode_units
        self.predictor.use_embedding(emb)
        data = super()._process_crop(image, crop_box, crop_layer_idx, orig_size)
        if len(data["rles"]) == 0:  # SAM leaves a (0,) tensor here, and its crop NMS fails when all crops are empty
            data["crop_boxes"] = torch.zeros((0, 4), dtype=torch.int64)
        return data

    def _process_batch(
        self, points: np.ndarray, im_size: tuple[int, ...], crop_box: list[int], orig_size: tuple[int, ...]
    ) -> MaskData:
        data = super()._process_batch(points, im_size, crop_box, orig_size)
        self.batch_index += 1
        self.done_units += 1
        n = len(self.crop_boxes)
        where = f"crop {self.crop_index}/{n}, " if n > 1 else ""
        self.report(self._fraction(), f"{where}point batch {self.batch_index}/{self.batches[self.crop_index - 1]}")
        return data

    def postprocess_small_regions(self, mask_data: MaskData, min_area: int, nms_thresh: float) -> MaskData:
        self.report(self._fraction(), "removing small regions and holes…")
        return SamAutomaticMaskGenerator.postprocess_small_regions(mask_data, min_area, nms_thresh)


def effective_points_per_batch(settings: EverythingSettings, size: ImageSize, device: torch.device) -> int:
    """``settings.points_per_batch``, made smaller when one batch's full-resolution logits
    (points x 3 x H x W float32) would pass :data:`MAX_BATCH_LOGIT_BYTES` of ``device``'s type."""
    budget = MAX_BATCH_LOGIT_BYTES.get(device.type, MAX_BATCH_LOGIT_BYTES["cpu"])
    return int(min(settings.points_per_batch, max(1, budget // (3 * 4 * size.pixels))))


def _region(ann: dict[str, Any]) -> Region:
    mask = np.asarray(ann["segmentation"], dtype=bool)
    x, y, w, h = (int(v) for v in ann["crop_box"])
    (px, py) = ann["point_coords"][0]
    return Region(
        mask=mask,
        area=int(ann["area"]),
        bbox=bbox_tuple(mask) or (0, 0, 0, 0),
        predicted_iou=float(ann["predicted_iou"]),
        stability_score=float(ann["stability_score"]),
        point=(float(px), float(py)),
        crop_box=(x, y, x + w, y + h),
    )


def segment_everything(
    seg: Segmenter,
    rgb: np.ndarray,
    *,
    image_key: str | None = None,
    settings: EverythingSettings = EverythingSettings(),
    progress: Progress | None = None,
    embedding: Embedding | None = None,
) -> EverythingResult:
    """Every region SAM's automatic mask generator finds in ``rgb`` (H, W, 3) uint8.

    The full image's embedding comes from ``seg``'s cache (encoded once if it is not there);
    crops are encoded fresh. ``image_key``: the image's content hash when the caller has it.
    ``progress(fraction 0..1, message)`` is called per crop and per point batch, and with 1.0
    at the end. Runs on ``seg``'s device in inference mode. ``embedding``: the full image's
    embedding to use instead of ``seg``'s cache; its ``image_size`` must be ``rgb``'s (the app
    passes a large image's embedding with the preview's size: the same 1024-px encoder input,
    masks made at the preview size).

    In fp32 the masks equal ``SamAutomaticMaskGenerator(seg.model, same settings).generate(rgb)``
    sorted by area, with two differences: a point batch whose full-resolution logits would pass
    :data:`MAX_BATCH_LOGIT_BYTES` is made smaller (``timings["points_per_batch"]``; large images
    only), and a run where no crop keeps a mask returns no regions where SAM's generator fails.
    """
    check_image(rgb)
    report: Progress = progress or (lambda _f, _m: None)
    t0 = time.perf_counter()
    report(0.0, "embedding the image…")
    if embedding is not None:
        if embedding.image_size != ImageSize.of(rgb):
            raise ValueError(f"the embedding is for a {embedding.image_size} image, not {ImageSize.of(rgb)}")
        emb, hit = embedding, True
    else:
        emb, hit = seg.embed(rgb, image_key=image_key)
    encode_ms = 0.0 if hit else (time.perf_counter() - t0) * 1000
    full_runs = 0 if hit else 1  # embed() encoded it (a stored embedding counts as a hit)
    size = ImageSize.of(rgb)
    batch = effective_points_per_batch(settings, size, seg.device)
    run = _Run(seg, settings, emb, emb.key, batch, report)
    with seg._guard_oom(), torch.inference_mode():  # CUDA out of memory -> ResourceError
        anns = run.generate(rgb)
    regions = sorted((_region(a) for a in anns), key=lambda r: -r.area)  # stable: ties keep SAM's order
    total_ms = (time.perf_counter() - t0) * 1000
    encode_ms += run.encode_ms
    timings = {
        "total_ms": round(total_ms, 2),
        "encode_ms": round(encode_ms, 2),
        "decode_ms": round(total_ms - encode_ms, 2),
        "crops": float(len(run.crop_boxes)),
        "encoder_runs": float(full_runs + run.encoder_runs),
        "points": float(sum(len(run.point_grids[i]) for i in run.layer_idxs)),
        "points_per_batch": float(batch),
    }
    report(1.0, f"{len(regions)} regions")
    return EverythingResult(tuple(regions), size, timings, settings)


def _crop_sizes(settings: EverythingSettings, size: ImageSize) -> list[ImageSize]:
    boxes, _ = generate_crop_boxes(size.hw, settings.crop_n_layers, CROP_OVERLAP_RATIO)
    return [ImageSize(x1 - x0, y1 - y0) for x0, y0, x1, y1 in boxes]


def estimate_ms(
    settings: EverythingSettings,
    size: ImageSize,
    *,
    decode_ms_per_point: float,
    encode_ms: float,
    upsample_ms_per_mpx: float = DEFAULT_UPSAMPLE_MS_PER_MPX,
) -> float:
    """A quick estimate (ms) of :func:`segment_everything` shown before a run, not a measurement.

    For each crop (the full image, then 4 / 4 + 16 sub-crops): ``points_per_side²`` grid points
    x (``decode_ms_per_point``: the batched prompt encoder + mask decoder per point, see
    :func:`decode_ms_per_point`, + ``upsample_ms_per_mpx`` x (the crop's megapixels + the 1 MP
    of SAM's 1024x1024 frame): SAM upsamples 3 masks per point to that frame, then to the crop's
    size), plus ``encode_ms`` per sub-crop. The full image's embedding is taken as cached.
    Per-region work (stability score, RLE, NMS, binary masks) is left out.
    """
    crops = _crop_sizes(settings, size)
    points = settings.points_per_side**2
    per_point = [decode_ms_per_point + upsample_ms_per_mpx * (c.pixels / 1e6 + SAM_FRAME_MPX) for c in crops]
    return float(points * sum(per_point) + encode_ms * (len(crops) - 1))


def decode_ms_per_point(seg: Segmenter, *, points: int = 64, repeats: int = 2) -> float:
    """The prompt encoder + mask decoder's cost per point (ms) in a batch of ``points`` single-point
    prompts on ``seg``'s device (no upsampling): the fastest of ``repeats`` timed runs after a
    warm-up, on a zero embedding. Input for :func:`estimate_ms`."""
    model = seg.model
    dev = seg.device
    features = torch.zeros((1, *seg._dense_pe.shape[1:]), device=dev)
    coords = torch.rand(points, 1, 2, device=dev) * 1024
    labels = torch.ones(points, 1, dtype=torch.int, device=dev)
    best = math.inf
    with torch.inference_mode():
        for i in range(repeats + 1):
            t0 = time.perf_counter()
            with seg._decoder_lock:
                sparse, dense = model.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
                model.mask_decoder(
                    image_embeddings=features,
                    image_pe=seg._dense_pe,
                    sparse_prompt_embeddings=sparse,
                    dense_prompt_embeddings=dense,
                    multimask_output=True,
                )
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            if i:
                best = min(best, (time.perf_counter() - t0) * 1000)
    return best / points
