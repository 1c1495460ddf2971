"""Known answers of the resolution bound in ``benchmarks/demo_resolution_bound.py`` (README, demo section)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

_SPEC = importlib.util.spec_from_file_location(
    "demo_resolution_bound", Path(__file__).resolve().parents[1] / "benchmarks" / "demo_resolution_bound.py")
bound_module = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bound_module)


def _square(size: int, top: int, left: int, side: int) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[top : top + side, left : left + side] = True
    return mask


def test_a_band_on_the_low_resolution_grid_is_reached_exactly() -> None:
    # 256 px scene, 32 x 32 logits: 8-px cells. A full-width band on cell borders: the bilinear upsampling of
    # +0.5 / -0.5 rows crosses 0 exactly on the border, so every pixel lands on its side.
    band = np.zeros((256, 256), dtype=bool)
    band[64:128] = True
    assert bound_module.resolution_bound(band, 32) == pytest.approx(1.0)


def test_a_square_on_the_grid_loses_only_its_corners() -> None:
    # Near a corner the interpolation mixes one inside cell with three outside ones, so the corner rounds off:
    # the bound is below 1, and it loses less than the four corner cells (4 × 64 px of 4,096).
    value = bound_module.resolution_bound(_square(256, 64, 128, 64), 32)
    assert 1 - 4 * 64 / 4096 < value < 1.0


def test_a_region_smaller_than_half_a_cell_cannot_be_drawn() -> None:
    # 3 x 3 px inside one 8-px cell: area fraction 9/64 < 0.5 everywhere, so the best logits are all negative.
    assert bound_module.resolution_bound(_square(256, 10, 10, 3), 32) == 0.0


def test_a_finer_grid_never_lowers_the_bound() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        top, left = rng.integers(0, 200, size=2)
        side = int(rng.integers(6, 50))
        mask = _square(256, int(top), int(left), side)
        assert bound_module.resolution_bound(mask, 64) >= bound_module.resolution_bound(mask, 32) - 1e-9
