"""Helpers every tab's handlers share: user-error translation and the GPU decorator."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import gradio as gr

from sam_core.core.errors import UserError

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(fn: F) -> F:
    """Show a :class:`UserError` to the visitor as a Gradio error toast (state stays as it was).

    Anything else is a bug: Gradio logs it with its traceback. ``functools.wraps`` keeps the
    signature Gradio inspects (``gr.SelectData`` hints, ``gr.Progress`` defaults).
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as err:
            raise gr.Error(str(err), duration=8) from None

    return wrapper  # type: ignore[return-value]


def on_gpu(fn: F) -> F:
    """``spaces.GPU(fn)`` on Hugging Face ZeroGPU Spaces, else ``fn`` unchanged.

    The entry points import ``spaces`` before torch when the package exists; it is a no-op
    off ZeroGPU hardware. Apply it to bound methods (the worker then never pickles ``self``).
    """
    spaces = sys.modules.get("spaces")
    return fn if spaces is None else spaces.GPU(fn)


def gpu_handlers(obj: object, names: list[str] | tuple[str, ...]) -> None:
    """Wrap the named bound methods of ``obj`` with :func:`on_gpu`, in place."""
    if sys.modules.get("spaces") is None:
        return
    for name in names:
        setattr(obj, name, on_gpu(getattr(obj, name)))
