"""Interactive-segmentation metrics: IoU with ignore pixels, NoC@t, 1-IoU, failures at the click budget.

Definitions follow RITM / GraCo ``isegm/inference/utils.py``:

* ``iou(gt, pred, ignore)``: intersection over union counted over non-ignored pixels only (RITM ``get_iou`` with
  the ignore label -1).
* ``noc(ious, t)``: the 1-based index of the first click whose IoU is >= t; ``max_clicks`` if no click reaches it
  (RITM ``compute_noc_metric``). The IoU sequence may be truncated (the click loop stops at the target IoU); a
  truncated sequence that never reached t therefore counts ``max_clicks``.
* 1-IoU: the mean IoU after the first click (RITM's ``iou_first = mean(ious[0])``), reported in percent.
* ``n_fail20``: objects whose NoC at the *target* IoU equals ``max_clicks`` — RITM's ">=20@90%" column. It counts
  an object that reached the target exactly on the last click too, like RITM does.

Deviation from RITM, on purpose: NoC for a threshold *above* the loop's target IoU (e.g. NoC90 on the part datasets,
whose loop stops at 0.85) cannot be computed from the truncated sequences, so it is reported as NaN. RITM prints
"?" there for the same reason (``iou_thrs = arange(0.8, min(0.95, target) + 0.001, 0.05)``).

IoUs are kept in float64 (RITM stores them as float32, which can make an IoU of exactly 0.9 fall just short of
0.9; we do not reproduce that rounding artefact).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["NOC_THRESHOLDS", "DatasetMetrics", "compute_metrics", "iou", "noc"]

#: The NoC thresholds every summary reports.
NOC_THRESHOLDS: tuple[float, ...] = (0.80, 0.85, 0.90)

# Guards float comparisons such as "is 0.85 above the target 0.85?" against representation noise.
_EPS = 1e-9


def iou(gt_mask: np.ndarray, pred_mask: np.ndarray, ignore_mask: np.ndarray | None = None) -> float:
    """IoU of two binary masks, counting only pixels outside ``ignore_mask``.

    An empty union (both masks empty on the valid pixels) counts as a perfect match, 1.0; RITM would divide 0 by 0
    there. Loaders never yield empty objects, so this only matters for hand-made inputs.
    """
    gt = np.asarray(gt_mask, dtype=bool)
    pred = np.asarray(pred_mask, dtype=bool)
    if gt.shape != pred.shape:
        raise ValueError(f"pred_mask has shape {pred.shape}, expected the ground truth's {gt.shape}")
    if ignore_mask is not None:
        valid = ~np.asarray(ignore_mask, dtype=bool)
        if valid.shape != gt.shape:
            raise ValueError(f"ignore_mask has shape {valid.shape}, expected {gt.shape}")
        gt = gt & valid
        pred = pred & valid
    union = int(np.count_nonzero(gt | pred))
    if union == 0:
        return 1.0
    return int(np.count_nonzero(gt & pred)) / union


def noc(ious: Sequence[float], threshold: float, max_clicks: int = 20) -> int:
    """Number of clicks needed to reach ``threshold``: first 1-based index with IoU >= threshold, else ``max_clicks``."""
    for index, value in enumerate(ious[:max_clicks]):
        if value >= threshold:
            return index + 1
    return max_clicks


@dataclass(frozen=True)
class DatasetMetrics:
    """Aggregated metrics of one (model, dataset, granularity mode). NoC values above the target are NaN."""

    noc80: float
    noc85: float
    noc90: float
    iou1: float  # percent
    n_objects: int
    n_fail20: int


def compute_metrics(iou_sequences: Sequence[Sequence[float]], target_iou: float, max_clicks: int = 20) -> DatasetMetrics:
    """Aggregate per-object IoU sequences (each possibly truncated at ``target_iou``) into dataset metrics."""
    if not iou_sequences:
        raise ValueError("compute_metrics needs at least one object's IoU sequence")
    for seq in iou_sequences:
        if len(seq) == 0:
            raise ValueError("every object needs at least one IoU (the IoU after the first click)")

    def mean_noc(threshold: float) -> float:
        if threshold > target_iou + _EPS:
            return math.nan  # the loop stopped at the target: this NoC is not observable
        return float(np.mean([noc(seq, threshold, max_clicks) for seq in iou_sequences]))

    nocs = [mean_noc(t) for t in NOC_THRESHOLDS]
    iou1 = 100.0 * float(np.mean([seq[0] for seq in iou_sequences]))
    n_fail = sum(1 for seq in iou_sequences if noc(seq, target_iou, max_clicks) >= max_clicks)
    return DatasetMetrics(
        noc80=nocs[0], noc85=nocs[1], noc90=nocs[2], iou1=iou1, n_objects=len(iou_sequences), n_fail20=n_fail
    )
