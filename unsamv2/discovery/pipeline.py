"""Granularity-aware divide-and-conquer on one image (paper §3.3), following the official code's behaviour.

Per image: divide (MaskCut on the backbone's patch affinity, or external proposals such as CutLER's) →
instance/part relations → per instance: crop, patch features, iterative merging (conquer), coverage filter,
windowed NMS, protected NMS with the divide parts, optional refinement → annotations in the SA-1B-style format.

Granularity is *not* computed here: `unsamv2.discovery.scoring` fills it in a separate stage, so that the
scoring formula can change without rerunning discovery. The only granularity this stage writes is the official
code's fixed 0.5 for the fallback parts (parts existed but none survived refinement).

To keep memory bounded on large photos, everything belonging to one instance is computed in a local frame: the
bounding box of the instance and its divide parts. IoU, coverage and areas do not depend on the frame.
"""
from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from unsamv2.discovery.config import DiscoveryConfig
from unsamv2.discovery.crf import maskcut_crf
from unsamv2.discovery.features import FeatureBackbone
from unsamv2.discovery.hierarchy import find_instances_and_parts
from unsamv2.discovery.maskcut import maskcut_with_scores, upsample_patch_mask
from unsamv2.discovery.merge import iterative_merge
from unsamv2.discovery.nms import protected_nms, windowed_nms
from unsamv2.io.masks import decode_rle, encode_rle, mask_bbox_xywh
from unsamv2.io.pseudo_labels import make_document

log = logging.getLogger(__name__)

# A refiner takes (image, mask) in full-image coordinates and returns the refined mask, or None to drop it.
Refiner = Callable[[np.ndarray, np.ndarray], "np.ndarray | None"]


@dataclass(frozen=True)
class Box:
    """Half-open box [y0, y1) x [x0, x1) in full-image pixel coordinates."""

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.y1 - self.y0, self.x1 - self.x0

    def cut(self, full: np.ndarray) -> np.ndarray:
        return full[self.y0 : self.y1, self.x0 : self.x1]

    def paste(self, local: np.ndarray, full_shape: tuple[int, int]) -> np.ndarray:
        out = np.zeros(full_shape, dtype=bool)
        out[self.y0 : self.y1, self.x0 : self.x1] = local
        return out


def reference_crop_bounds(mask: np.ndarray) -> Box:
    """The official `smallest_square_containing_mask`: the tight bbox, whose last row and column are then *excluded*
    by the slicing `image[ymin:ymax, xmin:xmax]`. Reproduced on purpose so crops and features match the code."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0 or cols.size == 0:
        return Box(0, 1, 0, 1)
    return Box(int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1]))


def tight_box(masks: Sequence[np.ndarray]) -> Box:
    """Smallest half-open box containing every pixel of every mask."""
    union = np.logical_or.reduce([np.asarray(m, dtype=bool) for m in masks])
    rows = np.flatnonzero(union.any(axis=1))
    cols = np.flatnonzero(union.any(axis=0))
    if rows.size == 0:
        return Box(0, 1, 0, 1)
    return Box(int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)


def resize_keep_aspect(image: np.ndarray, long_side: int, multiple: int) -> np.ndarray:
    """The official `resize_with_aspect_ratio`: long side → `long_side` (short side floored), then both sides
    rounded *up* to a multiple of the patch size; PIL's default (bicubic) resampling."""
    h, w = image.shape[:2]
    if w >= h:
        new_w, new_h = long_side, int(h * (long_side / w))
    else:
        new_h, new_w = long_side, int(w * (long_side / h))
    # A sliver crop can floor to 0 pixels; one patch is the least a backbone can embed.
    new_w = max(multiple, -(-new_w // multiple) * multiple)
    new_h = max(multiple, -(-new_h // multiple) * multiple)
    return np.asarray(Image.fromarray(image).resize((new_w, new_h)))


def resize_patch_mask(mask: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """The official `resize_mask` followed by `> 127.5`: a 0/255 image resized with PIL's default filter,
    re-binarised at half its own maximum. A mask whose resized maximum is ≤ 127.5 vanishes, as in the code."""
    resized = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((out_hw[1], out_hw[0])))
    upper, lower = int(resized.max()), int(resized.min())
    binarised = np.where(resized > upper / 2.0, upper, lower)
    return binarised > 0.5 * 255


def coverage(mask: np.ndarray, region: np.ndarray) -> float:
    """|mask ∩ region| / |mask| (0 for an empty mask), the official `coverage`."""
    n = int(np.count_nonzero(mask))
    return 0.0 if n == 0 else float(np.count_nonzero(mask & region)) / n


# --------------------------------------------------------------------------------------------- divide


def divide_maskcut(
    image: np.ndarray, backbone: FeatureBackbone, cfg: DiscoveryConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Instance proposals by MaskCut on the whole image; returns full-resolution masks (n, H, W) and scores.

    With ``cfg.maskcut_crf`` each cut is post-processed as CutLER does (:func:`unsamv2.discovery.crf.maskcut_crf`
    on the resized image MaskCut saw, then resized to the image like CutLER's annotations; on the image itself
    when that is smaller); a mask the CRF drops is dropped with its score. Without it, the patch grid is
    nearest-upsampled to the image.
    """
    h, w = image.shape[:2]
    resized = resize_keep_aspect(image, cfg.maskcut_long_side, backbone.patch_size)
    features = backbone(resized)
    patch_masks, scores = maskcut_with_scores(features, n_masks=cfg.maskcut_masks, tau=cfg.maskcut_tau)
    masks = np.zeros((len(patch_masks), h, w), dtype=bool)
    # The CRF runs on the image MaskCut saw, as in CutLER, unless that image was upsampled: then on the image
    # itself, since interpolated pixels add cost (about 3.5x for 256 -> 480 px) and no edges.
    crf_image = image if max(h, w) < max(resized.shape[:2]) else resized
    for i, pm in enumerate(patch_masks):
        if cfg.maskcut_crf:
            cut = upsample_patch_mask(pm, crf_image.shape[:2])
            refined = maskcut_crf(crf_image, cut, cfg.crf_params(), cfg.crf_min_iou)
            if refined.any():
                masks[i] = refined if refined.shape == (h, w) else resize_patch_mask(refined, (h, w))
        else:
            # Nearest-neighbour upsampling of the patch grid, as CutLER does for its MaskCut masks.
            masks[i] = upsample_patch_mask(pm, (h, w))
    keep = masks.reshape(len(masks), -1).any(axis=1)
    return masks[keep], np.asarray(scores, dtype=np.float64)[keep]


def load_external_proposals(path: Path, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Read externally produced proposals (e.g. CutLER's detector output) for one image.

    Accepted: a JSON list of {"segmentation": COCO RLE, "score": float}, or a dict with such a list under
    "annotations" (a COCO results file of one image). A proposal without a score counts as score 1.0.
    """
    if not path.is_file():
        raise FileNotFoundError(f"no external proposals for this image: {path} does not exist")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    items = doc["annotations"] if isinstance(doc, dict) else doc
    masks, scores = [], []
    for k, item in enumerate(items):
        try:
            m = decode_rle(item["segmentation"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: proposal {k} has no valid COCO RLE 'segmentation' ({exc})") from exc
        if m.shape != (height, width):
            raise ValueError(f"{path}: proposal {k} is {m.shape[0]}x{m.shape[1]}, image is {height}x{width}")
        masks.append(m)
        scores.append(float(item.get("score", 1.0)))
    stack = np.stack(masks) if masks else np.zeros((0, height, width), dtype=bool)
    return stack, np.asarray(scores, dtype=np.float64)


# --------------------------------------------------------------------------------------------- conquer


def conquer_instance(
    image: np.ndarray, instance: np.ndarray, backbone: FeatureBackbone, cfg: DiscoveryConfig
) -> tuple[Box, list[np.ndarray]] | None:
    """Iterative merging inside the instance's crop; returns the crop box and the kept masks in crop coordinates,
    or None when the crop is empty (the official code then skips the instance entirely)."""
    box = reference_crop_bounds(instance)
    ch, cw = box.shape
    if ch <= 0 or cw <= 0:
        return None
    crop = resize_keep_aspect(box.cut(image), cfg.local_size, backbone.patch_size)
    features = backbone(crop)
    levels = iterative_merge(features, cfg.thetas, min_size=cfg.min_size)
    instance_crop = box.cut(instance)
    kept: list[np.ndarray] = []
    for level in levels:
        for patch_mask in level:
            m = resize_patch_mask(patch_mask, (ch, cw))
            if coverage(m, instance_crop) > cfg.kept_threshold:
                kept.append(m)
    return box, kept


# --------------------------------------------------------------------------------------------- one image


@dataclass
class RawAnnotation:
    mask: np.ndarray  # full-image bool
    is_divide: bool
    is_part: bool
    instance_id: int
    is_conquer: bool
    granularity: float | None  # None = to be scored; set only for the official fallback parts (0.5)


def _stack(masks: Sequence[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    return np.stack(masks).astype(bool) if len(masks) else np.zeros((0, *shape), dtype=bool)


def discover_masks(
    image: np.ndarray,
    backbone: FeatureBackbone,
    cfg: DiscoveryConfig,
    proposals: tuple[np.ndarray, np.ndarray] | None = None,
    refiner: Refiner | None = None,
) -> list[RawAnnotation]:
    """Run divide-and-conquer on one RGB image and return annotations in the official order.

    `proposals` replaces the MaskCut divide step with external (masks, scores); `refiner` is the optional
    CascadePSP-style plug-in applied to instances (before conquer) and to final parts, with the code's fallback.
    """
    h, w = image.shape[:2]
    if proposals is None:
        masks, scores = divide_maskcut(image, backbone, cfg)
    else:
        masks, scores = proposals
    masks = masks[scores > cfg.confidence_threshold]
    instances = find_instances_and_parts(
        masks,
        mode=cfg.relation,
        overlap_thresh=cfg.overlap_threshold,
        min_instance_area=cfg.min_instance_area,
    )
    out: list[RawAnnotation] = []
    for inst_idx, inst in enumerate(instances):
        inst_mask = masks[inst.index]
        if refiner is not None and cfg.refines_instances:
            refined = refiner(image, inst_mask)
            if refined is not None:
                inst_mask = refined
        conquered = conquer_instance(image, inst_mask, backbone, cfg)
        if conquered is None:
            continue
        crop_box, conquer_local = conquered
        divide_parts = [masks[j] for j in inst.parts]
        frame = tight_box([inst_mask, *divide_parts])
        fshape = frame.shape
        # Conquer masks live in the crop, which lies inside the instance's bbox and hence inside the frame.
        oy, ox = crop_box.y0 - frame.y0, crop_box.x0 - frame.x0
        conquer = np.zeros((len(conquer_local), *fshape), dtype=bool)
        for k, m in enumerate(conquer_local):
            conquer[k, oy : oy + m.shape[0], ox : ox + m.shape[1]] = m
        conquer = conquer[windowed_nms(conquer, cfg.nms_iou, cfg.nms_step)]
        normal = np.concatenate([conquer, _stack([frame.cut(p) for p in divide_parts], fshape)])
        inst_local = frame.cut(inst_mask)[None]
        final = protected_nms(inst_local, normal, cfg.nms_iou, cfg.nms_step) if len(normal) else inst_local
        n_conquer = len(conquer)
        final_parts = [frame.paste(m, (h, w)) for m in final[1:]]
        current_instance = frame.paste(final[0], (h, w))
        # The code drops empty masks when it builds annotations; is_conquer is its index-based flag (unreliable
        # after the area sort, reproduced as released and documented in the README).
        candidates = [(m, idx < n_conquer) for idx, m in enumerate(final_parts) if m.any()]
        parts: list[tuple[np.ndarray, bool]] = []
        for m, is_conq in candidates:
            refined = refiner(image, m) if refiner is not None else m
            if refined is not None and cfg.clips_parts_to_instance:
                # A part must stay inside its instance, so that the granularity formula's areas nest.
                refined = refined & current_instance
            if refined is not None and refined.any():
                parts.append((refined, is_conq))
        if parts:
            for m, is_conq in parts:
                out.append(RawAnnotation(m, False, True, inst_idx, is_conq, None))
        elif final_parts:
            # Official fallback: parts existed but none survived refinement → every final mask, the instance
            # itself included, is written as a part with granularity 0.5.
            fallback = [frame.paste(m, (h, w)) for m in final] if candidates else final_parts
            for idx, m in enumerate(fallback):
                if cfg.clips_parts_to_instance:
                    m = m & current_instance
                if m.any():
                    out.append(RawAnnotation(m, False, True, inst_idx, idx < n_conquer, 0.5))
        if current_instance.any():
            out.append(RawAnnotation(current_instance, True, False, inst_idx, False, None))
    return out


def to_sa1b_json(annotations: Sequence[RawAnnotation], image_id: int, file_name: str, hw: tuple[int, int]) -> dict:
    """The official output document (:mod:`unsamv2.io.pseudo_labels`) of one image's raw annotations."""
    h, w = hw
    now = datetime.datetime.now(datetime.UTC).isoformat(" ")
    anns: list[dict[str, Any]] = []
    for k, a in enumerate(annotations, start=1):
        rle = encode_rle(a.mask)
        anns.append(
            {
                "id": k,
                "image_id": image_id,
                "category_id": 1,
                "iscrowd": 0,
                "area": int(np.count_nonzero(a.mask)),
                "bbox": mask_bbox_xywh(a.mask),
                "segmentation": rle,
                "width": w,
                "height": h,
                "is_divide": a.is_divide,
                "granularity": a.granularity,
                "instance_id": a.instance_id,
                "is_part": a.is_part,
                "is_conquer": a.is_conquer,
            }
        )
    return make_document(image_id, file_name, hw, anns,
                         description="unsamv2 pseudo-labels (granularity-aware divide-and-conquer)", date=now)


@dataclass
class ImageResult:
    image_id: int
    file_name: str
    status: str  # "ok" | "done_before" | "error"
    n_masks: int
    seconds: float
    error: str = ""
