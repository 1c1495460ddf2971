"""Benchmark: whole-image throughput of the Table 3 evaluation on a GPU (or any device), and what the five
benchmarks cost.

For each precision (fp32, bf16 autocast) it times, per image, with the official settings (64×64 points, 128 per
batch, M2M, per-g thresholds): one granularity (``generate(image, g)``) and the pooled ten granularities
(``generate_pooled``, one encoding); it reports images per second, the peak GPU memory of each, and the
GPU-hours the five benchmarks need at the pooled rate (COCO 5,000, LVIS 19,809, ADE20K 2,000, EntitySeg 1,314,
SA-1B 1,000 images, per model).

Random weights by default (``--checkpoint`` for real ones): the decoder and encoder cost do not depend on the
weights, but how many masks pass the filters does (RLE, NMS), so real weights are the better estimate.

    python benchmarks/bench_whole_image_gpu.py --device cuda --size small --images 5
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import warnings

import numpy as np
import torch

BENCHMARK_IMAGES = {"coco": 5000, "lvis": 19809, "ade20k": 2000, "entityseg": 1314, "sa1b": 1000}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", default="small")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--image-size", type=int, default=1024)
    parser.add_argument("--points-per-side", type=int, default=64)
    parser.add_argument("--points-per-batch", type=int, default=128)
    parser.add_argument("--granularity", type=float, default=0.5, help="the single-g run")
    parser.add_argument("--images", type=int, default=5, help="timed images per setting (after one warm-up)")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    warnings.filterwarnings("ignore")
    from skimage import data

    from unsamv2.core.constants import GRANULARITY_GRID
    from unsamv2.model.automatic import UnSAMv2AutomaticMaskGenerator
    from unsamv2.model.build import build_unsamv2

    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_unsamv2(args.size, args.checkpoint, device=str(device), image_size=args.image_size,
                          merge_lora_weights=True)
    gen = UnSAMv2AutomaticMaskGenerator(model, points_per_side=args.points_per_side,
                                        points_per_batch=args.points_per_batch)
    rng = np.random.default_rng(0)
    photo = data.astronaut()  # 512×512; images are resized to the model input, so the size matters little
    images = [np.ascontiguousarray(np.roll(photo, int(rng.integers(0, 512)), axis=1)) for _ in range(args.images)]

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def autocast(precision: str) -> contextlib.AbstractContextManager:
        if precision == "bf16":
            return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    results: dict[str, dict[str, float]] = {}
    for precision in args.precisions:
        for mode in ("one_g", "pooled_10g"):
            def run(image: np.ndarray, mode: str = mode) -> list:
                if mode == "one_g":
                    return gen.generate(image, args.granularity)
                return gen.generate_pooled(image, GRANULARITY_GRID)

            with autocast(precision):
                run(images[0])  # warm-up (kernels, allocator)
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                sync()
                t0 = time.perf_counter()
                n_masks = sum(len(run(im)) for im in images)
                sync()
                seconds = time.perf_counter() - t0
            peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
            results[f"{precision}/{mode}"] = {
                "images_per_s": round(len(images) / seconds, 4),
                "s_per_image": round(seconds / len(images), 3),
                "masks_per_image": round(n_masks / len(images), 1),
                "peak_memory_gib": round(peak, 2),
            }
    total_images = sum(BENCHMARK_IMAGES.values())
    hours = {p: round(total_images * results[f"{p}/pooled_10g"]["s_per_image"] / 3600, 2) for p in args.precisions}
    meta = {"device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
            else "cpu", "size": args.size, "image_size": args.image_size, "points": args.points_per_side**2,
            "points_per_batch": args.points_per_batch, "checkpoint": args.checkpoint or "random weights",
            "benchmark_images": BENCHMARK_IMAGES, "hours_five_benchmarks_one_model": hours}
    if args.json:
        print(json.dumps({**meta, "results": results}))
        return 0
    print(f"UnSAMv2 {args.size} @ {args.image_size}px on {meta['device_name']}, {meta['points']} points "
          f"(batch {args.points_per_batch}), {meta['checkpoint']}, {len(images)} images per setting")
    for key, r in results.items():
        print(f"  {key:18s} {r['images_per_s']:8.3f} img/s  {r['s_per_image']:8.2f} s/img  "
              f"{r['masks_per_image']:8.1f} masks/img  peak {r['peak_memory_gib']:6.2f} GiB")
    for p, h in hours.items():
        print(f"  {p}: the five benchmarks ({total_images} images), pooled ten g, one model: {h} hours on this device")
    return 0


if __name__ == "__main__":
    sys.exit(main())
