"""CLI commands of the interactive evaluation (registered into ``unsamv2 <command>`` by :mod:`unsamv2.cli`).

``unsamv2 evaluate-interactive``  one model on one benchmark → per_object.csv, summary.csv, miou_curve.png,
                                  failures.json, run.json in ``--out-dir``
``unsamv2 average-interactive``   per-dataset summary CSVs → the same rows plus the paper's "Averaged" rows
``unsamv2 plot-interactive``      per-object CSVs of several models → one mean-IoU-vs-clicks plot

Example::

    unsamv2 evaluate-interactive --dataset grabcut --root data/GrabCut --model unsamv2 \\
        --checkpoint unsamv2_small.pt --granularity-mode oracle --granularity-mode fixed:1.0 --out-dir results/x
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

__all__ = ["build_model", "cmd_average_interactive", "cmd_evaluate_interactive", "cmd_plot_interactive",
           "main", "register"]

log = logging.getLogger(__name__)

_MODES_BY_MODEL = {"unsamv2": ("oracle", "fixed", "best_fixed"), "sam2": ("none", "best_of_3")}
_DEFAULT_MODE = {"unsamv2": "oracle", "sam2": "none"}


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def build_model(kind: str, checkpoint: str | None, size: str, config: str | None, device: str,
                image_size: int = 1024, name: str | None = None) -> Any:
    """Build the click-model adapter for ``--model`` (``unsamv2`` or ``sam2``)."""
    from unsamv2.evaluate.interactive import Sam2BaselineModel, UnSAMv2ClickModel

    label = name or (kind if checkpoint else f"{kind}-random-init")
    if checkpoint is None:
        log.warning("no --checkpoint: %s runs with RANDOM weights; its numbers mean nothing (label %r)", kind, label)
    if kind == "unsamv2":
        if config is not None:
            raise ValueError("--config is for --model sam2; UnSAMv2 is built from --size (or the checkpoint)")
        return UnSAMv2ClickModel.build(size, checkpoint, device=device, image_size=image_size, name=label)
    if kind == "sam2":
        from unsamv2.model.build import MODEL_CONFIGS, normalize_model_size

        if image_size != 1024:
            if config is not None:
                raise ValueError("--config builds sam2's 1024-px model; with --image-size give --size instead")
            return Sam2BaselineModel.build_sized(normalize_model_size(size), checkpoint, image_size, device=device,
                                                 name=label)
        return Sam2BaselineModel.build(config or MODEL_CONFIGS[normalize_model_size(size)], checkpoint,
                                       device=device, name=label)
    raise ValueError(f"unknown --model {kind!r}; expected unsamv2 or sam2")


def _parse_options(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; VALUE is parsed as JSON when possible (numbers, true/false), else kept as text."""
    options: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--dataset-option {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options


def _freeze_sa1b_subset(root: Path, out_dir: Path, options: dict[str, Any]) -> Path:
    """Write the SA-1B ids this run will use as a versioned list in the output folder, and return its path.

    Without a user-given ``id_list`` the subset is "first N sorted ids minus exclusions"; writing it down makes the
    run repeatable even if files are added to the folder later.
    """
    from unsamv2.datasets.sa1b import excluded_ids, make_id_list, write_id_list

    num = int(options.get("num_images", 1000))
    excluded = excluded_ids(options.get("exclude_ids", ()), options.get("exclude_id_list"))
    ids = make_id_list(root, num_images=num, exclude_ids=excluded)
    log.warning("no --dataset-option id_list=...: using the first %d sorted SA-1B ids under %s (saved for reuse)",
                len(ids), root)
    rule = f"first {num} ids in sorted order under {root}" + (f", excluding {len(excluded)} ids" if excluded else "")
    return write_id_list(out_dir / "sa1b_ids.txt", ids, rule=rule)


def cmd_evaluate_interactive(args: argparse.Namespace) -> int:
    from unsamv2.datasets.registry import effective_options, get_dataset, load_dataset
    from unsamv2.evaluate.interactive import evaluate_dataset, parse_granularity_mode
    from unsamv2.evaluate.summary import (
        plot_miou_curves,
        summary_rows,
        write_per_object_csv,
        write_summary_csv,
    )
    from unsamv2.io.atomic import atomic_write_json

    spec = get_dataset(args.dataset)
    modes = [parse_granularity_mode(m) for m in (args.granularity_mode or [_DEFAULT_MODE[args.model]])]
    allowed = _MODES_BY_MODEL[args.model]
    bad = [m.label for m in modes if m.kind not in allowed]
    if bad:
        raise ValueError(f"granularity mode(s) {bad} do not apply to --model {args.model}; allowed: {allowed}")
    target = spec.target_iou if args.target_iou == "auto" else float(args.target_iou)
    options = _parse_options(args.dataset_option or [])

    out = Path(args.out_dir)
    if spec.name == "sa1b" and "id_list" not in options:
        options["id_list"] = str(_freeze_sa1b_subset(Path(args.root), out, effective_options(spec.name, **options)))
    options = effective_options(spec.name, **options)

    model = build_model(args.model, args.checkpoint, args.size, args.config, args.device or _default_device(),
                        args.image_size, args.model_label)
    samples = load_dataset(spec.name, args.root, **options)
    result = evaluate_dataset(model, samples, modes, dataset=spec.name, target_iou=target,
                              max_clicks=args.max_clicks, mask_threshold=args.mask_threshold, limit=args.limit)

    write_per_object_csv(result.records, result.model, out / "per_object.csv", args.max_clicks)
    rows = summary_rows(result)
    write_summary_csv(rows, out / "summary.csv")
    curves = {f"{result.model} ({m})": result.sequences(m) for m in result.modes}
    if any(curves.values()):
        plot_miou_curves(curves, out / "miou_curve.png", args.max_clicks, title=spec.display_name)
    atomic_write_json(out / "failures.json", result.failures, indent=1)
    atomic_write_json(out / "run.json", {
        "model": result.model, "model_kind": args.model, "checkpoint": args.checkpoint, "size": args.size,
        "config": args.config, "dataset": spec.name, "root": str(args.root), "dataset_options": options,
        "granularity_modes": result.modes, "target_iou": target, "max_clicks": args.max_clicks,
        "mask_threshold": args.mask_threshold, "limit": args.limit, "n_images": result.n_images,
        "n_failures": len(result.failures), "best_fixed_granularity": result.best_fixed_granularity,
        "elapsed_s": round(result.elapsed_s, 3),
    }, indent=1)
    for row in rows:
        log.info("%s %s %s: NoC80 %.2f NoC85 %.2f NoC90 %s 1-IoU %.1f (%d objects, %d at 20)", row["model"],
                 row["dataset"], row["granularity_mode"], row["noc80"], row["noc85"], f"{row['noc90']:.2f}",
                 row["iou1"], row["n_objects"], row["n_fail20"])
    if result.failures:
        log.error("%d image(s) failed; see %s", len(result.failures), out / "failures.json")
    if result.n_images and len(result.failures) == result.n_images:
        return 1
    return 0


def cmd_average_interactive(args: argparse.Namespace) -> int:
    from unsamv2.evaluate.summary import paper_average, read_summary_csv, write_summary_csv

    rows = [row for path in args.summaries for row in read_summary_csv(path)]
    if args.datasets:
        wanted = [d.strip().lower() for d in args.datasets.split(",") if d.strip()]
        rows = [r for r in rows if str(r["dataset"]).lower() in wanted]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["model"], row["granularity_mode"]), []).append(row)
    averages = [paper_average(group) for group in groups.values()]
    write_summary_csv([*rows, *averages], args.out)
    for avg in averages:
        log.info("%s %s average over %d datasets: NoC80 %.2f NoC90(85 for parts) %.2f 1-IoU %.1f", avg["model"],
                 avg["granularity_mode"], len(groups[(avg["model"], avg["granularity_mode"])]), avg["noc80"],
                 avg["noc90"], avg["iou1"])
    return 0


def cmd_plot_interactive(args: argparse.Namespace) -> int:
    from unsamv2.evaluate.summary import plot_miou_curves, read_per_object_csv

    curves: dict[str, list[list[float]]] = {}
    for path in args.per_object:
        for row in read_per_object_csv(path):
            if args.dataset and row["dataset"].lower() != args.dataset.lower():
                continue
            curves.setdefault(f"{row['model']} ({row['granularity_mode']})", []).append(row["ious"])
    if not curves:
        raise ValueError("no per-object rows to plot (check --dataset)")
    plot_miou_curves(curves, args.out, args.max_clicks, title=args.dataset or "")
    return 0


def register(subparsers: Any) -> None:
    """Add the evaluation commands to an ``argparse`` sub-parser collection."""
    p = subparsers.add_parser("evaluate-interactive", help="NoC80/85/90 and 1-IoU of one model on one benchmark")
    p.add_argument("--dataset", required=True, help="benchmark name (grabcut, berkeley, davis, sbd, pascalpart, "
                                                    "partimagenet, sa1b, or a registered one)")
    p.add_argument("--root", required=True, help="the benchmark's folder")
    p.add_argument("--dataset-option", action="append", metavar="KEY=VALUE",
                   help="loader option, e.g. label_policy=graco (PartImageNet), fraction=1.0 (PascalPart), "
                        "id_list=ids.txt or exclude_id_list=train_ids.txt (SA-1B); repeatable")
    p.add_argument("--model", choices=("unsamv2", "sam2"), required=True)
    p.add_argument("--checkpoint", default=None, help="weights (.pt); omitted = random weights, labelled as such")
    p.add_argument("--size", default="small", help="SAM-2.1 size: tiny, small, base_plus, large (default small)")
    p.add_argument("--config", default=None, help="sam2 config name for --model sam2 (default from --size)")
    p.add_argument("--image-size", type=int, default=1024, help="model input size (1024 for real weights; smaller for the demo's models)")
    p.add_argument("--model-label", default=None, help="name in the CSVs (default: the --model value)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--granularity-mode", action="append", metavar="MODE",
                   help="oracle | fixed:<g> | best_fixed (unsamv2); none | best_of_3 (sam2); repeatable "
                        "(default: oracle for unsamv2, none for sam2)")
    p.add_argument("--max-clicks", type=int, default=20)
    p.add_argument("--target-iou", default="auto", help="'auto' (0.90 objects, 0.85 parts) or a number")
    p.add_argument("--mask-threshold", type=float, default=-1.0, help="logit threshold (official evaluation: -1)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=cmd_evaluate_interactive)

    p = subparsers.add_parser("average-interactive", help="paper-style averaged rows from per-dataset summaries")
    p.add_argument("--summaries", nargs="+", required=True, help="summary.csv files of evaluate-interactive")
    p.add_argument("--datasets", default=None, help="comma-separated subset to average (e.g. Table 1's five)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_average_interactive)

    p = subparsers.add_parser("plot-interactive", help="mean IoU vs clicks for several models / modes")
    p.add_argument("--per-object", nargs="+", required=True, help="per_object.csv files of evaluate-interactive")
    p.add_argument("--dataset", default=None, help="restrict to one dataset")
    p.add_argument("--max-clicks", type=int, default=20)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_plot_interactive)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m unsamv2.evaluate.cli_commands``); normally reached through ``unsamv2``."""
    parser = argparse.ArgumentParser(prog="unsamv2-evaluate")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
