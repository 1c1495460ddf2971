"""Unlabeled image sets: demo photos, sorted/listed selection, SA-1B links file → tar download → extraction."""
from __future__ import annotations

import functools
import http.server
import io
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from unsamv2.cli import main as cli_main
from unsamv2.datasets.unlabeled import (
    DEMO_PHOTOS,
    export_demo_photos,
    extract_images,
    fetch_sa1b_tar,
    read_image_list,
    read_sa1b_links,
    select_images,
)
from unsamv2.download import UserSuppliedFileMissing
from unsamv2.io.images import load_image_rgb


@pytest.fixture()
def served_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    root = tmp_path / "srv"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def _jpeg_bytes(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def test_demo_photos_are_real_decodable_rgb(tmp_path: Path) -> None:
    paths = export_demo_photos(tmp_path / "demo")
    assert [p.name for p in paths] == list(DEMO_PHOTOS)
    shapes = {p.name: load_image_rgb(p).shape for p in paths}
    assert shapes["astronaut.png"] == (512, 512, 3)
    assert shapes["camera.png"] == (512, 512, 3)  # grayscale file, decoded to RGB
    assert shapes["logo.png"][2] == 3  # RGBA file, alpha removed
    # Known pixels: scikit-image's own loader (the grey level in every channel; the logo is fully opaque).
    camera = load_image_rgb(tmp_path / "demo" / "camera.png")
    assert all(np.array_equal(camera[..., k], skimage.data.camera()) for k in range(3))
    assert np.array_equal(load_image_rgb(tmp_path / "demo" / "logo.png"), skimage.data.logo()[..., :3])


def test_select_sorted_then_by_id_list(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ["b.jpg", "sa_000042.jpg", "a.png", "notes.txt"]:
        (folder / name).write_bytes(b"x")
    items = select_images(folder, max_images=10)
    assert [(i, p.name) for i, p in items] == [(1, "a.png"), (2, "b.jpg"), (42, "sa_000042.jpg")]
    ids = tmp_path / "ids.txt"
    ids.write_text("sa_000042\nb\n")
    assert [p.name for _, p in select_images(folder, 1, ids)] == ["sa_000042.jpg"]
    ids.write_text("b\nzzz\n")
    with pytest.raises(FileNotFoundError, match="zzz"):
        select_images(folder, 5, ids)


def test_select_images_cli_writes_the_list(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ["c.jpg", "a.jpg", "b.jpg"]:
        (folder / name).write_bytes(b"x")
    out = tmp_path / "images.txt"
    assert cli_main(["select-images", "--images", str(folder), "--max-images", "2", "--out", str(out)]) == 0
    assert [(i, p.name) for i, p in read_image_list(out)] == [(1, "a.jpg"), (2, "b.jpg")]
    assert cli_main(["select-images", "--images", str(tmp_path / "nope"), "--max-images", "2", "--out",
                     str(out)]) == 2


def test_sa1b_links_file_missing_says_what_and_where(tmp_path: Path) -> None:
    with pytest.raises(UserSuppliedFileMissing, match="segment-anything-downloads"):
        read_sa1b_links(tmp_path / "links.tsv")
    bad = tmp_path / "bad.tsv"
    bad.write_text("name\turl\nsa_000000.tar\thttp://x\n")
    with pytest.raises(ValueError, match="file_name"):
        read_sa1b_links(bad)


def test_sa1b_tar_download_and_extraction(tmp_path: Path, served_dir: tuple[Path, str]) -> None:
    root, base = served_dir
    tar_path = root / "sa_000023.tar"
    with tarfile.open(tar_path, "w") as tar:
        for name, payload in [("sa_2.jpg", _jpeg_bytes(10)), ("sa_1.jpg", _jpeg_bytes(200)),
                              ("sa_1.json", b"{}")]:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    links = tmp_path / "links.tsv"
    links.write_text(f"file_name\tcdn_link\nsa_000023.tar\t{base}/sa_000023.tar\n")

    got = fetch_sa1b_tar(links, "sa_000023.tar", tmp_path / "tars")
    assert got.read_bytes() == tar_path.read_bytes()
    with pytest.raises(ValueError, match="sa_000099.tar"):
        fetch_sa1b_tar(links, "sa_000099.tar", tmp_path / "tars")

    images = extract_images(got, tmp_path / "images")
    assert [p.name for p in images] == ["sa_1.jpg", "sa_2.jpg"]
    # The annotation JSON lands beside its image (read there by discovery.divide 'sa1b_gt'), not in the list.
    assert (tmp_path / "images" / "sa_1.json").read_bytes() == b"{}"
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ["sa_1.jpg", "sa_1.json", "sa_2.jpg"]
    assert abs(int(load_image_rgb(images[0]).mean()) - 200) <= 2
    items = select_images(tmp_path / "images", 10)
    assert [i for i, _ in items] == [1, 2]  # SA-1B ids come from the file names
