"""The click type and the distance transform that both the evaluation clicker and the training prompts use."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["Click", "padded_distance_transform"]


@dataclass(frozen=True)
class Click:
    """One simulated click in pixel coordinates of the full-resolution image: row ``y``, column ``x``."""

    y: int
    x: int
    is_positive: bool


def padded_distance_transform(region: np.ndarray, mask_size: int = cv2.DIST_MASK_PRECISE) -> np.ndarray:
    """L2 distance of every region pixel to the nearest non-region pixel, the image border counting as boundary.

    The region is padded by one zero pixel on every side before OpenCV's ``distanceTransform`` and cropped back,
    so a region touching the border is not treated as extending beyond it. ``mask_size``:
    ``cv2.DIST_MASK_PRECISE`` (exact; RITM's clicker) or 5 (the 5×5 approximation of the GraCo-style training
    sampler). float32 ``(H, W)``, 0 outside the region.
    """
    padded = np.pad(np.asarray(region).astype(np.uint8), ((1, 1), (1, 1)), mode="constant")
    return cv2.distanceTransform(padded, cv2.DIST_L2, mask_size)[1:-1, 1:-1]
