"""The training loop (method.md §3): prompt simulation, multi-step loss, checkpoints, resume, CPU / GPU / DDP.

One optimiser step, per process:

1. a batch of ``batch_size`` images with up to ``max_masks`` pseudo-label masks each (:mod:`.dataset`);
2. the frozen image encoder's FPN features, computed or read from the embedding cache;
3. per mask, a first positive click uniform inside it, then ``correction_clicks`` correction clicks, each from the
   error of the current prediction (``logits > 0``) with the configured sampler; every step gets all clicks so
   far plus the previous low-res logits as mask input (SAM-2's ``_iter_correct_pt_sampling``);
4. focal ×20 + dice + IoU-L1 + object-score BCE summed over the steps and normalised by the number of objects
   (:mod:`.losses`), averaged over the processes;
5. AdamW on the trainable parameters only, cosine learning rate per step.

Determinism: the data order of an epoch, the masks drawn for an item and the clicks made on it are pure functions
of ``(seed, epoch, item index)``; the only stateful randomness is torch's global generator (dropout), which is
saved with the training state. A run killed at any point resumes from its last state and ends with exactly the
weights of an uninterrupted run (``tests/train/test_train_resume.py``).

Outputs (rank 0): ``checkpoint_epoch{N}.pt`` after every epoch and ``final.pt`` (official UnSAMv2 format:
``{"model": state_dict}``; the SAM-2 baseline writes the stock SAM-2 keys), ``train_state.pt`` (the trainable
tensors, optimiser, scheduler, every rank's RNG states, step, settings) with ``last.pt`` (the full weights at that
state, official format), ``losses.csv`` (one row per step), ``loss_curve.png``, ``train_summary.json``;
TensorBoard events under ``tensorboard/`` when ``tensorboard`` is installed. On a GPU the forward runs under bf16
autocast (``train.bf16``).

Several processes (``torchrun --nproc_per_node N unsamv2 train ...``): the global batch of a step is split into
consecutive per-rank slices of the same permutation, so N processes × ``batch_size`` see exactly the images one
process with ``N × batch_size`` would. Gradients are averaged with one ``all_reduce`` of the flattened trainable
gradients after ``backward`` (data-parallel training as ``DistributedDataParallel`` does it; done by hand
because SAM-2's forward is a multi-step loop with CPU-side click sampling, some prompt-encoder parameters are
unused in some steps, and a rank can have a batch without masks — a flat all-reduce handles all three
without DDP's unused-parameter machinery, and the trainable set is small, ~0.35 M for the paper).
"""
from __future__ import annotations

import csv
import hashlib
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from unsamv2.io.atomic import atomic_output, atomic_write_json
from unsamv2.train.config import TrainConfig
from unsamv2.train.dataset import PseudoLabelDataset, collate
from unsamv2.train.embedding_cache import EmbeddingCache, encoder_fingerprint
from unsamv2.train.losses import LOSS_KEYS, MultiStepLoss, dice_loss, sigmoid_focal_loss
from unsamv2.train.prompts import sample_correction_points, sample_first_points

__all__ = [
    "LOSS_CSV_COLUMNS",
    "MultiStepSegmenter",
    "TrainResult",
    "assert_trainable",
    "build_training_model",
    "cosine_lr_factor",
    "epoch_batches",
    "expected_trainable_names",
    "plot_loss_curve",
    "select_best_masks",
    "set_trainable",
    "train",
]

log = logging.getLogger(__name__)

#: SAM-2's logit for "no object" masks (``sam2.modeling.sam2_base.NO_OBJ_SCORE``).
NO_OBJ_SCORE = -1024.0
#: ``iou_first`` / ``iou_last``: mean IoU (logits > 0) of the supervised mask after the first / the last click over
#: the batch's non-empty targets — not a loss, a readable training-progress signal.
LOSS_CSV_COLUMNS: tuple[str, ...] = (
    "step", "epoch", "lr", "loss", *LOSS_KEYS, "iou_first", "iou_last", "num_objects", "seconds",
)
# Stream ids mixed into the seeds, so that the permutation, the clicks and the dataset's own draws (which use
# [seed, epoch, index]) never share a random stream.
_PERMUTATION_STREAM = 11
_CLICK_STREAM = 12

# The UnSAMv2 trainable set of method.md §2.5, written out here independently of the model builder so that the
# assertion really checks the builder.
_GRANULARITY_PREFIXES: tuple[str, ...] = (
    "sam_prompt_encoder.granularity_embedding.",
    "sam_prompt_encoder.fourier_embedder.",
    "sam_mask_decoder.gra_token.",
    "sam_mask_decoder.gra_output_token_mlp.",
)
_DECODER_SIDE_PREFIXES: tuple[str, ...] = ("sam_prompt_encoder.", "sam_mask_decoder.")


# --------------------------------------------------------------------------------------------- model


def build_training_model(config: TrainConfig, device: torch.device) -> nn.Module:
    """Build the model a config trains, on ``device``, with exactly its trainable set enabled.

    UnSAMv2 modes: :func:`unsamv2.model.build.build_unsamv2` (granularity modules, LoRA). The SAM-2-style
    baseline: the stock SAM-2.1 architecture of the same size (no granularity module, no LoRA). The
    initialisation draws from torch's global generator: seed it first (:func:`train` does).
    """
    from unsamv2.model.build import GranularityConfig, build_sam2_base, build_unsamv2

    if config.uses_granularity:
        gcfg = GranularityConfig(lora_rank=config.lora_rank, lora_dropout=config.lora_dropout,
                                 mlp_dropout=config.mlp_dropout)
        model = build_unsamv2(config.model_size, config.base_checkpoint, device="cpu",
                              image_size=config.image_size, config=gcfg, mode="train")
    else:
        from unsamv2.model.checkpoint import load_state_dict_into_model, read_checkpoint

        model = build_sam2_base(config.model_size, image_size=config.image_size)
        if config.base_checkpoint is not None:
            report = load_state_dict_into_model(model, read_checkpoint(config.base_checkpoint),
                                                source=str(config.base_checkpoint))
            log.info("loaded %s: %s", config.base_checkpoint, report.summary())
    set_trainable(model, config.trainable)
    return model.to(device)


def expected_trainable_names(model: nn.Module, mode: str) -> set[str]:
    """The parameter names ``mode`` trains (see :mod:`unsamv2.train.config` for the modes)."""
    names = [n for n, _ in model.named_parameters()]
    granularity = {n for n in names if n.startswith(_GRANULARITY_PREFIXES) or ".lora_A" in n or ".lora_B" in n}
    decoder_side = {n for n in names if n.startswith(_DECODER_SIDE_PREFIXES)}
    if mode == "unsamv2":
        return granularity
    if mode == "demo_from_scratch":
        return granularity | decoder_side
    if mode == "baseline_no_granularity":
        if granularity:
            raise ValueError("trainable 'baseline_no_granularity' expects the stock SAM-2 architecture, but the "
                             "model has granularity / LoRA parameters")
        return decoder_side
    raise ValueError(f"unknown trainable mode {mode!r}")


def set_trainable(model: nn.Module, mode: str) -> None:
    """Enable gradients for exactly :func:`expected_trainable_names` and freeze every other parameter."""
    wanted = expected_trainable_names(model, mode)
    for name, param in model.named_parameters():
        param.requires_grad_(name in wanted)


def assert_trainable(model: nn.Module, mode: str) -> None:
    """Raise ``RuntimeError`` unless exactly the parameters of ``mode`` require grad (names the offenders).

    For ``unsamv2`` this is the paper's claim that only the granularity module and LoRA train.
    """
    wanted = expected_trainable_names(model, mode)
    actual = {n for n, p in model.named_parameters() if p.requires_grad}
    extra, missing = sorted(actual - wanted), sorted(wanted - actual)
    if extra or missing:
        raise RuntimeError(
            f"trainable mode {mode!r}: {len(extra)} parameter(s) require grad but must be frozen "
            f"{extra[:10]}{' …' if len(extra) > 10 else ''}; {len(missing)} must train but are frozen "
            f"{missing[:10]}{' …' if len(missing) > 10 else ''}"
        )
    if not wanted:
        raise RuntimeError(f"trainable mode {mode!r}: the model has no trainable parameter")


# --------------------------------------------------------------------------------------------- forward


def _per_image_clicks(
    sampler: Callable[..., tuple[torch.Tensor, torch.Tensor]],
    gt: torch.Tensor,
    batch_index: torch.Tensor,
    rngs: Sequence[np.random.Generator],
    *extra: torch.Tensor,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run a click sampler image by image, each with that image's own generator.

    Why per image: the clicks of an item must not depend on which other items share its batch, or two
    processes with half batches would click differently from one process with the whole batch.
    """
    n = gt.shape[0]
    coords = torch.zeros(n, 1, 2, dtype=torch.float32)
    labels = torch.zeros(n, 1, dtype=torch.int32)
    for b, rng in enumerate(rngs):
        idx = torch.nonzero(batch_index == b).flatten()
        if idx.numel() == 0:
            continue
        p, lab = sampler(gt[idx], *(t[idx] for t in extra), rng, **kwargs)
        coords[idx] = p.cpu()
        labels[idx] = lab.cpu()
    return coords, labels


class MultiStepSegmenter(nn.Module):
    """SAM-2's interactive training forward: first click, correction clicks, previous logits fed back.

    Args:
        model: an UnSAMv2 model (granularity prompt encoder + granularity mask decoder) or a stock SAM-2 model.
        granularity: give each mask's granularity to the prompt encoder (UnSAMv2 models).
        multimask_first_step: SAM-2's three candidate masks on the single-click step (the SAM-2 baseline).
        correction_clicks: clicks after the first one.
        correction_sampler: ``uniform`` or ``graco``.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        granularity: bool,
        multimask_first_step: bool,
        correction_clicks: int,
        correction_sampler: str,
    ) -> None:
        super().__init__()
        self.model = model
        self.granularity = granularity
        self.multimask_first_step = multimask_first_step
        self.correction_clicks = correction_clicks
        self.correction_sampler = correction_sampler

    def encode_images(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The image encoder's FPN levels (what the embedding cache stores)."""
        return list(self.model.image_encoder(images)["backbone_fpn"])

    def image_features(self, fpn: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """FPN levels → (image embedding B×C×h×w, high-res features), as ``SAM2ImagePredictor.set_image``.

        Applied at every step rather than cached, because ``conv_s0``/``conv_s1`` belong to the mask decoder
        (trainable in the demo modes) and ``no_mem_embed`` to SAM-2's base.
        """
        model = self.model
        levels = list(fpn)
        if model.use_high_res_features_in_sam:
            levels[0] = model.sam_mask_decoder.conv_s0(levels[0])
            levels[1] = model.sam_mask_decoder.conv_s1(levels[1])
        embed = levels[-1]
        if model.directly_add_no_mem_embed:
            embed = embed + model.no_mem_embed.reshape(1, -1, 1, 1)
        return embed, levels[:-1] if model.use_high_res_features_in_sam else []

    def decode(
        self,
        embed: torch.Tensor,
        high_res: Sequence[torch.Tensor],
        coords: torch.Tensor,
        labels: torch.Tensor,
        mask_input: torch.Tensor | None,
        granularity: torch.Tensor | None,
        multimask: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One prompt-encoder + mask-decoder call for N prompts whose images are already gathered (N×C×h×w).

        Returns low-res logits N×M×h'×w' (object-score gated as SAM-2's ``_forward_sam_heads``), predicted IoUs
        N×M and object-score logits N×1.
        """
        model = self.model
        encoder = model.sam_prompt_encoder
        if mask_input is not None and tuple(mask_input.shape[-2:]) != tuple(encoder.mask_input_size):
            mask_input = F.interpolate(mask_input.float(), size=encoder.mask_input_size, mode="bilinear",
                                       align_corners=False, antialias=True)
        kwargs: dict[str, Any] = {"granularity": granularity} if self.granularity else {}
        sparse, dense = encoder(points=(coords, labels), boxes=None, masks=mask_input, **kwargs)
        low_res, ious, _, object_score_logits = model.sam_mask_decoder(
            image_embeddings=embed,
            image_pe=encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
            repeat_image=False,
            high_res_features=list(high_res),
        )
        if model.pred_obj_scores:
            # SAM-2 training turns the masks of "no object" predictions into a constant -1024 logit (hard choice,
            # consistent with what is fed back and clicked on); the object-score loss teaches the head.
            low_res = torch.where(object_score_logits[:, :, None, None] > 0, low_res, NO_OBJ_SCORE)
        return low_res.float(), ious.float(), object_score_logits.float()

    def forward(
        self,
        fpn: Sequence[torch.Tensor],
        gt: torch.Tensor,
        granularity: torch.Tensor,
        batch_index: torch.Tensor,
        rngs: Sequence[np.random.Generator],
    ) -> list[dict[str, torch.Tensor]]:
        """All prompt steps for the N masks of a batch.

        Args:
            fpn: the image encoder's FPN levels for the B images (on the model's device).
            gt: N×S×S bool ground truth on the CPU (clicks are sampled with NumPy/OpenCV).
            granularity: N granularities (ignored by the SAM-2 baseline).
            batch_index: N image indices into the batch.
            rngs: one click generator per image.

        Returns:
            one dict per step: ``masks`` N×M×S×S logits at image resolution, ``low_res`` N×M×h×w, ``ious`` N×M,
            ``object_score_logits`` N×1 (M = 3 on the baseline's first step, else 1).
        """
        device = fpn[0].device
        size = tuple(gt.shape[-2:])
        embed, high_res = self.image_features(fpn)
        gather = batch_index.to(device)
        embed = embed[gather]
        high_res = [level[gather] for level in high_res]
        g = granularity.to(device) if self.granularity else None

        coords, labels = _per_image_clicks(sample_first_points, gt, batch_index, rngs)
        mask_input: torch.Tensor | None = None
        outputs: list[dict[str, torch.Tensor]] = []
        for step in range(1 + self.correction_clicks):
            if step > 0:
                # Correction click from the error of the mask chosen at the previous step (thresholded at 0).
                pred = (outputs[-1]["chosen_high_res"] > 0).cpu()
                new_c, new_l = _per_image_clicks(sample_correction_points, gt, batch_index, rngs, pred,
                                                 method=self.correction_sampler)
                coords = torch.cat([coords, new_c], dim=1)
                labels = torch.cat([labels, new_l], dim=1)
            multimask = self.multimask_first_step and coords.shape[1] == 1
            low_res, ious, obj = self.decode(embed, high_res, coords.to(device), labels.to(device), mask_input, g,
                                             multimask)
            high = F.interpolate(low_res, size=size, mode="bilinear", align_corners=False)
            if low_res.shape[1] > 1:
                # SAM-2 feeds back (and clicks on) the candidate with the highest *predicted* IoU.
                best = ious.argmax(dim=1)
                rows = torch.arange(low_res.shape[0], device=device)
                mask_input = low_res[rows, best].unsqueeze(1)
                chosen_high = high[rows, best].unsqueeze(1)
            else:
                mask_input, chosen_high = low_res, high
            outputs.append({"masks": high, "low_res": low_res, "ious": ious, "object_score_logits": obj,
                            "chosen_high_res": chosen_high[:, 0].detach()})
        return outputs


def select_best_masks(
    step_outputs: Sequence[Mapping[str, torch.Tensor]], targets: torch.Tensor, loss_fn: MultiStepLoss
) -> list[dict[str, torch.Tensor]]:
    """Reduce multi-mask steps to the candidate SAM-2 supervises: the lowest ``w_mask·focal + w_dice·dice``.

    That is ``MultiStepMultiMasksAndIous`` with ``supervise_all_iou: false``: focal, dice and the IoU error are
    those of the best candidate, so the single-mask :class:`MultiStepLoss` then computes exactly SAM-2's loss.
    """
    reduced: list[dict[str, torch.Tensor]] = []
    for out in step_outputs:
        masks, ious = out["masks"], out["ious"]
        if masks.shape[1] == 1:
            reduced.append({"masks": masks, "ious": ious, "object_score_logits": out["object_score_logits"]})
            continue
        n, m = masks.shape[:2]
        with torch.no_grad():
            flat = masks.reshape(n * m, *masks.shape[2:])
            tgt = targets.float().repeat_interleave(m, dim=0)
            focal = sigmoid_focal_loss(flat, tgt, loss_fn.focal_alpha, loss_fn.focal_gamma).reshape(n, m)
            dice = dice_loss(flat, tgt).reshape(n, m)
            best = (loss_fn.weights["loss_mask"] * focal + loss_fn.weights["loss_dice"] * dice).argmin(dim=1)
        rows = torch.arange(n, device=masks.device)
        reduced.append({"masks": masks[rows, best].unsqueeze(1), "ious": ious[rows, best].unsqueeze(1),
                        "object_score_logits": out["object_score_logits"]})
    return reduced


# --------------------------------------------------------------------------------------------- schedule and data


def cosine_lr_factor(step: int, total_steps: int, lr: float, min_lr: float) -> float:
    """Multiplier of ``lr`` at ``step``: cosine from ``lr`` (step 0) to ``min_lr`` (step ``total_steps``).

    fvcore's ``CosineParamScheduler(start_value=lr, end_value=min_lr)`` evaluated at ``step / total_steps``.
    """
    where = min(max(step / max(total_steps, 1), 0.0), 1.0)
    value = min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * where))
    return value / lr


class _CosineFactor:
    """Picklable LR lambda (``LambdaLR`` stores callable objects' state in its state dict)."""

    def __init__(self, total_steps: int, lr: float, min_lr: float) -> None:
        self.total_steps = total_steps
        self.lr = lr
        self.min_lr = min_lr

    def __call__(self, step: int) -> float:
        return cosine_lr_factor(step, self.total_steps, self.lr, self.min_lr)


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


# --------------------------------------------------------------------------------------------- distributed


@dataclass(frozen=True)
class _Dist:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool  # this module initialised the process group (and tears it down)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _init_distributed(config: TrainConfig) -> _Dist:
    """Read torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) and pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if config.device == "auto":
        device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    elif config.device == "cuda":
        device = torch.device(f"cuda:{local_rank}")
    else:
        device = torch.device(config.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"train.device is {config.device!r} but no CUDA device is available")
        torch.cuda.set_device(device)
    owns = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        owns = True
    if world > 1:
        rank, world = dist.get_rank(), dist.get_world_size()
    return _Dist(rank, world, local_rank, device, owns)


def _all_reduce_mean(values: torch.Tensor, ctx: _Dist) -> torch.Tensor:
    if ctx.world_size > 1:
        values = values.clone()
        dist.all_reduce(values)
        values /= ctx.world_size
    return values


def _average_gradients(params: Sequence[nn.Parameter], ctx: _Dist) -> None:
    """Every trainable parameter gets a gradient (zeros if unused), averaged over the ranks in one all-reduce."""
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    if ctx.world_size == 1:
        return
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= ctx.world_size
    offset = 0
    for p in params:
        n = p.numel()
        p.grad.copy_(flat[offset : offset + n].view_as(p))
        offset += n


def _parameter_digest(params: Sequence[nn.Parameter]) -> str:
    digest = hashlib.sha256()
    for p in params:
        digest.update(p.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


# --------------------------------------------------------------------------------------------- state and logs


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class _LossLog:
    """Per-step losses → ``losses.csv`` (flushed every row) and TensorBoard when it is installed."""

    def __init__(self, path: Path, resume_step: int | None) -> None:
        self.path = path
        if resume_step is None or not path.is_file():
            with path.open("w", newline="") as fh:
                csv.writer(fh).writerow(LOSS_CSV_COLUMNS)
        else:
            # A killed run may have logged steps after its last saved state; they will be recomputed.
            with path.open(newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= resume_step]
            with atomic_output(path) as tmp, tmp.open("w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=LOSS_CSV_COLUMNS)
                writer.writeheader()
                writer.writerows(rows)
        self._fh = path.open("a", newline="")
        self._writer = csv.writer(self._fh)
        self._tb: Any = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(path.parent / "tensorboard"))
        except ImportError:  # tensorboard is optional
            self._tb = None

    def write(self, row: Mapping[str, float]) -> None:
        self._writer.writerow([row[c] for c in LOSS_CSV_COLUMNS])
        self._fh.flush()
        if self._tb is not None:
            for key in ("loss", *LOSS_KEYS, "lr"):
                self._tb.add_scalar(f"train/{key}", row[key], int(row["step"]))

    def close(self) -> None:
        self._fh.close()
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


# --------------------------------------------------------------------------------------------- training


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


def _write_state(out_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler, step: int, config: TrainConfig,
                 ctx: _Dist, frozen_digest: str) -> None:
    """``train_state.pt`` (self-contained, one atomic write) then ``last.pt`` (weights, official format).

    The state holds the trainable tensors themselves, so a process killed between the two writes still leaves
    a consistent state; the frozen weights are rebuilt on resume (same seed / base checkpoint) and checked
    against ``frozen_digest``.
    """
    from unsamv2.model.checkpoint import save_checkpoint

    rng_states: list[Any] = [_rng_state()]
    if ctx.world_size > 1:
        gathered: list[Any] = [None] * ctx.world_size
        dist.all_gather_object(gathered, rng_states[0])
        rng_states = gathered
    if not ctx.is_main:
        return
    state = {
        "step": step,
        "trainable": {n: p.detach().to("cpu").clone() for n, p in model.named_parameters() if p.requires_grad},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_states,
        "world_size": ctx.world_size,
        "config": config.to_dict(),
        "frozen_digest": frozen_digest,
    }
    with atomic_output(out_dir / "train_state.pt") as tmp:
        torch.save(state, tmp)
    save_checkpoint(model, out_dir / "last.pt")


def _load_state(out_dir: Path, model: nn.Module, config: TrainConfig, ctx: _Dist,
                frozen_digest: str) -> dict[str, Any] | None:
    """Restore the trainable weights from ``train_state.pt`` and return the state (None if there is none)."""
    state_path = out_dir / "train_state.pt"
    if not state_path.is_file():
        return None
    # weights_only=False: the state holds NumPy / Python RNG states; the file is this project's own output.
    state = torch.load(state_path, map_location="cpu", weights_only=False)
    saved = TrainConfig.from_dict(state["config"])
    diffs = config.result_differences(saved)
    if diffs:
        details = ", ".join(f"{k}: {state['config'][k]!r} → {config.to_dict()[k]!r}" for k in diffs)
        raise ValueError(f"cannot resume from {state_path}: the settings changed ({details}); start a new "
                         f"run in another --out-dir or restore the settings")
    if state["world_size"] != ctx.world_size:
        raise ValueError(f"cannot resume from {state_path}: it was trained with {state['world_size']} process(es), "
                         f"this run has {ctx.world_size} (the per-step batches would differ)")
    if state["frozen_digest"] != frozen_digest:
        raise ValueError(f"cannot resume from {state_path}: the frozen weights rebuilt now differ from those it "
                         f"was trained with (changed base checkpoint file, or another torch version's random "
                         f"initialisation)")
    params = dict(model.named_parameters())
    if set(state["trainable"]) != {n for n, p in params.items() if p.requires_grad}:
        raise ValueError(f"cannot resume from {state_path}: its trainable tensors do not match the model's")
    with torch.no_grad():
        for name, value in state["trainable"].items():
            params[name].copy_(value)
    return state


def _batch_iterator(dataset: Dataset, batches: list[list[int]], num_workers: int) -> Iterator[dict[str, Any]]:
    if not batches:
        return iter(())
    loader = DataLoader(dataset, batch_sampler=batches, collate_fn=_collate_with_index, num_workers=num_workers)
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
    ctx = _init_distributed(config)
    try:
        torch.manual_seed(config.seed)  # identical initialisation on every rank
        model = build_training_model(config, ctx.device)
        assert_trainable(model, config.trainable)
        params = [p for p in model.parameters() if p.requires_grad]
        n_trainable = sum(p.numel() for p in params)
        frozen_digest = _parameter_digest([p for p in model.parameters() if not p.requires_grad])
        model.train()
        model.image_encoder.eval()  # frozen in every mode: no stochastic layers, cacheable outputs
        segmenter = MultiStepSegmenter(model, granularity=config.uses_granularity,
                                       multimask_first_step=config.multimask_first_step,
                                       correction_clicks=config.correction_clicks,
                                       correction_sampler=config.correction_sampler)
        loss_fn = MultiStepLoss()

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
            optimizer, _CosineFactor(total_steps, config.lr, config.min_lr))

        step = 0
        resumed_from: int | None = None
        if resume:
            state = _load_state(out, model, config, ctx, frozen_digest)
            if state is not None:
                optimizer.load_state_dict(state["optimizer"])
                scheduler.load_state_dict(state["scheduler"])
                _set_rng_state(state["rng"][ctx.rank])
                step = resumed_from = int(state["step"])
                log.info("resuming %s at step %d of %d", out, step, total_steps)
        if resumed_from is None:
            torch.manual_seed(config.seed + 1 + ctx.rank)  # dropout masks differ between ranks, as in DDP

        cache: EmbeddingCache | None = None
        if config.cache_embeddings:
            root = Path(config.cache_dir) if config.cache_dir else out / "embedding_cache"
            cache = EmbeddingCache(root, encoder_fingerprint(model.image_encoder, config.image_size))
        autocast_on = config.bf16 and ctx.device.type == "cuda"
        loss_log = _LossLog(out / "losses.csv", resumed_from) if ctx.is_main else None
        indexed = _IndexedDataset(dataset)
        bar = tqdm(total=stop_step, initial=step, desc="train", unit="step", disable=not (progress and ctx.is_main))
        if ctx.is_main:
            log.info("training %s (%s, %d trainable parameters) on %s × %d: %d items, %d steps per epoch, %d steps",
                     config.model_size, config.trainable, n_trainable, ctx.device, ctx.world_size, len(dataset),
                     steps_per_epoch, total_steps)
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
                    if epoch_done or step == stop_step or (
                            config.save_state_every and step % config.save_state_every == 0):
                        if epoch_done and ctx.is_main:
                            save_checkpoint(model, out / f"checkpoint_epoch{step // steps_per_epoch}.pt")
                        _write_state(out, model, optimizer, scheduler, step, config, ctx, frozen_digest)
                        if epoch_done and ctx.is_main:
                            log.info("epoch %d/%d done (step %d)", step // steps_per_epoch, config.epochs, step)
                            plot_loss_curve(out / "losses.csv", out / "loss_curve.png")
                    if on_step_end is not None:
                        on_step_end(step)
        finally:
            bar.close()
            if loss_log is not None:
                loss_log.close()

        digests = [_parameter_digest(params)]
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
            save_checkpoint(model, final)
            plot_loss_curve(out / "losses.csv", out / "loss_curve.png",
                            title=f"{config.trainable} ({config.model_size}, {step} steps)")
            atomic_write_json(out / "train_summary.json", summary, indent=2)
        if ctx.world_size > 1:
            dist.barrier()
        return TrainResult(out, final, step, total_steps, step // steps_per_epoch, wall, resumed_from, summary)
    finally:
        if ctx.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def _train_step(
    segmenter: MultiStepSegmenter,
    batch: Mapping[str, Any],
    epoch: int,
    config: TrainConfig,
    ctx: _Dist,
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
    num_objects = float(_all_reduce_mean(torch.tensor([float(n_local)], device=device), ctx).item())
    optimizer.zero_grad(set_to_none=False)
    terms = torch.zeros(len(LOSS_KEYS) + 3, device=device)
    if n_local > 0:
        images = batch["image"].to(device, non_blocking=True)
        rngs = [np.random.default_rng([config.seed, epoch, idx, _CLICK_STREAM]) for idx in batch["index"]]
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
                             _mean_iou(supervised[0]["masks"], targets), _mean_iou(supervised[-1]["masks"], targets)])
    _average_gradients(params, ctx)
    if num_objects > 0:
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
    else:
        log.warning("step without any mask on any rank (images with empty pseudo-labels): no update")
    terms = _all_reduce_mean(terms, ctx).cpu().tolist()
    return {"loss": terms[0], **dict(zip(LOSS_KEYS, terms[1:-2], strict=True)), "iou_first": terms[-2],
            "iou_last": terms[-1], "num_objects": num_objects}


@torch.no_grad()
def _mean_iou(masks: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean IoU of ``masks[:, 0] > 0`` against the non-empty targets (0 if there are none)."""
    pred = masks[:, 0] > 0
    gt = targets.bool()
    present = gt.flatten(1).any(dim=1)
    if not bool(present.any()):
        return torch.zeros((), device=masks.device)
    inter = (pred & gt).flatten(1).sum(dim=1).float()
    union = (pred | gt).flatten(1).sum(dim=1).float().clamp(min=1.0)
    return (inter / union)[present].mean()
