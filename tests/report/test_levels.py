"""First-click IoU per level: per-object rows of the evaluation joined with the synthetic ground truth's levels."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from unsamv2.cli import main as cli_main
from unsamv2.datasets.synthetic_scenes import write_synthetic_dataset
from unsamv2.evaluate.interactive import ObjectRecord
from unsamv2.evaluate.summary import write_per_object_csv
from unsamv2.report.levels import level_columns, region_levels, write_level_table


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("levels"), 2, seed=1, image_size=(128, 128), depth=4)


def _ground_truth(scenes: Path) -> list[tuple[str, str, int]]:
    out = []
    for path in sorted((scenes / "annotations").glob("*.json")):
        out += [(path.stem, str(a["id"]), a["level"]) for a in json.loads(path.read_text())["annotations"]]
    return out


def test_levels_table_by_hand(scenes: Path, tmp_path: Path) -> None:
    gt = _ground_truth(scenes)
    assert region_levels(scenes / "annotations") == {(img, obj): level for img, obj, level in gt}
    # Model A: first-click IoU = 0.1 × (level + 1), a later click that must be ignored; model B: 0.5 everywhere.
    a = [ObjectRecord("synthetic", img, obj, "oracle", 0.3, (0.1 * (level + 1), 0.99)) for img, obj, level in gt]
    b = [ObjectRecord("synthetic", img, obj, "best_of_3", None, (0.5,)) for img, obj, _ in gt]
    write_per_object_csv(a, "A", tmp_path / "a.csv", max_clicks=2)
    write_per_object_csv(b, "B", tmp_path / "b.csv", max_clicks=2)
    rows = write_level_table([tmp_path / "a.csv", tmp_path / "b.csv"], scenes / "annotations", tmp_path / "t.csv")

    counts = [sum(1 for *_, level in gt if level == k) for k in range(4)]
    assert all(counts)
    first = rows[0]
    assert (first["model"], first["granularity_mode"], first["n_objects"]) == ("A", "oracle", len(gt))
    assert [first[f"iou1_{n}"] for n in ("object", "part", "subpart", "subsubpart")] == pytest.approx(
        [10.0, 20.0, 30.0, 40.0])
    assert [first[f"n_{n}"] for n in ("object", "part", "subpart", "subsubpart")] == counts
    assert first["iou1"] == pytest.approx(sum(10.0 * (k + 1) * c for k, c in enumerate(counts)) / len(gt))
    assert rows[1]["iou1"] == pytest.approx(50.0) and rows[1]["iou1_subsubpart"] == pytest.approx(50.0)

    with (tmp_path / "t.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert list(table[0]) == level_columns(4)
    assert table[0]["iou1_part"] == "20.00" and table[1]["model"] == "B"


def test_objects_of_another_scene_set_are_an_error(scenes: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    write_per_object_csv([ObjectRecord("synthetic", "syn_000000", "999", "oracle", 0.3, (0.5,))], "A",
                         tmp_path / "a.csv", max_clicks=1)
    rc = cli_main(["interactive-levels", "--per-object", str(tmp_path / "a.csv"), "--annotations",
                   str(scenes / "annotations"), "--out", str(tmp_path / "t.csv")])
    assert rc == 2
    assert "object 999 of image syn_000000 is not in the ground truth" in capsys.readouterr().err
    assert not (tmp_path / "t.csv").exists()
