"""Error types. A ``UserError`` carries a message meant for the person using the tool.

The UI turns it into ``gr.Error(str(err))``, the CLI prints it without a traceback, and
``gradio_client`` callers receive the same text. Anything that is not a ``UserError`` is a
bug (or an environment problem) and is logged with its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; ``str(err)`` is a complete, human-readable message."""


class ImageError(UserError):
    """The uploaded file is not a usable image (unreadable, empty, too large, ...)."""


class PromptError(UserError):
    """The points/box prompt is invalid (out of the image, bad label, bad JSON, ...)."""


class CheckpointError(UserError):
    """Model weights cannot be found, downloaded or verified."""


class ResourceError(UserError):
    """The machine ran out of something (GPU memory, disk) while serving a request."""
