"""Atomic file writes.

Every output of the pipeline is written to a temporary file in the *same directory* as its destination,
flushed and fsync'ed, then renamed over the destination with :func:`os.replace`. A rename within one file
system is atomic, so a reader (or Snakemake after an interrupted run) sees either the old file, or the
complete new one — never a half-written file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_link", "atomic_output", "atomic_write_bytes", "atomic_write_json", "atomic_write_text"]


def _fsync_dir(directory: Path) -> None:
    """Flush a directory entry so that a completed rename survives a power loss (POSIX only)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # some file systems do not allow opening directories; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    """fsync a file that somebody else (e.g. a library writing to our temp path) has written and closed."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_temp_path(path: Path) -> Path:
    """Create (and close) a fresh, uniquely named temp file next to ``path``.

    The name keeps the destination's suffix so that libraries choosing a format by extension (``np.savez``,
    ``cv2.imwrite``, ``torch.save``) write the right format; a leading dot hides it from globbing tools.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    return Path(tmp)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is fsync'ed and renamed to ``path``.

    If the body raises, the temporary file is removed and ``path`` is left untouched (an earlier version of
    the file, if any, survives). The temporary file already exists (empty) when yielded; writers may overwrite
    or replace it. If the body deletes it without recreating it, ``FileNotFoundError`` names ``path``.

    Example::

        with atomic_output("out/masks.npz") as tmp:
            np.savez_compressed(tmp, masks=masks)
    """
    dest = Path(path)
    tmp = _make_temp_path(dest)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"atomic_output: nothing was written to the temporary file for {dest}")
        _fsync_file(tmp)
        os.replace(tmp, dest)
    except BaseException:
        # BaseException so that Ctrl-C (KeyboardInterrupt) also cleans up the half-written temp file.
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(dest.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Atomically write ``data`` to ``path`` (parent directories are created); return the path."""
    dest = Path(path)
    with atomic_output(dest) as tmp, open(tmp, "wb") as fh:
        fh.write(data)  # atomic_output fsyncs the closed file before the rename
    return dest


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Atomically write ``text`` to ``path`` with the given encoding. Returns the destination path."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | os.PathLike[str], obj: Any, indent: int | None = None) -> Path:
    """Atomically write ``obj`` as JSON (UTF-8, trailing newline) to ``path``. Returns the destination path.

    The object is serialised *before* the temp file is created, so a non-serialisable object raises
    ``TypeError`` without touching the file system.
    """
    text = json.dumps(obj, indent=indent, ensure_ascii=False)
    return atomic_write_text(path, text + "\n")


def atomic_link(source: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """Make ``path`` a hard link to ``source`` (a copy where the file system has no hard links), atomically.

    For outputs that hold the same bytes as one already written (a training run's ``last.pt`` and ``final.pt`` are
    its latest epoch checkpoint): no second copy of hundreds of MB. Safe because every writer here replaces a file
    by rename, never rewrites it in place, so changing one name later never changes the other.
    """
    dest = Path(path)
    with atomic_output(dest) as tmp:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:  # EXDEV, or a file system without hard links (some network and FUSE mounts)
            shutil.copyfile(source, tmp)
    return dest
