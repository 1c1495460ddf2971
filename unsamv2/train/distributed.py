"""Processes of a training run: torchrun's environment, the device of each rank, averaging across ranks.

As facebookresearch/sam2's ``training/utils/distributed.py``, but only what data-parallel training needs here.
Gradients are averaged with one ``all_reduce`` of the flattened trainable gradients after ``backward``
(data-parallel training as ``DistributedDataParallel`` does it; done by hand because SAM-2's forward is a
multi-step loop with CPU-side click sampling, some prompt-encoder parameters are unused in some steps, and a rank
can have a batch without masks — a flat all-reduce handles all three without DDP's unused-parameter machinery,
and the trainable set is small, ~0.35 M for the paper).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from unsamv2.core.device import resolve_device
from unsamv2.train.config import TrainConfig

__all__ = ["DistContext", "all_reduce_mean", "average_gradients", "init_distributed"]


@dataclass(frozen=True)
class DistContext:
    """This process's place in the run: rank, number of processes, local GPU index, device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool  # init_distributed initialised the process group (and the caller tears it down)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(config: TrainConfig) -> DistContext:
    """Read torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) and pick the device.

    ``auto`` and ``cuda`` mean the process's local GPU ``cuda:{LOCAL_RANK}`` (``auto`` falls back to the CPU
    without a GPU); several processes join one process group (NCCL on GPUs, gloo on CPUs).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    name = resolve_device(config.device)
    device = torch.device(f"cuda:{local_rank}") if name == "cuda" else torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"train.device is {config.device!r} but no CUDA device is available")
        torch.cuda.set_device(device)
    owns = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        owns = True
    if world > 1:
        rank, world = dist.get_rank(), dist.get_world_size()
    return DistContext(rank, world, local_rank, device, owns)


def all_reduce_mean(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """The mean of ``values`` over the ranks (``values`` itself with one process)."""
    if ctx.world_size > 1:
        values = values.clone()
        dist.all_reduce(values)
        values /= ctx.world_size
    return values


def average_gradients(params: Sequence[nn.Parameter], ctx: DistContext) -> None:
    """Every trainable parameter gets a gradient (zeros if unused), averaged over the ranks in one all-reduce."""
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    if ctx.world_size == 1:
        return
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= ctx.world_size
    offset = 0
    for p in params:
        n = p.numel()
        p.grad.copy_(flat[offset : offset + n].view_as(p))
        offset += n
