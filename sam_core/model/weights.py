"""SAM checkpoint registry, download and verification.

``resolve_checkpoint(model_type)`` returns the path of a verified checkpoint file:

* ``test-tiny`` needs no download (random weights), unless an explicit file is given.
* ``checkpoint=PATH`` uses that local file and never downloads. When its size equals the
  official file's size its sha256 is checked too (a corrupt copy of the official weights is
  caught); a file of another size is taken to be a fine-tuned checkpoint and is accepted
  without a hash check.
* Otherwise ``<checkpoints_dir>/<filename>`` is used; if it is missing or fails verification
  it is (re)fetched with ``huggingface_hub.hf_hub_download`` into the Hugging Face cache,
  hard-linked (or copied) into a temporary file next to the target, verified (size +
  sha256) and only then renamed to its final name. A per-file ``FileLock`` serialises
  concurrent processes, so a second process waits and then finds the verified file.

A successful sha256 check leaves a small JSON record in ``<checkpoints_dir>/.verified/``
(size, mtime_ns, ctime_ns, inode, sha256); while the file's stat still matches the record,
later starts skip re-hashing a multi-GB file.

Every failure a user can fix raises :class:`sam_core.errors.CheckpointError` whose ``str()``
is a complete message (what failed, where, and how to get out of it).
"""

from __future__ import annotations

import errno
import hashlib
import inspect
import json
import logging
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sam_core.core.errors import CheckpointError

log = logging.getLogger(__name__)

DEFAULT_REPO_ID = "ybelkada/segment-anything"
META_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything/"

#: Set to 1 to load an explicit ``--checkpoint`` whose size equals the official one but whose
#: sha256 differs (e.g. a fine-tuned state dict that happens to have exactly the same size).
SKIP_VERIFY_ENV = "SAM_SKIP_CHECKPOINT_VERIFY"

_RECORD_DIR = ".verified"
_PART_SUFFIX = ".part"
_HASH_PROGRESS_MIN = 256 << 20  # show a hashing progress bar for files at least this big


@dataclass(frozen=True)
class CheckpointSpec:
    """One downloadable checkpoint: where it lives on the Hub and what it must hash to."""

    model_type: str  # "vit_h" | "vit_l" | "vit_b"
    filename: str  # file name, e.g. "sam_vit_h_4b8939.pth"
    hub_path: str  # path inside the Hub repo, e.g. "checkpoints/sam_vit_h_4b8939.pth"
    size: int  # bytes
    sha256: str

    @property
    def meta_url(self) -> str:
        """Meta's direct download URL for the same file."""
        return META_BASE_URL + self.filename


def _spec(model_type: str, filename: str, size: int, sha256: str) -> CheckpointSpec:
    return CheckpointSpec(model_type, filename, f"checkpoints/{filename}", size, sha256)


CHECKPOINTS: dict[str, CheckpointSpec] = {
    "vit_h": _spec(
        "vit_h",
        "sam_vit_h_4b8939.pth",
        2_564_550_879,
        "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
    ),
    "vit_l": _spec(
        "vit_l",
        "sam_vit_l_0b3195.pth",
        1_249_524_607,
        "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
    ),
    "vit_b": _spec(
        "vit_b",
        "sam_vit_b_01ec64.pth",
        375_042_383,
        "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
    ),
}

MODEL_TYPES: tuple[str, ...] = ("vit_h", "vit_l", "vit_b", "test-tiny")


# --------------------------------------------------------------------------- defaults


def default_checkpoints_dir() -> Path:
    """``$SAM_CHECKPOINTS_DIR`` if set, else ``<repo root>/checkpoints``."""
    env = os.environ.get("SAM_CHECKPOINTS_DIR", "").strip()
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / "checkpoints"


def default_repo_id() -> str:
    """``$SAM_HUB_REPO`` if set, else :data:`DEFAULT_REPO_ID`."""
    return os.environ.get("SAM_HUB_REPO", "").strip() or DEFAULT_REPO_ID


# --------------------------------------------------------------------------- helpers


def _human(n: int) -> str:
    """Bytes as a short human string (decimal units, like download pages)."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.2f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover


def _is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _is_no_permission(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in {errno.EACCES, errno.EPERM, errno.EROFS}


def _write_error(exc: OSError, path: Path, spec: CheckpointSpec | None, *, hf_cache: bool = False) -> CheckpointError:
    """A CheckpointError for a failed write (disk full / permission denied / other)."""
    need = f" (the file needs {_human(spec.size)})" if spec is not None else ""
    if hf_cache:
        elsewhere = "set HF_HUB_CACHE (or HF_HOME) to a folder on a disk with room"
    else:
        elsewhere = "set SAM_CHECKPOINTS_DIR to a folder on a disk with room"
    way_out = f"{elsewhere}, or pass --checkpoint PATH to use a file you already have."
    if _is_disk_full(exc):
        return CheckpointError(
            f"Not enough disk space to write {path}{need}. Free some space on that disk, or {way_out}"
        )
    if _is_no_permission(exc):
        return CheckpointError(
            f"Permission denied while writing {path} ({exc.strerror or exc}). "
            f"Make that folder writable, or {way_out.replace('a disk with room', 'a writable disk')}"
        )
    return CheckpointError(f"Could not write {path}: {exc.strerror or exc}. Check that disk, or {way_out}")


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


# --------------------------------------------------------------------------- hashing and records


def sha256_file(path: str | os.PathLike, *, chunk: int = 8 << 20, progress: bool = False) -> str:
    """Hex sha256 of a file, read in ``chunk``-byte blocks (optionally with a tqdm bar)."""
    h = hashlib.sha256()
    path = Path(path)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=f"Verifying {path.name}")
    try:
        with open(path, "rb", buffering=0) as f:
            buf = bytearray(chunk)
            view = memoryview(buf)
            while n := f.readinto(buf):
                h.update(view[:n])
                if bar is not None:
                    bar.update(n)
    finally:
        if bar is not None:
            bar.close()
    return h.hexdigest()


def _record_path(path: Path, record_dir: Path | None = None) -> Path:
    """Where the verification record of ``path`` lives.

    Default: ``<path's folder>/.verified/<name>.json``. With ``record_dir`` (used for explicit
    checkpoint files outside the checkpoints folder) the name also carries a hash of the
    absolute path, so files with the same name in different places do not collide.
    """
    if record_dir is None:
        return path.parent / _RECORD_DIR / f"{path.name}.json"
    key = hashlib.sha1(str(path.absolute()).encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return record_dir / f"{path.name}.{key}.json"


def _stat_key(st: os.stat_result) -> dict[str, int]:
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "inode": st.st_ino}


def _record_matches(path: Path, spec: CheckpointSpec, record_dir: Path | None) -> bool:
    """True if a record says this exact file (same stat) was already hashed to spec.sha256."""
    try:
        rec = json.loads(_record_path(path, record_dir).read_text(encoding="utf-8"))
        st = path.stat()
    except (OSError, ValueError):
        return False
    if not isinstance(rec, dict):
        return False
    return (
        rec.get("sha256") == spec.sha256
        and rec.get("path") == str(path.absolute())
        and all(rec.get(k) == v for k, v in _stat_key(st).items())
    )


def _write_record(path: Path, sha256: str, st: os.stat_result, record_dir: Path | None) -> None:
    """Atomically write the verification record; failures are logged and ignored."""
    rec_path = _record_path(path, record_dir)
    tmp = rec_path.with_name(f".{rec_path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    data = {"path": str(path.absolute()), "sha256": sha256, **_stat_key(st)}
    try:
        rec_path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(tmp, rec_path)
    except OSError as exc:
        log.debug("could not write verification record %s: %s", rec_path, exc)
        try:
            _unlink(tmp)
        except OSError:
            pass


def _delete_record(path: Path, record_dir: Path | None = None) -> None:
    try:
        _unlink(_record_path(path, record_dir))
    except OSError as exc:
        log.debug("could not delete verification record for %s: %s", path, exc)


def _check(
    path: Path,
    spec: CheckpointSpec,
    *,
    use_record: bool = True,
    record_dir: Path | None = None,
    progress: bool = False,
) -> str | None:
    """Verify ``path`` against ``spec``; return None if good, else a short reason.

    Size first (cheap), then the record (if ``use_record``), then sha256. A success writes the
    record (if ``use_record``); a failure deletes it. Raises CheckpointError if unreadable.
    """
    try:
        st = path.stat()
        if st.st_size != spec.size:
            reason = f"size {st.st_size:,} bytes, expected {spec.size:,}"
        elif use_record and _record_matches(path, spec, record_dir):
            log.debug("%s: verification record matches, not hashing again", path)
            return None
        else:
            actual = sha256_file(path, progress=progress and st.st_size >= _HASH_PROGRESS_MIN)
            if actual == spec.sha256:
                if use_record and _stat_key(path.stat()) == _stat_key(st):
                    _write_record(path, actual, st, record_dir)
                return None
            reason = f"sha256 {actual}, expected {spec.sha256}"
    except OSError as exc:
        raise CheckpointError(f"Cannot read checkpoint {path}: {exc.strerror or exc}.") from None
    if use_record:
        _delete_record(path, record_dir)
    return reason


def verify_file(
    path: str | os.PathLike,
    spec: CheckpointSpec,
    *,
    use_record: bool = True,
    progress: bool = False,
) -> None:
    """Raise CheckpointError unless ``path`` has ``spec``'s size and sha256.

    With ``use_record`` a matching record in ``<folder>/.verified/`` skips the hash, a
    successful hash writes one and a failure deletes it.
    """
    path = Path(path)
    reason = _check(path, spec, use_record=use_record, progress=progress)
    if reason is not None:
        raise CheckpointError(
            f"Checkpoint {path} is corrupt or incomplete ({reason}). "
            "Delete it and start again to download a fresh copy."
        )


# --------------------------------------------------------------------------- Hub errors


def _hf_cache_dir(cache_dir: str | os.PathLike | None) -> str:
    if cache_dir is not None:
        return str(cache_dir)
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _hub_offline() -> bool:
    from huggingface_hub import constants

    fn = getattr(constants, "is_offline_mode", None)
    return bool(fn() if callable(fn) else constants.HF_HUB_OFFLINE)


def _hub_url(repo_id: str, spec: CheckpointSpec) -> str:
    try:
        from huggingface_hub import hf_hub_url

        return hf_hub_url(repo_id, spec.hub_path)
    except Exception:  # pragma: no cover - invalid repo id etc.
        return f"https://huggingface.co/{repo_id}/resolve/main/{spec.hub_path}"


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and its causes/contexts, outermost first."""
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in out and len(out) < 10:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def _is_network_error(exc: BaseException) -> bool:
    """An HTTP-client transport error (httpx2 / httpx / httpcore / requests / urllib3)."""
    mod = type(exc).__module__.split(".")[0]
    return mod in {"httpx", "httpx2", "httpcore", "httpcore2", "requests", "urllib3"}


def _hub_reason(exc: BaseException, repo_id: str, spec: CheckpointSpec, cache: str) -> str:
    """One phrase saying why hf_hub_download failed."""
    from huggingface_hub import errors as hf_errors

    def first(name: str) -> BaseException | None:
        cls = getattr(hf_errors, name, None)
        return next((e for e in chain if cls is not None and isinstance(e, cls)), None)

    chain = _chain(exc)
    not_cached = f"the file is not in the local Hugging Face cache ({cache})"
    if first("OfflineModeIsEnabled") is not None or (first("LocalEntryNotFoundError") and _hub_offline()):
        return f"Hugging Face offline mode is on (HF_HUB_OFFLINE=1) and {not_cached}"
    if first("GatedRepoError") is not None:
        return f"the Hub repository {repo_id} is gated (needs access approval and a token)"
    if first("RepositoryNotFoundError") is not None:
        return f"the Hub repository {repo_id} was not found (or is private)"
    if first("RevisionNotFoundError") is not None:
        return f"the requested revision of {repo_id} was not found"
    local_cls = getattr(hf_errors, "LocalEntryNotFoundError", ())
    entry_cls = getattr(hf_errors, "EntryNotFoundError", ())
    if any(isinstance(e, entry_cls) and not isinstance(e, local_cls) for e in chain):
        return f"the file {spec.hub_path} is not in the Hub repository {repo_id}"
    if isinstance(exc, ValueError):  # HFValidationError etc.
        return f"the Hub repository id {repo_id!r} is invalid ({exc})"
    net = next((e for e in chain if _is_network_error(e)), None)
    if net is not None:
        detail = f"{type(net).__name__}: {net}".strip().rstrip(":")
        return f"the Hugging Face Hub could not be reached ({detail}) and {not_cached}"
    if first("LocalEntryNotFoundError") is not None:
        return f"the Hugging Face Hub could not be reached and {not_cached}"
    if first("HfHubHTTPError") is not None:
        return f"the Hub answered with an error ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
    return f"{type(exc).__name__}: {exc}"


def _download_failed_message(
    reason: str, spec: CheckpointSpec, repo_id: str, checkpoints_dir: Path, prefix: str = ""
) -> str:
    target = checkpoints_dir / spec.filename
    return (
        f"{prefix}Could not download the {spec.model_type} checkpoint {spec.filename}: {reason}.\n"
        f"Tried the Hugging Face Hub repo {repo_id}, file {spec.hub_path}.\n"
        "Two ways out:\n"
        f"  1. Download it yourself ({_human(spec.size)}, sha256 {spec.sha256}) from\n"
        f"       {spec.meta_url}\n"
        f"     or {_hub_url(repo_id, spec)}\n"
        f"     to {target}\n"
        "  2. Or pass --checkpoint PATH to use a checkpoint file you already have."
    )


# --------------------------------------------------------------------------- download


class _Lock:
    """A ``FileLock`` on ``<dir>/<filename>.lock`` that logs when it has to wait."""

    def __init__(self, path: Path) -> None:
        from filelock import FileLock

        self.path = path
        self.lock = FileLock(str(path))

    def __enter__(self) -> _Lock:
        from filelock import Timeout

        try:
            self.lock.acquire(timeout=0)
        except Timeout:
            log.info("Waiting for another process to finish with %s ...", self.path)
            self.lock.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.lock.release()


def _no_progress_tqdm() -> type:
    from tqdm.auto import tqdm

    class _Silent(tqdm):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.pop("name", None)
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return _Silent


def _hf_download(
    spec: CheckpointSpec,
    repo_id: str,
    cache_dir: str | os.PathLike | None,
    progress: bool,
    force: bool = False,
) -> Path:
    """``hf_hub_download`` into the HF cache; returns the real path of the cached file."""
    from huggingface_hub import hf_hub_download

    kwargs: dict[str, Any] = {"repo_id": repo_id, "filename": spec.hub_path, "cache_dir": cache_dir}
    if force:
        kwargs["force_download"] = True
    if not progress and "tqdm_class" in inspect.signature(hf_hub_download).parameters:
        kwargs["tqdm_class"] = _no_progress_tqdm()
    return Path(os.path.realpath(hf_hub_download(**kwargs)))


def _link_or_copy(src: Path, dst: Path, spec: CheckpointSpec, progress: bool) -> None:
    """Hard-link ``src`` to ``dst``; if that is impossible, stream a copy (then fsync)."""
    try:
        os.link(src, dst)
        return
    except OSError as exc:
        log.debug("cannot hard-link %s -> %s (%s); copying", src, dst, exc)
        _unlink(dst)
    try:
        free = shutil.disk_usage(dst.parent).free
    except OSError:
        free = None
    if free is not None and free < spec.size:
        raise OSError(errno.ENOSPC, f"only {_human(free)} free", str(dst))
    with open(src, "rb") as fin, open(dst, "wb") as raw:
        if progress and spec.size >= _HASH_PROGRESS_MIN:
            from tqdm.auto import tqdm

            with tqdm.wrapattr(raw, "write", total=spec.size, desc=f"Copying {spec.filename}") as fout:
                shutil.copyfileobj(fin, fout, 8 << 20)
        else:
            shutil.copyfileobj(fin, raw, 8 << 20)
        raw.flush()
        os.fsync(raw.fileno())


def _fetch(
    spec: CheckpointSpec,
    target: Path,
    repo_id: str,
    cache_dir: str | os.PathLike | None,
    progress: bool,
    prefix: str,
) -> Path:
    """Download ``spec`` to ``target`` (caller holds the lock): cache -> temp -> verify -> rename."""
    folder = target.parent
    force = False
    while True:
        try:
            src = _hf_download(spec, repo_id, cache_dir, progress, force=force)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            if isinstance(exc, OSError) and (_is_disk_full(exc) or _is_no_permission(exc)):
                err = _write_error(exc, Path(_hf_cache_dir(cache_dir)), spec, hf_cache=True)
                raise CheckpointError(f"{prefix}{err}") from None
            if not (
                isinstance(exc, (OSError, ValueError))
                or _is_network_error(exc)
                or type(exc).__module__.startswith("huggingface_hub")
            ):
                raise  # a bug, not a user problem
            reason = _hub_reason(exc, repo_id, spec, _hf_cache_dir(cache_dir))
            raise CheckpointError(_download_failed_message(reason, spec, repo_id, folder, prefix)) from None

        tmp = folder / f".{spec.filename}.{os.getpid()}.{secrets.token_hex(4)}{_PART_SUFFIX}"
        try:
            try:
                _link_or_copy(src, tmp, spec, progress)
            except OSError as exc:
                raise CheckpointError(f"{prefix}{_write_error(exc, target, spec)}") from None
            reason = _check(tmp, spec, use_record=False, progress=progress)
            if reason is None:
                st_before = tmp.stat()
                try:
                    os.replace(tmp, target)
                except OSError as exc:
                    raise CheckpointError(f"{prefix}{_write_error(exc, target, spec)}") from None
                st = target.stat()
                if st.st_ino == st_before.st_ino and st.st_size == spec.size:
                    _write_record(target, spec.sha256, st, None)
                log.info("Checkpoint %s ready at %s", spec.filename, target)
                return target
        finally:
            try:
                _unlink(tmp)
            except OSError:
                pass

        # The cached copy is bad. LFS blobs in the HF cache are named by their sha256: if the blob
        # claims to be the right file, the cache copy is damaged -> fetch it again, once.
        if not force and src.name == spec.sha256 and not _hub_offline():
            log.warning("Cached copy %s of %s is corrupt (%s); downloading it again", src, spec.filename, reason)
            force = True
            continue
        raise CheckpointError(
            f"{prefix}The downloaded {spec.model_type} checkpoint {spec.filename} is corrupt "
            f"({reason}); it was not saved as {target}.\n"
            f"The copy came from {src} (Hub repo {repo_id}, file {spec.hub_path}). "
            f"Delete that file and start again, or download {spec.meta_url} yourself to {target}, "
            "or pass --checkpoint PATH."
        )


def _resolve_explicit(path_arg: str | os.PathLike, spec: CheckpointSpec | None, checkpoints_dir: Path) -> Path:
    """Validate an explicit ``--checkpoint`` file (verified only if it has the official size)."""
    path = Path(path_arg).expanduser()
    if not path.exists():
        hint = (
            f" Leave --checkpoint out to download {spec.filename} automatically into {checkpoints_dir}."
            if spec is not None
            else ""
        )
        shown = str(path) if path.is_absolute() else f"{path} (absolute: {path.absolute()})"
        raise CheckpointError(f"Checkpoint file not found: {shown}.{hint}")
    if not path.is_file():
        hint = ""
        if spec is not None and (path / spec.filename).is_file():
            hint = f" Did you mean {path / spec.filename}?"
        raise CheckpointError(f"--checkpoint must be a file, but {path} is a folder.{hint}")
    if not os.access(path, os.R_OK):
        raise CheckpointError(f"Checkpoint file {path} is not readable (permission denied).")
    if spec is None:
        return path
    size = path.stat().st_size
    if size != spec.size:
        log.info(
            "%s is %s, not the size of the official %s checkpoint (%s): treating it as a fine-tuned "
            "checkpoint and not checking its sha256",
            path,
            _human(size),
            spec.model_type,
            _human(spec.size),
        )
        return path
    if os.environ.get(SKIP_VERIFY_ENV, "").strip() in {"1", "true", "yes"}:
        log.warning("%s=1: not verifying %s", SKIP_VERIFY_ENV, path)
        return path
    reason = _check(path, spec, record_dir=checkpoints_dir / _RECORD_DIR, progress=True)
    if reason is not None:
        raise CheckpointError(
            f"Checkpoint {path} has the size of the official {spec.model_type} checkpoint "
            f"{spec.filename} but is corrupt ({reason}). Download it again from {spec.meta_url}. "
            f"If it is a fine-tuned checkpoint of exactly that size on purpose, set {SKIP_VERIFY_ENV}=1."
        )
    return path


def resolve_checkpoint(
    model_type: str,
    checkpoint: str | os.PathLike | None = None,
    *,
    checkpoints_dir: str | os.PathLike | None = None,
    repo_id: str | None = None,
    spec: CheckpointSpec | None = None,
    progress: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> Path | None:
    """Return a verified checkpoint file for ``model_type`` (None: ``test-tiny`` random weights).

    ``checkpoint``: an explicit local file, used as is (never downloaded; sha256-checked only
    when its size equals the official size, otherwise accepted as a fine-tuned checkpoint).
    ``checkpoints_dir``: where managed files live (default :func:`default_checkpoints_dir`).
    ``repo_id``: Hub repo (default :func:`default_repo_id`). ``spec``: override the registry
    entry (tests). ``cache_dir``: Hugging Face cache (default: huggingface_hub's, i.e.
    ``HF_HUB_CACHE``). ``progress``: show download/verify progress bars.
    """
    if model_type not in MODEL_TYPES:
        raise CheckpointError(
            f"Unknown model type {model_type!r}. Valid model types: {', '.join(MODEL_TYPES)}."
        )
    if isinstance(checkpoint, str) and not checkpoint.strip():
        checkpoint = None
    folder = Path(checkpoints_dir).expanduser() if checkpoints_dir is not None else default_checkpoints_dir()

    if model_type == "test-tiny":
        return None if checkpoint is None else _resolve_explicit(checkpoint, spec, folder)
    spec = spec or CHECKPOINTS[model_type]
    if checkpoint is not None:
        return _resolve_explicit(checkpoint, spec, folder)

    repo_id = repo_id or default_repo_id()
    target = folder / spec.filename
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = _Lock(folder / f"{spec.filename}.lock")
        lock.__enter__()
    except OSError as exc:
        # Read-only checkpoints folder (e.g. baked into an image): usable if the file is there.
        if target.is_file() and _check(target, spec, progress=progress) is None:
            return target
        raise CheckpointError(
            f"Cannot use the checkpoints folder {folder}: {exc.strerror or exc}. "
            "Set SAM_CHECKPOINTS_DIR to a writable folder, or pass --checkpoint PATH."
        ) from None
    try:
        for stale in folder.glob(f".{spec.filename}.*{_PART_SUFFIX}"):  # leftovers of killed runs
            try:
                stale.unlink()
            except OSError:
                pass
        prefix = ""
        if target.is_dir():
            raise CheckpointError(f"{target} is a folder, not a checkpoint file: remove it and start again.")
        if target.exists():
            reason = _check(target, spec, progress=progress)
            if reason is None:
                return target
            note = f"{target} is corrupt or incomplete ({reason}) — deleting it and downloading again"
            log.warning(note)
            try:
                target.unlink()
            except OSError as exc:
                raise CheckpointError(
                    f"{target} is corrupt or incomplete ({reason}) and cannot be deleted "
                    f"({exc.strerror or exc}). Delete it by hand and start again."
                ) from None
            prefix = f"{target} was corrupt or incomplete ({reason}) and has been deleted.\n"
        return _fetch(spec, target, repo_id, cache_dir, progress, prefix)
    finally:
        lock.__exit__(None, None, None)
