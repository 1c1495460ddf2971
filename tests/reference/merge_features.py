"""Feature grids for the merge tests and ``benchmarks/bench_merge.py``: merges at every threshold."""

from __future__ import annotations

import numpy as np


def structured_features(grid: int, dim: int, seed: int = 0, noise: float = 0.32) -> np.ndarray:
    """Piecewise-smooth features: 27 Voronoi regions with hierarchically related directions, plus noise.

    Directions: 3 random parents, 3 children per parent, 3 leaves per child, so region pairs sit at several
    similarity levels; the soft Voronoi blending gives smooth region borders and the noise makes single
    patches less similar than region means, so merging proceeds at every threshold.
    """
    rng = np.random.default_rng(seed)

    def unit(v: np.ndarray) -> np.ndarray:
        return v / np.linalg.norm(v, axis=-1, keepdims=True)

    parents = unit(rng.standard_normal((3, dim)))
    children = unit(np.repeat(parents, 3, axis=0) + 0.8 * unit(rng.standard_normal((9, dim))))
    leaves = unit(np.repeat(children, 3, axis=0) + 0.45 * unit(rng.standard_normal((27, dim))))
    sites = rng.uniform(0, grid, size=(27, 2))
    yy, xx = np.mgrid[0:grid, 0:grid].astype(np.float64)
    d2 = (yy[..., None] - sites[:, 0]) ** 2 + (xx[..., None] - sites[:, 1]) ** 2
    weights = np.exp(-(d2 - d2.min(axis=-1, keepdims=True)) / (2 * (0.6 * grid / 16) ** 2))
    weights /= weights.sum(axis=-1, keepdims=True)
    feats = weights @ leaves + noise / np.sqrt(dim) * rng.standard_normal((grid, grid, dim))
    return feats.astype(np.float32)
