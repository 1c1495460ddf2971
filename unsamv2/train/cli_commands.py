"""CLI commands of the training stage (registered into ``unsamv2 <command>`` by :mod:`unsamv2.cli`).

``unsamv2 train``      fine-tune on Stage-1 pseudo-labels → checkpoints, losses, loss curve in ``--out-dir``
``unsamv2 synthetic``  write synthetic hierarchical scenes (the offline demo's data and the tests' fixtures)

Examples::

    unsamv2 train --pseudo-labels results/paper/pseudo_labels/json --images data/sa1b/images \\
        --out-dir results/paper/train --settings '{"model_size": "small", "base_checkpoint": "sam2.1_hiera_small.pt"}'

    # several GPUs (one process per GPU, same entry point; gradients are averaged over the processes):
    torchrun --standalone --nproc_per_node 2 -m unsamv2.cli train ... --resume
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

__all__ = ["cmd_synthetic", "cmd_train", "register"]

log = logging.getLogger(__name__)


def cmd_train(args: argparse.Namespace) -> int:
    """``unsamv2 train``: read the settings, train, report where the outputs are."""
    from unsamv2.train.config import TrainConfig
    from unsamv2.train.loop import train

    config = TrainConfig.from_json(args.settings)
    result = train(config, Path(args.pseudo_labels), Path(args.images), Path(args.out_dir), resume=args.resume,
                   progress=not args.no_progress)
    log.info("trained %d/%d steps (%d epochs) in %.1f s → %s", result.steps, result.total_steps,
             result.epochs_completed, result.wall_seconds, result.final_checkpoint)
    return 0


def cmd_synthetic(args: argparse.Namespace) -> int:
    """``unsamv2 synthetic``: :func:`unsamv2.datasets.synthetic.main` with the same arguments."""
    from unsamv2.datasets.synthetic import main

    argv = [str(args.out_dir), "--n", str(args.n), "--seed", str(args.seed), "--size", *map(str, args.size),
            "--min-area", str(args.min_area)]
    return main(argv)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train`` and ``synthetic`` to the ``unsamv2`` command line."""
    p = subparsers.add_parser(
        "train",
        help="Stage 2: fine-tune SAM-2 with the granularity module on pseudo-labels",
        description="Train on per-image pseudo-label JSONs (method.md §3). Writes checkpoint_epoch{N}.pt (official "
        "UnSAMv2 format), last.pt + train_state.pt (resumable state), losses.csv, loss_curve.png, final.pt and "
        "train_summary.json into --out-dir. Under torchrun every process runs this same command.",
    )
    p.add_argument("--pseudo-labels", required=True, help="folder of per-image pseudo-label *.json")
    p.add_argument("--images", required=True, help="folder of the images the JSONs name (image.file_name)")
    p.add_argument("--out-dir", required=True, help="output folder")
    p.add_argument("--settings", default=None,
                   help="JSON object of train settings (config key 'train'; unknown keys are an error)")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT_DIR/train_state.pt when it exists (a killed run ends with the same "
                   "weights as an uninterrupted one)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    p.set_defaults(func=cmd_train)

    s = subparsers.add_parser(
        "synthetic",
        help="write synthetic hierarchical scenes (images/, annotations/, gt_coco.json)",
        description="Synthetic scenes with exact object / part / sub-part ground truth (the offline demo's data).",
    )
    s.add_argument("out_dir", help="output folder (images/, annotations/, gt_coco.json)")
    s.add_argument("--n", type=int, default=100, help="number of images (default 100)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"),
                   help="image height and width (default 256 256)")
    s.add_argument("--min-area", type=int, default=20, help="drop regions with fewer visible pixels (default 20)")
    s.set_defaults(func=cmd_synthetic)
