"""Whole-image segmentation scored as the paper's Table 3: class-agnostic AR@1000 (paper §4.2, UnSAM's evaluator).

The metric (UnSAM ``whole_image_segmentation/mask2former/evaluation/coco_evaluation.py``): pycocotools ``COCOeval``
on ``segm`` with ``useCats = 0`` and ``maxDets = [1, 100, 1000]``; AR@1000 is ``stats[8]`` (IoU 0.50:0.95, all
areas), AR@1000 small/medium/large ``stats[9..11]``, and AR@100 ``stats[7]``; reported in percent. Detections are
``{image_id, category_id, segmentation (RLE), score}`` with no ``bbox`` (detectron2 pops it for ``segm``, so the
area used for the small/medium/large split is the mask area).

Which images count (``image_ids``):

* ``"all"`` (the official behaviour): ``COCO.loadRes`` copies the ground truth's image list, so every GT image is
  scored and an image without any prediction is a miss;
* ``"predicted"``: only the ids present in the results — for runs that evaluated a subset (``limit``); the
  summary and ``run.json`` record which mode produced the numbers.

Files of one (model, dataset) job, written atomically (:func:`score_whole_image`):

* ``results.json`` — the COCO results list (RLE; plus ``granularity`` for UnSAMv2, ignored by pycocotools),
  at most ``max_dets`` masks per image, highest predicted IoU first;
* ``summary.csv`` — :data:`SUMMARY_COLUMNS` (AR in percent; ``image_ids`` says which images were scored);
* ``masks_per_image.csv`` — masks generated per image, per granularity, and kept after the top-``max_dets`` cut;
* ``ar_per_granularity.csv`` — AR@1000 of the masks of each granularity alone (the paper never shows it);
* ``failures.json``, ``run.json``.

:func:`average_table` builds ``table3.csv``: the per-dataset rows plus one ``average`` row per model, the plain mean
over the benchmarks as the paper's "Avg" column.

Importing this module does not import torch.
"""
from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from unsamv2.evaluate.summary import csv_text
from unsamv2.io.atomic import atomic_write_json, atomic_write_text

__all__ = [
    "AR_PER_GRANULARITY_COLUMNS",
    "AVERAGE_DATASET",
    "IMAGE_ID_MODES",
    "SUMMARY_COLUMNS",
    "average_recall",
    "average_table",
    "load_ground_truth",
    "read_summary_csv",
    "score_whole_image",
    "top_per_image",
    "write_summary_csv",
]

log = logging.getLogger(__name__)

ImageIds = Literal["all", "predicted"]
IMAGE_ID_MODES: tuple[str, ...] = ("all", "predicted")
#: Columns of ``summary.csv`` and ``table3.csv`` (the report reads them by these names); AR in percent.
SUMMARY_COLUMNS: tuple[str, ...] = (
    "model", "dataset", "ar1000", "ar1000_small", "ar1000_medium", "ar1000_large", "ar100", "n_images", "n_masks",
    "image_ids",
)
AR_PER_GRANULARITY_COLUMNS: tuple[str, ...] = ("model", "dataset", "granularity", "ar1000", "ar100", "n_masks")
AVERAGE_DATASET = "average"
_FLOAT_COLUMNS = ("ar1000", "ar1000_small", "ar1000_medium", "ar1000_large", "ar100")


# ------------------------------------------------------------------------------------------------ metric


def load_ground_truth(gt_json: str | Path | Mapping[str, Any]) -> Any:
    """A pycocotools ``COCO`` of a ground-truth file or dict (its printing silenced). ``iscrowd`` defaults to 0
    (LVIS annotations have none, and ``COCOeval`` needs it)."""
    from pycocotools.coco import COCO

    if isinstance(gt_json, Mapping):
        dataset = copy.deepcopy(dict(gt_json))
    else:
        path = Path(gt_json)
        if not path.is_file():
            raise FileNotFoundError(f"ground-truth JSON {path} does not exist")
        dataset = json.loads(path.read_text())
    for key in ("images", "annotations"):
        if key not in dataset:
            raise ValueError(f"ground truth {gt_json if not isinstance(gt_json, Mapping) else ''} has no {key!r}")
    for ann in dataset["annotations"]:
        ann.setdefault("iscrowd", 0)
    dataset.setdefault("categories", [{"id": 1, "name": "object"}])
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _load_results(results: str | Path | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(results, str | Path):
        path = Path(results)
        if not path.is_file():
            raise FileNotFoundError(f"results JSON {path} does not exist")
        loaded = json.loads(path.read_text())
        if not isinstance(loaded, list):
            raise ValueError(f"{path}: a COCO results file is a JSON list of detections")  # noqa: TRY004 - a bad user file is a ValueError (CLI user error)
        return loaded
    return [dict(r) for r in results]


def _nan_metrics(max_dets: int) -> dict[str, float]:
    keys = [f"ar{max_dets}", f"ar{max_dets}_small", f"ar{max_dets}_medium", f"ar{max_dets}_large", "ar100", "ar1"]
    return {k: math.nan for k in keys}


def average_recall(
    gt_json: str | Path | Mapping[str, Any] | Any,
    results: str | Path | Sequence[Mapping[str, Any]],
    max_dets: int = 1000,
    image_ids: ImageIds = "all",
) -> dict[str, Any]:
    """Class-agnostic average recall of mask detections, in percent (pycocotools ``COCOeval``, ``segm``).

    Args:
        gt_json: COCO ground truth (path, dict, or a ``COCO`` object from :func:`load_ground_truth`).
        results: COCO results (path or list of ``{image_id, segmentation, score, ...}``; a ``bbox`` key would
            make pycocotools use box areas, so it is dropped as detectron2 does).
        max_dets: the last entry of ``maxDets = [1, 100, max_dets]``.
        image_ids: ``"all"`` scores every GT image (no prediction = miss), ``"predicted"`` only the ids that
            occur in ``results``.

    Returns ``{"ar<max_dets>", "ar<max_dets>_small", "_medium", "_large", "ar100", "ar1", "n_images",
    "n_masks", "image_ids"}`` — ``ar1000`` etc. for the default. With ``image_ids="predicted"`` and no
    prediction at all the AR values are NaN (nothing was scored); so is an area range without GT masks
    (pycocotools' -1). Detections' ``category_id`` is ignored.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if image_ids not in IMAGE_ID_MODES:
        raise ValueError(f"image_ids must be one of {IMAGE_ID_MODES}, got {image_ids!r}")
    if max_dets < 100:
        raise ValueError(f"max_dets must be >= 100 (maxDets = [1, 100, max_dets]), got {max_dets}")
    coco_gt = gt_json if isinstance(gt_json, COCO) else load_ground_truth(gt_json)
    detections = _load_results(results)
    # With useCats = 0 pycocotools still collects detections per GT category id, so one outside the GT's
    # categories would be silently dropped: every detection gets the GT's first category (any would do).
    category = min(coco_gt.getCatIds(), default=1)
    for det in detections:
        det.pop("bbox", None)
        det["category_id"] = category
    gt_ids = set(coco_gt.getImgIds())
    unknown = sorted({d["image_id"] for d in detections} - gt_ids, key=str)
    if unknown:
        raise ValueError(f"results name {len(unknown)} image id(s) that are not in the ground truth, e.g. "
                         f"{unknown[:5]}")
    if image_ids == "predicted":
        ids = sorted({d["image_id"] for d in detections}, key=str)
        if not ids:
            return {**_nan_metrics(max_dets), "n_images": 0, "n_masks": 0, "image_ids": image_ids}
    else:
        ids = sorted(gt_ids, key=str)

    with contextlib.redirect_stdout(io.StringIO()):
        if detections:
            coco_dt = coco_gt.loadRes(detections)
        else:
            # pycocotools' loadRes cannot take an empty list; this is the object it would build: the GT images,
            # no detections.
            coco_dt = COCO()
            coco_dt.dataset = {"images": list(coco_gt.dataset["images"]), "annotations": [],
                               "categories": copy.deepcopy(coco_gt.dataset.get("categories", []))}
            coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, "segm")
        evaluator.params.useCats = 0
        evaluator.params.maxDets = [1, 100, max_dets]
        evaluator.params.imgIds = ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    # pycocotools reports -1 for an area range without any GT mask: not a recall, so NaN here.
    stats = [math.nan if float(s) == -1.0 else 100.0 * float(s) for s in evaluator.stats]
    scored = set(ids)
    n_masks = sum(1 for d in detections if d["image_id"] in scored)
    return {
        f"ar{max_dets}": stats[8],
        f"ar{max_dets}_small": stats[9],
        f"ar{max_dets}_medium": stats[10],
        f"ar{max_dets}_large": stats[11],
        "ar100": stats[7],
        "ar1": stats[6],
        "n_images": len(ids),
        "n_masks": n_masks,
        "image_ids": image_ids,
    }


def top_per_image(detections: Iterable[Mapping[str, Any]], max_dets: int) -> list[dict[str, Any]]:
    """At most ``max_dets`` detections per image, by decreasing score (a stable sort: ties keep their order)."""
    by_image: dict[Any, list[dict[str, Any]]] = {}
    for det in detections:
        by_image.setdefault(det["image_id"], []).append(dict(det))
    out: list[dict[str, Any]] = []
    for dets in by_image.values():
        out.extend(sorted(dets, key=lambda d: -float(d["score"]))[:max_dets])
    return out


# ------------------------------------------------------------------------------------------------ CSVs


def write_summary_csv(rows: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """Rows with :data:`SUMMARY_COLUMNS`, written atomically."""
    return atomic_write_text(path, csv_text(SUMMARY_COLUMNS, rows))


def read_summary_csv(path: str | Path) -> list[dict[str, Any]]:
    """A ``summary.csv`` (or ``table3.csv``) back as typed rows."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = set(SUMMARY_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: not a whole-image summary CSV, missing columns {sorted(missing)}")
        rows = []
        for raw in reader:
            row: dict[str, Any] = {c: raw[c] for c in ("model", "dataset", "image_ids")}
            row.update({c: math.nan if raw[c] == "" else float(raw[c]) for c in _FLOAT_COLUMNS})
            row.update({c: int(raw[c]) for c in ("n_images", "n_masks")})
            rows.append(row)
    return rows


def average_table(summaries: Sequence[str | Path], datasets: Sequence[str] | None, out: str | Path,
                  ) -> list[dict[str, Any]]:
    """Per-dataset summaries → ``table3.csv``: their rows, then per model the paper's average over the datasets.

    ``datasets`` restricts and orders the rows (``None`` = all). AR columns are plain means, ``n_images`` and
    ``n_masks`` sums; ``image_ids`` is the common mode, or ``mixed``. Returns the average rows.
    """
    rows = [row for path in summaries for row in read_summary_csv(path)]
    if datasets:
        order = {d.lower(): i for i, d in enumerate(datasets)}
        rows = sorted((r for r in rows if r["dataset"].lower() in order), key=lambda r: order[r["dataset"].lower()])
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["model"], []).append(row)
    averages = []
    for model, group in groups.items():
        names = [r["dataset"] for r in group]
        if len(set(names)) != len(names):
            raise ValueError(f"average_table: model {model} has several rows for one dataset: {names}")
        modes = {r["image_ids"] for r in group}
        averages.append({
            "model": model, "dataset": AVERAGE_DATASET,
            **{c: float(np.mean([r[c] for r in group])) for c in _FLOAT_COLUMNS},
            "n_images": sum(r["n_images"] for r in group), "n_masks": sum(r["n_masks"] for r in group),
            "image_ids": modes.pop() if len(modes) == 1 else "mixed",
        })
        log.info("%s: AR@1000 %.2f averaged over %d datasets", model, averages[-1]["ar1000"], len(group))
    write_summary_csv([*rows, *averages], out)
    return averages


# ------------------------------------------------------------------------------------------------ one job


def score_whole_image(
    *,
    gt_json: str | Path,
    detections: Sequence[Mapping[str, Any]],
    out_dir: str | Path,
    model: str,
    dataset: str,
    max_dets: int = 1000,
    image_ids: ImageIds = "all",
    granularities: Sequence[float] | None = None,
    failures: Sequence[Mapping[str, Any]] = (),
    limit: int | None = None,
    run_info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Score a job's merged detections and write its files (see the module docstring); returns the summary row.

    ``detections``: every mask generated for the dataset (COCO results dicts with ``score`` = predicted IoU and,
    for UnSAMv2, ``granularity``); they are cut to the top ``max_dets`` per image here. ``granularities``: the
    g values of the run (``None`` for a model without granularity input): one AR row per g. ``limit``: the
    benchmark is its first ``limit`` images by id (the ground truth is cut to them, so ``image_ids="all"`` still
    counts an image of that subset without masks as a miss).
    """
    out = Path(out_dir)
    gt = json.loads(Path(gt_json).read_text()) if limit is not None else gt_json
    if limit is not None:
        keep = {im["id"] for im in sorted(gt["images"], key=lambda im: (str(type(im["id"])), im["id"]))[:limit]}
        gt = {**gt, "images": [im for im in gt["images"] if im["id"] in keep],
              "annotations": [a for a in gt["annotations"] if a["image_id"] in keep]}
    coco_gt = load_ground_truth(gt)
    kept = top_per_image(detections, max_dets)
    atomic_write_json(out / "results.json", kept)
    metrics = average_recall(coco_gt, kept, max_dets=max_dets, image_ids=image_ids)
    row = {"model": model, "dataset": dataset, **{c: metrics[c.replace("1000", str(max_dets))]
                                                   for c in _FLOAT_COLUMNS},
           "n_images": metrics["n_images"], "n_masks": metrics["n_masks"], "image_ids": image_ids}
    write_summary_csv([row], out / "summary.csv")

    scored = set(coco_gt.getImgIds()) if image_ids == "all" else {d["image_id"] for d in kept}
    generated: dict[Any, list[Mapping[str, Any]]] = {i: [] for i in sorted(scored, key=str)}
    for det in detections:
        if det["image_id"] in generated:
            generated[det["image_id"]].append(det)
    kept_count: dict[Any, int] = {}
    for det in kept:
        kept_count[det["image_id"]] = kept_count.get(det["image_id"], 0) + 1
    gs = list(granularities or [])
    columns = ["image_id", "file_name", "n_generated", "n_kept", *[f"n_g{g:g}" for g in gs]]
    per_image = []
    for image_id, dets in generated.items():
        entry: dict[str, Any] = {"image_id": image_id, "file_name": coco_gt.imgs[image_id].get("file_name", ""),
                                 "n_generated": len(dets), "n_kept": kept_count.get(image_id, 0)}
        for g in gs:
            entry[f"n_g{g:g}"] = sum(1 for d in dets if d.get("granularity") == g)
        per_image.append(entry)
    atomic_write_text(out / "masks_per_image.csv", csv_text(columns, per_image))

    g_rows = []
    for g in gs:
        alone = top_per_image((d for d in detections if d.get("granularity") == g), max_dets)
        m = average_recall(coco_gt, alone, max_dets=max_dets, image_ids=image_ids)
        g_rows.append({"model": model, "dataset": dataset, "granularity": f"{g:g}", "ar1000": m[f"ar{max_dets}"],
                       "ar100": m["ar100"], "n_masks": m["n_masks"]})
    atomic_write_text(out / "ar_per_granularity.csv", csv_text(AR_PER_GRANULARITY_COLUMNS, g_rows))
    atomic_write_json(out / "failures.json", list(failures), indent=1)
    atomic_write_json(out / "run.json", {**dict(run_info or {}), "model": model, "dataset": dataset,
                                         "max_dets": max_dets, "image_ids": image_ids, "limit": limit,
                                         "granularities": gs, "n_failures": len(failures), "summary": row},
                      indent=1)
    log.info("%s on %s: AR@%d %.2f (%d images, %d masks, image_ids=%s)", model, dataset, max_dets,
             row["ar1000"], row["n_images"], row["n_masks"], image_ids)
    return row
