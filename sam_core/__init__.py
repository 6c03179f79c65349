"""SAM Studio core library.

>>> from sam_core import Segmenter
>>> seg = Segmenter.from_pretrained("test-tiny")
>>> res = seg.segment(image, points=[(x, y, 1)])   # image: (H, W, 3) uint8 RGB

Layers (imports go down only): ``ui`` -> ``app`` -> ``runlog`` / ``model`` -> ``core``.
"""

from sam_core.core.errors import CheckpointError, ImageError, PromptError, ResourceError, UserError
from sam_core.core.images import LoadedImage, load_image
from sam_core.core.prompts import Prompts
from sam_core.model.segmenter import Embedding, Segmenter, SegmentResult

__all__ = [
    "CheckpointError",
    "Embedding",
    "ImageError",
    "LoadedImage",
    "PromptError",
    "Prompts",
    "ResourceError",
    "SegmentResult",
    "Segmenter",
    "UserError",
    "load_image",
]
