"""``python -m sam_core.monitor report | check | summary``: the monitoring command line.

* ``report --dir outputs/logs --out report.html``: one self-contained HTML file.
* ``check --dir outputs/logs``: prints the firing alerts; exit status 1 when any fires (cron, CI).
* ``summary --dir outputs/logs``: every signal of the window as JSON (``python -m sam_core.runlog``
  still prints its older, smaller summary).

Errors a user can cause (no log, a bad rules file) print ``error: ...`` and exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from sam_core.core.errors import UserError
from sam_core.monitor.alerts import load_rules
from sam_core.monitor.dashboard import build_dashboard
from sam_core.monitor.data import WINDOWS
from sam_core.monitor.report import format_value, write_report

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m sam_core.monitor",
        description="Monitoring of SAM Studio's run log: HTML report, alert check, signal summary.",
    )
    sub = ap.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", default="outputs/logs", help="the run-log folder (default outputs/logs)")
    common.add_argument("--rules", help="alert rules (TOML); default: the shipped sam_core/monitor/alerts.toml")
    common.add_argument(
        "--window",
        choices=list(WINDOWS),
        help="time window ending now (default: the rules file's [check] window, 'day' in the defaults)",
    )
    rep = sub.add_parser("report", parents=[common], help="write a self-contained HTML report")
    rep.add_argument("--out", default="report.html", help="the HTML file to write (default report.html)")
    sub.add_parser("check", parents=[common], help="print the firing alerts; exit 1 when any fires")
    sub.add_parser("summary", parents=[common], help="print every signal of the window as JSON")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        rules = load_rules(args.rules)
        window = args.window or rules.window
        t0 = time.perf_counter()
        db = build_dashboard(args.dir, window, rules)
        if args.command == "report":
            path = write_report(db, args.out)
            print(f"wrote {path} ({len(db.frame)} records, {len(db.firing)} alerts firing)")
            return 0
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.command == "summary":
        out = {"window": window, "records_in_log": db.total_records}
        out.update({name: v.value for name, v in db.signals.items()})
        out["alerts_firing"] = [a.rule for a in db.firing]
        print(json.dumps(out, indent=1))
        return 0
    # check
    firing = db.firing
    quiet = [a for a in db.alerts if not a.firing]
    print(
        f"{len(firing)} alert{'s' if len(firing) != 1 else ''} firing over the last {window} "
        f"({len(db.frame)} records; {time.perf_counter() - t0:.2f} s)"
    )
    for a in firing:
        since = f", since {a.since_text()}" if a.since is not None else ""
        print(
            f"FIRING {a.rule}: {a.signal} = {format_value(a.value, a.signal)} {a.op} "
            f"{format_value(a.threshold, a.signal)}{since}"
        )
        print(f"  -> {a.message}")
        if a.detail:
            print(f"     {a.detail}")
    for a in quiet:
        value = format_value(a.value, a.signal) if a.status == "ok" else f"{a.samples} samples"
        print(f"{a.status:>7} {a.rule}: {a.signal} {value}")
    return 1 if firing else 0
