"""The ``synthetic`` benchmark: interactive-segmentation samples of a written set of synthetic scenes.

The scenes, their hierarchy and the files ``write_synthetic_dataset`` writes (``images/``, ``annotations/``,
``gt_coco.json``) are described in :mod:`unsamv2.datasets.synthetic_scenes`; ``load_synthetic`` yields one sample
per image with the ground-truth masks of one level (the registry lists it as the dataset ``synthetic``).
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from unsamv2.datasets.sample import ObjectMask, Sample
from unsamv2.datasets.synthetic_scenes import LEVEL_NAMES
from unsamv2.io.masks import decode_rle
from unsamv2.io.pseudo_labels import read_document

__all__ = ["LEVELS", "load_synthetic"]

#: Loader level selections → annotation levels (a level a scene set does not have selects nothing).
LEVELS: dict[str, tuple[int, ...]] = {
    # object (0), part (1), subpart (2), subsubpart (3), subsubsubpart (4)
    **{name: (level,) for level, name in enumerate(LEVEL_NAMES)},
    "all_parts": tuple(range(1, len(LEVEL_NAMES))),
    "all": tuple(range(len(LEVEL_NAMES))),
}


def load_synthetic(root: Path, level: str = "object", max_images: int | None = None) -> Iterator[Sample]:
    """Interactive-segmentation samples of a written synthetic set: one per image, the masks of ``level``.

    ``level`` is one of ``object``, ``part``, ``subpart``, ``subsubpart``, ``subsubsubpart`` (the levels of
    scenes of depth 4 and 5), ``all_parts`` (every level below the object) or ``all``.
    """
    if level not in LEVELS:
        raise ValueError(f"synthetic: level must be one of {sorted(LEVELS)}, got {level!r}")
    wanted = set(LEVELS[level])
    ann_dir = Path(root) / "annotations"
    if not ann_dir.is_dir():
        raise FileNotFoundError(f"synthetic dataset not found: {ann_dir} does not exist (run `unsamv2 synthetic`)")
    files = sorted(p for p in ann_dir.glob("*.json") if not p.name.startswith("."))
    if max_images is not None:
        files = files[:max_images]
    for path in files:
        image_path = Path(root) / "images" / f"{path.stem}.png"
        try:
            doc = read_document(path)
            image_path = Path(root) / "images" / doc["image"]["file_name"]
            objects = [ObjectMask(decode_rle(a["segmentation"]), None, str(a["id"]))
                       for a in doc["annotations"] if a.get("level") in wanted]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            yield Sample(path.stem, image_path, [], error=f"{path}: {exc}")
            continue
        yield Sample(path.stem, image_path, objects)
