"""Shared bits of the benchmark scripts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def emit_json(result: dict[str, Any], json_out: str | None) -> None:
    """Print ``result`` as the last stdout line (compact JSON); also write it to ``json_out``."""
    line = json.dumps(result, separators=(",", ":"))
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(line + "\n")
    print(line, flush=True)
