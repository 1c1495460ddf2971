"""The real model adapters (random weights, CPU): outputs, batching, the call pattern, how the models are built.

Random weights make the numbers meaningless; the known answers here are sam2's own predictor and model builder.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from unsamv2.core.constants import GRANULARITY_GRID
from unsamv2.datasets.sample import ObjectMask, Sample
from unsamv2.evaluate.adapters import Sam2BaselineModel
from unsamv2.evaluate.interactive import evaluate_dataset
from unsamv2.evaluate.modes import GranularityMode

POINTS = np.array([[[10.0, 20.0], [30.0, 5.0]]], np.float32)
LABELS = np.array([[1, 0]], np.int32)


def test_sam2_adapter_single_and_best_of_3_shapes(sam2_tiny):
    (single,) = sam2_tiny.predict_batch(POINTS, LABELS, [None], None)
    assert single.logits.shape == (1, 48, 64) and single.low_res_logits.shape == (1, 256, 256)
    (multi,) = sam2_tiny.predict_batch(POINTS, LABELS, [None], None, multimask=True)
    assert multi.logits.shape == (3, 48, 64) and multi.iou_pred.shape == (3,)
    # Known answer: exactly what sam2's predictor returns for the same (un-batched) prompt.
    masks, ious, low_res = sam2_tiny.predictor.predict(point_coords=POINTS[0], point_labels=LABELS[0],
                                                       multimask_output=True, return_logits=True)
    np.testing.assert_allclose(multi.logits, masks, atol=1e-5)
    np.testing.assert_allclose(multi.low_res_logits, low_res, atol=1e-5)
    np.testing.assert_allclose(multi.iou_pred, ious, atol=1e-6)
    with pytest.raises(ValueError, match="no granularity"):
        sam2_tiny.predict_batch(POINTS, LABELS, [0.5], None)


def test_sam2_adapter_batch_rows_match_single_calls(sam2_tiny):
    points = np.concatenate([POINTS, POINTS + 7.0])
    labels = np.repeat(LABELS, 2, axis=0)
    mask_input = np.random.default_rng(1).normal(size=(2, 256, 256)).astype(np.float32)
    batch = sam2_tiny.predict_batch(points, labels, [None] * 2, mask_input)
    for b in range(2):
        (single,) = sam2_tiny.predict_batch(points[b : b + 1], labels[b : b + 1], [None], mask_input[b : b + 1])
        np.testing.assert_allclose(batch[b].logits, single.logits, atol=1e-4)


def test_sam2_built_by_config_by_size_and_by_sam2_itself_is_the_same_model(tmp_path: Path, image):
    """Both build paths load the same weights the same way as sam2's ``build_sam2`` (the reference), and predict
    identically."""
    from sam2.build_sam import build_sam2

    from unsamv2.model.build import MODEL_CONFIGS, build_sam2_base

    torch.manual_seed(0)
    checkpoint = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": build_sam2_base("tiny").state_dict()}, checkpoint)
    reference = build_sam2(MODEL_CONFIGS["tiny"], str(checkpoint), device="cpu")
    by_config = Sam2BaselineModel.build(MODEL_CONFIGS["tiny"], checkpoint, device="cpu")
    by_size = Sam2BaselineModel.build_sized("tiny", checkpoint, 1024, device="cpu")

    expected = reference.state_dict()
    outputs = []
    for model in (by_config, by_size):
        built = model.predictor.model
        state = built.state_dict()
        assert state.keys() == expected.keys() and all(torch.equal(state[k], expected[k]) for k in expected)
        assert type(built) is type(reference) and not built.training and not reference.training
        decoder, ref_decoder = built.sam_mask_decoder, reference.sam_mask_decoder
        assert decoder.dynamic_multimask_via_stability and ref_decoder.dynamic_multimask_via_stability
        assert decoder.dynamic_multimask_stability_delta == ref_decoder.dynamic_multimask_stability_delta == 0.05
        assert decoder.dynamic_multimask_stability_thresh == ref_decoder.dynamic_multimask_stability_thresh == 0.98
        assert model.predictor._bb_feat_sizes == [(256, 256), (128, 128), (64, 64)]  # sam2's own 1024-px sizes
        model.set_image(image)
        outputs.append([model.predict_batch(POINTS, LABELS, [None], None, multimask=m)[0] for m in (False, True)])
    for got, want in zip(outputs[1], outputs[0]):
        np.testing.assert_array_equal(got.logits, want.logits)
        np.testing.assert_array_equal(got.low_res_logits, want.low_res_logits)
        np.testing.assert_array_equal(got.iou_pred, want.iou_pred)


def test_sam2_at_a_smaller_input_size(image):
    model = Sam2BaselineModel.build_sized("tiny", None, 128, device="cpu")
    assert model.predictor._bb_feat_sizes == [(32, 32), (16, 16), (8, 8)]
    model.set_image(image)
    (multi,) = model.predict_batch(POINTS, LABELS, [None], None, multimask=True)
    assert multi.logits.shape == (3, 48, 64) and multi.low_res_logits.shape == (3, 32, 32)  # 128 / 4


def test_unsamv2_adapter_batches_granularities(unsamv2_tiny):
    points = np.repeat(POINTS, 10, axis=0)
    labels = np.repeat(LABELS, 10, axis=0)
    batch = unsamv2_tiny.predict_batch(points, labels, list(GRANULARITY_GRID), None)
    assert len(batch) == 10 and batch[0].logits.shape == (1, 48, 64)
    (single,) = unsamv2_tiny.predict_batch(points[3:4], labels[3:4], [GRANULARITY_GRID[3]], None)
    np.testing.assert_allclose(batch[3].logits, single.logits, atol=1e-4)
    with pytest.raises(ValueError, match="needs a granularity"):
        unsamv2_tiny.predict_batch(POINTS, LABELS, [None], None)
    with pytest.raises(ValueError, match="best_of_3"):
        unsamv2_tiny.predict_batch(POINTS, LABELS, [0.5], None, multimask=True)


class CountingModel:
    """Wraps a real adapter and counts image encodings and decoder rows."""

    def __init__(self, inner):
        self.inner, self.name = inner, inner.name
        self.encodings = 0
        self.batches: list[int] = []

    def set_image(self, image):
        self.encodings += 1
        self.inner.set_image(image)

    def predict_batch(self, points_xy, labels, granularities, mask_input, multimask=False):
        self.batches.append(len(granularities))
        return self.inner.predict_batch(points_xy, labels, granularities, mask_input, multimask)


def test_oracle_loop_with_the_real_unsamv2_adapter(unsamv2_tiny, image):
    gt = np.zeros((48, 64), bool)
    gt[10:30, 15:45] = True
    samples = [Sample("x", Path("x.png"), [ObjectMask(gt, None, "1"), ObjectMask(~gt, None, "2")])]
    model = CountingModel(unsamv2_tiny)
    result = evaluate_dataset(model, samples, [GranularityMode("oracle")], dataset="toy", target_iou=0.9,
                              max_clicks=2, progress=False, image_loader=lambda p: image)
    assert model.encodings == 1
    assert model.batches[0] == 10  # the first click of all ten granularities in one call
    assert len(result.sequences("oracle")) == 2
