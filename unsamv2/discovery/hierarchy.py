"""Instance / part relations among the divide stage's masks (paper §3.3; official `gra_divide_conquer.py`).

Two rules:

``mode="containment"`` (default, the official code ``gra_divide_conquer.py``):
    ``is_contained(a, b) := |a ∩ b| / |a| > overlap_thresh`` (0 for an empty ``a``).
    A mask is an **instance** iff its area fraction ``pixels / (H * W)`` is ``> min_instance_area`` and it is
    contained in no other mask (of any size). Quirk kept: two near-duplicates (mutual containment) knock each
    other out, so neither is an instance. The **parts** of instance ``I`` are every other mask ``m``
    (any area) with ``is_contained(m, I)``; a mask may be a part of several instances, and an instance
    of nothing.
    (The reference skips the instance itself by array equality, ``np.array_equal(mask, I)``; we skip it by
    index. The two agree: an exact copy of ``I`` would contain ``I``, so ``I`` would not be an instance.)

``mode="iou"`` (the paper's text, §3.3):
    A mask is an instance iff its area fraction is ``> min_instance_area`` and it dominates every mask it
    overlaps: ``IoU(m_i, m_j) >= overlap_thresh  =>  area(m_i) >= area(m_j)``. Every *remaining*
    (non-instance) mask ``m_r`` is a part of each instance ``m_i`` with ``IoU(m_r, m_i) >
    overlap_thresh``; the others are discarded. Taken literally this makes parts near-duplicates of their
    instance (IoU > 0.8); it is the rule as the paper states it and is offered only for comparison.
    Equal-area near-duplicates both become instances.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from unsamv2.core.mask_overlap import as_mask_stack, intersection_matrix, iou_from_counts, mask_areas

HierarchyMode = Literal["containment", "iou"]


@dataclass(frozen=True)
class Instance:
    """One instance of the hierarchy.

    Attributes:
        index: index of the instance mask in the input stack.
        parts: indices of its part masks in the input stack, ascending (the reference's order).
    """

    index: int
    parts: list[int] = field(default_factory=list)


def containment_matrix(masks: np.ndarray) -> np.ndarray:
    """``C[i, j] = |m_i ∩ m_j| / |m_i|`` for an (n, H, W) stack; rows of empty masks are 0.

    ``C[i, j] > t`` is the reference's ``is_contained(m_i, m_j, t)``. The diagonal is 1 for non-empty masks.
    """
    stack = as_mask_stack(masks, "masks")
    inter = intersection_matrix(stack, stack)
    areas = mask_areas(stack)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = inter / areas
    return np.where(areas > 0, frac, 0.0)


def _iou_matrix_self(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IoU matrix of a stack with itself and the areas, from one intersection product."""
    inter = intersection_matrix(stack, stack)
    areas = mask_areas(stack)
    return iou_from_counts(inter, areas[:, None], areas[None, :]), areas


def find_instances_and_parts(
    masks: np.ndarray,
    mode: HierarchyMode = "containment",
    overlap_thresh: float = 0.8,
    min_instance_area: float = 0.05,
) -> list[Instance]:
    """Split divide-stage masks into instances and their parts.

    Args:
        masks: (n, H, W) bool stack (the CutLER masks that passed the confidence filter), in detector order.
        mode: ``"containment"`` (official code, default) or ``"iou"`` (paper text); see the module docstring.
        overlap_thresh: τ_overlap, 0.8. Comparisons are strict ``>`` except the paper's dominance test ``>=``.
        min_instance_area: τ_area as a fraction of the image, 0.05; an instance needs a *strictly* larger
            area.

    Returns:
        Instances in input order, each with its part indices in input order.
    """
    stack = as_mask_stack(masks, "masks")
    n = stack.shape[0]
    if n == 0:
        return []
    pixels = float(stack.shape[1] * stack.shape[2])
    off_diag = ~np.eye(n, dtype=bool)

    if mode == "containment":
        contained = (containment_matrix(stack) > overlap_thresh) & off_diag  # [i, j]: i lies inside j
        area_frac = mask_areas(stack) / pixels
        is_instance = (area_frac > min_instance_area) & ~contained.any(axis=1)
        return [
            Instance(index=int(i), parts=np.flatnonzero(contained[:, i]).tolist())
            for i in np.flatnonzero(is_instance)
        ]

    if mode == "iou":
        iou, areas = _iou_matrix_self(stack)
        area_frac = areas / pixels
        overlapping = (iou >= overlap_thresh) & off_diag
        # Dominance: no overlapping mask may be strictly larger.
        dominated = (overlapping & (areas[None, :] > areas[:, None])).any(axis=1)
        is_instance = (area_frac > min_instance_area) & ~dominated
        part_of = (iou > overlap_thresh) & off_diag & ~is_instance[:, None]  # [r, i]: r is a part of i
        return [
            Instance(index=int(i), parts=np.flatnonzero(part_of[:, i]).tolist())
            for i in np.flatnonzero(is_instance)
        ]

    raise ValueError(f"mode: expected 'containment' or 'iou', got {mode!r}")
