"""Granularity scores: hand-worked values, the reference's special cases, and properties."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unsamv2.core.granularity import (
    granularity_scores,
    granularity_scores_for_masks,
    paper_granularity,
)


def reference_loop(areas: np.ndarray) -> np.ndarray:
    """Literal transcription of the official compute_granularity_scores_sqrt, written from its description."""
    scores = np.zeros(len(areas))
    order = np.argsort(areas)
    lo, hi = areas[order[0]], areas[order[-1]]
    if lo == hi:
        scores[:] = 1.0
        return scores
    s_lo, s_hi = np.sqrt(lo + 1e-10), np.sqrt(hi + 1e-10)
    for i, k in enumerate(order):
        if i == 0:
            scores[k] = 0.1
        elif i == len(order) - 1:
            scores[k] = 1.0
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                g = (np.sqrt(areas[k] + 1e-10) - s_lo) / (s_hi - s_lo) * 0.9 + 0.1
            scores[k] = 1.0 if (np.isnan(g) or np.isinf(g)) else g
    return scores


def test_hand_worked_sqrt_values() -> None:
    # sqrt: 2, 4, 8 -> 0.1, 0.1 + 0.9 * 2/6 = 0.4, 1.0
    g = granularity_scores(np.array([4, 16, 64]))
    assert g[0] == 0.1 and g[2] == 1.0
    assert g[1] == pytest.approx(0.4, abs=1e-12)
    # Order of the input does not matter.
    assert np.array_equal(granularity_scores(np.array([64, 4, 16])), g[[2, 0, 1]])


def test_degenerate_hierarchies_get_one() -> None:
    assert granularity_scores(np.array([7])).tolist() == [1.0]
    assert granularity_scores(np.array([5, 5, 5])).tolist() == [1.0, 1.0, 1.0]
    assert granularity_scores(np.array([0])).tolist() == [1.0]
    assert granularity_scores(np.array([])).shape == (0,)


def test_single_part_gets_point_one_whatever_its_size() -> None:
    assert granularity_scores(np.array([990, 1000])).tolist() == [0.1, 1.0]


def test_ties_at_both_ends_are_exact() -> None:
    # Which tied mask takes the special slot is unspecified (unstable argsort); values must not depend on it.
    g = granularity_scores(np.array([16, 4, 64, 4, 64, 16]))
    assert g.tolist()[1] == 0.1 and g.tolist()[3] == 0.1
    assert g.tolist()[2] == 1.0 and g.tolist()[4] == 1.0
    assert g[0] == g[5]


def test_nan_and_inf_follow_the_reference() -> None:
    # argsort puts NaN last: it becomes A_max, every middle score is NaN -> 1.0; the smallest still gets 0.1.
    assert granularity_scores(np.array([4.0, np.nan, 16.0, 64.0])).tolist() == [0.1, 1.0, 1.0, 1.0]
    # Inf as A_max: middles get 0 / inf -> 0.1.
    assert granularity_scores(np.array([4.0, 16.0, np.inf])).tolist() == [0.1, 0.1, 1.0]
    cases = ([4.0, np.nan, 16.0, 64.0], [4.0, 16.0, np.inf], [np.nan, np.nan, 3.0], [np.inf, np.inf, 1.0])
    for areas in cases:
        a = np.array(areas)
        assert np.array_equal(granularity_scores(a), reference_loop(a))


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        granularity_scores(np.array([4, -1, 9]))
    with pytest.raises(ValueError, match="1-D"):
        granularity_scores(np.ones((2, 2)))


def test_from_masks_uses_pixel_counts() -> None:
    masks = np.zeros((3, 8, 8), dtype=bool)
    masks[0, :2, :2] = True  # 4
    masks[1, :4, :4] = True  # 16
    masks[2] = True  # 64
    assert np.allclose(granularity_scores_for_masks(masks), [0.1, 0.4, 1.0])


def test_paper_variant() -> None:
    assert np.allclose(paper_granularity(np.array([4, 16, 64])), [0.1, 0.4, 1.0])
    assert paper_granularity(np.array([9])).tolist() == [1.0]
    with pytest.raises(ValueError, match="finite"):
        paper_granularity(np.array([1.0, np.nan]))


areas_strategy = st.lists(st.integers(0, 10**7), min_size=1, max_size=30).map(np.array)


@settings(max_examples=200, deadline=None)
@given(areas_strategy)
def test_properties(areas: np.ndarray) -> None:
    g = granularity_scores(areas)
    assert np.array_equal(g, reference_loop(areas))
    assert np.all((g >= 0.1) & (g <= 1.0))
    if areas.min() != areas.max():
        assert np.all(g[areas == areas.min()] == 0.1)
        assert np.all(g[areas == areas.max()] == 1.0)
    # Monotone in area.
    order = np.argsort(areas, kind="stable")
    assert np.all(np.diff(g[order]) >= 0)
    # The paper formula agrees up to the 1e-10 under the roots.
    assert np.allclose(paper_granularity(areas), g, atol=1e-6)
