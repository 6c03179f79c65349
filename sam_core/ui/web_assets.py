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
import logging
import mimetypes
import shutil
import subprocess
import tarfile
import tempfile
import threading
from pathlib import Path
from typing import Any

from filelock import FileLock
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sam_core.core.files import write_atomic
from sam_core.model.weights import sha256_file

STATIC_DIR = Path(__file__).resolve().parent / "static"
ORT_DIR = STATIC_DIR / "ort"
ORT_ENTRY = "ort.wasm.min.mjs"
#: The 14 MB WASM binary is not kept in git: fetched once (``npm pack``) and checked against the manifest.
ORT_RUNTIME = "ort-wasm-simd-threaded.wasm"

log = logging.getLogger(__name__)
_runtime_lock = threading.Lock()
_runtime_ready = False

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


def ensure_ort_runtime(timeout: float = 600) -> str | None:
    """Put onnxruntime-web's WASM binary into ``ORT_DIR`` unless it is there; None when ready, else why not.

    The binary (14 MB) is not kept in git, like the weights: the first start fetches the pinned
    package with ``npm pack`` from npm's configured registry (33 MB, once), takes
    ``dist/ort-wasm-simd-threaded.wasm`` out of it and keeps it only if its size and sha256 equal
    the manifest's. Without npm or the registry the browser decoder is off (the page says why) and
    clicks are decoded on the server. One fetch at a time per machine (a file lock).
    """
    global _runtime_ready
    manifest = load_manifest()
    entry = next(e for e in manifest["files"] if e["name"] == ORT_RUNTIME)
    path = ORT_DIR / ORT_RUNTIME

    def ok() -> bool:
        return path.is_file() and path.stat().st_size == entry["bytes"] and sha256_file(path) == entry["sha256"]

    with _runtime_lock:
        if _runtime_ready:
            return None
        with FileLock(str(Path(tempfile.gettempdir()) / "sam-studio-ort-runtime.lock")):
            if not ok():
                why = _fetch_runtime(manifest, path, timeout)
                if why is not None:
                    log.warning("browser decoder off: %s", why)
                    return why
                if not ok():
                    path.unlink(missing_ok=True)
                    return f"the fetched {ORT_RUNTIME} does not match the manifest's sha256"
        _runtime_ready = True
        return None


def _fetch_runtime(manifest: dict[str, Any], dest: Path, timeout: float) -> str | None:
    """``npm pack`` the pinned onnxruntime-web and write its WASM binary to ``dest``; None or why not."""
    npm = shutil.which("npm")
    spec = f"{manifest['package']}@{manifest['version']}"
    if npm is None:
        return (
            "onnxruntime-web's WASM runtime is not installed and npm is missing to fetch it "
            "(apt-get install npm, then restart)"
        )
    log.info("fetching %s's WASM runtime with npm pack (once)", spec)
    with tempfile.TemporaryDirectory(prefix="sam-ort-") as tmp:
        try:
            out = subprocess.run(
                [npm, "pack", spec, "--json"], cwd=tmp, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            return f"npm pack {spec} took more than {timeout:.0f} s"
        if out.returncode != 0:
            return f"npm pack {spec} failed: {out.stderr.strip()[-300:]}"
        record = json.loads(out.stdout)
        tarball = Path(tmp) / (record[0] if isinstance(record, list) else record)["filename"]
        with tarfile.open(tarball, "r:gz") as tar:
            member = tar.extractfile(f"package/dist/{ORT_RUNTIME}")
            if member is None:
                return f"{spec} has no dist/{ORT_RUNTIME}"
            data = member.read()
    try:
        write_atomic(dest, data)
    except OSError as err:
        return f"could not write {dest}: {err}"
    return None


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
