"""The public link, against the real demo.py: login, share warnings, what is served, file names,
atomic outputs and a run log without pixels.

``--share`` is started with outgoing HTTP(S) sent to a dead proxy, so Gradio cannot open a
public tunnel even on a machine with internet: it prints "Could not create share link" and keeps
serving locally, which is what these tests use.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import socket
import sqlite3
import tempfile
import time
import unicodedata
from pathlib import Path

import gradio as gr
import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image
from server import run_server

from sam_core import cli as demo
from sam_core.app import export
from sam_core.app.session import SessionState
from sam_core.app.studio import Studio
from sam_core.core import files as files_mod
from sam_core.core.errors import ResourceError
from sam_core.runlog import RunLog
from sam_core.ui.segment_tab import MODE_FG, Handlers

ROOT = Path(__file__).resolve().parents[1]
COFFEE = ROOT / "examples" / "coffee.png"
CHELSEA = ROOT / "examples" / "chelsea.png"
NO_INTERNET = {k: "http://127.0.0.1:9" for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")}
NO_INTERNET.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
SHARE_WARNING = "ANYONE with the link"


def sel(x, y):
    return gr.SelectData(None, {"index": [x, y], "value": None, "selected": True})


def get(url: str, **kw) -> httpx.Response:
    return httpx.get(url, timeout=30, **kw)


# ----------------------------------------------------------------------------- servers


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    """--share with SAM_DEMO_AUTH=alice:secret (no internet: the share link fails, local serving goes on)."""
    with run_server(tmp_path_factory.mktemp("auth-app"), "--share",
                    env={**NO_INTERNET, "SAM_DEMO_AUTH": "alice:secret"}) as srv:
        yield srv


@pytest.fixture(scope="module")
def open_server(tmp_path_factory):
    """--share without auth; a secret in its working directory and a checkpoints folder to protect."""
    workdir = tmp_path_factory.mktemp("open-app")
    (workdir / "secret.txt").write_text("the launch codes")
    ckpt = workdir / "ckpt"
    ckpt.mkdir()
    (ckpt / "sam_vit_b_01ec64.pth").write_bytes(b"pretend weights")
    with run_server(workdir, "--share", "--checkpoints-dir", str(ckpt), env=NO_INTERNET) as srv:
        srv.workdir, srv.ckpt = workdir, ckpt
        yield srv


# ----------------------------------------------------------------------------- login


def test_auth_flag_and_env_variable(monkeypatch):
    monkeypatch.setenv("SAM_DEMO_AUTH", "alice:secret")
    assert demo.launch_kwargs(demo.parse_args([]))["auth"] == ("alice", "secret")
    assert demo.launch_kwargs(demo.parse_args(["--auth", "bob:pw:with:colons"]))["auth"] == (
        "bob", "pw:with:colons")
    monkeypatch.delenv("SAM_DEMO_AUTH")
    assert demo.launch_kwargs(demo.parse_args([]))["auth"] is None


def wait_for_log(server, text: str, timeout: float = 90) -> str:
    """The server log once it holds ``text`` (the share attempt ends after the server is up)."""
    deadline = time.time() + timeout
    while text not in (log := server.log_text()):
        assert time.time() < deadline, f"{text!r} never appeared in the server log:\n{log[-3000:]}"
        time.sleep(0.2)
    return log


def test_share_offline_keeps_serving_locally_behind_the_login(auth_server):
    log = wait_for_log(auth_server, "Could not create share link")
    assert SHARE_WARNING not in log  # auth is set: no warning
    assert auth_server.proc.poll() is None


def test_login_is_required(auth_server):
    url = auth_server.url
    # the page is a login form: its config holds no components, no API
    html = get(url).text
    config = json.loads(re.search(r"window\.gradio_config = (.*?);</script>", html, re.S).group(1))
    assert config["auth_required"] is True and config["components"] == [] and config["dependencies"] == []
    assert "Segment Anything" not in html and "meaningless" not in html  # not even the header
    # (Gradio does embed the API *schema* -- endpoint and parameter names -- in the login page.)
    # every API route refuses
    for method, path in [("GET", "gradio_api/info"), ("GET", "config"), ("GET", "gradio_api/openapi.json"),
                         ("POST", "gradio_api/upload"), ("POST", "gradio_api/queue/join"),
                         ("POST", "gradio_api/call/segment")]:
        r = httpx.request(method, url + path, timeout=30, json={} if method == "POST" else None)
        assert r.status_code == 401, (path, r.status_code, r.text[:200])
    # gradio_client without (or with wrong) credentials
    with pytest.raises(Exception, match="credentials were not provided"):
        Client(url, verbose=False)
    with pytest.raises(Exception, match="Could not login"):
        Client(url, auth=("alice", "wrong"), verbose=False)
    r = httpx.post(url + "login", data={"username": "alice", "password": "wrong"}, timeout=30)
    assert r.status_code == 400 and "Incorrect credentials" in r.text


def test_right_credentials_work(auth_server):
    client = Client(auth_server.url, auth=("alice", "secret"), verbose=False, download_files=False)
    summary, masks = client.predict(handle_file(str(COFFEE)), '{"points": [[290, 230, 1]]}', True,
                                    api_name="/segment")
    assert summary["image_size"] == [600, 400] and len(masks) == 3
    # the mask is served to the logged-in visitor only
    assert get(masks[0]["url"]).status_code == 401
    login = httpx.post(auth_server.url + "login", data={"username": "alice", "password": "secret"}, timeout=30)
    assert login.status_code == 200
    r = get(masks[0]["url"], cookies=login.cookies)
    assert r.status_code == 200 and r.content.startswith(b"\x89PNG")


# ----------------------------------------------------------------------------- share without auth


def test_share_without_auth_warns_loudly(open_server):
    log = wait_for_log(open_server, "Could not create share link")
    lines = log.splitlines()
    i = next(n for n, line in enumerate(lines) if SHARE_WARNING in line)
    assert "WARNING" in lines[i] and "--auth USER:PASS" in lines[i] and "SAM_DEMO_AUTH" in lines[i]
    assert "!" * 40 in lines[i - 1] and "!" * 40 in lines[i + 1]  # a banner, not a footnote
    # and it still serves locally
    summary, _ = Client(open_server.url, verbose=False).predict(
        handle_file(str(COFFEE)), '{"points": [[290, 230, 1]]}', True, api_name="/segment")
    assert summary["image_size"] == [600, 400]


def test_default_host_is_loopback_only(open_server):
    port = int(open_server.url.rstrip("/").rsplit(":", 1)[1])
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.255.255.255", 1))  # UDP: sends nothing, just picks the outgoing interface
        ip = probe.getsockname()[0]
    except OSError:
        pytest.skip("no network interface besides loopback")
    finally:
        probe.close()
    if ip.startswith("127.") or ip == "0.0.0.0":
        pytest.skip("no network interface besides loopback")
    with pytest.raises(OSError):
        socket.create_connection((ip, port), timeout=3).close()


# ----------------------------------------------------------------------------- what is served


def test_only_the_apps_own_files_are_served(open_server):
    url = open_server.url
    client = Client(url, verbose=False, download_files=False)
    summary, masks = client.predict(handle_file(str(COFFEE)), '{"points": [[290, 230, 1]]}', True,
                                    api_name="/segment")
    # the app's outputs are served...
    for m in masks:
        r = get(m["url"])
        assert r.status_code == 200, m["url"]
        assert np.asarray(Image.open(io.BytesIO(r.content))).shape == (400, 600)
    cache_dir = Path(masks[0]["path"]).parent.parent
    # ...nothing else
    render_files = sorted(Path(tempfile.gettempdir()).glob("sam-studio-*/api/*/*.png"))[:2]
    forbidden = [
        open_server.workdir / "secret.txt",  # the server's working directory
        open_server.ckpt / "sam_vit_b_01ec64.pth", open_server.ckpt,  # the checkpoints folder
        ROOT / "checkpoints", ROOT / "checkpoints" / ".gitkeep",
        ROOT / "README.md", ROOT / "demo.py", ROOT / "sam_core" / "studio.py",
        open_server.outputs / "logs" / "runs.sqlite",  # the run log
        Path("/etc/passwd"),
        *render_files,  # the Studio's own render folder (only Gradio's copies are served)
    ]
    tricks = ["secret.txt", "../secret.txt", "../../../../../etc/passwd", f"{cache_dir}/../../etc/passwd",
              f"{cache_dir}/..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "~/.bashrc", "file:///etc/passwd"]
    checked = []
    for target in [*map(str, forbidden), *tricks]:
        for route in ("gradio_api/file=", "gradio_api/file/", "file="):
            r = get(url + route + target)
            checked.append((route + target, r.status_code))
            assert r.status_code in (403, 404), (route, target, r.status_code, r.text[:100])
            assert b"launch codes" not in r.content and b"root:" not in r.content
    assert len(checked) >= 3 * 18


def test_uploaded_names_never_become_paths_api(open_server, tmp_path):
    """Odd original file names through gradio_client: outputs keep to safe names in the app's folders."""
    names = ["..\\..\\evil.png", "evil\x1b[31m\x07bell.png", "line\nbreak.png", "\u202egnp.exe.png",
             "..png", "a" * 240 + ".png", "$(touch pwned).png"]
    before = set(Path(tempfile.gettempdir()).iterdir())
    client = Client(open_server.url, verbose=False, download_files=False)
    logged = []
    for i, name in enumerate(names):
        src = tmp_path / f"d{i}"
        src.mkdir()
        path = src / name
        path.write_bytes(COFFEE.read_bytes())
        summary, masks = client.predict(handle_file(str(path)), '{"points": [[290, 230, 1]]}', True,
                                        api_name="/segment")
        assert summary["image_size"] == [600, 400]
        for m in masks:
            out_name = Path(m["path"]).name
            assert SAFE_NAME.match(out_name) and re.search(r"_mask[123]\.png$", out_name), out_name
        logged.append(RunLog(open_server.outputs / "logs").records()[-1]["image_name"])
    for name in logged:
        assert "/" not in name and "\\" not in name and name not in ("", ".", "..")
        assert not any(unicodedata.category(c) in ("Cc", "Cf") for c in name), repr(name)
        assert len(name) <= 100
    assert logged[0].endswith("evil.png")  # Gradio drops the backslashes: "....evil.png"
    new = set(Path(tempfile.gettempdir()).iterdir()) - before
    assert not [p for p in new if "evil" in p.name or "pwned" in p.name]
    assert not list(open_server.workdir.rglob("*evil*")) and not list(open_server.workdir.rglob("*pwned*"))
    assert not (Path.cwd() / "pwned").exists() and not (open_server.workdir / "pwned").exists()


@pytest.fixture()
def studio(tiny_segmenter, tmp_path):
    return Studio(tiny_segmenter, outputs_dir=tmp_path / "outputs")


def _inside(path: Path, folder: Path) -> bool:
    return Path(path).resolve().is_relative_to(Path(folder).resolve())


def test_uploaded_names_never_become_paths_ui(studio, tmp_path):
    """Through the UI handler (the upload's own name) and the Studio (any name a caller passes)."""
    h = Handlers(studio)
    odd = tmp_path / "up" / "..\\..\\evil\x07\u202e.png"
    odd.parent.mkdir()
    odd.write_bytes(COFFEE.read_bytes())
    state = h.upload(str(odd), None)[0]
    assert state.image_name == "evil.png"
    runs = [state]
    for name in ["../../evil.png", "/etc/passwd", "C:\\Windows\\system32\\evil.png", "..", "", "a/../../b.png",
                 "evil\x00nul.png", "~/.ssh/id_rsa"]:
        s = studio.open_image(SessionState(), str(COFFEE), name=name)
        assert "/" not in s.image_name and "\\" not in s.image_name and "\x00" not in s.image_name, name
        runs.append(s)
    outputs = []
    for s in runs:
        s = h.select(s, MODE_FG, sel(290, 230))[0]
        outputs += [Path(p) for p in h.export(s)["value"]]
        outputs.append(export.save_overlay(studio, s))
    summary, api_paths = export.segment_file(studio, str(COFFEE), '{"points": [[290, 230, 1]]}', True,
                                             name="../../../../tmp/evil")
    outputs += api_paths
    for p in outputs:
        assert _inside(p, studio.render_dir) or _inside(p, studio.outputs_dir / "overlays"), p
        assert SAFE_NAME.match(p.name), p.name
        assert p.is_file() and p.stat().st_size > 0
    assert not list(tmp_path.glob("evil*")) and not Path("/tmp/evil_mask1.png").exists()


def test_same_pixels_keep_each_visitors_own_file_name(studio, tmp_path):
    """The image store is keyed by pixels; a second visitor must not see the first one's file name."""
    first, second = tmp_path / "patient_john_doe.png", tmp_path / "mine.png"
    first.write_bytes(COFFEE.read_bytes())
    second.write_bytes(COFFEE.read_bytes())
    h = Handlers(studio)
    a = h.upload(str(first), None)[0]
    out = h.upload(str(second), None)
    b = out[0]
    assert a.image_key == b.image_key and studio.images.get(a.image_key) is not None  # shared pixels
    assert b.image_name == "mine.png" and "Loaded mine.png" in out[6] and "john" not in out[6]
    b = h.select(b, MODE_FG, sel(290, 230))[0]
    files = [Path(p) for p in h.export(b)["value"]] + [export.save_overlay(studio, b)]
    _, api_files = export.segment_file(studio, str(second), '{"points": [[290, 230, 1]]}', True, name="api.png")
    names = [p.name for p in files + api_files]
    assert not [n for n in names if "john" in n], names
    report = json.loads(next(p for p in files if p.suffix == ".json").read_text())
    assert report["image"]["name"] == "mine.png"
    logged = [r["image_name"] for r in studio.runlog.records()]
    assert logged == ["mine.png", "mine.png", "api.png"]  # click, export, API call
    # and the first visitor still sees their own name
    assert h.select(a, MODE_FG, sel(10, 10))[0].image_name == "patient_john_doe.png"
    assert studio.runlog.records()[-1]["image_name"] == "patient_john_doe.png"


# ----------------------------------------------------------------------------- atomic outputs


def _temp_files(*folders: Path) -> list[Path]:
    return [p for f in folders if f.exists() for p in f.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".")]


def test_outputs_are_written_atomically(studio, monkeypatch):
    h = Handlers(studio)
    state = h.select(h.upload(str(COFFEE), None)[0], MODE_FG, sel(290, 230))[0]
    files = [Path(p) for p in h.export(state)["value"]]
    saved = export.save_overlay(studio, state)
    assert len(files) == 4 and saved.is_file()
    assert not _temp_files(studio.render_dir, studio.outputs_dir)
    for p in [*files, saved]:
        if p.suffix == ".png":
            Image.open(p).load()  # complete files
        else:
            json.loads(p.read_text())

    # The disk fills up at the moment of the rename: nothing half-written under a final name.
    real_replace = files_mod.os.replace
    calls = {"n": 0}

    def failing_replace(src, dst):
        calls["n"] += 1
        if calls["n"] >= 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(files_mod.os, "replace", failing_replace)
    overlays_before = sorted((studio.outputs_dir / "overlays").iterdir())
    with pytest.raises(gr.Error, match=r"Could not write coffee_overlay\d\.png: No space left on device — the server's disk is full") as err:
        h.export(state)
    assert str(studio.render_dir) not in str(err.value)  # no server paths in the message
    export_dirs = sorted((studio.render_dir / state.session_id).glob("export-*"), key=lambda p: p.stat().st_mtime)
    partial = sorted(p.name for p in export_dirs[-1].iterdir())
    i = state.chosen + 1
    assert partial == sorted([f"coffee_mask{i}.png", f"coffee_cutout{i}.png"])  # the first two, whole
    for name in partial:
        Image.open(export_dirs[-1] / name).load()
    with pytest.raises(ResourceError, match="disk is full"):
        export.save_overlay(studio, state)
    assert sorted((studio.outputs_dir / "overlays").iterdir()) == overlays_before
    assert not _temp_files(studio.render_dir, studio.outputs_dir)


def test_old_exports_are_pruned_without_breaking_the_session(studio):
    """Renders older than 2 minutes are pruned on the next view, export folders included."""
    h = Handlers(studio)
    state = h.select(h.upload(str(COFFEE), None)[0], MODE_FG, sel(290, 230))[0]
    h.export(state)
    folder = studio.render_dir / state.session_id
    old = time.time() - 600  # ten minutes later
    for p in folder.iterdir():
        os.utime(p, (old, old))
    state = h.select(state, MODE_FG, sel(100, 100))[0]  # renders, then prunes
    assert state.result is not None
    assert not [p for p in folder.iterdir() if p.is_dir()]  # the old export folder is gone
    assert all(p.stat().st_mtime > old for p in folder.iterdir())
    files = h.export(state)["value"]  # and exporting again works
    assert all(Path(f).is_file() for f in files)


# ----------------------------------------------------------------------------- logs


def test_the_run_log_holds_no_pixels(open_server, studio):
    # some records from the server (API) and from the UI handlers (clicks, export)
    client = Client(open_server.url, verbose=False)
    for img, prompts in [(COFFEE, {"points": [[290, 230, 1]], "box": [100, 60, 480, 360]}),
                         (CHELSEA, {"points": [[200, 150, 1], [20, 20, 0]]})]:
        client.predict(handle_file(str(img)), json.dumps(prompts), True, api_name="/segment")
    h = Handlers(studio)
    s = h.select(h.upload(str(CHELSEA), None)[0], MODE_FG, sel(200, 150))[0]
    s = h.select(s, MODE_FG, sel(100, 100))[0]
    h.export(s)

    for logs in (open_server.outputs / "logs", studio.outputs_dir / "logs"):
        db = logs / "runs.sqlite"
        records = RunLog(logs).records()
        assert len(records) >= 2
        con = sqlite3.connect(db)
        try:
            cols = con.execute("PRAGMA table_info(runs)").fetchall()
            assert all(c[2].upper() in ("TEXT", "INTEGER", "REAL") for c in cols), cols  # no BLOB column
            names = [c[1] for c in cols]
            types = {t for row in con.execute(
                "SELECT " + ", ".join(f"typeof({n})" for n in names) + " FROM runs") for t in row}
            assert "blob" not in types, types
            longest = con.execute(
                "SELECT max(" + ", ".join(f"coalesce(length({n}), 0)" for n in names) + ") FROM runs").fetchall()
            assert max(r[0] for r in longest) < 2048
            tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            assert set(tables) <= {"runs", "sqlite_sequence"}, tables
        finally:
            con.close()
        raw = b"".join(p.read_bytes() for p in logs.glob("runs.sqlite*"))
        assert len(raw) < 512 * 1024, len(raw)  # a 600x400 image alone is 720 kB of pixels
        for magic in (b"\x89PNG", b"\xff\xd8\xff", b"RIFF", b"GIF8"):
            assert magic not in raw
        for rec in records:
            assert all(len(json.dumps(v)) < 2048 for v in rec.values())
            assert "/" not in (rec["image_name"] or "")
