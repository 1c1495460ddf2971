"""SAM-2's prompt encoder plus one granularity token (paper §3.4; official `prompt_encoder.py`).

The token E_g = MLP(Fourier(g)) + type embedding is *concatenated* to the sparse prompt embeddings after the point
tokens (and SAM's "not-a-point" padding token) and before any box tokens; it gets no positional encoding.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from sam2.modeling.sam.prompt_encoder import PromptEncoder
from torch import nn

from unsamv2.model.granularity import FourierGranularityEncoder

__all__ = ["GranularityPromptEncoder"]


class GranularityPromptEncoder(PromptEncoder):
    """``sam2`` ``PromptEncoder`` that appends a granularity token when a granularity is given.

    New parameters (official key names): ``granularity_embedding.weight`` [1, C] and
    ``fourier_embedder.mlp.mlp.{0,3,6}.{weight,bias}``.
    """

    def __init__(
        self,
        embed_dim: int,
        image_embedding_size: tuple[int, int],
        input_image_size: tuple[int, int],
        mask_in_chans: int,
        activation: type[nn.Module] = nn.GELU,
        fourier_dim: int = 128,
        temperature: float = 100.0,
        mlp_layers: int = 3,
        mlp_dropout: float = 0.1,
    ) -> None:
        super().__init__(embed_dim, image_embedding_size, input_image_size, mask_in_chans, activation)
        self.granularity_embedding = nn.Embedding(1, embed_dim)
        # Named "fourier_embedder" (although it holds the MLP too) to match the official checkpoint keys.
        self.fourier_embedder = FourierGranularityEncoder(
            fourier_dim=fourier_dim,
            out_dim=embed_dim,
            num_layers=mlp_layers,
            dropout=mlp_dropout,
            temperature=temperature,
        )
        # sam2's SAM2Base._forward_sam_heads (used by the video predictor and training) calls this encoder without
        # a granularity argument. Rather than copying that 100-line method, callers set this attribute for the
        # duration of such calls (see `use_granularity`); None means "no granularity token".
        self.default_granularity: torch.Tensor | None = None

    @classmethod
    def from_prompt_encoder(
        cls,
        base: PromptEncoder,
        fourier_dim: int = 128,
        temperature: float = 100.0,
        mlp_layers: int = 3,
        mlp_dropout: float = 0.1,
    ) -> GranularityPromptEncoder:
        """Build from a stock ``PromptEncoder``: same hyper-parameters, its weights copied, new modules fresh."""
        mask_in_chans = base.mask_downscaling[3].out_channels
        enc = cls(
            embed_dim=base.embed_dim,
            image_embedding_size=tuple(base.image_embedding_size),
            input_image_size=tuple(base.input_image_size),
            mask_in_chans=mask_in_chans,
            fourier_dim=fourier_dim,
            temperature=temperature,
            mlp_layers=mlp_layers,
            mlp_dropout=mlp_dropout,
        )
        missing, unexpected = enc.load_state_dict(base.state_dict(), strict=False)
        new_prefixes = ("granularity_embedding.", "fourier_embedder.")
        if unexpected or any(not k.startswith(new_prefixes) for k in missing):
            raise RuntimeError(
                f"prompt encoder conversion mismatch: missing={missing} unexpected={unexpected}"
            )
        ref = base.point_embeddings[0].weight
        return enc.to(device=ref.device, dtype=ref.dtype)

    def embed_granularity(self, granularity: torch.Tensor) -> torch.Tensor:
        """Granularity token(s) for g of shape [B] (or [B, 1]): MLP(Fourier(g)) + type embedding → [B, C]."""
        return self.fourier_embedder(granularity) + self.granularity_embedding.weight

    def _granularity_for_batch(self, granularity: torch.Tensor | float, batch_size: int) -> torch.Tensor:
        g = torch.as_tensor(granularity, dtype=torch.float32, device=self._get_device()).reshape(-1)
        if g.numel() == 1 and batch_size > 1:
            g = g.expand(batch_size)
        if g.numel() != batch_size:
            raise ValueError(f"got {g.numel()} granularities for a prompt batch of {batch_size}")
        return g

    def forward(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
        granularity: torch.Tensor | float | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed prompts; returns (sparse [B, N(+1), C], dense [B, C, h, w]).

        ``granularity``: one value per prompt ([B]) or one for all; if None, ``self.default_granularity`` is used,
        and if that is None too, no granularity token is added (stock SAM-2 behaviour).
        """
        if granularity is None:
            granularity = self.default_granularity
        bs = self._get_batch_size(points, boxes, masks)
        sparse = torch.empty((bs, 0, self.embed_dim), device=self._get_device())
        if points is not None:
            coords, labels = points
            # SAM pads the points with a "not-a-point" token when there is no box; the token order is
            # [points..., pad, granularity, box corners...] as in the official code.
            sparse = torch.cat([sparse, self._embed_points(coords, labels, pad=boxes is None)], dim=1)
        if granularity is not None:
            g = self._granularity_for_batch(granularity, bs)
            sparse = torch.cat([sparse, self.embed_granularity(g).to(sparse.dtype).unsqueeze(1)], dim=1)
        if boxes is not None:
            sparse = torch.cat([sparse, self._embed_boxes(boxes)], dim=1)
        if masks is not None:
            dense = self._embed_masks(masks)
        else:
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(
                bs, -1, self.image_embedding_size[0], self.image_embedding_size[1]
            )
        return sparse, dense

    @contextmanager
    def use_granularity(self, granularity: torch.Tensor | float | None) -> Iterator[None]:
        """Temporarily set ``default_granularity`` (for code paths in sam2 that do not pass one)."""
        previous = self.default_granularity
        self.default_granularity = None if granularity is None else torch.as_tensor(granularity).float()
        try:
            yield
        finally:
            self.default_granularity = previous
