"""`unsamv2 evaluate-interactive` / `average-interactive` through the command line: config defaults, outputs."""
from __future__ import annotations

from pathlib import Path

from tests.evaluate.conftest import IMAGE, write_grabcut
from unsamv2.cli import main
from unsamv2.evaluate.config import EvaluationConfig
from unsamv2.evaluate.summary import read_summary_csv


def test_evaluate_then_average_from_the_command_line(tmp_path: Path) -> None:
    write_grabcut(tmp_path / "data", IMAGE)
    out = tmp_path / "unsamv2" / "grabcut"
    # No --granularity-mode: the modes are the config's defaults (oracle and best_fixed for UnSAMv2).
    assert main(["evaluate-interactive", "--dataset", "grabcut", "--root", str(tmp_path / "data"), "--model",
                 "unsamv2", "--model-size", "tiny", "--image-size", "256", "--device", "cpu", "--max-clicks", "2",
                 "--model-label", "u", "--out-dir", str(out), "--quiet", "--threads", "1"]) == 0
    rows = read_summary_csv(out / "summary.csv")
    assert [r["granularity_mode"] for r in rows] == list(EvaluationConfig().unsamv2_modes)
    assert {r["model"] for r in rows} == {"u"} and all(r["n_objects"] == 1 for r in rows)
    table = tmp_path / "table.csv"
    assert main(["average-interactive", "--summaries", str(out / "summary.csv"), "--datasets", "grabcut",
                 "--out", str(table)]) == 0
    averaged = [r for r in read_summary_csv(table) if r["dataset"] == "average"]
    assert [r["granularity_mode"] for r in averaged] == list(EvaluationConfig().unsamv2_modes)
    # One dataset: its average is itself.
    assert [r["iou1"] for r in averaged] == [r["iou1"] for r in rows]
