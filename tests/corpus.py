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
