"""AR@1000 of whole-image segmentation: equal to pycocotools run directly (both image-id modes), known answers,
top-k cut, table averaging."""
from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from unsamv2.evaluate.whole_image import (
    SUMMARY_COLUMNS,
    average_recall,
    average_table,
    read_summary_csv,
    top_per_image,
    write_summary_csv,
)
from unsamv2.io.masks import decode_rle as _decode
from unsamv2.io.masks import encode_rle

H, W = 40, 56


def _blob(rng: np.random.Generator) -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    y0, x0 = rng.integers(0, H - 4), rng.integers(0, W - 4)
    mask[y0 : y0 + rng.integers(2, H - y0), x0 : x0 + rng.integers(2, W - x0)] = True
    return mask


def _dataset(rng: np.random.Generator, n_images: int = 6) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A class-aware GT (so useCats=0 matters) and random predictions: image 5 has none, one prediction is an
    empty mask, one image gets more than 100 predictions (so AR@1 < AR@100 < AR@1000 can differ)."""
    images, anns = [], []
    for i in range(1, n_images + 1):
        images.append({"id": i, "file_name": f"{i}.jpg", "height": H, "width": W})
        for _ in range(rng.integers(1, 5)):
            m = _blob(rng)
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(rng.integers(1, 4)),
                         "segmentation": encode_rle(m), "area": int(m.sum()), "iscrowd": 0,
                         "bbox": [0, 0, 1, 1]})
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": c, "name": f"c{c}"} for c in (1, 2, 3)]}
    results = []
    for a in anns:  # shifted copies of the GT masks, so that recall is neither 0 nor 1 at most thresholds
        if a["image_id"] != 5:
            m = np.roll(_decode(a["segmentation"]), (int(rng.integers(0, 3)), int(rng.integers(0, 3))), (0, 1))
            results.append({"image_id": a["image_id"], "category_id": 1, "segmentation": encode_rle(m),
                            "score": float(rng.random())})
    for i in range(1, n_images + 1):
        if i == 5:
            continue
        for _ in range(130 if i == 2 else int(rng.integers(2, 8))):
            results.append({"image_id": i, "category_id": 1, "segmentation": encode_rle(_blob(rng)),
                            "score": float(rng.random())})
    results.append({"image_id": 3, "category_id": 1, "segmentation": encode_rle(np.zeros((H, W), bool)),
                    "score": 0.99})
    return gt, results


def _pycocotools(gt_path: Path, res_path: Path, predicted_only: bool) -> np.ndarray:
    """The official recipe, written out independently of the package (UnSAM's COCOevalMaxDets, detectron2)."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(gt_path))
        dets = json.loads(res_path.read_text())
        coco_dt = coco_gt.loadRes(dets)
        ev = COCOeval(coco_gt, coco_dt, "segm")
        ev.params.useCats = 0
        ev.params.maxDets = [1, 100, 1000]
        ev.params.imgIds = sorted({d["image_id"] for d in dets}) if predicted_only else coco_dt.getImgIds()
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("mode", ["all", "predicted"])
def test_equals_pycocotools_run_directly(tmp_path: Path, seed: int, mode: str) -> None:
    gt, results = _dataset(np.random.default_rng(seed))
    gt_path, res_path = tmp_path / "gt.json", tmp_path / "res.json"
    gt_path.write_text(json.dumps(gt))
    res_path.write_text(json.dumps(results))
    stats = _pycocotools(gt_path, res_path, predicted_only=mode == "predicted")
    got = average_recall(gt_path, res_path, image_ids=mode)
    assert stats[8] > 0
    for key, index in [("ar1000", 8), ("ar1000_small", 9), ("ar1000_medium", 10), ("ar1000_large", 11),
                       ("ar100", 7), ("ar1", 6)]:
        expected = math.nan if stats[index] == -1 else 100 * stats[index]  # -1: no GT in that area range
        assert got[key] == pytest.approx(expected, abs=1e-9, nan_ok=True), key
    assert got["n_images"] == (6 if mode == "all" else 5)
    assert got["n_masks"] == len(results)
    # the two modes differ here (image 5 has GT but no prediction): the test can tell them apart
    other = average_recall(gt_path, res_path, image_ids="predicted" if mode == "all" else "all")
    assert other["ar1000"] != pytest.approx(got["ar1000"])


def test_perfect_predictions_give_100_and_missing_images_count_as_misses() -> None:
    gt, _ = _dataset(np.random.default_rng(3))
    perfect = [{"image_id": a["image_id"], "category_id": 7, "segmentation": a["segmentation"], "score": 0.5}
               for a in gt["annotations"]]
    # category 7 is not a GT category: class-agnostic scoring must still match every mask
    assert average_recall(gt, perfect)["ar1000"] == pytest.approx(100.0)
    # drop the predictions of image 1: in "all" mode its GT masks are misses, in "predicted" mode it is not scored
    without_1 = [p for p in perfect if p["image_id"] != 1]
    n_gt = len(gt["annotations"])
    n_gt_1 = sum(1 for a in gt["annotations"] if a["image_id"] == 1)
    # AR averages recall over IoU thresholds; with perfect masks recall = found / all at every threshold
    assert average_recall(gt, without_1)["ar1000"] == pytest.approx(100.0 * (n_gt - n_gt_1) / n_gt)
    assert average_recall(gt, without_1, image_ids="predicted")["ar1000"] == pytest.approx(100.0)


def test_half_overlap_known_answer() -> None:
    """One GT square of 100 px, one prediction covering 60 of them (IoU 0.6): recall 1 at IoU 0.50, 0.55, 0.60
    and 0 at the seven higher thresholds → AR = 3/10."""
    gt_mask = np.zeros((H, W), bool)
    gt_mask[0:10, 0:10] = True
    pred = np.zeros((H, W), bool)
    pred[0:6, 0:10] = True
    gt = {"images": [{"id": 1, "height": H, "width": W}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": encode_rle(gt_mask),
                           "area": 100, "iscrowd": 0}]}
    got = average_recall(gt, [{"image_id": 1, "segmentation": encode_rle(pred), "score": 0.9}])
    assert got["ar1000"] == pytest.approx(30.0)


def test_empty_predictions() -> None:
    gt, _ = _dataset(np.random.default_rng(4))
    assert average_recall(gt, [])["ar1000"] == 0.0
    predicted = average_recall(gt, [], image_ids="predicted")
    assert math.isnan(predicted["ar1000"]) and predicted["n_images"] == 0


def test_input_errors(tmp_path: Path) -> None:
    gt, results = _dataset(np.random.default_rng(5))
    with pytest.raises(ValueError, match="image_ids"):
        average_recall(gt, results, image_ids="some")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not in the ground truth"):
        average_recall(gt, [{**results[0], "image_id": 999}])
    with pytest.raises(FileNotFoundError, match="nothing.json"):
        average_recall(tmp_path / "nothing.json", results)


def test_max_dets_cuts_by_score() -> None:
    """AR@100 with 130 masks on image 2 equals AR@1000 of that image's top 100 by score."""
    gt, results = _dataset(np.random.default_rng(6))
    only_2 = [r for r in results if r["image_id"] == 2]
    top = top_per_image(only_2, 100)
    assert len(top) == 100
    assert min(t["score"] for t in top) >= max(r["score"] for r in only_2 if r not in top)
    a = average_recall(gt, only_2, image_ids="predicted")
    b = average_recall(gt, top, image_ids="predicted")
    assert a["ar100"] == pytest.approx(b["ar1000"])


def test_table_averages_datasets_per_model(tmp_path: Path) -> None:
    rows = [
        {"model": m, "dataset": d, "ar1000": a, "ar1000_small": a, "ar1000_medium": a, "ar1000_large": a,
         "ar100": a / 2, "n_images": 10, "n_masks": 100, "image_ids": "all"}
        for m, d, a in [("unsamv2", "coco", 60.0), ("unsamv2", "lvis", 50.0), ("sam2", "coco", 40.0),
                        ("sam2", "lvis", 30.0)]
    ]
    paths = []
    for i, row in enumerate(rows):
        paths.append(write_summary_csv([row], tmp_path / f"{i}.csv"))
    averages = average_table(paths, ["lvis", "coco"], tmp_path / "table3.csv")
    assert {a["model"]: a["ar1000"] for a in averages} == {"unsamv2": 55.0, "sam2": 35.0}
    table = read_summary_csv(tmp_path / "table3.csv")
    assert [r["dataset"] for r in table] == ["lvis", "lvis", "coco", "coco", "average", "average"]
    assert table[-1]["n_images"] == 20
    header = (tmp_path / "table3.csv").read_text().splitlines()[0].split(",")
    assert header == list(SUMMARY_COLUMNS)
