"""How well Stage 1 recovered a known hierarchy: pseudo-labels scored against ground truth (synthetic scenes).

For every ground-truth region (object, part, sub-part) the best IoU with any pseudo-label of the same image is
taken; per level the CSV gives the number of regions, the mean best IoU, the fraction found at IoU >= 0.5 (a
region with no pseudo-label file or no mask counts as best IoU 0), and the mean boundary F-measure (DAVIS F,
:mod:`unsamv2.core.boundary`, tolerance 0.8 % of the image diagonal) of each region's best-IoU pseudo-label (0
when there is none) — how closely the masks follow the true edges, which IoU of large regions hides. This is the
measure the offline demo needs to tell "discovery found the parts" from "training learned them".
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from unsamv2.core.boundary import boundary_f_measure
from unsamv2.core.mask_overlap import mask_iou_matrix
from unsamv2.datasets.synthetic_scenes import LEVEL_NAMES
from unsamv2.io.atomic import atomic_output
from unsamv2.io.masks import decode_rle
from unsamv2.io.pseudo_labels import read_annotations

__all__ = ["RECALL_COLUMNS", "best_ious_per_level", "best_matches_per_level", "write_recall_csv"]

RECALL_COLUMNS: tuple[str, ...] = ("level", "n_regions", "mean_best_iou", "found_at_iou50", "mean_boundary_f")


def best_ious_per_level(pseudo_dir: str | Path, annotations_dir: str | Path) -> dict[str, list[float]]:
    """Best IoU of each ground-truth region with any pseudo-label, grouped by level name."""
    return {level: [iou for iou, _ in pairs]
            for level, pairs in best_matches_per_level(pseudo_dir, annotations_dir).items()}


def best_matches_per_level(
    pseudo_dir: str | Path, annotations_dir: str | Path
) -> dict[str, list[tuple[float, float]]]:
    """(best IoU, boundary F of that best-IoU pseudo-label) of each ground-truth region, grouped by level name.

    ``annotations_dir`` holds the ground-truth JSONs (``level`` per annotation, as written by
    :func:`unsamv2.datasets.synthetic.write_synthetic_dataset`); ``pseudo_dir`` the pseudo-labels of the same
    file names. A ground-truth file without a ``level`` on an annotation is an error naming the file.
    """
    pseudo_dir, annotations_dir = Path(pseudo_dir), Path(annotations_dir)
    gt_files = sorted(annotations_dir.glob("*.json"))
    if not gt_files:
        raise FileNotFoundError(f"no ground-truth JSON in {annotations_dir}")
    best: dict[str, list[tuple[float, float]]] = {name: [] for name in LEVEL_NAMES}
    for gt_file in gt_files:
        gt_anns = read_annotations(gt_file)
        if not gt_anns:
            continue
        if any("level" not in a for a in gt_anns):
            raise ValueError(f"{gt_file}: ground-truth annotations need a 'level' (0 object, 1 part, 2 sub-part)")
        gt = np.stack([decode_rle(a["segmentation"]).astype(bool) for a in gt_anns])
        pl_file = pseudo_dir / gt_file.name
        pl_anns = read_annotations(pl_file) if pl_file.is_file() else []
        if pl_anns:
            pred = np.stack([decode_rle(a["segmentation"]).astype(bool) for a in pl_anns])
            if pred.shape[1:] != gt.shape[1:]:
                raise ValueError(f"{pl_file}: masks are {pred.shape[1:]}, the ground truth {gt.shape[1:]}")
            ious = mask_iou_matrix(gt, pred)
            match = ious.argmax(axis=1)
            scores = ious[np.arange(len(gt)), match]
            # A region no pseudo-label touches has no match, so no boundary to score.
            f_values = [boundary_f_measure(g, pred[j]) if iou > 0 else 0.0
                        for g, j, iou in zip(gt, match, scores, strict=True)]
        else:
            scores = np.zeros(len(gt), dtype=np.float32)
            f_values = [0.0] * len(gt)
        for ann, score, f in zip(gt_anns, scores, f_values, strict=True):
            best[LEVEL_NAMES[int(ann["level"])]].append((float(score), float(f)))
    return best


def write_recall_csv(pseudo_dir: str | Path, annotations_dir: str | Path, out_csv: str | Path) -> list[dict]:
    """Per-level recall rows (plus ``all``) written atomically to ``out_csv``; returns the rows."""
    best = best_matches_per_level(pseudo_dir, annotations_dir)
    groups = {**{k: v for k, v in best.items() if v}, "all": [s for v in best.values() for s in v]}
    rows = []
    for level, pairs in groups.items():
        if not pairs:
            continue
        scores, f_values = np.asarray(pairs, dtype=np.float64).T
        rows.append({"level": level, "n_regions": len(pairs),
                     "mean_best_iou": round(100 * float(np.mean(scores)), 2),
                     "found_at_iou50": round(100 * float(np.mean(scores >= 0.5)), 2),
                     "mean_boundary_f": round(float(np.mean(f_values)), 4)})
    with atomic_output(out_csv) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=RECALL_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return rows
