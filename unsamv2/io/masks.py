"""COCO run-length encoding (RLE) helpers on top of ``pycocotools.mask``.

All masks leave this module as JSON-serialisable compressed RLE dicts ``{"size": [H, W], "counts": str}``, the
format SA-1B annotations, the official UnSAMv2 pseudo-labels and COCO results files use. Decoding accepts the
compressed form with ``str`` or ``bytes`` counts and the uncompressed form with a list of run lengths (what
COCO ground truth uses for ``iscrowd`` objects).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

__all__ = ["decode_rle", "encode_rle", "mask_bbox_xywh", "masks_to_rle_batch", "rle_area"]

RLE = dict[str, Any]


def _as_binary_mask(mask: np.ndarray, expected_ndim: int) -> np.ndarray:
    """Validate a bool/integer mask and return it as uint8 0/1."""
    arr = np.asarray(mask)
    if arr.ndim != expected_ndim:
        raise ValueError(f"expected a {expected_ndim}-D mask array, got shape {arr.shape}")
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        return (arr != 0).astype(np.uint8)
    # Floats are refused on purpose: a probability map needs an explicit threshold chosen by the caller.
    raise TypeError(f"mask must be bool or integer, got dtype {arr.dtype}; threshold float masks first")


def _to_json_rle(rle: Mapping[str, Any]) -> RLE:
    counts = rle["counts"]
    return {
        "size": [int(rle["size"][0]), int(rle["size"][1])],
        "counts": counts.decode("ascii") if isinstance(counts, bytes) else str(counts),
    }


def _to_pycocotools_rle(rle: Mapping[str, Any]) -> dict[str, Any]:
    """Normalise any accepted RLE form to pycocotools' compressed form with ``bytes`` counts."""
    if not isinstance(rle, Mapping) or "size" not in rle or "counts" not in rle:
        raise ValueError(f"an RLE must be a dict with 'size' and 'counts', got {rle!r:.200}")
    size = rle["size"]
    if len(size) != 2:
        raise ValueError(f"RLE 'size' must be [H, W], got {size!r}")
    h, w = int(size[0]), int(size[1])
    counts = rle["counts"]
    if isinstance(counts, str):
        return {"size": [h, w], "counts": counts.encode("ascii")}
    if isinstance(counts, bytes):
        return {"size": [h, w], "counts": counts}
    if isinstance(counts, Sequence | np.ndarray):
        run_lengths = [int(c) for c in counts]
        if sum(run_lengths) != h * w:
            raise ValueError(f"uncompressed RLE counts sum to {sum(run_lengths)}, expected H*W = {h * w}")
        # frPyObjects turns an uncompressed RLE ({"size", "counts": list}) into the compressed form.
        return mask_utils.frPyObjects({"size": [h, w], "counts": run_lengths}, h, w)
    raise TypeError(f"RLE 'counts' must be str, bytes or a list of ints, got {type(counts).__name__}")


def encode_rle(mask: np.ndarray) -> RLE:
    """Encode a 2-D bool (or 0/1 integer) mask of shape (H, W) as a JSON-serialisable compressed COCO RLE."""
    binary = _as_binary_mask(mask, expected_ndim=2)
    return _to_json_rle(mask_utils.encode(np.asfortranarray(binary)))


def masks_to_rle_batch(masks: np.ndarray | Sequence[np.ndarray]) -> list[RLE]:
    """Encode N masks, given as an (N, H, W) array or a sequence of (H, W) arrays, in one pycocotools call."""
    if isinstance(masks, np.ndarray):
        stack = _as_binary_mask(masks, expected_ndim=3)
    else:
        if len(masks) == 0:
            return []
        stack = np.stack([_as_binary_mask(m, expected_ndim=2) for m in masks])
    if stack.shape[0] == 0:
        return []
    # pycocotools wants (H, W, N) in Fortran order.
    encoded = mask_utils.encode(np.asfortranarray(stack.transpose(1, 2, 0)))
    return [_to_json_rle(r) for r in encoded]


def decode_rle(rle: Mapping[str, Any]) -> np.ndarray:
    """Decode a COCO RLE (str/bytes counts, or uncompressed list counts) to a C-ordered (H, W) bool mask."""
    decoded = mask_utils.decode(_to_pycocotools_rle(rle))
    return np.ascontiguousarray(decoded.astype(bool))


def rle_area(rle: Mapping[str, Any]) -> int:
    """Number of foreground pixels of an RLE mask."""
    return int(mask_utils.area(_to_pycocotools_rle(rle)))


def mask_bbox_xywh(mask: np.ndarray) -> list[float]:
    """Tight box ``[x, y, w, h]`` of a 2-D mask, with the conventions of ``pycocotools.mask.toBbox``.

    ``x, y`` is the top-left foreground pixel's column and row, ``w, h`` count pixels (a single pixel at (3,
    5) gives ``[3, 5, 1, 1]``); an empty mask gives ``[0, 0, 0, 0]``. Values are floats, as in COCO JSON.
    """
    binary = _as_binary_mask(mask, expected_ndim=2)
    rows = np.flatnonzero(binary.any(axis=1))
    if rows.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    cols = np.flatnonzero(binary.any(axis=0))
    y0, y1 = int(rows[0]), int(rows[-1])
    x0, x1 = int(cols[0]), int(cols[-1])
    return [float(x0), float(y0), float(x1 - x0 + 1), float(y1 - y0 + 1)]
