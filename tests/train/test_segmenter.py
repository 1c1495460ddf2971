"""The prompt-step forward: first click plus corrections on the previous error, granularity input, best-of-3."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from unsamv2.train import segmenter
from unsamv2.train.config import TrainConfig
from unsamv2.train.dataset import PseudoLabelDataset, collate
from unsamv2.train.losses import MultiStepLoss
from unsamv2.train.segmenter import MultiStepSegmenter, click_generators, mean_iou, select_best_masks
from unsamv2.train.trainable import build_training_model


def _batch(scenes: Path, size: int, n_items: int = 2) -> dict:
    ds = PseudoLabelDataset(scenes / "annotations", scenes / "images", image_size=size, max_masks=3, augment=False)
    return collate([ds[i] for i in range(n_items)])


@pytest.mark.parametrize("sampler", ["uniform", "graco"])
def test_segmenter_clicks_on_the_error_of_the_previous_step(tiny_unsamv2: torch.nn.Module, scenes: Path,
                                                             tiny_settings: dict[str, Any], sampler: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    size = tiny_settings["image_size"]
    batch = _batch(scenes, size)
    calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
    sample = segmenter.sample_correction_points

    def recording(gt: torch.Tensor, pred: torch.Tensor, rng: np.random.Generator, method: str):
        assert method == sampler
        points, labels = sample(gt, pred, rng, method)
        calls.append((gt, pred, points, labels))
        return points, labels

    seg = MultiStepSegmenter(tiny_unsamv2, granularity=True, multimask_first_step=False, correction_clicks=2,
                             correction_sampler=sampler)
    with torch.no_grad():
        fpn = seg.encode_images(batch["image"])
        with monkeypatch.context() as m:
            m.setattr(segmenter, "sample_correction_points", recording)
            outputs = seg(fpn, batch["masks"], batch["granularity"], batch["batch_index"],
                          click_generators(0, 0, [0, 1]))
    n = batch["masks"].shape[0]
    assert len(outputs) == 3
    for out in outputs:
        assert out["masks"].shape == (n, 1, size, size)
        assert out["low_res"].shape == (n, 1, size // 4, size // 4)
        assert out["ious"].shape == (n, 1) and out["object_score_logits"].shape == (n, 1)

    # One call per image and correction step, on the thresholded prediction of the step before.
    images = [torch.nonzero(batch["batch_index"] == b).flatten() for b in range(2)]
    assert len(calls) == 2 * 2
    for k, (gt, pred, points, labels) in enumerate(calls):
        step, rows = divmod(k, 2)
        idx = images[rows]
        assert torch.equal(gt, batch["masks"][idx])
        assert torch.equal(pred, outputs[step]["chosen_high_res"][idx] > 0)
        for i in range(len(idx)):
            x, y = int(points[i, 0, 0]), int(points[i, 0, 1])
            g, p = bool(gt[i, y, x]), bool(pred[i, y, x])
            if int(labels[i, 0]) == 1:
                assert g and not p  # a positive click lies on a false negative
            elif bool((gt[i] != pred[i]).any()):
                assert p and not g  # a negative click lies on a false positive
            else:
                assert not g  # no error: a background click


def test_granularity_changes_the_prediction(tiny_unsamv2: torch.nn.Module, scenes: Path,
                                            tiny_settings: dict[str, Any]) -> None:
    batch = _batch(scenes, tiny_settings["image_size"], 1)
    seg = MultiStepSegmenter(tiny_unsamv2, granularity=True, multimask_first_step=False, correction_clicks=0,
                             correction_sampler="uniform")
    tiny_unsamv2.eval()
    try:
        with torch.no_grad():
            fpn = seg.encode_images(batch["image"])
            a = seg(fpn, batch["masks"], torch.full_like(batch["granularity"], 0.1), batch["batch_index"],
                    [np.random.default_rng(0)])
            b = seg(fpn, batch["masks"], torch.full_like(batch["granularity"], 1.0), batch["batch_index"],
                    [np.random.default_rng(0)])
    finally:
        tiny_unsamv2.train()
    assert not torch.allclose(a[0]["low_res"], b[0]["low_res"])


def test_baseline_first_step_is_multimask_and_best_of_3_is_supervised(scenes: Path,
                                                                      tiny_settings: dict[str, Any]) -> None:
    size = tiny_settings["image_size"]
    torch.manual_seed(0)
    cfg = TrainConfig(**{**tiny_settings, "trainable": "baseline_no_granularity"})
    model = build_training_model(cfg, torch.device("cpu"))
    batch = _batch(scenes, size)
    seg = MultiStepSegmenter(model, granularity=False, multimask_first_step=True, correction_clicks=1,
                             correction_sampler="uniform")
    with torch.no_grad():
        outputs = seg(seg.encode_images(batch["image"]), batch["masks"], batch["granularity"], batch["batch_index"],
                      [np.random.default_rng(k) for k in range(2)])
    n = batch["masks"].shape[0]
    assert outputs[0]["masks"].shape == (n, 3, size, size) and outputs[0]["ious"].shape == (n, 3)
    assert outputs[1]["masks"].shape == (n, 1, size, size)

    loss_fn = MultiStepLoss()
    reduced = select_best_masks(outputs, batch["masks"], loss_fn)
    per_candidate = []
    for k in range(3):
        single = [{"masks": outputs[0]["masks"][:, k : k + 1], "ious": outputs[0]["ious"][:, k : k + 1],
                   "object_score_logits": outputs[0]["object_score_logits"]}]
        per_candidate.append(loss_fn(single, batch["masks"])["loss_mask"] * 20 +
                             loss_fn(single, batch["masks"])["loss_dice"])
    best = loss_fn(reduced[:1], batch["masks"])
    # Per object the minimum is taken, so the total is at most the best single candidate's total.
    assert float(best["loss_mask"] * 20 + best["loss_dice"]) <= float(min(per_candidate)) + 1e-5


def test_select_best_masks_picks_lowest_combined_loss() -> None:
    gt = torch.zeros(1, 8, 8, dtype=torch.bool)
    gt[0, 2:6, 2:6] = True
    good = torch.where(gt[0], 10.0, -10.0)
    masks = torch.stack([-good, good, torch.zeros(8, 8)]).unsqueeze(0)  # candidate 1 is exact
    out = {"masks": masks, "ious": torch.tensor([[0.1, 0.2, 0.3]]), "object_score_logits": torch.ones(1, 1)}
    (chosen,) = select_best_masks([out], gt, MultiStepLoss())
    assert torch.equal(chosen["masks"][0, 0], good) and float(chosen["ious"]) == pytest.approx(0.2)


def test_mean_iou_known_answer() -> None:
    gt = torch.zeros(3, 4, 4, dtype=torch.bool)
    gt[0, :2] = True  # 8 pixels
    gt[1, :, :1] = True  # 4 pixels
    logits = torch.full((3, 1, 4, 4), -1.0)
    logits[0, 0, :2] = 1.0  # exact: IoU 1
    logits[1, 0, :2, :1] = 1.0  # 2 of 4 pixels, nothing else: IoU 1/2; target 2 is empty and left out
    assert float(mean_iou(logits, gt)) == pytest.approx(0.75)
    assert float(mean_iou(logits, torch.zeros_like(gt))) == 0.0


def test_click_generators_depend_only_on_seed_epoch_and_item() -> None:
    a = [g.integers(1 << 30) for g in click_generators(7, 1, [3, 5])]
    b = [g.integers(1 << 30) for g in click_generators(7, 1, [5, 3])]
    assert a == b[::-1] and a[0] != a[1]
    assert [g.integers(1 << 30) for g in click_generators(7, 2, [3, 5])] != a


def test_without_the_object_score_gate_the_first_step_trains_the_mask_head(scenes: Path,
                                                                         tiny_settings: dict[str, Any]) -> None:
    """From random initialisation every object score is slightly negative: SAM-2's gate replaces every mask by
    −1024, so the mask head gets exactly zero gradient; without the gate it gets a gradient at the first step."""
    cfg = TrainConfig(**{**tiny_settings, "trainable": "demo_from_scratch", "lora_rank": 0, "correction_clicks": 0})
    torch.manual_seed(cfg.seed)
    model = build_training_model(cfg, torch.device("cpu"))
    batch = _batch(scenes, cfg.image_size)
    mask_head = ["sam_mask_decoder.gra_output_token_mlp.layers.2.weight", "sam_mask_decoder.output_upscaling.0.weight"]
    params = dict(model.named_parameters())
    grads: dict[bool, list[float]] = {}
    for gate in (True, False):
        model.zero_grad(set_to_none=True)
        seg = MultiStepSegmenter(model, granularity=True, multimask_first_step=False, correction_clicks=0,
                                 correction_sampler="uniform", object_score_gate=gate)
        with torch.no_grad():
            fpn = seg.encode_images(batch["image"])
        outputs = seg(fpn, batch["masks"], batch["granularity"], batch["batch_index"], click_generators(0, 0, [0, 1]))
        assert bool((outputs[0]["object_score_logits"] < 0).all())  # the premise: no object score is positive yet
        if gate:
            assert bool((outputs[0]["low_res"] == segmenter.NO_OBJ_SCORE).all())
        MultiStepLoss(weights=cfg.loss_weights)(outputs, batch["masks"])["loss"].backward()
        grads[gate] = [0.0 if params[n].grad is None else float(params[n].grad.abs().sum()) for n in mask_head]
        assert float(params["sam_mask_decoder.pred_obj_score_head.layers.2.weight"].grad.abs().sum()) > 0
    assert grads[True] == [0.0, 0.0]
    assert all(g > 0 for g in grads[False])
