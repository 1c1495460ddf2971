"""The smallest run of config/demo.yaml that has every phase (discovery, training, evaluation), and the comparison
of two such runs: used by the fault tests (tests/test_faults.py) and the SLURM tests (tests/test_slurm.py)."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import torch
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def toy_workdir(dest: Path, **overrides: Any) -> Path:
    """A copy of workflow/ + config/ with config/demo.yaml shrunk to the smallest run that still has every phase:
    4 synthetic scenes in 2 discovery shards, 8 training steps (state saved every step), 2 held-out scenes.
    ``overrides`` replace top-level config keys (e.g. ``train_gpus``) or update a section's keys (a dict)."""
    dest.mkdir(parents=True)
    shutil.copytree(REPO / "workflow", dest / "workflow")
    shutil.copytree(REPO / "config", dest / "config")
    cfg = yaml.safe_load((dest / "config" / "demo.yaml").read_text())
    cfg["run"] = "t"
    cfg["images"].update({"max_images": 4, "shard_size": 2})
    cfg["synthetic"].update({"train_images": 4, "eval_images": 2, "image_size": 128})
    # No CRF (MaskCut's or the refinement's): the toy measures resumption and equality, not the CRF, which costs
    # more than the rest of discovery at this size.
    cfg["discovery"].update({"local_size": 128, "maskcut_long_side": 128, "maskcut_crf": False, "refine": "none"})
    cfg["train"].update({"epochs": 4, "multiplier": 1, "batch_size": 1, "max_steps": 8, "save_state_every": 1,
                         "cache_dir": "results/t/train_embedding_cache"})
    # UnSAMv2 only: "download" names stock SAM-2 weights that are never needed without the sam2 model, so the
    # SAM-2-style baseline is not trained.
    cfg["evaluation"].update({"models": ["unsamv2"], "sam2_checkpoint": "download", "max_clicks": 2, "limit": 2})
    # No whole-image or video evaluation: each would add jobs (and the stock SAM-2 download) to every run.
    for section in ("whole_image", "video"):
        if section in cfg:
            cfg[section].update({"datasets": [], "models": []})
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key].update(value)
        else:
            cfg[key] = value
    (dest / "t.yaml").write_text(yaml.safe_dump(cfg))
    return dest


def assert_every_output_parses(results: Path) -> int:
    n = 0
    for path in sorted(results.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue  # hidden files are atomic writes' temporaries, never outputs
        n += 1
        suffix = path.suffix
        if suffix == ".json":
            json.loads(path.read_text())
        elif suffix in (".csv", ".tsv"):
            rows = list(csv.reader(path.open(), delimiter="\t" if suffix == ".tsv" else ","))
            assert rows and len({len(r) for r in rows}) == 1, f"{path}: ragged or empty"
        elif suffix == ".pt":
            torch.load(path, map_location="cpu", weights_only=False)
        elif suffix == ".png":
            with Image.open(path) as im:
                im.load()
        elif suffix == ".npz":
            import numpy as np

            with np.load(path) as z:
                [z[k] for k in z.files]
    return n


def _without_column(path: Path, column: str) -> list[dict[str, str]]:
    with path.open() as fh:
        return [{k: v for k, v in row.items() if k != column} for row in csv.DictReader(fh)]


def _without_dates(doc: Any) -> Any:
    """A pseudo-label JSON without its `date_created` / `date_captured` stamps (the time it was written)."""
    if isinstance(doc, dict):
        return {k: _without_dates(v) for k, v in doc.items() if not k.startswith("date_")}
    if isinstance(doc, list):
        return [_without_dates(v) for v in doc]
    return doc


def differences(ref: Path, got: Path) -> list[str]:
    """What differs between two runs' deterministic outputs: the pseudo-label JSONs (but for their time stamps),
    the evaluation CSVs (bytes), the trained weights (torch.equal) and the loss logs (but for the seconds)."""
    diffs = []
    for sub in ("discovery/raw", "pseudo_labels/json"):
        names = sorted(p.name for p in (ref / sub).glob("*.json"))
        assert names, f"no {sub} outputs"
        if names != sorted(p.name for p in (got / sub).glob("*.json")):
            diffs.append(f"{sub}: other files")
        diffs += [f"{sub}/{n}" for n in names
                  if _without_dates(json.loads((ref / sub / n).read_text()))
                  != _without_dates(json.loads((got / sub / n).read_text()))]
    evaluation = ref / "evaluation" / "interactive"
    csvs = sorted(p.relative_to(evaluation) for p in evaluation.rglob("*.csv"))
    assert csvs
    diffs += [f"evaluation/{c}" for c in csvs if (evaluation / c).read_bytes() != (got / "evaluation" /
                                                                                 "interactive" / c).read_bytes()]
    for trainrun in sorted(p.parent.name for p in ref.glob("*/final.pt")):
        a = torch.load(ref / trainrun / "final.pt", map_location="cpu")["model"]
        b = torch.load(got / trainrun / "final.pt", map_location="cpu")["model"]
        if a.keys() != b.keys() or not all(torch.equal(a[k], b[k]) for k in a):
            diffs.append(f"{trainrun}/final.pt")
        # The loss log too (its wall-clock column aside): a resumed run repeats no step and skips none.
        if _without_column(ref / trainrun / "losses.csv", "seconds") != _without_column(
                got / trainrun / "losses.csv", "seconds"):
            diffs.append(f"{trainrun}/losses.csv")
    return diffs
