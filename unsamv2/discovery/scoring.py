"""Granularity scoring stage: fill `granularity` in discovery's raw JSONs (method.md §1.2, Eq. 3).

Scores are relative to one instance hierarchy: the instance's parts (in file order) followed by the instance,
exactly the stack the official code passes to `compute_granularity_scores_sqrt`, so that ties in its unstable
argsort resolve the same way. Values already present (the official fallback parts' fixed 0.5) are kept.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from unsamv2.discovery.granularity import granularity_scores, paper_granularity
from unsamv2.io.pseudo_labels import read_document, write_document

FORMULAS = {"code": granularity_scores, "paper": paper_granularity}


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
