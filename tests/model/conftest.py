"""Fixtures of the model tests (the checkpoints, the photo and the tiny model are in tests/conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unsamv2.model.predictor import UnSAMv2ImagePredictor


@pytest.fixture(scope="session")
def predictor(tiny_model: torch.nn.Module, photo: np.ndarray) -> UnSAMv2ImagePredictor:
    """An image predictor with ``photo`` already encoded (threshold 0, as SAM-2's default)."""
    p = UnSAMv2ImagePredictor(tiny_model)
    p.set_image(photo)
    return p
