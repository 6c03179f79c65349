"""Studies: SAM over a whole image set, with the lab report's tables, evaluation and experiments.

``python -m sam_core.batch IMAGES... --model M --out DIR`` (see :mod:`sam_core.batch.cli`) or,
from Python (the app's Batch tab)::

    from sam_core.batch import StudyConfig, run_study
    result = run_study(StudyConfig(images=("examples",), prompts=Path("examples/presets.json"),
                                   out=Path("study")), segmenter=seg)

Names are loaded on first use, so ``import sam_core.batch`` alone does not import torch
(``merge`` needs none).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sam_core.batch.inputs import InputError
    from sam_core.batch.runner import StudyConfig, StudyResult, run_study
    from sam_core.batch.shards import merge_study

_EXPORTS = {
    "InputError": "sam_core.batch.inputs",
    "StudyConfig": "sam_core.batch.runner",
    "StudyResult": "sam_core.batch.runner",
    "run_study": "sam_core.batch.runner",
    "merge_study": "sam_core.batch.shards",
}

__all__ = ["InputError", "StudyConfig", "StudyResult", "merge_study", "run_study"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
