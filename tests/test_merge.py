"""Tests for the conquer step's iterative merging (unsamv2.discovery.merge).

Three kinds of evidence: hand-worked known answers (masks and their order per level), equivalence with the
line-by-line upstream transcription in benchmarks/reference_merge.py on random grids (including quantised
features full of exact ties and thresholds that land exactly on similarities), and structural properties of
the hierarchy.
"""

from __future__ import annotations

import itertools
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import reference_merge
from bench_merge import structured_features
from reference_merge import reference_iterative_merge

from unsamv2.discovery import merge
from unsamv2.discovery.merge import iterative_merge

THETAS = (0.9, 0.8, 0.7, 0.6, 0.5)


def masks_from_ids(h: int, w: int, *clusters: list[int]) -> np.ndarray:
    """(k, h, w) bool masks from lists of raster patch indices."""
    out = np.zeros((len(clusters), h * w), dtype=bool)
    for k, ids in enumerate(clusters):
        out[k, ids] = True
    return out.reshape(len(clusters), h, w)


def angles_strip(degrees: list[float]) -> np.ndarray:
    """1 x n grid of 2-D unit features at the given angles, so similarities are cosines of angle gaps."""
    rad = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    return np.stack([np.cos(rad), np.sin(rad)], axis=-1)[None].astype(np.float32)


def assert_same(fast: list[np.ndarray], ref: list[np.ndarray]) -> None:
    assert len(fast) == len(ref)
    for level, (a, b) in enumerate(zip(fast, ref)):
        assert a.dtype == np.bool_ and b.dtype == np.bool_
        assert a.shape == b.shape, f"level {level}: {a.shape} != {b.shape}"
        assert np.array_equal(a, b), f"level {level}: masks or their order differ"


def assert_levels(got: list[np.ndarray], expected: list[np.ndarray]) -> None:
    assert len(got) == len(expected)
    for level, (a, b) in enumerate(zip(got, expected)):
        assert a.shape == b.shape, f"level {level}: {a.shape} != {b.shape}"
        assert np.array_equal(a, b), f"level {level}"


# ---------------------------------------------------------------------------------------------------------
# Known answers, worked by hand from upstream's rules (ties -> first-created edge; output -> walk the live
# edges in creation order and emit m then n of each (m, n) on first appearance).
# ---------------------------------------------------------------------------------------------------------


def test_two_groups_2x4_merge_into_left_and_right_blocks() -> None:
    # 0 1 | 2 3     left block feature e0, right block e1 (orthogonal): in-block similarities are exactly 1.
    # 4 5 | 6 7     Merges (ties by creation order): {0,1}=8, {2,3}=9, {4,5}=10, {6,7}=11, left=12, right=13;
    # the only live edge left is (12, 13), so every level emits left then right.
    f = np.zeros((2, 4, 3), dtype=np.float32)
    f[:, :2, 0] = 1.0
    f[:, 2:, 1] = 1.0
    expected = masks_from_ids(2, 4, [0, 1, 4, 5], [2, 3, 6, 7])
    for impl in (iterative_merge, reference_iterative_merge):
        assert_levels(impl(f, THETAS, 4), [expected] * 5)


def test_whole_grid_cluster_has_no_neighbour_and_is_not_output() -> None:
    # Everything merges at 0.9 into one 6-patch cluster: it is >= min_size but appears in no edge.
    f = np.ones((2, 3, 4), dtype=np.float32)
    for impl in (iterative_merge, reference_iterative_merge):
        out = impl(f, THETAS, 4)
        assert [m.shape for m in out] == [(0, 2, 3)] * 5


def test_min_size_filters_small_clusters_and_order_is_oldest_first() -> None:
    # 0 1 2    left 2x2 block (feature e0) and right column (e1). Merges: {0,1}=6, {3,4}=7, right {2,5}=8,
    # 3 4 5    left {6,7}=9; the live edge is (8, 9): the right column (older id) is emitted first.
    f = np.zeros((2, 3, 2), dtype=np.float32)
    f[:, :2, 0] = 1.0
    f[:, 2, 1] = 1.0
    left, right = [0, 1, 3, 4], [2, 5]
    for impl in (iterative_merge, reference_iterative_merge):
        assert_levels(impl(f, THETAS, 4), [masks_from_ids(2, 3, left)] * 5)
        assert_levels(impl(f, THETAS, 2), [masks_from_ids(2, 3, right, left)] * 5)
        assert_levels(impl(f, THETAS, 5), [np.zeros((0, 2, 3), dtype=bool)] * 5)


def test_thresholds_are_crossed_with_recomputed_similarities() -> None:
    # Angles 0, 10, 50, 110 degrees: sims cos10=.985, cos40=.766, cos60=.5.
    # 0.9: merge {0,1} (=4, mean at 5 deg); its recomputed sim to patch 2 is cos45=.707 (< 0.8, >= 0.7).
    # 0.7: merge {0,1,2} (=5, mean at ~19.7 deg); sim to patch 3 is cos(90.3 deg) < 0 -> nothing more.
    # Live edges after 0.9: (2,3) then (2,4) -> emit 2, 3, 4; after 0.7: (3,5) -> emit 3, 5.
    f = angles_strip([0.0, 10.0, 50.0, 110.0])
    after_09 = masks_from_ids(1, 4, [2], [3], [0, 1])
    after_07 = masks_from_ids(1, 4, [3], [0, 1, 2])
    for impl in (iterative_merge, reference_iterative_merge):
        assert_levels(impl(f, THETAS, 1), [after_09, after_09, after_07, after_07, after_07])
        big = [masks_from_ids(1, 4, [0, 1])] * 2 + [masks_from_ids(1, 4, [0, 1, 2])] * 3
        assert_levels(impl(f, THETAS, 2), big)


def test_tie_goes_to_the_first_created_edge() -> None:
    # Angles -30, 0, +30: sim(0,1) == sim(1,2) exactly. Upstream's dict max picks (0,1), created first; the
    # merged mean (-15 deg) has sim cos45 < 0.85 to patch 2, so the partition is {0,1} | {2}, never {0} | {1,2}.
    f = angles_strip([-30.0, 0.0, 30.0])
    expected = [masks_from_ids(1, 3, [2], [0, 1])]
    for impl in (iterative_merge, reference_iterative_merge):
        assert_levels(impl(f, (0.85,), 1), expected)


def test_tie_order_decides_which_cluster_is_emitted_first() -> None:
    # A A B B: (0,1) and (2,3) tie at 1.0; (0,1) was created first, so {0,1} gets the older id and comes first.
    f = np.zeros((1, 4, 2), dtype=np.float32)
    f[0, :2, 0] = 1.0
    f[0, 2:, 1] = 1.0
    for impl in (iterative_merge, reference_iterative_merge):
        assert_levels(impl(f, (0.9,), 2), [masks_from_ids(1, 4, [0, 1], [2, 3])])


def test_threshold_equal_to_a_similarity_merges() -> None:
    # sim = 1.0 exactly; upstream stops only when max < theta, so theta = 1.0 still merges.
    f = np.zeros((1, 3, 2), dtype=np.float32)
    f[0, :2, 0] = 1.0
    f[0, 2, 1] = 1.0
    for impl in (iterative_merge, reference_iterative_merge):
        assert_levels(impl(f, (1.0,), 2), [masks_from_ids(1, 3, [0, 1])])
        assert_levels(impl(f, (np.nextafter(1.0, 2.0),), 1), [masks_from_ids(1, 3, [0], [1], [2])])


def test_degenerate_inputs() -> None:
    one = np.ones((1, 1, 5), dtype=np.float32)
    assert [m.shape for m in iterative_merge(one, THETAS, 1)] == [(0, 1, 1)] * 5
    assert iterative_merge(np.ones((3, 3, 2)), (), 4) == []
    zeros = np.zeros((2, 2, 3), dtype=np.float32)  # all similarities 0: nothing merges
    assert_levels(iterative_merge(zeros, (0.5,), 1), [masks_from_ids(2, 2, [0], [1], [2], [3])])
    with pytest.raises(ValueError, match="shape"):
        iterative_merge(np.ones((4, 4)), THETAS, 4)
    with pytest.raises(ValueError, match="NaN"):
        iterative_merge(np.full((2, 2, 2), np.nan), THETAS, 4)
    with pytest.raises(TypeError, match="min_size"):
        iterative_merge(np.ones((2, 2, 2)), THETAS, 2.5)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------
# Equivalence with the upstream transcription.
# ---------------------------------------------------------------------------------------------------------

THRESHOLD_VALUES = st.one_of(
    st.sampled_from([1.0, 0.9, 0.8, 0.75, 0.7, 0.6, 0.5, 0.0, -0.5, math.sqrt(0.5), 1 / 3]),
    st.floats(-1.0, 1.0, allow_nan=False),
)


@st.composite
def grids(draw: st.DrawFn) -> np.ndarray:
    h = draw(st.integers(1, 6))
    w = draw(st.integers(1, 6))
    c = draw(st.integers(1, 5))
    kind = draw(st.sampled_from(["signed-int", "nonneg-int", "float", "float64"]))
    shape = (h, w, c)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if kind == "signed-int":  # many exact ties, zero vectors, opposite vectors
        return rng.integers(-2, 3, size=shape).astype(np.float32)
    if kind == "nonneg-int":  # mostly high similarities: long merge chains, big clusters
        return rng.integers(0, 3, size=shape).astype(np.float32)
    if kind == "float":
        return rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)
    return rng.uniform(0.0, 1.0, size=shape)  # float64 input: float64 feature sums


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    features=grids(),
    thetas=st.lists(THRESHOLD_VALUES, min_size=0, max_size=6),
    min_size=st.integers(1, 5),
)
def test_fast_equals_reference_on_random_grids(
    features: np.ndarray, thetas: list[float], min_size: int
) -> None:
    assert_same(
        iterative_merge(features, thetas, min_size), reference_iterative_merge(features, thetas, min_size)
    )


def test_fast_equals_reference_on_structured_and_uniform_features() -> None:
    structured = structured_features(20, 48, seed=3)
    uniform = np.random.default_rng(5).random((14, 14, 24)).astype(np.float32)  # one cluster eats the grid
    for feats in (structured, uniform):
        fast = iterative_merge(feats, THETAS, 4)
        assert_same(fast, reference_iterative_merge(feats, THETAS, 4))
    assert all(len(level) > 0 for level in iterative_merge(structured, THETAS, 4)), "merges at every level"


def test_chunked_neighbour_dots_give_identical_results(monkeypatch: pytest.MonkeyPatch) -> None:
    # A tiny chunk forces the chunked gather path that high-degree clusters take on large grids.
    monkeypatch.setattr(merge, "_GATHER_CHUNK", 3)
    feats = np.random.default_rng(2).random((9, 9, 6)).astype(np.float32)
    assert_same(iterative_merge(feats, THETAS, 2), reference_iterative_merge(feats, THETAS, 2))


def test_batched_normalisation_matches_one_vector_at_a_time() -> None:
    # The fast code normalises all patches at once; the reference one vector at a time. Equality of the
    # quantised unit vectors is what makes their similarities (and so ties) identical.
    rng = np.random.default_rng(0)
    for c in (1, 2, 7, 8, 9, 100, 768):
        x = (rng.standard_normal((50, c)) * rng.uniform(1e-3, 1e3, size=(50, 1))).astype(np.float32)
        x[3] = 0.0
        batched = np.empty(x.shape, dtype=np.float64)
        merge._quantized_unit_rows(x, batched)
        one_by_one = np.stack([reference_merge._normalize(row) for row in x])
        assert np.array_equal(batched, one_by_one), f"C={c}"


def test_exact_numerics_agree_with_upstream_torch_numerics() -> None:
    # Our order-independent numerics differ from upstream's float32 torch.dot only in the last bits; on
    # features without near-ties the masks are the same.
    feats = structured_features(12, 32, seed=1)
    assert_same(
        reference_iterative_merge(feats, THETAS, 4, numerics="torch"),
        reference_iterative_merge(feats, THETAS, 4),
    )


# ---------------------------------------------------------------------------------------------------------
# Structural properties of the output hierarchy.
# ---------------------------------------------------------------------------------------------------------


def check_hierarchy(levels: list[np.ndarray], min_size: int) -> None:
    for masks in levels:
        assert masks.dtype == np.bool_
        assert (masks.sum(axis=0) <= 1).all(), "masks of one level overlap"
        for m in masks:
            assert m.sum() >= min_size
            assert not m.all(), "a cluster covering the grid has no neighbour and must not be output"
            assert ndimage.label(m)[1] == 1, "a cluster is a union of adjacent patches: 4-connected"
    for fine, coarse in itertools.pairwise(levels):
        # Clusters only grow: each cluster of a level lies inside one cluster of the next level (if that one
        # is output) and is disjoint from all the others.
        for f in fine:
            overlaps = [c for c in coarse if (f & c).any()]
            assert len(overlaps) <= 1
            assert all((f <= c).all() for c in overlaps)


@settings(max_examples=120, deadline=None)
@given(features=grids(), min_size=st.integers(1, 4))
def test_hierarchy_properties_on_random_grids(features: np.ndarray, min_size: int) -> None:
    check_hierarchy(iterative_merge(features, THETAS, min_size), min_size)


def test_hierarchy_properties_on_structured_features() -> None:
    levels = iterative_merge(structured_features(24, 32, seed=4), THETAS, 4)
    check_hierarchy(levels, 4)
    assert sum(len(m) for m in levels) > 10
