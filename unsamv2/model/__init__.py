"""UnSAMv2 model on top of the ``sam2`` package: granularity encoder, granularity mask token, LoRA, checkpoints,
and predictors for images, whole images and videos.

Typical use::

    from unsamv2.core.constants import EVAL_MASK_THRESHOLD
    from unsamv2.model import build_unsamv2, UnSAMv2ImagePredictor

    model = build_unsamv2(checkpoint="unsamv2_small.pt", device="cpu")  # size read from the checkpoint
    predictor = UnSAMv2ImagePredictor(model, mask_threshold=EVAL_MASK_THRESHOLD)  # -1, the official value
    predictor.set_image(image)                                          # H×W×3 uint8 RGB
    masks, ious, logits = predictor.predict(points, labels, granularity=0.3)

Names are imported lazily, so ``import unsamv2.model`` (e.g. by the command line) does not load sam2 and torch
until they are used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "build_unsamv2": "unsamv2.model.build",
    "build_sam2_base": "unsamv2.model.build",
    "build_sam2_model": "unsamv2.model.build",
    "build_sam2_video_model": "unsamv2.model.build",
    "attach_granularity_modules": "unsamv2.model.build",
    "count_trainable_parameters": "unsamv2.model.build",
    "detect_model_size": "unsamv2.model.build",
    "set_unsamv2_trainable": "unsamv2.model.build",
    "GranularityConfig": "unsamv2.model.build",
    "MODEL_CONFIGS": "unsamv2.model.build",
    "load_checkpoint": "unsamv2.model.checkpoint",
    "read_checkpoint": "unsamv2.model.checkpoint",
    "save_checkpoint": "unsamv2.model.checkpoint",
    "CheckpointError": "unsamv2.model.checkpoint",
    "merge_lora": "unsamv2.model.lora",
    "LoRALinear": "unsamv2.model.lora",
    "GranularityPromptEncoder": "unsamv2.model.prompt_encoder",
    "GranularityMaskDecoder": "unsamv2.model.decoder",
    "fourier_features": "unsamv2.model.granularity",
    "validate_granularity": "unsamv2.model.granularity",
    "UnSAMv2ImagePredictor": "unsamv2.model.predictor",
    "UnSAMv2AutomaticMaskGenerator": "unsamv2.model.automatic",
    "UnSAMv2VideoPredictor": "unsamv2.model.video",
    "Sam2BaselineVideoPredictor": "unsamv2.model.video",
    "track_object": "unsamv2.model.video",
    "granularity_strip": "unsamv2.model.figures",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'unsamv2.model' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # cache: later look-ups bypass __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
