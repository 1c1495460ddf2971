"""On-disk cache of frozen image-encoder outputs, reused across epochs (``train.cache_embeddings``).

With the image encoder frozen (UnSAMv2 never trains it) and augmentation off, an image's encoder output is the
same on every visit, and the encoder is by far the most expensive part of a training step (the decoder runs on a
64×64 embedding; the encoder on the full image). The cache stores, per image, the three FPN levels the image
encoder returns (``backbone_fpn``), *before* the decoder's ``conv_s0``/``conv_s1`` projections and the
``no_mem_embed`` addition: those belong to the mask decoder / SAM-2 base and may be trainable
(``demo_from_scratch``), so they are applied to the cached tensors at every step.

Entries live in a sub-folder named by a SHA-256 of the image encoder's weights and the model image size, so
changing the model (another size, another base checkpoint, another seed for a random encoder) uses a new
sub-folder; within it an entry is keyed by a SHA-256 of the image itself (the normalised input tensor the encoder
sees), so an image regenerated or edited under the same file name is a miss, never a stale hit. The file name
also carries the image's stem, for people looking at the folder. Files are written atomically: several DDP ranks
may compute the same image at once.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from unsamv2.io.atomic import atomic_output

__all__ = ["EmbeddingCache", "content_key", "encoder_fingerprint"]

_FORMAT_VERSION = "fpn-v1"

#: Maps a B×3×S×S image batch to its FPN levels (B×C×h×w each), under no_grad.
EncoderFn = Callable[[torch.Tensor], list[torch.Tensor]]


def encoder_fingerprint(image_encoder: nn.Module, image_size: int) -> str:
    """A short hex digest of the encoder's parameters and buffers (names, shapes, values) and the image size."""
    digest = hashlib.sha256(f"{_FORMAT_VERSION}:{image_size}".encode())
    for name, tensor in sorted(image_encoder.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()[:16]


def content_key(name: str, image: torch.Tensor) -> str:
    """``<name>-<digest>``: the readable stem plus a SHA-256 of the image tensor (shape, dtype and values)."""
    t = image.detach().to("cpu").contiguous()
    digest = hashlib.sha256(f"{tuple(t.shape)}:{t.dtype}".encode())
    digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return f"{name}-{digest.hexdigest()[:24]}"


class EmbeddingCache:
    """Per-image FPN features of a frozen encoder, as ``<root>/<fingerprint>/<stem>-<content digest>.pt``.

    Args:
        root: cache folder (created on first write).
        fingerprint: :func:`encoder_fingerprint` of the encoder whose outputs are stored.
    """

    def __init__(self, root: str | os.PathLike[str], fingerprint: str) -> None:
        self.folder = Path(root) / fingerprint
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        if not key or "/" in key or key.startswith("."):
            raise ValueError(f"embedding cache key must be a plain file stem, got {key!r}")
        return self.folder / f"{key}.pt"

    def get(self, key: str) -> list[torch.Tensor] | None:
        """The cached FPN levels of one image (each ``C×h×w`` on CPU), or None if absent."""
        path = self._path(key)
        if not path.is_file():
            self.misses += 1
            return None
        levels = torch.load(path, map_location="cpu", weights_only=True)
        self.hits += 1
        return list(levels)

    def put(self, key: str, levels: Sequence[torch.Tensor]) -> None:
        """Store one image's FPN levels (``C×h×w`` each)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        # clone(): a slice of a batched tensor would otherwise serialise the whole batch's storage.
        payload = [t.detach().to("cpu").clone() for t in levels]
        with atomic_output(self._path(key)) as tmp:
            torch.save(payload, tmp)

    def encode_batch(
        self, names: Sequence[str], images: torch.Tensor, encode: EncoderFn
    ) -> list[torch.Tensor]:
        """FPN levels (``B×C×h×w``, on ``images.device``) for a batch: cached entries are read, the others are
        computed in one ``encode`` call on the missing images and stored.

        ``names`` (the images' file stems) only make the entries readable; the key is :func:`content_key`.
        """
        if len(names) != images.shape[0]:
            raise ValueError(f"{len(names)} names for a batch of {images.shape[0]} images")
        keys = [content_key(name, image) for name, image in zip(names, images, strict=True)]
        cached = [self.get(k) for k in keys]
        missing = [i for i, c in enumerate(cached) if c is None]
        if missing:
            computed = encode(images[missing])
            for j, i in enumerate(missing):
                levels = [level[j] for level in computed]
                self.put(keys[i], levels)
                cached[i] = [t.detach().to("cpu") for t in levels]
        n_levels = len(cached[0])  # type: ignore[arg-type]
        return [
            torch.stack([c[level] for c in cached]).to(images.device)  # type: ignore[index]
            for level in range(n_levels)
        ]

