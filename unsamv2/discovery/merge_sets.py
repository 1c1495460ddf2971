"""CPython's set tables, slot for slot, for int keys: the neighbour sets of the compiled merge loop.

The conquer step's tie-breaking and output order follow the *iteration order* of
``nbrs[i].union(nbrs[j]).difference({i, j})`` (see ``merge.py``), which is the slot order of CPython's hash
table and depends on the whole add/discard history of every neighbour set. The compiled loop
(``merge_kernel.py``) therefore cannot use a different set: this module emulates, slot for slot, the parts of
CPython's ``Objects/setobject.c`` that those operations use, for int keys (``hash(k) == k`` for
0 <= k < 2**61 - 1): ``set_add_entry`` (linear probing over LINEAR_PROBES = 9 slots, then the perturbed
probe sequence ``i = (i * 5 + 1 + perturb) & mask``; a key goes into the *last* dummy slot met before the
first unused slot; the table grows when fill * 5 >= mask * 3), ``set_discard_entry`` (the slot becomes a
dummy), ``set_table_resize`` (re-insert in slot order with ``set_insert_clean``; a clean small table is left
untouched), ``set_merge`` (``union``/``copy``: one up-front resize, then a slot copy, clean inserts or normal
adds) and ``set_difference`` (copy-and-discard when the set has more than 4x as many keys as the other set,
else rebuild by adds). ``tests/discovery/test_merge.py`` checks the emulation against real sets with
hypothesis property tests over random add/discard/union/difference histories (sensitive to each reachable
rule: a change to the dummy reuse, the resize threshold, the slot-copy or the copy-and-discard rule fails
them), and ``merge.py`` uses the compiled loop only on the CPython minor versions the tests passed on
(``merge._SET_ORDER_VERIFIED``); any other interpreter takes the pure-Python path.

A set's table is a power-of-two run of int64 slots (``_EMPTY`` = never used, ``_DUMMY`` = deleted, else the
key) with its ``fill`` (used + dummy slots) and ``used`` (keys) counts, which steer resizes; all tables live
in one array (layout below). Every function called from a compiled function is compiled itself
(``cache=True``: numba keeps the machine code on disk for later processes).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = [
    "MINSIZE",
    "add_entry",
    "add_room",
    "new_set_store",
    "reserve",
    "resize_after_add",
    "set_copy",
    "set_difference",
    "set_discard",
    "set_init",
    "set_len",
    "set_release",
    "set_slots",
    "set_union",
    "union_difference_room",
]

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
# per-key functions (add_entry, set_discard, _insert_clean) call nothing. Set operations never move
# ``store``: callers ``reserve`` room for the worst case first.
# ---------------------------------------------------------------------------------------------------------

_EMPTY = -1
_DUMMY = -2
MINSIZE = 8  # PySet_MINSIZE
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
    store = np.empty(tables + max(table_capacity, MINSIZE), dtype=np.int64)
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
    while (MINSIZE << c) < size:
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
    store[m + _OFF] = _alloc(store, MINSIZE)
    store[m + _SIZE] = MINSIZE
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
def set_slots(store: np.ndarray, s: int) -> tuple[int, int]:
    """(start, end) of set s's table in ``store``: its keys are the slots ``>= 0`` there, in iteration order.

    For walking a set without allocating; valid until the set is next changed.
    """
    m = _meta(s)
    return store[m + _OFF], store[m + _OFF] + store[m + _SIZE]


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
    newsize = MINSIZE
    while newsize <= minused:
        newsize <<= 1
    off = store[m + _OFF]
    size = store[m + _SIZE]
    used = store[m + _USED]
    if newsize == MINSIZE and size == MINSIZE and store[m + _FILL] == used:
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
def add_entry(store: np.ndarray, s: int, key: int) -> bool:
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
        if k >= 0 and add_entry(store, s, k):
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
            if keep and add_entry(store, dst, k):
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
    """Free slots that adding one key (``add_entry`` + ``resize_after_add``) to a set of this length may take
    (one resize to <= 8 * used slots)."""
    return 8 * (length + 1)

