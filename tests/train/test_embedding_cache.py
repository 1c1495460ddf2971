"""Embedding cache: what it returns equals what the image encoder computes, and a hit never calls the encoder."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from unsamv2.train.dataset import PseudoLabelDataset, collate
from unsamv2.train.embedding_cache import EmbeddingCache, encoder_fingerprint
from unsamv2.train.segmenter import MultiStepSegmenter


def test_embedding_cache_returns_what_the_encoder_computes(tiny_unsamv2: torch.nn.Module, scenes: Path,
                                                           tiny_settings: dict[str, Any], tmp_path: Path) -> None:
    size = tiny_settings["image_size"]
    ds = PseudoLabelDataset(scenes / "annotations", scenes / "images", image_size=size, max_masks=3, augment=False)
    batch = collate([ds[i] for i in range(2)])
    seg = MultiStepSegmenter(tiny_unsamv2, granularity=True, multimask_first_step=False, correction_clicks=0,
                             correction_sampler="uniform")
    cache = EmbeddingCache(tmp_path, encoder_fingerprint(tiny_unsamv2.image_encoder, size))
    with torch.no_grad():
        direct = seg.encode_images(batch["image"])
        first = cache.encode_batch(["a", "b"], batch["image"], seg.encode_images)
        second = cache.encode_batch(["a", "b"], batch["image"], lambda x: pytest.fail("cache miss"))
    assert (cache.misses, cache.hits) == (2, 2)
    for d, f, s in zip(direct, first, second, strict=True):
        assert torch.allclose(d, f, atol=1e-5) and torch.equal(f, s)


def test_an_image_changed_under_the_same_name_is_a_miss_not_stale_features(
        tiny_unsamv2: torch.nn.Module, scenes: Path, tiny_settings: dict[str, Any], tmp_path: Path) -> None:
    """Regenerated scenes keep their file names (syn_000000.png …): the cache must key by what the image is."""
    size = tiny_settings["image_size"]
    ds = PseudoLabelDataset(scenes / "annotations", scenes / "images", image_size=size, max_masks=3, augment=False)
    images = collate([ds[i] for i in range(2)])["image"]
    seg = MultiStepSegmenter(tiny_unsamv2, granularity=True, multimask_first_step=False, correction_clicks=0,
                             correction_sampler="uniform")
    cache = EmbeddingCache(tmp_path, encoder_fingerprint(tiny_unsamv2.image_encoder, size))
    calls: list[int] = []

    def encode(x: torch.Tensor) -> list[torch.Tensor]:
        calls.append(int(x.shape[0]))
        return seg.encode_images(x)

    with torch.no_grad():
        cache.encode_batch(["syn_000000"], images[:1], encode)
        # Another image under the same name: recomputed, and its own features come back.
        changed = cache.encode_batch(["syn_000000"], images[1:2], encode)
        expected = seg.encode_images(images[1:2])
        # The first image again: still a hit (its entry was not overwritten by the second).
        cache.encode_batch(["syn_000000"], images[:1], lambda x: pytest.fail("cache miss"))
    assert calls == [1, 1]
    assert (cache.misses, cache.hits) == (2, 1)
    for c, e in zip(changed, expected, strict=True):
        assert torch.allclose(c, e, atol=1e-5)
    assert len(list(cache.folder.glob("syn_000000-*.pt"))) == 2
