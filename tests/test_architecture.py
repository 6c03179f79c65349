"""The layers import one way, gradio lives in ui/ only, torch never in core/, and packaging stays in step."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "sam_core"

# What each layer may import from sam_core (itself included). Top-level modules count as entry points.
ALLOWED = {
    "core": {"core"},
    "model": {"core", "model"},
    "runlog": {"core", "runlog"},
    "monitor": {"core", "runlog", "monitor"},
    "app": {"core", "model", "runlog", "app"},
    "batch": {"core", "model", "runlog", "app", "batch"},
    "ui": {"core", "model", "runlog", "monitor", "app", "batch", "ui"},
}


def imports_of(path: Path) -> list[str]:
    """Every module ``path`` imports (absolute names; relative imports resolved), anywhere in the file."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                out.append(".".join([*base, node.module] if node.module else base))
            elif node.module:
                out.append(node.module)
    return out


def layer_of(path: Path) -> str | None:
    parts = path.relative_to(PKG).parts
    return parts[0] if len(parts) > 1 else None


SOURCES = sorted(PKG.rglob("*.py"))


def test_every_module_is_in_a_layer():
    assert {layer_of(p) for p in SOURCES} - {None} <= set(ALLOWED)
    top = sorted(p.name for p in SOURCES if layer_of(p) is None)
    assert top == ["__init__.py", "cli.py"], top  # the package facade and the entry point


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PKG)))
def test_imports_go_down_only(path):
    layer = layer_of(path)
    mods = imports_of(path)
    if layer is None:
        return
    used = {m.split(".")[1] for m in mods if m.startswith("sam_core.") and len(m.split(".")) > 1}
    assert used <= ALLOWED[layer], f"{path.name} ({layer}) imports {sorted(used - ALLOWED[layer])}"
    roots = {m.split(".")[0] for m in mods}
    if layer != "ui":
        assert "gradio" not in roots and "gradio_client" not in roots, f"{path} imports gradio outside ui/"
    if layer in ("core", "runlog", "monitor"):
        assert not roots & {"torch", "torchvision", "segment_anything"}, f"{path} imports torch"


def test_core_and_runlog_import_without_torch_or_gradio():
    code = ("import sys, sam_core, sam_core.core.images, sam_core.core.render, sam_core.core.geometry, "
            "sam_core.runlog; print(sorted(m for m in ('torch', 'gradio') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_no_sys_path_inserts_in_tests_or_benchmarks():
    offenders = [str(p.relative_to(ROOT)) for folder in ("tests", "benchmarks") for p in (ROOT / folder).rglob("*.py")
                 if re.search(r"sys\.path\.(insert|append)", p.read_text()) and p.name != Path(__file__).name]
    assert offenders == []


def test_requirements_match_pyproject():
    def names(lines):
        return sorted(re.sub(r"\s+", "", s).lower() for s in lines)

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    assert names(project["dependencies"]) == names(r for r in reqs if r)
    assert project["scripts"]["sam-studio"] == "sam_core.cli:main"


def test_sam_studio_command_has_the_demo_flags():
    exe = Path(sys.executable).parent / "sam-studio"
    assert exe.exists(), "pip install -r requirements-dev.txt installs the package and its sam-studio command"
    ours = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    demo = subprocess.run([sys.executable, str(ROOT / "demo.py"), "--help"], capture_output=True, text=True,
                          timeout=60)
    flags = sorted(set(re.findall(r"--[a-z][a-z-]+", demo.stdout)))
    assert ours.returncode == 0 and demo.returncode == 0 and len(flags) > 10
    assert sorted(set(re.findall(r"--[a-z][a-z-]+", ours.stdout))) == flags
