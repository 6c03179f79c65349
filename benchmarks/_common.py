"""Shared bits of the benchmark scripts."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any


def emit_json(result: dict[str, Any], json_out: str | None) -> None:
    """Print ``result`` as the last stdout line (compact JSON); also write it to ``json_out``."""
    line = json.dumps(result, separators=(",", ":"))
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(line + "\n")
    print(line, flush=True)


def machine_info(load_start: float) -> dict[str, Any]:
    """What every result must carry to be compared: the torch build, the machine and its load."""
    import torch

    return {
        "torch": torch.__version__,
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "loadavg_1m_start": load_start,
        "loadavg_1m_end": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
    }
