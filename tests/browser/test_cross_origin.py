"""Cross-origin isolation in Chromium: the real app still works under COOP/COEP, and the vendored
onnxruntime-web runs a model with threads from the URLs that ``sam_core.ui.web_assets`` gives."""

from __future__ import annotations

import functools
import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from sam_core.ui.web_assets import ORT_DIR, ORT_ENTRY, CrossOriginIsolation, file_url, register_static

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
BLOCKED = ("blocked", "cross-origin", "coep", "corp", "embedder", "err_")

pytestmark = pytest.mark.browser


def first_preset_title() -> str:
    presets = [p for p in json.loads((EXAMPLES / "presets.json").read_text()) if (EXAMPLES / p["file"]).exists()]
    return presets[0]["title"]


class Watch:
    """Failed requests, console errors and responses of one page."""

    def __init__(self, page) -> None:
        self.failed: list[tuple[str, str | None]] = []
        self.errors: list[str] = []
        self.responses: list = []
        page.on("requestfailed", lambda r: self.failed.append((r.url, r.failure)))
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("response", lambda r: self.responses.append(r))

    def real_failures(self) -> list[tuple[str, str | None]]:
        """Failed requests, less Gradio's client closing its idle event stream (it does so without
        the headers too)."""
        return [(u, f) for u, f in self.failed if not ("/gradio_api/queue/data" in u and f == "net::ERR_ABORTED")]

    def blocked(self) -> list[str]:
        return [e for e in self.errors if any(w in e.lower() for w in BLOCKED)]

    def response(self, suffix: str):
        hits = [r for r in self.responses if r.url.split("?")[0].endswith(suffix)]
        assert hits, f"no response for *{suffix}: {[r.url for r in self.responses]}"
        return hits[0]


def test_real_app_is_isolated_and_still_works(browser, app_server):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    watch = Watch(page)
    doc = page.goto(app_server.url)
    assert doc.headers["cross-origin-opener-policy"] == "same-origin"
    assert doc.headers["cross-origin-embedder-policy"] == "credentialless"
    page.wait_for_selector("#input-image", state="visible")
    assert page.evaluate("self.crossOriginIsolated") is True

    page.get_by_text(first_preset_title()).click()
    page.wait_for_function("() => document.querySelectorAll('#candidates .caption-label').length === 3", timeout=60_000)
    assert page.locator("#candidates img").count() >= 3  # the candidate thumbnails (same-origin files) loaded
    # the vendored module loads in the real page (a module import checks the MIME type)
    version = page.evaluate("url => import(url).then(ort => ort.env.versions.web)", file_url(ORT_DIR / ORT_ENTRY))
    assert version == json.loads((ORT_DIR / "manifest.json").read_text())["version"]
    assert watch.real_failures() == [] and watch.blocked() == [], (watch.failed, watch.errors)
    assert [r.url for r in watch.responses if r.status >= 400] == []
    page.close()


def test_off_is_not_isolated(browser, tmp_path):
    from server import run_server

    with run_server(tmp_path, "--cross-origin-isolation", "off") as srv:
        page = browser.new_page()
        doc = page.goto(srv.url)
        assert "cross-origin-embedder-policy" not in doc.headers
        page.wait_for_selector("#input-image", state="visible")
        assert page.evaluate("self.crossOriginIsolated") is False
        page.close()


# --- onnxruntime-web in a tiny in-process Gradio app ----------------------------------------------


def add_one_model(path: Path) -> None:
    """y = x + 1 on a float32 [1, 4]."""
    import onnx
    from onnx import TensorProto, helper

    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "one"], ["y"])],
        "add_one",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        initializer=[one],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())


@contextmanager
def tiny_app(static_dir: Path, coep: str | None) -> Iterator[str]:
    """A Blocks app serving ``static_dir``, with COOP + COEP ``coep`` (None: no middleware)."""
    import gradio as gr
    from starlette.middleware import Middleware

    register_static(static_dir)
    with gr.Blocks() as demo:
        gr.Markdown("ort", elem_id="hello")
    middleware = (
        []
        if coep is None
        else [
            Middleware(
                CrossOriginIsolation,
                headers={"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": coep},
            )
        ]
    )
    from server import free_port

    demo.launch(
        server_name="127.0.0.1",
        server_port=free_port(),
        prevent_thread_lock=True,
        quiet=True,
        app_kwargs={"middleware": middleware},
    )
    try:
        yield demo.local_url
    finally:
        demo.close()


@contextmanager
def other_origin(folder: Path) -> Iterator[str]:
    """A plain file server on another port (another origin), sending no CORP/CORS headers."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


RUN_ORT = """async ([ortUrl, modelUrl, threads, proxy]) => {
  const abs = u => new URL(u, document.baseURI).href;
  const ort = await import(abs(ortUrl));
  ort.env.wasm.wasmPaths = new URL('.', abs(ortUrl)).href;
  ort.env.wasm.numThreads = threads;
  ort.env.wasm.proxy = proxy;  // inference in a worker that runs ort.wasm.min.mjs itself
  const session = await ort.InferenceSession.create(modelUrl, {executionProviders: ['wasm']});
  const x = new ort.Tensor('float32', Float32Array.from([1, 2, 3, 4]), [1, 4]);
  const out = await session.run({x});
  return {y: Array.from(out.y.data), threads: ort.env.wasm.numThreads, isolated: self.crossOriginIsolated};
}"""

LOAD_IMG = """src => new Promise(done => { const i = new Image(); i.onload = () => done(i.naturalWidth);
  i.onerror = () => done(-1); i.src = src; })"""


@pytest.mark.parametrize(
    ("coep", "proxy"), [("credentialless", False), ("require-corp", False), (None, False), ("credentialless", True)]
)
def test_ort_runs_with_threads_under_isolation(browser, tmp_path, coep, proxy):
    add_one_model(tmp_path / "add_one.onnx")
    (tmp_path / "remote").mkdir()
    (tmp_path / "remote" / "pixel.png").write_bytes((EXAMPLES / "coffee.png").read_bytes())
    with tiny_app(tmp_path, coep) as url, other_origin(tmp_path / "remote") as remote:
        page = browser.new_page()
        watch = Watch(page)
        page.goto(url)
        page.wait_for_selector("#hello")
        res = page.evaluate(RUN_ORT, [file_url(ORT_DIR / ORT_ENTRY), file_url(tmp_path / "add_one.onnx"), 2, proxy])
        assert res["y"] == [2, 3, 4, 5]
        assert res["isolated"] is (coep is not None)
        # threads only in an isolated page: ort silently drops numThreads to 1 otherwise
        assert res["threads"] == (2 if coep else 1)
        wasm = watch.response("ort-wasm-simd-threaded.wasm")
        assert wasm.status == 200 and wasm.headers["content-type"] == "application/wasm"
        assert watch.response(ORT_ENTRY).headers["content-type"].startswith("text/javascript")
        glue = [r for r in watch.responses if r.url.endswith("ort-wasm-simd-threaded.mjs")]
        # the import (in the page, or in the proxy worker), then the pthread worker
        assert len(glue) == (2 if coep else 1), [r.url for r in glue]
        entry = [r for r in watch.responses if r.url.endswith(ORT_ENTRY)]
        assert len(entry) == (2 if proxy else 1)  # the proxy worker runs the entry module again
        assert watch.failed == [] and watch.errors == [], (watch.failed, watch.errors)
        # why credentialless: a cross-origin image sent without CORP loads (without cookies);
        # under require-corp Chromium blocks it (NotSameOriginAfterDefaultedToSameOriginByCoep)
        width = page.evaluate(LOAD_IMG, remote + "pixel.png")
        assert width == (-1 if coep == "require-corp" else 600)
        page.close()
