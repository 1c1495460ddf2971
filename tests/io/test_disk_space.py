"""The free-space guard: its arithmetic against shutil.disk_usage, and real small file systems (tmpfs) that a
discovery shard and a checkpoint do not fit on: one clear message, no file left behind."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from unsamv2.io.disk_space import (
    DISCOVERY_BYTES_PER_IMAGE,
    InsufficientDiskSpace,
    ensure_free_space,
    free_bytes,
    tensor_bytes,
)


def test_free_bytes_is_disk_usage_of_the_closest_existing_folder(tmp_path: Path) -> None:
    assert free_bytes(tmp_path / "not" / "yet" / "created") == pytest.approx(shutil.disk_usage(tmp_path).free,
                                                                          rel=0.01)


def test_guard_passes_below_and_stops_above_what_is_free(tmp_path: Path) -> None:
    free = free_bytes(tmp_path)
    ensure_free_space(tmp_path, 1, "a tiny file")
    with pytest.raises(InsufficientDiskSpace, match=r"for a huge file in .*: about .* needed, .* free"):
        ensure_free_space(tmp_path, free * 4 + 2**40, "a huge file")


def test_tensor_bytes_counts_nested_tensors() -> None:
    state = {"a": torch.zeros(1000, dtype=torch.float32), "b": [torch.zeros(10, dtype=torch.int64), 3, "x"],
             "c": {"d": (torch.zeros(4, 4, dtype=torch.bfloat16),)}}
    raw = 4000 + 80 + 32
    assert tensor_bytes(state) == int(raw * 1.05) + 2**20
    # ...and it is an upper bound of what torch.save writes.
    assert tensor_bytes({"w": torch.randn(256, 256)}) >= 256 * 256 * 4


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (needs root and mount permission; skipped with the reason otherwise)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_checkpoint_larger_than_the_disk_stops_before_writing(small_fs: Path) -> None:
    from unsamv2.model.checkpoint import save_checkpoint

    model = torch.nn.Linear(1024, 512)  # 2 MiB of weights on a 1 MiB file system
    with pytest.raises(InsufficientDiskSpace, match="checkpoint last.pt"):
        save_checkpoint(model, small_fs / "last.pt")
    assert list(small_fs.iterdir()) == []
    small = torch.nn.Linear(8, 4)
    with pytest.raises(InsufficientDiskSpace):  # the 1 MiB slack of the estimate does not fit either
        save_checkpoint(small, small_fs / "final.pt")


def test_discovery_shard_on_a_full_disk_is_one_line_and_leaves_nothing(small_fs: Path, tmp_path: Path) -> None:
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(images / "a.png")
    image_list = tmp_path / "images.txt"
    image_list.write_text(f"0\t{images / 'a.png'}\n")
    assert free_bytes(small_fs) < DISCOVERY_BYTES_PER_IMAGE
    unsamv2 = Path(sys.executable).parent / "unsamv2"
    proc = subprocess.run([str(unsamv2), "discover", "--image-list", str(image_list), "--shard", "0",
                           "--shard-size", "1", "--backbone", "offline", "--out-dir", str(small_fs / "raw"),
                           "--out", str(small_fs / "0.tsv"), "--quiet"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("unsamv2 discover: error: not enough free disk space for discovery shard 0 (1 images)")
    assert str(small_fs / "raw") in lines[0]
    assert list(small_fs.iterdir()) == []
