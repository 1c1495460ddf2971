"""Boundary F-measure of two masks (DAVIS / BSDS): shared by the video evaluation and the pseudo-label recall.

Implemented from the definitions of the DAVIS-2017 evaluator (``davis2017/metrics.py``; method.md §5.3): both
masks lose their void pixels, become one-pixel boundary maps (:func:`boundary_map`), and each map is dilated by a
disk of radius ``bound_pix = ceil(bound_th · ‖(H, W)‖₂)`` (``bound_th`` ≥ 1 is a radius in pixels). Precision =
predicted boundary pixels within the GT's dilated boundary / predicted boundary pixels, recall the other way
round; no predicted but some GT boundary → P = 1, R = 0; some predicted but no GT boundary → P = 0, R = 1;
neither → P = R = 1. F = 2PR / (P + R), 0 when P + R = 0.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
from skimage.morphology import disk

__all__ = ["BOUNDARY_THRESHOLD", "boundary_f_measure", "boundary_map", "boundary_radius"]

#: DAVIS boundary tolerance as a fraction of the image diagonal.
BOUNDARY_THRESHOLD = 0.008


def _as_bool_masks(gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None) -> tuple[np.ndarray, np.ndarray,
                                                                                        np.ndarray]:
    g = np.asarray(gt).astype(bool)
    p = np.asarray(pred).astype(bool)
    if g.ndim != 2 or g.shape != p.shape:
        raise ValueError(f"ground truth {g.shape} and prediction {p.shape} must be 2-D masks of one shape")
    v = np.zeros_like(g) if void is None else np.asarray(void).astype(bool)
    if v.shape != g.shape:
        raise ValueError(f"void mask {v.shape} does not match the masks {g.shape}")
    return g, p, v


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """One-pixel boundary of a mask, offset half a pixel towards the origin (DAVIS / BSDS ``seg2bmap``).

    A pixel is on the boundary when it differs from its right, lower or lower-right neighbour; the last row is
    compared with the right neighbour only, the last column with the lower one, and the bottom-right pixel is 0.
    """
    seg = np.asarray(mask).astype(bool)
    right = np.zeros_like(seg)
    down = np.zeros_like(seg)
    diag = np.zeros_like(seg)
    right[:, :-1] = seg[:, 1:]
    down[:-1, :] = seg[1:, :]
    diag[:-1, :-1] = seg[1:, 1:]
    bmap = (seg ^ right) | (seg ^ down) | (seg ^ diag)
    bmap[-1, :] = seg[-1, :] ^ right[-1, :]
    bmap[:, -1] = seg[:, -1] ^ down[:, -1]
    bmap[-1, -1] = False
    return bmap


def boundary_radius(shape: Sequence[int], bound_th: float = BOUNDARY_THRESHOLD) -> int:
    """Tolerance in pixels: ``bound_th`` itself when ≥ 1, else ``ceil(bound_th · √(H² + W²))``."""
    if bound_th >= 1:
        return int(bound_th)
    return math.ceil(bound_th * math.hypot(shape[0], shape[1]))


def boundary_f_measure(gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None = None,
                       bound_th: float = BOUNDARY_THRESHOLD) -> float:
    """F: the boundary F-measure of a predicted (H, W) mask against the ground truth (module docstring)."""
    g, p, v = _as_bool_masks(gt, pred, void)
    radius = boundary_radius(g.shape, bound_th)
    pred_b = boundary_map(p & ~v)
    gt_b = boundary_map(g & ~v)
    kernel = disk(radius).astype(np.uint8)
    pred_dil = cv2.dilate(pred_b.astype(np.uint8), kernel).astype(bool)
    gt_dil = cv2.dilate(gt_b.astype(np.uint8), kernel).astype(bool)
    n_pred = int(np.count_nonzero(pred_b))
    n_gt = int(np.count_nonzero(gt_b))
    if n_pred == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_pred > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_pred == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        precision = int(np.count_nonzero(pred_b & gt_dil)) / n_pred
        recall = int(np.count_nonzero(gt_b & pred_dil)) / n_gt
    if precision + recall == 0:
        return 0.0
    return 2.0 * precision * recall / (precision + recall)
