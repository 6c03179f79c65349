"""The image embedding as the browser decoder receives it: one small binary file per image.

Layout (little-endian): the 8 bytes ``SAMEMB01``, a uint32 header length, a UTF-8 JSON header,
zero padding up to ``header["data_offset"]`` (a multiple of 8), then the (1, 256, 64, 64)
features as float16 — 2 MiB, fetched once per image and model as a file URL, never as JSON.
The header carries the ``model_id`` (``<model type>:<weights sha256 or test-tiny-seedN>``, the
same id as the ONNX decoder's) and the image's content hash, so that the browser refuses an
embedding that does not belong to its decoder or to the image on the page.
``sam_core/ui/static/sam_decoder.js`` (``parseEmbedding``) reads it.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

from sam_core.core.sizes import ImageSize

MAGIC = b"SAMEMB01"
SHAPE = (1, 256, 64, 64)


def model_id(model_type: str, weights_id: str) -> str:
    """The id shared by a model's embeddings and its decoder files: ``<type>:<weights id>``."""
    return f"{model_type}:{weights_id}"


def encode(
    features: np.ndarray, *, model_id: str, image_key: str, image_size: ImageSize, input_size: ImageSize
) -> bytes:
    """(1, 256, 64, 64) float features -> the file's bytes (float16 payload)."""
    arr = np.asarray(features, dtype=np.float32)
    if arr.shape != SHAPE:
        raise ValueError(f"features must be {SHAPE}, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("features contain NaN or inf")
    header: dict[str, Any] = {
        "model_id": model_id,
        "image_key": image_key,
        "dtype": "float16",
        "shape": list(SHAPE),
        "image_size": [image_size.width, image_size.height],
        "input_size": [input_size.width, input_size.height],
    }
    # The offset depends on the header's own length: fix it with a wide placeholder first.
    header["data_offset"] = 0
    text = json.dumps(header, separators=(",", ":")).encode()
    offset = -(-(12 + len(text) + 8) // 8) * 8
    header["data_offset"] = offset
    text = json.dumps(header, separators=(",", ":")).encode()
    assert 12 + len(text) <= offset
    head = MAGIC + struct.pack("<I", len(text)) + text
    return head + b"\0" * (offset - len(head)) + arr.astype("<f2").tobytes()


def decode(data: bytes) -> tuple[dict[str, Any], np.ndarray]:
    """The file's bytes -> (header, (1, 256, 64, 64) float16 array). Raises ValueError if malformed."""
    if len(data) < 12 or data[:8] != MAGIC:
        raise ValueError("not a SAM Studio embedding file")
    (n,) = struct.unpack("<I", data[8:12])
    header = json.loads(data[12 : 12 + n])
    offset = int(header["data_offset"])
    count = int(np.prod(SHAPE))
    if len(data) != offset + 2 * count:
        raise ValueError("embedding file has the wrong size")
    return header, np.frombuffer(data, dtype="<f2", count=count, offset=offset).reshape(SHAPE)
