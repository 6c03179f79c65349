"""Playwright with Debian's Chromium against the real app; screenshots in screenshots/."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

SHOTS = Path(__file__).resolve().parent / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                 # a synthetic camera, so the webcam source can be tested
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("SAM_REQUIRE_BROWSER"):
            pytest.fail(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
        pytest.skip("Chromium is not installed (apt-get install chromium); .ci/run installs it")
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    from server import run_server

    # These tests drive the server path (what browsers without WebAssembly get); the browser
    # decoder (the default) has its own server in test_browser_decoder.py.
    with run_server(tmp_path_factory.mktemp("browser-app"), "--decode-clicks", "server") as srv:
        yield srv


@pytest.fixture(scope="module")
def decoder_server(tmp_path_factory):
    """The app as visitors get it: clicks decoded in the browser (``--decode-clicks auto``)."""
    from server import run_server

    with run_server(tmp_path_factory.mktemp("decoder-app"), "--decode-clicks", "auto") as srv:
        yield srv
