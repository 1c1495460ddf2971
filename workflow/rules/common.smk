# Helpers shared by the workflow: config validation, run paths, shard lists and input functions.
import json
import os
import math

from snakemake.utils import validate


validate(config, schema="../schemas/config.schema.yaml")

RUN = config["run"]
RESULTS = f"results/{RUN}"
LOGS = f"logs/{RUN}"
BENCH = f"{RESULTS}/benchmarks"
N_SHARDS = math.ceil(config["images"]["max_images"] / config["images"]["shard_size"])
SHARDS = [str(i) for i in range(N_SHARDS)]


wildcard_constraints:
    shard=r"\d+",
    tar=r"sa_\d{6}\.tar",
    name=r"dinov3_vitb16|dinov2_vitb14",


def image_source_inputs(wildcards):
    """What must exist before the image list can be written: the demo photos, extracted SA-1B tars, or nothing
    (a user folder is checked by `unsamv2 select-images` itself, with a message naming images.folder)."""
    source = config["images"]["source"]
    if source == "demo":
        return ["resources/demo/images"]
    if source == "sa1b":
        return [f"resources/sa1b/images/{tar}.txt" for tar in config["sa1b"]["tars"]]
    return []


def image_folder():
    source = config["images"]["source"]
    if source == "demo":
        return "resources/demo/images"
    if source == "sa1b":
        return "resources/sa1b/images"
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
    return [
        f"{RESULTS}/report/pseudo_labels/summary.csv",
        f"{RESULTS}/report/pseudo_labels/granularity_histogram.png",
    ]
