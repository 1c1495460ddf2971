"""MaskCut (CutLER, Wang et al. 2023): several normalised cuts on a patch-feature graph.

Follows ``maskcut/maskcut.py`` (``get_affinity_matrix``, ``second_smallest_eigenvector``,
``get_salient_areas``, ``check_num_fg_corners``, ``get_masked_affinity_matrix``, ``maskcut_forward``) of
facebookresearch/CutLER and TokenCut's ``detect_box``. For each of ``n_masks`` rounds, on an (h, w, C)
feature grid:

1. L2-normalise the patch features (a zero vector stays zero), cosine affinity ``A = f fᵀ``, binarised:
   ``1`` where ``A > tau``, ``eps = 1e-5`` elsewhere (the "eps trick" keeps the graph connected and ``D``
   positive definite). Self-loops are kept, as in CutLER. ``D = diag(A 1)``.
2. Second smallest generalised eigenvector ``v`` of ``(D − A) v = λ D v`` (``scipy.linalg.eigh`` with
   ``subset_by_index=[1, 2]``); bipartition ``v > mean(v)``.
3. Foreground side: reverse the bipartition if 3 or 4 of the grid corners are foreground (object-centric
   bias), else if the patch with the largest ``|v|`` is not foreground. The seed is ``argmax(v)``
   (``argmax(−v)`` after a reversal).
4. Keep the 4-connected component of the bipartition that contains the seed.
5. From the second round on, reject the mask (make it empty) if its IoU with the *previous round's* mask is
   > 0.5 or it covers <= 1 % of the grid.
6. Mask out the accepted patches for the next rounds by zeroing their features (their affinities become eps).
   The round's output is its mask minus the union of earlier outputs, so outputs are disjoint.

Quirk kept: a rejected round leaves the graph unchanged and sets the "previous mask" to the empty mask, so the
next round finds the same cut and now accepts it (minus the earlier outputs).

Deviations from CutLER, all deliberate:

* This module works on the patch grid only. CutLER's pixel-level post-processing of each mask (dense CRF, hole
  filling, drop when the CRF output has IoU < 0.5 with the cut) is :func:`unsamv2.discovery.crf.maskcut_crf`,
  which the pipeline applies to every mask (``discovery.maskcut_crf``).
* Any rectangular grid is accepted (CutLER's masking reshapes to ``ps × ps`` and so needs a square grid; it
  always resizes images to 480 × 480).
* Computation in float64 NumPy rather than float32 torch; cosine values sitting exactly on ``tau`` may
  binarise differently.
* Empty rounds are dropped by :func:`maskcut` (CutLER writes no annotation for an empty mask either);
  :func:`maskcut_forward` returns every round.
* Scores: MaskCut itself has no confidence (UnSAMv2 thresholds the *CutLER detector* score at 0.3). We score
  a mask by how well it is cut from the rest of the image on the same binary graph, computed on the original
  (unmasked) features: ``score = clip(1 − NCut(S, V∖S), 0, 1)`` with
  ``NCut = cut(S, S̄) / vol(S) + cut(S, S̄) / vol(S̄)``. A cleanly separated object scores ≈ 1, a random split
  of a homogeneous region ≈ 0 (NCut ≈ 1); an empty or full-grid mask scores 0. So ``score > 0.3`` means
  ``NCut < 0.7``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.linalg import eigh

from unsamv2.core.mask_overlap import iou_from_counts

AFFINITY_EPS = 1e-5
_REJECT_IOU = 0.5
_MIN_AREA_RATIO = 0.01


@dataclass(frozen=True)
class MaskCutStep:
    """One MaskCut round.

    Attributes:
        mask: (h, w) bool output of the round: the accepted component minus earlier outputs (may be empty).
        component: (h, w) bool connected component containing the seed, before rejection and subtraction.
        rejected: True if the round's component was rejected (IoU > 0.5 with the previous one, or <= 1 %).
        eigenvector: (h, w) second smallest generalised eigenvector as the solver returns it (any sign).
    """

    mask: np.ndarray
    component: np.ndarray
    rejected: bool
    eigenvector: np.ndarray


def _check_features(features: np.ndarray) -> np.ndarray:
    feats = np.asarray(features, dtype=np.float64)
    if feats.ndim != 3:
        raise ValueError(f"features: expected an (h, w, C) patch-feature grid, got shape {feats.shape}")
    if feats.shape[0] * feats.shape[1] < 3:
        raise ValueError(f"features: need at least 3 patches for a second eigenvector, got {feats.shape[:2]}")
    if not np.all(np.isfinite(feats)):
        raise ValueError("features: contains NaN or Inf")
    return feats


def binary_affinity(features_flat: np.ndarray, tau: float = 0.15, eps: float = AFFINITY_EPS) -> np.ndarray:
    """CutLER's graph: 1 where the cosine similarity of two patches exceeds ``tau``, ``eps`` elsewhere.

    Args:
        features_flat: (n, C) patch features (not necessarily normalised; zero rows have similarity 0).
    """
    norms = np.linalg.norm(features_flat, axis=1, keepdims=True)
    # Same guard as torch.nn.functional.normalize (eps 1e-12): zeroed (masked-out) patches stay zero.
    unit = features_flat / np.maximum(norms, 1e-12)
    return np.where(unit @ unit.T > tau, 1.0, eps)


def _second_smallest_eigenvector(affinity: np.ndarray) -> np.ndarray:
    degree = affinity.sum(axis=1)
    _, vecs = eigh(np.diag(degree) - affinity, np.diag(degree), subset_by_index=[1, 2])
    return vecs[:, 0]


def _corner_count(bipartition: np.ndarray) -> int:
    """Number of the four grid corners in the foreground (CutLER's ``check_num_fg_corners``)."""
    return int(np.count_nonzero(bipartition[[0, 0, -1, -1], [0, -1, 0, -1]]))


def foreground_side(eigenvector: np.ndarray, grid_hw: tuple[int, int]) -> tuple[np.ndarray, int]:
    """CutLER's choice of the foreground side of ``v > mean(v)`` and of the seed patch.

    Reverse the bipartition if >= 3 grid corners are foreground, or else if the patch with the largest ``|v|``
    is background. The seed is ``argmax(v)``, or ``argmax(-v)`` after a reversal; it always lies in the
    foreground. Returns the (h, w) foreground grid and the flat seed index.
    """
    vec = np.asarray(eigenvector, dtype=np.float64).reshape(-1)
    bipartition = vec > np.sum(vec) / vec.size
    grid = bipartition.reshape(grid_hw)
    if _corner_count(grid) >= 3 or not bipartition[int(np.argmax(np.abs(vec)))]:
        return ~grid, int(np.argmax(-vec))
    return grid, int(np.argmax(vec))


def seed_component(eigenvector: np.ndarray, grid_hw: tuple[int, int]) -> np.ndarray:
    """The 4-connected foreground component (TokenCut's ``detect_box``) that contains the seed patch."""
    grid, seed = foreground_side(eigenvector, grid_hw)
    labels, _ = ndimage.label(grid)  # default structure = 4-connectivity, as in detect_box
    return labels == labels[np.unravel_index(seed, grid_hw)]


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(iou_from_counts(np.count_nonzero(a & b), np.count_nonzero(a), np.count_nonzero(b)))


def maskcut_forward(
    features: np.ndarray, n_masks: int = 3, tau: float = 0.15, eps: float = AFFINITY_EPS
) -> list[MaskCutStep]:
    """Run ``n_masks`` MaskCut rounds on an (h, w, C) feature grid and return every round (see module doc)."""
    feats = _check_features(features)
    h, w, c = feats.shape
    flat = feats.reshape(h * w, c)
    painting = np.zeros(h * w, dtype=bool)  # patches masked out so far
    previous = np.zeros((h, w), dtype=bool)  # the previous round's component (empty if it was rejected)
    taken = np.zeros((h, w), dtype=bool)  # union of the outputs so far
    steps: list[MaskCutStep] = []
    for round_index in range(n_masks):
        painting |= previous.reshape(-1)
        affinity = binary_affinity(np.where(painting[:, None], 0.0, flat), tau, eps)
        vec = _second_smallest_eigenvector(affinity)
        component = seed_component(vec, (h, w))
        rejected = False
        if round_index >= 1:
            ratio = np.count_nonzero(component) / (h * w)
            rejected = bool(_mask_iou(previous, component) > _REJECT_IOU or ratio <= _MIN_AREA_RATIO)
        accepted = np.zeros_like(component) if rejected else component
        out = accepted & ~taken
        taken |= out
        previous = accepted
        steps.append(MaskCutStep(out, component, rejected, vec.reshape(h, w)))
    return steps


def maskcut(features: np.ndarray, n_masks: int = 3, tau: float = 0.15) -> list[np.ndarray]:
    """MaskCut on an (h, w, C) patch-feature grid: up to ``n_masks`` disjoint (h, w) bool masks.

    Masks are in discovery order; rounds that produced an empty mask are dropped. ``tau`` = 0.15 is the value
    CutLER used to make its ImageNet pseudo-masks (the script's own default is 0.2).
    """
    return [step.mask for step in maskcut_forward(features, n_masks, tau) if step.mask.any()]


def ncut_value(affinity: np.ndarray, mask_flat: np.ndarray) -> float:
    """Normalised cut ``cut(S,S̄)/vol(S) + cut(S,S̄)/vol(S̄)`` of node set ``mask_flat``; inf if one is empty."""
    s = np.asarray(mask_flat, dtype=bool)
    if not s.any() or s.all():
        return float("inf")
    cut = affinity[np.ix_(s, ~s)].sum()
    degree = affinity.sum(axis=1)
    return float(cut / degree[s].sum() + cut / degree[~s].sum())


def maskcut_scores(
    features: np.ndarray, masks: list[np.ndarray] | np.ndarray, tau: float = 0.15, eps: float = AFFINITY_EPS
) -> np.ndarray:
    """Confidence of patch-grid masks: ``clip(1 − NCut, 0, 1)`` on the binary graph of the unmasked features.

    Args:
        features: the (h, w, C) grid the masks were cut from.
        masks: (h, w) bool masks (e.g. the output of :func:`maskcut`).

    Returns:
        float64 scores in [0, 1]; downstream keeps masks with score > 0.3, like the CutLER detector score.
    """
    feats = _check_features(features)
    h, w, c = feats.shape
    affinity = binary_affinity(feats.reshape(h * w, c), tau, eps)
    scores = []
    for mask in masks:
        m = np.asarray(mask, dtype=bool)
        if m.shape != (h, w):
            raise ValueError(f"masks: expected ({h}, {w}) patch masks, got {m.shape}")
        ncut = ncut_value(affinity, m.reshape(-1))
        scores.append(0.0 if not np.isfinite(ncut) else float(np.clip(1.0 - ncut, 0.0, 1.0)))
    return np.asarray(scores, dtype=np.float64)


def maskcut_with_scores(
    features: np.ndarray, n_masks: int = 3, tau: float = 0.15
) -> tuple[list[np.ndarray], np.ndarray]:
    """:func:`maskcut` and :func:`maskcut_scores` together: (masks in discovery order, their scores)."""
    masks = maskcut(features, n_masks, tau)
    return masks, maskcut_scores(features, masks, tau)


def _nearest_source_index(out_size: int, in_size: int) -> np.ndarray:
    """Source rows/cols of torch's ``F.interpolate(mode="nearest")``, bit for bit (float32 scale)."""
    if out_size == in_size:
        return np.arange(out_size)
    if out_size == 2 * in_size:
        return np.arange(out_size) >> 1
    scale = np.float32(in_size) / np.float32(out_size)
    src = np.floor(np.arange(out_size, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(src, in_size - 1)


def upsample_patch_mask(mask: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour upsampling of an (h, w) patch mask to ``out_hw`` = (H, W), as CutLER does.

    Pixel ``(y, x)`` takes patch ``(floor(y·h/H), floor(x·w/W))`` with torch's float32 arithmetic, so the
    result equals ``F.interpolate(mask[None, None].float(), size=out_hw, mode="nearest") > 0``.
    """
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise ValueError(f"mask: expected an (h, w) patch mask, got shape {m.shape}")
    out_h, out_w = int(out_hw[0]), int(out_hw[1])
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"out_hw: expected positive sizes, got {out_hw}")
    rows = _nearest_source_index(out_h, m.shape[0])
    cols = _nearest_source_index(out_w, m.shape[1])
    return m[np.ix_(rows, cols)]
