"""Which ingredients of the offline demo's from-scratch recipe make a random SAM-2 learn? (evidence for the
README's "The offline training experiment").

    python benchmarks/demo_learnability.py [--steps 400] [--variants demo,paper_loss_weights,gate,no_warmup]

Every variant trains the UnSAMv2 architecture with ``unsamv2.train.loop.train`` — the code the demo runs — from
the ``train`` section of ``config/demo.yaml`` (hiera-tiny, 128-px input, ``demo_from_scratch``, first clicks,
frozen random encoder with its embedding cache) for ``--steps`` steps, on the **ground truth** of the demo's
training scenes (``synthetic`` section: same seed, size and depth), with one change each:

``demo``                the demo's recipe (focal × 1, 50 warm-up steps to lr 3e-4, no object-score gate);
``paper_loss_weights``  focal × 20 (the paper's fine-tuning weights);
``gate``                SAM-2's object-score gate on (masks → −1024 where the object score is ≤ 0);
``no_warmup``           lr 1e-3 from the first step, no warm-up (the previous demo's schedule).

Printed per variant: the mean first-click training IoU over the last 50 steps (``losses.csv``, prediction =
logits > 0), the mean focal and dice terms over the same steps, the first step's loss, and the mean first-click
IoU on 20 held-out scenes (seed 1000) when the model is given each region's true granularity. Same seed and
same data order for all variants, so the differences come from the one changed setting.
"""
from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unsamv2.datasets.synthetic_scenes import write_synthetic_dataset
from unsamv2.model.checkpoint import load_checkpoint
from unsamv2.train.config import TrainConfig
from unsamv2.train.dataset import PseudoLabelDataset, collate
from unsamv2.train.loop import train
from unsamv2.train.segmenter import MultiStepSegmenter, mean_iou
from unsamv2.train.trainable import build_training_model

VARIANTS: dict[str, dict[str, Any]] = {
    "demo": {},
    "paper_loss_weights": {"loss_weight_focal": 20.0},
    "gate": {"object_score_gate": True},
    "no_warmup": {"lr": 1e-3, "min_lr": 1e-4, "warmup_steps": 0},
}


def _last(rows: list[dict[str, str]], key: str, n: int = 50) -> float:
    return float(np.mean([float(r[key]) for r in rows[-n:]]))


def held_out_iou(cfg: TrainConfig, checkpoint: Path, scenes: Path) -> float:
    """Mean first-click IoU (logits > 0) on every region of the held-out scenes, given its true granularity."""
    torch.manual_seed(cfg.seed)
    model = build_training_model(cfg, torch.device("cpu"))
    load_checkpoint(model, checkpoint)
    model.eval()
    # Ungated, as the predictors that evaluate and serve a model are: the gate belongs to training only.
    segmenter = MultiStepSegmenter(model, granularity=True, multimask_first_step=False, correction_clicks=0,
                                   correction_sampler="uniform", object_score_gate=False)
    data = PseudoLabelDataset(scenes / "annotations", scenes / "images", image_size=cfg.image_size,
                              max_masks=1000, augment=False)
    ious = []
    with torch.no_grad():
        for i in range(len(data)):
            batch = collate([data[i]])
            out = segmenter(segmenter.encode_images(batch["image"]), batch["masks"], batch["granularity"],
                            batch["batch_index"], [np.random.default_rng([7, i])])
            ious.append(float(mean_iou(out[0]["masks"], batch["masks"])))
    return float(np.mean(ious))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {list(VARIANTS)}")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    demo = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    syn = demo["synthetic"]
    tmp = Path(tempfile.mkdtemp(prefix="learnability_"))
    size = (syn["image_size"], syn["image_size"])
    train_scenes = write_synthetic_dataset(tmp / "train", syn["train_images"], seed=syn["train_seed"],
                                           image_size=size, depth=syn["depth"])
    eval_scenes = write_synthetic_dataset(tmp / "eval", 20, seed=1000, image_size=size, depth=syn["depth"])
    base = TrainConfig.from_dict({**demo["train"], "cache_dir": str(tmp / "cache"), "max_steps": args.steps})
    print(f"{args.steps} steps per variant, scenes of depth {syn['depth']}, ground-truth labels", flush=True)
    print("variant              train_iou_last50  focal_last50  dice_last50  first_step_loss  held_out_iou  seconds")
    for name in args.variants.split(","):
        cfg = base.replace(**VARIANTS[name])
        start = time.perf_counter()
        result = train(cfg, train_scenes / "annotations", train_scenes / "images", tmp / name, progress=False)
        seconds = time.perf_counter() - start
        with (tmp / name / "losses.csv").open() as fh:
            rows = list(csv.DictReader(fh))
        held = held_out_iou(cfg, result.final_checkpoint, eval_scenes)
        print(f"{name:20s} {_last(rows, 'iou_first'):16.3f}  {_last(rows, 'loss_mask'):12.4f}  "
              f"{_last(rows, 'loss_dice'):11.3f}  {float(rows[0]['loss']):15.3f}  {held:12.3f}  {seconds:7.0f}",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
