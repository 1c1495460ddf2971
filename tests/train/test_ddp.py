"""Data-parallel training: ``torchrun`` with 2 CPU processes (gloo) runs the same ``unsamv2 train`` entry point.

Two processes × 2 images per step must train exactly what one process does with 4 images per step (same data
order, same clicks, gradients averaged, the loss normalised by the mean object count over ranks), and both ranks
must end with the same weights. Dropout is off (``lora_dropout``/``mlp_dropout`` 0) so that no per-process random
mask separates the runs, and there are no correction clicks: a correction click depends on the thresholded
prediction, and a 1e-7 difference between batched matrix products of different sizes could move it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from unsamv2.model.checkpoint import read_checkpoint
from unsamv2.train.config import TrainConfig
from unsamv2.train.loop import train
from unsamv2.train.trainable import build_training_model, expected_trainable_names

SIZE = 128  # the side of the conftest scenes
SETTINGS = {"model_size": "tiny", "image_size": SIZE, "max_masks": 3, "augment": False, "correction_clicks": 0,
            "multiplier": 1, "epochs": 2, "batch_size": 2, "lora_dropout": 0.0, "mlp_dropout": 0.0,
            "device": "cpu", "lr": 1e-3, "min_lr": 1e-4}


def _trainable_delta(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], names: set[str]) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in names)


def test_torchrun_gloo_two_processes_equal_one_process_with_the_global_batch(scenes: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "unsamv2.cli", "train", "--pseudo-labels", str(scenes / "annotations"), "--images",
           str(scenes / "images"), "--out-dir", str(tmp_path / "ddp"), "--settings", json.dumps(SETTINGS),
           "--quiet"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]

    summary = json.loads((tmp_path / "ddp" / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 2  # 4 images / (2 per rank × 2 ranks) × 2 epochs
    digests = summary["rank_weight_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]  # both ranks hold the same weights

    single = train(TrainConfig(**{**SETTINGS, "batch_size": 4}), scenes / "annotations", scenes / "images",
                   tmp_path / "single", progress=False)
    assert single.steps == 2
    local = train(TrainConfig(**{**SETTINGS, "max_images": 2, "multiplier": 1}), scenes / "annotations",
                  scenes / "images", tmp_path / "rank_local", progress=False)
    assert local.steps == 2

    ddp = read_checkpoint(tmp_path / "ddp" / "final.pt")
    ref = read_checkpoint(tmp_path / "single" / "final.pt")
    rank_local = read_checkpoint(tmp_path / "rank_local" / "final.pt")
    model = build_training_model(TrainConfig(**SETTINGS), torch.device("cpu"))
    trainable = expected_trainable_names(model, "unsamv2")
    init_names = set(ref)
    # Frozen tensors are identical everywhere (same seeded initialisation on every rank).
    assert all(torch.equal(ddp[k], ref[k]) for k in init_names - trainable)
    # Training on part of the data alone (what a rank would do without gradient averaging) clearly differs ...
    assert _trainable_delta(ref, rank_local, trainable) > 1e-3
    assert _trainable_delta(ddp, ref, trainable) < 5e-5  # ... averaged gradients give the global-batch weights
