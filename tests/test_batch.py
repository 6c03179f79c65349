"""Studies (``sam_core.batch``): inputs, references, errors, equality with SamPredictor, SIGKILL + resume,
shards + merge, and each experiment's outputs. test-tiny (random weights, real decoder) on tiny images."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from batch_data import H, W, make_study_data
from PIL import Image
from segment_anything import SamPredictor
from synth import photo_like

from sam_core.batch.cli import main as batch_main
from sam_core.batch.experiments import BOX_SCALES, MAX_CLICKS
from sam_core.batch.inputs import collect_images, load_prompt_file, open_references
from sam_core.batch.outputs import TIMING_COLUMNS, read_csv_rows
from sam_core.batch.runner import StudyConfig, run_study
from sam_core.batch.shards import merge_study
from sam_core.core.errors import UserError
from sam_core.core.evaluation import boundary_f, dice, interior_point, iou, next_click, noc
from sam_core.core.geometry import mask_metrics
from sam_core.core.images import load_image
from sam_core.core.prompts import Prompts
from sam_core.runlog import RunLog

ROOT = Path(__file__).resolve().parents[1]
CLICKS = 6  # the clicks experiment's budget here (20 by default): each click is one decoder run


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_study_data(tmp_path_factory.mktemp("study-data"))


def config(data, out: Path, **kw) -> StudyConfig:
    kw.setdefault("images", (str(data.img),))
    kw.setdefault("prompts", data.prompts_json)  # prompts=None: derived from the reference
    return StudyConfig(out=out, **kw)


def keyed(rows):
    return {(r["image"], r["object"], r["variant"]): r for r in rows}


def png_ok(path: Path) -> None:
    """A real, non-trivial plot: a PNG of some size whose pixels are not all the same."""
    assert path.is_file() and path.stat().st_size > 20_000, path
    arr = np.asarray(Image.open(path).convert("L"))
    assert arr.shape[0] > 300 and arr.shape[1] > 500 and arr.std() > 10


# --------------------------------------------------------------------------- inputs


def test_images_from_folder_glob_and_list_file(data):
    folder, errs = collect_images([data.img])
    assert [i.name for i in folder] == ["a.png", "b.png", "c.jpg"] and errs == []
    assert [i.index for i in folder] == [0, 1, 2]
    glob_, _ = collect_images([str(data.img / "*.png")])
    assert [i.name for i in glob_] == ["a.png", "b.png"]
    listed, _ = collect_images([data.list_file])
    assert [(i.name, i.path.resolve()) for i in listed] == [(i.name, i.path.resolve()) for i in folder]
    # the same file reached three ways is kept once; a pattern matching nothing is an error row
    both, errs = collect_images([data.img, data.img / "a.png", data.list_file, str(data.root / "nothing*.png")])
    assert [i.name for i in both] == ["a.png", "b.png", "c.jpg"]
    assert [(e.object, e.reason) for e in errs] == [("", "no image file matches this pattern")]
    with pytest.raises(UserError, match="no images found"):
        collect_images([str(data.root / "none-*.png")])


def test_json_and_csv_prompts_agree(data):
    js, cs = load_prompt_file(data.prompts_json), load_prompt_file(data.prompts_csv)
    assert sorted(js) == sorted(cs) == ["a.png", "b.png", "c.jpg"]
    for name in js:
        assert [(o.id, o.prompts) for o in js[name]] == [(o.id, o.prompts) for o in cs[name]]
    assert [o.id for o in js["b.png"]] == ["1", "2"]  # position, or the "id" the file gives
    assert js["b.png"][0].prompts == Prompts(((40.0, 50.0, 1),), (20.0, 30.0, 60.0, 70.0))
    presets = load_prompt_file(ROOT / "examples" / "presets.json")  # the list form with "file" keys
    assert presets["coffee.png"][0].prompts.points == ((290.0, 230.0, 1), (290.0, 45.0, 1))
    assert presets["astronaut.png"][0].prompts.box == (18.0, 12.0, 365.0, 511.0)


def test_bad_prompt_entries_are_kept_as_errors(tmp_path):
    p = tmp_path / "p.csv"
    p.write_text('image,x1,y1,x2,y2,points\nx.png,10,10,5,20,\nx.png,1,2,30,40,"[[1,2"\ny.png,1,1,9,9,\n')
    specs = load_prompt_file(p)
    assert [s.error is not None for s in specs["x.png"]] == [True, True]
    assert "no area" in specs["x.png"][0].error and "line 2" in specs["x.png"][0].error
    assert "not JSON" in specs["x.png"][1].error
    assert specs["y.png"][0].prompts.box == (1.0, 1.0, 9.0, 9.0)
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(UserError, match="not valid JSON"):
        load_prompt_file(tmp_path / "bad.json")


def test_png_references_binary_label_map_and_rgb(data):
    refs = open_references(data.refs)
    a = refs.objects("a.png", load_image(data.img / "a.png").size)
    assert [o.id for o in a] == ["1"] and np.array_equal(a[0].mask, data.masks[("a.png", "1")])
    b = refs.objects("b.png", load_image(data.img / "b.png").size)  # a label map: one object per id
    assert [o.id for o in b] == ["1", "2"]
    assert all(np.array_equal(o.mask, data.masks[("b.png", o.id)]) for o in b)
    c = refs.objects("c.jpg", load_image(data.img / "c.jpg").size)  # matched by stem; RGB = binary
    assert [o.id for o in c] == ["1"] and np.array_equal(c[0].mask, data.masks[("c.jpg", "1")])


def test_coco_references_polygons_rle_and_categories(data):
    refs = open_references(data.coco)
    a = refs.objects("a.png", load_image(data.img / "a.png").size)  # matched by the base name of file_name
    assert [(o.id, o.category) for o in a] == [("11", "block")]
    assert iou(a[0].mask, data.masks[("a.png", "11")]) > 0.95
    b = refs.objects("b.png", load_image(data.img / "b.png").size)  # the crowd annotation 23 is skipped
    assert [(o.id, o.category) for o in b] == [("21", "disc"), ("22", "block")]
    assert np.array_equal(b[0].mask, data.masks[("b.png", "21")])  # compressed RLE
    assert np.array_equal(b[1].mask, data.masks[("b.png", "22")])  # uncompressed RLE


# --------------------------------------------------------------------------- SAM equality, run log


def test_rows_equal_sam_predictor_and_each_image_is_encoded_once(data, tiny_segmenter, tmp_path):
    seg = tiny_segmenter
    seg.clear_cache()
    runs = seg.encoder_runs
    result = run_study(config(data, tmp_path / "st", reference=data.refs), segmenter=seg)
    assert seg.encoder_runs - runs == 3  # 3 images, 4 objects: one encoder run per image
    assert result.complete and result.errors == []
    assert [(r["image"], r["object"]) for r in result.rows] == [
        ("a.png", "1"), ("b.png", "1"), ("b.png", "2"), ("c.jpg", "1")
    ]
    predictor = SamPredictor(seg.model)
    specs = load_prompt_file(data.prompts_json)
    for name in ("a.png", "b.png", "c.jpg"):
        predictor.set_image(np.array(load_image(data.img / name).rgb))
        for row in (r for r in result.rows if r["image"] == name):
            p = next(s.prompts for s in specs[name] if s.id == row["object"])
            assert json.loads(row["prompt"]) == p.to_dict()
            masks, scores, _ = predictor.predict(
                point_coords=np.array([q[:2] for q in p.points], np.float32) if p.points else None,
                point_labels=np.array([q[2] for q in p.points]) if p.points else None,
                box=None if p.box is None else np.array(p.box, np.float32),
                multimask_output=True,
            )
            best = int(np.argmax(scores))
            m = mask_metrics(masks[best])
            assert row["chosen_index"] == best
            assert row["score"] == float(scores[best])  # equal, not close
            assert row["area"] == int(masks[best].sum()) == m["area"]
            assert row["perimeter"] == m["perimeter"] and row["area_fraction"] == m["area_fraction"]
            assert [row[f"bbox_{k}"] for k in ("x1", "y1", "x2", "y2")] == m["bbox"]
            ref = data.masks[(name, row["object"])]
            assert row["iou"] == iou(masks[best], ref) and row["dice"] == dice(masks[best], ref)
            assert row["boundary_f"] == boundary_f(masks[best], ref)
    # the CSV holds the same rows, rounded; every row also went to the run log
    csv_rows = read_csv_rows(result.paths["results_csv"])
    assert [float(r["score"]) for r in csv_rows] == pytest.approx([r["score"] for r in result.rows], abs=5e-7)
    assert [int(r["area"]) for r in csv_rows] == [r["area"] for r in result.rows]
    with RunLog(result.log_dir) as runlog:
        records = runlog.records()
    assert len(records) == 4 and {r["source"] for r in records} == {"batch"}
    assert [(r["image_name"], r["object_id"], r["iou"], r["score"]) for r in records] == [
        (r["image"], r["object"], pytest.approx(r["iou"]), pytest.approx(r["score"], abs=1e-6)) for r in result.rows
    ]
    summary = json.loads(result.paths["summary_json"].read_text())
    assert summary["miou"] == pytest.approx(np.mean([r["iou"] for r in result.rows]), abs=1e-6)
    assert summary["boundary_tolerance"]["px"] == [2, 2] or summary["boundary_tolerance"]["px"] == [2]
    assert summary["torch"] and summary["machine"] and summary["model"]["model"] == "test-tiny"
    md = result.paths["results_md"].read_text()
    assert md.count("\n| ") == 1 + 4 and "random weights" in md  # header + one line per row


def test_csv_prompts_give_the_same_results_as_json(data, tiny_segmenter, tmp_path):
    js = run_study(config(data, tmp_path / "js", reference=data.refs, run_log=False), segmenter=tiny_segmenter)
    cs = run_study(
        config(data, tmp_path / "cs", prompts=data.prompts_csv, reference=data.refs, images=(str(data.list_file),),
               run_log=False),
        segmenter=tiny_segmenter,
    )
    assert read_csv_rows(js.paths["results_csv"], drop=TIMING_COLUMNS) == read_csv_rows(
        cs.paths["results_csv"], drop=TIMING_COLUMNS
    )


def test_coco_reference_with_prompts_from_the_masks(data, tiny_segmenter, tmp_path):
    result = run_study(
        config(data, tmp_path / "coco", prompts=None, reference=data.coco, prompt_from="box+center", run_log=False),
        segmenter=tiny_segmenter,
    )
    rows = keyed(result.rows)
    assert sorted(rows) == [("a.png", "11", "base"), ("b.png", "21", "base"), ("b.png", "22", "base")]
    assert [rows[k]["category"] for k in sorted(rows)] == ["block", "disc", "block"]
    b21 = json.loads(rows[("b.png", "21", "base")]["prompt"])
    assert b21["box"] == [22, 32, 59, 69]  # the disc's tight box (half-open)
    assert b21["points"] == [[*interior_point(data.masks[("b.png", "21")]), 1]]
    assert [(e.image, e.reason.split(":")[0]) for e in result.errors] == [("c.jpg", "missing reference")]
    assert "category" in read_csv_rows(result.paths["results_csv"])[0]


# --------------------------------------------------------------------------- bad inputs


def test_bad_inputs_become_error_rows_and_the_run_goes_on(data, tiny_segmenter, tmp_path):
    img = tmp_path / "img"
    img.mkdir()
    for name in ("a.png", "b.png"):
        (img / name).write_bytes((data.img / name).read_bytes())
    (img / "broken.png").write_bytes(b"this is not a png")
    Image.fromarray(photo_like(60, 80, seed=9)).save(img / "noref.png")
    Image.fromarray(photo_like(60, 80, seed=8)).save(img / "empty.png")
    Image.fromarray(photo_like(60, 80, seed=7)).save(img / "noprompt.png")
    refs = tmp_path / "refs"
    refs.mkdir()
    for name in ("a.png", "b.png"):
        (refs / name).write_bytes((data.refs / name).read_bytes())
    Image.fromarray(np.zeros((60, 80), np.uint8)).save(refs / "empty.png")
    Image.fromarray(np.full((60, 80), 255, np.uint8)).save(refs / "noprompt.png")
    prompts = {
        "a.png": [{"box": [36, 22, 84, 68]}, {"points": [[500, 20, 1]]}],  # object 2: outside the 128x96 image
        "b.png": [{"box": [20, 30, 60, 70]}, {"box": [78, 18, 122, 72]}, {"box": [1, 1, 9, 9]}],  # no ref 3
        "broken.png": {"box": [1, 1, 5, 5]},
        "noref.png": {"box": [1, 1, 5, 5]},
        "empty.png": {"box": [1, 1, 5, 5]},
        "ghost.png": {"box": [1, 1, 5, 5]},  # not an input
    }
    (tmp_path / "p.json").write_text(json.dumps(prompts))
    result = run_study(
        StudyConfig(images=(str(img),), out=tmp_path / "st", prompts=tmp_path / "p.json", reference=refs),
        segmenter=tiny_segmenter,
    )
    reasons = {(e.image, e.object): e.reason for e in result.errors}
    assert sorted(reasons) == [
        ("a.png", "2"), ("b.png", "3"), ("broken.png", ""), ("empty.png", ""), ("ghost.png", ""),
        ("noprompt.png", ""), ("noref.png", ""),
    ]
    assert reasons[("a.png", "2")].startswith("bad prompt: point 1 (500, 20) is outside the 128×96 image")
    assert reasons[("b.png", "3")].startswith("missing reference: no reference object '3'")
    assert reasons[("broken.png", "")].startswith("unreadable image: broken.png is not a supported image")
    assert reasons[("noref.png", "")].startswith("missing reference: no noref.png in")
    assert reasons[("empty.png", "")].startswith("empty reference: empty.png has no non-zero pixel")
    assert "not an input" in reasons[("ghost.png", "")]
    assert reasons[("noprompt.png", "")] == "no prompt for this image in p.json"
    assert [(r["image"], r["object"]) for r in result.rows] == [("a.png", "1"), ("b.png", "1"), ("b.png", "2")]
    assert read_csv_rows(result.paths["errors_csv"]) == [
        {"image": e.image, "object": e.object, "reason": e.reason} for e in result.errors
    ]
    assert result.summary["counts"]["images_failed"] == 4


def test_settings_mistakes_are_user_errors(data, tiny_segmenter, tmp_path, capsys):
    with pytest.raises(UserError, match="--reference"):
        run_study(config(data, tmp_path / "x", experiment="clicks"), segmenter=tiny_segmenter)
    with pytest.raises(UserError, match="--prompt-from"):
        run_study(config(data, tmp_path / "x", prompt_from="box"), segmenter=tiny_segmenter)
    # through `sam-studio batch`: "error: ..." and status 2, no traceback
    from sam_core.cli import main as studio_main

    from sam_core.batch import cli, experiments

    assert cli._EXPERIMENTS == experiments.EXPERIMENTS
    assert studio_main(["batch", "merge", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no shards" in err and "Traceback" not in err


# --------------------------------------------------------------------------- resume, shards


def _six_images(tmp_path: Path) -> tuple[Path, Path]:
    img, refs = tmp_path / "img6", tmp_path / "refs6"
    img.mkdir()
    refs.mkdir()
    for k in range(6):
        Image.fromarray(photo_like(64, 80, seed=40 + k)).save(img / f"im{k}.png")
        ref = np.zeros((64, 80), np.uint8)
        ref[10 + k : 40 + k, 15:60 - k] = 255
        Image.fromarray(ref).save(refs / f"im{k}.png")
    return img, refs


def test_sigkill_then_resume_gives_the_uninterrupted_results(tiny_segmenter, tmp_path):
    img, refs = _six_images(tmp_path)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "sam_core.batch", str(img), "--reference", str(refs), "--box-noise", "0.1",
           "--seed", "3", "--model", "test-tiny", "--device", "cpu", "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    parts = out / "shards" / "0-of-1" / "parts"
    deadline = time.monotonic() + 120
    try:
        while not (parts.is_dir() and any(parts.glob("0*.json"))):
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "no part file appeared"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(30)
    done_before = len(list(parts.glob("0*.json")))
    assert 1 <= done_before < 6 and not (out / "results.csv").exists()  # killed mid-run

    cfg = StudyConfig(images=(str(img),), out=out, reference=refs, box_noise=0.1, seed=3)
    with pytest.raises(UserError, match="--resume"):
        run_study(cfg, segmenter=tiny_segmenter)
    runs = tiny_segmenter.encoder_runs
    tiny_segmenter.clear_cache()
    resumed = run_study(StudyConfig(**{**vars(cfg), "resume": True}), segmenter=tiny_segmenter)
    assert tiny_segmenter.encoder_runs - runs == 6 - done_before  # finished images are skipped
    fresh = run_study(StudyConfig(**{**vars(cfg), "out": tmp_path / "fresh"}), segmenter=tiny_segmenter)
    got = read_csv_rows(resumed.paths["results_csv"], drop=TIMING_COLUMNS)
    assert len(got) == 6 and len({(r["image"], r["object"], r["variant"]) for r in got}) == 6
    assert got == read_csv_rows(fresh.paths["results_csv"], drop=TIMING_COLUMNS)
    assert resumed.summary["complete"] and resumed.summary["counts"]["rows"] == 6


def test_shards_merge_to_the_unsharded_run(data, tiny_segmenter, tmp_path, capsys):
    base = dict(images=(str(data.img),), prompts=data.prompts_json, reference=data.refs, run_log=False)
    whole = run_study(StudyConfig(out=tmp_path / "whole", **base), segmenter=tiny_segmenter)
    out = tmp_path / "sharded"
    shard1 = run_study(StudyConfig(out=out, shard=(1, 2), **base), segmenter=tiny_segmenter)
    assert [r["image"] for r in shard1.rows] == ["b.png", "b.png"]  # sorted index 1 of a, b, c
    assert shard1.paths["results_csv"].parent == out / "shards" / "1-of-2" and not (out / "results.csv").exists()
    with pytest.raises(UserError, match=r"shard 0/2 of 2 is missing"):
        merge_study(out)
    run_study(StudyConfig(out=out, shard=(0, 2), **base), segmenter=tiny_segmenter)
    merged = merge_study(out)
    assert read_csv_rows(merged["paths"]["results_csv"], drop=TIMING_COLUMNS) == read_csv_rows(
        whole.paths["results_csv"], drop=TIMING_COLUMNS
    )
    assert (out / "errors.csv").read_bytes() == whole.paths["errors_csv"].read_bytes()
    first = {n: (out / n).read_bytes() for n in ("results.csv", "results.md", "summary.json", "errors.csv")}
    assert batch_main(["merge", str(out)]) == 0  # idempotent: the same files again
    assert {n: (out / n).read_bytes() for n in first} == first
    code = f"import sys; from sam_core.batch.shards import merge_study; merge_study({str(out)!r}); print('torch' in sys.modules)"
    merged_alone = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert merged_alone.stdout.strip() == "False", merged_alone.stderr  # merge needs no torch (a light SLURM job)
    # a missing shard is named
    three = tmp_path / "three"
    run_study(StudyConfig(out=three, shard=(1, 3), **base), segmenter=tiny_segmenter)
    capsys.readouterr()
    assert batch_main(["merge", str(three)]) == 2
    assert "shards 0/3, 2/3 of 3 are missing" in capsys.readouterr().err


def test_progress_cancel_and_resume(data, tiny_segmenter, tmp_path):
    cancel = threading.Event()
    seen: list[tuple[float, str]] = []

    def progress(fraction: float, message: str) -> None:
        seen.append((fraction, message))
        if fraction > 0:
            cancel.set()

    cfg = config(data, tmp_path / "st", run_log=False)
    part = run_study(cfg, segmenter=tiny_segmenter, progress=progress, cancel=cancel)
    assert not part.complete and [r["image"] for r in part.rows] == ["a.png"]
    assert seen[0][0] == 0 and seen[1][0] == pytest.approx(1 / 3) and "images/s" in seen[1][1]
    rest = run_study(StudyConfig(**{**vars(cfg), "resume": True}), segmenter=tiny_segmenter)
    assert rest.complete and len(rest.rows) == 4


def test_embed_many_encodes_a_batch_in_one_pass(tiny_segmenter):
    seg = tiny_segmenter
    images = [photo_like(50, 70, seed=60), photo_like(40, 30, seed=61), photo_like(50, 70, seed=60)]
    seg.clear_cache()
    runs = seg.encoder_runs
    got = seg.embed_many(images)
    assert seg.encoder_runs - runs == 2  # the repeated image is encoded once
    assert [hit for _, hit in got] == [False, False, True] and got[0][0] is got[2][0]
    for (emb, _), image in zip(got, images, strict=True):
        single = seg.encode(image)
        assert emb.input_size == single.input_size and emb.image_size == single.image_size
        np.testing.assert_allclose(emb.features.numpy(), single.features.numpy(), atol=1e-4, rtol=0)
    assert all(hit for _, hit in seg.embed_many(images))


# --------------------------------------------------------------------------- experiments


def test_box_scale_experiment(data, tiny_segmenter, tmp_path):
    result = run_study(
        config(data, tmp_path / "bs", images=(str(data.img / "a.png"),), reference=data.refs,
               experiment="box-scale", run_log=False),
        segmenter=tiny_segmenter,
    )
    rows = a = result.rows
    assert [r["scale"] for r in a] == list(BOX_SCALES)
    assert [r["variant"] for r in a][:3] == ["scale_0.8", "scale_0.9", "scale_1.0"]
    boxes = [json.loads(r["prompt"])["box"] for r in a]
    assert boxes[2] == [36, 22, 84, 68] and boxes[0] == [40.8, 26.6, 79.2, 63.4]  # 0.8 about the centre
    assert boxes[-1] == [12, 0, 108, 91]  # 2.0, clipped to the 128x96 image
    unit = next(r for r in a if r["scale"] == 1.0)
    assert unit["iou_vs_unscaled"] == 1.0
    assert all(0 <= r["iou_vs_unscaled"] <= 1 and 0 <= r["iou"] <= 1 for r in rows)
    header = list(read_csv_rows(result.paths["results_csv"])[0])
    assert header[-5:] == ["iou", "dice", "boundary_f", "scale", "iou_vs_unscaled"]
    png_ok(result.paths["box_scale_png"])
    assert result.summary["by_variant"]["scale_2.0"]["rows"] == 1


def test_points_experiment(data, tiny_segmenter, tmp_path):
    result = run_study(
        config(data, tmp_path / "pt", images=(str(data.img / "b.png"),), reference=data.refs, experiment="points",
               run_log=False),
        segmenter=tiny_segmenter,
    )
    rows = [r for r in result.rows if r["image"] == "b.png" and r["object"] == "2"]
    assert [r["variant"] for r in rows] == ["box", "box+1", "box+2", "box+3"]
    assert [r["clicks"] for r in rows] == [0, 1, 2, 3]
    prompts = [json.loads(r["prompt"]) for r in rows]
    assert all(p["box"] == [78, 18, 122, 72] for p in prompts) and prompts[0]["points"] == []
    assert all(r["iou_before"] == rows[0]["iou"] for r in rows)
    assert all(r["delta_iou"] == pytest.approx(r["iou"] - r["iou_before"]) for r in rows)
    # each click is the simulator's next click on the previous chosen mask (decoded here again)
    rgb = load_image(data.img / "b.png").rgb
    ref = data.masks[("b.png", "2")]
    for before, after in zip(prompts, prompts[1:], strict=False):
        prev = tiny_segmenter.segment(rgb, points=before["points"] or None, box=before["box"])
        x, y, lab = next_click(prev.full_mask(prev.best_index), ref)
        assert after["points"] == [*before["points"], [round(x, 2), round(y, 2), lab]]
    assert {r["chosen_index"] for r in result.rows} <= {0, 1, 2}
    assert "box+3" in result.summary["by_variant"]


def test_clicks_experiment(data, tiny_segmenter, tmp_path):
    result = run_study(
        StudyConfig(images=(str(data.img / "c.jpg"),), out=tmp_path / "ck", reference=data.refs,
                    experiment="clicks", max_clicks=CLICKS, run_log=False),
        segmenter=tiny_segmenter,
    )
    rows = result.rows
    assert [r["variant"] for r in rows][:2] == ["click_01", "click_02"] and len(rows) <= CLICKS
    first = json.loads(rows[0]["prompt"])
    assert first == {"points": [[*interior_point(data.masks[("c.jpg", "1")]), 1]], "box": None}
    assert rows[0]["chosen_index"] in (0, 1, 2) and all(r["chosen_index"] == 0 for r in rows[1:])  # single-mask
    noc_rows = read_csv_rows(result.paths["noc_csv"])
    assert len(noc_rows) == 1
    assert list(noc_rows[0]) == ["image", "object", "noc85", "noc90", *(f"iou_at_{k}" for k in range(1, CLICKS + 1))]
    ious = [float(noc_rows[0][f"iou_at_{k}"]) for k in range(1, CLICKS + 1)]
    assert ious[: len(rows)] == pytest.approx([r["iou"] for r in rows], abs=1e-6)
    assert int(noc_rows[0]["noc85"]) == noc(ious, 0.85, CLICKS) and int(noc_rows[0]["noc90"]) == noc(ious, 0.9, CLICKS)
    miou = read_csv_rows(result.paths["miou_vs_clicks_csv"])
    assert [int(r["clicks"]) for r in miou] == list(range(1, CLICKS + 1))
    assert [float(r["miou"]) for r in miou] == pytest.approx(ious, abs=1e-6)
    png_ok(result.paths["iou_vs_clicks_png"])
    assert result.summary["clicks"]["mean_noc90"] == noc(ious, 0.90, CLICKS)
    assert MAX_CLICKS == 20  # the command line's default budget (CLICKS keeps this test short)


def test_command_line_with_overlays(data, tmp_path, capsys):
    out = tmp_path / "cli"
    code = batch_main([str(data.img), "--prompts", str(data.prompts_csv), "--reference", str(data.refs),
                       "--model", "test-tiny", "--device", "cpu", "--out", str(out), "--overlays", "--quiet",
                       "--no-log", "--batch-size", "2"])
    assert code == 0, capsys.readouterr().err
    rows = read_csv_rows(out / "results.csv")
    assert [r["overlay"] for r in rows] == [
        "overlays/00000_a_png__1.png", "overlays/00001_b_png__1.png", "overlays/00001_b_png__2.png",
        "overlays/00002_c_jpg__1.png",
    ]
    for r in rows:
        overlay = np.asarray(Image.open(out / r["overlay"]))
        size = (int(r["height"]), int(r["width"]))
        assert overlay.shape == (*size, 3)
        assert not np.array_equal(overlay, load_image(data.img / r["image"]).rgb)
    assert "4 objects, 4 rows, 0 errors; mIoU" in capsys.readouterr().out
    assert not (out / "logs").exists()
    assert (H, W) == (96, 128)


def test_readme_study_commands_parse_and_their_files_exist():
    """Every `python -m sam_core.batch` command of the README's Studies section is valid as written."""
    import glob
    import re
    import shlex

    from sam_core.batch.cli import parse_args

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Studies") : readme.index("\n## ", readme.index("## Studies") + 5)]
    commands = [line for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)
                for line in block.splitlines() if line.startswith("python -m sam_core.batch ")]
    assert len(commands) == 5
    for line in commands:
        words = [w for word in shlex.split(line)[3:] for w in (sorted(glob.glob(str(ROOT / word))) or [word])]
        args = parse_args(words)
        assert args.model == "vit_b" and len(args.images) >= 5 and all(Path(p).is_file() for p in args.images)
        assert all((ROOT / p).exists() for p in (args.prompts, args.reference) if p is not None)
    for png in ("docs/box_scale.png", "docs/iou_vs_clicks.png"):
        assert f"]({png})" in section
        png_ok(ROOT / png)
