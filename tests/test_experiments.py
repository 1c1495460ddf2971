"""The paper's experiments as variants of a run (config section ``experiments``, config/ablations.yaml): what they
share with the run, the jobs Snakemake plans for them, errors naming the variant's key, and two tiny variants end to
end on synthetic scenes.
"""
from __future__ import annotations

import copy
import csv
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from snakemake.utils import update_config

from tests.snakemake_runs import REPO, copy_workflow, job_counts, run_snakemake
from tests.toy_workflow import toy_workdir
from unsamv2.experiments import experiments_from_config, paper_rows
from unsamv2.report.paper_comparison import ABLATION_TABLES, read_paper_values


def _load(*names: str) -> dict[str, Any]:
    """Config files merged as Snakemake merges several --configfile (later files update earlier ones)."""
    config: dict[str, Any] = {}
    for name in names:
        update_config(config, yaml.safe_load((REPO / "config" / name).read_text()))
    return config


def _paper_config(**experiments: Any) -> dict[str, Any]:
    config = _load("config.yaml")
    config["experiments"] = experiments
    return config








# ------------------------------------------------------------------------------------------------ settings


def test_a_variant_that_keeps_discovery_shares_the_runs_stage1() -> None:
    variants = experiments_from_config(_paper_config(lora_r4={"train": {"lora_rank": 4}},
                                                     fourier_64={"train": {"fourier_dim": 64}}))
    for variant in variants.values():
        assert variant.stage1 == "" and variant.stage1_prefix == ""
        assert variant.max_images == 6000 and variant.n_shards(250) == 24
        assert variant.model == "unsamv2" and variant.evaluation.models == ("unsamv2",)
    assert variants["lora_r4"].train.lora_rank == 4 and variants["lora_r4"].train.fourier_dim == 128
    assert variants["fourier_64"].train.fourier_dim == 64 and variants["fourier_64"].train.lora_rank == 8
    # The rest is the run's: same recipe, resolved base checkpoint, evaluation settings.
    assert variants["lora_r4"].train.base_checkpoint == "resources/checkpoints/sam2.1_hiera_small.pt"
    assert variants["lora_r4"].evaluation.datasets == tuple(_load("config.yaml")["evaluation"]["datasets"])
    assert variants["lora_r4"].checkpoint("results/paper") == "results/paper/variants/lora_r4/train/final.pt"


def test_equal_discovery_settings_share_one_stage1_and_other_settings_get_another() -> None:
    variants = experiments_from_config(_paper_config(
        a={"discovery": {"maskcut_masks": 5}},
        b={"discovery": {"maskcut_masks": 5}, "train": {"lora_rank": 4}},
        c={"discovery": {"maskcut_masks": 6}},
        same={"discovery": {"maskcut_masks": 3}},  # the run's own value: nothing changes
    ))
    assert variants["a"].stage1 == variants["b"].stage1 != variants["c"].stage1
    assert len(variants["a"].stage1) == 12 and int(variants["a"].stage1, 16) >= 0
    assert variants["a"].stage1_prefix == f"stage1/{variants['a'].stage1}/"
    assert variants["same"].stage1 == ""
    assert variants["a"].discovery.maskcut_masks == 5 and variants["a"].discovery.maskcut_tau == 0.15


def test_a_subset_of_images_reads_the_first_shards_and_cuts_the_last() -> None:
    variants = experiments_from_config(_paper_config(k1={"images": {"max_images": 1000}},
                                                     k3={"images": {"max_images": 3100}}))
    assert variants["k1"].n_shards(250) == 4 and variants["k1"].train.max_images == 1000
    assert variants["k3"].n_shards(250) == 13 and variants["k3"].train.max_images == 3100  # 13th shard: 100 of 250
    assert variants["k1"].stage1 == ""


def test_the_variant_without_the_granularity_module_is_evaluated_as_sam2() -> None:
    variant = experiments_from_config(_paper_config(
        no_token={"train": {"trainable": "baseline_no_granularity", "lora_rank": 0}}))["no_token"]
    assert variant.model == "sam2" and variant.evaluation.models == ("sam2",)
    assert variant.evaluation.label("sam2") == "sam2-no_token"
    # Its size is the trained one, not the downloaded SAM-2's (sam2_checkpoint is not "download").
    assert variant.evaluation.model_size("sam2", variant.train.model_size) == "small"


@pytest.mark.parametrize(("variant", "message"), [
    ({"train": {"lora_rank": -1}}, r"experiments\.lora_r4\.train\.lora_rank must be >= 0, got -1"),
    ({"train": {"lora_rnk": 4}}, r"unknown experiments\.lora_r4\.train config key\(s\): lora_rnk"),
    ({"train": {"fourier_dim": 63}}, r"experiments\.lora_r4\.train\.fourier_dim must be a positive even number"),
    ({"discovery": {"divide": "gt"}}, r"experiments\.lora_r4\.discovery\.divide must be one of"),
    ({"evaluation": {"max_clicks": 0}}, r"experiments\.lora_r4\.evaluation\.max_clicks must be >= 1"),
    ({"evaluation": {"models": ["sam2"]}}, r"experiments\.lora_r4\.evaluation\.models: a variant evaluates its own"),
    ({"evaluation": {"datasets": ["partimagnet"]}},
     r"experiments\.lora_r4\.evaluation\.datasets: unknown benchmark\(s\) \['partimagnet'\]"),
    ({"images": {"max_images": 7000}}, r"experiments\.lora_r4\.images\.max_images must be an integer in \[1, "),
    ({"images": {"source": "demo"}}, r"experiments\.lora_r4\.images\.source: a variant can only train on fewer"),
    ({"paper": {"table6": ["lora_rank=3"]}}, r"experiments\.lora_r4\.paper\.table6: unknown row\(s\) \['lora_rank=3'\]"),
    ({"paper": {"table3": ["UnSAMv2+"]}}, r"experiments\.lora_r4\.paper\.table3: not a paper table with variants"),
    ({"trian": {}}, r"unknown experiments\.lora_r4 key\(s\): trian"),
])
def test_bad_variant_values_name_the_variants_key(variant: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        experiments_from_config(_paper_config(lora_r4=variant))


def test_a_subset_with_an_id_list_is_refused() -> None:
    config = _paper_config(k1={"images": {"max_images": 1000}})
    config["images"]["id_list"] = "ids.txt"
    with pytest.raises(ValueError, match=r"experiments\.k1\.images\.max_images: a subset needs images\.id_list null"):
        experiments_from_config(config)


def test_ablations_config_reproduces_every_row_of_the_papers_ablation_tables_once() -> None:
    """config/ablations.yaml: each non-SAM-2 row of Tables 4, 5, 6 and Fig. 10 (and UnSAMv2+ of Tables 1, 2) is
    filled by exactly one variant or by the run itself, with the setting the row names."""
    config = _load("config.yaml", "ablations.yaml")
    variants = experiments_from_config(config)
    claims: dict[tuple[str, str], list[str]] = {}
    for name, variant in variants.items():
        for table, rows in variant.paper.items():
            for row in rows:
                claims.setdefault((table, row), []).append(name)
    for table, rows in paper_rows(config["report"]["paper_rows"], "report.paper_rows").items():
        for row in rows:
            claims.setdefault((table, row), []).append("<run>")
    expected = {(p["table"], p["method"]) for p in read_paper_values()
                if p["table"] in ABLATION_TABLES and p["method"] != "SAM-2"}
    expected |= {("table1", "UnSAMv2+∗"), ("table2", "UnSAMv2+∗")}
    assert set(claims) == expected
    assert all(len(names) == 1 for names in claims.values()), claims
    # The setting each row names is the variant's.
    settings = {"lora_rank": "lora_rank", "correction_points": "correction_clicks", "max_masks": "max_masks",
                "fourier_dim": "fourier_dim"}
    run_train = experiments_from_config({**config, "experiments": {"run": {}}})["run"].train
    for (table, row), (name,) in claims.items():
        train = run_train if name == "<run>" else variants[name].train
        if table == "table6":
            key, value = row.split("=")
            assert getattr(train, settings[key]) == (0 if value == "none" else int(value)), (row, name)
        if table == "table4":
            n = int(row.split()[1].removesuffix("K")) * 1000
            assert (run_train.max_images if name == "<run>" else variants[name].max_images) in (n, None)
    assert variants["no_granularity_token"].model == "unsamv2"
    assert variants["no_granularity_token"].train.trainable == "sam_mask_token"
    assert variants["sa1b_gt"].discovery.divide == "sa1b_gt"
    assert variants["unsamv2_plus"].discovery.divide == "maskcut+sa1b_gt"
    # Each variant is evaluated on the datasets of its table (method.md §6), UnSAMv2+ on Tables 1, 2 and 5's.
    table_datasets = {"table4": {"pascalpart", "partimagenet"}, "table6": {"partimagenet"},
                      "table5": {"berkeley", "davis", "pascalpart", "partimagenet"},
                      "fig10": {"grabcut", "berkeley", "sbd", "pascalpart", "partimagenet"},
                      "table1": {"grabcut", "berkeley", "sbd", "pascalpart", "partimagenet"},
                      "table2": {"grabcut", "berkeley", "davis", "sa1b", "partimagenet"}}
    for name, variant in variants.items():
        assert set(variant.evaluation.datasets) == set().union(*(table_datasets[t] for t in variant.paper)), name


# ------------------------------------------------------------------------------------------------ the DAG


def test_ablations_dry_run_plans_one_training_per_variant_and_no_second_discovery(tmp_path: Path) -> None:
    """Acceptance 1: the counts of `snakemake -n --configfile config/config.yaml config/ablations.yaml`, computed
    from the two files."""
    work = copy_workflow(tmp_path)
    run = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    ablations = yaml.safe_load((REPO / "config" / "ablations.yaml").read_text())["experiments"]
    base = job_counts(run_snakemake(work, "-n", "--quiet", "rules").stdout)
    listing = run_snakemake(work, "-n", "--configfile", "config/config.yaml", "config/ablations.yaml").stdout
    counts = job_counts(listing)
    shards = math.ceil(run["images"]["max_images"] / run["images"]["shard_size"])
    own_stage1 = {json.dumps(v["discovery"], sort_keys=True) for v in ablations.values() if v.get("discovery")}
    assert len(own_stage1) == 2  # Table 5's SA-1B ground truth and UnSAMv2+'s union
    assert counts["train"] == base["train"] + len(ablations) == 1 + 16
    assert counts["discover_shard"] == counts["score_shard"] == shards * (1 + len(own_stage1)) == 72
    variant_evaluations = sum(len(v["evaluation"]["datasets"]) for v in ablations.values())
    assert counts["evaluate_interactive"] == base["evaluate_interactive"] + variant_evaluations == 14 + 31
    # Nothing else is added or repeated: the datasets, SA-1B, the image list, SAM-2 and the report are shared.
    changed = {rule for rule in set(base) | set(counts) if base.get(rule) != counts.get(rule)}
    assert changed == {"train", "discover_shard", "score_shard", "evaluate_interactive", "total"}
    # A variant with 1K images needs the run's first 4 shards and no other discovery.
    # (Targets before --configfile and --quiet, which take every argument after them.)
    subset = run_snakemake(work, "-n", "results/paper/variants/images_1k/train/final.pt",
                        "--configfile", "config/config.yaml", "config/ablations.yaml").stdout
    assert job_counts(subset)["discover_shard"] == 4
    assert "results/paper/pseudo_labels/manifests/3.tsv" in subset
    assert "results/paper/pseudo_labels/manifests/4.tsv" not in subset
    # Each variant's training and evaluation under its name; own Stage 1 only for the two discovery variants.
    for name, variant in ablations.items():
        assert f"results/paper/variants/{name}/train/final.pt" in listing
        model = "sam2" if variant.get("train", {}).get("trainable") == "baseline_no_granularity" else "unsamv2"
        for dataset in variant["evaluation"]["datasets"]:
            assert f"results/paper/variants/{name}/evaluation/interactive/{model}/{dataset}/summary.csv" in listing
    assert len({line.split("results/paper/stage1/")[1][:12] for line in listing.splitlines()
                if "results/paper/stage1/" in line}) == 2


def test_an_unknown_variant_key_stops_the_dry_run_naming_it(tmp_path: Path) -> None:
    work = copy_workflow(tmp_path)
    (work / "bad.yaml").write_text(yaml.safe_dump({"experiments": {"lora_r4": {"train": {"lora_rank": -2}}}}))
    proc = run_snakemake(work, "-n", "--configfile", "config/config.yaml", "bad.yaml", check=False)
    assert proc.returncode != 0
    assert "experiments.lora_r4.train.lora_rank must be >= 0, got -2" in proc.stdout + proc.stderr


# ------------------------------------------------------------------------------------------------ end to end

TOY_VARIANTS = {
    # Table 6 (a) in miniature: a LoRA rank on the toy's decoder.
    "lora_r4": {"train": {"lora_rank": 4}},
    # Table 4 and 6 (c) in miniature: half of the images (the first shard of two) and fewer masks per image.
    "half": {"images": {"max_images": 2}, "train": {"max_masks": 4}},
}


def _toy(tmp_path: Path) -> Path:
    work = toy_workdir(tmp_path / "w", experiments=copy.deepcopy(TOY_VARIANTS))
    return work


def test_toy_variants_dry_run_shares_discovery(tmp_path: Path) -> None:
    """The fast check of the end-to-end run below: its DAG."""
    work = _toy(tmp_path)
    targets = [f"results/t/variants/{name}/evaluation/interactive/unsamv2/synthetic/summary.csv"
               for name in TOY_VARIANTS]
    counts = job_counts(run_snakemake(work, *targets, "-n", "--quiet", "rules", "--configfile", "t.yaml").stdout)
    assert counts["discover_shard"] == counts["score_shard"] == 2  # the run's two shards, once
    assert counts["train"] == 2 and counts["evaluate_interactive"] == 2
    assert counts["synthetic_scenes"] == counts["synthetic_benchmark"] == 1


@pytest.mark.slow
def test_two_toy_variants_end_to_end_share_one_discovery(tmp_path: Path) -> None:
    """Acceptance 2: two tiny variants trained and evaluated on synthetic scenes; discovery ran once."""
    work = _toy(tmp_path)
    targets = [f"results/t/variants/{name}/evaluation/interactive/unsamv2/synthetic/summary.csv"
               for name in TOY_VARIANTS]
    run_snakemake(work, "--cores", "2", *targets, "--configfile", "t.yaml")
    out = work / "results" / "t"
    # Discovery and scoring ran once per shard of the run (their benchmark files), and in no variant folder.
    assert sorted(p.name for p in (out / "benchmarks" / "discover").glob("*.tsv")) == ["0.tsv", "1.tsv"]
    assert not (out / "stage1").exists() and not list((out / "variants").rglob("pseudo_labels"))
    configs: dict[str, dict[str, Any]] = {}
    for name in TOY_VARIANTS:
        folder = out / "variants" / name
        assert (out / "benchmarks" / "variants" / name / "train.tsv").is_file()
        configs[name] = json.loads((folder / "train" / "train_summary.json").read_text())["config"]
        with open(folder / "evaluation" / "interactive" / "unsamv2" / "synthetic" / "summary.csv") as fh:
            rows = list(csv.DictReader(fh))
        assert [(r["model"], r["granularity_mode"]) for r in rows] == [(f"unsamv2-{name}", "oracle")]
        assert int(rows[0]["n_objects"]) > 0
        run = json.loads((folder / "evaluation" / "interactive" / "unsamv2" / "synthetic" / "run.json").read_text())
        assert run["checkpoint"] == f"results/t/variants/{name}/train/final.pt"
    # The two trainings differ exactly where the variants do (the half variant's max_images cuts the shard).
    assert {k for k in configs["lora_r4"] if configs["lora_r4"][k] != configs["half"][k]} == {
        "lora_rank", "max_masks", "max_images"}
    assert (configs["lora_r4"]["lora_rank"], configs["half"]["lora_rank"]) == (4, 0)
    assert (configs["half"]["max_images"], configs["half"]["max_masks"]) == (2, 4)
    # The saved weights have the variant's shapes: LoRA factors of rank 4 only in lora_r4.
    lora = torch.load(out / "variants" / "lora_r4" / "train" / "final.pt", map_location="cpu")["model"]
    half = torch.load(out / "variants" / "half" / "train" / "final.pt", map_location="cpu")["model"]
    factors = {k: v.shape for k, v in lora.items() if k.endswith(".lora_A")}
    assert len(factors) == 28 and {shape[0] for shape in factors.values()} == {4}
    assert not any(".lora_" in k for k in half)
    # The half variant trained on the first shard's two images only, the other on the run's four.
    items = {name: json.loads((out / "variants" / name / "train" / "train_summary.json").read_text())[
        "items_per_epoch"] for name in TOY_VARIANTS}
    assert items == {"lora_r4": 4, "half": 2}
