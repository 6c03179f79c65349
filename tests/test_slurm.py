"""The README's sbatch array template on a real one-node SLURM, against a local unsharded run.

The block is read from README.md (the fenced block after the ``slurm-array-template`` marker),
its variables are set for this machine (this Python, test-tiny, a temp study folder), and it is
run as written. Without SLURM this skips, or fails with ``SAM_REQUIRE_SLURM=1`` (``.ci/run``).
"""

from __future__ import annotations

import csv
import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image
from slurm import Cluster, slurm_cluster  # noqa: F401  (the session fixture)
from synth import photo_like

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- slurm-array-template"
VARIABLE = re.compile(r"^([A-Z_]+)=")
TIMING = re.compile(r"_ms$")
SHARDS = 3  # 4 images over 3 tasks: an uneven split (2, 1, 1)


def readme_template() -> tuple[list[str], list[str]]:
    """The README's array-job block: (variable names in order, the whole block's lines)."""
    text = (ROOT / "README.md").read_text()
    start = text.index(MARKER)
    block = re.search(r"```bash\n(.*?)```", text[start:], flags=re.S)
    assert block is not None and text[start:].index("```bash") < 200, "the marker must precede the block"
    lines = block.group(1).splitlines()
    names = []
    for line in lines:  # the variables: the block's leading NAME=value lines
        if not (m := VARIABLE.match(line)):
            break
        names.append(m.group(1))
    return names, lines


def fill(lines: list[str], values: dict[str, str]) -> str:
    """The block with its leading ``NAME=...`` lines replaced by ``NAME=<value>``; the rest as written."""
    head = [f"{name}={shlex.quote(values[name])}" for name in values]
    return "\n".join(head + lines[len(values) :]) + "\n"


def make_study(folder: Path) -> tuple[Path, Path]:
    """Four small images and a prompts file (box + a foreground point each)."""
    images = folder / "images"
    images.mkdir(parents=True)
    prompts = {}
    for i, (h, w) in enumerate([(96, 128), (120, 90), (80, 80), (110, 140)]):
        name = f"img{i}.png"
        Image.fromarray(photo_like(h, w, seed=30 + i)).save(images / name)
        prompts[name] = {"box": [8, 6, w - 10, h - 12], "points": [[w // 2, h // 2, 1]]}
    path = folder / "prompts.json"
    path.write_text(json.dumps(prompts))
    return images, path


def rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """results.csv without its timing columns: (header, rows)."""
    with path.open(newline="") as f:
        table = list(csv.reader(f))
    keep = [i for i, name in enumerate(table[0]) if not TIMING.search(name)]
    return [table[0][i] for i in keep], [[r[i] for i in keep] for r in table[1:]]


def test_readme_template_names_its_variables():
    names, lines = readme_template()
    assert names == ["PYTHON", "IMAGES", "PROMPTS", "MODEL", "OUT", "N", "RESOURCES"]
    body = "\n".join(lines)
    assert "--array=0-$((N-1))" in body and "--dependency=afterok:$ARRAY" in body
    assert r"--shard \$SLURM_ARRAY_TASK_ID/\$SLURM_ARRAY_TASK_COUNT" in body
    assert "-m sam_core.batch merge $OUT" in body


def test_readme_array_job_matches_a_local_run(slurm_cluster: Cluster, tmp_path):  # noqa: F811
    images, prompts = make_study(tmp_path / "data")
    local = tmp_path / "local"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "sam_core.batch",
            str(images),
            "--prompts",
            str(prompts),
            "--model",
            "test-tiny",
            "--out",
            str(local),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr

    names, lines = readme_template()
    values = {
        "PYTHON": sys.executable,
        "IMAGES": str(images),
        "PROMPTS": str(prompts),
        "MODEL": "test-tiny",
        "OUT": str(tmp_path / "study"),
        "N": str(SHARDS),
        "RESOURCES": "",
    }
    assert names == list(values)
    t0 = time.monotonic()
    submit = slurm_cluster.bash(fill(lines, values), cwd=tmp_path)
    assert submit.returncode == 0, submit.stderr
    m = re.search(r"array job (\d+), then merge job (\d+)", submit.stdout)
    assert m, submit.stdout
    states = slurm_cluster.wait([m.group(1), m.group(2)], timeout=600)
    elapsed = time.monotonic() - t0
    study = tmp_path / "study"
    logs = "\n".join(
        f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in sorted(study.glob("slurm-*.log"))
    )
    tasks = {f"{m.group(1)}_{i}" for i in range(SHARDS)}
    assert set(states) == tasks | {m.group(2)}, states
    assert all(s == ("COMPLETED", "0:0") for s in states.values()), f"{states}\n{logs}\n{slurm_cluster.logs()}"
    print(f"SLURM array ({SHARDS} tasks) + merge: {elapsed:.1f} s from sbatch to merged results")

    # every task did its own share, and the merged table equals the unsharded one
    assert sorted(p.name for p in (study / "shards").iterdir()) == [f"{i}-of-{SHARDS}" for i in range(SHARDS)]
    header, merged = rows(study / "results.csv")
    local_header, expected = rows(local / "results.csv")
    assert header == local_header and "score" in header and "area" in header
    assert len(merged) == 4 and merged == expected
    assert json.loads((study / "summary.json").read_text())["counts"]["rows"] == 4
