"""LoRA on the mask decoder's two-way transformer (paper §4.1; official `sam2/modeling/sam/transformer.py`).

Rank r (8), α = 2r (scaling α/r = 2), dropout 0.1 on the LoRA input, A ~ 0.01·N(0, 1), B = 0, on q/k/v/out of all 7
attention modules of SAM-2's ``TwoWayTransformer`` (28 linears). The wrapped base linear is kept as
``original_layer`` so the state-dict keys are the official ones (``…q_proj.original_layer.weight``,
``…q_proj.lora_A``, ``…q_proj.lora_B``).
"""

from __future__ import annotations

import torch
from sam2.modeling.sam.transformer import Attention, TwoWayTransformer
from torch import nn

__all__ = [
    "LORA_TARGETS",
    "LoRALinear",
    "apply_lora",
    "attention_modules",
    "has_unmerged_lora",
    "lora_linears",
    "merge_lora",
]

LORA_TARGETS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "out_proj")


class LoRALinear(nn.Module):
    """y = W₀x + b + (α/r) · dropout(x) Aᵀ Bᵀ, with the frozen base linear W₀, b kept as ``original_layer``."""

    def __init__(
        self, original_layer: nn.Linear, rank: int = 8, alpha: float | None = None, dropout: float = 0.1
    ):
        super().__init__()
        if rank <= 0:
            raise ValueError(f"LoRA rank must be positive, got {rank}")
        self.original_layer = original_layer
        self.rank = int(rank)
        self.alpha = float(alpha if alpha is not None else 2 * rank)
        self.scaling = self.alpha / self.rank
        for p in self.original_layer.parameters():
            p.requires_grad = False
        w = original_layer.weight
        self.lora_A = nn.Parameter(
            torch.randn(rank, original_layer.in_features, device=w.device, dtype=w.dtype) * 0.01
        )
        self.lora_B = nn.Parameter(
            torch.zeros(original_layer.out_features, rank, device=w.device, dtype=w.dtype)
        )
        # nn.Identity when dropout is 0 (as the official code), so eval and p=0 run the same graph.
        self.dropout: nn.Module = nn.Dropout(dropout) if dropout > 0.0 else nn.Identity()

    @property
    def in_features(self) -> int:
        return self.original_layer.in_features

    @property
    def out_features(self) -> int:
        return self.original_layer.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Base output plus the scaled low-rank update."""
        if self.training and isinstance(self.dropout, nn.Dropout):
            # Dropout acts on the LoRA branch only, so the factors must be applied separately.
            update = (self.dropout(x) @ self.lora_A.t()) @ self.lora_B.t()
            return self.original_layer(x) + update * self.scaling
        # Without dropout the update is linear in x: folding it into the weight (out×in + out·r·in operations per
        # call) is much cheaper than two thin matmuls per token (4096 image tokens × 128 prompts in the AMG), and
        # gradients still reach A and B through the sum.
        weight = self.original_layer.weight + (self.lora_B @ self.lora_A) * self.scaling
        return nn.functional.linear(x, weight, self.original_layer.bias)

    @torch.no_grad()
    def merged_linear(self) -> nn.Linear:
        """A plain ``nn.Linear`` with W = W₀ + (α/r)·B·A (same outputs in eval mode, up to float round-off)."""
        base = self.original_layer
        merged = nn.Linear(base.in_features, base.out_features, bias=base.bias is not None)
        merged = merged.to(device=base.weight.device, dtype=base.weight.dtype)
        delta = (self.lora_B.double() @ self.lora_A.double()) * self.scaling
        merged.weight.copy_((base.weight.double() + delta).to(base.weight.dtype))
        if base.bias is not None:
            merged.bias.copy_(base.bias)
        merged.weight.requires_grad = False
        if merged.bias is not None:
            merged.bias.requires_grad = False
        return merged

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha:g}"


def attention_modules(transformer: TwoWayTransformer) -> list[tuple[str, Attention]]:
    """The 7 attention modules of a 2-layer ``TwoWayTransformer``, with their names relative to it."""
    found: list[tuple[str, Attention]] = []
    for i, layer in enumerate(transformer.layers):
        for name in ("self_attn", "cross_attn_token_to_image", "cross_attn_image_to_token"):
            found.append((f"layers.{i}.{name}", getattr(layer, name)))
    found.append(("final_attn_token_to_image", transformer.final_attn_token_to_image))
    return found


def apply_lora(
    transformer: TwoWayTransformer, rank: int = 8, alpha: float | None = None, dropout: float = 0.1
) -> int:
    """Wrap q/k/v/out of every attention module of ``transformer`` with :class:`LoRALinear`; returns the count."""
    count = 0
    for name, attn in attention_modules(transformer):
        for target in LORA_TARGETS:
            layer = getattr(attn, target)
            if isinstance(layer, LoRALinear):
                raise RuntimeError(f"LoRA is already applied to {name}.{target}")  # noqa: TRY004 (state, not type)
            if not isinstance(layer, nn.Linear):
                raise TypeError(f"{name}.{target} is {type(layer).__name__}, expected nn.Linear")
            setattr(attn, target, LoRALinear(layer, rank=rank, alpha=alpha, dropout=dropout))
            count += 1
    return count


def lora_linears(module: nn.Module) -> list[tuple[str, LoRALinear]]:
    """All :class:`LoRALinear` sub-modules of ``module`` with their qualified names."""
    return [(n, m) for n, m in module.named_modules() if isinstance(m, LoRALinear)]


def has_unmerged_lora(module: nn.Module) -> bool:
    """True if ``module`` contains LoRA layers that have not been merged."""
    return bool(lora_linears(module))


def merge_lora(module: nn.Module) -> int:
    """Replace every :class:`LoRALinear` in ``module`` by its merged ``nn.Linear`` (in place); returns the count.

    Merging is for inference: the state-dict keys become the plain ``…q_proj.weight`` form and the LoRA factors
    are gone (``save_checkpoint`` then writes a merged checkpoint).
    """
    targets = lora_linears(module)
    for name, lora in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, attr, lora.merged_linear())
    return len(targets)
