"""The Blocks app: a header and one tab per feature. Each tab lives in its own module.

Per-visitor state lives in ``gr.State`` (a :class:`SessionState` per tab); the Studio holds
only shared, keyed and locked caches. A new feature adds a tab module and one line here.
"""

from __future__ import annotations

import gradio as gr

from sam_core.app.studio import Studio
from sam_core.batch.uploads import BatchLimits
from sam_core.monitor.alerts import RuleSet
from sam_core.ui.batch_tab import build_batch_tab
from sam_core.ui.monitor_tab import build_monitor_tab
from sam_core.ui.segment_tab import build_segment_tab

CSS = """
/* Gradio maps a click on the input image assuming object-fit: scale-down (never upscaled);
   contain would upscale small images and shift every click on them. */
#input-image img { object-fit: scale-down; }
#result img { object-fit: contain; }
#candidates .caption-label { white-space: normal; font-size: 0.8rem; }
#header .warning { color: #b45309; font-weight: 600; }
#status { min-height: 1.5em; }
#metrics table.metrics { width: 100%; border-collapse: collapse; font-size: 0.85rem; }
#metrics table.metrics th { text-align: left; font-weight: 500; opacity: 0.75; padding: 3px 8px; white-space: nowrap; }
#metrics table.metrics td { font-family: ui-monospace, monospace; padding: 3px 8px; }
#metrics table.metrics tr:nth-child(odd) { background: var(--table-odd-background-fill); }
.coming-soon { max-width: 60rem; }
#monitor-summary .warning { color: #b45309; font-weight: 600; }
/* The browser decoder (static/sam_decoder.js): while it draws the clicks, its candidate strip
   replaces the server's gallery and chosen-mask image, and its canvas overlays the input. */
#browser-decoder { display: none; }
body.sam-browser-decoder #candidates, body.sam-browser-decoder #result { display: none; }
#objects .swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px; vertical-align: middle; }
#shortcuts kbd { border: 1px solid var(--border-color-primary); border-radius: 3px; padding: 0 4px; font-size: 0.8rem; }
#browser-candidates .bd-note { font-size: 0.85rem; opacity: 0.8; min-height: 1.2em; }
#browser-candidates .bd-title { display: none; font-size: 0.85rem; opacity: 0.8; margin: 2px 0; }
body.sam-browser-decoder #browser-candidates .bd-title { display: block; }
#browser-candidates .bd-strip { display: flex; gap: 8px; }
#browser-candidates figure { flex: 1 1 0; min-width: 0; margin: 0; padding: 3px; border: 2px solid transparent;
  border-radius: 6px; cursor: pointer; }
#browser-candidates figure.bd-chosen { border-color: var(--color-accent); }
#browser-candidates canvas { display: block; width: 100%; height: auto; }
#browser-candidates figcaption { font-size: 0.8rem; }
"""


def header_markdown(studio: Studio) -> str:
    """Model, device and precision, with a warning for random weights or a missing GPU."""
    seg = studio.segmenter()
    info = seg.info()
    line = (
        f"## SAM Studio — Segment Anything\n"
        f"Model **{info['model']}** · device **{info['device']}** · precision **{info['precision']}**"
        + (" · SDPA" if info["sdpa"] else "")
    )
    if seg.is_test_model:
        line += (
            "\n\n<span class='warning'>⚠ test-tiny: random weights for tests and smoke runs. "
            "Its masks are meaningless. Start with `--model vit_b` (or vit_h) for real segmentation.</span>"
        )
    if seg.placement.warning:
        line += f"\n\n<span class='warning'>⚠ {seg.placement.warning}</span>"
    return line


def build_app(
    studio: Studio,
    *,
    batch_limits: BatchLimits | None = None,
    alert_rules: RuleSet | None = None,
    decode_clicks: str = "auto",
) -> gr.Blocks:
    """Build the Blocks app around ``studio`` (launch it with ``css=CSS``).

    ``alert_rules``: the Monitor tab's; ``decode_clicks``: where new visitors' clicks are decoded
    (auto: in their browser when WebAssembly works, else on the server).
    """
    # delete_cache: every 30 min, drop cached files (renders, uploads) older than an hour
    with gr.Blocks(title="SAM Studio", delete_cache=(1800, 3600)) as app:
        gr.Markdown(header_markdown(studio), elem_id="header")
        with gr.Tabs(elem_id="tabs"):
            with gr.Tab("Segment", id="segment", elem_id="tab-segment"):
                build_segment_tab(studio, decode_clicks=decode_clicks)
            with gr.Tab("Batch", id="batch", elem_id="tab-batch"):
                build_batch_tab(studio, batch_limits)
            with gr.Tab("Monitor", id="monitor", elem_id="tab-monitor") as monitor_tab:
                build_monitor_tab(studio, monitor_tab, alert_rules)
    return app
