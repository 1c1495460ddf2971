"""The Snakemake workflow as a user runs it: lint, schema errors, the paper dry run, and a real demo run.

Each run happens in a temporary copy of `workflow/` and `config/`, so results never land in the repository.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.snakemake_runs import copy_workflow, job_counts, run_snakemake


def test_lint_reports_only_the_documented_conda_exemption(tmp_path: Path) -> None:
    work = copy_workflow(tmp_path)
    proc = run_snakemake(work, "--lint", check=False)
    out = proc.stdout + proc.stderr
    titles = [line.strip() for line in out.splitlines() if line.strip().startswith("* ")]
    rules = [line for line in out.splitlines() if line.startswith("Lints for rule")]
    # One conda lint per rule (README: deliberate exemption, rules use the pip environment) and nothing else.
    # Every rule of the workflow except `all`, which runs nothing.
    declared = [line for path in sorted((work / "workflow" / "rules").glob("*.smk"))
                for line in path.read_text().splitlines() if line.startswith("rule ")]
    assert len(rules) == len(declared) > 20
    assert titles == ["* Specify a conda environment or container for each rule.:"] * len(rules), out


def test_paper_dry_run_lists_the_full_dag(tmp_path: Path) -> None:
    work = copy_workflow(tmp_path)
    proc = run_snakemake(work, "-n", "--quiet", "rules")
    counts = job_counts(proc.stdout)
    # 6000 images in shards of 250 → 24 discovery and 24 scoring jobs; one training job; Tables 1 and 2:
    # 2 models × 7 benchmarks, 7 dataset preparations and the two averaged tables.
    assert counts == {
        "all": 1,
        "average_interactive": 2,
        "discover_shard": 24,
        "download_backbone": 1,
        "download_sam2": 1,
        "evaluate_interactive": 14,
        "evaluate_video": 2,
        "extract_sa1b": 1,
        "fetch_sa1b_tar": 2,  # the training tar and the held-out tar of the whole-image SA-1B benchmark
        "prepare_dataset": 8,  # the 7 benchmarks and DAVIS-2017 (video)
        "report_pseudo_labels": 1,
        "score_shard": 24,
        "select_images": 1,
        "train": 1,
        # Table 3: 5 benchmarks converted; 2 models × (20 + 80 + 8 + 6 + 4) shards of 250 images; 10 scores; 1 table
        "prepare_whole_image": 5,
        "whole_image_shard": 236,
        "evaluate_whole_image": 10,
        "average_whole_image": 1,
        # The report: paper tables beside ours, one mean-IoU-vs-clicks plot per benchmark, granularity strips and
        # whole-image masks of the trained model.
        "report_tables": 1,
        "report_interactive_curves": 7,
        "report_granularity_strips": 1,
        "report_whole_image_figure": 1,
        "total": 82 + 1 + 5 + 236 + 10 + 1 + 10,
    }
    train = run_snakemake(work, "-n", "-p", "results/paper/train/final.pt").stdout
    assert "gpu=2" in train and "torchrun --standalone --nproc_per_node 2" in train
    listing = run_snakemake(work, "-n").stdout
    for model in ("unsamv2", "sam2"):
        for dataset in ("grabcut", "berkeley", "davis", "sbd", "pascalpart", "partimagenet", "sa1b"):
            assert f"results/paper/evaluation/interactive/{model}/{dataset}/summary.csv" in listing
        # the video benchmark (DAVIS-2017 J&F, one click per object), one job per model
        assert f"results/paper/evaluation/video/{model}/davis2017/summary.csv" in listing
        for dataset in ("coco", "lvis", "ade20k", "entityseg", "sa1b"):
            assert f"results/paper/evaluation/whole_image/{model}/{dataset}/summary.csv" in listing
    assert "results/paper/evaluation/whole_image/table3.csv" in listing
    assert "results/paper/report/paper_comparison.csv" in listing
    assert "results/paper/report/figures/ar1000_vs_paper.png" in listing


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"discovery": {"thetaz": [0.9]}}, "thetaz"),
        ({"images": {"source": "demo", "max_images": "nine", "shard_size": 3}}, "max_images"),
        ({"backbone": {"name": "dinov9"}}, "dinov9"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, override: dict, key: str) -> None:
    work = copy_workflow(tmp_path)
    (work / "bad.yaml").write_text(yaml.safe_dump(override))
    proc = run_snakemake(work, "-n", "--configfile", "bad.yaml", check=False)
    assert proc.returncode != 0
    assert key in proc.stdout + proc.stderr


def test_missing_links_file_fails_at_run_time_saying_what_and_where(tmp_path: Path) -> None:
    work = copy_workflow(tmp_path)
    proc = run_snakemake(work, "--cores", "1", "resources/sa1b/tars/sa_000023.tar", check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "SA-1B links file" in out
    assert "segment-anything-downloads" in out


def _write_demo_config(work: Path, folder: Path, max_images: int, shard_size: int) -> Path:
    cfg = yaml.safe_load((work / "config" / "demo_photos.yaml").read_text())
    cfg["run"] = "t"
    cfg["images"].update({"source": "folder", "folder": str(folder), "max_images": max_images,
                          "shard_size": shard_size})
    cfg["discovery"]["local_size"] = 256
    path = work / "t.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_demo_dag_runs_resumes_and_lists_bad_images(tmp_path: Path) -> None:
    import skimage.data

    work = copy_workflow(tmp_path)
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(skimage.data.chelsea()).save(photos / "a_chelsea.png")
    Image.fromarray(skimage.data.coffee()[::2, ::2]).save(photos / "b_coffee.jpg")
    Image.fromarray(skimage.data.camera()[::2, ::2]).save(photos / "c_camera.png")  # grayscale
    (photos / "d_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    cfg = _write_demo_config(work, photos, max_images=4, shard_size=2)

    run_snakemake(work, "--cores", "2", "--configfile", str(cfg))
    out = work / "results" / "t"
    with open(out / "report" / "pseudo_labels" / "summary.csv") as fh:
        summary = next(csv.DictReader(fh))
    assert int(summary["images_listed"]) == 4
    assert int(summary["images_labelled"]) == 3
    assert int(summary["images_failed"]) == 1
    failures = (out / "report" / "pseudo_labels" / "failures.csv").read_text()
    assert "d_broken.jpg" in failures

    docs = sorted((out / "pseudo_labels" / "json").glob("*.json"))
    assert [d.name for d in docs] == ["a_chelsea.json", "b_coffee.json", "c_camera.json"]
    total = 0
    for path in docs:
        doc = json.loads(path.read_text())
        assert set(doc) == {"info", "licenses", "categories", "image", "annotations"}
        for ann in doc["annotations"]:
            assert 0.1 <= ann["granularity"] <= 1.0
            assert ann["segmentation"]["size"] == [doc["image"]["height"], doc["image"]["width"]]
        total += len(doc["annotations"])
    assert total == int(summary["masks_total"])
    assert total > 0

    # Nothing to do on a second run: every output is cached.
    again = run_snakemake(work, "-n", "--configfile", str(cfg))
    assert "Nothing to be done" in again.stdout + again.stderr

    # A run killed inside shard 0: its manifests and the report were never written (Snakemake deletes the outputs
    # of a failed job) but the shard's JSONs were, atomically. The rerun redoes that shard, reusing every JSON.
    for stale in ["discovery/manifests/0.tsv", "pseudo_labels/manifests/0.tsv", "report/pseudo_labels/summary.csv"]:
        (out / stale).unlink()
    before = (out / "discovery" / "raw" / "a_chelsea.json").stat().st_mtime_ns
    run_snakemake(work, "--cores", "2", "--configfile", str(cfg))
    assert (out / "discovery" / "raw" / "a_chelsea.json").stat().st_mtime_ns == before
    with open(out / "discovery" / "manifests" / "0.tsv") as fh:
        statuses = {r["file_name"]: r["status"] for r in csv.DictReader(fh, delimiter="\t")}
    assert statuses == {"a_chelsea.png": "done_before", "b_coffee.jpg": "done_before"}
    assert np.isfinite(float(summary["masks_per_image"]))


def test_unknown_train_key_fails_before_any_job(tmp_path: Path) -> None:
    work = copy_workflow(tmp_path)
    (work / "bad.yaml").write_text(yaml.safe_dump({"train": {"epocks": 3}}))
    proc = run_snakemake(work, "-n", "--configfile", "bad.yaml", check=False)
    assert proc.returncode != 0
    assert "epocks" in proc.stdout + proc.stderr


def test_demo_experiment_dag_trains_both_models_and_evaluates_them_on_held_out_scenes(tmp_path: Path) -> None:
    """config/demo.yaml end to end on a toy budget: synthetic scenes → discovery → UnSAMv2 and the SAM-2-style
    baseline trained with the same settings → both evaluated on held-out scenes through evaluate_interactive."""
    work = copy_workflow(tmp_path)
    cfg = yaml.safe_load((work / "config" / "demo.yaml").read_text())
    assert cfg["stages"] == ["discover", "train", "evaluate"]
    cfg["run"] = "t"
    cfg["images"].update({"max_images": 4, "shard_size": 2})
    cfg["synthetic"].update({"train_images": 5, "eval_images": 2, "image_size": 128})
    cfg["discovery"].update({"local_size": 128, "maskcut_long_side": 128})
    cfg["train"].update({"epochs": 1, "multiplier": 1, "batch_size": 2, "max_steps": 1,
                         "cache_dir": "results/t/train_embedding_cache"})
    cfg["evaluation"].update({"max_clicks": 2, "limit": 1})
    cfg["video"].update({"synthetic_sequences": 1, "synthetic_frames": 3, "synthetic_size": 64})
    (work / "t.yaml").write_text(yaml.safe_dump(cfg))

    dry = run_snakemake(work, "-n", "--configfile", "t.yaml")
    counts = job_counts(dry.stdout)
    assert counts["synthetic_scenes"] == 1 and counts["synthetic_benchmark"] == 1
    assert counts["discover_shard"] == 2 and counts["train"] == 2  # UnSAMv2 and the SAM-2-style baseline
    assert counts["evaluate_interactive"] == 2 and counts["average_interactive"] == 1
    assert counts["pseudo_label_recall"] == 1
    assert counts["interactive_levels"] == 1  # first-click IoU per level of the held-out scenes
    assert counts["synthetic_video_benchmark"] == 1 and counts["evaluate_video"] == 2
    # the held-out scenes as a whole-image benchmark: one shard and one score per model, then table3.csv
    assert counts["prepare_whole_image"] == 1 and counts["whole_image_shard"] == 2
    assert counts["evaluate_whole_image"] == 2 and counts["average_whole_image"] == 1

    run_snakemake(work, "--cores", "2", "--configfile", "t.yaml")
    out = work / "results" / "t"
    # Only the first 4 of the 5 generated scenes were listed for discovery.
    with open(out / "report" / "pseudo_labels" / "recall_vs_ground_truth.csv") as fh:
        assert {r["level"] for r in csv.DictReader(fh)} >= {"object", "all"}
    listed = [Path(line.split("\t")[1]).name for line in (out / "images.txt").read_text().splitlines()]
    assert listed == [f"syn_{i:06d}.png" for i in range(4)]
    ours = json.loads((out / "train" / "train_summary.json").read_text())["config"]
    base = json.loads((out / "train_baseline" / "train_summary.json").read_text())["config"]
    assert ours["trainable"] == "demo_from_scratch" and base["trainable"] == "baseline_no_granularity"
    # Same budget: the two trainings differ only in what the ablation removes.
    assert {k for k in ours if ours[k] != base[k]} == {"trainable"}

    rows = {}
    for model in ("unsamv2", "sam2"):
        with open(out / "evaluation" / "interactive" / model / "synthetic" / "summary.csv") as fh:
            rows.update({(r["model"], r["granularity_mode"]): r for r in csv.DictReader(fh)})
        run = json.loads((out / "evaluation" / "interactive" / model / "synthetic" / "run.json").read_text())
        assert run["target_iou"] == 0.85 and run["dataset_options"]["level"] == "all"
        assert run["checkpoint"].endswith("train/final.pt" if model == "unsamv2" else "train_baseline/final.pt")
    assert set(rows) == {("unsamv2-demo", "oracle"), ("sam2-style-baseline-demo", "best_of_3"),
                         ("sam2-style-baseline-demo", "none")}
    with open(out / "evaluation" / "interactive" / "per_level" / "synthetic.csv") as fh:
        levels = {(r["model"], r["granularity_mode"]): r for r in csv.DictReader(fh)}
    assert set(levels) == set(rows)
    for key, row in levels.items():  # the per-level table's overall column is the summary's first-click IoU
        assert float(row["iou1"]) == pytest.approx(float(rows[key]["iou1"]), abs=0.01)
    # limit 1 = the first held-out scene, every object/part/sub-part of it; both models saw the same objects.
    assert len({r["n_objects"] for r in rows.values()}) == 1 and int(next(iter(rows.values()))["n_objects"]) > 0
    with open(out / "evaluation" / "whole_image" / "table3.csv") as fh:
        table3 = list(csv.DictReader(fh))
    assert [(r["model"], r["dataset"]) for r in table3] == [
        ("unsamv2-demo", "synthetic"), ("sam2-style-baseline-demo", "synthetic"),
        ("unsamv2-demo", "average"), ("sam2-style-baseline-demo", "average")]
    assert {r["n_images"] for r in table3} == {"2"} and {r["image_ids"] for r in table3} == {"all"}
    with open(out / "evaluation" / "interactive" / "demo.csv") as fh:
        table = list(csv.DictReader(fh))
    assert {(r["model"], r["granularity_mode"]) for r in table} >= set(rows)
    # the synthetic video benchmark through the same evaluate_video rule as DAVIS-2017, for both demo models
    for model, modes in (("unsamv2", cfg["video"]["unsamv2_modes"]), ("sam2", cfg["video"]["sam2_modes"])):
        folder = out / "evaluation" / "video" / model / "synthetic_video"
        with open(folder / "summary.csv") as fh:
            video_rows = list(csv.DictReader(fh))
        assert [r["granularity_mode"] for r in video_rows] == modes
        assert (folder / "figure.png").is_file() and (folder / "masks" / modes[0] / "syn_video_000").is_dir()
