"""The dataset driver: one encoding per image, failures recorded, --limit, the dataset-level best fixed g."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.evaluate.fake_click_model import DiscModel, disc
from unsamv2.core.constants import GRANULARITY_GRID
from unsamv2.datasets.sample import ObjectMask, Sample
from unsamv2.evaluate.interactive import evaluate_dataset
from unsamv2.evaluate.modes import GranularityMode, parse_granularity_mode


def _samples(shape):
    gts = [disc(shape, 20, 20, 8), disc(shape, 10, 30, 5)]
    return [
        Sample("img0", Path("img0.png"), [ObjectMask(gts[0], None, "a"), ObjectMask(gts[1], None, "b")]),
        Sample("broken", Path("broken.png"), error="cannot read mask"),
        Sample("img1", Path("img1.png"), [ObjectMask(gts[1], None, "c")]),
        Sample("unreadable", Path("unreadable.png"), [ObjectMask(gts[0], None, "d")]),
    ]


def test_evaluate_dataset_encodes_each_image_once_and_reports_failures():
    shape = (40, 40)

    def loader(path: Path) -> np.ndarray:
        if path.name == "unreadable.png":
            raise ValueError(f"{path}: corrupt image")
        return np.zeros((*shape, 3), np.uint8)

    model = DiscModel()
    modes = [GranularityMode("oracle"), GranularityMode("best_fixed"), parse_granularity_mode("fixed:0.5")]
    result = evaluate_dataset(model, _samples(shape), modes, dataset="toy", target_iou=0.9, max_clicks=5,
                              progress=False, image_loader=loader)
    assert model.set_image_calls == 2  # img0 (two objects) and img1
    assert result.n_images == 4
    assert [f["image"] for f in result.failures] == ["broken", "unreadable"]
    assert result.best_fixed_granularity in GRANULARITY_GRID
    for mode in ("oracle", "best_fixed", "fixed:0.5"):
        assert len(result.sequences(mode)) == 3
    best_fixed = [r for r in result.records if r.mode == "best_fixed"]
    assert {r.granularity for r in best_fixed} == {result.best_fixed_granularity}
    assert result.metrics("oracle").noc90 <= result.metrics("fixed:0.5").noc90


def test_evaluate_dataset_limit_and_size_mismatch():
    shape = (40, 40)
    model = DiscModel()
    result = evaluate_dataset(model, _samples(shape), [GranularityMode("none")], dataset="toy", target_iou=0.9,
                              max_clicks=2, limit=1, progress=False,
                              image_loader=lambda p: np.zeros((41, 40, 3), np.uint8))
    assert result.n_images == 1 and not result.records
    assert "mask of object a" in result.failures[0]["error"]


def test_modes_the_model_cannot_run_are_refused_before_any_image():
    class NoGranularity(DiscModel):
        supports_granularity = False

    with pytest.raises(ValueError, match="no granularity input"):
        evaluate_dataset(NoGranularity(), iter(()), [GranularityMode("oracle")], dataset="toy", target_iou=0.9,
                         progress=False)
