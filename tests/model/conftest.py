"""Shared fixtures of the model tests: random-weight checkpoints in every released format, a small model, a photo.

Everything runs on CPU with SAM-2.1 hiera-tiny at a 256-px model input (the checkpoints themselves are
resolution independent), so an image encoding costs a fraction of a second.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from unsamv2.model.build import build_unsamv2
from unsamv2.model.predictor import UnSAMv2ImagePredictor
from unsamv2.model.testing import write_random_checkpoint

TEST_IMAGE_SIZE = 256


@pytest.fixture(scope="session")
def checkpoint_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``factory(fmt, size="tiny", seed=0)`` → path of a random checkpoint, written once per session."""
    root = tmp_path_factory.mktemp("checkpoints")
    cache: dict[tuple[str, str, int], Path] = {}

    def make(fmt: str, size: str = "tiny", seed: int = 0) -> Path:
        key = (fmt, size, seed)
        if key not in cache:
            cache[key] = write_random_checkpoint(
                root / f"{size}_{fmt}_{seed}.pt", size=size, fmt=fmt, seed=seed
            )
        return cache[key]

    return make


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A non-square natural photo (skimage astronaut, 192×160) so x/y mix-ups show."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[::2, ::2][:192, :160])


@pytest.fixture(scope="session")
def tiny_model(checkpoint_factory: Callable[..., Path]) -> torch.nn.Module:
    """UnSAMv2 hiera-tiny from a random official-format checkpoint (LoRA B non-zero), unmerged, eval mode."""
    return build_unsamv2(checkpoint=checkpoint_factory("unsamv2"), device="cpu", image_size=TEST_IMAGE_SIZE)


@pytest.fixture(scope="session")
def predictor(tiny_model: torch.nn.Module, photo: np.ndarray) -> UnSAMv2ImagePredictor:
    """An image predictor with ``photo`` already encoded (threshold 0, as SAM-2's default)."""
    p = UnSAMv2ImagePredictor(tiny_model)
    p.set_image(photo)
    return p
