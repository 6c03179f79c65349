"""The annotation bundle container: round trips, and every defence against hostile bundles.

Hostile files are written with the stdlib zipfile (helpers in corpus.py), never with the code
under test; expected answers come from hand-made masks, pycocotools and the schema itself.
"""

from __future__ import annotations

import copy
import io
import json
import random
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
from corpus import (
    BUNDLE_H,
    BUNDLE_W,
    bad_bundles,
    bundle_entries,
    bundle_manifest,
    bundle_object,
    bundle_rect_mask,
    bundle_tensors,
    coco_rle,
    deflate_bomb_zip,
    deflate_zeros,
    make_zip,
    patch_zip_entry,
    set_at,
)
from pycocotools import mask as coco_mask

from sam_core.core import bundle_io
from sam_core.core.bundle_io import (
    BUNDLE_FORMAT,
    BUNDLE_VERSION,
    DEFAULT_LIMITS,
    Bundle,
    BundleError,
    BundleLimits,
    _json_depth,
    _rle_pixels,
    read_bundle,
    validate_manifest,
    write_bundle,
)
from sam_core.core.errors import UserError

MiB = 1 << 20


def refused(source, *words: str, limits: BundleLimits = DEFAULT_LIMITS) -> str:
    """Read ``source``, expect a BundleError containing every word (case-insensitive); return it."""
    with pytest.raises(BundleError) as info:
        read_bundle(source, limits=limits)
    msg = str(info.value)
    for word in words:
        assert word.lower() in msg.lower(), f"{word!r} not in {msg!r}"
    return msg


def invalid(manifest, *words: str, tensors=None) -> str:
    with pytest.raises(BundleError) as info:
        validate_manifest(manifest, bundle_tensors() if tensors is None else tensors)
    msg = str(info.value)
    for word in words:
        assert word.lower() in msg.lower(), f"{word!r} not in {msg!r}"
    return msg


def zip_with_json(raw: bytes) -> bytes:
    return make_zip([("bundle.json", raw), bundle_entries()[1]])


# ----------------------------------------------------------------------------- round trips


def test_round_trip_keeps_manifest_and_tensors():
    manifest, tensors = bundle_manifest(), bundle_tensors()
    tensors["extra"] = np.arange(6, dtype=np.float32).reshape(2, 3)  # unreferenced tensors are kept
    data = write_bundle(manifest, tensors)
    bundle = read_bundle(data)
    assert isinstance(bundle, Bundle)
    assert bundle.manifest == manifest
    assert set(bundle.tensors) == {"m1", "extra"}
    for name, arr in tensors.items():
        assert bundle.tensors[name].dtype == np.float32
        assert np.array_equal(bundle.tensors[name], arr)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert [i.filename for i in zf.infolist()] == ["bundle.json", "tensors.safetensors"]
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in zf.infolist())
        assert json.loads(zf.read("bundle.json")) == manifest  # plain JSON any tool can read
    # the mask survives: the RLE decodes back to the hand-made rectangle
    rle = bundle.manifest["objects"][0]["rle"]
    decoded = coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)
    assert np.array_equal(decoded, bundle_rect_mask())


def test_write_is_deterministic_and_reads_from_paths(tmp_path):
    a = write_bundle(bundle_manifest(), bundle_tensors())
    b = write_bundle(copy.deepcopy(bundle_manifest()), bundle_tensors())
    assert a == b
    path = tmp_path / "session.zip"
    path.write_bytes(a)
    assert read_bundle(path).manifest == bundle_manifest()
    assert read_bundle(str(path)).manifest == bundle_manifest()


def test_bundle_without_tensors_round_trips():
    manifest = bundle_manifest()
    manifest["objects"][0]["mask_input"] = None
    data = write_bundle(manifest)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.namelist() == ["bundle.json"]
    bundle = read_bundle(data)
    assert bundle.manifest == manifest and bundle.tensors == {}


def test_unknown_extra_keys_are_ignored_and_kept():
    manifest = bundle_manifest()
    manifest["future"] = {"anything": [1, 2]}
    manifest["objects"][0]["colour"] = "#ff0000"
    assert read_bundle(write_bundle(manifest, bundle_tensors())).manifest == manifest


def test_all_zero_tensors_stay_readable():
    # 12 MiB of zeros deflates beyond 1000:1; the writer stores it so the reader does not see a bomb
    zeros = {"z": np.zeros((48, 256, 256), np.float32)}
    manifest = bundle_manifest()
    manifest["objects"][0]["mask_input"] = None
    data = write_bundle(manifest, zeros)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.getinfo("tensors.safetensors").compress_type == zipfile.ZIP_STORED
        assert zf.getinfo("bundle.json").compress_type == zipfile.ZIP_DEFLATED
    bundle = read_bundle(data)
    assert bundle.tensors["z"].shape == (48, 256, 256) and not bundle.tensors["z"].any()
    # a single all-zero mask input (256 kB, ~760:1) stays deflated
    one = write_bundle(bundle_manifest(), {"m1": np.zeros((1, 256, 256), np.float32)})
    with zipfile.ZipFile(io.BytesIO(one)) as zf:
        assert zf.getinfo("tensors.safetensors").compress_type == zipfile.ZIP_DEFLATED
    assert not read_bundle(one).tensors["m1"].any()


def test_write_validates_first():
    manifest = bundle_manifest()
    manifest["objects"][0]["id"] = 0
    with pytest.raises(BundleError, match=r"objects\[0\]\.id"):
        write_bundle(manifest, bundle_tensors())
    with pytest.raises(BundleError, match="float32"):
        write_bundle(bundle_manifest(), {"m1": np.zeros((1, 256, 256), np.float64)})
    with pytest.raises(BundleError, match="missing"):
        write_bundle(bundle_manifest())  # mask_input 'm1' but no tensors
    manifest = bundle_manifest()
    manifest["extra"] = float("nan")  # unknown keys are not validated but must still be JSON
    with pytest.raises(BundleError, match="cannot be written as JSON"):
        write_bundle(manifest, bundle_tensors())
    manifest = bundle_manifest()
    deep: list = []
    manifest["objects"][0]["edits"] = [{"op": "x", "data": deep}]
    for _ in range(40):
        deep.append([])
        deep = deep[0]
    with pytest.raises(BundleError, match="nested more than 32"):
        write_bundle(manifest, bundle_tensors())


def test_bundle_error_is_a_user_error():
    assert issubclass(BundleError, UserError)
    assert BUNDLE_FORMAT == "sam-studio-bundle" and BUNDLE_VERSION == 1


def test_limits_must_be_positive():
    with pytest.raises(ValueError):
        BundleLimits(max_depth=0)
    with pytest.raises(ValueError):
        BundleLimits(max_ratio=True)


# ----------------------------------------------------------------------------- not a zip


def test_not_a_zip(tmp_path):
    text = tmp_path / "notes.zip"
    text.write_text("hello\n" * 50)
    refused(text, "notes.zip", "not a SAM Studio bundle", "not a zip")
    refused(b"hello" * 50, "not a SAM Studio bundle", "not a zip")


def test_truncated_zip():
    good = write_bundle(bundle_manifest(), bundle_tensors())
    for cut in (len(good) // 2, len(good) - 10, 30):
        refused(good[:cut], "not a SAM Studio bundle", "not a zip", "truncated")


def test_empty_file_and_folder(tmp_path):
    empty = tmp_path / "empty.zip"
    empty.write_bytes(b"")
    refused(empty, "empty.zip", "not a SAM Studio bundle", "not a zip", "empty")
    refused(b"", "not a zip", "empty")
    refused(tmp_path, "not a SAM Studio bundle", "not a zip", "folder")
    refused(tmp_path / "nope.zip", "nope.zip", "not found")


def test_message_names_only_the_file(tmp_path):
    path = tmp_path / "secret_server_folder" / "x.zip"
    path.parent.mkdir()
    path.write_bytes(b"junk")
    msg = refused(path, "x.zip")
    assert "secret_server_folder" not in msg


# ----------------------------------------------------------------------------- size limits


def test_file_size_is_checked_before_opening(tmp_path, monkeypatch):
    data = write_bundle(bundle_manifest(), bundle_tensors())
    path = tmp_path / "big.zip"
    path.write_bytes(data)
    small = BundleLimits(max_file_bytes=len(data) - 1)

    def no_open(*args, **kwargs):
        raise AssertionError("the file was opened")

    monkeypatch.setattr(Path, "open", no_open)
    refused(path, "big.zip", "above the limit", limits=small)
    refused(data, "above the limit", limits=small)
    monkeypatch.undo()
    assert read_bundle(path, limits=BundleLimits(max_file_bytes=len(data))).manifest == bundle_manifest()


def test_deflate_zeros_helper_is_what_it_says():
    assert zlib_inflate(deflate_zeros(3)) == bytes(3 * MiB)


def zlib_inflate(raw: bytes) -> bytes:
    import zlib

    return zlib.decompress(raw, -15)


def test_bomb_with_honest_header_is_refused_before_reading():
    bomb = deflate_bomb_zip(declared=1 << 30)
    assert len(bomb) < 2 * MiB  # 1 GiB of zeros in about a megabyte
    refused(bomb, "bundle.json", "1 GiB", "limit of 16 MiB")


def _peak_while_refused(data: bytes, limits: BundleLimits, *words: str) -> int:
    tracemalloc.start()
    try:
        refused(data, *words, limits=limits)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_bomb_with_lying_header_stops_at_its_declared_size():
    peak = _peak_while_refused(
        deflate_bomb_zip(declared=1000), DEFAULT_LIMITS, "bundle.json", "damaged", "header declares"
    )
    assert peak < 8 * MiB


def test_bomb_stops_at_the_ratio_check():
    # the header declares 16 MiB (within the cap): the ratio on the bytes read refuses it after ~1 MiB
    peak = _peak_while_refused(deflate_bomb_zip(declared=16 * MiB), DEFAULT_LIMITS, "bundle.json", "1000:1")
    assert peak < 8 * MiB


def test_bomb_stops_at_the_running_cap():
    # no ratio limit, header at the cap: only the running cap stops it (1 GiB would be inflated otherwise)
    limits = BundleLimits(max_json_bytes=4 * MiB, max_ratio=10**9)
    peak = _peak_while_refused(deflate_bomb_zip(declared=4 * MiB), limits, "bundle.json", "more than 4 MiB", "limit")
    assert peak < 16 * MiB


def test_tensor_bomb_stops_at_the_tensor_cap():
    limits = BundleLimits(max_tensor_bytes=2 * MiB, max_ratio=10**9)
    bomb = deflate_bomb_zip(declared=2 * MiB, name="tensors.safetensors", before=bundle_entries()[:1])
    peak = _peak_while_refused(bomb, limits, "tensors.safetensors", "more than 2 MiB")
    assert peak < 12 * MiB
    refused(
        deflate_bomb_zip(declared=1 << 30, name="tensors.safetensors", before=bundle_entries()[:1]),
        "tensors.safetensors",
        "1 GiB",
        "limit of 64 MiB",
    )


def test_huge_json_is_capped():
    raw = json.dumps({**bundle_manifest(), "pad": "x" * 9000}).encode()
    refused(zip_with_json(raw), "bundle.json", "limit of 8.0 kB", limits=BundleLimits(max_json_bytes=8192))
    assert read_bundle(zip_with_json(raw), limits=BundleLimits(max_json_bytes=len(raw))).manifest["pad"]


def test_damaged_entry_data_is_refused():
    good = make_zip(bundle_entries())
    bad_crc = patch_zip_entry(good, 0, crc=12345)
    refused(bad_crc, "bundle.json", "damaged", "CRC")
    wrong_size = patch_zip_entry(good, 0, file_size=len(bundle_entries()[0][1]) + 5)
    refused(wrong_size, "bundle.json", "damaged")


# ----------------------------------------------------------------------------- entries


@pytest.mark.parametrize(
    ("name", "shown", "why"),
    [
        ("../evil", "'../evil'", "'..'"),
        ("/abs", "'/abs'", "absolute"),
        ("C:\\x", "'C:\\\\x'", "backslash"),
        ("C:x", "'C:x'", "drive letter"),
        ("a/../../b", "'a/../../b'", "'..'"),
        ("dir\\bundle.json", "'dir\\\\bundle.json'", "backslash"),
        ("bundle.json/", "'bundle.json/'", "unknown entry"),
        ("tab\tname", "'tab\\tname'", "control characters"),
    ],
)
def test_unsafe_or_unknown_entry_names(name, shown, why):
    msg = refused(make_zip([bundle_entries()[0], (name, b"x")]), shown, why)
    assert ("unsafe name" in msg) or ("unknown entry" in msg)


def test_nul_in_entry_name():
    data = patch_zip_entry(make_zip([("bundle.json?evil", b"{}")]), 0, name=b"bundle.json\0evil")
    refused(data, "unsafe name", "NUL", "'bundle.json\\x00evil'")


def test_unknown_duplicate_and_too_many_entries():
    entries = bundle_entries()
    refused(make_zip([entries[0], ("notes.txt", b"hi")]), "unknown entry", "'notes.txt'")
    refused(make_zip([entries[0], entries[0]]), "duplicate entry", "'bundle.json'")
    refused(make_zip([*entries, ("notes.txt", b"hi")]), "too many entries", "3", "at most 2")
    refused(make_zip([(f"f{i}", b"") for i in range(3000)], zipfile.ZIP_STORED), "too many entries", "3000")
    refused(make_zip(entries[1:]), "bundle.json", "missing")


def test_long_hostile_name_is_escaped_and_shortened():
    name = "\x1b[2J\u202e" + "A" * 60_000
    msg = refused(make_zip([bundle_entries()[0], (name, b"")]), "'\\x1b[2J\\u202e", "…")
    assert len(msg) < 200 and "\x1b" not in msg and "\u202e" not in msg


def test_symlink_and_special_entries():
    link = zipfile.ZipInfo("bundle.json")
    link.external_attr = 0o120777 << 16
    refused(make_zip([(link, b"/etc/passwd")]), "'bundle.json'", "symbolic link")
    fifo = zipfile.ZipInfo("bundle.json")
    fifo.external_attr = 0o010644 << 16
    refused(make_zip([(fifo, b"{}")]), "'bundle.json'", "not a regular file")


def test_encrypted_entry():
    refused(patch_zip_entry(make_zip(bundle_entries()), 1, flags_or=0x1), "'tensors.safetensors'", "encrypted")


def test_only_stored_and_deflate():
    refused(make_zip(bundle_entries(), method=zipfile.ZIP_LZMA), "compression method 14")
    stored = make_zip(bundle_entries(), method=zipfile.ZIP_STORED)
    assert read_bundle(stored).manifest == bundle_manifest()


def test_oversized_zip_directory_is_refused_before_parsing():
    # an end record claiming 2 entries but a 10 MB central directory
    data = bytearray(make_zip(bundle_entries()))
    eocd = data.rfind(b"PK\x05\x06")
    data[eocd + 12 : eocd + 16] = (10 * MiB).to_bytes(4, "little")
    refused(bytes(data), "zip directory", "too large")


# ----------------------------------------------------------------------------- bundle.json text


def test_json_text_problems():
    refused(zip_with_json('{"app": "Café"}'.encode("latin-1")), "bundle.json", "UTF-8")
    refused(zip_with_json(b"{'a': 1}"), "bundle.json", "not valid JSON", "line 1")
    refused(zip_with_json(b""), "bundle.json", "not valid JSON")
    refused(zip_with_json(b"[1, 2]"), "bundle.json", "JSON object", "a list")
    refused(zip_with_json(b'"text"'), "JSON object", "a string")
    refused(zip_with_json(b"1" * 5000), "bundle.json", "not valid JSON")  # above Python's int digit limit


def test_utf8_bom_is_accepted():
    raw = b"\xef\xbb\xbf" + bundle_entries()[0][1]
    assert read_bundle(zip_with_json(raw)).manifest == bundle_manifest()


@pytest.mark.parametrize(
    "raw",
    [b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 100_000 + b"0" + b"}" * 100_000, b"[" * 1_000_000],
    ids=["lists", "objects", "unclosed"],
)
def test_deep_nesting_never_reaches_the_parser(raw):
    refused(zip_with_json(raw), "bundle.json", "nested more than 32 levels")


def test_depth_limit_is_exact():
    def with_depth(depth: int) -> bytes:
        # root, objects, object, edits, edit = 5 levels; the edit's "data" adds the rest
        manifest = bundle_manifest()
        manifest["objects"][0]["edits"] = [{"op": "x", "data": json.loads("[" * (depth - 5) + "]" * (depth - 5))}]
        return write_bundle(manifest, bundle_tensors())

    assert read_bundle(with_depth(32)).manifest["objects"][0]["edits"][0]["op"] == "x"
    with pytest.raises(BundleError, match="nested more than 32"):
        with_depth(33)
    raw = json.dumps(bundle_manifest() | {"deep": json.loads("[" * 30 + "]" * 30)}).encode()  # 31 levels
    refused(zip_with_json(raw), "nested more than 8", limits=BundleLimits(max_depth=8))


def test_json_depth_counts_outside_strings_only():
    # brackets inside strings, escaped quotes and escaped backslashes do not count
    assert _json_depth(rb'["[[[", "\"[[", {"a": "\\"}, "\\\\\"{"]', 99) == 2
    assert _json_depth(b'{"a": [[1], {"b": []}]}', 99) == 4
    assert _json_depth(b"7", 99) == 0
    text = json.dumps({"k": ["[{" * 10, {"x": ['"[\\', [1]]}]}).encode()
    assert _json_depth(text, 99) == 5


def _random_json(rng: random.Random, level: int = 0):
    """A random JSON value with strings full of brackets, quotes and backslash runs."""
    kind = rng.randrange(5 if level < 6 else 2)
    if kind == 0:
        return "".join(rng.choice('[]{}"\\ab') for _ in range(rng.randrange(12)))
    if kind == 1:
        return rng.choice([1, -2.5, True, None])
    if kind in (2, 3):
        return [_random_json(rng, level + 1) for _ in range(rng.randrange(4))]
    return {_random_json(rng, 6) if rng.random() < 0.5 else "k": _random_json(rng, level + 1) for _ in range(3)}


def _reference_depth(value) -> int:
    if isinstance(value, list):
        return 1 + max((_reference_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_reference_depth(v) for v in value.values()), default=0)
    return 0


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1 << 20])
def test_json_depth_matches_the_parsed_depth_across_chunk_edges(monkeypatch, chunk):
    monkeypatch.setattr(bundle_io, "_DEPTH_CHUNK", chunk)
    rng = random.Random(chunk)
    for _ in range(50 if chunk < 4 else 200):  # one numpy pass per byte is slow: fewer documents there
        value = _random_json(rng)
        raw = json.dumps(value).encode()
        assert _json_depth(raw, 99) == _reference_depth(value), raw


@pytest.mark.parametrize("chunk", [8, 9, 64])
def test_rle_pixels_across_piece_edges(monkeypatch, chunk):
    monkeypatch.setattr(bundle_io, "_RLE_CHUNK", chunk)
    rng = np.random.default_rng(chunk)
    for _ in range(20):
        mask = rng.random((30, 40)) < rng.random()
        assert _rle_pixels(coco_rle(mask)["counts"]) == 1200


@pytest.mark.parametrize(
    ("literal", "shown"), [(b"NaN", "NaN"), (b"Infinity", "Infinity"), (b"-Infinity", "-Infinity"), (b"1e999", "1e999")]
)
def test_non_finite_numbers_are_refused(literal, shown):
    raw = bundle_entries()[0][1].replace(b'"threshold": 0.0', b'"threshold": ' + literal)
    refused(zip_with_json(raw), "bundle.json", shown)


def test_duplicate_keys_are_refused():
    raw = bundle_entries()[0][1].replace(b'"chosen": 2', b'"chosen": 2, "chosen": 0')
    refused(zip_with_json(raw), "duplicate key", "'chosen'")


# ----------------------------------------------------------------------------- format and version


@pytest.mark.parametrize(
    ("version", "words"),
    [
        (2, ("unsupported bundle version 2 (this app reads version 1)",)),
        ("1", ('unsupported bundle version "1"',)),
        (1.0, ("unsupported bundle version 1.0",)),
        (True, ("unsupported bundle version true",)),
        (None, ("unsupported bundle version null",)),
        (..., ("unsupported bundle version", "missing")),
    ],
)
def test_unsupported_versions(version, words):
    manifest = bundle_manifest()
    if version is ...:
        del manifest["version"]
    else:
        manifest["version"] = version
    refused(make_zip(bundle_entries(manifest)), *words)
    invalid(manifest, *words)


def test_wrong_or_missing_format():
    manifest = bundle_manifest()
    manifest["format"] = "coco"
    refused(make_zip(bundle_entries(manifest)), "not a SAM Studio bundle", 'format "coco"')
    del manifest["format"]
    invalid(manifest, "not a SAM Studio bundle", "no format")
    invalid([], "JSON object")


def test_version_is_checked_before_the_tensors():
    manifest = bundle_manifest()
    manifest["version"] = 2
    data = make_zip([bundle_entries(manifest)[0], ("tensors.safetensors", b"future format")])
    refused(data, "unsupported bundle version 2")


# ----------------------------------------------------------------------------- the schema


def _mutated(path: str, value):
    manifest = bundle_manifest()
    set_at(path, value)(manifest)
    return manifest


@pytest.mark.parametrize(
    ("path", "value", "words"),
    [
        ("created", 5, ("created:", "string")),
        ("app", ..., ("app:", "missing")),
        ("image", [], ("image:", "JSON object")),
        ("image.name", "n" * 256, ("image.name", "255")),
        ("image.key", "0123456789ABCDEF0123456789ABCDEF01234567", ("image.key", "lowercase hex")),
        ("image.key", "abc", ("image.key", "40")),
        ("image.width", True, ("image.width", "a boolean")),
        ("image.height", 10.0, ("image.height", "a number")),
        ("image.height", -3, ("image.height", "from 1")),
        ("image.width", 2**40, ("image.width", "2147483647")),
        ("model.type", "t" * 65, ("model.type", "64")),
        ("model.weights_id", None, ("model.weights_id", "null")),
        ("model.weights_sha256", "abc", ("model.weights_sha256", "64 lowercase hex")),
        ("model.weights_sha256", ..., ("model.weights_sha256", "missing")),
        ("settings", [], ("settings:", "JSON object")),
        ("settings.mode", {"a": 1}, ("settings.mode", "an object")),
        ("settings.mode", "s" * 1025, ("settings.mode", "1024")),
        ("categories.1", 7, ("categories[1]", "string")),
        ("categories.1", "c" * 201, ("categories[1]", "200")),
        ("objects.0", "cell", ("objects[0]:", "JSON object")),
        ("objects.0.id", 65536, ("objects[0].id", "65535")),
        ("objects.0.id", "1", ("objects[0].id", "a string")),
        ("objects.0.label", None, ("objects[0].label", "null")),
        ("objects.0.prompts", None, ("objects[0].prompts:", "JSON object")),
        ("objects.0.prompts.points", None, ("objects[0].prompts.points", "list")),
        ("objects.0.prompts.points.0", [1, 2], ("objects[0].prompts.points[0]", "[x, y, label]")),
        ("objects.0.prompts.points.0.1", None, ("objects[0].prompts.points[0]", "y must be a finite number")),
        ("objects.0.prompts.points.0.0", True, ("objects[0].prompts.points[0]", "x must be", "a boolean")),
        ("objects.0.prompts.points.0.2", True, ("objects[0].prompts.points[0]", "label must be 0", "true")),
        ("objects.0.prompts.points.0.2", 1.0, ("objects[0].prompts.points[0]", "label must be 0")),
        ("objects.0.prompts.box", {"x1": 1}, ("objects[0].prompts.box", "[x1, y1, x2, y2] or null")),
        ("objects.0.prompts.box.3", "40", ("objects[0].prompts.box", "y2 must be a finite number")),
        ("objects.0.prompts.box", ..., ("objects[0].prompts.box", "missing")),
        ("objects.0.multimask", None, ("objects[0].multimask", "true or false")),
        ("objects.0.chosen", -1, ("objects[0].chosen", "from 0 to 3")),
        ("objects.0.chosen", False, ("objects[0].chosen", "a boolean")),
        ("objects.0.scores.1", "0.5", ("objects[0].scores[1]", "finite number")),
        ("objects.0.threshold", None, ("objects[0].threshold", "finite number")),
        ("objects.0.min_hole", 1.5, ("objects[0].min_hole", "integer")),
        ("objects.0.mask_input", 7, ("objects[0].mask_input", "null or a string")),
        ("objects.0.edits", [{"op": "a"}] * 1001, ("objects[0].edits", "limit of 1000")),
        ("objects.0.edits.0", "brush", ("objects[0].edits[0]:", "JSON object")),
        ("objects.0.edits.0.op", 3, ("objects[0].edits[0].op", "string")),
        ("objects.0.rle", ..., ("objects[0].rle", "missing")),
        ("objects.0.rle.size", [BUNDLE_W, BUNDLE_H], ("objects[0].rle.size", f"[{BUNDLE_H}, {BUNDLE_W}]")),
        ("objects.0.rle.size", [BUNDLE_H, BUNDLE_W, 1], ("objects[0].rle.size", "limit of 2")),
        ("objects.0.rle.size.0", True, ("objects[0].rle.size[0]", "a boolean")),
        ("objects.0.rle.counts", [3072], ("objects[0].rle.counts", "a list")),
        ("objects.0.rle.counts", "", ("objects[0].rle.counts", "empty")),
        ("objects.0.rle.counts", "0é", ("objects[0].rle.counts", "'0' to 'o'")),
        ("objects.0.rle.counts", "0p", ("objects[0].rle.counts", "'0' to 'o'")),
        ("objects.0.rle.counts", "0`", ("objects[0].rle.counts", "middle of a number")),
        ("objects.0.rle.counts", "0" + "`" * 7 + "0", ("objects[0].rle.counts", "longer than pycocotools")),
        ("objects", [bundle_object(i + 1, None) for i in range(1001)], ("objects:", "limit of 1000")),
    ],
)
def test_schema_violations_name_the_json_path(path, value, words):
    invalid(_mutated(path, value), *words)


def test_first_message_is_the_documented_form():
    manifest = bundle_manifest()
    manifest["objects"] = [bundle_object(i + 1, None) for i in range(4)]
    manifest["objects"][3]["prompts"]["points"][0][0] = "left"
    msg = invalid(manifest)
    assert msg.startswith("objects[3].prompts.points[0]: x must be a finite number")


def test_python_values_that_json_cannot_hold():
    # validate_manifest also guards manifests built in memory (write_bundle, the replay code)
    invalid(_mutated("objects.0.threshold", float("nan")), "objects[0].threshold", "finite")
    invalid(_mutated("objects.0.scores.0", float("inf")), "objects[0].scores[0]", "finite")
    invalid(_mutated("objects.0.id", np.int64(3)), "objects[0].id", "integer")
    invalid(_mutated("objects.0.prompts.points.0", (1, 2, 1)), "objects[0].prompts.points[0]", "[x, y, label]")
    invalid(_mutated("objects.0.label", "bad \ud800"), "objects[0].label", "surrogate")
    invalid(_mutated("settings.mode", float("nan")), "settings.mode", "finite")


def test_duplicate_object_ids():
    manifest = bundle_manifest()
    manifest["objects"] = [bundle_object(7, None), bundle_object(8, None), bundle_object(7, None)]
    invalid(manifest, "objects[2].id", "duplicate id 7", "objects[0]")


def test_limits_at_their_edges_are_accepted():
    manifest = bundle_manifest()
    obj = manifest["objects"][0]
    obj["id"] = 65535
    obj["prompts"]["points"] = [[0.5, 1e-3, i % 2] for i in range(64)]
    obj["prompts"]["box"] = None
    obj["scores"] = [0.1, 0.2, 0.3, 0.4]
    obj["chosen"] = 3
    obj["edits"] = [{"op": "erase"}] * 1000
    manifest["settings"] = {f"k{i}": i for i in range(64)}
    manifest["categories"] = ["c" * 200] * 1000
    manifest["image"]["name"] = "n" * 255
    assert read_bundle(write_bundle(manifest, bundle_tensors())).manifest == manifest


# ----------------------------------------------------------------------------- RLE counts


@pytest.mark.parametrize(
    "counts",
    [[3072], [0, 3072], [1000, 72, 2000], [5, 3, 0, 7, 3057], [0, 1, 1, 1] + [1] * 3067 + [1], [3071, 1]],
)
def test_rle_pixels_of_hand_made_counts(counts):
    # pycocotools compresses an uncompressed (list) RLE; the check must sum the runs back
    compressed = coco_mask.frPyObjects({"size": [BUNDLE_H, BUNDLE_W], "counts": counts}, BUNDLE_H, BUNDLE_W)
    assert _rle_pixels(compressed["counts"].decode()) == sum(counts)


def test_rle_pixels_of_random_masks_and_big_images():
    rng = np.random.default_rng(0)
    for h, w, p in ((48, 64, 0.5), (300, 470, 0.02), (3000, 2500, 0.0), (1, 1, 1.0), (3, 2000, 0.3)):
        mask = rng.random((h, w)) < p
        if h == 3000:
            mask[100:2900, 7:2400] = True  # long runs: counts of several million, big negative differences
        assert _rle_pixels(coco_rle(mask)["counts"]) == h * w, (h, w)


def test_rle_counts_must_cover_the_image_exactly():
    manifest = bundle_manifest()
    short = coco_mask.frPyObjects({"size": [BUNDLE_H, BUNDLE_W], "counts": [100, 50]}, BUNDLE_H, BUNDLE_W)
    manifest["objects"][0]["rle"]["counts"] = short["counts"].decode()
    invalid(manifest, "objects[0].rle.counts", "covers 150 pixels", "3072")


def coco_string(values: list[int]) -> str:
    """COCO's compressed-RLE text of ``values`` taken as they are stored (no differencing here)."""
    out = []
    for x in values:
        more = True
        while more:
            c = x & 0x1F
            x >>= 5  # arithmetic shift, as in pycocotools' rleToString
            more = x != -1 if c & 0x10 else x != 0
            out.append(chr((c | 0x20 if more else c) + 48))
    return "".join(out)


def test_coco_string_helper_matches_pycocotools():
    counts = [7, 100, 3, 2000, 1, 0, 5]
    stored = counts[:3] + [counts[i] - counts[i - 2] for i in range(3, len(counts))]
    ref = coco_mask.frPyObjects({"size": [1, sum(counts)], "counts": counts}, 1, sum(counts))["counts"].decode()
    assert coco_string(stored) == ref


def test_rle_counts_wrap_like_pycocotools():
    # A hostile string: the 4th count is stored as 2**32 - 2 more than the 2nd (5), which
    # pycocotools keeps as uint32, i.e. 3. Runs: 0 zeros, 5 ones, 3 zeros, 3 ones = 11 pixels.
    text = coco_string([0, 5, 3, 2**32 - 2])
    assert _rle_pixels(text) == 11
    decoded = coco_mask.decode({"size": [1, 11], "counts": text.encode()})
    assert decoded.sum() == 8  # pycocotools reads the same runs
    manifest = bundle_manifest()
    manifest["objects"][0]["rle"]["counts"] = text
    invalid(manifest, "objects[0].rle.counts", "covers 11 pixels")
    # a negative difference that makes a count "negative" wraps to ~4 billion pixels
    assert _rle_pixels(coco_string([0, 5, 3, -10])) == 8 + ((-5) % 2**32)


def test_write_stores_an_entry_that_is_a_bomb_only_part_way():
    # 12 MiB of zeros, then 1 MiB of noise: 14:1 overall, but above 1000:1 after the first
    # megabytes, where the reader's running check looks. The writer must store that entry.
    tensors = {
        "a": np.zeros((48, 256, 256), np.float32),
        "b": np.random.default_rng(0).standard_normal((4, 256, 256)).astype(np.float32),
    }
    manifest = bundle_manifest()
    manifest["objects"][0]["mask_input"] = None
    refused(make_zip(bundle_entries(manifest, tensors), level=9), "tensors.safetensors", "1000:1")  # plain zipfile
    data = write_bundle(manifest, tensors)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.getinfo("tensors.safetensors").compress_type == zipfile.ZIP_STORED
    bundle = read_bundle(data)
    assert np.array_equal(bundle.tensors["b"], tensors["b"]) and not bundle.tensors["a"].any()


# ----------------------------------------------------------------------------- tensors


def test_mask_input_tensor_problems():
    invalid(bundle_manifest(), "objects[0].mask_input", "'m1'", "missing", "no tensors.safetensors", tensors={})
    invalid(
        bundle_manifest(), "objects[0].mask_input", "(1, 256, 256)", tensors={"m1": np.zeros((256, 256), np.float32)}
    )
    invalid(bundle_manifest(), "objects[0].mask_input", "float16", tensors={"m1": np.zeros((1, 256, 256), np.float16)})


def test_tensor_file_problems():
    manifest_entry = bundle_entries()[0]
    refused(make_zip([manifest_entry, ("tensors.safetensors", b"\x01\x02")]), "tensors.safetensors", "malformed")
    refused(
        make_zip([manifest_entry, ("tensors.safetensors", (99).to_bytes(8, "little") + b"{}")]),
        "tensors.safetensors",
        "malformed",
        "past the end",
    )
    refused(
        make_zip([manifest_entry, ("tensors.safetensors", (1 << 30).to_bytes(8, "little") + b"{}")]),
        "tensors.safetensors",
        "header",
        "limit of 1 MiB",
    )
    bad_offsets = b'{"m1":{"dtype":"F32","shape":[1,256,256],"data_offsets":[0,16]}}'
    refused(
        make_zip(
            [manifest_entry, ("tensors.safetensors", len(bad_offsets).to_bytes(8, "little") + bad_offsets + bytes(16))]
        ),
        "tensors.safetensors",
        "malformed",
    )
    f64 = safetensors.numpy.save({"m1": np.zeros((1, 256, 256), np.float64)})
    refused(make_zip([manifest_entry, ("tensors.safetensors", f64)]), "tensor 'm1'", "float64", "float32")
    nan = bundle_tensors()
    nan["m1"][0, 1, 2] = np.inf
    refused(make_zip(bundle_entries(tensors=nan)), "tensor 'm1'", "NaN or infinite")


def test_tensor_count_and_names_on_write():
    many = {f"t{i}": np.zeros(1, np.float32) for i in range(1001)}
    with pytest.raises(BundleError, match="1002 tensors"):
        write_bundle(bundle_manifest(), {**bundle_tensors(), **many})
    with pytest.raises(BundleError, match="tensor name"):
        write_bundle(bundle_manifest(), {**bundle_tensors(), "": np.zeros(1, np.float32)})


# ----------------------------------------------------------------------------- the corpus


def test_bad_bundles_corpus(tmp_path):
    cases = bad_bundles(tmp_path)
    assert len(cases) >= 60
    problems = []
    for case in cases:
        assert not case.extra  # every case is refused under the default limits
        limits = DEFAULT_LIMITS
        try:
            read_bundle(case.path, limits=limits)
        except BundleError as err:
            msg = str(err)
            missing = [w for w in case.expect_words if w.lower() not in msg.lower()]
            if missing:
                problems.append(f"{case.name}: {missing} not in {msg!r}")
            if not case.path.is_dir() and case.path.stat().st_size <= limits.max_file_bytes:
                try:  # the same refusal from the bytes
                    read_bundle(case.path.read_bytes(), limits=limits)
                    problems.append(f"{case.name}: accepted as bytes")
                except BundleError as err2:
                    if str(err2) not in msg:
                        problems.append(f"{case.name}: bytes gave {err2!s}")
        else:
            problems.append(f"{case.name}: accepted")
    assert not problems, "\n".join(problems)
