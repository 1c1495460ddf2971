"""Whole-image evaluation jobs: generate masks for one shard of a benchmark's images, then merge and score.

A benchmark is a class-agnostic COCO ground truth ``gt.json`` (:mod:`unsamv2.datasets.whole_image`) whose
images' ``file_name`` are relative to the folder of ``gt.json``. The images are split into shards of
``shard_size`` in increasing image id (after ``limit``); :func:`generate_shard` writes one JSON per image
(``<shard_dir>/<image_id>.json``, the COCO results of that image) and a shard manifest last, so a finished shard is
never recomputed and a killed one resumes at the first image without a file. An image that cannot be read or
segmented is listed in the manifest's failures and the shard goes on.

The models (:func:`build_generator`):

* ``unsamv2`` — :class:`unsamv2.model.automatic.UnSAMv2AutomaticMaskGenerator`, masks at every g of
  ``granularities`` from one image encoding, pooled with no cross-g NMS (official settings: 64×64 points, M2M,
  per-g thresholds); score = predicted IoU.
* ``sam2`` — sam2's own ``SAM2AutomaticMaskGenerator`` with the same weights and grid, its three multimask
  outputs per point (and M2M, mask threshold −1, stability offset 0.7, box NMS 0.7 as the UnSAMv2 script).

:func:`merge_and_score` concatenates the shards (in image order) and calls
:func:`unsamv2.evaluate.whole_image.score_whole_image`.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from unsamv2.core.constants import EVAL_MASK_THRESHOLD
from unsamv2.evaluate.whole_image_config import WholeImageConfig
from unsamv2.io.atomic import atomic_write_json

__all__ = [
    "MaskGenerator",
    "build_generator",
    "evaluate_whole_image_to_dir",
    "generate_shard",
    "image_shard",
    "merge_and_score",
    "records_to_results",
]

log = logging.getLogger(__name__)

_MANIFEST_VERSION = 1


class MaskGenerator(Protocol):
    """What a shard needs from a model: all masks of one RGB image as records (``segmentation`` COCO RLE,
    ``predicted_iou``, and ``granularity`` — ``None`` for a model without granularity input)."""

    granularities: tuple[float, ...] | None

    def generate(self, image: np.ndarray) -> list[dict[str, Any]]: ...


class _UnSAMv2Pooled:
    def __init__(self, generator: Any, granularities: Sequence[float]) -> None:
        self.generator = generator
        self.granularities: tuple[float, ...] | None = tuple(granularities)

    def generate(self, image: np.ndarray) -> list[dict[str, Any]]:
        return self.generator.generate_pooled(image, self.granularities)


class _Sam2Multimask:
    granularities: tuple[float, ...] | None = None

    def __init__(self, generator: Any) -> None:
        self.generator = generator

    def generate(self, image: np.ndarray) -> list[dict[str, Any]]:
        return [{**r, "granularity": None} for r in self.generator.generate(image)]


class _PostProcessed:
    """Every mask refined by ``refine(image, mask) -> mask | None`` (None drops it); scores unchanged."""

    def __init__(self, inner: MaskGenerator, refine: Callable[[np.ndarray, np.ndarray], np.ndarray | None]) -> None:
        self.inner = inner
        self.refine = refine
        self.granularities = inner.granularities

    def generate(self, image: np.ndarray) -> list[dict[str, Any]]:
        from unsamv2.io.masks import decode_rle, encode_rle

        out = []
        for record in self.inner.generate(image):
            refined = self.refine(image, decode_rle(record["segmentation"]))
            if refined is not None and refined.any():
                out.append({**record, "segmentation": encode_rle(refined)})
        return out


def cascadepsp_refiner(device: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray | None]:
    """CascadePSP on the whole image at L = 900 (``segmentation-refinement``; downloads its weights on first use)."""
    try:
        import segmentation_refinement
    except ImportError as exc:
        raise ValueError("whole_image.postprocess is 'cascadepsp' but the segmentation-refinement package is not "
                         "installed: pip install 'unsamv2[refine]'") from exc
    refiner = segmentation_refinement.Refiner(device=device)

    def refine(image: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
        return np.asarray(refiner.refine(image, mask.astype(np.uint8) * 255, fast=False, L=900)) > 128

    return refine


def build_generator(model_kind: str, checkpoint: str | Path | None, size: str, settings: WholeImageConfig,
                    device: str = "auto", image_size: int = 1024) -> MaskGenerator:
    """The mask generator of a model kind (``unsamv2`` or ``sam2``) with the settings' grid and filters.

    ``checkpoint=None`` gives random weights (tests and benchmarks only; logged).
    """
    from unsamv2.core.device import resolve_device

    device = resolve_device(device or "auto")
    if checkpoint is None:
        log.warning("no checkpoint: %s runs with RANDOM weights; its numbers mean nothing", model_kind)
    if model_kind == "unsamv2":
        from unsamv2.model.automatic import UnSAMv2AutomaticMaskGenerator
        from unsamv2.model.build import build_unsamv2

        model = build_unsamv2(size, checkpoint, device=device, image_size=image_size, merge_lora_weights=True)
        generator: MaskGenerator = _UnSAMv2Pooled(UnSAMv2AutomaticMaskGenerator(
            model, points_per_side=settings.points_per_side, points_per_batch=settings.points_per_batch,
            pred_iou_thresh=settings.pred_iou_thresh, stability_score_thresh=settings.stability_score_thresh,
        ), settings.granularities)
    elif model_kind == "sam2":
        from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

        from unsamv2.model.build import build_sam2_model, sam2_image_predictor

        model = build_sam2_model(size, checkpoint, image_size=image_size, device=device)
        amg = SAM2AutomaticMaskGenerator(
            model, points_per_side=settings.points_per_side, points_per_batch=settings.points_per_batch,
            pred_iou_thresh=settings.sam2_pred_iou_thresh, stability_score_thresh=settings.sam2_stability_score_thresh,
            stability_score_offset=0.7, mask_threshold=EVAL_MASK_THRESHOLD, box_nms_thresh=0.7, crop_n_layers=0,
            min_mask_region_area=0, output_mode="coco_rle", use_m2m=True, multimask_output=True,
        )
        # sam2's predictor hard-codes the 1024-px feature sizes; the same predictor sized for the model's input
        # (identical at 1024 px) lets the demo's small models run too.
        amg.predictor = sam2_image_predictor(model, EVAL_MASK_THRESHOLD)
        generator = _Sam2Multimask(amg)
    else:
        raise ValueError(f"unknown model {model_kind!r}; expected unsamv2 or sam2")
    if settings.postprocess == "cascadepsp":
        generator = _PostProcessed(generator, cascadepsp_refiner(device))
    return generator


def records_to_results(image_id: Any, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Generator records → COCO results of one image (score = predicted IoU; ``granularity`` kept when set)."""
    out = []
    for r in records:
        det: dict[str, Any] = {"image_id": image_id, "category_id": 1, "segmentation": r["segmentation"],
                               "score": float(r["predicted_iou"])}
        if r.get("granularity") is not None:
            det["granularity"] = float(r["granularity"])
        out.append(det)
    return out


def _gt_images(gt_json: Path) -> list[dict[str, Any]]:
    if not gt_json.is_file():
        raise FileNotFoundError(f"ground-truth JSON {gt_json} does not exist (prepare the benchmark first)")
    images = json.loads(gt_json.read_text()).get("images")
    if not isinstance(images, list):
        raise ValueError(f"{gt_json}: not a COCO ground truth (no 'images' list)")  # noqa: TRY004 - a bad user file is a ValueError (CLI user error)
    return sorted(images, key=lambda im: (str(type(im["id"])), im["id"]))


def image_shard(gt_json: str | Path, shard: int, shard_size: int, limit: int | None = None) -> list[dict[str, Any]]:
    """The GT image records of shard ``shard`` (images sorted by id, first ``limit`` of them)."""
    images = _gt_images(Path(gt_json))
    if limit is not None:
        images = images[:limit]
    if shard < 0 or shard_size < 1:
        raise ValueError(f"shard must be >= 0 and shard_size >= 1, got {shard} and {shard_size}")
    return images[shard * shard_size : (shard + 1) * shard_size]


def generate_shard(
    *,
    gt_json: str | Path,
    generator: MaskGenerator,
    shard: int,
    settings: WholeImageConfig,
    shard_dir: str | Path,
    out: str | Path,
    identity: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> int:
    """Masks of every image of one shard → ``<shard_dir>/<image_id>.json``; then the manifest ``out``.

    Per-image files of an earlier run are reused only if that run had the same settings and ``identity`` (the
    model: kind, checkpoint, size…): ``<shard_dir>/fingerprint_<shard>.json`` records them, and a mismatch
    deletes the shard's per-image files first. Returns 1 if every image of a non-empty shard failed, else 0.
    """
    from tqdm.auto import tqdm

    from unsamv2.io.images import load_image_rgb

    gt_path = Path(gt_json)
    images = image_shard(gt_path, shard, settings.shard_size, settings.limit)
    shard_dir = Path(shard_dir)
    shard_dir.mkdir(parents=True, exist_ok=True)
    fingerprint = {"settings": settings.to_dict(), "model": dict(identity or {}), "gt": str(gt_path)}
    fingerprint_path = shard_dir / f"fingerprint_{shard}.json"
    if not fingerprint_path.exists() or json.loads(fingerprint_path.read_text()) != fingerprint:
        for info in images:
            (shard_dir / f"{info['id']}.json").unlink(missing_ok=True)
        atomic_write_json(fingerprint_path, fingerprint, indent=1)
    failures: list[dict[str, Any]] = []
    done: list[Any] = []
    seconds = 0.0
    for info in tqdm(images, desc=f"whole-image shard {shard}", unit="img", disable=not progress):
        target = shard_dir / f"{info['id']}.json"
        if target.exists():  # finished by an earlier, interrupted run
            done.append(info["id"])
            continue
        path = gt_path.parent / info["file_name"]
        try:
            image = load_image_rgb(path)
            t0 = time.perf_counter()
            records = generator.generate(image)
            seconds += time.perf_counter() - t0
        except (OSError, ValueError) as exc:
            log.error("image %s (%s) failed: %s", info["id"], path, exc)
            failures.append({"image_id": info["id"], "file_name": str(path), "error": str(exc)})
            continue
        atomic_write_json(target, records_to_results(info["id"], records))
        done.append(info["id"])
    atomic_write_json(out, {"version": _MANIFEST_VERSION, "shard": shard, "images": done, "failures": failures,
                            "generation_s": round(seconds, 3)}, indent=1)
    log.info("shard %d: %d images, %d failed, %.1f s generating", shard, len(done), len(failures), seconds)
    return 1 if images and len(failures) == len(images) else 0


def merge_and_score(
    *,
    gt_json: str | Path,
    manifests: Sequence[str | Path],
    shard_dir: str | Path,
    out_dir: str | Path,
    model: str,
    dataset: str,
    settings: WholeImageConfig,
    granularities: Sequence[float] | None,
    expected_images: int | None = None,
    run_info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Merge the shards' per-image results (image order) and score them; returns the summary row.

    The manifests must cover every image of the benchmark (after ``limit``) exactly once — a shard plan made for
    fewer images than ``gt.json`` holds is an error, not a silently smaller benchmark. ``expected_images``: the
    number the plan was made for (the workflow's), checked too when given.
    """
    from unsamv2.evaluate.whole_image import score_whole_image

    detections: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    covered: list[Any] = []
    for manifest_path in manifests:
        manifest = json.loads(Path(manifest_path).read_text())
        failures.extend(manifest["failures"])
        covered.extend(f["image_id"] for f in manifest["failures"])
        for image_id in manifest["images"]:
            detections.extend(json.loads((Path(shard_dir) / f"{image_id}.json").read_text()))
            covered.append(image_id)
    n_images = len(covered) - len(failures)
    images = _gt_images(Path(gt_json))
    wanted = [im["id"] for im in (images if settings.limit is None else images[: settings.limit])]
    if sorted(covered, key=str) != sorted(wanted, key=str):
        raise ValueError(f"the shard manifests cover {len(covered)} images, but {gt_json} has {len(wanted)} to "
                         f"evaluate (limit {settings.limit}): the shard plan does not match the ground truth")
    if expected_images is not None and expected_images != len(wanted):
        raise ValueError(f"{gt_json} has {len(wanted)} images to evaluate, the workflow planned shards for "
                         f"{expected_images}: set the benchmark's image count (or whole_image.limit) to match")
    if failures:
        log.error("%d image(s) failed and count as misses (image_ids=%s): %s", len(failures), settings.image_ids,
                  [f["image_id"] for f in failures][:10])
    return score_whole_image(
        gt_json=gt_json, detections=detections, out_dir=out_dir, model=model, dataset=dataset,
        max_dets=settings.max_dets, image_ids=settings.image_ids, granularities=granularities, failures=failures,
        limit=settings.limit,
        run_info={**dict(run_info or {}), "settings": settings.to_dict(), "n_images_generated": n_images},
    )


def evaluate_whole_image_to_dir(
    *,
    gt_json: str | Path,
    generator: MaskGenerator,
    out_dir: str | Path,
    model: str,
    dataset: str,
    settings: WholeImageConfig,
    granularities: Sequence[float] | None,
    run_info: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> int:
    """Every shard in this process (per-image files under ``out_dir/shards``, resumable), then the score.

    Returns 1 if every image failed, else 0.
    """
    out = Path(out_dir)
    images = _gt_images(Path(gt_json))
    n_images = len(images) if settings.limit is None else min(len(images), settings.limit)
    manifests, status = [], []
    for shard in range(settings.n_shards(n_images)):
        manifest = out / "shards" / f"manifest_{shard}.json"
        status.append(generate_shard(gt_json=gt_json, generator=generator, shard=shard, settings=settings,
                                     shard_dir=out / "shards", out=manifest, identity=run_info, progress=progress))
        manifests.append(manifest)
    row = merge_and_score(gt_json=gt_json, manifests=manifests, shard_dir=out / "shards", out_dir=out, model=model,
                          dataset=dataset, settings=settings, granularities=granularities, run_info=run_info)
    log.info("%s on %s: AR@1000 %.2f", model, dataset, row["ar1000"])
    return 1 if status and all(status) else 0
