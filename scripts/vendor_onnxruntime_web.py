#!/usr/bin/env python3
"""Vendor onnxruntime-web's WASM backend into sam_core/ui/static/ort/, or check the vendored copy.

    python scripts/vendor_onnxruntime_web.py                 # npm pack onnxruntime-web@1.30.0, copy, manifest
    python scripts/vendor_onnxruntime_web.py --version 1.31.0
    python scripts/vendor_onnxruntime_web.py --check         # offline: files == manifest (names, sizes, sha256)

Only the files that the WASM execution provider loads are kept (with and without threads); the
package (145 MB unpacked) also holds WebGPU/WebGL/JSPI builds that the app does not use.
``npm pack`` goes through npm's configured registry and checks the tarball's integrity; this
script checks it once more against the sha512 that ``npm pack --json`` reports.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DIR = ROOT / "sam_core" / "ui" / "static" / "ort"
PACKAGE = "onnxruntime-web"
DEFAULT_VERSION = "1.30.0"
MANIFEST = "manifest.json"
README = "README.md"
NOT_IN_MANIFEST = {MANIFEST, README}  # the manifest itself and the generated README

# dist/ file -> why the app needs it. Checked by grepping (ort.wasm.min.mjs names only
# ort-wasm-simd-threaded.mjs, which names only ort-wasm-simd-threaded.wasm) and by watching Chromium's
# requests with and without threads (tests/browser/test_cross_origin.py).
FILES = {
    "ort.wasm.min.mjs": "ES-module entry point of the WASM-only build: the page imports it "
    "(InferenceSession, Tensor, env); with env.wasm.proxy it is also the proxy worker's script.",
    "ort-wasm-simd-threaded.mjs": "Emscripten glue that ort.wasm.min.mjs imports from env.wasm.wasmPaths; "
    "with numThreads > 1 each pthread worker runs this same file.",
    "ort-wasm-simd-threaded.wasm": "The runtime (SIMD + pthreads build). It is the only WASM binary of the "
    "WASM backend: it runs single-threaded too when the page is not cross-origin isolated.",
}
LICENSE_WHY = "onnxruntime's MIT licence, which must travel with the copied files."

# The npm tarball has no LICENSE file (package.json says "MIT" and README.md links to the repository),
# so this is github.com/microsoft/onnxruntime/blob/main/LICENSE verbatim.
ONNXRUNTIME_LICENSE = """MIT License

Copyright (c) 2018 - present Microsoft Corporation

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""

README_TEXT = """# onnxruntime-web {version} (vendored)

The WASM backend of [onnxruntime-web](https://www.npmjs.com/package/onnxruntime-web) {version}
(MIT, see `LICENSE`), for the in-browser mask decoder. Do not edit these files: regenerate them with

    python scripts/vendor_onnxruntime_web.py --version {version}

and check them (offline: names, sizes, sha256 against `manifest.json`, which also records the npm
tarball's integrity) with

    python scripts/vendor_onnxruntime_web.py --check

`sam_core.ui.web_assets.register_static()` serves this folder at `gradio_api/file=<absolute path>`;
the page does `import(<url of ort.wasm.min.mjs>)` and sets `ort.env.wasm.wasmPaths` to the folder's URL.
Threads (`ort.env.wasm.numThreads > 1`) need a cross-origin isolated page: `--cross-origin-isolation on`.
Only the files the WASM backend loads are kept; the WebGPU (`jsep`), `asyncify` and `jspi` builds are not.
The WASM binary statically links third-party code; its notices are in onnxruntime's
[ThirdPartyNotices.txt](https://github.com/microsoft/onnxruntime/blob/v{version}/ThirdPartyNotices.txt).
"""


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def npm_pack(spec: str, workdir: Path) -> dict:
    """``npm pack <spec> --json`` in ``workdir``; returns npm's record of the tarball."""
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("error: npm is not installed (it fetches the package from the configured registry)")
    out = subprocess.run([npm, "pack", spec, "--json"], cwd=workdir, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"error: npm pack {spec} failed:\n{out.stderr.strip()}")
    records = json.loads(out.stdout)
    return records[0] if isinstance(records, list) else records


def check_integrity(tarball: Path, integrity: str) -> None:
    algo, _, digest = integrity.partition("-")
    if algo not in ("sha512", "sha384", "sha256", "sha1"):
        raise SystemExit(f"error: unknown integrity {integrity!r}")
    actual = base64.b64encode(hashlib.new(algo, tarball.read_bytes()).digest()).decode()
    if actual != digest:
        raise SystemExit(f"error: {tarball.name}: {algo} {actual} does not match npm's integrity {digest}")


def vendor(version: str, dest: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="ort-vendor-") as tmp:
        work = Path(tmp)
        rec = npm_pack(f"{PACKAGE}@{version}", work)
        tarball = work / rec["filename"]
        check_integrity(tarball, rec["integrity"])
        wanted = {f"package/dist/{name}": name for name in FILES}
        wanted |= {"package/LICENSE": "LICENSE", "package/package.json": "package.json"}
        extracted = work / "x"
        extracted.mkdir()
        with tarfile.open(tarball, "r:gz") as tar:
            for member in tar.getmembers():
                if member.name in wanted and member.isfile():
                    src = tar.extractfile(member)
                    assert src is not None
                    (extracted / wanted[member.name]).write_bytes(src.read())
        pkg = json.loads((extracted / "package.json").read_text())
        if pkg.get("name") != PACKAGE or pkg.get("version") != version:
            raise SystemExit(f"error: the tarball is {pkg.get('name')}@{pkg.get('version')}, not {PACKAGE}@{version}")
        if pkg.get("license") != "MIT":
            raise SystemExit(f"error: {PACKAGE}@{version} declares licence {pkg.get('license')!r}, not MIT: review it")
        missing = [name for name in FILES if not (extracted / name).is_file()]
        if missing:
            raise SystemExit(f"error: {PACKAGE}@{version} has no dist/{', dist/'.join(missing)}")
        licence_from = "package/LICENSE"
        if not (extracted / "LICENSE").is_file():
            (extracted / "LICENSE").write_text(ONNXRUNTIME_LICENSE)
            licence_from = "github.com/microsoft/onnxruntime LICENSE (the npm tarball has none)"

        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        entries = []
        for name, why in [*FILES.items(), ("LICENSE", LICENSE_WHY)]:
            shutil.copyfile(extracted / name, dest / name)
            entries.append(
                {"name": name, "bytes": (dest / name).stat().st_size, "sha256": sha256_of(dest / name), "why": why}
            )
        manifest = {
            "package": PACKAGE,
            "version": pkg["version"],
            "license": "MIT",
            "license_file_from": licence_from,
            "npm": {
                "tarball": rec["filename"],
                "integrity": rec["integrity"],
                "shasum": rec["shasum"],
                "size": rec.get("size"),
                "unpacked_size": rec.get("unpackedSize"),
            },
            "vendored_on": dt.date.today().isoformat(),
            "command": f"python scripts/vendor_onnxruntime_web.py --version {version}",
            "files": entries,
        }
        (dest / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        (dest / README).write_text(README_TEXT.format(version=pkg["version"]))
        return manifest


def check(dest: Path) -> list[str]:
    """Problems of the vendored folder against its manifest (empty: all good). Offline."""
    mpath = dest / MANIFEST
    if not mpath.is_file():
        return [f"{mpath}: missing (run python scripts/vendor_onnxruntime_web.py)"]
    try:
        manifest = json.loads(mpath.read_text())
        files = {e["name"]: e for e in manifest["files"]}
    except (ValueError, KeyError, TypeError) as err:
        return [f"{mpath}: unreadable ({err})"]
    problems = []
    present = {p.name for p in dest.iterdir()} - NOT_IN_MANIFEST
    for extra in sorted(present - set(files)):
        problems.append(f"{extra}: present but not in the manifest")
    for name, entry in files.items():
        path = dest / name
        if not path.is_file():
            problems.append(f"{name}: missing")
            continue
        size = path.stat().st_size
        if size != entry.get("bytes"):
            problems.append(f"{name}: {size} bytes, the manifest says {entry.get('bytes')}")
        digest = sha256_of(path)
        if digest != entry.get("sha256"):
            problems.append(f"{name}: sha256 {digest}, the manifest says {entry.get('sha256')}")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--version", default=DEFAULT_VERSION, help="onnxruntime-web version to vendor")
    p.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="the vendored folder")
    p.add_argument("--check", action="store_true", help="verify the folder against manifest.json (offline) and exit")
    args = p.parse_args(argv)
    if args.check:
        problems = check(args.dir)
        if problems:
            print(f"{args.dir}: the vendored onnxruntime-web does not match its manifest:", file=sys.stderr)
            for line in problems:
                print(f"  {line}", file=sys.stderr)
            print("Regenerate it with: python scripts/vendor_onnxruntime_web.py", file=sys.stderr)
            return 1
        manifest = json.loads((args.dir / MANIFEST).read_text())
        print(f"ok: {manifest['package']} {manifest['version']}, {len(manifest['files'])} files match {MANIFEST}")
        return 0
    manifest = vendor(args.version, args.dir)
    total = sum(e["bytes"] for e in manifest["files"])
    print(f"vendored {PACKAGE} {manifest['version']} into {args.dir}: {len(manifest['files'])} files, {total} bytes")
    for e in manifest["files"]:
        print(f"  {e['name']:32} {e['bytes']:>10}  sha256 {e['sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
