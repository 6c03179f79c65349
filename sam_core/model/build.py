"""Building SAM models (vit_h / vit_l / vit_b / test-tiny), choosing device and precision.

``test-tiny`` is for tests and smoke runs only: seeded random weights, a tiny image encoder,
and the *real* prompt encoder and mask decoder architecture, so click latency is real while
the masks are meaningless.
"""

from __future__ import annotations

import logging
import types
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from segment_anything import sam_model_registry
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)
from segment_anything.modeling.image_encoder import Attention, get_rel_pos

from sam_core.core.errors import CheckpointError
from sam_core.model.registry import MODEL_TYPES, REAL_MODEL_TYPES, TEST_TINY

log = logging.getLogger(__name__)


def build_test_tiny(checkpoint: str | Path | None = None, *, seed: int = 0) -> Sam:
    """Build the ``test-tiny`` SAM: tiny ViT encoder (embed 64, depth 2), real decoder.

    Weights are random but deterministic for a given ``seed`` (the global RNG is left
    untouched). With ``checkpoint`` a state dict of exactly this architecture is loaded.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sam = Sam(
            image_encoder=ImageEncoderViT(
                img_size=1024,
                patch_size=16,
                embed_dim=64,
                depth=2,
                num_heads=2,
                mlp_ratio=4,
                out_chans=256,
                qkv_bias=True,
                norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
                use_rel_pos=True,
                window_size=14,
                global_attn_indexes=(1,),
            ),
            prompt_encoder=PromptEncoder(
                embed_dim=256,
                image_embedding_size=(64, 64),
                input_image_size=(1024, 1024),
                mask_in_chans=16,
            ),
            mask_decoder=MaskDecoder(
                num_multimask_outputs=3,
                transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
                transformer_dim=256,
                iou_head_depth=3,
                iou_head_hidden_dim=256,
            ),
            pixel_mean=[123.675, 116.28, 103.53],
            pixel_std=[58.395, 57.12, 57.375],
        )
        # SAM zero-initialises the relative position tables; give them values so the
        # attention path (and its SDPA rewrite) is exercised for real.
        for module in sam.image_encoder.modules():
            if isinstance(module, Attention) and module.use_rel_pos:
                torch.nn.init.normal_(module.rel_pos_h, std=0.02)
                torch.nn.init.normal_(module.rel_pos_w, std=0.02)
    if checkpoint is not None:
        _load_state_dict(sam, checkpoint)
    return sam.eval()


def _load_state_dict(sam: Sam, checkpoint: str | Path) -> None:
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        sam.load_state_dict(state)
    except (RuntimeError, OSError, EOFError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"Could not load the weights in {checkpoint}: {first}. Is it a SAM checkpoint of the chosen model type?"
        ) from None


def build_model(model_type: str, checkpoint: str | Path | None) -> Sam:
    """Build ``model_type`` on the CPU, loading ``checkpoint`` (required for real models)."""
    if model_type == TEST_TINY:
        return build_test_tiny(checkpoint)
    if model_type not in REAL_MODEL_TYPES:
        raise CheckpointError(f"Unknown model type {model_type!r}; choose one of {', '.join(MODEL_TYPES)}.")
    if checkpoint is None:
        raise CheckpointError(f"{model_type} needs a checkpoint file.")
    sam = sam_model_registry[model_type](checkpoint=None)
    _load_state_dict(sam, checkpoint)
    return sam.eval()


@dataclass(frozen=True)
class Placement:
    """Where and how the model runs. ``dtype`` is the autocast dtype (None = plain fp32)."""

    device: torch.device
    dtype: torch.dtype | None
    warning: str | None = None

    @property
    def precision(self) -> str:
        return "fp32" if self.dtype is None else {torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]


def resolve_placement(device: str = "auto", precision: str = "auto") -> Placement:
    """Pick the device (``auto``: cuda, then mps, then cpu) and the precision.

    ``precision="auto"`` means bf16 autocast on CUDA GPUs that support it, fp32 elsewhere.
    Asking for ``cuda`` (or ``mps``) where there is none falls back to the CPU with a warning.
    """
    device = (device or "auto").lower()
    precision = (precision or "auto").lower()
    warning = None
    has_mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if device == "auto":
        dev = "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    elif device.startswith("cuda"):
        dev = device
        if not torch.cuda.is_available():
            dev = "cpu"
            warning = "CUDA was requested but no CUDA GPU is available: running on the CPU (slow; prefer vit_b)."
    elif device == "mps":
        dev = "mps" if has_mps else "cpu"
        if not has_mps:
            warning = "MPS was requested but is not available: running on the CPU."
    elif device == "cpu":
        dev = "cpu"
    else:
        raise ValueError(f"Unknown device {device!r}; use auto, cuda, mps or cpu.")
    torch_device = torch.device(dev)

    if precision == "auto":
        bf16_ok = torch_device.type == "cuda" and torch.cuda.is_bf16_supported()
        dtype = torch.bfloat16 if bf16_ok else None
    elif precision == "fp32":
        dtype = None
    elif precision == "bf16":
        dtype = torch.bfloat16
    else:
        raise ValueError(f"Unknown precision {precision!r}; use auto, fp32 or bf16.")
    if warning:
        warnings.warn(warning, RuntimeWarning, stacklevel=2)
        log.warning(warning)
    return Placement(torch_device, dtype, warning)


def _sdpa_attention_forward(self: Attention, x: torch.Tensor) -> torch.Tensor:
    """``Attention.forward`` with fused SDPA; the decomposed rel-pos bias is the attn mask.

    x: (B, H, W, C) tokens of one window (or the whole 64x64 grid for global blocks).
    Same maths as the original: softmax(q k^T * scale + rel_h + rel_w) v.
    """
    b, h, w, _ = x.shape
    qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)  # each (B, nH, HW, C)
    bias = None
    if self.use_rel_pos:
        rh = get_rel_pos(h, h, self.rel_pos_h)
        rw = get_rel_pos(w, w, self.rel_pos_w)
        r_q = q.reshape(b, self.num_heads, h, w, -1)
        rel_h = torch.einsum("bnhwc,hkc->bnhwk", r_q, rh.to(r_q.dtype))
        rel_w = torch.einsum("bnhwc,wkc->bnhwk", r_q, rw.to(r_q.dtype))
        bias = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(b, self.num_heads, h * w, h * w)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    out = out.view(b, self.num_heads, h, w, -1).permute(0, 2, 3, 1, 4).reshape(b, h, w, -1)
    return self.proj(out)


def enable_sdpa(sam: Sam) -> int:
    """Swap every image-encoder attention block to the SDPA forward; returns how many."""
    n = 0
    for module in sam.image_encoder.modules():
        if isinstance(module, Attention):
            module.forward = types.MethodType(_sdpa_attention_forward, module)
            n += 1
    return n
