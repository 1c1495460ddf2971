"""Settings of the training stage (paper §4.1): one dataclass mirroring the ``train:`` section of the config.

The defaults are the paper's recipe (``unsamv2_small_training.yaml`` of the official code): SAM-2.1 hiera-small
at 1024 px, LoRA rank 8, AdamW 1e-4 cosine → 1e-5, weight decay 1e-5, bf16 autocast on GPU, seed 1234, 5 epochs
× dataset multiplier 2, 2 images per GPU, 30 masks per image, 3 correction clicks, augmentation on. The workflow
passes the ``train`` section through unchanged (``unsamv2 train --settings JSON``), so the field names here are
the config keys; :meth:`TrainConfig.from_dict` refuses unknown keys by name (a typo must not silently fall back to
a default).

``trainable`` chooses what is optimised:

``unsamv2``
    the paper: only the granularity encoder (Fourier MLP + type embedding), the granularity mask token and its
    hypernetwork head, and the LoRA factors of the mask decoder (official ``training/model/sam2.py``; 345,760
    scalars for hiera-small at rank 8). Asserted before the first step: anything else requiring grad is an error.
``demo_from_scratch``
    for the offline demo only, where no pretrained SAM-2 weights exist: the ``unsamv2`` set **plus the whole
    prompt encoder and mask decoder** (including the decoder's high-resolution feature projections
    ``conv_s0``/``conv_s1``). A randomly initialised decoder frozen around a small trainable module cannot learn
    to segment at all; the image encoder stays frozen (random) — its features still carry colour and texture
    locally, and keeping it frozen is what makes the embedding cache possible on 2 CPU cores.
``baseline_no_granularity``
    the SAM-2-style baseline of the offline demo: stock SAM-2 architecture without any
    granularity module, the same prompt-encoder + mask-decoder parameters as ``demo_from_scratch`` trained,
    SAM-2's own mask tokens with **multimask output on the first click** and the best-of-3 loss (the candidate
    with the lowest focal×20 + dice loss is supervised, as SAM-2's ``MultiStepMultiMasksAndIous``); correction
    steps use the single-mask output, as SAM-2 does once there is more than one click.
``sam_mask_token``
    the paper's Fig. 10 ablation ("w/o granularity token"): the granularity prompt token and LoRA as ``unsamv2``,
    but no new output token — SAM-2's own single-output mask token (``mask_tokens`` and its hypernetwork head
    ``output_hypernetworks_mlps.0``) is fine-tuned to answer at the clicked granularity.
"""
from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from unsamv2.core.constants import SAM2_SIZES
from unsamv2.core.settings import settings_from_json, settings_from_mapping

__all__ = ["BASE_CHECKPOINT_SAM2", "CORRECTION_METHODS", "PAPER_LOSS_WEIGHTS", "TRAINABLE_MODES", "TrainConfig"]

TRAINABLE_MODES: tuple[str, ...] = ("unsamv2", "demo_from_scratch", "baseline_no_granularity", "sam_mask_token")
#: Correction-click samplers (``train.correction_sampler``): SAM-2's uniform one and the GraCo-style one.
CORRECTION_METHODS: tuple[str, ...] = ("uniform", "graco")
#: ``train.base_checkpoint: sam2`` in the workflow config = the stock SAM-2.1 checkpoint of ``model_size``,
#: downloaded by the workflow (:meth:`TrainConfig.resolve_base_checkpoint`).
BASE_CHECKPOINT_SAM2 = "sam2"
#: UnSAMv2's ``weight_dict`` (``unsamv2_small_training.yaml``): focal 20 : dice 1 (the paper's "ratio of 20:1"),
#: IoU 1, object score 1; the defaults of the ``loss_weight_*`` keys and of :mod:`unsamv2.train.losses`.
PAPER_LOSS_WEIGHTS: dict[str, float] = {"loss_mask": 20.0, "loss_dice": 1.0, "loss_iou": 1.0, "loss_class": 1.0}

# Loss term (unsamv2.train.losses) → its weight's config key.
_LOSS_WEIGHT_KEYS: dict[str, str] = {"loss_mask": "loss_weight_focal", "loss_dice": "loss_weight_dice",
                                     "loss_iou": "loss_weight_iou", "loss_class": "loss_weight_object_score"}

# Keys that may differ between a killed run and its resumption without changing the result: where the work runs
# and how fast, not what is computed.
# max_steps only truncates: the cosine schedule spans the full epochs whatever it is.
RUNTIME_KEYS: frozenset[str] = frozenset(
    {"device", "num_workers", "cache_embeddings", "cache_dir", "save_state_every", "max_steps"}
)


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters; every field is a key of the ``train:`` config section.

    Model:
        model_size: SAM-2.1 size (``tiny``, ``small``, ``base_plus``, ``large``); the paper uses ``small``.
        base_checkpoint: SAM-2.1 (or UnSAMv2) ``.pt`` to start from; ``None`` = random initialisation
            (the offline demo; no pretrained weights exist offline).
        lora_rank: LoRA rank on the decoder's attention projections (8; 0 = no LoRA).
        fourier_dim: width of the granularity's Fourier features, the granularity MLP's input (128; paper Table 6d
            ablates 32 / 64 / 128 / 256). A checkpoint records it in its tensors' shapes.
        lora_dropout, mlp_dropout: dropout of the LoRA input and of the granularity MLP (0.1 as the official code;
            the DDP equivalence test sets them to 0 so that two runs draw no random dropout masks).
        image_size: square model input (1024 in the paper; any positive multiple of 64).
        trainable: one of :data:`TRAINABLE_MODES` (module docstring).

    Data and prompts:
        max_masks: masks drawn per image (30).
        max_images: keep only the first N pseudo-label files (sorted); ``None`` = all.
        augment: the official augmentation chain (flip, affine, colour jitter, grayscale).
        correction_clicks: correction clicks after the first click (3); each step feeds back the previous
            low-res logits as mask input.
        correction_sampler: ``uniform`` (SAM-2 / UnSAMv2 HEAD) or ``graco`` (the GraCo-style sampler).

    Optimisation:
        epochs, multiplier: epochs and how many times each image is visited per epoch (5 and 2).
        batch_size: images per process (per GPU); the global batch is ``batch_size × world size``.
        lr, min_lr: AdamW learning rate, cosine-annealed per step down to ``min_lr`` (1e-4 → 1e-5).
        warmup_steps: linear warm-up: step ``s < warmup_steps`` uses ``lr · (s + 1) / warmup_steps``, so the
            ``warmup_steps``-th step is the first at ``lr``; the cosine then runs from there to the last step
            (0 = none, the paper's recipe).
        loss_weight_focal, loss_weight_dice, loss_weight_iou, loss_weight_object_score: weights of the four loss
            terms (:mod:`unsamv2.train.losses`); the paper's 20, 1, 1, 1 fit fine-tuning a pretrained decoder.
            From random initialisation focal × 20 drives every prediction to "nothing" (the focal term of an
            all-background mask is tiny while dice stays near 1); the offline demo uses focal × 1.
        object_score_gate: SAM-2's training gate that replaces the mask logits by −1024 where the object-score
            logit is ≤ 0 (on). From random initialisation every object score starts slightly negative, so the
            gate gives the mask head exactly zero gradient until the score head has learned "object"; ``false``
            (allowed only without a ``base_checkpoint``) trains the masks ungated — the score head is still
            trained by its own loss, and inference gates nothing either way.
        weight_decay: AdamW weight decay (1e-5, constant).
        grad_clip: max gradient norm, ``None`` = no clipping (the UnSAMv2 config removed SAM-2's 0.1).
        seed: seed of the initialisation, the data order, the mask draws and the clicks (1234).
        bf16: bf16 autocast when training on a GPU (ignored on CPU, where bf16 matmuls are slow).

    Runtime (may change when a run is resumed):
        device: ``auto`` (the local GPU of the process if there is one, else CPU), ``cpu`` or ``cuda``.
        num_workers: DataLoader worker processes.
        cache_embeddings: cache the frozen image encoder's outputs on disk and reuse them across epochs; only
            allowed with a frozen encoder and ``augment: false`` (otherwise the features change every visit).
        cache_dir: where the cache lives (default ``OUT_DIR/embedding_cache``); entries are keyed by a hash of
            the encoder weights and the image size, so a stale cache is never read.
        save_state_every: also write the resumable state every N steps (0 = at the end of each epoch only).
        max_steps: stop after this many optimiser steps in total (``None`` = the full schedule; the cosine
            schedule still spans the full ``epochs``). For budgeted demo runs and smoke tests.
    """

    # model
    model_size: str = "small"
    base_checkpoint: str | None = None
    lora_rank: int = 8
    fourier_dim: int = 128
    lora_dropout: float = 0.1
    mlp_dropout: float = 0.1
    image_size: int = 1024
    trainable: str = "unsamv2"
    # data and prompts
    max_masks: int = 30
    max_images: int | None = None
    augment: bool = True
    correction_clicks: int = 3
    correction_sampler: str = "uniform"
    # optimisation
    epochs: int = 5
    multiplier: int = 2
    batch_size: int = 2
    lr: float = 1e-4
    min_lr: float = 1e-5
    warmup_steps: int = 0
    weight_decay: float = 1e-5
    loss_weight_focal: float = PAPER_LOSS_WEIGHTS["loss_mask"]
    loss_weight_dice: float = PAPER_LOSS_WEIGHTS["loss_dice"]
    loss_weight_iou: float = PAPER_LOSS_WEIGHTS["loss_iou"]
    loss_weight_object_score: float = PAPER_LOSS_WEIGHTS["loss_class"]
    object_score_gate: bool = True
    grad_clip: float | None = None
    seed: int = 1234
    bf16: bool = True
    # runtime
    device: str = "auto"
    num_workers: int = 0
    cache_embeddings: bool = False
    cache_dir: str | None = None
    save_state_every: int = 0
    max_steps: int | None = None

    def __post_init__(self) -> None:
        if self.model_size not in SAM2_SIZES:
            raise ValueError(f"train.model_size must be one of {', '.join(SAM2_SIZES)}, got {self.model_size!r}")
        if self.trainable not in TRAINABLE_MODES:
            raise ValueError(f"train.trainable must be one of {', '.join(TRAINABLE_MODES)}, got {self.trainable!r}")
        if self.correction_sampler not in CORRECTION_METHODS:
            raise ValueError(f"train.correction_sampler must be one of {', '.join(CORRECTION_METHODS)}, "
                             f"got {self.correction_sampler!r}")
        if self.image_size <= 0 or self.image_size % 64 != 0:
            raise ValueError(f"train.image_size must be a positive multiple of 64, got {self.image_size}")
        positive = {"epochs": self.epochs, "multiplier": self.multiplier, "batch_size": self.batch_size,
                    "max_masks": self.max_masks}
        for key, value in positive.items():
            if int(value) < 1:
                raise ValueError(f"train.{key} must be >= 1, got {value}")
        for key in ("correction_clicks", "lora_rank", "num_workers", "save_state_every"):
            if getattr(self, key) < 0:
                raise ValueError(f"train.{key} must be >= 0, got {getattr(self, key)}")
        if not (0.0 < self.min_lr <= self.lr):
            raise ValueError(f"train.min_lr must lie in (0, lr = {self.lr}], got {self.min_lr}")
        if self.fourier_dim < 2 or self.fourier_dim % 2:
            raise ValueError(f"train.fourier_dim must be a positive even number (sin and cos of each frequency), "
                             f"got {self.fourier_dim}")
        if self.warmup_steps < 0:
            raise ValueError(f"train.warmup_steps must be >= 0, got {self.warmup_steps}")
        for key, value in self.loss_weights.items():
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"train.{_LOSS_WEIGHT_KEYS[key]} must be a finite number >= 0, got {value}")
        if self.loss_weights["loss_mask"] + self.loss_weights["loss_dice"] <= 0:
            raise ValueError("train.loss_weight_focal and train.loss_weight_dice are both 0: nothing would train "
                             "the masks")
        if not self.object_score_gate and self.base_checkpoint is not None:
            raise ValueError("train.object_score_gate: false is for training from scratch only (base_checkpoint "
                             "null): a pretrained SAM-2 was trained with the gate and its object scores are "
                             "already meaningful")
        if self.weight_decay < 0:
            raise ValueError(f"train.weight_decay must be >= 0, got {self.weight_decay}")
        for key in ("lora_dropout", "mlp_dropout"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ValueError(f"train.{key} must lie in [0, 1), got {getattr(self, key)}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"train.device must be auto, cpu, cuda or cuda:<n>, got {self.device!r}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"train.max_steps must be >= 1 or null, got {self.max_steps}")
        if self.max_images is not None and self.max_images < 1:
            raise ValueError(f"train.max_images must be >= 1 or null, got {self.max_images}")
        if self.cache_embeddings and self.augment:
            raise ValueError("train.cache_embeddings needs train.augment: false (augmented images change on every "
                             "visit, so their embeddings cannot be reused)")

    @property
    def loss_weights(self) -> dict[str, float]:
        """The ``weights`` of :class:`unsamv2.train.losses.MultiStepLoss` (keys ``loss_mask`` … ``loss_class``)."""
        return {loss_key: float(getattr(self, key)) for loss_key, key in _LOSS_WEIGHT_KEYS.items()}

    @property
    def uses_granularity(self) -> bool:
        """Whether the model has the granularity modules (every mode except the SAM-2-style baseline)."""
        return self.trainable != "baseline_no_granularity"

    @property
    def multimask_first_step(self) -> bool:
        """SAM-2's multimask output on the single-click step (only the SAM-2-style baseline)."""
        return self.trainable == "baseline_no_granularity"

    def baseline(self) -> TrainConfig:
        """The SAM-2-style ablation with the same budget: stock architecture (no granularity input, no LoRA),
        prompt encoder and mask decoder trained with SAM-2's multimask best-of-3 loss."""
        return self.replace(trainable="baseline_no_granularity", lora_rank=0)

    def resolve_base_checkpoint(self) -> TrainConfig:
        """``base_checkpoint: sam2`` → the path of the downloaded stock SAM-2.1 checkpoint of ``model_size``."""
        if self.base_checkpoint != BASE_CHECKPOINT_SAM2:
            return self
        from unsamv2.resources import sam21_checkpoint_path

        return self.replace(base_checkpoint=sam21_checkpoint_path(self.model_size))

    def to_json(self) -> str:
        """The ``--settings`` JSON of ``unsamv2 train`` (sorted keys: a stable Snakemake param)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from the ``train`` config section; an unknown key is an error naming it."""
        return settings_from_mapping(cls, "train", values)

    @classmethod
    def from_json(cls, text: str | None) -> TrainConfig:
        """Parse the ``--settings`` JSON object of ``unsamv2 train`` (empty/None = all defaults)."""
        return settings_from_json(cls, "train", text)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-able mapping (written into the training state and summary)."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some keys changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def result_differences(self, other: TrainConfig) -> list[str]:
        """Keys whose values differ between two configs and would change the trained weights."""
        mine, theirs = self.to_dict(), other.to_dict()
        return sorted(k for k in mine if k not in RUNTIME_KEYS and mine[k] != theirs[k])
