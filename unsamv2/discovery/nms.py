"""Mask overlap matrices and the windowed NMS of the official divide-and-conquer code.

Reference: ``granularity_divide_and_conquer/helper.py`` (``NMS``, ``protected_NMS``, ``iou``) of
yujunwei04/UnSAMv2 (the NMS steps of `gra_divide_conquer.py`). Behaviour reproduced exactly:

* Masks are sorted by area, descending, with Python's ``sorted(..., reverse=True)``, which is *stable*:
  masks of equal area keep their input order. ``np.argsort(-areas, kind="stable")`` gives the same order.
* The window is over *sorted positions*: mask ``i`` is compared only with ``j`` where ``i < j < i + step``.
  With the default ``step=5`` each mask sees the next 4 masks, whatever its overlap with masks further on.
* Only masks still kept suppress others; a suppressed mask still occupies its position in the window.
* IoU of two empty masks is 0 (the reference returns 0.0 when the union is empty), so empties never suppress.
* The output is in sorted (area-descending) order.

Everything is vectorised: overlaps are integer pixel counts from matrix products of flattened masks, so the
thresholds compare exactly the same numbers the reference compares.
"""
from __future__ import annotations

import numpy as np

from unsamv2.core.mask_overlap import (
    CHUNK_PIXELS,
    as_mask_stack,
    flatten_masks,
    iou_from_counts,
    mask_areas,
    mask_iou_matrix,
)


def area_descending_order(masks: np.ndarray) -> np.ndarray:
    """Indices sorting masks by area, largest first; ties keep input order (stable, as Python's sorted)."""
    return np.argsort(-mask_areas(masks), kind="stable")


def _banded_iou(stack: np.ndarray, order: np.ndarray, step: int) -> np.ndarray:
    """``band[i, d] = IoU(stack[order[i]], stack[order[i + d]])`` for ``1 <= d < step`` (0 elsewhere).

    Only the pairs the windowed NMS looks at are computed: O(n * step) mask comparisons instead of O(n²).
    Rows are gathered through ``order`` chunk by chunk, so the stack is never copied whole.
    """
    n = order.size
    flat = flatten_masks(stack)
    areas = np.count_nonzero(flat, axis=1).astype(np.int64)[order]
    band = np.zeros((n, max(step, 1)), dtype=np.float64)
    # Row chunks bound the bool temporaries to about 3 * 16 * CHUNK_PIXELS bytes.
    rows = max(1, (CHUNK_PIXELS * 16) // max(flat.shape[1], 1))
    for d in range(1, min(step, n)):
        inter = np.empty(n - d, dtype=np.int64)
        for r in range(0, n - d, rows):
            stop = min(r + rows, n - d)
            inter[r:stop] = np.count_nonzero(flat[order[r:stop]] & flat[order[r + d : stop + d]], axis=1)
        band[:-d, d] = iou_from_counts(inter, areas[:-d], areas[d:])
    return band


def _windowed_suppression(band: np.ndarray, alive: np.ndarray, iou_thresh: float, step: int) -> np.ndarray:
    """Greedy pass of the reference loop over sorted positions; ``alive``: masks that start kept."""
    kept = alive.copy()
    n = kept.shape[0]
    for i in range(n):
        # A suppressed mask never suppresses others (reference: ``if i in masks_kept_indices``).
        if not kept[i]:
            continue
        for d in range(1, min(step, n - i)):
            if band[i, d] > iou_thresh:
                kept[i + d] = False
    return kept


def windowed_nms(masks: np.ndarray, iou_thresh: float = 0.8, step: int = 5) -> np.ndarray:
    """Windowed NMS of the official code (``helper.NMS``); returns kept indices into ``masks``.

    Masks are sorted by area, descending (stable: ties keep input order). Walking the sorted list, each mask
    still kept removes every mask ``j`` at sorted positions ``i < j < i + step`` whose IoU with it exceeds
    ``iou_thresh`` (strictly). The returned indices are in that sorted order, the reference's output order.

    Args:
        masks: (n, H, W) bool stack.
        iou_thresh: suppression threshold (strict ``>``), 0.8 in UnSAMv2.
        step: window length; each mask is compared with the next ``step - 1`` masks. ``step <= 1`` keeps all.

    Returns:
        int64 array of kept indices into ``masks``, largest area first.
    """
    stack = as_mask_stack(masks, "masks")
    order = area_descending_order(stack)
    if order.size == 0:
        return order.astype(np.int64)
    band = _banded_iou(stack, order, step)
    kept = _windowed_suppression(band, np.ones(order.size, dtype=bool), iou_thresh, step)
    return order[kept].astype(np.int64)


def protected_nms_indices(
    protected: np.ndarray, normal: np.ndarray, iou_thresh: float = 0.8, step: int = 5
) -> np.ndarray:
    """Indices into ``normal`` that ``helper.protected_NMS`` keeps, in its output (area-descending) order.

    1. Sort ``normal`` by area, descending (stable).
    2. Drop every normal mask whose IoU with *any* protected mask exceeds ``iou_thresh``.
    3. Windowed NMS over the sorted positions of the *full* sorted normal list: masks dropped in step 2 still
       take a slot in the window but never suppress.
    """
    prot = as_mask_stack(protected, "protected")
    norm = as_mask_stack(normal, "normal")
    order = area_descending_order(norm)
    if order.size == 0:
        return order.astype(np.int64)
    alive = np.ones(order.size, dtype=bool)
    if prot.shape[0] > 0:
        alive = ~(mask_iou_matrix(norm, prot) > iou_thresh).any(axis=1)[order]
    band = _banded_iou(norm, order, step)
    kept = _windowed_suppression(band, alive, iou_thresh, step)
    return order[kept].astype(np.int64)


def protected_nms(
    protected: np.ndarray, normal: np.ndarray, iou_thresh: float = 0.8, step: int = 5
) -> np.ndarray:
    """``helper.protected_NMS``: protected masks always survive, normal masks go through windowed NMS.

    Args:
        protected: (p, H, W) masks kept unconditionally (in UnSAMv2: the instance mask ``[I]``).
        normal: (n, H, W) candidate masks (conquer masks + CutLER parts of ``I``).
        iou_thresh: strict IoU threshold, 0.8 in UnSAMv2.
        step: NMS window length, 5 in UnSAMv2.

    Returns:
        (p + k, H, W) bool stack: the protected masks in input order, then the kept normal masks,
        largest first. Use :func:`protected_nms_indices` to know which normal masks survived.
    """
    prot = as_mask_stack(protected, "protected")
    norm = as_mask_stack(normal, "normal")
    if prot.shape[0] and norm.shape[0] and prot.shape[1:] != norm.shape[1:]:
        raise ValueError(f"mask sizes differ: protected {prot.shape[1:]}, normal {norm.shape[1:]}")
    keep = protected_nms_indices(prot, norm, iou_thresh, step)
    if prot.shape[0] == 0:
        return norm[keep]
    if keep.size == 0:
        return prot.copy()
    return np.concatenate([prot, norm[keep]], axis=0)
