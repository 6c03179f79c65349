"""Beyond clicks, in Chromium: segment everything → adopt a region → erode it → a polygon prompt on
another object → a brush stroke → export, with the edits and the derived prompts in the bundle."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from pycocotools.coco import COCO
from test_annotation_browser import app_page, downloads, export_objects, object_rows, press, wait_for
from test_ui_browser import click_at, prompt_rows, shot, upload, wait_idle

ROOT = Path(__file__).resolve().parents[2]
COFFEE = ROOT / "examples" / "coffee.png"

pytestmark = pytest.mark.browser


def set_number(page, selector: str, value: float) -> None:
    box = page.locator(f"{selector} input[type=number]").first
    box.click()
    box.press("Control+A")
    box.press_sequentially(str(value))
    box.press("Tab")
    assert float(box.input_value()) == float(value)
    page.wait_for_timeout(400)  # Gradio takes the new value on input/blur, before the next click reads it


def choose_mode(page, label: str) -> None:
    page.locator("#prompt-mode").get_by_label(label).check()


def status(page) -> str:
    return page.locator("#status").inner_text()


@pytest.mark.parametrize("path", ["browser", "server"])
def test_everything_region_erode_polygon_brush_export(browser, decoder_server, app_server, tmp_path, path):
    server = decoder_server if path == "browser" else app_server
    ctx, page, errors = app_page(browser, server, 1300)
    upload(page, COFFEE)

    # Segment everything, with thresholds the random test weights pass.
    page.locator("#everything").get_by_text("Segment everything").first.click()
    set_number(page, "#ev-pps", 8)
    set_number(page, "#ev-iou", 0)
    set_number(page, "#ev-stab", 0)
    wait_for(page, lambda: "s for 64 grid points" in page.locator("#ev-estimate").inner_text(), "the estimate")
    page.locator("#ev-run").click()
    wait_for(page, lambda: "Click a region to make it an object" in status(page), "segment everything", 240)
    text = status(page)
    assert "the cached embedding, no encoder run" in text, text
    assert page.locator("#prompt-mode input:checked").first.get_attribute("value") == "Pick a region"
    assert "for 64 grid points" in page.locator("#ev-estimate").inner_text()  # the latest settings' estimate
    wait_idle(page)
    shot(page, f"beyond-{path}-everything")

    # Adopt a region: its grid point becomes the object's prompt.
    for x, y in ((300, 200), (150, 120), (450, 300), (100, 350), (500, 80)):
        click_at(page, x, y)
        wait_idle(page)
        if any(r[-1] == "editing" for r in object_rows(page)):
            break
    assert any(r[-1] == "editing" for r in object_rows(page)), status(page)
    rows = prompt_rows(page)
    assert len(rows) == 1 and rows[0][0] == "fg", rows
    area_before = next(r for r in object_rows(page) if r[-1] == "editing")[3]

    # Erode it by 3 px (an edit: one undo step, drawn by the server).
    page.locator("#edit-mask").get_by_text("Edit the mask").first.click()
    set_number(page, "#edit-grow-value", -3)
    page.locator("#edit-grow").click()
    wait_for(page, lambda: "Mask edited: erode 3 px" in status(page), "the erosion")
    assert next(r for r in object_rows(page) if r[-1] == "editing")[3] != area_before
    wait_idle(page)
    shot(page, f"beyond-{path}-eroded")
    press(page, "n")
    wait_for(page, lambda: all(r[-1] == "" for r in object_rows(page)) and len(object_rows(page)) == 1, "object 1")
    wait_idle(page)

    # A polygon on another object: 5 vertices, then Close polygon -> a box + inside points.
    choose_mode(page, "Polygon")
    for x, y in ((120, 90), (470, 100), (500, 300), (300, 390), (110, 330)):
        click_at(page, x, y)
        wait_idle(page)
    page.locator("#close-polygon").click()
    wait_for(page, lambda: any(r[0] == "box" for r in prompt_rows(page)), "the polygon's prompts")
    rows = prompt_rows(page)
    assert rows[-1][0] == "box" and [r[0] for r in rows[:-1]] and all(r[0] == "fg" for r in rows[:-1]), rows
    box = [float(v) for v in rows[-1][1:5]]
    assert box[0] >= 109 and box[1] >= 89 and box[2] <= 501 and box[3] <= 391, box
    wait_idle(page)

    # An eraser stroke across the middle of the image takes pixels out of the mask.
    choose_mode(page, "Eraser")
    img = page.locator("#input-image img").first
    b = img.bounding_box()
    page.mouse.move(b["x"] + b["width"] * 0.2, b["y"] + b["height"] * 0.5)
    page.mouse.down()
    for i in range(1, 12):
        page.mouse.move(b["x"] + b["width"] * (0.2 + 0.05 * i), b["y"] + b["height"] * 0.5)
    page.mouse.up()
    wait_for(page, lambda: "Mask edited: erase r" in status(page), "the eraser stroke")
    wait_idle(page)
    shot(page, f"beyond-{path}-polygon-brush")
    press(page, "n")
    wait_for(page, lambda: len(object_rows(page)) == 2 and all(r[-1] == "" for r in object_rows(page)), "object 2")
    wait_idle(page)

    files = export_objects(page, server, tmp_path / "export")
    coco = COCO(str(files["coffee_coco.json"]))
    assert sorted(coco.getAnnIds()) == [1, 2]
    page.locator("#save-bundle").click()
    wait_for(page, lambda: page.locator("#downloads a[href*='_bundle.zip']").count() > 0, "the bundle")
    bundle = downloads(page, server, tmp_path / "bundle")["coffee_bundle.zip"]
    objs = json.loads(zipfile.ZipFile(bundle).read("bundle.json"))["objects"]
    assert objs[0]["edits"] == [{"op": "grow", "px": -3.0}]
    assert len(objs[0]["prompts"]["points"]) == 1 and objs[0]["prompts"]["box"] is None
    assert objs[1]["prompts"]["box"] is not None and objs[1]["edits"][0]["op"] == "stroke"
    shot(page, f"beyond-{path}-exported")
    assert not errors, errors
    ctx.close()


def test_a_stroke_released_off_the_image_swallows_no_later_click(browser, app_server):
    """Only the click that ends a brush stroke on the image is swallowed: a stroke released
    outside the image leaves no click to swallow, so the next press on the image counts."""
    ctx, page, errors = app_page(browser, app_server, 1000)
    upload(page, COFFEE)
    click_at(page, 290, 230)
    wait_for(page, lambda: len(prompt_rows(page)) == 1, "the first prompt")
    wait_idle(page)
    choose_mode(page, "Brush")
    b = page.locator("#input-image img").first.bounding_box()
    page.mouse.move(b["x"] + b["width"] * 0.5, b["y"] + b["height"] * 0.5)
    page.mouse.down()
    for i in range(1, 8):  # up and out of the image
        page.mouse.move(b["x"] + b["width"] * 0.5, b["y"] + b["height"] * (0.5 - 0.1 * i))
    page.mouse.up()
    assert page.evaluate("() => window.samStudio.brush.sent > 0")  # the stroke went; no click followed it
    wait_for(page, lambda: "Mask edited: brush r" in status(page), "the brush stroke")
    wait_idle(page)
    choose_mode(page, "Foreground point")
    # As if that stroke had ended just now: a press on the image still counts as a click.
    page.evaluate("() => { window.samStudio.brush.sent = performance.now(); }")
    click_at(page, 100, 100)
    wait_for(page, lambda: len(prompt_rows(page)) == 2, "the click after the stroke")
    assert not errors, errors
    ctx.close()
