"""Several objects per image: dataset exports, bundles that replay exactly, and ``/annotate``.

Objects are committed by :meth:`Studio.handle` (``NewObject``) with their exact
full-resolution mask (the torch decoder, as ``SamPredictor``), so every export here is exact
whoever decoded the clicks. The exclusion rule (*Exclude committed objects*) is applied in id
order: an object loses exactly the pixels of every object with a smaller id.

Bundles (``<image>_bundle.zip``, see :mod:`sam_core.core.bundle_io`) hold the image's hash and
name, the model and its weights id, the settings, and per object its label, prompts, decoder
settings, refinement input, chosen candidate, edits and the resulting mask as RLE. Opening one
on the same image with the same weights decodes every object again and compares the masks with
the saved ones, bit for bit.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from sam_core.app.session import MAX_OBJECTS, AnnotObject, SessionState, Step, clean_label
from sam_core.app.studio import Studio, derive_candidates
from sam_core.core.bundle_io import BUNDLE_FORMAT, BUNDLE_VERSION, MASK_INPUT_SHAPE, read_bundle, write_bundle
from sam_core.core.dataset_export import (
    ObjectMask,
    categories_of,
    coco_instances,
    cutouts,
    encode_label_map_png,
    label_map,
    trace_outlines,
    yolo_classes_txt,
    yolo_lines,
)
from sam_core.core.errors import ImageError, PromptError, UserError
from sam_core.core.files import prune_dir, safe_stem, write_atomic
from sam_core.core.geometry import exclusive_in_order, rle_decode
from sam_core.core.mask_edits import edit_from_json, edit_to_json
from sam_core.core.prompts import Prompts
from sam_core.core.render import encode_png

MAX_ANNOTATE_JSON = 1 << 20  # bytes of the /annotate objects list


# --------------------------------------------------------------------------- exports


def export_objects(studio: Studio, state: SessionState) -> list[Path]:
    """Every object of the session's image (committed ones and the one being edited), at full
    resolution: a uint16 label-map PNG (pixel = object id; where objects overlap without the
    exclusion rule, the larger id wins), COCO instances JSON with RLE and with polygons (holes
    kept), a YOLO segmentation txt with its ``classes.txt``, and one RGBA cut-out per object.

    Category ids follow the session's label list, which is kept across images, so files of
    several images agree on them.
    """
    entry = studio.entry(state)
    pairs = studio.object_masks(state)
    if not pairs:
        raise UserError("No objects yet: click on an object, then press New object (n) to add the next one.")
    objs = [ObjectMask(o.object_id, o.label, m, o.score) for o, m in pairs]
    categories = categories_of([o.label for o in objs], known=state.categories)
    size = entry.image.size
    name = entry.image.name
    stem = safe_stem(name)
    folder = studio.render_dir / state.session_id / f"objects-{uuid.uuid4().hex[:6]}"
    outlines = trace_outlines(objs, size)  # once for the COCO polygons and the YOLO lines
    yolo = "\n".join(yolo_lines(objs, categories, size, outlines=outlines)) + "\n"
    rle = coco_instances(name, size, objs, categories, segmentation="rle")
    polygons = coco_instances(name, size, objs, categories, segmentation="polygons", outlines=outlines)
    paths = [
        write_atomic(folder / f"{stem}_labels.png", encode_label_map_png(label_map(objs, size))),
        write_atomic(folder / f"{stem}_coco.json", json.dumps(rle).encode()),
        write_atomic(folder / f"{stem}_coco_polygons.json", json.dumps(polygons).encode()),
        write_atomic(folder / f"{stem}.txt", yolo.encode()),
        write_atomic(folder / "classes.txt", yolo_classes_txt(categories).encode()),
    ]
    labels = {o.object_id: o.label for o in objs}
    for object_id, rgba in cutouts(entry.image.rgb, objs):
        label = safe_stem(labels[object_id], "object")
        paths.append(write_atomic(folder / f"{stem}_object{object_id}_{label}.png", encode_png(rgba)))
    return paths


# --------------------------------------------------------------------------- bundles


def bundle_bytes(studio: Studio, state: SessionState) -> bytes:
    """The session's annotation of its image as a bundle (zip bytes)."""
    entry = studio.entry(state)
    seg = studio.segmenter(state.model_type)
    objects = studio.all_objects(state)
    if not objects:
        raise UserError("Nothing to save yet: click on an object first.")
    tensors: dict[str, np.ndarray] = {}
    items = []
    for o in objects:
        mask_input = o.candidates.mask_input
        name = None
        if mask_input is not None:
            name = f"mask_input_{o.object_id}"
            tensors[name] = np.ascontiguousarray(mask_input, dtype=np.float32).reshape(MASK_INPUT_SHAPE)
        items.append(
            {
                "id": o.object_id,
                "label": o.label,
                "prompts": o.prompts.to_dict(),
                "multimask": o.settings.multimask,
                "chosen": o.chosen,
                "scores": list(o.scores),
                "threshold": float(o.settings.threshold),
                "min_island": int(o.settings.min_island),
                "min_hole": int(o.settings.min_hole),
                "mask_input": name,
                "edits": [edit_to_json(e) for e in o.edits],
                "rle": o.rle,
            }
        )
    manifest = {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "app": "sam-studio",
        "image": {
            "name": entry.image.name,
            "key": entry.key,
            "width": entry.image.size.width,
            "height": entry.image.size.height,
        },
        "model": {
            "type": seg.model_type,
            "weights_id": seg.weights_id,
            "weights_sha256": seg.weights_id if seg.checkpoint else None,
        },
        "settings": {
            "exclude": state.settings.exclude,
            "multimask": state.settings.multimask,
            "clahe": state.settings.clahe,
        },
        "categories": list(state.categories),
        "objects": items,
    }
    return write_bundle(manifest, tensors)


def save_bundle(studio: Studio, state: SessionState) -> Path:
    """Write :func:`bundle_bytes` to ``<image stem>_bundle.zip`` in the session's scratch folder."""
    data = bundle_bytes(studio, state)
    name = safe_stem(studio.entry(state).image.name)
    folder = studio.render_dir / state.session_id / f"bundle-{uuid.uuid4().hex[:6]}"
    return write_atomic(folder / f"{name}_bundle.zip", data)


def open_bundle(studio: Studio, state: SessionState, source: str | Path | bytes) -> tuple[SessionState, str]:
    """Replay a bundle on the session's image: (new state, a report for the status line).

    The image must be the one the bundle was saved for (same pixels) and the session's model
    the same weights; otherwise a :class:`UserError` says which differs. Each object is decoded
    again with the torch decoder from its saved prompts and refinement input, its candidate
    chosen and its edits applied; the report says whether every mask equals the saved one bit
    for bit. The replayed objects replace the image's objects (the object being edited is
    dropped: undo cannot bring it back, so save it first).
    """
    bundle = read_bundle(source)
    m = bundle.manifest
    img = m["image"]
    saved = f"'{img['name']}' ({img['width']}×{img['height']}, pixels {img['key'][:10]})"
    if not state.has_image:
        raise UserError(f"Open the image this bundle was saved for first: {saved}; then open the bundle.")
    entry = studio.entry(state)
    if img["key"] != entry.key:
        size = entry.image.size
        raise UserError(
            f"This bundle was saved for image {saved}, but the open image is '{entry.image.name}' "
            f"({size.width}×{size.height}, pixels {entry.key[:10]}): open the same image first."
        )
    seg = studio.segmenter(state.model_type)
    model = m["model"]
    if model["type"] != seg.model_type or model["weights_id"] != seg.weights_id:
        raise UserError(
            f"This bundle was made with {model['type']} (weights {model['weights_id'][:16]}), but this session "
            f"uses {seg.model_type} (weights {seg.weights_id[:16]}): choose {model['type']} in Settings → Model "
            "(other weights cannot replay the same masks)."
        )
    clahe = m["settings"].get("clahe") or 0.0
    if not isinstance(clahe, (int, float)) or isinstance(clahe, bool) or not 0 <= clahe <= 40:
        raise UserError(f"This bundle's settings.clahe must be a clip limit from 0 to 40, not {clahe!r}.")
    settings = dataclasses.replace(
        state.settings, exclude=bool(m["settings"].get("exclude", False)), clahe=float(clahe)
    )
    emb, hit = studio.embed(dataclasses.replace(state, settings=settings), entry, seg)  # with its pre-processing
    objects: list[AnnotObject] = []
    differ: list[str] = []
    for item in m["objects"]:
        prompts = Prompts.parse(item["prompts"]["points"], item["prompts"]["box"])
        try:
            prompts.validate(*entry.image.size)
        except PromptError as err:
            raise UserError(f"Bundle object {item['id']}: {err}") from None
        osettings = dataclasses.replace(
            settings,
            multimask=item["multimask"],
            threshold=item["threshold"],
            min_island=item["min_island"],
            min_hole=item["min_hole"],
        )
        mask_input = bundle.tensors[item["mask_input"]] if item["mask_input"] else None
        result = seg.decode(
            emb, prompts, multimask=osettings.multimask, mask_input=mask_input, cache_hit=hit, backend="torch"
        )
        if not 0 <= item["chosen"] < len(result.scores):
            raise UserError(f"Bundle object {item['id']}: candidate {item['chosen'] + 1} does not exist.")
        edits = tuple(edit_from_json(e) for e in item["edits"])
        one = dataclasses.replace(
            state,
            prompts=prompts,
            history=(Step(Prompts()),),
            edits=edits,
            settings=osettings,
            objects=(),
            current_id=item["id"],
            label=clean_label(item["label"]),
            candidates=derive_candidates(result, entry, osettings, item["chosen"], mask_input, edits=edits),
        )
        obj = studio.make_object(one)
        if obj.rle != item["rle"]:
            n = int(np.count_nonzero(rle_decode(obj.rle) != rle_decode(item["rle"])))
            differ.append(f"object {item['id']}: {n} px")
        objects.append(obj)
    categories = tuple(dict.fromkeys([*state.categories, *(clean_label(c) for c in m["categories"])]))
    new = dataclasses.replace(state, objects=tuple(objects), settings=settings, categories=categories)
    new = new.blank(max([0, *(o.object_id for o in objects)]) + 1)
    n = len(objects)
    if differ:
        report = (
            f"Opened the bundle: {n} objects replayed, but the masks differ from the saved ones "
            f"({', '.join(differ)}): was it saved with another torch build or device?"
        )
    else:
        report = (
            f"Opened the bundle: {n} object{'s' if n != 1 else ''} replayed, every mask identical to the saved one."
        )
    return new, report


# --------------------------------------------------------------------------- /annotate


def parse_objects_json(text: str | bytes | None) -> list[tuple[str, Prompts]]:
    """``[{"label": str, "points": [[x, y, l], ...], "box": [x1, y1, x2, y2] | null}, ...]``."""
    if text is None or not str(text if isinstance(text, str) else text.decode("utf-8", "replace")).strip():
        raise PromptError('objects is empty: send a JSON list like [{"label": "cat", "points": [[x, y, 1]]}].')
    if len(text) > MAX_ANNOTATE_JSON:
        raise PromptError(f"objects is too large ({len(text):,} bytes; at most {MAX_ANNOTATE_JSON:,}).")
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise PromptError(f"objects is not valid JSON ({err}).") from None
    if not isinstance(data, list) or not data:
        raise PromptError("objects must be a non-empty JSON list of objects.")
    if len(data) > MAX_OBJECTS:
        raise PromptError(f"Too many objects: at most {MAX_OBJECTS}.")
    out = []
    for i, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            raise PromptError(f"object {i} must be a JSON object with label, points and box.")
        label = item.get("label", "object")
        if not isinstance(label, str):
            raise PromptError(f"object {i}: label must be a string.")
        try:
            prompts = Prompts.parse(item.get("points") or [], item.get("box"))
        except PromptError as err:
            raise PromptError(f"object {i}: {err}") from None
        out.append((clean_label(label), prompts))
    return out


def annotate_file(
    studio: Studio,
    path: str,
    objects_json: str | None,
    *,
    exclude_committed: bool = False,
    multimask: bool = True,
    name: str | None = None,
) -> tuple[dict[str, Any], Path]:
    """The ``/annotate`` endpoint: (COCO instances dict with RLE, path of the uint16 label-map PNG).

    Object ``i`` (1-based, the list's order) gets id ``i``: its mask is ``SamPredictor``'s best
    mask for its prompts (the highest predicted IoU among the candidates; the torch decoder on
    the same weights), minus, with ``exclude_committed``, the pixels of objects before it.
    """
    if not path:
        raise ImageError("No image file was sent.")
    items = parse_objects_json(objects_json)
    entry = studio.load_entry(path, name)
    size = entry.image.size
    for i, (_, prompts) in enumerate(items, start=1):
        try:
            prompts.validate(*size)
        except PromptError as err:
            raise PromptError(f"object {i}: {err}") from None
    seg = studio.segmenter()
    emb, hit = seg.embed(entry.image.rgb, image_key=entry.key)
    results = [seg.decode(emb, prompts, multimask=multimask, cache_hit=hit, backend="torch") for _, prompts in items]
    masks = [res.full_mask(res.best_index, threshold=0.0) for res in results]
    if exclude_committed:
        masks = list(exclusive_in_order(masks))
    objs = [
        ObjectMask(i, label, mask, float(res.scores[res.best_index]))
        for i, ((label, _), res, mask) in enumerate(zip(items, results, masks, strict=True), start=1)
    ]
    categories = categories_of([o.label for o in objs])
    coco = coco_instances(entry.image.name, size, objs, categories, segmentation="rle")
    prune_dir(studio.render_dir / "api", 600)
    folder = studio.render_dir / "api" / uuid.uuid4().hex[:12]
    out = write_atomic(
        folder / f"{safe_stem(entry.image.name)}_labels.png", encode_label_map_png(label_map(objs, size))
    )
    return coco, out
