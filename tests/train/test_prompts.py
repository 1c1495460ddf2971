"""Click simulation: first click, stock-uniform and GraCo-style corrections, batched torch wrappers."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from unsamv2.core.clicks import Click
from unsamv2.train.prompts import (
    correction_click,
    distance_to_boundary,
    first_click,
    graco_correction,
    sample_correction_points,
    sample_first_points,
    uniform_correction,
)

shapes = st.tuples(st.integers(1, 12), st.integers(1, 12))
seeds = st.integers(0, 2**32 - 1)


@st.composite
def mask_pairs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    shape = draw(shapes)
    gt = draw(arrays(np.bool_, shape))
    pred = draw(arrays(np.bool_, shape))
    return gt, pred


def _reference_dt(region: np.ndarray) -> np.ndarray:
    """The GraCo reference's distance map, written out independently: pad 1, DIST_L2 with a 5×5 mask, unpad."""
    padded = np.zeros((region.shape[0] + 2, region.shape[1] + 2), np.uint8)
    padded[1:-1, 1:-1] = region
    return cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]


@settings(max_examples=60, deadline=None)
@given(mask=arrays(np.bool_, shapes), seed=seeds)
def test_first_click_is_inside_the_mask(mask: np.ndarray, seed: int):
    rng = np.random.default_rng(seed)
    if not mask.any():
        with pytest.raises(ValueError, match="empty"):
            first_click(mask, rng)
        return
    y, x = first_click(mask, rng)
    assert mask[y, x]


def _check_no_error_click(click: Click, gt: np.ndarray) -> None:
    assert not click.is_positive
    if (~gt).any():
        assert not gt[click.y, click.x]  # a background pixel
    else:
        assert (click.y, click.x) == (0, 0)  # gt covers everything: the references' (0, 0)


@settings(max_examples=80, deadline=None)
@given(pair=mask_pairs(), seed=seeds)
def test_uniform_correction_lies_on_an_error_with_the_right_label(pair, seed: int):
    gt, pred = pair
    click = uniform_correction(gt, pred, np.random.default_rng(seed))
    fn, fp = gt & ~pred, ~gt & pred
    if not (fn | fp).any():
        _check_no_error_click(click, gt)
        return
    assert fn[click.y, click.x] or fp[click.y, click.x]
    assert click.is_positive == bool(fn[click.y, click.x])  # FN → positive, FP → negative


@settings(max_examples=80, deadline=None)
@given(pair=mask_pairs(), seed=seeds)
def test_graco_correction_picks_the_deeper_error_and_its_inner_half(pair, seed: int):
    gt, pred = pair
    click = graco_correction(gt, pred, np.random.default_rng(seed))
    fn, fp = gt & ~pred, ~gt & pred
    if not (fn | fp).any():
        _check_no_error_click(click, gt)
        return
    dt_fn, dt_fp = _reference_dt(fn), _reference_dt(fp)
    positive = dt_fn.max() > dt_fp.max()  # strict: equal depths go to FP
    assert click.is_positive == positive
    chosen, dt = (fn, dt_fn) if positive else (fp, dt_fp)
    assert chosen[click.y, click.x]
    assert dt[click.y, click.x] > dt.max() / 2


def test_distance_to_boundary_treats_the_image_border_as_boundary():
    region = np.ones((5, 5), bool)
    dt = distance_to_boundary(region)
    assert dt[0, 0] == 1 and dt[2, 2] == 3  # border pixel one step from the pad, centre three steps
    np.testing.assert_array_equal(dt, _reference_dt(region))


def test_uniform_correction_draws_each_error_pixel_equally_often():
    # 3 FN pixels and 1 FP pixel: every error pixel has probability 1/4, so P(positive) = 3/4.
    gt = np.zeros((4, 4), bool)
    gt[0, :3] = True
    pred = np.zeros((4, 4), bool)
    pred[3, 3] = True
    rng = np.random.default_rng(0)
    clicks = [uniform_correction(gt, pred, rng) for _ in range(4000)]
    counts: dict[tuple[int, int], int] = {}
    for c in clicks:
        counts[(c.y, c.x)] = counts.get((c.y, c.x), 0) + 1
    assert set(counts) == {(0, 0), (0, 1), (0, 2), (3, 3)}
    for n in counts.values():
        assert 850 < n < 1150  # 1000 expected, sd ≈ 27
    assert all(c.is_positive == (c.y == 0) for c in clicks)


def test_graco_known_answers():
    rng = np.random.default_rng(1)
    # A 20×20 object, prediction = its left half: the right half is a 20×10 FN band (max depth 5).
    gt = np.zeros((30, 30), bool)
    gt[5:25, 5:25] = True
    pred = np.zeros_like(gt)
    pred[5:25, 5:15] = True
    seen = set()
    for _ in range(300):
        c = graco_correction(gt, pred, rng)
        # Positive, inside the band, more than 2.5 px (half of the depth 5) from its border: the band's
        # columns 15..24 shrink to 17..22 and its rows 5..24 to 7..22.
        assert c.is_positive and 17 <= c.x <= 22 and 7 <= c.y <= 22
        seen.add((c.y, c.x))
    assert len(seen) > 40  # uniform over the inner region (96 pixels), not a single centre point
    # Everything predicted around a small object: no FN, a deep FP ring → a negative click on the FP ring.
    gt_small = np.zeros_like(gt)
    gt_small[10:20, 10:20] = True
    everything = np.ones_like(gt)
    c = graco_correction(gt_small, everything, rng)
    assert not c.is_positive and not gt_small[c.y, c.x]
    # Tie: one FN pixel and one FP pixel, both of depth 1 → the FP (negative) wins, as the reference.
    gt3 = np.zeros((5, 5), bool)
    gt3[1, 1] = True
    pred3 = np.zeros((5, 5), bool)
    pred3[3, 3] = True
    assert graco_correction(gt3, pred3, rng) == Click(3, 3, False)


def test_no_error_gives_a_background_negative_for_both_samplers():
    gt = np.zeros((6, 6), bool)
    gt[2:4, 2:4] = True
    rng = np.random.default_rng(0)
    for method in ("uniform", "graco"):
        for _ in range(20):
            c = correction_click(gt, gt.copy(), rng, method)
            assert not c.is_positive and not gt[c.y, c.x]
        full = np.ones((3, 3), bool)
        assert correction_click(full, full.copy(), rng, method) == Click(0, 0, False)
    with pytest.raises(ValueError, match="unknown correction method"):
        correction_click(gt, gt, rng, "center")  # type: ignore[arg-type]


def test_masks_must_be_bool_and_of_equal_shape():
    rng = np.random.default_rng(0)
    with pytest.raises(TypeError, match="bool"):
        uniform_correction(np.zeros((3, 3), np.uint8), np.zeros((3, 3), bool), rng)
    with pytest.raises(ValueError, match="same shape"):
        graco_correction(np.zeros((3, 3), bool), np.zeros((3, 4), bool), rng)


def test_batched_points_match_the_scalar_samplers_and_sam2_conventions():
    gen = np.random.default_rng(3)
    gt = torch.from_numpy(gen.random((4, 9, 11)) > 0.6)
    gt[3] = False  # an empty ground truth (e.g. pushed out by augmentation), last so the replay stays in step
    pred = torch.from_numpy(gen.random((4, 9, 11)) > 0.5)

    points, labels = sample_first_points(gt, np.random.default_rng(7))
    assert points.shape == (4, 1, 2) and points.dtype == torch.float32
    assert labels.shape == (4, 1) and labels.dtype == torch.int32
    rng = np.random.default_rng(7)
    for i in range(4):
        x, y = int(points[i, 0, 0]), int(points[i, 0, 1])  # SAM-2 order: (x, y)
        if i == 3:
            assert labels[i, 0] == 0 and not gt[i, y, x]  # stock SAM-2: negative background click
            continue
        assert labels[i, 0] == 1 and gt[i, y, x]
        assert first_click(gt[i].numpy(), rng) == (y, x)

    for method in ("uniform", "graco"):
        points, labels = sample_correction_points(gt, pred, np.random.default_rng(11), method)
        replay = np.random.default_rng(11)
        for i in range(4):
            expected = correction_click(gt[i].numpy(), pred[i].numpy(), replay, method)
            x, y = int(points[i, 0, 0]), int(points[i, 0, 1])
            assert (x, y) == (expected.x, expected.y)
            assert int(labels[i, 0]) == int(expected.is_positive)
            # Every mask here has errors: a positive click lies on a false negative, a negative one on a false
            # positive.
            fn, fp = gt[i] & ~pred[i], ~gt[i] & pred[i]
            assert bool(fn[y, x]) if labels[i, 0] == 1 else bool(fp[y, x])
    with pytest.raises(ValueError, match="unknown correction method"):
        sample_correction_points(gt, pred, np.random.default_rng(0), "center")  # type: ignore[arg-type]
    empty = torch.zeros((0, 5, 5), dtype=torch.bool)
    points, labels = sample_correction_points(empty, empty, np.random.default_rng(0))
    assert points.shape == (0, 1, 2) and labels.shape == (0, 1)
