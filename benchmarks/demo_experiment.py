"""The offline demo experiment end to end: prints both models' oracle 1-IoU / NoC85 and the wall time per stage.

Synthetic training scenes → Stage-1 pseudo-labels (offline backbone) → UnSAMv2 and a SAM-2-style baseline trained
from the same random initialisation with the same budget → interactive evaluation on held-out scenes against
their ground truth (see :mod:`unsamv2.train.demo`). Everything lands in ``--out-dir`` (default ``results/demo``):
``evaluation/summary.csv`` follows the project's summary contract.

Usage: ``python benchmarks/demo_experiment.py [--out-dir results/demo] [--train-images 32] [--eval-images 20]``
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

from unsamv2.train.demo import DemoSettings, run_demo_experiment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, default=Path("results/demo"))
    defaults = DemoSettings()
    parser.add_argument("--train-images", type=int, default=defaults.n_train_images)
    parser.add_argument("--eval-images", type=int, default=defaults.n_eval_images)
    parser.add_argument("--train", default=None, help="JSON object overriding demo train settings")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    train = dict(defaults.train)
    train.update(json.loads(args.train) if args.train else {})
    settings = dataclasses.replace(defaults, n_train_images=args.train_images, n_eval_images=args.eval_images,
                                   train=train)
    result = run_demo_experiment(args.out_dir, settings)
    print("\n1-IoU (%) on held-out synthetic scenes (random init, demo budget):")
    for key, value in result.iou1.items():
        print(f"  {key:45s} 1-IoU {value:6.2f}   NoC85 {result.noc85[key]:5.2f}")
    print(f"pseudo-label recall of the ground truth (best IoU, %): {result.pseudo_label_recall}")
    print("wall time (s): " + ", ".join(f"{k} {v:.0f}" for k, v in result.seconds.items()))
    print(f"summary: {result.summary_csv}")


if __name__ == "__main__":
    main()
