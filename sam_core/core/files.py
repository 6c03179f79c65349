"""Files written by the app: one atomic-write helper and safe file names.

Everything SAM Studio writes for a user (exports, saved overlays, run-log exports,
verification records, batch outputs) goes through :func:`write_atomic`, so a crash or a
full disk never leaves a partial file under the final name.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from sam_core.core.errors import ResourceError

log = logging.getLogger(__name__)

Writer = Callable[[BinaryIO], None]


def write_atomic(path: str | os.PathLike[str], data: bytes | Writer, *, fsync: bool = False) -> Path:
    """Write ``data`` (bytes, or a function that writes to a binary file) to ``path`` atomically.

    The bytes go to a temp file in the same folder, which is then renamed with ``os.replace``.
    A failed write (disk full, permissions) leaves nothing under ``path`` or the temp name and
    raises :class:`ResourceError` naming only the file, never the server's folders.
    ``fsync``: flush to disk before the rename (for files that must survive a power loss).
    """
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Not mkstemp: its 0600 mode would make outputs unreadable to the group (shared cluster
        # folders); os.open applies the umask to 0666 like any other new file.
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            if isinstance(data, (bytes, bytearray, memoryview)):
                f.write(data)
            else:
                data(f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as err:
        log.error("could not write %s: %s", path, err)
        raise ResourceError(
            f"Could not write {path.name}: {err.strerror or type(err).__name__}"
            + (" — the server's disk is full." if err.errno in (errno.ENOSPC, errno.EDQUOT) else ".")
        ) from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return path


def safe_stem(name: str, default: str = "image") -> str:
    """A file-system-safe stem (``[A-Za-z0-9._-]``, at most 60 characters) from a display name."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem).strip("._-")[:60]
    return stem or default


def prune_dir(folder: Path, older_than_s: float, keep: set[str] | frozenset[str] = frozenset()) -> None:
    """Delete the entries of ``folder`` (files and folders) older than ``older_than_s`` seconds.

    ``keep``: paths (as strings) never deleted. Entries removed meanwhile by another caller
    are skipped.
    """
    if not folder.is_dir():
        return
    cutoff = time.time() - older_than_s
    for p in folder.iterdir():
        try:
            if str(p) in keep or p.stat().st_mtime >= cutoff:
                continue
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        except FileNotFoundError:
            pass
