"""Precomputed embeddings: the safetensors store, Segmenter/app use, and refusal of mismatched files."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from segment_anything import SamPredictor
from synth import photo_like

from sam_core import Segmenter
from sam_core.app.session import PromptMode
from sam_core.app.studio import Click, Studio
from sam_core.core.images import image_hash, load_image
from sam_core.core.sizes import ImageSize
from sam_core.model.build import build_test_tiny, resolve_placement
from sam_core.model.embeddings import FORMAT_VERSION, EmbeddingStore, embed_images
from sam_core.model.weights import checkpoint_sha256

ROOT = Path(__file__).resolve().parents[1]
COFFEE = ROOT / "examples" / "coffee.png"
PROMPT = dict(points=[(60, 50, 1), (20, 100, 0)], box=(30, 20, 140, 110))


def _eager(**kw) -> Segmenter:
    """test-tiny with SAM's own attention code, so SamPredictor on the same model matches bit for bit."""
    return Segmenter(build_test_tiny(), model_type="test-tiny", placement=resolve_placement("cpu", "fp32"), **kw)


@pytest.fixture(scope="module")
def image_files(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("emb-images")
    paths = []
    for i, (h, w) in enumerate([(120, 160), (150, 110)]):
        p = folder / f"img{i}.png"
        Image.fromarray(photo_like(h, w, seed=10 + i)).save(p)
        paths.append(p)
    return paths


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory, image_files) -> Path:
    """A store made by embed_images with an eager fp32 test-tiny, for both example images."""
    out = tmp_path_factory.mktemp("emb-store")
    seg = _eager()
    report = embed_images(image_files, seg, out, progress=False)
    assert report["encoded"] == 2 and report["skipped"] == 0 and report["errors"] == []
    assert seg.encoder_runs == 2
    return out


def _slot(store: Path, image: Path, weights_id: str = "test-tiny-seed0", model_type: str = "test-tiny") -> Path:
    return EmbeddingStore(store).path_for(model_type, weights_id, image_hash(load_image(image).rgb))


# ----------------------------------------------------------------------------- the store


def test_round_trip_is_bit_for_bit_with_metadata(tiny_segmenter, tmp_path):
    image = photo_like(90, 130, seed=4)
    emb = tiny_segmenter.encode(image)
    key = image_hash(image)
    store = EmbeddingStore(tmp_path)
    path = store.save(
        emb.features,
        model_type="test-tiny",
        weights_id=tiny_segmenter.weights_id,
        image_key=key,
        image_size=emb.image_size,
        input_size=emb.input_size,
        precision="fp32",
    )
    assert path == tmp_path / "test-tiny" / "test-tiny-seed0" / f"{key}.safetensors"
    back = store.load("test-tiny", "test-tiny-seed0", key, image_size=ImageSize(130, 90), input_long_side=1024)
    assert back is not None
    assert back.features.dtype == torch.float32 and back.features.shape == (1, 256, 64, 64)
    assert torch.equal(back.features, emb.features)
    assert back.image_size == ImageSize(130, 90) and back.input_size == emb.input_size == ImageSize(1024, 709)
    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
    assert meta["model_type"] == "test-tiny" and meta["weights_id"] == "test-tiny-seed0"
    assert meta["image_hash"] == key and (meta["image_width"], meta["image_height"]) == ("130", "90")
    assert (meta["input_width"], meta["input_height"], meta["input_long_side"]) == ("1024", "709", "1024")
    assert meta["dtype"] == "float32" and meta["precision"] == "fp32" and meta["format_version"] == FORMAT_VERSION
    assert meta["created"].endswith("+00:00") and meta["torch"] == torch.__version__
    assert list(store.files()) == [path]


def test_embed_images_skips_stored_and_reports_bad_images(image_files, store_dir, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_text("not a picture")
    seg = _eager()
    report = embed_images([*image_files, bad, tmp_path / "missing.jpg"], seg, store_dir, progress=False)
    assert (report["encoded"], report["skipped"], report["failed"]) == (0, 2, 2)
    assert seg.encoder_runs == 0  # nothing encoded twice
    assert [e["image"] for e in report["errors"]] == [str(bad), str(tmp_path / "missing.jpg")]
    assert all(e["error"] for e in report["errors"])
    assert report["files"][str(image_files[0])] == str(_slot(store_dir, image_files[0]))


# ----------------------------------------------------------------------------- the Segmenter


def test_precomputed_embedding_runs_no_encoder_and_matches_sam_predictor(image_files, store_dir):
    seg = _eager(embeddings=store_dir)
    image = load_image(image_files[0]).rgb
    res = seg.segment(image, **PROMPT)
    assert seg.encoder_runs == 0 and seg.store_loads == 1
    assert res.timings["cache_hit"] is True
    # second click: in memory now, still no encoder
    seg.segment(image, points=[(10, 10, 1)])
    assert seg.encoder_runs == 0 and seg.store_loads == 1

    fresh = _eager().segment(image, **PROMPT)
    assert fresh.timings["cache_hit"] is False
    assert np.array_equal(res.masks, fresh.masks) and np.array_equal(res.scores, fresh.scores)
    assert np.array_equal(res.low_res_logits, fresh.low_res_logits)

    predictor = SamPredictor(seg.model)
    predictor.set_image(image)
    ref_masks, ref_scores, _ = predictor.predict(
        point_coords=np.array([p[:2] for p in PROMPT["points"]], dtype=np.float32),
        point_labels=np.array([p[2] for p in PROMPT["points"]]),
        box=np.array(PROMPT["box"], dtype=np.float32),
        multimask_output=True,
    )
    assert np.array_equal(res.masks, ref_masks)
    np.testing.assert_allclose(res.scores, ref_scores, atol=1e-5, rtol=0)
    assert not np.array_equal(res.masks[0], res.masks[1])


def test_write_new_stores_what_the_segmenter_encodes(tmp_path):
    image = photo_like(64, 80, seed=7)
    seg = _eager(embeddings=EmbeddingStore(tmp_path, write_new=True))
    first = seg.segment(image, points=[(30, 30, 1)])
    assert seg.encoder_runs == 1 and first.timings["cache_hit"] is False
    other = _eager(embeddings=tmp_path)
    again = other.segment(image, points=[(30, 30, 1)])
    assert other.encoder_runs == 0 and again.timings["cache_hit"] is True
    assert np.array_equal(first.low_res_logits, again.low_res_logits)


def _copy_store(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("damage", ["truncated", "flipped-bytes", "garbage", "other-model-type", "bad-precision"])
def test_unusable_file_is_never_used(image_files, store_dir, tmp_path, caplog, damage):
    store = _copy_store(store_dir, tmp_path / "store")
    slot = _slot(store, image_files[0])
    data = slot.read_bytes()
    if damage == "truncated":
        slot.write_bytes(data[: len(data) // 2])
    elif damage == "flipped-bytes":  # the header is intact, a float in the tensor changed
        slot.write_bytes(data[:-1000] + bytes([data[-1000] ^ 0x55]) + data[-999:])
    elif damage == "garbage":
        slot.write_bytes(b"\x00" * 100)
    elif damage == "other-model-type":  # a vit_b embedding copied into test-tiny's slot
        seg = _eager()
        emb = seg.encode(load_image(image_files[0]).rgb)
        EmbeddingStore(store).save(
            emb.features,
            model_type="vit_b",
            weights_id="test-tiny-seed0",
            image_key=slot.stem,
            image_size=emb.image_size,
            input_size=emb.input_size,
            precision="fp32",
        )
        shutil.copyfile(_slot(store, image_files[0], model_type="vit_b"), slot)
    elif damage == "bad-precision":  # a strict store refuses a bf16 embedding for an fp32 model
        with safe_open(slot, framework="pt") as f:
            meta, features = f.metadata(), f.get_tensor("image_embeddings")
        EmbeddingStore(store).save(
            features,
            model_type="test-tiny",
            weights_id="test-tiny-seed0",
            image_key=slot.stem,
            image_size=ImageSize(int(meta["image_width"]), int(meta["image_height"])),
            input_size=ImageSize(int(meta["input_width"]), int(meta["input_height"])),
            precision="bf16",
        )
    strict = damage == "bad-precision"
    seg = _eager(embeddings=EmbeddingStore(store, require_precision=strict))
    image = load_image(image_files[0]).rgb
    with caplog.at_level(logging.WARNING, logger="sam_core.model.embeddings"):
        res = seg.segment(image, **PROMPT)
    assert seg.encoder_runs == 1 and seg.store_loads == 0 and res.timings["cache_hit"] is False
    assert "not using the stored embedding" in caplog.text
    fresh = _eager().segment(image, **PROMPT)
    assert np.array_equal(res.low_res_logits, fresh.low_res_logits)
    if strict:  # the same file is fine for a store that does not require the precision
        lenient = _eager(embeddings=store)
        lenient.segment(image, **PROMPT)
        assert lenient.encoder_runs == 0 and lenient.store_loads == 1


def test_another_checkpoint_never_uses_the_store(image_files, store_dir, tmp_path, caplog):
    ckpt = tmp_path / "tiny-seed1.pth"
    torch.save(build_test_tiny(seed=1).state_dict(), ckpt)
    seg = Segmenter.from_pretrained("test-tiny", ckpt, device="cpu", precision="fp32", sdpa=False, embeddings=store_dir)
    assert seg.weights_id == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    image = load_image(image_files[0]).rgb
    res = seg.segment(image, **PROMPT)  # its slot is empty: it encodes
    assert seg.encoder_runs == 1 and res.timings["cache_hit"] is False

    # the seed-0 file put into the seed-1 checkpoint's slot is refused by its metadata
    store = _copy_store(store_dir, tmp_path / "store")
    wrong = _slot(store, image_files[0], weights_id=seg.weights_id)
    wrong.parent.mkdir(parents=True)
    shutil.copyfile(_slot(store, image_files[0]), wrong)
    seg2 = Segmenter.from_pretrained("test-tiny", ckpt, device="cpu", precision="fp32", sdpa=False, embeddings=store)
    with caplog.at_level(logging.WARNING, logger="sam_core.model.embeddings"):
        res2 = seg2.segment(image, **PROMPT)
    assert seg2.encoder_runs == 1 and seg2.store_loads == 0
    assert "weights_id is 'test-tiny-seed0'" in caplog.text
    assert np.array_equal(res2.low_res_logits, res.low_res_logits)
    assert not np.array_equal(res2.low_res_logits, _eager().segment(image, **PROMPT).low_res_logits)


def test_bf16_embedding_is_used_by_an_fp32_model(image_files, tmp_path):
    """Encode on a 'GPU' in bf16 (CPU autocast here), decode on an fp32 CPU model: same weights, so allowed."""
    bf16 = Segmenter(build_test_tiny(), model_type="test-tiny", placement=resolve_placement("cpu", "bf16"))
    embed_images(image_files[:1], bf16, tmp_path, progress=False)
    with safe_open(_slot(tmp_path, image_files[0]), framework="pt") as f:
        assert f.metadata()["precision"] == "bf16"
    seg = _eager(embeddings=tmp_path)
    image = load_image(image_files[0]).rgb
    res = seg.segment(image, **PROMPT)
    assert seg.encoder_runs == 0 and res.timings["cache_hit"] is True
    fresh = _eager().segment(image, **PROMPT)
    assert not np.array_equal(res.low_res_logits, fresh.low_res_logits)  # bf16 rounding shows...
    np.testing.assert_allclose(res.scores, fresh.scores, atol=0.05)  # ...but stays close


def test_checkpoint_sha256_reads_a_matching_record_and_rehashes_a_changed_file(tmp_path):
    ckpt = tmp_path / "w.pth"
    ckpt.write_bytes(b"weights" * 1000)
    real = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert checkpoint_sha256(ckpt, progress=False) == real
    st = ckpt.stat()
    record = {
        "path": str(ckpt.absolute()),
        "sha256": "ab" * 32,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
        "inode": st.st_ino,
    }
    (tmp_path / ".verified").mkdir()
    (tmp_path / ".verified" / "w.pth.json").write_text(json.dumps(record))
    assert checkpoint_sha256(ckpt, progress=False) == "ab" * 32  # trusted record: no re-hash
    ckpt.write_bytes(b"other" * 1000)
    assert checkpoint_sha256(ckpt, progress=False) == hashlib.sha256(ckpt.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- the app


def test_studio_with_a_store_encodes_nothing_and_survives_a_corrupt_file(image_files, store_dir, tmp_path):
    store = _copy_store(store_dir, tmp_path / "store")
    studio = Studio(_eager(embeddings=store), outputs_dir=tmp_path / "out")
    state = studio.open_image(None, str(image_files[0]))
    state = studio.handle(state, Click(60, 50, PromptMode.FOREGROUND))
    assert state.result is not None and state.result.timings["cache_hit"] is True
    assert studio.segmenter().encoder_runs == 0

    _slot(store, image_files[1]).write_bytes(b"corrupt")
    state = studio.open_image(state, str(image_files[1]))
    state = studio.handle(state, Click(50, 60, PromptMode.FOREGROUND))
    assert state.result is not None and studio.segmenter().encoder_runs == 1


def test_demo_with_embeddings_first_click_is_a_cache_hit(tmp_path):
    from gradio_client import Client, handle_file
    from server import run_server

    report = embed_images(
        [COFFEE], Segmenter.from_pretrained("test-tiny", device="cpu"), tmp_path / "emb", progress=False
    )
    assert report["encoded"] == 1
    with run_server(tmp_path, "--embeddings", str(tmp_path / "emb")) as srv:
        client = Client(srv.url, verbose=False)
        summary, _ = client.predict(
            handle_file(str(COFFEE)), json.dumps({"points": [[290, 230, 1]]}), True, api_name="/segment"
        )
        log_text = srv.log_text()
    assert summary["timings"]["cache_hit"] is True
    assert "read the embedding of" in log_text and " encoded " not in log_text


def test_demo_refuses_a_missing_embeddings_folder(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "demo.py"), "--model", "test-tiny", "--embeddings", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 2
    assert "error: --embeddings" in proc.stderr and "no such folder" in proc.stderr
    assert "Traceback" not in proc.stderr


# ----------------------------------------------------------------------------- the batch command


def test_batch_embed_command_then_the_segmenter_uses_it(image_files, tmp_path, capsys):
    from sam_core.batch.cli import main

    emb = tmp_path / "emb"
    folder = image_files[0].parent
    assert main(["embed", str(folder), "--model", "test-tiny", "--device", "cpu", "--out", str(emb), "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (report["encoded"], report["skipped"], report["failed"]) == (2, 0, 0)
    assert report["weights_id"] == "test-tiny-seed0"
    assert len(list(EmbeddingStore(emb).files())) == 2
    assert main(["embed", str(folder), "--model", "test-tiny", "--device", "cpu", "--out", str(emb), "--quiet"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (again["encoded"], again["skipped"]) == (0, 2)

    seg = Segmenter.from_pretrained("test-tiny", device="cpu", embeddings=emb)
    for path in image_files:
        assert seg.segment(load_image(path).rgb, points=[(20, 20, 1)]).timings["cache_hit"] is True
    assert seg.encoder_runs == 0
