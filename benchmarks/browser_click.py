"""The Segment tab's click as a visitor sees it, in Chromium: the browser decoder against the server path.

Run from the repository root::

    python benchmarks/browser_click.py [--clicks 15] [--hover-seconds 3] [--skip-encode-load]
                                       [--model test-tiny] [--json-out PATH]

Starts ``python demo.py --model MODEL --device cpu`` itself (free port, temporary outputs
folder) and drives Debian's Chromium (``$CHROMIUM_PATH``, ``chromium`` on the PATH or
``/usr/bin/chromium``) with Playwright, on the 20 MP example (``examples/rocket_20mp.jpg``,
5472x3648, preview 1536x1024):

1. first image: the embedding transfer (``samStudio.stats.embeddings`` and the response's size
   from Playwright), the cold decoder load (``stats.decoderLoadMs``, WASM compile included), the
   threads onnxruntime-web uses, ``self.crossOriginIsolated``, example click -> preset drawn.
2. browser path: ``--clicks`` clicks at varying points of the rocket; click -> mask drawn is
   measured in the page, from a capture-phase click listener on ``window`` (``performance.now()``)
   to the MutationObserver record of the ``#bd-overlay`` ``data-rev`` change that drew the new
   candidates (``samStudio.cands`` replaced); ``stats.clicks`` (decode_ms, click_to_drawn_ms)
   is reported too. Prompts pile up to 1-5 foreground points, then Clear (untimed). The pointer
   reaches each point first, as a hand does, so the click reuses the hover decode of that point
   (``reused_hover_decode`` counts them); ``browser_no_hover`` repeats the clicks with hover off,
   each click decoding for itself.
3. server path (a fresh page, Settings -> "On the server"): the same clicks; click -> the three
   candidate thumbnails replaced and loaded (polled in the page every animation frame).
4. requests per click (Playwright request events from the click to drawn + 1 s): image
   requests (.jpg/.jpeg/.png/.webp/.gif, ``gradio_api/file=`` included) and POSTs with body sizes.
5. hover: the pointer moves over the image in small steps every ~16 ms; hover frames per second
   from ``stats.hoverFrames``.
6. under load: another visitor (a second browser context, on the server path) uploads distinct
   20 MP JPEGs (the rocket flipped / shifted) one after another while both pages click again;
   encodes are counted from the server log (``cache_hit=False``) and from finished uploads.

Human-readable lines first; the LAST line of stdout is one JSON object. Targets: browser click
<= 120 ms (median), hover >= 8 frames/s, browser path 0 image requests and <= 1 POST per click;
reported (``meets_targets``), never asserted. Exit status 1 when a phase failed (its error is in
the JSON's ``errors``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from _common import emit_json  # benchmarks/ is sys.path[0] when run as a script

REPO = Path(__file__).resolve().parent.parent
IMAGE = REPO / "examples" / "rocket_20mp.jpg"
MANIFEST = REPO / "sam_core" / "ui" / "static" / "ort" / "manifest.json"
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
TARGETS = {
    "browser_click_ms": 120.0,
    "hover_fps": 8.0,
    "browser_image_requests_per_click": 0,
    "browser_posts_per_click": 1,
}
FULL = (5472, 3648)
SERVER_LABEL = "On the server"
IMAGE_URL = re.compile(r"\.(jpe?g|png|webp|gif)(\?|$)", re.I)

# Installed in every page before its scripts: click times (capture phase on window, so before the
# decoder's own capture listener on document) and every #bd-overlay data-rev change, marking the
# draws that show new candidates (samStudio.cands replaced since the last click).
INIT_JS = """
(() => {
  const b = (window.__bench = { clicks: [], draws: [], candsAtClick: undefined });
  window.addEventListener("click", (ev) => {
    const t = ev.target;
    if (!t || t.tagName !== "IMG" || !t.closest || !t.closest("#input-image")) return;
    b.candsAtClick = window.samStudio ? window.samStudio.cands : undefined;
    b.clicks.push({ t: performance.now(), ts: ev.timeStamp });
  }, true);
  const start = () => new MutationObserver((muts) => {
    const now = performance.now();
    for (const m of muts) {
      if (m.target.id !== "bd-overlay") continue;
      const s = window.samStudio;
      const fresh = !!(s && s.cands && b.clicks.length && s.cands !== b.candsAtClick);
      b.draws.push({ t: now, rev: Number(m.target.dataset.rev), click: b.clicks.length, fresh });
    }
  }).observe(document.documentElement, { attributes: true, attributeFilter: ["data-rev"], subtree: true });
  if (document.documentElement) start(); else document.addEventListener("DOMContentLoaded", start);
})();
"""

STATE_JS = """() => { const s = window.samStudio; if (!s) return null;
  return { active: s.active, failed: s.failed, threads: s.threads ?? null, stats: s.stats,
           prompts: s.prompts, chosen: s.chosen, scores: s.cands ? Array.from(s.cands.scores) : null,
           path: s.sync ? s.sync.path : null }; }"""

IDLE_JS = "() => !document.querySelector('.wrap.default.full:not(.hide), .progress-text, .eta-bar')"

IMG_READY_JS = (
    "() => { const i = document.querySelector('#input-image img'); return !!(i && i.complete && i.naturalWidth > 0); }"
)

# Server path: the candidate thumbnails replaced (other srcs) and all loaded; returns the time.
CANDS_CHANGED_JS = """(before) => {
  const imgs = [...document.querySelectorAll('#candidates img')];
  if (imgs.length < 3) return false;
  if (imgs.map((i) => i.src).join('|') === before) return false;
  if (!imgs.every((i) => i.complete && i.naturalWidth > 0)) return false;
  return performance.now();
}"""
CANDS_SRCS_JS = "() => [...document.querySelectorAll('#candidates img')].map((i) => i.src).join('|')"


def log(msg: str) -> None:
    print(msg, flush=True)


def stat(xs: list[float]) -> dict[str, Any]:
    """median / min / max / p90 (nearest rank) of ``xs`` in ms, rounded; n."""
    if not xs:
        return {"median": None, "min": None, "max": None, "p90": None, "n": 0}
    s = sorted(xs)
    p90 = s[min(len(s) - 1, math.ceil(0.9 * len(s)) - 1)]
    return {
        "median": round(statistics.median(s), 1),
        "min": round(s[0], 1),
        "max": round(s[-1], 1),
        "p90": round(p90, 1),
        "n": len(s),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, workdir: Path, timeout: float = 180) -> tuple[subprocess.Popen, str, Path]:
    port = free_port()
    log_path = workdir / "server.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        str(REPO / "demo.py"),
        "--model",
        model,
        "--device",
        "cpu",
        "--port",
        str(port),
        "--outputs",
        str(workdir / "outputs"),
    ]
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=workdir, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(
                f"demo.py exited with {proc.returncode}:\n{log_path.read_text(errors='replace')[-3000:]}"
            )
        try:
            with urllib.request.urlopen(url + "gradio_api/info", timeout=2):
                return proc, url, log_path
        except urllib.error.HTTPError:
            return proc, url, log_path
        except Exception:
            if time.time() > deadline:
                proc.terminate()
                raise RuntimeError(f"demo.py did not start in {timeout:.0f} s") from None
            time.sleep(0.5)


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


class Variants:
    """Distinct 20 MP JPEGs made on demand (the rocket mirrored / flipped / as is, shifted by
    17 px more every 3 images): other pixels, so every upload is a new image key and an encode."""

    def __init__(self, folder: Path) -> None:
        import numpy as np
        from PIL import Image

        self.folder = folder
        rgb = np.asarray(Image.open(IMAGE).convert("RGB"))
        self.bases = [rgb[:, ::-1], rgb[::-1], rgb]

    def make(self, i: int) -> Path:
        import numpy as np
        from PIL import Image

        arr = np.roll(self.bases[i % 3], 17 * (i // 3 + 1), axis=1)
        path = self.folder / f"load_{i:03d}.jpg"
        Image.fromarray(arr).save(path, quality=90)
        return path


def click_points(n: int) -> list[tuple[float, float]]:
    """Full-image points on the rocket (inside the preset box 2600..2910 x 1040..3470)."""
    pts = []
    for i in range(n):
        x = 2690 + 110 * math.sin(1.7 * i)
        y = 1400 + (i * 397) % 1900
        pts.append((round(x, 1), float(y)))
    return pts


class Requests:
    """Every request of one page: (time, method, url, POST body bytes)."""

    def __init__(self, page) -> None:
        self.items: list[tuple[float, str, str, int]] = []
        self.responses: list = []
        page.on("request", self._on)
        page.on("response", lambda r: self.responses.append(r))

    def _on(self, req) -> None:
        body = 0
        if req.method == "POST":
            try:
                body = len(req.post_data_buffer or b"")
            except Exception:
                body = -1
        self.items.append((time.perf_counter(), req.method, req.url, body))

    def between(self, t0: float, t1: float) -> list[tuple[float, str, str, int]]:
        return [r for r in self.items if t0 <= r[0] <= t1]


def summarize_requests(windows: list[list[tuple[float, str, str, int]]]) -> dict[str, Any]:
    images = [sum(1 for _, _, url, _ in w if IMAGE_URL.search(url.split("#")[0])) for w in windows]
    posts = [[b for _, m, _, b in w if m == "POST"] for w in windows]
    post_urls = sorted(
        {re.sub(r"^https?://[^/]+", "", u.split("?")[0]) for w in windows for _, m, u, _ in w if m == "POST"}
    )
    sizes = [b for p in posts for b in p]
    return {
        "clicks": len(windows),
        "image_requests_per_click": {"max": max(images, default=0), "total": sum(images)},
        "posts_per_click": {"max": max((len(p) for p in posts), default=0), "total": len(sizes)},
        "post_body_bytes": {"max": max(sizes, default=0), "median": statistics.median(sizes) if sizes else 0},
        "requests_per_click_max": max((len(w) for w in windows), default=0),
        "post_urls": post_urls,
    }


class Bench:
    def __init__(self, browser, url: str, args: argparse.Namespace) -> None:
        self.browser, self.url, self.args = browser, url, args
        self.console: dict[str, int] = {}  # console errors and page errors: count
        self.warnings: dict[str, int] = {}
        self.input_lag: list[float] = []  # browser clicks: listener time - the event's timeStamp (ms)
        self.title = next(
            p["title"] for p in json.loads((REPO / "examples" / "presets.json").read_text()) if p["file"] == IMAGE.name
        )

    # ------------------------------------------------------------ pages
    def new_page(self, name: str):
        ctx = self.browser.new_context(viewport={"width": 1400, "height": 1000})
        ctx.add_init_script(INIT_JS)
        page = ctx.new_page()
        page.on("console", lambda m: self._console(name, m.type, m.text))
        page.on("pageerror", lambda e: self._console(name, "error", f"pageerror {e}"))
        page.set_default_timeout(90_000)
        reqs = Requests(page)
        page.goto(self.url)
        page.wait_for_selector("#input-image", state="visible")
        return page, reqs

    def _console(self, page: str, kind: str, text: str) -> None:
        into = self.console if kind == "error" else self.warnings if kind == "warning" else None
        if into is not None:
            key = f"{page}: {text[:300]}"
            into[key] = into.get(key, 0) + 1

    def state(self, page) -> Any:
        try:
            return page.evaluate(STATE_JS)
        except Exception as err:  # the page may be gone
            return f"unavailable: {err}"

    def wait_idle(self, page, timeout: float = 90_000) -> None:
        page.wait_for_function(IDLE_JS, timeout=timeout)

    def choose_server_path(self, page) -> None:
        page.locator("#settings").get_by_text("Settings").first.click()
        page.locator("#decoder-path").get_by_label(SERVER_LABEL).check()
        page.wait_for_function(
            "() => window.samStudio && window.samStudio.sync && window.samStudio.sync.path === 'server'", timeout=60_000
        )
        self.wait_idle(page)

    def load_example(self, page) -> float:
        t0 = time.perf_counter()
        page.locator("#examples").get_by_text(self.title).first.click()
        return t0

    def point(self, page, fx: float, fy: float) -> tuple[float, float]:
        """Viewport position of full-image pixel (fx, fy) on the input image (object-fit aware)."""
        page.wait_for_function(IMG_READY_JS, timeout=60_000)
        img = page.locator("#input-image img").first
        img.scroll_into_view_if_needed()  # e.g. after clicking an example further down the page
        box = img.bounding_box()
        nat_w, nat_h = img.evaluate("e => [e.naturalWidth, e.naturalHeight]")
        s = min(box["width"] / nat_w, box["height"] / nat_h)
        off_x = (box["width"] - nat_w * s) / 2
        off_y = (box["height"] - nat_h * s) / 2
        k = nat_w / FULL[0]  # full px -> preview px
        return box["x"] + off_x + fx * k * s, box["y"] + off_y + fy * k * s

    # ------------------------------------------------------------ clear between click groups
    def clear_browser(self, page) -> None:
        page.locator("#clear").click()
        page.wait_for_function(
            "() => { const s = window.samStudio; return s && !s.cands && "
            "s.prompts.points.length === 0 && !s.prompts.box; }",
            timeout=60_000,
        )
        self.wait_idle(page)

    def clear_server(self, page) -> None:
        page.locator("#clear").click()
        page.wait_for_function(
            "() => document.querySelectorAll('#prompts [role=row][data-index]').length === 0", timeout=60_000
        )
        self.wait_idle(page)

    # ------------------------------------------------------------ one click on each path
    def click_browser(self, page, fx: float, fy: float, timeout: float = 30_000) -> tuple[float, float, float]:
        """(click -> new candidates drawn in ms measured in the page, python t0, python t1)."""
        x, y = self.point(page, fx, fy)
        # The pointer reaches the spot first (as a hand does) and its hover frame finishes, then the
        # button goes down and up there: the click does not wait behind a hover decode.
        page.mouse.move(x, y)
        page.wait_for_function("() => !window.samStudio.hover.busy", timeout=timeout)
        n = page.evaluate("() => window.__bench.clicks.length")
        t0 = time.perf_counter()
        page.mouse.down()
        page.mouse.up()
        handle = page.wait_for_function(
            """(n) => { const b = window.__bench; if (b.clicks.length <= n) return false;
                 const d = b.draws.find((d) => d.click === n + 1 && d.fresh);
                 return d ? [d.t - b.clicks[n].t, d.t - b.clicks[n].ts] : false; }""",
            arg=n,
            timeout=timeout,
        )
        t1 = time.perf_counter()
        ms, from_input = handle.json_value()
        self.input_lag.append(from_input - ms)
        return float(ms), t0, t1

    def click_server(self, page, fx: float, fy: float, timeout: float = 60_000) -> tuple[float, float, float]:
        x, y = self.point(page, fx, fy)
        before = page.evaluate(CANDS_SRCS_JS)
        n = page.evaluate("() => window.__bench.clicks.length")
        t0 = time.perf_counter()
        page.mouse.click(x, y)
        handle = page.wait_for_function(CANDS_CHANGED_JS, arg=before, polling="raf", timeout=timeout)
        t1 = time.perf_counter()
        t_click = page.evaluate("(n) => window.__bench.clicks[n] && window.__bench.clicks[n].t", n)
        if t_click is None:
            raise RuntimeError("the click on the input image was not seen by the page")
        return float(handle.json_value()) - float(t_click), t0, t1

    def series(
        self, page, reqs: Requests, path: str, points: list[tuple[float, float]], settle: float, on_idle=None
    ) -> tuple[list[float], list[list]]:
        """Clicks with 1-5 piled-up points (Clear, untimed, before each group of 5)."""
        click, clear = (
            (self.click_browser, self.clear_browser) if path == "browser" else (self.click_server, self.clear_server)
        )
        times, windows = [], []
        for i, (fx, fy) in enumerate(points):
            if i % 5 == 0:
                clear(page)
            if on_idle:
                on_idle()
            ms, t0, t1 = click(page, fx, fy)
            times.append(ms)
            time.sleep(settle)  # requests that follow the draw (the report to the server) are counted
            windows.append(reqs.between(t0, t1 + settle))
            if path == "server":
                self.wait_idle(page)
        return times, windows

    # ------------------------------------------------------------ hover
    def hover(self, page, seconds: float) -> dict[str, Any]:
        """Pointer moves over the rocket every ~16 ms for ``seconds``, dispatched in the page.

        The moves are ``pointermove`` events dispatched on the image by a timer in the page (what
        the decoder listens to), not Playwright's ``mouse.move``: Playwright waits for the renderer
        to acknowledge each input event, so while a decode holds the page's main thread the driver
        itself would stall; a real mouse keeps moving and the browser delivers the latest position
        when the page is free, which the page's timer reproduces.
        """
        self.clear_browser(page)
        cx, cy = self.point(page, 2755, 2250)
        x0, y0 = self.point(page, 2600, 1040)
        _, y1 = self.point(page, 2600, 3470)
        page.mouse.move(5, 5)
        out = page.evaluate(
            """async ({ cx, cy, rx, ry, seconds }) => {
              const img = document.querySelector('#input-image img');
              const s = window.samStudio;
              const f0 = s.stats.hoverFrames;
              const t0 = performance.now();
              let moves = 0;
              await new Promise((done) => {
                const step = () => {
                  const e = performance.now() - t0;
                  if (e >= seconds * 1000) return done();
                  const a = (2 * Math.PI * e) / 1500;
                  img.dispatchEvent(new PointerEvent('pointermove', { bubbles: true, pointerType: 'mouse',
                    clientX: cx + rx * Math.sin(2 * a), clientY: cy + ry * Math.sin(a) }));
                  moves++;
                  setTimeout(step, 16);
                };
                step();
              });
              const elapsed = performance.now() - t0;
              img.dispatchEvent(new PointerEvent('pointerout', { bubbles: true }));
              return { frames: s.stats.hoverFrames - f0, moves, elapsed };
            }""",
            {"cx": cx, "cy": cy, "rx": max(6.0, abs(cx - x0)), "ry": max(20.0, abs(y1 - y0) / 2.2), "seconds": seconds},
        )
        elapsed = out["elapsed"] / 1000
        return {
            "seconds": round(elapsed, 2),
            "frames": out["frames"],
            "fps": round(out["frames"] / elapsed, 1),
            "pointer_moves": out["moves"],
            "moves_per_s": round(out["moves"] / elapsed, 1),
            "prompts": "none (after Clear): each frame decodes the pointer alone",
        }


class Loader:
    """Another visitor: uploads distinct 20 MP JPEGs one after another (server path, no decoder)."""

    def __init__(self, bench: Bench, variants: Variants, log_path: Path) -> None:
        self.variants, self.log_path = variants, log_path
        self.page, _ = bench.new_page("visitor2")
        bench.choose_server_path(self.page)
        self.i = 0
        self.done = 0
        self.current: str | None = None
        self.started_at = 0.0
        self.upload_s: list[float] = []

    def start(self) -> None:
        path = self.variants.make(self.i)
        self.i += 1
        self.current = path.name
        self.started_at = time.perf_counter()
        self.page.locator("#input-image input[type=file]").set_input_files(str(path))

    def poll(self) -> None:
        """Start the next upload when the current one has loaded (no waiting)."""
        if self.current is None:
            return self.start()
        status = self.page.evaluate("() => document.querySelector('#status')?.innerText || ''")
        if f"Loaded {self.current}" in status:
            self.done += 1
            self.upload_s.append(time.perf_counter() - self.started_at)
            self.start()

    def encodes(self) -> int:
        """Images the server encoded (``opened ... cache_hit=False`` lines of the server log)."""
        text = self.log_path.read_text(errors="replace")
        return len(re.findall(r"opened load_\d+\.jpg .*cache_hit=False", text))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clicks", type=int, default=15, help="timed clicks per path and phase (default 15)")
    ap.add_argument("--hover-seconds", type=float, default=3.0, help="pointer movement over the image (default 3)")
    ap.add_argument("--skip-encode-load", action="store_true", help="skip the clicks while another visitor uploads")
    ap.add_argument("--model", default="test-tiny", help="the server's model (default test-tiny)")
    ap.add_argument("--json-out", default=None, help="also write the JSON object to this file")
    args = ap.parse_args(argv)

    if not Path(CHROMIUM).exists():
        log(f"Chromium not found at {CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)")
        return 2
    import torch
    from playwright.sync_api import sync_playwright

    ncpu = os.cpu_count() or 1
    load_start = round(os.getloadavg()[0], 2)
    if load_start > 0.5 * ncpu:
        log(
            f"WARNING: 1-minute load average is {load_start} on {ncpu} CPUs before we start: other work competes "
            "with the server and Chromium for the cores; expect noisy, high numbers (see loadavg_1m_* in the JSON)"
        )
    ort_version = json.loads(MANIFEST.read_text()).get("version")
    points = click_points(args.clicks)
    result: dict[str, Any] = {
        "benchmark": "browser_click",
        "model": args.model,
        "image": IMAGE.name,
        "image_size": list(FULL),
        "clicks": args.clicks,
        "prompts": "1-5 foreground points piled up, Clear (untimed) before every 5th click",
    }
    errors: list[str] = []
    t_start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="browser_click-"))
    proc = None
    bench = None
    try:
        t0 = time.perf_counter()
        proc, url, log_path = start_server(args.model, work)
        log(
            f"server {url} ({args.model}, cpu) up in {time.perf_counter() - t0:.1f} s; torch {torch.__version__}, "
            f"onnxruntime-web {ort_version}, {ncpu} CPUs"
        )
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            result["chromium"] = browser.version
            bench = Bench(browser, url, args)
            pages: dict[str, Any] = {}
            try:
                # ---------------------------------------------------- 1. first image, browser path
                page_b, reqs_b = bench.new_page("browser")
                pages["browser"] = page_b
                page_b.wait_for_function(
                    "() => window.samStudio && window.samStudio.stats.decoderLoadMs !== null "
                    "|| (window.samStudio && window.samStudio.failed)",
                    timeout=120_000,
                )
                t_ex = bench.load_example(page_b)
                page_b.wait_for_function(
                    "() => { const s = window.samStudio; return s && (s.failed || (s.active && "
                    "s.cands && s.stats.embeddings.length > 0)); }",
                    timeout=120_000,
                )
                example_ms = (time.perf_counter() - t_ex) * 1000
                bench.wait_idle(page_b)
                st = bench.state(page_b)
                if not st or st.get("failed") or not st.get("active"):
                    raise RuntimeError(f"the browser path is not active: window.samStudio = {st}")
                emb_resp = [r for r in reqs_b.responses if ".samemb" in r.url]
                resp_bytes = None
                if emb_resp:
                    r = emb_resp[-1]
                    cl = r.headers.get("content-length")
                    resp_bytes = int(cl) if cl else len(r.body())
                emb = st["stats"]["embeddings"]
                first = {
                    "embedding_bytes": emb[0]["bytes"],
                    "embedding_ms": round(emb[0]["ms"], 1),
                    "embedding_response_bytes": resp_bytes,
                    "embedding_requests": len(emb_resp),
                    "embedding_content_encoding": emb_resp[-1].headers.get("content-encoding") if emb_resp else None,
                    "decoder_load_ms": round(st["stats"]["decoderLoadMs"], 1),
                    "threads": st["threads"],
                    "cross_origin_isolated": page_b.evaluate("self.crossOriginIsolated"),
                    "example_to_drawn_ms": round(example_ms, 1),
                    "decoder_file": page_b.evaluate("() => window.samStudio.sync.decoder_url.split('/').pop()"),
                }
                result["first_image"] = first
                log(
                    f"first image: embedding {first['embedding_bytes']} B in {first['embedding_ms']} ms "
                    f"(response {resp_bytes} B), decoder load {first['decoder_load_ms']} ms (cold, WASM compile "
                    f"included), {first['threads']} thread(s), crossOriginIsolated={first['cross_origin_isolated']}, "
                    f"example click -> preset drawn {first['example_to_drawn_ms']} ms"
                )

                # ---------------------------------------------------- 2. browser path clicks
                n_stats = len(st["stats"]["clicks"])
                times_b, windows_b = bench.series(page_b, reqs_b, "browser", points, settle=1.0)
                st = bench.state(page_b)
                own = st["stats"]["clicks"][n_stats:]
                result["browser"] = {
                    "click_to_drawn_ms": stat(times_b),
                    "stats_click_to_drawn_ms": stat([c["click_to_drawn_ms"] for c in own]),
                    "decode_ms": stat([c["decode_ms"] for c in own]),
                    "requests": summarize_requests(windows_b),
                    "event_timestamp_to_listener_ms": stat(bench.input_lag),
                    "refused": st["stats"]["refused"],
                }
                result["browser"]["reused_hover_decode"] = sum(bool(c.get("reused_hover")) for c in own)
                result["browser"]["per_click"] = own  # the page's stats.clicks entries
                # The same clicks without hover: each click decodes for itself ("cold").
                page_b.evaluate("() => { window.samStudio.hoverEnabled = false; }")
                n_cold = len(bench.state(page_b)["stats"]["clicks"])
                times_c, windows_c = bench.series(page_b, reqs_b, "browser", points, settle=1.0)
                cold = bench.state(page_b)["stats"]["clicks"][n_cold:]
                page_b.evaluate("() => { window.samStudio.hoverEnabled = true; }")
                result["browser_no_hover"] = {
                    "click_to_drawn_ms": stat(times_c),
                    "decode_ms": stat([c["decode_ms"] for c in cold]),
                    "draw_ms": stat([c["draw_ms"] for c in cold]),
                    "requests": summarize_requests(windows_c),
                }
                log(
                    f"browser path without hover (each click decodes): click -> mask drawn median "
                    f"{result['browser_no_hover']['click_to_drawn_ms']['median']} ms, decode median "
                    f"{result['browser_no_hover']['decode_ms']['median']} ms, draw median "
                    f"{result['browser_no_hover']['draw_ms']['median']} ms"
                )
                rb = result["browser"]
                log(
                    f"browser path: click -> mask drawn median {rb['click_to_drawn_ms']['median']} ms "
                    f"(p90 {rb['click_to_drawn_ms']['p90']}, max {rb['click_to_drawn_ms']['max']}); decode median "
                    f"{rb['decode_ms']['median']} ms; stats.click_to_drawn median "
                    f"{rb['stats_click_to_drawn_ms']['median']} ms; per click: "
                    f"{rb['requests']['image_requests_per_click']['max']} image requests (max), "
                    f"{rb['requests']['posts_per_click']['max']} POST (max), POST body median "
                    f"{rb['requests']['post_body_bytes']['median']} B"
                )

                # ---------------------------------------------------- 5. hover (same page)
                if args.hover_seconds > 0:
                    result["hover"] = bench.hover(page_b, args.hover_seconds)
                    h = result["hover"]
                    log(
                        f"hover: {h['frames']} frames in {h['seconds']} s = {h['fps']} frames/s "
                        f"({h['moves_per_s']} pointer moves/s)"
                    )

                # ---------------------------------------------------- 3. server path clicks
                page_s, reqs_s = bench.new_page("server")
                pages["server"] = page_s
                bench.choose_server_path(page_s)
                bench.load_example(page_s)
                page_s.wait_for_function(
                    "() => document.querySelectorAll('#candidates img').length >= 3", timeout=120_000
                )
                bench.wait_idle(page_s)
                times_s, windows_s = bench.series(page_s, reqs_s, "server", points, settle=1.0)
                result["server"] = {"click_to_candidates_ms": stat(times_s), "requests": summarize_requests(windows_s)}
                rs = result["server"]
                log(
                    f"server path: click -> candidates updated median {rs['click_to_candidates_ms']['median']} ms "
                    f"(p90 {rs['click_to_candidates_ms']['p90']}, max {rs['click_to_candidates_ms']['max']}); per "
                    f"click: {rs['requests']['image_requests_per_click']['max']} image requests (max), "
                    f"{rs['requests']['posts_per_click']['max']} POSTs (max)"
                )

                # ---------------------------------------------------- 6. while another visitor encodes
                if not args.skip_encode_load:
                    loader = Loader(bench, Variants(work), log_path)
                    pages["visitor2"] = loader.page
                    loader.poll()
                    time.sleep(1.0)  # the first upload reaches the server
                    e0, d0, tl0 = loader.encodes(), loader.done, time.perf_counter()
                    tb, _ = bench.series(page_b, reqs_b, "browser", points, settle=0.3, on_idle=loader.poll)
                    ts, _ = bench.series(page_s, reqs_s, "server", points, settle=0.3, on_idle=loader.poll)
                    loader.poll()
                    dt = time.perf_counter() - tl0
                    result["under_load"] = {
                        "browser_click_to_drawn_ms": stat(tb),
                        "server_click_to_candidates_ms": stat(ts),
                        "encodes": loader.encodes() - e0,
                        "uploads_finished": loader.done - d0,
                        "uploads_started": loader.i,
                        "seconds": round(dt, 1),
                        "upload_to_loaded_s_median": round(statistics.median(loader.upload_s), 2)
                        if loader.upload_s
                        else None,
                    }
                    u = result["under_load"]
                    log(
                        f"under load ({u['encodes']} encodes of other 20 MP images, {u['uploads_finished']} uploads "
                        f"finished in {u['seconds']} s): browser click median "
                        f"{u['browser_click_to_drawn_ms']['median']} ms, server click median "
                        f"{u['server_click_to_candidates_ms']['median']} ms"
                    )
            except Exception as err:
                errors.append(f"{type(err).__name__}: {str(err)[:1500]}")
                result["page_state"] = {name: bench.state(pg) for name, pg in pages.items()}
                log(f"ERROR: {errors[-1]}\nwindow.samStudio: {json.dumps(result['page_state'])[:2000]}")
            finally:
                browser.close()
    except Exception as err:
        errors.append(f"{type(err).__name__}: {str(err)[:1500]}")
        log(f"ERROR: {errors[-1]}")
    finally:
        if proc is not None:
            stop_server(proc)
        shutil.rmtree(work, ignore_errors=True)

    b, s, h = result.get("browser"), result.get("server"), result.get("hover")
    checks = {
        "browser_click_ms": bool(
            b
            and b["click_to_drawn_ms"]["median"] is not None
            and b["click_to_drawn_ms"]["median"] <= TARGETS["browser_click_ms"]
        ),
        "hover_fps": None if args.hover_seconds <= 0 else bool(h and h["fps"] >= TARGETS["hover_fps"]),
        "browser_image_requests_per_click": bool(b and b["requests"]["image_requests_per_click"]["max"] == 0),
        "browser_posts_per_click": bool(b and b["requests"]["posts_per_click"]["max"] <= 1),
    }
    if b and s and b["click_to_drawn_ms"]["median"] and s["click_to_candidates_ms"]["median"]:
        result["server_over_browser"] = round(
            s["click_to_candidates_ms"]["median"] / b["click_to_drawn_ms"]["median"], 1
        )
    result.update(
        targets=TARGETS,
        target_checks=checks,
        meets_targets=not errors and all(v for v in checks.values() if v is not None),
        console_errors=bench.console if bench else {},
        console_warnings=bench.warnings if bench else {},
        errors=errors,
        torch=torch.__version__,
        onnxruntime_web=ort_version,
        cpu_count=ncpu,
        loadavg_1m_start=load_start,
        loadavg_1m_end=round(os.getloadavg()[0], 2),
        python=platform.python_version(),
        wall_s=round(time.perf_counter() - t_start, 1),
    )
    log(f"targets: {checks} -> meets_targets={result['meets_targets']} (wall {result['wall_s']} s)")
    emit_json(result, args.json_out)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
