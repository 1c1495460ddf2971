"""Does the demo's frozen, randomly initialised image encoder hold its decoder back? (README, demo section.)

    python benchmarks/demo_encoder_fit.py --encoder frozen|trained [--images 4] [--steps 320] \\
        [--run-dir results/demo] [--set KEY=VALUE ...] [--out results/encoder_fit]

Fits UnSAMv2 of ``config/demo.yaml``'s ``train`` section to the pseudo-labels of the first ``--images`` training
scenes of a finished demo run, once with the image encoder frozen (what the demo does) and once with it trained
too, same seed, data order, clicks and schedule; everything else is the project's own training pieces (the
dataset, :class:`MultiStepSegmenter`, :class:`MultiStepLoss`, the warm-up + cosine schedule, AdamW). A handful of
scenes makes this a test of how fast the model can *fit* (training first-click IoU), not of generalisation. No
embedding cache: the frozen run encodes every batch too, so the seconds per step of the two runs compare.

Writes ``<out>/<encoder>.csv`` (step, loss, first-click IoU, seconds) and prints the mean first-click IoU per 40
steps. Run the two encoders as two processes side by side for a same-load timing comparison.
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unsamv2.train.config import TrainConfig
from unsamv2.train.dataset import PseudoLabelDataset, collate
from unsamv2.train.losses import MultiStepLoss
from unsamv2.train.schedule import CosineFactor, epoch_batches
from unsamv2.train.segmenter import MultiStepSegmenter, click_generators, mean_iou
from unsamv2.train.trainable import build_training_model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", choices=("frozen", "trained"), required=True)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--steps", type=int, default=320)
    parser.add_argument("--run-dir", type=Path, default=ROOT / "results" / "demo")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a train key (YAML value), e.g. --set grad_clip=0.1")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "encoder_fit")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())["train"]
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in train:
            raise SystemExit(f"--set {item}: {key!r} is not a key of config/demo.yaml's train section")
        train[key] = yaml.safe_load(value)
    config = TrainConfig.from_dict(train).replace(max_images=args.images, cache_embeddings=False)

    torch.manual_seed(config.seed)
    model = build_training_model(config, torch.device("cpu"))
    if args.encoder == "trained":
        for p in model.image_encoder.parameters():
            p.requires_grad_(True)
    model.train()
    if args.encoder == "frozen":
        model.image_encoder.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    segmenter = MultiStepSegmenter(model, granularity=config.uses_granularity,
                                   multimask_first_step=config.multimask_first_step, correction_clicks=0,
                                   correction_sampler=config.correction_sampler,
                                   object_score_gate=config.object_score_gate)
    loss_fn = MultiStepLoss(weights=config.loss_weights)
    dataset = PseudoLabelDataset(args.run_dir / "pseudo_labels" / "json", args.run_dir / "synthetic_scenes" / "images",
                                 image_size=config.image_size, max_masks=config.max_masks, augment=config.augment,
                                 multiplier=config.multiplier, seed=config.seed, max_images=config.max_images)
    steps_per_epoch = len(dataset) // config.batch_size
    if steps_per_epoch == 0:
        raise SystemExit(f"{len(dataset)} items are fewer than one batch of {config.batch_size}")
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, foreach=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, CosineFactor(args.steps, config.lr, config.min_lr, config.warmup_steps))
    print(f"{args.encoder} encoder: {sum(p.numel() for p in params):,} trainable parameters, {len(dataset)} items, "
          f"{args.steps} steps", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, float]] = []
    step = 0
    while step < args.steps:
        epoch = step // steps_per_epoch
        dataset.set_epoch(epoch)
        for indices in epoch_batches(len(dataset), epoch, config.seed, config.batch_size, 1, 0):
            if step >= args.steps:
                break
            t0 = time.perf_counter()
            batch = collate([{**dataset[i], "index": i} for i in indices])
            with torch.set_grad_enabled(args.encoder == "trained"):
                fpn = segmenter.encode_images(batch["image"])
            outputs = segmenter(fpn, batch["masks"], batch["granularity"], batch["batch_index"],
                                click_generators(config.seed, epoch, indices))
            losses = loss_fn(outputs, batch["masks"], num_objects=float(batch["masks"].shape[0]))
            optimizer.zero_grad(set_to_none=False)
            losses["loss"].backward()
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            rows.append({"step": step, "loss": float(losses["loss"].detach()),
                         "iou_first": float(mean_iou(outputs[0]["masks"], batch["masks"])),
                         "seconds": time.perf_counter() - t0})
            if step % 40 == 0:
                window = rows[-40:]
                print(f"step {step:4d}  first-click IoU (last 40) {sum(r['iou_first'] for r in window) / 40:.3f}  "
                      f"s/step {sorted(r['seconds'] for r in window)[20]:.2f}", flush=True)
    with (args.out / f"{args.encoder}.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
