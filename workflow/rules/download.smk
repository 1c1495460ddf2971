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
        "unsamv2 demo-images --out-dir {output} > {log} 2>&1"


rule synthetic_scenes:
    # Training scenes of the offline experiment (images.source: synthetic). Discovery sees only the images; the
    # ground truth written beside them is for measuring how good the pseudo-labels are, never for training.
    output:
        done=f"{SYNTHETIC_TRAIN}/.done",
    params:
        root=lambda wildcards, output: os.path.dirname(output.done),
        n=SYNTHETIC["train_images"],
        seed=SYNTHETIC["train_seed"],
        size=SYNTHETIC["image_size"],
        depth=SYNTHETIC["depth"],
    log:
        f"{LOGS}/synthetic_scenes.log",
    shell:
        "unsamv2 synthetic --out-dir {params.root} --n-images {params.n} --seed {params.seed} "
        "--image-size {params.size} --depth {params.depth} > {log} 2>&1 && echo {params.n} > {output.done}"


rule fetch_sa1b_tar:
    # The links file is user-supplied (SA-1B licence); it is a param, not an input, so that a dry run works
    # without it and the job itself fails with a message saying what it is and where to get it.
    output:
        tar="resources/sa1b/tars/{tar}",
    params:
        links=config["sa1b"]["links_file"],
        dest=lambda wildcards, output: os.path.dirname(output.tar),
    log:
        "logs/download/sa1b_{tar}.log",
    resources:
        runtime=240,
    shell:
        "unsamv2 fetch-sa1b --links-file {params.links} --tar {wildcards.tar} --out-dir {params.dest} > {log} 2>&1"


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
        "unsamv2 extract-images {input} --out-dir {params.out_dir} --out {output.done} > {log} 2>&1"


rule download_backbone:
    output:
        directory("resources/backbones/{name}"),
    log:
        "logs/download/backbone_{name}.log",
    cache: "omit-software"
    shell:
        "unsamv2 download-backbone {wildcards.name} --out-dir {output} > {log} 2>&1"
