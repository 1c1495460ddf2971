"""MaskCut's pixel-level post-processing as CutLER has it: a fully connected CRF, hole filling, an IoU check.

CutLER (``maskcut/crf.py`` and the main loop of ``maskcut/maskcut.py``) turns every normalized-cut mask into a
pseudo-mask at the resolution of the image MaskCut saw:

1. The cut, nearest-upsampled from the patch grid to that image, gives two logits per pixel, background
   ``1 − m`` and foreground ``m``; they are bilinearly resized to the image (the identity here, since the mask
   is already at the image's size) and soft-maxed, so a pixel starts at p(fg) = σ(1) ≈ 0.731 inside the cut and
   ≈ 0.269 outside. The unary energy is ``−log p``.
2. A fully connected CRF (Krähenbühl & Koltun 2011, via ``pydensecrf``) with a Gaussian (smoothness) kernel,
   ``sxy = 3``, Potts weight 7, and a bilateral (appearance) kernel, ``sxy = 50``, ``srgb = 5``, weight 10;
   10 mean-field iterations; the label is the argmax of the marginals.
3. Holes are filled (``scipy.ndimage.binary_fill_holes``).
4. If the result's IoU with the cut is below 0.5 the CRF "changed the mask too much" and CutLER drops it (it
   writes an empty mask, which produces no annotation).

The unary is weak (odds 0.73 : 0.27), so the bilateral kernel, which pulls pixels of similar colour within
about 50 px towards the same label, moves the staircase of the patch grid onto the image's colour edges.

The same CRF is the weight-free refinement of patch-grid masks (``discovery.refine: crf``, :func:`refine_with_crf`):
the instances' parts from the conquer step are unions of backbone patches. There it runs in a window around each
mask (its bounding box grown by 10 % of its size and 4 px on every side, clipped to the image), because the mask's
edge moves by about a patch at most and the cost grows with the window's pixels; a result with IoU < 0.5 with the
input is not dropped but replaced by the input, so no part is lost. A window of more than
``CrfParams.refine_max_pixels`` pixels (``discovery.crf_refine_max_pixels``) is refined at a reduced resolution,
because the CRF's cost is per pixel (window setup and every mean-field step; measured in README, "Pseudo-labels at
pixel precision"): the window is area-downsampled to about that many pixels, the mask with it into the fraction of
each reduced pixel it covers, which is the soft foreground of the unary (logits ``1 − m``, ``m`` as CutLER's, no
longer only 0 or 1), the kernels' widths scale with the image, and the marginals' difference fg − bg is bilinearly
upsampled back to the window and thresholded at 0, so the edge lands between pixels of the reduced grid rather than
on it. The refinement stops its mean-field iterations early, at the first step that changes no pixel's label
(``CrfParams.refine_stop_when_stable``, ``discovery.crf_refine_stop_when_stable``): on the demo's scenes 62 % of the
windows stop after at most four steps, and the labels differ from the tenth step's in 0.02 % of the pixels
(README, "Pseudo-labels at pixel precision"); MaskCut's CRF always runs CutLER's full count.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from unsamv2.core.mask_overlap import iou_from_counts

# Window of the refinement CRF around a mask's bounding box: this fraction of the box's size plus this many pixels.
WINDOW_FRACTION = 0.1
WINDOW_PIXELS = 4

__all__ = ["CrfParams", "crf_margin", "crf_unary", "dense_crf", "maskcut_crf", "refine_in_window", "refine_window",
           "refine_with_crf"]


@dataclass(frozen=True)
class CrfParams:
    """Parameters of the dense CRF; the defaults are CutLER's ``maskcut/crf.py`` constants."""

    iterations: int = 10  # MAX_ITER
    gaussian_sxy: float = 3.0  # POS_XY_STD
    gaussian_compat: float = 7.0  # POS_W
    bilateral_sxy: float = 50.0  # Bi_XY_STD
    bilateral_srgb: float = 5.0  # Bi_RGB_STD
    bilateral_compat: float = 10.0  # Bi_W
    # Not CutLER's: the largest window the weight-free refinement (refine_with_crf) runs at full resolution;
    # MaskCut's CRF (maskcut_crf) always runs at full resolution, as CutLER's.
    refine_max_pixels: int = 3072
    # Not CutLER's: the refinement's mean-field loop ends at the first step that changes no label (at most
    # ``iterations`` steps); MaskCut's CRF runs all of them.
    refine_stop_when_stable: bool = True

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ValueError(f"CRF iterations must be >= 1, got {self.iterations}")
        if self.refine_max_pixels < 4:
            raise ValueError(f"CRF refine_max_pixels must be >= 4, got {self.refine_max_pixels}")
        for name in ("gaussian_sxy", "bilateral_sxy", "bilateral_srgb"):
            if getattr(self, name) <= 0:
                raise ValueError(f"CRF {name} must be > 0, got {getattr(self, name)}")
        for name in ("gaussian_compat", "bilateral_compat"):
            if getattr(self, name) < 0:
                raise ValueError(f"CRF {name} must be >= 0, got {getattr(self, name)}")


def crf_unary(mask: np.ndarray) -> np.ndarray:
    """CutLER's unary energy of a mask: (2, H·W) float32 ``−log softmax([1 − m, m])`` (bg row first).

    ``m`` is the binary mask (CutLER) or, for a soft mask, each pixel's foreground fraction in [0, 1].
    """
    m = np.asarray(mask, dtype=np.float64).reshape(-1)
    logits = np.stack([1.0 - m, m])
    # softmax of two logits differing by ±1: the larger gets σ(1), the other σ(−1)
    shifted = logits - logits.max(axis=0, keepdims=True)
    log_prob = shifted - np.log(np.exp(shifted).sum(axis=0, keepdims=True))
    return np.ascontiguousarray(-log_prob, dtype=np.float32)


def dense_crf(image: np.ndarray, mask: np.ndarray, params: CrfParams = CrfParams()) -> np.ndarray:
    """Foreground of the fully connected CRF started from ``mask`` on the (H, W, 3) uint8 RGB ``image``.

    Returns an (H, W) bool array: the argmax of the marginals after ``params.iterations`` mean-field steps
    (ties go to background, as ``np.argmax`` over (bg, fg) does in CutLER).
    """
    return crf_margin(image, np.asarray(mask, dtype=bool), params) > 0


def crf_margin(
    image: np.ndarray, mask: np.ndarray, params: CrfParams = CrfParams(), scale: float = 1.0,
    stop_when_stable: bool = False,
) -> np.ndarray:
    """Marginal fg − bg (H, W float32) of the dense CRF started from the binary or soft (values in [0, 1])
    ``mask`` on the (H, W, 3) uint8 RGB ``image``, with the kernels' widths (``*_sxy``, in pixels) multiplied by
    ``scale``: the image is ``scale`` times the one they were chosen for. ``params.iterations`` mean-field steps,
    or with ``stop_when_stable`` up to the first step after which no pixel's label (the sign) changed."""
    import pydensecrf.densecrf as dcrf  # compiled extension: imported where it is used

    img = np.asarray(image)
    m = np.asarray(mask)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"image: expected (H, W, 3) uint8 RGB, got {img.shape} {img.dtype}")
    if m.shape != img.shape[:2]:
        raise ValueError(f"mask: expected shape {img.shape[:2]}, got {m.shape}")
    h, w = m.shape
    crf = dcrf.DenseCRF2D(w, h, 2)
    crf.setUnaryEnergy(crf_unary(m))
    crf.addPairwiseGaussian(sxy=params.gaussian_sxy * scale, compat=params.gaussian_compat)
    # pydensecrf needs a writable C-contiguous buffer; PIL-backed arrays are read-only, hence the copy.
    crf.addPairwiseBilateral(sxy=params.bilateral_sxy * scale, srgb=params.bilateral_srgb,
                             rgbim=np.array(img, order="C"), compat=params.bilateral_compat)
    if not stop_when_stable:
        q = np.asarray(crf.inference(params.iterations), dtype=np.float32).reshape(2, h, w)
        return q[1] - q[0]
    # startInference + stepInference is inference() unrolled (pydensecrf's DenseCRF::inference runs the same
    # steps), so the marginals after k steps are those of inference(k).
    state, scratch1, scratch2 = crf.startInference()
    labels: np.ndarray | None = None
    for _ in range(params.iterations):
        crf.stepInference(state, scratch1, scratch2)
        q = np.asarray(state, dtype=np.float32).reshape(2, h, w)
        margin = q[1] - q[0]
        new_labels = margin > 0
        if labels is not None and np.array_equal(new_labels, labels):
            break
        labels = new_labels
    return margin


def maskcut_crf(
    image: np.ndarray, mask: np.ndarray, params: CrfParams = CrfParams(), min_iou: float = 0.5
) -> np.ndarray:
    """CutLER's post-processing of one MaskCut mask at the resolution of the image MaskCut saw.

    CRF (:func:`dense_crf`), then hole filling; an all-False mask when the result's IoU with ``mask`` is below
    ``min_iou`` (CutLER's filter, 0.5) or ``mask`` is empty.
    """
    m = np.asarray(mask, dtype=bool)
    if not m.any():
        return np.zeros_like(m)
    refined = ndimage.binary_fill_holes(dense_crf(image, m, params))
    if _iou(refined, m) < min_iou:
        return np.zeros_like(m)
    return refined


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(iou_from_counts(np.count_nonzero(a & b), np.count_nonzero(a), np.count_nonzero(b)))


def refine_window(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1), half-open: the non-empty mask's bounding box grown by 10 % of its size + 4 px a side."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    grow_y = int(np.ceil(WINDOW_FRACTION * (rows[-1] - rows[0] + 1))) + WINDOW_PIXELS
    grow_x = int(np.ceil(WINDOW_FRACTION * (cols[-1] - cols[0] + 1))) + WINDOW_PIXELS
    return (max(0, int(rows[0]) - grow_y), min(h, int(rows[-1]) + 1 + grow_y),
            max(0, int(cols[0]) - grow_x), min(w, int(cols[-1]) + 1 + grow_x))


def refine_with_crf(
    image: np.ndarray, mask: np.ndarray, params: CrfParams = CrfParams(), min_iou: float = 0.5
) -> np.ndarray | None:
    """The weight-free refinement of one full-image mask: the dense CRF in the mask's window (module docstring).

    Returns None for an empty mask (nothing to refine), the input when the CRF result has IoU < ``min_iou`` with
    it, else the refined mask (outside the window it is empty, as the input is).
    """
    m = np.asarray(mask, dtype=bool)
    if not m.any():
        return None
    y0, y1, x0, x1 = refine_window(m)
    refined = np.zeros_like(m)
    refined[y0:y1, x0:x1] = refine_in_window(np.asarray(image)[y0:y1, x0:x1], m[y0:y1, x0:x1], params)
    return refined if _iou(refined, m) >= min_iou else m


def refine_in_window(image: np.ndarray, mask: np.ndarray, params: CrfParams = CrfParams()) -> np.ndarray:
    """The refined (H, W) bool mask of one window: the CRF at full resolution when the window has at most
    ``params.refine_max_pixels`` pixels, else at the reduced resolution of the module docstring; either with the
    early stop when ``params.refine_stop_when_stable``."""
    h, w = mask.shape
    stop = params.refine_stop_when_stable
    if h * w <= params.refine_max_pixels:
        return crf_margin(image, np.asarray(mask, dtype=bool), params, stop_when_stable=stop) > 0
    scale = (params.refine_max_pixels / (h * w)) ** 0.5
    size = (max(2, round(w * scale)), max(2, round(h * scale)))  # cv2's (width, height)
    small_image = cv2.resize(np.asarray(image), size, interpolation=cv2.INTER_AREA)
    soft = cv2.resize(np.asarray(mask, dtype=np.float32), size, interpolation=cv2.INTER_AREA)
    margin = crf_margin(small_image, np.clip(soft, 0.0, 1.0), params, scale=size[0] / w, stop_when_stable=stop)
    return cv2.resize(margin, (w, h), interpolation=cv2.INTER_LINEAR) > 0
