# Report: statistics of the pseudo-labels (masks per image, instances vs parts, granularity histogram, Fig. 4),
# this run's numbers beside the paper's tables, and the comparison figures.


localrules:
    report_pseudo_labels,
    pseudo_label_recall,
    report_tables,
    report_interactive_curves,


rule report_pseudo_labels:
    input:
        manifests=expand(f"{RESULTS}/pseudo_labels/manifests/{{shard}}.tsv", shard=SHARDS),
        images=f"{RESULTS}/images.txt",
    output:
        summary=report(
            f"{RESULTS}/report/pseudo_labels/summary.csv",
            caption="../report/pseudo_label_summary.rst",
            category="Stage 1: pseudo-labels",
        ),
        per_image=f"{RESULTS}/report/pseudo_labels/per_image.csv",
        failures=f"{RESULTS}/report/pseudo_labels/failures.csv",
        histogram_counts=f"{RESULTS}/report/pseudo_labels/granularity_histogram.csv",
        histogram=report(
            f"{RESULTS}/report/pseudo_labels/granularity_histogram.png",
            caption="../report/granularity_histogram.rst",
            category="Stage 1: pseudo-labels",
        ),
        examples=report(
            f"{RESULTS}/report/pseudo_labels/examples.png",
            caption="../report/pseudo_label_examples.rst",
            category="Stage 1: pseudo-labels",
        ),
    params:
        labels_dir=f"{RESULTS}/pseudo_labels/json",
        out_dir=lambda wildcards, output: os.path.dirname(output.summary),
        bins=config["report"]["histogram_bins"],
        run=RUN,
    log:
        f"{LOGS}/report_pseudo_labels.log",
    shell:
        "unsamv2 report-pseudo-labels --pseudo-labels {params.labels_dir} --manifests {input.manifests} "
        "--out-dir {params.out_dir} --bins {params.bins} --run {params.run} --image-list {input.images} > {log} 2>&1"


rule pseudo_label_recall:
    # Only for generated scenes (images.source: synthetic), whose ground truth is known: how much of the true
    # object/part/sub-part hierarchy Stage 1 recovered, before any training.
    input:
        manifests=expand(f"{RESULTS}/pseudo_labels/manifests/{{shard}}.tsv", shard=SHARDS),
        scenes=f"{SYNTHETIC_TRAIN}/.done",
    output:
        report(
            f"{RESULTS}/report/pseudo_labels/recall_vs_ground_truth.csv",
            caption="../report/pseudo_label_recall.rst",
            category="Stage 1: pseudo-labels",
        ),
    params:
        labels_dir=f"{RESULTS}/pseudo_labels/json",
        annotations=f"{SYNTHETIC_TRAIN}/annotations",
    log:
        f"{LOGS}/pseudo_label_recall.log",
    shell:
        "unsamv2 pseudo-label-recall --pseudo-labels {params.labels_dir} --annotations {params.annotations} "
        "--out {output} > {log} 2>&1"


rule report_tables:
    # Tables 1-3 of the paper beside this run's numbers (missing values explained, never zero), the run's own
    # tables (e.g. the demo's) and the first-click IoU of every evaluated model and mode.
    input:
        summaries=report_table_inputs,
        images=f"{RESULTS}/images.txt" if trains_on_listed_images() else [],
    output:
        comparison=report(
            report_table_outputs()["comparison"],
            caption="../report/paper_comparison.rst",
            category="Comparison with the paper",
        ),
        tables=report_table_outputs()["tables"],
        tables_html=report(
            report_table_outputs()["tables_html"],
            caption="../report/paper_tables.rst",
            category="Comparison with the paper",
        ),
        first_click=report(
            report_table_outputs()["first_click"],
            caption="../report/first_click_iou.rst",
            category="Comparison with the paper",
        ),
        **(
            {
                "ar1000": report(
                    report_table_outputs()["ar1000"],
                    caption="../report/ar1000_vs_paper.rst",
                    category="Comparison with the paper",
                )
            }
            if reports_whole_image()
            else {}
        ),
    params:
        run_info=report_run_info(),
        run_dir=lambda wildcards, output: os.path.dirname(os.path.dirname(output.comparison)),
        out_dir=lambda wildcards, output: os.path.dirname(output.comparison),
        image_list=lambda wildcards, input: f"--image-list {input.images}" if input.images else "",
        ar_figure=lambda wildcards, output: f"--ar-figure {output.ar1000}" if reports_whole_image() else "",
    log:
        f"{LOGS}/report_tables.log",
    shell:
        "unsamv2 report-tables --run-dir {params.run_dir} --run-info {params.run_info} {params.image_list} "
        "--out-dir {params.out_dir} --first-click-figure {output.first_click} {params.ar_figure} > {log} 2>&1"


rule report_interactive_curves:
    # Mean IoU vs number of clicks on one benchmark, every evaluated model and mode in one plot.
    input:
        per_object_csvs,
    output:
        report(
            f"{RESULTS}/report/figures/iou_vs_clicks_{{dataset}}.png",
            caption="../report/iou_vs_clicks.rst",
            category="Evaluation: interactive",
            subcategory="{dataset}",
        ),
    params:
        max_clicks=EVALUATION.max_clicks,
    log:
        f"{LOGS}/report_iou_vs_clicks_{{dataset}}.log",
    shell:
        "unsamv2 plot-interactive --per-object {input} --dataset {wildcards.dataset} "
        "--max-clicks {params.max_clicks} --out {output} > {log} 2>&1"


rule report_granularity_strips:
    # One click inside the largest discovered instance of each of the run's first images, masks at g = 0.1 ... 1.0.
    input:
        checkpoint=lambda wildcards: EVALUATION.checkpoint("unsamv2", RESULTS),
        images=f"{RESULTS}/images.txt",
        manifests=expand(f"{RESULTS}/pseudo_labels/manifests/{{shard}}.tsv", shard=SHARDS),
    output:
        report(
            f"{RESULTS}/report/figures/granularity_strips.png",
            caption="../report/granularity_strips.rst",
            category="Comparison with the paper",
        ),
    params:
        labels_dir=f"{RESULTS}/pseudo_labels/json",
        model_size=EVALUATION.model_size("unsamv2", TRAIN.model_size),
        image_size=EVALUATION.image_size,
        device=EVALUATION.device,
    log:
        f"{LOGS}/report_granularity_strips.log",
    threads: 2
    resources:
        gpu=int(EVALUATION.uses_gpu),
    shell:
        "unsamv2 report-strips --checkpoint {input.checkpoint} --model-size {params.model_size} "
        "--image-size {params.image_size} --device {params.device} --image-list {input.images} "
        "--pseudo-labels {params.labels_dir} --out {output} --threads {threads} > {log} 2>&1"


rule report_whole_image_figure:
    # Whole-image masks of the run's UnSAMv2 at g = 0.2 / 0.5 / 0.8 and pooled over 0.1 ... 1.0, on its first images,
    # with the evaluation's automatic-mask grid.
    input:
        checkpoint=lambda wildcards: EVALUATION.checkpoint("unsamv2", RESULTS),
        images=f"{RESULTS}/images.txt",
    output:
        report(
            f"{RESULTS}/report/figures/whole_image_masks.png",
            caption="../report/whole_image_masks.rst",
            category="Comparison with the paper",
        ),
    params:
        model_size=EVALUATION.model_size("unsamv2", TRAIN.model_size),
        image_size=EVALUATION.image_size,
        device=EVALUATION.device,
        points_per_side=WHOLE_IMAGE.points_per_side,
    log:
        f"{LOGS}/report_whole_image_figure.log",
    threads: 2
    resources:
        gpu=int(EVALUATION.uses_gpu),
    shell:
        "unsamv2 report-whole-image --checkpoint {input.checkpoint} --model-size {params.model_size} "
        "--image-size {params.image_size} --device {params.device} --image-list {input.images} "
        "--points-per-side {params.points_per_side} --out {output} --threads {threads} > {log} 2>&1"
