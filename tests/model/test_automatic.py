"""Whole-image generation at a granularity: official settings, records, pooling, and agreement with the predictor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unsamv2.core.constants import GRANULARITY_GRID
from unsamv2.io.masks import decode_rle
from unsamv2.model.automatic import UnSAMv2AutomaticMaskGenerator, official_thresholds
from unsamv2.model.predictor import UnSAMv2ImagePredictor


def test_defaults_are_the_official_whole_image_settings(tiny_model: torch.nn.Module) -> None:
    gen = UnSAMv2AutomaticMaskGenerator(tiny_model)
    assert gen.point_grids[0].shape == (64 * 64, 2)
    assert gen.points_per_batch == 128
    assert gen.mask_threshold == -1.0
    assert gen.stability_score_offset == 0.7
    assert gen.box_nms_thresh == 0.7
    assert gen.crop_n_layers == 0
    assert gen.min_mask_region_area == 0
    assert gen.use_m2m is True and gen.multimask_output is True
    assert gen.output_mode == "coco_rle"
    assert isinstance(gen.predictor, UnSAMv2ImagePredictor)
    assert gen.thresholds_for(0.3) == (0.65, 0.7)
    assert gen.thresholds_for(0.5) == (0.5, 0.7)
    assert GRANULARITY_GRID == (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@pytest.mark.parametrize(
    ("g", "expected"), [(0.1, (0.65, 0.7)), (0.49, (0.65, 0.7)), (0.5, (0.5, 0.7)), (1.0, (0.5, 0.7))]
)
def test_official_per_granularity_thresholds(g: float, expected: tuple[float, float]) -> None:
    assert official_thresholds(g) == expected


def test_fixed_thresholds_override_the_per_granularity_ones(tiny_model: torch.nn.Module) -> None:
    gen = UnSAMv2AutomaticMaskGenerator(tiny_model, pred_iou_thresh=0.2, stability_score_thresh=0.1)
    assert gen.thresholds_for(0.3) == (0.2, 0.1)


@pytest.fixture(scope="module")
def open_generator(tiny_model: torch.nn.Module) -> UnSAMv2AutomaticMaskGenerator:
    """A small grid with all quality filters open, so that the random-weight model yields masks."""
    return UnSAMv2AutomaticMaskGenerator(
        tiny_model,
        points_per_side=4,
        points_per_batch=16,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
        box_nms_thresh=0.99,
    )


def test_records_at_one_granularity(open_generator: UnSAMv2AutomaticMaskGenerator, photo: np.ndarray) -> None:
    records = open_generator.generate(photo, 0.3)
    assert records, "the open filters must let masks through"
    for rec in records:
        assert set(rec) == {
            "segmentation",
            "area",
            "bbox",
            "predicted_iou",
            "point_coords",
            "stability_score",
            "crop_box",
            "granularity",
        }
        assert rec["granularity"] == 0.3  # exactly, not a float32 round-off
        seg = rec["segmentation"]
        assert seg["size"] == list(photo.shape[:2]) and isinstance(seg["counts"], str)
        mask = decode_rle(seg)
        assert int(mask.sum()) == rec["area"]


def test_generated_masks_equal_the_interactive_predictor_with_m2m(
    open_generator: UnSAMv2AutomaticMaskGenerator, predictor: UnSAMv2ImagePredictor, photo: np.ndarray
) -> None:
    records = open_generator.generate(photo, 0.7)
    p = UnSAMv2ImagePredictor(predictor.model, mask_threshold=-1.0)
    p.set_image(photo)
    for rec in records[:4]:
        point = np.array(rec["point_coords"])
        masks, iou, _ = p.predict(point, np.array([1]), 0.7, m2m=True)
        agreement = np.mean(masks[0] == decode_rle(rec["segmentation"]))
        assert agreement > 0.999
        assert iou[0] == pytest.approx(rec["predicted_iou"], abs=1e-4)


def test_pooled_mode_encodes_once_and_keeps_every_granularity(
    tiny_model: torch.nn.Module, photo: np.ndarray
) -> None:
    gen = UnSAMv2AutomaticMaskGenerator(
        tiny_model,
        points_per_side=3,
        points_per_batch=9,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
        box_nms_thresh=0.99,
    )
    model = gen.predictor.model
    gen.predictor.decoder_chunk_size = None  # count batches, not the CPU's cache-sized decoder chunks
    calls = {"encode": 0, "decode": 0}
    h1 = model.image_encoder.register_forward_hook(
        lambda *a: calls.__setitem__("encode", calls["encode"] + 1)
    )
    h2 = model.sam_mask_decoder.register_forward_hook(
        lambda *a: calls.__setitem__("decode", calls["decode"] + 1)
    )
    try:
        pooled = gen.generate_pooled(photo, [0.2, 0.9])
    finally:
        h1.remove()
        h2.remove()
    assert calls["encode"] == 1
    # 9 points = one batch per granularity, decoded twice (first pass + M2M)
    assert calls["decode"] == 2 * 1 * 2
    single = [gen.generate(photo, g) for g in (0.2, 0.9)]
    assert len(pooled) == sum(len(s) for s in single)  # no NMS across granularities
    assert [r["granularity"] for r in pooled] == [0.2] * len(single[0]) + [0.9] * len(single[1])
    assert [r["segmentation"] for r in pooled] == [r["segmentation"] for s in single for r in s]


def test_official_filters_apply_per_granularity(tiny_model: torch.nn.Module, photo: np.ndarray) -> None:
    gen = UnSAMv2AutomaticMaskGenerator(tiny_model, points_per_side=3, points_per_batch=9)
    for g in (0.3, 0.8):
        iou_t, stab_t = official_thresholds(g)
        for rec in gen.generate(photo, g):
            assert rec["predicted_iou"] > iou_t and rec["stability_score"] >= stab_t


def test_input_errors(open_generator: UnSAMv2AutomaticMaskGenerator, photo: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"\[0\.1, 1\.0\]"):
        open_generator.generate(photo, 1.2)
    with pytest.raises(ValueError, match="NaN"):
        open_generator.generate_pooled(photo, [0.5, float("nan")])
    with pytest.raises(ValueError, match="H×W×3"):
        open_generator.generate(photo[..., 0], 0.5)


@pytest.mark.parametrize(("g", "iou_t"), [(0.3, None), (0.8, 0.0)])
def test_fast_postprocess_gives_sam2s_outputs_exactly(
    tiny_model: torch.nn.Module, photo: np.ndarray, g: float, iou_t: float | None
) -> None:
    """Upsampling only the masks that pass the IoU filter changes nothing: same records, bit for bit, as sam2's
    own `_process_batch` (official per-g thresholds, and all filters open)."""
    kwargs = {"points_per_side": 6, "points_per_batch": 16, "pred_iou_thresh": iou_t,
              "stability_score_thresh": None if iou_t is None else 0.0}
    fast = UnSAMv2AutomaticMaskGenerator(tiny_model, **kwargs).generate(photo, g)
    slow = UnSAMv2AutomaticMaskGenerator(tiny_model, fast_postprocess=False, **kwargs).generate(photo, g)
    assert len(fast) == len(slow)
    if iou_t == 0.0:
        assert len(fast) > 0  # open filters: the comparison covers real masks
    for a, b in zip(fast, slow, strict=True):
        assert a == b


def test_fast_postprocess_upsamples_only_kept_masks(tiny_model: torch.nn.Module, photo: np.ndarray) -> None:
    gen = UnSAMv2AutomaticMaskGenerator(tiny_model, points_per_side=4, points_per_batch=16, pred_iou_thresh=0.99)
    sizes: list[int] = []
    original = gen.predictor.upsample_logits

    def counting(low_res: torch.Tensor, img_idx: int = -1) -> torch.Tensor:
        sizes.append(low_res.shape[0])
        return original(low_res, img_idx)

    gen.predictor.upsample_logits = counting  # type: ignore[method-assign]
    gen.generate(photo, 0.5)
    # one batch of 16 points; the random model's IoU predictions are far below 0.99, so nothing is upsampled
    assert sizes == [0] or sum(sizes) < 16
