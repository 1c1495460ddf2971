"""Pseudo-label quality and discovery time with and without MaskCut's CRF and the CRF refinement of parts.

    python benchmarks/bench_refine.py [--images 32] [--config config/demo.yaml] [--out-dir DIR]

Writes the demo's synthetic training scenes (the `synthetic` section of the config: size, seed, depth), runs Stage-1
discovery on each with the config's `discovery` settings four times — `maskcut_crf` off/on × `refine`
none/crf, everything else unchanged — and scores every variant against the exact ground truth with the
workflow's own recall report (`unsamv2.report.recall`): mean best IoU per level (percent) and mean boundary
F-measure of each region's best pseudo-label. Discovery time per image is the process's CPU time, mean over
images, with the variants taking turns on each image after one warm-up image (it compiles the merging kernel),
so that other jobs on a shared machine neither count nor favour a variant; the ratio is against the unrefined
variant (no CRF, no refinement) of the same run. One thread (`OMP_NUM_THREADS=1` is set before NumPy loads), as
a discovery job of the demo gets.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from unsamv2.datasets.synthetic_scenes import DEFAULT_DEPTH, LEVEL_NAMES, write_synthetic_dataset
from unsamv2.datasets.unlabeled import export_demo_photos
from unsamv2.discovery.config import DiscoveryConfig
from unsamv2.discovery.features import build_backbone
from unsamv2.discovery.pipeline import discover_masks, to_sa1b_json
from unsamv2.discovery.refine import build_refiner
from unsamv2.io.atomic import atomic_write_json
from unsamv2.io.images import load_image_rgb
from unsamv2.report.recall import write_recall_csv

VARIANTS: tuple[tuple[str, bool, str], ...] = (
    ("unrefined (patch grid)", False, "none"),
    ("MaskCut CRF", True, "none"),
    ("CRF refine of parts", False, "crf"),
    ("MaskCut CRF + CRF refine", True, "crf"),
)


def run_variants(images: list[Path], root: Path, configs: list[DiscoveryConfig]) -> list[list[float]]:
    """Discover every image with every config into ``root/<variant index>``; CPU seconds per image and variant.

    The variants take turns on each image, and the time is the process's CPU time, so that other jobs on a
    shared machine slow every variant alike and do not count.
    """
    backbone = build_backbone("offline")
    refiners = [build_refiner(cfg.refine, crf=cfg.crf_params()) for cfg in configs]
    seconds: list[list[float]] = [[] for _ in configs]
    for image_id, path in enumerate(images):
        image = load_image_rgb(path)
        for k, (cfg, refiner) in enumerate(zip(configs, refiners, strict=True)):
            t0 = time.process_time()
            anns = discover_masks(image, backbone, cfg, refiner=refiner)
            seconds[k].append(time.process_time() - t0)
            atomic_write_json(root / str(k) / f"{path.stem}.json",
                              to_sa1b_json(anns, image_id, path.name, image.shape[:2]))
    return seconds


def photos(out_dir: Path | None) -> None:
    """Discovery CPU time per photograph of the photo demo: unrefined vs its own settings (no ground truth)."""
    config = yaml.safe_load(Path("config/demo_photos.yaml").read_text())
    as_set = DiscoveryConfig.from_dict(config["discovery"])
    unrefined = DiscoveryConfig.from_dict({**as_set.to_dict(), "maskcut_crf": False, "refine": "none"})
    with tempfile.TemporaryDirectory() as tmp:
        root = out_dir or Path(tmp)
        images = export_demo_photos(root / "photos")
        configs = [unrefined, as_set]
        run_variants(images[:1], root / "warmup", configs)
        seconds = run_variants(images, root / "variants", configs)
    print(f"{len(images)} demo photographs; config/demo_photos.yaml with maskcut_crf={as_set.maskcut_crf}, "
          f"refine={as_set.refine} vs unrefined")
    for path, t0, t1 in zip(images, *seconds, strict=True):
        print(f"{path.name:<24} {t0:>7.2f} s {t1:>7.2f} s {t1 / t0:>6.2f}x")
    mean0, mean1 = statistics.mean(seconds[0]), statistics.mean(seconds[1])
    print(f"{'mean':<24} {mean0:>7.2f} s {mean1:>7.2f} s {mean1 / mean0:>6.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--config", type=Path, default=Path("config/demo.yaml"))
    parser.add_argument("--out-dir", type=Path, default=None, help="keep the scenes and pseudo-labels here")
    parser.add_argument("--photos", action="store_true",
                        help="instead: CPU time per demo photograph (config/demo_photos.yaml), unrefined vs as set")
    args = parser.parse_args()
    if args.photos:
        photos(args.out_dir)
        return

    config = yaml.safe_load(args.config.read_text())
    base = DiscoveryConfig.from_dict(config["discovery"]).to_dict()
    synthetic = config.get("synthetic") or {}
    side = int(synthetic.get("image_size", 256))
    seed = int(synthetic.get("train_seed", 0))
    depth = int(synthetic.get("depth", DEFAULT_DEPTH))
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out_dir or Path(tmp)
        scenes = write_synthetic_dataset(root / "scenes", args.images, seed=seed, image_size=(side, side),
                                         depth=depth)
        images = sorted((scenes / "images").glob("*.png"))
        configs = [DiscoveryConfig.from_dict({**base, "maskcut_crf": crf, "refine": refine})
                   for _, crf, refine in VARIANTS]
        # Warm-up: the first call compiles the merging kernel (numba).
        run_variants(images[:1], root / "warmup", configs)
        print(f"{args.images} synthetic scenes {side}x{side}, depth {depth} (seed {seed}); discovery settings of "
              f"{args.config}: " + ", ".join(f"{k}={v}" for k, v in base.items() if k not in ("maskcut_crf", "refine")))
        seconds = run_variants(images, root / "variants", configs)
        levels = ("all", *LEVEL_NAMES[:depth])
        print(f"{'variant':<26} " + " ".join(f"{'IoU ' + level:>16}" for level in levels) + " "
              + " ".join(f"{'F ' + level:>14}" for level in levels) + f" {'CPU s/image':>11} {'ratio':>6}")
        baseline_time = statistics.mean(seconds[0])
        for k, (name, _, _) in enumerate(VARIANTS):
            out = root / "variants" / str(k)
            rows = {r["level"]: r for r in write_recall_csv(out, scenes / "annotations", out / "recall.csv")}
            iou = [rows.get(level, {}).get("mean_best_iou", float("nan")) for level in levels]
            f = [rows.get(level, {}).get("mean_boundary_f", float("nan")) for level in levels]
            per_image = statistics.mean(seconds[k])
            print(f"{name:<26} " + " ".join(f"{v:>16.2f}" for v in iou) + " " + " ".join(f"{v:>14.3f}" for v in f)
                  + f" {per_image:>11.3f} {per_image / baseline_time:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
