"""SAM-2's mask decoder with one extra output token, the granularity mask token (paper §3.4; official `gra_mask_decoder.py`).

The token sequence entering the two-way transformer is
``[obj_score_token, iou_token, mask_tokens×4, gra_token, point tokens…, pad, granularity token]``; the mask returned
is the one of ``gra_token`` (through its own 3-layer hypernetwork ``gra_output_token_mlp``, 256→256→256→32). The
IoU score is *not* specific to that token: it is the frozen IoU head's slot 0 (single output) or the maximum of
slots 1–3 (``multimask_output=True``), exactly as the official code.

``output_token="sam"`` builds the paper's Fig. 10 ablation ("w/o granularity token"): no new token; the mask is
SAM-2's own single-output mask token (slot 0 through ``output_hypernetworks_mlps[0]``), which is then fine-tuned
while the granularity still enters as the prompt token. Same outputs, same 4-tuple.
"""

from __future__ import annotations

import torch
from sam2.modeling.sam.mask_decoder import MaskDecoder
from sam2.modeling.sam2_utils import MLP
from torch import nn

__all__ = ["OUTPUT_TOKENS", "GranularityMaskDecoder"]

#: Which token's mask the decoder returns: the added granularity token (UnSAMv2) or SAM-2's own single-output mask
#: token (the Fig. 10 ablation; its checkpoints hold no ``gra_token`` / ``gra_output_token_mlp`` keys).
OUTPUT_TOKENS: tuple[str, ...] = ("granularity", "sam")


class GranularityMaskDecoder(MaskDecoder):
    """``sam2`` ``MaskDecoder`` + ``gra_token`` [1, C] + ``gra_output_token_mlp`` (official key names).

    ``forward`` returns ``(masks [B, 1, 4h, 4w], iou [B, 1], gra_token_out [B, 1, C], object_score_logits [B, 1])``
    — the same 4-tuple layout as SAM-2's decoder, so ``SAM2Base._forward_sam_heads`` (video tracking) uses the
    granularity mask and builds the object pointer from the granularity token unchanged.

    ``dynamic_multimask_via_stability`` is ignored, as in the official decoder: the granularity mask is always
    the one returned.
    """

    def __init__(self, output_token: str = "granularity", **kwargs: object) -> None:
        super().__init__(**kwargs)
        if output_token not in OUTPUT_TOKENS:
            raise ValueError(f"output_token must be one of {', '.join(OUTPUT_TOKENS)}, got {output_token!r}")
        self.output_token = output_token
        if output_token == "granularity":
            dim = self.transformer_dim
            self.gra_token = nn.Embedding(1, dim)
            self.gra_output_token_mlp = MLP(dim, dim, dim // 8, 3)

    @classmethod
    def from_mask_decoder(cls, base: MaskDecoder, output_token: str = "granularity") -> GranularityMaskDecoder:
        """Build from a stock decoder: same hyper-parameters, *the same transformer module*, weights copied."""
        iou_head = base.iou_prediction_head
        dec = cls(
            output_token=output_token,
            transformer_dim=base.transformer_dim,
            transformer=base.transformer,
            num_multimask_outputs=base.num_multimask_outputs,
            iou_head_depth=iou_head.num_layers,
            iou_head_hidden_dim=iou_head.layers[0].out_features,
            use_high_res_features=base.use_high_res_features,
            iou_prediction_use_sigmoid=iou_head.sigmoid_output,
            dynamic_multimask_via_stability=base.dynamic_multimask_via_stability,
            dynamic_multimask_stability_delta=base.dynamic_multimask_stability_delta,
            dynamic_multimask_stability_thresh=base.dynamic_multimask_stability_thresh,
            pred_obj_scores=base.pred_obj_scores,
            pred_obj_scores_mlp=base.pred_obj_scores and isinstance(base.pred_obj_score_head, MLP),
            use_multimask_token_for_obj_ptr=base.use_multimask_token_for_obj_ptr,
        )
        missing, unexpected = dec.load_state_dict(base.state_dict(), strict=False)
        if unexpected or any(not k.startswith(("gra_token.", "gra_output_token_mlp.")) for k in missing):
            raise RuntimeError(f"mask decoder conversion mismatch: missing={missing} unexpected={unexpected}")
        ref = base.iou_token.weight
        return dec.to(device=ref.device, dtype=ref.dtype)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
        repeat_image: bool,
        high_res_features: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Predict the granularity mask; see the class docstring for the outputs."""
        masks, iou_pred, gra_token_out, object_score_logits = self.predict_masks(
            image_embeddings=image_embeddings,
            image_pe=image_pe,
            sparse_prompt_embeddings=sparse_prompt_embeddings,
            dense_prompt_embeddings=dense_prompt_embeddings,
            repeat_image=repeat_image,
            high_res_features=high_res_features,
        )
        if multimask_output:
            iou = iou_pred[:, 1 : self.num_mask_tokens].max(dim=1, keepdim=True).values
        else:
            iou = iou_pred[:, 0:1]
        return masks, iou, gra_token_out, object_score_logits

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        repeat_image: bool,
        high_res_features: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run the transformer; returns (mask logits of the output token [B,1,H,W], all 4 IoU slots [B,4],
        that token's output [B,1,C], object score logits [B,1])."""
        batch = sparse_prompt_embeddings.shape[0]
        s = 1 if self.pred_obj_scores else 0
        parts = [self.obj_score_token.weight] if self.pred_obj_scores else []
        parts += [self.iou_token.weight, self.mask_tokens.weight]
        if self.output_token == "granularity":
            parts.append(self.gra_token.weight)
        output_tokens = torch.cat(parts, dim=0).unsqueeze(0).expand(batch, -1, -1)
        tokens = torch.cat([output_tokens, sparse_prompt_embeddings], dim=1)

        if repeat_image and image_embeddings.shape[0] == 1:
            # Broadcasting the single image against the per-prompt dense embeddings gives the same tensor as
            # sam2's repeat_interleave without materialising the copy first.
            src = image_embeddings + dense_prompt_embeddings
            if src.shape[0] != batch:
                src = src.expand(batch, -1, -1, -1)
        elif repeat_image:
            src = torch.repeat_interleave(image_embeddings, batch, dim=0) + dense_prompt_embeddings
        else:
            if image_embeddings.shape[0] != batch:
                raise ValueError(f"{image_embeddings.shape[0]} image embeddings for {batch} prompts")
            src = image_embeddings + dense_prompt_embeddings
        if image_pe.shape[0] != 1:
            raise ValueError("image_pe must have batch size 1 (from get_dense_pe())")
        pos_src = image_pe.expand(batch, -1, -1, -1)
        b, c, h, w = src.shape

        hs, src = self.transformer(src, pos_src, tokens)
        iou_token_out = hs[:, s, :]
        # The returned token: the granularity token after SAM's four, or SAM's own single-output token (slot 0).
        out_index = s + 1 + (self.num_mask_tokens if self.output_token == "granularity" else 0)
        gra_token_out = hs[:, out_index : out_index + 1, :]

        src = src.transpose(1, 2).reshape(b, c, h, w)
        if not self.use_high_res_features:
            upscaled = self.output_upscaling(src)
        else:
            dc1, ln1, act1, dc2, act2 = self.output_upscaling
            feat_s0, feat_s1 = high_res_features
            upscaled = act1(ln1(dc1(src) + feat_s1))
            upscaled = act2(dc2(upscaled) + feat_s0)

        # Only the granularity token's mask is ever returned, so the four SAM masks are not computed.
        head = self.gra_output_token_mlp if self.output_token == "granularity" else self.output_hypernetworks_mlps[0]
        hyper_in = head(gra_token_out)  # [B, 1, C/8]
        b, c8, hh, ww = upscaled.shape
        masks = (hyper_in @ upscaled.reshape(b, c8, hh * ww)).reshape(b, 1, hh, ww)

        iou_pred = self.iou_prediction_head(iou_token_out)
        if self.pred_obj_scores:
            object_score_logits = self.pred_obj_score_head(hs[:, 0, :])
        else:
            object_score_logits = 10.0 * iou_pred.new_ones(iou_pred.shape[0], 1)
        return masks, iou_pred, gra_token_out, object_score_logits
