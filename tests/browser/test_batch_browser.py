"""The Batch tab in Chromium: a study on uploaded images with reference masks, then the bundled
examples; the results table, the plots and overlays, and the zip download."""

from __future__ import annotations

import csv
import io
import zipfile

import numpy as np
import pytest
from PIL import Image
from synth import photo_like
from test_ui_browser import SHOTS, shot

pytestmark = pytest.mark.browser


def _open_batch(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("#tabs")
    page.get_by_role("tab", name="Batch").click()
    page.locator("#batch-run").wait_for(state="visible")


def _wait_results(page, n: int) -> list[list[str]]:
    """Wait for the summary to announce ``n`` rows; return the table rows in view (it is virtualised)."""
    page.wait_for_function("n => document.querySelector('#batch-summary').innerText.includes(n + ' rows')",
                           arg=n, timeout=180_000)
    rows = page.locator("#batch-table [role=row][data-index]")
    return [[c.strip() for c in rows.nth(i).locator("[role=gridcell]").all_inner_texts()] for i in range(rows.count())]


def _download_zip(page, name: str) -> zipfile.ZipFile:
    link = page.locator("#batch-download a[download]").first
    link.wait_for(timeout=60_000)
    with page.expect_download() as dl:
        link.click()
    target = SHOTS / name
    dl.value.save_as(target)
    return zipfile.ZipFile(target)


def test_study_with_references_plots_and_download(browser, app_server, tmp_path):
    images, refs = [], []
    for i, (h, w) in enumerate([(120, 160), (100, 150)]):
        img = tmp_path / f"shape{i}.png"
        Image.fromarray(photo_like(h, w, seed=i)).save(img)
        ref = np.zeros((h, w), np.uint8)
        ref[20:80, 30 + 10 * i : 110] = 255
        Image.fromarray(ref).save(tmp_path / f"shape{i}_mask.png")
        images.append(str(img))
    zpath = tmp_path / "refs.zip"
    with zipfile.ZipFile(zpath, "w") as zf:  # references as a zip, matched by stem
        for i in range(2):
            zf.write(tmp_path / f"shape{i}_mask.png", f"shape{i}.png")
    refs.append(str(zpath))
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    _open_batch(page, app_server.url)
    page.set_input_files("#batch-images input[type=file]", images)
    page.wait_for_function("() => document.querySelector('#batch-images').innerText.includes('shape1')",
                           timeout=30_000)
    page.set_input_files("#batch-references input[type=file]", refs)
    page.wait_for_function("() => document.querySelector('#batch-references').innerText.includes('refs')",
                           timeout=30_000)
    page.locator("#batch-experiment input").click()
    page.get_by_role("option", name="box-scale").click()
    page.locator("#batch-run").click()
    rows = _wait_results(page, 14)  # 2 objects x 7 box scales
    assert rows and rows[0][:3] == ["shape0.png", "1", "scale_0.8"]
    summary = page.locator("#batch-summary").inner_text()
    assert "mIoU" in summary and "random weights" in summary
    page.locator("#batch-gallery img").first.wait_for(timeout=30_000)
    shot(page, "batch-box-scale")
    zf = _download_zip(page, "batch-study.zip")
    names = set(zf.namelist())
    assert {"results.csv", "results.md", "summary.json", "errors.csv", "box_scale.png"} <= names
    table = list(csv.DictReader(io.StringIO(zf.read("results.csv").decode())))
    assert len(table) == 14 and all(0.0 <= float(r["iou"]) <= 1.0 for r in table)
    assert {r["image"] for r in table} == {"shape0.png", "shape1.png"}
    page.close()


def test_bundled_examples_study(browser, app_server):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    _open_batch(page, app_server.url)
    page.locator("#batch-examples input").check()
    page.locator("#batch-run").click()
    rows = _wait_results(page, 4)
    assert rows and rows[0][0] in {"astronaut.png", "chelsea.png", "coffee.png", "coins.png"}
    page.wait_for_function("() => document.querySelectorAll('#batch-gallery img').length >= 4", timeout=30_000)
    shot(page, "batch-examples")
    zf = _download_zip(page, "batch-examples.zip")
    assert any(n.startswith("overlays/") and n.endswith(".png") for n in zf.namelist())
    table = list(csv.DictReader(io.StringIO(zf.read("results.csv").decode())))
    assert {r["image"] for r in table} == {"astronaut.png", "chelsea.png", "coffee.png", "coins.png"}
    page.close()


def test_segment_tab_stays_responsive_while_a_study_runs(browser, app_server, tmp_path):
    """A long study (the click simulator on 4 images) runs in its own queue: meanwhile another
    visitor's clicks in the Segment tab come back, each well before the study ends."""
    from test_ui_browser import EXAMPLES, click_at, upload

    images = []
    for i in range(4):
        img = tmp_path / f"long{i}.png"
        Image.fromarray(photo_like(96, 128, seed=10 + i)).save(img)
        ref = np.zeros((96, 128), np.uint8)
        ref[20:70, 30:100] = 255
        Image.fromarray(ref).save(tmp_path / f"long{i}_ref.png")
        images.append(str(img))
    zpath = tmp_path / "longrefs.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for i in range(4):
            zf.write(tmp_path / f"long{i}_ref.png", f"long{i}.png")
    batch = browser.new_page(viewport={"width": 1400, "height": 1100})
    _open_batch(batch, app_server.url)
    batch.set_input_files("#batch-images input[type=file]", images)
    batch.wait_for_function("() => document.querySelector('#batch-images').innerText.includes('long3')",
                            timeout=30_000)
    batch.set_input_files("#batch-references input[type=file]", [str(zpath)])
    batch.wait_for_function("() => document.querySelector('#batch-references').innerText.includes('longrefs')",
                            timeout=30_000)
    batch.locator("#batch-experiment input").click()
    batch.get_by_role("option", name="clicks —").click()
    batch.locator("#batch-run").click()
    batch.locator("#batch-summary .progress-text, #batch-summary .eta-bar, .progress-text").first.wait_for(
        timeout=30_000)

    seg = browser.new_page(viewport={"width": 1400, "height": 1000})
    seg.goto(app_server.url)
    seg.wait_for_selector("#input-image")
    upload(seg, EXAMPLES / "coffee.png")
    for i, (x, y) in enumerate([(290, 230), (150, 120)]):
        click_at(seg, x, y)
        seg.wait_for_function(
            f"() => document.querySelectorAll('#prompts [role=row][data-index]').length === {i + 1} && "
            "document.querySelectorAll('#candidates .caption-label').length === 3", timeout=30_000)
        still_running = "rows" not in batch.locator("#batch-summary").inner_text()
        assert still_running, "the study ended before the click came back: make it longer"
    shot(seg, "batch-concurrent-segment")
    batch.wait_for_function("() => document.querySelector('#batch-summary').innerText.includes('rows')",
                            timeout=300_000)
    shot(batch, "batch-clicks")
    assert "NoC@85" in batch.locator("#batch-summary").inner_text()
    batch.close()
    seg.close()
