"""The per-image pseudo-label JSON: the Stage 1 → Stage 2 contract (official divide-and-conquer output format).

One SA-1B-style document per image: ``image`` (a dict: id, file_name, width, height, …) and ``annotations``, each
with a COCO RLE ``segmentation``, ``bbox`` (XYWH), ``area`` and the UnSAMv2 fields ``granularity``,
``instance_id``, ``is_part``, ``is_divide``, ``is_conquer``. The synthetic scenes' ground truth uses the same
format with a ``level`` per annotation. Every reader and writer of these files goes through this module.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from unsamv2.io.atomic import atomic_write_json

__all__ = ["annotation_count", "make_document", "read_annotations", "read_document", "write_document"]


def make_document(
    image_id: int, file_name: str, hw: tuple[int, int], annotations: Sequence[dict[str, Any]], *,
    description: str, date: str,
) -> dict[str, Any]:
    """Wrap annotation records into the document the official code writes (``image`` dict, not ``images``)."""
    h, w = hw
    return {
        "info": {"description": description, "version": "1.0", "date_created": date},
        "licenses": [{"id": 1, "name": "Apache License"}],
        "categories": [{"id": 1, "name": "fg", "supercategory": "fg"}],
        "image": {"id": image_id, "file_name": file_name, "width": w, "height": h, "date_captured": date,
                  "license": 1, "coco_url": "", "flickr_url": ""},
        "annotations": list(annotations),
    }


def read_document(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read one document; a file that is not JSON, lacks the ``annotations`` list or has a non-object ``image``
    raises a ``ValueError`` naming it. A missing ``image`` reads as ``{}`` (readers then go by the file name)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read pseudo-label file {path}: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("annotations"), list):
        raise ValueError(f"pseudo-label file {path}: expected a JSON object with an 'annotations' list")  # noqa: TRY004 (bad file content)
    if not isinstance(doc.setdefault("image", {}), dict):
        raise ValueError(f"pseudo-label file {path}: 'image' must be an object (id, file_name, width, height)")  # noqa: TRY004
    return doc


def read_annotations(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The ``annotations`` list of one document (validated as :func:`read_document`)."""
    return read_document(path)["annotations"]


def annotation_count(path: str | os.PathLike[str]) -> int:
    return len(read_annotations(path))


def write_document(path: str | os.PathLike[str], doc: dict[str, Any]) -> Path:
    """Write atomically (a killed job never leaves a half file that a resumed run would trust)."""
    return atomic_write_json(path, doc)
