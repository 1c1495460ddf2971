"""Random-weight checkpoints in the exact released formats, for tests and the offline demo.

No model weights can be downloaded in CI, so every loading path is exercised with checkpoints written here: same
key names, shapes and container (``{"model": state_dict}``) as ``sam2.1_hiera_*.pt`` and the official UnSAMv2
weights — only the values are random. A model built from them produces meaningless masks (label demo output
made with them as such).

Command line::

    unsamv2 random-checkpoint --model-size small --format unsamv2 --out demo_unsamv2_small.pt
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from unsamv2.io.atomic import atomic_output

if TYPE_CHECKING:
    import torch

__all__ = ["CHECKPOINT_FORMATS", "random_state_dict", "write_random_checkpoint"]

#: sam2: stock SAM-2.1 keys; unsamv2: official format (LoRA base weights as ``…_proj.original_layer.*``);
#: unsamv2-plain: official format with plain base keys (``…_proj.weight``); unsamv2-merged: LoRA folded in.
CHECKPOINT_FORMATS: tuple[str, ...] = ("sam2", "unsamv2", "unsamv2-plain", "unsamv2-merged")


def random_state_dict(
    size: str = "tiny", fmt: str = "unsamv2", seed: int = 0, lora_std: float = 0.05
) -> dict[str, torch.Tensor]:
    """A random-weight state dict of SAM-2.1 ``size`` in checkpoint format ``fmt`` (see ``CHECKPOINT_FORMATS``).

    UnSAMv2 formats get LoRA B ~ N(0, ``lora_std``) instead of the zero initialisation, so that LoRA changes the
    outputs and merge / round-trip tests can fail.
    """
    # Imported here: the command line lists CHECKPOINT_FORMATS without loading torch.
    import torch

    from unsamv2.model.build import build_sam2_base, build_unsamv2, normalize_model_size
    from unsamv2.model.lora import merge_lora

    if fmt not in CHECKPOINT_FORMATS:
        raise ValueError(f"unknown checkpoint format {fmt!r}; expected one of {CHECKPOINT_FORMATS}")
    size = normalize_model_size(size)
    torch.manual_seed(seed)
    if fmt == "sam2":
        return {k: v.detach().clone() for k, v in build_sam2_base(size).state_dict().items()}
    model = build_unsamv2(size, device="cpu")
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(".lora_B"):
                param.copy_(torch.randn(param.shape, generator=gen) * lora_std)
    if fmt == "unsamv2-merged":
        merge_lora(model)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if fmt == "unsamv2-plain":
        state = {k.replace(".original_layer.", "."): v for k, v in state.items()}
    return state


def write_random_checkpoint(
    path: str | os.PathLike[str], size: str = "tiny", fmt: str = "unsamv2", seed: int = 0
) -> Path:
    """Write a random-weight checkpoint ``{"model": state_dict}`` (format ``fmt``, SAM-2.1 ``size``) atomically."""
    import torch

    state = random_state_dict(size=size, fmt=fmt, seed=seed)
    dest = Path(path)
    with atomic_output(dest) as tmp:
        torch.save({"model": state}, tmp)
    return dest
