"""Stage 1 commands: mask discovery on a shard, granularity scoring, the pseudo-label report and recall."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger("unsamv2")


def cmd_discover(args: argparse.Namespace) -> int:
    from unsamv2.discovery.config import DiscoveryConfig
    from unsamv2.discovery.shard import run_shard

    cfg = DiscoveryConfig.from_json(args.settings)
    results = run_shard(args.image_list, args.shard, args.shard_size, args.out_dir, args.out, cfg, args.backbone,
                        weights=args.weights, progress=not args.quiet)
    failed = [r for r in results if r.status == "error"]
    log.info("shard %d: %d images, %d failed", args.shard, len(results), len(failed))
    for r in failed:
        log.error("FAILED %s: %s", r.file_name, r.error)
    if results and len(failed) == len(results):
        log.error("every image of the shard failed; see the errors above")
        return 1
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from unsamv2.discovery.scoring import score_manifest

    n = score_manifest(args.manifest, args.raw_labels, args.out_dir, args.out, args.formula)
    log.info("scored %d pseudo-label files -> %s", n, args.out_dir)
    return 0


def cmd_report_pseudo_labels(args: argparse.Namespace) -> int:
    from unsamv2.report.pseudo_labels import write_pseudo_label_report

    summary = write_pseudo_label_report(args.pseudo_labels, args.manifests, args.out_dir, args.bins, args.run,
                                        args.image_list)
    log.info("report: %s", json.dumps(summary))
    return 0


def cmd_pseudo_label_recall(args: argparse.Namespace) -> int:
    from unsamv2.report.recall import write_recall_csv

    for row in write_recall_csv(args.pseudo_labels, args.annotations, args.out):
        log.info("%s: %d regions, mean best IoU %.1f %%, found at IoU >= 0.5: %.1f %%, boundary F %.3f",
                 row["level"], row["n_regions"], row["mean_best_iou"], row["found_at_iou50"], row["mean_boundary_f"])
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from unsamv2.discovery.config import GRANULARITY_FORMULAS

    p = sub.add_parser("discover", parents=[common],
                       help="Stage 1: divide-and-conquer mask discovery on one shard of images")
    p.add_argument("--image-list", type=Path, required=True, help="images.txt from select-images")
    p.add_argument("--shard", type=int, required=True)
    p.add_argument("--shard-size", type=int, required=True)
    p.add_argument("--backbone", required=True, help="dinov3_vitb16 | dinov2_vitb14 | offline")
    p.add_argument("--weights", default=None, help="local transformers directory or hub id")
    p.add_argument("--settings", default=None, help="JSON object of discovery settings (config key 'discovery')")
    p.add_argument("--out-dir", type=Path, required=True, help="folder of raw per-image JSONs (shared by shards)")
    p.add_argument("--out", type=Path, required=True, help="the shard's manifest (TSV, one row per image)")
    p.set_defaults(func=cmd_discover)

    p = sub.add_parser("score", parents=[common], help="Stage 1: fill the granularity of one shard's pseudo-labels")
    p.add_argument("--manifest", type=Path, required=True, help="manifest written by discover")
    p.add_argument("--raw-labels", type=Path, required=True, help="discover's --out-dir")
    p.add_argument("--out-dir", type=Path, required=True, help="folder of scored pseudo-label JSONs")
    p.add_argument("--out", type=Path, required=True, help="the scored shard's manifest")
    p.add_argument("--formula", choices=GRANULARITY_FORMULAS, default=GRANULARITY_FORMULAS[0])
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("report-pseudo-labels", parents=[common],
                       help="statistics and granularity histogram of pseudo-labels")
    p.add_argument("--pseudo-labels", type=Path, required=True, help="folder of pseudo-label JSONs")
    p.add_argument("--manifests", type=Path, nargs="+", required=True)
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--bins", type=int, required=True, help="histogram bins over [0.1, 1] (report.histogram_bins)")
    p.add_argument("--run", default="")
    p.add_argument("--image-list", type=Path, default=None,
                   help="images.txt; adds examples.png (masks coloured by granularity)")
    p.set_defaults(func=cmd_report_pseudo_labels)

    p = sub.add_parser("pseudo-label-recall", parents=[common],
                       help="score pseudo-labels against known ground truth per level (synthetic scenes)")
    p.add_argument("--pseudo-labels", type=Path, required=True, help="folder of pseudo-label JSONs")
    p.add_argument("--annotations", type=Path, required=True,
                   help="ground-truth JSONs of the same names (with 'level')")
    p.add_argument("--out", type=Path, required=True,
                   help="CSV: level, n_regions, mean_best_iou, found_at_iou50 (percent)")
    p.set_defaults(func=cmd_pseudo_label_recall)
