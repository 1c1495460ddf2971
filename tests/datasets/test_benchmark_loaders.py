"""Each benchmark loader on a tiny dataset written in that benchmark's exact on-disk layout."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io as sio
from scipy.sparse import csc_matrix

from unsamv2.datasets.grabcut_berkeley_davis import load_berkeley, load_davis, load_grabcut
from unsamv2.datasets.partimagenet import load_partimagenet
from unsamv2.datasets.pascalpart import load_pascalpart
from unsamv2.datasets.sa1b import load_sa1b, make_id_list, select_masks, write_id_list
from unsamv2.datasets.sbd import load_sbd
from unsamv2.io.images import read_id_list
from unsamv2.io.masks import encode_rle

H, W = 12, 16


def _image(path: Path, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = (np.random.default_rng(seed).random((H, W, 3)) * 255).astype(np.uint8)
    assert cv2.imwrite(str(path), pixels)


def _label_png(path: Path, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), labels.astype(np.uint8))


# ------------------------------------------------------------------------------------ GrabCut / Berkeley / DAVIS


def _ritm_mask() -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    mask[2:10, 3:13] = 128  # the ignore band ...
    mask[3:9, 4:12] = 255  # ... around the object
    return mask


def test_grabcut_layout(tmp_path: Path):
    root = tmp_path / "GrabCut"
    _image(root / "data_GT" / "b_bird.jpg")
    _image(root / "data_GT" / "a_cat.bmp", seed=1)
    _label_png(root / "boundary_GT" / "a_cat.bmp", _ritm_mask())
    _label_png(root / "boundary_GT" / "b_bird.bmp", _ritm_mask())
    _image(root / "data_GT" / "c_nomask.jpg", seed=2)
    (root / "data_GT" / "Thumbs.db").write_bytes(b"junk")

    for given in (tmp_path, root):  # the extraction folder or the dataset folder itself
        samples = list(load_grabcut(given))
        assert [s.image_id for s in samples] == ["a_cat", "b_bird", "c_nomask"]
        obj = samples[0].objects[0]
        assert obj.gt.sum() == 6 * 8 and obj.ignore is not None
        assert obj.ignore.sum() == 8 * 10 - 6 * 8 and not (obj.gt & obj.ignore).any()
        assert samples[2].error is not None and "no mask" in samples[2].error


def test_berkeley_layout(tmp_path: Path):
    root = tmp_path / "Berkeley"
    _image(root / "images" / "42049.jpg")
    mask = np.zeros((H, W), np.uint8)
    mask[1:5, 1:5] = 255
    _label_png(root / "masks" / "42049.png", mask)
    (sample,) = load_berkeley(tmp_path)
    assert sample.image_id == "42049" and sample.objects[0].gt.sum() == 16 and sample.objects[0].ignore is None


def test_davis_layout_any_channel_is_foreground(tmp_path: Path):
    root = tmp_path / "DAVIS"
    _image(root / "img" / "bear_00000.jpg")
    mask = np.zeros((H, W, 3), np.uint8)
    mask[2:4, 2:6] = (0, 0, 128)  # a coloured (palette-like) object
    mask[6:8, 6:8] = (0, 50, 0)
    root.joinpath("gt").mkdir()
    assert cv2.imwrite(str(root / "gt" / "bear_00000.png"), mask)
    (sample,) = load_davis(root)
    assert sample.objects[0].gt.sum() == 8 + 4


def test_missing_layout_names_the_expected_paths(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="data_GT"):
        load_grabcut(tmp_path)


# ------------------------------------------------------------------------------------ SBD


def _sbd_mat(path: Path, seg: np.ndarray) -> None:
    ids = [int(v) for v in np.unique(seg) if v]
    boundaries = np.empty((len(ids), 1), dtype=object)
    for k, inst in enumerate(ids):
        boundaries[k, 0] = csc_matrix((seg == inst).astype(np.uint8))
    path.parent.mkdir(parents=True, exist_ok=True)
    sio.savemat(str(path), {"GTinst": {"Segmentation": seg.astype(np.uint8), "Boundaries": boundaries,
                                       "Categories": np.array([[15]] * len(ids), np.uint8)}})


def test_sbd_layout(tmp_path: Path):
    base = tmp_path / "benchmark_RELEASE" / "dataset"
    seg = np.zeros((H, W), np.uint8)
    seg[0:3, 0:3] = 1
    seg[5:9, 8:14] = 2
    _sbd_mat(base / "inst" / "2008_000002.mat", seg)
    _image(base / "img" / "2008_000002.jpg")
    (base / "val.txt").write_text("2008_000002\n2008_000099\n")
    (base / "train.txt").write_text("2008_000099\n")

    samples = list(load_sbd(tmp_path))
    assert [s.image_id for s in samples] == ["2008_000002", "2008_000099"]
    objects = samples[0].objects
    assert [o.object_id for o in objects] == ["1", "2"]
    assert objects[0].gt.sum() == 9 and objects[1].gt.sum() == 24
    assert samples[0].image_path == base / "img" / "2008_000002.jpg"
    assert samples[1].error is not None and "2008_000099.mat" in samples[1].error  # missing file, reported


# ------------------------------------------------------------------------------------ PascalPart


def _pascalpart_mat(path: Path, objects: list[tuple[str, list[tuple[str, np.ndarray]]]]) -> None:
    part_dtype = [("part_name", "O"), ("mask", "O")]
    arr = np.zeros((1, len(objects)), dtype=[("class", "O"), ("class_ind", "O"), ("mask", "O"), ("parts", "O")])
    for i, (cls, parts) in enumerate(objects):
        p = np.zeros((1, len(parts)) if parts else (0, 0), dtype=part_dtype)
        for j, (name, mask) in enumerate(parts):
            p[0, j]["part_name"], p[0, j]["mask"] = name, mask.astype(np.uint8)
        union = np.zeros((H, W), np.uint8)
        for _, mask in parts:
            union |= mask.astype(np.uint8)
        arr[0, i]["class"], arr[0, i]["class_ind"], arr[0, i]["mask"], arr[0, i]["parts"] = cls, 1, union, p
    path.parent.mkdir(parents=True, exist_ok=True)
    sio.savemat(str(path), {"anno": {"imname": path.stem, "objects": arr}})


def _box(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_pascalpart_layout_and_seeded_subsample(tmp_path: Path):
    root = tmp_path / "PascalPart"
    _pascalpart_mat(root / "Annotations_Part" / "2008_000001.mat", [
        ("person", [("head", _box(0, 3, 0, 3)), ("torso", _box(3, 8, 0, 4)), ("lhand", _box(8, 9, 0, 1))]),
        ("bottle", []),  # an object without parts
        ("cat", [("tail", np.zeros((H, W), bool))]),  # an empty part mask is skipped
    ])
    _pascalpart_mat(root / "Annotations_Part" / "2008_000002.mat", [("dog", [("head", _box(1, 4, 1, 4))])])
    for name in ("2008_000001", "2008_000002"):
        _image(root / "JPEGImages" / f"{name}.jpg")
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "val.txt").write_text("2008_000001\n2008_000002\n")

    everything = list(load_pascalpart(tmp_path, fraction=1.0))
    assert [o.object_id for o in everything[0].objects] == ["0:0:person:head", "0:1:person:torso",
                                                            "0:2:person:lhand"]
    assert everything[0].objects[1].gt.sum() == 20
    assert [o.object_id for o in everything[1].objects] == ["0:0:dog:head"]

    half = [[o.object_id for o in s.objects] for s in load_pascalpart(root, fraction=0.5, seed=3)]
    assert half == [[o.object_id for o in s.objects] for s in load_pascalpart(root, fraction=0.5, seed=3)]
    kept = sum(len(ids) for ids in half)
    assert kept <= 4
    assert len({tuple(map(tuple, half)), *(
        tuple(tuple(o.object_id for o in s.objects) for s in load_pascalpart(root, fraction=0.5, seed=k))
        for k in range(8)
    )}) > 1  # the seed changes the subsample


def test_pascalpart_accepts_graco_split_name(tmp_path: Path):
    _pascalpart_mat(tmp_path / "Annotations_Part" / "x.mat", [("dog", [("head", _box(1, 4, 1, 4))])])
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    (tmp_path / "ImageSets" / "Main" / "part_val.txt").write_text("x\n")
    assert len(list(load_pascalpart(tmp_path, fraction=1.0))) == 1


# ------------------------------------------------------------------------------------ PartImageNet


def test_partimagenet_layout_and_label_policies(tmp_path: Path):
    root = tmp_path / "PartImageNet"
    _image(root / "images" / "val" / "n01440764_10029.JPEG")
    labels = np.full((H, W), 40, np.uint8)  # background
    labels[0:4, 0:4] = 0  # part class 0
    labels[5:9, 5:9] = 7
    _label_png(root / "annotations" / "val" / "n01440764_10029.png", labels)
    (root / "class_names.json").write_text(json.dumps({"categories": [{"id": 0, "name": "Fish Head"}]}))

    def ids(policy: str) -> list[str]:
        (sample,) = load_partimagenet(tmp_path, label_policy=policy)
        return [o.object_id for o in sample.objects]

    assert ids("unsamv2") == ["7", "40"]  # as coded for the paper: 0 dropped, background 40 kept
    assert ids("graco") == ["7"]
    assert ids("parts") == ["0", "7"]
    (sample,) = load_partimagenet(root)
    assert sample.objects[1].gt.sum() == H * W - 32
    with pytest.raises(ValueError, match="label_policy"):
        load_partimagenet(root, label_policy="all")


# ------------------------------------------------------------------------------------ SA-1B


def _sa1b_json(path: Path, image_id: int, masks: list[np.ndarray]) -> None:
    record = {
        "image": {"image_id": image_id, "width": W, "height": H, "file_name": f"sa_{image_id}.jpg"},
        "annotations": [
            {"id": 100 + k, "segmentation": encode_rle(m), "area": int(m.sum()), "bbox": [0, 0, 1, 1],
             "predicted_iou": 0.9, "stability_score": 0.9, "crop_box": [0, 0, W, H], "point_coords": [[0, 0]]}
            for k, m in enumerate(masks)
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def _sa1b_masks() -> list[np.ndarray]:
    return [_box(0, 2, 0, 2), _box(1, 3, 1, 3), _box(4, 6, 4, 6), _box(0, 12, 0, 16), _box(8, 10, 0, 3),
            _box(8, 10, 10, 12), _box(0, 1, 14, 16), np.zeros((H, W), bool)]


@pytest.mark.parametrize("flat", [False, True])
def test_sa1b_layouts_id_list_and_non_overlapping_selection(tmp_path: Path, flat: bool):
    for n in (3, 1, 2):
        stem = f"sa_{n}"
        image = tmp_path / (f"{stem}.jpg" if flat else f"images/{stem}.jpg")
        ann = tmp_path / (f"{stem}.json" if flat else f"annotations/{stem}.json")
        _image(image, seed=n)
        _sa1b_json(ann, n, _sa1b_masks())

    assert make_id_list(tmp_path, num_images=2) == ["sa_1", "sa_2"]
    assert make_id_list(tmp_path, num_images=5, exclude_ids=["sa_1"]) == ["sa_2", "sa_3"]
    id_list = write_id_list(tmp_path / "ids.txt", ["sa_3", "sa_1"], rule="test")
    assert read_id_list(id_list) == ["sa_3", "sa_1"]
    assert id_list.read_text().startswith("# unsamv2 sa1b-interactive id list v1")

    samples = list(load_sa1b(tmp_path, id_list=id_list, seed=0))
    assert [s.image_id for s in samples] == ["sa_3", "sa_1"]
    for sample in samples:
        masks = [o.gt for o in sample.objects]
        assert 1 <= len(masks) <= 5
        for i in range(len(masks)):
            assert masks[i].any()
            for j in range(i):
                assert not (masks[i] & masks[j]).any()
    again = list(load_sa1b(tmp_path, id_list=id_list, seed=0))
    assert [[o.object_id for o in s.objects] for s in again] == [[o.object_id for o in s.objects] for s in samples]


def test_sa1b_selection_is_seeded_and_capped():
    masks = [_box(0, 1, k, k + 1) for k in range(W)]  # 16 disjoint single pixels
    annotations = [{"segmentation": encode_rle(m)} for m in masks]
    chosen = select_masks(annotations, H, W, "sa_7", seed=0)
    assert len(chosen) == 5
    assert [i for i, _ in chosen] == [i for i, _ in select_masks(annotations, H, W, "sa_7", seed=0)]
    others = {tuple(i for i, _ in select_masks(annotations, H, W, "sa_7", seed=s)) for s in range(1, 6)}
    assert len(others) > 1
