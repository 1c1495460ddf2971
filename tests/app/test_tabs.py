"""The whole-image and video tabs' work, and the tabs' handlers as the page calls them (no browser)."""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from unsamv2.app import session
from unsamv2.app.limits import UploadLimits
from unsamv2.app.session import DecodeSettings, VideoSession, segment_whole_image
from unsamv2.app.ui import AppContext, image_handlers, model_notice, video_handlers, whole_handlers
from unsamv2.core.constants import GRANULARITY_GRID
from unsamv2.io.masks import decode_rle
from unsamv2.model.automatic import UnSAMv2AutomaticMaskGenerator
from unsamv2.model.figures import overlay_masks
from unsamv2.model.video import track_object

CLICK = (60.0, 50.0)


@pytest.fixture
def ctx(app_model: Any, tmp_path: Path) -> AppContext:
    return AppContext(model=app_model, settings=DecodeSettings(checkpoint="ckpt.pt"), limits=UploadLimits(),
                      workdir=tmp_path / "work")


@pytest.fixture(scope="module")
def frame_files(tmp_path_factory: pytest.TempPathFactory, photo: np.ndarray) -> list[Path]:
    root = tmp_path_factory.mktemp("upload")
    return [Path(Image.fromarray(np.roll(photo, 6 * k, axis=1)).save(root / f"{k}.png") or root / f"{k}.png")
            for k in (1, 2, 10)]


@pytest.mark.parametrize(("granularity", "thresholds"), [(0.5, (None, None)), (None, (None, None)),
                                                         (0.3, (0.0, 0.0))])
def test_whole_image_equals_the_generator(app_model: Any, photo: np.ndarray, granularity: float | None,
                                          thresholds: tuple[float | None, float | None],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # A 4×4 grid keeps the test fast; the app offers 64, 32, 16 and 8 points per side.
    monkeypatch.setattr(session, "WHOLE_IMAGE_GRIDS", (4,))
    result = segment_whole_image(app_model, photo, granularity, 4, DecodeSettings(), *thresholds)
    generator = UnSAMv2AutomaticMaskGenerator(app_model, points_per_side=4, pred_iou_thresh=thresholds[0],
                                              stability_score_thresh=thresholds[1])
    official = {g: (0.65, 0.7) if g < 0.5 else (0.5, 0.7) for g in result.granularities}
    assert result.thresholds == (official if thresholds[0] is None else
                                 {g: thresholds for g in result.granularities})
    if granularity is None:
        reference = generator.generate_pooled(photo, GRANULARITY_GRID)
        assert result.granularities == list(GRANULARITY_GRID)
    else:
        reference = generator.generate(photo, granularity)
        assert result.granularities == [granularity]
    if thresholds[0] is not None:
        assert len(reference) > 0  # random weights pass no official threshold; with none, masks remain
    assert [r["segmentation"] for r in result.records] == [r["segmentation"] for r in reference]
    assert [r["granularity"] for r in result.records] == [r["granularity"] for r in reference]
    np.testing.assert_array_equal(result.overlay,
                                  overlay_masks(photo, [decode_rle(r["segmentation"]) for r in reference]))


def test_whole_image_rejects_other_grids(app_model: Any, photo: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"points per side must be one of \(64, 32, 16, 8\), got 12"):
        segment_whole_image(app_model, photo, 0.5, 12, DecodeSettings())


def test_whole_image_handler_writes_the_segment_all_json(ctx: AppContext, photo_file: Path) -> None:
    h = whole_handlers(ctx)
    state, shown, status, _ = h["load_file"](str(photo_file))
    assert shown.shape == (192, 160, 3) and status == "press Segment"
    overlay, status, path = h["run"](0.5, False, "8×8", 0.0, 0.0, state)
    doc = json.loads(Path(path).read_text())
    n = len(doc["annotations"])
    assert n > 0 and status.startswith(f"{n} mask{'' if n == 1 else 's'} at g = 0.5 (8×8 points, ")
    assert doc["granularities"] == [0.5] and doc["settings"]["thresholds"] == {"0.5": [0.0, 0.0]}
    assert doc["settings"]["points_per_side"] == 8 and doc["image"] == "astronaut.png"
    assert Path(path).is_relative_to(ctx.workdir)
    np.testing.assert_array_equal(overlay, overlay_masks(state.image, [decode_rle(a["segmentation"])
                                                                       for a in doc["annotations"]]))


def test_video_session_tracks_the_clicked_object(app_model: Any, frame_files: list[Path], tmp_path: Path) -> None:
    video = VideoSession(app_model, DecodeSettings(checkpoint="ckpt.pt"), tmp_path / "session")
    video.load_upload(frame_files, UploadLimits())
    assert [p.name for p in video.frames] == ["1.png", "2.png", "10.png"]
    with pytest.raises(ValueError, match="click on the first frame first"):
        video.propagate(0.5)
    video.add_click(*CLICK)
    archive = video.propagate(0.4)
    paths, expected = track_object(app_model, video.frames_dir, 0, [CLICK], [1], 0.4)
    assert [p.name for p in paths] == ["1.png", "2.png", "10.png"]
    assert len(video.masks) == 3
    for i, mask in enumerate(video.masks):
        np.testing.assert_array_equal(mask, expected[i])
    with zipfile.ZipFile(archive) as zf:
        names = sorted(zf.namelist())
        assert names == ["masks/1.png", "masks/10.png", "masks/2.png", "masks/track.json"]
        track = json.loads(zf.read("masks/track.json"))
    assert track["granularity"] == 0.4 and track["points"] == [list(CLICK)]
    assert [f["area"] for f in track["frames"]] == [int(m.sum()) for m in video.masks]
    with Image.open(video.playback()) as gif:
        assert gif.n_frames == 3
    # Everything stays inside the session's folder.
    assert all(p.is_relative_to(tmp_path / "session") for p in tmp_path.rglob("*") if p.is_file())


def test_image_handlers_flow(ctx: AppContext, photo_file: Path) -> None:
    h = image_handlers(ctx)
    state, view, strip, status = h["load_file"](str(photo_file), 0.5, None)
    assert view.shape == (192, 160, 3) and strip is None and status.startswith("clicks: no clicks yet · g = 0.5")
    state, view, strip, status = h["click"]((60, 50), "Positive", 0.5, state)
    assert status.startswith("clicks: + (60, 50) · g = 0.5 · area ")
    assert strip.shape[0] == 160 + 28
    calls = state.session.decoder_calls
    view, status = h["slide"](0.30000000000000004, state)
    np.testing.assert_array_equal(view, state.session.view(0.3))
    assert " · g = 0.3 · " in status and state.session.decoder_calls == calls
    state, _, _, status = h["click"]((100, 140), "Negative", 0.3, state)
    assert status.startswith("clicks: + (60, 50); − (100, 140) · g = 0.3")
    files = h["save"](0.3, state)
    assert [Path(f).name for f in files] == ["astronaut_g0.3.png", "astronaut_masks.json"]
    assert all(Path(f).is_relative_to(ctx.workdir) for f in files)
    state, _, strip, status = h["clear"](0.3, state)
    assert strip is None and status.startswith("clicks: no clicks yet")


def test_image_handlers_refuse_bad_input_in_one_line(ctx: AppContext, tmp_path: Path) -> None:
    h = image_handlers(ctx)
    bad = tmp_path / "holiday.jpg"
    bad.write_bytes(b"GIF89a but not really")
    with pytest.raises(ValueError, match=r"^holiday\.jpg: not a readable image"):
        h["load_file"](str(bad), 0.5, None)
    with pytest.raises(ValueError, match="upload or pick an image first"):
        h["click"]((1, 1), "Positive", 0.5, None)
    assert h["slide"](0.5, None) == (None, "upload or pick an image first")
    with pytest.raises(ValueError, match="choose a sample image"):
        h["load_sample"](None, 0.5, None)
    with pytest.raises(ValueError, match="unknown sample 'moon'"):
        h["load_sample"]("moon", 0.5, None)


def test_video_handlers_flow(ctx: AppContext, frame_files: list[Path]) -> None:
    pytest.importorskip("gradio")
    h = video_handlers(ctx)
    state, first, status, _, _ = h["load"]([str(f) for f in frame_files], 0.5, None)
    assert first.shape == (192, 160, 3) and status.startswith("3 frames · clicks on frame 0: no clicks yet")
    first, status = h["click"]((60, 50), "Positive", 0.5, state)
    gif, archive, status, frame_slider, frame0 = h["propagate"](0.5, state)
    assert status.endswith("tracked 3 frames") and frame_slider.maximum == 2
    np.testing.assert_array_equal(h["frame"](2, state), state.overlays[2])
    np.testing.assert_array_equal(frame0, state.overlays[0])
    assert Path(gif).is_relative_to(ctx.workdir) and Path(archive).is_relative_to(ctx.workdir)


def test_value_errors_become_one_line_messages_in_the_page() -> None:
    gr = pytest.importorskip("gradio")
    from unsamv2.app.ui import _user_errors

    @_user_errors
    def fails() -> None:
        raise ValueError("x.png: the file is empty")

    with pytest.raises(gr.Error) as info:
        fails()
    assert info.value.message == "x.png: the file is empty" and not info.value.print_exception


def test_model_notice_says_when_the_granularity_module_is_untrained(checkpoint_factory: Any,
                                                                   app_model: Any) -> None:
    from unsamv2.model.build import build_unsamv2

    stock = build_unsamv2(checkpoint=checkpoint_factory("sam2"), device="cpu", image_size=256)
    assert model_notice(stock) == ("Stock SAM-2.1 tiny checkpoint: the granularity module is untrained, so the "
                                   "masks do not follow the granularity slider.")
    assert model_notice(app_model) == "UnSAMv2 checkpoint (SAM-2.1 tiny)."
    assert "\n" not in model_notice(stock)


def test_samples_are_rgb_photos() -> None:
    from unsamv2.app.ui import SAMPLE_IMAGES, sample_image

    for name in SAMPLE_IMAGES:
        image = sample_image(name)
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8 and image.std() > 20


def test_granularity_grid_is_the_slider_grid() -> None:
    assert GRANULARITY_GRID == (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def test_the_server_environment_is_offline_and_inside_its_folder(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("gradio")
    from gradio.analytics import analytics_enabled

    from unsamv2.app.ui import prepare_environment

    for name in ("GRADIO_ANALYTICS_ENABLED", "GRADIO_TEMP_DIR", "MPLCONFIGDIR", "HF_HUB_DISABLE_TELEMETRY"):
        monkeypatch.delenv(name, raising=False)
    assert analytics_enabled()  # Gradio's default
    prepare_environment(tmp_path)
    assert not analytics_enabled()
    assert os.environ["GRADIO_TEMP_DIR"] == str(tmp_path / "gradio")
    assert os.environ["MPLCONFIGDIR"] == str(tmp_path / "matplotlib")
