"""The Segment tab's browser decoder: what the server gives it and what it hears back.

The page runs SAM's prompt encoder + mask decoder with onnxruntime-web
(``static/sam_decoder.js``). The server's side of it, all here:

* the files it fetches, served through Gradio's static paths: the vendored onnxruntime-web
  (``static/ort/``), the model's decoder as ONNX (exported and verified once per weights, see
  :mod:`sam_core.model.onnx_decoder`; the page gets that graph pruned to the scores and the
  256x256 logits, and upsamples the logits it draws itself, at the preview size), and one fp16
  embedding file per image and model (:mod:`sam_core.model.browser_embedding`), written once and
  shared by every visitor;
* the *sync value*: a small JSON document (URLs, sizes, prompts, settings) that every Segment
  event sends to a hidden ``gr.HTML`` component, whose ``js_on_load`` starts the decoder;
* the events the page sends back (``submit`` with a ``kind``): ``ready`` / ``failed`` (the
  browser path works or not), ``decoded`` (prompts + chosen candidate after a click the browser
  drew), ``choose`` and ``corner`` (a box's first corner).

Frames: prompts are full-image pixels; sizes in the sync value are ``[width, height]``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any

from sam_core.app.session import PromptMode, SessionState
from sam_core.app.studio import ImageEntry, Studio
from sam_core.core.files import write_atomic
from sam_core.core.render import PALETTE, encode_png
from sam_core.model import browser_embedding
from sam_core.model.onnx_decoder import low_res_graph
from sam_core.model.segmenter import Segmenter
from sam_core.ui.web_assets import ORT_DIR, STATIC_DIR, ensure_ort_runtime, file_url, register_static

log = logging.getLogger(__name__)

MODULE = STATIC_DIR / "sam_decoder.js"
MAX_EMBEDDING_FILES = 64  # 2 MiB each

# The hidden gr.HTML component's js_on_load: import the decoder module and hand it the widget.
JS_ON_LOAD = """
const sync = props.value ? JSON.parse(props.value) : {};
if (sync.module_url) {
  import(new URL(sync.module_url, document.baseURI).href)
    .then((m) => m.attach(element, trigger, props, watch))
    .catch((err) => console.error("SAM Studio browser decoder:", err));
}
"""


def server_reason(state: SessionState) -> str | None:
    """Why the server must draw this session's masks even where the browser decodes, or None."""
    s = state.settings
    if s.min_island or s.min_hole:
        return "mask clean-up (islands / holes) is applied on the server"
    if state.edits:
        return "the mask has edits (grow, fill, brush, ...), which the server applies"
    return None


class BrowserAssets:
    """Files the browser decoder fetches, shared by every visitor (keyed and locked)."""

    def __init__(self, studio: Studio) -> None:
        self.studio = studio
        self.dir = studio.render_dir / "browser"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._token = uuid.uuid4().hex  # embedding URLs are not guessable
        self._lock = threading.Lock()
        self._files: OrderedDict[tuple[Any, ...], Path] = OrderedDict()  # embeddings and taken-pixel PNGs
        self._decoders: dict[str, Any] = {}  # model_id -> DecoderFiles, or the error text
        register_static(STATIC_DIR, self.dir)

    # -------------------------------------------------------------- decoder files
    def decoder(self, seg: Segmenter) -> tuple[dict[str, Any] | None, str | None]:
        """({"model_id", "fp32", "quantized"}: the served low-res graphs, None), or (None, why not).

        The decoder files are exported and verified once per weights (then cached on disk); the
        page gets them pruned to ``iou_predictions`` + ``low_res_masks``, written here once per process.
        """
        key = browser_embedding.model_id(seg.model_type, seg.weights_id)
        with self._lock:
            known = self._decoders.get(key)
        if known is None:
            t0 = time.perf_counter()
            try:
                files = seg.decoder_files()
                known = {"model_id": files.model_id}
                for kind, path in (("fp32", files.fp32), ("quantized", files.quantized)):
                    served = self.dir / f"{path.name.removesuffix('.onnx')}.lowres.onnx"
                    if not served.exists():
                        write_atomic(served, low_res_graph(path.read_bytes()))
                    known[kind] = served
                log.info("browser decoder for %s ready in %.1f s", key, time.perf_counter() - t0)
            except Exception as err:  # the server path still works
                log.exception("no browser decoder for %s", key)
                known = f"the decoder could not be exported ({err})"
            with self._lock:
                self._decoders[key] = known
        return (None, known) if isinstance(known, str) else (known, None)

    # -------------------------------------------------------------- embeddings
    def embedding_file(self, seg: Segmenter, entry: ImageEntry, state: SessionState) -> Path:
        """The fp16 embedding file of ``entry`` for ``seg`` and the session's pre-processing (written
        once, LRU of 64 files). Its header names the image (the page checks it); its file name
        also carries the pre-processing, so a contrast-enhanced embedding has its own URL."""
        mid = browser_embedding.model_id(seg.model_type, seg.weights_id)
        clahe = state.settings.enhancement
        _, enc_key = entry.encoder_input(clahe)
        key = (mid, enc_key)
        with self._lock:
            path = self._files.get(key)
            if path is not None and path.exists():
                self._files.move_to_end(key)
                return path
        emb, _ = self.studio.embed(state, entry, seg)
        data = browser_embedding.encode(
            emb.features.detach().float().cpu().numpy(),
            model_id=mid,
            image_key=entry.key,
            image_size=emb.image_size,
            input_size=emb.input_size,
        )
        suffix = "" if clahe is None else f"-{clahe.key()}"  # e.g. "-clahe2.0x8"
        name = f"{self._token[:16]}-{seg.model_type}-{entry.key[:16]}{suffix}.samemb"
        path = write_atomic(self.dir / name, data)
        with self._lock:
            self._files[key] = path
            while len(self._files) > MAX_EMBEDDING_FILES:
                _, old = self._files.popitem(last=False)
                old.unlink(missing_ok=True)
        return path

    # -------------------------------------------------------------- the sync value
    def sync(self, state: SessionState, modes: dict[str, PromptMode]) -> str:
        """The JSON the page's decoder reads after every Segment event (small: URLs, not data)."""
        s = state.settings
        out: dict[str, Any] = {
            "v": 1,
            "rev": uuid.uuid4().hex[:8],  # always a new value, so the page always hears of it
            "module_url": file_url(MODULE),
            "ort_url": file_url(ORT_DIR) + "/",
            "path": s.decoder_path,
            "client": state.client,  # "browser" once the server heard that this page decodes
            "modes": {label: mode.value for label, mode in modes.items()},
            "palette": [list(c) for c in PALETTE],
            "multimask": s.multimask,
            "threshold": s.threshold,
            "alpha": s.alpha,
            "brush_px": s.brush_px,
            "refine": s.refine,
            "image_key": None,
        }
        if state.has_image:  # the image's geometry: brush strokes are mapped to it on either path
            entry = self.studio.entry(state)
            out.update(
                image_key=entry.key,
                full=[entry.image.size.width, entry.image.size.height],
                preview=[entry.preview_size.width, entry.preview_size.height],
                scale=entry.scale,
            )
        reason = server_reason(state)
        if reason:
            out["path"] = "server"
            out["path_reason"] = reason
        if out["path"] == "server":
            return json.dumps(out)
        runtime_error = ensure_ort_runtime()  # fetched once per machine, then a cached check
        if runtime_error is not None:
            out["decoder_error"] = runtime_error
            return json.dumps(out)
        seg = self.studio.segmenter(state.model_type)
        files, error = self.decoder(seg)
        if files is None:
            out["decoder_error"] = error
            return json.dumps(out)
        out["decoder_url"] = file_url(files["quantized" if s.browser_model == "quantized" else "fp32"])
        out["decoder_model_id"] = files["model_id"]
        out["model_id"] = browser_embedding.model_id(seg.model_type, seg.weights_id)
        if not state.has_image:
            return json.dumps(out)
        entry = self.studio.entry(state)
        out.update(
            embedding_url=file_url(self.embedding_file(seg, entry, state)),
            prompts=state.prompts.to_dict(),
            pending_corner=list(state.pending_corner) if state.pending_corner else None,
            chosen=state.chosen,
            taken_url=self.taken_file(state, entry),
        )
        return json.dumps(out)

    def taken_file(self, state: SessionState, entry: ImageEntry) -> str | None:
        """URL of the preview pixels the object being edited may not cover (*Exclude committed
        objects*; a 0/255 greyscale PNG at the preview size), or None. Written once per set of
        earlier objects and kept with the embedding files (same LRU)."""
        key = self.studio.taken_key(state, entry)
        if key is None:
            return None
        with self._lock:
            path = self._files.get(key)
            if path is not None:
                self._files.move_to_end(key)
        if path is None or not path.exists():
            taken = self.studio.taken(state, entry)
            if taken is None:
                return None
            name = f"{self._token[:16]}-taken-{uuid.uuid4().hex[:12]}.png"
            path = write_atomic(self.dir / name, encode_png(taken))
            with self._lock:
                self._files[key] = path
                while len(self._files) > MAX_EMBEDDING_FILES:
                    _, old = self._files.popitem(last=False)
                    old.unlink(missing_ok=True)
        return file_url(path)
