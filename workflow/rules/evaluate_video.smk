# Video at a granularity (DAVIS-2017 semi-supervised protocol with one click per object, method.md §5.3): one job per
# (model, video dataset). Models and weights are the evaluation section's, so SAM-2's baselines share the run.


localrules:
    synthetic_video_benchmark,


rule synthetic_video_benchmark:
    # Animated synthetic scenes in the DAVIS-2017 layout (the offline video benchmark); the params are part of the
    # job's identity, so another seed or size regenerates them.
    output:
        done="resources/datasets/synthetic_video/.prepared",
    params:
        root=lambda wildcards, output: os.path.dirname(output.done),
        n=VIDEO.synthetic_sequences,
        frames=VIDEO.synthetic_frames,
        size=VIDEO.synthetic_size,
        seed=VIDEO.synthetic_seed,
    log:
        "logs/download/dataset_synthetic_video.log",
    shell:
        "unsamv2 synthetic-video --out-dir {params.root} --n-sequences {params.n} --n-frames {params.frames} "
        "--image-size {params.size} --seed {params.seed} > {log} 2>&1 && echo synthetic_video > {output.done}"


rule evaluate_video:
    input:
        data="resources/datasets/{vdataset}/.prepared",
        checkpoint=evaluation_checkpoint,
    output:
        summary=report(
            f"{RESULTS}/evaluation/video/{{model}}/{{vdataset}}/summary.csv",
            caption="../report/video_summary.rst",
            category="Evaluation: video",
            subcategory="{vdataset}",
        ),
        per_object=f"{RESULTS}/evaluation/video/{{model}}/{{vdataset}}/per_object.csv",
        run=f"{RESULTS}/evaluation/video/{{model}}/{{vdataset}}/run.json",
        failures=f"{RESULTS}/evaluation/video/{{model}}/{{vdataset}}/failures.json",
        figure=report(
            f"{RESULTS}/evaluation/video/{{model}}/{{vdataset}}/figure.png",
            caption="../report/video_figure.rst",
            category="Evaluation: video",
            subcategory="{vdataset}",
        ),
    # masks/<mode>/<sequence>/ (the DAVIS-format predictions) is not declared: Snakemake would delete it before a
    # rerun, and its finished sequences are what an interrupted job resumes from.
    wildcard_constraints:
        vdataset=r"[a-z0-9_]+",
    params:
        root=lambda wildcards, input: os.path.dirname(input.data),
        out_dir=lambda wildcards, output: os.path.dirname(output.summary),
        options=video_options,
        image_size=EVALUATION.image_size,
        device=EVALUATION.device,
    log:
        f"{LOGS}/evaluate/video_{{model}}_{{vdataset}}.log",
    benchmark:
        f"{BENCH}/evaluate/video_{{model}}_{{vdataset}}.tsv"
    threads: 4
    resources:
        gpu=int(EVALUATION.uses_gpu),
        mem_mb=lambda wildcards, attempt: 16000 * attempt,
        runtime=720,
    shell:
        "unsamv2 evaluate-video --dataset {wildcards.vdataset} --root {params.root} --model {wildcards.model} "
        "--checkpoint {input.checkpoint} {params.options} --image-size {params.image_size} "
        "--device {params.device} --out-dir {params.out_dir} --threads {threads} --quiet > {log} 2>&1"

