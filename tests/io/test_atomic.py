"""unsamv2.io.atomic: a write either replaces the file completely or leaves it (and the folder) untouched."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from unsamv2.io.atomic import atomic_link, atomic_output, atomic_write_bytes, atomic_write_json, atomic_write_text


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_atomic_write_json_text_bytes_round_trip(tmp_path: Path) -> None:
    obj = {"b": [1, 2.5, None], "a": "ünïcode"}
    out = atomic_write_json(tmp_path / "sub" / "x.json", obj, indent=2)
    assert out == tmp_path / "sub" / "x.json"
    assert json.loads(out.read_text(encoding="utf-8")) == obj
    atomic_write_text(tmp_path / "t.txt", "hello\n")
    assert (tmp_path / "t.txt").read_text() == "hello\n"
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01\x02")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01\x02"
    assert _leftovers(tmp_path) == ["b.bin", "sub", "t.txt"]
    assert _leftovers(tmp_path / "sub") == ["x.json"]


def test_atomic_output_exception_leaves_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "masks.npz"
    with pytest.raises(RuntimeError, match="boom"), atomic_output(dest) as tmp:
        tmp.write_bytes(b"half of a file")
        raise RuntimeError("boom")
    assert not dest.exists()
    assert _leftovers(tmp_path) == []


def test_atomic_output_keeps_previous_version_on_failure(tmp_path: Path) -> None:
    dest = tmp_path / "result.json"
    atomic_write_json(dest, {"version": 1})
    with pytest.raises(KeyboardInterrupt), atomic_output(dest) as tmp:
        tmp.write_text('{"version": 2, "trunc')
        raise KeyboardInterrupt  # an interrupted run must not leave a half file either
    assert json.loads(dest.read_text()) == {"version": 1}
    assert _leftovers(tmp_path) == ["result.json"]


def test_atomic_output_keeps_suffix_for_format_sniffing_writers(tmp_path: Path) -> None:
    dest = tmp_path / "arrays.npz"
    with atomic_output(dest) as tmp:
        assert tmp.parent == dest.parent and tmp.suffix == ".npz"
        np.savez(tmp, a=np.arange(5))
    assert np.array_equal(np.load(dest)["a"], np.arange(5))
    assert _leftovers(tmp_path) == ["arrays.npz"]


def test_atomic_write_never_exposes_partial_file_when_rename_fails(tmp_path: Path, monkeypatch) -> None:
    dest = tmp_path / "x.txt"
    dest.write_text("old")

    def failing_replace(src, dst):
        raise OSError("disk full at the worst moment")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(dest, "new content")
    assert dest.read_text() == "old"
    assert _leftovers(tmp_path) == ["x.txt"]


def test_atomic_write_json_unserialisable_touches_nothing(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "x.json", {"a": object()})
    assert _leftovers(tmp_path) == []


def test_atomic_link_shares_bytes_and_survives_replacing_the_source(tmp_path: Path) -> None:
    src = atomic_write_bytes(tmp_path / "epoch2.pt", b"weights of epoch 2")
    atomic_write_bytes(tmp_path / "last.pt", b"older weights")
    atomic_link(src, tmp_path / "last.pt")
    assert os.path.samefile(src, tmp_path / "last.pt")
    # Writers replace files by rename: a new version of one name leaves the other name's bytes alone.
    atomic_write_bytes(tmp_path / "last.pt", b"weights of epoch 3")
    assert src.read_bytes() == b"weights of epoch 2"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_atomic_link_copies_where_hard_links_fail(tmp_path: Path, monkeypatch) -> None:
    src = atomic_write_bytes(tmp_path / "a.pt", b"payload")

    def no_links(*_args: object) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    atomic_link(src, tmp_path / "b.pt")
    assert (tmp_path / "b.pt").read_bytes() == b"payload" and not os.path.samefile(src, tmp_path / "b.pt")
