"""Training dataset over Stage-1 pseudo-labels: images + per-image SA-1B-style JSONs.

What one item is (official ``UnSAMRawDataset`` + ``UnSAMSegmentLoader`` + ``RandomUniformSampler`` +
``vos.train_transforms``, re-implemented):

1. The JSON's non-empty masks (pixel count of the decoded RLE > 0, as the official loader decodes and counts)
   with their stored ``granularity``; a missing, non-numeric, NaN or ±Inf granularity becomes 1.0 (official
   loader default).
2. Up to ``max_masks`` (30) of them, drawn uniformly without replacement.
3. With ``augment=True``, the official transform chain, applied to the image and all drawn masks with the same
   parameters: horizontal flip (p 0.5) → random affine (rotation ±25°, x-shear ±20°, about the image centre;
   bilinear image with fill (123, 116, 103), nearest-neighbour masks; skipped entirely when it would make any
   drawn mask empty, as SAM-2's ``RandomAffine`` with ``num_tentatives=1``) → square resize → ColorJitter
   (brightness 0.1, contrast 0.03, saturation 0.03, random order) → RandomGrayscale (p 0.05) → ColorJitter
   (0.1, 0.05, 0.05). Without augmentation only the resize.
4. ImageNet mean/std normalisation.

Reproducibility: every random draw of an item comes from ``numpy.random.default_rng((seed, epoch, index))``, so
an item is a pure function of ``(seed, epoch, index)`` whatever the worker or the order; call
:meth:`PseudoLabelDataset.set_epoch` at the start of each epoch (a ``DistributedSampler``-like habit). DataLoader
workers get a copy of the dataset when an epoch's iterator is created, so the call reaches them unless
``persistent_workers=True`` (then the workers keep the epoch they started with).

Deviations from the reference, all deliberate:

* Resizing: the image is resized with ``INTER_AREA`` when shrinking (an anti-aliased reduction, like the PIL
  resize the reference uses) and ``INTER_LINEAR`` otherwise; each mask is resized the same way as a 0/255 image
  and kept where the result is ≥ 128, i.e. where at least half of the source footprint is inside the mask —
  what SAM-2's bilinear resize of 0/1 ``uint8`` masks followed by ``bool()`` amounts to. A drawn mask can
  still become empty (a few pixels shrunk away): it is kept, the loss then masks it out.
* Colour ops work on float images in [0, 1] (the reference applies them to 8-bit PIL images; no rounding here).
* The order of random draws and the random number generator differ (NumPy instead of Python/torch RNGs).

File names: any ``*.json`` (hidden files skipped), sorted — ``sa_<id>.json``, ``f_sa_<id>.json`` (official
names) or our ``<stem>.json``. The image is ``image.file_name`` of the JSON, looked up in ``images_dir``; when the
JSON has no ``file_name`` the JSON stem without a leading ``f_`` is tried with the usual image extensions.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from unsamv2.io.images import IMAGE_EXTENSIONS, load_image_rgb
from unsamv2.io.masks import decode_rle, rle_area
from unsamv2.io.pseudo_labels import read_document

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PseudoLabelDataset",
    "augment_sample",
    "collate",
    "read_pseudo_labels",
    "resize_sample",
    "valid_granularity",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
# SAM-2's RandomAffine fill for the image (its default image_mean), in 0..255 RGB.
AFFINE_FILL: tuple[int, int, int] = (123, 116, 103)
# (brightness, contrast, saturation) of the two ColorJitters of the official chain.
JITTER_1: tuple[float, float, float] = (0.1, 0.03, 0.03)
JITTER_2: tuple[float, float, float] = (0.1, 0.05, 0.05)
GRAYSCALE_P = 0.05
MAX_ROTATION_DEG = 25.0
MAX_SHEAR_DEG = 20.0
# ITU-R 601 luma weights, as torchvision's rgb_to_grayscale.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def valid_granularity(value: Any) -> float:
    """The stored granularity if it is a finite number, else 1.0 (the official loader's default)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 1.0
    return float(value) if math.isfinite(value) else 1.0


def read_pseudo_labels(json_path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[dict[str, Any]], list[float]]:
    """Read one pseudo-label JSON: its ``image`` dict, the non-empty annotations and their granularities.

    Errors (unreadable JSON, no ``annotations`` list, an RLE whose size disagrees with the image) name the file.
    """
    path = Path(json_path)
    doc = read_document(path)
    image = doc["image"]
    anns: list[dict[str, Any]] = []
    grans: list[float] = []
    for k, ann in enumerate(doc["annotations"]):
        seg = ann.get("segmentation") if isinstance(ann, dict) else None
        if seg is None:
            raise ValueError(f"pseudo-label file {path}: annotation #{k} has no 'segmentation'")
        try:
            area = rle_area(seg)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"pseudo-label file {path}: annotation #{k} has a bad RLE: {exc}") from exc
        if area > 0:
            anns.append(ann)
            grans.append(valid_granularity(ann.get("granularity")))
    return image, anns, grans


def _find_image(json_path: Path, image_info: dict[str, Any], images_dir: Path) -> Path:
    name = image_info.get("file_name")
    if isinstance(name, str) and name:
        candidate = images_dir / name
        if candidate.is_file():
            return candidate
        raise FileNotFoundError(f"image {candidate} named by {json_path} (image.file_name) does not exist")
    stem = json_path.stem.removeprefix("f_")
    for ext in sorted(IMAGE_EXTENSIONS):
        for candidate in (images_dir / f"{stem}{ext}", images_dir / f"{stem}{ext.upper()}"):
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(f"no image for {json_path}: it has no image.file_name and no {stem}.<ext> in {images_dir}")


# --------------------------------------------------------------------------------------------- transforms


def _resize_interpolation(src_hw: tuple[int, int], size: int) -> int:
    return cv2.INTER_AREA if size < src_hw[0] or size < src_hw[1] else cv2.INTER_LINEAR


def resize_sample(image: np.ndarray, masks: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize an (H, W, 3) uint8 image and (N, H, W) bool masks to ``size × size`` (see the module docstring)."""
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image, masks
    interp = _resize_interpolation((h, w), size)
    out_image = cv2.resize(image, (size, size), interpolation=interp)
    out_masks = np.zeros((masks.shape[0], size, size), dtype=bool)
    for i, m in enumerate(masks):
        # One mask at a time: OpenCV's multi-channel paths are not guaranteed to match its 1-channel path.
        out_masks[i] = cv2.resize(m.astype(np.uint8) * 255, (size, size), interpolation=interp) >= 128
    return out_image, out_masks


def _affine_matrix(angle_deg: float, shear_deg: float, h: int, w: int) -> np.ndarray:
    """Forward 2×3 map: x-shear then rotation, about the image centre (pixel centres at integer coordinates)."""
    a = math.radians(angle_deg)
    s = math.tan(math.radians(shear_deg))
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    shear = np.array([[1.0, s], [0.0, 1.0]])
    lin = rot @ shear
    centre = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    return np.hstack([lin, (centre - lin @ centre)[:, None]]).astype(np.float64)


def _random_affine(
    image: np.ndarray, masks: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Rotate (±25°) and x-shear (±20°) image and masks with one matrix; unchanged if a mask would vanish."""
    h, w = image.shape[:2]
    angle = rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG)
    shear = rng.uniform(-MAX_SHEAR_DEG, MAX_SHEAR_DEG)
    matrix = _affine_matrix(angle, shear, h, w)
    warped_masks = np.zeros_like(masks)
    for i, m in enumerate(masks):
        warped = cv2.warpAffine(m.astype(np.uint8), matrix, (w, h), flags=cv2.INTER_NEAREST,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        if not warped.any():
            # SAM-2 (num_tentatives=1): a mask pushed out of the frame cancels the whole affine step.
            return image, masks
        warped_masks[i] = warped > 0
    warped_image = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=AFFINE_FILL)
    return warped_image, warped_masks


def _grayscale(img: np.ndarray) -> np.ndarray:
    return img @ _LUMA


def _color_jitter(img: np.ndarray, strengths: tuple[float, float, float], rng: np.random.Generator) -> np.ndarray:
    """torchvision ColorJitter (no hue) on a float (H, W, 3) image in [0, 1]: factors U(1±s), random order."""
    factors = [rng.uniform(max(0.0, 1 - s), 1 + s) for s in strengths]
    for op in rng.permutation(3):
        f = factors[op]
        if op == 0:  # brightness: scale towards black
            img = img * f
        elif op == 1:  # contrast: blend with the mean luma of the image
            img = img * f + float(_grayscale(img).mean()) * (1 - f)
        else:  # saturation: blend with the per-pixel luma
            img = img * f + _grayscale(img)[..., None] * (1 - f)
        img = np.clip(img, 0.0, 1.0)
    return img


def augment_sample(
    image: np.ndarray, masks: np.ndarray, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The official augmentation chain; (H, W, 3) uint8 + (N, H, W) bool → float (size, size, 3) in [0, 1] + masks."""
    if rng.random() < 0.5:
        image = image[:, ::-1]
        masks = masks[:, :, ::-1]
    image, masks = _random_affine(np.ascontiguousarray(image), np.ascontiguousarray(masks), rng)
    image, masks = resize_sample(image, masks, size)
    img = image.astype(np.float32) / 255.0
    img = _color_jitter(img, JITTER_1, rng)
    if rng.random() < GRAYSCALE_P:
        img = np.repeat(_grayscale(img)[..., None], 3, axis=2)
    img = _color_jitter(img, JITTER_2, rng)
    return img, masks


# --------------------------------------------------------------------------------------------- dataset


class PseudoLabelDataset(Dataset):
    """Images with up to ``max_masks`` pseudo-label masks each and their granularities.

    Args:
        annotations_dir: folder of per-image JSONs (the format of :mod:`unsamv2.io.pseudo_labels`).
        images_dir: folder holding the images named by the JSONs' ``image.file_name``.
        image_size: side of the square training resolution (1024 in the paper).
        max_masks: masks drawn per image (30 in the paper).
        augment: apply the official augmentation chain (otherwise: resize + normalise only).
        multiplier: each epoch visits every image this many times (2 in the paper).
        seed: base seed of all random draws.
        max_images: keep only the first ``max_images`` JSONs in sorted order.

    Item: ``{"image": float32 (3, S, S) normalised, "masks": bool (N, S, S), "granularity": float32 (N,),
    "image_id": JSON image id (or the file stem if absent), "file_name": the JSON's name}`` with N ≤ max_masks
    (N = 0 for an image without non-empty masks: the training loop skips it).
    """

    def __init__(
        self,
        annotations_dir: str | os.PathLike[str],
        images_dir: str | os.PathLike[str],
        image_size: int = 1024,
        max_masks: int = 30,
        augment: bool = True,
        multiplier: int = 1,
        seed: int = 0,
        max_images: int | None = None,
    ) -> None:
        self.annotations_dir = Path(annotations_dir)
        self.images_dir = Path(images_dir)
        if not self.annotations_dir.is_dir():
            raise FileNotFoundError(f"pseudo-label folder {self.annotations_dir} does not exist")
        if not self.images_dir.is_dir():
            raise FileNotFoundError(f"image folder {self.images_dir} does not exist")
        if image_size < 1 or max_masks < 1 or multiplier < 1:
            raise ValueError(f"image_size, max_masks and multiplier must be >= 1, got {image_size}, {max_masks}, "
                             f"{multiplier}")
        files = sorted(p for p in self.annotations_dir.glob("*.json") if p.is_file() and not p.name.startswith("."))
        if max_images is not None:
            files = files[:max_images]
        if not files:
            raise FileNotFoundError(f"no pseudo-label *.json files in {self.annotations_dir}")
        self.files: list[Path] = files
        self.image_size = image_size
        self.max_masks = max_masks
        self.augment = augment
        self.multiplier = multiplier
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random draws the next items use."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.files) * self.multiplier

    def item_rng(self, index: int) -> np.random.Generator:
        """The generator of item ``index`` in the current epoch."""
        return np.random.default_rng([self.seed, self.epoch, index])

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} items")
        json_path = self.files[index % len(self.files)]
        rng = self.item_rng(index)
        image_info, anns, grans = read_pseudo_labels(json_path)
        image = load_image_rgb(_find_image(json_path, image_info, self.images_dir))
        h, w = image.shape[:2]

        chosen = np.sort(rng.choice(len(anns), size=min(self.max_masks, len(anns)), replace=False))
        masks = np.zeros((len(chosen), h, w), dtype=bool)
        for i, k in enumerate(chosen):
            m = decode_rle(anns[k]["segmentation"])
            if m.shape != (h, w):
                raise ValueError(f"pseudo-label file {json_path}: mask size {m.shape} differs from the image "
                                 f"size {(h, w)}")
            masks[i] = m
        granularity = np.array([grans[k] for k in chosen], dtype=np.float32)

        if self.augment:
            img, masks = augment_sample(image, masks, self.image_size, rng)
        else:
            image, masks = resize_sample(image, masks, self.image_size)
            img = image.astype(np.float32) / 255.0
        img = (img - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32)),
            "masks": torch.from_numpy(np.ascontiguousarray(masks)),
            "granularity": torch.from_numpy(granularity),
            "image_id": image_info.get("id", json_path.stem),
            "file_name": json_path.name,
        }


def collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch items with different mask counts: masks of all images are concatenated along one object axis.

    Returns ``image`` (B, 3, S, S), ``masks`` (ΣN, S, S) bool, ``granularity`` (ΣN,), ``batch_index`` (ΣN,)
    int64 — the image each mask belongs to (SAM-2's ``obj_to_frame_idx``) —, ``num_masks`` (B,) int64, and the
    lists ``image_id`` and ``file_name``.
    """
    if not items:
        raise ValueError("collate: empty batch")
    counts = [int(it["masks"].shape[0]) for it in items]
    return {
        "image": torch.stack([it["image"] for it in items]),
        "masks": torch.cat([it["masks"] for it in items]),
        "granularity": torch.cat([it["granularity"] for it in items]),
        "batch_index": torch.repeat_interleave(torch.arange(len(items)), torch.tensor(counts, dtype=torch.long)),
        "num_masks": torch.tensor(counts, dtype=torch.long),
        "image_id": [it["image_id"] for it in items],
        "file_name": [it["file_name"] for it in items],
    }
