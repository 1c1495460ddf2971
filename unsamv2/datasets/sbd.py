"""SBD (Semantic Boundaries Dataset) validation split, instance level (RITM's ``SBDEvaluationDataset``).

Layout of ``benchmark.tgz`` after extraction (``benchmark_RELEASE/dataset/``)::

    dataset/img/<name>.jpg
    dataset/inst/<name>.mat      MATLAB struct ``GTinst`` with fields Segmentation (HxW uint8 instance ids,
                                 0 = background), Boundaries (cell of sparse maps), Categories (class per instance)
    dataset/train.txt, dataset/val.txt   one image name per line

Every instance id > 0 of an image is one object (2,857 val images, 6,671 instances in RITM's count). RITM's
evaluation loader applies no "buggy mask" filter (that is only in the training loader), and neither do we.
``root`` may be ``dataset/`` itself, ``benchmark_RELEASE/`` or the folder the tarball was extracted into.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from scipy.io import loadmat

from unsamv2.datasets.sample import ObjectMask, Sample, resolve_root

__all__ = ["load_sbd", "read_sbd_instances"]


def read_sbd_instances(mat_path: Path) -> np.ndarray:
    """Return the ``GTinst.Segmentation`` instance-id map of an SBD ``inst/*.mat`` file as int32 (H, W)."""
    data = loadmat(str(mat_path))
    if "GTinst" not in data:
        raise ValueError(f"{mat_path}: no 'GTinst' struct (is this an SBD inst/*.mat file?)")
    gtinst = data["GTinst"]
    if "Segmentation" not in (gtinst.dtype.names or ()):
        raise ValueError(f"{mat_path}: GTinst has no 'Segmentation' field (fields: {gtinst.dtype.names})")
    seg = np.asarray(gtinst["Segmentation"][0, 0])
    if seg.ndim != 2:
        raise ValueError(f"{mat_path}: GTinst.Segmentation has shape {seg.shape}, expected (H, W)")
    return seg.astype(np.int32)


def load_sbd(root: str | Path, split: str = "val") -> Iterator[Sample]:
    """Yield one :class:`Sample` per image listed in ``<split>.txt``, with every instance as an object."""
    base = resolve_root(root, f"{split}.txt", nested=("dataset", "benchmark_RELEASE/dataset"))
    names = [line.strip() for line in (base / f"{split}.txt").read_text().splitlines() if line.strip()]
    return _iterate(base, names)


def _iterate(base: Path, names: list[str]) -> Iterator[Sample]:
    for name in names:
        image_path = base / "img" / f"{name}.jpg"
        try:
            seg = read_sbd_instances(base / "inst" / f"{name}.mat")
        except Exception as exc:  # noqa: BLE001 - a bad file must not stop the dataset; the error is reported
            yield Sample(name, image_path, error=f"{base / 'inst' / f'{name}.mat'}: {exc}")
            continue
        ids = [int(v) for v in np.unique(seg) if v != 0]
        objects = [ObjectMask(seg == inst_id, None, str(inst_id)) for inst_id in ids]
        yield Sample(name, image_path, objects)
