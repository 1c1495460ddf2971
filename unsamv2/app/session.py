"""The app's state and work, free of any web framework: one object per browser session and tab.

* :class:`ImageSession` (image tab): the image is encoded once; every click decodes the ten granularities
  g = 0.1 … 1.0 in one batched decoder call and caches them, so a slider move is a dictionary look-up plus a
  repaint. A g off the grid (never sent by the slider, possible through the API) is decoded alone and cached too.
* :func:`segment_whole_image` (whole-image tab): the automatic mask generator with the evaluation's settings.
* :class:`VideoSession` (video tab): frames from an upload, clicks on the first frame with a preview at g, then
  :func:`unsamv2.model.run_on_files.track_to_files` through all frames.

Every file these write goes into the folder they are given (the app's temporary folder).
"""
from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from unsamv2.app.limits import UploadLimits
from unsamv2.app.render import MaskPainter, draw_clicks
from unsamv2.app.uploads import load_upload_image, prepare_frames
from unsamv2.core.constants import EVAL_MASK_THRESHOLD, GRANULARITY_GRID
from unsamv2.io.atomic import atomic_output, atomic_write_json
from unsamv2.io.images import load_image_rgb
from unsamv2.io.masks import encode_rle, mask_bbox_xywh
from unsamv2.model.figures import overlay_masks, render_granularity_strip
from unsamv2.model.granularity import validate_granularity
from unsamv2.model.predictor import UnSAMv2ImagePredictor

__all__ = ["WHOLE_IMAGE_GRIDS", "DecodeSettings", "ImageSession", "VideoSession", "WholeImageResult",
           "save_whole_image", "segment_whole_image", "snap_granularity"]

#: Whole-image grids the app offers: the evaluation's 64×64 and coarser ones for speed (points = side²).
WHOLE_IMAGE_GRIDS: tuple[int, ...] = (64, 32, 16, 8)
_SNAP_TOLERANCE = 1e-6


@dataclass(frozen=True)
class DecodeSettings:
    """How masks are decoded: the CLI's defaults (official threshold -1, M2M second pass on)."""

    mask_threshold: float = EVAL_MASK_THRESHOLD
    m2m: bool = True
    checkpoint: str = ""


def snap_granularity(g: float) -> float:
    """A slider value → the grid value it stands for (0.30000000000000004 → 0.3), else the validated value."""
    value = validate_granularity(float(g))
    nearest = min(GRANULARITY_GRID, key=lambda v: abs(v - value))
    return nearest if abs(nearest - value) < _SNAP_TOLERANCE else value


def _check_inside(x: float, y: float, image: np.ndarray) -> None:
    h, w = image.shape[:2]
    if not (0 <= x < w and 0 <= y < h):
        raise ValueError(f"click ({x:g}, {y:g}) lies outside the {w}×{h} image")


def _write_mask_png(path: Path, mask: np.ndarray) -> Path:
    with atomic_output(path) as tmp:
        Image.fromarray(mask.astype(np.uint8) * 255).save(tmp, format="PNG")
    return path


@dataclass
class _Clicks:
    points: list[tuple[float, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return (np.asarray(self.points, dtype=np.float32).reshape(-1, 2),
                np.asarray(self.labels, dtype=np.int32).reshape(-1))

    def describe(self) -> str:
        if not self.points:
            return "no clicks yet"
        return "; ".join(f"{'+' if lab == 1 else '−'} ({x:g}, {y:g})"
                         for (x, y), lab in zip(self.points, self.labels, strict=True))


class ImageSession:
    """One image, its clicks, and the cached masks of the current clicks at every granularity."""

    def __init__(self, model: Any, settings: DecodeSettings) -> None:
        self.predictor = UnSAMv2ImagePredictor(model, mask_threshold=settings.mask_threshold)
        self.settings = settings
        self.image: np.ndarray | None = None
        self.name = "image"
        self.clicks = _Clicks()
        self._painter: MaskPainter | None = None
        self._cache: dict[float, tuple[np.ndarray, float]] = {}
        # Counters for tests and the benchmark: work done vs cache hits.
        self.encodings = 0
        self.decoder_calls = 0
        self.cache_hits = 0

    # ------------------------------------------------------------------ inputs
    def set_image(self, image: np.ndarray, name: str = "image") -> None:
        """Encode a new image (once) and forget the previous clicks."""
        self.predictor.set_image(image)
        self.image = image
        self.name = Path(name).stem or "image"
        self._painter = MaskPainter(image)
        self.encodings += 1
        self.clear_clicks()

    def load_upload(self, path: str | os.PathLike[str], limits: UploadLimits) -> None:
        self.set_image(load_upload_image(path, limits), Path(path).name)

    def add_click(self, x: float, y: float, positive: bool = True) -> None:
        """Add a click and decode all ten granularities for the clicks so far in one batched call."""
        image = self._require_image()
        _check_inside(x, y, image)
        self.clicks.points.append((float(x), float(y)))
        self.clicks.labels.append(1 if positive else 0)
        self._decode_grid()

    def undo_click(self) -> None:
        if self.clicks.points:
            self.clicks.points.pop()
            self.clicks.labels.pop()
            self._cache.clear()
            if self.clicks.points:
                self._decode_grid()

    def clear_clicks(self) -> None:
        self.clicks = _Clicks()
        self._cache.clear()

    # ------------------------------------------------------------------ outputs
    @property
    def has_mask(self) -> bool:
        return bool(self.clicks.points)

    def mask_at(self, granularity: float) -> tuple[np.ndarray, float]:
        """(mask H×W bool, predicted IoU) of the current clicks at ``granularity``; cached after the first time."""
        self._require_image()
        if not self.clicks.points:
            raise ValueError("click on the image first")
        g = snap_granularity(granularity)
        if g in self._cache:
            self.cache_hits += 1
            return self._cache[g]
        coords, labels = self.clicks.arrays()
        masks, ious, _ = self.predictor.predict(coords, labels, g, m2m=self.settings.m2m)
        self.decoder_calls += 1
        self._cache[g] = (masks[0], float(ious[0]))
        return self._cache[g]

    def view(self, granularity: float) -> np.ndarray:
        """What the image panel shows: the image, the mask at ``granularity`` (if clicked), the clicks."""
        image = self._require_image()
        assert self._painter is not None
        out = self._painter.paint(self.mask_at(granularity)[0]) if self.has_mask else image.copy()
        return draw_clicks(out, self.clicks.points, self.clicks.labels)

    def strip(self, tile_height: int = 160) -> np.ndarray | None:
        """The granularity strip (g = 0.1 … 1.0) of the current clicks, drawn from the cache."""
        if not self.has_mask:
            return None
        image = self._require_image()
        masks = [self.mask_at(g)[0] for g in GRANULARITY_GRID]
        return render_granularity_strip(image, self.clicks.points[-1], GRANULARITY_GRID, masks, tile_height)

    def save_downloads(self, granularity: float, folder: str | os.PathLike[str]) -> tuple[Path, Path]:
        """Write the mask at ``granularity`` as PNG and the clicks' masks at every cached g as COCO RLE JSON."""
        image = self._require_image()
        g = snap_granularity(granularity)
        mask, _ = self.mask_at(g)
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        tag = format(g, "g")
        png = _write_mask_png(out / f"{self.name}_g{tag}.png", mask)
        coords, labels = self.clicks.arrays()
        entries = [{"granularity": gg, "predicted_iou": iou, "area": int(m.sum()), "bbox": mask_bbox_xywh(m),
                    "segmentation": encode_rle(m)} for gg, (m, iou) in sorted(self._cache.items())]
        doc = {"image": self.name, "height": int(image.shape[0]), "width": int(image.shape[1]),
               "points": coords.tolist(), "labels": labels.tolist(), "selected_granularity": g,
               "checkpoint": self.settings.checkpoint, "mask_threshold": self.settings.mask_threshold,
               "m2m": self.settings.m2m, "masks": entries}
        js = atomic_write_json(out / f"{self.name}_masks.json", doc, indent=1)
        return png, js

    # ------------------------------------------------------------------ internals
    def _require_image(self) -> np.ndarray:
        if self.image is None:
            raise ValueError("upload or pick an image first")
        return self.image

    def _decode_grid(self) -> None:
        coords, labels = self.clicks.arrays()
        masks, ious, _ = self.predictor.predict_granularities(coords, labels, GRANULARITY_GRID,
                                                              m2m=self.settings.m2m)
        self.decoder_calls += 1
        self._cache = {g: (m, float(iou)) for g, m, iou in zip(GRANULARITY_GRID, masks, ious, strict=True)}


@dataclass(frozen=True)
class WholeImageResult:
    overlay: np.ndarray
    records: list[dict[str, Any]]
    granularities: list[float]
    #: (predicted-IoU, stability) threshold used at each granularity.
    thresholds: dict[float, tuple[float, float]]


def segment_whole_image(model: Any, image: np.ndarray, granularity: float | None, points_per_side: int,
                        settings: DecodeSettings, pred_iou_thresh: float | None = None,
                        stability_thresh: float | None = None) -> WholeImageResult:
    """All masks of ``image`` at ``granularity`` (``None``: pooled over g = 0.1 … 1.0) with the whole-image
    evaluation's settings (per-g thresholds, NMS 0.7, M2M) on a ``points_per_side``² grid; the two thresholds
    override the official ones (as ``unsamv2 segment-all --pred-iou-thresh/--stability-thresh``)."""
    from unsamv2.io.masks import decode_rle
    from unsamv2.model.automatic import UnSAMv2AutomaticMaskGenerator

    if points_per_side not in WHOLE_IMAGE_GRIDS:
        raise ValueError(f"points per side must be one of {WHOLE_IMAGE_GRIDS}, got {points_per_side}")
    gs = list(GRANULARITY_GRID) if granularity is None else [snap_granularity(granularity)]
    generator = UnSAMv2AutomaticMaskGenerator(model, points_per_side=points_per_side,
                                              pred_iou_thresh=pred_iou_thresh, stability_score_thresh=stability_thresh,
                                              mask_threshold=settings.mask_threshold, use_m2m=settings.m2m,
                                              output_mode="coco_rle")
    records = generator.generate_pooled(image, gs)
    overlay = overlay_masks(image, [decode_rle(r["segmentation"]) for r in records])
    return WholeImageResult(overlay, records, gs, {g: generator.thresholds_for(g) for g in gs})


def save_whole_image(result: WholeImageResult, image: np.ndarray, name: str, points_per_side: int,
                     settings: DecodeSettings, folder: str | os.PathLike[str]) -> Path:
    """The masks as the COCO RLE JSON of ``unsamv2 segment-all``."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    return atomic_write_json(out / f"{Path(name).stem or 'image'}_all_masks.json", {
        "image": name, "height": int(image.shape[0]), "width": int(image.shape[1]),
        "checkpoint": settings.checkpoint, "granularities": result.granularities,
        "settings": {"points_per_side": points_per_side, "mask_threshold": settings.mask_threshold,
                     "use_m2m": settings.m2m,
                     "thresholds": {str(g): list(t) for g, t in result.thresholds.items()}},
        "annotations": result.records,
    })


class VideoSession:
    """A frame folder in the app's temporary folder, clicks on its first frame, and the tracked masks.

    ``model`` must be built with ``video=True``; the preview on the first frame uses the image predictor on the
    same weights (the video predictor is a SAM-2 base model too).
    """

    def __init__(self, model: Any, settings: DecodeSettings, folder: str | os.PathLike[str]) -> None:
        self.model = model
        self.settings = settings
        self.folder = Path(folder)
        self.frames: list[Path] = []
        self.first: ImageSession = ImageSession(model, settings)
        self.masks: list[np.ndarray] = []
        self.overlays: list[np.ndarray] = []

    @property
    def frames_dir(self) -> Path:
        return self.folder / "frames"

    def load_upload(self, files: Sequence[str | os.PathLike[str]], limits: UploadLimits) -> None:
        self.frames = prepare_frames(files, self.frames_dir, limits)
        self.masks, self.overlays = [], []
        self.first.set_image(load_upload_image(self.frames[0], limits), self.frames[0].name)

    def add_click(self, x: float, y: float, positive: bool = True) -> None:
        self.first.add_click(x, y, positive)
        self.masks, self.overlays = [], []

    def propagate(self, granularity: float) -> Path:
        """Track the clicked object at ``granularity`` through every frame; returns the zip of mask PNGs +
        ``track.json``."""
        from unsamv2.model.run_on_files import track_to_files

        if not self.frames:
            raise ValueError("upload a video or frames first")
        if not self.first.has_mask:
            raise ValueError("click on the first frame first")
        g = snap_granularity(granularity)
        coords, labels = self.first.clicks.arrays()
        out = self.folder / "masks"
        track_to_files(self.model, self.frames_dir, 0, coords, labels, g, out,
                       checkpoint=Path(self.settings.checkpoint), mask_threshold=self.settings.mask_threshold)
        track = json.loads((out / "track.json").read_text())
        self.masks = [np.asarray(Image.open(out / f["mask"])) > 0 for f in track["frames"]]
        self.overlays = []
        for path, mask in zip(self.frames, self.masks, strict=True):
            painter = MaskPainter(load_image_rgb(path))
            self.overlays.append(painter.paint(mask))
        archive = self.folder / "tracked_masks.zip"
        with atomic_output(archive) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in sorted(out.iterdir()):
                zf.write(f, arcname=f"masks/{f.name}")
        return archive

    def playback(self, fps: float = 8.0) -> Path:
        """The overlays as an animated GIF (browsers play it without a video codec)."""
        if not self.overlays:
            raise ValueError("propagate first")
        path = self.folder / "tracked.gif"
        frames = [Image.fromarray(o) for o in self.overlays]
        with atomic_output(path) as tmp:
            frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:],
                           duration=round(1000 / fps), loop=0)
        return path
