"""PartImageNet validation split at part level, PNG label layout (GraCo / UnSAMv2 ``PartINEvaluationDataset``).

Layout (the ``PartImageNet_Seg`` release)::

    PartImageNet/images/val/<name>.JPEG
    PartImageNet/annotations/val/<name>.png     one label per pixel: part classes 0..39, 40 = background
    PartImageNet/class_names.json               (optional here) {"categories": [{"id", "name"}, ...]}

Each label value present in an image's PNG is one evaluation target (the mask ``png == label``). Which labels
count is a known quirk, selectable with ``label_policy``:

* ``"unsamv2"`` (default, what produced the paper's numbers): every label except 0 — so the background label 40
  *is* evaluated and part class 0 is not (``get_labels_with_sizes`` drops 0; UnSAMv2 commented out GraCo's
  ``remove(40)``; its cache file is named ``..._include_40``).
* ``"graco"``: every label except 0 and 40 (GraCo's loader).
* ``"parts"``: every part label 0..39, background 40 excluded — the semantically clean choice.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np

from unsamv2.datasets.grabcut_berkeley_davis import IMAGE_SUFFIXES
from unsamv2.datasets.sample import ObjectMask, Sample, read_label_image, resolve_root

__all__ = ["BACKGROUND_LABEL", "LabelPolicy", "load_partimagenet", "selected_labels"]

BACKGROUND_LABEL = 40
LabelPolicy = Literal["unsamv2", "graco", "parts"]


def selected_labels(labels: np.ndarray, policy: LabelPolicy) -> list[int]:
    """The label values to evaluate among those present (``labels``), under ``policy``."""
    present = sorted(int(v) for v in np.unique(labels))
    if policy == "unsamv2":
        return [v for v in present if v != 0]
    if policy == "graco":
        return [v for v in present if v not in (0, BACKGROUND_LABEL)]
    if policy == "parts":
        return [v for v in present if v != BACKGROUND_LABEL]
    raise ValueError(f"unknown PartImageNet label_policy {policy!r}; expected 'unsamv2', 'graco' or 'parts'")


def load_partimagenet(root: str | Path, split: str = "val", label_policy: LabelPolicy = "unsamv2") -> Iterator[Sample]:
    """Yield one :class:`Sample` per image of ``images/<split>`` (sorted), with its selected labels as objects."""
    selected_labels(np.zeros(1, dtype=np.int32), label_policy)  # validate the policy before any file access
    base = resolve_root(root, f"annotations/{split}", nested=("PartImageNet", "PartImageNet_Seg/PartImageNet"))
    images_dir = base / "images" / split
    if not images_dir.is_dir():
        raise FileNotFoundError(f"{base}: missing image folder images/{split}")
    return _iterate(base, split, images_dir, label_policy)


def _iterate(base: Path, split: str, images_dir: Path, policy: LabelPolicy) -> Iterator[Sample]:
    images = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    for image_path in images:
        image_id = image_path.name.split(".")[0]
        mask_path = base / "annotations" / split / f"{image_id}.png"
        try:
            labels = read_label_image(mask_path)
        except Exception as exc:  # noqa: BLE001 - a bad file must not stop the dataset; the error is reported
            yield Sample(image_id, image_path, error=f"{mask_path}: {exc}")
            continue
        objects = [ObjectMask(labels == v, None, str(v)) for v in selected_labels(labels, policy)]
        if objects:
            yield Sample(image_id, image_path, objects)
