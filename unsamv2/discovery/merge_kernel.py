"""Compiled (numba) merge loop for ``unsamv2.discovery.merge.iterative_merge``.

The pure-Python path in ``merge.py`` spends its time in per-merge interpreter work (a dozen small numpy
calls, heap tuples, the Python set operations that fix upstream's edge creation order); this loop runs it all
as machine code. It follows ``merge._iterative_merge_python`` step for step (same heap order, same group
entries, same output walk), keeps its neighbour sets in the slot-exact emulation of CPython's set tables of
``merge_sets.py`` (upstream's order follows their iteration order), and avoids copies: a cluster's feature sum
lives in the row of its lowest patch (written when the cluster first merges), its quantised unit vector too.

Numerics are those of ``merge_numerics.py`` (same constants), computed element by element in float32 exactly
as numpy does, including numpy's pairwise float32 summation for the norm (``pairwise_plan``); quantised unit
vectors are stored as int32 (|q| <= 2**26 + a few), which halves the memory read by the neighbour dot
products, and multiplied in float64, where every partial sum is an integer below 2**53 so any summation order
(SIMD lanes, FMA) is exact. Everything a compiled function calls is compiled too, with ``cache=True`` (numba
keeps the machine code on disk, next to the modules, for later processes).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from unsamv2.discovery.merge_numerics import EPS, QUANT
from unsamv2.discovery.merge_sets import (
    MINSIZE,
    add_entry,
    add_room,
    reserve,
    resize_after_add,
    set_difference,
    set_discard,
    set_init,
    set_len,
    set_release,
    set_slots,
    set_union,
    union_difference_room,
)

__all__ = ["merge_levels"]

# ---------------------------------------------------------------------------------------------------------
# Numerics (bit-identical to merge_numerics' numpy code).
# ---------------------------------------------------------------------------------------------------------


@njit(cache=True, error_model="numpy")
def _pairwise_sum(a: np.ndarray, plan: np.ndarray, stack: np.ndarray) -> np.float32:
    """Sum of the float32 vector ``a`` exactly as ``np.add.reduce`` (``plan = pairwise_plan(a.size)``).

    ``stack`` (float32, >= len(plan)) is work space.
    """
    top = 0
    for t in range(plan.shape[0]):
        if plan[t, 0] < 0:
            top -= 1
            stack[top - 1] = stack[top - 1] + stack[top]
            continue
        n = plan[t, 1]
        b = a[plan[t, 0] : plan[t, 0] + n]  # a view indexed from 0 lets LLVM drop negative-index handling
        if n < 8:
            res = np.float32(0.0)
            for k in range(n):
                res += b[k]
        else:  # eight interleaved accumulators, then the remainder one by one
            r0 = b[0]
            r1 = b[1]
            r2 = b[2]
            r3 = b[3]
            r4 = b[4]
            r5 = b[5]
            r6 = b[6]
            r7 = b[7]
            stop = n - n % 8
            for k in range(8, stop, 8):
                r0 += b[k]
                r1 += b[k + 1]
                r2 += b[k + 2]
                r3 += b[k + 3]
                r4 += b[k + 4]
                r5 += b[k + 5]
                r6 += b[k + 6]
                r7 += b[k + 7]
            res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
            for k in range(stop, n):
                res += b[k]
        stack[top] = res
        top += 1
    return stack[0]


@njit(cache=True, error_model="numpy")
def _quantize_row(
    mean: np.ndarray, squares: np.ndarray, plan: np.ndarray, stack: np.ndarray, quant: np.ndarray, row: int
) -> None:
    """quant[row] = rint(mean / max(||mean||, eps) * 2**26) for a float32 vector, as numpy computes it.

    ``np.add.reduce`` starts from the identity 0 and adds the pairwise sum; sqrt, division and the scaling
    by a power of two are correctly rounded float32 operations in numpy and here alike. ``squares`` is work
    space; ``plan``/``stack`` as for ``_pairwise_sum``.
    """
    c = mean.size
    for k in range(c):
        squares[k] = mean[k] * mean[k]
    norm = np.sqrt(np.float32(0.0) + _pairwise_sum(squares, plan, stack))
    denom = max(norm, EPS)  # as merge_numerics (no NaN reaches here: merge.py guards the feature range)
    for k in range(c):
        quant[row, k] = np.int32(np.rint(mean[k] / denom * QUANT))


# fastmath: only reassociation (SIMD lanes, several accumulators) and FMA contraction, both exact here because
# every product and partial sum is an integer below 2**53.
_EXACT_INTEGER_MATH = {"reassoc", "contract"}


@njit(cache=True, error_model="numpy", fastmath=_EXACT_INTEGER_MATH)
def _dot(quant: np.ndarray, a: int, qf: np.ndarray) -> float:
    """quant[a] . qf (qf: a quantised vector as float64), exactly.

    Takes row numbers rather than row views: a view costs two atomic refcount updates per call.
    """
    acc = 0.0
    for k in range(qf.size):
        acc += np.float64(quant[a, k]) * qf[k]
    return acc


@njit(cache=True, error_model="numpy", fastmath=_EXACT_INTEGER_MATH)
def _dot2(quant: np.ndarray, a: int, b: int, qf: np.ndarray) -> tuple[float, float]:
    """(quant[a] . qf, quant[b] . qf): two rows per pass over qf, so two memory streams are in flight."""
    acc_a = 0.0
    acc_b = 0.0
    for k in range(qf.size):
        acc_a += np.float64(quant[a, k]) * qf[k]
        acc_b += np.float64(quant[b, k]) * qf[k]
    return acc_a, acc_b


@njit(cache=True, error_model="numpy")
def _sim_key(dot: float) -> float:
    """float32(q_a . q_b) as a float64: similarity * 2**52, rounded like upstream's float32 similarity."""
    return np.float64(np.float32(dot))


# ---------------------------------------------------------------------------------------------------------
# Binary max-heap of (similarity key, creation seq): top = highest key, then lowest seq (upstream's dict max).
# ---------------------------------------------------------------------------------------------------------


@njit(cache=True, error_model="numpy")
def _sift_down(keys: np.ndarray, seqs: np.ndarray, size: int, pos: int, key: float, seq: int) -> None:
    """Put (key, seq) into the hole at ``pos``, moving the hole down to its place (heapq's siftup).

    Pop: ``size -= 1`` then sift the last entry into the hole at 0; heapify: sift each entry into its own
    slot. Comparisons are written out rather than calling a helper, because a call taking arrays costs
    atomic refcount updates (see ``add_entry``).
    """
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        right = child + 1
        if right < size and (
            keys[right] > keys[child] or (keys[right] == keys[child] and seqs[right] < seqs[child])
        ):
            child = right
        if not (keys[child] > key or (keys[child] == key and seqs[child] < seq)):
            break
        keys[pos] = keys[child]
        seqs[pos] = seqs[child]
        pos = child
    keys[pos] = key
    seqs[pos] = seq


@njit(cache=True, error_model="numpy")
def _heap_push(keys: np.ndarray, seqs: np.ndarray, size: int, key: float, seq: int) -> int:
    """Add (key, seq) to the heap of ``size`` entries; returns the new size."""
    pos = size
    while pos > 0:
        up = (pos - 1) // 2
        if not (key > keys[up] or (key == keys[up] and seq < seqs[up])):
            break
        keys[pos] = keys[up]
        seqs[pos] = seqs[up]
        pos = up
    keys[pos] = key
    seqs[pos] = seq
    return size + 1


@njit(cache=True, error_model="numpy")
def _grown(a: np.ndarray, capacity: int) -> np.ndarray:
    out = np.empty(capacity, dtype=a.dtype)
    out[: a.size] = a
    return out


# ---------------------------------------------------------------------------------------------------------
# The merge loop.
# ---------------------------------------------------------------------------------------------------------


@njit(cache=True, error_model="numpy")
def _add_cluster_sums(sums: np.ndarray, feats: np.ndarray, summed: np.ndarray, r: int, rj: int) -> None:
    """sums[r] = (sum of row r) + (sum of row rj); a row not ``summed`` yet holds a patch: its feature."""
    c = feats.shape[1]
    if summed[r] and summed[rj]:
        for k in range(c):
            sums[r, k] += sums[rj, k]
    elif summed[r]:
        for k in range(c):
            sums[r, k] += feats[rj, k]
    elif summed[rj]:
        for k in range(c):
            sums[r, k] = feats[r, k] + sums[rj, k]
    else:
        for k in range(c):
            sums[r, k] = feats[r, k] + feats[rj, k]
    summed[r] = True


@njit(cache=True, error_model="numpy")
def merge_levels(
    feats: np.ndarray,
    h: int,
    w: int,
    thresholds: np.ndarray,
    min_size: int,
    store: np.ndarray,
    plan: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run upstream's merging on the (h*w, C) patch features (float32 or float64: the dtype of the sums).

    ``feats`` is only read. ``thresholds`` are the levels' thetas times 2**52 (the scale of the similarity
    keys); ``store`` is a fresh ``merge_sets.new_set_store`` for at least 2 * h * w + 1 sets; ``plan`` is
    ``merge_numerics.pairwise_plan(C)``. Returns (ids, offsets, labels): level l outputs the clusters
    ``ids[offsets[l]:offsets[l + 1]]`` in upstream's order, and ``labels[l, p]`` is the cluster holding patch
    p after level l.
    """
    n = h * w
    c = feats.shape[1]
    n_ids = 2 * n  # patches 0..n-1, then one new id per merge (at most n - 1)
    union_set = n_ids  # set number of the union before its difference

    # Quantised unit vector of each cluster, in the row of its lowest-id patch cluster (row_of).
    quant = np.empty((n, c), dtype=np.int32)
    mean = np.empty(c, dtype=np.float32)
    squares = np.empty(c, dtype=np.float32)  # _quantize_row's work space
    stack = np.empty(plan.shape[0], dtype=np.float32)
    # Feature sum of each merged cluster, in its row; a row is written when its cluster first merges (until
    # then the cluster is a patch and its sum is its feature), so no copy of all features is made.
    sums = np.empty_like(feats)
    summed = np.zeros(n, dtype=np.bool_)
    divisor = np.empty(1, dtype=feats.dtype)  # a count as the sums' dtype (numpy divides in that dtype)
    for p in range(n):
        for k in range(c):
            mean[k] = np.float32(feats[p, k])
        _quantize_row(mean, squares, plan, stack, quant, p)

    alive = np.zeros(n_ids, dtype=np.bool_)
    alive[:n] = True
    counts = np.zeros(n_ids, dtype=np.int64)
    counts[:n] = 1
    parent = np.arange(n_ids)
    row_of = np.zeros(n_ids, dtype=np.int64)
    row_of[:n] = np.arange(n)

    # Neighbour sets, filled with upstream's exact add sequence, and the initial edges in creation order.
    store = reserve(store, MINSIZE * n + n * add_room(4))
    for p in range(n):
        set_init(store, p)
    capacity = 4 * n + 16
    log_a = np.empty(capacity, dtype=np.int64)
    log_b = np.empty(capacity, dtype=np.int64)
    log_key = np.empty(capacity, dtype=np.float64)
    n_edges = 0
    qf = np.empty(c, dtype=np.float64)  # the quantised vector the current dots are taken with
    for p in range(n):
        for k in range(c):
            qf[k] = quant[p, k]
        # Upstream creates (p - 1, p), then (p - W, p): nbrs[p].add(other), then nbrs[other].add(p).
        for vertical in range(2):
            if (p < w) if vertical else (p % w == 0):
                continue
            other = p - w if vertical else p - 1
            # (An 8-slot table holding <= 4 keys never resizes; the room reserved above covers it anyway.)
            if add_entry(store, p, other):
                resize_after_add(store, p)
            if add_entry(store, other, p):
                resize_after_add(store, other)
            log_a[n_edges] = other
            log_b[n_edges] = p
            log_key[n_edges] = _sim_key(_dot(quant, other, qf))
            n_edges += 1
    n_init = n_edges

    # Heap: one entry per initial edge; a merge's new edges form a group (all (nb, new)) with one entry for
    # its best live edge, re-pushed for the next best when that edge goes stale (see merge.py).
    heap_keys = np.empty(n_init + 1, dtype=np.float64)
    heap_seqs = np.empty(n_init + 1, dtype=np.int64)
    heap_keys[:n_init] = log_key[:n_init]
    heap_seqs[:n_init] = np.arange(n_init)
    heap_size = n_init
    for pos in range(heap_size // 2 - 1, -1, -1):
        _sift_down(heap_keys, heap_seqs, heap_size, pos, heap_keys[pos], heap_seqs[pos])
    group_start = np.zeros(n_ids, dtype=np.int64)
    group_len = np.zeros(n_ids, dtype=np.int64)
    pair = np.empty(2, dtype=np.int64)

    n_levels = thresholds.size
    labels = np.empty((n_levels, n), dtype=np.int64)
    level_ids = np.empty(n_levels * n, dtype=np.int64)
    offsets = np.zeros(n_levels + 1, dtype=np.int64)
    n_out = 0
    # Live edges in creation order as of the previous level; later levels only drop edges or add new ones.
    walk = np.arange(n_init)
    walked = n_init  # edges [walked, n_edges) are new since the last level
    seen_at = np.full(n_ids, -1, dtype=np.int64)

    next_id = n
    for level in range(n_levels):
        threshold = thresholds[level]
        while heap_size > 0:
            seq = heap_seqs[0]
            i = log_a[seq]
            j = log_b[seq]
            if not (alive[i] and alive[j]):
                heap_size -= 1  # pop
                _sift_down(heap_keys, heap_seqs, heap_size, 0, heap_keys[heap_size], heap_seqs[heap_size])
                if seq >= n_init and alive[j]:  # group edge whose neighbour merged elsewhere; j owns it
                    best = -1
                    start = group_start[j]
                    for e in range(start, start + group_len[j]):
                        if alive[log_a[e]] and (best < 0 or log_key[e] > log_key[best]):
                            best = e
                    if best >= 0:
                        heap_size = _heap_push(heap_keys, heap_seqs, heap_size, log_key[best], best)
                continue
            if heap_keys[0] < threshold:
                break
            heap_size -= 1  # pop
            _sift_down(heap_keys, heap_seqs, heap_size, 0, heap_keys[heap_size], heap_seqs[heap_size])

            new = next_id
            next_id += 1
            # Same set operations as upstream, so the slot order (= edge creation order) matches:
            # nbrs[new] = nbrs[i].union(nbrs[j]).difference({i, j}).
            store = reserve(store, union_difference_room(set_len(store, i), set_len(store, j)))
            set_union(store, union_set, i, j)
            pair[0] = i
            pair[1] = j
            set_difference(store, new, union_set, pair)
            set_release(store, union_set)
            set_release(store, i)
            set_release(store, j)
            alive[i] = False
            alive[j] = False
            alive[new] = True
            parent[i] = new
            parent[j] = new

            r = row_of[i]
            row_of[new] = r
            rj = row_of[j]
            count = counts[i] + counts[j]
            counts[new] = count
            divisor[0] = count
            d = divisor[0]
            _add_cluster_sums(sums, feats, summed, r, rj)
            # numpy: total / count keeps the sum's dtype; a float64 mean is then cast to float32.
            for k in range(c):
                mean[k] = np.float32(sums[r, k] / d)
            _quantize_row(mean, squares, plan, stack, quant, r)
            for k in range(c):
                qf[k] = quant[r, k]

            degree = set_len(store, new)
            new_off, new_end = set_slots(store, new)
            if n_edges + degree > log_a.size:
                capacity = max(2 * log_a.size, n_edges + degree)
                log_a = _grown(log_a, capacity)
                log_b = _grown(log_b, capacity)
                log_key = _grown(log_key, capacity)
            start = n_edges
            room = 0
            for slot in range(new_off, new_end):
                if store[slot] >= 0:
                    room += add_room(set_len(store, store[slot]))
            store = reserve(store, room)  # (offsets stay valid in a grown copy)
            # For nb in nbrs[new] (slot order): nb's set drops i and j and gains new; edge (nb, new) is created.
            for slot in range(new_off, new_end):
                nb = store[slot]
                if nb < 0:
                    continue
                set_discard(store, nb, i)
                set_discard(store, nb, j)
                if add_entry(store, nb, new):
                    resize_after_add(store, nb)
                log_a[n_edges] = nb
                log_b[n_edges] = new
                n_edges += 1
            for e in range(start, n_edges - 1, 2):
                dot_a, dot_b = _dot2(quant, row_of[log_a[e]], row_of[log_a[e + 1]], qf)
                log_key[e] = _sim_key(dot_a)
                log_key[e + 1] = _sim_key(dot_b)
            if (n_edges - start) % 2 == 1:
                log_key[n_edges - 1] = _sim_key(_dot(quant, row_of[log_a[n_edges - 1]], qf))
            best = -1
            for e in range(start, n_edges):
                if best < 0 or log_key[e] > log_key[best]:  # first maximum = earliest created
                    best = e
            group_start[new] = start
            group_len[new] = degree
            if best >= 0:
                heap_size = _heap_push(heap_keys, heap_seqs, heap_size, log_key[best], best)

        # Output: walk the live edges in creation order, emit m then n of each (m, n) on first appearance.
        candidates = np.concatenate((walk, np.arange(walked, n_edges)))
        walked = n_edges
        keep = 0
        for e in candidates:
            a = log_a[e]
            b = log_b[e]
            if alive[a] and alive[b]:
                candidates[keep] = e
                keep += 1
                for x in (a, b):
                    if seen_at[x] != level:
                        seen_at[x] = level
                        if counts[x] >= min_size:
                            level_ids[n_out] = x
                            n_out += 1
        walk = candidates[:keep].copy()
        offsets[level + 1] = n_out
        for p in range(n):
            root = p
            while parent[root] != root:
                root = parent[root]
            parent[p] = root  # patches point at their cluster directly from now on
            labels[level, p] = root
    return level_ids[:n_out].copy(), offsets, labels
