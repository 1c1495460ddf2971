"""Whole runs as library calls: the files of one benchmark run, the refusals, SA-1B's frozen subset, options."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.evaluate.conftest import write_grabcut
from unsamv2.evaluate.run import evaluate_interactive_to_dir, parse_dataset_options
from unsamv2.evaluate.summary import SUMMARY_COLUMNS, read_summary_csv


@pytest.mark.parametrize(
    ("model", "extra", "modes"),
    [
        ("unsamv2", {"image_size": 256}, ["oracle", "best_fixed", "fixed:0.5"]),
        ("sam2", {}, ["none", "best_of_3"]),
    ],
)
def test_evaluate_interactive_to_dir(tmp_path: Path, request, image, model, extra, modes):
    built = request.getfixturevalue("reuse_sam2") if model == "sam2" else None
    write_grabcut(tmp_path / "data", image)
    out = tmp_path / "out"
    code = evaluate_interactive_to_dir(dataset="GrabCut", root=tmp_path / "data", model_kind=model, size="tiny",
                                       device="cpu", max_clicks=2, out_dir=out, modes=modes, progress=False,
                                       **extra)
    assert code == 0
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
        evaluate_interactive_to_dir(dataset="grabcut", root=tmp_path, model_kind="sam2", modes=["oracle"],
                                    out_dir=tmp_path / "o")


def test_sa1b_run_freezes_its_subset_as_a_versioned_id_list(tmp_path: Path, image):
    from unsamv2.io.masks import encode_rle

    data = tmp_path / "sa1b"
    mask = np.zeros((48, 64), bool)
    mask[5:20, 5:30] = True
    for n in (2, 1):
        (data / "images").mkdir(parents=True, exist_ok=True)
        (data / "annotations").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(data / "images" / f"sa_{n}.jpg"), image[:, :, ::-1])
        record = {"image": {"image_id": n, "height": 48, "width": 64, "file_name": f"sa_{n}.jpg"},
                  "annotations": [{"id": 7, "segmentation": encode_rle(mask)}]}
        (data / "annotations" / f"sa_{n}.json").write_text(json.dumps(record))
    (tmp_path / "train_ids.txt").write_text("sa_2\n")
    out = tmp_path / "out"
    options = parse_dataset_options([f"exclude_id_list={tmp_path / 'train_ids.txt'}"])
    assert evaluate_interactive_to_dir(dataset="sa1b", root=data, model_kind="unsamv2", size="tiny", image_size=256,
                                       device="cpu", max_clicks=1, modes=["fixed:0.5"], dataset_options=options,
                                       out_dir=out, progress=False) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["dataset_options"]["id_list"] == str(out / "sa1b_ids.txt")
    assert (out / "sa1b_ids.txt").read_text().splitlines()[-1] == "sa_1"  # sa_2 is a training image
    assert run["n_images"] == 1


def test_parse_dataset_options():
    assert parse_dataset_options(["fraction=1.0", "label_policy=graco", "level=all", "flag=true", "n = 3"]) == {
        "fraction": 1.0, "label_policy": "graco", "level": "all", "flag": True, "n": 3,
    }
    assert parse_dataset_options(["id_list=a=b.txt"]) == {"id_list": "a=b.txt"}  # split at the first '='
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_dataset_options(["fraction"])
