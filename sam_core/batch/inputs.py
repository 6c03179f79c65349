"""What a study reads: the image list, the prompt file and the reference masks.

Everything a user can get wrong about ONE image or object becomes an :class:`InputError`
(a row of ``errors.csv``) and the study goes on; only a problem with a whole input (an
unreadable prompt file, no image at all) raises a :class:`~sam_core.core.errors.UserError`.

Conventions:

* An image is known by its **file name** (``coffee.png``): prompt files and ``results.csv``
  use it. Two files with the same name in different folders: the first (sorted by path) is
  kept, the others are error rows.
* Object ids are strings: the position of the object in the prompt file for its image
  (``"1"``, ``"2"``, ...) unless the file gives an ``id``; for references, the label value of a
  label-map PNG (``"1"`` for a binary mask) or the COCO annotation id. Prompts and references
  are paired by object id. They sort naturally (``"2"`` before ``"10"``).
* Coordinates are full-image pixels (x right, y down); boxes ``(x1, y1, x2, y2)``; points
  ``(x, y, label)`` with label 1 = foreground, 0 = background.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image, UnidentifiedImageError

from sam_core.core.errors import PromptError, UserError
from sam_core.core.prompts import Prompts
from sam_core.core.sizes import ImageSize

__all__ = [
    "IMAGE_SUFFIXES",
    "LIST_SUFFIXES",
    "CocoReferences",
    "ImageInput",
    "InputError",
    "ObjectSpec",
    "PngReferences",
    "RefObject",
    "ReferenceMissing",
    "References",
    "collect_images",
    "load_prompt_file",
    "natural_key",
    "open_references",
]

#: File suffixes taken from folders and globs (the formats ``load_image`` opens).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".dib", ".gif")
#: Suffixes of list files: one image path per line (relative to the list file), ``#`` comments.
LIST_SUFFIXES = (".txt", ".lst", ".list")
#: Keys of a prompt object besides ``box`` and ``points`` (``id`` names the object; the rest is ignored).
_META_KEYS = ("id", "object", "title", "category", "note", "file", "image")


@dataclass(frozen=True, order=True)
class InputError:
    """One row of ``errors.csv``: ``object`` is "" when the whole image failed."""

    image: str
    object: str
    reason: str

    def sort_key(self) -> tuple[Any, ...]:
        return (self.image, natural_key(self.object), self.reason)


def natural_key(text: str) -> tuple[int, int, str]:
    """Sort key that puts ``"2"`` before ``"10"`` and numbers before names."""
    return (0, int(text), "") if text.isdigit() else (1, 0, text)


# --------------------------------------------------------------------------- images


@dataclass(frozen=True)
class ImageInput:
    """One image of the study: ``index`` in the sorted list of all images (shards split on it)."""

    index: int
    name: str  # the file name: the key of prompts, references and results
    path: Path


def _is_glob(spec: str) -> bool:
    return any(ch in spec for ch in "*?[")


def _image_files(paths: Iterable[Path]) -> list[Path]:
    return [p for p in paths if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]


def _read_list(path: Path) -> list[Path]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read the image list {path}: {getattr(err, 'strerror', None) or err}") from None
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            p = Path(line).expanduser()
            out.append(p if p.is_absolute() else path.parent / p)
    return out


def collect_images(specs: Sequence[str | os.PathLike[str]]) -> tuple[list[ImageInput], list[InputError]]:
    """The study's images from folders, globs, list files and image files, in a stable order.

    * a folder: its image files (by suffix, not recursive);
    * a glob (``data/**/*.jpg``, recursive ``**`` allowed): the image files it matches;
    * a list file (``.txt``, ``.lst``, ``.list``): one path per line, relative to the list file;
    * anything else: one image file (an unreadable one becomes an error row later).

    The same file reached twice is kept once; images are sorted by file name (then path) and
    numbered in that order. Returns ``(images, errors)``; raises :class:`UserError` when no image
    is left.
    """
    found: list[Path] = []
    errors: list[InputError] = []
    for raw in specs:
        spec = os.fspath(raw)
        path = Path(spec).expanduser()
        if _is_glob(spec) and not path.exists():
            matches = _image_files(Path(p) for p in sorted(glob.glob(os.path.expanduser(spec), recursive=True)))
            if not matches:
                errors.append(InputError(spec, "", "no image file matches this pattern"))
            found += matches
        elif path.is_dir():
            matches = _image_files(sorted(path.iterdir()))
            if not matches:
                errors.append(InputError(spec, "", f"the folder holds no image file ({', '.join(IMAGE_SUFFIXES)})"))
            found += matches
        elif path.suffix.lower() in LIST_SUFFIXES and path.is_file():
            found += _read_list(path)
        else:
            found.append(path)
    unique: dict[str, Path] = {}
    for p in found:
        key = os.path.normcase(os.path.realpath(p))
        unique.setdefault(key, p)
    images: list[ImageInput] = []
    seen: dict[str, Path] = {}
    for p in sorted(unique.values(), key=lambda q: (q.name, str(q))):
        if p.name in seen:
            errors.append(InputError(p.name, "", f"another image has the same file name ({seen[p.name]}); {p} skipped"))
            continue
        seen[p.name] = p
        images.append(ImageInput(len(images), p.name, p))
    if not images:
        given = ", ".join(str(os.fspath(s)) for s in specs) or "nothing"
        raise UserError(f"no images found in {given}: give folders, globs, list files or image files")
    return images, errors


# --------------------------------------------------------------------------- prompts


@dataclass(frozen=True)
class ObjectSpec:
    """The prompts of one object of one image, or why they could not be read (``error``)."""

    image: str
    id: str
    prompts: Prompts | None
    error: str | None = None


def _object_from_mapping(image: str, position: int, data: Any, where: str) -> ObjectSpec:
    if not isinstance(data, dict):
        return ObjectSpec(image, str(position), None, f"{where}: an object must be a JSON object with box/points")
    oid = data.get("id", data.get("object", position))
    oid = str(oid).strip() if oid is not None else str(position)
    try:
        prompts = Prompts.from_dict({k: v for k, v in data.items() if k not in _META_KEYS})
        if prompts.empty:
            raise PromptError("no box and no points")
    except PromptError as err:
        return ObjectSpec(image, oid, None, f"bad prompt ({where}): {err}")
    return ObjectSpec(image, oid, prompts)


def _json_prompts(data: Any, source: str) -> list[ObjectSpec]:
    specs: list[ObjectSpec] = []
    if isinstance(data, dict):
        for image, value in data.items():
            entries = value if isinstance(value, list) else [value]
            for k, item in enumerate(entries, 1):
                specs.append(_object_from_mapping(str(image), k, item, f"{source}, {image!r} object {k}"))
    elif isinstance(data, list):  # [{"file"|"image": name, "box": ..., "points": ...}, ...] (examples/presets.json)
        counts: dict[str, int] = {}
        for n, item in enumerate(data, 1):
            image = item.get("image", item.get("file")) if isinstance(item, dict) else None
            if not isinstance(image, str) or not image:
                raise UserError(f"{source}: entry {n} has no 'image' (or 'file') name")
            counts[image] = counts.get(image, 0) + 1
            specs.append(_object_from_mapping(image, counts[image], item, f"{source}, entry {n}"))
    else:
        raise UserError(
            f'{source} must be a JSON object {{"<image file name>": {{"box": [...], "points": [...]}}}} '
            "or a list of such objects with an 'image' key"
        )
    return specs


def _csv_prompts(text: str, source: str) -> list[ObjectSpec]:
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    if "image" not in header:
        raise UserError(f"{source} needs a header line with the columns image,x1,y1,x2,y2[,points][,object]")
    has_box = all(c in header for c in ("x1", "y1", "x2", "y2"))
    if not has_box and "points" not in header:
        raise UserError(f"{source} needs box columns x1,y1,x2,y2 and/or a points column")
    specs: list[ObjectSpec] = []
    counts: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        image = (row.get("image") or "").strip()
        if not image:
            continue  # blank line
        counts[image] = counts.get(image, 0) + 1
        oid = (row.get("object") or "").strip() or str(counts[image])
        where = f"{source} line {line}"
        try:
            box = None
            if has_box:
                values = [(row.get(c) or "").strip() for c in ("x1", "y1", "x2", "y2")]
                if any(values):
                    box = values
            points = None
            text_points = (row.get("points") or "").strip()
            if text_points:
                try:
                    points = json.loads(text_points)
                except json.JSONDecodeError as err:
                    raise PromptError(f"the points column is not JSON ({err.msg})") from None
            prompts = Prompts.parse(points, box)
            if prompts.empty:
                raise PromptError("no box and no points")
        except PromptError as err:
            specs.append(ObjectSpec(image, oid, None, f"bad prompt ({where}): {err}"))
            continue
        specs.append(ObjectSpec(image, oid, prompts))
    return specs


def load_prompt_file(path: str | os.PathLike[str]) -> dict[str, list[ObjectSpec]]:
    """Prompts per image name from a JSON or CSV file (see the README's *Studies* section).

    JSON: ``{"<image file name>": {"box": [x1, y1, x2, y2], "points": [[x, y, label], ...]}}``,
    the value may be a list of such objects (several objects per image; an optional ``"id"``
    names each one), or a list of objects with an ``"image"`` (or ``"file"``) key. CSV: a header
    ``image,x1,y1,x2,y2`` plus optional ``points`` (JSON) and ``object`` columns; several rows for
    one image are several objects. A bad object is kept with its ``error`` (an ``errors.csv`` row).
    Raises :class:`UserError` when the file itself cannot be read.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UserError(f"prompt file {p} not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read the prompt file {p}: {getattr(err, 'strerror', None) or err}") from None
    if p.suffix.lower() == ".csv":
        specs = _csv_prompts(text, p.name)
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise UserError(f"{p.name} is not valid JSON ({err.msg}, line {err.lineno}); use .csv for CSV") from None
        specs = _json_prompts(data, p.name)
    out: dict[str, list[ObjectSpec]] = {}
    for spec in specs:
        objs = out.setdefault(spec.image, [])
        if any(o.id == spec.id for o in objs):
            spec = ObjectSpec(spec.image, spec.id, None, f"object id {spec.id!r} appears twice for this image")
            objs[:] = [o for o in objs if o.id != spec.id]
        objs.append(spec)
    return out


# --------------------------------------------------------------------------- references


@dataclass(frozen=True)
class RefObject:
    """One reference object: ``mask`` (H, W) bool at full image resolution."""

    id: str
    mask: np.ndarray = field(repr=False)
    category: str | None = None


class ReferenceMissing(UserError):
    """The image (or object) has no usable reference; the message is the ``errors.csv`` reason."""


class References(Protocol):
    """Reference masks per image name."""

    kind: str  # "png" or "coco"
    source: Path

    def objects(self, name: str, size: ImageSize) -> list[RefObject]:
        """The reference objects of image ``name`` of ``size``, sorted by id; raises ReferenceMissing."""
        ...


class PngReferences:
    """A folder of PNGs matched by file stem: ``refs/coffee.png`` is the reference of ``coffee.jpg``.

    A PNG with ONE distinct non-zero value is a binary mask: one object, id ``"1"``. A PNG with
    several non-zero values is a label map: one object per value, id = the value (save masks
    with hard edges: a soft-edged grey mask would read as many objects). RGB(A) PNGs are binary
    (any non-zero channel is the object).
    """

    kind = "png"

    def __init__(self, folder: Path) -> None:
        self.source = folder

    def objects(self, name: str, size: ImageSize) -> list[RefObject]:
        stem = Path(name).stem
        path = self.source / f"{stem}.png"
        if not path.is_file():
            raise ReferenceMissing(f"missing reference: no {stem}.png in {self.source}")
        try:
            with Image.open(path) as img:
                binary = img.mode in ("RGB", "RGBA", "LA")  # any non-zero channel is the object
                arr = np.asarray(np.asarray(img).any(axis=2) if binary else img)
        except (OSError, UnidentifiedImageError, ValueError) as err:
            raise ReferenceMissing(f"unreadable reference {stem}.png: {err}") from None
        if arr.ndim != 2:
            raise ReferenceMissing(f"reference {stem}.png is not a single-channel or RGB image")
        ref_size = ImageSize.of(arr)
        if ref_size != size:
            raise ReferenceMissing(f"reference {stem}.png is {ref_size} but the image is {size}")
        values = np.unique(arr[arr != 0])
        if values.size == 0:
            raise ReferenceMissing(f"empty reference: {stem}.png has no non-zero pixel")
        if values.size == 1:
            return [RefObject("1", arr != 0)]
        return [RefObject(str(int(v)), arr == v) for v in values]


class CocoReferences:
    """COCO instances JSON: each non-crowd annotation is one object (id = annotation id).

    Images are matched by the base name of ``file_name``; polygons and RLE are decoded with
    pycocotools at the size the JSON states (which must be the image's). Category names are kept.
    """

    kind = "coco"

    def __init__(self, path: Path) -> None:
        self.source = path
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as err:
            raise UserError(f"cannot read {path}: {getattr(err, 'strerror', None) or err}") from None
        except json.JSONDecodeError as err:
            raise UserError(f"{path.name} is not valid JSON ({err.msg}, line {err.lineno})") from None
        if not isinstance(data, dict) or not isinstance(data.get("images"), list):
            raise UserError(f"{path.name} is not COCO instances JSON (no 'images' list)")
        self.categories = {c["id"]: str(c.get("name", c["id"])) for c in data.get("categories", [])}
        self.images: dict[str, dict[str, Any]] = {}
        for im in data["images"]:
            self.images.setdefault(Path(str(im.get("file_name", ""))).name, im)
        self.annotations: dict[Any, list[dict[str, Any]]] = {}
        for ann in data.get("annotations", []):
            self.annotations.setdefault(ann.get("image_id"), []).append(ann)

    def category(self, ann: dict[str, Any]) -> str | None:
        cat = ann.get("category_id")
        return None if cat is None else self.categories.get(cat, str(cat))

    def objects(self, name: str, size: ImageSize) -> list[RefObject]:
        from pycocotools import mask as mask_utils

        im = self.images.get(name)
        if im is None:
            raise ReferenceMissing(f"missing reference: {name} is not in {self.source.name}")
        coco_size = ImageSize(int(im.get("width", 0)), int(im.get("height", 0)))
        if coco_size != size:
            raise ReferenceMissing(f"{self.source.name} says {name} is {coco_size} but the image is {size}")
        anns = [a for a in self.annotations.get(im.get("id"), []) if not a.get("iscrowd")]
        if not anns:
            raise ReferenceMissing(f"missing reference: {name} has no (non-crowd) annotation in {self.source.name}")
        out = []
        for ann in anns:
            seg = ann.get("segmentation")
            h, w = size.hw
            if isinstance(seg, list):  # polygons
                rles = mask_utils.frPyObjects(seg, h, w)
                rle = mask_utils.merge(rles) if rles else None
            elif isinstance(seg, dict) and isinstance(seg.get("counts"), list):  # uncompressed RLE
                rle = mask_utils.frPyObjects(seg, h, w)
            elif isinstance(seg, dict):
                rle = dict(seg)
                if isinstance(rle["counts"], str):
                    rle["counts"] = rle["counts"].encode("ascii")
            else:
                rle = None
            mask = np.zeros(size.hw, bool) if rle is None else mask_utils.decode(rle).astype(bool)
            out.append(RefObject(str(ann.get("id")), mask, self.category(ann)))
        return sorted(out, key=lambda o: natural_key(o.id))


def open_references(path: str | os.PathLike[str]) -> References:
    """A folder of PNGs, or a COCO instances ``.json`` file."""
    p = Path(path).expanduser()
    if p.is_dir():
        return PngReferences(p)
    if p.is_file() and p.suffix.lower() == ".json":
        return CocoReferences(p)
    if not p.exists():
        raise UserError(f"reference {p} not found: give a folder of PNG masks or a COCO instances .json")
    raise UserError(f"reference {p}: give a folder of PNG masks or a COCO instances .json")
