"""segment_everything: SAM's automatic mask generator on the Segmenter's cached embedding.

test-tiny's decoder is random: its masks are specks over the whole image whose predicted IoU is
~0 and whose stability score is 0, so the runs here turn the IoU/stability filters off and the
box NMS off (threshold 1.0) to keep every candidate (48 on a 4x4 grid). In the crop runs, SAM's
filter of masks touching a crop's inner edge is replaced by "keep all" *for both* our run and the
reference run, or no crop mask would survive and the crop path would go untested; the crops
also get a 2x2 grid instead of 4x4 (SAM's ``crop_n_points_downscale_factor=2`` grids, for both
runs) to keep the test short: the decoder is vit_h's, ~60 ms a point on 2 cores.
"""

from __future__ import annotations

import itertools
import threading
import time

import numpy as np
import pytest
import torch
from segment_anything import SamAutomaticMaskGenerator
from segment_anything import automatic_mask_generator as sam_amg
from synth import photo_like

from sam_core import Segmenter
from sam_core.core.errors import UserError
from sam_core.core.sizes import ImageSize
from sam_core.model.everything import (
    EverythingResult,
    EverythingSettings,
    Region,
    decode_ms_per_point,
    estimate_ms,
    segment_everything,
)

IMAGE = photo_like(96, 128)
FULL_BOX = (0, 0, 128, 96)
# Filters off so the random decoder's masks survive; batches of 4 points (4 batches per crop).
SETTINGS = EverythingSettings(
    points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0, points_per_batch=4
)


def fresh(tiny: Segmenter) -> Segmenter:
    """A Segmenter over test-tiny's model with its own (empty) cache and encoder counter."""
    return Segmenter(tiny.model, model_type=tiny.model_type, placement=tiny.placement)


def reference(model, rgb: np.ndarray, crop_n_layers: int, min_mask_region_area: int = 0) -> list[dict]:
    """SAM's own generator with SETTINGS' values, its records sorted by area (stable, largest first)."""
    gen = SamAutomaticMaskGenerator(
        model,
        points_per_side=4,
        points_per_batch=4,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
        box_nms_thresh=1.0,
        crop_n_layers=crop_n_layers,
        min_mask_region_area=min_mask_region_area,
        output_mode="binary_mask",
    )
    return sorted(gen.generate(rgb), key=lambda a: -a["area"])


def assert_same_regions(result: EverythingResult, anns: list[dict]) -> None:
    assert len(result.regions) == len(anns) > 0
    for region, ann in zip(result.regions, anns, strict=True):
        assert region.mask.dtype == bool and region.mask.shape == IMAGE.shape[:2]
        assert np.array_equal(region.mask, ann["segmentation"])
        assert region.area == ann["area"] == int(region.mask.sum())
        ys, xs = np.nonzero(region.mask)
        assert region.bbox == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert region.predicted_iou == ann["predicted_iou"]
        assert region.stability_score == ann["stability_score"]
        assert region.point == tuple(ann["point_coords"][0])
        x, y, w, h = ann["crop_box"]
        assert region.crop_box == (x, y, x + w, y + h)
    areas = [r.area for r in result.regions]
    assert areas == sorted(areas, reverse=True)


def keep_all(boxes: torch.Tensor, crop_box: list[int], orig_box: list[int]) -> torch.Tensor:
    return torch.zeros(len(boxes), dtype=torch.bool, device=boxes.device)


def small_crop_grids(mp: pytest.MonkeyPatch) -> None:
    """Crop layer i gets a grid of points_per_side / 2**i per side (both generators build theirs with it)."""
    build = sam_amg.build_all_layer_point_grids
    mp.setattr(sam_amg, "build_all_layer_point_grids", lambda n, layers, _scale: build(n, layers, 2))


@pytest.fixture(scope="module")
def crop_run(tiny_segmenter):
    """One run with crop_n_layers=1 on a fresh (uncached) Segmenter + SAM's run, edge filter off."""
    seg = fresh(tiny_segmenter)
    calls: list[tuple[float, str]] = []
    settings = EverythingSettings(**{**SETTINGS.__dict__, "crop_n_layers": 1})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sam_amg, "is_box_near_crop_edge", keep_all)
        small_crop_grids(mp)
        result = segment_everything(seg, IMAGE, settings=settings, progress=lambda f, m: calls.append((f, m)))
        anns = reference(tiny_segmenter.model, IMAGE, crop_n_layers=1)
    return result, anns, calls, seg.encoder_runs


def test_no_crops_equals_sam_generator_and_reuses_the_cached_embedding(tiny_segmenter):
    seg = fresh(tiny_segmenter)
    emb, hit = seg.embed(IMAGE)  # what the app did when the image was opened
    assert not hit and seg.encoder_runs == 1
    before = emb.features.clone()

    again = segment_everything(seg, IMAGE, settings=SETTINGS)
    assert seg.encoder_runs == 1  # the cached embedding was used: no encoder run
    assert again.timings["encoder_runs"] == 0 and again.timings["encode_ms"] == 0
    assert again.timings["crops"] == 1 and again.timings["points"] == 16
    assert torch.equal(seg.embed(IMAGE)[0].features, before)  # the cache entry is untouched

    assert again.size == ImageSize(128, 96) and again.settings == SETTINGS
    anns = reference(tiny_segmenter.model, IMAGE, crop_n_layers=0)
    assert len(anns) == 48  # 16 points x 3 candidates, nothing filtered
    assert_same_regions(again, anns)
    assert all(r.crop_box == FULL_BOX for r in again.regions)


def test_min_region_area_uses_sam_postprocessing(tiny_segmenter):
    seg = fresh(tiny_segmenter)
    seg.embed(IMAGE)
    settings = EverythingSettings(**{**SETTINGS.__dict__, "min_mask_region_area": 20})
    calls: list[str] = []
    result = segment_everything(seg, IMAGE, settings=settings, progress=lambda f, m: calls.append(m))
    assert "removing small regions and holes…" in calls
    assert_same_regions(result, reference(tiny_segmenter.model, IMAGE, crop_n_layers=0, min_mask_region_area=20))
    plain = reference(tiny_segmenter.model, IMAGE, crop_n_layers=0)
    assert sum(r.area for r in result.regions) != sum(a["area"] for a in plain)  # the clean-up changed masks


def test_crops_equal_sam_generator_and_each_crop_is_encoded(crop_run):
    result, anns, _calls, encoder_runs = crop_run
    assert_same_regions(result, anns)
    assert {r.crop_box for r in result.regions} - {FULL_BOX}  # masks of the sub-crops made it
    # The full image (not cached yet) + the 4 crops of layer 1.
    assert encoder_runs == 1 + 4
    assert result.timings["encoder_runs"] == 5 and result.timings["crops"] == 5
    assert result.timings["points"] == 16 + 4 * 4 and result.timings["encode_ms"] > 0


def test_progress_is_reported_per_crop_and_per_batch(crop_run):
    _result, _anns, calls, _runs = crop_run
    fractions = [f for f, _ in calls]
    assert all(0.0 <= f <= 1.0 for f in fractions)
    assert fractions == sorted(fractions) and fractions[0] < 0.2 and fractions[-1] == 1.0
    messages = [m for _, m in calls]
    assert [m for m in messages if m.startswith("encoding crop")] == [f"encoding crop {i}/5…" for i in range(2, 6)]
    assert sum("point batch" in m for m in messages) == 4 + 4 * 1  # 16 + 4 x 4 points in batches of 4
    batch_fractions = [f for f, m in calls if "point batch" in m]
    assert all(b > a for a, b in itertools.pairwise(batch_fractions))


def test_uncached_image_is_encoded_once_and_decoding_waits_for_the_decoder_lock(tiny_segmenter):
    seg = fresh(tiny_segmenter)  # IMAGE is not in its cache
    calls: list[str] = []
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        with seg._decoder_lock:
            locked.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    locked.wait(10)
    out: list[EverythingResult] = []
    worker = threading.Thread(
        target=lambda: out.append(
            segment_everything(seg, IMAGE, settings=SETTINGS, progress=lambda f, m: calls.append(m))
        )
    )
    worker.start()
    time.sleep(0.5)  # a batch of 4 points takes ~0.2 s on 2 cores: it would have finished
    assert not any("point batch" in m for m in calls)
    release.set()
    worker.join(60)
    holder.join(10)
    assert out and sum("point batch" in m for m in calls) == 4
    assert seg.encoder_runs == 1  # the full image, once (the encoder has its own lock)
    assert out[0].timings["encoder_runs"] == 1 and out[0].timings["encode_ms"] > 0
    assert len(out[0].regions) == 48 and seg.embed(IMAGE)[1]  # and it is cached now


def test_label_map_paints_smaller_regions_over_larger_ones():
    size = ImageSize(12, 10)

    def rect(x1: int, y1: int, x2: int, y2: int) -> Region:
        mask = np.zeros(size.hw, bool)
        mask[y1:y2, x1:x2] = True
        return Region(mask, int(mask.sum()), (x1, y1, x2, y2), 0.9, 0.9, (x1 + 0.5, y1 + 0.5), (0, 0, 12, 10))

    big, mid, small, apart = rect(0, 0, 10, 8), rect(2, 2, 6, 6), rect(3, 3, 5, 5), rect(10, 8, 12, 10)
    result = EverythingResult((big, mid, small, apart), size, {}, EverythingSettings())
    labels = result.label_map()
    assert labels.dtype == np.uint16 and labels.shape == (10, 12)
    assert labels[4, 4] == 3  # inside all three nested squares: the smallest wins
    assert labels[2, 2] == 2 and labels[5, 5] == 2  # in mid, outside small
    assert labels[0, 0] == 1 and labels[7, 9] == 1 and labels[2, 6] == 1  # only in big
    assert labels[9, 11] == 4 and labels[8, 10] == 4  # the separate square
    assert labels[9, 0] == 0 and labels[0, 11] == 0  # in no region
    assert np.count_nonzero(labels == 1) == 80 - 16 and np.count_nonzero(labels == 2) == 16 - 4
    assert np.count_nonzero(labels == 3) == 4 and np.count_nonzero(labels == 4) == 4
    empty = EverythingResult((), size, {}, EverythingSettings()).label_map()
    assert empty.shape == (10, 12) and not empty.any()


def test_estimate_ms_counts_points_crops_and_encodes():
    size = ImageSize(1000, 500)  # 0.5 MP
    flat = EverythingSettings(points_per_side=16)
    frame = 1024 * 1024 / 1e6  # SAM upsamples every mask to its 1024x1024 frame first
    # 256 points x (2 ms decoder + 16 ms/MP x (0.5 MP + the frame)).
    assert estimate_ms(flat, size, decode_ms_per_point=2.0, encode_ms=100.0, upsample_ms_per_mpx=16.0) == (
        pytest.approx(256 * (2 + 16 * (0.5 + frame)))
    )
    # One crop layer: 4 crops of ceil((1000 + 170) / 2) x ceil((500 + 170) / 2) = 585 x 335 px
    # (overlap int(512/1500 * 500) = 170), 256 points each, and 4 encodes.
    crops = EverythingSettings(points_per_side=16, crop_n_layers=1)
    expected = 256 * (2 + 16 * (0.5 + frame)) + 4 * 256 * (2 + 16 * (585 * 335 / 1e6 + frame)) + 4 * 100
    assert estimate_ms(crops, size, decode_ms_per_point=2.0, encode_ms=100.0, upsample_ms_per_mpx=16.0) == (
        pytest.approx(expected)
    )
    grown = [
        estimate_ms(EverythingSettings(points_per_side=n), size, decode_ms_per_point=50.0, encode_ms=500.0)
        for n in (4, 8, 16, 32, 64)
    ]
    assert grown[0] > 0 and grown == sorted(grown) and len(set(grown)) == 5


def test_decode_ms_per_point_is_a_positive_number(tiny_segmenter):
    ms = decode_ms_per_point(tiny_segmenter, points=2, repeats=1)
    assert np.isfinite(ms) and ms > 0


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("points_per_side", 3, "points per side must be 4 to 64"),
        ("points_per_side", 65, "points per side must be 4 to 64"),
        ("crop_n_layers", 3, "crop layers must be 0, 1 or 2"),
        ("pred_iou_thresh", 1.5, "IoU threshold"),
        ("min_mask_region_area", -1, "minimum region area"),
        ("points_per_batch", 0, "points per batch"),
    ],
)
def test_settings_out_of_range_are_user_errors(field, value, words):
    with pytest.raises(UserError, match=words):
        EverythingSettings(**{field: value})


def test_no_region_in_any_crop_gives_an_empty_result(tiny_segmenter, monkeypatch):
    # SAM's own generator fails here (its crop NMS gets a (0,) crop-box tensor).
    small_crop_grids(monkeypatch)
    seg = fresh(tiny_segmenter)
    settings = EverythingSettings(points_per_side=4, points_per_batch=4, crop_n_layers=1, pred_iou_thresh=1.0)
    result = segment_everything(seg, IMAGE, settings=settings)
    assert result.regions == () and result.timings["crops"] == 5
    assert not result.label_map().any()
