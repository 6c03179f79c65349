"""Make the README's screenshots of the annotation and segment-everything features.

Run from the repository root (needs Chromium, like the browser tests)::

    python scripts/readme_screenshots.py

It starts the app with ``--model test-tiny`` (random weights: the masks are meaningless, and the
README says so under each picture), drives it in Chromium and writes ``docs/annotation.png`` and
``docs/everything.png``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "browser")]

import importlib.util  # noqa: E402

from PIL import Image  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402
from server import run_server  # noqa: E402
from test_annotation_browser import object_rows, press, set_label, wait_for  # noqa: E402
from test_beyond_clicks_browser import set_number, status  # noqa: E402
from test_ui_browser import click_at, upload, wait_idle  # noqa: E402

_spec = importlib.util.spec_from_file_location("browser_conftest", ROOT / "tests" / "browser" / "conftest.py")
assert _spec and _spec.loader
_conf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_conf)
CHROMIUM, CHROMIUM_ARGS = _conf.CHROMIUM, _conf.CHROMIUM_ARGS

COFFEE = ROOT / "examples" / "coffee.png"


def region(page, *selectors: str) -> dict:
    """The smallest page area holding every element of ``selectors``, with an 8 px margin."""
    page.evaluate("() => window.scrollTo(0, 0)")
    page.wait_for_timeout(300)
    boxes = [page.locator(s).first.bounding_box() for s in selectors]
    x1, y1 = min(b["x"] for b in boxes) - 8, min(b["y"] for b in boxes) - 8
    x2 = max(b["x"] + b["width"] for b in boxes) + 8
    y2 = max(b["y"] + b["height"] for b in boxes) + 8
    return {"x": x1, "y": y1, "width": x2 - x1, "height": y2 - y1}


def main() -> None:
    with (
        run_server(Path(tempfile.mkdtemp(prefix="shots-")), "--decode-clicks", "server") as srv,
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1300})
        page.goto(srv.url)
        page.wait_for_selector("#input-image")
        upload(page, COFFEE)
        page.locator("#exclude-committed input").check()
        wait_idle(page)
        for label, corners in (("cup", ((170, 70), (470, 290))), ("saucer", ((60, 230), (560, 399)))):
            set_label(page, label)
            press(page, "x")
            click_at(page, *corners[0])
            wait_idle(page)
            click_at(page, *corners[1])
            wait_for(page, lambda: any(r[-1] == "editing" for r in object_rows(page)), label)
            wait_idle(page)
            press(page, "n")
            wait_for(page, lambda: all(r[-1] == "" for r in object_rows(page)), f"{label} committed")
            wait_idle(page)
        set_label(page, "spoon")
        press(page, "f")
        click_at(page, 350, 300)
        wait_for(page, lambda: len(object_rows(page)) == 3, "spoon")
        wait_idle(page)
        page.screenshot(
            path=str(ROOT / "docs" / "annotation.png"),
            clip=region(page, "#input-image", "#shortcuts", "#result"),
            full_page=True,
        )

        page.goto(srv.url)
        page.wait_for_selector("#input-image")
        upload(page, COFFEE)
        page.locator("#everything").get_by_text("Segment everything").first.click()
        set_number(page, "#ev-pps", 16)
        set_number(page, "#ev-iou", 0)
        set_number(page, "#ev-stab", 0)
        wait_for(page, lambda: "grid points" in page.locator("#ev-estimate").inner_text(), "estimate", 120)
        page.locator("#ev-run").click()
        wait_for(page, lambda: "Click a region to make it an object" in status(page), "everything", 300)
        wait_idle(page)
        page.screenshot(
            path=str(ROOT / "docs" / "everything.png"),
            clip=region(page, "#input-image", "#status", "#everything"),
            full_page=True,
        )
        browser.close()
    for name in ("annotation.png", "everything.png"):
        shrink_png(ROOT / "docs" / name)
    print("wrote docs/annotation.png and docs/everything.png")


def shrink_png(path: Path) -> None:
    """Shrink the screenshot to 3/4's size and store it with a 256-colour palette (keeps the repository small)."""
    img = Image.open(path).convert("RGB")
    img = img.resize((img.width * 3 // 4, img.height * 3 // 4), Image.Resampling.LANCZOS)
    img.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


if __name__ == "__main__":
    main()
