"""Pseudo-label training dataset: mask sampling, granularity defaults, resizing, augmentation alignment,
reproducibility, file naming, collate."""
from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from unsamv2.datasets.synthetic_scenes import write_synthetic_dataset
from unsamv2.io.masks import decode_rle, encode_rle
from unsamv2.train.dataset import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PseudoLabelDataset,
    collate,
    valid_granularity,
)

H, W = 40, 60


def _write_image(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]))


def _write_json(path: Path, file_name: str | None, masks: list[np.ndarray], grans: list, image_id: int = 7) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = {"id": image_id, "width": masks[0].shape[1], "height": masks[0].shape[0]}
    if file_name is not None:
        image["file_name"] = file_name
    anns = []
    for k, (m, g) in enumerate(zip(masks, grans, strict=True)):
        ann = {"id": k + 1, "segmentation": encode_rle(m), "area": int(m.sum()), "is_divide": False}
        if g != "missing":
            ann["granularity"] = g
        anns.append(ann)
    # json.dumps writes NaN / Infinity for float nan / inf (as Python-written pseudo-labels would contain).
    path.write_text(json.dumps({"image": image, "annotations": anns}))


def _unnormalise(image: torch.Tensor) -> np.ndarray:
    img = image.numpy().transpose(1, 2, 0) * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)
    return img


@pytest.fixture
def many_masks(tmp_path: Path) -> Path:
    """40 distinct non-empty masks (a horizontal run each) + 2 empty ones; granularity = index / 100."""
    masks, grans = [], []
    for k in range(40):
        m = np.zeros((H, W), bool)
        m[k, 5 : 10 + k] = True
        masks.append(m)
        grans.append(k / 100)
    masks += [np.zeros((H, W), bool)] * 2
    grans += [0.5, 0.5]
    _write_image(tmp_path / "images" / "img.png", np.full((H, W, 3), 90, np.uint8))
    _write_json(tmp_path / "ann" / "img.json", "img.png", masks, grans)
    return tmp_path


def test_max_masks_are_drawn_without_replacement_with_their_stored_granularity(many_masks: Path):
    # A square image at its native size, so that the returned masks can be compared with the stored ones.
    square = many_masks / "square"
    _write_image(square / "images" / "img.png", np.full((H, H, 3), 90, np.uint8))
    masks = []
    for k in range(40):
        m = np.zeros((H, H), bool)
        m[k, 0 : 1 + k % 30] = True
        masks.append(m)
    _write_json(square / "ann" / "img.json", "img.png", masks, [k / 100 for k in range(40)])
    ds = PseudoLabelDataset(square / "ann", square / "images", image_size=H, max_masks=30, augment=False)
    item = ds[0]
    assert item["masks"].dtype == torch.bool and item["masks"].shape == (30, H, H)
    rows = [int(np.flatnonzero(m.numpy().any(axis=1))[0]) for m in item["masks"]]
    assert len(set(rows)) == 30  # without replacement
    for m, k in zip(item["masks"].numpy(), rows, strict=True):
        assert np.array_equal(m, masks[k])  # unchanged at the native size
    assert item["granularity"].dtype == torch.float32
    assert item["granularity"].tolist() == pytest.approx([k / 100 for k in rows])
    # Fewer non-empty masks than max_masks: all of them, never the empty ones.
    item = PseudoLabelDataset(many_masks / "ann", many_masks / "images", image_size=W, max_masks=100,
                              augment=False)[0]
    assert item["masks"].shape[0] == 40


def test_selection_is_uniform_and_seeded_per_epoch_and_index(many_masks: Path):
    ds = PseudoLabelDataset(many_masks / "ann", many_masks / "images", image_size=W, max_masks=5, augment=False,
                            multiplier=3)
    assert len(ds) == 3  # one image × multiplier 3
    first = ds[0]["granularity"].tolist()
    assert ds[0]["granularity"].tolist() == first  # same (epoch, index) → same draw
    assert ds[1]["granularity"].tolist() != first  # the repeat of the image in the same epoch draws anew
    ds.set_epoch(1)
    assert ds[0]["granularity"].tolist() != first
    ds.set_epoch(0)
    assert ds[0]["granularity"].tolist() == first
    twin = PseudoLabelDataset(many_masks / "ann", many_masks / "images", image_size=W, max_masks=5,
                              augment=False, multiplier=3)
    assert twin[0]["granularity"].tolist() == first  # a fresh instance (another worker) agrees
    # Uniform over the 40 non-empty masks: over many epochs each is drawn about 5/40 of the time.
    counts = np.zeros(40)
    for epoch in range(400):
        ds.set_epoch(epoch)
        for g in ds[0]["granularity"].tolist():
            counts[round(g * 100)] += 1
    assert counts.min() > 25 and counts.max() < 85  # expected 50 each
    with pytest.raises(IndexError):
        ds[3]


def test_granularity_defaults_to_one_for_missing_or_invalid_values(tmp_path: Path):
    # A finite number is kept (an integer too); NaN, ±Inf, null, a string, a missing key → 1.0 (official).
    values = [0.25, float("nan"), float("inf"), float("-inf"), None, "0.3", "missing", 0, True]
    masks = []
    for k in range(len(values)):
        m = np.zeros((16, 16), bool)
        m[k, :] = True
        masks.append(m)
    _write_image(tmp_path / "images" / "a.png", np.zeros((16, 16, 3), np.uint8))
    _write_json(tmp_path / "ann" / "a.json", "a.png", masks, values)
    item = PseudoLabelDataset(tmp_path / "ann", tmp_path / "images", image_size=16, augment=False)[0]
    by_row = {int(np.flatnonzero(m.numpy().any(axis=1))[0]): g for m, g in zip(item["masks"], item["granularity"])}
    assert [by_row[k] for k in range(len(values))] == [0.25, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0]
    assert valid_granularity(0.4) == 0.4 and valid_granularity(math.nan) == 1.0 and valid_granularity(True) == 1.0


def _rectangle_fixture(root: Path) -> np.ndarray:
    """Black 40×60 image with a white rectangle (rows 10..29, columns 20..49); its mask is the rectangle."""
    rgb = np.zeros((H, W, 3), np.uint8)
    mask = np.zeros((H, W), bool)
    mask[10:30, 20:50] = True
    rgb[mask] = 255
    _write_image(root / "images" / "rect.png", rgb)
    _write_json(root / "ann" / "rect.json", "rect.png", [mask], [0.6])
    return mask


def test_resize_without_augmentation_is_a_known_answer(tmp_path: Path):
    _rectangle_fixture(tmp_path)
    ds = PseudoLabelDataset(tmp_path / "ann", tmp_path / "images", image_size=20, augment=False)
    item = ds[0]
    assert item["image"].shape == (3, 20, 20) and item["image"].dtype == torch.float32
    assert item["masks"].shape == (1, 20, 20) and item["image_id"] == 7 and item["file_name"] == "rect.json"
    # Rows shrink by 2 (10..29 → 5..14) and columns by 3: output column c covers input 3c..3c+2, inside the
    # mask for at least half of it for c = 7..16 (c = 16 covers 48, 49 in and 50 out).
    expected = np.zeros((20, 20), bool)
    expected[5:15, 7:17] = True
    np.testing.assert_array_equal(item["masks"][0].numpy(), expected)
    # The image is aligned with it: the pixels at least half white are exactly the mask.
    img = _unnormalise(item["image"])
    np.testing.assert_array_equal(img.mean(axis=2) >= 0.5 - 1e-6, expected)
    # Deterministic without augmentation.
    again = PseudoLabelDataset(tmp_path / "ann", tmp_path / "images", image_size=20, augment=False, seed=99)[0]
    assert torch.equal(again["image"], item["image"]) and torch.equal(again["masks"], item["masks"])


def test_normalisation_uses_imagenet_statistics(tmp_path: Path):
    mask = np.zeros((8, 8), bool)
    mask[2:5, 2:5] = True
    _write_image(tmp_path / "images" / "g.png", np.full((8, 8, 3), 51, np.uint8))  # 51/255 = 0.2
    _write_json(tmp_path / "ann" / "g.json", "g.png", [mask], [0.5])
    image = PseudoLabelDataset(tmp_path / "ann", tmp_path / "images", image_size=8, augment=False)[0]["image"]
    for c in range(3):
        assert image[c].flatten().tolist() == pytest.approx([(0.2 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]] * 64,
                                                            abs=1e-6)


def test_augmentation_keeps_image_and_masks_aligned(tmp_path: Path):
    _rectangle_fixture(tmp_path)
    ds = PseudoLabelDataset(tmp_path / "ann", tmp_path / "images", image_size=48, augment=True, multiplier=12)
    plain = PseudoLabelDataset(tmp_path / "ann", tmp_path / "images", image_size=48, augment=False)[0]["masks"][0]
    changed = 0
    kernel = np.ones((3, 3), np.uint8)
    for i in range(len(ds)):
        item = ds[i]
        m = item["masks"][0].numpy()
        assert item["image"].shape == (3, 48, 48) and m.any()
        img = _unnormalise(item["image"]).mean(axis=2)
        inside = cv2.erode(m.astype(np.uint8), kernel).astype(bool)
        outside = cv2.erode((~m).astype(np.uint8), kernel).astype(bool)
        # White stays bright and black / the affine fill (123, 116, 103) stays darker under the colour jitter.
        assert img[inside].min() > 0.7 and img[outside].max() < 0.65
        assert abs(int(m.sum()) - int(plain.sum())) < 0.5 * plain.sum()  # rotation/shear keep the area roughly
        changed += not torch.equal(item["masks"][0], plain)
        again = ds[i]  # reproducible per (epoch, index)
        assert torch.equal(again["image"], item["image"]) and torch.equal(again["masks"], item["masks"])
    assert changed >= 8  # flips and affines actually happen


def test_file_names_and_image_lookup(tmp_path: Path):
    m = np.zeros((8, 8), bool)
    m[1:3, 1:3] = True
    for stem in ("sa_1", "sa_2", "my_scene"):
        _write_image(tmp_path / "images" / f"{stem}.jpg", np.zeros((8, 8, 3), np.uint8))
    _write_json(tmp_path / "ann" / "sa_1.json", "sa_1.jpg", [m], [0.2], image_id=1)
    _write_json(tmp_path / "ann" / "f_sa_2.json", None, [m], [0.2], image_id=2)  # no file_name: stem without f_
    _write_json(tmp_path / "ann" / "my_scene.json", "my_scene.jpg", [m], [0.2], image_id=3)
    (tmp_path / "ann" / ".hidden.json").write_text("not json")  # an atomic-write temp file: ignored
    ds = PseudoLabelDataset(tmp_path / "ann", tmp_path / "images", image_size=8, augment=False)
    assert [p.name for p in ds.files] == ["f_sa_2.json", "my_scene.json", "sa_1.json"]
    assert [ds[i]["image_id"] for i in range(3)] == [2, 3, 1]
    assert len(PseudoLabelDataset(tmp_path / "ann", tmp_path / "images", max_images=2, multiplier=2)) == 4


def test_errors_name_the_file(tmp_path: Path):
    m = np.zeros((8, 8), bool)
    m[1:3, 1:3] = True
    _write_json(tmp_path / "ann" / "a.json", "missing.png", [m], [0.2])
    (tmp_path / "images").mkdir()
    ds = PseudoLabelDataset(tmp_path / "ann", tmp_path / "images", image_size=8)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        ds[0]
    (tmp_path / "ann" / "a.json").write_text("{broken")
    with pytest.raises(ValueError, match="a.json"):
        ds[0]
    with pytest.raises(FileNotFoundError, match="no pseudo-label"):
        PseudoLabelDataset(tmp_path / "images", tmp_path / "images")


def test_collate_handles_different_mask_counts(tmp_path: Path):
    root = write_synthetic_dataset(tmp_path / "syn", 3, seed=2, image_size=(64, 64))
    ds = PseudoLabelDataset(root / "annotations", root / "images", image_size=32, max_masks=4)
    items = [ds[i] for i in range(3)]
    empty = dict(items[0], masks=torch.zeros(0, 32, 32, dtype=torch.bool), granularity=torch.zeros(0))
    batch = collate([items[0], empty, items[2]])
    counts = [items[0]["masks"].shape[0], 0, items[2]["masks"].shape[0]]
    assert batch["image"].shape == (3, 3, 32, 32)
    assert batch["masks"].shape == (sum(counts), 32, 32) and batch["granularity"].shape == (sum(counts),)
    assert batch["num_masks"].tolist() == counts
    assert batch["batch_index"].tolist() == [0] * counts[0] + [2] * counts[2]
    loader = DataLoader(ds, batch_size=2, collate_fn=collate)
    first = next(iter(loader))
    assert first["image"].shape == (2, 3, 32, 32) and len(first["image_id"]) == 2
    # The stored granularities of the synthetic pseudo-labels reach the batch unchanged.
    stored = {round(a["granularity"], 6) for p in (root / "annotations").glob("*.json")
              for a in json.loads(p.read_text())["annotations"]}
    assert {round(g, 6) for g in batch["granularity"].tolist()} <= stored
    assert all(decode_rle(a["segmentation"]).any() for a in json.loads(
        (root / "annotations" / "syn_000000.json").read_text())["annotations"])


def test_affine_moves_image_and_masks_together_and_is_skipped_when_a_mask_would_vanish():
    from unsamv2.train.dataset import _random_affine

    mask = np.zeros((50, 70), bool)
    mask[10:35, 15:40] = True
    image = np.repeat(mask[..., None].astype(np.uint8) * 255, 3, axis=2)
    for seed in range(5):
        out_image, out_masks = _random_affine(image, mask[None], np.random.default_rng(seed))
        agree = (out_image.mean(axis=2) >= 128) == out_masks[0]
        assert agree.mean() > 0.97  # bilinear image vs nearest mask: they differ at most on the boundary
    corner = np.zeros((50, 70), bool)
    corner[0, 0] = True  # rotating about the centre pushes this pixel out of the frame for almost any angle
    skipped = 0
    for seed in range(10):
        out_image, out_masks = _random_affine(image, np.stack([mask, corner]), np.random.default_rng(seed))
        assert out_masks[1].any()  # never returns an emptied mask
        skipped += out_image is image and np.array_equal(out_masks[1], corner)
    assert skipped >= 8


def test_synthetic_pseudo_labels_round_trip_at_native_size(tmp_path: Path):
    root = write_synthetic_dataset(tmp_path / "syn", 1, seed=4, image_size=(64, 64))
    doc = json.loads((root / "annotations" / "syn_000000.json").read_text())
    stored = [(decode_rle(a["segmentation"]), a["granularity"]) for a in doc["annotations"]]
    item = PseudoLabelDataset(root / "annotations", root / "images", image_size=64, max_masks=100,
                              augment=False)[0]
    assert item["masks"].shape[0] == len(stored)  # every non-empty mask, in file order
    for m, g, (expected_mask, expected_g) in zip(item["masks"], item["granularity"], stored, strict=True):
        assert np.array_equal(m.numpy(), expected_mask) and g.item() == pytest.approx(expected_g)
    png = cv2.imread(str(root / "images" / "syn_000000.png"))[:, :, ::-1]
    np.testing.assert_allclose(_unnormalise(item["image"]) * 255, png, atol=1e-3)
