"""unsamv2.io.images: robust image decoding, image listing and id lists.

Every bad or unusual image is generated on the fly; expected pixels are computed from first principles (not by
asking Pillow the same question twice).
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile

from unsamv2.io.images import ImageReadError, list_images, load_image_rgb, read_id_list

# ------------------------------------------------------------------------------------------------------------
# image decoding
# ------------------------------------------------------------------------------------------------------------


def _save(img: Image.Image, path: Path, **kwargs) -> Path:
    img.save(path, **kwargs)
    return path


def _noise_rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def test_rgb_png_exact(tmp_path: Path) -> None:
    arr = _noise_rgb(7, 11)
    out = load_image_rgb(_save(Image.fromarray(arr), tmp_path / "a.png"))
    assert out.dtype == np.uint8 and out.shape == (7, 11, 3)
    assert np.array_equal(out, arr)


@pytest.mark.parametrize("ext", ["bmp", "tif", "webp"])
def test_other_lossless_formats_exact(tmp_path: Path, ext: str) -> None:
    arr = _noise_rgb(9, 6, seed=3)
    kwargs = {"lossless": True} if ext == "webp" else {}
    out = load_image_rgb(_save(Image.fromarray(arr), tmp_path / f"a.{ext}", **kwargs))
    assert np.array_equal(out, arr)


def _jpeg_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.mark.parametrize("keep_fraction", [0.99, 0.7, 0.5, 0.1])
def test_truncated_jpeg_is_an_error(tmp_path: Path, keep_fraction: float) -> None:
    data = _jpeg_bytes(_noise_rgb(64, 64))
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: int(len(data) * keep_fraction)])
    with pytest.raises(ImageReadError) as info:
        load_image_rgb(path)
    assert str(path) in str(info.value)
    assert info.value.path == path


def test_jpeg_missing_only_end_marker_is_an_error(tmp_path: Path) -> None:
    data = _jpeg_bytes(_noise_rgb(32, 32))
    assert data.endswith(b"\xff\xd9")
    path = tmp_path / "no_eoi.jpg"
    path.write_bytes(data[:-2])
    with pytest.raises(ImageReadError, match="truncated"):
        load_image_rgb(path)


def test_truncation_detected_even_if_someone_enabled_lenient_pillow(tmp_path: Path, monkeypatch) -> None:
    data = _jpeg_bytes(_noise_rgb(64, 64))
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(ImageReadError):
        load_image_rgb(path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the caller's global setting is restored


def test_truncated_png_is_an_error(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(_noise_rgb(64, 64)).save(buf, format="PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) * 2 // 3])
    with pytest.raises(ImageReadError):
        load_image_rgb(path)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.jpg", b"", "empty"),
        ("random.jpg", bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8)), "recognised"),
        ("text.png", b"this is not an image\n" * 10, "recognised"),
        ("header_only.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 200, None),
    ],
)
def test_corrupt_and_non_image_files(tmp_path: Path, name: str, content: bytes, reason: str | None) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=reason) as info:
        load_image_rgb(path)
    assert name in str(info.value)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="does not exist"):
        load_image_rgb(tmp_path / "nope.jpg")
    with pytest.raises(ImageReadError, match="not a regular file"):
        load_image_rgb(tmp_path)
    assert issubclass(ImageReadError, ValueError)


def test_grayscale_and_bilevel(tmp_path: Path) -> None:
    gray = np.array([[0, 77, 255]], dtype=np.uint8)
    out = load_image_rgb(_save(Image.fromarray(gray), tmp_path / "g.png"))
    assert out.shape == (1, 3, 3)
    assert np.array_equal(out, np.repeat(gray[..., None], 3, axis=2))
    bilevel = Image.fromarray(np.array([[0, 255, 0]], dtype=np.uint8)).convert("1")
    out = load_image_rgb(_save(bilevel, tmp_path / "b.png"))
    assert out[0, :, 0].tolist() == [0, 255, 0]


def test_rgba_composited_on_white(tmp_path: Path) -> None:
    rgba = np.array([[[255, 0, 0, 0], [10, 20, 30, 255], [0, 0, 0, 128], [200, 100, 0, 51]]], dtype=np.uint8)
    out = load_image_rgb(_save(Image.fromarray(rgba, "RGBA"), tmp_path / "a.png"))
    # out = rgb * a/255 + 255 * (1 - a/255), rounded
    expected = [[255, 255, 255], [10, 20, 30], [127, 127, 127], [244, 224, 204]]
    assert out[0].tolist() == expected


def test_la_composited_on_white(tmp_path: Path) -> None:
    la = np.array([[[0, 0], [100, 255], [0, 255]]], dtype=np.uint8)
    out = load_image_rgb(_save(Image.fromarray(la, "LA"), tmp_path / "la.png"))
    assert out[0, :, 0].tolist() == [255, 100, 0]
    assert np.array_equal(out[..., 0], out[..., 2])


def test_palette_png_with_and_without_transparency(tmp_path: Path) -> None:
    img = Image.new("P", (3, 1))
    img.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    img.putdata([0, 1, 2])
    out = load_image_rgb(_save(img, tmp_path / "p.png"))
    assert out[0].tolist() == [[255, 0, 0], [0, 255, 0], [0, 0, 255]]
    out = load_image_rgb(_save(img, tmp_path / "pt.png", transparency=1))  # green entry is transparent
    assert out[0].tolist() == [[255, 0, 0], [255, 255, 255], [0, 0, 255]]


def test_16bit_grayscale_png_scaled_by_rounding(tmp_path: Path) -> None:
    values = np.array([[0, 65535, 257 * 100, 200, 128, 129]], dtype=np.uint16)
    path = tmp_path / "g16.png"
    assert cv2.imwrite(str(path), values)
    out = load_image_rgb(path)
    # round(v * 255 / 65535): 200 -> 0.778 -> 1; 128 -> 0.498 -> 0; 129 -> 0.502 -> 1
    assert out[0, :, 0].tolist() == [0, 255, 100, 1, 0, 1]
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 0], out[..., 2])


@pytest.mark.parametrize("ext", ["png", "tif"])
def test_16bit_rgb_full_precision(tmp_path: Path, ext: str) -> None:
    rgb16 = np.array([[[65535, 0, 200], [257 * 7, 32767, 32768]]], dtype=np.uint16)
    path = tmp_path / f"c16.{ext}"
    assert cv2.imwrite(str(path), rgb16[..., ::-1])  # OpenCV writes BGR
    out = load_image_rgb(path)
    # Pillow alone keeps the high byte: 200 -> 0; rounding gives 1. 32767 -> 127.498 -> 127, 32768 -> 128.
    assert out.tolist() == [[[255, 0, 1], [7, 127, 128]]]


def test_16bit_rgba_png_composited(tmp_path: Path) -> None:
    bgra = np.array([[[0, 0, 65535, 65535], [0, 0, 0, 0]]], dtype=np.uint16)  # opaque red, transparent black
    path = tmp_path / "c16a.png"
    assert cv2.imwrite(str(path), bgra)
    assert load_image_rgb(path).tolist() == [[[255, 0, 0], [255, 255, 255]]]


def test_cmyk_jpeg_pure_colours(tmp_path: Path) -> None:
    cases = {
        (255, 0, 0, 0): (0, 255, 255),  # cyan
        (0, 255, 0, 0): (255, 0, 255),  # magenta
        (0, 0, 255, 0): (255, 255, 0),  # yellow
        (0, 0, 0, 255): (0, 0, 0),  # black
        (0, 0, 0, 0): (255, 255, 255),  # paper white
    }
    for i, (cmyk, rgb) in enumerate(cases.items()):
        path = _save(Image.new("CMYK", (16, 16), cmyk), tmp_path / f"cmyk{i}.jpg", quality=95)
        with Image.open(path) as check:
            assert check.mode == "CMYK"
        out = load_image_rgb(path)
        assert out.shape == (16, 16, 3)
        assert np.abs(out[8, 8].astype(int) - np.array(rgb)).max() <= 6, (cmyk, out[8, 8])


def _marked_image(h: int, w: int) -> np.ndarray:
    """Mid-grey image with a red block at the stored top-left corner."""
    arr = np.full((h, w, 3), 128, dtype=np.uint8)
    arr[:4, :4] = (255, 0, 0)
    return arr


def _is_red(px: np.ndarray) -> bool:
    return bool(px[0] > 200 and px[1] < 60)


def _corner_colours(arr: np.ndarray) -> dict[str, bool]:
    red = _is_red
    return {
        "top_left": red(arr[1, 1]),
        "top_right": red(arr[1, -2]),
        "bottom_left": red(arr[-2, 1]),
        "bottom_right": red(arr[-2, -2]),
    }


# EXIF orientation -> where the stored top-left corner appears on display, for a stored W x H = 20 x 10 image.
_ORIENTATION_CASES = {
    1: ("top_left", (10, 20)),
    3: ("bottom_right", (10, 20)),
    6: ("top_right", (20, 10)),  # stored image must be rotated 90 deg clockwise for display
    8: ("bottom_left", (20, 10)),  # rotated 90 deg counter-clockwise
}


@pytest.mark.parametrize("orientation", sorted(_ORIENTATION_CASES))
def test_exif_orientation_jpeg(tmp_path: Path, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = _save(Image.fromarray(_marked_image(10, 20)), tmp_path / "o.jpg", exif=exif, quality=95)
    out = load_image_rgb(path)
    corner, shape = _ORIENTATION_CASES[orientation]
    assert out.shape[:2] == shape
    corners = _corner_colours(out)
    assert corners[corner] and sum(corners.values()) == 1, corners


def _png_with_exif_chunk(png: bytes, orientation: int) -> bytes:
    """Insert an eXIf chunk (carrying an orientation) right after IHDR of a PNG."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    payload = exif.tobytes()
    payload = payload[6:] if payload.startswith(b"Exif\x00\x00") else payload
    chunk = struct.pack(">I", len(payload)) + b"eXIf" + payload
    chunk += struct.pack(">I", zlib.crc32(b"eXIf" + payload) & 0xFFFFFFFF)
    ihdr_end = 8 + 4 + 4 + 13 + 4
    return png[:ihdr_end] + chunk + png[ihdr_end:]


def test_exif_orientation_applied_on_16bit_colour_path(tmp_path: Path) -> None:
    arr16 = _marked_image(10, 20).astype(np.uint16) * 257
    ok, encoded = cv2.imencode(".png", arr16[..., ::-1])
    assert ok
    path = tmp_path / "o16.png"
    path.write_bytes(_png_with_exif_chunk(encoded.tobytes(), 6))
    out = load_image_rgb(path)
    assert out.shape == (20, 10, 3)
    corners = _corner_colours(out)
    assert corners["top_right"] and sum(corners.values()) == 1


# ------------------------------------------------------------------------------------------------------------
# listing and id lists
# ------------------------------------------------------------------------------------------------------------


def test_list_images_sorted_case_insensitive(tmp_path: Path) -> None:
    names = [
        "b.JPG",
        "a.png",
        "c.jpeg",
        "d.TIFF",
        "e.webp",
        "f.bmp",
        "g.tif",
        "notes.txt",
        ".hidden.jpg",
        "x.gif",
    ]
    for n in names:
        (tmp_path / n).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "z.jpg").write_bytes(b"x")
    (tmp_path / "dir.jpg").mkdir()  # a directory with an image-like name is not an image
    got = [p.name for p in list_images(tmp_path)]
    assert got == ["a.png", "b.JPG", "c.jpeg", "d.TIFF", "e.webp", "f.bmp", "g.tif"]
    got_rec = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path, recursive=True)]
    assert got_rec == ["a.png", "b.JPG", "c.jpeg", "d.TIFF", "e.webp", "f.bmp", "g.tif", "sub/z.jpg"]
    with pytest.raises(FileNotFoundError, match="nope"):
        list_images(tmp_path / "nope")


def test_read_id_list(tmp_path: Path) -> None:
    f = tmp_path / "ids.txt"
    f.write_text("# subset v1\nsa_10\n\n  sa_2  \nsa_1\n", encoding="utf-8")
    assert read_id_list(f) == ["sa_10", "sa_2", "sa_1"]  # file order, not sorted
    f.write_text("a\nb\na\n")
    with pytest.raises(ValueError, match=r"ids.txt.*'a' on line 3 duplicates line 1"):
        read_id_list(f)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_id_list(tmp_path / "missing.txt")
