"""The real model adapters (random weights, CPU) and the evaluate-interactive command end to end.

Random weights make the numbers meaningless; these tests check shapes, batching, the call pattern and the files.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from unsamv2.datasets.sample import ObjectMask, Sample
from unsamv2.evaluate.cli_commands import main as cli_main
from unsamv2.evaluate.interactive import (
    GRANULARITY_GRID,
    GranularityMode,
    Sam2BaselineModel,
    UnSAMv2ClickModel,
    evaluate_dataset,
)
from unsamv2.evaluate.summary import SUMMARY_COLUMNS, read_summary_csv

IMAGE = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def sam2_tiny() -> Sam2BaselineModel:
    model = Sam2BaselineModel.build("configs/sam2.1/sam2.1_hiera_t.yaml", None, device="cpu")
    model.set_image(IMAGE)
    return model


@pytest.fixture(scope="module")
def unsamv2_tiny() -> UnSAMv2ClickModel:
    model = UnSAMv2ClickModel.build("tiny", None, device="cpu", image_size=256)
    model.set_image(IMAGE)
    return model


POINTS = np.array([[[10.0, 20.0], [30.0, 5.0]]], np.float32)
LABELS = np.array([[1, 0]], np.int32)


def test_sam2_adapter_single_and_best_of_3_shapes(sam2_tiny):
    (single,) = sam2_tiny.predict_batch(POINTS, LABELS, [None], None)
    assert single.logits.shape == (1, 48, 64) and single.low_res_logits.shape == (1, 256, 256)
    (multi,) = sam2_tiny.predict_batch(POINTS, LABELS, [None], None, multimask=True)
    assert multi.logits.shape == (3, 48, 64) and multi.iou_pred.shape == (3,)
    with pytest.raises(ValueError, match="no granularity"):
        sam2_tiny.predict_batch(POINTS, LABELS, [0.5], None)


def test_sam2_adapter_batch_rows_match_single_calls(sam2_tiny):
    points = np.concatenate([POINTS, POINTS + 7.0])
    labels = np.repeat(LABELS, 2, axis=0)
    mask_input = np.random.default_rng(1).normal(size=(2, 256, 256)).astype(np.float32)
    batch = sam2_tiny.predict_batch(points, labels, [None] * 2, mask_input)
    for b in range(2):
        (single,) = sam2_tiny.predict_batch(points[b : b + 1], labels[b : b + 1], [None], mask_input[b : b + 1])
        np.testing.assert_allclose(batch[b].logits, single.logits, atol=1e-4)


def test_unsamv2_adapter_batches_granularities(unsamv2_tiny):
    points = np.repeat(POINTS, 10, axis=0)
    labels = np.repeat(LABELS, 10, axis=0)
    batch = unsamv2_tiny.predict_batch(points, labels, list(GRANULARITY_GRID), None)
    assert len(batch) == 10 and batch[0].logits.shape == (1, 48, 64)
    (single,) = unsamv2_tiny.predict_batch(points[3:4], labels[3:4], [GRANULARITY_GRID[3]], None)
    np.testing.assert_allclose(batch[3].logits, single.logits, atol=1e-4)
    with pytest.raises(ValueError, match="needs a granularity"):
        unsamv2_tiny.predict_batch(POINTS, LABELS, [None], None)
    with pytest.raises(ValueError, match="best_of_3"):
        unsamv2_tiny.predict_batch(POINTS, LABELS, [0.5], None, multimask=True)


class CountingModel:
    """Wraps a real adapter and counts image encodings and decoder rows."""

    def __init__(self, inner):
        self.inner, self.name = inner, inner.name
        self.encodings = 0
        self.batches: list[int] = []

    def set_image(self, image):
        self.encodings += 1
        self.inner.set_image(image)

    def predict_batch(self, points_xy, labels, granularities, mask_input, multimask=False):
        self.batches.append(len(granularities))
        return self.inner.predict_batch(points_xy, labels, granularities, mask_input, multimask)


def test_oracle_loop_with_the_real_unsamv2_adapter(unsamv2_tiny):
    gt = np.zeros((48, 64), bool)
    gt[10:30, 15:45] = True
    samples = [Sample("x", Path("x.png"), [ObjectMask(gt, None, "1"), ObjectMask(~gt, None, "2")])]
    model = CountingModel(unsamv2_tiny)
    result = evaluate_dataset(model, samples, [GranularityMode("oracle")], dataset="toy", target_iou=0.9,
                              max_clicks=2, progress=False, image_loader=lambda p: IMAGE)
    assert model.encodings == 1
    assert model.batches[0] == 10  # the first click of all ten granularities in one call
    assert len(result.sequences("oracle")) == 2


def _write_grabcut(root: Path) -> None:
    (root / "GrabCut" / "data_GT").mkdir(parents=True)
    (root / "GrabCut" / "boundary_GT").mkdir(parents=True)
    cv2.imwrite(str(root / "GrabCut" / "data_GT" / "cat.jpg"), IMAGE[:, :, ::-1])
    mask = np.zeros((48, 64), np.uint8)
    mask[8:40, 12:50] = 128
    mask[10:38, 14:48] = 255
    cv2.imwrite(str(root / "GrabCut" / "boundary_GT" / "cat.bmp"), mask)


@pytest.fixture()
def reuse_sam2(monkeypatch, sam2_tiny):
    """Make ``--model sam2`` reuse the module's hiera-tiny instead of building (and encoding at 1024 px) again."""
    built = {}

    def fake_build(cls, config, checkpoint, device, name="sam2"):
        built.update(config=config, checkpoint=checkpoint, device=device)
        return Sam2BaselineModel(sam2_tiny.predictor, name=name)

    monkeypatch.setattr(Sam2BaselineModel, "build", classmethod(fake_build))
    return built


@pytest.mark.parametrize(
    ("model", "extra", "modes"),
    [
        ("unsamv2", ["--image-size", "256"], ["oracle", "best_fixed", "fixed:0.5"]),
        ("sam2", [], ["none", "best_of_3"]),
    ],
)
def test_evaluate_interactive_command(tmp_path: Path, request, model, extra, modes):
    built = request.getfixturevalue("reuse_sam2") if model == "sam2" else None
    _write_grabcut(tmp_path / "data")
    out = tmp_path / "out"
    argv = ["evaluate-interactive", "--dataset", "GrabCut", "--root", str(tmp_path / "data"), "--model", model,
            "--size", "tiny", "--device", "cpu", "--max-clicks", "2", "--out-dir", str(out), *extra]
    for mode in modes:
        argv += ["--granularity-mode", mode]
    assert cli_main(argv) == 0
    if built is not None:
        assert built == {"config": "configs/sam2.1/sam2.1_hiera_t.yaml", "checkpoint": None, "device": "cpu"}
    summary = read_summary_csv(out / "summary.csv")
    assert [r["granularity_mode"] for r in summary] == modes
    assert all(r["model"] == f"{model}-random-init" and r["dataset"] == "grabcut" for r in summary)
    with open(out / "summary.csv", newline="") as fh:
        assert tuple(next(csv.reader(fh))) == SUMMARY_COLUMNS
    run = json.loads((out / "run.json").read_text())
    assert run["target_iou"] == 0.9 and run["n_images"] == 1 and run["checkpoint"] is None
    assert json.loads((out / "failures.json").read_text()) == []
    assert (out / "miou_curve.png").exists() and (out / "per_object.csv").exists()


def test_evaluate_interactive_refuses_modes_of_the_other_model(tmp_path: Path):
    with pytest.raises(ValueError, match="do not apply"):
        cli_main(["evaluate-interactive", "--dataset", "grabcut", "--root", str(tmp_path), "--model", "sam2",
                  "--granularity-mode", "oracle", "--out-dir", str(tmp_path / "o")])


def test_sa1b_run_freezes_its_subset_as_a_versioned_id_list(tmp_path: Path):
    from unsamv2.io.masks import encode_rle

    data = tmp_path / "sa1b"
    mask = np.zeros((48, 64), bool)
    mask[5:20, 5:30] = True
    for n in (2, 1):
        (data / "images").mkdir(parents=True, exist_ok=True)
        (data / "annotations").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(data / "images" / f"sa_{n}.jpg"), IMAGE[:, :, ::-1])
        record = {"image": {"image_id": n, "height": 48, "width": 64, "file_name": f"sa_{n}.jpg"},
                  "annotations": [{"id": 7, "segmentation": encode_rle(mask)}]}
        (data / "annotations" / f"sa_{n}.json").write_text(json.dumps(record))
    (tmp_path / "train_ids.txt").write_text("sa_2\n")
    out = tmp_path / "out"
    assert cli_main(["evaluate-interactive", "--dataset", "sa1b", "--root", str(data), "--model", "unsamv2",
                     "--size", "tiny", "--image-size", "256", "--device", "cpu", "--max-clicks", "1",
                     "--granularity-mode", "fixed:0.5", "--dataset-option",
                     f"exclude_id_list={tmp_path / 'train_ids.txt'}", "--out-dir", str(out)]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["dataset_options"]["id_list"] == str(out / "sa1b_ids.txt")
    assert (out / "sa1b_ids.txt").read_text().splitlines()[-1] == "sa_1"  # sa_2 is a training image
    assert run["n_images"] == 1
