"""Settings of the evaluation stage: one dataclass mirroring the ``evaluation:`` section of the workflow config.

The field names are the config keys, and the defaults of ``unsamv2 evaluate-interactive`` are these defaults.
Three values of the checkpoint keys are not paths but sentinels that the workflow resolves through
:meth:`EvaluationConfig.checkpoint`: ``unsamv2_checkpoint: train`` (what this run trains),
``sam2_checkpoint: download`` (stock SAM-2.1 of ``sam2_size``) and ``sam2_checkpoint: train_baseline`` (the
SAM-2-style ablation this run trains with the same budget, the offline demo's baseline).

Importing this module does not import torch (the workflow reads it when Snakemake builds the DAG).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from unsamv2.core.constants import SAM2_SIZES
from unsamv2.core.settings import settings_from_mapping

__all__ = ["CHECKPOINT_DOWNLOAD", "CHECKPOINT_TRAIN", "CHECKPOINT_TRAIN_BASELINE", "EVALUATED_MODELS",
           "EvaluationConfig"]

CHECKPOINT_TRAIN = "train"
CHECKPOINT_DOWNLOAD = "download"
CHECKPOINT_TRAIN_BASELINE = "train_baseline"
#: ``unsamv2`` = the granularity model; ``sam2`` = stock SAM-2 architecture (the baselines).
EVALUATED_MODELS: tuple[str, ...] = ("unsamv2", "sam2")


@dataclass(frozen=True)
class EvaluationConfig:
    """Interactive evaluation (paper §4.2: NoC and 1-IoU with the RITM clicker); every field is a config key.

    datasets, models: benchmarks and models to evaluate (nothing unless listed).
    unsamv2_checkpoint: ``train`` or a path (e.g. the official UnSAMv2 weights).
    sam2_checkpoint: ``download``, ``train_baseline`` or a path.
    sam2_size: SAM-2.1 size of the downloaded stock weights.
    labels: names of the models in the CSVs and plots (default: the model key).
    dataset_options: loader options per benchmark (``unsamv2 evaluate-interactive --dataset-option``).
    target_iou: per-benchmark target IoU overriding the protocol's (0.90 objects, 0.85 parts).
    image_size: model input size (1024 for released weights).
    unsamv2_modes, sam2_modes: granularity modes per model (``oracle``, ``fixed:<g>``, ``best_fixed``;
        ``none``, ``best_of_3``).
    max_clicks: clicks per object (20).
    limit: evaluate only the first N images of each benchmark (``None`` = all).
    device: ``auto`` (a GPU when one is visible), ``cpu``, ``cuda`` or ``cuda:<n>``.
    tables: paper tables to average (name → datasets).
    """

    datasets: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    unsamv2_checkpoint: str = CHECKPOINT_TRAIN
    sam2_checkpoint: str = CHECKPOINT_DOWNLOAD
    sam2_size: str = "small"
    labels: Mapping[str, str] = field(default_factory=dict)
    dataset_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    target_iou: Mapping[str, float] = field(default_factory=dict)
    image_size: int = 1024
    unsamv2_modes: tuple[str, ...] = ("oracle", "best_fixed")
    sam2_modes: tuple[str, ...] = ("none", "best_of_3")
    max_clicks: int = 20
    limit: int | None = None
    device: str = "auto"
    tables: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in ("datasets", "models", "unsamv2_modes", "sam2_modes"):
            object.__setattr__(self, key, tuple(getattr(self, key)))
        object.__setattr__(self, "tables", {k: tuple(v) for k, v in dict(self.tables).items()})
        unknown = sorted(set(self.models) - set(EVALUATED_MODELS))
        if unknown:
            raise ValueError(f"evaluation.models: unknown model(s) {unknown}; expected {list(EVALUATED_MODELS)}")
        unknown = sorted(set(self.labels) - set(EVALUATED_MODELS))
        if unknown:
            raise ValueError(f"evaluation.labels: unknown model(s) {unknown}; expected {list(EVALUATED_MODELS)}")
        if self.sam2_size not in SAM2_SIZES:
            raise ValueError(f"evaluation.sam2_size must be one of {', '.join(SAM2_SIZES)}, got {self.sam2_size!r}")
        if self.image_size <= 0 or self.image_size % 64 != 0:
            raise ValueError(f"evaluation.image_size must be a positive multiple of 64, got {self.image_size}")
        if self.max_clicks < 1:
            raise ValueError(f"evaluation.max_clicks must be >= 1, got {self.max_clicks}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"evaluation.limit must be >= 1 or null, got {self.limit}")
        for name, value in self.target_iou.items():
            if not 0.0 < float(value) <= 1.0:
                raise ValueError(f"evaluation.target_iou.{name} must lie in (0, 1], got {value}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"evaluation.device must be auto, cpu, cuda or cuda:<n>, got {self.device!r}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> EvaluationConfig:
        """Build from the ``evaluation`` config section; an unknown key is an error naming it."""
        return settings_from_mapping(cls, "evaluation", values)

    def modes(self, model: str) -> tuple[str, ...]:
        return self.unsamv2_modes if model == "unsamv2" else self.sam2_modes

    def label(self, model: str) -> str:
        return self.labels.get(model, model)

    def options_for(self, dataset: str) -> dict[str, Any]:
        """Loader options of ``dataset`` (none unless configured)."""
        return dict(self.dataset_options.get(dataset, {}))

    def target_iou_for(self, dataset: str) -> float | None:
        """The configured target IoU of ``dataset``; ``None`` = the protocol's (0.90 objects, 0.85 parts)."""
        return self.target_iou.get(dataset)

    @property
    def uses_gpu(self) -> bool:
        return self.device != "cpu"

    @property
    def trains_baseline(self) -> bool:
        """Whether the run must train the SAM-2-style baseline that model ``sam2`` is evaluated with."""
        return self.sam2_checkpoint == CHECKPOINT_TRAIN_BASELINE

    def checkpoint(self, model: str, results_dir: str) -> str:
        """The checkpoint file model ``model`` is evaluated with, sentinels resolved (``results_dir``: the run's)."""
        if model == "unsamv2":
            if self.unsamv2_checkpoint == CHECKPOINT_TRAIN:
                return f"{results_dir}/train/final.pt"
            return self.unsamv2_checkpoint
        if self.sam2_checkpoint == CHECKPOINT_TRAIN_BASELINE:
            return f"{results_dir}/train_baseline/final.pt"
        if self.sam2_checkpoint == CHECKPOINT_DOWNLOAD:
            from unsamv2.resources import sam21_checkpoint_path

            return sam21_checkpoint_path(self.sam2_size)
        return self.sam2_checkpoint

    def model_size(self, model: str, trained_size: str) -> str:
        """Size of the evaluated model: ``sam2_size`` for downloaded SAM-2.1, else the size this run trains
        (``trained_size``; an external checkpoint is read as it is)."""
        if model == "sam2" and self.sam2_checkpoint == CHECKPOINT_DOWNLOAD:
            return self.sam2_size
        return trained_size

    def tables_to_build(self) -> dict[str, tuple[str, ...]]:
        """Paper tables whose datasets are all evaluated by this run (a table needs every one of them)."""
        evaluated = set(self.datasets)
        return {name: ds for name, ds in self.tables.items() if ds and set(ds) <= evaluated}

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for key in ("datasets", "models", "unsamv2_modes", "sam2_modes"):
            d[key] = list(d[key])
        d["tables"] = {k: list(v) for k, v in self.tables.items()}
        return d
