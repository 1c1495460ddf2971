"""Settings of the whole-image evaluation (paper Table 3): the ``whole_image:`` section of the workflow config.

The field names are the config keys, and the defaults of ``unsamv2 evaluate-whole-image`` are these defaults.
Which weights each model uses, its size, label, input size and device come from the ``evaluation`` section
(:class:`unsamv2.evaluate.config.EvaluationConfig`), so both evaluations always score the same models.

Importing this module does not import torch (the workflow reads it when Snakemake builds the DAG).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from unsamv2.core.constants import GRANULARITY_GRID
from unsamv2.core.settings import settings_from_json, settings_from_mapping
from unsamv2.evaluate.config import EVALUATED_MODELS

__all__ = ["POSTPROCESSORS", "TABLE3_DATASETS", "WHOLE_IMAGE_IMAGE_IDS", "WholeImageConfig"]

#: The five benchmarks of the paper's Table 3, in its column order.
TABLE3_DATASETS: tuple[str, ...] = ("coco", "lvis", "ade20k", "entityseg", "sa1b")
#: ``none`` or the official script's optional CascadePSP refinement of every mask (``--use-postprocess``).
POSTPROCESSORS: tuple[str, ...] = ("none", "cascadepsp")
WHOLE_IMAGE_IMAGE_IDS: tuple[str, ...] = ("all", "predicted")


@dataclass(frozen=True)
class WholeImageConfig:
    """Whole-image AR@1000 (paper §4.2, Table 3); every field is a config key.

    datasets, models: benchmarks and models to evaluate (nothing unless listed).
    granularities: UnSAMv2's g values, pooled per image without cross-g NMS (0.1 … 1.0).
    points_per_side, points_per_batch: the automatic mask generator's grid (64 → 4,096 points) and decoder batch.
    pred_iou_thresh, stability_score_thresh: ``None`` = the official per-g values for UnSAMv2 (g < 0.5: 0.65 /
        0.7; g ≥ 0.5: 0.5 / 0.7); a number fixes them for every g.
    sam2_pred_iou_thresh, sam2_stability_score_thresh: the stock SAM-2 generator's filters (the paper does not
        state them; the default is the official UnSAMv2 script's loosest pair, g ≥ 0.5).
    max_dets: detections kept per image, highest predicted IoU first (AR@1000).
    image_ids: ``all`` = every GT image (official), ``predicted`` = only images with predictions.
    shard_size: images per generation job; a finished shard is never recomputed.
    limit: evaluate only the first N images (by id) of each benchmark (``None`` = all); the ground truth is cut to
        them, so ``image_ids: all`` counts those N images.
    postprocess: ``none`` or ``cascadepsp`` (needs ``pip install 'unsamv2[refine]'``; off in the official script).
    dataset_options: converter options per benchmark (e.g. ``{sa1b: {num_images: 1000}}``).
    sa1b_tar: the SA-1B tar the held-out images come from (fetched with the links file, as Stage 1).
    table: the benchmarks averaged into ``table3.csv`` (built when all of them are evaluated).
    """

    datasets: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    granularities: tuple[float, ...] = GRANULARITY_GRID
    points_per_side: int = 64
    points_per_batch: int = 128
    pred_iou_thresh: float | None = None
    stability_score_thresh: float | None = None
    sam2_pred_iou_thresh: float = 0.5
    sam2_stability_score_thresh: float = 0.7
    max_dets: int = 1000
    image_ids: str = "all"
    shard_size: int = 250
    limit: int | None = None
    postprocess: str = "none"
    dataset_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    sa1b_tar: str = "sa_000999.tar"
    table: tuple[str, ...] = TABLE3_DATASETS

    def __post_init__(self) -> None:
        for key in ("datasets", "models", "table"):
            object.__setattr__(self, key, tuple(getattr(self, key)))
        object.__setattr__(self, "granularities", tuple(round(float(g), 4) for g in self.granularities))
        unknown = sorted(set(self.models) - set(EVALUATED_MODELS))
        if unknown:
            raise ValueError(f"whole_image.models: unknown model(s) {unknown}; expected {list(EVALUATED_MODELS)}")
        if not self.granularities or any(not (0.1 <= g <= 1.0) or math.isnan(g) for g in self.granularities):
            raise ValueError(f"whole_image.granularities must be values in [0.1, 1.0], got {self.granularities}")
        if len(set(self.granularities)) != len(self.granularities):
            raise ValueError(f"whole_image.granularities lists a value twice: {self.granularities}")
        for key in ("points_per_side", "points_per_batch", "shard_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"whole_image.{key} must be >= 1, got {getattr(self, key)}")
        if self.max_dets < 100:
            raise ValueError(f"whole_image.max_dets must be >= 100 (maxDets = [1, 100, max_dets]), got "
                             f"{self.max_dets}")
        if self.image_ids not in WHOLE_IMAGE_IMAGE_IDS:
            raise ValueError(f"whole_image.image_ids must be one of {', '.join(WHOLE_IMAGE_IMAGE_IDS)}, got "
                             f"{self.image_ids!r}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"whole_image.limit must be >= 1 or null, got {self.limit}")
        if self.postprocess not in POSTPROCESSORS:
            raise ValueError(f"whole_image.postprocess must be one of {', '.join(POSTPROCESSORS)}, got "
                             f"{self.postprocess!r}")
        for key in ("pred_iou_thresh", "stability_score_thresh", "sam2_pred_iou_thresh",
                    "sam2_stability_score_thresh"):
            value = getattr(self, key)
            if value is not None and not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"whole_image.{key} must lie in [0, 1], got {value}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> WholeImageConfig:
        """Build from the ``whole_image`` config section; an unknown key is an error naming it."""
        return settings_from_mapping(cls, "whole_image", values)

    @classmethod
    def from_json(cls, text: str | None) -> WholeImageConfig:
        """From ``unsamv2 evaluate-whole-image --settings`` JSON (empty = all defaults)."""
        return settings_from_json(cls, "whole_image", text)

    def options_for(self, dataset: str) -> dict[str, Any]:
        return dict(self.dataset_options.get(dataset, {}))

    def n_shards(self, n_images: int) -> int:
        """Generation jobs for a benchmark of ``n_images`` images (after ``limit``)."""
        n = n_images if self.limit is None else min(n_images, self.limit)
        return max(1, math.ceil(n / self.shard_size))

    def builds_table(self) -> bool:
        """Whether every benchmark of ``table`` is evaluated (the average needs all of them)."""
        return bool(self.table) and set(self.table) <= set(self.datasets)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for key in ("datasets", "models", "table", "granularities"):
            d[key] = list(d[key])
        d["dataset_options"] = {k: dict(v) for k, v in self.dataset_options.items()}
        return d

    def to_json(self) -> str:
        import json

        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
