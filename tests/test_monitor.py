"""Monitoring: the new run-log signals, PSI, every alert rule firing and quiet, old logs, the CLI,
the HTML report, the Monitor tab's handlers, and the seed case through the real /segment API."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from synth import photo_like

from sam_core.app.records import touches_all_borders
from sam_core.app.session import PromptMode
from sam_core.app.studio import Clear, Click, Studio, Undo
from sam_core.core.images import image_stats
from sam_core.monitor import build_dashboard, load_frame, load_rules
from sam_core.monitor.alerts import RulesError
from sam_core.monitor.data import PRIVATE_FIELDS, export_window_csv
from sam_core.monitor.stats import chi2_sf, clicks_per_object, percentile, psi
from sam_core.monitor.synthetic import synthetic_records, write_log
from sam_core.runlog import RECORD_FIELDS, SCHEMA_VERSION, RunLog, summarize

ROOT = Path(__file__).resolve().parents[1]
NOW = time.time()
HOUR = 3600.0


def monitor_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sam_core.monitor", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def save_png(path: Path, rgb: np.ndarray) -> Path:
    Image.fromarray(rgb).save(path)
    return path


# --------------------------------------------------------------------------- input signals


def test_image_stats_colour_and_contrast():
    red = np.zeros((40, 50, 3), np.uint8)
    red[..., 0] = 255
    s = image_stats(red)
    assert s["mean_r"] == pytest.approx(255) and s["mean_g"] == s["mean_b"] == pytest.approx(0)
    assert s["saturation"] == pytest.approx(1.0) and s["hue_hist"] == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert s["contrast"] == pytest.approx(0.0)
    blue = np.zeros((40, 50, 3), np.uint8)
    blue[..., 2] = 200
    assert image_stats(blue)["hue_hist"] == [0.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    grey = np.full((40, 50, 3), 128, np.uint8)
    g = image_stats(grey)
    assert g["saturation"] == 0.0 and g["hue_hist"] == [0.0] * 6  # no coloured pixel
    cells = (np.indices((64, 64)) // 8).sum(axis=0) % 2
    board = np.repeat((cells * 255).astype(np.uint8)[:, :, None], 3, axis=2)
    b = image_stats(board)
    assert b["contrast"] == pytest.approx(0.5, abs=1e-3)  # std of a 0/255 half-half image is 127.5
    photo = photo_like(120, 160)
    p = image_stats(photo)
    assert sum(p["hue_hist"]) == pytest.approx(1.0, abs=1e-3)
    assert p["mean_g"] == pytest.approx(photo[..., 1].mean(), abs=1.0)  # 160 px: no downscaling
    assert p["contrast"] == pytest.approx(cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY).std() / 255, abs=1e-6)


def test_touches_all_borders():
    m = np.zeros((20, 30), bool)
    assert not touches_all_borders(m)
    m[5:15, 5:25] = True
    assert not touches_all_borders(m)
    m[0, 10] = m[-1, 10] = m[10, 0] = True
    assert not touches_all_borders(m)  # three borders
    m[10, -1] = True
    assert touches_all_borders(m)
    assert touches_all_borders(np.ones((3, 3), bool))


@pytest.fixture()
def studio(tiny_segmenter, tmp_path):
    return Studio(tiny_segmenter, outputs_dir=tmp_path / "outputs")


def test_clicks_log_the_new_signals_and_object_ids(studio, tmp_path):
    rgb = photo_like(60, 90, seed=3)
    path = save_png(tmp_path / "a.png", rgb)
    seen = []
    studio.observers.append(seen.append)
    s = studio.open_image(None, str(path))
    s = studio.handle(s, Click(40, 30, PromptMode.FOREGROUND))
    s = studio.handle(s, Click(10, 10, PromptMode.BACKGROUND))
    first = s
    s = studio.handle(s, Clear())
    s = studio.handle(s, Click(70, 50, PromptMode.FOREGROUND))
    s = studio.handle(s, Undo())  # back to no prompts: nothing is decoded
    s = studio.handle(s, Undo())  # undoes the Clear: the first object again
    recs = studio.runlog.records()
    assert len(recs) == len(seen) == 4
    assert [r["id"] for r in recs] == list(range(1, 5))
    ids = [r["object_id"] for r in recs]
    key = first.image_key
    assert ids == [f"{s.session_id}-{key[:8]}-1"] * 2 + [f"{s.session_id}-{key[:8]}-1.2", f"{s.session_id}-{key[:8]}-1"]
    stats = image_stats(rgb)
    r = recs[0]
    assert (r["width"], r["height"], r["aspect"]) == (90, 60, pytest.approx(1.5))
    for k in ("brightness", "contrast", "blur", "mean_r", "mean_g", "mean_b", "saturation"):
        assert r[k] == pytest.approx(stats[k]), k
    assert r["hue_hist"] == stats["hue_hist"]
    chosen = first.candidates.masks[first.chosen]
    assert recs[1]["mask_full"] == touches_all_borders(chosen)
    assert recs[1]["mask_empty"] == (not chosen.any())
    assert seen[1].object_id == recs[1]["object_id"] and seen[1].mask_full == recs[1]["mask_full"]
    # a new image: new object (its hash differs), counted from 1 again
    other = save_png(tmp_path / "b.png", photo_like(60, 90, seed=4))
    s2 = studio.handle(studio.open_image(s, str(other)), Click(20, 20, PromptMode.FOREGROUND))
    last = studio.runlog.records()[-1]
    assert last["object_id"] == f"{s.session_id}-{s2.image_key[:8]}-1"


def test_api_runs_have_no_object_id_but_the_signals(studio, tmp_path):
    from sam_core.app.export import segment_file

    path = save_png(tmp_path / "c.png", photo_like(48, 64, seed=5))
    summary, _ = segment_file(studio, str(path), '{"points": [[30, 20, 1]]}')
    rec = studio.runlog.records()[-1]
    assert rec["source"] == "api" and rec["object_id"] is None
    assert rec["contrast"] is not None and rec["mask_empty"] is not None and rec["mask_full"] is not None
    best = summary["candidates"][summary["best_index"]]
    assert rec["mask_empty"] == (best["area"] == 0)


def test_a_failing_observer_does_not_fail_the_click(studio, tmp_path):
    def boom(record):
        raise RuntimeError("observer broke")

    studio.observers.append(boom)
    s = studio.open_image(None, str(save_png(tmp_path / "d.png", photo_like(40, 40))))
    s = studio.handle(s, Click(20, 20, PromptMode.FOREGROUND))
    assert s.candidates is not None and studio.runlog.count() == 1


# --------------------------------------------------------------------------- statistics


def test_chi2_sf_textbook_values():
    # the 5 % and 1 % critical values from any chi-square table
    for x, dof, p in [(3.841, 1, 0.05), (5.991, 2, 0.05), (7.815, 3, 0.05), (16.919, 9, 0.05), (21.666, 9, 0.01),
                      (6.635, 1, 0.01), (13.277, 4, 0.01)]:
        assert chi2_sf(x, dof) == pytest.approx(p, rel=2e-3), (x, dof)
    assert chi2_sf(0.0, 3) == 1.0


def test_psi_same_shifted_and_constant():
    rng = np.random.default_rng(0)
    ref = rng.normal(120, 15, 2000)
    same = psi(ref, rng.normal(120, 15, 2000))
    assert same.bins == 10 and same.psi < 0.02 and same.p_value > 0.01
    assert same.noise == pytest.approx(9 * (1 / 2000 + 1 / 2000))
    dark = psi(ref, rng.normal(60, 15, 2000))
    assert dark.psi > 2 and dark.p_value < 1e-9 and dark.direction == "lower"
    const = psi(np.full(100, 0.5), np.full(80, 0.5))
    assert const.psi < 1e-3 and const.bins == 2 and const.p_value > 0.5  # (only the smoothing of an empty bin)
    assert psi(np.full(100, 0.5), np.full(80, 2.0)).psi > 1
    assert psi(np.array([]), ref) is None
    small = psi(ref[:50], ref[50:100])  # 10 bins on 50 images: 5 per bin
    assert small.bins == 10
    assert psi(ref[:20], ref[20:40]).bins == 4


def test_percentile_is_summarize_nearest_rank():
    values = [5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0]
    s = summarize({"decode_ms": v} for v in values)
    for p in (50, 95, 99):
        assert percentile(np.array(values), p) == s[f"decode_ms_p{p}"]


def test_clicks_per_object_until_export_or_stop():
    oid = np.array(["a", "a", "a", "a", "b", "b", None, "c"], object)
    src = np.array(["ui", "ui", "ui-export", "ui", "ui", "ui", "ui", "api"], object)
    objs = clicks_per_object(oid, src, np.arange(8.0))
    got = {i: (c, e) for i, c, e in zip(objs.ids, objs.clicks, objs.exported, strict=True)}
    assert got == {"a": (2, True), "b": (2, False)}  # a click after the export does not count; api is no object


# --------------------------------------------------------------------------- alert rules

def log_of(tmp_path: Path, *parts: list) -> Path:
    d = tmp_path / "logs"
    write_log(d, [r for part in parts for r in part])
    return d


def normal(seed: int = 1, n: int = 600, **kw):
    return synthetic_records(n, start=NOW - n * 60.0 - 30, step_s=60.0, seed=seed, **kw)


def drifted(**kw):
    """200 normal images first (the reference is the first 50), then 300 records with ``kw``."""
    return (synthetic_records(200, start=NOW - 8 * HOUR, step_s=30.0, seed=1)
            + synthetic_records(300, start=NOW - 3 * HOUR, step_s=30.0, seed=2, **kw))


FIRING_CASES = {
    "decode_p95": lambda: normal(decode_ms=2500.0),
    "encode_p95": lambda: normal(encode_ms=45000.0),
    "mean_score": lambda: normal(score=0.3),
    "bad_masks": lambda: normal(bad_mask_share=0.5),
    "miou": lambda: normal(n=100, iou=0.45),
    "clicks_per_object": lambda: normal(clicks=14.0),
    "drift_brightness": lambda: drifted(brightness=45.0),
    "drift_blur": lambda: drifted(blur=40.0),
    "drift_resolution": lambda: drifted(resolution=(640, 480)),
    "drift_aspect": lambda: drifted(resolution=(1080, 1920)),
}


def statuses(db) -> dict[str, str]:
    return {a.rule: a.status for a in db.alerts}


def test_the_default_rules_are_the_ones_tested():
    assert {r.name for r in load_rules().rules} == set(FIRING_CASES)


def test_every_rule_is_quiet_on_a_normal_log(tmp_path):
    d = log_of(tmp_path, normal(), normal(seed=5, n=100, iou=0.85), drifted())
    db = build_dashboard(d, "day")
    assert statuses(db) == dict.fromkeys(FIRING_CASES, "ok")
    out = monitor_cli("check", "--dir", str(d))
    assert out.returncode == 0 and out.stdout.startswith("0 alerts firing"), out.stdout + out.stderr


@pytest.mark.parametrize("rule", list(FIRING_CASES))
def test_each_rule_fires_on_a_log_made_for_it(tmp_path, rule):
    d = log_of(tmp_path, FIRING_CASES[rule]())
    db = build_dashboard(d, "day")
    alert = {a.rule: a for a in db.alerts}[rule]
    assert alert.status == "firing", (alert, statuses(db))
    assert alert.message and "{" not in alert.message and alert.since is not None
    assert db.frame.t.min() - 1 <= alert.since <= NOW
    if rule.startswith("drift_"):  # the onset (3 h ago) is found, not the window's start (8 h ago)
        assert alert.since >= NOW - 3.5 * HOUR
    out = monitor_cli("check", "--dir", str(d))
    assert out.returncode == 1 and f"FIRING {rule}:" in out.stdout, out.stdout + out.stderr


def test_drift_messages_say_which_way():
    from sam_core.monitor.data import Frame

    for rule, case, word in [("drift_brightness", dict(brightness=45.0), "darker"),
                             ("drift_brightness", dict(brightness=200.0), "brighter"),
                             ("drift_blur", dict(blur=40.0), "blurrier"),
                             ("drift_resolution", dict(resolution=(640, 480)), "smaller")]:
        db = build_dashboard(Frame.from_records(drifted(**case)), "day", now=NOW)
        alert = {a.rule: a for a in db.alerts}[rule]
        assert alert.firing and word in alert.message, alert.message


def test_quality_rules_skip_test_tiny(tmp_path):
    d = log_of(tmp_path, normal(model="test-tiny", score=0.05, bad_mask_share=0.9))
    st = statuses(build_dashboard(d, "day"))
    assert st["mean_score"] == st["bad_masks"] == "no data"
    assert st["decode_p95"] == "ok"  # latency is real on any model


def test_windows_cut_the_log(tmp_path):
    old = synthetic_records(300, start=NOW - 3 * 86400, step_s=60.0, seed=7, decode_ms=3000.0)
    d = log_of(tmp_path, old, normal(n=100))
    assert statuses(build_dashboard(d, "week", now=NOW))["decode_p95"] == "firing"
    assert statuses(build_dashboard(d, "day", now=NOW))["decode_p95"] == "ok"
    frame = load_frame(d)
    hour = build_dashboard(d, "hour", now=NOW).frame  # a fixed end: a slow run must not move the window
    assert len(hour) == int(((frame.t >= NOW - HOUR) & (frame.t <= NOW)).sum()) > 0
    assert len(build_dashboard(d, "all", now=NOW).frame) == len(load_frame(d))


def test_rules_file_and_its_errors(tmp_path):
    d = log_of(tmp_path, normal(decode_ms=30.0))
    rules = tmp_path / "strict.toml"
    rules.write_text('[check]\nwindow = "all"\n[rules.fast]\nsignal = "decode_ms_p50"\nabove = 5\n'
                     'message = "decode p50 {value:.0f} ms is above {threshold:g} ms"\n')
    out = monitor_cli("check", "--dir", str(d), "--rules", str(rules))
    assert out.returncode == 1 and "FIRING fast:" in out.stdout and "above 5 ms" in out.stdout
    assert "over the last all" in out.stdout
    for text, message in [
        ('[rules.x]\nsignal = "nope"\nabove = 1\n', "signal 'nope' is not one of"),
        ('[rules.x]\nsignal = "mean_score"\nabove = 1\nbelow = 2\n', "exactly one of 'above' or 'below'"),
        ('[rules.x]\nsignal = "mean_score"\nabove = "high"\n', "threshold must be a number"),
        ('[rules.x]\nsignal = "mean_score"\nabove = 1\ncolour = 2\n', "unknown keys ['colour']"),
        ('[check]\nwindow = "year"\n', "window must be one of"),
        ('[reference]\nstart = "yesterday"\n', "not an ISO-8601 time"),
        ("[rules\n", "is not valid TOML"),
    ]:
        rules.write_text(text)
        with pytest.raises(RulesError, match=re.escape(message)):
            load_rules(rules)
    out = monitor_cli("check", "--dir", str(d), "--rules", str(rules))
    assert out.returncode == 2 and out.stderr.startswith("error: ") and "Traceback" not in out.stderr
    out = monitor_cli("check", "--dir", str(tmp_path / "nowhere"))
    assert out.returncode == 2 and "no run log" in out.stderr and "Traceback" not in out.stderr


def test_pinned_reference_range(tmp_path):
    recs = drifted(brightness=45.0)
    d = log_of(tmp_path, recs)
    rules = tmp_path / "pinned.toml"
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW - 2 * HOUR))
    default = (ROOT / "sam_core/monitor/alerts.toml").read_text()
    rules.write_text(default.replace("# start = \"2025-06-01T00:00:00Z\"", f'start = "{start}"'))
    ruleset = load_rules(rules)
    assert ruleset.reference.start == pytest.approx(NOW - 2 * HOUR, abs=1)
    db = build_dashboard(d, "day", ruleset)
    # the reference is now the dark images: the window's current images are the earlier ones and the rest
    assert "logged from" in ruleset.reference.describe()
    assert np.median(db.ctx.reference.num["brightness"]) < 80


# --------------------------------------------------------------------------- old logs

_V1_COLUMNS = ("time TEXT NOT NULL, session TEXT, image_hash TEXT, image_name TEXT, width INTEGER, height INTEGER, "
               "brightness REAL, blur REAL, model TEXT, device TEXT, precision TEXT, prompts TEXT, multimask INTEGER, "
               "chosen_index INTEGER, scores TEXT, score REAL, area INTEGER, area_fraction REAL, perimeter REAL, "
               "encode_ms REAL, decode_ms REAL, cache_hit INTEGER, source TEXT, extra TEXT")
_V2_EXTRA = ", object_id TEXT, contrast REAL, decoder TEXT, iou REAL"


@pytest.mark.parametrize("version", [1, 2])
def test_old_logs_open(tmp_path, version):
    d = tmp_path / f"v{version}"
    d.mkdir()
    con = sqlite3.connect(d / "runs.sqlite")
    con.execute("PRAGMA journal_mode = WAL")
    con.execute(f"CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, {_V1_COLUMNS}"
                f"{_V2_EXTRA if version == 2 else ''})")
    for i in range(30):
        t = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(NOW - 3000 + i * 60))
        row = {"time": t, "session": "old", "image_hash": f"h{i}", "width": 640, "height": 480,
               "brightness": 100.0 + i, "blur": 50.0, "model": "vit_b", "score": 0.9, "area_fraction": 0.2,
               "decode_ms": 40.0 + i, "encode_ms": 900.0, "cache_hit": i % 2, "source": "ui",
               "prompts": '{"points":[[1,2,1]],"box":null}'}
        if version == 2:
            row.update(object_id=f"old-h{i // 3}", contrast=0.2)
        con.execute(f"INSERT INTO runs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", tuple(row.values()))
    con.execute(f"PRAGMA user_version = {version}")
    con.commit()
    con.close()

    frame = load_frame(d)  # read-only: the file stays as it was
    assert len(frame) == 30 and np.isnan(frame.num["mask_full"]).all() and np.isnan(frame.num["saturation"]).all()
    assert frame.num["decode_ms"][:3].tolist() == [40.0, 41.0, 42.0]
    assert sqlite3.connect(d / "runs.sqlite").execute("PRAGMA user_version").fetchone()[0] == version
    db = build_dashboard(d, "day")
    st = statuses(db)
    assert st["decode_p95"] == "ok" and st["bad_masks"] == "no data"  # no mask flags in old logs
    assert db.signals["decode_ms_p50"].value == 54.0
    assert db.signals["mean_clicks_per_object"].value == (3.0 if version == 2 else None)
    assert monitor_cli("check", "--dir", str(d)).returncode == 0
    with RunLog(d) as log:  # the app's own open migrates it
        log.append({"session": "new", "mask_full": True, "aspect": 1.5})
        recs = log.records()
    assert tuple(recs[0]) == RECORD_FIELDS and recs[-1]["mask_full"] == 1
    assert sqlite3.connect(d / "runs.sqlite").execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    assert len(load_frame(d)) == 31
    assert subprocess.run([sys.executable, "-m", "sam_core.runlog", "--dir", str(d)], capture_output=True,
                          text=True, timeout=60).returncode == 0  # the old summary command still works


# --------------------------------------------------------------------------- CLI outputs


def test_report_is_one_self_contained_html_file(tmp_path):
    d = log_of(tmp_path, drifted(brightness=45.0), normal(seed=5, n=100, iou=0.85))
    out = monitor_cli("report", "--dir", str(d), "--out", str(tmp_path / "r.html"), "--window", "all")
    assert out.returncode == 0, out.stderr
    html = (tmp_path / "r.html").read_text()
    assert html.count("<img ") == 6 and html.count("src='data:image/png;base64,") == 6
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # nothing to fetch
    assert "<script" not in html
    assert "drift_brightness" in html and "inputs are darker than the reference" in html
    assert "Input drift against the reference" in html and "brightness (mean luma" in html


def test_report_escapes_what_it_shows(tmp_path):
    recs = normal(n=50)
    d = log_of(tmp_path, [dataclasses.replace(r, model="<script>alert(1)</script>") for r in recs])
    out = monitor_cli("report", "--dir", str(d), "--out", str(tmp_path / "r.html"))
    assert out.returncode == 0
    assert "<script>" not in (tmp_path / "r.html").read_text()


def test_summary_prints_every_signal(tmp_path):
    d = log_of(tmp_path, normal(n=200))
    out = monitor_cli("summary", "--dir", str(d), "--window", "all")
    data = json.loads(out.stdout)
    assert data["count"] == len(load_frame(d)) and data["alerts_firing"] == []
    assert 20 < data["decode_ms_p50"] < 45 and data["miou"] is None
    old = summarize(RunLog(d).records())
    assert data["decode_ms_p95"] == old["decode_ms_p95"] and data["encode_ms_p99"] == old["encode_ms_p99"]


def test_window_csv_leaves_out_what_belongs_to_visitors(tmp_path):
    recs = normal(n=120)
    recs[-1] = dataclasses.replace(recs[-1], image_name="=HYPERLINK(1)", session="-1+1")
    d = log_of(tmp_path, recs)
    path = export_window_csv(d, tmp_path / "w.csv", NOW - HOUR)
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    assert not set(PRIVATE_FIELDS) & set(header) and "decode_ms" in header and "mask_full" in header
    assert len(lines) - 1 == int((load_frame(d).t >= NOW - HOUR).sum())
    assert "'-1+1" in lines[-1]  # a formula-looking cell is defused
    full = export_window_csv(d, tmp_path / "all.csv", private=True).read_text()
    assert "'=HYPERLINK(1)" in full and full.splitlines()[0].split(",") == list(RECORD_FIELDS)


# --------------------------------------------------------------------------- the Monitor tab's handlers


def test_monitor_tab_handlers(studio, tmp_path):
    from matplotlib.figure import Figure

    from sam_core.ui.monitor_tab import MonitorHandlers

    h = MonitorHandlers(studio)
    empty = h.refresh("Last day")
    assert "No runs logged yet" in empty.summary and empty.plots == (None,) * 6
    assert len(Path(h.export_csv("All")).read_text().splitlines()) == 1  # the header only
    write_log(studio.runlog.path.parent, drifted(brightness=45.0))
    view = h.refresh("Last day")
    assert all(isinstance(f, Figure) for f in view.plots) and len(view.plots) == 6
    assert "1 alert firing" in view.summary and "drift_brightness" in view.summary
    assert view.alerts[0][:2] == ["drift_brightness", "firing"] and "darker" in view.alerts[0][-1]
    assert [row[0].split(" (")[0] for row in view.drift][:2] == ["brightness", "contrast"]
    csv_path = h.export_csv("Last hour")
    assert Path(csv_path).exists() and Path(csv_path).parent.parent == studio.render_dir
    in_hour = int((load_frame(studio.runlog.path.parent).t >= time.time() - HOUR).sum())
    assert len(Path(csv_path).read_text().splitlines()) == 1 + in_hour


# --------------------------------------------------------------------------- the seed case, end to end


def _segment_many(url: str, images: list[Path]) -> None:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    for path in images:
        client.predict(handle_file(str(path)), json.dumps({"points": [[32, 24, 1]], "box": None}), True,
                       api_name="/segment")


@pytest.mark.slow
def test_seed_dark_images_through_the_api_fire_brightness_drift(tmp_path):
    from server import run_server

    normal_imgs = [save_png(tmp_path / f"n{i:03d}.png", photo_like(48, 64, seed=i)) for i in range(100)]
    dark_imgs = [save_png(tmp_path / f"d{i:03d}.png", (photo_like(48, 64, seed=i + 100) * 0.25).astype(np.uint8))
                 for i in range(50)]
    results = {}
    for name, images in (("dark", normal_imgs[:50] + dark_imgs), ("normal", normal_imgs)):
        work = tmp_path / name
        work.mkdir()
        with run_server(work) as srv:
            _segment_many(srv.url, images)
            logs = srv.outputs / "logs"
        assert RunLog(logs).count() == 100
        results[name] = monitor_cli("check", "--dir", str(logs))
    dark, ok = results["dark"], results["normal"]
    assert dark.returncode == 1, dark.stdout + dark.stderr
    assert "FIRING drift_brightness" in dark.stdout and "inputs are darker than the reference" in dark.stdout
    assert ok.returncode == 0 and "0 alerts firing" in ok.stdout and "FIRING" not in ok.stdout, ok.stdout
    psi_line = re.search(r"ok drift_brightness: psi_brightness (\S+)", ok.stdout)
    assert psi_line and math.isfinite(float(psi_line.group(1)))
