"""Evaluation commands: interactive NoC / 1-IoU of one model on one benchmark, the paper's averaged tables,
mean-IoU-vs-clicks plots, and the first-click IoU per level of the synthetic scenes."""
from __future__ import annotations

import argparse
from pathlib import Path

from unsamv2.core.constants import EVAL_MASK_THRESHOLD, SAM2_SIZES
from unsamv2.evaluate.config import EVALUATED_MODELS, EvaluationConfig

_DEFAULTS = EvaluationConfig()
_WHOLE_IMAGE_HELP = ("JSON object of whole-image settings (config key 'whole_image': granularities, "
                     "points_per_side, points_per_batch, thresholds, max_dets, image_ids, shard_size, limit, postprocess)")


def cmd_interactive_levels(args: argparse.Namespace) -> int:
    import logging

    from unsamv2.report.levels import write_level_table

    for row in write_level_table(args.per_object, args.annotations, args.out):
        logging.getLogger("unsamv2").info("%s %s: first-click IoU %.2f %% over %d regions", row["model"],
                                          row["granularity_mode"], row["iou1"], row["n_objects"])
    return 0


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


def cmd_prepare_whole_image(args: argparse.Namespace) -> int:
    from unsamv2.datasets.whole_image import extract_sa1b_holdout, prepare_whole_image
    from unsamv2.evaluate.run import parse_dataset_options

    if args.sa1b_tar is not None:
        extract_sa1b_holdout(args.sa1b_tar, args.out_dir / "raw")
    prepare_whole_image(args.dataset, args.out_dir, **parse_dataset_options(args.dataset_option or []))
    return 0


def _whole_image_generator(args: argparse.Namespace, settings: object) -> object:
    from unsamv2.evaluate.whole_image_run import build_generator

    return build_generator(args.model, args.checkpoint, args.model_size, settings, device=args.device,
                           image_size=args.image_size)


def cmd_whole_image_shard(args: argparse.Namespace) -> int:
    from unsamv2.evaluate.whole_image_config import WholeImageConfig
    from unsamv2.evaluate.whole_image_run import generate_shard

    settings = WholeImageConfig.from_json(args.settings)
    return generate_shard(gt_json=args.gt, generator=_whole_image_generator(args, settings), shard=args.shard,
                          settings=settings, shard_dir=args.shard_dir, out=args.out, identity=_run_info(args),
                          progress=not args.quiet)


def _run_info(args: argparse.Namespace) -> dict[str, object]:
    return {"model_kind": args.model, "checkpoint": None if args.checkpoint is None else str(args.checkpoint),
            "size": args.model_size, "image_size": args.image_size, "gt": str(args.gt)}


def cmd_score_whole_image(args: argparse.Namespace) -> int:
    from unsamv2.evaluate.whole_image_config import WholeImageConfig
    from unsamv2.evaluate.whole_image_run import merge_and_score

    settings = WholeImageConfig.from_json(args.settings)
    merge_and_score(gt_json=args.gt, manifests=args.manifests, shard_dir=args.shard_dir, out_dir=args.out_dir,
                    model=args.model_label or args.model, dataset=args.dataset, settings=settings,
                    granularities=settings.granularities if args.model == "unsamv2" else None,
                    expected_images=args.expected_images, run_info=_run_info(args))
    return 0


def cmd_evaluate_whole_image(args: argparse.Namespace) -> int:
    from unsamv2.evaluate.whole_image_config import WholeImageConfig
    from unsamv2.evaluate.whole_image_run import evaluate_whole_image_to_dir

    settings = WholeImageConfig.from_json(args.settings)
    return evaluate_whole_image_to_dir(
        gt_json=args.gt, generator=_whole_image_generator(args, settings), out_dir=args.out_dir,
        model=args.model_label or args.model, dataset=args.dataset, settings=settings,
        granularities=settings.granularities if args.model == "unsamv2" else None, run_info=_run_info(args),
        progress=not args.quiet)


def cmd_average_whole_image(args: argparse.Namespace) -> int:
    from unsamv2.evaluate.whole_image import average_table

    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()] if args.datasets else None
    average_table(args.summaries, datasets, args.out)
    return 0


def _add_whole_image_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gt", type=Path, required=True, help="gt.json of prepare-whole-image (image paths relative to it)")
    p.add_argument("--model", choices=EVALUATED_MODELS, required=True)
    p.add_argument("--checkpoint", default=None, help="weights (.pt); omitted = random weights, logged as such")
    p.add_argument("--model-size", choices=SAM2_SIZES, default=_DEFAULTS.sam2_size)
    p.add_argument("--image-size", type=int, default=_DEFAULTS.image_size)
    p.add_argument("--device", default=_DEFAULTS.device, help="auto (cuda if available), cpu, cuda, cuda:<n>")
    p.add_argument("--settings", default=None, help=_WHOLE_IMAGE_HELP)


def _register_whole_image(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("prepare-whole-image", parents=[common],
                       help="download/convert a Table 3 benchmark to one class-agnostic COCO gt.json",
                       description="Writes OUT_DIR/gt.json (image paths relative to OUT_DIR). Downloads what "
                       "upstream publishes; a missing user-supplied file stops with a message naming it.")
    p.add_argument("dataset", help="coco, lvis, ade20k, entityseg, sa1b or synthetic")
    p.add_argument("--out-dir", type=Path, required=True, help="the benchmark's folder")
    p.add_argument("--dataset-option", action="append", metavar="KEY=VALUE",
                   help="converter option, e.g. source=DIR (synthetic), num_images=1000 or exclude_image_list="
                        "results/<run>/images.txt (sa1b); repeatable")
    p.add_argument("--sa1b-tar", type=Path, default=None, help="sa1b: extract this held-out tar into OUT_DIR/raw first")
    p.set_defaults(func=cmd_prepare_whole_image)

    p = sub.add_parser("whole-image-shard", parents=[common],
                       help="masks of one shard of a whole-image benchmark (one JSON per image, then a manifest)")
    _add_whole_image_model(p)
    p.add_argument("--shard", type=int, required=True)
    p.add_argument("--shard-dir", type=Path, required=True, help="per-image result files (a rerun skips finished ones)")
    p.add_argument("--out", type=Path, required=True, help="the shard's manifest, written last")
    p.set_defaults(func=cmd_whole_image_shard)

    p = sub.add_parser("score-whole-image", parents=[common],
                       help="merge shards and write AR@1000 summary, results JSON and per-g / per-image CSVs")
    _add_whole_image_model(p)
    p.add_argument("--dataset", required=True, help="name in the CSVs")
    p.add_argument("--model-label", default=None, help="name in the CSVs (default: the --model value)")
    p.add_argument("--manifests", type=Path, nargs="+", required=True)
    p.add_argument("--shard-dir", type=Path, required=True)
    p.add_argument("--expected-images", type=int, default=None,
                   help="fail unless the manifests cover this many images (the workflow's shard plan)")
    p.add_argument("--out-dir", type=Path, required=True)
    p.set_defaults(func=cmd_score_whole_image)

    p = sub.add_parser("evaluate-whole-image", parents=[common],
                       help="AR@1000 of one model on one whole-image benchmark (generate + score in one process)",
                       description="Writes results.json, summary.csv, masks_per_image.csv, ar_per_granularity.csv, "
                       "failures.json and run.json into --out-dir; per-image masks go to OUT_DIR/shards/ (resumable).")
    _add_whole_image_model(p)
    p.add_argument("--dataset", required=True, help="name in the CSVs")
    p.add_argument("--model-label", default=None, help="name in the CSVs (default: the --model value)")
    p.add_argument("--out-dir", type=Path, required=True)
    p.set_defaults(func=cmd_evaluate_whole_image)

    p = sub.add_parser("average-whole-image", parents=[common],
                       help="table3.csv: per-dataset AR@1000 rows plus the average over the benchmarks")
    p.add_argument("--summaries", type=Path, nargs="+", required=True)
    p.add_argument("--datasets", default=None, help="comma-separated benchmarks, in table order")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=cmd_average_whole_image)


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    _register_whole_image(sub, common)
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

    p = sub.add_parser("interactive-levels", parents=[common],
                       help="first-click IoU per hierarchy level (synthetic scenes: object, part, sub-part, ...)")
    p.add_argument("--per-object", type=Path, nargs="+", required=True,
                   help="per_object.csv files of evaluate-interactive on the 'synthetic' benchmark")
    p.add_argument("--annotations", type=Path, required=True,
                   help="the benchmark's ground-truth JSONs (annotations/ of `unsamv2 synthetic`)")
    p.add_argument("--out", type=Path, required=True,
                   help="CSV: model, granularity_mode, n_objects, iou1, iou1_<level>..., n_<level>... (percent)")
    p.set_defaults(func=cmd_interactive_levels)
