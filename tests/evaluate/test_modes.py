"""Granularity modes: parsing, which model runs which, and the oracle / best-fixed selections (known answers)."""
from __future__ import annotations

import pytest

from unsamv2.evaluate.modes import (
    MODES_BY_MODEL,
    GranularityMode,
    clicks_to_target,
    modes_for_model,
    parse_granularity_mode,
    select_best_fixed,
    select_oracle,
)


def test_parse_granularity_mode():
    assert parse_granularity_mode("oracle") == GranularityMode("oracle")
    assert parse_granularity_mode("fixed:0.3").label == "fixed:0.3"
    assert parse_granularity_mode("fixed:1").label == "fixed:1.0"
    assert parse_granularity_mode("best_of_3").label == "best_of_3"
    for bad in ("fixed:1.5", "fixed:abc", "fixed:0.05", "random"):
        with pytest.raises(ValueError):
            parse_granularity_mode(bad)


def test_modes_for_model_defaults_and_refusals():
    # Nothing asked: the config's defaults (one source: EvaluationConfig).
    assert modes_for_model("unsamv2", None) == [GranularityMode("oracle"), GranularityMode("best_fixed")]
    assert modes_for_model("sam2", []) == [GranularityMode("none"), GranularityMode("best_of_3")]
    assert [m.label for m in modes_for_model("unsamv2", ["best_fixed", "fixed:0.5"])] == ["best_fixed", "fixed:0.5"]
    # Every mode kind belongs to exactly one model: UnSAMv2's need a granularity, SAM-2's have none.
    for kind, allowed in MODES_BY_MODEL.items():
        assert {GranularityMode(k).needs_granularity for k in allowed} == {kind == "unsamv2"}
    with pytest.raises(ValueError, match="do not apply"):
        modes_for_model("sam2", ["oracle"])
    with pytest.raises(ValueError, match="do not apply"):
        modes_for_model("unsamv2", ["best_of_3"])
    with pytest.raises(ValueError, match="unknown model"):
        modes_for_model("sam3", None)


def test_select_oracle_fewest_clicks_then_first_iou():
    target = 0.9
    sequences = [
        [0.5, 0.7, 0.92],  # 3 clicks
        [0.6, 0.8, 0.91],  # 3 clicks, higher first IoU -> wins
        [0.8, 0.85, 0.88, 0.95],  # 4 clicks
    ]
    assert select_oracle(sequences, target) == 1
    assert select_oracle([[0.5, 0.95], [0.5, 0.91]], target) == 0  # full tie: the first (smaller g)
    # Reaching the target at the last click beats never reaching it, whatever the first IoU.
    assert select_oracle([[0.89] * 20, [0.1] * 19 + [0.95]], target) == 1
    # Nobody reaches it: highest first IoU.
    assert select_oracle([[0.3] * 20, [0.4] * 20], target) == 1
    assert clicks_to_target([0.5, 0.9], 0.9) == 2 and clicks_to_target([0.5], 0.9) == float("inf")


def test_select_best_fixed_lowest_mean_noc_then_first_iou():
    target = 0.9
    sweeps = [
        {0.1: [0.95], 0.2: [0.5, 0.95], 0.3: [0.96]},
        {0.1: [0.5, 0.95], 0.2: [0.95], 0.3: [0.6, 0.95]},
    ]
    # Mean NoC: 0.1 -> 1.5, 0.2 -> 1.5, 0.3 -> 1.5; mean first IoU: 0.725, 0.725, 0.78 -> 0.3.
    assert select_best_fixed(sweeps, target, grid=(0.1, 0.2, 0.3)) == 0.3
    sweeps[1][0.3] = [0.6, 0.7, 0.95]  # now 0.3 needs more clicks on average
    assert select_best_fixed(sweeps, target, grid=(0.1, 0.2, 0.3)) == 0.1  # tie 0.1/0.2 -> smaller g
