"""Free-space guard for the long writers (a discovery shard, a training checkpoint, an evaluation run).

Atomic writes (:mod:`unsamv2.io.atomic`) already guarantee that a full disk never leaves a half-written output,
but they report it as ``OSError: [Errno 28]`` after the work is done, in the middle of a traceback. The writers
call :func:`ensure_free_space` *before* they start (or before a checkpoint is serialised) with an estimate of
what they will write, so a job on a nearly full file system stops at once with one line naming the folder, the
estimate and what is free.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "DISCOVERY_BYTES_PER_IMAGE",
    "EVALUATION_BYTES",
    "InsufficientDiskSpace",
    "ensure_free_space",
    "free_bytes",
    "tensor_bytes",
]

#: Upper estimate of one image's discovery JSON: a 1500×2250 SA-1B image with a few hundred COCO-RLE masks is
#: 0.2–1 MB; 4 MiB leaves room for unusually busy images.
DISCOVERY_BYTES_PER_IMAGE = 4 * 2**20
#: Upper estimate of one evaluation job's outputs (summary.csv, per_object.csv of a few thousand objects,
#: run.json, failures.json, miou_curve.png).
EVALUATION_BYTES = 64 * 2**20
#: Serialisation overhead of torch.save on top of the raw tensor bytes (pickle framing, key names, zip headers).
_CHECKPOINT_OVERHEAD = 1.05
_CHECKPOINT_SLACK_BYTES = 2**20


class InsufficientDiskSpace(OSError):
    """The file system of an output folder has less free space than the job is about to write."""


def _existing_ancestor(path: Path) -> Path:
    """The folder itself, or its closest existing parent: a job checks before it creates its output folder."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(directory: str | os.PathLike[str]) -> int:
    """Bytes available to this (unprivileged) process on the file system that holds ``directory``."""
    return shutil.disk_usage(_existing_ancestor(Path(directory))).free


def _human(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def ensure_free_space(directory: str | os.PathLike[str], needed_bytes: int, what: str) -> None:
    """Raise :class:`InsufficientDiskSpace` if ``directory``'s file system has less than ``needed_bytes`` free.

    ``what`` names the output in the message (e.g. ``"discovery shard 3 (250 images)"``).
    """
    free = free_bytes(directory)
    if free < needed_bytes:
        raise InsufficientDiskSpace(
            f"not enough free disk space for {what} in {Path(directory)}: about {_human(needed_bytes)} needed, "
            f"{_human(free)} free; free some space or write the results elsewhere, then run the same command again"
        )


def tensor_bytes(obj: Any) -> int:
    """Estimated size of ``torch.save(obj)``: the bytes of every tensor inside nested dicts/lists/tuples."""
    import torch

    def raw(item: Any) -> int:
        if isinstance(item, torch.Tensor):
            return item.element_size() * item.nelement()
        if isinstance(item, Mapping):
            return sum(raw(v) for v in item.values())
        if isinstance(item, (list, tuple)):
            return sum(raw(v) for v in item)
        return 0

    return int(raw(obj) * _CHECKPOINT_OVERHEAD) + _CHECKPOINT_SLACK_BYTES
