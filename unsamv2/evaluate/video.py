"""DAVIS video-segmentation measures: region similarity J, boundary F-measure F and their per-object statistics.

Implemented from the definitions of the DAVIS-2017 evaluator (``davisvideochallenge/davis2017-evaluation``,
``davis2017/metrics.py`` and ``utils.db_statistics``; method.md §5.3):

* **J** = |GT ∩ pred| / |GT ∪ pred| over the pixels that are not void, and 1 when that union is empty.
* **F** (:mod:`unsamv2.core.boundary`, shared with the pseudo-label recall): both masks lose their void pixels,
  become one-pixel boundary maps (:func:`boundary_map`), and each map is dilated by a disk of radius
  ``bound_pix = ceil(bound_th · ‖(H, W)‖₂)`` (``bound_th`` ≥ 1 is a radius in pixels). Precision = predicted boundary pixels within the GT's dilated boundary / predicted boundary pixels, recall the
  other way round; no predicted but some GT boundary → P = 1, R = 0; some predicted but no GT boundary → P = 0,
  R = 1; neither → P = R = 1. F = 2PR / (P + R), 0 when P + R = 0.
* Per object over its frames: **mean** = mean ignoring NaN frames; **recall** = fraction of frames > 0.5 (a NaN
  frame counts as not above, as the evaluator's ``nanmean`` of a boolean array does); **decay** = mean of the first
  of four bins minus mean of the last (NaNs ignored), the bin edges ``round(linspace(1, n, 5) + 1e-10) − 1``, each
  bin including its upper edge, so neighbouring bins share a frame.

Void in the official semi-supervised run: ``DAVIS.get_all_masks`` sets 255 to 0 *before* the evaluator looks for
void pixels, so void never removes anything there and a 255 pixel counts as background. :func:`score_sequence`
reproduces that run (``void_as_background=True``, the default) so that its numbers are the evaluator's; the metric
functions take an explicit ``void`` mask for callers who want it excluded. The evaluator's ``uint8`` bin indices
wrap for sequences over 255 frames; here they are plain integers (the same bins for every DAVIS sequence).
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

# The boundary measure lives in core (the pseudo-label recall uses it too); re-exported as this module's API.
from unsamv2.core.boundary import BOUNDARY_THRESHOLD, boundary_f_measure, boundary_map, boundary_radius

__all__ = [
    "BOUNDARY_THRESHOLD",
    "boundary_f_measure",
    "boundary_map",
    "boundary_radius",
    "dataset_means",
    "region_similarity",
    "score_sequence",
    "sequence_statistics",
]


def region_similarity(gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None = None) -> float:
    """J: the IoU of two (H, W) masks over the non-void pixels; 1.0 when both are empty there."""
    g = np.asarray(gt).astype(bool)
    p = np.asarray(pred).astype(bool)
    if g.ndim != 2 or g.shape != p.shape:
        raise ValueError(f"ground truth {g.shape} and prediction {p.shape} must be 2-D masks of one shape")
    keep = np.ones_like(g) if void is None else ~np.asarray(void).astype(bool)
    if keep.shape != g.shape:
        raise ValueError(f"void mask {keep.shape} does not match the masks {g.shape}")
    union = int(np.count_nonzero((g | p) & keep))
    if union == 0:
        return 1.0
    return int(np.count_nonzero(g & p & keep)) / union


def sequence_statistics(values: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
    """(mean, recall, decay) of one object's per-frame J or F values (module docstring); NaN for no frames."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    n = x.size
    if n == 0:
        return math.nan, math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # all-NaN slices give NaN, as intended
        mean = float(np.nanmean(x))
        recall = float(np.mean(x > 0.5))
        edges = (np.round(np.linspace(1, n, 5) + 1e-10) - 1).astype(np.int64)
        first = x[edges[0]:edges[1] + 1]
        last = x[edges[3]:edges[4] + 1]
        decay = float(np.nanmean(first) - np.nanmean(last))
    return mean, recall, decay


def score_sequence(gt_labels: Sequence[np.ndarray], pred_labels: Sequence[np.ndarray], object_ids: Sequence[int],
                   void_as_background: bool = True, drop_first_last: bool = True,
                   ) -> dict[int, dict[str, float]]:
    """Per-object J and F statistics of one sequence from label maps (object id per pixel), as the evaluator.

    ``gt_labels`` / ``pred_labels``: one (H, W) integer map per frame. The first and last frame are dropped
    (semi-supervised protocol) unless ``drop_first_last`` is false. With ``void_as_background`` (the official run),
    GT 255 pixels are background and nothing is excluded; otherwise they are excluded from both measures.
    Returns ``{object id: {"j_mean", "j_recall", "j_decay", "f_mean", "f_recall", "f_decay"}}``.
    """
    if len(gt_labels) != len(pred_labels):
        raise ValueError(f"{len(gt_labels)} ground-truth frames but {len(pred_labels)} predicted frames")
    frames = range(1, len(gt_labels) - 1) if drop_first_last else range(len(gt_labels))
    scores: dict[int, dict[str, float]] = {}
    for obj in object_ids:
        j_values, f_values = [], []
        for t in frames:
            gt = np.asarray(gt_labels[t])
            void = None if void_as_background else gt == 255
            g = gt == obj
            p = np.asarray(pred_labels[t]) == obj
            j_values.append(region_similarity(g, p, void))
            f_values.append(boundary_f_measure(g, p, void))
        jm, jr, jd = sequence_statistics(j_values)
        fm, fr, fd = sequence_statistics(f_values)
        scores[int(obj)] = {"j_mean": jm, "j_recall": jr, "j_decay": jd, "f_mean": fm, "f_recall": fr,
                            "f_decay": fd}
    return scores


def dataset_means(per_object: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Dataset values from per-object statistics: each column's plain mean over objects (as the evaluator's
    ``np.mean``), and J&F = (J-mean + F-mean) / 2. NaN when there is no object."""
    keys = ("j_mean", "j_recall", "j_decay", "f_mean", "f_recall", "f_decay")
    if not per_object:
        return {"jf_mean": math.nan, **{k: math.nan for k in keys}}
    out = {k: float(np.mean([float(row[k]) for row in per_object])) for k in keys}
    out["jf_mean"] = (out["j_mean"] + out["f_mean"]) / 2.0
    return out
