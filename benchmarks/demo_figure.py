"""The README's demo figure: one held-out scene, one click, UnSAMv2's masks at g = 0.1 … 1.0 beside the SAM-2-style
baseline's three masks (and its single mask) and the ground-truth regions under the click.

    python benchmarks/demo_figure.py --run-dir results/demo --benchmark resources/datasets/synthetic \\
        --out docs/demo_granularity_figure.png [--image syn_000003] [--threads 2]

The two checkpoints are the demo's ``train/final.pt`` and ``train_baseline/final.pt``; the model size and input
size are read from ``config/demo.yaml``. The click is the evaluation's first click (RITM's clicker: the pixel
farthest from the boundary) on the deepest ground-truth region of the scene, so it lies in one region of every
level. Masks are thresholded as in the evaluation: UnSAMv2 and the single mask at logit > −1, SAM's three
candidates at > 0. Each panel's title gives the IoU with the ground-truth region of the same click it matches
best (which level, and how well).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unsamv2.core.constants import EVAL_MASK_THRESHOLD, GRANULARITY_GRID, MULTIMASK_MASK_THRESHOLD
from unsamv2.datasets.synthetic_scenes import LEVEL_NAMES
from unsamv2.evaluate.adapters import Sam2BaselineModel, UnSAMv2ClickModel
from unsamv2.evaluate.clicker import next_click
from unsamv2.io.images import load_image_rgb
from unsamv2.io.masks import decode_rle


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def _deepest_scene(ann_dir: Path, image: str | None) -> tuple[str, list[dict]]:
    """The requested scene, or the first one whose hierarchy reaches the deepest level of the set."""
    docs = {p.stem: json.loads(p.read_text())["annotations"] for p in sorted(ann_dir.glob("*.json"))}
    if image is not None:
        return image, docs[image]
    deepest = max(a["level"] for anns in docs.values() for a in anns)
    for stem, anns in docs.items():
        if any(a["level"] == deepest for a in anns):
            return stem, anns
    raise ValueError(f"no scene in {ann_dir}")


def _overlay(ax: plt.Axes, image: np.ndarray, mask: np.ndarray, click: tuple[int, int], title: str,
             colour: tuple[float, float, float]) -> None:
    shown = image.astype(np.float32) / 255.0
    shown[mask] = 0.45 * shown[mask] + 0.55 * np.array(colour)
    ax.imshow(shown)
    ax.contour(mask, levels=[0.5], colors=["black"], linewidths=1.0)
    ax.plot(click[1], click[0], marker="*", color="yellow", markeredgecolor="black", markersize=11)
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=ROOT / "results" / "demo")
    parser.add_argument("--benchmark", type=Path, default=ROOT / "resources" / "datasets" / "synthetic")
    parser.add_argument("--image", default=None, help="scene stem (default: the first with the deepest level)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "demo_granularity_figure.png")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    demo = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    size, image_size = demo["train"]["model_size"], demo["evaluation"]["image_size"]

    stem, anns = _deepest_scene(args.benchmark / "annotations", args.image)
    image = load_image_rgb(args.benchmark / "images" / f"{stem}.png")
    deepest = max(anns, key=lambda a: (a["level"], a["area"]))
    target = decode_rle(deepest["segmentation"])
    y, x, _ = next_click(target, np.zeros_like(target), np.zeros_like(target))
    under = sorted((a for a in anns if decode_rle(a["segmentation"])[y, x]), key=lambda a: a["level"])
    gt = [(LEVEL_NAMES[a["level"]], decode_rle(a["segmentation"])) for a in under]

    def best_match(mask: np.ndarray) -> str:
        name, score = max(((n, _iou(mask, m)) for n, m in gt), key=lambda t: t[1])
        return f"{name} {100 * score:.0f}%"

    points = np.array([[[x, y]]], dtype=np.float32)
    labels = np.ones((1, 1), dtype=np.int32)
    unsamv2 = UnSAMv2ClickModel.build(size, args.run_dir / "train" / "final.pt", "cpu", image_size=image_size)
    unsamv2.set_image(image)
    ours = unsamv2.predict_batch(np.repeat(points, len(GRANULARITY_GRID), 0),
                                 np.repeat(labels, len(GRANULARITY_GRID), 0), list(GRANULARITY_GRID), None)
    ours_masks = [p.logits[0] > EVAL_MASK_THRESHOLD for p in ours]
    baseline = Sam2BaselineModel.build_sized(size, args.run_dir / "train_baseline" / "final.pt", image_size, "cpu")
    baseline.set_image(image)
    three = baseline.predict_batch(points, labels, [None], None, multimask=True)[0]
    three_masks = [three.logits[k] > MULTIMASK_MASK_THRESHOLD for k in range(three.logits.shape[0])]
    single = baseline.predict_batch(points, labels, [None], None, multimask=False)[0].logits[0] > EVAL_MASK_THRESHOLD

    cols = 5
    fig, axes = plt.subplots(4, cols, figsize=(2.2 * cols, 2.4 * 4))
    for ax in axes.ravel():
        ax.axis("off")
    axes[0, 0].imshow(image)
    axes[0, 0].plot(x, y, marker="*", color="yellow", markeredgecolor="black", markersize=11)
    axes[0, 0].set_title(f"held-out {stem}, click", fontsize=8)
    for k, (name, mask) in enumerate(gt[: cols - 1]):
        _overlay(axes[0, k + 1], image, mask, (y, x), f"ground truth: {name}", (1.0, 0.85, 0.0))
    for k, (g, mask) in enumerate(zip(GRANULARITY_GRID, ours_masks, strict=True)):
        _overlay(axes[1 + k // cols, k % cols], image, mask, (y, x), f"UnSAMv2 g={g:g}: {best_match(mask)}",
                 (0.15, 0.35, 1.0))
    for k, mask in enumerate(three_masks):
        _overlay(axes[3, k], image, mask, (y, x), f"baseline mask {k + 1}/3: {best_match(mask)}", (1.0, 0.3, 0.1))
    _overlay(axes[3, 3], image, single, (y, x), f"baseline single: {best_match(single)}", (0.8, 0.1, 0.6))
    fig.suptitle("One click: the true regions under it (yellow), UnSAMv2 at every granularity (blue), the SAM-2-style\n"
                 "baseline's three masks and single mask (red); titles: the best-matching true region and its IoU",
                 fontsize=9)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out} ({stem}, click x={x} y={y}, {len(gt)} nested regions)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
