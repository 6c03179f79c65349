"""Many visitors at once, a full queue, a killed server and a restart, against the real demo.py.

* 8 gradio_client Clients in parallel threads, each with its own image, 5 requests each sent
  at once: every answer equals the same request run alone (the in-process library on the same
  seeded test-tiny weights), and the run log shows exactly one encoder run per image.
* ``--queue-size 1`` flooded with 20 MP requests: the overflow gets Gradio's "queue is full,
  try again" error, not a crash, and the server serves afterwards.
* SIGKILL mid-run: the run log stays readable with every earlier record intact; a restarted
  server appends to it.
* A restart reuses the verified checkpoint without hashing it again, and a checkpoint broken in
  place (same size and mtime) is never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from corpus import print_table
from gradio_client import Client, handle_file
from PIL import Image
from server import run_server
from synth import photo_like

from sam_core.core.geometry import mask_metrics
from sam_core.core.images import image_hash, load_image
from sam_core.runlog import RunLog

ROOT = Path(__file__).resolve().parents[1]
ROCKET_20MP = ROOT / "examples" / "rocket_20mp.jpg"  # 5472 x 3648
N_CLIENTS = 8
N_REQUESTS = 5


# ----------------------------------------------------------------------------- many visitors


def full_logits(res) -> np.ndarray:
    """(N, H, W) float mask logits at full resolution (what ``res.masks`` thresholds at 0)."""
    with torch.inference_mode():
        t = torch.as_tensor(res.low_res_logits)[None]
        t = F.interpolate(t, (1024, 1024), mode="bilinear", align_corners=False)
        t = t[..., : res.input_size.height, : res.input_size.width]
        t = F.interpolate(t, res.image_size.hw, mode="bilinear", align_corners=False)
    return t[0].numpy()


def visitor_prompts(w: int, h: int, i: int) -> list[tuple[dict, bool]]:
    """Five different prompt sets (full-image pixels) for visitor ``i``; (prompts, multimask)."""
    cx, cy = w // 2 + 3 * i, h // 2 - 2 * i
    return [
        ({"points": [[cx, cy, 1]], "box": None}, True),
        ({"points": [[cx, cy, 1], [10 + i, 12, 0]], "box": None}, True),
        ({"points": [], "box": [w // 5, h // 6, w - w // 4, h - h // 5 - i]}, True),
        ({"points": [[cx - 7, cy + 5, 1]], "box": [w // 6, h // 6, w - w // 6, h - h // 6]}, True),
        ({"points": [[cx, cy, 1], [cx + 20, cy + 15, 1], [w - 5, h - 5, 0]], "box": None}, False),
    ]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with run_server(tmp_path_factory.mktemp("visitors-app")) as srv:
        yield srv


def test_many_visitors_at_once(request, server, tiny_segmenter, tmp_path):
    # Distinct synthetic images (different sizes and seeds) and their prompts.
    visitors = []
    for i in range(N_CLIENTS):
        h, w = 240 + 12 * i, 320 + 24 * i
        path = tmp_path / f"visitor{i}.png"
        Image.fromarray(photo_like(h, w, seed=100 + i)).save(path)
        rgb = load_image(path).rgb
        visitors.append({"path": path, "size": (w, h), "hash": image_hash(rgb), "rgb": rgb,
                         "requests": visitor_prompts(w, h, i)})
    assert len({v["hash"] for v in visitors}) == N_CLIENTS

    # The answers "alone": the library in this process, one request at a time, same seeded weights.
    for v in visitors:
        v["alone"] = []
        for prompts, multimask in v["requests"]:
            res = tiny_segmenter.segment(v["rgb"], prompts["points"] or None, prompts["box"], multimask=multimask)
            v["alone"].append(res)

    # All visitors at once: each in its own thread with its own Client, 5 requests sent together.
    barrier = threading.Barrier(N_CLIENTS)
    errors: list[str] = []

    def visit(v: dict) -> None:
        try:
            client = Client(server.url, verbose=False)
            barrier.wait(timeout=60)
            jobs = [client.submit(handle_file(str(v["path"])), json.dumps(p), m, api_name="/segment")
                    for p, m in v["requests"]]
            v["answers"] = [job.result(timeout=180) for job in jobs]
        except Exception as err:
            errors.append(f"visitor {v['path'].name}: {type(err).__name__}: {err}")

    t0 = time.perf_counter()
    threads = [threading.Thread(target=visit, args=(v,)) for v in visitors]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    wall = time.perf_counter() - t0
    assert not errors, errors
    assert all(len(v.get("answers", [])) == N_REQUESTS for v in visitors)

    # Every answer equals the answer alone: scores, best index, areas, bboxes and every mask pixel --
    # up to the last float bit: under load, CPU kernels may split work over fewer threads (MKL's
    # dynamic threading), which can flip a pixel whose logit is within a hair of the threshold.
    # Such a pixel is allowed only if its logit (alone) is within 1e-3 of 0; it is counted below.
    flipped = 0
    for v in visitors:
        w, h = v["size"]
        for (summary, masks), res, (prompts, multimask) in zip(v["answers"], v["alone"], v["requests"]):
            where = (v["path"].name, prompts)
            assert summary["image_size"] == [w, h]
            assert summary["prompts"] == prompts
            n = 3 if multimask else 1
            assert len(summary["candidates"]) == len(masks) == n
            np.testing.assert_allclose([c["score"] for c in summary["candidates"]], res.scores, atol=1e-5)
            top = np.sort(res.scores)[::-1]
            assert summary["best_index"] == res.best_index or top[0] - top[1] < 1e-5, where
            logits = full_logits(res)
            for i, cand in enumerate(summary["candidates"]):
                got = np.asarray(Image.open(masks[i])) == 255
                diff = got != res.masks[i]
                assert np.all(np.abs(logits[i][diff]) < 1e-3), (where, i, logits[i][diff])
                flipped += int(diff.sum())
                m = mask_metrics(res.masks[i])
                assert abs(cand["area"] - m["area"]) <= diff.sum(), (where, i)
                assert diff.any() or cand["bbox"] == m["bbox"], (where, i)

    # The encoder ran once per distinct image: one cache miss per image_hash in the run log.
    records = [r for r in RunLog(server.outputs / "logs").records() if r["source"] == "api"]
    by_hash = {v["hash"]: [r for r in records if r["image_hash"] == v["hash"]] for v in visitors}
    rows = []
    for v in visitors:
        recs = by_hash[v["hash"]]
        misses = sum(1 for r in recs if not r["cache_hit"])
        rows.append([v["path"].name, f"{v['size'][0]}×{v['size'][1]}", v["hash"][:12], str(len(recs)), str(misses)])
    print_table(request, f"{N_CLIENTS} clients × {N_REQUESTS} requests at once in {wall:.1f} s; "
                f"{flipped} near-threshold mask pixels differ from the answers alone",
                ["image", "size", "image_hash", "records", "encoder runs"], rows, [14, 9, 12, 7, 12])
    for v in visitors:
        recs = by_hash[v["hash"]]
        assert len(recs) == N_REQUESTS, v["path"].name
        assert sum(1 for r in recs if not r["cache_hit"]) == 1, (v["path"].name, [r["cache_hit"] for r in recs])
        logged = sorted(json.dumps(r["prompts"], sort_keys=True) for r in recs)
        assert logged == sorted(json.dumps(p, sort_keys=True) for p, _ in v["requests"])


# ----------------------------------------------------------------------------- full queue


@pytest.fixture(scope="module")
def busy_server(tmp_path_factory):
    with run_server(tmp_path_factory.mktemp("busy-app"), "--queue-size", "1") as srv:
        yield srv


def test_full_queue_says_busy_and_recovers(request, busy_server):
    """``--queue-size 1`` and 10 slow (20 MP) requests at once: the overflow is told to retry."""
    n = 10
    barrier = threading.Barrier(n)
    outcomes: list[tuple[str, str]] = []
    clients = [Client(busy_server.url, verbose=False) for _ in range(n)]

    def go(i: int) -> None:
        barrier.wait(timeout=60)
        try:
            summary, _ = clients[i].predict(handle_file(str(ROCKET_20MP)),
                                            json.dumps({"points": [[2700 + 10 * i, 2200, 1]]}), True,
                                            api_name="/segment")
            outcomes.append(("ok", f"image_size {summary['image_size']}"))
        except Exception as err:
            outcomes.append((type(err).__name__, str(err)))

    threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert len(outcomes) == n
    counts: dict[tuple[str, str], int] = {}
    for o in outcomes:
        counts[o] = counts.get(o, 0) + 1
    print_table(request, f"{n} concurrent 20 MP requests against --queue-size 1",
                ["outcome", "count", "message"], [[k, str(c), m] for (k, m), c in counts.items()], [10, 5, 60])

    busy = [m for k, m in outcomes if k != "ok"]
    assert busy, "the queue never overflowed"
    for kind, msg in outcomes:
        if kind == "ok":
            assert msg == "image_size [5472, 3648]"
        else:  # gradio_client's QueueError for the server's HTTP 503 "queue_full"
            assert kind == "QueueError", (kind, msg)
            assert "queue is full" in msg.lower() and "try again" in msg.lower(), msg
    assert sum(1 for k, _ in outcomes if k == "ok") >= 1

    # still serving afterwards
    assert busy_server.proc.poll() is None
    summary, _ = clients[0].predict(handle_file(str(ROOT / "examples" / "coffee.png")),
                                    '{"points": [[290, 230, 1]]}', True, api_name="/segment")
    assert summary["image_size"] == [600, 400]


# ----------------------------------------------------------------------------- crashes


def test_sigkill_mid_run_keeps_the_run_log(server, tmp_path):
    """Kill -9 the server (this module's, used last) while requests run; then restart it."""
    images = []
    for i in range(3):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(photo_like(200 + 20 * i, 300, seed=40 + i)).save(path)
        images.append((path, image_hash(load_image(path).rgb)))
    logs = server.outputs / "logs"
    before = RunLog(logs).count()

    client = Client(server.url, verbose=False)
    done = []
    for k in range(6):
        path, key = images[k % 3]
        prompts = {"points": [[50 + 10 * k, 60 + 5 * k, 1]], "box": None if k % 2 else [20, 20, 250, 150]}
        summary, _ = client.predict(handle_file(str(path)), json.dumps(prompts), True, api_name="/segment")
        done.append((key, summary))
    assert RunLog(logs).count() == before + 6

    # slow (20 MP) requests in flight -- 4 running, 4 waiting -- then SIGKILL
    finished: list[int] = []

    def slow(i: int) -> None:
        try:
            Client(server.url, verbose=False).predict(handle_file(str(ROCKET_20MP)),
                                                      json.dumps({"points": [[100 + i, 100, 1]]}), True,
                                                      api_name="/segment")
            finished.append(i)
        except Exception:
            pass

    threads = [threading.Thread(target=slow, args=(i,), daemon=True) for i in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    server.proc.kill()
    assert server.proc.wait(10) == -9
    for t in threads:
        t.join(30)
    assert len(finished) < len(threads), "nothing was running when the server was killed"

    con = sqlite3.connect(logs / "runs.sqlite")
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()
    records = RunLog(logs).records()
    assert len(records) >= before + 6
    for (key, summary), rec in zip(done, records[before:before + 6]):
        assert rec["source"] == "api" and rec["model"] == "test-tiny"
        assert rec["image_hash"] == key
        assert [rec["width"], rec["height"]] == summary["image_size"]
        assert rec["prompts"] == summary["prompts"]
        assert rec["scores"] == [c["score"] for c in summary["candidates"]]
        assert rec["chosen_index"] == summary["best_index"]
        assert rec["area"] == summary["candidates"][summary["best_index"]]["area"]
        assert bool(rec["cache_hit"]) == summary["timings"]["cache_hit"]
    for rec in records[before + 6:]:  # anything logged while dying is a whole record
        assert rec["image_hash"] and rec["scores"] and rec["prompts"]["points"]

    # a restarted server appends to the same log
    with run_server(server.outputs.parent) as again:
        assert again.outputs == server.outputs
        Client(again.url, verbose=False).predict(handle_file(str(images[0][0])), '{"points": [[5, 5, 1]]}', True,
                                                 api_name="/segment")
        after = RunLog(logs).records()
    assert len(after) == len(records) + 1 and after[: len(records)] == records


# ----------------------------------------------------------------------------- checkpoint restarts

# A fresh interpreter per "start". The bare sam_core package stub skips sam_core/__init__.py
# (torch); sha256_file is wrapped to report every file it hashes.
RESOLVE = r"""
import json, os, sys, types
root, folder, spec_json = sys.argv[1:4]
pkg = types.ModuleType("sam_core"); pkg.__path__ = [os.path.join(root, "sam_core")]
sys.modules["sam_core"] = pkg
import sam_core.model.weights as ck
hashed, real = [], ck.sha256_file
def spy(path, **kw):
    hashed.append(str(path)); return real(path, **kw)
ck.sha256_file = spy
spec = ck.CheckpointSpec(**json.loads(spec_json))
try:
    out = {"path": str(ck.resolve_checkpoint(spec.model_type, checkpoints_dir=folder, spec=spec, progress=False))}
except ck.CheckpointError as exc:
    out = {"error": str(exc)}
out["hashed"] = hashed
print(json.dumps(out))
"""
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _fill_hf_cache(cache: Path, hub_path: str, data: bytes, repo_id: str = "ybelkada/segment-anything") -> None:
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True)
    blob.write_bytes(data)
    snap = repo / "snapshots" / COMMIT / hub_path
    snap.parent.mkdir(parents=True)
    snap.symlink_to(os.path.relpath(blob, snap.parent))


def test_restart_reuses_verified_checkpoint_and_never_trusts_a_broken_one(tmp_path):
    from sam_core.model.weights import CheckpointSpec

    data = os.urandom(64 * 1024)
    name = "sam_vit_b_e2e001.pth"
    spec = CheckpointSpec("vit_b", name, f"checkpoints/{name}", len(data), hashlib.sha256(data).hexdigest())
    cache, empty, folder = tmp_path / "hf", tmp_path / "hf-empty", tmp_path / "ckpt"
    _fill_hf_cache(cache, spec.hub_path, data)
    target = folder / name
    record = folder / ".verified" / f"{name}.json"

    def start(hf_cache: Path) -> dict:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hf_cache), "HF_HOME": str(tmp_path / "home"),
               "HF_HUB_DISABLE_TELEMETRY": "1"}
        out = subprocess.run([sys.executable, "-c", RESOLVE, str(ROOT), str(folder), json.dumps(spec.__dict__)],
                             env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    first = start(cache)  # downloads (from the offline cache), verifies, records
    assert first["path"] == str(target) and len(first["hashed"]) == 1 and record.exists()
    second = start(cache)  # a restart: the record matches, no hashing
    assert second == {"path": str(target), "hashed": []}

    # The file breaks in place with the same size and mtime (bit rot, a tool that keeps mtimes).
    st = target.stat()
    with open(target, "r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert target.stat().st_size == st.st_size and target.stat().st_mtime_ns == st.st_mtime_ns

    broken = start(empty)  # no copy to repair it from: refused, deleted, record gone
    assert "error" in broken and "corrupt" in broken["error"] and str(target) in broken["error"]
    assert broken["hashed"] == [str(target)]
    assert not target.exists() and not record.exists()
    assert not [p for p in folder.iterdir() if p.name.endswith((".part", ".tmp"))]

    # The checkpoint was a hard link to the Hub cache's blob, so that copy broke too: a good copy
    # is needed to repair it (what a download would give).
    good = tmp_path / "hf-good"
    _fill_hf_cache(good, spec.hub_path, data)
    repaired = start(good)  # fetched again, verified again
    assert "path" in repaired, repaired
    assert repaired["path"] == str(target) and target.read_bytes() == data
    assert start(good) == {"path": str(target), "hashed": []}
