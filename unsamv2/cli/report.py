"""Report commands: this run's numbers beside the paper's (tables + comparison figures) and granularity strips of
the run's own model on a fixed sample of the run's images."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("unsamv2")


def _image_paths(image_list: Path) -> list[Path]:
    """``images.txt`` rows are ``<id>\\t<path>``."""
    rows = [line.split("\t") for line in image_list.read_text().splitlines() if line.strip()]
    bad = [i + 1 for i, row in enumerate(rows) if len(row) != 2]
    if bad:
        raise ValueError(f"{image_list}: line(s) {bad[:5]} are not '<id><TAB><path>'")
    return [Path(row[1]) for row in rows]


def cmd_report_tables(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from unsamv2.report.figures import plot_ar1000_vs_paper, plot_first_click_iou
    from unsamv2.report.paper_comparison import RunInfo, write_comparison

    info = RunInfo.from_json(args.run_info)
    if args.image_list is not None:
        info = replace(info, n_train_images=len(_image_paths(args.image_list)))
    rows = write_comparison(args.run_dir, info, args.out_dir)
    missing = sum(1 for r in rows if r.ours is None)
    log.info("wrote %d comparison rows (%d without a value of this run) to %s", len(rows), missing, args.out_dir)
    if args.first_click_figure is not None:
        plot_first_click_iou(rows, args.first_click_figure,
                             f"First-click IoU, run '{info.run}'" + ("" if info.comparable else " (not comparable to the paper)"))
    if args.ar_figure is not None:
        plot_ar1000_vs_paper(rows, args.ar_figure)
    return 0


def cmd_report_strips(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from unsamv2.io.atomic import atomic_output
    from unsamv2.io.images import load_image_rgb
    from unsamv2.model.figures import granularity_strip
    from unsamv2.model.predictor import UnSAMv2ImagePredictor
    from unsamv2.model.run_on_files import load_model
    from unsamv2.report.strips import click_on_largest_instance

    images = _image_paths(args.image_list)[: args.n_images]
    model = load_model(args.checkpoint, args.model_size, args.device, args.image_size)
    predictor = UnSAMv2ImagePredictor(model)
    strips = []
    for path in images:
        labels = args.pseudo_labels / f"{path.stem}.json"
        point = click_on_largest_instance(labels)
        if point is None:
            log.warning("%s: no pseudo-label instance to click on; skipped", labels)
            continue
        strips.append(granularity_strip(predictor, load_image_rgb(path), point, tile_height=args.tile_height))
        log.info("%s: click at (x=%d, y=%d)", path.name, *point)
    if not strips:
        raise ValueError(f"none of the first {len(images)} images of {args.image_list} has a pseudo-label instance")
    width = max(s.shape[1] for s in strips)
    padded = [np.pad(s, ((0, 8), (0, width - s.shape[1]), (0, 0)), constant_values=255) for s in strips]
    with atomic_output(args.out) as tmp:
        Image.fromarray(np.concatenate(padded, axis=0)).save(tmp, format="PNG")
    return 0


def cmd_report_whole_image(args: argparse.Namespace) -> int:
    import numpy as np

    from unsamv2.core.constants import GRANULARITY_GRID
    from unsamv2.io.images import load_image_rgb
    from unsamv2.model.automatic import UnSAMv2AutomaticMaskGenerator
    from unsamv2.model.figures import render_mask_panels, save_rgb_png
    from unsamv2.model.run_on_files import load_model

    shown = sorted(set(args.granularity))
    off_grid = [g for g in shown if not any(abs(g - grid) < 1e-6 for grid in GRANULARITY_GRID)]
    if off_grid:
        raise ValueError(f"--granularity {off_grid}: the panels show granularities of the pooled grid "
                         f"{list(GRANULARITY_GRID)}")
    images = _image_paths(args.image_list)[: args.n_images]
    model = load_model(args.checkpoint, args.model_size, args.device, args.image_size)
    generator = UnSAMv2AutomaticMaskGenerator(model, points_per_side=args.points_per_side,
                                              output_mode="binary_mask")
    rows = []
    for path in images:
        image = load_image_rgb(path)
        # One encoding and one pass over the grid for all ten g; the panels split the pooled records by g.
        records = generator.generate_pooled(image, GRANULARITY_GRID)
        masks = [(float(r["granularity"]), np.asarray(r["segmentation"], dtype=bool)) for r in records]
        panels = [(f"g = {g:.1f}", [m for rg, m in masks if abs(rg - g) < 1e-6]) for g in shown]
        panels.append(("pooled", [m for _, m in masks]))
        rows.append(render_mask_panels(image, panels, tile_height=args.tile_height))
        log.info("%s: %d masks pooled over %d granularities", path.name, len(masks), len(GRANULARITY_GRID))
    width = max(r.shape[1] for r in rows)
    padded = [np.pad(r, ((0, 8), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    save_rgb_png(args.out, np.concatenate(padded, axis=0))
    return 0


def _add_model_and_images(p: argparse.ArgumentParser) -> None:
    """The model a figure shows, and the run's images it is drawn on."""
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--model-size", default=None)
    p.add_argument("--image-size", type=int, default=1024)
    p.add_argument("--device", default="auto")
    p.add_argument("--image-list", type=Path, required=True, help="images.txt of the run")


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("report-tables", parents=[common],
                       help="paper_comparison.csv and tables.md: this run's numbers beside the paper's")
    p.add_argument("--run-dir", type=Path, required=True, help="results/<run>")
    p.add_argument("--run-info", required=True,
                   help="JSON of unsamv2.report.paper_comparison.RunInfo (the workflow writes it)")
    p.add_argument("--image-list", type=Path, default=None, help="images.txt of the run (counts training images)")
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--first-click-figure", type=Path, default=None, help="PNG: first-click IoU per dataset")
    p.add_argument("--ar-figure", type=Path, default=None, help="PNG: AR@1000 per benchmark beside the paper")
    p.set_defaults(func=cmd_report_tables)

    p = sub.add_parser("report-strips", parents=[common],
                       help="granularity strips (g = 0.1 … 1.0) of a model on the first images of a run")
    _add_model_and_images(p)
    p.add_argument("--pseudo-labels", type=Path, required=True,
                   help="pseudo-label JSON folder: the click goes inside each image's largest instance")
    p.add_argument("--n-images", type=int, default=3)
    p.add_argument("--tile-height", type=int, default=160)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=cmd_report_strips)

    p = sub.add_parser("report-whole-image", parents=[common],
                       help="whole-image masks of a model at a few granularities and pooled, on a run's images")
    _add_model_and_images(p)
    p.add_argument("--n-images", type=int, default=2)
    p.add_argument("--granularity", type=float, nargs="+", default=[0.2, 0.5, 0.8])
    p.add_argument("--points-per-side", type=int, default=32)
    p.add_argument("--tile-height", type=int, default=200)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=cmd_report_whole_image)
