"""Benchmark: whole-image generation at one granularity vs sam2's own ``SAM2AutomaticMaskGenerator``.

Both generators get the same SAM-2.1 weights (the stock model is loaded with the SAM part of the UnSAMv2 model),
the same point grid, batch size, mask threshold, stability offset, NMS and M2M setting; each timed run includes the
image encoding. Two comparisons are printed as ratios measured in this run (target: UnSAMv2 / sam2 ≤ 1.1):

* ``like-for-like``: sam2 with ``multimask_output=False`` (one mask per point, as UnSAMv2 returns), quality filters
  open on both sides so that both post-process every mask — the same decoder and post-processing work.
* ``official``: both with ``multimask_output=True`` and M2M (sam2 then decodes and refines 3 masks per point);
  UnSAMv2 uses its official per-granularity thresholds, sam2 the same numbers.

The official grid is 64×64 points; on a 2-core CPU that takes minutes per run, so the default here is 16×16
(``--points-per-side 64`` for the full grid). Random weights: timings do not depend on the weight values.

    python benchmarks/bench_amg.py --size small --points-per-side 16 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable

import torch


def _time(fn: Callable[[], list], repeats: int) -> tuple[float, int]:
    times, n = [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = len(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times), n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="small")
    parser.add_argument("--image-size", type=int, default=1024)
    parser.add_argument("--points-per-side", type=int, default=16)
    parser.add_argument("--points-per-batch", type=int, default=64)
    parser.add_argument("--granularity", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    warnings.filterwarnings("ignore")
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator
    from sam2.build_sam import build_sam2
    from skimage import data

    from unsamv2.model.automatic import UnSAMv2AutomaticMaskGenerator, official_thresholds
    from unsamv2.model.build import MODEL_CONFIGS, build_unsamv2, normalize_model_size
    from unsamv2.model.lora import merge_lora

    size = normalize_model_size(args.size)
    torch.manual_seed(0)
    ours_model = build_unsamv2(size, device=args.device, image_size=args.image_size)
    merge_lora(ours_model)  # inference setting of the CLI; plain nn.Linear like the stock decoder
    overrides = [f"++model.image_size={args.image_size}"] if args.image_size != 1024 else []
    stock = build_sam2(MODEL_CONFIGS[size], None, device=args.device, hydra_overrides_extra=overrides)
    ours_state = ours_model.state_dict()
    missing = stock.load_state_dict({k: ours_state[k] for k in stock.state_dict()}, strict=True)
    assert not missing.missing_keys and not missing.unexpected_keys
    image = data.astronaut()

    common = {
        "points_per_side": args.points_per_side,
        "points_per_batch": args.points_per_batch,
        "stability_score_offset": 0.7,
        "mask_threshold": -1.0,
        "box_nms_thresh": 0.7,
        "crop_n_layers": 0,
        "min_mask_region_area": 0,
        "output_mode": "coco_rle",
        "use_m2m": True,
    }
    g = args.granularity
    iou_t, stab_t = official_thresholds(g)
    configs = {
        "like-for-like": (
            UnSAMv2AutomaticMaskGenerator(
                ours_model, pred_iou_thresh=0.0, stability_score_thresh=0.0, **common
            ),
            SAM2AutomaticMaskGenerator(
                stock, pred_iou_thresh=0.0, stability_score_thresh=0.0, multimask_output=False, **common
            ),
        ),
        "official": (
            UnSAMv2AutomaticMaskGenerator(ours_model, **common),
            SAM2AutomaticMaskGenerator(
                stock, pred_iou_thresh=iou_t, stability_score_thresh=stab_t, multimask_output=True, **common
            ),
        ),
    }
    results: dict[str, dict[str, float]] = {}
    for name, (ours, theirs) in configs.items():
        ours.generate(image, g)  # warm-up
        theirs.generate(image)
        t_ours, t_theirs, n_ours, n_theirs = [], [], 0, 0
        for _ in range(args.repeats):  # interleaved so background load hits both alike
            t, n_ours = _time(lambda o=ours: o.generate(image, g), 1)
            t_ours.append(t)
            t, n_theirs = _time(lambda th=theirs: th.generate(image), 1)
            t_theirs.append(t)
        a, b = statistics.median(t_ours), statistics.median(t_theirs)
        results[name] = {
            "unsamv2_s": round(a, 3),
            "sam2_s": round(b, 3),
            "ratio": round(a / b, 3),
            "unsamv2_masks": n_ours,
            "sam2_masks": n_theirs,
        }
    meta = {
        "size": size,
        "image_size": args.image_size,
        "points": args.points_per_side**2,
        "points_per_batch": args.points_per_batch,
        "granularity": g,
        "threads": torch.get_num_threads(),
        "device": args.device,
    }
    if args.json:
        print(json.dumps({**meta, **results}))
    else:
        print(
            f"SAM-2.1 {size} @ {args.image_size}px, {meta['points']} points (batch {args.points_per_batch}), "
            f"g = {g}, {args.device} ({meta['threads']} threads), median of {args.repeats}"
        )
        for name, r in results.items():
            print(
                f"  {name:14s} UnSAMv2 {r['unsamv2_s']:8.2f} s ({r['unsamv2_masks']} masks)   "
                f"sam2 AMG {r['sam2_s']:8.2f} s ({r['sam2_masks']} masks)   ratio {r['ratio']:.3f}  (target <= 1.1)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
