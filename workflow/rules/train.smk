# Stage 2: fine-tune SAM-2 with the granularity module on the pseudo-labels (paper §3.4, §4.1).


localrules:
    download_sam2,


rule download_sam2:
    output:
        "resources/checkpoints/sam2.1_hiera_{size}.pt",
    log:
        "logs/download/sam2.1_hiera_{size}.log",
    cache: "omit-software"
    shell:
        "unsamv2 download-sam2 --model-size {wildcards.size} --out {output} > {log} 2>&1"


rule train:
    # {trainrun} = 'train': UnSAMv2. 'train_baseline' (built when evaluation.sam2_checkpoint is 'train_baseline',
    # the offline demo): the SAM-2-style baseline — same data, same budget (the train
    # section), the stock architecture without granularity input, SAM-2's multimask best-of-3 loss.
    # {exp} = "variants/<name>/": a variant of the experiments section, on its Stage-1 shards (common.smk).
    input:
        manifests=train_manifests,
        base=base_checkpoint_inputs,
    output:
        final=f"{RESULTS}/{{exp}}{{trainrun}}/final.pt",
        losses=f"{RESULTS}/{{exp}}{{trainrun}}/losses.csv",
        summary=f"{RESULTS}/{{exp}}{{trainrun}}/train_summary.json",
        curve=report(
            f"{RESULTS}/{{exp}}{{trainrun}}/loss_curve.png",
            caption="../report/loss_curve.rst",
            category="Stage 2: training",
        ),
    params:
        launcher=train_launcher(),
        labels=train_labels,
        images=image_folder(),
        out_dir=lambda wildcards, output: os.path.dirname(output.final),
        settings=train_settings,
    log:
        f"{LOGS}/{{exp}}{{trainrun}}.log",
    benchmark:
        f"{BENCH}/{{exp}}{{trainrun}}.tsv"
    threads: config["train_threads"]
    resources:
        gpu=config["train_gpus"],
        mem_mb=lambda wildcards, attempt: 64000 * attempt,
        runtime=720,
    shell:
        "{params.launcher} train --pseudo-labels {params.labels} --images {params.images} "
        "--out-dir {params.out_dir} --settings {params.settings:q} --resume --threads {threads} --quiet "
        "> {log} 2>&1"
