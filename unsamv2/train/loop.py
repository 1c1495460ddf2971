"""The training loop: one optimiser step after another, epoch checkpoints, resume, CPU / GPU / DDP.

One optimiser step, per process:

1. a batch of ``batch_size`` images with up to ``max_masks`` pseudo-label masks each (:mod:`.dataset`), the
   items of the step chosen by :func:`.schedule.epoch_batches`;
2. the frozen image encoder's FPN features, computed or read from the embedding cache (:mod:`.embedding_cache`);
3. the prompt steps of :class:`.segmenter.MultiStepSegmenter`: a first click, then ``correction_clicks``
   correction clicks on the error of the current prediction, the previous logits fed back;
4. focal + dice + IoU-L1 + object-score BCE (weights ``train.loss_weight_*``) summed over the steps and normalised by the number of objects
   (:mod:`.losses`), gradients averaged over the processes (:mod:`.distributed`);
5. AdamW on the trainable parameters only (:mod:`.trainable`, asserted before the first step), cosine learning
   rate per step after an optional linear warm-up (:mod:`.schedule`).

Determinism: the data order of an epoch, the masks drawn for an item and the clicks made on it are pure functions
of ``(seed, epoch, item index)``; the only stateful randomness is torch's global generator (dropout), which is
saved with the training state (:mod:`.run_state`). A run killed at any point resumes from its last state and ends
with exactly the weights of an uninterrupted run (``tests/train/test_resume.py``).

Outputs (rank 0): ``checkpoint_epoch{N}.pt`` after every epoch and ``final.pt`` (official UnSAMv2 format:
``{"model": state_dict}``; the SAM-2 baseline writes the stock SAM-2 keys), ``train_state.pt`` (the trainable
tensors, optimiser, scheduler, every rank's RNG states, step, settings) with ``last.pt`` (the full weights at that
state, official format), ``losses.csv`` (one row per step), ``loss_curve.png``, ``train_summary.json``;
TensorBoard events under ``tensorboard/`` when ``tensorboard`` is installed (:mod:`.loss_log`). On a GPU the
forward runs under bf16 autocast (``train.bf16``).

Several processes (``torchrun --nproc_per_node N unsamv2 train ...``): the global batch of a step is split into
consecutive per-rank slices of the same permutation, so N processes × ``batch_size`` see exactly the images one
process with ``N × batch_size`` would.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset

from unsamv2.io.atomic import atomic_link, atomic_write_json
from unsamv2.train.config import TrainConfig
from unsamv2.train.dataset import PseudoLabelDataset, collate
from unsamv2.train.distributed import DistContext, all_reduce_mean, average_gradients, init_distributed
from unsamv2.train.embedding_cache import EmbeddingCache, encoder_fingerprint
from unsamv2.train.loss_log import LossLog, plot_loss_curve
from unsamv2.train.losses import LOSS_KEYS, MultiStepLoss
from unsamv2.train.run_state import load_state, parameter_digest, set_rng_state, write_state
from unsamv2.train.schedule import CosineFactor, epoch_batches
from unsamv2.train.segmenter import MultiStepSegmenter, click_generators, mean_iou, select_best_masks
from unsamv2.train.trainable import assert_trainable, build_training_model

__all__ = ["TrainResult", "train"]

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What :func:`train` did (also written to ``train_summary.json``)."""

    out_dir: Path
    final_checkpoint: Path
    steps: int
    total_steps: int
    epochs_completed: int
    wall_seconds: float
    resumed_from_step: int | None
    summary: dict[str, Any] = field(default_factory=dict)


class _IndexedDataset(Dataset):
    """Adds each item's dataset index (it seeds the item's clicks)."""

    def __init__(self, base: PseudoLabelDataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self.base[index], "index": index}


def _collate_with_index(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {**collate(items), "index": [int(it["index"]) for it in items]}



def _batch_iterator(dataset: Dataset, batches: list[list[int]], num_workers: int) -> Iterator[dict[str, Any]]:
    if not batches:
        return iter(())
    # A private generator for the loader's base seed: drawn from the global RNG it would shift the dropout masks
    # of a run resumed mid-epoch (its RNG state is restored before this draw, an uninterrupted run's after it).
    loader = DataLoader(dataset, batch_sampler=batches, collate_fn=_collate_with_index, num_workers=num_workers,
                        generator=torch.Generator())
    return iter(loader)


def train(
    config: TrainConfig,
    pseudo_labels: str | os.PathLike[str],
    images: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    progress: bool = True,
    on_step_end: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train a model on Stage-1 pseudo-labels; the entry point of ``unsamv2 train`` (and of every torchrun rank).

    Args:
        config: the ``train`` settings.
        pseudo_labels: folder of per-image pseudo-label JSONs.
        images: folder of the images they name.
        out_dir: where ``checkpoint_epoch{N}.pt``, ``last.pt``, ``train_state.pt``, ``losses.csv``,
            ``loss_curve.png``, ``final.pt`` and ``train_summary.json`` go (rank 0 writes).
        resume: continue from ``out_dir/train_state.pt`` if it exists (else start fresh).
        progress: show a tqdm bar (rank 0).
        on_step_end: called with the number of completed steps after each step (and after any state it
            triggered was written); tests use it to simulate a crash.
    """
    from tqdm.auto import tqdm

    from unsamv2.model.checkpoint import save_checkpoint

    start_time = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ctx = init_distributed(config)
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    if ctx.device.type == "cpu":
        # The segmenter gathers each image's features once per mask (``level[batch_index]``, repeated indices);
        # on several CPU threads the backward of that gather adds the per-mask gradients in a varying order, so
        # two runs of the same seed differ in the last bits after a few steps and then drift apart. torch's
        # deterministic kernels fix the order (measured: losses.csv of two 30-step demo runs on 2 threads differ
        # from step 5 without, identical with). On CUDA some kernels SAM-2 needs have no deterministic version.
        torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(config.seed)  # identical initialisation on every rank
        model = build_training_model(config, ctx.device)
        assert_trainable(model, config.trainable, lora_rank=config.lora_rank, fourier_dim=config.fourier_dim)
        params = [p for p in model.parameters() if p.requires_grad]
        n_trainable = sum(p.numel() for p in params)
        frozen_digest = parameter_digest([p for p in model.parameters() if not p.requires_grad])
        model.train()
        model.image_encoder.eval()  # frozen in every mode: no stochastic layers, cacheable outputs
        segmenter = MultiStepSegmenter(model, granularity=config.uses_granularity,
                                       multimask_first_step=config.multimask_first_step,
                                       correction_clicks=config.correction_clicks,
                                       correction_sampler=config.correction_sampler,
                                       object_score_gate=config.object_score_gate)
        loss_fn = MultiStepLoss(weights=config.loss_weights)

        dataset = PseudoLabelDataset(pseudo_labels, images, image_size=config.image_size, max_masks=config.max_masks,
                                     augment=config.augment, multiplier=config.multiplier, seed=config.seed,
                                     max_images=config.max_images)
        steps_per_epoch = len(dataset) // (config.batch_size * ctx.world_size)
        if steps_per_epoch == 0:
            raise ValueError(f"{len(dataset)} training items (images × multiplier) are fewer than one global batch "
                             f"of {config.batch_size} × {ctx.world_size} process(es)")
        total_steps = steps_per_epoch * config.epochs
        stop_step = total_steps if config.max_steps is None else min(total_steps, config.max_steps)

        # foreach: one vectorised update over all parameter tensors; the per-tensor loop cost ~20 % of a demo step.
        optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, foreach=True)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, CosineFactor(total_steps, config.lr, config.min_lr, config.warmup_steps))

        step = 0
        resumed_from: int | None = None
        if resume:
            state = load_state(out, model, config, ctx, frozen_digest)
            if state is not None:
                optimizer.load_state_dict(state["optimizer"])
                scheduler.load_state_dict(state["scheduler"])
                set_rng_state(state["rng"][ctx.rank])
                step = resumed_from = int(state["step"])
                log.info("resuming %s at step %d of %d", out, step, total_steps)
        if resumed_from is None:
            torch.manual_seed(config.seed + 1 + ctx.rank)  # dropout masks differ between ranks, as in DDP

        cache: EmbeddingCache | None = None
        if config.cache_embeddings:
            root = Path(config.cache_dir) if config.cache_dir else out / "embedding_cache"
            cache = EmbeddingCache(root, encoder_fingerprint(model.image_encoder, config.image_size))
        autocast_on = config.bf16 and ctx.device.type == "cuda"
        loss_log = LossLog(out / "losses.csv", resumed_from) if ctx.is_main else None
        indexed = _IndexedDataset(dataset)
        bar = tqdm(total=stop_step, initial=step, desc="train", unit="step", disable=not (progress and ctx.is_main))
        if ctx.is_main:
            log.info("training %s (%s, %d trainable parameters) on %s × %d: %d items, %d steps per epoch, %d steps",
                     config.model_size, config.trainable, n_trainable, ctx.device, ctx.world_size, len(dataset),
                     steps_per_epoch, total_steps)
        weights_on_disk: Path | None = None  # a checkpoint file holding exactly the current weights
        try:
            while step < stop_step:
                epoch, first = divmod(step, steps_per_epoch)
                dataset.set_epoch(epoch)
                batches = epoch_batches(len(dataset), epoch, config.seed, config.batch_size, ctx.world_size,
                                        ctx.rank)
                last_in_epoch = min(steps_per_epoch, first + stop_step - step)
                for batch in _batch_iterator(indexed, batches[first:last_in_epoch], config.num_workers):
                    t0 = time.perf_counter()
                    row = _train_step(segmenter, batch, epoch, config, ctx, cache, loss_fn, optimizer, params,
                                      autocast_on)
                    scheduler.step()
                    step += 1
                    if loss_log is not None:
                        loss_log.write({"step": step, "epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"],
                                        **row, "seconds": round(time.perf_counter() - t0, 4)})
                    bar.update(1)
                    bar.set_postfix(loss=f"{row['loss']:.3f}", epoch=epoch + 1)
                    epoch_done = step % steps_per_epoch == 0
                    weights_on_disk = None
                    if epoch_done or step == stop_step or (
                            config.save_state_every and step % config.save_state_every == 0):
                        epoch_file = out / f"checkpoint_epoch{step // steps_per_epoch}.pt" if epoch_done else None
                        if epoch_file is not None and ctx.is_main:
                            save_checkpoint(model, epoch_file)
                        write_state(out, model, optimizer, scheduler, step, config, ctx, frozen_digest,
                                    weights_file=epoch_file)
                        weights_on_disk = out / "last.pt"
                        if epoch_done and ctx.is_main:
                            log.info("epoch %d/%d done (step %d)", step // steps_per_epoch, config.epochs, step)
                            plot_loss_curve(out / "losses.csv", out / "loss_curve.png")
                    if on_step_end is not None:
                        on_step_end(step)
        finally:
            bar.close()
            if loss_log is not None:
                loss_log.close()

        digests = [parameter_digest(params)]
        if ctx.world_size > 1:
            gathered: list[Any] = [None] * ctx.world_size
            dist.all_gather_object(gathered, digests[0])
            digests = gathered
            if len(set(digests)) != 1:
                raise RuntimeError(f"the ranks ended with different weights (digests {digests}): gradient "
                                   f"averaging failed")
        wall = time.perf_counter() - start_time
        summary = {
            "config": config.to_dict(),
            "world_size": ctx.world_size,
            "device": str(ctx.device),
            "items_per_epoch": len(dataset),
            "steps_per_epoch": steps_per_epoch,
            "total_steps": total_steps,
            "steps": step,
            "epochs_completed": step // steps_per_epoch,
            "resumed_from_step": resumed_from,
            "trainable_parameters": n_trainable,
            "rank_weight_digests": digests,
            "embedding_cache": None if cache is None else {"folder": str(cache.folder), "hits": cache.hits,
                                                          "misses": cache.misses},
            "wall_seconds": round(wall, 2),
        }
        final = out / "final.pt"
        if ctx.is_main:
            if weights_on_disk is not None:  # the loop ended on a save: final.pt is those bytes, not a new copy
                atomic_link(weights_on_disk, final)
            else:
                save_checkpoint(model, final)
            plot_loss_curve(out / "losses.csv", out / "loss_curve.png",
                            title=f"{config.trainable} ({config.model_size}, {step} steps)")
            atomic_write_json(out / "train_summary.json", summary, indent=2)
        if ctx.world_size > 1:
            dist.barrier()
        return TrainResult(out, final, step, total_steps, step // steps_per_epoch, wall, resumed_from, summary)
    finally:
        torch.use_deterministic_algorithms(deterministic_before)
        if ctx.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def _train_step(
    segmenter: MultiStepSegmenter,
    batch: Mapping[str, Any],
    epoch: int,
    config: TrainConfig,
    ctx: DistContext,
    cache: EmbeddingCache | None,
    loss_fn: MultiStepLoss,
    optimizer: torch.optim.Optimizer,
    params: Sequence[nn.Parameter],
    autocast_on: bool,
) -> dict[str, float]:
    """One optimiser step on this rank's batch; returns the losses averaged over ranks (for the log)."""
    device = ctx.device
    gt = batch["masks"]
    n_local = int(gt.shape[0])
    # The normaliser is the mean object count over ranks (SAM-2 all-reduces num_objects the same way), so the
    # averaged gradient equals that of one process over the whole global batch.
    num_objects = float(all_reduce_mean(torch.tensor([float(n_local)], device=device), ctx).item())
    optimizer.zero_grad(set_to_none=False)
    terms = torch.zeros(len(LOSS_KEYS) + 3, device=device)
    if n_local > 0:
        images = batch["image"].to(device, non_blocking=True)
        rngs = click_generators(config.seed, epoch, batch["index"])
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast_on):
            with torch.no_grad():
                if cache is not None:
                    keys = [Path(name).stem for name in batch["file_name"]]
                    fpn = cache.encode_batch(keys, images, segmenter.encode_images)
                else:
                    fpn = segmenter.encode_images(images)
            outputs = segmenter(fpn, gt, batch["granularity"], batch["batch_index"], rngs)
        targets = gt.to(device)
        supervised = select_best_masks(outputs, targets, loss_fn)
        losses = loss_fn(supervised, targets, num_objects=num_objects)
        losses["loss"].backward()
        terms = torch.stack([losses["loss"].detach(), *(losses[k].detach() for k in LOSS_KEYS),
                             mean_iou(supervised[0]["masks"], targets), mean_iou(supervised[-1]["masks"], targets)])
    average_gradients(params, ctx)
    if num_objects > 0:
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
    else:
        log.warning("step without any mask on any rank (images with empty pseudo-labels): no update")
    terms = all_reduce_mean(terms, ctx).cpu().tolist()
    return {"loss": terms[0], **dict(zip(LOSS_KEYS, terms[1:-2], strict=True)), "iou_first": terms[-2],
            "iou_last": terms[-1], "num_objects": num_objects}
