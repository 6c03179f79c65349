"""The one registry of SAM model types: names, checkpoints, one-line summaries.

Standard library only, so ``demo.py --help`` can list the models without importing torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

META_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
DEFAULT_REPO_ID = "ybelkada/segment-anything"


def human_size(n: int) -> str:
    """Bytes as a short decimal string, like download pages: ``375 MB``, ``2.56 GB``."""
    units = ("B", "kB", "MB", "GB")
    size, i = float(n), 0
    while size >= 1000 and i < len(units) - 1:
        size, i = size / 1000, i + 1
    if i == 0:
        return f"{n} B"
    return f"{size:.{2 if size < 10 else 1 if size < 100 else 0}f} {units[i]}"


@dataclass(frozen=True)
class CheckpointSpec:
    """One downloadable checkpoint: where it lives on the Hub and what it must hash to."""

    model_type: str  # "vit_h" | "vit_l" | "vit_b"
    filename: str  # e.g. "sam_vit_h_4b8939.pth"
    hub_path: str  # path inside the Hub repo, e.g. "checkpoints/sam_vit_h_4b8939.pth"
    size: int  # bytes
    sha256: str

    @property
    def meta_url(self) -> str:
        """Meta's direct download URL for the same file."""
        return META_BASE_URL + self.filename


@dataclass(frozen=True)
class ModelSpec:
    """One model type: its checkpoint (None: built-in random weights) and a line for --help / the UI."""

    name: str
    checkpoint: CheckpointSpec | None
    summary: str
    test_only: bool = False


def _sam(name: str, filename: str, size: int, sha256: str, what: str) -> ModelSpec:
    spec = CheckpointSpec(name, filename, f"checkpoints/{filename}", size, sha256)
    return ModelSpec(name, spec, f"{what}, {human_size(size)}")


TEST_TINY = "test-tiny"
DEFAULT_MODEL = "vit_h"

MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        _sam(
            "vit_h",
            "sam_vit_h_4b8939.pth",
            2_564_550_879,
            "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
            "most accurate",
        ),
        _sam(
            "vit_l",
            "sam_vit_l_0b3195.pth",
            1_249_524_607,
            "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
            "balanced",
        ),
        _sam(
            "vit_b",
            "sam_vit_b_01ec64.pth",
            375_042_383,
            "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
            "fastest",
        ),
        ModelSpec(TEST_TINY, None, "random weights, tests only: masks are meaningless", test_only=True),
    )
}

MODEL_TYPES: tuple[str, ...] = tuple(MODELS)
REAL_MODEL_TYPES: tuple[str, ...] = tuple(name for name, m in MODELS.items() if not m.test_only)
CHECKPOINTS: dict[str, CheckpointSpec] = {name: m.checkpoint for name, m in MODELS.items() if m.checkpoint}


def default_checkpoints_dir() -> Path:
    """``$SAM_CHECKPOINTS_DIR`` if set, else ``<repo root>/checkpoints``."""
    env = os.environ.get("SAM_CHECKPOINTS_DIR", "").strip()
    return Path(env).expanduser() if env else Path(__file__).resolve().parents[2] / "checkpoints"
