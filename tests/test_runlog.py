"""Tests for sam_core.runlog: round trip, threads, processes, SIGKILL, exports, no pixels."""

from __future__ import annotations

import csv
import json
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sam_core.core.errors import ResourceError
from sam_core.runlog import RECORD_FIELDS, SCHEMA_VERSION, RunLog, RunRecord, summarize

REPO = Path(__file__).resolve().parents[1]

# Children import sam_core.runlog normally: it does not import torch, so they start fast.
_CHILD_PRELUDE = """
import sys, time, os
import sam_core.runlog as runlog
"""


def _full_record() -> dict:
    return {
        "session": "a1b2c3",
        "image_hash": "sha1:" + "0" * 40,
        "image_name": "astronaut.png",
        "width": 512,
        "height": 384,
        "brightness": 0.47,
        "blur": 123.5,
        "model": "vit_h",
        "device": "cuda:0",
        "precision": "bf16",
        "prompts": {"points": [[10, 20, 1], [30, 40, 0]], "box": [1, 2, 300, 200]},
        "multimask": 1,
        "chosen_index": 2,
        "scores": [0.91, 0.85, 0.97],
        "score": 0.97,
        "area": 12345,
        "area_fraction": 0.0628,
        "perimeter": 456.25,
        "encode_ms": 412.0,
        "decode_ms": 18.5,
        "cache_hit": 0,
        "source": "ui",
    }


def test_round_trip_all_fields(tmp_path: Path) -> None:
    log = RunLog(tmp_path / "logs")
    assert log.path == tmp_path / "logs" / "runs.sqlite" and log.path.exists()
    rec = _full_record()
    rec["clicks"] = 3                       # unknown keys -> extra
    rec["extra"] = {"note": "hi", "n": [1, 2]}
    rid = log.append(rec)
    assert isinstance(rid, int) and rid >= 1
    rows = log.records()
    assert len(rows) == 1 and log.count() == 1
    got = rows[0]
    assert tuple(got) == RECORD_FIELDS
    assert got["id"] == rid
    for key, value in _full_record().items():
        assert got[key] == value, key
    assert got["extra"] == {"note": "hi", "n": [1, 2], "clicks": 3}
    # time filled: UTC ISO-8601 with milliseconds
    assert got["time"].endswith("Z") and len(got["time"].split(".")[1]) == 4
    import datetime as dt
    parsed = dt.datetime.fromisoformat(got["time"])
    assert abs((dt.datetime.now(dt.UTC) - parsed).total_seconds()) < 60
    log.close()


def test_minimal_record_explicit_time_and_order(tmp_path: Path) -> None:
    with RunLog(tmp_path) as log:
        ids = [log.append({"time": f"2025-01-0{i}T00:00:00.000Z", "score": i}) for i in (1, 2, 3)]
        assert [r["id"] for r in log.records()] == ids
        assert [r["id"] for r in log.records(newest_first=True)] == ids[::-1]
        assert [r["id"] for r in log.records(2, newest_first=True)] == ids[:0:-1]
        assert [r["id"] for r in log.records(1)] == ids[:1]
        first = log.records(1)[0]
        assert first["time"] == "2025-01-01T00:00:00.000Z" and first["extra"] is None
        assert first["prompts"] is None and first["session"] is None
    with pytest.raises(RuntimeError):
        log.append({})


def test_numpy_scalars_accepted_and_coerced(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    with RunLog(tmp_path) as log:
        log.append({"score": np.float32(0.5), "area": np.int64(7), "cache_hit": True,
                    "scores": [np.float32(0.25), 0.5], "decode_ms": float("nan")})
        r = log.records()[0]
    assert r["score"] == 0.5 and r["area"] == 7 and r["cache_hit"] == 1
    assert r["scores"] == [0.25, 0.5] and r["decode_ms"] is None


def test_schema_version_wal_and_reopen(tmp_path: Path) -> None:
    RunLog(tmp_path).append({"source": "a"})
    log = RunLog(tmp_path)  # reopen: no migration, data kept
    log.append({"source": "b"})
    assert [r["source"] for r in log.records()] == ["a", "b"]
    log.close()
    con = sqlite3.connect(tmp_path / "runs.sqlite")
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


def test_newer_schema_with_extra_column_still_works(tmp_path: Path) -> None:
    RunLog(tmp_path).close()
    con = sqlite3.connect(tmp_path / "runs.sqlite")
    con.execute("ALTER TABLE runs ADD COLUMN future TEXT")
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.commit()
    con.close()
    with RunLog(tmp_path) as log:
        log.append({"score": 0.1})
        assert tuple(log.records()[0]) == RECORD_FIELDS


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_fork_child_uses_its_own_connection(tmp_path: Path) -> None:
    log = RunLog(tmp_path)
    log.append({"source": "parent-before"})
    pid = os.fork()
    if pid == 0:  # child: must not reuse (or close) the parent's connection
        code = 1
        try:
            log.append({"source": "child"})
            log.close()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    log.append({"source": "parent-after"})  # the parent's connection still works
    assert [r["source"] for r in log.records()] == ["parent-before", "child", "parent-after"]
    log.close()
    con = sqlite3.connect(tmp_path / "runs.sqlite")
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()


def test_threads(tmp_path: Path) -> None:
    log = RunLog(tmp_path)
    ids: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def work(t: int) -> None:
        try:
            start.wait()
            mine = [log.append({"session": f"t{t}", "area": i, "prompts": {"points": [[i, t, 1]]}})
                    for i in range(50)]
            log.records(5, newest_first=True)  # readers interleave with writers
            with lock:
                ids.extend(mine)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not errors
    assert len(ids) == 400 and len(set(ids)) == 400
    rows = log.records()
    assert len(rows) == 400 and log.count() == 400
    assert {r["id"] for r in rows} == set(ids)
    for t in range(8):
        assert sorted(r["area"] for r in rows if r["session"] == f"t{t}") == list(range(50))
    log.close()


_PROC_CHILD = _CHILD_PRELUDE + """
log = runlog.RunLog(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()                     # wait for "go" so the writers overlap
for i in range(int(sys.argv[3])):
    log.append({"source": sys.argv[2], "area": i})
log.close()
print("done", flush=True)
"""


def test_processes(tmp_path: Path) -> None:
    n_proc, n_each = 3, 150
    procs = [subprocess.Popen([sys.executable, "-c", _PROC_CHILD, str(tmp_path), f"p{k}", str(n_each)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
             for k in range(n_proc)]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        for p in procs:
            out, _ = p.communicate(timeout=60)
            assert p.returncode == 0 and out.strip() == "done"
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    with RunLog(tmp_path) as log:
        rows = log.records()
    assert len(rows) == n_proc * n_each
    assert len({r["id"] for r in rows}) == len(rows)
    for k in range(n_proc):
        assert sorted(r["area"] for r in rows if r["source"] == f"p{k}") == list(range(n_each))


# Deterministic content for counter i, defined once and run in both parent and child.
_CONTENT_SRC = """
def content(i):
    return {"session": f"s{i}", "image_hash": f"h{i:08d}", "width": i, "height": i * 2,
            "score": i / 1000, "scores": [i / 1000, i / 2000, i / 4000],
            "prompts": {"points": [[i, i + 1, i % 2]], "box": None if i % 3 else [0, 0, i, i]},
            "source": "crash", "counter": i, "pad": "x" * (i % 97)}
"""
_ns: dict = {}
exec(_CONTENT_SRC, _ns)
_content = _ns["content"]

_CRASH_CHILD = _CHILD_PRELUDE + _CONTENT_SRC + """
log = runlog.RunLog(sys.argv[1])
start, deadline = int(sys.argv[2]), time.monotonic() + 20   # stop by itself if orphaned
i = start
while time.monotonic() < deadline:
    rid = log.append(content(i))
    sys.stdout.write(f"{rid} {i}\\n"); sys.stdout.flush()
    i += 1
"""


def _check_content(row: dict, i: int) -> None:
    want = _content(i)
    extra = {k: want.pop(k) for k in ("counter", "pad")}
    for k, v in want.items():
        assert row[k] == v, (i, k)
    assert row["extra"] == extra


def test_sigkill_mid_write_keeps_committed_records(tmp_path: Path) -> None:
    committed: dict[int, int] = {}   # row id -> counter
    counter = 0
    for _round in range(3):  # kill the writer three times into the same file
        proc = subprocess.Popen([sys.executable, "-c", _CRASH_CHILD, str(tmp_path), str(counter)],
                                stdout=subprocess.PIPE, text=True, cwd=REPO)
        lines: queue.Queue[str | None] = queue.Queue()

        def pump(stream=proc.stdout, q=lines) -> None:
            for line in stream:
                q.put(line)
            q.put(None)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        got = 0
        deadline = time.monotonic() + 15
        try:
            while got < 200:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
                assert line is not None, "child exited early"
                rid, i = map(int, line.split())
                committed[rid] = i
                got += 1
            assert proc.poll() is None, "child must still be writing when killed"
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
        assert proc.returncode == -signal.SIGKILL
        reader.join(5)
        while (line := lines.get_nowait() if not lines.empty() else None) is not None:
            rid, i = map(int, line.split())   # lines already in the pipe were committed too
            committed[rid] = i
        counter = max(committed.values()) + 1

    con = sqlite3.connect(tmp_path / "runs.sqlite")
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    with RunLog(tmp_path) as log:
        rows = {r["id"]: r for r in log.records()}
    assert len(committed) >= 600
    for rid, i in committed.items():
        assert rid in rows, f"committed id {rid} lost"
        _check_content(rows[rid], i)
    for row in rows.values():  # rows committed after the last print are whole too
        _check_content(row, row["extra"]["counter"])


def test_exports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = RunLog(tmp_path / "logs")
    log.append(_full_record())
    log.append({"source": "api", "image_name": "=HYPERLINK(\"x\")", "session": "-x1",
                "extra": {"k": "v,\"q\"\n"}})
    log.append({})
    out = tmp_path / "exports"
    jl = log.export_jsonl(out / "runs.jsonl")
    assert jl == out / "runs.jsonl"
    parsed = [json.loads(line) for line in jl.read_text(encoding="utf-8").splitlines()]
    assert parsed == log.records()

    cp = log.export_csv(out / "runs.csv")
    with cp.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == RECORD_FIELDS
    assert len(rows) - 1 == log.count() == 3
    body = [dict(zip(RECORD_FIELDS, r)) for r in rows[1:]]
    assert json.loads(body[0]["prompts"]) == _full_record()["prompts"]
    assert json.loads(body[0]["scores"]) == _full_record()["scores"]
    assert body[1]["image_name"].startswith("'=")          # no spreadsheet formulas
    assert body[1]["session"] == "-x1"                     # our own ids are left as they are
    csv_summary = summarize(body)                          # CSV rows (all text) summarize too
    assert csv_summary["count"] == 3 and csv_summary["cache_hit_rate"] == 0.0
    assert csv_summary["decode_ms_p50"] == 18.5 and csv_summary["mean_points"] == 2
    assert json.loads(body[1]["extra"]) == {"k": "v,\"q\"\n"}
    assert body[2]["score"] == ""
    assert sorted(p.name for p in out.iterdir()) == ["runs.csv", "runs.jsonl"]  # no temp files

    # Overwriting is atomic too: a failure before the rename leaves the old file intact.
    before = jl.read_bytes()
    log.append({"source": "later"})

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(ResourceError):  # write_atomic reports the OSError as a ResourceError
        log.export_jsonl(jl)
    monkeypatch.undo()
    assert jl.read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["runs.csv", "runs.jsonl"]
    log.close()


def test_no_pixels(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    with RunLog(tmp_path) as log:
        image = np.zeros((4, 4, 3), np.uint8)
        bad = [
            {"extra": {"mask": image}},
            {"overlay": image},                   # unknown key -> extra, still refused
            {"scores": np.array([0.1, 0.2])},
            {"image_hash": b"\x00\x01"},
            {"thumb": bytearray(b"abc")},
            {"prompts": {"points": [[1, 2, 1]], "box": None, "png": memoryview(b"x")}},
            {"image_name": image},
        ]
        for rec in bad:
            with pytest.raises((TypeError, ValueError)):
                log.append(rec)
        with pytest.raises(ValueError):           # pixels as a big nested list
            log.append({"extra": {"mask": image.tolist() * 1000}})
        with pytest.raises(TypeError):
            log.append({"width": "wide"})
        assert log.count() == 0


def test_summarize() -> None:
    empty = summarize([])
    assert empty["count"] == 0 and empty["decode_ms_p50"] is None and empty["cache_hit_rate"] is None
    recs = [
        {"decode_ms": 10, "encode_ms": 400, "cache_hit": 0, "score": 0.9, "area_fraction": 0.1,
         "prompts": {"points": [[1, 1, 1]], "box": None}},
        {"decode_ms": 20, "encode_ms": 0.5, "cache_hit": 1, "score": 0.8, "area_fraction": 0.3,
         "prompts": {"points": [[1, 1, 1], [2, 2, 0], [3, 3, 1]], "box": [0, 0, 5, 5]}},
        {"decode_ms": 30, "encode_ms": 600, "cache_hit": 0, "score": 0.7, "area_fraction": 0.2,
         "prompts": {"points": [], "box": [0, 0, 5, 5]}},
        {"decode_ms": 40, "encode_ms": 0.4, "cache_hit": 1, "score": None,
         "prompts": json.dumps({"points": [[1, 1, 1], [2, 2, 1]], "box": None})},
        {"decode_ms": 1000},  # no cache info, no prompts
    ]
    s = summarize(recs)
    assert s["count"] == 5
    assert s["decode_ms_p50"] == 30 and s["decode_ms_p95"] == 1000 and s["decode_ms_p99"] == 1000
    assert s["encode_ms_p50"] == 400 and s["encode_ms_p99"] == 600   # misses only
    assert s["cache_hit_rate"] == pytest.approx(0.5)
    assert s["mean_score"] == pytest.approx(0.8)
    assert s["mean_area_fraction"] == pytest.approx(0.2)
    assert s["mean_points"] == pytest.approx(6 / 4)
    assert s["box_rate"] == pytest.approx(0.5)


def test_summarize_on_log_records(tmp_path: Path) -> None:
    with RunLog(tmp_path) as log:
        for i in range(1, 101):
            log.append({"decode_ms": i, "cache_hit": int(i % 4 == 0), "encode_ms": 100 + i})
        s = summarize(log.records())
    assert (s["decode_ms_p50"], s["decode_ms_p95"], s["decode_ms_p99"]) == (50, 95, 99)
    assert s["cache_hit_rate"] == 0.25 and s["mean_points"] is None


def test_command_line_summary_and_exports(tmp_path):
    log_dir = tmp_path / "logs"
    with RunLog(log_dir) as log:
        for i in range(5):
            log.append({"decode_ms": 10.0 * (i + 1), "cache_hit": i > 0, "encode_ms": 500.0,
                        "prompts": {"points": [[1, 2, 1]] * (i + 1), "box": None}, "score": 0.5})
    out = subprocess.run([sys.executable, "-m", "sam_core.runlog", "--dir", str(log_dir),
                          "--csv", str(tmp_path / "runs.csv"), "--jsonl", str(tmp_path / "runs.jsonl")],
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["count"] == 5 and summary["decode_ms_p50"] == 30.0 and summary["cache_hit_rate"] == 0.8
    assert summary["mean_points"] == 3.0
    assert len((tmp_path / "runs.jsonl").read_text().splitlines()) == 5
    assert len((tmp_path / "runs.csv").read_text().splitlines()) == 6
    missing = subprocess.run([sys.executable, "-m", "sam_core.runlog", "--dir", str(tmp_path / "nope")],
                             capture_output=True, text=True, timeout=60, cwd=REPO)
    assert missing.returncode == 2 and "no run log" in missing.stderr


# The CREATE TABLE statement of schema version 1, as the first release wrote it.
_V1_CREATE = (
    "CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL, "
    "session TEXT, image_hash TEXT, image_name TEXT, width INTEGER, height INTEGER, brightness REAL, "
    "blur REAL, model TEXT, device TEXT, precision TEXT, prompts TEXT, multimask INTEGER, "
    "chosen_index INTEGER, scores TEXT, score REAL, area INTEGER, area_fraction REAL, perimeter REAL, "
    "encode_ms REAL, decode_ms REAL, cache_hit INTEGER, source TEXT, extra TEXT)"
)


def test_v1_log_is_migrated_in_place(tmp_path: Path) -> None:
    db = tmp_path / "runs.sqlite"
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode = WAL")
    con.execute(_V1_CREATE)
    con.execute("INSERT INTO runs (time, session, width, prompts, multimask, scores, score, cache_hit, source, extra) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                ("2025-01-01T00:00:00.000Z", "old", 640, '{"points":[[1,2,1]],"box":null}', 1, "[0.9,0.8,0.7]",
                 0.9, 0, "ui", '{"clicks":1}'))
    con.execute("PRAGMA user_version = 1")
    con.commit()
    con.close()

    with RunLog(tmp_path) as log:
        new_id = log.append({"session": "new", "decoder": "onnx", "object_id": "obj-1", "iou": 0.75,
                             "contrast": 0.2, "score": 0.5})
        old, new = log.records()
    assert tuple(old) == RECORD_FIELDS
    assert old == {**dict.fromkeys(RECORD_FIELDS), "id": 1, "time": "2025-01-01T00:00:00.000Z", "session": "old",
                   "width": 640, "prompts": {"points": [[1, 2, 1]], "box": None}, "multimask": 1,
                   "scores": [0.9, 0.8, 0.7], "score": 0.9, "cache_hit": 0, "source": "ui", "extra": {"clicks": 1}}
    assert new["id"] == new_id == 2 and new["session"] == "new" and new["decoder"] == "onnx"
    assert (new["object_id"], new["iou"], new["contrast"], new["score"]) == ("obj-1", 0.75, 0.2, 0.5)
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    assert {r[1] for r in con.execute("PRAGMA table_info(runs)")} == set(RECORD_FIELDS)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    with RunLog(tmp_path) as log:  # reopening a migrated log changes nothing
        assert [r["id"] for r in log.records()] == [1, 2]


def test_run_record_is_typed_and_validated(tmp_path: Path) -> None:
    import dataclasses
    import datetime as dt

    assert ("id", *(f.name for f in dataclasses.fields(RunRecord))) == RECORD_FIELDS
    rec = RunRecord(session="s", decoder="browser", object_id="o", multimask=1, cache_hit=0.0,
                    prompts={"points": ((1, 2, 1),), "box": None}, scores=[0.5, float("inf")], width=3.0,
                    time=dt.datetime(2025, 1, 2, 3, 4, 5, 6000))
    assert rec.multimask is True and rec.cache_hit is False and rec.width == 3 and isinstance(rec.width, int)
    assert rec.prompts == {"points": [[1, 2, 1]], "box": None} and rec.scores == [0.5, None]
    assert rec.time == "2025-01-02T03:04:05.006Z" and rec.extra is None
    assert RunRecord().time.endswith("Z")
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.score = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="decoder"):
        RunRecord(decoder="tensorrt")
    with pytest.raises(TypeError):
        RunRecord(prompts=[[1, 2, 1]])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        RunRecord(cache_hit=2)
    with pytest.raises(TypeError):
        RunRecord.from_mapping({"extra": "note", "clicks": 3})
    loose = RunRecord.from_mapping({"id": 7, "score": 0.5, "clicks": 3, "extra": {"a": 1}})
    assert loose.score == 0.5 and loose.extra == {"a": 1, "clicks": 3}
    assert RunRecord.from_mapping({"extra": {}}).extra is None
    with RunLog(tmp_path) as log:
        rid = log.append(rec)
        got = log.records()[0]
    assert got["id"] == rid and got["decoder"] == "browser" and got["prompts"] == rec.prompts
    assert got["multimask"] == 1 and got["cache_hit"] == 0 and got["time"] == rec.time

