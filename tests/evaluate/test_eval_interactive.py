"""The click loop, the granularity modes and the oracle's early stop, with a deterministic fake model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fake_click_model import DiscModel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unsamv2.datasets.sample import ObjectMask, Sample
from unsamv2.evaluate.interactive import (
    GRANULARITY_GRID,
    GranularityMode,
    SessionSpec,
    clicks_to_target,
    evaluate_dataset,
    evaluate_object,
    parse_granularity_mode,
    run_sessions,
    select_best_fixed,
    select_oracle,
)


def disc(shape: tuple[int, int], cy: int, cx: int, r: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


def obj(gt: np.ndarray, ignore: np.ndarray | None = None) -> ObjectMask:
    return ObjectMask(gt.astype(bool), ignore, "o")


def model_for(shape: tuple[int, int], **kwargs) -> DiscModel:
    model = DiscModel(**kwargs)
    model.set_image(np.zeros((*shape, 3), np.uint8))
    return model


# ------------------------------------------------------------------------------------------------ modes


def test_parse_granularity_mode():
    assert parse_granularity_mode("oracle") == GranularityMode("oracle")
    assert parse_granularity_mode("fixed:0.3").label == "fixed:0.3"
    assert parse_granularity_mode("fixed:1").label == "fixed:1.0"
    assert parse_granularity_mode("best_of_3").label == "best_of_3"
    for bad in ("fixed:1.5", "fixed:abc", "fixed:0.05", "random"):
        with pytest.raises(ValueError):
            parse_granularity_mode(bad)


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


# ------------------------------------------------------------------------------------------------ oracle


def test_select_oracle_fewest_clicks_then_first_iou():
    target = 0.9
    sequences = [
        [0.5, 0.7, 0.92],  # 3 clicks
        [0.6, 0.8, 0.91],  # 3 clicks, higher first IoU -> wins
        [0.8, 0.85, 0.88, 0.95],  # 4 clicks
    ]
    assert select_oracle(sequences, target) == 1
    assert select_oracle([[0.5, 0.95], [0.5, 0.91]], target) == 0  # full tie: the first (smaller g)
    # Reaching the target at the last click beats never reaching it, whatever the first IoU.
    assert select_oracle([[0.89] * 20, [0.1] * 19 + [0.95]], target) == 1
    # Nobody reaches it: highest first IoU.
    assert select_oracle([[0.3] * 20, [0.4] * 20], target) == 1
    assert clicks_to_target([0.5, 0.9], 0.9) == 2 and clicks_to_target([0.5], 0.9) == float("inf")


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


# ------------------------------------------------------------------------------------------------ datasets


def test_select_best_fixed_lowest_mean_noc_then_first_iou():
    target = 0.9
    sweeps = [
        {0.1: [0.95], 0.2: [0.5, 0.95], 0.3: [0.96]},
        {0.1: [0.5, 0.95], 0.2: [0.95], 0.3: [0.6, 0.95]},
    ]
    # Mean NoC: 0.1 -> 1.5, 0.2 -> 1.5, 0.3 -> 1.5; mean first IoU: 0.725, 0.725, 0.78 -> 0.3.
    assert select_best_fixed(sweeps, target, grid=(0.1, 0.2, 0.3)) == 0.3
    sweeps[1][0.3] = [0.6, 0.7, 0.95]  # now 0.3 needs more clicks on average
    assert select_best_fixed(sweeps, target, grid=(0.1, 0.2, 0.3)) == 0.1  # tie 0.1/0.2 -> smaller g


def _samples(shape):
    gts = [disc(shape, 20, 20, 8), disc(shape, 10, 30, 5)]
    return [
        Sample("img0", Path("img0.png"), [ObjectMask(gts[0], None, "a"), ObjectMask(gts[1], None, "b")]),
        Sample("broken", Path("broken.png"), error="cannot read mask"),
        Sample("img1", Path("img1.png"), [ObjectMask(gts[1], None, "c")]),
        Sample("unreadable", Path("unreadable.png"), [ObjectMask(gts[0], None, "d")]),
    ]


def test_evaluate_dataset_encodes_each_image_once_and_reports_failures():
    shape = (40, 40)

    def loader(path: Path) -> np.ndarray:
        if path.name == "unreadable.png":
            raise ValueError(f"{path}: corrupt image")
        return np.zeros((*shape, 3), np.uint8)

    model = DiscModel()
    modes = [GranularityMode("oracle"), GranularityMode("best_fixed"), parse_granularity_mode("fixed:0.5")]
    result = evaluate_dataset(model, _samples(shape), modes, dataset="toy", target_iou=0.9, max_clicks=5,
                              progress=False, image_loader=loader)
    assert model.set_image_calls == 2  # img0 (two objects) and img1
    assert result.n_images == 4
    assert [f["image"] for f in result.failures] == ["broken", "unreadable"]
    assert result.best_fixed_granularity in GRANULARITY_GRID
    for mode in ("oracle", "best_fixed", "fixed:0.5"):
        assert len(result.sequences(mode)) == 3
    best_fixed = [r for r in result.records if r.mode == "best_fixed"]
    assert {r.granularity for r in best_fixed} == {result.best_fixed_granularity}
    assert result.metrics("oracle").noc90 <= result.metrics("fixed:0.5").noc90


def test_evaluate_dataset_limit_and_size_mismatch():
    shape = (40, 40)
    model = DiscModel()
    result = evaluate_dataset(model, _samples(shape), [GranularityMode("none")], dataset="toy", target_iou=0.9,
                              max_clicks=2, limit=1, progress=False,
                              image_loader=lambda p: np.zeros((41, 40, 3), np.uint8))
    assert result.n_images == 1 and not result.records
    assert "mask of object a" in result.failures[0]["error"]


def test_modes_the_model_cannot_run_are_refused_before_any_image():
    class NoGranularity(DiscModel):
        supports_granularity = False

    with pytest.raises(ValueError, match="no granularity input"):
        evaluate_dataset(NoGranularity(), iter(()), [GranularityMode("oracle")], dataset="toy", target_iou=0.9,
                         progress=False)
