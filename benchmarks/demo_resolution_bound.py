"""How much of the demo's first-click IoU can a model at its input size reach at all? (README, demo section.)

    python benchmarks/demo_resolution_bound.py [--benchmark resources/datasets/synthetic] [--image-size 128] \\
        [--per-object <eval folder>/per_object.csv --mode oracle ...]

SAM-2's decoder predicts masks at a quarter of its input side (32 × 32 logits at 128 px), which the evaluation
upsamples bilinearly to the scene and thresholds at 0. The best such a mask can do for a true region is taken as
the region's area fraction in every low-resolution cell, minus 0.5, upsampled the same way: the **resolution
bound**, per level and per region area. With ``--per-object`` (one or more ``per_object.csv`` of
``evaluate-interactive``, each with its ``--mode``), the models' first-click IoU is printed in the same area bins, so
one sees where a model is far from what its output resolution allows and where the resolution itself is the cap.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unsamv2.evaluate.metrics import iou
from unsamv2.io.masks import decode_rle

#: Region area bins in pixels of the scene (the demo's scenes are 256 × 256 = 65,536 px).
AREA_BINS: tuple[tuple[int, float], ...] = ((0, 100), (100, 200), (200, 400), (400, 800), (800, 1600),
                                            (1600, 3200), (3200, float("inf")))
LEVELS = ("object", "part", "sub-part", "inner region")


def resolution_bound(mask: np.ndarray, low: int) -> float:
    """IoU of the best ``low × low`` logit map (area fraction − 0.5), upsampled bilinearly to the mask, vs the mask."""
    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    logits = F.interpolate(t, size=(low, low), mode="area") - 0.5
    pred = (F.interpolate(logits, size=mask.shape, mode="bilinear", align_corners=False) > 0)[0, 0].numpy()
    return iou(mask, pred)


def _bin(area: float) -> int:
    return next(k for k, (lo, hi) in enumerate(AREA_BINS) if lo <= area < hi)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", type=Path, default=ROOT / "resources" / "datasets" / "synthetic")
    parser.add_argument("--image-size", type=int, default=128, help="the model's input side (masks at a quarter)")
    parser.add_argument("--per-object", type=Path, action="append", default=[])
    parser.add_argument("--mode", action="append", default=[],
                        help="granularity_mode rows to read from each --per-object file (same order)")
    args = parser.parse_args()
    if len(args.mode) != len(args.per_object):
        raise SystemExit("give one --mode per --per-object file")
    low = args.image_size // 4
    regions: dict[tuple[str, str], tuple[int, float, float]] = {}  # (image, object id) → level, area, bound
    files = sorted((args.benchmark / "annotations").glob("*.json"))
    if not files:
        raise SystemExit(f"no annotations/*.json under {args.benchmark}")
    for path in files:
        doc = json.loads(path.read_text())
        for ann in doc["annotations"]:
            mask = decode_rle(ann["segmentation"]).astype(bool)
            regions[(path.stem, str(ann["id"]))] = (int(ann["level"]), float(ann["area"]),
                                                    resolution_bound(mask, low))
    models: list[tuple[str, dict[tuple[str, str], float]]] = []
    for path, mode in zip(args.per_object, args.mode, strict=True):
        with path.open() as fh:
            rows = [r for r in csv.DictReader(fh) if r["granularity_mode"] == mode]
        if not rows:
            raise SystemExit(f"{path}: no rows with granularity_mode {mode!r}")
        scored = {(r["image"], r["object"]) for r in rows}
        missing = [k for k in regions if k not in scored]
        if missing:
            raise SystemExit(f"{path}: no {mode!r} row for {len(missing)} of the {len(regions)} regions of "
                             f"{args.benchmark} (e.g. {missing[0]}): evaluated on another benchmark?")
        models.append((f"{rows[0]['model']} {mode}", {(r["image"], r["object"]): float(r["iou_01"]) for r in rows}))

    keys = list(regions)
    bound = np.array([regions[k][2] for k in keys])
    level = np.array([regions[k][0] for k in keys])
    bins = np.array([_bin(regions[k][1]) for k in keys])
    print(f"{len(keys)} regions of {len(files)} scenes; masks at {low} x {low} (input {args.image_size} px)")
    print(f"resolution bound, mean IoU {100 * bound.mean():.1f} %; per level: "
          + ", ".join(f"{LEVELS[lv] if lv < len(LEVELS) else lv} {100 * bound[level == lv].mean():.1f}"
                      for lv in sorted(set(level.tolist()))))
    header = f"{'region area (px)':>18s} {'n':>4s} {'bound':>6s}" + "".join(f" {name[:28]:>28s}" for name, _ in models)
    print(header)
    for k, (lo, hi) in enumerate(AREA_BINS):
        sel = bins == k
        if not sel.any():
            continue
        label = f"{lo}-{'' if hi == float('inf') else int(hi)}"
        cells = "".join(f" {100 * np.mean([ious[keys[i]] for i in np.flatnonzero(sel)]):28.1f}" for _, ious in models)
        print(f"{label:>18s} {int(sel.sum()):4d} {100 * bound[sel].mean():6.1f}{cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
