"""The Segmenter: one SAM model, one lock, a shared embedding cache, and mask upsampling.

Coordinates are full-image pixels (x right, y down); images are (H, W, 3) uint8 RGB.
For the same weights in fp32, ``Segmenter.segment`` returns exactly what
``segment_anything.SamPredictor.predict(..., multimask_output=True)`` returns: the image is
resized with the same PIL bilinear resize, prompts go through the same transforms, and the
full-resolution masks are upsampled by the same two bilinear steps.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide

from sam_core.core.cache import LRUCache
from sam_core.model.weights import resolve_checkpoint
from sam_core.core.errors import ResourceError
from sam_core.core.images import image_hash
from sam_core.model.build import TEST_TINY, Placement, build_model, enable_sdpa, resolve_placement
from sam_core.core.prompts import Prompts

log = logging.getLogger(__name__)

LOW_RES = 256  # side of SAM's low-resolution mask logits


@dataclass(frozen=True)
class Embedding:
    """Image-encoder output for one image. ``features``: (1, 256, 64, 64) float32 on device."""

    key: str
    features: torch.Tensor
    original_size: tuple[int, int]  # (H, W) of the full image
    input_size: tuple[int, int]  # (h, w) after the resize to a long side of 1024
    encode_ms: float

    @property
    def nbytes(self) -> int:
        return self.features.numel() * self.features.element_size()


@dataclass
class SegmentResult:
    """Candidates for one prompt set. Masks are computed on demand from the logits.

    ``scores``: (N,) predicted IoU; ``low_res_logits``: (N, 256, 256) float32 in SAM's padded
    1024-px input frame. N = 3 with multimask, else 1.
    """

    scores: np.ndarray
    low_res_logits: np.ndarray
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    timings: dict[str, Any]
    mask_threshold: float = 0.0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    _masks: np.ndarray | None = field(default=None, repr=False)
    _preview: tuple[tuple, np.ndarray] | None = field(default=None, repr=False)
    memo: dict[str, Any] = field(default_factory=dict, repr=False)  # callers' derived renders of this result

    @property
    def best_index(self) -> int:
        return int(np.argmax(self.scores))

    @property
    def masks(self) -> np.ndarray:
        """(N, H, W) bool at full image resolution (computed once, on first access)."""
        if self._masks is None:
            self._masks = upsample_logits(
                self.low_res_logits, self.input_size, self.original_size, self.original_size,
                threshold=self.mask_threshold, device=self.device,
            )
        return self._masks

    def full_mask(self, index: int, threshold: float | None = None) -> np.ndarray:
        """(H, W) bool mask of one candidate at full resolution, without the other two."""
        thr = self.mask_threshold if threshold is None else threshold
        if self._masks is not None and thr == self.mask_threshold:
            return self._masks[index]
        return upsample_logits(
            self.low_res_logits[index : index + 1], self.input_size, self.original_size,
            self.original_size, threshold=thr, device=self.device,
        )[0]

    def preview_masks(self, size: tuple[int, int], threshold: float | None = None) -> np.ndarray:
        """(N, h, w) bool masks at a preview ``size`` = (h, w) of the same aspect ratio.

        The last (size, threshold) is memoised: a click renders and logs the same preview.
        """
        thr = self.mask_threshold if threshold is None else threshold
        key = (tuple(size), float(thr))
        if self._preview is None or self._preview[0] != key:
            masks = upsample_logits(
                self.low_res_logits, self.input_size, self.original_size, size, threshold=thr, device=self.device
            )
            masks.flags.writeable = False
            self._preview = (key, masks)
        return self._preview[1]


def upsample_logits(
    logits: np.ndarray,
    input_size: tuple[int, int],
    original_size: tuple[int, int],
    out_size: tuple[int, int],
    *,
    threshold: float = 0.0,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """(N, 256, 256) logits -> (N, *out_size) bool, exactly like ``Sam.postprocess_masks``.

    Step 1: bilinear to 1024x1024 and crop the padding to ``input_size``; step 2: bilinear
    to ``out_size`` (``original_size`` gives the same result as SamPredictor; a smaller
    size gives a preview without building the full-resolution mask).
    """
    del original_size  # the aspect ratio is carried by input_size; kept for clarity at call sites
    with torch.inference_mode():
        t = torch.as_tensor(np.ascontiguousarray(logits, dtype=np.float32), device=device)[None]
        t = F.interpolate(t, (1024, 1024), mode="bilinear", align_corners=False)
        t = t[..., : input_size[0], : input_size[1]]
        t = F.interpolate(t, tuple(out_size), mode="bilinear", align_corners=False)
        return (t[0] > threshold).cpu().numpy()


def _preprocess_shape(h: int, w: int, long_side: int = 1024) -> tuple[int, int]:
    return ResizeLongestSide.get_preprocess_shape(h, w, long_side)


class Segmenter:
    """SAM behind one lock with an LRU embedding cache shared by every caller.

    Build with :meth:`from_pretrained`. ``segment`` and ``embed`` are thread-safe; two
    callers asking for the same new image at once share one encoder run.
    """

    def __init__(
        self,
        model: Sam,
        *,
        model_type: str,
        placement: Placement,
        checkpoint: str | None = None,
        cache_entries: int = 32,
        cache_mb: int = 512,
        sdpa: bool = False,
    ) -> None:
        self.model_type = model_type
        self.placement = placement
        self.checkpoint = checkpoint
        self.model = model.to(placement.device).eval()
        self.sdpa = bool(sdpa and enable_sdpa(self.model))
        self.transform = ResizeLongestSide(self.model.image_encoder.img_size)
        with torch.inference_mode():  # constant per model: SamPredictor recomputes it per call
            self._dense_pe = self.model.prompt_encoder.get_dense_pe()
        self._lock = threading.RLock()
        self._cache: LRUCache[Embedding] = LRUCache(cache_entries, cache_mb << 20, lambda e: e.nbytes)
        # Identity of the weights + numerics, so an embedding is never reused across models.
        self.model_id = f"{model_type}:{Path(checkpoint).name if checkpoint else 'builtin'}:{placement.precision}"

    @classmethod
    def from_pretrained(
        cls,
        model_type: str = "vit_h",
        checkpoint: str | Path | None = None,
        device: str = "auto",
        precision: str = "auto",
        *,
        checkpoints_dir: str | Path | None = None,
        repo_id: str | None = None,
        sdpa: bool = True,
        cache_entries: int = 32,
        cache_mb: int = 512,
        progress: bool = True,
    ) -> "Segmenter":
        """Resolve (download + verify) the weights, build the model and place it.

        ``sdpa``: fused attention (``scaled_dot_product_attention``) in the image encoder, with
        the relative-position bias as the attention mask. Same maths as SAM's attention; the
        embedding differs from eager by ~1e-6 and encoding is ~2x faster on CPUs (tested).
        """
        path = resolve_checkpoint(
            model_type, checkpoint, checkpoints_dir=checkpoints_dir, repo_id=repo_id, progress=progress
        )
        placement = resolve_placement(device, precision)
        model = build_model(model_type, path)
        return cls(
            model, model_type=model_type, placement=placement, checkpoint=str(path) if path else None,
            cache_entries=cache_entries, cache_mb=cache_mb, sdpa=sdpa,
        )

    # ------------------------------------------------------------------ info
    @property
    def device(self) -> torch.device:
        return self.placement.device

    @property
    def is_test_model(self) -> bool:
        return self.model_type == TEST_TINY

    @property
    def encoder_runs(self) -> int:
        """How many times the image encoder has run (cache misses)."""
        return self._cache.creations

    def info(self) -> dict[str, Any]:
        return {
            "model": self.model_type,
            "device": str(self.device),
            "precision": self.placement.precision,
            "sdpa": self.sdpa,
            "checkpoint": Path(self.checkpoint).name if self.checkpoint else None,
            "test_model": self.is_test_model,
        }

    def clear_cache(self) -> None:
        self._cache.clear()

    # ------------------------------------------------------------------ encoder
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.placement.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.placement.dtype)

    @contextlib.contextmanager
    def _guard_oom(self) -> Iterator[None]:
        try:
            yield
        except torch.cuda.OutOfMemoryError:
            self._cache.clear()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            smaller = {"vit_h": " Try a smaller model: vit_l or vit_b (Settings → Model, or --model).",
                       "vit_l": " Try a smaller model: vit_b (Settings → Model, or --model)."}.get(self.model_type, "")
            raise ResourceError(
                f"The GPU ran out of memory running {self.model_type}; the embedding cache was freed "
                f"and the model is still loaded, so you can try again.{smaller}"
            ) from None

    def prepare_input(self, image: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 -> (1, 3, h, w) uint8 tensor, long side 1024 (PIL bilinear, as SAM)."""
        h, w = _preprocess_shape(image.shape[0], image.shape[1], self.transform.target_length)
        resized = np.array(Image.fromarray(image).resize((w, h), Image.BILINEAR))  # writable for torch
        return torch.from_numpy(resized).permute(2, 0, 1)[None]

    def _encode(self, key: str, image: np.ndarray) -> Embedding:
        t0 = time.perf_counter()
        x = self.prepare_input(image)
        with self._lock, self._guard_oom(), torch.inference_mode(), self._autocast():
            x = x.to(self.device)
            features = self.model.image_encoder(self.model.preprocess(x.float())).float()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        ms = (time.perf_counter() - t0) * 1000
        log.info("encoded %s in %.0f ms", key[:12], ms)
        return Embedding(key, features, (image.shape[0], image.shape[1]), (x.shape[-2], x.shape[-1]), ms)

    def embed(self, image: np.ndarray, *, image_key: str | None = None) -> tuple[Embedding, bool]:
        """Embedding of ``image`` (H, W, 3) uint8, from the cache when possible.

        ``image_key`` is the content hash from :func:`sam_core.images.image_hash` when the
        caller already has it. Returns ``(embedding, cache_hit)``.
        """
        _check_image(image)
        key = f"{self.model_id}:{image_key or image_hash(image)}"
        return self._cache.get_or_create(key, lambda: self._encode(key, image))

    def is_cached(self, image_key: str) -> bool:
        return f"{self.model_id}:{image_key}" in self._cache

    # ------------------------------------------------------------------ decoder
    def segment(
        self,
        image: np.ndarray,
        points: Sequence[Sequence[float]] | None = None,
        box: Sequence[float] | None = None,
        multimask: bool = True,
        mask_input: np.ndarray | None = None,
        *,
        image_key: str | None = None,
    ) -> SegmentResult:
        """Run SAM on ``image`` (H, W, 3) uint8 with points ``(x, y, label)`` and/or a box.

        ``mask_input``: previous low-res logits (256, 256) or (1, 256, 256) for refinement.
        Raises :class:`PromptError` for invalid prompts.
        """
        _check_image(image)
        prompts = Prompts.parse(points, box).validate(image.shape[1], image.shape[0])
        t0 = time.perf_counter()
        emb, hit = self.embed(image, image_key=image_key)
        encode_ms = (time.perf_counter() - t0) * 1000
        return self.decode(emb, prompts, multimask=multimask, mask_input=mask_input,
                           encode_ms=encode_ms, cache_hit=hit)

    def decode(
        self,
        emb: Embedding,
        prompts: Prompts,
        *,
        multimask: bool = True,
        mask_input: np.ndarray | None = None,
        encode_ms: float = 0.0,
        cache_hit: bool = True,
    ) -> SegmentResult:
        """Prompt encoder + mask decoder on a cached embedding (the per-click work)."""
        prompts.validate(emb.original_size[1], emb.original_size[0])
        t0 = time.perf_counter()
        dev = self.device
        coords = labels = boxes = masks = None
        if prompts.points:
            pts = np.array([[x, y] for x, y, _ in prompts.points], dtype=np.float64)
            pts = self.transform.apply_coords(pts, emb.original_size)
            coords = torch.as_tensor(pts, dtype=torch.float, device=dev)[None]
            labels = torch.as_tensor([lab for _, _, lab in prompts.points], dtype=torch.int, device=dev)[None]
        if prompts.box is not None:
            b = self.transform.apply_boxes(np.array(prompts.box, dtype=np.float64), emb.original_size)
            boxes = torch.as_tensor(b, dtype=torch.float, device=dev)[None]
        if mask_input is not None:
            m = np.asarray(mask_input, dtype=np.float32).reshape(-1, LOW_RES, LOW_RES)[:1]
            masks = torch.as_tensor(m, device=dev)[None]
        with self._lock, self._guard_oom(), torch.inference_mode():
            sparse, dense = self.model.prompt_encoder(
                points=(coords, labels) if coords is not None else None, boxes=boxes, masks=masks
            )
            low_res, iou = self.model.mask_decoder(
                image_embeddings=emb.features,
                image_pe=self._dense_pe,
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask,
            )
            low_res_np = low_res[0].float().cpu().numpy()
            scores = iou[0].float().cpu().numpy()
        decode_ms = (time.perf_counter() - t0) * 1000
        return SegmentResult(
            scores=scores,
            low_res_logits=low_res_np,
            original_size=emb.original_size,
            input_size=emb.input_size,
            timings={"encode_ms": round(encode_ms, 2), "decode_ms": round(decode_ms, 2), "cache_hit": bool(cache_hit)},
            mask_threshold=float(self.model.mask_threshold),
            device=dev,
        )


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise TypeError("image must be an (H, W, 3) uint8 RGB array")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise TypeError("image must not be empty")
