"""GrabCut, Berkeley and DAVIS as packaged by RITM / f-BRS (one object per image).

On-disk layouts (RITM ``isegm/data/datasets/{grabcut,berkeley,davis}.py``; the zips come from
``saic-vul/fbrs_interactive_segmentation`` release v1.0)::

    GrabCut/data_GT/<name>.<jpg|bmp>     GrabCut/boundary_GT/<name>.bmp     (mask: 0 bg, 128 ignore, 255 fg)
    Berkeley/images/<name>.jpg           Berkeley/masks/<name>.png          (same encoding as GrabCut)
    DAVIS/img/<name>.jpg                 DAVIS/gt/<name>.png                (any channel > 0 is foreground)

Images are listed sorted by file name; each image's mask is the file in the mask folder with the same stem.
GrabCut/Berkeley masks: value 128 becomes "ignore" and values > 128 are the object, exactly as RITM's loader;
other values (0 and anything below 128) are background. ``root`` may be the dataset folder itself or its parent
(the folder the zip was extracted into).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

from unsamv2.datasets.sample import ObjectMask, Sample, read_label_image, resolve_root

__all__ = ["IMAGE_SUFFIXES", "load_berkeley", "load_davis", "load_grabcut"]

log = logging.getLogger(__name__)

#: File suffixes accepted as images/masks (RITM globs ``*.*``; we skip stray non-image files such as Thumbs.db).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})


def _list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def _mask_index(folder: Path) -> dict[str, Path]:
    # RITM keys masks by the part of the name before the first dot; Path.stem differs only for names with
    # several dots, which these benchmarks do not have.
    return {p.name.split(".")[0]: p for p in _list_images(folder)}


def _ignore_coded_sample(image_path: Path, mask_path: Path | None) -> Sample:
    """GrabCut/Berkeley encoding: 128 = ignore, > 128 = object."""
    image_id = image_path.name.split(".")[0]
    if mask_path is None:
        return Sample(image_id, image_path, error=f"no mask file for image {image_path}")
    try:
        raw = read_label_image(mask_path)
    except ValueError as exc:
        return Sample(image_id, image_path, error=str(exc))
    ignore = raw == 128
    gt = raw > 128
    if not gt.any():
        return Sample(image_id, image_path, error=f"empty ground-truth mask {mask_path}")
    return Sample(image_id, image_path, [ObjectMask(gt, ignore if ignore.any() else None, "1")])


def _iterate(root: Path, images_dir: str, masks_dir: str, make: Callable[[Path, Path | None], Sample]) -> Iterator[Sample]:
    masks = _mask_index(root / masks_dir)
    for image_path in _list_images(root / images_dir):
        yield make(image_path, masks.get(image_path.name.split(".")[0]))


def load_grabcut(root: str | Path) -> Iterator[Sample]:
    """GrabCut (50 images, 1 object each, 128-valued ignore band around the boundary)."""
    base = resolve_root(root, "data_GT", nested=("GrabCut",))
    return _iterate(base, "data_GT", "boundary_GT", _ignore_coded_sample)


def load_berkeley(root: str | Path) -> Iterator[Sample]:
    """Berkeley (96 images / 100 instances in RITM's packaging: one mask file per listed image)."""
    base = resolve_root(root, "images", nested=("Berkeley",))
    return _iterate(base, "images", "masks", _ignore_coded_sample)


def _davis_sample(image_path: Path, mask_path: Path | None) -> Sample:
    """DAVIS encoding: any non-zero channel value is foreground (RITM takes the max over the BGR channels)."""
    image_id = image_path.name.split(".")[0]
    if mask_path is None:
        return Sample(image_id, image_path, error=f"no mask file for image {image_path}")
    raw = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        return Sample(image_id, image_path, error=f"cannot read mask image {mask_path}")
    gt = (raw.max(axis=2) if raw.ndim == 3 else raw) > 0
    if not gt.any():
        return Sample(image_id, image_path, error=f"empty ground-truth mask {mask_path}")
    return Sample(image_id, image_path, [ObjectMask(np.ascontiguousarray(gt), None, "1")])


def load_davis(root: str | Path) -> Iterator[Sample]:
    """DAVIS as used for interactive segmentation (345 frames, 1 object each)."""
    base = resolve_root(root, "img", nested=("DAVIS",))
    return _iterate(base, "img", "gt", _davis_sample)
