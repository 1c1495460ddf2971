"""First-click IoU per level of a known hierarchy: the offline demo's table (synthetic scenes).

The interactive evaluation writes one row per (object, mode) with the IoU after each click (``per_object.csv``,
:mod:`unsamv2.evaluate.summary`); the objects of the ``synthetic`` benchmark are annotation ids of its
ground-truth JSONs, which carry each region's ``level`` (0 object, 1 part, 2 sub-part, 3 …). This joins the two:
per (model, granularity mode) the mean first-click IoU over every region (the summary's ``iou1``) and per level,
in percent. The demo trains on first clicks only, so this is the metric it trained for; NoC is left out.
"""
from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from unsamv2.datasets.synthetic_scenes import LEVEL_NAMES
from unsamv2.evaluate.summary import read_per_object_csv
from unsamv2.io.atomic import atomic_write_text
from unsamv2.io.pseudo_labels import read_annotations

__all__ = ["first_click_iou_per_level", "level_columns", "region_levels", "write_level_table"]


def region_levels(annotations_dir: str | Path) -> dict[tuple[str, str], int]:
    """``(image stem, annotation id as text) → level`` for every ground-truth JSON of a synthetic scene set."""
    levels: dict[tuple[str, str], int] = {}
    files = sorted(p for p in Path(annotations_dir).glob("*.json") if not p.name.startswith("."))
    if not files:
        raise FileNotFoundError(f"no ground-truth JSON in {annotations_dir}")
    for path in files:
        for ann in read_annotations(path):
            if "level" not in ann:
                raise ValueError(f"{path}: annotation {ann.get('id')} has no 'level' (not a synthetic scene set)")
            levels[(path.stem, str(ann["id"]))] = int(ann["level"])
    return levels


def level_columns(depth: int) -> list[str]:
    """Columns of the table for scenes of ``depth`` levels."""
    return ["model", "granularity_mode", "n_objects", "iou1",
            *(f"iou1_{name}" for name in LEVEL_NAMES[:depth]), *(f"n_{name}" for name in LEVEL_NAMES[:depth])]


def first_click_iou_per_level(
    rows: Iterable[Mapping[str, Any]], levels: Mapping[tuple[str, str], int]
) -> list[dict[str, Any]]:
    """One row per (model, granularity mode) of per-object rows: mean first-click IoU in percent, overall and
    per level, with the number of regions. A row whose (image, object) is not in ``levels`` is an error."""
    groups: dict[tuple[str, str], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        key = (str(row["image"]), str(row["object"]))
        if key not in levels:
            raise ValueError(f"object {key[1]} of image {key[0]} is not in the ground truth (another scene set?)")
        if not row["ious"]:
            raise ValueError(f"object {key[1]} of image {key[0]} has no IoU")
        groups[(row["model"], row["granularity_mode"])][levels[key]].append(float(row["ious"][0]))
    out = []
    for (model, mode), by_level in groups.items():
        every = [v for values in by_level.values() for v in values]
        result: dict[str, Any] = {"model": model, "granularity_mode": mode, "n_objects": len(every),
                                  "iou1": 100.0 * float(np.mean(every))}
        for level, name in enumerate(LEVEL_NAMES):
            if by_level.get(level):
                result[f"iou1_{name}"] = 100.0 * float(np.mean(by_level[level]))
                result[f"n_{name}"] = len(by_level[level])
        out.append(result)
    return out


def write_level_table(
    per_object_csvs: Sequence[str | Path], annotations_dir: str | Path, out_csv: str | Path
) -> list[dict[str, Any]]:
    """The table of :func:`first_click_iou_per_level` over several ``per_object.csv`` files, written atomically
    (percentages with 2 decimals, rows in the order of the files); returns the rows."""
    levels = region_levels(annotations_dir)
    rows: list[dict[str, Any]] = []
    for path in per_object_csvs:
        rows += first_click_iou_per_level(read_per_object_csv(path), levels)
    depth = max(levels.values()) + 1
    columns = level_columns(depth)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([f"{row[c]:.2f}" if isinstance(row.get(c), float) else row.get(c, "") for c in columns])
    atomic_write_text(out_csv, text.getvalue())
    return rows
