"""unsamv2.core.mask_overlap: areas, pairwise intersections and IoU as exact pixel counts."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from unsamv2.core import mask_overlap
from unsamv2.core.mask_overlap import intersection_matrix, iou_from_counts, mask_areas, mask_iou_matrix


def test_iou_matrix_hand_values() -> None:
    a = np.zeros((3, 4, 4), dtype=bool)
    a[0, 0:2] = True  # rows 0-1: 8 px
    a[1, 1:3] = True  # rows 1-2: 8 px, 4 shared with a[0]
    # a[2] empty
    iou = mask_iou_matrix(a, a)
    assert iou[0, 1] == pytest.approx(4 / 12)
    assert iou[0, 0] == 1.0
    assert iou[2, 2] == 0.0  # empty vs empty: 0, as the reference
    assert iou[0, 2] == 0.0
    assert intersection_matrix(a, a)[0, 1] == 4


def test_areas_and_iou_from_counts_known_answers() -> None:
    a = np.zeros((3, 4, 4), dtype=bool)
    a[0, 0:2] = True  # 8 px
    a[1, :, 0] = True  # 4 px
    assert mask_areas(a).tolist() == [8, 4, 0] and mask_areas(a).dtype == np.int64
    assert mask_areas(np.zeros((0, 4, 4), bool)).tolist() == []
    # |a ∩ b| = 2 of areas 8 and 4: 2 / 10; scalars and broadcast arrays alike; an empty union gives 0.
    assert float(iou_from_counts(2, 8, 4)) == 0.2
    assert iou_from_counts(np.array([[2, 0]]), np.array([[8], [8]]), np.array([4, 0])).tolist() == [
        [0.2, 0.0],
        [0.2, 0.0],
    ]
    assert float(iou_from_counts(0, 0, 0)) == 0.0


def test_intersection_chunking_is_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    a = rng.random((5, 13, 11)) > 0.5
    b = rng.random((4, 13, 11)) > 0.3
    full = intersection_matrix(a, b)
    monkeypatch.setattr(mask_overlap, "CHUNK_PIXELS", 7)  # 21 pixel chunks
    assert np.array_equal(intersection_matrix(a, b), full)
    brute = np.array([[np.count_nonzero(x & y) for y in b] for x in a])
    assert np.array_equal(full, brute)


def _traced_peak(fn: Callable[[], np.ndarray]) -> tuple[np.ndarray, int]:
    """``fn()`` and the peak of the memory it allocated (tracemalloc)."""
    import tracemalloc

    tracemalloc.start()
    try:
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


def test_intersection_temporaries_stay_within_chunk_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many masks narrow the chunk (an SA-1B image has ~100): peak memory no longer grows with the mask count."""
    rng = np.random.default_rng(2)
    masks = rng.random((64, 128, 128)) > 0.5
    full = intersection_matrix(masks, masks)
    monkeypatch.setattr(mask_overlap, "CHUNK_BYTES", 1 << 20)
    got, peak = _traced_peak(lambda: intersection_matrix(masks, masks))
    assert np.array_equal(got, full)
    # One whole-width chunk would take 64 masks x 16384 px x 4 B = 4 MiB of float32 copies (8 MiB before a
    # stack against itself shared its copy); the slack is the 64 x 64 products.
    assert peak < 1.1 * (1 << 20), peak
    b = masks[::-1].copy()  # two different stacks: both copies fit in the budget together
    got, peak = _traced_peak(lambda: intersection_matrix(masks, b))
    assert np.array_equal(got, full[:, ::-1])
    assert peak < 1.1 * (1 << 20), peak


def test_iou_matrix_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="sizes differ"):
        mask_iou_matrix(np.zeros((1, 4, 4), bool), np.zeros((1, 4, 5), bool))
    with pytest.raises(ValueError, match=r"\(n, H, W\)"):
        mask_iou_matrix(np.zeros((4, 4), bool), np.zeros((1, 4, 4), bool))
