"""The model side of the interactive evaluation: the :class:`ClickModel` protocol and its two adapters.

:class:`Sam2BaselineModel` wraps sam2's own ``SAM2ImagePredictor`` around stock SAM-2 and :class:`UnSAMv2ClickModel`
the project's ``UnSAMv2ImagePredictor``; both models are built by :mod:`unsamv2.model.build`. Any object with
``name``, ``set_image`` and ``predict_batch`` can be evaluated (the tests use a deterministic fake).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from unsamv2.core.constants import EVAL_MASK_THRESHOLD

__all__ = ["ClickModel", "Prediction", "Sam2BaselineModel", "UnSAMv2ClickModel"]


@dataclass(frozen=True)
class Prediction:
    """A model's answer to one prompt: C candidate masks (C = 1, or 3 for SAM's multimask output)."""

    logits: np.ndarray  # (C, H, W) float, full image resolution
    low_res_logits: np.ndarray  # (C, h, w) float, fed back as mask_input next click (256x256 at 1024-px input)
    iou_pred: np.ndarray  # (C,) the model's own IoU estimate (not used for any selection here)


@runtime_checkable
class ClickModel(Protocol):
    """What the click loop needs from a model. Two methods; see the adapters below for examples."""

    name: str

    def set_image(self, image: np.ndarray) -> None:
        """Encode an (H, W, 3) uint8 RGB image; later predictions refer to it."""

    def predict_batch(
        self,
        points_xy: np.ndarray,
        labels: np.ndarray,
        granularities: Sequence[float | None],
        mask_input: np.ndarray | None,
        multimask: bool = False,
    ) -> list[Prediction]:
        """Answer B independent prompts on the current image in one call.

        Args:
            points_xy: (B, N, 2) float32 click coordinates (x, y) in image pixels; every row has N clicks.
            labels: (B, N) int32, 1 positive / 0 negative.
            granularities: B values; ``None`` = no granularity input.
            mask_input: (B, h, w) previous low-res logits, or None (first click).
            multimask: ask for SAM's three candidate masks instead of one.
        """
        ...


def _as_prediction_list(logits: np.ndarray, low_res: np.ndarray, ious: np.ndarray, batch: int) -> list[Prediction]:
    """Split batched (B*C, ...) arrays into B Predictions; sam2 squeezes a batch of 1 away, so reshape by B."""
    height, width = logits.shape[-2:]
    lr_h, lr_w = low_res.shape[-2:]
    logits = logits.reshape(batch, -1, height, width)
    low_res = low_res.reshape(batch, -1, lr_h, lr_w)
    ious = ious.reshape(batch, -1)
    return [Prediction(logits[b], low_res[b], ious[b]) for b in range(batch)]


class _PredictorAdapter:
    """What both adapters share: the wrapped predictor, the image, and the split of batched outputs."""

    supports_granularity: bool

    def __init__(self, predictor: Any, name: str) -> None:
        self.predictor = predictor
        self.name = name

    def set_image(self, image: np.ndarray) -> None:
        self.predictor.set_image(image)

    def predict_batch(
        self,
        points_xy: np.ndarray,
        labels: np.ndarray,
        granularities: Sequence[float | None],
        mask_input: np.ndarray | None,
        multimask: bool = False,
    ) -> list[Prediction]:
        self._check(granularities, multimask)
        masks, ious, low_res = self._predict(points_xy, labels, granularities,
                                             None if mask_input is None else mask_input[:, None], multimask)
        return _as_prediction_list(masks, low_res, ious, points_xy.shape[0])

    def _check(self, granularities: Sequence[float | None], multimask: bool) -> None:
        raise NotImplementedError

    def _predict(self, points_xy: np.ndarray, labels: np.ndarray, granularities: Sequence[float | None],
                 mask_input: np.ndarray | None, multimask: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise NotImplementedError


class Sam2BaselineModel(_PredictorAdapter):
    """Stock SAM-2 through sam2's own ``SAM2ImagePredictor`` (no granularity input).

    ``multimask=False`` is the ``none`` mode; ``multimask=True`` returns SAM's three candidates, from which the
    click loop keeps the best one against the ground truth (``best_of_3``). The predictor returns logits; the click
    loop thresholds them itself.
    """

    supports_granularity = False

    def __init__(self, predictor: Any, name: str = "sam2") -> None:
        super().__init__(predictor, name)

    @classmethod
    def build(cls, config: str, checkpoint: str | Path | None, device: str, name: str = "sam2") -> Sam2BaselineModel:
        """Build from a sam2 Hydra config name (e.g. ``configs/sam2.1/sam2.1_hiera_s.yaml``) and a checkpoint.

        ``checkpoint=None`` gives random weights (tests and benchmarks only). The model is the one sam2's
        ``build_sam2`` returns (:func:`unsamv2.model.build.build_sam2_from_config`).
        """
        from unsamv2.model.build import build_sam2_from_config, sam2_image_predictor

        model = build_sam2_from_config(config, checkpoint, device=device)
        return cls(sam2_image_predictor(model, EVAL_MASK_THRESHOLD), name=name)

    @classmethod
    def build_sized(cls, size: str, checkpoint: str | Path | None, image_size: int, device: str,
                    name: str = "sam2") -> Sam2BaselineModel:
        """Stock SAM-2.1 of ``size`` at any input size (e.g. the offline demo's 128-px models).

        At 1024 px this is the same model as :meth:`build` with the size's config.
        """
        from unsamv2.model.build import build_sam2_model, sam2_image_predictor

        model = build_sam2_model(size, checkpoint, image_size=image_size, device=device)
        return cls(sam2_image_predictor(model, EVAL_MASK_THRESHOLD), name=name)

    def _check(self, granularities: Sequence[float | None], multimask: bool) -> None:
        if any(g is not None for g in granularities):
            raise ValueError("stock SAM-2 has no granularity input: use granularity mode 'none' or 'best_of_3'")

    def _predict(self, points_xy: np.ndarray, labels: np.ndarray, granularities: Sequence[float | None],
                 mask_input: np.ndarray | None, multimask: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.predictor.predict(point_coords=points_xy, point_labels=labels, mask_input=mask_input,
                                      multimask_output=multimask, return_logits=True)


class UnSAMv2ClickModel(_PredictorAdapter):
    """UnSAMv2 through :class:`unsamv2.model.predictor.UnSAMv2ImagePredictor` (one mask per granularity).

    The decoder is called with ``multimask_output=False`` as in the official evaluation (that flag only selects
    which IoU slot is reported; the mask is always the granularity token's). ``none``/``best_of_3`` are not
    available: UnSAMv2 always needs a granularity.
    """

    supports_granularity = True

    def __init__(self, predictor: Any, name: str = "unsamv2") -> None:
        super().__init__(predictor, name)

    @classmethod
    def build(cls, size: str | None, checkpoint: str | Path | None, device: str, image_size: int = 1024,
              name: str = "unsamv2") -> UnSAMv2ClickModel:
        """Build with :func:`unsamv2.model.build.build_unsamv2` (``checkpoint=None``: random weights).

        LoRA is folded into the base weights (``merge_lora_weights=True``): the same function with fewer matrix
        products, which matters because the oracle's decoder calls dominate the evaluation cost.
        """
        from unsamv2.model.build import build_unsamv2
        from unsamv2.model.predictor import UnSAMv2ImagePredictor

        model = build_unsamv2(size, checkpoint, device=device, image_size=image_size, merge_lora_weights=True)
        return cls(UnSAMv2ImagePredictor(model, mask_threshold=EVAL_MASK_THRESHOLD), name=name)

    def _check(self, granularities: Sequence[float | None], multimask: bool) -> None:
        if multimask:
            raise ValueError("UnSAMv2 returns one mask per granularity: 'best_of_3' is a SAM-2 baseline mode")
        if any(g is None for g in granularities):
            raise ValueError("UnSAMv2 needs a granularity for every prompt: use 'oracle', 'fixed:<g>' or "
                             "'best_fixed'")

    def _predict(self, points_xy: np.ndarray, labels: np.ndarray, granularities: Sequence[float | None],
                 mask_input: np.ndarray | None, multimask: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.predictor.predict_queries(points_xy, labels, [float(g) for g in granularities if g is not None],
                                              mask_input=mask_input, multimask_output=False, return_logits=True)
