"""Compiled (numba) merge loop for ``unsamv2.discovery.merge.iterative_merge``.

Why a compiled loop, and why it carries its own copy of CPython's set: the pure-Python path in ``merge.py``
spends its time in per-merge interpreter work (a dozen small numpy calls, heap tuples, and the Python set
operations that fix upstream's edge creation order). Compiling the loop removes that overhead, but the set
operations cannot simply be dropped: upstream's tie-breaking and output order follow the *iteration order* of
``nbrs[i].union(nbrs[j]).difference({i, j})``, which is the slot order of CPython's hash table and depends on
the whole add/discard history of every neighbour set. So this module emulates, slot for slot, the parts of
CPython's ``Objects/setobject.c`` that those operations use, for int keys (``hash(k) == k`` for
0 <= k < 2**61 - 1): ``set_add_entry`` (linear probing over LINEAR_PROBES = 9 slots, then the perturbed
probe sequence ``i = (i * 5 + 1 + perturb) & mask``; a key goes into the *last* dummy slot met before the
first unused slot; the table grows when fill * 5 >= mask * 3), ``set_discard_entry`` (the slot becomes a
dummy), ``set_table_resize`` (re-insert in slot order with ``set_insert_clean``; a clean small table is left
untouched), ``set_merge`` (``union``/``copy``: one up-front resize, then a slot copy, clean inserts or normal
adds) and ``set_difference`` (copy-and-discard when the set has more than 4x as many keys as the other set,
else rebuild by adds). ``tests/test_merge.py`` checks the emulation against real sets with hypothesis
property tests over random add/discard/union/difference histories (sensitive to each reachable rule: a
change to the dummy reuse, the resize threshold, the slot-copy or the copy-and-discard rule fails them), and
``merge.py`` uses this module only on the CPython minor versions the tests passed on
(``merge._SET_ORDER_VERIFIED``); any other interpreter takes the pure-Python path.

A set's table is a power-of-two run of int64 slots (``_EMPTY`` = never used, ``_DUMMY`` = deleted, else the
key) with its ``fill`` (used + dummy slots) and ``used`` (keys) counts, which steer resizes; all tables live
in one array (layout below).

The merge loop itself follows ``merge._iterative_merge_python`` step for step (same heap order, same group
entries, same output walk), with a numeric core that avoids copies: a cluster's feature sum lives in the row
of its lowest patch (written when the cluster first merges), its quantised unit vector likewise.

Numerics are those of ``merge.py`` (see its module docstring), computed element by element in float32 exactly
as numpy does, including numpy's pairwise float32 summation for the norm; quantised unit vectors are stored as
int32 (|q| <= 2**26 + a few), which halves the memory read by the neighbour dot products, and multiplied in
float64, where every partial sum is an integer below 2**53 so any summation order (SIMD lanes, FMA) is exact.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# ---------------------------------------------------------------------------------------------------------
# CPython set emulation (int keys >= 0), all sets in one int64 array ``store``:
#
#   store[0]                       first slot never handed out (tables are carved from here upwards)
#   store[1 + c]                   first free block of 8 << c slots, or -1 (a free block's first slot holds
#                                  the next free block of its class)
#   store[_meta(s) + _OFF/_SIZE/_FILL/_USED]
#                                  set number s: its table's offset and size, and its fill and used counts
#   store[_HEADER + 4 * n_sets:]   the tables
#
# Why one array: numba increfs and decrefs (atomically) the array arguments of every call to a function that
# calls another function with arrays under a condition (even one never met); with hundreds of such calls per
# merge that cost more than the set operations themselves, so set functions take a single array, and the
# per-key functions (_add_entry, set_discard, _insert_clean) call nothing. Set operations never move
# ``store``: callers ``reserve`` room for the worst case first.
# ---------------------------------------------------------------------------------------------------------

_EMPTY = -1
_DUMMY = -2
_MINSIZE = 8  # PySet_MINSIZE
_LINEAR_PROBES = 9
_PERTURB_SHIFT = 5
_N_CLASSES = 58  # block sizes 8 << c
_HEADER = 64  # store[0] and the free-list heads
_OFF, _SIZE, _FILL, _USED = 0, 1, 2, 3


@njit(cache=True, error_model="numpy")
def _meta(s: int) -> int:
    return _HEADER + 4 * s


def new_set_store(n_sets: int, table_capacity: int) -> np.ndarray:
    """A store for sets 0..n_sets-1 (none initialised yet) with room for ``table_capacity`` table slots."""
    tables = _HEADER + 4 * n_sets
    store = np.empty(tables + max(table_capacity, _MINSIZE), dtype=np.int64)
    store[:tables] = -1
    store[0] = tables
    return store


@njit(cache=True, error_model="numpy")
def reserve(store: np.ndarray, need: int) -> np.ndarray:
    """``store``, or a larger copy of it, with at least ``need`` slots never handed out."""
    if store[0] + need <= store.size:
        return store
    bigger = np.empty(max(2 * store.size, store[0] + need), dtype=np.int64)
    bigger[: store[0]] = store[: store[0]]
    return bigger


@njit(cache=True, error_model="numpy")
def _size_class(size: int) -> int:
    c = 0
    while (_MINSIZE << c) < size:
        c += 1
    return c


@njit(cache=True, error_model="numpy")
def _alloc(store: np.ndarray, size: int) -> int:
    """Offset of a block of ``size`` (a power of two >= 8) slots, all ``_EMPTY``."""
    c = _size_class(size)
    off = store[1 + c]
    if off >= 0:
        store[1 + c] = store[off]
    else:
        off = store[0]
        if off + size > store.size:
            raise RuntimeError("set store exhausted: a reserve() bound is wrong")
        store[0] = off + size
    for slot in range(off, off + size):
        store[slot] = _EMPTY
    return off


@njit(cache=True, error_model="numpy")
def set_init(store: np.ndarray, s: int) -> None:
    """Set s = set() (an 8-slot table)."""
    m = _meta(s)
    store[m + _OFF] = _alloc(store, _MINSIZE)
    store[m + _SIZE] = _MINSIZE
    store[m + _FILL] = 0
    store[m + _USED] = 0


@njit(cache=True, error_model="numpy")
def set_release(store: np.ndarray, s: int) -> None:
    """Free set s's table (the set is gone)."""
    m = _meta(s)
    off = store[m + _OFF]
    if off >= 0:
        c = _size_class(store[m + _SIZE])
        store[off] = store[1 + c]
        store[1 + c] = off
    store[m + _OFF] = -1
    store[m + _SIZE] = 0
    store[m + _FILL] = 0
    store[m + _USED] = 0


@njit(cache=True, error_model="numpy")
def set_len(store: np.ndarray, s: int) -> int:
    return store[_meta(s) + _USED]


@njit(cache=True, error_model="numpy")
def set_keys(store: np.ndarray, s: int) -> np.ndarray:
    """The keys of set s in iteration (slot) order."""
    m = _meta(s)
    out = np.empty(store[m + _USED], dtype=np.int64)
    n = 0
    for slot in range(store[m + _OFF], store[m + _OFF] + store[m + _SIZE]):
        if store[slot] >= 0:
            out[n] = store[slot]
            n += 1
    return out


@njit(cache=True, error_model="numpy")
def _insert_clean(store: np.ndarray, off: int, mask: int, key: int) -> None:
    """``set_insert_clean``: put a key known to be absent into a table without dummies."""
    perturb = key
    i = key & mask
    while True:
        if store[off + i] == _EMPTY:
            store[off + i] = key
            return
        if i + _LINEAR_PROBES <= mask:
            for e in range(off + i + 1, off + i + _LINEAR_PROBES + 1):
                if store[e] == _EMPTY:
                    store[e] = key
                    return
        perturb >>= _PERTURB_SHIFT
        i = (i * 5 + 1 + perturb) & mask


@njit(cache=True, error_model="numpy")
def _resize(store: np.ndarray, s: int, minused: int) -> None:
    """``set_table_resize``: smallest power-of-two size > minused; re-insert the keys in slot order.

    A small (8-slot) table without dummies asked for 8 slots is left as it is.
    """
    m = _meta(s)
    newsize = _MINSIZE
    while newsize <= minused:
        newsize <<= 1
    off = store[m + _OFF]
    size = store[m + _SIZE]
    used = store[m + _USED]
    if newsize == _MINSIZE and size == _MINSIZE and store[m + _FILL] == used:
        return
    new = _alloc(store, newsize)
    for slot in range(off, off + size):
        k = store[slot]
        if k >= 0:
            _insert_clean(store, new, newsize - 1, k)
    c = _size_class(size)  # release the old table
    store[off] = store[1 + c]
    store[1 + c] = off
    store[m + _OFF] = new
    store[m + _SIZE] = newsize
    store[m + _FILL] = used


@njit(cache=True, error_model="numpy")
def _add_entry(store: np.ndarray, s: int, key: int) -> bool:
    """``set_add_entry`` up to its resize check: set s .add(key); True if the table must now be resized.

    The caller then calls ``resize_after_add`` (split off so that this per-key function calls nothing).
    """
    m = _meta(s)
    off = store[m + _OFF]
    mask = store[m + _SIZE] - 1
    i = key & mask
    perturb = key
    freeslot = -1
    while True:
        probes = _LINEAR_PROBES if i + _LINEAR_PROBES <= mask else 0
        for e in range(off + i, off + i + probes + 1):
            v = store[e]
            if v == _EMPTY:
                store[m + _USED] += 1
                if freeslot >= 0:  # reuse a dummy: fill is unchanged, so no resize
                    store[freeslot] = key
                    return False
                store[e] = key
                store[m + _FILL] += 1
                return store[m + _FILL] * 5 >= mask * 3
            if v == key:
                return False
            if v == _DUMMY:
                freeslot = e  # the last dummy before the first unused slot wins
        perturb >>= _PERTURB_SHIFT
        i = (i * 5 + 1 + perturb) & mask


@njit(cache=True, error_model="numpy")
def resize_after_add(store: np.ndarray, s: int) -> None:
    used = store[_meta(s) + _USED]
    _resize(store, s, used * 2 if used > 50000 else used * 4)


@njit(cache=True, error_model="numpy")
def set_add(store: np.ndarray, s: int, key: int) -> None:
    """``set_add_entry``: set s .add(key). Needs ``add_room`` free slots."""
    if _add_entry(store, s, key):
        resize_after_add(store, s)


@njit(cache=True, error_model="numpy")
def set_discard(store: np.ndarray, s: int, key: int) -> None:
    """``set_discard_entry``: set s .discard(key); the key's slot becomes a dummy."""
    m = _meta(s)
    off = store[m + _OFF]
    mask = store[m + _SIZE] - 1
    i = key & mask
    perturb = key
    while True:
        probes = _LINEAR_PROBES if i + _LINEAR_PROBES <= mask else 0
        for e in range(off + i, off + i + probes + 1):
            v = store[e]
            if v == _EMPTY:
                return
            if v == key:
                store[e] = _DUMMY
                store[m + _USED] -= 1
                return
        perturb >>= _PERTURB_SHIFT
        i = (i * 5 + 1 + perturb) & mask


@njit(cache=True, error_model="numpy")
def _merge(store: np.ndarray, s: int, o: int) -> None:
    """``set_merge``: set s .update(set o), o != s."""
    ms = _meta(s)
    mo = _meta(o)
    oused = store[mo + _USED]
    if oused == 0:
        return
    if (store[ms + _FILL] + oused) * 5 >= (store[ms + _SIZE] - 1) * 3:
        _resize(store, s, (store[ms + _USED] + oused) * 2)
    off = store[ms + _OFF]
    size = store[ms + _SIZE]
    ooff = store[mo + _OFF]
    osize = store[mo + _SIZE]
    if store[ms + _FILL] == 0 and size == osize and store[mo + _FILL] == oused:
        for slot in range(size):  # same size, no dummies: CPython copies the slots as they are
            store[off + slot] = store[ooff + slot]
        store[ms + _FILL] = oused
        store[ms + _USED] = oused
        return
    if store[ms + _FILL] == 0:
        for slot in range(ooff, ooff + osize):
            k = store[slot]
            if k >= 0:
                _insert_clean(store, off, size - 1, k)
        store[ms + _FILL] = oused
        store[ms + _USED] = oused
        return
    for slot in range(ooff, ooff + osize):  # o's table does not move while s grows
        k = store[slot]
        if k >= 0 and _add_entry(store, s, k):
            resize_after_add(store, s)


@njit(cache=True, error_model="numpy")
def set_copy(store: np.ndarray, dst: int, src: int) -> None:
    """Set dst = set src .copy() (also the first step of ``union``)."""
    set_init(store, dst)
    _merge(store, dst, src)


@njit(cache=True, error_model="numpy")
def set_union(store: np.ndarray, dst: int, a: int, b: int) -> None:
    """Set dst = set a .union(set b), a != b."""
    set_copy(store, dst, a)
    _merge(store, dst, b)


@njit(cache=True, error_model="numpy")
def set_difference(store: np.ndarray, dst: int, src: int, keys: np.ndarray) -> None:
    """Set dst = set src .difference(other), for a set ``other`` holding the distinct ``keys``."""
    if (store[_meta(src) + _USED] >> 2) > keys.size:  # set_copy_and_difference
        set_copy(store, dst, src)
        for k in keys:
            set_discard(store, dst, k)
        # set_difference_update_internal: more than 1/4 of the slots dummies -> resize them away.
        m = _meta(dst)
        used = store[m + _USED]
        if store[m + _FILL] - used > (store[m + _SIZE] - 1) // 4:
            _resize(store, dst, used * 2 if used > 50000 else used * 4)
        return
    set_init(store, dst)
    off = store[_meta(src) + _OFF]
    for slot in range(off, off + store[_meta(src) + _SIZE]):
        k = store[slot]
        if k >= 0:
            keep = True
            for x in keys:
                if k == x:
                    keep = False
            if keep and _add_entry(store, dst, k):
                resize_after_add(store, dst)


@njit(cache=True, error_model="numpy")
def union_difference_room(len_a: int, len_b: int) -> int:
    """Free slots that ``set_union`` then ``set_difference`` (by <= 2 keys) of sets this large may take.

    Each table they allocate has at most max(8, 8 * (len_a + len_b)) slots (a resize asks for the smallest
    power of two above at most 4 * used), and they allocate at most six: the union's initial table, copy
    resize and merge resize (set_merge resizes at most once, up front), the difference's initial table,
    copy resize and dummy-purging resize.
    """
    return 6 * 8 * (len_a + len_b + 1)


@njit(cache=True, error_model="numpy")
def add_room(length: int) -> int:
    """Free slots that ``set_add`` to a set of this length may take (one resize to <= 8 * used slots)."""
    return 8 * (length + 1)


# ---------------------------------------------------------------------------------------------------------
# Numerics (bit-identical to merge.py's numpy code).
# ---------------------------------------------------------------------------------------------------------

_EPS = np.float32(1e-12)
_QUANT = np.float32(2.0**26)
_PW_BLOCKSIZE = 128


def pairwise_plan(n: int) -> np.ndarray:
    """numpy's float32 pairwise summation order for n terms (``FLOAT_pairwise_sum``, loops_utils.h.src).

    numpy sums n <= 128 terms in one block (``_pairwise_sum``'s leaf loop), and otherwise the first
    n // 2 (rounded down to a multiple of 8) and the rest separately, then adds the two. The plan is that
    recursion in postfix order: rows (start, length) sum a block and push it; rows (-1, -1) replace the top
    two sums by their sum. (Built here, not recursively in numba, whose on-disk cache cannot load recursive
    functions.)
    """
    ops: list[tuple[int, int]] = []

    def visit(start: int, length: int) -> None:
        if length <= _PW_BLOCKSIZE:
            ops.append((start, length))
            return
        half = length // 2
        half -= half % 8
        visit(start, half)
        visit(start + half, length - half)
        ops.append((-1, -1))

    visit(0, n)
    return np.array(ops, dtype=np.int64).reshape(-1, 2)


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
    denom = max(norm, _EPS)  # as merge.py (no NaN reaches here: merge.py guards the feature range)
    for k in range(c):
        quant[row, k] = np.int32(np.rint(mean[k] / denom * _QUANT))


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
    atomic refcount updates (see ``_add_entry``).
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
    keys); ``store`` is a fresh ``new_set_store`` for at least 2 * h * w + 1 sets; ``plan`` is
    ``pairwise_plan(C)``. Returns (ids, offsets, labels): level l outputs the clusters
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
    store = reserve(store, _MINSIZE * n + n * add_room(4))
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
            if _add_entry(store, p, other):
                resize_after_add(store, p)
            if _add_entry(store, other, p):
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
            new_off = store[_meta(new) + _OFF]
            new_end = new_off + store[_meta(new) + _SIZE]
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
                if _add_entry(store, nb, new):
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
