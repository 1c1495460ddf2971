"""Pseudo-label quality and discovery time with and without MaskCut's CRF and the CRF refinement of parts.

    python benchmarks/bench_refine.py [--images 32] [--config config/demo.yaml] [--set KEY=VALUE ...] [--seed N]
                                      [--only-demo-variants] [--oracle] [--out-dir DIR]

Writes the demo's synthetic training scenes (the `synthetic` section of the config: size, seed, depth), runs Stage-1
discovery on each with the config's `discovery` settings four times — `maskcut_crf` off/on × `refine`
none/crf, everything else unchanged — and scores every variant against the exact ground truth with the
workflow's own recall report (`unsamv2.report.recall`): mean best IoU per level (percent) and mean boundary
F-measure of each region's best pseudo-label. As a diagnostic of what bounds that F, the share of regions found
(best IoU >= 0.5) and the mean F over those alone (a region without a pseudo-label of its own has the F of a
neighbour or an ancestor, low with or without refinement). ``--oracle`` adds the bound of any refinement of
edges: a refiner with perfect edges in the CRF refinement's place (every instance before conquer and every part
becomes the union of the ground-truth overlay cells it covers more than half of). Discovery time per image is the process's CPU time, mean over
images, with the variants taking turns on each image after one warm-up image (it compiles the merging kernel),
so that other jobs on a shared machine neither count nor favour a variant; the ratio is against the unrefined
variant (no CRF, no refinement) of the same run. ``--set maskcut_masks=8`` changes a discovery setting of the config
(YAML values; repeatable) for every variant, to compare discovery settings; ``--only-demo-variants`` runs the unrefined
variant and the demos' (``refine: crf`` without MaskCut's CRF) only. One thread (`OMP_NUM_THREADS=1` is set before NumPy loads), as
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

import numpy as np
import yaml

from unsamv2.datasets.synthetic_scenes import DEFAULT_DEPTH, LEVEL_NAMES, write_synthetic_dataset
from unsamv2.datasets.unlabeled import export_demo_photos
from unsamv2.discovery.config import DiscoveryConfig
from unsamv2.discovery.features import build_backbone
from unsamv2.discovery.pipeline import Refiner, discover_masks, to_sa1b_json
from unsamv2.discovery.refine import build_refiner
from unsamv2.io.atomic import atomic_write_json
from unsamv2.io.images import load_image_rgb
from unsamv2.io.masks import decode_rle
from unsamv2.io.pseudo_labels import read_annotations
from unsamv2.report.recall import best_matches_per_level, write_recall_csv

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


def ground_truth_cells(annotation_file: Path) -> np.ndarray:
    """(H, W) cell index of every pixel in the overlay of all ground-truth regions: pixels inside exactly the same
    regions share a cell."""
    gt = np.stack([decode_rle(a["segmentation"]).astype(bool) for a in read_annotations(annotation_file)])
    codes = np.packbits(gt, axis=0).reshape(-1, gt.shape[1] * gt.shape[2]).T
    _, cells = np.unique(codes, axis=0, return_inverse=True)
    return cells.reshape(gt.shape[1:])


def snap_to_cells(cells: np.ndarray) -> Refiner:
    """The oracle refiner: a mask becomes the union of the cells it covers more than half of (the mask itself if
    none): the discovered segmentation with perfect edges."""
    n_cells = int(cells.max()) + 1
    sizes = np.bincount(cells.ravel(), minlength=n_cells)

    def refine(image: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
        if not mask.any():
            return None
        snapped = (np.bincount(cells[mask], minlength=n_cells) / sizes > 0.5)[cells]
        return snapped if snapped.any() else mask

    return refine


def parse_overrides(items: list[str]) -> dict:
    """``["maskcut_masks=8", "thetas=[0.9, 0.7]"]`` -> ``{"maskcut_masks": 8, "thetas": [0.9, 0.7]}``."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def photos(config_path: Path, out_dir: Path | None) -> None:
    """Discovery CPU time per photograph of the photo demo: unrefined vs the config's settings (no ground truth)."""
    config = yaml.safe_load(config_path.read_text())
    as_set = DiscoveryConfig.from_dict(config["discovery"])
    unrefined = DiscoveryConfig.from_dict({**as_set.to_dict(), "maskcut_crf": False, "refine": "none"})
    with tempfile.TemporaryDirectory() as tmp:
        root = out_dir or Path(tmp)
        images = export_demo_photos(root / "photos")
        configs = [unrefined, as_set]
        run_variants(images[:1], root / "warmup", configs)
        seconds = run_variants(images, root / "variants", configs)
    print(f"{len(images)} demo photographs; {config_path} with maskcut_crf={as_set.maskcut_crf}, "
          f"refine={as_set.refine} vs unrefined")
    for path, t0, t1 in zip(images, *seconds, strict=True):
        print(f"{path.name:<24} {t0:>7.2f} s {t1:>7.2f} s {t1 / t0:>6.2f}x")
    mean0, mean1 = statistics.mean(seconds[0]), statistics.mean(seconds[1])
    print(f"{'mean':<24} {mean0:>7.2f} s {mean1:>7.2f} s {mean1 / mean0:>6.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--config", type=Path, default=None,
                        help="default config/demo.yaml, with --photos config/demo_photos.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="change a discovery setting for every variant (YAML value), e.g. maskcut_masks=8")
    parser.add_argument("--only-demo-variants", action="store_true",
                        help="only the unrefined variant and refine: crf without MaskCut's CRF")
    parser.add_argument("--seed", type=int, default=None,
                        help="scenes of this seed instead of the config's synthetic.train_seed (a second sample)")
    parser.add_argument("--oracle", action="store_true",
                        help="also the refinement with perfect edges (ground truth), the bound of any refiner")
    parser.add_argument("--out-dir", type=Path, default=None, help="keep the scenes and pseudo-labels here")
    parser.add_argument("--photos", action="store_true",
                        help="instead: CPU time per demo photograph, unrefined vs the config's settings")
    args = parser.parse_args()
    if args.photos:
        photos(args.config or Path("config/demo_photos.yaml"), args.out_dir)
        return
    args.config = args.config or Path("config/demo.yaml")

    config = yaml.safe_load(args.config.read_text())
    base = DiscoveryConfig.from_dict({**config["discovery"], **parse_overrides(args.overrides)}).to_dict()
    synthetic = config.get("synthetic") or {}
    side = int(synthetic.get("image_size", 256))
    seed = int(synthetic.get("train_seed", 0)) if args.seed is None else args.seed
    depth = int(synthetic.get("depth", DEFAULT_DEPTH))
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out_dir or Path(tmp)
        scenes = write_synthetic_dataset(root / "scenes", args.images, seed=seed, image_size=(side, side),
                                         depth=depth)
        images = sorted((scenes / "images").glob("*.png"))
        variants = [VARIANTS[0], VARIANTS[2]] if args.only_demo_variants else list(VARIANTS)
        configs = [DiscoveryConfig.from_dict({**base, "maskcut_crf": crf, "refine": refine})
                   for _, crf, refine in variants]
        # Warm-up: the first call compiles the merging kernel (numba).
        run_variants(images[:1], root / "warmup", configs)
        print(f"{args.images} synthetic scenes {side}x{side}, depth {depth} (seed {seed}); discovery settings of "
              f"{args.config}: " + ", ".join(f"{k}={v}" for k, v in base.items() if k not in ("maskcut_crf", "refine")))
        seconds = run_variants(images, root / "variants", configs)
        rows_to_print = [(name, str(k)) for k, (name, _, _) in enumerate(variants)]
        refine_index = [v[1:] for v in variants].index((False, "crf"))
        if args.oracle:
            backbone = build_backbone("offline")
            for image_id, path in enumerate(images):
                image = load_image_rgb(path)
                oracle = snap_to_cells(ground_truth_cells(scenes / "annotations" / f"{path.stem}.json"))
                anns = discover_masks(image, backbone, configs[refine_index], refiner=oracle)
                atomic_write_json(root / "variants" / "oracle" / f"{path.stem}.json",
                                  to_sa1b_json(anns, image_id, path.name, image.shape[:2]))
            rows_to_print.append(("perfect edges (oracle)", "oracle"))
        levels = ("all", *LEVEL_NAMES[:depth])
        print(f"{'variant':<26} " + " ".join(f"{'IoU ' + level:>16}" for level in levels) + " "
              + " ".join(f"{'F ' + level:>14}" for level in levels) + f" {'CPU s/image':>11} {'ratio':>6}"
              + f" {'found':>6} {'F found':>8}")
        baseline_time = statistics.mean(seconds[0])
        for name, key in rows_to_print:
            out = root / "variants" / key
            rows = {r["level"]: r for r in write_recall_csv(out, scenes / "annotations", out / "recall.csv")}
            iou = [rows.get(level, {}).get("mean_best_iou", float("nan")) for level in levels]
            f = [rows.get(level, {}).get("mean_boundary_f", float("nan")) for level in levels]
            timing = (f"{statistics.mean(seconds[int(key)]):>11.3f} {statistics.mean(seconds[int(key)]) / baseline_time:>6.2f}"
                      if key.isdigit() else f"{'-':>11} {'-':>6}")
            pairs = [p for level_pairs in best_matches_per_level(out, scenes / "annotations").values()
                     for p in level_pairs]
            found = [f_value for iou_value, f_value in pairs if iou_value >= 0.5]
            print(f"{name:<26} " + " ".join(f"{v:>16.2f}" for v in iou) + " " + " ".join(f"{v:>14.3f}" for v in f)
                  + f" {timing}"
                  + f" {100 * len(found) / len(pairs):>5.1f}% {statistics.mean(found):>8.3f}", flush=True)


if __name__ == "__main__":
    main()
