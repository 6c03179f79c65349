"""Hostile and odd input files for the reliability tests, made on the fly (all small on disk).

``bad_files(folder, too_big_bytes)`` and ``odd_images(folder)`` write the files and return
lists of :class:`FileCase`. A bad case carries the words its error message must contain; an
odd case carries the ``[W, H]`` the app must report (after EXIF rotation).
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from synth import photo_like


@dataclass
class FileCase:
    name: str
    path: Path
    expect_words: tuple[str, ...] = ()  # bad: every word must be in the error text (case-insensitive)
    size: tuple[int, int] | None = None  # odd: the [W, H] the app must report
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def bad(self) -> bool:
        return self.size is None


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(w: int = 30000, h: int = 30000) -> bytes:
    """A valid 1-bit greyscale PNG of ``w`` x ``h`` zeros (~0.5 MB for 900 MP), built by streaming."""
    out = [b"\x89PNG\r\n\x1a\n", _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0))]
    row = b"\0" * (1 + (w + 7) // 8)
    comp, parts, left = zlib.compressobj(1), [], h
    block = row * 512
    while left > 0:
        k = min(512, left)
        parts.append(comp.compress(block if k == 512 else row * k))
        left -= k
    parts.append(comp.flush())
    out += [_png_chunk(b"IDAT", b"".join(parts)), _png_chunk(b"IEND", b"")]
    return b"".join(out)


def _jpeg_bytes(rgb: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", **kw)
    return buf.getvalue()


def bad_files(folder: Path, too_big_bytes: int) -> list[FileCase]:
    """Files that must be refused with a message saying what is wrong."""
    folder.mkdir(parents=True, exist_ok=True)
    cases = []

    text = folder / "holiday.png"
    text.write_text("Dear diary, this is not a picture.\n" * 20)
    cases.append(FileCase("text named .png", text, ("holiday.png", "not a supported image")))

    empty = folder / "empty.png"
    empty.write_bytes(b"")
    cases.append(FileCase("empty file", empty, ("empty.png", "empty", "0 bytes")))

    jpeg = _jpeg_bytes(photo_like(300, 400, seed=3), quality=90)
    trunc = folder / "truncated.jpg"
    trunc.write_bytes(jpeg[: len(jpeg) // 2])
    cases.append(FileCase("truncated JPEG", trunc, ("truncated.jpg", "truncated")))

    bomb = folder / "bomb.png"
    bomb.write_bytes(png_bomb())
    cases.append(FileCase("30000×30000 PNG bomb", bomb, ("bomb.png", "30000×30000", "above the limit"),
                          note=f"{bomb.stat().st_size // 1024} kB"))

    # Above --max-file-size: incompressible noise in a real PNG, so only the size is wrong.
    side = int((1.5 * too_big_bytes / 3) ** 0.5)  # ~1.5x the limit (3 MB for 2mb)
    noise = np.random.default_rng(5).integers(0, 256, (side, side, 3), dtype=np.uint8)
    big = folder / "huge.png"
    Image.fromarray(noise).save(big, compress_level=1)
    assert big.stat().st_size > too_big_bytes
    cases.append(FileCase("file above --max-file-size", big, ("exceeds the maximum file size",),
                          note=f"{big.stat().st_size / 1e6:.1f} MB"))
    return cases


def odd_images(folder: Path) -> list[FileCase]:
    """Unusual but valid images; each must work and report the right [W, H]."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb = photo_like(48, 64, seed=7)
    cases = []

    def add(name: str, filename: str, img: Image.Image, size: tuple[int, int], **save_kw) -> None:
        path = folder / filename
        img.save(path, **save_kw)
        cases.append(FileCase(name, path, size=size))

    add("grayscale (L)", "grey.png", Image.fromarray(rgb).convert("L"), (64, 48))
    rgba = np.dstack([rgb, np.linspace(0, 255, 64 * 48).reshape(48, 64).astype(np.uint8)])
    add("RGBA", "rgba.png", Image.fromarray(rgba, "RGBA"), (64, 48))
    ramp = (np.arange(64 * 48, dtype=np.uint32).reshape(48, 64) * 21).astype(np.uint16)
    img16 = Image.fromarray(ramp)
    assert img16.mode.startswith("I;16")
    add("16-bit PNG", "deep16.png", img16, (64, 48))
    add("CMYK JPEG", "cmyk.jpg", Image.fromarray(rgb).convert("CMYK"), (64, 48), quality=92)
    pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    add("palette GIF + transparency", "palette.gif", pal, (64, 48), transparency=0)
    frames = [Image.fromarray(photo_like(48, 64, seed=s)).convert("P", palette=Image.Palette.ADAPTIVE)
              for s in (1, 2, 3)]
    path = folder / "animated.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=80, loop=0)
    assert Image.open(path).n_frames == 3
    cases.append(FileCase("animated GIF (3 frames)", path, size=(64, 48)))
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90° clockwise: stored 80x40 -> shown 40x80
    add("EXIF orientation 6 JPEG", "rotated.jpg", Image.fromarray(photo_like(40, 80, seed=9)), (40, 80),
        exif=exif, quality=92)
    add("1x1 pixel", "one.png", Image.new("RGB", (1, 1), (200, 30, 30)), (1, 1))
    add("3000x2 strip", "strip.png", Image.fromarray(photo_like(2, 3000, seed=4)), (3000, 2))
    return cases


def print_table(request, title: str, headers: list[str], rows: list[list[str]], widths: list[int]) -> None:
    """Print a table in the normal pytest output (no -s needed) through the terminal reporter."""
    def fit(text: str, width: int) -> str:
        text = " ".join(str(text).split())
        return text if len(text) <= width else text[: width - 1] + "…"

    lines = ["  ".join(fit(h, w).ljust(w) for h, w in zip(headers, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(fit(c, w).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    # During a test pytest captures file descriptor 1, the terminal reporter's too: suspend it.
    capman = request.config.pluginmanager.get_plugin("capturemanager")
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    with capman.global_and_fixture_disabled() if capman is not None else _null():
        if tr is not None:
            tr.write("\n")
            tr.write_sep("-", title)
            for line in lines:
                tr.write_line(line)
        else:
            print(f"\n--- {title}")
            print("\n".join(lines), flush=True)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# ----------------------------------------------------------------------------- annotation bundles
# Hostile bundles for sam_core.core.bundle_io.read_bundle, written with the stdlib zipfile (plus
# header patches where zipfile refuses to write something) and independent of the code under test.

import copy  # noqa: E402
import json  # noqa: E402
import warnings  # noqa: E402
import zipfile  # noqa: E402
from collections.abc import Callable  # noqa: E402

import safetensors.numpy  # noqa: E402
from pycocotools import mask as coco_mask  # noqa: E402

BUNDLE_W, BUNDLE_H = 64, 48  # the synthetic bundle's image, in pixels
_MiB = 1 << 20


def bundle_rect_mask(x1: int = 4, y1: int = 6, x2: int = 40, y2: int = 30) -> np.ndarray:
    """An (H, W) bool mask of the bundle image with the half-open box [x1, y1, x2, y2] set."""
    mask = np.zeros((BUNDLE_H, BUNDLE_W), bool)
    mask[y1:y2, x1:x2] = True
    return mask


def coco_rle(mask: np.ndarray) -> dict:
    """COCO compressed RLE of an (H, W) mask, straight from pycocotools, counts as str."""
    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def bundle_object(oid: int = 1, mask_input: str | None = "m1") -> dict:
    return {
        "id": oid,
        "label": "cell",
        "prompts": {"points": [[10.5, 20, 1], [30, 5, 0]], "box": [4, 6, 40, 30]},
        "multimask": True,
        "chosen": 2,
        "scores": [0.5, 0.75, 0.875],
        "threshold": 0.0,
        "min_island": 10,
        "min_hole": 0,
        "mask_input": mask_input,
        "edits": [{"op": "brush", "radius": 3, "points": [[1, 2], [3, 4]]}],
        "rle": coco_rle(bundle_rect_mask()),
    }


def bundle_manifest() -> dict:
    """A valid version-1 manifest for a 64×48 image with one object whose mask_input is 'm1'."""
    return {
        "format": "sam-studio-bundle",
        "version": 1,
        "created": "2024-05-01T12:00:00Z",
        "app": "SAM Studio 0.2.0",
        "image": {
            "name": "cells.png",
            "key": "0123456789abcdef0123456789abcdef01234567",
            "width": BUNDLE_W,
            "height": BUNDLE_H,
        },
        "model": {"type": "vit_b", "weights_id": "sam_vit_b_01ec64", "weights_sha256": None},
        "settings": {"multimask": True, "points_per_side": 32, "iou_thresh": 0.88, "mode": "click", "seed": None},
        "categories": ["cell", "debris"],
        "objects": [bundle_object()],
    }


def bundle_tensors() -> dict[str, np.ndarray]:
    """The tensors of :func:`bundle_manifest`: one float32 (1, 256, 256) SAM mask input, a ramp."""
    return {"m1": np.linspace(-8, 8, 256 * 256, dtype=np.float32).reshape(1, 256, 256)}


def bundle_entries(manifest: dict | None = None, tensors: dict | None = None) -> list[tuple[str, bytes]]:
    """[(name, bytes)] of a bundle: bundle.json, then tensors.safetensors (the valid ones by default)."""
    manifest = bundle_manifest() if manifest is None else manifest
    tensors = bundle_tensors() if tensors is None else tensors
    out = [("bundle.json", json.dumps(manifest).encode())]
    if tensors:
        out.append(("tensors.safetensors", safetensors.numpy.save(tensors)))
    return out


def make_zip(
    entries: list[tuple[str | zipfile.ZipInfo, bytes]], method: int = zipfile.ZIP_DEFLATED, level: int = 1
) -> bytes:
    """A zip of ``entries`` in order (duplicates allowed), written by the stdlib zipfile.

    ``level``: the deflate level (1, fast, by default).
    """
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name"
        with zipfile.ZipFile(buf, "w", compression=method, compresslevel=level) as zf:
            for name, data in entries:
                zf.writestr(name, data)
    return buf.getvalue()


def patch_zip_entry(
    data: bytes,
    index: int,
    *,
    method: int | None = None,
    flags_or: int = 0,
    crc: int | None = None,
    file_size: int | None = None,
    name: bytes | None = None,
) -> bytes:
    """``data`` with entry ``index``'s fields changed in both its local and its central header.

    For what zipfile will not write: encrypted flags, lying sizes, raw deflate data written as
    stored then relabelled, NUL bytes in names (``name`` must keep the length).
    """
    out = bytearray(data)
    eocd = out.rfind(b"PK\x05\x06")
    (cd,) = struct.unpack_from("<L", out, eocd + 16)
    for _ in range(index):  # walk the central directory to the entry
        n, m, k = struct.unpack_from("<HHH", out, cd + 28)
        cd += 46 + n + m + k
    assert out[cd : cd + 4] == b"PK\x01\x02"
    (local,) = struct.unpack_from("<L", out, cd + 42)
    assert out[local : local + 4] == b"PK\x03\x04"
    # (central offset, local offset, struct format) of each field
    for value, c_off, l_off, fmt in ((method, 10, 8, "<H"), (crc, 16, 14, "<L"), (file_size, 24, 22, "<L")):
        if value is not None:
            struct.pack_into(fmt, out, cd + c_off, value)
            struct.pack_into(fmt, out, local + l_off, value)
    if flags_or:
        for at in (cd + 8, local + 6):
            (flags,) = struct.unpack_from("<H", out, at)
            struct.pack_into("<H", out, at, flags | flags_or)
    if name is not None:
        (n,) = struct.unpack_from("<H", out, cd + 28)
        assert len(name) == n
        out[cd + 46 : cd + 46 + n] = name
        out[local + 30 : local + 30 + n] = name
    return bytes(out)


def deflate_zeros(mib: int) -> bytes:
    """A raw deflate stream of ``mib`` MiB of zeros (~1 kB per MiB), built in milliseconds.

    One MiB is compressed once and ended with a full flush, which byte-aligns the output and
    resets the compressor, so the same bytes encode every further MiB; an empty final block ends it.
    """
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = comp.compress(bytes(_MiB)) + comp.flush(zlib.Z_FULL_FLUSH)
    return piece * mib + zlib.compressobj(9, zlib.DEFLATED, -15).flush()


def deflate_bomb_zip(
    declared: int, mib: int = 1024, name: str = "bundle.json", before: list[tuple[str, bytes]] = ()
) -> bytes:
    """A zip of ``before`` (stored) then ``name``, which inflates to ``mib`` MiB of zeros.

    The bomb entry's header declares ``declared`` uncompressed bytes (and a CRC of 0).
    """
    data = make_zip([*before, (name, deflate_zeros(mib))], method=zipfile.ZIP_STORED)
    return patch_zip_entry(data, len(before), method=zipfile.ZIP_DEFLATED, file_size=declared, crc=0)


def _entry_info(name: str, *, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
    info.external_attr = mode << 16
    return info


def _manifest_with(change: Callable[[dict], object]) -> dict:
    manifest = copy.deepcopy(bundle_manifest())
    change(manifest)
    return manifest


def set_at(path: str, value) -> Callable[[dict], None]:
    """A change setting ``manifest[k1][k2]...`` (path "objects.0.id") to ``value``; ``...`` deletes."""
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]

    def change(manifest: dict) -> None:
        node = manifest
        for k in keys[:-1]:
            node = node[k]
        if value is ...:
            del node[keys[-1]]
        else:
            node[keys[-1]] = value

    return change


def _add_object(manifest: dict) -> None:
    manifest["objects"].append(bundle_object(1, mask_input=None))  # id 1 again


def bad_bundles(folder: Path) -> list[FileCase]:
    """Bundles that :func:`read_bundle` must refuse, with the words its message must contain.

    The words hold no backslashes or non-ASCII characters, so a channel that escapes the message
    (a repr, JSON) still shows them; test_bundle_io checks the escaping itself.

    Every case is refused under the default :class:`BundleLimits`, so the files can go through
    any channel (the UI too). The biggest is a sparse 64 MiB file that takes no disk space.
    """
    folder.mkdir(parents=True, exist_ok=True)
    cases: list[FileCase] = []

    def add(name: str, filename: str, data: bytes, words: tuple[str, ...], **kw) -> None:
        path = folder / filename
        path.write_bytes(data)
        cases.append(FileCase(name, path, words, **kw))

    good = make_zip(bundle_entries())
    not_zip = ("not a SAM Studio bundle", "not a zip")

    # --- the container
    add("text file", "notes.zip", b"Dear diary, this is not a bundle.\n" * 20, not_zip)
    add("truncated zip", "truncated.zip", good[: len(good) // 2], (*not_zip, "truncated"))
    add("empty file", "empty.zip", b"", (*not_zip, "empty"))
    (folder / "folder.zip").mkdir(exist_ok=True)
    cases.append(FileCase("a folder", folder / "folder.zip", (*not_zip, "folder")))
    big = folder / "big.zip"
    big.write_bytes(good)
    with big.open("r+b") as f:
        f.truncate(64 * _MiB + 1)  # sparse: a real bundle followed by a hole, one byte above the limit
    cases.append(
        FileCase(
            "file above max_file_bytes", big, ("big.zip", "above the limit of 64 MiB"), note="64 MiB + 1 byte, sparse"
        )
    )

    # --- zip bombs (1 GiB of zeros in ~1 MB)
    bomb = deflate_bomb_zip(declared=1 << 30)
    add(
        "1 GiB deflate bomb, honest header",
        "bomb.zip",
        bomb,
        ("bundle.json", "1 GiB", "limit of 16 MiB"),
        note=f"{len(bomb) // 1024} kB",
    )
    add(
        "1 GiB deflate bomb, header says 1000 bytes",
        "bomb_lying.zip",
        deflate_bomb_zip(declared=1000),
        ("bundle.json", "damaged", "1000 bytes its header declares"),
    )
    add(
        "1 GiB deflate bomb, header says 16 MiB",
        "bomb_16.zip",
        deflate_bomb_zip(declared=16 * _MiB),
        ("bundle.json", "compressed more than 1000:1"),
    )
    add(
        "1 GiB tensors.safetensors bomb",
        "bomb_tensors.zip",
        deflate_bomb_zip(declared=1 << 30, name="tensors.safetensors", before=bundle_entries()[:1]),
        ("tensors.safetensors", "1 GiB", "limit of 64 MiB"),
    )

    # --- entry names and attributes
    entries = bundle_entries()
    for label, bad_name, shown in (
        ("path traversal", "../evil", "../evil"),
        ("absolute path", "/abs", "/abs"),
        ("drive letter", "C:\\x", "C:"),
        ("traversal inside", "a/../../b", "a/../../b"),
        ("backslashes", "dir\\bundle.json", "dir"),
    ):
        add(
            f"entry name: {label}",
            f"name_{len(cases)}.zip",
            make_zip([entries[0], (bad_name, b"x")]),
            ("unsafe name", shown),
        )
    nul = patch_zip_entry(make_zip([("bundle.json?evil", b"{}")]), 0, name=b"bundle.json\0evil")
    add("entry name with NUL", "nul.zip", nul, ("unsafe name", "NUL", "bundle.json"))
    add("unknown entry", "unknown.zip", make_zip([entries[0], ("notes.txt", b"hi")]), ("unknown entry", "notes.txt"))
    add("duplicate entry", "dup.zip", make_zip([entries[0], entries[0]]), ("duplicate entry", "bundle.json"))
    add(
        "three entries", "three.zip", make_zip([*entries, ("notes.txt", b"hi")]), ("too many entries", "3", "at most 2")
    )
    add(
        "1000 entries",
        "many.zip",
        make_zip([(f"f{i}", b"") for i in range(1000)], zipfile.ZIP_STORED),
        ("too many entries", "1000"),
    )
    link = _entry_info("bundle.json", mode=0o120777)
    add("symlink entry", "link.zip", make_zip([(link, b"/etc/passwd")]), ("bundle.json", "symbolic link"))
    add(
        "encrypted entry",
        "encrypted.zip",
        patch_zip_entry(make_zip(entries[:1]), 0, flags_or=0x1),
        ("bundle.json", "encrypted"),
    )
    add(
        "bzip2 entry",
        "bzip2.zip",
        make_zip(entries[:1], method=zipfile.ZIP_BZIP2),
        ("bundle.json", "compression method 12"),
    )
    weird = "\x1b[31m\u202e" + "A" * 5000
    add(
        "escaped, shortened entry name",
        "weird.zip",
        make_zip([entries[0], (weird, b"")]),
        ("unsafe name", "control characters", "[31m"),
    )

    # --- bundle.json as text
    def json_case(name: str, filename: str, raw: bytes, words: tuple[str, ...], **kw) -> None:
        add(name, filename, make_zip([("bundle.json", raw), entries[1]]), words, **kw)

    add("bundle.json missing", "no_json.zip", make_zip(entries[1:]), ("bundle.json", "missing"))
    json_case("bundle.json not UTF-8", "latin1.zip", '{"app": "Café"}'.encode("latin-1"), ("bundle.json", "UTF-8"))
    json_case(
        "bundle.json not JSON",
        "notjson.zip",
        b"{'format': 'sam-studio-bundle',}",
        ("bundle.json", "not valid JSON", "line 1"),
    )
    json_case("bundle.json a list", "list.zip", b"[1, 2, 3]", ("bundle.json", "JSON object", "a list"))
    json_case("100000 nested lists", "deep.zip", b"[" * 100_000 + b"]" * 100_000, ("nested more than 32 levels",))
    json_case(
        "100000 nested objects",
        "deep_obj.zip",
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        ("nested more than 32 levels",),
    )
    padded = json.dumps({**bundle_manifest(), "padding": "x" * (16 * _MiB)}).encode()
    json_case("bundle.json above max_json_bytes", "huge_json.zip", padded, ("bundle.json", "limit of 16 MiB"))
    good_json = entries[0][1]
    json_case("NaN literal", "nan.zip", good_json.replace(b'"threshold": 0.0', b'"threshold": NaN'), ("NaN",))
    json_case(
        "Infinity literal", "inf.zip", good_json.replace(b'"threshold": 0.0', b'"threshold": -Infinity'), ("-Infinity",)
    )
    json_case("1e999", "1e999.zip", good_json.replace(b'"threshold": 0.0', b'"threshold": 1e999'), ("1e999", "finite"))
    json_case(
        "duplicate keys",
        "dupkey.zip",
        good_json.replace(b'"version": 1', b'"version": 1, "version": 1'),
        ("duplicate key", "version"),
    )

    # --- format and version
    def manifest_case(
        name: str, filename: str, change: Callable[[dict], object], words: tuple[str, ...], tensors: dict | None = None
    ) -> None:
        add(name, filename, make_zip(bundle_entries(_manifest_with(change), tensors)), words)

    manifest_case(
        "wrong format", "format.zip", set_at("format", "labelme"), ("not a SAM Studio bundle", "format", "labelme")
    )
    manifest_case(
        "version 2", "v2.zip", set_at("version", 2), ("unsupported bundle version 2", "this app reads version 1")
    )
    manifest_case(
        'version "1"',
        "v1str.zip",
        set_at("version", "1"),
        ("unsupported bundle version", "string", "this app reads version 1"),
    )
    manifest_case("version missing", "vnone.zip", set_at("version", ...), ("unsupported bundle version", "missing"))

    # --- the schema
    for name, change, words in (
        ("object id true", set_at("objects.0.id", True), ("objects[0].id", "integer", "a boolean")),
        ("object id 0", set_at("objects.0.id", 0), ("objects[0].id", "from 1 to 65535")),
        ("object id 70000", set_at("objects.0.id", 70000), ("objects[0].id", "from 1 to 65535", "70000")),
        ("duplicate object ids", _add_object, ("objects[1].id", "duplicate id 1")),
        (
            "point x a string",
            set_at("objects.0.prompts.points.0.0", "10"),
            ("objects[0].prompts.points[0]", "x must be a finite number"),
        ),
        ("point label 2", set_at("objects.0.prompts.points.1.2", 2), ("objects[0].prompts.points[1]", "0", "1")),
        ("65 points", set_at("objects.0.prompts.points", [[1, 1, 1]] * 65), ("points", "65", "limit of 64")),
        ("box of 3", set_at("objects.0.prompts.box", [1, 2, 3]), ("objects[0].prompts.box", "[x1, y1, x2, y2]")),
        ("chosen 4", set_at("objects.0.chosen", 4), ("objects[0].chosen", "from 0 to 3")),
        ("5 scores", set_at("objects.0.scores", [0.1] * 5), ("objects[0].scores", "limit of 4")),
        ("min_island -1", set_at("objects.0.min_island", -1), ("objects[0].min_island", "from 0")),
        ("multimask 1", set_at("objects.0.multimask", 1), ("objects[0].multimask", "true or false")),
        ("edit without op", set_at("objects.0.edits.0", {"radius": 3}), ("objects[0].edits[0].op", "missing")),
        ("label too long", set_at("objects.0.label", "x" * 201), ("objects[0].label", "200")),
        ("image key not hex", set_at("image.key", "z" * 40), ("image.key", "40 lowercase hex")),
        ("image width 0", set_at("image.width", 0), ("image.width", "from 1")),
        ("65 settings", set_at("settings", {f"k{i}": i for i in range(65)}), ("settings", "limit of 64")),
        ("setting a list", set_at("settings.mode", [1]), ("settings.mode", "a list")),
        ("1001 categories", set_at("categories", ["c"] * 1001), ("categories", "limit of 1000")),
        ("objects not a list", set_at("objects", {}), ("objects", "must be a list")),
        (
            "rle size not the image",
            set_at("objects.0.rle.size", [BUNDLE_H - 1, BUNDLE_W]),
            ("objects[0].rle.size", f"[{BUNDLE_H}, {BUNDLE_W}]"),
        ),
        (
            "rle counts too many pixels",
            set_at("objects.0.rle.counts", coco_rle(bundle_rect_mask())["counts"] + "1"),
            ("objects[0].rle.counts", "pixels"),
        ),
        ("rle counts not RLE", set_at("objects.0.rle.counts", "hello world"), ("objects[0].rle.counts", "'0' to 'o'")),
        (
            "mask_input names a missing tensor",
            set_at("objects.0.mask_input", "m2"),
            ("objects[0].mask_input", "'m2'", "missing"),
        ),
    ):
        manifest_case(f"schema: {name}", f"schema_{len(cases)}.zip", change, words)
    manifest_case(
        "mask_input of the wrong shape",
        "shape.zip",
        lambda m: None,
        ("objects[0].mask_input", "(1, 256, 256)"),
        tensors={"m1": np.zeros((1, 128, 128), np.float32)},
    )
    manifest_case(
        "float64 tensor",
        "f64.zip",
        lambda m: None,
        ("tensors.safetensors", "float64", "float32"),
        tensors={"m1": np.zeros((1, 256, 256), np.float64)},
    )
    nan_tensor = bundle_tensors()
    nan_tensor["m1"][0, 5, 5] = np.nan
    manifest_case("NaN in a tensor", "nantensor.zip", lambda m: None, ("tensor 'm1'", "NaN"), tensors=nan_tensor)
    add(
        "malformed safetensors",
        "badst.zip",
        make_zip([entries[0], ("tensors.safetensors", struct.pack("<Q", 12) + b'{"m1": 1234}')]),
        ("tensors.safetensors", "malformed"),
    )
    add(
        "safetensors header too large",
        "bigheader.zip",
        make_zip([entries[0], ("tensors.safetensors", struct.pack("<Q", 1 << 40) + b"{}")]),
        ("tensors.safetensors", "header", "limit of 1 MiB"),
    )
    return cases
