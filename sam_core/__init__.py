"""SAM Studio core library: everything that is not Gradio wiring.

>>> from sam_core import Segmenter
>>> seg = Segmenter.from_pretrained("test-tiny")
>>> res = seg.segment(image, points=[(x, y, 1)])   # image: (H, W, 3) uint8 RGB
"""

from .engine import Embedding, Segmenter, SegmentResult
from .errors import CheckpointError, ImageError, PromptError, ResourceError, UserError
from .prompts import Prompts

__all__ = [
    "CheckpointError",
    "Embedding",
    "ImageError",
    "PromptError",
    "Prompts",
    "ResourceError",
    "Segmenter",
    "SegmentResult",
    "UserError",
]
