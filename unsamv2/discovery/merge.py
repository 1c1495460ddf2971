"""Conquer step: iterative merging of a patch-feature grid into a hierarchy of masks (divide and conquer).

A fast, behaviour-identical rewrite of upstream ``iterative_merge`` (``yujunwei04/UnSAMv2``,
``granularity_divide_and_conquer/iterative_merging.py`` @ 7af093b; the same code as ``frank-xwang/UnSAM``
``divide_and_conquer/iterative_merging.py``). ``tests/reference/reference_merge.py`` is the line-by-line
transcription it is tested against.

Upstream algorithm: one cluster per patch, 4-connected; edge weight = cosine similarity of the L2-normalised
features. For each threshold in order (no reset between levels) merge the most similar adjacent pair while
that similarity is >= the threshold. A merged cluster has feature sum = sum of both, normalised feature =
normalize(sum / #patches), neighbours = union of both; its similarities to its neighbours are recomputed.
After each level, every cluster that still has a neighbour and >= ``min_size`` patches is output.

What makes the output order-exact (read from upstream and reproduced here):

* Tie-breaking. Upstream keeps the similarities in a dict keyed (i, j) and picks
  ``max(similarities, key=similarities.get)``: among equal maxima, the key inserted first wins. A key is
  never re-inserted (a merge always creates a new cluster id), so insertion order = creation order of the
  edge. We number edges in creation order (seq) and keep a heap keyed (-similarity, seq), whose minimum is
  exactly upstream's choice. Initial edges have one entry each; the edges created by one merge share one
  entry for their best live edge (highest similarity, then lowest seq), re-pushed for the next best when that
  edge goes stale (lazy invalidation: an entry is stale once an endpoint has been merged away).
* Creation order of edges. Initial edges are created in raster order of the higher patch index c:
  (c - 1, c) then (c - W, c). A merge creates (neighbour, new) for each neighbour in the *iteration order of
  the Python set* ``nbrs[i].union(nbrs[j]).difference({i, j})``. CPython's set iteration order depends on
  the set's whole history of adds and discards, so we apply exactly the same set operations in the same
  order (per neighbour: discard i, discard j, add new) to sets holding the same cluster ids (patches
  0..h*w-1 in raster order, then one new id per merge): real Python sets in the Python loop, a slot-exact
  emulation of CPython's set tables in the compiled one (below).
* Output order within a level. Upstream walks the dict in insertion order and emits, for each key (m, n),
  m and then n on their first appearance (whether or not they pass ``min_size``). We sort the live edges by
  sequence number and take first appearances the same way.

Numerics (``merge_numerics``, shared with the reference so that ties and threshold tests agree bit for bit,
whatever the BLAS or the batching): similarity = float32(q_a . q_b * 2**-52) of features quantised to
integers q = rint(2**26 * u) after an order-independent L2 normalisation, so every dot product is exact.
Upstream's float32 ``torch.dot`` differs from this only in the last bits.

Cost: upstream scans every edge for each merge, O(#merges * #edges) Python work. Here a merge costs
O(degree) set operations (needed to reproduce the set iteration order), the dot products with the new
cluster's neighbours (O(degree * C), as upstream) and O(log #edges) heap work.

Two implementations of that loop, with identical results:

* Compiled (``merge_kernel``, numba; the default): the whole loop, including the set operations, runs as
  machine code, ~25x faster than the transcription on a 64x64 grid of 768-d features (per-merge interpreter
  overhead was most of the Python loop's time). Its sets (``merge_sets``) emulate CPython's set tables slot
  for slot, which is verified (tests/discovery/test_merge.py) on the CPython minor versions in
  ``_SET_ORDER_VERIFIED`` only; it also needs max |feature| * #patches < 1e38 (finite float32 cluster sums).
  The first call in an environment compiles it (tens of seconds; numba caches the machine code on disk for
  later processes).
* Python (``_iterative_merge_python``): real Python sets, a heap of tuples and numpy for the vectors; used
  wherever the compiled loop is not (other interpreters, huge feature values).

Deliberate differences from upstream: the result always has one array per threshold (upstream skips a level
with no mask), masks are bool, and thresholds are compared as Python floats.
"""

from __future__ import annotations

import heapq
import math
import sys
from collections.abc import Sequence

import numpy as np

from unsamv2.discovery.merge_numerics import (
    DOT_UNSCALE,
    dots_with,
    initial_dots,
    pairwise_plan,
    quantize_vector,
    quantized_unit_rows,
)

__all__ = ["iterative_merge"]

# CPython minor versions on which tests/discovery/test_merge.py (its set-emulation property tests, and compiled
# loop == Python loop == transcription) passed: 3.11.7, 3.12.1 and 3.13.0 (numba 0.60 on 3.12, 0.68 on
# 3.11/3.13).
# Any other interpreter runs the pure-Python loop until the tests have been run there.
_SET_ORDER_VERIFIED = frozenset({(3, 11), (3, 12), (3, 13)})
_FLOAT32_SAFE_SUM = 1e38  # below float32's max (3.4e38) with room for rounding


def _validate(features: np.ndarray, min_size: int) -> tuple[np.ndarray, float]:
    """Checked features and the largest |feature| (the min/max reductions also catch NaN and inf)."""
    feats = np.asarray(features)
    if feats.ndim != 3 or min(feats.shape) < 1:
        raise ValueError(f"features must be an (h, w, C) array with h, w, C >= 1, got shape {feats.shape}")
    if not (np.issubdtype(feats.dtype, np.floating) or np.issubdtype(feats.dtype, np.integer)):
        raise ValueError(f"features must be a real numeric array, got dtype {feats.dtype}")
    bound = max(abs(float(feats.min())), abs(float(feats.max())))  # NaN propagates through min and max
    if not math.isfinite(bound):
        raise ValueError("features contain NaN or infinite values")
    if isinstance(min_size, bool) or not isinstance(min_size, (int, np.integer)):
        raise TypeError(f"min_size must be an integer, got {min_size!r}")
    return feats, bound


def _initial_edges(h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Initial 4-connected edges (a, b) in upstream creation order: for c = 0, 1, ...: (c - 1, c), (c - W, c).

    Also returns the boolean selector of the existing edges among the 2 * h * w candidates.
    """
    n = h * w
    ids = np.arange(n)
    exists = np.stack([ids % w != 0, ids >= w], axis=1)
    edge_a = np.stack([ids - 1, ids - w], axis=1)[exists]
    edge_b = np.broadcast_to(ids[:, None], (n, 2))[exists]
    return edge_a, edge_b, exists


def _initial_neighbour_sets(h: int, w: int) -> list[set[int]]:
    """Neighbour sets filled with upstream's exact add sequence (set iteration order depends on it)."""
    n = h * w
    nbrs: list[set[int]] = [set() for _ in range(n)]
    for c in range(n):
        if c % w != 0:
            nbrs[c].add(c - 1)
            nbrs[c - 1].add(c)
        if c >= w:
            nbrs[c].add(c - w)
            nbrs[c - w].add(c)
    return nbrs


class _EdgeLog:
    """Every edge ever created, in creation order (= upstream's dict insertion order), for the level walk.

    Merges append their (neighbours, owner) groups to cheap Python lists; ``arrays`` folds them into numpy
    arrays only when a level is output.
    """

    def __init__(self, a: np.ndarray, b: np.ndarray) -> None:
        self.a = a
        self.b = b
        self.size = len(a)
        self._pending_nbrs: list[np.ndarray] = []
        self._pending_owners: list[int] = []

    def append_group(self, nbrs: np.ndarray, owner: int) -> None:
        self._pending_nbrs.append(nbrs)
        self._pending_owners.append(owner)
        self.size += len(nbrs)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if self._pending_nbrs:
            lengths = [len(g) for g in self._pending_nbrs]
            self.a = np.concatenate([self.a, *self._pending_nbrs])
            self.b = np.concatenate([self.b, np.repeat(np.asarray(self._pending_owners), lengths)])
            self._pending_nbrs, self._pending_owners = [], []
        return self.a, self.b


def iterative_merge(
    features: np.ndarray,
    thetas: Sequence[float] = (0.9, 0.8, 0.7, 0.6, 0.5),
    min_size: int = 4,
) -> list[np.ndarray]:
    """Hierarchical region-adjacency merging of a patch-feature grid (UnSAMv2's "conquer" step).

    Produces the same masks, in the same order, as upstream ``iterative_merge(features, thetas, min_size)``
    (see the module docstring for the tie-breaking and output-order rules and the numerics), without
    upstream's scan of every edge per merge.

    Args:
        features: (h, w, C) patch features. float64 features keep float64 feature sums; any other dtype is
            cast to float32 (the dtype of the released pipeline's CPU DINOv3 features).
        thetas: cosine-similarity thresholds, applied in this order without resetting between levels.
        min_size: a cluster is output only if it has at least this many patches.

    Returns:
        One bool array of shape (k, h, w) per threshold (k may be 0): the clusters that still have at least
        one neighbour and at least ``min_size`` patches after merging down to that threshold, in upstream's
        order (first appearance when walking the live edges in creation order).
    """
    feats, bound = _validate(features, min_size)
    if _compiled_loop_usable(feats, bound):
        return _iterative_merge_compiled(feats, thetas, min_size)
    return _iterative_merge_python(feats, thetas, min_size)


def _compiled_loop_usable(feats: np.ndarray, bound: float) -> bool:
    """Whether ``merge_kernel`` reproduces upstream here (see the module docstring).

    Its set emulation is verified only on the CPython versions in ``_SET_ORDER_VERIFIED``; its int32 storage
    of the quantised vectors needs finite cluster means, which no float32 sum can break when
    max |feature| * #patches stays below float32's range.
    """
    return (
        sys.implementation.name == "cpython"
        and sys.version_info[:2] in _SET_ORDER_VERIFIED
        and bound * feats.shape[0] * feats.shape[1] < _FLOAT32_SAFE_SUM
    )


def _iterative_merge_compiled(feats: np.ndarray, thetas: Sequence[float], min_size: int) -> list[np.ndarray]:
    """``iterative_merge`` on validated features, by the compiled loop of ``merge_kernel``."""
    # Imports numba (~0.5 s): only when first needed.
    from unsamv2.discovery.merge_kernel import merge_levels
    from unsamv2.discovery.merge_sets import new_set_store

    acc_dtype = np.float64 if feats.dtype == np.float64 else np.float32
    h, w, c = feats.shape
    n = h * w
    rows = np.ascontiguousarray(feats.reshape(n, c), dtype=acc_dtype)  # no copy if already so laid out
    if not rows.flags.writeable:
        rows = rows.copy()  # (a read-only array would make numba compile another specialisation)
    thresholds = np.array([float(theta) * DOT_UNSCALE for theta in thetas], dtype=np.float64)
    # Sets: one per cluster id (2n) and the scratch set of a merge's union. Room for the initial tables and
    # typical growth (untouched room costs no memory); the kernel grows the store if it needs more.
    store = new_set_store(2 * n + 1, 64 * n)
    counts_needed = min(max(int(min_size), 1), n + 1)  # every count is in 1..n
    ids, offsets, labels = merge_levels(rows, h, w, thresholds, counts_needed, store, pairwise_plan(c))
    return [
        (labels[level][None, :] == ids[offsets[level] : offsets[level + 1], None]).reshape(-1, h, w)
        for level in range(len(thresholds))
    ]


def _iterative_merge_python(feats: np.ndarray, thetas: Sequence[float], min_size: int) -> list[np.ndarray]:
    """``iterative_merge`` on validated features, in Python (numpy and CPython's own sets)."""
    acc_dtype = np.float64 if feats.dtype == np.float64 else np.float32
    h, w, c = feats.shape
    n = h * w

    # Per-cluster rows. A merged cluster reuses the row of its lower id (that cluster is dead and its row no
    # longer read), so memory stays at n rows and stays warm in cache.
    sums = np.array(feats.reshape(n, c), dtype=acc_dtype)
    quant = np.empty((n, c), dtype=np.float64)
    quantized_unit_rows(sums.astype(np.float32, copy=False), quant)
    rows = np.zeros(2 * n, dtype=np.int64)  # cluster id -> row (row_of: the same as a list, for scalars)
    rows[:n] = np.arange(n)

    init_a, init_b, exists = _initial_edges(h, w)
    n_init = len(init_a)
    log = _EdgeLog(init_a, init_b)
    # Heap of (-dot, creation seq, a, b): its minimum is upstream's dict max (first inserted wins ties).
    # Keys hold float32(q_a . q_b) = similarity * 2**52 exactly (power-of-two scaling commutes with rounding),
    # so the thresholds are scaled instead of every similarity.
    init_keys = (-initial_dots(quant, h, w, exists)).tolist()
    heap = list(zip(init_keys, range(n_init), init_a.tolist(), init_b.tolist()))
    heapq.heapify(heap)
    # The edges a merge creates, (nb, new) for nb in groups[new][0], form a group with one heap entry for its
    # best live edge; when that edge dies (nb merged elsewhere) the group is re-examined (lazy invalidation).
    groups: dict[int, tuple[np.ndarray, np.ndarray, int]] = {}

    nbrs: list[set[int] | None] = [*_initial_neighbour_sets(h, w), *([None] * n)]
    alive_bytes = bytearray(2 * n)
    alive_bytes[:n] = b"\x01" * n
    alive = np.frombuffer(alive_bytes, dtype=np.bool_)  # shares memory with alive_bytes
    counts = [1] * n + [0] * n
    parent = np.arange(2 * n)
    row_of = list(range(n)) + [0] * n
    next_id = n
    cast_mean = acc_dtype != np.float32

    heappop, heappush = heapq.heappop, heapq.heappush
    levels: list[np.ndarray] = []
    for theta in thetas:
        threshold = float(theta) * DOT_UNSCALE
        while heap:
            neg_dot, seq, i, j = heap[0]
            if not (alive_bytes[i] and alive_bytes[j]):
                heappop(heap)
                if seq >= n_init and alive_bytes[j]:
                    # Group edge whose neighbour i merged elsewhere; j = the group's owner is still alive.
                    _push_group_best(heap, j, *groups[j], alive)
                continue
            if -neg_dot < threshold:
                break
            heappop(heap)

            new = next_id
            next_id += 1
            # Same set operations as upstream so that the iteration order (= edge creation order) matches.
            merged_nbrs = nbrs[i].union(nbrs[j]).difference({i, j})  # type: ignore[union-attr]
            for nb in merged_nbrs:
                nb_set = nbrs[nb]
                nb_set.discard(i)  # type: ignore[union-attr]
                nb_set.discard(j)  # type: ignore[union-attr]
                nb_set.add(new)  # type: ignore[union-attr]
            nbrs[new] = merged_nbrs
            nbrs[i] = nbrs[j] = None
            alive_bytes[i] = alive_bytes[j] = 0
            alive_bytes[new] = 1
            parent[i] = parent[j] = new

            r = row_of[i]
            row_of[new] = r
            rows[new] = r
            total = sums[r]
            np.add(total, sums[row_of[j]], out=total)
            count = counts[i] + counts[j]
            counts[new] = count
            mean = total / count  # a Python int divisor keeps acc_dtype
            if cast_mean:
                mean = mean.astype(np.float32)
            qnew = quant[r]
            quantize_vector(mean, qnew)

            if merged_nbrs:
                order = np.fromiter(merged_nbrs, dtype=np.int64, count=len(merged_nbrs))
                dots = dots_with(quant, rows[order], qnew)
                best = int(dots.argmax())  # first maximum = earliest created, like the dict scan
                heappush(heap, (-float(dots[best]), log.size + best, int(order[best]), new))
                groups[new] = (order, dots, log.size)
                log.append_group(order, new)

        levels.append(_level_masks(log, alive, counts, parent, min_size, h, w))
    return levels


def _push_group_best(
    heap: list[tuple[float, int, int, int]],
    owner: int,
    nbrs: np.ndarray,
    dots: np.ndarray,
    start: int,
    alive: np.ndarray,
) -> None:
    """Re-push a group's best live edge (highest similarity, earliest created on ties), if any is left."""
    live = alive[nbrs]
    if not live.any():
        return
    best = int(np.where(live, dots, -np.inf).argmax())
    heapq.heappush(heap, (-float(dots[best]), start + best, int(nbrs[best]), owner))


def _level_masks(
    log: _EdgeLog,
    alive: np.ndarray,
    counts: list[int],
    parent: np.ndarray,
    min_size: int,
    h: int,
    w: int,
) -> np.ndarray:
    """Masks of one level, in upstream's order: walk live edges by creation, take first appearances."""
    ea, eb = log.arrays()
    keep = alive[ea] & alive[eb]
    walk = np.stack([ea[keep], eb[keep]], axis=1).ravel()  # m then n, edges in creation order
    if walk.size == 0:
        return np.zeros((0, h, w), dtype=bool)
    unique_ids, first_seen = np.unique(walk, return_index=True)
    ids = unique_ids[np.argsort(first_seen)]
    ids = ids[np.asarray(counts)[ids] >= min_size]
    # Current cluster of each patch: pointer doubling on the merge forest (live clusters are roots).
    while True:
        jumped = parent[parent]
        if np.array_equal(jumped, parent):
            break
        parent[:] = jumped
    labels = parent[: h * w]
    return (labels[None, :] == ids[:, None]).reshape(-1, h, w)
