"""Fixtures shared by the evaluation tests: a test image and the two real adapters with random weights (CPU)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from unsamv2.evaluate.adapters import Sam2BaselineModel, UnSAMv2ClickModel

IMAGE = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)


@pytest.fixture(scope="session")
def image() -> np.ndarray:
    """A 48x64 RGB noise image (the one the adapter fixtures are set to)."""
    return IMAGE


@pytest.fixture(scope="session")
def sam2_tiny() -> Sam2BaselineModel:
    """Stock SAM-2.1 hiera-tiny at 1024 px, random weights, with :data:`IMAGE` set."""
    model = Sam2BaselineModel.build("configs/sam2.1/sam2.1_hiera_t.yaml", None, device="cpu")
    model.set_image(IMAGE)
    return model


@pytest.fixture(scope="session")
def unsamv2_tiny() -> UnSAMv2ClickModel:
    """UnSAMv2 on hiera-tiny at 256 px, random weights, with :data:`IMAGE` set."""
    model = UnSAMv2ClickModel.build("tiny", None, device="cpu", image_size=256)
    model.set_image(IMAGE)
    return model


@pytest.fixture()
def reuse_sam2(monkeypatch, sam2_tiny):
    """Make ``model_kind="sam2"`` reuse the session's hiera-tiny instead of building (and encoding at 1024 px) again.

    Returns the arguments the patched ``Sam2BaselineModel.build`` was called with.
    """
    built = {}

    def fake_build(cls, config, checkpoint, device, name="sam2"):
        built.update(config=config, checkpoint=checkpoint, device=device)
        return Sam2BaselineModel(sam2_tiny.predictor, name=name)

    monkeypatch.setattr(Sam2BaselineModel, "build", classmethod(fake_build))
    return built


def write_grabcut(root: Path, image: np.ndarray) -> None:
    """One GrabCut sample in its real layout (data_GT image, boundary_GT trimap: 255 object, 128 unknown)."""
    (root / "GrabCut" / "data_GT").mkdir(parents=True)
    (root / "GrabCut" / "boundary_GT").mkdir(parents=True)
    cv2.imwrite(str(root / "GrabCut" / "data_GT" / "cat.jpg"), image[:, :, ::-1])
    mask = np.zeros((48, 64), np.uint8)
    mask[8:40, 12:50] = 128
    mask[10:38, 14:48] = 255
    cv2.imwrite(str(root / "GrabCut" / "boundary_GT" / "cat.bmp"), mask)
