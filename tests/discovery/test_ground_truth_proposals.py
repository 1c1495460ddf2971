"""SA-1B's ground-truth masks in Stage 1 (`discovery.divide` = `sa1b_gt` for Table 5's supervised row,
`maskcut+sa1b_gt` for UnSAMv2+), on tiny SA-1B-layout fixtures: `sa_<id>.jpg` + `sa_<id>.json` side by side, the
masks COCO RLE written by pycocotools, as the extracted tars hold them.

Known answers: the hierarchy of hand-placed nested boxes, their granularity computed by hand from Eq. 3, and
MaskCut's proposals on a palette scene whose features are known (`PaletteBackbone`)."""
from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from tests.discovery.test_pipeline import BG, LEFT, RIGHT, PaletteBackbone
from unsamv2.core.granularity import granularity_scores
from unsamv2.discovery.config import DiscoveryConfig
from unsamv2.discovery.ground_truth import (
    ground_truth_annotations,
    ground_truth_hierarchy,
    load_ground_truth,
    union_proposals,
)
from unsamv2.discovery.pipeline import discover_masks, divide_maskcut, to_sa1b_json
from unsamv2.discovery.scoring import score_document
from unsamv2.discovery.shard import discover_shard, read_manifest
from unsamv2.io.masks import decode_rle

H, W = 128, 160


def box(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def write_sa1b(folder: Path, stem: str, image: np.ndarray, masks: list[np.ndarray] | None) -> Path:
    """One image of an extracted SA-1B tar: the JPEG and, unless `masks` is None, its annotation JSON in SA-1B's
    own format (pycocotools' compressed RLE with str counts, plus SA-1B's other per-mask fields)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.jpg"
    Image.fromarray(image).save(path, quality=95)
    if masks is not None:
        anns = []
        for k, m in enumerate(masks):
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            anns.append({"id": 1000 + k, "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()},
                         "area": int(mask_utils.area(rle)), "bbox": mask_utils.toBbox(rle).tolist(),
                         "predicted_iou": 0.9, "stability_score": 0.95, "point_coords": [[1.0, 1.0]],
                         "crop_box": [0, 0, W, H]})
        record = {"image": {"image_id": int(stem[3:]), "width": image.shape[1], "height": image.shape[0],
                            "file_name": path.name}, "annotations": anns}
        (folder / f"{stem}.json").write_text(json.dumps(record))
    return path


@pytest.mark.parametrize(("divide", "reads_gt", "backbone", "gpu", "refines_instances"), [
    ("maskcut", False, True, True, False),
    ("external", False, True, True, True),
    ("sa1b_gt", True, False, False, False),  # no model runs, so no GPU whatever `device` says
    ("maskcut+sa1b_gt", True, True, True, False),  # MaskCut's CRF'd masks and SA-1B's are pixel-precise already
])
def test_divide_values_and_what_they_need(divide: str, reads_gt: bool, backbone: bool, gpu: bool,
                                          refines_instances: bool) -> None:
    cfg = DiscoveryConfig(divide=divide, proposals_dir="p", device="cuda", refine="crf")
    assert (cfg.needs_ground_truth, cfg.uses_backbone, cfg.uses_gpu) == (reads_gt, backbone, gpu)
    assert cfg.refines_instances == refines_instances
    assert DiscoveryConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError, match=r"discovery\.divide must be one of .*sa1b_gt, maskcut\+sa1b_gt"):
        DiscoveryConfig(divide="gt")


# --------------------------------------------------------------------------- a nested case, by hand

# Masks in the JSON's (deliberately mixed) order. A ⊃ B ⊃ C are 60², 40², 20² px, A is 17.6 % of the image;
# D (1.5 %, under min_instance_area) holds E; F and F2 are near-copies (each > 80 % inside the other).
A, B, C = box(0, 60, 0, 60), box(10, 50, 10, 50), box(20, 40, 20, 40)
D, E = box(100, 115, 100, 120), box(105, 110, 105, 111)
F, F2 = box(70, 96, 0, 40), box(70, 96, 0, 38)
NESTED = [C, A, F, D, B, E, F2]
# (mask, is_divide, instance_id) in the order discovery writes them, and the granularity from Eq. 3 by hand:
# in A's hierarchy √areas are 20, 40, 60, so B gets (40 − 20) / (60 − 20) · 0.9 + 0.1 = 0.55; the smallest mask of
# a hierarchy gets 0.1, the largest 1.0, and a mask alone in its hierarchy 1.0.
EXPECTED = [(C, False, 0, 0.1), (B, False, 0, 0.55), (A, True, 0, 1.0), (E, False, 1, 0.1), (D, True, 1, 1.0),
            (F, True, 2, 1.0), (F2, True, 3, 1.0)]


def test_hierarchy_of_ground_truth_places_every_mask() -> None:
    cfg = DiscoveryConfig(divide="sa1b_gt")
    got = [(i.index, i.parts) for i in ground_truth_hierarchy(np.stack(NESTED), cfg)]
    # Step 1 (the discovered masks' rule): A with its parts C, B (input order). Step 2, no area threshold: D with
    # E. F and F2 knock each other out under containment, so each is an instance alone.
    assert got == [(1, [0, 4]), (3, [5]), (2, []), (6, [])]


@pytest.mark.parametrize("formula", ["code", "paper"])
def test_sa1b_gt_pseudo_labels_are_the_ground_truth_with_hand_computed_granularity(tmp_path: Path,
                                                                                 formula: str) -> None:
    image = np.full((H, W, 3), 90, np.uint8)
    path = write_sa1b(tmp_path / "images", "sa_17", image, NESTED)
    cfg = DiscoveryConfig(divide="sa1b_gt")
    rows = discover_shard([(17, path)], tmp_path / "raw", cfg, backbone=None, progress=False)
    assert [(r.status, r.n_masks) for r in rows] == [("ok", len(NESTED))]

    doc = score_document(json.loads((tmp_path / "raw" / "sa_17.json").read_text()), formula)
    anns = doc["annotations"]
    assert len(anns) == len(EXPECTED)
    for ann, (mask, is_divide, inst, g) in zip(anns, EXPECTED, strict=True):
        assert np.array_equal(decode_rle(ann["segmentation"]), mask)  # RLE round trip: exactly SA-1B's mask
        assert (ann["is_divide"], ann["is_part"], ann["instance_id"]) == (is_divide, not is_divide, inst)
        assert ann["area"] == int(mask.sum()) and not ann["is_conquer"]
        assert ann["granularity"] == pytest.approx(g, abs=1e-9)


def test_a_shared_part_is_written_under_each_instance_as_for_discovered_masks() -> None:
    left, right = box(0, 100, 0, 90), box(0, 100, 70, 160)  # overlapping instances; the strip lies in both
    strip = box(40, 60, 72, 88)
    anns = ground_truth_annotations(np.stack([left, right, strip]), DiscoveryConfig(divide="sa1b_gt"))
    assert [(a.is_divide, a.instance_id) for a in anns] == [(False, 0), (True, 0), (False, 1), (True, 1)]
    assert np.array_equal(anns[0].mask, strip) and np.array_equal(anns[2].mask, strip)


# --------------------------------------------------------------------------- MaskCut ∪ ground truth


def two_object_scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two objects of a left and a right colour on background; MaskCut finds exactly these two boxes (o2 first)."""
    img = np.zeros((H, W, 3), np.uint8)
    img[:] = BG
    img[box(16, 64, 16, 48)], img[box(16, 64, 48, 80)] = LEFT, RIGHT
    img[box(80, 128, 96, 128)], img[box(80, 128, 128, 160)] = LEFT, RIGHT
    return img, box(16, 64, 16, 80), box(80, 128, 96, 160)


# Ground truth of the scene: o2 (also found by MaskCut), its left half, and an object MaskCut cannot see (o3, the
# background's colour) with a part.
O2_LEFT, O3, O3_PART = box(80, 128, 96, 128), box(96, 128, 0, 48), box(96, 128, 0, 16)
MASKCUT = DiscoveryConfig(divide="maskcut+sa1b_gt", maskcut_crf=False, maskcut_long_side=160, local_size=160)


def test_union_drops_maskcut_duplicates_of_the_ground_truth() -> None:
    img, o1, o2 = two_object_scene()
    mc_masks, mc_scores = divide_maskcut(img, PaletteBackbone(), MASKCUT)
    assert [m.tolist() for m in mc_masks] == [o2.tolist(), o1.tolist()]  # the fixture's premise
    gt = np.stack([o2, O2_LEFT, O3, O3_PART])
    masks, scores = union_proposals((mc_masks, mc_scores), gt, MASKCUT)
    # MaskCut's o2 is a copy of a ground-truth mask and goes; its o1 stays, with its score; the ground truth
    # follows, each mask with score 1.0.
    assert [m.tolist() for m in masks] == [o1.tolist(), o2.tolist(), O2_LEFT.tolist(), O3.tolist(),
                                           O3_PART.tolist()]
    assert scores.tolist() == [mc_scores[1], 1.0, 1.0, 1.0, 1.0]


def test_union_treats_mutual_containment_below_the_nms_iou_as_a_duplicate() -> None:
    gt = box(0, 50, 0, 50)
    shifted = box(0, 50, 5, 55)  # IoU 45/55 = 0.82 > 0.8: NMS's duplicate
    wider = box(0, 50, 0, 60)  # IoU 50/60 = 0.83; 100 % and 83 % inside each other
    offset = box(10, 60, 0, 46)  # IoU 1840 / 2960 = 0.62; 80.0 % of it inside gt, not above: kept
    squeezed = box(4, 50, 2, 50)  # IoU 0.88, kept out by both rules
    partial = box(0, 50, 25, 75)  # IoU 1/3: a different object
    mc = np.stack([shifted, wider, offset, squeezed, partial])
    masks, _ = union_proposals((mc, np.full(5, 0.9)), gt[None], MASKCUT)
    assert [m.tolist() for m in masks] == [offset.tolist(), partial.tolist(), gt.tolist()]
    # Below the NMS IoU, mutual containment alone makes a duplicate.
    near = box(0, 50, 0, 40)
    alike = box(0, 50, 8, 48)  # 32/40 = 80.0 % of each inside the other, not above 0.8: kept
    closer = box(0, 50, 6, 46)  # 34/40 = 85 % of each inside the other, IoU 34/46 = 0.74: dropped
    masks, _ = union_proposals((np.stack([alike, closer]), np.full(2, 0.9)), near[None], MASKCUT)
    assert [m.tolist() for m in masks] == [alike.tolist(), near.tolist()]


def test_maskcut_plus_ground_truth_keeps_both_and_conquers_inside_instances() -> None:
    img, o1, o2 = two_object_scene()
    gt = np.stack([o2, O2_LEFT, O3, O3_PART])
    proposals = union_proposals(divide_maskcut(img, PaletteBackbone(), MASKCUT), gt, MASKCUT)
    anns = discover_masks(img, PaletteBackbone(), MASKCUT, proposals=proposals)

    instances = {a.instance_id: a.mask for a in anns if a.is_divide}
    # MaskCut's o1, and the ground truth's o2 and o3 (o3 only SA-1B knows), in proposal order.
    assert [m.tolist() for m in instances.values()] == [o1.tolist(), o2.tolist(), O3.tolist()]
    parts = {k: [a.mask for a in anns if a.is_part and a.instance_id == k] for k in instances}
    for k, inst in instances.items():
        assert all(not (p & ~inst).any() for p in parts[k]), f"a part of instance {k} leaves it"
    # The ground-truth parts survive the NMS with conquer's masks; conquer adds the right halves, and splits
    # MaskCut's o1 into its two colours (conquer finds nothing on o3's uniform background).
    assert any(np.array_equal(p, O2_LEFT) for p in parts[1])
    assert [p.tolist() for p in parts[2]] == [O3_PART.tolist()]
    assert len(parts[0]) == 2 and sum(int(p.sum()) for p in parts[0]) > 0.9 * o1.sum()
    assert any(a.is_conquer and a.instance_id == 1 and (a.mask & box(80, 128, 128, 160)).sum() > 0.9 * a.mask.sum()
               for a in anns)

    doc = score_document(to_sa1b_json(anns, 1, "sa_1.jpg", (H, W)))
    for k in instances:
        members = [a for a in doc["annotations"] if a["instance_id"] == k]
        assert [a["granularity"] for a in members] == pytest.approx(
            granularity_scores(np.array([a["area"] for a in members])).tolist())
    o3_g = [a["granularity"] for a in doc["annotations"] if a["instance_id"] == 2]
    assert o3_g == [0.1, 1.0]  # part, then instance

    # Without the ground truth the same image gives MaskCut's two objects only.
    plain = discover_masks(img, PaletteBackbone(), DiscoveryConfig(maskcut_crf=False, maskcut_long_side=160,
                                                                   local_size=160))
    assert [a.mask.tolist() for a in plain if a.is_divide] == [o2.tolist(), o1.tolist()]


# --------------------------------------------------------------------------- errors and the shard


def test_missing_or_bad_json_fails_that_image_only_and_names_the_file(tmp_path: Path) -> None:
    img, _, o2 = two_object_scene()
    folder = tmp_path / "images"
    items = [(1, write_sa1b(folder, "sa_1", img, [o2, O2_LEFT])), (2, write_sa1b(folder, "sa_2", img, None)),
             (3, write_sa1b(folder, "sa_3", img, None)), (4, write_sa1b(folder, "sa_4", img, None))]
    (folder / "sa_3.json").write_text("{\"annotations\": [")
    (folder / "sa_4.json").write_text(json.dumps({"image": {"height": 64, "width": 64}, "annotations": []}))
    cfg = DiscoveryConfig(divide="sa1b_gt")
    rows = discover_shard(items, tmp_path / "raw", cfg, backbone=None, progress=False)
    assert [r.status for r in rows] == ["ok", "error", "error", "error"]
    assert "FileNotFoundError" in rows[1].error and str(folder / "sa_2.json") in rows[1].error
    assert str(folder / "sa_3.json") in rows[2].error
    assert str(folder / "sa_4.json") in rows[3].error and "64x64" in rows[3].error
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["sa_1.json"]
    rerun = discover_shard(items, tmp_path / "raw", cfg, backbone=None, progress=False)
    assert [r.status for r in rerun] == ["done_before", "error", "error", "error"]


def test_no_json_for_any_image_stops_the_shard_before_work(tmp_path: Path) -> None:
    img, _, _ = two_object_scene()
    items = [(k, write_sa1b(tmp_path / "images", f"sa_{k}", img, None)) for k in (1, 2)]
    for divide in ("sa1b_gt", "maskcut+sa1b_gt"):
        with pytest.raises(FileNotFoundError, match=re.escape(f"'{divide}' needs SA-1B's annotation")):
            discover_shard(items, tmp_path / "raw", DiscoveryConfig(divide=divide), PaletteBackbone(),
                           progress=False)
    with pytest.raises(FileNotFoundError, match="ground_truth_dir .*nowhere is not a folder"):
        discover_shard(items, tmp_path / "raw", DiscoveryConfig(divide="sa1b_gt",
                                                                ground_truth_dir=str(tmp_path / "nowhere")), None)
    assert not any((tmp_path / "raw").iterdir())
    # The plain divides never look for the JSONs.
    plain = DiscoveryConfig(maskcut_crf=False, maskcut_long_side=160, local_size=160)
    rows = discover_shard(items[:1], tmp_path / "raw", plain, PaletteBackbone(), progress=False)
    assert rows[0].status == "ok"


def test_ground_truth_dir_replaces_the_image_folder(tmp_path: Path) -> None:
    img, _, o2 = two_object_scene()
    write_sa1b(tmp_path / "annotations", "sa_5", img, [o2, O2_LEFT])
    path = write_sa1b(tmp_path / "images", "sa_5", img, None)
    cfg = DiscoveryConfig(divide="sa1b_gt", ground_truth_dir=str(tmp_path / "annotations"))
    rows = discover_shard([(5, path)], tmp_path / "raw", cfg, backbone=None, progress=False)
    assert [(r.status, r.n_masks) for r in rows] == [("ok", 2)]


def test_load_ground_truth_reads_polygons_and_skips_empty_masks(tmp_path: Path) -> None:
    path = tmp_path / "sa_9.json"
    empty = mask_utils.encode(np.zeros((4, 6), np.uint8, order="F"))
    path.write_text(json.dumps({"image": {"height": 4, "width": 6}, "annotations": [
        {"segmentation": [[1, 1, 4, 1, 4, 3, 1, 3]]},
        {"segmentation": {"size": [4, 6], "counts": empty["counts"].decode()}},
    ]}))
    masks = load_ground_truth(path, 4, 6)
    assert masks.shape == (1, 4, 6)
    expected = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([[1, 1, 4, 1, 4, 3, 1, 3]], 4, 6)))
    assert np.array_equal(masks[0], expected.astype(bool))
    path.write_text(json.dumps({"annotations": [{"bbox": [0, 0, 1, 1]}]}))
    with pytest.raises(ValueError, match="sa_9.json: annotation 0 has no valid 'segmentation'"):
        load_ground_truth(path, 4, 6)


# --------------------------------------------------------------------------- the command line


def _unsamv2(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "unsamv2"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=600, check=False)


def test_discover_command_runs_both_modes_and_score_fills_granularity(tmp_path: Path) -> None:
    img, _, o2 = two_object_scene()
    folder = tmp_path / "sa1b"
    gt = {"sa_1": [o2, O2_LEFT, O3, O3_PART], "sa_2": NESTED}
    paths = [write_sa1b(folder, stem, img, masks) for stem, masks in gt.items()]
    paths.append(write_sa1b(folder, "sa_3", img, None))  # its JSON is missing
    image_list = tmp_path / "images.txt"
    image_list.write_text("".join(f"{k}\t{p}\n" for k, p in enumerate(paths, start=1)))

    for divide in ("sa1b_gt", "maskcut+sa1b_gt"):
        out = tmp_path / divide
        settings = json.dumps({"divide": divide, "maskcut_crf": False, "maskcut_long_side": 160, "local_size": 160})
        proc = _unsamv2("discover", "--image-list", str(image_list), "--shard", "0", "--shard-size", "3",
                        "--backbone", "offline", "--settings", settings, "--out-dir", str(out / "raw"),
                        "--out", str(out / "0.tsv"), "--quiet", "--threads", "1")
        assert proc.returncode == 0, proc.stderr
        rows = read_manifest(out / "0.tsv")
        assert [r.status for r in rows] == ["ok", "ok", "error"]
        assert str(folder / "sa_3.json") in rows[2].error
        proc = _unsamv2("score", "--manifest", str(out / "0.tsv"), "--raw-labels", str(out / "raw"),
                        "--out-dir", str(out / "json"), "--out", str(out / "scored.tsv"))
        assert proc.returncode == 0, proc.stderr
        with open(out / "scored.tsv", newline="") as fh:
            assert [r["status"] for r in csv.DictReader(fh, delimiter="\t")] == ["ok", "ok", "error"]
        docs = {stem: json.loads((out / "json" / f"{stem}.json").read_text()) for stem in gt}
        for stem, masks in gt.items():
            written = [decode_rle(a["segmentation"]) for a in docs[stem]["annotations"]]
            assert all(0.1 <= a["granularity"] <= 1.0 for a in docs[stem]["annotations"])
            if divide == "sa1b_gt":  # exactly SA-1B's masks, nothing else
                assert sorted(m.tobytes() for m in written) == sorted(m.tobytes() for m in masks)
        if divide == "sa1b_gt":
            assert [a["granularity"] for a in docs["sa_2"]["annotations"]] == pytest.approx(
                [g for *_, g in EXPECTED], abs=1e-9)
        else:  # the ground-truth objects are instances of the union (no offline-backbone mask copies them)
            inst = [decode_rle(a["segmentation"]) for a in docs["sa_1"]["annotations"] if a["is_divide"]]
            assert any(np.array_equal(m, o2) for m in inst) and any(np.array_equal(m, O3) for m in inst)

    # No JSON anywhere: one line naming the key and what to do, exit 2, nothing written.
    image_list.write_text(f"3\t{paths[2]}\n")
    proc = _unsamv2("discover", "--image-list", str(image_list), "--shard", "0", "--shard-size", "1",
                    "--backbone", "offline", "--settings", json.dumps({"divide": "sa1b_gt"}),
                    "--out-dir", str(tmp_path / "none" / "raw"), "--out", str(tmp_path / "none" / "0.tsv"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("unsamv2 discover: error: discovery.divide 'sa1b_gt' needs")
    assert "sa_3.json" in lines[0] and "ground_truth_dir" in lines[0]
    assert not (tmp_path / "none" / "0.tsv").exists()
