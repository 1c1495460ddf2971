"""SA-1B held-out subset for interactive evaluation (1,000 images, up to 5 non-overlapping masks each).

Layouts accepted (``root`` is the folder that holds them)::

    images/<id>.jpg + annotations/<id>.json      (GraCo / UnSAMv2 evaluation layout)
    <id>.jpg + <id>.json                         (flat, as the SA-1B ``sa_XXXXXX.tar`` shards extract)

Each JSON is the SA-1B per-image format: ``{"image": {...,"height","width"}, "annotations": [{"segmentation":
<COCO RLE>, ...}, ...]}``.

Subset definition (design.md: "subsets defined by versioned id lists, never by directory order"):

* The image ids come from an **id list file** (one id per line, ``#`` comments allowed). :func:`make_id_list`
  builds one deterministically: all ids found under ``root``, sorted, minus the ids used for training, first
  ``num_images``; :func:`write_id_list` stores it with a version header so the run can be repeated exactly.
  (The official code takes the first 1,000 names of an unsorted ``os.listdir``, which is not reproducible.)
* Per image, up to ``max_masks`` = 5 masks are drawn in a random order seeded by ``(seed, image id)``; a mask
  is accepted if it has at least ``min_area`` pixels and does not overlap any mask accepted before it.
  The official code draws unseeded and, after removing an accepted mask from its list, indexes the annotation
  list with positions of the shortened list, so the annotation it records is not always the mask it checked for
  overlap — we do not reproduce that.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from unsamv2.datasets.sample import ObjectMask, Sample, stable_uniform
from unsamv2.io.atomic import atomic_write_text
from unsamv2.io.images import read_id_list
from unsamv2.io.masks import decode_rle

__all__ = [
    "ID_LIST_VERSION",
    "decode_segmentation",
    "excluded_ids",
    "find_layout",
    "load_sa1b",
    "make_id_list",
    "select_masks",
    "write_id_list",
]

ID_LIST_VERSION = 1
_HEADER = "# unsamv2 sa1b-interactive id list v{version}"


def find_layout(root: str | Path) -> tuple[Path, Path]:
    """Return ``(images_dir, annotations_dir)`` for either accepted layout."""
    base = Path(root)
    if (base / "annotations").is_dir() and (base / "images").is_dir():
        return base / "images", base / "annotations"
    if base.is_dir() and any(base.glob("*.json")):
        return base, base
    raise FileNotFoundError(f"SA-1B layout not found under {base}: expected images/ + annotations/ folders, "
                            "or <id>.jpg + <id>.json files side by side")


def make_id_list(root: str | Path, num_images: int = 1000, exclude_ids: Iterable[str] = ()) -> list[str]:
    """The first ``num_images`` ids under ``root`` in sorted order, skipping ``exclude_ids`` (e.g. training ids)."""
    _, ann_dir = find_layout(root)
    excluded = set(exclude_ids)
    ids = sorted(p.stem for p in ann_dir.glob("*.json") if p.stem not in excluded)
    return ids[:num_images]


def excluded_ids(exclude_ids: Iterable[str] = (), exclude_id_list: str | Path | None = None) -> set[str]:
    """Union of explicit ids and the ids of an id-list file (either may be empty)."""
    ids = set(exclude_ids)
    if exclude_id_list is not None:
        ids |= set(read_id_list(exclude_id_list))
    return ids


def write_id_list(path: str | Path, ids: Sequence[str], rule: str) -> Path:
    """Write a versioned id list (atomically); read it back with ``unsamv2.io.images.read_id_list``.

    ``rule`` says in words how the ids were chosen; it is stored as a ``#`` comment line with the version.
    """
    lines = [_HEADER.format(version=ID_LIST_VERSION), f"# rule: {rule}", f"# count: {len(ids)}", *ids]
    return atomic_write_text(path, "\n".join(lines) + "\n")


def decode_segmentation(segmentation: dict | list, height: int, width: int) -> np.ndarray:
    """Decode a COCO segmentation (compressed RLE, uncompressed RLE or polygons) to a bool (H, W) mask."""
    if isinstance(segmentation, list):  # polygons: merge all parts into one mask
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
        return mask_utils.decode(rle).astype(bool)
    mask = decode_rle(segmentation)
    if mask.shape != (height, width):
        raise ValueError(f"segmentation has size {mask.shape}, but the image record says {(height, width)}")
    return mask


def select_masks(
    annotations: Sequence[dict], height: int, width: int, image_id: str, seed: int = 0, max_masks: int = 5,
    min_area: int = 1,
) -> list[tuple[int, np.ndarray]]:
    """Pick up to ``max_masks`` pairwise non-overlapping masks in a seeded random order.

    Returns ``(annotation index, mask)`` pairs in acceptance order. Masks are decoded one at a time and only until
    enough are accepted: an SA-1B image has ~100 masks of several megapixels each.
    """
    rng = np.random.default_rng(int(stable_uniform("sa1b", seed, image_id) * 2**63))
    taken = np.zeros((height, width), dtype=bool)
    chosen: list[tuple[int, np.ndarray]] = []
    for index in rng.permutation(len(annotations)):
        if len(chosen) >= max_masks:
            break
        mask = decode_segmentation(annotations[int(index)]["segmentation"], height, width)
        if int(mask.sum()) < min_area or (mask & taken).any():
            continue
        chosen.append((int(index), mask))
        taken |= mask
    return chosen


def load_sa1b(
    root: str | Path,
    id_list: str | Path | None = None,
    num_images: int = 1000,
    exclude_ids: Iterable[str] = (),
    exclude_id_list: str | Path | None = None,
    seed: int = 0,
    max_masks: int = 5,
    min_area: int = 1,
) -> Iterator[Sample]:
    """Yield the SA-1B interactive subset.

    ``id_list`` (recommended) fixes the images; without it the subset is :func:`make_id_list` over ``root``,
    skipping ``exclude_ids`` and the ids of the file ``exclude_id_list`` (e.g. the training images' list).
    """
    images_dir, ann_dir = find_layout(root)
    if id_list is not None:
        ids = read_id_list(id_list)
    else:
        ids = make_id_list(root, num_images, excluded_ids(exclude_ids, exclude_id_list))
    return _iterate(images_dir, ann_dir, ids, seed, max_masks, min_area)


def _iterate(images_dir: Path, ann_dir: Path, ids: list[str], seed: int, max_masks: int,
             min_area: int) -> Iterator[Sample]:
    for image_id in ids:
        json_path = ann_dir / f"{image_id}.json"
        image_path = images_dir / f"{image_id}.jpg"
        try:
            record = json.loads(json_path.read_text())
            info = record["image"]
            height, width = int(info["height"]), int(info["width"])
            chosen = select_masks(record["annotations"], height, width, image_id, seed, max_masks, min_area)
        except Exception as exc:  # noqa: BLE001 - a bad file must not stop the dataset; the error is reported
            yield Sample(image_id, image_path, error=f"{json_path}: {exc}")
            continue
        objects = [ObjectMask(mask, None, str(record["annotations"][i].get("id", i))) for i, mask in chosen]
        if objects:
            yield Sample(image_id, image_path, objects)
