"""The training loop end to end: every output file, only the trainable set moves, the ``unsamv2 train`` command.

hiera-tiny at a 128-px model input on the four synthetic scenes of ``conftest.py``.
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from unsamv2.train.config import TrainConfig
from unsamv2.train.loop import train
from unsamv2.train.loss_log import LOSS_CSV_COLUMNS
from unsamv2.train.trainable import build_training_model, expected_trainable_names


def test_train_writes_every_output_and_changes_only_trainable_weights(scenes: Path, tmp_path: Path,
                                                                     tiny_settings: dict[str, Any]) -> None:
    from unsamv2.model.build import build_unsamv2
    from unsamv2.model.checkpoint import load_checkpoint, read_checkpoint

    cfg = TrainConfig(**{**tiny_settings, "epochs": 2, "cache_embeddings": True})
    result = train(cfg, scenes / "annotations", scenes / "images", tmp_path, progress=False)
    assert (result.steps, result.epochs_completed) == (4, 2)
    for name in ("checkpoint_epoch1.pt", "checkpoint_epoch2.pt", "last.pt", "train_state.pt", "final.pt",
                 "losses.csv", "loss_curve.png", "train_summary.json"):
        assert (tmp_path / name).is_file(), name

    with (tmp_path / "losses.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == LOSS_CSV_COLUMNS and [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert all(np.isfinite(float(r["loss"])) for r in rows)
    assert float(rows[-1]["lr"]) == pytest.approx(cfg.min_lr)
    summary = json.loads((tmp_path / "train_summary.json").read_text())
    assert summary["embedding_cache"]["hits"] == 4 and summary["embedding_cache"]["misses"] == 4

    # The epoch checkpoint is in the official format: the model builder loads it (size detected from the keys).
    model = build_unsamv2(checkpoint=tmp_path / "checkpoint_epoch2.pt", device="cpu", image_size=cfg.image_size)
    assert model.unsamv2_load_report.format == "unsamv2"
    # Only the trainable set moved: every other tensor equals the seeded initialisation.
    torch.manual_seed(cfg.seed)
    init = build_training_model(cfg, torch.device("cpu"))
    trained = read_checkpoint(tmp_path / "final.pt")
    trainable = expected_trainable_names(init, "unsamv2")
    moved = {k for k, v in init.state_dict().items() if not torch.equal(v, trained[k])}
    assert moved and moved <= trainable
    load_checkpoint(init, tmp_path / "final.pt")
    # One copy of the weights per epoch on disk: last.pt and final.pt are the last epoch's file, while the first
    # epoch's checkpoint still holds its own (different) weights.
    assert os.path.samefile(tmp_path / "final.pt", tmp_path / "checkpoint_epoch2.pt")
    assert os.path.samefile(tmp_path / "last.pt", tmp_path / "checkpoint_epoch2.pt")
    first = read_checkpoint(tmp_path / "checkpoint_epoch1.pt")
    assert any(not torch.equal(first[k], trained[k]) for k in trainable)


def test_cli_train_and_unknown_setting(scenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       tiny_settings: dict[str, Any]) -> None:
    from unsamv2.cli import main

    settings = json.dumps({**tiny_settings, "max_steps": 1, "trainable": "baseline_no_granularity"})
    rc = main(["train", "--pseudo-labels", str(scenes / "annotations"), "--images", str(scenes / "images"),
               "--out-dir", str(tmp_path / "run"), "--settings", settings, "--quiet"])
    assert rc == 0
    assert (tmp_path / "run" / "final.pt").is_file()
    assert json.loads((tmp_path / "run" / "train_summary.json").read_text())["steps"] == 1

    rc = main(["train", "--pseudo-labels", str(scenes / "annotations"), "--images", str(scenes / "images"),
               "--out-dir", str(tmp_path / "bad"), "--settings", '{"epoch": 3}'])
    assert rc == 2
    assert "unknown train config key(s): epoch" in capsys.readouterr().err


def test_two_cpu_runs_of_one_seed_end_with_identical_weights(scenes: Path, tmp_path: Path,
                                                              tiny_settings: dict[str, Any]) -> None:
    """Bit-identical on several threads, and the process-wide deterministic flag is restored afterwards.

    The demo's recipe in small (16 masks per image, 4 images per batch, 6 steps): without torch's deterministic
    kernels the gather's backward is order-dependent and these two runs end with different weights (seen in
    three runs: the second and the third both differed from the first).
    """
    from unsamv2.model.checkpoint import read_checkpoint

    cfg = TrainConfig(**{**tiny_settings, "trainable": "demo_from_scratch", "lora_rank": 0, "max_masks": 16,
                         "correction_clicks": 0, "batch_size": 4, "multiplier": 3, "epochs": 2, "lr": 1e-3,
                         "min_lr": 1e-4})
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for run in ("a", "b"):
            train(cfg, scenes / "annotations", scenes / "images", tmp_path / run, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert not torch.are_deterministic_algorithms_enabled()
    a, b = read_checkpoint(tmp_path / "a" / "final.pt"), read_checkpoint(tmp_path / "b" / "final.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_loss_weight_settings_reach_the_logged_loss(scenes: Path, tmp_path: Path,
                                                    tiny_settings: dict[str, Any]) -> None:
    """One step with focal × 20 and one with focal × 1 (same seed: same forward before the first update): the
    unweighted terms are equal and the totals differ by exactly 19 × focal; each total is Σ weight × term."""
    rows = {}
    for focal, iou in ((20.0, 1.0), (1.0, 0.5)):
        cfg = TrainConfig(**{**tiny_settings, "max_steps": 1, "loss_weight_focal": focal, "loss_weight_iou": iou})
        train(cfg, scenes / "annotations", scenes / "images", tmp_path / f"f{focal}", progress=False)
        with (tmp_path / f"f{focal}" / "losses.csv").open() as fh:
            rows[focal] = {k: float(v) for k, v in next(csv.DictReader(fh)).items()}
    paper, demo = rows[20.0], rows[1.0]
    for key in ("loss_mask", "loss_dice", "loss_iou", "loss_class"):
        assert demo[key] == pytest.approx(paper[key], rel=1e-5)
    assert paper["loss"] == pytest.approx(20 * paper["loss_mask"] + paper["loss_dice"] + paper["loss_iou"]
                                          + paper["loss_class"], rel=1e-5)
    assert paper["loss"] - demo["loss"] == pytest.approx(19 * paper["loss_mask"] + 0.5 * paper["loss_iou"],
                                                         rel=1e-4)


def test_sam_mask_token_ablation_moves_sams_own_token(scenes: Path, tmp_path: Path,
                                                      tiny_settings: dict[str, Any]) -> None:
    """Fig. 10's ablation through the real loop: one step moves SAM-2's single-output token head and the
    granularity encoder, and nothing outside its trainable set."""
    from unsamv2.model.checkpoint import read_checkpoint

    # The gate off: at random initialisation every object score is negative and the gate would zero the mask
    # head's gradient on step 1 (issue 16), whatever the output token.
    cfg = TrainConfig(**{**tiny_settings, "max_steps": 1, "trainable": "sam_mask_token", "lora_rank": 4,
                         "object_score_gate": False})
    train(cfg, scenes / "annotations", scenes / "images", tmp_path, progress=False)
    torch.manual_seed(cfg.seed)
    init = build_training_model(cfg, torch.device("cpu"))
    trained = read_checkpoint(tmp_path / "final.pt")
    moved = {k for k, v in init.state_dict().items() if not torch.equal(v, trained[k])}
    allowed = expected_trainable_names(init, "sam_mask_token", lora_rank=4)
    assert moved <= allowed
    assert any(k.startswith("sam_mask_decoder.output_hypernetworks_mlps.0.") for k in moved)
    assert any(k.startswith("sam_prompt_encoder.fourier_embedder.") for k in moved)
