"""Figures of the model's behaviour: the "granularity strip" (one image, one click, masks at g = 0.1 … 1.0)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from unsamv2.core.constants import GRANULARITY_GRID
from unsamv2.io.atomic import atomic_output
from unsamv2.model.granularity import validate_granularities
from unsamv2.model.predictor import UnSAMv2ImagePredictor

__all__ = ["granularity_strip", "overlay_mask", "overlay_masks",
           "render_granularity_strip", "render_mask_panels", "save_rgb_png"]

_LABEL_BAND = 28  # pixels above each tile for the "g = …" label
_GAP = 4


def overlay_mask(
    image: np.ndarray,
    mask: np.ndarray,
    color: tuple[int, int, int] = (255, 60, 60),
    alpha: float = 0.5,
    contour: bool = True,
) -> np.ndarray:
    """Blend a boolean (H, W) mask over an RGB uint8 image in ``color`` and outline it; returns a new image."""
    if image.shape[:2] != mask.shape:
        raise ValueError(f"mask shape {mask.shape} does not match image {image.shape[:2]}")
    out = image.astype(np.float32).copy()
    m = mask.astype(bool)
    out[m] = (1.0 - alpha) * out[m] + alpha * np.asarray(color, dtype=np.float32)
    out = out.round().clip(0, 255).astype(np.uint8)
    if contour and m.any():
        contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, color, thickness=max(1, round(min(m.shape) / 200)))
    return out


def granularity_strip(
    predictor: UnSAMv2ImagePredictor,
    image: np.ndarray,
    point: tuple[float, float],
    granularities: Sequence[float] = GRANULARITY_GRID,
    m2m: bool = False,
    tile_height: int = 256,
    encode_image: bool = True,
) -> np.ndarray:
    """One image, one positive click, the masks at each granularity side by side (one batched decoder call).

    Returns an RGB uint8 strip: one tile per granularity (mask overlay, click marked in green), each under a
    "g = …" label, separated by white gaps. The image is encoded here (``predictor.set_image``) unless
    ``encode_image=False`` says the predictor already holds this image's embedding.
    """
    gs = validate_granularities(granularities)
    h, w = image.shape[:2]
    x, y = float(point[0]), float(point[1])
    if not (0 <= x < w and 0 <= y < h):
        raise ValueError(f"click ({x}, {y}) lies outside the {w}×{h} image")
    if encode_image:
        predictor.set_image(image)
    masks, _, _ = predictor.predict_granularities(np.array([[x, y]]), np.array([1]), gs, m2m=m2m)
    return render_granularity_strip(image, (x, y), gs, masks, tile_height)


def render_granularity_strip(
    image: np.ndarray,
    point: tuple[float, float],
    granularities: Sequence[float],
    masks: Sequence[np.ndarray] | np.ndarray,
    tile_height: int = 256,
) -> np.ndarray:
    """The strip of :func:`granularity_strip` from masks already decoded (one (H, W) mask per granularity)."""
    h, w = image.shape[:2]
    x, y = float(point[0]), float(point[1])
    gs = list(granularities)
    scale = tile_height / h
    tile_w = max(1, round(w * scale))
    tiles = []
    for g, mask in zip(gs, masks, strict=True):
        tile = overlay_mask(image, mask)
        tile = cv2.resize(tile, (tile_w, tile_height), interpolation=cv2.INTER_AREA)
        cv2.circle(tile, (round(x * scale), round(y * scale)), max(3, tile_height // 64), (40, 220, 40), -1)
        band = np.full((_LABEL_BAND, tile_w, 3), 255, dtype=np.uint8)
        cv2.putText(
            band,
            f"g = {g:.2f}",
            (4, _LABEL_BAND - 8),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.6,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
        tiles.append(np.concatenate([band, tile], axis=0))
    gap = np.full((tile_height + _LABEL_BAND, _GAP, 3), 255, dtype=np.uint8)
    parts: list[np.ndarray] = []
    for i, t in enumerate(tiles):
        if i:
            parts.append(gap)
        parts.append(t)
    return np.concatenate(parts, axis=1)


def overlay_masks(image: np.ndarray, masks: Sequence[np.ndarray], seed: int = 0) -> np.ndarray:
    """Blend many boolean (H, W) masks over an RGB uint8 image, each in a random colour (``seed``), largest
    first so that small masks stay visible on top; returns a new image."""
    rng = np.random.default_rng(seed)
    canvas = image.astype(np.float32)
    for m in sorted(masks, key=lambda m: -int(m.sum())):
        canvas[m] = 0.45 * canvas[m] + 0.55 * rng.integers(0, 256, size=3)
    return canvas.round().clip(0, 255).astype(np.uint8)


def save_rgb_png(path: str | os.PathLike[str], rgb: np.ndarray) -> Path:
    """Atomically write an RGB (or single-channel) uint8 array as PNG."""
    dest = Path(path)
    with atomic_output(dest) as tmp:
        Image.fromarray(rgb).save(tmp, format="PNG")
    return dest


def render_mask_panels(
    image: np.ndarray, panels: Sequence[tuple[str, Sequence[np.ndarray]]], tile_height: int = 200
) -> np.ndarray:
    """One tile per ``(label, masks)``: the masks overlaid in random colours under "label (n masks)", side by
    side (e.g. whole-image masks at g = 0.2 / 0.5 / 0.8 and pooled). RGB uint8."""
    h, w = image.shape[:2]
    tile_w = max(1, round(w * tile_height / h))
    tiles = []
    for label, masks in panels:
        tile = cv2.resize(overlay_masks(image, list(masks)), (tile_w, tile_height), interpolation=cv2.INTER_AREA)
        band = np.full((_LABEL_BAND, tile_w, 3), 255, dtype=np.uint8)
        cv2.putText(band, f"{label} ({len(masks)} masks)", (4, _LABEL_BAND - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(np.concatenate([band, tile], axis=0))
    gap = np.full((tile_height + _LABEL_BAND, _GAP, 3), 255, dtype=np.uint8)
    return np.concatenate([part for i, t in enumerate(tiles) for part in ((gap, t) if i else (t,))], axis=1)
