"""Resumable training state: ``train_state.pt`` + ``last.pt``, the RNG states, the weight digest.

A run killed at any point resumes from its last state and ends with exactly the weights of an uninterrupted run
(``tests/train/test_resume.py``): the state holds the trainable tensors, the optimiser and scheduler, every rank's
global RNG states (torch's generator drives dropout) and the step; the data order and the clicks are pure
functions of ``(seed, epoch, item index)`` and need no state.
"""
from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from unsamv2.io.atomic import atomic_link, atomic_output
from unsamv2.io.disk_space import ensure_free_space, tensor_bytes
from unsamv2.train.config import TrainConfig
from unsamv2.train.distributed import DistContext

__all__ = ["load_state", "parameter_digest", "rng_state", "set_rng_state", "write_state"]


def parameter_digest(params: Sequence[nn.Parameter]) -> str:
    """A short SHA-256 of the tensors' bytes, in order (equal weights ⇔ equal digests)."""
    digest = hashlib.sha256()
    for p in params:
        digest.update(p.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def rng_state() -> dict[str, Any]:
    """The global generators of this process: torch (and CUDA), NumPy, Python."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_state(out_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                scheduler: torch.optim.lr_scheduler.LRScheduler, step: int, config: TrainConfig,
                ctx: DistContext, frozen_digest: str, weights_file: Path | None = None) -> None:
    """``train_state.pt`` (self-contained, one atomic write) then ``last.pt`` (weights, official format).

    ``weights_file``: a checkpoint of the model's current weights already written (the epoch checkpoint);
    ``last.pt`` is then a hard link to it instead of a second copy.

    The state holds the trainable tensors themselves, so a process killed between the two writes still leaves
    a consistent state; the frozen weights are rebuilt on resume (same seed / base checkpoint) and checked
    against ``frozen_digest``.
    """
    from unsamv2.model.checkpoint import save_checkpoint

    rng_states: list[Any] = [rng_state()]
    if ctx.world_size > 1:
        gathered: list[Any] = [None] * ctx.world_size
        dist.all_gather_object(gathered, rng_states[0])
        rng_states = gathered
    if not ctx.is_main:
        return
    state = {
        "step": step,
        "trainable": {n: p.detach().to("cpu").clone() for n, p in model.named_parameters() if p.requires_grad},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_states,
        "world_size": ctx.world_size,
        "config": config.to_dict(),
        "frozen_digest": frozen_digest,
    }
    ensure_free_space(out_dir, tensor_bytes(state), "the resumable training state train_state.pt")
    with atomic_output(out_dir / "train_state.pt") as tmp:
        torch.save(state, tmp)
    if weights_file is None:
        save_checkpoint(model, out_dir / "last.pt")
    else:
        atomic_link(weights_file, out_dir / "last.pt")


def load_state(out_dir: Path, model: nn.Module, config: TrainConfig, ctx: DistContext,
               frozen_digest: str) -> dict[str, Any] | None:
    """Restore the trainable weights from ``train_state.pt`` and return the state (None if there is none)."""
    state_path = out_dir / "train_state.pt"
    if not state_path.is_file():
        return None
    # weights_only=False: the state holds NumPy / Python RNG states; the file is this project's own output.
    state = torch.load(state_path, map_location="cpu", weights_only=False)
    saved = TrainConfig.from_dict(state["config"])
    diffs = config.result_differences(saved)
    if diffs:
        details = ", ".join(f"{k}: {state['config'][k]!r} → {config.to_dict()[k]!r}" for k in diffs)
        raise ValueError(f"cannot resume from {state_path}: the settings changed ({details}); start a new "
                         f"run in another --out-dir or restore the settings")
    if state["world_size"] != ctx.world_size:
        raise ValueError(f"cannot resume from {state_path}: it was trained with {state['world_size']} process(es), "
                         f"this run has {ctx.world_size} (the per-step batches would differ)")
    if state["frozen_digest"] != frozen_digest:
        raise ValueError(f"cannot resume from {state_path}: the frozen weights rebuilt now differ from those it "
                         f"was trained with (changed base checkpoint file, or another torch version's random "
                         f"initialisation)")
    params = dict(model.named_parameters())
    if set(state["trainable"]) != {n for n, p in params.items() if p.requires_grad}:
        raise ValueError(f"cannot resume from {state_path}: its trainable tensors do not match the model's")
    with torch.no_grad():
        for name, value in state["trainable"].items():
            params[name].copy_(value)
    return state
