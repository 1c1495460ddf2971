"""Random-weight checkpoints in the exact released formats, for tests and the offline demo.

No model weights can be downloaded in CI, so every loading path is exercised with checkpoints written here: same
key names, shapes and container (``{"model": state_dict}``) as ``sam2.1_hiera_*.pt`` and the official UnSAMv2
weights — only the values are random. A model built from them produces meaningless masks (label demo output
made with them as such).

Command line::

    python -m unsamv2.model.testing --size small --format unsamv2 demo_unsamv2_small.pt
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from unsamv2.io.atomic import atomic_output
from unsamv2.model.build import build_sam2_base, build_unsamv2, normalize_model_size
from unsamv2.model.lora import merge_lora

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
    state = random_state_dict(size=size, fmt=fmt, seed=seed)
    dest = Path(path)
    with atomic_output(dest) as tmp:
        torch.save({"model": state}, tmp)
    return dest


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: write one random-weight checkpoint."""
    parser = argparse.ArgumentParser(
        prog="python -m unsamv2.model.testing",
        description="Write a random-weight SAM-2.1 / UnSAMv2 checkpoint in the released format (for tests and "
        "the offline demo; its masks are meaningless).",
    )
    parser.add_argument("out", type=Path, help="output .pt file")
    parser.add_argument("--size", default="tiny", help="tiny, small, base_plus or large (default: tiny)")
    parser.add_argument("--format", dest="fmt", default="unsamv2", choices=CHECKPOINT_FORMATS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        path = write_random_checkpoint(args.out, size=args.size, fmt=args.fmt, seed=args.seed)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote {path} ({args.fmt}, SAM-2.1 {normalize_model_size(args.size)}, seed {args.seed}, random weights)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
