"""Video datasets: DAVIS palette PNGs, the DAVIS-2017 loader on a tiny sequence in the real layout (downloaded from a
server on 127.0.0.1 and extracted by the registry), and the synthetic video benchmark (motion, occlusion, parts
moving with their object, exact ground truth per level)."""
from __future__ import annotations

import dataclasses
import functools
import http.server
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unsamv2.datasets import registry
from unsamv2.datasets.davis2017 import load_davis2017
from unsamv2.datasets.registry import dataset_names, get_dataset, load_dataset, prepare_dataset
from unsamv2.datasets.synthetic_video import (
    animate_sequence,
    load_synthetic_video,
    write_synthetic_video_dataset,
)
from unsamv2.io.palette_png import davis_palette, read_index_png, write_index_png


def write_davis_sequence(root: Path, name: str, labels: list[np.ndarray], subset: str = "val") -> None:
    """A sequence in DAVIS-2017's layout: JPEG frames, palette PNG annotations, the ImageSets list."""
    frames = root / "JPEGImages" / "480p" / name
    anns = root / "Annotations" / "480p" / name
    frames.mkdir(parents=True, exist_ok=True)
    anns.mkdir(parents=True, exist_ok=True)
    for t, lab in enumerate(labels):
        Image.fromarray(np.full((*lab.shape, 3), 40 * t % 255, np.uint8)).save(frames / f"{t:05d}.jpg")
        write_index_png(anns / f"{t:05d}.png", lab)
    lists = root / "ImageSets" / "2017"
    lists.mkdir(parents=True, exist_ok=True)
    with open(lists / f"{subset}.txt", "a") as fh:
        fh.write(f"{name}\n")


def _labels(n: int = 4) -> list[np.ndarray]:
    out = []
    for t in range(n):
        lab = np.zeros((12, 16), np.uint8)
        lab[2:6, 2 + t:6 + t] = 1
        lab[7:10, 9:14] = 2
        lab[0, :] = 255  # void
        out.append(lab)
    return out


def test_palette_png_round_trip_keeps_ids_and_uses_the_davis_colours(tmp_path: Path) -> None:
    labels = np.arange(12 * 16, dtype=np.int64).reshape(12, 16) % 256
    path = write_index_png(tmp_path / "a.png", labels)
    assert np.array_equal(read_index_png(path), labels)
    with Image.open(path) as img:
        assert img.mode == "P"
        palette = img.getpalette()
    assert palette[3:12] == [128, 0, 0, 0, 128, 0, 128, 128, 0]  # ids 1, 2, 3: red, green, olive (PASCAL VOC)
    assert davis_palette()[255 * 3:] == [224, 224, 192]  # void
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="rgb.png.*indexed"):
        read_index_png(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="0…255"):
        write_index_png(tmp_path / "b.png", np.full((2, 2), 256))


def test_davis2017_loader_reads_the_real_layout(tmp_path: Path) -> None:
    root = tmp_path / "DAVIS"
    write_davis_sequence(root, "bear", _labels())
    write_davis_sequence(root, "bmx", _labels(3)[:1] + [np.zeros((12, 16), np.uint8)] * 2)
    write_davis_sequence(root, "train-only", _labels(), subset="train")
    (root / "Annotations" / "480p" / "bmx" / "00002.png").unlink()  # an annotation missing
    sequences = list(load_davis2017(tmp_path))  # the parent of DAVIS/ works too
    assert [s.name for s in sequences] == ["bear", "bmx"]
    bear, bmx = sequences
    assert bear.error is None and bear.num_frames == 4 and bear.object_ids == (1, 2)
    assert bear.read_labels(0)[0, 0] == 255  # void stays visible to callers
    assert np.array_equal(bear.first_frame_masks()[1], _labels()[0] == 1)
    assert bmx.error is not None and "00002" in bmx.error
    assert [s.name for s in load_davis2017(root, subset="train")] == ["train-only"]
    assert [s.name for s in load_davis2017(root, max_sequences=1)] == ["bear"]
    with pytest.raises(ValueError, match="subset"):
        list(load_davis2017(root, subset="test"))


def test_davis2017_objects_are_counted_as_the_evaluator_does(tmp_path: Path) -> None:
    # ids 1 … max of the first frame (void excluded), even if an id in between is absent there
    labels = _labels()
    labels[0] = np.where(labels[0] == 1, 3, labels[0]).astype(np.uint8)  # frame 0 holds ids 2, 3 (and void)
    write_davis_sequence(tmp_path, "gap", labels)
    (seq,) = load_davis2017(tmp_path)
    assert seq.object_ids == (1, 2, 3) and not seq.first_frame_masks()[1].any()
    write_davis_sequence(tmp_path, "void-only", [np.full((12, 16), 255, np.uint8)] * 3)
    (_, void_only) = load_davis2017(tmp_path)
    assert void_only.error is not None and "no object" in void_only.error


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    finally:
        httpd.shutdown()


def test_davis2017_is_registered_downloads_and_loads(tmp_path: Path, http_root: tuple[str, Path]) -> None:
    spec = get_dataset("DAVIS-2017")
    assert spec.task == "video" and spec.name in dataset_names("video") and spec.name not in dataset_names()
    (item,) = spec.downloads
    assert item["url"].endswith("/DAVIS-2017-trainval-480p.zip") and item["sha256"] is None
    assert "no checksum" in item["note"]
    # the same spec, served from 127.0.0.1: a zip with DAVIS's top folder
    url, served = http_root
    source = tmp_path / "src"
    write_davis_sequence(source / "DAVIS", "bear", _labels())
    with zipfile.ZipFile(served / "DAVIS-2017-trainval-480p.zip", "w") as zf:
        for path in sorted(source.rglob("*")):
            zf.write(path, path.relative_to(source).as_posix())
    local = dataclasses.replace(spec, name="davis2017-local",
                                downloads=({**item, "url": f"{url}/DAVIS-2017-trainval-480p.zip"},))
    registry.register_dataset(local)
    try:
        root = prepare_dataset("davis2017-local", tmp_path / "data")
        (seq,) = load_dataset("davis2017-local", root)
        assert seq.name == "bear" and seq.object_ids == (1, 2)
        assert np.array_equal(seq.read_labels(3), _labels()[3])
    finally:
        registry._REGISTRY.pop("davis2017local")


# ------------------------------------------------------------------------------------------ synthetic video


def test_animated_objects_move_rigidly_with_their_parts_and_occlude_each_other() -> None:
    seq = animate_sequence(np.random.default_rng([7, 0]), n_frames=12, height=128, width=128)
    objects, parts = seq.labels["object"], seq.labels["part"]
    assert len(seq.frames) == 12 and all(f.shape == (128, 128, 3) for f in seq.frames)
    ids = np.unique(objects[0])[1:]
    assert len(ids) >= 2
    moved = [not np.array_equal(objects[0] == k, objects[-1] == k) for k in ids]
    assert all(moved)
    # parts tile their object on every frame: the union of an object's visible parts is its visible mask
    for t in (0, 6, 11):
        assert np.array_equal(parts[t] > 0, objects[t] > 0)
    # each part stays inside one object on every frame (it moves with it)
    for p in np.unique(parts[0])[1:]:
        owners = {int(k) for t in range(12) for k in np.unique(objects[t][parts[t] == p])}
        assert len(owners) == 1
    # visible areas change over time: somebody is occluded more on some frame than on the first
    areas = np.array([[np.count_nonzero(o == k) for k in ids] for o in objects])
    assert (np.abs(areas - areas[0]) > 0.05 * areas[0]).any()


def test_synthetic_video_is_written_in_the_davis_layout_deterministically(tmp_path: Path) -> None:
    a = write_synthetic_video_dataset(tmp_path / "a", n_sequences=2, n_frames=5, seed=3, image_size=(64, 80))
    b = write_synthetic_video_dataset(tmp_path / "b", n_sequences=2, n_frames=5, seed=3, image_size=(64, 80))
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files_a)
    assert (a / "ImageSets/2017/val.txt").read_text() == "syn_video_000\nsyn_video_001\n"
    for level in ("object", "part", "subpart"):
        for seq in load_synthetic_video(a, level=level):
            assert seq.num_frames == 5
            if seq.error is None:
                assert seq.read_labels(0).shape == (64, 80)
                assert all(seq.first_frame_masks()[k].sum() >= 20 for k in seq.object_ids)
    # loaded through the registry like DAVIS-2017
    seqs = list(load_dataset("synthetic_video", a))
    assert [s.name for s in seqs] == ["syn_video_000", "syn_video_001"] and all(s.error is None for s in seqs)
    with pytest.raises(ValueError, match="level"):
        load_synthetic_video(a, level="pixel")
