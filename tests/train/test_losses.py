"""Training losses: each term by hand on 2×2 masks, weights, normalisation, empty-GT masking, and agreement with
the ``training/loss_fns.py`` that ships inside the PyPI ``sam2`` package."""
from __future__ import annotations

import importlib
import math
import sys
import types

import pytest
import torch

from unsamv2.train.losses import (
    DEFAULT_WEIGHTS,
    MultiStepLoss,
    dice_loss,
    iou_prediction_loss,
    object_score_loss,
    sigmoid_focal_loss,
    upsample_logits,
)

LN2 = math.log(2.0)
TARGET = torch.tensor([[[True, False], [False, False]]])  # one object, one foreground pixel of four
ZERO_LOGITS = torch.zeros(1, 2, 2)  # p = 0.5 everywhere


def _step(logits: torch.Tensor, iou: float | list[float], obj: float | list[float]) -> dict[str, torch.Tensor]:
    n = logits.shape[0]
    ious = torch.tensor(iou if isinstance(iou, list) else [iou] * n).reshape(n, 1)
    objs = torch.tensor(obj if isinstance(obj, list) else [obj] * n).reshape(n, 1)
    return {"masks": logits.unsqueeze(1), "ious": ious, "object_score_logits": objs}


def test_focal_by_hand():
    # p = 0.5 → BCE = ln 2 on every pixel, (1 − p_t)^2 = 0.25.
    # Foreground pixel: α_t = 0.25 → 0.25·0.25·ln2 = 0.0625 ln2. Three background pixels: α_t = 0.75 →
    # 0.1875 ln2 each. Mean over the 4 pixels: (0.0625 + 3·0.1875) ln2 / 4 = 0.15625 ln2 ≈ 0.108304.
    assert sigmoid_focal_loss(ZERO_LOGITS, TARGET).item() == pytest.approx(0.15625 * LN2, rel=1e-6)
    # A confident correct pixel is almost free, a confident wrong one is not: logit 4 on the foreground pixel.
    # p = σ(4) = 0.982014, BCE = −ln p = 0.018150, (1 − p)^2 = 3.2351e-4, ×0.25 → 1.4680e-6; others as above.
    logits = torch.tensor([[[4.0, 0.0], [0.0, 0.0]]])
    expected = (0.25 * (1 - 0.98201379) ** 2 * -math.log(0.98201379) + 3 * 0.1875 * LN2) / 4
    assert sigmoid_focal_loss(logits, TARGET).item() == pytest.approx(expected, rel=1e-5)
    # γ = 0 and no α: plain BCE averaged over pixels.
    assert sigmoid_focal_loss(ZERO_LOGITS, TARGET, alpha=-1, gamma=0).item() == pytest.approx(LN2, rel=1e-6)


def test_dice_by_hand():
    # Σp = 2, Σt = 1 → denominator 3; ‖p − t‖₁ = 0.5 + 3·0.5 = 2 → numerator 1; 1 − (1+1)/(3+1) = 0.5.
    assert dice_loss(ZERO_LOGITS, TARGET).item() == pytest.approx(0.5, rel=1e-6)
    # Perfect and confident: p ≈ t → numerator ≈ denominator ≈ 1 → loss ≈ 0.
    assert dice_loss(torch.tensor([[[30.0, -30.0], [-30.0, -30.0]]]), TARGET).item() == pytest.approx(0, abs=1e-6)
    # Empty target, p = 0.5: denominator 2, ‖p‖₁ = 2 → numerator 0 → 1 − 1/3 (the +1 smoothing keeps it finite).
    assert dice_loss(ZERO_LOGITS, torch.zeros(1, 2, 2)).item() == pytest.approx(2 / 3, rel=1e-6)


def test_iou_target_is_the_iou_of_the_thresholded_prediction():
    # logits > 0 at (0,0) and (1,0); target (0,0): intersection 1, union 2 → IoU 0.5.
    logits = torch.tensor([[[2.0, -1.0], [3.0, -2.0]]])
    assert iou_prediction_loss(logits, TARGET, torch.tensor([[0.8]])).item() == pytest.approx(0.3, rel=1e-6)
    assert iou_prediction_loss(logits, TARGET, torch.tensor([[0.8]]), use_l1=False).item() == pytest.approx(0.09)
    # Logit exactly 0 is not foreground (> 0, strict): prediction empty → IoU 0 → |0.3 − 0| = 0.3.
    assert iou_prediction_loss(ZERO_LOGITS, TARGET, torch.tensor([0.3])).item() == pytest.approx(0.3)
    # Empty prediction and empty target: union clamped to 1 → IoU 0 (not 1).
    assert iou_prediction_loss(-torch.ones(1, 2, 2), torch.zeros(1, 2, 2), torch.tensor([0.0])).item() == 0.0
    with pytest.raises(ValueError, match="one value per object"):
        iou_prediction_loss(logits, TARGET, torch.tensor([0.1, 0.2]))


def test_object_score_is_bce_against_non_empty_ground_truth():
    # logit 0 → ln 2 for either target; logit 2 vs present: −ln σ(2) = 0.126928; vs absent: −ln(1 − σ(2)) = 2.126928.
    targets = torch.stack([TARGET[0], torch.zeros(2, 2, dtype=torch.bool)])
    out = object_score_loss(torch.tensor([[2.0], [2.0]]), targets)
    assert out.tolist() == pytest.approx([0.126928, 2.126928], rel=1e-5)
    assert object_score_loss(torch.zeros(2, 1), targets).tolist() == pytest.approx([LN2, LN2])


def test_total_is_the_weighted_sum_with_the_paper_weights():
    assert DEFAULT_WEIGHTS == {"loss_mask": 20.0, "loss_dice": 1.0, "loss_iou": 1.0, "loss_class": 1.0}
    out = MultiStepLoss()([_step(ZERO_LOGITS, 0.3, 0.0)], TARGET)
    # One object: focal 0.15625 ln2, dice 0.5, IoU |0.3 − 0| = 0.3, class ln2.
    assert out["loss_mask"].item() == pytest.approx(0.15625 * LN2, rel=1e-6)
    assert out["loss_dice"].item() == pytest.approx(0.5, rel=1e-6)
    assert out["loss_iou"].item() == pytest.approx(0.3, rel=1e-6)
    assert out["loss_class"].item() == pytest.approx(LN2, rel=1e-6)
    # 20·0.108304 + 0.5 + 0.3 + 0.693147 = 3.659231
    assert out["loss"].item() == pytest.approx(20 * 0.15625 * LN2 + 0.5 + 0.3 + LN2, rel=1e-6)
    custom = MultiStepLoss(weights={"loss_mask": 0.0, "loss_iou": 2.0})([_step(ZERO_LOGITS, 0.3, 0.0)], TARGET)
    assert custom["loss"].item() == pytest.approx(0.5 + 2 * 0.3 + LN2, rel=1e-6)
    with pytest.raises(ValueError, match="unknown loss weight keys"):
        MultiStepLoss(weights={"loss_focal": 1.0})


def test_normalised_by_object_count_and_summed_over_steps():
    single = MultiStepLoss()([_step(ZERO_LOGITS, 0.3, 0.0)], TARGET)
    two = torch.cat([TARGET, TARGET])
    double = MultiStepLoss()([_step(torch.cat([ZERO_LOGITS, ZERO_LOGITS]), 0.3, 0.0)], two)
    for key in single:  # two identical objects, divided by 2 objects: the same per-object value
        assert double[key].item() == pytest.approx(single[key].item(), rel=1e-6)
    halved = MultiStepLoss()([_step(torch.cat([ZERO_LOGITS, ZERO_LOGITS]), 0.3, 0.0)], two, num_objects=4)
    assert halved["loss"].item() == pytest.approx(single["loss"].item() / 2, rel=1e-6)
    three_steps = MultiStepLoss()([_step(ZERO_LOGITS, 0.3, 0.0)] * 3, TARGET)
    for key in single:
        assert three_steps[key].item() == pytest.approx(3 * single[key].item(), rel=1e-6)


def test_empty_ground_truth_only_counts_in_the_object_score():
    targets = torch.stack([TARGET[0], torch.zeros(2, 2, dtype=torch.bool)])
    logits = torch.stack([ZERO_LOGITS[0], torch.full((2, 2), 5.0)])  # the empty one is badly predicted
    out = MultiStepLoss()([_step(logits, [0.3, 0.9], [0.0, 0.0])], targets)
    # Focal/dice/IoU: only object 0 counts, divided by N = 2 objects (empty ones still count in N).
    assert out["loss_mask"].item() == pytest.approx(0.15625 * LN2 / 2, rel=1e-6)
    assert out["loss_dice"].item() == pytest.approx(0.5 / 2, rel=1e-6)
    assert out["loss_iou"].item() == pytest.approx(0.3 / 2, rel=1e-6)
    # Object score: both objects, logit 0 → ln2 each, / 2.
    assert out["loss_class"].item() == pytest.approx(LN2, rel=1e-6)


def test_gradients_flow_to_logits_and_scores_but_not_through_the_iou_target():
    logits = torch.randn(3, 1, 4, 4, requires_grad=True)
    ious = torch.rand(3, 1, requires_grad=True)
    obj = torch.randn(3, 1, requires_grad=True)
    targets = torch.rand(3, 4, 4) > 0.5
    out = MultiStepLoss()([{"masks": logits, "ious": ious, "object_score_logits": obj}], targets)
    out["loss"].backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    assert ious.grad is not None and obj.grad is not None
    # The IoU target is computed from thresholded masks: the IoU term gives the logits no gradient.
    iou_only = iou_prediction_loss(logits[:, 0], targets, ious.detach())
    assert not iou_only.requires_grad


def test_shape_errors_and_upsampling():
    loss = MultiStepLoss()
    with pytest.raises(ValueError, match="upsample"):
        loss([_step(torch.zeros(1, 4, 4), 0.5, 0.0)], TARGET)
    with pytest.raises(ValueError, match="at least one prompt step"):
        loss([], TARGET)
    up = upsample_logits(torch.zeros(2, 1, 2, 2), (4, 4))
    assert up.shape == (2, 1, 4, 4)
    # Bilinear with align_corners=False, by hand: output pixel i samples the source at (i + 0.5) / 2 - 0.5,
    # clamped at the border, so a row (0, 1) becomes (0, 0.25, 0.75, 1).
    up = upsample_logits(torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]]), (4, 4))
    expected = torch.tensor([[0.0, 0.25, 0.75, 1.0], [0.5, 0.75, 1.25, 1.5], [1.5, 1.75, 2.25, 2.5],
                             [2.0, 2.25, 2.75, 3.0]])
    assert torch.allclose(up[0, 0], expected)


@pytest.fixture
def sam2_reference_loss(monkeypatch: pytest.MonkeyPatch):
    """``training.loss_fns`` from the installed sam2 package; its ``training.trainer`` import (hydra, iopath,
    tensordict) is replaced by a stub holding the one constant it needs."""
    stub = types.ModuleType("training.trainer")
    stub.CORE_LOSS_KEY = "core_loss"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "training.trainer", stub)
    monkeypatch.delitem(sys.modules, "training.loss_fns", raising=False)
    try:
        module = importlib.import_module("training.loss_fns")
    except ImportError as exc:  # pragma: no cover - depends on the sam2 wheel's content
        pytest.skip(f"sam2's training/loss_fns.py is not importable: {exc}")
    yield module
    sys.modules.pop("training.loss_fns", None)


def test_matches_sam2_training_loss_fns(sam2_reference_loss):
    torch.manual_seed(0)
    n, h, w, steps = 5, 16, 12, 4
    targets = torch.rand(n, h, w) > 0.6
    targets[1] = False  # an empty ground truth
    masks = [torch.randn(n, 1, h, w) * 3 for _ in range(steps)]
    ious = [torch.rand(n, 1) for _ in range(steps)]
    objs = [torch.randn(n, 1) for _ in range(steps)]
    reference = sam2_reference_loss.MultiStepMultiMasksAndIous(
        weight_dict=dict(DEFAULT_WEIGHTS), focal_alpha=0.25, focal_gamma=2, supervise_all_iou=True,
        iou_use_l1_loss=True, pred_obj_scores=True, focal_gamma_obj_score=0.0, focal_alpha_obj_score=-1.0,
    )
    expected = reference(
        [{"multistep_pred_multimasks_high_res": masks, "multistep_pred_ious": ious,
          "multistep_object_score_logits": objs}],
        targets.unsqueeze(0),
    )
    ours = MultiStepLoss()(
        [{"masks": m, "ious": i, "object_score_logits": o} for m, i, o in zip(masks, ious, objs, strict=True)],
        targets,
    )
    for key in ("loss_mask", "loss_dice", "loss_iou", "loss_class"):
        assert ours[key].item() == pytest.approx(float(expected[key]), rel=1e-5, abs=1e-7), key
    assert ours["loss"].item() == pytest.approx(float(expected["core_loss"]), rel=1e-5)
