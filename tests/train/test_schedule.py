"""Learning-rate schedule and data order: cosine end points, per-rank batches tiling the single-process ones."""
from __future__ import annotations

import pytest

from unsamv2.train.schedule import CosineFactor, cosine_lr_factor, epoch_batches


def test_cosine_schedule_end_points() -> None:
    assert cosine_lr_factor(0, 100, 1e-4, 1e-5) == pytest.approx(1.0)
    assert cosine_lr_factor(50, 100, 1e-4, 1e-5) == pytest.approx(0.55)
    assert cosine_lr_factor(100, 100, 1e-4, 1e-5) == pytest.approx(0.1)
    assert CosineFactor(100, 1e-4, 1e-5)(50) == cosine_lr_factor(50, 100, 1e-4, 1e-5)


def test_rank_batches_tile_the_single_process_batches() -> None:
    single = epoch_batches(23, epoch=2, seed=7, batch_size=4, world_size=1, rank=0)
    ranks = [epoch_batches(23, epoch=2, seed=7, batch_size=2, world_size=2, rank=r) for r in range(2)]
    assert len(single) == 5 == len(ranks[0]) == len(ranks[1])  # drop-last: 23 // 4
    for s, batch in enumerate(single):
        assert batch == ranks[0][s] + ranks[1][s]
    assert epoch_batches(23, 3, 7, 4, 1, 0) != single  # a new order every epoch
    assert epoch_batches(23, 2, 7, 4, 1, 0) == single  # ... that only depends on (seed, epoch)
