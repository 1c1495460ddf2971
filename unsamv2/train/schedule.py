"""What a step sees: the learning rate at each step and the items of each step of an epoch.

The learning rate follows the official recipe (``unsamv2_small_training.yaml`` of yujunwei04/UnSAMv2: fvcore's
``CosineParamScheduler`` from ``base_lr`` to ``base_lr / 10``), evaluated per step, optionally after a
linear warm-up (``train.warmup_steps``; not in the paper's recipe, which fine-tunes a pretrained model). The data order of an epoch
is a pure function of ``(seed, epoch)``, shared by all processes, and split between them so that N processes ×
``batch_size`` see exactly the images one process with ``N × batch_size`` would.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["CosineFactor", "cosine_lr_factor", "epoch_batches"]

# Stream id mixed into the permutation seed, so that the data order never shares a random stream with the clicks
# (:mod:`unsamv2.train.segmenter`, stream 12) or the dataset's own draws (which use [seed, epoch, index]).
_PERMUTATION_STREAM = 11


def cosine_lr_factor(step: int, total_steps: int, lr: float, min_lr: float, warmup_steps: int = 0) -> float:
    """Multiplier of ``lr`` for the optimiser step ``step`` (0-based).

    Without warm-up: fvcore's ``CosineParamScheduler(start_value=lr, end_value=min_lr)`` evaluated at
    ``step / total_steps`` (``lr`` at step 0, ``min_lr`` at ``total_steps``). With ``warmup_steps = W > 0``: steps
    ``0 … W−1`` rise linearly as ``(step + 1) / W`` (step ``W − 1`` is the first at ``lr``), then the same cosine
    runs from ``lr`` at step ``W`` to ``min_lr`` at ``total_steps``.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (max(step, 0) + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    where = min(max((step - warmup_steps) / span, 0.0), 1.0)
    value = min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * where))
    return value / lr


class CosineFactor:
    """Picklable LR lambda (``LambdaLR`` stores callable objects' state in its state dict)."""

    def __init__(self, total_steps: int, lr: float, min_lr: float, warmup_steps: int = 0) -> None:
        self.total_steps = total_steps
        self.lr = lr
        self.min_lr = min_lr
        self.warmup_steps = warmup_steps

    def __call__(self, step: int) -> float:
        return cosine_lr_factor(step, self.total_steps, self.lr, self.min_lr, self.warmup_steps)


def epoch_batches(n_items: int, epoch: int, seed: int, batch_size: int, world_size: int, rank: int) -> list[list[int]]:
    """This rank's item indices for every step of ``epoch`` (drop-last).

    The epoch's permutation is shared by all ranks; step ``s`` takes the global slice
    ``perm[s·W·B : (s+1)·W·B]`` and rank ``r`` its ``r``-th sub-slice of ``B`` items, so the union over ranks of a
    step equals the batch of a single process with ``W·B`` images.
    """
    global_batch = batch_size * world_size
    steps = n_items // global_batch
    perm = np.random.default_rng([seed, epoch, _PERMUTATION_STREAM]).permutation(n_items)
    return [
        [int(i) for i in perm[s * global_batch + rank * batch_size : s * global_batch + (rank + 1) * batch_size]]
        for s in range(steps)
    ]
