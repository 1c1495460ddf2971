"""Fixtures of the app tests: the app's model (built with ``video=True``, as ``unsamv2 app`` builds it) and an
independent image predictor on the same checkpoint built without the video classes, as reference."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

TEST_IMAGE_SIZE = 256  # model input of the model tests (see tests/conftest.py)


@pytest.fixture(scope="session")
def app_model(checkpoint_factory: Callable[..., Path]) -> Any:
    from unsamv2.model.build import build_unsamv2

    return build_unsamv2(checkpoint=checkpoint_factory("unsamv2"), device="cpu", image_size=TEST_IMAGE_SIZE,
                         video=True)


@pytest.fixture(scope="session")
def photo_file(tmp_path_factory: pytest.TempPathFactory, photo: np.ndarray) -> Path:
    path = tmp_path_factory.mktemp("app_img") / "astronaut.png"
    Image.fromarray(photo).save(path)
    return path
