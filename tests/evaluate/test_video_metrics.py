"""J, F and their statistics against hand-worked cases of the DAVIS-2017 evaluator's definitions (method.md §5.3).

Cases (each value worked out by hand in the comment beside it): a one-pixel shift (J), an empty prediction, both
masks empty, a void region (J and F), the boundary map of a single pixel and of a half-plane, the tolerance from
the image diagonal (480×854 → 8 px), a spurious blob that halves nothing but precision, the four decay bins with
and without NaN frames; and properties: J is symmetric, F = 1 for identical masks, J ∈ [0, 1].
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from unsamv2.evaluate.video import (
    boundary_f_measure,
    boundary_map,
    boundary_radius,
    dataset_means,
    region_similarity,
    score_sequence,
    sequence_statistics,
)


def _square(h: int, w: int, top: int, left: int, size: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[top:top + size, left:left + size] = True
    return m


def _left_columns(h: int, w: int, k: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[:, :k] = True
    return m


# ------------------------------------------------------------------------------------------------------------ J


def test_j_of_a_one_pixel_shift() -> None:
    gt = _square(20, 20, 5, 5, 10)
    pred = _square(20, 20, 5, 6, 10)  # 10×10 square moved right by one pixel: ∩ = 90, ∪ = 110
    assert region_similarity(gt, pred) == pytest.approx(90 / 110)


def test_j_empty_prediction_both_empty_and_void() -> None:
    gt = _square(20, 20, 5, 5, 10)
    empty = np.zeros_like(gt)
    assert region_similarity(gt, empty) == 0.0
    assert region_similarity(empty, empty) == 1.0  # empty union → 1
    # prediction = GT plus two columns that are void: ∩ = ∪ = 100 outside void → 1
    gt2 = _left_columns(10, 20, 10)
    pred2 = _left_columns(10, 20, 12)
    void = np.zeros_like(gt2)
    void[:, 10:12] = True
    assert region_similarity(gt2, pred2) == pytest.approx(100 / 120)
    assert region_similarity(gt2, pred2, void) == 1.0
    # everything void → empty union → 1
    assert region_similarity(gt2, empty[:10], np.ones_like(gt2)) == 1.0


def test_j_is_symmetric_and_bounded() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.random((17, 23)) < 0.4
        b = rng.random((17, 23)) < 0.4
        void = rng.random((17, 23)) < 0.1
        j = region_similarity(a, b, void)
        assert j == region_similarity(b, a, void)
        assert 0.0 <= j <= 1.0
        assert region_similarity(a, a, void) == 1.0


# ------------------------------------------------------------------------------------------------------------ F


def test_boundary_map_of_a_single_pixel_and_a_half_plane() -> None:
    m = np.zeros((6, 6), bool)
    m[3, 4] = True
    # the pixel itself (differs from its right neighbour), its left neighbour (right neighbour differs), the one
    # above (lower differs) and the upper-left one (lower-right differs): a 2×2 block ending at (3, 4)
    expected = np.zeros_like(m)
    expected[2:4, 3:5] = True
    assert np.array_equal(boundary_map(m), expected)
    half = _left_columns(5, 8, 3)
    # column 2 on every row (last row compares with the right neighbour only), nothing on the last column
    expected = np.zeros_like(half)
    expected[:, 2] = True
    assert np.array_equal(boundary_map(half), expected)
    full = np.ones((4, 4), bool)
    assert not boundary_map(full).any()  # the image border is no boundary


def test_boundary_tolerance_comes_from_the_diagonal() -> None:
    assert boundary_radius((480, 854)) == 8  # ceil(0.008 × 979.7) = ceil(7.84)
    assert boundary_radius((20, 20)) == 1  # ceil(0.008 × 28.3) = ceil(0.23)
    assert boundary_radius((20, 20), bound_th=3) == 3  # ≥ 1: a radius in pixels
    gt = _left_columns(480, 854, 400)
    # a vertical edge moved by d pixels: every boundary pixel is matched iff d ≤ 8
    assert boundary_f_measure(gt, _left_columns(480, 854, 408)) == 1.0
    assert boundary_f_measure(gt, _left_columns(480, 854, 409)) == 0.0
    assert boundary_f_measure(gt, _left_columns(480, 854, 392)) == 1.0


def test_f_of_a_one_pixel_shift_and_of_a_spurious_blob() -> None:
    gt = _left_columns(20, 20, 10)  # boundary: column 9, 20 pixels
    assert boundary_f_measure(gt, _left_columns(20, 20, 11)) == 1.0  # 1 px shift, tolerance 1 px
    assert boundary_f_measure(gt, _left_columns(20, 20, 12)) == 0.0  # 2 px shift: P = R = 0
    pred = gt.copy()
    pred[10, 16] = True  # 4 extra boundary pixels at columns 15-16, 6 px away: P = 20/24, R = 1 → F = 10/11
    assert boundary_f_measure(gt, pred) == pytest.approx(10 / 11)


def test_f_empty_cases_identity_and_void() -> None:
    gt = _square(20, 20, 5, 5, 10)
    empty = np.zeros_like(gt)
    assert boundary_f_measure(gt, empty) == 0.0  # P = 1, R = 0
    assert boundary_f_measure(empty, gt) == 0.0  # P = 0, R = 1
    assert boundary_f_measure(empty, empty) == 1.0  # P = R = 1
    assert boundary_f_measure(gt, gt) == 1.0
    # the prediction overflows by 5 columns, all of them void: after removing void both masks are equal
    gt2 = _left_columns(20, 20, 10)
    pred2 = _left_columns(20, 20, 15)
    void = np.zeros_like(gt2)
    void[:, 10:] = True
    assert boundary_f_measure(gt2, pred2) == 0.0
    assert boundary_f_measure(gt2, pred2, void) == 1.0


def test_f_is_one_for_identical_masks() -> None:
    rng = np.random.default_rng(1)
    for _ in range(10):
        m = rng.random((31, 29)) < 0.5
        assert boundary_f_measure(m, m) == 1.0


# ----------------------------------------------------------------------------------------------------- statistics


def test_statistics_of_a_step() -> None:
    # n = 8: edges round(linspace(1, 8, 5) + 1e-10) - 1 = [0, 2, 4, 5, 7]; first bin = frames 0-2, last = 5-7
    mean, recall, decay = sequence_statistics([1, 1, 1, 1, 0, 0, 0, 0])
    assert (mean, recall, decay) == (0.5, 0.5, 1.0)
    # n = 6: linspace = [1, 2.25, 3.5, 4.75, 6], rounded with the tie 3.5 + 1e-10 going up: [1, 2, 4, 5, 6],
    # edges [0, 1, 3, 4, 5]; first bin = frames 0-1, last = frames 4-5
    _, _, decay = sequence_statistics([0.9, 0.6, 0.3, 0.5, 0.2, 0.0])
    assert decay == pytest.approx((0.9 + 0.6) / 2 - (0.2 + 0.0) / 2)


def test_statistics_with_nan_frames() -> None:
    # n = 5: edges [0, 1, 2, 3, 4]; first bin = [nan, 1.0] → 1.0, last bin = [0.6, 0.2] → 0.4
    mean, recall, decay = sequence_statistics([math.nan, 1.0, 0.4, 0.6, 0.2])
    assert mean == pytest.approx(0.55)  # NaN ignored
    assert recall == pytest.approx(2 / 5)  # a NaN frame is not above 0.5 but still counts
    assert decay == pytest.approx(0.6)
    assert all(math.isnan(v) for v in sequence_statistics([]))
    assert sequence_statistics([0.7]) == (0.7, 1.0, 0.0)


def test_score_sequence_drops_first_and_last_frame_and_treats_void_as_background() -> None:
    gt = np.zeros((4, 10, 10), np.uint8)
    gt[:, 2:6, 2:6] = 1
    gt[:, 0, :] = 255
    pred = gt.copy()
    pred[pred == 255] = 0
    pred[0] = 0  # the first and last frames are not scored
    pred[3] = 0
    pred[2, 2:6, 6] = 1  # frame 2: one extra column, J = 16/20
    scores = score_sequence(list(gt), list(pred), [1])[1]
    assert scores["j_mean"] == pytest.approx((1.0 + 0.8) / 2)
    assert scores["j_recall"] == 1.0
    # with void excluded, a prediction of 1 on the void row would not count; as background (official) it does
    pred_void = pred.copy()
    pred_void[1, 0, :] = 1
    official = score_sequence(list(gt), list(pred_void), [1])[1]["j_mean"]
    excluded = score_sequence(list(gt), list(pred_void), [1], void_as_background=False)[1]["j_mean"]
    assert official == pytest.approx((16 / 26 + 0.8) / 2)
    assert excluded == pytest.approx((1.0 + 0.8) / 2)


def test_dataset_means_average_objects_and_jf() -> None:
    rows = [{"j_mean": 0.5, "j_recall": 1.0, "j_decay": 0.1, "f_mean": 0.7, "f_recall": 0.0, "f_decay": 0.0},
            {"j_mean": 0.9, "j_recall": 0.0, "j_decay": 0.3, "f_mean": 0.3, "f_recall": 1.0, "f_decay": 0.2}]
    means = dataset_means(rows)
    assert means["j_mean"] == pytest.approx(0.7)
    assert means["f_mean"] == pytest.approx(0.5)
    assert means["jf_mean"] == pytest.approx(0.6)
    assert means["j_decay"] == pytest.approx(0.2)
    assert math.isnan(dataset_means([])["jf_mean"])
