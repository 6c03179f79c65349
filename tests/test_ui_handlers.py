"""Handler-level tests: the UI's event handlers called as Gradio calls them."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from sam_core.app.session import SessionState
from sam_core.app.studio import Studio
from sam_core.ui.app import build_app
from sam_core.ui.present import metrics_html
from sam_core.ui.segment_tab import MODE_BG, MODE_BOX, MODE_FG, Handlers, load_presets

ROOT = Path(__file__).resolve().parents[1]
COFFEE = ROOT / "examples" / "coffee.png"


def sel(x, y):
    return gr.SelectData(None, {"index": [x, y], "value": None, "selected": True})


@pytest.fixture()
def handlers(tiny_segmenter, tmp_path):
    return Handlers(Studio(tiny_segmenter, outputs_dir=tmp_path / "outputs"))


def unpack(out):
    """The first seven outputs (the browser decoder's sync value is checked in test_browser_decoder,
    the objects table and the label in test_annotation)."""
    state, image, gallery, annotated, metrics, rows, status = out[:7]
    return state, image, gallery, annotated, metrics, rows, status


def test_upload_then_click_gives_three_candidates(handlers):
    state, image, gallery, annotated, metrics, rows, status = unpack(handlers.upload(str(COFFEE), None))
    assert isinstance(state, SessionState) and state.size == (600, 400)
    assert re.search(r"Loaded coffee.png \(600×400, ready in \d+\.\d s\)", status)
    assert Image.open(image).size == (600, 400) and rows == [] and annotated is None
    state, image, gallery, annotated, metrics, rows, status = unpack(handlers.select(state, MODE_FG, sel(290, 230)))
    assert len(gallery["value"]) == 3
    caps = [c for _, c in gallery["value"]]
    assert all(c.startswith(f"mask {i + 1} · score ") and c.endswith(" %") for i, c in enumerate(caps))
    assert gallery["selected_index"] == state.result.best_index == state.chosen
    assert rows == [["fg", 290.0, 230.0, "", ""]]
    base, anns = annotated
    assert Image.open(anns[0][0]).size == Image.open(base).size == (600, 400)
    assert "data-metric='area_px'" in metrics and "data-metric='cache_hit'>true" in metrics
    assert "cache embedding" not in status and "3 candidates" in status


def test_clicks_on_a_preview_map_to_full_image_pixels(handlers, tmp_path):
    big = tmp_path / "big.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (1000, 3072, 3), dtype=np.uint8)).save(big)
    state = handlers.upload(str(big), None)[0]
    assert state.scale == pytest.approx(0.5)
    state, image, *_ = handlers.select(state, MODE_FG, sel(100, 50))
    assert Image.open(image).size == (1536, 500)  # the browser gets the preview
    assert state.prompts.points == ((200.0, 100.0, 1),)


def test_box_takes_two_clicks_and_undo(handlers):
    state = handlers.upload(str(COFFEE), None)[0]
    state = handlers.select(state, MODE_FG, sel(290, 230))[0]
    out = unpack(handlers.select(state, MODE_BOX, sel(480, 360)))
    state = out[0]
    assert state.pending_corner == (480.0, 360.0) and "first corner" in out[6]
    assert state.prompts.box is None and len(out[2]["value"]) == 3  # still showing the last result
    state, *_, rows, _ = unpack(handlers.select(state, MODE_BOX, sel(100, 60)))
    assert state.prompts.box == (100.0, 60.0, 480.0, 360.0) and rows[-1][0] == "box"
    state, *_, rows, _ = unpack(handlers.undo(state))
    assert state.prompts.box is None and rows == [["fg", 290.0, 230.0, "", ""]]
    state = handlers.select(state, MODE_BG, sel(10, 10))[0]
    assert state.prompts.points[-1] == (10.0, 10.0, 0)
    state = handlers.clear(state)[0]
    assert state.prompts.empty and state.result is None
    state = handlers.undo(state)[0]  # undo the clear
    assert len(state.prompts.points) == 2


def test_choose_changes_the_chosen_mask_everywhere(handlers):
    state = handlers.select(handlers.upload(str(COFFEE), None)[0], MODE_FG, sel(290, 230))[0]
    other = (state.chosen + 1) % 3
    state2, _, gallery, annotated, metrics, _, _ = unpack(
        handlers.choose(state, gr.SelectData(None, {"index": other, "value": None}))
    )
    assert state2.chosen == other and gallery["selected_index"] == other
    assert f"data-metric='index'>{other + 1}<" in metrics
    assert annotated[1][0][1].startswith(f"mask {other + 1} ")


def test_settings_threshold_rerenders_without_decoding(handlers):
    state = handlers.select(handlers.upload(str(COFFEE), None)[0], MODE_FG, sel(290, 230))[0]
    runs = handlers.studio.runlog.count()
    result = state.result
    lo = handlers.settings(state, True, -3.0, 0.5, 0, 0, False)
    hi = handlers.settings(state, True, 3.0, 0.5, 0, 0, False)
    assert lo[0].result is result and hi[0].result is result  # no decoder run
    assert handlers.studio.runlog.count() == runs
    area = lambda html: int(html.split("data-metric='area_px'>")[1].split("<")[0])
    assert area(lo[4]) > area(hi[4])
    single = handlers.settings(state, False, 0.0, 0.5, 0, 0, False)[0]
    assert len(single.result.scores) == 1 and handlers.studio.runlog.count() == runs + 1


def test_postprocessing_and_refine(handlers):
    state = handlers.select(handlers.upload(str(COFFEE), None)[0], MODE_FG, sel(290, 230))[0]
    plain = handlers.studio.full_mask(state)
    cleaned_state = handlers.settings(state, True, 0.0, 0.5, 500, 500, True)[0]
    cleaned = handlers.studio.full_mask(cleaned_state)
    assert not np.array_equal(plain, cleaned)  # test-tiny masks are full of specks
    refined = handlers.select(cleaned_state, MODE_FG, sel(300, 240))[0]
    assert refined.result is not None and refined.settings.refine


def test_edit_prompt_table(handlers):
    state = handlers.upload(str(COFFEE), None)[0]
    out = handlers.edit_prompts([["fg", "290", "230", "", ""], ["box", 100, 60, 480, 360]], state)
    assert out[0].prompts.points == ((290.0, 230.0, 1),) and out[0].prompts.box == (100.0, 60.0, 480.0, 360.0)
    with pytest.raises(gr.Error, match="outside"):
        handlers.edit_prompts([["fg", 9999, 1, "", ""]], state)
    with pytest.raises(gr.Error, match="fg, bg or box"):
        handlers.edit_prompts([["maybe", 1, 1, "", ""]], state)


def test_user_errors_become_gr_error(handlers, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(gr.Error, match="notes.png"):
        handlers.upload(str(bad), None)
    with pytest.raises(gr.Error, match="Upload an image"):
        handlers.select(None, MODE_FG, sel(1, 1))
    with pytest.raises(gr.Error, match="Nothing to export"):
        handlers.export(handlers.upload(str(COFFEE), None)[0])


def test_export_and_save(handlers):
    state = handlers.select(handlers.upload(str(COFFEE), None)[0], MODE_FG, sel(290, 230))[0]
    files = handlers.export(state)
    paths = [Path(p) for p in files["value"]]
    names = sorted(p.name for p in paths)
    i = state.chosen + 1
    assert names == sorted(
        [f"coffee_mask{i}.png", f"coffee_cutout{i}.png", f"coffee_overlay{i}.png", f"coffee_mask{i}.json"]
    )
    mask = np.asarray(Image.open(next(p for p in paths if p.name == f"coffee_mask{i}.png")))
    assert mask.shape == (400, 600) and set(np.unique(mask)) <= {0, 255}
    assert np.array_equal(mask == 255, state.result.full_mask(state.chosen))
    report = json.loads(next(p for p in paths if p.suffix == ".json").read_text())
    from pycocotools import mask as mask_utils

    rle = dict(report["rle"], counts=report["rle"]["counts"].encode())
    assert np.array_equal(mask_utils.decode(rle).astype(bool), mask == 255)
    assert report["metrics"]["area"] == int((mask == 255).sum())
    assert report["prompts"] == {"points": [[290, 230, 1]], "box": None}
    msg = handlers.save(state)
    saved = list((handlers.studio.outputs_dir / "overlays").glob("*.png"))
    assert len(saved) == 1 and Image.open(saved[0]).size == (600, 400) and saved[0].name in msg
    sources = [r["source"] for r in handlers.studio.runlog.records()]
    assert sources.count("ui") == 1 and "ui-export" in sources


def test_two_sessions_do_not_share_state(handlers):
    a = handlers.select(handlers.upload(str(COFFEE), None)[0], MODE_FG, sel(290, 230))[0]
    b = handlers.upload(str(ROOT / "examples" / "chelsea.png"), None)[0]
    b = handlers.select(b, MODE_BG, sel(10, 10))[0]
    assert a.session_id != b.session_id
    assert a.prompts.points == ((290.0, 230.0, 1),) and b.prompts.points == ((10.0, 10.0, 0),)
    assert a.image_key != b.image_key


def test_examples_have_presets_that_run(handlers):
    rows = load_presets()
    assert len(rows) >= 5
    titles = " ".join(r[2] for r in rows).lower()
    for word in ("plain", "fur", "busy", "small", "20 mp"):
        assert word in titles
    for path, preset, _ in rows:
        if "20mp" in path:
            continue  # covered by the browser test; decoding 20 MP here costs time
        out = handlers.example(path, preset, None)
        assert len(out[2]["value"]) == 3, path


def test_build_app_exposes_only_segment_and_annotate(handlers):
    app = build_app(handlers.studio)
    info = app.get_api_info()
    assert list(info["named_endpoints"]) == ["/segment", "/annotate"]
    assert metrics_html({}) and "data-metric" not in metrics_html({})


def test_switching_to_a_missing_model_offline_explains(handlers, tmp_path, monkeypatch):
    from sam_core import Segmenter

    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    handlers.studio._model_loader = lambda m, progress=None: Segmenter.from_pretrained(
        m, checkpoints_dir=tmp_path / "ckpt", progress=False
    )
    state = handlers.upload(str(COFFEE), None)[0]
    with pytest.raises(gr.Error, match="sam_vit_b_01ec64.pth"):
        handlers.switch_model("vit_b", state)
    # switching to a model that loads works and re-encodes the image for it
    out = handlers.switch_model("test-tiny", state)
    assert out[0].model_type == "test-tiny"


def test_image_upload_and_change_open_once_and_own_renders_do_not(handlers, tmp_path):
    """One listener gets the image's upload and change: Gradio fires both for an upload and for
    a webcam capture (named image.png), and a change for each render a handler shows."""
    state, rendered, *_ = handlers.open_image(str(COFFEE), None)
    assert state.image_name == "coffee.png" and state.untouched

    def skipped(out):
        return all(isinstance(v, dict) and v.get("__type__") == "update" and len(v) == 1 for v in out)

    assert skipped(handlers.open_image(rendered, state))  # our own render, shown back
    assert skipped(handlers.open_image(str(COFFEE), state))  # the second event of the pair
    assert skipped(handlers.open_image(None, state))  # a clear has its own listener
    capture = tmp_path / "image.png"
    Image.open(ROOT / "examples" / "chelsea.png").save(capture)
    out = handlers.open_image(str(capture), state)
    assert out[0].size == (451, 300) and out[0].session_id == state.session_id
    # re-uploading the open image after working on it starts it afresh
    clicked = handlers.select(out[0], MODE_FG, sel(100, 100))[0]
    assert not clicked.untouched and len(clicked.prompts.points) == 1
    again = handlers.open_image(str(capture), clicked)[0]
    assert again.untouched and not again.prompts.points and again.session_id == state.session_id


def test_upload_and_change_fired_together_open_the_image_once(handlers, tmp_path):
    """Gradio runs the pair at the same time, both with the state from before the open: one
    opens, the other changes nothing; a later upload of the same file (after the grace) opens."""
    import threading
    from types import SimpleNamespace

    handlers.opening.grace_s = 0.5
    state = handlers.upload(str(COFFEE), None)[0]
    capture = tmp_path / "image.png"
    Image.open(ROOT / "examples" / "chelsea.png").save(capture)
    page = SimpleNamespace(session_hash="page-1")
    outs: list = []
    threads = [threading.Thread(target=lambda: outs.append(handlers.open_image(str(capture), state, page)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    opened = [o for o in outs if isinstance(o[0], SessionState)]
    assert len(outs) == 2 and len(opened) == 1 and opened[0][0].size == (451, 300)
    other = SimpleNamespace(session_hash="page-2")  # another visitor opening the same file is not a pair
    assert isinstance(handlers.open_image(str(capture), state, other)[0], SessionState)
    time.sleep(0.6)
    assert isinstance(handlers.open_image(str(capture), state, page)[0], SessionState)


def browser(kind, **data):
    return gr.EventData(None, {"kind": kind, **data})


def test_browser_decoder_events(handlers):
    """The page's reports: ready (the server stops drawing clicks), a decoded click (session,
    table, metrics and run log updated, no image sent back), a choice, a box corner."""
    import json

    state = handlers.upload(str(COFFEE), None)[0]
    sync = json.loads(handlers.render(state).client)
    seg = handlers.studio.segmenter()
    assert sync["model_id"] == sync["decoder_model_id"] == f"test-tiny:{seg.weights_id}"
    assert sync["image_key"] == state.image_key and sync["full"] == [600, 400] and sync["client"] == "server"
    assert sync["decoder_url"].startswith("./gradio_api/file=") and sync["embedding_url"].endswith(".samemb")

    out = handlers.browser_event(state, browser("ready", threads=2))
    state = out.state
    assert state.client == "browser" and out.candidates["value"] is None  # the page draws candidates now
    assert json.loads(out.client)["client"] == "browser"

    prompts = {"points": [[290, 230, 1]], "box": None}
    out = handlers.browser_event(
        state, browser("decoded", image_key=state.image_key, model_id=sync["model_id"], prompts=prompts,
                       chosen=1, decode_ms=42.5)
    )
    skipped = gr.skip()
    assert out.image == skipped and out.candidates == skipped and out.result == skipped and out.client == skipped
    state = out.state
    assert state.prompts.points == ((290.0, 230.0, 1),) and state.chosen == 1
    assert state.result.timings["decoder"] == "browser" and state.result.timings["decode_ms"] == 42.5
    assert out.prompts == [["fg", 290, 230, "", ""]] and "browser" in out.metrics
    record = handlers.studio.runlog.records(newest_first=True)[0]
    assert record["decoder"] == "browser" and record["decode_ms"] == 42.5 and record["chosen_index"] == 1

    state = handlers.browser_event(state, browser("choose", image_key=state.image_key, chosen=2)).state
    assert state.chosen == 2
    state = handlers.browser_event(state, browser("corner", image_key=state.image_key, corner=[10, 20])).state
    assert state.pending_corner == (10.0, 20.0)
    # A report about another image changes nothing; one from another model is refused.
    assert all(v == skipped for v in handlers.browser_event(state, browser("choose", image_key="x", chosen=0)))
    with pytest.raises(gr.Error, match="another model"):
        handlers.browser_event(state, browser("decoded", image_key=state.image_key, model_id="vit_h:abc",
                                              prompts=prompts, chosen=0, decode_ms=1))
    # The export is torch-exact whoever decoded.
    assert handlers.studio.exact_result(state).timings.get("decoder", "torch") == "torch"

    out = handlers.browser_event(state, browser("failed", reason="no WebAssembly"))
    assert out.state.client == "server" and "no WebAssembly" in out.status and len(out.candidates["value"]) == 3
