"""Run discovery over one shard of the image list: resumable, atomic per image, continues past bad images.

A shard is a contiguous slice of the sorted image list (`images.txt`, one `<image_id>\t<path>` per line). Each
image's result is written atomically to `<out_dir>/<stem>.json`, so a killed job resumes where it stopped and a
half-written file can never be mistaken for a result. The shard's manifest (a TSV, the rule's declared output)
lists every image with its status; a failed image is listed with its error and the others still finish.
"""
from __future__ import annotations

import csv
import io
import logging
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
from tqdm import tqdm

from unsamv2.datasets.unlabeled import read_image_list
from unsamv2.discovery.config import DiscoveryConfig
from unsamv2.discovery.features import FeatureBackbone
from unsamv2.discovery.ground_truth import (
    ground_truth_annotations,
    ground_truth_path,
    load_ground_truth,
    require_ground_truth,
    union_proposals,
)
from unsamv2.discovery.pipeline import (
    ImageResult,
    RawAnnotation,
    Refiner,
    discover_masks,
    divide_maskcut,
    load_external_proposals,
    to_sa1b_json,
)
from unsamv2.io.atomic import atomic_write_json, atomic_write_text
from unsamv2.io.disk_space import DISCOVERY_BYTES_PER_IMAGE, ensure_free_space
from unsamv2.io.images import load_image_rgb
from unsamv2.io.pseudo_labels import annotation_count

log = logging.getLogger(__name__)


def shard_slice(items: Sequence, shard: int, shard_size: int) -> Sequence:
    if shard < 0 or shard_size < 1:
        raise ValueError(f"invalid shard {shard} / shard_size {shard_size}")
    return items[shard * shard_size : (shard + 1) * shard_size]


def write_manifest(path: Path, rows: Sequence[ImageResult]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[f.name for f in fields(ImageResult)], delimiter="\t")
    writer.writeheader()
    for r in rows:
        writer.writerow(asdict(r))
    atomic_write_text(path, buf.getvalue())


def read_manifest(path: Path) -> list[ImageResult]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return [
        ImageResult(int(r["image_id"]), r["file_name"], r["status"], int(r["n_masks"]), float(r["seconds"]),
                    r.get("error") or "")
        for r in rows
    ]


def output_name(image_path: Path) -> str:
    return f"{image_path.stem}.json"


def annotate_image(
    image: np.ndarray, path: Path, cfg: DiscoveryConfig, backbone: FeatureBackbone | None, refiner: Refiner | None
) -> list[RawAnnotation]:
    """The raw annotations of one image by ``cfg.divide``; ``backbone`` may be None only for ``sa1b_gt``."""
    h, w = image.shape[:2]
    # The ground truth is read first: a missing JSON fails the image before any feature is computed.
    gt = load_ground_truth(ground_truth_path(path, cfg.ground_truth_dir), h, w) if cfg.needs_ground_truth else None
    if cfg.divide == "sa1b_gt":
        assert gt is not None
        return ground_truth_annotations(gt, cfg)
    assert backbone is not None, f"discovery.divide '{cfg.divide}' needs a feature backbone"
    proposals = None
    if cfg.divide == "external":
        assert cfg.proposals_dir is not None
        proposals = load_external_proposals(Path(cfg.proposals_dir) / output_name(path), h, w)
    elif cfg.divide == "maskcut+sa1b_gt":
        assert gt is not None
        proposals = union_proposals(divide_maskcut(image, backbone, cfg), gt, cfg)
    return discover_masks(image, backbone, cfg, proposals=proposals, refiner=refiner)


def discover_shard(
    items: Sequence[tuple[int, Path]],
    out_dir: Path,
    cfg: DiscoveryConfig,
    backbone: FeatureBackbone | None,
    refiner: Refiner | None = None,
    progress: bool = True,
) -> list[ImageResult]:
    """Discover masks for every image in `items`; never raises for a bad image (it is reported instead).

    Raises only when a ground-truth ``divide`` finds no annotation JSON for any image still to do.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    require_ground_truth([p for _, p in items if not (out_dir / output_name(p)).exists()], cfg)
    results: list[ImageResult] = []
    for image_id, path in tqdm(items, desc="discover", unit="img", disable=not progress):
        target = out_dir / output_name(path)
        if target.exists():
            # Written atomically, so an existing file is a finished result: resume without recomputing.
            n_done = annotation_count(target)
            results.append(ImageResult(image_id, path.name, "done_before", n_done, 0.0))
            continue
        t0 = time.perf_counter()
        try:
            image = load_image_rgb(path)
            anns = annotate_image(image, path, cfg, backbone, refiner)
            atomic_write_json(target, to_sa1b_json(anns, image_id, path.name, image.shape[:2]))
            results.append(ImageResult(image_id, path.name, "ok", len(anns), time.perf_counter() - t0))
            log.info("%s: %d masks in %.2f s", path, len(anns), time.perf_counter() - t0)
        except Exception as exc:  # noqa: BLE001 — one bad image must not stop the batch; it is listed instead
            msg = f"{type(exc).__name__}: {exc}"
            log.error("%s failed: %s\n%s", path, msg, traceback.format_exc())
            results.append(ImageResult(image_id, path.name, "error", 0, time.perf_counter() - t0, msg))
    return results


def run_shard(
    image_list: Path,
    shard: int,
    shard_size: int,
    out_dir: Path,
    manifest: Path,
    cfg: DiscoveryConfig,
    backbone_name: str,
    weights: str | None = None,
    progress: bool = True,
) -> list[ImageResult]:
    """``unsamv2 discover``: discover one shard of ``image_list`` into ``out_dir`` and write its manifest.

    Bad images are listed in the manifest with their error; the caller decides what an all-failed shard means.
    """
    from unsamv2.discovery.features import build_backbone
    from unsamv2.discovery.refine import build_refiner

    items = shard_slice(read_image_list(image_list), shard, shard_size)
    ensure_free_space(out_dir, DISCOVERY_BYTES_PER_IMAGE * len(items),
                      f"discovery shard {shard} ({len(items)} images)")
    # Before the backbone loads (minutes for DINOv3): without any annotation JSON every image would fail.
    require_ground_truth([p for _, p in items if not (out_dir / output_name(p)).exists()], cfg)
    backbone: FeatureBackbone | None = None
    refiner: Refiner | None = None
    if cfg.uses_backbone:
        backbone = build_backbone(backbone_name, weights=weights, device=cfg.device)
        refiner = build_refiner(cfg.refine, device=cfg.device, crf=cfg.crf_params())
    results = discover_shard(items, out_dir, cfg, backbone, refiner=refiner, progress=progress)
    write_manifest(manifest, results)
    return results
