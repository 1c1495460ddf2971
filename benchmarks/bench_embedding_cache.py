"""Speed-up of the on-disk embedding cache (``train.cache_embeddings``) on training steps, measured in one process.

With the image encoder frozen and augmentation off, an image's encoder output is the same on every visit; the
cache computes it on the first visit and reads it afterwards. This script trains the same configuration twice
through :func:`unsamv2.train.loop.train` — cache off, cache on — and compares the per-step wall time of the
epochs after the first (the first epoch with the cache on computes *and* writes every embedding; its cost is
printed too). Step times come from ``losses.csv`` (the ``seconds`` column: data, encoder or cache, decoder
steps, backward, optimiser).

Model: SAM-2.1 hiera-tiny, random weights, UnSAMv2 trainable set (granularity modules + LoRA, as the paper), on
CPU; synthetic 256×256 scenes (their ground truth in the pseudo-label format). The ratio depends on the image
size (encoder cost grows with it) and the masks per image (decoder cost grows with them): both are arguments.
The machine is shared and noisy: medians are printed, and both runs happen in the same process one after the
other; run the script twice if the numbers look odd.

Usage: ``python benchmarks/bench_embedding_cache.py [--image-size 256] [--max-masks 8] [--images 6] [--epochs 3]``
"""
from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
from pathlib import Path

import torch

from unsamv2.train.config import TrainConfig
from unsamv2.train.loop import train


def _step_seconds(out_dir: Path) -> dict[int, list[float]]:
    """Per-epoch lists of step wall times from ``losses.csv``."""
    by_epoch: dict[int, list[float]] = {}
    with (out_dir / "losses.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            by_epoch.setdefault(int(row["epoch"]), []).append(float(row["seconds"]))
    return by_epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-size", type=int, default=256, help="model input size (multiple of 64)")
    parser.add_argument("--max-masks", type=int, default=8, help="masks per image")
    parser.add_argument("--images", type=int, default=6, help="synthetic training scenes")
    parser.add_argument("--epochs", type=int, default=3, help="epochs (the first fills the cache)")
    parser.add_argument("--correction-clicks", type=int, default=3)
    args = parser.parse_args()

    from unsamv2.datasets.synthetic_scenes import write_synthetic_dataset

    with tempfile.TemporaryDirectory() as tmp:
        root = write_synthetic_dataset(Path(tmp) / "scenes", args.images, seed=0, image_size=(256, 256))
        base = TrainConfig(model_size="tiny", image_size=args.image_size, max_masks=args.max_masks, augment=False,
                           epochs=args.epochs, multiplier=1, batch_size=2, correction_clicks=args.correction_clicks,
                           device="cpu")
        times = {}
        for label, cache in (("no cache", False), ("cache", True)):
            out = Path(tmp) / label.replace(" ", "_")
            train(base.replace(cache_embeddings=cache), root / "annotations", root / "images", out, progress=False)
            times[label] = _step_seconds(out)

    later = {label: [s for e, steps in t.items() if e > 1 for s in steps] for label, t in times.items()}
    first = {label: t[1] for label, t in times.items()}
    med = {label: statistics.median(v) for label, v in later.items()}
    print(f"hiera-tiny, {args.image_size}-px input, {args.max_masks} masks/image, batch 2, "
          f"{args.correction_clicks} correction clicks, {args.images} images × {args.epochs} epochs, CPU "
          f"({torch.get_num_threads()} threads)")
    for label in ("no cache", "cache"):
        print(f"  {label:8s}: epoch 1 median {statistics.median(first[label]):.3f} s/step, later epochs median "
              f"{med[label]:.3f} s/step ({len(later[label])} steps)")
    print(f"speed-up of cached epochs: {med['no cache'] / med['cache']:.2f}x "
          f"(cache-filling epoch costs {statistics.median(first['cache']) / statistics.median(first['no cache']):.2f}x"
          f" an uncached one)")


if __name__ == "__main__":
    main()
