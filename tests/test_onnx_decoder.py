"""The ONNX decoder: export, verification, caching, and the Segmenter's onnxruntime path against torch."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from sam_core import Segmenter
from sam_core.core.images import load_image
from sam_core.core.prompts import Prompts
from sam_core.model import onnx_decoder as od
from sam_core.model.weights import sha256_file
from sam_core.model.build import build_test_tiny, resolve_placement

ROOT = Path(__file__).resolve().parents[1]
COFFEE = ROOT / "examples" / "coffee.png"  # 400 x 600
CASES = {  # full-image pixels of coffee.png (W 600, H 400)
    "points": dict(points=[(290, 230, 1), (520, 60, 0)], box=None),
    "box": dict(points=None, box=(150, 40, 460, 370)),
    "box+points": dict(points=[(290, 230, 1)], box=(150, 40, 460, 370)),
}


def tiny(**kw) -> Segmenter:
    return Segmenter(build_test_tiny(), model_type="test-tiny", placement=resolve_placement("cpu", "fp32"), **kw)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


@pytest.fixture(scope="session")
def onnx_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-decoder")


@pytest.fixture(scope="session")
def pair(onnx_dir):
    """(torch segmenter, onnx segmenter, coffee embedding, files): one export for the whole session."""
    torch_seg = tiny(decoder="torch")
    onnx_seg = tiny(decoder="onnx", onnx_dir=onnx_dir)
    files = onnx_seg.decoder_files()
    rgb = load_image(COFFEE).rgb
    emb, _ = torch_seg.embed(rgb)
    return torch_seg, onnx_seg, emb, files


def decode_both(pair, multimask=True, mask_input=None, **prompt):
    torch_seg, onnx_seg, emb, _ = pair
    prompts = Prompts.parse(prompt.get("points"), prompt.get("box"))
    ref = torch_seg.decode(emb, prompts, multimask=multimask, mask_input=mask_input)
    got = onnx_seg.decode(emb, prompts, multimask=multimask, mask_input=mask_input)
    return ref, got


@pytest.mark.parametrize("multimask", [True, False], ids=["multimask", "single"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_onnx_decode_equals_torch(pair, case, multimask):
    ref, got = decode_both(pair, multimask=multimask, **CASES[case])
    assert ref.timings["decoder"] == "torch" and got.timings["decoder"] == "onnx"
    n = 3 if multimask else 1
    assert got.low_res_logits.shape == ref.low_res_logits.shape == (n, 256, 256)
    assert got.low_res_logits.dtype == np.float32 and got.scores.shape == (n,)
    assert np.abs(got.low_res_logits - ref.low_res_logits).max() <= 1e-4
    assert np.abs(got.scores - ref.scores).max() <= 1e-4
    assert got.best_index == ref.best_index
    assert got.image_size == ref.image_size and got.input_size == ref.input_size


@pytest.mark.parametrize("multimask", [True, False], ids=["multimask", "single"])
def test_refinement_with_mask_input_equals_torch(pair, multimask):
    first, _ = decode_both(pair, **CASES["points"])
    prev = first.low_res_logits[first.best_index][None]
    ref, got = decode_both(pair, multimask=multimask, mask_input=prev, points=[(290, 230, 1), (300, 120, 1)])
    assert np.abs(got.low_res_logits - ref.low_res_logits).max() <= 1e-4
    assert np.abs(got.scores - ref.scores).max() <= 1e-4
    # the mask input matters (otherwise this comparison proves little)
    plain, _ = decode_both(pair, multimask=multimask, points=[(290, 230, 1), (300, 120, 1)])
    assert np.abs(plain.low_res_logits - ref.low_res_logits).max() > 1e-2


def test_quantized_file_masks_match_torch(pair):
    torch_seg, _, emb, files = pair
    quant = od.OnnxDecoder(files.quantized, threads=1)
    tr = torch_seg.transform
    hw = emb.image_size.hw
    for name, case in CASES.items():
        pts = case["points"]
        coords = tr.apply_coords(np.array([p[:2] for p in pts], float), hw) if pts else None
        labels = np.array([p[2] for p in pts]) if pts else None
        box = tr.apply_boxes(np.array(case["box"], float), hw)[0] if case["box"] else None
        ref = torch_seg.decode(emb, Prompts.parse(pts, case["box"]), multimask=True)
        scores, low = quant.run(emb.features.numpy(), od.onnx_inputs(coords, labels, box, None, emb.image_size))
        ious = [iou(low[1 + i] > 0, ref.low_res_logits[i] > 0) for i in range(3)]
        print(f"quantized IoU {name}: {[round(x, 4) for x in ious]}")
        assert min(ious) >= od.quant_min_iou(torch_seg), (name, ious)
        assert np.abs(scores[1:] - ref.scores).max() < 0.05


def test_full_graph_masks_output_crops_like_sam(pair):
    """The file served to the browser: its ``masks`` output at a small size equals upsample_logits'."""
    torch_seg, _, emb, files = pair
    from sam_core.model.results import upsample_logits

    full = od.OnnxDecoder(files.fp32, threads=1, low_res_only=False)
    coords = torch_seg.transform.apply_coords(np.array([[290.0, 230.0]]), emb.image_size.hw)
    out = emb.image_size._replace(width=150, height=100)
    feed = od.onnx_inputs(coords, np.array([1]), None, None, out)
    masks, _scores, low = full.session.run(None, {"image_embeddings": emb.features.numpy(), **feed})
    assert masks.shape == (1, 4, 100, 150)
    ours = upsample_logits(low[0], emb.input_size, out)
    assert np.mean((masks[0] > 0) == ours) > 0.999


def test_quantized_limit_is_the_issue_limit_for_real_models():
    assert od.QUANT_MIN_IOU == 0.98 and od.TEST_MODEL_QUANT_MIN_IOU < od.QUANT_MIN_IOU


def test_sidecar_and_names(pair, onnx_dir):
    _, onnx_seg, _, files = pair
    stem = f"{onnx_seg.weights_id}.test-tiny.decoder"
    assert onnx_seg.weights_id == "test-tiny-seed0"
    assert files.fp32 == onnx_dir / f"{stem}.onnx" and files.quantized == onnx_dir / f"{stem}.quant.onnx"
    assert files.sidecar == onnx_dir / f"{stem}.json" and files.sidecar.exists()
    assert files.model_id == "test-tiny:test-tiny-seed0"
    info = json.loads(files.sidecar.read_text())
    assert info == files.info
    assert info["model_id"] == files.model_id and info["model_type"] == "test-tiny"
    assert info["weights_id"] == "test-tiny-seed0"
    assert info["fp32"]["bytes"] == files.fp32.stat().st_size > 10_000_000
    assert info["quantized"]["bytes"] == files.quantized.stat().st_size < info["fp32"]["bytes"] / 2
    assert info["fp32"]["sha256"] == sha256_file(files.fp32)
    assert info["exporter"]["dynamo"] is False and info["exporter"]["opset_version"] == 17
    assert info["exporter"]["return_single_mask"] is False
    assert set(info["versions"]) == {"torch", "onnx", "onnxruntime", "segment_anything"}
    ver = info["verification"]
    assert ver["passed"] and set(ver["cases"]) == {"points", "box", "box+points", "points+mask"}
    for case in ver["cases"].values():
        assert case["fp32_low_res_max_abs"] <= 1e-4 and case["fp32_scores_max_abs"] <= 1e-4
        assert len(case["quant_iou_multimask"]) == 3 and min(case["quant_iou_multimask"]) >= od.quant_min_iou(onnx_seg)
    assert not [p for p in onnx_dir.iterdir() if p.name.endswith(".tmp.onnx") or p.name.endswith(".tmp")]


def test_reuse_without_reexport(pair, onnx_dir, monkeypatch):
    _, onnx_seg, _, files = pair
    count, mtimes = od.export_count, [p.stat().st_mtime_ns for p in (files.fp32, files.quantized, files.sidecar)]
    again = tiny(decoder="onnx", onnx_dir=onnx_dir).decoder_files()  # same process: the memo
    monkeypatch.setattr(od, "_memo", {})  # as another process would: read + sha256-check the sidecar
    other = od.export_decoder(onnx_seg, onnx_dir)
    assert again == other == files and other.info == files.info
    assert od.export_count == count
    assert [p.stat().st_mtime_ns for p in (files.fp32, files.quantized, files.sidecar)] == mtimes


def test_corrupt_file_is_exported_again(onnx_dir, tmp_path):
    seg = tiny(decoder="onnx", onnx_dir=tmp_path)
    first = seg.decoder_files()
    count = od.export_count
    data = bytearray(first.quantized.read_bytes())
    data[len(data) // 2] ^= 0xFF
    first.quantized.write_bytes(bytes(data))
    second = seg.decoder_files()
    assert od.export_count == count + 1
    assert sha256_file(second.quantized) == second.info["quantized"]["sha256"]
    first.fp32.unlink()  # a missing file too
    third = od.export_decoder(seg, tmp_path)
    assert od.export_count == count + 2 and third.fp32.exists()


def test_failed_verification_leaves_no_files(tmp_path, monkeypatch):
    seg = tiny(decoder="onnx", onnx_dir=tmp_path)
    monkeypatch.setattr(od, "FP32_MAX_ABS", -1.0)  # no difference can pass
    with pytest.raises(od.DecoderExportError, match="does not match the torch decoder"):
        seg.decoder_files()
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


def test_auto_picks_onnx_on_cpu(pair, onnx_dir):
    _, _, emb, _ = pair
    seg = tiny(decoder="auto", onnx_dir=onnx_dir)
    assert seg.decoder_backend == "onnx" and seg.info()["decoder"] == "onnx"
    res = seg.decode(emb, Prompts.parse([(290, 230, 1)], None))
    assert res.timings["decoder"] == "onnx"
    assert seg.decode(emb, Prompts.parse([(290, 230, 1)], None), backend="torch").timings["decoder"] == "torch"
    assert tiny().decoder_backend == "torch"  # the library default stays torch
    with pytest.raises(ValueError):
        tiny(decoder="tensorrt")


def test_broken_onnx_falls_back_to_torch(pair, tmp_path, monkeypatch, caplog):
    torch_seg, _, emb, _ = pair

    def broken(*args, **kwargs):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(od, "export_decoder", broken)
    seg = tiny(decoder="onnx", onnx_dir=tmp_path)
    prompts = Prompts.parse([(290, 230, 1)], (150, 40, 460, 370))
    with caplog.at_level(logging.WARNING, logger="sam_core.model.segmenter"):
        first = seg.decode(emb, prompts)
        second = seg.decode(emb, prompts)
    assert first.timings["decoder"] == second.timings["decoder"] == "torch"
    assert seg.decoder_backend == "torch"
    assert sum("ONNX decoder is not available" in r.message for r in caplog.records) == 1
    ref = torch_seg.decode(emb, prompts)
    np.testing.assert_array_equal(first.low_res_logits, ref.low_res_logits)
