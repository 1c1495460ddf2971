"""Run the predictors on files and write what ``unsamv2 segment``, ``segment-all`` and ``track`` produce.

Each function takes a built model (:func:`load_model`) and writes its outputs atomically: mask PNGs and a JSON
summary, COCO RLE JSON, or one mask PNG per video frame plus ``track.json``.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from unsamv2.core.constants import EVAL_MASK_THRESHOLD, GRANULARITY_GRID
from unsamv2.io.atomic import atomic_write_json
from unsamv2.io.images import load_image_rgb

__all__ = ["load_model", "segment_all_to_file", "segment_to_files", "track_to_files"]

log = logging.getLogger(__name__)


def load_model(checkpoint: Path, model_size: str | None = None, device: str = "auto", image_size: int = 1024,
               merge_lora: bool = True, video: bool = False) -> Any:
    """Build UnSAMv2 from an UnSAMv2 or stock SAM-2.1 checkpoint, saying which format it was and how long it took."""
    from unsamv2.core.device import resolve_device
    from unsamv2.model.build import build_unsamv2

    device = resolve_device(device)
    t0 = time.perf_counter()
    model = build_unsamv2(model_size, checkpoint, device=device, image_size=image_size, video=video,
                          merge_lora_weights=merge_lora)
    report = model.unsamv2_load_report
    log.info("loaded %s (%s format, SAM-2.1 %s) on %s in %.1f s", checkpoint, report.format, model.unsamv2_size,
             device, time.perf_counter() - t0)
    if report.format == "sam2":
        log.warning("%s is a stock SAM-2.1 checkpoint; the granularity modules are freshly initialised, so masks "
                    "do not follow the granularity", checkpoint)
    return model


def check_points_inside(points: np.ndarray, width: int, height: int) -> None:
    for x, y in points:
        if not (0 <= x < width and 0 <= y < height):
            raise ValueError(f"click point ({x:g}, {y:g}) lies outside the {width}×{height} image")


def format_granularity(g: float) -> str:
    """Shortest exact form for file names and messages: 0.3 → "0.3", 0.333 → "0.333", 1.0 → "1"."""
    return format(g, "g")


def _write_mask_png(path: Path, mask: np.ndarray) -> None:
    from unsamv2.model.figures import save_rgb_png

    save_rgb_png(path, mask.astype(np.uint8) * 255)


def segment_to_files(
    model: Any,
    image_path: Path,
    coords: np.ndarray,
    labels: np.ndarray,
    granularities: Sequence[float],
    *,
    checkpoint: Path,
    out: Path | None = None,
    out_dir: Path | None = None,
    m2m: bool = True,
    mask_threshold: float = EVAL_MASK_THRESHOLD,
    single_mask_iou: bool = False,
    strip: Path | None = None,
) -> Path:
    """Masks of the clicked object at every granularity, decoded in one batched call on one image encoding.

    Give ``out`` (one JSON file with COCO RLE masks) or ``out_dir`` (one PNG per g + ``<stem>_masks.json``).
    Returns the summary JSON path.
    """
    from unsamv2.io.masks import encode_rle, mask_bbox_xywh
    from unsamv2.model.figures import granularity_strip, save_rgb_png
    from unsamv2.model.predictor import UnSAMv2ImagePredictor

    image = load_image_rgb(image_path)
    h, w = image.shape[:2]
    check_points_inside(coords, w, h)
    if (out is None) == (out_dir is None):
        raise ValueError("give either an output JSON file (out) or an output folder (out_dir)")
    predictor = UnSAMv2ImagePredictor(model, mask_threshold=mask_threshold)
    t0 = time.perf_counter()
    predictor.set_image(image)
    t1 = time.perf_counter()
    masks, ious, _ = predictor.predict_granularities(coords, labels, list(granularities),
                                                     multimask_output=not single_mask_iou, m2m=m2m)
    log.info("encoded image in %.1f s, decoded %d granularities in %.2f s", t1 - t0, len(granularities),
             time.perf_counter() - t1)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for g, mask, iou in zip(granularities, masks, ious, strict=True):
        entry: dict[str, Any] = {"granularity": g, "predicted_iou": float(iou), "area": int(mask.sum()),
                                 "bbox": mask_bbox_xywh(mask)}
        if out_dir is not None:
            name = f"{image_path.stem}_g{format_granularity(g)}.png"
            _write_mask_png(out_dir / name, mask)
            entry["file"] = name
        else:
            entry["segmentation"] = encode_rle(mask)
        results.append(entry)
    summary_path = out if out is not None else out_dir / f"{image_path.stem}_masks.json"
    atomic_write_json(summary_path, {
        "image": str(image_path), "height": h, "width": w, "points": coords.tolist(), "labels": labels.tolist(),
        "checkpoint": str(checkpoint), "mask_threshold": mask_threshold, "m2m": bool(m2m), "masks": results,
    }, indent=1)
    if strip is not None:
        save_rgb_png(strip, granularity_strip(predictor, image, tuple(coords[0]), m2m=m2m, encode_image=False))
        log.info("wrote granularity strip %s", strip)
    return summary_path


def segment_all_to_file(
    model: Any,
    image_path: Path,
    granularities: Sequence[float] | None,
    out: Path,
    *,
    checkpoint: Path,
    points_per_side: int = 64,
    points_per_batch: int = 128,
    pred_iou_thresh: float | None = None,
    stability_thresh: float | None = None,
    mask_threshold: float = EVAL_MASK_THRESHOLD,
    use_m2m: bool = True,
    overlay: Path | None = None,
    progress: bool = True,
) -> int:
    """All masks of an image at the given granularities (``None`` = pooled over g = 0.1 … 1.0) as COCO RLE JSON;
    returns the number of masks."""
    from unsamv2.io.masks import decode_rle
    from unsamv2.model.automatic import UnSAMv2AutomaticMaskGenerator
    from unsamv2.model.figures import overlay_masks, save_rgb_png

    image = load_image_rgb(image_path)
    gs = list(GRANULARITY_GRID) if granularities is None else list(granularities)
    generator = UnSAMv2AutomaticMaskGenerator(
        model, points_per_side=points_per_side, points_per_batch=points_per_batch, pred_iou_thresh=pred_iou_thresh,
        stability_score_thresh=stability_thresh, mask_threshold=mask_threshold, use_m2m=use_m2m,
        output_mode="coco_rle", show_progress=progress,
    )
    t0 = time.perf_counter()
    records = generator.generate_pooled(image, gs)
    log.info("%d masks at g = %s in %.1f s", len(records), ", ".join(map(format_granularity, gs)),
             time.perf_counter() - t0)
    atomic_write_json(out, {
        "image": str(image_path), "height": int(image.shape[0]), "width": int(image.shape[1]),
        "checkpoint": str(checkpoint), "granularities": gs,
        "settings": {"points_per_side": points_per_side, "points_per_batch": points_per_batch,
                     "mask_threshold": mask_threshold, "use_m2m": use_m2m,
                     "thresholds": {str(g): list(generator.thresholds_for(g)) for g in gs}},
        "annotations": records,
    })
    if overlay is not None:
        save_rgb_png(overlay, overlay_masks(image, [decode_rle(rec["segmentation"]) for rec in records]))
    return len(records)


def track_to_files(
    model: Any,
    frames_dir: Path,
    frame: int,
    coords: np.ndarray,
    labels: np.ndarray,
    granularity: float,
    out_dir: Path,
    *,
    checkpoint: Path,
    mask_threshold: float = EVAL_MASK_THRESHOLD,
) -> int:
    """Propagate the object clicked on ``frame`` at ``granularity`` through every frame of ``frames_dir``; write
    one mask PNG per frame and ``track.json``. ``model`` must be built with ``video=True``. Returns the frame count."""
    from unsamv2.model.video import list_frames, track_object

    frames = list_frames(frames_dir)
    if not 0 <= frame < len(frames):
        raise ValueError(f"frame {frame} is outside the {len(frames)} frames of {frames_dir}")
    first = load_image_rgb(frames[frame])
    check_points_inside(coords, first.shape[1], first.shape[0])
    t0 = time.perf_counter()
    paths, masks = track_object(model, frames_dir, frame, coords, labels, granularity, mask_threshold=mask_threshold)
    log.info("tracked %d frames in %.1f s", len(paths), time.perf_counter() - t0)
    out_dir.mkdir(parents=True, exist_ok=True)
    per_frame = []
    for idx, path in enumerate(paths):
        name = f"{path.stem}.png"
        _write_mask_png(out_dir / name, masks[idx])
        per_frame.append({"frame": idx, "source": path.name, "mask": name, "area": int(masks[idx].sum())})
    atomic_write_json(out_dir / "track.json", {
        "frames_dir": str(frames_dir), "clicked_frame": frame, "points": coords.tolist(), "labels": labels.tolist(),
        "granularity": granularity, "checkpoint": str(checkpoint), "mask_threshold": mask_threshold,
        "frames": per_frame,
    }, indent=1)
    return len(paths)
