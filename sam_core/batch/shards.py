"""Where a study keeps its progress: one part file per finished image, per shard; and ``merge``.

Layout of a study folder ``DIR``::

    DIR/shards/<I>-of-<N>/run.json          the shard's configuration and the study's image list
    DIR/shards/<I>-of-<N>/parts/000012.json one file per finished image (its rows, errors, curves)
    DIR/shards/<I>-of-<N>/done.json         written when the shard has finished
    DIR/results.csv, results.md, summary.json, errors.csv, ...   assembled from all parts

An unsharded run is shard ``0-of-1``. Parts are written with ``write_atomic`` after the image is
complete, so a run killed at any moment (SIGKILL included) leaves whole parts only; ``--resume``
skips the images that have one, and the outputs are always assembled from the parts, in image
order, so a resumed or merged study writes the same rows as an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sam_core.batch.inputs import InputError
from sam_core.batch.outputs import write_outputs
from sam_core.core.errors import UserError
from sam_core.core.files import write_atomic

__all__ = ["ShardLayout", "merge_study", "parse_shard"]

_SHARD_DIR = re.compile(r"^(\d+)-of-(\d+)$")


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with ``0 <= I < N`` (SLURM: ``$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT``)."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not m:
        raise UserError(f"--shard must look like I/N (e.g. 0/4), got {text!r}")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 0 <= i < n:
        raise UserError(f"--shard {text}: I must be in 0..N-1 (array indices start at 0: sbatch --array=0-{n - 1})")
    return i, n


def _dump(data: Any) -> bytes:
    return (json.dumps(data, ensure_ascii=False, allow_nan=False, indent=1) + "\n").encode("utf-8")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ShardLayout:
    """The folder of shard ``index`` of ``count`` inside the study folder ``out``."""

    out: Path
    index: int = 0
    count: int = 1

    @property
    def dir(self) -> Path:
        return self.out / "shards" / f"{self.index}-of-{self.count}"

    @property
    def parts_dir(self) -> Path:
        return self.dir / "parts"

    @property
    def run_file(self) -> Path:
        return self.dir / "run.json"

    @property
    def done_file(self) -> Path:
        return self.dir / "done.json"

    @property
    def name(self) -> str:
        return f"{self.index}/{self.count}"

    def part_path(self, image_index: int) -> Path:
        return self.parts_dir / f"{image_index:06d}.json"

    # -------------------------------------------------------------- state

    def finished(self) -> dict[int, Path]:
        """Image index -> part file, for every complete part (temp files of a killed write are ignored)."""
        if not self.parts_dir.is_dir():
            return {}
        return {int(p.stem): p for p in self.parts_dir.glob("[0-9]*.json") if p.stem.isdigit()}

    def read_run(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self.run_file.read_text(encoding="utf-8"))
            return data
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as err:
            raise UserError(
                f"{self.run_file} is unreadable ({err}); remove the shard folder and run it again"
            ) from None

    def prepare(self, run: Mapping[str, Any], *, resume: bool, overwrite: bool) -> dict[int, Path]:
        """Make the shard folder ready for ``run`` (its description; ``run["fingerprint"]`` identifies
        the study's settings). Returns the parts already finished (kept only with ``resume``).

        Raises :class:`UserError` when the folder holds another study's parts, or finished parts
        and neither ``resume`` nor ``overwrite`` was given.
        """
        old = self.read_run()
        done = self.finished()
        if old is not None and done:
            if resume:
                if old.get("fingerprint") != run["fingerprint"]:
                    diff = sorted(
                        k
                        for k in set(old.get("settings", {})) | set(run["settings"])
                        if old.get("settings", {}).get(k) != run["settings"].get(k)
                    )
                    raise UserError(
                        f"{self.out} holds a study run with other settings ({', '.join(diff) or 'inputs'} differ): "
                        "resume it with the same command, or use another --out (or --overwrite)"
                    )
            elif not overwrite:
                raise UserError(
                    f"{self.out} already holds {len(done)} finished image(s) of shard {self.name}: add --resume to "
                    "continue that run, --overwrite to start again, or choose another --out"
                )
        if done and not resume:
            for p in done.values():
                p.unlink(missing_ok=True)
            done = {}
        if self.parts_dir.is_dir():  # leftovers of writes cut short by a kill
            for tmp in self.parts_dir.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)
        self.done_file.unlink(missing_ok=True)
        write_atomic(self.run_file, _dump({**run, "started": _now()}))
        return done

    def write_part(self, part: Mapping[str, Any]) -> Path:
        return write_atomic(self.part_path(int(part["index"])), _dump(part))

    def mark_done(self, images: int) -> None:
        write_atomic(self.done_file, _dump({"images": images, "finished": _now()}))


def read_part(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return data
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"part file {path} is unreadable ({err}); delete it and resume the run") from None


def part_errors(part: Mapping[str, Any]) -> list[InputError]:
    return [InputError(part["image"], obj, reason) for obj, reason in part.get("errors", [])]


def global_errors(run: Mapping[str, Any]) -> list[InputError]:
    return [InputError(*e) for e in run.get("global_errors", [])]


def assemble(
    out: Path,
    layouts: Sequence[ShardLayout],
    runs: Sequence[Mapping[str, Any]],
    *,
    complete: bool,
    dest: Path | None = None,
) -> dict[str, Any]:
    """Write the study's outputs into ``dest`` (default ``out``) from the parts of ``layouts``."""
    parts_by_index: dict[int, dict[str, Any]] = {}
    for layout in layouts:
        for index, path in layout.finished().items():
            parts_by_index[index] = read_part(path)
    parts = [parts_by_index[i] for i in sorted(parts_by_index)]
    errors = [e for run in runs[:1] for e in global_errors(run)] + [e for p in parts for e in part_errors(p)]
    meta = dict(runs[0]["meta"])
    meta["machines"] = sorted({m for run in runs for m in run["meta"].get("machines", [])})
    meta["torch"] = ", ".join(sorted({str(run["meta"].get("torch")) for run in runs}))
    if len(layouts) == 1 and layouts[0].count > 1:  # one shard's own view
        meta["images"] = len(runs[0]["shard_images"])
    return write_outputs(dest or out, parts, errors, meta, complete=complete)


def merge_study(out: str | os.PathLike[str]) -> dict[str, Any]:
    """Join the shards of the study in ``out`` and write its outputs there (idempotent).

    Refuses with a clear message when a shard is missing or unfinished, or when the shards
    come from different studies. Returns what :func:`write_outputs` returns.
    """
    root = Path(out)
    shard_root = root / "shards"
    found: dict[int, set[int]] = {}
    if shard_root.is_dir():
        for d in shard_root.iterdir():
            m = _SHARD_DIR.match(d.name)
            if m and d.is_dir():
                found.setdefault(int(m.group(2)), set()).add(int(m.group(1)))
    if not found:
        raise UserError(f"{root} holds no shards (shards/I-of-N folders): is it the --out folder of a study?")
    if len(found) > 1:
        raise UserError(
            f"{root} holds shards of different splits ({', '.join(f'N={n}' for n in sorted(found))}); "
            "remove the folders of the split you no longer want from shards/"
        )
    count = next(iter(found))
    missing = sorted(set(range(count)) - found[count])
    if missing:
        names = ", ".join(f"{i}/{count}" for i in missing)
        raise UserError(
            f"cannot merge {root}: shard{'s' if len(missing) > 1 else ''} {names} of {count} "
            f"{'are' if len(missing) > 1 else 'is'} missing (run them with --shard I/{count}, then merge again)"
        )
    layouts = [ShardLayout(root, i, count) for i in range(count)]
    runs = []
    for layout in layouts:
        run = layout.read_run()
        if run is None:
            raise UserError(f"cannot merge {root}: shard {layout.name} has no run.json (it never started)")
        if not layout.done_file.is_file():
            n_done, n_all = len(layout.finished()), len(run.get("shard_images", []))
            raise UserError(
                f"cannot merge {root}: shard {layout.name} has not finished ({n_done} of {n_all} images done); "
                "rerun it with --resume"
            )
        runs.append(run)
    prints = {run["fingerprint"] for run in runs}
    if len(prints) > 1:
        raise UserError(f"cannot merge {root}: the shards were run with different settings or inputs")
    return assemble(root, layouts, runs, complete=True)
