"""Start the real app (``python demo.py``) as a subprocess on a free port, for tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running demo.py: ``url``, ``outputs`` folder, ``proc`` and its log file."""

    def __init__(self, proc: subprocess.Popen, url: str, outputs: Path, log: Path) -> None:
        self.proc, self.url, self.outputs, self.log = proc, url, outputs, log

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def run_server(workdir: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Iterator[Server]:
    """Run ``demo.py --model test-tiny`` in ``workdir`` (its cwd) until the context exits."""
    port = free_port()
    outputs = workdir / "outputs"
    log = workdir / f"server-{port}.log"
    full_env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1",
                "HF_HUB_OFFLINE": "1", **(env or {})}
    cmd = [sys.executable, str(ROOT / "demo.py"), "--model", "test-tiny", "--device", "cpu",
           "--port", str(port), "--outputs", str(outputs), *args]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=workdir, stdout=out, stderr=subprocess.STDOUT, env=full_env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + timeout
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"demo.py exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
            try:
                with urllib.request.urlopen(url + "gradio_api/info", timeout=2):
                    break
            except urllib.error.HTTPError:  # answering (e.g. 401 behind --auth): it is up
                break
            except Exception:
                if time.time() > deadline:
                    raise RuntimeError(f"demo.py did not start in {timeout}s:\n{log.read_text(errors='replace')}")
                time.sleep(0.5)
        yield Server(proc, url, outputs, log)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
