"""Robust image decoding, image listing and id lists.

Every image the pipeline reads goes through :func:`load_image_rgb`, which returns an ``(H, W, 3)`` ``uint8``
RGB array in display orientation, or raises :class:`ImageReadError` naming the file and the reason. Decisions:

* **Truncated files are errors.** Pillow's ``ImageFile.LOAD_TRUNCATED_IMAGES`` is forced to ``False`` while
  decoding and the whole image is decoded eagerly, so a half-downloaded JPEG never becomes a grey-bottomed
  training image.
* **EXIF orientation is applied** (``ImageOps.exif_transpose``), so pixel coordinates (clicks, masks) refer to
  the image as every viewer shows it.
* **Transparency (RGBA, LA, PA, palette with a transparent colour) is alpha-composited onto white.** Dropping
  the alpha channel instead would expose whatever colour the encoder left under fully transparent pixels
  (often black or garbage), which is not what a user sees.
* **High bit depth is scaled, not truncated:** 16-bit values map to 8 bits as ``round(v * 255 / 65535)``
  (65535 -> 255, 0 -> 0). Pillow reduces 16-bit colour PNG/TIFF to 8 bits by keeping the high byte (a
  floor), so those files are re-read with ``cv2.IMREAD_UNCHANGED`` to get the full-precision values.
* CMYK (including Adobe-inverted CMYK JPEGs) and YCbCr are converted with Pillow's conversions.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

__all__ = ["IMAGE_EXTENSIONS", "ImageReadError", "list_images", "load_image_rgb", "read_id_list"]

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})

# ImageFile.LOAD_TRUNCATED_IMAGES is process-global; another library may have switched it on. We switch it off
# for the duration of our decode and restore it afterwards, serialised by this lock.
_TRUNCATION_FLAG_LOCK = threading.Lock()

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*")

# Pillow Image.Transpose operations for EXIF orientations 2..8 (same table as ImageOps.exif_transpose).
_EXIF_ORIENTATION_TAG = 0x0112
_ORIENTATION_TO_TRANSPOSE: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class ImageReadError(ValueError):
    """An image file could not be decoded; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path}: {reason}")


def _scale_16_to_8(values: np.ndarray) -> np.ndarray:
    """Map 16-bit values [0, 65535] to uint8 [0, 255] by rounding v * 255 / 65535 (= v / 257)."""
    v = values.astype(np.uint32)
    # (v * 255 + 32767) // 65535 is round-half-up of v * 255 / 65535 in exact integer arithmetic.
    return ((v * 255 + 32767) // 65535).astype(np.uint8)


def _composite_on_white(rgb: np.ndarray, alpha: np.ndarray, max_value: int) -> np.ndarray:
    """Alpha-composite ``rgb`` (H,W,3) with ``alpha`` (H,W) onto a white background, same integer range."""
    rgb_i = rgb.astype(np.int64)
    a = alpha.astype(np.int64)[..., None]
    out = (rgb_i * a + max_value * (max_value - a) + max_value // 2) // max_value
    return out.astype(rgb.dtype)


def _png_bit_depth_and_color_type(header: bytes) -> tuple[int, int] | None:
    """Read bit depth and colour type from a PNG IHDR chunk (bytes 24 and 25 of the file)."""
    if len(header) >= 26 and header.startswith(_PNG_SIGNATURE) and header[12:16] == b"IHDR":
        return header[24], header[25]
    return None


def _needs_high_precision_reread(header: bytes, pil_mode: str) -> bool:
    """True when Pillow has decoded a >8-bit *colour* image into an 8-bit mode by dropping the low byte."""
    png = _png_bit_depth_and_color_type(header)
    if png is not None:
        bit_depth, color_type = png
        # Colour types 2 (RGB), 4 (grey + alpha) and 6 (RGBA) at 16 bits are reduced by Pillow; colour type 0
        # (grey) opens as "I;16" with full precision and is handled by Pillow directly.
        return bit_depth == 16 and color_type in (2, 4, 6)
    # TIFF bit depth is not at a fixed offset: ask OpenCV, whose result is used only if it really is 16-bit.
    return header.startswith(_TIFF_SIGNATURES) and pil_mode in ("RGB", "RGBA", "RGBX")


def _array_from_opencv(path: Path) -> np.ndarray | None:
    """Decode with OpenCV at native depth; uint8 RGB, or None if OpenCV cannot help (8-bit or failure)."""
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.dtype != np.uint16:
        return None
    if raw.ndim == 2:
        rgb16 = np.repeat(raw[..., None], 3, axis=2)
    elif raw.shape[2] == 2:  # grey + alpha
        rgb16 = _composite_on_white(np.repeat(raw[..., :1], 3, axis=2), raw[..., 1], 65535)
    elif raw.shape[2] == 3:
        rgb16 = raw[..., ::-1]  # OpenCV is BGR
    elif raw.shape[2] == 4:
        rgb16 = _composite_on_white(raw[..., 2::-1], raw[..., 3], 65535)
    else:
        return None
    return _scale_16_to_8(rgb16)


def _pil_to_rgb_array(img: Image.Image, path: Path) -> np.ndarray:
    """Convert a decoded, orientation-corrected Pillow image of any supported mode to uint8 RGB."""
    mode = img.mode
    if mode == "RGB":
        return np.asarray(img, dtype=np.uint8)
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        values = np.asarray(img)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ImageReadError(path, f"32-bit integer pixels outside the 16-bit range (mode {mode})")
        return np.repeat(_scale_16_to_8(values)[..., None], 3, axis=2)
    if mode == "P":
        # Palette images may mark one palette entry (or an alpha table) as transparent.
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        return _pil_to_rgb_array(img, path)
    if mode in ("LA", "PA", "La", "RGBa", "RGBA"):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.uint8)
        return _composite_on_white(rgba[..., :3], rgba[..., 3], 255)
    if mode in ("1", "L", "RGBX", "CMYK", "YCbCr"):
        return np.asarray(img.convert("RGB"), dtype=np.uint8)
    raise ImageReadError(path, f"unsupported pixel mode {mode!r}")


def load_image_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file into an ``(H, W, 3)`` ``uint8`` RGB array in EXIF display orientation.

    Raises :class:`ImageReadError` (a ``ValueError``) naming the file for a missing, empty, non-image,
    truncated or corrupt file and for unsupported pixel formats. See the module docstring for the conversion
    rules (transparency composited onto white; 16-bit scaled by rounding).
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(path, "file does not exist")
    if not path.is_file():
        raise ImageReadError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "file is empty (0 bytes)")
    with open(path, "rb") as fh:
        header = fh.read(64)

    try:
        with _TRUNCATION_FLAG_LOCK:
            previous = ImageFile.LOAD_TRUNCATED_IMAGES
            ImageFile.LOAD_TRUNCATED_IMAGES = False
            try:
                with Image.open(path) as img:
                    img.load()  # force the full decode now: truncation is detected here, not later
                    orientation = int(img.getexif().get(_EXIF_ORIENTATION_TAG, 1))
                    upright = ImageOps.exif_transpose(img)
            finally:
                ImageFile.LOAD_TRUNCATED_IMAGES = previous
    except UnidentifiedImageError:
        raise ImageReadError(path, "not a recognised image format (or the header is corrupt)") from None
    except PermissionError as exc:
        raise ImageReadError(path, f"permission denied ({exc})") from exc
    except Image.DecompressionBombError as exc:
        raise ImageReadError(path, f"image too large: {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow reports truncation and corrupt streams as OSError/SyntaxError/ValueError/EOFError.
        raise ImageReadError(path, f"corrupt or truncated image data ({exc})") from exc

    if _needs_high_precision_reread(header, upright.mode):
        precise = _array_from_opencv(path)
        if precise is not None:
            transpose = _ORIENTATION_TO_TRANSPOSE.get(orientation)
            if transpose is not None:
                # Apply the same EXIF transpose Pillow applied, via Pillow, so both paths agree exactly.
                precise = np.asarray(Image.fromarray(precise).transpose(transpose))
            return np.ascontiguousarray(precise)

    rgb = _pil_to_rgb_array(upright, path)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ImageReadError(path, f"decoded to an unexpected shape {rgb.shape}")
    return np.ascontiguousarray(rgb)


def list_images(folder: str | os.PathLike[str], recursive: bool = False) -> list[Path]:
    """Return the image files in ``folder``, sorted by their path relative to ``folder``.

    Extensions (case-insensitive): jpg, jpeg, png, bmp, tif, tiff, webp. Hidden files (name starting with
    ``.``, e.g. macOS ``._x.jpg`` resource forks, or our own atomic-write temp files) are skipped.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist or is not a directory")
    candidates = root.rglob("*") if recursive else root.iterdir()
    found = [
        p
        for p in candidates
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    ]
    # Sort on the relative POSIX path so the order is the same on every machine and file system.
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def read_id_list(file: str | os.PathLike[str]) -> list[str]:
    """Read a versioned id list: one id per line, in file order.

    Surrounding whitespace is stripped; blank lines and lines starting with ``#`` are ignored. A duplicated id
    is an error (``ValueError`` naming the file, line and id): a subset that lists an id twice is a bug.
    """
    path = Path(file)
    if not path.is_file():
        raise FileNotFoundError(f"id list {path} does not exist")
    ids: list[str] = []
    first_line: dict[str, int] = {}
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            item = line.strip()
            if not item or item.startswith("#"):
                continue
            if item in first_line:
                raise ValueError(
                    f"id list {path}: id {item!r} on line {line_no} duplicates line {first_line[item]}"
                )
            first_line[item] = line_no
            ids.append(item)
    return ids
