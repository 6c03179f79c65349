"""The vendored onnxruntime-web (manifest, --check), how the app serves it, and the COOP/COEP middleware."""

from __future__ import annotations

import asyncio
import concurrent.futures
import fnmatch
import hashlib
import json
import mimetypes
import os
import re
import shutil
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path
from urllib.parse import urljoin

import pytest
from server import run_server

from sam_core.ui.web_assets import (
    ISOLATION_HEADERS,
    ORT_DIR,
    STATIC_DIR,
    CrossOriginIsolation,
    file_url,
    isolation_middleware,
    load_manifest,
    register_static,
)

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "vendor_onnxruntime_web.py"
COFFEE = ROOT / "examples" / "coffee.png"
MIME = {".wasm": "application/wasm", ".mjs": "text/javascript"}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def vendored() -> list[dict]:
    return [e for e in load_manifest()["files"] if e["name"] != "LICENSE"]


def check(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--check", "--dir", str(folder)], capture_output=True, text=True, timeout=60
    )


# --- the vendored files -----------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def ort_runtime():
    """The WASM binary is not in git: the first start fetches it (npm pack), as the app does."""
    from sam_core.ui.web_assets import ensure_ort_runtime

    why = ensure_ort_runtime()
    if why is not None:
        if os.environ.get("SAM_REQUIRE_BROWSER"):
            pytest.fail(why)
        pytest.skip(why)


def test_the_wasm_runtime_is_not_in_git():
    tracked = subprocess.run(["git", "ls-files", "sam_core/ui/static/ort"], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode == 0:  # a git checkout
        assert "ort-wasm-simd-threaded.wasm" not in tracked.stdout
        assert "ort.wasm.min.mjs" in tracked.stdout and "manifest.json" in tracked.stdout


def test_manifest_lists_exactly_the_files_present():
    manifest = load_manifest()
    assert manifest["package"] == "onnxruntime-web" and manifest["license"] == "MIT"
    assert manifest["npm"]["integrity"].startswith("sha512-") and len(manifest["npm"]["shasum"]) == 40
    names = {e["name"] for e in manifest["files"]}
    assert names == {p.name for p in ORT_DIR.iterdir()} - {"manifest.json", "README.md"}
    assert names == {"ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm", "LICENSE"}
    for e in manifest["files"]:
        data = (ORT_DIR / e["name"]).read_bytes()
        assert len(data) == e["bytes"] and sha256(data) == e["sha256"], e["name"]
        assert e["why"]
    assert "MIT License" in (ORT_DIR / "LICENSE").read_text()
    # the module's own banner names the vendored version
    assert f"ONNX Runtime Web v{manifest['version']}" in (ORT_DIR / "ort.wasm.min.mjs").read_text()[:200]


def test_only_the_wasm_backend_is_vendored():
    assert not [p.name for p in ORT_DIR.iterdir() if re.search(r"jsep|asyncify|jspi|webgpu|webgl", p.name)]
    assert sum(p.stat().st_size for p in ORT_DIR.iterdir()) < 15_000_000

    # the entry module imports only the glue, and the glue loads only the binary (from env.wasm.wasmPaths)
    def named(name: str) -> set[str]:
        return set(re.findall(r"ort-wasm[\w.-]*\.(?:mjs|wasm)", (ORT_DIR / name).read_text()))

    assert named("ort.wasm.min.mjs") == {"ort-wasm-simd-threaded.mjs"}
    assert named("ort-wasm-simd-threaded.mjs") == {"ort-wasm-simd-threaded.wasm"}


def test_check_passes_on_the_tree():
    out = check(ORT_DIR)
    assert out.returncode == 0, out.stderr
    assert "ok: onnxruntime-web" in out.stdout


@pytest.mark.parametrize("damage", ["tamper", "truncate", "remove", "extra"])
def test_check_fails_on_a_damaged_copy(tmp_path, damage):
    copy = tmp_path / "ort"
    shutil.copytree(ORT_DIR, copy)
    target = copy / "ort.wasm.min.mjs"
    if damage == "tamper":
        data = bytearray(target.read_bytes())
        data[100] ^= 1  # same size, other bytes
        target.write_bytes(bytes(data))
    elif damage == "truncate":
        target.write_bytes(target.read_bytes()[:-1])
    elif damage == "remove":
        target.unlink()
    else:
        (copy / "ort.webgpu.min.mjs").write_text("export {}")
    out = check(copy)
    assert out.returncode == 1
    assert "does not match its manifest" in out.stderr and "Traceback" not in out.stderr
    expected = {
        "tamper": "ort.wasm.min.mjs: sha256",
        "truncate": "ort.wasm.min.mjs: 50125 bytes",
        "remove": "ort.wasm.min.mjs: missing",
        "extra": "ort.webgpu.min.mjs: present but not in the manifest",
    }
    assert expected[damage] in out.stderr


def test_package_data_ships_the_vendored_files():
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["sam_core"]
    pkg = ROOT / "sam_core"
    for path in ORT_DIR.iterdir():
        rel = path.relative_to(pkg).as_posix()
        assert any(fnmatch.fnmatch(rel, g) for g in globs), rel


# --- the helpers and the middleware ----------------------------------------------------------------


def test_file_url_is_relative_to_the_page():
    url = file_url(ORT_DIR / "ort.wasm.min.mjs")
    assert url == f"./gradio_api/file={(ORT_DIR / 'ort.wasm.min.mjs').resolve().as_posix()}"
    assert urljoin("https://x.gradio.live/", url).startswith("https://x.gradio.live/gradio_api/file=/")
    assert urljoin("https://h/proxy/app/", url).startswith("https://h/proxy/app/gradio_api/file=/")


def test_register_static_maps_the_mime_types(tmp_path):
    from gradio.data_classes import _StaticFiles

    register_static(tmp_path)
    assert {STATIC_DIR.resolve(), tmp_path.resolve()} <= set(_StaticFiles.all_paths)
    assert mimetypes.guess_type("a.wasm")[0] == "application/wasm"
    assert mimetypes.guess_type("a.mjs")[0] == "text/javascript"


def run_asgi(app, scope: dict) -> list[dict]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    # In a thread of its own: Playwright's sync API (the browser tests, same process) keeps an
    # event loop running in the main thread, where asyncio.run refuses to start another.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, app(scope, receive, send)).result()
    return sent


def test_middleware_adds_headers_and_streams_unbuffered():
    async def streaming(scope, receive, send):
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream"), (b"cross-origin-opener-policy", b"unsafe-none")],
            }
        )
        for i in range(3):
            await send({"type": "http.response.body", "body": f"data: {i}\n\n".encode(), "more_body": i < 2})

    sent = run_asgi(CrossOriginIsolation(streaming), {"type": "http", "method": "GET", "path": "/", "headers": []})
    headers = dict(sent[0]["headers"])
    assert headers[b"cross-origin-embedder-policy"] == ISOLATION_HEADERS["Cross-Origin-Embedder-Policy"].encode()
    assert headers[b"cross-origin-opener-policy"] == b"unsafe-none"  # a route's own value is kept
    assert [m["body"] for m in sent[1:]] == [b"data: 0\n\n", b"data: 1\n\n", b"data: 2\n\n"]  # chunk by chunk

    seen = []

    async def other(scope, receive, send):
        seen.append(scope["type"])

    run_asgi(CrossOriginIsolation(other), {"type": "websocket"})
    assert seen == ["websocket"]
    assert isolation_middleware().cls is CrossOriginIsolation


def test_launch_kwargs_follow_the_flag(monkeypatch):
    from sam_core.cli import launch_kwargs, parse_args

    on = launch_kwargs(parse_args([]), routes=["r"])["app_kwargs"]
    assert on["routes"] == ["r"] and [m.cls for m in on["middleware"]] == [CrossOriginIsolation]
    assert launch_kwargs(parse_args(["--cross-origin-isolation", "off"]))["app_kwargs"]["middleware"] == []
    monkeypatch.setenv("SAM_CROSS_ORIGIN_ISOLATION", "off")
    assert parse_args([]).cross_origin_isolation == "off"


# --- the running app ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with run_server(tmp_path_factory.mktemp("web-assets-app")) as srv:
        yield srv


def get(url: str) -> tuple[bytes, dict[str, str]]:
    with urllib.request.urlopen(url, timeout=30) as r:
        assert r.status == 200
        return r.read(), {k.lower(): v for k, v in r.headers.items()}


def assert_isolated(headers: dict[str, str]) -> None:
    for name, value in ISOLATION_HEADERS.items():
        assert headers.get(name.lower()) == value, (name, headers)


@pytest.mark.parametrize("entry", vendored(), ids=lambda e: e["name"])
def test_the_app_serves_the_vendored_files(server, entry):
    body, headers = get(urljoin(server.url, file_url(ORT_DIR / entry["name"])))
    assert sha256(body) == entry["sha256"]
    mime = MIME[Path(entry["name"]).suffix]
    assert headers["content-type"].split(";")[0].strip() == mime, headers["content-type"]
    assert "attachment" not in headers.get("content-disposition", "")
    assert_isolated(headers)


def test_headers_on_the_page_and_gradio_assets(server):
    html, headers = get(server.url)
    assert_isolated(headers)
    assets = re.findall(r'(?:src|href)="\.?/?(assets/[^"]+\.(?:js|css))"', html.decode())
    assert assets, html[:500]
    for asset in assets[:2]:
        assert_isolated(get(urljoin(server.url, asset))[1])
    assert_isolated(get(server.url + "gradio_api/info")[1])


def test_api_client_works_under_the_middleware(server):
    from gradio_client import Client, handle_file

    client = Client(server.url, verbose=False)
    prompts = {"points": [[290, 230, 1]], "box": None}
    summary, masks = client.predict(handle_file(str(COFFEE)), json.dumps(prompts), True, api_name="/segment")
    assert summary["image_size"] == [600, 400] and len(summary["candidates"]) == 3 and len(masks) == 3


def test_off_sends_no_isolation_headers(tmp_path):
    with run_server(tmp_path, "--cross-origin-isolation", "off") as srv:
        _, headers = get(srv.url)
        assert not {h.lower() for h in ISOLATION_HEADERS} & set(headers)
        _, headers = get(urljoin(srv.url, file_url(ORT_DIR / "ort-wasm-simd-threaded.wasm")))
        assert headers["content-type"] == "application/wasm"
        assert "cross-origin-embedder-policy" not in headers


def test_without_npm_the_runtime_is_missing_with_a_reason(tmp_path, monkeypatch):
    import sam_core.ui.web_assets as wa

    folder = tmp_path / "ort"
    shutil.copytree(ORT_DIR, folder, ignore=shutil.ignore_patterns("*.wasm"))
    monkeypatch.setattr(wa, "ORT_DIR", folder)
    monkeypatch.setattr(wa, "_runtime_ready", False)
    monkeypatch.setattr(wa.shutil, "which", lambda name: None)
    why = wa.ensure_ort_runtime()
    assert why is not None and "npm is missing" in why and not (folder / wa.ORT_RUNTIME).exists()
