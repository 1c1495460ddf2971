"""SA-1B's own masks in Stage 1: the supervised data of Table 5 and the divide proposals of UnSAMv2+ (§3.6).

Two values of ``discovery.divide`` read each image's SA-1B annotation JSON (``<stem>.json`` beside the image, as
the SA-1B tars extract, or in ``discovery.ground_truth_dir``):

``sa1b_gt`` (Table 5, "supervised"): the pseudo-labels of an image are SA-1B's masks, unchanged — no MaskCut,
    no conquer, no refinement. Their instance/part hierarchy is the one :func:`find_instances_and_parts` builds
    for discovered masks, with the same settings; the scoring stage then fills the granularity with the same
    formula. A ground-truth mask is an object, not a noisy proposal, so none is dropped: the masks that hierarchy
    leaves out (SA-1B has many objects under ``min_instance_area`` of the image, and the parts inside them) get
    the same rule again among themselves without the area threshold, and a mask still left (two near-copies,
    which knock each other out under containment) is an instance of its own, scored 1.0 — the value the official
    training loader assumes for a mask without granularity.
``maskcut+sa1b_gt`` (UnSAMv2+): the divide proposals are MaskCut's ∪ SA-1B's masks, then the same hierarchy,
    conquer and scoring as ``maskcut``. A MaskCut proposal that duplicates a ground-truth mask is dropped (see
    :func:`union_proposals`); SA-1B's masks count as proposals of score 1.0.

No cap on the number of masks (SA-1B has about 100 per image, some several hundred; the official divide stage
takes up to 1,000 CutLER detections): the pair overlaps the hierarchy needs are chunked to a fixed memory budget
(``unsamv2.core.mask_overlap.CHUNK_BYTES``), so memory grows with the count only through the masks themselves,
3.4 MB each at SA-1B's 1500 x 2250 px (``benchmarks/bench_ground_truth_memory.py``).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from unsamv2.core.mask_overlap import as_mask_stack, intersection_matrix, iou_from_counts, mask_areas
from unsamv2.datasets.sa1b import decode_segmentation
from unsamv2.discovery.config import DiscoveryConfig
from unsamv2.discovery.hierarchy import Instance, find_instances_and_parts
from unsamv2.discovery.pipeline import RawAnnotation

__all__ = [
    "ground_truth_annotations",
    "ground_truth_hierarchy",
    "ground_truth_path",
    "load_ground_truth",
    "require_ground_truth",
    "union_proposals",
]


def ground_truth_path(image_path: Path, ground_truth_dir: str | None) -> Path:
    """The SA-1B annotation JSON of an image: ``<ground_truth_dir or the image's folder>/<stem>.json``."""
    folder = Path(ground_truth_dir) if ground_truth_dir else image_path.parent
    return folder / f"{image_path.stem}.json"


def require_ground_truth(image_paths: Sequence[Path], cfg: DiscoveryConfig) -> None:
    """Fail before any work when a ground-truth ``divide`` can find no annotation JSON at all.

    One missing JSON is that image's error (the shard lists it and continues); none for any of ``image_paths``
    means the JSONs were never extracted or ``ground_truth_dir`` is wrong, so every image would fail the same way.
    """
    if not cfg.needs_ground_truth:
        return
    if cfg.ground_truth_dir and not Path(cfg.ground_truth_dir).is_dir():
        raise FileNotFoundError(f"discovery.ground_truth_dir {cfg.ground_truth_dir} is not a folder "
                                f"(discovery.divide '{cfg.divide}' reads SA-1B's annotation JSONs from it)")
    wanted = [ground_truth_path(p, cfg.ground_truth_dir) for p in image_paths]
    if wanted and not any(p.is_file() for p in wanted):
        where = f"in {cfg.ground_truth_dir}" if cfg.ground_truth_dir else "beside the images"
        raise FileNotFoundError(
            f"discovery.divide '{cfg.divide}' needs SA-1B's annotation JSON of each image, but none of the "
            f"{len(wanted)} images has one {where} (e.g. {wanted[0]}): extract the SA-1B tars with "
            "`unsamv2 extract-images`, which writes each <stem>.json beside its image, or set "
            "discovery.ground_truth_dir to the folder of the JSONs"
        )


def load_ground_truth(path: Path, height: int, width: int) -> np.ndarray:
    """The masks of an SA-1B annotation JSON, an (n, height, width) bool stack in file order.

    Every error names the file: a missing or unreadable file, no ``annotations`` list, a JSON made for an image of
    another size, or a segmentation that does not decode. Empty masks are left out: they mark no object.
    """
    if not path.is_file():
        raise FileNotFoundError(f"no SA-1B annotation JSON for this image: {path} does not exist")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read SA-1B annotation JSON {path}: {exc}") from exc
    if not isinstance(record, dict) or not isinstance(record.get("annotations"), list):
        raise ValueError(f"SA-1B annotation JSON {path}: expected an object with an 'annotations' list")  # noqa: TRY004 (bad file content)
    info = record.get("image")
    if (isinstance(info, dict) and "height" in info and "width" in info
            and (int(info["height"]), int(info["width"])) != (height, width)):
        raise ValueError(f"SA-1B annotation JSON {path} is for a {info['height']}x{info['width']} image, "
                         f"this image is {height}x{width}")
    masks = []
    for k, ann in enumerate(record["annotations"]):
        try:
            mask = decode_segmentation(ann["segmentation"], height, width)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"SA-1B annotation JSON {path}: annotation {k} has no valid 'segmentation' "
                             f"({type(exc).__name__}: {exc})") from exc
        if mask.any():
            masks.append(mask)
    return np.stack(masks) if masks else np.zeros((0, height, width), dtype=bool)


def ground_truth_hierarchy(masks: np.ndarray, cfg: DiscoveryConfig) -> list[Instance]:
    """Instances and parts of ground-truth masks, every mask placed (see the module docstring).

    First :func:`find_instances_and_parts` with ``cfg``'s relation, overlap threshold and ``min_instance_area``;
    then the same on the masks not placed, with no area threshold; then each mask still unplaced alone. Indices
    refer to ``masks``; instances of each step keep the input order.
    """
    stack = as_mask_stack(masks, "masks")
    instances: list[Instance] = []
    remaining = np.arange(stack.shape[0])
    for min_area in (cfg.min_instance_area, 0.0):
        if remaining.size == 0:
            break
        found = find_instances_and_parts(stack[remaining], mode=cfg.relation,
                                         overlap_thresh=cfg.overlap_threshold, min_instance_area=min_area)
        instances += [Instance(int(remaining[i.index]), [int(remaining[p]) for p in i.parts]) for i in found]
        placed = {i.index for i in instances} | {p for i in instances for p in i.parts}
        remaining = np.array([k for k in remaining if int(k) not in placed], dtype=np.int64)
    instances += [Instance(int(k)) for k in remaining]
    return instances


def ground_truth_annotations(masks: np.ndarray, cfg: DiscoveryConfig) -> list[RawAnnotation]:
    """``divide: sa1b_gt``: the raw annotations of an image whose pseudo-labels are its ground-truth masks.

    In the order discovery writes them (per instance: its parts in input order, then the instance), with the same
    flags; granularity is left to the scoring stage. A mask that is a part of two instances is written under each,
    as a discovered one is.
    """
    out: list[RawAnnotation] = []
    for inst_id, inst in enumerate(ground_truth_hierarchy(masks, cfg)):
        out += [RawAnnotation(masks[j], False, True, inst_id, False, None) for j in inst.parts]
        out.append(RawAnnotation(masks[inst.index], True, False, inst_id, False, None))
    return out


def union_proposals(
    maskcut: tuple[np.ndarray, np.ndarray], ground_truth: np.ndarray, cfg: DiscoveryConfig
) -> tuple[np.ndarray, np.ndarray]:
    """``divide: maskcut+sa1b_gt``: MaskCut's (masks, scores) ∪ the ground-truth masks (score 1.0), in that order.

    A MaskCut mask that duplicates a ground-truth mask is dropped, the ground truth being the better copy. A
    duplicate is what the later stages treat as the same object: an IoU above ``nms_iou`` (the NMS rule), or each
    mask lying more than ``overlap_threshold`` inside the other — under containment such a pair would knock each
    other out of the instances, losing the object altogether.
    """
    mc_masks, mc_scores = maskcut
    gt = as_mask_stack(ground_truth, "ground_truth")
    mc = as_mask_stack(mc_masks, "maskcut")
    if mc.shape[0] and gt.shape[0]:
        inter = intersection_matrix(mc, gt).astype(np.float64)
        mc_area = mask_areas(mc).astype(np.float64)[:, None]
        gt_area = mask_areas(gt).astype(np.float64)[None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            inside_gt = np.where(mc_area > 0, inter / mc_area, 0.0)
            inside_mc = np.where(gt_area > 0, inter / gt_area, 0.0)
        mutual = (inside_gt > cfg.overlap_threshold) & (inside_mc > cfg.overlap_threshold)
        duplicate = (iou_from_counts(inter, mc_area, gt_area) > cfg.nms_iou) | mutual
        keep = ~duplicate.any(axis=1)
        mc, mc_scores = mc[keep], np.asarray(mc_scores)[keep]
    masks = np.concatenate([mc, gt])
    scores = np.concatenate([np.asarray(mc_scores, dtype=np.float64), np.ones(gt.shape[0], dtype=np.float64)])
    return masks, scores
