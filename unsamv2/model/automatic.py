"""Whole-image segmentation at a granularity (paper §4.2; official `evaluation/whole_image/coco_annotator.py`).

sam2's ``SAM2AutomaticMaskGenerator`` with every grid point prompted at granularity g, and the settings of the
official whole-image evaluation: 64×64 grid, 128 points per batch, mask threshold -1, stability offset 0.7, no
crops, box NMS 0.7, M2M refinement, per-g thresholds (g < 0.5: predicted IoU > 0.65; g ≥ 0.5: > 0.5; stability
≥ 0.7). ``generate_pooled`` runs g = 0.1 … 1.0 on one image encoding and pools the masks with no cross-g NMS.

sam2's per-batch filtering code (``_process_batch``, ``refine_with_m2m``) is reused unchanged: it calls
``self.predictor._predict``, and our predictor's ``_predict`` reads the granularity of the current pass from
``predictor.default_granularity``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator
from sam2.modeling.sam2_base import SAM2Base
from sam2.utils.amg import (
    MaskData,
    area_from_rle,
    batch_iterator,
    batched_mask_to_box,
    box_xyxy_to_xywh,
    calculate_stability_score,
    coco_encode_rle,
    is_box_near_crop_edge,
    mask_to_rle_pytorch,
    rle_to_mask,
    uncrop_boxes_xyxy,
    uncrop_masks,
    uncrop_points,
)
from torchvision.ops.boxes import batched_nms
from tqdm.auto import tqdm

from unsamv2.core.constants import EVAL_MASK_THRESHOLD, GRANULARITY_GRID
from unsamv2.model.granularity import validate_granularities, validate_granularity
from unsamv2.model.predictor import UnSAMv2ImagePredictor

__all__ = ["UnSAMv2AutomaticMaskGenerator", "official_thresholds"]


def official_thresholds(granularity: float) -> tuple[float, float]:
    """(pred_iou_thresh, stability_score_thresh) of the official whole-image evaluation for ``granularity``."""
    return (0.65, 0.7) if granularity < 0.5 else (0.5, 0.7)


class UnSAMv2AutomaticMaskGenerator(SAM2AutomaticMaskGenerator):
    """Automatic mask generation at a granularity; defaults are the official whole-image evaluation settings.

    Args:
        model: a model built by :func:`unsamv2.model.build.build_unsamv2`.
        pred_iou_thresh, stability_score_thresh: fixed thresholds; None (default) uses the official per-g values
            (see :func:`official_thresholds`).
        show_progress: a tqdm bar over point batches (and granularities).
        fast_postprocess: bring masks to image size only where they are used (same outputs as sam2's code;
            see :meth:`_process_batch`); False runs sam2's ``_process_batch`` unchanged.
        Other arguments: as ``SAM2AutomaticMaskGenerator``.
    """

    def __init__(
        self,
        model: SAM2Base,
        points_per_side: int | None = 64,
        points_per_batch: int = 128,
        pred_iou_thresh: float | None = None,
        stability_score_thresh: float | None = None,
        stability_score_offset: float = 0.7,
        mask_threshold: float = EVAL_MASK_THRESHOLD,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: list[np.ndarray] | None = None,
        min_mask_region_area: int = 0,
        output_mode: str = "coco_rle",
        use_m2m: bool = True,
        multimask_output: bool = True,
        show_progress: bool = False,
        fast_postprocess: bool = True,
    ) -> None:
        super().__init__(
            model,
            points_per_side=points_per_side,
            points_per_batch=points_per_batch,
            pred_iou_thresh=0.0,
            stability_score_thresh=0.0,
            stability_score_offset=stability_score_offset,
            mask_threshold=mask_threshold,
            box_nms_thresh=box_nms_thresh,
            crop_n_layers=crop_n_layers,
            crop_nms_thresh=crop_nms_thresh,
            crop_overlap_ratio=crop_overlap_ratio,
            crop_n_points_downscale_factor=crop_n_points_downscale_factor,
            point_grids=point_grids,
            min_mask_region_area=min_mask_region_area,
            output_mode=output_mode,
            use_m2m=use_m2m,
            multimask_output=multimask_output,
        )
        # Replace sam2's predictor with the granularity-aware one (same transforms and post-processing options).
        self.predictor = UnSAMv2ImagePredictor(
            model,
            mask_threshold=mask_threshold,
            max_hole_area=min_mask_region_area,
            max_sprinkle_area=min_mask_region_area,
        )
        self.fixed_pred_iou_thresh = pred_iou_thresh
        self.fixed_stability_score_thresh = stability_score_thresh
        self.show_progress = show_progress
        self.fast_postprocess = fast_postprocess
        self._granularities: list[float] = []

    # ------------------------------------------------------------------ public API
    @torch.no_grad()
    def generate(self, image: np.ndarray, granularity: float) -> list[dict[str, Any]]:
        """Masks of the whole image at ``granularity``; records as sam2's plus a ``"granularity"`` field."""
        return self._generate_records(image, [validate_granularity(granularity)])

    @torch.no_grad()
    def generate_pooled(
        self, image: np.ndarray, granularities: Sequence[float] = GRANULARITY_GRID
    ) -> list[dict[str, Any]]:
        """Masks at every granularity (default 0.1 … 1.0) from one image encoding, pooled without cross-g NMS."""
        return self._generate_records(image, validate_granularities(granularities))

    def thresholds_for(self, granularity: float) -> tuple[float, float]:
        """The (predicted-IoU, stability) thresholds used at ``granularity``."""
        iou_t, stab_t = official_thresholds(granularity)
        if self.fixed_pred_iou_thresh is not None:
            iou_t = self.fixed_pred_iou_thresh
        if self.fixed_stability_score_thresh is not None:
            stab_t = self.fixed_stability_score_thresh
        return iou_t, stab_t

    # ------------------------------------------------------------------ internals
    def _generate_records(self, image: np.ndarray, granularities: list[float]) -> list[dict[str, Any]]:
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"image must be an H×W×3 uint8 RGB array, got {getattr(image, 'shape', image)!r}"
            )
        self._granularities = granularities
        try:
            data = self._generate_masks(image)
        finally:
            self._granularities = []
        record_granularities = [granularities[int(i)] for i in data["granularity_index"]]
        if self.min_mask_region_area > 0:
            data = self.postprocess_small_regions(
                data, self.min_mask_region_area, max(self.box_nms_thresh, self.crop_nms_thresh)
            )
        if self.output_mode == "coco_rle":
            segmentations = [coco_encode_rle(rle) for rle in data["rles"]]
        elif self.output_mode == "binary_mask":
            segmentations = [rle_to_mask(rle) for rle in data["rles"]]
        else:
            segmentations = data["rles"]
        records = []
        for i, seg in enumerate(segmentations):
            records.append(
                {
                    "segmentation": seg,
                    "area": area_from_rle(data["rles"][i]),
                    "bbox": box_xyxy_to_xywh(data["boxes"][i]).tolist(),
                    "predicted_iou": float(data["iou_preds"][i]),
                    "point_coords": [data["points"][i].tolist()],
                    "stability_score": float(data["stability_score"][i]),
                    "crop_box": box_xyxy_to_xywh(data["crop_boxes"][i]).tolist(),
                    "granularity": record_granularities[i],
                }
            )
        return records

    def _process_batch(
        self,
        points: np.ndarray,
        im_size: tuple[int, ...],
        crop_box: list[int],
        orig_size: tuple[int, ...],
        normalize: bool = False,
    ) -> MaskData:
        """sam2's ``_process_batch`` (M2M branch) with the same outputs and less work at image size.

        sam2 upsamples every first-pass mask to the image size and then discards them (M2M replaces them), and
        upsamples every M2M mask before the predicted-IoU filter drops most of them; bilinear upsampling is per
        mask, so upsampling only the masks that pass the filter gives the same logits. Everything else — decoder
        calls (same batches), filter order, stability score, boxes, crop-edge filter, RLE — is sam2's code.
        """
        if not (self.fast_postprocess and self.use_m2m):
            return super()._process_batch(points, im_size, crop_box, orig_size, normalize=normalize)
        orig_h, orig_w = orig_size
        predictor: UnSAMv2ImagePredictor = self.predictor
        points_t = torch.as_tensor(points, dtype=torch.float32, device=predictor.device)
        in_points = predictor._transforms.transform_coords(points_t, normalize=normalize, orig_hw=im_size)
        in_labels = torch.ones(in_points.shape[0], dtype=torch.int, device=in_points.device)
        first, _ = predictor._decode(in_points[:, None, :], in_labels[:, None],
                                     multimask_output=self.multimask_output)
        # M2M (sam2 `refine_with_m2m`): same points, the clamped first-pass logits as mask input, single output.
        refined, iou = predictor._decode(in_points[:, None, :], in_labels[:, None],
                                         mask_input=torch.clamp(first, -32.0, 32.0), multimask_output=False)
        data = MaskData(iou_preds=iou.squeeze(1), points=points_t, logits=refined)
        if self.pred_iou_thresh > 0.0:
            data.filter(data["iou_preds"] > self.pred_iou_thresh)
        data["masks"] = predictor.upsample_logits(data["logits"]).squeeze(1)
        del data["logits"]

        data["stability_score"] = calculate_stability_score(
            data["masks"], self.mask_threshold, self.stability_score_offset
        )
        if self.stability_score_thresh > 0.0:
            data.filter(data["stability_score"] >= self.stability_score_thresh)
        data["masks"] = data["masks"] > self.mask_threshold
        data["boxes"] = batched_mask_to_box(data["masks"])
        keep_mask = ~is_box_near_crop_edge(data["boxes"], crop_box, [0, 0, orig_w, orig_h])
        if not torch.all(keep_mask):
            data.filter(keep_mask)
        data["masks"] = uncrop_masks(data["masks"], crop_box, orig_h, orig_w)
        data["rles"] = mask_to_rle_pytorch(data["masks"])
        del data["masks"]
        return data

    def _process_crop(
        self,
        image: np.ndarray,
        crop_box: list[int],
        crop_layer_idx: int,
        orig_size: tuple[int, ...],
    ) -> MaskData:
        """Encode the crop once, then run every requested granularity on it (per-g NMS, no cross-g NMS)."""
        x0, y0, x1, y1 = crop_box
        cropped = image[y0:y1, x0:x1, :]
        cropped_size = cropped.shape[:2]
        self.predictor.set_image(cropped)
        points_scale = np.array(cropped_size)[None, ::-1]
        points = self.point_grids[crop_layer_idx] * points_scale

        n_batches = -(-len(points) // self.points_per_batch)
        bar = tqdm(
            total=n_batches * len(self._granularities),
            desc="segment-all",
            unit="batch",
            disable=not self.show_progress,
            leave=False,
        )
        pooled = MaskData()
        try:
            for g_index, g in enumerate(self._granularities):
                self.pred_iou_thresh, self.stability_score_thresh = self.thresholds_for(g)
                self.predictor.default_granularity = g
                data = MaskData()
                for (batch_points,) in batch_iterator(self.points_per_batch, points):
                    batch = self._process_batch(
                        batch_points, cropped_size, crop_box, orig_size, normalize=True
                    )
                    # The first-pass low-res logits (256×256 per point) are only needed inside the batch (M2M).
                    if "low_res_masks" in batch._stats:
                        del batch["low_res_masks"]
                    data.cat(batch)
                    bar.update(1)
                if len(data["rles"]) > 0:
                    keep = batched_nms(
                        data["boxes"].float(),
                        data["iou_preds"],
                        torch.zeros_like(data["boxes"][:, 0]),
                        iou_threshold=self.box_nms_thresh,
                    )
                    data.filter(keep)
                # An index, not the value: sam2's MaskData.to_numpy() casts to float32, which would turn 0.3 into
                # 0.30000001; small integers survive the cast exactly.
                data["granularity_index"] = torch.full((len(data["rles"]),), g_index, dtype=torch.int64)
                pooled.cat(data)
        finally:
            bar.close()
            self.predictor.default_granularity = None
            self.predictor.reset_predictor()

        if len(pooled["rles"]) == 0:
            return _empty_mask_data()
        pooled["boxes"] = uncrop_boxes_xyxy(pooled["boxes"], crop_box)
        pooled["points"] = uncrop_points(pooled["points"], crop_box)
        pooled["crop_boxes"] = torch.tensor([crop_box for _ in range(len(pooled["rles"]))])
        return pooled


def _empty_mask_data() -> MaskData:
    return MaskData(
        rles=[],
        boxes=torch.zeros((0, 4)),
        iou_preds=torch.zeros((0,)),
        points=torch.zeros((0, 2)),
        stability_score=torch.zeros((0,)),
        crop_boxes=torch.zeros((0, 4)),
        granularity_index=torch.zeros((0,), dtype=torch.int64),
    )
