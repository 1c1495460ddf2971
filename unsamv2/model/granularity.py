"""The granularity encoder: a scalar g in [0.1, 1.0] becomes one extra sparse prompt token.

UnSAMv2 (paper §3.4; official `granularity_embedding.py`) embeds g with fixed Fourier features (d = 128: 64 frequencies 100^(k/64), sin and cos
interleaved, no 2π factor), a 3-layer MLP 128 → 192 → 192 → 256 (ReLU, dropout 0.1) and a learned [1, 256] type
embedding that tells the decoder "this token is a granularity", the way SAM's per-label point embeddings do.

The module and attribute names (``fourier_embedder.mlp.mlp.{0,3,6}``) are those of the official code, so the
official checkpoint keys map onto this module one to one.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

__all__ = [
    "GRANULARITY_MAX",
    "GRANULARITY_MIN",
    "FourierGranularityEncoder",
    "GranularityMLP",
    "fourier_features",
    "validate_granularities",
    "validate_granularity",
]

GRANULARITY_MIN = 0.1
GRANULARITY_MAX = 1.0
# float32 round-off: np.float32(0.1) is 0.10000000149, np.float32(0.3) * 3 can land a few ulps outside.
_RANGE_TOLERANCE = 1e-6


def validate_granularity(value: object, name: str = "granularity") -> float:
    """Return ``value`` as a Python float in [0.1, 1.0], or raise ``ValueError`` / ``TypeError`` naming it.

    Accepts Python and NumPy floats and ints (and 0-d arrays / 1-element tensors of them). Booleans, NaN,
    infinities and values outside [0.1, 1.0] are rejected; values within 1e-6 of a bound (float32 round-off)
    are clamped onto it.
    """
    if isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be a number in [0.1, 1.0], got the boolean {value!r}")
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise TypeError(f"{name} must be a single number, got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    elif isinstance(value, np.ndarray):
        if value.size != 1:
            raise TypeError(f"{name} must be a single number, got an array of shape {value.shape}")
        value = value.reshape(()).item()
    if not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number in [0.1, 1.0], got {type(value).__name__} {value!r}")
    g = float(value)
    if math.isnan(g):
        raise ValueError(f"{name} is NaN; expected a number in [0.1, 1.0]")
    if not GRANULARITY_MIN - _RANGE_TOLERANCE <= g <= GRANULARITY_MAX + _RANGE_TOLERANCE:
        raise ValueError(f"{name} must lie in [0.1, 1.0], got {g!r}")
    return min(max(g, GRANULARITY_MIN), GRANULARITY_MAX)


def validate_granularities(
    values: Iterable[object] | np.ndarray | torch.Tensor, name: str = "granularity"
) -> list[float]:
    """Validate a sequence (list, tuple, 1-D array or tensor) of granularities; see :func:`validate_granularity`."""
    if isinstance(values, torch.Tensor | np.ndarray):
        values = values.reshape(-1).tolist()
    out = [validate_granularity(v, f"{name}[{i}]") for i, v in enumerate(values)]
    if not out:
        raise ValueError(f"{name}: at least one granularity is needed")
    return out


def fourier_features(g: torch.Tensor, dim: int = 128, temperature: float = 100.0) -> torch.Tensor:
    """Fourier features of granularities ``g`` (shape [B] or [B, 1]) → [B, dim].

    Frequencies f_k = temperature^(k / (dim/2)), k = 0 .. dim/2 - 1; the output is
    [sin(f_0 g), cos(f_0 g), sin(f_1 g), cos(f_1 g), ...] (interleaved, no 2π), as in the official code.
    """
    if dim % 2:
        # The official embedder appends sin(T·g) for odd sizes; only even sizes are used (128), so keep it simple.
        raise ValueError(f"fourier dim must be even, got {dim}")
    g = g.reshape(-1, 1).float()
    num_freqs = dim // 2
    freqs = temperature ** (torch.arange(num_freqs, device=g.device, dtype=torch.float32) / num_freqs)
    angles = g * freqs[None, :]  # [B, num_freqs]
    # stack on a new last axis then flatten: [..., k, (sin, cos)] → sin_0, cos_0, sin_1, cos_1, ...
    return torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1).reshape(g.shape[0], dim)


class GranularityMLP(nn.Module):
    """``num_layers`` Linear layers with ReLU + Dropout between them (official ``GranularityMLP``).

    The layers live in ``self.mlp`` (an ``nn.Sequential``), so with 3 layers the Linear modules sit at indices
    0, 3 and 6 — the official checkpoint keys.
    """

    def __init__(
        self,
        in_dim: int = 128,
        out_dim: int = 256,
        hidden_dim: int | None = None,
        num_layers: int = 3,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        hidden = hidden_dim if hidden_dim is not None else (in_dim + out_dim) // 2
        layers: list[nn.Module] = []
        width = in_dim
        for _ in range(num_layers - 1):
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        layers.append(nn.Linear(width, out_dim))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map [B, in_dim] features to [B, out_dim]."""
        return self.mlp(x)


class FourierGranularityEncoder(nn.Module):
    """g ([B] or [B, 1]) → MLP(Fourier(g)) of shape [B, out_dim]. The type embedding is added by the prompt encoder."""

    def __init__(
        self,
        fourier_dim: int = 128,
        out_dim: int = 256,
        num_layers: int = 3,
        dropout: float = 0.1,
        temperature: float = 100.0,
    ) -> None:
        super().__init__()
        self.fourier_dim = fourier_dim
        self.temperature = float(temperature)
        self.mlp = GranularityMLP(in_dim=fourier_dim, out_dim=out_dim, num_layers=num_layers, dropout=dropout)

    def forward(self, g: torch.Tensor) -> torch.Tensor:
        """Embed granularities; the Fourier features carry no gradient (fixed function of g, as in the paper)."""
        with torch.no_grad():
            feats = fourier_features(g, self.fourier_dim, self.temperature)
        weight = self.mlp.mlp[0].weight
        return self.mlp(feats.to(device=weight.device, dtype=weight.dtype))
