"""Seconds per image and peak memory of Stage-1 discovery on a 1500×2250 photograph (offline backbone, CPU).

    python benchmarks/bench_discovery.py [--repeats 3] [--local-size 768]

The image is scikit-image's `coffee` photo resized to 1500×2250 (a real scene at SA-1B-like resolution). The
settings are the demo's (config/demo.yaml): the paper's merging thresholds, crop size 768 and NMS, with the
MaskCut threshold suited to the offline features. Peak memory is reported two ways: traced Python/NumPy
allocations during one image (tracemalloc) and the process's peak resident set size.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time
import tracemalloc

import numpy as np
import skimage.data
from PIL import Image

from unsamv2.discovery.config import DiscoveryConfig
from unsamv2.discovery.features import build_backbone
from unsamv2.discovery.pipeline import discover_masks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--local-size", type=int, default=768)
    args = parser.parse_args()

    image = np.asarray(Image.fromarray(skimage.data.coffee()).resize((2250, 1500), Image.BICUBIC))
    backbone = build_backbone("offline")
    cfg = DiscoveryConfig(maskcut_tau=0.5, local_size=args.local_size)

    times, n_masks = [], 0
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        anns = discover_masks(image, backbone, cfg)
        times.append(time.perf_counter() - t0)
        n_masks = len(anns)
    tracemalloc.start()
    discover_masks(image, backbone, cfg)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"image                 {image.shape[1]}x{image.shape[0]} (coffee, resized)")
    print(f"masks per image       {n_masks} ({sum(1 for a in anns if a.is_divide)} instances)")
    print(f"seconds per image     {statistics.median(times):.2f} (median of {args.repeats}: "
          f"{', '.join(f'{t:.2f}' for t in times)})")
    print(f"peak traced memory    {traced_peak / 2**20:.0f} MiB during one image")
    print(f"peak RSS of process   {rss_peak_mb:.0f} MiB")


if __name__ == "__main__":
    main()
