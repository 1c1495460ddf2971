"""Uploads: bad or huge files get one clear line naming the file; videos and frame sets become frame folders."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from unsamv2.app.limits import UploadLimits
from unsamv2.app.uploads import UploadError, load_upload_image, prepare_frames

LIMITS = UploadLimits()


def _png(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


def test_a_good_image_decodes_to_rgb(photo_file: Path, photo: np.ndarray) -> None:
    np.testing.assert_array_equal(load_upload_image(photo_file, LIMITS), photo)


@pytest.mark.parametrize(("content", "name", "message"), [
    (b"", "empty.png", r"^empty\.png: the file is empty$"),
    (b"hello, not an image", "notes.png", r"^notes\.png: not a readable image"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "broken.png", r"^broken\.png: not a readable image"),
])
def test_bad_files_are_refused_with_one_line(tmp_path: Path, content: bytes, name: str, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UploadError, match=message) as info:
        load_upload_image(path, LIMITS)
    assert "\n" not in str(info.value)


def test_a_truncated_image_is_refused(tmp_path: Path, photo: np.ndarray) -> None:
    full = _png(tmp_path / "full.png", photo).read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(full[: len(full) // 2])
    with pytest.raises(UploadError, match=r"^cut\.png: corrupt or truncated image data"):
        load_upload_image(cut, LIMITS)


def test_a_huge_file_is_refused_before_decoding(tmp_path: Path, photo: np.ndarray) -> None:
    path = _png(tmp_path / "big.png", photo)
    size_mb = path.stat().st_size / 2**20
    with pytest.raises(UploadError, match=r"^big\.png: 0\.\d MB is more than the app's limit of 0\.01 MB "
                                          r"\(unsamv2 app --max-upload-mb\)$"):
        load_upload_image(path, UploadLimits(max_upload_mb=0.01))
    assert size_mb > 0.01


def test_too_many_pixels_are_refused_from_the_header(tmp_path: Path) -> None:
    # 4000×3000 of one colour: a tiny file, but 12 MP.
    path = _png(tmp_path / "wide.png", np.zeros((3000, 4000, 3), np.uint8))
    assert path.stat().st_size < 200_000
    with pytest.raises(UploadError, match=r"^wide\.png: 4000×3000 pixels is more than the app's limit of "
                                          r"1,000,000 pixels"):
        load_upload_image(path, UploadLimits(max_image_pixels=1_000_000))


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        UploadLimits(max_frames=0)


def _write_video(path: Path, frames: list[np.ndarray], fps: float = 5.0) -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(np.ascontiguousarray(f[..., ::-1]))
    writer.release()
    return path


def test_a_video_becomes_numbered_png_frames(tmp_path: Path, photo: np.ndarray) -> None:
    frames = [np.roll(photo, 8 * k, axis=1) for k in range(4)]
    video = _write_video(tmp_path / "clip.avi", frames)
    out = prepare_frames([video], tmp_path / "frames", LIMITS)
    assert [p.name for p in out] == ["00000.png", "00001.png", "00002.png", "00003.png"]
    # The stored frames are exactly what OpenCV decodes from the video (PNG: lossless).
    capture = cv2.VideoCapture(str(video))
    for p in out:
        ok, bgr = capture.read()
        assert ok
        np.testing.assert_array_equal(np.asarray(Image.open(p)), bgr[..., ::-1])
    capture.release()
    # Decoding is lossy (MJPG), but the frames are the photo, not noise.
    assert np.abs(np.asarray(Image.open(out[2])).astype(int) - frames[2]).mean() < 12


def test_a_video_over_the_frame_limit_is_refused(tmp_path: Path, photo: np.ndarray) -> None:
    video = _write_video(tmp_path / "long.avi", [photo] * 5)
    with pytest.raises(UploadError, match=r"^long\.avi: more than 4 frames; trim the video or raise the limit "
                                          r"\(unsamv2 app --max-frames\)$"):
        prepare_frames([video], tmp_path / "frames", UploadLimits(max_frames=4))
    assert len(prepare_frames([video], tmp_path / "frames", UploadLimits(max_frames=5))) == 5


def test_a_file_that_is_no_video_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"definitely not a video" * 10)
    with pytest.raises(UploadError, match=r"^fake\.mp4: not a readable video|^fake\.mp4: the video has no"):
        prepare_frames([fake], tmp_path / "frames", LIMITS)


def test_image_frames_keep_their_names_in_natural_order(tmp_path: Path, photo: np.ndarray) -> None:
    src = tmp_path / "src"
    src.mkdir()
    files = [_png(src / f"f{k}.png", np.roll(photo, k, axis=0)) for k in (10, 2, 1)]
    out = prepare_frames(files, tmp_path / "frames", LIMITS)
    assert [p.name for p in out] == ["f1.png", "f2.png", "f10.png"]
    np.testing.assert_array_equal(np.asarray(Image.open(out[2])), np.roll(photo, 10, axis=0))


@pytest.mark.parametrize(("case", "message"), [
    ("mixed", r"^give one video file, or only image files"),
    ("sizes", r"^b\.png: 80×96, but a\.png is 160×192; all frames must have one size$"),
    ("unknown", r"^notes\.txt: not a video \(\.avi, .*\) or an image \(\.bmp, "),
    ("too_many", r"^3 frames is more than the app's limit of 2 \(unsamv2 app --max-frames\)$"),
    ("none", r"^no file uploaded"),
])
def test_bad_frame_sets_are_refused(tmp_path: Path, photo: np.ndarray, case: str, message: str) -> None:
    a = _png(tmp_path / "a.png", photo)
    b = _png(tmp_path / "b.png", photo[::2, ::2])
    c = _png(tmp_path / "c.png", photo)
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    video = _write_video(tmp_path / "v.avi", [photo])
    files = {"mixed": [a, video], "sizes": [a, b], "unknown": [a, notes], "too_many": [a, b, c],
             "none": []}[case]
    with pytest.raises(UploadError, match=message):
        prepare_frames(files, tmp_path / "frames", UploadLimits(max_frames=2))
