"""Gradio components tuned for SAM Studio."""

from __future__ import annotations

from typing import Any

import gradio as gr
from gradio.components.annotated_image import AnnotatedImageData, Annotation
from gradio.data_classes import FileData


class RawImage(gr.Image):
    """``gr.Image`` that hands over the uploaded file path without opening it.

    Gradio's own preprocessing opens the file with PIL, so a corrupt upload would fail
    inside Gradio with a generic error; we validate it ourselves and explain the problem.
    """

    is_template = True  # render with the stock Image front end

    def preprocess(self, payload: Any) -> Any:
        if payload is None:
            return None
        if payload.path is not None:
            return str(payload.path)
        return super().preprocess(payload)  # data: URLs (webcam / paste)


class FastAnnotatedImage(gr.AnnotatedImage):
    """``gr.AnnotatedImage`` that takes pre-rendered RGBA annotation PNGs (paths).

    The stock postprocess builds float64 RGBA masks and PNG-encodes them with PIL on every
    update (~0.2 s at 1536 px); the presenter already renders a small RGBA PNG per mask.
    Value: ``(base_image_path, [(annotation_png_path, label), ...])``.
    """

    is_template = True

    def postprocess(self, value: Any) -> AnnotatedImageData | None:
        if value is None:
            return None
        base, annotations = value
        return AnnotatedImageData(
            image=FileData(path=str(base)),
            annotations=[Annotation(image=FileData(path=str(p)), label=label) for p, label in annotations],
        )
