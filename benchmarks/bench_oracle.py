"""Cost of the oracle granularity search relative to a fixed-granularity evaluation, measured in one process.

Model: UnSAMv2 on SAM-2.1 hiera-tiny with random weights (``build_unsamv2("tiny", None, device="cpu")`` via
``UnSAMv2ClickModel.build``: 1024-px input, the real granularity-token path, LoRA merged), on CPU; one object (an
ellipse) on a 375x500 image.

The oracle runs the ten granularities in lock-step (one batched decoder call per click) and stops them all at the
first click k where one of them reaches the target IoU. Its cost relative to one fixed-g evaluation therefore
depends on k, so two scenarios are timed:

* ``stop at click 1``: every session ends after its first click (``--max-clicks 1``) — the cost of an object
  whose best granularity is right at the first click, the common case for a trained model on GrabCut/Berkeley
  (NoC90 ~1.3 in the paper);
* ``worst case``: nothing ever reaches the target (random weights never do), so all ten granularities run the
  full 20 clicks and no early stop can happen — the exact search needs every sequence.

Printed as ratios against the fixed-g evaluation timed in the same run (the machine is shared and noisy: fixed
and oracle are timed interleaved, medians of ``--repeats`` runs). Two references, timed once, in the worst case:

* ``sequential oracle``: the same exact search run as GraCo does, one granularity after the other with one decoder
  call per click — what batching the granularities saves;
* ``re-encode``: the fixed-g loop re-encoding the image before every click — the speed-up of encoding each image
  once for all its clicks.

On CPU a batched decoder call costs about B times a single one (the image tokens are repeated per prompt), so the
worst-case ratio approaches ten times the decoder share of the fixed evaluation; on a GPU the batch is nearly free.

Usage: ``python benchmarks/bench_oracle.py [--repeats 3] [--height 375 --width 500]``
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from unsamv2.core.constants import GRANULARITY_GRID
from unsamv2.datasets.sample import ObjectMask
from unsamv2.evaluate.adapters import Prediction, UnSAMv2ClickModel
from unsamv2.evaluate.modes import GranularityMode, select_oracle
from unsamv2.evaluate.sessions import SessionSpec, evaluate_object, run_sessions

TARGET_IOU = 0.90


class Counting:
    """Counts decoder calls and prompts; with ``reencode=True`` encodes the image again before every call."""

    def __init__(self, inner: UnSAMv2ClickModel, reencode: bool = False) -> None:
        self.inner, self.name, self.reencode = inner, inner.name, reencode
        self.image: np.ndarray | None = None
        self.calls = 0
        self.rows = 0

    def set_image(self, image: np.ndarray) -> None:
        self.image = image
        self.inner.set_image(image)

    def predict_batch(self, points_xy: np.ndarray, labels: np.ndarray, granularities: Sequence[float | None],
                      mask_input: np.ndarray | None, multimask: bool = False) -> list[Prediction]:
        if self.reencode and self.image is not None:
            self.inner.set_image(self.image)
        self.calls += 1
        self.rows += len(granularities)
        return self.inner.predict_batch(points_xy, labels, granularities, mask_input, multimask)


def _timed(run: Callable[[int], Counting], clicks: int) -> tuple[float, Counting]:
    start = time.perf_counter()
    counted = run(clicks)
    return time.perf_counter() - start, counted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs of fixed and oracle (medians)")
    parser.add_argument("--height", type=int, default=375)
    parser.add_argument("--width", type=int, default=500)
    args = parser.parse_args()

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    image = (rng.random((args.height, args.width, 3)) * 255).astype(np.uint8)
    yy, xx = np.mgrid[: args.height, : args.width]
    h, w = args.height, args.width
    gt = ((yy - h / 2) / (h / 4)) ** 2 + ((xx - w / 2) / (w / 3)) ** 2 <= 1
    obj = ObjectMask(gt, None, "ellipse")

    build_start = time.perf_counter()
    model = UnSAMv2ClickModel.build("tiny", None, device="cpu")
    print(f"model: UnSAMv2 / SAM-2.1 hiera-tiny, random weights, CPU, {torch.get_num_threads()} torch threads "
          f"(built in {time.perf_counter() - build_start:.1f} s); image {h}x{w}; target IoU {TARGET_IOU}")

    def fixed(clicks: int) -> Counting:
        m = Counting(model)
        m.set_image(image)
        evaluate_object(m, obj, [GranularityMode("fixed", 0.5)], target_iou=TARGET_IOU, max_clicks=clicks)
        return m

    def oracle(clicks: int) -> Counting:
        m = Counting(model)
        m.set_image(image)
        evaluate_object(m, obj, [GranularityMode("oracle")], target_iou=TARGET_IOU, max_clicks=clicks)
        return m

    def sequential_oracle(clicks: int) -> Counting:
        m = Counting(model)
        m.set_image(image)
        sequences = []
        for g in GRANULARITY_GRID:  # GraCo's order; nothing reaches the target, so nothing can be pruned
            (r,) = run_sessions(m, gt, None, [SessionSpec(g)], target_iou=TARGET_IOU, max_clicks=clicks)
            sequences.append(r.ious)
        select_oracle(sequences, TARGET_IOU)
        return m

    def reencode(clicks: int) -> Counting:
        m = Counting(model, reencode=True)
        m.image = image  # encoded by the first decoder call
        evaluate_object(m, obj, [GranularityMode("fixed", 0.5)], target_iou=TARGET_IOU, max_clicks=clicks)
        return m

    encodings = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        model.set_image(image)
        encodings.append(time.perf_counter() - start)
    print(f"image encoding alone: {statistics.median(encodings):.2f} s (median of {args.repeats})")

    for scenario, clicks in (("stop at click 1", 1), ("worst case, 20 clicks", 20)):
        times: dict[str, list[float]] = {"fixed": [], "oracle": []}
        counts: dict[str, Counting] = {}
        for _ in range(args.repeats):  # interleaved, so that load changes on a shared machine hit both alike
            for name, run in (("fixed", fixed), ("oracle", oracle)):
                seconds, counts[name] = _timed(run, clicks)
                times[name].append(seconds)
        if clicks == 20:
            for name, run in (("sequential oracle", sequential_oracle), ("re-encode", reencode)):
                seconds, counts[name] = _timed(run, clicks)
                times[name] = [seconds]
        median = {name: statistics.median(values) for name, values in times.items()}
        print(f"{scenario}:")
        for name, seconds in median.items():
            c = counts[name]
            print(f"  {name:18s} {seconds:7.2f} s  ({c.calls} decoder calls, {c.rows} prompts, "
                  f"{len(times[name])} run(s))")
        base = median["fixed"]
        print(f"  oracle / fixed            = {median['oracle'] / base:.2f}x   (target <= 3x)")
        if clicks == 20:
            print(f"  sequential oracle / fixed = {median['sequential oracle'] / base:.2f}x")
            print(f"  re-encode / fixed         = {median['re-encode'] / base:.2f}x   "
                  "(speed-up of encoding each image once)")


if __name__ == "__main__":
    main()
