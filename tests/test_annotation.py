"""Several objects per image: object operations, the exclusion rule, dataset exports, bundles.

Everything here runs through :class:`Studio` and the Segment tab's handlers with test-tiny; masks
are compared with ``SamPredictor`` on the same weights.
"""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from pathlib import Path

import cv2
import gradio as gr
import numpy as np
import pytest
from corpus import bad_bundles
from PIL import Image
from pycocotools.coco import COCO
from segment_anything import SamPredictor

from sam_core.app import annotation
from sam_core.app.session import PromptMode, SessionState
from sam_core.app.studio import (
    ChangeSettings,
    Choose,
    Click,
    DeleteObject,
    NewObject,
    SelectObject,
    SetLabel,
    SetPrompts,
    Studio,
    Undo,
)
from sam_core.core.dataset_export import parse_yolo_line
from sam_core.core.errors import UserError
from sam_core.core.geometry import rle_decode
from sam_core.core.images import load_image
from sam_core.core.prompts import Prompts
from sam_core.ui.segment_tab import Handlers

ROOT = Path(__file__).resolve().parents[1]
COFFEE = ROOT / "examples" / "coffee.png"
FG = PromptMode.FOREGROUND

# Three objects on coffee.png (600x400): overlapping boxes, so the exclusion rule has work to do.
OBJECTS = [
    ("cup", Prompts.parse([(290, 230, 1)], (150, 80, 460, 380))),
    ("saucer", Prompts.parse([(300, 350, 1)], (100, 250, 520, 399))),
    ("table", Prompts.parse([(40, 40, 1), (560, 40, 1)])),
]


@pytest.fixture()
def studio(tiny_segmenter, tmp_path):
    return Studio(tiny_segmenter, outputs_dir=tmp_path / "outputs")


def predictor_best(seg, prompts: Prompts, multimask: bool = True) -> tuple[np.ndarray, float]:
    """SamPredictor's best mask (highest predicted IoU) for ``prompts`` on coffee.png."""
    predictor = SamPredictor(seg.model)
    predictor.set_image(np.array(load_image(COFFEE).rgb))
    masks, scores, _ = predictor.predict(
        point_coords=np.array([p[:2] for p in prompts.points], np.float32) if prompts.points else None,
        point_labels=np.array([p[2] for p in prompts.points]) if prompts.points else None,
        box=None if prompts.box is None else np.array(prompts.box, np.float32),
        multimask_output=multimask,
    )
    best = int(np.argmax(scores))
    return masks[best], float(scores[best])


def annotate(studio: Studio, exclude: bool = False) -> SessionState:
    """The three OBJECTS committed with their labels (the last one left as the object being edited)."""
    s = studio.open_image(None, str(COFFEE))
    if exclude:
        s = studio.handle(s, ChangeSettings(dataclasses.replace(s.settings, exclude=True)))
    for i, (label, prompts) in enumerate(OBJECTS):
        s = studio.handle(s, SetLabel(label))
        s = studio.handle(s, SetPrompts(prompts))
        if i < len(OBJECTS) - 1:
            s = studio.handle(s, NewObject())
    return s


# --------------------------------------------------------------------------- object operations


def test_new_object_commits_and_the_next_one_starts(studio, tiny_segmenter):
    s = studio.open_image(None, str(COFFEE))
    with pytest.raises(UserError, match="Nothing to commit yet"):
        studio.handle(s, NewObject())
    s = studio.handle(s, SetLabel("  cup  "))
    s = studio.handle(s, Click(290, 230, FG))
    s = studio.handle(s, Click(40, 40, PromptMode.BACKGROUND))
    first = s
    s = studio.handle(s, NewObject())
    assert [o.object_id for o in s.objects] == [1] and s.current_id == 2
    assert s.prompts.empty and s.candidates is None and s.history == () and s.edits == ()
    assert s.label == "cup" and "cup" in s.categories  # the next object starts with the same label
    obj = s.objects[0]
    assert obj.label == "cup" and obj.prompts == first.prompts and obj.chosen == first.chosen
    # the committed mask is the exact full-resolution one, SamPredictor's for the same prompts
    predictor = SamPredictor(tiny_segmenter.model)
    predictor.set_image(np.array(load_image(COFFEE).rgb))
    masks, scores, _ = predictor.predict(
        point_coords=np.array([[290, 230], [40, 40]], np.float32), point_labels=np.array([1, 0]), multimask_output=True
    )
    assert np.array_equal(rle_decode(obj.rle), masks[first.chosen])
    assert obj.area == int(masks[first.chosen].sum()) and obj.score == pytest.approx(float(scores[first.chosen]), abs=1e-5)
    assert obj.mask.shape == (400, 600) and np.array_equal(obj.mask, first.candidates.shown)


def test_select_brings_back_prompts_candidates_choice_and_history(studio):
    s = studio.open_image(None, str(COFFEE))
    s = studio.handle(s, Click(290, 230, FG))
    s = studio.handle(s, Click(200, 300, FG))
    s = studio.handle(s, Choose((s.chosen + 1) % 3))
    one = s
    s = studio.handle(s, NewObject())
    s = studio.handle(s, SetLabel("saucer"))
    s = studio.handle(s, Click(300, 350, FG))
    two = s
    s = studio.handle(s, SelectObject(1))  # object 2 is committed first, then object 1 comes back
    assert [o.object_id for o in s.objects] == [2] and s.current_id == 1
    assert s.prompts == one.prompts and s.chosen == one.chosen and s.history == one.history
    assert s.label == "object" and np.array_equal(s.candidates.shown, one.candidates.shown)
    assert s.objects[0].label == "saucer" and s.objects[0].prompts == two.prompts
    s = studio.handle(s, Undo())  # object 1's own history: its second click goes
    assert s.prompts == Prompts.parse([(290, 230, 1)])
    s = studio.handle(s, NewObject())
    assert [o.object_id for o in s.objects] == [1, 2] and s.current_id == 3
    with pytest.raises(UserError, match="no object 9"):
        studio.handle(s, SelectObject(9))


def test_delete_and_relabel(studio):
    s = annotate(studio)
    assert [o.object_id for o in s.objects] == [1, 2] and s.current_id == 3
    s = studio.handle(s, SetLabel("mug", 1))
    assert s.objects[0].label == "mug" and s.label == "table" and "mug" in s.categories
    s = studio.handle(s, DeleteObject(2))
    assert [o.object_id for o in s.objects] == [1] and s.current_id == 3 and s.candidates is not None
    s = studio.handle(s, DeleteObject(None))  # the object being edited
    assert s.candidates is None and s.prompts.empty and [o.object_id for o in s.objects] == [1]
    with pytest.raises(UserError, match="no object 2"):
        studio.handle(s, DeleteObject(2))


# --------------------------------------------------------------------------- the exclusion rule


def test_exclusion_subtracts_earlier_objects_in_id_order(studio, tiny_segmenter):
    plain = studio.object_masks(annotate(studio))
    s = annotate(studio, exclude=True)
    excl = studio.object_masks(s)
    raw = [predictor_best(tiny_segmenter, p)[0] for _, p in OBJECTS]
    # without exclusion each object is SamPredictor's mask (chosen = best here)
    for (obj, mask), ref in zip(plain, raw, strict=True):
        assert np.array_equal(mask, ref), obj.object_id
    # with it, object k loses exactly the pixels of objects 1..k-1
    taken = np.zeros_like(raw[0])
    for (_, mask), ref in zip(excl, raw, strict=True):
        assert np.array_equal(mask, ref & ~taken)
        taken |= ref
    assert (raw[0] & raw[1]).any()  # the test image makes them overlap
    # the object being edited is shown without the taken pixels, at the preview too
    assert not (s.candidates.shown & (s.objects[0].mask | s.objects[1].mask)).any()
    # and its single-object export follows the same rule
    assert np.array_equal(studio.full_mask(s), excl[2][1])
    # switching the option off gives the raw mask back without decoding again
    off = studio.handle(s, ChangeSettings(dataclasses.replace(s.settings, exclude=False)))
    assert off.result is s.result and np.array_equal(studio.full_mask(off), raw[2])


# --------------------------------------------------------------------------- exports


def test_export_objects_writes_readable_dataset_files(studio, tmp_path):
    s = annotate(studio, exclude=True)
    masks = {o.object_id: m for o, m in studio.object_masks(s)}
    paths = {Path(p).name: Path(p) for p in annotation.export_objects(studio, s)}
    assert set(paths) >= {"coffee_labels.png", "coffee_coco.json", "coffee_coco_polygons.json", "coffee.txt", "classes.txt"}
    lm = cv2.imread(str(paths["coffee_labels.png"]), cv2.IMREAD_UNCHANGED)
    assert lm.dtype == np.uint16 and lm.shape == (400, 600)
    for i, m in masks.items():
        assert np.array_equal(lm == i, m)  # disjoint with the exclusion rule
    coco = COCO(str(paths["coffee_coco.json"]))
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    anns = coco.loadAnns(coco.getAnnIds())
    assert sorted(a["id"] for a in anns) == [i for i in masks if masks[i].any()]
    for a in anns:
        assert np.array_equal(coco.annToMask(a).astype(bool), masks[a["id"]])
        assert names[a["category_id"]] == s.object(a["id"]).label if a["id"] != s.current_id else s.label
    poly = COCO(str(paths["coffee_coco_polygons.json"]))
    for a in poly.loadAnns(poly.getAnnIds()):
        got, want = poly.annToMask(a).astype(bool), masks[a["id"]]
        assert (got & want).sum() / (got | want).sum() > 0.9
    classes = paths["classes.txt"].read_text().split()
    lines = paths["coffee.txt"].read_text().splitlines()
    assert len(lines) == len(anns)
    for line in lines:
        cls, pts = parse_yolo_line(line, s.size)
        assert classes[cls] in {"cup", "saucer", "table"} and len(pts) >= 3
    cutouts = [p for n, p in paths.items() if "_object" in n]
    assert len(cutouts) == len(anns)
    rgba = np.asarray(Image.open(next(p for p in cutouts if "_object1_" in p.name)))
    assert rgba.shape[2] == 4 and (rgba[..., 3] == 255).sum() == masks[1].sum()


def test_export_without_objects_says_what_to_do(studio):
    s = studio.open_image(None, str(COFFEE))
    with pytest.raises(UserError, match="No objects yet"):
        annotation.export_objects(studio, s)


# --------------------------------------------------------------------------- bundles


def test_bundle_replays_bit_for_bit(studio, tmp_path):
    s = annotate(studio, exclude=True)
    s = studio.handle(s, Choose((s.chosen + 1) % 3))  # a non-default choice must replay too
    path = annotation.save_bundle(studio, s)
    with zipfile.ZipFile(path) as z:
        manifest = json.loads(z.read("bundle.json"))
    assert manifest["image"]["key"] == s.image_key and manifest["model"]["type"] == "test-tiny"
    assert [o["label"] for o in manifest["objects"]] == ["cup", "saucer", "table"]
    fresh = studio.open_image(None, str(COFFEE))
    opened, report = annotation.open_bundle(studio, fresh, path)
    assert "identical" in report, report
    before = studio.object_masks(s)
    after = studio.object_masks(opened)
    assert [o.object_id for o, _ in after] == [1, 2, 3] and opened.current_id == 4
    for (a, ma), (b, mb) in zip(before, after, strict=True):
        assert a.label == b.label and a.prompts == b.prompts and a.chosen == b.chosen
        assert np.array_equal(ma, mb)
    assert opened.settings.exclude


def test_bundle_with_refinement_replays_bit_for_bit(studio):
    s = studio.open_image(None, str(COFFEE))
    s = studio.handle(s, ChangeSettings(dataclasses.replace(s.settings, refine=True)))
    s = studio.handle(s, Click(290, 230, FG))
    s = studio.handle(s, Click(200, 150, FG))  # decoded with the previous mask as input
    assert s.candidates.mask_input is not None
    data = annotation.bundle_bytes(studio, s)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert "tensors.safetensors" in z.namelist()
    opened, report = annotation.open_bundle(studio, studio.open_image(None, str(COFFEE)), data)
    assert "identical" in report
    assert np.array_equal(rle_decode(opened.objects[0].rle), studio.full_mask(s))


def test_bundle_for_another_image_or_model_says_which(studio, tmp_path):
    s = annotate(studio)
    data = annotation.bundle_bytes(studio, s)
    other = tmp_path / "other.png"
    Image.fromarray(np.asarray(load_image(COFFEE).rgb)[::-1].copy()).save(other)
    with pytest.raises(UserError, match=r"saved for image 'coffee.png' \(600×400.*the open image is 'other.png'"):
        annotation.open_bundle(studio, studio.open_image(None, str(other)), data)
    with pytest.raises(UserError, match="Open the image this bundle was saved for first: 'coffee.png'"):
        annotation.open_bundle(studio, SessionState(), data)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        manifest = json.loads(z.read("bundle.json"))
    manifest["model"]["weights_id"] = "f" * 64
    from sam_core.core.bundle_io import write_bundle

    with pytest.raises(UserError, match=r"made with test-tiny \(weights ffffffff.*this session uses test-tiny"):
        annotation.open_bundle(studio, studio.open_image(None, str(COFFEE)), write_bundle(manifest))


def test_hostile_bundles_get_a_clear_message_in_the_ui(studio, tmp_path):
    h = Handlers(studio, decode_clicks="server")
    state = h.upload(str(COFFEE), None)[0]
    for case in bad_bundles(tmp_path / "bundles"):
        with pytest.raises(gr.Error) as err:
            h.open_bundle(str(case.path), state)
        text = str(err.value).lower()
        assert all(w.lower() in text for w in case.expect_words), (case.name, text)
    # the server and the session are fine afterwards
    out = h.select(state, "Foreground point", gr.SelectData(None, {"index": [290, 230], "value": None, "selected": True}))
    assert out.state.candidates is not None


# --------------------------------------------------------------------------- handlers


def test_handlers_objects_table_and_label(studio):
    h = Handlers(studio, decode_clicks="server")
    state = h.upload(str(COFFEE), None)[0]
    out = h.set_label("cup", state)
    assert out.label["value"] == "cup" and "cup" in out.label["choices"]
    sel = gr.SelectData(None, {"index": [290, 230], "value": None, "selected": True})
    out = h.select(out.state, "Foreground point", sel)
    assert [r[0] for r in out.objects] == [1] and out.objects[0][5] == "editing"
    out = h.new_object(out.state)
    assert "Object 1 (cup) committed" in out.status
    assert [(r[0], r[1], r[5]) for r in out.objects] == [(1, "cup", "")]
    out = h.select(out.state, "Foreground point", gr.SelectData(None, {"index": [40, 40], "value": None, "selected": True}))
    rows = out.objects
    assert [(r[0], r[5]) for r in rows] == [(1, ""), (2, "editing")]
    # a label edited in the table
    edited = [list(r) for r in rows]
    edited[0][1] = "mug"
    out = h.edit_objects(edited, out.state)
    assert out.state.objects[0].label == "mug"
    # clicking row 1 edits object 1 again (object 2 is committed)
    out = h.select_object(out.state, gr.SelectData(None, {"index": [0, 0], "value": 1, "row_value": out.objects[0]}))
    assert out.state.current_id == 1 and [o.object_id for o in out.state.objects] == [2]
    out = h.delete_object(out.state)
    assert "Object 1 deleted" in out.status and [r[0] for r in out.objects] == [2]
