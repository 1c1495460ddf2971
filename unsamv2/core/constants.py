"""Facts of the method that several stages use; each is defined here once.

Sources: the official UnSAMv2 evaluation, automatic-mask and video code binarise mask logits at ``> -1``
(``mask_threshold=-1`` / ``pred_probs > -1``); the oracle, ``best_fixed`` and the pooled whole-image mode search
g = 0.1, 0.2, ..., 1.0 (paper §4.1–4.2); the parameter prefixes are the official checkpoint keys of the modules
UnSAMv2 adds to SAM-2 (paper §3.3, ``sam2/modeling`` of yujunwei04/UnSAMv2).
"""
from __future__ import annotations

__all__ = [
    "EVAL_MASK_THRESHOLD",
    "GRANULARITY_GRID",
    "GRANULARITY_MAX",
    "GRANULARITY_MIN",
    "GRANULARITY_PARAM_PREFIXES",
    "MULTIMASK_MASK_THRESHOLD",
    "SAM2_SIZES",
    "SAM2_VIDEO_MASK_THRESHOLD",
    "is_granularity_parameter",
    "is_lora_parameter",
]

#: Logit threshold of the official evaluation, automatic mask generator and video notebook.
EVAL_MASK_THRESHOLD = -1.0
#: Logit threshold of SAM's three multimask candidates in the evaluation's best-of-3 oracle (official UnSAMv2 /
#: GraCo evaluation scripts: the SAM ``--oracle`` path binarises them at 0, not at the evaluation threshold).
MULTIMASK_MASK_THRESHOLD = 0.0
#: Logit threshold of stock SAM-2's video masks (sam2's ``vos_inference.py`` and video notebook: ``> 0``).
SAM2_VIDEO_MASK_THRESHOLD = 0.0

GRANULARITY_MIN = 0.1
GRANULARITY_MAX = 1.0
#: 0.1, 0.2, ..., 1.0 (rounded, so that 0.30000000000000004 never appears in a file name or CSV).
GRANULARITY_GRID: tuple[float, ...] = tuple(round(0.1 * k, 1) for k in range(1, 11))

#: SAM-2.1 model sizes, in the spelling of the official checkpoint files (``sam2.1_hiera_{size}.pt``).
SAM2_SIZES: tuple[str, ...] = ("tiny", "small", "base_plus", "large")

#: Parameter-name prefixes of the granularity encoder and the granularity mask token (official key names).
GRANULARITY_PARAM_PREFIXES: tuple[str, ...] = (
    "sam_prompt_encoder.granularity_embedding.",
    "sam_prompt_encoder.fourier_embedder.",
    "sam_mask_decoder.gra_token.",
    "sam_mask_decoder.gra_output_token_mlp.",
)


def is_lora_parameter(name: str) -> bool:
    """Whether a parameter or checkpoint key is a LoRA factor (``….lora_A`` / ``….lora_B``)."""
    return ".lora_A" in name or ".lora_B" in name


def is_granularity_parameter(name: str) -> bool:
    """Whether a parameter belongs to the modules UnSAMv2 adds (granularity encoder, token, head, LoRA)."""
    return name.startswith(GRANULARITY_PARAM_PREFIXES) or is_lora_parameter(name)
