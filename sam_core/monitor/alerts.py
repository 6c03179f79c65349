"""Alert rules: loaded from a small TOML file (defaults in ``alerts.toml``), evaluated on a window.

A rule compares one of :data:`~sam_core.monitor.signals.SIGNALS` with a threshold and says in
plain words what to check when it fires. ``since``: the time from which the rule has been
firing. The window is cut into time buckets; walking back from the newest, buckets are merged
into chunks of at least three times ``min_samples`` samples, each judged alone, and ``since``
is the start of the oldest chunk of the latest run of chunks on which the rule fires (no
state is kept between runs, so ``check`` from cron gives the same answer as the tab). With
too few samples for one chunk it is the window's first record.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import string
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sam_core.core.errors import UserError
from sam_core.monitor.data import WINDOWS, Frame
from sam_core.monitor.signals import SIGNALS, Context, Reference, Value

__all__ = ["DEFAULT_RULES", "Alert", "Rule", "RuleSet", "RulesError", "evaluate", "load_rules"]

DEFAULT_RULES = Path(__file__).with_name("alerts.toml")

#: Time buckets used to find since when a rule fires.
SINCE_BUCKETS = 48
#: A chunk judged for ``since`` has at least this many times a rule's ``min_samples``.
SINCE_CHUNK = 3


class RulesError(UserError):
    """The alert-rules file is missing or malformed; the message says where."""


@dataclass(frozen=True)
class Rule:
    """One alert rule: fire when ``signal`` is ``above`` (op ">") or ``below`` (op "<") ``threshold``."""

    name: str
    signal: str
    op: str
    threshold: float
    message: str
    min_samples: int = 1
    skip_models: tuple[str, ...] = ()
    max_p: float = 0.01
    words: tuple[str, str] = ("lower", "higher")
    enabled: bool = True

    @property
    def is_drift(self) -> bool:
        return self.signal.startswith("psi_")

    def judge(self, value: Value, min_samples: int | None = None) -> bool | None:
        """True (firing), False (quiet) or None (fewer samples than ``min_samples``, default the rule's)."""
        if value.value is None or value.samples < (self.min_samples if min_samples is None else min_samples):
            return None
        if value.reference is not None and value.reference < self.min_samples:  # drift: too small a reference
            return None
        over = value.value > self.threshold if self.op == ">" else value.value < self.threshold
        if over and self.is_drift and value.p_value is not None:
            over = value.p_value < self.max_p
        return bool(over)

    def suggestion(self, value: Value) -> str:
        """The message with ``{value}``, ``{threshold}`` and ``{direction}`` filled in."""
        direction = ""
        if value.direction is not None:
            direction = self.words[1] if value.direction == "higher" else self.words[0]
        fields = {
            "value": value.value if value.value is not None else math.nan,
            "threshold": self.threshold,
            "direction": direction,
        }
        try:
            return string.Formatter().vformat(self.message, (), fields)
        except (KeyError, IndexError, ValueError, AttributeError):
            return self.message


@dataclass(frozen=True)
class RuleSet:
    """The rules, the drift reference and the window ``check`` evaluates."""

    rules: tuple[Rule, ...]
    reference: Reference = field(default_factory=Reference)
    window: str = "day"
    source: str = "defaults"


@dataclass(frozen=True)
class Alert:
    """A rule's state on a window: ``status`` is "firing", "ok" or "no data"."""

    rule: str
    signal: str
    op: str
    threshold: float
    value: float | None
    samples: int
    status: str
    since: float | None
    message: str
    detail: str = ""

    @property
    def firing(self) -> bool:
        return self.status == "firing"

    def since_text(self) -> str:
        if self.since is None:
            return ""
        return dt.datetime.fromtimestamp(self.since, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "signal": self.signal,
            "status": self.status,
            "value": self.value,
            "condition": f"{self.op} {self.threshold:g}",
            "samples": self.samples,
            "since": self.since_text() or None,
            "message": self.message,
            "detail": self.detail,
        }


# --------------------------------------------------------------------------- loading


def _parse_time(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime | dt.date):
        when = value if isinstance(value, dt.datetime) else dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise RulesError(f"{where}: {value!r} is not an ISO-8601 time such as 2025-06-01T00:00:00Z") from None
    else:
        raise RulesError(f"{where}: expected a time, got {value!r}")
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


_RULE_KEYS = {"signal", "above", "below", "message", "min_samples", "skip_models", "max_p", "words", "enabled"}


def _rule(name: str, spec: Any, where: str) -> Rule:
    if not isinstance(spec, dict):
        raise RulesError(f"{where}: [rules.{name}] must be a table")
    unknown = set(spec) - _RULE_KEYS
    if unknown:
        raise RulesError(f"{where}: [rules.{name}] has unknown keys {sorted(unknown)} (allowed: {sorted(_RULE_KEYS)})")
    signal = spec.get("signal")
    if signal not in SIGNALS:
        raise RulesError(f"{where}: [rules.{name}] signal {signal!r} is not one of: {', '.join(SIGNALS)}")
    if ("above" in spec) == ("below" in spec):
        raise RulesError(f"{where}: [rules.{name}] needs exactly one of 'above' or 'below'")
    op, threshold = (">", spec["above"]) if "above" in spec else ("<", spec["below"])
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise RulesError(f"{where}: [rules.{name}] threshold must be a number, got {threshold!r}")
    words = spec.get("words", ["lower", "higher"])
    if not (isinstance(words, list) and len(words) == 2 and all(isinstance(w, str) for w in words)):
        raise RulesError(f"{where}: [rules.{name}] words must be two strings: [when lower, when higher]")
    skip = spec.get("skip_models", [])
    if not (isinstance(skip, list) and all(isinstance(m, str) for m in skip)):
        raise RulesError(f"{where}: [rules.{name}] skip_models must be a list of model names")
    try:
        min_samples = int(spec.get("min_samples", 1))
        max_p = float(spec.get("max_p", 0.01))
    except (TypeError, ValueError):
        raise RulesError(f"{where}: [rules.{name}] min_samples and max_p must be numbers") from None
    return Rule(
        name=name,
        signal=signal,
        op=op,
        threshold=float(threshold),
        message=str(spec.get("message", f"{signal} is {op} {threshold}")),
        min_samples=max(1, min_samples),
        skip_models=tuple(skip),
        max_p=max_p,
        words=(words[0], words[1]),
        enabled=bool(spec.get("enabled", True)),
    )


def load_rules(path: str | os.PathLike[str] | None = None) -> RuleSet:
    """The rules in ``path`` (TOML), or the shipped defaults (``alerts.toml``) when None.

    Raises :class:`RulesError` with the file name and the problem.
    """
    file = Path(path) if path is not None else DEFAULT_RULES
    where = file.name
    try:
        doc = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RulesError(f"alert rules file {file} not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise RulesError(f"cannot read the alert rules file {where}: {err}") from None
    except tomllib.TOMLDecodeError as err:
        raise RulesError(f"{where} is not valid TOML: {err}") from None
    ref = doc.get("reference", {})
    check = doc.get("check", {})
    rules_doc = doc.get("rules", {})
    if not isinstance(ref, dict) or not isinstance(check, dict) or not isinstance(rules_doc, dict):
        raise RulesError(f"{where}: [reference], [check] and [rules.*] must be tables")
    try:
        first = int(ref.get("first_images", 50))
    except (TypeError, ValueError):
        raise RulesError(f"{where}: [reference] first_images must be a whole number") from None
    reference = Reference(
        first_images=first,
        start=_parse_time(ref.get("start"), f"{where} [reference] start"),
        end=_parse_time(ref.get("end"), f"{where} [reference] end"),
    )
    if reference.start is None and reference.end is not None:
        raise RulesError(f"{where}: [reference] end needs a start")
    window = check.get("window", "day")
    if window not in WINDOWS:
        raise RulesError(f"{where}: [check] window must be one of {', '.join(WINDOWS)}, got {window!r}")
    rules = tuple(_rule(name, spec, where) for name, spec in rules_doc.items())
    return RuleSet(rules, reference, window, "defaults" if path is None else str(file))


# --------------------------------------------------------------------------- evaluation


def _filtered(ctx: Context, rule: Rule) -> Context:
    if not rule.skip_models:
        return ctx
    models = ctx.window.text["model"]
    keep = ~np.logical_or.reduce([models == m for m in rule.skip_models])
    return ctx if keep.all() else ctx.restrict(keep)


def _since(ctx: Context, rule: Rule) -> float | None:
    """Since when ``rule`` has been firing (see the module notes); the window's start as a fallback.

    From the newest time bucket back, buckets are gathered into chunks of at least
    ``SINCE_CHUNK * min_samples`` samples; after any quiet chunks at the end (the rule is
    firing on older data), the answer is the start of the oldest chunk of the run of firing ones.
    """
    t = ctx.window.t
    finite = np.isfinite(t)
    if not finite.any():
        return None
    lo, hi = float(t[finite].min()), float(t[finite].max())
    n = SINCE_BUCKETS if hi > lo else 1
    bucket = np.clip(((t - lo) / max(hi - lo, 1e-9) * n).astype(np.int64), 0, n - 1)
    since = None
    chunk = np.zeros(t.shape, bool)
    for b in range(n - 1, -1, -1):
        chunk |= finite & (bucket == b)
        if not chunk.any():
            continue
        verdict = rule.judge(SIGNALS[rule.signal](ctx.restrict(chunk)), SINCE_CHUNK * rule.min_samples)
        if verdict is None:  # too few samples yet: add the previous bucket
            continue
        if verdict:
            since = float(t[chunk].min())
        elif since is not None:
            break
        chunk = np.zeros(t.shape, bool)
    return lo if since is None else since


def evaluate(ctx: Context, rules: RuleSet | tuple[Rule, ...]) -> list[Alert]:
    """Every enabled rule's :class:`Alert` on ``ctx`` (a window and its drift reference)."""
    out = []
    for rule in rules.rules if isinstance(rules, RuleSet) else rules:
        if not rule.enabled:
            continue
        rctx = _filtered(ctx, rule)
        value = SIGNALS[rule.signal](rctx)
        verdict = rule.judge(value)
        status = "no data" if verdict is None else ("firing" if verdict else "ok")
        out.append(
            Alert(
                rule=rule.name,
                signal=rule.signal,
                op=rule.op,
                threshold=rule.threshold,
                value=value.value,
                samples=value.samples,
                status=status,
                since=_since(rctx, rule) if verdict else None,
                message=rule.suggestion(value) if verdict else "",
                detail=value.detail,
            )
        )
    return out


def window_context(log: Frame, window: str, rules: RuleSet, now: float | None = None) -> Context:
    """The :class:`Context` of ``window`` of ``log`` with the rules' drift reference."""
    from sam_core.monitor.signals import make_context

    return make_context(log, log.window(window, now), rules.reference)
