"""Run a study: every image encoded once, every object and prompt variant decoded on it.

:func:`run_study` is the whole pipeline behind ``python -m sam_core.batch`` and the app's
Batch tab: inputs -> (shard) -> per image: decode the file, one encoder run (or a cache /
embedding-store hit), the experiment's variants for each object, metrics at full resolution,
optional overlay, run-log records, one part file -> outputs assembled from the parts.
It keeps no global state and may run in a thread beside the app (the Segmenter has its lock).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import platform
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from huggingface_hub.utils import tqdm  # tqdm.auto's bar, typed

from sam_core.app.records import make_result_record, preprocess_extra
from sam_core.batch.experiments import (
    EXPERIMENT_COLUMNS,
    EXPERIMENTS,
    MAX_CLICKS,
    NEEDS_REFERENCE,
    ExperimentSkip,
    Outcome,
    primary_variant,
    run_experiment,
)
from sam_core.batch.inputs import (
    ImageInput,
    InputError,
    ObjectSpec,
    ReferenceMissing,
    References,
    RefObject,
    collect_images,
    load_prompt_file,
    natural_key,
    open_references,
)
from sam_core.batch.outputs import columns_for
from sam_core.batch.shards import ShardLayout, assemble
from sam_core.core.enhance import Clahe, apply_clahe, encoder_key
from sam_core.core.errors import ImageError, PromptError, UserError
from sam_core.core.evaluation import BOUNDARY_TOLERANCE, PROMPT_MODES, boundary_f, dice, iou, prompts_from_reference
from sam_core.core.files import safe_stem, write_atomic
from sam_core.core.geometry import mask_metrics
from sam_core.core.images import DEFAULT_MAX_PIXELS, LoadedImage, image_hash, image_stats, load_image, preview
from sam_core.core.prompts import Prompts
from sam_core.core.render import draw_prompts, encode_png, overlay_mask
from sam_core.core.sizes import ImageSize
from sam_core.model.segmenter import Embedding, Segmenter
from sam_core.model.weights import sha256_file
from sam_core.runlog import RunLog

__all__ = ["Progress", "StudyConfig", "StudyResult", "run_study"]

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
"""``progress(fraction 0..1, message)``, called after each image."""

_REF_COLOR = (0, 220, 255)  # reference outline in overlays (cyan)
_OVERLAY_SIDE = 1024  # overlays are drawn on a preview of at most this long side


@dataclass(frozen=True)
class StudyConfig:
    """What to run. Paths are the user's; ``out`` is the study folder (created).

    ``images``: folders, globs, list files or image files. ``prompts``: a JSON or CSV prompt file.
    ``reference``: a folder of PNG masks or a COCO instances JSON. ``prompt_from``: derive the
    prompts from the reference (``box``, ``center``, ``box+center``; default ``box``, and nothing
    for ``clicks``, which then starts from an empty prompt). ``box_noise``: jitter of derived
    boxes, a fraction of the box size, seeded by ``seed`` per image and object. ``shard``:
    ``(I, N)``, this run processes the images whose sorted index is I modulo N. ``log_dir``: the
    run log (default ``out/logs``, or ``out/shards/I-of-N/logs`` for a shard, since SQLite must
    not be shared between cluster nodes). ``max_images`` / ``max_pixels``: refuse larger inputs.
    ``clahe``: contrast enhancement of the encoder's input (CLAHE on the L channel, see
    :mod:`sam_core.core.enhance`); metrics, overlays, image stats and the ``image_hash`` of the
    run log stay those of the original image. None (default): the encoder sees the image as is.
    """

    images: tuple[str, ...]
    out: Path
    prompts: Path | None = None
    reference: Path | None = None
    prompt_from: str | None = None
    box_noise: float = 0.0
    seed: int = 0
    experiment: str = "none"
    overlays: bool = False
    resume: bool = False
    overwrite: bool = False
    shard: tuple[int, int] = (0, 1)
    batch_size: int = 1
    max_clicks: int = MAX_CLICKS
    log_dir: Path | None = None
    run_log: bool = True
    max_images: int | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    clahe: Clahe | None = None
    progress_bar: bool = False  # a tqdm bar on stderr (the command line turns it on)

    def __post_init__(self) -> None:
        object.__setattr__(self, "images", tuple(os.fspath(p) for p in self.images))
        object.__setattr__(self, "out", Path(self.out))


@dataclass(frozen=True)
class StudyResult:
    """What a run wrote. ``paths``: ``results_csv``, ``results_md``, ``summary_json``, ``errors_csv``
    and, per experiment, ``noc_csv``, ``miou_vs_clicks_csv``, ``box_scale_png``, ``iou_vs_clicks_png``,
    ``overlays`` (a folder). ``rows``: the rows of ``results.csv`` with unrounded values."""

    out: Path
    paths: dict[str, Path]
    rows: list[dict[str, Any]]
    errors: list[InputError]
    summary: dict[str, Any]
    complete: bool
    shard: tuple[int, int] = (0, 1)
    log_dir: Path | None = None


# --------------------------------------------------------------------------- planning


@dataclass
class _Plan:
    images: list[ImageInput]
    mine: list[ImageInput]
    prompts: dict[str, list[ObjectSpec]] | None  # by image name
    refs: References | None
    prompt_from: str | None
    errors: list[InputError] = field(default_factory=list)


def _check(config: StudyConfig) -> None:
    if config.experiment not in EXPERIMENTS:
        raise UserError(f"unknown experiment {config.experiment!r}: use one of {', '.join(EXPERIMENTS)}")
    if config.prompts is None and config.reference is None:
        raise UserError("give the prompts (--prompts FILE) or reference masks to derive them from (--reference)")
    if config.prompt_from is not None:
        if config.prompt_from not in PROMPT_MODES:
            raise UserError(f"--prompt-from must be one of {', '.join(PROMPT_MODES)}, got {config.prompt_from!r}")
        if config.prompts is not None or config.reference is None:
            raise UserError(
                "--prompt-from derives the prompts from --reference; use it with --reference and no --prompts"
            )
    if config.experiment in NEEDS_REFERENCE and config.reference is None:
        raise UserError(f"--experiment {config.experiment} simulates clicks from reference masks: add --reference")
    if not (math.isfinite(config.box_noise) and config.box_noise >= 0):
        raise UserError(f"--box-noise must be a number >= 0 (a fraction of the box size), got {config.box_noise}")
    if config.box_noise > 0 and (config.prompts is not None or config.prompt_from == "center"):
        raise UserError("--box-noise jitters boxes derived from --reference (--prompt-from box or box+center)")
    if not 1 <= config.max_clicks <= 60:
        raise UserError(f"--max-clicks must be in 1..60, got {config.max_clicks}")
    if config.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {config.batch_size}")


def _plan(config: StudyConfig) -> _Plan:
    _check(config)
    images, errors = collect_images(config.images)
    if config.max_images is not None and len(images) > config.max_images:
        raise UserError(f"{len(images)} images is more than the limit of {config.max_images} for one study")
    refs = open_references(config.reference) if config.reference is not None else None
    prompt_from = config.prompt_from
    if refs is not None and config.prompts is None and prompt_from is None and config.experiment != "clicks":
        prompt_from = "box"
    prompts = None
    if config.prompts is not None:
        raw = load_prompt_file(config.prompts)
        by_name = {img.name: img.name for img in images}
        stems: dict[str, list[str]] = {}
        for img in images:
            stems.setdefault(Path(img.name).stem, []).append(img.name)
        prompts = {}
        for key in sorted(raw):
            target = by_name.get(key) or (stems[key][0] if len(stems.get(key, [])) == 1 else None)
            if target is None:
                reason = f"{config.prompts.name} has prompts for this image, not an input (ignored)"
                errors.append(InputError(key, "", reason))
            elif target in prompts:
                errors.append(InputError(key, "", f"{config.prompts.name} gives prompts for {target} twice"))
            else:
                prompts[target] = raw[key]
    i, n = config.shard
    mine = [img for img in images if img.index % n == i]
    return _Plan(images, mine, prompts, refs, prompt_from, errors)


def _machine() -> str:
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{platform.node() or 'unknown'} ({platform.machine()}, {os.cpu_count()} CPUs{gpu})"


def _clahe_key(clahe: Clahe | None) -> str | None:
    return None if clahe is None else clahe.key()


def _describe(config: StudyConfig, plan: _Plan, seg: Segmenter) -> dict[str, Any]:
    """The shard's ``run.json``: settings (equal for all shards of a study), images and meta."""
    settings = {
        "images": [img.name for img in plan.images],
        "prompts": None
        if config.prompts is None
        else {"file": config.prompts.name, "sha256": sha256_file(config.prompts)},
        "reference": None if plan.refs is None else {"kind": plan.refs.kind, "name": plan.refs.source.name},
        "prompt_from": plan.prompt_from,
        "box_noise": config.box_noise,
        "seed": config.seed,
        "experiment": config.experiment,
        "model_id": seg.model_id,
        "overlays": config.overlays,
        "max_clicks": config.max_clicks if config.experiment == "clicks" else None,
    }
    if config.clahe is not None:  # only when set: the fingerprints of plain studies stay as they were
        settings["clahe"] = _clahe_key(config.clahe)
    fingerprint = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    columns = columns_for(
        EXPERIMENT_COLUMNS[config.experiment],
        reference=plan.refs is not None,
        category=plan.refs is not None and plan.refs.kind == "coco",
        overlays=config.overlays,
    )
    primary = {"none": "base", "box-scale": "scale_1.0", "points": "box+3", "clicks": "last click"}[config.experiment]
    meta = {
        "experiment": config.experiment,
        "columns": columns,
        "reference": plan.refs is not None,
        "primary_variant": primary,
        "boundary_tolerance": BOUNDARY_TOLERANCE,
        "images": len(plan.images),
        "model": {**seg.info(), "model_id": seg.model_id},
        "test_model": seg.is_test_model,
        "torch": torch.__version__,
        "machines": [_machine()],
        "overlays": config.overlays,
        "clahe": _clahe_key(config.clahe),
        "inputs": {
            "images": list(config.images),
            "prompts": None if config.prompts is None else str(config.prompts),
            "reference": None if config.reference is None else str(config.reference),
            "prompt_from": plan.prompt_from,
            "box_noise": config.box_noise,
            "seed": config.seed,
            "clahe": _clahe_key(config.clahe),
        },
    }
    return {
        "fingerprint": fingerprint,
        "settings": settings,
        "shard": list(config.shard),
        "shard_images": [img.index for img in plan.mine],
        "global_errors": [[e.image, e.object, e.reason] for e in plan.errors],
        "meta": meta,
    }


# --------------------------------------------------------------------------- per image


@dataclass
class _Loaded:
    """One decoded image. ``key``: the content hash of the original pixels (results, run log);
    ``encoder_rgb`` / ``encoder_key``: what the encoder sees and its cache / store key (the
    original, or its CLAHE-enhanced copy under ``"<hash>-<clahe key>"``); ``stats``: of the original."""

    img: ImageInput
    image: LoadedImage | None = None
    key: str = ""
    stats: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    encoder_rgb: np.ndarray | None = None
    encoder_key: str = ""


def _load(img: ImageInput, max_pixels: int, clahe: Clahe | None = None) -> _Loaded:
    try:
        loaded = load_image(img.path, max_pixels=max_pixels)
    except ImageError as err:
        return _Loaded(img, error=f"unreadable image: {err}")
    key = image_hash(loaded.rgb)
    stats = image_stats(loaded.rgb)
    if clahe is None:
        return _Loaded(img, loaded, key, stats, encoder_rgb=loaded.rgb, encoder_key=key)
    enhanced = apply_clahe(loaded.rgb, clahe)
    return _Loaded(img, loaded, key, stats, encoder_rgb=enhanced, encoder_key=encoder_key(key, clahe))


def _prefetched(
    items: Sequence[ImageInput], max_pixels: int, ahead: int, clahe: Clahe | None = None
) -> Generator[_Loaded, None, None]:
    """Decode images (and enhance them with ``clahe``) in a helper thread, ``ahead`` images in
    advance of the model."""
    with ThreadPoolExecutor(1, thread_name_prefix="study-load") as pool:
        queue: deque[Future[_Loaded]] = deque()
        it = iter(items)
        for img in it:
            queue.append(pool.submit(_load, img, max_pixels, clahe))
            if len(queue) > ahead:
                yield queue.popleft().result()
        while queue:
            yield queue.popleft().result()


def _chunks(items: Iterator[_Loaded], size: int) -> Iterator[list[_Loaded]]:
    chunk: list[_Loaded] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _rng(seed: int, image: str, obj: str) -> np.random.Generator:
    """A generator per (seed, image, object): the same jitter whatever the shard or resume order."""
    digest = hashlib.sha256(f"{image}\0{obj}".encode()).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])


@dataclass(frozen=True)
class _Object:
    id: str
    prompts: Prompts | None
    ref: RefObject | None


def _objects(plan: _Plan, config: StudyConfig, name: str, size: ImageSize) -> tuple[list[_Object], list[list[str]]]:
    """The objects of one image and the errors.csv rows (object, reason) of those that cannot run."""
    errors: list[list[str]] = []
    refs: dict[str, RefObject] = {}
    if plan.refs is not None:
        try:
            refs = {r.id: r for r in plan.refs.objects(name, size)}
        except ReferenceMissing as err:
            return [], [["", str(err)]]
    objects: list[_Object] = []
    if plan.prompts is not None:
        specs = plan.prompts.get(name)
        if not specs:
            return [], [["", f"no prompt for this image in {config.prompts.name if config.prompts else 'the prompts'}"]]
        for spec in sorted(specs, key=lambda s: natural_key(s.id)):
            if spec.error or spec.prompts is None:
                errors.append([spec.id, spec.error or "no prompt"])
                continue
            try:
                spec.prompts.validate(*size)
            except PromptError as err:
                errors.append([spec.id, f"bad prompt: {err}"])
                continue
            ref = None
            if plan.refs is not None:
                ref = refs.get(spec.id)
                if ref is None:
                    have = ", ".join(sorted(refs, key=natural_key))
                    errors.append(
                        [spec.id, f"missing reference: no reference object {spec.id!r} (the reference has {have})"]
                    )
                    continue
                if not ref.mask.any():
                    errors.append([spec.id, "empty reference: the reference mask of this object is empty"])
                    continue
            objects.append(_Object(spec.id, spec.prompts, ref))
        return objects, errors
    for ref in refs.values():
        if not ref.mask.any():
            errors.append([ref.id, "empty reference: the reference mask of this object is empty"])
            continue
        prompts = None
        if plan.prompt_from is not None:
            rng = _rng(config.seed, name, ref.id) if config.box_noise > 0 else None
            prompts = prompts_from_reference(ref.mask, plan.prompt_from, box_noise=config.box_noise, rng=rng)
        objects.append(_Object(ref.id, prompts, ref))
    return objects, errors


def _overlay(rgb: np.ndarray, outcome: Outcome, ref: RefObject | None) -> bytes:
    """The chosen mask tinted on a preview of the image, with its prompts and the reference outline."""
    small, scale = preview(rgb, _OVERLAY_SIDE)
    size = ImageSize.of(small)

    def fit(mask: np.ndarray) -> np.ndarray:
        if scale == 1.0:
            return mask
        return cv2.resize(mask.view(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)

    out = overlay_mask(small, fit(outcome.mask))
    if ref is not None:
        contours, _ = cv2.findContours(fit(ref.mask).view(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, _REF_COLOR, 2, cv2.LINE_AA)
    out = draw_prompts(out, outcome.prompts.points, outcome.prompts.box, scale=scale)
    return encode_png(out)


class _Run:
    """One run of one shard (the state of :func:`run_study`, local to the call)."""

    def __init__(self, config: StudyConfig, plan: _Plan, seg: Segmenter, runlog: RunLog | None, session: str):
        self.config = config
        self.plan = plan
        self.seg = seg
        self.runlog = runlog
        self.session = session
        self.columns = columns_for(
            EXPERIMENT_COLUMNS[config.experiment],
            reference=plan.refs is not None,
            category=plan.refs is not None and plan.refs.kind == "coco",
            overlays=config.overlays,
        )

    def embed(self, chunk: list[_Loaded]) -> list[tuple[Embedding, bool]]:
        """The embeddings of the readable images of ``chunk``, of the pixels the encoder sees."""
        ok = [c for c in chunk if c.image is not None and c.encoder_rgb is not None]
        if not ok:
            return []
        images = [c.encoder_rgb for c in ok if c.encoder_rgb is not None]
        keys = [c.encoder_key for c in ok]
        for c in ok:
            c.encoder_rgb = None  # an enhanced copy is not needed after the encoder
        if len(ok) > 1:
            return self.seg.embed_many(images, image_keys=keys)
        return [self.seg.embed(images[0], image_key=keys[0])]

    def image_part(self, item: _Loaded, emb: Embedding | None, hit: bool) -> dict[str, Any]:
        img = item.img
        part: dict[str, Any] = {"index": img.index, "image": img.name, "rows": [], "errors": [], "curves": []}
        if item.image is None or emb is None:
            part["errors"].append(["", item.error or "unreadable image"])
            return part
        rgb = item.image.rgb
        size = item.image.size
        part["encode_ms"] = round(float(emb.encode_ms), 3)
        part["cache_hit"] = bool(hit)
        objects, part["errors"] = self.plan_objects(img.name, size)

        def decode(prompts: Prompts, *, multimask: bool = True, mask_input: np.ndarray | None = None) -> Any:
            return self.seg.decode(
                emb, prompts, multimask=multimask, mask_input=mask_input, encode_ms=emb.encode_ms, cache_hit=hit
            )

        for obj in objects:
            ref = obj.ref.mask if obj.ref is not None else None
            try:
                outcomes, curve = run_experiment(
                    self.config.experiment, decode, obj.prompts, size=size, ref=ref, max_clicks=self.config.max_clicks
                )
            except (ExperimentSkip, PromptError) as err:
                part["errors"].append([obj.id, str(err)])
                continue
            if not outcomes:
                continue
            primary = primary_variant(self.config.experiment, outcomes)
            overlay = None
            if self.config.overlays:
                stem = f"{img.index:05d}_{safe_stem(img.name.replace('.', '_'))}__{safe_stem(obj.id, 'object')}"
                rel = Path("overlays") / f"{stem}.png"
                write_atomic(self.config.out / rel, _overlay(rgb, primary, obj.ref))
                overlay = rel.as_posix()
            for o in outcomes:
                part["rows"].append(self.row(img, item, size, obj, o, o is primary, overlay))
            if curve is not None:
                part["curves"].append(
                    {
                        "image": img.name,
                        "object": obj.id,
                        "noc85": curve.noc85,
                        "noc90": curve.noc90,
                        "ious": [float(v) for v in curve.ious],
                    }
                )
        return part

    def plan_objects(self, name: str, size: ImageSize) -> tuple[list[_Object], list[list[str]]]:
        try:
            return _objects(self.plan, self.config, name, size)
        except PromptError as err:  # e.g. a reference that yields no prompt
            return [], [["", str(err)]]

    def row(
        self,
        img: ImageInput,
        item: _Loaded,
        size: ImageSize,
        obj: _Object,
        o: Outcome,
        primary: bool,
        overlay: str | None,
    ) -> dict[str, Any]:
        m = mask_metrics(o.mask)
        bbox = m["bbox"] or [None] * 4
        row: dict[str, Any] = {
            "image": img.name,
            "object": obj.id,
            "variant": o.variant,
            "width": size.width,
            "height": size.height,
            "prompt": json.dumps(o.prompts.to_dict(), separators=(",", ":")),
            "chosen_index": o.chosen,
            "score": float(o.result.scores[o.chosen]),
            "area": int(m["area"]),
            "area_fraction": float(m["area_fraction"]),
            "perimeter": float(m["perimeter"]),
            "bbox_x1": bbox[0],
            "bbox_y1": bbox[1],
            "bbox_x2": bbox[2],
            "bbox_y2": bbox[3],
            "encode_ms": float(o.result.timings["encode_ms"]),
            "decode_ms": float(o.result.timings["decode_ms"]),
        }
        if obj.ref is not None:
            row["iou"] = float(iou(o.mask, obj.ref.mask))
            row["dice"] = float(dice(o.mask, obj.ref.mask))
            row["boundary_f"] = float(boundary_f(o.mask, obj.ref.mask))
            if obj.ref.category is not None:
                row["category"] = obj.ref.category
        row.update({k: (float(v) if isinstance(v, float | np.floating) else v) for k, v in o.extra.items()})
        if overlay is not None and primary:
            row["overlay"] = overlay
        row["_primary"] = primary
        if self.runlog is not None:
            assert item.image is not None
            self.runlog.append(
                make_result_record(
                    o.result,
                    o.chosen,
                    self.seg,
                    "batch",
                    m,
                    prompts=o.prompts,
                    multimask=o.multimask,
                    image_hash=item.key,
                    image_name=img.name,
                    size=size,
                    stats=item.stats,
                    session=self.session,
                    object_id=obj.id,
                    iou=row.get("iou"),
                    extra={
                        "study": self.config.out.name,
                        "experiment": self.config.experiment,
                        "variant": o.variant,
                        "refined": o.refined,
                        **(preprocess_extra(self.config.clahe) or {}),
                        **{k: row[k] for k in ("dice", "boundary_f") if k in row},
                    },
                )
            )
        return row


def run_study(
    config: StudyConfig,
    *,
    segmenter: Segmenter,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> StudyResult:
    """Run (or resume) the study ``config`` with ``segmenter`` and write its outputs.

    ``progress(fraction, message)`` is called after each image; setting ``cancel`` stops after
    the current image (the outputs then cover the images done, ``complete`` is False, and
    ``resume=True`` continues later). For a shard (``config.shard`` with N > 1) the outputs go to
    ``out/shards/I-of-N/``; ``merge_study(out)`` joins the shards. Raises :class:`UserError` for
    bad settings or inputs as a whole; single bad images and objects become ``errors.csv`` rows.
    """
    plan = _plan(config)
    index, count = config.shard
    layout = ShardLayout(config.out, index, count)
    run = _describe(config, plan, segmenter)
    done = layout.prepare(run, resume=config.resume, overwrite=config.overwrite)
    todo = [img for img in plan.mine if img.index not in done]
    log_dir = config.log_dir or (config.out / "logs" if count == 1 else layout.dir / "logs")
    runlog = RunLog(log_dir) if config.run_log else None
    session = f"batch-{run['fingerprint'][:12]}"
    state = _Run(config, plan, segmenter, runlog, session)
    total = len(plan.mine)
    finished = total - len(todo)
    t0 = time.perf_counter()
    cancelled = False
    if progress:
        progress(finished / max(total, 1), f"{finished}/{total} images done" + (" (resumed)" if finished else ""))
    try:
        with (
            tqdm(
                total=total,
                initial=finished,
                unit="img",
                desc=f"study {layout.name}",
                dynamic_ncols=True,
                disable=not config.progress_bar,
                smoothing=0.1,
            ) as bar,
            contextlib.closing(_prefetched(todo, config.max_pixels, 2 + 2 * config.batch_size, config.clahe)) as loads,
        ):
            for chunk in _chunks(loads, config.batch_size):
                embs = iter(state.embed(chunk))
                for item in chunk:
                    emb, hit = next(embs) if item.image is not None else (None, False)
                    layout.write_part(state.image_part(item, emb, hit))
                    finished += 1
                    bar.update(1)
                    if progress:
                        rate = (finished - (total - len(todo))) / max(time.perf_counter() - t0, 1e-9)
                        progress(finished / max(total, 1), f"{finished}/{total} images, {rate:.2f} images/s")
                if cancel is not None and cancel.is_set():
                    cancelled = True
                    break
    finally:
        if runlog is not None:
            runlog.close()
    complete = not cancelled
    if complete:
        layout.mark_done(total)
    dest = config.out if count == 1 else layout.dir
    outputs = assemble(config.out, [layout], [layout.read_run() or run], complete=complete, dest=dest)
    return StudyResult(
        out=dest,
        paths=outputs["paths"],
        rows=[{k: v for k, v in r.items() if not k.startswith("_")} for r in outputs["rows"]],
        errors=outputs["errors"],
        summary=outputs["summary"],
        complete=complete,
        shard=config.shard,
        log_dir=log_dir if runlog is not None else None,
    )
