"""Evaluation commands: interactive NoC / 1-IoU of one model on one benchmark, the paper's averaged tables, and
mean-IoU-vs-clicks plots."""
from __future__ import annotations

import argparse
from pathlib import Path

from unsamv2.core.constants import EVAL_MASK_THRESHOLD, SAM2_SIZES
from unsamv2.evaluate.config import EVALUATED_MODELS, EvaluationConfig

_DEFAULTS = EvaluationConfig()


def cmd_evaluate_interactive(args: argparse.Namespace) -> int:
    from unsamv2.evaluate.run import evaluate_interactive_to_dir, parse_dataset_options

    return evaluate_interactive_to_dir(
        dataset=args.dataset, root=args.root, model_kind=args.model, checkpoint=args.checkpoint,
        size=args.model_size, out_dir=args.out_dir, modes=args.granularity_mode,
        dataset_options=parse_dataset_options(args.dataset_option or []), target_iou=args.target_iou,
        max_clicks=args.max_clicks, mask_threshold=args.mask_threshold, limit=args.limit, device=args.device,
        image_size=args.image_size, model_label=args.model_label, config=args.config, progress=not args.quiet,
    )


def cmd_average_interactive(args: argparse.Namespace) -> int:
    from unsamv2.evaluate.run import average_summaries

    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()] if args.datasets else None
    average_summaries(args.summaries, datasets, args.out)
    return 0


def cmd_plot_interactive(args: argparse.Namespace) -> int:
    from unsamv2.evaluate.run import plot_per_object

    plot_per_object(args.per_object, args.dataset, args.max_clicks, args.out)
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("evaluate-interactive", parents=[common],
                       help="NoC80/85/90 and 1-IoU of one model on one benchmark",
                       description="Writes per_object.csv, summary.csv, miou_curve.png, failures.json and run.json "
                       "into --out-dir. Defaults are those of the workflow's 'evaluation' config section.")
    p.add_argument("--dataset", required=True,
                   help="benchmark name (grabcut, berkeley, davis, sbd, pascalpart, partimagenet, sa1b, synthetic)")
    p.add_argument("--root", type=Path, required=True, help="the benchmark's folder")
    p.add_argument("--dataset-option", action="append", metavar="KEY=VALUE",
                   help="loader option, e.g. label_policy=graco (PartImageNet), fraction=1.0 (PascalPart), "
                        "id_list=ids.txt or exclude_id_list=train_ids.txt (SA-1B); repeatable")
    p.add_argument("--model", choices=EVALUATED_MODELS, required=True)
    p.add_argument("--checkpoint", default=None, help="weights (.pt); omitted = random weights, labelled as such")
    p.add_argument("--model-size", choices=SAM2_SIZES, default=_DEFAULTS.sam2_size)
    p.add_argument("--config", default=None, help="sam2 config name for --model sam2 (default from --model-size)")
    p.add_argument("--image-size", type=int, default=_DEFAULTS.image_size,
                   help="model input size (1024 for released weights; smaller for the demo's models)")
    p.add_argument("--model-label", default=None, help="name in the CSVs (default: the --model value)")
    p.add_argument("--device", default=_DEFAULTS.device, help="auto (cuda if available), cpu, cuda, cuda:<n>")
    p.add_argument("--granularity-mode", action="append", metavar="MODE",
                   help="oracle | fixed:<g> | best_fixed (unsamv2); none | best_of_3 (sam2); repeatable "
                        f"(default: {', '.join(_DEFAULTS.unsamv2_modes)} for unsamv2, "
                        f"{', '.join(_DEFAULTS.sam2_modes)} for sam2)")
    p.add_argument("--max-clicks", type=int, default=_DEFAULTS.max_clicks)
    p.add_argument("--target-iou", type=float, default=None,
                   help="default: the protocol's (0.90 object benchmarks, 0.85 part benchmarks)")
    p.add_argument("--mask-threshold", type=float, default=EVAL_MASK_THRESHOLD,
                   help=f"logit threshold of single-mask predictions (official evaluation: {EVAL_MASK_THRESHOLD})")
    p.add_argument("--limit", type=int, default=_DEFAULTS.limit, help="evaluate only the first N images")
    p.add_argument("--out-dir", type=Path, required=True)
    p.set_defaults(func=cmd_evaluate_interactive)

    p = sub.add_parser("average-interactive", parents=[common],
                       help="paper-style averaged rows from per-dataset summaries")
    p.add_argument("--summaries", type=Path, nargs="+", required=True, help="summary.csv files of evaluate-interactive")
    p.add_argument("--datasets", default=None, help="comma-separated subset to average (e.g. Table 1's five)")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=cmd_average_interactive)

    p = sub.add_parser("plot-interactive", parents=[common], help="mean IoU vs clicks for several models / modes")
    p.add_argument("--per-object", type=Path, nargs="+", required=True,
                   help="per_object.csv files of evaluate-interactive")
    p.add_argument("--dataset", default=None, help="restrict to one dataset")
    p.add_argument("--max-clicks", type=int, default=_DEFAULTS.max_clicks)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=cmd_plot_interactive)
