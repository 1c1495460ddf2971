"""SAM-2's interactive training forward: first click, correction clicks, previous logits fed back.

Per target mask, a first positive click uniform inside it, then ``correction_clicks`` correction clicks, each from
the error of the current prediction (``logits > 0``) with the configured sampler (:mod:`unsamv2.train.prompts`);
every step gets all clicks so far plus the previous low-res logits as mask input (``_iter_correct_pt_sampling``
of sam2's ``training/model/sam2.py``). On multi-mask steps the candidate SAM-2 supervises is chosen by
:func:`select_best_masks` (sam2's ``training/loss_fns.py``).

The clicks of an item come from its own generator (:func:`click_generators`), a pure function of
``(seed, epoch, item index)``, so they do not depend on which other items share its batch or process.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from unsamv2.train.losses import MultiStepLoss, dice_loss, sigmoid_focal_loss
from unsamv2.train.prompts import sample_correction_points, sample_first_points

__all__ = ["NO_OBJ_SCORE", "MultiStepSegmenter", "click_generators", "mean_iou", "select_best_masks"]

#: SAM-2's logit for "no object" masks (``sam2.modeling.sam2_base.NO_OBJ_SCORE``).
NO_OBJ_SCORE = -1024.0
# Stream id mixed into the click seeds, so that the clicks never share a random stream with the epoch permutation
# (:mod:`unsamv2.train.schedule`, stream 11) or the dataset's own draws (which use [seed, epoch, index]).
_CLICK_STREAM = 12


def click_generators(seed: int, epoch: int, indices: Sequence[int]) -> list[np.random.Generator]:
    """One click generator per item of a batch, seeded by ``(seed, epoch, item index)``."""
    return [np.random.default_rng([seed, epoch, idx, _CLICK_STREAM]) for idx in indices]


def _per_image_clicks(
    sampler: Callable[..., tuple[torch.Tensor, torch.Tensor]],
    gt: torch.Tensor,
    batch_index: torch.Tensor,
    rngs: Sequence[np.random.Generator],
    *extra: torch.Tensor,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run a click sampler image by image, each with that image's own generator.

    Why per image: the clicks of an item must not depend on which other items share its batch, or two
    processes with half batches would click differently from one process with the whole batch.
    """
    n = gt.shape[0]
    coords = torch.zeros(n, 1, 2, dtype=torch.float32)
    labels = torch.zeros(n, 1, dtype=torch.int32)
    for b, rng in enumerate(rngs):
        idx = torch.nonzero(batch_index == b).flatten()
        if idx.numel() == 0:
            continue
        p, lab = sampler(gt[idx], *(t[idx] for t in extra), rng, **kwargs)
        coords[idx] = p.cpu()
        labels[idx] = lab.cpu()
    return coords, labels


class MultiStepSegmenter(nn.Module):
    """SAM-2's interactive training forward: first click, correction clicks, previous logits fed back.

    Args:
        model: an UnSAMv2 model (granularity prompt encoder + granularity mask decoder) or a stock SAM-2 model.
        granularity: give each mask's granularity to the prompt encoder (UnSAMv2 models).
        multimask_first_step: SAM-2's three candidate masks on the single-click step (the SAM-2 baseline).
        correction_clicks: clicks after the first one.
        correction_sampler: ``uniform`` or ``graco``.
        object_score_gate: SAM-2's training gate (mask logits → −1024 where the object score is ≤ 0); off only
            when training from scratch (``train.object_score_gate``), where it would block every mask gradient
            until the score head turns positive.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        granularity: bool,
        multimask_first_step: bool,
        correction_clicks: int,
        correction_sampler: str,
        object_score_gate: bool = True,
    ) -> None:
        super().__init__()
        self.model = model
        self.granularity = granularity
        self.multimask_first_step = multimask_first_step
        self.correction_clicks = correction_clicks
        self.correction_sampler = correction_sampler
        self.object_score_gate = object_score_gate

    def encode_images(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The image encoder's FPN levels (what the embedding cache stores)."""
        return list(self.model.image_encoder(images)["backbone_fpn"])

    def image_features(self, fpn: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """FPN levels → (image embedding B×C×h×w, high-res features), as ``SAM2ImagePredictor.set_image``.

        Applied at every step rather than cached, because ``conv_s0``/``conv_s1`` belong to the mask decoder
        (trainable in the demo modes) and ``no_mem_embed`` to SAM-2's base.
        """
        model = self.model
        levels = list(fpn)
        if model.use_high_res_features_in_sam:
            levels[0] = model.sam_mask_decoder.conv_s0(levels[0])
            levels[1] = model.sam_mask_decoder.conv_s1(levels[1])
        embed = levels[-1]
        if model.directly_add_no_mem_embed:
            embed = embed + model.no_mem_embed.reshape(1, -1, 1, 1)
        return embed, levels[:-1] if model.use_high_res_features_in_sam else []

    def decode(
        self,
        embed: torch.Tensor,
        high_res: Sequence[torch.Tensor],
        coords: torch.Tensor,
        labels: torch.Tensor,
        mask_input: torch.Tensor | None,
        granularity: torch.Tensor | None,
        multimask: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One prompt-encoder + mask-decoder call for N prompts whose images are already gathered (N×C×h×w).

        Returns low-res logits N×M×h'×w' (object-score gated as SAM-2's ``_forward_sam_heads`` unless
        ``object_score_gate`` is off), predicted IoUs N×M and object-score logits N×1.
        """
        model = self.model
        encoder = model.sam_prompt_encoder
        if mask_input is not None and tuple(mask_input.shape[-2:]) != tuple(encoder.mask_input_size):
            mask_input = F.interpolate(mask_input.float(), size=encoder.mask_input_size, mode="bilinear",
                                       align_corners=False, antialias=True)
        kwargs: dict[str, Any] = {"granularity": granularity} if self.granularity else {}
        sparse, dense = encoder(points=(coords, labels), boxes=None, masks=mask_input, **kwargs)
        low_res, ious, _, object_score_logits = model.sam_mask_decoder(
            image_embeddings=embed,
            image_pe=encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
            repeat_image=False,
            high_res_features=list(high_res),
        )
        if model.pred_obj_scores and self.object_score_gate:
            # SAM-2 training turns the masks of "no object" predictions into a constant -1024 logit (hard choice,
            # consistent with what is fed back and clicked on); the object-score loss teaches the head.
            low_res = torch.where(object_score_logits[:, :, None, None] > 0, low_res, NO_OBJ_SCORE)
        return low_res.float(), ious.float(), object_score_logits.float()

    def forward(
        self,
        fpn: Sequence[torch.Tensor],
        gt: torch.Tensor,
        granularity: torch.Tensor,
        batch_index: torch.Tensor,
        rngs: Sequence[np.random.Generator],
    ) -> list[dict[str, torch.Tensor]]:
        """All prompt steps for the N masks of a batch.

        Args:
            fpn: the image encoder's FPN levels for the B images (on the model's device).
            gt: N×S×S bool ground truth on the CPU (clicks are sampled with NumPy/OpenCV).
            granularity: N granularities (ignored by the SAM-2 baseline).
            batch_index: N image indices into the batch.
            rngs: one click generator per image.

        Returns:
            one dict per step: ``masks`` N×M×S×S logits at image resolution, ``low_res`` N×M×h×w, ``ious`` N×M,
            ``object_score_logits`` N×1 (M = 3 on the baseline's first step, else 1).
        """
        device = fpn[0].device
        size = tuple(gt.shape[-2:])
        embed, high_res = self.image_features(fpn)
        gather = batch_index.to(device)
        embed = embed[gather]
        high_res = [level[gather] for level in high_res]
        g = granularity.to(device) if self.granularity else None

        coords, labels = _per_image_clicks(sample_first_points, gt, batch_index, rngs)
        mask_input: torch.Tensor | None = None
        outputs: list[dict[str, torch.Tensor]] = []
        for step in range(1 + self.correction_clicks):
            if step > 0:
                # Correction click from the error of the mask chosen at the previous step (thresholded at 0).
                pred = (outputs[-1]["chosen_high_res"] > 0).cpu()
                new_c, new_l = _per_image_clicks(sample_correction_points, gt, batch_index, rngs, pred,
                                                 method=self.correction_sampler)
                coords = torch.cat([coords, new_c], dim=1)
                labels = torch.cat([labels, new_l], dim=1)
            multimask = self.multimask_first_step and coords.shape[1] == 1
            low_res, ious, obj = self.decode(embed, high_res, coords.to(device), labels.to(device), mask_input, g,
                                             multimask)
            high = F.interpolate(low_res, size=size, mode="bilinear", align_corners=False)
            if low_res.shape[1] > 1:
                # SAM-2 feeds back (and clicks on) the candidate with the highest *predicted* IoU.
                best = ious.argmax(dim=1)
                rows = torch.arange(low_res.shape[0], device=device)
                mask_input = low_res[rows, best].unsqueeze(1)
                chosen_high = high[rows, best].unsqueeze(1)
            else:
                mask_input, chosen_high = low_res, high
            outputs.append({"masks": high, "low_res": low_res, "ious": ious, "object_score_logits": obj,
                            "chosen_high_res": chosen_high[:, 0].detach()})
        return outputs


def select_best_masks(
    step_outputs: Sequence[Mapping[str, torch.Tensor]], targets: torch.Tensor, loss_fn: MultiStepLoss
) -> list[dict[str, torch.Tensor]]:
    """Reduce multi-mask steps to the candidate SAM-2 supervises: the lowest ``w_mask·focal + w_dice·dice``.

    That is ``MultiStepMultiMasksAndIous`` with ``supervise_all_iou: false``: focal, dice and the IoU error are
    those of the best candidate, so the single-mask :class:`MultiStepLoss` then computes exactly SAM-2's loss.
    """
    reduced: list[dict[str, torch.Tensor]] = []
    for out in step_outputs:
        masks, ious = out["masks"], out["ious"]
        if masks.shape[1] == 1:
            reduced.append({"masks": masks, "ious": ious, "object_score_logits": out["object_score_logits"]})
            continue
        n, m = masks.shape[:2]
        with torch.no_grad():
            flat = masks.reshape(n * m, *masks.shape[2:])
            tgt = targets.float().repeat_interleave(m, dim=0)
            focal = sigmoid_focal_loss(flat, tgt, loss_fn.focal_alpha, loss_fn.focal_gamma).reshape(n, m)
            dice = dice_loss(flat, tgt).reshape(n, m)
            best = (loss_fn.weights["loss_mask"] * focal + loss_fn.weights["loss_dice"] * dice).argmin(dim=1)
        rows = torch.arange(n, device=masks.device)
        reduced.append({"masks": masks[rows, best].unsqueeze(1), "ious": ious[rows, best].unsqueeze(1),
                        "object_score_logits": out["object_score_logits"]})
    return reduced


@torch.no_grad()
def mean_iou(masks: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean IoU of ``masks[:, 0] > 0`` against the non-empty targets (0 if there are none)."""
    pred = masks[:, 0] > 0
    gt = targets.bool()
    present = gt.flatten(1).any(dim=1)
    if not bool(present.any()):
        return torch.zeros((), device=masks.device)
    inter = (pred & gt).flatten(1).sum(dim=1).float()
    union = (pred | gt).flatten(1).sum(dim=1).float().clamp(min=1.0)
    return (inter / union)[present].mean()
