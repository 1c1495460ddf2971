"""Interactive (click-based) evaluation of a dataset: the NoC protocol of RITM / GraCo as run by UnSAMv2.

The pieces, one module each:

* :mod:`unsamv2.evaluate.adapters` — the :class:`~unsamv2.evaluate.adapters.ClickModel` protocol and the SAM-2 /
  UnSAMv2 adapters;
* :mod:`unsamv2.evaluate.modes` — the granularity modes (``oracle``, ``fixed:<g>``, ``best_fixed``, ``none``,
  ``best_of_3``), which model runs which, and the oracle / best-fixed selections;
* :mod:`unsamv2.evaluate.sessions` — the click loop on one object (RITM's clicker, lock-step batching, the
  oracle's early stop);
* this module — the dataset driver: every object of every image under every mode, one ``set_image`` per image,
  failures recorded instead of stopping, and the dataset-level ``best_fixed`` choice (its g is in the
  ``granularity`` column of the per-object CSV and in ``run.json``).
"""
from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unsamv2.core.constants import EVAL_MASK_THRESHOLD
from unsamv2.datasets.sample import Sample
from unsamv2.evaluate.adapters import ClickModel
from unsamv2.evaluate.metrics import DatasetMetrics, compute_metrics
from unsamv2.evaluate.modes import GranularityMode, select_best_fixed
from unsamv2.evaluate.sessions import evaluate_object

__all__ = ["DatasetEvaluation", "ObjectRecord", "evaluate_dataset"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ObjectRecord:
    """One row of the per-object CSV."""

    dataset: str
    image_id: str
    object_id: str
    mode: str
    granularity: float | None
    ious: tuple[float, ...]


@dataclass
class DatasetEvaluation:
    """Everything one ``evaluate_dataset`` call produced."""

    model: str
    dataset: str
    target_iou: float
    max_clicks: int
    modes: list[str]
    records: list[ObjectRecord] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    best_fixed_granularity: float | None = None
    n_images: int = 0
    elapsed_s: float = 0.0

    def sequences(self, mode: str) -> list[tuple[float, ...]]:
        return [r.ious for r in self.records if r.mode == mode]

    def metrics(self, mode: str) -> DatasetMetrics:
        return compute_metrics(self.sequences(mode), self.target_iou, self.max_clicks)


def _load_image(path: Path) -> np.ndarray:
    from unsamv2.io.images import load_image_rgb

    return load_image_rgb(path)


def evaluate_dataset(
    model: ClickModel,
    samples: Iterable[Sample],
    modes: Sequence[GranularityMode],
    *,
    dataset: str,
    target_iou: float,
    max_clicks: int = 20,
    mask_threshold: float = EVAL_MASK_THRESHOLD,
    feed_mask_input: bool = True,
    limit: int | None = None,
    progress: bool = True,
    image_loader: Callable[[Path], np.ndarray] = _load_image,
) -> DatasetEvaluation:
    """Evaluate ``model`` on every object of ``samples`` under every mode; one ``set_image`` per image.

    A sample whose annotation or image cannot be read, or whose image and mask sizes disagree, is recorded in
    ``failures`` (with the file and the reason) and skipped; the rest of the dataset still runs.
    """
    from tqdm.auto import tqdm

    if not modes:
        raise ValueError("evaluate_dataset needs at least one granularity mode")
    supports = getattr(model, "supports_granularity", None)
    if supports is not None:  # fail before the first image rather than in the middle of the dataset
        wrong = [m.label for m in modes if m.needs_granularity != supports]
        if wrong:
            raise ValueError(f"model {model.name!r} cannot run granularity mode(s) {wrong}: it "
                             f"{'needs' if supports else 'has no'} granularity input")
    labels = [m.label for m in modes]
    if len(set(labels)) != len(labels):
        raise ValueError(f"duplicate granularity modes: {labels}")
    result = DatasetEvaluation(model=model.name, dataset=dataset, target_iou=target_iou, max_clicks=max_clicks,
                               modes=labels)
    sweeps: list[dict[float, tuple[float, ...]]] = []
    sweep_keys: list[tuple[str, str]] = []
    start = time.perf_counter()
    # islice stops *before* asking the lazy loader for the next image, so --limit N reads exactly N images.
    selected = samples if limit is None else itertools.islice(samples, limit)
    for sample in tqdm(selected, desc=f"{dataset} ({model.name})", unit="img", disable=not progress):
        result.n_images += 1
        if sample.error is not None:
            log.error("skipping %s: %s", sample.image_id, sample.error)
            result.failures.append({"image": sample.image_id, "path": str(sample.image_path), "error": sample.error})
            continue
        try:
            image = image_loader(sample.image_path)
            for obj in sample.objects:
                if obj.gt.shape != image.shape[:2]:
                    raise ValueError(f"mask of object {obj.object_id} is {obj.gt.shape}, image is {image.shape[:2]}")
        except Exception as exc:  # noqa: BLE001 - a bad image must not stop the dataset; it is reported
            log.error("skipping %s: %s", sample.image_path, exc)
            result.failures.append({"image": sample.image_id, "path": str(sample.image_path), "error": str(exc)})
            continue
        model.set_image(image)
        for obj in sample.objects:
            evaluation = evaluate_object(model, obj, modes, target_iou=target_iou, max_clicks=max_clicks,
                                         mask_threshold=mask_threshold, feed_mask_input=feed_mask_input)
            for mode in modes:
                if mode.kind == "best_fixed":
                    continue
                outcome = evaluation.outcomes[mode.label]
                result.records.append(ObjectRecord(dataset, sample.image_id, obj.object_id, mode.label,
                                                   outcome.granularity, outcome.ious))
            if evaluation.sweep:
                sweeps.append(evaluation.sweep)
                sweep_keys.append((sample.image_id, obj.object_id))

    if any(m.kind == "best_fixed" for m in modes) and sweeps:
        g_best = select_best_fixed(sweeps, target_iou, max_clicks)
        result.best_fixed_granularity = g_best
        log.info("%s: best fixed granularity %.1f", dataset, g_best)
        for (image_id, object_id), sweep in zip(sweep_keys, sweeps):
            result.records.append(ObjectRecord(dataset, image_id, object_id, "best_fixed", g_best, sweep[g_best]))
    result.elapsed_s = time.perf_counter() - start
    return result
