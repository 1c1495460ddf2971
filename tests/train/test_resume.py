"""Resume equivalence: a run killed after its last saved state, then resumed, ends with the uninterrupted weights.

hiera-tiny at 128 px, 4 synthetic scenes, 2 epochs of 2 steps, dropout on (its random masks come from torch's
global generator, which the state restores). Compared with ``torch.equal`` on every tensor of ``final.pt``.
"""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from unsamv2.model.checkpoint import read_checkpoint
from unsamv2.train.config import TrainConfig
from unsamv2.train.loop import train

SIZE = 128  # the side of the conftest scenes
SETTINGS = {"model_size": "tiny", "image_size": SIZE, "max_masks": 3, "augment": False, "correction_clicks": 1,
            "multiplier": 1, "epochs": 2, "batch_size": 2}


class SimulatedCrash(Exception):
    """Raised from the step hook: the process 'dies' there, with whatever files it had written."""


@pytest.fixture(scope="module")
def uninterrupted(scenes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("full")
    train(TrainConfig(**SETTINGS), scenes / "annotations", scenes / "images", out, progress=False)
    return out


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = read_checkpoint(a), read_checkpoint(b)
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def _losses(path: Path) -> list[tuple[str, str]]:
    with path.open() as fh:
        return [(r["step"], r["loss"]) for r in csv.DictReader(fh)]


def _crash_at(step_to_die: int) -> Callable[[int], None]:
    def hook(step: int) -> None:
        if step == step_to_die:
            raise SimulatedCrash(f"killed after step {step}")

    return hook


@pytest.mark.parametrize("crash_step", [2, 3], ids=["at-epoch-end", "mid-epoch-2"])
def test_killed_run_resumes_to_identical_weights(scenes: Path, uninterrupted: Path, tmp_path: Path,
                                                 crash_step: int) -> None:
    cfg = TrainConfig(**SETTINGS)
    with pytest.raises(SimulatedCrash):
        train(cfg, scenes / "annotations", scenes / "images", tmp_path, progress=False,
              on_step_end=_crash_at(crash_step))
    # Only epoch 1's state exists: a crash in the middle of epoch 2 loses (and later recomputes) step 3.
    assert (tmp_path / "checkpoint_epoch1.pt").is_file() and not (tmp_path / "final.pt").exists()
    assert torch.load(tmp_path / "train_state.pt", weights_only=False)["step"] == 2

    # The resumed process starts from a different global RNG state, which the saved state must overwrite.
    torch.manual_seed(999)
    result = train(cfg, scenes / "annotations", scenes / "images", tmp_path, resume=True, progress=False)
    assert result.resumed_from_step == 2 and result.steps == 4
    _assert_same_weights(uninterrupted / "final.pt", tmp_path / "final.pt")
    _assert_same_weights(uninterrupted / "checkpoint_epoch2.pt", tmp_path / "checkpoint_epoch2.pt")
    # The loss log has each step once, with the uninterrupted values (rows after the state were dropped).
    assert _losses(tmp_path / "losses.csv") == _losses(uninterrupted / "losses.csv")


def test_resume_from_a_state_saved_mid_epoch_is_exact(scenes: Path, uninterrupted: Path, tmp_path: Path) -> None:
    """State saved every step, killed after step 3: the resumed run starts inside epoch 2 (at step 4). (The DataLoader used to
    draw its base seed from the global generator after the restored RNG state, which shifted the dropout masks of
    every later step; found by tests/test_faults.py.)"""
    cfg = TrainConfig(**{**SETTINGS, "save_state_every": 1})
    with pytest.raises(SimulatedCrash):
        train(cfg, scenes / "annotations", scenes / "images", tmp_path, progress=False,
              on_step_end=_crash_at(3))
    assert torch.load(tmp_path / "train_state.pt", weights_only=False)["step"] == 3
    torch.manual_seed(999)
    result = train(cfg, scenes / "annotations", scenes / "images", tmp_path, resume=True, progress=False)
    assert result.resumed_from_step == 3 and result.steps == 4
    _assert_same_weights(uninterrupted / "final.pt", tmp_path / "final.pt")
    assert _losses(tmp_path / "losses.csv") == _losses(uninterrupted / "losses.csv")


def test_resume_refuses_changed_settings(scenes: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(**{**SETTINGS, "max_steps": 1})
    train(cfg, scenes / "annotations", scenes / "images", tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"settings changed \(lr: 0\.0001 → 0\.0002\)"):
        train(cfg.replace(lr=2e-4), scenes / "annotations", scenes / "images", tmp_path, resume=True,
              progress=False)


def test_resume_of_a_finished_run_keeps_its_weights(scenes: Path, uninterrupted: Path, tmp_path: Path) -> None:
    for name in ("last.pt", "train_state.pt", "losses.csv"):
        (tmp_path / name).write_bytes((uninterrupted / name).read_bytes())
    result = train(TrainConfig(**SETTINGS), scenes / "annotations", scenes / "images", tmp_path, resume=True,
                   progress=False)
    assert result.resumed_from_step == 4 and result.steps == 4
    _assert_same_weights(uninterrupted / "final.pt", tmp_path / "final.pt")


@pytest.mark.slow
def test_sigkilled_cli_run_resumes_to_identical_weights(scenes: Path, uninterrupted: Path, tmp_path: Path) -> None:
    """The real thing: ``unsamv2 train`` killed with SIGKILL once epoch 1 is saved, then ``--resume``."""
    cmd = [sys.executable, "-m", "unsamv2.cli", "train", "--pseudo-labels", str(scenes / "annotations"),
           "--images", str(scenes / "images"), "--out-dir", str(tmp_path), "--settings", json.dumps(SETTINGS),
           "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not (tmp_path / "checkpoint_epoch1.pt").exists():
            assert proc.poll() is None, "the training process ended before writing epoch 1"
            assert time.monotonic() < deadline, "no epoch-1 checkpoint after 300 s"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert subprocess.run([*cmd, "--resume"], check=False).returncode == 0
    _assert_same_weights(uninterrupted / "final.pt", tmp_path / "final.pt")
