"""Granularity scoring stage: fill `granularity` in discovery's raw JSONs (paper §3.3, Eq. 3; official `compute_granularity.py`).

Scores are relative to one instance hierarchy: the instance's parts (in file order) followed by the instance,
exactly the stack the official code passes to `compute_granularity_scores_sqrt`, so that ties in its unstable
argsort resolve the same way. Values already present (the official fallback parts' fixed 0.5) are kept.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from unsamv2.core.granularity import granularity_scores, paper_granularity
from unsamv2.discovery.config import GRANULARITY_FORMULAS
from unsamv2.io.pseudo_labels import read_document, write_document

FORMULAS = dict(zip(GRANULARITY_FORMULAS, (granularity_scores, paper_granularity), strict=True))


def score_document(doc: dict, formula: str = "code") -> dict:
    """Return a copy of an SA-1B-style document with every missing granularity filled in."""
    if formula not in FORMULAS:
        raise ValueError(f"granularity.formula must be one of {sorted(FORMULAS)}, got {formula!r}")
    score = FORMULAS[formula]
    anns = [dict(a) for a in doc["annotations"]]
    groups: dict[int, list[int]] = defaultdict(list)
    instance_of: dict[int, int] = {}
    for k, a in enumerate(anns):
        if a.get("is_divide"):
            instance_of[a["instance_id"]] = k
        elif a.get("granularity") is None:
            groups[a["instance_id"]].append(k)
    for inst_id, inst_k in instance_of.items():
        members = groups.get(inst_id, []) + [inst_k]
        areas = np.array([anns[k]["area"] for k in members], dtype=np.float64)
        for k, g in zip(members, score(areas)):
            anns[k]["granularity"] = float(g)
    orphans = [a["id"] for a in anns if a.get("granularity") is None]
    if orphans:
        raise ValueError(f"annotations {orphans} belong to no instance of image {doc['image'].get('file_name')}")
    return {**doc, "annotations": anns}


def score_file(src: Path, dst: Path, formula: str = "code") -> int:
    """Score one raw discovery JSON into `dst` (atomic); returns the number of annotations."""
    scored = score_document(read_document(src), formula)
    write_document(dst, scored)
    return len(scored["annotations"])


def score_manifest(manifest: Path, raw_dir: Path, out_dir: Path, out_manifest: Path, formula: str = "code") -> int:
    """``unsamv2 score``: score every image a discovery manifest lists as done; copy the manifest with the
    scored mask counts to ``out_manifest``. Returns the number of scored files."""
    from unsamv2.discovery.shard import output_name, read_manifest, write_manifest

    rows = read_manifest(manifest)
    scored = 0
    for r in rows:
        if r.status == "error":
            continue
        name = output_name(Path(r.file_name))
        r.n_masks = score_file(raw_dir / name, out_dir / name, formula)
        scored += 1
    write_manifest(out_manifest, rows)
    return scored
