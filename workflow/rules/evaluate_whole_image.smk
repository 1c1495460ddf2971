# Whole-image segmentation (paper §4.2, Table 3): each benchmark converted to one class-agnostic COCO gt.json, masks
# generated per (model, benchmark) in shards of whole_image.shard_size images (a finished shard is never recomputed),
# merged and scored (AR@1000), then the average over the benchmarks (table3.csv). Helpers: rules/common.smk.


localrules:
    prepare_whole_image,
    average_whole_image,


rule prepare_whole_image:
    # Downloads what upstream publishes; EntitySeg (licence) and the SA-1B links file are user-supplied and the
    # job stops with a message naming the missing file and where to get it.
    input:
        whole_image_prepare_inputs,
    output:
        gt="resources/whole_image/{dataset}/gt.json",
    params:
        root=lambda wildcards, output: os.path.dirname(output.gt),
        options=whole_image_prepare_options,
    log:
        "logs/download/whole_image_{dataset}.log",
    shell:
        "unsamv2 prepare-whole-image {wildcards.dataset} --out-dir {params.root} {params.options} > {log} 2>&1"


rule whole_image_shard:
    input:
        gt="resources/whole_image/{dataset}/gt.json",
        checkpoint=evaluation_checkpoint,
    output:
        manifest=f"{WHOLE_IMAGE_OUT}/{{model}}/{{dataset}}/shards/manifest_{{shard}}.json",
    params:
        shard_dir=lambda wildcards, output: os.path.dirname(output.manifest),
        model=whole_image_model_options,
        settings=WHOLE_IMAGE.to_json(),
    log:
        f"{LOGS}/evaluate_whole_image/{{model}}_{{dataset}}_{{shard}}.log",
    benchmark:
        f"{BENCH}/evaluate_whole_image/{{model}}_{{dataset}}_{{shard}}.tsv"
    # On CPU the decoder keeps one core busy per job; two one-thread jobs side by side beat one two-thread job.
    threads: 4 if EVALUATION.uses_gpu else 1
    resources:
        gpu=int(EVALUATION.uses_gpu),
        mem_mb=lambda wildcards, attempt: 16000 * attempt,
        runtime=720,
    shell:
        "unsamv2 whole-image-shard --gt {input.gt} {params.model} --checkpoint {input.checkpoint} "
        "--settings {params.settings:q} --shard {wildcards.shard} --shard-dir {params.shard_dir} "
        "--out {output.manifest} --threads {threads} --quiet > {log} 2>&1"


rule evaluate_whole_image:
    input:
        gt="resources/whole_image/{dataset}/gt.json",
        manifests=whole_image_manifests,
    output:
        summary=report(
            f"{WHOLE_IMAGE_OUT}/{{model}}/{{dataset}}/summary.csv",
            caption="../report/whole_image_summary.rst",
            category="Evaluation: whole image",
            subcategory="{dataset}",
        ),
        per_granularity=report(
            f"{WHOLE_IMAGE_OUT}/{{model}}/{{dataset}}/ar_per_granularity.csv",
            caption="../report/whole_image_per_granularity.rst",
            category="Evaluation: whole image",
            subcategory="{dataset}",
        ),
        per_image=report(
            f"{WHOLE_IMAGE_OUT}/{{model}}/{{dataset}}/masks_per_image.csv",
            caption="../report/whole_image_masks_per_image.rst",
            category="Evaluation: whole image",
            subcategory="{dataset}",
        ),
        results=f"{WHOLE_IMAGE_OUT}/{{model}}/{{dataset}}/results.json",
        run=f"{WHOLE_IMAGE_OUT}/{{model}}/{{dataset}}/run.json",
        failures=f"{WHOLE_IMAGE_OUT}/{{model}}/{{dataset}}/failures.json",
    params:
        out_dir=lambda wildcards, output: os.path.dirname(output.summary),
        shard_dir=lambda wildcards, input: os.path.dirname(input.manifests[0]),
        model=whole_image_model_options,
        label=lambda wildcards: EVALUATION.label(wildcards.model),
        expected=lambda wildcards: whole_image_n_images(wildcards.dataset),
        settings=WHOLE_IMAGE.to_json(),
    log:
        f"{LOGS}/evaluate_whole_image/{{model}}_{{dataset}}_score.log",
    benchmark:
        f"{BENCH}/evaluate_whole_image/{{model}}_{{dataset}}_score.tsv"
    resources:
        mem_mb=lambda wildcards, attempt: 16000 * attempt,
        runtime=240,
    shell:
        "unsamv2 score-whole-image --gt {input.gt} {params.model} --model-label {params.label} "
        "--dataset {wildcards.dataset} --settings {params.settings:q} --manifests {input.manifests} "
        "--shard-dir {params.shard_dir} --expected-images {params.expected} --out-dir {params.out_dir} "
        "> {log} 2>&1"


rule average_whole_image:
    input:
        summaries=whole_image_table_summaries,
    output:
        table=report(
            f"{WHOLE_IMAGE_OUT}/table3.csv",
            caption="../report/whole_image_table.rst",
            category="Evaluation: whole image",
        ),
    params:
        datasets=",".join(WHOLE_IMAGE.table),
    log:
        f"{LOGS}/evaluate_whole_image/table3.log",
    shell:
        "unsamv2 average-whole-image --summaries {input.summaries} --datasets {params.datasets} "
        "--out {output.table} > {log} 2>&1"
