"""The Monitor tab: the run log as a dashboard (plots, alerts, input drift) and a CSV of the window.

Everything shown is computed by :func:`sam_core.monitor.build_dashboard` from the shared run
log; the plots are matplotlib figures (``sam_core.monitor.plots``) in ``gr.Plot``. Visitors see
aggregates only: the CSV leaves out file names and prompts (``PRIVATE_FIELDS``), which belong to
the visitors who made them.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import gradio as gr

from sam_core.app.studio import Studio
from sam_core.core.files import prune_dir
from sam_core.monitor.alerts import RuleSet, load_rules
from sam_core.monitor.dashboard import Dashboard, build_dashboard
from sam_core.monitor.data import WINDOWS, FrameCache, LogNotFoundError, export_window_csv
from sam_core.monitor.plots import PLOTS
from sam_core.monitor.report import ALERT_HEADERS, DRIFT_HEADERS, alert_rows, drift_rows, format_value
from sam_core.ui.common import user_errors

WINDOW_LABELS = {"Last hour": "hour", "Last day": "day", "Last week": "week", "All": "all"}
DEFAULT_WINDOW = "Last day"


class MonitorView(NamedTuple):
    """What a refresh updates, in the order of the ``outputs`` list."""

    summary: str
    alerts: list[list[str]]
    drift: list[list[str]]
    plots: tuple[Any, ...]  # one matplotlib Figure (or None) per entry of PLOTS


def summary_markdown(db: Dashboard) -> str:
    """The headline: firing alerts, records, models and the main signals of the window."""
    s = db.signals
    firing = db.firing
    head = (
        f"**{len(firing)} alert{'s' if len(firing) != 1 else ''} firing**: " + ", ".join(a.rule for a in firing)
        if firing
        else "**No alert firing.**"
    )
    lines = [
        head,
        f"{int(s['count'].value or 0)} records in the window ({db.span_text()}), {db.total_records} in the log · "
        f"models: {', '.join(db.models) or '–'} · rules: {db.rules.source} · drift reference: "
        f"{db.rules.reference.describe()}.",
        "decode p50/p95/p99: "
        + " / ".join(format_value(s[f"decode_ms_p{p}"].value, "decode_ms_p") for p in (50, 95, 99))
        + " · encode p95 (misses): "
        + format_value(s["encode_ms_p95"].value, "encode_ms_p")
        + " · mean score: "
        + format_value(s["mean_score"].value)
        + " · empty / full masks: "
        + format_value(s["empty_share"].value, "empty_share")
        + " / "
        + format_value(s["full_share"].value, "full_share")
        + " · clicks per object: "
        + format_value(s["mean_clicks_per_object"].value)
        + " · mIoU: "
        + format_value(s["miou"].value),
    ]
    if db.only_test_models:
        lines.append(
            "<span class='warning'>⚠ These runs come from test-tiny (random weights): scores and masks are "
            "meaningless, and the output and quality rules skip them.</span>"
        )
    return "\n\n".join(lines)


class MonitorHandlers:
    """Event handlers of the Monitor tab; tests call them as Gradio does."""

    def __init__(self, studio: Studio, rules: RuleSet | None = None) -> None:
        self.studio = studio
        self.log_dir = studio.runlog.path.parent
        self.rules = rules or load_rules()
        self.cache = FrameCache(self.log_dir)  # shared by every visitor: a refresh reads only new rows

    def _window(self, label: str | None) -> str:
        return WINDOW_LABELS.get(label or DEFAULT_WINDOW, "day")

    def dashboard(self, label: str | None) -> Dashboard | None:
        """The dashboard of the window, or None when nothing has been logged yet."""
        try:
            frame = self.cache.load()
        except LogNotFoundError:
            return None
        return build_dashboard(frame, self._window(label), self.rules)

    @user_errors
    def refresh(self, label: str | None) -> MonitorView:
        t0 = time.perf_counter()
        db = self.dashboard(label)
        if db is None or db.total_records == 0:
            return MonitorView("No runs logged yet: segment something first.", [], [], tuple(None for _ in PLOTS))
        plots = tuple(fn(db) for _, fn in PLOTS.values())
        summary = summary_markdown(db) + f"\n\n<small>computed in {time.perf_counter() - t0:.2f} s</small>"
        return MonitorView(summary, alert_rows(db.alerts), drift_rows(db.drift), plots)

    def export_file(self, label: str | None) -> Any:
        """``export_csv`` as an update that shows the (hidden until then) ``gr.File``."""
        path = self.export_csv(label)
        return gr.update(value=path, visible=path is not None)

    @user_errors
    def export_csv(self, label: str | None) -> str | None:
        """The window's records as CSV (without file names and prompts); a path for ``gr.File``."""
        window = self._window(label)
        span = WINDOWS[window]
        folder = self.studio.render_dir / "monitor"
        prune_dir(folder, 600)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        try:
            path = export_window_csv(
                self.log_dir, folder / f"runs-{window}-{stamp}.csv", None if span is None else time.time() - span
            )
        except LogNotFoundError:
            return None
        return str(path)


def build_monitor_tab(studio: Studio, tab: gr.Tab | None = None, rules: RuleSet | None = None) -> MonitorHandlers:
    """Lay out the Monitor tab (inside the current ``gr.Tab``) and wire its events.

    ``tab``: refresh whenever it is selected; ``rules``: the alert rules (default: the shipped ones).
    """
    h = MonitorHandlers(studio, rules)
    with gr.Row(equal_height=True):
        window = gr.Radio(
            list(WINDOW_LABELS),
            value=DEFAULT_WINDOW,
            label="Time window (ending now)",
            elem_id="monitor-window",
            scale=3,
        )
        refresh = gr.Button("Refresh", elem_id="monitor-refresh", scale=1)
        export = gr.Button("Export CSV of the window", elem_id="monitor-export", scale=1)
    csv_file = gr.File(label="CSV of the window (no file names or prompts)", elem_id="monitor-csv", visible=False)
    summary = gr.Markdown("Open this tab or press *Refresh* to read the run log.", elem_id="monitor-summary")
    alerts = gr.Dataframe(
        headers=ALERT_HEADERS,
        label="Alerts",
        elem_id="monitor-alerts",
        interactive=False,
        wrap=True,
        column_widths=["15%", "7%", "8%", "21%", "13%", "36%"],
        max_height=900,
    )
    plots: dict[str, gr.Plot] = {}
    with gr.Row():
        plots["latency"] = gr.Plot(label="Latency", elem_id="monitor-plot-latency")
        plots["outputs"] = gr.Plot(label="Outputs", elem_id="monitor-plot-outputs")
    plots["inputs"] = gr.Plot(label="Input drift", elem_id="monitor-plot-inputs")
    drift = gr.Dataframe(
        headers=DRIFT_HEADERS,
        label="Input drift (PSI per input, one value per image)",
        elem_id="monitor-drift",
        interactive=False,
    )
    with gr.Row():
        plots["area"] = gr.Plot(label="Area fraction", elem_id="monitor-plot-area")
        plots["clicks"] = gr.Plot(label="Clicks per object", elem_id="monitor-plot-clicks")
    plots["quality"] = gr.Plot(label="Quality (IoU)", elem_id="monitor-plot-quality")

    outputs = [summary, alerts, drift, *(plots[k] for k in PLOTS)]

    def show(label: str | None) -> list[Any]:
        view = h.refresh(label)
        return [view.summary, view.alerts, view.drift, *view.plots]

    opts: dict[str, Any] = dict(concurrency_id="monitor", concurrency_limit=1, api_visibility="private")
    window.change(show, window, outputs, **opts)
    refresh.click(show, window, outputs, **opts)
    if tab is not None:
        tab.select(show, window, outputs, **opts)
    export.click(h.export_file, window, csv_file, **opts)
    return h
