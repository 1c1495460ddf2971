"""The benchmark registry: protocol levels, download specs, user-supplied files, extra datasets."""
from __future__ import annotations

import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from unsamv2.datasets import registry
from unsamv2.datasets.grabcut_berkeley_davis import load_grabcut
from unsamv2.datasets.registry import (
    DatasetSpec,
    UserFile,
    dataset_names,
    get_dataset,
    is_part_dataset,
    load_dataset,
    prepare_dataset,
    register_dataset,
    target_iou_for,
)
from unsamv2.datasets.sample import ObjectMask, Sample
from unsamv2.download import UserSuppliedFileMissing

SPEC_KEYS = {"name", "url", "sha256", "size", "filename", "note"}  # what unsamv2.download accepts


def test_builtin_datasets_and_their_protocol():
    for name in ("grabcut", "berkeley", "davis", "sbd", "pascalpart", "partimagenet", "sa1b", "synthetic"):
        assert name in dataset_names()
    assert get_dataset("SA-1B").name == "sa1b" and get_dataset("PartImageNet").display_name == "PartImageNet"
    assert is_part_dataset("pascalpart") and is_part_dataset("PartImageNet") and not is_part_dataset("sbd")
    assert target_iou_for("grabcut") == 0.90 and target_iou_for("partimagenet") == 0.85
    with pytest.raises(ValueError, match="unknown dataset"):
        get_dataset("coco_mval")


def test_download_specs_use_only_keys_the_downloader_accepts():
    for name in dataset_names():
        if name == "synthetic":
            continue
        spec = get_dataset(name)
        assert spec.downloads or spec.user_files, name
        for item in spec.downloads:
            assert set(item) <= SPEC_KEYS and item["url"].startswith("https://")
            assert item["sha256"] is None  # none is published upstream ...
            assert "no checksum" in item["note"] or "MD5" in item["note"]  # ... and the note says so


def test_register_an_extra_dataset_and_load_it(tmp_path: Path):
    def loader(root: Path, repeat: int = 1):
        gt = np.ones((2, 2), bool)
        return [Sample(f"{root.name}-{k}", root / "x.png", [ObjectMask(gt, None, "1")]) for k in range(repeat)]

    spec = DatasetSpec(name="toy-parts", display_name="Toy", level="part", loader=loader, description="test",
                       default_options={"repeat": 2})
    register_dataset(spec)
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_dataset(spec)
        assert target_iou_for("toy_parts") == 0.85
        assert len(list(load_dataset("toy-parts", tmp_path))) == 2
        assert len(list(load_dataset("toy-parts", tmp_path, repeat=3))) == 3
    finally:
        registry._REGISTRY.pop("toyparts")


def test_synthetic_is_registered_like_every_benchmark():
    from unsamv2.datasets.synthetic import load_synthetic

    spec = get_dataset("Synthetic")
    assert spec.loader is load_synthetic and spec.default_options == {"level": "object"}
    assert "synthetic" in dataset_names()


def test_prepare_downloads_and_extracts_once(tmp_path: Path):
    source = tmp_path / "src"
    (source / "GrabCut" / "data_GT").mkdir(parents=True)
    (source / "GrabCut" / "boundary_GT").mkdir(parents=True)
    cv2.imwrite(str(source / "GrabCut" / "data_GT" / "a.jpg"), np.zeros((4, 4, 3), np.uint8))
    mask = np.zeros((4, 4), np.uint8)
    mask[1:3, 1:3] = 255
    cv2.imwrite(str(source / "GrabCut" / "boundary_GT" / "a.bmp"), mask)
    archive = tmp_path / "GrabCut.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(source.rglob("*")):
            zf.write(path, path.relative_to(source).as_posix())

    spec = DatasetSpec(name="toy-grabcut", display_name="Toy", level="object", loader=load_grabcut,
                       description="test", downloads=({"name": "toy", "url": archive.as_uri(), "sha256": None},))
    register_dataset(spec)
    try:
        root = prepare_dataset("toy-grabcut", tmp_path / "data")
        assert (root / "GrabCut" / "data_GT" / "a.jpg").exists() and (root / ".extracted-GrabCut.zip").exists()
        (root / "GrabCut" / "data_GT" / "a.jpg").unlink()
        prepare_dataset("toy-grabcut", root)  # already extracted: the marker prevents a second extraction
        assert not (root / "GrabCut" / "data_GT" / "a.jpg").exists()
    finally:
        registry._REGISTRY.pop("toygrabcut")


def test_prepare_explains_where_to_get_user_supplied_files(tmp_path: Path):
    with pytest.raises(UserSuppliedFileMissing, match="Google Drive"):
        prepare_dataset("partimagenet", tmp_path)
    for sub in ("annotations/val", "images/val"):
        (tmp_path / "PartImageNet" / sub).mkdir(parents=True)
    assert prepare_dataset("partimagenet", tmp_path) == tmp_path
    with pytest.raises(UserSuppliedFileMissing, match="licence"):
        prepare_dataset("sa1b", tmp_path)
    spec = get_dataset("pascalpart")
    assert all(isinstance(u, UserFile) for u in spec.user_files) and not spec.downloads
