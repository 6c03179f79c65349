"""Static files for the browser (the vendored onnxruntime-web) and cross-origin isolation headers.

* ``register_static()`` lets Gradio serve ``sam_core/ui/static`` (and any extra folders) at
  ``gradio_api/file=<absolute path>`` with their real MIME types; call it before ``launch``.
* ``file_url(path)`` is that URL, relative to the app root (so it works behind a share link, a Space
  or a root path).
* ``CrossOriginIsolation`` (``isolation_middleware()`` for ``app_kwargs={"middleware": [...]}``) adds
  COOP/COEP to every HTTP response, so ``self.crossOriginIsolated`` is true and onnxruntime-web may
  use threads (``ort.env.wasm.numThreads > 1``; without isolation it silently runs on one thread).
"""

from __future__ import annotations

import json
import mimetypes
from pathlib import Path
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

STATIC_DIR = Path(__file__).resolve().parent / "static"
ORT_DIR = STATIC_DIR / "ort"
ORT_ENTRY = "ort.wasm.min.mjs"

MIME_TYPES = {".wasm": "application/wasm", ".mjs": "text/javascript"}

# COEP: `credentialless`, not `require-corp`. Both made the page cross-origin isolated in Chromium
# and both loaded every same-origin Gradio asset (tests/browser/test_cross_origin.py checks the page).
# The difference is cross-origin no-cors loads: under `require-corp` each needs a
# Cross-Origin-Resource-Policy header or it is blocked (a remote example image, a font or stylesheet
# from a CDN, a custom gr.HTML/`head` script); under `credentialless` they load, only without cookies.
# The price: Safari (no `credentialless` support yet) ignores the header, stays un-isolated and the
# decoder falls back to one thread there; nothing breaks.
# COOP `same-origin` cuts window.opener links to other origins (OAuth pop-ups opened *by* this page
# would lose their opener; Gradio's own HF login redirects instead).
# No Cross-Origin-Resource-Policy: this page's subresources are same-origin and need none, and a
# `same-origin` CORP would stop other sites from embedding the app with Gradio's <gradio-app> loader.
ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "credentialless",
}


def load_manifest(folder: Path = ORT_DIR) -> dict[str, Any]:
    """The vendored onnxruntime-web's ``manifest.json`` (package, version, files with sizes and sha256)."""
    return json.loads((folder / "manifest.json").read_text())


def ensure_mime_types() -> None:
    """Map ``.wasm`` and ``.mjs`` in Python's ``mimetypes`` (Starlette's FileResponse asks it).

    A module import of a file served as anything but JavaScript fails, and
    ``WebAssembly.instantiateStreaming`` needs ``application/wasm``. ``gradio.routes`` calls
    ``mimetypes.init()`` when imported (which would drop earlier ``add_type`` calls), so import it first.
    """
    import gradio.routes  # noqa: F401

    for ext, mime in MIME_TYPES.items():
        if mimetypes.guess_type(f"x{ext}")[0] != mime:
            mimetypes.add_type(mime, ext)


def register_static(*extra_dirs: Path) -> None:
    """Serve ``STATIC_DIR`` and ``extra_dirs`` at ``gradio_api/file=<absolute path>``; call before launch.

    Everything inside these folders becomes readable over the network: keep them to public files.
    """
    import gradio as gr

    ensure_mime_types()
    gr.set_static_paths([STATIC_DIR, *(Path(d) for d in extra_dirs)])


def file_url(path: Path) -> str:
    """``./gradio_api/file=<absolute path>``: a file under a registered folder, relative to the app's page.

    Relative, so it works behind a share link, a Space or a root path (the page is at the app root, with
    a trailing slash). The leading ``./`` matters: ``import("gradio_api/file=...")`` is a bare module
    specifier and fails. In JavaScript that Gradio evaluates (``js_on_load``, ``js=``) a relative
    ``import()`` resolves against the evaluating *script's* URL (``/assets/...``), not the page's, so
    resolve it first: ``import(new URL(url, document.baseURI).href)``; the same for ``wasmPaths``.
    """
    return f"./gradio_api/file={Path(path).resolve().as_posix()}"


class CrossOriginIsolation:
    """Pure ASGI middleware: adds ``ISOLATION_HEADERS`` to every HTTP response.

    Not Starlette's BaseHTTPMiddleware, which wraps the response body in its own stream and can hold
    back Gradio's server-sent events; this only edits the ``http.response.start`` message. Headers a
    route sets itself are kept.
    """

    def __init__(self, app: ASGIApp, headers: dict[str, str] | None = None) -> None:
        self.app = app
        self.headers = dict(ISOLATION_HEADERS if headers is None else headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


cross_origin_isolation = CrossOriginIsolation


def isolation_middleware() -> Middleware:
    """``CrossOriginIsolation`` for ``Blocks.launch(app_kwargs={"middleware": [...]})``."""
    return Middleware(CrossOriginIsolation)
