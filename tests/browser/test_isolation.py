"""Two visitors at once (two Chromium browser contexts) never see each other's image, prompts or masks."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_ui_browser import CAPTION, captions, click_at, metrics, natural_size, prompt_rows, shot, wait_idle, wait_rows

from sam_core.core.images import load_image

ROOT = Path(__file__).resolve().parents[2]
COFFEE = ROOT / "examples" / "coffee.png"  # 600 x 400
CHELSEA = ROOT / "examples" / "chelsea.png"  # 451 x 300

pytestmark = pytest.mark.browser


def open_page(browser, url: str):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("#input-image input[type=file]", state="attached")
    return context, page


def start_upload(page, path: Path) -> None:
    page.locator("#input-image input[type=file]").set_input_files(str(path))


def wait_status(page, text: str, timeout: float = 90_000) -> None:
    page.wait_for_function("t => document.querySelector('#status')?.innerText.includes(t)", arg=text,
                           timeout=timeout)


def wait_captions(page, n: int = 3) -> None:
    page.wait_for_function(f"() => document.querySelectorAll('#candidates .caption-label').length === {n}",
                           timeout=30_000)


def rows_to_prompts(rows: list[list[str]]) -> tuple[list[tuple[float, float, int]], tuple | None]:
    points, box = [], None
    for label, *cells in rows:
        if label == "box":
            box = tuple(float(c) for c in cells[:4])
        else:
            points.append((float(cells[0]), float(cells[1]), 1 if label == "fg" else 0))
    return points, box


def expected_captions(seg, image: Path, rows) -> list[tuple[float, float]]:
    """(score, area %) per candidate for the prompts a page shows, from the library in this process."""
    points, box = rows_to_prompts(rows)
    res = seg.segment(load_image(image).rgb, points or None, box)
    return [(float(s), 100 * float(m.mean())) for s, m in zip(res.scores, res.masks)]


def shown_captions(page) -> list[tuple[float, float]]:
    parsed = [CAPTION.match(c) for c in captions(page)]
    assert all(parsed), captions(page)
    return [(float(m.group(2)), float(m.group(3))) for m in parsed]


def same(shown, expected) -> bool:
    return len(shown) == len(expected) and all(
        abs(s - es) <= 0.0015 and abs(p - ep) <= 0.15 for (s, p), (es, ep) in zip(shown, expected))


def near(row: list[str], label: str, *values: float) -> bool:
    return row[0] == label and all(abs(float(c) - v) <= 2 for c, v in zip(row[1:], values))


def test_two_visitors_never_see_each_other(browser, app_server, tiny_segmenter):
    ctx_a, a = open_page(browser, app_server.url)
    ctx_b, b = open_page(browser, app_server.url)
    try:
        # both upload at the same time
        start_upload(a, COFFEE)
        start_upload(b, CHELSEA)
        wait_status(a, "Loaded coffee.png (600×400,")
        wait_status(b, "Loaded chelsea.png (451×300,")
        wait_idle(a)
        wait_idle(b)
        assert natural_size(a, "#input-image") == (600, 400)
        assert natural_size(b, "#input-image") == (451, 300)

        # interleaved clicks: A foreground + a box, B foreground + background
        click_at(a, 290, 230)
        click_at(b, 225, 150)
        wait_rows(a, 1)
        wait_rows(b, 1)
        wait_idle(a)
        wait_idle(b)
        a.get_by_label("Box (2 clicks)").check()
        b.get_by_label("Background point").check()
        click_at(a, 100, 60)
        click_at(b, 30, 30)
        wait_status(a, "first corner")
        wait_rows(b, 2)
        wait_idle(a)
        click_at(a, 480, 360)
        wait_rows(a, 2)
        wait_captions(a)
        wait_captions(b)
        wait_idle(a)
        wait_idle(b)

        rows_a, rows_b = prompt_rows(a), prompt_rows(b)
        assert len(rows_a) == 2 and near(rows_a[0], "fg", 290, 230) and near(rows_a[1], "box", 100, 60, 480, 360), rows_a
        assert len(rows_b) == 2 and near(rows_b[0], "fg", 225, 150) and near(rows_b[1], "bg", 30, 30), rows_b
        assert natural_size(a, "#input-image") == (600, 400) and natural_size(b, "#input-image") == (451, 300)
        assert natural_size(a, "#result") == (600, 400) and natural_size(b, "#result") == (451, 300)
        assert metrics(a)["image"] == "600×400" and metrics(b)["image"] == "451×300"

        # each page's candidates are its own image's and prompts' (and not the other's)
        exp_a = expected_captions(tiny_segmenter, COFFEE, rows_a)
        exp_b = expected_captions(tiny_segmenter, CHELSEA, rows_b)
        cap_a, cap_b = shown_captions(a), shown_captions(b)
        assert same(cap_a, exp_a), (cap_a, exp_a)
        assert same(cap_b, exp_b), (cap_b, exp_b)
        assert not same(cap_a, exp_b) and not same(cap_b, exp_a)
        shot(a, "isolation-a")
        shot(b, "isolation-b")

        # B reloads: a fresh session, with neither its old state nor A's
        b.reload()
        b.wait_for_selector("#input-image input[type=file]", state="attached")
        wait_status(b, "Upload an image")
        assert prompt_rows(b) == [] and captions(b) == [] and metrics(b) == {}
        assert b.locator("#input-image img").count() == 0
        assert "coffee" not in b.locator("body").inner_text()
        shot(b, "isolation-b-reloaded")
        # A is untouched and keeps working on its own state
        assert prompt_rows(a) == rows_a and natural_size(a, "#input-image") == (600, 400)
        a.get_by_label("Foreground point").check()
        click_at(a, 500, 100)
        # B starts again from scratch
        start_upload(b, CHELSEA)
        wait_status(b, "Loaded chelsea.png")
        wait_idle(b)
        click_at(b, 200, 120)
        wait_rows(a, 3)
        wait_rows(b, 1)
        assert near(prompt_rows(b)[0], "fg", 200, 120)
        rows_a2 = prompt_rows(a)  # points first, then the box
        assert near(rows_a2[1], "fg", 500, 100) and rows_a2[0] == rows_a[0] and rows_a2[2] == rows_a[1], rows_a2
        wait_captions(b)
        wait_idle(a)
        wait_idle(b)
        assert metrics(a)["image"] == "600×400" and metrics(b)["image"] == "451×300"
        assert same(shown_captions(b), expected_captions(tiny_segmenter, CHELSEA, prompt_rows(b)))
        assert same(shown_captions(a), expected_captions(tiny_segmenter, COFFEE, prompt_rows(a)))
    finally:
        ctx_a.close()
        ctx_b.close()
