"""Benchmark: 10 granularities for one click on one image embedding, batched vs one granularity.

Prints ratios measured in this run (the machines are noisy; never absolute times as pass/fail):

* ``decoder ratio``  = one batched call for 10 g / one call for 1 g            (issue target: ≤ 2)
* ``per-image ratio`` = (encode + 10 g batched) / (encode + 1 g)               (what a user pays per click)
* ``batching speed-up`` = 10 sequential single-g calls / one batched call

Random weights (no downloads here): timings do not depend on the weight values.

    python benchmarks/bench_granularity_batch.py --size small --image-size 1024 --repeats 5

It then prints batched-vs-loop speed-ups for 1, 10, 128 and 1,280 queries (``--queries``) with the predictor's
decoder chunk size, and with ``--chunk-sizes 0 1 2 4 8`` the 10-query call at other chunk sizes.
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
    parser.add_argument("--queries", type=int, nargs="*", default=[1, 10, 128, 1280],
                        help="batch sizes for the batched-vs-loop table (1: the app's slider, 10: the oracle's "
                             "granularities, 128: the AMG's point batch, 1280: 128 points x 10 g)")
    parser.add_argument("--chunk-sizes", type=int, nargs="*", default=[],
                        help="also time a 10-query call with these decoder chunk sizes (0 = no split)")
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
    # Batched vs loop for the batch sizes the AMG, the oracle and the app use: Q queries (the click at
    # g = 0.1 … 1.0 cycling) in one call vs Q one-query calls. Large Q are timed once.
    table = {}
    for q in args.queries:
        coords = np.repeat(click[None], q, axis=0)
        labels = np.repeat(label[None], q, axis=0)
        qs = [gs[k % len(gs)] for k in range(q)]
        reps = args.repeats if q <= 10 else 1

        def one_call(coords=coords, labels=labels, qs=qs) -> object:
            return predictor.predict_queries(coords, labels, qs, m2m=args.m2m)

        def loop(qs=qs) -> object:
            return [predictor.predict(click, label, g, m2m=args.m2m) for g in qs]

        if q > 10:
            one_call()  # warm-up: the first call of a new size pays for allocating its large output buffers
        t_call, t_loop = [], []
        for _ in range(reps):
            t_call.append(_median_time(one_call, 1))
            t_loop.append(_median_time(loop, 1))
        call_s, loop_s = statistics.median(t_call), statistics.median(t_loop)
        table[q] = {"batched_s": round(call_s, 4), "loop_s": round(loop_s, 4), "speedup": round(loop_s / call_s, 3)}
    result["queries"] = table
    chunks = {}
    default_chunk = predictor.decoder_chunk_size
    for c in args.chunk_sizes:
        predictor.decoder_chunk_size = c or None
        chunks[c] = round(statistics.median(_median_time(batched, 1) for _ in range(args.repeats)), 4)
    predictor.decoder_chunk_size = default_chunk
    result["decoder_chunk_size"] = default_chunk
    result["ten_batched_s_by_chunk"] = chunks
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
        print(f"  decoder chunk size {default_chunk}; batched (one call) vs loop (one call per query):")
        for q, r in table.items():
            print(f"    {q:5d} queries   batched {r['batched_s'] * 1000:10.1f} ms   loop {r['loop_s'] * 1000:10.1f} ms"
                  f"   speed-up {r['speedup']:6.3f}")
        for c, t in chunks.items():
            print(f"  10 granularities, one call, chunk {c or 'none':>4}: {t * 1000:9.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
