"""The Segmenter: one SAM model, a shared embedding cache, mask upsampling, and a choice of decoder.

The image encoder and the torch decoder have separate locks, so a click (prompt encoder + mask
decoder on a cached embedding) never waits for another image being encoded; the onnxruntime
decoder (``decoder="onnx"``, or ``"auto"`` on a CPU) needs no lock at all.

Coordinates are full-image pixels (x right, y down); images are (H, W, 3) uint8 RGB.
For the same weights in fp32, ``Segmenter.segment`` returns exactly what
``segment_anything.SamPredictor.predict(..., multimask_output=True)`` returns: the image is
resized with the same PIL bilinear resize, prompts go through the same transforms, and the
full-resolution masks are upsampled by the same two bilinear steps.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide

from sam_core.core.cache import LRUCache
from sam_core.core.errors import ResourceError
from sam_core.core.images import check_image, image_hash
from sam_core.core.prompts import Prompts
from sam_core.core.sizes import ImageSize
from sam_core.model.build import TEST_TINY, Placement, build_model, build_test_tiny, enable_sdpa, resolve_placement
from sam_core.model.embeddings import EmbeddingStore
from sam_core.model.results import LOW_RES, SegmentResult, upsample_logits  # noqa: F401  (re-exported)
from sam_core.model.weights import checkpoint_sha256, resolve_checkpoint

if TYPE_CHECKING:
    from sam_core.model.onnx_decoder import DecoderFiles, OnnxDecoder

log = logging.getLogger(__name__)

DECODERS = ("torch", "onnx", "auto")


@dataclass(frozen=True)
class Embedding:
    """Image-encoder output for one image. ``features``: (1, 256, 64, 64) float32 on device."""

    key: str
    features: torch.Tensor
    image_size: ImageSize  # the full image
    input_size: ImageSize  # after the resize to a long side of 1024 (SAM's input frame)
    encode_ms: float  # encoder time, or the read time when ``stored``
    stored: bool = False  # read from an EmbeddingStore instead of encoded

    @property
    def nbytes(self) -> int:
        return self.features.numel() * self.features.element_size()


def input_size(size: ImageSize, long_side: int = 1024) -> ImageSize:
    """SAM's encoder input frame for an image of ``size``: the long side resized to ``long_side``
    (``ResizeLongestSide.get_preprocess_shape``)."""
    return ImageSize.from_hw(ResizeLongestSide.get_preprocess_shape(size.height, size.width, long_side))


class Segmenter:
    """SAM with an LRU embedding cache shared by every caller.

    Build with :meth:`from_pretrained`. ``segment``, ``embed`` and ``decode`` are thread-safe; two
    callers asking for the same new image at once share one encoder run, and decoding never
    waits for an encode. With a store of precomputed embeddings attached (``embeddings=``,
    :meth:`attach_embeddings`), an image stored for this model type and these weights is read
    instead of encoded (``cache_hit``).

    ``decoder``: ``"torch"`` (the default: equal to SamPredictor), ``"onnx"`` (onnxruntime on the
    CPU, exported and verified on first use, see :mod:`sam_core.model.onnx_decoder`) or ``"auto"``
    (onnxruntime on a CPU placement, torch on CUDA / MPS). If the ONNX decoder cannot be built,
    a warning is logged once and torch decodes from then on. ``onnx_dir``: where the ONNX files
    are cached (default: next to the checkpoint); ``onnx_threads``: onnxruntime's intra-op threads.
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
        embeddings: EmbeddingStore | str | os.PathLike[str] | None = None,
        checkpoints_dir: str | os.PathLike[str] | None = None,
        weights_id: str | None = None,
        decoder: str = "torch",
        onnx_dir: str | os.PathLike[str] | None = None,
        onnx_threads: int | None = None,
    ) -> None:
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, not {decoder!r}")
        self.model_type = model_type
        self.placement = placement
        self.checkpoint = checkpoint
        self.model = model.to(placement.device).eval()
        self.sdpa = bool(sdpa and enable_sdpa(self.model))
        self.transform = ResizeLongestSide(self.model.image_encoder.img_size)
        with torch.inference_mode():  # constant per model: SamPredictor recomputes it per call
            self._dense_pe = self.model.prompt_encoder.get_dense_pe()
        self._encoder_lock = threading.RLock()  # image encoder runs
        self._decoder_lock = threading.RLock()  # torch prompt encoder + mask decoder
        self.decoder = decoder
        self._want_onnx = decoder == "onnx" or (decoder == "auto" and placement.device.type == "cpu")
        self._onnx_dir = onnx_dir
        self._onnx_threads = onnx_threads
        self._onnx: OnnxDecoder | None = None
        self._onnx_failed = False
        self._onnx_init_lock = threading.Lock()
        self._cache: LRUCache[Embedding] = LRUCache(cache_entries, cache_mb << 20, lambda e: e.nbytes)
        # Identity of the weights + numerics, so an embedding is never reused across models.
        self.model_id = f"{model_type}:{Path(checkpoint).name if checkpoint else 'builtin'}:{placement.precision}"
        self._checkpoints_dir = checkpoints_dir
        self._weights_id = weights_id  # None: worked out on first use (see weights_id)
        self._weights_id_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._encoder_runs = 0
        self.store_loads = 0  # embeddings read from the store instead of encoded
        self.embeddings: EmbeddingStore | None = None
        self.attach_embeddings(embeddings)

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
        embeddings: EmbeddingStore | str | os.PathLike[str] | None = None,
        decoder: str = "torch",
        onnx_dir: str | os.PathLike[str] | None = None,
        onnx_threads: int | None = None,
    ) -> Segmenter:
        """Resolve (download + verify) the weights, build the model and place it.

        ``sdpa``: fused attention (``scaled_dot_product_attention``) in the image encoder, with
        the relative-position bias as the attention mask. Same maths as SAM's attention; the
        embedding differs from eager by ~1e-6 and encoding is ~2x faster on CPUs (tested).
        ``embeddings``: a folder of precomputed embeddings (:class:`EmbeddingStore`) to read.
        ``decoder``, ``onnx_dir``, ``onnx_threads``: see the class.
        """
        path = resolve_checkpoint(
            model_type, checkpoint, checkpoints_dir=checkpoints_dir, repo_id=repo_id, progress=progress
        )
        placement = resolve_placement(device, precision)
        model = build_model(model_type, path)
        return cls(
            model,
            model_type=model_type,
            placement=placement,
            checkpoint=str(path) if path else None,
            cache_entries=cache_entries,
            cache_mb=cache_mb,
            sdpa=sdpa,
            embeddings=embeddings,
            checkpoints_dir=checkpoints_dir,
            decoder=decoder,
            onnx_dir=onnx_dir,
            onnx_threads=onnx_threads,
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
        """How many times the image encoder has run (cache misses not served by the store)."""
        return self._encoder_runs

    @property
    def weights_id(self) -> str:
        """Identity of the weights for the embedding store: the checkpoint's sha256, or
        ``test-tiny-seed<N>`` for test-tiny's built-in random weights. Computed on first use
        (official checkpoints: read from their verification record, no re-hash)."""
        with self._weights_id_lock:
            if self._weights_id is None:
                if self.checkpoint is None:
                    seed = inspect.signature(build_test_tiny).parameters["seed"].default
                    self._weights_id = f"{self.model_type}-seed{seed}"
                else:
                    self._weights_id = checkpoint_sha256(self.checkpoint, checkpoints_dir=self._checkpoints_dir)
            return self._weights_id

    def attach_embeddings(self, store: EmbeddingStore | str | os.PathLike[str] | None) -> None:
        """Read precomputed embeddings from ``store`` (a folder or an :class:`EmbeddingStore`); None detaches."""
        if store is not None and not isinstance(store, EmbeddingStore):
            store = EmbeddingStore(store)
        self.embeddings = store

    def info(self) -> dict[str, Any]:
        return {
            "model": self.model_type,
            "device": str(self.device),
            "precision": self.placement.precision,
            "sdpa": self.sdpa,
            "checkpoint": Path(self.checkpoint).name if self.checkpoint else None,
            "test_model": self.is_test_model,
            "embeddings": str(self.embeddings.root) if self.embeddings else None,
            "decoder": self.decoder_backend,
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
            smaller = {
                "vit_h": " Try a smaller model: vit_l or vit_b (Settings → Model, or --model).",
                "vit_l": " Try a smaller model: vit_b (Settings → Model, or --model).",
            }.get(self.model_type, "")
            raise ResourceError(
                f"The GPU ran out of memory running {self.model_type}; the embedding cache was freed "
                f"and the model is still loaded, so you can try again.{smaller}"
            ) from None

    def prepare_input(self, image: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 -> (1, 3, h, w) uint8 tensor, long side 1024 (PIL bilinear, as SAM)."""
        w, h = input_size(ImageSize.from_hw(image.shape[:2]), self.transform.target_length)
        resized = np.array(Image.fromarray(image).resize((w, h), Image.Resampling.BILINEAR))  # writable for torch
        return torch.from_numpy(resized).permute(2, 0, 1)[None]

    def _encode(self, key: str, image: np.ndarray) -> Embedding:
        t0 = time.perf_counter()
        x = self.prepare_input(image)
        with self._encoder_lock, self._guard_oom(), torch.inference_mode(), self._autocast():
            x = x.to(self.device)
            features = self.model.image_encoder(self.model.preprocess(x.float())).float()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        ms = (time.perf_counter() - t0) * 1000
        with self._count_lock:
            self._encoder_runs += 1
        log.info("encoded %s in %.0f ms", key[:12], ms)
        return Embedding(key, features, ImageSize.of(image), ImageSize(int(x.shape[-1]), int(x.shape[-2])), ms)

    def embed(self, image: np.ndarray, *, image_key: str | None = None) -> tuple[Embedding, bool]:
        """Embedding of ``image`` (H, W, 3) uint8, from the cache when possible.

        ``image_key`` is the content hash from :func:`sam_core.images.image_hash` when the
        caller already has it. Returns ``(embedding, cache_hit)``.
        """
        check_image(image)
        image_key = image_key or image_hash(image)
        key = f"{self.model_id}:{image_key}"
        emb, hit = self._cache.get_or_create(key, lambda: self._load_or_encode(key, image_key, image))
        return emb, hit or emb.stored

    def encode(self, image: np.ndarray, *, image_key: str | None = None) -> Embedding:
        """Run the image encoder on ``image`` (H, W, 3) uint8, bypassing the cache and the store."""
        check_image(image)
        return self._encode(f"{self.model_id}:{image_key or image_hash(image)}", image)

    def _load_or_encode(self, key: str, image_key: str, image: np.ndarray) -> Embedding:
        """The stored embedding when the attached store has a matching one, else a fresh encode."""
        store = self.embeddings
        if store is None:
            return self._encode(key, image)
        t0 = time.perf_counter()
        size = ImageSize.of(image)
        stored = store.load(
            self.model_type,
            self.weights_id,
            image_key,
            precision=self.placement.precision,
            image_size=size,
            input_long_side=self.transform.target_length,
            shape=(1, self.model.prompt_encoder.embed_dim, *self.model.prompt_encoder.image_embedding_size),
            device=self.device,
        )
        if stored is not None:
            with self._count_lock:
                self.store_loads += 1
            ms = (time.perf_counter() - t0) * 1000
            log.info("read the embedding of %s from %s in %.0f ms", image_key[:12], stored.path, ms)
            return Embedding(key, stored.features, stored.image_size, stored.input_size, ms, stored=True)
        emb = self._encode(key, image)
        if store.write_new:
            try:
                store.save(
                    emb.features,
                    model_type=self.model_type,
                    weights_id=self.weights_id,
                    image_key=image_key,
                    image_size=emb.image_size,
                    input_size=emb.input_size,
                    precision=self.placement.precision,
                    input_long_side=self.transform.target_length,
                    device=str(self.device),
                    attention="sdpa" if self.sdpa else "eager",
                    encode_ms=emb.encode_ms,
                )
            except ResourceError as err:  # the embedding is still good for this session
                log.warning("could not store the embedding of %s: %s", image_key[:12], err)
        return emb

    def is_cached(self, image_key: str) -> bool:
        return f"{self.model_id}:{image_key}" in self._cache

    def embed_many(
        self, images: Sequence[np.ndarray], *, image_keys: Sequence[str | None] | None = None
    ) -> list[tuple[Embedding, bool]]:
        """Embeddings of several (H, W, 3) uint8 images; the uncached ones in ONE encoder pass.

        The batch path of studies on CUDA (``python -m sam_core.batch --batch-size N``). Images in
        the cache are not encoded again; with an embedding store attached, or fewer than two
        images to encode, this is :meth:`embed` per image. Returns ``(embedding, cache_hit)`` per
        image, in order; a batched embedding's ``encode_ms`` is the batch's time divided by its size.
        Unlike :meth:`embed`, two threads batching the same new image at once may both encode it.
        """
        given = list(image_keys) if image_keys is not None else [None] * len(images)
        if len(given) != len(images):
            raise ValueError(f"{len(images)} images but {len(given)} image keys")
        keys = [k or image_hash(check_image(im)) for im, k in zip(images, given, strict=True)]
        out: dict[int, tuple[Embedding, bool]] = {}
        todo: list[int] = []
        for i, k in enumerate(keys):
            cached = self._cache.get(f"{self.model_id}:{k}")
            if cached is not None:
                out[i] = (cached, True)
            else:
                todo.append(i)
        first = list({keys[i]: i for i in reversed(todo)}.values())[::-1]  # one encode per distinct image
        if self.embeddings is not None or len(first) < 2:
            for i in todo:
                out[i] = self.embed(images[i], image_key=keys[i])
            return [out[i] for i in range(len(images))]
        t0 = time.perf_counter()
        xs = [self.prepare_input(check_image(images[i])) for i in first]
        with self._encoder_lock, self._guard_oom(), torch.inference_mode(), self._autocast():
            batch = torch.cat([self.model.preprocess(x.to(self.device).float()) for x in xs])
            features = self.model.image_encoder(batch).float()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        ms = (time.perf_counter() - t0) * 1000 / len(first)
        with self._count_lock:
            self._encoder_runs += len(first)
        log.info("encoded %d images in one batch, %.0f ms each", len(first), ms)
        made: dict[str, Embedding] = {}
        for j, i in enumerate(first):
            key = f"{self.model_id}:{keys[i]}"
            size = ImageSize(int(xs[j].shape[-1]), int(xs[j].shape[-2]))
            emb = Embedding(key, features[j : j + 1].clone(), ImageSize.of(images[i]), size, ms)
            self._cache.put(key, emb)
            made[keys[i]] = emb
        for i in todo:
            out[i] = (made[keys[i]], i not in first)
        return [out[i] for i in range(len(images))]

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
        check_image(image)
        prompts = Prompts.parse(points, box).validate(image.shape[1], image.shape[0])
        t0 = time.perf_counter()
        emb, hit = self.embed(image, image_key=image_key)
        encode_ms = (time.perf_counter() - t0) * 1000
        return self.decode(emb, prompts, multimask=multimask, mask_input=mask_input, encode_ms=encode_ms, cache_hit=hit)

    @property
    def decoder_backend(self) -> str:
        """What :meth:`decode` uses now: ``"onnx"`` (also before its first, lazy build) or ``"torch"``."""
        return "onnx" if self._want_onnx and not self._onnx_failed else "torch"

    def decoder_files(self) -> DecoderFiles:
        """The ONNX decoder files of this model (fp32, quantized, sidecar), exported on first call."""
        from sam_core.model.onnx_decoder import export_decoder

        return export_decoder(self, self._onnx_dir)

    def prepare_decoder(self) -> str:
        """Build the decoder backend now (export + verify + session for ONNX); returns the backend."""
        if self._want_onnx:
            self._onnx_session(wait=True)
        return self.decoder_backend

    def _onnx_session(self, *, wait: bool = False) -> OnnxDecoder | None:
        """The onnxruntime decoder, built on first use; None = decode with torch (failed, or
        another thread is building it and ``wait`` is False: that click does not wait)."""
        if self._onnx is not None or self._onnx_failed:
            return self._onnx
        if not self._onnx_init_lock.acquire(blocking=wait):
            return None
        try:
            if self._onnx is None and not self._onnx_failed:
                t0 = time.perf_counter()
                try:
                    from sam_core.model.onnx_decoder import OnnxDecoder

                    files = self.decoder_files()
                    self._onnx = OnnxDecoder(files.fp32, threads=self._onnx_threads)
                    log.info(
                        "ONNX decoder ready (%s, %d threads) in %.1f s",
                        files.fp32.name,
                        self._onnx.threads,
                        time.perf_counter() - t0,
                    )
                except Exception as err:
                    self._onnx_failed = True
                    log.warning(
                        "the ONNX decoder is not available (%s: %s); decoding with torch", type(err).__name__, err
                    )
        finally:
            self._onnx_init_lock.release()
        return self._onnx

    def torch_decode(
        self,
        features: torch.Tensor,
        coords: np.ndarray | None,
        labels: np.ndarray | Sequence[int] | None,
        box: np.ndarray | None,
        mask_input: np.ndarray | None,
        *,
        multimask: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Torch prompt encoder + mask decoder. Prompts in the 1024-long-side input frame:
        ``coords`` (N, 2), ``labels`` (N,), ``box`` (4,) x1 y1 x2 y2; ``mask_input`` (256, 256) logits.
        Returns ``(scores (K,), low_res (K, 256, 256))`` float32, K = 3 with multimask, else 1."""
        dev = self.device
        coords_t = labels_t = boxes = masks = None
        if coords is not None and len(coords):
            coords_t = torch.as_tensor(coords, dtype=torch.float, device=dev)[None]
            labels_t = torch.as_tensor(np.asarray(labels), dtype=torch.int, device=dev)[None]
        if box is not None:
            boxes = torch.as_tensor(box, dtype=torch.float, device=dev)[None]
        if mask_input is not None:
            m = np.asarray(mask_input, dtype=np.float32).reshape(-1, LOW_RES, LOW_RES)[:1]
            masks = torch.as_tensor(m, device=dev)[None]
        with self._decoder_lock, self._guard_oom(), torch.inference_mode():
            sparse, dense = self.model.prompt_encoder(
                points=(coords_t, labels_t) if coords_t is not None else None, boxes=boxes, masks=masks
            )
            low_res, iou = self.model.mask_decoder(
                image_embeddings=features,
                image_pe=self._dense_pe,
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask,
            )
            return iou[0].float().cpu().numpy(), low_res[0].float().cpu().numpy()

    def _onnx_decode(
        self,
        session: OnnxDecoder,
        emb: Embedding,
        coords: np.ndarray | None,
        labels: list[int],
        box: np.ndarray | None,
        mask_input: np.ndarray | None,
        multimask: bool,
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """onnxruntime's candidates, sliced like ``MaskDecoder.forward``; None (and torch from
        then on) if the run fails. The session's graph has no ``masks`` output: the (1, 1) size is unused."""
        from sam_core.model.onnx_decoder import onnx_inputs

        try:
            feed = onnx_inputs(coords, np.asarray(labels), box, mask_input, ImageSize(1, 1))
            all_scores, all_low = session.run(emb.features.detach().float().cpu().numpy(), feed)
        except Exception as err:
            if not self._onnx_failed:
                self._onnx_failed = True
                log.warning("the ONNX decoder failed (%s: %s); decoding with torch", type(err).__name__, err)
            return None
        take = slice(1, None) if multimask else slice(0, 1)  # multimask: tokens 1-3, else token 0
        return all_scores[take].copy(), all_low[take].copy()

    def decode(
        self,
        emb: Embedding,
        prompts: Prompts,
        *,
        multimask: bool = True,
        mask_input: np.ndarray | None = None,
        encode_ms: float = 0.0,
        cache_hit: bool = True,
        backend: str | None = None,
    ) -> SegmentResult:
        """Prompt encoder + mask decoder on a cached embedding (the per-click work).

        ``backend``: None = this segmenter's decoder (:attr:`decoder_backend`); ``"torch"``
        forces torch (exact SamPredictor numerics); ``"onnx"`` asks for onnxruntime (torch when
        it is unavailable). ``timings["decoder"]`` says which one ran.
        """
        if backend not in (None, "torch", "onnx"):
            raise ValueError(f"backend must be None, 'torch' or 'onnx', not {backend!r}")
        prompts.validate(*emb.image_size)
        t0 = time.perf_counter()
        coords = box = None
        labels: list[int] = []
        if prompts.points:
            pts = np.array([[x, y] for x, y, _ in prompts.points], dtype=np.float64)
            coords = self.transform.apply_coords(pts, emb.image_size.hw)
            labels = [lab for _, _, lab in prompts.points]
        if prompts.box is not None:
            box = self.transform.apply_boxes(np.array(prompts.box, dtype=np.float64), emb.image_size.hw)[0]
        session = None
        if backend == "onnx" or (backend is None and self._want_onnx):
            session = self._onnx_session()
        ran = None
        if session is not None:
            ran = self._onnx_decode(session, emb, coords, labels, box, mask_input, multimask)
        if ran is not None:
            scores, low_res_np = ran
            used = "onnx"
        else:
            scores, low_res_np = self.torch_decode(emb.features, coords, labels, box, mask_input, multimask=multimask)
            used = "torch"
        decode_ms = (time.perf_counter() - t0) * 1000
        return SegmentResult(
            scores=scores,
            low_res_logits=low_res_np,
            image_size=emb.image_size,
            input_size=emb.input_size,
            timings={
                "encode_ms": round(encode_ms, 2),
                "decode_ms": round(decode_ms, 2),
                "cache_hit": bool(cache_hit),
                "decoder": used,
            },
            mask_threshold=float(self.model.mask_threshold),
            device=self.device,
        )
