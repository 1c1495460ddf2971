"""unsamv2.io.masks: COCO RLE encoding and decoding, areas and boxes, checked against pycocotools."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pycocotools import mask as mask_utils

from unsamv2.io.masks import decode_rle, encode_rle, mask_bbox_xywh, masks_to_rle_batch, rle_area

# pycocotools' Cython decode trips a NumPy 2 "copy keyword" DeprecationWarning on every call; it is harmless.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


_masks = arrays(
    dtype=np.bool_,
    shape=st.tuples(st.integers(1, 24), st.integers(1, 24)),
    elements=st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(mask=_masks)
def test_rle_round_trip_and_stats_match_pycocotools(mask: np.ndarray) -> None:
    rle = encode_rle(mask)
    assert isinstance(rle["counts"], str) and rle["size"] == list(mask.shape)
    rle = json.loads(json.dumps(rle))  # survives a JSON file
    assert np.array_equal(decode_rle(rle), mask)
    bytes_rle = {"size": rle["size"], "counts": rle["counts"].encode()}
    assert np.array_equal(decode_rle(bytes_rle), mask)

    reference = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert rle_area(rle) == int(mask.sum()) == int(mask_utils.area(reference))
    assert mask_bbox_xywh(mask) == [float(v) for v in mask_utils.toBbox(reference)]


@settings(max_examples=50, deadline=None)
@given(stack=arrays(np.bool_, st.tuples(st.integers(0, 5), st.integers(1, 12), st.integers(1, 12))))
def test_batch_encoding_equals_single(stack: np.ndarray) -> None:
    batch = masks_to_rle_batch(stack)
    assert batch == [encode_rle(m) for m in stack]
    assert masks_to_rle_batch(list(stack)) == batch


def test_uncompressed_rle_known_answer() -> None:
    # Column-major runs over a 2x3 mask: 1 zero, 2 ones, 3 zeros -> pixels (0,0)=0, (1,0)=1, (0,1)=1, rest 0.
    rle = {"size": [2, 3], "counts": [1, 2, 3]}
    assert decode_rle(rle).tolist() == [[False, True, False], [True, False, False]]
    assert rle_area(rle) == 2
    with pytest.raises(ValueError, match="sum to 5"):
        decode_rle({"size": [2, 3], "counts": [1, 2, 2]})


def test_bbox_known_answers_and_input_checks() -> None:
    mask = np.zeros((10, 8), dtype=bool)
    assert mask_bbox_xywh(mask) == [0.0, 0.0, 0.0, 0.0]
    mask[5, 3] = True
    assert mask_bbox_xywh(mask) == [3.0, 5.0, 1.0, 1.0]
    mask[9, 7] = True
    assert mask_bbox_xywh(mask) == [3.0, 5.0, 5.0, 5.0]
    assert encode_rle(mask.astype(np.uint8)) == encode_rle(mask)  # 0/1 integers are accepted
    with pytest.raises(TypeError, match="float"):
        encode_rle(mask.astype(np.float32))
    with pytest.raises(ValueError, match="2-D"):
        encode_rle(mask[None])
    with pytest.raises(ValueError, match="'size' and 'counts'"):
        decode_rle({"counts": "abc"})
