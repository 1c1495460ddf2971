"""Whole-image jobs: shards (resume, failures), merge checks, scoring files, the CLI, and both real generators."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from unsamv2.cli import main
from unsamv2.evaluate.whole_image import SUMMARY_COLUMNS, average_recall
from unsamv2.evaluate.whole_image_config import WholeImageConfig
from unsamv2.evaluate.whole_image_run import (
    build_generator,
    evaluate_whole_image_to_dir,
    generate_shard,
    merge_and_score,
)
from unsamv2.io.masks import decode_rle, encode_rle

H, W = 24, 32


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _benchmark(root: Path, n: int = 5) -> Path:
    """n images whose one GT mask is exactly the pixels with red > 128 (so a generator can find it from the
    image alone), plus one GT mask nobody predicts (a 2×2 corner block, recall ≤ 1/2 per image)."""
    rng = np.random.default_rng(0)
    images, anns = [], []
    for k in range(1, n + 1):
        img = np.zeros((H, W, 3), np.uint8)
        y, x = rng.integers(0, H - 8), rng.integers(0, W - 8)
        img[y : y + 6, x : x + 7, 0] = 255
        (root / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / "images" / f"{k}.png")
        images.append({"id": k, "file_name": f"images/{k}.png", "height": H, "width": W})
        for m in (img[..., 0] > 128, np.pad(np.ones((2, 2), bool), ((0, H - 2), (W - 2, 0)))):
            anns.append({"id": len(anns) + 1, "image_id": k, "category_id": 1, "segmentation": encode_rle(m),
                         "area": int(m.sum()), "iscrowd": 0})
    gt = root / "gt.json"
    gt.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "o"}]}))
    return gt


class RedGenerator:
    """Finds the red block at g = 0.5 and a wrong full-image mask at g = 1.0; counts its calls."""

    granularities = (0.5, 1.0)

    def __init__(self) -> None:
        self.calls = 0

    def generate(self, image: np.ndarray) -> list[dict[str, Any]]:
        self.calls += 1
        red = image[..., 0] > 128
        return [{"segmentation": encode_rle(red), "predicted_iou": 0.9, "granularity": 0.5},
                {"segmentation": encode_rle(np.ones_like(red)), "predicted_iou": 0.95, "granularity": 1.0}]


def test_known_answer_end_to_end(tmp_path: Path) -> None:
    gt = _benchmark(tmp_path / "bench")
    settings = WholeImageConfig(shard_size=2, granularities=(0.5, 1.0))
    gen = RedGenerator()
    out = tmp_path / "out"
    assert evaluate_whole_image_to_dir(gt_json=gt, generator=gen, out_dir=out, model="m", dataset="toy",
                                       settings=settings, granularities=gen.granularities) == 0
    assert gen.calls == 5
    rows = _rows(out / "summary.csv")
    assert list(rows[0]) == list(SUMMARY_COLUMNS)
    # every image: the red block is found exactly (recall 1 at all IoU thresholds), the corner block never
    assert float(rows[0]["ar1000"]) == pytest.approx(50.0)
    assert rows[0]["n_images"] == "5" and rows[0]["n_masks"] == "10" and rows[0]["image_ids"] == "all"
    per_g = {r["granularity"]: float(r["ar1000"]) for r in _rows(out / "ar_per_granularity.csv")}
    assert per_g == {"0.5": pytest.approx(50.0), "1": pytest.approx(0.0)}
    per_image = _rows(out / "masks_per_image.csv")
    assert [(r["n_generated"], r["n_kept"], r["n_g0.5"], r["n_g1"]) for r in per_image] == [("2", "2", "1", "1")] * 5
    results = json.loads((out / "results.json").read_text())
    assert average_recall(gt, results)["ar1000"] == pytest.approx(50.0)  # the written file gives the same number
    assert {r["granularity"] for r in results} == {0.5, 1.0}
    # a rerun recomputes nothing: every per-image file exists
    evaluate_whole_image_to_dir(gt_json=gt, generator=gen, out_dir=out, model="m", dataset="toy",
                                settings=settings, granularities=gen.granularities)
    assert gen.calls == 5


def test_max_dets_keeps_the_highest_scores(tmp_path: Path) -> None:
    gt = _benchmark(tmp_path / "bench", n=2)

    class Many(RedGenerator):
        def generate(self, image: np.ndarray) -> list[dict[str, Any]]:
            junk = []  # 150 single pixels in the bottom rows: overlap no GT mask at IoU >= 0.5
            for j in range(150):
                m = np.zeros((H, W), bool)
                m[H - 1 - j // W, j % W] = True
                junk.append({"segmentation": encode_rle(m), "predicted_iou": 0.5, "granularity": 1.0})
            return junk + super().generate(image)

    out = tmp_path / "out"
    settings = WholeImageConfig(max_dets=100, granularities=(0.5, 1.0))
    evaluate_whole_image_to_dir(gt_json=gt, generator=Many(), out_dir=out, model="m", dataset="toy",
                                settings=settings, granularities=(0.5, 1.0))
    results = json.loads((out / "results.json").read_text())
    assert len(results) == 200 and min(r["score"] for r in results) == 0.5
    assert float(_rows(out / "summary.csv")[0]["ar1000"]) == pytest.approx(50.0)


def test_shard_resumes_lists_failures_and_merge_checks_the_plan(tmp_path: Path) -> None:
    gt = _benchmark(tmp_path / "bench", n=5)
    (tmp_path / "bench" / "images" / "4.png").write_bytes(b"not a png")
    settings = WholeImageConfig(shard_size=3, granularities=(0.5, 1.0))
    gen = RedGenerator()
    shards = tmp_path / "shards"
    assert generate_shard(gt_json=gt, generator=gen, shard=0, settings=settings, shard_dir=shards,
                          out=tmp_path / "m0.json") == 0
    assert gen.calls == 3
    # an interrupted rerun: images 2 and 3 lost, image 1 kept (and emptied, to see that it is not recomputed)
    (shards / "1.json").write_text("[]")
    (shards / "2.json").unlink()
    (shards / "3.json").unlink()
    assert generate_shard(gt_json=gt, generator=gen, shard=0, settings=settings, shard_dir=shards,
                          out=tmp_path / "m0.json") == 0
    assert gen.calls == 5
    # other settings (or another model) never reuse the files: the whole shard is recomputed
    other = WholeImageConfig(shard_size=3, granularities=(0.5, 1.0), points_per_side=8)
    generate_shard(gt_json=gt, generator=gen, shard=0, settings=other, shard_dir=tmp_path / "other",
                   out=tmp_path / "o0.json")
    calls = gen.calls
    generate_shard(gt_json=gt, generator=gen, shard=0, settings=other, shard_dir=shards, out=tmp_path / "x.json",
                   identity={"checkpoint": "b.pt"})
    assert gen.calls == calls + 3
    assert json.loads((shards / "1.json").read_text()) != []
    (shards / "1.json").write_text("[]")  # back to the state the assertions below expect
    generate_shard(gt_json=gt, generator=gen, shard=0, settings=settings, shard_dir=shards, out=tmp_path / "m0.json")
    (shards / "1.json").write_text("[]")
    assert generate_shard(gt_json=gt, generator=gen, shard=1, settings=settings, shard_dir=shards,
                          out=tmp_path / "m1.json") == 0
    m1 = json.loads((tmp_path / "m1.json").read_text())
    assert m1["images"] == [5] and [f["image_id"] for f in m1["failures"]] == [4]
    with pytest.raises(ValueError, match="cover 3 images, but .* has 5"):
        merge_and_score(gt_json=gt, manifests=[tmp_path / "m0.json"], shard_dir=shards, out_dir=tmp_path / "o",
                        model="m", dataset="toy", settings=settings, granularities=None)
    with pytest.raises(ValueError, match="planned shards for 4"):
        merge_and_score(gt_json=gt, manifests=[tmp_path / "m0.json", tmp_path / "m1.json"], shard_dir=shards,
                        out_dir=tmp_path / "o", model="m", dataset="toy", settings=settings, granularities=None,
                        expected_images=4)
    row = merge_and_score(gt_json=gt, manifests=[tmp_path / "m0.json", tmp_path / "m1.json"], shard_dir=shards,
                          out_dir=tmp_path / "o", model="m", dataset="toy", settings=settings, granularities=None)
    # images 2, 3, 5 found (1 had no masks, 4 failed and counts as a miss): 3 of 10 GT masks
    assert row["ar1000"] == pytest.approx(30.0)
    assert json.loads((tmp_path / "o" / "failures.json").read_text())[0]["image_id"] == 4
    predicted = merge_and_score(gt_json=gt, manifests=[tmp_path / "m0.json", tmp_path / "m1.json"],
                                shard_dir=shards, out_dir=tmp_path / "p", model="m", dataset="toy",
                                settings=WholeImageConfig(shard_size=3, image_ids="predicted"), granularities=None)
    assert predicted["ar1000"] == pytest.approx(50.0) and predicted["n_images"] == 3


def test_limit_restricts_the_images(tmp_path: Path) -> None:
    gt = _benchmark(tmp_path / "bench", n=5)
    settings = WholeImageConfig(limit=2, image_ids="predicted", granularities=(0.5, 1.0))
    assert settings.n_shards(5) == 1
    gen = RedGenerator()
    evaluate_whole_image_to_dir(gt_json=gt, generator=gen, out_dir=tmp_path / "o", model="m", dataset="toy",
                                settings=settings, granularities=(0.5, 1.0))
    assert gen.calls == 2
    row = _rows(tmp_path / "o" / "summary.csv")[0]
    assert row["n_images"] == "2" and row["image_ids"] == "predicted"
    # image_ids "all" with a limit: the benchmark is the first 2 images (the other 3 are not misses)
    settings = WholeImageConfig(limit=2, granularities=(0.5, 1.0))
    evaluate_whole_image_to_dir(gt_json=gt, generator=gen, out_dir=tmp_path / "a", model="m", dataset="toy",
                                settings=settings, granularities=(0.5, 1.0))
    row = _rows(tmp_path / "a" / "summary.csv")[0]
    assert row["n_images"] == "2" and float(row["ar1000"]) == pytest.approx(50.0)
    assert json.loads((tmp_path / "a" / "run.json").read_text())["limit"] == 2


def test_config_validation() -> None:
    assert WholeImageConfig().granularities == (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    assert WholeImageConfig().points_per_side == 64 and WholeImageConfig().max_dets == 1000
    for bad, match in [({"models": ["x"]}, "models"), ({"granularities": [0.05]}, "granularities"),
                       ({"image_ids": "some"}, "image_ids"), ({"postprocess": "crf"}, "postprocess"),
                       ({"max_dets": 10}, "max_dets"), ({"colour": 1}, "unknown whole_image")]:
        with pytest.raises(ValueError, match=match):
            WholeImageConfig.from_dict(bad)
    cfg = WholeImageConfig.from_json(WholeImageConfig(points_per_side=8, limit=3).to_json())
    assert cfg.points_per_side == 8 and cfg.limit == 3


# ------------------------------------------------------------------------------------------------ real models


def _decoded(records: list[dict[str, Any]]) -> list[np.ndarray]:
    return [decode_rle(r["segmentation"]) for r in records]


def test_unsamv2_generator_pools_granularities(tmp_path: Path, checkpoint_factory, photo: np.ndarray) -> None:
    settings = WholeImageConfig(points_per_side=3, points_per_batch=9, pred_iou_thresh=0.0,
                                stability_score_thresh=0.0, granularities=(0.2, 0.9))
    gen = build_generator("unsamv2", checkpoint_factory("unsamv2"), "tiny", settings, device="cpu", image_size=256)
    records = gen.generate(photo)
    assert records and {r["granularity"] for r in records} <= {0.2, 0.9}
    assert all(m.shape == photo.shape[:2] for m in _decoded(records))


def test_sam2_generator_gives_multimask_outputs(checkpoint_factory, photo: np.ndarray) -> None:
    settings = WholeImageConfig(points_per_side=2, points_per_batch=4, sam2_pred_iou_thresh=0.0,
                                sam2_stability_score_thresh=0.0)
    gen = build_generator("sam2", checkpoint_factory("sam2"), "tiny", settings, device="cpu", image_size=256)
    assert gen.granularities is None
    model_gen = gen.generator  # sam2's own SAM2AutomaticMaskGenerator, as configured
    assert type(model_gen).__name__ == "SAM2AutomaticMaskGenerator"
    assert model_gen.multimask_output and model_gen.use_m2m and model_gen.mask_threshold == -1.0
    records = gen.generate(photo)
    assert records and all(r["granularity"] is None for r in records)
    # 4 points × 3 masks each before box-NMS
    assert len(records) <= 12


def test_cli_end_to_end_and_user_errors(tmp_path: Path, checkpoint_factory, capsys) -> None:
    gt = _benchmark(tmp_path / "bench", n=2)
    settings = json.dumps({"points_per_side": 2, "points_per_batch": 4, "granularities": [0.3, 1.0],
                           "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0})
    common = ["--gt", str(gt), "--model", "unsamv2", "--checkpoint", str(checkpoint_factory("unsamv2")),
              "--model-size", "tiny", "--image-size", "256", "--device", "cpu", "--settings", settings]
    out = tmp_path / "cli"
    assert main(["evaluate-whole-image", *common, "--dataset", "toy", "--out-dir", str(out), "--quiet"]) == 0
    row = _rows(out / "summary.csv")[0]
    results = json.loads((out / "results.json").read_text())
    assert int(row["n_masks"]) == len(results) > 0
    assert float(row["ar1000"]) == pytest.approx(average_recall(gt, results)["ar1000"], abs=1e-4)
    # shard + score commands give the same files as the one-process command
    assert main(["whole-image-shard", *common, "--shard", "0", "--shard-dir", str(tmp_path / "s"),
                 "--out", str(tmp_path / "m0.json"), "--quiet"]) == 0
    assert main(["score-whole-image", *common, "--dataset", "toy", "--manifests", str(tmp_path / "m0.json"),
                 "--shard-dir", str(tmp_path / "s"), "--expected-images", "2", "--out-dir", str(tmp_path / "o")]) == 0
    assert json.loads((tmp_path / "o" / "results.json").read_text()) == results
    assert main(["evaluate-whole-image", "--gt", str(tmp_path / "none.json"), "--model", "unsamv2", "--dataset", "x",
                 "--out-dir", str(out), "--device", "cpu", "--model-size", "tiny", "--image-size", "256"]) == 2
    assert "none.json" in capsys.readouterr().err
    assert main(["prepare-whole-image", "entityseg", "--out-dir", str(tmp_path / "e")]) == 2
    assert "entityseg_val_lr.json" in capsys.readouterr().err


def test_postprocessing_replaces_masks_and_drops_rejected_ones() -> None:
    """The optional CascadePSP step wraps any generator: each mask is replaced by the refiner's output (scores
    unchanged) and dropped when the refiner rejects it (None or empty)."""
    from unsamv2.evaluate.whole_image_run import _PostProcessed

    image = np.zeros((H, W, 3), np.uint8)
    image[2:8, 3:10, 0] = 255

    def refine(img: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
        if mask.all():
            return None  # rejects the full-image mask
        out = mask.copy()
        out[0, 0] = True  # a visible change
        return out

    records = _PostProcessed(RedGenerator(), refine).generate(image)
    assert len(records) == 1 and records[0]["predicted_iou"] == 0.9 and records[0]["granularity"] == 0.5
    expected = image[..., 0] > 128
    expected[0, 0] = True
    assert np.array_equal(decode_rle(records[0]["segmentation"]), expected)


def test_cascadepsp_missing_package_is_a_user_error() -> None:
    try:
        import segmentation_refinement  # noqa: F401
    except ImportError:
        from unsamv2.evaluate.whole_image_run import cascadepsp_refiner

        with pytest.raises(ValueError, match=r"unsamv2\[refine\]"):
            cascadepsp_refiner("cpu")
    else:
        pytest.skip("segmentation-refinement is installed")
