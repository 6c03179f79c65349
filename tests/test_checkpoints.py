"""Tests for sam_core.model.weights: registry, offline-cache download, verification, locking.

No network: a Hugging Face cache is pre-filled with small fake files and huggingface_hub runs
in offline mode (HF_HUB_OFFLINE=1 in subprocesses, or the constant patched in-process).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sam_core.core.errors import CheckpointError, UserError
from sam_core.model import weights as ck

REPO_ROOT = Path(__file__).resolve().parent.parent
REPO_ID = "ybelkada/segment-anything"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
FILENAME = "sam_vit_b_fake01.pth"


# --------------------------------------------------------------------------- helpers


def make_spec(data: bytes, filename: str = FILENAME, model_type: str = "vit_b") -> ck.CheckpointSpec:
    """A CheckpointSpec describing ``data``."""
    return ck.CheckpointSpec(
        model_type=model_type,
        filename=filename,
        hub_path=f"checkpoints/{filename}",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )


def fill_cache(cache: Path, hub_path: str, data: bytes, repo_id: str = REPO_ID) -> Path:
    """Pre-fill an HF cache like hf_hub_download does: blob named by sha256 + snapshot symlink."""
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(COMMIT)
    blob = repo_dir / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    snap = repo_dir / "snapshots" / COMMIT / hub_path
    snap.parent.mkdir(parents=True, exist_ok=True)
    if snap.is_symlink() or snap.exists():
        snap.unlink()
    snap.symlink_to(os.path.relpath(blob, snap.parent))
    return blob


def record_file(folder: Path, filename: str = FILENAME) -> Path:
    return folder / ".verified" / f"{filename}.json"


def part_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.endswith(".part") or p.name.endswith(".tmp")]


def flip_byte(path: Path, offset: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture
def data() -> bytes:
    return os.urandom(8 * 1024)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """huggingface_hub offline mode in this process (it reads the env var at import time)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def hash_calls(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Spy on sam_core.model.weights.sha256_file; returns the list of hashed paths."""
    calls: list[Path] = []
    real = ck.sha256_file

    def spy(path, **kwargs):
        calls.append(Path(path))
        return real(path, **kwargs)

    monkeypatch.setattr(ck, "sha256_file", spy)
    return calls


# Runs in a fresh interpreter. The bare "sam_core" package stub skips sam_core/__init__.py (which
# imports torch through the engine): checkpoints.py itself must not need torch.
SCRIPT = r"""
import json, os, sys, time, types
args = json.loads(sys.argv[1])
pkg = types.ModuleType("sam_core")
pkg.__path__ = [os.path.join(args["root"], "sam_core")]
sys.modules["sam_core"] = pkg
from sam_core.model.weights import CheckpointSpec, resolve_checkpoint
from sam_core.core.errors import CheckpointError
spec = CheckpointSpec(**args["spec"])
barrier = args.get("barrier")
if barrier:  # wait until every process is ready, so they resolve at the same moment
    open(os.path.join(barrier["dir"], str(os.getpid())), "w").close()
    deadline = time.time() + 30
    while len(os.listdir(barrier["dir"])) < barrier["n"] and time.time() < deadline:
        time.sleep(0.001)
try:
    path = resolve_checkpoint(spec.model_type, checkpoints_dir=args["dir"], spec=spec, progress=False)
    print(json.dumps({"path": str(path)}))
except CheckpointError as exc:
    print(json.dumps({"error": str(exc), "type": type(exc).__name__}))
"""


def run_resolve(tmp_path: Path, spec: ck.CheckpointSpec, folder: Path, cache: Path, **extra) -> subprocess.Popen:
    """Start a subprocess that resolves ``spec`` with huggingface_hub really offline."""
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
        HF_HUB_OFFLINE="1",
        HF_HUB_CACHE=str(cache),
        HF_HOME=str(tmp_path / "hf_home"),
        HF_HUB_DISABLE_TELEMETRY="1",
    )
    args = {"spec": spec.__dict__, "dir": str(folder), "root": str(REPO_ROOT), **extra}
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, json.dumps(args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


# --------------------------------------------------------------------------- registry


def test_registry_matches_design() -> None:
    expected = {
        "vit_h": ("sam_vit_h_4b8939.pth", 2_564_550_879,
                  "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e"),
        "vit_l": ("sam_vit_l_0b3195.pth", 1_249_524_607,
                  "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622"),
        "vit_b": ("sam_vit_b_01ec64.pth", 375_042_383,
                  "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912"),
    }
    assert set(ck.CHECKPOINTS) == set(expected)
    assert ck.MODEL_TYPES == ("vit_h", "vit_l", "vit_b", "test-tiny")
    assert ck.DEFAULT_REPO_ID == REPO_ID
    for model_type, (filename, size, sha) in expected.items():
        spec = ck.CHECKPOINTS[model_type]
        assert spec.model_type == model_type
        assert spec.filename == filename
        assert spec.hub_path == f"checkpoints/{filename}"
        assert spec.size == size
        assert spec.sha256 == sha and re.fullmatch(r"[0-9a-f]{64}", spec.sha256)
        assert spec.meta_url == f"https://dl.fbaipublicfiles.com/segment_anything/{filename}"
        assert re.fullmatch(rf"sam_{model_type}_[0-9a-f]{{6}}\.pth", filename)


def test_defaults_follow_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SAM_CHECKPOINTS_DIR", raising=False)
    monkeypatch.delenv("SAM_HUB_REPO", raising=False)
    assert ck.default_checkpoints_dir() == REPO_ROOT / "checkpoints"
    assert ck.default_repo_id() == REPO_ID
    monkeypatch.setenv("SAM_CHECKPOINTS_DIR", str(tmp_path / "w"))
    monkeypatch.setenv("SAM_HUB_REPO", "me/my-sam")
    assert ck.default_checkpoints_dir() == tmp_path / "w"
    assert ck.default_repo_id() == "me/my-sam"


def test_checkpoint_error_is_user_error() -> None:
    assert issubclass(CheckpointError, UserError)


# --------------------------------------------------------------------------- model types


def test_test_tiny_needs_no_checkpoint(tmp_path: Path) -> None:
    assert ck.resolve_checkpoint("test-tiny", checkpoints_dir=tmp_path) is None
    weights = tmp_path / "tiny.pth"
    weights.write_bytes(b"x" * 10)
    assert ck.resolve_checkpoint("test-tiny", weights, checkpoints_dir=tmp_path) == weights
    with pytest.raises(CheckpointError, match="not found"):
        ck.resolve_checkpoint("test-tiny", tmp_path / "missing.pth", checkpoints_dir=tmp_path)


def test_unknown_model_type_lists_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError) as info:
        ck.resolve_checkpoint("vit_xl", checkpoints_dir=tmp_path)
    msg = str(info.value)
    assert "vit_xl" in msg
    for model_type in ck.MODEL_TYPES:
        assert model_type in msg


# --------------------------------------------------------------------------- explicit --checkpoint


def test_explicit_checkpoint_missing(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "sam.pth"
    with pytest.raises(CheckpointError) as info:
        ck.resolve_checkpoint("vit_b", missing, checkpoints_dir=tmp_path / "ck")
    assert str(missing) in str(info.value) and "not found" in str(info.value)
    assert not (tmp_path / "ck").exists()  # nothing downloaded, nothing created


def test_explicit_checkpoint_is_a_folder(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="folder"):
        ck.resolve_checkpoint("vit_b", tmp_path, checkpoints_dir=tmp_path / "ck")


def test_explicit_checkpoint_other_size_is_accepted_unverified(tmp_path: Path, data: bytes, hash_calls) -> None:
    spec = make_spec(data)
    finetuned = tmp_path / "finetuned.pth"
    finetuned.write_bytes(data + b"extra")
    assert ck.resolve_checkpoint("vit_b", finetuned, checkpoints_dir=tmp_path / "ck", spec=spec) == finetuned
    assert ck.resolve_checkpoint("vit_b", str(finetuned), spec=spec) == finetuned
    assert hash_calls == []


def test_explicit_checkpoint_official_size_is_verified(tmp_path: Path, data: bytes, hash_calls) -> None:
    spec = make_spec(data)
    good = tmp_path / "mine.pth"
    good.write_bytes(data)
    assert ck.resolve_checkpoint("vit_b", good, checkpoints_dir=tmp_path / "ck", spec=spec) == good
    assert ck.resolve_checkpoint("vit_b", good, checkpoints_dir=tmp_path / "ck", spec=spec) == good
    assert hash_calls == [good]  # second call used the record

    flip_byte(good)
    with pytest.raises(CheckpointError) as info:
        ck.resolve_checkpoint("vit_b", good, checkpoints_dir=tmp_path / "ck", spec=spec)
    msg = str(info.value)
    assert str(good) in msg and spec.sha256 in msg and spec.meta_url in msg
    assert good.exists()  # a user's own file is never deleted


# --------------------------------------------------------------------------- download (subprocess)


def test_download_through_offline_cache(tmp_path: Path, data: bytes) -> None:
    spec = make_spec(data)
    cache, folder = tmp_path / "hf", tmp_path / "ck"
    fill_cache(cache, spec.hub_path, data)

    out = result(run_resolve(tmp_path, spec, folder, cache))
    target = folder / FILENAME
    assert out == {"path": str(target)}
    assert target.read_bytes() == data
    assert not target.is_symlink()
    rec = json.loads(record_file(folder).read_text())
    st = target.stat()
    assert rec["size"] == len(data) and rec["sha256"] == spec.sha256 and rec["mtime_ns"] == st.st_mtime_ns
    assert part_files(folder) == []
    assert not (folder / "checkpoints").exists()  # not nested like local_dir would


def test_offline_empty_cache_error_message(tmp_path: Path, data: bytes) -> None:
    spec = make_spec(data)
    folder = tmp_path / "ck"
    out = result(run_resolve(tmp_path, spec, folder, tmp_path / "empty-cache"))
    assert out.get("type") == "CheckpointError", out
    msg = out["error"]
    for needle in (FILENAME, REPO_ID, spec.hub_path, spec.meta_url, "--checkpoint", str(folder / FILENAME), "offline"):
        assert needle in msg, (needle, msg)
    assert "Traceback" not in msg
    assert not (folder / FILENAME).exists()


def test_two_processes_at_once(tmp_path: Path) -> None:
    data = os.urandom(2 << 20)
    spec = make_spec(data)
    cache, folder = tmp_path / "hf", tmp_path / "ck"
    fill_cache(cache, spec.hub_path, data)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = [run_resolve(tmp_path, spec, folder, cache, barrier={"dir": str(barrier), "n": 2}) for _ in range(2)]
    outs = [result(p) for p in procs]
    target = folder / FILENAME
    assert outs == [{"path": str(target)}] * 2
    assert hashlib.sha256(target.read_bytes()).hexdigest() == spec.sha256
    assert part_files(folder) == []
    assert record_file(folder).exists()


# --------------------------------------------------------------------------- download (in-process)


def test_download_in_process_with_cache_dir(tmp_path: Path, data: bytes, offline) -> None:
    spec = make_spec(data)
    fill_cache(tmp_path / "hf", spec.hub_path, data)
    path = ck.resolve_checkpoint("vit_b", checkpoints_dir=tmp_path / "ck", spec=spec,
                                 cache_dir=tmp_path / "hf", progress=False)
    assert path == tmp_path / "ck" / FILENAME and path.read_bytes() == data


def test_corrupt_file_without_cache_is_not_kept(tmp_path: Path, data: bytes, offline) -> None:
    spec = make_spec(data)
    folder = tmp_path / "ck"
    folder.mkdir()
    target = folder / FILENAME
    target.write_bytes(data)
    ck.verify_file(target, spec)  # leaves a record for the good file
    assert record_file(folder).exists()
    time.sleep(0.01)
    flip_byte(target)  # same size, different bytes, new mtime

    with pytest.raises(CheckpointError) as info:
        ck.resolve_checkpoint("vit_b", checkpoints_dir=folder, spec=spec, cache_dir=tmp_path / "empty")
    msg = str(info.value)
    assert str(target) in msg and "corrupt" in msg and spec.meta_url in msg and "--checkpoint" in msg
    assert not target.exists()
    assert not record_file(folder).exists()


def cached_and_placed(tmp_path: Path, data: bytes, placed: bytes):
    """A good copy in the Hub cache and ``placed`` bytes under the final name: (spec, folder, target)."""
    spec = make_spec(data)
    fill_cache(tmp_path / "hf", spec.hub_path, data)
    folder = tmp_path / "ck"
    folder.mkdir()
    target = folder / FILENAME
    target.write_bytes(placed)
    return spec, folder, target


def test_corrupt_file_replaced_from_cache(tmp_path: Path, data: bytes, offline, caplog) -> None:
    spec, folder, target = cached_and_placed(tmp_path, data, data)
    flip_byte(target)
    with caplog.at_level("WARNING", logger="sam_core.model.weights"):
        path = ck.resolve_checkpoint("vit_b", checkpoints_dir=folder, spec=spec, cache_dir=tmp_path / "hf")
    assert path == target and target.read_bytes() == data
    assert any(str(target) in r.getMessage() and "downloading again" in r.getMessage() for r in caplog.records)
    assert json.loads(record_file(folder).read_text())["sha256"] == spec.sha256


def test_truncated_file_refetched(tmp_path: Path, data: bytes, offline, hash_calls) -> None:
    spec, folder, target = cached_and_placed(tmp_path, data, data[:1000])
    path = ck.resolve_checkpoint("vit_b", checkpoints_dir=folder, spec=spec, cache_dir=tmp_path / "hf")
    assert path == target and target.read_bytes() == data
    assert len(hash_calls) == 1 and hash_calls[0] != target  # size check rejected it; only the download hashed


def test_verified_record_skips_rehash_until_touched(tmp_path: Path, data: bytes, offline, hash_calls) -> None:
    spec = make_spec(data)
    fill_cache(tmp_path / "hf", spec.hub_path, data)
    kw = dict(checkpoints_dir=tmp_path / "ck", spec=spec, cache_dir=tmp_path / "hf")
    target = ck.resolve_checkpoint("vit_b", **kw)
    assert len(hash_calls) == 1  # the download
    assert ck.resolve_checkpoint("vit_b", **kw) == target
    assert ck.resolve_checkpoint("vit_b", **kw) == target
    assert len(hash_calls) == 1  # record matched: no re-hash

    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert ck.resolve_checkpoint("vit_b", **kw) == target
    assert hash_calls[1:] == [target]  # mtime changed -> hashed again
    assert json.loads(record_file(tmp_path / "ck").read_text())["mtime_ns"] == target.stat().st_mtime_ns
    assert ck.resolve_checkpoint("vit_b", **kw) == target
    assert len(hash_calls) == 2


def test_verify_file_reports_size_and_hash(tmp_path: Path, data: bytes) -> None:
    spec = make_spec(data)
    path = tmp_path / FILENAME
    path.write_bytes(data[:-1])
    with pytest.raises(CheckpointError, match=rf"size {len(data) - 1:,} bytes, expected {len(data):,}"):
        ck.verify_file(path, spec)
    path.write_bytes(bytes([data[0] ^ 1]) + data[1:])
    with pytest.raises(CheckpointError) as info:
        ck.verify_file(path, spec)
    assert spec.sha256 in str(info.value) and hashlib.sha256(path.read_bytes()).hexdigest() in str(info.value)
    assert not record_file(tmp_path).exists()
    path.write_bytes(data)
    ck.verify_file(path, spec, use_record=False)
    assert not record_file(tmp_path).exists()
    assert ck.sha256_file(path, chunk=1000) == spec.sha256


def test_bad_hash_in_cache_is_not_installed(tmp_path: Path, data: bytes, offline) -> None:
    spec = make_spec(data)
    bad = bytearray(data)
    bad[5] ^= 1
    fill_cache(tmp_path / "hf", spec.hub_path, bytes(bad))
    folder = tmp_path / "ck"
    with pytest.raises(CheckpointError) as info:
        ck.resolve_checkpoint("vit_b", checkpoints_dir=folder, spec=spec, cache_dir=tmp_path / "hf")
    msg = str(info.value)
    assert str(folder / FILENAME) in msg
    assert spec.sha256 in msg and hashlib.sha256(bytes(bad)).hexdigest() in msg
    assert not (folder / FILENAME).exists()
    assert not record_file(folder).exists()
    assert part_files(folder) == []


def _no_link(*args, **kwargs):
    raise OSError(errno.EXDEV, "Invalid cross-device link")


def test_copy_when_hard_link_impossible(tmp_path: Path, data: bytes, offline, monkeypatch) -> None:
    spec = make_spec(data)
    blob = fill_cache(tmp_path / "hf", spec.hub_path, data)
    monkeypatch.setattr(ck.os, "link", _no_link)
    path = ck.resolve_checkpoint("vit_b", checkpoints_dir=tmp_path / "ck", spec=spec, cache_dir=tmp_path / "hf")
    assert path.read_bytes() == data
    assert path.stat().st_ino != blob.stat().st_ino


@pytest.mark.parametrize(
    ("err", "words"),
    [(errno.ENOSPC, ("disk", "space")), (errno.EACCES, ("Permission denied",))],
)
def test_write_errors(tmp_path: Path, data: bytes, offline, monkeypatch, err: int, words: tuple[str, ...]) -> None:
    spec = make_spec(data)
    fill_cache(tmp_path / "hf", spec.hub_path, data)
    folder = tmp_path / "ck"

    def broken_copy(fsrc, fdst, length=0):
        fdst.write(fsrc.read(100))  # a partial file...
        raise OSError(err, os.strerror(err))  # ...then the disk fills up / permission denied

    monkeypatch.setattr(ck.os, "link", _no_link)
    monkeypatch.setattr(ck.shutil, "copyfileobj", broken_copy)
    with pytest.raises(CheckpointError) as info:
        ck.resolve_checkpoint("vit_b", checkpoints_dir=folder, spec=spec, cache_dir=tmp_path / "hf")
    msg = str(info.value)
    for word in words:
        assert word in msg, msg
    assert str(folder / FILENAME) in msg
    assert not (folder / FILENAME).exists()
    assert not record_file(folder).exists()
    assert part_files(folder) == []


def test_stale_part_files_are_removed(tmp_path: Path, data: bytes, offline) -> None:
    spec = make_spec(data)
    fill_cache(tmp_path / "hf", spec.hub_path, data)
    folder = tmp_path / "ck"
    folder.mkdir()
    (folder / f".{FILENAME}.999.deadbeef.part").write_bytes(b"half")
    ck.resolve_checkpoint("vit_b", checkpoints_dir=folder, spec=spec, cache_dir=tmp_path / "hf", progress=False)
    assert part_files(folder) == []


def test_network_error_message(tmp_path: Path, data: bytes, monkeypatch) -> None:
    """A connection failure (what hf_hub_download raises with no network) gives the full way-out text."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    class ConnectError(Exception):
        pass

    ConnectError.__module__ = "httpx2"

    def fake_download(**kwargs):
        try:
            raise ConnectError("[Errno -2] Name or service not known")
        except ConnectError as exc:
            raise LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub") from exc

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    spec = make_spec(data)
    with pytest.raises(CheckpointError) as info:
        ck.resolve_checkpoint("vit_b", checkpoints_dir=tmp_path / "ck", spec=spec, repo_id="org/other")
    msg = str(info.value)
    assert "could not be reached" in msg and "ConnectError" in msg
    for needle in ("org/other", spec.hub_path, spec.meta_url, "--checkpoint", str(tmp_path / "ck" / FILENAME)):
        assert needle in msg
