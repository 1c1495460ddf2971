"""Granularity modes of the interactive evaluation, which model runs which, and the oracle / best-fixed choices.

The label of each mode is what the ``granularity_mode`` column of the CSVs shows:

``oracle``
    GraCo's "*" protocol: for every object the click loop runs for each g in 0.1, 0.2, ..., 1.0 and
    the g that reaches the target with the fewest clicks is kept; ties go to the higher IoU after the first click,
    then to the smaller g. An oracle choice (it looks at the ground truth), as in the paper's starred rows.
``fixed:<g>``
    one fixed granularity for every object.
``best_fixed``
    the single g of the grid with the lowest mean NoC at the target IoU over the whole dataset (ties: higher mean
    first-click IoU, then smaller g). Chosen on the evaluation set itself, so it is an oracle at dataset level.
``none``
    no granularity input (stock SAM-2), single-mask output (``multimask_output=False``).
``best_of_3``
    stock SAM-2 with ``multimask_output=True``; at every click the candidate with the highest IoU against the
    ground truth is kept — GraCo's/UnSAMv2's ``--oracle`` SAM path, also an oracle.

One deliberate difference from GraCo's selection (:func:`select_oracle`): GraCo compares the index of the last
click run, so a g that reaches the target exactly at click 20 ties with a g that never reaches it; here reaching at
click 20 wins. NoC is the same either way (both count 20); only which sequence is reported for 1-IoU/NoC80 can
differ in that corner.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from unsamv2.core.constants import GRANULARITY_GRID
from unsamv2.evaluate.config import EvaluationConfig
from unsamv2.evaluate.metrics import noc

__all__ = [
    "MODES_BY_MODEL",
    "GranularityMode",
    "clicks_to_target",
    "modes_for_model",
    "parse_granularity_mode",
    "select_best_fixed",
    "select_oracle",
]

ModeKind = Literal["oracle", "fixed", "best_fixed", "none", "best_of_3"]

#: The mode kinds each model kind can run: UnSAMv2 always needs a granularity, stock SAM-2 has none.
MODES_BY_MODEL: dict[str, tuple[str, ...]] = {
    "unsamv2": ("oracle", "fixed", "best_fixed"),
    "sam2": ("none", "best_of_3"),
}
#: The mode a model kind runs when none is asked for.
@dataclass(frozen=True)
class GranularityMode:
    """One way of choosing the granularity; ``label`` is what the summary's ``granularity_mode`` column shows."""

    kind: ModeKind
    value: float | None = None  # only for "fixed"

    @property
    def label(self) -> str:
        return f"fixed:{round(self.value, 4)}" if self.kind == "fixed" else self.kind

    @property
    def needs_granularity(self) -> bool:
        return self.kind in ("oracle", "fixed", "best_fixed")


def parse_granularity_mode(text: str) -> GranularityMode:
    """Parse ``oracle``, ``fixed:<g>`` (g in [0.1, 1]), ``best_fixed``, ``none`` or ``best_of_3``."""
    value = text.strip()
    if value in ("oracle", "best_fixed", "none", "best_of_3"):
        return GranularityMode(value)  # type: ignore[arg-type]
    if value.startswith("fixed:"):
        try:
            g = float(value.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"granularity mode {text!r}: '{value.split(':', 1)[1]}' is not a number") from None
        if not (0.1 - 1e-9 <= g <= 1.0 + 1e-9):
            raise ValueError(f"granularity mode {text!r}: g must lie in [0.1, 1.0]")
        return GranularityMode("fixed", round(g, 6))
    raise ValueError(f"unknown granularity mode {text!r}; expected oracle, fixed:<g>, best_fixed, none or best_of_3")


def modes_for_model(model_kind: str, texts: Sequence[str] | None) -> list[GranularityMode]:
    """Parse the modes asked for ``model_kind`` (``unsamv2`` or ``sam2``); none asked = the config's defaults
    (:class:`unsamv2.evaluate.config.EvaluationConfig`: ``unsamv2_modes`` / ``sam2_modes``).

    Raises ``ValueError`` for an unknown model kind or a mode the model cannot run.
    """
    if model_kind not in MODES_BY_MODEL:
        raise ValueError(f"unknown model {model_kind!r}; expected one of {sorted(MODES_BY_MODEL)}")
    modes = [parse_granularity_mode(m) for m in (texts or EvaluationConfig().modes(model_kind))]
    allowed = MODES_BY_MODEL[model_kind]
    bad = [m.label for m in modes if m.kind not in allowed]
    if bad:
        raise ValueError(f"granularity mode(s) {bad} do not apply to --model {model_kind}; allowed: {allowed}")
    return modes


def clicks_to_target(ious: Sequence[float], target_iou: float) -> float:
    """1-based index of the first IoU >= target, or ``inf`` if the (possibly truncated) sequence never gets there."""
    for index, value in enumerate(ious):
        if value >= target_iou:
            return float(index + 1)
    return math.inf


def select_oracle(sequences: Sequence[Sequence[float]], target_iou: float) -> int:
    """Index of the oracle's choice: fewest clicks to the target, then highest first IoU, then the first index."""
    if not sequences:
        raise ValueError("select_oracle needs at least one IoU sequence")
    return min(range(len(sequences)), key=lambda i: (clicks_to_target(sequences[i], target_iou), -sequences[i][0], i))


def select_best_fixed(
    sweeps: Sequence[dict[float, Sequence[float]]], target_iou: float, max_clicks: int = 20,
    grid: Sequence[float] = GRANULARITY_GRID,
) -> float:
    """The dataset's best fixed g: lowest mean NoC@target, then highest mean first-click IoU, then smallest g."""
    if not sweeps:
        raise ValueError("select_best_fixed needs at least one object's sweep")

    def key(g: float) -> tuple[float, float, float]:
        nocs = [noc(s[g], target_iou, max_clicks) for s in sweeps]
        first = [s[g][0] for s in sweeps]
        return (float(np.mean(nocs)), -float(np.mean(first)), g)

    return min(grid, key=key)
