"""The shell: Segment is the first tab; Batch and Monitor switch in and out without a reload."""

from __future__ import annotations

import pytest
from test_ui_browser import shot

pytestmark = pytest.mark.browser


def test_tabs_switch_and_segment_keeps_its_state(browser, app_server):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(app_server.url)
    page.wait_for_selector("#input-image")
    tabs = page.locator("#tabs button[role=tab]")
    assert [t.strip() for t in tabs.all_inner_texts()] == ["Segment", "Batch", "Monitor"]
    assert page.locator("#input-image").is_visible()
    page.set_input_files("#input-image input[type=file]", "examples/coffee.png")
    page.wait_for_function("() => document.querySelector('#status').innerText.includes('Loaded coffee.png')")
    for name, panel in (("Batch", "#tab-batch"), ("Monitor", "#tab-monitor")):
        page.get_by_role("tab", name=name).click()
        page.locator(panel).wait_for(state="visible")
        assert not page.locator("#input-image").is_visible()
        shot(page, f"tab-{name.lower()}")
    page.get_by_role("tab", name="Segment").click()
    page.locator("#input-image").wait_for(state="visible")
    assert "Loaded coffee.png" in page.locator("#status").inner_text()  # the session survived the detour
    page.close()
