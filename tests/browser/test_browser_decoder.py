"""The decoder in the browser (onnxruntime-web), in Debian's Chromium against the real app.

A click is decoded and drawn in the page, then reported to the server in one small event with no
image coming back; hover shows the mask under the pointer; a page without WebAssembly, a decoder
that does not load, or an embedding of another model falls back to the server path and says so.
"""

from __future__ import annotations

import json
import re
import struct
import time
from pathlib import Path

import numpy as np
import pytest
from segment_anything.utils.transforms import ResizeLongestSide
from test_ui_browser import click_at, image_point, metrics, prompt_rows, shot, upload, wait_metrics

from sam_core.core.images import load_image
from sam_core.runlog import RunLog
from sam_core.ui.browser_decoder import MODULE
from sam_core.ui.web_assets import file_url

ROOT = Path(__file__).resolve().parents[2]
COFFEE = ROOT / "examples" / "coffee.png"
IMAGE_URL = re.compile(r"\.(jpe?g|png|webp|gif)(\?|$)", re.I)

pytestmark = pytest.mark.browser


def open_page(browser, server, *, init_script: str | None = None, route=None):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    if init_script:
        ctx.add_init_script(init_script)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    if route:
        page.route(*route)
    page.goto(server.url)
    page.wait_for_selector("#input-image")
    page.wait_for_function("() => window.samStudio !== undefined", timeout=30_000)
    page.errors = errors  # type: ignore[attr-defined]
    return page


def studio(page, expr: str):
    return page.evaluate(f"() => {{ const s = window.samStudio; return {expr}; }}")


def wait_browser_path(page) -> None:
    """Until the page decodes and the server knows it (its re-render without prompts has loaded)."""
    page.wait_for_function("() => window.samStudio.active && window.samStudio.sync.client === 'browser'", timeout=60_000)
    page.wait_for_function(
        "() => { const i = document.querySelector('#input-image img'); return i && i.complete && i.naturalWidth > 0; }"
    )


def choose_setting(page, label: str) -> None:
    page.locator("#settings").get_by_text("Settings").first.click()
    page.get_by_label(label).check()
    page.wait_for_timeout(300)


def test_coordinate_mapping_equals_resize_longest_side(browser, decoder_server):
    """The page maps full-image pixels into SAM's 1024 frame exactly as apply_coords/apply_boxes."""
    page = open_page(browser, decoder_server)
    rng = np.random.default_rng(0)
    sizes = [(3648, 5472), (400, 600), (1024, 1024), (333, 1000), (1000, 1), (7, 5000), (4000, 3001)]
    t = ResizeLongestSide(1024)
    for h, w in sizes:
        pts = np.concatenate(
            [rng.uniform(0, [w, h], (40, 2)).round(1), rng.integers(0, [w + 1, h + 1], (10, 2)), [[0, 0], [w, h]]]
        )
        got = page.evaluate(
            """async ([url, pts, h, w]) => {
                const m = await import(new URL(url, document.baseURI).href);
                return {coords: Array.from(m.applyCoords(pts, h, w)), shape: m.preprocessShape(h, w)};
            }""",
            [file_url(MODULE), pts.tolist(), h, w],
        )
        want = t.apply_coords(pts.astype(np.float64), (h, w)).astype(np.float32)  # torch.as_tensor(float)
        assert np.array_equal(np.array(got["coords"], np.float32).reshape(-1, 2), want), (h, w)
        assert tuple(got["shape"]) == ResizeLongestSide.get_preprocess_shape(h, w, 1024)
        box = [min(pts[0][0], pts[1][0]), min(pts[0][1], pts[1][1]), w, h]
        feed = page.evaluate(
            """async ([url, box, w, h]) => {
                const m = await import(new URL(url, document.baseURI).href);
                const f = m.promptFeed({points: [[1, 2, 1]], box}, w, h);
                return {coords: Array.from(f.coords), labels: Array.from(f.labels), n: f.n};
            }""",
            [file_url(MODULE), [float(v) for v in box], w, h],
        )
        want_box = t.apply_boxes(np.array(box, np.float64), (h, w)).astype(np.float32).reshape(-1)
        assert np.array_equal(np.array(feed["coords"][2:], np.float32), want_box)
        assert feed["labels"] == [1, 2, 3] and feed["n"] == 3
    no_box = page.evaluate(
        """async (url) => {
            const m = await import(new URL(url, document.baseURI).href);
            const f = m.promptFeed({points: [[10, 20, 0]], box: null}, 600, 400);
            return {coords: Array.from(f.coords), labels: Array.from(f.labels)};
        }""",
        file_url(MODULE),
    )
    assert no_box["labels"] == [0, -1] and no_box["coords"][2:] == [0, 0]  # SAM's padding point


def test_click_decodes_in_the_browser(browser, decoder_server, tiny_segmenter):
    page = open_page(browser, decoder_server)
    choose_setting(page, "fp32 (16.5 MB, exact to 1e-4)")
    upload(page, COFFEE)
    wait_browser_path(page)
    assert page.evaluate("self.crossOriginIsolated") is True
    info = studio(page, "({threads: s.threads, emb: s.stats.embeddings, load: s.stats.decoderLoadMs})")
    assert info["emb"][0]["bytes"] < 2_100_000 and info["load"] > 0
    # The browser path hides the server's gallery and result; its own strip and overlay replace them.
    assert not page.locator("#candidates").is_visible()

    requests: list[tuple[str, str, int]] = []
    page.on("request", lambda r: requests.append((r.method, r.url, len(r.post_data_buffer or b""))))
    click_at(page, 290, 230)
    page.wait_for_function("() => window.samStudio.stats.clicks.length === 1", timeout=30_000)
    m = wait_metrics(page, lambda m: m.get("decoder") == "browser")
    page.wait_for_timeout(500)
    images = [u for meth, u, _ in requests if IMAGE_URL.search(u)]
    posts = [(u, n) for meth, u, n in requests if meth == "POST"]
    assert images == [], images  # no image came back for the click
    assert len(posts) == 1 and "queue/join" in posts[0][0] and posts[0][1] < 2000, posts
    captions = page.locator("#browser-candidates figcaption").all_inner_texts()
    assert len(captions) == 3 and all(re.match(r"mask \d · score -?\d\.\d{3} · \d+\.\d %", c) for c in captions)
    assert int(page.locator("#bd-overlay").get_attribute("data-rev")) >= 1
    # The table shows the prompts the page decoded (Gradio's own click mapping: within a pixel).
    prompts = studio(page, "s.prompts")
    (x, y, label), = prompts["points"]
    assert abs(x - 290) <= 1 and abs(y - 230) <= 1 and label == 1 and prompts["box"] is None
    first_row = ["fg", f"{x:g}", f"{y:g}", "", ""]
    assert prompt_rows(page) == [first_row]

    # The same prompts through the server's torch decoder (same weights): scores within 1e-3.
    browser_scores = np.array(studio(page, "s.cands.scores"))
    img = load_image(COFFEE).rgb
    ref = tiny_segmenter.segment(img, prompts["points"], prompts["box"], multimask=True)  # the torch decoder
    assert np.abs(browser_scores - ref.scores).max() <= 1e-3, (browser_scores, ref.scores)
    chosen = studio(page, "s.chosen")
    assert float(m["score"]) == pytest.approx(float(ref.scores[chosen]), abs=1e-3)
    shot(page, "20-browser-decoder-click")

    # Choose another candidate in the strip: the server hears it, no image comes back.
    other = (chosen + 1) % 3
    requests.clear()
    page.locator("#browser-candidates figure").nth(other).click()
    wait_metrics(page, lambda m: m.get("index") == str(other + 1))
    assert not [u for _, u, _ in requests if IMAGE_URL.search(u)]

    # A box by two clicks: the first corner is drawn in the page and told to the server.
    page.get_by_label("Box (2 clicks)").check()
    click_at(page, 150, 100)
    click_at(page, 450, 330)
    page.wait_for_function("() => window.samStudio.stats.clicks.length === 2", timeout=30_000)
    wait_metrics(page, lambda m: m.get("decoder") == "browser" and len(prompt_rows(page)) == 2)
    box = studio(page, "s.prompts.box")
    assert np.allclose(box, [150, 100, 450, 330], atol=1.01)
    assert prompt_rows(page)[-1] == ["box", *(f"{v:g}" for v in box)]

    # Undo on the server: the page decodes the previous prompts again and draws them.
    page.locator("#undo").click()
    page.wait_for_function("() => window.samStudio.prompts.box === null", timeout=30_000)
    assert prompt_rows(page) == [first_row]

    log = RunLog(decoder_server.outputs / "logs")
    records = [r for r in log.records() if r["source"] == "ui"]
    assert records and records[-1]["decoder"] in ("browser", "onnx", "torch")
    assert any(r["decoder"] == "browser" and r["prompts"]["box"] == box for r in records)
    assert page.errors == []  # type: ignore[attr-defined]


def test_hover_shows_the_mask_under_the_pointer(browser, decoder_server):
    page = open_page(browser, decoder_server)
    upload(page, COFFEE)
    wait_browser_path(page)
    requests: list[tuple[str, str]] = []
    page.on("request", lambda r: requests.append((r.method, r.url)))
    box = page.locator("#input-image img").first.bounding_box()
    p0 = image_point(page, "#input-image", 150, 120)
    scale = image_point(page, "#input-image", 250, 120)["x"] - p0["x"]  # CSS px per 100 image px
    start = time.time()
    moves = 60
    for i in range(moves):  # a pointer moving like a mouse: a step every ~16 ms
        page.mouse.move(box["x"] + p0["x"] + scale * 0.05 * i, box["y"] + p0["y"] + scale * 0.025 * i)
        page.wait_for_timeout(16)
    page.wait_for_timeout(300)
    frames = studio(page, "s.stats.hoverFrames")
    elapsed = time.time() - start
    print(f"hover: {frames} frames for {moves} moves in {elapsed:.1f} s ({frames / elapsed:.1f} fps)")
    assert 2 <= frames <= moves  # frames are dropped while one decodes, never queued
    assert studio(page, "s.hover.last !== null")
    # Hover never talks to the server: no POST, no image (Gradio may reopen its idle event stream).
    assert [r for r in requests if r[0] != "GET" or IMAGE_URL.search(r[1])] == []
    shot(page, "21-browser-decoder-hover")
    # Leaving the image clears the hover mask; background mode shows none.
    page.mouse.move(box["x"] - 20, box["y"] - 20)
    page.wait_for_function("() => window.samStudio.hover.last === null", timeout=5_000)


def _assert_server_path_works(page) -> None:
    click_at(page, 290, 230)
    page.wait_for_function("() => document.querySelectorAll('#candidates .caption-label').length === 3", timeout=60_000)
    assert metrics(page)["decoder"] != "browser"


def test_fallback_without_webassembly(browser, decoder_server):
    page = open_page(browser, decoder_server, init_script="delete globalThis.WebAssembly;")
    upload(page, COFFEE)
    page.wait_for_function("() => window.samStudio.failed !== null", timeout=30_000)
    note = page.locator("#browser-candidates .bd-note").inner_text()
    assert "Browser decoder unavailable (this browser has no WebAssembly)" in note
    _assert_server_path_works(page)
    assert page.locator("#browser-candidates .bd-note").inner_text() == note  # said once, still there
    shot(page, "22-browser-decoder-fallback")


def test_fallback_when_the_decoder_cannot_load(browser, decoder_server):
    page = open_page(browser, decoder_server, route=("**/*.wasm", lambda route: route.abort()))
    upload(page, COFFEE)
    page.wait_for_function("() => window.samStudio.failed !== null", timeout=60_000)
    assert "Browser decoder unavailable" in page.locator("#browser-candidates .bd-note").inner_text()
    _assert_server_path_works(page)


def test_an_embedding_of_another_model_is_refused(browser, decoder_server):
    def tamper(route):
        body = route.fetch().body()
        (n,) = struct.unpack("<I", body[8:12])
        header = json.loads(body[12 : 12 + n])
        assert header["model_id"] == "test-tiny:test-tiny-seed0"
        fake = body.replace(b"test-tiny:test-tiny-seed0", b"test-tiny:test-tiny-seed9", 1)
        route.fulfill(body=fake, headers={"content-type": "application/octet-stream"})

    page = open_page(browser, decoder_server, route=("**/*.samemb", tamper))
    upload(page, COFFEE)
    page.wait_for_function("() => window.samStudio.failed !== null", timeout=60_000)
    assert studio(page, "s.stats.refused") >= 1
    assert "model mismatch" in studio(page, "s.failed")
    assert studio(page, "s.stats.clicks.length") == 0
    assert page.locator("#browser-candidates figure").count() == 0  # nothing was drawn
    _assert_server_path_works(page)


def test_server_setting_forces_the_server_path(browser, decoder_server):
    page = open_page(browser, decoder_server)
    upload(page, COFFEE)
    wait_browser_path(page)
    choose_setting(page, "On the server")
    page.wait_for_function("() => !window.samStudio.active", timeout=30_000)
    _assert_server_path_works(page)
    assert studio(page, "s.failed") is None  # a choice, not a failure


def test_preview_upsampling_equals_sam_postprocess(browser, decoder_server):
    """The page's separable upsampling of the 256x256 logits equals upsample_logits (torch)."""
    import torch
    import torch.nn.functional as F

    from sam_core.core.sizes import ImageSize
    from sam_core.model.results import upsample_logits

    page = open_page(browser, decoder_server)
    rng = np.random.default_rng(1)
    small = rng.normal(size=(1, 1, 16, 16)).astype(np.float32)  # smooth logits, like a real mask's
    logits = F.interpolate(torch.from_numpy(small), (256, 256), mode="bilinear")[0, 0].numpy() * 8
    for full, preview in [((5472, 3648), (1536, 1024)), ((600, 400), (600, 400)), ((1000, 333), (1000, 333))]:
        inp = ResizeLongestSide.get_preprocess_shape(full[1], full[0], 1024)  # (h, w)
        got = page.evaluate(
            """async ([url, logits, inW, inH, w, h]) => {
                const m = await import(new URL(url, document.baseURI).href);
                const r = m.upsampleMask(new Float32Array(logits), 0, inW, inH, w, h, 0.0);
                return {mask: Array.from(r.mask), area: r.area};
            }""",
            [file_url(MODULE), logits.ravel().tolist(), inp[1], inp[0], *preview],
        )
        mask = np.array(got["mask"], bool).reshape(preview[1], preview[0])
        want = upsample_logits(logits[None], ImageSize(inp[1], inp[0]), ImageSize(*preview))[0]
        differ = int((mask != want).sum())
        assert got["area"] == int(mask.sum())
        assert differ <= 0.0001 * mask.size, (full, differ)  # float32 sums in another order: a few edge pixels
