"""Precomputed image embeddings on disk: encode a folder once (e.g. on a GPU node), segment anywhere.

One safetensors file per (model type, weights, image)::

    <root>/<model type>/<weights id>/<image pixel hash>.safetensors

* ``weights id``: the checkpoint's sha256 (official files: from the verification record, so no
  re-hash), or ``test-tiny-seed0`` for test-tiny's built-in random weights.
* ``image pixel hash``: :func:`sam_core.core.images.image_hash` of the decoded RGB pixels, so a
  re-encoded or renamed file of the same pixels finds its embedding.
* The tensor ``image_embeddings`` is ``(1, 256, 64, 64)`` **float32**, the exact values the
  encoder returned (the Segmenter casts its output to float32 in every precision). float32 is
  lossless: a stored embedding decodes to bit-identical masks, which float16 (half the 4 MiB)
  would not guarantee.
* The safetensors header's metadata (strings) says what it is: ``format``, ``format_version``,
  ``model_type``, ``weights_id``, ``image_hash``, ``image_width``/``image_height`` (full image),
  ``input_width``/``input_height`` (after SAM's resize to a long side of ``input_long_side``),
  ``dtype``, ``precision`` (fp32/bf16 of the encoder run), ``device``, ``attention``,
  ``created`` (UTC, ISO 8601), ``torch``, ``encode_ms`` and ``features_sha256`` (of the tensor
  bytes, so a corrupted file is caught, not only a truncated one).

:meth:`EmbeddingStore.load` re-checks all of it and returns None (logging why) for any file
that does not match the model type, weights, image, shapes or format asked for: a mismatched
embedding is never used. Precision need not match by default: an embedding made under bf16
autocast on a GPU may be decoded by an fp32 model on a CPU (same weights; the features differ
from an fp32 encode by bf16 rounding, ~1e-2 relative, and the masks by a few boundary pixels).
``EmbeddingStore(root, require_precision=True)`` refuses those instead.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from huggingface_hub.utils import tqdm  # tqdm.auto's bar, typed (as in weights.py)
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_save
from segment_anything.utils.transforms import ResizeLongestSide

from sam_core.core.errors import ResourceError, UserError
from sam_core.core.files import write_atomic
from sam_core.core.images import image_hash, load_image
from sam_core.core.sizes import ImageSize

if TYPE_CHECKING:
    from sam_core.model.segmenter import Segmenter

__all__ = ["FORMAT", "FORMAT_VERSION", "EmbeddingStore", "StoredEmbedding", "embed_images"]

log = logging.getLogger(__name__)

FORMAT = "sam-studio-embedding"
FORMAT_VERSION = "1"
TENSOR = "image_embeddings"
SUFFIX = ".safetensors"
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _check_id(kind: str, value: str) -> str:
    """``value`` must be usable as one folder/file name (no separators, no ``..``)."""
    if not _SAFE_ID.match(value):
        raise ValueError(f"{kind} {value!r} is not a safe file name")
    return value


def _features_sha256(features: torch.Tensor) -> str:
    return hashlib.sha256(features.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


@dataclass(frozen=True)
class StoredEmbedding:
    """An embedding read back from the store.

    ``features``: (1, C, h, w) float32 (C=256, h=w=64 for SAM) on the requested device;
    ``image_size``: the full image; ``input_size``: SAM's resized input frame (long side 1024).
    """

    features: torch.Tensor
    image_size: ImageSize
    input_size: ImageSize
    metadata: dict[str, str]
    path: Path

    @property
    def precision(self) -> str:
        return self.metadata.get("precision", "")


class EmbeddingStore:
    """A folder of precomputed embeddings (see the module docstring for the layout and metadata).

    ``write_new``: a Segmenter this store is attached to also saves the embeddings it encodes
    (off by default: the app only reads; ``embed_images`` writes). ``require_precision``: refuse
    an embedding whose encoder precision (fp32/bf16) differs from the one asked for.
    Safe for several processes at once (e.g. a SLURM array): every file is written atomically.
    """

    def __init__(self, root: str | os.PathLike[str], *, write_new: bool = False, require_precision: bool = False):
        self.root = Path(root).expanduser()
        self.write_new = write_new
        self.require_precision = require_precision

    def __repr__(self) -> str:
        return f"EmbeddingStore({str(self.root)!r})"

    def path_for(self, model_type: str, weights_id: str, image_key: str) -> Path:
        """Where the embedding of image ``image_key`` for this model and weights lives."""
        return (
            self.root
            / _check_id("model type", model_type)
            / _check_id("weights id", weights_id)
            / f"{_check_id('image hash', image_key)}{SUFFIX}"
        )

    # ------------------------------------------------------------------ write
    def save(
        self,
        features: torch.Tensor,
        *,
        model_type: str,
        weights_id: str,
        image_key: str,
        image_size: ImageSize,
        input_size: ImageSize,
        precision: str,
        input_long_side: int = 1024,
        device: str = "cpu",
        attention: str = "",
        encode_ms: float | None = None,
    ) -> Path:
        """Write ``features`` (1, C, h, w) as float32 with its metadata; returns the file.

        Raises :class:`ResourceError` when the file cannot be written (disk full, permissions).
        """
        if features.ndim != 4 or features.shape[0] != 1:
            raise ValueError(f"features must be (1, C, h, w), got {tuple(features.shape)}")
        tensor = features.detach().to("cpu", torch.float32).contiguous()
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model_type": model_type,
            "weights_id": weights_id,
            "image_hash": image_key,
            "image_width": str(int(image_size.width)),
            "image_height": str(int(image_size.height)),
            "input_width": str(int(input_size.width)),
            "input_height": str(int(input_size.height)),
            "input_long_side": str(int(input_long_side)),
            "dtype": "float32",
            "precision": precision,
            "device": device,
            "attention": attention,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "torch": torch.__version__,
            "encode_ms": "" if encode_ms is None else f"{encode_ms:.1f}",
            "features_sha256": _features_sha256(tensor),
        }
        path = self.path_for(model_type, weights_id, image_key)
        return write_atomic(path, safetensors_save({TENSOR: tensor}, metadata=meta))

    # ------------------------------------------------------------------ read
    def _mismatch(
        self,
        meta: dict[str, str],
        model_type: str,
        weights_id: str,
        image_key: str,
        precision: str | None,
        image_size: ImageSize | None,
        input_long_side: int | None,
    ) -> str | None:
        """Why the metadata ``meta`` does not fit the request, or None when it does."""
        expected = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model_type": model_type,
            "weights_id": weights_id,
            "image_hash": image_key,
            "dtype": "float32",
        }
        if precision is not None and self.require_precision:
            expected["precision"] = precision
        for field, want in expected.items():
            got = meta.get(field)
            if got != want:
                return f"{field} is {got!r}, expected {want!r}"
        try:
            img = ImageSize(int(meta["image_width"]), int(meta["image_height"]))
            inp = ImageSize(int(meta["input_width"]), int(meta["input_height"]))
            long_side = int(meta["input_long_side"])
        except (KeyError, ValueError) as err:
            return f"bad size metadata ({err})"
        if image_size is not None and img != image_size:
            return f"image size is {img}, expected {image_size}"
        if input_long_side is not None and long_side != input_long_side:
            return f"SAM input long side is {long_side}, expected {input_long_side}"
        want_input = ImageSize.from_hw(ResizeLongestSide.get_preprocess_shape(img.height, img.width, long_side))
        if inp != want_input:
            return f"SAM input size is {inp}, expected {want_input} for a {img} image"
        return None

    @staticmethod
    def _bad_features(features: torch.Tensor, shape: tuple[int, ...] | None, checksum: str | None) -> str | None:
        """Why the tensor read back is unusable (dtype, shape, checksum), or None."""
        if features.dtype != torch.float32 or features.ndim != 4 or features.shape[0] != 1:
            return f"features are {features.dtype} {tuple(features.shape)}, expected float32 (1, C, h, w)"
        if shape is not None and tuple(features.shape) != tuple(shape):
            return f"features shape {tuple(features.shape)}, expected {tuple(shape)}"
        if _features_sha256(features) != checksum:
            return "the features do not match their checksum (corrupted file)"
        return None

    def load(
        self,
        model_type: str,
        weights_id: str,
        image_key: str,
        *,
        precision: str | None = None,
        image_size: ImageSize | None = None,
        input_long_side: int | None = None,
        shape: tuple[int, ...] | None = None,
        device: torch.device | str = "cpu",
    ) -> StoredEmbedding | None:
        """The stored embedding, or None if absent or not usable (the reason is logged).

        ``precision`` is only enforced with ``require_precision``; ``image_size``,
        ``input_long_side`` and the features' ``shape`` are checked when given.
        """
        path = self.path_for(model_type, weights_id, image_key)
        if not path.is_file():
            return None
        meta: dict[str, str] = {}
        features: torch.Tensor | None = None
        try:
            with safe_open(path, framework="pt", device="cpu") as f:
                meta = dict(f.metadata() or {})
                reason = self._mismatch(meta, model_type, weights_id, image_key, precision, image_size, input_long_side)
                if reason is None and list(f.keys()) != [TENSOR]:
                    reason = f"tensors {list(f.keys())}, expected [{TENSOR!r}]"
                if reason is None:
                    features = f.get_tensor(TENSOR)
        except (SafetensorError, OSError, ValueError, RuntimeError) as err:
            reason = f"unreadable ({type(err).__name__}: {err})"
        if reason is None and features is not None:
            reason = self._bad_features(features, shape, meta.get("features_sha256"))
        if reason is not None or features is None:
            log.warning("not using the stored embedding %s: %s", path, reason)
            return None
        if precision is not None and meta.get("precision") != precision:
            log.info(
                "using %s: encoded in %s, decoded by a %s model (same weights)", path.name, meta["precision"], precision
            )
        return StoredEmbedding(
            features=features.to(device),
            image_size=ImageSize(int(meta["image_width"]), int(meta["image_height"])),
            input_size=ImageSize(int(meta["input_width"]), int(meta["input_height"])),
            metadata=meta,
            path=path,
        )

    def files(self) -> Iterator[Path]:
        """Every embedding file under the store, sorted."""
        if self.root.is_dir():
            yield from sorted(self.root.glob(f"*/*/*{SUFFIX}"))


# --------------------------------------------------------------------------- embed a set of images


@contextmanager
def _bar(total: int, enabled: bool) -> Iterator[Any]:
    with tqdm(total=total, unit="img", desc="Embedding", disable=not enabled, dynamic_ncols=True) as bar:
        yield bar


def embed_images(
    paths: Iterable[str | os.PathLike[str]],
    segmenter: Segmenter,
    out_dir: str | os.PathLike[str],
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Encode each image once into the store at ``out_dir``; images already stored are skipped.

    A bad image (unreadable, too large, not an image) or a failed write is reported, and the
    others go on. Returns ``{"out", "model", "weights_id", "precision", "images", "encoded",
    "skipped", "failed", "errors": [{"image", "error"}], "files": {image path: embedding file},
    "seconds", "images_per_s"}`` where ``images_per_s`` counts encoded images only.
    """
    store = EmbeddingStore(out_dir)
    files_in = [Path(p) for p in paths]
    weights_id = segmenter.weights_id
    long_side = segmenter.transform.target_length
    encoded = skipped = 0
    errors: list[dict[str, str]] = []
    files: dict[str, str] = {}
    t0 = time.perf_counter()
    encode_s = 0.0
    with _bar(len(files_in), progress) as bar:
        for path in files_in:
            bar.set_postfix_str(path.name[-40:], refresh=False)
            try:
                loaded = load_image(path)
                key = image_hash(loaded.rgb)
                if (
                    store.load(segmenter.model_type, weights_id, key, image_size=loaded.size, input_long_side=long_side)
                    is not None
                ):
                    skipped += 1
                else:
                    t1 = time.perf_counter()
                    emb = segmenter.encode(loaded.rgb, image_key=key)
                    encode_s += time.perf_counter() - t1
                    store.save(
                        emb.features,
                        model_type=segmenter.model_type,
                        weights_id=weights_id,
                        image_key=key,
                        image_size=emb.image_size,
                        input_size=emb.input_size,
                        precision=segmenter.placement.precision,
                        input_long_side=long_side,
                        device=str(segmenter.device),
                        attention="sdpa" if segmenter.sdpa else "eager",
                        encode_ms=emb.encode_ms,
                    )
                    encoded += 1
                files[str(path)] = str(store.path_for(segmenter.model_type, weights_id, key))
            except (UserError, ResourceError) as err:
                errors.append({"image": str(path), "error": str(err)})
                log.warning("embed: skipping %s: %s", path, err)
            bar.update(1)
    seconds = time.perf_counter() - t0
    return {
        "out": str(store.root),
        "model": segmenter.model_type,
        "weights_id": weights_id,
        "precision": segmenter.placement.precision,
        "images": len(files_in),
        "encoded": encoded,
        "skipped": skipped,
        "failed": len(errors),
        "errors": errors,
        "files": files,
        "seconds": round(seconds, 3),
        "images_per_s": round(encoded / encode_s, 3) if encode_s > 0 else None,
    }
