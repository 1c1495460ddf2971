"""DAVIS-2017 semi-supervised video object segmentation (val: 30 sequences, 59 objects; method.md §5.3).

Not the interactive "DAVIS" image benchmark (345 frames packaged by RITM, :mod:`unsamv2.datasets.grabcut_berkeley_davis`).
On-disk layout of ``DAVIS-2017-trainval-480p.zip`` (top folder ``DAVIS/``), as ``davis2017-evaluation`` reads it::

    DAVIS/JPEGImages/480p/<sequence>/00000.jpg ...     frames
    DAVIS/Annotations/480p/<sequence>/00000.png ...    palette PNGs: index = object id, 0 background, 255 void
    DAVIS/ImageSets/2017/{train,val}.txt               sequence names, one per line

Frames and annotations are listed in sorted name order. The objects of a sequence are ids 1 … max(id in the first
frame's annotation) with 255 not counted, exactly as the evaluator counts them (an id missing from the first frame
inside that range is still an object, with an empty first-frame mask). ``root`` may be the ``DAVIS`` folder or
its parent. The synthetic video benchmark (:mod:`unsamv2.datasets.synthetic_video`) is written in the same layout
and read by the same loader.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unsamv2.datasets.sample import resolve_root
from unsamv2.io.palette_png import VOID_LABEL, read_index_png

__all__ = ["SUBSETS", "VideoSequence", "load_davis2017", "read_sequence_list"]

SUBSETS: tuple[str, ...] = ("train", "val")


@dataclass(frozen=True)
class VideoSequence:
    """One annotated video: frames, one annotation per frame, and the object ids to track.

    ``error`` is set (and ``object_ids`` empty) when the sequence cannot be evaluated; a batch lists it and goes on.
    """

    name: str
    frame_paths: tuple[Path, ...]
    annotation_paths: tuple[Path, ...] = ()
    object_ids: tuple[int, ...] = ()
    error: str | None = None

    @property
    def num_frames(self) -> int:
        return len(self.frame_paths)

    def read_labels(self, index: int) -> np.ndarray:
        """Frame ``index``'s annotation: (H, W) uint8 object ids (0 background, 255 void)."""
        return read_index_png(self.annotation_paths[index])

    def all_labels(self) -> list[np.ndarray]:
        return [self.read_labels(i) for i in range(self.num_frames)]

    def first_frame_masks(self) -> dict[int, np.ndarray]:
        """``{object id: bool (H, W)}`` on the first frame (void pixels belong to no object)."""
        labels = self.read_labels(0)
        return {obj: labels == obj for obj in self.object_ids}


def read_sequence_list(path: Path) -> list[str]:
    """Sequence names of an ``ImageSets`` file (blank lines skipped)."""
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _sequence(name: str, frames_dir: Path, annotations_dir: Path) -> VideoSequence:
    frames = tuple(sorted(p for p in frames_dir.glob("*.jpg") if not p.name.startswith(".")))
    if not frames:
        return VideoSequence(name, (), error=f"no frames (*.jpg) in {frames_dir}")
    annotations = tuple(sorted(p for p in annotations_dir.glob("*.png") if not p.name.startswith(".")))
    if [p.stem for p in annotations] != [p.stem for p in frames]:
        missing = sorted({p.stem for p in frames} - {p.stem for p in annotations})
        return VideoSequence(name, frames, annotations,
                             error=f"{annotations_dir}: expected one annotation per frame; missing "
                                   f"{missing[:5]}{' …' if len(missing) > 5 else ''} ({len(annotations)} PNGs for "
                                   f"{len(frames)} frames)")
    try:
        first = read_index_png(annotations[0])
    except ValueError as exc:
        return VideoSequence(name, frames, annotations, error=str(exc))
    ids = first[first != VOID_LABEL]
    n_objects = int(ids.max()) if ids.size else 0
    if n_objects == 0:
        return VideoSequence(name, frames, annotations, error=f"{annotations[0]}: no object on the first frame")
    return VideoSequence(name, frames, annotations, tuple(range(1, n_objects + 1)))


def load_davis2017(
    root: Path,
    subset: str = "val",
    resolution: str = "480p",
    annotations: str = "Annotations",
    sequences: Sequence[str] | None = None,
    max_sequences: int | None = None,
) -> Iterator[VideoSequence]:
    """The sequences of a DAVIS-2017 subset, in the order of ``ImageSets/2017/<subset>.txt``.

    ``sequences`` restricts to these names (in the given order); ``max_sequences`` keeps the first N. A sequence
    whose frames or annotations are missing or unreadable is yielded with ``error`` set.
    """
    if subset not in SUBSETS:
        raise ValueError(f"davis2017: subset must be one of {list(SUBSETS)}, got {subset!r}")
    base = resolve_root(root, "ImageSets/2017", nested=("DAVIS",))
    list_file = base / "ImageSets" / "2017" / f"{subset}.txt"
    if not list_file.is_file():
        raise FileNotFoundError(f"DAVIS-2017 sequence list not found: {list_file}")
    names = list(sequences) if sequences else read_sequence_list(list_file)
    if max_sequences is not None:
        names = names[:max_sequences]
    frames_root = base / "JPEGImages" / resolution
    annotations_root = base / annotations / resolution
    if not annotations_root.is_dir():
        raise FileNotFoundError(f"DAVIS-2017 annotations not found: {annotations_root}")
    for name in names:
        yield _sequence(name, frames_root / name, annotations_root / name)
