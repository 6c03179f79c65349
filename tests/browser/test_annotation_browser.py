"""Annotation in Chromium: two labelled objects made with the keyboard shortcuts, exported, the
bundle saved and reopened on a fresh page, and the exports identical."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from test_ui_browser import click_at, shot, upload, wait_idle

ROOT = Path(__file__).resolve().parents[2]
COFFEE = ROOT / "examples" / "coffee.png"

pytestmark = pytest.mark.browser


def object_rows(page) -> list[list[str]]:
    rows = page.locator("#objects [role=row][data-index]")
    return [[c.strip() for c in rows.nth(i).locator("[role=gridcell]").all_inner_texts()] for i in range(rows.count())]


def wait_for(page, pred, what: str, timeout: float = 60.0):
    deadline = time.time() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.time() > deadline:
            shot(page, "timeout-" + "".join(c if c.isalnum() else "-" for c in what))
            status = page.locator("#status").inner_text() if page.locator("#status").count() else ""
            raise AssertionError(f"timed out waiting for {what} (status: {status!r})")
        time.sleep(0.1)


def app_page(browser, server, height: int):
    """A new context and page on ``server``'s app (downloads allowed): (context, page, page errors)."""
    ctx = browser.new_context(viewport={"width": 1400, "height": height}, accept_downloads=True)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url)
    page.wait_for_selector("#input-image")
    return ctx, page, errors


def set_label(page, name: str) -> None:
    box = page.locator("#object-label input").first
    box.click()
    box.fill(name)
    box.press("Enter")
    page.locator("body").click(position={"x": 5, "y": 5})  # leave the field: keys are shortcuts again
    wait_for(page, lambda: page.locator("#object-label input").first.input_value() == name, f"label {name}")
    wait_idle(page)


def press(page, key: str) -> None:
    page.locator("body").press(key)


def downloads(page, server, tmp: Path) -> dict[str, Path]:
    """Fetch every file listed in the Downloads box into ``tmp``."""
    page.wait_for_selector("#downloads a[href]", timeout=60_000)
    tmp.mkdir(parents=True, exist_ok=True)
    out = {}
    for a in page.locator("#downloads a[href]").all():
        href = a.get_attribute("href")
        name = href.rsplit("/", 1)[-1].split("?")[0]
        resp = page.request.get(href)
        assert resp.ok, href
        out[name] = tmp / name
        out[name].write_bytes(resp.body())
    return out


def export_objects(page, server, tmp: Path) -> dict[str, Path]:
    page.evaluate("() => document.querySelectorAll('#downloads a').forEach((a) => a.remove())")
    page.locator("#export-objects").click()
    wait_for(page, lambda: page.locator("#downloads a[href*='_coco.json']").count() > 0, "the exported files")
    return downloads(page, server, tmp)


@pytest.mark.parametrize("path", ["browser", "server"])
def test_two_objects_with_shortcuts_export_and_bundle(browser, decoder_server, app_server, tmp_path, path):
    server = decoder_server if path == "browser" else app_server
    ctx, page, errors = app_page(browser, server, 1200)
    assert "new object" in page.locator("#shortcuts").inner_text()
    upload(page, COFFEE)
    if path == "browser":
        page.wait_for_function("() => window.samStudio && window.samStudio.active", timeout=60_000)

    # Object 1: "cup", a foreground click (f), then candidate 2 chosen with the key 2.
    set_label(page, "cup")
    press(page, "f")
    click_at(page, 290, 230)
    wait_for(page, lambda: any(r[-1] == "editing" for r in object_rows(page)), "object 1 in the table")
    press(page, "2")
    if path == "browser":
        page.wait_for_function("() => window.samStudio.chosen === 1")
    else:
        wait_for(page, lambda: "selected" in (page.locator("#candidates .thumbnail-item").nth(1).get_attribute("class") or ""),
                 "candidate 2 selected")
    wait_idle(page)
    press(page, "n")
    wait_for(page, lambda: [r[:2] for r in object_rows(page)] == [["1", "cup"]] and
             all(r[-1] == "" for r in object_rows(page)), "object 1 committed")
    wait_idle(page)

    # Object 2: "saucer", a box drawn in box mode (x): two corners.
    set_label(page, "saucer")
    press(page, "x")
    assert page.locator("#prompt-mode input:checked").first.get_attribute("value") == "Box (2 clicks)"
    click_at(page, 100, 260)
    wait_idle(page)
    click_at(page, 520, 395)
    wait_for(page, lambda: len(object_rows(page)) == 2, "object 2 in the table")
    wait_idle(page)
    # z undoes the box; the mode goes back with f; then the box again
    press(page, "z")
    wait_for(page, lambda: len(object_rows(page)) == 1, "undo removed object 2's mask")
    wait_idle(page)
    click_at(page, 100, 260)
    wait_idle(page)
    click_at(page, 520, 395)
    wait_for(page, lambda: len(object_rows(page)) == 2, "object 2 again")
    wait_idle(page)
    press(page, "n")
    wait_for(page, lambda: [r[:2] for r in object_rows(page)] == [["1", "cup"], ["2", "saucer"]] and
             all(r[-1] == "" for r in object_rows(page)), "two committed objects")
    wait_idle(page)
    shot(page, f"annotation-{path}-two-objects")

    first = export_objects(page, server, tmp_path / "first")
    coco = COCO(str(first["coffee_coco.json"]))
    anns = coco.loadAnns(coco.getAnnIds())
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    assert sorted((a["id"], names[a["category_id"]]) for a in anns) == [(1, "cup"), (2, "saucer")]
    label_map = np.asarray(Image.open(first["coffee_labels.png"]))
    assert label_map.shape == (400, 600) and set(np.unique(label_map)) <= {0, 1, 2}
    for a in anns:
        assert (label_map == a["id"]).sum() > 0
    assert "classes.txt" in first and "coffee.txt" in first

    # Save the bundle, then open it on a fresh page with the same image.
    page.locator("#save-bundle").click()
    wait_for(page, lambda: page.locator("#downloads a[href*='_bundle.zip']").count() > 0, "the bundle")
    bundle = downloads(page, server, tmp_path / "bundle")["coffee_bundle.zip"]
    manifest = json.loads(__import__("zipfile").ZipFile(bundle).read("bundle.json"))
    assert [o["label"] for o in manifest["objects"]] == ["cup", "saucer"]
    assert manifest["objects"][0]["chosen"] == 1

    page2 = ctx.new_page()
    page2.on("pageerror", lambda e: errors.append(str(e)))
    page2.goto(server.url)
    page2.wait_for_selector("#input-image")
    upload(page2, COFFEE)
    page2.locator("#open-bundle input[type=file]").set_input_files(str(bundle)) if page2.locator(
        "#open-bundle input[type=file]").count() else page2.set_input_files("input[type=file][accept='.zip']", str(bundle))
    page2.wait_for_function(
        "() => document.querySelector('#status')?.innerText.includes('Opened the bundle')", timeout=60_000
    )
    status = page2.locator("#status").inner_text()
    assert "2 objects replayed, every mask identical" in status, status
    wait_for(page2, lambda: [r[:2] for r in object_rows(page2)] == [["1", "cup"], ["2", "saucer"]], "reopened objects")
    wait_idle(page2)
    shot(page2, f"annotation-{path}-reopened")
    second = export_objects(page2, server, tmp_path / "second")
    for name in ("coffee_coco.json", "coffee_coco_polygons.json", "coffee.txt", "classes.txt"):
        a, b = json_or_text(first[name]), json_or_text(second[name])
        assert a == b, name
    assert np.array_equal(np.asarray(Image.open(first["coffee_labels.png"])), np.asarray(Image.open(second["coffee_labels.png"])))
    assert not errors, errors
    ctx.close()


def json_or_text(path: Path):
    text = path.read_text()
    if path.suffix == ".json":
        data = json.loads(text)
        data.pop("info", None)  # carries the export time
        return data
    return text
