"""The self-contained HTML report: plots embedded as PNG, the alert table and the input-drift table.

One file, no external resources (no scripts, fonts or images to fetch), so it can be mailed or
archived. Every value from the log is HTML-escaped.
"""

from __future__ import annotations

import datetime as dt
import html
import math
import os
from pathlib import Path

from sam_core.core.files import write_atomic
from sam_core.monitor.alerts import Alert
from sam_core.monitor.dashboard import Dashboard, DriftRow
from sam_core.monitor.plots import PLOTS, figure_png_b64

__all__ = ["alert_rows", "drift_rows", "format_value", "render_html", "write_report"]

_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #0f172a; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: 0.2rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
.meta { color: #475569; } .warn { color: #b45309; font-weight: 600; }
table { border-collapse: collapse; width: 100%; margin: 0.5rem 0; font-size: 0.9rem; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #e2e8f0; vertical-align: top; }
th { font-weight: 600; background: #f8fafc; } td:nth-child(2), td:nth-child(3) { white-space: nowrap; }
tr.firing td { background: #fef2f2; } tr.firing td.status { color: #b91c1c; font-weight: 700; }
td.status.ok { color: #15803d; } td.status.nodata { color: #64748b; }
img { max-width: 100%; border: 1px solid #e2e8f0; margin: 0.5rem 0; }
.plots { display: grid; grid-template-columns: repeat(auto-fit, minmax(30rem, 1fr)); gap: 1rem; }
"""

ALERT_HEADERS = ["rule", "status", "value", "condition", "since", "suggestion"]
DRIFT_HEADERS = ["input", "PSI", "noise level", "p-value", "reference median", "window median", "images (ref / window)"]


def format_value(value: float | None, signal: str = "") -> str:
    """A signal's value for a table: ms as integers, shares as %, others with 3 significant digits."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if signal.endswith("_share") or signal == "export_rate":
        return f"{100 * value:.1f} %"
    if "_ms_" in signal:
        return f"{value:.0f} ms"
    return f"{value:.3g}"


def alert_rows(alerts: list[Alert]) -> list[list[str]]:
    """One row per rule (firing first): rule, status, value, condition, since, suggestion."""
    order = {"firing": 0, "ok": 1, "no data": 2}
    rows = []
    for a in sorted(alerts, key=lambda a: order.get(a.status, 3)):
        rows.append(
            [
                a.rule,
                a.status,
                format_value(a.value, a.signal),
                f"{a.signal} {a.op} {format_value(a.threshold, a.signal)}" + (f" ({a.samples} samples)"),
                a.since_text(),
                a.message or a.detail,
            ]
        )
    return rows


def drift_rows(drift: list[DriftRow]) -> list[list[str]]:
    """One row per input feature: PSI, its noise level, p-value, medians, sample sizes."""
    rows = []
    for d in drift:
        r = d.result
        if r is None:
            rows.append([f"{d.label} ({d.unit})", "–", "–", "–", "–", "–", f"{d.reference.size} / {d.current.size}"])
            continue
        rows.append(
            [
                f"{d.label} ({d.unit})",
                f"{r.psi:.3f}",
                f"{r.noise:.3f}",
                f"{r.p_value:.2g}",
                f"{r.ref_median:.3g}",
                f"{r.cur_median:.3g}",
                f"{r.n_ref} / {r.n_cur}",
            ]
        )
    return rows


def _table(headers: list[str], rows: list[list[str]], classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = classes[i] if classes else ""
        cells = []
        for j, cell in enumerate(row):
            extra = f' class="status {cls.replace(" ", "")}"' if headers[j] == "status" else ""
            cells.append(f"<td{extra}>{html.escape(str(cell))}</td>")
        body.append(f'<tr class="{html.escape(cls)}">' + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_html(db: Dashboard) -> str:
    """The report of ``db`` as one HTML document."""
    now = dt.datetime.fromtimestamp(db.now, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    firing = db.firing
    s = db.signals
    summary = (
        f"{int(s['count'].value or 0)} records in the window ({html.escape(db.span_text())}), "
        f"{db.total_records} in the log; models: {html.escape(', '.join(db.models) or '–')}; "
        f"rules: {html.escape(db.rules.source)}; drift reference: {html.escape(db.rules.reference.describe())}."
    )
    warn = ""
    if db.only_test_models:
        warn = (
            "<p class='warn'>These runs come from test-tiny (random weights): its scores and masks are "
            "meaningless; the output and quality rules skip it.</p>"
        )
    alert_html = _table(
        ALERT_HEADERS,
        alert_rows(db.alerts),
        [a.status for a in sorted(db.alerts, key=lambda a: {"firing": 0, "ok": 1, "no data": 2}.get(a.status, 3))],
    )
    plots = "".join(
        f"<figure><img alt='{html.escape(title)}' src='{figure_png_b64(fn(db))}'></figure>"
        for title, fn in PLOTS.values()
    )
    headline = f"{len(firing)} alert{'s' if len(firing) != 1 else ''} firing" if firing else "no alert firing"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>SAM Studio monitoring report</title>
<style>{_CSS}</style></head><body>
<h1>SAM Studio monitoring report — {html.escape(headline)}</h1>
<p class="meta">Window: {html.escape(db.window)}, generated {now}. {summary}</p>
{warn}
<h2>Alerts</h2>
{alert_html}
<h2>Input drift against the reference</h2>
<p class="meta">PSI per input feature, one value per distinct image. The noise level is the PSI expected
when nothing changed, at these sample sizes; a drift rule fires when the PSI is above its threshold and
the p-value is small.</p>
{_table(DRIFT_HEADERS, drift_rows(db.drift))}
<h2>Plots</h2>
<div class="plots">{plots}</div>
</body></html>
"""


def write_report(db: Dashboard, dest: str | os.PathLike[str]) -> Path:
    """Write the HTML report atomically; returns the path."""
    return write_atomic(dest, render_html(db).encode("utf-8"))
