"""Windowed and protected NMS: hand-worked cases and a literal re-implementation of the reference loops."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unsamv2.core import mask_overlap
from unsamv2.discovery import nms
from unsamv2.discovery.nms import (
    protected_nms,
    protected_nms_indices,
    windowed_nms,
)


def strip_masks(spans: list[tuple[int, int]], length: int = 1000) -> np.ndarray:
    """Masks on a 1 x length image, each covering the half-open pixel range [a, b)."""
    out = np.zeros((len(spans), 1, length), dtype=bool)
    for k, (a, b) in enumerate(spans):
        out[k, 0, a:b] = True
    return out


# ------------------------------------------------------------ literal reference (helper.py), lists and `in`


def _ref_iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.count_nonzero(a & b)
    union = np.count_nonzero(a) + np.count_nonzero(b) - inter
    return 0.0 if union == 0 else inter / union


def naive_nms(masks: np.ndarray, thr: float, step: int) -> list[int]:
    idx = sorted(range(len(masks)), key=lambda k: np.count_nonzero(masks[k]), reverse=True)
    kept = list(range(len(idx)))
    for i in range(len(idx)):
        if i in kept:
            for j in range(i + 1, min(len(idx), i + step)):
                if _ref_iou(masks[idx[i]], masks[idx[j]]) > thr and j in kept:
                    kept.remove(j)
    return [idx[i] for i in kept]


def naive_protected(protected: np.ndarray, normal: np.ndarray, thr: float, step: int) -> list[int]:
    idx = sorted(range(len(normal)), key=lambda k: np.count_nonzero(normal[k]), reverse=True)
    kept = list(range(len(idx)))
    for i in range(len(idx)):
        for p in protected:
            if _ref_iou(normal[idx[i]], p) > thr:
                if i in kept:
                    kept.remove(i)
                break
    for i in range(len(idx)):
        if i in kept:
            for j in range(i + 1, min(len(idx), i + step)):
                if j in kept and _ref_iou(normal[idx[i]], normal[idx[j]]) > thr:
                    kept.remove(j)
    return [idx[i] for i in kept]


# ----------------------------------------------------------------------------------------------- windowed NMS


def test_windowed_nms_with_tiny_chunks_matches_reference_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    a = np.random.default_rng(1).random((5, 13, 11)) > 0.5
    # Forces 21 pixel chunks in the intersections and row chunks in the banded IoU.
    monkeypatch.setattr(mask_overlap, "CHUNK_PIXELS", 7)
    monkeypatch.setattr(nms, "CHUNK_PIXELS", 7)
    with_dups = np.concatenate([a, a[:2]])
    assert windowed_nms(with_dups, 0.8, 5).tolist() == naive_nms(with_dups, 0.8, 5)


def _window_case(n_fillers: int) -> np.ndarray:
    """A (100 px), fillers of 99, 98, ... px far away, then B = 95 px inside A (IoU 0.95)."""
    spans = [(0, 100)] + [(200 + 100 * k, 200 + 100 * k + 99 - k) for k in range(n_fillers)] + [(0, 95)]
    return strip_masks(spans)


def test_window_five_positions_away_is_not_suppressed() -> None:
    masks = _window_case(4)  # B sits at sorted position 5 = 0 + step
    assert windowed_nms(masks, 0.8, 5).tolist() == [0, 1, 2, 3, 4, 5]


def test_window_four_positions_away_is_suppressed() -> None:
    masks = _window_case(3)  # B sits at sorted position 4 < 0 + step
    assert windowed_nms(masks, 0.8, 5).tolist() == [0, 1, 2, 3]
    # A bigger window reaches the 5-away case too.
    assert windowed_nms(_window_case(4), 0.8, 6).tolist() == [0, 1, 2, 3, 4]


def test_suppressed_mask_does_not_suppress() -> None:
    # A = 100 px, B = 90 px inside A (IoU 0.9), C = 80 px inside B:
    # IoU(C, B) = 0.889, IoU(C, A) = 0.8 (not > 0.8).
    masks = strip_masks([(0, 80), (0, 100), (0, 90)])
    assert windowed_nms(masks, 0.8, 5).tolist() == [1, 0]  # A then C; B gone, and B could not remove C


def test_threshold_is_strict_and_output_is_area_descending() -> None:
    masks = strip_masks([(0, 80), (0, 100), (500, 600), (700, 710)])  # IoU 0.8 exactly between 0 and 1
    assert windowed_nms(masks, 0.8, 5).tolist() == [1, 2, 0, 3]


def test_equal_areas_keep_input_order() -> None:
    masks = strip_masks([(500, 520), (0, 100), (0, 100), (300, 400)])
    # Stable sort: masks 1, 2, 3 all have 100 px and keep input order; 2 is a copy of 1 and goes.
    assert windowed_nms(masks, 0.8, 5).tolist() == [1, 3, 0]


def test_edge_cases() -> None:
    assert windowed_nms(np.zeros((0, 3, 3), bool)).tolist() == []
    dup = strip_masks([(0, 10), (0, 10)])
    assert windowed_nms(dup, 0.8, 1).tolist() == [0, 1]  # step 1: empty window
    empties = np.zeros((3, 4, 4), bool)
    assert windowed_nms(empties).tolist() == [0, 1, 2]  # empty masks never overlap (IoU 0)


# ---------------------------------------------------------------------------------------------- protected NMS


def test_protected_nms_drops_overlaps_with_protected_and_keeps_it_first() -> None:
    protected = strip_masks([(200, 297)])  # P, 97 px
    normal = strip_masks([(600, 650), (200, 299), (0, 100)])  # small, D ~ P (IoU 0.98), K
    out = protected_nms(protected, normal, 0.8, 5)
    assert np.array_equal(out[0], protected[0])
    assert np.array_equal(out[1:], normal[[2, 0]])
    assert protected_nms_indices(protected, normal).tolist() == [2, 0]


def test_protected_removed_masks_still_take_window_slots() -> None:
    # Sorted normal list: K(100), D(99, removed by P), F98, F97, F96, Z(95, IoU 0.95 with K):
    # Z sits at position 5.
    protected = strip_masks([(200, 297)])
    spans = [(0, 95), (400, 498), (0, 100), (500, 597), (200, 299), (600, 696)]
    normal = strip_masks(spans)
    keep = protected_nms_indices(protected, normal, 0.8, 5)
    assert keep.tolist() == [2, 1, 3, 5, 0]  # Z survives: D still occupies a window slot
    # Without D, Z moves to position 4 and is suppressed by K.
    without_d = normal[[0, 1, 2, 3, 5]]
    assert protected_nms_indices(protected, without_d, 0.8, 5).tolist() == [2, 1, 3, 4]


def test_masks_removed_by_protected_do_not_suppress() -> None:
    protected = strip_masks([(200, 300)])  # P
    normal = strip_masks([(180, 280), (180, 300)])  # E (IoU 0.67 with P), D (IoU 0.83 with P, 0.83 with E)
    assert protected_nms_indices(protected, normal, 0.8, 5).tolist() == [0]  # D goes, and cannot remove E


def test_protected_nms_empty_inputs() -> None:
    p = strip_masks([(0, 10)])
    assert np.array_equal(protected_nms(p, np.zeros((0, 1, 1000), bool)), p)
    n = strip_masks([(0, 10), (0, 10)])
    assert np.array_equal(protected_nms(np.zeros((0, 1, 1000), bool), n), n[:1])


# ----------------------------------------------------------------------------------------------- property

@st.composite
def mask_stacks(draw: st.DrawFn) -> np.ndarray:
    """Random 6x6 masks, many of them perturbed copies of a few bases so that IoU > 0.8 happens often."""
    n_base = draw(st.integers(1, 4))
    n = draw(st.integers(0, 14))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    bases = rng.random((n_base, 6, 6)) < rng.uniform(0.2, 0.9, size=(n_base, 1, 1))
    out = np.empty((n, 6, 6), dtype=bool)
    for k in range(n):
        flips = rng.random((6, 6)) < rng.choice([0.0, 0.03, 0.1, 0.5])
        out[k] = bases[rng.integers(n_base)] ^ flips
    return out


@settings(max_examples=150, deadline=None)
@given(mask_stacks(), st.sampled_from([0.5, 0.8, 0.9]), st.integers(1, 7))
def test_windowed_nms_matches_reference_loop(masks: np.ndarray, thr: float, step: int) -> None:
    kept = windowed_nms(masks, thr, step)
    assert kept.tolist() == naive_nms(masks, thr, step)
    # Subset, no duplicates, and no two kept masks inside one window above the threshold.
    assert len(set(kept.tolist())) == kept.size and set(kept.tolist()) <= set(range(len(masks)))
    order = sorted(range(len(masks)), key=lambda k: np.count_nonzero(masks[k]), reverse=True)
    pos = {m: p for p, m in enumerate(order)}
    for a in kept:
        for b in kept:
            if 0 < pos[b] - pos[a] < step:
                assert _ref_iou(masks[a], masks[b]) <= thr


@settings(max_examples=150, deadline=None)
@given(mask_stacks(), st.integers(0, 2), st.integers(1, 6))
def test_protected_nms_matches_reference_loop(masks: np.ndarray, n_protected: int, step: int) -> None:
    # Protected and normal masks come from the same perturbed bases so that they overlap often.
    protected, normal = masks[:n_protected], masks[n_protected:]
    keep = protected_nms_indices(protected, normal, 0.8, step)
    assert keep.tolist() == naive_protected(protected, normal, 0.8, step)
    out = protected_nms(protected, normal, 0.8, step)
    assert len(out) == len(protected) + keep.size
    for m in out[len(protected) :]:
        assert all(_ref_iou(m, p) <= 0.8 for p in protected)
