"""The report's comparison figures, drawn from the run's own summaries: first-click IoU per dataset for every
(model, granularity mode) — for the demo, the granularity ablation — and AR@1000 per benchmark beside the paper's
bars. Hatches and grey levels tell the series apart, so the figures survive greyscale printing.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from unsamv2.io.atomic import atomic_output
from unsamv2.report.paper_comparison import ComparisonRow

__all__ = ["plot_ar1000_vs_paper", "plot_first_click_iou"]

_HATCHES = ("", "//", "..", "xx", "\\\\", "oo", "--", "++")
_GREYS = ("0.15", "0.45", "0.7", "0.9", "0.3", "0.6", "0.8", "0.55")
_FONT = 11


def _bars(
    groups: Sequence[str],
    series: dict[str, list[float | None]],
    ylabel: str,
    title: str,
    out: str | Path,
    ylim: tuple[float, float] | None = None,
) -> Path:
    """Grouped bar chart: one group per entry of ``groups``, one bar per series; ``None`` bars are drawn as a
    "n/a" label instead of a zero-height bar (a missing value is not a zero)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on compute nodes
    import matplotlib.pyplot as plt

    n = max(len(series), 1)
    width = 0.8 / n
    x = np.arange(len(groups))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 + 1.1 * len(groups) * max(1, n / 2)), 4.2))
    try:
        for i, (label, values) in enumerate(series.items()):
            pos = x - 0.4 + width * (i + 0.5)
            heights = [0.0 if v is None else v for v in values]
            bars = ax.bar(pos, heights, width, label=label, color=_GREYS[i % len(_GREYS)],
                          hatch=_HATCHES[i % len(_HATCHES)], edgecolor="black", linewidth=0.8)
            for bar, value in zip(bars, values):
                text = "n/a" if value is None else f"{value:.1f}"
                ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                            va="bottom", fontsize=_FONT - 3, xytext=(0, 2), textcoords="offset points")
        ax.set_xticks(x, groups, fontsize=_FONT)
        ax.set_ylabel(ylabel, fontsize=_FONT)
        ax.set_title(title, fontsize=_FONT + 1)
        if ylim is not None:
            ax.set_ylim(*ylim)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=_FONT - 2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        fig.tight_layout()
        with atomic_output(out) as tmp:
            fig.savefig(tmp, format="png", dpi=120)
    finally:
        plt.close(fig)
    return Path(out)


def plot_first_click_iou(rows: Sequence[ComparisonRow], out: str | Path, title: str) -> Path:
    """First-click IoU (%) of every (model, mode) of this run per dataset, from the comparison rows; for the
    demo this is the granularity ablation (UnSAMv2's oracle against the baselines)."""
    ours = [r for r in rows if r.metric == "1-IoU" and r.ours is not None and r.dataset != "average"]
    if not ours:
        raise ValueError("no first-click IoU of this run to plot")
    datasets = list(dict.fromkeys(r.dataset for r in ours))
    methods = list(dict.fromkeys(r.method for r in ours))
    value = {(r.method, r.dataset): r.ours for r in ours}
    series = {m: [value.get((m, d)) for d in datasets] for m in methods}
    return _bars(datasets, series, "first-click IoU (%)", title, out, ylim=(0, 105))


def plot_ar1000_vs_paper(rows: Sequence[ComparisonRow], out: str | Path) -> Path:
    """AR@1000 (%) per benchmark: the paper's bars (UnSAMv2, SAM) beside this run's models."""
    table3 = [r for r in rows if r.table == "table3"]
    datasets = list(dict.fromkeys(r.dataset for r in table3))
    series: dict[str, list[float | None]] = {}
    for method in ("UnSAMv2", "SAM"):
        paper = {r.dataset: r.paper for r in table3 if r.method == method}
        series[f"{method} (paper)"] = [paper.get(d) for d in datasets]
    for method in dict.fromkeys(r.method for r in table3 if r.ours is not None or r.paper is None):
        ours = {r.dataset: r.ours for r in table3 if r.method == method}
        if any(v is not None for v in ours.values()):
            series[f"{method} (this run)"] = [ours.get(d) for d in datasets]
    return _bars(datasets, series, "AR@1000 (%)", "Whole-image AR@1000, paper vs this run", out, ylim=(0, 105))
