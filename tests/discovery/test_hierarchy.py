"""Instance/part relations: the official containment rule with its quirks, and the paper's IoU rule."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unsamv2.discovery.hierarchy import Instance, containment_matrix, find_instances_and_parts

H = W = 20  # 400 px; 5 % = 20 px


def box(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def as_pairs(instances: list[Instance]) -> list[tuple[int, list[int]]]:
    return [(i.index, i.parts) for i in instances]


def naive_containment(
    masks: np.ndarray, thr: float = 0.8, min_area: float = 0.05
) -> list[tuple[int, list[int]]]:
    """Literal loops of gra_divide_conquer.py (equality skip for parts included)."""

    def contained(a: np.ndarray, b: np.ndarray) -> bool:
        area_a = np.count_nonzero(a)
        return area_a > 0 and np.count_nonzero(a & b) / area_a > thr

    out = []
    for i, m in enumerate(masks):
        if np.count_nonzero(m) / m.size <= min_area:
            continue
        if any(i != j and contained(m, o) for j, o in enumerate(masks)):
            continue
        parts = [j for j, o in enumerate(masks) if not np.array_equal(o, m) and contained(o, m)]
        out.append((i, parts))
    return out


def test_containment_matrix_hand_values() -> None:
    masks = np.stack([box(0, 10, 0, 10), box(0, 5, 0, 4), np.zeros((H, W), bool)])
    c = containment_matrix(masks)
    assert c[1, 0] == 1.0  # 20 px all inside the 100 px box
    assert c[0, 1] == pytest.approx(0.2)
    assert c[2].tolist() == [0.0, 0.0, 0.0]  # empty mask: contained in nothing


def test_instance_and_parts_basic() -> None:
    inst = box(0, 10, 0, 10)  # 100 px = 25 %
    part_small = box(2, 4, 2, 4)  # 4 px = 1 %, fully inside
    outside = box(12, 16, 12, 19)  # 28 px = 7 %, own instance
    half_in = box(8, 12, 0, 10)  # 40 px, 20 inside inst (50 %): not a part, not contained -> instance
    masks = np.stack([part_small, inst, outside, half_in])
    assert as_pairs(find_instances_and_parts(masks)) == [(1, [0]), (2, []), (3, [])]


def test_small_masks_are_never_instances() -> None:
    exactly_5pct = box(0, 4, 0, 5)  # 20 px = 5 %: the rule is strictly greater
    tiny = box(10, 12, 10, 12)
    assert find_instances_and_parts(np.stack([exactly_5pct, tiny])) == []
    assert as_pairs(find_instances_and_parts(np.stack([box(0, 3, 0, 7)]))) == [(0, [])]  # 21 px


def test_near_duplicates_knock_each_other_out() -> None:
    a = box(0, 10, 0, 10)  # 100 px
    a2 = box(0, 10, 0, 9)  # 90 px, both contain each other above 0.8
    part = box(2, 4, 2, 4)
    masks = np.stack([a, a2, part])
    assert find_instances_and_parts(masks, "containment") == []
    # The paper's IoU rule keeps the larger one and makes the duplicate its part; the small mask is discarded.
    assert as_pairs(find_instances_and_parts(masks, "iou")) == [(0, [1])]


def test_a_mask_can_be_part_of_two_instances() -> None:
    i1 = box(0, 10, 0, 12)
    i2 = box(0, 10, 8, 20)  # overlap cols 8..11: 40 px of 120 each, not contained
    shared = box(2, 6, 9, 11)  # inside both
    masks = np.stack([i1, i2, shared])
    assert as_pairs(find_instances_and_parts(masks)) == [(0, [2]), (1, [2])]


def test_containment_threshold_is_strict_and_parts_have_any_size() -> None:
    inst = box(0, 10, 0, 10)
    eighty = box(0, 10, 8, 10) | box(0, 1, 10, 15)  # 20 px inside + 5 px outside = 80 %: not a part
    big_part = box(0, 10, 0, 9) | box(0, 1, 10, 20)  # 90 in + 10 out: 90 % inside, but inst is then inside it
    masks = np.stack([inst, eighty])
    assert as_pairs(find_instances_and_parts(masks)) == [(0, []), (1, [])]
    masks = np.stack([inst, big_part])
    # Mutual containment (90/100 and 90/100): neither is an instance, as in the reference.
    assert find_instances_and_parts(masks) == []


def test_iou_mode_equal_area_duplicates_are_both_instances() -> None:
    a = box(0, 10, 0, 10)
    b = box(0, 10, 1, 11)  # same area, IoU 90/110 = 0.818
    masks = np.stack([a, b])
    assert as_pairs(find_instances_and_parts(masks, "iou")) == [(0, []), (1, [])]
    assert find_instances_and_parts(masks, "containment") == []


def test_empty_input_and_bad_mode() -> None:
    assert find_instances_and_parts(np.zeros((0, H, W), bool)) == []
    with pytest.raises(ValueError, match="mode"):
        find_instances_and_parts(np.stack([box(0, 10, 0, 10)]), mode="overlap")  # type: ignore[arg-type]


@st.composite
def nested_masks(draw: st.DrawFn) -> np.ndarray:
    """Random boxes on a 12x12 image; some are shrunken copies of others so containment happens."""
    n = draw(st.integers(1, 8))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    out = np.zeros((n, 12, 12), dtype=bool)
    for k in range(n):
        if k and rng.random() < 0.5:
            src = out[rng.integers(k)]
            out[k] = src & (rng.random((12, 12)) < rng.choice([0.5, 0.9, 1.0]))
        else:
            y0, x0 = rng.integers(0, 10, size=2)
            out[k, y0 : y0 + rng.integers(1, 12), x0 : x0 + rng.integers(1, 12)] = True
    return out


@settings(max_examples=150, deadline=None)
@given(nested_masks())
def test_containment_matches_reference_loops(masks: np.ndarray) -> None:
    assert as_pairs(find_instances_and_parts(masks)) == naive_containment(masks)
