"""The run record: one typed, validated value per segmentation, and the columns derived from it.

:class:`RunRecord` is the single definition of what the run log stores. The SQLite columns,
their types, which of them hold JSON, and ``RECORD_FIELDS`` are all read off its fields and
annotations, so adding a field (plus a ``SCHEMA_VERSION`` bump in ``store.py``) is the whole
schema change: the store adds the missing column to existing logs on open.

Only numbers, hashes, names and prompts are stored -- never pixels. Bytes-like values and
arrays are refused with ``TypeError``; text or JSON big enough to be an image that slipped in
raises ``ValueError``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "COLUMNS",
    "DECODERS",
    "JSON_FIELDS",
    "MAX_JSON_CHARS",
    "MAX_TEXT_CHARS",
    "RECORD_FIELDS",
    "Column",
    "RunRecord",
]

#: Largest accepted text value / JSON document (characters). Prompts are a few hundred
#: characters; anything near these sizes is an image that got in by mistake.
MAX_TEXT_CHARS = 4096
MAX_JSON_CHARS = 65536

#: The values ``RunRecord.decoder`` accepts.
DECODERS = ("torch", "onnx", "browser")


def _now_iso() -> str:
    """Current UTC time as ISO-8601 with milliseconds, e.g. 2025-01-31T12:00:00.123Z."""
    return _iso(_dt.datetime.now(_dt.UTC))


def _iso(when: _dt.datetime) -> str:
    if when.tzinfo is None:  # naive: taken as UTC
        when = when.replace(tzinfo=_dt.UTC)
    return when.astimezone(_dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    """One segmentation (UI click, API call, benchmark, batch item), as the run log stores it.

    Construction validates and normalises every field: 0-d numpy/torch scalars are unwrapped,
    JSON fields are deep-converted to plain JSON (tuples -> lists, non-finite floats -> None),
    non-finite floats -> None, and ``time`` (a ``str`` or ``datetime``) defaults to now, UTC.
    Use :meth:`from_mapping` for a loose dict (unknown keys go into ``extra``).
    """

    time: str = field(default_factory=_now_iso)  # ISO-8601 UTC with milliseconds
    session: str | None = None
    object_id: str | None = None  # one interactive object (clicks per object)
    image_hash: str | None = None
    image_name: str | None = None
    width: int | None = None
    height: int | None = None
    aspect: float | None = None  # width / height
    brightness: float | None = None  # mean luma, 0..255
    contrast: float | None = None  # RMS contrast: std of the luma / 255
    blur: float | None = None  # variance of the Laplacian (low = blurry)
    mean_r: float | None = None  # per-channel means, 0..255
    mean_g: float | None = None
    mean_b: float | None = None
    saturation: float | None = None  # mean HSV saturation, 0..1
    hue_hist: list[float] | None = None  # share of the coloured pixels in 6 hue sectors (R, Y, G, C, B, M)
    model: str | None = None
    device: str | None = None
    precision: str | None = None
    decoder: str | None = field(default=None, metadata={"choices": DECODERS})  # where the mask was decoded
    prompts: dict[str, Any] | None = None  # {"points": [[x, y, label], ...], "box": [x0, y0, x1, y1] | None}
    multimask: bool | None = None
    chosen_index: int | None = None
    scores: list[float | None] | None = None  # non-finite ones are None
    score: float | None = None
    iou: float | None = None  # quality against a reference mask (batch evaluation)
    area: int | None = None
    area_fraction: float | None = None
    perimeter: float | None = None
    mask_empty: bool | None = None  # the chosen mask has no pixel
    mask_full: bool | None = None  # the chosen mask touches all four image borders
    encode_ms: float | None = None
    decode_ms: float | None = None
    cache_hit: bool | None = None
    source: str | None = None
    extra: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        when: Any = self.time
        if when is None or isinstance(when, _dt.datetime):
            object.__setattr__(self, "time", _now_iso() if when is None else _iso(when))
        for col in COLUMNS:
            value = getattr(self, col.name)
            clean = col.convert(value)
            if clean is not value:
                object.__setattr__(self, col.name, clean)

    @classmethod
    def from_mapping(cls, record: Mapping[str, Any]) -> RunRecord:
        """A record from a loose dict: unknown keys are kept in ``extra``, ``id`` is ignored."""
        if not isinstance(record, Mapping):
            raise TypeError(f"run log: a record must be a mapping, got {type(record).__name__}")
        known: dict[str, Any] = {}
        unknown: dict[str, Any] = {}
        for key, value in record.items():
            if not isinstance(key, str):
                raise TypeError(f"run log: record keys must be strings, got {key!r}")
            if key != "id":  # a row read back from records(): the log assigns ids
                (known if key in _FIELD_NAMES else unknown)[key] = value
        extra = known.get("extra")
        if extra is not None and not isinstance(extra, Mapping):
            raise TypeError("run log: 'extra' must be a mapping")
        known["extra"] = {**(extra or {}), **unknown} or None
        return cls(**known)

    def to_row(self) -> tuple[Any, ...]:
        """The values in ``COLUMNS`` order, JSON fields as JSON text (SQLite parameters)."""
        values = (getattr(self, col.name) for col in COLUMNS)
        return tuple(to_json(v) if col.json and v is not None else v for col, v in zip(COLUMNS, values, strict=True))


# --------------------------------------------------------------------------- columns

_SQL_TYPES: dict[type, str] = {str: "TEXT", int: "INTEGER", bool: "INTEGER", float: "REAL", dict: "TEXT", list: "TEXT"}
_ACCEPTS: dict[type, type | tuple[type, ...]] = {
    str: str,
    int: int,
    bool: int,
    float: (int, float),
    dict: dict,
    list: list,
}


@dataclass(frozen=True)
class Column:
    """One field of :class:`RunRecord` as a column: its Python kind and its SQL declaration."""

    name: str
    kind: type  # str, int, bool, float, or dict / list (stored as JSON text)
    nullable: bool
    choices: tuple[str, ...] = ()  # allowed values, from the field's ``metadata["choices"]``

    @classmethod
    def from_field(cls, f: dataclasses.Field[Any], hint: Any) -> Column:
        """The column of dataclass field ``f`` annotated ``hint`` (``X`` or ``X | None``)."""
        args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
        base = [a for a in args if a is not type(None)]
        kind = (typing.get_origin(base[0]) or base[0]) if len(base) == 1 else None
        if kind not in _SQL_TYPES:
            raise TypeError(f"RunRecord.{f.name}: {hint} has no SQLite column type")
        return cls(f.name, kind, len(base) != len(args), tuple(f.metadata.get("choices", ())))

    @property
    def json(self) -> bool:
        return self.kind in (dict, list)

    @property
    def sql(self) -> str:
        """The column definition, e.g. ``time TEXT NOT NULL``."""
        return f"{self.name} {_SQL_TYPES[self.kind]}" + ("" if self.nullable else " NOT NULL")

    def convert(self, value: Any) -> Any:
        """``value`` validated and normalised for this column; raises TypeError/ValueError."""
        if value is None:
            return None
        name, kind = self.name, self.kind
        if self.json:
            value = _to_jsonable(value, name)
            text = to_json(value)
        else:
            value = _scalar(value, name)
            if kind is str and isinstance(value, os.PathLike | int | float) and not isinstance(value, bool):
                value = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
            elif kind in (int, bool) and isinstance(value, float) and value.is_integer():
                value = int(value)
            text = value if isinstance(value, str) else ""
        accepted = isinstance(value, _ACCEPTS[kind]) and (kind is not bool or value in (0, 1))
        if not accepted:
            raise TypeError(f"run log: {name} must be {kind.__name__}, got {type(value).__name__}")
        limit = MAX_JSON_CHARS if self.json else MAX_TEXT_CHARS
        if len(text) > limit:
            raise ValueError(f"run log: {name} is {len(text)} characters (limit {limit}); the run log stores no pixels")
        if self.choices and value not in self.choices:
            raise ValueError(f"run log: {name} must be one of {', '.join(self.choices)}, got {value!r}")
        if kind is float:
            return float(value) if math.isfinite(value) else None
        return kind(value) if kind in (int, bool) else value


#: The columns, in field order (``id INTEGER PRIMARY KEY`` comes before them in the table).
_HINTS = typing.get_type_hints(RunRecord)
COLUMNS: tuple[Column, ...] = tuple(Column.from_field(f, _HINTS[f.name]) for f in dataclasses.fields(RunRecord))
_FIELD_NAMES = frozenset(col.name for col in COLUMNS)

#: The column order used by ``records()``, ``export_jsonl`` and the CSV header.
RECORD_FIELDS: tuple[str, ...] = ("id", *(col.name for col in COLUMNS))

#: Fields stored as JSON text and decoded on read.
JSON_FIELDS = frozenset(col.name for col in COLUMNS if col.json)


# --------------------------------------------------------------------------- values


def _scalar(value: Any, where: str) -> Any:
    """Unwrap 0-d numpy/torch scalars; refuse bytes-like values and arrays (no pixels)."""
    if isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"run log: {where} is binary ({type(value).__name__}); the run log stores no pixels or blobs")
    ndim = getattr(value, "ndim", None)
    if ndim == 0 and hasattr(value, "item"):
        return value.item()
    if (isinstance(ndim, int) and ndim > 0) or (
        ndim is None and (hasattr(value, "__array_interface__") or hasattr(value, "__array__"))
    ):
        raise TypeError(
            f"run log: {where} is an array ({type(value).__name__}); the run log "
            "stores no pixels -- pass numbers or a short list (.tolist())"
        )
    return value


def _to_jsonable(value: Any, where: str) -> Any:
    """Deep-convert to plain JSON: tuples -> lists, scalars unwrapped, non-finite floats -> None."""
    value = _scalar(value, where)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str | int | float | bool):
                raise TypeError(f"run log: {where} has a non-string key {k!r}")
            out[str(k)] = _to_jsonable(v, f"{where}[{k!r}]")
        return out
    if isinstance(value, list | tuple):
        return [_to_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(
        f"run log: {where} has a value of type {type(value).__name__}, "
        "which is not JSON (use numbers, strings, lists, dicts)"
    )


def to_json(value: Any) -> str:
    """Compact JSON text (UTF-8 kept, NaN refused) as stored in JSON columns and JSONL lines."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
