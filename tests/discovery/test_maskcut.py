"""MaskCut on synthetic feature grids with an obvious cut; foreground heuristics, scores, upsampling."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unsamv2.discovery.maskcut import (
    binary_affinity,
    foreground_side,
    maskcut,
    maskcut_forward,
    maskcut_scores,
    maskcut_with_scores,
    ncut_value,
    seed_component,
    upsample_patch_mask,
)

GRID = (12, 14)


def region(y0: int, y1: int, x0: int, x1: int, hw: tuple[int, int] = GRID) -> np.ndarray:
    m = np.zeros(hw, dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def feature_grid(
    regions: list[np.ndarray], noise: float = 0.01, channels: int = 16, seed: int = 0
) -> np.ndarray:
    """Background along channel 0, region k along channel k + 1, plus small noise."""
    rng = np.random.default_rng(seed)
    f = np.zeros((*GRID, channels))
    f[..., 0] = 1.0
    for k, r in enumerate(regions):
        f[r] = 0.0
        f[r, k + 1] = 1.0
    return f + noise * rng.standard_normal(f.shape)


def test_binary_affinity_eps_trick() -> None:
    feats = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.0, 0.0]])
    a = binary_affinity(feats, tau=0.15, eps=1e-5)
    assert a[0, 1] == 1.0 and a[0, 2] == 1e-5
    assert np.all(a[3] == 1e-5)  # a zeroed (masked-out) patch is only eps-connected, itself included
    assert a[0, 0] == 1.0  # self-loops kept


def test_recovers_a_single_block_exactly() -> None:
    obj = region(3, 7, 4, 9)
    masks = maskcut(feature_grid([obj]), n_masks=1)
    assert len(masks) == 1
    assert np.array_equal(masks[0], obj)


def test_recovers_two_objects_in_discovery_order_and_disjoint() -> None:
    big, small = region(3, 7, 4, 9), region(8, 11, 1, 4)
    masks, scores = maskcut_with_scores(feature_grid([big, small]), n_masks=3)
    # The smaller side of each cut carries the largest |v| and becomes foreground: big object first here
    # because it is still smaller than the background, then the remaining object.
    assert len(masks) >= 2
    assert np.array_equal(masks[0], big)
    assert np.array_equal(masks[1], small)
    for i in range(len(masks)):
        for j in range(i):
            assert not (masks[i] & masks[j]).any()
    assert np.all(scores[:2] > 0.9)


def test_keeps_only_the_component_of_the_seed() -> None:
    # Two separate blobs with the same feature: the cut takes both, the connected component keeps one.
    a, b = region(1, 4, 1, 4), region(7, 11, 8, 13)
    masks = maskcut(feature_grid([a | b]), n_masks=1)
    assert len(masks) == 1
    assert np.array_equal(masks[0], a) or np.array_equal(masks[0], b)


def test_forward_returns_every_round_and_rejects_repeats() -> None:
    obj = region(3, 7, 4, 9)
    steps = maskcut_forward(feature_grid([obj]), n_masks=4)
    assert len(steps) == 4
    assert np.array_equal(steps[0].mask, obj) and not steps[0].rejected
    union = np.zeros(GRID, dtype=bool)
    for s in steps:
        assert not (s.mask & union).any()  # outputs are disjoint
        union |= s.mask
        assert s.eigenvector.shape == GRID
        if s.rejected:
            assert not s.mask.any()


def test_rejected_round_leaves_graph_unchanged_so_the_next_round_accepts_again() -> None:
    # One object: after it is masked out, the isolated (eps-only) patches are cut again. Round 2 is rejected
    # (IoU 1 with round 1); the "previous" mask is then empty, so round 3 accepts the same cut (its output is
    # empty after removing round 1), and round 4 is rejected again.
    obj = region(3, 7, 4, 9)
    steps = maskcut_forward(feature_grid([obj]), n_masks=4)
    assert [s.rejected for s in steps] == [False, True, False, True]
    assert all(np.array_equal(s.component, obj) for s in steps)
    assert [int(s.mask.sum()) for s in steps] == [20, 0, 0, 0]


def test_tiny_components_are_rejected() -> None:
    obj, speck = region(3, 7, 4, 9), region(10, 11, 12, 13)  # speck: 1 patch of 168 (< 1 %)
    steps = maskcut_forward(feature_grid([obj, speck]), n_masks=3)
    assert np.array_equal(steps[0].mask, obj)
    assert np.array_equal(steps[1].component, speck)  # found, then dropped for covering <= 1 % of the grid
    assert steps[1].rejected and not steps[1].mask.any()
    assert len(maskcut(feature_grid([obj, speck]), n_masks=3)) == 1  # empty rounds are dropped


def test_foreground_heuristics_on_hand_made_eigenvectors() -> None:
    hw = (4, 4)
    v = np.zeros(16)
    v[5], v[6] = 3.0, 2.0  # two interior patches well above the mean; peak |v| at 5
    fg, seed = foreground_side(v, hw)
    assert seed == 5 and fg.reshape(-1)[[5, 6]].all() and fg.sum() == 2
    # Foreground {5, 6} (mean -1, no corner), but the peak |v| is the background patch 10: reversed,
    # seed = argmax(-v) = 10.
    w = np.full(16, -1.0)
    w[[5, 6]] = 1.0
    w[10] = -5.0
    fg, seed = foreground_side(w, hw)
    assert seed == 10 and fg.sum() == 14 and not fg.reshape(-1)[[5, 6]].any()
    # Three corners in the foreground: reversed whatever the peak says.
    c = np.full(16, -1.0)
    c[[0, 3, 12]] = 5.0
    fg, seed = foreground_side(c, hw)
    assert not fg.reshape(-1)[[0, 3, 12]].any() and fg.sum() == 13
    assert fg.reshape(-1)[seed]


def test_seed_component_is_four_connected() -> None:
    v = np.full(9, -1.0)
    v[[0, 4, 8]] = [3.0, 2.0, 1.0]  # a diagonal: 8-connected but not 4-connected
    comp = seed_component(v, (3, 3))
    assert comp.reshape(-1).tolist() == [True] + [False] * 8


def test_scores_separate_clean_cuts_from_arbitrary_splits() -> None:
    obj = region(3, 7, 4, 9)
    feats = feature_grid([obj])
    checker = (np.indices(GRID).sum(axis=0) % 2).astype(bool)
    scores = maskcut_scores(feats, [obj, checker, np.zeros(GRID, bool), np.ones(GRID, bool)])
    assert scores[0] > 0.99
    assert scores[1] < 0.3  # a split of a homogeneous region has NCut ~ 1
    assert scores[2] == 0.0 and scores[3] == 0.0
    a = binary_affinity(feats.reshape(-1, feats.shape[-1]))
    assert ncut_value(a, obj.reshape(-1)) == pytest.approx(1.0 - scores[0])
    with pytest.raises(ValueError, match="patch masks"):
        maskcut_scores(feats, [np.zeros((3, 3), bool)])


def test_bad_features_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"\(h, w, C\)"):
        maskcut(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="NaN"):
        maskcut(np.full((4, 4, 2), np.nan))


@pytest.mark.parametrize(("hw", "out"), [((3, 5), (9, 15)), ((4, 4), (8, 8)), ((7, 3), (480, 270)),
                                         ((30, 40), (480, 640)), ((5, 6), (5, 6)), ((6, 9), (4, 7))])
def test_upsample_matches_torch_nearest(hw: tuple[int, int], out: tuple[int, int]) -> None:
    rng = np.random.default_rng(3)
    m = rng.random(hw) > 0.5
    ref = F.interpolate(torch.from_numpy(m)[None, None].float(), size=out, mode="nearest")[0, 0] > 0
    assert np.array_equal(upsample_patch_mask(m, out), ref.numpy())
