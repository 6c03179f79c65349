"""gradio_client against the launched app (python demo.py --model test-tiny)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image
from server import run_server

from sam_core import Segmenter
from sam_core.core.images import load_image
from sam_core.runlog import RunLog

ROOT = Path(__file__).resolve().parents[1]
COFFEE = ROOT / "examples" / "coffee.png"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with run_server(tmp_path_factory.mktemp("api-app")) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    return Client(server.url, verbose=False)


def test_segment_endpoint_matches_the_library(client, server):
    prompts = {"points": [[290, 230, 1], [40, 40, 0]], "box": [150, 80, 460, 380]}
    summary, masks = client.predict(handle_file(str(COFFEE)), json.dumps(prompts), True, api_name="/segment")
    assert summary["image_size"] == [600, 400]
    assert summary["model"] == "test-tiny"
    assert set(summary["timings"]) >= {"encode_ms", "decode_ms", "cache_hit"}
    cands = summary["candidates"]
    assert [c["index"] for c in cands] == [0, 1, 2]
    assert summary["best_index"] == int(np.argmax([c["score"] for c in cands]))
    assert len(masks) == 3

    # the same request through the library, in this process, on the same (seeded) weights
    ref = Segmenter.from_pretrained("test-tiny", device="cpu").segment(
        load_image(COFFEE).rgb, points=prompts["points"], box=prompts["box"])
    np.testing.assert_allclose([c["score"] for c in cands], ref.scores, atol=1e-5)
    for i, path in enumerate(masks):
        png = np.asarray(Image.open(path))
        assert png.shape == (400, 600) and set(np.unique(png)) <= {0, 255}
        assert np.array_equal(png == 255, ref.masks[i])
        assert cands[i]["area"] == int(ref.masks[i].sum())
        ys, xs = np.nonzero(ref.masks[i])
        assert cands[i]["bbox"] == [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]

    # a second call on the same image reuses the embedding
    summary2, _ = client.predict(handle_file(str(COFFEE)), json.dumps({"points": [[10, 10, 1]], "box": None}),
                                 False, api_name="/segment")
    assert summary2["timings"]["cache_hit"] is True and len(summary2["candidates"]) == 1
    records = RunLog(server.outputs / "logs").records()
    assert [r["source"] for r in records[-2:]] == ["api", "api"]
    assert records[-2]["prompts"] == {"points": [[290, 230, 1], [40, 40, 0]], "box": [150, 80, 460, 380]}


@pytest.mark.parametrize("prompts, message", [
    ("{not json", "not valid JSON"),
    ('{"points": [[2900, 10, 1]], "box": null}', "outside the 600×400 image"),
    ('{"points": [[10, 10, 7]]}', "must be 1 (foreground) or 0 (background)"),
    ('{"points": [], "box": null}', "at least one point or a box"),
])
def test_bad_prompts_get_a_clear_message(client, prompts, message):
    with pytest.raises(Exception) as err:
        client.predict(handle_file(str(COFFEE)), prompts, True, api_name="/segment")
    assert message in str(err.value)


def test_bad_file_gets_a_clear_message(client, tmp_path):
    bad = tmp_path / "holiday.png"
    bad.write_text("this is not a picture")
    with pytest.raises(Exception) as err:
        client.predict(handle_file(str(bad)), '{"points": [[1, 1, 1]]}', True, api_name="/segment")
    assert "holiday.png" in str(err.value) and "not" in str(err.value)
    # and the server is still fine
    summary, _ = client.predict(handle_file(str(COFFEE)), '{"points": [[5, 5, 1]]}', True, api_name="/segment")
    assert summary["image_size"] == [600, 400]


def test_click_handlers_are_not_in_the_api(client):
    assert list(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == ["/segment", "/annotate"]


ANNOTATE = [
    {"label": "cup", "points": [[290, 230, 1]], "box": [150, 80, 460, 380]},
    {"label": "saucer", "points": [[300, 350, 1]], "box": [100, 250, 520, 399]},
    {"label": "cup", "points": [[40, 40, 1], [560, 40, 1]], "box": None},
]


@pytest.mark.parametrize("exclude", [False, True])
def test_annotate_endpoint_matches_sam_predictor(client, exclude):
    """/annotate: each object is SamPredictor's best mask for its prompts; with exclusion a later
    object loses exactly the pixels of the earlier ones. COCO JSON and the uint16 label map."""
    from pycocotools import mask as mask_utils
    from segment_anything import SamPredictor

    coco, label_png = client.predict(
        handle_file(str(COFFEE)), json.dumps(ANNOTATE), exclude, True, api_name="/annotate"
    )
    seg = Segmenter.from_pretrained("test-tiny", device="cpu")
    predictor = SamPredictor(seg.model)
    predictor.set_image(np.array(load_image(COFFEE).rgb))
    want, taken = [], np.zeros((400, 600), bool)
    for obj in ANNOTATE:
        pts = obj["points"]
        masks, scores, _ = predictor.predict(
            point_coords=np.array([p[:2] for p in pts], np.float32),
            point_labels=np.array([p[2] for p in pts]),
            box=None if obj["box"] is None else np.array(obj["box"], np.float32),
            multimask_output=True,
        )
        m = masks[int(np.argmax(scores))]
        if exclude:
            m, taken = m & ~taken, taken | m
        want.append(m)
    assert [c["name"] for c in coco["categories"]] == ["cup", "saucer"]
    anns = {a["id"]: a for a in coco["annotations"]}
    assert coco["images"][0]["width"] == 600 and coco["images"][0]["height"] == 400
    for i, m in enumerate(want, start=1):
        a = anns[i]
        rle = dict(a["segmentation"], counts=a["segmentation"]["counts"].encode())
        assert np.array_equal(mask_utils.decode(rle).astype(bool), m), i
        assert a["area"] == int(m.sum()) and a["category_id"] == (2 if i == 2 else 1)
    label_map = np.asarray(Image.open(label_png))
    assert label_map.shape == (400, 600)
    painted = np.zeros((400, 600), np.int64)
    for i, m in enumerate(want, start=1):
        painted[m] = i  # a later object wins where masks overlap (none overlap with exclusion)
    assert np.array_equal(label_map.astype(np.int64), painted)


@pytest.mark.parametrize("objects, message", [
    ("[]", "non-empty JSON list"),
    ("{bad", "not valid JSON"),
    ('[{"label": "a", "points": [[9000, 1, 1]]}]', "object 1: point 1"),
    ('[{"label": 3, "points": [[9, 1, 1]]}]', "label must be a string"),
])
def test_annotate_bad_objects_get_a_clear_message(client, objects, message):
    with pytest.raises(Exception) as err:
        client.predict(handle_file(str(COFFEE)), objects, False, True, api_name="/annotate")
    assert message in str(err.value)
