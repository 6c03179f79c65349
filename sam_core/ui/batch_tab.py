"""The Batch tab: a study of SAM over an image set, from the browser.

Upload images (or a zip), optional prompts (JSON/CSV) and reference masks (PNGs, a zip of PNGs
or COCO JSON), or take the bundled examples; choose the model and the experiment; run with a
progress bar; see the results table, the overlays and the plots; download everything as a zip.
The work is :func:`sam_core.batch.runner.run_study`, the same as ``python -m sam_core.batch``.
Batches run one at a time (their own queue), so the Segment tab's clicks never wait behind one.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import gradio as gr

from sam_core.app.studio import Studio
from sam_core.batch.experiments import EXPERIMENTS
from sam_core.batch.runner import StudyConfig, StudyResult, run_study
from sam_core.batch.uploads import BatchLimits, stage_examples, stage_images, stage_reference, zip_folder
from sam_core.core.errors import UserError
from sam_core.core.evaluation import PROMPT_MODES
from sam_core.model.registry import MODEL_TYPES
from sam_core.ui.common import on_gpu, user_errors

TABLE_COLUMNS = ["image", "object", "variant", "score", "area", "perimeter", "iou", "dice", "boundary_f", "decode_ms"]
EXPERIMENT_HELP = {
    "none": "one row per object",
    "box-scale": "the box scaled by 0.8 … 2.0 (needs a box)",
    "points": "box, then box + 1, 2, 3 simulated clicks (needs references)",
    "clicks": "the click simulator up to 20 clicks, NoC@85/90 (needs references)",
}


def _table(result: StudyResult) -> tuple[list[str], list[list[Any]]]:
    """The excerpt's columns (reference columns only when there are references) and rows."""
    columns = [c for c in TABLE_COLUMNS if any(r.get(c) not in (None, "") for r in result.rows)] or TABLE_COLUMNS
    rows = [[round(v, 4) if isinstance(v := r.get(c, ""), float) else v for c in columns] for r in result.rows]
    return columns, rows


def _summary_markdown(result: StudyResult, notes: tuple[str, ...], test_model: bool) -> str:
    s = result.summary
    counts = s.get("counts", {})
    model = s.get("model")
    model = model.get("model", "?") if isinstance(model, dict) else model
    decode = s.get("timings_ms", {}).get("decode_per_row", {})
    lines = [
        f"**{counts.get('rows', len(result.rows))} rows** for {counts.get('objects', '?')} objects in "
        f"{counts.get('images_with_results', '?')} of {counts.get('images', '?')} images "
        f"({counts.get('errors', len(result.errors))} problem(s), see `errors.csv`)"
        f" · model `{model}`"
        f" · torch `{s.get('torch', '?')}` · decoder median {decode.get('median', '?')} ms"
    ]
    if s.get("miou") is not None:
        lines.append(
            f"Against the references: mIoU **{s['miou']:.3f}**, mean Dice {s['mean_dice']:.3f}, "
            f"mean boundary F {s['mean_boundary_f']:.3f}"
        )
    clicks = s.get("clicks")
    if clicks:
        lines.append(
            f"Click simulator: mean NoC@85 **{clicks['mean_noc85']:.2f}**, NoC@90 "
            f"**{clicks['mean_noc90']:.2f}** over {clicks['objects']} objects"
        )
    if test_model:
        lines.append("⚠ test-tiny has random weights: these numbers say nothing about SAM's quality.")
    lines += [f"<small>{n}</small>" for n in notes]
    if result.errors:
        lines.append(
            "Problems: "
            + "; ".join(f"{e.image}: {e.reason}" for e in result.errors[:5])
            + (" …" if len(result.errors) > 5 else "")
        )
    return "\n\n".join(lines)


def _gallery(result: StudyResult) -> list[tuple[str, str]]:
    items = [(str(p), p.stem.replace("_", " ")) for k, p in result.paths.items() if k.endswith("_png") and p.exists()]
    overlays = result.paths.get("overlays")
    if overlays is not None and overlays.is_dir():
        items += [(str(p), p.stem) for p in sorted(overlays.glob("*.png"))[:48]]
    return items


class BatchHandlers:
    """The Batch tab's handlers. Each run gets its own folder in the studio's scratch space."""

    def __init__(self, studio: Studio, limits: BatchLimits) -> None:
        self.studio = studio
        self.limits = limits

    @user_errors
    def run(
        self,
        images: list[str] | None,
        use_examples: bool,
        prompts: str | None,
        references: list[str] | None,
        model: str,
        experiment: str,
        prompt_from: str,
        overlays: bool,
        progress: Any = gr.Progress(),
    ) -> tuple[Any, ...]:
        """Stage the uploads, run the study and return (summary, table, gallery, zip download)."""
        work = self.studio.render_dir / "batch" / uuid.uuid4().hex[:12]
        if use_examples:
            staged = stage_examples(work / "images")
        elif images:
            staged = stage_images(images, work / "images", self.limits)
        else:
            raise UserError("Upload images (or a zip of images), or tick “Use the bundled examples”.")
        reference = stage_reference(references or [], work / "reference", self.limits)
        prompt_file = Path(prompts) if prompts else staged.prompts
        if prompt_file is None and reference is None:
            raise UserError(
                "A study needs prompts: upload a prompt file (JSON or CSV), or reference masks to derive them from."
            )
        seg = self.studio.segmenter(model, lambda f, msg: progress(f, desc=msg))
        config = StudyConfig(
            images=(str(staged.images),),
            out=work / "study",
            prompts=prompt_file,
            reference=reference,
            prompt_from=prompt_from if reference is not None and prompts is None and not use_examples else None,
            experiment=experiment,
            overlays=bool(overlays),
            log_dir=self.studio.outputs_dir / "logs",
            max_images=self.limits.max_images,
        )
        result = run_study(config, segmenter=seg, progress=lambda f, msg: progress(f, desc=msg))
        download = zip_folder(result.out, work / f"study-{work.name}.zip")
        columns, rows = _table(result)
        return (
            _summary_markdown(result, staged.notes, seg.is_test_model),
            gr.update(value=rows, headers=columns),
            _gallery(result),
            gr.update(value=str(download), visible=True),
        )


def build_batch_tab(studio: Studio, limits: BatchLimits | None = None) -> BatchHandlers:
    """Lay out the Batch tab inside the current Blocks context and wire its events."""
    limits = limits or BatchLimits()
    h = BatchHandlers(studio, limits)
    gr.Markdown(
        "Run SAM over a set of images and get the lab report's tables and plots: score, area, perimeter and "
        "timings per object, and IoU / Dice / boundary F against reference masks. The same study runs on a "
        "cluster with `python -m sam_core.batch` (see the README's *Studies*).",
        elem_id="batch-intro",
    )
    with gr.Row(equal_height=False):
        with gr.Column(scale=2):
            images = gr.File(
                label="Images, or a zip of images",
                file_count="multiple",
                type="filepath",
                file_types=["image", ".zip"],
                elem_id="batch-images",
            )
            use_examples = gr.Checkbox(
                False, label="Use the bundled examples (with their preset prompts)", elem_id="batch-examples"
            )
            prompts = gr.File(
                label="Prompts (JSON or CSV; optional with references)",
                type="filepath",
                file_types=[".json", ".csv"],
                elem_id="batch-prompts",
            )
            references = gr.File(
                label="Reference masks (PNGs, a zip of PNGs, or COCO JSON; optional)",
                file_count="multiple",
                type="filepath",
                file_types=[".png", ".zip", ".json"],
                elem_id="batch-references",
            )
            with gr.Row():
                model = gr.Dropdown(list(MODEL_TYPES), value=studio.default_model, label="Model", elem_id="batch-model")
                experiment = gr.Dropdown(
                    [(f"{e} — {EXPERIMENT_HELP.get(e, '')}", e) for e in EXPERIMENTS],
                    value="none",
                    label="Experiment",
                    elem_id="batch-experiment",
                )
            with gr.Row():
                prompt_from = gr.Radio(
                    list(PROMPT_MODES), value="box", label="Prompts from references", elem_id="batch-prompt-from"
                )
                overlays = gr.Checkbox(True, label="Write overlays", elem_id="batch-overlays")
            run = gr.Button("Run study", variant="primary", elem_id="batch-run")
            gr.Markdown(
                f"<small>Limits here: {limits.max_images} images, {limits.max_pixels / 1e6:.0f} MP in all "
                "(`--batch-max-images`, `--batch-max-pixels`).</small>"
            )
        with gr.Column(scale=3):
            summary = gr.Markdown("Results appear here.", elem_id="batch-summary")
            table = gr.Dataframe(
                headers=TABLE_COLUMNS,
                interactive=False,
                label="results.csv (excerpt)",
                elem_id="batch-table",
                max_height=320,
            )
            gallery = gr.Gallery(
                label="Plots and overlays",
                columns=4,
                height=300,
                allow_preview=True,
                object_fit="contain",
                elem_id="batch-gallery",
                interactive=False,
            )
            download = gr.File(label="All outputs (zip)", interactive=False, visible=False, elem_id="batch-download")
    run.click(
        on_gpu(h.run),
        [images, use_examples, prompts, references, model, experiment, prompt_from, overlays],
        [summary, table, gallery, download],
        api_visibility="private",
        concurrency_id="batch",
        concurrency_limit=1,
    )
    return h
