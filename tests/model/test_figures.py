"""Figures of the model package: the granularity strip and the mask overlay."""
from __future__ import annotations

import numpy as np
import pytest

from unsamv2.model.figures import granularity_strip, overlay_mask
from unsamv2.model.predictor import UnSAMv2ImagePredictor


def test_granularity_strip_layout(predictor: UnSAMv2ImagePredictor, photo: np.ndarray) -> None:
    strip = granularity_strip(predictor, photo, (60, 50), tile_height=96)
    tile_w = round(photo.shape[1] * 96 / photo.shape[0])
    assert strip.shape == (96 + 28, 10 * tile_w + 9 * 4, 3) and strip.dtype == np.uint8
    with pytest.raises(ValueError, match="outside"):
        granularity_strip(predictor, photo, (1000, 5))


def test_overlay_marks_only_the_mask() -> None:
    image = np.full((20, 30, 3), 100, dtype=np.uint8)
    mask = np.zeros((20, 30), dtype=bool)
    mask[5:10, 5:15] = True
    out = overlay_mask(image, mask, color=(200, 0, 0), alpha=0.5, contour=False)
    assert np.array_equal(out[~mask], image[~mask])
    assert tuple(out[7, 7]) == (150, 50, 50)
