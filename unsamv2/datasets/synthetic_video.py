"""Synthetic video benchmark: the hierarchical scenes of :mod:`unsamv2.datasets.synthetic_scenes`, animated.

Each sequence is a textured background (a scene with no object) and 2–3 objects, each rendered on its own as a
one-object scene (so its parts and sub-parts are complete, not cut by another object) and then moved rigidly
over ``n_frames`` frames: a constant translation towards the image centre plus a constant rotation about the
object's centroid. Parts and sub-parts move with their object (the whole layer is warped, textures included).
Objects are composited in a fixed depth order, so as they move they occlude one another more or less; an object
placed so that it would hide more than half of an earlier one on the first frame is drawn again.

Ground truth is exact at every level on every frame (the warped label layers, visible pixels after occlusion):
an object, part or sub-part is one DAVIS object when at least ``min_area`` pixels of it are visible on the first
frame; its id is its 1-based rank in drawing order within its level. Written in the DAVIS-2017 layout
(:mod:`unsamv2.datasets.davis2017`), one annotation folder per level, named like DAVIS's own extra annotation
sets::

    OUT/JPEGImages/480p/<seq>/00000.jpg ...            frames (JPEG, quality 95; "480p" is DAVIS's folder name)
    OUT/Annotations/480p/<seq>/00000.png ...           objects       (palette PNGs, id per pixel)
    OUT/Annotations_part/480p/<seq>/00000.png ...      parts
    OUT/Annotations_subpart/480p/<seq>/00000.png ...   sub-parts
    OUT/ImageSets/2017/val.txt                         sequence names (syn_video_000 …)

Sequence ``k`` has its own generator seeded by ``(seed, k)``. Every file is written atomically.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from unsamv2.datasets.davis2017 import VideoSequence, load_davis2017
from unsamv2.datasets.synthetic_scenes import LEVEL_NAMES, Scene, generate_scene
from unsamv2.io.atomic import atomic_output, atomic_write_text
from unsamv2.io.palette_png import write_index_png

__all__ = ["ANNOTATION_FOLDERS", "AnimatedSequence", "animate_sequence", "load_synthetic_video",
           "write_synthetic_video_dataset"]

#: Annotation folder of each level.
ANNOTATION_FOLDERS: dict[str, str] = {"object": "Annotations", "part": "Annotations_part",
                                      "subpart": "Annotations_subpart"}
_RESOLUTION = "480p"
_JPEG_QUALITY = 95


@dataclass
class AnimatedSequence:
    """Frames and per-level ground truth of one animated sequence."""

    frames: list[np.ndarray]  # (H, W, 3) uint8 RGB per frame
    labels: dict[str, list[np.ndarray]]  # level name → (H, W) uint8 object ids per frame


@dataclass
class _Layer:
    scene: Scene  # a one-object scene; its labels are the region ids of this object
    centre: tuple[float, float]  # (x, y) centroid on the first frame
    velocity: tuple[float, float]  # pixels per frame
    spin: float  # degrees per frame

    def transform(self, t: int) -> np.ndarray:
        m = cv2.getRotationMatrix2D(self.centre, self.spin * t, 1.0)
        m[0, 2] += self.velocity[0] * t
        m[1, 2] += self.velocity[1] * t
        return m


def _object_layer(rng: np.random.Generator, h: int, w: int, n_frames: int) -> _Layer | None:
    scene = generate_scene(rng, h, w, n_objects=(1, 1))
    mask = scene.labels > 0
    if not mask.any():
        return None
    ys, xs = np.nonzero(mask)
    cx, cy = float(xs.mean()), float(ys.mean())
    # Towards the centre (so objects meet and occlude each other), with some spread; about 12-30 % of the frame
    # side over the sequence.
    heading = math.atan2(h / 2 - cy, w / 2 - cx) + rng.uniform(-0.6, 0.6)
    speed = rng.uniform(0.12, 0.3) * min(h, w) / max(n_frames - 1, 1)
    spin = rng.uniform(15.0, 60.0) / max(n_frames - 1, 1) * (1 if rng.random() < 0.5 else -1)
    return _Layer(scene, (cx, cy), (speed * math.cos(heading), speed * math.sin(heading)), float(spin))


def _warp(layer: _Layer, t: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = layer.scene.labels.shape
    m = layer.transform(t)
    labels = cv2.warpAffine(layer.scene.labels.astype(np.float32), m, (w, h), flags=cv2.INTER_NEAREST,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(np.int32)
    image = cv2.warpAffine(layer.scene.image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                           borderValue=(0, 0, 0))
    return image, labels


def _regions_of_level(layer: _Layer, level: int) -> list[list[int]]:
    """Per region of ``level`` in this object: the region ids whose pixels are that region's."""
    return [layer.scene.descendants_and_self(r.region_id) for r in layer.scene.regions if r.level == level]


def animate_sequence(rng: np.random.Generator, n_frames: int, height: int, width: int,
                     n_objects: tuple[int, int] = (2, 3), min_area: int = 20) -> AnimatedSequence:
    """Render one animated sequence (module docstring)."""
    if n_frames < 3:
        raise ValueError(f"a sequence needs at least 3 frames (the first and last are not scored), got {n_frames}")
    background = generate_scene(rng, height, width, n_objects=(0, 0)).image
    layers: list[_Layer] = []
    for _ in range(int(rng.integers(n_objects[0], n_objects[1] + 1))):
        for _attempt in range(10):
            layer = _object_layer(rng, height, width, n_frames)
            if layer is None:
                continue
            # first-frame occlusion limit, as in the still scenes: earlier objects keep at least half
            new_mask = _warp(layer, 0)[1] > 0
            visible = _composite_object_ids(layers, 0, height, width)
            if all((visible == k + 1).sum() * 0.5 >= ((visible == k + 1) & new_mask).sum()
                   for k in range(len(layers))):
                layers.append(layer)
                break

    frames: list[np.ndarray] = []
    region_maps: list[np.ndarray] = []  # per frame: (layer index, region id) packed as layer * 10_000 + region
    for t in range(n_frames):
        frame = background.copy()
        regions = np.zeros((height, width), np.int64)
        for k, layer in enumerate(layers):
            image, labels = _warp(layer, t)
            inside = labels > 0
            frame[inside] = image[inside]
            regions[inside] = (k + 1) * 10_000 + labels[inside]
        frames.append(frame)
        region_maps.append(regions)

    gt: dict[str, list[np.ndarray]] = {}
    for name in ANNOTATION_FOLDERS:
        level = LEVEL_NAMES.index(name)
        members: list[np.ndarray] = []  # packed region ids of each candidate, in drawing order
        for k, layer in enumerate(layers):
            for ids in _regions_of_level(layer, level):
                members.append((k + 1) * 10_000 + np.asarray(ids, np.int64))
        kept = [ids for ids in members if np.isin(region_maps[0], ids).sum() >= min_area]
        if len(kept) > 254:
            raise ValueError(f"{len(kept)} {name} regions do not fit the 254 ids of a palette PNG")
        per_frame = []
        for regions in region_maps:
            out = np.zeros((height, width), np.uint8)
            for obj_id, ids in enumerate(kept, start=1):
                out[np.isin(regions, ids)] = obj_id
            per_frame.append(out)
        gt[name] = per_frame
    return AnimatedSequence(frames, gt)


def _composite_object_ids(layers: list[_Layer], t: int, height: int, width: int) -> np.ndarray:
    ids = np.zeros((height, width), np.int32)
    for k, layer in enumerate(layers):
        ids[_warp(layer, t)[1] > 0] = k + 1
    return ids


def write_synthetic_video_dataset(out_dir: str | Path, n_sequences: int, n_frames: int, seed: int = 0,
                                  image_size: tuple[int, int] = (128, 128), min_area: int = 20) -> Path:
    """Write ``n_sequences`` animated sequences of ``n_frames`` frames (module docstring); returns ``out_dir``."""
    if n_sequences < 1:
        raise ValueError(f"n_sequences must be >= 1, got {n_sequences}")
    h, w = int(image_size[0]), int(image_size[1])
    out = Path(out_dir)
    names = []
    for k in range(n_sequences):
        name = f"syn_video_{k:03d}"
        seq = animate_sequence(np.random.default_rng([seed, k]), n_frames, h, w, min_area=min_area)
        frames_dir = out / "JPEGImages" / _RESOLUTION / name
        frames_dir.mkdir(parents=True, exist_ok=True)
        for t, frame in enumerate(seq.frames):
            with atomic_output(frames_dir / f"{t:05d}.jpg") as tmp:
                Image.fromarray(frame).save(tmp, format="JPEG", quality=_JPEG_QUALITY)
        for level, folder in ANNOTATION_FOLDERS.items():
            ann_dir = out / folder / _RESOLUTION / name
            ann_dir.mkdir(parents=True, exist_ok=True)
            for t, labels in enumerate(seq.labels[level]):
                write_index_png(ann_dir / f"{t:05d}.png", labels)
        names.append(name)
    atomic_write_text(out / "ImageSets" / "2017" / "val.txt", "".join(f"{n}\n" for n in names))
    return out


def load_synthetic_video(root: Path, level: str = "object", max_sequences: int | None = None,
                         ) -> Iterator[VideoSequence]:
    """The written sequences with the ground truth of ``level`` (``object``, ``part`` or ``subpart``)."""
    if level not in ANNOTATION_FOLDERS:
        raise ValueError(f"synthetic_video: level must be one of {list(ANNOTATION_FOLDERS)}, got {level!r}")
    if not (Path(root) / "ImageSets" / "2017" / "val.txt").is_file():
        raise FileNotFoundError(f"synthetic video benchmark not found under {root} (run `unsamv2 synthetic-video`)")
    return load_davis2017(Path(root), subset="val", annotations=ANNOTATION_FOLDERS[level],
                          max_sequences=max_sequences)
