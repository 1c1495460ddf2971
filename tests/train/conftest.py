"""Shared fixtures of the training tests: four synthetic 128×128 scenes and a tiny UnSAMv2 training model.

Everything runs on CPU with SAM-2.1 hiera-tiny at a 128-px model input; the scenes' ground-truth annotations are
in the pseudo-label format, so they stand in for Stage-1 output.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from unsamv2.datasets.synthetic_scenes import write_synthetic_dataset
from unsamv2.train.config import TrainConfig
from unsamv2.train.trainable import build_training_model

#: Side of the scenes and of the models' input.
SCENE_SIZE = 128
_TINY: dict[str, Any] = {"model_size": "tiny", "image_size": SCENE_SIZE, "max_masks": 3, "augment": False,
                         "correction_clicks": 1, "multiplier": 1, "epochs": 1, "batch_size": 2}


@pytest.fixture(scope="session")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four synthetic scenes (``annotations/`` + ``images/``), written once per session; tests only read them."""
    return write_synthetic_dataset(tmp_path_factory.mktemp("scenes"), 4, seed=3, image_size=(SCENE_SIZE, SCENE_SIZE))


@pytest.fixture
def tiny_settings() -> dict[str, Any]:
    """Settings of a fast run on :func:`scenes`: hiera-tiny at 128 px, 3 masks, 1 correction click, 2 steps."""
    return dict(_TINY)


@pytest.fixture(scope="module")
def tiny_unsamv2() -> torch.nn.Module:
    """The ``unsamv2`` training model of :func:`tiny_settings` (seed 0). Tests that change it restore it."""
    torch.manual_seed(0)
    return build_training_model(TrainConfig(**_TINY), torch.device("cpu"))
