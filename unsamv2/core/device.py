"""Where torch runs: the ``auto`` device and the CPU thread count of a job."""
from __future__ import annotations

import os

__all__ = ["resolve_device", "set_cpu_threads"]


def resolve_device(name: str) -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``; any other name is returned unchanged."""
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def set_cpu_threads(threads: int | None) -> None:
    """Limit torch's intra-op thread pool (and OpenMP's) to ``threads``; ``None`` leaves the defaults.

    Why: torch starts one thread per core whatever else runs; two torch jobs that Snakemake places side by side on
    the same cores then fight over them (the demo's training took 40 min instead of 12 beside another job). The
    rules pass their ``threads`` here.
    """
    if threads is None:
        return
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
