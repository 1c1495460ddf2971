# Helpers shared by the workflow: config validation, the run's settings objects, paths and input functions.
# The settings dataclasses of the package own keys, defaults and sentinels; this file only maps them to paths.
import json
import math
import os

from snakemake.utils import validate

from unsamv2.discovery.config import DiscoveryConfig
from unsamv2.evaluate.config import EvaluationConfig
from unsamv2.evaluate.video_config import VideoConfig
from unsamv2.datasets.whole_image import get_whole_image_benchmark
from unsamv2.evaluate.whole_image_config import WholeImageConfig
from unsamv2.experiments import experiments_from_config, paper_rows
from unsamv2.train.config import TrainConfig


# Fills every schema default into `config`, so the code below reads validated values directly.
validate(config, schema="../schemas/config.schema.yaml")

# Built here, at DAG time: a bad value fails the whole run before any job starts, naming the key.
DISCOVERY = DiscoveryConfig.from_dict(config["discovery"])
TRAIN = TrainConfig.from_dict(config["train"]).resolve_base_checkpoint()
EVALUATION = EvaluationConfig.from_dict(config["evaluation"])
WHOLE_IMAGE = WholeImageConfig.from_dict(config["whole_image"])
VIDEO = VideoConfig.from_dict(config["video"])
# The run's named variants (section experiments): name → unsamv2.experiments.Experiment; {} = the run alone.
EXPERIMENTS = experiments_from_config(config)

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
    # "" = the run itself; a variant's training and evaluation live under variants/<name>/ (rules/train.smk,
    # rules/evaluate.smk), a variant's own Stage 1 under stage1/<digest of its discovery settings>/.
    exp=r"(variants/[A-Za-z0-9_]+/)?",
    stage1=r"(stage1/[0-9a-f]{12}/)?",


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
        targets += variant_checkpoints()
    if "evaluate" in STAGES:
        targets += evaluation_summaries()
        targets += variant_evaluation_summaries()
        targets += [f"{RESULTS}/evaluation/interactive/{table}.csv" for table in EVALUATION.tables_to_build()]
        targets += whole_image_targets()  # rules/evaluate_whole_image.smk
        targets += video_targets()
        targets += list(report_table_outputs().values())
        targets += [f"{RESULTS}/report/figures/iou_vs_clicks_{dataset}.png" for dataset in EVALUATION.datasets]
        if "synthetic" in EVALUATION.datasets:
            targets.append(f"{RESULTS}/evaluation/interactive/per_level/synthetic.csv")  # rule interactive_levels
        if makes_granularity_strips():
            targets.append(f"{RESULTS}/report/figures/granularity_strips.png")
        if reports_whole_image() and "unsamv2" in WHOLE_IMAGE.models and trains_on_listed_images():
            targets.append(f"{RESULTS}/report/figures/whole_image_masks.png")
    return targets


# ----------------------------------------------------------------------------------------- training


def experiment(exp):
    """The variant of an `{exp}` wildcard: None for "" (the run itself), else that of "variants/<name>/"."""
    return EXPERIMENTS[exp.removeprefix("variants/").removesuffix("/")] if exp else None


def train_config(wildcards):
    """The settings of one training: the run's (`train`), its SAM-2-style ablation (`train_baseline`) or a
    variant's (`variants/<name>/train`)."""
    variant = experiment(wildcards.exp)
    if variant is None:
        return TRAIN.baseline() if wildcards.trainrun == "train_baseline" else TRAIN
    if wildcards.trainrun != "train":
        raise ValueError(f"variant {variant.name} trains one model, in {RESULTS}/{variant.prefix}train/")
    return variant.train


def base_checkpoint_inputs(wildcards):
    base = train_config(wildcards).base_checkpoint
    return [base] if base else []


def train_settings(wildcards):
    """The train section as `unsamv2 train --settings` JSON; 'train_baseline' is the SAM-2-style ablation."""
    return train_config(wildcards).to_json()


def pseudo_label_manifests(stage1, n_shards):
    return [f"{RESULTS}/{stage1}pseudo_labels/manifests/{shard}.tsv" for shard in range(n_shards)]


def train_manifests(wildcards):
    """The Stage-1 shards a training reads: all of the run's, or the first ones of a variant's Stage 1."""
    variant = experiment(wildcards.exp)
    if variant is None:
        return pseudo_label_manifests("", N_SHARDS)
    return pseudo_label_manifests(variant.stage1_prefix, variant.n_shards(config["images"]["shard_size"]))


def train_labels(wildcards):
    variant = experiment(wildcards.exp)
    return f"{RESULTS}/{variant.stage1_prefix if variant else ''}pseudo_labels/json"


def stage1_discovery(wildcards):
    """The discovery settings of a `{stage1}` wildcard: the run's for "", else those its digest was made of."""
    if not wildcards.stage1:
        return DISCOVERY
    for variant in EXPERIMENTS.values():
        if variant.stage1_prefix == wildcards.stage1:
            return variant.discovery
    raise ValueError(f"no variant of this run has its Stage 1 in {RESULTS}/{wildcards.stage1}")


def train_launcher():
    """One process per GPU: torchrun (DDP) for several GPUs, the plain command otherwise."""
    gpus = config["train_gpus"]
    if gpus > 1:
        return f"torchrun --standalone --nproc_per_node {gpus} -m unsamv2.cli"
    return "unsamv2"


# ----------------------------------------------------------------------------------------- evaluation


def evaluation_config(wildcards):
    """The evaluation settings of the run ("" `{exp}`) or of a variant."""
    variant = experiment(wildcards.exp)
    return EVALUATION if variant is None else variant.evaluation


def evaluation_checkpoint(wildcards):
    # Also the whole-image and video rules' input, which have no {exp}: they evaluate the run's models.
    variant = experiment(wildcards.get("exp", ""))
    return EVALUATION.checkpoint(wildcards.model, RESULTS) if variant is None else variant.checkpoint(RESULTS)


def evaluation_options(wildcards):
    """Model size, label, modes, loader options and target IoU of one (model, dataset) job as CLI options."""
    ev = evaluation_config(wildcards)
    variant = experiment(wildcards.exp)
    trained_size = (TRAIN if variant is None else variant.train).model_size
    args = [
        f"--model-size {ev.model_size(wildcards.model, trained_size)}",
        f"--model-label {ev.label(wildcards.model)}",
        *(f"--granularity-mode {mode}" for mode in ev.modes(wildcards.model)),
    ]
    for key, value in ev.options_for(wildcards.dataset).items():
        args.append(f"--dataset-option {key}={json.dumps(value)}")
    target = ev.target_iou_for(wildcards.dataset)
    if target is not None:
        args.append(f"--target-iou {target}")
    if ev.limit is not None:
        args.append(f"--limit {ev.limit}")
    return " ".join(args)


def evaluation_summaries():
    return [
        f"{RESULTS}/evaluation/interactive/{model}/{dataset}/summary.csv"
        for model in EVALUATION.models
        for dataset in EVALUATION.datasets
    ]


def variant_checkpoints():
    return [variant.checkpoint(RESULTS) for variant in EXPERIMENTS.values()]


def variant_evaluation_summaries():
    """Every variant's own model on each of its datasets (the run's SAM-2 and dataset preparations are shared)."""
    return [
        f"{RESULTS}/{variant.prefix}evaluation/interactive/{variant.model}/{dataset}/summary.csv"
        for variant in EXPERIMENTS.values()
        for dataset in variant.evaluation.datasets
    ]


def table_summaries(wildcards):
    return [
        f"{RESULTS}/evaluation/interactive/{model}/{dataset}/summary.csv"
        for model in EVALUATION.models
        for dataset in EVALUATION.tables_to_build()[wildcards.table]
    ]


# ----------------------------------------------------------------------------------------- video (evaluate_video.smk)


def video_options(wildcards):
    """Model size, label, modes, loader options and limit of one (model, video dataset) job as CLI options."""
    args = [
        f"--model-size {EVALUATION.model_size(wildcards.model, TRAIN.model_size)}",
        f"--model-label {EVALUATION.label(wildcards.model)}",
        *(f"--mode {mode}" for mode in VIDEO.modes(wildcards.model)),
    ]
    for key, value in VIDEO.options_for(wildcards.vdataset).items():
        args.append(f"--dataset-option {key}={json.dumps(value)}")
    if VIDEO.limit is not None:
        args.append(f"--limit {VIDEO.limit}")
    return " ".join(args)


def video_targets():
    return [
        f"{RESULTS}/evaluation/video/{model}/{dataset}/{name}"
        for model in VIDEO.models
        for dataset in VIDEO.datasets
        for name in ("summary.csv", "figure.png")
    ]


# ----------------------------------------------------------------------------------------- report


def git_commit():
    """The commit of this checkout (the report says which code produced the numbers)."""
    import subprocess

    proc = subprocess.run(["git", "-C", workflow.basedir, "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else "unknown (not a git checkout)"


def report_run_info():
    """What produced this run's numbers, as `unsamv2 report-tables --run-info` JSON (quoted for the shell)."""
    import shlex

    from unsamv2.report.paper_comparison import RunInfo, config_hash

    checkpoints = {model: EVALUATION.checkpoint(model, RESULTS) for model in EVALUATION.models}
    trained = {f"{RESULTS}/train/final.pt", f"{RESULTS}/train_baseline/final.pt"}
    evaluates_training = any(path in trained for path in checkpoints.values())
    info = RunInfo(
        run=RUN,
        config_hash=config_hash(config),
        git_commit=git_commit(),
        stages=list(STAGES),
        models=list(EVALUATION.models),
        modes={model: list(EVALUATION.modes(model)) for model in EVALUATION.models},
        checkpoints=checkpoints,
        interactive_datasets=list(EVALUATION.datasets),
        interactive_tables={name: list(ds) for name, ds in EVALUATION.tables_to_build().items()},
        backbone=config["backbone"]["name"],
        model_size=TRAIN.model_size,
        n_train_images=None,
        random_init=evaluates_training and TRAIN.base_checkpoint is None,
        synthetic=evaluates_training and config["images"]["source"] == "synthetic",
        max_clicks=EVALUATION.max_clicks,
        whole_image_datasets=list(WHOLE_IMAGE.datasets),
        whole_image_models=list(WHOLE_IMAGE.models),
        video_datasets=list(VIDEO.datasets),
        video_models=list(VIDEO.models),
        experiments={
            name: {
                "model": variant.model,
                "modes": list(variant.evaluation.modes(variant.model)),
                "datasets": list(variant.evaluation.datasets),
                "paper": {table: list(rows) for table, rows in variant.paper.items()},
            }
            for name, variant in EXPERIMENTS.items()
        },
        paper_rows={table: list(rows) for table, rows in
                    paper_rows(config["report"]["paper_rows"], "report.paper_rows").items()},
    )
    return shlex.quote(info.to_json())


def report_table_outputs():
    return {
        "comparison": f"{RESULTS}/report/paper_comparison.csv",
        "tables": f"{RESULTS}/report/tables.md",
        "tables_html": f"{RESULTS}/report/tables.html",
        "first_click": f"{RESULTS}/report/figures/first_click_iou.png",
        **({"ar1000": f"{RESULTS}/report/figures/ar1000_vs_paper.png"} if reports_whole_image() else {}),
    }


def report_table_inputs(wildcards):
    inputs = evaluation_summaries() + variant_evaluation_summaries()
    inputs += [f"{RESULTS}/evaluation/interactive/{table}.csv" for table in EVALUATION.tables_to_build()]
    inputs += whole_image_targets() + video_targets()
    return inputs


def reports_whole_image():
    """The AR@1000 figure beside the paper's bars, when the run evaluates any whole-image benchmark."""
    return bool(WHOLE_IMAGE.datasets and WHOLE_IMAGE.models)


def trains_on_listed_images():
    return "discover" in STAGES or "train" in STAGES


def makes_granularity_strips():
    """Strips of the run's UnSAMv2 on its own images, clicked inside a discovered instance."""
    return "discover" in STAGES and "unsamv2" in EVALUATION.models


def per_object_csvs(wildcards):
    return [
        f"{RESULTS}/evaluation/interactive/{model}/{wildcards.dataset}/per_object.csv"
        for model in EVALUATION.models
    ]


# ----------------------------------------------------------------------------------------- whole-image evaluation


WHOLE_IMAGE_OUT = f"{RESULTS}/evaluation/whole_image"


def whole_image_n_images(dataset):
    """Images the shard plan is made for (the score job checks that gt.json has exactly these)."""
    if dataset == "synthetic":
        n = SYNTHETIC["eval_images"]
    elif dataset == "sa1b":
        n = WHOLE_IMAGE.options_for("sa1b").get("num_images", get_whole_image_benchmark("sa1b").n_images)
    else:
        n = get_whole_image_benchmark(dataset).n_images
    return n if WHOLE_IMAGE.limit is None else min(n, WHOLE_IMAGE.limit)


def whole_image_prepare_inputs(wildcards):
    if wildcards.dataset == "synthetic":
        return ["resources/datasets/synthetic/.prepared"]
    if wildcards.dataset == "sa1b":
        inputs = [f"resources/sa1b/tars/{WHOLE_IMAGE.sa1b_tar}"]
        if config["images"]["source"] == "sa1b":
            inputs.append(f"{RESULTS}/images.txt")  # the held-out ids exclude this run's training images
        return inputs
    return []


def whole_image_prepare_options(wildcards):
    options = dict(WHOLE_IMAGE.options_for(wildcards.dataset))
    args = []
    if wildcards.dataset == "synthetic":
        options["source"] = "resources/datasets/synthetic"
    if wildcards.dataset == "sa1b":
        args.append(f"--sa1b-tar resources/sa1b/tars/{WHOLE_IMAGE.sa1b_tar}")
        if config["images"]["source"] == "sa1b":
            options["exclude_image_list"] = f"{RESULTS}/images.txt"
    args += [f"--dataset-option {key}={json.dumps(value)}" for key, value in options.items()]
    return " ".join(args)


def whole_image_model_options(wildcards):
    return (
        f"--model {wildcards.model} --model-size {EVALUATION.model_size(wildcards.model, TRAIN.model_size)} "
        f"--image-size {EVALUATION.image_size} --device {EVALUATION.device}"
    )


def whole_image_manifests(wildcards):
    n = WHOLE_IMAGE.n_shards(whole_image_n_images(wildcards.dataset))
    return [
        f"{WHOLE_IMAGE_OUT}/{wildcards.model}/{wildcards.dataset}/shards/manifest_{shard}.json"
        for shard in range(n)
    ]


def whole_image_summaries(wildcards=None):
    return [
        f"{WHOLE_IMAGE_OUT}/{model}/{dataset}/summary.csv"
        for model in WHOLE_IMAGE.models
        for dataset in WHOLE_IMAGE.datasets
    ]


def whole_image_targets():
    """What `evaluate` builds for Table 3: every (model, benchmark) summary and, when all of its benchmarks are
    evaluated, table3.csv."""
    targets = whole_image_summaries()
    if WHOLE_IMAGE.builds_table() and WHOLE_IMAGE.models:
        targets.append(f"{WHOLE_IMAGE_OUT}/table3.csv")
    return targets


def whole_image_table_summaries(wildcards):
    return [f"{WHOLE_IMAGE_OUT}/{model}/{dataset}/summary.csv" for model in WHOLE_IMAGE.models
            for dataset in WHOLE_IMAGE.table]
