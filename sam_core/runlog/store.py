"""The run log: one SQLite row per segmentation, safe for threads, processes and crashes.

Every segmentation (UI click, API call, benchmark) appends one record to
``<log_dir>/runs.sqlite``. Only numbers, hashes, names and prompts are stored -- never
pixels: bytes-like values and arrays are refused with ``TypeError`` so an image cannot be
logged by accident.

Durability and concurrency design:

* ``journal_mode=WAL``: readers never block the writer and the writer never blocks
  readers; a commit is an append to the ``-wal`` file, so a process killed mid-write
  leaves at most an uncommitted tail that SQLite discards on the next open.
* ``synchronous=NORMAL`` (not FULL): in WAL mode NORMAL skips only the fsync on each
  commit; the committed frames have already been handed to the OS with ``write()``
  before ``COMMIT`` returns, so they live in the kernel page cache and survive the
  process being SIGKILLed, segfaulting or OOM-killed. Only an OS crash or power loss
  can lose the last few transactions -- and even then the database stays consistent
  (WAL checksums), it never corrupts. FULL would buy durability against power loss at
  the price of one fsync per segmentation, which on the shared NFS/Lustre home
  directories of a SLURM cluster costs tens of milliseconds per click. For a
  monitoring log that trade is not worth it.
* ``busy_timeout``: concurrent writers (server threads, several server processes on the
  same host) wait for the write lock instead of failing with "database is locked".
  Each record is one ``INSERT`` in autocommit mode, i.e. one short transaction that asks
  for the write lock directly (no read-to-write upgrade, so no SQLITE_BUSY_SNAPSHOT).
* One connection per thread (``threading.local``), re-opened after ``fork()``; ``close()``
  closes every thread's connection.

Caveat: WAL needs shared memory between the processes, so all writers must run on the
same host (SQLite's rule; don't point several cluster nodes at one file on NFS).
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import logging
import math
import os
import sqlite3
import sys
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

__all__ = ["RECORD_FIELDS", "SCHEMA_VERSION", "RunLog", "summarize"]

log = logging.getLogger(__name__)

#: Schema version stored in ``PRAGMA user_version``; bump it and add a ``_MIGRATIONS``
#: entry to add a column.
SCHEMA_VERSION = 1

#: Column name -> storage kind. ``json`` columns hold JSON text, decoded on read.
_COLUMNS: dict[str, str] = {
    "id": "id",
    "time": "text",
    "session": "text",
    "image_hash": "text",
    "image_name": "text",
    "width": "int",
    "height": "int",
    "brightness": "real",
    "blur": "real",
    "model": "text",
    "device": "text",
    "precision": "text",
    "prompts": "json",
    "multimask": "int",
    "chosen_index": "int",
    "scores": "json",
    "score": "real",
    "area": "int",
    "area_fraction": "real",
    "perimeter": "real",
    "encode_ms": "real",
    "decode_ms": "real",
    "cache_hit": "int",
    "source": "text",
    "extra": "json",
}

#: The column order used by ``records()``, ``export_jsonl`` and the CSV header.
RECORD_FIELDS: tuple[str, ...] = tuple(_COLUMNS)

_JSON_COLUMNS = frozenset(k for k, v in _COLUMNS.items() if v == "json")
_WRITABLE = tuple(k for k in RECORD_FIELDS if k != "id")
_SQL_TYPE = {"text": "TEXT", "int": "INTEGER", "real": "REAL", "json": "TEXT"}

#: Largest accepted text value / JSON document (characters). Prompts are a few hundred
#: characters; anything near these sizes is an image that got in by mistake.
MAX_TEXT_CHARS = 4096
MAX_JSON_CHARS = 65536

#: How long a writer waits for the lock before giving up (seconds).
BUSY_TIMEOUT_S = 30.0


def _create_v1() -> tuple[str, ...]:
    cols = ["id INTEGER PRIMARY KEY AUTOINCREMENT", "time TEXT NOT NULL"]
    cols += [f"{k} {_SQL_TYPE[v]}" for k, v in _COLUMNS.items() if k not in ("id", "time")]
    return (f"CREATE TABLE IF NOT EXISTS runs ({', '.join(cols)})",)


#: target version -> statements that bring the previous version up to it. Version 1
#: creates the table. Example for a later column:
#: ``2: ("ALTER TABLE runs ADD COLUMN mask_rle_hash TEXT",)`` (and add it to _COLUMNS).
_MIGRATIONS: dict[int, tuple[str, ...]] = {1: _create_v1()}


class _Connection(sqlite3.Connection):
    """A connection that can be weakly referenced (the C type cannot) and knows its pid."""

    owner_pid: int = -1


#: Connections inherited through fork(): kept alive forever so that they are never closed
#: (or used) in the child -- SQLite handles must not cross fork().
_ABANDONED: list[_Connection] = []


# --------------------------------------------------------------------------- values


def _refuse_binary(value: Any, where: str) -> None:
    """Raise TypeError for bytes-like values and arrays (pixels must never be logged)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"run log: {where} is binary ({type(value).__name__}); "
                        "the run log stores no pixels or blobs")
    ndim = getattr(value, "ndim", None)
    if (isinstance(ndim, int) and ndim > 0) or (
            ndim is None and (hasattr(value, "__array_interface__") or hasattr(value, "__array__"))):
        raise TypeError(f"run log: {where} is an array ({type(value).__name__}); the run log "
                        "stores no pixels -- pass numbers or a short list (.tolist())")


def _scalar(value: Any, where: str) -> Any:
    """Unwrap 0-d numpy/torch scalars to Python numbers; refuse blobs and arrays."""
    _refuse_binary(value, where)
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        return value.item()
    return value


def _to_jsonable(value: Any, where: str) -> Any:
    """Deep-convert to plain JSON types: tuples -> lists, numpy scalars -> numbers,
    non-finite floats -> None. Refuses blobs, arrays and non-JSON objects."""
    value = _scalar(value, where)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, (str, int, float, bool)):
                raise TypeError(f"run log: {where} has a non-string key {k!r}")
            out[str(k)] = _to_jsonable(v, f"{where}[{k!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"run log: {where} has a value of type {type(value).__name__}, "
                    "which is not JSON (use numbers, strings, lists, dicts)")


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _coerce(name: str, kind: str, value: Any) -> Any:
    """Convert one column value to what SQLite stores; raise TypeError/ValueError."""
    if value is None:
        return None
    if kind == "json":
        text = _dumps(_to_jsonable(value, name))
        if len(text) > MAX_JSON_CHARS:
            raise ValueError(f"run log: {name} is {len(text)} characters of JSON "
                             f"(limit {MAX_JSON_CHARS}); the run log stores no pixels")
        return text
    value = _scalar(value, name)
    if kind == "text":
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise TypeError(f"run log: {name} must be text, got {type(value).__name__}")
        if len(value) > MAX_TEXT_CHARS:
            raise ValueError(f"run log: {name} is {len(value)} characters "
                             f"(limit {MAX_TEXT_CHARS})")
        return value
    if kind == "int":
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if not isinstance(value, int):
            raise TypeError(f"run log: {name} must be an integer, got {type(value).__name__}")
        return int(value)
    if kind == "real":
        if not isinstance(value, (int, float)):
            raise TypeError(f"run log: {name} must be a number, got {type(value).__name__}")
        value = float(value)
        return value if math.isfinite(value) else None
    raise AssertionError(kind)


def _now_iso() -> str:
    """Current UTC time as ISO-8601 with milliseconds, e.g. 2025-01-31T12:00:00.123Z."""
    now = _dt.datetime.now(_dt.timezone.utc)
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _time_value(value: Any) -> str:
    if value is None:
        return _now_iso()
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:  # naive: taken as UTC
            value = value.replace(tzinfo=_dt.timezone.utc)
        value = value.astimezone(_dt.timezone.utc)
        return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return _coerce("time", "text", value)


def _row_params(record: Mapping[str, Any]) -> tuple[Any, ...]:
    """Validate a record and return the INSERT parameters in ``_WRITABLE`` order."""
    if not isinstance(record, Mapping):
        raise TypeError(f"run log: a record must be a mapping, got {type(record).__name__}")
    extra_in = record.get("extra")
    if extra_in is not None and not isinstance(extra_in, Mapping):
        raise TypeError("run log: 'extra' must be a mapping")
    extra: dict[str, Any] = dict(extra_in or {})
    for key, value in record.items():
        if not isinstance(key, str):
            raise TypeError(f"run log: record keys must be strings, got {key!r}")
        if key not in _COLUMNS:  # unknown keys are kept, in the extra JSON column
            extra[key] = value
    params = []
    for name in _WRITABLE:
        if name == "time":
            params.append(_time_value(record.get("time")))
        elif name == "extra":
            params.append(_coerce("extra", "json", extra) if extra else None)
        else:
            params.append(_coerce(name, _COLUMNS[name], record.get(name)))
    return tuple(params)


def _decode_row(row: tuple[Any, ...]) -> dict[str, Any]:
    out = dict(zip(RECORD_FIELDS, row))
    for name in _JSON_COLUMNS:
        if out[name] is not None:
            out[name] = json.loads(out[name])
    return out


# --------------------------------------------------------------------------- the log


class RunLog:
    """Append-only SQLite run log in ``log_dir`` (one record per segmentation).

    Safe to share one instance between the threads of a web server, and to open the same
    file from several processes on one host. Usable as a context manager.
    """

    def __init__(self, log_dir: str | os.PathLike, *, filename: str = "runs.sqlite") -> None:
        """Create ``log_dir`` and the table if needed, and bring the schema up to date."""
        self._dir = Path(log_dir)
        self._dir.mkdir(parents=True, exist_ok=True)
        self._path = self._dir / filename
        self._local = threading.local()
        self._conns: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._closed = False
        self._insert_sql = (f"INSERT INTO runs ({', '.join(_WRITABLE)}) "
                            f"VALUES ({', '.join('?' * len(_WRITABLE))})")
        self._select_sql = f"SELECT {', '.join(RECORD_FIELDS)} FROM runs"
        self._migrate(self._conn())

    @property
    def path(self) -> Path:
        """The SQLite file."""
        return self._path

    def __repr__(self) -> str:
        return f"RunLog({str(self._path)!r})"

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connections

    def _open(self) -> _Connection:
        conn = sqlite3.connect(self._path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                               check_same_thread=False, factory=_Connection)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning("run log %s: WAL not available (journal_mode=%s); "
                            "falling back to synchronous=FULL", self._path, mode)
                conn.execute("PRAGMA synchronous = FULL")
            else:
                conn.execute("PRAGMA synchronous = NORMAL")  # see the module docstring
        except BaseException:
            conn.close()
            raise
        conn.owner_pid = os.getpid()
        return conn

    def _conn(self) -> _Connection:
        """This thread's connection (a fresh one after fork())."""
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        local = self._local
        pid = os.getpid()
        conn = getattr(local, "conn", None)
        if conn is None or conn.owner_pid != pid:
            if conn is not None:  # inherited through fork(): abandon, never close
                _ABANDONED.append(conn)
            conn = self._open()
            local.conn = conn
            with self._lock:
                self._conns.add(conn)
        return conn

    def _migrate(self, conn: _Connection) -> None:
        """Apply pending migrations in one IMMEDIATE transaction (safe if racing)."""
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version >= SCHEMA_VERSION:
            if version > SCHEMA_VERSION:
                log.warning("run log %s has schema %d, newer than this code's %d; "
                            "unknown columns are left empty", self._path, version,
                            SCHEMA_VERSION)
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for stmt in _MIGRATIONS[target]:
                    conn.execute(stmt)
                conn.execute(f"PRAGMA user_version = {target}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- writing

    def append(self, record: Mapping[str, Any]) -> int:
        """Append one record (one transaction) and return its row id.

        ``time`` is filled with the current UTC time when absent; unknown keys go into
        the ``extra`` JSON column; lists/dicts are stored as JSON. Bytes-like values and
        arrays raise TypeError; oversized text/JSON raises ValueError.
        """
        params = _row_params(record)
        cur = self._conn().execute(self._insert_sql, params)
        return int(cur.lastrowid)

    # -- reading

    def records(self, limit: int | None = None, *, newest_first: bool = False) -> list[dict]:
        """Records as dicts keyed by RECORD_FIELDS, JSON columns decoded.

        Oldest first by default; ``limit`` keeps the first ``limit`` in that order (so
        ``records(20, newest_first=True)`` is the 20 most recent runs).
        """
        return list(self._iter(limit, newest_first=newest_first))

    def _iter(self, limit: int | None = None, *, newest_first: bool = False,
              decode: bool = True) -> Iterator[Any]:
        sql = self._select_sql + (" ORDER BY id DESC" if newest_first else " ORDER BY id")
        args: tuple[Any, ...] = ()
        if limit is not None:
            if limit < 0:
                raise ValueError("limit must be >= 0")
            sql += " LIMIT ?"
            args = (int(limit),)
        # One SELECT is one read transaction: a consistent snapshot even while others write.
        for row in self._conn().execute(sql, args):
            yield _decode_row(row) if decode else row

    def count(self) -> int:
        """Number of records."""
        return int(self._conn().execute("SELECT count(*) FROM runs").fetchone()[0])

    # -- exports

    def export_jsonl(self, dest: str | os.PathLike) -> Path:
        """Write every record as one JSON object per line (atomically); return the path."""
        def write(fh: TextIO) -> None:
            for rec in self._iter():
                fh.write(_dumps(rec) + "\n")
        return _atomic_write(Path(dest), write)

    def export_csv(self, dest: str | os.PathLike) -> Path:
        """Write every record as CSV with header RECORD_FIELDS (atomically); return the path.

        JSON columns are written as their JSON text, NULL as an empty cell. An
        ``image_name`` (it is the uploaded file's name, i.e. user input) that a spreadsheet
        would run as a formula (leading ``= + - @`` tab or CR) gets a leading apostrophe;
        the JSONL export is the lossless one.
        """
        name_idx = RECORD_FIELDS.index("image_name")

        def write(fh: TextIO) -> None:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(RECORD_FIELDS)
            for row in self._iter(decode=False):
                row = ["" if v is None else v for v in row]
                v = row[name_idx]
                if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r"):
                    row[name_idx] = "'" + v
                w.writerow(row)
        return _atomic_write(Path(dest), write)

    # -- closing

    def close(self) -> None:
        """Close every thread's connection; later calls raise RuntimeError. Idempotent."""
        with self._lock:
            self._closed = True
            conns = list(self._conns)
            self._conns.clear()
        pid = os.getpid()
        for conn in conns:
            if conn.owner_pid != pid:  # the parent's, inherited through fork()
                _ABANDONED.append(conn)
                continue
            try:
                conn.close()
            except sqlite3.Error:  # pragma: no cover - closing is best effort
                log.debug("run log: closing a connection failed", exc_info=True)
        self._local = threading.local()


def _atomic_write(dest: Path, write: Callable[[TextIO], None]) -> Path:
    """Write via a temp file in dest's directory, fsync, then os.replace onto dest."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return dest


# --------------------------------------------------------------------------- summary


def _percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (an observed value; defined for one sample)."""
    if not sorted_values:
        return None
    rank = math.ceil(p / 100.0 * len(sorted_values))
    return sorted_values[min(max(rank, 1), len(sorted_values)) - 1]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _num(value: Any) -> float | None:
    """A finite float from a number or numeric text (CSV rows), else None."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _flag(value: Any) -> bool | None:
    """0/1, bool or their text ("0", "1", "true", "") -> bool, None when absent."""
    if isinstance(value, str):
        value = value.strip().lower()
        if value == "":
            return None
        return value not in ("0", "false", "no")
    return None if value is None else bool(value)


def summarize(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Monitoring signals over run records (as returned by ``RunLog.records()``).

    Returns ``count``; ``decode_ms_p50/p95/p99`` (all runs) and ``encode_ms_p50/p95/p99``
    (cache misses only: a hit costs no encode); ``mean_score``; ``mean_area_fraction``;
    ``cache_hit_rate`` (over runs that report it); ``mean_points`` (points per run, over
    runs with prompts); ``box_rate`` (fraction of those with a box). Percentiles are
    nearest-rank. Missing values are skipped; a statistic with no data is None. Rows
    read back from the CSV export (all text) work too.
    """
    count = 0
    decode: list[float] = []
    encode: list[float] = []
    scores: list[float] = []
    fractions: list[float] = []
    hits: list[int] = []
    points: list[int] = []
    boxes: list[int] = []
    for rec in records:
        count += 1
        if (v := _num(rec.get("decode_ms"))) is not None:
            decode.append(v)
        hit = _flag(rec.get("cache_hit"))
        if hit is not None:
            hits.append(1 if hit else 0)
        if not hit and (v := _num(rec.get("encode_ms"))) is not None:
            encode.append(v)
        if (v := _num(rec.get("score"))) is not None:
            scores.append(v)
        if (v := _num(rec.get("area_fraction"))) is not None:
            fractions.append(v)
        prompts = rec.get("prompts")
        if isinstance(prompts, str):  # e.g. rows read back from the CSV export
            try:
                prompts = json.loads(prompts)
            except ValueError:
                prompts = None
        if isinstance(prompts, Mapping):
            points.append(len(prompts.get("points") or ()))
            boxes.append(1 if prompts.get("box") else 0)
    decode.sort()
    encode.sort()
    out: dict[str, Any] = {"count": count}
    for name, values in (("decode_ms", decode), ("encode_ms", encode)):
        for p in (50, 95, 99):
            out[f"{name}_p{p}"] = _percentile(values, p)
    out["mean_score"] = _mean(scores)
    out["mean_area_fraction"] = _mean(fractions)
    out["cache_hit_rate"] = _mean(hits)
    out["mean_points"] = _mean(points)
    out["box_rate"] = _mean(boxes)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m sam_core.runlog [--dir outputs/logs] [--csv F] [--jsonl F]``: summary JSON."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m sam_core.runlog",
                                 description="Summarise the run log (latency percentiles, cache hit rate, "
                                 "scores, area fractions, clicks per run) and optionally export it.")
    ap.add_argument("--dir", default="outputs/logs", help="the run-log folder (default outputs/logs)")
    ap.add_argument("--csv", help="also write all records to this CSV file")
    ap.add_argument("--jsonl", help="also write all records to this JSON-lines file")
    args = ap.parse_args(argv)
    if not (Path(args.dir) / "runs.sqlite").exists():
        print(f"error: no run log in {args.dir}", file=sys.stderr)
        return 2
    with RunLog(args.dir) as runlog:
        if args.csv:
            runlog.export_csv(args.csv)
        if args.jsonl:
            runlog.export_jsonl(args.jsonl)
        print(json.dumps(summarize(runlog.records()), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
