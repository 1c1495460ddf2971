"""Registry of the interactive-segmentation benchmarks: where each comes from, how to load it, its protocol.

``load_dataset(name, root, **options)`` returns a lazy iterable of :class:`~unsamv2.datasets.sample.Sample`.
``prepare_dataset(name, root)`` downloads and extracts what can be downloaded, and otherwise checks that the
user-supplied files are in place (raising an error that says where to get them).

Levels: object datasets are evaluated to a target IoU of 0.90, part datasets (PartImageNet, PascalPart) to 0.85
(UnSAMv2 ``sam2_evaluate.py``: "only eval NoC@85 for Part-level Dataset").

Download facts (as documented upstream): the RITM/f-BRS zips for GrabCut, Berkeley and DAVIS publish **no checksum and no
exact size** — only approximate sizes in RITM's README (11 MB / 7 MB / 43 MB), recorded in the ``note`` of each
spec with ``sha256: None``; record the SHA-256 of your copy after the first download. SBD's ``benchmark.tgz`` URL
and MD5 are the ones torchvision's ``SBDataset`` uses (the download module verifies SHA-256 only, so the MD5 is
recorded in the note). PascalPart, PartImageNet and SA-1B cannot be fetched by a script.

More datasets can be added with :func:`register_dataset`; ``synthetic`` is the project's generated benchmark.
Video benchmarks (``task="video"``: DAVIS-2017, the synthetic video benchmark) live in the same registry; their
loaders yield :class:`~unsamv2.datasets.davis2017.VideoSequence` objects instead of samples, and
:func:`dataset_names` lists one task at a time.
"""
from __future__ import annotations

import logging
import tarfile
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from unsamv2.datasets.davis2017 import load_davis2017
from unsamv2.datasets.grabcut_berkeley_davis import load_berkeley, load_davis, load_grabcut
from unsamv2.datasets.partimagenet import load_partimagenet
from unsamv2.datasets.pascalpart import load_pascalpart
from unsamv2.datasets.sa1b import load_sa1b
from unsamv2.datasets.sample import Sample
from unsamv2.datasets.sbd import load_sbd
from unsamv2.datasets.synthetic import load_synthetic
from unsamv2.datasets.synthetic_video import load_synthetic_video

__all__ = [
    "DatasetSpec",
    "UserFile",
    "dataset_names",
    "effective_options",
    "extract_archive",
    "get_dataset",
    "is_part_dataset",
    "load_dataset",
    "prepare_dataset",
    "register_dataset",
    "target_iou_for",
]

log = logging.getLogger(__name__)

Level = Literal["object", "part"]
Task = Literal["interactive", "video"]
#: Target IoU of the click loop per level.
TARGET_IOU: dict[str, float] = {"object": 0.90, "part": 0.85}


@dataclass(frozen=True)
class UserFile:
    """A file or folder the user must put in place by hand.

    ``relative_path`` is relative to the dataset's own folder; ``prepare_dataset`` accepts it either directly under
    the given root or under one of the spec's ``folder_names`` (e.g. ``<root>/PascalPart/Annotations_Part``).
    """

    relative_path: str
    what: str
    where_to_get: str


@dataclass(frozen=True)
class DatasetSpec:
    """One benchmark: its loader, protocol level, and how its files are obtained."""

    name: str  # registry key, lower case
    display_name: str  # as printed in the paper's tables
    level: Level
    loader: Callable[..., Iterable[Sample]]  # loader(root, **options)
    description: str
    downloads: tuple[Mapping[str, Any], ...] = ()  # download specs for unsamv2.download.download_from_spec
    user_files: tuple[UserFile, ...] = ()
    default_options: Mapping[str, Any] = field(default_factory=dict)
    folder_names: tuple[str, ...] = ()  # sub-folders of a root that may hold the dataset (archive top folders)
    task: Task = "interactive"  # "video": the loader yields VideoSequence objects

    @property
    def target_iou(self) -> float:
        return TARGET_IOU[self.level]


_RITM_RELEASE = "https://github.com/saic-vul/fbrs_interactive_segmentation/releases/download/v1.0"

_REGISTRY: dict[str, DatasetSpec] = {}


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "").replace("_", "")


def register_dataset(spec: DatasetSpec, replace: bool = False) -> None:
    """Add a dataset to the registry (``replace=True`` to overwrite an existing entry)."""
    key = _key(spec.name)
    if key in _REGISTRY and not replace:
        raise ValueError(f"dataset {spec.name!r} is already registered")
    if spec.level not in TARGET_IOU:
        raise ValueError(f"dataset {spec.name!r}: level must be 'object' or 'part', got {spec.level!r}")
    _REGISTRY[key] = spec


def get_dataset(name: str) -> DatasetSpec:
    """Look a dataset up by name (case, '-' and '_' are ignored: 'SA-1B' == 'sa1b')."""
    key = _key(name)
    if key not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        raise ValueError(f"unknown dataset {name!r}; known datasets: {known}")
    return _REGISTRY[key]


def dataset_names(task: Task = "interactive") -> list[str]:
    """Registered dataset names of one task (the interactive image benchmarks by default)."""
    return sorted(spec.name for spec in _REGISTRY.values() if spec.task == task)


def is_part_dataset(name: str) -> bool:
    return get_dataset(name).level == "part"


def target_iou_for(name: str) -> float:
    return get_dataset(name).target_iou


def effective_options(name: str, **options: Any) -> dict[str, Any]:
    """The loader options a call would use: the spec's ``default_options`` overridden by ``options``."""
    return {**get_dataset(name).default_options, **options}


def load_dataset(name: str, root: str | Path, **options: Any) -> Iterable[Sample]:
    """Lazy iterable of the dataset's samples; ``options`` override the spec's ``default_options``."""
    return get_dataset(name).loader(Path(root), **effective_options(name, **options))


def extract_archive(archive: Path, dest: Path) -> None:
    """Extract a .zip / .tar(.gz) archive into ``dest``, refusing members that would escape it."""
    dest = dest.resolve()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                if not (dest / member).resolve().is_relative_to(dest):
                    raise ValueError(f"{archive}: member {member!r} would be extracted outside {dest}")
            zf.extractall(dest)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            tf.extractall(dest, filter="data")  # the 'data' filter rejects absolute paths, links out, devices
    else:
        raise ValueError(f"{archive}: not a zip or tar archive")


def prepare_dataset(name: str, root: str | Path, download_dir: str | Path | None = None) -> Path:
    """Make the dataset available under ``root`` and return ``root``.

    Downloadable archives are fetched (resumable, verified when a checksum is known) into ``download_dir``
    (default ``root/_downloads``) and extracted into ``root`` once (a ``.extracted-<archive>`` marker records
    it). User-supplied files are only checked, with an error saying where to get them.
    """
    from unsamv2.download import download_from_spec, require_user_file

    spec = get_dataset(name)
    root = Path(root)
    downloads = Path(download_dir) if download_dir is not None else root / "_downloads"
    for item in spec.downloads:
        archive = download_from_spec(item, downloads)
        marker = root / f".extracted-{archive.name}"
        if not marker.exists():
            log.info("extracting %s into %s", archive, root)
            extract_archive(archive, root)
            marker.write_text(f"{archive.name}\n")
    for user_file in spec.user_files:
        candidates = [root / user_file.relative_path] + [root / f / user_file.relative_path for f in spec.folder_names]
        found = next((c for c in candidates if c.exists()), None)
        if found is None:
            require_user_file(candidates[-1], user_file.what, user_file.where_to_get)  # raises, naming the path
    return root


# ------------------------------------------------------------------------------------------- built-in entries

register_dataset(DatasetSpec(
    name="grabcut", display_name="GrabCut", level="object", loader=load_grabcut,
    description="GrabCut, 50 images, 1 instance each (RITM packaging; 128 = ignore band)",
    folder_names=("GrabCut",),
    downloads=({"name": "GrabCut.zip", "url": f"{_RITM_RELEASE}/GrabCut.zip", "sha256": None,
                "note": "about 11 MB per RITM's README; no checksum or exact size published upstream"},),
))
register_dataset(DatasetSpec(
    name="berkeley", display_name="Berkeley", level="object", loader=load_berkeley,
    description="Berkeley, 96 images / 100 instances (RITM packaging)",
    folder_names=("Berkeley",),
    downloads=({"name": "Berkeley.zip", "url": f"{_RITM_RELEASE}/Berkeley.zip", "sha256": None,
                "note": "about 7 MB per RITM's README; no checksum or exact size published upstream"},),
))
register_dataset(DatasetSpec(
    name="davis", display_name="DAVIS", level="object", loader=load_davis,
    description="DAVIS, 345 frames, 1 instance each (RITM packaging)",
    folder_names=("DAVIS",),
    downloads=({"name": "DAVIS.zip", "url": f"{_RITM_RELEASE}/DAVIS.zip", "sha256": None,
                "note": "about 43 MB per RITM's README; no checksum or exact size published upstream"},),
))
register_dataset(DatasetSpec(
    name="sbd", display_name="SBD", level="object", loader=load_sbd,
    description="SBD val, 2,857 images / 6,671 instances (benchmark_RELEASE/dataset)",
    folder_names=("dataset", "benchmark_RELEASE/dataset"),
    downloads=({"name": "SBD benchmark.tgz",
                "url": "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/"
                       "benchmark.tgz",
                "sha256": None,
                "note": "about 1.4 GB; MD5 82b4d87ceb2ed10f6038a1cba92111cb (torchvision SBDataset); project "
                        "page http://home.bharathh.info/pubs/codes/SBD/download.html"},),
))
register_dataset(DatasetSpec(
    name="pascalpart", display_name="PascalPart", level="part", loader=load_pascalpart,
    description="PASCAL-Part val, (object, part) pairs; 10% seeded subsample by default as the official code",
    folder_names=("PascalPart",),
    default_options={"fraction": 0.1, "seed": 0},
    user_files=(
        UserFile("Annotations_Part", "PASCAL-Part part annotations (Annotations_Part/*.mat)",
                 "download the PASCAL-Part annotations (project page http://roozbehm.info/pascal-parts/, "
                 "unverified here) and extract them to <root>/PascalPart/Annotations_Part"),
        UserFile("JPEGImages", "PASCAL VOC 2010 images (JPEGImages/*.jpg)",
                 "copy VOC2010's JPEGImages folder (VOCtrainval_03-May-2010.tar) to <root>/PascalPart/JPEGImages"),
        UserFile("ImageSets/Main", "PASCAL VOC 2010 image lists (ImageSets/Main/val.txt)",
                 "copy VOC2010's ImageSets/Main folder to <root>/PascalPart/ImageSets/Main"),
    ),
))
register_dataset(DatasetSpec(
    name="partimagenet", display_name="PartImageNet", level="part", loader=load_partimagenet,
    description="PartImageNet val, PNG part labels (1,206 images / 4,553 parts in the paper)",
    folder_names=("PartImageNet", "PartImageNet_Seg/PartImageNet"),
    default_options={"label_policy": "unsamv2"},
    user_files=(
        UserFile("annotations/val", "PartImageNet_Seg validation label PNGs",
                 "download PartImageNet_Seg from the Google Drive folder 1_sKq9g34dsKwfsgLo6j7WCe8Nfceq0Zo "
                 "(TACJu/PartImageNet README) and extract it so that <root>/PartImageNet/{images,annotations}/val "
                 "exist"),
        UserFile("images/val", "PartImageNet_Seg validation images",
                 "see the PartImageNet_Seg download above"),
    ),
))
register_dataset(DatasetSpec(
    name="sa1b", display_name="SA-1B", level="object", loader=load_sa1b,
    description="SA-1B held-out subset: 1,000 images from a versioned sorted id list, <= 5 non-overlapping masks",
    default_options={"num_images": 1000, "seed": 0, "max_masks": 5},
    user_files=(
        UserFile("annotations", "SA-1B evaluation images and per-image JSON annotations",
                 "accept the SA-1B licence at https://ai.facebook.com/datasets/segment-anything-downloads/ to get "
                 "the links file, download a shard not used for training (e.g. with `unsamv2 fetch-sa1b`), and "
                 "place its <id>.jpg under <root>/images and <id>.json under <root>/annotations"),
    ),
))


register_dataset(DatasetSpec(
    name="synthetic", display_name="Synthetic", level="object", loader=load_synthetic,
    description="generated hierarchical scenes (objects / parts / sub-parts, exact visible-pixel ground truth); "
                "option level=part|subpart|all_parts selects part masks (use target IoU 0.85 for those)",
    default_options={"level": "object"},
))
register_dataset(DatasetSpec(
    name="davis2017", display_name="DAVIS-2017", level="object", loader=load_davis2017, task="video",
    description="DAVIS-2017 semi-supervised video object segmentation, 480p (val: 30 sequences, 59 objects)",
    folder_names=("DAVIS",),
    default_options={"subset": "val"},
    downloads=({"name": "DAVIS-2017-trainval-480p.zip",
                "url": "https://data.vision.ee.ethz.ch/csergi/share/davis/DAVIS-2017-trainval-480p.zip",
                "sha256": None,
                "note": "the official DAVIS-2017 train+val 480p release (davischallenge.org/davis2017/code.html); "
                        "no checksum or exact size is published upstream: record the SHA-256 of your copy"},),
))
register_dataset(DatasetSpec(
    name="synthetic_video", display_name="Synthetic video", level="object", loader=load_synthetic_video,
    task="video",
    description="animated synthetic hierarchical scenes in the DAVIS-2017 layout (exact ground truth per frame); "
                "option level=object|part|subpart",
    default_options={"level": "object"},
))
