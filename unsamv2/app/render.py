"""Pictures the app shows: one mask over an image with the clicks marked, fast enough for a slider.

:func:`unsamv2.model.figures.overlay_mask` blends in float for every pixel of the image (≈50 ms at 1024 px on one
core); :class:`MaskPainter` precomputes the blended image once per image and per colour, so a slider move only
selects pixels (≈7 ms). Both give the same pixels (tests/app/test_render.py).
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

__all__ = ["MASK_COLOR", "NEGATIVE_COLOR", "POSITIVE_COLOR", "MaskPainter", "draw_clicks"]

MASK_COLOR: tuple[int, int, int] = (255, 60, 60)
POSITIVE_COLOR: tuple[int, int, int] = (40, 220, 40)
NEGATIVE_COLOR: tuple[int, int, int] = (230, 40, 230)
_ALPHA = 0.5


class MaskPainter:
    """``paint(mask)`` = ``overlay_mask(image, mask, MASK_COLOR, 0.5)`` for one fixed image, without the float
    pass over the whole image on every call."""

    def __init__(self, image: np.ndarray, color: tuple[int, int, int] = MASK_COLOR, alpha: float = _ALPHA) -> None:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be an H×W×3 uint8 array, got {image.shape} {image.dtype}")
        self.image = image
        self.color = color
        # The same arithmetic as overlay_mask, done once for every pixel.
        blended = (1.0 - alpha) * image.astype(np.float32) + alpha * np.asarray(color, dtype=np.float32)
        self._tinted = blended.round().clip(0, 255).astype(np.uint8)

    def paint(self, mask: np.ndarray) -> np.ndarray:
        m = np.asarray(mask, dtype=bool)
        if m.shape != self.image.shape[:2]:
            raise ValueError(f"mask shape {m.shape} does not match image {self.image.shape[:2]}")
        out = np.where(m[..., None], self._tinted, self.image)
        if m.any():
            contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(out, contours, -1, self.color, thickness=max(1, round(min(m.shape) / 200)))
        return out


def click_radius(shape: tuple[int, ...]) -> int:
    """Marker radius: visible on a phone photo and on a 256-px test image alike."""
    return max(3, round(min(shape[:2]) / 90))


def draw_clicks(image: np.ndarray, points: Sequence[tuple[float, float]], labels: Sequence[int]) -> np.ndarray:
    """Mark positive clicks (green) and negative clicks (magenta) with a white-rimmed dot, in place; returns it."""
    r = click_radius(image.shape)
    for (x, y), label in zip(points, labels, strict=True):
        centre = (round(x), round(y))
        cv2.circle(image, centre, r + 1, (255, 255, 255), -1, cv2.LINE_AA)
        cv2.circle(image, centre, r, POSITIVE_COLOR if label == 1 else NEGATIVE_COLOR, -1, cv2.LINE_AA)
    return image
