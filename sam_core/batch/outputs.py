"""The files of a study, written from its per-image parts: CSV, Markdown, JSON and plots.

Everything here is deterministic given the parts (rows in image-index order, then object, then
variant), so a resumed run, a merged set of shards and an uninterrupted run write the same
``results.csv`` except for the timing columns (:data:`TIMING_COLUMNS`). No torch: ``merge``
runs without loading a model. Every file goes through :func:`~sam_core.core.files.write_atomic`.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sam_core.batch.inputs import InputError
from sam_core.core.files import write_atomic

__all__ = [
    "BASE_COLUMNS",
    "REFERENCE_COLUMNS",
    "TIMING_COLUMNS",
    "columns_for",
    "describe_prompt",
    "format_value",
    "read_csv_rows",
    "summarize",
    "write_outputs",
]

#: Columns every ``results.csv`` starts with, in this order.
BASE_COLUMNS = (
    "image",
    "object",
    "variant",
    "width",
    "height",
    "prompt",
    "chosen_index",
    "score",
    "area",
    "area_fraction",
    "perimeter",
    "bbox_x1",
    "bbox_y1",
    "bbox_x2",
    "bbox_y2",
    "encode_ms",
    "decode_ms",
)
#: Added with reference masks: IoU, Dice and boundary F-measure of the chosen mask.
REFERENCE_COLUMNS = ("iou", "dice", "boundary_f")
#: Measured times: they differ from run to run, so comparisons of two runs leave them out.
TIMING_COLUMNS = ("encode_ms", "decode_ms")

_SIX = {"score", "area_fraction", "iou", "dice", "boundary_f", "iou_vs_unscaled", "iou_before", "delta_iou"}
_TWO = {"perimeter", "encode_ms", "decode_ms"}


def columns_for(experiment_columns: Sequence[str], *, reference: bool, category: bool, overlays: bool) -> list[str]:
    """The columns of ``results.csv``: the base ones, the reference metrics, the experiment's, then
    ``category`` (COCO references) and ``overlay`` (with ``--overlays``)."""
    cols = list(BASE_COLUMNS)
    if reference:
        cols += REFERENCE_COLUMNS
    cols += experiment_columns
    if category:
        cols.append("category")
    if overlays:
        cols.append("overlay")
    return cols


def format_value(column: str, value: Any) -> str:
    """The text of one CSV cell: fixed decimals per column (6 for scores and IoUs, 2 for px and ms)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if column in _SIX or column == "miou" or column.startswith("iou_at_"):
        return f"{float(value):.6f}"
    if column in _TWO:
        return f"{float(value):.2f}"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def describe_prompt(prompt: Mapping[str, Any] | str) -> str:
    """Short human form of a prompt: ``box 18,12,365,511; fg 90,380; bg 320,445`` (full-image px)."""
    data = json.loads(prompt) if isinstance(prompt, str) else prompt
    parts = []

    def num(v: float) -> str:
        return f"{float(v):.1f}".removesuffix(".0")

    if data.get("box"):
        parts.append("box " + ",".join(num(v) for v in data["box"]))
    if data.get("points"):
        parts += [("fg " if int(lab) == 1 else "bg ") + f"{num(x)},{num(y)}" for x, y, lab in data["points"]]
    return "; ".join(parts)


# --------------------------------------------------------------------------- CSV


def _csv_text(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for row in rows:
        w.writerow([format_value(c, row.get(c)) for c in columns])
    return buf.getvalue().encode("utf-8")


def read_csv_rows(path: str | Path, *, drop: Sequence[str] = ()) -> list[dict[str, str]]:
    """``results.csv`` read back as dicts of text, without the columns in ``drop`` (e.g. :data:`TIMING_COLUMNS`)."""
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: v for k, v in row.items() if k not in drop} for row in csv.DictReader(f)]


# --------------------------------------------------------------------------- summary


def _stats(values: Sequence[float], digits: int = 2) -> dict[str, float | int | None]:
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if arr.size == 0:
        return {"n": 0, "mean": None, "median": None, "p95": None}
    return {
        "n": int(arr.size),
        "mean": round(float(arr.mean()), digits),
        "median": round(float(np.median(arr)), digits),
        "p95": round(float(np.percentile(arr, 95)), digits),
    }


def _mean(values: Iterable[Any]) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return round(float(np.mean(vals)), 6) if vals else None


def summarize(
    parts: Sequence[Mapping[str, Any]],
    errors: Sequence[InputError],
    meta: Mapping[str, Any],
    *,
    complete: bool,
) -> dict[str, Any]:
    """``summary.json``: counts, timing statistics, mIoU per variant, click metrics, and the run's
    model, torch build, machines and boundary tolerance. ``meta``: the study's description."""
    rows = [r for p in parts for r in p["rows"]]
    reference = bool(meta.get("reference"))
    experiment = meta["experiment"]
    by_variant: dict[str, dict[str, Any]] = {}
    for variant in dict.fromkeys(r["variant"] for r in rows):
        vr = [r for r in rows if r["variant"] == variant]
        by_variant[variant] = {
            "rows": len(vr),
            "mean_score": _mean(r["score"] for r in vr),
            "mean_area_fraction": _mean(r["area_fraction"] for r in vr),
            "chosen_index": {str(k): v for k, v in sorted(Counter(r["chosen_index"] for r in vr).items())},
            **({"miou": _mean(r["iou"] for r in vr)} if reference else {}),
        }
    main = [r for r in rows if r.get("_primary")]  # one row per object: the plain / 1.0 / last-click variant
    sizes = {(r["width"], r["height"]) for r in rows}
    tolerances = sorted({max(1, math.ceil(meta["boundary_tolerance"] * math.hypot(w, h))) for w, h in sizes})
    failed = {p["image"] for p in parts if any(not obj for obj, _ in p.get("errors", []))}
    out: dict[str, Any] = {
        "complete": complete,
        "experiment": experiment,
        "counts": {
            "images": meta["images"],
            "images_processed": len(parts),
            "images_with_results": len({r["image"] for r in rows}),
            "images_failed": len(failed),
            "objects": len({(r["image"], r["object"]) for r in rows}),
            "rows": len(rows),
            "errors": len(errors),
        },
        "timings_ms": {
            "encode_per_image": _stats([p["encode_ms"] for p in parts if p.get("encode_ms") is not None]),
            "decode_per_row": _stats([r["decode_ms"] for r in rows]),
        },
        "score": _stats([r["score"] for r in rows], 6),
        "primary_variant": meta["primary_variant"],
        "miou": _mean(r["iou"] for r in main) if reference else None,
        "mean_dice": _mean(r["dice"] for r in main) if reference else None,
        "mean_boundary_f": _mean(r["boundary_f"] for r in main) if reference else None,
        "by_variant": by_variant,
        "boundary_tolerance": {
            "fraction_of_diagonal": meta["boundary_tolerance"],
            "rule": "ceil(fraction × image diagonal) px, at least 1 (DAVIS)",
            "px": tolerances,
        },
    }
    if experiment == "clicks":
        curves = [c for p in parts for c in p.get("curves", [])]
        if curves:
            ious = np.array([c["ious"] for c in curves], dtype=np.float64)
            out["clicks"] = {
                "objects": len(curves),
                "max_clicks": int(ious.shape[1]),
                "mean_noc85": round(float(np.mean([c["noc85"] for c in curves])), 4),
                "mean_noc90": round(float(np.mean([c["noc90"] for c in curves])), 4),
                "miou_at": {str(k + 1): round(float(v), 6) for k, v in enumerate(ious.mean(axis=0))},
            }
    out.update({k: meta[k] for k in ("model", "test_model", "torch", "machines", "inputs", "clahe") if k in meta})
    out["machine"] = "; ".join(meta.get("machines", []))
    if meta.get("test_model"):
        out["note"] = "test-tiny has random weights: these masks and scores are meaningless (pipeline check only)"
    out["columns_differing_between_runs"] = list(TIMING_COLUMNS)
    return out


# --------------------------------------------------------------------------- Markdown


def _md_cell(column: str, value: Any) -> str:
    if column == "prompt":
        return describe_prompt(value).replace("|", "\\|")
    if column == "area_fraction" and value is not None:
        return f"{100 * float(value):.2f}"
    if column == "score" and value is not None:
        return f"{float(value):.3f}"
    if column in ("iou", "dice", "boundary_f", "iou_vs_unscaled", "iou_before", "delta_iou") and value is not None:
        return f"{float(value):.3f}"
    if column in _TWO and value is not None:
        return f"{float(value):.1f}"
    return format_value(column, value).replace("|", "\\|")


_MD_HEAD = {
    "chosen_index": "idx",
    "area": "area (px)",
    "area_fraction": "area (%)",
    "perimeter": "perimeter (px)",
    "bbox": "bbox x1,y1,x2,y2 (px)",
    "encode_ms": "encode (ms)",
    "decode_ms": "decode (ms)",
    "iou": "IoU",
    "dice": "Dice",
    "boundary_f": "boundary F",
    "iou_vs_unscaled": "IoU vs 1.0 box",
    "iou_before": "IoU box alone",
    "delta_iou": "ΔIoU",
}


def _markdown(columns: Sequence[str], rows: Sequence[Mapping[str, Any]], summary: Mapping[str, Any]) -> str:
    shown = [c for c in columns if c not in ("width", "height", "overlay") and not c.startswith("bbox_")]
    shown.insert(shown.index("perimeter") + 1, "bbox")
    lines = [f"# SAM study: experiment `{summary['experiment']}`", ""]
    model = summary.get("model") or {}
    lines.append(
        f"Model `{model.get('model')}` ({model.get('device')}, {model.get('precision')}), torch {summary.get('torch')}."
    )
    if summary.get("clahe"):
        lines.append(
            f"Encoder input contrast-enhanced with `{summary['clahe']}` (CLAHE on the L channel: clip limit x tile "
            "grid); masks and metrics refer to the original image."
        )
    if summary.get("note"):
        lines += ["", f"> **{summary['note']}.**"]
    c = summary["counts"]
    lines += [
        "",
        f"{c['images']} images, {c['objects']} objects, {c['rows']} rows, {c['errors']} errors (see `errors.csv`)."
        + ("" if summary["complete"] else " **Incomplete run.**"),
    ]
    t = summary["timings_ms"]
    lines.append(
        f"Encode per image: median {t['encode_per_image']['median']} ms; decode per row: median "
        f"{t['decode_per_row']['median']} ms."
    )
    if summary.get("miou") is not None:
        tol = summary["boundary_tolerance"]
        lines.append(
            f"mIoU {summary['miou']:.3f}, mean Dice {summary['mean_dice']:.3f}, mean boundary F "
            f"{summary['mean_boundary_f']:.3f} (one row per object: {summary['primary_variant']}; boundary tolerance "
            f"{tol['fraction_of_diagonal']} of the diagonal = {', '.join(map(str, tol['px']))} px)."
        )
    lines += ["", "| " + " | ".join(_MD_HEAD.get(col, col) for col in shown) + " |"]
    lines.append(
        "|"
        + "|".join("---" if col in ("image", "object", "variant", "prompt", "category") else "--:" for col in shown)
        + "|"
    )
    for row in rows:
        cells = []
        for col in shown:
            if col == "bbox":
                box = [row.get(f"bbox_{k}") for k in ("x1", "y1", "x2", "y2")]
                cells.append("—" if box[0] is None else ",".join(str(v) for v in box))
            else:
                cells.append(_md_cell(col, row.get(col)))
        lines.append("| " + " | ".join(cells) + " |")
    by_variant = summary["by_variant"]
    if len(by_variant) > 1:
        ref = summary.get("miou") is not None
        lines += ["", "## Per variant (means over objects)", ""]
        lines.append("| variant | rows | mean score | mean area (%) |" + (" mIoU |" if ref else ""))
        lines.append("|---|--:|--:|--:|" + ("--:|" if ref else ""))
        for name, v in by_variant.items():
            area = "" if v["mean_area_fraction"] is None else f"{100 * v['mean_area_fraction']:.2f}"
            score = "" if v["mean_score"] is None else f"{v['mean_score']:.3f}"
            miou = "" if v.get("miou") is None else f" {v['miou']:.3f} |"
            lines.append(f"| {name} | {v['rows']} | {score} | {area} |" + (miou if ref else ""))
    if "clicks" in summary:
        ck = summary["clicks"]
        lines += [
            "",
            f"## Clicks: NoC@85 {ck['mean_noc85']:.2f}, NoC@90 {ck['mean_noc90']:.2f} "
            f"(mean over {ck['objects']} objects, at most {ck['max_clicks']} clicks)",
            "",
            "| clicks | " + " | ".join(ck["miou_at"]) + " |",
            "|---|" + "--:|" * len(ck["miou_at"]),
            "| mIoU | " + " | ".join(f"{v:.3f}" for v in ck["miou_at"].values()) + " |",
        ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- all files


def write_outputs(
    out: Path,
    parts: Sequence[Mapping[str, Any]],
    errors: Sequence[InputError],
    meta: Mapping[str, Any],
    *,
    complete: bool,
) -> dict[str, Any]:
    """Write ``results.csv``, ``results.md``, ``summary.json``, ``errors.csv`` (and ``noc.csv``,
    ``miou_vs_clicks.csv`` and the plots) into ``out``. ``parts`` sorted by image index.

    Returns ``{"paths": {name: Path}, "rows": [...], "errors": [...], "summary": {...}}``.
    """
    from sam_core.batch import plots

    columns = list(meta["columns"])
    rows = [r for p in parts for r in p["rows"]]
    errs = sorted(set(errors), key=InputError.sort_key)
    summary = summarize(parts, errs, meta, complete=complete)
    paths: dict[str, Path] = {}
    paths["results_csv"] = write_atomic(out / "results.csv", _csv_text(columns, rows))
    paths["results_md"] = write_atomic(out / "results.md", _markdown(columns, rows, summary).encode("utf-8"))
    paths["errors_csv"] = write_atomic(
        out / "errors.csv", _csv_text(("image", "object", "reason"), (vars(e) for e in errs))
    )
    experiment = meta["experiment"]
    if experiment == "clicks":
        curves = [c for p in parts for c in p.get("curves", [])]
        n = max((len(c["ious"]) for c in curves), default=0)
        iou_cols = [f"iou_at_{k}" for k in range(1, n + 1)]
        noc_rows = [
            {"image": c["image"], "object": c["object"], "noc85": c["noc85"], "noc90": c["noc90"]}
            | dict(zip(iou_cols, c["ious"], strict=True))
            for c in curves
        ]
        paths["noc_csv"] = write_atomic(
            out / "noc.csv", _csv_text(["image", "object", "noc85", "noc90", *iou_cols], noc_rows)
        )
        miou = summary.get("clicks", {}).get("miou_at", {})
        paths["miou_vs_clicks_csv"] = write_atomic(
            out / "miou_vs_clicks.csv",
            _csv_text(
                ["clicks", "miou", "objects"],
                ({"clicks": k, "miou": v, "objects": len(curves)} for k, v in miou.items()),
            ),
        )
        if curves:
            paths["iou_vs_clicks_png"] = write_atomic(out / "iou_vs_clicks.png", plots.iou_vs_clicks(curves, summary))
    if experiment == "box-scale" and rows:
        paths["box_scale_png"] = write_atomic(out / "box_scale.png", plots.box_scale(rows, summary))
    paths["summary_json"] = write_atomic(
        out / "summary.json",
        (json.dumps(summary, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8"),
    )
    if meta.get("overlays"):
        paths["overlays"] = out / "overlays"
    return {"paths": paths, "rows": rows, "errors": errs, "summary": summary}
