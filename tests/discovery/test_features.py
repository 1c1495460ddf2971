"""Tests for unsamv2.discovery.features.

The transformers backbones are checked with tiny randomly initialised DINOv2 / DINOv3 models written to
tmp_path in the Hugging Face format (the real weights are unavailable offline): the output must equal the
patch tokens of a direct forward pass, sliced by hand. The offline backbone is checked on synthetic images
with known structure and on skimage's bundled photos.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from transformers import Dinov2Config, Dinov2Model, DINOv3ViTConfig, DINOv3ViTModel

from unsamv2.discovery.features import (
    BackboneWeightsUnavailable,
    FeatureBackbone,
    OfflineBackbone,
    build_backbone,
)

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _random_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _reference_tokens(model: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    """Direct HF forward on a hand-normalised tensor; returns all tokens (N, C)."""
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
    x = (x - MEAN) / STD
    with torch.no_grad():
        return model.eval()(pixel_values=x).last_hidden_state[0].numpy()


@pytest.fixture(scope="module")
def tiny_dinov2(tmp_path_factory) -> tuple[Path, Dinov2Model]:
    torch.manual_seed(0)
    config = Dinov2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=2, patch_size=14, image_size=56
    )
    model = Dinov2Model(config).eval()
    directory = tmp_path_factory.mktemp("dinov2_tiny")
    model.save_pretrained(directory)
    return directory, model


@pytest.fixture(scope="module")
def tiny_dinov3(tmp_path_factory) -> tuple[Path, DINOv3ViTModel]:
    torch.manual_seed(1)
    config = DINOv3ViTConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        patch_size=16,
        image_size=64,
        num_register_tokens=4,  # as in the real ViT-B/16
    )
    model = DINOv3ViTModel(config).eval()
    # Register tokens are created with torch.empty; give them defined values so the comparison is meaningful.
    with torch.no_grad():
        model.embeddings.register_tokens.normal_()
    directory = tmp_path_factory.mktemp("dinov3_tiny")
    model.save_pretrained(directory)
    return directory, model


def test_dinov2_patch_tokens_known_answer(tiny_dinov2) -> None:
    directory, model = tiny_dinov2
    backbone = build_backbone("dinov2_vitb14", weights=str(directory))
    assert isinstance(backbone, FeatureBackbone)
    assert (backbone.patch_size, backbone.feature_dim) == (14, 32)
    image = _random_image(42, 70)  # non-square: 3 x 5 patches
    features = backbone(image)
    assert features.shape == (3, 5, 32) and features.dtype == np.float32
    tokens = _reference_tokens(model, image)
    assert tokens.shape == (1 + 15, 32)
    np.testing.assert_allclose(features, tokens[1:].reshape(3, 5, 32), atol=1e-5)
    # Row-major patch order: features[r, c] is the token of patch r * w + c.
    np.testing.assert_allclose(features[1, 3], tokens[1 + 1 * 5 + 3], atol=1e-5)


def test_dinov3_drops_cls_and_register_tokens(tiny_dinov3) -> None:
    directory, model = tiny_dinov3
    backbone = build_backbone("dinov3_vitb16", weights=str(directory))
    assert (backbone.patch_size, backbone.feature_dim) == (16, 32)
    image = _random_image(48, 80, seed=2)  # 3 x 5 patches
    features = backbone(image)
    assert features.shape == (3, 5, 32)
    tokens = _reference_tokens(model, image)
    assert tokens.shape == (1 + 4 + 15, 32)
    np.testing.assert_allclose(features, tokens[5:].reshape(3, 5, 32), atol=1e-5)
    # Slicing off only the CLS token would be wrong: the register tokens must go too.
    assert not np.allclose(features.reshape(15, 32), tokens[1:16], atol=1e-3)


def test_remainder_pixels_are_ignored(tiny_dinov3) -> None:
    directory, _ = tiny_dinov3
    backbone = build_backbone("dinov3_vitb16", weights=str(directory))
    image = _random_image(48 + 9, 80 + 15, seed=3)
    np.testing.assert_allclose(backbone(image), backbone(image[:48, :80]), atol=1e-6)


def test_weights_of_the_wrong_family_are_rejected(tiny_dinov2) -> None:
    directory, _ = tiny_dinov2
    with pytest.raises(ValueError, match="dinov2"):
        build_backbone("dinov3_vitb16", weights=str(directory))


def test_missing_hub_model_offline_explains_how_to_get_weights() -> None:
    from huggingface_hub import constants

    if not constants.HF_HUB_OFFLINE:
        pytest.skip("HF_HUB_OFFLINE is not set; this test must never reach the internet")
    with pytest.raises(BackboneWeightsUnavailable) as info:
        build_backbone("dinov3_vitb16")
    message = str(info.value)
    assert "facebook/dinov3-vitb16-pretrain-lvd1689m" in message
    assert "request access" in message and "weights=" in message and "HF_HUB_OFFLINE" in message
    assert isinstance(info.value, FileNotFoundError)


def test_bad_weights_arguments(tmp_path: Path) -> None:
    with pytest.raises(BackboneWeightsUnavailable, match="does not exist"):
        build_backbone("dinov2_vitb14", weights=str(tmp_path / "not" / "here"))
    checkpoint = tmp_path / "dinov3_vitb16_pretrain_lvd1689m-73cec8be.pth"
    checkpoint.write_bytes(b"x")
    with pytest.raises(ValueError, match="single file"):
        build_backbone("dinov3_vitb16", weights=str(checkpoint))
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("dinov3_vitl16")
    with pytest.raises(ValueError, match="no weights"):
        build_backbone("offline", weights="x")


# ------------------------------------------------------------------------------------------------------------
# offline backbone
# ------------------------------------------------------------------------------------------------------------


def _cos(features: np.ndarray, a: tuple[int, int], b: tuple[int, int]) -> float:
    u, v = features[a], features[b]
    return float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))


def _mean_block_similarity(features: np.ndarray, box_a: tuple, box_b: tuple) -> float:
    def unit_rows(box):
        r0, r1, c0, c1 = box
        rows = features[r0:r1, c0:c1].reshape(-1, features.shape[-1])
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    return float((unit_rows(box_a) @ unit_rows(box_b).T).mean())


def test_offline_shape_dtype_determinism_and_input_checks() -> None:
    backbone = build_backbone("offline")
    assert isinstance(backbone, FeatureBackbone) and backbone.patch_size == 16 and backbone.feature_dim == 768
    image = _random_image(100, 200)  # remainder rows/cols are ignored: 6 x 12 patches
    features = backbone(image)
    assert features.shape == (6, 12, 768) and features.dtype == np.float32
    np.testing.assert_array_equal(features, OfflineBackbone()(image))  # fixed seed: same features every run
    # Random Fourier features have norm ~1, so dot products are already (approximately) cosines.
    assert np.allclose(np.linalg.norm(features, axis=-1), 1.0, atol=0.15)
    with pytest.raises(TypeError, match="uint8"):
        backbone(image.astype(np.float32))
    with pytest.raises(ValueError, match="smaller than one"):
        backbone(image[:10])


def test_offline_cosine_is_a_gaussian_kernel_of_the_statistics() -> None:
    backbone = OfflineBackbone()
    image = skimage.data.astronaut()
    z = backbone.standardised_statistics(image).reshape(-1, 15)
    f = backbone(image).reshape(-1, 768)
    rng = np.random.default_rng(0)
    i, j = rng.integers(0, len(z), 500), rng.integers(0, len(z), 500)
    kernel = np.exp(-np.sum((z[i] - z[j]) ** 2, axis=1) / (2 * backbone.bandwidth**2))
    cosine = np.sum(f[i] * f[j], axis=1) / (np.linalg.norm(f[i], axis=1) * np.linalg.norm(f[j], axis=1))
    assert np.abs(cosine - kernel).max() < 0.2
    assert np.abs(cosine - kernel).mean() < 0.05


def test_offline_two_flat_regions() -> None:
    rng = np.random.default_rng(0)
    image = np.zeros((128, 256, 3), dtype=np.float32)
    image[:, :128] = (200, 60, 40)
    image[:, 128:] = (40, 90, 200)
    image = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
    f = OfflineBackbone()(image)  # 8 x 16 patches; the boundary is between columns 7 and 8
    assert _cos(f, (2, 2), (5, 6)) > 0.95 and _cos(f, (3, 10), (6, 14)) > 0.95
    assert _cos(f, (2, 2), (3, 10)) < 0.3
    assert _cos(f, (4, 7), (4, 6)) > _cos(f, (4, 7), (4, 8))  # neighbours across the edge are less alike


def test_offline_texture_separates_regions_of_equal_mean_colour() -> None:
    image = np.full((128, 256, 3), 128, dtype=np.uint8)
    yy, xx = np.mgrid[:128, :128]
    image[:, :128] = np.where(((xx + yy) // 3) % 2 == 0, 40, 216)[..., None]  # diagonal stripes, mean ~128
    f = OfflineBackbone()(image)
    within_texture = _cos(f, (1, 1), (6, 5))  # different stripe phases, same texture
    across = _cos(f, (3, 3), (3, 12))
    assert within_texture > 0.95
    assert across < within_texture - 0.4


@pytest.mark.parametrize(
    ("name", "region_a", "region_b"),
    [
        # patch-grid boxes (row0, row1, col0, col1) checked by eye:
        # wall vs orange suit; white cup rim vs red saucer
        ("astronaut", (2, 7, 20, 24), (20, 27, 2, 7)),
        ("coffee", (2, 4, 20, 22), (11, 16, 25, 29)),
    ],
)
def test_offline_photo_regions(name: str, region_a: tuple, region_b: tuple) -> None:
    f = OfflineBackbone()(getattr(skimage.data, name)())
    within_a = _mean_block_similarity(f, region_a, region_a)
    within_b = _mean_block_similarity(f, region_b, region_b)
    across = _mean_block_similarity(f, region_a, region_b)
    assert within_a > 0.8 and within_b > 0.8
    assert across < 0.5  # below the coarsest merging threshold: the two regions stay apart at every level
