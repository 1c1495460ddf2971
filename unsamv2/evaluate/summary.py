"""Tables and plots of the interactive evaluation: per-object CSV, per-dataset summary CSV, paper-style averages.

Summary CSV columns (exactly): ``model, dataset, granularity_mode, noc80, noc85, noc90, iou1, n_objects, n_fail20``
with ``iou1`` in percent and ``granularity_mode`` one of ``oracle``, ``fixed:<g>``, ``best_fixed``, ``none``,
``best_of_3``. A NoC above the loop's target IoU (NoC90 on part datasets) is not observable and left empty.

The paper's "Averaged" columns (Tables 1 and 2) average five datasets, but its NoC90 column takes **NoC85 for the
part datasets** (PascalPart, PartImageNet), whose loop stops at 0.85 (official `sam2_evaluate.py`: "only eval NoC@85 for Part-level Dataset").
:func:`paper_average` reproduces exactly that and labels the row ``dataset = "average"``; its ``noc85`` column is
the plain mean of NoC85. All files are written atomically (temporary file + rename).
"""
from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from unsamv2.evaluate.interactive import DatasetEvaluation, ObjectRecord
from unsamv2.io.atomic import atomic_output, atomic_write_text

__all__ = [
    "AVERAGE_DATASET",
    "SUMMARY_COLUMNS",
    "csv_text",
    "mean_iou_curve",
    "paper_average",
    "per_object_columns",
    "plot_miou_curves",
    "read_per_object_csv",
    "read_summary_csv",
    "summary_rows",
    "write_per_object_csv",
    "write_summary_csv",
]

SUMMARY_COLUMNS: tuple[str, ...] = (
    "model", "dataset", "granularity_mode", "noc80", "noc85", "noc90", "iou1", "n_objects", "n_fail20",
)
AVERAGE_DATASET = "average"
_FLOAT_COLUMNS = ("noc80", "noc85", "noc90", "iou1")
_INT_COLUMNS = ("n_objects", "n_fail20")


# ------------------------------------------------------------------------------------------------ summary rows


def summary_rows(evaluation: DatasetEvaluation) -> list[dict[str, Any]]:
    """One summary row per granularity mode of an evaluation (modes without any object are skipped)."""
    rows = []
    for mode in evaluation.modes:
        if not evaluation.sequences(mode):
            continue
        m = evaluation.metrics(mode)
        rows.append({
            "model": evaluation.model, "dataset": evaluation.dataset, "granularity_mode": mode,
            "noc80": m.noc80, "noc85": m.noc85, "noc90": m.noc90, "iou1": m.iou1,
            "n_objects": m.n_objects, "n_fail20": m.n_fail20,
        })
    return rows


def _format(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def csv_text(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    """CSV with ``columns`` as header; floats with 4 decimals, NaN as an empty cell (the summaries' format)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_format(row.get(c, "")) for c in columns])
    return buffer.getvalue()


def write_summary_csv(rows: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """Write summary rows (dicts with :data:`SUMMARY_COLUMNS`) atomically."""
    return atomic_write_text(path, csv_text(SUMMARY_COLUMNS, rows))


def _parse_float(text: str) -> float:
    return math.nan if text.strip() == "" else float(text)


def read_summary_csv(path: str | Path) -> list[dict[str, Any]]:
    """Read a summary CSV back (empty NoC cells become NaN)."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = set(SUMMARY_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: not a summary CSV, missing columns {sorted(missing)}")
        rows = []
        for raw in reader:
            row: dict[str, Any] = {c: raw[c] for c in ("model", "dataset", "granularity_mode")}
            row.update({c: _parse_float(raw[c]) for c in _FLOAT_COLUMNS})
            row.update({c: int(raw[c]) for c in _INT_COLUMNS})
            rows.append(row)
    return rows


def paper_average(
    rows: Sequence[Mapping[str, Any]], part_datasets: Iterable[str] | None = None
) -> dict[str, Any]:
    """The paper's "Averaged" row over ``rows`` (one per dataset, same model and granularity mode).

    ``noc90`` averages NoC90 of object datasets with **NoC85 of part datasets**, as the paper does; ``noc80``,
    ``noc85`` and ``iou1`` are plain means; ``n_objects`` and ``n_fail20`` are sums. ``part_datasets`` defaults to
    the registry's part-level datasets.
    """
    if not rows:
        raise ValueError("paper_average needs at least one dataset row")
    for key in ("model", "granularity_mode"):
        values = {row[key] for row in rows}
        if len(values) != 1:
            raise ValueError(f"paper_average: rows mix several {key} values {sorted(values)}")
    datasets = [str(row["dataset"]) for row in rows]
    if len(set(datasets)) != len(datasets):
        raise ValueError(f"paper_average: a dataset appears twice in {datasets}")
    if part_datasets is None:
        from unsamv2.datasets.registry import is_part_dataset

        parts = {d.lower() for d in datasets if is_part_dataset(d)}
    else:
        parts = {str(d).lower() for d in part_datasets}

    def column_for_noc90(row: Mapping[str, Any]) -> float:
        is_part = str(row["dataset"]).lower() in parts
        return float(row["noc85"] if is_part else row["noc90"])

    return {
        "model": rows[0]["model"],
        "dataset": AVERAGE_DATASET,
        "granularity_mode": rows[0]["granularity_mode"],
        "noc80": float(np.mean([float(r["noc80"]) for r in rows])),
        "noc85": float(np.mean([float(r["noc85"]) for r in rows])),
        "noc90": float(np.mean([column_for_noc90(r) for r in rows])),
        "iou1": float(np.mean([float(r["iou1"]) for r in rows])),
        "n_objects": int(sum(int(r["n_objects"]) for r in rows)),
        "n_fail20": int(sum(int(r["n_fail20"]) for r in rows)),
    }


# ------------------------------------------------------------------------------------------------ per object


def per_object_columns(max_clicks: int) -> list[str]:
    """Per-object CSV columns; ``iou_01`` … ``iou_<max>`` hold the IoU after each click (empty after the stop)."""
    return ["model", "dataset", "image", "object", "granularity_mode", "granularity", "n_clicks",
            *[f"iou_{k:02d}" for k in range(1, max_clicks + 1)]]


def write_per_object_csv(
    records: Iterable[ObjectRecord], model: str, path: str | Path, max_clicks: int
) -> Path:
    """Write one row per (object, mode) atomically."""
    columns = per_object_columns(max_clicks)
    rows = []
    for r in records:
        row: dict[str, Any] = {
            "model": model, "dataset": r.dataset, "image": r.image_id, "object": r.object_id,
            "granularity_mode": r.mode, "granularity": "" if r.granularity is None else f"{r.granularity:g}",
            "n_clicks": len(r.ious),
        }
        for k, value in enumerate(r.ious, start=1):
            row[f"iou_{k:02d}"] = f"{value:.6f}"
        rows.append(row)
    return atomic_write_text(path, csv_text(columns, rows))


def read_per_object_csv(path: str | Path) -> list[dict[str, Any]]:
    """Read a per-object CSV: each row gets ``ious`` (list of floats) and ``granularity`` (float or None)."""
    out = []
    with open(path, newline="") as fh:
        for raw in csv.DictReader(fh):
            ious = [float(v) for k, v in raw.items() if k.startswith("iou_") and v != ""]
            out.append({
                "model": raw["model"], "dataset": raw["dataset"], "image": raw["image"], "object": raw["object"],
                "granularity_mode": raw["granularity_mode"],
                "granularity": float(raw["granularity"]) if raw["granularity"] else None,
                "ious": ious,
            })
    return out


# ------------------------------------------------------------------------------------------------ plot


def mean_iou_curve(sequences: Sequence[Sequence[float]], max_clicks: int) -> np.ndarray:
    """Mean IoU after 1..max_clicks clicks.

    A sequence that stopped at the target IoU is extended with its last value: the object is considered done.
    (RITM's IoU-analysis mode instead reruns with a target above 1; that costs a full 20 clicks per object.)
    """
    if not sequences:
        raise ValueError("mean_iou_curve needs at least one sequence")
    table = np.empty((len(sequences), max_clicks), dtype=np.float64)
    for i, seq in enumerate(sequences):
        values = list(seq[:max_clicks])
        table[i] = values + [values[-1]] * (max_clicks - len(values))
    return table.mean(axis=0)


def plot_miou_curves(
    curves: Mapping[str, Sequence[Sequence[float]]], path: str | Path, max_clicks: int = 20, title: str = ""
) -> Path:
    """Plot mean IoU vs number of clicks, one line per label (e.g. ``"unsamv2 (oracle)"``, ``"sam2 (none)"``)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on compute nodes
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    clicks = np.arange(1, max_clicks + 1)
    fig, ax = plt.subplots(figsize=(6, 4))
    try:
        # Line style and marker differ per curve as well as colour, so the plot survives greyscale printing.
        styles = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"), ("-", "v"), ("--", "x")]
        for i, (label, sequences) in enumerate(curves.items()):
            if sequences:
                linestyle, marker = styles[i % len(styles)]
                ax.plot(clicks, mean_iou_curve(sequences, max_clicks), linestyle=linestyle, marker=marker,
                        markersize=4, label=label)
        ax.set_xlabel("number of clicks")
        ax.set_ylabel("mean IoU")
        ax.set_xlim(1, max_clicks)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # clicks are whole numbers
        ax.set_ylim(0.0, 1.0)
        ax.grid(True, alpha=0.3)
        if title:
            ax.set_title(title)
        if ax.lines:  # no legend (and no matplotlib warning) for an empty plot
            ax.legend(loc="lower right", fontsize="small")
        fig.tight_layout()
        with atomic_output(path) as tmp:
            fig.savefig(tmp, format="png", dpi=120)
    finally:
        plt.close(fig)
    return Path(path)
