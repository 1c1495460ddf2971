"""Named variants of a run (config section ``experiments``): the paper's ablations (Tables 4–6, Fig. 10), training on
SA-1B's ground truth (Table 5) and UnSAMv2+ as overrides of the run's ``images``, ``discovery``, ``train`` and
``evaluation`` sections.

A variant trains once (``results/<run>/variants/<name>/train/``) and evaluates its own model on its own datasets
(``results/<run>/variants/<name>/evaluation/``); everything upstream is shared with the run:

- Stage 1: a variant whose discovery settings equal the run's reads the run's pseudo-labels. One that changes them
  gets its own Stage-1 outputs under ``results/<run>/stage1/<key>/``, where the key is a digest of its discovery
  settings (:func:`stage1_key`), so variants with equal settings share one Stage 1.
- Images: a variant may train on fewer images than the run (``images.max_images``, Table 4). It reads the run's
  image list and needs only the first shards; ``train.max_images`` cuts the last one. The pseudo-label files are
  taken in sorted order, which is the image list's order only when the list is sorted, so this needs
  ``images.id_list: null`` (the list is then the sorted image names).
- The stock SAM-2 baseline and every dataset preparation are the run's: a variant evaluates only its own model
  (``unsamv2``, or ``sam2`` for ``trainable: baseline_no_granularity``), so the keys that choose models and weights
  are not variant keys.

Each variant may name the paper rows it reproduces (``paper: {table6: [lora_rank=4]}``; the run's own rows are
``report.paper_rows``); the report puts its numbers beside them. Importing this module does not import torch (the
workflow reads it when Snakemake builds the DAG).
"""
from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from unsamv2.core.settings import settings_from_mapping
from unsamv2.datasets.registry import dataset_names
from unsamv2.discovery.config import DiscoveryConfig
from unsamv2.evaluate.config import CHECKPOINT_TRAIN, CHECKPOINT_TRAIN_BASELINE, EvaluationConfig
from unsamv2.train.config import TrainConfig

__all__ = ["EXPERIMENT_PAPER_TABLES", "Experiment", "experiments_from_config", "paper_rows", "stage1_key"]

VARIANT_NAME = re.compile(r"^[A-Za-z0-9_]+$")
#: What a variant may set: overrides of four sections of the run's config, and the paper rows it fills.
VARIANT_KEYS: tuple[str, ...] = ("images", "discovery", "train", "evaluation", "paper")
#: The only image key a variant changes: a smaller subset of the run's images (Table 4).
VARIANT_IMAGE_KEYS: tuple[str, ...] = ("max_images",)
#: Evaluation keys that belong to the run: which models, which weights, their names and averaged tables.
RUN_EVALUATION_KEYS: tuple[str, ...] = ("models", "unsamv2_checkpoint", "sam2_checkpoint", "sam2_size", "labels",
                                        "tables")
#: Paper tables whose rows a variant (or the run, ``report.paper_rows``) can fill: Tables 1 and 2 hold UnSAMv2+.
EXPERIMENT_PAPER_TABLES: tuple[str, ...] = ("table1", "table2", "table4", "table5", "table6", "fig10")


def stage1_key(discovery: DiscoveryConfig) -> str:
    """12 hex digits of the SHA-256 of the discovery settings (equal settings share one Stage 1)."""
    return hashlib.sha256(discovery.to_json().encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Experiment:
    """One variant, its sections resolved against the run's (the run's values where the variant sets none)."""

    name: str
    max_images: int
    discovery: DiscoveryConfig
    train: TrainConfig
    evaluation: EvaluationConfig
    #: "" = the run's own Stage 1; else :func:`stage1_key` of :attr:`discovery`
    stage1: str
    #: paper table → rows of ``paper_values.csv`` this variant reproduces
    paper: Mapping[str, tuple[str, ...]]

    @property
    def model(self) -> str:
        """The evaluated model: UnSAMv2, or the stock architecture for ``trainable: baseline_no_granularity``."""
        return "unsamv2" if self.train.uses_granularity else "sam2"

    @property
    def prefix(self) -> str:
        """Where its training and evaluation live, relative to ``results/<run>/``."""
        return f"variants/{self.name}/"

    @property
    def stage1_prefix(self) -> str:
        """Where its Stage-1 outputs live, relative to ``results/<run>/`` ("" = the run's own)."""
        return f"stage1/{self.stage1}/" if self.stage1 else ""

    def n_shards(self, shard_size: int) -> int:
        """The run's discovery shards its images lie in (the first ones)."""
        return math.ceil(self.max_images / shard_size)

    def checkpoint(self, results_dir: str) -> str:
        return f"{results_dir}/{self.prefix}train/final.pt"


def _where(name: str, section: str) -> str:
    return f"experiments.{name}.{section}"


def _settings(cls: type, name: str, section: str, values: Mapping[str, Any]) -> Any:
    """``cls`` from merged section values; an error names the key as ``experiments.<name>.<section>.<key>``."""
    where = _where(name, section)
    try:
        return settings_from_mapping(cls, where, values)
    except ValueError as exc:
        # The dataclasses name their keys "<section>.<key>"; the variant's key is the one the user must fix.
        raise ValueError(re.sub(rf"(?<![\w.]){section}\.", f"{where}.", str(exc))) from exc


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} must be a mapping, got {type(value).__name__}")  # noqa: TRY004
    return value


def paper_rows(value: Any, where: str) -> dict[str, tuple[str, ...]]:
    """Validate a ``{table: [method, ...]}`` mapping against ``paper_values.csv`` (``where`` names the key)."""
    from unsamv2.report.paper_comparison import read_paper_values

    known: dict[str, list[str]] = {}
    for row in read_paper_values():
        methods = known.setdefault(row["table"], [])
        if row["method"] not in methods and row["method"] != "SAM-2":
            methods.append(row["method"])
    out: dict[str, tuple[str, ...]] = {}
    for table, methods in _mapping(value, where).items():
        if table not in EXPERIMENT_PAPER_TABLES:
            raise ValueError(f"{where}.{table}: not a paper table with variants; expected one of "
                             f"{', '.join(EXPERIMENT_PAPER_TABLES)}")
        listed = [methods] if isinstance(methods, str) else list(methods)
        unknown = [m for m in listed if m not in known[table]]
        if unknown:
            raise ValueError(f"{where}.{table}: unknown row(s) {unknown}; the paper's rows (paper_values.csv): "
                             f"{known[table]}")
        out[table] = tuple(listed)
    return out


def _experiment(name: str, values: Any, config: Mapping[str, Any], run_discovery: DiscoveryConfig) -> Experiment:
    if not VARIANT_NAME.match(name):
        raise ValueError(f"experiments.{name}: a variant name is letters, digits and '_' (it is a folder name)")
    values = _mapping(values, f"experiments.{name}")
    unknown = sorted(set(values) - set(VARIANT_KEYS))
    if unknown:
        raise ValueError(f"unknown experiments.{name} key(s): {', '.join(unknown)}; known: {', '.join(VARIANT_KEYS)}")

    images = _mapping(values.get("images"), _where(name, "images"))
    unknown = sorted(set(images) - set(VARIANT_IMAGE_KEYS))
    if unknown:
        raise ValueError(f"{_where(name, 'images')}.{unknown[0]}: a variant can only train on fewer of the run's "
                         f"images (images.max_images); give it a run of its own to change the images")
    run_images = config["images"]
    max_images = images.get("max_images", run_images["max_images"])
    if not isinstance(max_images, int) or not 1 <= max_images <= run_images["max_images"]:
        raise ValueError(f"{_where(name, 'images')}.max_images must be an integer in [1, images.max_images = "
                         f"{run_images['max_images']}] (a subset of the run's images), got {max_images!r}")
    if max_images < run_images["max_images"] and run_images["id_list"]:
        raise ValueError(f"{_where(name, 'images')}.max_images: a subset needs images.id_list null (training takes "
                         "the first pseudo-label files in sorted order, the image list's order only without an id list)")

    discovery = _settings(DiscoveryConfig, name, "discovery",
                          {**config["discovery"], **_mapping(values.get("discovery"), _where(name, "discovery"))})
    stage1 = "" if discovery.to_json() == run_discovery.to_json() else stage1_key(discovery)

    train_values = {**config["train"], **_mapping(values.get("train"), _where(name, "train"))}
    if max_images < run_images["max_images"]:
        # The last shard it reads may hold more images than the variant's subset.
        cut = train_values.get("max_images")
        train_values["max_images"] = max_images if cut is None else min(cut, max_images)
    train = _settings(TrainConfig, name, "train", train_values).resolve_base_checkpoint()

    evaluation_values = _mapping(values.get("evaluation"), _where(name, "evaluation"))
    owned = sorted(set(evaluation_values) & set(RUN_EVALUATION_KEYS))
    if owned:
        raise ValueError(f"{_where(name, 'evaluation')}.{owned[0]}: a variant evaluates its own trained model; "
                         f"{', '.join(RUN_EVALUATION_KEYS)} are the run's")
    unknown = sorted(set(evaluation_values.get("datasets", [])) - set(dataset_names()))
    if unknown:
        raise ValueError(f"{_where(name, 'evaluation')}.datasets: unknown benchmark(s) {unknown}; known: "
                         f"{', '.join(dataset_names())}")
    model = "unsamv2" if train.uses_granularity else "sam2"
    evaluation = _settings(EvaluationConfig, name, "evaluation", {
        **config["evaluation"], **evaluation_values,
        "models": [model],
        # The sentinels "trained by this run"; Experiment.checkpoint gives the variant's own file.
        "unsamv2_checkpoint": CHECKPOINT_TRAIN, "sam2_checkpoint": CHECKPOINT_TRAIN_BASELINE,
        "labels": {model: f"{model}-{name}"},
        "tables": {},
    })
    return Experiment(name=name, max_images=max_images, discovery=discovery, train=train, evaluation=evaluation,
                      stage1=stage1, paper=paper_rows(values.get("paper"), _where(name, "paper")))


def experiments_from_config(config: Mapping[str, Any]) -> dict[str, Experiment]:
    """The variants of a workflow config (after schema validation), in config order; ``{}`` without any."""
    run_discovery = DiscoveryConfig.from_dict(config["discovery"])
    return {name: _experiment(str(name), values, config, run_discovery)
            for name, values in _mapping(config.get("experiments"), "experiments").items()}
