"""Turning what a visitor uploads (images, zips, prompt and reference files) into a study's inputs.

Uploads are untrusted: zip members are read with bounded sizes (no zip bombs), only their base
names are used (no path traversal), only image files (and, for references, a COCO JSON) are
taken, and the image count and the total pixels are checked from the headers before anything
is decoded. Everything is copied into a fresh folder of the study; nothing is written elsewhere.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

from sam_core.core.errors import UserError
from sam_core.core.files import safe_stem, write_atomic

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif"})
EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
EXAMPLE_MAX_PIXELS = 4_000_000  # the bundled 20 MP photo is left out of the quick example study


class UploadError(UserError):
    """An upload cannot be used for a study (too many images, a bad zip, ...)."""


@dataclass(frozen=True)
class BatchLimits:
    """What one study from the UI may hold. ``max_pixels``: total over all images (W x H summed)."""

    max_images: int = 100
    max_pixels: int = 400_000_000
    max_zip_bytes: int = 1 << 30  # uncompressed, all members together
    max_zip_members: int = 2000
    max_ratio: float = 200.0  # uncompressed / compressed size of one member beyond which it is a bomb


@dataclass(frozen=True)
class StagedInputs:
    """A study's inputs in its own folder: ``images`` folder, optional ``prompts`` and ``reference``."""

    images: Path
    count: int
    pixels: int
    prompts: Path | None
    reference: Path | None
    notes: tuple[str, ...] = ()


def _unique(folder: Path, name: str) -> Path:
    stem, suffix = safe_stem(name), Path(name).suffix.lower()
    path, n = folder / f"{stem}{suffix}", 1
    while path.exists():
        n += 1
        path = folder / f"{stem}_{n}{suffix}"
    return path


def _extract(zpath: Path, dest: Path, limits: BatchLimits, suffixes: frozenset[str]) -> tuple[list[Path], list[str]]:
    """Copy the members of ``zpath`` with one of ``suffixes`` into ``dest`` (flat, safe names)."""
    notes: list[str] = []
    out: list[Path] = []
    try:
        zf = zipfile.ZipFile(zpath)
    except (zipfile.BadZipFile, OSError) as err:
        raise UploadError(f"{zpath.name} is not a readable zip file ({err}).") from None
    with zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        if len(members) > limits.max_zip_members:
            raise UploadError(f"{zpath.name} has {len(members)} files; at most {limits.max_zip_members} are allowed.")
        total = 0
        skipped = 0
        for m in members:
            name = Path(m.filename.replace("\\", "/")).name
            if name.startswith(".") or Path(name).suffix.lower() not in suffixes:
                skipped += 1
                continue
            total += m.file_size
            if total > limits.max_zip_bytes or (m.compress_size and m.file_size / m.compress_size > limits.max_ratio):
                raise UploadError(
                    f"{zpath.name} expands to more than the {limits.max_zip_bytes >> 20} MB allowed "
                    f"(or {name} is suspiciously compressed): refused as a possible zip bomb."
                )
            with zf.open(m) as src:
                data = src.read(m.file_size + 1)
            if len(data) != m.file_size:  # the header lied about the size
                raise UploadError(f"{zpath.name}: the size of {name} does not match its header; refused.")
            target = _unique(dest, name)
            write_atomic(target, data)
            out.append(target)
        if skipped:
            notes.append(f"{zpath.name}: {skipped} file(s) that are not {'/'.join(sorted(suffixes))} were skipped.")
    return out, notes


def _header_size(path: Path) -> tuple[int, int] | None:
    try:
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None  # the runner reports it as an unreadable image, the others go on


def stage_images(files: Sequence[str | Path], dest: Path, limits: BatchLimits) -> StagedInputs:
    """Copy uploaded images and the images inside uploaded zips into ``dest``; check the limits."""
    dest.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    for f in files:
        path = Path(f)
        if path.suffix.lower() == ".zip":
            _, more = _extract(path, dest, limits, IMAGE_SUFFIXES)
            notes += more
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            shutil.copyfile(path, _unique(dest, path.name))
        else:
            notes.append(f"{path.name} is neither an image nor a zip: skipped.")
    images = sorted(p for p in dest.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise UploadError("No images: upload image files or a zip of images, or use the bundled examples.")
    if len(images) > limits.max_images:
        raise UploadError(
            f"{len(images)} images is more than the {limits.max_images} a study in the app may hold "
            "(--batch-max-images); use the command line (python -m sam_core.batch) for large sets."
        )
    pixels = sum(w * h for w, h in filter(None, map(_header_size, images)))
    if pixels > limits.max_pixels:
        raise UploadError(
            f"The images hold {pixels / 1e6:.0f} MP in all, more than the {limits.max_pixels / 1e6:.0f} MP "
            "a study in the app may hold (--batch-max-pixels); use the command line for large sets."
        )
    return StagedInputs(dest, len(images), pixels, None, None, tuple(notes))


def stage_reference(files: Sequence[str | Path], dest: Path, limits: BatchLimits) -> Path | None:
    """Reference masks: a COCO instances JSON (returned as is), or PNGs / zips of PNGs (a folder)."""
    paths = [Path(f) for f in files]
    if not paths:
        return None
    jsons = [f for f in paths if f.suffix.lower() == ".json"]
    if jsons:
        if len(paths) > 1:
            raise UploadError("Give either one COCO instances JSON or PNG masks as references, not both.")
        target = dest.parent / f"reference_{safe_stem(jsons[0].name)}.json"
        shutil.copyfile(jsons[0], target)
        return target
    dest.mkdir(parents=True, exist_ok=True)
    for f in paths:
        if f.suffix.lower() == ".zip":
            _extract(f, dest, limits, frozenset({".png"}))
        elif f.suffix.lower() == ".png":
            shutil.copyfile(f, _unique(dest, f.name))
        else:
            raise UploadError(f"Reference {f.name}: use PNG masks (non-zero = object), a zip of them, or COCO JSON.")
    return dest


def stage_examples(dest: Path) -> StagedInputs:
    """The bundled examples (<= 4 MP each) with their preset prompts as a prompt JSON file."""
    dest.mkdir(parents=True, exist_ok=True)
    presets = json.loads((EXAMPLES_DIR / "presets.json").read_text())
    prompts: dict[str, dict[str, object]] = {}
    pixels = 0
    for item in presets:
        src = EXAMPLES_DIR / item["file"]
        size = _header_size(src)
        if size is None or size[0] * size[1] > EXAMPLE_MAX_PIXELS:
            continue
        shutil.copyfile(src, dest / src.name)
        prompts[src.name] = {"points": item.get("points") or [], "box": item.get("box")}
        pixels += size[0] * size[1]
    prompt_file = write_atomic(dest.parent / "example_prompts.json", json.dumps(prompts, indent=1).encode())
    note = "The bundled examples with their preset prompts (the 20 MP photo is left out to keep it quick)."
    return StagedInputs(dest, len(prompts), pixels, prompt_file, None, (note,))


def zip_folder(folder: Path, target: Path) -> Path:
    """Zip every file under ``folder`` (relative names) into ``target``, atomically."""

    def write(f: BinaryIO) -> None:
        with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as zf:
            for p in sorted(folder.rglob("*")):
                if p.is_file() and p != target and not p.name.startswith("."):
                    zf.write(p, p.relative_to(folder).as_posix())

    return write_atomic(target, write)
