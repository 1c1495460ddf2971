# Interactive evaluation (method.md §5.1): one job per (model, benchmark), then the paper's averaged rows.


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
        "unsamv2 prepare-dataset {wildcards.dataset} {params.root} --done {output.done} > {log} 2>&1"


ruleorder: synthetic_benchmark > prepare_dataset


rule synthetic_benchmark:
    # Held-out synthetic scenes with ground truth at every level (the offline benchmark); the params are part of
    # the job's identity, so another seed or size regenerates them.
    output:
        done="resources/datasets/synthetic/.prepared",
    params:
        root=lambda wildcards, output: os.path.dirname(output.done),
        n=synthetic_config().get("eval_images", 20),
        seed=synthetic_config().get("eval_seed", 999),
        size=synthetic_config().get("image_size", 256),
    log:
        "logs/download/dataset_synthetic.log",
    shell:
        "unsamv2 synthetic {params.root} --n {params.n} --seed {params.seed} --size {params.size} {params.size} "
        "> {log} 2>&1 && echo synthetic > {output.done}"


rule evaluate_interactive:
    input:
        data="resources/datasets/{dataset}/.prepared",
        checkpoint=evaluation_checkpoint,
    output:
        summary=f"{RESULTS}/evaluation/interactive/{{model}}/{{dataset}}/summary.csv",
        per_object=f"{RESULTS}/evaluation/interactive/{{model}}/{{dataset}}/per_object.csv",
    params:
        root=lambda wildcards, input: os.path.dirname(input.data),
        out_dir=lambda wildcards, output: os.path.dirname(output.summary),
        modes=evaluation_modes,
        size=evaluation_model_size,
        options=evaluation_model_options,
        image_size=config["evaluation"].get("image_size", 1024),
        max_clicks=config["evaluation"].get("max_clicks", 20),
        limit=evaluation_limit(),
        device=config["evaluation"].get("device", "cuda"),
    log:
        f"{LOGS}/evaluate/{{model}}_{{dataset}}.log",
    benchmark:
        f"{BENCH}/evaluate/{{model}}_{{dataset}}.tsv"
    threads: 4
    resources:
        gpu=evaluation_gpu(),
        mem_mb=16000,
        runtime=720,
    shell:
        "unsamv2 evaluate-interactive --dataset {wildcards.dataset} --root {params.root} "
        "--model {wildcards.model} --checkpoint {input.checkpoint} --size {params.size} "
        "--image-size {params.image_size} {params.options} {params.modes} --max-clicks {params.max_clicks} {params.limit} "
        "--device {params.device} --out-dir {params.out_dir} > {log} 2>&1"


rule average_interactive:
    input:
        summaries=table_summaries,
    output:
        table=f"{RESULTS}/evaluation/interactive/{{table}}.csv",
    params:
        datasets=lambda wildcards: ",".join(evaluation_tables()[wildcards.table]),
    log:
        f"{LOGS}/evaluate/average_{{table}}.log",
    shell:
        "unsamv2 average-interactive --summaries {input.summaries} --datasets {params.datasets} "
        "--out {output.table} > {log} 2>&1"
