"""SAM Studio core library.

>>> from sam_core import Segmenter, load_image
>>> seg = Segmenter.from_pretrained("test-tiny")
>>> res = seg.segment(load_image("examples/coffee.png").rgb, points=[(290, 230, 1)])

Layers, imports going down only (``tests/test_architecture.py`` enforces it)::

    ui      gradio: tabs, handlers, presentation          -> app, runlog, model, core
    app     sessions, the Studio service, exports         -> runlog, model, core
    runlog  the typed run record and its SQLite store     -> core
    model   registry, weights, build, Segmenter           -> core
    core    prompts, sizes, images, geometry, rendering   -> (numpy, OpenCV, PIL only)

The names below are loaded on first use, so ``import sam_core.core`` or ``sam_core.runlog``
does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sam_core.core.errors import CheckpointError, ImageError, PromptError, ResourceError, UserError
    from sam_core.core.images import LoadedImage, load_image
    from sam_core.core.prompts import Prompts
    from sam_core.core.sizes import ImageSize
    from sam_core.model.segmenter import Embedding, Segmenter, SegmentResult

_EXPORTS = {
    "CheckpointError": "sam_core.core.errors",
    "ImageError": "sam_core.core.errors",
    "PromptError": "sam_core.core.errors",
    "ResourceError": "sam_core.core.errors",
    "UserError": "sam_core.core.errors",
    "ImageSize": "sam_core.core.sizes",
    "LoadedImage": "sam_core.core.images",
    "load_image": "sam_core.core.images",
    "Prompts": "sam_core.core.prompts",
    "Embedding": "sam_core.model.segmenter",
    "Segmenter": "sam_core.model.segmenter",
    "SegmentResult": "sam_core.model.segmenter",
}

__all__ = [
    "CheckpointError",
    "Embedding",
    "ImageError",
    "ImageSize",
    "LoadedImage",
    "PromptError",
    "Prompts",
    "ResourceError",
    "SegmentResult",
    "Segmenter",
    "UserError",
    "load_image",
]
assert sorted(__all__) == sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sam_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
