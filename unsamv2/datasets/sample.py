"""Shared types and small helpers for the interactive-segmentation benchmark loaders.

Every loader yields :class:`Sample` objects, one per image, lazily: the ground-truth masks of an image are read
when that image's sample is produced, never all at once. The evaluator reads the image itself from
``Sample.image_path``, so a dataset with thousands of images costs one image in memory at a time.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

__all__ = ["ObjectMask", "Sample", "read_label_image", "resolve_root", "stable_uniform"]


@dataclass(frozen=True)
class ObjectMask:
    """One object (or part) to segment: a boolean ground truth and an optional boolean ignore map."""

    gt: np.ndarray  # bool (H, W)
    ignore: np.ndarray | None  # bool (H, W) or None when nothing is ignored
    object_id: str

    def __post_init__(self) -> None:
        if self.gt.dtype != np.bool_ or self.gt.ndim != 2:
            raise ValueError(f"object {self.object_id}: gt must be a bool (H, W) array, got {self.gt.dtype} "
                             f"{self.gt.shape}")
        if self.ignore is not None and (self.ignore.dtype != np.bool_ or self.ignore.shape != self.gt.shape):
            raise ValueError(f"object {self.object_id}: ignore must be a bool array of shape {self.gt.shape}")


@dataclass(frozen=True)
class Sample:
    """One image of a benchmark with all the objects to evaluate on it.

    ``error`` is set (and ``objects`` empty) when the image's annotation could not be read: the loader keeps
    going, and the evaluator lists the failure instead of aborting the whole dataset.
    """

    image_id: str
    image_path: Path
    objects: list[ObjectMask] = field(default_factory=list)
    error: str | None = None


def resolve_root(root: str | Path, marker: str, nested: tuple[str, ...] = ()) -> Path:
    """Find the dataset directory that contains ``marker`` (a file or folder).

    Archives differ in whether they add a top-level folder (``GrabCut.zip`` → ``GrabCut/data_GT``), so a user may
    point ``--root`` at either level. ``nested`` lists sub-folder names to try below ``root``.
    """
    base = Path(root)
    for candidate in (base, *(base / sub for sub in nested)):
        if (candidate / marker).exists():
            return candidate
    tried = ", ".join(str(c / marker) for c in (base, *(base / sub for sub in nested)))
    raise FileNotFoundError(f"dataset layout not found under {base}: expected one of {tried}")


def read_label_image(path: Path) -> np.ndarray:
    """Read a label/mask image as a 2-D int32 array, keeping its raw values (no colour conversion).

    Multi-channel files (some benchmarks store masks as RGB or BMP) are reduced to their first channel, as
    RITM's ``cv2.imread(path)[:, :, 0]`` does; callers that need another reduction read the file themselves.
    """
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise ValueError(f"cannot read mask image {path} (missing, truncated or not an image)")
    if data.ndim == 3:
        data = data[:, :, 0]
    return data.astype(np.int32)


def stable_uniform(*key: object) -> float:
    """A number in [0, 1) that depends only on ``key``: reproducible subsampling without a global RNG state.

    Python's ``hash`` is salted per process, so a cryptographic hash of the key's text is used instead.
    """
    digest = hashlib.sha256("\x1f".join(str(k) for k in key).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64
