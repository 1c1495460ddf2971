"""Click simulator for the NoC protocol, behaving like RITM's ``Clicker._get_next_click``.

The simulated user clicks the centre of the largest error. The exact rule (saic-vul/ritm_interactive_segmentation,
``isegm/inference/clicker.py``, inherited unchanged by SimpleClick, GraCo and the UnSAMv2 evaluation code) is:

1. Error maps: ``FN = gt & ~pred & ~ignore`` and ``FP = ~gt & pred & ~ignore``.
2. Each map is padded with one row/column of zeros on every side, so that the image border counts as a boundary,
   and its exact Euclidean distance transform is taken (``cv2.distanceTransform(map, cv2.DIST_L2, 0)``; mask
   size 0 is ``cv2.DIST_MASK_PRECISE``, which is what RITM passes). The padding is cropped off again
   (:func:`unsamv2.core.clicks.padded_distance_transform`).
3. Pixels that were already clicked get distance 0, so the same pixel is never clicked twice.
4. The click is positive iff ``max(dt_FN) > max(dt_FP)`` (a tie gives a negative click), and it lands on the
   first pixel in row-major order where the chosen map reaches its maximum.

With an empty prediction, FP is empty and FN is the whole (non-ignored) ground truth, so the first click is the
ground-truth pixel farthest from the mask boundary: no special case is needed.

When no error is left at all (perfect prediction), both maxima are 0 and RITM returns a *negative* click at the
first pixel whose FP distance equals 0, i.e. pixel (0, 0). We keep that behaviour so that runs with a target IoU
above 1 (RITM's "IoU analysis" mode) click exactly like the reference.
"""
from __future__ import annotations

import numpy as np

from unsamv2.core.clicks import Click, padded_distance_transform

__all__ = ["Clicker", "error_distance_maps", "next_click"]


def _check_same_shape(name: str, arr: np.ndarray, shape: tuple[int, ...]) -> None:
    if arr.shape != shape:
        raise ValueError(f"{name} has shape {arr.shape}, expected {shape} (the ground-truth mask's shape)")


def error_distance_maps(
    gt_mask: np.ndarray,
    pred_mask: np.ndarray,
    clicked: np.ndarray,
    ignore_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(dt_fn, dt_fp)``: distance maps of the false-negative / false-positive regions (float32, HxW).

    Already-clicked pixels are zeroed. Exposed separately so tests can check the maps themselves.
    """
    gt = np.asarray(gt_mask, dtype=bool)
    if gt.ndim != 2:
        raise ValueError(f"gt_mask must be a 2-D (H, W) mask, got shape {gt.shape}")
    pred = np.asarray(pred_mask, dtype=bool)
    done = np.asarray(clicked, dtype=bool)
    _check_same_shape("pred_mask", pred, gt.shape)
    _check_same_shape("clicked", done, gt.shape)
    if ignore_mask is None:
        valid = np.ones_like(gt)
    else:
        ignore = np.asarray(ignore_mask, dtype=bool)
        _check_same_shape("ignore_mask", ignore, gt.shape)
        valid = ~ignore

    fn = gt & ~pred & valid
    fp = ~gt & pred & valid
    not_clicked = ~done
    # Multiplying by the not-clicked map (rather than masking the input) matches RITM: a clicked pixel keeps
    # influencing the distances of its neighbours, it just can never be the maximum itself.
    dt_fn = padded_distance_transform(fn) * not_clicked
    dt_fp = padded_distance_transform(fp) * not_clicked
    return dt_fn, dt_fp


def next_click(
    gt_mask: np.ndarray,
    pred_mask: np.ndarray,
    clicked: np.ndarray,
    ignore_mask: np.ndarray | None = None,
) -> tuple[int, int, bool]:
    """Return the next simulated click ``(y, x, is_positive)``.

    Args:
        gt_mask: (H, W) ground-truth object mask (bool or 0/1).
        pred_mask: (H, W) current binary prediction (all False before the first click).
        clicked: (H, W) bool map of pixels that were already clicked.
        ignore_mask: optional (H, W) bool map of pixels to ignore (e.g. GrabCut's 128 band); they are neither
            false negatives nor false positives.
    """
    dt_fn, dt_fp = error_distance_maps(gt_mask, pred_mask, clicked, ignore_mask)
    fn_max = float(dt_fn.max())
    fp_max = float(dt_fp.max())
    is_positive = fn_max > fp_max
    chosen, chosen_max = (dt_fn, fn_max) if is_positive else (dt_fp, fp_max)
    # np.flatnonzero scans in C (row-major) order, so the first hit is RITM's first np.argwhere hit.
    flat_index = int(np.flatnonzero(chosen == chosen_max)[0])
    y, x = divmod(flat_index, chosen.shape[1])
    return int(y), int(x), bool(is_positive)


class Clicker:
    """Accumulates the clicks of one click session on one object.

    Keeps the clicked-pixel map that :func:`next_click` needs and turns the clicks into SAM point prompts.
    """

    def __init__(self, gt_mask: np.ndarray, ignore_mask: np.ndarray | None = None) -> None:
        self.gt_mask = np.asarray(gt_mask, dtype=bool)
        self.ignore_mask = None if ignore_mask is None else np.asarray(ignore_mask, dtype=bool)
        self.clicked = np.zeros_like(self.gt_mask)
        self.clicks: list[Click] = []

    def add(self, click: Click) -> None:
        """Record a click (e.g. one computed once and shared by several sessions)."""
        self.clicks.append(click)
        self.clicked[click.y, click.x] = True

    def make_next_click(self, pred_mask: np.ndarray) -> Click:
        """Compute the next click for the current prediction, record it and return it."""
        y, x, positive = next_click(self.gt_mask, pred_mask, self.clicked, self.ignore_mask)
        click = Click(y, x, positive)
        self.add(click)
        return click

    def points_and_labels(self) -> tuple[np.ndarray, np.ndarray]:
        """SAM prompt arrays: ``points_xy`` (N, 2) float32 as (x, y) and ``labels`` (N,) int32.

        Positive clicks come first, then negative ones, each group in click order: this is the order GraCo's and
        UnSAMv2's ``get_sam_input`` produce.
        """
        ordered = [c for c in self.clicks if c.is_positive] + [c for c in self.clicks if not c.is_positive]
        points = np.array([[c.x, c.y] for c in ordered], dtype=np.float32).reshape(-1, 2)
        labels = np.array([1 if c.is_positive else 0 for c in ordered], dtype=np.int32)
        return points, labels

    def __len__(self) -> int:
        return len(self.clicks)
