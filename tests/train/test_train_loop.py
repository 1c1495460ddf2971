"""Training loop: config, trainable-parameter assertion, prompt-step forward, best-of-3 loss, data order, outputs.

Everything runs on CPU with SAM-2.1 hiera-tiny at a 128-px model input on four 128×128 synthetic scenes (their
ground-truth annotations are in the pseudo-label format, so they stand in for Stage-1 output).
"""
from __future__ import annotations

import csv
import importlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from unsamv2.train.config import TrainConfig
from unsamv2.train.dataset import PseudoLabelDataset, collate
from unsamv2.train.embedding_cache import EmbeddingCache, encoder_fingerprint
from unsamv2.train.loop import (
    LOSS_CSV_COLUMNS,
    MultiStepSegmenter,
    assert_trainable,
    build_training_model,
    cosine_lr_factor,
    epoch_batches,
    expected_trainable_names,
    select_best_masks,
    train,
)
from unsamv2.train.losses import MultiStepLoss

SIZE = 128
TINY = {"model_size": "tiny", "image_size": SIZE, "max_masks": 3, "augment": False, "correction_clicks": 1,
        "multiplier": 1, "epochs": 1, "batch_size": 2}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Imported here: importing the module registers the "synthetic" dataset, which the registry tests check.
    synthetic = importlib.import_module("unsamv2.datasets.synthetic")
    return synthetic.write_synthetic_dataset(tmp_path_factory.mktemp("scenes"), 4, seed=3, image_size=(SIZE, SIZE))


@pytest.fixture(scope="module")
def tiny_unsamv2() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_training_model(TrainConfig(**TINY), torch.device("cpu"))


# --------------------------------------------------------------------------------------------- config


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


def test_result_differences_ignore_runtime_keys() -> None:
    a = TrainConfig(**TINY)
    assert a.result_differences(a.replace(device="cpu", num_workers=2, max_steps=3)) == []
    assert a.result_differences(a.replace(lr=2e-4, seed=1)) == ["lr", "seed"]


# --------------------------------------------------------------------------------------------- trainable sets


def test_unsamv2_trains_only_granularity_and_lora(tiny_unsamv2: torch.nn.Module) -> None:
    names = {n for n, p in tiny_unsamv2.named_parameters() if p.requires_grad}
    assert names == expected_trainable_names(tiny_unsamv2, "unsamv2")
    assert all(n.startswith(("sam_prompt_encoder.granularity_embedding", "sam_prompt_encoder.fourier_embedder",
                             "sam_mask_decoder.gra_token", "sam_mask_decoder.gra_output_token_mlp"))
               or ".lora_" in n for n in names)
    assert_trainable(tiny_unsamv2, "unsamv2")


def test_assertion_names_a_parameter_that_must_stay_frozen(tiny_unsamv2: torch.nn.Module) -> None:
    param = tiny_unsamv2.sam_mask_decoder.iou_token.weight
    param.requires_grad_(True)
    try:
        with pytest.raises(RuntimeError, match=r"sam_mask_decoder\.iou_token\.weight"):
            assert_trainable(tiny_unsamv2, "unsamv2")
    finally:
        param.requires_grad_(False)


def test_small_model_trains_345760_parameters() -> None:
    torch.manual_seed(0)
    model = build_training_model(TrainConfig(model_size="small", image_size=256), torch.device("cpu"))
    assert_trainable(model, "unsamv2")
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 345_760


def test_demo_and_baseline_trainable_sets() -> None:
    torch.manual_seed(0)
    demo = build_training_model(TrainConfig(**{**TINY, "trainable": "demo_from_scratch"}), torch.device("cpu"))
    names = {n for n, p in demo.named_parameters() if p.requires_grad}
    assert "sam_mask_decoder.iou_token.weight" in names and "sam_mask_decoder.conv_s0.weight" in names
    assert "sam_mask_decoder.gra_token.weight" in names
    assert not any(n.startswith("image_encoder.") for n in names)

    torch.manual_seed(0)
    base = build_training_model(TrainConfig(**{**TINY, "trainable": "baseline_no_granularity"}),
                                torch.device("cpu"))
    base_names = {n for n, p in base.named_parameters() if p.requires_grad}
    assert base_names and all(n.startswith(("sam_prompt_encoder.", "sam_mask_decoder.")) for n in base_names)
    assert not any("gra" in n.split(".")[1] or "lora" in n for n in base_names)
    # Same seed, same random image encoder: the ablation compares decoders on identical features.
    assert encoder_fingerprint(demo.image_encoder, SIZE) == encoder_fingerprint(base.image_encoder, SIZE)


# --------------------------------------------------------------------------------------------- forward and loss


def _batch(scenes: Path, n_items: int = 2) -> dict:
    ds = PseudoLabelDataset(scenes / "annotations", scenes / "images", image_size=SIZE, max_masks=3, augment=False)
    return collate([ds[i] for i in range(n_items)])


@pytest.mark.parametrize("sampler", ["uniform", "graco"])
def test_segmenter_runs_first_click_plus_corrections(tiny_unsamv2: torch.nn.Module, scenes: Path,
                                                     sampler: str) -> None:
    batch = _batch(scenes)
    seg = MultiStepSegmenter(tiny_unsamv2, granularity=True, multimask_first_step=False, correction_clicks=2,
                             correction_sampler=sampler)
    with torch.no_grad():
        fpn = seg.encode_images(batch["image"])
        rngs = [np.random.default_rng(k) for k in range(2)]
        outputs = seg(fpn, batch["masks"], batch["granularity"], batch["batch_index"], rngs)
    n = batch["masks"].shape[0]
    assert len(outputs) == 3
    for out in outputs:
        assert out["masks"].shape == (n, 1, SIZE, SIZE)
        assert out["low_res"].shape == (n, 1, SIZE // 4, SIZE // 4)
        assert out["ious"].shape == (n, 1) and out["object_score_logits"].shape == (n, 1)


def test_granularity_changes_the_prediction(tiny_unsamv2: torch.nn.Module, scenes: Path) -> None:
    batch = _batch(scenes, 1)
    seg = MultiStepSegmenter(tiny_unsamv2, granularity=True, multimask_first_step=False, correction_clicks=0,
                             correction_sampler="uniform")
    tiny_unsamv2.eval()
    try:
        with torch.no_grad():
            fpn = seg.encode_images(batch["image"])
            a = seg(fpn, batch["masks"], torch.full_like(batch["granularity"], 0.1), batch["batch_index"],
                    [np.random.default_rng(0)])
            b = seg(fpn, batch["masks"], torch.full_like(batch["granularity"], 1.0), batch["batch_index"],
                    [np.random.default_rng(0)])
    finally:
        tiny_unsamv2.train()
    assert not torch.allclose(a[0]["low_res"], b[0]["low_res"])


def test_baseline_first_step_is_multimask_and_best_of_3_is_supervised(scenes: Path) -> None:
    torch.manual_seed(0)
    cfg = TrainConfig(**{**TINY, "trainable": "baseline_no_granularity"})
    model = build_training_model(cfg, torch.device("cpu"))
    batch = _batch(scenes)
    seg = MultiStepSegmenter(model, granularity=False, multimask_first_step=True, correction_clicks=1,
                             correction_sampler="uniform")
    with torch.no_grad():
        outputs = seg(seg.encode_images(batch["image"]), batch["masks"], batch["granularity"], batch["batch_index"],
                      [np.random.default_rng(k) for k in range(2)])
    n = batch["masks"].shape[0]
    assert outputs[0]["masks"].shape == (n, 3, SIZE, SIZE) and outputs[0]["ious"].shape == (n, 3)
    assert outputs[1]["masks"].shape == (n, 1, SIZE, SIZE)

    loss_fn = MultiStepLoss()
    reduced = select_best_masks(outputs, batch["masks"], loss_fn)
    per_candidate = []
    for k in range(3):
        single = [{"masks": outputs[0]["masks"][:, k : k + 1], "ious": outputs[0]["ious"][:, k : k + 1],
                   "object_score_logits": outputs[0]["object_score_logits"]}]
        per_candidate.append(loss_fn(single, batch["masks"])["loss_mask"] * 20 +
                             loss_fn(single, batch["masks"])["loss_dice"])
    best = loss_fn(reduced[:1], batch["masks"])
    # Per object the minimum is taken, so the total is at most the best single candidate's total.
    assert float(best["loss_mask"] * 20 + best["loss_dice"]) <= float(min(per_candidate)) + 1e-5


def test_select_best_masks_picks_lowest_combined_loss() -> None:
    gt = torch.zeros(1, 8, 8, dtype=torch.bool)
    gt[0, 2:6, 2:6] = True
    good = torch.where(gt[0], 10.0, -10.0)
    masks = torch.stack([-good, good, torch.zeros(8, 8)]).unsqueeze(0)  # candidate 1 is exact
    out = {"masks": masks, "ious": torch.tensor([[0.1, 0.2, 0.3]]), "object_score_logits": torch.ones(1, 1)}
    (chosen,) = select_best_masks([out], gt, MultiStepLoss())
    assert torch.equal(chosen["masks"][0, 0], good) and float(chosen["ious"]) == pytest.approx(0.2)


# --------------------------------------------------------------------------------------------- schedule and data


def test_cosine_schedule_end_points() -> None:
    assert cosine_lr_factor(0, 100, 1e-4, 1e-5) == pytest.approx(1.0)
    assert cosine_lr_factor(50, 100, 1e-4, 1e-5) == pytest.approx(0.55)
    assert cosine_lr_factor(100, 100, 1e-4, 1e-5) == pytest.approx(0.1)


def test_rank_batches_tile_the_single_process_batches() -> None:
    single = epoch_batches(23, epoch=2, seed=7, batch_size=4, world_size=1, rank=0)
    ranks = [epoch_batches(23, epoch=2, seed=7, batch_size=2, world_size=2, rank=r) for r in range(2)]
    assert len(single) == 5 == len(ranks[0]) == len(ranks[1])  # drop-last: 23 // 4
    for s, batch in enumerate(single):
        assert batch == ranks[0][s] + ranks[1][s]
    assert epoch_batches(23, 3, 7, 4, 1, 0) != single  # a new order every epoch
    assert epoch_batches(23, 2, 7, 4, 1, 0) == single  # ... that only depends on (seed, epoch)


# --------------------------------------------------------------------------------------------- embedding cache


def test_embedding_cache_returns_what_the_encoder_computes(tiny_unsamv2: torch.nn.Module, scenes: Path,
                                                           tmp_path: Path) -> None:
    batch = _batch(scenes)
    seg = MultiStepSegmenter(tiny_unsamv2, granularity=True, multimask_first_step=False, correction_clicks=0,
                             correction_sampler="uniform")
    cache = EmbeddingCache(tmp_path, encoder_fingerprint(tiny_unsamv2.image_encoder, SIZE))
    with torch.no_grad():
        direct = seg.encode_images(batch["image"])
        first = cache.encode_batch(["a", "b"], batch["image"], seg.encode_images)
        second = cache.encode_batch(["a", "b"], batch["image"], lambda x: pytest.fail("cache miss"))
    assert (cache.misses, cache.hits) == (2, 2)
    for d, f, s in zip(direct, first, second, strict=True):
        assert torch.allclose(d, f, atol=1e-5) and torch.equal(f, s)


# --------------------------------------------------------------------------------------------- end to end


def test_train_writes_every_output_and_changes_only_trainable_weights(scenes: Path, tmp_path: Path) -> None:
    from unsamv2.model.build import build_unsamv2
    from unsamv2.model.checkpoint import load_checkpoint, read_checkpoint

    cfg = TrainConfig(**{**TINY, "epochs": 2, "cache_embeddings": True})
    result = train(cfg, scenes / "annotations", scenes / "images", tmp_path, progress=False)
    assert (result.steps, result.epochs_completed) == (4, 2)
    for name in ("checkpoint_epoch1.pt", "checkpoint_epoch2.pt", "last.pt", "train_state.pt", "final.pt",
                 "losses.csv", "loss_curve.png", "train_summary.json"):
        assert (tmp_path / name).is_file(), name

    with (tmp_path / "losses.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == LOSS_CSV_COLUMNS and [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert all(np.isfinite(float(r["loss"])) for r in rows)
    assert float(rows[-1]["lr"]) == pytest.approx(cfg.min_lr)
    summary = json.loads((tmp_path / "train_summary.json").read_text())
    assert summary["embedding_cache"]["hits"] == 4 and summary["embedding_cache"]["misses"] == 4

    # The epoch checkpoint is in the official format: the model builder loads it (size detected from the keys).
    model = build_unsamv2(checkpoint=tmp_path / "checkpoint_epoch2.pt", device="cpu", image_size=SIZE)
    assert model.unsamv2_load_report.format == "unsamv2"
    # Only the trainable set moved: every other tensor equals the seeded initialisation.
    torch.manual_seed(cfg.seed)
    init = build_training_model(cfg, torch.device("cpu"))
    trained = read_checkpoint(tmp_path / "final.pt")
    trainable = expected_trainable_names(init, "unsamv2")
    moved = {k for k, v in init.state_dict().items() if not torch.equal(v, trained[k])}
    assert moved and moved <= trainable
    load_checkpoint(init, tmp_path / "final.pt")


def test_cli_train_and_unknown_setting(scenes: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from unsamv2.cli import main

    settings = json.dumps({**TINY, "max_steps": 1, "trainable": "baseline_no_granularity"})
    rc = main(["train", "--pseudo-labels", str(scenes / "annotations"), "--images", str(scenes / "images"),
               "--out-dir", str(tmp_path / "run"), "--settings", settings, "--no-progress"])
    assert rc == 0
    assert (tmp_path / "run" / "final.pt").is_file()
    assert json.loads((tmp_path / "run" / "train_summary.json").read_text())["steps"] == 1

    rc = main(["train", "--pseudo-labels", str(scenes / "annotations"), "--images", str(scenes / "images"),
               "--out-dir", str(tmp_path / "bad"), "--settings", '{"epoch": 3}'])
    assert rc == 2
    assert "unknown train config key(s): epoch" in caplog.text
