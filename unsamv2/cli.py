"""`unsamv2 <command>`: the entry point every Snakemake rule calls, and the user's command line.

Each pipeline stage is one subcommand with explicit inputs and outputs; the logic lives in the package modules.
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger("unsamv2")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


# --------------------------------------------------------------------------------------------- data


def cmd_demo_images(args: argparse.Namespace) -> int:
    from unsamv2.datasets.unlabeled import export_demo_photos

    paths = export_demo_photos(Path(args.out_dir))
    log.info("wrote %d demo photos to %s", len(paths), args.out_dir)
    return 0


def cmd_select_images(args: argparse.Namespace) -> int:
    from unsamv2.datasets.unlabeled import select_images, write_image_list

    items = select_images(Path(args.folder), args.max_images, Path(args.id_list) if args.id_list else None)
    if len(items) < args.max_images:
        log.warning("only %d images available in %s (images.max_images = %d)", len(items), args.folder,
                    args.max_images)
    write_image_list(items, Path(args.out))
    log.info("selected %d images -> %s", len(items), args.out)
    return 0


def cmd_fetch_sa1b(args: argparse.Namespace) -> int:
    from unsamv2.datasets.unlabeled import fetch_sa1b_tar

    fetch_sa1b_tar(Path(args.links_file), args.tar, Path(args.dest_dir))
    return 0


def cmd_extract_images(args: argparse.Namespace) -> int:
    from unsamv2.datasets.unlabeled import extract_images
    from unsamv2.io.atomic import atomic_write_text

    paths = extract_images(Path(args.tar), Path(args.out_dir))
    atomic_write_text(Path(args.done), "".join(f"{p.name}\n" for p in paths))
    log.info("extracted %d images from %s", len(paths), args.tar)
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from unsamv2.download import download_file

    download_file(args.url, Path(args.dest), sha256=args.sha256, size=args.size)
    return 0


def cmd_download_backbone(args: argparse.Namespace) -> int:
    from unsamv2.resources import download_backbone

    download_backbone(args.name, Path(args.dest_dir))
    return 0


def cmd_download_sam21(args: argparse.Namespace) -> int:
    from unsamv2.resources import download_sam21

    download_sam21(args.size, Path(args.dest))
    return 0


def cmd_prepare_dataset(args: argparse.Namespace) -> int:
    from unsamv2.datasets.registry import prepare_dataset
    from unsamv2.io.atomic import atomic_write_text

    root = prepare_dataset(args.name, Path(args.root))
    atomic_write_text(Path(args.done), f"{args.name}\t{root}\n")
    return 0


# --------------------------------------------------------------------------------------------- stage 1


def cmd_discover(args: argparse.Namespace) -> int:
    from unsamv2.discovery.config import DiscoveryConfig
    from unsamv2.discovery.features import build_backbone
    from unsamv2.discovery.refine import build_refiner
    from unsamv2.discovery.shard import discover_shard, read_image_list, shard_slice, write_manifest

    cfg = DiscoveryConfig.from_dict(json.loads(args.settings) if args.settings else {})
    items = shard_slice(read_image_list(Path(args.images)), args.shard, args.shard_size)
    backbone = build_backbone(args.backbone, weights=args.weights, device=cfg.device)
    refiner = build_refiner(cfg.refine, device=cfg.device)
    results = discover_shard(items, Path(args.out_dir), cfg, backbone, refiner=refiner)
    write_manifest(Path(args.manifest), results)
    failed = [r for r in results if r.status == "error"]
    log.info("shard %d: %d images, %d failed", args.shard, len(results), len(failed))
    for r in failed:
        log.error("FAILED %s: %s", r.file_name, r.error)
    if results and len(failed) == len(results):
        log.error("every image of the shard failed; see the errors above")
        return 1
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from unsamv2.discovery.scoring import score_file
    from unsamv2.discovery.shard import output_name, read_manifest, write_manifest

    rows = read_manifest(Path(args.manifest))
    out_dir = Path(args.out_dir)
    for r in rows:
        if r.status == "error":
            continue
        name = output_name(Path(r.file_name))
        r.n_masks = score_file(Path(args.raw_dir) / name, out_dir / name, args.formula)
    write_manifest(Path(args.out_manifest), rows)
    return 0


def cmd_pseudo_label_recall(args: argparse.Namespace) -> int:
    from unsamv2.report.recall import write_recall_csv

    for row in write_recall_csv(args.labels_dir, args.annotations, args.out):
        log.info("%s: %d regions, mean best IoU %.1f %%, found at IoU >= 0.5: %.1f %%", row["level"],
                 row["n_regions"], row["mean_best_iou"], row["found_at_iou50"])
    return 0


def cmd_report_pseudo_labels(args: argparse.Namespace) -> int:
    from unsamv2.discovery.shard import output_name, read_manifest
    from unsamv2.report.pseudo_labels import write_report

    manifests = [Path(m) for m in args.manifests]
    files = [
        Path(args.labels_dir) / output_name(Path(r.file_name))
        for m in manifests
        for r in read_manifest(m)
        if r.status != "error"
    ]
    summary = write_report(files, manifests, Path(args.out_dir), bins=args.bins, run=args.run)
    if args.images:
        from unsamv2.datasets.unlabeled import read_image_list
        from unsamv2.report.pseudo_labels import write_examples

        paths = {p.name: p for _, p in read_image_list(Path(args.images))}
        write_examples(files, paths, Path(args.out_dir) / "examples.png")
    log.info("report: %s", summary)
    return 0


# --------------------------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unsamv2", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo-images", help="copy scikit-image's bundled photos (the offline demo set)")
    p.add_argument("out_dir")
    p.set_defaults(func=cmd_demo_images)

    p = sub.add_parser("select-images", help="write the sorted image list (images.txt) a run processes")
    p.add_argument("--folder", required=True)
    p.add_argument("--id-list", default=None, help="optional file of image ids (file stems), one per line")
    p.add_argument("--max-images", type=int, required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_select_images)

    p = sub.add_parser("fetch-sa1b", help="download one SA-1B tar listed in the user's links file")
    p.add_argument("--links-file", required=True)
    p.add_argument("--tar", required=True)
    p.add_argument("--dest-dir", required=True)
    p.set_defaults(func=cmd_fetch_sa1b)

    p = sub.add_parser("extract-images", help="extract the JPEGs of an SA-1B tar")
    p.add_argument("tar")
    p.add_argument("out_dir")
    p.add_argument("--done", required=True, help="file listing the extracted images, written last")
    p.set_defaults(func=cmd_extract_images)

    p = sub.add_parser("download", help="resumable, verified download of one URL")
    p.add_argument("url")
    p.add_argument("dest")
    p.add_argument("--sha256", default=None)
    p.add_argument("--size", type=int, default=None)
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("download-backbone", help="fetch a feature backbone's transformers files")
    p.add_argument("name")
    p.add_argument("dest_dir")
    p.set_defaults(func=cmd_download_backbone)

    p = sub.add_parser("download-sam2", help="fetch a stock SAM-2.1 checkpoint")
    p.add_argument("size", choices=["tiny", "small", "base_plus", "large"])
    p.add_argument("dest")
    p.set_defaults(func=cmd_download_sam21)

    p = sub.add_parser("prepare-dataset", help="download/extract (or check) an evaluation benchmark")
    p.add_argument("name")
    p.add_argument("root")
    p.add_argument("--done", required=True, help="marker file written once the dataset is in place")
    p.set_defaults(func=cmd_prepare_dataset)

    p = sub.add_parser("discover", help="Stage 1: divide-and-conquer mask discovery on one shard of images")
    p.add_argument("--images", required=True, help="images.txt from select-images")
    p.add_argument("--shard", type=int, required=True)
    p.add_argument("--shard-size", type=int, required=True)
    p.add_argument("--backbone", required=True, help="dinov3_vitb16 | dinov2_vitb14 | offline")
    p.add_argument("--weights", default=None, help="local transformers directory or hub id")
    p.add_argument("--settings", default=None, help="JSON object of discovery settings (config key 'discovery')")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--manifest", required=True)
    p.set_defaults(func=cmd_discover)

    p = sub.add_parser("score", help="Stage 1: fill the granularity of one shard's pseudo-labels")
    p.add_argument("--manifest", required=True)
    p.add_argument("--raw-dir", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--out-manifest", required=True)
    p.add_argument("--formula", choices=["code", "paper"], default="code")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("report-pseudo-labels", help="statistics and granularity histogram of pseudo-labels")
    p.add_argument("--labels-dir", required=True)
    p.add_argument("--manifests", nargs="+", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--bins", type=int, default=9)
    p.add_argument("--run", default="")
    p.add_argument("--images", default=None, help="images.txt; adds examples.png (masks coloured by granularity)")
    p.set_defaults(func=cmd_report_pseudo_labels)

    p = sub.add_parser("pseudo-label-recall",
                       help="score pseudo-labels against known ground truth per level (synthetic scenes)")
    p.add_argument("--labels-dir", required=True, help="pseudo-label JSONs")
    p.add_argument("--annotations", required=True, help="ground-truth JSONs of the same names (with 'level')")
    p.add_argument("--out", required=True, help="CSV: level, n_regions, mean_best_iou, found_at_iou50 (percent)")
    p.set_defaults(func=cmd_pseudo_label_recall)

    # Commands of the model and evaluation stages register themselves when their modules are present.
    stage_modules = ("unsamv2.model.cli_commands", "unsamv2.evaluate.cli_commands", "unsamv2.train.cli_commands")
    for module in stage_modules:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        mod.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, PermissionError, ValueError, KeyError) as exc:
        # Expected user errors (missing file, bad config): one clear line, no traceback.
        log.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
