"""The image tab's work without a browser: one encoding per image, one batched decoder call per click for all
ten granularities, slider moves served from the cache, and masks equal to the predictor's for that g."""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from unsamv2.app.render import MaskPainter, draw_clicks
from unsamv2.app.session import DecodeSettings, ImageSession, snap_granularity
from unsamv2.core.constants import EVAL_MASK_THRESHOLD, GRANULARITY_GRID
from unsamv2.io.masks import decode_rle
from unsamv2.model.build import build_unsamv2
from unsamv2.model.figures import granularity_strip, overlay_mask
from unsamv2.model.predictor import UnSAMv2ImagePredictor

CLICK = (60.0, 50.0)
SECOND = (100.0, 140.0)


class DecoderSpy:
    """Counts the predictor's decoder passes and the granularities each pass carried."""

    def __init__(self, predictor: UnSAMv2ImagePredictor) -> None:
        self.calls: list[list[float]] = []
        self.encodings = 0
        original_predict, original_set = predictor._predict, predictor.set_image

        def predict(*args: Any, **kwargs: Any) -> Any:
            g = torch.as_tensor(kwargs["granularity"]).reshape(-1)
            self.calls.append([round(float(v), 6) for v in g])
            return original_predict(*args, **kwargs)

        def set_image(image: Any) -> None:
            self.encodings += 1
            original_set(image)

        predictor._predict = predict  # type: ignore[method-assign]
        predictor.set_image = set_image  # type: ignore[method-assign]


@pytest.fixture(scope="module")
def reference(checkpoint_factory: Any, photo: np.ndarray) -> UnSAMv2ImagePredictor:
    """The predictor on the same checkpoint, built without the video classes, at the app's threshold."""
    model = build_unsamv2(checkpoint=checkpoint_factory("unsamv2"), device="cpu", image_size=256)
    p = UnSAMv2ImagePredictor(model, mask_threshold=EVAL_MASK_THRESHOLD)
    p.set_image(photo)
    return p


def _session(app_model: Any, photo: np.ndarray, m2m: bool = True, threshold: float = EVAL_MASK_THRESHOLD,
             ) -> ImageSession:
    s = ImageSession(app_model, DecodeSettings(mask_threshold=threshold, m2m=m2m, checkpoint="ckpt.pt"))
    s.set_image(photo, "astronaut.png")
    return s


def test_first_click_is_one_batched_call_and_slider_moves_hit_the_cache(app_model: Any,
                                                                        photo: np.ndarray) -> None:
    s = ImageSession(app_model, DecodeSettings(m2m=False))
    spy = DecoderSpy(s.predictor)
    s.set_image(photo)
    s.add_click(*CLICK)
    assert spy.encodings == 1
    assert spy.calls == [list(GRANULARITY_GRID)]  # one decoder pass carrying all ten g
    for g in (*GRANULARITY_GRID, 0.30000000000000004, 0.7000000000000001, *reversed(GRANULARITY_GRID)):
        s.view(g)
    assert len(spy.calls) == 1 and spy.encodings == 1
    assert s.cache_hits == 22 and s.decoder_calls == 1
    s.add_click(*SECOND, positive=False)  # a new click: one more batched pass, no new encoding
    assert spy.calls[1:] == [list(GRANULARITY_GRID)] and spy.encodings == 1


def test_m2m_click_is_two_batched_passes(app_model: Any, photo: np.ndarray) -> None:
    s = ImageSession(app_model, DecodeSettings(m2m=True))
    spy = DecoderSpy(s.predictor)
    s.set_image(photo)
    s.add_click(*CLICK)
    assert spy.calls == [list(GRANULARITY_GRID)] * 2  # the official M2M second pass, batched too


@pytest.mark.parametrize("m2m", [True, False])
def test_slider_mask_equals_the_predictor_mask_for_that_g(app_model: Any, photo: np.ndarray,
                                                          reference: UnSAMv2ImagePredictor, m2m: bool) -> None:
    s = _session(app_model, photo, m2m=m2m)
    s.add_click(*CLICK)
    s.add_click(*SECOND, positive=False)
    coords, labels = np.array([CLICK, SECOND]), np.array([1, 0])
    batched, _, _ = reference.predict_granularities(coords, labels, GRANULARITY_GRID, m2m=m2m)
    for i, g in enumerate(GRANULARITY_GRID):
        mask, iou = s.mask_at(g)
        np.testing.assert_array_equal(mask, batched[i])
        # The same g asked alone: equal up to pixels whose logit sits on the threshold (float summation order).
        logits, single_iou, _ = reference.predict(coords, labels, g, m2m=m2m, return_logits=True)
        differ = mask != (logits[0] > EVAL_MASK_THRESHOLD)
        assert np.all(np.abs(logits[0][differ] - EVAL_MASK_THRESHOLD) < 1e-4)
        assert iou == pytest.approx(float(single_iou[0]), abs=1e-4)


def test_off_grid_granularity_is_decoded_once_then_cached(app_model: Any, photo: np.ndarray,
                                                          reference: UnSAMv2ImagePredictor) -> None:
    s = _session(app_model, photo, m2m=False)
    s.add_click(*CLICK)
    spy = DecoderSpy(s.predictor)
    first, _ = s.mask_at(0.35)
    again, _ = s.mask_at(0.35)
    assert spy.calls == [[0.35]] and again is first
    expected, _, _ = reference.predict(np.array([CLICK]), np.array([1]), 0.35, m2m=False)
    np.testing.assert_array_equal(first, expected[0])


@pytest.mark.parametrize(("value", "snapped"), [(0.30000000000000004, 0.3), (0.7000000000000001, 0.7),
                                                 (1, 1.0), (0.1000001, 0.1), (0.35, 0.35), (0.10001, 0.10001)])
def test_snap_granularity(value: float, snapped: float) -> None:
    assert snap_granularity(value) == snapped


@pytest.mark.parametrize("value", [0.0, 1.5, float("nan")])
def test_snap_rejects_granularities_outside_the_range(value: float) -> None:
    with pytest.raises(ValueError, match=r"\[0\.1, 1\.0\]|NaN"):
        snap_granularity(value)


def test_undo_restores_the_masks_of_the_remaining_clicks(app_model: Any, photo: np.ndarray) -> None:
    s = _session(app_model, photo, m2m=False)
    s.add_click(*CLICK)
    before = {g: s.mask_at(g)[0].copy() for g in GRANULARITY_GRID}
    s.add_click(*SECOND, positive=False)
    s.undo_click()
    assert s.clicks.points == [CLICK] and s.clicks.labels == [1]
    for g in GRANULARITY_GRID:
        np.testing.assert_array_equal(s.mask_at(g)[0], before[g])
    s.undo_click()
    assert not s.has_mask
    with pytest.raises(ValueError, match="click on the image first"):
        s.mask_at(0.5)


def test_errors_are_one_line_value_errors(app_model: Any, photo: np.ndarray) -> None:
    s = ImageSession(app_model, DecodeSettings())
    with pytest.raises(ValueError, match="upload or pick an image first"):
        s.add_click(*CLICK)
    s.set_image(photo)
    with pytest.raises(ValueError, match=r"click \(160, 10\) lies outside the 160×192 image"):
        s.add_click(160, 10)
    assert not s.has_mask


def test_view_is_the_overlay_of_the_mask_with_the_clicks_marked(app_model: Any, photo: np.ndarray) -> None:
    s = _session(app_model, photo)
    s.add_click(*CLICK)
    s.add_click(*SECOND, positive=False)
    for g in (0.2, 0.9):
        expected = draw_clicks(overlay_mask(photo, s.mask_at(g)[0]), [CLICK, SECOND], [1, 0])
        np.testing.assert_array_equal(s.view(g), expected)
    assert s.view(0.2)[50, 60].tolist() == [40, 220, 40]  # positive click: green dot
    assert s.view(0.2)[140, 100].tolist() == [230, 40, 230]  # negative click: magenta dot


def test_mask_painter_equals_overlay_mask(photo: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    painter = MaskPainter(photo)
    masks = [rng.random(photo.shape[:2]) < p for p in (0.0, 0.1, 0.5, 1.0)]
    masks.append(np.zeros(photo.shape[:2], bool))
    masks[-1][40:90, 30:70] = True
    for m in masks:
        np.testing.assert_array_equal(painter.paint(m), overlay_mask(photo, m))
    with pytest.raises(ValueError, match="does not match"):
        painter.paint(np.zeros((5, 5), bool))


def test_strip_comes_from_the_cache_and_equals_the_figure(app_model: Any, photo: np.ndarray) -> None:
    s = _session(app_model, photo)
    assert s.strip() is None
    s.add_click(*CLICK)
    spy = DecoderSpy(s.predictor)
    strip = s.strip(tile_height=160)
    assert spy.calls == []  # drawn from the cached masks
    reference = UnSAMv2ImagePredictor(app_model, mask_threshold=EVAL_MASK_THRESHOLD)
    np.testing.assert_array_equal(strip, granularity_strip(reference, photo, CLICK, m2m=True, tile_height=160))


def test_downloads_round_trip(app_model: Any, photo: np.ndarray, tmp_path: Any) -> None:
    s = _session(app_model, photo)
    s.add_click(*CLICK)
    png, js = s.save_downloads(0.30000000000000004, tmp_path)
    assert png.name == "astronaut_g0.3.png" and js.name == "astronaut_masks.json"
    np.testing.assert_array_equal(np.asarray(Image.open(png)) > 0, s.mask_at(0.3)[0])
    doc = json.loads(js.read_text())
    assert doc["selected_granularity"] == 0.3 and doc["points"] == [list(CLICK)] and doc["labels"] == [1]
    assert (doc["height"], doc["width"], doc["m2m"], doc["checkpoint"]) == (192, 160, True, "ckpt.pt")
    assert [e["granularity"] for e in doc["masks"]] == list(GRANULARITY_GRID)
    for entry in doc["masks"]:
        mask = s.mask_at(entry["granularity"])[0]
        np.testing.assert_array_equal(decode_rle(entry["segmentation"]), mask)
        assert entry["area"] == int(mask.sum())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([js.name, png.name])  # atomic writes leave no temp files
