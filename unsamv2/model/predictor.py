"""Interactive image predictor: set an image once, then ask for masks at any granularity.

Built on ``sam2``'s ``SAM2ImagePredictor`` (image transforms, feature caching, prompt preparation are inherited);
only the decoding step changes: every query carries a granularity token and the decoder returns one mask (the
granularity token's) with the borrowed IoU score. Many (points, g) queries share one image embedding and run as
one batched decoder call, which is what makes a granularity slider or a granularity search cheap.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL.Image import Image
from sam2.modeling.sam2_base import SAM2Base
from sam2.sam2_image_predictor import SAM2ImagePredictor

from unsamv2.model.build import sam2_feature_sizes
from unsamv2.model.granularity import validate_granularities, validate_granularity
from unsamv2.model.prompt_encoder import GranularityPromptEncoder

__all__ = ["UnSAMv2ImagePredictor", "default_decoder_chunk_size"]

#: Queries per decoder call on a CPU (``benchmarks/bench_granularity_batch.py --chunk-sizes`` measures others).
CPU_DECODER_CHUNK = 4


def default_decoder_chunk_size(device: torch.device | str) -> int | None:
    """Decoder chunk for ``device``: :data:`CPU_DECODER_CHUNK` on a CPU; no split on a GPU, where a large batch
    is what keeps the device busy (the AMG's 128-point batches are the official, memory-tested size)."""
    return CPU_DECODER_CHUNK if torch.device(device).type == "cpu" else None

Prediction = tuple[np.ndarray, np.ndarray, np.ndarray]


class UnSAMv2ImagePredictor(SAM2ImagePredictor):
    """``SAM2ImagePredictor`` for UnSAMv2 models: every prediction is conditioned on a granularity g ∈ [0.1, 1].

    Args:
        sam_model: a model built by :func:`unsamv2.model.build.build_unsamv2`.
        mask_threshold: logit threshold for binary masks (0.0 as SAM-2; the official evaluation uses -1.0).
        max_hole_area, max_sprinkle_area: sam2's optional post-processing (needs sam2's CUDA extension).
    """

    def __init__(
        self,
        sam_model: SAM2Base,
        mask_threshold: float = 0.0,
        max_hole_area: float = 0.0,
        max_sprinkle_area: float = 0.0,
    ) -> None:
        if not isinstance(getattr(sam_model, "sam_prompt_encoder", None), GranularityPromptEncoder):
            raise TypeError("UnSAMv2ImagePredictor needs a model built by unsamv2.model.build_unsamv2")
        super().__init__(
            sam_model,
            mask_threshold=mask_threshold,
            max_hole_area=max_hole_area,
            max_sprinkle_area=max_sprinkle_area,
        )
        # sam2 hard-codes the 1024-px feature sizes; derive them from the model so smaller inputs work too.
        self._bb_feat_sizes = sam2_feature_sizes(int(sam_model.image_size))
        # Granularity used by `_predict` when a caller (sam2's automatic mask generator code) does not pass one.
        self.default_granularity: float | None = None
        # Queries per decoder call; a larger batch is decoded in chunks of this size (None = never split).
        self.decoder_chunk_size: int | None = default_decoder_chunk_size(self.device)

    # ------------------------------------------------------------------ public API
    def set_image(self, image: np.ndarray | Image) -> None:
        """Encode an RGB image (H×W×3 uint8 array or PIL image) once for the following predictions."""
        if isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"image must be an H×W×3 RGB array, got shape {image.shape}")
            if not image.flags.writeable:
                image = image.copy()  # torchvision warns on read-only arrays (e.g. views of decoded files)
        super().set_image(image)

    def predict(
        self,
        point_coords: np.ndarray | None,
        point_labels: np.ndarray | None,
        granularity: float,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
        m2m: bool = False,
    ) -> Prediction:
        """One mask for one prompt at granularity ``granularity``.

        Args:
            point_coords: N×2 (x, y) pixel coordinates of the clicks in the original image.
            point_labels: N labels, 1 positive, 0 negative.
            granularity: g in [0.1, 1.0] (Python/NumPy float or int).
            box: optional XYXY box.
            mask_input: optional 1×256×256 low-res logits of a previous prediction.
            multimask_output: selects the IoU slot reported (max of slots 1–3 if True, slot 0 if False); the mask
                is always the granularity token's.
            return_logits: return logits instead of ``logits > mask_threshold``.
            normalize_coords: coordinates are in original-image pixels (sam2 convention).
            m2m: run the official mask-to-mask second pass (same prompt and g, first-pass logits as mask input,
                ``multimask_output=False``) and return its result.

        Returns:
            masks 1×H×W (bool, or float logits), iou 1, low-res logits 1×h×w.
        """
        g = validate_granularity(granularity)
        self._require_image()
        mask_t, coords_t, labels_t, box_t = self._prep_prompts(
            point_coords, point_labels, box, mask_input, normalize_coords
        )
        masks, iou, low_res = self._two_pass(
            coords_t, labels_t, box_t, mask_t, torch.tensor([g]), multimask_output, return_logits, m2m
        )
        return self._to_numpy(masks[0], iou[0], low_res[0])

    def predict_queries(
        self,
        point_coords: np.ndarray,
        point_labels: np.ndarray,
        granularities: Sequence[float] | np.ndarray | float,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
        m2m: bool = False,
    ) -> Prediction:
        """Q independent queries (each N clicks + one granularity) in one batched decoder call.

        Args:
            point_coords: Q×N×2 clicks (every query has the same number of clicks).
            point_labels: Q×N labels.
            granularities: Q values, or one value for all queries.
            mask_input: optional Q×1×h×w low-res logits.

        Returns:
            masks Q×H×W, ious Q, low-res logits Q×h×w.
        """
        self._require_image()
        coords = np.asarray(point_coords, dtype=np.float32)
        labels = np.asarray(point_labels)
        if coords.ndim != 3 or coords.shape[-1] != 2 or labels.shape != coords.shape[:2]:
            raise ValueError(
                f"point_coords must be Q×N×2 and point_labels Q×N, got {coords.shape} and {labels.shape}"
            )
        q = coords.shape[0]
        if np.ndim(granularities) == 0:
            gs = [validate_granularity(granularities)] * q
        else:
            gs = validate_granularities(granularities)
        if len(gs) != q:
            raise ValueError(f"{len(gs)} granularities for {q} queries")
        mask_t, coords_t, labels_t, _ = self._prep_prompts(coords, labels, None, mask_input, normalize_coords)
        masks, iou, low_res = self._two_pass(
            coords_t, labels_t, None, mask_t, torch.tensor(gs), multimask_output, return_logits, m2m
        )
        return self._to_numpy(masks[:, 0], iou[:, 0], low_res[:, 0])

    def predict_granularities(
        self,
        point_coords: np.ndarray,
        point_labels: np.ndarray,
        granularities: Sequence[float] | np.ndarray,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
        m2m: bool = False,
    ) -> Prediction:
        """The same clicks at G granularities in one batched decoder call → masks G×H×W, ious G, logits G×h×w."""
        gs = validate_granularities(granularities)
        coords = np.asarray(point_coords, dtype=np.float32)
        labels = np.asarray(point_labels)
        if coords.ndim != 2 or coords.shape[-1] != 2 or labels.shape != coords.shape[:1]:
            raise ValueError(
                f"point_coords must be N×2 and point_labels N, got {coords.shape} and {labels.shape}"
            )
        reps = len(gs)
        return self.predict_queries(
            np.repeat(coords[None], reps, axis=0),
            np.repeat(labels[None], reps, axis=0),
            gs,
            multimask_output=multimask_output,
            return_logits=return_logits,
            normalize_coords=normalize_coords,
            m2m=m2m,
        )

    def predict_batch(
        self,
        point_coords_batch: list[np.ndarray] | None = None,
        point_labels_batch: list[np.ndarray] | None = None,
        box_batch: list[np.ndarray] | None = None,
        mask_input_batch: list[np.ndarray] | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
        *,
        granularity: float,
    ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """sam2's multi-image ``predict_batch`` (after ``set_image_batch``) at one granularity for all prompts."""
        g = validate_granularity(granularity)
        previous = self.default_granularity
        self.default_granularity = g
        try:
            return super().predict_batch(
                point_coords_batch,
                point_labels_batch,
                box_batch,
                mask_input_batch,
                multimask_output=multimask_output,
                return_logits=return_logits,
                normalize_coords=normalize_coords,
            )
        finally:
            self.default_granularity = previous

    # ------------------------------------------------------------------ internals
    def _require_image(self) -> None:
        if not self._is_image_set:
            raise RuntimeError("an image must be set with .set_image(...) before mask prediction")

    @staticmethod
    def _to_numpy(masks: torch.Tensor, iou: torch.Tensor, low_res: torch.Tensor) -> Prediction:
        return (
            masks.detach().cpu().numpy()
            if masks.dtype == torch.bool
            else masks.float().detach().cpu().numpy(),
            iou.float().detach().cpu().numpy(),
            low_res.float().detach().cpu().numpy(),
        )

    def _two_pass(
        self,
        coords: torch.Tensor | None,
        labels: torch.Tensor | None,
        box: torch.Tensor | None,
        mask_input: torch.Tensor | None,
        granularity: torch.Tensor,
        multimask_output: bool,
        return_logits: bool,
        m2m: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        masks, iou, low_res = self._predict(
            coords,
            labels,
            box,
            mask_input,
            multimask_output,
            return_logits=return_logits or m2m,
            granularity=granularity,
        )
        if m2m:
            # Official M2M refinement (AMG `refine_with_m2m`): same clicks and g, previous logits as mask input.
            masks, iou, low_res = self._predict(
                coords,
                labels,
                box,
                low_res,
                multimask_output=False,
                return_logits=return_logits,
                granularity=granularity,
            )
        return masks, iou, low_res

    @torch.no_grad()
    def _predict(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        img_idx: int = -1,
        granularity: torch.Tensor | float | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decode transformed prompts (B×N×2 model-frame coordinates) → masks B×1×H×W, iou B×1, logits B×1×h×w.

        Same signature as sam2's ``_predict`` plus ``granularity`` (B values or one), so sam2's automatic mask
        generator code can call it; without ``granularity`` it uses ``self.default_granularity``.
        """
        low_res, iou = self._decode(point_coords, point_labels, boxes, mask_input, multimask_output, img_idx,
                                    granularity)
        # Upsampled chunk by chunk too: 1,280 float masks at image size are gigabytes of memory traffic.
        step = self.decoder_chunk_size or max(1, low_res.shape[0])
        chunks = []
        # At least one pass: with no query the empty batch still comes back with the right shape.
        for start in range(0, max(1, low_res.shape[0]), step):
            logits = self.upsample_logits(low_res[start : start + step], img_idx)
            chunks.append(logits if return_logits else logits > self.mask_threshold)
        masks = chunks[0] if len(chunks) == 1 else torch.cat(chunks)
        low_res = torch.clamp(low_res, -32.0, 32.0)
        return masks, iou, low_res

    @torch.no_grad()
    def _decode(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        img_idx: int = -1,
        granularity: torch.Tensor | float | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoder step of :meth:`_predict`: unclamped low-res logits B×1×h×w and IoU B×1, nothing at image
        size (callers that keep only some masks upsample those with :meth:`upsample_logits`)."""
        self._require_image()
        if granularity is None:
            granularity = self.default_granularity
        if granularity is None:
            raise ValueError("a granularity in [0.1, 1.0] is required for UnSAMv2 predictions")

        points = (point_coords, point_labels) if point_coords is not None else None
        if boxes is not None:
            # Fold boxes into labelled points (labels 2, 3) before the clicks, as SAM-2 is trained.
            box_coords = boxes.reshape(-1, 2, 2)
            box_labels = torch.tensor([[2, 3]], dtype=torch.int, device=boxes.device).repeat(
                box_coords.shape[0], 1
            )
            if points is not None:
                points = (
                    torch.cat([box_coords, points[0]], dim=1),
                    torch.cat([box_labels, points[1]], dim=1),
                )
            else:
                points = (box_coords, box_labels)

        encoder: GranularityPromptEncoder = self.model.sam_prompt_encoder
        sparse, dense = encoder(points=points, boxes=None, masks=mask_input, granularity=granularity)
        high_res = [level[img_idx].unsqueeze(0) for level in self._features["high_res_feats"]]
        image_embed = self._features["image_embed"][img_idx].unsqueeze(0)
        image_pe = encoder.get_dense_pe()
        n = sparse.shape[0]
        step = n if not self.decoder_chunk_size else self.decoder_chunk_size
        # Every query runs the two-way transformer over all image tokens and upsamples its own 4×-resolution
        # features, so the per-query work does not shrink with the batch; what grows is the working set
        # (B × 256 × 64 × 64 tokens, B × 32 × 256 × 256 upscaled features at 1024 px). On a CPU a few queries
        # per call keep it in cache: a 10-query call was 1.6× slower than ten 1-query calls before it was split.
        outputs = []
        for start in range(0, n, step):
            chunk_dense = dense[start : start + step] if dense.shape[0] == n else dense
            low_res, iou, _, _ = self.model.sam_mask_decoder(
                image_embeddings=image_embed,
                image_pe=image_pe,
                sparse_prompt_embeddings=sparse[start : start + step],
                dense_prompt_embeddings=chunk_dense,
                multimask_output=multimask_output,
                repeat_image=min(step, n - start) > 1,
                high_res_features=high_res,
            )
            outputs.append((low_res, iou))
        if len(outputs) == 1:
            return outputs[0]
        return torch.cat([o[0] for o in outputs]), torch.cat([o[1] for o in outputs])

    def upsample_logits(self, low_res: torch.Tensor, img_idx: int = -1) -> torch.Tensor:
        """Unclamped low-res logits B×1×h×w → logits at the size of image ``img_idx`` (sam2's post-processing)."""
        return self._transforms.postprocess_masks(low_res, self._orig_hw[img_idx])
