"""Stage 2 command: fine-tune SAM-2 with the granularity module on pseudo-labels."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("unsamv2")


def cmd_train(args: argparse.Namespace) -> int:
    from unsamv2.train.config import TrainConfig
    from unsamv2.train.loop import train

    config = TrainConfig.from_json(args.settings)
    result = train(config, args.pseudo_labels, args.images, args.out_dir, resume=args.resume,
                   progress=not args.quiet)
    log.info("trained %d/%d steps (%d epochs) in %.1f s → %s", result.steps, result.total_steps,
             result.epochs_completed, result.wall_seconds, result.final_checkpoint)
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "train", parents=[common],
        help="Stage 2: fine-tune SAM-2 with the granularity module on pseudo-labels",
        description="Train on per-image pseudo-label JSONs. Writes checkpoint_epoch{N}.pt (official UnSAMv2 "
        "format), last.pt + train_state.pt (resumable state), losses.csv, loss_curve.png, final.pt and "
        "train_summary.json into --out-dir. Under torchrun every process runs this same command: "
        "torchrun --standalone --nproc_per_node 2 -m unsamv2.cli train ... --resume",
    )
    p.add_argument("--pseudo-labels", type=Path, required=True, help="folder of per-image pseudo-label JSONs")
    p.add_argument("--images", type=Path, required=True, help="folder of the images the JSONs name")
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--settings", default=None,
                   help="JSON object of train settings (config key 'train'; unknown keys are an error)")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT_DIR/train_state.pt when it exists (a killed run ends with the same "
                   "weights as an uninterrupted one)")
    p.set_defaults(func=cmd_train)
