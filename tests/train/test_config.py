"""Training settings: the paper's recipe as defaults, unknown keys refused by name, what a resume may change."""
from __future__ import annotations

from typing import Any

import pytest

from unsamv2.train.config import TrainConfig


def test_config_defaults_are_the_paper_recipe() -> None:
    cfg = TrainConfig()
    assert (cfg.model_size, cfg.image_size, cfg.lora_rank, cfg.trainable) == ("small", 1024, 8, "unsamv2")
    assert (cfg.lr, cfg.min_lr, cfg.weight_decay, cfg.seed) == (1e-4, 1e-5, 1e-5, 1234)
    assert (cfg.epochs, cfg.multiplier, cfg.batch_size, cfg.max_masks) == (5, 2, 2, 30)
    assert (cfg.correction_clicks, cfg.correction_sampler, cfg.augment, cfg.bf16) == (3, "uniform", True, True)
    assert cfg.grad_clip is None and cfg.base_checkpoint is None


def test_config_from_dict_names_unknown_keys() -> None:
    with pytest.raises(ValueError, match=r"unknown train config key\(s\): learning_rate"):
        TrainConfig.from_dict({"learning_rate": 1e-3})
    with pytest.raises(ValueError, match="correction_sampler"):
        TrainConfig.from_dict({"correction_sampler": "center"})
    with pytest.raises(ValueError, match="trainable"):
        TrainConfig.from_dict({"trainable": "everything"})
    with pytest.raises(ValueError, match="cache_embeddings needs train.augment: false"):
        TrainConfig.from_dict({"cache_embeddings": True, "augment": True})
    assert TrainConfig.from_json('{"lr": 0.001, "min_lr": 0.0001}').lr == 0.001


def test_result_differences_ignore_runtime_keys(tiny_settings: dict[str, Any]) -> None:
    a = TrainConfig(**tiny_settings)
    assert a.result_differences(a.replace(device="cpu", num_workers=2, max_steps=3)) == []
    assert a.result_differences(a.replace(lr=2e-4, seed=1)) == ["lr", "seed"]


def test_loss_weights_warmup_and_gate_keys() -> None:
    # Defaults: the paper's weight_dict, no warm-up, SAM-2's object-score gate.
    cfg = TrainConfig()
    assert cfg.loss_weights == {"loss_mask": 20.0, "loss_dice": 1.0, "loss_iou": 1.0, "loss_class": 1.0}
    assert cfg.warmup_steps == 0 and cfg.object_score_gate is True
    demo = TrainConfig.from_dict({"loss_weight_focal": 1, "loss_weight_iou": 0.5, "warmup_steps": 50,
                                  "object_score_gate": False})
    assert demo.loss_weights == {"loss_mask": 1.0, "loss_dice": 1.0, "loss_iou": 0.5, "loss_class": 1.0}
    with pytest.raises(ValueError, match="loss_weight_dice must be a finite number >= 0"):
        TrainConfig(loss_weight_dice=-1.0)
    with pytest.raises(ValueError, match="loss_weight_focal and train.loss_weight_dice are both 0"):
        TrainConfig(loss_weight_focal=0.0, loss_weight_dice=0.0)
    with pytest.raises(ValueError, match="warmup_steps must be >= 0"):
        TrainConfig(warmup_steps=-1)
    with pytest.raises(ValueError, match="object_score_gate: false is for training from scratch only"):
        TrainConfig(object_score_gate=False, base_checkpoint="sam2.1_hiera_small.pt")
    # All three change the trained weights: a resume must not mix them.
    assert cfg.result_differences(demo) == ["loss_weight_focal", "loss_weight_iou", "object_score_gate",
                                            "warmup_steps"]
