"""Granularity mask token: token layout, output shapes, the borrowed IoU slot, stock weights kept, batching."""

from __future__ import annotations

import pytest
import torch
from sam2.modeling.sam.mask_decoder import MaskDecoder
from sam2.modeling.sam.transformer import TwoWayTransformer

from unsamv2.model.decoder import GranularityMaskDecoder


@pytest.fixture(scope="module")
def decoders() -> tuple[MaskDecoder, GranularityMaskDecoder]:
    torch.manual_seed(0)
    stock = MaskDecoder(
        transformer_dim=256,
        transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
        num_multimask_outputs=3,
        use_high_res_features=True,
        iou_prediction_use_sigmoid=True,
        pred_obj_scores=True,
        pred_obj_scores_mlp=True,
    )
    return stock, GranularityMaskDecoder.from_mask_decoder(stock).eval()


def _inputs(batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "image_embeddings": torch.randn(1, 256, 8, 8, generator=g),
        "image_pe": torch.randn(1, 256, 8, 8, generator=g),
        "sparse_prompt_embeddings": torch.randn(batch, 3, 256, generator=g),
        "dense_prompt_embeddings": torch.randn(batch, 256, 8, 8, generator=g),
        "high_res_features": [
            torch.randn(1, 32, 32, 32, generator=g),
            torch.randn(1, 64, 16, 16, generator=g),
        ],
    }


def test_conversion_keeps_every_stock_weight_and_adds_the_official_keys(decoders: tuple) -> None:
    stock, gran = decoders
    s_state, g_state = stock.state_dict(), gran.state_dict()
    for k, v in s_state.items():
        assert torch.equal(g_state[k], v), k
    assert sorted(set(g_state) - set(s_state)) == [
        "gra_output_token_mlp.layers.0.bias",
        "gra_output_token_mlp.layers.0.weight",
        "gra_output_token_mlp.layers.1.bias",
        "gra_output_token_mlp.layers.1.weight",
        "gra_output_token_mlp.layers.2.bias",
        "gra_output_token_mlp.layers.2.weight",
        "gra_token.weight",
    ]
    assert gran.gra_output_token_mlp.layers[2].weight.shape == (32, 256)
    assert gran.transformer is stock.transformer
    assert gran.num_mask_tokens == 4  # the four SAM tokens stay in the sequence


def test_token_sequence_is_obj_iou_masks_gra_then_prompts(decoders: tuple) -> None:
    _, gran = decoders
    seen: dict[str, torch.Tensor] = {}

    def grab(
        module: torch.nn.Module, args: tuple, out: object
    ) -> None:  # a hook returning None keeps the output
        seen["tokens"] = args[2]

    handle = gran.transformer.register_forward_hook(grab)
    try:
        inputs = _inputs(batch=2)
        gran(multimask_output=False, repeat_image=True, **inputs)
    finally:
        handle.remove()
    tokens = seen["tokens"]
    assert tokens.shape == (2, 1 + 1 + 4 + 1 + 3, 256)
    assert torch.equal(tokens[0, 0], gran.obj_score_token.weight[0])
    assert torch.equal(tokens[0, 1], gran.iou_token.weight[0])
    assert torch.equal(tokens[0, 2:6], gran.mask_tokens.weight)
    assert torch.equal(tokens[0, 6], gran.gra_token.weight[0])
    assert torch.equal(tokens[:, 7:], inputs["sparse_prompt_embeddings"])


def test_outputs_and_iou_slots(decoders: tuple) -> None:
    _, gran = decoders
    inputs = _inputs(batch=3)
    iou_heads: list[torch.Tensor] = []
    handle = gran.iou_prediction_head.register_forward_hook(lambda m, a, out: iou_heads.append(out) and None)
    try:
        masks, iou, token, obj = gran(multimask_output=False, repeat_image=True, **inputs)
        masks_m, iou_m, _, _ = gran(multimask_output=True, repeat_image=True, **inputs)
    finally:
        handle.remove()
    assert masks.shape == (3, 1, 32, 32) and iou.shape == (3, 1) and token.shape == (3, 1, 256)
    assert obj.shape == (3, 1)
    assert torch.equal(iou[:, 0], iou_heads[0][:, 0])  # single output: slot 0
    assert torch.equal(iou_m[:, 0], iou_heads[1][:, 1:4].max(dim=1).values)  # multimask: best of 1-3
    assert torch.equal(masks, masks_m)  # the mask is the granularity token's either way


def test_mask_is_the_granularity_hypernetwork_applied_to_the_gra_token(decoders: tuple) -> None:
    _, gran = decoders
    inputs = _inputs(batch=1)
    captured: dict[str, torch.Tensor] = {}

    def grab(module: torch.nn.Module, args: tuple, out: tuple) -> None:
        captured["hs"] = out[0]

    hs_hook = gran.transformer.register_forward_hook(grab)
    try:
        masks, _, token, _ = gran(multimask_output=False, repeat_image=True, **inputs)
    finally:
        hs_hook.remove()
    assert torch.equal(token[:, 0], captured["hs"][:, 6])  # token 6 = gra_token (after obj, iou, 4 masks)
    # Changing the granularity head changes the mask; changing a SAM hypernetwork does not.
    with torch.no_grad():
        saved = gran.output_hypernetworks_mlps[0].layers[2].weight.clone()
        gran.output_hypernetworks_mlps[0].layers[2].weight.add_(1.0)
        same, _, _, _ = gran(multimask_output=False, repeat_image=True, **inputs)
        gran.output_hypernetworks_mlps[0].layers[2].weight.copy_(saved)
        saved = gran.gra_output_token_mlp.layers[2].weight.clone()
        gran.gra_output_token_mlp.layers[2].weight.add_(1.0)
        changed, _, _, _ = gran(multimask_output=False, repeat_image=True, **inputs)
        gran.gra_output_token_mlp.layers[2].weight.copy_(saved)
    assert torch.equal(same, masks)
    assert not torch.allclose(changed, masks)


def test_batched_prompts_equal_one_by_one(decoders: tuple) -> None:
    _, gran = decoders
    inputs = _inputs(batch=4, seed=3)
    masks, iou, _, _ = gran(multimask_output=True, repeat_image=True, **inputs)
    for i in range(4):
        single = dict(inputs)
        single["sparse_prompt_embeddings"] = inputs["sparse_prompt_embeddings"][i : i + 1]
        single["dense_prompt_embeddings"] = inputs["dense_prompt_embeddings"][i : i + 1]
        m_i, iou_i, _, _ = gran(multimask_output=True, repeat_image=False, **single)
        assert torch.allclose(m_i, masks[i : i + 1], atol=1e-4)
        assert torch.allclose(iou_i, iou[i : i + 1], atol=1e-5)


def test_mismatched_image_batch_is_an_error(decoders: tuple) -> None:
    _, gran = decoders
    inputs = _inputs(batch=2)
    with pytest.raises(ValueError, match="1 image embeddings for 2 prompts"):
        gran(multimask_output=False, repeat_image=False, **inputs)


def test_sam_output_token_is_stock_sams_single_mask(decoders: tuple) -> None:
    """Fig. 10's ablation: no granularity token in the sequence, and the mask is exactly what stock SAM-2 returns
    for its single-output token on the same prompt tokens (which include the granularity token as a prompt)."""
    stock, _ = decoders
    ablation = GranularityMaskDecoder.from_mask_decoder(stock, output_token="sam").eval()
    assert not any(k.startswith(("gra_token.", "gra_output_token_mlp.")) for k in ablation.state_dict())
    stock_single = stock.train(False)
    stock_single.dynamic_multimask_via_stability = False
    inputs = _inputs(batch=2, seed=5)
    with torch.no_grad():
        masks, iou, token_out, obj = ablation(**inputs, multimask_output=False, repeat_image=True)
        ref_masks, ref_iou, ref_tokens, ref_obj = stock_single(**inputs, multimask_output=False, repeat_image=True)
    assert masks.shape == (2, 1, 32, 32)
    torch.testing.assert_close(masks, ref_masks, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(iou, ref_iou, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(obj, ref_obj, rtol=1e-5, atol=1e-5)
    # The granularity decoder's mask differs: it reads another token through another head.
    _, gran = decoders
    with torch.no_grad():
        assert not torch.allclose(gran(**inputs, multimask_output=False, repeat_image=True)[0], masks)
    with pytest.raises(ValueError, match="output_token"):
        GranularityMaskDecoder.from_mask_decoder(stock, output_token="new")
