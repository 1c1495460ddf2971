"""Continuous granularity of the masks of one instance hierarchy (the instance plus its parts).

Two variants:

* :func:`granularity_scores` — the official code, ``compute_granularity_scores_sqrt`` in
  ``granularity_divide_and_conquer/compute_granularity.py`` of yujunwei04/UnSAMv2 (the project default):
  sorted by ``np.argsort(areas)`` ascending; if the smallest and largest areas are equal (one mask included)
  every score is 1.0; otherwise the first sorted mask gets exactly 0.1, the last exactly 1.0 and every other
  mask ``0.9 * (√(A+1e-10) − √(A_min+1e-10)) / (√(A_max+1e-10) − √(A_min+1e-10)) + 0.1``, with NaN/Inf
  replaced by 1.0.
* :func:`paper_granularity` — Eq. 3 of the paper as written, without the code's special cases.

Ties. ``np.argsort``'s default kind (introsort) is not stable, so which of several equally small (large) masks
takes the special 0.1 (1.0) slot is unspecified in the reference. It does not change any value: the formula
gives exactly ``0 * 0.9 + 0.1 == 0.1`` at ``A_min`` and ``1 * 0.9 + 0.1 == 1.0`` at ``A_max`` in float64, so
all tied masks get the same score whichever one is picked. We still use the same default ``np.argsort`` so
even NaN/Inf inputs follow the same path as the reference.
"""
from __future__ import annotations

import numpy as np

from unsamv2.core.constants import GRANULARITY_MAX, GRANULARITY_MIN
from unsamv2.core.mask_overlap import mask_areas

# Added under every square root by the reference; kept so the scores match it to the last bit.
_SQRT_EPS = 1e-10
_G_MIN = GRANULARITY_MIN
_G_SPAN = 0.9  # GRANULARITY_MAX - GRANULARITY_MIN, written as the reference's literal


def _as_areas(areas: np.ndarray) -> np.ndarray:
    arr = np.asarray(areas, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"areas: expected a 1-D array of pixel counts, got shape {arr.shape}")
    finite = np.isfinite(arr)
    if np.any(arr[finite] < 0):
        raise ValueError(f"areas: pixel counts must be >= 0, got {arr[finite][arr[finite] < 0].tolist()}")
    return arr


def granularity_scores(areas: np.ndarray) -> np.ndarray:
    """Granularity of each mask of one hierarchy, exactly as the official ``compute_granularity_scores_sqrt``.

    Args:
        areas: 1-D mask areas in pixels (the reference sums the bool masks). NaN/Inf are tolerated and handled
            like the reference does; negative areas raise ``ValueError``.

    Returns:
        float64 scores, same order as ``areas``. Empty input gives an empty array (the reference would fail).
    """
    a = _as_areas(areas)
    n = a.size
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    order = np.argsort(a)  # default (unstable) kind, as the reference
    a_min, a_max = a[order[0]], a[order[-1]]
    if a_min == a_max:
        return np.ones(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        sqrt_min = np.sqrt(a_min + _SQRT_EPS)
        sqrt_diff = np.sqrt(a_max + _SQRT_EPS) - sqrt_min
        g = (np.sqrt(a + _SQRT_EPS) - sqrt_min) / sqrt_diff * _G_SPAN + _G_MIN
    # The reference maps NaN/Inf to 1.0 only for the middle masks; the two ends are overwritten just below.
    g = np.where(np.isfinite(g), g, 1.0)
    g[order[0]] = _G_MIN
    g[order[-1]] = GRANULARITY_MAX
    return g


def granularity_scores_for_masks(masks: np.ndarray) -> np.ndarray:
    """:func:`granularity_scores` of an (n, H, W) bool stack, areas being pixel counts (as the reference)."""
    return granularity_scores(mask_areas(masks))


def paper_granularity(areas: np.ndarray) -> np.ndarray:
    """Eq. 3 of the paper: ``g_i = 0.9 (√A_i − √A_min) / (√A_max − √A_min) + 0.1``, no special cases.

    Differences from :func:`granularity_scores`: no ``1e-10`` under the roots, no forced 0.1/1.0 ends (the
    formula gives them anyway) and no NaN/Inf replacement: non-finite areas raise ``ValueError``. Eq. 3 is
    undefined when all areas are equal (including a single mask); we return 1.0 there, the "whole entity"
    value the code also uses.
    """
    a = _as_areas(areas)
    if a.size == 0:
        return np.zeros(0, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError("areas: paper_granularity needs finite areas")
    root = np.sqrt(a)
    lo, hi = root.min(), root.max()
    if hi == lo:
        return np.ones(a.size, dtype=np.float64)
    return (root - lo) / (hi - lo) * _G_SPAN + _G_MIN
