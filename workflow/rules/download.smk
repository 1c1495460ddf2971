# Downloads and local data preparation. Short, network-bound jobs run on the submitting host (localrules).


localrules:
    demo_images,
    synthetic_scenes,
    fetch_sa1b_tar,
    extract_sa1b,
    download_backbone,


rule demo_images:
    output:
        directory("resources/demo/images"),
    log:
        "logs/download/demo_images.log",
    shell:
        "unsamv2 demo-images {output} > {log} 2>&1"


rule synthetic_scenes:
    # Training scenes of the offline experiment (images.source: synthetic). Discovery sees only the images; the
    # ground truth written beside them is for measuring how good the pseudo-labels are, never for training.
    output:
        done=f"{SYNTHETIC_TRAIN}/.done",
    params:
        root=lambda wildcards, output: os.path.dirname(output.done),
        n=synthetic_config().get("train_images", 128),
        seed=synthetic_config().get("train_seed", 0),
        size=synthetic_config().get("image_size", 256),
    log:
        f"{LOGS}/synthetic_scenes.log",
    shell:
        "unsamv2 synthetic {params.root} --n {params.n} --seed {params.seed} --size {params.size} {params.size} "
        "> {log} 2>&1 && echo {params.n} > {output.done}"


rule fetch_sa1b_tar:
    # The links file is user-supplied (SA-1B licence); it is a param, not an input, so that a dry run works
    # without it and the job itself fails with a message saying what it is and where to get it.
    output:
        tar="resources/sa1b/tars/{tar}",
    params:
        links=config.get("sa1b", {}).get("links_file", "resources/sa1b/sa1b_links.tsv"),
        dest=lambda wildcards, output: os.path.dirname(output.tar),
    log:
        "logs/download/sa1b_{tar}.log",
    resources:
        runtime=240,
    shell:
        "unsamv2 fetch-sa1b --links-file {params.links} --tar {wildcards.tar} --dest-dir {params.dest} > {log} 2>&1"


rule extract_sa1b:
    input:
        "resources/sa1b/tars/{tar}",
    output:
        done="resources/sa1b/images/{tar}.txt",
    params:
        out_dir=lambda wildcards, output: os.path.dirname(output.done),
    log:
        "logs/download/extract_{tar}.log",
    shell:
        "unsamv2 extract-images {input} {params.out_dir} --done {output.done} > {log} 2>&1"


rule download_backbone:
    output:
        directory("resources/backbones/{name}"),
    log:
        "logs/download/backbone_{name}.log",
    cache: "omit-software"
    shell:
        "unsamv2 download-backbone {wildcards.name} {output} > {log} 2>&1"
