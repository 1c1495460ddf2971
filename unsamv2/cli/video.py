"""Video commands: write the synthetic video benchmark, and J&F of one model on one video dataset."""
from __future__ import annotations

import argparse
from pathlib import Path

from unsamv2.core.constants import SAM2_SIZES
from unsamv2.evaluate.config import EVALUATED_MODELS, EvaluationConfig
from unsamv2.evaluate.video_config import VideoConfig

_EVAL = EvaluationConfig()
_VIDEO = VideoConfig()


def cmd_synthetic_video(args: argparse.Namespace) -> int:
    from unsamv2.datasets.synthetic_video import write_synthetic_video_dataset

    write_synthetic_video_dataset(args.out_dir, args.n_sequences, args.n_frames, seed=args.seed,
                                  image_size=(args.image_size, args.image_size))
    return 0


def cmd_evaluate_video(args: argparse.Namespace) -> int:
    from unsamv2.evaluate.run import parse_dataset_options
    from unsamv2.evaluate.video_run import evaluate_video_to_dir

    return evaluate_video_to_dir(
        dataset=args.dataset, root=args.root, model_kind=args.model, out_dir=args.out_dir,
        checkpoint=args.checkpoint, size=args.model_size, modes=args.mode,
        dataset_options=parse_dataset_options(args.dataset_option or []), limit=args.limit, device=args.device,
        image_size=args.image_size, model_label=args.model_label, progress=not args.quiet,
    )


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("synthetic-video", parents=[common],
                       help="write the synthetic video benchmark (animated hierarchical scenes, DAVIS-2017 layout)",
                       description="JPEGImages/480p, Annotations{,_part,_subpart}/480p and ImageSets/2017/val.txt "
                       "under --out-dir. Defaults are those of the workflow's 'video' config section.")
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--n-sequences", type=int, default=_VIDEO.synthetic_sequences)
    p.add_argument("--n-frames", type=int, default=_VIDEO.synthetic_frames)
    p.add_argument("--image-size", type=int, default=_VIDEO.synthetic_size, help="square frame side in pixels")
    p.add_argument("--seed", type=int, default=_VIDEO.synthetic_seed)
    p.set_defaults(func=cmd_synthetic_video)

    p = sub.add_parser("evaluate-video", parents=[common],
                       help="J&F (DAVIS-2017 protocol, one click per object) of one model on one video dataset",
                       description="Writes masks/<mode>/<sequence>/*.png (DAVIS format), per_object.csv, "
                       "summary.csv, figure.png, failures.json and run.json into --out-dir. Defaults are those of "
                       "the workflow's 'video' and 'evaluation' config sections.")
    p.add_argument("--dataset", required=True, help="video dataset name (davis2017, synthetic_video)")
    p.add_argument("--root", type=Path, required=True, help="the dataset's folder")
    p.add_argument("--dataset-option", action="append", metavar="KEY=VALUE",
                   help="loader option, e.g. subset=val (davis2017), level=part (synthetic_video); repeatable")
    p.add_argument("--model", choices=EVALUATED_MODELS, required=True)
    p.add_argument("--checkpoint", default=None, help="weights (.pt); omitted = random weights, labelled as such")
    p.add_argument("--model-size", choices=SAM2_SIZES, default=_EVAL.sam2_size)
    p.add_argument("--image-size", type=int, default=_EVAL.image_size,
                   help="model input size (1024 for released weights; smaller for the demo's models)")
    p.add_argument("--model-label", default=None, help="name in the CSVs (default: the --model value)")
    p.add_argument("--device", default=_EVAL.device, help="auto (cuda if available), cpu, cuda, cuda:<n>")
    p.add_argument("--mode", action="append", metavar="MODE",
                   help="fixed:<g> | first_frame_oracle (unsamv2); single_mask | best_of_3_first_frame | gt_mask "
                        f"(sam2); repeatable (default: {', '.join(_VIDEO.unsamv2_modes)} for unsamv2, "
                        f"{', '.join(_VIDEO.sam2_modes)} for sam2)")
    p.add_argument("--limit", type=int, default=_VIDEO.limit, help="evaluate only the first N sequences")
    p.add_argument("--out-dir", type=Path, required=True)
    p.set_defaults(func=cmd_evaluate_video)
