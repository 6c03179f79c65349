"""The run log as columns: one numpy array per monitored field, read straight from SQLite.

Reading 100,000 records takes about half a second on a busy 2-core machine
(``benchmarks/monitor.py``): only the monitored scalar columns are selected (no JSON decoding),
the numbers in one query that becomes one 2-D float array, the texts in another.
:class:`FrameCache` (the Monitor tab, ``/metrics``) then reads only the rows added since its
last read. Times are seconds since the epoch (UTC), computed by SQLite from the ISO-8601 text.

Old logs open as they are: the reader asks the table which columns it has and leaves the
missing ones NaN/None, without migrating (writing to) the file.
"""

from __future__ import annotations

import csv
import io
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from sam_core.core.errors import UserError
from sam_core.core.files import write_atomic
from sam_core.runlog.schema import RECORD_FIELDS, RunRecord

__all__ = [
    "NUMERIC",
    "TEXT",
    "WINDOWS",
    "Frame",
    "FrameCache",
    "LogNotFoundError",
    "export_window_csv",
    "load_frame",
    "log_path",
]

#: Numeric fields read as float64 arrays (NaN where absent); booleans as 0.0 / 1.0. Only what the
#: signals use: every column read costs ~5 % of the load time.
NUMERIC: tuple[str, ...] = (
    "width",
    "height",
    "aspect",
    "brightness",
    "contrast",
    "blur",
    "mean_r",
    "mean_b",
    "saturation",
    "score",
    "iou",
    "area_fraction",
    "encode_ms",
    "decode_ms",
    "cache_hit",
    "mask_empty",
    "mask_full",
)
#: Text fields read as object arrays (None where absent).
TEXT: tuple[str, ...] = ("source", "model", "object_id", "image_hash")

#: The time windows of the dashboard and ``check``: name -> seconds (None: the whole log).
WINDOWS: dict[str, float | None] = {"hour": 3600.0, "day": 86400.0, "week": 7 * 86400.0, "all": None}

#: Columns the Monitor tab's CSV leaves out: they belong to the visitors (file names, prompts).
PRIVATE_FIELDS = ("image_name", "prompts", "extra")

_EPOCH_SQL = "(julianday(time) - 2440587.5) * 86400.0"


class LogNotFoundError(UserError):
    """There is no run log where one was expected."""


def log_path(log_dir: str | os.PathLike[str]) -> Path:
    """``<log_dir>/runs.sqlite``; raises :class:`LogNotFoundError` when it does not exist."""
    path = Path(log_dir)
    if path.suffix != ".sqlite":
        path = path / "runs.sqlite"
    if not path.is_file():
        raise LogNotFoundError(f"no run log at {path} (the app writes it to <outputs>/logs/runs.sqlite)")
    return path


@dataclass(frozen=True)
class Frame:
    """Run records as columns, in log order (``id`` ascending).

    ``id``: (n,) int64 row ids; ``t``: (n,) float64 seconds since the epoch (NaN when the time
    cannot be parsed); ``num[name]``: (n,) float64 for each of :data:`NUMERIC`; ``text[name]``:
    (n,) object for each of :data:`TEXT`.
    """

    id: np.ndarray
    t: np.ndarray
    num: dict[str, np.ndarray]
    text: dict[str, np.ndarray]

    def __len__(self) -> int:
        return int(self.id.shape[0])

    def take(self, index: np.ndarray | slice) -> Frame:
        """The rows selected by a boolean mask, an index array or a slice, in that order."""
        return Frame(
            self.id[index],
            self.t[index],
            {k: v[index] for k, v in self.num.items()},
            {k: v[index] for k, v in self.text.items()},
        )

    def since(self, start: float | None, end: float | None = None) -> Frame:
        """Rows with ``start <= t < end`` (None: unbounded; rows without a time only when both are None)."""
        if start is None and end is None:
            return self
        keep = np.ones(len(self), bool)
        with np.errstate(invalid="ignore"):
            if start is not None:
                keep &= self.t >= start
            if end is not None:
                keep &= self.t < end
        return self.take(keep)

    def window(self, name: str, now: float | None = None) -> Frame:
        """The rows of window ``name`` (a key of :data:`WINDOWS`) ending at ``now`` (default: now)."""
        if name not in WINDOWS:
            raise UserError(f"unknown window {name!r}; use one of {', '.join(WINDOWS)}")
        span = WINDOWS[name]
        if span is None:
            return self
        now = time.time() if now is None else now
        return self.since(now - span, None)

    def concat(self, other: Frame) -> Frame:
        """This frame's rows followed by ``other``'s."""
        return Frame(
            np.concatenate([self.id, other.id]),
            np.concatenate([self.t, other.t]),
            {k: np.concatenate([v, other.num[k]]) for k, v in self.num.items()},
            {k: np.concatenate([v, other.text[k]]) for k, v in self.text.items()},
        )

    @property
    def time_range(self) -> tuple[float, float] | None:
        """(first, last) time in the frame, or None when no row has a time."""
        finite = self.t[np.isfinite(self.t)]
        return None if finite.size == 0 else (float(finite.min()), float(finite.max()))

    @classmethod
    def empty(cls) -> Frame:
        return cls.from_columns(np.zeros(0, np.int64), np.zeros(0), {}, {})

    @classmethod
    def from_columns(
        cls, ids: np.ndarray, t: np.ndarray, num: Mapping[str, np.ndarray], text: Mapping[str, np.ndarray]
    ) -> Frame:
        """A frame from partial columns: missing numeric ones are NaN, missing text ones None."""
        n = int(ids.shape[0])
        full_num = {k: np.asarray(num[k], np.float64) if k in num else np.full(n, np.nan) for k in NUMERIC}
        full_text = {k: np.asarray(text[k], object) if k in text else np.full(n, None, object) for k in TEXT}
        return cls(np.asarray(ids, np.int64), np.asarray(t, np.float64), full_num, full_text)

    @classmethod
    def from_records(cls, records: Iterable[RunRecord | Mapping[str, Any]]) -> Frame:
        """A frame from records (``RunRecord`` or dicts as ``RunLog.records()`` returns); for tests."""
        rows = [r if isinstance(r, RunRecord) else RunRecord.from_mapping(r) for r in records]
        n = len(rows)
        t = np.array([_iso_to_epoch(r.time) for r in rows], np.float64)
        num = {k: np.array([_float(getattr(r, k)) for r in rows], np.float64) for k in NUMERIC}
        text = {k: np.array([getattr(r, k) for r in rows] if n else [], object) for k in TEXT}
        return cls.from_columns(np.arange(1, n + 1), t, num, text)


def _float(value: Any) -> float:
    return np.nan if value is None else float(value)


def _iso_to_epoch(text: str) -> float:
    import datetime as dt

    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (TypeError, ValueError):
        return float("nan")


def _connect(path: Path) -> sqlite3.Connection:
    """A read-only connection (never migrates or writes; works on a WAL log being written)."""
    uri = path.resolve().as_uri() + "?mode=ro"
    try:
        return sqlite3.connect(uri, uri=True, timeout=30)
    except sqlite3.OperationalError:  # e.g. a WAL log in a read-only folder without its -shm file
        return sqlite3.connect(path, timeout=30)


def _table_columns(conn: sqlite3.Connection) -> set[str]:
    return {row[1] for row in conn.execute("PRAGMA table_info(runs)")}


def _read(path: Path, since: float | None = None, after_id: int = 0) -> tuple[Frame, frozenset[str]]:
    """Rows with ``id > after_id`` (and ``time >= since``) and the table's columns."""
    try:
        conn = _connect(path)
        try:
            have = frozenset(_table_columns(conn))
            if not have:
                return Frame.empty(), have
            num_cols = [k for k in NUMERIC if k in have]
            text_cols = [k for k in TEXT if k in have]
            where = "WHERE id > ?"
            args: list[Any] = [int(after_id)]
            if since is not None:
                where += f" AND {_EPOCH_SQL} >= ?"
                args.append(float(since))
            # one read transaction: both queries see the same rows while others append
            conn.execute("BEGIN")
            nums = conn.execute(
                f"SELECT id, {_EPOCH_SQL}, {', '.join(num_cols)} FROM runs {where} ORDER BY id", args
            ).fetchall()
            texts = (
                conn.execute(f"SELECT {', '.join(text_cols)} FROM runs {where} ORDER BY id", args).fetchall()
                if text_cols
                else []
            )
            conn.execute("COMMIT")
        finally:
            conn.close()
    except sqlite3.DatabaseError as err:
        raise UserError(f"{path.name} in {path.parent} is not a readable run log ({err})") from err
    if not nums:
        return Frame.empty(), have
    table = _float_table(nums, 2 + len(num_cols))
    num = {k: table[:, 2 + i] for i, k in enumerate(num_cols)}
    text_table = np.array(texts, dtype=object).reshape(len(nums), len(text_cols))
    text = {k: text_table[:, i] for i, k in enumerate(text_cols)}
    return Frame.from_columns(table[:, 0].astype(np.int64), table[:, 1], num, text), have


def _float_table(rows: list[tuple[Any, ...]], width: int) -> np.ndarray:
    """(n, width) float64 from SQLite rows, None -> NaN; a stray text value (SQLite does not
    enforce column types) becomes NaN too."""
    try:
        return np.array(rows, dtype=np.float64).reshape(len(rows), width)
    except (TypeError, ValueError):
        out = np.full((len(rows), width), np.nan)
        for i, row in enumerate(rows):
            for j, v in enumerate(row):
                if isinstance(v, int | float):
                    out[i, j] = v
        return out


def load_frame(log_dir: str | os.PathLike[str], *, since: float | None = None) -> Frame:
    """Read the run log in ``log_dir`` (or the ``.sqlite`` file itself) as a :class:`Frame`.

    ``since``: only rows from that time on (seconds since the epoch). Columns an old log lacks
    are NaN / None. Raises :class:`LogNotFoundError` when there is no log.
    """
    return _read(log_path(log_dir), since)[0]


class FrameCache:
    """The whole log as a Frame, kept between reads: each :meth:`load` reads only the new rows.

    A log that was replaced or migrated meanwhile (fewer rows, other columns) is read again in full.
    Thread-safe (one read at a time).
    """

    def __init__(self, log_dir: str | os.PathLike[str]) -> None:
        self.log_dir = Path(log_dir)
        self._frame: Frame | None = None
        self._columns: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def load(self) -> Frame:
        """The current log (raises :class:`LogNotFoundError` when there is none)."""
        path = log_path(self.log_dir)
        with self._lock:
            old = self._frame
            if old is None:
                merged, columns = _read(path)
            else:
                after = int(old.id[-1]) if len(old) else 0
                new, columns = _read(path, None, after)
                if columns != self._columns or (after and not self._still_there(path, after)):
                    merged, columns = _read(path)  # replaced or migrated meanwhile: start again
                else:
                    merged = old.concat(new) if len(new) else old
            self._frame, self._columns = merged, columns
            return merged

    @staticmethod
    def _still_there(path: Path, last_id: int) -> bool:
        conn = _connect(path)
        try:
            return conn.execute("SELECT 1 FROM runs WHERE id = ?", (last_id,)).fetchone() is not None
        finally:
            conn.close()


def export_window_csv(
    log_dir: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    start: float | None = None,
    end: float | None = None,
    *,
    private: bool = False,
) -> Path:
    """Write the records with ``start <= time < end`` as CSV (atomically); return the path.

    The columns are the run log's, in ``RECORD_FIELDS`` order (those an old log lacks are
    empty), JSON fields as JSON text. ``private=False`` (the Monitor tab) leaves out
    :data:`PRIVATE_FIELDS`, which belong to the visitors. Cells a spreadsheet would run as a
    formula get a leading apostrophe.
    """
    path = log_path(log_dir)
    fields = [f for f in RECORD_FIELDS if private or f not in PRIVATE_FIELDS]
    conn = _connect(path)
    try:
        have = _table_columns(conn)
        select = ", ".join(f if f in have else "NULL" for f in fields)
        where, args = [], []
        if start is not None:
            where.append(f"{_EPOCH_SQL} >= ?")
            args.append(float(start))
        if end is not None:
            where.append(f"{_EPOCH_SQL} < ?")
            args.append(float(end))
        sql = f"SELECT {select} FROM runs" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY id"
        rows = conn.execute(sql, args).fetchall()
    finally:
        conn.close()

    def write(fh: BinaryIO) -> None:
        text = io.TextIOWrapper(fh, encoding="utf-8", newline="")
        try:
            w = csv.writer(text, lineterminator="\n")
            w.writerow(fields)
            for row in rows:
                w.writerow([_csv_cell(v) for v in row])
            text.flush()
        finally:
            text.detach()

    return write_atomic(dest, write)


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
