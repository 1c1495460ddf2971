# Helpers shared by the workflow: config validation, the run's settings objects, paths and input functions.
# The settings dataclasses of the package own keys, defaults and sentinels; this file only maps them to paths.
import json
import math
import os

from snakemake.utils import validate

from unsamv2.discovery.config import DiscoveryConfig
from unsamv2.evaluate.config import EvaluationConfig
from unsamv2.train.config import TrainConfig


# Fills every schema default into `config`, so the code below reads validated values directly.
validate(config, schema="../schemas/config.schema.yaml")

# Built here, at DAG time: a bad value fails the whole run before any job starts, naming the key.
DISCOVERY = DiscoveryConfig.from_dict(config["discovery"])
TRAIN = TrainConfig.from_dict(config["train"]).resolve_base_checkpoint()
EVALUATION = EvaluationConfig.from_dict(config["evaluation"])

RUN = config["run"]
STAGES = config["stages"]
RESULTS = f"results/{RUN}"
LOGS = f"logs/{RUN}"
BENCH = f"{RESULTS}/benchmarks"
N_SHARDS = math.ceil(config["images"]["max_images"] / config["images"]["shard_size"])
SHARDS = [str(i) for i in range(N_SHARDS)]
# Generated training scenes live with the run: their size and seed are the run's settings.
SYNTHETIC_TRAIN = f"{RESULTS}/synthetic_scenes"
SYNTHETIC = config["synthetic"]


wildcard_constraints:
    shard=r"\d+",
    tar=r"sa_\d{6}\.tar",
    name=r"dinov3_vitb16|dinov2_vitb14",
    size=r"tiny|small|base_plus|large",
    model=r"unsamv2|sam2",
    dataset=r"[a-z0-9]+",
    table=r"[a-z][a-z0-9_]*",
    trainrun=r"train|train_baseline",


def image_source_inputs(wildcards):
    """What must exist before the image list can be written: the demo photos, extracted SA-1B tars, or nothing
    (a user folder is checked by `unsamv2 select-images` itself, with a message naming the folder)."""
    source = config["images"]["source"]
    if source == "demo":
        return ["resources/demo/images"]
    if source == "sa1b":
        return [f"resources/sa1b/images/{tar}.txt" for tar in config["sa1b"]["tars"]]
    if source == "synthetic":
        return [f"{SYNTHETIC_TRAIN}/.done"]
    return []


def image_folder():
    source = config["images"]["source"]
    if source == "demo":
        return "resources/demo/images"
    if source == "sa1b":
        return "resources/sa1b/images"
    if source == "synthetic":
        return f"{SYNTHETIC_TRAIN}/images"
    if not config["images"]["folder"]:
        raise ValueError("config key images.folder must be set when images.source is 'folder'")
    return config["images"]["folder"]


def backbone_weights():
    """Local weights directory of the configured backbone ('' for the offline backbone, which has none)."""
    bb = config["backbone"]
    if bb["name"] == "offline":
        return ""
    return bb["weights"] or f"resources/backbones/{bb['name']}"


def backbone_inputs(wildcards):
    bb = config["backbone"]
    if bb["name"] == "offline" or bb["weights"]:
        return []
    return [f"resources/backbones/{bb['name']}"]


def final_outputs():
    targets = []
    if "discover" in STAGES:
        targets += [
            f"{RESULTS}/report/pseudo_labels/summary.csv",
            f"{RESULTS}/report/pseudo_labels/granularity_histogram.png",
        ]
        if config["images"]["source"] == "synthetic":
            targets.append(f"{RESULTS}/report/pseudo_labels/recall_vs_ground_truth.csv")
    if "train" in STAGES:
        targets.append(f"{RESULTS}/train/final.pt")
        if EVALUATION.trains_baseline:
            targets.append(f"{RESULTS}/train_baseline/final.pt")
    if "evaluate" in STAGES:
        targets += evaluation_summaries()
        targets += [f"{RESULTS}/evaluation/interactive/{table}.csv" for table in EVALUATION.tables_to_build()]
    return targets


# ----------------------------------------------------------------------------------------- training


def base_checkpoint_inputs(wildcards):
    return [TRAIN.base_checkpoint] if TRAIN.base_checkpoint else []


def train_settings(wildcards):
    """The train section as `unsamv2 train --settings` JSON; 'train_baseline' is the SAM-2-style ablation."""
    return (TRAIN.baseline() if wildcards.trainrun == "train_baseline" else TRAIN).to_json()


def train_launcher():
    """One process per GPU: torchrun (DDP) for several GPUs, the plain command otherwise."""
    gpus = config["train_gpus"]
    if gpus > 1:
        return f"torchrun --standalone --nproc_per_node {gpus} -m unsamv2.cli"
    return "unsamv2"


# ----------------------------------------------------------------------------------------- evaluation


def evaluation_checkpoint(wildcards):
    return EVALUATION.checkpoint(wildcards.model, RESULTS)


def evaluation_options(wildcards):
    """Model size, label, modes, loader options and target IoU of one (model, dataset) job as CLI options."""
    args = [
        f"--model-size {EVALUATION.model_size(wildcards.model, TRAIN.model_size)}",
        f"--model-label {EVALUATION.label(wildcards.model)}",
        *(f"--granularity-mode {mode}" for mode in EVALUATION.modes(wildcards.model)),
    ]
    for key, value in EVALUATION.options_for(wildcards.dataset).items():
        args.append(f"--dataset-option {key}={json.dumps(value)}")
    target = EVALUATION.target_iou_for(wildcards.dataset)
    if target is not None:
        args.append(f"--target-iou {target}")
    if EVALUATION.limit is not None:
        args.append(f"--limit {EVALUATION.limit}")
    return " ".join(args)


def evaluation_summaries():
    return [
        f"{RESULTS}/evaluation/interactive/{model}/{dataset}/summary.csv"
        for model in EVALUATION.models
        for dataset in EVALUATION.datasets
    ]


def table_summaries(wildcards):
    return [
        f"{RESULTS}/evaluation/interactive/{model}/{dataset}/summary.csv"
        for model in EVALUATION.models
        for dataset in EVALUATION.tables_to_build()[wildcards.table]
    ]
