# Stage 2: fine-tune SAM-2 with the granularity module on the pseudo-labels (method.md §3).


localrules:
    download_sam2,


rule download_sam2:
    output:
        "resources/checkpoints/sam2.1_hiera_{size}.pt",
    log:
        "logs/download/sam2.1_hiera_{size}.log",
    cache: "omit-software"
    shell:
        "unsamv2 download-sam2 {wildcards.size} {output} > {log} 2>&1"


rule train:
    input:
        manifests=expand(f"{RESULTS}/pseudo_labels/manifests/{{shard}}.tsv", shard=SHARDS),
        base=base_checkpoint_inputs,
    output:
        final=f"{RESULTS}/train/final.pt",
        losses=f"{RESULTS}/train/losses.csv",
        curve=report(
            f"{RESULTS}/train/loss_curve.png",
            caption="../report/loss_curve.rst",
            category="Stage 2: training",
        ),
    params:
        launcher=train_launcher(),
        labels=f"{RESULTS}/pseudo_labels/json",
        images=image_folder(),
        out_dir=lambda wildcards, output: os.path.dirname(output.final),
        settings=train_settings(),
    log:
        f"{LOGS}/train.log",
    benchmark:
        f"{BENCH}/train.tsv"
    threads: 8
    resources:
        gpu=config.get("train_gpus", 1),
        mem_mb=64000,
        runtime=720,
    shell:
        "{params.launcher} train --pseudo-labels {params.labels} --images {params.images} "
        "--out-dir {params.out_dir} --settings {params.settings:q} --resume > {log} 2>&1"


rule train_baseline:
    # The SAM-2-style ablation (the paper's Fig. 10): same data, same budget (the train section), the stock
    # architecture without granularity input, trained with SAM-2's multimask best-of-3 loss. Built only when
    # evaluation.sam2_checkpoint is 'train_baseline' (the offline demo).
    input:
        manifests=expand(f"{RESULTS}/pseudo_labels/manifests/{{shard}}.tsv", shard=SHARDS),
        base=base_checkpoint_inputs,
    output:
        final=f"{RESULTS}/train_baseline/final.pt",
        losses=f"{RESULTS}/train_baseline/losses.csv",
        curve=report(
            f"{RESULTS}/train_baseline/loss_curve.png",
            caption="../report/loss_curve_baseline.rst",
            category="Stage 2: training",
        ),
    params:
        launcher=train_launcher(),
        labels=f"{RESULTS}/pseudo_labels/json",
        images=image_folder(),
        out_dir=lambda wildcards, output: os.path.dirname(output.final),
        settings=train_settings(baseline=True),
    log:
        f"{LOGS}/train_baseline.log",
    benchmark:
        f"{BENCH}/train_baseline.tsv"
    threads: 8
    resources:
        gpu=config.get("train_gpus", 1),
        mem_mb=64000,
        runtime=720,
    shell:
        "{params.launcher} train --pseudo-labels {params.labels} --images {params.images} "
        "--out-dir {params.out_dir} --settings {params.settings:q} --resume > {log} 2>&1"
