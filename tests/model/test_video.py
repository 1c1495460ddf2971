"""Video: the granularity token on every frame, per-object granularities, frame folders, errors, the official
predictor's semantics (mask prompts, per-call propagation granularity) and the SAM-2 baseline's first-click controls."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unsamv2.model.build import build_sam2_video_model, build_unsamv2
from unsamv2.model.video import Sam2BaselineVideoPredictor, UnSAMv2VideoPredictor, list_frames, track_object

TEST_IMAGE_SIZE = 256  # model input of the model tests (see conftest.py)


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory: pytest.TempPathFactory, photo: np.ndarray) -> Path:
    """Four frames of a panning photo, named so that plain string sorting would get the order wrong."""
    root = tmp_path_factory.mktemp("frames")
    names = {1: "frame_1.png", 2: "frame_2.png", 3: "frame_3.jpg", 10: "frame_10.png"}
    for k, name in names.items():
        Image.fromarray(np.roll(photo, 6 * k, axis=1)).save(root / name)
    return root


@pytest.fixture(scope="module")
def video_model(checkpoint_factory: Callable[..., Path]) -> UnSAMv2VideoPredictor:
    model = build_unsamv2(
        checkpoint=checkpoint_factory("unsamv2"), device="cpu", image_size=TEST_IMAGE_SIZE, video=True
    )
    assert isinstance(model, UnSAMv2VideoPredictor)
    return model


class PromptSpy:
    """Records (number of sparse tokens, granularity fed) for every prompt-encoder call of the video model."""

    def __init__(self, model: UnSAMv2VideoPredictor) -> None:
        self.calls: list[tuple[int, float | None]] = []
        self.encoder = model.sam_prompt_encoder
        self.handle = self.encoder.register_forward_hook(self._hook)

    def _hook(self, module: torch.nn.Module, args: tuple, out: tuple) -> None:
        g = module.default_granularity
        self.calls.append((out[0].shape[1], None if g is None else round(float(g.reshape(-1)[0]), 6)))

    def close(self) -> None:
        self.handle.remove()


def test_frames_are_listed_in_natural_order(frames_dir: Path) -> None:
    assert [p.name for p in list_frames(frames_dir)] == [
        "frame_1.png",
        "frame_2.png",
        "frame_3.jpg",
        "frame_10.png",
    ]


def test_every_frame_is_decoded_with_the_granularity_token(
    video_model: UnSAMv2VideoPredictor, frames_dir: Path, photo: np.ndarray
) -> None:
    spy = PromptSpy(video_model)
    try:
        paths, masks = track_object(video_model, frames_dir, 1, [[60, 50], [10, 10]], [1, 0], 0.4)
    finally:
        spy.close()
    assert len(paths) == 4 and sorted(masks) == [0, 1, 2, 3]
    assert all(m.shape == photo.shape[:2] and m.dtype == bool for m in masks.values())
    # clicked frame: 2 clicks + pad + granularity; propagated frames: sam2's "no click" point (label -1) + pad
    # + granularity, on each of the 3 other frames
    assert spy.calls[0] == (4, 0.4)
    assert spy.calls[1:] == [(3, 0.4)] * 3


def test_the_granularity_changes_propagated_frames(
    video_model: UnSAMv2VideoPredictor, frames_dir: Path
) -> None:
    logits = {}
    for g in (0.1, 1.0):
        state = video_model.init_state(str(frames_dir))
        video_model.add_new_points_or_box(state, 0, 1, points=[[60, 50]], labels=[1], granularity=g)
        logits[g] = {f: out[0, 0].clone() for f, _, out in video_model.propagate_in_video(state)}
    assert not torch.allclose(logits[0.1][2], logits[1.0][2])


def test_each_object_keeps_its_own_granularity(video_model: UnSAMv2VideoPredictor, frames_dir: Path) -> None:
    state = video_model.init_state(str(frames_dir))
    video_model.add_new_points_or_box(state, 0, 7, points=[[60, 50]], labels=[1], granularity=0.2)
    video_model.add_new_points_or_box(state, 0, 9, points=[[120, 150]], labels=[1], granularity=0.9)
    spy = PromptSpy(video_model)
    try:
        outputs = list(video_model.propagate_in_video(state))
    finally:
        spy.close()
    assert len(outputs) == 4 and outputs[-1][1] == [7, 9]
    assert spy.calls == [(3, 0.2), (3, 0.9)] * 3  # objects alternate on each propagated frame
    video_model.remove_object(state, 7)
    assert video_model.object_granularity(state, 9) == 0.9


def test_errors(
    video_model: UnSAMv2VideoPredictor, frames_dir: Path, tmp_path: Path, photo: np.ndarray
) -> None:
    state = video_model.init_state(str(frames_dir))
    with pytest.raises(TypeError):
        video_model.add_new_points_or_box(
            state, 0, 1, points=[[60, 50]], labels=[1]
        )  # granularity is required
    with pytest.raises(ValueError, match=r"\[0\.1, 1\.0\]"):
        video_model.add_new_points_or_box(state, 0, 1, points=[[60, 50]], labels=[1], granularity=0.0)
    with pytest.raises(IndexError, match="outside the video"):
        video_model.add_new_points_or_box(state, 4, 1, points=[[60, 50]], labels=[1], granularity=0.5)
    with pytest.raises(FileNotFoundError, match="no image frames"):
        video_model.init_state(str(tmp_path))
    Image.fromarray(photo).save(tmp_path / "0.png")
    Image.fromarray(photo[:100]).save(tmp_path / "1.png")
    with pytest.raises(ValueError, match="first frame"):
        video_model.init_state(str(tmp_path))


# ------------------------------------------------------------------ fidelity with the official predictor


def test_a_mask_prompt_gets_its_object_pointer_without_the_granularity_token(
    video_model: UnSAMv2VideoPredictor, frames_dir: Path, photo: np.ndarray
) -> None:
    """Official ``add_new_mask`` runs the frame without ``gra``: the pointer pass has no granularity token."""
    state = video_model.init_state(str(frames_dir))
    mask = np.zeros(photo.shape[:2], bool)
    mask[40:90, 30:80] = True
    spy = PromptSpy(video_model)
    try:
        video_model.add_new_mask(state, 0, 1, mask, granularity=0.6)
        list(video_model.propagate_in_video(state))
    finally:
        spy.close()
    # mask frame: sam2's dummy "no click" point + pad, no granularity; then 3 propagated frames at the object's g
    assert spy.calls == [(2, None)] + [(3, 0.6)] * 3


def test_propagation_granularity_follows_the_official_per_call_semantics(
    video_model: UnSAMv2VideoPredictor, frames_dir: Path
) -> None:
    """``propagate_in_video(state, granularity=g)`` decodes every propagated frame at g, whatever the click's g;
    the clicked frame keeps its mask. Without it, each object uses its own prompt's g."""
    outputs = {}
    calls = {}
    for name, click_g, propagate_g in (("own", 0.8, None), ("same", 0.8, 0.8), ("other", 0.2, 0.8)):
        state = video_model.init_state(str(frames_dir))
        video_model.add_new_points_or_box(state, 0, 1, points=[[60, 50]], labels=[1], granularity=click_g)
        spy = PromptSpy(video_model)
        try:
            outputs[name] = {f: out[0, 0].clone()
                             for f, _, out in video_model.propagate_in_video(state, granularity=propagate_g)}
        finally:
            spy.close()
        calls[name] = spy.calls
        assert state["propagation_granularity"] is None  # reset after the call
    assert calls["own"] == calls["same"] == calls["other"] == [(3, 0.8)] * 3
    for f in range(4):
        assert torch.equal(outputs["own"][f], outputs["same"][f])
    # the clicked frame differs (its click was at 0.2), and the memory built from it changes the tracked frames
    assert not torch.equal(outputs["other"][0], outputs["same"][0])
    with pytest.raises(ValueError, match=r"\[0\.1, 1\.0\]"):
        list(video_model.propagate_in_video(state, granularity=1.5))


@pytest.fixture(scope="module")
def sam2_video_model(checkpoint_factory: Callable[..., Path]) -> Sam2BaselineVideoPredictor:
    model = build_sam2_video_model("tiny", checkpoint_factory("sam2"), image_size=TEST_IMAGE_SIZE, device="cpu")
    assert isinstance(model, Sam2BaselineVideoPredictor)
    return model


def test_sam2_baseline_first_click_single_mask_or_chosen_candidate(
    sam2_video_model: Sam2BaselineVideoPredictor, frames_dir: Path
) -> None:
    flags: list[bool] = []
    handle = sam2_video_model.sam_mask_decoder.register_forward_hook(
        lambda m, args, kwargs, out: flags.append(bool(kwargs["multimask_output"])), with_kwargs=True)
    try:
        state = sam2_video_model.init_state(str(frames_dir))
        sam2_video_model.add_new_points_or_box(state, 0, 1, points=[[60, 50]], labels=[1])
        sam2_video_model.single_mask_clicks = True
        sam2_video_model.reset_state(state)
        sam2_video_model.add_new_points_or_box(state, 0, 1, points=[[60, 50]], labels=[1])
        list(sam2_video_model.propagate_in_video(state))
    finally:
        handle.remove()
        sam2_video_model.single_mask_clicks = False
    # stock: 3 candidates on the clicked frame; single: one on the clicked frame, sam2's own choice when tracking
    assert flags[0] is True and flags[1] is False and flags[2:] == [True] * 3

    for index in (0, 1, 2):
        seen: list[np.ndarray] = []

        def choose(candidates: np.ndarray, k: int = index, seen: list[np.ndarray] = seen) -> int:
            seen.append(candidates)
            return k

        sam2_video_model.reset_state(state)
        _, _, logits = sam2_video_model.add_new_points_choosing(state, 0, 1, np.array([[60.0, 50.0]]),
                                                                np.array([1]), choose)
        assert len(seen) == 1 and seen[0].shape == (3, *logits.shape[-2:])
        # the object's output is the chosen candidate (or sam2's "no object" score when it predicts none)
        expected = seen[0][index] if logits.max() > -1000 else logits[0, 0].numpy()
        np.testing.assert_allclose(logits[0, 0].numpy(), expected, atol=1e-4)
