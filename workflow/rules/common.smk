# Helpers shared by the workflow: config validation, run paths, shard lists and input functions.
import json
import os
import math

from snakemake.utils import validate


validate(config, schema="../schemas/config.schema.yaml")

if config.get("train"):
    # The train section's keys are those of the trainer's settings; checking them here fails the whole run
    # before any job starts, with the unknown key named, instead of hours later in the train job.
    from unsamv2.train.config import TrainConfig

    TrainConfig.from_dict({**config["train"], "base_checkpoint": None})

RUN = config["run"]
RESULTS = f"results/{RUN}"
LOGS = f"logs/{RUN}"
BENCH = f"{RESULTS}/benchmarks"
N_SHARDS = math.ceil(config["images"]["max_images"] / config["images"]["shard_size"])
SHARDS = [str(i) for i in range(N_SHARDS)]
# Generated training scenes live with the run: their size and seed are the run's settings.
SYNTHETIC_TRAIN = f"{RESULTS}/synthetic_scenes"


def synthetic_config():
    return config.get("synthetic") or {}


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
    (a user folder is checked by `unsamv2 select-images` itself, with a message naming images.folder)."""
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
    if not config["images"].get("folder"):
        raise ValueError("config key images.folder must be set when images.source is 'folder'")
    return config["images"]["folder"]


def backbone_weights():
    """Local weights directory of the configured backbone ('' for the offline backbone, which has none)."""
    bb = config["backbone"]
    if bb["name"] == "offline":
        return ""
    return bb.get("weights") or f"resources/backbones/{bb['name']}"


def backbone_inputs(wildcards):
    bb = config["backbone"]
    if bb["name"] == "offline" or bb.get("weights"):
        return []
    return [f"resources/backbones/{bb['name']}"]


def discovery_settings():
    """The `discovery` config section as JSON, handed to `unsamv2 discover` (a change reruns discovery)."""
    return json.dumps(config.get("discovery", {}), sort_keys=True)


def uses_gpu():
    return 1 if config.get("discovery", {}).get("device", "cpu").startswith("cuda") else 0


def final_outputs():
    targets = []
    stages = config.get("stages", ["discover", "train", "evaluate"])
    if "discover" in stages:
        targets += [
            f"{RESULTS}/report/pseudo_labels/summary.csv",
            f"{RESULTS}/report/pseudo_labels/granularity_histogram.png",
        ]
        if config["images"]["source"] == "synthetic":
            targets.append(f"{RESULTS}/report/pseudo_labels/recall_vs_ground_truth.csv")
    if "train" in stages:
        targets.append(f"{RESULTS}/train/final.pt")
        if evaluation_config().get("sam2_checkpoint") == "train_baseline":
            targets.append(f"{RESULTS}/train_baseline/final.pt")
    if "evaluate" in stages:
        targets += evaluation_summaries()
        targets += [f"{RESULTS}/evaluation/interactive/{table}.csv" for table in evaluation_tables()]
    return targets


# ----------------------------------------------------------------------------------------- training


def train_config():
    return dict(config.get("train") or {})


def base_checkpoint_path():
    """The train section's base checkpoint: 'sam2' = the downloaded stock SAM-2.1, null = random init."""
    base = train_config().get("base_checkpoint")
    if base == "sam2":
        return f"resources/checkpoints/sam2.1_hiera_{train_config().get('model_size', 'small')}.pt"
    return base


def base_checkpoint_inputs(wildcards):
    return [base_checkpoint_path()] if base_checkpoint_path() else []


def train_settings(baseline=False):
    """The train section as JSON for `unsamv2 train`, with the base checkpoint resolved to a path.

    ``baseline``: the SAM-2-style ablation with the same budget (stock architecture, no granularity input, the
    prompt encoder and mask decoder trained; ``unsamv2.train.config``'s ``baseline_no_granularity``).
    """
    settings = train_config()
    settings["base_checkpoint"] = base_checkpoint_path()
    if baseline:
        settings["trainable"] = "baseline_no_granularity"
        settings["lora_rank"] = 0  # the stock architecture has no LoRA
    return json.dumps(settings, sort_keys=True)


def train_launcher():
    """One process per GPU: torchrun (DDP) for several GPUs, the plain command otherwise."""
    gpus = int(config.get("train_gpus", 1))
    if gpus > 1:
        return f"torchrun --standalone --nproc_per_node {gpus} -m unsamv2.cli"
    return "unsamv2"


# ----------------------------------------------------------------------------------------- evaluation


def evaluation_config():
    return config.get("evaluation") or {}


def evaluation_checkpoint(wildcards):
    if wildcards.model == "sam2":
        ckpt = evaluation_config().get("sam2_checkpoint", "download")
        if ckpt == "train_baseline":
            return f"{RESULTS}/train_baseline/final.pt"
        if ckpt != "download":
            return ckpt
        return f"resources/checkpoints/sam2.1_hiera_{evaluation_config().get('sam2_size', 'small')}.pt"
    ckpt = evaluation_config().get("unsamv2_checkpoint", "train")
    return f"{RESULTS}/train/final.pt" if ckpt == "train" else ckpt


def evaluation_modes(wildcards):
    key = "unsamv2_modes" if wildcards.model == "unsamv2" else "sam2_modes"
    default = ["oracle", "best_fixed"] if wildcards.model == "unsamv2" else ["none", "best_of_3"]
    return " ".join(f"--granularity-mode {m}" for m in evaluation_config().get(key, default))


def evaluation_model_size(wildcards):
    """Stock SAM-2.1 of sam2_size for downloaded weights, else the trained size (a path is read as it is)."""
    if wildcards.model == "sam2" and evaluation_config().get("sam2_checkpoint", "download") == "download":
        return evaluation_config().get("sam2_size", "small")
    return train_config().get("model_size", evaluation_config().get("sam2_size", "small"))


def evaluation_model_options(wildcards):
    """Model label, loader options and target IoU of one (model, dataset) job as command-line options."""
    cfg = evaluation_config()
    args = []
    label = (cfg.get("labels") or {}).get(wildcards.model)
    if label:
        args.append(f"--model-label {label}")
    for key, value in ((cfg.get("dataset_options") or {}).get(wildcards.dataset) or {}).items():
        args.append(f"--dataset-option {key}={json.dumps(value)}")
    target = (cfg.get("target_iou") or {}).get(wildcards.dataset)
    if target is not None:
        args.append(f"--target-iou {target}")
    return " ".join(args)


def evaluation_limit():
    limit = evaluation_config().get("limit")
    return f"--limit {limit}" if limit else ""


def evaluation_gpu():
    return 1 if str(evaluation_config().get("device", "cuda")).startswith("cuda") else 0


def evaluation_summaries():
    return [
        f"{RESULTS}/evaluation/interactive/{model}/{dataset}/summary.csv"
        for model in evaluation_config().get("models", [])
        for dataset in evaluation_config().get("datasets", [])
    ]


def evaluation_tables():
    """Paper tables to average, restricted to the datasets this run evaluates (a table needs all of them)."""
    evaluated = set(evaluation_config().get("datasets", []))
    tables = evaluation_config().get("tables") or {}
    return {name: ds for name, ds in tables.items() if ds and set(ds) <= evaluated}


def table_summaries(wildcards):
    return [
        f"{RESULTS}/evaluation/interactive/{model}/{dataset}/summary.csv"
        for model in evaluation_config().get("models", [])
        for dataset in evaluation_tables()[wildcards.table]
    ]
