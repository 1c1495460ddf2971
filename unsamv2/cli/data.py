"""Data commands: unlabeled images, downloads, evaluation benchmarks, synthetic scenes."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from unsamv2.core.constants import SAM2_SIZES

log = logging.getLogger("unsamv2")


def cmd_demo_images(args: argparse.Namespace) -> int:
    from unsamv2.datasets.unlabeled import export_demo_photos

    paths = export_demo_photos(args.out_dir)
    log.info("wrote %d demo photos to %s", len(paths), args.out_dir)
    return 0


def cmd_select_images(args: argparse.Namespace) -> int:
    from unsamv2.datasets.unlabeled import select_images, write_image_list

    items = select_images(args.images, args.max_images, args.id_list)
    if len(items) < args.max_images:
        log.warning("only %d images available in %s (images.max_images = %d)", len(items), args.images,
                    args.max_images)
    write_image_list(items, args.out)
    log.info("selected %d images -> %s", len(items), args.out)
    return 0


def cmd_fetch_sa1b(args: argparse.Namespace) -> int:
    from unsamv2.datasets.unlabeled import fetch_sa1b_tar

    fetch_sa1b_tar(args.links_file, args.tar, args.out_dir)
    return 0


def cmd_extract_images(args: argparse.Namespace) -> int:
    from unsamv2.datasets.unlabeled import extract_images
    from unsamv2.io.atomic import atomic_write_text

    paths = extract_images(args.tar, args.out_dir)
    atomic_write_text(args.out, "".join(f"{p.name}\n" for p in paths))
    log.info("extracted %d images from %s", len(paths), args.tar)
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from unsamv2.download import download_file

    download_file(args.url, args.out, sha256=args.sha256, size=args.size_bytes, progress=not args.quiet)
    return 0


def cmd_download_backbone(args: argparse.Namespace) -> int:
    from unsamv2.resources import download_backbone

    download_backbone(args.name, args.out_dir)
    return 0


def cmd_download_sam2(args: argparse.Namespace) -> int:
    from unsamv2.resources import download_sam21

    download_sam21(args.model_size, args.out)
    return 0


def cmd_prepare_dataset(args: argparse.Namespace) -> int:
    from unsamv2.datasets.registry import prepare_dataset
    from unsamv2.io.atomic import atomic_write_text

    root = prepare_dataset(args.name, args.out_dir)
    atomic_write_text(args.out, f"{args.name}\t{root}\n")
    return 0


def cmd_synthetic(args: argparse.Namespace) -> int:
    from unsamv2.datasets.synthetic_scenes import DEFAULT_DEPTH, write_synthetic_dataset

    depth = DEFAULT_DEPTH if args.depth is None else args.depth
    write_synthetic_dataset(args.out_dir, args.n_images, seed=args.seed,
                            image_size=(args.image_size, args.image_size), min_area=args.min_area, depth=depth)
    log.info("wrote %d synthetic scenes of depth %d to %s", args.n_images, depth, args.out_dir)
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("demo-images", parents=[common], help="copy scikit-image's bundled photos (the demo set)")
    p.add_argument("--out-dir", type=Path, required=True)
    p.set_defaults(func=cmd_demo_images)

    p = sub.add_parser("select-images", parents=[common],
                       help="write the sorted image list (images.txt) a run processes")
    p.add_argument("--images", type=Path, required=True, help="folder of images")
    p.add_argument("--id-list", type=Path, default=None, help="optional file of image ids (file stems), one per line")
    p.add_argument("--max-images", type=int, required=True)
    p.add_argument("--out", type=Path, required=True, help="image list (id and path per line)")
    p.set_defaults(func=cmd_select_images)

    p = sub.add_parser("fetch-sa1b", parents=[common], help="download one SA-1B tar listed in the user's links file")
    p.add_argument("--links-file", type=Path, required=True)
    p.add_argument("--tar", required=True, help="tar file name, e.g. sa_000023.tar")
    p.add_argument("--out-dir", type=Path, required=True)
    p.set_defaults(func=cmd_fetch_sa1b)

    p = sub.add_parser("extract-images", parents=[common],
                       help="extract the JPEGs of an SA-1B tar, each with its annotation JSON beside it")
    p.add_argument("tar", type=Path)
    p.add_argument("--out-dir", type=Path, required=True, help="folder for the images")
    p.add_argument("--out", type=Path, required=True, help="file listing the extracted images, written last")
    p.set_defaults(func=cmd_extract_images)

    p = sub.add_parser("download", parents=[common], help="resumable, verified download of one URL")
    p.add_argument("url")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--sha256", default=None)
    p.add_argument("--size-bytes", type=int, default=None, help="expected size of the file")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("download-backbone", parents=[common], help="fetch a feature backbone's transformers files")
    p.add_argument("name", help="dinov3_vitb16 or dinov2_vitb14")
    p.add_argument("--out-dir", type=Path, required=True)
    p.set_defaults(func=cmd_download_backbone)

    p = sub.add_parser("download-sam2", parents=[common], help="fetch a stock SAM-2.1 checkpoint")
    p.add_argument("--model-size", choices=SAM2_SIZES, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=cmd_download_sam2)

    p = sub.add_parser("prepare-dataset", parents=[common],
                       help="download/extract (or check) an evaluation benchmark")
    p.add_argument("name")
    p.add_argument("--out-dir", type=Path, required=True, help="the benchmark's folder")
    p.add_argument("--out", type=Path, required=True, help="marker file written once the dataset is in place")
    p.set_defaults(func=cmd_prepare_dataset)

    p = sub.add_parser("synthetic", parents=[common],
                       help="write synthetic hierarchical scenes (images/, annotations/, gt_coco.json)",
                       description="Synthetic scenes with exact object / part / sub-part ground truth (the "
                       "offline demo's training data and held-out benchmark).")
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--n-images", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=256, help="side of the square scenes in pixels")
    p.add_argument("--min-area", type=int, default=20, help="drop regions with fewer visible pixels")
    p.add_argument("--depth", type=int, default=None,
                   help="levels of the hierarchy (default 3: object, part, sub-part; 4 and 5 add inner regions)")
    p.set_defaults(func=cmd_synthetic)
