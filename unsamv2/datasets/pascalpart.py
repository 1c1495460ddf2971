"""PASCAL-Part validation split at part level (GraCo / UnSAMv2 ``PascalPartEvaluationDataset``).

Layout (PASCAL VOC 2010 images + the PASCAL-Part annotation archive, merged into one folder)::

    PascalPart/JPEGImages/<name>.jpg
    PascalPart/Annotations_Part/<name>.mat     struct ``anno`` with field ``objects``: a 1xN struct array with
                                               fields class, class_ind, mask, parts; ``parts`` is a 1xM struct
                                               array with fields part_name, mask
    PascalPart/ImageSets/Main/val.txt          image names (UnSAMv2 reads ``val.txt``; GraCo ``part_val.txt``)

Each (object, part) pair is one evaluation target. The UnSAMv2 evaluation code keeps a random 10% of all pairs
(unseeded ``random.sample``, cached in a pkl); the paper says "whole validation set" (the paper and the code disagree here).
We follow the code by default but make the subsample reproducible: a pair is kept iff
``stable_uniform(seed, image, object, part) < fraction``. That is a per-pair Bernoulli draw, so the kept count is
about, not exactly, 10%; it needs no pass over the whole dataset, so loading stays lazy. ``fraction=1.0`` gives
the paper's whole-set variant.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from scipy.io import loadmat

from unsamv2.datasets.sample import ObjectMask, Sample, resolve_root, stable_uniform

__all__ = ["DEFAULT_FRACTION", "PartRecord", "load_pascalpart", "read_pascalpart_parts"]

#: Fraction of (object, part) pairs the official evaluation code keeps.
DEFAULT_FRACTION = 0.1

PartRecord = tuple[int, int, str, str, np.ndarray]  # (object index, part index, class, part name, mask)


def _text(value: object) -> str:
    """MATLAB char arrays load as 1-element string arrays; an empty one loads as an empty array."""
    arr = np.asarray(value)
    return str(arr.ravel()[0]) if arr.size else ""


def read_pascalpart_parts(mat_path: Path) -> list[PartRecord]:
    """All part masks of one ``Annotations_Part/*.mat`` file, in (object, part) order."""
    data = loadmat(str(mat_path))
    if "anno" not in data:
        raise ValueError(f"{mat_path}: no 'anno' struct (is this a PASCAL-Part Annotations_Part/*.mat file?)")
    objects = data["anno"]["objects"][0, 0]
    records: list[PartRecord] = []
    for i in range(objects.size):
        obj = objects.ravel()[i]
        class_name = _text(obj["class"])
        parts = np.asarray(obj["parts"])
        # An object without parts stores an empty (0x0) struct array, which may also lack field names.
        if parts.size == 0 or parts.dtype.names is None:
            continue
        for j in range(parts.size):
            part = parts.ravel()[j]
            mask = np.asarray(part["mask"])
            if mask.ndim != 2:
                raise ValueError(f"{mat_path}: object {i} part {j} mask has shape {mask.shape}, expected (H, W)")
            records.append((i, j, class_name, _text(part["part_name"]), mask))
    return records


def _split_names(base: Path, split: str) -> list[str]:
    for candidate in (base / "ImageSets" / "Main" / f"{split}.txt", base / "ImageSets" / "Main" / f"part_{split}.txt"):
        if candidate.exists():
            return [line.strip() for line in candidate.read_text().splitlines() if line.strip()]
    raise FileNotFoundError(f"{base}: neither ImageSets/Main/{split}.txt nor ImageSets/Main/part_{split}.txt exists")


def load_pascalpart(
    root: str | Path, split: str = "val", fraction: float = DEFAULT_FRACTION, seed: int = 0
) -> Iterator[Sample]:
    """Yield one :class:`Sample` per listed image that has at least one kept part.

    Args:
        root: the PascalPart folder (or its parent).
        split: image list name under ``ImageSets/Main``.
        fraction: share of (object, part) pairs to keep; 0.1 as the official code, 1.0 for the whole set.
        seed: part of the subsampling key, recorded so that a run can be repeated exactly.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    base = resolve_root(root, "Annotations_Part", nested=("PascalPart",))
    names = _split_names(base, split)
    return _iterate(base, names, fraction, seed)


def _iterate(base: Path, names: list[str], fraction: float, seed: int) -> Iterator[Sample]:
    for name in names:
        image_path = base / "JPEGImages" / f"{name}.jpg"
        mat_path = base / "Annotations_Part" / f"{name}.mat"
        try:
            records = read_pascalpart_parts(mat_path)
        except Exception as exc:  # noqa: BLE001 - a bad file must not stop the dataset; the error is reported
            yield Sample(name, image_path, error=f"{mat_path}: {exc}")
            continue
        objects = []
        for i, j, class_name, part_name, mask in records:
            if fraction < 1.0 and stable_uniform("pascalpart", seed, name, i, j) >= fraction:
                continue
            gt = mask > 0
            if gt.any():
                objects.append(ObjectMask(gt, None, f"{i}:{j}:{class_name}:{part_name}"))
        if objects:
            yield Sample(name, image_path, objects)
