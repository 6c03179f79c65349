"""Monitoring: the run log as signals, a dashboard, alert rules, Prometheus metrics and reports.

Imports only ``runlog`` and ``core`` (no Gradio, no torch). Entry points: :func:`build_dashboard`
(what the Monitor tab shows), :func:`load_rules` / :func:`evaluate` (alerts),
:class:`MetricsExporter` (``/metrics``), ``python -m sam_core.monitor report|check|summary``.
"""

from sam_core.monitor.alerts import DEFAULT_RULES, Alert, Rule, RulesError, RuleSet, evaluate, load_rules
from sam_core.monitor.dashboard import Dashboard, build_dashboard
from sam_core.monitor.data import WINDOWS, Frame, export_window_csv, load_frame

__all__ = [
    "DEFAULT_RULES",
    "WINDOWS",
    "Alert",
    "Dashboard",
    "Frame",
    "Rule",
    "RuleSet",
    "RulesError",
    "build_dashboard",
    "evaluate",
    "export_window_csv",
    "load_frame",
    "load_rules",
]
