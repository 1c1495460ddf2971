"""Checkpoints: size detection, SAM-2.1 and official UnSAMv2 formats, exact round trips, errors, LoRA merge."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from unsamv2.model.build import (
    GranularityConfig,
    build_sam2_base,
    build_unsamv2,
    detect_model_size,
    granularity_config_from_state_dict,
    normalize_model_size,
)
from unsamv2.model.checkpoint import (
    CheckpointError,
    checkpoint_format,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from unsamv2.model.lora import merge_lora
from unsamv2.model.predictor import UnSAMv2ImagePredictor
from unsamv2.model.random_checkpoint import random_state_dict, write_random_checkpoint

TEST_IMAGE_SIZE = 256  # model input of the model tests (see conftest.py)


def official_added_keys() -> set[str]:
    """The added keys of the official UnSAMv2 checkpoint, written out by hand (LoRA base weights in the original_layer form)."""
    keys = {"sam_prompt_encoder.granularity_embedding.weight", "sam_mask_decoder.gra_token.weight"}
    keys |= {
        f"sam_prompt_encoder.fourier_embedder.mlp.mlp.{i}.{w}" for i in (0, 3, 6) for w in ("weight", "bias")
    }
    keys |= {
        f"sam_mask_decoder.gra_output_token_mlp.layers.{i}.{w}" for i in (0, 1, 2) for w in ("weight", "bias")
    }
    attns = [
        f"layers.{i}.{a}"
        for i in (0, 1)
        for a in ("self_attn", "cross_attn_token_to_image", "cross_attn_image_to_token")
    ]
    attns.append("final_attn_token_to_image")
    for a in attns:
        for p in ("q_proj", "k_proj", "v_proj", "out_proj"):
            base = f"sam_mask_decoder.transformer.{a}.{p}"
            keys |= {
                f"{base}.lora_A",
                f"{base}.lora_B",
                f"{base}.original_layer.weight",
                f"{base}.original_layer.bias",
            }
    return keys


def official_removed_keys() -> set[str]:
    """Base linears move under .original_layer in a LoRA checkpoint."""
    added = official_added_keys()
    return {k.replace(".original_layer.", ".") for k in added if ".original_layer." in k}


def predict_logits(model: torch.nn.Module, image: np.ndarray, g: float = 0.4) -> np.ndarray:
    p = UnSAMv2ImagePredictor(model)
    p.set_image(image)
    masks, _, _ = p.predict(np.array([[60.0, 50.0]]), np.array([1]), g, return_logits=True)
    return masks


# ------------------------------------------------------------------------------------------------ sizes
def test_size_aliases() -> None:
    assert normalize_model_size("t") == "tiny"
    assert normalize_model_size("b+") == "base_plus"
    assert normalize_model_size("Base-Plus") == "base_plus"
    assert normalize_model_size("sam2.1_hiera_l") == "large"
    with pytest.raises(ValueError, match="unknown SAM-2.1 model size 'huge'"):
        normalize_model_size("huge")


@pytest.mark.parametrize(
    ("width", "blocks", "size"),
    [(96, 12, "tiny"), (96, 16, "small"), (112, 24, "base_plus"), (144, 48, "large")],
)
def test_size_is_read_from_tensor_shapes(width: int, blocks: int, size: str) -> None:
    state = {"image_encoder.trunk.patch_embed.proj.weight": torch.zeros(width, 3, 7, 7)}
    state |= {f"image_encoder.trunk.blocks.{i}.norm1.weight": torch.zeros(1) for i in range(blocks)}
    assert detect_model_size(state) == size


@pytest.mark.parametrize("size", ["tiny", "small", "base_plus", "large"])
def test_size_detection_on_real_sam2_state_dicts(size: str) -> None:
    assert detect_model_size(build_sam2_base(size).state_dict()) == size


def test_size_detection_errors() -> None:
    with pytest.raises(ValueError, match="patch_embed"):
        detect_model_size({"foo": torch.zeros(1)})
    state = {"image_encoder.trunk.patch_embed.proj.weight": torch.zeros(96, 3, 7, 7)}
    with pytest.raises(ValueError, match="width 96 with 0 blocks"):
        detect_model_size(state)


def test_build_requires_an_explicit_device_and_a_size_source() -> None:
    with pytest.raises(TypeError):
        build_unsamv2("tiny")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="model size or a checkpoint"):
        build_unsamv2(device="cpu")
    with pytest.raises(ValueError, match="multiple of 64"):
        build_unsamv2("tiny", device="cpu", image_size=500)


# ------------------------------------------------------------------------------------------------ key sets
def test_official_format_key_set_is_stock_plus_the_documented_keys(
    checkpoint_factory: Callable[..., Path],
) -> None:
    stock = set(read_checkpoint(checkpoint_factory("sam2")))
    ours = set(read_checkpoint(checkpoint_factory("unsamv2")))
    assert ours - stock == official_added_keys()
    assert stock - ours == official_removed_keys()
    assert len(official_removed_keys()) == 56  # 28 LoRA'd linears × (weight, bias)


def test_saved_shapes_follow_the_table(checkpoint_factory: Callable[..., Path]) -> None:
    sd = read_checkpoint(checkpoint_factory("unsamv2"))
    assert sd["sam_prompt_encoder.granularity_embedding.weight"].shape == (1, 256)
    assert sd["sam_mask_decoder.gra_token.weight"].shape == (1, 256)
    assert sd["sam_mask_decoder.gra_output_token_mlp.layers.2.weight"].shape == (32, 256)
    assert sd["sam_mask_decoder.transformer.layers.0.self_attn.q_proj.lora_A"].shape == (8, 256)
    assert sd["sam_mask_decoder.transformer.layers.0.self_attn.q_proj.lora_B"].shape == (256, 8)
    assert sd["sam_mask_decoder.transformer.layers.1.cross_attn_token_to_image.v_proj.lora_B"].shape == (
        128,
        8,
    )
    assert sd["sam_mask_decoder.transformer.final_attn_token_to_image.out_proj.lora_A"].shape == (8, 128)
    added = official_added_keys()
    trainable = [k for k in added if ".original_layer." not in k]
    assert sum(sd[k].numel() for k in trainable) == 345_760


def test_format_detection(checkpoint_factory: Callable[..., Path]) -> None:
    assert checkpoint_format(read_checkpoint(checkpoint_factory("sam2"))) == "sam2"
    assert checkpoint_format(read_checkpoint(checkpoint_factory("unsamv2"))) == "unsamv2"


# ------------------------------------------------------------------------------------------------ loading
def test_stock_sam21_checkpoint_loads_with_fresh_new_modules(checkpoint_factory: Callable[..., Path]) -> None:
    path = checkpoint_factory("sam2")
    stock = read_checkpoint(path)
    model = build_unsamv2(checkpoint=path, device="cpu", image_size=TEST_IMAGE_SIZE)
    report = model.unsamv2_load_report
    assert report.format == "sam2"
    assert set(report.fresh) == {k for k in official_added_keys() if ".original_layer." not in k}
    state = model.state_dict()
    for k, v in stock.items():
        target = k if k in state else k.rsplit(".", 1)[0] + ".original_layer." + k.rsplit(".", 1)[1]
        assert torch.equal(state[target], v), k
    assert torch.count_nonzero(state["sam_mask_decoder.transformer.layers.0.self_attn.q_proj.lora_B"]) == 0


def test_official_checkpoint_round_trip_is_exact(
    checkpoint_factory: Callable[..., Path], tmp_path: Path
) -> None:
    path = checkpoint_factory("unsamv2")
    original = read_checkpoint(path)
    model = build_unsamv2(checkpoint=path, device="cpu", image_size=TEST_IMAGE_SIZE)
    assert model.unsamv2_load_report.format == "unsamv2"
    assert model.unsamv2_load_report.fresh == []
    out = save_checkpoint(model, tmp_path / "saved.pt")
    saved = read_checkpoint(out)
    assert set(saved) == set(original)
    for k, v in original.items():
        assert saved[k].dtype == v.dtype and torch.equal(saved[k], v), k
    raw = torch.load(out, map_location="cpu", weights_only=True)
    assert list(raw) == ["model"]


@pytest.mark.parametrize(("lora_rank", "fourier_dim"), [(4, 64), (0, 32), (16, 256)])
def test_a_checkpoint_of_another_lora_rank_or_fourier_width_loads_without_being_told(
    lora_rank: int, fourier_dim: int, photo: np.ndarray, tmp_path: Path
) -> None:
    """The ablations of Table 6 (a, d) save checkpoints of other shapes; evaluation reads them from the tensors."""
    torch.manual_seed(0)
    config = GranularityConfig(lora_rank=lora_rank, fourier_dim=fourier_dim)
    trained = build_unsamv2("tiny", device="cpu", image_size=TEST_IMAGE_SIZE, config=config)
    for name, param in trained.named_parameters():
        if ".lora_B" in name:  # fresh B is 0: make the LoRA path count, as after training
            torch.nn.init.normal_(param)
    path = save_checkpoint(trained, tmp_path / "variant.pt")
    state = read_checkpoint(path)
    assert granularity_config_from_state_dict(state) == GranularityConfig(
        lora_rank=lora_rank if lora_rank else 8, fourier_dim=fourier_dim)  # rank 0 saves no factor: the default
    loaded = build_unsamv2(checkpoint=path, device="cpu", image_size=TEST_IMAGE_SIZE)
    assert loaded.sam_prompt_encoder.fourier_embedder.fourier_dim == fourier_dim
    if lora_rank:
        a, b = trained.state_dict(), loaded.state_dict()
        assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    # Rank 0 loads into the default LoRA layout (fresh, B = 0), which must change no output.
    trained.eval()
    assert np.array_equal(predict_logits(loaded, photo), predict_logits(trained, photo))


def test_plain_and_original_layer_lora_forms_load_identically(
    checkpoint_factory: Callable[..., Path],
) -> None:
    a = build_unsamv2(checkpoint=checkpoint_factory("unsamv2"), device="cpu", image_size=TEST_IMAGE_SIZE)
    b = build_unsamv2(
        checkpoint=checkpoint_factory("unsamv2-plain"), device="cpu", image_size=TEST_IMAGE_SIZE
    )
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sa) == set(sb)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_predictions_are_identical_after_save_and_load(
    tiny_model: torch.nn.Module, photo: np.ndarray, tmp_path: Path
) -> None:
    before = predict_logits(tiny_model, photo)
    path = save_checkpoint(tiny_model, tmp_path / "again.pt")
    reloaded = build_unsamv2(checkpoint=path, device="cpu", image_size=TEST_IMAGE_SIZE)
    assert np.array_equal(predict_logits(reloaded, photo), before)


def test_merged_and_unmerged_predictions_agree(
    tiny_model: torch.nn.Module, photo: np.ndarray, tmp_path: Path
) -> None:
    unmerged = predict_logits(tiny_model, photo)
    merged_model = copy.deepcopy(tiny_model)
    assert merge_lora(merged_model) == 28
    merged = predict_logits(merged_model, photo)
    np.testing.assert_allclose(merged, unmerged, atol=2e-3, rtol=0)
    assert np.mean((merged > 0) == (unmerged > 0)) > 0.999
    # The LoRA factors of the test checkpoint are non-zero: without them the outputs move much more.
    no_lora = copy.deepcopy(tiny_model)
    with torch.no_grad():
        for name, p in no_lora.named_parameters():
            if name.endswith("lora_B"):
                p.zero_()
    assert np.abs(predict_logits(no_lora, photo) - unmerged).max() > 20 * np.abs(merged - unmerged).max()
    # A merged model saves the merged-checkpoint form, which loads back to the same predictions.
    path = save_checkpoint(merged_model, tmp_path / "merged.pt")
    saved = read_checkpoint(path)
    assert not any(".lora_" in k or ".original_layer." in k for k in saved)
    reloaded = build_unsamv2(checkpoint=path, device="cpu", image_size=TEST_IMAGE_SIZE)
    assert reloaded.unsamv2_load_report.format == "unsamv2-merged"
    np.testing.assert_allclose(predict_logits(reloaded, photo), merged, atol=1e-4, rtol=0)


def test_build_option_merges_lora(checkpoint_factory: Callable[..., Path]) -> None:
    model = build_unsamv2(
        checkpoint=checkpoint_factory("unsamv2"),
        device="cpu",
        image_size=TEST_IMAGE_SIZE,
        merge_lora_weights=True,
    )
    state = model.state_dict()
    assert not any(".lora_" in k for k in state)
    q = "sam_mask_decoder.transformer.layers.0.self_attn.q_proj"
    sd = read_checkpoint(checkpoint_factory("unsamv2"))
    expected = sd[f"{q}.original_layer.weight"] + 2.0 * sd[f"{q}.lora_B"] @ sd[f"{q}.lora_A"]
    assert torch.allclose(state[f"{q}.weight"], expected, atol=1e-6)


def test_explicit_size_overrides_detection_and_mismatch_lists_keys(
    checkpoint_factory: Callable[..., Path],
) -> None:
    with pytest.raises(CheckpointError) as err:
        build_unsamv2(
            "small", checkpoint=checkpoint_factory("sam2"), device="cpu", image_size=TEST_IMAGE_SIZE
        )
    msg = str(err.value)
    # small has 16 Hiera blocks, tiny 12: blocks 12-15 are missing, the stage-3 → 4 transition moved
    assert "missing keys (50)" in msg and "image_encoder.trunk.blocks.12.attn.qkv.weight" in msg
    assert "unexpected keys (2): image_encoder.trunk.blocks.10.proj.bias" in msg
    assert "checkpoint (768,) vs model (384,)" in msg


def _write(tmp_path: Path, name: str, state: dict[str, torch.Tensor]) -> Path:
    path = tmp_path / name
    torch.save({"model": state}, path)
    return path


@pytest.fixture(scope="module")
def official_state() -> dict[str, torch.Tensor]:
    return random_state_dict("tiny", "unsamv2", seed=5)


def test_unknown_key_is_an_error_that_names_it(official_state: dict, tmp_path: Path) -> None:
    state = dict(official_state)
    state["sam_mask_decoder.something_new.weight"] = torch.zeros(3)
    model = build_unsamv2("tiny", device="cpu", image_size=TEST_IMAGE_SIZE)
    with pytest.raises(
        CheckpointError, match=r"unexpected keys \(1\): sam_mask_decoder\.something_new\.weight"
    ):
        load_checkpoint(model, _write(tmp_path, "extra.pt", state))


def test_missing_key_is_an_error_that_names_it(official_state: dict, tmp_path: Path) -> None:
    state = dict(official_state)
    del state["sam_mask_decoder.gra_token.weight"]
    del state["sam_mask_decoder.transformer.layers.1.self_attn.k_proj.lora_A"]
    model = build_unsamv2("tiny", device="cpu", image_size=TEST_IMAGE_SIZE)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(model, _write(tmp_path, "missing.pt", state))
    assert "missing keys (2)" in str(err.value)
    assert "sam_mask_decoder.gra_token.weight" in str(err.value)
    assert "layers.1.self_attn.k_proj.lora_A" in str(err.value)


def test_shape_mismatch_is_an_error(official_state: dict, tmp_path: Path) -> None:
    state = dict(official_state)
    state["sam_mask_decoder.gra_token.weight"] = torch.zeros(2, 256)
    model = build_unsamv2("tiny", device="cpu", image_size=TEST_IMAGE_SIZE)
    with pytest.raises(
        CheckpointError, match=r"gra_token\.weight: checkpoint \(2, 256\) vs model \(1, 256\)"
    ):
        load_checkpoint(model, _write(tmp_path, "shape.pt", state))


def test_documented_leftovers_are_ignored(official_state: dict, tmp_path: Path) -> None:
    state = dict(official_state)
    state["sam_prompt_encoder.granularity_round_embedding.gran_values"] = torch.linspace(0.1, 1.0, 10)
    state["sam_prompt_encoder.granularity_round_embedding.embedding.weight"] = torch.zeros(10, 256)
    model = build_unsamv2("tiny", device="cpu", image_size=TEST_IMAGE_SIZE)
    report = load_checkpoint(model, _write(tmp_path, "leftover.pt", state))
    assert sorted(report.ignored) == [
        "sam_prompt_encoder.granularity_round_embedding.embedding.weight",
        "sam_prompt_encoder.granularity_round_embedding.gran_values",
    ]
    assert torch.equal(
        model.state_dict()["sam_mask_decoder.gra_token.weight"], state["sam_mask_decoder.gra_token.weight"]
    )


def test_both_key_forms_at_once_is_an_error(official_state: dict, tmp_path: Path) -> None:
    state = dict(official_state)
    k = "sam_mask_decoder.transformer.layers.0.self_attn.q_proj.original_layer.weight"
    state[k.replace(".original_layer.", ".")] = state[k].clone()
    model = build_unsamv2("tiny", device="cpu", image_size=TEST_IMAGE_SIZE)
    with pytest.raises(CheckpointError, match="twice"):
        load_checkpoint(model, _write(tmp_path, "twice.pt", state))


def test_lora_checkpoint_into_a_merged_model_is_an_error(official_state: dict, tmp_path: Path) -> None:
    model = build_unsamv2("tiny", device="cpu", image_size=TEST_IMAGE_SIZE)
    merge_lora(model)
    with pytest.raises(CheckpointError, match="load first, merge after"):
        load_checkpoint(model, _write(tmp_path, "lora.pt", official_state))


def test_unreadable_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        read_checkpoint(tmp_path / "garbage.pt")
    torch.save({"state_dict": {}}, tmp_path / "wrong.pt")
    with pytest.raises(CheckpointError, match="under 'model'"):
        read_checkpoint(tmp_path / "wrong.pt")
    torch.save({"model": {"a": 1}}, tmp_path / "notensor.pt")
    with pytest.raises(CheckpointError, match="not a mapping of parameter names to tensors"):
        read_checkpoint(tmp_path / "notensor.pt")


def test_random_checkpoint_writer_rejects_unknown_formats(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown checkpoint format"):
        write_random_checkpoint(tmp_path / "x.pt", fmt="onnx")
