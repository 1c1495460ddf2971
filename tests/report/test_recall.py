"""Pseudo-label recall against known ground truth: hand-computed IoUs and a round trip on generated scenes."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from unsamv2.datasets.synthetic_scenes import write_synthetic_dataset
from unsamv2.io.masks import encode_rle
from unsamv2.report.recall import best_ious_per_level, best_matches_per_level, write_recall_csv


def _doc(masks: list[np.ndarray], levels: list[int] | None = None) -> dict:
    anns = []
    for i, m in enumerate(masks):
        ann = {"id": i, "segmentation": encode_rle(m)}
        if levels is not None:
            ann["level"] = levels[i]
        anns.append(ann)
    return {"image": {"file_name": "a.png"}, "annotations": anns}


def test_best_iou_per_level_matches_hand_computation(tmp_path: Path) -> None:
    gt_dir, pl_dir = tmp_path / "gt", tmp_path / "pl"
    gt_dir.mkdir()
    pl_dir.mkdir()
    obj = np.zeros((10, 10), bool)
    obj[0:10, 0:5] = True  # 50 px
    part = np.zeros((10, 10), bool)
    part[0:5, 0:5] = True  # 25 px
    (gt_dir / "a.json").write_text(json.dumps(_doc([obj, part], [0, 1])))
    # One pseudo-label: rows 0..4, cols 0..9 (50 px). With the object: 25 / 75; with the part: 25 / 50.
    pl = np.zeros((10, 10), bool)
    pl[0:5, :] = True
    (pl_dir / "a.json").write_text(json.dumps(_doc([pl])))
    # A second image without any pseudo-label file: its object counts as 0.
    (gt_dir / "b.json").write_text(json.dumps(_doc([obj], [0])))

    best = best_ious_per_level(pl_dir, gt_dir)
    assert best["object"] == pytest.approx([1 / 3, 0.0])
    assert best["part"] == pytest.approx([0.5])
    rows = {r["level"]: r for r in write_recall_csv(pl_dir, gt_dir, tmp_path / "r.csv")}
    assert rows["object"]["mean_best_iou"] == pytest.approx(100 / 6, abs=0.01)
    assert rows["part"]["found_at_iou50"] == 100.0  # IoU exactly 0.5 counts as found
    assert rows["all"]["n_regions"] == 3
    with open(tmp_path / "r.csv") as fh:
        assert [r["level"] for r in csv.DictReader(fh)] == ["object", "part", "all"]


def test_ground_truth_as_pseudo_labels_is_perfect_recall(tmp_path: Path) -> None:
    scenes = write_synthetic_dataset(tmp_path / "scenes", 3, seed=5, image_size=(96, 96))
    pl_dir = tmp_path / "pl"
    shutil.copytree(scenes / "annotations", pl_dir)
    rows = {r["level"]: r for r in write_recall_csv(pl_dir, scenes / "annotations", tmp_path / "r.csv")}
    assert rows["all"]["mean_best_iou"] == 100.0 and rows["all"]["found_at_iou50"] == 100.0
    assert rows["all"]["mean_boundary_f"] == 1.0
    n_gt = sum(len(json.loads(p.read_text())["annotations"]) for p in (scenes / "annotations").glob("*.json"))
    assert rows["all"]["n_regions"] == n_gt


def test_missing_level_is_an_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "gt").mkdir()
    (tmp_path / "gt" / "x.json").write_text(json.dumps(_doc([np.ones((4, 4), bool)])))
    with pytest.raises(ValueError, match="x.json"):
        best_ious_per_level(tmp_path, tmp_path / "gt")


def test_boundary_f_of_the_best_match_matches_hand_computation(tmp_path: Path) -> None:
    gt_dir, pl_dir = tmp_path / "gt", tmp_path / "pl"
    gt_dir.mkdir()
    pl_dir.mkdir()
    obj = np.zeros((20, 20), bool)
    obj[:, :10] = True  # left 10 columns
    part = np.zeros((20, 20), bool)
    part[:10, :10] = True
    far = np.zeros((20, 20), bool)
    far[15:, 15:] = True  # touched by no pseudo-label
    (gt_dir / "a.json").write_text(json.dumps(_doc([obj, part, far], [0, 1, 1])))
    # Tolerance ceil(0.008 · √(20² + 20²)) = 1 px. The object's best match is the left 12 columns (IoU 10/12):
    # its boundary is column 11, the object's column 9, 2 px apart → P = R = 0, F = 0. The part's best match is
    # the part itself (F = 1); the third region has no match (F = 0 by definition).
    wide = np.zeros((20, 20), bool)
    wide[:, :12] = True
    (pl_dir / "a.json").write_text(json.dumps(_doc([wide, part])))
    best = best_matches_per_level(pl_dir, gt_dir)
    assert best["object"] == [pytest.approx((10 / 12, 0.0))]
    assert best["part"] == [pytest.approx((1.0, 1.0)), (0.0, 0.0)]
    rows = {r["level"]: r for r in write_recall_csv(pl_dir, gt_dir, tmp_path / "r.csv")}
    assert rows["object"]["mean_boundary_f"] == 0.0
    assert rows["part"]["mean_boundary_f"] == 0.5
    assert rows["all"]["mean_boundary_f"] == pytest.approx(1 / 3, abs=1e-4)
    with open(tmp_path / "r.csv") as fh:
        assert next(csv.reader(fh)) == ["level", "n_regions", "mean_best_iou", "found_at_iou50", "mean_boundary_f"]
