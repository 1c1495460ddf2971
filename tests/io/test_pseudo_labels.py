"""The per-image pseudo-label JSON (Stage 1 → Stage 2 contract): round trip, and errors that name the file."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from unsamv2.io.masks import decode_rle, encode_rle
from unsamv2.io.pseudo_labels import (
    annotation_count,
    make_document,
    read_annotations,
    read_document,
    write_document,
)


def test_round_trip_keeps_every_field_and_the_masks(tmp_path: Path) -> None:
    mask = np.zeros((6, 9), bool)
    mask[1:4, 2:7] = True
    ann = {"id": 1, "segmentation": encode_rle(mask), "area": 15, "bbox": [2, 1, 5, 3], "granularity": 0.4,
           "instance_id": 0, "is_part": True, "is_divide": False, "is_conquer": True}
    doc = make_document(7, "a.jpg", (6, 9), [ann], description="test", date="2026-01-01")
    assert doc["image"] == {"id": 7, "file_name": "a.jpg", "width": 9, "height": 6, "date_captured": "2026-01-01",
                            "license": 1, "coco_url": "", "flickr_url": ""}
    path = write_document(tmp_path / "a.json", doc)
    assert read_document(path) == json.loads(json.dumps(doc)) and annotation_count(path) == 1
    (back,) = read_annotations(path)
    assert np.array_equal(decode_rle(back["segmentation"]), mask) and back["granularity"] == 0.4


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "cannot read pseudo-label file"),
    ('{"image": {}}', "'annotations' list"),
    ('[1, 2]', "'annotations' list"),
    ('{"image": 3, "annotations": []}', "'image' must be an object"),
])
def test_bad_files_are_errors_naming_the_file(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        read_document(path)
    assert str(path) in str(info.value)


def test_a_document_without_image_reads_as_empty_image(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"annotations": []}')
    assert read_document(path) == {"annotations": [], "image": {}}
