"""Annotation bundles: the zip a user saves from the annotation tool and opens again (replay).

A bundle is UNTRUSTED input (people share them), so :func:`read_bundle` reads it defensively:

* The container is a zip holding exactly ``bundle.json`` (required, the manifest) and
  ``tensors.safetensors`` (optional, named float32 tensors such as SAM's ``(1, 256, 256)``
  low-resolution mask inputs). Any other entry, an unsafe name (``..``, absolute path,
  drive letter, backslash, NUL), a duplicate, a symbolic link or an encrypted entry is refused.
* Nothing is extracted to disk. The file size is checked before the zip is opened, the zip
  directory's size before it is parsed, and every entry is inflated here in chunks with a
  running cap and a running compression-ratio check on the bytes actually read, never
  trusting the sizes the zip headers declare (a 1 GB deflate bomb stops after about 1 MiB).
* ``bundle.json`` must be UTF-8 JSON without NaN/Infinity or duplicate keys, nested at most
  :attr:`BundleLimits.max_depth` levels (measured on the raw bytes before parsing, so a
  100 000-deep document never reaches the recursive parser), then :func:`validate_manifest`
  checks every field of the version-1 schema and names the JSON path of the first problem,
  e.g. ``objects[3].prompts.points[0]: x must be a finite number``.
* Each object's COCO RLE is checked to cover exactly ``image.height * image.width`` pixels,
  without decoding it: pycocotools' C decoder has historically trusted that sum (a wrong one
  could write past the mask buffer); 2.0.11 refuses it, older releases may not.

Coordinates in the manifest follow the project convention: full-image pixels, x right,
y down; ``rle.size`` is ``[H, W]`` as COCO writes it. The replay code must still compare
``image.key``/``width``/``height`` with the image it opened before decoding any mask.

Every problem raises :class:`BundleError` (a :class:`~sam_core.core.errors.UserError`) whose
message says what is wrong and, where useful, the limit.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import safetensors.numpy

from sam_core.core.dataset_export import MAX_OBJECT_ID  # the label map is 16-bit
from sam_core.core.errors import UserError
from sam_core.core.prompts import MAX_POINTS

__all__ = [
    "ALLOWED_NAMES",
    "BUNDLE_FORMAT",
    "BUNDLE_VERSION",
    "DEFAULT_LIMITS",
    "JSON_NAME",
    "MASK_INPUT_SHAPE",
    "TENSORS_NAME",
    "Bundle",
    "BundleError",
    "BundleLimits",
    "read_bundle",
    "validate_manifest",
    "write_bundle",
]

BUNDLE_FORMAT = "sam-studio-bundle"
BUNDLE_VERSION = 1
JSON_NAME = "bundle.json"
TENSORS_NAME = "tensors.safetensors"
ALLOWED_NAMES = (JSON_NAME, TENSORS_NAME)  # also the entry order write_bundle uses
MASK_INPUT_SHAPE = (1, 256, 256)  # SAM's low-resolution mask prompt

MiB = 1 << 20

# Schema limits (version 1).
MAX_IMAGE_NAME = 255
MAX_MODEL_TYPE = 64
MAX_WEIGHTS_ID = 128
MAX_META_STR = 256  # "created", "app"
MAX_SETTINGS = 64
MAX_SETTING_KEY = 64
MAX_SETTING_STR = 1024
MAX_CATEGORIES = 1000
MAX_LABEL = 200
MAX_OBJECTS = 1000
MAX_SCORES = 4
MAX_EDITS = 1000
MAX_OP = 64
MAX_TENSOR_NAME = 128
MAX_TENSORS = 1000
MAX_RLE_CHARS = 64 * MiB
MAX_INT = 2**31 - 1  # sizes, pixel counts and thresholds fit a C int (OpenCV, pycocotools)
MAX_TENSOR_HEADER = 1 * MiB  # the JSON header of tensors.safetensors

_SHA1 = re.compile(r"[0-9a-f]{40}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_DEFLATE_LEVEL = 6
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed, so the same bundle always gives the same bytes
_IN_CHUNK = 64 * 1024  # compressed bytes fed to zlib per step
_OUT_CHUNK = 1 * MiB  # at most this many bytes inflated per step (the cap overshoots by no more)
_S_IFMT = 0o170000


class BundleError(UserError):
    """The bundle is unreadable, unsafe or does not follow the schema; the message says why."""


@dataclass(frozen=True)
class BundleLimits:
    """What :func:`read_bundle` accepts (bytes unless named otherwise).

    ``max_ratio`` is checked on the bytes actually read (uncompressed / compressed), once an
    entry has inflated to more than ``ratio_min_bytes``: small, very regular entries (an
    all-zero mask tensor compresses ~760:1) stay readable.
    """

    max_file_bytes: int = 64 * MiB
    max_entries: int = len(ALLOWED_NAMES)
    max_json_bytes: int = 16 * MiB
    max_tensor_bytes: int = 64 * MiB
    max_ratio: int = 1000
    max_depth: int = 32
    ratio_min_bytes: int = 1 * MiB

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"BundleLimits.{f.name} must be a positive integer, got {value!r}")


DEFAULT_LIMITS = BundleLimits()


@dataclass(frozen=True)
class Bundle:
    """A validated bundle: the manifest (parsed ``bundle.json``) and its named float32 tensors."""

    manifest: dict[str, Any]
    tensors: dict[str, np.ndarray]


# ----------------------------------------------------------------------------- small helpers


def _fmt_bytes(n: int) -> str:
    """``16 MiB``, ``1.5 MiB``, ``12.0 kB``, ``900 bytes``."""
    if n >= 1 << 30 and n % (1 << 30) == 0:
        return f"{n >> 30} GiB"
    if n >= MiB:
        return f"{n // MiB} MiB" if n % MiB == 0 else f"{n / MiB:.1f} MiB"
    if n >= 1024:
        return f"{n / 1024:.1f} kB"
    return f"{n} bytes"


def _show(text: str, limit: int = 60) -> str:
    """``text`` quoted, control/format characters escaped, shortened to about ``limit`` chars."""
    if len(text) > limit:
        text = text[:limit] + "…"
    return repr(text)


def _show_value(value: Any, limit: int = 40) -> str:
    """A JSON-looking, shortened rendering of a manifest value for messages."""
    try:
        text = json.dumps(value, ensure_ascii=True, allow_nan=True)
    except (TypeError, ValueError):
        text = f"<{type(value).__name__}>"
    except RecursionError:
        text = "<deeply nested>"
    return text if len(text) <= limit else text[:limit] + "…"


def _kind(value: Any) -> str:
    """The JSON type of ``value``, for messages (``a boolean``, ``a string``, ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a Python {type(value).__name__}"


def _not_a_bundle(why: str) -> NoReturn:
    raise BundleError(f"not a SAM Studio bundle ({why})")


# ----------------------------------------------------------------------------- reading the source


def _load_source(source: str | os.PathLike[str] | bytes | bytearray | memoryview, limits: BundleLimits) -> bytes:
    """The bundle's bytes, refusing folders, special files and files above ``max_file_bytes``."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if len(data) > limits.max_file_bytes:
            raise BundleError(
                f"the bundle is {_fmt_bytes(len(data))}, above the limit of {_fmt_bytes(limits.max_file_bytes)}"
            )
        return data
    path = Path(source)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise BundleError("file not found") from None
    except OSError as err:
        raise BundleError(f"could not read the file ({err.strerror or type(err).__name__})") from None
    if stat.S_ISDIR(st.st_mode):
        _not_a_bundle("it is a folder, not a zip file")
    if not stat.S_ISREG(st.st_mode):
        _not_a_bundle("it is not a regular file, not a zip file")
    if st.st_size > limits.max_file_bytes:  # before opening it
        raise BundleError(
            f"the file is {_fmt_bytes(st.st_size)}, above the limit of {_fmt_bytes(limits.max_file_bytes)}"
        )
    try:
        with path.open("rb") as f:
            data = f.read(limits.max_file_bytes + 1)  # the file may have grown since stat()
    except OSError as err:
        raise BundleError(f"could not read the file ({err.strerror or type(err).__name__})") from None
    if len(data) > limits.max_file_bytes:
        raise BundleError(f"the file is above the limit of {_fmt_bytes(limits.max_file_bytes)}")
    return data


# ----------------------------------------------------------------------------- the zip container

_EOCD = b"PK\x05\x06"
_EOCD64_LOCATOR = b"PK\x06\x07"
_EOCD64 = b"PK\x06\x06"
_LOCAL = b"PK\x03\x04"
_LOCAL_HEADER = struct.Struct("<4sHHHHHLLLHH")  # 30 bytes


def _directory_claims(data: bytes) -> tuple[int, int] | None:
    """``(entries, directory_bytes)`` the zip's end records declare (largest of the candidates).

    Read the way :mod:`zipfile` finds them, before it parses (and allocates for) the directory;
    ``None`` when there is no end record, i.e. the data is not a zip or its end is cut off.
    """
    n = len(data)
    if n >= 22 and data[n - 22 : n - 18] == _EOCD and data[n - 2 :] == b"\0\0":
        pos = n - 22
    else:
        pos = data.rfind(_EOCD, max(0, n - 22 - 65535))
        if pos < 0 or pos + 22 > n:
            return None
    entries, size = struct.unpack_from("<HL", data, pos + 10)
    loc = pos - 20
    if loc >= 56 and data[loc : loc + 4] == _EOCD64_LOCATOR and data[loc - 56 : loc - 52] == _EOCD64:
        entries64, size64 = struct.unpack_from("<QQ", data, loc - 56 + 32)
        entries, size = max(entries, entries64), max(size, size64)
    return entries, size


def _open_zip(data: bytes, limits: BundleLimits) -> zipfile.ZipFile:
    if not data:
        _not_a_bundle("the file is empty: 0 bytes, not a zip file")
    claims = _directory_claims(data)
    if claims is None:
        if data.startswith(_LOCAL):
            _not_a_bundle("not a zip file: it starts like one but its end is missing, so it is truncated or damaged")
        _not_a_bundle("not a zip file")
    entries, dir_bytes = claims
    if entries > limits.max_entries:
        raise BundleError(f"too many entries in the zip ({entries}; a bundle holds at most {limits.max_entries})")
    if dir_bytes > limits.max_entries * 65536:
        raise BundleError(
            f"the zip directory is {_fmt_bytes(dir_bytes)}, too large for a bundle of at most "
            f"{limits.max_entries} entries"
        )
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except Exception as err:  # any failure of the parser on untrusted bytes means "not a usable zip"
        _not_a_bundle(f"not a zip file, or a damaged one: {_show(str(err) or type(err).__name__, 80)}")


def _name_problem(name: str) -> str | None:
    """Why an entry name is unsafe to use as a path, or ``None``."""
    if "\x00" in name:
        return "it contains a NUL character"
    if "\\" in name:
        return "it contains a backslash"
    if name.startswith("/"):
        return "it is an absolute path"
    if re.match(r"[A-Za-z]:", name):
        return "it starts with a drive letter"
    if ".." in name.split("/"):
        return "'..' would leave the folder"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        return "it contains control characters"
    return None


def _check_entries(infos: list[zipfile.ZipInfo], limits: BundleLimits) -> dict[str, zipfile.ZipInfo]:
    """The entries by name, after refusing every unsafe, unknown, duplicate or odd one."""
    if len(infos) > limits.max_entries:
        raise BundleError(f"too many entries in the zip ({len(infos)}; a bundle holds at most {limits.max_entries})")
    found: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        name = info.orig_filename  # before zipfile cut it at a NUL
        shown = _show(name)
        problem = _name_problem(name)
        if problem is not None:
            raise BundleError(f"refused entry {shown}: unsafe name ({problem})")
        if name not in ALLOWED_NAMES:
            raise BundleError(f"unknown entry {shown} in the zip (a bundle holds only {JSON_NAME} and {TENSORS_NAME})")
        if name in found:
            raise BundleError(f"duplicate entry {shown} in the zip")
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise BundleError(f"refused entry {shown}: it is a symbolic link")
        if mode & _S_IFMT and not stat.S_ISREG(mode):
            raise BundleError(f"refused entry {shown}: it is not a regular file")
        if info.flag_bits & 0x1:
            raise BundleError(f"refused entry {shown}: it is encrypted (bundles are never encrypted)")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise BundleError(
                f"refused entry {shown}: compression method {info.compress_type} (only stored and deflate are read)"
            )
        found[name] = info
    return found


def _entry_bytes(data: bytes, info: zipfile.ZipInfo, cap: int, limits: BundleLimits) -> bytes:
    """The uncompressed bytes of one entry, read from memory with a running cap and ratio check."""
    name = info.orig_filename
    declared = info.file_size
    if declared > cap:
        raise BundleError(f"{name} claims {_fmt_bytes(declared)} uncompressed, above the limit of {_fmt_bytes(cap)}")
    if declared > limits.ratio_min_bytes and declared > limits.max_ratio * max(info.compress_size, 1):
        raise BundleError(f"{name} is compressed more than {limits.max_ratio}:1 (a zip bomb?)")

    def damaged(why: str) -> NoReturn:
        raise BundleError(f"{name} is damaged in the zip ({why})")

    off = info.header_offset
    if off < 0 or off + _LOCAL_HEADER.size > len(data):
        damaged("its header lies outside the file")
    sig, _, flags, method, _, _, _, _, _, name_len, extra_len = _LOCAL_HEADER.unpack_from(data, off)
    if sig != _LOCAL:
        damaged("no local header where the directory points")
    raw_name = data[off + 30 : off + 30 + name_len]
    try:
        local_name = raw_name.decode("utf-8" if flags & 0x800 else "cp437")
    except UnicodeDecodeError:
        local_name = None
    if local_name != name or method != info.compress_type or flags & 0x1:
        damaged("its local header disagrees with the zip directory")
    start = off + 30 + name_len + extra_len
    end = start + info.compress_size
    if end > len(data):
        damaged("its data runs past the end of the file; truncated?")
    raw = memoryview(data)[start:end]

    if info.compress_type == zipfile.ZIP_STORED:
        if len(raw) > cap:
            raise BundleError(f"{name} is more than {_fmt_bytes(cap)} uncompressed (the limit)")
        out = bytes(raw)
    else:
        inflater = zlib.decompressobj(-15)
        buf = bytearray()
        pos = 0
        try:
            while not inflater.eof:
                if inflater.unconsumed_tail:
                    chunk: bytes | memoryview = inflater.unconsumed_tail
                elif pos < len(raw):
                    chunk = raw[pos : pos + _IN_CHUNK]
                    pos += len(chunk)
                else:
                    damaged("the compressed data ends early")
                buf += inflater.decompress(chunk, _OUT_CHUNK)
                if len(buf) > cap:
                    raise BundleError(f"{name} is more than {_fmt_bytes(cap)} uncompressed (the limit)")
                if len(buf) > declared:
                    damaged(f"it inflates to more than the {_fmt_bytes(declared)} its header declares")
                used = pos - len(inflater.unconsumed_tail)
                if len(buf) > limits.ratio_min_bytes and len(buf) > limits.max_ratio * max(used, 1):
                    raise BundleError(f"{name} is compressed more than {limits.max_ratio}:1 (a zip bomb?)")
        except zlib.error as err:
            damaged(f"bad deflate data: {err}")
        if inflater.unused_data or pos < len(raw):
            damaged("extra bytes after the compressed data")
        out = bytes(buf)
    if len(out) != declared:
        damaged(f"{len(out)} bytes where its header declares {declared}")
    if zlib.crc32(out) != info.CRC:
        damaged("CRC check failed")
    return out


# ----------------------------------------------------------------------------- bundle.json


_DEPTH_CHUNK = 1 * MiB


def _json_depth(raw: bytes, stop_above: int) -> int:
    """Deepest ``[``/``{`` nesting of JSON text ``raw`` (UTF-8), counting outside strings only.

    Linear, non-recursive and vectorised over 1 MiB chunks (a few MiB of memory for any input).
    A quote is escaped when an odd run of backslashes precedes it, which is how JSON reads
    ``\\"`` and ``\\\\``. Exact for valid JSON, and for invalid JSON up to its first error
    (all the parser ever reaches). Returns early once the depth passes ``stop_above``.
    """
    text = np.frombuffer(raw, np.uint8)
    inside = 0  # 1 while inside a string at the end of the previous chunk
    trailing = 0  # backslashes that ended the previous chunk
    depth = deepest = 0
    for at in range(0, len(text), _DEPTH_CHUNK):
        c = text[at : at + _DEPTH_CHUNK]
        bs = c == 0x5C
        quote = c == 0x22
        q = np.flatnonzero(quote)
        if q.size:
            # index of the last non-backslash at or before each position (-1: none in this chunk)
            last = np.maximum.accumulate(np.where(bs, -1, np.arange(c.size)))
            before = np.where(q > 0, last[np.maximum(q - 1, 0)], -1)
            run = np.where(before >= 0, q - 1 - before, q + trailing)  # backslashes right before each quote
            quote[q[run % 2 == 1]] = False  # escaped quotes do not open or close strings
        rev = bs[::-1]
        k = int(np.argmin(rev))
        trailing = trailing + c.size if rev[k] else k
        in_str = (np.cumsum(quote, dtype=np.uint8) + np.uint8(inside)) & 1  # parity of quotes so far
        outside = in_str == 0
        step = (((c == 0x5B) | (c == 0x7B)) & outside).astype(np.int64)
        step -= ((c == 0x5D) | (c == 0x7D)) & outside
        level = np.cumsum(step) + depth
        deepest = max(deepest, int(level.max()))
        depth, inside = int(level[-1]), int(in_str[-1])
        if deepest > stop_above:
            break
    return deepest


def _refuse_constant(name: str) -> NoReturn:
    raise BundleError(f"{JSON_NAME} contains {name}, which is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BundleError(f"{JSON_NAME} contains the number {_show(text, 30)}, which is too large to be finite")
    return value


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise BundleError(f"{JSON_NAME} has a duplicate key {_show(key)} in one object")
        out[key] = value
    return out


def _parse_json(raw: bytes, limits: BundleLimits) -> Any:
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BundleError(f"{JSON_NAME} is not UTF-8 text (bad byte at offset {err.start})") from None
    depth = _json_depth(raw, limits.max_depth)
    if depth > limits.max_depth:
        raise BundleError(f"{JSON_NAME} is nested more than {limits.max_depth} levels deep (the limit)")
    try:
        return json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            object_pairs_hook=_no_duplicate_keys,
        )
    except json.JSONDecodeError as err:
        raise BundleError(f"{JSON_NAME} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None
    except RecursionError:  # not reachable after the depth check; kept as a second guard
        raise BundleError(f"{JSON_NAME} is nested more than {limits.max_depth} levels deep (the limit)") from None
    except ValueError as err:  # e.g. an integer with more digits than Python converts
        raise BundleError(f"{JSON_NAME} is not valid JSON ({err})") from None


# ----------------------------------------------------------------------------- tensors.safetensors


def _load_tensors(raw: bytes) -> dict[str, np.ndarray]:
    if len(raw) < 8:
        raise BundleError(f"{TENSORS_NAME} is malformed ({len(raw)} bytes, shorter than its 8-byte header size)")
    (header,) = struct.unpack_from("<Q", raw)
    if header > MAX_TENSOR_HEADER:
        raise BundleError(
            f"{TENSORS_NAME} has a header of {_fmt_bytes(header)}, above the limit of {_fmt_bytes(MAX_TENSOR_HEADER)}"
        )
    if 8 + header > len(raw):
        raise BundleError(f"{TENSORS_NAME} is malformed (its header runs past the end of the data)")
    try:
        loaded = safetensors.numpy.load(raw)
    except Exception as err:  # the Rust parser's errors (and numpy's, for dtypes it lacks)
        raise BundleError(f"{TENSORS_NAME} is malformed ({_show(str(err) or type(err).__name__, 120)})") from None
    return dict(loaded)


def _check_tensors(tensors: Mapping[str, np.ndarray]) -> None:
    """Names and contents of all tensors: float32, finite, at most :data:`MAX_TENSORS`."""
    if len(tensors) > MAX_TENSORS:
        raise BundleError(f"{TENSORS_NAME}: {len(tensors)} tensors, above the limit of {MAX_TENSORS}")
    for name, arr in tensors.items():
        if not isinstance(name, str) or not name or len(name) > MAX_TENSOR_NAME or name == "__metadata__":
            raise BundleError(
                f"{TENSORS_NAME}: tensor name {_show(str(name))} must be a non-empty string of at most "
                f"{MAX_TENSOR_NAME} characters"
            )
        shown = _show(name)
        if not isinstance(arr, np.ndarray):
            raise BundleError(f"{TENSORS_NAME}: tensor {shown} must be a numpy array, not {type(arr).__name__}")
        if arr.dtype != np.float32:
            raise BundleError(f"{TENSORS_NAME}: tensor {shown} is {arr.dtype}, bundles hold float32 tensors only")
        if not np.isfinite(arr).all():
            raise BundleError(f"{TENSORS_NAME}: tensor {shown} contains NaN or infinite values")


# ----------------------------------------------------------------------------- the manifest schema


def _fail(path: str, problem: str) -> NoReturn:
    raise BundleError(f"{path}: {problem}")


def _obj(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        _fail(path, f"must be a JSON object, not {_kind(value)}")
    return value


def _get(obj: dict[str, Any], key: str, path: str) -> Any:
    if key not in obj:
        _fail(f"{path}.{key}" if path else key, "is missing")
    return obj[key]


def _str(value: Any, path: str, max_len: int, what: str = "must be") -> str:
    if not isinstance(value, str):
        _fail(path, f"{what} a string of at most {max_len} characters, not {_kind(value)}")
    if len(value) > max_len:
        _fail(path, f"{what} at most {max_len} characters long, not {len(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        _fail(path, f"{what} a valid Unicode string (it contains a lone surrogate)")
    return value


def _int(value: Any, path: str, lo: int, hi: int, what: str = "must be") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(path, f"{what} an integer from {lo} to {hi}, not {_kind(value)} ({_show_value(value)})")
    if not lo <= value <= hi:
        _fail(path, f"{what} an integer from {lo} to {hi}, not {_show_value(value)}")
    return value


def _num(value: Any, path: str, what: str = "must be") -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and isinstance(value, float) and not math.isfinite(value):
        ok = False
    if not ok:
        _fail(path, f"{what} a finite number, not {_kind(value)} ({_show_value(value)})")
    return float(value)


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        _fail(path, f"must be true or false, not {_kind(value)} ({_show_value(value)})")
    return value


def _list(value: Any, path: str, max_len: int) -> list[Any]:
    if not isinstance(value, list):
        _fail(path, f"must be a list (at most {max_len} items), not {_kind(value)}")
    if len(value) > max_len:
        _fail(path, f"has {len(value)} items, above the limit of {max_len}")
    return value


def _check_header(manifest: Any) -> dict[str, Any]:
    """Format and version, checked before anything else (a newer bundle must say so)."""
    if not isinstance(manifest, dict):
        raise BundleError(f"{JSON_NAME} must hold a JSON object, not {_kind(manifest)}")
    fmt = manifest.get("format")
    if fmt != BUNDLE_FORMAT:
        got = "no format" if "format" not in manifest else f"format {_show_value(fmt)}"
        _not_a_bundle(f"{JSON_NAME} has {got}, expected {json.dumps(BUNDLE_FORMAT)}")
    reads = f"this app reads version {BUNDLE_VERSION}"
    if "version" not in manifest:
        raise BundleError(f"unsupported bundle version: {JSON_NAME} has none, it is missing ({reads})")
    version = manifest["version"]
    if isinstance(version, (bool, str, float)):  # "1", 1.0 and true are not the integer 1
        raise BundleError(f"unsupported bundle version {_show_value(version)} ({_kind(version)}; {reads})")
    if version != BUNDLE_VERSION or not isinstance(version, int):
        raise BundleError(f"unsupported bundle version {_show_value(version)} ({reads})")
    return manifest


# COCO compressed RLE (pycocotools' rleFrString): each count is 1+ characters '0'..'o'
# (value + 48), 5 bits each, least significant first; bit 0x20 = "more follows"; bit 0x10 of
# the last one is the sign. Counts from index 3 on are stored as the difference to the count
# two before. pycocotools keeps counts as uint32 (wrapping), so they are summed modulo 2**32.
_MAX_RLE_GROUPS = 7  # 35 bits: any uint32 count or difference; more would overflow C's long shifts
_RLE_CHUNK = 256 * 1024


def _rle_pixels(counts: str) -> int | str:
    """Total pixels the compressed RLE string covers, as pycocotools decodes it; or a problem.

    Vectorised over 256 kB pieces cut at count boundaries (memory stays small for any input).
    """
    try:
        data = np.frombuffer(counts.encode("ascii"), np.uint8)
    except UnicodeEncodeError:
        return "must contain only the characters '0' to 'o' (COCO compressed RLE)"
    if data.size == 0:
        return "is empty"
    if data.min() < 48 or data.max() > 111:
        return "must contain only the characters '0' to 'o' (COCO compressed RLE)"
    if (data[-1] - 48) & 0x20:
        return "ends in the middle of a number"
    total = 0
    index = 0  # global index of the next count
    chain = [0, 0]  # running sums (mod 2**32) of the odd- and even-index counts from index 1 / 2
    at = 0
    while at < data.size:
        piece = data[at : at + _RLE_CHUNK].astype(np.int64) - 48
        ends = np.flatnonzero((piece & 0x20) == 0)
        if ends.size == 0:
            return "has a number longer than pycocotools reads"
        piece = piece[: ends[-1] + 1]
        at += piece.size
        starts = np.concatenate(([0], ends[:-1] + 1))
        groups = ends - starts + 1
        if groups.max() > _MAX_RLE_GROUPS:
            return "has a number longer than pycocotools reads"
        shift = 5 * (np.arange(piece.size) - np.repeat(starts, groups))
        x = np.add.reduceat((piece & 0x1F) << shift, starts)
        x = np.where(piece[ends] & 0x10, x - (np.int64(1) << (5 * groups)), x) % (1 << 32)
        g = index + np.arange(x.size)  # global count indices
        index += x.size
        if g[0] == 0:
            total += int(x[0])
        for parity, first in ((1, 1), (0, 2)):
            sel = x[(g % 2 == parity) & (g >= first)]
            if sel.size:
                run = (np.cumsum(sel) + chain[parity]) % (1 << 32)
                total += int(run.sum())
                chain[parity] = int(run[-1])
    return total


def _check_rle(value: Any, path: str, height: int, width: int) -> None:
    rle = _obj(value, path)
    size = _list(_get(rle, "size", path), f"{path}.size", 2)
    if len(size) != 2:
        _fail(f"{path}.size", f"must be [H, W], not a list of {len(size)}")
    h = _int(size[0], f"{path}.size[0]", 1, MAX_INT)
    w = _int(size[1], f"{path}.size[1]", 1, MAX_INT)
    if (h, w) != (height, width):
        _fail(
            f"{path}.size",
            f"is [{h}, {w}] but the image is {width}×{height} (size must be [H, W] = [{height}, {width}])",
        )
    counts = _str(_get(rle, "counts", path), f"{path}.counts", MAX_RLE_CHARS)
    pixels = _rle_pixels(counts)
    if isinstance(pixels, str):
        _fail(f"{path}.counts", pixels)
    if pixels != h * w:
        _fail(f"{path}.counts", f"covers {pixels} pixels, not the {h * w} of a {w}×{h} mask")


def _check_object(obj: dict[str, Any], path: str, image: tuple[int, int], tensors: Mapping[str, np.ndarray]) -> int:
    oid = _int(_get(obj, "id", path), f"{path}.id", 1, MAX_OBJECT_ID)
    _str(_get(obj, "label", path), f"{path}.label", MAX_LABEL)

    ppath = f"{path}.prompts"
    prompts = _obj(_get(obj, "prompts", path), ppath)
    points = _list(_get(prompts, "points", ppath), f"{ppath}.points", MAX_POINTS)
    for i, point in enumerate(points):
        pt = f"{ppath}.points[{i}]"
        if not isinstance(point, list) or len(point) != 3:
            _fail(pt, f"must be [x, y, label], not {_show_value(point)}")
        _num(point[0], pt, "x must be")
        _num(point[1], pt, "y must be")
        if isinstance(point[2], bool) or not isinstance(point[2], int) or point[2] not in (0, 1):
            _fail(pt, f"label must be 0 (background) or 1 (foreground), not {_show_value(point[2])}")
    box = _get(prompts, "box", ppath)
    if box is not None:
        if not isinstance(box, list) or len(box) != 4:
            _fail(f"{ppath}.box", f"must be [x1, y1, x2, y2] or null, not {_show_value(box)}")
        for name, v in zip(("x1", "y1", "x2", "y2"), box, strict=True):
            _num(v, f"{ppath}.box", f"{name} must be")

    _bool(_get(obj, "multimask", path), f"{path}.multimask")
    _int(_get(obj, "chosen", path), f"{path}.chosen", 0, 3)
    scores = _list(_get(obj, "scores", path), f"{path}.scores", MAX_SCORES)
    for i, s in enumerate(scores):
        _num(s, f"{path}.scores[{i}]")
    _num(_get(obj, "threshold", path), f"{path}.threshold")
    _int(_get(obj, "min_island", path), f"{path}.min_island", 0, MAX_INT)
    _int(_get(obj, "min_hole", path), f"{path}.min_hole", 0, MAX_INT)

    mask_input = _get(obj, "mask_input", path)
    if mask_input is not None:
        mpath = f"{path}.mask_input"
        _str(mask_input, mpath, MAX_TENSOR_NAME, "must be null or")
        if mask_input not in tensors:
            where = f"{TENSORS_NAME} has no such tensor" if tensors else f"the bundle has no {TENSORS_NAME}"
            _fail(mpath, f"names tensor {_show(mask_input)}, which is missing ({where})")
        arr = tensors[mask_input]
        if not isinstance(arr, np.ndarray) or arr.dtype != np.float32 or arr.shape != MASK_INPUT_SHAPE:
            got = f"{arr.dtype} {tuple(arr.shape)}" if isinstance(arr, np.ndarray) else type(arr).__name__
            _fail(mpath, f"tensor {_show(mask_input)} is {got}, expected float32 {MASK_INPUT_SHAPE}")

    edits = _list(_get(obj, "edits", path), f"{path}.edits", MAX_EDITS)
    for i, edit in enumerate(edits):
        epath = f"{path}.edits[{i}]"
        _str(_get(_obj(edit, epath), "op", epath), f"{epath}.op", MAX_OP)

    _check_rle(_get(obj, "rle", path), f"{path}.rle", image[1], image[0])
    return oid


def validate_manifest(manifest: Any, tensors: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Check ``manifest`` against the version-1 schema and ``mask_input`` names against ``tensors``.

    Returns the manifest itself (unchanged). Raises :class:`BundleError` naming the JSON path
    of the first problem, e.g. ``objects[3].prompts.points[0]: x must be a finite number``.
    Unknown extra keys are ignored. Integers must be JSON integers (``true`` is not ``1``);
    ``image.width``/``height`` and every ``rle.size`` are pixels, ``rle.size`` = ``[H, W]``.
    """
    m = _check_header(manifest)
    _str(_get(m, "created", ""), "created", MAX_META_STR)
    _str(_get(m, "app", ""), "app", MAX_META_STR)

    image = _obj(_get(m, "image", ""), "image")
    _str(_get(image, "name", "image"), "image.name", MAX_IMAGE_NAME)
    key = _get(image, "key", "image")
    if not isinstance(key, str) or not _SHA1.fullmatch(key):
        _fail("image.key", f"must be 40 lowercase hex digits (the SHA-1 of the pixels), not {_show_value(key)}")
    width = _int(_get(image, "width", "image"), "image.width", 1, MAX_INT)
    height = _int(_get(image, "height", "image"), "image.height", 1, MAX_INT)
    if width * height > MAX_INT:
        _fail("image", f"{width}×{height} is more than {MAX_INT} pixels")

    model = _obj(_get(m, "model", ""), "model")
    _str(_get(model, "type", "model"), "model.type", MAX_MODEL_TYPE)
    _str(_get(model, "weights_id", "model"), "model.weights_id", MAX_WEIGHTS_ID)
    sha = _get(model, "weights_sha256", "model")
    if sha is not None and (not isinstance(sha, str) or not _SHA256.fullmatch(sha)):
        _fail("model.weights_sha256", f"must be null or 64 lowercase hex digits, not {_show_value(sha)}")

    settings = _obj(_get(m, "settings", ""), "settings")
    if len(settings) > MAX_SETTINGS:
        _fail("settings", f"has {len(settings)} keys, above the limit of {MAX_SETTINGS}")
    for k, v in settings.items():
        _str(k, f"settings key {_show(str(k))}", MAX_SETTING_KEY, "must be")
        spath = f"settings.{k}" if str(k).isidentifier() else f"settings[{_show(str(k))}]"
        if v is None or isinstance(v, (bool, int)):
            continue
        if isinstance(v, float):
            _num(v, spath)
        elif isinstance(v, str):
            _str(v, spath, MAX_SETTING_STR)
        else:
            _fail(spath, f"must be true/false, a number, a string or null, not {_kind(v)}")

    categories = _list(_get(m, "categories", ""), "categories", MAX_CATEGORIES)
    for i, cat in enumerate(categories):
        _str(cat, f"categories[{i}]", MAX_LABEL)

    objects = _list(_get(m, "objects", ""), "objects", MAX_OBJECTS)
    seen: dict[int, int] = {}
    for i, obj in enumerate(objects):
        path = f"objects[{i}]"
        oid = _check_object(_obj(obj, path), path, (width, height), tensors)
        if oid in seen:
            _fail(f"{path}.id", f"duplicate id {oid} (objects[{seen[oid]}] has it too)")
        seen[oid] = i
    return m


# ----------------------------------------------------------------------------- public API


def read_bundle(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview, *, limits: BundleLimits = DEFAULT_LIMITS
) -> Bundle:
    """Read and validate a bundle from a file path or from its bytes; nothing touches the disk.

    Raises :class:`BundleError` for anything unreadable, unsafe, above ``limits`` or off the
    schema. For a path the message starts with the file name (never its folders).
    """
    try:
        data = _load_source(source, limits)
        return _read(data, limits)
    except BundleError as err:
        if isinstance(source, (bytes, bytearray, memoryview)):
            raise
        name = Path(source).name
        raise BundleError(f"{name if name.isprintable() and len(name) <= 80 else _show(name, 80)}: {err}") from None


def _read(data: bytes, limits: BundleLimits) -> Bundle:
    with _open_zip(data, limits) as zf:
        infos = zf.infolist()
    entries = _check_entries(infos, limits)
    if JSON_NAME not in entries:
        raise BundleError(f"{JSON_NAME} is missing from the zip")
    raw_json = _entry_bytes(data, entries[JSON_NAME], limits.max_json_bytes, limits)
    manifest = _check_header(_parse_json(raw_json, limits))
    tensors: dict[str, np.ndarray] = {}
    if TENSORS_NAME in entries:
        tensors = _load_tensors(_entry_bytes(data, entries[TENSORS_NAME], limits.max_tensor_bytes, limits))
        _check_tensors(tensors)
    return Bundle(manifest=validate_manifest(manifest, tensors), tensors=tensors)


def _zip(entries: list[tuple[str, bytes, int]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, payload, method in entries:
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = method
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            zf.writestr(info, payload, compresslevel=_DEFLATE_LEVEL if method == zipfile.ZIP_DEFLATED else None)
    return buf.getvalue()


def _entry_problems(data: bytes, limits: BundleLimits) -> list[tuple[str, str | None]]:
    """``(name, why read_bundle would refuse it or None)`` for each entry of a zip written here."""
    caps = {JSON_NAME: limits.max_json_bytes, TENSORS_NAME: limits.max_tensor_bytes}
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        infos = zf.infolist()
    out: list[tuple[str, str | None]] = []
    for info in infos:
        try:
            _entry_bytes(data, info, caps[info.filename], limits)
            out.append((info.filename, None))
        except BundleError as err:
            out.append((info.filename, str(err)))
    return out


def write_bundle(manifest: dict[str, Any], tensors: Mapping[str, np.ndarray] | None = None) -> bytes:
    """The bytes of a bundle zip: ``bundle.json``, then ``tensors.safetensors`` if any tensors.

    Validates first (a bundle written here is always readable by :func:`read_bundle` with the
    default limits) and raises :class:`BundleError` otherwise. Deterministic: the same manifest
    and tensors give the same bytes (fixed entry order and timestamps). Tensors must be float32
    numpy arrays; an entry the reader would take for a zip bomb (deflated beyond ``max_ratio``
    on the way) is stored uncompressed.
    """
    limits = DEFAULT_LIMITS
    tensors = dict(tensors or {})
    _check_tensors(tensors)
    validate_manifest(manifest, tensors)
    try:
        text = json.dumps(manifest, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        raw_json = text.encode("utf-8")
    except (TypeError, ValueError) as err:  # extra keys holding NaN, lone surrogates, Python objects
        raise BundleError(f"the manifest cannot be written as JSON ({err})") from None
    except RecursionError:
        raise BundleError(f"the manifest is nested more than {limits.max_depth} levels deep") from None
    if len(raw_json) > limits.max_json_bytes:
        raise BundleError(
            f"{JSON_NAME} would be {_fmt_bytes(len(raw_json))}, above the limit of {_fmt_bytes(limits.max_json_bytes)}"
        )
    if _json_depth(raw_json, limits.max_depth) > limits.max_depth:
        raise BundleError(f"the manifest is nested more than {limits.max_depth} levels deep (the limit)")
    entries = [(JSON_NAME, raw_json, zipfile.ZIP_DEFLATED)]
    if tensors:
        raw_tensors = safetensors.numpy.save({k: np.ascontiguousarray(v) for k, v in tensors.items()})
        if len(raw_tensors) > limits.max_tensor_bytes:
            raise BundleError(
                f"{TENSORS_NAME} would be {_fmt_bytes(len(raw_tensors))}, above the limit of "
                f"{_fmt_bytes(limits.max_tensor_bytes)}"
            )
        entries.append((TENSORS_NAME, raw_tensors, zipfile.ZIP_DEFLATED))
    out = _zip(entries)
    # An entry that deflates beyond the reader's ratio limit somewhere along the way (e.g. a run
    # of all-zero tensors) is stored instead: the reader's own check decides, so it never
    # mistakes a bundle written here for a zip bomb.
    squeezed = {name for name, problem in _entry_problems(out, limits) if problem}
    if squeezed:
        out = _zip([(n, p, zipfile.ZIP_STORED if n in squeezed else m) for n, p, m in entries])
        for name, problem in _entry_problems(out, limits):
            if problem:  # not reachable: stored entries have a ratio of 1
                raise BundleError(f"could not write a readable bundle ({name}: {problem})")
    if len(out) > limits.max_file_bytes:
        raise BundleError(
            f"the bundle would be {_fmt_bytes(len(out))}, above the limit of {_fmt_bytes(limits.max_file_bytes)}"
        )
    return out
