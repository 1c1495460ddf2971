"""Pixel overlaps of mask stacks: areas, pairwise intersections and IoU, exact integer counts.

Shared by discovery (NMS, hierarchy, MaskCut), the pseudo-label recall and anything else that compares masks.
Overlaps are integer pixel counts from matrix products of flattened masks, so thresholds compare exactly the
numbers a per-pair loop would. The IoU of two empty masks is 0 here (as the official ``helper.iou``); the
interactive evaluation's RITM IoU (``unsamv2.evaluate.metrics.iou``) counts an empty union as 1 instead.
"""
from __future__ import annotations

import numpy as np

__all__ = ["CHUNK_BYTES", "CHUNK_PIXELS", "as_mask_stack", "flatten_masks", "intersection_matrix", "iou_from_counts", "mask_areas", "mask_iou_matrix"]

# Pixels per matmul chunk. float32 represents integers exactly up to 2**24, so chunks of at most 2**22 pixels
# give exact partial counts; those are accumulated in int64.
CHUNK_PIXELS = 1 << 22
# Bytes the float32 copies of one chunk may take. With many masks (an SA-1B image has about 100, some several
# hundred; 16 MiB per mask at 2**22 pixels) the chunk narrows instead, so memory stops growing with the count.
CHUNK_BYTES = 1 << 30


def flatten_masks(stack: np.ndarray) -> np.ndarray:
    """(n, H, W) -> (n, H*W); explicit sizes because ``reshape(0, -1)`` is ambiguous for an empty stack."""
    return stack.reshape(stack.shape[0], stack.shape[1] * stack.shape[2])


def as_mask_stack(masks: np.ndarray, name: str) -> np.ndarray:
    """Return ``masks`` as an (n, H, W) bool array, raising a clear error for any other shape."""
    arr = np.asarray(masks)
    if arr.ndim != 3:
        raise ValueError(f"{name}: expected an (n, H, W) mask stack, got shape {arr.shape}")
    return arr.astype(bool, copy=False)


def mask_areas(masks: np.ndarray) -> np.ndarray:
    """Pixel count of every mask of an (n, H, W) stack, as int64."""
    stack = as_mask_stack(masks, "masks")
    return np.count_nonzero(flatten_masks(stack), axis=1).astype(np.int64)


def intersection_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection pixel counts: ``out[i, j] = |a_i ∩ b_j|``, shape (n, m), int64.

    Computed as a product of flattened 0/1 matrices, chunked over pixels so the float32 temporaries stay
    within ``CHUNK_BYTES`` and every partial sum is exact.
    """
    sa = as_mask_stack(a, "a")
    sb = as_mask_stack(b, "b")
    if sa.shape[1:] != sb.shape[1:]:
        raise ValueError(f"mask sizes differ: a is {sa.shape[1:]}, b is {sb.shape[1:]}")
    n, m = sa.shape[0], sb.shape[0]
    fa = flatten_masks(sa)
    fb = flatten_masks(sb)
    out = np.zeros((n, m), dtype=np.int64)
    if n == 0 or m == 0:
        return out
    same = sa is sb  # a stack against itself (the hierarchy's containment): one float32 copy serves both sides
    step = max(1, min(CHUNK_PIXELS, CHUNK_BYTES // (4 * (n if same else n + m))))
    for start in range(0, fa.shape[1], step):
        ca = fa[:, start : start + step].astype(np.float32)
        cb = ca if same else fb[:, start : start + step].astype(np.float32)
        out += np.rint(ca @ cb.T).astype(np.int64)
        del ca, cb  # freed before the next chunk's copies are made, so the peak is one chunk's
    return out


def iou_from_counts(inter: np.ndarray | int, area_a: np.ndarray | int, area_b: np.ndarray | int) -> np.ndarray:
    """IoU from intersection and area pixel counts (arrays broadcast, or scalars); 0 where the union is empty."""
    inter = np.asarray(inter, dtype=np.float64)
    union = np.asarray(area_a, dtype=np.float64) + np.asarray(area_b, dtype=np.float64) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union
    return np.where(union > 0, iou, 0.0)


def mask_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of two mask stacks (n, H, W) and (m, H, W): an (n, m) float64 array.

    The IoU of two empty masks is 0, as in the reference helper.
    """
    inter = intersection_matrix(a, b)
    return iou_from_counts(inter, mask_areas(a)[:, None], mask_areas(b)[None, :])
