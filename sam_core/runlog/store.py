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
import io
import json
import logging
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from sam_core.core.files import write_atomic
from sam_core.runlog.schema import COLUMNS, JSON_FIELDS, RECORD_FIELDS, RunRecord, to_json

__all__ = ["RECORD_FIELDS", "SCHEMA_VERSION", "RunLog"]

log = logging.getLogger(__name__)

#: Schema version stored in ``PRAGMA user_version``. Version 1 had the columns up to
#: ``extra``; version 2 added ``object_id``, ``contrast``, ``decoder`` and ``iou``; version 3
#: the monitoring signals ``aspect``, ``mean_r/g/b``, ``saturation``, ``hue_hist``,
#: ``mask_empty`` and ``mask_full``. To add a column, add a field to ``RunRecord`` and bump
#: this: opening an older log adds every missing column (``_migrate``).
SCHEMA_VERSION = 3

#: How long a writer waits for the lock before giving up (seconds).
BUSY_TIMEOUT_S = 30.0

_CREATE_SQL = (
    f"CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY AUTOINCREMENT, {', '.join(col.sql for col in COLUMNS)})"
)
_INSERT_SQL = f"INSERT INTO runs ({', '.join(col.name for col in COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
_SELECT_SQL = f"SELECT {', '.join(RECORD_FIELDS)} FROM runs"


class _Connection(sqlite3.Connection):
    """A connection that can be weakly referenced (the C type cannot) and knows its pid."""

    owner_pid: int = -1


#: Connections inherited through fork(): kept alive forever so that they are never closed
#: (or used) in the child -- SQLite handles must not cross fork().
_ABANDONED: list[_Connection] = []


def _decode_row(row: tuple[Any, ...]) -> dict[str, Any]:
    out = dict(zip(RECORD_FIELDS, row, strict=True))
    for name in JSON_FIELDS:
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
        conn = sqlite3.connect(
            self._path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False, factory=_Connection
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning(
                    "run log %s: WAL not available (journal_mode=%s); falling back to synchronous=FULL",
                    self._path,
                    mode,
                )
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
        """Create the table, or add the columns an older log lacks, in one IMMEDIATE transaction.

        Safe if several processes race: the first to take the write lock migrates, the
        others then see the new ``user_version``. Old rows keep their values; the added
        columns are NULL in them.
        """
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version >= SCHEMA_VERSION:
            if version > SCHEMA_VERSION:
                log.warning(
                    "run log %s has schema %d, newer than this code's %d; unknown columns are left empty",
                    self._path,
                    version,
                    SCHEMA_VERSION,
                )
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                conn.execute(_CREATE_SQL)
                have = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
                for col in COLUMNS:
                    if col.name not in have:
                        conn.execute(f"ALTER TABLE runs ADD COLUMN {col.sql}")
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- writing

    def append(self, record: RunRecord | Mapping[str, Any]) -> int:
        """Append one record (one transaction) and return its row id.

        A mapping goes through ``RunRecord.from_mapping``: ``time`` is filled with the
        current UTC time when absent and unknown keys go into the ``extra`` JSON column.
        Bytes-like values and arrays raise TypeError; oversized text/JSON raises ValueError.
        """
        if not isinstance(record, RunRecord):
            record = RunRecord.from_mapping(record)
        cur = self._conn().execute(_INSERT_SQL, record.to_row())
        return int(cur.lastrowid)  # type: ignore[arg-type]  # set after every INSERT

    # -- reading

    def records(self, limit: int | None = None, *, newest_first: bool = False) -> list[dict]:
        """Records as dicts keyed by RECORD_FIELDS, JSON columns decoded.

        Oldest first by default; ``limit`` keeps the first ``limit`` in that order (so
        ``records(20, newest_first=True)`` is the 20 most recent runs).
        """
        return list(self._iter(limit, newest_first=newest_first))

    def _iter(self, limit: int | None = None, *, newest_first: bool = False, decode: bool = True) -> Iterator[Any]:
        sql = _SELECT_SQL + (" ORDER BY id DESC" if newest_first else " ORDER BY id")
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
                fh.write(to_json(rec) + "\n")

        return _write_text(dest, write)

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

        return _write_text(dest, write)

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


def _write_text(dest: str | os.PathLike[str], write: Callable[[TextIO], None]) -> Path:
    """UTF-8 text through ``write_atomic`` (temp file, fsync, rename): never a partial export."""

    def write_binary(fh: BinaryIO) -> None:
        text = io.TextIOWrapper(fh, encoding="utf-8", newline="")
        try:
            write(text)
            text.flush()
        finally:
            text.detach()  # write_atomic closes the file

    return write_atomic(dest, write_binary, fsync=True)
