"""Synthetic hierarchical scenes: file format, ground-truth consistency, granularity, determinism, loader, CLI."""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO

from unsamv2.cli import main as cli_main
from unsamv2.core.granularity import granularity_scores
from unsamv2.datasets import synthetic_scenes as syn
from unsamv2.datasets.registry import get_dataset, load_dataset
from unsamv2.io.images import load_image_rgb
from unsamv2.io.masks import decode_rle, mask_bbox_xywh

N_IMAGES = 12
SIZE = (96, 128)
SEED = 5

ANN_KEYS = {"id", "image_id", "category_id", "iscrowd", "area", "bbox", "segmentation", "width", "height",
            "is_divide", "granularity", "instance_id", "is_part", "is_conquer", "level", "parent_id"}
IMAGE_KEYS = {"id", "file_name", "width", "height", "date_captured", "license", "coco_url", "flickr_url"}


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return syn.write_synthetic_dataset(tmp_path_factory.mktemp("syn") / "a", N_IMAGES, seed=SEED, image_size=SIZE)


def _docs(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((root / "annotations").glob("*.json"))]


def test_layout_and_pseudo_label_format(dataset_dir: Path):
    images = sorted(p.name for p in (dataset_dir / "images").iterdir())
    assert images == [f"syn_{k:06d}.png" for k in range(N_IMAGES)]
    for k, doc in enumerate(_docs(dataset_dir)):
        assert set(doc) == {"info", "licenses", "categories", "image", "annotations"}
        assert "images" not in doc and set(doc["image"]) == IMAGE_KEYS  # "image" is a dict (official format)
        assert doc["image"]["id"] == k and doc["image"]["file_name"] == f"syn_{k:06d}.png"
        assert (doc["image"]["height"], doc["image"]["width"]) == SIZE
        assert doc["categories"] == [{"id": 1, "name": "fg", "supercategory": "fg"}]
        assert doc["annotations"], "every scene has at least one object"
        for a in doc["annotations"]:
            assert set(a) == ANN_KEYS
            assert a["category_id"] == 1 and a["iscrowd"] == 0 and a["image_id"] == k
            assert isinstance(a["segmentation"]["counts"], str) and a["segmentation"]["size"] == list(SIZE)
            mask = decode_rle(a["segmentation"])
            assert a["area"] == int(mask.sum()) > 0 and a["bbox"] == mask_bbox_xywh(mask)
            assert a["is_divide"] == (a["level"] == 0) and a["is_part"] == (a["level"] > 0)
            assert 0.1 <= a["granularity"] <= 1.0
    assert load_image_rgb(dataset_dir / "images" / "syn_000000.png").shape == (*SIZE, 3)


def test_hierarchy_is_consistent(dataset_dir: Path):
    n_objects = n_multi_part = n_sub = 0
    for doc in _docs(dataset_dir):
        anns = {a["id"]: a for a in doc["annotations"]}
        masks = {i: decode_rle(a["segmentation"]) for i, a in anns.items()}
        objects = {a["instance_id"]: i for i, a in anns.items() if a["level"] == 0}
        # One object per instance id, numbered 0..K-1, objects of an image disjoint (visible pixels after occlusion).
        assert sorted(objects) == list(range(len(objects)))
        assert np.sum([masks[i] for i in objects.values()], axis=0).max() <= 1
        by_level: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, a in anns.items():
            if a["level"] == 0:
                assert a["parent_id"] is None
                continue
            parent = anns[a["parent_id"]]
            assert parent["level"] == a["level"] - 1 and parent["instance_id"] == a["instance_id"]
            # Every visible part pixel lies in its visible parent, hence in its visible object.
            assert not (masks[i] & ~masks[a["parent_id"]]).any()
            assert not (masks[i] & ~masks[objects[a["instance_id"]]]).any()
            assert not np.array_equal(masks[i], masks[a["parent_id"]])  # duplicates are dropped
            by_level[(a["instance_id"], a["level"])].append(i)
        for ids in by_level.values():  # masks at one level of one object are disjoint
            assert np.sum([masks[i] for i in ids], axis=0).max() <= 1
        n_objects += len(objects)
        n_multi_part += sum(len(by_level.get((inst, 1), [])) >= 2 for inst in objects)
        n_sub += sum(len(ids) for (inst, level), ids in by_level.items() if level == 2)
    # The scenes are hierarchical: most objects show ≥ 2 parts (part-vs-whole ambiguity), some parts sub-parts.
    assert n_multi_part >= 0.7 * n_objects and n_sub > 0


def test_granularity_is_the_official_formula_over_each_hierarchy(dataset_dir: Path):
    for doc in _docs(dataset_dir):
        groups: dict[int, list[dict]] = defaultdict(list)
        for a in doc["annotations"]:
            groups[a["instance_id"]].append(a)
        for members in groups.values():
            assert members[-1]["level"] == 0  # parts first, then their object, as the official writer
            expected = granularity_scores(np.array([a["area"] for a in members], dtype=np.float64))
            assert [a["granularity"] for a in members] == expected.tolist()
            assert members[-1]["granularity"] == 1.0  # the object is the largest mask of its hierarchy


def test_masks_decode_to_the_rendered_label_map():
    for k in range(4):
        scene = syn.generate_scene(np.random.default_rng([SEED, k]), *SIZE)
        anns = syn.scene_annotations(scene, k, min_area=20)
        visible = {r.region_id: scene.visible_mask(r.region_id) for r in scene.regions}
        for a in anns:
            mask = decode_rle(a["segmentation"])
            assert any(np.array_equal(mask, v) for v in visible.values())
        # Foreground of the label map = union of the objects (the dropped ones excepted: fewer than 20 pixels).
        union = np.any([decode_rle(a["segmentation"]) for a in anns if a["level"] == 0], axis=0)
        assert not (union & (scene.labels == 0)).any()
        missing = (scene.labels > 0) & ~union
        assert missing.sum() < 20 * len([r for r in scene.regions if r.level == 0])
        # The finest annotated region of each pixel agrees with the label map: pixels of one leaf label
        # carry the same set of annotations.
        stack = np.stack([decode_rle(a["segmentation"]) for a in anns])
        for label in np.unique(scene.labels[union]):
            signatures = np.unique(stack[:, scene.labels == label].T, axis=0)
            assert len(signatures) == 1


def test_written_image_is_the_rendered_image(dataset_dir: Path):
    scene = syn.generate_scene(np.random.default_rng([SEED, 3]), *SIZE)
    np.testing.assert_array_equal(load_image_rgb(dataset_dir / "images" / "syn_000003.png"), scene.image)


def test_deterministic_per_seed(dataset_dir: Path, tmp_path: Path):
    again = syn.write_synthetic_dataset(tmp_path / "b", 3, seed=SEED, image_size=SIZE)
    for rel in ("images/syn_000002.png", "annotations/syn_000002.json"):
        assert (again / rel).read_bytes() == (dataset_dir / rel).read_bytes()  # independent of n_images
    other = syn.write_synthetic_dataset(tmp_path / "c", 3, seed=SEED + 1, image_size=SIZE)
    assert (other / "images/syn_000002.png").read_bytes() != (dataset_dir / "images/syn_000002.png").read_bytes()


def test_gt_coco(dataset_dir: Path):
    gt = json.loads((dataset_dir / "gt_coco.json").read_text())
    assert [c["name"] for c in gt["categories"]] == ["object", "part", "subpart"]
    per_image = _docs(dataset_dir)
    assert len(gt["annotations"]) == sum(len(d["annotations"]) for d in per_image)
    by_id = {a["id"]: a for a in gt["annotations"]}
    assert len(by_id) == len(gt["annotations"])
    for a in gt["annotations"]:
        assert a["category_id"] == a["level"] + 1
        if a["parent_id"] is not None:
            parent = by_id[a["parent_id"]]
            assert parent["image_id"] == a["image_id"] and parent["level"] == a["level"] - 1
    coco = COCO(str(dataset_dir / "gt_coco.json"))
    assert sorted(coco.getImgIds()) == list(range(N_IMAGES))
    ann = coco.loadAnns(coco.getAnnIds(imgIds=[0]))[0]
    first = per_image[0]["annotations"][0]
    np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), decode_rle(first["segmentation"]))


def test_registered_loader_yields_one_level(dataset_dir: Path):
    spec = get_dataset("synthetic")
    assert spec.level == "object"
    objects = list(load_dataset("synthetic", dataset_dir))
    parts = list(load_dataset("synthetic", dataset_dir, level="part", max_images=2))
    assert len(objects) == N_IMAGES and len(parts) == 2
    doc = _docs(dataset_dir)[0]
    assert [o.object_id for o in objects[0].objects] == [str(a["id"]) for a in doc["annotations"] if a["level"] == 0]
    assert [o.object_id for o in parts[0].objects] == [str(a["id"]) for a in doc["annotations"] if a["level"] == 1]
    assert objects[0].image_path == dataset_dir / "images" / "syn_000000.png" and objects[0].error is None
    with pytest.raises(ValueError, match="level must be one of"):
        list(load_dataset("synthetic", dataset_dir, level="wheel"))


def test_cli(tmp_path: Path):
    assert cli_main(["synthetic", "--out-dir", str(tmp_path / "cli"), "--n-images", "2", "--seed", "1",
                     "--image-size", "64"]) == 0
    doc = json.loads((tmp_path / "cli" / "annotations" / "syn_000001.json").read_text())
    assert (doc["image"]["height"], doc["image"]["width"]) == (64, 64)
    assert (tmp_path / "cli" / "gt_coco.json").is_file()
    assert sorted(p.name for p in (tmp_path / "cli" / "images").iterdir()) == ["syn_000000.png", "syn_000001.png"]
    with pytest.raises(ValueError, match="at least 32"):
        syn.generate_scene(np.random.default_rng(0), 16, 16)


# ------------------------------------------------------------------------------------------ deeper hierarchies


@pytest.fixture(scope="module", params=[4, 5])
def deep_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    depth = int(request.param)
    root = syn.write_synthetic_dataset(tmp_path_factory.mktemp(f"deep{depth}"), 8, seed=SEED, image_size=(128, 128),
                                       depth=depth)
    return root, depth


def test_depth_3_is_the_scenes_of_earlier_versions(dataset_dir: Path) -> None:
    """Known answer: SHA-256 of files written by the generator before ``depth`` existed (same seed and size)."""
    import hashlib

    again = syn.write_synthetic_dataset(dataset_dir.parent / "depth3", 3, seed=SEED, image_size=SIZE, depth=3)
    expected = {
        "images/syn_000002.png": "4ea716857b24c7870088cb3cca5a59e71cb5c9e4e3c83e4d6f3072fd056c216c",
        "annotations/syn_000002.json": "980ed8c4da12a9b6fa7923dac819bf34a4c66f4f0d2fdf6055cddc212a251095",
        "gt_coco.json": "97dab6cd67cbd4de11ac6689206ddd96cb8de1022f7da456ece187c8b55a3050",
    }
    for rel, digest in expected.items():
        assert hashlib.sha256((again / rel).read_bytes()).hexdigest() == digest, rel


def test_deep_scenes_have_exact_nested_ground_truth_at_every_level(deep_dir: tuple[Path, int]) -> None:
    root, depth = deep_dir
    levels_seen: set[int] = set()
    for k, doc in enumerate(_docs(root)):
        anns = {a["id"]: a for a in doc["annotations"]}
        masks = {i: decode_rle(a["segmentation"]) for i, a in anns.items()}
        for i, a in anns.items():
            levels_seen.add(a["level"])
            assert 0 <= a["level"] < depth
            if a["level"] == 0:
                continue
            parent = anns[a["parent_id"]]
            assert parent["level"] == a["level"] - 1 and parent["instance_id"] == a["instance_id"]
            assert not (masks[i] & ~masks[a["parent_id"]]).any()
            assert masks[i].sum() < masks[a["parent_id"]].sum()  # strictly inside: duplicates are dropped
        # Granularity scored as at depth 3: the official formula over each object's whole hierarchy.
        groups: dict[int, list[dict]] = defaultdict(list)
        for a in doc["annotations"]:
            groups[a["instance_id"]].append(a)
        for members in groups.values():
            expected = granularity_scores(np.array([a["area"] for a in members], dtype=np.float64))
            assert [a["granularity"] for a in members] == expected.tolist()
        # The masks are the rendered regions: each is the visible pixels of one region of the label map.
        scene = syn.generate_scene(np.random.default_rng([SEED, k]), 128, 128, depth=depth)
        visible = [scene.visible_mask(r.region_id) for r in scene.regions]
        assert all(any(np.array_equal(m, v) for v in visible) for m in masks.values())
    assert levels_seen == set(range(depth))  # every level occurs in 8 scenes
    gt = json.loads((root / "gt_coco.json").read_text())
    assert [c["name"] for c in gt["categories"]] == list(syn.LEVEL_NAMES[:depth])
    assert gt["info"]["depth"] == depth


def test_deep_scenes_nest_more_regions_under_a_click_than_three(deep_dir: tuple[Path, int]) -> None:
    """The point of depth ≥ 4: some pixels lie in ``depth`` nested ground-truth regions."""
    root, depth = deep_dir
    deepest = 0
    for doc in _docs(root):
        stack = np.stack([decode_rle(a["segmentation"]) for a in doc["annotations"]])
        deepest = max(deepest, int(stack.sum(axis=0).max()))
    assert deepest == depth


def test_loader_selects_the_deeper_levels(deep_dir: tuple[Path, int]) -> None:
    root, depth = deep_dir
    docs = _docs(root)
    for name, levels in (("subsubpart", {3}), ("all_parts", set(range(1, depth))), ("all", set(range(depth)))):
        samples = list(load_dataset("synthetic", root, level=name))
        for sample, doc in zip(samples, docs, strict=True):
            assert [o.object_id for o in sample.objects] == [str(a["id"]) for a in doc["annotations"]
                                                             if a["level"] in levels], name
    # Level 4 exists only in scenes of depth 5; selecting it elsewhere gives samples without objects.
    n_level4 = sum(len(s.objects) for s in load_dataset("synthetic", root, level="subsubsubpart"))
    assert (n_level4 > 0) == (depth == 5)


def test_depth_out_of_range_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match=r"depth must be in 3\.\.5, got 6"):
        syn.generate_scene(np.random.default_rng(0), 64, 64, depth=6)
    assert cli_main(["synthetic", "--out-dir", str(tmp_path / "d"), "--n-images", "1", "--depth", "2"]) == 2
    assert "depth must be in 3..5, got 2" in capsys.readouterr().err
