"""Tests for the conquer step's iterative merging (unsamv2.discovery.merge).

Four kinds of evidence: hand-worked known answers (masks and their order per level), equivalence with the
line-by-line upstream transcription in tests/reference/reference_merge.py on random grids (including quantised
features full of exact ties and thresholds that land exactly on similarities), for both the compiled and the
Python merge loop, structural properties of the hierarchy, and checks of the compiled loop's parts against
what they emulate (CPython's sets, numpy's float32 reductions).
"""

from __future__ import annotations

import itertools
import math
import sys
from collections.abc import Callable, Sequence

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage

from tests.reference import reference_merge
from tests.reference.merge_features import structured_features
from tests.reference.reference_merge import reference_iterative_merge
from unsamv2.discovery import merge, merge_kernel, merge_numerics, merge_sets
from unsamv2.discovery.merge import iterative_merge

THETAS = (0.9, 0.8, 0.7, 0.6, 0.5)
# The compiled loop runs only on the interpreters its set emulation was verified on (merge.py).
COMPILED_LOOP = sys.implementation.name == "cpython" and sys.version_info[:2] in merge._SET_ORDER_VERIFIED


Loop = Callable[[np.ndarray, Sequence[float], int], list[np.ndarray]]


def python_loop(features: np.ndarray, thetas: Sequence[float], min_size: int) -> list[np.ndarray]:
    """iterative_merge forced onto the pure-Python loop."""
    feats, _ = merge._validate(features, min_size)
    return merge._iterative_merge_python(feats, thetas, min_size)


def compiled_loop(features: np.ndarray, thetas: Sequence[float], min_size: int) -> list[np.ndarray]:
    """iterative_merge forced onto the compiled loop."""
    feats, bound = merge._validate(features, min_size)
    assert merge._compiled_loop_usable(feats, bound)
    return merge._iterative_merge_compiled(feats, thetas, min_size)


LOOPS = pytest.mark.parametrize(
    "loop",
    [
        pytest.param(python_loop, id="python"),
        pytest.param(
            compiled_loop,
            id="compiled",
            marks=pytest.mark.skipif(not COMPILED_LOOP, reason="set emulation unverified on this Python"),
        ),
    ],
)
# Known answers are checked on the public function, both loops and the transcription.
IMPLEMENTATIONS = (iterative_merge, python_loop, reference_iterative_merge)


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
    for impl in IMPLEMENTATIONS:
        assert_levels(impl(f, THETAS, 4), [expected] * 5)


def test_whole_grid_cluster_has_no_neighbour_and_is_not_output() -> None:
    # Everything merges at 0.9 into one 6-patch cluster: it is >= min_size but appears in no edge.
    f = np.ones((2, 3, 4), dtype=np.float32)
    for impl in IMPLEMENTATIONS:
        out = impl(f, THETAS, 4)
        assert [m.shape for m in out] == [(0, 2, 3)] * 5


def test_min_size_filters_small_clusters_and_order_is_oldest_first() -> None:
    # 0 1 2    left 2x2 block (feature e0) and right column (e1). Merges: {0,1}=6, {3,4}=7, right {2,5}=8,
    # 3 4 5    left {6,7}=9; the live edge is (8, 9): the right column (older id) is emitted first.
    f = np.zeros((2, 3, 2), dtype=np.float32)
    f[:, :2, 0] = 1.0
    f[:, 2, 1] = 1.0
    left, right = [0, 1, 3, 4], [2, 5]
    for impl in IMPLEMENTATIONS:
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
    for impl in IMPLEMENTATIONS:
        assert_levels(impl(f, THETAS, 1), [after_09, after_09, after_07, after_07, after_07])
        big = [masks_from_ids(1, 4, [0, 1])] * 2 + [masks_from_ids(1, 4, [0, 1, 2])] * 3
        assert_levels(impl(f, THETAS, 2), big)


def test_tie_goes_to_the_first_created_edge() -> None:
    # Angles -30, 0, +30: sim(0,1) == sim(1,2) exactly. Upstream's dict max picks (0,1), created first; the
    # merged mean (-15 deg) has sim cos45 < 0.85 to patch 2, so the partition is {0,1} | {2}, never {0} | {1,2}.
    f = angles_strip([-30.0, 0.0, 30.0])
    expected = [masks_from_ids(1, 3, [2], [0, 1])]
    for impl in IMPLEMENTATIONS:
        assert_levels(impl(f, (0.85,), 1), expected)


def test_tie_order_decides_which_cluster_is_emitted_first() -> None:
    # A A B B: (0,1) and (2,3) tie at 1.0; (0,1) was created first, so {0,1} gets the older id and comes first.
    f = np.zeros((1, 4, 2), dtype=np.float32)
    f[0, :2, 0] = 1.0
    f[0, 2:, 1] = 1.0
    for impl in IMPLEMENTATIONS:
        assert_levels(impl(f, (0.9,), 2), [masks_from_ids(1, 4, [0, 1], [2, 3])])


def test_threshold_equal_to_a_similarity_merges() -> None:
    # sim = 1.0 exactly; upstream stops only when max < theta, so theta = 1.0 still merges.
    f = np.zeros((1, 3, 2), dtype=np.float32)
    f[0, :2, 0] = 1.0
    f[0, 2, 1] = 1.0
    for impl in IMPLEMENTATIONS:
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


@LOOPS
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    features=grids(),
    thetas=st.lists(THRESHOLD_VALUES, min_size=0, max_size=6),
    min_size=st.integers(1, 5),
)
def test_fast_equals_reference_on_random_grids(
    loop: Loop, features: np.ndarray, thetas: list[float], min_size: int
) -> None:
    assert_same(loop(features, thetas, min_size), reference_iterative_merge(features, thetas, min_size))


@LOOPS
def test_fast_equals_reference_on_structured_and_uniform_features(loop: Loop) -> None:
    structured = structured_features(20, 48, seed=3)
    uniform = np.random.default_rng(5).random((14, 14, 24)).astype(np.float32)  # one cluster eats the grid
    for feats in (structured, uniform):
        assert_same(loop(feats, THETAS, 4), reference_iterative_merge(feats, THETAS, 4))
    assert all(len(level) > 0 for level in loop(structured, THETAS, 4)), "merges at every level"


def test_chunked_neighbour_dots_give_identical_results(monkeypatch: pytest.MonkeyPatch) -> None:
    # A tiny chunk forces the Python loop's chunked gather path that high-degree clusters take on large grids.
    monkeypatch.setattr(merge_numerics, "GATHER_CHUNK", 3)
    feats = np.random.default_rng(2).random((9, 9, 6)).astype(np.float32)
    assert_same(python_loop(feats, THETAS, 2), reference_iterative_merge(feats, THETAS, 2))


def test_batched_normalisation_matches_one_vector_at_a_time() -> None:
    # The fast code normalises all patches at once; the reference one vector at a time. Equality of the
    # quantised unit vectors is what makes their similarities (and so ties) identical.
    rng = np.random.default_rng(0)
    for c in (1, 2, 7, 8, 9, 100, 768):
        x = (rng.standard_normal((50, c)) * rng.uniform(1e-3, 1e3, size=(50, 1))).astype(np.float32)
        x[3] = 0.0
        batched = np.empty(x.shape, dtype=np.float64)
        merge_numerics.quantized_unit_rows(x, batched)
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


# ---------------------------------------------------------------------------------------------------------
# The compiled loop's parts (unsamv2.discovery.merge_sets, merge_kernel) against what they emulate. The set test is
# what justifies merge._SET_ORDER_VERIFIED: run it on a new Python before adding that version there.
# ---------------------------------------------------------------------------------------------------------


class EmulatedSets:
    """Sets numbered 0..n-1 in a merge_sets store, driven like Python sets."""

    def __init__(self, n_sets: int) -> None:
        self.store = merge_sets.new_set_store(n_sets, 8)  # tiny: the store must grow as it goes

    def _room(self, need: int) -> None:
        self.store = merge_sets.reserve(self.store, need)

    def length(self, s: int) -> int:
        return int(merge_sets.set_len(self.store, s))

    def keys(self, s: int) -> list[int]:
        start, end = merge_sets.set_slots(self.store, s)
        return [int(k) for k in self.store[start:end] if k >= 0]  # iteration (slot) order

    def table_size(self, s: int) -> int:
        start, end = merge_sets.set_slots(self.store, s)
        return int(end - start)

    def new(self, s: int) -> None:
        self._room(merge_sets.MINSIZE)
        merge_sets.set_init(self.store, s)

    def add(self, s: int, key: int) -> None:
        self._room(merge_sets.add_room(self.length(s)))
        if merge_sets.add_entry(self.store, s, key):  # CPython's set_add_entry: add, then grow if needed
            merge_sets.resize_after_add(self.store, s)

    def discard(self, s: int, key: int) -> None:
        merge_sets.set_discard(self.store, s, key)

    def copy(self, dst: int, src: int) -> None:
        self._room(merge_sets.union_difference_room(self.length(src), 0))
        merge_sets.set_copy(self.store, dst, src)

    def union(self, dst: int, a: int, b: int) -> None:
        self._room(merge_sets.union_difference_room(self.length(a), self.length(b)))
        merge_sets.set_union(self.store, dst, a, b)

    def difference(self, dst: int, src: int, keys: list[int]) -> None:
        self._room(merge_sets.union_difference_room(self.length(src), 0))
        merge_sets.set_difference(self.store, dst, src, np.array(keys, dtype=np.int64))

    def release(self, s: int) -> None:
        merge_sets.set_release(self.store, s)


def table_size(real: set[int]) -> int:
    """Slots of a real set's hash table (0 while it uses the 8-slot table inside the set object)."""
    return (sys.getsizeof(real) - sys.getsizeof(set())) // 16


# Keys: mostly small ints, which collide in small tables (so probes meet dummies, whose reuse rule matters);
# cluster ids run to 2 * h * w; large keys exercise the perturbed probing.
SET_KEYS = st.one_of(st.integers(0, 24), st.integers(0, 24), st.integers(0, 9000), st.integers(0, 2**40))
SET_OPS = st.lists(
    st.tuples(
        st.sampled_from(["add"] * 4 + ["discard"] * 3 + ["union_minus", "union", "difference", "copy"]),
        st.integers(0, 2**31),
        st.integers(0, 2**31),
        SET_KEYS,
        st.lists(SET_KEYS, max_size=6),
    ),
    max_size=200,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=SET_OPS)
def test_set_emulation_matches_cpython_sets(
    ops: list[tuple[str, int, int, int, list[int]]],
) -> None:
    # Real sets and emulated ones go through the same history; after every operation the changed set must
    # iterate in the same order and have the same table size (which steers the order of later operations).
    reals: list[set[int]] = [set(), set()]
    emulated = EmulatedSets(len(ops) + 3)
    emulated.new(0)
    emulated.new(1)
    scratch = len(ops) + 2
    for op, a, b, key, keys in ops:
        s, t = a % len(reals), b % len(reals)
        if op == "add":
            reals[s].add(key)
            emulated.add(s, key)
        elif op == "discard":  # mostly keys that are there
            if reals[s] and b % 4:
                key = list(reals[s])[b % len(reals[s])]
            reals[s].discard(key)
            emulated.discard(s, key)
        elif op == "union_minus" and s != t and len(reals[s] | reals[t]) >= 2:
            # What a merge does: nbrs[i].union(nbrs[j]).difference({i, j}).
            x, y = sorted(reals[s] | reals[t])[key % len(reals[s] | reals[t])], key + 1
            if b % 3:
                pool = sorted((reals[s] | reals[t]) - {x})
                y = pool[b % len(pool)]
            reals.append(reals[s].union(reals[t]).difference({x, y}))
            emulated.union(scratch, s, t)
            emulated.difference(len(reals) - 1, scratch, [x, y])
            emulated.release(scratch)
        elif op == "union" and s != t:
            reals.append(reals[s].union(reals[t]))
            emulated.union(len(reals) - 1, s, t)
        elif op == "difference":
            distinct = list(dict.fromkeys(keys + ([key] if b % 2 else [])))
            reals.append(reals[s].difference(set(distinct)))
            emulated.difference(len(reals) - 1, s, distinct)
        elif op == "copy":
            reals.append(reals[s].copy())
            emulated.copy(len(reals) - 1, s)
        else:
            continue
        changed = s if op in ("add", "discard") else len(reals) - 1
        assert emulated.keys(changed) == list(reals[changed]), f"{op}: iteration order differs"
        assert emulated.length(changed) == len(reals[changed])
        expected_size = table_size(reals[changed])
        assert emulated.table_size(changed) == (expected_size or merge_sets.MINSIZE)
    for k, real in enumerate(reals):
        assert emulated.keys(k) == list(real)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    key_range=st.sampled_from([12, 24, 64, 600, 2**40]),
    n_ops=st.integers(50, 400),
)
def test_set_emulation_matches_cpython_sets_on_long_random_histories(
    seed: int, key_range: int, n_ops: int
) -> None:
    # Long add/discard churn on a few sets (plus unions, differences and copies): the dummy slots this leaves
    # in small, crowded tables are where CPython's reuse rule (the last dummy before an unused slot) shows.
    rng = np.random.default_rng(seed)
    reals: list[set[int]] = [set(), set(), set()]
    emulated = EmulatedSets(n_ops + 4)
    for k in range(3):
        emulated.new(k)
    scratch = n_ops + 3
    for _ in range(n_ops):
        s = int(rng.integers(len(reals)))
        t = int(rng.integers(len(reals)))
        key = int(rng.integers(key_range))
        draw = rng.random()
        if draw < 0.45:
            reals[s].add(key)
            emulated.add(s, key)
            changed = s
        elif draw < 0.8:
            if reals[s] and rng.random() < 0.8:
                key = list(reals[s])[int(rng.integers(len(reals[s])))]
            reals[s].discard(key)
            emulated.discard(s, key)
            changed = s
        elif draw < 0.9 and s != t and len(reals[s] | reals[t]) >= 2:
            x, y = (int(k) for k in rng.choice(sorted(reals[s] | reals[t]), size=2, replace=False))
            reals.append(reals[s].union(reals[t]).difference({x, y}))
            emulated.union(scratch, s, t)
            emulated.difference(len(reals) - 1, scratch, [x, y])
            emulated.release(scratch)
            changed = len(reals) - 1
        elif draw < 0.95:
            keys = [int(k) for k in rng.choice(key_range, size=int(rng.integers(5)), replace=False)]
            reals.append(reals[s].difference(set(keys)))
            emulated.difference(len(reals) - 1, s, keys)
            changed = len(reals) - 1
        else:
            reals.append(reals[s].copy())
            emulated.copy(len(reals) - 1, s)
            changed = len(reals) - 1
        assert emulated.keys(changed) == list(reals[changed])
        assert emulated.table_size(changed) == (table_size(reals[changed]) or merge_sets.MINSIZE)


def test_set_emulation_follows_a_merge_history() -> None:
    # Long histories as the merge loop makes them, beyond what the property test reaches: grid neighbour sets,
    # random adjacent pairs merged until one cluster is left, every neighbour set compared after each merge.
    h = w = 24
    n = h * w
    reals: list[set[int] | None] = [set() for _ in range(n)] + [None] * n
    emulated = EmulatedSets(2 * n + 1)
    for c in range(n):
        emulated.new(c)
    for c in range(n):
        for other, ok in ((c - 1, c % w != 0), (c - w, c >= w)):
            if ok:
                for s, key in ((c, other), (other, c)):
                    reals[s].add(key)  # type: ignore[union-attr]
                    emulated.add(s, key)
    rng = np.random.default_rng(0)
    for new in range(n, 2 * n - 1):
        alive = [k for k, r in enumerate(reals) if r]
        i = alive[int(rng.integers(len(alive)))]
        j = sorted(reals[i])[int(rng.integers(len(reals[i])))]  # type: ignore[arg-type]
        merged = reals[i].union(reals[j]).difference({i, j})  # type: ignore[union-attr]
        emulated.union(2 * n, i, j)
        emulated.difference(new, 2 * n, [i, j])
        emulated.release(2 * n)
        assert emulated.keys(new) == list(merged)
        for nb in merged:
            for s_op, key in (("discard", i), ("discard", j), ("add", new)):
                getattr(reals[nb], s_op)(key)
                getattr(emulated, s_op)(nb, key)
            assert emulated.keys(nb) == list(reals[nb])  # type: ignore[arg-type]
        reals[new], reals[i], reals[j] = merged, None, None
        emulated.release(i)
        emulated.release(j)
        if not merged:
            break


def test_pairwise_sum_matches_numpy_add_reduce() -> None:
    # The kernel's norms must be numpy's float32 sums bit for bit (numpy's pairwise order, 8 accumulators).
    rng = np.random.default_rng(0)
    for n in [*range(300), 383, 384, 385, 511, 767, 768, 769, 1000, 1024, 4096, 10007]:
        x = (rng.standard_normal(n) * rng.uniform(1e-3, 1e3)).astype(np.float32) ** 2
        plan = merge_numerics.pairwise_plan(n)
        got = merge_kernel._pairwise_sum(x, plan, np.empty(len(plan), dtype=np.float32))
        assert np.float32(got).tobytes() == np.add.reduce(x).tobytes(), f"n={n}"


def test_compiled_quantisation_matches_numpy() -> None:
    rng = np.random.default_rng(1)
    for c in (1, 2, 7, 8, 9, 100, 129, 768):
        x = (rng.standard_normal((40, c)) * rng.uniform(1e-6, 1e6, size=(40, 1))).astype(np.float32)
        x[3] = 0.0
        x[4] = 1e-30  # squares underflow: the norm is 0 and eps divides
        expected = np.empty(x.shape, dtype=np.float64)
        merge_numerics.quantized_unit_rows(x, expected)
        plan = merge_numerics.pairwise_plan(c)
        got = np.empty(x.shape, dtype=np.int32)
        for row in range(len(x)):
            merge_kernel._quantize_row(
                x[row].copy(), np.empty(c, np.float32), plan, np.empty(len(plan), np.float32), got, row
            )
        assert np.array_equal(got, expected), f"C={c}"


def test_compiled_loop_grows_its_store_and_edge_log() -> None:
    # A store with no room for tables and the edge log's growth (hundreds of edges per merge) change nothing.
    feats = np.random.default_rng(5).random((14, 14, 24)).astype(np.float32)
    h, w, c = feats.shape
    thresholds = np.array([t * 2.0**52 for t in THETAS])
    ids, offsets, labels = merge_kernel.merge_levels(
        feats.reshape(h * w, c).copy(),
        h,
        w,
        thresholds,
        1,
        merge_sets.new_set_store(2 * h * w + 1, 8),
        merge_numerics.pairwise_plan(c),
    )
    got = [
        (labels[k][None, :] == ids[offsets[k] : offsets[k + 1], None]).reshape(-1, h, w)
        for k in range(len(THETAS))
    ]
    assert_same(got, reference_iterative_merge(feats, THETAS, 1))


def test_unverified_interpreter_or_huge_features_take_the_python_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def compiled_must_not_run(*args: object) -> list[np.ndarray]:
        raise AssertionError("the compiled loop ran")

    feats = structured_features(8, 16, seed=2)
    monkeypatch.setattr(merge, "_iterative_merge_compiled", compiled_must_not_run)
    monkeypatch.setattr(merge, "_SET_ORDER_VERIFIED", frozenset())
    assert_same(iterative_merge(feats, THETAS, 2), reference_iterative_merge(feats, THETAS, 2))
    monkeypatch.undo()
    monkeypatch.setattr(merge, "_iterative_merge_compiled", compiled_must_not_run)
    huge = (feats * 1e37).astype(np.float32)  # 8 x 8 x max|x| >= 1e38: a float32 cluster sum might overflow
    assert not merge._compiled_loop_usable(*merge._validate(huge, 2))
    with np.errstate(over="ignore", invalid="ignore"):  # squares overflow (so in upstream too)
        assert_same(iterative_merge(huge, THETAS, 2), reference_iterative_merge(huge, THETAS, 2))
