"""The Gradio front end of ``unsamv2 app``: three tabs wired to the framework-free work in :mod:`session`.

The handlers here only translate between Gradio values and :mod:`unsamv2.app.session`; a ``ValueError`` (bad
upload, click outside, missing step) becomes a one-line ``gr.Error`` in the browser, never a traceback.

Gradio is imported inside the functions: importing :mod:`unsamv2.app` must not need the ``app`` extra.
"""
from __future__ import annotations

import functools
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unsamv2.app.limits import UploadLimits
from unsamv2.app.session import (
    WHOLE_IMAGE_GRIDS,
    DecodeSettings,
    ImageSession,
    VideoSession,
    save_whole_image,
    segment_whole_image,
    snap_granularity,
)
from unsamv2.app.uploads import load_upload_image
from unsamv2.core.constants import GRANULARITY_MAX, GRANULARITY_MIN

__all__ = ["SAMPLE_IMAGES", "AppContext", "build_app", "model_notice", "prepare_environment", "sample_image"]

#: Sample photographs shipped inside scikit-image (no download).
SAMPLE_IMAGES: tuple[str, ...] = ("astronaut", "coffee", "chelsea", "rocket")
DEFAULT_GRANULARITY = 0.5
ELEM = {  # element ids the browser test (and anyone scripting the page) finds things by
    "image_upload": "image-upload", "image_view": "image-view", "image_slider": "image-granularity",
    "image_status": "image-status", "image_strip": "image-strip", "image_save": "image-save",
    "image_files": "image-files", "image_mode": "image-click-mode", "whole_upload": "whole-upload",
    "whole_run": "whole-run", "whole_view": "whole-view", "whole_status": "whole-status",
    "whole_slider": "whole-granularity", "whole_grid": "whole-grid", "whole_pooled": "whole-pooled",
    "whole_iou": "whole-iou-threshold", "whole_stability": "whole-stability-threshold", "whole_files": "whole-files",
    "video_upload": "video-upload", "video_first": "video-first", "video_slider": "video-granularity",
    "video_run": "video-run", "video_play": "video-play", "video_status": "video-status",
    "video_files": "video-files", "video_frame": "video-frame", "video_frame_slider": "video-frame-index",
    "notice": "model-notice",
}


def prepare_environment(workdir: Path) -> None:
    """Gradio settings that must be in place before ``import gradio``: no analytics or update checks (the app
    works offline and phones nowhere), uploads and caches inside the app's temporary folder."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["GRADIO_TEMP_DIR"] = str(workdir / "gradio")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    # Matplotlib (imported by Gradio) would otherwise write its font cache under ~/.cache and ~/.config.
    os.environ["MPLCONFIGDIR"] = str(workdir / "matplotlib")


def sample_image(name: str) -> np.ndarray:
    from skimage import data

    if name not in SAMPLE_IMAGES:
        raise ValueError(f"unknown sample {name!r}; choose one of {', '.join(SAMPLE_IMAGES)}")
    image = getattr(data, name)()
    return np.ascontiguousarray(image[..., :3])


def model_notice(model: Any) -> str:
    """One line on what the loaded weights can do (a stock SAM-2.1 checkpoint has no trained granularity)."""
    report = getattr(model, "unsamv2_load_report", None)
    size = getattr(model, "unsamv2_size", "?")
    if report is None:
        return f"SAM-2.1 {size} with RANDOM weights (no checkpoint): masks are meaningless."
    if report.format == "sam2":
        return (f"Stock SAM-2.1 {size} checkpoint: the granularity module is untrained, so the masks do not "
                f"follow the granularity slider.")
    return f"UnSAMv2 checkpoint (SAM-2.1 {size})."


@dataclass
class AppContext:
    """What every handler needs: the one model (built with ``video=True``), settings, limits, the temp folder."""

    model: Any
    settings: DecodeSettings
    limits: UploadLimits
    workdir: Path

    def session_dir(self) -> Path:
        path = self.workdir / "sessions" / uuid.uuid4().hex
        path.mkdir(parents=True)
        return path


def _user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Show a ValueError (our user errors: bad upload, click outside, missing step) as one line in the page."""
    import gradio as gr

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ValueError as exc:
            raise gr.Error(str(exc), print_exception=False) from None

    return wrapper


# ---------------------------------------------------------------------- image tab
@dataclass
class _ImageState:
    session: ImageSession
    folder: Path


def _image_status(state: _ImageState, g: float, elapsed_ms: float | None = None) -> str:
    s = state.session
    parts = [f"clicks: {s.clicks.describe()}", f"g = {snap_granularity(g):g}"]
    if s.has_mask:
        mask, iou = s.mask_at(g)
        parts += [f"area {int(mask.sum())} px", f"predicted IoU {iou:.2f}"]
    if elapsed_ms is not None:
        parts.append(f"{elapsed_ms:.0f} ms")
    return " · ".join(parts)


def image_handlers(ctx: AppContext) -> dict[str, Callable[..., Any]]:
    """The image tab's handlers as plain functions of Gradio values (tests call them without a browser)."""

    def new_state(state: _ImageState | None) -> _ImageState:
        return state if state is not None else _ImageState(ImageSession(ctx.model, ctx.settings),
                                                           ctx.session_dir())

    def outputs(state: _ImageState, g: float, t0: float) -> tuple[Any, ...]:
        view = state.session.view(g)
        return state, view, state.session.strip(), _image_status(state, g, (time.perf_counter() - t0) * 1e3)

    def load_file(path: str | None, g: float, state: _ImageState | None) -> tuple[Any, ...]:
        t0 = time.perf_counter()
        if not path:
            raise ValueError("no file uploaded")
        state = new_state(state)
        state.session.load_upload(path, ctx.limits)
        return outputs(state, g, t0)

    def load_sample(name: str | None, g: float, state: _ImageState | None) -> tuple[Any, ...]:
        t0 = time.perf_counter()
        if not name:
            raise ValueError("choose a sample image")
        state = new_state(state)
        state.session.set_image(sample_image(name), name)
        return outputs(state, g, t0)

    def click(index: tuple[float, float], mode: str, g: float, state: _ImageState | None) -> tuple[Any, ...]:
        t0 = time.perf_counter()
        if state is None or state.session.image is None:
            raise ValueError("upload or pick an image first")
        x, y = float(index[0]), float(index[1])
        state.session.add_click(x, y, positive=(mode != "Negative"))
        return outputs(state, g, t0)

    def slide(g: float, state: _ImageState | None) -> tuple[Any, ...]:
        t0 = time.perf_counter()
        if state is None or state.session.image is None:
            return None, "upload or pick an image first"
        view = state.session.view(g)
        return view, _image_status(state, g, (time.perf_counter() - t0) * 1e3)

    def undo(g: float, state: _ImageState | None) -> tuple[Any, ...]:
        t0 = time.perf_counter()
        if state is None or state.session.image is None:
            raise ValueError("upload or pick an image first")
        state.session.undo_click()
        return outputs(state, g, t0)

    def clear(g: float, state: _ImageState | None) -> tuple[Any, ...]:
        t0 = time.perf_counter()
        if state is None or state.session.image is None:
            raise ValueError("upload or pick an image first")
        state.session.clear_clicks()
        return outputs(state, g, t0)

    def save(g: float, state: _ImageState | None) -> list[str]:
        if state is None or not state.session.has_mask:
            raise ValueError("click on the image first")
        png, js = state.session.save_downloads(g, state.folder / "downloads")
        return [str(png), str(js)]

    return {"load_file": load_file, "load_sample": load_sample, "click": click, "slide": slide, "undo": undo,
            "clear": clear, "save": save}


# ---------------------------------------------------------------------- whole-image tab
@dataclass
class _WholeState:
    image: np.ndarray
    name: str
    folder: Path


def whole_handlers(ctx: AppContext) -> dict[str, Callable[..., Any]]:
    def load_file(path: str | None) -> tuple[Any, ...]:
        if not path:
            raise ValueError("no file uploaded")
        image = load_upload_image(path, ctx.limits)
        return _WholeState(image, Path(path).name, ctx.session_dir()), image, "press Segment", None

    def load_sample(name: str | None) -> tuple[Any, ...]:
        if not name:
            raise ValueError("choose a sample image")
        image = sample_image(name)
        return _WholeState(image, f"{name}.png", ctx.session_dir()), image, "press Segment", None

    def run(g: float, pooled: bool, grid: str, iou_thresh: float | None, stability_thresh: float | None,
            state: _WholeState | None) -> tuple[Any, ...]:
        if state is None:
            raise ValueError("upload or pick an image first")
        side = int(grid.split("×")[0])
        t0 = time.perf_counter()
        result = segment_whole_image(ctx.model, state.image, None if pooled else g, side, ctx.settings,
                                     pred_iou_thresh=iou_thresh, stability_thresh=stability_thresh)
        seconds = time.perf_counter() - t0
        path = save_whole_image(result, state.image, state.name, side, ctx.settings, state.folder)
        where = "g = 0.1 … 1.0 pooled" if pooled else f"g = {snap_granularity(g):g}"
        n = len(result.records)
        status = f"{n} mask{'' if n == 1 else 's'} at {where} ({side}×{side} points, {seconds:.1f} s)"
        return result.overlay, status, str(path)

    return {"load_file": load_file, "load_sample": load_sample, "run": run}


# ---------------------------------------------------------------------- video tab
def _video_status(video: VideoSession, g: float) -> str:
    s = video.first
    text = f"{len(video.frames)} frames · clicks on frame 0: {s.clicks.describe()} · g = {snap_granularity(g):g}"
    if video.masks:
        text += f" · tracked {len(video.masks)} frames"
    return text


def video_handlers(ctx: AppContext) -> dict[str, Callable[..., Any]]:
    def load(files: list[str] | str | None, g: float, state: VideoSession | None) -> tuple[Any, ...]:
        if not files:
            raise ValueError("no file uploaded: give one video, or the image files of a folder of frames")
        paths = [files] if isinstance(files, str) else list(files)
        video = state if state is not None else VideoSession(ctx.model, ctx.settings, ctx.session_dir())
        video.load_upload(paths, ctx.limits)
        return video, video.first.view(g), _video_status(video, g), None, None

    def click(index: tuple[float, float], mode: str, g: float, state: VideoSession | None) -> tuple[Any, ...]:
        if state is None or not state.frames:
            raise ValueError("upload a video or frames first")
        state.add_click(float(index[0]), float(index[1]), positive=(mode != "Negative"))
        return state.first.view(g), _video_status(state, g)

    def slide(g: float, state: VideoSession | None) -> tuple[Any, ...]:
        if state is None or not state.frames:
            return None, "upload a video or frames first"
        return state.first.view(g), _video_status(state, g)

    def clear(g: float, state: VideoSession | None) -> tuple[Any, ...]:
        if state is None or not state.frames:
            raise ValueError("upload a video or frames first")
        state.first.clear_clicks()
        state.masks, state.overlays = [], []
        return state.first.view(g), _video_status(state, g)

    def propagate(g: float, state: VideoSession | None) -> tuple[Any, ...]:
        import gradio as gr

        if state is None:
            raise ValueError("upload a video or frames first")
        archive = state.propagate(g)
        gif = state.playback()
        n = len(state.overlays)
        frame_slider = gr.Slider(minimum=0, maximum=n - 1, step=1, value=0, interactive=n > 1)
        return str(gif), str(archive), _video_status(state, g), frame_slider, state.overlays[0]

    def frame(index: float, state: VideoSession | None) -> Any:
        if state is None or not state.overlays:
            return None
        return state.overlays[int(np.clip(round(index), 0, len(state.overlays) - 1))]

    return {"load": load, "click": click, "slide": slide, "clear": clear, "propagate": propagate, "frame": frame}


# ---------------------------------------------------------------------- layout
def build_app(ctx: AppContext) -> Any:
    """The ``gr.Blocks`` of the app (not launched)."""
    import gradio as gr

    img_h = image_handlers(ctx)
    whole_h = whole_handlers(ctx)
    video_h = video_handlers(ctx)
    errors = _user_errors

    def slider(elem: str) -> Any:
        return gr.Slider(GRANULARITY_MIN, GRANULARITY_MAX, value=DEFAULT_GRANULARITY, step=0.1,
                         label="granularity g (0.1 = finest part … 1.0 = whole object)", elem_id=ELEM[elem])

    def click_index(fn: Callable[..., Any]) -> Callable[..., Any]:
        # Gradio passes the click as SelectData; the pure handlers take the (x, y) pixel index.
        def handler(mode: str, g: float, state: Any, evt: gr.SelectData) -> Any:
            return fn(evt.index, mode, g, state)

        # Gradio finds the SelectData argument by its type; postponed annotations are strings it cannot resolve.
        handler.__annotations__["evt"] = gr.SelectData
        return errors(handler)

    with gr.Blocks(title="UnSAMv2 — segment anything at any granularity") as demo:
        gr.Markdown("## UnSAMv2 — segment anything at any granularity")
        gr.Markdown(model_notice(ctx.model), elem_id=ELEM["notice"])
        with gr.Tab("Image"):
            img_state = gr.State(None)
            with gr.Row():
                with gr.Column(scale=1):
                    upload = gr.File(label="image (upload)", file_types=["image"], elem_id=ELEM["image_upload"])
                    sample = gr.Dropdown(list(SAMPLE_IMAGES), value=None, label="… or a sample image")
                    mode = gr.Radio(["Positive", "Negative"], value="Positive", label="next click",
                                    elem_id=ELEM["image_mode"])
                    g_img = slider("image_slider")
                    with gr.Row():
                        undo_btn = gr.Button("Undo click")
                        clear_btn = gr.Button("Clear clicks")
                    save_btn = gr.Button("Save mask (PNG) + COCO RLE (JSON)", elem_id=ELEM["image_save"])
                    files = gr.File(label="downloads", file_count="multiple", interactive=False,
                                    elem_id=ELEM["image_files"])
                with gr.Column(scale=2):
                    view = gr.Image(label="click on the image", interactive=False, format="jpeg",
                                    elem_id=ELEM["image_view"])
                    status = gr.Markdown("upload or pick an image", elem_id=ELEM["image_status"])
                    strip = gr.Image(label="granularity strip of the last click (g = 0.1 … 1.0)",
                                     interactive=False, format="jpeg", elem_id=ELEM["image_strip"])
            full = [img_state, view, strip, status]
            upload.upload(errors(img_h["load_file"]), [upload, g_img, img_state], full)
            sample.input(errors(img_h["load_sample"]), [sample, g_img, img_state], full)
            view.select(click_index(img_h["click"]), [mode, g_img, img_state], full)
            g_img.change(errors(img_h["slide"]), [g_img, img_state], [view, status], show_progress="hidden",
                         trigger_mode="always_last")
            undo_btn.click(errors(img_h["undo"]), [g_img, img_state], full)
            clear_btn.click(errors(img_h["clear"]), [g_img, img_state], full)
            save_btn.click(errors(img_h["save"]), [g_img, img_state], files)

        with gr.Tab("Whole image"):
            whole_state = gr.State(None)
            with gr.Row():
                with gr.Column(scale=1):
                    w_upload = gr.File(label="image (upload)", file_types=["image"], elem_id=ELEM["whole_upload"])
                    w_sample = gr.Dropdown(list(SAMPLE_IMAGES), value=None, label="… or a sample image")
                    g_whole = slider("whole_slider")
                    pooled = gr.Checkbox(False, label="pool g = 0.1 … 1.0 (the benchmark mode)",
                                         elem_id=ELEM["whole_pooled"])
                    grid = gr.Radio([f"{s}×{s}" for s in WHOLE_IMAGE_GRIDS], value=f"{WHOLE_IMAGE_GRIDS[0]}×"
                                    f"{WHOLE_IMAGE_GRIDS[0]}", label="point grid (64×64: the evaluation's; "
                                    "coarser is faster)", elem_id=ELEM["whole_grid"])
                    with gr.Accordion("thresholds (empty: the evaluation's)", open=False):
                        iou_thresh = gr.Number(None, label="predicted IoU above (official: 0.65 for g < 0.5, "
                                               "else 0.5)", minimum=0, maximum=1, elem_id=ELEM["whole_iou"])
                        stab_thresh = gr.Number(None, label="stability score at least (official: 0.7)",
                                                minimum=0, maximum=1, elem_id=ELEM["whole_stability"])
                    run_btn = gr.Button("Segment", variant="primary", elem_id=ELEM["whole_run"])
                    w_file = gr.File(label="masks (COCO RLE JSON)", interactive=False, elem_id=ELEM["whole_files"])
                with gr.Column(scale=2):
                    w_view = gr.Image(label="all masks", interactive=False, format="jpeg",
                                      elem_id=ELEM["whole_view"])
                    w_status = gr.Markdown("upload or pick an image", elem_id=ELEM["whole_status"])
            w_out = [whole_state, w_view, w_status, w_file]
            w_upload.upload(errors(whole_h["load_file"]), [w_upload], w_out)
            w_sample.input(errors(whole_h["load_sample"]), [w_sample], w_out)
            run_btn.click(errors(whole_h["run"]), [g_whole, pooled, grid, iou_thresh, stab_thresh, whole_state],
                          [w_view, w_status, w_file])

        with gr.Tab("Video"):
            video_state = gr.State(None)
            with gr.Row():
                with gr.Column(scale=1):
                    v_upload = gr.File(label=f"a short video, or the frames of a folder (≤ {ctx.limits.max_frames} "
                                       "frames)", file_count="multiple", elem_id=ELEM["video_upload"])
                    v_mode = gr.Radio(["Positive", "Negative"], value="Positive", label="next click")
                    g_video = slider("video_slider")
                    with gr.Row():
                        v_clear = gr.Button("Clear clicks")
                        v_run = gr.Button("Propagate", variant="primary", elem_id=ELEM["video_run"])
                    v_file = gr.File(label="masks (one PNG per frame + track.json, zip)", interactive=False,
                                     elem_id=ELEM["video_files"])
                with gr.Column(scale=2):
                    v_first = gr.Image(label="first frame: click on the object", interactive=False,
                                       format="jpeg", elem_id=ELEM["video_first"])
                    v_status = gr.Markdown("upload a video or frames", elem_id=ELEM["video_status"])
                    v_play = gr.Image(label="tracked (playback)", interactive=False, type="filepath",
                                      elem_id=ELEM["video_play"])
                    v_index = gr.Slider(0, 1, value=0, step=1, label="frame", interactive=False,
                                        elem_id=ELEM["video_frame_slider"])
                    v_frame = gr.Image(label="tracked frame", interactive=False, format="jpeg",
                                       elem_id=ELEM["video_frame"])
            v_upload.upload(errors(video_h["load"]), [v_upload, g_video, video_state],
                            [video_state, v_first, v_status, v_play, v_frame])
            v_first.select(click_index(video_h["click"]), [v_mode, g_video, video_state], [v_first, v_status])
            g_video.change(errors(video_h["slide"]), [g_video, video_state], [v_first, v_status],
                           show_progress="hidden", trigger_mode="always_last")
            v_clear.click(errors(video_h["clear"]), [g_video, video_state], [v_first, v_status])
            v_run.click(errors(video_h["propagate"]), [g_video, video_state],
                        [v_play, v_file, v_status, v_index, v_frame])
            v_index.change(errors(video_h["frame"]), [v_index, video_state], v_frame, show_progress="hidden")
    # One model serves every browser tab: run one event at a time (a slider move waits for a running
    # propagation instead of racing it on the same weights).
    demo.queue(default_concurrency_limit=1)
    return demo


def make_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="unsamv2-app-"))


def remove_workdir(workdir: Path) -> None:
    shutil.rmtree(workdir, ignore_errors=True)
