"""demo.py's command line: clear errors, no tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_demo(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    return subprocess.run([sys.executable, str(ROOT / "demo.py"), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def test_missing_weights_offline_explains_the_way_out(tmp_path):
    out = run_demo("--model", "vit_b", "--checkpoints-dir", str(tmp_path / "ckpt"), tmp_path=tmp_path)
    assert out.returncode == 2
    err = out.stderr
    assert "Traceback" not in err
    for part in ("sam_vit_b_01ec64.pth", "ybelkada/segment-anything",
                 "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth", "--checkpoint"):
        assert part in err, part


def test_missing_checkpoint_path(tmp_path):
    out = run_demo("--model", "vit_b", "--checkpoint", str(tmp_path / "nope.pth"), tmp_path=tmp_path)
    assert out.returncode == 2 and "nope.pth" in out.stderr and "Traceback" not in out.stderr


def test_malformed_auth(tmp_path):
    out = run_demo("--model", "test-tiny", "--auth", "no-colon", tmp_path=tmp_path)
    assert out.returncode == 2 and "USER:PASS" in out.stderr
