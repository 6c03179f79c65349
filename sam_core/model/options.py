"""Command-line options shared by ``demo.py`` / ``sam-studio`` and ``python -m sam_core.batch``.

Standard library only (argparse and the registry), so ``--help`` never imports torch. Every
option falls back to an environment variable, named in its help.
"""

from __future__ import annotations

import argparse
import os
from typing import overload

from sam_core.model.registry import DEFAULT_REPO_ID, default_checkpoints_dir


@overload
def env(name: str) -> str | None: ...
@overload
def env(name: str, default: str) -> str: ...
def env(name: str, default: str | None = None) -> str | None:
    """The environment variable ``name``, or ``default`` when it is unset or empty."""
    value = os.environ.get(name)
    return value if value else default


def add_weights_arguments(p: argparse.ArgumentParser) -> None:
    """``--checkpoint``, ``--checkpoints-dir``, ``--hub-repo``, ``--device``, ``--precision``, ``--attention``."""
    p.add_argument(
        "--checkpoint",
        default=env("SAM_CHECKPOINT"),
        help="use this local .pth file instead of downloading [env SAM_CHECKPOINT]",
    )
    p.add_argument(
        "--checkpoints-dir",
        default=env("SAM_CHECKPOINTS_DIR", str(default_checkpoints_dir())),
        help="where downloaded weights are kept and verified [env SAM_CHECKPOINTS_DIR]",
    )
    p.add_argument(
        "--hub-repo",
        default=env("SAM_HUB_REPO", DEFAULT_REPO_ID),
        help="Hugging Face Hub repo holding the checkpoints [env SAM_HUB_REPO]",
    )
    p.add_argument(
        "--device",
        choices=["auto", "cuda", "mps", "cpu"],
        default=env("SAM_DEVICE", "auto"),
        help="auto = cuda, then mps, then cpu; a missing GPU falls back to the CPU [env SAM_DEVICE]",
    )
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default=env("SAM_PRECISION", "auto"),
        help="auto = bf16 autocast on CUDA GPUs that support it, fp32 elsewhere [env SAM_PRECISION]",
    )
    p.add_argument(
        "--attention",
        choices=["sdpa", "eager"],
        default=env("SAM_ATTENTION", "sdpa"),
        help="image-encoder attention: fused SDPA (~2x faster encode, same maths) or SAM's "
        "original eager code [env SAM_ATTENTION]",
    )


def add_decoder_argument(p: argparse.ArgumentParser) -> None:
    """``--decoder {auto,torch,onnx}``: the server-side mask decoder."""
    p.add_argument(
        "--decoder",
        choices=["auto", "torch", "onnx"],
        default=env("SAM_DECODER", "auto"),
        help="server-side mask decoder: auto = onnxruntime on CPU (measured faster), torch on GPUs; "
        "onnx = onnxruntime everywhere; torch = PyTorch (exactly SamPredictor's numbers) [env SAM_DECODER]",
    )
