"""Training losses: SAM-2's ``MultiStepMultiMasksAndIous`` as configured by UnSAMv2.

Configuration reproduced (``unsamv2_small_training.yaml``): ``weight_dict = {loss_mask: 20, loss_dice: 1,
loss_iou: 1, loss_class: 1}``, focal ``alpha = 0.25, gamma = 2``, ``iou_use_l1_loss: true``,
``pred_obj_scores: true`` with ``focal_gamma_obj_score = 0, focal_alpha_obj_score = -1`` (plain BCE), single mask
output per step (``multimask_output: false``, so ``supervise_all_iou`` has nothing to choose between).

Definitions, checked against facebookresearch/sam2 ``training/loss_fns.py`` (per object *i*, p = sigmoid(logit),
t ∈ {0, 1} the ground truth, sums over the H·W pixels):

* focal_i = **mean** over pixels of ``α_t (1 − p_t)^γ · BCE(logit, t)``, with ``p_t = p t + (1−p)(1−t)`` and
  ``α_t = α t + (1−α)(1−t)`` — a per-pixel mean, i.e. normalised by H·W.
* dice_i = ``1 − (2 Σ p t + 1) / (Σ p + Σ t + 1)``: the reference writes the numerator as
  ``Σp + Σt − ‖p − t‖₁``, which equals ``2 Σ p t`` for binary targets; +1 smoothing on both sides.
* iou_i = ``|IoU_pred,i − IoU_i|`` (L1), where ``IoU_i`` is the actual IoU of the **thresholded** prediction
  (logit > 0) with the ground truth, union clamped to ≥ 1 (so empty ∪ empty gives IoU 0). ``IoU_i`` carries no
  gradient; ``IoU_pred`` is the model's IoU head output as it is (sigmoid already applied by SAM-2 when
  ``iou_prediction_use_sigmoid``), not a logit.
* class_i = BCE(object_score_logit_i, [gt_i non-empty]) (the focal loss with γ = 0 and no α).

Reduction: focal, dice and IoU of objects whose ground truth is empty are multiplied by 0 (``target_obj``); the
object-score term is kept for every object (it is what teaches "no object"). Every per-object term is divided by
``num_objects`` (the number of target masks, clamped to ≥ 1; under DDP the reference averages it over ranks —
pass ``num_objects`` explicitly for that) and summed over objects **and over the prompt steps** (initial click +
corrections). The total is ``Σ_k weight_k · loss_k``.

Shapes: the logits must already be at the ground truth's resolution (SAM-2 computes the loss on the
``high_res`` masks, the decoder output upsampled to the image size); :func:`upsample_logits` does that
upsampling the way SAM-2 does (bilinear, ``align_corners=False``).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from unsamv2.train.config import PAPER_LOSS_WEIGHTS

__all__ = [
    "DEFAULT_WEIGHTS",
    "MultiStepLoss",
    "dice_loss",
    "iou_prediction_loss",
    "object_score_loss",
    "sigmoid_focal_loss",
    "upsample_logits",
]

#: UnSAMv2's ``weight_dict`` (focal 20 : dice 1, the paper's "ratio of 20:1", IoU 1, object score 1); the
#: ``train.loss_weight_*`` keys change them (:attr:`unsamv2.train.config.TrainConfig.loss_weights`).
DEFAULT_WEIGHTS: dict[str, float] = dict(PAPER_LOSS_WEIGHTS)
LOSS_KEYS: tuple[str, ...] = ("loss_mask", "loss_dice", "loss_iou", "loss_class")


def sigmoid_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Per-object focal loss averaged over pixels: (N, ...) logits and 0/1 targets → (N,).

    ``alpha < 0`` disables the α weighting (SAM-2's convention); ``gamma = 0`` gives plain BCE.
    """
    logits = logits.float()
    targets = targets.float()
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.flatten(1).mean(dim=1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-object soft dice loss with +1 smoothing: (N, ...) logits and 0/1 targets → (N,)."""
    prob = logits.float().sigmoid().flatten(1)
    targets = targets.float().flatten(1)
    denominator = prob.sum(dim=1) + targets.sum(dim=1)
    # Σp + Σt − ‖p − t‖₁ as the reference (= 2 Σ p·t for binary targets, and well defined for soft ones).
    numerator = denominator - (prob - targets).abs().sum(dim=1)
    return 1 - (numerator + 1) / (denominator + 1)


def iou_prediction_loss(
    logits: torch.Tensor, targets: torch.Tensor, pred_ious: torch.Tensor, use_l1: bool = True
) -> torch.Tensor:
    """Per-object error of the predicted IoU against the actual IoU of ``logits > 0``: → (N,).

    ``pred_ious`` is (N,) or (N, 1). L1 by default (UnSAMv2's ``iou_use_l1_loss``), squared error otherwise.
    """
    pred = logits.flatten(1) > 0
    gt = targets.flatten(1) > 0
    inter = (pred & gt).sum(dim=1).float()
    union = (pred | gt).sum(dim=1).float()
    actual = inter / union.clamp(min=1.0)
    predicted = pred_ious.float().reshape(-1)
    if predicted.shape != actual.shape:
        raise ValueError(f"pred_ious must hold one value per object ({actual.numel()}), got {tuple(pred_ious.shape)}")
    if use_l1:
        return (predicted - actual).abs()
    return (predicted - actual) ** 2


def object_score_loss(object_score_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-object BCE of the object-score logit against "the ground truth is non-empty": → (N,)."""
    present = targets.flatten(1).any(dim=1).float()
    return F.binary_cross_entropy_with_logits(object_score_logits.float().reshape(-1), present, reduction="none")


def upsample_logits(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinearly resize (N, 1, h, w) mask logits to ``size`` = (H, W), as SAM-2 makes its high-res masks."""
    return F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)


class MultiStepLoss:
    """Focal ×20 + dice ×1 + IoU-L1 ×1 + object-score BCE ×1 (by default), summed over prompt steps, per object
    count.

    Args:
        weights: per-term weights; keys from ``loss_mask``, ``loss_dice``, ``loss_iou``, ``loss_class``
            (missing keys keep their default from :data:`DEFAULT_WEIGHTS`).
        focal_alpha, focal_gamma: the mask focal loss parameters.
        iou_use_l1: L1 (default, UnSAMv2) or squared error for the IoU head.
    """

    def __init__(
        self,
        weights: Mapping[str, float] | None = None,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        iou_use_l1: bool = True,
    ) -> None:
        unknown = set(weights or {}) - set(LOSS_KEYS)
        if unknown:
            raise ValueError(f"unknown loss weight keys {sorted(unknown)}; expected a subset of {list(LOSS_KEYS)}")
        self.weights: dict[str, float] = {**DEFAULT_WEIGHTS, **dict(weights or {})}
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.iou_use_l1 = iou_use_l1

    def __call__(
        self,
        step_outputs: Sequence[Mapping[str, torch.Tensor]],
        targets: torch.Tensor,
        num_objects: float | None = None,
    ) -> dict[str, torch.Tensor]:
        """Loss of one batch.

        Args:
            step_outputs: one dict per prompt step with ``masks`` (N, 1, H, W) logits, ``ious`` (N, 1) predicted
                IoUs and ``object_score_logits`` (N, 1).
            targets: (N, H, W) ground-truth masks (bool or 0/1).
            num_objects: the normaliser; default ``max(N, 1)``.

        Returns:
            ``{"loss_mask", "loss_dice", "loss_iou", "loss_class"}`` (each summed over steps, unweighted) and
            ``"loss"``, the weighted total to back-propagate.
        """
        if targets.dim() != 3:
            raise ValueError(f"targets must be (N, H, W), got shape {tuple(targets.shape)}")
        if len(step_outputs) == 0:
            raise ValueError("step_outputs is empty: at least one prompt step is needed")
        n = targets.shape[0]
        norm = float(max(n, 1) if num_objects is None else max(num_objects, 1.0))
        target = targets.float()
        # Masks out focal/dice/IoU for empty ground truths (SAM-2's target_obj); the class term always counts.
        present = targets.flatten(1).any(dim=1).float()
        device = targets.device
        totals = {k: torch.zeros((), device=device) for k in LOSS_KEYS}
        for step, out in enumerate(step_outputs):
            masks = out["masks"]
            if masks.dim() != 4 or masks.shape[1] != 1 or masks.shape[0] != n or masks.shape[2:] != targets.shape[1:]:
                raise ValueError(
                    f"step {step}: masks must be (N, 1, H, W) = ({n}, 1, {targets.shape[1]}, {targets.shape[2]}) "
                    f"logits, got {tuple(masks.shape)} (upsample low-res logits with upsample_logits first)"
                )
            logits = masks[:, 0]
            totals["loss_mask"] = totals["loss_mask"] + (
                sigmoid_focal_loss(logits, target, self.focal_alpha, self.focal_gamma) * present
            ).sum() / norm
            totals["loss_dice"] = totals["loss_dice"] + (dice_loss(logits, target) * present).sum() / norm
            totals["loss_iou"] = totals["loss_iou"] + (
                iou_prediction_loss(logits, target, out["ious"], self.iou_use_l1) * present
            ).sum() / norm
            totals["loss_class"] = totals["loss_class"] + object_score_loss(out["object_score_logits"], target).sum() / norm
        total = sum(self.weights[k] * totals[k] for k in LOSS_KEYS if self.weights[k] != 0)
        return {**totals, "loss": total if isinstance(total, torch.Tensor) else torch.zeros((), device=device)}
