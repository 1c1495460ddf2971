"""Whole-image benchmarks of the paper's Table 3, each converted to one class-agnostic COCO ground truth.

``prepare_whole_image(name, root)`` downloads what can be downloaded into ``root/_downloads``, extracts it into
``root``, checks the files the user must supply (an error names the file and where to get it), converts the
dataset's own annotations and writes ``root/gt.json`` atomically. That file is what the evaluation reads:

* ``images``: ``id``, ``file_name`` (relative to the folder of ``gt.json``), ``height``, ``width``, sorted by id;
* ``annotations``: ``id``, ``image_id``, ``category_id`` = 1, ``segmentation`` (COCO RLE or polygons, as the
  source has it), ``area``, ``bbox``, ``iscrowd`` (0 unless the source marks a crowd region);
* ``categories``: one, ``{"id": 1, "name": "object"}`` — AR@1000 is class-agnostic (``useCats = 0``).

The benchmarks (paper §4.2; ``../shared/spec/method.md`` §5.2, ``anchors.md`` §D):

==========  ==================================================================================================
coco        COCO val2017, 5,000 images: ``val2017/`` + ``annotations/instances_val2017.json``
lvis        LVIS v1 val: ``lvis_v1_val.json``; its images come from COCO **train2017 and val2017**
            (``coco_url``), looked up under ``train2017/`` and ``val2017/``
ade20k      ADE20K instance val, 2,000 images: ``ADEChallengeData2016/images/validation/*.jpg`` and
            ``annotations_instance/validation/*.png`` (R = class, G = instance id, 0 = void), converted as
            Mask2Former's ``prepare_ade20k_ins_seg.py``
entityseg   EntitySeg val, low resolution, 1,314 images: ``entityseg_val_lr.json`` + ``images_lr/`` (user-supplied:
            the Adobe Research licence makes the user fetch the images)
sa1b        SA-1B, 1,000 held-out images of a tar not used for training: ``raw/<id>.jpg`` + ``raw/<id>.json``;
            a versioned sorted id list ``sa1b_ids.txt`` (minus the run's training images) fixes the subset
synthetic   the project's held-out synthetic scenes (every level of every object is a GT mask)
==========  ==================================================================================================

Upstream publishes no checksum for any of these files; the sizes known from the download pages are recorded in
each spec's ``note``.
"""
from __future__ import annotations

import json
import logging
import os
import re
import tarfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unsamv2.io.atomic import atomic_output, atomic_write_json
from unsamv2.io.masks import encode_rle, mask_bbox_xywh

__all__ = [
    "WholeImageBenchmark",
    "class_agnostic",
    "convert_ade20k",
    "convert_coco",
    "convert_entityseg",
    "convert_lvis",
    "convert_sa1b",
    "convert_synthetic",
    "extract_sa1b_holdout",
    "get_whole_image_benchmark",
    "prepare_whole_image",
    "whole_image_names",
]

log = logging.getLogger(__name__)

GT_FILE = "gt.json"
_CATEGORY = {"id": 1, "name": "object", "supercategory": "object"}


@dataclass(frozen=True)
class UserPath:
    """A file or folder under the benchmark's root that the user must put in place by hand."""

    relative_path: str
    what: str
    where_to_get: str


@dataclass(frozen=True)
class WholeImageBenchmark:
    """One Table 3 benchmark: how its files are obtained and converted."""

    name: str
    display_name: str
    n_images: int  # as published; the workflow plans its shards with it (the merge checks the real count)
    convert: Callable[..., dict[str, Any]]  # convert(root, **options) -> class-agnostic GT (relative file names)
    description: str
    downloads: tuple[Mapping[str, Any], ...] = ()
    user_files: tuple[UserPath, ...] = ()
    default_options: Mapping[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ helpers


def class_agnostic(images: Iterable[Mapping[str, Any]], annotations: Iterable[Mapping[str, Any]],
                   description: str) -> dict[str, Any]:
    """A class-agnostic COCO GT: the given images (sorted by id) and annotations with category 1, new unique ids,
    ``iscrowd`` kept (0 when absent), ``area`` and ``bbox`` kept when present."""
    imgs = sorted(({"id": im["id"], "file_name": im["file_name"], "height": int(im["height"]),
                    "width": int(im["width"])} for im in images), key=lambda im: im["id"])
    known = {im["id"] for im in imgs}
    anns = []
    for a in annotations:
        if a["image_id"] not in known:
            continue
        ann = {"id": len(anns) + 1, "image_id": a["image_id"], "category_id": 1, "segmentation": a["segmentation"],
               "iscrowd": int(a.get("iscrowd", 0) or 0)}
        for key in ("area", "bbox"):
            if key in a:
                ann[key] = a[key]
        anns.append(ann)
    return {"info": {"description": description, "class_agnostic": True}, "images": imgs, "annotations": anns,
            "categories": [dict(_CATEGORY)]}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc


def _require(path: Path, what: str, where_to_get: str) -> Path:
    from unsamv2.download import require_user_file

    return require_user_file(path, what, where_to_get)


def _first_existing(candidates: Sequence[Path]) -> Path | None:
    return next((c for c in candidates if c.exists()), None)


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        return im.height, im.width


# ------------------------------------------------------------------------------------------------ converters


def convert_coco(root: Path, annotations: str = "annotations/instances_val2017.json",
                 images_dir: str = "val2017") -> dict[str, Any]:
    """COCO val2017 (or any COCO instances file): every annotation, classes dropped, crowd regions kept as crowd."""
    data = _read_json(_require(root / annotations, "COCO instances annotations", "run the prepare job (it "
                               "downloads annotations_trainval2017.zip from cocodataset.org)"))
    images = [{**im, "file_name": f"{images_dir}/{im['file_name']}"} for im in data["images"]]
    return class_agnostic(images, data["annotations"], f"COCO {annotations}, class-agnostic")


_COCO_URL = re.compile(r"(train2017|val2017)/([^/]+)$")


def convert_lvis(root: Path, annotations: str = "lvis_v1_val.json") -> dict[str, Any]:
    """LVIS v1 val: images are COCO 2017 train **and** val images; ``coco_url`` says which folder holds each."""
    data = _read_json(_require(root / annotations, "LVIS v1 val annotations", "run the prepare job (it downloads "
                               "lvis_v1_val.json.zip from dl.fbaipublicfiles.com/LVIS)"))
    images = []
    for im in data["images"]:
        match = _COCO_URL.search(str(im.get("coco_url", "")))
        if match is None:
            raise ValueError(f"{root / annotations}: image {im['id']} has no COCO url ({im.get('coco_url')!r})")
        images.append({**im, "file_name": f"{match.group(1)}/{match.group(2)}"})
    return class_agnostic(images, data["annotations"], f"LVIS {annotations}, class-agnostic")


def _ade_dirs(root: Path) -> tuple[Path, Path]:
    base = root / "ADEChallengeData2016"
    images = base / "images" / "validation"
    instances = _first_existing([base / "annotations_instance" / "validation",
                                 root / "annotations_instance" / "validation"])
    _require(images, "ADE20K validation images (ADEChallengeData2016/images/validation)",
             "run the prepare job (it downloads ADEChallengeData2016.zip from data.csail.mit.edu)")
    if instances is None:
        _require(base / "annotations_instance" / "validation", "ADE20K instance annotations (annotations_instance/"
                 "validation/*.png)", "run the prepare job (it downloads annotations_instance.tar from "
                 "sceneparsing.csail.mit.edu)")
    assert instances is not None
    return images, instances


def convert_ade20k(root: Path) -> dict[str, Any]:
    """ADE20K instance val: per image PNG, G channel = instance id (0 = void), R = class (must be one per
    instance, as Mask2Former's converter asserts). Image ids 1..N in file-name order."""
    from PIL import Image

    images_dir, instance_dir = _ade_dirs(root)
    images, anns = [], []
    for index, path in enumerate(sorted(images_dir.glob("*.jpg")), start=1):
        label_path = instance_dir / f"{path.stem}.png"
        with Image.open(label_path) as im:
            labels = np.asarray(im)
        if labels.ndim != 3 or labels.dtype != np.uint8:
            raise ValueError(f"{label_path}: expected an RGB uint8 instance PNG, got {labels.shape} {labels.dtype}")
        h, w = labels.shape[:2]
        if _image_size(path) != (h, w):
            raise ValueError(f"{label_path}: size {(h, w)} differs from its image {path} {_image_size(path)}")
        images.append({"id": index, "file_name": os.path.relpath(path, root), "height": h, "width": w})
        classes, instances = labels[..., 0], labels[..., 1]
        for instance_id in np.unique(instances):
            if instance_id == 0:
                continue
            mask = instances == instance_id
            if len(np.unique(classes[mask])) != 1:
                raise ValueError(f"{label_path}: instance {instance_id} spans several classes")
            anns.append({"image_id": index, "segmentation": encode_rle(mask), "area": int(mask.sum()),
                         "bbox": mask_bbox_xywh(mask), "iscrowd": 0})
    if not images:
        raise FileNotFoundError(f"no ADE20K validation images (*.jpg) under {images_dir}")
    return class_agnostic(images, anns, "ADE20K instance val (annotations_instance), class-agnostic")


_ENTITYSEG_WHERE = (
    "download entityseg_val_lr.json from the v1.0 release of https://github.com/adobe-research/EntitySeg-Dataset "
    "and fetch the low-resolution images yourself (the Adobe Research License, non-commercial, requires it; "
    "urls in its url.json, or the mirror https://github.com/qqlu1992/Adobe_EntitySeg), into <root>/images_lr/"
)


def convert_entityseg(root: Path, annotations: str = "entityseg_val_lr.json",
                      images_dir: str = "images_lr") -> dict[str, Any]:
    """EntitySeg val low-res: annotations are already class-agnostic COCO RLE; each image is looked up as
    ``images_lr/<file_name>``, ``images_lr/<basename>`` or ``images_lr/<id>.jpg`` (UnSAM's naming)."""
    data = _read_json(_require(root / annotations, "EntitySeg val annotations (low resolution)", _ENTITYSEG_WHERE))
    folder = _require(root / images_dir, "EntitySeg low-resolution images", _ENTITYSEG_WHERE)
    images, missing = [], []
    for im in data["images"]:
        name = str(im.get("file_name", ""))
        found = _first_existing([folder / name, folder / Path(name).name, folder / f"{im['id']}.jpg"])
        if found is None:
            missing.append(name or str(im["id"]))
            continue
        images.append({**im, "file_name": os.path.relpath(found, root)})
    if missing:
        raise FileNotFoundError(f"{len(missing)} EntitySeg image(s) missing under {folder}, e.g. {missing[:3]}; "
                                + _ENTITYSEG_WHERE)
    return class_agnostic(images, data["annotations"], f"EntitySeg {annotations}, class-agnostic")


def extract_sa1b_holdout(tar_path: str | Path, out_dir: str | Path) -> int:
    """Extract the ``.jpg`` and ``.json`` members of an SA-1B tar into ``out_dir`` (each file written atomically,
    existing ones kept: safe to rerun). Returns the number of images."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    with tarfile.open(tar_path) as tar:
        for member in tar:
            name = Path(member.name).name
            if not member.isfile() or Path(name).suffix.lower() not in (".jpg", ".json"):
                continue
            dst = out / name
            if not dst.exists():
                src = tar.extractfile(member)
                assert src is not None
                with atomic_output(dst) as tmp:
                    tmp.write_bytes(src.read())
            n += name.lower().endswith(".jpg")
    return n


def _training_stems(image_list: str | Path | None) -> set[str]:
    """Stems of the run's training images (``images.txt``: ``<id>\\t<path>``) — excluded from the held-out set."""
    if image_list is None:
        return set()
    stems = set()
    for line in Path(image_list).read_text().splitlines():
        if line.strip():
            stems.add(Path(line.split("\t")[-1]).stem)
    return stems


def convert_sa1b(root: Path, num_images: int = 1000, raw_dir: str = "raw", exclude_image_list: str | None = None,
                 id_list: str | None = None) -> dict[str, Any]:
    """SA-1B held-out images: the first ``num_images`` ids in sorted order under ``root/raw`` (SA-1B per-image
    JSON + JPEG), minus the run's training images, written as the versioned list ``root/sa1b_ids.txt``; or the
    ids of ``id_list``. Every annotation of an image is a GT mask."""
    from unsamv2.datasets.sa1b import excluded_ids, find_layout, make_id_list, write_id_list
    from unsamv2.io.images import read_id_list

    source = _require(root / raw_dir, "SA-1B held-out images and JSONs", "the workflow extracts them from the tar "
                      "whole_image.sa1b_tar, fetched with your SA-1B links file (accept the licence at "
                      "https://ai.meta.com/datasets/segment-anything-downloads/ and save it as sa1b.links_file)")
    images_dir, ann_dir = find_layout(source)
    if id_list is not None:
        ids = read_id_list(id_list)
    else:
        exclude = _training_stems(exclude_image_list)
        ids = make_id_list(source, num_images=num_images, exclude_ids=excluded_ids(exclude))
        rule = f"first {num_images} sorted ids under {raw_dir}/" + (
            f", excluding the {len(exclude)} training images of {exclude_image_list}" if exclude else "")
        write_id_list(root / "sa1b_ids.txt", ids, rule=rule)
    images, anns = [], []
    for index, stem in enumerate(ids, start=1):
        record = _read_json(ann_dir / f"{stem}.json")
        info = record["image"]
        images.append({"id": index, "file_name": os.path.relpath(images_dir / f"{stem}.jpg", root),
                       "height": info["height"], "width": info["width"], "sa1b_id": stem})
        anns.extend({**a, "image_id": index} for a in record["annotations"])
    gt = class_agnostic(images, anns, f"SA-1B held-out ({len(ids)} images), class-agnostic")
    stem_of = {im["id"]: im["sa1b_id"] for im in images}
    for im in gt["images"]:
        im["sa1b_id"] = stem_of[im["id"]]
    return gt


def convert_synthetic(root: Path, source: str) -> dict[str, Any]:
    """The synthetic benchmark written by ``unsamv2 synthetic`` (``source``): its ``gt_coco.json`` holds every
    object, part and sub-part; file names are made relative to ``root``."""
    src = Path(source)
    data = _read_json(_require(src / "gt_coco.json", "synthetic scenes' ground truth", "run `unsamv2 synthetic`"))
    images = [{**im, "file_name": os.path.relpath(src / "images" / im["file_name"], root)} for im in data["images"]]
    return class_agnostic(images, data["annotations"], "synthetic hierarchical scenes, every level, class-agnostic")


# ------------------------------------------------------------------------------------------------ registry

_REGISTRY: dict[str, WholeImageBenchmark] = {}


def register_whole_image(spec: WholeImageBenchmark, replace: bool = False) -> None:
    if spec.name in _REGISTRY and not replace:
        raise ValueError(f"whole-image benchmark {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec


def get_whole_image_benchmark(name: str) -> WholeImageBenchmark:
    key = name.strip().lower().replace("-", "").replace("_", "")
    if key not in _REGISTRY:
        raise ValueError(f"unknown whole-image benchmark {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[key]


def whole_image_names() -> list[str]:
    return sorted(_REGISTRY)


def prepare_whole_image(name: str, root: str | Path, **options: Any) -> Path:
    """Download/extract/check the benchmark's files under ``root``, convert, write ``root/gt.json``; return it."""
    from unsamv2.datasets.registry import extract_archive
    from unsamv2.download import download_from_spec

    spec = get_whole_image_benchmark(name)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for item in spec.downloads:
        archive = download_from_spec(item, root / "_downloads")
        marker = root / f".extracted-{archive.name}"
        if not marker.exists():
            log.info("extracting %s into %s", archive, root)
            extract_archive(archive, root)
            marker.write_text(f"{archive.name}\n")
    for user_file in spec.user_files:
        _require(root / user_file.relative_path, user_file.what, user_file.where_to_get)
    gt = spec.convert(root, **{**spec.default_options, **options})
    log.info("%s: %d images, %d masks", spec.display_name, len(gt["images"]), len(gt["annotations"]))
    return atomic_write_json(root / GT_FILE, gt)


_COCO_IMAGES = "http://images.cocodataset.org/zips"

register_whole_image(WholeImageBenchmark(
    name="coco", display_name="COCO", n_images=5000, convert=convert_coco,
    description="COCO val2017, 5,000 images, instances_val2017.json made class-agnostic",
    downloads=(
        {"name": "COCO val2017 images", "url": f"{_COCO_IMAGES}/val2017.zip", "sha256": None,
         "note": "listed as 1 GB on cocodataset.org; no checksum published"},
        {"name": "COCO 2017 annotations", "url": "http://images.cocodataset.org/annotations/"
         "annotations_trainval2017.zip", "sha256": None,
         "note": "listed as 241 MB on cocodataset.org; no checksum published"},
    ),
))
register_whole_image(WholeImageBenchmark(
    name="lvis", display_name="LVIS", n_images=19809, convert=convert_lvis,
    description="LVIS v1 val (lvis_v1_val.json; images from COCO train2017 and val2017)",
    downloads=(
        {"name": "LVIS v1 val annotations", "url": "https://dl.fbaipublicfiles.com/LVIS/lvis_v1_val.json.zip",
         "sha256": None, "note": "no size or checksum published"},
        {"name": "COCO val2017 images", "url": f"{_COCO_IMAGES}/val2017.zip", "sha256": None,
         "note": "listed as 1 GB on cocodataset.org; no checksum published"},
        {"name": "COCO train2017 images (LVIS val uses some)", "url": f"{_COCO_IMAGES}/train2017.zip",
         "sha256": None, "note": "listed as 18 GB on cocodataset.org; no checksum published"},
    ),
))
register_whole_image(WholeImageBenchmark(
    name="ade20k", display_name="ADE", n_images=2000, convert=convert_ade20k,
    description="ADE20K instance val, 2,000 images, from annotations_instance/ (Mask2Former's conversion)",
    downloads=(
        {"name": "ADEChallengeData2016", "url": "http://data.csail.mit.edu/places/ADEchallenge/"
         "ADEChallengeData2016.zip", "sha256": None, "note": "about 923 MB; no checksum published"},
        {"name": "ADE20K instance annotations", "url": "http://sceneparsing.csail.mit.edu/data/ChallengeData2017/"
         "annotations_instance.tar", "sha256": None, "note": "no size or checksum published"},
    ),
))
register_whole_image(WholeImageBenchmark(
    name="entityseg", display_name="Entity", n_images=1314, convert=convert_entityseg,
    description="EntitySeg val, low resolution, 1,314 images (user-supplied: licence)",
    user_files=(
        UserPath("entityseg_val_lr.json", "EntitySeg val annotations (low resolution)", _ENTITYSEG_WHERE),
        UserPath("images_lr", "EntitySeg low-resolution images", _ENTITYSEG_WHERE),
    ),
))
register_whole_image(WholeImageBenchmark(
    name="sa1b", display_name="SA-1B", n_images=1000, convert=convert_sa1b,
    description="SA-1B, 1,000 held-out images (versioned sorted id list, disjoint from the run's training images)",
    default_options={"num_images": 1000},
))
register_whole_image(WholeImageBenchmark(
    name="synthetic", display_name="Synthetic", n_images=20, convert=convert_synthetic,
    description="held-out synthetic scenes; option source = the folder written by `unsamv2 synthetic`",
))
