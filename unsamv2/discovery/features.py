"""Dense patch-feature backbones for mask discovery (paper §3.3; DINOv3 ViT-B/16 as the official `gra_divide_conquer.py`).

All backbones share one interface: ``backbone(image)`` maps an ``(H, W, 3)`` ``uint8`` RGB image to an
``(H // p, W // p, C)`` ``float32`` grid of patch features, ``p = backbone.patch_size``. The caller resizes
the image so that H and W are multiples of ``p`` (the official code rounds the long-side-768 crop *up* to a
multiple of 16); remainder rows/columns are ignored. Downstream code compares patches by cosine similarity.

Backbones (``build_backbone(name)``):

* ``"dinov3_vitb16"`` — the paper's DINOv3 ViT-B/16 (``facebook/dinov3-vitb16-pretrain-lvd1689m``, gated on
  the Hugging Face hub), via ``transformers``. Output: last layer after the final LayerNorm, CLS and the 4
  register tokens removed — the ``x_norm_patchtokens`` of the official torch.hub model.
* ``"dinov2_vitb14"`` — DINOv2 ViT-B/14 (``facebook/dinov2-base``), same recipe, patch 14.
* ``"offline"`` — needs no weights: hand-crafted colour/texture statistics per 16x16 patch, mapped with random
  Fourier features so that cosine similarity approximates a Gaussian kernel on the (standardised) statistics.
  It exists so that the demo and the tests run without network; it is *not* a substitute for DINOv3 quality.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import cv2
import numpy as np

from unsamv2.download import UserSuppliedFileMissing

__all__ = [
    "BACKBONES",
    "BackboneWeightsUnavailable",
    "FeatureBackbone",
    "HFViTBackbone",
    "OfflineBackbone",
    "build_backbone",
]

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


@runtime_checkable
class FeatureBackbone(Protocol):
    """(H, W, 3) uint8 RGB -> (H // patch_size, W // patch_size, feature_dim) float32 patch features."""

    patch_size: int
    feature_dim: int

    def __call__(self, image: np.ndarray) -> np.ndarray: ...


class BackboneWeightsUnavailable(UserSuppliedFileMissing):
    """Pretrained backbone weights could not be found locally (and could not or may not be downloaded)."""


def _check_image(image: np.ndarray, patch_size: int) -> np.ndarray:
    """Validate an RGB uint8 image and crop it to a whole number of patches."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB array, got {getattr(image, 'shape', type(image))}")
    if image.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got dtype {image.dtype}")
    h, w = image.shape[0] // patch_size, image.shape[1] // patch_size
    if h == 0 or w == 0:
        raise ValueError(f"image {image.shape[:2]} is smaller than one {patch_size}x{patch_size} patch")
    return image[: h * patch_size, : w * patch_size]


# ------------------------------------------------------------------------------------------------------------
# Hugging Face transformers ViTs (DINOv3, DINOv2)
# ------------------------------------------------------------------------------------------------------------

# name -> (default hub id, accepted config.model_type values, human description, how to get the weights)
_HF_MODELS: dict[str, tuple[str, tuple[str, ...], str, str]] = {
    "dinov3_vitb16": (
        "facebook/dinov3-vitb16-pretrain-lvd1689m",
        ("dinov3_vit",),
        "DINOv3 ViT-B/16 (LVD-1689M)",
        (
            "the weights are gated: request access at "
            "https://huggingface.co/facebook/dinov3-vitb16-pretrain-lvd1689m "
            "(or https://ai.meta.com/resources/models-and-libraries/dinov3-downloads/), then either "
            "log in and download them once with network access "
            "(`hf download facebook/dinov3-vitb16-pretrain-lvd1689m`), "
            "or pass weights=<local directory with config.json and model.safetensors in Hugging Face format>"
        ),
    ),
    "dinov2_vitb14": (
        "facebook/dinov2-base",
        ("dinov2", "dinov2_with_registers"),
        "DINOv2 ViT-B/14",
        (
            "download them once with network access (`hf download facebook/dinov2-base`), or pass "
            "weights=<local directory with config.json and model.safetensors in Hugging Face format>"
        ),
    ),
}


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$|^[A-Za-z0-9][\w.-]*$")


class HFViTBackbone:
    """A DINO-family ViT from ``transformers`` returning normalised patch tokens as an (h, w, C) grid."""

    def __init__(self, name: str, weights: str | None = None, device: str = "cpu") -> None:
        if name not in _HF_MODELS:
            raise ValueError(f"unknown transformers backbone {name!r}; known: {sorted(_HF_MODELS)}")
        hub_id, model_types, description, how_to_get = _HF_MODELS[name]
        source = weights or hub_id
        local = Path(source).expanduser()
        if local.is_file():
            raise ValueError(
                f"{name}: weights={source!r} is a single file; expected a Hugging Face model directory "
                f"(config.json + model.safetensors) or a hub id. Checkpoints from torch.hub (*.pth) must be "
                f"converted to the transformers format first."
            )
        if weights is not None and not local.exists() and not _HUB_ID.match(weights):
            # Neither a hub id ("org/name") nor on disk: a mistyped local path. Say so; don't ask the hub.
            raise BackboneWeightsUnavailable(
                f"{description} weights: local directory {local.resolve()} does not exist. "
                f"To provide them: {how_to_get}."
            )

        import torch
        from transformers import AutoModel

        try:
            model = AutoModel.from_pretrained(str(local) if local.is_dir() else source)
        except OSError as exc:
            offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") or os.environ.get(
                "TRANSFORMERS_OFFLINE", ""
            ) not in ("", "0")
            mode = " (HF_HUB_OFFLINE is set, so nothing can be downloaded)" if offline else ""
            raise BackboneWeightsUnavailable(
                f"cannot load {description} weights {source!r}{mode}: {exc}. To provide them: {how_to_get}."
            ) from exc
        model_type = getattr(model.config, "model_type", "?")
        if model_type not in model_types:
            raise ValueError(
                f"{name}: weights {source!r} are a {model_type!r} model; expected one of {list(model_types)}"
            )

        self.name = name
        self.source = source
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        patch = model.config.patch_size
        # Configs may store the patch size as an int or an (h, w) pair; DINO models use square patches.
        self.patch_size: int = int(patch if isinstance(patch, int) else patch[0])
        self.feature_dim: int = int(model.config.hidden_size)
        # Tokens before the patch tokens: CLS, then register tokens (4 for DINOv3, 0 for plain DINOv2).
        self.num_prefix_tokens: int = 1 + int(getattr(model.config, "num_register_tokens", 0) or 0)

    def preprocess(self, image: np.ndarray) -> Any:
        """uint8 RGB (H, W, 3) -> ImageNet-normalised float32 tensor (1, 3, H', W') on the model's device."""
        import torch

        image = _check_image(image, self.patch_size)
        x = (image.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None].to(self.device)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        import torch

        pixel_values = self.preprocess(image)
        h = pixel_values.shape[2] // self.patch_size
        w = pixel_values.shape[3] // self.patch_size
        with torch.inference_mode():
            # Both Dinov2Model and DINOv3ViTModel apply the final LayerNorm to last_hidden_state.
            tokens = self.model(pixel_values=pixel_values).last_hidden_state[0]
        patches = tokens[self.num_prefix_tokens :]
        if patches.shape[0] != h * w:
            raise RuntimeError(
                f"{self.name}: got {patches.shape[0]} patch tokens for a {h}x{w} grid "
                f"(prefix tokens assumed: {self.num_prefix_tokens})"
            )
        return patches.reshape(h, w, -1).float().cpu().numpy()


# ------------------------------------------------------------------------------------------------------------
# Offline backbone: colour + texture statistics, no weights
# ------------------------------------------------------------------------------------------------------------


def _patch_mean(x: np.ndarray, h: int, w: int, p: int) -> np.ndarray:
    """Average an (h*p, w*p, C) array over non-overlapping p x p patches -> (h, w, C)."""
    return x.reshape(h, p, w, p, x.shape[2]).mean(axis=(1, 3))


class OfflineBackbone:
    """Weight-free patch features: per-patch colour and texture statistics, kernelised for cosine similarity.

    Per 16x16 patch it measures four groups of statistics:

    * ``colour``: mean CIE-Lab colour (3);
    * ``spread``: standard deviation of L, a, b inside the patch (3), i.e. how busy the patch is;
    * ``edges``: a 6-bin gradient-orientation histogram of L (soft binning, magnitude weighted,
      square-rooted), which separates e.g. stripes from flat areas of the same mean colour;
    * ``context``: the mean Lab colour of the surrounding 3x3 patches, so that the patches of one textured
      region (whose individual means vary with the texture phase) still look alike.

    Each group is standardised over the image's patches (pooled std, with a floor so that a nearly constant
    image does not blow noise up) and weighted. The result z is mapped with random Fourier features,
    ``phi(z) = sqrt(2/D) cos(W z + b)``, ``W ~ N(0, 1/bandwidth^2)``, for which
    ``phi(z1) . phi(z2) ~= exp(-|z1 - z2|^2 / (2 bandwidth^2))`` and ``|phi(z)| ~= 1``. So the cosine
    similarity that downstream merging thresholds (0.9 ... 0.5) compares is a Gaussian kernel of the
    statistics' distance: theta = 0.9 merges patches within 0.46 * bandwidth standardised units, theta = 0.5
    within 1.18 * bandwidth. The bandwidth 2.5 was chosen by eye on skimage's astronaut/coffee/chelsea: at
    theta = 0.5 it separates face, suit, flag, rocket and helmet, cup, saucer and table, eyes and nose.
    """

    patch_size: int = 16

    _GROUP_WEIGHTS: ClassVar[dict[str, float]] = {"colour": 1.0, "spread": 0.5, "edges": 0.5, "context": 0.7}
    # Floors on the per-group standard deviation, in the group's own units (Lab units; sqrt gradient units).
    _GROUP_STD_FLOORS: ClassVar[dict[str, float]] = {
        "colour": 8.0,
        "spread": 3.0,
        "edges": 0.3,
        "context": 8.0,
    }
    _ORIENTATION_BINS = 6

    def __init__(self, feature_dim: int = 768, bandwidth: float = 2.5, seed: int = 0) -> None:
        if feature_dim < 2 or bandwidth <= 0:
            raise ValueError(f"need feature_dim >= 2 and bandwidth > 0, got {feature_dim}, {bandwidth}")
        self.feature_dim = int(feature_dim)
        self.bandwidth = float(bandwidth)
        n_stats = 3 + 3 + self._ORIENTATION_BINS + 3
        # A fixed seed makes the projection, and therefore every feature, identical across runs and machines.
        rng = np.random.default_rng(seed)
        projection = rng.standard_normal((n_stats, self.feature_dim)) / self.bandwidth
        self._projection = projection.astype(np.float32)
        self._phase = rng.uniform(0.0, 2.0 * np.pi, self.feature_dim).astype(np.float32)

    def statistics(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """The raw per-patch statistics, each (h, w, k) float32, before standardisation."""
        p = self.patch_size
        image = _check_image(image, p)
        h, w = image.shape[0] // p, image.shape[1] // p
        # float input in [0, 1] gives L in [0, 100] and a, b in about [-127, 127]
        lab = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
        mean = _patch_mean(lab, h, w, p)
        mean_sq = _patch_mean(lab * lab, h, w, p)
        spread = np.sqrt(np.maximum(mean_sq - mean * mean, 0.0))

        lightness = np.ascontiguousarray(lab[..., 0])
        gx = cv2.Sobel(lightness, cv2.CV_32F, 1, 0, ksize=3) / 8.0  # /8: Sobel sums 8 weighted differences
        gy = cv2.Sobel(lightness, cv2.CV_32F, 0, 1, ksize=3) / 8.0
        magnitude = np.sqrt(gx * gx + gy * gy)
        # Unsigned orientation in [0, nbins): a dark-to-light and a light-to-dark edge share a bin.
        nbins = self._ORIENTATION_BINS
        position = np.mod(np.arctan2(gy, gx), np.pi) * (nbins / np.pi)
        hist = np.empty(lightness.shape + (nbins,), dtype=np.float32)
        for b in range(nbins):
            # Soft (linear) binning on the circle avoids jumps when an edge angle crosses a bin border.
            dist = np.abs(position - b)
            dist = np.minimum(dist, nbins - dist)
            hist[..., b] = magnitude * np.maximum(0.0, 1.0 - dist)
        # sqrt compresses strong edges (a Hellinger-style map) so one high-contrast line does not dominate.
        edges = np.sqrt(_patch_mean(hist, h, w, p))

        context = cv2.blur(mean, (3, 3), borderType=cv2.BORDER_REFLECT) if h > 1 or w > 1 else mean.copy()
        return {"colour": mean, "spread": spread, "edges": edges, "context": context.reshape(h, w, 3)}

    def standardised_statistics(self, image: np.ndarray) -> np.ndarray:
        """The (h, w, 15) statistics after per-image standardisation and group weighting (kernel input)."""
        stats = self.statistics(image)
        standardised = []
        for group, values in stats.items():
            flat = values.reshape(-1, values.shape[-1])
            centre = flat.mean(axis=0)
            pooled_std = float(np.sqrt(np.mean((flat - centre) ** 2)))
            scale = max(pooled_std, self._GROUP_STD_FLOORS[group])
            standardised.append((values - centre) * (self._GROUP_WEIGHTS[group] / scale))
        return np.concatenate(standardised, axis=-1).astype(np.float32)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        z = self.standardised_statistics(image)
        features = np.cos(z @ self._projection + self._phase) * np.float32(np.sqrt(2.0 / self.feature_dim))
        return features.astype(np.float32)


# ------------------------------------------------------------------------------------------------------------
# Registry
# ------------------------------------------------------------------------------------------------------------

BACKBONES: tuple[str, ...] = ("dinov3_vitb16", "dinov2_vitb14", "offline")


def build_backbone(name: str, weights: str | None = None, device: str = "cpu") -> FeatureBackbone:
    """Build a patch-feature backbone: ``"dinov3_vitb16"`` (paper), ``"dinov2_vitb14"`` or ``"offline"``.

    ``weights`` (transformers backbones only) is a local Hugging Face model directory or a hub id; default:
    the official hub id. Missing weights raise :class:`BackboneWeightsUnavailable` saying how to provide them.
    """
    if name == "offline":
        if weights is not None:
            raise ValueError("the 'offline' backbone has no weights; leave weights unset")
        return OfflineBackbone()
    if name in _HF_MODELS:
        return HFViTBackbone(name, weights=weights, device=device)
    raise ValueError(f"unknown backbone {name!r}; choose one of {list(BACKBONES)}")
