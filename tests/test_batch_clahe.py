"""``--clahe`` in studies: the encoder sees the CLAHE-enhanced image under its own cache / store key,
everything else (metrics, image hash, stats) the original; recorded in run.json, summary, run log;
resume with another setting refused. test-tiny (random weights, real encoder and decoder), tiny images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from batch_data import make_study_data
from segment_anything import SamPredictor

from sam_core.batch.cli import main as batch_main
from sam_core.batch.cli import parse_args
from sam_core.batch.inputs import load_prompt_file
from sam_core.batch.outputs import TIMING_COLUMNS, read_csv_rows
from sam_core.batch.runner import StudyConfig, run_study
from sam_core.batch.shards import merge_study
from sam_core.core.enhance import Clahe, apply_clahe
from sam_core.core.errors import UserError
from sam_core.core.geometry import mask_metrics
from sam_core.core.images import image_hash, image_stats, load_image
from sam_core.model.embeddings import EmbeddingStore
from sam_core.runlog import RunLog

NAMES = ("a.png", "b.png", "c.jpg")
CLAHE = Clahe(2.0, 8)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_study_data(tmp_path_factory.mktemp("clahe-data"))


def config(data, out: Path, **kw) -> StudyConfig:
    kw.setdefault("images", (str(data.img),))
    kw.setdefault("prompts", data.prompts_json)
    kw.setdefault("reference", data.refs)
    return StudyConfig(out=out, **kw)


def predict(predictor: SamPredictor, prompts) -> tuple[np.ndarray, np.ndarray]:
    """SamPredictor's masks and scores for ``prompts`` on the image it holds."""
    masks, scores, _ = predictor.predict(
        point_coords=np.array([q[:2] for q in prompts.points], np.float32) if prompts.points else None,
        point_labels=np.array([q[2] for q in prompts.points]) if prompts.points else None,
        box=None if prompts.box is None else np.array(prompts.box, np.float32),
        multimask_output=True,
    )
    return masks, scores


def test_the_encoder_sees_the_enhanced_image_and_metrics_the_original(data, tiny_segmenter, tmp_path):
    seg = tiny_segmenter
    plain = run_study(config(data, tmp_path / "plain", run_log=False), segmenter=seg)
    result = run_study(config(data, tmp_path / "clahe", clahe=CLAHE), segmenter=seg)
    assert result.complete and result.errors == [] and len(result.rows) == len(plain.rows) == 4
    predictor = SamPredictor(seg.model)
    specs = load_prompt_file(data.prompts_json)
    for name in NAMES:
        rgb = load_image(data.img / name).rgb
        enhanced = apply_clahe(rgb, CLAHE)
        assert not np.array_equal(enhanced, rgb)
        predictor.set_image(enhanced)
        for row in (r for r in result.rows if r["image"] == name):
            p = next(s.prompts for s in specs[name] if s.id == row["object"])
            masks, scores = predict(predictor, p)
            best = int(np.argmax(scores))
            m = mask_metrics(masks[best])
            assert row["chosen_index"] == best and row["score"] == float(scores[best])  # equal, not close
            assert row["area"] == m["area"] and [row[f"bbox_{k}"] for k in ("x1", "y1", "x2", "y2")] == m["bbox"]
            assert row["width"] == rgb.shape[1] and row["height"] == rgb.shape[0]  # the original frame
        # the study's embedding is SamPredictor's of the enhanced pixels, not of the plain ones
        enhanced_features = predictor.get_image_embedding()
        predictor.set_image(rgb)
        plain_features = predictor.get_image_embedding()
        assert not torch.allclose(enhanced_features, plain_features, atol=1e-3)
        key = f"{image_hash(rgb)}-{CLAHE.key()}"
        assert seg.is_cached(key) and seg.is_cached(image_hash(rgb))
        emb, hit = seg.embed(enhanced, image_key=key)
        assert hit and torch.equal(emb.features.cpu(), enhanced_features.cpu())
    plain_scores = [r["score"] for r in plain.rows]
    assert [r["score"] for r in result.rows] != plain_scores
    # the run log: the ORIGINAL image's hash and stats, the preprocessing in extra
    with RunLog(result.log_dir) as runlog:
        records = runlog.records()
    assert len(records) == 4
    for rec in records:
        rgb = load_image(data.img / rec["image_name"]).rgb
        assert rec["image_hash"] == image_hash(rgb)
        assert rec["brightness"] == pytest.approx(image_stats(rgb)["brightness"])
        assert rec["contrast"] == pytest.approx(image_stats(rgb)["contrast"])
        assert rec["extra"]["preprocess"] == "clahe2.0x8"


def test_plain_and_clahe_runs_have_their_own_cache_entries(data, tiny_segmenter, tmp_path):
    seg = tiny_segmenter
    seg.clear_cache()
    runs = seg.encoder_runs
    plain = run_study(config(data, tmp_path / "plain", run_log=False), segmenter=seg)
    assert seg.encoder_runs - runs == 3
    enhanced = run_study(config(data, tmp_path / "c1", run_log=False, clahe=CLAHE), segmenter=seg)
    assert seg.encoder_runs - runs == 6  # not served by the plain images' embeddings
    again = run_study(config(data, tmp_path / "c2", run_log=False, clahe=Clahe(2.0, 8)), segmenter=seg)
    assert seg.encoder_runs - runs == 6  # the same setting: cache hits
    one = (str(data.img / "a.png"),)
    other = run_study(config(data, tmp_path / "c3", images=one, run_log=False, clahe=Clahe(2.0, 4)), segmenter=seg)
    assert seg.encoder_runs - runs == 7  # another grid: another key
    assert read_csv_rows(again.paths["results_csv"], drop=TIMING_COLUMNS) == read_csv_rows(
        enhanced.paths["results_csv"], drop=TIMING_COLUMNS
    )
    assert other.rows[0]["score"] != enhanced.rows[0]["score"] != plain.rows[0]["score"]
    # a batch of images (one encoder pass through embed_many) gives the rows of one-by-one encoding
    seg.clear_cache()
    batched = run_study(config(data, tmp_path / "b2", run_log=False, clahe=CLAHE, batch_size=2), segmenter=seg)
    assert seg.encoder_runs - runs == 10
    assert read_csv_rows(batched.paths["results_csv"], drop=TIMING_COLUMNS) == read_csv_rows(
        enhanced.paths["results_csv"], drop=TIMING_COLUMNS
    )


def test_embedding_store_keeps_enhanced_and_plain_apart(data, tiny_segmenter, tmp_path):
    seg = tiny_segmenter
    store = EmbeddingStore(tmp_path / "emb", write_new=True)
    seg.attach_embeddings(store)
    try:
        seg.clear_cache()
        run_study(config(data, tmp_path / "c", run_log=False, clahe=CLAHE), segmenter=seg)
        hashes = {image_hash(load_image(data.img / n).rgb) for n in NAMES}
        assert sorted(p.name for p in store.files()) == sorted(f"{h}-clahe2.0x8.safetensors" for h in hashes)
        seg.clear_cache()
        runs, loads = seg.encoder_runs, seg.store_loads
        run_study(config(data, tmp_path / "p", run_log=False), segmenter=seg)
        assert seg.encoder_runs - runs == 3 and seg.store_loads == loads  # plain: never the enhanced embedding
        seg.clear_cache()
        runs = seg.encoder_runs
        result = run_study(config(data, tmp_path / "c2", run_log=False, clahe=CLAHE), segmenter=seg)
        assert seg.encoder_runs == runs and seg.store_loads - loads == 3  # enhanced: read back from the store
        assert all(r["encode_ms"] >= 0 for r in result.rows)
        assert len(list(store.files())) == 6
    finally:
        seg.attach_embeddings(None)


def test_description_summary_and_report_carry_the_setting(data, tiny_segmenter, tmp_path):
    one = (str(data.img / "a.png"),)
    result = run_study(
        config(data, tmp_path / "c", images=one, run_log=False, clahe=Clahe(2.5, 16)), segmenter=tiny_segmenter
    )
    run = json.loads((tmp_path / "c" / "shards" / "0-of-1" / "run.json").read_text())
    assert run["settings"]["clahe"] == "clahe2.5x16"
    assert run["meta"]["clahe"] == run["meta"]["inputs"]["clahe"] == "clahe2.5x16"
    summary = json.loads(result.paths["summary_json"].read_text())
    assert summary["clahe"] == "clahe2.5x16"
    assert "`clahe2.5x16`" in result.paths["results_md"].read_text()
    plain = run_study(config(data, tmp_path / "p", images=one, run_log=False), segmenter=tiny_segmenter)
    run = json.loads((tmp_path / "p" / "shards" / "0-of-1" / "run.json").read_text())
    assert "clahe" not in run["settings"] and run["meta"]["clahe"] is None  # plain fingerprints unchanged
    assert json.loads(plain.paths["summary_json"].read_text())["clahe"] is None
    assert "clahe" not in plain.paths["results_md"].read_text()


def test_resume_with_another_setting_is_refused(data, tiny_segmenter, tmp_path):
    out = tmp_path / "st"
    run_study(config(data, out, run_log=False, clahe=CLAHE), segmenter=tiny_segmenter)
    for other in (Clahe(3.0, 8), None):
        with pytest.raises(UserError, match=r"other settings \(clahe differ\)"):
            run_study(config(data, out, run_log=False, clahe=other, resume=True), segmenter=tiny_segmenter)
    again = run_study(config(data, out, run_log=False, clahe=Clahe(2, 8), resume=True), segmenter=tiny_segmenter)
    assert again.complete and len(again.rows) == 4
    plain_out = tmp_path / "plain"
    run_study(config(data, plain_out, run_log=False), segmenter=tiny_segmenter)
    with pytest.raises(UserError, match=r"clahe differ"):
        run_study(config(data, plain_out, run_log=False, clahe=CLAHE, resume=True), segmenter=tiny_segmenter)
    # shards of a SLURM array run with different settings are not merged
    sharded = tmp_path / "sharded"
    run_study(config(data, sharded, run_log=False, clahe=CLAHE, shard=(0, 2)), segmenter=tiny_segmenter)
    run_study(config(data, sharded, run_log=False, shard=(1, 2)), segmenter=tiny_segmenter)
    with pytest.raises(UserError, match="different settings"):
        merge_study(sharded)


def test_command_line_flag(data, tmp_path, capsys):
    base = [str(data.img), "--prompts", str(data.prompts_json), "--model", "test-tiny", "--out", str(tmp_path / "o")]
    assert parse_args(base).clahe is None
    assert parse_args([*base, "--clahe", "2"]).clahe == Clahe(2.0, 8)
    assert parse_args([*base, "--clahe", "2.5x16"]).clahe == Clahe(2.5, 16)
    assert parse_args([*base, "--clahe", "off"]).clahe is None
    for bad, reason in (("banana", "is not understood"), ("50", "must be > 0 and <= 40")):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            parse_args([*base, "--clahe", bad])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert "argument --clahe:" in err and reason in err and "Traceback" not in err
    out = tmp_path / "cli"
    flags = ["--model", "test-tiny", "--device", "cpu", "--quiet", "--clahe", "2x8"]
    code = batch_main([str(data.img / "a.png"), "--prompts", str(data.prompts_json), "--out", str(out), *flags])
    assert code == 0, capsys.readouterr().err
    assert json.loads((out / "summary.json").read_text())["clahe"] == "clahe2.0x8"
    with RunLog(out / "logs") as runlog:
        assert {r["extra"]["preprocess"] for r in runlog.records()} == {"clahe2.0x8"}
