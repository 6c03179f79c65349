"""The study command line: ``python -m sam_core.batch`` (also ``sam-studio batch``).

::

    python -m sam_core.batch IMAGES... [--prompts F] [--reference DIR|COCO.json] [--prompt-from MODE]
        [--box-noise F] [--seed N] --model M [--checkpoint P] [--device D] --out DIR [--shard I/N]
        [--experiment none|box-scale|points|clicks] [--overlays] [--resume] [--batch-size N]
        [--embeddings DIR] [--clahe CLIP[xGRID]]
    python -m sam_core.batch merge DIR
    python -m sam_core.batch embed IMAGES... --model M --out EMB_DIR

A mistake the user can fix prints ``error: ...`` (no traceback) and exits with status 2.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see sam_core/cli.py: torch threads must not spin

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from sam_core.core.enhance import Clahe, parse_clahe
from sam_core.core.errors import UserError
from sam_core.core.evaluation import PROMPT_MODES
from sam_core.core.images import DEFAULT_MAX_PIXELS
from sam_core.model.options import add_weights_arguments, env
from sam_core.model.registry import MODEL_TYPES

__all__ = ["main", "parse_args"]

_EXPERIMENTS = ("none", "box-scale", "points", "clicks")  # experiments.EXPERIMENTS, without importing torch


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown, and the examples' line breaks kept."""


def _clahe_flag(text: str) -> Clahe | None:
    """``--clahe``'s value: :func:`parse_clahe`, its ``UserError`` as an argparse error (status 2)."""
    try:
        return parse_clahe(text)
    except UserError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _model_flags(p: argparse.ArgumentParser) -> None:
    model = env("SAM_MODEL")
    p.add_argument(
        "--model",
        choices=MODEL_TYPES,
        default=model,
        required=model is None,
        help="SAM variant; test-tiny has random weights (pipeline checks only) [env SAM_MODEL]",
    )
    add_weights_arguments(p)


def _run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sam_core.batch",
        description="Run SAM over a set of images: results.csv / results.md / summary.json / errors.csv in --out, "
        "with evaluation against reference masks and the box-scale, points and clicks experiments. "
        "Subcommands: 'merge DIR' joins the shards of a study; 'embed IMAGES... --out EMB_DIR' precomputes "
        "embeddings.",
        formatter_class=_Formatter,
        epilog="examples:\n"
        "  python -m sam_core.batch examples --prompts examples/presets.json --model vit_b --out study\n"
        "  python -m sam_core.batch 'data/*.jpg' --reference masks/ --experiment clicks --model vit_h \\\n"
        "      --out st --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT\n"
        "  python -m sam_core.batch merge st",
    )
    p.add_argument(
        "images",
        nargs="+",
        metavar="IMAGES",
        help="image files, folders, globs (quote them) or list files (.txt: one path per line)",
    )
    p.add_argument("--prompts", type=Path, help="JSON {image: {box, points}} or CSV image,x1,y1,x2,y2[,points]")
    p.add_argument("--reference", type=Path, help="folder of reference PNG masks (by file stem) or COCO instances JSON")
    p.add_argument(
        "--prompt-from",
        choices=PROMPT_MODES,
        default=None,
        help="with --reference and no --prompts: derive each object's prompt from its reference mask "
        "(default box; none for --experiment clicks, which then starts from no prompt)",
    )
    p.add_argument(
        "--box-noise",
        type=float,
        default=0.0,
        help="jitter derived boxes: each edge moves by N(0, F x the box side), seeded",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of --box-noise")
    _model_flags(p)
    p.add_argument("--out", type=Path, required=True, help="the study folder (outputs, parts, logs)")
    p.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="process images I, I+N, I+2N, ... of the sorted list; then 'merge DIR'",
    )
    p.add_argument(
        "--experiment",
        choices=_EXPERIMENTS,
        default="none",
        help="box-scale: box x 0.8..2.0; points: box then +1..3 simulated clicks; "
        "clicks: up to 20 simulated clicks, NoC@85/90 (points and clicks need --reference)",
    )
    p.add_argument(
        "--max-clicks", type=int, default=20, help="click budget of --experiment clicks (a miss counts as this many)"
    )
    p.add_argument("--overlays", action="store_true", help="write overlays/ (chosen mask, prompts, reference outline)")
    p.add_argument("--resume", action="store_true", help="skip the images a previous run of this --out finished")
    p.add_argument("--overwrite", action="store_true", help="discard a previous run's results in --out")
    p.add_argument("--batch-size", type=int, default=1, help="images per encoder pass (for GPUs)")
    p.add_argument(
        "--clahe",
        type=_clahe_flag,
        default=None,
        metavar="CLIP[xGRID]",
        help="contrast enhancement before the encoder: CLAHE on the L channel with this clip limit "
        "(e.g. 2, or 2x8 for clip 2 on an 8x8 grid); off by default",
    )
    p.add_argument(
        "--embeddings",
        type=Path,
        default=env("SAM_EMBEDDINGS_DIR"),
        help="read precomputed embeddings from this folder (see 'embed') [env SAM_EMBEDDINGS_DIR]",
    )
    p.add_argument(
        "--log-dir",
        type=Path,
        default=None,
        help="run log folder (default OUT/logs; OUT/shards/I-of-N/logs for a shard)",
    )
    p.add_argument("--no-log", action="store_true", help="do not write the run log")
    p.add_argument(
        "--max-pixels",
        type=float,
        default=float(DEFAULT_MAX_PIXELS),
        help="largest image accepted (W x H); larger ones become errors.csv rows",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Flags of a study run (``argv`` without the program name)."""
    return _run_parser().parse_args(argv)


def _segmenter(args: argparse.Namespace, embeddings: Path | None = None) -> Any:
    from sam_core.model.segmenter import Segmenter

    if embeddings is not None and not embeddings.expanduser().is_dir():
        raise UserError(
            f"--embeddings {embeddings}: no such folder (make one with: python -m sam_core.batch embed ...)"
        )
    return Segmenter.from_pretrained(
        args.model,
        args.checkpoint,
        args.device,
        args.precision,
        checkpoints_dir=args.checkpoints_dir,
        repo_id=args.hub_repo,
        sdpa=args.attention == "sdpa",
        embeddings=embeddings,
    )


def _run(argv: list[str]) -> int:
    from sam_core.batch.runner import StudyConfig, run_study
    from sam_core.batch.shards import parse_shard

    args = parse_args(argv)
    config = StudyConfig(
        images=tuple(args.images),
        out=args.out,
        prompts=args.prompts,
        reference=args.reference,
        prompt_from=args.prompt_from,
        box_noise=args.box_noise,
        seed=args.seed,
        experiment=args.experiment,
        overlays=args.overlays,
        resume=args.resume,
        overwrite=args.overwrite,
        shard=parse_shard(args.shard) if args.shard else (0, 1),
        batch_size=args.batch_size,
        max_clicks=args.max_clicks,
        log_dir=args.log_dir,
        run_log=not args.no_log,
        max_pixels=int(args.max_pixels),
        clahe=args.clahe,
        progress_bar=not args.quiet,
    )
    seg = _segmenter(args, args.embeddings)
    if seg.is_test_model:
        print("note: test-tiny has random weights: its masks and scores are meaningless", file=sys.stderr)
    result = run_study(config, segmenter=seg)
    _report(result.out, result.paths, result.summary)
    if config.shard[1] > 1:
        print(
            f"shard {config.shard[0]}/{config.shard[1]} done; when every shard has finished: "
            f"python -m sam_core.batch merge {config.out}"
        )
    return 0


def _report(out: Path, paths: dict[str, Path], summary: dict[str, Any]) -> None:
    c = summary["counts"]
    line = f"{c['images_processed']} images, {c['objects']} objects, {c['rows']} rows, {c['errors']} errors"
    if summary.get("miou") is not None:
        line += f"; mIoU {summary['miou']:.3f}"
    if "clicks" in summary:
        line += f"; NoC@85 {summary['clicks']['mean_noc85']:.2f}, NoC@90 {summary['clicks']['mean_noc90']:.2f}"
    print(line)
    print(f"wrote {', '.join(sorted(p.name for p in paths.values()))} in {out}")


def _merge(argv: list[str]) -> int:
    from sam_core.batch.shards import merge_study

    p = argparse.ArgumentParser(
        prog="python -m sam_core.batch merge",
        description="Join the shards of a study (--shard I/N runs) into DIR's outputs. "
        "Refuses while a shard is missing or unfinished; running it again rewrites the same files.",
    )
    p.add_argument("dir", type=Path, metavar="DIR", help="the --out folder the shards wrote to")
    args = p.parse_args(argv)
    merged = merge_study(args.dir)
    _report(args.dir, merged["paths"], merged["summary"])
    return 0


def _embed(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m sam_core.batch embed",
        description="Encode each image once and store its embedding (safetensors) in --out, "
        "keyed by model, weights and image pixels; 'demo.py --embeddings DIR' and "
        "'--embeddings DIR' of a study then skip the encoder.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("images", nargs="+", metavar="IMAGES", help="image files, folders, globs or list files")
    _model_flags(p)
    p.add_argument("--out", type=Path, required=True, help="the embedding folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    try:
        from sam_core.model.embeddings import embed_images
    except ImportError:  # pragma: no cover - only while the module is missing
        raise UserError("embed is not available: sam_core.model.embeddings is missing from this install") from None
    from sam_core.batch.inputs import collect_images

    images, problems = collect_images(args.images)
    for e in problems:
        print(f"warning: {e.image}: {e.reason}", file=sys.stderr)
    seg = _segmenter(args)
    summary = embed_images([img.path for img in images], seg, args.out, progress=not args.quiet)
    print(json.dumps({k: v for k, v in summary.items() if k != "files"}, separators=(",", ":")))
    return 0 if not summary.get("failed") else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (2 for a user's mistake, 130 when interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    command = {"merge": _merge, "embed": _embed}.get(argv[0] if argv else "", _run)
    try:
        return command(argv[1:] if command is not _run else argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command with --resume to continue", file=sys.stderr)
        return 130
