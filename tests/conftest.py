"""Shared pytest configuration and fixtures.

Tests never touch the network: every download is served by a local HTTP server and every checkpoint or
dataset is written by the test itself. Models run on CPU with SAM-2.1 hiera-tiny at a 256-px model input (the
checkpoints themselves are resolution independent), so an image encoding costs a fraction of a second.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# Hugging Face libraries must never try to reach the hub from a test.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TEST_IMAGE_SIZE = 256


@pytest.fixture(scope="session")
def checkpoint_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``factory(fmt, size="tiny", seed=0)`` → path of a random checkpoint in a released format, written once."""
    from unsamv2.model.random_checkpoint import write_random_checkpoint

    root = tmp_path_factory.mktemp("checkpoints")
    cache: dict[tuple[str, str, int], Path] = {}

    def make(fmt: str, size: str = "tiny", seed: int = 0) -> Path:
        key = (fmt, size, seed)
        if key not in cache:
            cache[key] = write_random_checkpoint(root / f"{size}_{fmt}_{seed}.pt", size=size, fmt=fmt, seed=seed)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A non-square natural photo (skimage astronaut, 192×160) so x/y mix-ups show."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[::2, ::2][:192, :160])


@pytest.fixture(scope="session")
def tiny_model(checkpoint_factory: Callable[..., Path]) -> Any:
    """UnSAMv2 hiera-tiny from a random official-format checkpoint (LoRA B non-zero), unmerged, eval mode."""
    from unsamv2.model.build import build_unsamv2

    return build_unsamv2(checkpoint=checkpoint_factory("unsamv2"), device="cpu", image_size=TEST_IMAGE_SIZE)
