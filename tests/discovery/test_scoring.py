"""Granularity scoring of discovery output: hand-worked hierarchies, the fallback parts, the paper formula."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from unsamv2.discovery.scoring import score_document, score_file


def _ann(k: int, area: int, inst: int, is_divide: bool, g: float | None = None) -> dict:
    return {"id": k, "area": area, "instance_id": inst, "is_divide": is_divide, "is_part": not is_divide,
            "granularity": g}


def _doc(anns: list[dict]) -> dict:
    return {"image": {"id": 1, "file_name": "x.jpg"}, "annotations": anns}


def test_two_hierarchies_scored_independently() -> None:
    # Instance 0: parts of area 4 and 16, instance 64 → sqrt 2, 4, 8 → 0.1, 0.1 + 0.9·2/6 = 0.4, 1.0.
    # Instance 1: one part of area 9 and the instance of area 100 → 0.1 and 1.0 (relative, whatever the sizes).
    doc = _doc([
        _ann(1, 16, 0, False), _ann(2, 4, 0, False), _ann(3, 64, 0, True),
        _ann(4, 9, 1, False), _ann(5, 100, 1, True),
    ])
    g = [a["granularity"] for a in score_document(doc)["annotations"]]
    assert g == pytest.approx([0.4, 0.1, 1.0, 0.1, 1.0])


def test_instance_without_parts_gets_one() -> None:
    assert score_document(_doc([_ann(1, 50, 0, True)]))["annotations"][0]["granularity"] == 1.0


def test_fallback_parts_keep_their_fixed_half_and_instance_is_scored_alone() -> None:
    doc = _doc([_ann(1, 10, 0, False, 0.5), _ann(2, 64, 0, False, 0.5), _ann(3, 64, 0, True)])
    g = [a["granularity"] for a in score_document(doc)["annotations"]]
    assert g == [0.5, 0.5, 1.0]


def test_paper_formula_differs_only_in_edge_cases() -> None:
    doc = _doc([_ann(1, 16, 0, False), _ann(2, 4, 0, False), _ann(3, 64, 0, True)])
    code = [a["granularity"] for a in score_document(doc, "code")["annotations"]]
    paper = [a["granularity"] for a in score_document(doc, "paper")["annotations"]]
    assert paper == pytest.approx(code)
    with pytest.raises(ValueError, match="granularity.formula"):
        score_document(doc, "magic")


def test_part_without_instance_is_an_error_naming_the_image() -> None:
    with pytest.raises(ValueError, match="x.jpg"):
        score_document(_doc([_ann(1, 10, 3, False)]))


def test_score_file_round_trip(tmp_path: Path) -> None:
    src, dst = tmp_path / "raw.json", tmp_path / "out" / "scored.json"
    src.write_text(json.dumps(_doc([_ann(1, 25, 0, False), _ann(2, 100, 0, True)])))
    assert score_file(src, dst) == 2
    scored = json.loads(dst.read_text())
    assert [a["granularity"] for a in scored["annotations"]] == [0.1, 1.0]
    assert json.loads(src.read_text())["annotations"][0]["granularity"] is None  # input untouched
    assert np.isfinite([a["granularity"] for a in scored["annotations"]]).all()
