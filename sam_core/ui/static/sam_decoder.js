// SAM Studio: the mask decoder in the browser.
//
// The server sends the image embedding once per image (fp16, 2 MiB, a file URL) and serves
// SAM's prompt encoder + mask decoder as ONNX; onnxruntime-web (vendored, no CDN) runs it on
// every click and on mouse hover, so a click never waits on the server. After drawing, the
// browser reports the prompts and the chosen candidate to the server in one small event (no
// images come back); the server updates the session, the prompt table, the metrics and the
// run log, and computes exports from the same prompts.
//
// Frames: prompts are full-image pixels (x right, y down); the page shows the preview (scale =
// preview px / full px); the decoder takes coordinates in SAM's 1024-long-side input frame,
// mapped exactly as segment_anything's ResizeLongestSide.apply_coords (tested against it).
// Sizes in the sync value are [width, height].
//
// The page runs the decoder graph pruned to its scores and 256x256 low-res logits (the server
// serves it; no 1024x1024 upsampling of four masks inside WASM) and upsamples the logits it
// draws itself, at the preview size: the same two bilinear steps as Sam.postprocess_masks
// (256 -> 1024, crop to the resized image, -> preview), done separably (upsampleTaps).

const LONG_SIDE = 1024;
const LOW_RES = 256;
const EMB_SHAPE = [1, 256, 64, 64];
const EMB_MAGIC = "SAMEMB01";
const HOVER_ALPHA = 0.35;

// ------------------------------------------------------------------ pure helpers (tested)

/** segment_anything ResizeLongestSide.get_preprocess_shape: [newH, newW]. */
export function preprocessShape(h, w, longSide = LONG_SIDE) {
  const scale = (longSide * 1.0) / Math.max(h, w);
  const newh = h * scale;
  const neww = w * scale;
  return [Math.trunc(newh + 0.5), Math.trunc(neww + 0.5)];
}

/** ResizeLongestSide.apply_coords for full-image points [[x, y], ...] of an image of (h, w).
 *  Float64 maths in the same order as numpy, then float32 as torch.as_tensor does. */
export function applyCoords(points, h, w, longSide = LONG_SIDE) {
  const [newh, neww] = preprocessShape(h, w, longSide);
  const out = new Float32Array(points.length * 2);
  points.forEach(([x, y], i) => {
    out[2 * i] = x * (neww / w);
    out[2 * i + 1] = y * (newh / h);
  });
  return out;
}

/** Full-image prompts -> the ONNX feed's point_coords / point_labels (SAM's ONNX example):
 *  points with labels 1/0, then the box as two corners labelled 2 and 3, or a (0, 0) point
 *  labelled -1 when there is no box. */
export function promptFeed(prompts, fullW, fullH) {
  const pts = (prompts.points || []).map((p) => [p[0], p[1]]);
  const labels = (prompts.points || []).map((p) => p[2]);
  if (prompts.box) {
    const [x1, y1, x2, y2] = prompts.box;
    pts.push([x1, y1], [x2, y2]);
    labels.push(2, 3);
  }
  const coords = applyCoords(pts, fullH, fullW);
  const n = pts.length + (prompts.box ? 0 : 1);
  const c = new Float32Array(n * 2);
  c.set(coords);
  const l = new Float32Array(n);
  l.set(labels);
  if (!prompts.box) l[n - 1] = -1;
  return { coords: c, labels: l, n };
}

let HALF_TABLE = null;
/** IEEE half -> float32 for every uint16 (built once). */
function halfTable() {
  if (HALF_TABLE) return HALF_TABLE;
  HALF_TABLE = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const f = h & 0x3ff;
    let v;
    if (e === 0) v = s * Math.pow(2, -14) * (f / 1024);
    else if (e === 31) v = f ? NaN : s * Infinity;
    else v = s * Math.pow(2, e - 15) * (1 + f / 1024);
    HALF_TABLE[h] = v;
  }
  return HALF_TABLE;
}

/** Parse an embedding file: "SAMEMB01", uint32 LE header length, JSON header, padding to 8,
 *  fp16 little-endian (1, 256, 64, 64). Returns {header, data: Float32Array}. */
export function parseEmbedding(buffer) {
  const bytes = new Uint8Array(buffer);
  const magic = new TextDecoder().decode(bytes.subarray(0, 8));
  if (magic !== EMB_MAGIC) throw new Error("not a SAM Studio embedding file");
  const hlen = new DataView(buffer).getUint32(8, true);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(12, 12 + hlen)));
  const offset = header.data_offset;
  const count = EMB_SHAPE.reduce((a, b) => a * b, 1);
  if (buffer.byteLength !== offset + 2 * count) throw new Error("embedding file has the wrong size");
  const halves = new Uint16Array(buffer, offset, count);
  const table = halfTable();
  const data = new Float32Array(count);
  for (let i = 0; i < count; i++) data[i] = table[halves[i]];
  return { header, data };
}

/** Gradio's own click -> natural-image pixel mapping (gradio 6.31's Image select handler):
 *  the image is shown with object-fit: scale-down (never upscaled), centred in the <img> box. */
export function imagePixel(img, clientX, clientY) {
  const rect = img.getBoundingClientRect();
  const r = Math.min(rect.width / img.naturalWidth, rect.height / img.naturalHeight, 1);
  const ox = (rect.width - img.naturalWidth * r) / 2;
  const oy = (rect.height - img.naturalHeight * r) / 2;
  const x = Math.round((clientX - rect.left - ox) / r);
  const y = Math.round((clientY - rect.top - oy) / r);
  if (x < 0 || x >= img.naturalWidth || y < 0 || y >= img.naturalHeight) return null;
  return [x, y];
}

/** Preview pixel -> full-image pixel, as the server's SessionState.click (clamped, 0.1 px). */
export function toFull(px, py, scale, fullW, fullH) {
  const r = (v) => Math.round(v * 10) / 10;
  return [r(Math.min(Math.max(px / scale, 0), fullW)), r(Math.min(Math.max(py / scale, 0), fullH))];
}

/** Per-output-pixel taps of SAM's two bilinear steps along one axis: 256 -> 1024 (torch
 *  interpolate, align_corners=False), keep [0, inputLen), then -> outLen. Returns {idx, w}
 *  with 4 taps per output pixel (indices into the 256 axis, weights summing to 1). */
export function upsampleTaps(inputLen, outLen) {
  const idx = new Int32Array(outLen * 4);
  const w = new Float32Array(outLen * 4);
  const lin = (dst, scale, n) => {
    const src = Math.max(scale * (dst + 0.5) - 0.5, 0);
    const i0 = Math.min(Math.floor(src), n - 1);
    const i1 = Math.min(i0 + 1, n - 1);
    const l1 = src - i0;
    return [i0, i1, 1 - l1, l1];
  };
  for (let o = 0; o < outLen; o++) {
    const [j0, j1, a0, a1] = lin(o, inputLen / outLen, inputLen); // preview -> cropped 1024 frame
    const [p0, p1, b0, b1] = lin(j0, LOW_RES / LONG_SIDE, LOW_RES); // 1024 frame -> 256
    const [q0, q1, c0, c1] = lin(j1, LOW_RES / LONG_SIDE, LOW_RES);
    idx.set([p0, p1, q0, q1], 4 * o);
    w.set([a0 * b0, a0 * b1, a1 * c0, a1 * c1], 4 * o);
  }
  return { idx, w };
}

const TAPS = new Map();
function taps(inputLen, outLen) {
  const key = `${inputLen}:${outLen}`;
  if (!TAPS.has(key)) TAPS.set(key, upsampleTaps(inputLen, outLen));
  return TAPS.get(key);
}

/** Logits (offset into a (N, 256, 256) array) -> (outH, outW) 0/1 mask of logits > thr, upsampled
 *  like Sam.postprocess_masks for an image whose 1024-frame size is (inH, inW). Returns
 *  {mask: Uint8Array, area}. */
export function upsampleMask(logits, offset, inW, inH, outW, outH, thr) {
  const tx = taps(inW, outW);
  const ty = taps(inH, outH);
  const rows = new Map(); // low-res row -> that row resampled to outW
  const row = (r) => {
    let out = rows.get(r);
    if (out) return out;
    out = new Float32Array(outW);
    const base = offset + r * LOW_RES;
    for (let x = 0; x < outW; x++) {
      const k = 4 * x;
      out[x] =
        tx.w[k] * logits[base + tx.idx[k]] +
        tx.w[k + 1] * logits[base + tx.idx[k + 1]] +
        tx.w[k + 2] * logits[base + tx.idx[k + 2]] +
        tx.w[k + 3] * logits[base + tx.idx[k + 3]];
    }
    rows.set(r, out);
    return out;
  };
  const mask = new Uint8Array(outW * outH);
  let area = 0;
  for (let y = 0; y < outH; y++) {
    const k = 4 * y;
    const r0 = row(ty.idx[k]), r1 = row(ty.idx[k + 1]), r2 = row(ty.idx[k + 2]), r3 = row(ty.idx[k + 3]);
    const w0 = ty.w[k], w1 = ty.w[k + 1], w2 = ty.w[k + 2], w3 = ty.w[k + 3];
    const o = y * outW;
    for (let x = 0; x < outW; x++) {
      if (w0 * r0[x] + w1 * r1[x] + w2 * r2[x] + w3 * r3[x] > thr) {
        mask[o + x] = 1;
        area++;
      }
    }
  }
  return { mask, area };
}

// ------------------------------------------------------------------ the widget

class BrowserDecoder {
  constructor(element, trigger, props, watch) {
    this.element = element;
    this.trigger = trigger;
    this.props = props;
    this.sync = null;
    this.ort = null;
    this.session = null; // {modelId, url, session}
    this.emb = null; // {modelId, imageKey, url, data, tensor}
    this.active = false; // the browser path draws clicks
    this.loading = false; // a decoder or an embedding is on its way: clicks wait for it
    this.failed = null; // why the browser path is off for this page (said once)
    this.failedPath = null; // the "Decode clicks" setting when it failed: changing it tries again
    this.announced = false;
    this.prompts = { points: [], box: null };
    this.pending = null; // first box corner, full px
    this.cands = null; // last decode: {idx: [...], scores, masks, lowRes, w, h}
    this.chosen = 0;
    this.queue = Promise.resolve(); // onnxruntime-web runs one at a time
    this.clickSeq = 0;
    this.hover = { pending: null, busy: false, inflight: null, started: 0, last: null };
    this.hoverEnabled = true; // the benchmark turns it off to time clicks that decode themselves
    this.stats = { clicks: [], hoverFrames: 0, decoderLoadMs: null, embeddings: [], refused: 0 };
    this.host = null;
    this.taken = null; // {url, data: Uint8Array preview px, 1 = taken by an earlier object} (Exclude committed objects)
    this.brush = { points: null, erase: false, sent: 0, img: null }; // the stroke being drawn (full px)
    window.samStudio = this; // for tests and the benchmark
    watch("value", () => this.onSync());
    this.onSync();
  }

  // --------------------------------------------------------------- sync from the server
  parse() {
    try {
      return this.props.value ? JSON.parse(this.props.value) : null;
    } catch (err) {
      return null;
    }
  }

  async onSync() {
    const s = this.parse();
    if (!s) return;
    const prev = this.sync;
    this.sync = s;
    this.ensureHost();
    if (this.failed) {
      if (s.path === this.failedPath) return; // said once; the server path stays
      this.failed = null; // the visitor changed "Decode clicks": try again
    }
    if (s.path === "server") return this.deactivate(s.path_reason ? `Clicks are decoded on the server: ${s.path_reason}.` : "");
    if (typeof WebAssembly !== "object") return this.fail("this browser has no WebAssembly");
    this.loading = true;
    try {
      await this.ensureDecoder(s);
      if (s.image_key) await this.ensureEmbedding(s);
      await this.ensureTaken(s);
    } catch (err) {
      return this.fail(String(err && err.message ? err.message : err));
    } finally {
      this.loading = false;
    }
    if (this.sync !== s) return; // a newer sync arrived meanwhile: it takes over
    if (!s.image_key) {
      this.clearDrawing();
      return;
    }
    if (!this.matches()) return; // an embedding of another model or image is refused, never shown
    if (!this.active) {
      this.active = true;
      this.failed = null;
      document.body.classList.add("sam-browser-decoder");
      this.trigger("submit", { kind: "ready", threads: this.threads, load_ms: this.stats.decoderLoadMs });
      if (!this.announced) {
        this.announced = true;
        this.say(`Clicks are decoded in this browser (onnxruntime-web, ${this.threads} thread${this.threads > 1 ? "s" : ""}).`);
      }
    }
    // Server-side changes (undo, table edits, examples, settings, model) arrive as prompts.
    const same =
      prev &&
      this.cands &&
      prev.image_key === s.image_key &&
      prev.model_id === s.model_id &&
      prev.multimask === s.multimask &&
      JSON.stringify(s.prompts) === JSON.stringify(this.prompts);
    this.pending = s.pending_corner;
    if (same) {
      this.chosen = Math.min(s.chosen, this.cands.idx.length - 1);
      this.draw();
      return;
    }
    this.prompts = s.prompts;
    if (!s.prompts.points.length && !s.prompts.box) {
      this.cands = null;
      this.draw();
      return;
    }
    const seq = ++this.clickSeq;
    const out = await this.decode(this.prompts, s.refine ? this.prevLowRes() : null);
    if (!out || seq !== this.clickSeq) return;
    this.cands = out;
    this.chosen = Math.min(s.chosen, out.idx.length - 1);
    this.draw();
  }

  /** The candidate strip and the note, placed above the server's gallery (made once). */
  ensureHost() {
    if (this.host && document.body.contains(this.host)) return;
    this.host = document.querySelector("#browser-candidates");
    if (!this.host) {
      const gallery = document.querySelector("#candidates");
      if (!gallery || !gallery.parentElement) return;
      this.host = document.createElement("div");
      this.host.id = "browser-candidates";
      gallery.parentElement.insertBefore(this.host, gallery);
    }
    this.host.innerHTML =
      '<div class="bd-note" data-role="note"></div>' +
      '<div class="bd-title">Candidates (best preselected — click to choose)</div>' +
      '<div class="bd-strip" data-role="strip"></div>';
  }

  say(text) {
    const note = this.host && this.host.querySelector('[data-role="note"]');
    if (note) note.textContent = text;
  }

  /** The browser path cannot work on this page: say so once, and hand clicks to the server. */
  fail(reason) {
    if (this.failed) return;
    this.failed = reason;
    this.failedPath = this.sync ? this.sync.path : null;
    this.deactivate(`Browser decoder unavailable (${reason}): clicks go to the server.`);
    this.trigger("submit", { kind: "failed", reason });
  }

  deactivate(note) {
    this.active = false;
    document.body.classList.remove("sam-browser-decoder");
    this.clearDrawing();
    this.say(note || "");
  }

  // --------------------------------------------------------------- loading
  async ensureDecoder(s) {
    if (this.session && this.session.url === s.decoder_url) return;
    if (!s.decoder_url) throw new Error(s.decoder_error || "no decoder file for this model");
    const t0 = performance.now();
    if (!this.ort) {
      this.ort = await import(new URL(s.ort_url + "ort.wasm.min.mjs", document.baseURI).href);
      this.ort.env.wasm.wasmPaths = new URL(s.ort_url, document.baseURI).href;
      const cores = navigator.hardwareConcurrency || 1;
      this.threads = self.crossOriginIsolated ? Math.max(1, Math.min(4, cores)) : 1;
      this.ort.env.wasm.numThreads = this.threads;
      // Inference in a worker: the page keeps handling the pointer (hover) while a decode runs.
      this.ort.env.wasm.proxy = s.proxy !== false;
    }
    const session = await this.ort.InferenceSession.create(new URL(s.decoder_url, document.baseURI).href, {
      executionProviders: ["wasm"],
      graphOptimizationLevel: "all",
    });
    this.session = { url: s.decoder_url, modelId: s.decoder_model_id, session };
    this.stats.decoderLoadMs = performance.now() - t0;
  }

  async ensureEmbedding(s) {
    if (this.emb && this.emb.url === s.embedding_url) return;
    this.cands = null;
    this.emb = null;
    const t0 = performance.now();
    const resp = await fetch(new URL(s.embedding_url, document.baseURI).href);
    if (!resp.ok) throw new Error(`embedding download failed (HTTP ${resp.status})`);
    const buf = await resp.arrayBuffer();
    const { header, data } = parseEmbedding(buf);
    const ms = performance.now() - t0;
    this.stats.embeddings.push({ bytes: buf.byteLength, ms });
    this.emb = {
      url: s.embedding_url,
      modelId: header.model_id,
      imageKey: header.image_key,
      data,
    };
  }

  /** The pixels an earlier object holds (Exclude committed objects), as a preview-size 0/1 array. */
  async ensureTaken(s) {
    const url = s.taken_url || null;
    if ((this.taken ? this.taken.url : null) === url) return;
    if (!url) {
      this.taken = null;
      return;
    }
    const resp = await fetch(new URL(url, document.baseURI).href);
    if (!resp.ok) throw new Error(`exclusion mask download failed (HTTP ${resp.status})`);
    const bitmap = await createImageBitmap(await resp.blob());
    const c = document.createElement("canvas");
    c.width = bitmap.width;
    c.height = bitmap.height;
    const ctx = c.getContext("2d");
    ctx.drawImage(bitmap, 0, 0);
    const px = ctx.getImageData(0, 0, c.width, c.height).data;
    const data = new Uint8Array(c.width * c.height);
    for (let i = 0; i < data.length; i++) data[i] = px[4 * i] > 127 ? 1 : 0;
    this.taken = { url, data, w: c.width, h: c.height };
  }

  /** True when the embedding, the decoder and the page's image all belong to one model. */
  matches() {
    const s = this.sync;
    if (!this.session || !this.emb || !s) return false;
    const ok =
      this.emb.modelId === s.model_id && this.session.modelId === s.model_id && this.emb.imageKey === s.image_key;
    if (!ok) {
      this.stats.refused++;
      this.fail(
        `refused a model mismatch: the embedding is for ${this.emb.modelId} (image ${this.emb.imageKey.slice(0, 8)}), ` +
          `the decoder for ${this.session.modelId}, the page for ${s.model_id}; nothing was drawn`
      );
    }
    return ok;
  }

  // --------------------------------------------------------------- decoding
  prevLowRes() {
    if (!this.cands) return null;
    const i = this.cands.idx[this.chosen];
    return this.cands.lowRes.subarray(i * LOW_RES * LOW_RES, (i + 1) * LOW_RES * LOW_RES);
  }

  /** Decode full-image prompts at the preview size; null when refused or failed. */
  decode(prompts, maskInput, multimask) {
    const s = this.sync;
    const run = async () => {
      if (!this.matches()) return null;
      const ort = this.ort;
      const [fw, fh] = s.full;
      const { coords, labels, n } = promptFeed(prompts, fw, fh);
      const mask = new Float32Array(LOW_RES * LOW_RES);
      if (maskInput) mask.set(maskInput);
      const t0 = performance.now();
      const out = await this.session.session.run({
        // A copy per run (~1 ms): the proxy worker takes the buffers it is sent.
        image_embeddings: new ort.Tensor("float32", this.emb.data.slice(), EMB_SHAPE),
        point_coords: new ort.Tensor("float32", coords, [1, n, 2]),
        point_labels: new ort.Tensor("float32", labels, [1, n]),
        mask_input: new ort.Tensor("float32", mask, [1, 1, LOW_RES, LOW_RES]),
        has_mask_input: new ort.Tensor("float32", new Float32Array([maskInput ? 1 : 0]), [1]),
      });
      const mm = multimask === undefined ? s.multimask : multimask;
      const idx = mm ? [1, 2, 3] : [0];
      const scores = out.iou_predictions.data;
      return {
        idx,
        prompts: JSON.stringify(prompts),
        allScores: Array.from(scores), // all four mask tokens: a click can reuse a hover's decode
        scores: idx.map((i) => scores[i]),
        lowRes: out.low_res_masks.data,
        key: `${s.image_key}:${s.model_id}`,
        preview: {}, // candidate -> {mask, area} at the preview size, made when drawn
        ms: performance.now() - t0,
      };
    };
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => null);
    return p.catch((err) => {
      this.fail(String(err && err.message ? err.message : err));
      return null;
    });
  }

  best(cands) {
    let b = 0;
    cands.scores.forEach((v, i) => {
      if (v > cands.scores[b]) b = i;
    });
    return b;
  }

  // --------------------------------------------------------------- events
  mode() {
    const checked = document.querySelector("#prompt-mode input:checked");
    const label = checked ? checked.value : "";
    return (this.sync && this.sync.modes && this.sync.modes[label]) || "fg";
  }

  canDraw() {
    return Boolean(this.active && this.sync && this.sync.image_key && this.emb && this.session);
  }

  async onClick(ev, img) {
    const t0 = ev.timeStamp || performance.now();
    const s = this.sync;
    const px = imagePixel(img, ev.clientX, ev.clientY);
    if (!px) return;
    const [fx, fy] = toFull(px[0], px[1], s.scale, s.full[0], s.full[1]);
    const mode = this.mode();
    let prompts;
    if (mode === "box") {
      this.clearHover();
      if (!this.pending) {
        this.pending = [fx, fy];
        this.draw();
        this.trigger("submit", { kind: "corner", corner: this.pending, image_key: s.image_key });
        return;
      }
      const [ax, ay] = this.pending;
      if (Math.abs(ax - fx) < 1 || Math.abs(ay - fy) < 1) {
        this.say("The box needs two different corners; click the opposite corner.");
        return;
      }
      const box = [Math.min(ax, fx), Math.min(ay, fy), Math.max(ax, fx), Math.max(ay, fy)];
      prompts = { points: this.prompts.points, box };
      this.pending = null;
    } else {
      prompts = { points: [...this.prompts.points, [fx, fy, mode === "bg" ? 0 : 1]], box: this.prompts.box };
    }
    const seq = ++this.clickSeq;
    const t1 = performance.now();
    let out = null;
    const h = this.hover;
    let reused = false;
    // Within 1.5 CSS px on screen (pointer moves have fractional coordinates, clicks whole ones).
    const rect = img.getBoundingClientRect();
    const tol = 1.5 / Math.min(rect.width / img.naturalWidth, rect.height / img.naturalHeight, 1); // preview px
    const near = (p) => p && Math.abs(p[0] - fx) * s.scale <= tol && Math.abs(p[1] - fy) * s.scale <= tol;
    if (mode === "fg" && !s.refine && (near(h.inflight && h.inflight.point) || near(h.last && h.last.point))) {
      // The pointer hovered here: that decode, in flight or done, is this click's, and its point
      // becomes the click's prompt.
      const cand = near(h.inflight && h.inflight.point) ? await h.inflight.promise : h.last;
      const base = JSON.stringify(this.prompts);
      if (cand && cand.base === base && cand.key === `${s.image_key}:${s.model_id}`) {
        const idx = s.multimask ? [1, 2, 3] : [0];
        out = { ...cand, idx, scores: idx.map((i) => cand.allScores[i]), preview: {} };
        prompts = { points: [...this.prompts.points, [...cand.point, 1]], box: this.prompts.box };
        reused = true;
      }
    }
    this.clearHover(false); // the click's draw below replaces the hover mask
    if (!out) out = await this.decode(prompts, s.refine ? this.prevLowRes() : null);
    if (!out || seq !== this.clickSeq) return;
    this.prompts = prompts;
    this.cands = out;
    this.chosen = this.best(out);
    const t2 = performance.now();
    this.draw();
    const drawn = performance.now();
    this.stats.clicks.push({
      decode_ms: out.ms, // onnxruntime-web's run
      reused_hover: reused, // the hover decode of this very point was used
      wait_ms: reused ? t2 - t1 : t2 - t1 - out.ms, // waiting for a hover decode; tensors in and out
      draw_ms: drawn - t2, // overlay + candidate strip
      click_to_drawn_ms: drawn - t0, // from the click event to the canvases painted
    });
    this.report(out.ms);
  }

  report(decodeMs) {
    this.trigger("submit", {
      kind: "decoded",
      image_key: this.sync.image_key,
      model_id: this.sync.model_id,
      prompts: this.prompts,
      chosen: this.chosen,
      scores: this.cands ? this.cands.scores : [],
      decode_ms: decodeMs,
    });
  }

  choose(i) {
    if (!this.cands || i < 0 || i >= this.cands.idx.length || i === this.chosen) return;
    this.chosen = i;
    this.draw();
    this.trigger("submit", { kind: "choose", chosen: i, image_key: this.sync.image_key });
  }

  onMove(ev, img) {
    if (!this.hoverEnabled || !this.canDraw() || this.mode() !== "fg" || this.pending) return;
    const px = imagePixel(img, ev.clientX, ev.clientY);
    if (!px) return;
    this.hover.pending = toFull(px[0], px[1], this.sync.scale, this.sync.full[0], this.sync.full[1]);
    if (!this.hover.busy) this.pumpHover();
  }

  /** Decode the latest pointer position only: frames are dropped, never queued. */
  /** Start decoding the latest pointer position, if any: {point, promise} or null. */
  startHover() {
    if (!this.hover.pending) return null;
    const [x, y] = this.hover.pending;
    this.hover.pending = null;
    const prompts = { points: [...this.prompts.points, [x, y, 1]], box: this.prompts.box };
    const base = JSON.stringify(this.prompts);
    const promise = this.decode(prompts, null, false).then((o) => o && Object.assign(o, { point: [x, y], base }));
    this.hover.inflight = { point: [x, y], promise, seq: this.clickSeq };
    return this.hover.inflight;
  }

  /** Decode the latest pointer position only: frames are dropped, never queued. The next
   *  position's decode starts before this one is drawn, so drawing overlaps decoding. */
  async pumpHover() {
    this.hover.busy = true;
    if (!this.hover.started) this.hover.started = performance.now();
    let job = this.startHover();
    while (job) {
      const out = await job.promise;
      if (this.hover.inflight === job) this.hover.inflight = null;
      if (!out || job.seq !== this.clickSeq || !this.hover.busy) break;
      job = this.startHover();
      this.hover.last = out;
      this.stats.hoverFrames++;
      this.draw(false); // the candidate strip does not change on hover
    }
    this.hover.busy = false;
  }

  clearHover(redraw = true) {
    this.hover.pending = null;
    this.hover.busy = false;
    this.hover.inflight = null;
    if (this.hover.last) {
      this.hover.last = null;
      if (redraw) this.draw();
    }
  }

  // --------------------------------------------------------------- brush strokes
  strokePoint(ev, img) {
    const s = this.sync;
    if (!s || !s.image_key) return null;
    const px = imagePixel(img, ev.clientX, ev.clientY);
    return px ? toFull(px[0], px[1], s.scale, s.full[0], s.full[1]) : null;
  }

  strokeStart(ev, img, erase) {
    const p = this.strokePoint(ev, img);
    if (!p) return;
    this.clearHover(false);
    this.brush = { points: [p], erase, sent: 0, img };
    this.drawStroke();
  }

  strokeMove(ev, img) {
    const p = this.strokePoint(ev, img);
    if (!p || this.brush.points.length >= 10000) return;
    const last = this.brush.points[this.brush.points.length - 1];
    if (Math.hypot(p[0] - last[0], p[1] - last[1]) * this.sync.scale < 1) return; // under a preview px
    this.brush.points.push(p);
    this.drawStroke();
  }

  strokeEnd() {
    const b = this.brush;
    if (!b.points) return;
    const points = b.points.map(([x, y]) => [Math.round(x * 10) / 10, Math.round(y * 10) / 10]);
    this.brush = { points: null, erase: b.erase, sent: performance.now(), img: null };
    this.stats.strokes = (this.stats.strokes || 0) + 1;
    this.trigger("submit", { kind: "stroke", points, erase: b.erase, image_key: this.sync.image_key });
  }

  /** The stroke so far, over the image, in the brush's full-image radius. */
  drawStroke() {
    const img = this.brush.img;
    const s = this.sync;
    if (!img || !img.naturalWidth || !s) return;
    const canvas = this.overlay(img);
    const [pw, ph] = s.preview;
    if (canvas.width !== pw || canvas.height !== ph) {
      canvas.width = pw;
      canvas.height = ph;
    }
    const ctx = canvas.getContext("2d");
    const pts = this.brush.points;
    ctx.save();
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.lineWidth = Math.max(1, 2 * (s.brush_px || 12) * s.scale);
    ctx.strokeStyle = this.brush.erase ? "rgba(255,255,255,0.6)" : "rgba(255,60,160,0.6)";
    ctx.beginPath();
    ctx.moveTo(pts[0][0] * s.scale, pts[0][1] * s.scale);
    for (const [x, y] of pts) ctx.lineTo(x * s.scale, y * s.scale);
    if (pts.length === 1) ctx.lineTo(pts[0][0] * s.scale + 0.01, pts[0][1] * s.scale);
    ctx.stroke();
    ctx.restore();
  }

  // --------------------------------------------------------------- drawing
  overlay(img) {
    let canvas = document.querySelector("#bd-overlay");
    const parent = img.parentElement;
    if (!canvas || canvas.parentElement !== parent) {
      if (canvas) canvas.remove();
      canvas = document.createElement("canvas");
      canvas.id = "bd-overlay";
      canvas.style.position = "absolute";
      canvas.style.pointerEvents = "none";
      if (getComputedStyle(parent).position === "static") parent.style.position = "relative";
      parent.appendChild(canvas);
    }
    // The displayed image box (object-fit: scale-down inside the img element), in parent px.
    const r = img.getBoundingClientRect();
    const pr = parent.getBoundingClientRect();
    const s = Math.min(r.width / img.naturalWidth, r.height / img.naturalHeight, 1); // scale-down
    const dw = img.naturalWidth * s;
    const dh = img.naturalHeight * s;
    canvas.style.left = `${r.left - pr.left + (r.width - dw) / 2}px`;
    canvas.style.top = `${r.top - pr.top + (r.height - dh) / 2}px`;
    canvas.style.width = `${dw}px`;
    canvas.style.height = `${dh}px`;
    return canvas;
  }

  clearDrawing() {
    const c = document.querySelector("#bd-overlay");
    if (c) c.getContext("2d").clearRect(0, 0, c.width, c.height);
    const strip = this.host && this.host.querySelector('[data-role="strip"]');
    if (strip) strip.innerHTML = "";
  }

  color(i) {
    const pal = (this.sync && this.sync.palette) || [[30, 144, 255]];
    return pal[i % pal.length];
  }

  /** Candidate i of a decode as a 0/1 mask at the preview size (made once per threshold). */
  previewMask(cands, i) {
    const s = this.sync;
    const t = this.taken && this.taken.w === s.preview[0] && this.taken.h === s.preview[1] ? this.taken : null;
    const key = `${i}:${s.threshold}:${t ? t.url : ""}`;
    if (!cands.preview[key]) {
      const [fw, fh] = s.full;
      const [inH, inW] = preprocessShape(fh, fw);
      const [pw, ph] = s.preview;
      const out = upsampleMask(cands.lowRes, cands.idx[i] * LOW_RES * LOW_RES, inW, inH, pw, ph, s.threshold);
      if (t) {
        // Exclude committed objects: the pixels of earlier objects are never this object's.
        for (let k = 0; k < out.mask.length; k++) {
          if (out.mask[k] && t.data[k]) {
            out.mask[k] = 0;
            out.area--;
          }
        }
      }
      cands.preview[key] = out;
    }
    return cands.preview[key];
  }

  /** Paint candidate i of a decode into an RGBA buffer with a white outline; returns its area. */
  paint(rgba, cands, i, color, alpha) {
    const [w, h] = this.sync.preview;
    const { mask: m, area } = this.previewMask(cands, i);
    const a = Math.round(255 * alpha);
    const [cr, cg, cb] = color;
    for (let y = 0; y < h; y++) {
      const row = y * w;
      for (let x = 0; x < w; x++) {
        if (!m[row + x]) continue;
        const edge =
          x === 0 || y === 0 || x === w - 1 || y === h - 1 ||
          !m[row + x - 1] || !m[row + x + 1] || !m[row + x - w] || !m[row + x + w];
        const k = 4 * (y * w + x);
        rgba[k] = edge ? 255 : cr;
        rgba[k + 1] = edge ? 255 : cg;
        rgba[k + 2] = edge ? 255 : cb;
        rgba[k + 3] = edge ? 255 : a;
      }
    }
    return area;
  }

  /** Paint the overlay (chosen mask, hover mask, prompts) and, unless told not to, the strip. */
  draw(strip = true) {
    const img = document.querySelector("#input-image img");
    if (!img || !img.naturalWidth || !this.sync) return;
    const canvas = this.overlay(img);
    const [pw, ph] = this.sync.preview;
    if (canvas.width !== pw || canvas.height !== ph) {
      canvas.width = pw;
      canvas.height = ph;
    }
    const ctx = canvas.getContext("2d");
    const image = ctx.createImageData(pw, ph);
    const areas = [];
    const key = `${this.sync.image_key}:${this.sync.model_id}`;
    if (this.cands && this.cands.key === key) {
      const c = this.color(this.chosen);
      areas[this.chosen] = this.paint(image.data, this.cands, this.chosen, c, this.sync.alpha);
    }
    if (this.hover.last && this.hover.last.key === key) {
      this.paint(image.data, this.hover.last, 0, [255, 255, 255], HOVER_ALPHA);
    }
    ctx.putImageData(image, 0, 0);
    this.drawPrompts(ctx);
    canvas.dataset.rev = String((Number(canvas.dataset.rev) || 0) + 1);
    canvas.dataset.chosen = String(this.chosen);
    // The strip after the overlay has been painted: the mask shows first, the thumbnails a task later.
    if (strip) setTimeout(() => this.drawStrip(img, areas), 0);
  }

  drawPrompts(ctx) {
    const s = this.sync;
    const k = s.scale;
    const r = Math.max(4, Math.round(Math.max(s.preview[0], s.preview[1]) / 150));
    ctx.lineWidth = Math.max(2, r / 3);
    if (this.prompts.box) {
      const [x1, y1, x2, y2] = this.prompts.box;
      ctx.strokeStyle = "rgb(255,215,0)";
      ctx.strokeRect(x1 * k, y1 * k, (x2 - x1) * k, (y2 - y1) * k);
    }
    for (const [x, y, l] of this.prompts.points) {
      ctx.beginPath();
      ctx.arc(x * k, y * k, r, 0, 2 * Math.PI);
      ctx.fillStyle = l ? "rgb(46,204,64)" : "rgb(255,65,54)";
      ctx.fill();
      ctx.strokeStyle = "white";
      ctx.stroke();
    }
    if (this.pending) {
      const [x, y] = this.pending;
      ctx.strokeStyle = "rgb(255,215,0)";
      ctx.beginPath();
      ctx.moveTo(x * k - 2 * r, y * k);
      ctx.lineTo(x * k + 2 * r, y * k);
      ctx.moveTo(x * k, y * k - 2 * r);
      ctx.lineTo(x * k, y * k + 2 * r);
      ctx.stroke();
    }
  }

  drawStrip(img, areas) {
    this.ensureHost();
    const strip = this.host && this.host.querySelector('[data-role="strip"]');
    if (!strip) return;
    strip.innerHTML = "";
    const c = this.cands;
    if (!c) return;
    const [pw, ph] = this.sync.preview;
    const [fw, fh] = this.sync.full;
    const [inH, inW] = preprocessShape(fh, fw);
    const tw = 200;
    const th = Math.max(1, Math.round((tw * ph) / pw));
    c.idx.forEach((_, i) => {
      const fig = document.createElement("figure");
      fig.className = "bd-cand" + (i === this.chosen ? " bd-chosen" : "");
      fig.dataset.index = String(i);
      const cv = document.createElement("canvas");
      cv.width = tw;
      cv.height = th;
      const ctx = cv.getContext("2d");
      ctx.drawImage(img, 0, 0, tw, th);
      const over = ctx.getImageData(0, 0, tw, th);
      const small = upsampleMask(c.lowRes, c.idx[i] * LOW_RES * LOW_RES, inW, inH, tw, th, this.sync.threshold);
      const [cr, cg, cb] = this.color(i);
      for (let k = 0; k < tw * th; k++) {
        if (!small.mask[k]) continue;
        over.data[4 * k] = (over.data[4 * k] + cr) >> 1;
        over.data[4 * k + 1] = (over.data[4 * k + 1] + cg) >> 1;
        over.data[4 * k + 2] = (over.data[4 * k + 2] + cb) >> 1;
      }
      ctx.putImageData(over, 0, 0);
      // The chosen mask's area is exact (preview); the others' from their thumbnail.
      const pct = areas[i] !== undefined ? (100 * areas[i]) / (pw * ph) : (100 * small.area) / (tw * th);
      const cap = document.createElement("figcaption");
      cap.textContent = `mask ${i + 1} · score ${c.scores[i].toFixed(3)} · ${pct.toFixed(1)} %`;
      fig.append(cv, cap);
      fig.addEventListener("click", () => this.choose(i));
      strip.appendChild(fig);
    });
  }
}

/** Wire the decoder to the page (called from the gr.HTML component's js_on_load). */
export function attach(element, trigger, props, watch) {
  const bd = new BrowserDecoder(element, trigger, props, watch);
  const root = () => document.querySelector("#input-image");
  // Capture phase on the document: runs before Gradio's own click handler on the <img>.
  document.addEventListener(
    "click",
    (ev) => {
      const r = root();
      if (!r || ev.target.tagName !== "IMG" || !r.contains(ev.target)) return;
      if (bd.brush.sent) {
        // The click that ends a brush stroke (no press since): the stroke went to the server already.
        bd.brush.sent = 0;
        ev.stopPropagation();
        ev.preventDefault();
        return;
      }
      if (!bd.active || !POINT_MODES.has(bd.mode())) return; // polygon, region: the server's click handler
      ev.stopPropagation();
      ev.preventDefault();
      if (bd.loading || !bd.canDraw()) {
        bd.say("Loading the decoder / the image embedding… click again in a moment.");
        return;
      }
      bd.onClick(ev, ev.target);
    },
    true
  );
  document.addEventListener(
    "pointermove",
    (ev) => {
      const r = root();
      if (!r || ev.target.tagName !== "IMG" || !r.contains(ev.target)) return;
      if (bd.brush.points) return bd.strokeMove(ev, ev.target);
      bd.onMove(ev, ev.target);
    },
    true
  );
  // Brush / eraser: a press-drag-release on the image is one stroke (full-image px + the radius
  // the server knows), drawn here as it is made and applied by the server as one undo step.
  document.addEventListener(
    "pointerdown",
    (ev) => {
      bd.brush.sent = 0; // a new press: a stroke that ended off the image swallows no later click
      const r = root();
      if (!r || ev.button !== 0 || ev.target.tagName !== "IMG" || !r.contains(ev.target)) return;
      const mode = bd.mode();
      if (mode !== "brush" && mode !== "eraser") return;
      ev.preventDefault();
      bd.strokeStart(ev, ev.target, mode === "eraser");
    },
    true
  );
  document.addEventListener("pointerup", () => bd.strokeEnd(), true);
  document.addEventListener(
    "pointerout",
    (ev) => {
      if (ev.target.tagName === "IMG" && root() && root().contains(ev.target)) bd.clearHover();
    },
    true
  );
  // A new input image (the server re-rendered it): redraw on top of it once it has loaded.
  document.addEventListener(
    "load",
    (ev) => {
      const r = root();
      if (bd.canDraw() && ev.target.tagName === "IMG" && r && r.contains(ev.target)) bd.draw();
    },
    true
  );
  window.addEventListener("resize", () => bd.canDraw() && bd.draw());
  document.addEventListener("keydown", (ev) => shortcut(bd, ev), true);
  return bd;
}

const TOGGLES = new Set(["radio", "checkbox", "button", "submit", "range"]);
const POINT_MODES = new Set(["fg", "bg", "box"]); // modes the browser decoder draws itself

/** Keyboard shortcuts: f / b / x prompt mode, n new object, z undo, 1 / 2 / 3 candidate.
 *  Never while typing in a field, and never with Ctrl / Alt / Meta held. */
export function shortcut(bd, ev) {
  if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.repeat) return;
  const t = ev.target;
  const typing =
    t && (t.isContentEditable || /^(TEXTAREA|SELECT)$/.test(t.tagName) || (t.tagName === "INPUT" && !TOGGLES.has(t.type)));
  if (typing) return; // a radio button or a checkbox keeps the shortcuts; a text or number field does not
  const key = ev.key.toLowerCase();
  const modes = { f: "fg", b: "bg", x: "box" };
  let done = false;
  if (modes[key]) {
    const map = (bd.sync && bd.sync.modes) || {};
    const label = Object.keys(map).find((k) => map[k] === modes[key]);
    const input = label && document.querySelector(`#prompt-mode input[value="${CSS.escape(label)}"]`);
    if (input) {
      input.click();
      done = true;
    }
  } else if (key === "n" || key === "z") {
    const button = document.querySelector(key === "n" ? "#new-object" : "#undo");
    if (button) {
      button.click();
      done = true;
    }
  } else if (key === "1" || key === "2" || key === "3") {
    const i = Number(key) - 1;
    if (bd.active && bd.cands) {
      bd.choose(i);
      done = true;
    } else {
      const thumbs = document.querySelectorAll("#candidates .thumbnail-item");
      if (thumbs[i]) {
        thumbs[i].click();
        done = true;
      }
    }
  }
  if (done) {
    ev.preventDefault();
    bd.stats.shortcuts = (bd.stats.shortcuts || 0) + 1;
  }
}
