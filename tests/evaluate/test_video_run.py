"""The video benchmark run: prompts, mask merging, the files of one (model, dataset) job, DAVIS-format round trip,
resuming, failures, and the real trackers (UnSAMv2's first-frame oracle, SAM-2's modes) on a tiny synthetic video."""
from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from unsamv2.datasets.davis2017 import VideoSequence
from unsamv2.datasets.synthetic_video import load_synthetic_video, write_synthetic_video_dataset
from unsamv2.evaluate.video_config import VideoConfig, VideoMode, parse_video_mode, video_modes_for_model
from unsamv2.evaluate.video_run import (
    PER_OBJECT_COLUMNS,
    SUMMARY_COLUMNS,
    _best_candidate,
    evaluate_video_to_dir,
    first_click,
    merge_object_masks,
    read_video_summary,
    score_results_dir,
)


@pytest.fixture(scope="module")
def video_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_video_dataset(tmp_path_factory.mktemp("synvideo"), n_sequences=2, n_frames=6, seed=5,
                                         image_size=(64, 64))


class FakeTracker:
    """Known predictions: ``fixed:1.0`` = the ground truth, ``fixed:0.5`` = the ground truth shifted right by one
    pixel, ``first_frame_oracle`` = nothing; records what it was asked."""

    name = "fake"
    threshold = 0.0

    def __init__(self, root: Path) -> None:
        self.calls: list[tuple[str, str]] = []
        self.gt = {s.name: s.all_labels() for s in load_synthetic_video(root)}

    def track(self, sequence: VideoSequence, mode: VideoMode, first_masks: Mapping[int, np.ndarray],
              ) -> tuple[list[np.ndarray], dict[int, float | None]]:
        self.calls.append((sequence.name, mode.label))
        gt = self.gt[sequence.name]
        if mode.label == "fixed:1.0":
            labels = [g.copy() for g in gt]
        elif mode.label == "fixed:0.5":
            labels = [np.roll(g, 1, axis=1) for g in gt]
        else:
            labels = [np.zeros_like(g) for g in gt]
        return labels, {obj: mode.value for obj in first_masks}


class Refusing(FakeTracker):
    def track(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("a finished sequence was tracked again")


MODES = ["fixed:1.0", "fixed:0.5", "first_frame_oracle"]


def test_first_click_is_the_pixel_farthest_from_the_boundary() -> None:
    m = np.zeros((9, 11), bool)
    m[1:8, 2:9] = True  # 7 × 7 square: its centre (row 4, column 5) is 4 px from the outside, every other pixel less
    assert first_click(m) == (5, 4)
    m[:, 7:] = False  # 7 rows × 5 columns: rows 3, 4, 5 of column 4 tie at 3 px; the first in row-major order wins
    assert first_click(m) == (4, 3)
    assert first_click(np.zeros((4, 4), bool)) is None


def test_merged_masks_give_overlaps_to_the_smaller_id() -> None:
    a = np.zeros((3, 3), bool)
    a[0, :2] = True
    b = np.zeros((3, 3), bool)
    b[0, 1:] = True
    merged = merge_object_masks({2: b, 1: a}, (3, 3))
    assert merged[0].tolist() == [1, 1, 2] and not merged[1:].any()


def test_best_of_3_takes_the_candidate_closest_to_the_ground_truth() -> None:
    gt = np.zeros((4, 4), bool)
    gt[:2, :2] = True
    candidates = np.full((3, 4, 4), -5.0)
    candidates[0, :, :] = 3.0  # everything: J = 4/16
    candidates[1, :2, :2] = 3.0  # exact: J = 1
    candidates[2, :1, :1] = 3.0  # J = 1/4, the same as candidate 0
    assert _best_candidate(gt, 0.0)(candidates) == 1
    assert _best_candidate(gt, 0.0)(candidates[[0, 2]]) == 0  # ties: the first


def test_modes_parse_and_belong_to_their_model() -> None:
    assert parse_video_mode("fixed:0.30") == VideoMode("fixed", 0.3) and VideoMode("fixed", 0.3).label == "fixed:0.3"
    assert [m.label for m in video_modes_for_model("sam2", None)] == list(VideoConfig().sam2_modes)
    with pytest.raises(ValueError, match="do not apply"):
        video_modes_for_model("unsamv2", ["gt_mask"])
    with pytest.raises(ValueError, match="g must lie"):
        parse_video_mode("fixed:0.05")
    with pytest.raises(ValueError, match="video.unsamv2_modes"):
        VideoConfig(unsamv2_modes=("fixed:0.5", "fixed:0.5"))


def test_run_writes_davis_pngs_whose_scores_read_back_equal(tmp_path: Path, video_root: Path) -> None:
    tracker = FakeTracker(video_root)
    out = tmp_path / "out"
    code = evaluate_video_to_dir(dataset="synthetic_video", root=video_root, model_kind="unsamv2", out_dir=out,
                                 modes=MODES, tracker=tracker, progress=False)
    assert code == 0
    with open(out / "summary.csv", newline="") as fh:
        assert tuple(next(csv.reader(fh))) == SUMMARY_COLUMNS
    with open(out / "per_object.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == PER_OBJECT_COLUMNS
    summary = {r["granularity_mode"]: r for r in read_video_summary(out / "summary.csv")}
    assert list(summary) == MODES
    n_objects = sum(len(s.object_ids) for s in load_synthetic_video(video_root))
    assert all(r["n_objects"] == n_objects and r["model"] == "fake" for r in summary.values())
    exact = summary["fixed:1.0"]
    assert (exact["jf_mean"], exact["j_mean"], exact["f_mean"], exact["j_recall"], exact["j_decay"]) == (
        1.0, 1.0, 1.0, 1.0, 0.0)
    assert summary["first_frame_oracle"]["j_mean"] == 0.0 and summary["first_frame_oracle"]["f_mean"] == 0.0
    shifted = summary["fixed:0.5"]
    assert 0.3 < shifted["j_mean"] < 1.0 and shifted["f_mean"] > shifted["j_mean"]  # 1 px is within F's tolerance
    assert {float(r["g"]) for r in rows if r["mode"] == "fixed:0.5"} == {0.5}
    assert all(r["g"] == "" for r in rows if r["mode"] == "first_frame_oracle")  # the fake records no g
    # acceptance: the DAVIS-format PNGs, read back and scored as the official evaluator would, give the same numbers
    for mode in MODES:
        again = score_results_dir(load_synthetic_video(video_root), out / "masks" / mode)
        for key in ("jf_mean", "j_mean", "j_recall", "j_decay", "f_mean", "f_recall", "f_decay"):
            assert again[key] == pytest.approx(summary[mode][key], abs=1e-6), (mode, key)
    first = tracker.calls[0][0]
    assert (out / "masks" / "fixed:1.0" / first / "00005.png").is_file()  # every frame, the first and last too
    assert (out / "figure.png").stat().st_size > 0
    run = json.loads((out / "run.json").read_text())
    assert run["n_sequences"] == 2 and run["modes"] == MODES and json.loads((out / "failures.json").read_text()) == []

    # an interrupted run resumes: finished sequences are scored from their PNGs, never tracked again
    (out / "summary.csv").unlink()
    assert evaluate_video_to_dir(dataset="synthetic_video", root=video_root, model_kind="unsamv2", out_dir=out,
                                 modes=MODES, tracker=Refusing(video_root), progress=False) == 0
    resumed = {r["granularity_mode"]: r for r in read_video_summary(out / "summary.csv")}
    assert resumed.keys() == summary.keys()
    for mode in MODES:
        assert all(resumed[mode][k] == pytest.approx(summary[mode][k]) or math.isnan(summary[mode][k])
                   for k in SUMMARY_COLUMNS[3:])


def test_a_broken_sequence_is_listed_and_the_rest_finish(tmp_path: Path) -> None:
    root = write_synthetic_video_dataset(tmp_path / "data", n_sequences=2, n_frames=4, seed=1, image_size=(48, 48))
    (root / "Annotations/480p/syn_video_000/00002.png").write_bytes(b"not a png")
    tracker = FakeTracker.__new__(FakeTracker)
    tracker.calls = []
    tracker.gt = {"syn_video_001": next(s for s in load_synthetic_video(root) if s.name == "syn_video_001").all_labels()}
    out = tmp_path / "out"
    assert evaluate_video_to_dir(dataset="synthetic_video", root=root, model_kind="unsamv2", out_dir=out,
                                 modes=["fixed:1.0"], tracker=tracker, progress=False) == 0
    failures = json.loads((out / "failures.json").read_text())
    assert [f["sequence"] for f in failures] == ["syn_video_000"] and "00002.png" in failures[0]["error"]
    assert {r["granularity_mode"] for r in read_video_summary(out / "summary.csv")} == {"fixed:1.0"}
    with pytest.raises(ValueError, match="not a video dataset"):
        evaluate_video_to_dir(dataset="grabcut", root=root, model_kind="unsamv2", out_dir=out, tracker=tracker)


# ------------------------------------------------------------------------------------------ real trackers


@pytest.fixture(scope="module")
def one_object_video(tmp_path_factory: pytest.TempPathFactory) -> VideoSequence:
    root = write_synthetic_video_dataset(tmp_path_factory.mktemp("one"), n_sequences=1, n_frames=4, seed=11,
                                         image_size=(64, 64))
    return next(iter(load_synthetic_video(root)))


def test_unsamv2_first_frame_oracle_picks_the_best_first_frame_granularity(
    checkpoint_factory, one_object_video: VideoSequence
) -> None:
    from unsamv2.evaluate.video import region_similarity
    from unsamv2.evaluate.video_run import build_video_tracker

    tracker = build_video_tracker("unsamv2", checkpoint_factory("unsamv2"), "tiny", "cpu", image_size=64)
    tracker.grid = (0.1, 0.4, 0.7, 1.0)  # a shorter grid keeps the independent check below cheap
    seq = one_object_video
    first = seq.first_frame_masks()
    clicks = {obj: first_click(m) for obj, m in first.items()}
    chosen = tracker.oracle_granularities(seq, clicks, first)
    # independently: a fresh state per g, each object clicked alone
    predictor = tracker.predictor
    for obj, (x, y) in clicks.items():
        js = {}
        for g in tracker.grid:
            state = predictor.init_state(str(seq.frame_paths[0].parent))
            _, _, logits = predictor.add_new_points_or_box(state, 0, obj, points=np.array([[x, y]], np.float32),
                                                           labels=np.array([1], np.int32), granularity=g)
            js[g] = region_similarity(first[obj], (logits[0, 0] > tracker.threshold).numpy())
        best = max(js.values())
        assert js[chosen[obj]] == pytest.approx(best)
        assert chosen[obj] == min(g for g, j in js.items() if j == pytest.approx(best))


def test_sam2_modes_end_to_end(tmp_path: Path, checkpoint_factory, one_object_video: VideoSequence) -> None:
    from unsamv2.evaluate.video import region_similarity
    from unsamv2.io.palette_png import read_index_png

    root = one_object_video.frame_paths[0].parents[3]
    out = tmp_path / "sam2"
    assert evaluate_video_to_dir(dataset="synthetic_video", root=root, model_kind="sam2", out_dir=out,
                                 checkpoint=checkpoint_factory("sam2"), size="tiny", image_size=64, device="cpu",
                                 progress=False) == 0
    summary = read_video_summary(out / "summary.csv")
    assert [r["granularity_mode"] for r in summary] == ["single_mask", "best_of_3_first_frame", "gt_mask"]
    assert all(r["model"] == "sam2" and r["n_objects"] == len(one_object_video.object_ids) for r in summary)
    # with the ground-truth mask as prompt, the first frame's output is that mask (sam2 takes it as the output),
    # up to the 4× down- and up-sampling of its logits
    gt0 = one_object_video.read_labels(0)
    pred0 = read_index_png(out / "masks" / "gt_mask" / one_object_video.name / "00000.png")
    for obj in one_object_video.object_ids:
        assert region_similarity(gt0 == obj, pred0 == obj) > 0.8
    assert json.loads((out / "run.json").read_text())["mask_threshold"] == 0.0


def test_cli_evaluate_video(tmp_path: Path, checkpoint_factory, one_object_video: VideoSequence) -> None:
    from unsamv2.cli import main

    root = one_object_video.frame_paths[0].parents[3]
    out = tmp_path / "cli"
    assert main(["evaluate-video", "--dataset", "synthetic_video", "--root", str(root), "--model", "unsamv2",
                 "--checkpoint", str(checkpoint_factory("unsamv2")), "--model-size", "tiny", "--image-size", "64",
                 "--device", "cpu", "--mode", "fixed:0.5", "--out-dir", str(out), "--quiet"]) == 0
    (row,) = read_video_summary(out / "summary.csv")
    assert row["granularity_mode"] == "fixed:0.5" and row["jf_mean"] == pytest.approx(
        (row["j_mean"] + row["f_mean"]) / 2)
    assert json.loads((out / "run.json").read_text())["mask_threshold"] == -1.0
    # a user error is one line and exit code 2
    assert main(["evaluate-video", "--dataset", "synthetic_video", "--root", str(root), "--model", "unsamv2",
                 "--mode", "gt_mask", "--out-dir", str(out)]) == 2
