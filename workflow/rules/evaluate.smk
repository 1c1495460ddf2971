# Interactive evaluation (paper §4.2): one job per (model, benchmark), then the paper's averaged rows.


localrules:
    prepare_dataset,
    synthetic_benchmark,
    average_interactive,


rule prepare_dataset:
    output:
        done="resources/datasets/{dataset}/.prepared",
    params:
        root=lambda wildcards, output: os.path.dirname(output.done),
    log:
        "logs/download/dataset_{dataset}.log",
    shell:
        "unsamv2 prepare-dataset {wildcards.dataset} --out-dir {params.root} --out {output.done} > {log} 2>&1"


ruleorder: synthetic_benchmark > prepare_dataset


rule synthetic_benchmark:
    # Held-out synthetic scenes with ground truth at every level (the offline benchmark); the params are part of
    # the job's identity, so another seed or size regenerates them.
    output:
        done="resources/datasets/synthetic/.prepared",
    params:
        root=lambda wildcards, output: os.path.dirname(output.done),
        n=SYNTHETIC["eval_images"],
        seed=SYNTHETIC["eval_seed"],
        size=SYNTHETIC["image_size"],
        depth=SYNTHETIC["depth"],
    log:
        "logs/download/dataset_synthetic.log",
    shell:
        "unsamv2 synthetic --out-dir {params.root} --n-images {params.n} --seed {params.seed} "
        "--image-size {params.size} --depth {params.depth} > {log} 2>&1 && echo synthetic > {output.done}"


rule evaluate_interactive:
    # {exp} = "variants/<name>/": a variant's own model (rules/common.smk, evaluation_config).
    input:
        data="resources/datasets/{dataset}/.prepared",
        checkpoint=evaluation_checkpoint,
    output:
        summary=report(
            f"{RESULTS}/{{exp}}evaluation/interactive/{{model}}/{{dataset}}/summary.csv",
            caption="../report/interactive_summary.rst",
            category="Evaluation: interactive",
            subcategory="{dataset}",
        ),
        per_object=f"{RESULTS}/{{exp}}evaluation/interactive/{{model}}/{{dataset}}/per_object.csv",
        run=f"{RESULTS}/{{exp}}evaluation/interactive/{{model}}/{{dataset}}/run.json",
        failures=f"{RESULTS}/{{exp}}evaluation/interactive/{{model}}/{{dataset}}/failures.json",
        curve=report(
            f"{RESULTS}/{{exp}}evaluation/interactive/{{model}}/{{dataset}}/miou_curve.png",
            caption="../report/miou_curve.rst",
            category="Evaluation: interactive",
            subcategory="{dataset}",
        ),
    params:
        root=lambda wildcards, input: os.path.dirname(input.data),
        out_dir=lambda wildcards, output: os.path.dirname(output.summary),
        options=evaluation_options,
        image_size=lambda wildcards: evaluation_config(wildcards).image_size,
        max_clicks=lambda wildcards: evaluation_config(wildcards).max_clicks,
        device=lambda wildcards: evaluation_config(wildcards).device,
    log:
        f"{LOGS}/{{exp}}evaluate/{{model}}_{{dataset}}.log",
    benchmark:
        f"{BENCH}/{{exp}}evaluate/{{model}}_{{dataset}}.tsv"
    threads: 4
    resources:
        gpu=lambda wildcards: int(evaluation_config(wildcards).uses_gpu),
        mem_mb=lambda wildcards, attempt: 16000 * attempt,
        runtime=720,
    shell:
        "unsamv2 evaluate-interactive --dataset {wildcards.dataset} --root {params.root} "
        "--model {wildcards.model} --checkpoint {input.checkpoint} {params.options} "
        "--image-size {params.image_size} --max-clicks {params.max_clicks} --device {params.device} "
        "--out-dir {params.out_dir} --threads {threads} --quiet > {log} 2>&1"


rule average_interactive:
    input:
        summaries=table_summaries,
    output:
        table=report(
            f"{RESULTS}/evaluation/interactive/{{table}}.csv",
            caption="../report/interactive_table.rst",
            category="Evaluation: interactive",
        ),
    params:
        datasets=lambda wildcards: ",".join(EVALUATION.tables_to_build()[wildcards.table]),
    log:
        f"{LOGS}/evaluate/average_{{table}}.log",
    shell:
        "unsamv2 average-interactive --summaries {input.summaries} --datasets {params.datasets} "
        "--out {output.table} > {log} 2>&1"


rule interactive_levels:
    # Synthetic held-out scenes only (their regions carry a level): first-click IoU per level (object, part,
    # sub-part, ...) for every evaluated model and mode, the offline demo's table.
    input:
        per_object=expand(f"{RESULTS}/evaluation/interactive/{{model}}/synthetic/per_object.csv",
                          model=EVALUATION.models),
        data="resources/datasets/synthetic/.prepared",
    output:
        report(
            f"{RESULTS}/evaluation/interactive/per_level/synthetic.csv",
            caption="../report/interactive_levels.rst",
            category="Evaluation: interactive",
        ),
    params:
        annotations=lambda wildcards, input: os.path.join(os.path.dirname(input.data), "annotations"),
    log:
        f"{LOGS}/evaluate/interactive_levels_synthetic.log",
    shell:
        "unsamv2 interactive-levels --per-object {input.per_object} --annotations {params.annotations} "
        "--out {output} > {log} 2>&1"
