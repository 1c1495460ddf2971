"""Learning-rate schedule and data order: cosine end points, per-rank batches tiling the single-process ones."""
from __future__ import annotations

import pytest
import torch

from unsamv2.train.schedule import CosineFactor, cosine_lr_factor, epoch_batches


def test_cosine_schedule_end_points() -> None:
    assert cosine_lr_factor(0, 100, 1e-4, 1e-5) == pytest.approx(1.0)
    assert cosine_lr_factor(50, 100, 1e-4, 1e-5) == pytest.approx(0.55)
    assert cosine_lr_factor(100, 100, 1e-4, 1e-5) == pytest.approx(0.1)
    assert CosineFactor(100, 1e-4, 1e-5)(50) == cosine_lr_factor(50, 100, 1e-4, 1e-5)


def test_warmup_rises_linearly_to_the_base_lr_then_follows_the_cosine() -> None:
    # W = 4: steps 0..3 at 1/4, 2/4, 3/4, 4/4 of lr; the cosine then spans steps 4..104 (from lr to min_lr).
    assert [cosine_lr_factor(s, 104, 1e-3, 1e-4, warmup_steps=4) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert cosine_lr_factor(4, 104, 1e-3, 1e-4, warmup_steps=4) == pytest.approx(1.0)
    assert cosine_lr_factor(54, 104, 1e-3, 1e-4, warmup_steps=4) == pytest.approx(0.55)
    assert cosine_lr_factor(104, 104, 1e-3, 1e-4, warmup_steps=4) == pytest.approx(0.1)
    # What the optimiser actually uses, step after step (LambdaLR, as the training loop builds it).
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=3e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, CosineFactor(20, 3e-4, 3e-5, warmup_steps=5))
    used = []
    for _ in range(20):
        used.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert used[:6] == pytest.approx([6e-5, 1.2e-4, 1.8e-4, 2.4e-4, 3e-4, 3e-4])
    assert max(used) == pytest.approx(3e-4) and used[5:] == sorted(used[5:], reverse=True)
    assert opt.param_groups[0]["lr"] == pytest.approx(3e-5)  # after the last step


def test_rank_batches_tile_the_single_process_batches() -> None:
    single = epoch_batches(23, epoch=2, seed=7, batch_size=4, world_size=1, rank=0)
    ranks = [epoch_batches(23, epoch=2, seed=7, batch_size=2, world_size=2, rank=r) for r in range(2)]
    assert len(single) == 5 == len(ranks[0]) == len(ranks[1])  # drop-last: 23 // 4
    for s, batch in enumerate(single):
        assert batch == ranks[0][s] + ranks[1][s]
    assert epoch_batches(23, 3, 7, 4, 1, 0) != single  # a new order every epoch
    assert epoch_batches(23, 2, 7, 4, 1, 0) == single  # ... that only depends on (seed, epoch)
