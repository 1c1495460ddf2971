"""Build UnSAMv2 on top of any SAM-2.1 size from the ``sam2`` package's own Hydra configs.

``build_unsamv2`` composes ``configs/sam2.1/sam2.1_hiera_{t,s,b+,l}.yaml`` with the few overrides of the official
``unsamv2_small.yaml`` (single-mask output everywhere), instantiates sam2's ``SAM2Base`` (or our video predictor
subclass), then *attaches* the granularity modules by composition: the stock prompt encoder and mask decoder are
replaced by subclasses carrying the same weights plus the new modules, and LoRA wraps the decoder's attention
projections. Everything of SAM-2 is frozen; only the modules UnSAMv2 adds (granularity encoder, granularity token
and head, LoRA) are trainable.

Stock SAM-2.1 (the baselines) is built here too: :func:`build_sam2_model` as sam2's own ``build_sam2`` builds it,
and :func:`sam2_image_predictor` wraps it in sam2's ``SAM2ImagePredictor`` at any input size.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from hydra import compose
from hydra.utils import instantiate
from omegaconf import OmegaConf
from sam2.modeling.sam2_base import SAM2Base

from unsamv2.core.constants import is_granularity_parameter
from unsamv2.model.decoder import GranularityMaskDecoder
from unsamv2.model.lora import apply_lora, merge_lora
from unsamv2.model.prompt_encoder import GranularityPromptEncoder

if TYPE_CHECKING:
    from sam2.sam2_image_predictor import SAM2ImagePredictor

__all__ = [
    "MODEL_CONFIGS",
    "GranularityConfig",
    "attach_granularity_modules",
    "build_sam2_base",
    "build_sam2_from_config",
    "build_sam2_model",
    "build_sam2_video_model",
    "build_unsamv2",
    "count_trainable_parameters",
    "detect_model_size",
    "granularity_config_from_state_dict",
    "normalize_model_size",
    "sam2_feature_sizes",
    "sam2_image_predictor",
    "set_unsamv2_trainable",
    "trainable_parameter_names",
]

log = logging.getLogger(__name__)

#: sam2 package config names (resolved on sam2's Hydra search path, not file paths).
MODEL_CONFIGS: dict[str, str] = {
    "tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "large": "configs/sam2.1/sam2.1_hiera_l.yaml",
}

_SIZE_ALIASES: dict[str, str] = {
    "t": "tiny",
    "tiny": "tiny",
    "hiera_t": "tiny",
    "s": "small",
    "small": "small",
    "hiera_s": "small",
    "b+": "base_plus",
    "base+": "base_plus",
    "base_plus": "base_plus",
    "base-plus": "base_plus",
    "baseplus": "base_plus",
    "hiera_b+": "base_plus",
    "l": "large",
    "large": "large",
    "hiera_l": "large",
}

# (Hiera patch-embedding width, number of Hiera blocks) → size. Tiny and small share the width (96) and differ in
# depth (stages [1,2,7,2] = 12 blocks vs [1,2,11,2] = 16); base+ is 112 wide ([2,3,16,3] = 24), large 144 ([2,6,36,4]).
_HIERA_SIGNATURES: dict[tuple[int, int], str] = {
    (96, 12): "tiny",
    (96, 16): "small",
    (112, 24): "base_plus",
    (144, 48): "large",
}

_PATCH_EMBED_KEY = "image_encoder.trunk.patch_embed.proj.weight"
_BLOCK_PREFIX = "image_encoder.trunk.blocks."

# The deltas of the official unsamv2_small.yaml against stock sam2.1_hiera_s.yaml: the decoder
# returns one (granularity) mask, so multimask outputs and multimask object-pointer tokens are switched off.
_UNSAMV2_OVERRIDES: tuple[str, ...] = (
    "++model.multimask_output_in_sam=false",
    "++model.multimask_output_for_tracking=false",
    "++model.use_multimask_token_for_obj_ptr=false",
)

# The inference post-processing sam2's build_sam2 applies (sam2/build_sam.py): with single-mask output the decoder
# falls back to the best of its multimask outputs when the single mask is unstable (in eval mode only).
_SAM2_POSTPROCESSING: tuple[str, ...] = (
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
)

@dataclass(frozen=True)
class GranularityConfig:
    """Hyper-parameters of the modules UnSAMv2 adds (defaults = the official ``unsamv2_small.yaml``)."""

    lora_rank: int = 8
    lora_alpha: float | None = None  # None → 2·rank (official)
    lora_dropout: float = 0.1
    fourier_dim: int = 128
    temperature: float = 100.0
    mlp_layers: int = 3
    mlp_dropout: float = 0.1
    output_token: str = "granularity"  # "sam": the Fig. 10 ablation (unsamv2.model.decoder.OUTPUT_TOKENS)


def granularity_config_from_state_dict(state_dict: Mapping[str, torch.Tensor]) -> GranularityConfig:
    """The granularity-module shape a checkpoint was trained with (the official defaults where it holds none):
    the LoRA rank from its ``lora_A`` factors, the Fourier width from the granularity MLP's first layer. A stock
    SAM-2.1 or LoRA-merged checkpoint gives the defaults (its LoRA, fresh with B = 0, contributes nothing).
    A granularity encoder without a granularity mask token is the Fig. 10 ablation (``output_token="sam"``)."""
    changes: dict[str, int | str] = {}
    for key, tensor in state_dict.items():
        if key.endswith(".lora_A"):
            changes["lora_rank"] = int(tensor.shape[0])
        elif key.endswith("fourier_embedder.mlp.mlp.0.weight"):
            changes["fourier_dim"] = int(tensor.shape[1])
    has_encoder = any(k.startswith("sam_prompt_encoder.granularity_embedding.") for k in state_dict)
    if has_encoder and not any(k.startswith("sam_mask_decoder.gra_token.") for k in state_dict):
        changes["output_token"] = "sam"
    return GranularityConfig(**changes)  # type: ignore[arg-type]


def normalize_model_size(size: str) -> str:
    """Map a size name or alias (``t``, ``small``, ``b+``, ``base_plus``, ``large`` …) to its canonical name."""
    key = str(size).strip().lower().replace("sam2.1_", "").replace("sam2.1-", "")
    if key not in _SIZE_ALIASES:
        raise ValueError(
            f"unknown SAM-2.1 model size {size!r}; expected one of tiny, small, base_plus, large"
        )
    return _SIZE_ALIASES[key]


def detect_model_size(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Which SAM-2.1 size a state dict holds, read from the Hiera trunk's tensor shapes.

    Raises ``ValueError`` if the trunk keys are missing or the shapes match no known size.
    """
    if _PATCH_EMBED_KEY not in state_dict:
        raise ValueError(
            f"cannot detect the SAM-2.1 size: key {_PATCH_EMBED_KEY!r} is missing (not a SAM-2 checkpoint?)"
        )
    width = int(state_dict[_PATCH_EMBED_KEY].shape[0])
    blocks = {
        int(k[len(_BLOCK_PREFIX) :].split(".", 1)[0]) for k in state_dict if k.startswith(_BLOCK_PREFIX)
    }
    depth = max(blocks) + 1 if blocks else 0
    size = _HIERA_SIGNATURES.get((width, depth))
    if size is None:
        known = ", ".join(f"{v} (width {w}, {d} blocks)" for (w, d), v in _HIERA_SIGNATURES.items())
        raise ValueError(
            f"Hiera trunk of width {width} with {depth} blocks matches no SAM-2.1 size; known: {known}"
        )
    return size


def _compose_sam2_config(size: str, overrides: list[str]) -> object:
    return _compose_config(MODEL_CONFIGS[size], overrides)


def _compose_config(config_name: str, overrides: list[str]) -> object:
    # Importing sam2 initialises Hydra on the sam2 package (sam2/__init__.py); config names are package paths.
    import sam2  # noqa: F401

    cfg = compose(config_name=config_name, overrides=overrides)
    OmegaConf.resolve(cfg)
    return cfg


def _check_image_size(image_size: int) -> None:
    if image_size % 64 != 0 or image_size <= 0:
        # 16× for the image embedding, and the Hiera stages halve it three more times.
        raise ValueError(f"image_size must be a positive multiple of 64, got {image_size}")


def build_sam2_base(
    size: str,
    image_size: int = 1024,
    video: bool = False,
    extra_overrides: list[str] | None = None,
) -> SAM2Base:
    """Instantiate a randomly initialised *stock-architecture* SAM-2.1 model (on CPU) from sam2's configs.

    ``video=True`` instantiates :class:`unsamv2.model.video.UnSAMv2VideoPredictor` (a ``SAM2VideoPredictor``
    subclass) instead of ``SAM2Base``. The UnSAMv2 overrides (single-mask outputs) are always applied.
    """
    size = normalize_model_size(size)
    _check_image_size(image_size)
    overrides = list(_UNSAMV2_OVERRIDES)
    if image_size != 1024:
        overrides.append(f"++model.image_size={image_size}")
    if video:
        overrides += [
            "++model._target_=unsamv2.model.video.UnSAMv2VideoPredictor",
            # sam2's build_sam2_video_predictor post-processing: the memory encoder sees the clicked mask binarised
            # exactly as the user sees it.
            "++model.binarize_mask_from_pts_for_mem_enc=true",
        ]
    overrides += list(extra_overrides or [])
    cfg = _compose_sam2_config(size, overrides)
    return instantiate(cfg.model, _recursive_=True)


def build_sam2_model(
    size: str,
    checkpoint: str | os.PathLike[str] | Mapping[str, torch.Tensor] | None = None,
    *,
    image_size: int = 1024,
    device: str | torch.device = "cpu",
) -> SAM2Base:
    """Stock SAM-2.1 of ``size`` as sam2's ``build_sam2`` builds it, with ``checkpoint`` loaded, in eval mode.

    The model is sam2's config plus sam2's inference post-processing (see ``_SAM2_POSTPROCESSING``; it acts in eval
    mode only), without UnSAMv2's overrides; at 1024 px it is the very model ``build_sam2(MODEL_CONFIGS[size],
    checkpoint)`` returns, weights included. ``checkpoint``: a stock SAM-2.1 ``.pt`` file or state dict (every key
    must match; ``None`` = random weights).
    """
    return _build_stock_sam2(MODEL_CONFIGS[normalize_model_size(size)], checkpoint, image_size, device)


def build_sam2_from_config(
    config: str,
    checkpoint: str | os.PathLike[str] | Mapping[str, torch.Tensor] | None = None,
    *,
    device: str | torch.device = "cpu",
) -> SAM2Base:
    """:func:`build_sam2_model` from any sam2 config name (e.g. SAM-2.0's ``configs/sam2/sam2_hiera_s.yaml``)."""
    return _build_stock_sam2(config, checkpoint, 1024, device)


def build_sam2_video_model(
    size: str,
    checkpoint: str | os.PathLike[str] | Mapping[str, torch.Tensor] | None = None,
    *,
    image_size: int = 1024,
    device: str | torch.device = "cpu",
) -> SAM2Base:
    """Stock SAM-2.1 of ``size`` as sam2's ``build_sam2_video_predictor`` builds it (its video post-processing
    included), as :class:`unsamv2.model.video.Sam2BaselineVideoPredictor`; same weights as :func:`build_sam2_model`.
    """
    overrides = [
        "++model._target_=unsamv2.model.video.Sam2BaselineVideoPredictor",
        "++model.binarize_mask_from_pts_for_mem_enc=true",
    ]
    if torch.device(device).type == "cuda":
        overrides.append("++model.fill_hole_area=8")  # needs sam2's CUDA kernel (see build_unsamv2)
    return _build_stock_sam2(MODEL_CONFIGS[normalize_model_size(size)], checkpoint, image_size, device, overrides)


def _build_stock_sam2(
    config_name: str,
    checkpoint: str | os.PathLike[str] | Mapping[str, torch.Tensor] | None,
    image_size: int,
    device: str | torch.device,
    extra_overrides: list[str] | None = None,
) -> SAM2Base:
    from unsamv2.model.checkpoint import load_state_dict_into_model, read_checkpoint

    _check_image_size(image_size)
    overrides = list(_SAM2_POSTPROCESSING) + list(extra_overrides or [])
    if image_size != 1024:
        overrides.append(f"++model.image_size={image_size}")
    model = instantiate(_compose_config(config_name, overrides).model, _recursive_=True)
    if checkpoint is not None:
        source = "<state dict>" if isinstance(checkpoint, Mapping) else str(checkpoint)
        state = checkpoint if isinstance(checkpoint, Mapping) else read_checkpoint(Path(checkpoint))
        # A stock model has no module of its own to keep fresh: a missing or extra key is an error.
        report = load_state_dict_into_model(model, state, source=source)
        log.info("loaded %s: %s", source, report.summary())
    model = model.to(torch.device(device))
    model.eval()
    return model


def sam2_feature_sizes(image_size: int) -> list[tuple[int, int]]:
    """SAM-2's backbone feature-map sizes (strides 4, 8, 16) at ``image_size``; sam2's predictor assumes 1024 px."""
    s = int(image_size)
    return [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]


def sam2_image_predictor(model: SAM2Base, mask_threshold: float) -> SAM2ImagePredictor:
    """sam2's ``SAM2ImagePredictor`` for a stock model of any input size, without mask clean-up.

    No hole filling and no sprinkle removal (``max_hole_area = max_sprinkle_area = 0``, as the official
    evaluation); the feature sizes are those of ``model.image_size`` (sam2 hard-codes the 1024-px ones).
    """
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    predictor = SAM2ImagePredictor(model, mask_threshold=mask_threshold, max_hole_area=0.0, max_sprinkle_area=0.0)
    predictor._bb_feat_sizes = sam2_feature_sizes(int(model.image_size))
    return predictor


def attach_granularity_modules(model: SAM2Base, config: GranularityConfig | None = None) -> SAM2Base:
    """Turn a SAM-2 model into UnSAMv2 in place: granularity prompt encoder, granularity mask token, LoRA.

    The existing SAM-2 weights are kept (a model already loaded with SAM-2.1 weights stays loaded); the new
    modules are freshly initialised (PyTorch defaults; LoRA A ~ 0.01·N(0,1), B = 0). Parameters are then frozen
    except the modules UnSAMv2 adds (:func:`set_unsamv2_trainable`).
    """
    cfg = config or GranularityConfig()
    if isinstance(model.sam_prompt_encoder, GranularityPromptEncoder):
        raise RuntimeError("granularity modules are already attached to this model")  # noqa: TRY004 (state, not type)
    model.sam_prompt_encoder = GranularityPromptEncoder.from_prompt_encoder(
        model.sam_prompt_encoder,
        fourier_dim=cfg.fourier_dim,
        temperature=cfg.temperature,
        mlp_layers=cfg.mlp_layers,
        mlp_dropout=cfg.mlp_dropout,
    )
    model.sam_mask_decoder = GranularityMaskDecoder.from_mask_decoder(model.sam_mask_decoder, cfg.output_token)
    if cfg.lora_rank > 0:
        apply_lora(
            model.sam_mask_decoder.transformer,
            rank=cfg.lora_rank,
            alpha=cfg.lora_alpha,
            dropout=cfg.lora_dropout,
        )
    model.unsamv2_config = cfg  # read back by save/convert helpers and reports
    set_unsamv2_trainable(model)
    return model


def set_unsamv2_trainable(model: torch.nn.Module) -> None:
    """Freeze everything except the granularity encoder, type embedding, gra token + head and LoRA factors."""
    for name, param in model.named_parameters():
        param.requires_grad = is_granularity_parameter(name)


def trainable_parameter_names(model: torch.nn.Module) -> list[str]:
    """Names of the parameters with ``requires_grad=True``."""
    return [n for n, p in model.named_parameters() if p.requires_grad]


def count_trainable_parameters(model: torch.nn.Module) -> int:
    """Number of trainable scalars (345,760 for sam2.1-hiera-small with LoRA rank 8, as the official code)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def build_unsamv2(
    size: str | None = None,
    checkpoint: str | os.PathLike[str] | Mapping[str, torch.Tensor] | None = None,
    *,
    device: str | torch.device,
    image_size: int = 1024,
    config: GranularityConfig | None = None,
    video: bool = False,
    merge_lora_weights: bool = False,
    mode: str = "eval",
) -> SAM2Base:
    """Build UnSAMv2 for a SAM-2.1 size and optionally load a checkpoint.

    Args:
        size: ``tiny``, ``small``, ``base_plus`` or ``large`` (aliases ``t``, ``s``, ``b+``, ``l``). If None, it is
            read from the checkpoint's tensor shapes (a checkpoint is then required). An explicit size overrides
            detection (a mismatching checkpoint then fails to load with the offending keys listed).
        checkpoint: a ``.pt`` file (or an already-read state dict) in the stock SAM-2.1 format (new modules are
            freshly initialised) or the official UnSAMv2 format (see :mod:`unsamv2.model.checkpoint`).
        device: where the model lives; always explicit (``"cpu"`` works).
        image_size: model input resolution (1024 for all released weights; smaller multiples of 64 for fast tests).
        config: granularity-module hyper-parameters (default: those the checkpoint was trained with, read from its
            shapes by :func:`granularity_config_from_state_dict`; the official ones without a checkpoint).
        video: build the video predictor subclass (:class:`unsamv2.model.video.UnSAMv2VideoPredictor`).
        merge_lora_weights: fold LoRA into the base weights after loading (inference only).
        mode: ``"eval"`` or ``"train"`` (the module mode; frozen parameters stay frozen either way).
    """
    from unsamv2.model.checkpoint import load_state_dict_into_model, read_checkpoint

    if mode not in ("eval", "train"):
        raise ValueError(f"mode must be 'eval' or 'train', got {mode!r}")
    state_dict: Mapping[str, torch.Tensor] | None = None
    source = "<state dict>"
    if checkpoint is not None:
        if isinstance(checkpoint, Mapping):
            state_dict = checkpoint
        else:
            source = str(checkpoint)
            state_dict = read_checkpoint(Path(checkpoint))
    if size is None:
        if state_dict is None:
            raise ValueError("give a model size or a checkpoint to read it from")
        size = detect_model_size(state_dict)
        log.info("checkpoint %s holds SAM-2.1 %s", source, size)
    size = normalize_model_size(size)

    extra: list[str] = []
    if video and torch.device(device).type == "cuda":
        # sam2's video post-processing fills small holes with its CUDA connected-components kernel; on CPU that
        # kernel is missing and sam2 would warn on every frame, so it stays off there.
        extra.append("++model.fill_hole_area=8")
    model = build_sam2_base(size, image_size=image_size, video=video, extra_overrides=extra)
    if config is None and state_dict is not None:
        config = granularity_config_from_state_dict(state_dict)
    attach_granularity_modules(model, config)
    if state_dict is not None:
        report = load_state_dict_into_model(model, state_dict, source=source)
        log.info("loaded %s: %s", source, report.summary())
        model.unsamv2_load_report = report
    if merge_lora_weights:
        merge_lora(model)
    model.unsamv2_size = size
    model = model.to(torch.device(device))
    model.train(mode == "train")
    return model
