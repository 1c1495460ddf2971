"""Boundary F-measure (DAVIS F) of two masks: hand-computed boundary maps, tolerances and empty cases."""
from __future__ import annotations

import numpy as np
import pytest

from unsamv2.core.boundary import boundary_f_measure, boundary_map, boundary_radius


def _left(h: int, w: int, cols: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[:, :cols] = True
    return m


def test_boundary_map_is_the_last_column_inside_a_vertical_edge() -> None:
    expected = np.zeros((6, 8), bool)
    expected[:, 2] = True  # column 2 differs from its right neighbour (and lower-right) on every row
    assert np.array_equal(boundary_map(_left(6, 8, 3)), expected)
    assert not boundary_map(np.ones((6, 8), bool)).any()  # the image border is no boundary


def test_radius_is_a_fraction_of_the_diagonal_or_pixels() -> None:
    assert boundary_radius((256, 256)) == 3  # ceil(0.008 · 362.04) = ceil(2.896)
    assert boundary_radius((256, 256), bound_th=2) == 2


def test_f_measure_tolerance_and_partial_match() -> None:
    gt = _left(256, 256, 100)
    assert boundary_f_measure(gt, _left(256, 256, 103)) == 1.0  # 3 px off, tolerance 3 px
    assert boundary_f_measure(gt, _left(256, 256, 104)) == 0.0  # 4 px off
    # A prediction whose edge is right on rows 0..127 and 10 px off below: P = R = 128/256 → F = 0.5.
    pred = gt.copy()
    pred[128:, 100:110] = True
    assert boundary_f_measure(gt, pred) == pytest.approx(0.5, abs=0.02)


def test_f_measure_of_empty_masks() -> None:
    gt = _left(20, 20, 10)
    empty = np.zeros_like(gt)
    assert boundary_f_measure(gt, empty) == 0.0
    assert boundary_f_measure(empty, gt) == 0.0
    assert boundary_f_measure(empty, empty) == 1.0
    with pytest.raises(ValueError, match="one shape"):
        boundary_f_measure(gt, gt[:5])
