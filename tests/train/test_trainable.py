"""Trainable sets: what each mode unfreezes, checked against the official key table that the builder does not use."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from unsamv2.train import trainable
from unsamv2.train.config import TrainConfig
from unsamv2.train.embedding_cache import encoder_fingerprint
from unsamv2.train.loop import train
from unsamv2.train.trainable import (
    assert_trainable,
    build_training_model,
    expected_trainable_names,
    set_trainable,
    unsamv2_trainable_shapes,
)

ENCODER_PARAM = "image_encoder.trunk.patch_embed.proj.weight"
LORA_FACTOR = "sam_mask_decoder.transformer.final_attn_token_to_image.out_proj.lora_B"


def test_unsamv2_trains_only_granularity_and_lora(tiny_unsamv2: torch.nn.Module) -> None:
    names = {n for n, p in tiny_unsamv2.named_parameters() if p.requires_grad}
    assert names == expected_trainable_names(tiny_unsamv2, "unsamv2")
    assert all(n.startswith(("sam_prompt_encoder.granularity_embedding", "sam_prompt_encoder.fourier_embedder",
                             "sam_mask_decoder.gra_token", "sam_mask_decoder.gra_output_token_mlp"))
               or ".lora_" in n for n in names)
    assert_trainable(tiny_unsamv2, "unsamv2")


def test_official_table_is_what_the_model_trains(tiny_unsamv2: torch.nn.Module) -> None:
    table = unsamv2_trainable_shapes(8)
    # 14 granularity-module tensors + 7 attention modules × 4 projections × {A, B}; the paper's 345,760 scalars.
    assert len(table) == 14 + 7 * 4 * 2
    assert sum(math.prod(shape) for shape in table.values()) == 345_760
    assert table["sam_mask_decoder.transformer.layers.0.self_attn.q_proj.lora_A"] == (8, 256)
    assert table["sam_mask_decoder.transformer.layers.1.cross_attn_image_to_token.out_proj.lora_A"] == (8, 128)
    assert table[LORA_FACTOR] == (256, 8)
    trained = {n: tuple(p.shape) for n, p in tiny_unsamv2.named_parameters() if p.requires_grad}
    assert trained == table
    assert len(unsamv2_trainable_shapes(0)) == 14  # rank 0: no LoRA


def test_assertion_names_a_parameter_that_must_stay_frozen(tiny_unsamv2: torch.nn.Module) -> None:
    param = tiny_unsamv2.sam_mask_decoder.iou_token.weight
    param.requires_grad_(True)
    try:
        with pytest.raises(RuntimeError, match=r"sam_mask_decoder\.iou_token\.weight"):
            assert_trainable(tiny_unsamv2, "unsamv2")
    finally:
        param.requires_grad_(False)


def test_a_builder_rule_that_unfreezes_the_image_encoder_stops_training(
        monkeypatch: pytest.MonkeyPatch, scenes: Path, tiny_settings: dict[str, Any], tmp_path: Path) -> None:
    # The builder's own rule is broken (as a wrong prefix would break it); the check does not share it.
    rule = trainable.is_granularity_parameter
    monkeypatch.setattr(trainable, "is_granularity_parameter", lambda name: rule(name) or name == ENCODER_PARAM)
    torch.manual_seed(0)
    model = build_training_model(TrainConfig(**tiny_settings), torch.device("cpu"))
    assert model.get_parameter(ENCODER_PARAM).requires_grad
    assert ENCODER_PARAM not in expected_trainable_names(model, "unsamv2")
    extra = r"1 parameter\(s\) require grad but must be frozen \['image_encoder\.trunk"
    with pytest.raises(RuntimeError, match=extra):
        assert_trainable(model, "unsamv2")
    with pytest.raises(RuntimeError, match=r"image_encoder\.trunk\.patch_embed\.proj\.weight"):
        train(TrainConfig(**tiny_settings), scenes / "annotations", scenes / "images", tmp_path, progress=False)
    assert not (tmp_path / "final.pt").exists() and not (tmp_path / "losses.csv").exists()


def test_a_builder_that_freezes_a_lora_factor_is_stopped(monkeypatch: pytest.MonkeyPatch,
                                                         tiny_settings: dict[str, Any]) -> None:
    def freezes_one_factor(model: torch.nn.Module, mode: str) -> None:
        set_trainable(model, mode)
        model.get_parameter(LORA_FACTOR).requires_grad_(False)

    monkeypatch.setattr(trainable, "set_trainable", freezes_one_factor)
    torch.manual_seed(0)
    model = build_training_model(TrainConfig(**tiny_settings), torch.device("cpu"))
    with pytest.raises(RuntimeError, match=r"1 must train but are frozen \['sam_mask_decoder\.transformer\.final"):
        assert_trainable(model, "unsamv2")


def test_a_module_of_another_shape_is_an_error(tiny_settings: dict[str, Any]) -> None:
    torch.manual_seed(0)
    model = build_training_model(TrainConfig(**{**tiny_settings, "lora_rank": 4}), torch.device("cpu"))
    assert_trainable(model, "unsamv2", lora_rank=4)
    wrong = r"56 parameter\(s\) with a wrong shape .*lora_A \(4, 256\) \(official \(8, 256\)\)"
    with pytest.raises(RuntimeError, match=wrong):
        assert_trainable(model, "unsamv2", lora_rank=8)


def test_baseline_mode_refuses_the_unsamv2_architecture(tiny_unsamv2: torch.nn.Module) -> None:
    with pytest.raises(RuntimeError, match=r"70 UnSAMv2 parameter\(s\) in what must be the stock SAM-2 model"):
        assert_trainable(tiny_unsamv2, "baseline_no_granularity")
    with pytest.raises(ValueError, match="expects the stock SAM-2 architecture"):
        set_trainable(tiny_unsamv2, "baseline_no_granularity")
    with pytest.raises(ValueError, match="unknown trainable mode"):
        expected_trainable_names(tiny_unsamv2, "everything")


def test_small_model_trains_345760_parameters() -> None:
    torch.manual_seed(0)
    model = build_training_model(TrainConfig(model_size="small", image_size=256), torch.device("cpu"))
    assert_trainable(model, "unsamv2")
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 345_760


def test_demo_and_baseline_trainable_sets(tiny_settings: dict[str, Any]) -> None:
    size = tiny_settings["image_size"]
    torch.manual_seed(0)
    demo = build_training_model(TrainConfig(**{**tiny_settings, "trainable": "demo_from_scratch"}),
                                torch.device("cpu"))
    assert_trainable(demo, "demo_from_scratch")
    names = {n for n, p in demo.named_parameters() if p.requires_grad}
    assert "sam_mask_decoder.iou_token.weight" in names and "sam_mask_decoder.conv_s0.weight" in names
    assert "sam_mask_decoder.gra_token.weight" in names
    assert not any(n.startswith("image_encoder.") for n in names)

    torch.manual_seed(0)
    base = build_training_model(TrainConfig(**{**tiny_settings, "trainable": "baseline_no_granularity"}),
                                torch.device("cpu"))
    assert_trainable(base, "baseline_no_granularity")
    assert base.training and base.sam_mask_decoder.training  # training mode, as the UnSAMv2 modes
    base_names = {n for n, p in base.named_parameters() if p.requires_grad}
    assert base_names and all(n.startswith(("sam_prompt_encoder.", "sam_mask_decoder.")) for n in base_names)
    assert not any("gra" in n.split(".")[1] or "lora" in n for n in base_names)
    # Same seed, same random image encoder: the ablation compares decoders on identical features.
    assert encoder_fingerprint(demo.image_encoder, size) == encoder_fingerprint(base.image_encoder, size)


def test_fourier_width_of_table_6d_is_a_train_key_checked_against_the_table(tiny_settings: dict[str, Any]) -> None:
    torch.manual_seed(0)
    model = build_training_model(TrainConfig(**tiny_settings, fourier_dim=64), torch.device("cpu"))
    first = "sam_prompt_encoder.fourier_embedder.mlp.mlp.0.weight"
    # The official MLP's hidden width is (in + 256) / 2: 192 at 128, 160 at 64.
    assert tuple(dict(model.named_parameters())[first].shape) == (160, 64)
    assert unsamv2_trainable_shapes(8, 64)[first] == (160, 64)
    assert unsamv2_trainable_shapes(8, 128) == unsamv2_trainable_shapes(8)
    assert_trainable(model, "unsamv2", fourier_dim=64)
    with pytest.raises(RuntimeError, match=r"5 parameter\(s\) with a wrong shape .*mlp\.mlp\.0\.weight \(160, 64\) "
                                           r"\(official \(192, 128\)\)"):
        assert_trainable(model, "unsamv2")
    with pytest.raises(ValueError, match="train.fourier_dim"):
        TrainConfig(fourier_dim=63)


def test_sam_mask_token_ablation_trains_sams_own_token_and_round_trips(tiny_settings: dict[str, Any],
                                                                        tmp_path) -> None:
    """Fig. 10: the granularity prompt token and LoRA train as in UnSAMv2, SAM-2's single-output mask token and its
    head take the place of the (absent) granularity mask token; a saved checkpoint rebuilds the same model."""
    from unsamv2.model.build import build_unsamv2
    from unsamv2.model.checkpoint import save_checkpoint

    torch.manual_seed(0)
    cfg = TrainConfig(**{**tiny_settings, "trainable": "sam_mask_token"})
    model = build_training_model(cfg, torch.device("cpu"))
    assert_trainable(model, "sam_mask_token", lora_rank=cfg.lora_rank)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "sam_mask_decoder.mask_tokens.weight" in names
    assert "sam_mask_decoder.output_hypernetworks_mlps.0.layers.2.weight" in names
    assert "sam_mask_decoder.output_hypernetworks_mlps.1.layers.2.weight" not in names
    assert not any(n.startswith("sam_mask_decoder.gra_") for n, _ in model.named_parameters())
    # The UnSAMv2 model fails this mode's check (it has the token the ablation removes), and the reverse.
    torch.manual_seed(0)
    unsamv2 = build_training_model(TrainConfig(**tiny_settings), torch.device("cpu"))
    with pytest.raises(ValueError, match="output_token='sam'"):
        set_trainable(unsamv2, "sam_mask_token")
    with pytest.raises(RuntimeError, match="missing from the model"):
        assert_trainable(model, "unsamv2")

    save_checkpoint(model, tmp_path / "fig10.pt")
    rebuilt = build_unsamv2(checkpoint=tmp_path / "fig10.pt", device="cpu", image_size=cfg.image_size)
    assert rebuilt.sam_mask_decoder.output_token == "sam"
    for k, v in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[k], v), k
