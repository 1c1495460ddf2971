"""Model commands: segment a clicked object, segment a whole image, track through video frames (at a
granularity), and write a random-weight checkpoint in the released formats."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from unsamv2.core.constants import EVAL_MASK_THRESHOLD, GRANULARITY_MAX, GRANULARITY_MIN, SAM2_SIZES

_MASK_THRESHOLD_HELP = f"logit threshold of the binary masks (default {EVAL_MASK_THRESHOLD}, as the official code)"


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
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"granularity must be a number in [{GRANULARITY_MIN}, {GRANULARITY_MAX}], got {text!r}") from None
    # Imported here: building the parser must not import torch for every other command.
    from unsamv2.model.granularity import validate_granularity

    try:
        return validate_granularity(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _clicks(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    positives = list(args.point or [])
    negatives = list(args.negative or [])
    coords = np.array(positives + negatives, dtype=np.float32).reshape(-1, 2)
    labels = np.array([1] * len(positives) + [0] * len(negatives), dtype=np.int32)
    return coords, labels


def _load(args: argparse.Namespace, video: bool = False) -> object:
    from unsamv2.model.run_on_files import load_model

    return load_model(args.checkpoint, args.model_size, args.device, args.image_size,
                      merge_lora=not args.no_merge_lora, video=video)


def cmd_segment(args: argparse.Namespace) -> int:
    from unsamv2.model.run_on_files import segment_to_files

    coords, labels = _clicks(args)
    summary = segment_to_files(_load(args), args.image, coords, labels, args.granularity,
                               checkpoint=args.checkpoint, out=args.out, out_dir=args.out_dir, m2m=args.m2m,
                               mask_threshold=args.mask_threshold, single_mask_iou=args.single_mask_iou,
                               strip=args.strip)
    print(f"wrote {summary}" if args.out else f"wrote {len(args.granularity)} mask PNGs + {summary.name} in "
          f"{args.out_dir}")
    return 0


def cmd_segment_all(args: argparse.Namespace) -> int:
    from unsamv2.model.run_on_files import segment_all_to_file

    if args.pooled == bool(args.granularity):
        raise ValueError("give --granularity G (repeatable) or --pooled, not both and not neither")
    n = segment_all_to_file(_load(args), args.image, None if args.pooled else args.granularity, args.out,
                            checkpoint=args.checkpoint, points_per_side=args.points_per_side,
                            points_per_batch=args.points_per_batch, pred_iou_thresh=args.pred_iou_thresh,
                            stability_thresh=args.stability_thresh, mask_threshold=args.mask_threshold,
                            use_m2m=not args.no_m2m, overlay=args.overlay, progress=not args.quiet)
    print(f"wrote {args.out} ({n} masks)")
    return 0


def cmd_track(args: argparse.Namespace) -> int:
    from unsamv2.model.run_on_files import track_to_files

    coords, labels = _clicks(args)
    n = track_to_files(_load(args, video=True), args.frames_dir, args.frame, coords, labels, args.granularity,
                       args.out_dir, checkpoint=args.checkpoint, mask_threshold=args.mask_threshold)
    print(f"wrote {n} mask PNGs + track.json in {args.out_dir}")
    return 0


def cmd_random_checkpoint(args: argparse.Namespace) -> int:
    from unsamv2.model.random_checkpoint import write_random_checkpoint

    path = write_random_checkpoint(args.out, size=args.model_size, fmt=args.format, seed=args.seed)
    print(f"wrote {path} ({args.format}, SAM-2.1 {args.model_size}, seed {args.seed}, RANDOM weights)")
    return 0


def _add_model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--checkpoint", required=True, type=Path,
                   help="UnSAMv2 checkpoint (official format) or a stock SAM-2.1 checkpoint (granularity modules "
                   "untrained)")
    g.add_argument("--model-size", choices=SAM2_SIZES, default=None,
                   help="default: read from the checkpoint's tensor shapes")
    g.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu, cuda, cuda:1, …")
    g.add_argument("--image-size", type=positive_int, default=1024,
                   help="model input resolution (1024 for released weights; a smaller multiple of 64 for tests)")
    g.add_argument("--no-merge-lora", action="store_true",
                   help="keep LoRA factored instead of merging it into the weights (same masks, slower)")


def _add_clicks(p: argparse.ArgumentParser) -> None:
    p.add_argument("--point", type=_point, action="append", required=True, metavar="X,Y",
                   help="positive click (repeatable)")
    p.add_argument("--negative", type=_point, action="append", metavar="X,Y", help="negative click (repeatable)")


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    seg = sub.add_parser(
        "segment", parents=[common], help="mask(s) of the clicked object at one or more granularities",
        description="Segment the clicked object of IMAGE at granularity G (0.1 = finest part … 1.0 = whole "
        "object). Several --granularity values are decoded in one batched call on one image encoding.",
        epilog="example: unsamv2 segment photo.jpg --point 320,240 --granularity 0.3 --granularity 0.8 "
        "--checkpoint unsamv2_small.pt --out-dir masks/",
    )
    seg.add_argument("image", type=Path, help="input image (jpg, png, …)")
    _add_clicks(seg)
    seg.add_argument("--granularity", type=_granularity, action="append", required=True, metavar="G",
                     help="g in [0.1, 1.0] (repeatable)")
    outputs = seg.add_mutually_exclusive_group(required=True)
    outputs.add_argument("--out", type=Path, help="JSON file of COCO RLE masks")
    outputs.add_argument("--out-dir", type=Path, help="folder for one mask PNG per granularity + a JSON summary")
    seg.add_argument("--m2m", action=argparse.BooleanOptionalAction, default=True,
                     help="official mask-to-mask second pass (default: on)")
    seg.add_argument("--mask-threshold", type=float, default=EVAL_MASK_THRESHOLD, help=_MASK_THRESHOLD_HELP)
    seg.add_argument("--single-mask-iou", action="store_true",
                     help="report the IoU head's slot 0 instead of the max of slots 1-3")
    seg.add_argument("--strip", type=Path, default=None,
                     help="also write a granularity strip PNG (g = 0.1 … 1.0) for the first click")
    _add_model_options(seg)
    seg.set_defaults(func=cmd_segment)

    whole = sub.add_parser(
        "segment-all", parents=[common], help="all masks of an image at a granularity (automatic mask generation)",
        description="Segment everything in IMAGE at granularity G with a point grid (official whole-image "
        "settings: 64×64 points, M2M, per-granularity thresholds), or pool g = 0.1 … 1.0 with --pooled. "
        "Writes COCO RLE masks to a JSON file.",
        epilog="example: unsamv2 segment-all photo.jpg --granularity 0.5 --checkpoint unsamv2_small.pt --out all.json",
    )
    whole.add_argument("image", type=Path, help="input image")
    whole.add_argument("--granularity", type=_granularity, action="append", metavar="G",
                       help="g in [0.1, 1.0] (repeatable; masks are pooled)")
    whole.add_argument("--pooled", action="store_true", help="pool g = 0.1, 0.2, …, 1.0 (the benchmark mode)")
    whole.add_argument("--out", type=Path, required=True, help="output JSON file")
    whole.add_argument("--overlay", type=Path, default=None, help="also write a colour overlay PNG of all masks")
    whole.add_argument("--points-per-side", type=positive_int, default=64)
    whole.add_argument("--points-per-batch", type=positive_int, default=128)
    whole.add_argument("--pred-iou-thresh", type=float, default=None,
                       help="override the per-granularity IoU threshold")
    whole.add_argument("--stability-thresh", type=float, default=None,
                       help="override the stability threshold (0.7)")
    whole.add_argument("--mask-threshold", type=float, default=EVAL_MASK_THRESHOLD, help=_MASK_THRESHOLD_HELP)
    whole.add_argument("--no-m2m", action="store_true", help="skip the mask-to-mask refinement pass")
    _add_model_options(whole)
    whole.set_defaults(func=cmd_segment_all)

    track = sub.add_parser(
        "track", parents=[common], help="track a clicked object at a granularity through a folder of frames",
        description="Click an object on one frame of FRAMES_DIR (image files in natural name order) and "
        "propagate it at granularity G through all frames with SAM-2's memory (forward, then backward).",
        epilog="example: unsamv2 track frames/ --frame 0 --point 320,240 --granularity 0.33 "
        "--checkpoint unsamv2_small.pt --out-dir tracked/",
    )
    track.add_argument("frames_dir", type=Path, help="folder of frames")
    track.add_argument("--frame", type=int, default=0, help="index of the clicked frame (default 0)")
    _add_clicks(track)
    track.add_argument("--granularity", type=_granularity, required=True, metavar="G", help="g in [0.1, 1.0]")
    track.add_argument("--out-dir", type=Path, required=True, help="one mask PNG per frame + track.json")
    track.add_argument("--mask-threshold", type=float, default=EVAL_MASK_THRESHOLD, help=_MASK_THRESHOLD_HELP)
    _add_model_options(track)
    track.set_defaults(func=cmd_track)

    from unsamv2.model.random_checkpoint import CHECKPOINT_FORMATS

    rnd = sub.add_parser(
        "random-checkpoint", parents=[common],
        help="write a RANDOM-weight checkpoint in a released format (tests, the README's CLI example)",
        description="Same keys, shapes and container as sam2.1_hiera_*.pt or the official UnSAMv2 weights, random "
        "values: every loading path can be exercised without downloads. Its masks are meaningless.",
    )
    rnd.add_argument("--model-size", choices=SAM2_SIZES, default="tiny")
    rnd.add_argument("--format", choices=CHECKPOINT_FORMATS, default="unsamv2")
    rnd.add_argument("--seed", type=int, default=0)
    rnd.add_argument("--out", type=Path, required=True, help="output .pt file")
    rnd.set_defaults(func=cmd_random_checkpoint)
