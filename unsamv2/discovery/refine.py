"""Refinement of discovered masks (``discovery.refine``): CascadePSP as the official code, or a weight-free CRF.

``cascadepsp`` (the official `cascadepsp.postprocess`) needs the `segmentation-refinement` package
(`pip install unsamv2[refine]`), which downloads its own weights on first use. The window, resolution and filters
follow the official code: a square window centred on the mask's bbox centre with half-side = the bbox's longer
side, clipped to the image; L = clamp(window long side, 100, 900); output binarised at > 128; dropped if its area
fraction is < 0.0 or > 0.9 or its IoU with the input is < 0.5.

``crf`` needs no weights: every mask is refined by the same fully connected CRF as MaskCut's post-processing,
run in a window around the mask (:func:`unsamv2.discovery.crf.refine_with_crf`; a window larger than
``crf_refine_max_pixels`` at a reduced resolution), so a patch-grid staircase moves onto the image's colour edges.
The pipeline then cuts every refined part back to its refined instance
(:attr:`DiscoveryConfig.clips_parts_to_instance`), so the hierarchy and the granularity formula's areas nest.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from unsamv2.discovery.config import REFINERS
from unsamv2.discovery.crf import CrfParams, refine_with_crf
from unsamv2.discovery.pipeline import Refiner

# (crop RGB uint8, mask uint8 0/255, L) -> refined uint8 0..255
RefineFn = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


@dataclass(frozen=True)
class RefineSettings:
    min_L: int = 100
    max_L: int = 900
    scale: float = 1.0
    iou_thresh: float = 0.5
    min_area: float = 0.0
    max_area: float = 0.9


def refine_window(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of the refinement window for a non-empty mask."""
    ys, xs = np.nonzero(mask)
    y_min, y_max, x_min, x_max = ys.min(), ys.max(), xs.min(), xs.max()
    cy, cx = (y_min + y_max) / 2.0, (x_min + x_max) / 2.0
    half = max(y_max - y_min, x_max - x_min)
    h, w = mask.shape
    y0, y1 = int(max(0, cy - half)), int(min(h, cy + half))
    x0, x1 = int(max(0, cx - half)), int(min(w, cx + half))
    return y0, y1, x0, x1


def refine_mask(image: np.ndarray, mask: np.ndarray, fn: RefineFn, s: RefineSettings = RefineSettings()) -> np.ndarray | None:
    """Refine one full-image mask with `fn`; None when the result fails the official filters."""
    if not mask.any():
        return None
    y0, y1, x0, x1 = refine_window(mask)
    crop, crop_mask = image[y0:y1, x0:x1], mask[y0:y1, x0:x1]
    if crop.size == 0:
        return None
    L = int(min(max(max(crop.shape[:2]) * s.scale, s.min_L), s.max_L))
    refined_crop = np.asarray(fn(crop, crop_mask.astype(np.uint8) * 255, L)) > 128
    refined = np.zeros_like(mask, dtype=bool)
    refined[y0:y1, x0:x1] = refined_crop
    frac = refined.mean()
    if frac < s.min_area or frac > s.max_area:
        return None
    inter = np.count_nonzero(refined & mask)
    union = np.count_nonzero(refined | mask)
    if union == 0 or inter / union < s.iou_thresh:
        return None
    return refined


def build_refiner(
    name: str, device: str = "cpu", settings: RefineSettings = RefineSettings(), crf: CrfParams | None = None
) -> Refiner | None:
    """None for 'none'; the weight-free window CRF (:func:`unsamv2.discovery.crf.refine_with_crf`) for 'crf';
    for 'cascadepsp' a Refiner backed by the `segmentation-refinement` package."""
    if name == "none":
        return None
    if name == "crf":
        params = crf or CrfParams()
        return lambda image, mask: refine_with_crf(image, mask, params, settings.iou_thresh)
    if name != "cascadepsp":
        raise ValueError(f"discovery.refine must be one of {', '.join(REFINERS)}, got {name!r}")
    try:
        import segmentation_refinement
    except ImportError as exc:
        raise ImportError(
            "discovery.refine is 'cascadepsp' but the segmentation-refinement package is not installed: "
            "pip install 'unsamv2[refine]' (it downloads CascadePSP weights on first use)"
        ) from exc
    model = segmentation_refinement.Refiner(device=device)

    def fn(crop: np.ndarray, mask255: np.ndarray, L: int) -> np.ndarray:
        # The official code hands CascadePSP the OpenCV (BGR) image it read; keep that channel order.
        return model.refine(np.ascontiguousarray(crop[..., ::-1]), mask255, fast=True, L=L)

    return lambda image, mask: refine_mask(image, mask, fn, settings)
