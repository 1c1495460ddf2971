"""The click loop on one object: clicks, feedback, thresholds, best-of-3, lock-step batching, the oracle's early stop."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.evaluate.fake_click_model import disc, model_for
from unsamv2.core.constants import GRANULARITY_GRID, MULTIMASK_MASK_THRESHOLD
from unsamv2.datasets.sample import ObjectMask
from unsamv2.evaluate.adapters import Prediction
from unsamv2.evaluate.modes import GranularityMode, parse_granularity_mode, select_oracle
from unsamv2.evaluate.sessions import SessionSpec, evaluate_object, run_sessions


def obj(gt: np.ndarray, ignore: np.ndarray | None = None) -> ObjectMask:
    return ObjectMask(gt.astype(bool), ignore, "o")


# ------------------------------------------------------------------------------------------------ loop


def test_loop_feeds_clicks_and_previous_logits():
    shape = (40, 40)
    gt = disc(shape, 20, 20, 12)
    model = model_for(shape, radius=lambda g: 4.0)
    (result,) = run_sessions(model, gt, None, [SessionSpec(0.5)], target_iou=0.99, max_clicks=3)
    assert len(result.ious) == 3 and len(model.calls) == 3
    first, second, third = model.calls
    assert first.mask_input is None  # no mask input on the first click
    assert first.points_xy.shape == (1, 1, 2) and first.labels.tolist() == [[1]]
    assert first.points_xy[0, 0].tolist() == [20.0, 20.0]  # the centre of the disc, as (x, y)
    assert second.mask_input is not None and second.mask_input.shape == (1, 256, 256)
    assert third.points_xy.shape == (1, 3, 2)
    assert first.granularities == [0.5]
    # The IoU recorded is the IoU of the thresholded prediction.
    pred = disc(shape, 20, 20, 4.0)
    assert result.ious[0] == pytest.approx((pred & gt).sum() / (pred | gt).sum())


def test_positives_are_sent_before_negatives():
    shape = (30, 30)
    gt = disc(shape, 10, 10, 3)  # small object: a big disc overshoots and needs a negative click
    model = model_for(shape, radius=lambda g: 9.0)
    run_sessions(model, gt, None, [SessionSpec(1.0)], target_iou=0.99, max_clicks=4)
    for call in model.calls:
        labels = call.labels[0].tolist()
        assert labels == sorted(labels, reverse=True)  # all 1s, then all 0s
    assert 0 in model.calls[-1].labels[0].tolist()


def test_loop_stops_at_the_target_iou():
    shape = (40, 40)
    gt = disc(shape, 20, 20, 6)
    model = model_for(shape, radius=lambda g: 6.0)
    (result,) = run_sessions(model, gt, None, [SessionSpec(0.5)], target_iou=0.9, max_clicks=20)
    assert result.reached and result.ious == [1.0] and len(model.calls) == 1


def test_best_of_3_keeps_the_candidate_closest_to_the_ground_truth():
    shape = (40, 40)
    gt = disc(shape, 20, 20, 9)
    model = model_for(shape, radius=lambda g: 6.0)  # candidates of radius 3, 6 and 9: the last one is exact
    (result,) = run_sessions(model, gt, None, [SessionSpec(None, multimask=True)], target_iou=1.01, max_clicks=2)
    assert result.ious[0] == 1.0
    assert model.calls[0].multimask
    assert np.all(model.calls[1].mask_input == 2.0)  # the low-res logits of candidate 2 were fed back


def test_first_click_of_all_granularities_is_one_batched_call():
    shape = (40, 40)
    gt = disc(shape, 20, 20, 10)
    model = model_for(shape)
    evaluate_object(model, obj(gt), [GranularityMode("oracle")], target_iou=0.999, max_clicks=3)
    assert model.calls[0].granularities == list(GRANULARITY_GRID)
    assert model.calls[0].mask_input is None
    assert all(len(call.granularities) == 10 for call in model.calls)  # nothing reached the target: lock-step


def test_ignore_pixels_do_not_count_in_the_iou():
    shape = (40, 40)
    gt = disc(shape, 20, 20, 8)
    ignore = disc(shape, 20, 20, 10) & ~disc(shape, 20, 20, 6)  # a band around the boundary, as GrabCut's
    model = model_for(shape, radius=lambda g: 7.0)
    (plain,) = run_sessions(model, gt, None, [SessionSpec(0.5)], target_iou=2, max_clicks=1)
    (banded,) = run_sessions(model, gt, ignore, [SessionSpec(0.5)], target_iou=2, max_clicks=1)
    assert plain.ious[0] < 1.0 and banded.ious[0] == 1.0


# ------------------------------------------------------------------------------------------------ thresholds

SHAPE = (20, 20)
GT = np.zeros(SHAPE, bool)
GT[5:15, 5:15] = True  # 100 pixels


def _three_candidates() -> np.ndarray:
    """Three candidate logit maps whose ranking against GT depends on the threshold (-1 or 0)."""
    logits = np.full((3, *SHAPE), -5.0, np.float32)
    # 0: +2 on the inner 6x6 of GT, -0.5 on the rest of GT. > -1: exactly GT (IoU 1); > 0: 36 pixels (IoU 0.36).
    logits[0][GT] = -0.5
    logits[0, 7:13, 7:13] = 2.0
    # 1: +2 on GT minus its last column (90 pixels): IoU 0.9 at both thresholds.
    logits[1, 5:15, 5:14] = 2.0
    # 2: -0.5 on the 300 background pixels, +2 on GT minus 5 pixels. > -1: everything (IoU 0.25); > 0: IoU 0.95.
    logits[2] = -0.5
    logits[2][GT] = 2.0
    logits[2, 14, 10:15] = -5.0
    return logits


@dataclass
class ThreeCandidateModel:
    """Answers every prompt with the same three candidates (one, the first, without ``multimask``)."""

    name: str = "three"
    logits: np.ndarray = field(default_factory=_three_candidates)
    mask_inputs: list[np.ndarray | None] = field(default_factory=list)

    def set_image(self, image: np.ndarray) -> None:
        pass

    def predict_batch(self, points_xy, labels, granularities, mask_input, multimask=False):
        self.mask_inputs.append(mask_input)
        count = 3 if multimask else 1
        low_res = np.stack([np.full((256, 256), float(c), np.float32) for c in range(count)])
        return [Prediction(self.logits[:count], low_res, np.ones(count, np.float32)) for _ in granularities]


def test_best_of_3_binarises_its_candidates_at_zero_not_at_minus_one():
    # At the evaluation threshold -1 candidate 0 would be chosen with IoU 1.0 ...
    model = ThreeCandidateModel()
    (at_minus_one,) = run_sessions(model, GT, None, [SessionSpec(None, multimask=True)], target_iou=1.01,
                                   max_clicks=2, multimask_threshold=-1.0)
    assert at_minus_one.ious[0] == 1.0
    assert np.all(model.mask_inputs[1] == 0.0)  # candidate 0's low-res logits fed back
    # ... at 0 candidate 2 is chosen, and its IoU is the one of the > 0 mask.
    model = ThreeCandidateModel()
    (at_zero,) = run_sessions(model, GT, None, [SessionSpec(None, multimask=True)], target_iou=1.01,
                              max_clicks=2, multimask_threshold=0.0)
    assert at_zero.ious[0] == pytest.approx(0.95)
    assert np.all(model.mask_inputs[1] == 2.0)
    # best_of_3 uses 0 by default; the single-mask mode 'none' keeps the evaluation threshold -1.
    assert MULTIMASK_MASK_THRESHOLD == 0.0
    evaluation = evaluate_object(ThreeCandidateModel(), obj(GT),
                                 [GranularityMode("none"), GranularityMode("best_of_3")], target_iou=0.9,
                                 max_clicks=3)
    assert evaluation.outcomes["best_of_3"].ious == pytest.approx((0.95,))
    assert evaluation.outcomes["none"].ious == (1.0,)  # candidate 0 alone, > -1: exactly GT
    (single_at_zero,) = run_sessions(ThreeCandidateModel(), GT, None, [SessionSpec(None)], target_iou=0.9,
                                     max_clicks=1, mask_threshold=0.0)
    assert single_at_zero.ious == [pytest.approx(0.36)]


# ------------------------------------------------------------------------------------------------ oracle


def test_oracle_ties_broken_by_first_click_iou_through_the_loop():
    shape = (60, 60)
    gt = disc(shape, 30, 30, 10)
    # Radii 9 and 11 both exceed IoU 0.75 with one click (0.81 and 0.83); 11 has the higher first IoU.
    radii = {0.1: 2.0, 0.2: 9.0, 0.3: 11.0}
    model = model_for(shape, radius=lambda g: radii[g])
    evaluation = evaluate_object(model, obj(gt), [GranularityMode("oracle")], target_iou=0.75, max_clicks=5,
                                 grid=(0.1, 0.2, 0.3))
    chosen = evaluation.outcomes["oracle"]
    assert chosen.granularity == 0.3 and len(chosen.ious) == 1
    assert len(model.calls) == 1  # everyone stops after click 1


def _exhaustive_oracle(model, gt, grid, target, max_clicks):
    sequences = []
    for g in grid:
        (result,) = run_sessions(model, gt, None, [SessionSpec(g)], target_iou=target, max_clicks=max_clicks)
        sequences.append(result.ious)
    best = select_oracle(sequences, target)
    return grid[best], sequences[best]


rect_strategy = st.tuples(st.integers(0, 20), st.integers(0, 20), st.integers(2, 12), st.integers(2, 12))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rects=st.lists(rect_strategy, min_size=1, max_size=3),
    radii=st.lists(st.sampled_from([1.0, 2.0, 3.0, 4.0, 6.0, 8.0]), min_size=10, max_size=10),
    target=st.sampled_from([0.5, 0.7, 0.8, 0.9]),
)
def test_oracle_early_stop_selects_exactly_what_the_exhaustive_search_selects(rects, radii, target):
    shape = (24, 24)
    gt = np.zeros(shape, bool)
    for y, x, h, w in rects:
        gt[y : y + h, x : x + w] = True
    radius_of = dict(zip(GRANULARITY_GRID, radii))
    max_clicks = 6

    pruned_model = model_for(shape, radius=lambda g: radius_of[g])
    outcome = evaluate_object(pruned_model, obj(gt), [GranularityMode("oracle")], target_iou=target,
                              max_clicks=max_clicks).outcomes["oracle"]
    full_model = model_for(shape, radius=lambda g: radius_of[g])
    g_best, ious_best = _exhaustive_oracle(full_model, gt, GRANULARITY_GRID, target, max_clicks)

    assert outcome.granularity == g_best
    assert list(outcome.ious) == ious_best
    assert pruned_model.rows <= full_model.rows


def test_sweep_and_oracle_share_one_run_and_agree():
    shape = (40, 40)
    gt = disc(shape, 20, 20, 7)
    model = model_for(shape)
    modes = [GranularityMode("oracle"), GranularityMode("best_fixed"), parse_granularity_mode("fixed:0.35")]
    evaluation = evaluate_object(model, obj(gt), modes, target_iou=0.9, max_clicks=4)
    assert set(evaluation.sweep) == set(GRANULARITY_GRID)
    best = select_oracle([evaluation.sweep[g] for g in GRANULARITY_GRID], 0.9)
    assert evaluation.outcomes["oracle"].granularity == GRANULARITY_GRID[best]
    assert evaluation.outcomes["fixed:0.35"].granularity == 0.35
    assert model.calls[0].granularities == [*GRANULARITY_GRID, 0.35]  # all first clicks in one call
