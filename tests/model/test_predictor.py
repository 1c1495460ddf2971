"""Interactive predictor: shapes, granularity input types and errors, batching, M2M, thresholds, IoU slots."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unsamv2.model.build import build_sam2_base
from unsamv2.model.predictor import UnSAMv2ImagePredictor

CLICK = np.array([[60.0, 50.0]])
POS = np.array([1])
GS = np.round(np.linspace(0.1, 1.0, 10), 1)


def test_output_shapes(predictor: UnSAMv2ImagePredictor, photo: np.ndarray) -> None:
    masks, iou, low_res = predictor.predict(CLICK, POS, 0.5)
    h, w = photo.shape[:2]
    assert masks.shape == (1, h, w) and masks.dtype == bool
    assert iou.shape == (1,)
    assert low_res.shape == (1, 64, 64)  # image_size / 4


@pytest.mark.parametrize("g", [0.5, 1, np.float32(0.5), np.float64(0.5), np.int64(1)])
def test_granularity_accepts_python_and_numpy_numbers(predictor: UnSAMv2ImagePredictor, g: object) -> None:
    logits, _, _ = predictor.predict(CLICK, POS, g, return_logits=True)
    ref, _, _ = predictor.predict(CLICK, POS, float(g), return_logits=True)
    assert np.allclose(logits, ref, atol=1e-5)


@pytest.mark.parametrize(
    ("g", "match"),
    [(0.0, r"\[0\.1, 1\.0\]"), (1.5, r"\[0\.1, 1\.0\]"), (float("nan"), "NaN"), (0, r"\[0\.1")],
)
def test_bad_granularities_are_value_errors(predictor: UnSAMv2ImagePredictor, g: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        predictor.predict(CLICK, POS, g)
    with pytest.raises(ValueError):
        predictor.predict_granularities(CLICK, POS, [0.5, g])


def test_granularity_is_required(predictor: UnSAMv2ImagePredictor) -> None:
    with pytest.raises(TypeError):
        predictor.predict(CLICK, POS, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="granularity in \\[0.1, 1.0\\] is required"):
        predictor._predict(torch.zeros(1, 1, 2), torch.ones(1, 1, dtype=torch.int))


def test_the_granularity_token_changes_the_mask(predictor: UnSAMv2ImagePredictor) -> None:
    low, _, _ = predictor.predict(CLICK, POS, 0.1, return_logits=True)
    high, _, _ = predictor.predict(CLICK, POS, 1.0, return_logits=True)
    assert np.abs(low - high).max() > 1e-3


def test_batched_granularities_equal_single_calls(predictor: UnSAMv2ImagePredictor) -> None:
    masks, ious, low_res = predictor.predict_granularities(CLICK, POS, GS, return_logits=True)
    assert masks.shape[0] == ious.shape[0] == low_res.shape[0] == 10
    for i, g in enumerate(GS):
        m, iou, lr = predictor.predict(CLICK, POS, g, return_logits=True)
        np.testing.assert_allclose(m[0], masks[i], atol=1e-3)
        np.testing.assert_allclose(lr[0], low_res[i], atol=1e-3)
        assert iou[0] == pytest.approx(ious[i], abs=1e-5)


def test_batched_queries_with_different_clicks_and_granularities(predictor: UnSAMv2ImagePredictor) -> None:
    coords = np.array(
        [[[60.0, 50.0], [10.0, 10.0]], [[100.0, 150.0], [20.0, 180.0]], [[5.0, 5.0], [150.0, 100.0]]]
    )
    labels = np.array([[1, 0], [1, 1], [1, 0]])
    gs = [0.2, 0.6, 0.9]
    masks, ious, _ = predictor.predict_queries(coords, labels, gs, return_logits=True, m2m=True)
    for i in range(3):
        m, iou, _ = predictor.predict(coords[i], labels[i], gs[i], return_logits=True, m2m=True)
        np.testing.assert_allclose(m[0], masks[i], atol=1e-3)
        assert iou[0] == pytest.approx(ious[i], abs=1e-5)
    with pytest.raises(ValueError, match="2 granularities for 3 queries"):
        predictor.predict_queries(coords, labels, [0.2, 0.3])
    with pytest.raises(ValueError, match="Q×N×2"):
        predictor.predict_queries(coords[0], labels[0], 0.5)


def test_m2m_is_a_second_pass_on_the_first_pass_logits(predictor: UnSAMv2ImagePredictor) -> None:
    _, _, first_low = predictor.predict(CLICK, POS, 0.3, return_logits=True)
    expected, exp_iou, _ = predictor.predict(
        CLICK, POS, 0.3, mask_input=first_low, multimask_output=False, return_logits=True
    )
    got, iou, _ = predictor.predict(CLICK, POS, 0.3, return_logits=True, m2m=True)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert iou == pytest.approx(exp_iou)
    assert np.abs(got - predictor.predict(CLICK, POS, 0.3, return_logits=True)[0]).max() > 1e-4


def test_mask_threshold_is_configurable(tiny_model: torch.nn.Module, photo: np.ndarray) -> None:
    p = UnSAMv2ImagePredictor(tiny_model, mask_threshold=-1.0)
    assert p.mask_threshold == -1.0
    p.set_image(photo)
    logits, _, _ = p.predict(CLICK, POS, 0.5, return_logits=True)
    for threshold in (-1.0, 0.0, 2.5):
        p.mask_threshold = threshold
        masks, _, _ = p.predict(CLICK, POS, 0.5)
        assert np.array_equal(masks, logits > threshold)


def test_iou_comes_from_the_sam_iou_head_slots(predictor: UnSAMv2ImagePredictor) -> None:
    heads: list[torch.Tensor] = []
    handle = predictor.model.sam_mask_decoder.iou_prediction_head.register_forward_hook(
        lambda m, a, out: heads.append(out.detach().clone()) and None
    )
    try:
        _, iou_multi, _ = predictor.predict(CLICK, POS, 0.5, multimask_output=True)
        _, iou_single, _ = predictor.predict(CLICK, POS, 0.5, multimask_output=False)
    finally:
        handle.remove()
    assert iou_multi[0] == pytest.approx(heads[0][0, 1:4].max().item())
    assert iou_single[0] == pytest.approx(heads[1][0, 0].item())


def test_each_query_carries_one_granularity_token(predictor: UnSAMv2ImagePredictor) -> None:
    seen: list[tuple[int, ...]] = []
    handle = predictor.model.sam_prompt_encoder.register_forward_hook(
        lambda m, a, out: seen.append(tuple(out[0].shape)) and None
    )
    try:
        predictor.predict_granularities(
            np.array([[60.0, 50.0], [5.0, 5.0]]), np.array([1, 0]), [0.2, 0.4, 0.8]
        )
    finally:
        handle.remove()
    assert seen == [(3, 2 + 1 + 1, 256)]  # 3 queries × (2 clicks + pad + granularity): one batched call


def test_box_prompt(predictor: UnSAMv2ImagePredictor, photo: np.ndarray) -> None:
    """The box reaches the prompt encoder as SAM-2 is trained: its two corners as points labelled 2 and 3, in the
    model's input frame (photo 160 wide × 192 high → 256 × 256)."""
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def grab(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        coords, labels = kwargs["points"]
        seen.append((coords.detach().clone(), labels.detach().clone()))

    handle = predictor.model.sam_prompt_encoder.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        masks, iou, _ = predictor.predict(None, None, 0.7, box=np.array([10, 20, 120, 150]))
    finally:
        handle.remove()
    assert masks.shape == (1, *photo.shape[:2]) and iou.shape == (1,)
    coords, labels = seen[0]
    expected = torch.tensor([[[10 * 256 / 160, 20 * 256 / 192], [120 * 256 / 160, 150 * 256 / 192]]])
    assert torch.allclose(coords, expected, atol=1e-4) and labels.tolist() == [[2, 3]]


def test_errors_before_set_image_and_for_stock_models(tiny_model: torch.nn.Module) -> None:
    p = UnSAMv2ImagePredictor(tiny_model)
    with pytest.raises(RuntimeError, match="set_image"):
        p.predict(CLICK, POS, 0.5)
    with pytest.raises(ValueError, match="H×W×3"):
        p.set_image(np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(TypeError, match="build_unsamv2"):
        UnSAMv2ImagePredictor(build_sam2_base("tiny", image_size=256))


def test_feature_sizes_follow_the_model_input(predictor: UnSAMv2ImagePredictor) -> None:
    assert predictor._bb_feat_sizes == [(64, 64), (32, 32), (16, 16)]
    assert predictor.get_image_embedding().shape == (1, 256, 16, 16)


def test_multi_image_batch_api(tiny_model: torch.nn.Module, photo: np.ndarray) -> None:
    p = UnSAMv2ImagePredictor(tiny_model)
    images = [photo, np.ascontiguousarray(photo[::-1])]
    p.set_image_batch(images)
    masks, ious, _ = p.predict_batch([CLICK, CLICK], [POS, POS], granularity=0.6, return_logits=True)
    assert len(masks) == 2 and masks[0].shape == (1, *photo.shape[:2]) and ious[1].shape == (1,)
    single = UnSAMv2ImagePredictor(tiny_model)
    single.set_image(images[1])
    ref, _, _ = single.predict(CLICK, POS, 0.6, return_logits=True)
    np.testing.assert_allclose(masks[1], ref, atol=1e-3)
    with pytest.raises(ValueError, match="NaN"):
        p.predict_batch([CLICK], [POS], granularity=float("nan"))


def test_decoder_chunks_change_neither_masks_nor_scores(tiny_model: torch.nn.Module, photo: np.ndarray) -> None:
    """A large query batch is decoded in chunks (cache-sized on a CPU): same masks and IoUs as one call, and the
    decoder is called once per chunk."""
    p = UnSAMv2ImagePredictor(tiny_model, mask_threshold=-1.0)
    p.set_image(photo)
    assert p.decoder_chunk_size == 4  # CPU default
    coords = np.array([[[40.0 + 10 * k, 60.0]] for k in range(7)], dtype=np.float32)
    labels = np.ones((7, 1), dtype=np.int64)
    gs = [0.1, 0.3, 0.5, 0.7, 0.9, 1.0, 0.2]
    calls = []
    hook = p.model.sam_mask_decoder.register_forward_hook(lambda m, i, o: calls.append(o[0].shape[0]))
    try:
        chunked = p.predict_queries(coords, labels, gs, return_logits=True)
        p.decoder_chunk_size = None
        whole = p.predict_queries(coords, labels, gs, return_logits=True)
    finally:
        hook.remove()
    assert calls == [4, 3, 7]
    for a, b in zip(chunked, whole, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)
