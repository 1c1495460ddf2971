"""Benchmark: what `unsamv2 app` costs server-side on a 1024-px image — first click, and a slider move.

Measured through the app's own code (``unsamv2.app.session.ImageSession``), one line per model size:

* ``encode``            image encoding when an image is uploaded (once per image);
* ``first click``       the click's ten granularities in one batched decoder call (M2M on, as the app) + the view;
* ``slider (cached)``   a slider move: cache look-up + repaint of the mask over the image      (issue target < 50 ms)
* ``+ JPEG``            the same plus Gradio's encoding of the view for the browser (what the server really does);
* ``slider (uncached)`` the baseline: a slider move that decodes its g (one decoder call) + repaint;
* ``cache speed-up``    uncached / cached, measured in the same run (interleaved, medians).

The cached moves also report their process CPU time: on a machine shared with other jobs, wall time includes
waiting for a core, and the CPU time is what the move itself costs.

Random weights (no downloads here): timings do not depend on the weight values.

    python benchmarks/bench_app_latency.py --sizes tiny small --repeats 7 --threads 2
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch


def _time(fn: Callable[[], object], cpu: list[float] | None = None) -> float:
    """Wall time of ``fn``; its process CPU time (all threads) is appended to ``cpu`` if given."""
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    wall = time.perf_counter() - t0
    if cpu is not None:
        cpu.append(time.process_time() - c0)
    return wall


def _image_1024() -> np.ndarray:
    import cv2
    from skimage import data

    return cv2.resize(data.astronaut(), (1024, 1024), interpolation=cv2.INTER_CUBIC)


def bench(size: str, image: np.ndarray, repeats: int, device: str, jpeg: Callable[[np.ndarray], object]
          ) -> dict[str, object]:
    from unsamv2.app.session import DecodeSettings, ImageSession
    from unsamv2.core.constants import GRANULARITY_GRID
    from unsamv2.model.build import build_unsamv2
    from unsamv2.model.lora import merge_lora

    torch.manual_seed(0)
    model = build_unsamv2(size, device=device, image_size=1024)
    merge_lora(model)  # the app merges LoRA too (same masks, faster)
    session = ImageSession(model, DecodeSettings())
    click = (500.0, 300.0)
    session.set_image(image)  # warm-up
    session.add_click(*click)
    encode, first, cached, cached_jpeg, uncached = [], [], [], [], []
    cached_cpu: list[float] = []
    cached_jpeg_cpu: list[float] = []
    for r in range(repeats):
        encode.append(_time(lambda: session.set_image(image)))
        first.append(_time(lambda: (session.add_click(*click), session.view(0.5))))
        # Interleaved: a cached move, a move that must decode (0.15 is off the grid; set_image above emptied
        # the cache), a cached move with the browser encoding.
        g = GRANULARITY_GRID[r % len(GRANULARITY_GRID)]
        cached.append(_time(lambda g=g: session.view(g), cached_cpu))
        uncached.append(_time(lambda: session.view(0.15)))
        cached_jpeg.append(_time(lambda g=g: jpeg(session.view(g)), cached_jpeg_cpu))
    ms = {name: round(statistics.median(values) * 1000, 1) for name, values in
          (("encode_ms", encode), ("first_click_ms", first), ("slider_cached_ms", cached),
           ("slider_cached_jpeg_ms", cached_jpeg), ("slider_uncached_ms", uncached),
           ("slider_cached_cpu_ms", cached_cpu), ("slider_cached_jpeg_cpu_ms", cached_jpeg_cpu))}
    return {"size": size, "image": f"{image.shape[1]}x{image.shape[0]}", "device": device,
            "threads": torch.get_num_threads(), "repeats": repeats, **ms,
            "cache_speedup": round(ms["slider_uncached_ms"] / ms["slider_cached_ms"], 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["tiny", "small"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--json", action="store_true", help="one JSON line per size")
    args = parser.parse_args(argv)

    warnings.filterwarnings("ignore", category=FutureWarning)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        from unsamv2.app.ui import prepare_environment

        prepare_environment(Path(tmp))
        import gradio as gr

        view = gr.Image(format="jpeg", interactive=False)  # the app's image panel
        image = _image_1024()
        for size in args.sizes:
            result = bench(size, image, args.repeats, args.device, view.postprocess)
            if args.json:
                print(json.dumps(result))
                continue
            print(f"unsamv2 app, SAM-2.1 {size}, {result['image']} image, {args.device} "
                  f"({result['threads']} threads), medians of {args.repeats}")
            print(f"  encode (once per image)        {result['encode_ms']:9.1f} ms")
            print(f"  first click (10 g, batched)    {result['first_click_ms']:9.1f} ms")
            print(f"  slider move, cached            {result['slider_cached_ms']:9.1f} ms   (target < 50 ms; "
                  f"CPU {result['slider_cached_cpu_ms']:.1f} ms)")
            print(f"  slider move, cached + JPEG     {result['slider_cached_jpeg_ms']:9.1f} ms   "
                  f"(CPU {result['slider_cached_jpeg_cpu_ms']:.1f} ms)")
            print(f"  slider move, uncached (base)   {result['slider_uncached_ms']:9.1f} ms")
            print(f"  cache speed-up                 {result['cache_speedup']:9.1f} x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
