"""What limits the offline demo's training recipe? (evidence for the README's "The offline training experiment").

    python benchmarks/demo_learnability.py --labels pseudo_labels --variants demo,lr_1e-3 \\
        [--models unsamv2,baseline] [--run-dir results/demo] [--benchmark resources/datasets/synthetic] \\
        [--out results/learnability] [--eval-epochs 1,2] [--threads 1] [--parallel 2]

Each (variant, model) is trained and evaluated with the demo's own commands, as ``workflow/rules/train.smk`` and
``evaluate.smk`` call them: ``unsamv2 train`` with the ``train`` section of ``config/demo.yaml`` plus the variant's
changes (``baseline`` = ``TrainConfig.baseline()``, the SAM-2-style ablation), then ``unsamv2
evaluate-interactive`` with the ``evaluation`` section (first click, granularity oracle for UnSAMv2, best of 3 and
single mask for the baseline) on the held-out scenes, then ``unsamv2 interactive-levels``. The demo run
(``--run-dir``) provides the training scenes, their pseudo-labels and the embedding cache; nothing there is
written (the cache is copied).

``--labels pseudo_labels`` trains on Stage 1's pseudo-labels (what the demo does); ``--labels ground_truth`` on
the training scenes' exact annotations (every object, part, sub-part and inner region, granularity scored by the
same official formula per object hierarchy, in the same JSON format): the upper bound, i.e. what the
pseudo-labels cost. ``--eval-epochs`` also evaluates ``checkpoint_epoch{N}.pt`` (first-click IoU vs steps of one
run; the cosine schedule still spans the whole run).

Writes ``<out>/<labels>/<variant>/<model>/`` (the training folder, ``eval_<benchmark folder name>_<checkpoint>/``) and appends one row per
(model, mode, checkpoint) to ``<out>/summary.csv``: first-click IoU overall and per level, training seconds per
step (median) and wall time. Runs already finished (``final.pt`` / ``per_object.csv`` present) are reused.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unsamv2.train.config import TrainConfig

VARIANTS: dict[str, dict[str, Any]] = {
    "demo": {},
    # The settings the from-scratch recipe changed, one at a time back to what failed before.
    "paper_loss_weights": {"loss_weight_focal": 20.0},
    "gate": {"object_score_gate": True},
    "no_warmup": {"lr": 1e-3, "min_lr": 1e-4, "warmup_steps": 0},
    # What the budget could be spent on instead.
    "lr_1e-3": {"lr": 1e-3, "min_lr": 1e-4},
    "lr_1e-4": {"lr": 1e-4, "min_lr": 1e-5},
    "lr_5e-4": {"lr": 5e-4, "min_lr": 5e-5},
    "dice_only": {"loss_weight_focal": 0.0},
    "focal_0.1": {"loss_weight_focal": 0.1},
    "steps_x2": {"epochs": 6},
    "masks_8": {"max_masks": 8},
    # Half the masks per step (the decoder's cost is per mask) for twice the steps: about the same compute.
    "masks_8_steps_x2": {"max_masks": 8, "epochs": 6},
    "masks_8_steps_x1.67": {"max_masks": 8, "epochs": 5},
    "masks_32": {"max_masks": 32},
    # From the current recipe (8 masks, 5 epochs): more steps, or fewer masks per step for more steps.
    "epochs_7": {"epochs": 7},
    # Three times the demo's steps: does the lead come back once both models fit better?
    "epochs_15": {"epochs": 15},
    # For a Stage-1 run of 512 scenes (--run-dir): the demo's 1,280 steps (2 visits per scene and epoch) or three
    # times as many (6), i.e. more scenes at the same steps, and more scenes with more steps.
    "visits_2": {"multiplier": 2},
    "visits_6": {"multiplier": 6},
    # The scenes are 256 px; at 128 px an inner region is a few low-res mask pixels.
    "image_192": {"image_size": 192},
    "masks_4_epochs_10": {"max_masks": 4, "epochs": 10},
    "batch_8": {"batch_size": 8, "epochs": 6},
    # SAM-2's own gradient clipping (max norm 0.1), which the UnSAMv2 config removed: on 4 training scenes it
    # shortened the start before the decoder follows the click (README, demo section).
    "clip_0.1": {"grad_clip": 0.1},
    # Does the granularity MLP's dropout (only UnSAMv2 has one) blur the granularity input from scratch?
    "clip_0.1_mlp_dropout_0": {"grad_clip": 0.1, "mlp_dropout": 0.0},
}
LEVEL_COLUMNS = ("iou1", "iou1_object", "iou1_part", "iou1_subpart", "iou1_subsubpart")


def _demo() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())


def train_command(cfg: TrainConfig, labels: Path, images: Path, out: Path, threads: int) -> list[str]:
    return ["unsamv2", "train", "--pseudo-labels", str(labels), "--images", str(images), "--out-dir", str(out),
            "--settings", cfg.to_json(), "--resume", "--threads", str(threads), "--quiet"]


def evaluate_command(demo: dict[str, Any], model: str, checkpoint: Path, benchmark: Path, out: Path, label: str,
                     threads: int, image_size: int) -> list[str]:
    ev = demo["evaluation"]
    modes = ev["unsamv2_modes"] if model == "unsamv2" else ev["sam2_modes"]
    options = [f"{k}={json.dumps(v)}" for k, v in ev["dataset_options"]["synthetic"].items()]
    return ["unsamv2", "evaluate-interactive", "--dataset", "synthetic", "--root", str(benchmark),
            "--model", model, "--checkpoint", str(checkpoint), "--model-size", demo["train"]["model_size"],
            "--model-label", label, *[a for m in modes for a in ("--granularity-mode", m)],
            *[a for o in options for a in ("--dataset-option", o)],
            "--target-iou", str(ev["target_iou"]["synthetic"]), "--image-size", str(image_size),
            "--max-clicks", str(ev["max_clicks"]), "--device", "cpu", "--out-dir", str(out),
            "--threads", str(threads), "--quiet"]


def _run(commands: list[tuple[list[str], Path]], parallel: int) -> list[float]:
    """Run (command, log) pairs, ``parallel`` at a time; returns each one's wall seconds. A failure stops all."""
    walls = [0.0] * len(commands)
    pending = list(enumerate(commands))
    running: list[tuple[int, subprocess.Popen, float]] = []
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    while pending or running:
        while pending and len(running) < parallel:
            k, (cmd, log_path) = pending.pop(0)
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with log_path.open("a") as log:
                running.append((k, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env),
                                time.perf_counter()))
        time.sleep(1.0)
        for item in list(running):
            k, proc, start = item
            if proc.poll() is not None:
                running.remove(item)
                if proc.returncode != 0:
                    for _, other, _ in running:
                        other.terminate()
                    raise SystemExit(f"failed (exit {proc.returncode}): {' '.join(commands[k][0][:2])}, log "
                                     f"{commands[k][1]}")
                walls[k] = time.perf_counter() - start
    return walls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", choices=("pseudo_labels", "ground_truth"), default="pseudo_labels")
    parser.add_argument("--variants", default="demo", help=f"comma-separated subset of {list(VARIANTS)}")
    parser.add_argument("--models", default="unsamv2,baseline")
    parser.add_argument("--run-dir", type=Path, default=ROOT / "results" / "demo")
    parser.add_argument("--benchmark", type=Path, default=ROOT / "resources" / "datasets" / "synthetic")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "learnability")
    parser.add_argument("--eval-epochs", default="", help="comma-separated epochs whose checkpoints to evaluate too")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="stop every run after this many steps (the schedule still spans the whole run, so a "
                             "short run is exactly the start of the long one); the folder gets a _<N>steps suffix")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--parallel", type=int, default=2, help="processes at a time")
    args = parser.parse_args()
    args.run_dir, args.benchmark, args.out = args.run_dir.resolve(), args.benchmark.resolve(), args.out.resolve()
    demo = _demo()
    models = args.models.split(",")
    scenes = args.run_dir / "synthetic_scenes"
    labels = scenes / "annotations" if args.labels == "ground_truth" else args.run_dir / "pseudo_labels" / "json"
    cache = args.out / "embedding_cache"
    if not cache.exists() and (args.run_dir / "train_embedding_cache").is_dir():
        shutil.copytree(args.run_dir / "train_embedding_cache", cache)

    jobs: list[tuple[str, str, TrainConfig, Path]] = []
    for variant in args.variants.split(","):
        base = TrainConfig.from_dict(demo["train"]).replace(cache_dir=str(cache), max_steps=args.max_steps,
                                                            **VARIANTS[variant])
        name = variant if args.max_steps is None else f"{variant}_{args.max_steps}steps"
        for model in models:
            cfg = base.baseline() if model == "baseline" else base
            jobs.append((name, model, cfg, args.out / args.labels / name / model))
    to_train = [(train_command(cfg, labels, scenes / "images", d, args.threads), d / "train.log")
                for _, _, cfg, d in jobs if not (d / "final.pt").is_file()]
    print(f"training {len(to_train)} of {len(jobs)} runs ({args.labels})", flush=True)
    _run(to_train, args.parallel)

    checkpoints = ["final", *(f"epoch{e}" for e in args.eval_epochs.split(",") if e)]
    evals: list[tuple[str, str, str, Path]] = []
    to_eval = []
    for variant, model, cfg, d in jobs:
        for ck in checkpoints:
            evals.append((variant, model, ck, d))
            out = d / f"eval_{args.benchmark.name}_{ck}"
            if (out / "per_object.csv").is_file():
                continue
            checkpoint = d / ("final.pt" if ck == "final" else f"checkpoint_{ck}.pt")
            name = "unsamv2" if model == "unsamv2" else "sam2"
            # Evaluated at the input size it was trained at (the demo's train and evaluation sizes agree).
            to_eval.append((evaluate_command(demo, name, checkpoint, args.benchmark, out,
                                             f"{model}-{variant}-{ck}", args.threads, cfg.image_size),
                            out / "eval.log"))
    print(f"evaluating {len(to_eval)} checkpoints", flush=True)
    _run(to_eval, args.parallel)

    rows: list[dict[str, Any]] = []
    for variant, model, ck, d in evals:
        out = d / f"eval_{args.benchmark.name}_{ck}"
        subprocess.run(["unsamv2", "interactive-levels", "--per-object", str(out / "per_object.csv"),
                        "--annotations", str(args.benchmark / "annotations"), "--out", str(out / "levels.csv")],
                       check=True, cwd=ROOT)
        with (d / "losses.csv").open() as fh:
            losses = list(csv.DictReader(fh))
        summary = json.loads((d / "train_summary.json").read_text())
        steps = len(losses) if ck == "final" else int(ck.removeprefix("epoch")) * summary["steps_per_epoch"]
        with (out / "levels.csv").open() as fh:
            for level_row in csv.DictReader(fh):
                rows.append({"labels": args.labels, "variant": variant, "model": model,
                             "mode": level_row["granularity_mode"], "steps": steps,
                             **{c: level_row[c] for c in LEVEL_COLUMNS},
                             "train_iou_last50": f"{statistics.mean(float(r['iou_first']) for r in losses[:steps][-50:]):.3f}",
                             "seconds_per_step": f"{statistics.median(float(r['seconds']) for r in losses):.2f}",
                             "train_wall_s": summary["wall_seconds"], "benchmark": str(args.benchmark)})
    # One row per (labels, variant, model, mode, steps, benchmark): a rerun replaces its rows, others stay.
    table = args.out / "summary.csv"
    key = ("labels", "variant", "model", "mode", "steps", "benchmark")
    mine = {tuple(str(r[k]) for k in key) for r in rows}
    kept: list[dict[str, Any]] = []
    if table.is_file():
        with table.open() as fh:
            kept = [r for r in csv.DictReader(fh) if tuple(r[k] for k in key) not in mine]
    with table.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows([*kept, *rows])
    print(f"{'labels':14s} {'variant':18s} {'model':9s} {'mode':10s} {'steps':>5s} "
          + " ".join(f"{c:>15s}" for c in LEVEL_COLUMNS) + "  train_iou  s/step")
    for r in rows:
        print(f"{r['labels']:14s} {r['variant']:18s} {r['model']:9s} {r['mode']:10s} {r['steps']:5d} "
              + " ".join(f"{r[c]:>15s}" for c in LEVEL_COLUMNS) + f"  {r['train_iou_last50']:>9s}  "
              f"{r['seconds_per_step']:>6s}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
