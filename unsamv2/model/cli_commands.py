"""``unsamv2 segment``, ``unsamv2 segment-all`` and ``unsamv2 track``.

``register(subparsers)`` adds the three subcommands to the top-level ``unsamv2`` parser; each sets ``func`` to a
handler ``(args) -> int`` (exit code: 0 success, 1 runtime error such as an unreadable image or a checkpoint that
does not match; argparse itself exits with 2 on malformed arguments).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["register"]

log = logging.getLogger(__name__)

_DEFAULT_MASK_THRESHOLD = -1.0  # the official evaluation / AMG / video threshold on mask logits


# ---------------------------------------------------------------------------------------------- argument types
def _point(text: str) -> tuple[float, float]:
    """Parse "X,Y" (pixels, x = column, y = row)."""
    parts = text.split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected X,Y (two numbers separated by a comma), got {text!r}")
    try:
        x, y = float(parts[0]), float(parts[1])
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y with numeric X and Y, got {text!r}") from None
    if not (np.isfinite(x) and np.isfinite(y)):
        raise argparse.ArgumentTypeError(f"point coordinates must be finite, got {text!r}")
    return x, y


def _granularity(text: str) -> float:
    # Imported here: building the `unsamv2` parser must not import torch for every other subcommand.
    from unsamv2.model.granularity import validate_granularity

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"granularity must be a number in [0.1, 1.0], got {text!r}"
        ) from None
    try:
        return validate_granularity(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


# ---------------------------------------------------------------------------------------------- shared options
def _add_model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--checkpoint",
        required=True,
        type=Path,
        help="UnSAMv2 checkpoint (official format) or a stock SAM-2.1 checkpoint (granularity modules untrained)",
    )
    g.add_argument(
        "--model-size",
        default=None,
        help="tiny, small, base_plus or large; default: read from the checkpoint's tensor shapes",
    )
    g.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:1, … (default: cuda if available, else cpu)"
    )
    g.add_argument(
        "--image-size",
        type=_positive_int,
        default=1024,
        help="model input resolution (1024 for released weights; a smaller multiple of 64 only for quick tests)",
    )
    g.add_argument(
        "--no-merge-lora",
        action="store_true",
        help="keep LoRA factored instead of merging it into the weights (same masks, slower)",
    )


class _DropSam2Chatter(logging.Filter):
    """sam2's image predictor logs every image encoding at INFO on the root logger; keep the CLI output readable."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno <= logging.INFO and record.module == "sam2_image_predictor")


def _quiet_library_noise() -> None:
    root = logging.getLogger()
    if not any(isinstance(f, _DropSam2Chatter) for f in root.filters):
        root.addFilter(_DropSam2Chatter())
    # sam2's transforms use torch.jit.script, deprecated in recent torch: harmless, but printed on every run.
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*is deprecated", category=FutureWarning)


def _resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _build_model(args: argparse.Namespace, video: bool = False) -> Any:
    from unsamv2.model.build import build_unsamv2

    device = _resolve_device(args.device)
    t0 = time.perf_counter()
    model = build_unsamv2(
        args.model_size,
        args.checkpoint,
        device=device,
        image_size=args.image_size,
        video=video,
        merge_lora_weights=not args.no_merge_lora,
    )
    report = getattr(model, "unsamv2_load_report", None)
    print(
        f"loaded {args.checkpoint} ({report.format if report else '?'} format, SAM-2.1 {model.unsamv2_size}) "
        f"on {device} in {time.perf_counter() - t0:.1f} s",
        file=sys.stderr,
    )
    if report is not None and report.format == "sam2":
        print(
            "warning: this is a stock SAM-2.1 checkpoint; the granularity modules are freshly initialised, "
            "so masks do not follow the granularity",
            file=sys.stderr,
        )
    return model


def _check_points_inside(points: list[tuple[float, float]], width: int, height: int, what: str) -> None:
    for x, y in points:
        if not (0 <= x < width and 0 <= y < height):
            raise ValueError(f"{what} point ({x:g}, {y:g}) lies outside the {width}×{height} image")


def _clicks(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    positives = list(args.point or [])
    negatives = list(args.negative or [])
    coords = np.array(positives + negatives, dtype=np.float32).reshape(-1, 2)
    labels = np.array([1] * len(positives) + [0] * len(negatives), dtype=np.int32)
    return coords, labels


def _fmt_g(g: float) -> str:
    """Shortest exact form for file names and messages: 0.3 → "0.3", 0.333 → "0.333", 1.0 → "1"."""
    return format(g, "g")


def _write_mask_png(path: Path, mask: np.ndarray) -> None:
    from unsamv2.model.figures import save_rgb_png

    save_rgb_png(path, (mask.astype(np.uint8) * 255))


# ---------------------------------------------------------------------------------------------- segment
def _run_segment(args: argparse.Namespace) -> int:
    from unsamv2.io.atomic import atomic_write_json
    from unsamv2.io.images import load_image_rgb
    from unsamv2.io.masks import encode_rle, mask_bbox_xywh
    from unsamv2.model.figures import granularity_strip, save_rgb_png
    from unsamv2.model.predictor import UnSAMv2ImagePredictor

    image = load_image_rgb(args.image)
    h, w = image.shape[:2]
    coords, labels = _clicks(args)
    _check_points_inside(list(map(tuple, coords)), w, h, "click")
    fmt = args.format
    if fmt == "auto":
        fmt = "rle" if args.out.suffix.lower() == ".json" else "png"

    model = _build_model(args)
    predictor = UnSAMv2ImagePredictor(model, mask_threshold=args.mask_threshold)
    t0 = time.perf_counter()
    predictor.set_image(image)
    t1 = time.perf_counter()
    gs = list(args.granularity)
    # All granularities in one batched decoder call on the single image embedding.
    masks, ious, _ = predictor.predict_granularities(
        coords, labels, gs, multimask_output=not args.single_mask_iou, m2m=args.m2m
    )
    t2 = time.perf_counter()
    print(
        f"encoded image in {t1 - t0:.1f} s, decoded {len(gs)} granularities in {t2 - t1:.2f} s",
        file=sys.stderr,
    )

    results = []
    stem = args.image.stem
    if fmt == "png":
        args.out.mkdir(parents=True, exist_ok=True)
    for g, mask, iou in zip(gs, masks, ious, strict=True):
        entry: dict[str, Any] = {
            "granularity": g,
            "predicted_iou": float(iou),
            "area": int(mask.sum()),
            "bbox": mask_bbox_xywh(mask),
        }
        if fmt == "png":
            name = f"{stem}_g{_fmt_g(g)}.png"
            _write_mask_png(args.out / name, mask)
            entry["file"] = name
        else:
            entry["segmentation"] = encode_rle(mask)
        results.append(entry)
    summary = {
        "image": str(args.image),
        "height": h,
        "width": w,
        "points": coords.tolist(),
        "labels": labels.tolist(),
        "checkpoint": str(args.checkpoint),
        "mask_threshold": args.mask_threshold,
        "m2m": bool(args.m2m),
        "masks": results,
    }
    summary_path = args.out / f"{stem}_masks.json" if fmt == "png" else args.out
    atomic_write_json(summary_path, summary, indent=1)
    if args.strip is not None:
        strip = granularity_strip(predictor, image, tuple(coords[0]), m2m=args.m2m, encode_image=False)
        save_rgb_png(args.strip, strip)
        print(f"wrote granularity strip {args.strip}", file=sys.stderr)
    written = (
        f"{len(gs)} mask PNGs + {summary_path.name} in {args.out}" if fmt == "png" else str(summary_path)
    )
    print(f"wrote {written}")
    return 0


# ---------------------------------------------------------------------------------------------- segment-all
def _run_segment_all(args: argparse.Namespace) -> int:
    from unsamv2.io.atomic import atomic_write_json
    from unsamv2.io.images import load_image_rgb
    from unsamv2.io.masks import decode_rle
    from unsamv2.model.automatic import POOLED_GRANULARITIES, UnSAMv2AutomaticMaskGenerator
    from unsamv2.model.figures import save_rgb_png

    if args.pooled and args.granularity:
        raise ValueError("give either --granularity or --pooled, not both")
    if not args.pooled and not args.granularity:
        raise ValueError("give --granularity G (repeatable) or --pooled")
    image = load_image_rgb(args.image)
    gs = list(POOLED_GRANULARITIES) if args.pooled else list(args.granularity)
    model = _build_model(args)
    generator = UnSAMv2AutomaticMaskGenerator(
        model,
        points_per_side=args.points_per_side,
        points_per_batch=args.points_per_batch,
        pred_iou_thresh=args.pred_iou_thresh,
        stability_score_thresh=args.stability_thresh,
        mask_threshold=args.mask_threshold,
        use_m2m=not args.no_m2m,
        output_mode="coco_rle",
        show_progress=not args.quiet,
    )
    t0 = time.perf_counter()
    records = generator.generate_pooled(image, gs)
    print(
        f"{len(records)} masks at g = {', '.join(_fmt_g(g) for g in gs)} in {time.perf_counter() - t0:.1f} s",
        file=sys.stderr,
    )
    out = {
        "image": str(args.image),
        "height": int(image.shape[0]),
        "width": int(image.shape[1]),
        "checkpoint": str(args.checkpoint),
        "granularities": gs,
        "settings": {
            "points_per_side": args.points_per_side,
            "points_per_batch": args.points_per_batch,
            "mask_threshold": args.mask_threshold,
            "use_m2m": not args.no_m2m,
            "thresholds": {str(g): list(generator.thresholds_for(g)) for g in gs},
        },
        "annotations": records,
    }
    atomic_write_json(args.out, out)
    if args.overlay is not None:
        rng = np.random.default_rng(0)
        canvas = image.astype(np.float32)
        # Largest first so that small masks stay visible on top.
        for rec in sorted(records, key=lambda r: -r["area"]):
            m = decode_rle(rec["segmentation"])
            canvas[m] = 0.45 * canvas[m] + 0.55 * rng.integers(0, 256, size=3)
        save_rgb_png(args.overlay, canvas.round().clip(0, 255).astype(np.uint8))
    print(f"wrote {args.out}")
    return 0


# ---------------------------------------------------------------------------------------------- track
def _run_track(args: argparse.Namespace) -> int:
    from unsamv2.io.atomic import atomic_write_json
    from unsamv2.io.images import load_image_rgb
    from unsamv2.model.video import list_frames, track_object

    frames = list_frames(args.frames_dir)
    if not 0 <= args.frame < len(frames):
        raise ValueError(f"--frame {args.frame} is outside the {len(frames)} frames of {args.frames_dir}")
    first = load_image_rgb(frames[args.frame])
    coords, labels = _clicks(args)
    _check_points_inside(list(map(tuple, coords)), first.shape[1], first.shape[0], "click")
    model = _build_model(args, video=True)
    t0 = time.perf_counter()
    paths, masks = track_object(
        model,
        args.frames_dir,
        args.frame,
        coords,
        labels,
        args.granularity,
        mask_threshold=args.mask_threshold,
    )
    print(f"tracked {len(paths)} frames in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    per_frame = []
    for idx, path in enumerate(paths):
        name = f"{path.stem}.png"
        _write_mask_png(args.out / name, masks[idx])
        per_frame.append({"frame": idx, "source": path.name, "mask": name, "area": int(masks[idx].sum())})
    atomic_write_json(
        args.out / "track.json",
        {
            "frames_dir": str(args.frames_dir),
            "clicked_frame": args.frame,
            "points": coords.tolist(),
            "labels": labels.tolist(),
            "granularity": args.granularity,
            "checkpoint": str(args.checkpoint),
            "mask_threshold": args.mask_threshold,
            "frames": per_frame,
        },
        indent=1,
    )
    print(f"wrote {len(paths)} mask PNGs + track.json in {args.out}")
    return 0


# ---------------------------------------------------------------------------------------------- wiring
def _guarded(handler: Any) -> Any:
    """Turn expected failures (bad image, checkpoint mismatch, bad values) into a one-line error and exit code 1."""

    def run(args: argparse.Namespace) -> int:
        from unsamv2.model.checkpoint import CheckpointError

        _quiet_library_noise()
        try:
            return handler(args)
        except (ValueError, CheckpointError, FileNotFoundError, IndexError, KeyError) as exc:
            print(f"unsamv2 {args.command_name}: error: {exc}", file=sys.stderr)
            return 1

    return run


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``segment``, ``segment-all`` and ``track`` to the ``unsamv2`` command line."""
    seg = subparsers.add_parser(
        "segment",
        help="mask(s) of the clicked object at one or more granularities",
        description="Segment the clicked object of IMAGE at granularity G (0.1 = finest part … 1.0 = whole "
        "object). Several --granularity values are decoded in one batched call on one image encoding.",
        epilog="example: unsamv2 segment photo.jpg --point 320,240 --granularity 0.3 --granularity 0.8 "
        "--checkpoint unsamv2_small.pt --out masks/",
    )
    seg.add_argument("image", type=Path, help="input image (jpg, png, …)")
    seg.add_argument(
        "--point",
        type=_point,
        action="append",
        required=True,
        metavar="X,Y",
        help="positive click (repeatable)",
    )
    seg.add_argument(
        "--negative", type=_point, action="append", metavar="X,Y", help="negative click (repeatable)"
    )
    seg.add_argument(
        "--granularity",
        type=_granularity,
        action="append",
        required=True,
        metavar="G",
        help="g in [0.1, 1.0] (repeatable)",
    )
    seg.add_argument(
        "--out", type=Path, required=True, help="output folder for mask PNGs, or a .json file for RLE masks"
    )
    seg.add_argument(
        "--format",
        choices=("auto", "png", "rle"),
        default="auto",
        help="png folder or RLE JSON (default: by --out suffix)",
    )
    seg.add_argument(
        "--m2m",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="official mask-to-mask second pass (default: on)",
    )
    seg.add_argument(
        "--mask-threshold",
        type=float,
        default=_DEFAULT_MASK_THRESHOLD,
        help="logit threshold (default -1.0, as the official evaluation)",
    )
    seg.add_argument(
        "--single-mask-iou",
        action="store_true",
        help="report the IoU head's slot 0 instead of the max of slots 1-3",
    )
    seg.add_argument(
        "--strip",
        type=Path,
        default=None,
        help="also write a granularity strip PNG (g = 0.1 … 1.0) for the first click",
    )
    _add_model_options(seg)
    seg.set_defaults(func=_guarded(_run_segment), command_name="segment")

    whole = subparsers.add_parser(
        "segment-all",
        help="all masks of an image at a granularity (automatic mask generation)",
        description="Segment everything in IMAGE at granularity G with a point grid (official whole-image "
        "settings: 64×64 points, M2M, per-granularity thresholds), or pool g = 0.1 … 1.0 with --pooled. "
        "Writes COCO RLE masks to a JSON file.",
        epilog="example: unsamv2 segment-all photo.jpg --granularity 0.5 --checkpoint unsamv2_small.pt --out all.json",
    )
    whole.add_argument("image", type=Path, help="input image")
    whole.add_argument(
        "--granularity",
        type=_granularity,
        action="append",
        metavar="G",
        help="g in [0.1, 1.0] (repeatable; masks are pooled)",
    )
    whole.add_argument(
        "--pooled", action="store_true", help="pool g = 0.1, 0.2, …, 1.0 (the whole-image benchmark mode)"
    )
    whole.add_argument("--out", type=Path, required=True, help="output JSON file")
    whole.add_argument(
        "--overlay", type=Path, default=None, help="also write a colour overlay PNG of all masks"
    )
    whole.add_argument("--points-per-side", type=_positive_int, default=64)
    whole.add_argument("--points-per-batch", type=_positive_int, default=128)
    whole.add_argument(
        "--pred-iou-thresh", type=float, default=None, help="override the per-granularity IoU threshold"
    )
    whole.add_argument(
        "--stability-thresh", type=float, default=None, help="override the stability threshold (0.7)"
    )
    whole.add_argument("--mask-threshold", type=float, default=_DEFAULT_MASK_THRESHOLD)
    whole.add_argument("--no-m2m", action="store_true", help="skip the mask-to-mask refinement pass")
    whole.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_model_options(whole)
    whole.set_defaults(func=_guarded(_run_segment_all), command_name="segment-all")

    track = subparsers.add_parser(
        "track",
        help="track a clicked object at a granularity through a folder of frames",
        description="Click an object on one frame of FRAMES_DIR (image files in natural name order) and "
        "propagate it at granularity G through all frames with SAM-2's memory (forward, then backward).",
        epilog="example: unsamv2 track frames/ --frame 0 --point 320,240 --granularity 0.33 "
        "--checkpoint unsamv2_small.pt --out tracked/",
    )
    track.add_argument("frames_dir", type=Path, help="folder of frames")
    track.add_argument("--frame", type=int, default=0, help="index of the clicked frame (default 0)")
    track.add_argument(
        "--point",
        type=_point,
        action="append",
        required=True,
        metavar="X,Y",
        help="positive click (repeatable)",
    )
    track.add_argument(
        "--negative", type=_point, action="append", metavar="X,Y", help="negative click (repeatable)"
    )
    track.add_argument("--granularity", type=_granularity, required=True, metavar="G", help="g in [0.1, 1.0]")
    track.add_argument(
        "--out", type=Path, required=True, help="output folder (one mask PNG per frame + track.json)"
    )
    track.add_argument("--mask-threshold", type=float, default=_DEFAULT_MASK_THRESHOLD)
    _add_model_options(track)
    track.set_defaults(func=_guarded(_run_track), command_name="track")
