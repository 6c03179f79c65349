"""The README's commands and examples are true."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def code_blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_readme_starts_with_the_two_commands():
    bash = code_blocks("bash")
    assert bash[0].strip() == "pip install -r requirements.txt && python demo.py"
    assert bash[1].strip() == "pip install -r requirements-dev.txt && python -m pytest"
    ci = (ROOT / ".ci" / "run").read_text()
    assert bash[1].strip() in ci.splitlines()


def test_three_line_python_example_runs_as_written():
    example = code_blocks("python")[0]
    assert len(example.strip().splitlines()) == 3
    out = subprocess.run([sys.executable, "-c", example], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "(3, 400, 600)" in out.stdout


def test_space_front_matter():
    front = README.split("---")[1]
    for line in ("sdk: gradio", "app_file: demo.py", "python_version:", "sdk_version:",
                 "ybelkada/segment-anything checkpoints/sam_vit_h_4b8939.pth"):
        assert line in front


def test_cli_help_explains_every_flag():
    out = subprocess.run([sys.executable, str(ROOT / "demo.py"), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for flag in ("--model", "--checkpoint", "--device", "--precision", "--host", "--port", "--share", "--auth",
                 "--max-file-size", "--outputs", "--queue-size"):
        assert flag in out.stdout
    assert "SAM_DEMO_AUTH" in out.stdout and "GRADIO_SERVER_PORT" in out.stdout
