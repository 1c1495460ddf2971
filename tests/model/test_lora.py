"""LoRA: initialisation, the forward formula, merging, the 28 targets, and the trainable-parameter counts."""

from __future__ import annotations

import pytest
import torch
from sam2.modeling.sam.transformer import TwoWayTransformer
from torch import nn

from unsamv2.model.build import (
    GranularityConfig,
    build_unsamv2,
    count_trainable_parameters,
    trainable_parameter_names,
)
from unsamv2.model.lora import LoRALinear, apply_lora, attention_modules, lora_linears, merge_lora


def test_initialisation_follows_the_official_recipe() -> None:
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(256, 128), rank=8)
    assert layer.alpha == 16 and layer.scaling == 2.0
    assert layer.lora_A.shape == (8, 256) and layer.lora_B.shape == (128, 8)
    assert torch.count_nonzero(layer.lora_B) == 0
    assert layer.lora_A.std().item() == pytest.approx(0.01, rel=0.1)
    assert isinstance(layer.dropout, nn.Dropout) and layer.dropout.p == pytest.approx(0.1)
    assert not any(p.requires_grad for p in layer.original_layer.parameters())
    assert sorted(layer.state_dict()) == ["lora_A", "lora_B", "original_layer.bias", "original_layer.weight"]


def test_forward_is_base_plus_scaled_low_rank_update_in_both_modes() -> None:
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(64, 32), rank=4, dropout=0.0)
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(5, 64)
    w0, b = layer.original_layer.weight, layer.original_layer.bias
    expected = x @ w0.T + b + 2.0 * (x @ layer.lora_A.T @ layer.lora_B.T)
    layer.train()
    assert torch.allclose(layer(x), expected, atol=1e-5)
    layer.eval()
    assert torch.allclose(layer(x), expected, atol=1e-5)


def test_dropout_acts_in_training_only() -> None:
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(64, 32), rank=4, dropout=0.5)
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(200, 64)
    layer.train()
    assert not torch.allclose(layer(x), layer(x))
    layer.eval()
    assert torch.equal(layer(x), layer(x))


def test_zero_b_leaves_the_base_output_unchanged() -> None:
    torch.manual_seed(0)
    base = nn.Linear(32, 16)
    layer = LoRALinear(base, rank=8).eval()
    x = torch.randn(3, 32)
    assert torch.allclose(layer(x), base(x), atol=1e-6)


def test_gradients_reach_a_and_b_only() -> None:
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(8, 8), rank=2, dropout=0.0)
    with torch.no_grad():
        layer.lora_B.normal_()
    layer(torch.randn(4, 8)).sum().backward()
    assert layer.lora_A.grad is not None and layer.lora_B.grad is not None
    assert layer.original_layer.weight.grad is None


def test_merged_linear_equals_the_lora_layer() -> None:
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(128, 256), rank=8).eval()
    with torch.no_grad():
        layer.lora_B.normal_(std=0.1)
    merged = layer.merged_linear()
    x = torch.randn(7, 128)
    assert isinstance(merged, nn.Linear)
    assert torch.allclose(merged(x), layer(x), atol=1e-5)
    expected_w = layer.original_layer.weight + 2.0 * layer.lora_B @ layer.lora_A
    assert torch.allclose(merged.weight, expected_w, atol=1e-6)


def test_lora_targets_all_28_projections_of_the_7_attention_modules() -> None:
    t = TwoWayTransformer(depth=2, embedding_dim=256, num_heads=8, mlp_dim=2048)
    names = [n for n, _ in attention_modules(t)]
    assert names == [
        "layers.0.self_attn",
        "layers.0.cross_attn_token_to_image",
        "layers.0.cross_attn_image_to_token",
        "layers.1.self_attn",
        "layers.1.cross_attn_token_to_image",
        "layers.1.cross_attn_image_to_token",
        "final_attn_token_to_image",
    ]
    assert apply_lora(t, rank=8) == 28
    wrapped = {n for n, _ in lora_linears(t)}
    assert wrapped == {f"{a}.{p}" for a in names for p in ("q_proj", "k_proj", "v_proj", "out_proj")}
    # MLP blocks and norms are not adapted
    assert all(isinstance(m, nn.Linear) for m in t.layers[0].mlp.layers)
    with pytest.raises(RuntimeError, match="already applied"):
        apply_lora(t)
    assert merge_lora(t) == 28
    assert lora_linears(t) == []


@pytest.fixture(scope="module")
def small_model() -> nn.Module:
    return build_unsamv2("small", device="cpu")


def test_trainable_parameters_of_hiera_small_equal_the_official_count(small_model: nn.Module) -> None:
    assert count_trainable_parameters(small_model) == 345_760


def test_trainable_breakdown_matches_the_method_table(small_model: nn.Module) -> None:
    params = dict(small_model.named_parameters())
    names = trainable_parameter_names(small_model)

    def total(prefix: str) -> int:
        return sum(params[n].numel() for n in names if n.startswith(prefix))

    assert total("sam_prompt_encoder.granularity_embedding.") == 256
    assert total("sam_prompt_encoder.fourier_embedder.") == 24_768 + 37_056 + 49_408
    assert total("sam_mask_decoder.gra_token.") == 256
    assert total("sam_mask_decoder.gra_output_token_mlp.") == 131_584 + 8_224
    lora = sum(params[n].numel() for n in names if ".lora_" in n)
    assert lora == 32_768 + 49_152 + 12_288
    # nothing of SAM-2 is trainable
    assert all(
        n.startswith(("sam_prompt_encoder.granularity", "sam_prompt_encoder.fourier", "sam_mask_decoder.gra"))
        or ".lora_" in n
        for n in names
    )
    assert len([n for n in names if ".lora_" in n]) == 56


def test_trainable_count_of_hiera_tiny_and_other_ranks() -> None:
    # The decoder is 256-wide for every SAM-2.1 size, so the count does not depend on the backbone.
    assert count_trainable_parameters(build_unsamv2("tiny", device="cpu")) == 345_760
    rank4 = build_unsamv2("tiny", device="cpu", config=GranularityConfig(lora_rank=4))
    assert count_trainable_parameters(rank4) == 345_760 - 94_208 // 2
    no_lora = build_unsamv2("tiny", device="cpu", config=GranularityConfig(lora_rank=0))
    assert count_trainable_parameters(no_lora) == 345_760 - 94_208


@pytest.mark.parametrize("size", ["base_plus", "large"])
def test_trainable_count_of_the_larger_sizes(size: str) -> None:
    assert count_trainable_parameters(build_unsamv2(size, device="cpu")) == 345_760
