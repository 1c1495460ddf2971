# Report: statistics of the pseudo-labels (masks per image, instances vs parts, granularity histogram, Fig. 4).


localrules:
    report_pseudo_labels,
    pseudo_label_recall,


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
