"""The Segmenter against segment_anything.SamPredictor on the same (random) weights."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor
from synth import photo_like

from sam_core import CheckpointError, PromptError, Segmenter
from sam_core.core.sizes import ImageSize
from sam_core.model.build import build_test_tiny, enable_sdpa, resolve_placement

CASES = {
    "points": dict(points=[(120, 80, 1), (300, 200, 0)], box=None),
    "box": dict(points=None, box=(50, 40, 330, 260)),
    "box+points": dict(points=[(200, 150, 1)], box=(50, 40, 330, 260)),
}


def _reference(predictor: SamPredictor, points, box, multimask=True, mask_input=None):
    coords = labels = None
    if points:
        coords = np.array([p[:2] for p in points], dtype=np.float32)
        labels = np.array([p[2] for p in points])
    return predictor.predict(
        point_coords=coords, point_labels=labels,
        box=None if box is None else np.array(box, dtype=np.float32),
        mask_input=mask_input, multimask_output=multimask,
    )


@pytest.fixture(scope="module")
def pair():
    """A Segmenter and a SamPredictor sharing one test-tiny model, and a non-square image."""
    seg = Segmenter(build_test_tiny(), model_type="test-tiny", placement=resolve_placement("cpu", "fp32"))
    predictor = SamPredictor(seg.model)
    image = photo_like(300, 470, seed=3)  # H=300, W=470: non-square, needs padding
    predictor.set_image(image)
    return seg, predictor, image


@pytest.mark.parametrize("case", sorted(CASES))
def test_equivalent_to_sam_predictor(pair, case):
    seg, predictor, image = pair
    kw = CASES[case]
    ref_masks, ref_scores, ref_low = _reference(predictor, **kw)
    res = seg.segment(image, multimask=True, **kw)
    assert res.masks.shape == ref_masks.shape == (3, 300, 470)
    assert res.masks.dtype == bool
    assert np.array_equal(res.masks, ref_masks)
    np.testing.assert_allclose(res.scores, ref_scores, atol=1e-5, rtol=0)
    np.testing.assert_allclose(res.low_res_logits, ref_low, atol=1e-5, rtol=0)
    assert res.best_index == int(np.argmax(ref_scores))
    # the candidates differ from each other (otherwise this comparison would prove little)
    assert not np.array_equal(res.masks[0], res.masks[1])
    for i in range(3):
        assert np.array_equal(res.full_mask(i), ref_masks[i])


def test_single_mask_and_refinement_equivalent(pair):
    seg, predictor, image = pair
    first = seg.segment(image, points=[(120, 80, 1)], multimask=True)
    prev = first.low_res_logits[first.best_index][None]
    ref_masks, ref_scores, _ = _reference(predictor, [(120, 80, 1), (140, 90, 1)], None, False, prev)
    res = seg.segment(image, points=[(120, 80, 1), (140, 90, 1)], multimask=False, mask_input=prev)
    assert res.masks.shape == (1, 300, 470)
    assert np.array_equal(res.masks, ref_masks)
    np.testing.assert_allclose(res.scores, ref_scores, atol=1e-5, rtol=0)


def test_preview_masks_match_full_resolution(pair):
    seg, _, image = pair
    res = seg.segment(image, points=[(120, 80, 1)], box=(50, 40, 330, 260))
    # at the full size the preview path *is* the SamPredictor path
    assert np.array_equal(res.preview_masks(ImageSize(470, 300)), res.masks)
    preview = res.preview_masks(ImageSize(235, 150))
    assert preview.shape == (3, 150, 235) and preview.dtype == bool
    # random weights give high-frequency masks, so compare coverage rather than pixels
    np.testing.assert_allclose(preview.mean(axis=(1, 2)), res.masks.mean(axis=(1, 2)), atol=0.03)


def test_small_masks_match_preview_masks_within_a_pixel():
    """Thumbnails take one bilinear step from the logits; SAM's two steps give nearly the same mask."""
    import torch.nn.functional as F  # noqa: N812

    from sam_core.model.results import SegmentResult

    rng = np.random.default_rng(0)
    coarse = torch.from_numpy(rng.normal(size=(3, 1, 12, 12)).astype(np.float32))
    logits = F.interpolate(coarse, (256, 256), mode="bilinear")[:, 0].numpy() * 6  # smooth, like SAM's
    res = SegmentResult(np.zeros(3), logits, ImageSize(5472, 3648), ImageSize(1024, 683), {})
    size = ImageSize(320, 213)
    small, ref = res.small_masks(size), res.preview_masks(size)
    assert small.shape == ref.shape == (3, 213, 320)
    assert (small != ref).mean() < 0.01  # only along the outlines
    assert np.array_equal(res.small_masks(size, threshold=100.0), np.zeros_like(small))


def test_threshold_changes_masks_without_decoding(pair):
    seg, _, image = pair
    res = seg.segment(image, points=[(120, 80, 1)])
    low = res.preview_masks(ImageSize(235, 150), threshold=-2.0)
    high = res.preview_masks(ImageSize(235, 150), threshold=2.0)
    assert (low.sum() >= high.sum()) and np.all(low | ~high)  # high ⊂ low


def test_one_encode_for_two_calls():
    seg = Segmenter(build_test_tiny(), model_type="test-tiny", placement=resolve_placement("cpu", "fp32"))
    image = photo_like(200, 260, seed=5)
    a = seg.segment(image, points=[(10, 10, 1)])
    b = seg.segment(image, points=[(100, 120, 1)])
    assert seg.encoder_runs == 1
    assert a.timings["cache_hit"] is False and b.timings["cache_hit"] is True
    assert a.timings["encode_ms"] > 0 and b.timings["decode_ms"] > 0
    seg.segment(photo_like(200, 260, seed=6), points=[(10, 10, 1)])
    assert seg.encoder_runs == 2


def test_one_encode_for_two_threads_at_once():
    seg = Segmenter(build_test_tiny(), model_type="test-tiny", placement=resolve_placement("cpu", "fp32"))
    calls = []
    seg.model.image_encoder.register_forward_hook(lambda *a: calls.append(1))
    image = photo_like(480, 640, seed=7)
    barrier = threading.Barrier(2)
    results = [None, None]

    def work(i):
        barrier.wait()
        results[i] = seg.segment(image, points=[(50 + i, 60, 1)])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and seg.encoder_runs == 1
    assert sorted(r.timings["cache_hit"] for r in results) == [False, True]


def test_cache_is_lru_bounded():
    seg = Segmenter(build_test_tiny(), model_type="test-tiny", placement=resolve_placement("cpu", "fp32"),
                    cache_entries=2)
    imgs = [photo_like(64, 64, seed=s) for s in range(3)]
    for im in imgs:
        seg.embed(im)
    assert len(seg._cache) == 2
    _, hit = seg.embed(imgs[0])  # evicted first
    assert hit is False
    # byte bound: each embedding is 4 MiB in fp32
    seg2 = Segmenter(build_test_tiny(), model_type="test-tiny", placement=resolve_placement("cpu", "fp32"),
                     cache_entries=10, cache_mb=9)
    for im in imgs:
        seg2.embed(im)
    assert len(seg2._cache) == 2 and seg2._cache.nbytes <= 9 << 20


def test_invalid_prompts_are_rejected(tiny_segmenter, photo):
    with pytest.raises(PromptError, match="outside"):
        tiny_segmenter.segment(photo, points=[(1000, 10, 1)])
    with pytest.raises(PromptError, match="at least one"):
        tiny_segmenter.segment(photo)


def test_test_tiny_checkpoint_round_trip(tmp_path, photo):
    ref = Segmenter.from_pretrained("test-tiny", device="cpu")
    path = tmp_path / "tiny.pth"
    torch.save(build_test_tiny(seed=11).state_dict(), path)
    loaded = Segmenter.from_pretrained("test-tiny", checkpoint=path, device="cpu")
    direct = Segmenter(build_test_tiny(seed=11), model_type="test-tiny", placement=resolve_placement("cpu", "fp32"),
                       sdpa=True)
    a = loaded.segment(photo, points=[(100, 100, 1)])
    b = direct.segment(photo, points=[(100, 100, 1)])
    c = ref.segment(photo, points=[(100, 100, 1)])
    np.testing.assert_array_equal(a.scores, b.scores)
    assert not np.allclose(a.scores, c.scores)  # other seed, other weights
    bad = tmp_path / "bad.pth"
    torch.save({"nope": torch.zeros(1)}, bad)
    with pytest.raises(CheckpointError, match="bad.pth"):
        Segmenter.from_pretrained("test-tiny", checkpoint=bad, device="cpu")


def test_missing_cuda_falls_back_to_cpu():
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    with pytest.warns(RuntimeWarning, match="CPU"):
        placement = resolve_placement("cuda", "auto")
    assert placement.device.type == "cpu" and placement.precision == "fp32"
    assert resolve_placement("auto", "auto").precision == "fp32"
    assert resolve_placement("cpu", "bf16").dtype == torch.bfloat16


def test_sdpa_attention_matches_eager():
    eager = build_test_tiny()
    fast = build_test_tiny()
    assert enable_sdpa(fast) == 2
    x = torch.randn(1, 3, 1024, 1024)
    with torch.inference_mode():
        a = eager.image_encoder(x)
        b = fast.image_encoder(x)
    assert float((a - b).abs().max()) < 1e-4


def test_encoder_input_is_sam_predictors(pair):
    """Our resize to 1024 is SamPredictor's exactly (tolerance: none), so embeddings match."""
    from segment_anything.utils.transforms import ResizeLongestSide

    seg, _, image = pair
    big = photo_like(1500, 2300, seed=9)
    for img in (image, big):
        ref = torch.as_tensor(ResizeLongestSide(1024).apply_image(img)).permute(2, 0, 1).contiguous()[None]
        assert torch.equal(seg.prepare_input(img), ref)


def test_fast_path_bf16_sdpa_agrees_with_fp32(photo):
    """The CUDA recipe (bf16 autocast + SDPA), run on the CPU: masks agree with fp32 eager."""
    fp32 = Segmenter(build_test_tiny(), model_type="test-tiny", placement=resolve_placement("cpu", "fp32"))
    fast = Segmenter(build_test_tiny(), model_type="test-tiny", placement=resolve_placement("cpu", "bf16"), sdpa=True)
    assert fast.sdpa and fast.placement.precision == "bf16"
    ious = []
    for points, box in [([(120, 80, 1)], None), (None, (50, 40, 330, 260)), ([(200, 150, 1), (30, 30, 0)], None)]:
        a = fp32.segment(photo, points=points, box=box)
        b = fast.segment(photo, points=points, box=box)
        m1, m2 = a.masks[a.best_index], b.masks[a.best_index]
        ious.append((m1 & m2).sum() / max((m1 | m2).sum(), 1))
    assert min(ious) > 0.95, ious


def test_default_sdpa_path_is_equivalent_within_tolerance(pair):
    """from_pretrained uses SDPA attention: scores within 1e-5 of SamPredictor's (eager), and
    masks equal except for pixels whose logit sits within ~1e-5 of the threshold."""
    _, predictor, image = pair
    fast = Segmenter.from_pretrained("test-tiny", device="cpu")
    assert fast.sdpa
    for kw in CASES.values():
        ref_masks, ref_scores, ref_low = _reference(predictor, **kw)
        res = fast.segment(image, **kw)
        np.testing.assert_allclose(res.scores, ref_scores, atol=1e-5, rtol=0)
        np.testing.assert_allclose(res.low_res_logits, ref_low, atol=1e-4, rtol=0)
        differ = (res.masks != ref_masks).mean()
        assert differ <= 1e-4, differ
