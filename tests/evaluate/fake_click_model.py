"""A deterministic stand-in for a promptable segmentation model, for testing the click-loop logic.

Its prediction is a known function of the clicks: the union of discs of radius ``r(g)`` around the positive clicks,
minus the discs around the negative clicks. Logits are +4 inside, -4 outside (so the -1 threshold and the 0
threshold agree). With ``multimask=True`` it returns three candidates with radii scaled by 0.5, 1 and 1.5, and the
low-res logits of candidate c are filled with the value c, so a test can see which candidate was fed back.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from unsamv2.evaluate.adapters import Prediction


@dataclass
class Call:
    points_xy: np.ndarray
    labels: np.ndarray
    granularities: list[float | None]
    mask_input: np.ndarray | None
    multimask: bool


def disc(shape: tuple[int, int], cy: int, cx: int, r: float) -> np.ndarray:
    """Bool disc of radius ``r`` around row ``cy``, column ``cx``."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


def linear_radius(g: float | None) -> float:
    return 3.0 if g is None else 1.0 + 10.0 * g


@dataclass
class DiscModel:
    radius: Callable[[float | None], float] = linear_radius
    name: str = "fake"
    shape: tuple[int, int] | None = None
    set_image_calls: int = 0
    calls: list[Call] = field(default_factory=list)

    def set_image(self, image: np.ndarray) -> None:
        self.shape = image.shape[:2]
        self.set_image_calls += 1

    @property
    def rows(self) -> int:
        """Total number of prompts answered (the decoder cost)."""
        return sum(len(c.granularities) for c in self.calls)

    def _mask(self, points: np.ndarray, labels: np.ndarray, radius: float) -> np.ndarray:
        assert self.shape is not None, "set_image first"
        yy, xx = np.mgrid[: self.shape[0], : self.shape[1]]
        out = np.zeros(self.shape, dtype=bool)
        for (x, y), lab in zip(points, labels):
            if lab == 1:
                out |= (yy - y) ** 2 + (xx - x) ** 2 <= radius**2
        for (x, y), lab in zip(points, labels):
            if lab == 0:
                out &= ~((yy - y) ** 2 + (xx - x) ** 2 <= radius**2)
        return out

    def predict_batch(
        self,
        points_xy: np.ndarray,
        labels: np.ndarray,
        granularities: Sequence[float | None],
        mask_input: np.ndarray | None,
        multimask: bool = False,
    ) -> list[Prediction]:
        assert points_xy.ndim == 3 and points_xy.shape[-1] == 2
        assert labels.shape == points_xy.shape[:2]
        assert len(granularities) == points_xy.shape[0]
        self.calls.append(Call(points_xy.copy(), labels.copy(), list(granularities),
                               None if mask_input is None else mask_input.copy(), multimask))
        scales = (0.5, 1.0, 1.5) if multimask else (1.0,)
        out = []
        for b, g in enumerate(granularities):
            masks = [self._mask(points_xy[b], labels[b], self.radius(g) * s) for s in scales]
            logits = np.stack([np.where(m, 4.0, -4.0) for m in masks]).astype(np.float32)
            low_res = np.stack([np.full((256, 256), float(c), np.float32) for c in range(len(scales))])
            out.append(Prediction(logits, low_res, np.ones(len(scales), np.float32)))
        return out


def model_for(shape: tuple[int, int], **kwargs) -> DiscModel:
    """A :class:`DiscModel` with an image of ``shape`` already set."""
    model = DiscModel(**kwargs)
    model.set_image(np.zeros((*shape, 3), np.uint8))
    return model
