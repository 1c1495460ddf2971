"""Can a randomly initialised SAM-2 learn click → mask on the synthetic scenes within a CPU budget? (evidence for
the offline demo's result; see the README, "The offline training experiment").

    python benchmarks/demo_learnability.py overfit  [--steps 150]
    python benchmarks/demo_learnability.py frozen   [--seconds 300]
    python benchmarks/demo_learnability.py full     [--seconds 300]

All modes train the UnSAMv2 architecture (hiera-tiny, 128-px input, ``trainable: demo_from_scratch``: prompt
encoder + mask decoder + granularity module) on the **ground truth** of generated scenes, i.e. the best possible
labels, with the demo's loss, first clicks only, batches of 4 images × up to 16 masks:

``overfit``  one fixed batch, repeated (new clicks every step): checks that the training path can fit at all;
``frozen``   the demo's setting: frozen random image encoder (features cached), 128 training scenes;
``full``     the image encoder trains too (no cache possible, ~2× the cost of a step).

Every ``--report-every`` seconds (or steps for ``overfit``) it prints the mean first-click IoU of the last 50
training steps (prediction = logits > 0); at the end the mean first-click IoU on 10 held-out scenes.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unsamv2.datasets.synthetic_scenes import write_synthetic_dataset
from unsamv2.train.config import TrainConfig
from unsamv2.train.dataset import PseudoLabelDataset, collate
from unsamv2.train.losses import MultiStepLoss
from unsamv2.train.segmenter import MultiStepSegmenter, mean_iou, select_best_masks
from unsamv2.train.trainable import build_training_model

BATCH = 4


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("overfit", "frozen", "full"))
    parser.add_argument("--seconds", type=float, default=300.0, help="training wall-time budget (frozen, full)")
    parser.add_argument("--steps", type=int, default=150, help="steps (overfit)")
    parser.add_argument("--train-images", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--max-masks", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--report-every", type=float, default=60.0)
    args = parser.parse_args()
    torch.set_num_threads(2)

    tmp = Path(tempfile.mkdtemp(prefix="learnability_"))
    train_scenes = write_synthetic_dataset(tmp / "train", args.train_images, seed=0, image_size=(256, 256))
    eval_scenes = write_synthetic_dataset(tmp / "eval", 10, seed=1000, image_size=(256, 256))
    cfg = TrainConfig.from_dict({"model_size": "tiny", "image_size": args.image_size, "lora_rank": 0,
                                 "augment": False, "trainable": "demo_from_scratch", "device": "cpu",
                                 "max_masks": args.max_masks})
    torch.manual_seed(1234)
    model = build_training_model(cfg, torch.device("cpu"))
    train_encoder = args.mode == "full"
    model.image_encoder.requires_grad_(train_encoder)
    params = [p for p in model.parameters() if p.requires_grad]
    segmenter = MultiStepSegmenter(model, granularity=True, multimask_first_step=False, correction_clicks=0,
                                   correction_sampler="uniform")
    loss_fn = MultiStepLoss()
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-5)

    def set_mode(training: bool) -> None:
        model.train(training)
        if not train_encoder:
            model.image_encoder.eval()

    def dataset(root: Path, multiplier: int) -> PseudoLabelDataset:
        return PseudoLabelDataset(root / "annotations", root / "images", image_size=args.image_size,
                                  max_masks=args.max_masks, augment=False, multiplier=multiplier, seed=0)

    train_set = dataset(train_scenes, 1000)
    cache: dict[tuple[str, ...], list[torch.Tensor]] = {}

    def features(batch: dict) -> list[torch.Tensor]:
        if train_encoder:
            return segmenter.encode_images(batch["image"])
        key = tuple(batch["file_name"])
        if key not in cache:
            with torch.no_grad():
                cache[key] = [f.detach() for f in segmenter.encode_images(batch["image"])]
        return cache[key]

    print(f"{args.mode}: {sum(p.numel() for p in params):,} trainable parameters, {args.train_images} scenes",
          flush=True)
    fixed = collate([train_set[i] for i in range(BATCH)]) if args.mode == "overfit" else None
    order = np.random.default_rng(0).permutation(len(train_set))
    history: list[float] = []
    set_mode(True)
    start = time.perf_counter()
    next_report = args.report_every
    step = 0
    while (step < args.steps) if args.mode == "overfit" else (time.perf_counter() - start < args.seconds):
        if fixed is not None:
            batch = fixed
        else:
            first = (step * BATCH) % len(order)
            batch = collate([train_set[int(i)] for i in order[first:first + BATCH]])
        rngs = [np.random.default_rng([1, step, k]) for k in range(len(batch["file_name"]))]
        outputs = segmenter(features(batch), batch["masks"], batch["granularity"], batch["batch_index"], rngs)
        supervised = select_best_masks(outputs, batch["masks"], loss_fn)
        losses = loss_fn(supervised, batch["masks"], num_objects=float(batch["masks"].shape[0]))
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        step += 1
        history.append(float(mean_iou(supervised[0]["masks"].detach(), batch["masks"])))
        progress = step if args.mode == "overfit" else time.perf_counter() - start
        if progress >= next_report or (args.mode == "overfit" and step % 25 == 0):
            print(f"{time.perf_counter() - start:7.0f} s  step {step:5d}  train IoU (last 50) "
                  f"{np.mean(history[-50:]):.3f}  loss {float(losses['loss'].detach()):.3f}", flush=True)
            next_report = progress + args.report_every

    set_mode(False)
    eval_set = dataset(eval_scenes, 1)
    ious = []
    with torch.no_grad():
        for i in range(len(eval_set)):
            batch = collate([eval_set[i]])
            out = segmenter(segmenter.encode_images(batch["image"]), batch["masks"], batch["granularity"],
                            batch["batch_index"], [np.random.default_rng([7, i])])
            ious.append(float(mean_iou(out[0]["masks"], batch["masks"])))
    print(f"RESULT mode={args.mode} steps={step} seconds={time.perf_counter() - start:.0f} "
          f"train_iou_last50={np.mean(history[-50:]):.3f} held_out_first_click_iou={np.mean(ious):.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
