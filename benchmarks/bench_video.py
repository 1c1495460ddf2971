"""Benchmark: video propagation with the granularity token (UnSAMv2VideoPredictor) vs sam2's own video predictor.

Same weights (a random stock SAM-2.1 checkpoint: UnSAMv2 loads it and adds fresh granularity modules), same frames
(a JPEG folder both predictors read), one click on frame 0, then ``propagate_in_video`` over every frame. Each
measurement runs in a fresh process (so peak memory is that run's alone), alternating the two predictors, and
the medians are compared. Prints:

* ``seconds per frame`` of each predictor (propagation only; the frame loading of ``init_state`` is not timed)
  and ``ratio`` = UnSAMv2 / sam2 of the medians (issue target on CPU: ≤ 1.1), and the same ratio of each one's
  fastest run (on a shared machine the least disturbed runs);
* ``frames per second`` of each;
* peak memory of each run: resident set size (CPU) or ``torch.cuda.max_memory_allocated`` (GPU), and its ratio.

Random weights (no downloads here): the timings do not depend on the weight values.

    python benchmarks/bench_video.py                                             # CPU: tiny, 512 px, 8 frames
    python benchmarks/bench_video.py --device cuda --size small --image-size 1024 --frames 50 --frame-size 480x854
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def _write_frames(folder: Path, n: int, height: int, width: int) -> tuple[int, int]:
    """Frames of a synthetic video (animated hierarchical scenes) as 00000.jpg …; returns a click (x, y) on an
    object of the first frame."""
    from PIL import Image

    from unsamv2.datasets.synthetic_video import animate_sequence
    from unsamv2.evaluate.video_run import first_click

    seq = animate_sequence(np.random.default_rng([0, 0]), n, height, width)
    for t, frame in enumerate(seq.frames):
        Image.fromarray(frame).save(folder / f"{t:05d}.jpg", quality=95)
    click = first_click(seq.labels["object"][0] == 1)
    assert click is not None
    return click


def _peak_memory_mb(device: str) -> float:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def _run_one(args: argparse.Namespace) -> dict[str, float]:
    """One measurement in this process: build the predictor, click, propagate; seconds per frame and peak memory."""
    import torch

    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    x, y = json.loads(args.click)
    if args.which == "unsamv2":
        from unsamv2.model.build import build_unsamv2

        # LoRA folded into the decoder weights, as the video benchmark's tracker builds it (the same function)
        predictor = build_unsamv2(args.size, args.checkpoint, device=args.device, image_size=args.image_size,
                                  video=True, merge_lora_weights=True)
        add = {"granularity": 0.5}
    else:
        from sam2.build_sam import build_sam2_video_predictor

        from unsamv2.model.build import MODEL_CONFIGS

        overrides = [f"++model.image_size={args.image_size}"] if args.image_size != 1024 else []
        predictor = build_sam2_video_predictor(MODEL_CONFIGS[args.size], args.checkpoint, device=args.device,
                                               hydra_overrides_extra=overrides)
        if not args.device.startswith("cuda"):
            predictor.fill_hole_area = 0  # needs sam2's CUDA extension; build_unsamv2 also leaves it off on CPU
        add = {}
    with torch.inference_mode():
        state = predictor.init_state(args.frames_dir)
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        predictor.add_new_points_or_box(state, 0, 1, points=np.array([[x, y]], np.float32),
                                        labels=np.array([1], np.int32), **add)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        n = 0
        for _ in predictor.propagate_in_video(state):
            n += 1
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
    return {"s_per_frame": elapsed / n, "frames": n, "peak_mb": _peak_memory_mb(args.device)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="tiny", help="SAM-2.1 size (default tiny on CPU; the paper's is small)")
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--frame-size", default="240x427", help="HxW of the frames (DAVIS 480p: 480x854)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per predictor (alternating)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of text")
    # internal: one measurement in a child process
    parser.add_argument("--which", choices=("unsamv2", "sam2"), help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    parser.add_argument("--frames-dir", help=argparse.SUPPRESS)
    parser.add_argument("--click", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.which:
        print(json.dumps(_run_one(args)))
        return 0

    from unsamv2.model.random_checkpoint import write_random_checkpoint

    height, width = (int(v) for v in args.frame_size.lower().split("x"))
    runs: dict[str, list[dict[str, float]]] = {"unsamv2": [], "sam2": []}
    with tempfile.TemporaryDirectory() as tmp:
        frames = Path(tmp) / "frames"
        frames.mkdir()
        click = _write_frames(frames, args.frames, height, width)
        ckpt = write_random_checkpoint(Path(tmp) / "sam2.pt", size=args.size, fmt="sam2", seed=0)
        base = [sys.executable, os.path.abspath(__file__), "--size", args.size, "--image-size", str(args.image_size),
                "--device", args.device, "--threads", str(args.threads), "--checkpoint", str(ckpt),
                "--frames-dir", str(frames), "--click", json.dumps(list(click))]
        for _ in range(args.repeats):
            for which in ("unsamv2", "sam2"):
                out = subprocess.run([*base, "--which", which], capture_output=True, text=True, check=True)
                runs[which].append(json.loads(out.stdout.strip().splitlines()[-1]))

    spf = {k: statistics.median(r["s_per_frame"] for r in v) for k, v in runs.items()}
    fastest = {k: min(r["s_per_frame"] for r in v) for k, v in runs.items()}  # the least disturbed run
    peak = {k: statistics.median(r["peak_mb"] for r in v) for k, v in runs.items()}
    result = {
        "device": args.device, "size": args.size, "image_size": args.image_size, "frames": args.frames,
        "frame_size": [height, width], "repeats": args.repeats,
        "s_per_frame_unsamv2": round(spf["unsamv2"], 4), "s_per_frame_sam2": round(spf["sam2"], 4),
        "fps_unsamv2": round(1 / spf["unsamv2"], 2), "fps_sam2": round(1 / spf["sam2"], 2),
        "time_ratio": round(spf["unsamv2"] / spf["sam2"], 3),
        "time_ratio_fastest": round(fastest["unsamv2"] / fastest["sam2"], 3),
        "peak_mb_unsamv2": round(peak["unsamv2"], 1), "peak_mb_sam2": round(peak["sam2"], 1),
        "memory_ratio": round(peak["unsamv2"] / peak["sam2"], 3),
        "all_s_per_frame": {k: [round(r["s_per_frame"], 4) for r in v] for k, v in runs.items()},
    }
    if args.json:
        print(json.dumps(result))
        return 0
    kind = "GPU memory allocated" if args.device.startswith("cuda") else "resident set size"
    print(f"video propagation, SAM-2.1 {args.size} at {args.image_size} px, {args.frames} frames of "
          f"{height}x{width}, {args.device}, median of {args.repeats} runs each")
    print(f"  seconds per frame: UnSAMv2 {spf['unsamv2']:.4f}   sam2 {spf['sam2']:.4f}   "
          f"ratio {result['time_ratio']:.3f}  (target <= 1.1)")
    print(f"  fastest run each:  UnSAMv2 {fastest['unsamv2']:.4f}   sam2 {fastest['sam2']:.4f}   "
          f"ratio {result['time_ratio_fastest']:.3f}  (less sensitive to other load on the machine)")
    print(f"  frames per second: UnSAMv2 {result['fps_unsamv2']:.2f}   sam2 {result['fps_sam2']:.2f}")
    print(f"  peak {kind}: UnSAMv2 {peak['unsamv2']:.0f} MB   sam2 {peak['sam2']:.0f} MB   "
          f"ratio {result['memory_ratio']:.3f}")
    print(f"  every run (s/frame, in order): {result['all_s_per_frame']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
