"""Clicks never wait for an encode: a click on a cached image is served while another image encodes.

The image encoder is wrapped to sleep ~3 s before computing (a slow image); while one thread
encodes a new image, five clicks on an already cached embedding each take well under 0.5 s
(~0.1 s normally), with the torch and the onnxruntime decoder, through the Segmenter and
through the Studio (two sessions).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synth import photo_like

from sam_core import Segmenter
from sam_core.app.session import PromptMode
from sam_core.app.studio import Click, Studio
from sam_core.core.prompts import Prompts
from sam_core.model.build import build_test_tiny, resolve_placement

SLOW_S = 3.0
CLICK_LIMIT_S = 0.5


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("onnx-concurrency")


def slow_segmenter(backend: str, onnx_dir: Path) -> tuple[Segmenter, threading.Event]:
    """A test-tiny Segmenter whose image encoder sleeps SLOW_S first; the event is set when it starts."""
    seg = Segmenter(
        build_test_tiny(),
        model_type="test-tiny",
        placement=resolve_placement("cpu", "fp32"),
        decoder=backend,
        onnx_dir=onnx_dir,
    )
    assert seg.prepare_decoder() == backend
    encoder = seg.model.image_encoder
    fast = encoder.forward
    started = threading.Event()

    def slow(x):
        started.set()
        time.sleep(SLOW_S)
        return fast(x)

    encoder.forward = slow
    return seg, started


class Encode(threading.Thread):
    def __init__(self, fn) -> None:
        super().__init__(daemon=True)
        self.fn, self.error = fn, None

    def run(self) -> None:
        try:
            self.fn()
        except BaseException as err:  # reported by the test
            self.error = err


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_clicks_never_wait_for_an_encode(backend, onnx_dir):
    seg, started = slow_segmenter(backend, onnx_dir)
    cached, new = photo_like(300, 470, seed=11), photo_like(320, 480, seed=12)
    emb, _ = seg.embed(cached)  # slow too: this one is the cached image
    started.clear()
    encode = Encode(lambda: seg.embed(new))
    encode.start()
    assert started.wait(10)
    times = []
    for i in range(5):
        t0 = time.perf_counter()
        got, hit = seg.embed(cached)  # the click's cache lookup, as Studio.run does
        res = seg.decode(got, Prompts.parse([(100 + 20 * i, 120, 1)], (40, 30, 400, 280)))
        times.append(time.perf_counter() - t0)
        assert hit and got is emb and res.timings["decoder"] == backend
    still_encoding = encode.is_alive()
    encode.join(30)
    assert encode.error is None
    print(f"{backend}: click latencies during an encode (s): {[round(t, 3) for t in times]}")
    assert still_encoding, "the encode finished before the clicks: the test proved nothing"
    assert max(times) < CLICK_LIMIT_S, times
    assert seg.encoder_runs == 2


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_studio_session_clicks_while_another_session_opens_an_image(backend, onnx_dir, tmp_path):
    seg, started = slow_segmenter(backend, onnx_dir)
    paths = []
    for i, (h, w) in enumerate([(300, 470), (320, 480)]):
        paths.append(tmp_path / f"image{i}.png")
        Image.fromarray(photo_like(h, w, seed=20 + i)).save(paths[-1])
    studio = Studio(seg, outputs_dir=tmp_path / "outputs")
    state = studio.open_image(None, str(paths[0]))  # session 2's image, encoded (slowly) beforehand
    started.clear()
    opener = Encode(lambda: studio.open_image(None, str(paths[1])))  # session 1
    opener.start()
    assert started.wait(10)
    times = []
    for i in range(5):
        t0 = time.perf_counter()
        state = studio.handle(state, Click(60.0 + 15 * i, 90.0 + 10 * i, PromptMode.FOREGROUND))
        times.append(time.perf_counter() - t0)
        assert state.result is not None and state.result.timings["decoder"] == backend
    still_encoding = opener.is_alive()
    opener.join(30)
    assert opener.error is None
    print(f"studio {backend}: click latencies during an encode (s): {[round(t, 3) for t in times]}")
    assert still_encoding, "the encode finished before the clicks: the test proved nothing"
    assert max(times) < CLICK_LIMIT_S, times
    assert len(state.prompts.points) == 5 and np.isfinite(state.result.scores).all()
