"""Benchmark: peak memory of the mask-pair overlaps behind the ground-truth hierarchy (`divide: sa1b_gt`).

The hierarchy compares every pair of an image's masks (``unsamv2.core.mask_overlap.intersection_matrix`` of the
stack against itself); an SA-1B image has about 100 masks of 1500 x 2250 pixels, some several hundred. Each run
measures, in the same process and on the same masks, the shipped function and the previous one (copied below as
the baseline: chunks of 2**22 pixels whatever the mask count, a float32 copy of the chunk for each side), and
prints the ratios:

* ``memory ratio`` = previous peak / shipped peak (allocations traced by tracemalloc; NumPy reports its own)
* ``time ratio``   = shipped time / previous time (medians of ``--repeats`` alternating runs)

Both give the same counts (checked). Masks are random ellipses; a full ``ground_truth_hierarchy`` call is timed
too, for scale.

    python benchmarks/bench_ground_truth_memory.py --masks 50 100 --height 1500 --width 2250
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
import tracemalloc
from collections.abc import Callable

import numpy as np

from unsamv2.core.mask_overlap import CHUNK_PIXELS, flatten_masks, intersection_matrix
from unsamv2.discovery.config import DiscoveryConfig
from unsamv2.discovery.ground_truth import ground_truth_hierarchy


def previous_intersection_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The baseline: ``intersection_matrix`` before ``CHUNK_BYTES`` (same exact counts)."""
    fa, fb = flatten_masks(a), flatten_masks(b)
    out = np.zeros((a.shape[0], b.shape[0]), dtype=np.int64)
    for start in range(0, fa.shape[1], CHUNK_PIXELS):
        ca = fa[:, start : start + CHUNK_PIXELS].astype(np.float32)
        cb = fb[:, start : start + CHUNK_PIXELS].astype(np.float32)
        out += np.rint(ca @ cb.T).astype(np.int64)
    return out


def ellipses(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.ogrid[:height, :width]
    masks = np.zeros((n, height, width), dtype=bool)
    for k in range(n):
        cy, cx = rng.integers(0, height), rng.integers(0, width)
        ry, rx = rng.integers(10, height // 3), rng.integers(10, width // 3)
        masks[k] = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    return masks


def traced(fn: Callable[[], np.ndarray]) -> tuple[np.ndarray, float, float]:
    """(result, peak MiB allocated during the call, seconds)."""
    tracemalloc.start()
    t0 = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return result, peak / 2**20, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--masks", type=int, nargs="+", default=[50, 100], help="masks per image")
    parser.add_argument("--height", type=int, default=1500)
    parser.add_argument("--width", type=int, default=2250)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="one JSON line per mask count")
    args = parser.parse_args(argv)
    for n in args.masks:
        masks = ellipses(n, args.height, args.width)
        peaks: dict[str, list[float]] = {"shipped": [], "previous": []}
        times: dict[str, list[float]] = {"shipped": [], "previous": []}
        runs = {"shipped": lambda m=masks: intersection_matrix(m, m),
                "previous": lambda m=masks: previous_intersection_matrix(m, m)}
        results = {}
        for r in range(args.repeats):
            for name in (("shipped", "previous") if r % 2 == 0 else ("previous", "shipped")):
                results[name], peak, seconds = traced(runs[name])
                peaks[name].append(peak)
                times[name].append(seconds)
        assert np.array_equal(results["shipped"], results["previous"]), "the counts differ"
        t0 = time.perf_counter()
        ground_truth_hierarchy(masks, DiscoveryConfig(divide="sa1b_gt"))
        hierarchy_s = time.perf_counter() - t0
        new_mib, old_mib = max(peaks["shipped"]), max(peaks["previous"])
        new_s, old_s = statistics.median(times["shipped"]), statistics.median(times["previous"])
        row = {"masks": n, "image": f"{args.height}x{args.width}", "masks_mib": round(masks.nbytes / 2**20),
               "peak_mib_shipped": round(new_mib), "peak_mib_previous": round(old_mib),
               "memory_ratio": round(old_mib / new_mib, 2), "seconds_shipped": round(new_s, 1),
               "seconds_previous": round(old_s, 1), "time_ratio": round(new_s / old_s, 2),
               "hierarchy_seconds": round(hierarchy_s, 1)}
        if args.json:
            print(json.dumps(row))
        else:
            print(f"{n} masks of {row['image']} ({row['masks_mib']} MiB): pair overlaps peak "
                  f"{row['peak_mib_shipped']} MiB shipped vs {row['peak_mib_previous']} MiB previous "
                  f"(memory ratio {row['memory_ratio']}x); {new_s:.1f} s vs {old_s:.1f} s "
                  f"(time ratio {row['time_ratio']}); whole hierarchy {hierarchy_s:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
