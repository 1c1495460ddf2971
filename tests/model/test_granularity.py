"""Granularity encoder: Fourier features against hand computation, MLP layout, validation, prompt-token order."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sam2.modeling.sam.prompt_encoder import PromptEncoder
from torch import nn

from unsamv2.model.granularity import (
    FourierGranularityEncoder,
    GranularityMLP,
    fourier_features,
    validate_granularities,
    validate_granularity,
)
from unsamv2.model.prompt_encoder import GranularityPromptEncoder


# ------------------------------------------------------------------------------------------------ Fourier features
@pytest.mark.parametrize("k", [0, 1, 10, 32, 63])
def test_fourier_features_match_hand_computation_at_half(k: int) -> None:
    feats = fourier_features(torch.tensor([0.5]))
    f_k = 100.0 ** (k / 64)  # 64 frequencies 100^(k/64), no 2π
    assert feats.shape == (1, 128)
    assert feats[0, 2 * k].item() == pytest.approx(math.sin(f_k * 0.5), abs=1e-6)
    assert feats[0, 2 * k + 1].item() == pytest.approx(math.cos(f_k * 0.5), abs=1e-6)


def test_fourier_features_known_values() -> None:
    feats = fourier_features(torch.tensor([0.5, 1.0]))
    # k = 0: frequency 1 → sin(0.5), cos(0.5); last frequency 100^(63/64) = 93.057…
    assert feats[0, 0].item() == pytest.approx(0.479425538604203, abs=1e-6)
    assert feats[0, 1].item() == pytest.approx(0.8775825618903728, abs=1e-6)
    assert 100 ** (63 / 64) == pytest.approx(93.0572, abs=1e-4)
    assert feats[1, 126].item() == pytest.approx(math.sin(100 ** (63 / 64)), abs=1e-4)


def test_fourier_features_accept_column_vectors_and_keep_the_batch() -> None:
    g = torch.tensor([0.1, 0.4, 1.0])
    assert torch.equal(fourier_features(g), fourier_features(g[:, None]))
    assert fourier_features(g).shape == (3, 128)


def test_mlp_layout_matches_the_official_keys_and_counts() -> None:
    mlp = GranularityMLP()
    kinds = [type(m) for m in mlp.mlp]
    assert kinds == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    assert [tuple(mlp.mlp[i].weight.shape) for i in (0, 3, 6)] == [(192, 128), (192, 192), (256, 192)]
    assert mlp.mlp[2].p == pytest.approx(0.1)
    assert sum(p.numel() for p in mlp.parameters()) == 24_768 + 37_056 + 49_408
    assert sorted(mlp.state_dict()) == [f"mlp.{i}.{w}" for i in (0, 3, 6) for w in ("bias", "weight")]


def test_encoder_is_mlp_of_fourier_features() -> None:
    torch.manual_seed(0)
    enc = FourierGranularityEncoder().eval()
    g = torch.tensor([0.2, 0.9])
    assert torch.allclose(enc(g), enc.mlp(fourier_features(g)))


# ------------------------------------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    "value", [0.1, 0.5, 1, 1.0, np.float32(0.1), np.float64(0.73), np.int64(1), np.float32(1.0)]
)
def test_validate_accepts_python_and_numpy_numbers(value: object) -> None:
    g = validate_granularity(value)
    assert isinstance(g, float)
    assert 0.1 <= g <= 1.0
    assert g == pytest.approx(float(value), abs=1e-6)


@pytest.mark.parametrize("value", [0.0, 0, 0.05, 1.01, 2, -0.5, float("inf"), np.float64(1.5)])
def test_validate_rejects_out_of_range(value: object) -> None:
    with pytest.raises(ValueError, match=r"\[0\.1, 1\.0\]"):
        validate_granularity(value)


def test_validate_rejects_nan_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="NaN"):
        validate_granularity(float("nan"))
    with pytest.raises(ValueError, match="NaN"):
        validate_granularity(np.float32("nan"))


@pytest.mark.parametrize("value", [True, "0.5", None, [0.5], np.array([0.2, 0.3])])
def test_validate_rejects_non_numbers(value: object) -> None:
    with pytest.raises(TypeError):
        validate_granularity(value)


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=0.1, max_value=1.0))
def test_every_value_in_range_is_accepted_unchanged(g: float) -> None:
    assert validate_granularity(g) == g


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.floats(max_value=0.0999), st.floats(min_value=1.0001)))
def test_every_value_outside_is_rejected(g: float) -> None:
    with pytest.raises(ValueError):
        validate_granularity(g)


def test_validate_granularities_names_the_bad_entry() -> None:
    assert validate_granularities(np.array([0.1, 0.5])) == [0.1, 0.5]
    with pytest.raises(ValueError, match=r"granularity\[2\]"):
        validate_granularities([0.1, 0.5, 3.0])
    with pytest.raises(ValueError, match="at least one"):
        validate_granularities([])


# ------------------------------------------------------------------------------------------------ prompt encoder
@pytest.fixture(scope="module")
def encoders() -> tuple[PromptEncoder, GranularityPromptEncoder]:
    torch.manual_seed(0)
    stock = PromptEncoder(
        embed_dim=256, image_embedding_size=(16, 16), input_image_size=(256, 256), mask_in_chans=16
    )
    gran = GranularityPromptEncoder.from_prompt_encoder(stock).eval()
    return stock, gran


def test_granularity_token_is_concatenated_after_points_and_pad(encoders: tuple) -> None:
    stock, gran = encoders
    coords = torch.tensor([[[10.0, 20.0], [100.0, 30.0]]])
    labels = torch.tensor([[1, 0]])
    ref_sparse, ref_dense = stock((coords, labels), None, None)
    sparse, dense = gran((coords, labels), None, None, granularity=torch.tensor([0.3]))
    assert ref_sparse.shape == (1, 3, 256)  # 2 clicks + not-a-point pad
    assert sparse.shape == (1, 4, 256)
    assert torch.equal(sparse[:, :3], ref_sparse)  # SAM's tokens unchanged, in order
    expected = gran.fourier_embedder(torch.tensor([0.3])) + gran.granularity_embedding.weight
    assert torch.allclose(sparse[0, 3], expected[0])
    assert torch.equal(dense, ref_dense)


def test_box_tokens_come_after_the_granularity_token(encoders: tuple) -> None:
    _, gran = encoders
    coords = torch.tensor([[[10.0, 20.0]]])
    labels = torch.tensor([[1]])
    box = torch.tensor([[5.0, 5.0, 80.0, 90.0]])
    sparse, _ = gran((coords, labels), box, None, granularity=0.5)
    assert sparse.shape == (1, 1 + 1 + 2, 256)  # point (no pad with a box), granularity, 2 corners
    g_token = gran.embed_granularity(torch.tensor([0.5]))[0]
    assert torch.allclose(sparse[0, 1], g_token)
    assert torch.allclose(sparse[0, 2:], gran._embed_boxes(box)[0])


def test_without_granularity_the_encoder_is_stock_sam(encoders: tuple) -> None:
    stock, gran = encoders
    coords = torch.tensor([[[10.0, 20.0]]])
    labels = torch.tensor([[1]])
    assert torch.equal(gran((coords, labels), None, None)[0], stock((coords, labels), None, None)[0])


def test_default_granularity_context_is_used_and_restored(encoders: tuple) -> None:
    _, gran = encoders
    coords = torch.tensor([[[10.0, 20.0]], [[30.0, 40.0]]])
    labels = torch.tensor([[1], [1]])
    explicit, _ = gran((coords, labels), None, None, granularity=torch.tensor([0.7, 0.7]))
    with gran.use_granularity(0.7):
        implicit, _ = gran((coords, labels), None, None)
    assert torch.equal(explicit, implicit)
    assert gran.default_granularity is None
    assert gran((coords, labels), None, None)[0].shape[1] == 2


def test_per_prompt_granularities_and_count_mismatch(encoders: tuple) -> None:
    _, gran = encoders
    coords = torch.zeros(3, 1, 2)
    labels = torch.ones(3, 1, dtype=torch.int)
    sparse, _ = gran((coords, labels), None, None, granularity=torch.tensor([0.1, 0.5, 1.0]))
    tokens = gran.embed_granularity(torch.tensor([0.1, 0.5, 1.0]))
    assert torch.allclose(sparse[:, -1], tokens)
    assert not torch.allclose(tokens[0], tokens[2])
    with pytest.raises(ValueError, match="2 granularities for a prompt batch of 3"):
        gran((coords, labels), None, None, granularity=torch.tensor([0.1, 0.5]))
