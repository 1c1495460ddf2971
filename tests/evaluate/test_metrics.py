"""IoU, NoC and 1-IoU against hand-computed answers and pycocotools."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from unsamv2.evaluate.metrics import compute_metrics, iou, noc
from unsamv2.io.masks import decode_rle, encode_rle


def test_iou_hand_computed():
    gt = np.zeros((4, 4), bool)
    gt[0:2, 0:2] = True  # 4 px
    pred = np.zeros((4, 4), bool)
    pred[0:2, 1:3] = True  # 4 px, 2 shared
    assert iou(gt, pred) == pytest.approx(2 / 6)


def test_iou_excludes_ignore_pixels():
    gt = np.zeros((4, 4), bool)
    gt[0:2, 0:2] = True
    pred = np.zeros((4, 4), bool)
    pred[0:2, 0:3] = True  # one extra column: 2 false-positive pixels
    ignore = np.zeros((4, 4), bool)
    ignore[:, 2] = True  # ... both in the ignore band
    assert iou(gt, pred) == pytest.approx(4 / 6)
    assert iou(gt, pred, ignore) == 1.0


def test_iou_empty_union_counts_as_perfect():
    empty = np.zeros((3, 3), bool)
    assert iou(empty, empty) == 1.0


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), density=st.floats(0.05, 0.95))
def test_iou_agrees_with_pycocotools_on_rle_masks(seed, density):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 40)), int(rng.integers(1, 40)))
    a = rng.random(shape) < density
    b = rng.random(shape) < density
    a[0, 0] = True  # non-empty union (pycocotools returns 0 for two empty masks, we return 1)
    rle_a, rle_b = encode_rle(a), encode_rle(b)
    ours = iou(decode_rle(rle_a), decode_rle(rle_b))
    to_coco = [{"size": r["size"], "counts": r["counts"].encode()} for r in (rle_a, rle_b)]
    theirs = float(mask_utils.iou([to_coco[1]], [to_coco[0]], [0])[0, 0])
    assert ours == pytest.approx(theirs, abs=1e-12)


def test_noc_first_click_reaching_the_threshold():
    assert noc([0.5, 0.79, 0.8, 0.95], 0.8) == 3
    assert noc([0.85], 0.85) == 1
    assert noc([0.5, 0.6], 0.9) == 20  # truncated and never reached: counts the budget
    assert noc([0.5, 0.91], 0.95, max_clicks=20) == 20
    assert noc([0.1] * 19 + [0.95], 0.9) == 20  # reached at the last click: also 20
    assert noc([0.1] * 25, 0.9, max_clicks=20) == 20


def test_compute_metrics_hand_computed():
    sequences = [
        [0.95],  # NoC 1 everywhere
        [0.70, 0.86, 0.91],  # NoC80 2, NoC85 2, NoC90 3
        [0.10] * 20,  # never: 20, and a failure at 20
    ]
    m = compute_metrics(sequences, target_iou=0.90)
    assert m.noc80 == pytest.approx((1 + 2 + 20) / 3)
    assert m.noc85 == pytest.approx((1 + 2 + 20) / 3)
    assert m.noc90 == pytest.approx((1 + 3 + 20) / 3)
    assert m.iou1 == pytest.approx(100 * (0.95 + 0.70 + 0.10) / 3)
    assert (m.n_objects, m.n_fail20) == (3, 1)


def test_noc_above_the_target_is_not_observable():
    m = compute_metrics([[0.5, 0.87], [0.9]], target_iou=0.85)
    assert m.noc80 == pytest.approx(1.5) and m.noc85 == pytest.approx(1.5)
    assert math.isnan(m.noc90)


def test_failure_count_follows_ritm_ge_20_convention():
    m = compute_metrics([[0.1] * 19 + [0.95], [0.1] * 20], target_iou=0.90)
    assert m.n_fail20 == 2  # RITM's ">=20@90%" counts a target reached exactly at click 20 too


def test_compute_metrics_rejects_empty_input():
    with pytest.raises(ValueError):
        compute_metrics([], target_iou=0.9)
    with pytest.raises(ValueError):
        compute_metrics([[]], target_iou=0.9)
