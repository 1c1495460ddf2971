"""Synthetic hierarchical scenes: objects made of parts made of sub-parts, with exact ground truth.

The offline demo and the tests need images whose whole/part/sub-part structure is known, so that the pipeline
can be run and scored without any download. Each scene:

* a textured background (gradient, noise, wide stripes or a coarse checker);
* 2–4 **objects** (level 0), each an ellipse or a star-shaped polygon, drawn in order so that later objects
  **occlude** earlier ones (a placement that would hide more than half of an earlier object is retried);
* each object split into 2–4 **parts** (level 1) that tile it (a Voronoi partition of the body with
  Lloyd-relaxed seeds, so parts are substantial, convex-ish pieces). A click inside a part is therefore inside
  the object too — the part-vs-whole ambiguity granularity is meant to resolve;
* some parts split again into 2 **sub-parts** (level 2, tiling the part) or carrying one inner blob
  (one sub-part that does not tile the part);
* with ``depth`` ≥ 4 (3 = the three levels above, the default), a region of level 2 … ``depth − 2`` carries an
  **inner region** one level down with probability :data:`INNER_REGION_PROBABILITY` (an elliptic spot deep inside
  it, when it is thick enough): a click there lies in ``depth`` nested regions, more than SAM-2's three masks can
  cover one level each. Scenes of depth 3 are exactly those of earlier versions (no extra random draws);
* every leaf region painted with its own colour and texture (flat, stripes, checker, gradient, noise). Sibling
  colours are sometimes close to each other (about a third of the time), so parts are not always trivially
  separable by colour.

Ground truth = **visible** pixels after occlusion. Per object, the hierarchy (object + kept parts + kept
sub-parts) is scored with the official granularity formula (:func:`unsamv2.core.granularity
.granularity_scores`, areas = visible pixel counts, parts listed before the object as the official code does).
A region is dropped when fewer than ``min_area`` pixels of it are visible, or when its visible mask equals the
mask of its nearest kept ancestor (a duplicate says nothing new); the children of a dropped region are
re-attached to that ancestor and ``level`` is the depth in the kept tree.

Output of :func:`write_synthetic_dataset` (all files written atomically, byte-identical for the same seed)::

    OUT/images/syn_000000.png ...            RGB images
    OUT/annotations/syn_000000.json ...      pseudo-label documents (:mod:`unsamv2.io.pseudo_labels`: "image"
                                             dict, COCO RLE, bbox, area, granularity, instance_id, is_part,
                                             is_divide, is_conquer) plus "level" (0 … depth − 1) and
                                             "parent_id" (annotation id or null)
    OUT/gt_coco.json                         COCO ground truth of all images (category level + 1, named by
                                             LEVEL_NAMES: 1 object, 2 part, 3 sub-part, 4 sub-sub-part …;
                                             ids unique across the file)

Image ``k`` gets id ``k`` (its position in the sorted file list) and its own generator seeded by ``(seed, k)``,
so it does not depend on how many images are written. The benchmark loader of a written set (dataset
``synthetic``) is :mod:`unsamv2.datasets.synthetic`.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from unsamv2.core.granularity import granularity_scores
from unsamv2.io.atomic import atomic_output, atomic_write_json
from unsamv2.io.masks import encode_rle, mask_bbox_xywh
from unsamv2.io.pseudo_labels import make_document, write_document

__all__ = [
    "DEFAULT_DEPTH",
    "INNER_REGION_PROBABILITY",
    "LEVEL_NAMES",
    "MAX_DEPTH",
    "Region",
    "Scene",
    "generate_scene",
    "scene_annotations",
    "write_synthetic_dataset",
]

#: Names of the annotation levels 0, 1, 2, … (``gt_coco.json`` category ``level + 1``).
LEVEL_NAMES: tuple[str, ...] = ("object", "part", "subpart", "subsubpart", "subsubsubpart")
#: Levels of a scene: object, part, sub-part (the scenes of earlier versions); at most one level per name.
DEFAULT_DEPTH = 3
MAX_DEPTH = len(LEVEL_NAMES)
#: Chance that a region of level 2 … depth − 2 carries an inner region one level down (scenes of depth ≥ 4).
INNER_REGION_PROBABILITY = 0.7
# A fixed timestamp keeps the files byte-identical across runs (Snakemake and tests compare them).
_DATE = "2025-01-01 00:00:00"


@dataclass(frozen=True)
class Region:
    """One node of a scene hierarchy. ``region_id`` ≥ 1 is the value it takes in ``Scene.labels``."""

    region_id: int
    level: int  # 0 object, 1 part, 2 sub-part, 3 … inner regions (as generated, before any region is dropped)
    parent: int | None  # region_id of the parent region
    object_index: int  # drawing order of the object it belongs to


@dataclass
class Scene:
    """A rendered scene: the image, the finest visible region at each pixel, and the hierarchy."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    labels: np.ndarray  # (H, W) int32, 0 = background, else the region_id of the finest region visible there
    regions: list[Region] = field(default_factory=list)

    def children(self, region_id: int) -> list[Region]:
        return [r for r in self.regions if r.parent == region_id]

    def descendants_and_self(self, region_id: int) -> list[int]:
        out = [region_id]
        for child in self.children(region_id):
            out.extend(self.descendants_and_self(child.region_id))
        return out

    def visible_mask(self, region_id: int) -> np.ndarray:
        """Pixels where this region (or one of its sub-regions) is the visible surface."""
        return np.isin(self.labels, self.descendants_and_self(region_id))


# --------------------------------------------------------------------------------------------- rendering


def _clip_colour(c: np.ndarray) -> np.ndarray:
    return np.clip(c, 15.0, 240.0)


def _random_direction(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / max(float(np.linalg.norm(v)), 1e-6)


def _child_colour(parent: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A colour for a sub-region: about a third of the time close to the parent's (hard to separate)."""
    if rng.random() < 0.35:
        return _clip_colour(parent + rng.uniform(-18.0, 18.0, size=3))
    return _clip_colour(parent + _random_direction(rng) * rng.uniform(50.0, 100.0))


@dataclass(frozen=True)
class _Texture:
    kind: str  # flat | stripes | checker | gradient | noise
    c1: np.ndarray
    c2: np.ndarray
    angle: float
    period: float


def _random_texture(colour: np.ndarray, rng: np.random.Generator, coarse: bool = False) -> _Texture:
    kinds = ("gradient", "noise", "stripes", "checker") if coarse else ("flat", "stripes", "checker", "gradient",
                                                                        "noise")
    kind = str(rng.choice(kinds))
    c2 = _clip_colour(colour + _random_direction(rng) * rng.uniform(25.0, 60.0))
    period = rng.uniform(20.0, 40.0) if coarse else rng.uniform(5.0, 14.0)
    return _Texture(kind, colour, c2, float(rng.uniform(0.0, math.pi)), float(period))


def _paint(image: np.ndarray, region: np.ndarray, tex: _Texture, rng: np.random.Generator) -> None:
    """Fill the pixels of ``region`` (bool (H, W)) of a float image with a texture."""
    n = int(np.count_nonzero(region))
    if n == 0:
        return
    if tex.kind == "flat":
        t = np.zeros(n, np.float32)
    elif tex.kind == "noise":  # independent per-pixel blend between the two colours
        t = rng.random(n, dtype=np.float32)
    else:
        ys, xs = np.nonzero(region)
        if tex.kind == "checker":
            q = round(tex.period)
            t = (((ys // q) + (xs // q)) % 2).astype(np.float32)
        else:
            u = xs.astype(np.float32) * math.cos(tex.angle) + ys.astype(np.float32) * math.sin(tex.angle)
            if tex.kind == "stripes":
                t = (np.floor(u / tex.period) % 2).astype(np.float32)
            else:  # gradient across the region
                t = (u - u.min()) / max(float(u.max() - u.min()), 1.0)
    c1, c2 = tex.c1.astype(np.float32), tex.c2.astype(np.float32)
    colours = c1[None, :] + t[:, None] * (c2 - c1)[None, :]
    colours += 3.0 * rng.standard_normal(colours.shape, dtype=np.float32)  # mild sensor-like noise everywhere
    image[region] = colours


def _body_mask(h: int, w: int, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    """An ellipse or a star-shaped polygon, centred well inside the image; ``scale`` multiplies its size."""
    canvas = np.zeros((h, w), np.uint8)
    side = min(h, w) * scale
    cx, cy = rng.uniform(0.18, 0.82) * w, rng.uniform(0.18, 0.82) * h
    if rng.random() < 0.5:
        a = rng.uniform(0.15, 0.28) * side
        b = a * rng.uniform(0.55, 1.0)
        cv2.ellipse(canvas, (round(cx), round(cy)), (max(2, round(a)), max(2, round(b))),
                    float(rng.uniform(0.0, 180.0)), 0.0, 360.0, 1, thickness=-1)
    else:
        n = int(rng.integers(5, 10))
        radius = rng.uniform(0.14, 0.26) * side
        angles = np.sort(rng.uniform(0.0, 2 * math.pi, size=n))
        radii = radius * rng.uniform(0.65, 1.0, size=n)
        pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
        cv2.fillPoly(canvas, [np.round(pts).astype(np.int32)], 1)
    return canvas.astype(bool)


def _voronoi_split(mask: np.ndarray, k: int, rng: np.random.Generator, min_fraction: float) -> list[np.ndarray]:
    """Split ``mask`` into ``k`` cells of nearest Lloyd-relaxed seeds; every cell ≥ ``min_fraction`` of the area.

    Returns an empty list when no balanced split is found in a few tries (the caller keeps the region whole).
    """
    coords = np.argwhere(mask).astype(np.float32)
    if coords.shape[0] < k * 8:
        return []
    for _ in range(6):
        seeds = coords[rng.choice(coords.shape[0], size=k, replace=False)]
        for _ in range(3):  # Lloyd iterations: move seeds to cell centroids → balanced, convex-ish cells
            assign = ((coords[:, None, :] - seeds[None]) ** 2).sum(-1).argmin(1)
            seeds = np.stack([coords[assign == j].mean(0) if np.any(assign == j) else seeds[j] for j in range(k)])
        assign = ((coords[:, None, :] - seeds[None]) ** 2).sum(-1).argmin(1)
        counts = np.bincount(assign, minlength=k)
        if counts.min() >= min_fraction * coords.shape[0]:
            cells = []
            for j in range(k):
                cell = np.zeros_like(mask)
                pts = coords[assign == j].astype(np.int64)
                cell[pts[:, 0], pts[:, 1]] = True
                cells.append(cell)
            return cells
    return []


def _inner_blob(part: np.ndarray, rng: np.random.Generator, min_peak: float = 4.0,
                size: tuple[float, float] = (0.45, 0.8)) -> np.ndarray | None:
    """An elliptic spot deep inside ``part`` (clipped to it; semi-axis ``size`` × the depth of the part's deepest
    pixel), or None when the part is too thin (that depth is below ``min_peak`` pixels)."""
    dist = cv2.distanceTransform(np.pad(part.astype(np.uint8), 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
    peak = float(dist.max())
    if peak < min_peak:
        return None
    cy, cx = np.unravel_index(int(np.argmax(dist)), dist.shape)
    canvas = np.zeros(part.shape, np.uint8)
    a = peak * rng.uniform(*size)
    b = a * rng.uniform(0.5, 1.0)
    cv2.ellipse(canvas, (int(cx), int(cy)), (max(2, round(a)), max(2, round(b))), float(rng.uniform(0, 180)),
                0.0, 360.0, 1, thickness=-1)
    blob = canvas.astype(bool) & part
    return blob if blob.sum() >= 12 else None


def _object_pixels(labels: np.ndarray, object_regions: Sequence[int]) -> np.ndarray:
    return np.isin(labels, object_regions)


@dataclass(frozen=True)
class _Profile:
    body_scale: float  # object size relative to the depth-3 scenes
    split_probability: float  # chance that a part is split into sub-parts (or carries an inner blob)


# Depth 3: the scenes of earlier versions. Deeper scenes need bigger regions, or the inner levels shrink to a few
# pixels at a 128-px model input (at depth 4 with the depth-3 sizes the median level-3 region had 92 pixels of 256²).
_DEPTH_3 = _Profile(body_scale=1.0, split_probability=0.45)
_DEEP = _Profile(body_scale=1.3, split_probability=0.8)


def generate_scene(
    rng: np.random.Generator,
    height: int = 256,
    width: int = 256,
    n_objects: tuple[int, int] = (2, 4),
    depth: int = DEFAULT_DEPTH,
) -> Scene:
    """Render one scene with ``n_objects[0]..n_objects[1]`` objects and ``depth`` levels (module docstring)."""
    if height < 32 or width < 32:
        raise ValueError(f"synthetic scenes need at least 32×32 pixels, got {height}×{width}")
    if not DEFAULT_DEPTH <= depth <= MAX_DEPTH:
        raise ValueError(f"synthetic scene depth must be in {DEFAULT_DEPTH}..{MAX_DEPTH}, got {depth}")
    profile = _DEPTH_3 if depth == DEFAULT_DEPTH else _DEEP
    image = np.zeros((height, width, 3), np.float32)
    _paint(image, np.ones((height, width), bool), _random_texture(rng.uniform(30, 225, 3), rng, coarse=True), rng)
    labels = np.zeros((height, width), np.int32)
    regions: list[Region] = []
    leaves_of_object: list[list[int]] = []  # region ids that may appear in `labels`, per object
    next_id = 1

    for obj_index in range(int(rng.integers(n_objects[0], n_objects[1] + 1))):
        body = None
        for _ in range(10):
            candidate = _body_mask(height, width, rng, profile.body_scale)
            if candidate.sum() < 0.01 * height * width:
                continue
            # Limit occlusion: an earlier object must keep at least half of what is visible of it now.
            too_hidden = False
            for leaves in leaves_of_object:
                visible = _object_pixels(labels, leaves)
                n_visible = int(visible.sum())
                if n_visible and (visible & candidate).sum() > 0.5 * n_visible:
                    too_hidden = True
                    break
            if not too_hidden:
                body = candidate
                break
        if body is None:
            continue

        base = rng.uniform(30.0, 225.0, size=3)
        object_id = next_id
        next_id += 1
        regions.append(Region(object_id, 0, None, obj_index))
        parts = _voronoi_split(body, int(rng.integers(2, 5)), rng, min_fraction=0.12) or [body]
        leaf_ids: list[int] = []
        for part in parts:
            part_id = next_id
            next_id += 1
            regions.append(Region(part_id, 1, object_id, obj_index))
            part_colour = _child_colour(base, rng)
            labels[part] = part_id
            _paint(image, part, _random_texture(part_colour, rng), rng)
            leaf_ids.append(part_id)
            if rng.random() >= profile.split_probability:
                continue
            if rng.random() < 0.5:
                subs = _voronoi_split(part, 2, rng, min_fraction=0.2)
            else:
                blob = _inner_blob(part, rng)
                subs = [blob] if blob is not None else []
            for sub in subs:
                sub_id = next_id
                next_id += 1
                regions.append(Region(sub_id, 2, part_id, obj_index))
                labels[sub] = sub_id
                sub_colour = _child_colour(part_colour, rng)
                _paint(image, sub, _random_texture(sub_colour, rng), rng)
                leaf_ids.append(sub_id)
                # Deeper levels: a chain of inner regions (none at depth 3, so no extra draws there).
                inner_mask, inner_parent, inner_colour = sub, sub_id, sub_colour
                for level in range(3, depth):
                    if rng.random() >= INNER_REGION_PROBABILITY:
                        break
                    inner = _inner_blob(inner_mask, rng, min_peak=5.0, size=(0.6, 0.85))
                    if inner is None:
                        break
                    inner_id = next_id
                    next_id += 1
                    regions.append(Region(inner_id, level, inner_parent, obj_index))
                    labels[inner] = inner_id
                    inner_colour = _child_colour(inner_colour, rng)
                    _paint(image, inner, _random_texture(inner_colour, rng), rng)
                    leaf_ids.append(inner_id)
                    inner_mask, inner_parent = inner, inner_id
        leaves_of_object.append(leaf_ids)

    return Scene(np.clip(np.rint(image), 0, 255).astype(np.uint8), labels, regions)


# --------------------------------------------------------------------------------------------- annotations


@dataclass(frozen=True)
class _Kept:
    region: Region
    mask: np.ndarray
    level: int
    parent: int | None  # region_id of the nearest kept ancestor


def _kept_hierarchy(scene: Scene, root: Region, min_area: int) -> list[_Kept]:
    """Object + the regions below it that survive the visibility rules, parents before children."""
    root_mask = scene.visible_mask(root.region_id)
    if int(root_mask.sum()) < min_area:
        return []
    kept = [_Kept(root, root_mask, 0, None)]

    def walk(region: Region, anchor: _Kept) -> None:
        for child in scene.children(region.region_id):
            mask = scene.visible_mask(child.region_id)
            if int(mask.sum()) >= min_area and not np.array_equal(mask, anchor.mask):
                node = _Kept(child, mask, anchor.level + 1, anchor.region.region_id)
                kept.append(node)
                walk(child, node)
            else:
                walk(child, anchor)  # dropped: its children hang on the nearest kept ancestor

    walk(root, kept[0])
    return kept


def scene_annotations(scene: Scene, image_id: int, min_area: int = 20) -> list[dict[str, Any]]:
    """Pseudo-label records (:mod:`unsamv2.io.pseudo_labels`) of one scene, plus ``level`` and ``parent_id``.

    Per object: its parts/sub-parts (level order, then generation order) followed by the object itself, as the
    official writer lists parts before their instance. Ids are 1-based within the image.
    """
    h, w = scene.labels.shape
    anns: list[dict[str, Any]] = []
    objects = [r for r in scene.regions if r.level == 0]
    instance_index = 0
    for obj in objects:
        kept = _kept_hierarchy(scene, obj, min_area)
        if not kept:
            continue
        ordered = sorted(kept[1:], key=lambda k: (k.level, k.region.region_id)) + [kept[0]]
        areas = np.array([int(k.mask.sum()) for k in ordered], dtype=np.float64)
        scores = granularity_scores(areas)
        ann_id = {k.region.region_id: len(anns) + 1 + i for i, k in enumerate(ordered)}
        for k, area, g in zip(ordered, areas, scores, strict=True):
            anns.append({
                "id": ann_id[k.region.region_id],
                "image_id": image_id,
                "category_id": 1,
                "iscrowd": 0,
                "area": int(area),
                "bbox": mask_bbox_xywh(k.mask),
                "segmentation": encode_rle(k.mask),
                "width": w,
                "height": h,
                "is_divide": k.level == 0,
                "granularity": float(g),
                "instance_id": instance_index,
                "is_part": k.level > 0,
                "is_conquer": False,
                "level": k.level,
                "parent_id": None if k.parent is None else ann_id[k.parent],
            })
        instance_index += 1
    return anns


def _image_document(image_id: int, file_name: str, hw: tuple[int, int], anns: list[dict[str, Any]]) -> dict:
    return make_document(image_id, file_name, hw, anns,
                         description="unsamv2 synthetic hierarchical scenes (exact ground truth)", date=_DATE)


def write_synthetic_dataset(
    out_dir: str | Path,
    n_images: int,
    seed: int = 0,
    image_size: tuple[int, int] = (256, 256),
    min_area: int = 20,
    depth: int = DEFAULT_DEPTH,
) -> Path:
    """Write ``n_images`` scenes of ``image_size = (H, W)`` and ``depth`` levels under ``out_dir`` (layout in the
    module docstring).

    Returns ``out_dir``. Deterministic for a given ``(seed, image_size, min_area, depth)``.
    """
    if n_images < 1:
        raise ValueError(f"n_images must be >= 1, got {n_images}")
    if not DEFAULT_DEPTH <= depth <= MAX_DEPTH:
        raise ValueError(f"synthetic scene depth must be in {DEFAULT_DEPTH}..{MAX_DEPTH}, got {depth}")
    h, w = int(image_size[0]), int(image_size[1])
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    coco_images: list[dict[str, Any]] = []
    coco_anns: list[dict[str, Any]] = []
    for k in range(n_images):
        stem = f"syn_{k:06d}"
        scene = generate_scene(np.random.default_rng([seed, k]), h, w, depth=depth)
        anns = scene_annotations(scene, k, min_area=min_area)
        with atomic_output(out / "images" / f"{stem}.png") as tmp:
            if not cv2.imwrite(str(tmp), np.ascontiguousarray(scene.image[:, :, ::-1])):  # OpenCV wants BGR
                raise OSError(f"could not write {out / 'images' / f'{stem}.png'}")
        write_document(out / "annotations" / f"{stem}.json", _image_document(k, f"{stem}.png", (h, w), anns))
        coco_images.append({"id": k, "file_name": f"{stem}.png", "width": w, "height": h})
        offset = len(coco_anns)
        for a in anns:
            coco_anns.append({
                "id": offset + a["id"],
                "image_id": k,
                "category_id": a["level"] + 1,
                "segmentation": a["segmentation"],
                "area": a["area"],
                "bbox": a["bbox"],
                "iscrowd": 0,
                "granularity": a["granularity"],
                "instance_id": a["instance_id"],
                "level": a["level"],
                "parent_id": None if a["parent_id"] is None else offset + a["parent_id"],
            })
    atomic_write_json(out / "gt_coco.json", {
        "info": {"description": "unsamv2 synthetic hierarchical scenes", "version": "1.0", "seed": seed,
                 "date_created": _DATE, **({"depth": depth} if depth != DEFAULT_DEPTH else {})},
        "images": coco_images,
        "annotations": coco_anns,
        "categories": [{"id": i + 1, "name": name, "supercategory": "fg"}
                       for i, name in enumerate(LEVEL_NAMES[:depth])],
    })
    return out
