"""Direct, unoptimised transcription of the UnSAMv2 "conquer" iterative merging (the baseline).

Transcribes ``granularity_divide_and_conquer/iterative_merging.py`` of ``yujunwei04/UnSAMv2`` at commit
7af093bccba2dad7e05cf1106429b499ac9dece3 (the same algorithm as ``divide_and_conquer/iterative_merging.py`` of
``frank-xwang/UnSAM`` at a327c68d91377ba0f88649d860e2b2fadb73bb2c). The data structures and the loop structure
are the upstream ones on purpose, so that this file is both the behavioural oracle for
``unsamv2.discovery.merge.iterative_merge`` and an honest timing baseline:

* a list of cluster dicts (``feature`` sum, ``normalized_feature``, full-grid ``mask``, ``num_of_patch``,
  ``neighbors`` set) where a merge appends a new cluster and never removes the old ones;
* a dict ``similarities`` keyed by ``(i, j)`` with ``i < j``; every merge scans the whole dict with
  ``max(similarities, key=similarities.get)`` — ties therefore go to the pair inserted into the dict first;
* the output of a level walks the dict in insertion order and emits each cluster the first time it appears.

Deliberate differences from the upstream file (none changes which clusters merge or the mask order):

* Levels that produce no mask are returned as an empty ``(0, h, w)`` array instead of being skipped, so the
  result always has one entry per threshold; the stacked masks are returned as ``bool`` (upstream stacks its
  float64 single-patch and bool merged masks, which gives float64 when ``min_size <= 1``).
* Numerics (``numerics="exact"``, the default): upstream computes similarities with ``torch.dot`` in float32,
  whose summation order is whatever the machine's BLAS does, so its last bit is not reproducible and a batched
  (vectorised) computation cannot be made to give the same bits. Here every number is defined so that it does
  not depend on summation order or batching: a norm is sqrt of numpy's float32 ``add.reduce`` of the squares
  (numpy's pairwise loop, the same for a lone vector and for a matrix row); a normalised feature u is
  quantised to integers q = rint(u * 2**26) (|q| <= 2**26 since |u| <= 1); the similarity is
  float32(q_a . q_b * 2**-52). Every partial sum of q_a . q_b is an integer below 2**53 (Cauchy-Schwarz), so
  float64 computes it exactly in any order. The quantisation step (2**-27 per component) is far below the
  float32 rounding of a similarity. ``unsamv2.discovery.merge_numerics`` defines the same numbers (written
  again here on purpose: the tests compare two independent codings of one definition).
  ``numerics="torch"`` uses ``torch.dot``/``F.normalize`` exactly as upstream (BLAS-dependent last bits);
  ``benchmarks/bench_merge.py`` times it and reports whether its masks agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

_EPS = np.float32(1e-12)  # F.normalize's default eps (denominator = max(norm, eps))
# Normalised features -> integers; 2**26 keeps every partial sum of a dot product below 2**53.
_QUANT = np.float32(2.0**26)
_DOT_SCALE = 2.0**-52  # undoes the two quantisation factors


def _normalize(x: np.ndarray) -> np.ndarray:
    """Quantised L2-normalised feature: rint(2**26 * x / max(||x||, eps)) as float64 integers."""
    x = x.astype(np.float32)
    norm = np.sqrt(np.add.reduce(x * x))
    unit = x / max(norm, _EPS)
    return np.rint(unit * _QUANT).astype(np.float64)


def _dot(qa: np.ndarray, qb: np.ndarray) -> float:
    """Cosine similarity of two quantised normalised features, rounded to float32 like ``torch.dot``."""
    return float(np.float32(np.dot(qa, qb) * _DOT_SCALE))


def reference_iterative_merge(
    features: np.ndarray,
    thetas: Sequence[float] = (0.9, 0.8, 0.7, 0.6, 0.5),
    min_size: int = 4,
    *,
    numerics: Literal["exact", "torch"] = "exact",
) -> list[np.ndarray]:
    """Upstream iterative merging, transcribed one-to-one (slow: O(#edges) per merge).

    Args:
        features: (h, w, C) patch-feature grid.
        thetas: cosine-similarity thresholds, applied in order without resetting between levels.
        min_size: a cluster is output only if it has at least this many patches.
        numerics: "exact" (order-independent numerics shared with the fast implementation, see the module
            docstring) or "torch" (upstream's ``torch.dot``/``F.normalize``; BLAS-dependent, used for timing).

    Returns:
        One bool array of shape (k, h, w) per threshold; k may be 0.
    """
    feats = np.asarray(features)
    # float64 input keeps float64 sums (what upstream does with a float64 tensor); anything else is float32,
    # the dtype of the released pipeline's (CPU) DINOv3 features.
    acc_dtype = np.float64 if feats.dtype == np.float64 else np.float32
    feats = feats.astype(acc_dtype, copy=False)
    H, W = feats.shape[:2]

    if numerics == "torch":
        import torch
        import torch.nn.functional as F

        def as_vec(v: np.ndarray) -> Any:
            return torch.from_numpy(np.ascontiguousarray(v))

        def normalize(v: Any) -> Any:
            return F.normalize(v.float(), dim=0)

        def dot(a: Any, b: Any) -> float:
            return torch.dot(a, b).item()

    elif numerics == "exact":

        def as_vec(v: np.ndarray) -> Any:
            return v

        normalize = _normalize
        dot = _dot
    else:
        raise ValueError(f"numerics must be 'exact' or 'torch', got {numerics!r}")

    def merged_clusters(i: int, j: int, clusters: list[dict[str, Any]]) -> dict[str, Any]:
        c1, c2 = clusters[i], clusters[j]
        count = c1["num_of_patch"] + c2["num_of_patch"]
        # A Python int divisor keeps the array dtype (NEP 50 / torch promotion): sum and mean stay in acc_dtype.
        mean = (c1["feature"] + c2["feature"]) / count
        return {
            "feature": c1["feature"] + c2["feature"],
            "normalized_feature": normalize(mean),
            "mask": (c1["mask"] + c2["mask"]) > 0,
            "num_of_patch": count,
            "neighbors": c1["neighbors"].union(c2["neighbors"]).difference({i, j}),  # upstream: set([i, j])
        }

    clusters: list[dict[str, Any]] = []
    similarities: dict[tuple[int, int], float] = {}

    cluster_idx = 0
    for y in range(H):
        for x in range(W):
            mask = np.zeros((H, W))  # float64 like upstream; merged masks become bool
            mask[y, x] = 1
            vec = as_vec(feats[y, x])
            clusters.append(
                {
                    "feature": vec,
                    "normalized_feature": normalize(vec),
                    "mask": mask,
                    "num_of_patch": 1,
                    "neighbors": set(),
                }
            )
            if (cluster_idx % W) != 0:
                clusters[cluster_idx]["neighbors"].add(cluster_idx - 1)
                clusters[cluster_idx - 1]["neighbors"].add(cluster_idx)
                similarities[(cluster_idx - 1, cluster_idx)] = dot(
                    clusters[cluster_idx - 1]["normalized_feature"],
                    clusters[cluster_idx]["normalized_feature"],
                )
            if (cluster_idx - W) >= 0:
                clusters[cluster_idx]["neighbors"].add(cluster_idx - W)
                clusters[cluster_idx - W]["neighbors"].add(cluster_idx)
                similarities[(cluster_idx - W, cluster_idx)] = dot(
                    clusters[cluster_idx - W]["normalized_feature"],
                    clusters[cluster_idx]["normalized_feature"],
                )
            cluster_idx += 1

    all_masks: list[np.ndarray] = []
    for theta in thetas:
        thresh = float(theta)  # upstream gets Python floats from argparse
        while len(similarities):
            i, j = max(similarities, key=similarities.get)  # type: ignore[arg-type]
            if similarities[(i, j)] < thresh:
                break

            merged = merged_clusters(i, j, clusters)
            clusters.append(merged)

            del similarities[(i, j)]
            for neighbor in merged["neighbors"]:
                if i in clusters[neighbor]["neighbors"]:
                    if neighbor < i:
                        del similarities[(neighbor, i)]
                    else:
                        del similarities[(i, neighbor)]
                    clusters[neighbor]["neighbors"].discard(i)
                if j in clusters[neighbor]["neighbors"]:
                    if neighbor < j:
                        del similarities[(neighbor, j)]
                    else:
                        del similarities[(j, neighbor)]
                    clusters[neighbor]["neighbors"].discard(j)

                similarities[(neighbor, cluster_idx)] = dot(
                    clusters[neighbor]["normalized_feature"], clusters[cluster_idx]["normalized_feature"]
                )
                clusters[neighbor]["neighbors"].add(cluster_idx)

            cluster_idx += 1

        single_level_masks = []
        counted_cluster: set[int] = set()
        for m, n in similarities:
            if m not in counted_cluster:
                counted_cluster.add(m)
                if clusters[m]["num_of_patch"] >= min_size:
                    single_level_masks.append(clusters[m]["mask"])
            if n not in counted_cluster:
                counted_cluster.add(n)
                if clusters[n]["num_of_patch"] >= min_size:
                    single_level_masks.append(clusters[n]["mask"])
        if single_level_masks:
            all_masks.append(np.stack(single_level_masks).astype(bool))
        else:
            all_masks.append(np.zeros((0, H, W), dtype=bool))

    return all_masks
