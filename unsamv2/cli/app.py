"""`unsamv2 app`: the local web app (image, whole-image and video tabs with a granularity slider)."""
from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from unsamv2.cli.model import positive_int
from unsamv2.core.constants import EVAL_MASK_THRESHOLD, SAM2_SIZES


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _port(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is at most 65535, got {value}")
    return value


def cmd_app(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("gradio") is None:
        raise ValueError("the app needs Gradio, which is not installed: pip install 'unsamv2[app]'")
    if not args.checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint {args.checkpoint} does not exist")
    from unsamv2.app.limits import UploadLimits
    from unsamv2.app.server import serve
    from unsamv2.app.session import DecodeSettings

    serve(args.checkpoint, model_size=args.model_size, device=args.device, image_size=args.image_size,
          merge_lora=not args.no_merge_lora, host=args.host, port=args.port,
          limits=UploadLimits(args.max_upload_mb, args.max_image_pixels, args.max_frames),
          settings=DecodeSettings(args.mask_threshold, args.m2m, str(args.checkpoint)))
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "app", parents=[common], help="local web app: click, move the granularity slider (image, whole image, video)",
        description="Serve a local web page (Gradio; pip install 'unsamv2[app]') with three tabs: click an object "
        "and move the granularity slider (all ten g are decoded on the click and cached), segment a whole image "
        "at g, and track a clicked object through a short video. Binds to 127.0.0.1 unless --host says "
        "otherwise; everything it writes stays in a temporary folder removed on exit.",
        epilog="example: unsamv2 app --checkpoint unsamv2_small.pt   (then open http://127.0.0.1:7860)",
    )
    from unsamv2.app.limits import UploadLimits  # a plain dataclass: no torch, no gradio

    defaults = UploadLimits()
    p.add_argument("--checkpoint", required=True, type=Path,
                   help="UnSAMv2 checkpoint (official format) or a stock SAM-2.1 checkpoint (granularity untrained)")
    p.add_argument("--model-size", choices=SAM2_SIZES, default=None,
                   help="default: read from the checkpoint's tensor shapes")
    p.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu, cuda, cuda:1, …")
    p.add_argument("--image-size", type=positive_int, default=1024,
                   help="model input resolution (1024 for released weights; a smaller multiple of 64 for tests)")
    p.add_argument("--no-merge-lora", action="store_true", help="keep LoRA factored (same masks, slower)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 exposes the app)")
    p.add_argument("--port", type=_port, default=7860)
    p.add_argument("--max-upload-mb", type=_positive_float, default=defaults.max_upload_mb,
                   help=f"largest accepted upload (default {defaults.max_upload_mb:g} MB)")
    p.add_argument("--max-image-pixels", type=positive_int, default=defaults.max_image_pixels,
                   help=f"largest accepted image or frame (default {defaults.max_image_pixels:,} pixels)")
    p.add_argument("--max-frames", type=positive_int, default=defaults.max_frames,
                   help=f"most frames of a video upload (default {defaults.max_frames})")
    p.add_argument("--mask-threshold", type=float, default=EVAL_MASK_THRESHOLD,
                   help=f"logit threshold of the masks (default {EVAL_MASK_THRESHOLD}, as the official code)")
    p.add_argument("--m2m", action=argparse.BooleanOptionalAction, default=True,
                   help="official mask-to-mask second pass (default: on)")
    p.set_defaults(func=cmd_app)
