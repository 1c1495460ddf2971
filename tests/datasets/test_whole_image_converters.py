"""Table 3 benchmarks → one class-agnostic COCO GT each: every converter on a tiny dataset written in that dataset's
own on-disk layout, with a known number of images and masks out; downloads from a server on 127.0.0.1; user files
that are missing stop the job naming the file."""
from __future__ import annotations

import dataclasses
import functools
import http.server
import io
import json
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unsamv2.datasets.whole_image import (
    convert_ade20k,
    convert_coco,
    convert_entityseg,
    convert_lvis,
    convert_sa1b,
    extract_sa1b_holdout,
    get_whole_image_benchmark,
    prepare_whole_image,
    register_whole_image,
    whole_image_names,
)
from unsamv2.download import UserSuppliedFileMissing
from unsamv2.evaluate.whole_image import average_recall, load_ground_truth
from unsamv2.io.masks import decode_rle, encode_rle


def _jpg(path: Path, h: int, w: int, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)).save(path)


def _rect(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def _check_gt(root: Path, gt: dict, n_images: int, n_masks: int) -> None:
    """Common contract: one category, category 1 everywhere, unique ids, images resolvable from the root, and
    the GT scores itself at AR 100 (so every mask decodes at its image's size)."""
    assert len(gt["images"]) == n_images
    assert len(gt["annotations"]) == n_masks
    assert gt["categories"] == [{"id": 1, "name": "object", "supercategory": "object"}]
    assert {a["category_id"] for a in gt["annotations"]} == {1}
    assert len({a["id"] for a in gt["annotations"]}) == n_masks
    assert [im["id"] for im in gt["images"]] == sorted(im["id"] for im in gt["images"])
    for im in gt["images"]:
        assert (root / im["file_name"]).is_file(), im["file_name"]
    coco = load_ground_truth(gt)
    dets = []
    for a in gt["annotations"]:
        if a["iscrowd"]:
            continue
        rle = coco.annToRLE(a)  # polygons → RLE at the image's size
        dets.append({"image_id": a["image_id"], "segmentation": rle, "score": 1.0})
    assert average_recall(gt, dets)["ar1000"] == pytest.approx(100.0)


# ------------------------------------------------------------------------------------------------ COCO / LVIS


def _coco_instances(images: list[tuple[int, str, int, int]]) -> dict:
    """Instances file as COCO publishes it: polygon objects of several classes, one crowd (uncompressed RLE)."""
    anns = []
    for image_id, _, h, w in images:
        anns.append({"id": 10 * image_id + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0, "area": 20.0,
                     "bbox": [1, 1, 4, 5], "segmentation": [[1.0, 1.0, 5.0, 1.0, 5.0, 6.0, 1.0, 6.0]]})
        anns.append({"id": 10 * image_id + 2, "image_id": image_id, "category_id": 18, "iscrowd": 0,
                     "area": 16.0, "bbox": [8, 2, 4, 4], "segmentation": [[8.0, 2.0, 12.0, 2.0, 12.0, 6.0, 8.0, 6.0]]})
    crowd = _rect(images[0][2], images[0][3], 10, 14, 0, 6)
    run_lengths = []  # column-major run lengths of the crowd mask, starting with background
    flat, current, count = crowd.flatten(order="F"), False, 0
    for v in flat:
        if bool(v) != current:
            run_lengths.append(count)
            current, count = bool(v), 0
        count += 1
    run_lengths.append(count)
    anns.append({"id": 999, "image_id": images[0][0], "category_id": 1, "iscrowd": 1, "area": float(crowd.sum()),
                 "bbox": [0, 10, 6, 4], "segmentation": {"size": [images[0][2], images[0][3]], "counts": run_lengths}})
    return {"images": [{"id": i, "file_name": f, "height": h, "width": w, "coco_url": f"http://images.cocodataset.org/"
                        f"{'train2017' if i % 2 else 'val2017'}/{f}"} for i, f, h, w in images],
            "annotations": anns, "categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}]}


COCO_IMAGES = [(139, "000000000139.jpg", 20, 16), (285, "000000000285.jpg", 24, 18), (632, "000000000632.jpg", 16, 20)]


def test_coco_layout(tmp_path: Path) -> None:
    for _, f, h, w in COCO_IMAGES:
        _jpg(tmp_path / "val2017" / f, h, w)
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_val2017.json").write_text(json.dumps(_coco_instances(COCO_IMAGES)))
    gt = convert_coco(tmp_path)
    _check_gt(tmp_path, gt, n_images=3, n_masks=7)
    assert sum(a["iscrowd"] for a in gt["annotations"]) == 1
    assert gt["images"][0]["file_name"] == "val2017/000000000139.jpg"


def test_lvis_images_come_from_train_and_val(tmp_path: Path) -> None:
    data = _coco_instances(COCO_IMAGES)
    for a in data["annotations"]:  # LVIS has no iscrowd and only polygons
        a.pop("iscrowd")
    data["annotations"] = [a for a in data["annotations"] if isinstance(a["segmentation"], list)]
    for im in data["images"]:
        im.pop("file_name")  # LVIS v1 has coco_url only
        folder, name = im["coco_url"].split("/")[-2:]
        _jpg(tmp_path / folder / name, im["height"], im["width"])
    (tmp_path / "lvis_v1_val.json").write_text(json.dumps(data))
    gt = convert_lvis(tmp_path)
    _check_gt(tmp_path, gt, n_images=3, n_masks=6)
    assert sorted(im["file_name"].split("/")[0] for im in gt["images"]) == ["train2017", "train2017", "val2017"]


# ------------------------------------------------------------------------------------------------ ADE20K


def _ade_png(path: Path, classes: np.ndarray, instances: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.stack([classes, instances, np.zeros_like(classes)], -1).astype(np.uint8)).save(path)


def test_ade20k_instance_layout(tmp_path: Path) -> None:
    base = tmp_path / "ADEChallengeData2016"
    h, w = 12, 16
    # image 1: instances 1, 2 (classes 5, 7) and void; image 2: one instance (id 4) covering a block
    cls1, ins1 = np.zeros((h, w), np.uint8), np.zeros((h, w), np.uint8)
    cls1[:6], ins1[:6] = 5, 1
    cls1[8:, 4:9], ins1[8:, 4:9] = 7, 2
    cls2, ins2 = np.zeros((h, w), np.uint8), np.zeros((h, w), np.uint8)
    cls2[2:5, 2:5], ins2[2:5, 2:5] = 3, 4
    for name, c, i in [("ADE_val_00000001", cls1, ins1), ("ADE_val_00000002", cls2, ins2)]:
        _jpg(base / "images" / "validation" / f"{name}.jpg", h, w)
        _ade_png(tmp_path / "annotations_instance" / "validation" / f"{name}.png", c, i)  # the tar's own top folder
    gt = convert_ade20k(tmp_path)
    _check_gt(tmp_path, gt, n_images=2, n_masks=3)
    masks = [decode_rle(a["segmentation"]) for a in gt["annotations"]]
    assert [int(m.sum()) for m in masks] == [6 * w, 4 * 5, 9]
    # an instance spanning two classes is a corrupt file
    cls2[2, 2] = 9
    _ade_png(tmp_path / "annotations_instance" / "validation" / "ADE_val_00000002.png", cls2, ins2)
    with pytest.raises(ValueError, match="several classes"):
        convert_ade20k(tmp_path)


def test_ade20k_missing_annotations_name_the_folder(tmp_path: Path) -> None:
    _jpg(tmp_path / "ADEChallengeData2016" / "images" / "validation" / "ADE_val_00000001.jpg", 8, 8)
    with pytest.raises(UserSuppliedFileMissing, match="annotations_instance"):
        convert_ade20k(tmp_path)


# ------------------------------------------------------------------------------------------------ EntitySeg


def _entityseg(root: Path, n: int, named_by_id: bool) -> None:
    images, anns = [], []
    for k in range(1, n + 1):
        h, w = 10 + k, 14
        name = f"entity_01_{k:05d}/img_{k}.jpg"
        _jpg(root / "images_lr" / (f"{k}.jpg" if named_by_id else name), h, w, seed=k)
        images.append({"id": k, "file_name": name, "height": h, "width": w, "img_source": "x", "url_flag": "0",
                       "url_dataset": "", "url_image": ""})
        for j in range(k):
            m = _rect(h, w, j, j + 3, 0, 5 + j)
            anns.append({"id": len(anns) + 1, "image_id": k, "category_id": 1, "category_id_ori": "thing",
                         "segmentation": encode_rle(m), "area": int(m.sum()), "bbox": [0, j, 5 + j, 3]})
    (root / "entityseg_val_lr.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                            "categories": [{"id": 1, "name": "entity"}]}))


@pytest.mark.parametrize("named_by_id", [False, True])
def test_entityseg_low_resolution(tmp_path: Path, named_by_id: bool) -> None:
    _entityseg(tmp_path, 3, named_by_id)
    _check_gt(tmp_path, convert_entityseg(tmp_path), n_images=3, n_masks=6)


def test_entityseg_is_user_supplied(tmp_path: Path) -> None:
    with pytest.raises(UserSuppliedFileMissing, match=r"entityseg_val_lr\.json.*Adobe Research License"):
        prepare_whole_image("entityseg", tmp_path)
    _entityseg(tmp_path, 2, named_by_id=False)
    (tmp_path / "images_lr" / "entity_01_00002" / "img_2.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="1 EntitySeg image"):
        convert_entityseg(tmp_path)


# ------------------------------------------------------------------------------------------------ SA-1B


def _sa1b_tar(path: Path, stems: list[str]) -> None:
    with tarfile.open(path, "w") as tar:
        for k, stem in enumerate(stems):
            h, w = 12, 10
            buf = io.BytesIO()
            Image.fromarray(np.full((h, w, 3), k, np.uint8)).save(buf, format="JPEG")
            anns = [{"id": j, "segmentation": encode_rle(_rect(h, w, j, j + 2, 0, 4)), "area": 8,
                     "bbox": [0, j, 4, 2], "predicted_iou": 0.9, "stability_score": 0.9, "crop_box": [0, 0, w, h],
                     "point_coords": [[1, 1]]} for j in range(k % 3 + 1)]
            doc = json.dumps({"image": {"image_id": k, "width": w, "height": h, "file_name": f"{stem}.jpg"},
                              "annotations": anns}).encode()
            for name, data in [(f"{stem}.jpg", buf.getvalue()), (f"{stem}.json", doc)]:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def test_sa1b_holdout_is_sorted_versioned_and_excludes_training_images(tmp_path: Path) -> None:
    stems = [f"sa_{k}" for k in (17, 3, 12, 8, 5)]  # tar order is not sorted
    _sa1b_tar(tmp_path / "sa_000999.tar", stems)
    root = tmp_path / "sa1b"
    assert extract_sa1b_holdout(tmp_path / "sa_000999.tar", root / "raw") == 5
    assert extract_sa1b_holdout(tmp_path / "sa_000999.tar", root / "raw") == 5  # rerun: nothing breaks
    train_list = tmp_path / "images.txt"
    train_list.write_text("0\t/data/sa1b/images/sa_12.jpg\n1\t/data/sa1b/images/sa_99.jpg\n")
    gt = convert_sa1b(root, num_images=3, exclude_image_list=str(train_list))
    _check_gt(root, gt, n_images=3, n_masks=1 + 2 + 2)  # sa_17 (k=0), sa_3 (k=1), sa_5 (k=4): k % 3 + 1 masks
    assert [im["sa1b_id"] for im in gt["images"]] == ["sa_17", "sa_3", "sa_5"]  # sorted as strings, sa_12 excluded
    ids_file = (root / "sa1b_ids.txt").read_text().splitlines()
    assert ids_file[0].startswith("# unsamv2 sa1b-interactive id list v")
    assert [x for x in ids_file if not x.startswith("#")] == ["sa_17", "sa_3", "sa_5"]
    # the written list reproduces the subset even if more files appear later
    _sa1b_tar(tmp_path / "more.tar", ["sa_0"])
    extract_sa1b_holdout(tmp_path / "more.tar", root / "raw")
    again = convert_sa1b(root, id_list=str(root / "sa1b_ids.txt"))
    assert [im["sa1b_id"] for im in again["images"]] == ["sa_17", "sa_3", "sa_5"]


def test_sa1b_missing_raw_names_the_links_file(tmp_path: Path) -> None:
    with pytest.raises(UserSuppliedFileMissing, match="links file"):
        convert_sa1b(tmp_path)


# ------------------------------------------------------------------------------------------------ synthetic


def test_synthetic_every_level_is_a_gt_mask(tmp_path: Path) -> None:
    from unsamv2.datasets.synthetic_scenes import write_synthetic_dataset

    source = write_synthetic_dataset(tmp_path / "scenes", n_images=2, seed=3, image_size=(64, 64))
    truth = json.loads((source / "gt_coco.json").read_text())
    root = tmp_path / "whole_image" / "synthetic"
    gt_path = prepare_whole_image("synthetic", root, source=str(source))
    gt = json.loads(gt_path.read_text())
    _check_gt(root, gt, n_images=2, n_masks=len(truth["annotations"]))
    assert {a["level"] for a in truth["annotations"]} == {0, 1, 2}  # objects, parts and sub-parts all present


# ------------------------------------------------------------------------------------------------ download


@pytest.fixture()
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", served
    finally:
        server.shutdown()
        server.server_close()


def test_prepare_coco_downloads_extracts_and_converts(tmp_path: Path, http_root: tuple[str, Path]) -> None:
    url, served = http_root
    with zipfile.ZipFile(served / "val2017.zip", "w") as zf:
        for _, f, h, w in COCO_IMAGES:
            buf = io.BytesIO()
            Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(buf, format="JPEG")
            zf.writestr(f"val2017/{f}", buf.getvalue())
    with zipfile.ZipFile(served / "annotations_trainval2017.zip", "w") as zf:
        zf.writestr("annotations/instances_val2017.json", json.dumps(_coco_instances(COCO_IMAGES)))
    spec = get_whole_image_benchmark("coco")
    local = dataclasses.replace(spec, downloads=tuple({**d, "url": f"{url}/{d['url'].rsplit('/', 1)[1]}"}
                                                      for d in spec.downloads))
    register_whole_image(local, replace=True)
    try:
        gt_path = prepare_whole_image("coco", tmp_path / "coco")
    finally:
        register_whole_image(spec, replace=True)
    _check_gt(tmp_path / "coco", json.loads(gt_path.read_text()), n_images=3, n_masks=7)
    assert (tmp_path / "coco" / "_downloads" / "val2017.zip").is_file()


def test_registry_lists_table3_and_records_sources() -> None:
    assert set(whole_image_names()) >= {"coco", "lvis", "ade20k", "entityseg", "sa1b", "synthetic"}
    assert get_whole_image_benchmark("ADE-20K".replace("-", "")).n_images == 2000
    assert get_whole_image_benchmark("coco").n_images == 5000
    assert get_whole_image_benchmark("entityseg").n_images == 1314
    lvis_urls = [d["url"] for d in get_whole_image_benchmark("lvis").downloads]
    assert any("train2017.zip" in u for u in lvis_urls) and any("val2017.zip" in u for u in lvis_urls)
    with pytest.raises(ValueError, match="unknown whole-image benchmark"):
        get_whole_image_benchmark("pascal")
