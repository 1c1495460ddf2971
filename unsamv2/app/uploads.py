"""What the app accepts from a browser: size-checked images, and short videos or sets of frames.

Every check raises :class:`UploadError` (a ``ValueError``) whose message is shown to the user as one line; nothing
here writes outside the folder it is given (the app's temporary folder).
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from unsamv2.app.limits import UploadLimits
from unsamv2.io.images import IMAGE_EXTENSIONS, load_image_rgb

__all__ = ["VIDEO_EXTENSIONS", "UploadError", "UploadLimits", "load_upload_image", "prepare_frames"]

VIDEO_EXTENSIONS: frozenset[str] = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})

_MB = 1024 * 1024


class UploadError(ValueError):
    """An upload the app refuses; the message says why in one line, naming the file."""


def _display_name(path: Path) -> str:
    # Gradio stores uploads under a random folder; the user knows the file by its own name only.
    return path.name


def _check_size(path: Path, limits: UploadLimits) -> None:
    if not path.is_file():
        raise UploadError(f"{_display_name(path)}: not a file")
    size = path.stat().st_size
    if size == 0:
        raise UploadError(f"{_display_name(path)}: the file is empty")
    if size > limits.max_upload_mb * _MB:
        raise UploadError(f"{_display_name(path)}: {size / _MB:.1f} MB is more than the app's limit of "
                          f"{limits.max_upload_mb:g} MB (unsamv2 app --max-upload-mb)")


def _check_pixels(path: Path, limits: UploadLimits) -> None:
    # The header alone gives the size: a huge image is refused before it is decoded into memory.
    try:
        with Image.open(path) as img:
            w, h = img.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UploadError(f"{_display_name(path)}: not a readable image ({exc.__class__.__name__})") from None
    except Image.DecompressionBombError:
        raise UploadError(f"{_display_name(path)}: the image is too large to decode safely") from None
    if w * h > limits.max_image_pixels:
        raise UploadError(f"{_display_name(path)}: {w}×{h} pixels is more than the app's limit of "
                          f"{limits.max_image_pixels:,} pixels (unsamv2 app --max-image-pixels)")


def load_upload_image(path: str | os.PathLike[str], limits: UploadLimits) -> np.ndarray:
    """Size-check and decode an uploaded image → H×W×3 uint8 RGB; :class:`UploadError` says what is wrong."""
    p = Path(path)
    _check_size(p, limits)
    _check_pixels(p, limits)
    try:
        return load_image_rgb(p)
    except ValueError as exc:  # ImageReadError: truncated, corrupt, unsupported pixel format
        reason = getattr(exc, "reason", str(exc))
        raise UploadError(f"{_display_name(p)}: {reason}") from None


def _decode_video(path: Path, dest: Path, limits: UploadLimits) -> list[Path]:
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise UploadError(f"{_display_name(path)}: not a readable video")
        frames: list[Path] = []
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            if len(frames) == limits.max_frames:
                raise UploadError(f"{_display_name(path)}: more than {limits.max_frames} frames; trim the video "
                                  f"or raise the limit (unsamv2 app --max-frames)")
            if bgr.shape[0] * bgr.shape[1] > limits.max_image_pixels:
                raise UploadError(f"{_display_name(path)}: {bgr.shape[1]}×{bgr.shape[0]} frames are more than "
                                  f"the app's limit of {limits.max_image_pixels:,} pixels")
            # PNG, not JPEG: the tracked frames are exactly the decoded ones.
            out = dest / f"{len(frames):05d}.png"
            if not cv2.imwrite(str(out), bgr):
                raise UploadError(f"{_display_name(path)}: could not store frame {len(frames)}")
            frames.append(out)
    finally:
        capture.release()
    if not frames:
        raise UploadError(f"{_display_name(path)}: the video has no decodable frames")
    return frames


def prepare_frames(files: Sequence[str | os.PathLike[str]], dest: str | os.PathLike[str],
                   limits: UploadLimits) -> list[Path]:
    """One video file, or several image files (the frames of a folder), → a fresh frame folder ``dest``.

    Image frames are copied under their own names and ordered as the video predictor orders a folder (natural
    name order: ``2.png`` before ``10.png``); a video is decoded into ``00000.png``, ``00001.png``, ….
    Returns the frame paths in order.
    """
    paths = [Path(f) for f in files]
    if not paths:
        raise UploadError("no file uploaded: give one video, or the image files of a folder of frames")
    for p in paths:
        _check_size(p, limits)
    out = Path(dest)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    videos = [p for p in paths if p.suffix.lower() in VIDEO_EXTENSIONS]
    if videos:
        if len(paths) != 1:
            raise UploadError("give one video file, or only image files (the frames of a folder), not both")
        return _decode_video(paths[0], out, limits)
    unknown = [p.name for p in paths if p.suffix.lower() not in IMAGE_EXTENSIONS]
    if unknown:
        raise UploadError(f"{unknown[0]}: not a video ({', '.join(sorted(VIDEO_EXTENSIONS))}) or an image "
                          f"({', '.join(sorted(IMAGE_EXTENSIONS))})")
    if len(paths) > limits.max_frames:
        raise UploadError(f"{len(paths)} frames is more than the app's limit of {limits.max_frames} "
                          f"(unsamv2 app --max-frames)")
    names = [p.name for p in paths]
    duplicate = next((n for n in names if names.count(n) > 1 or n.startswith(".")), None)
    if duplicate is not None:
        raise UploadError(f"{duplicate}: every frame needs its own (non-hidden) file name")
    size: tuple[int, ...] | None = None
    for p in paths:
        rgb = load_upload_image(p, limits)
        if size is None:
            size = rgb.shape[:2]
        elif rgb.shape[:2] != size:
            raise UploadError(f"{p.name}: {rgb.shape[1]}×{rgb.shape[0]}, but {paths[0].name} is "
                              f"{size[1]}×{size[0]}; all frames must have one size")
        shutil.copyfile(p, out / p.name)
    from unsamv2.model.video import list_frames  # torch: imported when a video is loaded, not before

    # The video predictor's own ordering (natural name order: 2.png before 10.png).
    return list_frames(out)
