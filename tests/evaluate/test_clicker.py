"""The click simulator against hand-computed answers (RITM's rule, ``isegm/inference/clicker.py``)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from unsamv2.evaluate.clicker import Clicker, error_distance_maps, next_click


def _zeros(shape: tuple[int, int]) -> np.ndarray:
    return np.zeros(shape, dtype=bool)


def rect(shape: tuple[int, int], y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """Bool mask with rows y0..y1-1 and columns x0..x1-1 set."""
    m = _zeros(shape)
    m[y0:y1, x0:x1] = True
    return m


def test_first_click_is_gt_pixel_farthest_from_boundary():
    # 5x7 rectangle (rows 1-5, cols 1-7): distance 3 at (3,3), (3,4), (3,5); row-major first is (3, 3).
    gt = rect((7, 9), 1, 6, 1, 8)
    assert next_click(gt, _zeros(gt.shape), _zeros(gt.shape)) == (3, 3, True)


def test_ties_go_to_the_first_pixel_in_row_major_order():
    # Two identical 3x3 squares: the centres (2, 2) and (2, 7) tie; the left one comes first in its row.
    gt = rect((5, 10), 1, 4, 1, 4) | rect((5, 10), 1, 4, 6, 9)
    assert next_click(gt, _zeros(gt.shape), _zeros(gt.shape)) == (2, 2, True)
    # Stacked vertically: the upper square's centre comes first.
    gt = rect((10, 5), 1, 4, 1, 4) | rect((10, 5), 6, 9, 1, 4)
    assert next_click(gt, _zeros(gt.shape), _zeros(gt.shape)) == (2, 2, True)


def test_padding_makes_the_image_border_a_boundary():
    # GT = the top four rows of the image. With RITM's zero padding the top border counts as boundary, so the
    # deepest pixel is (1, 1) at distance 2; without padding the top row would be "interior" (distance 4 at (0, 0)).
    gt = rect((8, 10), 0, 4, 0, 10)
    assert next_click(gt, _zeros(gt.shape), _zeros(gt.shape)) == (1, 1, True)
    unpadded = cv2.distanceTransform(gt.astype(np.uint8), cv2.DIST_L2, 0)
    assert np.unravel_index(np.argmax(unpadded), unpadded.shape) == (0, 0)

    full = np.ones((4, 4), dtype=bool)  # a mask covering the whole image has its deepest pixels inside
    dt_fn, _ = error_distance_maps(full, _zeros(full.shape), _zeros(full.shape))
    assert dt_fn[0, 0] == pytest.approx(1.0) and dt_fn[1, 1] == pytest.approx(2.0)
    assert next_click(full, _zeros(full.shape), _zeros(full.shape)) == (1, 1, True)


def test_ignore_pixels_are_neither_errors_nor_clickable():
    gt = rect((7, 9), 1, 6, 1, 8)
    ignore = _zeros(gt.shape)
    ignore[:, 4] = True  # splits the rectangle into two 5x3 blocks; their centres are 2 px from any boundary
    assert next_click(gt, _zeros(gt.shape), _zeros(gt.shape), ignore) == (2, 2, True)

    # A prediction that only spills into ignored pixels has no false positive: the next click stays positive.
    pred = gt.copy()
    pred[:, 4] = True  # also rows 0 and 6, outside the object: false positives, but ignored
    pred[1:6, 1:4] = False  # leave the left block as the only (false-negative) error
    y, x, positive = next_click(gt, pred, _zeros(gt.shape), ignore)
    assert positive and (y, x) == (2, 2)


def test_perfect_prediction_gives_ritms_negative_click_at_origin():
    gt = rect((7, 9), 1, 6, 1, 8)
    assert next_click(gt, gt.copy(), _zeros(gt.shape)) == (0, 0, False)


def test_negative_click_at_the_centre_of_the_largest_false_positive():
    gt = rect((12, 12), 0, 3, 0, 3)
    pred = gt | rect((12, 12), 4, 11, 4, 11)  # a 7x7 false positive: centre (7, 7) at distance 4
    assert next_click(gt, pred, _zeros(gt.shape)) == (7, 7, False)


def test_equal_fn_and_fp_depth_gives_a_negative_click():
    gt = rect((5, 12), 1, 4, 1, 4)  # 3x3 false negative, depth 2
    pred = rect((5, 12), 1, 4, 7, 10)  # 3x3 false positive, depth 2
    assert next_click(gt, pred, _zeros(gt.shape)) == (2, 8, False)


def test_clicked_pixels_are_excluded():
    gt = rect((7, 9), 1, 6, 1, 8)
    clicked = _zeros(gt.shape)
    clicked[3, 3] = True
    assert next_click(gt, _zeros(gt.shape), clicked) == (3, 4, True)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="pred_mask"):
        next_click(_zeros((4, 4)), _zeros((4, 5)), _zeros((4, 4)))


def test_clicker_orders_positives_before_negatives():
    gt = rect((12, 12), 0, 5, 0, 5)  # 5x5 in the corner: deepest pixel (2, 2) at distance 3
    clicker = Clicker(gt)
    first = clicker.make_next_click(_zeros(gt.shape))
    assert (first.y, first.x, first.is_positive) == (2, 2, True)
    # A 6x6 false positive in the opposite corner: deepest first pixel (8, 8) at distance 3 (border padded).
    second = clicker.make_next_click(gt | rect((12, 12), 6, 12, 6, 12))
    assert (second.y, second.x, second.is_positive) == (8, 8, False)
    third = clicker.make_next_click(_zeros(gt.shape))  # only false negatives again
    assert third.is_positive and (third.y, third.x) != (2, 2)  # (2, 2) was clicked already
    points, labels = clicker.points_and_labels()
    assert labels.tolist() == [1, 1, 0]
    assert points.tolist() == [[2.0, 2.0], [float(third.x), float(third.y)], [8.0, 8.0]]  # (x, y)
    assert clicker.clicked.sum() == 3
