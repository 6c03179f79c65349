"""Beyond clicks, through the Studio: segment everything on the cached embedding, adopting a region,
mask edits in undo and bundles, the polygon prompt, and CLAHE before the encoder."""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from segment_anything import SamAutomaticMaskGenerator, SamPredictor
from synth import photo_like

from sam_core.app import annotation
from sam_core.app.session import PromptMode
from sam_core.app.studio import (
    ChangeSettings,
    Click,
    ClosePolygon,
    EditMask,
    HideRegions,
    NewObject,
    RunEverything,
    SetPrompts,
    Studio,
    Undo,
)
from sam_core.core.bundle_io import write_bundle
from sam_core.core.enhance import Clahe, apply_clahe
from sam_core.core.errors import PromptError, UserError
from sam_core.core.geometry import rle_decode
from sam_core.core.images import load_image
from sam_core.core.mask_edits import Grow, Stroke, apply_edit
from sam_core.core.polygon_prompt import polygon_to_prompts
from sam_core.core.prompts import Prompts
from sam_core.model.everything import EverythingSettings
from sam_core.ui.present import metrics_dict

ROOT = Path(__file__).resolve().parents[1]
COFFEE = ROOT / "examples" / "coffee.png"
FG = PromptMode.FOREGROUND
# Thresholds the random test weights pass (their masks score ~0), as in tests/test_everything.py.
LOOSE = EverythingSettings(points_per_side=6, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0)


@pytest.fixture()
def studio(tiny_segmenter, tmp_path):
    return Studio(tiny_segmenter, outputs_dir=tmp_path / "outputs")


@pytest.fixture()
def small_image(tmp_path) -> Path:
    path = tmp_path / "synth.png"
    Image.fromarray(photo_like(120, 160, seed=7)).save(path)
    return path


# --------------------------------------------------------------------------- segment everything


def test_everything_reuses_the_embedding_and_equals_sams_generator(studio, tiny_segmenter, small_image):
    s = studio.open_image(None, str(small_image))
    runs = tiny_segmenter.encoder_runs
    s = studio.handle(s, RunEverything(LOOSE))
    assert tiny_segmenter.encoder_runs == runs  # the cached embedding: the encoder did not run
    regions = s.regions
    assert regions is not None and regions.timings["encoder_runs"] == 0
    rgb = np.array(load_image(small_image).rgb)
    want = SamAutomaticMaskGenerator(tiny_segmenter.model, **LOOSE.generator_kwargs()).generate(rgb)
    want = sorted(want, key=lambda a: -a["area"])
    assert len(regions.rles) == len(want) > 3
    for rle, ann in zip(regions.rles, want, strict=True):
        assert np.array_equal(rle_decode(rle), ann["segmentation"])
    for (x, y), ann in zip(regions.points, want, strict=True):
        assert (x, y) == pytest.approx(tuple(ann["point_coords"][0]))
    # the label map paints smaller regions over larger ones
    last = len(want) - 1
    assert (regions.labels == last + 1).sum() == want[last]["area"]
    assert studio.handle(s, HideRegions()).regions is None


def test_everything_on_a_large_image_makes_preview_masks_without_encoding(studio, tiny_segmenter, tmp_path):
    path = tmp_path / "large.png"
    Image.fromarray(photo_like(1600, 2400, seed=3)).save(path)
    s = studio.open_image(None, str(path))
    runs = tiny_segmenter.encoder_runs
    s = studio.handle(s, RunEverything(dataclasses.replace(LOOSE, points_per_side=4)))
    assert tiny_segmenter.encoder_runs == runs
    assert s.regions.labels.shape == (1024, 1536) and s.regions.timings["mask_scale"] == pytest.approx(s.scale)
    # grid points come back in full-image pixels
    xs = [x for x, _ in s.regions.points]
    assert max(xs) > 1536 and all(0 <= x <= 2400 for x in xs)


def test_adopting_a_region_makes_it_an_object_with_its_prompt(studio, small_image):
    s = studio.open_image(None, str(small_image))
    s = studio.handle(s, Click(20, 20, FG))  # an object in progress: committed when a region is adopted
    s = studio.handle(s, RunEverything(LOOSE))
    regions = s.regions
    rid = int(regions.labels[60, 80])
    assert rid > 0
    with pytest.raises(UserError, match="No region here"):
        studio.handle(dataclasses.replace(s, regions=dataclasses.replace(regions, labels=regions.labels * 0)),
                      Click(80, 60, PromptMode.REGION))
    s = studio.handle(s, Click(80, 60, PromptMode.REGION))
    assert [o.object_id for o in s.objects] == [1] and s.current_id == 2
    px, py = regions.points[rid - 1]
    assert s.prompts == Prompts.parse([(px, py, 1)])
    region = rle_decode(regions.rles[rid - 1])
    ious = [(m & region).sum() / max(1, (m | region).sum()) for m in s.candidates.masks]
    assert s.chosen == int(np.argmax(ious)) and max(ious) > 0.99  # the same decode gives the region back


def test_everything_needs_a_run_before_picking(studio, small_image):
    s = studio.open_image(None, str(small_image))
    with pytest.raises(UserError, match="Run Segment everything first"):
        studio.handle(s, Click(10, 10, PromptMode.REGION))


# --------------------------------------------------------------------------- edits


def test_edits_apply_undo_without_decoding_and_replay_from_bundles(studio):
    s = studio.open_image(None, str(COFFEE))
    s = studio.handle(s, Click(290, 230, FG))
    decoded = s.result
    raw = s.candidates.masks[s.chosen]
    s = studio.handle(s, EditMask(Grow(-3)))
    assert s.result is decoded and s.edits == (Grow(-3.0),)
    assert np.array_equal(s.candidates.shown, apply_edit(raw, Grow(-3), scale=s.scale))
    assert s.candidates.metrics["area"] < int(raw.sum())
    s = studio.handle(s, Click(10, 10, PromptMode.BRUSH))  # a brush click: a one-point stroke
    assert isinstance(s.edits[-1], Stroke) and s.edits[-1].points == ((10.0, 10.0),)
    assert s.candidates.shown[10, 10]
    full = studio.full_mask(s)
    want = apply_edit(apply_edit(studio.exact_result(s).full_mask(s.chosen), Grow(-3)), s.edits[-1])
    assert np.array_equal(full, want)
    # bundles keep the edits and replay them exactly
    opened, report = annotation.open_bundle(studio, studio.open_image(None, str(COFFEE)), annotation.bundle_bytes(studio, s))
    assert "identical" in report and opened.objects[0].edits == s.edits
    assert np.array_equal(rle_decode(opened.objects[0].rle), full)
    # undo takes the edits back one by one, without decoding again
    s = studio.handle(s, Undo())
    assert s.edits == (Grow(-3.0),) and s.result is decoded
    s = studio.handle(s, Undo())
    assert s.edits == () and np.array_equal(s.candidates.shown, raw)
    # a new click decodes a new mask: the edits do not carry over
    s = studio.handle(studio.handle(s, EditMask(Grow(2))), Click(200, 150, FG))
    assert s.edits == ()
    with pytest.raises(UserError, match="Nothing to edit"):
        studio.handle(studio.open_image(None, str(COFFEE)), EditMask(Grow(1)))


def test_a_bundle_with_a_bad_edit_says_which(studio):
    s = studio.handle(studio.open_image(None, str(COFFEE)), Click(290, 230, FG))
    data = annotation.bundle_bytes(studio, studio.handle(s, EditMask(Grow(2))))
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(data)).read("bundle.json"))
    manifest["objects"][0]["edits"] = [{"op": "grow", "px": 1e9}]
    with pytest.raises(UserError, match="px"):
        annotation.open_bundle(studio, s, write_bundle(manifest))
    manifest["objects"][0]["edits"] = [{"op": "teleport"}]
    with pytest.raises(UserError, match="teleport"):
        annotation.open_bundle(studio, s, write_bundle(manifest))


# --------------------------------------------------------------------------- polygon


def test_polygon_clicks_become_box_and_inside_points(studio):
    s = studio.open_image(None, str(COFFEE))
    verts = [(120, 90), (470, 100), (500, 300), (300, 390), (110, 330)]
    with pytest.raises(PromptError, match="at least 3 vertices"):
        studio.handle(s, ClosePolygon())
    for x, y in verts:
        s = studio.handle(s, Click(x, y, PromptMode.POLYGON))
    assert s.polygon == tuple((float(x), float(y)) for x, y in verts) and s.candidates is None
    s = studio.handle(s, Undo())  # drops the last vertex while drawing
    assert len(s.polygon) == 4
    s = studio.handle(s, Click(110, 330, PromptMode.POLYGON))
    s = studio.handle(s, Click(125, 95, PromptMode.POLYGON))  # within 12 px of the first vertex: closes it
    want = polygon_to_prompts(verts, s.size).prompts()
    assert s.polygon == () and s.prompts == want and s.candidates is not None
    assert s.prompts.box == pytest.approx((110.0, 90.0, 500.0, 390.0), abs=1.0)  # the outline's bounding box
    assert len(s.prompts.points) >= 1 and all(p[2] == 1 for p in s.prompts.points)
    # the derived prompts are ordinary prompts: editable and undoable
    s = studio.handle(s, SetPrompts(Prompts.parse(list(s.prompts.points[:1]), s.prompts.box)))
    assert len(s.prompts.points) == 1
    s = studio.handle(s, Undo())
    assert s.prompts == want


def test_polygon_background_points_outside(studio):
    s = studio.open_image(None, str(COFFEE))
    s = studio.handle(s, ChangeSettings(dataclasses.replace(s.settings, polygon_outside=1)))
    for x, y in [(100, 100), (500, 100), (500, 380), (400, 380), (400, 200), (200, 200), (200, 380), (100, 380)]:
        s = studio.handle(s, Click(x, y, PromptMode.POLYGON))  # a U
    s = studio.handle(s, ClosePolygon())
    bg = [p for p in s.prompts.points if p[2] == 0]
    assert len(bg) == 1 and 200 < bg[0][0] < 400 and bg[0][1] > 200  # inside the U's hollow


# --------------------------------------------------------------------------- CLAHE


def test_clahe_has_its_own_embedding_and_is_logged(studio, tiny_segmenter):
    s = studio.open_image(None, str(COFFEE))
    s = studio.handle(s, Click(290, 230, FG))
    plain = s.result
    runs = tiny_segmenter.encoder_runs
    s = studio.handle(s, ChangeSettings(dataclasses.replace(s.settings, clahe=2.0)))
    assert tiny_segmenter.encoder_runs == runs + 1  # the encoder saw another image
    assert tiny_segmenter.is_cached(f"{s.image_key}-clahe2.0x8") and tiny_segmenter.is_cached(s.image_key)
    rec = studio.runlog.records()[-1]
    assert rec["extra"] == {"preprocess": "clahe2.0x8"}
    assert metrics_dict(studio, s)["preprocess"].startswith("CLAHE clip 2")
    # the masks are SamPredictor's on the enhanced image
    predictor = SamPredictor(tiny_segmenter.model)
    predictor.set_image(apply_clahe(np.array(load_image(COFFEE).rgb), Clahe(2.0)))
    masks, scores, _ = predictor.predict(point_coords=np.array([[290, 230]], np.float32),
                                         point_labels=np.array([1]), multimask_output=True)
    assert np.allclose(studio.exact_result(s).scores, scores, atol=1e-5)
    assert np.array_equal(studio.full_mask(s), masks[s.chosen])
    assert not np.allclose(s.result.scores, plain.scores)
    # back to the plain image: its embedding is still cached
    s = studio.handle(s, ChangeSettings(dataclasses.replace(s.settings, clahe=0.0)))
    assert tiny_segmenter.encoder_runs == runs + 1
    assert studio.runlog.records()[-1]["extra"] is None
    assert metrics_dict(studio, s)["preprocess"] == "none"


def test_new_object_keeps_working_with_clahe_and_exclusion(studio):
    s = studio.open_image(None, str(COFFEE))
    s = studio.handle(s, ChangeSettings(dataclasses.replace(s.settings, clahe=3.0, exclude=True)))
    s = studio.handle(studio.handle(s, Click(290, 230, FG)), NewObject())
    s = studio.handle(s, Click(300, 350, FG))
    opened, report = annotation.open_bundle(studio, studio.open_image(None, str(COFFEE)), annotation.bundle_bytes(studio, s))
    assert "identical" in report and opened.settings.clahe == 3.0
