# Stage 1: granularity-aware divide-and-conquer (paper §3.3) in shards, then granularity scoring.


localrules:
    select_images,


rule select_images:
    input:
        image_source_inputs,
    output:
        f"{RESULTS}/images.txt",
    params:
        folder=image_folder(),
        id_list=f"--id-list {config['images']['id_list']}" if config["images"]["id_list"] else "",
        max_images=config["images"]["max_images"],
    log:
        f"{LOGS}/select_images.log",
    shell:
        "unsamv2 select-images --images {params.folder} {params.id_list} --max-images {params.max_images} "
        "--out {output} > {log} 2>&1"


rule discover_shard:
    # {stage1} = "stage1/<digest>/": the Stage 1 of variants whose discovery settings differ from the run's, on
    # the run's image list (rules/common.smk, stage1_discovery).
    input:
        images=f"{RESULTS}/images.txt",
        backbone=backbone_inputs,
    output:
        manifest=f"{RESULTS}/{{stage1}}discovery/manifests/{{shard}}.tsv",
    params:
        out_dir=lambda wildcards: f"{RESULTS}/{wildcards.stage1}discovery/raw",
        shard_size=config["images"]["shard_size"],
        backbone=config["backbone"]["name"],
        weights=f"--weights {backbone_weights()}" if backbone_weights() else "",
        settings=lambda wildcards: stage1_discovery(wildcards).to_json(),
    log:
        f"{LOGS}/{{stage1}}discover/{{shard}}.log",
    benchmark:
        f"{BENCH}/{{stage1}}discover/{{shard}}.tsv"
    # The offline backbone's work (NumPy features, MaskCut's eigensolver, merging) keeps about one core busy
    # (measured: CPU time ≈ wall time per shard), so its shards run one per core.
    threads: 1 if config["backbone"]["name"] == "offline" else 2
    resources:
        mem_mb=lambda wildcards, attempt: 16000 * attempt,
        runtime=600,
        gpu=lambda wildcards: int(stage1_discovery(wildcards).uses_gpu),
    shell:
        "unsamv2 discover --image-list {input.images} --shard {wildcards.shard} --shard-size {params.shard_size} "
        "--backbone {params.backbone} {params.weights} --settings {params.settings:q} "
        "--out-dir {params.out_dir} --out {output.manifest} --threads {threads} --quiet > {log} 2>&1"


rule score_shard:
    input:
        manifest=f"{RESULTS}/{{stage1}}discovery/manifests/{{shard}}.tsv",
    output:
        manifest=f"{RESULTS}/{{stage1}}pseudo_labels/manifests/{{shard}}.tsv",
    params:
        raw_dir=lambda wildcards: f"{RESULTS}/{wildcards.stage1}discovery/raw",
        out_dir=lambda wildcards: f"{RESULTS}/{wildcards.stage1}pseudo_labels/json",
        formula=config["granularity"]["formula"],
    log:
        f"{LOGS}/{{stage1}}score/{{shard}}.log",
    resources:
        mem_mb=lambda wildcards, attempt: 2000 * attempt,
        runtime=30,
    shell:
        "unsamv2 score --manifest {input.manifest} --raw-labels {params.raw_dir} --out-dir {params.out_dir} "
        "--out {output.manifest} --formula {params.formula} > {log} 2>&1"
