"""Hostile and odd inputs through the real API (gradio_client -> launched demo.py) and the UI handlers.

One corpus of bad files, bad prompts and odd-but-valid images goes through both channels. Every
outcome is collected first, printed as a table in the normal pytest output, then asserted:
a bad input must give an error whose text says what is wrong, an odd image must work and
report the right ``image_size``, and a valid request must still work afterwards.

Also here: a GPU out-of-memory error (the real ``torch.cuda.OutOfMemoryError``) and a missing
CUDA GPU at start-up.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import httpx
import numpy as np
import pytest
import torch
from corpus import FileCase, bad_files, odd_images, print_table
from gradio_client import Client, handle_file
from PIL import Image
from server import run_server

from sam_core import Segmenter
from sam_core.app.studio import Studio
from sam_core.core.prompts import MAX_POINTS
from sam_core.ui.segment_tab import MODE_FG, Handlers

ROOT = Path(__file__).resolve().parents[1]
COFFEE = ROOT / "examples" / "coffee.png"  # 600 x 400
CHELSEA = ROOT / "examples" / "chelsea.png"  # 451 x 300
MAX_FILE_SIZE = "2mb"
MAX_FILE_BYTES = 2 * 1024 * 1024  # Gradio's "2mb"
CUDA_WARNING = "CUDA was requested but no CUDA GPU is available"


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, list[FileCase]]:
    folder = tmp_path_factory.mktemp("corpus")
    return {"bad": bad_files(folder / "bad", MAX_FILE_BYTES), "odd": odd_images(folder / "odd")}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # --device cuda on a machine without CUDA: the server must fall back to the CPU (checked below).
    with run_server(tmp_path_factory.mktemp("hostile-app"), "--max-file-size", MAX_FILE_SIZE,
                    "--device", "cuda") as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    return Client(server.url, verbose=False)


@pytest.fixture()
def handlers(tiny_segmenter, tmp_path):
    return Handlers(Studio(tiny_segmenter, outputs_dir=tmp_path / "outputs"))


def sel(index):
    return gr.SelectData(None, {"index": index, "value": None, "selected": True})


# ----------------------------------------------------------------------------- outcomes


@dataclass
class Outcome:
    case: str
    channel: str  # api (gradio_client), ui (Handlers), http (raw request, what the browser gets)
    expected: str  # "error" or "ok W×H"
    outcome: str
    message: str
    passed: bool

    def row(self) -> list[str]:
        return [self.case, self.channel, self.expected, self.outcome, "PASS" if self.passed else "FAIL", self.message]


def _words_ok(message: str, words: tuple[str, ...]) -> bool:
    low = message.lower()
    return bool(message.strip()) and all(w.lower() in low for w in words)


def expect_error(case: str, channel: str, words: tuple[str, ...], call) -> Outcome:
    """Run ``call``; it must raise an error whose text holds every word of ``words``."""
    try:
        result = call()
    except gr.Error as err:  # UI handlers
        msg = str(err.message)
        return Outcome(case, channel, "error", "gr.Error", msg, _words_ok(msg, words))
    except Exception as err:  # gradio_client: AppError (the server's gr.Error text), ValueError, ...
        msg = str(err)
        kind = type(err).__name__
        good_kind = channel != "ui"  # in the UI anything but gr.Error is a crash
        return Outcome(case, channel, "error", kind if good_kind else f"CRASH {kind}", msg,
                       good_kind and _words_ok(msg, words))
    return Outcome(case, channel, "error", "accepted!", repr(result)[:80], False)


def _fmt(size) -> str:
    return f"{size[0]}×{size[1]}"


def api_segment(client: Client, path: Path | None, prompts: str, multimask: bool = True):
    return client.predict(handle_file(str(path)) if path else None, prompts, multimask, api_name="/segment")


def api_ok(case: str, client: Client, path: Path, size: tuple[int, int], point: tuple[float, float]) -> Outcome:
    """A valid request: 3 candidates, image_size == size, full-resolution 0/255 masks."""
    expected = f"ok {_fmt(size)}"
    try:
        summary, masks = api_segment(client, path, json.dumps({"points": [[*point, 1]], "box": None}))
    except Exception as err:
        return Outcome(case, "api", expected, f"{type(err).__name__}", str(err), False)
    problems = []
    if summary["image_size"] != list(size):
        problems.append(f"image_size {summary['image_size']}")
    if len(summary["candidates"]) != 3 or len(masks) != 3:
        problems.append(f"{len(masks)} masks")
    for m in masks:
        arr = np.asarray(Image.open(m))
        if arr.shape != (size[1], size[0]) or not set(np.unique(arr)) <= {0, 255}:
            problems.append(f"mask {arr.shape}")
            break
    msg = "; ".join(problems) or f"best score {summary['candidates'][summary['best_index']]['score']:.3f}"
    return Outcome(case, "api", expected, f"ok {_fmt(summary['image_size'])}", msg, not problems)


def ui_ok(case: str, handlers: Handlers, path: Path, size: tuple[int, int]) -> Outcome:
    """Upload through the handler, click the centre: right size, 3 candidates, mask = preview size."""
    expected = f"ok {_fmt(size)}"
    try:
        state, image, *_ = handlers.upload(str(path), None)
        preview = Image.open(image).size
        state2, _, gallery, annotated, *_ = handlers.select(state, MODE_FG, sel(
            [preview[0] / 2, preview[1] / 2]))
    except gr.Error as err:
        return Outcome(case, "ui", expected, "gr.Error", str(err.message), False)
    except Exception as err:
        return Outcome(case, "ui", expected, f"CRASH {type(err).__name__}", str(err), False)
    problems = []
    if state.size != size:
        problems.append(f"size {state.size}")
    want_preview = size if max(size) <= 1536 else None
    if want_preview and preview != want_preview:
        problems.append(f"preview {preview}")
    if len(gallery["value"]) != 3:
        problems.append(f"{len(gallery['value'])} candidates")
    if Image.open(annotated[1][0][0]).size != preview:
        problems.append("mask size != shown image size")
    msg = "; ".join(problems) or f"shown at {_fmt(preview)}, 3 candidates"
    return Outcome(case, "ui", expected, f"ok {_fmt(state.size)}", msg, not problems)


# ----------------------------------------------------------------------------- the corpus

# (case, prompts JSON sent to /segment on coffee.png 600x400, words the error must contain)
API_BAD_PROMPTS = [
    ("malformed JSON", '{"points": [[290, 230, 1]', ("not valid JSON",)),
    ("NaN literal", '{"points": [[NaN, 230, 1]]}', ("finite number",)),
    ("NaN as a string", '{"points": [["NaN", 230, 1]]}', ("finite number",)),
    ("Infinity literal", '{"points": [[290, Infinity, 1]]}', ("finite number",)),
    ("-inf as a string", '{"box": ["-inf", 0, 100, 100]}', ("finite number",)),
    ("point outside the image", '{"points": [[2900, 230, 1]]}', ("outside the 600×400 image",)),
    ("negative point", '{"points": [[-5, 230, 1]]}', ("outside the 600×400 image",)),
    ("label 7", '{"points": [[290, 230, 7]]}', ("must be 1 (foreground) or 0 (background)",)),
    ("zero-area box", '{"box": [50, 50, 50, 120]}', ("has no area",)),
    ("box with 3 numbers", '{"box": [50, 50, 120]}', ("box must be [x1, y1, x2, y2]", "4 numbers")),
    ("box with 5 numbers", '{"box": [50, 50, 120, 130, 1]}', ("4 numbers",)),
    ("box outside the image", '{"box": [0, 0, 700, 100]}', ("outside the 600×400 image",)),
    ("no prompt (empty lists)", '{"points": [], "box": null}', ("at least one point or a box",)),
    ("no prompt (empty text)", "", ("at least one point or a box",)),
    ("10,000 points", json.dumps({"points": [[1, 1, 1]] * 10_000}), (f"at most {MAX_POINTS}",)),
    ("point is not [x, y, label]", '{"points": [[290, 230]]}', ("[x, y, label]",)),
    ("coordinate is text", '{"points": [["left", 230, 1]]}', ("must be a number",)),
    ("JSON array, not an object", "[[290, 230, 1]]", ("JSON object",)),
    ("unknown key", '{"clicks": [[290, 230, 1]]}', ("Unknown prompt keys", "clicks")),
]

# (case, edited prompt-table rows on coffee.png, words)
UI_BAD_ROWS = [
    ("text in a coordinate cell", [["fg", "abc", 230, "", ""]], ("must be a number",)),
    ("NaN cell (text)", [["fg", "NaN", 230, "", ""]], ("finite number",)),
    ("NaN cell (float)", [["fg", math.nan, 230, "", ""]], ("finite number",)),
    ("inf cell", [["bg", 290, "inf", "", ""]], ("finite number",)),
    ("point outside the image", [["fg", 2900, 230, "", ""]], ("outside the 600×400 image",)),
    ("negative point", [["bg", -5, 230, "", ""]], ("outside the 600×400 image",)),
    ("label 7", [["7", 290, 230, "", ""]], ("label must be fg, bg or box",)),
    ("zero-area box", [["box", 50, 50, 50, 120]], ("has no area",)),
    ("box without its 2nd corner", [["box", 50, 50, "", ""]], ("box x2", "must be a number")),
    ("two boxes", [["box", 1, 1, 9, 9], ["box", 2, 2, 8, 8]], ("Only one box",)),
    ("no prompt (empty table)", [], ("at least one point or a box",)),
    ("10,000 points", [["fg", 1, 1, "", ""]] * 10_000, (f"at most {MAX_POINTS}",)),
]


def test_hostile_and_odd_inputs(request, corpus, client, server, handlers):
    results: list[Outcome] = []

    # --- bad files ------------------------------------------------------------
    prompt = '{"points": [[10, 10, 1]], "box": null}'
    for case in corpus["bad"]:
        label = case.name + (f", {case.note}" if case.note else "")
        if case.name.startswith("file above"):
            # gradio_client checks the size against the server's limit before uploading
            results.append(expect_error(label, "api", ("maximum file size", f"{MAX_FILE_BYTES} bytes"),
                                        lambda c=case: api_segment(client, c.path, prompt)))
            # what the browser's upload gets from the server
            def raw_upload(c=case):
                with open(c.path, "rb") as f:
                    r = httpx.post(server.url + "gradio_api/upload", files={"files": (c.path.name, f)}, timeout=60)
                if r.status_code >= 400:
                    raise RuntimeError(f"HTTP {r.status_code}: {r.text}")
                return r.text
            results.append(expect_error(label, "http", ("HTTP 413", "maximum allowed size",
                                                        f"{MAX_FILE_BYTES} bytes"), raw_upload))
            continue
        results.append(expect_error(label, "api", case.expect_words,
                                    lambda c=case: api_segment(client, c.path, prompt)))
        results.append(expect_error(label, "ui", case.expect_words,
                                    lambda c=case: handlers.upload(str(c.path), None)))
    results.append(expect_error("no image file sent", "api", ("No image file",),
                                lambda: api_segment(client, None, prompt)))

    # --- bad prompts ------------------------------------------------------------
    for name, prompts, words in API_BAD_PROMPTS:
        results.append(expect_error(name, "api", words, lambda p=prompts: api_segment(client, COFFEE, p)))
    coffee = handlers.upload(str(COFFEE), None)[0]
    for name, rows, words in UI_BAD_ROWS:
        results.append(expect_error(name, "ui", words, lambda r=rows: handlers.edit_prompts(r, coffee)))
    # clicks: what the image's select event can carry (a browser only sends integer pixels)
    results.append(expect_error("click at NaN", "ui", ("finite number",),
                                lambda: handlers.select(coffee, MODE_FG, sel([math.nan, 5]))))
    for name, index in [("click with text coords", ["abc", 1]), ("click without coords", None),
                        ("click with one coord", [5])]:
        results.append(expect_error(name, "ui", ("Invalid click position",),
                                    lambda i=index: handlers.select(coffee, MODE_FG, sel(i))))
    full = handlers.edit_prompts([["fg", 10 + i, 10, "", ""] for i in range(MAX_POINTS)], coffee)[0]
    assert len(full.prompts.points) == MAX_POINTS
    results.append(expect_error(f"click no. {MAX_POINTS + 1}", "ui", (f"at most {MAX_POINTS}",),
                                lambda: handlers.select(full, MODE_FG, sel([300, 200]))))
    results.append(expect_error("click before any upload", "ui", ("Upload an image",),
                                lambda: handlers.select(None, MODE_FG, sel([5, 5]))))

    # --- odd but valid images -------------------------------------------------------
    for case in corpus["odd"]:
        w, h = case.size
        results.append(api_ok(case.name, client, case.path, case.size, (w / 2, h / 2)))
        results.append(ui_ok(case.name, handlers, case.path, case.size))

    # --- and a valid request still works afterwards -----------------------------------
    results.append(api_ok("valid request after the corpus", client, COFFEE, (600, 400), (290, 230)))
    results.append(ui_ok("valid request after the corpus", handlers, COFFEE, (600, 400)))

    print_table(request, "hostile and odd inputs (api = gradio_client /segment, ui = Handlers, "
                "http = raw upload)", ["case", "chan", "expected", "outcome", "", "message"],
                [r.row() for r in results], [34, 4, 11, 12, 4, 84])
    failed = [r for r in results if not r.passed]
    assert not failed, "misbehaving cases:\n" + "\n".join(
        f"  {r.case} [{r.channel}]: expected {r.expected}, got {r.outcome}: {r.message[:300]}" for r in failed)
    assert server.proc.poll() is None, "the server died"


# ----------------------------------------------------------------------------- GPU


def test_missing_cuda_falls_back_to_cpu_with_a_warning(server, client):
    """``python demo.py --device cuda`` without a GPU starts on the CPU and says so."""
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    log = server.log_text()
    assert CUDA_WARNING in log and "WARNING" in log
    config = httpx.get(server.url + "config", timeout=30).text
    assert CUDA_WARNING in config  # shown in the page header too
    assert "device **cpu**" in config
    summary, _ = api_segment(client, COFFEE, '{"points": [[290, 230, 1]]}')
    assert summary["image_size"] == [600, 400]


class _OomOnce:
    """A forward pre-hook that raises the real CUDA OOM exception on its first call only."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, module, inputs):
        self.calls += 1
        if self.calls == 1:
            raise torch.cuda.OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 4.00 GiB (GPU 0; 15.77 GiB total capacity)")


def test_gpu_out_of_memory_is_explained_and_recoverable(tmp_path):
    seg = Segmenter.from_pretrained("test-tiny", device="cpu")
    seg.model_type = "vit_h"  # the message names the model and suggests smaller ones
    studio = Studio(seg, outputs_dir=tmp_path / "outputs")
    h = Handlers(studio)

    # another visitor's image is cached...
    other = h.upload(str(CHELSEA), None)[0]
    assert seg.is_cached(other.image_key) and seg.encoder_runs == 1

    # ...then the image encoder runs out of GPU memory on a new image
    hook = _OomOnce()
    handle = seg.model.image_encoder.register_forward_pre_hook(hook)
    try:
        with pytest.raises(gr.Error) as err:
            h.upload(str(COFFEE), None)
    finally:
        handle.remove()
    msg = err.value.message
    assert "out of memory" in msg and "vit_h" in msg, msg
    assert "vit_l" in msg and "vit_b" in msg, msg  # suggests a smaller model
    assert "try again" in msg, msg
    assert hook.calls == 1
    assert not seg.is_cached(other.image_key), "the embedding cache was not freed"

    # the model is still loaded: the same upload now works, and clicks work
    state = h.upload(str(COFFEE), None)[0]
    out = h.select(state, MODE_FG, sel([290, 230]))
    assert len(out[2]["value"]) == 3 and out[0].result is not None

    # the mask decoder running out of memory on a click: same message, next click works
    hook = _OomOnce()
    handle = seg.model.mask_decoder.register_forward_pre_hook(hook)
    try:
        with pytest.raises(gr.Error, match="out of memory.*vit_l or vit_b"):
            h.select(out[0], MODE_FG, sel([100, 100]))
        retry = h.select(out[0], MODE_FG, sel([100, 100]))
    finally:
        handle.remove()
    assert len(retry[0].prompts.points) == 2 and len(retry[2]["value"]) == 3

    # the /segment endpoint's handler gives the same explanation
    hook = _OomOnce()
    seg.clear_cache()
    handle = seg.model.image_encoder.register_forward_pre_hook(hook)
    try:
        with pytest.raises(gr.Error, match="out of memory.*vit_l or vit_b"):
            h.api_segment(str(CHELSEA), '{"points": [[200, 150, 1]]}', True)
        summary, masks = h.api_segment(str(CHELSEA), '{"points": [[200, 150, 1]]}', True)
    finally:
        handle.remove()
    assert summary["image_size"] == [451, 300] and len(masks) == 3
