"""Where the report's granularity strips click: inside the image's largest pseudo-label instance, at its pixel
farthest from the instance boundary (the interactive protocol's first-click rule), so the click is reproducible
and always lands on an object the run discovered."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from unsamv2.core.clicks import padded_distance_transform
from unsamv2.io.masks import decode_rle, rle_area
from unsamv2.io.pseudo_labels import read_annotations

__all__ = ["click_on_largest_instance"]


def click_on_largest_instance(labels_json: str | Path) -> tuple[int, int] | None:
    """(x, y) of the innermost pixel of the largest instance (a mask with ``is_part`` false; any mask when every
    one is a part) of a pseudo-label JSON; ``None`` when it has no mask. Ties go to the first pixel in row-major
    order."""
    annotations = read_annotations(labels_json)
    if not annotations:
        return None
    instances = [a for a in annotations if not a["is_part"]] or annotations
    largest = max(instances, key=lambda a: rle_area(a["segmentation"]))
    distance = padded_distance_transform(decode_rle(largest["segmentation"]))
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return int(x), int(y)
