"""Benchmark: fast ``unsamv2.discovery.merge.iterative_merge`` against the upstream transcription
(``tests/reference/reference_merge.py``).

    python benchmarks/bench_merge.py [--grid 64] [--dim 768] [--repeats 3] [--cases structured,random]

For every feature case both implementations run on the same seeded features in this process (interleaved,
best of ``--repeats``); the outputs must be identical (same masks, same order, every level) or the script
exits with status 1. It prints the speed ratio against the transcription with the shared exact numerics
(``numerics="exact"``, the equality oracle) and, unless ``--no-torch``, against the transcription with
upstream's own ``torch.dot``/``F.normalize`` numerics (single-threaded, as upstream's per-pair calls are too
small for threads), whose masks are compared for information only.

Feature cases:
  structured  smooth Voronoi regions whose directions form a 3-level hierarchy plus noise; merges happen at
              every threshold 0.9 ... 0.5 (the realistic case).
  random      i.i.d. Gaussian features: no pair reaches 0.5, nothing merges (set-up cost only).
  uniform     i.i.d. uniform [0, 1) features: all pairs are similar (~0.75), so a single cluster absorbs the
              whole grid one patch at a time (worst case: the cluster has hundreds of neighbours).
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests.reference

from tests.reference.merge_features import structured_features
from tests.reference.reference_merge import reference_iterative_merge
from unsamv2.discovery.merge import iterative_merge

THETAS = (0.9, 0.8, 0.7, 0.6, 0.5)
TARGET_RATIO = 20.0


def make_features(case: str, grid: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if case == "structured":
        return structured_features(grid, dim, seed)
    if case == "random":
        return rng.standard_normal((grid, grid, dim)).astype(np.float32)
    if case == "uniform":
        return rng.random((grid, grid, dim)).astype(np.float32)
    raise ValueError(f"unknown case {case!r} (expected structured, random or uniform)")


def same_output(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, b))


def timed(fn: Callable[[], list[np.ndarray]]) -> tuple[float, list[np.ndarray]]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--grid", type=int, default=64, help="grid side (patches)")
    parser.add_argument("--dim", type=int, default=768, help="feature dimension C")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per implementation (best is kept)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--cases", default="structured,random", help="comma list of structured,random,uniform"
    )
    parser.add_argument("--no-torch", action="store_true", help="skip the upstream-numerics (torch) baseline")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)

    rows = []
    all_identical = True
    for case in [c.strip() for c in args.cases.split(",") if c.strip()]:
        feats = make_features(case, args.grid, args.dim, args.seed)
        ref_times, fast_times = [], []
        ref_out: list[np.ndarray] = []
        fast_out: list[np.ndarray] = []
        for _ in range(max(1, args.repeats)):  # interleaved, so load changes hit both alike
            t, ref_out = timed(functools.partial(reference_iterative_merge, feats, THETAS, 4))
            ref_times.append(t)
            t, fast_out = timed(functools.partial(iterative_merge, feats, THETAS, 4))
            fast_times.append(t)
        identical = same_output(ref_out, fast_out)
        all_identical &= identical
        torch_time = float("nan")
        torch_agrees = "-"
        if not args.no_torch:
            torch_time, torch_out = timed(
                functools.partial(reference_iterative_merge, feats, THETAS, 4, numerics="torch")
            )
            torch_agrees = "yes" if same_output(torch_out, fast_out) else "NO"
        rows.append(
            (
                case,
                "/".join(str(m.shape[0]) for m in fast_out),
                min(ref_times),
                torch_time,
                min(fast_times),
                "yes" if identical else "NO",
                torch_agrees,
            )
        )

    print(
        f"iterative merging, grid {args.grid}x{args.grid}, C={args.dim}, thetas {THETAS}, min_size 4, "
        f"best of {args.repeats}"
    )
    header = (
        f"{'case':<11} {'masks/level':<16} {'ref exact s':>11} {'ref torch s':>11} {'fast s':>8} "
        f"{'x exact':>8} {'x torch':>8}  {'identical':<9} {'torch agrees'}"
    )
    print(header)
    print("-" * len(header))
    for case, masks, t_ref, t_torch, t_fast, identical, torch_agrees in rows:
        x_torch = f"{'-':>8}" if math.isnan(t_torch) else f"{t_torch / t_fast:8.1f}"
        t_torch_s = f"{'-':>11}" if math.isnan(t_torch) else f"{t_torch:11.3f}"
        print(
            f"{case:<11} {masks:<16} {t_ref:11.3f} {t_torch_s} {t_fast:8.3f} {t_ref / t_fast:8.1f} "
            f"{x_torch}  {identical:<9} {torch_agrees}"
        )
    print(f"(target: {TARGET_RATIO:.0f}x; ratios are measured in this process and vary with machine load)")
    if not all_identical:
        print("FAIL: fast and reference outputs differ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
