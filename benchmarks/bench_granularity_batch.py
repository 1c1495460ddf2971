"""Benchmark: 10 granularities for one click on one image embedding, batched vs one granularity.

Prints ratios measured in this run (the machines are noisy; never absolute times as pass/fail):

* ``decoder ratio``  = one batched call for 10 g / one call for 1 g            (issue target: ≤ 2)
* ``per-image ratio`` = (encode + 10 g batched) / (encode + 1 g)               (what a user pays per click)
* ``batching speed-up`` = 10 sequential single-g calls / one batched call

Random weights (no downloads here): timings do not depend on the weight values.

    python benchmarks/bench_granularity_batch.py --size small --image-size 1024 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="small", help="SAM-2.1 size (default small, the paper's model)")
    parser.add_argument("--image-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--m2m", action="store_true", help="include the M2M second pass in every call")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of text")
    args = parser.parse_args(argv)

    warnings.filterwarnings("ignore", category=FutureWarning)
    if args.threads:
        torch.set_num_threads(args.threads)
    from skimage import data

    from unsamv2.model.build import build_unsamv2
    from unsamv2.model.lora import merge_lora
    from unsamv2.model.predictor import UnSAMv2ImagePredictor

    torch.manual_seed(0)
    model = build_unsamv2(args.size, device=args.device, image_size=args.image_size)
    merge_lora(model)  # inference setting (the CLI merges too); outputs are the same
    predictor = UnSAMv2ImagePredictor(model, mask_threshold=-1.0)
    image = data.astronaut()  # 512×512 RGB photo
    click, label = np.array([[250.0, 150.0]]), np.array([1])
    gs = [round(0.1 * k, 1) for k in range(1, 11)]

    predictor.set_image(image)  # warm-up (allocations, kernels)
    t_encode = _median_time(lambda: predictor.set_image(image), max(1, args.repeats // 2))

    def one() -> object:
        return predictor.predict(click, label, 0.5, m2m=args.m2m)

    def batched() -> object:
        return predictor.predict_granularities(click, label, gs, m2m=args.m2m)

    def sequential() -> object:
        return [predictor.predict(click, label, g, m2m=args.m2m) for g in gs]

    for fn in (one, batched, sequential):
        fn()  # warm-up
    # Interleave the measurements so that load from other processes hits all three alike.
    t_one, t_batch, t_seq = [], [], []
    for _ in range(args.repeats):
        t_one.append(_median_time(one, 1))
        t_batch.append(_median_time(batched, 1))
        t_seq.append(_median_time(sequential, 1))
    one_s, batch_s, seq_s = (statistics.median(t) for t in (t_one, t_batch, t_seq))
    result = {
        "size": args.size,
        "image_size": args.image_size,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "m2m": args.m2m,
        "encode_s": round(t_encode, 4),
        "one_granularity_s": round(one_s, 4),
        "ten_batched_s": round(batch_s, 4),
        "ten_sequential_s": round(seq_s, 4),
        "decoder_ratio": round(batch_s / one_s, 3),
        "per_image_ratio": round((t_encode + batch_s) / (t_encode + one_s), 3),
        "batching_speedup": round(seq_s / batch_s, 3),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"UnSAMv2 {args.size} @ {args.image_size}px on {args.device} ({result['threads']} threads), m2m={args.m2m}"
        )
        print(f"  image encoding                 {t_encode * 1000:9.1f} ms")
        print(f"  1 granularity                  {one_s * 1000:9.1f} ms")
        print(f"  10 granularities, one call     {batch_s * 1000:9.1f} ms")
        print(f"  10 granularities, 10 calls     {seq_s * 1000:9.1f} ms")
        print(f"  decoder ratio (10 batched / 1) {result['decoder_ratio']:9.3f}   (issue target <= 2)")
        print(f"  per-image ratio (with encode)  {result['per_image_ratio']:9.3f}")
        print(f"  batching speed-up vs 10 calls  {result['batching_speedup']:9.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
