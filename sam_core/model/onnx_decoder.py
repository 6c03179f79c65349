"""SAM's prompt encoder + mask decoder as ONNX files, and a native onnxruntime runner for them.

:func:`export_decoder` writes two files per model (fp32 and dynamically quantized QUInt8)
next to the checkpoint, named by the checkpoint's sha256, with a JSON sidecar; they are
verified against the torch decoder when made and reused (sha256-checked) afterwards.
:class:`OnnxDecoder` runs the fp32 file on the CPU for the server; the browser gets the files.

Frames: ``point_coords`` are in SAM's 1024-long-side input frame
(``ResizeLongestSide.apply_coords``); logits are SAM's (4, 256, 256) low-resolution frame.
Index 0 of the four outputs is the single-mask token, 1-3 are the three multimask candidates.
"""

from __future__ import annotations

import copy
import datetime
import io
import json
import logging
import os
import secrets
import tempfile
import threading
import time
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from filelock import FileLock

from sam_core.core.files import write_atomic
from sam_core.core.sizes import ImageSize
from sam_core.model.registry import default_checkpoints_dir
from sam_core.model.results import LOW_RES
from sam_core.model.weights import sha256_file

if TYPE_CHECKING:
    import onnxruntime

    from sam_core.model.segmenter import Segmenter

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- exporter settings
#: The TorchScript exporter. The default ``dynamo=True`` exporter cannot follow SamOnnxModel's
#: value-dependent slicing (the crop to ``orig_im_size``'s resized shape) and fails.
EXPORT_DYNAMO = False
#: ONNX opset 17: supported by onnxruntime (native and web) and by the TorchScript exporter.
OPSET = 17
#: ``SamOnnxModel(sam, return_single_mask=False)``: all four mask tokens come out. Index 0 is the
#: single-mask token (``MaskDecoder.forward``'s ``slice(0, 1)``, multimask off), 1-3 are
#: SamPredictor's three multimask candidates (``slice(1, None)``).
RETURN_SINGLE_MASK = False
INPUT_NAMES = ("image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input", "orig_im_size")
OUTPUT_NAMES = ("masks", "iou_predictions", "low_res_masks")
#: The number of points (clicks + 2 box corners or 1 padding point) varies per call.
DYNAMIC_AXES = {"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}}
#: ``quantize_dynamic`` weight type for the browser's small file.
QUANT_WEIGHT_TYPE = "QUInt8"

#: Verification limits, checked when the files are made.
FP32_MAX_ABS = 1e-4  # fp32 file vs torch: low-res logits and scores
#: Quantized file vs torch: IoU of the (low-res logits > 0) masks, every multimask candidate and case.
QUANT_MIN_IOU = 0.98
#: The same limit for test-tiny, whose random decoder on an N(0, 1) embedding makes masks of
#: speckles: almost every pixel is on a boundary, so QUInt8's small logit changes flip more of them.
#: Measured (seeds 0-2): min IoU 0.9795-0.9808 with MatMul-only quantization, 0.9752-0.9791 with
#: quantize_dynamic's default op types; per_channel / reduce_range were no better. Real SAM masks
#: are smooth blobs with far less boundary; their files are held to QUANT_MIN_IOU.
TEST_MODEL_QUANT_MIN_IOU = 0.97
#: Quantize the MatMuls only (weights of the transformer's projections and MLPs): the same size
#: as the default op types and closer to torch on every seed measured (see above).
QUANT_OP_TYPES = ("MatMul",)

FORMAT = 1  # sidecar format version


class DecoderExportError(RuntimeError):
    """The ONNX decoder could not be exported, or its output does not match the torch decoder."""


@dataclass(frozen=True)
class DecoderFiles:
    """The exported decoder of one model: ``fp32`` and ``quantized`` .onnx files and the sidecar ``info``."""

    fp32: Path
    quantized: Path
    model_id: str  # "<model_type>:<weights_id>"; the browser and embedding files carry it
    info: dict[str, Any] = field(compare=False, hash=False)

    @property
    def sidecar(self) -> Path:
        return self.fp32.with_name(self.fp32.name.removesuffix(".onnx") + ".json")


# ----------------------------------------------------------------------------- feeds
def onnx_inputs(
    coords_1024: np.ndarray | None,
    labels: np.ndarray | None,
    box_1024: np.ndarray | None,
    mask_input: np.ndarray | None,
    out_size: ImageSize,
) -> dict[str, np.ndarray]:
    """The decoder's feed, exactly like SAM's ONNX example notebook (``image_embeddings`` excluded).

    ``coords_1024``: (N, 2) points x, y in the 1024-long-side frame; ``labels``: (N,) 1 fg / 0 bg.
    ``box_1024``: (4,) x1, y1, x2, y2 in the same frame: appended as two points labelled 2 and 3;
    without a box a (0, 0) point labelled -1 pads the prompt (as SAM's prompt encoder does).
    ``mask_input``: (256, 256) previous low-res logits, or None. ``out_size``: size of the
    ``masks`` output; ``orig_im_size`` is ``[H, W]`` float32.
    """
    pts = np.zeros((0, 2), np.float32) if coords_1024 is None else np.asarray(coords_1024, np.float32).reshape(-1, 2)
    labs = np.zeros((0,), np.float32) if labels is None else np.asarray(labels, np.float32).reshape(-1)
    if len(pts) != len(labs):
        raise ValueError(f"{len(pts)} points but {len(labs)} labels")
    if box_1024 is not None:
        pts = np.concatenate([pts, np.asarray(box_1024, np.float32).reshape(2, 2)])
        labs = np.concatenate([labs, np.array([2, 3], np.float32)])
    else:
        pts = np.concatenate([pts, np.zeros((1, 2), np.float32)])
        labs = np.concatenate([labs, np.array([-1], np.float32)])
    if mask_input is None:
        mask = np.zeros((1, 1, LOW_RES, LOW_RES), np.float32)
        has_mask = np.zeros(1, np.float32)
    else:
        mask = np.asarray(mask_input, np.float32).reshape(-1, LOW_RES, LOW_RES)[:1][None]
        has_mask = np.ones(1, np.float32)
    return {
        "point_coords": np.ascontiguousarray(pts[None]),
        "point_labels": np.ascontiguousarray(labs[None]),
        "mask_input": np.ascontiguousarray(mask),
        "has_mask_input": has_mask,
        "orig_im_size": np.array(out_size.hw, np.float32),
    }


# ----------------------------------------------------------------------------- runner
def default_threads() -> int:
    return min(4, os.cpu_count() or 1)


def low_res_graph(model_bytes: bytes) -> bytes:
    """The decoder graph pruned to ``iou_predictions`` + ``low_res_masks`` (no ``orig_im_size`` input).

    onnxruntime runs every node whatever outputs are asked for, so the full graph always pays
    for upsampling four masks to 1024x1024 (measured: ~58 ms pruned vs ~68-71 ms full on one
    thread, even with a 4x4 ``orig_im_size`` and only the two outputs requested).
    """
    import onnx
    from onnx.utils import Extractor

    model = onnx.load_from_string(model_bytes)
    inputs = [i.name for i in model.graph.input if i.name != "orig_im_size"]
    pruned = Extractor(model).extract_model(inputs, ["iou_predictions", "low_res_masks"])
    return bytes(pruned.SerializeToString())


class OnnxDecoder:
    """One onnxruntime CPU session over a decoder file. ``run`` is thread-safe (no lock).

    ``low_res_only``: run the graph pruned to the scores and low-res logits (the server
    upsamples the logits itself); otherwise the whole graph, ``masks`` output included.
    """

    def __init__(self, path: str | os.PathLike[str], *, threads: int | None = None, low_res_only: bool = True) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        self.threads = int(threads or default_threads())
        self.low_res_only = low_res_only
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # errors only
        data = self.path.read_bytes()
        if low_res_only:
            data = low_res_graph(data)
        self.session: onnxruntime.InferenceSession = ort.InferenceSession(
            data, opts, providers=["CPUExecutionProvider"]
        )
        self.input_names = [i.name for i in self.session.get_inputs()]

    def run(self, features: np.ndarray, feed: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``features`` (1, 256, 64, 64) float32 + a feed from :func:`onnx_inputs` ->
        ``(scores (4,), low_res (4, 256, 256))`` float32, all four mask tokens."""
        full = {"image_embeddings": np.ascontiguousarray(features, dtype=np.float32), **feed}
        scores, low_res = self.session.run(["iou_predictions", "low_res_masks"], {k: full[k] for k in self.input_names})
        return np.asarray(scores[0], np.float32), np.asarray(low_res[0], np.float32)


# ----------------------------------------------------------------------------- export
export_count = 0  # exports actually made by this process (tests check reuse with it)
_memo: dict[tuple[str, str], tuple[DecoderFiles, tuple[Any, ...]]] = {}
_memo_locks: dict[tuple[str, str], threading.Lock] = {}
_memo_guard = threading.Lock()


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe-{secrets.token_hex(4)}"
        probe.write_bytes(b"")
        probe.unlink()
        return True
    except OSError:
        return False


def cache_folder(seg: Segmenter, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the decoder files of ``seg`` live: ``cache_dir`` if given, else ``<checkpoint folder>/onnx``
    (``default_checkpoints_dir()/onnx`` for built-in weights), else ``~/.cache/sam-studio/onnx``,
    else a temporary folder -- the first writable one."""
    if cache_dir is not None:
        candidates = [Path(cache_dir)]
    else:
        base = Path(seg.checkpoint).resolve().parent if seg.checkpoint else default_checkpoints_dir()
        candidates = [base / "onnx", Path.home() / ".cache" / "sam-studio" / "onnx"]
    candidates.append(Path(tempfile.gettempdir()) / "sam-studio-onnx")
    for i, folder in enumerate(candidates):
        if _writable(folder):
            if i:
                log.warning("ONNX decoder folder %s is not writable; using %s", candidates[0], folder)
            return folder
    raise DecoderExportError(f"no writable folder for the ONNX decoder (tried {', '.join(map(str, candidates))})")


def _stat_key(*paths: Path) -> tuple[Any, ...]:
    try:
        return tuple((p.stat().st_size, p.stat().st_mtime_ns) for p in paths)
    except OSError:
        return ()


def _names(folder: Path, model_type: str, weights_id: str) -> tuple[Path, Path, Path]:
    stem = f"{weights_id}.{model_type}.decoder"
    return folder / f"{stem}.onnx", folder / f"{stem}.quant.onnx", folder / f"{stem}.json"


def _load_valid(fp32: Path, quant: Path, sidecar: Path, model_id: str) -> DecoderFiles | None:
    """The cached files when the sidecar exists and both files' sha256 match it, else None."""
    try:
        info = json.loads(sidecar.read_text())
        ok = (
            info.get("format") == FORMAT
            and info.get("model_id") == model_id
            and info["fp32"]["sha256"] == sha256_file(fp32)
            and info["quantized"]["sha256"] == sha256_file(quant)
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return DecoderFiles(fp32, quant, model_id, info) if ok else None


def export_decoder(seg: Segmenter, cache_dir: str | os.PathLike[str] | None = None) -> DecoderFiles:
    """Export (or reuse) the ONNX decoder of ``seg``: fp32 + quantized files and a JSON sidecar.

    Files: ``<weights_id>.<model_type>.decoder.onnx``, ``...decoder.quant.onnx`` and
    ``...decoder.json`` in :func:`cache_folder`. A second call, in this process or another,
    reuses them when the sidecar's sha256 of both files match; otherwise they are exported,
    verified against the torch decoder (:func:`verify`), and written atomically under a file
    lock. Raises :class:`DecoderExportError` (leaving no cached files) when verification fails.
    """
    model_id = f"{seg.model_type}:{seg.weights_id}"
    folder = cache_folder(seg, cache_dir)
    key = (str(folder.resolve()), model_id)
    with _memo_guard:
        lock = _memo_locks.setdefault(key, threading.Lock())
    with lock:
        fp32, quant, sidecar = _names(folder, seg.model_type, seg.weights_id)
        memo = _memo.get(key)
        if memo is not None and memo[1] == _stat_key(fp32, quant, sidecar):
            return memo[0]
        with FileLock(str(folder / f".{seg.weights_id}.{seg.model_type}.decoder.lock"), timeout=600):
            files = _load_valid(fp32, quant, sidecar, model_id)
            if files is None:
                files = _export(seg, fp32, quant, sidecar, model_id)
            else:
                log.info("reusing the ONNX decoder %s", fp32)
        _memo[key] = (files, _stat_key(fp32, quant, sidecar))
        return files


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    try:
        from importlib.metadata import version

        sa = version("segment-anything")
    except Exception:
        sa = "unknown"
    return {
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "segment_anything": sa,
    }


class _DecoderOnly(torch.nn.Module):
    """What ``SamOnnxModel`` reads of a ``Sam``, as CPU copies: the image encoder stays put."""

    def __init__(self, seg: Segmenter) -> None:
        super().__init__()
        self.prompt_encoder = copy.deepcopy(seg.model.prompt_encoder).to("cpu").eval()
        self.mask_decoder = copy.deepcopy(seg.model.mask_decoder).to("cpu").eval()
        self.image_encoder = types.SimpleNamespace(img_size=seg.model.image_encoder.img_size)
        self.mask_threshold = float(seg.model.mask_threshold)


def export_bytes(seg: Segmenter) -> bytes:
    """The fp32 ONNX decoder of ``seg`` as bytes (the pinned exporter settings above).

    Exports CPU copies of the prompt encoder and mask decoder, so ``seg.model`` is never
    moved or touched while other threads use it.
    """
    from segment_anything.utils.onnx import SamOnnxModel

    model = SamOnnxModel(_DecoderOnly(seg), return_single_mask=RETURN_SINGLE_MASK).eval()
    embed_dim = seg.model.prompt_encoder.embed_dim
    h, w = seg.model.prompt_encoder.image_embedding_size
    gen = torch.Generator().manual_seed(0)
    dummy = (
        torch.randn(1, embed_dim, h, w, generator=gen),
        torch.randint(0, 1024, (1, 5, 2), generator=gen).float(),
        torch.randint(0, 4, (1, 5), generator=gen).float(),
        torch.randn(1, 1, 4 * h, 4 * w, generator=gen),
        torch.tensor([1.0]),
        torch.tensor([1500.0, 2250.0]),
    )
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about the value-dependent crop: expected
        torch.onnx.export(
            model,
            dummy,
            cast(Any, buf),  # a file object works (TorchScript exporter); the stubs say path only
            dynamo=EXPORT_DYNAMO,
            opset_version=OPSET,
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=DYNAMIC_AXES,
            do_constant_folding=True,
        )
    return buf.getvalue()


def _export(seg: Segmenter, fp32: Path, quant: Path, sidecar: Path, model_id: str) -> DecoderFiles:
    global export_count
    from onnxruntime.quantization import QuantType, quantize_dynamic

    for p in (sidecar, fp32, quant):  # stale or corrupt: the sidecar goes first, so nothing half-valid remains
        p.unlink(missing_ok=True)
    folder = fp32.parent
    tmp_fp32 = folder / f".{fp32.name}.{secrets.token_hex(6)}.tmp.onnx"
    tmp_quant = folder / f".{quant.name}.{secrets.token_hex(6)}.tmp.onnx"
    try:
        t0 = time.perf_counter()
        data = export_bytes(seg)
        export_s = time.perf_counter() - t0
        tmp_fp32.write_bytes(data)
        t1 = time.perf_counter()
        quantize_dynamic(
            str(tmp_fp32),
            str(tmp_quant),
            weight_type=getattr(QuantType, QUANT_WEIGHT_TYPE),
            op_types_to_quantize=list(QUANT_OP_TYPES),
        )
        quant_s = time.perf_counter() - t1
        checks = verify(seg, tmp_fp32, tmp_quant)
        os.replace(tmp_fp32, fp32)
        os.replace(tmp_quant, quant)
        info = {
            "format": FORMAT,
            "model_id": model_id,
            "model_type": seg.model_type,
            "weights_id": seg.weights_id,
            "fp32": {"file": fp32.name, "sha256": sha256_file(fp32), "bytes": fp32.stat().st_size},
            "quantized": {"file": quant.name, "sha256": sha256_file(quant), "bytes": quant.stat().st_size},
            "exporter": {
                "class": "segment_anything.utils.onnx.SamOnnxModel",
                "return_single_mask": RETURN_SINGLE_MASK,
                "dynamo": EXPORT_DYNAMO,
                "opset_version": OPSET,
                "input_names": list(INPUT_NAMES),
                "output_names": list(OUTPUT_NAMES),
                "dynamic_axes": DYNAMIC_AXES,
                "quantization": {
                    "method": "onnxruntime.quantization.quantize_dynamic",
                    "weight_type": QUANT_WEIGHT_TYPE,
                    "op_types_to_quantize": list(QUANT_OP_TYPES),
                },
                "mask_tokens": "index 0 = single-mask token; 1-3 = the three multimask candidates",
            },
            "verification": checks,
            "versions": _versions(),
            "export_s": round(export_s, 3),
            "quantize_s": round(quant_s, 3),
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        text = json.dumps(info, indent=2)
        info = json.loads(text)  # what a later process reads back (e.g. dynamic_axes' int keys become str)
        write_atomic(sidecar, (text + "\n").encode())
    except BaseException:
        for p in (sidecar, fp32, quant):
            p.unlink(missing_ok=True)
        raise
    finally:
        tmp_fp32.unlink(missing_ok=True)
        tmp_quant.unlink(missing_ok=True)
    export_count += 1
    log.info("exported the ONNX decoder of %s to %s in %.1f s (quantized %.1f s)", model_id, fp32, export_s, quant_s)
    return DecoderFiles(fp32, quant, model_id, info)


# ----------------------------------------------------------------------------- verification
#: Prompt cases in the 1024 frame of a 1024x683 (3:2) input: (points, labels, box, use the previous mask).
_CASES: dict[str, tuple[list[list[float]] | None, list[int] | None, list[float] | None, bool]] = {
    "points": ([[400.0, 300.0], [700.0, 520.0]], [1, 0], None, False),
    "box": (None, None, [210.0, 140.0, 790.0, 610.0], False),
    "box+points": ([[480.0, 330.0]], [1], [210.0, 140.0, 790.0, 610.0], False),
    "points+mask": ([[400.0, 300.0], [520.0, 360.0]], [1, 1], None, True),
}


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def torch_all_tokens(
    seg: Segmenter,
    features: torch.Tensor,
    coords: np.ndarray | None,
    labels: np.ndarray | None,
    box: np.ndarray | None,
    mask_input: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """The torch decoder (as ``Segmenter.decode``) with multimask off then on, stacked like the
    ONNX outputs: ``(scores (4,), low_res (4, 256, 256))``; prompts in the 1024 frame."""
    single = seg.torch_decode(features, coords, labels, box, mask_input, multimask=False)
    multi = seg.torch_decode(features, coords, labels, box, mask_input, multimask=True)
    return np.concatenate([single[0], multi[0]]), np.concatenate([single[1], multi[1]])


def quant_min_iou(seg: Segmenter) -> float:
    """The quantized file's IoU limit for ``seg`` (see :data:`TEST_MODEL_QUANT_MIN_IOU`)."""
    return TEST_MODEL_QUANT_MIN_IOU if seg.is_test_model else QUANT_MIN_IOU


def verify(seg: Segmenter, fp32: Path, quant: Path, *, seed: int = 0) -> dict[str, Any]:
    """Compare both files with the torch decoder on a seeded N(0, 1) embedding, 4 prompt cases.

    fp32: max |Δ| of low-res logits and of scores <= :data:`FP32_MAX_ABS`; quantized: IoU of the
    (low-res > 0) masks >= :data:`QUANT_MIN_IOU` for every multimask candidate. Returns every
    number; raises :class:`DecoderExportError` when a check fails.
    """
    gen = torch.Generator().manual_seed(seed)
    embed_dim = seg.model.prompt_encoder.embed_dim
    h, w = seg.model.prompt_encoder.image_embedding_size
    features = torch.randn(1, embed_dim, h, w, generator=gen).to(seg.device)
    feats_np = features.cpu().numpy()
    min_iou = quant_min_iou(seg)
    ort_fp32 = OnnxDecoder(fp32, threads=1, low_res_only=False)
    ort_quant = OnnxDecoder(quant, threads=1, low_res_only=False)
    out_size = ImageSize(1024 // 4, 683 // 4)
    cases: dict[str, Any] = {}
    previous: np.ndarray | None = None
    failures = []
    for name, (pts, labs, box, use_mask) in _CASES.items():
        coords = None if pts is None else np.array(pts, np.float32)
        labels = None if labs is None else np.array(labs, np.float32)
        box_np = None if box is None else np.array(box, np.float32)
        mask = previous if use_mask else None
        ref_scores, ref_low = torch_all_tokens(seg, features, coords, labels, box_np, mask)
        feed = onnx_inputs(coords, labels, box_np, mask, out_size)
        s32, l32 = ort_fp32.run(feats_np, feed)
        sq, lq = ort_quant.run(feats_np, feed)
        ious = [_iou(lq[i] > 0, ref_low[i] > 0) for i in range(1, 4)]
        case: dict[str, Any] = {
            "fp32_low_res_max_abs": float(np.abs(l32 - ref_low).max()),
            "fp32_scores_max_abs": float(np.abs(s32 - ref_scores).max()),
            "quant_iou_multimask": [round(x, 5) for x in ious],
            "quant_low_res_max_abs": float(np.abs(lq - ref_low).max()),
            "quant_scores_max_abs": float(np.abs(sq - ref_scores).max()),
        }
        cases[name] = case
        if case["fp32_low_res_max_abs"] > FP32_MAX_ABS or case["fp32_scores_max_abs"] > FP32_MAX_ABS:
            failures.append(
                f"{name}: fp32 differs from torch by {case['fp32_low_res_max_abs']:.2e} (logits), "
                f"{case['fp32_scores_max_abs']:.2e} (scores) > {FP32_MAX_ABS}"
            )
        if min(ious) < min_iou:
            failures.append(f"{name}: quantized mask IoU {min(ious):.4f} < {min_iou}")
        if previous is None:
            previous = ref_low[1 + int(np.argmax(ref_scores[1:]))]
    checks = {
        "seed": seed,
        "embedding": "N(0,1) (1,256,64,64)",
        "fp32_max_abs_limit": FP32_MAX_ABS,
        "quant_min_iou_limit": min_iou,
        "cases": cases,
        "passed": not failures,
    }
    if failures:
        raise DecoderExportError("the ONNX decoder does not match the torch decoder: " + "; ".join(failures))
    return checks
