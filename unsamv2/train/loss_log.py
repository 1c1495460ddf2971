"""The loss log of a training run: ``losses.csv`` (one row per step), TensorBoard events, ``loss_curve.png``."""
from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from unsamv2.io.atomic import atomic_output
from unsamv2.train.losses import LOSS_KEYS

__all__ = ["LOSS_CSV_COLUMNS", "LossLog", "plot_loss_curve"]

#: ``iou_first`` / ``iou_last``: mean IoU (logits > 0) of the supervised mask after the first / the last click over
#: the batch's non-empty targets — not a loss, a readable training-progress signal.
LOSS_CSV_COLUMNS: tuple[str, ...] = (
    "step", "epoch", "lr", "loss", *LOSS_KEYS, "iou_first", "iou_last", "num_objects", "seconds",
)


class LossLog:
    """Per-step losses → ``losses.csv`` (flushed every row) and TensorBoard when it is installed."""

    def __init__(self, path: Path, resume_step: int | None) -> None:
        self.path = path
        # Every row also goes to a hidden journal beside it: Snakemake deletes the outputs of a killed job
        # (losses.csv among them) before it reruns the job, and the resumed run must not lose the earlier steps.
        self.journal = path.with_name(f".{path.name}.journal")
        source = next((p for p in (path, self.journal) if p.is_file()), None) if resume_step is not None else None
        rows: list[dict[str, str]] = []
        if source is not None:
            # A killed run may have logged steps after its last saved state; they will be recomputed.
            with source.open(newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= resume_step]
        for dest in (path, self.journal):
            with atomic_output(dest) as tmp, tmp.open("w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=LOSS_CSV_COLUMNS)
                writer.writeheader()
                writer.writerows(rows)
        self._fh = path.open("a", newline="")
        self._writer = csv.writer(self._fh)
        self._journal_fh = self.journal.open("a", newline="")
        self._journal_writer = csv.writer(self._journal_fh)
        self._tb: Any = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(path.parent / "tensorboard"))
        except ImportError:  # tensorboard is optional
            self._tb = None

    def write(self, row: Mapping[str, float]) -> None:
        values = [row[c] for c in LOSS_CSV_COLUMNS]
        self._writer.writerow(values)
        self._fh.flush()
        self._journal_writer.writerow(values)
        self._journal_fh.flush()
        if self._tb is not None:
            for key in ("loss", *LOSS_KEYS, "lr"):
                self._tb.add_scalar(f"train/{key}", row[key], int(row["step"]))

    def close(self) -> None:
        self._fh.close()
        self._journal_fh.close()
        if self._tb is not None:
            self._tb.close()


def plot_loss_curve(csv_path: str | os.PathLike[str], png_path: str | os.PathLike[str], title: str = "") -> Path:
    """Loss-curve figure from ``losses.csv``: total loss (raw and moving average), the four terms, training IoU."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with Path(csv_path).open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    steps = np.array([int(r["step"]) for r in rows])
    window = max(1, len(rows) // 20)

    def smooth(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if window == 1:
            return steps, values
        return steps[window - 1 :], np.convolve(values, np.ones(window) / window, mode="valid")

    fig, (ax_total, ax_terms, ax_iou) = plt.subplots(1, 3, figsize=(15, 4))
    if rows:
        total = np.array([float(r["loss"]) for r in rows])
        ax_total.plot(steps, total, color="0.75", lw=0.8, label="per step")
        ax_total.plot(*smooth(total), color="C0", lw=1.5, label=f"moving mean ({window})")
        for k, key in enumerate(LOSS_KEYS):
            ax_terms.plot(*smooth(np.array([float(r[key]) for r in rows])), lw=1.0, color=f"C{k + 1}", label=key)
        for key, colour in (("iou_first", "C5"), ("iou_last", "C6")):
            ax_iou.plot(*smooth(np.array([float(r[key]) for r in rows])), lw=1.2, color=colour, label=key)
    ax_total.set(xlabel="step", ylabel="weighted total loss", yscale="log", title=title or "training loss")
    ax_terms.set(xlabel="step", ylabel="unweighted term (summed over clicks)", yscale="log",
                 title="loss terms (moving mean)")
    ax_iou.set(xlabel="step", ylabel="IoU (logits > 0) vs training targets", ylim=(0, 1),
               title="training IoU after first / last click")
    for ax in (ax_total, ax_terms, ax_iou):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    dest = Path(png_path)
    with atomic_output(dest) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return dest
