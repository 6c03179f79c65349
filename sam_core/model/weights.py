"""SAM checkpoint download and verification.

``resolve_checkpoint(model_type)`` returns the path of a verified checkpoint file:

* ``test-tiny`` needs none (random weights), unless an explicit file is given.
* ``checkpoint=PATH`` is used as is and never downloaded. It is sha256-checked only when its size
  equals the official file's size (a corrupt copy is caught); a file of another size is taken to
  be a fine-tuned checkpoint.
* Otherwise ``<checkpoints_dir>/<filename>``. When it is missing or bad, it is taken from the
  Hugging Face cache if that holds the file (offline too, e.g. a Space's ``preload_from_hub``),
  hard-linked or copied; else ``hf_hub_download(local_dir=...)`` fetches it into a staging folder
  next to it (the library does the partial file and its atomic move). Either way the new file is
  verified (size + sha256) before it is renamed to its final name. A per-file ``FileLock`` makes
  a second process wait, then find the verified file.

A good sha256 leaves a record in ``<checkpoints_dir>/.verified/`` (size, mtime, ctime, inode);
while the file's stat matches it, later starts skip re-hashing a multi-GB file. Every failure a
user can fix raises :class:`CheckpointError` whose ``str()`` is a complete message.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import secrets
import shutil
from pathlib import Path

import huggingface_hub
from filelock import FileLock, Timeout
from huggingface_hub import constants as hf_constants
from huggingface_hub import errors as hf_errors
from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
from huggingface_hub.utils import tqdm as hf_tqdm

from sam_core.core.errors import CheckpointError, ResourceError
from sam_core.core.files import write_atomic
from sam_core.model.registry import (
    CHECKPOINTS,
    DEFAULT_REPO_ID,
    MODEL_TYPES,
    MODELS,
    CheckpointSpec,
    default_checkpoints_dir,
    human_size,
)

__all__ = [
    "CHECKPOINTS",
    "DEFAULT_REPO_ID",
    "MODEL_TYPES",
    "SKIP_VERIFY_ENV",
    "CheckpointError",
    "CheckpointSpec",
    "checkpoint_sha256",
    "default_checkpoints_dir",
    "default_repo_id",
    "resolve_checkpoint",
    "sha256_file",
    "verify_file",
]

log = logging.getLogger(__name__)

#: Set to 1 to load an explicit ``--checkpoint`` whose size equals the official one but whose
#: sha256 differs (e.g. a fine-tuned state dict that happens to have exactly the same size).
SKIP_VERIFY_ENV = "SAM_SKIP_CHECKPOINT_VERIFY"

_RECORD_DIR = ".verified"
_PART = ".part"
_HF_BARS = "huggingface_hub"  # progress-bar group of hf_hub_download's bars
_PROGRESS_MIN = 256 << 20  # hashing / copying progress bars only for files at least this big
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
_NO_PERMISSION = {errno.EACCES, errno.EPERM, errno.EROFS}


def default_repo_id() -> str:
    """``$SAM_HUB_REPO`` if set, else :data:`DEFAULT_REPO_ID`."""
    return os.environ.get("SAM_HUB_REPO", "").strip() or DEFAULT_REPO_ID


def _unlink(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.debug("could not delete %s: %s", path, exc)


# --------------------------------------------------------------------------- hashing and records


def sha256_file(path: str | os.PathLike, *, chunk: int = 8 << 20, progress: bool = False) -> str:
    """Hex sha256 of a file, read in ``chunk``-byte blocks (optionally with a tqdm bar)."""
    path = Path(path)
    h = hashlib.sha256()
    bar = None
    if progress:
        bar = hf_tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=f"Verifying {path.name}")
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
    """``<folder>/.verified/<name>.json``; in ``record_dir`` (explicit files) keyed by the absolute path too."""
    if record_dir is None:
        return path.parent / _RECORD_DIR / f"{path.name}.json"
    key = hashlib.sha1(str(path.absolute()).encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return record_dir / f"{path.name}.{key}.json"


def _stat_key(st: os.stat_result) -> dict[str, int]:
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "inode": st.st_ino}


def _record_matches(path: Path, spec: CheckpointSpec, record_dir: Path | None) -> bool:
    """True if a record says this exact file (same stat) already hashed to ``spec.sha256``."""
    try:
        rec = json.loads(_record_path(path, record_dir).read_text(encoding="utf-8"))
        st = path.stat()
    except (OSError, ValueError):
        return False
    return (
        isinstance(rec, dict)
        and rec.get("sha256") == spec.sha256
        and rec.get("path") == str(path.absolute())
        and all(rec.get(k) == v for k, v in _stat_key(st).items())
    )


def _write_record(path: Path, st: os.stat_result, spec: CheckpointSpec, record_dir: Path | None = None) -> None:
    """Write the verification record of ``path`` (stat ``st``); a failure only costs a re-hash later."""
    data = {"path": str(path.absolute()), "sha256": spec.sha256, **_stat_key(st)}
    try:
        write_atomic(_record_path(path, record_dir), json.dumps(data, indent=1).encode())
    except ResourceError as exc:
        log.debug("no verification record for %s: %s", path, exc)


def _check(
    path: Path, spec: CheckpointSpec, *, use_record: bool = True, record_dir: Path | None = None, progress: bool = False
) -> str | None:
    """Verify ``path`` against ``spec``: None if good, else a short reason.

    Size first (cheap), then the record (if ``use_record``), then sha256. A success writes the
    record, a failure deletes it (if ``use_record``). Raises CheckpointError if unreadable.
    """
    try:
        st = path.stat()
        if st.st_size != spec.size:
            reason = f"size {st.st_size:,} bytes, expected {spec.size:,}"
        elif use_record and _record_matches(path, spec, record_dir):
            log.debug("%s: verification record matches, not hashing again", path)
            return None
        else:
            actual = sha256_file(path, progress=progress and st.st_size >= _PROGRESS_MIN)
            if actual == spec.sha256:
                if use_record and _stat_key(path.stat()) == _stat_key(st):
                    _write_record(path, st, spec, record_dir)
                return None
            reason = f"sha256 {actual}, expected {spec.sha256}"
    except OSError as exc:
        raise CheckpointError(f"Cannot read checkpoint {path}: {exc.strerror or exc}.") from None
    if use_record:
        _unlink(_record_path(path, record_dir))
    return reason


def checkpoint_sha256(
    path: str | os.PathLike, *, checkpoints_dir: str | os.PathLike | None = None, progress: bool = True
) -> str:
    """The sha256 of a checkpoint file: from a verification record while the file's stat matches it
    (official files were hashed when verified), else hashed now. A big file's hash is recorded
    under ``<checkpoints_dir>/.verified/`` so the next start does not hash it again.
    """
    path = Path(path)
    st = path.stat()
    record_dirs: list[Path | None] = [None]
    if checkpoints_dir is not None:
        record_dirs.append(Path(checkpoints_dir).expanduser() / _RECORD_DIR)
    for record_dir in record_dirs:
        try:
            rec = json.loads(_record_path(path, record_dir).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        digest = rec.get("sha256") if isinstance(rec, dict) else None
        if (
            isinstance(digest, str)
            and len(digest) == 64
            and rec.get("path") == str(path.absolute())
            and all(rec.get(k) == v for k, v in _stat_key(st).items())
        ):
            return digest
    digest = sha256_file(path, progress=progress and st.st_size >= _PROGRESS_MIN)
    if st.st_size >= _PROGRESS_MIN and _stat_key(path.stat()) == _stat_key(st):
        spec = CheckpointSpec("", path.name, "", st.st_size, digest)
        _write_record(path, st, spec, record_dirs[-1])
    return digest


def verify_file(
    path: str | os.PathLike, spec: CheckpointSpec, *, use_record: bool = True, progress: bool = False
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


# --------------------------------------------------------------------------- error messages


def _write_error(exc: OSError, path: Path, spec: CheckpointSpec) -> CheckpointError:
    """A CheckpointError for a failed write of ``path`` (disk full / permission denied / other)."""
    way_out = "set SAM_CHECKPOINTS_DIR to a folder on {}, or pass --checkpoint PATH to use a file you already have."
    if exc.errno in _DISK_FULL:
        return CheckpointError(
            f"Not enough disk space to write {path} (the file needs {human_size(spec.size)}). "
            f"Free some space on that disk, or {way_out.format('a disk with room')}"
        )
    if exc.errno in _NO_PERMISSION:
        return CheckpointError(
            f"Permission denied while writing {path} ({exc.strerror or exc}). "
            f"Make that folder writable, or {way_out.format('a writable disk')}"
        )
    return CheckpointError(
        f"Could not write {path}: {exc.strerror or exc}. Check that disk, or {way_out.format('another disk')}"
    )


def _hub_offline() -> bool:
    return bool(hf_constants.HF_HUB_OFFLINE)


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
    return type(exc).__module__.split(".")[0] in {"httpx", "httpx2", "httpcore", "httpcore2", "requests", "urllib3"}


def _hub_reason(exc: BaseException, repo_id: str, spec: CheckpointSpec, cache: str) -> str:
    """One phrase saying why ``hf_hub_download`` failed."""
    chain = _chain(exc)

    def has(cls: type[BaseException]) -> bool:
        return any(isinstance(e, cls) for e in chain)

    not_cached = f"the file is not in the local Hugging Face cache ({cache})"
    if has(hf_errors.OfflineModeIsEnabled) or (has(hf_errors.LocalEntryNotFoundError) and _hub_offline()):
        return f"Hugging Face offline mode is on (HF_HUB_OFFLINE=1) and {not_cached}"
    if has(hf_errors.GatedRepoError):
        return f"the Hub repository {repo_id} is gated (needs access approval and a token)"
    if has(hf_errors.RepositoryNotFoundError):
        return f"the Hub repository {repo_id} was not found (or is private)"
    if has(hf_errors.RevisionNotFoundError):
        return f"the requested revision of {repo_id} was not found"
    if any(
        isinstance(e, hf_errors.EntryNotFoundError) and not isinstance(e, hf_errors.LocalEntryNotFoundError)
        for e in chain
    ):
        return f"the file {spec.hub_path} is not in the Hub repository {repo_id}"
    if has(hf_errors.HFValidationError):
        return f"the Hub repository id {repo_id!r} is invalid ({exc})"
    net = next((e for e in chain if _is_network_error(e)), None)
    if net is not None:
        detail = f"{type(net).__name__}: {net}".strip().rstrip(":")
        return f"the Hugging Face Hub could not be reached ({detail}) and {not_cached}"
    if has(hf_errors.LocalEntryNotFoundError):
        return f"the Hugging Face Hub could not be reached and {not_cached}"
    if has(hf_errors.HfHubHTTPError):
        return f"the Hub answered with an error ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
    return f"{type(exc).__name__}: {exc}"


def _download_failed(reason: str, spec: CheckpointSpec, repo_id: str, target: Path) -> CheckpointError:
    return CheckpointError(
        f"Could not download the {spec.model_type} checkpoint {spec.filename}: {reason}.\n"
        f"Tried the Hugging Face Hub repo {repo_id}, file {spec.hub_path}.\n"
        "Two ways out:\n"
        f"  1. Download it yourself ({human_size(spec.size)}, sha256 {spec.sha256}) from\n"
        f"       {spec.meta_url}\n"
        f"     or {hf_constants.ENDPOINT}/{repo_id}/resolve/main/{spec.hub_path}\n"
        f"     to {target}\n"
        "  2. Or pass --checkpoint PATH to use a checkpoint file you already have."
    )


def _corrupt_download(
    reason: str, spec: CheckpointSpec, repo_id: str, target: Path, cached: Path | None
) -> CheckpointError:
    origin = f"Hub repo {repo_id}, file {spec.hub_path}"
    if cached is not None:
        came_from = (
            f"The copy came from {cached} in the Hugging Face cache ({origin}). Delete that file and start again"
        )
    else:
        came_from = f"The copy came from the {origin}. Start again to retry"
    return CheckpointError(
        f"The downloaded {spec.model_type} checkpoint {spec.filename} is corrupt ({reason}); "
        f"it was not saved as {target}.\n"
        f"{came_from}, or download {spec.meta_url} yourself to {target}, or pass --checkpoint PATH."
    )


# --------------------------------------------------------------------------- download


def _from_cache(spec: CheckpointSpec, repo_id: str, cache_dir: str | None) -> Path | None:
    """The file in the Hugging Face cache (``refs/main`` -> snapshot), or None. Never touches the network."""
    try:
        found = huggingface_hub.try_to_load_from_cache(repo_id, spec.hub_path, cache_dir=cache_dir)
    except ValueError:  # invalid repo id: hf_hub_download reports it
        return None
    return Path(os.path.realpath(found)) if isinstance(found, str) else None


def _from_hub(
    spec: CheckpointSpec, repo_id: str, staging: Path, cache_dir: str | None, force: bool, progress: bool
) -> Path:
    """``hf_hub_download`` into ``staging`` (the file lands at ``staging/<hub_path>``)."""
    quiet = (
        not progress and hf_constants.HF_HUB_DISABLE_PROGRESS_BARS is None and not are_progress_bars_disabled(_HF_BARS)
    )
    if quiet:
        disable_progress_bars(_HF_BARS)
    try:
        path = huggingface_hub.hf_hub_download(
            repo_id=repo_id, filename=spec.hub_path, local_dir=staging, cache_dir=cache_dir, force_download=force
        )
    except Exception as exc:
        target = staging.parent / spec.filename
        if isinstance(exc, OSError) and exc.errno in _DISK_FULL | _NO_PERMISSION:
            raise _write_error(exc, target, spec) from None
        if not (
            isinstance(exc, (OSError, ValueError))
            or _is_network_error(exc)
            or type(exc).__module__.startswith("huggingface_hub")
        ):
            raise  # a bug, not a user problem
        reason = _hub_reason(exc, repo_id, spec, cache_dir or hf_constants.HF_HUB_CACHE)
        raise _download_failed(reason, spec, repo_id, target) from None
    finally:
        if quiet:
            enable_progress_bars(_HF_BARS)
    return Path(path)


def _link_or_copy(src: Path, dst: Path, spec: CheckpointSpec, progress: bool) -> None:
    """Hard-link ``src`` to ``dst``; if that is impossible, copy it (then fsync)."""
    try:
        os.link(src, dst)
        return
    except OSError as exc:
        log.debug("cannot hard-link %s -> %s (%s); copying", src, dst, exc)
    free = shutil.disk_usage(dst.parent).free
    if free < spec.size:
        raise OSError(errno.ENOSPC, f"only {human_size(free)} free", str(dst))
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        if progress and spec.size >= _PROGRESS_MIN:
            with hf_tqdm.wrapattr(fout, "write", total=spec.size, desc=f"Copying {spec.filename}") as bar:
                shutil.copyfileobj(fin, bar, 8 << 20)
        else:
            shutil.copyfileobj(fin, fout, 8 << 20)
        fout.flush()
        os.fsync(fout.fileno())


def _install(src: Path, target: Path, spec: CheckpointSpec, progress: bool, *, move: bool = False) -> str | None:
    """Link/copy (or ``move``) ``src`` to a temp file, verify it, rename it to ``target``.

    Returns None once installed, else why ``src`` is bad (nothing is installed then).
    """
    tmp = target.with_name(f".{spec.filename}.{os.getpid()}.{secrets.token_hex(4)}{_PART}")
    try:
        try:
            if move:
                os.replace(src, tmp)
            else:
                _link_or_copy(src, tmp, spec, progress)
        except OSError as exc:
            raise _write_error(exc, target, spec) from None
        reason = _check(tmp, spec, use_record=False, progress=progress)
        if reason is not None:
            return reason
        inode = tmp.stat().st_ino
        try:
            os.replace(tmp, target)
        except OSError as exc:
            raise _write_error(exc, target, spec) from None
        st = target.stat()
        if st.st_ino == inode:
            _write_record(target, st, spec)
        log.info("Checkpoint %s ready at %s", spec.filename, target)
        return None
    finally:
        _unlink(tmp)


def _fetch(spec: CheckpointSpec, target: Path, repo_id: str, cache_dir: str | None, progress: bool) -> None:
    """Put a verified ``spec`` file at ``target`` (the caller holds the lock): the HF cache first, else the Hub."""
    cached = _from_cache(spec, repo_id, cache_dir)
    if cached is not None:
        reason = _install(cached, target, spec, progress)
        if reason is None:
            return
        if _hub_offline():
            raise _corrupt_download(reason, spec, repo_id, target, cached)
        log.warning("Cached copy %s of %s is corrupt (%s); downloading it again", cached, spec.filename, reason)
    # The staging folder is ours while we hold the lock: it holds hf_hub_download's file and its
    # .cache/huggingface/ metadata (local_dir would otherwise nest the file under checkpoints/).
    staging = target.with_name(f".{spec.filename}.download")
    shutil.rmtree(staging, ignore_errors=True)  # leftovers of a killed run
    try:
        # force: bypass a corrupt cache copy (hf_hub_download would copy it again)
        src = _from_hub(spec, repo_id, staging, cache_dir, force=cached is not None, progress=progress)
        reason = _install(src, target, spec, progress, move=True)
        if reason is not None:
            raise _corrupt_download(reason, spec, repo_id, target, None)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# --------------------------------------------------------------------------- resolve


def _resolve_explicit(path_arg: str | os.PathLike, spec: CheckpointSpec | None, checkpoints_dir: Path) -> Path:
    """Validate an explicit ``--checkpoint`` file (verified only if it has the official size)."""
    path = Path(path_arg).expanduser()
    if not path.exists():
        hint = (
            f" Leave --checkpoint out to download {spec.filename} automatically into {checkpoints_dir}." if spec else ""
        )
        shown = str(path) if path.is_absolute() else f"{path} (absolute: {path.absolute()})"
        raise CheckpointError(f"Checkpoint file not found: {shown}.{hint}")
    if not path.is_file():
        hint = f" Did you mean {path / spec.filename}?" if spec and (path / spec.filename).is_file() else ""
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
            human_size(size),
            spec.model_type,
            human_size(spec.size),
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
    model = MODELS.get(model_type)
    if model is None:
        raise CheckpointError(f"Unknown model type {model_type!r}. Valid model types: {', '.join(MODEL_TYPES)}.")
    if isinstance(checkpoint, str) and not checkpoint.strip():
        checkpoint = None
    folder = Path(checkpoints_dir).expanduser() if checkpoints_dir is not None else default_checkpoints_dir()
    if checkpoint is not None:
        return _resolve_explicit(checkpoint, spec or model.checkpoint, folder)
    if model.checkpoint is None:
        return None  # test-tiny: random weights
    spec = spec or model.checkpoint

    target = folder / spec.filename
    lock = FileLock(folder / f"{spec.filename}.lock")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.info("Waiting for another process to finish with %s ...", target)
            lock.acquire()
    except OSError as exc:
        # A read-only checkpoints folder (e.g. baked into an image) is fine if the file is there.
        if target.is_file() and _check(target, spec, progress=progress) is None:
            return target
        raise CheckpointError(
            f"Cannot use the checkpoints folder {folder}: {exc.strerror or exc}. "
            "Set SAM_CHECKPOINTS_DIR to a writable folder, or pass --checkpoint PATH."
        ) from None
    try:
        for stale in folder.glob(f".{spec.filename}.*{_PART}"):  # leftovers of killed runs
            _unlink(stale)
        if target.is_dir():
            raise CheckpointError(f"{target} is a folder, not a checkpoint file: remove it and start again.")
        prefix = ""
        if target.exists():
            reason = _check(target, spec, progress=progress)
            if reason is None:
                return target
            log.warning("%s is corrupt or incomplete (%s) — deleting it and downloading again", target, reason)
            try:
                target.unlink()
            except OSError as exc:
                raise CheckpointError(
                    f"{target} is corrupt or incomplete ({reason}) and cannot be deleted "
                    f"({exc.strerror or exc}). Delete it by hand and start again."
                ) from None
            prefix = f"{target} was corrupt or incomplete ({reason}) and has been deleted.\n"
        try:
            _fetch(
                spec, target, repo_id or default_repo_id(), str(cache_dir) if cache_dir is not None else None, progress
            )
        except CheckpointError as exc:
            raise CheckpointError(f"{prefix}{exc}") from None
        return target
    finally:
        lock.release()
