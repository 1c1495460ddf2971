"""Whole evaluation runs as library calls: build a click model, evaluate one benchmark into a folder, average
per-dataset summaries, plot per-object curves. The ``unsamv2`` command line is a thin layer over these.

:func:`evaluate_interactive_to_dir` writes, in ``out_dir``:

* ``per_object.csv`` — one row per (object, mode) with its IoU after every click;
* ``summary.csv`` — NoC80/85/90, 1-IoU and failures per mode (:data:`unsamv2.evaluate.summary.SUMMARY_COLUMNS`);
* ``miou_curve.png`` — mean IoU against the number of clicks, one curve per mode;
* ``failures.json`` — the images that could not be evaluated, with the reason;
* ``run.json`` — everything the run was asked for and what it found (images, failures, best fixed g, time);
* ``sa1b_ids.txt`` — SA-1B only, when no ``id_list`` was given: the ids this run used, for reuse.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from unsamv2.core.constants import EVAL_MASK_THRESHOLD, MULTIMASK_MASK_THRESHOLD
from unsamv2.evaluate.adapters import ClickModel

__all__ = [
    "average_summaries",
    "build_click_model",
    "evaluate_interactive_to_dir",
    "parse_dataset_options",
    "plot_per_object",
]

log = logging.getLogger(__name__)


def _device(device: str | None) -> str:
    from unsamv2.core.device import resolve_device

    return resolve_device(device or "auto")


def build_click_model(kind: str, checkpoint: str | Path | None, size: str, device: str | None,
                      image_size: int = 1024, name: str | None = None, config: str | None = None) -> ClickModel:
    """The click-model adapter for a model kind (``unsamv2`` or ``sam2``).

    ``checkpoint=None`` gives random weights (labelled ``<kind>-random-init`` unless ``name`` is given).
    ``config``: a sam2 config name for ``sam2`` at 1024 px (default: the config of ``size``). ``device``:
    ``None`` or ``auto`` = a GPU when one is visible.
    """
    from unsamv2.evaluate.adapters import Sam2BaselineModel, UnSAMv2ClickModel

    device = _device(device)
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


def parse_dataset_options(items: Sequence[str]) -> dict[str, Any]:
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


def _freeze_sa1b_subset(root: Path, out_dir: Path, options: Mapping[str, Any]) -> Path:
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


def evaluate_interactive_to_dir(
    *,
    dataset: str,
    root: str | Path,
    model_kind: str,
    out_dir: str | Path,
    checkpoint: str | Path | None = None,
    size: str = "small",
    modes: Sequence[str] | None = None,
    dataset_options: Mapping[str, Any] | None = None,
    target_iou: float | None = None,
    max_clicks: int = 20,
    mask_threshold: float = EVAL_MASK_THRESHOLD,
    limit: int | None = None,
    device: str | None = None,
    image_size: int = 1024,
    model_label: str | None = None,
    config: str | None = None,
    progress: bool = True,
) -> int:
    """Evaluate one model on one benchmark and write the run's files into ``out_dir`` (see the module docstring).

    Args:
        dataset: a registered benchmark name (any case), e.g. ``grabcut``.
        root: the benchmark's folder.
        model_kind: ``unsamv2`` or ``sam2``; ``checkpoint``, ``size``, ``image_size``, ``config``, ``device`` and
            ``model_label`` go to :func:`build_click_model`.
        modes: granularity modes (``oracle``, ``fixed:<g>``, ``best_fixed`` for UnSAMv2; ``none``, ``best_of_3``
            for SAM-2); ``None`` or empty = the config's defaults (``EvaluationConfig.unsamv2_modes`` /
            ``sam2_modes``). A mode of the other model raises ``ValueError``.
        dataset_options: loader options (e.g. :func:`parse_dataset_options` of ``KEY=VALUE`` items).
        target_iou: the loop's target IoU; ``None`` = the benchmark's protocol value (0.90 objects, 0.85 parts).
        max_clicks, mask_threshold: the click budget and the logit threshold of single-mask predictions.
        limit: evaluate only the first N images.
        progress: show a progress bar.

    Returns 1 if every image failed (nothing was evaluated), else 0.
    """
    from unsamv2.datasets.registry import effective_options, get_dataset, load_dataset
    from unsamv2.evaluate.interactive import evaluate_dataset
    from unsamv2.evaluate.modes import modes_for_model
    from unsamv2.evaluate.summary import (
        plot_miou_curves,
        summary_rows,
        write_per_object_csv,
        write_summary_csv,
    )
    from unsamv2.io.atomic import atomic_write_json
    from unsamv2.io.disk_space import EVALUATION_BYTES, ensure_free_space

    ensure_free_space(out_dir, EVALUATION_BYTES, f"the evaluation of {model_kind} on {dataset}")
    spec = get_dataset(dataset)
    parsed_modes = modes_for_model(model_kind, modes)
    target = spec.target_iou if target_iou is None else float(target_iou)
    options = dict(dataset_options or {})

    out = Path(out_dir)
    if spec.name == "sa1b" and "id_list" not in options:
        options["id_list"] = str(_freeze_sa1b_subset(Path(root), out, effective_options(spec.name, **options)))
    options = effective_options(spec.name, **options)

    model = build_click_model(model_kind, checkpoint, size, device, image_size, model_label, config)
    samples = load_dataset(spec.name, root, **options)
    result = evaluate_dataset(model, samples, parsed_modes, dataset=spec.name, target_iou=target,
                              max_clicks=max_clicks, mask_threshold=mask_threshold, limit=limit, progress=progress)

    write_per_object_csv(result.records, result.model, out / "per_object.csv", max_clicks)
    rows = summary_rows(result)
    write_summary_csv(rows, out / "summary.csv")
    curves = {f"{result.model} ({m})": result.sequences(m) for m in result.modes}
    # Always written (the workflow declares it); with no evaluated object the axes stay empty and say so.
    title = spec.display_name if any(curves.values()) else f"{spec.display_name}: no object evaluated"
    plot_miou_curves(curves, out / "miou_curve.png", max_clicks, title=title)
    atomic_write_json(out / "failures.json", result.failures, indent=1)
    atomic_write_json(out / "run.json", {
        "model": result.model, "model_kind": model_kind,
        "checkpoint": None if checkpoint is None else str(checkpoint), "size": size,
        "config": config, "dataset": spec.name, "root": str(root), "dataset_options": options,
        "granularity_modes": result.modes, "target_iou": target, "max_clicks": max_clicks,
        "mask_threshold": mask_threshold, "multimask_threshold": MULTIMASK_MASK_THRESHOLD, "limit": limit,
        "n_images": result.n_images,
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


def average_summaries(summaries: Sequence[str | Path], datasets: Sequence[str] | None, out: str | Path,
                      ) -> list[dict[str, Any]]:
    """Per-dataset summary CSVs → one CSV with the same rows plus the paper's "Averaged" row per (model, mode).

    ``datasets``: restrict to these benchmarks (any case; an item may also be a comma-separated list); ``None`` or
    empty = all rows. Returns the averaged rows (also written, after the input rows, to ``out``).
    """
    from unsamv2.evaluate.summary import paper_average, read_summary_csv, write_summary_csv

    rows = [row for path in summaries for row in read_summary_csv(path)]
    if datasets:
        wanted = [d.strip().lower() for item in datasets for d in item.split(",") if d.strip()]
        rows = [r for r in rows if str(r["dataset"]).lower() in wanted]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["model"], row["granularity_mode"]), []).append(row)
    averages = [paper_average(group) for group in groups.values()]
    write_summary_csv([*rows, *averages], out)
    for avg in averages:
        log.info("%s %s average over %d datasets: NoC80 %.2f NoC90(85 for parts) %.2f 1-IoU %.1f", avg["model"],
                 avg["granularity_mode"], len(groups[(avg["model"], avg["granularity_mode"])]), avg["noc80"],
                 avg["noc90"], avg["iou1"])
    return averages


def plot_per_object(per_object: Sequence[str | Path], dataset: str | None, max_clicks: int, out: str | Path) -> Path:
    """Per-object CSVs of several models / modes → one mean-IoU-vs-clicks plot (PNG at ``out``, returned).

    ``dataset``: keep only that benchmark's rows (any case; ``None`` = all). Raises ``ValueError`` if no row is
    left to plot.
    """
    from unsamv2.evaluate.summary import plot_miou_curves, read_per_object_csv

    curves: dict[str, list[list[float]]] = {}
    for path in per_object:
        for row in read_per_object_csv(path):
            if dataset and row["dataset"].lower() != dataset.lower():
                continue
            curves.setdefault(f"{row['model']} ({row['granularity_mode']})", []).append(row["ious"])
    if not curves:
        raise ValueError("no per-object rows to plot (check --dataset)")
    return plot_miou_curves(curves, out, max_clicks, title=dataset or "")
